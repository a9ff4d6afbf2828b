/*
 * The runtime's multi-threaded paths under ThreadSanitizer.  The runtime is
 * compiled into this binary with -fsanitize=thread and called through the
 * hak_ API (replacing malloc would fight the sanitizer's own allocator).
 * Each case verifies contents; any race report fails the run
 * (TSAN_OPTIONS=halt_on_error=1).  Prints "N passed, M failed".
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hakmem.h"

static int failures;

#define CHECK(cond, ...)                                                                   \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "FAIL %s:%d: ", __func__, __LINE__);                           \
            fprintf(stderr, __VA_ARGS__);                                                  \
            fputc('\n', stderr);                                                           \
            return 1;                                                                      \
        }                                                                                  \
    } while (0)

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Sizes over tiny, mid and a few large ones. */
static size_t pick_size(uint64_t *rng)
{
    uint64_t r = rng_next(rng);
    switch (r % 16) {
    case 0: return 1024 + (r >> 8) % (32 * 1024);
    case 1: return (r >> 8) % 64 == 0 ? 40000 + (r >> 16) % 200000 : 2000;
    default: return 1 + (r >> 8) % 1024;
    }
}

static void fill(unsigned char *p, size_t n, uint64_t tag)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(tag + i * 31);
}

static int verify(const unsigned char *p, size_t n, uint64_t tag)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(tag + i * 31))
            return 0;
    return 1;
}

/* ---- producer/consumer through a bounded queue ---- */

struct item {
    unsigned char *p;
    size_t n;
    uint64_t tag;
};

enum { QCAP = 1024 };
static struct {
    pthread_mutex_t lock;
    pthread_cond_t more, room;
    struct item items[QCAP];
    unsigned head, count, producers_left;
} q = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER};

enum { PRODUCERS = 3, CONSUMERS = 3, PER_PRODUCER = 40000 };
static int consumer_bad;

static void *producer(void *arg)
{
    uint64_t rng = (uintptr_t)arg;
    for (int i = 0; i < PER_PRODUCER; i++) {
        struct item it = {.n = pick_size(&rng), .tag = rng_next(&rng)};
        it.p = hak_malloc(it.n);
        fill(it.p, it.n, it.tag);
        pthread_mutex_lock(&q.lock);
        while (q.count == QCAP)
            pthread_cond_wait(&q.room, &q.lock);
        q.items[(q.head + q.count++) % QCAP] = it;
        pthread_cond_signal(&q.more);
        pthread_mutex_unlock(&q.lock);
    }
    pthread_mutex_lock(&q.lock);
    q.producers_left--;
    pthread_cond_broadcast(&q.more);
    pthread_mutex_unlock(&q.lock);
    return NULL;
}

static void *consumer(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&q.lock);
        while (q.count == 0 && q.producers_left > 0)
            pthread_cond_wait(&q.more, &q.lock);
        if (q.count == 0) {
            pthread_mutex_unlock(&q.lock);
            return NULL;
        }
        struct item it = q.items[q.head];
        q.head = (q.head + 1) % QCAP;
        q.count--;
        pthread_cond_signal(&q.room);
        pthread_mutex_unlock(&q.lock);
        if (!verify(it.p, it.n, it.tag))
            __atomic_fetch_add(&consumer_bad, 1, __ATOMIC_RELAXED);
        hak_free(it.p);
    }
}

static int producer_consumer(void)
{
    pthread_t t[PRODUCERS + CONSUMERS];
    q.producers_left = PRODUCERS;
    for (int i = 0; i < PRODUCERS; i++)
        CHECK(pthread_create(&t[i], NULL, producer, (void *)(uintptr_t)(i + 1)) == 0, "pthread_create failed");
    for (int i = 0; i < CONSUMERS; i++)
        CHECK(pthread_create(&t[PRODUCERS + i], NULL, consumer, NULL) == 0, "pthread_create failed");
    for (int i = 0; i < PRODUCERS + CONSUMERS; i++)
        pthread_join(t[i], NULL);
    CHECK(consumer_bad == 0, "%d blocks arrived corrupted", consumer_bad);
    return 0;
}

/* ---- many threads free one thread's blocks at once (MPSC remote lists) ---- */

enum { MPSC_THREADS = 8, MPSC_BLOCKS = 40000 };
static unsigned char *mpsc_blocks[MPSC_BLOCKS];

static void *free_share(void *arg)
{
    uintptr_t k = (uintptr_t)arg;
    for (size_t i = k; i < MPSC_BLOCKS; i += MPSC_THREADS)
        hak_free(mpsc_blocks[i]);
    return NULL;
}

static int mpsc_remote_frees(void)
{
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < MPSC_BLOCKS; i++) {
            mpsc_blocks[i] = hak_malloc(16 + (i % 8) * 16);
            fill(mpsc_blocks[i], 16, i);
        }
        pthread_t t[MPSC_THREADS];
        for (uintptr_t k = 0; k < MPSC_THREADS; k++)
            CHECK(pthread_create(&t[k], NULL, free_share, (void *)k) == 0, "pthread_create failed");
        for (int k = 0; k < MPSC_THREADS; k++)
            pthread_join(t[k], NULL);
        /* everything came back: allocating as much again finds no corruption */
        for (size_t i = 0; i < MPSC_BLOCKS; i++) {
            mpsc_blocks[i] = hak_malloc(16 + (i % 8) * 16);
            fill(mpsc_blocks[i], 16 + (i % 8) * 16, i);
        }
        for (size_t i = 0; i < MPSC_BLOCKS; i++) {
            CHECK(verify(mpsc_blocks[i], 16 + (i % 8) * 16, i), "block %zu overlaps another", i);
            hak_free(mpsc_blocks[i]);
        }
    }
    return 0;
}

/* ---- short-lived threads leave blocks for main ---- */

enum { CHURN_THREADS = 2000, LEFT = 4 };
struct churn {
    unsigned char *left[LEFT];
    size_t n[LEFT];
};

static void *churn_thread(void *arg)
{
    struct churn *c = arg;
    uint64_t rng = (uintptr_t)arg;
    void *tmp[16];
    for (int i = 0; i < 16; i++)
        tmp[i] = hak_malloc(pick_size(&rng));
    for (int i = 0; i < 16; i += 2)
        hak_free(tmp[i]);
    for (int i = 0; i < LEFT; i++) {
        c->n[i] = pick_size(&rng);
        c->left[i] = hak_malloc(c->n[i]);
        fill(c->left[i], c->n[i], (uintptr_t)c + (uint64_t)i);
    }
    for (int i = 1; i < 16; i += 2)
        hak_free(tmp[i]);
    return NULL;
}

static int thread_churn(void)
{
    static struct churn c[8];
    for (int round = 0; round < CHURN_THREADS / 8; round++) {
        pthread_t t[8];
        for (int i = 0; i < 8; i++)
            CHECK(pthread_create(&t[i], NULL, churn_thread, &c[i]) == 0, "pthread_create failed");
        for (int i = 0; i < 8; i++)
            pthread_join(t[i], NULL);
        for (int i = 0; i < 8; i++)
            for (int j = 0; j < LEFT; j++) {
                CHECK(verify(c[i].left[j], c[i].n[j], (uintptr_t)&c[i] + (uint64_t)j),
                      "block left by a thread changed");
                hak_free(c[i].left[j]);
            }
    }
    CHECK(hak_trim() == 0 || hak_trim() >= 0, "hak_trim");
    return 0;
}

/* ---- realloc and calloc racing in threads ---- */

static void *realloc_worker(void *arg)
{
    uint64_t rng = (uintptr_t)arg;
    unsigned char *p = NULL;
    size_t n = 0;
    for (int i = 0; i < 3000; i++) {
        size_t m = pick_size(&rng);
        p = hak_realloc(p, m);
        size_t keep = n < m ? n : m;
        if (!verify(p, keep, 7)) {
            __atomic_fetch_add(&consumer_bad, 1, __ATOMIC_RELAXED);
            break;
        }
        fill(p, m, 7);
        n = m;
        unsigned char *z = hak_calloc(1, m);
        for (size_t j = 0; j < m; j++)
            if (z[j]) {
                __atomic_fetch_add(&consumer_bad, 1, __ATOMIC_RELAXED);
                break;
            }
        hak_free(z);
    }
    hak_free(p);
    return NULL;
}

static int realloc_calloc_mt(void)
{
    consumer_bad = 0;
    pthread_t t[4];
    for (uintptr_t i = 0; i < 4; i++)
        CHECK(pthread_create(&t[i], NULL, realloc_worker, (void *)(i + 11)) == 0, "pthread_create failed");
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    CHECK(consumer_bad == 0, "realloc lost content or calloc was not zero");
    return 0;
}

/* ---- threads whose first call is a free, all at once ---- */

/* Before its first miss a thread's caches are a block shared by every such
 * thread, whose rooms free's front writes (HAK_ROOM_TAKE, hak_abi.h): the
 * blocks freed must each come back once, and the writes be no race. */
enum { FIRST_THREADS = 8 };
static unsigned char *first_blocks[FIRST_THREADS];
static pthread_barrier_t first_ready;

static void *free_first(void *arg)
{
    uintptr_t k = (uintptr_t)arg;
    pthread_barrier_wait(&first_ready);
    hak_free(first_blocks[k]);
    unsigned char *again = hak_malloc(64);
    fill(again, 64, k);
    int ok = verify(again, 64, k);
    hak_free(again);
    return ok ? NULL : arg;
}

static int first_call_free(void)
{
    for (int round = 0; round < 20; round++) {
        for (int k = 0; k < FIRST_THREADS; k++) {
            first_blocks[k] = hak_malloc(64);
            fill(first_blocks[k], 64, 100 + (uint64_t)k);
        }
        CHECK(pthread_barrier_init(&first_ready, NULL, FIRST_THREADS) == 0, "barrier");
        pthread_t t[FIRST_THREADS];
        for (uintptr_t k = 0; k < FIRST_THREADS; k++)
            CHECK(pthread_create(&t[k], NULL, free_first, (void *)k) == 0, "pthread_create failed");
        for (int k = 0; k < FIRST_THREADS; k++) {
            void *bad;
            pthread_join(t[k], &bad);
            CHECK(bad == NULL, "thread %d: its block was overwritten", k);
        }
        pthread_barrier_destroy(&first_ready);
    }
    return 0;
}

int main(void)
{
    struct {
        const char *name;
        int (*fn)(void);
    } cases[] = {
        {"producer_consumer", producer_consumer},
        {"mpsc_remote_frees", mpsc_remote_frees},
        {"thread_churn", thread_churn},
        {"realloc_calloc_mt", realloc_calloc_mt},
        {"first_call_free", first_call_free},
    };
    int passed = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int bad = cases[i].fn();
        printf("%s %s\n", bad ? "FAIL" : "PASS", cases[i].name);
        passed += !bad;
        failures += bad;
    }
    printf("%d passed, %d failed\n", passed, failures);
    return failures != 0;
}
