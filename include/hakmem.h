/*
 * hakmem.h - hakmem's public API.
 *
 * Linked as a drop-in (LD_PRELOAD=libhakmem.so, or -lhakmem), hakmem replaces
 * malloc, free and the rest of the C library's allocation functions; the hak_
 * names below are the same functions under hakmem's own names.
 *
 * Static specialized use: define HAKMEM_STATIC, put the variant's generated
 * directory on the include path (-Igenerated/NAME, or include/hakmem/NAME
 * when installed) and link libhakmem.a.  hak_malloc and hak_free then expand
 * inline to the generated front, and a request whose size is a compile-time
 * constant compiles to a single size class's pop, with no call at all.
 */
#ifndef HAKMEM_H
#define HAKMEM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

void *hak_malloc(size_t n);
void hak_free(void *p);
void *hak_calloc(size_t n, size_t size);
void *hak_realloc(void *p, size_t n);
int hak_posix_memalign(void **out, size_t align, size_t n);
void *hak_aligned_alloc(size_t align, size_t n);
size_t hak_usable_size(void *p);
int hak_trim(void); /* malloc_trim(0): give back all free memory now; 1 if any was */
void hak_free_sized(void *p, size_t n); /* free(p); n is the size it was allocated with */

/* The spec this library was generated from: its name and resolved-spec hash. */
const char *hak_spec_name(void);
const char *hak_spec_hash(void);

#ifdef __cplusplus
}
#endif

#ifdef HAKMEM_STATIC
#include "hak_front.h"

HAK_INLINE void *hak_malloc_inline(size_t n)
{
    if (__builtin_constant_p(n) && n <= HAK_MAX_CLASS_SIZE)
        return hak_front_alloc_class(hak_class_of_size(n));
    return hak_front_malloc(n);
}

/* free of a block whose size the caller knows (C23's free_sized): with a
 * constant size it compiles to that class's push, after one check that the
 * region map agrees (anything else takes the general path, which reports
 * misuse as free() does). */
HAK_INLINE void hak_free_sized_inline(void *p, size_t n)
{
    if (__builtin_constant_p(n) && n <= HAK_MAX_CLASS_SIZE) {
        unsigned code = hak_class_of_size(n) + 1;
        if (HAK_LIKELY(hak_region_code((uintptr_t)p) == code)) {
            hak_front_free_class(code, p);
            return;
        }
    }
    hak_front_free(p);
}

#define hak_malloc(n) hak_malloc_inline(n)
#define hak_free(p) hak_front_free(p)
#define hak_free_sized(p, n) hak_free_sized_inline((p), (n))
#endif /* HAKMEM_STATIC */

#endif /* HAKMEM_H */
