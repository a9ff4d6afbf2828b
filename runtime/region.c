/* region.c - the region map: which slabs of the address space are live spans,
 * and where SuperSlabs are mapped, so that the map covers them.  Just below
 * the codes, in the same mapping, a read-only copy of hak_fast for free's
 * front (hak_fast_near, hak_abi.h).
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
 * GiB at 4 KiB), and that counts against RLIMIT_AS (ulimit -v).  So the whole
 * map is taken only where it is at most 1/16 of the limit (no limit: always).
 * Otherwise the map covers only the low part of the address space, [0, 2^k
 * slabs): the largest part whose map is at most 1/16 of the limit, but at
 * least the low 8 GiB (a 128 KiB map at 64 KiB slabs); and SuperSlabs are
 * placed there, from LOW_START up, where nothing else is mapped.  The free
 * fast path is the same either way: one compare against the slabs covered.
 */
#include <errno.h>
#include <string.h>
#include <sys/resource.h>

#include "internal.h"

struct hak_region_map hak_region;

#define MAP_PAGES (HAK_MAP_SLABS / HAK_PAGE)
/* Where SuperSlabs go when the map covers only the low part: above where a
 * program not built as PIE has its text and brk heap (from 4 MiB up). */
#define LOW_START ((uintptr_t)1 << 32)
#define LOW_MIN_SLABS ((2 * LOW_START) >> HAK_SLAB_SHIFT) /* the smallest low part */

/* Map pages made writable, by page of the map; the next place to try in the
 * low part.  Both read and written with the superslab lock held. */
static uint64_t map_page_writable[(MAP_PAGES + 63) / 64];
static uintptr_t low_next = LOW_START;

/* The slabs the map covers: all, or the low part that fits the limit. */
static uintptr_t slabs_to_cover(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY || HAK_MAP_SLABS <= rl.rlim_cur / 16)
        return HAK_MAP_SLABS;
    uintptr_t slabs = HAK_MAP_SLABS / 2;
    while (slabs > LOW_MIN_SLABS && slabs > rl.rlim_cur / 16)
        slabs /= 2;
    return slabs;
}

/* Map the codes, and below them the copy of hak_fast that free's front
 * reads (hak_fast_near); where even that fails, smaller low parts down to
 * the smallest. */
static bool map_codes(void)
{
    uintptr_t slabs = slabs_to_cover();
    char *base = hak_os_map_read_only(HAK_FAST_COPY_BYTES + slabs);
    while (base == NULL && slabs > LOW_MIN_SLABS)
        base = hak_os_map_read_only(HAK_FAST_COPY_BYTES + (slabs /= 2));
    if (base == NULL)
        return false;
    if (!hak_os_make_writable(base, HAK_FAST_COPY_BYTES)) {
        hak_os_unmap(base, HAK_FAST_COPY_BYTES + slabs);
        return false;
    }
    memcpy(base, &hak_fast, sizeof hak_fast);
    /* read-only again, as the const original; where the kernel refuses (the
     * map count: it splits the mapping) the copy stays writable, and right */
    (void)hak_os_make_read_only(base, HAK_FAST_COPY_BYTES);
    hak_region.codes = (const uint8_t *)(base + HAK_FAST_COPY_BYTES);
    __atomic_store_n(&hak_region.slabs, slabs, __ATOMIC_RELEASE);
    return true;
}

/* A SuperSlab in the low part the map covers, aligned to its size: the first
 * free place from low_next up, wrapping around to LOW_START once. */
static void *map_low(void)
{
    const uintptr_t last = (hak_region.slabs << HAK_SLAB_SHIFT) - HAK_SUPERSLAB_BYTES;
    const uintptr_t places = (last - LOW_START) / HAK_SUPERSLAB_BYTES + 1;
    uintptr_t a = low_next;
    for (uintptr_t i = 0; i < places; i++) {
        void *ss = hak_os_map_at(a, HAK_SUPERSLAB_BYTES);
        a = a == last ? LOW_START : a + HAK_SUPERSLAB_BYTES;
        if (ss != NULL) {
            low_next = a;
            return ss;
        }
        if (errno != EEXIST)
            return NULL; /* out of address space or memory */
    }
    return NULL;
}

/* Make the codes of [start, start + len), which the map covers, writable. */
static bool codes_writable(uintptr_t start, size_t len)
{
    uintptr_t first = start >> HAK_SLAB_SHIFT, last = (start + len - 1) >> HAK_SLAB_SHIFT;
    if (last >= hak_region.slabs)
        return false; /* mapped above 2^47 (a kernel with 5-level paging) */
    for (uintptr_t pg = first / HAK_PAGE; pg <= last / HAK_PAGE; pg++) {
        uint64_t bit = UINT64_C(1) << (pg % 64);
        if (map_page_writable[pg / 64] & bit)
            continue;
        if (!hak_os_make_writable((void *)(hak_region.codes + pg * HAK_PAGE), HAK_PAGE))
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

bool hak_region_unmap_superslab(void *ss)
{
    if (!hak_os_unmap(ss, HAK_SUPERSLAB_BYTES))
        return false;
    /* the low part: its place is the next to try, so that the map pages
     * already writable serve again */
    if ((uintptr_t)ss >= LOW_START && (uintptr_t)ss < low_next && hak_region.slabs != HAK_MAP_SLABS)
        low_next = (uintptr_t)ss;
    return true;
}

void hak_region_set(uintptr_t start, size_t len, uint8_t code)
{
    uint8_t *codes = (uint8_t *)hak_region.codes;
    for (uintptr_t a = start; a < start + len; a += HAK_SLAB_BYTES)
        __atomic_store_n(&codes[a >> HAK_SLAB_SHIFT], code, __ATOMIC_RELEASE);
}
