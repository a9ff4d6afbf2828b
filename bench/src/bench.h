/* bench.h: the few helpers every workload shares.
 *
 * Workloads link against plain libc (+pthread); the allocator under test is
 * injected with LD_PRELOAD, so nothing here may depend on a particular malloc.
 * Each workload prints exactly one line on stdout:
 *
 *   RESULT workload=NAME key=value ... ops=N secs=S ops_per_sec=R
 *          minflt=F maxrss_kb=K checksum=C
 *
 * ops counts malloc+free pairs. checksum is a value read back from the blocks
 * before they are freed: it keeps the compiler from eliding the allocations
 * and, being the same for every allocator, doubles as a correctness check.
 */
#ifndef BENCH_H
#define BENCH_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>

/* splitmix64: a fixed-seed, deterministic PRNG (one state word per stream). */
static inline uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [lo, hi] (bias from the modulo is irrelevant here). */
static inline size_t rng_range(uint64_t *s, size_t lo, size_t hi)
{
    return lo + (size_t)(rng_next(s) % (hi - lo + 1));
}

static inline double now_secs(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Parse a positive integer argument, or exit with a usage message. */
static inline long arg_long(int argc, char **argv, int i, long dflt,
                            const char *usage)
{
    if (i >= argc)
        return dflt;
    char *end;
    errno = 0;
    long v = strtol(argv[i], &end, 10);
    if (*end != '\0' || v <= 0 || errno == ERANGE) {
        fprintf(stderr, "usage: %s %s\n", argv[0], usage);
        exit(2);
    }
    return v;
}

static inline void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (p == NULL) {
        fprintf(stderr, "malloc(%zu) failed\n", n);
        exit(1);
    }
    return p;
}

/* xmalloc(head + n * size): n comes from the command line, and a size
 * that wrapped around would be a small block written far beyond its end. */
static inline size_t bytes_n(size_t head, size_t n, size_t size)
{
    size_t bytes;
    if (__builtin_mul_overflow(n, size, &bytes) ||
        __builtin_add_overflow(bytes, head, &bytes)) {
        fprintf(stderr, "malloc(%zu + %zu * %zu) overflows\n", head, n, size);
        exit(1);
    }
    return bytes;
}

static inline void *xmalloc_n(size_t head, size_t n, size_t size)
{
    return xmalloc(bytes_n(head, n, size));
}

/* Free a block stamped by the workload, returning its stamp (the read keeps
 * the block's first line touched, as a program reading it before free would). */
static inline uint64_t release(void *p)
{
    uint64_t v = *(uint64_t *)p;
    free(p);
    return v;
}

/* A "VmXXX:" field of /proc/self/status in KiB (e.g. "VmRSS", "VmHWM"). */
static inline long proc_status_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    size_t n = strlen(field);
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0 && line[n] == ':') {
            kb = atol(line + n + 1);
            break;
        }
    fclose(f);
    return kb;
}

/* Print the RESULT line: `fields` is the workload's own "key=value ..." part.
 * maxrss_kb is VmHWM, not getrusage's ru_maxrss: the latter survives execve,
 * so a child of a big parent (python's vfork) would report the parent's. */
static inline void print_result(const char *fields, uint64_t ops, double secs,
                                uint64_t checksum)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("RESULT %s ops=%llu secs=%.6f ops_per_sec=%.0f minflt=%ld "
           "maxrss_kb=%ld checksum=%llu\n",
           fields, (unsigned long long)ops, secs, (double)ops / secs,
           ru.ru_minflt, proc_status_kb("VmHWM"),
           (unsigned long long)checksum);
    fflush(stdout);
}

#endif
