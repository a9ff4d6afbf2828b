/*
 * fuzz_api.c - the hak_ API against a shadow model.
 *
 * The input bytes are read as a sequence of operations over 256 slots:
 * hak_malloc, hak_free, hak_realloc, hak_calloc, hak_aligned_alloc,
 * hak_posix_memalign, hak_usable_size, hak_trim and a few impossible requests.
 * The shadow model knows, for every slot, the block, the size asked for, the
 * alignment asked for, its usable size and the generation that filled it.
 * Every live block is filled over its whole usable size with a pattern derived
 * from slot and generation, and checked whole before it is freed or
 * reallocated (so the allocator writing into a live block is caught too);
 * realloc must keep the pattern over min(old, new) requested bytes; no two
 * live blocks may overlap; every block is 16-byte aligned (more when asked);
 * calloc memory is zero; the usable size is >= the request and stays the same;
 * impossible requests give NULL with errno ENOMEM (EINVAL for a bad alignment)
 * and a failed realloc keeps the old block.  At the end of an input every live
 * block is checked and freed.  Any violation prints what and where, then
 * aborts (a crash for libFuzzer, a failure for the plain driver).
 *
 * Built three ways (tests/reliability.mk), always with the runtime compiled in
 * (every runtime .c file but wrappers.c, plus generated/NAME/hak_tables.c):
 *   - libFuzzer:  clang -fsanitize=fuzzer,address,undefined
 *   - plain:      -DFUZZ_STANDALONE, gcc: main() feeds N pseudo-random inputs
 *                 from a fixed seed, or replays the files named on the command line
 *   - sanitized:  the plain driver with -fsanitize=address,undefined
 *
 * Plain driver: fuzz_api [-n RUNS] [-s SEED] [-l MAXLEN] [FILE...]
 *               fuzz_api --write-seeds DIR   (a small seed corpus)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hakmem.h"
#include "hak_spec.h" /* class sizes, for requests at class boundaries */

#define NSLOTS 256
#define MAX_LARGE (4u << 20) /* the largest request the fuzzer makes */

struct slot {
    unsigned char *p;
    size_t req;     /* bytes asked for */
    size_t usable;  /* hak_usable_size when allocated */
    size_t align;   /* alignment asked for (16 for plain calls) */
    uint64_t seed;  /* pattern seed: slot and generation */
};

static struct slot slots[NSLOTS];
static uint64_t generation;
static unsigned long long total_ops;

/* ---- reporting ---- */

static const char *cur_op = "?";

__attribute__((noreturn, format(printf, 1, 2))) static void die(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "fuzz_api: FAIL in %s: ", cur_op);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

/* ---- patterns: one 64-bit word per 8 bytes, derived from seed and index ---- */

static inline uint64_t pat_word(uint64_t seed, size_t i)
{
    uint64_t z = seed + (uint64_t)i * 0x9E3779B97F4A7C15ull;
    z ^= z >> 29;
    z *= 0xBF58476D1CE4E5B9ull;
    return z ^ (z >> 32);
}

static void fill(unsigned char *p, size_t n, uint64_t seed)
{
    size_t w = n / 8;
    for (size_t i = 0; i < w; i++) {
        uint64_t v = pat_word(seed, i);
        memcpy(p + 8 * i, &v, 8);
    }
    if (n % 8) {
        uint64_t v = pat_word(seed, w);
        memcpy(p + 8 * w, &v, n % 8);
    }
}

/* Offset of the first byte of p[0..n) that differs from the pattern, or n. */
static size_t check(const unsigned char *p, size_t n, uint64_t seed)
{
    size_t w = n / 8;
    for (size_t i = 0; i < w; i++) {
        uint64_t v = pat_word(seed, i), got;
        memcpy(&got, p + 8 * i, 8);
        if (got != v) {
            for (size_t b = 0; b < 8; b++)
                if (((unsigned char *)&v)[b] != p[8 * i + b])
                    return 8 * i + b;
        }
    }
    if (n % 8) {
        uint64_t v = pat_word(seed, w);
        for (size_t b = 0; b < n % 8; b++)
            if (((unsigned char *)&v)[b] != p[8 * w + b])
                return 8 * w + b;
    }
    return n;
}

static uint64_t new_seed(unsigned s)
{
    return ((uint64_t)s << 40) ^ (++generation * 0xD6E8FEB86659FD93ull);
}

/* ---- the model ---- */

static void verify_slot(unsigned s)
{
    struct slot *b = &slots[s];
    size_t off = check(b->p, b->usable, b->seed);
    if (off != b->usable)
        die("slot %u: block %p (asked %zu, usable %zu) corrupted at offset %zu: byte 0x%02x",
            s, (void *)b->p, b->req, b->usable, off, b->p[off]);
}

/* A fresh block for slot s: checks, fills and records it. */
static void take(unsigned s, void *ptr, size_t req, size_t align, int zero)
{
    unsigned char *p = ptr;
    if (((uintptr_t)p & 15) != 0)
        die("slot %u: %p (asked %zu) not 16-byte aligned", s, ptr, req);
    if (align > 16 && ((uintptr_t)p & (align - 1)) != 0)
        die("slot %u: %p (asked %zu) not aligned to %zu", s, ptr, req, align);
    size_t usable = hak_usable_size(p);
    if (usable < req)
        die("slot %u: %p usable size %zu < asked %zu", s, ptr, usable, req);
    if (zero) {
        for (size_t i = 0; i < req; i++)
            if (p[i] != 0)
                die("slot %u: calloc block %p (%zu bytes) not zero at %zu", s, ptr, req, i);
    }
    uintptr_t lo = (uintptr_t)p, hi = lo + (usable ? usable : 1);
    for (unsigned t = 0; t < NSLOTS; t++) {
        const struct slot *o = &slots[t];
        if (t == s || o->p == NULL)
            continue;
        uintptr_t olo = (uintptr_t)o->p, ohi = olo + (o->usable ? o->usable : 1);
        if (lo < ohi && olo < hi)
            die("slot %u: [%p, +%zu) overlaps live slot %u [%p, +%zu)", s, ptr, usable, t,
                (void *)o->p, o->usable);
    }
    struct slot *b = &slots[s];
    b->p = p;
    b->req = req;
    b->usable = usable;
    b->align = align;
    b->seed = new_seed(s);
    fill(p, usable, b->seed); /* the whole usable size must be writable */
}

static void release(unsigned s)
{
    struct slot *b = &slots[s];
    if (b->p == NULL)
        return;
    verify_slot(s);
    size_t usable = hak_usable_size(b->p);
    if (usable != b->usable)
        die("slot %u: usable size of %p changed from %zu to %zu", s, (void *)b->p, b->usable, usable);
    hak_free(b->p);
    b->p = NULL;
}

/* ---- input decoding ---- */

struct in {
    const uint8_t *d;
    size_t n, i;
};

static unsigned byte(struct in *in)
{
    return in->i < in->n ? in->d[in->i++] : 0;
}

static unsigned u16(struct in *in)
{
    unsigned lo = byte(in);
    return lo | byte(in) << 8;
}

/* A request size: mostly tiny, then mid, class boundaries, large, zero. */
static size_t pick_size(struct in *in)
{
    unsigned sel = byte(in) % 32;
    unsigned v = u16(in);
    if (sel < 14)
        return v % 1025;                                     /* tiny */
    if (sel < 17)
        return 1 + v % 64;
    if (sel < 23)
        return 1025 + v % (HAK_MAX_CLASS_SIZE - 1024);       /* mid */
    if (sel < 27)                                            /* a class boundary, +-1 */
        return hak_class_info[v % HAK_NUM_CLASSES].size + (v >> 8) % 3 - 1;
    if (sel < 28)
        return HAK_MAX_CLASS_SIZE + (v >> 8) % 3 - 1;        /* the edge of the large path */
    if (sel < 29)
        return HAK_MAX_CLASS_SIZE + 1 + (size_t)v * 4;        /* large, up to ~290 KiB */
    if (sel < 30) {
        if (v % 16 == 0)                                     /* large, up to 4 MiB */
            return (size_t)(v / 16 % 64 + 1) * (MAX_LARGE / 64) - v / 1024 % 3;
        return HAK_MAX_CLASS_SIZE + 1 + (size_t)v * 16;       /* up to ~1 MiB */
    }
    return 0;
}

/* An alignment: a power of two from 1 to 1 MiB (mostly small), sometimes not
 * a power of two. */
static size_t pick_align(struct in *in)
{
    unsigned v = byte(in);
    if (v < 160)
        return (size_t)1 << (v % 8);          /* 1..128 */
    if (v < 224)
        return (size_t)256 << (v % 5);        /* 256..4096 */
    if (v < 240)
        return (size_t)8192 << (v % 8);       /* 8 KiB..1 MiB */
    return (size_t)(v - 230) * 24;            /* 240..600: never a power of two */
}

enum { OP_MALLOC, OP_FREE, OP_REALLOC, OP_CALLOC, OP_ALIGNED, OP_MEMALIGN, OP_USABLE, OP_MISC, OP_COUNT };

static void op_malloc(unsigned s, size_t n)
{
    cur_op = "hak_malloc";
    release(s);
    void *p = hak_malloc(n);
    if (p == NULL)
        die("hak_malloc(%zu) = NULL, errno %d", n, errno);
    take(s, p, n, 16, 0);
}

static void op_realloc(unsigned s, size_t n)
{
    cur_op = "hak_realloc";
    struct slot *b = &slots[s];
    if (b->p == NULL) {
        void *p = hak_realloc(NULL, n);
        if (p == NULL)
            die("hak_realloc(NULL, %zu) = NULL", n);
        take(s, p, n, 16, 0);
        return;
    }
    verify_slot(s);
    if (n == 0) {
        void *q = hak_realloc(b->p, 0); /* frees, like glibc */
        if (q != NULL)
            die("hak_realloc(%p, 0) = %p, expected NULL", (void *)b->p, q);
        b->p = NULL;
        return;
    }
    struct slot old = *b;
    void *q = hak_realloc(b->p, n);
    if (q == NULL)
        die("hak_realloc(%p (%zu), %zu) = NULL", (void *)old.p, old.req, n);
    size_t keep = old.req < n ? old.req : n;
    size_t off = check(q, keep, old.seed);
    if (off != keep)
        die("hak_realloc(%p, %zu -> %zu) = %p lost the contents at offset %zu of %zu", (void *)old.p,
            old.req, n, q, off, keep);
    b->p = NULL; /* the old block is gone (or is q) */
    take(s, q, n, 16, 0);
}

static void op_calloc(unsigned s, size_t count, size_t size)
{
    cur_op = "hak_calloc";
    release(s);
    void *p = hak_calloc(count, size);
    if (p == NULL)
        die("hak_calloc(%zu, %zu) = NULL, errno %d", count, size, errno);
    take(s, p, count * size, 16, 1);
}

static void op_aligned(unsigned s, size_t align, size_t n)
{
    cur_op = "hak_aligned_alloc";
    release(s);
    errno = 0;
    void *p = hak_aligned_alloc(align, n);
    if ((align & (align - 1)) != 0) {
        if (p != NULL || errno != EINVAL)
            die("hak_aligned_alloc(%zu, %zu) = %p errno %d, expected NULL/EINVAL", align, n, p, errno);
        return;
    }
    if (p == NULL)
        die("hak_aligned_alloc(%zu, %zu) = NULL, errno %d", align, n, errno);
    take(s, p, n, align, 0);
}

static void op_memalign(unsigned s, size_t align, size_t n)
{
    cur_op = "hak_posix_memalign";
    release(s);
    void *p = (void *)0x5a5a;
    errno = 1234;
    int rc = hak_posix_memalign(&p, align, n);
    if ((align & (align - 1)) != 0 || align < sizeof(void *)) {
        if (rc != EINVAL || p != (void *)0x5a5a || errno != 1234)
            die("hak_posix_memalign(%zu, %zu) = %d (p %p, errno %d), expected EINVAL, p and errno untouched",
                align, n, rc, p, errno);
        return;
    }
    if (rc != 0 || errno != 1234)
        die("hak_posix_memalign(%zu, %zu) = %d, errno %d", align, n, rc, errno);
    take(s, p, n, align, 0);
}

static void op_usable(unsigned s)
{
    cur_op = "hak_usable_size";
    struct slot *b = &slots[s];
    if (b->p == NULL) {
        if (hak_usable_size(NULL) != 0)
            die("hak_usable_size(NULL) != 0");
        return;
    }
    size_t u = hak_usable_size(b->p);
    if (u != b->usable)
        die("slot %u: usable size of %p changed from %zu to %zu", s, (void *)b->p, b->usable, u);
    verify_slot(s);
}

/* Impossible requests, hak_trim, free(NULL). */
static void op_misc(unsigned s, unsigned what)
{
    static const size_t huge[] = {SIZE_MAX, SIZE_MAX - 4096, (size_t)1 << 62, (size_t)1 << 48};
    size_t h = huge[what / 16 % 4];
    void *p;
    switch (what % 8) {
    case 0:
        cur_op = "hak_malloc(huge)";
        errno = 0;
        p = hak_malloc(h);
        if (p != NULL || errno != ENOMEM)
            die("hak_malloc(%zu) = %p, errno %d: expected NULL/ENOMEM", h, p, errno);
        break;
    case 1:
        cur_op = "hak_calloc(overflow)";
        errno = 0;
        p = hak_calloc(SIZE_MAX / (2 + what % 5) + 1, 2 + what % 5); /* the product overflows */
        if (p != NULL || errno != ENOMEM)
            die("hak_calloc overflow = %p, errno %d: expected NULL/ENOMEM", p, errno);
        break;
    case 2:
        cur_op = "hak_realloc(huge)";
        if (slots[s].p != NULL) {
            errno = 0;
            p = hak_realloc(slots[s].p, h);
            if (p != NULL || errno != ENOMEM)
                die("hak_realloc(%p, %zu) = %p, errno %d: expected NULL/ENOMEM", (void *)slots[s].p, h, p,
                    errno);
            verify_slot(s); /* the old block is kept, untouched */
        }
        break;
    case 3:
        cur_op = "hak_aligned_alloc(huge)";
        errno = 0;
        p = hak_aligned_alloc((size_t)4096 << (what % 5), h);
        if (p != NULL || errno != ENOMEM)
            die("hak_aligned_alloc(huge %zu) = %p, errno %d: expected NULL/ENOMEM", h, p, errno);
        break;
    case 4: {
        cur_op = "hak_posix_memalign(huge)";
        void *q = (void *)0x5a5a;
        int rc = hak_posix_memalign(&q, 64, h);
        if (rc != ENOMEM || q != (void *)0x5a5a)
            die("hak_posix_memalign(64, %zu) = %d (p %p): expected ENOMEM, p untouched", h, rc, q);
        break;
    }
    case 5:
        cur_op = "hak_trim";
        hak_trim();
        break;
    default:
        cur_op = "hak_free(NULL)";
        hak_free(NULL);
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct in in = {data, size, 0};
    while (in.i < in.n) {
        unsigned op = byte(&in) % OP_COUNT;
        unsigned s = byte(&in) % NSLOTS;
        total_ops++;
        switch (op) {
        case OP_MALLOC:
            op_malloc(s, pick_size(&in));
            break;
        case OP_FREE:
            cur_op = "hak_free";
            release(s);
            break;
        case OP_REALLOC:
            op_realloc(s, pick_size(&in));
            break;
        case OP_CALLOC: {
            unsigned c = byte(&in);
            size_t count = c < 200 ? c % 9 : c; /* 0..8 elements, sometimes up to 255 */
            size_t sz = pick_size(&in);
            if (count > 8)
                sz %= 257;  /* many small elements: up to 64 KiB in all */
            else if (count > 1 && sz > HAK_MAX_CLASS_SIZE)
                sz /= count; /* large in all, but no larger than one large request */
            op_calloc(s, count, sz);
            break;
        }
        case OP_ALIGNED: {
            size_t a = pick_align(&in);
            op_aligned(s, a, pick_size(&in));
            break;
        }
        case OP_MEMALIGN: {
            size_t a = pick_align(&in);
            op_memalign(s, a, pick_size(&in));
            break;
        }
        case OP_USABLE:
            op_usable(s);
            break;
        default:
            op_misc(s, byte(&in));
            break;
        }
    }
    cur_op = "end of input";
    for (unsigned s = 0; s < NSLOTS; s++)
        release(s);
    return 0;
}

#ifdef FUZZ_STANDALONE
#include <sys/stat.h>

static uint64_t rng_state;

static uint64_t rng(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void random_input(uint8_t *buf, size_t len)
{
    /* Biased towards short runs of one operation over few slots: blocks get
     * reused, reallocated and freed rather than only replaced. */
    unsigned nslots = 1 + (unsigned)(rng() % 64);
    for (size_t i = 0; i < len; i++) {
        uint64_t r = rng();
        buf[i] = (uint8_t)r;
        if (i % 5 == 1 && (r >> 8) % 4 != 0)
            buf[i] = (uint8_t)((r >> 16) % nslots);
    }
}

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        return 1;
    }
    static uint8_t buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    LLVMFuzzerTestOneInput(buf, n);
    return 0;
}

static int write_seeds(const char *dir)
{
    mkdir(dir, 0755);
    for (int k = 0; k < 8; k++) {
        uint8_t buf[512];
        rng_state = 1000 + (uint64_t)k;
        size_t len = 64 + (size_t)k * 56;
        random_input(buf, len);
        char path[4096];
        snprintf(path, sizeof path, "%s/seed%d", dir, k);
        FILE *f = fopen(path, "wb");
        if (f == NULL || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
            perror(path);
            return 1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    unsigned long runs = 20000;
    uint64_t seed = 12345;
    size_t maxlen = 2048;
    int i = 1;
    if (argc == 3 && strcmp(argv[1], "--write-seeds") == 0)
        return write_seeds(argv[2]);
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "-n") == 0 && i + 1 < argc)
            runs = strtoul(argv[++i], NULL, 0);
        else if (strcmp(argv[i], "-s") == 0 && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 0);
        else if (strcmp(argv[i], "-l") == 0 && i + 1 < argc)
            maxlen = strtoul(argv[++i], NULL, 0);
        else {
            fprintf(stderr, "usage: %s [-n RUNS] [-s SEED] [-l MAXLEN] [FILE...] | --write-seeds DIR\n", argv[0]);
            return 2;
        }
    }
    if (i < argc) {
        int files = argc - i;
        for (; i < argc; i++)
            if (run_file(argv[i]) != 0)
                return 1;
        printf("fuzz_api: %d files replayed, %llu operations, no violation\n", files, total_ops);
        return 0;
    }
    if (maxlen < 1 || maxlen > 65536)
        maxlen = 2048;
    static uint8_t buf[65536];
    for (unsigned long r = 0; r < runs; r++) {
        rng_state = seed * 0x100000001B3ull + r;
        size_t len = 1 + rng() % maxlen;
        random_input(buf, len);
        LLVMFuzzerTestOneInput(buf, len);
    }
    printf("fuzz_api: %lu inputs (seed %llu), %llu operations, no violation\n", runs,
           (unsigned long long)seed, total_ops);
    return 0;
}
#endif
