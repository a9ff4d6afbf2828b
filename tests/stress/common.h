/* Shared helpers for the stress programs: a deterministic RNG, block size
 * distributions, and content patterns derived from a block's tag so that
 * every block can be verified before it is freed.
 *
 * These programs link against plain libc; the allocator under test is
 * injected with LD_PRELOAD.  Compile with -fno-builtin-malloc etc. so that
 * gcc keeps every call. */
#ifndef STRESS_COMMON_H
#define STRESS_COMMON_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define UNUSED __attribute__((unused))

UNUSED static const char *g_prog = "stress";

/* Print a message and exit non-zero at once, from any thread. */
__attribute__((noreturn, format(printf, 1, 2))) UNUSED static void die(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    int n = snprintf(buf, sizeof buf, "%s: FAIL: ", g_prog);
    va_start(ap, fmt);
    n += vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof buf - 2) n = (int)sizeof buf - 2;
    buf[n++] = '\n';
    (void)!write(2, buf, (size_t)n);
    _exit(1);
}

/* splitmix64: a fast deterministic generator, one state word per thread. */
static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}
static inline uint64_t rng_next(uint64_t *s)
{
    *s += 0x9e3779b97f4a7c15ull;
    return mix64(*s);
}
/* uniform in [lo, hi] */
static inline size_t rng_range(uint64_t *s, size_t lo, size_t hi)
{
    return lo + (size_t)(rng_next(s) % (hi - lo + 1));
}

/* Mostly small, some mid, a few large (up to 256 KiB):
 *   85%  16..1024     5%  1..15     9%  1025..32 KiB    1%  32 KiB..256 KiB */
static inline size_t size_mixed(uint64_t *s)
{
    unsigned r = (unsigned)(rng_next(s) % 100);
    if (r < 85) return rng_range(s, 16, 1024);
    if (r < 90) return rng_range(s, 1, 15);
    if (r < 99) return rng_range(s, 1025, 32768);
    return rng_range(s, 32769, 262144);
}

/* ---- content patterns --------------------------------------------------
 * The byte at offset i of a block with tag t is byte (i % 8) of
 * pat_word(t, i / 8).  Blocks up to FULL_BYTES are written and checked in
 * full; larger ones at their first and last 256 bytes and one word in every
 * 256 bytes (which touches every page) so that millions of blocks stay fast. */
#define FULL_BYTES 4096

static inline uint64_t pat_word(uint64_t tag, size_t wi)
{
    return tag ^ (wi * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)wi << 56);
}
static inline unsigned char pat_byte(uint64_t tag, size_t off)
{
    return (unsigned char)(pat_word(tag, off / 8) >> (8 * (off % 8)));
}

static inline void put_word(unsigned char *p, size_t wi, uint64_t tag)
{
    uint64_t w = pat_word(tag, wi);
    memcpy(p + 8 * wi, &w, 8);
}

/* Write the pattern of `tag` over bytes [from, n) of p; sparse = the large-
 * block scheme above (only when n > FULL_BYTES). */
UNUSED static void fill_range(void *vp, size_t from, size_t n, uint64_t tag, int sparse)
{
    unsigned char *p = vp;
    size_t nw = n / 8, wi = (from + 7) / 8;
    for (size_t i = from; i < n && i % 8; i++) p[i] = pat_byte(tag, i);
    if (!sparse || n <= FULL_BYTES) {
        for (; wi < nw; wi++) put_word(p, wi, tag);
    } else {
        for (; wi < nw; wi++) {
            if (wi >= 32 && wi + 32 < nw && wi % 32) {
                size_t next = (wi / 32 + 1) * 32;
                wi = (next < nw - 32 ? next : nw - 32) - 1;
                continue;
            }
            put_word(p, wi, tag);
        }
    }
    for (size_t i = nw * 8 > from ? nw * 8 : from; i < n; i++) p[i] = pat_byte(tag, i);
}
static inline void fill(void *p, size_t n, uint64_t tag) { fill_range(p, 0, n, tag, 1); }
static inline void fill_full(void *p, size_t n, uint64_t tag) { fill_range(p, 0, n, tag, 0); }

/* Return the offset of the first byte of [0, n) that does not match the
 * pattern (only the positions fill() wrote when sparse), or (size_t)-1. */
UNUSED static size_t check_range(const void *vp, size_t n, uint64_t tag, int sparse)
{
    const unsigned char *p = vp;
    size_t nw = n / 8;
    for (size_t wi = 0; wi < nw; wi++) {
        if (sparse && n > FULL_BYTES && wi >= 32 && wi + 32 < nw && wi % 32) {
            size_t next = (wi / 32 + 1) * 32;
            wi = (next < nw - 32 ? next : nw - 32) - 1;
            continue;
        }
        uint64_t w = pat_word(tag, wi), got;
        memcpy(&got, p + 8 * wi, 8);
        if (got != w)
            for (size_t i = 8 * wi; i < 8 * wi + 8; i++)
                if (p[i] != pat_byte(tag, i)) return i;
    }
    for (size_t i = nw * 8; i < n; i++)
        if (p[i] != pat_byte(tag, i)) return i;
    return (size_t)-1;
}

/* Verify a block; on mismatch report and exit. */
UNUSED static void verify(const void *p, size_t n, uint64_t tag, int sparse, const char *what)
{
    size_t off = check_range(p, n, tag, sparse);
    if (off != (size_t)-1)
        die("%s: block %p size %zu tag %016" PRIx64 ": byte %zu is 0x%02x, expected 0x%02x",
            what, p, n, tag, off, ((const unsigned char *)p)[off], pat_byte(tag, off));
}

/* The alignment malloc must give a block of n bytes: 16 for n >= 16 (glibc's
 * and hakmem's guarantee on x86-64), else the largest power of two <= n
 * (what the C standard requires of jemalloc-style small classes). */
static inline void check_malloc_align(const void *p, size_t n, const char *what)
{
    uintptr_t a = n >= 16 ? 16 : n >= 8 ? 8 : n >= 4 ? 4 : n >= 2 ? 2 : 1;
    if ((uintptr_t)p & (a - 1)) die("%s: %p for %zu bytes is not %zu-byte aligned", what, p, n, (size_t)a);
}

static inline double now_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Resident set size in bytes, from /proc/self/statm. */
/* Resident bytes from /proc/self/statm, read without stdio (fopen mallocs):
 * measuring makes no allocator call. */
UNUSED static size_t rss_bytes(void)
{
    char buf[128];
    int fd = open("/proc/self/statm", O_RDONLY);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    unsigned long size = 0, res = 0;
    buf[n > 0 ? n : 0] = '\0';
    if (sscanf(buf, "%lu %lu", &size, &res) != 2) res = 0;
    return (size_t)res * (size_t)sysconf(_SC_PAGESIZE);
}

/* Optional scale argument: argv[1] multiplies the amount of work. */
static inline double arg_scale(int argc, char **argv)
{
    double s = argc > 1 ? atof(argv[1]) : 1.0;
    return s > 0 ? s : 1.0;
}

#endif
