/* The static specialized API (HAKMEM_STATIC): hak_malloc / hak_free_sized
 * expand inline to the generated front. */
#define HAKMEM_STATIC 1
#include <check.h>
#include <malloc.h>

#include "hakmem.h"

/* A constant-size free puts the block on top of its class's cache: the next
 * allocation of that size returns it. */
START_TEST(free_sized_reuses_at_once)
{
    void *p = hak_malloc(64);
    ck_assert_uint_eq(malloc_usable_size(p), hak_class_info[hak_class_of_size(64)].size);
    hak_free_sized(p, 64);
    void *q = hak_malloc(64);
    ck_assert_ptr_eq(p, q);
    hak_free(q);
}
END_TEST

/* A size that names another class is not trusted: the block is freed by the
 * general path, into its real class. */
START_TEST(free_sized_wrong_size_still_right_class)
{
    void *p = hak_malloc(1000);
    hak_free_sized(p, 64);
    void *q = hak_malloc(1000);
    ck_assert_ptr_eq(p, q);
    hak_free_sized(q, 1000);
    void *big = hak_malloc(100000); /* large: the general path */
    hak_free_sized(big, 100000);
}
END_TEST

Suite *suite_static(void)
{
    Suite *s = suite_create("static");
    TCase *tc = tcase_create("static");
    tcase_add_test(tc, free_sized_reuses_at_once);
    tcase_add_test(tc, free_sized_wrong_size_still_right_class);
    suite_add_tcase(s, tc);
    return s;
}
