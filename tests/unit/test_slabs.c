/* Heaps and spans: carving, reuse, return of empty spans, the region map,
 * remote frees, thread exit, abandonment and adoption. */
#include <check.h>
#include <dirent.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "quiet_class.h"

#define QUIET_CLASS (quiet_class())

static char *span_base_of(void *p)
{
    const struct hak_class_info *ci = &hak_class_info[QUIET_CLASS];
    return hak_span_base(hak_span_of(p, ci->span_bytes / HAK_SLAB_BYTES));
}

/* A fresh span hands out its blocks in address order, one class per span. */
START_TEST(carve_in_order)
{
    const struct hak_class_info *ci = &hak_class_info[QUIET_CLASS];
    struct hak_heap *h = hak_heap_acquire();
    void *out[8];
    ck_assert_uint_eq(hak_heap_take(h, QUIET_CLASS, out, 8), 8);
    char *base = span_base_of(out[0]);
    ck_assert_ptr_eq(out[0], base);
    ck_assert_uint_eq((uintptr_t)base % ci->span_bytes, 0);
    for (int i = 0; i < 8 && i < (int)ci->blocks; i++) {
        ck_assert_ptr_eq(out[i], base + (size_t)i * ci->stride);
        ck_assert_uint_eq(hak_region_code((uintptr_t)out[i]), QUIET_CLASS + 1);
    }
}
END_TEST

/* malloc hands a fresh span's blocks out in address order too, whatever the
 * class's first tier: a refill loads its cache in reverse, the cache pops
 * its newest first.  Consecutive blocks of one span are one stride apart,
 * upward (they went downward within each refill before). */
START_TEST(malloc_hands_out_in_address_order)
{
    const struct hak_class_info *ci = &hak_class_info[QUIET_CLASS];
    enum { N = 40 };
    char *p[N];
    for (int i = 0; i < N; i++)
        ck_assert_ptr_nonnull(p[i] = malloc(ci->size));
    int same_span = 0;
    for (int i = 0; i + 1 < N; i++) {
        if (span_base_of(p[i]) != span_base_of(p[i + 1]))
            continue;
        ck_assert_ptr_eq(p[i + 1], p[i] + ci->stride);
        same_span++;
    }
    ck_assert_int_ge(same_span, N / 2);
    for (int i = 0; i < N; i++)
        free(p[i]);
}
END_TEST

/* Given-back blocks are reused (found in the live bitmap, lowest first)
 * before carving goes on. */
START_TEST(reuse_before_carving)
{
    const struct hak_class_info *ci = &hak_class_info[QUIET_CLASS];
    ck_assert_uint_ge(ci->blocks, 4);
    struct hak_heap *h = hak_heap_acquire();
    void *out[4], *again[3];
    ck_assert_uint_eq(hak_heap_take(h, QUIET_CLASS, out, 3), 3);
    hak_heap_give(h, QUIET_CLASS, &out[0], 1);
    hak_heap_give(h, QUIET_CLASS, &out[2], 1);
    ck_assert_uint_eq(hak_heap_take(h, QUIET_CLASS, again, 3), 3);
    ck_assert_ptr_eq(again[0], out[0]);
    ck_assert_ptr_eq(again[1], out[2]);
    ck_assert_ptr_eq(again[2], (char *)out[0] + 3 * ci->stride);
}
END_TEST

/* When all of a span's blocks come back it returns to its superslab and the
 * region map forgets it, unless it is its class's only partial span. */
START_TEST(empty_span_returned)
{
    const struct hak_class_info *ci = &hak_class_info[QUIET_CLASS];
    uint32_t n = ci->blocks;
    struct hak_heap *h = hak_heap_acquire();
    void **a = calloc(n, sizeof *a), **b = calloc(n, sizeof *b);
    ck_assert_uint_eq(hak_heap_take(h, QUIET_CLASS, a, n), n);
    ck_assert_uint_eq(hak_heap_take(h, QUIET_CLASS, b, n), n);
    char *base_a = span_base_of(a[0]), *base_b = span_base_of(b[0]);
    ck_assert_ptr_ne(base_a, base_b);
    hak_heap_give(h, QUIET_CLASS, a, n); /* the only partial span: kept */
    ck_assert_uint_eq(hak_region_code((uintptr_t)base_a), QUIET_CLASS + 1);
    hak_heap_give(h, QUIET_CLASS, b, n); /* another is partial: returned */
    ck_assert_uint_eq(hak_region_code((uintptr_t)base_b), 0);
    ck_assert_uint_eq(hak_region_code((uintptr_t)base_a), QUIET_CLASS + 1);
    free(a);
    free(b);
}
END_TEST

/* A new span goes where freed units are still resident (dirty) before any
 * clean ones: here a purged run comes first in the superslab, and the span
 * still lands on the dirty run after it. */
START_TEST(span_reuses_resident_units)
{
    struct hak_span *a = hak_ss_span_alloc(QUIET_CLASS), *b = hak_ss_span_alloc(QUIET_CLASS);
    while (hak_ss_of(a) != hak_ss_of(b) || b < a) { /* two spans of one superslab, a first */
        hak_ss_span_free(a);
        a = b;
        b = hak_ss_span_alloc(QUIET_CLASS);
    }
    ck_assert_ptr_nonnull(b);
    struct hak_span *keep = hak_ss_span_alloc(QUIET_CLASS); /* the superslab stays mapped */
    char *base_b = hak_span_base(b);
    hak_ss_span_free(a);
    uint64_t next = UINT64_MAX;
    hak_ss_purge(hak_now_ms(), true, &next); /* a's units: clean */
    hak_ss_span_free(b);                     /* b's units: dirty */
    struct hak_span *c = hak_ss_span_alloc(QUIET_CLASS);
    ck_assert_ptr_eq(c, b);
    ck_assert_ptr_eq(hak_span_base(c), base_b);
    ck_assert_uint_eq(hak_region_code((uintptr_t)base_b), QUIET_CLASS + 1);
    hak_ss_span_free(c);
    hak_ss_span_free(keep);
}
END_TEST

/* Unmapping an empty superslab forgets its dirty units.  The global dirty
 * count used to keep them, so after a few rounds of spans freed and
 * superslabs unmapped the cap on dirty units seemed exceeded for good, and
 * every freed span was madvised at once instead of staying resident for
 * reuse until the decay. */
START_TEST(unmapping_forgets_dirty_units)
{
    enum { SPANS = 96, ROUNDS = 4 }; /* each round ~48 MiB of spans of 8 units */
    static struct hak_span *sp[SPANS];
    uint64_t next = UINT64_MAX;
    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < SPANS; i++)
            ck_assert_ptr_nonnull(sp[i] = hak_ss_span_alloc(QUIET_CLASS));
        for (int i = 0; i < SPANS; i++)
            hak_ss_span_free(sp[i]); /* the cap purges some, the rest stay dirty */
        hak_ss_purge(hak_now_ms(), true, &next); /* every superslab is empty: unmapped */
    }
    /* 8 spans' units (2 MiB): far under the cap (16 MiB), kept resident */
    const struct hak_class_info *ci = &hak_class_info[QUIET_CLASS];
    struct hak_span *few[8];
    for (int i = 0; i < 8; i++) {
        ck_assert_ptr_nonnull(few[i] = hak_ss_span_alloc(QUIET_CLASS));
        memset(hak_span_base(few[i]), 0x5A, ci->span_bytes);
    }
    for (int i = 0; i < 8; i++)
        hak_ss_span_free(few[i]);
    size_t pages = ci->span_bytes / HAK_PAGE;
    unsigned char *vec = malloc(pages);
    for (int i = 0; i < 8; i++) {
        ck_assert_int_eq(mincore(hak_span_base(few[i]), ci->span_bytes, vec), 0);
        for (size_t j = 0; j < pages; j++)
            ck_assert_msg(vec[j] & 1, "page %zu of freed span %d was purged at once", j, i);
    }
    free(vec);
}
END_TEST

/* A new span looks for units only in the superslabs that have free ones,
 * dirty ones first: each superslab is on those lists exactly while it has
 * such units, through spans taken and freed, purges and unmapping. */
START_TEST(superslab_lists_follow_the_units)
{
    enum { SPANS = 48, ROUNDS = 2 }; /* spans of 4 units: seven superslabs */
    static struct hak_span *sp[SPANS];
    uint64_t next = UINT64_MAX;
    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < SPANS; i++) {
            ck_assert_ptr_nonnull(sp[i] = hak_ss_span_alloc(QUIET_CLASS));
            ck_assert(hak_ss_lists_valid());
        }
        for (int i = 0; i < SPANS; i += 3) {
            hak_ss_span_free(sp[i]);
            ck_assert(hak_ss_lists_valid());
        }
        hak_ss_purge(hak_now_ms(), true, &next); /* the holes: clean now */
        ck_assert(hak_ss_lists_valid());
        for (int i = 0; i < SPANS; i += 3) {
            ck_assert_ptr_nonnull(sp[i] = hak_ss_span_alloc(QUIET_CLASS));
            ck_assert(hak_ss_lists_valid());
        }
        for (int i = 0; i < SPANS; i++) {
            hak_ss_span_free(sp[i]);
            ck_assert(hak_ss_lists_valid());
        }
        hak_ss_purge(hak_now_ms(), true, &next); /* empty superslabs: unmapped */
        ck_assert(hak_ss_lists_valid());
    }
}
END_TEST

/* A pass whose clock was read before a span was freed (it reads it before
 * it takes the lock; the free stamps its units under it) leaves that span
 * for later: it is not due yet, not due "2^64 ms ago".  Some superslab here
 * holds only this test's spans, so it becomes empty as well as dirty. */
START_TEST(purge_with_older_clock_leaves_fresh_spans)
{
    enum { SPANS = 24 }; /* over three superslabs' worth of 4-unit spans */
    struct hak_span *sp[SPANS];
    for (int i = 0; i < SPANS; i++)
        ck_assert_ptr_nonnull(sp[i] = hak_ss_span_alloc(QUIET_CLASS));
    uint64_t before = hak_now_ms();
    for (int i = 0; i < SPANS; i++)
        hak_ss_span_free(sp[i]);
    uint64_t next = UINT64_MAX;
    ck_assert_uint_eq(hak_ss_purge(before - 1, false, &next), 0);
    ck_assert_uint_ge(next, before + HAK_DECAY_MS);
    ck_assert_uint_le(next, hak_now_ms() + HAK_DECAY_MS);
    ck_assert_uint_gt(hak_ss_purge(UINT64_MAX - HAK_DECAY_MS, false, &next), 0); /* all due */
}
END_TEST

/* Whether none of [p, p + len) is resident (or mapped at all). */
static bool none_resident(void *p, size_t len)
{
    unsigned char vec[len / HAK_PAGE];
    if (mincore(p, len, vec) != 0)
        return true;
    for (size_t i = 0; i < len / HAK_PAGE; i++)
        if (vec[i] & 1)
            return false;
    return true;
}

/* Threads of this process, from /proc/self/task. */
static int thread_count(void)
{
    DIR *d = opendir("/proc/self/task");
    ck_assert_ptr_nonnull(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* Spans of QUIET_CLASS holding at least `bytes`, written so that they are
 * resident; returns how many (at most max). */
static int alloc_dirty_spans(struct hak_span **sp, int max, size_t bytes)
{
    const struct hak_class_info *ci = &hak_class_info[QUIET_CLASS];
    int n = (int)((bytes + ci->span_bytes - 1) / ci->span_bytes);
    ck_assert_int_le(n, max);
    for (int i = 0; i < n; i++) {
        ck_assert_ptr_nonnull(sp[i] = hak_ss_span_alloc(QUIET_CLASS));
        memset(hak_span_base(sp[i]), 0x5A, ci->span_bytes);
    }
    return n;
}

enum { MAX_SPANS = (int)(2 * HAK_PURGER_MIN_BYTES / (16 << 10)) }; /* 16 KiB slabs and up */

/* The cap on dirty units gives back at once what a program frees at once.
 * When a new span faults in clean units soon after such a purge, what it
 * gave back was wanted again: the cap's floor rises, and the same amount
 * freed again stays resident for the next round (superslab.c, cap_floor). */
START_TEST(cap_rises_when_its_purge_is_faulted_in_again)
{
    if (HAK_DECAY_MS == 0)
        return; /* every free purges at once */
    const size_t MiB = (size_t)1 << 20, span = hak_class_info[QUIET_CLASS].span_bytes;
    hak_decay_purge_all(); /* what the harness left: nothing is dirty now */
    struct hak_span **sp = malloc((24 * MiB / span + 1) * sizeof *sp);
    ck_assert_ptr_nonnull(sp);
    for (int round = 0; round < 2; round++) {
        int n = alloc_dirty_spans(sp, (int)(24 * MiB / span + 1), 24 * MiB);
        for (int i = 0; i < n; i++)
            hak_ss_span_free(sp[i]);
        struct hak_usage u = {0};
        hak_ss_usage(&u);
        if (round == 0)
            ck_assert_uint_le(u.ss_dirty, 16 * MiB); /* over the cap: purged */
        else
            ck_assert_uint_ge(u.ss_dirty, 24 * MiB); /* all of it kept */
    }
    free(sp);
    hak_decay_purge_all();
}
END_TEST

/* Less than HAK_PURGER_MIN_BYTES to give back starts no purger thread: a
 * program stays single-threaded (unshare(CLONE_NEWUSER) needs that); once
 * that much is dirty, the next poll starts it. */
START_TEST(purger_waits_for_enough_to_give_back)
{
    if (HAK_DECAY_MS == 0)
        return; /* every free purges at once: no purger */
    const size_t span = hak_class_info[QUIET_CLASS].span_bytes;
    hak_decay_purge_all(); /* what the harness left: nothing is dirty now */
    hak_decay_poll();
    int before = thread_count();
    static struct hak_span *sp[MAX_SPANS];
    int n = alloc_dirty_spans(sp, MAX_SPANS, HAK_PURGER_MIN_BYTES + span);
    int below = (int)(HAK_PURGER_MIN_BYTES / span) - 1; /* one span short */
    ck_assert_int_ge(below, 1);
    for (int i = 0; i < below; i++)
        hak_ss_span_free(sp[i]);
    hak_decay_poll();
    usleep(50 * 1000);
    ck_assert_int_eq(thread_count(), before);
    for (int i = below; i < n; i++)
        hak_ss_span_free(sp[i]);
    hak_decay_poll();
    ck_assert_int_eq(thread_count(), before + 1);
}
END_TEST

/* What was freed and then taken again is not there to give back: a large
 * block cached and reused, then a little freed, starts no purger although
 * the two notes add up to the threshold (the poll counts again). */
START_TEST(purger_counts_what_is_still_free)
{
    if (HAK_DECAY_MS == 0)
        return;
    const size_t span = hak_class_info[QUIET_CLASS].span_bytes;
    hak_decay_purge_all();
    hak_decay_poll();
    int before = thread_count();
    size_t len = HAK_PURGER_MIN_BYTES - span;
    char *big = hak_large_alloc(len, 0, false);
    ck_assert_ptr_nonnull(big);
    memset(big, 0x5A, len);
    ck_assert(hak_large_free(big)); /* cached: a note of len bytes */
    char *again = hak_large_alloc(len, 0, false);
    ck_assert_ptr_eq(again, big); /* the cached span, taken again */
    static struct hak_span *sp[MAX_SPANS];
    int n = alloc_dirty_spans(sp, MAX_SPANS, 2 * span);
    for (int i = 0; i < n; i++)
        hak_ss_span_free(sp[i]); /* a note: len + 2 spans by the notes' counts */
    hak_decay_poll();
    usleep(50 * 1000);
    ck_assert_int_eq(thread_count(), before);
    ck_assert(hak_large_free(again));
}
END_TEST

/* Spans of QUIET_CLASS, `bytes` in all, written and freed: their bases in base[]. */
static int free_dirty_spans(char **base, size_t bytes);

/* Enough for the purger, freed, and no poll until decay_ms later (a program
 * that frees and then sleeps or computes): the poll that starts the thread
 * finds it due, and the thread purges it at once.  Until 2026-11-29 the
 * thread waited a whole decay_ms more, the pages resident twice as long as
 * decay_ms says.  In a fork child, where no purger runs yet (a running one
 * was told of the frees as they came); waits in steps of 10 ms, up to half
 * of decay_ms, for the dirty bytes to be 0. */
static int late_purger_child(void)
{
    hak_decay_purge_all();
    if (thread_count() != 1) /* (opendir mallocs: a poll, with nothing to purge) */
        return 2;
    static char *base[MAX_SPANS];
    free_dirty_spans(base, HAK_PURGER_MIN_BYTES + hak_class_info[QUIET_CLASS].span_bytes);
    usleep((HAK_DECAY_MS + 50) * 1000);
    hak_decay_poll(); /* starts it */
    for (int waited = 0; waited < HAK_DECAY_MS / 2; waited += 10) {
        usleep(10 * 1000);
        struct hak_usage u = {0};
        hak_ss_usage(&u);
        if (u.ss_dirty == 0)
            return thread_count() == 2 ? 0 : 4;
    }
    return 1;
}

START_TEST(purger_started_late_purges_what_is_due_at_once)
{
    if (HAK_DECAY_MS == 0 || HAK_DECAY_MS > 5000)
        return; /* no purger; or a wait too long for a unit test */
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        _exit(late_purger_child());
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status), "child died: status %#x", status);
    ck_assert_msg(WEXITSTATUS(status) == 0, "status %d: 1 dirty %d ms after the poll that started "
                  "the purger, 2 a thread running before it, 4 no purger thread",
                  WEXITSTATUS(status), HAK_DECAY_MS / 2);
}
END_TEST


/* Spans of QUIET_CLASS, `bytes` in all, written and freed: their bases in base[]. */
static int free_dirty_spans(char **base, size_t bytes)
{
    static struct hak_span *sp[MAX_SPANS];
    int n = alloc_dirty_spans(sp, MAX_SPANS, bytes);
    for (int i = 0; i < n; i++) {
        base[i] = hak_span_base(sp[i]);
        hak_ss_span_free(sp[i]);
    }
    return n;
}

/* What is too little for the purger thread goes back at the first poll (an
 * allocation slow path) after decay_ms, on the polling thread. */
START_TEST(poll_purges_a_little_once_due)
{
    if (HAK_DECAY_MS == 0)
        return; /* every free purges at once */
    const size_t span = hak_class_info[QUIET_CLASS].span_bytes;
    hak_decay_purge_all();
    hak_decay_poll();
    int before = thread_count();
    char *base[MAX_SPANS];
    int n = free_dirty_spans(base, 2 * span);
    hak_decay_poll(); /* not due yet (unless this machine stalled for decay_ms) */
    for (int i = 0; i < n; i++)
        ck_assert(!none_resident(base[i], span));
    usleep((HAK_DECAY_MS + 100) * 1000);
    for (int i = 0; i < n; i++) /* nothing purges without a poll */
        ck_assert(!none_resident(base[i], span));
    hak_decay_poll();
    for (int i = 0; i < n; i++)
        ck_assert(none_resident(base[i], span));
    ck_assert_int_eq(thread_count(), before);
}
END_TEST

/* A large malloc is an allocation slow path too: it purges what is due.
 * Until 2026-11-27 only a class's refill did, and a program that went on
 * with large blocks alone kept what it had freed. */
START_TEST(large_malloc_purges_what_is_due)
{
    if (HAK_DECAY_MS == 0)
        return; /* every free purges at once */
    const size_t span = hak_class_info[QUIET_CLASS].span_bytes;
    hak_decay_purge_all();
    hak_decay_poll();
    char *base[MAX_SPANS];
    int n = free_dirty_spans(base, 2 * span);
    usleep((HAK_DECAY_MS + 100) * 1000);
    for (int i = 0; i < n; i++)
        ck_assert(!none_resident(base[i], span));
    void *big = malloc(HAK_MAX_CLASS_SIZE + 1);
    ck_assert_ptr_nonnull(big);
    for (int i = 0; i < n; i++)
        ck_assert(none_resident(base[i], span));
    free(big);
}
END_TEST

/* A fork child purges what its parent left dirty.  When the fork comes, the
 * parent's purger has taken the note of the spans freed here and sleeps
 * toward its due time; the child has no purger, so its next slow path
 * (hak_decay_poll here) starts one, which purges the spans after decay_ms.
 * The child used to keep them until something new was freed. */
START_TEST(fork_child_purges_what_parent_left_dirty)
{
    if (HAK_DECAY_MS == 0)
        return; /* every free purges at once: no purger */
    const struct hak_class_info *ci = &hak_class_info[QUIET_CLASS];
    static struct hak_span *sp[MAX_SPANS];
    int n = alloc_dirty_spans(sp, MAX_SPANS, HAK_PURGER_MIN_BYTES);
    for (int i = 0; i < n; i++)
        hak_ss_span_free(sp[i]);
    hak_decay_poll(); /* the purger runs */
    usleep((HAK_DECAY_MS + 300) * 1000); /* it has purged what was due and waits */
    n = alloc_dirty_spans(sp, MAX_SPANS, HAK_PURGER_MIN_BYTES);
    char *base[MAX_SPANS];
    for (int i = 0; i < n; i++) {
        base[i] = hak_span_base(sp[i]);
        hak_ss_span_free(sp[i]); /* a note: the purger takes it and sleeps */
    }
    for (int i = 0; i < n; i++)
        ck_assert(!none_resident(base[i], ci->span_bytes));
    usleep(100 * 1000);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        hak_decay_poll();
        for (int waited = 0; waited < HAK_DECAY_MS + 5000; waited += 50) {
            int left = 0;
            for (int i = 0; i < n; i++)
                left += !none_resident(base[i], ci->span_bytes);
            if (left == 0)
                _exit(0);
            usleep(50 * 1000);
        }
        _exit(1);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    ck_assert_msg(WEXITSTATUS(status) == 0, "the child never purged the spans");
}
END_TEST

/* The region map answers "not ours" for foreign, odd and large addresses
 * without reading them. */
START_TEST(region_map_foreign)
{
    int local;
    ck_assert_uint_eq(hak_region_code(0), 0);
    ck_assert_uint_eq(hak_region_code((uintptr_t)&local), 0);
    ck_assert_uint_eq(hak_region_code(UINT64_C(0xdead000000000000)), 0);
    ck_assert_uint_eq(hak_region_code(UINTPTR_MAX), 0);
    void *m = mmap(NULL, 1 << 20, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(m, MAP_FAILED);
    ck_assert_uint_eq(hak_region_code((uintptr_t)m), 0); /* PROT_NONE: would fault if read */
    munmap(m, 1 << 20);
    void *big = malloc(HAK_MAX_CLASS_SIZE + 1);
    ck_assert_uint_eq(hak_region_code((uintptr_t)big), 0);
    ck_assert_uint_ge(hak_large_usable(big), HAK_MAX_CLASS_SIZE + 1);
    free(big);
    ck_assert_uint_eq(hak_large_usable(big), 0);
}
END_TEST

/* The region map's mappings in /proc/self/smaps: the bytes of those that are
 * writable, and the permissions of the one holding map byte `at` (4 chars). */
static size_t region_map_writable_bytes(const uint8_t *at, char *perms)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    ck_assert_ptr_nonnull(f);
    uintptr_t first = (uintptr_t)hak_region.codes, end = first + hak_region.slabs;
    char line[512];
    size_t writable = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        char p[5];
        if (sscanf(line, "%lx-%lx %4s ", &lo, &hi, p) != 3 || hi <= first || end <= lo)
            continue; /* not a mapping's first line, or not the map's */
        if (p[1] == 'w')
            writable += (hi < end ? hi : end) - (lo > first ? lo : first);
        if (lo <= (uintptr_t)at && (uintptr_t)at < hi)
            memcpy(perms, p, 5);
    }
    fclose(f);
    return writable;
}

/* Without an address-space limit the map covers the whole user address
 * space, read-only, so it commits nothing, except the pages that hold codes
 * of SuperSlabs: a few, each covering 256 MiB of address space.  Foreign
 * addresses, one per map page, are not ours, and their map pages read-only. */
START_TEST(region_map_read_only_but_for_superslabs)
{
    void *p = malloc(64); /* a SuperSlab, so the map exists */
    struct rlimit rl;
    ck_assert_int_eq(getrlimit(RLIMIT_AS, &rl), 0);
    if (rl.rlim_cur == RLIM_INFINITY)
        ck_assert_uint_eq(hak_region.slabs, HAK_MAP_SLABS);
    ck_assert_uint_eq(hak_region_code((uintptr_t)p), hak_class_of_size(64) + 1);
    /* addresses a map page apart, in a reservation of our own so that none
     * can be a span: 4096 of them, or as many as 1 TiB (or a quarter of an
     * address-space limit) holds */
    const size_t step = (size_t)HAK_PAGE << HAK_SLAB_SHIFT;
    size_t most = (size_t)1 << 40;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur / 4 < most)
        most = rl.rlim_cur / 4;
    size_t len = step <= most / 4096 ? 4096 * step : most / step * step;
    if (len == 0)
        len = HAK_PAGE; /* one address */
    char *far = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    ck_assert_ptr_ne(far, MAP_FAILED);
    unsigned ours = 0;
    for (size_t off = 0; off < len; off += step)
        ours += hak_region_code((uintptr_t)far + off) != 0;
    ck_assert_uint_eq(ours, 0);
    char perms[5] = "";
    uintptr_t far_slab = (uintptr_t)far >> HAK_SLAB_SHIFT;
    size_t writable = region_map_writable_bytes(hak_region.codes + far_slab, perms);
    munmap(far, len);
    if (far_slab < hak_region.slabs) /* the map covers far */
        ck_assert_str_eq(perms, "r--p");
    ck_assert_uint_gt(writable, 0);              /* p's code is written, so its page is */
    ck_assert_uint_le(writable, 16 * HAK_PAGE); /* the tests' SuperSlabs take a few */
    free(p);
}
END_TEST

/* The permissions of the mapping holding address a, from /proc/self/maps
 * ("" when none does). */
static void perms_at(uintptr_t a, char perms[5])
{
    FILE *f = fopen("/proc/self/maps", "r");
    ck_assert_ptr_nonnull(f);
    char line[512];
    perms[0] = '\0';
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        char p[5];
        if (sscanf(line, "%lx-%lx %4s ", &lo, &hi, p) == 3 && lo <= a && a < hi)
            memcpy(perms, p, 5);
    }
    fclose(f);
}

/* free's front reads hak_fast through the copy just below the map's codes
 * (hak_fast_near): the same bytes, read-only. */
START_TEST(region_map_keeps_a_copy_of_the_fast_table)
{
    void *p = malloc(64); /* a SuperSlab, so the map exists */
    const struct hak_fast_table *near = hak_fast_near();
    ck_assert_ptr_ne(near, &hak_fast);
    ck_assert_int_eq(memcmp(near, &hak_fast, sizeof hak_fast), 0);
    char perms[5];
    perms_at((uintptr_t)near, perms);
    ck_assert_str_eq(perms, "r--p");
    perms_at((uintptr_t)near + sizeof hak_fast - 1, perms);
    ck_assert_str_eq(perms, "r--p");
    free(p); /* interior and misaligned frees through it: test_misuse.c */
}
END_TEST

enum { THREAD_BLOCKS = 100 };

static void *alloc_and_exit(void *arg)
{
    void **blocks = arg;
    for (int i = 0; i < THREAD_BLOCKS; i++)
        blocks[i] = malloc(hak_class_info[QUIET_CLASS].size);
    for (int i = 0; i < THREAD_BLOCKS; i++)
        free(blocks[i]); /* into this thread's cache */
    return NULL;
}

/* A thread's cached blocks go back to their spans when it exits; the
 * batches its flushes put in the transfer cache stay there for other threads
 * (transfer.c), keeping their spans, until malloc_trim gives them back too.
 * Then every span of the class is empty and has returned to its superslab,
 * so the region map no longer names the class there (the units may already
 * carry a span of another class: a new span takes resident units first). */
START_TEST(thread_exit_returns_cached_blocks)
{
    void *blocks[THREAD_BLOCKS];
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, alloc_and_exit, blocks), 0);
    pthread_join(t, NULL);
    uint32_t held = 0, batch = hak_class_info[QUIET_CLASS].refill;
    for (int i = 0; i < THREAD_BLOCKS; i++)
        held += hak_transfer_holds(QUIET_CLASS, blocks[i]);
    /* before the trim: every span none of whose blocks is in a batch is
     * gone (the batches taken out to see their blocks, then put back) */
    uint32_t cap = hak_transfer_capacity(QUIET_CLASS), nb = 0;
    void **batched = calloc((size_t)cap * batch + 1, sizeof *batched);
    while (nb < cap && hak_transfer_take(QUIET_CLASS, batched + (size_t)nb * batch))
        nb++;
    for (uint32_t k = 0; k < nb; k++)
        ck_assert(hak_transfer_put(QUIET_CLASS, batched + (size_t)k * batch));
    for (int i = 0; i < THREAD_BLOCKS; i++) {
        bool pinned = false;
        for (uint32_t k = 0; k < nb * batch && !pinned; k++)
            pinned = span_base_of(batched[k]) == span_base_of(blocks[i]);
        if (!pinned)
            ck_assert_uint_ne(hak_region_code((uintptr_t)blocks[i]), QUIET_CLASS + 1);
    }
    free(batched);
    /* Whole batches, no more than fit (a batch may also hold blocks the
     * thread's refills cached and it never handed out).  When 100 frees
     * overflow the class's caches (the default spec's mid list of 64), a flush
     * put at least one there. */
    const struct hak_class_info *ci = &hak_class_info[QUIET_CLASS];
    size_t batch_bytes = (size_t)batch * ci->stride;
    if (cap > 0) {
        ck_assert_uint_eq(hak_transfer_bytes() % batch_bytes, 0);
        ck_assert_uint_le(hak_transfer_bytes(), cap * batch_bytes);
    }
    if (cap > 0 && THREAD_BLOCKS > ci->ring + ci->sll) {
        ck_assert_uint_ge(hak_transfer_bytes(), batch_bytes);
        ck_assert_uint_ge(held, 1);
    }
    if (cap == 0)
        ck_assert_uint_eq(held, 0);
    malloc_trim(0);
    for (int i = 0; i < THREAD_BLOCKS; i++)
        ck_assert_uint_ne(hak_region_code((uintptr_t)blocks[i]), QUIET_CLASS + 1);
}
END_TEST

static void *alloc_and_leave(void *arg)
{
    void **blocks = arg;
    for (int i = 0; i < THREAD_BLOCKS; i++) {
        blocks[i] = malloc(hak_class_info[QUIET_CLASS].size);
        memset(blocks[i], i, hak_class_info[QUIET_CLASS].size);
    }
    return NULL; /* the blocks stay live: the span is abandoned */
}

/* Run alloc_and_leave in a thread and wait for it to exit. */
static void leave_blocks_in_exited_thread(void **blocks)
{
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, alloc_and_leave, blocks), 0);
    pthread_join(t, NULL);
}

/* Blocks a thread leaves behind stay valid; given back by another heap they
 * wait in the abandoned spans' remote bitmaps, and trimming takes them back
 * and returns the spans. */
START_TEST(abandoned_span_freed_remotely_then_trimmed)
{
    void *blocks[THREAD_BLOCKS];
    leave_blocks_in_exited_thread(blocks);
    struct hak_heap *h = hak_heap_acquire();
    for (int i = 0; i < THREAD_BLOCKS; i++) {
        ck_assert_uint_eq(hak_region_code((uintptr_t)blocks[i]), QUIET_CLASS + 1);
        ck_assert_uint_eq(((unsigned char *)blocks[i])[7], (unsigned char)i);
    }
    hak_heap_give(h, QUIET_CLASS, blocks, THREAD_BLOCKS); /* not h's: remote */
    ck_assert_uint_eq(hak_region_code((uintptr_t)blocks[0]), QUIET_CLASS + 1);
    hak_heap_trim_abandoned();
    for (int i = 0; i < THREAD_BLOCKS; i++)
        ck_assert_uint_eq(hak_region_code((uintptr_t)blocks[i]), 0);
}
END_TEST

/* No heap takes back what another thread frees into an exited thread's
 * spans, so decay does: the first poll after decay_ms frees the abandoned
 * spans those frees emptied.  They used to stay until malloc_trim. */
START_TEST(abandoned_span_freed_remotely_goes_back_after_decay)
{
    if (HAK_DECAY_MS == 0)
        return; /* such frees trim once 4 MiB have come back: not these few */
    void *blocks[THREAD_BLOCKS];
    leave_blocks_in_exited_thread(blocks);
    hak_decay_purge_all(); /* nothing else due: the poll below has only these frees to act on */
    struct hak_heap *h = hak_heap_acquire();
    hak_heap_give(h, QUIET_CLASS, blocks, THREAD_BLOCKS); /* not h's: remote */
    usleep((HAK_DECAY_MS + 100) * 1000);
    hak_decay_poll();
    for (int i = 0; i < THREAD_BLOCKS; i++)
        ck_assert_uint_eq(hak_region_code((uintptr_t)blocks[i]), 0);
}
END_TEST

/* A thread that allocates its blocks, then waits until told to exit. */
struct holder {
    void **blocks;
    int go[2]; /* a pipe: a byte, and the thread exits */
};

static void *alloc_and_wait(void *arg)
{
    struct holder *hd = arg;
    alloc_and_leave(hd->blocks);
    char c;
    ck_assert_int_eq(read(hd->go[0], &c, 1), 1);
    return NULL;
}

/* In a fork child the heaps of the parent's other threads are released:
 * blocks of a thread still live in the parent, freed in the child, are the
 * child's to hand out again (its heap adopts their abandoned span).  They
 * used to wait for an owner that does not exist in the child, and the child
 * carved new spans. */
START_TEST(fork_child_releases_other_threads_heaps)
{
    if (HAK_DECAY_MS == 0)
        return; /* the child's give would trim the emptied spans at once: nothing to adopt */
    void *blocks[THREAD_BLOCKS] = {0};
    struct holder hd = {blocks, {-1, -1}};
    ck_assert_int_eq(pipe(hd.go), 0);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, alloc_and_wait, &hd), 0);
    while (__atomic_load_n(&blocks[THREAD_BLOCKS - 1], __ATOMIC_ACQUIRE) == NULL)
        usleep(1000);
    usleep(10 * 1000); /* past its last store to its heap */
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct hak_heap *h = hak_heap_acquire();
        hak_heap_give(h, QUIET_CLASS, blocks, THREAD_BLOCKS);
        void *got[THREAD_BLOCKS];
        if (hak_heap_take(h, QUIET_CLASS, got, THREAD_BLOCKS) != THREAD_BLOCKS)
            _exit(2);
        int reused = 0;
        for (int i = 0; i < THREAD_BLOCKS; i++)
            for (int j = 0; j < THREAD_BLOCKS; j++)
                reused += got[i] == blocks[j];
        _exit(reused == THREAD_BLOCKS ? 0 : 1);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_int_eq(write(hd.go[1], "x", 1), 1);
    pthread_join(t, NULL);
    ck_assert(WIFEXITED(status));
    ck_assert_msg(WEXITSTATUS(status) == 0, "the child did not hand out the blocks it freed (status %d)",
                  WEXITSTATUS(status));
}
END_TEST

/* A heap short of a class adopts an abandoned span of it before mapping one. */
START_TEST(abandoned_span_adopted)
{
    void *blocks[THREAD_BLOCKS];
    leave_blocks_in_exited_thread(blocks);
    struct hak_heap *h = hak_heap_acquire();
    void *got;
    ck_assert_uint_eq(hak_heap_take(h, QUIET_CLASS, &got, 1), 1);
    const struct hak_class_info *ci = &hak_class_info[QUIET_CLASS];
    unsigned units = ci->span_bytes / HAK_SLAB_BYTES;
    struct hak_span *sp = hak_span_of(got, units);
    bool left_by_thread = false;
    for (int i = 0; i < THREAD_BLOCKS; i++)
        left_by_thread |= hak_span_of(blocks[i], units) == sp;
    ck_assert(left_by_thread);
    ck_assert_ptr_eq(sp->owner, h);
}
END_TEST

/* A heap short of a class adopts only an abandoned span with a free block:
 * those abandoned full are looked at again once other threads free into
 * them.  Every heap short of the class used to adopt every full one first,
 * and its thread's exit abandoned them all again: a thread's first malloc
 * of the class cost as many adoptions as earlier threads had left full
 * spans. */
START_TEST(full_abandoned_spans_not_adopted)
{
    const struct hak_class_info *ci = &hak_class_info[QUIET_CLASS];
    unsigned units = ci->span_bytes / HAK_SLAB_BYTES;
    struct hak_heap *leaver = hak_heap_acquire();
    void **full = calloc(2 * ci->blocks, sizeof *full);
    ck_assert_uint_eq(hak_heap_take(leaver, QUIET_CLASS, full, 2 * ci->blocks), 2 * ci->blocks);
    struct hak_span *a = hak_span_of(full[0], units), *b = hak_span_of(full[ci->blocks], units);
    ck_assert_ptr_ne(a, b);
    hak_heap_release(leaver); /* two full spans abandoned */

    struct hak_heap *h = hak_heap_acquire();
    void *got;
    ck_assert_uint_eq(hak_heap_take(h, QUIET_CLASS, &got, 1), 1);
    struct hak_span *mine = hak_span_of(got, units);
    ck_assert_ptr_ne(mine, a);
    ck_assert_ptr_ne(mine, b);
    ck_assert_ptr_null(a->owner);
    ck_assert_ptr_null(b->owner);

    /* a block comes back to a: h adopts a once its own span is used up */
    hak_heap_give(hak_heap_acquire(), QUIET_CLASS, &full[0], 1);
    void **more = calloc(ci->blocks, sizeof *more);
    ck_assert_uint_eq(hak_heap_take(h, QUIET_CLASS, more, ci->blocks - 1), ci->blocks - 1);
    for (uint32_t i = 0; i < ci->blocks - 1; i++)
        ck_assert_ptr_eq(hak_span_of(more[i], units), mine);
    void *again;
    ck_assert_uint_eq(hak_heap_take(h, QUIET_CLASS, &again, 1), 1);
    ck_assert_ptr_eq(again, full[0]);
    ck_assert_ptr_eq(a->owner, h);
    ck_assert_ptr_null(b->owner);
    free(more);
    free(full);
}
END_TEST

enum { REMOTE_THREADS = 6 };

struct remote_job {
    void **blocks;
    unsigned cls;
    uint32_t first, count;
    int *done; /* atomic: jobs finished */
};

static void *free_remotely(void *arg)
{
    struct remote_job *job = arg;
    struct hak_heap *mine = hak_heap_acquire();
    hak_heap_give(mine, job->cls, job->blocks + job->first, job->count);
    if (job->done)
        __atomic_add_fetch(job->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* REMOTE_THREADS threads give back blocks[0..n) of cls, a slice each. */
static void start_remote_frees(pthread_t *t, struct remote_job *jobs, void **blocks, unsigned cls,
                               uint32_t n, int *done)
{
    for (uint32_t i = 0; i < REMOTE_THREADS; i++) {
        jobs[i] = (struct remote_job){blocks, cls, i * n / REMOTE_THREADS,
                                      (i + 1) * n / REMOTE_THREADS - i * n / REMOTE_THREADS, done};
        ck_assert_int_eq(pthread_create(&t[i], NULL, free_remotely, &jobs[i]), 0);
    }
}

/* MPSC: six threads give back blocks of one heap's spans at once; the owner
 * then takes every block again exactly once. */
START_TEST(remote_frees_come_back_once)
{
    const struct hak_class_info *ci = &hak_class_info[QUIET_CLASS];
    uint32_t n = 3 * ci->blocks; /* three full spans */
    struct hak_heap *h = hak_heap_acquire();
    void **blocks = calloc(n, sizeof *blocks), **again = calloc(n, sizeof *again);
    ck_assert_uint_eq(hak_heap_take(h, QUIET_CLASS, blocks, n), n);
    pthread_t t[REMOTE_THREADS];
    struct remote_job jobs[REMOTE_THREADS];
    start_remote_frees(t, jobs, blocks, QUIET_CLASS, n, NULL);
    for (int i = 0; i < REMOTE_THREADS; i++)
        pthread_join(t[i], NULL);
    ck_assert_uint_eq(hak_heap_take(h, QUIET_CLASS, again, n), n);
    /* the same set: sort both by address and compare */
    int cmp(const void *x, const void *y)
    {
        uintptr_t a = *(const uintptr_t *)x, b = *(const uintptr_t *)y;
        return (a > b) - (a < b);
    }
    qsort(blocks, n, sizeof *blocks, cmp);
    qsort(again, n, sizeof *again, cmp);
    for (uint32_t i = 0; i < n; i++)
        ck_assert_ptr_eq(blocks[i], again[i]);
    free(blocks);
    free(again);
}
END_TEST

/* The owner takes remote frees back while they arrive (hak_heap_trim drains
 * every span it holds, again and again): once the freers are done and it
 * has trimmed once more, every span is empty and returned, so no remote free
 * was lost between a freer's bit and the owner's exchange of its word.  Run
 * for the 16 B class (64 words per span) and a mid class (one word). */
START_TEST(remote_frees_drained_while_arriving)
{
    const unsigned classes[] = {0, QUIET_CLASS};
    unsigned cls = classes[_i];
    uint32_t n = 4 * hak_class_info[cls].blocks; /* four full spans */
    struct hak_heap *h = hak_heap_acquire();
    void **blocks = calloc(n, sizeof *blocks);
    ck_assert_uint_eq(hak_heap_take(h, cls, blocks, n), n);
    int done = 0;
    pthread_t t[REMOTE_THREADS];
    struct remote_job jobs[REMOTE_THREADS];
    start_remote_frees(t, jobs, blocks, cls, n, &done);
    while (__atomic_load_n(&done, __ATOMIC_ACQUIRE) < REMOTE_THREADS)
        hak_heap_trim(h);
    for (int i = 0; i < REMOTE_THREADS; i++)
        pthread_join(t[i], NULL);
    hak_heap_trim(h);
    for (uint32_t i = 0; i < n; i++)
        ck_assert_uint_eq(hak_region_code((uintptr_t)blocks[i]), 0);
    free(blocks);
}
END_TEST

/* A remote free writes the span's summary only when it found its word
 * empty; a free into a word already holding bits writes nothing of the span
 * but that word, because by then the owner may have taken the block back
 * and freed the span (and the purge unmapped its superslab).  Here the
 * owner's drain is half done when the second free comes: it has exchanged
 * the summary, not yet the word.  The second freer leaves the summary
 * alone; the owner's exchange of the word then takes both blocks. */
START_TEST(remote_free_into_marked_word_leaves_span_alone)
{
    const struct hak_class_info *ci = &hak_class_info[QUIET_CLASS];
    ck_assert_uint_ge(ci->blocks, 3);
    struct hak_heap *owner = hak_heap_acquire(), *freer = hak_heap_acquire();
    void *out[3], *again[2];
    ck_assert_uint_eq(hak_heap_take(owner, QUIET_CLASS, out, 3), 3);
    struct hak_span *sp = hak_span_of(out[0], ci->span_bytes / HAK_SLAB_BYTES);
    struct hak_superslab *ss = hak_ss_of(sp);
    uint64_t *word0 = &ss->remote[sp - ss->span][0];
    ck_assert_ptr_eq(hak_span_of(out[1], ci->span_bytes / HAK_SLAB_BYTES), sp);

    hak_heap_give(freer, QUIET_CLASS, &out[0], 1); /* first bit of word 0: marks it */
    ck_assert_uint_eq(*word0, 1);
    ck_assert_uint_eq(sp->remote_words, 1);
    uint64_t summary = __atomic_exchange_n(&sp->remote_words, 0, __ATOMIC_SEQ_CST);

    hak_heap_give(freer, QUIET_CLASS, &out[1], 1); /* word 0 holds a bit: no mark */
    ck_assert_uint_eq(*word0, 3);
    ck_assert_uint_eq(sp->remote_words, 0);

    __atomic_store_n(&sp->remote_words, summary, __ATOMIC_SEQ_CST); /* the drain resumes */
    ck_assert_uint_eq(hak_heap_take(owner, QUIET_CLASS, again, 2), 2);
    ck_assert_ptr_eq(again[0], out[0]);
    ck_assert_ptr_eq(again[1], out[1]);
    ck_assert_uint_eq(*word0, 0);
    ck_assert_uint_eq(sp->remote_words, 0);
    ck_assert_uint_eq(sp->used, 3);
}
END_TEST

/* Whether the mapping holding p has the kernel's "hg" flag (MADV_HUGEPAGE),
 * from its VmFlags line in /proc/self/smaps; -1 when that cannot be read. */
static int mapping_has_hugepage_flag(const void *p)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (f == NULL)
        return -1;
    char line[512];
    bool inside = false;
    int found = -1;
    while (found < 0 && fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) /* a mapping's first line */
            inside = lo <= (uintptr_t)p && (uintptr_t)p < hi;
        else if (inside && strncmp(line, "VmFlags:", 8) == 0)
            found = strstr(line, " hg") != NULL;
    }
    fclose(f);
    return found;
}

/* superslab.huge_pages asks for transparent huge pages on every superslab, and
 * only then (where the kernel has THP at all: otherwise there is no flag). */
START_TEST(huge_pages_as_the_spec_says)
{
    struct hak_heap *h = hak_heap_acquire();
    void *out[1];
    ck_assert_uint_eq(hak_heap_take(h, QUIET_CLASS, out, 1), 1);
    int flag = mapping_has_hugepage_flag(out[0]);
    ck_assert_int_ge(flag, 0);
    bool thp = access("/sys/kernel/mm/transparent_hugepage/enabled", F_OK) == 0;
    ck_assert_int_eq(flag, HAK_HUGE_PAGES && thp);
    hak_heap_give(h, QUIET_CLASS, out, 1);
}
END_TEST

/*
 * Each test's process (Check forks one per test) without transparent huge
 * pages: with superslab.huge_pages a purged unit's pages are small again, and
 * khugepaged (a scan every 10 s, taking ranges with up to 511 empty pages
 * here) may merge them back into a resident huge page in the middle of a test
 * that waits for them to be gone.  The likely cause of
 * fork_child_purges_what_parent_left_dirty failing now and then in the
 * appmix variant (huge pages) under load; not reproduced at will.  The
 * runtime still asks for huge pages (the "hg" flag,
 * huge_pages_as_the_spec_says); the kernel gives these processes none.
 */
static void no_background_huge_pages(void)
{
    prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0);
}

Suite *suite_slabs(void)
{
    Suite *s = suite_create("slabs");
    TCase *tc = tcase_create("slabs");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, no_background_huge_pages, NULL);
    tcase_add_test(tc, carve_in_order);
    tcase_add_test(tc, malloc_hands_out_in_address_order);
    tcase_add_test(tc, reuse_before_carving);
    tcase_add_test(tc, empty_span_returned);
    tcase_add_test(tc, superslab_lists_follow_the_units);
    if (HAK_DECAY_MS > 0) { /* freed units stay resident until a purge; with 0 they go at once */
        tcase_add_test(tc, span_reuses_resident_units);
        tcase_add_test(tc, unmapping_forgets_dirty_units);
        tcase_add_test(tc, purge_with_older_clock_leaves_fresh_spans);
    }
    tcase_add_test(tc, cap_rises_when_its_purge_is_faulted_in_again);
    tcase_add_test(tc, purger_waits_for_enough_to_give_back);
    tcase_add_test(tc, purger_counts_what_is_still_free);
    tcase_add_test(tc, purger_started_late_purges_what_is_due_at_once);
    tcase_add_test(tc, poll_purges_a_little_once_due);
    tcase_add_test(tc, fork_child_purges_what_parent_left_dirty);
    tcase_add_test(tc, region_map_foreign);
    tcase_add_test(tc, region_map_read_only_but_for_superslabs);
    tcase_add_test(tc, region_map_keeps_a_copy_of_the_fast_table);
    tcase_add_test(tc, thread_exit_returns_cached_blocks);
    tcase_add_test(tc, abandoned_span_freed_remotely_then_trimmed);
    tcase_add_test(tc, abandoned_span_freed_remotely_goes_back_after_decay);
    tcase_add_test(tc, large_malloc_purges_what_is_due);
    tcase_add_test(tc, fork_child_releases_other_threads_heaps);
    tcase_add_test(tc, abandoned_span_adopted);
    tcase_add_test(tc, full_abandoned_spans_not_adopted);
    tcase_add_test(tc, remote_frees_come_back_once);
    tcase_add_loop_test(tc, remote_frees_drained_while_arriving, 0, 2);
    tcase_add_test(tc, remote_free_into_marked_word_leaves_span_alone);
    tcase_add_test(tc, huge_pages_as_the_spec_says);
    suite_add_tcase(s, tc);
    return s;
}
