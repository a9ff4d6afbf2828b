/*
 * api.c - the whole malloc API with glibc's semantics, on top of the
 * generated front (classes) and large.c (everything above them).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ---- misuse reports: no malloc, no stdio; then abort like glibc ---- */

HAK_NORETURN static void report(const char *fn, const char *what, const void *p)
{
    char msg[128], *e = msg;
    const char *parts[] = {"hakmem: ", fn, "(): ", what, " "};
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++)
        for (const char *s = parts[i]; *s && e < msg + 80; s++)
            *e++ = *s;
    e = hak_fmt_hex(e, (uintptr_t)p);
    *e++ = '\n';
    *e = '\0';
    hak_os_write_stderr(msg);
    abort();
}

void hak_report_invalid(const char *fn, const void *p)
{
    report(fn, "invalid pointer", p);
}

void hak_report_double_free(const char *fn, const void *p)
{
    report(fn, "double free", p);
}

void hak_front_invalid(const void *p)
{
    report("free", "invalid pointer", p);
}


/* p is neither a block of a class nor a live large block: a large block
 * freed lately, while its pages are still cached, or anything else. */
HAK_NORETURN static void report_not_large(const char *fn, const char *freed, const void *p)
{
    if (hak_large_was_freed(p))
        report(fn, freed, p);
    hak_report_invalid(fn, p);
}

/* ---- what the generated front hands over ---- */

void *hak_large_malloc(size_t n)
{
    /* metrics: a thread whose first call is a large one has no counters yet;
     * set them up, or the profile would miss it (a program's first malloc) */
    HAK_STAT(hak_thread_ready());
    /* by bit length; the last bucket also takes 64 bits (an impossible size,
     * which was counted past the array, in class 0's bursts) */
    HAK_THREAD_STAT(hak_tls.prof.large_hist[n >> 63 ? 63 : 64 - __builtin_clzl(n)]++);
    return hak_large_alloc(n, 16, false);
}

void hak_free_other(void *p)
{
    if (p != NULL && !hak_large_free(p))
        report_not_large("free", "double free", p);
}

/* The class of block p, after checking (guarded mode) that it starts a
 * block and is not one known to be free: realloc would copy from it. */
static unsigned class_of_block(const char *fn, unsigned code, const void *p)
{
    unsigned cls = code - 1;
    if (HAK_GUARDED) {
        uint32_t off = (uint32_t)((uintptr_t)p & hak_fast.span_mask[code]);
        if (!hak_block_start(&hak_fast, code, off)) /* free's own test (hak_abi.h) */
            hak_report_invalid(fn, p);
        if (HAK_KEY_WORD(p) == hak_cache_key() && hak_thread_block_freed(cls, p))
            report(fn, "freed pointer", p);
    }
    return cls;
}

/* ---- the API ---- */

void *hak_api_malloc(size_t n)
{
    return hak_front_malloc(n);
}

void hak_api_free(void *p)
{
    hak_front_free(p);
}

void *hak_api_calloc(size_t n, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    /* A calloc of a big block is a large block even where a class would
     * serve it (the default's classes go on to 256 KiB): a fresh mapping reads
     * zero without being written, where a class's block is cleared whole and
     * every page of it made resident.  A program that callocs a table of 200
     * KiB and touches a few of its entries keeps them, not the table,
     * resident; a span of the large cache is cleared as before.  malloc of
     * the same sizes takes the class, its list and no lock. */
    if (total > HAK_MAX_CLASS_SIZE || total > HAK_BIG_BLOCK_BYTES) {
        return hak_large_alloc(total, 16, true);
    }
    void *p = hak_front_malloc(total);
    if (p != NULL)
        memset(p, 0, total);
    return p;
}

/* The bytes block p (not NULL) holds; misuse is reported as fn's. */
static size_t usable_size(const char *fn, void *p)
{
    unsigned code = hak_region_code((uintptr_t)p);
    if (code != 0)
        return hak_class_info[class_of_block(fn, code, p)].size;
    size_t usable = hak_large_usable(p);
    if (usable == 0)
        report_not_large(fn, "freed pointer", p);
    return usable;
}

size_t hak_api_usable_size(void *p)
{
    return p == NULL ? 0 : usable_size("malloc_usable_size", p);
}

static bool pow2(size_t x)
{
    return x != 0 && (x & (x - 1)) == 0;
}

/*
 * free(p) of a block allocated with n bytes (C23's free_sized) and, by
 * aligned_alloc, an alignment of align (free_aligned_sized, `aligned`).
 * glibc has them since 2.43: a program built against it calls them, and
 * they must not reach glibc's with a block of ours.  Guarded mode checks
 * what the caller says against the block (after the block itself, so that
 * a bad or freed pointer is reported as such): one holding fewer than n
 * bytes, or not aligned to align (0 and other non-powers of two included:
 * aligned_alloc refuses them), was not allocated so; C23 leaves that
 * undefined.  A block may hold more than n (its class's size, a realloc
 * that kept it, a large block cut from a larger cached span).
 */
static void free_sized(const char *fn, void *p, size_t n, bool aligned, size_t align)
{
    if (p == NULL)
        return;
    if (HAK_GUARDED) {
        size_t usable = usable_size(fn, p);
        if (aligned && (!pow2(align) || (uintptr_t)p % align != 0))
            report(fn, "alignment does not match the block", p);
        if (n > usable)
            report(fn, "size does not match the block", p);
    }
    hak_front_free(p);
}

void hak_api_free_sized(void *p, size_t n)
{
    free_sized("free_sized", p, n, false, 0);
}

void hak_api_free_aligned_sized(void *p, size_t align, size_t n)
{
    free_sized("free_aligned_sized", p, n, true, align);
}

void *hak_api_realloc(void *p, size_t n)
{
    if (p == NULL)
        return hak_front_malloc(n);
    if (n == 0) {
        hak_front_free(p);
        return NULL;
    }
    size_t old;
    unsigned code = hak_region_code((uintptr_t)p);
    if (code != 0) {
        old = hak_class_info[class_of_block("realloc", code, p)].size;
        if (n <= old && n > old / 2)
            return p; /* same block; shrinking by less than half keeps it */
    } else {
        old = hak_large_usable(p);
        if (old == 0)
            report_not_large("realloc", "freed pointer", p);
        void *q;
        if (n > HAK_MAX_CLASS_SIZE) {
            int saved_errno = errno;
            if ((q = hak_large_realloc(p, n)) != NULL)
                return q;
            /* mremap refused (a range of two mappings, or no room): a copy
             * below, whose success leaves errno as the caller had it */
            errno = saved_errno;
        }
    }
    /* read only here, where it is needed: read on every call, its
     * __errno_location call took 8% of a loop of small reallocs, most of
     * which keep their block (the loop 1.2x faster without it) */
    int saved_errno = n < old ? errno : 0;
    void *q = hak_front_malloc(n);
    if (q == NULL) {
        if (n > old)
            return NULL; /* errno is ENOMEM; p is untouched */
        /* a shrink never fails (as in glibc): p still holds n bytes, and
         * errno is as the caller had it */
        errno = saved_errno;
        return p;
    }
    memcpy(q, p, n < old ? n : old);
    hak_front_free(p);
    return q;
}

void *hak_api_reallocarray(void *p, size_t n, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    return hak_api_realloc(p, total);
}

/* align: a power of two.  A class whose stride (its size, or more) is a
 * multiple of align has every block aligned (spans are aligned to their
 * length, a multiple of the stride's power-of-two factor), so small aligned
 * requests stay in the classes. */
static void *aligned(size_t align, size_t n)
{
    if (align <= 16)
        return hak_front_malloc(n);
    if (n <= HAK_MAX_CLASS_SIZE && align <= HAK_SLAB_BYTES) {
        for (unsigned cls = hak_size_class[(n + 15) >> 4]; cls < HAK_NUM_CLASSES; cls++) {
            if (hak_class_info[cls].stride % align == 0)
                return hak_front_alloc_class(cls);
        }
    }
    return hak_large_alloc(n, align, false);
}

int hak_api_posix_memalign(void **out, size_t align, size_t n)
{
    if (!pow2(align) || align % sizeof(void *) != 0)
        return EINVAL;
    int saved = errno;
    void *p = aligned(align, n);
    errno = saved;
    if (p == NULL)
        return ENOMEM;
    *out = p;
    return 0;
}

void *hak_api_aligned_alloc(size_t align, size_t n)
{
    if (!pow2(align)) {
        errno = EINVAL;
        return NULL;
    }
    return aligned(align, n);
}

void *hak_api_memalign(size_t align, size_t n)
{
    if (align > SIZE_MAX / 2 + 1) {
        errno = EINVAL;
        return NULL;
    }
    if (!pow2(align)) /* glibc rounds a bad alignment up to a power of two */
        align = align < 16 ? 16 : (size_t)1 << (64 - __builtin_clzl(align));
    return aligned(align, n);
}

void *hak_api_valloc(size_t n)
{
    return aligned(HAK_PAGE, n);
}

void *hak_api_pvalloc(size_t n)
{
    size_t rounded = (n + HAK_PAGE - 1) & ~(size_t)(HAK_PAGE - 1);
    if (rounded < n) {
        errno = ENOMEM;
        return NULL;
    }
    return aligned(HAK_PAGE, rounded ? rounded : HAK_PAGE);
}

/* What the allocator holds (mallinfo2, malloc_stats in wrappers.c). */
void hak_api_usage(struct hak_usage *u)
{
    memset(u, 0, sizeof *u);
    hak_ss_usage(u);
    hak_large_usage(u);
}

/* Give back at once everything that can be: this thread's caches, empty
 * spans (its own and abandoned ones), dirty pages, cached large spans.
 * Returns 1 when memory was released, as glibc does; pad is ignored (hakmem
 * keeps no heap top to pad). */
int hak_api_trim(size_t pad)
{
    (void)pad;
    hak_decay_release_blocks(); /* first: the trims below free the spans this empties */
    hak_thread_trim();
    hak_heap_trim_abandoned(); /* and those the thread's caches just emptied */
    size_t released = hak_decay_purge_all();
    hak_decay_poll(); /* a caller's context: the purger may start here */
    return released > 0;
}
