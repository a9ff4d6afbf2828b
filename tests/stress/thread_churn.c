/* thread_churn: many short-lived threads; nothing may be lost at thread exit.
 *
 * Creates THREADS threads (default 20000) in batches of 8.  Each allocates
 * 48 blocks of mixed sizes, fills them, verifies and frees half (every other
 * one) and leaves the rest for the main thread, which verifies and frees
 * them after the join.  One batch in four is created detached and signals
 * completion through a counter instead of being joined.  At the end the
 * resident set size (from /proc/self/statm) must stay below a generous bound
 * (default 200 MiB): per-thread caches that are not returned when a thread
 * exits would grow it with every thread.
 *
 * Usage: thread_churn [SCALE [RSS_LIMIT_MIB]]
 * Exit status 0 on success; 1 with a message otherwise. */
#include "common.h"

#include <pthread.h>
#include <stdatomic.h>

#define BATCH 8
#define BLOCKS 48

struct job {
    uint64_t seed;
    void *ptr[BLOCKS];
    size_t size[BLOCKS];
    uint64_t tag[BLOCKS];
    int done;
};

static pthread_mutex_t done_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cv = PTHREAD_COND_INITIALIZER;
static int detached_done;

static void *worker(void *arg)
{
    struct job *j = arg;
    uint64_t rng = j->seed;
    for (int i = 0; i < BLOCKS; i++) {
        size_t sz = (i % 16 == 15) ? rng_range(&rng, 1025, 65536) : rng_range(&rng, 1, 1024);
        void *p = malloc(sz);
        if (!p) die("thread: malloc(%zu) returned NULL", sz);
        check_malloc_align(p, sz, "thread malloc");
        j->ptr[i] = p;
        j->size[i] = sz;
        j->tag[i] = rng_next(&rng);
        fill(p, sz, j->tag[i]);
    }
    /* free half, the others stay for main */
    for (int i = 0; i < BLOCKS; i += 2) {
        verify(j->ptr[i], j->size[i], j->tag[i], 1, "thread freeing its own block");
        free(j->ptr[i]);
        j->ptr[i] = NULL;
    }
    /* short-lived garbage that the thread's cache must give back at exit */
    for (int i = 0; i < 32; i++) {
        size_t sz = rng_range(&rng, 16, 512);
        void *p = malloc(sz);
        if (!p) die("thread: malloc(%zu) returned NULL", sz);
        memset(p, 0x5a, sz);
        free(p);
    }
    return NULL;
}

static void *detached_worker(void *arg)
{
    worker(arg);
    pthread_mutex_lock(&done_mu);
    ((struct job *)arg)->done = 1;
    detached_done++;
    pthread_cond_broadcast(&done_cv);
    pthread_mutex_unlock(&done_mu);
    return NULL;
}

static void reap(struct job *j)
{
    for (int i = 1; i < BLOCKS; i += 2) {
        verify(j->ptr[i], j->size[i], j->tag[i], 1, "main freeing a dead thread's block");
        free(j->ptr[i]);
    }
}

int main(int argc, char **argv)
{
    g_prog = "thread_churn";
    double scale = arg_scale(argc, argv);
    size_t limit_mib = argc > 2 ? (size_t)atol(argv[2]) : 200;
    long nthreads = (long)(20000 * scale);
    if (nthreads < BATCH) nthreads = BATCH;
    size_t rss_start = rss_bytes(), rss_peak = 0;
    double t0 = now_sec();

    struct job jobs[BATCH];
    long created = 0;
    for (long b = 0; created < nthreads; b++) {
        int detached = b % 4 == 3;
        pthread_t th[BATCH];
        detached_done = 0;
        for (int i = 0; i < BATCH; i++) {
            memset(&jobs[i], 0, sizeof jobs[i]);
            jobs[i].seed = mix64((uint64_t)(created + i) + 1);
            int rc;
            if (detached) {
                pthread_attr_t a;
                pthread_attr_init(&a);
                pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
                rc = pthread_create(&th[i], &a, detached_worker, &jobs[i]);
                pthread_attr_destroy(&a);
            } else {
                rc = pthread_create(&th[i], NULL, worker, &jobs[i]);
            }
            if (rc) die("pthread_create: %s (after %ld threads)", strerror(rc), created + i);
        }
        if (detached) {
            pthread_mutex_lock(&done_mu);
            while (detached_done < BATCH) pthread_cond_wait(&done_cv, &done_mu);
            pthread_mutex_unlock(&done_mu);
        } else {
            for (int i = 0; i < BATCH; i++) pthread_join(th[i], NULL);
        }
        for (int i = 0; i < BATCH; i++) reap(&jobs[i]);
        created += BATCH;
        if (b % 256 == 0) {
            size_t r = rss_bytes();
            if (r > rss_peak) rss_peak = r;
        }
    }
    /* let the last detached threads finish exiting before measuring */
    usleep(20000);
    size_t rss = rss_bytes();
    if (rss > rss_peak) rss_peak = rss;
    printf("thread_churn: ok: %ld threads in %.2f s, rss start %.1f MiB, peak sampled %.1f MiB, end %.1f MiB (limit %zu MiB)\n",
           created, now_sec() - t0, rss_start / 1048576.0, rss_peak / 1048576.0, rss / 1048576.0, limit_mib);
    if (rss > limit_mib * 1048576) die("rss %.1f MiB at the end exceeds %zu MiB", rss / 1048576.0, limit_mib);
    return 0;
}
