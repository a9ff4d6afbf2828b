/*
 * runtime/os.c against a write(2) and a munmap(2) that misbehave.  This file
 * defines both for the whole test binary: they pass every call to the system
 * call unless a test arms them, so the runtime meets what the test chooses.
 */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
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

static int munmaps_refused; /* armed: munmap fails with ENOMEM */
static int munmap_calls;

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

/* An unmap the kernel refuses: the pages are given back all the same (the
 * addresses stay mapped, reading zeros), and errno is the caller's. */
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
    hak_os_unmap(p, len);
    munmaps_refused = 0;
    ck_assert_int_eq(munmap_calls, 1);
    ck_assert_int_eq(errno, EDOM);
    ck_assert_uint_eq(resident_pages(p, len), 0);
    for (size_t i = 0; i < len; i++)
        ck_assert_int_eq(p[i], 0);
    ck_assert_int_eq(munmap(p, len), 0);
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
    suite_add_tcase(s, tc);
    return s;
}
