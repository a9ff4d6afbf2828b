/* region.c - the region map: which slabs of the address space are live spans,
 * and the address space SuperSlabs are mapped in, so that the map covers them.
 *
 * One flat array of codes (hak_abi.h), mapped read-only and without a memory
 * reserve before the first SuperSlab is made, so that it commits no memory.
 * A map page becomes writable when a SuperSlab in the HAK_PAGE slabs it
 * covers (256 MiB of address space at 64 KiB slabs) is mapped; only those
 * pages are ever committed, and mprotect rather than a writable mapping keeps
 * that true under strict overcommit (vm.overcommit_memory=2), where
 * MAP_NORESERVE is ignored.
 *
 * Address space is not free: the whole map is 2 GiB of it at 64 KiB slabs (32
 * GiB at 4 KiB), and it counts against RLIMIT_AS (ulimit -v).  Where it
 * cannot be mapped, the map covers only the low part of the address space,
 * [0, 2^k slabs), the largest of 1/2, 1/4 ... 1/2048 of it (64 TiB down to
 * 64 GiB) whose map fits in 1/16 of the limit, and SuperSlabs are placed
 * there, from LOW_START up, with MAP_FIXED_NOREPLACE.  The free fast path is
 * the same either way: one compare against the number of slabs covered.
 */
#include <errno.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include "internal.h"

struct hak_region_map hak_region;

#define MAP_PAGES (HAK_MAP_SLABS / HAK_PAGE)
#define WINDOW_MIN (HAK_MAP_SLABS >> 11) /* the smallest low part tried, in slabs */
/* Where SuperSlabs go when the map covers only the low part: above where a
 * program not built as PIE has its text and brk heap (from 4 MiB up). */
#define LOW_START ((uintptr_t)1 << 32)

/* Map pages made writable, by page of the map; the next low address to try.
 * Both read and written with the superslab lock held. */
static uint64_t map_page_writable[(MAP_PAGES + 63) / 64];
static uintptr_t low_next = LOW_START;

static void *map_read_only(size_t len)
{
    void *p = mmap(NULL, len, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    madvise(p, len, MADV_DONTDUMP); /* a core file need not hold gigabytes of zeros */
    return p;
}

/* The first low part to try when the whole map cannot be mapped: at most
 * 1/16 of the address-space limit, so that the map leaves the program the
 * rest. */
static uintptr_t first_low_part(void)
{
    struct rlimit rl;
    uintptr_t slabs = HAK_MAP_SLABS / 2;
    if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        while (slabs > WINDOW_MIN && slabs > rl.rlim_cur / 16)
            slabs /= 2;
    return slabs;
}

/* Map the codes, all of the address space or its low part. */
static bool map_codes(void)
{
    uintptr_t slabs = HAK_MAP_SLABS;
    void *codes = map_read_only(slabs);
    for (uintptr_t low = first_low_part(); codes == NULL && low >= WINDOW_MIN; low /= 2)
        codes = map_read_only(slabs = low);
    if (codes == NULL)
        return false;
    hak_region.codes = codes;
    __atomic_store_n(&hak_region.slabs, slabs, __ATOMIC_RELEASE);
    return true;
}

/* A SuperSlab in the low part the map covers: the first free aligned place
 * from low_next up, then from LOW_START up to low_next. */
static void *map_low(void)
{
    const uintptr_t top = (hak_region.slabs << HAK_SLAB_SHIFT) - HAK_SUPERSLAB_BYTES;
    for (int pass = 0; pass < 2; pass++) {
        uintptr_t end = pass == 0 ? top : low_next;
        for (uintptr_t a = pass == 0 ? low_next : LOW_START; a <= end; a += HAK_SUPERSLAB_BYTES) {
            void *p = mmap((void *)a, HAK_SUPERSLAB_BYTES, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
            if (p == (void *)a) {
                low_next = a + HAK_SUPERSLAB_BYTES;
                return p;
            }
            if (p != MAP_FAILED) /* a kernel before 4.17 took the flag as a hint */
                munmap(p, HAK_SUPERSLAB_BYTES);
            else if (errno != EEXIST)
                return NULL; /* out of address space or memory */
        }
    }
    return NULL;
}

/* Make the codes of [start, start + len), which the map covers, writable. */
static bool codes_writable(uintptr_t start, size_t len)
{
    uintptr_t first = start >> HAK_SLAB_SHIFT, last = (start + len - 1) >> HAK_SLAB_SHIFT;
    if (last >= hak_region.slabs)
        return false; /* a kernel that maps above 2^47, or above the low part */
    for (uintptr_t pg = first / HAK_PAGE; pg <= last / HAK_PAGE; pg++) {
        uint64_t bit = UINT64_C(1) << (pg % 64);
        if (map_page_writable[pg / 64] & bit)
            continue;
        if (mprotect((void *)(hak_region.codes + pg * HAK_PAGE), HAK_PAGE, PROT_READ | PROT_WRITE) != 0)
            return false;
        map_page_writable[pg / 64] |= bit;
    }
    return true;
}

void *hak_region_map_superslab(void)
{
    if (hak_region.slabs == 0 && !map_codes())
        goto fail;
    void *ss = hak_region.slabs == HAK_MAP_SLABS ? hak_os_map_aligned(HAK_SUPERSLAB_BYTES, HAK_SUPERSLAB_BYTES)
                                                 : map_low();
    if (ss == NULL)
        goto fail;
    if (codes_writable((uintptr_t)ss, HAK_SUPERSLAB_BYTES))
        return ss;
    hak_os_unmap(ss, HAK_SUPERSLAB_BYTES);
fail:
    errno = ENOMEM;
    return NULL;
}

void hak_region_set(uintptr_t start, size_t len, uint8_t code)
{
    uint8_t *codes = (uint8_t *)hak_region.codes;
    for (uintptr_t a = start; a < start + len; a += HAK_SLAB_BYTES)
        __atomic_store_n(&codes[a >> HAK_SLAB_SHIFT], code, __ATOMIC_RELEASE);
}
