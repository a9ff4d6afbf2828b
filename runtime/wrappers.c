/*
 * wrappers.c - the exported names: the C library's allocation functions (so
 * that LD_PRELOAD or static linking replaces malloc) and the hak_ API of
 * include/hakmem.h.  Nothing else in the runtime is visible outside it.
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

/* The hak_ API (include/hakmem.h): the same functions under hakmem's names. */
HAK_EXPORT void *hak_malloc(size_t n)
{
    return hak_front_malloc(n);
}

HAK_EXPORT void hak_free(void *p)
{
    hak_front_free(p);
}

HAK_EXPORT void *hak_calloc(size_t n, size_t size)
{
    return hak_api_calloc(n, size);
}

HAK_EXPORT void *hak_realloc(void *p, size_t n)
{
    return hak_api_realloc(p, n);
}

HAK_EXPORT int hak_posix_memalign(void **out, size_t align, size_t n)
{
    return hak_api_posix_memalign(out, align, n);
}

HAK_EXPORT void *hak_aligned_alloc(size_t align, size_t n)
{
    return hak_api_aligned_alloc(align, n);
}

HAK_EXPORT size_t hak_usable_size(void *p)
{
    return hak_api_usable_size(p);
}

HAK_EXPORT const char *hak_spec_name(void)
{
    return HAK_SPEC_NAME;
}

HAK_EXPORT const char *hak_spec_hash(void)
{
    return HAK_SPEC_HASH;
}
