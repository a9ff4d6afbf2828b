/* region.c - the region map: which slabs of the address space are live spans.
 *
 * One flat array of codes (hak_abi.h), mapped read-only and without a memory
 * reserve when the first SuperSlab is made, so that it costs address space
 * only.  A map page becomes writable when a SuperSlab in the HAK_PAGE slabs
 * it covers (256 MiB of address space at 64 KiB slabs) is mapped; only those pages are
 * ever committed, and mprotect rather than a writable mapping keeps that true
 * under strict overcommit (vm.overcommit_memory=2), where MAP_NORESERVE is
 * ignored.
 */
#include <errno.h>
#include <sys/mman.h>

#include "internal.h"

struct hak_region_map hak_region;

#define MAP_PAGES (HAK_MAP_SLABS / HAK_PAGE)

/* Map pages made writable: read and written with the superslab lock held. */
static uint64_t map_page_writable[(MAP_PAGES + 63) / 64];

static bool map_codes(void)
{
    void *codes = mmap(NULL, HAK_MAP_SLABS, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (codes == MAP_FAILED)
        return false;
    hak_region.codes = codes;
    __atomic_store_n(&hak_region.slabs, HAK_MAP_SLABS, __ATOMIC_RELEASE);
    return true;
}

/* Make the codes of [start, start + len) writable, mapping the map first if
 * there is none.  Called with the superslab lock held; false with errno
 * ENOMEM when the kernel refuses. */
bool hak_region_reserve(uintptr_t start, size_t len)
{
    if (hak_region.slabs == 0 && !map_codes()) {
        errno = ENOMEM;
        return false;
    }
    uintptr_t first = (start >> HAK_SLAB_SHIFT) / HAK_PAGE;
    uintptr_t last = ((start + len - 1) >> HAK_SLAB_SHIFT) / HAK_PAGE;
    for (uintptr_t pg = first; pg <= last; pg++) {
        uint64_t bit = UINT64_C(1) << (pg % 64);
        if (map_page_writable[pg / 64] & bit)
            continue;
        if (mprotect((void *)(hak_region.codes + pg * HAK_PAGE), HAK_PAGE, PROT_READ | PROT_WRITE) != 0) {
            errno = ENOMEM;
            return false;
        }
        map_page_writable[pg / 64] |= bit;
    }
    return true;
}

void hak_region_set(uintptr_t start, size_t len, uint8_t code)
{
    uint8_t *codes = (uint8_t *)hak_region.codes;
    for (uintptr_t a = start; a < start + len; a += HAK_SLAB_BYTES)
        __atomic_store_n(&codes[a >> HAK_SLAB_SHIFT], code, __ATOMIC_RELEASE);
}
