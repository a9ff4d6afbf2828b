/*
 * The transfer caches (runtime/transfer.c): whole batches between threads'
 * caches, bounded, found by the guarded free, and given back after decay_ms
 * or by malloc_trim.  Each test runs in its own process (Check's fork mode),
 * so the caches start empty.
 */
#define _GNU_SOURCE
#include <check.h>
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "quiet_class.h"

#define CLS (quiet_class())


static void **ring(unsigned cls)
{
    return (void **)(hak_thread_bin(cls) + 1);
}

/* `batches` batches of CLS's blocks, taken from h, as one calloc'd array. */
static void **blocks_of(struct hak_heap *h, uint32_t batches)
{
    uint32_t n = batches * hak_class_info[CLS].refill;
    void **b = calloc(n, sizeof *b);
    ck_assert_uint_eq(hak_heap_take(h, CLS, b, n), n);
    return b;
}

/* One batch of CLS's blocks from a new heap, carrying the key as a flush
 * leaves them (guarded mode), put in the transfer cache; returns it. */
static void **put_cached_batch(void)
{
    void **b = blocks_of(hak_heap_acquire(), 1);
    if (HAK_GUARDED)
        for (uint32_t i = 0; i < hak_class_info[CLS].refill; i++)
            HAK_KEY_WORD(b[i]) = hak_cache_key();
    ck_assert(hak_transfer_put(CLS, b));
    return b;
}

/* A batch comes out as it went in, the last one put first; a full class
 * takes no more, an empty one gives nothing; what it holds is counted and
 * found. */
START_TEST(batches_move_whole)
{
    uint32_t cap = hak_transfer_capacity(CLS), batch = hak_class_info[CLS].refill;
    if (cap == 0)
        return; /* this variant has no transfers (decay_ms 0, or no cache) */
    void **b = blocks_of(hak_heap_acquire(), cap + 1);
    void **out = calloc(batch, sizeof *out);
    ck_assert(!hak_transfer_take(CLS, out));
    for (uint32_t k = 0; k < cap; k++)
        ck_assert(hak_transfer_put(CLS, b + k * batch));
    ck_assert(!hak_transfer_put(CLS, b + cap * batch)); /* full */
    ck_assert_uint_eq(hak_transfer_bytes(), (size_t)cap * batch * hak_class_info[CLS].stride);
    for (uint32_t i = 0; i < cap * batch; i++)
        ck_assert(hak_transfer_holds(CLS, b[i]));
    ck_assert(!hak_transfer_holds(CLS, b[cap * batch]));
    for (uint32_t k = cap; k-- > 0;) {
        ck_assert(hak_transfer_take(CLS, out));
        for (uint32_t i = 0; i < batch; i++)
            ck_assert_ptr_eq(out[i], b[k * batch + i]);
    }
    ck_assert(!hak_transfer_take(CLS, out));
    ck_assert_uint_eq(hak_transfer_bytes(), 0);
    free(b);
    free(out);
}
END_TEST

static void *malloc_two(void *arg)
{
    void **got = arg;
    got[0] = malloc(hak_class_info[CLS].size);
    got[1] = malloc(hak_class_info[CLS].size);
    return NULL;
}

/* A thread whose cache is empty takes a whole batch before it looks at its
 * heap, also on its first refill, which takes less from the heap (a page's
 * worth; CLS's blocks are larger than a page).  A ring: its first malloc
 * returns the batch's last block, the next one the block before it (the
 * ring is a stack).  A list: the first returns the batch's first block, and
 * the others went onto the list last first, so the next one is its second. */
START_TEST(refill_takes_a_batch_first)
{
    uint32_t batch = hak_class_info[CLS].refill;
    if (hak_transfer_capacity(CLS) == 0)
        return;
    void **b = put_cached_batch();
    void *got[2];
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, malloc_two, got), 0);
    pthread_join(t, NULL);
    ck_assert_ptr_eq(got[0], b[hak_class_info[CLS].ring_first ? batch - 1 : 0]);
    ck_assert_ptr_eq(got[1], b[hak_class_info[CLS].ring_first ? batch - 2 : 1]);
    if (HAK_GUARDED)
        ck_assert_uint_eq(HAK_KEY_WORD(got[0]), 0); /* handed out: no key */
    ck_assert_uint_eq(hak_transfer_bytes(), 0);
    free(b);
}
END_TEST

/* Another thread with caches, parked until other_thread_stop: while it
 * lives, the calling thread's flushes may go to the transfer cache. */
static pthread_t other;
static int other_ready[2], other_stop[2]; /* pipes */

static void *park(void *unused)
{
    (void)unused;
    free(malloc(8)); /* its caches are set up */
    ck_assert_int_eq(write(other_ready[1], "", 1), 1);
    char c;
    ck_assert_int_eq(read(other_stop[0], &c, 1), 0); /* until the other end closes */
    return NULL;
}

static void other_thread_start(void)
{
    free(malloc(8)); /* the caller's caches are set up too */
    ck_assert_int_eq(pipe(other_ready), 0);
    ck_assert_int_eq(pipe(other_stop), 0);
    ck_assert_int_eq(pthread_create(&other, NULL, park, NULL), 0);
    char c;
    ck_assert_int_eq(read(other_ready[0], &c, 1), 1);
}

static void other_thread_stop(void)
{
    close(other_stop[1]);
    ck_assert_int_eq(pthread_join(other, NULL), 0);
    close(other_stop[0]);
    close(other_ready[0]);
    close(other_ready[1]);
}

/* n blocks of class cls, malloc'd by this thread, in a calloc'd array. */
static void **malloc_blocks(unsigned cls, uint32_t n)
{
    void **p = calloc(n, sizeof *p);
    for (uint32_t i = 0; i < n; i++)
        ck_assert_ptr_nonnull(p[i] = malloc(hak_class_info[cls].size));
    return p;
}

/* The transfer cache holds exactly one batch of class cls, blocks[0..refill),
 * each carrying the key as cached blocks do (guarded mode: a second free
 * finds them). */
static void assert_one_batch_held(unsigned cls, void *const *blocks)
{
    const struct hak_class_info *ci = &hak_class_info[cls];
    ck_assert_uint_eq(hak_transfer_bytes(), (size_t)ci->refill * ci->stride);
    for (uint32_t k = 0; k < ci->refill; k++) {
        ck_assert(hak_transfer_holds(cls, blocks[k]));
        if (HAK_GUARDED)
            ck_assert_uint_eq(HAK_KEY_WORD(blocks[k]), hak_cache_key());
    }
}

/* Free p[0..] until CLS's ring (its only cache tier) is full; copy its
 * oldest `refill` blocks, which a flush gives back, to oldest; return how
 * many blocks it freed. */
static uint32_t fill_ring(void **p, void **oldest)
{
    uint32_t i = 0;
    while (hak_thread_bin(CLS)->ring_s - 1 < hak_class_info[CLS].ring)
        free(p[i++]);
    for (uint32_t k = 0; k < hak_class_info[CLS].refill; k++)
        oldest[k] = ring(CLS)[k];
    return i;
}

/* Whether CLS is a ring then the slab (the ring spec's mid classes; the
 * default has no ring), and
 * transfers: the class the flush tests use. */
static bool ring_only_transfers(void)
{
    const struct hak_class_info *ci = &hak_class_info[CLS];
    return hak_transfer_capacity(CLS) > 0 && ci->ring_first && !(ci->tiers & HAK_TIER_SLL);
}

/* The ring flush tests' set-up: ring + 1 blocks of CLS to fill its ring and
 * overflow it, room for the oldest `refill` of them, and a second thread,
 * so that flushes go to the transfer cache.  False where CLS is not a
 * ring-only class with transfers (the test then has nothing to check). */
struct ring_flush {
    void **p, **oldest;
};

static bool ring_flush_start(struct ring_flush *f)
{
    if (!ring_only_transfers())
        return false;
    other_thread_start();
    f->p = malloc_blocks(CLS, hak_class_info[CLS].ring + 1);
    f->oldest = calloc(hak_class_info[CLS].refill, sizeof *f->oldest);
    return true;
}

static void ring_flush_stop(struct ring_flush *f)
{
    free(f->oldest);
    free(f->p);
    other_thread_stop();
}

/* A full ring's flush puts its oldest `refill` blocks there as one batch,
 * and keeps the rest, moved down, while another thread has caches. */
START_TEST(flush_puts_the_oldest_blocks)
{
    const struct hak_class_info *ci = &hak_class_info[CLS];
    struct ring_flush f;
    if (!ring_flush_start(&f))
        return;
    void **p = f.p, **oldest = f.oldest;
    uint32_t i = fill_ring(p, oldest);
    void *above = ring(CLS)[ci->refill];
    ck_assert_uint_eq(hak_transfer_bytes(), 0);
    free(p[i]); /* the ring is full: the flush comes first */
    assert_one_batch_held(CLS, oldest);
    ck_assert_ptr_eq(ring(CLS)[0], above);
    ck_assert_uint_eq(hak_thread_bin(CLS)->ring_s - 1, ci->ring - ci->refill + 1);
    ck_assert_ptr_eq(ring(CLS)[ci->ring - ci->refill], p[i]);
    ring_flush_stop(&f);
}
END_TEST

/* A fork child has one thread, whatever its parent had: its flushes go to
 * its spans.  The parent's, with its other thread, go to the transfer
 * cache. */
START_TEST(fork_child_flushes_to_spans)
{
    const struct hak_class_info *ci = &hak_class_info[CLS];
    struct ring_flush f;
    if (!ring_flush_start(&f))
        return;
    void **p = f.p, **oldest = f.oldest;
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        free(p[fill_ring(p, oldest)]); /* the flush */
        bool spans = hak_transfer_bytes() == 0;
        for (uint32_t k = 0; k < ci->refill; k++)
            spans = spans && hak_heap_holds_free(hak_tls.heap, CLS, oldest[k]);
        _exit(spans ? 0 : 1);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 0);
    free(p[fill_ring(p, oldest)]);
    ck_assert_uint_eq(hak_transfer_bytes(), (size_t)ci->refill * ci->stride);
    ck_assert(hak_transfer_holds(CLS, oldest[0]));
    ring_flush_stop(&f);
}
END_TEST

/* The largest class whose last cache tier is the list (a ring then a list,
 * or a list alone), if it transfers (the default spec's largest mid class;
 * none in the ring spec);
 * HAK_NUM_CLASSES if none. */
static unsigned list_class(void)
{
    for (unsigned c = HAK_NUM_CLASSES; c-- > 0;) {
        const struct hak_class_info *ci = &hak_class_info[c];
        bool list_last = (ci->tiers & HAK_TIER_SLL) && (ci->ring_first || !(ci->tiers & HAK_TIER_RING));
        if (list_last && hak_transfer_capacity(c) > 0)
            return c;
    }
    return HAK_NUM_CLASSES;
}

/* Free p[0..] until every cache tier of class c is full; return how many
 * blocks it freed (the next free flushes). */
static uint32_t fill_tiers(unsigned c, void **p)
{
    const struct hak_class_info *ci = &hak_class_info[c];
    struct hak_bin *b = hak_thread_bin(c);
    uint32_t i = 0;
    while ((ci->ring > 0 && b->ring_s - 1 < ci->ring) || hak_bin_sll_length(c, b) < ci->sll)
        free(p[i++]);
    return i;
}

/* A class whose last cache tier is the list flushes the list's first
 * `refill` blocks, the last ones freed, as one batch. */
START_TEST(flush_from_the_list_puts_its_head)
{
    unsigned c = list_class();
    if (c == HAK_NUM_CLASSES)
        return;
    const struct hak_class_info *ci = &hak_class_info[c];
    other_thread_start();
    struct hak_bin *b = hak_thread_bin(c);
    void **p = malloc_blocks(c, ci->ring + ci->sll + 1);
    uint32_t i = fill_tiers(c, p);
    ck_assert_uint_ge(i, ci->refill);
    ck_assert_uint_eq(hak_transfer_bytes(), 0);
    free(p[i]); /* both tiers full: the flush comes first */
    assert_one_batch_held(c, p + i - ci->refill); /* the last refill freed */
    ck_assert(!hak_transfer_holds(c, p[i - ci->refill - 1]));
    ck_assert_uint_eq(hak_bin_sll_length(c, b), ci->sll - ci->refill + 1);
    ck_assert_ptr_eq(b->sll_head, p[i]);
    ck_assert_ptr_eq(*(void **)p[i], p[i - ci->refill - 1]);
    free(p);
    other_thread_stop();
}
END_TEST

/* The process's only thread with caches flushes to its spans: there is no
 * other thread to take a batch, and the spans can be freed (single-threaded
 * phases).  Also once the other thread has exited. */
START_TEST(only_thread_flushes_to_spans)
{
    const struct hak_class_info *ci = &hak_class_info[CLS];
    if (!ring_only_transfers())
        return;
    for (int round = 0; round < 2; round++) {
        if (round == 1) { /* a thread that came and went */
            other_thread_start();
            other_thread_stop();
        }
        void **p = malloc_blocks(CLS, ci->ring + 1);
        void **oldest = calloc(ci->refill, sizeof *oldest);
        uint32_t i = fill_ring(p, oldest);
        free(p[i]); /* the flush */
        ck_assert_uint_eq(hak_transfer_bytes(), 0);
        ck_assert_uint_eq(hak_thread_bin(CLS)->ring_s - 1, ci->ring - ci->refill + 1);
        for (uint32_t k = 0; k < ci->refill; k++) /* free in their spans */
            ck_assert(hak_heap_holds_free(hak_tls.heap, CLS, oldest[k]));
        ck_assert(!hak_heap_holds_free(hak_tls.heap, CLS, ring(CLS)[0])); /* cached */
        for (uint32_t k = i + 1; k < ci->ring + 1; k++)
            free(p[k]);
        free(oldest);
        free(p);
    }
}
END_TEST

/* The same for a class whose last cache tier is the list: the list's first
 * `refill` blocks, the last ones freed, go back to their spans, the block
 * freed then stays at the head. */
START_TEST(only_thread_flushes_the_list_to_spans)
{
    unsigned c = list_class();
    if (c == HAK_NUM_CLASSES)
        return;
    const struct hak_class_info *ci = &hak_class_info[c];
    for (int round = 0; round < 2; round++) {
        if (round == 1) { /* a thread that came and went */
            other_thread_start();
            other_thread_stop();
        }
        uint32_t n = ci->ring + ci->sll + 1;
        void **p = malloc_blocks(c, n);
        struct hak_bin *b = hak_thread_bin(c);
        uint32_t i = fill_tiers(c, p);
        ck_assert_uint_ge(i, ci->refill);
        free(p[i]); /* both tiers full: the flush */
        ck_assert_uint_eq(hak_transfer_bytes(), 0);
        ck_assert_uint_eq(hak_bin_sll_length(c, b), ci->sll - ci->refill + 1);
        for (uint32_t k = i - ci->refill; k < i; k++) /* free in their spans */
            ck_assert(hak_heap_holds_free(hak_tls.heap, c, p[k]));
        ck_assert(!hak_heap_holds_free(hak_tls.heap, c, p[i - ci->refill - 1])); /* cached */
        ck_assert_ptr_eq(b->sll_head, p[i]);
        for (uint32_t k = i + 1; k < n; k++)
            free(p[k]);
        free(p);
    }
}
END_TEST

static void *fill_and_exit(void *unused)
{
    (void)unused;
    const struct hak_class_info *ci = &hak_class_info[CLS];
    uint32_t n = ci->ring + ci->sll + ci->refill + 1;
    void **p = calloc(n, sizeof *p);
    for (uint32_t i = 0; i < n; i++)
        p[i] = malloc(ci->size);
    for (uint32_t i = 0; i < n; i++)
        free(p[i]);
    free(p);
    return NULL;
}

/* A thread overflows CLS's caches, so that a flush puts a batch in the
 * transfer cache, and exits; returns what the transfer cache holds. */
static size_t fill_from_exited_thread(void)
{
    free(malloc(8)); /* this thread has caches: the other's flushes transfer */
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, fill_and_exit, NULL), 0);
    pthread_join(t, NULL);
    ck_assert_uint_gt(hak_transfer_bytes(), 0);
    return hak_transfer_bytes();
}

/* Batches no thread takes go back to their spans once decay_ms has passed,
 * at the first poll after it, and the spans of the exited thread that made
 * them are freed: the region map forgets them.  Not before. */
START_TEST(idle_batches_go_back_after_decay)
{
    if (hak_transfer_capacity(CLS) == 0)
        return;
    size_t held = fill_from_exited_thread();
    void *out[64]; /* to find a block the transfer cache holds */
    ck_assert_uint_le(hak_class_info[CLS].refill, 64);
    ck_assert(hak_transfer_take(CLS, out));
    void *one = out[0];
    ck_assert(hak_transfer_put(CLS, out)); /* back, and it counts as put now */
    ck_assert_uint_eq(hak_transfer_bytes(), held);
    /* a release before the batch is due keeps it, and says when it will be */
    uint64_t now = hak_now_ms(), next = UINT64_MAX;
    hak_transfer_release(hak_heap_shared_lock(), now, false, &next);
    hak_heap_shared_unlock();
    ck_assert_uint_eq(hak_transfer_bytes(), held);
    ck_assert_uint_gt(next, now);
    ck_assert_uint_le(next, now + HAK_DECAY_MS);
    ck_assert_uint_eq(hak_region_code((uintptr_t)one), CLS + 1);
    usleep((HAK_DECAY_MS + 100) * 1000);
    /* the poll here, or the purger if the exited thread started one */
    for (int waited = 0; hak_transfer_bytes() > 0 && waited < 10000; waited += 50) {
        hak_decay_poll();
        usleep(50 * 1000);
    }
    ck_assert_uint_eq(hak_transfer_bytes(), 0);
    ck_assert_uint_ne(hak_region_code((uintptr_t)one), CLS + 1);
}
END_TEST

/* A pass that releases no batch (malloc_trim's purge, or the one after a
 * failed mmap) still schedules the next one for what the transfer cache
 * holds: a poll after decay_ms gives it back.  It used to drop that due
 * time, and the batches stayed for good. */
START_TEST(pass_without_release_keeps_batches_due)
{
    if (hak_transfer_capacity(CLS) == 0)
        return;
    void **b = put_cached_batch();
    hak_decay_purge_all();
    ck_assert_uint_gt(hak_transfer_bytes(), 0);
    usleep((HAK_DECAY_MS + 100) * 1000);
    hak_decay_poll();
    ck_assert_uint_eq(hak_transfer_bytes(), 0);
    free(b);
}
END_TEST

/* malloc_trim gives every batch back at once. */
START_TEST(trim_gives_back_everything)
{
    if (hak_transfer_capacity(CLS) == 0)
        return;
    fill_from_exited_thread();
    malloc_trim(0);
    ck_assert_uint_eq(hak_transfer_bytes(), 0);
}
END_TEST

Suite *suite_transfer(void)
{
    Suite *s = suite_create("transfer");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, batches_move_whole);
    tcase_add_test(tc, refill_takes_a_batch_first);
    tcase_add_test(tc, flush_puts_the_oldest_blocks);
    tcase_add_test(tc, only_thread_flushes_to_spans);
    tcase_add_test(tc, flush_from_the_list_puts_its_head);
    tcase_add_test(tc, only_thread_flushes_the_list_to_spans);
    tcase_add_test(tc, fork_child_flushes_to_spans);
    tcase_add_test(tc, idle_batches_go_back_after_decay);
    tcase_add_test(tc, pass_without_release_keeps_batches_due);
    tcase_add_test(tc, trim_gives_back_everything);
    suite_add_tcase(s, tc);
    return s;
}
