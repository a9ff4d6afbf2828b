/* fixed ITER SIZE WORKSET: one block size, a ring of WORKSET live blocks.
 *
 * Step i frees the block in slot i % WORKSET and mallocs a new SIZE-byte block
 * into it: the allocator's hottest path (HAKMEM's bench_fixed_size).
 * fixed_static.c runs the same loop with hak_malloc/hak_free inlined.
 */
#include "bench.h"

static uint64_t run(void **ring, long ws, long iter, size_t size)
{
    uint64_t sum = 0;
    long slot = 0;
    for (long i = 0; i < iter; i++) {
        void *old = ring[slot];
        sum += *(uint64_t *)old;
        free(old);
        void *p = malloc(size);
        *(uint64_t *)p = (uint64_t)i;
        ring[slot] = p;
        if (++slot == ws)
            slot = 0;
    }
    return sum;
}

int main(int argc, char **argv)
{
    const char *usage = "ITER SIZE WORKSET";
    long iter = arg_long(argc, argv, 1, 10000000, usage);
    size_t size = (size_t)arg_long(argc, argv, 2, 64, usage);
    long ws = arg_long(argc, argv, 3, 128, usage);
    if (size < sizeof(uint64_t)) {
        fprintf(stderr, "fixed: SIZE must be at least 8\n");
        return 2;
    }

    void **ring = xmalloc_n(0, (size_t)ws, sizeof *ring);
    for (long i = 0; i < ws; i++) {
        ring[i] = xmalloc(size);
        *(uint64_t *)ring[i] = (uint64_t)i;
    }

    double t0 = now_secs();
    uint64_t sum = run(ring, ws, iter, size);
    double secs = now_secs() - t0;

    for (long i = 0; i < ws; i++) {
        sum += *(uint64_t *)ring[i];
        free(ring[i]);
    }
    free(ring);

    char fields[128];
    snprintf(fields, sizeof fields, "workload=fixed size=%zu ws=%ld", size, ws);
    print_result(fields, (uint64_t)iter, secs, sum);
    return 0;
}
