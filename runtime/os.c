/* os.c - the operating system contract: mapping memory, writing a message. */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

/*
 * munmap, which the kernel refuses past its map count (vm.max_map_count)
 * where it would cut a mapping in two: it merges neighbouring anonymous
 * mappings into one, so a block between two others still mapped is such a
 * cut.  The range is then left as it was.  errno is kept either way: the
 * callers are calls that succeed (free, a trim of an aligned map).
 */
static bool at_map_limit; /* atomic */

static bool unmap(void *p, size_t len)
{
    int saved = errno;
    bool ok = munmap(p, len) == 0;
    if (!ok && errno == ENOMEM)
        __atomic_store_n(&at_map_limit, true, __ATOMIC_RELAXED);
    errno = saved;
    return ok;
}

/* Whether munmap has been refused for the map count: from then on the
 * process lives at the limit, where address space given back may not be
 * had again (past it every mmap fails), and superslabs and large ranges are
 * kept instead (superslab.c, kept.c).  For good: the ranges kept stay in
 * the mappings they were cut from, and give back only their pages. */
bool hak_os_at_map_limit(void)
{
    return __atomic_load_n(&at_map_limit, __ATOMIC_RELAXED);
}

/* The pages of [p, p + len) back to the OS; the addresses stay mapped and
 * read zero.  false where madvise fails: locked pages (mlock, mlockall)
 * stay, and keep what they held. */
bool hak_os_release(void *p, size_t len)
{
    int saved = errno;
    bool ok = madvise(p, len, MADV_DONTNEED) == 0;
    errno = saved;
    return ok;
}

void *hak_os_map(size_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        errno = ENOMEM;
        return NULL;
    }
    return p;
}

/* Map len bytes at an address aligned to align: map len + align, trim both ends. */
void *hak_os_map_aligned(size_t len, size_t align)
{
    if (align <= HAK_PAGE)
        return hak_os_map(len);
    if (len + align < len) {
        errno = ENOMEM;
        return NULL;
    }
    char *raw = hak_os_map(len + align);
    if (raw == NULL)
        return NULL;
    char *p = (char *)(((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1));
    /* the ends cut off are lost if refused: less than align, rarely */
    if (p > raw && !unmap(raw, (size_t)(p - raw)))
        hak_os_release(raw, (size_t)(p - raw));
    size_t tail = (size_t)(raw + len + align - (p + len));
    if (tail && !unmap(p + len, tail))
        hak_os_release(p + len, tail);
    return p;
}

/* len bytes of address space read-only and without a memory reserve: reads
 * see the zero page, nothing is committed, and a core file leaves it out. */
void *hak_os_map_read_only(size_t len)
{
    void *p = mmap(NULL, len, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        errno = ENOMEM;
        return NULL;
    }
    madvise(p, len, MADV_DONTDUMP);
    return p;
}

#ifndef MAP_FIXED_NOREPLACE /* headers before glibc 2.28 */
#define MAP_FIXED_NOREPLACE 0x100000
#endif

/* len bytes at exactly addr, when nothing is mapped there: NULL with errno
 * EEXIST when something is (a kernel before 4.17 takes the flag as a hint:
 * a mapping elsewhere is undone and counts as taken), ENOMEM when the
 * kernel refuses. */
void *hak_os_map_at(uintptr_t addr, size_t len)
{
    void *p = mmap((void *)addr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (p == (void *)addr)
        return p;
    if (p != MAP_FAILED) {
        munmap(p, len);
        errno = EEXIST;
    } else if (errno != EEXIST) {
        errno = ENOMEM;
    }
    return NULL;
}

bool hak_os_make_writable(void *p, size_t len)
{
    return mprotect(p, len, PROT_READ | PROT_WRITE) == 0;
}

bool hak_os_make_read_only(void *p, size_t len)
{
    return mprotect(p, len, PROT_READ) == 0;
}

bool hak_os_unmap(void *p, size_t len)
{
    return unmap(p, len);
}

/* NULL with mremap's errno: ENOMEM when out of address space or memory,
 * EFAULT when [p, p + old_len) is more than one of the kernel's mappings. */
void *hak_os_remap(void *p, size_t old_len, size_t new_len)
{
    void *q = mremap(p, old_len, new_len, MREMAP_MAYMOVE);
    return q == MAP_FAILED ? NULL : q;
}

/* errno is kept: a message may be written where a call goes on to succeed
 * (HAKMEM_SHOW_SPEC's line at start-up, inside a program's first malloc),
 * and a closed stderr (2>&-) must not leave EBADF behind. */
void hak_os_write_stderr(const char *s)
{
    int saved = errno;
    size_t len = strlen(s);
    while (len > 0) {
        ssize_t n = write(2, s, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* an error, or a write that took nothing: give up, never spin */
        s += n;
        len -= (size_t)n;
    }
    errno = saved;
}

char *hak_fmt_hex(char *out, uintptr_t v)
{
    char tmp[2 * sizeof v];
    int n = 0;
    do {
        tmp[n++] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    *out++ = '0';
    *out++ = 'x';
    while (n)
        *out++ = tmp[--n];
    *out = '\0';
    return out;
}
