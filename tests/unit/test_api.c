/* The malloc API: glibc's results, errno values and edge cases. */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

/* The tests pass sizes that overflow on purpose (calloc(SIZE_MAX / 2, 3)
 * must fail with ENOMEM, not be refused by the compiler's warning), and call
 * mallinfo, deprecated in glibc but still part of the API hakmem exports. */
#pragma GCC diagnostic ignored "-Walloc-size-larger-than="
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

START_TEST(malloc_zero_is_unique)
{
    void *a = malloc(0), *b = malloc(0);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_ptr_ne(a, b);
    free(a);
    free(b);
    free(NULL);
}
END_TEST

START_TEST(malloc_impossible_sizes)
{
    size_t sizes[] = {SIZE_MAX, SIZE_MAX - 4096, (size_t)PTRDIFF_MAX + 1, (size_t)1 << 62};
    for (int i = 0; i < 4; i++) {
        errno = 0;
        ck_assert_ptr_null(malloc(sizes[i]));
        ck_assert_int_eq(errno, ENOMEM);
    }
}
END_TEST

START_TEST(calloc_overflow_and_zeroing)
{
    errno = 0;
    ck_assert_ptr_null(calloc(SIZE_MAX / 2, 3));
    ck_assert_int_eq(errno, ENOMEM);
    /* dirty blocks of several classes, free them, calloc the same sizes back */
    static const size_t sizes[] = {16, 48, 1000, 5000, 40000, 300000};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        for (int round = 0; round < 2; round++) {
            unsigned char *p = malloc(sizes[s]);
            memset(p, 0xAB, sizes[s]);
            free(p);
            unsigned char *q = calloc(1, sizes[s]);
            for (size_t i = 0; i < sizes[s]; i++)
                if (q[i] != 0)
                    ck_abort_msg("calloc(1, %zu) byte %zu is %u", sizes[s], i, q[i]);
            free(q);
        }
    }
}
END_TEST

/* Growing and shrinking across every class boundary keeps the content. */
START_TEST(realloc_keeps_content_across_classes)
{
    unsigned char *p = malloc(1);
    p[0] = 0;
    size_t have = 1;
    for (unsigned cls = 0; cls < HAK_NUM_CLASSES; cls++) {
        size_t to = hak_class_info[cls].size + 1;
        p = realloc(p, to);
        ck_assert_ptr_nonnull(p);
        for (size_t i = 0; i < have; i++)
            if (p[i] != (unsigned char)(i * 7))
                ck_abort_msg("byte %zu lost growing to %zu", i, to);
        for (size_t i = have; i < to; i++)
            p[i] = (unsigned char)(i * 7);
        have = to;
    }
    p = realloc(p, 4 << 20); /* large: mremap */
    for (size_t i = 0; i < have; i++)
        if (p[i] != (unsigned char)(i * 7))
            ck_abort_msg("byte %zu lost growing to 4 MiB", i);
    for (unsigned cls = HAK_NUM_CLASSES; cls-- > 0;) {
        size_t to = hak_class_info[cls].size / 2 + 1;
        p = realloc(p, to);
        for (size_t i = 0; i < to; i++)
            if (p[i] != (unsigned char)(i * 7))
                ck_abort_msg("byte %zu lost shrinking to %zu", i, to);
    }
    free(p);
}
END_TEST

START_TEST(realloc_failure_keeps_block)
{
    size_t sizes[] = {16, 5000, 100000};
    for (int i = 0; i < 3; i++) {
        char *p = malloc(sizes[i]);
        memset(p, 'x', sizes[i]);
        errno = 0;
        ck_assert_ptr_null(realloc(p, SIZE_MAX - 100));
        ck_assert_int_eq(errno, ENOMEM);
        for (size_t j = 0; j < sizes[i]; j++)
            if (p[j] != 'x')
                ck_abort_msg("byte %zu of the kept block changed", j);
        free(p);
    }
    errno = 0;
    ck_assert_ptr_null(reallocarray(NULL, SIZE_MAX / 2, 3));
    ck_assert_int_eq(errno, ENOMEM);
}
END_TEST

START_TEST(realloc_null_and_zero)
{
    char *p = realloc(NULL, 10);
    ck_assert_ptr_nonnull(p);
    strcpy(p, "abc");
    ck_assert_ptr_null(realloc(p, 0)); /* glibc: frees and returns NULL */
}
END_TEST

/* A realloc that succeeds leaves errno as the caller had it, whether it
 * keeps the block, moves it to another class, moves a large block with
 * mremap or shrinks one into a class; the contents go along byte by byte. */
START_TEST(realloc_leaves_errno_alone)
{
    size_t sizes[] = {10, 16, 100, 40, 5000, 1000, 200000, 3000000, 300, 7};
    unsigned char *p = NULL;
    size_t had = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        errno = 1234;
        unsigned char *q = realloc(p, sizes[i]);
        ck_assert_ptr_nonnull(q);
        ck_assert_int_eq(errno, 1234);
        for (size_t j = 0; j < had && j < sizes[i]; j++)
            ck_assert_uint_eq(q[j], (unsigned char)(j * 7 + had));
        had = sizes[i];
        for (size_t j = 0; j < had; j++)
            q[j] = (unsigned char)(j * 7 + had);
        p = q;
    }
    free(p);
}
END_TEST

START_TEST(posix_memalign_semantics)
{
    void *p = (void *)0x1;
    errno = 1234;
    ck_assert_int_eq(posix_memalign(&p, 3 * sizeof(void *), 10), EINVAL);
    ck_assert_int_eq(posix_memalign(&p, 4, 10), EINVAL); /* not a multiple of sizeof(void *) */
    ck_assert_int_eq(posix_memalign(&p, 0, 10), EINVAL);
    ck_assert_int_eq(posix_memalign(&p, 64, SIZE_MAX - 100), ENOMEM);
    /* an alignment of 2^63 and a size that made the room to align it wrap
     * around to a few pages (a pointer of 0x8000000000000000 was returned) */
    size_t top = (size_t)1 << 63;
    ck_assert_int_eq(posix_memalign(&p, top, top - 4094), ENOMEM);
    ck_assert_int_eq(posix_memalign(&p, top, top - 4094 + (1u << 20)), ENOMEM);
    ck_assert_int_eq(posix_memalign(&p, top, 10), ENOMEM);
    ck_assert_int_eq(posix_memalign(&p, top / 2, 10), ENOMEM);
    ck_assert_ptr_eq(p, (void *)0x1); /* untouched on failure */
    ck_assert_int_eq(errno, 1234);    /* errno left alone */
    for (size_t align = sizeof(void *); align <= ((size_t)1 << 20); align *= 2) {
        size_t sizes[] = {1, align / 2 + 1, align, 3 * align + 5, 70000};
        for (int i = 0; i < 5; i++) {
            ck_assert_int_eq(posix_memalign(&p, align, sizes[i]), 0);
            ck_assert_uint_eq((uintptr_t)p % align, 0);
            ck_assert_uint_ge(malloc_usable_size(p), sizes[i]);
            memset(p, 0x5A, malloc_usable_size(p));
            free(p);
        }
    }
    ck_assert_int_eq(errno, 1234);
}
END_TEST

/* A small aligned request takes a block of the first class at or above its
 * size whose stride is a multiple of the alignment (runtime/api.c, aligned:
 * then every block of it is aligned), and a mapping of its own only where
 * there is none.  The padded strides (options.stride_pad) must leave such a
 * class for page-aligned requests: valloc and posix_memalign(4096, n). */
START_TEST(small_aligned_requests_stay_in_the_classes)
{
    static const size_t sizes[] = {1, 100, 512, 1000, 4096};
    unsigned in_classes = 0;
    for (size_t align = 32; align <= 4096; align *= 2) {
        for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
            size_t n = sizes[s];
            unsigned want = HAK_NUM_CLASSES; /* none: a mapping */
            for (unsigned cls = hak_size_class[(n + 15) >> 4]; cls < HAK_NUM_CLASSES; cls++)
                if (hak_class_info[cls].stride % align == 0) {
                    want = cls;
                    break;
                }
            void *p = NULL;
            ck_assert_int_eq(posix_memalign(&p, align, n), 0);
            ck_assert_uint_eq((uintptr_t)p % align, 0);
            unsigned code = hak_region_code((uintptr_t)p);
            ck_assert_msg(code == (want < HAK_NUM_CLASSES ? want + 1 : 0),
                          "posix_memalign(%zu, %zu): region code %u, class %u expected", align, n, code,
                          want);
            in_classes += code != 0;
            free(p);
        }
    }
    /* the default spec: every one of them (512 B aligned ones of 1536 B, the
     * 512 and 1024 B classes' strides being padded), valloc's of 4096 B */
    if (strcmp(HAK_SPEC_NAME, "default") == 0) {
        ck_assert_uint_eq(in_classes, 8 * 5);
        void *v = valloc(10);
        ck_assert_uint_eq(hak_region_code((uintptr_t)v), hak_size_class[4096 >> 4] + 1u);
        free(v);
    }
}
END_TEST

START_TEST(aligned_alloc_memalign_valloc_pvalloc)
{
    long page = sysconf(_SC_PAGESIZE);
    errno = 0;
    ck_assert_ptr_null(aligned_alloc(48, 10));
    ck_assert_int_eq(errno, EINVAL);
    void *p = aligned_alloc(256, 1000);
    ck_assert_uint_eq((uintptr_t)p % 256, 0);
    free(p);
    p = memalign(48, 10); /* rounded up to 64, as glibc does */
    ck_assert_uint_eq((uintptr_t)p % 64, 0);
    free(p);
    errno = 0;
    ck_assert_ptr_null(memalign(SIZE_MAX / 2 + 2, 10));
    ck_assert_int_eq(errno, EINVAL);
    errno = 0;
    ck_assert_ptr_null(memalign(SIZE_MAX / 2 + 1, SIZE_MAX / 2 - 4094));
    ck_assert_int_eq(errno, ENOMEM);
    errno = 0;
    ck_assert_ptr_null(aligned_alloc(SIZE_MAX / 2 + 1, SIZE_MAX / 2 - 4094));
    ck_assert_int_eq(errno, ENOMEM);
    p = valloc(10);
    ck_assert_uint_eq((uintptr_t)p % (size_t)page, 0);
    free(p);
    p = pvalloc(10);
    ck_assert_uint_eq((uintptr_t)p % (size_t)page, 0);
    ck_assert_uint_ge(malloc_usable_size(p), (size_t)page);
    free(p);
    p = pvalloc(0);
    ck_assert_uint_ge(malloc_usable_size(p), (size_t)page);
    free(p);
    errno = 0;
    ck_assert_ptr_null(pvalloc(SIZE_MAX - 10));
    ck_assert_int_eq(errno, ENOMEM);
}
END_TEST

START_TEST(usable_size_of_null)
{
    ck_assert_uint_eq(malloc_usable_size(NULL), 0);
}
END_TEST

/* Large blocks: touched everywhere, reused through the cache, realloc'd. */
START_TEST(large_blocks)
{
    for (size_t n = HAK_MAX_CLASS_SIZE + 1; n <= ((size_t)32 << 20); n *= 3) {
        unsigned char *p = malloc(n);
        ck_assert_ptr_nonnull(p);
        ck_assert_uint_eq((uintptr_t)p % 16, 0);
        for (size_t i = 0; i < n; i += 4096)
            p[i] = (unsigned char)i;
        p[n - 1] = 1;
        free(p);
    }
}
END_TEST

/* The large cache's bound (large.cache_bytes) decides what these tests can
 * keep cached: at most `want` bytes, whole pages, within the bound. */
static size_t cacheable(size_t want)
{
    size_t bound = (size_t)HAK_LARGE_CACHE_BYTES & ~(size_t)4095;
    return want < bound ? want : bound;
}

static bool mapped(const void *p)
{
    unsigned char vec[1];
    return mincore((void *)((uintptr_t)p & ~(uintptr_t)4095), 4096, vec) == 0;
}

/* realloc grows a large block into the cached range right after it (the rest
 * of the cached span it was cut from): same address, no copy, content kept.
 * Without room in the cache a freed span is unmapped at once. */
START_TEST(large_realloc_grows_into_cached_neighbour)
{
    size_t small = HAK_MAX_CLASS_SIZE + 4096;
    size_t big = cacheable((size_t)64 << 20);
    if (big < 8 * small) { /* no cache to speak of */
        unsigned char *x = malloc(8 * small);
        memset(x, 1, 8 * small);
        free(x);
        ck_assert(!mapped(x));
        return;
    }
    size_t grown = big / 4;
    unsigned char *old = malloc(big);
    ck_assert_ptr_nonnull(old);
    memset(old, 0x5a, big);
    free(old); /* cached */
    ck_assert(mapped(old));
    unsigned char *p = malloc(small);
    ck_assert_ptr_eq(p, old); /* the head of the cached span */
    for (size_t i = 0; i < small; i++)
        p[i] = (unsigned char)(i * 7);
    unsigned char *q = realloc(p, grown);
    ck_assert_ptr_eq(q, p);
    for (size_t i = 0; i < small; i++)
        ck_assert_uint_eq(q[i], (unsigned char)(i * 7));
    memset(q + small, 1, grown - small); /* the whole new size is writable */
    ck_assert_uint_ge(malloc_usable_size(q), grown);
    free(q);
}
END_TEST

/* A block that grows by mremap while the cache holds a span it cannot use
 * gives as many cached bytes back: the cached span is unmapped at once. */
START_TEST(large_realloc_growth_releases_cache)
{
    malloc_trim(0); /* x below is the only cached span (CK_FORK=no runs earlier tests here) */
    size_t cached = cacheable((size_t)8 << 20);
    if (cached <= HAK_MAX_CLASS_SIZE) /* nothing large is ever cached */
        cached = HAK_MAX_CLASS_SIZE + 4096;
    unsigned char *b = malloc(HAK_MAX_CLASS_SIZE + 1);
    unsigned char *x = malloc(cached);
    ck_assert_ptr_nonnull(b);
    ck_assert_ptr_nonnull(x);
    memset(x, 0x11, cached);
    b[0] = 42;
    free(x);
    ck_assert(mapped(x) == (cached <= (size_t)HAK_LARGE_CACHE_BYTES)); /* cached, or gone */
    unsigned char *g = realloc(b, 2 * cached + ((size_t)1 << 20));
    ck_assert_ptr_nonnull(g);
    ck_assert_uint_eq(g[0], 42);
    ck_assert(!mapped(x));
    errno = 0;
    unsigned char vec[1];
    ck_assert_int_eq(mincore((void *)((uintptr_t)x & ~(uintptr_t)4095), 4096, vec), -1);
    ck_assert_int_eq(errno, ENOMEM);
    free(g);
}
END_TEST

/* A purge pass whose clock was read before a large block was freed leaves
 * the cached span for later (not due "2^64 ms ago"), then unmaps it when due. */
START_TEST(large_purge_with_older_clock_keeps_fresh_span)
{
    size_t len = cacheable((size_t)1 << 20);
    if (len <= HAK_MAX_CLASS_SIZE || len > (size_t)HAK_LARGE_CACHE_BYTES)
        return; /* nothing large is ever cached */
    uint64_t before = hak_now_ms();
    unsigned char *x = malloc(len);
    ck_assert_ptr_nonnull(x);
    memset(x, 0x22, len);
    free(x);
    ck_assert(mapped(x));
    uint64_t next = UINT64_MAX;
    ck_assert_uint_eq(hak_large_purge(before - 1, false, &next), 0);
    ck_assert(mapped(x));
    ck_assert_uint_ge(next, before + HAK_DECAY_MS);
    ck_assert_uint_ge(hak_large_purge(UINT64_MAX - HAK_DECAY_MS, false, &next), len);
    ck_assert(!mapped(x));
}
END_TEST

/* A span freed next to one cached earlier is as old as the earlier: merged,
 * they go back when it is due.  (The merged range took the time of the last
 * free, so that a program taking a small part of a large cached range now
 * and then, and freeing it, kept the whole range cached for good.) */
START_TEST(large_cache_merge_keeps_the_older_time)
{
    size_t big = cacheable((size_t)8 << 20), part = big / 8;
    if (part <= HAK_MAX_CLASS_SIZE)
        return; /* nothing large is ever cached */
    malloc_trim(0);
    uint64_t t0 = hak_now_ms();
    unsigned char *x = malloc(big);
    ck_assert_ptr_nonnull(x);
    memset(x, 0x33, big);
    free(x); /* cached, freed within a few ms of t0 */
    usleep(100 * 1000);
    unsigned char *y = malloc(part); /* cut from it; the rest stays cached */
    ck_assert_ptr_eq(y, x);
    free(y); /* merged with the rest again, 100 ms later */
    uint64_t next = UINT64_MAX;
    ck_assert_uint_ge(hak_large_purge(t0 + HAK_DECAY_MS + 50, false, &next), big);
    ck_assert(!mapped(x));
    ck_assert(!mapped(x + big - 1));
}
END_TEST

/* Blocks freed leave nothing in the table of spans (deleted without
 * markers): a program given new addresses again and again, one or two
 * blocks live at a time, once doubled the table each time deleted slots
 * filled half of it (a 4 MiB table after 100,000 addresses, never given
 * back). */
START_TEST(large_table_stays_small_with_few_live)
{
    uint64_t next;
    void *keep = malloc(HAK_MAX_CLASS_SIZE + 1); /* the table exists */
    size_t before = hak_large_table_slots();
    for (size_t k = 0; k < 4 * before; k++) {
        /* a size of its own and nothing cached: a fresh mapping, below
         * where the last one was, at an address of its own */
        void *p = malloc(HAK_MAX_CLASS_SIZE + 4096 * (k + 1));
        ck_assert_ptr_nonnull(p);
        free(p);
        hak_large_purge(UINT64_MAX, true, &next);
    }
    ck_assert_uint_le(hak_large_table_slots(), 2 * before);
    free(keep);
}
END_TEST

/* The table of large spans under churn: blocks of many sizes allocated,
 * reallocated and freed in a random order while up to 3000 live, through
 * the table's growth from 1024 slots; every one found again each time (its
 * usable size, its first and last bytes), none lost or confused with
 * another (a deletion moves later entries of its probe run back). */
START_TEST(large_table_churn)
{
    enum { SLOTS = 3000, OPS = 60000 };
    static unsigned char *blk[SLOTS];
    static size_t len[SLOTS];
    uint32_t s = 12345;
    for (int op = 0; op < OPS; op++) {
        s = s * 1103515245u + 12345u;
        unsigned k = (s >> 8) % SLOTS;
        size_t n = HAK_MAX_CLASS_SIZE + 1 + ((s >> 4) % 64) * 4096 + (s >> 24);
        if (blk[k] != NULL) {
            ck_assert_uint_ge(malloc_usable_size(blk[k]), len[k]);
            ck_assert_uint_eq(blk[k][0], k & 0xff);
            ck_assert_uint_eq(blk[k][len[k] - 1], (k >> 4) & 0xff);
            if (s & 0x100) {
                free(blk[k]);
                blk[k] = NULL;
                continue;
            }
            blk[k] = realloc(blk[k], n);
            ck_assert_ptr_nonnull(blk[k]);
            ck_assert_uint_eq(blk[k][0], k & 0xff);
        } else {
            blk[k] = malloc(n);
            ck_assert_ptr_nonnull(blk[k]);
            blk[k][0] = (unsigned char)k;
        }
        len[k] = n;
        blk[k][n - 1] = (unsigned char)(k >> 4);
    }
    for (unsigned k = 0; k < SLOTS; k++)
        free(blk[k]);
}
END_TEST

/* A cached range may be two of the kernel's mappings (two freed blocks'
 * that the kernel would not merge: here one is marked MADV_DONTDUMP), which
 * mremap refuses to grow (EFAULT): realloc copies the block instead, keeps
 * its content and, succeeding, leaves errno alone.  (It returned with errno
 * ENOMEM.) */
START_TEST(large_realloc_across_two_mappings)
{
    size_t len = cacheable((size_t)2 << 20) / 2 & ~(size_t)4095;
    if (len <= HAK_MAX_CLASS_SIZE)
        return; /* nothing large is ever cached */
    malloc_trim(0);
    unsigned char *a = malloc(len), *b = malloc(len);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    unsigned char *lo = a < b ? a : b;
    if (lo + len != (a < b ? b : a)) { /* not neighbours: no such range to make */
        free(a);
        free(b);
        return;
    }
    ck_assert_int_eq(madvise(a, len, MADV_DONTDUMP), 0); /* a mapping of its own */
    free(a);
    free(b); /* cached: one range over both */
    unsigned char *x = malloc(2 * len);
    ck_assert_ptr_eq(x, lo);
    for (size_t i = 0; i < 2 * len; i += 64)
        x[i] = (unsigned char)(i / 64 * 7);
    errno = 0;
    unsigned char *y = realloc(x, 4 * len);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(errno, 0);
    for (size_t i = 0; i < 2 * len; i += 64)
        if (y[i] != (unsigned char)(i / 64 * 7))
            ck_abort_msg("byte %zu lost", i);
    free(y);
}
END_TEST

/* Pages of [p, p + len) resident now. */
static size_t resident_pages(const void *p, size_t len)
{
    static unsigned char vec[((size_t)64 << 20) / 4096];
    ck_assert_uint_le(len, sizeof vec * 4096);
    ck_assert_int_eq(mincore((void *)p, len, vec), 0);
    size_t n = 0;
    for (size_t i = 0; i < (len + 4095) / 4096; i++)
        n += vec[i] & 1;
    return n;
}

static void assert_zero(const unsigned char *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != 0)
            ck_abort_msg("byte %zu of %zu is %u", i, len, p[i]);
}

/* A calloc that grows a cached span by mremap clears what the span held
 * and leaves the pages mremap added untouched: they read zero already, and
 * a fresh mapping's would be committed only as the program touches them.  A
 * 64 MiB calloc grown from a cached 1 MiB span is not resident after the
 * call.  (It wrote all 64 MiB: a 2 GiB array used sparsely took 2 GiB.)  And
 * one cut from a cached 8 MiB span, written whole before, reads zero. */
START_TEST(large_calloc_grown_from_cached_span)
{
    size_t small = cacheable((size_t)1 << 20), big = (size_t)64 << 20;
    if (small <= HAK_MAX_CLASS_SIZE)
        return; /* nothing large is ever cached */
    malloc_trim(0);
    unsigned char *x = malloc(small);
    memset(x, 0xee, small);
    free(x); /* cached, written */
    unsigned char *p = calloc(1, big);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_le(resident_pages(p, big), big / 4096 / 8);
    assert_zero(p, big);
    free(p);
    malloc_trim(0);
    size_t cached = cacheable((size_t)8 << 20), want = cached / 4 * 3;
    x = malloc(cached);
    memset(x, 0xee, cached);
    free(x);
    p = calloc(1, want);
    ck_assert_ptr_eq(p, x); /* the cached span */
    assert_zero(p, want);
    free(p);
}
END_TEST

/* A calloc of a class above 32 KiB makes none of its pages resident: it is
 * a fresh mapping, not a class block cleared whole (200 KiB: 49 pages).
 * The same size from malloc is a class's block where a class serves it. */
START_TEST(calloc_of_many_pages_leaves_them_untouched)
{
    const size_t len = 200000;
    malloc_trim(0); /* no cached large span, which would be cleared */
    unsigned char *p = calloc(1, len);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq((uintptr_t)p % 4096, 0);
    ck_assert_uint_eq(resident_pages(p, len), 0);
    assert_zero(p, len);
    free(p);
    unsigned char *q = malloc(len);
    ck_assert_uint_eq(hak_region_code((uintptr_t)q) != 0, len <= HAK_MAX_CLASS_SIZE);
    free(q);
}
END_TEST

/* glibc's internal names are hakmem's too: a block from one frees with the other. */
void *__libc_malloc(size_t);
void __libc_free(void *);
void *__libc_calloc(size_t, size_t);
void *__libc_realloc(void *, size_t);
void *__libc_memalign(size_t, size_t);
void *__libc_valloc(size_t);
void *__libc_pvalloc(size_t);
struct mallinfo __libc_mallinfo(void);

START_TEST(libc_names_are_hakmem)
{
    long page = sysconf(_SC_PAGESIZE);
    unsigned char *p = __libc_malloc(100);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_ge(malloc_usable_size(p), 100); /* a foreign block would abort here */
    memset(p, 0x33, 100);
    p = __libc_realloc(p, 5000);
    for (int i = 0; i < 100; i++)
        ck_assert_uint_eq(p[i], 0x33);
    free(p);
    __libc_free(malloc(100));
    unsigned char *z = __libc_calloc(10, 100);
    for (int i = 0; i < 1000; i++)
        ck_assert_uint_eq(z[i], 0);
    free(z);
    void *a = __libc_memalign(256, 100), *v = __libc_valloc(10), *pv = __libc_pvalloc(10);
    ck_assert_uint_eq((uintptr_t)a % 256, 0);
    ck_assert_uint_eq((uintptr_t)v % (size_t)page, 0);
    ck_assert_uint_ge(malloc_usable_size(pv), (size_t)page);
    __libc_free(a);
    __libc_free(v);
    __libc_free(pv);
}
END_TEST

/* C23's free_sized and free_aligned_sized free the block (the next malloc
 * of its size takes it back from the cache); NULL is nothing to free.
 * glibc 2.36's headers do not declare them. */
void free_sized(void *p, size_t n);
void free_aligned_sized(void *p, size_t align, size_t n);

START_TEST(free_sized_and_free_aligned_sized)
{
    free_sized(NULL, 100);
    free_aligned_sized(NULL, 64, 100);
    void *p = malloc(100);
    free_sized(p, 100);
    ck_assert_ptr_eq(malloc(100), p);
    free_sized(p, malloc_usable_size(p)); /* the block's size, more than asked: no misuse */
    ck_assert_ptr_eq(malloc(100), p);
    free(p);
    void *a = aligned_alloc(64, 200);
    ck_assert_uint_eq((uintptr_t)a % 64, 0);
    free_aligned_sized(a, 64, 200);
    ck_assert_ptr_eq(aligned_alloc(64, 200), a);
    free(a);
    /* what C23 calls the size is the last one asked for: after a realloc
     * that kept the block, one that moved it, a calloc */
    char *r = malloc(100);
    size_t kept = malloc_usable_size(r) - 1; /* above half the block: kept */
    ck_assert_ptr_eq(realloc(r, kept), r);
    free_sized(r, kept);
    r = realloc(malloc(100), 5000);
    free_sized(r, 5000);
    free_sized(calloc(10, 30), 300);
    /* a large block: unmapped or cached, it is no longer live */
    size_t live = mallinfo2().hblks;
    void *big = malloc((size_t)1 << 20);
    ck_assert_ptr_nonnull(big);
    ck_assert_uint_eq(mallinfo2().hblks, live + 1);
    big = realloc(big, (size_t)3 << 20);
    free_sized(big, (size_t)3 << 20);
    ck_assert_uint_eq(mallinfo2().hblks, live);
}
END_TEST

/* mallinfo2 from what hakmem holds: a large block counts once in hblks and
 * with its whole mapping in hblkhd, until it is freed; the superslabs are
 * the arena, split between spans (uordblks) and free units (fordblks). */
START_TEST(mallinfo2_reports_hakmem)
{
    malloc_trim(0); /* no cached large span: the next one is mapped to size */
    struct mallinfo2 before = mallinfo2();
    void *big = malloc(3 << 20);
    struct mallinfo2 with = mallinfo2();
    ck_assert_uint_eq(with.hblks, before.hblks + 1);
    ck_assert_uint_eq(with.hblkhd, before.hblkhd + (3 << 20));
    free(big);
    struct mallinfo2 after = mallinfo2();
    ck_assert_uint_eq(after.hblks, before.hblks);
    ck_assert_uint_eq(after.hblkhd, before.hblkhd);

    enum { N = 65536 };
    static void *small[N]; /* 4 MiB of 64 B blocks */
    for (int i = 0; i < N; i++)
        small[i] = malloc(64);
    struct mallinfo2 m = mallinfo2();
    ck_assert_uint_eq(m.arena % HAK_SUPERSLAB_BYTES, 0);
    ck_assert_uint_eq(m.uordblks + m.fordblks, m.arena);
    ck_assert_uint_le(m.keepcost, m.fordblks);
    ck_assert_uint_ge(m.uordblks, before.uordblks + ((size_t)N * 64));
    ck_assert_uint_eq(m.ordblks + m.smblks + m.usmblks + m.fsmblks, 0);
    struct mallinfo old = mallinfo();
    ck_assert_int_eq(old.arena, (int)m.arena);
    ck_assert_int_eq(old.uordblks, (int)m.uordblks);
    struct mallinfo libc_name = __libc_mallinfo(); /* glibc's name for it is hakmem's too */
    ck_assert_int_eq(libc_name.arena, (int)m.arena);
    ck_assert_int_eq(libc_name.uordblks, (int)m.uordblks);
    for (int i = 0; i < N; i++)
        free(small[i]);
}
END_TEST

/* malloc_stats prints glibc's seven lines on stderr, with mallinfo2's
 * numbers and the large blocks on top. */
static void stats_child(int fd, size_t big)
{
    void *p = malloc(big);
    struct mallinfo2 m = mallinfo2();
    struct hak_usage u; /* the cached large spans and the most live at once */
    hak_api_usage(&u);
    if (u.large_max_count < 1 || u.large_max_bytes < big)
        _exit(4);
    char want[512];
    snprintf(want, sizeof want,
             "Arena 0:\nsystem bytes     = %10zu\nin use bytes     = %10zu\n"
             "Total (incl. mmap):\nsystem bytes     = %10zu\nin use bytes     = %10zu\n"
             "max mmap regions = %10zu\nmax mmap bytes   = %10zu\n",
             m.arena, m.uordblks, m.arena + m.hblkhd + u.large_cached, m.uordblks + m.hblkhd,
             u.large_max_count, u.large_max_bytes);
    if (write(fd, want, strlen(want)) < 0)
        _exit(3);
    close(fd);
    dup2(fd + 1, 2);
    malloc_stats();
    free(p);
    _exit(0);
}

START_TEST(malloc_stats_prints_glibc_layout)
{
    int want_fds[2], got_fds[2];
    ck_assert_int_eq(pipe(want_fds), 0);
    ck_assert_int_eq(pipe(got_fds), 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(want_fds[0]);
        close(got_fds[0]);
        if (dup2(want_fds[1], 10) < 0 || dup2(got_fds[1], 11) < 0)
            _exit(3);
        stats_child(10, 5 << 20);
    }
    close(want_fds[1]);
    close(got_fds[1]);
    char want[512] = {0}, got[512] = {0};
    size_t nw = 0, ng = 0;
    ssize_t n;
    while ((n = read(want_fds[0], want + nw, sizeof want - 1 - nw)) > 0)
        nw += (size_t)n;
    while ((n = read(got_fds[0], got + ng, sizeof got - 1 - ng)) > 0)
        ng += (size_t)n;
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ck_assert_str_eq(got, want);
}
END_TEST

Suite *suite_api(void)
{
    Suite *s = suite_create("api");
    TCase *tc = tcase_create("api");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, malloc_zero_is_unique);
    tcase_add_test(tc, mallinfo2_reports_hakmem);
    tcase_add_test(tc, malloc_stats_prints_glibc_layout);
    tcase_add_test(tc, malloc_impossible_sizes);
    tcase_add_test(tc, calloc_overflow_and_zeroing);
    tcase_add_test(tc, realloc_keeps_content_across_classes);
    tcase_add_test(tc, realloc_failure_keeps_block);
    tcase_add_test(tc, realloc_null_and_zero);
    tcase_add_test(tc, realloc_leaves_errno_alone);
    tcase_add_test(tc, posix_memalign_semantics);
    tcase_add_test(tc, aligned_alloc_memalign_valloc_pvalloc);
    tcase_add_test(tc, small_aligned_requests_stay_in_the_classes);
    tcase_add_test(tc, usable_size_of_null);
    tcase_add_test(tc, large_blocks);
    tcase_add_test(tc, large_table_churn);
    tcase_add_test(tc, calloc_of_many_pages_leaves_them_untouched);
    if (HAK_DECAY_MS > 0) { /* freed large blocks are cached; with 0 they are unmapped at once */
        tcase_add_test(tc, large_realloc_grows_into_cached_neighbour);
        tcase_add_test(tc, large_realloc_growth_releases_cache);
        tcase_add_test(tc, large_purge_with_older_clock_keeps_fresh_span);
        tcase_add_test(tc, large_cache_merge_keeps_the_older_time);
        tcase_add_test(tc, large_calloc_grown_from_cached_span);
        tcase_add_test(tc, large_realloc_across_two_mappings);
    }
    tcase_add_test(tc, large_table_stays_small_with_few_live);
    tcase_add_test(tc, libc_names_are_hakmem);
    tcase_add_test(tc, free_sized_and_free_aligned_sized);
    suite_add_tcase(s, tc);
    return s;
}
