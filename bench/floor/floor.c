/*
 * floor.c: a do-nothing allocator, the yardstick of `make bench-floor`.
 *
 * Not an allocator to use: it never returns memory, checks nothing and keeps
 * every freed block of 16..2048 B in the freeing thread's cache of its class.
 * What is left is the bare shape of a thread cache, so a workload run under
 * it shows what the benchmark loop itself costs with that shape, the call
 * through the PLT included: the floor an allocator of that shape can reach.
 *
 * Built twice from this file (bench/bench.mk):
 *   floor-array.so  each class's cache is a LIFO array of pointers with a
 *                   count, as hakmem's ring tier (128 slots; a free into a
 *                   full array drops the block);
 *   floor-list.so   each class's cache is a linked list through the free
 *                   blocks, with no count, as hakmem's sll tier without its
 *                   capacity;
 *   floor-top.so    the array, but the block to hand out next kept apart
 *                   from it, as a list's head is: malloc returns it after
 *                   one load, where the array's pop loads the count and
 *                   then the slot (bench/NOTES.md, "The ring's shape on
 *                   another CPU").
 * Blocks come from 64 KiB chunks, one class per chunk, carved from a region
 * reserved at the first call; a byte per chunk names its class, so a block
 * has no header, as in hakmem.  Bigger blocks and aligned blocks take whole
 * chunks of their own (class BIG) with their size in the chunk's first word.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#define EXPORT __attribute__((visibility("default")))
#define LIKELY(x) __builtin_expect(!!(x), 1)

#define GRAIN 16u             /* class c holds blocks of c * GRAIN bytes */
#define CLASSES 129u          /* 1..128: 16..2048 B; 0 is unused */
#define BIG 255u              /* a chunk run of one big or aligned block */
#define CHUNK_SHIFT 16u       /* 64 KiB chunks */
#define CHUNK ((size_t)1 << CHUNK_SHIFT)
#define REGION_CHUNKS (1u << 16) /* 4 GiB of address space, reserved only */
#define REGION_BYTES ((size_t)REGION_CHUNKS << CHUNK_SHIFT)
#define HEADER 64u            /* a big block's size word, before the block */

#if FLOOR_LIST
struct cache { void *head[CLASSES]; };
#elif FLOOR_TOP
#define SLOTS 128u
struct cache {
    void *top[CLASSES];        /* the block to hand out next, NULL: none */
    uint32_t n[CLASSES];       /* blocks in slot[1..n] */
    void *slot[CLASSES][SLOTS]; /* slot[0] stays NULL */
};
#else
#define SLOTS 128u
struct cache {
    uint32_t n[CLASSES];
    void *slot[CLASSES][SLOTS];
};
#endif

struct carver { char *next, *end; }; /* the current chunk of a class */

static char *region;
static uint8_t chunk_class[REGION_CHUNKS];
static atomic_uint chunks_used;
static __thread struct cache cache;
static __thread struct carver carver[CLASSES];

/* n whole chunks, or NULL when the region is used up. */
static char *take_chunks(size_t n, unsigned cls)
{
    if (region == NULL) {
        /* a race here maps twice; one mapping is kept, the other is unused */
        void *r = mmap(NULL, REGION_BYTES,
                       PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (r == MAP_FAILED)
            return NULL;
        char *expected = NULL;
        if (!__atomic_compare_exchange_n(&region, &expected, (char *)r, 0,
                                         __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            munmap(r, REGION_BYTES);
    }
    unsigned first = atomic_fetch_add(&chunks_used, (unsigned)n);
    if (first + n > REGION_CHUNKS)
        return NULL;
    for (size_t i = 0; i < n; i++)
        chunk_class[first + i] = (uint8_t)cls;
    return region + ((size_t)first << CHUNK_SHIFT);
}

static bool in_region(const void *p)
{
    return (uintptr_t)p - (uintptr_t)region < REGION_BYTES;
}

/* A block's class; BIG for a pointer not from the region (none should come). */
static unsigned class_of_block(const void *p)
{
    if (!in_region(p))
        return BIG;
    return chunk_class[((uintptr_t)p - (uintptr_t)region) >> CHUNK_SHIFT];
}

__attribute__((noinline)) static void *carve(unsigned cls)
{
    struct carver *c = &carver[cls];
    size_t size = (size_t)cls * GRAIN;
    if (c->next == NULL || (size_t)(c->end - c->next) < size) {
        char *chunk = take_chunks(1, cls);
        if (chunk == NULL) {
            errno = ENOMEM;
            return NULL;
        }
        c->next = chunk;
        c->end = chunk + CHUNK;
    }
    void *p = c->next;
    c->next += size;
    return p;
}

/* A block of n bytes at a multiple of align (a power of two <= 4096). */
static void *big_alloc(size_t n, size_t align)
{
    size_t lead = align > HEADER ? align : HEADER;
    if (n > REGION_BYTES) {
        errno = ENOMEM;
        return NULL;
    }
    char *run = take_chunks((n + lead + CHUNK - 1) >> CHUNK_SHIFT, BIG);
    if (run == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    *(size_t *)run = n;
    return run + lead;
}

static size_t big_size(const void *p)
{
    uintptr_t off = (uintptr_t)p - (uintptr_t)region;
    return *(const size_t *)(region + (off & ~(CHUNK - 1)));
}

EXPORT void *malloc(size_t n)
{
    unsigned cls = (unsigned)((n + GRAIN - 1) / GRAIN);
    if (cls == 0)
        cls = 1;
    if (cls >= CLASSES)
        return big_alloc(n, 1);
#if FLOOR_LIST
    void *p = cache.head[cls];
    if (LIKELY(p != NULL)) {
        cache.head[cls] = *(void **)p;
        return p;
    }
#elif FLOOR_TOP
    void *p = cache.top[cls];
    if (LIKELY(p != NULL)) {
        uint32_t k = cache.n[cls];
        cache.top[cls] = cache.slot[cls][k];
        cache.n[cls] = k - (k != 0);
        return p;
    }
#else
    uint32_t k = cache.n[cls];
    if (LIKELY(k != 0)) {
        cache.n[cls] = k - 1;
        return cache.slot[cls][k - 1];
    }
#endif
    return carve(cls);
}

EXPORT void free(void *p)
{
    if (p == NULL)
        return;
    unsigned cls = class_of_block(p);
    if (cls == BIG)
        return;
#if FLOOR_LIST
    *(void **)p = cache.head[cls];
    cache.head[cls] = p;
#elif FLOOR_TOP
    void *t = cache.top[cls];
    uint32_t k = cache.n[cls];
    if (LIKELY(k + 1 < SLOTS)) {
        cache.slot[cls][k + 1] = t; /* t NULL (empty): slot k + 1 is never read */
        cache.n[cls] = k + (t != NULL);
        cache.top[cls] = p;
    }
#else
    uint32_t k = cache.n[cls];
    if (LIKELY(k < SLOTS)) {
        cache.slot[cls][k] = p;
        cache.n[cls] = k + 1;
    }
#endif
}

EXPORT size_t malloc_usable_size(void *p)
{
    if (p == NULL || !in_region(p))
        return 0;
    unsigned cls = class_of_block(p);
    return cls == BIG ? big_size(p) : (size_t)cls * GRAIN;
}

EXPORT void *calloc(size_t count, size_t size)
{
    size_t n;
    if (__builtin_mul_overflow(count, size, &n)) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = malloc(n);
    if (p != NULL)
        memset(p, 0, n); /* a reused block is not zero */
    return p;
}

EXPORT void *realloc(void *p, size_t n)
{
    if (p == NULL)
        return malloc(n);
    size_t old = malloc_usable_size(p);
    if (n <= old && n != 0)
        return p;
    void *q = malloc(n);
    if (q != NULL) {
        memcpy(q, p, old < n ? old : n);
        free(p);
    }
    return q;
}

EXPORT int posix_memalign(void **out, size_t align, size_t n)
{
    if (align < sizeof(void *) || (align & (align - 1)) != 0)
        return EINVAL;
    if (align > 4096)
        return ENOMEM;
    void *p = align <= GRAIN ? malloc(n) : big_alloc(n, align);
    if (p == NULL)
        return ENOMEM;
    *out = p;
    return 0;
}

EXPORT void *aligned_alloc(size_t align, size_t n)
{
    void *p = NULL;
    int e = posix_memalign(&p, align, n);
    if (e != 0)
        errno = e;
    return p;
}

EXPORT void *memalign(size_t align, size_t n)
{
    return aligned_alloc(align, n);
}
