/* Spans: carving, reuse, return of empty spans, the region map, thread exit. */
#include <check.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "internal.h"

/* A class the test harness itself never allocates from, so its lists start empty. */
#define QUIET_CLASS (HAK_NUM_CLASSES - 2)

static char *span_base_of(void *p)
{
    const struct hak_class_info *ci = &hak_class_info[QUIET_CLASS];
    return hak_span_base(hak_span_of(p, ci->span_bytes / HAK_SLAB_BYTES));
}

/* A fresh span hands out its blocks in address order, one class per span. */
START_TEST(carve_in_order)
{
    const struct hak_class_info *ci = &hak_class_info[QUIET_CLASS];
    void *out[8];
    ck_assert_uint_eq(hak_central_take(QUIET_CLASS, out, 8), 8);
    char *base = span_base_of(out[0]);
    ck_assert_ptr_eq(out[0], base);
    ck_assert_uint_eq((uintptr_t)base % ci->span_bytes, 0);
    for (int i = 0; i < 8 && i < (int)ci->blocks; i++) {
        ck_assert_ptr_eq(out[i], base + (size_t)i * ci->size);
        ck_assert_uint_eq(hak_region_code((uintptr_t)out[i]), QUIET_CLASS + 1);
    }
}
END_TEST

/* Given-back blocks are reused (last given, first taken) before carving goes on. */
START_TEST(reuse_before_carving)
{
    const struct hak_class_info *ci = &hak_class_info[QUIET_CLASS];
    ck_assert_uint_ge(ci->blocks, 4);
    void *out[4], *again[3];
    ck_assert_uint_eq(hak_central_take(QUIET_CLASS, out, 3), 3);
    hak_central_give(QUIET_CLASS, &out[0], 1);
    hak_central_give(QUIET_CLASS, &out[2], 1);
    ck_assert_uint_eq(hak_central_take(QUIET_CLASS, again, 3), 3);
    ck_assert_ptr_eq(again[0], out[2]);
    ck_assert_ptr_eq(again[1], out[0]);
    ck_assert_ptr_eq(again[2], (char *)out[0] + 3 * ci->size);
}
END_TEST

/* When all of a span's blocks come back it returns to its superslab and the
 * region map forgets it, unless it is its class's only partial span. */
START_TEST(empty_span_returned)
{
    const struct hak_class_info *ci = &hak_class_info[QUIET_CLASS];
    uint32_t n = ci->blocks;
    void **a = calloc(n, sizeof *a), **b = calloc(n, sizeof *b);
    ck_assert_uint_eq(hak_central_take(QUIET_CLASS, a, n), n);
    ck_assert_uint_eq(hak_central_take(QUIET_CLASS, b, n), n);
    char *base_a = span_base_of(a[0]), *base_b = span_base_of(b[0]);
    ck_assert_ptr_ne(base_a, base_b);
    hak_central_give(QUIET_CLASS, a, n); /* the only partial span: kept */
    ck_assert_uint_eq(hak_region_code((uintptr_t)base_a), QUIET_CLASS + 1);
    hak_central_give(QUIET_CLASS, b, n); /* another is partial: returned */
    ck_assert_uint_eq(hak_region_code((uintptr_t)base_b), 0);
    ck_assert_uint_eq(hak_region_code((uintptr_t)base_a), QUIET_CLASS + 1);
    free(a);
    free(b);
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

/* A thread's cached blocks go back to the central lists when it exits. */
START_TEST(thread_exit_returns_cached_blocks)
{
    void *blocks[THREAD_BLOCKS];
    pthread_t t;
    pthread_create(&t, NULL, alloc_and_exit, blocks);
    pthread_join(t, NULL);
    uint32_t want = THREAD_BLOCKS + hak_class_info[QUIET_CLASS].refill;
    void **got = calloc(want, sizeof *got);
    ck_assert_uint_eq(hak_central_take(QUIET_CLASS, got, want), want);
    for (int i = 0; i < THREAD_BLOCKS; i++) {
        bool found = false;
        for (uint32_t j = 0; j < want && !found; j++)
            found = got[j] == blocks[i];
        ck_assert_msg(found, "block %d of the exited thread was lost", i);
    }
    free(got);
}
END_TEST

Suite *suite_slabs(void)
{
    Suite *s = suite_create("slabs");
    TCase *tc = tcase_create("slabs");
    tcase_add_test(tc, carve_in_order);
    tcase_add_test(tc, reuse_before_carving);
    tcase_add_test(tc, empty_span_returned);
    tcase_add_test(tc, region_map_foreign);
    tcase_add_test(tc, thread_exit_returns_cached_blocks);
    suite_add_tcase(s, tc);
    return s;
}
