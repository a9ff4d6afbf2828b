/*
 * transfer.c - whole batches of free blocks, passed from one thread's cache
 * to another's.
 *
 * A thread whose cache of a class is full puts `refill` blocks (a ring's
 * oldest, or a list's first) here as one batch (thread.c's flush); a thread
 * whose cache is empty takes a whole batch (refill) before it looks at its
 * heap's spans.  A batch moves with one lock and one copy of its pointers:
 * no block's memory, span or bitmap is touched.  Without it, a program
 * whose blocks are freed by other threads than the ones that allocated them
 * (a producer and a consumer; mid_mt, larson) sends nearly every flushed
 * block to its span's remote bitmap - a compare-exchange and two or three
 * cache lines moved between cores per block - and the owner takes them
 * back a bitmap word at a time.
 * (tcmalloc's transfer cache is the same idea, between its thread caches
 * and its central lists.)
 *
 * Blocks here stay counted in their spans' `used`, as cached blocks are
 * (heap.c): a span none of whose blocks is out, cached or here is freed,
 * so each block of a batch may keep an otherwise empty span resident.
 * A class holds at most its spec's `transfer` batches (the default spec:
 * 32 for each tiny class, 4 for each mid class); a batch that finds no room
 * goes to the spans as before.  Only while two or more threads have caches
 * does a flush put a batch here (thread.c): a single-threaded program's
 * blocks go straight back to their spans.  Batches no thread has taken for
 * HAK_DECAY_MS go back to their spans (hak_transfer_release, from decay.c's
 * passes), and malloc_trim gives back everything.  With decay_ms 0 there
 * are no transfers: memory goes back at once, and a shared cache would
 * hold it.
 *
 * The lock is only ever tried on the way in and out (try_lock): a thread
 * that finds it taken goes to its heap instead, so no flush or refill waits
 * here for another thread, and one preempted while holding it delays no
 * one.  The releases, the guarded free's search and fork wait for it.  Lock
 * order: the shared heap, then these, then the superslab's (a release gives
 * blocks to spans, which may free them) and decay's.
 */
#include <sched.h>
#include <string.h>
#include <time.h>

#include "internal.h"

struct transfer_class {
    bool locked;    /* atomic: the lock (see try_lock) */
    uint32_t held;  /* batches held; atomic: read without the lock to skip */
    uint32_t cap;   /* batches it may hold (0: the class does not transfer) */
    uint32_t batch; /* blocks per batch: the class's refill */
    uint64_t since; /* hak_now_ms() of the last take, or of the put into an empty class;
                     * atomic: read without the lock by hak_transfer_due */
    void **slots;   /* cap * batch blocks, batch k at slots + k * batch */
} __attribute__((aligned(64)));

static struct transfer_class transfer[HAK_NUM_CLASSES];

/* A class's lock is a flag: taken with one exchange, after a load that
 * leaves a taken lock's line alone, and given back with a plain store.  (A
 * mutex's trylock and unlock are both read-modify-writes of a line the
 * threads pass back and forth: 6% of larson 2T's time in perf.)  The
 * releases, the guarded search and fork wait for it, yielding.  Between
 * fork's handlers the forking thread holds them all (internal.h): a try
 * fails, a wait passes, an unlock leaves the lock to the handlers. */
static bool try_lock(struct transfer_class *t)
{
    return !hak_fork_depth && !__atomic_load_n(&t->locked, __ATOMIC_RELAXED) &&
           !__atomic_exchange_n(&t->locked, true, __ATOMIC_ACQUIRE);
}

#ifdef HAK_TEST_HOOKS
void (*hak_test_hook_transfer_lock_nap)(void);
#endif

static void lock(struct transfer_class *t)
{
    if (hak_fork_depth)
        return;
    /* a holder is in the middle of a copy: yield to it; one preempted by a
     * thread of higher priority on this CPU (sched_yield would not let it
     * run) is let run by a sleep */
    for (unsigned tries = 0; !try_lock(t); tries++) {
        if (tries < 64) {
            sched_yield();
        } else {
            HAK_TEST_POINT(transfer_lock_nap);
            /* with cancellation off: nanosleep is a cancellation point, and
             * malloc and free are none (POSIX).  A thread cancelled here
             * died holding its caller's locks (a poll's pass: the shared
             * heap's, which every exited thread's free then waited for). */
            const struct timespec nap = {0, 100 * 1000};
            int cancel;
            pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel);
            nanosleep(&nap, NULL);
            pthread_setcancelstate(cancel, NULL);
        }
    }
}

static void unlock(struct transfer_class *t)
{
    if (!hak_fork_depth)
        __atomic_store_n(&t->locked, false, __ATOMIC_RELEASE);
}

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

bool hak_transfer_room(unsigned cls)
{
    struct transfer_class *t = &transfer[cls];
    return __atomic_load_n(&t->held, __ATOMIC_RELAXED) < t->cap;
}

bool hak_transfer_put(unsigned cls, void *const *blocks)
{
    struct transfer_class *t = &transfer[cls];
    if (!hak_transfer_room(cls) || !try_lock(t))
        return false;
    uint32_t held = t->held;
    if (held < t->cap) {
        memcpy(t->slots + (size_t)held * t->batch, blocks, t->batch * sizeof *blocks);
        if (held == 0)
            __atomic_store_n(&t->since, hak_now_ms(), __ATOMIC_RELAXED);
        __atomic_store_n(&t->held, held + 1, __ATOMIC_RELAXED);
    }
    unlock(t);
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
    if (__atomic_load_n(&t->held, __ATOMIC_RELAXED) == 0 || !try_lock(t))
        return false;
    uint32_t held = t->held;
    if (held > 0) {
        __atomic_store_n(&t->held, held - 1, __ATOMIC_RELAXED);
        memcpy(out, t->slots + (size_t)(held - 1) * t->batch, t->batch * sizeof *out);
        __atomic_store_n(&t->since, hak_now_ms(), __ATOMIC_RELAXED); /* in use: the rest is not idle */
    }
    unlock(t);
    return held > 0;
}

bool hak_transfer_holds(unsigned cls, const void *p)
{
    struct transfer_class *t = &transfer[cls];
    if (__atomic_load_n(&t->held, __ATOMIC_RELAXED) == 0)
        return false;
    bool found = false;
    lock(t);
    for (size_t i = 0; i < (size_t)t->held * t->batch && !found; i++) /* size_t: no overflow */
        found = t->slots[i] == p;
    unlock(t);
    return found;
}

size_t hak_transfer_bytes(void)
{
    size_t bytes = 0;
    for (unsigned cls = 0; cls < HAK_NUM_CLASSES; cls++)
        bytes += (size_t)__atomic_load_n(&transfer[cls].held, __ATOMIC_RELAXED) * transfer[cls].batch *
                 hak_class_info[cls].stride;
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
        lock(t);
        if (t->held > 0 && (all || hak_decay_is_due(now, t->since))) {
            hak_heap_give(h, cls, t->slots, (uint32_t)((size_t)t->held * t->batch));
            __atomic_store_n(&t->held, 0, __ATOMIC_RELAXED);
        } else if (t->held > 0) {
            hak_decay_due(next_ms, t->since);
        }
        unlock(t);
    }
}

void hak_transfer_lock_all(void)
{
    for (unsigned cls = 0; cls < HAK_NUM_CLASSES; cls++)
        lock(&transfer[cls]);
}

void hak_transfer_unlock_all(void)
{
    for (unsigned cls = HAK_NUM_CLASSES; cls-- > 0;)
        unlock(&transfer[cls]);
}

/* The parent's note may stand for a pass only the parent's purger would
 * make: the child notes its first put again (decay's fork handler counts
 * what is held now). */
void hak_transfer_after_fork_child(void)
{
    noted = false;
    hak_transfer_unlock_all();
}
