/* mixed ITER WORKSET [MAXSIZE]: random sizes 16..MAXSIZE (default 1040).
 *
 * WORKSET live blocks; each step frees a random slot and mallocs a block of
 * random size into it (HAKMEM's Random Mixed). With WORKSET 256 the blocks
 * stay in cache; with 8192 the free lists are cold and spread over pages.
 */
#include "bench.h"

#define MIN_SIZE 16

static uint64_t run(void **ring, long ws, long iter, size_t max, uint64_t *rng)
{
    uint64_t sum = 0;
    size_t span = max - MIN_SIZE + 1;
    for (long i = 0; i < iter; i++) {
        uint64_t r = rng_next(rng);
        long slot = (long)((uint32_t)r % (uint64_t)ws);
        size_t size = MIN_SIZE + (size_t)((r >> 32) % span);
        void *old = ring[slot];
        sum += *(uint64_t *)old;
        free(old);
        void *p = malloc(size);
        *(uint64_t *)p = (uint64_t)i;
        ring[slot] = p;
    }
    return sum;
}

int main(int argc, char **argv)
{
    const char *usage = "ITER WORKSET [MAXSIZE]";
    long iter = arg_long(argc, argv, 1, 10000000, usage);
    long ws = arg_long(argc, argv, 2, 256, usage);
    size_t max = (size_t)arg_long(argc, argv, 3, 1040, usage);
    if (max < MIN_SIZE) {
        fprintf(stderr, "mixed: MAXSIZE must be at least %d\n", MIN_SIZE);
        return 2;
    }

    uint64_t rng = 42;
    void **ring = xmalloc_n(0, (size_t)ws, sizeof *ring);
    for (long i = 0; i < ws; i++) {
        ring[i] = xmalloc(rng_range(&rng, MIN_SIZE, max));
        *(uint64_t *)ring[i] = (uint64_t)i;
    }

    double t0 = now_secs();
    uint64_t sum = run(ring, ws, iter, max, &rng);
    double secs = now_secs() - t0;

    for (long i = 0; i < ws; i++) {
        sum += *(uint64_t *)ring[i];
        free(ring[i]);
    }
    free(ring);

    char fields[128];
    snprintf(fields, sizeof fields, "workload=mixed ws=%ld maxsize=%zu", ws, max);
    print_result(fields, (uint64_t)iter, secs, sum);
    return 0;
}
