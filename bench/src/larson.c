/* larson THREADS ITER [WORKSET [MINSIZE [MAXSIZE]]]: a larson-style server.
 *
 * Each thread owns an array of WORKSET (default 1000) blocks of MINSIZE..
 * MAXSIZE bytes (default 16..1024). A step replaces a random slot with a new
 * block of random size. Every 4 * WORKSET steps the thread hands its whole
 * array to the next thread, which frees those blocks, and fills a fresh array:
 * objects outlive the thread that allocated them, as in larson's server model.
 * Unlike the original, the work is a fixed number of steps (ITER per thread),
 * not a wall-clock time, so every allocator does the same work.
 * ops = mallocs (each one freed once, by this thread or another).
 */
#include <limits.h>
#include <pthread.h>
#include "mailbox.h"

struct worker {
    pthread_t tid;
    long id;
    uint64_t sum, ops;
    char pad[64]; /* keep workers' counters on different cache lines */
};

static long nthreads, iter, workset, min_size, max_size;
static struct mailbox *mailboxes;
static pthread_barrier_t start;
static atomic_int running;

static void *new_block(uint64_t *rng, uint64_t stamp)
{
    void *p = xmalloc(rng_range(rng, (size_t)min_size, (size_t)max_size));
    *(uint64_t *)p = stamp;
    return p;
}

static struct batch *new_array(uint64_t *rng, uint64_t *stamp)
{
    struct batch *a = batch_new(workset);
    for (a->n = 0; a->n < workset; a->n++)
        a->p[a->n] = new_block(rng, (*stamp)++);
    return a;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct mailbox *mine = &mailboxes[w->id];
    struct mailbox *next = &mailboxes[(w->id + 1) % nthreads];
    uint64_t rng = 42 + (uint64_t)w->id, sum = 0, ops = 0;
    uint64_t stamp = (uint64_t)w->id << 40;
    long handoff = 4 * workset;

    pthread_barrier_wait(&start);
    struct batch *a = new_array(&rng, &stamp);
    ops += (uint64_t)workset;
    for (long i = 1; i <= iter; i++) {
        uint64_t r = rng_next(&rng);
        long slot = (long)((uint32_t)r % (uint64_t)workset);
        sum += *(uint64_t *)a->p[slot];
        free(a->p[slot]);
        a->p[slot] = new_block(&rng, stamp++);
        ops++;
        if (i % handoff == 0) {
            /* the next thread frees these blocks */
            sum += mailbox_post(next, a, mine);
            a = new_array(&rng, &stamp);
            ops += (uint64_t)workset;
            sum += mailbox_drain(mine);
        }
    }
    sum += mailbox_post(next, a, mine);
    atomic_fetch_sub(&running, 1);
    w->sum = sum + mailbox_drain_until_idle(mine, &running);
    w->ops = ops;
    return NULL;
}

int main(int argc, char **argv)
{
    const char *usage = "THREADS ITER [WORKSET [MINSIZE [MAXSIZE]]]";
    nthreads = arg_long(argc, argv, 1, 2, usage);
    iter = arg_long(argc, argv, 2, 2000000, usage);
    workset = arg_long(argc, argv, 3, 1000, usage);
    min_size = arg_long(argc, argv, 4, 16, usage);
    max_size = arg_long(argc, argv, 5, 1024, usage);
    if (min_size < 8 || max_size < min_size) {
        fprintf(stderr, "larson: need 8 <= MINSIZE <= MAXSIZE\n");
        return 2;
    }
    if (workset > LONG_MAX / 4) { /* the hand-off period, 4 * WORKSET steps */
        fprintf(stderr, "larson: WORKSET too large\n");
        return 2;
    }
    (void)batch_bytes(workset); /* here, not in every thread at once (one message) */

    struct worker *workers = xmalloc_n(0, (size_t)nthreads, sizeof *workers);
    mailboxes = xmalloc_n(0, (size_t)nthreads, sizeof *mailboxes);
    for (long t = 0; t < nthreads; t++)
        mailbox_init(&mailboxes[t]);
    atomic_init(&running, (int)nthreads);
    pthread_barrier_init(&start, NULL, (unsigned)nthreads + 1);
    for (long t = 0; t < nthreads; t++) {
        workers[t].id = t;
        if (pthread_create(&workers[t].tid, NULL, worker_main, &workers[t])) {
            fprintf(stderr, "larson: pthread_create failed\n");
            return 1;
        }
    }

    pthread_barrier_wait(&start);
    double t0 = now_secs();
    uint64_t sum = 0, ops = 0;
    for (long t = 0; t < nthreads; t++) {
        pthread_join(workers[t].tid, NULL);
        sum += workers[t].sum;
        ops += workers[t].ops;
    }
    double secs = now_secs() - t0;

    char fields[160];
    snprintf(fields, sizeof fields,
             "workload=larson threads=%ld ws=%ld minsize=%ld maxsize=%ld",
             nthreads, workset, min_size, max_size);
    print_result(fields, ops, secs, sum);
    return 0;
}
