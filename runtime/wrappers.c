/*
 * wrappers.c - the C library's allocation functions, exported so that
 * LD_PRELOAD or static linking replaces malloc.  With exports.c (the hak_
 * names) these are the only symbols the library exports.  A build that must
 * not replace malloc (the ThreadSanitizer tests) leaves this file out.
 */
#define _GNU_SOURCE
#include <limits.h>
#include <stdio.h>

#include "internal.h"

/*
 * malloc and free each start a cache line: their hit paths are 60 to 110
 * bytes, and where one started decided how many lines and fetch windows it
 * took.  A change of a few bytes elsewhere in the library moved them, and
 * moved the fixed rows by up to 5% with no instruction of their own changed.
 */
#define HAK_HOT_ENTRY __attribute__((aligned(64)))

HAK_EXPORT HAK_HOT_ENTRY void *malloc(size_t n)
{
    return hak_front_malloc(n);
}

HAK_EXPORT HAK_HOT_ENTRY void free(void *p)
{
    hak_front_free(p);
}

HAK_EXPORT void *calloc(size_t n, size_t size)
{
    return hak_api_calloc(n, size);
}

HAK_EXPORT void *realloc(void *p, size_t n)
{
    return hak_api_realloc(p, n);
}

HAK_EXPORT void *reallocarray(void *p, size_t n, size_t size)
{
    return hak_api_reallocarray(p, n, size);
}

HAK_EXPORT int posix_memalign(void **out, size_t align, size_t n)
{
    return hak_api_posix_memalign(out, align, n);
}

HAK_EXPORT void *aligned_alloc(size_t align, size_t n)
{
    return hak_api_aligned_alloc(align, n);
}

HAK_EXPORT void *memalign(size_t align, size_t n)
{
    return hak_api_memalign(align, n);
}

HAK_EXPORT void *valloc(size_t n)
{
    return hak_api_valloc(n);
}

HAK_EXPORT void *pvalloc(size_t n)
{
    return hak_api_pvalloc(n);
}

/* C23; glibc's headers declare them from 2.43 on */
void free_sized(void *p, size_t n);
void free_aligned_sized(void *p, size_t align, size_t n);

HAK_EXPORT void free_sized(void *p, size_t n)
{
    hak_api_free_sized(p, n);
}

HAK_EXPORT void free_aligned_sized(void *p, size_t align, size_t n)
{
    hak_api_free_aligned_sized(p, align, n);
}

HAK_EXPORT size_t malloc_usable_size(void *p)
{
    return hak_api_usable_size(p);
}

HAK_EXPORT int malloc_trim(size_t pad)
{
    return hak_api_trim(pad);
}

/*
 * glibc's statistics, from what hakmem holds (README, "Semantics"): arena is
 * the superslabs (small and mid blocks), uordblks their bytes in spans and
 * headers (blocks handed out, cached by threads, or free inside a span),
 * fordblks the rest, keepcost the part of it still resident (a purge gives
 * it back); hblks and hblkhd the live large blocks.  Counts glibc keeps per
 * chunk are 0.
 */

/* glibc's struct mallinfo2 and struct mallinfo, field for field.  Not from
 * <malloc.h>: its declarations of malloc and the rest carry attributes that
 * the __libc_ aliases below would then have to repeat. */
struct mallinfo2 {
    size_t arena, ordblks, smblks, hblks, hblkhd, usmblks, fsmblks, uordblks, fordblks, keepcost;
};
struct mallinfo {
    int arena, ordblks, smblks, hblks, hblkhd, usmblks, fsmblks, uordblks, fordblks, keepcost;
};

static struct mallinfo2 info_of(const struct hak_usage *u)
{
    size_t headers = u->ss_mapped / HAK_SUPERSLAB_BYTES * HAK_SS_HEADER_UNITS * HAK_SLAB_BYTES;
    return (struct mallinfo2){
        .arena = u->ss_mapped,
        .hblks = u->large_count,
        .hblkhd = u->large_bytes,
        .uordblks = u->ss_in_spans + headers,
        .fordblks = u->ss_mapped - u->ss_in_spans - headers,
        .keepcost = u->ss_dirty,
    };
}

HAK_EXPORT struct mallinfo2 mallinfo2(void)
{
    struct hak_usage u;
    hak_api_usage(&u);
    return info_of(&u);
}

static int clamp_int(size_t v)
{
    return v > INT_MAX ? INT_MAX : (int)v;
}

/* The old interface: int fields, each at most INT_MAX (where glibc's wrap). */
HAK_EXPORT struct mallinfo mallinfo(void)
{
    struct mallinfo2 m = mallinfo2();
    return (struct mallinfo){
        .arena = clamp_int(m.arena),
        .hblks = clamp_int(m.hblks),
        .hblkhd = clamp_int(m.hblkhd),
        .uordblks = clamp_int(m.uordblks),
        .fordblks = clamp_int(m.fordblks),
        .keepcost = clamp_int(m.keepcost),
    };
}

/* glibc's seven lines on stderr, one arena (the superslabs); the totals add
 * the large blocks, live and cached.  Formatted on the stack: nothing here
 * allocates unless the program has made stderr buffered. */
HAK_EXPORT void malloc_stats(void)
{
    struct hak_usage u;
    hak_api_usage(&u);
    struct mallinfo2 m = info_of(&u);
    char out[512];
    snprintf(out, sizeof out,
             "Arena 0:\nsystem bytes     = %10zu\nin use bytes     = %10zu\n"
             "Total (incl. mmap):\nsystem bytes     = %10zu\nin use bytes     = %10zu\n"
             "max mmap regions = %10zu\nmax mmap bytes   = %10zu\n",
             m.arena, m.uordblks, m.arena + u.large_bytes + u.large_cached,
             m.uordblks + u.large_bytes, u.large_max_count, u.large_max_bytes);
    fputs(out, stderr);
}

/* glibc's own names for the same functions, which some programs and
 * libraries call directly (a block from glibc's __libc_malloc would be a
 * foreign pointer to hakmem's free, and the other way round). */
HAK_EXPORT void *__libc_malloc(size_t n) __attribute__((alias("malloc")));
HAK_EXPORT void __libc_free(void *p) __attribute__((alias("free")));
HAK_EXPORT void *__libc_calloc(size_t n, size_t size) __attribute__((alias("calloc")));
HAK_EXPORT void *__libc_realloc(void *p, size_t n) __attribute__((alias("realloc")));
HAK_EXPORT void *__libc_memalign(size_t align, size_t n) __attribute__((alias("memalign")));
HAK_EXPORT void *__libc_valloc(size_t n) __attribute__((alias("valloc")));
HAK_EXPORT void *__libc_pvalloc(size_t n) __attribute__((alias("pvalloc")));
HAK_EXPORT struct mallinfo __libc_mallinfo(void) __attribute__((alias("mallinfo")));

/* cfree: gone from glibc's headers since 2.26, but its libc.so still exports
 * cfree@GLIBC_2.2.5, which is glibc's free: a program built against an older
 * glibc that calls it would hand hakmem's block to glibc's free. */
void cfree(void *p);
HAK_EXPORT void cfree(void *p) __attribute__((alias("free")));
