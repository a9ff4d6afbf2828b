/*
 * wrappers.c - the C library's allocation functions, exported so that
 * LD_PRELOAD or static linking replaces malloc.  With exports.c (the hak_
 * names) these are the only symbols the library exports.  A build that must
 * not replace malloc (the ThreadSanitizer tests) leaves this file out.
 */
#define _GNU_SOURCE
#include "internal.h"

HAK_EXPORT void *malloc(size_t n)
{
    return hak_front_malloc(n);
}

HAK_EXPORT void free(void *p)
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

HAK_EXPORT size_t malloc_usable_size(void *p)
{
    return hak_api_usable_size(p);
}

HAK_EXPORT int malloc_trim(size_t pad)
{
    return hak_api_trim(pad);
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
