/*
 * runtime/os.c against a write(2) that misbehaves.  This file defines write
 * for the whole test binary: it passes every call to the system call unless
 * a test arms it, so the runtime's messages (hak_os_write_stderr) meet what
 * the test chooses.
 */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

static int stderr_writes_taking_nothing; /* armed: fd 2 writes return 0 */
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
    return syscall(SYS_write, fd, buf, n);
}

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

Suite *suite_os(void)
{
    Suite *s = suite_create("os");
    TCase *tc = tcase_create("os");
    tcase_add_test(tc, stderr_write_taking_nothing_gives_up);
    suite_add_tcase(s, tc);
    return s;
}
