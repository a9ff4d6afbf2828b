/*
 * Thread lifecycle (runtime/thread.c): what a thread's exit leaves behind
 * goes back to the OS.  Each test runs in its own process (Check's fork
 * mode), so the pool of thread blocks starts empty.
 */
#define _GNU_SOURCE
#include <check.h>
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"
#include "quiet_class.h"

#if !HAK_TLS_STATIC
/* ---- the pool of exited threads' blocks ---- */

/* Whether p's page is mapped (mincore fails with ENOMEM where nothing is). */
static bool page_mapped(const void *p)
{
    unsigned char v;
    return mincore((void *)((uintptr_t)p & ~(uintptr_t)(HAK_PAGE - 1)), HAK_PAGE, &v) == 0;
}

#define BURST 8
static pthread_barrier_t all_started;

/* Start, note this thread's block, and wait until BURST threads have one:
 * alive at once, so that each maps its own. */
static void *start_and_wait(void *block)
{
    free(malloc(16));
    *(void **)block = hak_tls_block;
    pthread_barrier_wait(&all_started);
    return NULL;
}

/* Run BURST threads at once; their blocks, in the pool once they exit
 * (with decay_ms 0, unmapped at once). */
static void burst_of_threads(void **blocks)
{
    pthread_t t[BURST];
    ck_assert_int_eq(pthread_barrier_init(&all_started, NULL, BURST), 0);
    for (int i = 0; i < BURST; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, start_and_wait, &blocks[i]), 0);
    for (int i = 0; i < BURST; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&all_started);
    for (int i = 0; i < BURST; i++) {
        ck_assert(page_mapped(blocks[i]) == (HAK_DECAY_MS > 0));
        for (int j = 0; j < i; j++)
            ck_assert_ptr_ne(blocks[i], blocks[j]);
    }
}

/* malloc_trim unmaps the blocks of exited threads: a burst of threads
 * left one resident block (92 KiB with the ring spec, 12 KiB with the
 * default) per thread for good, even after malloc_trim. */
START_TEST(trim_unmaps_exited_threads_blocks)
{
    void *blocks[BURST];
    burst_of_threads(blocks);
    malloc_trim(0);
    for (int i = 0; i < BURST; i++)
        ck_assert(!page_mapped(blocks[i]));
}
END_TEST

/* A pass before decay_ms keeps the pooled blocks and says when they are
 * due; once due, they are unmapped.  A new thread takes a pooled block
 * first: the newest. */
START_TEST(pooled_blocks_unmapped_once_due)
{
    if (HAK_DECAY_MS == 0)
        return; /* no pool: a block is unmapped at its thread's exit */
    void *blocks[BURST];
    burst_of_threads(blocks);
    size_t pooled = hak_thread_pool_bytes();
    ck_assert_uint_ge(pooled, BURST * sizeof(struct hak_thread_block));
    uint64_t next = UINT64_MAX;
    hak_thread_pool_release(0, false, &next); /* a clock before the exits: not due */
    ck_assert_uint_eq(hak_thread_pool_bytes(), pooled);
    ck_assert_uint_le(next, hak_now_ms() + HAK_DECAY_MS);
    ck_assert_uint_ge(next, HAK_DECAY_MS);
    hak_thread_pool_release(UINT64_MAX - HAK_DECAY_MS, false, &next);
    ck_assert_uint_eq(hak_thread_pool_bytes(), 0);
    for (int i = 0; i < BURST; i++)
        ck_assert(!page_mapped(blocks[i]));
}
END_TEST

/* ---- a thread's block: only the bins of the classes it uses are touched ---- */

/* Whether the page at p is resident. */
static bool page_resident(const void *p)
{
    unsigned char v = 0;
    ck_assert_int_eq(mincore((void *)((uintptr_t)p & ~(uintptr_t)(HAK_PAGE - 1)), HAK_PAGE, &v), 0);
    return v & 1;
}

/* Whether [a, a + n) and page pg share a byte. */
static bool on_page(uintptr_t a, size_t n, uintptr_t pg)
{
    return a < pg + HAK_PAGE && pg < a + n;
}

struct block_pages {
    unsigned stray;   /* resident pages holding neither the header nor a used class's bin */
    unsigned checked; /* pages holding neither */
};

/* The pages of block blk outside its header (and metrics), the bins of the
 * classes in `used` and those prewarmed at thread start, and the pages
 * `before` says were resident (NULL: none).  Allocates nothing. */
static struct block_pages block_pages(const struct hak_thread_block *blk, const bool *used,
                                      const bool *before)
{
    struct block_pages r = {0, 0};
    uintptr_t start = (uintptr_t)blk, end = start + sizeof *blk;
    unsigned i = 0;
    for (uintptr_t pg = start & ~(uintptr_t)(HAK_PAGE - 1); pg < end; pg += HAK_PAGE, i++) {
        bool kept = on_page(start, hak_class_info[0].bin_offset, pg) || (before && before[i]);
#if HAK_METRICS
        kept = kept || on_page((uintptr_t)&blk->stats, end - (uintptr_t)&blk->stats, pg);
#endif
        for (unsigned cls = 0; cls < HAK_NUM_CLASSES && !kept; cls++) {
            const struct hak_class_info *ci = &hak_class_info[cls];
            size_t bytes = sizeof(struct hak_bin) + ci->ring * sizeof(void *);
            kept = (used[cls] || ci->prewarm > 0) && on_page(start + ci->bin_offset, bytes, pg);
        }
        if (!kept) {
            r.checked++;
            r.stray += page_resident((void *)pg);
        }
    }
    return r;
}

/* Whether a test of the pages above must have found some to check: a
 * block of 8 pages or more has pages beyond its header and two classes'
 * bins (at most 5); a metrics build's counters may fill the rest of a
 * block, and a small block (the default's 3 pages, a spec of one class) may
 * have none beyond them, which is no failure of the allocator. */
#define BLOCK_HAS_OTHER_PAGES (!HAK_METRICS && sizeof(struct hak_thread_block) >= 8 * HAK_PAGE)

#define SMALL 16
#define BIG 1000
#define BLOCK_PAGES (sizeof(struct hak_thread_block) / HAK_PAGE + 2)
struct block_use {
    struct hak_thread_block *blk; /* in: the block the thread is to take (pool) */
    const bool *before;           /* in: its resident pages then */
    struct block_pages pages;
    uintptr_t big_ring_s, big_front_lim; /* BIG's class's counters at start */
};

/* A new thread that frees what it allocates of SMALL, and of BIG unless it
 * takes a pooled block. */
static void *use_classes(void *arg)
{
    struct block_use *u = arg;
    bool used[HAK_NUM_CLASSES] = {false};
    free(malloc(SMALL));
    used[hak_size_class[(SMALL + 15) >> 4]] = true;
    struct hak_bin *big = hak_thread_bin(hak_size_class[(BIG + 15) >> 4]);
    u->big_ring_s = big->ring_s;
    u->big_front_lim = big->front_lim;
    if (u->blk == NULL) {
        free(malloc(BIG));
        used[hak_size_class[(BIG + 15) >> 4]] = true;
    }
    u->blk = hak_tls_block;
    u->pages = block_pages(u->blk, used, u->before);
    return NULL;
}

/* A thread writes only the pages of its block that hold the bins of the
 * classes it uses: each class is set up at its first miss.  Set up all at
 * thread start, every page of the block was written: 264 KiB of RSS per
 * thread making 64 small mallocs, glibc's 40; 220 now. */
START_TEST(thread_touches_only_bins_it_uses)
{
    struct block_use u = {NULL};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, use_classes, &u), 0);
    pthread_join(t, NULL);
    if (BLOCK_HAS_OTHER_PAGES)
        ck_assert_uint_gt(u.pages.checked, 0); /* 20 of 23 with the ring spec */
    ck_assert_uint_eq(u.pages.stray, 0);
}
END_TEST

/* A block from the pool is zeroed by writing its header alone: the next
 * thread finds the first one's classes not set up, and writes no page that
 * was not resident already but those of its own classes' bins. */
START_TEST(pooled_block_reset_writes_its_header_only)
{
    if (HAK_DECAY_MS == 0)
        return; /* no pool: a block is unmapped at its thread's exit */
    struct block_use first = {.blk = NULL};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, use_classes, &first), 0);
    pthread_join(t, NULL);
    bool before[BLOCK_PAGES] = {false};
    uintptr_t start = (uintptr_t)first.blk & ~(uintptr_t)(HAK_PAGE - 1);
    for (unsigned i = 0; start + i * HAK_PAGE < (uintptr_t)(first.blk + 1); i++)
        before[i] = page_resident((void *)(start + i * HAK_PAGE));
    struct block_use second = {.blk = first.blk, .before = before};
    ck_assert_int_eq(pthread_create(&t, NULL, use_classes, &second), 0);
    pthread_join(t, NULL);
    ck_assert_ptr_eq(second.blk, first.blk);
    if (hak_class_info[hak_size_class[(BIG + 15) >> 4]].prewarm == 0) { /* else set up at start */
        ck_assert_uint_eq(first.big_front_lim, 0);
        ck_assert_uint_eq(second.big_ring_s, 0); /* the first thread's counters are gone */
        ck_assert_uint_eq(second.big_front_lim, 0);
    }
    if (BLOCK_HAS_OTHER_PAGES)
        ck_assert_uint_gt(second.pages.checked, 0);
    ck_assert_uint_eq(second.pages.stray, 0);
}
END_TEST

/* Without malloc_trim, a poll after decay_ms gives the blocks back (the
 * exits noted them). */
START_TEST(exited_threads_blocks_go_back_after_decay)
{
    void *blocks[BURST];
    burst_of_threads(blocks);
    usleep((HAK_DECAY_MS + 100) * 1000);
    /* the poll here, or the purger if the exits started one */
    for (int waited = 0; hak_thread_pool_bytes() > 0 && waited < 10000; waited += 50) {
        hak_decay_poll();
        usleep(50 * 1000);
    }
    ck_assert_uint_eq(hak_thread_pool_bytes(), 0);
    for (int i = 0; i < BURST; i++)
        ck_assert(!page_mapped(blocks[i]));
}
END_TEST
#endif

/* ---- a thread's first refill of a class: a page's worth ---- */

#define MAX_REFILL 1024
struct first_refills {
    size_t size;
    uintptr_t first, second; /* blocks cached after the first refill and the second */
};

/* The blocks the class's first cache tier, which a refill fills, holds. */
static uintptr_t first_tier_cached(unsigned cls)
{
    struct hak_bin *b = hak_thread_bin(cls); /* the calling thread's */
    return hak_class_info[cls].ring_first ? b->ring_s - 1 : hak_bin_sll_length(cls, b);
}

/* In a new thread: malloc until the class has refilled twice. */
static void *refill_twice(void *arg)
{
    struct first_refills *r = arg;
    unsigned cls = hak_size_class[(r->size + 15) >> 4];
    void *p[MAX_REFILL + 2];
    unsigned n = 0;
    p[n++] = malloc(r->size);
    r->first = first_tier_cached(cls);
    while (first_tier_cached(cls) > 0 && n <= MAX_REFILL)
        p[n++] = malloc(r->size);
    p[n++] = malloc(r->size);
    r->second = first_tier_cached(cls);
    while (n > 0)
        free(p[--n]);
    return NULL;
}

/* A thread's first refill of a class fetches a page's worth of blocks (one
 * at least), the spec's `refill` from the second on: in guarded mode every
 * block a refill caches is written, and a thread's one block of 32 KiB made
 * 16 pages resident.  A refill caches all it fetches but the block it
 * returns. */
START_TEST(first_refill_a_page_worth)
{
    static const size_t sizes[] = {16, 1000, 5000, 32768};
    for (unsigned i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        const struct hak_class_info *ci = &hak_class_info[hak_size_class[(sizes[i] + 15) >> 4]];
        if (ci->prewarm > 0 || ci->refill == 0 || ci->refill > MAX_REFILL)
            continue; /* no cache, or a thread starting with cached blocks */
        struct first_refills r = {sizes[i], 0, 0};
        pthread_t t;
        ck_assert_int_eq(pthread_create(&t, NULL, refill_twice, &r), 0);
        pthread_join(t, NULL);
        uint32_t page = HAK_PAGE / ci->size;
        uint32_t want = page < 1 ? 1 : page < ci->refill ? page : ci->refill;
        ck_assert_uint_eq(r.first + 1, want);
        ck_assert_uint_eq(r.second + 1, ci->refill);
    }
}
END_TEST

/* The cache of a class of big blocks (above HAK_BIG_BLOCK_BYTES) goes back
 * at the thread's first allocation slow path after a decay pass, not at one
 * before it; a smaller class's stays.  The largest class's block and a
 * block of 64 B, freed into their caches; a large malloc is the slow path. */
START_TEST(big_caches_go_back_after_a_decay_pass)
{
    unsigned big = HAK_NUM_CLASSES - 1, small = hak_size_class[64 >> 4];
    const struct hak_class_info *ci = &hak_class_info[big];
    if (ci->size <= HAK_BIG_BLOCK_BYTES || !(ci->tiers & (HAK_TIER_RING | HAK_TIER_SLL)) ||
        !(hak_class_info[small].tiers & (HAK_TIER_RING | HAK_TIER_SLL)))
        return; /* no class of big blocks, or no cache */
    void *p = malloc(ci->size), *q = malloc(64);
    free(p);
    free(q);
    const struct hak_bin *b = hak_thread_bin(big), *s = hak_thread_bin(small);
    ck_assert(b->ring_s > 1 || b->sll_head != NULL);
    free(malloc(HAK_MAX_CLASS_SIZE + 1)); /* a slow path, no pass since the last */
    ck_assert(b->ring_s > 1 || b->sll_head != NULL);
    hak_decay_purge_all();
    free(malloc(HAK_MAX_CLASS_SIZE + 1)); /* the first slow path since a pass */
    ck_assert_uint_eq(b->ring_s, 0);
    ck_assert_ptr_null(b->sll_head);
    ck_assert_uint_eq(b->front_lim, 0); /* set up again at its next miss */
    ck_assert(s->ring_s > 1 || s->sll_head != NULL);
    ck_assert_ptr_eq(malloc(64), q); /* still cached */
    free(q);
    void *again = malloc(ci->size); /* the class works on: set up, refilled */
    ck_assert_uint_eq(hak_region_code((uintptr_t)again), big + 1);
    free(again);
    ck_assert(b->ring_s > 1 || b->sll_head != NULL);
}
END_TEST

#if !HAK_TLS_STATIC
/* ---- the shared blocks: what a free that misses writes there ---- */

/* A free's front takes a place in the bin (room - 1 in memory) before it
 * knows whether the bin is a thread's or the shared block of threads that
 * have not started (thread.c); a miss writes the room back as 0.  Threads
 * whose first call is a free, all at once: the shared block they all met is
 * all zeros again afterwards, as every fast path needs it to be. */
#define FIRST_FREES 8
struct first_free {
    void *block;
    const struct hak_thread_block *shared;
};
static pthread_barrier_t first_frees_ready;

static void *first_call_free(void *arg)
{
    struct first_free *f = arg;
    f->shared = hak_tls_block; /* no caches yet: the shared new block */
    pthread_barrier_wait(&first_frees_ready);
    if (f->block == NULL) {
        free(NULL); /* code 0: the empty bin, and no start */
        f->block = malloc(64);
    }
    free(f->block);
    return NULL;
}

START_TEST(first_frees_leave_the_shared_block_zero)
{
    struct first_free f[FIRST_FREES];
    pthread_t t[FIRST_FREES];
    ck_assert_int_eq(pthread_barrier_init(&first_frees_ready, NULL, FIRST_FREES), 0);
    for (int i = 0; i < FIRST_FREES; i++) {
        f[i].block = i % 2 ? malloc(16 << (i % 6)) : NULL;
        ck_assert_int_eq(pthread_create(&t[i], NULL, first_call_free, &f[i]), 0);
    }
    for (int i = 0; i < FIRST_FREES; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&first_frees_ready);
    static const struct hak_thread_block zero;
    for (int i = 0; i < FIRST_FREES; i++) {
        ck_assert_ptr_eq(f[i].shared, f[0].shared);
        ck_assert_ptr_ne(f[i].shared, hak_tls_block);
    }
    ck_assert_int_eq(memcmp(f[0].shared, &zero, sizeof zero), 0);
}
END_TEST
#endif

/* ---- allocations after the thread's own exit ---- */

/* A mid class the harness does not use. */
#define LATE_CLS (quiet_class() - 1)
#define LATE_BLOCKS 64
static pthread_key_t late_key;
static void *late_blocks[LATE_BLOCKS];
static uint32_t late_state;

/* A destructor of a key created after hakmem's: it runs after hakmem's own,
 * when the thread has no heap, so the shared heap serves it. */
static void alloc_after_exit(void *unused)
{
    (void)unused;
    late_state = hak_tls.state;
    for (int i = 0; i < LATE_BLOCKS; i++)
        late_blocks[i] = malloc(hak_class_info[LATE_CLS].size);
}

static void *set_late_key(void *unused)
{
    (void)unused;
    free(malloc(16));
    pthread_setspecific(late_key, &late_key);
    return NULL;
}

/* Blocks a thread allocates in a destructor after its exit, freed by
 * another thread, go back: their spans are freed by malloc_trim.  They
 * stayed the shared heap's for good (a destructor's 200,000 blocks of 100
 * B: 26 MiB resident after freeing them all and malloc_trim). */
START_TEST(blocks_allocated_after_exit_go_back)
{
    ck_assert_int_eq(pthread_key_create(&late_key, alloc_after_exit), 0);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, set_late_key, NULL), 0);
    pthread_join(t, NULL);
    ck_assert_uint_eq(late_state, HAK_THREAD_DEAD);
    for (int i = 0; i < LATE_BLOCKS; i++) {
        ck_assert_ptr_nonnull(late_blocks[i]);
        ck_assert_uint_eq(hak_region_code((uintptr_t)late_blocks[i]), LATE_CLS + 1);
    }
    for (int i = 0; i < LATE_BLOCKS; i++)
        free(late_blocks[i]);
    malloc_trim(0);
    for (int i = 0; i < LATE_BLOCKS; i++)
        ck_assert_uint_eq(hak_region_code((uintptr_t)late_blocks[i]), 0);
    pthread_key_delete(late_key);
}
END_TEST

Suite *suite_threads(void)
{
    Suite *s = suite_create("threads");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 30);
#if !HAK_TLS_STATIC
    tcase_add_test(tc, trim_unmaps_exited_threads_blocks);
    tcase_add_test(tc, pooled_blocks_unmapped_once_due);
    tcase_add_test(tc, exited_threads_blocks_go_back_after_decay);
    tcase_add_test(tc, thread_touches_only_bins_it_uses);
    tcase_add_test(tc, pooled_block_reset_writes_its_header_only);
    tcase_add_test(tc, first_frees_leave_the_shared_block_zero);
#endif
    tcase_add_test(tc, first_refill_a_page_worth);
    tcase_add_test(tc, big_caches_go_back_after_a_decay_pass);
    tcase_add_test(tc, blocks_allocated_after_exit_go_back);
    suite_add_tcase(s, tc);
    return s;
}
