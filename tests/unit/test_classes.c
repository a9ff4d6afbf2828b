/* Size classes: size -> class for every size, alignment, usable size. */
#include <check.h>
#include <malloc.h>
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

/* Class sizes are multiples of 16 and strictly increasing; the table's
 * literal spans hold `blocks` blocks. */
START_TEST(class_table_consistent)
{
    for (unsigned cls = 0; cls < HAK_NUM_CLASSES; cls++) {
        const struct hak_class_info *ci = &hak_class_info[cls];
        ck_assert_uint_eq(ci->size % 16, 0);
        if (cls > 0)
            ck_assert_uint_gt(ci->size, hak_class_info[cls - 1].size);
        ck_assert_uint_eq(ci->blocks, ci->span_bytes / ci->size);
        ck_assert_uint_eq(ci->span_bytes % HAK_SLAB_BYTES, 0);
    }
    ck_assert_uint_eq(hak_class_info[HAK_NUM_CLASSES - 1].size, HAK_MAX_CLASS_SIZE);
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
    tcase_add_test(tc, alignment_and_usable_size_writable);
    suite_add_tcase(s, tc);
    return s;
}
