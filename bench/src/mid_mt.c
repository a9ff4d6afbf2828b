/* mid_mt THREADS ITER [WORKSET]: 1..32 KiB blocks, half freed by another thread.
 *
 * Each thread keeps WORKSET (default 256) live blocks of 1 KiB..32 KiB. A step
 * picks a random slot, releases its block and mallocs a new one of random size
 * there. Half of the released blocks (chosen at random) are freed locally, the
 * other half are batched (64 per batch) and posted to the next thread's
 * mailbox; each thread drains its own mailbox every 64 steps
 * (HAKMEM's Mid-Large MT). ops = THREADS * ITER.
 */
#include <pthread.h>
#include "mailbox.h"

#define MIN_SIZE 1024
#define MAX_SIZE 32768
#define BATCH 64

struct worker {
    pthread_t tid;
    long id;
    uint64_t sum;
    char pad[64]; /* keep workers' sums on different cache lines */
};

static long nthreads, iter, workset;
static struct mailbox *mailboxes;
static pthread_barrier_t start;
static atomic_int running;

static void *new_block(uint64_t *rng, uint64_t stamp)
{
    void *p = xmalloc(rng_range(rng, MIN_SIZE, MAX_SIZE));
    *(uint64_t *)p = stamp;
    return p;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct mailbox *mine = &mailboxes[w->id];
    struct mailbox *next = &mailboxes[(w->id + 1) % nthreads];
    uint64_t rng = 42 + (uint64_t)w->id, sum = 0;
    uint64_t stamp_base = (uint64_t)w->id << 40;

    void **slots = xmalloc_n(0, (size_t)workset, sizeof *slots);
    for (long i = 0; i < workset; i++)
        slots[i] = new_block(&rng, stamp_base + (uint64_t)i);
    struct batch *out = batch_new(BATCH);
    pthread_barrier_wait(&start);

    for (long i = 0; i < iter; i++) {
        uint64_t r = rng_next(&rng);
        long slot = (long)((uint32_t)r % (uint64_t)workset);
        void *old = slots[slot];
        if (r >> 63) {
            out->p[out->n++] = old; /* freed by the next thread */
            if (out->n == BATCH) {
                sum += mailbox_post(next, out, mine);
                out = batch_new(BATCH);
            }
        } else {
            sum += *(uint64_t *)old;
            free(old);
        }
        slots[slot] = new_block(&rng, stamp_base + (uint64_t)(workset + i));
        if (i % BATCH == 0)
            sum += mailbox_drain(mine);
    }

    for (long i = 0; i < workset; i++) {
        sum += *(uint64_t *)slots[i];
        free(slots[i]);
    }
    free(slots);
    sum += mailbox_post(next, out, mine);
    atomic_fetch_sub(&running, 1);
    w->sum = sum + mailbox_drain_until_idle(mine, &running);
    return NULL;
}

int main(int argc, char **argv)
{
    const char *usage = "THREADS ITER [WORKSET]";
    nthreads = arg_long(argc, argv, 1, 2, usage);
    iter = arg_long(argc, argv, 2, 1000000, usage);
    workset = arg_long(argc, argv, 3, 256, usage);
    (void)bytes_n(0, (size_t)workset, sizeof(void *)); /* each thread's slots: checked here, once */

    struct worker *workers = xmalloc_n(0, (size_t)nthreads, sizeof *workers);
    mailboxes = xmalloc_n(0, (size_t)nthreads, sizeof *mailboxes);
    for (long t = 0; t < nthreads; t++)
        mailbox_init(&mailboxes[t]);
    atomic_init(&running, (int)nthreads);
    pthread_barrier_init(&start, NULL, (unsigned)nthreads + 1);
    for (long t = 0; t < nthreads; t++) {
        workers[t].id = t;
        if (pthread_create(&workers[t].tid, NULL, worker_main, &workers[t])) {
            fprintf(stderr, "mid_mt: pthread_create failed\n");
            return 1;
        }
    }

    pthread_barrier_wait(&start);
    double t0 = now_secs();
    uint64_t sum = 0;
    for (long t = 0; t < nthreads; t++) {
        pthread_join(workers[t].tid, NULL);
        sum += workers[t].sum;
    }
    double secs = now_secs() - t0;

    char fields[128];
    snprintf(fields, sizeof fields, "workload=mid_mt threads=%ld ws=%ld",
             nthreads, workset);
    print_result(fields, (uint64_t)nthreads * (uint64_t)iter, secs, sum);
    return 0;
}
