/* region.c - the region map: which slabs of the address space are live spans. */
#include <errno.h>

#include "internal.h"

uint8_t hak_region_none[1u << HAK_MAP_LEAF_BITS];
uint8_t *hak_region_top[1u << HAK_MAP_TOP_BITS] = {
    [0 ... (1u << HAK_MAP_TOP_BITS) - 1] = hak_region_none,
};

#define LEAF_SHIFT (HAK_SLAB_SHIFT + HAK_MAP_LEAF_BITS) /* bytes of address space per leaf */

/* Make sure the leaves covering [start, start + len) exist.  Called with the
 * superslab lock held, so leaves are created by one thread at a time; readers
 * see either hak_region_none (not ours) or a complete, zeroed leaf. */
bool hak_region_reserve(uintptr_t start, size_t len)
{
    for (uintptr_t i = start >> LEAF_SHIFT; i <= (start + len - 1) >> LEAF_SHIFT; i++) {
        if (hak_region_top[i] != hak_region_none)
            continue;
        uint8_t *leaf = hak_os_map((size_t)1 << HAK_MAP_LEAF_BITS);
        if (leaf == NULL)
            return false;
        __atomic_store_n(&hak_region_top[i], leaf, __ATOMIC_RELEASE);
    }
    return true;
}

void hak_region_set(uintptr_t start, size_t len, uint8_t code)
{
    for (uintptr_t a = start; a < start + len; a += HAK_SLAB_BYTES)
        __atomic_store_n(&hak_region_top[a >> LEAF_SHIFT][(a >> HAK_SLAB_SHIFT) & HAK_MAP_LEAF_MASK],
                         code, __ATOMIC_RELEASE);
}
