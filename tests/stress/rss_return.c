/* rss_return: memory goes back to the OS without further calls.
 *
 * Allocates about 128 MiB in blocks of 16..8192 B from two threads, and
 * 32 MiB in blocks of 2 MiB, and frees it all.  Then it makes no allocator call (rss_bytes reads RSS without
 * stdio) and waits, reading RSS every 100 ms: RSS must come back within 8 MiB
 * of where it started (right after the frees it is 20-30 MiB above).  That
 * takes about 1 s (hakmem's default decay_ms); the wait gives up only after
 * 10 s, so that a busy machine delaying the purger fails nothing.  Then
 * malloc_trim(0) must not raise it.  (glibc and the three peers keep most of
 * it; run it against hakmem.)  The program has 1 MiB of static TLS, as some
 * do: glibc refuses a thread whose stack cannot hold it, and hakmem's purger
 * used to ask for a 64 KiB stack, fail, and never purge. */
#include <pthread.h>

#include "common.h"

enum { PER_THREAD = 150000, SLACK_KIB = 8 * 1024 };

__thread char big_tls[1 << 20]; /* every thread's static TLS, the purger's too */

static void *churn(void *arg)
{
    void **blocks = arg;
    uint64_t rng = (uintptr_t)arg;
    for (int i = 0; i < PER_THREAD; i++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        size_t n = 16 + (size_t)((rng >> 33) % 8176);
        blocks[i] = malloc(n);
        if (blocks[i] == NULL)
            die("malloc(%zu) failed", n);
        memset(blocks[i], 0x5A, n < 64 ? n : 64);
        for (size_t off = 4096; off < n; off += 4096)
            ((char *)blocks[i])[off] = 1;
    }
    for (int i = 0; i < PER_THREAD; i++)
        free(blocks[i]);
    return NULL;
}

int main(void)
{
    g_prog = "rss_return";
    ((volatile char *)big_tls)[0] = 1; /* one page of it */
    long start = (long)(rss_bytes() / 1024);
    static void *blocks[2][PER_THREAD];
    memset(blocks, 0, sizeof blocks); /* touched now, so it counts in start */
    start = (long)(rss_bytes() / 1024);
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        if (pthread_create(&t[i], NULL, churn, blocks[i]) != 0)
            die("pthread_create failed");
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    /* and 32 MiB of large blocks, which stay in the large cache until the
     * purger gives them back */
    void *large[16];
    for (int i = 0; i < 16; i++) {
        if ((large[i] = malloc((size_t)2 << 20)) == NULL)
            die("malloc(2 MiB) failed");
        memset(large[i], 0x5A, (size_t)2 << 20);
    }
    for (int i = 0; i < 16; i++)
        free(large[i]);
    long after_free = (long)(rss_bytes() / 1024), later = after_free;
    int waited_ms = 0;
    const struct timespec nap = {0, 100000000};
    while (later > start + SLACK_KIB && waited_ms < 10000) {
        nanosleep(&nap, NULL);
        waited_ms += 100;
        later = (long)(rss_bytes() / 1024);
    }
    malloc_trim(0);
    long trimmed = (long)(rss_bytes() / 1024);
    printf("rss_return: start %ld KiB, after free %ld, %d ms later %ld, after malloc_trim %ld\n",
           start, after_free, waited_ms, later, trimmed);
    if (later > start + SLACK_KIB)
        die("RSS %ld KiB 10 s after freeing everything; started at %ld", later, start);
    if (trimmed > later + 1024)
        die("malloc_trim raised RSS from %ld to %ld KiB", later, trimmed);
    printf("rss_return: ok\n");
    return 0;
}
