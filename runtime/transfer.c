/*
 * transfer.c - whole batches of free blocks, passed from one thread's cache
 * to another's.
 *
 * A thread whose cache of a class is full puts its oldest `refill` blocks
 * here as one batch (thread.c's flush); a thread whose cache is empty takes
 * a whole batch (refill) before it looks at its heap's spans.  A batch moves
 * with one lock and one copy of its pointers: no block's memory, span or
 * bitmap is touched.  Without it, a program whose blocks are freed by other
 * threads than the ones that allocated them (a producer and a consumer;
 * mid_mt, larson) sends nearly every flushed block to its span's remote
 * bitmap - a compare-exchange and two or three cache lines moved between
 * cores per block - and the owner takes them back a bitmap word at a time.
 * (tcmalloc's transfer cache is the same idea, between its thread caches
 * and its central lists.)
 *
 * Blocks here stay counted in their spans' `used`, as cached blocks are
 * (heap.c): a span none of whose blocks is out, cached or here is freed.
 * A class holds at most its spec's `transfer` batches (the default spec:
 * 4 for each mid class, none for the tiny ones, whose spans hold hundreds
 * of blocks: a batch of them would keep up to `refill` mostly empty spans
 * resident); a batch that finds no room goes to the spans as before.
 * Batches no thread has taken for HAK_DECAY_MS go back to their spans
 * (hak_transfer_release, from decay.c's passes), and malloc_trim gives back
 * everything.  With decay_ms 0 there are no transfers: memory goes back at
 * once, and a shared cache would hold it.
 *
 * The lock is only ever tried on the way in and out
 * (pthread_mutex_trylock): a thread that finds it taken goes to its heap
 * instead, so no flush or refill waits here for another thread, and one
 * preempted while holding it delays no one.  The releases, the guarded free's
 * search and fork wait for it.  Lock order: the shared heap, then these,
 * then the superslab's (a release gives blocks to spans, which may free
 * them) and decay's.
 */
#include <string.h>

#include "internal.h"

struct transfer_class {
    pthread_mutex_t lock;
    uint32_t held;  /* batches held; atomic: read without the lock to skip */
    uint32_t cap;   /* batches it may hold (0: the class does not transfer) */
    uint32_t batch; /* blocks per batch: the class's refill */
    uint64_t since; /* hak_now_ms() of the last take, or of the put into an empty class;
                     * atomic: read without the lock by hak_transfer_due */
    void **slots;   /* cap * batch blocks, batch k at slots + k * batch */
} __attribute__((aligned(64)));

static struct transfer_class transfer[HAK_NUM_CLASSES] = {
    [0 ... HAK_NUM_CLASSES - 1] = {.lock = PTHREAD_MUTEX_INITIALIZER},
};

/* atomic: decay.c has been told that batches wait here since the last pass
 * (hak_transfer_due) */
static bool noted;

bool hak_transfer_init(void)
{
    size_t total = 0;
    for (unsigned cls = 0; cls < HAK_NUM_CLASSES; cls++) {
        struct transfer_class *t = &transfer[cls];
        /* the generator makes it 0 for a class without a cache tier; a
         * list-first class refills through a 64-block buffer (thread.c), so
         * with a larger refill it could put batches it never takes */
        const struct hak_class_info *ci = &hak_class_info[cls];
        bool takes = ci->ring_first || ci->refill <= 64;
        t->cap = HAK_DECAY_MS > 0 && takes ? ci->transfer : 0;
        t->batch = hak_class_info[cls].refill;
        total += (size_t)t->cap * t->batch;
    }
    if (total == 0)
        return true;
    /* resident only as batches come: most classes never fill theirs */
    void **slots = hak_os_map((total * sizeof(void *) + HAK_PAGE - 1) & ~(size_t)(HAK_PAGE - 1));
    for (unsigned cls = 0; cls < HAK_NUM_CLASSES; cls++) {
        struct transfer_class *t = &transfer[cls];
        if (slots == NULL) {
            t->cap = 0; /* no memory: every flush goes to the spans */
            continue;
        }
        t->slots = slots;
        slots += (size_t)t->cap * t->batch;
    }
    return slots != NULL;
}

uint32_t hak_transfer_capacity(unsigned cls)
{
    return transfer[cls].cap;
}

bool hak_transfer_put(unsigned cls, void *const *blocks)
{
    struct transfer_class *t = &transfer[cls];
    if (__atomic_load_n(&t->held, __ATOMIC_RELAXED) >= t->cap || pthread_mutex_trylock(&t->lock))
        return false;
    uint32_t held = t->held;
    if (held < t->cap) {
        memcpy(t->slots + (size_t)held * t->batch, blocks, t->batch * sizeof *blocks);
        if (held == 0)
            __atomic_store_n(&t->since, hak_now_ms(), __ATOMIC_RELAXED);
        __atomic_store_n(&t->held, held + 1, __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&t->lock);
    if (held >= t->cap)
        return false;
    /* against hak_transfer_due's exchange: either it sees this batch or this
     * sees the flag cleared (both orders are seq_cst) */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (!__atomic_load_n(&noted, __ATOMIC_RELAXED) && !__atomic_exchange_n(&noted, true, __ATOMIC_SEQ_CST))
        hak_decay_note(HAK_DECAY_TRANSFER, hak_transfer_bytes());
    return true;
}

bool hak_transfer_take(unsigned cls, void **out)
{
    struct transfer_class *t = &transfer[cls];
    if (__atomic_load_n(&t->held, __ATOMIC_RELAXED) == 0 || pthread_mutex_trylock(&t->lock))
        return false;
    uint32_t held = t->held;
    if (held > 0) {
        __atomic_store_n(&t->held, held - 1, __ATOMIC_RELAXED);
        memcpy(out, t->slots + (size_t)(held - 1) * t->batch, t->batch * sizeof *out);
        __atomic_store_n(&t->since, hak_now_ms(), __ATOMIC_RELAXED); /* in use: the rest is not idle */
    }
    pthread_mutex_unlock(&t->lock);
    return held > 0;
}

bool hak_transfer_holds(unsigned cls, const void *p)
{
    struct transfer_class *t = &transfer[cls];
    if (__atomic_load_n(&t->held, __ATOMIC_RELAXED) == 0)
        return false;
    bool found = false;
    pthread_mutex_lock(&t->lock);
    for (size_t i = 0; i < (size_t)t->held * t->batch && !found; i++) /* size_t: no overflow */
        found = t->slots[i] == p;
    pthread_mutex_unlock(&t->lock);
    return found;
}

size_t hak_transfer_bytes(void)
{
    size_t bytes = 0;
    for (unsigned cls = 0; cls < HAK_NUM_CLASSES; cls++)
        bytes += (size_t)__atomic_load_n(&transfer[cls].held, __ATOMIC_RELAXED) * transfer[cls].batch *
                 hak_class_info[cls].size;
    return bytes;
}

/* Every decay pass asks (a purge_all after a failed mmap too, which releases
 * nothing here): the flag first, so that a batch put after this notes
 * again, and no batch is left with no pass to come; what is held is due
 * HAK_DECAY_MS after its class's `since`. */
void hak_transfer_due(uint64_t *next_ms)
{
    (void)__atomic_exchange_n(&noted, false, __ATOMIC_SEQ_CST);
    for (unsigned cls = 0; cls < HAK_NUM_CLASSES; cls++)
        if (__atomic_load_n(&transfer[cls].held, __ATOMIC_SEQ_CST) > 0)
            hak_decay_due(next_ms, __atomic_load_n(&transfer[cls].since, __ATOMIC_RELAXED));
}

void hak_transfer_release(struct hak_heap *h, uint64_t now, bool all, uint64_t *next_ms)
{
    for (unsigned cls = 0; cls < HAK_NUM_CLASSES; cls++) {
        struct transfer_class *t = &transfer[cls];
        if (__atomic_load_n(&t->held, __ATOMIC_RELAXED) == 0)
            continue;
        pthread_mutex_lock(&t->lock);
        if (t->held > 0 && (all || hak_decay_is_due(now, t->since))) {
            hak_heap_give(h, cls, t->slots, (uint32_t)((size_t)t->held * t->batch));
            __atomic_store_n(&t->held, 0, __ATOMIC_RELAXED);
        } else if (t->held > 0) {
            hak_decay_due(next_ms, t->since);
        }
        pthread_mutex_unlock(&t->lock);
    }
}

void hak_transfer_lock_all(void)
{
    for (unsigned cls = 0; cls < HAK_NUM_CLASSES; cls++)
        pthread_mutex_lock(&transfer[cls].lock);
}

void hak_transfer_unlock_all(void)
{
    for (unsigned cls = HAK_NUM_CLASSES; cls-- > 0;)
        pthread_mutex_unlock(&transfer[cls].lock);
}

/* The parent's note may stand for a pass only the parent's purger would
 * make: the child notes its first put again (decay's fork handler counts
 * what is held now). */
void hak_transfer_after_fork_child(void)
{
    noted = false;
    hak_transfer_unlock_all();
}
