/* mailbox.h: hand batches of blocks to another thread, which frees them.
 *
 * Used by mid_mt and larson to get cross-thread frees. A mailbox is a
 * lock-free LIFO of batches: post() pushes one batch with a CAS, drain() takes
 * the whole list with one exchange (no ABA: nodes are never popped singly).
 * Its cost is one atomic per batch, small next to the frees it carries.
 *
 * Back-pressure: a thread that is descheduled (4 threads on 2 cores) or slow
 * cannot drain its mailbox, and unbounded backlogs would measure the
 * scheduler, not the allocator (hundreds of MiB of RSS). So post() waits while
 * the receiver has MAILBOX_MAX_PENDING batches unread, draining its own
 * mailbox meanwhile (which also rules out a deadlock around the ring).
 */
#ifndef MAILBOX_H
#define MAILBOX_H

#include <sched.h>
#include <stdatomic.h>
#include "bench.h"

struct batch {
    struct batch *next;
    long n;     /* blocks in p[] */
    void *p[];  /* each block starts with its uint64_t stamp */
};

#define MAILBOX_MAX_PENDING 8

struct mailbox {
    _Atomic(struct batch *) head;
    atomic_long pending;  /* batches posted and not yet taken */
    char pad[64 - sizeof(struct batch *) - sizeof(atomic_long)];
};

static inline void mailbox_init(struct mailbox *m)
{
    atomic_init(&m->head, NULL);
    atomic_init(&m->pending, 0);
}

/* Bytes of a batch of cap blocks; exits with a message when they overflow. */
static inline size_t batch_bytes(long cap)
{
    return bytes_n(sizeof(struct batch), (size_t)cap, sizeof(void *));
}

static inline struct batch *batch_new(long cap)
{
    struct batch *b = xmalloc(batch_bytes(cap));
    b->next = NULL;
    b->n = 0;
    return b;
}

/* Free every block of every batch waiting in m; return their stamps' sum. */
static inline uint64_t mailbox_drain(struct mailbox *m)
{
    uint64_t sum = 0;
    if (atomic_load_explicit(&m->head, memory_order_relaxed) == NULL)
        return 0;
    struct batch *b = atomic_exchange_explicit(&m->head, NULL,
                                               memory_order_acquire);
    long taken = 0;
    for (; b != NULL; taken++) {
        struct batch *next = b->next;
        for (long i = 0; i < b->n; i++) {
            sum += *(uint64_t *)b->p[i];
            free(b->p[i]);
        }
        free(b);
        b = next;
    }
    atomic_fetch_sub_explicit(&m->pending, taken, memory_order_relaxed);
    return sum;
}

/* Post b to `to`; while `to` is full, drain `mine`. Returns the stamps'
 * sum of what was drained from `mine`. */
static inline uint64_t mailbox_post(struct mailbox *to, struct batch *b,
                                    struct mailbox *mine)
{
    uint64_t sum = 0;
    while (atomic_load_explicit(&to->pending, memory_order_relaxed)
           >= MAILBOX_MAX_PENDING) {
        sum += mailbox_drain(mine);
        sched_yield();
    }
    struct batch *old = atomic_load_explicit(&to->head, memory_order_relaxed);
    do
        b->next = old;
    while (!atomic_compare_exchange_weak_explicit(
        &to->head, &old, b, memory_order_release, memory_order_relaxed));
    atomic_fetch_add_explicit(&to->pending, 1, memory_order_relaxed);
    return sum;
}

/* Called by a thread whose own work is done: keep draining m while other
 * threads may still post to it, so that memory stays bounded, then drain
 * once more. `running` counts threads still working (this one excluded).
 *
 * It yields between drains, never sleeps: a thread still working posts a
 * batch every few microseconds and waits once MAILBOX_MAX_PENDING of them
 * are unread, so a nap (50 us until 2026-11-29, and no nap is shorter than
 * the timer slack's 50 us) let the last thread run only between the naps, at
 * about a tenth of its speed: mid_mt 2T runs whose threads were 5-7% apart
 * when the first finished lost a quarter to a third of their rate to the
 * timers (bench/NOTES.md, "The mailbox's naps"). */
static inline uint64_t mailbox_drain_until_idle(struct mailbox *m,
                                                atomic_int *running)
{
    uint64_t sum = 0;
    while (atomic_load(running) > 0) {
        sum += mailbox_drain(m);
        sched_yield();
    }
    return sum + mailbox_drain(m);
}

#endif
