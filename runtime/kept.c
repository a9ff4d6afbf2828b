/*
 * kept.c - address ranges hakmem holds, with their pages given back, because
 * the kernel would not unmap them or may not map them again.
 *
 * At the kernel's map count (vm.max_map_count) munmap fails where it would
 * cut a mapping in two, and the kernel merges neighbouring anonymous
 * mappings: a large block freed between two still mapped is such a cut.
 * And once the count is past the limit (munmap may take it one past) every
 * mmap fails, so address space given back is not had again.  large.c then
 * keeps its freed ranges here for good (os.c's hak_os_at_map_limit), and
 * takes from them before any mmap: its blocks, and its own table.
 *
 * The ranges are recorded out of band, so they cost no memory of their own
 * (a record in each range's first page kept a page of every range resident),
 * in an array sorted by address: a range added next to one held merges with
 * it, so that a run of freed blocks serves a request larger than any of
 * them (without that, 2000 freed blocks of 64 KiB, 59 MiB in one run, failed
 * nearly every request above 64 KiB).  A request takes the smallest range
 * that fits, cut to its size.  Both are a walk of the array, at the limit
 * only, where each saves an mmap that would fail.
 *
 * The array starts in a static block (untouched, so not resident, until the
 * first range comes); grown, it is mapped, or taken from a kept range when
 * the kernel maps nothing more.  Called with large.c's lock held.
 */
#include <string.h>

#include "internal.h"

struct kept_range {
    uintptr_t base;
    size_t len;
    bool dirty; /* its pages could not be given back (mlock): they may not read zero */
};

#define KEPT_STATIC 256

static struct kept_range kept_static[KEPT_STATIC];
static struct kept_range *kept = kept_static;
static size_t kept_n, kept_cap = KEPT_STATIC;
static size_t kept_mem_bytes; /* the array's pages, once it is no longer kept_static */
static size_t kept_count; /* atomic copy of kept_n: read without the lock */

size_t hak_kept_count(void)
{
    return __atomic_load_n(&kept_count, __ATOMIC_RELAXED);
}

static void set_n(size_t n)
{
    kept_n = n;
    __atomic_store_n(&kept_count, n, __ATOMIC_RELAXED);
}

/* The index of the first range above addr (binary search). */
static size_t index_above(uintptr_t addr)
{
    size_t lo = 0, hi = kept_n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (kept[mid].base <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Room for one more range: the array doubled, from a new mapping or from
 * the ranges themselves; false when neither has room. */
static bool grow(void)
{
    size_t cap = 2 * kept_cap;
    size_t bytes = (cap * sizeof *kept + HAK_PAGE - 1) & ~(size_t)(HAK_PAGE - 1);
    uintptr_t mem = (uintptr_t)hak_os_map(bytes);
    bool dirty = false;
    if (mem == 0 && !hak_kept_take(bytes, &mem, &dirty))
        return false;
    memcpy((void *)mem, kept, kept_n * sizeof *kept);
    struct kept_range *old = kept;
    size_t old_bytes = kept_mem_bytes;
    kept = (struct kept_range *)mem;
    kept_cap = bytes / sizeof *kept;
    kept_mem_bytes = bytes;
    if (old != kept_static) /* kept in turn (room enough now) */
        hak_kept_add((uintptr_t)old, old_bytes, !hak_os_release(old, old_bytes));
    return true;
}

void hak_kept_add(uintptr_t base, size_t len, bool dirty)
{
    size_t i = index_above(base);
    bool joins_prev = i > 0 && kept[i - 1].base + kept[i - 1].len == base;
    bool joins_next = i < kept_n && base + len == kept[i].base;
    if (joins_prev && joins_next) { /* fills the gap between two: one range */
        kept[i - 1].len += len + kept[i].len;
        kept[i - 1].dirty |= dirty || kept[i].dirty;
        memmove(&kept[i], &kept[i + 1], (kept_n - i - 1) * sizeof *kept);
        set_n(kept_n - 1);
    } else if (joins_prev) {
        kept[i - 1].len += len;
        kept[i - 1].dirty |= dirty;
    } else if (joins_next) {
        kept[i].base = base;
        kept[i].len += len;
        kept[i].dirty |= dirty;
    } else if (kept_n == kept_cap) {
        if (grow()) /* which may have changed the neighbours: again */
            hak_kept_add(base, len, dirty);
        /* else no room even in the ranges held: its addresses are lost */
    } else {
        memmove(&kept[i + 1], &kept[i], (kept_n - i) * sizeof *kept);
        kept[i] = (struct kept_range){base, len, dirty};
        set_n(kept_n + 1);
    }
}

bool hak_kept_take(size_t len, uintptr_t *base, bool *dirty)
{
    size_t best = kept_n;
    for (size_t i = 0; i < kept_n; i++)
        if (kept[i].len >= len && (best == kept_n || kept[i].len < kept[best].len)) {
            best = i;
            if (kept[i].len == len)
                break;
        }
    if (best == kept_n)
        return false;
    *base = kept[best].base;
    *dirty = kept[best].dirty;
    if (kept[best].len > len) { /* the rest stays, in its place in the order */
        kept[best].base += len;
        kept[best].len -= len;
    } else {
        memmove(&kept[best], &kept[best + 1], (kept_n - best - 1) * sizeof *kept);
        set_n(kept_n - 1);
    }
    return true;
}
