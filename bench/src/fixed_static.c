/* fixed_static ITER WORKSET: the fixed loop, statically specialized.
 *
 * Same ring as fixed.c, but calling hak_malloc/hak_free_sized from hakmem.h with
 * BENCH_SIZE a compile-time constant, linked against libhakmem.a: the size
 * class is resolved at compile time and the fast path is inlined, which no
 * LD_PRELOADed allocator can do. One binary per size (-DBENCH_SIZE=64).
 */
#define HAKMEM_STATIC 1 /* hak_malloc/hak_free: the inline generated front */
#include "bench.h"
#include "hakmem.h"

#ifndef BENCH_SIZE
#error "compile with -DBENCH_SIZE=<bytes>"
#endif
_Static_assert(BENCH_SIZE >= 8, "BENCH_SIZE must be at least 8");

static uint64_t run(void **ring, long ws, long iter)
{
    uint64_t sum = 0;
    long slot = 0;
    for (long i = 0; i < iter; i++) {
        void *old = ring[slot];
        sum += *(uint64_t *)old;
        hak_free_sized(old, BENCH_SIZE);
        void *p = hak_malloc(BENCH_SIZE);
        *(uint64_t *)p = (uint64_t)i;
        ring[slot] = p;
        if (++slot == ws)
            slot = 0;
    }
    return sum;
}

int main(int argc, char **argv)
{
    const char *usage = "ITER WORKSET";
    long iter = arg_long(argc, argv, 1, 10000000, usage);
    long ws = arg_long(argc, argv, 2, 128, usage);

    void **ring = xmalloc_n(0, (size_t)ws, sizeof *ring);
    for (long i = 0; i < ws; i++) {
        ring[i] = hak_malloc(BENCH_SIZE);
        *(uint64_t *)ring[i] = (uint64_t)i;
    }

    double t0 = now_secs();
    uint64_t sum = run(ring, ws, iter);
    double secs = now_secs() - t0;

    for (long i = 0; i < ws; i++) {
        sum += *(uint64_t *)ring[i];
        hak_free(ring[i]);
    }
    free(ring);

    char fields[128];
    snprintf(fields, sizeof fields, "workload=fixed_static size=%d ws=%ld",
             BENCH_SIZE, ws);
    print_result(fields, (uint64_t)iter, secs, sum);
    return 0;
}
