/*
 * exports.c - hakmem's own API (include/hakmem.h): the allocation functions
 * under hak_ names, and the spec this library was generated from.
 */
#include "internal.h"

HAK_EXPORT void *hak_malloc(size_t n)
{
    return hak_front_malloc(n);
}

HAK_EXPORT void hak_free(void *p)
{
    hak_front_free(p);
}

HAK_EXPORT void hak_free_sized(void *p, size_t n)
{
    (void)n; /* the region map knows the class; the size is a hint for inline callers */
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

HAK_EXPORT int hak_trim(void)
{
    return hak_api_trim(0);
}

HAK_EXPORT const char *hak_spec_name(void)
{
    return HAK_SPEC_NAME;
}

HAK_EXPORT const char *hak_spec_hash(void)
{
    return HAK_SPEC_HASH;
}
