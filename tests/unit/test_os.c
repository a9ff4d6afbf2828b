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
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "quiet_class.h"

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

/* How many of the pages at p are resident; (size_t)-1 where they are not
 * mapped (no ck_assert: the map-limit tests run it in a child). */
static size_t resident_of(const void *p, size_t pages)
{
    unsigned char vec[64];
    if (pages > sizeof vec || mincore((void *)p, pages * HAK_PAGE, vec) != 0)
        return (size_t)-1;
    size_t n = 0;
    for (size_t i = 0; i < pages; i++)
        n += vec[i] & 1;
    return n;
}

static size_t resident_pages(void *p, size_t len)
{
    size_t n = resident_of(p, len / HAK_PAGE);
    ck_assert_uint_ne(n, (size_t)-1);
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

/* Run fn in a child process (what it does at the map limit stays there: the
 * limit is for good); its exit status, 0 when every step held, else the
 * number of the first that did not. */
static int in_child(int (*fn)(void))
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        _exit(fn());
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status), "child died: status %#x", status);
    return WEXITSTATUS(status);
}

/* Steps of large_unmap_refused_kept_for_reuse; the number of the first
 * that fails. */
static int large_refused_child(void)
{
    size_t n = 2 * HAK_LARGE_CACHE_BYTES; /* over the cache: unmapped at its free */
    if (n < ((size_t)1 << 20))
        n = (size_t)1 << 20;
    unsigned char *a = malloc(n), *c = malloc(n);
    if (a == NULL || c == NULL)
        return 1;
    memset(a, 0x5a, n);
    memset(c, 0x5a, n);
    munmaps_refused = 1;
    munmap_calls = 0;
    free(a);
    munmaps_refused = 0;
    if (munmap_calls < 1)
        return 2;
    if (resident_of(a + HAK_PAGE, 16) != 0) /* mapped, its pages given back */
        return 3;
    int calls = munmap_calls;
    free(c); /* at the limit: kept, not even tried */
    if (munmap_calls != calls || resident_of(c, 16) != 0)
        return 4;
    malloc_trim(0); /* keeps them too */
    if (munmap_calls != calls || resident_of(a, 1) != 0 || resident_of(c, 1) != 0)
        return 5;
    unsigned char *b = calloc(1, n), *d = calloc(1, n);
    if ((b != a && b != c) || (d != a && d != c) || b == d)
        return 6;
    for (size_t i = 0; i < n; i++)
        if (b[i] != 0 || d[i] != 0)
            return 7;
    free(b);
    free(d);
    return munmap_calls != calls ? 8 : 0;
}

/* A large block whose unmap the kernel refuses (at its map count) is kept,
 * its pages given back, and so is every large block freed from then on,
 * without a try, malloc_trim too (address space given back at the limit
 * may not be had again); they serve the next requests they fit: the same
 * addresses, reading zero under calloc.  Until 2026-11-29 a refused block
 * was dropped, its addresses mapped for good. */
START_TEST(large_unmap_refused_kept_for_reuse)
{
    int step = in_child(large_refused_child);
    ck_assert_msg(step == 0, "step %d failed (see large_refused_child)", step);
}
END_TEST

/* Steps of superslab_unmap_refused_kept. */
static int superslab_refused_child(void)
{
    unsigned cls = quiet_class();
    uint64_t next = UINT64_MAX;
    hak_ss_purge(hak_now_ms(), true, &next);
    struct hak_usage before = {0}, u = {0};
    hak_ss_usage(&before);
    enum { MAX_SPANS = 1024 };
    static struct hak_span *sp[MAX_SPANS];
    int count = 0;
    do { /* until a superslab is mapped: only these spans are in it */
        if (count == MAX_SPANS || (sp[count] = hak_ss_span_alloc(cls)) == NULL)
            return 1;
        memset(&u, 0, sizeof u);
        hak_ss_usage(&u);
        count++;
    } while (u.ss_mapped == before.ss_mapped);
    struct hak_superslab *fresh = hak_ss_of(sp[count - 1]);
    munmaps_refused = 1;
    munmap_calls = 0;
    for (int i = 0; i < count; i++)
        hak_ss_span_free(sp[i]); /* with decay_ms 0 the last one unmaps it */
    hak_ss_purge(hak_now_ms(), true, &next);
    munmaps_refused = 0;
    if (munmap_calls < 1)
        return 2;
    memset(&u, 0, sizeof u);
    hak_ss_usage(&u);
    if (u.ss_mapped != before.ss_mapped + HAK_SUPERSLAB_BYTES || u.ss_dirty != 0)
        return 3; /* kept, its units' pages given back */
    if (resident_of(fresh, 1) != 1) /* its header */
        return 4;
    int calls = munmap_calls;
    hak_ss_purge(hak_now_ms(), true, &next); /* at the limit: kept, not even tried */
    memset(&u, 0, sizeof u);
    hak_ss_usage(&u);
    if (munmap_calls != calls || u.ss_mapped != before.ss_mapped + HAK_SUPERSLAB_BYTES)
        return 5;
    struct hak_span *again = hak_ss_span_alloc(cls); /* a span of it serves again */
    return again != NULL && hak_ss_of(again) == fresh ? 0 : 6;
}

/* An empty superslab the kernel refuses to unmap stays mapped, counted, and
 * serves the next span; at the limit no empty superslab is unmapped. */
START_TEST(superslab_unmap_refused_kept)
{
    int step = in_child(superslab_refused_child);
    ck_assert_msg(step == 0, "step %d failed (see superslab_refused_child)", step);
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
