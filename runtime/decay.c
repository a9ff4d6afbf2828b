/*
 * decay.c - when free memory goes back to the OS.
 *
 * Freed spans and cached large spans stay resident for HAK_DECAY_MS
 * (options.decay_ms), so a program that frees and allocates again reuses warm
 * pages; after that the purge gives them back (madvise, munmap).  The purge
 * runs on a background thread, so that memory goes back even when the
 * program makes no further call: after a program frees everything and waits
 * past decay_ms, its RSS is back near its start.  With decay_ms 0 the purge
 * runs at once, on the freeing thread, and no thread is started.
 *
 * The thread is started only once HAK_PURGER_MIN_BYTES or more are dirty or
 * cached at the same time: a note (what a layer holds after a free) makes it
 * wanted, and the poll that would start it counts again (memory freed and
 * taken again since is not there to give back).  Less is purged by the
 * first allocation slow path after it is due, so it stays resident while the
 * program makes no such call.  A program that never has that much to
 * give back stays as single-threaded as it made itself:
 * unshare(CLONE_NEWUSER) and setns() into a user namespace refuse a process
 * with a second thread (EINVAL), and the small tools that call them (sandbox
 * launchers) have freed a few spans by then.
 *
 * Lower layers only call hak_decay_note() ("something became free, and this
 * much is mine to give back"; heap.c's layer is what other threads freed
 * into exited threads' spans, which only release_blocks() takes back); the
 * thread is started from hak_decay_poll(), called only where neither hakmem
 * nor libc can hold a lock that pthread_create takes: the allocation slow
 * path (a class's refill, a large block: hak_thread_poll) of a thread that
 * has not exited, a thread's exit (hakmem's TSD destructor, after its heap is
 * released) and malloc_trim (which purges everything first).  Never from
 * free: glibc frees a dead thread's TLS (_dl_deallocate_tls) with its
 * stack-cache lock held, and pthread_create takes that lock - a free there
 * that started the purger deadlocked the process.  So a program whose first
 * freed span comes after its last allocation slow path gets the purge at its
 * next one, its next thread exit or malloc_trim; until then only the cap on
 * dirty pages (superslab.c) gives memory back.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <time.h>

#include "internal.h"

static pthread_mutex_t decay_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t decay_wake = PTHREAD_COND_INITIALIZER;
static bool work_pending;  /* something freed since the purge last cleared this */
static bool purger_wanted; /* atomic: hak_decay_poll should start the thread */
static bool purger_running;
static size_t pending[HAK_DECAY_LAYERS]; /* what each layer last said it holds, in bytes */
static uint64_t notes; /* notes so far: a pass that saw none come meanwhile has the last word */
static uint64_t small_due_ms = UINT64_MAX; /* atomic: with no purger, when a poll purges what waits */
static uint64_t retry_after_ms; /* atomic: no new try to start the purger before */

uint64_t hak_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

#define NOTHING_DUE UINT64_MAX

static bool purger_worth_it(void)
{
    size_t sum = 0;
    for (int i = 0; i < HAK_DECAY_LAYERS; i++)
        sum += pending[i];
    return sum >= HAK_PURGER_MIN_BYTES;
}

/* One pass at a time.  A pass takes what it purges out of the caches under
 * their locks and unmaps it after dropping them; a thread whose map failed
 * (hak_decay_purge_all) would otherwise find the caches emptied by the
 * background pass and the memory not yet back, and fail for nothing.  With
 * this lock it waits for that pass to finish.  Lock order: a heap's
 * abandoned-span locks (a trim frees spans under them, and with decay_ms 0
 * that purges), then this, then the superslab and large locks, then
 * decay_lock (taken alone: nothing else is locked under it). */
static pthread_mutex_t purge_lock = PTHREAD_MUTEX_INITIALIZER;

#ifdef HAK_TEST_HOOKS
void (*hak_test_hook_decay_pass_purged)(void);
#endif

/* pending[] from the layers' own counts, unless a note came since
 * notes_before (it is newer than what was read here).  Takes the layers'
 * locks, then decay_lock: the caller holds none of them. */
static void refresh_pending(uint64_t notes_before)
{
    struct hak_usage held = {0};
    hak_ss_usage(&held);
    hak_large_usage(&held);
    hak_lock(&decay_lock);
    if (notes == notes_before) {
        pending[HAK_DECAY_SS] = held.ss_dirty;
        pending[HAK_DECAY_LARGE] = held.large_cached;
        pending[HAK_DECAY_TRANSFER] = hak_transfer_bytes();
        pending[HAK_DECAY_ABANDONED] = hak_heap_abandoned_freed();
        pending[HAK_DECAY_THREADS] = hak_thread_pool_bytes();
    }
    hak_unlock(&decay_lock);
}

static uint64_t notes_now(void)
{
    hak_lock(&decay_lock);
    uint64_t n = notes;
    hak_unlock(&decay_lock);
    return n;
}

/* After a pass with no purger running, what is left decides: the thread if
 * it is worth one, else a poll at `next`, or sooner if a note came during
 * the pass and asked for it. */
static void after_pass(uint64_t next, uint64_t notes_before)
{
    refresh_pending(notes_before);
    hak_lock(&decay_lock);
    if (!purger_running) {
        bool wanted = purger_worth_it();
        uint64_t due = notes != notes_before ? __atomic_load_n(&small_due_ms, __ATOMIC_RELAXED) : next;
        work_pending = wanted;
        __atomic_store_n(&purger_wanted, wanted, __ATOMIC_RELAXED);
        __atomic_store_n(&small_due_ms, wanted ? NOTHING_DUE : due < next ? due : next,
                         __ATOMIC_RELAXED);
    }
    hak_unlock(&decay_lock);
}

/* Before a pass, and only where no lock is held (the purger, a poll,
 * malloc_trim; a thread whose mmap failed may hold the shared heap's):
 * batches idle in the transfer caches for HAK_DECAY_MS (all: every one) go
 * back to their spans, given as the shared heap, and abandoned spans whose
 * every block has come back (those, or other threads' frees) are freed, for
 * the pass to purge.  No thread may ever adopt them: an exited thread's
 * spans would otherwise keep what they hold until malloc_trim.  Exited
 * threads' blocks pooled as long are unmapped.  Returns when the transfer
 * caches' and the pool's rest will be due. */
static uint64_t release_blocks(bool all)
{
    uint64_t next = NOTHING_DUE;
    if (HAK_DECAY_MS > 0) { /* else there are no transfers (transfer.c), nor pooled blocks */
        uint64_t now = hak_now_ms();
        struct hak_heap *h = hak_heap_shared_lock();
        hak_transfer_release(h, now, all, &next);
        hak_heap_shared_unlock();
        hak_thread_pool_release(now, all, &next);
    }
    hak_heap_trim_abandoned();
    return next;
}

/* Passes made so far, read by every thread's allocation slow path: one came
 * since the thread's last look, and the caches of its big blocks go back
 * (thread.c, drain_big_after_pass).  Relaxed: a look that misses one only
 * leaves the caches until the next. */
static uint32_t passes;

uint32_t hak_decay_passes(void)
{
    return __atomic_load_n(&passes, __ATOMIC_RELAXED);
}

/* One pass over everything that may be purged; returns when what is left
 * will be due (NOTHING_DUE: nothing is left), `next` (the transfer caches'
 * due time) included. */
static uint64_t purge_pass(bool all, size_t *released, uint64_t next)
{
    __atomic_add_fetch(&passes, 1, __ATOMIC_RELAXED);
    hak_lock(&purge_lock);
    uint64_t notes_before = notes_now();
    uint64_t now = hak_now_ms();
    *released = hak_ss_purge(now, all, &next);
    *released += hak_large_purge(now, all, &next);
    if (HAK_DECAY_MS > 0) {
        hak_transfer_due(&next);
        hak_thread_pool_due(&next);
        /* freed into abandoned spans after release_blocks trimmed them, and
         * noted before notes_before was read: the next pass is theirs */
        if (hak_heap_abandoned_freed() != 0)
            hak_decay_due(&next, now);
    }
    HAK_TEST_POINT(decay_pass_purged);
    if (HAK_DECAY_MS > 0)
        after_pass(next, notes_before);
    hak_unlock(&purge_lock);
    return next;
}

static void sleep_until(uint64_t due_ms)
{
    uint64_t now = hak_now_ms();
    if (due_ms <= now)
        return;
    uint64_t ms = due_ms - now + 5; /* the clock is coarse: be past it */
    struct timespec nap = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&nap, NULL);
}

static void *purger(void *unused)
{
    (void)unused;
    /* a pass at once: what made a poll start this thread may have waited
     * for that poll past its due time (a pass finds when the rest is due) */
    uint64_t due = 0;
    for (;;) {
        hak_lock(&decay_lock);
        while (!work_pending && due == NOTHING_DUE)
            pthread_cond_wait(&decay_wake, &decay_lock);
        if (work_pending && due == NOTHING_DUE)
            due = hak_now_ms() + HAK_DECAY_MS; /* freed just now */
        work_pending = false; /* a note from now on sets it again */
        hak_unlock(&decay_lock);
        sleep_until(due);
        size_t released;
        due = purge_pass(false, &released, release_blocks(false));
    }
    return NULL;
}

void hak_decay_note(unsigned layer, size_t holds)
{
    if (HAK_DECAY_MS == 0) {
        /* frees into abandoned spans (heap.c): trimmed once they add up to
         * what would start the purger, not at every one (a trim visits
         * every abandoned span: a program freeing an exited thread's 8M
         * blocks ran 21x slower).  The caller holds no abandoned list's
         * lock, and at most the shared heap's. */
        if (layer == HAK_DECAY_ABANDONED) {
            if (holds < HAK_PURGER_MIN_BYTES)
                return;
            hak_heap_trim_abandoned();
        }
        size_t released;
        (void)purge_pass(false, &released, NOTHING_DUE);
        return;
    }
    hak_lock(&decay_lock);
    pending[layer] = holds;
    notes++;
    if (purger_running) {
        if (!work_pending) {
            work_pending = true;
            pthread_cond_signal(&decay_wake);
        }
    } else if (purger_worth_it()) {
        work_pending = true;
        __atomic_store_n(&purger_wanted, true, __ATOMIC_RELAXED);
    } else if (__atomic_load_n(&small_due_ms, __ATOMIC_RELAXED) == NOTHING_DUE) {
        /* too little for a thread: an allocation slow path purges it */
        __atomic_store_n(&small_due_ms, hak_now_ms() + HAK_DECAY_MS, __ATOMIC_RELAXED);
    }
    hak_unlock(&decay_lock);
}

/* The purger thread, detached, with every signal blocked (the program's
 * signals are not for it).  A 64 KiB stack first; glibc refuses a stack that
 * cannot hold the program's static TLS (its __thread data: 1 MiB in some
 * programs), and then the default size (address space, resident only as
 * touched). */
static bool start_purger(void)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    bool ok = false;
    for (int small = 1; small >= 0 && !ok; small--) {
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (small)
            pthread_attr_setstacksize(&attr, 64 * 1024);
        pthread_t t;
        ok = pthread_create(&t, &attr, purger, NULL) == 0;
        pthread_attr_destroy(&attr);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return ok;
}

static void poll_due(void)
{
    uint64_t now = hak_now_ms();
    size_t released;
    if (!__atomic_load_n(&purger_wanted, __ATOMIC_RELAXED)) {
        /* less than a thread is for: purged here once it is due, by the
         * one poll that claims it (the pass sets the next due time) */
        uint64_t due = __atomic_load_n(&small_due_ms, __ATOMIC_RELAXED);
        if (now >= due && __atomic_compare_exchange_n(&small_due_ms, &due, NOTHING_DUE, false,
                                                      __ATOMIC_RELAXED, __ATOMIC_RELAXED))
            (void)purge_pass(false, &released, release_blocks(false));
        return;
    }
    if (now < __atomic_load_n(&retry_after_ms, __ATOMIC_RELAXED))
        return; /* the thread could not be started just now */
    /* a note counts only what was freed: memory taken again since then
     * (dirty units reused, the large cache) is not there to give back */
    refresh_pending(notes_now());
    hak_lock(&decay_lock);
    bool start = !purger_running && __atomic_load_n(&purger_wanted, __ATOMIC_RELAXED) &&
                 purger_worth_it();
    purger_running = purger_running || start;
    __atomic_store_n(&purger_wanted, false, __ATOMIC_RELAXED);
    if (start)
        __atomic_store_n(&small_due_ms, NOTHING_DUE, __ATOMIC_RELAXED); /* the thread's now */
    else if (!purger_running) { /* too little after all: a poll purges it, the next one */
        work_pending = false;
        __atomic_store_n(&small_due_ms, now, __ATOMIC_RELAXED);
    }
    hak_unlock(&decay_lock);
    if (!start || start_purger())
        return;
    /* no thread (out of threads or memory): purge what is due now, and try
     * again at a poll after a decay at the soonest, not at every one */
    __atomic_store_n(&retry_after_ms, now + (HAK_DECAY_MS > 0 ? HAK_DECAY_MS : 1),
                     __ATOMIC_RELAXED);
    hak_lock(&decay_lock);
    purger_running = false;
    hak_unlock(&decay_lock);
    /* and wants the thread again if worth it */
    (void)purge_pass(false, &released, release_blocks(false));
}

void hak_decay_poll(void)
{
    if (HAK_LIKELY(!__atomic_load_n(&purger_wanted, __ATOMIC_RELAXED) &&
                   __atomic_load_n(&small_due_ms, __ATOMIC_RELAXED) == NOTHING_DUE))
        return;
    if (hak_fork_depth) /* inside fork's handlers (internal.h): after them */
        return;
    /* The allocation this is part of may well succeed: it leaves errno
     * alone, as glibc's does, whatever the purge or a failed start of the
     * thread (out of address space or threads: ENOMEM, EAGAIN) set.  A
     * program that sets errno to 0 and calls getpwnam() tells "no such
     * user" from an error by it. */
    int saved_errno = errno;
    poll_due();
    errno = saved_errno;
}

size_t hak_decay_purge_all(void)
{
    size_t released;
    (void)purge_pass(true, &released, NOTHING_DUE);
    return released;
}

/* mmap or mremap failed (superslab.c, large.c): memory the purge alone would miss
 * first, whether due or not: the transfer caches' batches go back to their
 * spans and abandoned spans that got all their blocks back are freed (a
 * program whose threads exited after their blocks were freed elsewhere would
 * otherwise be out of memory with everything free), then every free page
 * goes, and exited threads' pooled blocks.  The caller may hold the shared
 * heap's lock (a thread without a heap): the batches and blocks then stay. */
size_t hak_decay_reclaim_all(void)
{
    if (HAK_DECAY_MS > 0) {
        struct hak_heap *h = hak_heap_shared_trylock();
        if (h != NULL) { /* so this thread holds no lock: the pool's may be taken */
            uint64_t next = NOTHING_DUE;
            hak_transfer_release(h, hak_now_ms(), true, &next);
            hak_heap_shared_unlock();
            hak_thread_pool_release(0, true, &next);
        }
    }
    hak_heap_trim_abandoned();
    return hak_decay_purge_all();
}

void hak_decay_release_blocks(void)
{
    (void)release_blocks(true);
}

void hak_decay_lock(void)
{
    hak_lock(&decay_lock);
}

void hak_decay_unlock(void)
{
    hak_unlock(&decay_lock);
}

void hak_decay_purge_lock(void)
{
    hak_lock(&purge_lock);
}

void hak_decay_purge_unlock(void)
{
    hak_unlock(&purge_lock);
}

/* The child of fork has no purger thread: start one when needed. */
void hak_decay_after_fork_child(void)
{
    /* The parent's purger may have taken the last note and be sleeping
     * toward its due time: the child has no such thread, so whatever waits
     * to be purged counts as a fresh note (the child's next slow path starts
     * its own purger, or purges it itself if it is too little for one).
     * The child holds every lock here. */
    purger_running = false;
    bool any = HAK_DECAY_MS > 0 && (hak_ss_purgeable_locked() || hak_large_cached_locked() ||
                                    hak_transfer_bytes() > 0 || hak_heap_abandoned_freed() > 0 ||
                                    hak_thread_pool_bytes() > 0);
    work_pending = any && purger_worth_it();
    __atomic_store_n(&purger_wanted, work_pending, __ATOMIC_RELAXED);
    __atomic_store_n(&small_due_ms, any && !work_pending ? hak_now_ms() + HAK_DECAY_MS : NOTHING_DUE,
                     __ATOMIC_RELAXED);
    pthread_cond_init(&decay_wake, NULL);
    hak_unlock(&decay_lock);
}
