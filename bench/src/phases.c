/* phases [NSMALL]: a phase change that strands memory in a fragmented heap.
 *
 *  1. malloc NSMALL (default 1M) blocks of 16..256 B;
 *  2. free 90% of them, chosen at random (every slab/page keeps a survivor);
 *  3. malloc NSMALL/40 blocks of 1..8 KiB (about as many bytes as were freed);
 *  4. free everything.
 *
 * Reports peak RSS (VmHWM) and the RSS left after step 4 (VmRSS), both in KiB,
 * plus the RSS at start so the program's own footprint can be subtracted.
 * ops counts malloc+free pairs over all four steps.
 */
#include "bench.h"

#define SMALL_MIN 16
#define SMALL_MAX 256
#define BIG_MIN 1024
#define BIG_MAX 8192

static void *new_block(size_t size, uint64_t stamp)
{
    void *p = xmalloc(size);
    *(uint64_t *)p = stamp;
    return p;
}

int main(int argc, char **argv)
{
    long nsmall = arg_long(argc, argv, 1, 1000000, "[NSMALL]");
    long nbig = nsmall / 40;
    long start_rss_kb = proc_status_kb("VmRSS");
    uint64_t rng = 42, sum = 0;

    void **small = xmalloc_n(0, (size_t)nsmall, sizeof *small);
    void **big = xmalloc_n(0, (size_t)(nbig ? nbig : 1), sizeof *big);

    double t0 = now_secs();
    for (long i = 0; i < nsmall; i++)
        small[i] = new_block(rng_range(&rng, SMALL_MIN, SMALL_MAX), (uint64_t)i);
    for (long i = 0; i < nsmall; i++)
        if (rng_next(&rng) % 10 != 0) {
            sum += release(small[i]);
            small[i] = NULL;
        }
    for (long i = 0; i < nbig; i++)
        big[i] = new_block(rng_range(&rng, BIG_MIN, BIG_MAX), (uint64_t)i);
    for (long i = 0; i < nsmall; i++)
        if (small[i] != NULL)
            sum += release(small[i]);
    for (long i = 0; i < nbig; i++)
        sum += release(big[i]);
    double secs = now_secs() - t0;

    free(small);
    free(big);
    long peak_rss_kb = proc_status_kb("VmHWM");
    long final_rss_kb = proc_status_kb("VmRSS");

    char fields[192];
    snprintf(fields, sizeof fields,
             "workload=phases nsmall=%ld nbig=%ld start_rss_kb=%ld "
             "peak_rss_kb=%ld final_rss_kb=%ld",
             nsmall, nbig, start_rss_kb, peak_rss_kb, final_rss_kb);
    print_result(fields, (uint64_t)(nsmall + nbig), secs, sum);
    return 0;
}
