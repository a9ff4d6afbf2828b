/* large ITER [LIVE]: big blocks, 64 KiB .. 32 MiB, LIVE (default 4) at a time.
 *
 * Sizes are log-uniform: a random power-of-two octave from 64 KiB to 16 MiB,
 * then a uniform size within it. Each new block is touched on every page
 * (one byte per 4096), so an allocator that hands back fresh mappings pays
 * the page faults and one that reuses its spans does not.
 */
#include "bench.h"

#define PAGE 4096
#define MIN_SHIFT 16 /* 64 KiB */
#define MAX_SHIFT 25 /* sizes stay below 32 MiB */

static size_t random_size(uint64_t *rng)
{
    uint64_t r = rng_next(rng);
    unsigned shift = MIN_SHIFT + (unsigned)(r % (MAX_SHIFT - MIN_SHIFT));
    size_t octave = (size_t)1 << shift;
    return octave + (size_t)((r >> 8) % octave);
}

static void *new_block(size_t size, uint64_t stamp)
{
    unsigned char *p = malloc(size);
    if (p == NULL) {
        fprintf(stderr, "large: malloc(%zu) failed\n", size);
        exit(1);
    }
    for (size_t off = 0; off < size; off += PAGE)
        p[off] = (unsigned char)stamp;
    return p;
}

int main(int argc, char **argv)
{
    const char *usage = "ITER [LIVE]";
    long iter = arg_long(argc, argv, 1, 2000, usage);
    long live = arg_long(argc, argv, 2, 4, usage);

    uint64_t rng = 42, sum = 0;
    unsigned char **slots = xmalloc_n(0, (size_t)live, sizeof *slots);
    for (long i = 0; i < live; i++)
        slots[i] = new_block(random_size(&rng), (uint64_t)i);

    double t0 = now_secs();
    for (long i = 0; i < iter; i++) {
        long slot = i % live;
        sum += slots[slot][0];
        free(slots[slot]);
        slots[slot] = new_block(random_size(&rng), (uint64_t)i);
    }
    double secs = now_secs() - t0;

    for (long i = 0; i < live; i++) {
        sum += slots[i][0];
        free(slots[i]);
    }
    free(slots);

    char fields[128];
    snprintf(fields, sizeof fields, "workload=large live=%ld", live);
    print_result(fields, (uint64_t)iter, secs, sum);
    return 0;
}
