/* xthread_free: blocks allocated in one thread, verified and freed in another.
 *
 * P producer threads allocate batches of blocks of mixed sizes (mostly
 * 16..1024 B, some 1..32 KiB, a few up to 256 KiB), fill each with a pattern
 * derived from its tag and pass the batch through a bounded mutex+condvar
 * queue to C consumer threads, which verify and free every block and the
 * batch itself.  For every batch it consumes, a consumer allocates a reply
 * batch of fresh blocks that travels the other way, to be verified and freed
 * by whichever producer picks it up: both directions at once.
 *
 * Usage: xthread_free [SCALE [PRODUCERS [CONSUMERS]]]   (defaults 1 4 4)
 * Exit status 0 when every block arrived intact; 1 with a message otherwise. */
#include "common.h"

#include <pthread.h>
#include <stdatomic.h>

#define FWD_BLOCKS 64   /* blocks per forward batch */
#define REPLY_BLOCKS 24 /* blocks per reply batch */
#define QUEUE_CAP 32    /* forward queue bound, in batches */

struct batch {
    struct batch *next;
    uint64_t tag0;      /* block i has tag mix64(tag0 + i) */
    uint32_t n;
    uint32_t from;
    void *ptr[FWD_BLOCKS];
    uint32_t size[FWD_BLOCKS];
};

struct queue {
    pthread_mutex_t mu;
    pthread_cond_t nonempty, nonfull;
    struct batch *head, *tail;
    size_t len;
};

static struct queue fwd = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0};
static struct queue back = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0};

static int nprod = 4, ncons = 4;
static size_t batches_per_producer;
static size_t total_batches;
static int producers_done;              /* under fwd.mu */
static size_t replies_taken;            /* under back.mu */
static _Atomic uint64_t blocks_freed, bytes_checked;

static void push_locked(struct queue *q, struct batch *b)
{
    b->next = NULL;
    if (q->tail) q->tail->next = b; else q->head = b;
    q->tail = b;
    q->len++;
}
static struct batch *pop_locked(struct queue *q)
{
    struct batch *b = q->head;
    q->head = b->next;
    if (!q->head) q->tail = NULL;
    q->len--;
    return b;
}

static struct batch *make_batch(uint64_t *rng, uint32_t n, uint32_t from)
{
    /* the batch header itself crosses threads too */
    struct batch *b = malloc(sizeof *b);
    if (!b) die("malloc(%zu) for a batch returned NULL", sizeof *b);
    b->n = n;
    b->from = from;
    b->tag0 = rng_next(rng);
    for (uint32_t i = 0; i < n; i++) {
        size_t sz = size_mixed(rng);
        void *p = malloc(sz);
        if (!p) die("malloc(%zu) returned NULL", sz);
        check_malloc_align(p, sz, "malloc");
        fill(p, sz, mix64(b->tag0 + i));
        b->ptr[i] = p;
        b->size[i] = (uint32_t)sz;
    }
    return b;
}

static void consume_batch(struct batch *b, const char *who)
{
    uint64_t bytes = 0;
    for (uint32_t i = 0; i < b->n; i++) {
        verify(b->ptr[i], b->size[i], mix64(b->tag0 + i), 1, who);
        bytes += b->size[i];
        free(b->ptr[i]);
    }
    atomic_fetch_add_explicit(&blocks_freed, b->n, memory_order_relaxed);
    atomic_fetch_add_explicit(&bytes_checked, bytes, memory_order_relaxed);
    free(b);
}

/* Take every reply batch available now (or wait for one when `wait`). */
static int drain_replies(int wait)
{
    int got = 0;
    pthread_mutex_lock(&back.mu);
    for (;;) {
        while (back.head) {
            struct batch *b = pop_locked(&back);
            if (++replies_taken == total_batches) pthread_cond_broadcast(&back.nonempty);
            pthread_mutex_unlock(&back.mu);
            consume_batch(b, "producer verifying a reply");
            got++;
            pthread_mutex_lock(&back.mu);
        }
        if (!wait || got || replies_taken == total_batches) break;
        pthread_cond_wait(&back.nonempty, &back.mu);
    }
    pthread_mutex_unlock(&back.mu);
    return got;
}

static void *producer(void *arg)
{
    uintptr_t id = (uintptr_t)arg;
    uint64_t rng = 0x1000 + id;
    for (size_t k = 0; k < batches_per_producer; k++) {
        struct batch *b = make_batch(&rng, FWD_BLOCKS, (uint32_t)id);
        pthread_mutex_lock(&fwd.mu);
        while (fwd.len >= QUEUE_CAP) pthread_cond_wait(&fwd.nonfull, &fwd.mu);
        push_locked(&fwd, b);
        pthread_cond_signal(&fwd.nonempty);
        pthread_mutex_unlock(&fwd.mu);
        if (k % 4 == 3) drain_replies(0);
    }
    pthread_mutex_lock(&fwd.mu);
    producers_done++;
    pthread_cond_broadcast(&fwd.nonempty);
    pthread_mutex_unlock(&fwd.mu);
    /* keep freeing replies until all of them, from every consumer, are in */
    for (;;) {
        pthread_mutex_lock(&back.mu);
        int finished = replies_taken == total_batches;
        pthread_mutex_unlock(&back.mu);
        if (finished) break;
        drain_replies(1);
    }
    return NULL;
}

static void *consumer(void *arg)
{
    uintptr_t id = (uintptr_t)arg;
    for (;;) {
        pthread_mutex_lock(&fwd.mu);
        while (!fwd.head && producers_done < nprod) pthread_cond_wait(&fwd.nonempty, &fwd.mu);
        if (!fwd.head) {
            pthread_mutex_unlock(&fwd.mu);
            break;
        }
        struct batch *b = pop_locked(&fwd);
        pthread_cond_signal(&fwd.nonfull);
        pthread_mutex_unlock(&fwd.mu);

        /* the reply depends only on the batch answered, not on scheduling */
        uint64_t rng = b->tag0 ^ 0x5eed;
        consume_batch(b, "consumer verifying a forward batch");

        struct batch *r = make_batch(&rng, REPLY_BLOCKS, (uint32_t)(1000 + id));
        pthread_mutex_lock(&back.mu);
        push_locked(&back, r);
        pthread_cond_signal(&back.nonempty);
        pthread_mutex_unlock(&back.mu);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    g_prog = "xthread_free";
    double scale = arg_scale(argc, argv);
    if (argc > 2) nprod = atoi(argv[2]);
    if (argc > 3) ncons = atoi(argv[3]);
    if (nprod < 1 || ncons < 1 || nprod > 64 || ncons > 64) die("bad thread counts %d %d", nprod, ncons);
    /* about 2.2M blocks at scale 1 */
    batches_per_producer = (size_t)(25000 * scale / nprod);
    if (batches_per_producer < 1) batches_per_producer = 1;
    total_batches = batches_per_producer * (size_t)nprod;

    double t0 = now_sec();
    pthread_t pt[64], ct[64];
    for (int i = 0; i < ncons; i++)
        if (pthread_create(&ct[i], NULL, consumer, (void *)(uintptr_t)i)) die("pthread_create failed");
    for (int i = 0; i < nprod; i++)
        if (pthread_create(&pt[i], NULL, producer, (void *)(uintptr_t)i)) die("pthread_create failed");
    for (int i = 0; i < nprod; i++) pthread_join(pt[i], NULL);
    for (int i = 0; i < ncons; i++) pthread_join(ct[i], NULL);

    uint64_t want = (uint64_t)total_batches * (FWD_BLOCKS + REPLY_BLOCKS);
    uint64_t got = atomic_load(&blocks_freed);
    if (got != want) die("freed %" PRIu64 " blocks, expected %" PRIu64, got, want);
    if (fwd.head || back.head) die("queues not empty at exit");
    printf("xthread_free: ok: %d producers, %d consumers, %" PRIu64 " blocks (%.0f MiB) crossed threads in %.2f s, rss %.1f MiB\n",
           nprod, ncons, got, atomic_load(&bytes_checked) / 1048576.0, now_sec() - t0, rss_bytes() / 1048576.0);
    return 0;
}
