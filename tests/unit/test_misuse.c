/*
 * Misuse in guarded mode: each case runs in a child whose stderr is captured;
 * it must die of SIGABRT after printing exactly one `hakmem:` line, and the
 * memory a bad pointer points to must be left as it was.
 */
#define _GNU_SOURCE
#include <check.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "quiet_class.h"

typedef void (*misuse_fn)(void *arg);

/* Run fn(arg) in a child; return what it wrote on stderr; assert it aborted. */
static void expect_abort(misuse_fn fn, void *arg, const char *want_prefix, const void *want_ptr)
{
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        fn(arg);
        _exit(0); /* not reached when the misuse is caught */
    }
    close(fds[1]);
    char out[512] = {0};
    size_t got = 0;
    ssize_t n;
    while (got < sizeof out - 1 && (n = read(fds[0], out + got, sizeof out - 1 - got)) > 0)
        got += (size_t)n;
    close(fds[0]);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
                  "child was not aborted (status %#x), stderr: %s", status, out);
    char want[256];
    if (want_ptr != NULL) {
        snprintf(want, sizeof want, "%s %p\n", want_prefix, want_ptr);
        ck_assert_str_eq(out, want);
    } else { /* an address only the child knows: the prefix, then one hex address */
        unsigned long long addr;
        char tail;
        snprintf(want, sizeof want, "%s 0x%%llx%%c", want_prefix);
        ck_assert_msg(sscanf(out, want, &addr, &tail) == 2 && tail == '\n' &&
                          strchr(out, '\n') == out + strlen(out) - 1 && addr % 16 == 0,
                      "unexpected report: %s", out);
    }
}

static void do_free(void *p)
{
    free(p);
}

static void do_realloc(void *p)
{
    void *q = realloc(p, 100); /* aborts: q is never set */
    (void)q;
}

static void do_usable(void *p)
{
    malloc_usable_size(p);
}

static void do_double_free_top(void *p)
{
    free(p);
    free(p);
}

static void *double_free_in_cache(void *arg)
{
    void **slot = arg;
    void *p = *slot = malloc(64), *q = malloc(64);
    free(p);
    free(q);
    free(p); /* not the top of the ring: caught when the thread's cache drains */
    return NULL;
}

static void do_double_free_deep(void *slot)
{
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, double_free_in_cache, slot), 0);
    pthread_join(t, NULL);
}

/* Another thread frees a block of this thread's twice, a block of its own
 * between (so the front's top-of-cache check does not see it): when that
 * thread's cache drains at its exit, the block's remote bit is set the
 * first time and found set the second. */
static void *free_twice_remotely(void *p)
{
    void *q = malloc(64);
    free(p);
    free(q);
    free(p);
    return NULL;
}

static void do_double_free_remote(void *p)
{
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, free_twice_remotely, p), 0);
    pthread_join(t, NULL);
}

/* The first free fills the class's first cache tier; the second, of the same
 * block, reaches the next tier, which checks the first tier's top as well. */
static unsigned class_64(void)
{
    return hak_size_class[(64 + 15) >> 4];
}

static bool first_tier_full(unsigned c)
{
    const struct hak_class_info *ci = &hak_class_info[c];
    const struct hak_bin *b = hak_thread_bin(c);
    return ci->ring_first ? b->ring_s == ci->ring + 1 : hak_bin_sll_length(c, b) == ci->sll;
}

static void do_double_free_full_ring(void *unused)
{
    (void)unused;
    enum { N = 70000 };
    static void *blocks[N];
    unsigned c = class_64();
    for (int i = 0; i < N; i++)
        blocks[i] = malloc(64);
    for (int i = 0; i < N; i++) {
        free(blocks[i]);
        if (first_tier_full(c)) {
            free(blocks[i]);
            return;
        }
    }
}

/* free(p); free(q); free(p): p is under q in the cache.  Guarded mode finds
 * it by its key at the third free; the child must not get past it. */
static void do_double_free_under_another(void *pq)
{
    void **b = pq;
    free(b[0]);
    free(b[1]);
    free(b[0]);
}

/* p went back to its span (malloc_trim empties the caches; `keep`, in the
 * same span, keeps the span alive), then is freed again. */
static void do_double_free_after_trim(void *pk)
{
    void **b = pk;
    free(b[0]);
    malloc_trim(0);
    free(b[0]);
}

/* realloc and malloc_usable_size of a freed block: nothing is copied from it. */
static void do_realloc_freed(void *p)
{
    free(p);
    free(realloc(p, 200)); /* not reached */
}

static void do_usable_freed(void *p)
{
    free(p);
    malloc_usable_size(p);
}

static void do_free_interior_of_freed(void *p)
{
    free(p);
    free((char *)p + 4096);
}

/* C23's sized frees: what the caller says is checked against the block. */
void free_sized(void *p, size_t n);
void free_aligned_sized(void *p, size_t align, size_t n);

static void do_free_sized_one_more(void *p)
{
    free_sized(p, malloc_usable_size(p) + 1);
}

static void do_free_aligned_sized_32(void *p)
{
    free_aligned_sized(p, 32, 48);
}

static void do_free_aligned_sized_48(void *p)
{
    free_aligned_sized(p, 48, 16);
}

static void do_free_aligned_sized_0(void *p)
{
    free_aligned_sized(p, 0, 16);
}

static void do_free_aligned_sized_bad_pointer(void *p)
{
    free_aligned_sized(p, 3, 16); /* the pointer is reported, not the alignment */
}

static void do_free_sized_freed(void *p)
{
    free(p);
    free_sized(p, 64);
}

static void do_free_twice(void *p)
{
    free(p);
    free(p);
}

/* Blocks the class's caches hold in this thread. */
static uint32_t cached_count(unsigned c)
{
    const struct hak_bin *b = hak_thread_bin(c);
    return (b->ring_s ? b->ring_s - 1 : 0) + hak_bin_sll_length(c, b);
}

/* Another thread frees the main thread's blocks until its caches are full,
 * then frees the last one again: that free finds every tier full, and the
 * flush before it gives the first copy back to the main thread's span, where
 * this thread cannot see it.  The key is checked before the flush. */
static void *free_until_full_then_again(void *blocks)
{
    void **b = blocks;
    unsigned c = class_64();
    const struct hak_class_info *ci = &hak_class_info[c];
    int i = 0;
    do
        free(b[i++]);
    while (cached_count(c) < ci->ring + ci->sll);
    free(b[i - 1]);
    /* not reached: caught at this thread's exit is too late (the owner may
     * have taken the first copy back and handed it out by then) */
    fputs("second free returned\n", stderr);
    return NULL;
}

static void do_double_free_when_caches_full(void *blocks)
{
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, free_until_full_then_again, blocks), 0);
    pthread_join(t, NULL);
}

/* A free after the thread's own exit (a later pthread key destructor) goes
 * straight to a heap, with no cache; the block's owner then frees it again. */
static pthread_key_t late_key;
static void late_free(void *p)
{
    static int round;
    if (++round < 3) { /* after hakmem's own destructor, which ran in round 1 */
        pthread_setspecific(late_key, p);
        return;
    }
    free(p);
}

static void *exit_with_late_free(void *p)
{
    free(malloc(1)); /* this thread has caches, and their destructor */
    pthread_setspecific(late_key, p);
    return NULL;
}

static void do_double_free_after_late_free(void *p)
{
    pthread_t t;
    ck_assert_int_eq(pthread_key_create(&late_key, late_free), 0);
    ck_assert_int_eq(pthread_create(&t, NULL, exit_with_late_free, p), 0);
    pthread_join(t, NULL);
    free(p);
}

static void *free_once(void *p)
{
    free(p);
    return NULL;
}

static void do_double_free_after_remote_free(void *p)
{
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, free_once, p), 0);
    pthread_join(t, NULL);
    free(p);
}

/* The first class with no cache tier (tiers: [slab]), or HAK_NUM_CLASSES. */
static unsigned uncached_class(void)
{
    unsigned c = 0;
    while (c < HAK_NUM_CLASSES && (hak_class_info[c].tiers & (HAK_TIER_RING | HAK_TIER_SLL)))
        c++;
    return c;
}

START_TEST(free_stack_pointer)
{
    char local[64] = {0};
    expect_abort(do_free, local, "hakmem: free(): invalid pointer", local);
}
END_TEST

/* A foreign mapping shared with the child: after the child's bad free, every
 * byte is still as it was (never written through). */
START_TEST(free_foreign_mapping_untouched)
{
    unsigned char *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    memset(m, 0xC3, 4096);
    expect_abort(do_free, m + 64, "hakmem: free(): invalid pointer", m + 64);
    for (int i = 0; i < 4096; i++)
        ck_assert_uint_eq(m[i], 0xC3);
    munmap(m, 4096);
}
END_TEST

START_TEST(free_interior_pointer)
{
    char *p = malloc(64);
    expect_abort(do_free, p + 16, "hakmem: free(): invalid pointer", p + 16);
    char *big = malloc(1 << 20);
    expect_abort(do_free, big + 4096, "hakmem: free(): invalid pointer", big + 4096);
    char *mid = malloc(5000);
    expect_abort(do_free, mid + 2048, "hakmem: free(): invalid pointer", mid + 2048);
}
END_TEST

/*
 * The offset check of every class, with the offset in the span.  For each
 * class, a block past the span's first slab (where the span has more than
 * one, and more than one block): its interior is an invalid pointer, and so
 * is the start of the span's second slab where no block starts there (a
 * multiple of the stride in its slab, not in its span: a check of the offset
 * in the slab would take it).  A span of one block (the largest classes) has
 * it at its start, and its second slab is inside it.  The block itself is
 * freed (and handed out again, where the class caches).
 */
START_TEST(offset_check_of_every_class)
{
    for (unsigned cls = 0; cls < HAK_NUM_CLASSES; cls++) {
        const struct hak_class_info *ci = &hak_class_info[cls];
        const uintptr_t span_mask = ci->span_bytes - 1;
        char **got = malloc(ci->blocks * sizeof *got);
        uint32_t n = 0;
        char *p;
        do { /* at most a span's blocks: one of them is past its first slab */
            ck_assert_uint_lt(n, ci->blocks);
            p = got[n++] = malloc(ci->size);
            ck_assert_uint_eq(hak_region_code((uintptr_t)p), cls + 1);
        } while (ci->span_bytes > HAK_SLAB_BYTES && ci->blocks > 1 && ((uintptr_t)p & span_mask) < HAK_SLAB_BYTES);
        expect_abort(do_free, p + ci->size / 2, "hakmem: free(): invalid pointer", p + ci->size / 2);
        if (ci->stride != ci->size) /* where the next block would start were it not padded */
            expect_abort(do_free, p + ci->size, "hakmem: free(): invalid pointer", p + ci->size);
        char *second_slab = (char *)((uintptr_t)p & ~span_mask) + HAK_SLAB_BYTES;
        if (ci->span_bytes > HAK_SLAB_BYTES && HAK_SLAB_BYTES % ci->stride != 0)
            expect_abort(do_free, second_slab, "hakmem: free(): invalid pointer", second_slab);
        for (uint32_t i = 0; i < n; i++)
            free(got[i]);
        if (ci->tiers & (HAK_TIER_RING | HAK_TIER_SLL)) { /* cached: the last freed, first again */
            ck_assert_ptr_eq(malloc(ci->size), p);
            free(p);
        }
        free(got);
    }
}
END_TEST

START_TEST(free_misaligned_pointer)
{
    char *p = malloc(32);
    expect_abort(do_free, p + 1, "hakmem: free(): invalid pointer", p + 1);
}
END_TEST

START_TEST(double_free_top_of_cache)
{
    void *p = malloc(48);
    expect_abort(do_double_free_top, p, "hakmem: free(): double free", p);
}
END_TEST

/* The child's thread allocates the block itself: only the child knows its address. */
START_TEST(double_free_deep_in_cache)
{
    void *slot;
    expect_abort(do_double_free_deep, &slot, "hakmem: free(): double free", NULL);
}
END_TEST

START_TEST(double_free_by_another_thread)
{
    void *p = malloc(64);
    expect_abort(do_double_free_remote, p, "hakmem: free(): double free", p);
}
END_TEST

START_TEST(realloc_and_usable_size_foreign)
{
    char local[32] = {0};
    expect_abort(do_realloc, local, "hakmem: realloc(): invalid pointer", local);
    expect_abort(do_usable, local, "hakmem: malloc_usable_size(): invalid pointer", local);
}
END_TEST

START_TEST(double_free_full_ring)
{
    expect_abort(do_double_free_full_ring, NULL, "hakmem: free(): double free", NULL);
}
END_TEST

START_TEST(double_free_under_another_block)
{
    void *b[2] = {malloc(64), malloc(64)};
    expect_abort(do_double_free_under_another, b, "hakmem: free(): double free", b[0]);
}
END_TEST

/* The class's first tier full, then three blocks on the next one: the first
 * of them, deep in the list, freed again. */
START_TEST(double_free_deep_in_list)
{
    enum { N = 70000 };
    static void *blocks[N];
    unsigned c = class_64();
    for (int i = 0; i < N; i++)
        blocks[i] = malloc(64);
    int i = 0;
    while (i < N - 3 && !first_tier_full(c))
        free(blocks[i++]);
    ck_assert(first_tier_full(c));
    free(blocks[i]);
    free(blocks[i + 1]);
    free(blocks[i + 2]);
    expect_abort(do_free, blocks[i], "hakmem: free(): double free", blocks[i]);
}
END_TEST

START_TEST(double_free_after_block_went_back)
{
    const struct hak_class_info *ci = &hak_class_info[class_64()];
    void *b[2] = {malloc(64), NULL};
    for (int i = 0; i < 1000 && b[1] == NULL; i++) {
        void *k = malloc(64);
        if (((uintptr_t)k ^ (uintptr_t)b[0]) < ci->span_bytes)
            b[1] = k; /* same span: kept allocated */
    }
    ck_assert_ptr_nonnull(b[1]);
    expect_abort(do_double_free_after_trim, b, "hakmem: free(): double free", b[0]);
}
END_TEST

/* free_sized with more bytes than the block holds, free_aligned_sized with
 * an alignment the block does not have (or no power of two), either of a
 * freed block or of no block: reported, as the child's last words. */
START_TEST(sized_frees_that_do_not_match_the_block)
{
    void *p = malloc(64), *big = malloc((size_t)1 << 20);
    expect_abort(do_free_sized_one_more, p, "hakmem: free_sized(): size does not match the block",
                 p);
    expect_abort(do_free_sized_one_more, big,
                 "hakmem: free_sized(): size does not match the block", big);
    void *odd[64], *q = NULL; /* a 48 B block at an odd multiple of 16: not 32-aligned */
    for (int i = 0; i < 64 && q == NULL; i++) {
        odd[i] = malloc(48);
        if ((uintptr_t)odd[i] % 32 != 0)
            q = odd[i];
    }
    ck_assert_ptr_nonnull(q);
    expect_abort(do_free_aligned_sized_32, q,
                 "hakmem: free_aligned_sized(): alignment does not match the block", q);
    /* 48 and 0 are no alignments, even for a block they divide: 16 B blocks
     * are 16 apart, so one in three is a multiple of 48 */
    void *m48 = NULL;
    for (int i = 0; i < 64 && m48 == NULL; i++) {
        odd[i] = malloc(16);
        if ((uintptr_t)odd[i] % 48 == 0)
            m48 = odd[i];
    }
    ck_assert_ptr_nonnull(m48);
    expect_abort(do_free_aligned_sized_48, m48,
                 "hakmem: free_aligned_sized(): alignment does not match the block", m48);
    expect_abort(do_free_aligned_sized_0, m48,
                 "hakmem: free_aligned_sized(): alignment does not match the block", m48);
    expect_abort(do_free_aligned_sized_bad_pointer, (char *)m48 + 8,
                 "hakmem: free_aligned_sized(): invalid pointer", (char *)m48 + 8);
    expect_abort(do_free_sized_freed, p, "hakmem: free_sized(): freed pointer", p);
    free_sized(p, 64); /* the parent's block, untouched by the children: freed as asked */
    free_sized(big, (size_t)1 << 20);
}
END_TEST

START_TEST(realloc_and_usable_size_of_freed_block)
{
    void *p = malloc(100);
    expect_abort(do_realloc_freed, p, "hakmem: realloc(): freed pointer", p);
    expect_abort(do_usable_freed, p, "hakmem: malloc_usable_size(): freed pointer", p);
}
END_TEST

/* Blocks on the class's list, counted by walking it to its end. */
static uint32_t list_walk_length(unsigned c)
{
    const struct hak_bin *b = hak_thread_bin(c);
    uint32_t n = 0;
    for (void *q = b->sll_head; q != NULL && n <= hak_class_info[c].sll; q = HAK_BLOCK(q)->next)
        n++;
    return n;
}

/* A block whose second word equals the key by chance (the program's data) is
 * freed as any other, and handed out again exactly once, the word cleared.
 * The list's front took a place for it before it read the key: the cache
 * holds one block more, and the list's room agrees with its length. */
START_TEST(program_data_equal_to_key_is_no_double_free)
{
    ck_assert_uint_ne(hak_cache_key(), 0);
    ck_assert_uint_eq(hak_region_code(hak_cache_key()), 0); /* no block lies at the key */
    unsigned c = class_64();
    uintptr_t *q = malloc(64);
    q[0] = 7;
    q[1] = hak_cache_key();
    uint32_t cached = cached_count(c);
    free(q);
    ck_assert_uint_eq(cached_count(c), cached + 1);
    ck_assert_uint_eq(list_walk_length(c), hak_bin_sll_length(c, hak_thread_bin(c)));
    uintptr_t *again = malloc(64), *next = malloc(64);
    ck_assert_ptr_eq(again, q);
    ck_assert_uint_eq(again[1], 0);
    ck_assert_ptr_ne(next, q);
    free(next);
    free(again);
}
END_TEST

/* A large block's pages stay cached after its free (for decay_ms): a second
 * free, realloc or malloc_usable_size finds the pointer among them. */
START_TEST(large_block_freed_twice)
{
    void *p = malloc(1 << 20);
    expect_abort(do_free_twice, p, "hakmem: free(): double free", p);
    expect_abort(do_realloc_freed, p, "hakmem: realloc(): freed pointer", p);
    expect_abort(do_usable_freed, p, "hakmem: malloc_usable_size(): freed pointer", p);
    /* a pointer into it is no block of any kind */
    expect_abort(do_free_interior_of_freed, p, "hakmem: free(): invalid pointer", (char *)p + 4096);
    free(p);
}
END_TEST

/* Enough 64 B blocks that the last refills come from fresh spans, then the
 * free of a block the cache holds but never handed out: a block start the
 * program never got (one past its own block, say). */
START_TEST(free_of_block_never_handed_out)
{
    enum { N = 70000 };
    for (int i = 0; i < N; i++)
        (void)malloc(64); /* kept: the last refills come from fresh spans */
    const struct hak_class_info *ci = &hak_class_info[class_64()];
    struct hak_bin *b = hak_thread_bin(class_64());
    /* the last malloc may have emptied the first tier: one more refills it */
    for (int i = 0; i < 64 && (ci->ring_first ? b->ring_s < 2 : b->sll_head == NULL); i++)
        (void)malloc(64);
    ck_assert(ci->ring_first ? b->ring_s >= 2 : b->sll_head != NULL);
    void *cached = ci->ring_first ? ((void **)(b + 1))[b->ring_s - 2] : b->sll_head;
    expect_abort(do_free, cached, "hakmem: free(): double free", cached);
}
END_TEST

START_TEST(double_free_when_caches_are_full)
{
    const struct hak_class_info *ci = &hak_class_info[class_64()];
    uint32_t n = ci->ring + ci->sll;
    void **blocks = malloc(n * sizeof *blocks);
    for (uint32_t i = 0; i < n; i++)
        blocks[i] = malloc(64);
    /* the child's thread stops at the first free that fills its caches; a
     * prewarmed thread gets there before the last block */
    expect_abort(do_double_free_when_caches_full, blocks, "hakmem: free(): double free", NULL);
}
END_TEST

/* A thread that sets its caches up and then waits for good: while it
 * lives, flushes go to the transfer cache (thread.c's transfer_put). */
static int other_has_caches;

static void *hold_caches(void *unused)
{
    (void)unused;
    free(malloc(8));
    __atomic_store_n(&other_has_caches, 1, __ATOMIC_RELEASE);
    for (;;)
        pause();
    return NULL;
}

/* Frees class cls's blocks until a flush puts a batch in the transfer cache
 * (another thread has caches), then frees one of that batch again: found
 * there by its key. */
static void do_double_free_in_transfer(void *unused)
{
    (void)unused;
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, hold_caches, NULL), 0);
    while (!__atomic_load_n(&other_has_caches, __ATOMIC_ACQUIRE))
        sched_yield();
    const unsigned CLS = quiet_class();
    const struct hak_class_info *ci = &hak_class_info[CLS];
    uint32_t n = ci->ring + ci->sll + ci->refill + 1;
    void **p = malloc(n * sizeof *p);
    for (uint32_t i = 0; i < n; i++)
        p[i] = malloc(ci->size);
    for (uint32_t i = 0; i < n && hak_transfer_bytes() == 0; i++)
        free(p[i]);
    for (uint32_t i = 0; i < n; i++)
        if (hak_transfer_holds(CLS, p[i]))
            free(p[i]);
    fputs("no block in the transfer cache\n", stderr);
}

START_TEST(double_free_in_transfer_cache)
{
    expect_abort(do_double_free_in_transfer, NULL, "hakmem: free(): double free", NULL);
}
END_TEST

/* One block twice in one give to another heap's span: the two are gathered
 * into one word (heap.c, struct remote_run), and the second is caught there. */
static void do_double_free_in_one_run(void *p)
{
    hak_heap_give(hak_heap_acquire(), quiet_class(), (void *[]){p, p}, 2);
}

START_TEST(double_free_in_one_remote_run)
{
    struct hak_heap *owner = hak_heap_acquire();
    void *p;
    ck_assert_uint_eq(hak_heap_take(owner, quiet_class(), &p, 1), 1);
    expect_abort(do_double_free_in_one_run, p, "hakmem: free(): double free", p);
}
END_TEST

START_TEST(double_free_after_free_by_exited_thread)
{
    void *p = malloc(64);
    expect_abort(do_double_free_after_late_free, p, "hakmem: free(): double free", p);
}
END_TEST

/* A block of a class with no cache freed by another thread, then by its
 * owner: the first free waits in the span's remote bitmap, where the second
 * finds it.  Until 2026-11-29 the second went to the span with no look at
 * the key and passed (and a span it emptied went back with the remote bit
 * still set: a block freed into that word later was never taken back). */
START_TEST(double_free_of_uncached_block_freed_remotely)
{
    void *p = malloc(hak_class_info[uncached_class()].size);
    expect_abort(do_double_free_after_remote_free, p, "hakmem: free(): double free", p);
}
END_TEST

/* A class with no cache gives a freed block straight back to its span: its
 * realloc is still a freed pointer, reported before anything is copied. */
START_TEST(realloc_of_freed_uncached_block)
{
    void *p = malloc(hak_class_info[uncached_class()].size);
    expect_abort(do_realloc_freed, p, "hakmem: realloc(): freed pointer", p);
    expect_abort(do_usable_freed, p, "hakmem: malloc_usable_size(): freed pointer", p);
}
END_TEST

/* More blocks freed than the caches hold, so that the rest go back to their
 * spans with the key in them; every block handed out again, from a cache or
 * by a refill's slow path, has it cleared. */
START_TEST(blocks_handed_out_carry_no_key)
{
    enum { N = 4096 };
    static uintptr_t *blocks[N];
    for (int i = 0; i < N; i++)
        blocks[i] = malloc(64);
    for (int i = 0; i < N; i++)
        free(blocks[i]);
    for (int i = 0; i < N; i++) {
        blocks[i] = malloc(64);
        ck_assert_msg(blocks[i][1] != hak_cache_key(), "block %d handed out with the key", i);
    }
}
END_TEST

START_TEST(realloc_interior_pointer)
{
    char *p = malloc(100);
    expect_abort(do_realloc, p + 8, "hakmem: realloc(): invalid pointer", p + 8);
}
END_TEST


Suite *suite_misuse(void)
{
    Suite *s = suite_create("misuse");
    TCase *tc = tcase_create("guarded");
    if (HAK_GUARDED) {
        tcase_add_test(tc, realloc_interior_pointer);
        const struct hak_class_info *ci = &hak_class_info[class_64()];
        if ((ci->tiers & HAK_TIER_RING) && (ci->tiers & HAK_TIER_SLL)) {
            tcase_add_test(tc, double_free_full_ring);
            tcase_add_test(tc, double_free_deep_in_list);
        }
        tcase_add_test(tc, free_interior_pointer);
        tcase_add_test(tc, free_misaligned_pointer);
        tcase_add_test(tc, offset_check_of_every_class);
        tcase_add_test(tc, double_free_top_of_cache);
        tcase_add_test(tc, double_free_under_another_block);
        tcase_add_test(tc, double_free_after_block_went_back);
        tcase_add_test(tc, realloc_and_usable_size_of_freed_block);
        tcase_add_test(tc, sized_frees_that_do_not_match_the_block);
        tcase_add_test(tc, program_data_equal_to_key_is_no_double_free);
        tcase_add_test(tc, double_free_after_free_by_exited_thread);
        tcase_add_test(tc, blocks_handed_out_carry_no_key);
        if (hak_class_info[class_64()].tiers & (HAK_TIER_RING | HAK_TIER_SLL))
            tcase_add_test(tc, double_free_when_caches_are_full);
        if (hak_transfer_capacity(quiet_class()) > 0)
            tcase_add_test(tc, double_free_in_transfer_cache);
        if (uncached_class() < HAK_NUM_CLASSES) {
            tcase_add_test(tc, realloc_of_freed_uncached_block);
            tcase_add_test(tc, double_free_of_uncached_block_freed_remotely);
        }
        if (hak_class_info[class_64()].tiers & (HAK_TIER_RING | HAK_TIER_SLL))
            tcase_add_test(tc, free_of_block_never_handed_out);
    }
    /* caught on the slow paths whatever free_check says */
    tcase_add_test(tc, free_stack_pointer);
    tcase_add_test(tc, free_foreign_mapping_untouched);
    tcase_add_test(tc, double_free_deep_in_cache);
    tcase_add_test(tc, double_free_by_another_thread);
    tcase_add_test(tc, double_free_in_one_remote_run);
    tcase_add_test(tc, realloc_and_usable_size_foreign);
    if (HAK_DECAY_MS > 0) /* else the pages are unmapped at once: an invalid pointer */
        tcase_add_test(tc, large_block_freed_twice);
    suite_add_tcase(s, tc);
    return s;
}
