/* selftest: the pattern helpers of common.h catch a corrupted byte wherever
 * they claim to look, never touch bytes past the block, and agree whether a
 * block is filled in one go or in two ranges.  Run first by run.sh so that a
 * broken checker cannot make the other programs pass. */
#include "common.h"

int main(void)
{
    g_prog = "selftest";
    uint64_t rng = 1;
    for (int it = 0; it < 20000; it++) {
        size_t n = rng_range(&rng, 1, 70000);
        int sparse = it & 1;
        unsigned char *p = malloc(n + 16);
        if (!p) die("malloc(%zu) returned NULL", n + 16);
        memset(p, 0xAA, n + 16);
        fill_range(p, 0, n, 77 + (uint64_t)it, sparse);
        if (check_range(p, n, 77 + (uint64_t)it, sparse) != (size_t)-1) die("fresh block of %zu mismatches", n);
        for (int i = 0; i < 16; i++)
            if (p[n + i] != 0xAA) die("fill of %zu bytes wrote past the end", n);

        size_t k = rng_range(&rng, 0, n);
        memset(p, 0, n);
        fill_range(p, 0, k, 5, 0);
        fill_range(p, k, n, 5, 0);
        if (check_range(p, n, 5, 0) != (size_t)-1) die("fill split at %zu of %zu mismatches", k, n);

        fill_range(p, 0, n, 9, sparse);
        size_t off = it % 3 == 0 ? 0 : it % 3 == 1 ? n - 1 : rng_range(&rng, 0, n - 1);
        if (sparse && n > FULL_BYTES && it % 3 == 2) off = off / 256 * 256;
        p[off] ^= 1;
        size_t found = check_range(p, n, 9, sparse);
        if (found != off) die("corrupted byte %zu of %zu not found (found %zu)", off, n, found);
        free(p);
    }
    puts("selftest: ok: pattern checker catches corrupted bytes");
    return 0;
}
