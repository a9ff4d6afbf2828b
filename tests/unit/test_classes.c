/* Size classes: size -> class for every size, alignment, usable size. */
#include <check.h>
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Every size from 0 to the largest class maps to the smallest class that fits. */
START_TEST(size_to_class_every_size)
{
    for (size_t n = 0; n <= HAK_MAX_CLASS_SIZE; n++) {
        unsigned cls = hak_size_class[(n + 15) >> 4];
        ck_assert_uint_lt(cls, HAK_NUM_CLASSES);
        ck_assert_uint_ge(hak_class_info[cls].size, n);
        if (cls > 0)
            ck_assert_uint_lt(hak_class_info[cls - 1].size, n);
        ck_assert_uint_eq(hak_class_of_size(n), cls);
    }
}
END_TEST

/* Rounding at size - 1, size and size + 1 of every class, through malloc. */
START_TEST(class_boundaries_through_malloc)
{
    for (unsigned cls = 0; cls < HAK_NUM_CLASSES; cls++) {
        size_t size = hak_class_info[cls].size;
        size_t probes[] = {size - 1, size, size + 1};
        for (int i = 0; i < 3; i++) {
            void *p = malloc(probes[i]);
            ck_assert_ptr_nonnull(p);
            size_t want = probes[i] <= size ? size
                          : cls + 1 < HAK_NUM_CLASSES ? hak_class_info[cls + 1].size : 0;
            if (want != 0)
                ck_assert_uint_eq(malloc_usable_size(p), want);
            else
                ck_assert_uint_ge(malloc_usable_size(p), probes[i]);
            free(p);
        }
    }
}
END_TEST

/* Up to HAK_SIZE_GRID, malloc's table front finds a size's bin by
 * arithmetic (gen/resolve.py, _size_grid): it must be the bin the size
 * table names, which free reaches by the block's code.  Through malloc and
 * free: the block a free of any size caches is the next malloc's of that
 * size, in every class with a cache. */
START_TEST(size_grid_bin_is_the_tables)
{
#ifdef HAK_BIN_STRIDE
    for (size_t n = 1; n <= HAK_SIZE_GRID; n++) {
        size_t i = (n + 15) >> 4;
        ck_assert_uint_eq(i * HAK_BIN_STRIDE, hak_size_bin[i]);
        ck_assert_uint_eq(hak_class_info[hak_size_class[i]].bin_offset, hak_size_bin[i]);
    }
#else
    ck_assert_uint_eq(HAK_SIZE_GRID, 0); /* the switch dispatch: no stride */
#endif
    for (size_t n = 1; n <= HAK_MAX_CLASS_SIZE; n++) {
        unsigned cls = hak_size_class[(n + 15) >> 4];
        if (!(hak_class_info[cls].tiers & (HAK_TIER_RING | HAK_TIER_SLL)))
            continue;
        void *p = malloc(n);
        ck_assert_ptr_nonnull(p);
        free(p);
        void *q = malloc(n);
        ck_assert_ptr_eq(q, p);
        free(q);
    }
}
END_TEST

/* Class sizes are multiples of 16 and strictly increasing; the table's
 * literal spans hold `blocks` blocks. */
START_TEST(class_table_consistent)
{
    for (unsigned cls = 0; cls < HAK_NUM_CLASSES; cls++) {
        const struct hak_class_info *ci = &hak_class_info[cls];
        ck_assert_uint_eq(ci->size % 16, 0);
        if (cls > 0)
            ck_assert_uint_gt(ci->size, hak_class_info[cls - 1].size);
        /* a stride 16 B longer only in a tiny class whose size is a multiple
         * of 512 (gen/resolve.py, _stride) */
        ck_assert_uint_eq(ci->stride - ci->size, ci->stride == ci->size ? 0 : 16);
        if (ci->stride != ci->size) {
            ck_assert_uint_eq(ci->size % 512, 0);
            ck_assert_uint_lt(cls, HAK_NUM_TINY);
        }
        ck_assert_uint_eq(ci->blocks, ci->span_bytes / ci->stride);
        ck_assert_uint_eq(ci->span_bytes % HAK_SLAB_BYTES, 0);
    }
    ck_assert_uint_eq(hak_class_info[HAK_NUM_CLASSES - 1].size, HAK_MAX_CLASS_SIZE);
}
END_TEST

/* free()'s block-start test and the runtime's division by a multiply
 * (hak_abi.h) against plain division: every offset of every class's span,
 * and for the division also offsets up to 2^32 - 1.  Region code 0 (not
 * in a span) lets its only offset, 0, through. */
START_TEST(block_start_and_index_exact)
{
    for (unsigned cls = 0; cls < HAK_NUM_CLASSES; cls++) {
        const struct hak_class_info *ci = &hak_class_info[cls];
        unsigned code = cls + 1;
        ck_assert_uint_eq(hak_fast.span_mask[code], ci->span_bytes - 1);
        uint32_t wrong_start = UINT32_MAX, wrong_index = UINT32_MAX;
        for (uint32_t off = 0; off < ci->span_bytes; off++) {
            int start = off % ci->stride == 0 && off / ci->stride < ci->blocks;
            if (hak_block_start(&hak_fast, code, off) != start && wrong_start == UINT32_MAX)
                wrong_start = off;
            if (hak_block_index(code, off) != off / ci->stride && wrong_index == UINT32_MAX)
                wrong_index = off;
        }
        for (uint64_t off = ci->span_bytes; off <= UINT32_MAX; off += 65521) /* a prime stride */
            if (hak_block_index(code, (uint32_t)off) != off / ci->stride && wrong_index == UINT32_MAX)
                wrong_index = (uint32_t)off;
        if (hak_block_index(code, UINT32_MAX) != UINT32_MAX / ci->stride)
            wrong_index = UINT32_MAX - 1;
        ck_assert_msg(wrong_start == UINT32_MAX, "class %u (%u B apart): block start wrong at offset %u",
                      cls, ci->stride, wrong_start);
        ck_assert_msg(wrong_index == UINT32_MAX, "class %u (%u B apart): index wrong at offset %u", cls,
                      ci->stride, wrong_index);
    }
    ck_assert(hak_block_start(&hak_fast, 0, 0));
    ck_assert_uint_eq(hak_fast.span_mask[0], 0);
}
END_TEST

/* Every bin of a thread block at 64 mod 128 in memory (hak_spec.h: struct
 * hak_thread_slot), and where the table dispatch's free computes it. */
static void check_bins(uintptr_t block)
{
    ck_assert_uint_eq(block % 128, 64);
    ck_assert_uint_eq(offsetof(struct hak_thread_block, no_cache), 0);
    for (unsigned cls = 0; cls < HAK_NUM_CLASSES; cls++) {
        ck_assert_uint_eq((block + hak_class_info[cls].bin_offset) % 128, 64);
#ifdef HAK_BIN_STRIDE
        ck_assert_uint_eq(hak_class_info[cls].bin_offset, (cls + 1) * HAK_BIN_STRIDE);
#endif
    }
}

/* A new thread's block before its first malloc (the shared one, or its own in
 * static TLS) and after it.  Read before any assertion: Check's assertions
 * allocate, which gives the thread its block. */
static void *check_bins_before_and_after_setup(void *arg)
{
    (void)arg;
    uintptr_t before = (uintptr_t)&hak_tls;
    unsigned state = hak_tls.state;
    free(malloc(16));
    uintptr_t after = (uintptr_t)&hak_tls;
    ck_assert_uint_eq(state, HAK_THREAD_NEW);
    ck_assert_uint_eq(hak_tls.state, HAK_THREAD_LIVE);
    check_bins(before);
    check_bins(after);
    return NULL;
}

START_TEST(bins_at_64_mod_128_in_memory)
{
    free(malloc(16));
    check_bins((uintptr_t)&hak_tls);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, check_bins_before_and_after_setup, NULL), 0);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
}
END_TEST

/* free's first-tier limit (hak_abi.h, front_lim): the tier's capacity + 1 in
 * a set-up bin; 0 before set-up, in the empty bin, and for classes without a
 * cache, so that their free misses.  A thread sets a class up at the class's
 * first miss (runtime/thread.c, is_set_up), and malloc_trim leaves every
 * class to be set up again.  Read before any assertion: Check's assertions
 * allocate, which sets classes up. */
struct front_lims {
    uintptr_t empty, cls[HAK_NUM_CLASSES];
};

static void read_front_lims(struct front_lims *out)
{
    out->empty = hak_tls.no_cache.front_lim;
    for (unsigned cls = 0; cls < HAK_NUM_CLASSES; cls++)
        out->cls[cls] = hak_thread_bin(cls)->front_lim;
}

/* set_up: the one class set up, or -1 for none; started: the thread started
 * just now, which set up the classes it prewarmed (spec prewarm) too */
static void check_front_lims(const struct front_lims *got, int set_up, bool started)
{
    ck_assert_uint_eq(got->empty, 0);
    for (unsigned cls = 0; cls < HAK_NUM_CLASSES; cls++) {
        const struct hak_class_info *ci = &hak_class_info[cls];
        uint32_t cap = !(ci->tiers & (HAK_TIER_RING | HAK_TIER_SLL)) ? 0 : ci->ring_first ? ci->ring : ci->sll;
        bool is_set_up = (int)cls == set_up || (started && ci->prewarm > 0);
        ck_assert_uint_eq(got->cls[cls], (is_set_up && cap ? cap + 1 : 0));
    }
}

static void *front_lims_through_a_thread(void *arg)
{
    (void)arg;
    struct front_lims before, after, trimmed, other;
    read_front_lims(&before);
    free(malloc(16));
    read_front_lims(&after);
    malloc_trim(0); /* empties the caches: each class is set up at its next miss */
    read_front_lims(&trimmed);
    free(malloc(1000));
    read_front_lims(&other);
    check_front_lims(&before, -1, false);
    check_front_lims(&after, hak_size_class[1], true);
    check_front_lims(&trimmed, -1, false);
    check_front_lims(&other, hak_size_class[(1000 + 15) >> 4], false);
    return NULL;
}

START_TEST(front_lim_set_up_and_kept)
{
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, front_lims_through_a_thread, NULL), 0);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
}
END_TEST

/* A list counts the room it has left and ends at NULL (hak_abi.h): a bin
 * not set up has neither head nor room; a thread's first refill caches all
 * it fetched but the block it returns; a free takes one place and a malloc
 * gives it back; malloc_trim leaves the bin as it was before set-up.  Read
 * before any assertion: Check's assertions allocate. */
struct list_bin {
    uintptr_t room;
    void *head;
};

static struct list_bin read_list_bin(unsigned cls)
{
    const struct hak_bin *b = hak_thread_bin(cls); /* the thread's block changes at its start */
    return (struct list_bin){b->sll_room, b->sll_head};
}

static void *list_room_through_a_thread(void *arg)
{
    unsigned cls = *(const unsigned *)arg;
    const struct hak_class_info *ci = &hak_class_info[cls];
    struct list_bin before = read_list_bin(cls);
    void *p = malloc(ci->size);
    struct list_bin refilled = read_list_bin(cls);
    free(p);
    struct list_bin freed = read_list_bin(cls);
    void *link = *(void **)p; /* the head p displaced */
    void *q = malloc(ci->size);
    struct list_bin taken = read_list_bin(cls);
    free(q);
    malloc_trim(0);
    struct list_bin trimmed = read_list_bin(cls);

    uint32_t page = HAK_PAGE / ci->size;
    uint32_t fetched = page < 1 ? 1 : page < ci->refill ? page : ci->refill;
    ck_assert_uint_eq(before.room, 0);
    ck_assert_ptr_null(before.head);
    ck_assert_uint_eq(refilled.room, ci->sll - (fetched - 1));
    if (fetched > 1)
        ck_assert_ptr_nonnull(refilled.head);
    else
        ck_assert_ptr_null(refilled.head);
    ck_assert_uint_eq(freed.room, refilled.room - 1);
    ck_assert_ptr_eq(freed.head, p);
    ck_assert_ptr_eq(link, refilled.head);
    ck_assert_ptr_eq(q, p);
    ck_assert_uint_eq(taken.room, refilled.room);
    ck_assert_ptr_eq(taken.head, refilled.head);
    ck_assert_uint_eq(trimmed.room, 0);
    ck_assert_ptr_null(trimmed.head);
    return NULL;
}

START_TEST(list_counts_its_room)
{
    unsigned cls = hak_size_class[1]; /* 16 B */
    const struct hak_class_info *ci = &hak_class_info[cls];
    if (ci->ring_first || !(ci->tiers & HAK_TIER_SLL) || ci->prewarm > 0)
        return; /* this spec's class does not start with a list, or starts it filled */
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, list_room_through_a_thread, &cls), 0);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
}
END_TEST

/* Every block is 16-byte aligned and its whole usable size is writable
 * without touching its neighbours. */
START_TEST(alignment_and_usable_size_writable)
{
    enum { COUNT = 64 };
    static const size_t sizes[] = {0, 1, 15, 16, 17, 100, 1000, 1024, 1025, 4000, 32768, 32769, 100000};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        unsigned char *blocks[COUNT];
        size_t usable[COUNT];
        for (int i = 0; i < COUNT; i++) {
            blocks[i] = malloc(sizes[s]);
            ck_assert_ptr_nonnull(blocks[i]);
            ck_assert_uint_eq((uintptr_t)blocks[i] % 16, 0);
            usable[i] = malloc_usable_size(blocks[i]);
            ck_assert_uint_ge(usable[i], sizes[s]);
            memset(blocks[i], i + 1, usable[i]);
        }
        for (int i = 0; i < COUNT; i++) {
            size_t bad = 0;
            while (bad < usable[i] && blocks[i][bad] == (unsigned char)(i + 1))
                bad++;
            ck_assert_msg(bad == usable[i], "block %d of size %zu overwritten at byte %zu", i,
                          sizes[s], bad);
            free(blocks[i]);
        }
    }
}
END_TEST

Suite *suite_classes(void)
{
    Suite *s = suite_create("classes");
    TCase *tc = tcase_create("classes");
    tcase_add_test(tc, size_to_class_every_size);
    tcase_add_test(tc, class_boundaries_through_malloc);
    tcase_add_test(tc, class_table_consistent);
    tcase_add_test(tc, size_grid_bin_is_the_tables);
    tcase_add_test(tc, block_start_and_index_exact);
    tcase_add_test(tc, alignment_and_usable_size_writable);
    tcase_add_test(tc, bins_at_64_mod_128_in_memory);
    tcase_add_test(tc, front_lim_set_up_and_kept);
    tcase_add_test(tc, list_counts_its_room);
    suite_add_tcase(s, tc);
    return s;
}
