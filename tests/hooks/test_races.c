/*
 * Races of a remote free, replayed in one thread.  The runtime is compiled
 * into this binary with -DHAK_TEST_HOOKS: a free stops at a race point
 * (internal.h, HAK_TEST_POINT) and the hook does, at that moment, what
 * another thread could: abandon and adopt the span, take the block back,
 * free the span, purge.  The free then goes on, and the test checks what
 * it left.  No timing and no second thread: each interleaving happens every
 * run.  Each test runs in its own process (Check's fork mode), so the
 * class's lists and the superslabs start empty.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "../unit/quiet_class.h"

/* A mid class: spans of several units and a few blocks (28 KiB blocks in
 * 4-unit spans of 9 in the default spec). */
#define CLS (quiet_class())

static struct hak_span *span_of(void *p)
{
    return hak_span_of(p, hak_class_info[CLS].span_bytes / HAK_SLAB_BYTES);
}

/* Every block of one new span of h (a fresh heap: the class's lists are
 * empty), as a calloc'd array. */
static void **take_full_span(struct hak_heap *h)
{
    uint32_t n = hak_class_info[CLS].blocks;
    void **blocks = calloc(n, sizeof *blocks);
    ck_assert_uint_eq(hak_heap_take(h, CLS, blocks, n), n);
    ck_assert_ptr_eq(span_of(blocks[n - 1]), span_of(blocks[0]));
    return blocks;
}

/* ---- a remote free racing the span's abandonment and adoption ---- */

static struct hak_heap *first_owner, *adopter;
static void *adopter_block;

/* Between the freer's read of the owner and its bit: the owner exits (its
 * span, one block of which had come back, is abandoned) and another heap
 * adopts the span and takes that block, which fills it again. */
static void abandon_and_adopt(void)
{
    hak_test_hook_remote_owner_read = NULL;
    hak_heap_release(first_owner);
    ck_assert_uint_eq(hak_heap_take(adopter, CLS, &adopter_block, 1), 1);
}

/* The freer read the exiting owner, so its first idea is to tell that heap.
 * It must tell the adopter instead, or the block would wait in a span on
 * the adopter's full list that nothing makes it look at again.  (A span
 * abandoned full is not adopted: one block comes back to it first.) */
START_TEST(remote_free_during_adoption_reaches_adopter)
{
    ck_assert_uint_ge(hak_class_info[CLS].blocks, 2);
    first_owner = hak_heap_acquire();
    adopter = hak_heap_acquire();
    struct hak_heap *freer = hak_heap_acquire();
    void **blocks = take_full_span(first_owner);
    struct hak_span *sp = span_of(blocks[0]);
    hak_heap_give(hak_heap_acquire(), CLS, &blocks[1], 1);

    hak_test_hook_remote_owner_read = abandon_and_adopt;
    hak_heap_give(freer, CLS, &blocks[0], 1);
    ck_assert_ptr_null(hak_test_hook_remote_owner_read); /* the hook ran */
    ck_assert_ptr_eq(sp->owner, adopter);
    ck_assert_ptr_eq(adopter_block, blocks[1]);

    /* the adopter's span is full again: told, it looks there and finds the freed block */
    void *again;
    ck_assert_uint_eq(hak_heap_take(adopter, CLS, &again, 1), 1);
    ck_assert_ptr_eq(again, blocks[0]);
    free(blocks);
}
END_TEST

/* ---- a remote free racing the span's return and the superslab's unmap ---- */

static struct hak_heap *owner;
static struct hak_superslab *ss; /* the block's */
static bool mapped_while_marking;

static bool mapped(const void *p)
{
    unsigned char vec[1];
    return mincore((void *)p, HAK_PAGE, vec) == 0;
}

/* After the freer set the summary bit, before it reads the owner: the owner
 * takes the block back, its span is now empty and goes back to the
 * superslab, which is empty too, and malloc_trim's purge runs. */
static void take_back_and_purge(void)
{
    hak_test_hook_remote_summary_set = NULL;
    hak_heap_trim(owner);
    uint64_t next = UINT64_MAX;
    hak_ss_purge(hak_now_ms(), true, &next);
    mapped_while_marking = mapped(ss);
}

/* The purge leaves the superslab mapped while the freer still reads its
 * span header (the freer would fault), and unmaps it once the freer is done. */
START_TEST(purge_waits_for_remote_freer)
{
    owner = hak_heap_acquire();
    struct hak_heap *freer = hak_heap_acquire();
    void *p;
    ck_assert_uint_eq(hak_heap_take(owner, CLS, &p, 1), 1);
    ss = hak_ss_of(p);

    hak_test_hook_remote_summary_set = take_back_and_purge;
    hak_heap_give(freer, CLS, &p, 1);
    ck_assert_ptr_null(hak_test_hook_remote_summary_set); /* the hook ran */
    ck_assert_uint_eq(hak_region_code((uintptr_t)p), 0); /* the span was returned */
    ck_assert(mapped_while_marking);                      /* the superslab stayed */

    uint64_t next = UINT64_MAX;
    ck_assert_uint_eq(hak_ss_purge(hak_now_ms(), true, &next), HAK_SUPERSLAB_BYTES);
    errno = 0;
    ck_assert(!mapped(ss)); /* unmapped now */
    ck_assert_int_eq(errno, ENOMEM);
}
END_TEST

/* ---- a fork while another thread is in a remote free ---- */

static struct hak_heap *fork_owner;
static void *fork_block;

/* After the freer set the block's remote bit, before the word's summary
 * bit: the process forks.  In the child the freeing thread is gone (this
 * child never returns from the hook); the owner, whose span is full, must
 * still get the block back. */
static void fork_and_check(void)
{
    hak_test_hook_remote_bit_set = NULL;
    pid_t pid = fork();
    if (pid != 0) {
        ck_assert_int_gt(pid, 0);
        int status;
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert(WIFEXITED(status));
        ck_assert_msg(WEXITSTATUS(status) == 0, "the child's owner did not get the block back");
        return;
    }
    void *again;
    _exit(hak_heap_take(fork_owner, CLS, &again, 1) == 1 && again == fork_block ? 0 : 1);
}

START_TEST(fork_during_remote_free_loses_no_block)
{
    fork_owner = hak_heap_acquire();
    struct hak_heap *freer = hak_heap_acquire();
    void **blocks = take_full_span(fork_owner);
    fork_block = blocks[0];
    hak_test_hook_remote_bit_set = fork_and_check;
    hak_heap_give(freer, CLS, &blocks[0], 1);
    ck_assert_ptr_null(hak_test_hook_remote_bit_set); /* the hook ran */
    free(blocks);
}
END_TEST

/* The same fork, later in the run: the freer has set the first block's bits
 * and summary and gone on to the next block, of another span of the same
 * owner, before it raised the owner's hint (once per run, at its end).  The
 * owner's spans are full, so without the hint it would never look at them
 * again.  (The second block is in another span: blocks of one span are set
 * together, with no second read of the owner.) */
static int owner_reads;

static void fork_at_second_block(void)
{
    if (++owner_reads < 2)
        return;
    hak_test_hook_remote_owner_read = NULL;
    fork_and_check();
}

START_TEST(fork_before_run_hint_loses_no_block)
{
    const struct hak_class_info *ci = &hak_class_info[CLS];
    ck_assert_uint_ge(ci->blocks, 2);
    fork_owner = hak_heap_acquire();
    struct hak_heap *freer = hak_heap_acquire();
    void **first = take_full_span(fork_owner), **second = take_full_span(fork_owner);
    ck_assert_ptr_ne(span_of(first[0]), span_of(second[0]));
    fork_block = first[0];
    void *two[2] = {first[0], second[0]};
    hak_test_hook_remote_owner_read = fork_at_second_block;
    hak_heap_give(freer, CLS, two, 2);
    ck_assert_ptr_null(hak_test_hook_remote_owner_read); /* the hook ran */
    free(first);
    free(second);
}
END_TEST

/* ---- a free during a purge pass ---- */

static struct hak_span *pass_spans[2];

static void free_spans_during_pass(void)
{
    hak_test_hook_decay_pass_purged = NULL;
    for (int i = 0; i < 2; i++)
        hak_ss_span_free(pass_spans[i]); /* a note while the pass runs */
}

/* Spans freed while a pass runs (after it purged, before it reads what is
 * left) are still purged by a poll once due: the pass keeps the note's due
 * time.  It used to overwrite it with its own ("nothing left"), and the
 * spans stayed resident for good. */
START_TEST(free_during_pass_is_purged_later)
{
    if (HAK_DECAY_MS == 0)
        return; /* every free purges at once */
    size_t len = hak_class_info[CLS].span_bytes;
    char *base[2];
    for (int i = 0; i < 2; i++) {
        ck_assert_ptr_nonnull(pass_spans[i] = hak_ss_span_alloc(CLS));
        base[i] = hak_span_base(pass_spans[i]);
        memset(base[i], 0x5A, len);
    }
    hak_test_hook_decay_pass_purged = free_spans_during_pass;
    hak_decay_purge_all();
    ck_assert_ptr_null(hak_test_hook_decay_pass_purged); /* the hook ran */
    usleep((HAK_DECAY_MS + 100) * 1000);
    hak_decay_poll();
    unsigned char vec[1];
    for (int i = 0; i < 2; i++)
        for (size_t off = 0; off < len; off += HAK_PAGE)
            ck_assert(mincore(base[i] + off, HAK_PAGE, vec) != 0 || !(vec[0] & 1));
}
END_TEST

/* ---- a thread with a cancellation pending, waiting for a transfer lock ---- */

static sem_t napping;
static bool released;

/* The waiter has yielded in vain and is about to sleep. */
static void waiter_naps(void)
{
    hak_test_hook_transfer_lock_nap = NULL;
    sem_post(&napping);
}

/* What an allocation slow path's poll does before a pass (decay.c,
 * release_blocks), with a cancellation pending. */
static void *release_with_cancel_pending(void *unused)
{
    (void)unused;
    pthread_cancel(pthread_self()); /* deferred: acted on at a cancellation point */
    hak_decay_release_blocks();
    released = true;
    pthread_testcancel();
    return NULL;
}

/* malloc and free are no cancellation points (POSIX), and waiting for a
 * transfer cache's lock must not act on a cancellation: the waiter then
 * holds the shared heap's lock, which every later free of an exited thread
 * and every decay pass would wait for.  The wait used to sleep in
 * nanosleep, a cancellation point: the thread died there, the lock held. */
START_TEST(transfer_lock_wait_is_no_cancellation_point)
{
    if (hak_transfer_capacity(CLS) == 0)
        return;
    void *batch[64];
    ck_assert_uint_le(hak_class_info[CLS].refill, 64);
    uint32_t n = hak_class_info[CLS].refill;
    ck_assert_uint_eq(hak_heap_take(hak_heap_acquire(), CLS, batch, n), n);
    ck_assert(hak_transfer_put(CLS, batch));
    ck_assert_int_eq(sem_init(&napping, 0, 0), 0);

    hak_transfer_lock_all(); /* the waiter finds the class's lock taken */
    hak_test_hook_transfer_lock_nap = waiter_naps;
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, release_with_cancel_pending, NULL), 0);
    ck_assert_int_eq(sem_wait(&napping), 0);
    hak_transfer_unlock_all();
    void *ret;
    ck_assert_int_eq(pthread_join(t, &ret), 0);
    ck_assert_ptr_eq(ret, PTHREAD_CANCELED); /* at pthread_testcancel */
    ck_assert(released);
    ck_assert_uint_eq(hak_transfer_bytes(), 0); /* the batch went back */
    ck_assert_ptr_nonnull(hak_heap_shared_trylock());
    hak_heap_shared_unlock();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("races");
    TCase *tc = tcase_create("races");
    tcase_add_test(tc, remote_free_during_adoption_reaches_adopter);
    tcase_add_test(tc, purge_waits_for_remote_freer);
    tcase_add_test(tc, fork_during_remote_free_loses_no_block);
    tcase_add_test(tc, fork_before_run_hint_loses_no_block);
    tcase_add_test(tc, free_during_pass_is_purged_later);
    tcase_add_test(tc, transfer_lock_wait_is_no_cancellation_point);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
