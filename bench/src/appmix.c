/* appmix [REQUESTS] [LIVE]: an application-like mix of sizes, live set and bursts.
 *
 * The sizes a program's heap sees, rather than a uniform range:
 *  - records of six struct types at odd sizes: 24, 40, 72, 136, 200 and
 *    520 B (weights 30, 25, 18, 12, 9, 6);
 *  - strings, one per record in two: 8..1023 B, log-uniform by octave (most
 *    are short), and one in 16 of them 1..8 KiB (the long tail);
 *  - one buffer per request: a power of two plus a 16-byte header, 1040,
 *    2064 or 4112 B (a 1, 2 or 4 KiB payload; weights 5, 3, 2).
 * LIVE long-lived objects (default 100,000: a cache, a symbol table) are
 * drawn from the same mix at start-up.  Each request (REQUESTS of them,
 * default 300,000) picks a record type and builds a batch of 1..127 records
 * of it (log-uniform: a burst of one size class), strings and a buffer,
 * stamps every block, reads the stamps back, keeps one object in 16 in the
 * long-lived table (freeing the one it replaces) and frees the rest in
 * reverse order (a burst of frees).
 *
 * ops counts the mallocs of the requests (each one freed once: a kept
 * object frees the one it replaces); set-up and the final free of the live
 * set are not timed.  Fixed-seed splitmix64: every allocator does the same
 * work and gets the same checksum.
 */
#include "bench.h"

#define MAX_BATCH 127
#define KEEP_ONE_IN 16

static const size_t record_size[] = {24, 40, 72, 136, 200, 520};
static const unsigned record_weight[] = {30, 25, 18, 12, 9, 6};
static const size_t buffer_size[] = {1040, 2064, 4112};
static const unsigned buffer_weight[] = {5, 3, 2};
#define NTYPES (sizeof record_size / sizeof record_size[0])
#define NBUFS (sizeof buffer_size / sizeof buffer_size[0])

static unsigned pick(uint64_t *rng, const unsigned *weight, unsigned n)
{
    unsigned total = 0;
    for (unsigned i = 0; i < n; i++)
        total += weight[i];
    unsigned r = (unsigned)(rng_next(rng) % total);
    for (unsigned i = 0;; i++) {
        if (r < weight[i])
            return i;
        r -= weight[i];
    }
}

/* Log-uniform by octave in [lo, 2^k lo): an octave [2^i lo, 2^(i+1) lo)
 * picked uniformly, then a size uniformly within it. */
static size_t octaves(uint64_t *rng, size_t lo, unsigned k)
{
    size_t base = lo << (rng_next(rng) % k);
    return rng_range(rng, base, 2 * base - 1);
}

static size_t string_size(uint64_t *rng)
{
    if (rng_next(rng) % 16 == 0)
        return octaves(rng, 1024, 3); /* 1..8 KiB */
    return octaves(rng, 8, 7);        /* 8..1023 B */
}

static size_t buffer(uint64_t *rng)
{
    return buffer_size[pick(rng, buffer_weight, NBUFS)];
}

/* One object of the whole mix, for the initial live set (same proportions
 * as a request makes them: per record, 1/2 string and about 1/26 buffer). */
static size_t any_size(uint64_t *rng)
{
    uint64_t r = rng_next(rng) % 1000;
    if (r < 650)
        return record_size[pick(rng, record_weight, NTYPES)];
    if (r < 975)
        return string_size(rng);
    return buffer(rng);
}

static void *new_block(size_t size, uint64_t stamp)
{
    void *p = malloc(size);
    if (p == NULL) {
        fprintf(stderr, "appmix: malloc(%zu) failed\n", size);
        exit(1);
    }
    *(uint64_t *)p = stamp;
    ((unsigned char *)p)[size - 1] = (unsigned char)stamp; /* touch the end too */
    return p;
}

int main(int argc, char **argv)
{
    const char *usage = "[REQUESTS] [LIVE]";
    long requests = arg_long(argc, argv, 1, 300000, usage);
    long live = arg_long(argc, argv, 2, 100000, usage);
    uint64_t rng = 42, sum = 0, ops = 0, stamp = 0;

    void **table = xmalloc_n(0, (size_t)live, sizeof *table);
    for (long i = 0; i < live; i++)
        table[i] = new_block(any_size(&rng), stamp++);

    void *batch[3 * MAX_BATCH + 1];
    double t0 = now_secs();
    for (long r = 0; r < requests; r++) {
        size_t rec = record_size[pick(&rng, record_weight, NTYPES)];
        long n = (long)octaves(&rng, 1, 7); /* 1..127 */
        int k = 0;
        batch[k++] = new_block(buffer(&rng), stamp++);
        for (long i = 0; i < n; i++) {
            batch[k++] = new_block(rec, stamp++);
            if (rng_next(&rng) & 1)
                batch[k++] = new_block(string_size(&rng), stamp++);
        }
        ops += (uint64_t)k;
        for (int i = 0; i < k; i++)
            sum += *(uint64_t *)batch[i];
        while (k > 0) {
            void *p = batch[--k];
            if (rng_next(&rng) % KEEP_ONE_IN == 0) {
                long slot = (long)(rng_next(&rng) % (uint64_t)live);
                sum += release(table[slot]);
                table[slot] = p;
            } else {
                sum += release(p);
            }
        }
    }
    double secs = now_secs() - t0;

    for (long i = 0; i < live; i++)
        sum += release(table[i]);
    free(table);

    char fields[128];
    snprintf(fields, sizeof fields, "workload=appmix requests=%ld live=%ld", requests, live);
    print_result(fields, ops, secs, sum);
    return 0;
}
