/*
 * runtime/os.c against a write(2) and a munmap(2) that misbehave.  This file
 * defines both for the whole test binary: they pass every call to the system
 * call unless a test arms them, so the runtime meets what the test chooses.
 */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

static int stderr_writes_taking_nothing; /* armed: fd 2 writes return 0 */
static int stderr_writes_failing;         /* armed: fd 2 writes fail with EBADF */
static int stderr_write_calls;

ssize_t write(int fd, const void *buf, size_t n)
{
    if (fd == 2 && stderr_writes_taking_nothing > 0) {
        stderr_write_calls++;
        /* after many, pretend it all went: the test ends even on a spinning writer */
        if (stderr_write_calls >= 1000) {
            stderr_writes_taking_nothing = 0;
            return (ssize_t)n;
        }
        return 0;
    }
    if (fd == 2 && stderr_writes_failing > 0) {
        stderr_write_calls++;
        errno = EBADF; /* as with stderr closed (2>&-) */
        return -1;
    }
    return syscall(SYS_write, fd, buf, n);
}

static volatile int munmaps_refused; /* armed: munmap fails with ENOMEM */
/* volatile: malloc, free and malloc_trim are declared leaf functions (glibc's
 * __THROW), which the compiler takes to never call back into this file */
static volatile int munmap_calls;

int munmap(void *p, size_t len)
{
    if (munmaps_refused > 0) {
        munmap_calls++;
        errno = ENOMEM; /* as when a split would pass vm.max_map_count */
        return -1;
    }
    return (int)syscall(SYS_munmap, p, len);
}

static size_t resident_pages(void *p, size_t len)
{
    unsigned char vec[16];
    ck_assert_uint_le(len / HAK_PAGE, sizeof vec);
    ck_assert_int_eq(mincore(p, len, vec), 0);
    size_t n = 0;
    for (size_t i = 0; i < len / HAK_PAGE; i++)
        n += vec[i] & 1;
    return n;
}

/* An unmap the kernel refuses: false, the range left as it was (mapped,
 * its contents intact) for the caller to keep; hak_os_release then gives
 * its pages back, the addresses reading zeros.  errno is the caller's. */
START_TEST(unmap_refused_gives_pages_back)
{
    size_t len = 4 * HAK_PAGE;
    char *p = hak_os_map(len);
    ck_assert_ptr_nonnull(p);
    memset(p, 0x5a, len);
    ck_assert_uint_eq(resident_pages(p, len), 4);
    munmaps_refused = 1;
    munmap_calls = 0;
    errno = EDOM;
    ck_assert(!hak_os_unmap(p, len));
    munmaps_refused = 0;
    ck_assert_int_eq(munmap_calls, 1);
    ck_assert_int_eq(errno, EDOM);
    ck_assert_uint_eq(resident_pages(p, len), 4);
    for (size_t i = 0; i < len; i++)
        ck_assert_int_eq(p[i], 0x5a);
    hak_os_release(p, len);
    ck_assert_int_eq(errno, EDOM);
    ck_assert_uint_eq(resident_pages(p, len), 0);
    for (size_t i = 0; i < len; i++)
        ck_assert_int_eq(p[i], 0);
    ck_assert(hak_os_unmap(p, len));
    ck_assert_int_eq(errno, EDOM);
}
END_TEST

/* An aligned map whose trims are refused still returns its aligned block,
 * with errno as it was. */
START_TEST(aligned_map_trims_refused)
{
    munmaps_refused = 1;
    munmap_calls = 0;
    errno = EDOM;
    char *p = hak_os_map_aligned(HAK_SUPERSLAB_BYTES, HAK_SUPERSLAB_BYTES);
    munmaps_refused = 0;
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq((uintptr_t)p % HAK_SUPERSLAB_BYTES, 0);
    ck_assert_int_ge(munmap_calls, 1);
    ck_assert_int_eq(errno, EDOM);
    p[0] = 1;
    p[HAK_SUPERSLAB_BYTES - 1] = 1;
}
END_TEST

/* A large block whose unmap the kernel refuses (at its map count) is kept,
 * its pages given back, and serves the next request it fits: the same
 * address, reading zero under calloc (its first bytes held the record of
 * the kept range).  From then on a freed block is kept without a try; a
 * trim tries them again: while refused they stay; once the kernel agrees
 * they are unmapped.  Until 2026-11-29 it was dropped, its addresses
 * mapped for good. */
START_TEST(large_unmap_refused_kept_for_reuse)
{
    size_t n = 2 * HAK_LARGE_CACHE_BYTES; /* over the cache: unmapped at its free */
    malloc_trim(0);
    unsigned char *a = malloc(n);
    ck_assert_ptr_nonnull(a);
    memset(a, 0x5a, n);
    munmaps_refused = 1;
    munmap_calls = 0;
    free(a);
    ck_assert_int_ge(munmap_calls, 1);
    unsigned char vec[4];
    ck_assert_int_eq(mincore(a + HAK_PAGE, 4 * HAK_PAGE, vec), 0); /* mapped, */
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(vec[i] & 1, 0); /* its pages given back */
    malloc_trim(0); /* refused again */
    unsigned char *b = calloc(1, n);
    munmaps_refused = 0;
    ck_assert_ptr_eq(b, a);
    size_t nonzero = 0;
    for (size_t i = 0; i < n; i++)
        nonzero += b[i] != 0;
    ck_assert_uint_eq(nonzero, 0);
    /* at the limit nothing is unmapped until malloc_trim: not even tried */
    int calls = munmap_calls;
    free(b);
    ck_assert_int_eq(munmap_calls, calls);
    ck_assert_int_eq(mincore(a, HAK_PAGE, vec), 0); /* kept */
    malloc_trim(0);
    errno = 0;
    ck_assert_int_eq(mincore(a, HAK_PAGE, vec), -1); /* unmapped at last */
    ck_assert_int_eq(errno, ENOMEM);
}
END_TEST

/* An empty superslab the kernel refuses to unmap stays mapped, and counted,
 * until a later purge where the kernel agrees. */
START_TEST(superslab_unmap_refused_kept)
{
    unsigned cls = HAK_NUM_CLASSES - 2;
    uint64_t next = UINT64_MAX;
    hak_ss_purge(hak_now_ms(), true, &next);
    struct hak_usage before = {0}, u = {0};
    hak_ss_usage(&before);
    enum { MAX_SPANS = 1024 };
    static struct hak_span *sp[MAX_SPANS];
    int count = 0;
    do { /* until a superslab is mapped: only these spans are in it */
        ck_assert_int_lt(count, MAX_SPANS);
        ck_assert_ptr_nonnull(sp[count] = hak_ss_span_alloc(cls));
        memset(&u, 0, sizeof u);
        hak_ss_usage(&u);
        count++;
    } while (u.ss_mapped == before.ss_mapped);
    struct hak_superslab *fresh = hak_ss_of(sp[count - 1]);
    for (int i = 0; i < count; i++)
        hak_ss_span_free(sp[i]);
    munmaps_refused = 1;
    munmap_calls = 0;
    hak_ss_purge(hak_now_ms(), true, &next);
    munmaps_refused = 0;
    ck_assert_int_ge(munmap_calls, 1);
    memset(&u, 0, sizeof u);
    hak_ss_usage(&u);
    ck_assert_uint_eq(u.ss_mapped, before.ss_mapped + HAK_SUPERSLAB_BYTES);
    ck_assert_uint_eq(u.ss_dirty, 0); /* its units' pages were given back */
    unsigned char vec;
    ck_assert_int_eq(mincore(fresh, HAK_PAGE, &vec), 0);
    hak_ss_purge(hak_now_ms(), true, &next);
    memset(&u, 0, sizeof u);
    hak_ss_usage(&u);
    ck_assert_uint_eq(u.ss_mapped, before.ss_mapped);
    errno = 0;
    ck_assert_int_eq(mincore(fresh, HAK_PAGE, &vec), -1);
    ck_assert_int_eq(errno, ENOMEM);
}
END_TEST

/* A write that takes nothing and sets no errno (a stale EINTR left over):
 * the message is given up after that one call, where the loop used to spin
 * on the stale errno forever. */
START_TEST(stderr_write_taking_nothing_gives_up)
{
    stderr_writes_taking_nothing = 1;
    stderr_write_calls = 0;
    errno = EINTR;
    hak_os_write_stderr("hakmem: test message\n");
    stderr_writes_taking_nothing = 0;
    ck_assert_int_eq(stderr_write_calls, 1);
}
END_TEST

/* A message that cannot be written (stderr closed) leaves errno as it was:
 * HAKMEM_SHOW_SPEC's line is written at start-up (or inside a program's first
 * malloc), which then left EBADF in errno at main, or after a malloc that
 * succeeded. */
START_TEST(stderr_write_failing_keeps_errno)
{
    stderr_writes_failing = 1;
    stderr_write_calls = 0;
    errno = EDOM;
    hak_os_write_stderr("hakmem: test message\n");
    stderr_writes_failing = 0;
    ck_assert_int_eq(stderr_write_calls, 1);
    ck_assert_int_eq(errno, EDOM);
}
END_TEST

Suite *suite_os(void)
{
    Suite *s = suite_create("os");
    TCase *tc = tcase_create("os");
    tcase_add_test(tc, stderr_write_taking_nothing_gives_up);
    tcase_add_test(tc, stderr_write_failing_keeps_errno);
    tcase_add_test(tc, unmap_refused_gives_pages_back);
    tcase_add_test(tc, aligned_map_trims_refused);
    tcase_add_test(tc, large_unmap_refused_kept_for_reuse);
    tcase_add_test(tc, superslab_unmap_refused_kept);
    suite_add_tcase(s, tc);
    return s;
}
