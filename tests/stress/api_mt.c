/* api_mt: every allocation entry point, hammered from several threads.
 *
 * Each thread keeps a table of live blocks and replaces a random one per
 * step with the result of malloc, calloc (must be zeroed), realloc (contents
 * preserved across growth and shrink, sizes 1..100 KiB), posix_memalign and
 * aligned_alloc (alignments 16..64 KiB), and, when the preloaded library
 * defines them itself, memalign, valloc, pvalloc and reallocarray.  Every
 * block is filled over its whole malloc_usable_size (which must be at least
 * the size asked for) and verified in full before it is freed or resized.
 * Threads also hand blocks to their neighbour through a mailbox, to be
 * verified and freed there.  The main thread first checks the edge cases:
 * malloc(0), free(NULL), overflowing calloc/reallocarray, impossible sizes,
 * bad alignments (errno and return values as glibc gives them), alignments
 * up to 2 MiB, every size 1..2048, calloc zeroing memory just freed (16 B to
 * 16 MiB), and one block realloc'd from 1 B up to 32 MiB and back down.
 *
 * Usage: api_mt [SCALE [THREADS]]   (defaults 1 4)
 * Exit status 0 on success; 1 with a message otherwise. */
#include "common.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>

#define SLOTS 512
#define MAX_SIZE (100 * 1024)
#define MAX_THREADS 64

/* Entry points that jemalloc and others may leave to glibc: calling glibc's
 * and freeing into the preloaded library would crash for reasons that have
 * nothing to do with the library under test, so each is exercised only when
 * it comes from the same object as malloc. */
static void *(*p_memalign)(size_t, size_t);
static void *(*p_valloc)(size_t);
static void *(*p_pvalloc)(size_t);
static void *(*p_reallocarray)(void *, size_t, size_t);

struct blk {
    void *p;
    size_t req;   /* size asked for */
    size_t len;   /* bytes filled = malloc_usable_size */
    uint64_t tag;
};

struct mailbox {
    pthread_mutex_t mu;
    struct blk b[64];
    int n;
};

static struct mailbox box[MAX_THREADS];
static int nthreads = 4;
static long steps_per_thread;
static _Atomic long op_count[12];
static const char *op_name[12] = {"malloc", "calloc", "realloc", "posix_memalign", "aligned_alloc", "memalign",
                                  "valloc", "pvalloc", "reallocarray", "handoff", "free", "usable"};
static size_t page;

static const void *same_object_as_malloc(const char *name)
{
    Dl_info a, b;
    void *f = dlsym(RTLD_DEFAULT, name);
    void *m = dlsym(RTLD_DEFAULT, "malloc");
    if (!f || !m || !dladdr(f, &a) || !dladdr(m, &b)) return NULL;
    if (strcmp(a.dli_fname, b.dli_fname) != 0) return NULL;
    return f;
}

static size_t pick_size(uint64_t *rng)
{
    unsigned r = (unsigned)(rng_next(rng) % 100);
    if (r < 70) return rng_range(rng, 1, 1024);
    if (r < 95) return rng_range(rng, 1025, 32768);
    return rng_range(rng, 32769, MAX_SIZE);
}

/* Fill a fresh block over its usable size and record it. */
static void adopt(struct blk *b, void *p, size_t req, uint64_t tag, const char *what)
{
    if (!p) die("%s(%zu) returned NULL", what, req);
    size_t us = malloc_usable_size(p);
    if (us < req) die("%s(%zu) = %p: malloc_usable_size is only %zu", what, req, p, us);
    b->p = p;
    b->req = req;
    b->len = us;
    b->tag = tag;
    fill_full(p, us, tag);
}

static void release(struct blk *b, const char *what)
{
    if (!b->p) return;
    verify(b->p, b->len, b->tag, 0, what);
    free(b->p);
    b->p = NULL;
}

static void check_align(const void *p, size_t align, const char *what, size_t size)
{
    if ((uintptr_t)p % align) die("%s(align %zu, size %zu) = %p: misaligned", what, align, size, p);
}

static void *thread_main(void *arg)
{
    int id = (int)(uintptr_t)arg;
    uint64_t rng = mix64(0xa11 + (uint64_t)id);
    struct blk *slot = calloc(SLOTS, sizeof *slot);
    if (!slot) die("calloc for the slot table failed");
    long ops[12] = {0};

    for (long step = 0; step < steps_per_thread; step++) {
        struct blk *b = &slot[rng_next(&rng) % SLOTS];
        uint64_t tag = rng_next(&rng);
        unsigned op = (unsigned)(rng_next(&rng) % 100);
        size_t sz = pick_size(&rng);

        if (op < 22) {                                  /* malloc */
            release(b, "verify before free");
            void *p = malloc(sz);
            if (p) check_malloc_align(p, sz, "malloc");
            adopt(b, p, sz, tag, "malloc");
            ops[0]++;
        } else if (op < 34) {                           /* calloc: zeroed */
            release(b, "verify before free");
            size_t n = rng_range(&rng, 1, 16), m = sz / n + 1;
            unsigned char *p = calloc(n, m);
            if (!p) die("calloc(%zu, %zu) returned NULL", n, m);
            check_malloc_align(p, n * m, "calloc");
            for (size_t i = 0; i < n * m; i++)
                if (p[i]) die("calloc(%zu, %zu) = %p: byte %zu is 0x%02x, not zero", n, m, (void *)p, i, p[i]);
            adopt(b, p, n * m, tag, "calloc");
            ops[1]++;
        } else if (op < 58) {                           /* realloc: grow or shrink */
            if (!b->p) {
                void *p = realloc(NULL, sz);
                adopt(b, p, sz, tag, "realloc(NULL)");
            } else {
                verify(b->p, b->len, b->tag, 0, "verify before realloc");
                size_t keep = b->req < sz ? b->req : sz;
                void *p = realloc(b->p, sz);
                if (!p) die("realloc(%p, %zu) returned NULL", b->p, sz);
                check_malloc_align(p, sz, "realloc");
                size_t off = check_range(p, keep, b->tag, 0);
                if (off != (size_t)-1)
                    die("realloc from %zu to %zu bytes: byte %zu of the kept %zu not preserved", b->req, sz, off, keep);
                size_t us = malloc_usable_size(p);
                if (us < sz) die("realloc(.., %zu) = %p: malloc_usable_size is only %zu", sz, p, us);
                /* keep the old tag: the prefix is already right */
                fill_range(p, keep, us, b->tag, 0);
                b->p = p;
                b->req = sz;
                b->len = us;
            }
            ops[2]++;
        } else if (op < 68) {                           /* posix_memalign */
            release(b, "verify before free");
            size_t align = (size_t)16 << rng_range(&rng, 0, 12);
            void *p = NULL;
            int rc = posix_memalign(&p, align, sz);
            if (rc) die("posix_memalign(align %zu, size %zu) failed: %s", align, sz, strerror(rc));
            check_align(p, align, "posix_memalign", sz);
            adopt(b, p, sz, tag, "posix_memalign");
            ops[3]++;
        } else if (op < 76) {                           /* aligned_alloc, size a multiple of align */
            release(b, "verify before free");
            size_t align = (size_t)16 << rng_range(&rng, 0, 12);
            size_t s = (sz + align - 1) / align * align;
            void *p = aligned_alloc(align, s);
            if (!p) die("aligned_alloc(%zu, %zu) returned NULL", align, s);
            check_align(p, align, "aligned_alloc", s);
            adopt(b, p, s, tag, "aligned_alloc");
            ops[4]++;
        } else if (op < 80 && p_memalign) {
            release(b, "verify before free");
            size_t align = (size_t)16 << rng_range(&rng, 0, 12);
            void *p = p_memalign(align, sz);
            if (!p) die("memalign(%zu, %zu) returned NULL", align, sz);
            check_align(p, align, "memalign", sz);
            adopt(b, p, sz, tag, "memalign");
            ops[5]++;
        } else if (op < 82 && p_valloc) {
            release(b, "verify before free");
            void *p = p_valloc(sz);
            if (!p) die("valloc(%zu) returned NULL", sz);
            check_align(p, page, "valloc", sz);
            adopt(b, p, sz, tag, "valloc");
            ops[6]++;
        } else if (op < 84 && p_pvalloc) {
            release(b, "verify before free");
            void *p = p_pvalloc(sz);
            if (!p) die("pvalloc(%zu) returned NULL", sz);
            check_align(p, page, "pvalloc", sz);
            /* pvalloc rounds the size up to whole pages */
            adopt(b, p, (sz + page - 1) / page * page, tag, "pvalloc");
            ops[7]++;
        } else if (op < 88 && p_reallocarray && b->p) {
            verify(b->p, b->len, b->tag, 0, "verify before reallocarray");
            size_t n = rng_range(&rng, 1, 8), m = sz / n + 1;
            size_t keep = b->req < n * m ? b->req : n * m;
            void *p = p_reallocarray(b->p, n, m);
            if (!p) die("reallocarray(%p, %zu, %zu) returned NULL", b->p, n, m);
            if (check_range(p, keep, b->tag, 0) != (size_t)-1) die("reallocarray did not preserve contents");
            size_t us = malloc_usable_size(p);
            if (us < n * m) die("reallocarray: malloc_usable_size %zu < %zu", us, n * m);
            fill_range(p, keep, us, b->tag, 0);
            b->p = p;
            b->req = n * m;
            b->len = us;
            ops[8]++;
        } else if (op < 92 && b->p) {                   /* hand the block to the next thread */
            struct mailbox *mb = &box[(id + 1) % nthreads];
            pthread_mutex_lock(&mb->mu);
            if (mb->n < 64) {
                mb->b[mb->n++] = *b;
                b->p = NULL;
            }
            pthread_mutex_unlock(&mb->mu);
            ops[9]++;
        } else if (op < 97) {                           /* plain free */
            release(b, "verify before free");
            ops[10]++;
        } else if (b->p) {                              /* usable size is stable */
            size_t us = malloc_usable_size(b->p);
            if (us != b->len) die("malloc_usable_size(%p) changed from %zu to %zu", b->p, b->len, us);
            verify(b->p, b->len, b->tag, 0, "verify live block");
            ops[11]++;
        }

        if ((step & 63) == 0) {                         /* take blocks handed to us */
            struct mailbox *mb = &box[id];
            struct blk got[64];
            int n;
            pthread_mutex_lock(&mb->mu);
            n = mb->n;
            memcpy(got, mb->b, (size_t)n * sizeof got[0]);
            mb->n = 0;
            pthread_mutex_unlock(&mb->mu);
            for (int i = 0; i < n; i++) release(&got[i], "verify a block from another thread");
        }
    }
    for (int i = 0; i < SLOTS; i++) release(&slot[i], "verify at thread end");
    free(slot);
    for (int i = 0; i < 12; i++) atomic_fetch_add(&op_count[i], ops[i]);
    return NULL;
}

/* errno after a failed allocation: glibc sets ENOMEM; some other
 * allocators do not on every path.  Deviations are collected and reported
 * after the threaded part; they fail the run unless API_MT_LAX_ERRNO=1. */
static char errno_dev[1024];
static void want_enomem(const char *call, int got)
{
    if (got == ENOMEM) return;
    size_t n = strlen(errno_dev);
    snprintf(errno_dev + n, sizeof errno_dev - n, "%s%s errno %d", n ? "; " : "", call, got);
}

/* sizes no allocator can satisfy, hidden from gcc's -Walloc-size-larger-than */
static volatile size_t huge_max = SIZE_MAX, huge_half = SIZE_MAX / 2, huge_2_33 = (size_t)1 << 33;

static void edge_cases(void)
{
    void *p, *q;
    int rc;
    size_t max = huge_max, half = huge_half, b33 = huge_2_33;

    p = malloc(0);           /* glibc: a unique, freeable pointer */
    q = malloc(0);
    if (!p || !q) die("malloc(0) returned NULL");
    if (p == q) die("malloc(0) returned the same pointer twice");
    free(p);
    free(q);
    free(NULL);

    errno = 0;
    p = malloc(max);
    if (p) die("malloc(SIZE_MAX) = %p, want NULL", p);
    want_enomem("malloc(SIZE_MAX)", errno);
    errno = 0;
    p = malloc(half + 1);
    if (p) die("malloc(SIZE_MAX/2+1) = %p, want NULL", p);
    want_enomem("malloc(SIZE_MAX/2+1)", errno);
    errno = 0;
    p = malloc((size_t)1 << 50);
    if (p) die("malloc(2^50) = %p, want NULL", p);
    want_enomem("malloc(2^50)", errno);
    errno = 0;
    p = calloc(half, 3);
    if (p) die("calloc(SIZE_MAX/2, 3) = %p, want NULL", p);
    want_enomem("calloc(SIZE_MAX/2, 3)", errno);
    errno = 0;
    p = calloc(b33, b33);
    if (p) die("calloc(2^33, 2^33) = %p, want NULL", p);
    want_enomem("calloc(2^33, 2^33)", errno);

    p = calloc(0, 16);
    if (!p) die("calloc(0, 16) returned NULL");
    free(p);

    /* realloc failure leaves the block alone */
    p = malloc(100);
    if (!p) die("malloc(100) returned NULL");
    fill_full(p, 100, 42);
    errno = 0;
    q = realloc(p, max - 4096);
    if (q) die("realloc(p, SIZE_MAX-4096) = %p, want NULL", q);
    want_enomem("realloc(p, SIZE_MAX-4096)", errno);
    verify(p, 100, 42, 0, "block after a failed realloc");
    errno = 0;
    q = realloc(p, (size_t)1 << 50);
    if (q) die("realloc(p, 2^50) = %p, want NULL", q);
    want_enomem("realloc(p, 2^50)", errno);
    verify(p, 100, 42, 0, "block after a failed realloc");
    if (p_reallocarray) {
        errno = 0;
        q = p_reallocarray(p, half, 4);
        if (q) die("reallocarray(p, SIZE_MAX/2, 4) = %p, want NULL", q);
        want_enomem("reallocarray(p, SIZE_MAX/2, 4)", errno);
        verify(p, 100, 42, 0, "block after a failed reallocarray");
    }
    /* same block, shrink to a few bytes and back: prefix kept */
    q = realloc(p, 3);
    if (!q) die("realloc(p, 3) returned NULL");
    if (check_range(q, 3, 42, 0) != (size_t)-1) die("realloc(p, 3) lost the first bytes");
    p = realloc(q, 5000);
    if (!p) die("realloc(p, 5000) returned NULL");
    if (check_range(p, 3, 42, 0) != (size_t)-1) die("realloc(p, 5000) lost the first bytes");
    free(p);

    /* realloc(NULL, n) is malloc */
    p = realloc(NULL, 64);
    if (!p) die("realloc(NULL, 64) returned NULL");
    free(p);

    /* posix_memalign: alignment must be a power of two multiple of sizeof(void *) */
    size_t bad[] = {0, 1, 4, 24, 48, 100, 3 * sizeof(void *)};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        p = (void *)1;
        rc = posix_memalign(&p, bad[i], 64);
        if (rc != EINVAL) die("posix_memalign(align %zu) returned %d, want EINVAL", bad[i], rc);
        if (p != (void *)1) die("posix_memalign(align %zu) failed but changed *memptr", bad[i]);
    }
    rc = posix_memalign(&p, sizeof(void *), 1);
    if (rc || !p) die("posix_memalign(align %zu, 1) failed", sizeof(void *));
    free(p);
    p = NULL;
    rc = posix_memalign(&p, 64, 0);
    if (rc) die("posix_memalign(64, 0) failed: %d", rc);
    free(p);
    p = (void *)1;
    rc = posix_memalign(&p, 4096, max - 100);
    if (rc != ENOMEM) die("posix_memalign(4096, SIZE_MAX-100) returned %d, want ENOMEM", rc);
    if (p != (void *)1) die("posix_memalign(4096, SIZE_MAX-100) failed but changed *memptr");
    /* large alignments */
    for (size_t a = 16; a <= ((size_t)1 << 21); a <<= 1) {
        rc = posix_memalign(&p, a, 100);
        if (rc) die("posix_memalign(%zu, 100) failed: %d", a, rc);
        check_align(p, a, "posix_memalign", 100);
        fill_full(p, 100, a);
        verify(p, 100, a, 0, "posix_memalign block");
        free(p);
        p = aligned_alloc(a, a);
        if (!p) die("aligned_alloc(%zu, %zu) returned NULL", a, a);
        check_align(p, a, "aligned_alloc", a);
        free(p);
    }
    /* every small size: usable size, alignment, whole usable range writable */
    void *keep[2048];
    for (size_t s = 1; s <= 2048; s++) {
        keep[s - 1] = malloc(s);
        if (!keep[s - 1]) die("malloc(%zu) returned NULL", s);
        check_malloc_align(keep[s - 1], s, "malloc");
        size_t us = malloc_usable_size(keep[s - 1]);
        if (us < s) die("malloc_usable_size(malloc(%zu)) = %zu", s, us);
        fill_full(keep[s - 1], us, s);
    }
    for (size_t s = 1; s <= 2048; s++) {
        verify(keep[s - 1], malloc_usable_size(keep[s - 1]), s, 0, "small block of every size");
        free(keep[s - 1]);
    }
    if (malloc_usable_size(NULL) != 0) die("malloc_usable_size(NULL) != 0");

    /* calloc must zero memory that was just used and freed, in every size
     * range (small class, mid page, large span reused from a cache) */
    for (size_t s = 16; s <= ((size_t)16 << 20); s = s * 3 / 2 + 16) {
        for (int rep = 0; rep < 3; rep++) {
            unsigned char *d = malloc(s);
            if (!d) die("malloc(%zu) returned NULL", s);
            memset(d, 0xa5, malloc_usable_size(d));
            free(d);
            unsigned char *z = calloc(1, s);
            if (!z) die("calloc(1, %zu) returned NULL", s);
            for (size_t i = 0; i < s; i++)
                if (z[i]) die("calloc(1, %zu) after a free of the same size: byte %zu is 0x%02x, not zero", s, i, z[i]);
            free(z);
        }
    }

    /* realloc far beyond the thread tests: 1 byte up to 32 MiB by doubling
     * (large spans, mremap), then back down, contents kept at each step */
    {
        size_t cur = 1;
        unsigned char *r = malloc(cur);
        if (!r) die("malloc(1) returned NULL");
        fill_full(r, cur, 7);
        for (size_t s = 2; s <= ((size_t)32 << 20); s *= 2) {
            unsigned char *n = realloc(r, s + 3);
            if (!n) die("realloc to %zu returned NULL", s + 3);
            size_t off = check_range(n, cur, 7, 0);
            if (off != (size_t)-1) die("realloc growing %zu -> %zu bytes: byte %zu not preserved", cur, s + 3, off);
            fill_range(n, cur, s + 3, 7, 0);
            r = n;
            cur = s + 3;
        }
        for (size_t s = (size_t)16 << 20; s >= 1; s /= 2) {
            unsigned char *n = realloc(r, s);
            if (!n) die("realloc to %zu returned NULL", s);
            size_t off = check_range(n, s, 7, 0);
            if (off != (size_t)-1) die("realloc shrinking %zu -> %zu bytes: byte %zu not preserved", cur, s, off);
            r = n;
            cur = s;
        }
        free(r);
    }
}

int main(int argc, char **argv)
{
    g_prog = "api_mt";
    double scale = arg_scale(argc, argv);
    if (argc > 2) nthreads = atoi(argv[2]);
    if (nthreads < 1 || nthreads > MAX_THREADS) die("bad thread count %d", nthreads);
    page = (size_t)sysconf(_SC_PAGESIZE);
    p_memalign = (void *(*)(size_t, size_t))same_object_as_malloc("memalign");
    p_valloc = (void *(*)(size_t))same_object_as_malloc("valloc");
    p_pvalloc = (void *(*)(size_t))same_object_as_malloc("pvalloc");
    p_reallocarray = (void *(*)(void *, size_t, size_t))same_object_as_malloc("reallocarray");
    for (int i = 0; i < MAX_THREADS; i++) pthread_mutex_init(&box[i].mu, NULL);

    double t0 = now_sec();
    edge_cases();
    steps_per_thread = (long)(1200000 * scale / nthreads);

    pthread_t th[MAX_THREADS];
    for (int i = 0; i < nthreads; i++)
        if (pthread_create(&th[i], NULL, thread_main, (void *)(uintptr_t)i)) die("pthread_create failed");
    for (int i = 0; i < nthreads; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < nthreads; i++) {
        struct mailbox *mb = &box[i];
        for (int k = 0; k < mb->n; k++) release(&mb->b[k], "verify a block left in a mailbox");
        mb->n = 0;
    }

    int bad_errno = 0;
    if (errno_dev[0]) {
        const char *lax = getenv("API_MT_LAX_ERRNO");
        if (lax && strcmp(lax, "1") == 0)
            printf("api_mt: warning: failed calls without errno ENOMEM (ignored, API_MT_LAX_ERRNO=1): %s\n", errno_dev);
        else
            bad_errno = 1;
    }
    printf("api_mt: %s: %d threads, %.2f s;", bad_errno ? "threads ok, edge cases FAILED" : "ok", nthreads, now_sec() - t0);
    for (int i = 0; i < 12; i++) printf(" %s %ld", op_name[i], atomic_load(&op_count[i]));
    printf("\n");
    if (!p_memalign || !p_valloc || !p_pvalloc || !p_reallocarray)
        printf("api_mt: not from the malloc library, so not exercised:%s%s%s%s\n", p_memalign ? "" : " memalign",
               p_valloc ? "" : " valloc", p_pvalloc ? "" : " pvalloc", p_reallocarray ? "" : " reallocarray");
    if (bad_errno) {
        fprintf(stderr, "api_mt: FAIL: failed calls without errno ENOMEM (glibc sets it; API_MT_LAX_ERRNO=1 tolerates): %s\n", errno_dev);
        return 3;
    }
    return 0;
}
