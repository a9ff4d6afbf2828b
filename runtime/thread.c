/*
 * thread.c - the per-thread caches behind the generated fronts: their slow
 * paths (refill on a miss, flush when full), thread start and exit, process
 * start-up and fork.
 *
 * A thread's caches start zeroed (HAK_THREAD_NEW): its first alloc or free
 * misses and lands here, which gives the thread a heap (heap.c) and registers
 * a pthread key whose destructor hands every cached block back and releases
 * the heap at thread exit.  Each class's counters are set up at the class's
 * own first miss (set_up).  After exit the thread is HAK_THREAD_DEAD: its
 * counters are zero again, so any later call (another destructor freeing
 * memory) misses and is served by the shared heap.
 *
 * With options.tls: pointer (hak_spec.h) "zeroed" is a shared block: every
 * thread's hak_tls_block starts at new_block; thread_start gives the thread
 * a block of its own from a pool, thread_exit returns it and points the thread
 * at dead_block.  Only a free's front writes the shared blocks: the room of
 * a bin, which it decrements before its test and sets back to 0 when the
 * test fails (hak_abi.h, struct hak_bin), so that it is never above 0 there.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define thread_heap (hak_tls.heap)
static pthread_key_t thread_key;
/* atomic: threads with caches, started and not yet exited (see flush) */
static unsigned threads_live;
static int global_state; /* 0: not started, 1: starting, 2: ready */
static HAK_TLS bool in_global_init;

static void **ring_of(struct hak_bin *b)
{
    return (void **)(b + 1);
}

/* ---- the thread's block (options.tls) ---- */

/* Every block is the block of a struct hak_thread_slot: at 64 mod 128 in
 * memory, which puts its bins at 64 mod 128 (hak_spec.h). */
#if HAK_TLS_STATIC
HAK_TLS struct hak_thread_slot hak_tls_slot;

static bool block_acquire(void) { return true; }
static void block_release(void) {}
static void block_lock(void) {}
static void block_unlock(void) {}
size_t hak_thread_pool_bytes(void) { return 0; }
void hak_thread_pool_due(uint64_t *next_ms) { (void)next_ms; }
void hak_thread_pool_release(uint64_t now, bool all, uint64_t *next_ms)
{
    (void)now, (void)all, (void)next_ms;
}
#else
static struct hak_thread_slot new_slot;                                         /* HAK_THREAD_NEW */
static struct hak_thread_slot dead_slot = {.block = {.state = HAK_THREAD_DEAD}}; /* HAK_THREAD_DEAD */
#define new_block (new_slot.block)
#define dead_block (dead_slot.block)
HAK_TLS struct hak_thread_block *hak_tls_block = &new_block;

/* Blocks of exited threads, newest first, for the next thread to start: a
 * program that creates many threads maps only as many blocks as it has
 * threads at once.  A pooled block holds its link and the time it was
 * pooled in its first words.  Those idle for HAK_DECAY_MS are unmapped at
 * decay's next pass, all of them at malloc_trim (hak_thread_pool_release):
 * the blocks of a burst of threads stayed resident for good (1000 threads
 * left 92 MiB after they exited, malloc_trim or not).  With decay_ms 0 a
 * block is unmapped when its thread exits. */
struct pooled {
    struct pooled *next;
    uint64_t since; /* hak_now_ms() when it was pooled */
};
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pooled *pool;  /* newest first: the last one is the oldest */
static size_t pooled;        /* atomic: blocks in the pool */
static uint64_t pool_oldest; /* atomic: the last one's `since` (hak_thread_pool_due) */
#define SLOT_BYTES ((sizeof(struct hak_thread_slot) + HAK_PAGE - 1) & ~(size_t)(HAK_PAGE - 1))

static struct hak_thread_slot *slot_of(void *block)
{
    return (struct hak_thread_slot *)((char *)block - offsetof(struct hak_thread_slot, block));
}

/* Zero a pooled block as a thread starting reads it, writing only its first
 * page: the header (where the pool's link was) and the metrics.  The bins
 * are zero already (thread_exit drained them all; the pages of those never
 * set up were never written), and a ring's slots are read only below its
 * count.  A memset of the whole block wrote every page of it again. */
static void block_reset(struct hak_thread_block *b)
{
    memset(b, 0, hak_class_info[0].bin_offset);
#if HAK_METRICS
    memset(&b->stats, 0, sizeof *b - offsetof(struct hak_thread_block, stats));
#endif
}

/* Point the thread at a zeroed block of its own; false when none can be mapped. */
static bool block_acquire(void)
{
    hak_lock(&pool_lock);
    struct hak_thread_block *b = (struct hak_thread_block *)pool;
    if (b != NULL) {
        pool = pool->next;
        __atomic_store_n(&pooled, pooled - 1, __ATOMIC_RELAXED);
    }
    hak_unlock(&pool_lock);
    if (b != NULL) {
        block_reset(b);
    } else {
        struct hak_thread_slot *slot = hak_os_map(SLOT_BYTES); /* zeroed by the OS */
        if (slot == NULL)
            return false;
        b = &slot->block;
    }
    hak_tls_block = b;
    return true;
}

/* A pooled block's slot back to the OS.  Where the kernel refuses (its map
 * count, os.c) only its pages go: a slot's few pages of address space are
 * lost, as rare as a thread's exit at the limit. */
static void unmap_slot(struct pooled *b)
{
    if (!hak_os_unmap(slot_of(b), SLOT_BYTES))
        hak_os_release(slot_of(b), SLOT_BYTES);
}

/* The thread has exited: its block goes to the pool, the thread to dead_block. */
static void block_release(void)
{
    struct pooled *b = (struct pooled *)hak_tls_block;
    hak_tls_block = &dead_block;
    if (HAK_DECAY_MS == 0) {
        unmap_slot(b);
        return;
    }
    hak_lock(&pool_lock);
    b->since = hak_now_ms(); /* under the lock: the pool stays in order of age */
    if (pool == NULL)
        __atomic_store_n(&pool_oldest, b->since, __ATOMIC_RELAXED);
    b->next = pool;
    pool = b;
    size_t n = pooled + 1;
    __atomic_store_n(&pooled, n, __ATOMIC_RELAXED);
    hak_unlock(&pool_lock);
    hak_decay_note(HAK_DECAY_THREADS, n * SLOT_BYTES);
}

size_t hak_thread_pool_bytes(void)
{
    return __atomic_load_n(&pooled, __ATOMIC_RELAXED) * SLOT_BYTES;
}

void hak_thread_pool_due(uint64_t *next_ms)
{
    if (__atomic_load_n(&pooled, __ATOMIC_RELAXED) != 0)
        hak_decay_due(next_ms, __atomic_load_n(&pool_oldest, __ATOMIC_RELAXED));
}

void hak_thread_pool_release(uint64_t now, bool all, uint64_t *next_ms)
{
    hak_lock(&pool_lock);
    struct pooled **pp = &pool, *last = NULL;
    while (*pp != NULL && !all && !hak_decay_is_due(now, (*pp)->since)) {
        last = *pp;
        pp = &last->next;
    }
    struct pooled *due = *pp; /* and every block after it, older still */
    *pp = NULL;
    size_t n = 0;
    for (struct pooled *b = due; b != NULL; b = b->next)
        n++;
    __atomic_store_n(&pooled, pooled - n, __ATOMIC_RELAXED);
    if (last != NULL) {
        __atomic_store_n(&pool_oldest, last->since, __ATOMIC_RELAXED);
        hak_decay_due(next_ms, last->since);
    }
    hak_unlock(&pool_lock);
    while (due != NULL) {
        struct pooled *next = due->next;
        unmap_slot(due);
        due = next;
    }
}

static void block_lock(void) { hak_lock(&pool_lock); }
static void block_unlock(void) { hak_unlock(&pool_lock); }
#endif

/* ---- refill and flush ---- */

/* Guarded mode: the key in every block a refill caches (hak_abi.h), as a
 * free would have put it there.  A block never handed out carries it too, so
 * that free() of one (a pointer one block past the program's own, say) is
 * found in the cache, not cached a second time. */
static void stamp(void *const *blocks, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        HAK_KEY_WORD(blocks[i]) = hak_cache_key();
}

/* hak_heap_take gives blocks in address order; a cache pops its newest
 * first, so each is loaded in reverse to hand them out in that order.  A
 * program that walks what it allocated then walks memory upward, as the
 * CPU's prefetchers expect: against blocks handed out downward within each
 * batch, mixed ws=8192 ran 1.05x and 1.08x in two runs, phases 1.04x and
 * 1.01x (bench/NOTES.md, "Blocks handed out upward"). */
static void reverse(void **blocks, uint32_t n)
{
    for (uint32_t i = 0; i < n / 2; i++) {
        void *t = blocks[i];
        blocks[i] = blocks[n - 1 - i];
        blocks[n - 1 - i] = t;
    }
}

/* Fill class cls's first cache tier (empty) from the thread's heap, `want`
 * blocks at most; return one more block for the caller, or NULL when memory
 * is exhausted.  A transfer batch is taken whole (its blocks are cached ones,
 * written already). */
static void *refill(unsigned cls, struct hak_bin *b, uint32_t want)
{
    const struct hak_class_info *ci = &hak_class_info[cls];
    if (ci->ring_first) {
        void **ring = ring_of(b);
        uint32_t n;
        if (hak_transfer_take(cls, ring)) {
            n = ci->refill; /* cached blocks: they carry the key already */
        } else {
            n = hak_heap_take(thread_heap, cls, ring, want);
            if (n == 0)
                return NULL;
            reverse(ring, n); /* popped from the top: lowest address first */
            if (HAK_GUARDED)
                stamp(ring, n - 1);
        }
        HAK_STAT(hak_tls.stats[cls].refills++);
        HAK_STAT(hak_tls.stats[cls].refill_blocks += n);
        b->ring_s = n; /* n - 1 blocks stay cached (count + 1) */
        return ring[n - 1];
    }
    void *batch[64];
    void *got = NULL;
    HAK_STAT(hak_tls.stats[cls].refills++);
    while (want > 0) {
        /* a whole batch first, as a ring takes it, also on a thread's first
         * refill of fewer blocks (first_refill): its blocks are resident
         * already, where the first refill's limit is on pages newly touched */
        uint32_t n = want <= ci->refill && ci->refill <= 64 && hak_transfer_take(cls, batch)
                         ? ci->refill
                         : hak_heap_take(thread_heap, cls, batch, want < 64 ? want : 64);
        if (n == 0)
            break;
        want = n < want ? want - n : 0;
        HAK_STAT(hak_tls.stats[cls].refill_blocks += n);
        if (HAK_GUARDED)
            stamp(batch, n); /* got's too: hak_alloc_slow clears it */
        uint32_t first = 0;
        if (got == NULL)
            got = batch[first++];
        for (uint32_t i = n; i-- > first;) { /* the list's head: the lowest left */
            HAK_BLOCK(batch[i])->next = b->sll_head;
            b->sll_head = batch[i];
            b->sll_room--;
        }
    }
    return got;
}

/* The blocks a thread's first refill of class cls fetches: a page's worth,
 * at most the spec's `refill`.  In guarded mode a refill writes the key into
 * every block it caches (stamp), so a full first refill made each class a
 * thread used cost refill * size bytes of RSS at once, 16 pages for a
 * thread's one block of 32 KiB.  A thread that keeps allocating the class
 * refills in full from its second miss on. */
static uint32_t first_refill(unsigned cls)
{
    const struct hak_class_info *ci = &hak_class_info[cls];
    uint32_t page = HAK_PAGE / ci->size;
    return page < 1 ? 1 : page < ci->refill ? page : ci->refill;
}

/* Whether a flush of class cls may put its batch in the transfer cache
 * (transfer.c), for the next thread whose cache of the class runs empty: it
 * has room, and another thread has caches.  A process's only thread would
 * just take its own batches back, and meanwhile each would keep up to a
 * batch of spans from being freed (single-threaded phases: 27 MiB left after
 * freeing everything, 35 with transfers). */
static bool may_transfer(unsigned cls)
{
    return __atomic_load_n(&threads_live, __ATOMIC_RELAXED) > 1 && hak_transfer_room(cls);
}

#if HAK_METRICS
/* A batch put in the transfer cache: its blocks of other heaps count as
 * remote frees, as they would have in their spans' remote bitmaps (the
 * profile's cross-thread share, which gen/hakgen tune reads). */
static void count_remote(unsigned cls, void *const *blocks, uint32_t n)
{
    hak_tls.stats[cls].remote_frees += hak_heap_foreign_blocks(thread_heap, cls, blocks, n);
}
#endif

/* Class cls's cache tiers are all full: give `refill` blocks of the last tier
 * back (to the transfer cache, or to their spans), making room for one more
 * free. */
static void flush(unsigned cls, struct hak_bin *b)
{
    const struct hak_class_info *ci = &hak_class_info[cls];
    HAK_STAT(hak_tls.stats[cls].flushes++);
    bool last_is_sll = (ci->tiers & HAK_TIER_SLL) && (ci->ring_first || !(ci->tiers & HAK_TIER_RING));
    if (last_is_sll) {
        uint32_t length = hak_bin_sll_length(cls, b);
        uint32_t n = ci->refill < length ? ci->refill : length;
        HAK_STAT(hak_tls.stats[cls].flush_blocks += n);
        if (n == ci->refill && n <= 64 && may_transfer(cls)) {
            void *batch[64];
            void *q = b->sll_head;
            for (uint32_t i = 0; i < n; i++, q = HAK_BLOCK(q)->next)
                batch[i] = q;
            if (hak_transfer_put(cls, batch)) {
                HAK_STAT(count_remote(cls, batch, n));
                b->sll_head = q;
                b->sll_room += n;
                return;
            }
        }
        b->sll_head = hak_heap_give_list(thread_heap, cls, b->sll_head, n);
        b->sll_room += n;
        return;
    }
    /* the ring is a LIFO stack: give back its oldest blocks, keep the hot top */
    void **ring = ring_of(b);
    uint32_t count = b->ring_s - 1;
    uint32_t n = ci->refill < count ? ci->refill : count;
    HAK_STAT(hak_tls.stats[cls].flush_blocks += n);
    if (n != ci->refill || !may_transfer(cls) || !hak_transfer_put(cls, ring))
        hak_heap_give(thread_heap, cls, ring, n);
    else
        HAK_STAT(count_remote(cls, ring, n));
    memmove(ring, ring + n, (count - n) * sizeof *ring);
    b->ring_s -= n;
}

/*
 * A thread sets up only the classes it uses, each at its first miss
 * (hak_alloc_slow, hak_free_slow), so that the pages of its block holding
 * the other classes' bins are never touched: the block was 92 KiB with the
 * default spec of the time (the ring spec's), and setting every bin up at
 * thread start made each thread cost 264 KiB of RSS where glibc's cost 40
 * (a thread making 64 small mallocs; bench/NOTES.md).  A bit per class
 * says which are set up, so that thread exit and malloc_trim do not even
 * read the others' bins: a read maps the page (the zero page, but one fault
 * and one page table entry each).
 */
static HAK_TLS uint64_t classes_set_up[(HAK_NUM_CLASSES + 63) / 64];

static bool is_set_up(unsigned cls)
{
    return classes_set_up[cls / 64] >> (cls % 64) & 1;
}

/* Set class cls's counters up: empty tiers, and the table front's limit. */
static void set_up(unsigned cls)
{
    struct hak_bin *b = hak_thread_bin(cls);
    b->ring_s = (hak_class_info[cls].tiers & HAK_TIER_RING) ? 1 : 0;
    b->sll_room = (hak_class_info[cls].tiers & HAK_TIER_SLL) ? hak_class_info[cls].sll : 0;
    b->front_lim = hak_fast.cap[cls + 1] ? hak_fast.cap[cls + 1] + 1 : 0; /* last */
    classes_set_up[cls / 64] |= UINT64_C(1) << (cls % 64);
}

/* Give back everything class cls's caches hold and zero its counters, which
 * leaves it to be set up again. */
static void drain(unsigned cls)
{
    if (!is_set_up(cls))
        return;
    classes_set_up[cls / 64] &= ~(UINT64_C(1) << (cls % 64));
    struct hak_bin *b = hak_thread_bin(cls);
    if (b->ring_s > 1)
        hak_heap_give(thread_heap, cls, ring_of(b), b->ring_s - 1);
    if (b->sll_head != NULL)
        hak_heap_give_list(thread_heap, cls, b->sll_head, hak_bin_sll_length(cls, b));
    /* the limits first: a free's test passes only over a set-up bin */
    b->front_lim = 0;
    b->sll_room = 0;
    b->ring_s = 0;
    b->sll_head = NULL;
}

/* ---- thread start and exit ---- */

/* Cache the class's `prewarm` blocks (at most its capacity, so nothing flushes). */
static void prewarm(unsigned cls)
{
    void *batch[64];
    uint32_t want = hak_class_info[cls].prewarm;
    if (want > 0)
        set_up(cls);
    while (want > 0) {
        uint32_t n = hak_heap_take(thread_heap, cls, batch, want < 64 ? want : 64);
        if (n == 0)
            return;
        want -= n;
        for (uint32_t i = 0; i < n; i++)
            hak_front_free_class(cls + 1, batch[i]);
    }
}

static void thread_exit(void *unused)
{
    (void)unused;
    for (unsigned cls = 0; cls < HAK_NUM_CLASSES; cls++)
        drain(cls);
    hak_tls.state = HAK_THREAD_DEAD;
    __atomic_fetch_sub(&threads_live, 1, __ATOMIC_RELAXED);
    HAK_STAT(hak_stats_thread_exit());
    hak_heap_release(thread_heap);
    thread_heap = NULL;
    block_release();
    hak_decay_poll(); /* what the exit freed is purged even if no one allocates again */
}

/* Set up this thread's caches; false when it cannot have any (it has exited,
 * or the process is still starting up inside this very thread). */
static bool thread_start(void)
{
    if (hak_tls.state == HAK_THREAD_DEAD || !hak_global_init())
        return false;
    /* a failed map sets errno, but the call is then served without caches
     * and may well succeed: errno is the shared heap's to set, or no one's */
    int saved_errno = errno;
    struct hak_heap *heap = hak_heap_acquire();
    if (heap == NULL) {
        errno = saved_errno;
        return false;
    }
    if (!block_acquire()) {
        hak_heap_release(heap);
        errno = saved_errno;
        return false;
    }
    thread_heap = heap;
    hak_tls.state = HAK_THREAD_LIVE;
    __atomic_fetch_add(&threads_live, 1, __ATOMIC_RELAXED);
    HAK_STAT(hak_stats_thread_start());
    /* non-NULL: the destructor runs.  Not when this is already the last
     * round of another key's destructors (glibc runs at most
     * PTHREAD_DESTRUCTOR_ITERATIONS, 4): a thread whose very first
     * allocation comes there keeps its heap and caches, never released.
     * Nothing tells a thread which round it is in. */
    pthread_setspecific(thread_key, &hak_tls);
    for (unsigned cls = 0; cls < HAK_NUM_CLASSES; cls++)
        prewarm(cls);
    return true;
}

/* ---- guarded mode: blocks carrying the cache key (hak_abi.h) ---- */

/* Whether p is one of the blocks class cls's caches hold.  The list is walked
 * only through blocks of the class: a block the program wrote to after
 * freeing it may have broken the link, and the walk stops there. */
static bool in_cache(unsigned cls, const void *p)
{
    struct hak_bin *b = hak_thread_bin(cls);
    void **ring = ring_of(b);
    for (uint32_t i = 0; i + 1 < b->ring_s; i++)
        if (ring[i] == p)
            return true;
    void *q = b->sll_head;
    uint32_t length = hak_bin_sll_length(cls, b);
    for (uint32_t i = 0; i < length && hak_region_code((uintptr_t)q) == cls + 1; i++) {
        if (q == p)
            return true;
        q = HAK_BLOCK(q)->next;
    }
    return false;
}

/* Whether block p of class cls, carrying the key, is known to be free: in
 * this thread's caches or free in a span of its heap.  A block another
 * thread's cache holds is not found here (README, "Semantics"). */
bool hak_thread_block_freed(unsigned cls, const void *p)
{
    return hak_tls.state == HAK_THREAD_LIVE &&
           (in_cache(cls, p) || hak_transfer_holds(cls, p) ||
            hak_heap_holds_free(thread_heap, cls, p)); /* batches first: a release gives them to spans */
}

/* A free met p carrying the key: a double free, or the program's data that
 * happened to equal the key, which is cleared so that p caches as any block. */
static void free_check_key(unsigned cls, void *p)
{
    if (hak_thread_block_freed(cls, p))
        hak_report_double_free("free", p);
    HAK_KEY_WORD(p) = 0;
}

/* p, of region code `code`, carries the key; `taken`: the list's front took
 * a place in the bin for it, which goes back before p is freed anew. */
static void free_keyed(void *p, unsigned code, bool taken)
{
    if (HAK_UNLIKELY(code == 0)) { /* its span went away since the front looked */
        hak_free_other(p);
        return;
    }
    if (taken)
        hak_thread_bin(code - 1)->sll_room++;
    free_check_key(code - 1, p);
    hak_front_free_class(code, p);
}

/* The front's calls when p carries the key (hak_front.h). */
void hak_free_keyed(void *p)
{
    free_keyed(p, hak_region_code((uintptr_t)p), false);
}

void hak_free_keyed_listed(void *p)
{
    free_keyed(p, hak_region_code((uintptr_t)p), true);
}

/* ---- the slow paths the generated fronts call ---- */

int hak_thread_setup(void)
{
    return hak_tls.state == HAK_THREAD_LIVE || thread_start();
}

/* The table dispatch missed the class's first cache tier (or code 0, not ours:
 * hak_front_free_class sends it to hak_free_other): the per-class path. */
void *hak_alloc_tiers(size_t n)
{
    return hak_front_alloc_class(hak_size_class[(n + 15) >> 4]);
}

void hak_free_tiers(void *p)
{
    hak_front_free_class(hak_region_code((uintptr_t)p), p); /* 0: hak_free_other */
}

/* tiers: [slab]: the class caches nothing, every block comes from and goes
 * back to the thread's heap */
static bool has_cache(unsigned cls)
{
    return hak_class_info[cls].tiers & (HAK_TIER_RING | HAK_TIER_SLL);
}

/*
 * The caches of the classes of big blocks (above HAK_BIG_BLOCK_BYTES) go back
 * at the thread's first allocation slow path after a decay pass, to be set up
 * again at their next miss.  Their lists hold up to mid.class_cache_bytes
 * each (2 MiB in the default): after a program freed all its blocks of
 * 33-256 KiB and waited past decay_ms, 22 MB stayed resident in them, where
 * those blocks, when they were large, had all gone back.  The smaller
 * classes' caches stay: a pass comes every decay_ms while anything waits to
 * go back, and their refills are what the fast paths run on.
 */
static HAK_TLS uint32_t passes_seen;

static void drain_big_after_pass(void)
{
    uint32_t passes = hak_decay_passes();
    if (HAK_LIKELY(passes == passes_seen))
        return;
    passes_seen = passes;
    for (unsigned cls = HAK_NUM_CLASSES; cls > 0 && hak_class_info[cls - 1].size > HAK_BIG_BLOCK_BYTES; cls--)
        drain(cls - 1);
}

/* Where an allocation slow path (a class's refill, a large block) lets the
 * purger start: not on a thread past its exit (see hak_decay_poll); and a
 * live thread's caches of big blocks go back after a pass. */
void hak_thread_poll(void)
{
    if (hak_tls.state != HAK_THREAD_DEAD)
        hak_decay_poll();
    if (hak_tls.state == HAK_THREAD_LIVE)
        drain_big_after_pass();
}

void *hak_alloc_slow(unsigned cls)
{
    void *p;
    hak_thread_poll();
    if (HAK_LIKELY(hak_tls.state == HAK_THREAD_LIVE) || thread_start()) {
        HAK_STAT(hak_tls.stats[cls].alloc_slow++);
        struct hak_bin *b = hak_thread_bin(cls);
        if (!has_cache(cls))
            p = hak_heap_take(thread_heap, cls, &p, 1) == 1 ? p : NULL;
        else if (b->ring_s > 1 || b->sll_head != NULL) /* prewarmed just now */
            return hak_front_alloc_class(cls);
        else if (is_set_up(cls))
            p = refill(cls, b, hak_class_info[cls].refill);
        else {
            set_up(cls);
            p = refill(cls, b, first_refill(cls));
        }
    } else {
        struct hak_heap *h = hak_heap_shared_lock();
        if (hak_heap_take(h, cls, &p, 1) == 0)
            p = NULL;
        hak_heap_shared_unlock();
    }
    if (p == NULL)
        errno = ENOMEM;
    else if (HAK_GUARDED)
        HAK_KEY_WORD(p) = 0; /* it may have been cached, given back and taken again */
    return p;
}

/* A block given straight to a heap, with no cache between (guarded mode):
 * it carries the key as a cached block does, so that a second free, realloc
 * or malloc_usable_size of it is found (hak_thread_block_freed). */
static void give_uncached(struct hak_heap *h, unsigned cls, void *p)
{
    if (HAK_GUARDED)
        HAK_KEY_WORD(p) = hak_cache_key();
    hak_heap_give(h, cls, &p, 1);
}

void hak_free_slow(unsigned cls, void *p)
{
    /* no hak_decay_poll here: glibc frees dead threads' TLS with its
     * stack-cache lock held, and pthread_create takes that lock */
    if (HAK_UNLIKELY(hak_tls.state != HAK_THREAD_LIVE) && !thread_start()) {
        give_uncached(hak_heap_shared_lock(), cls, p);
        hak_heap_shared_unlock();
        return;
    }
    HAK_STAT(hak_tls.stats[cls].free_slow++);
    if (!has_cache(cls)) {
        /* as below: a first free of it by another thread waits in its span */
        if (HAK_GUARDED && HAK_KEY_WORD(p) == hak_cache_key())
            free_check_key(cls, p);
        give_uncached(thread_heap, cls, p);
        return;
    }
    struct hak_bin *b = hak_thread_bin(cls);
    if (!is_set_up(cls)) {
        set_up(cls); /* the class's first free in this thread: it has room */
    } else {
        /* the key first: the flush may give p's first copy back, to a span
         * of another heap, where it is no longer found */
        if (HAK_GUARDED && HAK_KEY_WORD(p) == hak_cache_key())
            free_check_key(cls, p);
        flush(cls, b);
    }
    hak_front_free_class(cls + 1, p); /* the front checks the key of a first free */
}

/* malloc_trim: this thread's caches give everything back (the thread stays
 * live; each class is set up again at its next miss), and its heap frees its
 * empty spans. */
void hak_thread_trim(void)
{
    if (hak_tls.state != HAK_THREAD_LIVE)
        return;
    for (unsigned cls = 0; cls < HAK_NUM_CLASSES; cls++)
        drain(cls);
    hak_heap_trim(thread_heap);
}

/* ---- process start-up and fork ---- */

/* Lock order, here and everywhere: the thread-block pool, the heaps' locks,
 * the transfer caches' (a release gives blocks to spans under them), the
 * purge, the superslab and large locks, then decay's flag lock and the
 * metrics' lock (each held alone elsewhere: nothing is taken under them, and
 * a heap trim notes freed spans under an abandoned-list lock). */
/* How many forks this thread is inside (its locks held since the first's
 * prepare): a prepare handler registered before hakmem's may fork itself.
 * Only the outermost takes and releases; a nested child goes on as its
 * parent did, inside the outer fork, whose handlers then run in it too
 * (the parent's: that child does not see its other threads gone until a
 * fork of its own). */
HAK_TLS unsigned hak_fork_depth;

static void fork_prepare(void)
{
    if (hak_fork_depth > 0) {
        hak_fork_depth++;
        return;
    }
    block_lock();
    hak_heap_lock_all();
    hak_transfer_lock_all();
    hak_decay_purge_lock();
    hak_ss_lock_all();
    hak_large_lock();
    hak_decay_lock();
    HAK_STAT(hak_stats_lock());
    /* the handlers registered before these run next, and may allocate */
    hak_fork_depth = 1;
}

static void fork_parent(void)
{
    if (--hak_fork_depth > 0)
        return;
    HAK_STAT(hak_stats_unlock());
    hak_decay_unlock();
    hak_large_unlock();
    hak_ss_unlock_all();
    hak_decay_purge_unlock();
    hak_transfer_unlock_all();
    hak_heap_unlock_all();
    block_unlock();
}

static void fork_child(void)
{
    if (--hak_fork_depth > 0)
        return;
    /* the one thread the child has */
    __atomic_store_n(&threads_live, hak_tls.state == HAK_THREAD_LIVE, __ATOMIC_RELAXED);
    HAK_STAT(hak_stats_after_fork_child());
    hak_heap_after_fork_child();
    hak_decay_after_fork_child();
    hak_large_unlock();
    hak_ss_unlock_all();
    hak_decay_purge_unlock();
    hak_transfer_after_fork_child();
    hak_heap_unlock_all();
    block_unlock();
    hak_heap_after_fork_release(thread_heap); /* takes locks: after they are released */
}

static void show_spec(void)
{
    const char *v = getenv("HAKMEM_SHOW_SPEC");
    if (v == NULL || *v == '\0' || strcmp(v, "0") == 0)
        return;
    hak_os_write_stderr("hakmem: spec " HAK_SPEC_NAME " hash " HAK_SPEC_HASH
                        " free_check " HAK_FREE_CHECK "\n");
}

/* Once per process.  Returns false to a call made from inside itself (when
 * pthread_atfork allocates): that call is served without a thread cache. */
bool hak_global_init(void)
{
    static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
    if (HAK_LIKELY(__atomic_load_n(&global_state, __ATOMIC_ACQUIRE) == 2))
        return true;
    if (in_global_init)
        return false;
    /* a malloc that succeeds leaves errno alone, also the first, which may
     * come before main: pthread_* may set it on the way */
    int saved_errno = errno;
    pthread_mutex_lock(&init_lock);
    if (global_state != 2) {
        in_global_init = true;
        global_state = 1;
        hak_transfer_init();
        pthread_key_create(&thread_key, thread_exit);
        pthread_atfork(fork_prepare, fork_parent, fork_child);
        show_spec();
        in_global_init = false;
        __atomic_store_n(&global_state, 2, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&init_lock);
    errno = saved_errno;
    return true;
}

/* Start up before main so HAKMEM_SHOW_SPEC prints even if nothing allocates. */
__attribute__((constructor)) static void hak_start(void)
{
    hak_global_init();
}
