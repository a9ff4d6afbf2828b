/*
 * superslab.c - HAK_SUPERSLAB_BYTES regions from mmap, aligned to their size,
 * cut into spans.  The header (struct hak_superslab) fills the first
 * HAK_SS_HEADER_UNITS units; a span of k units starts at a multiple of k, so
 * free() finds a block's span by masking its address.  One lock guards the
 * lists and every superslab's unit bitmaps; it is taken only when a heap needs
 * a new span or gives an empty one back, and by the purge.
 *
 * Memory goes back to the OS in two steps, each after HAK_DECAY_MS (decay.c
 * drives them): units of freed spans stay "dirty" (resident, fast to reuse)
 * until the purge madvises them away; a superslab with no span left is
 * unmapped (a moment later while a remote freer still reads a span header
 * in it: heap.c, mark_summary).  A unit reused before the purge costs no
 * page fault, so a new span takes dirty units before clean ones: spans that come and go (mid_mt:
 * a few thousand a second) then reuse resident memory instead of faulting in
 * clean units while the dirty ones pile up toward the cap.  Dirty units
 * are also capped (16 MiB, or an eighth of the units in spans): a program
 * that frees most of its memory at once gets it back at once, not after
 * the decay, and keeps what it reuses soon.  Where what the cap gave back
 * is faulted in again soon after, the cap's floor rises (cap_floor_units).
 *
 * With superslab.huge_pages (HAK_HUGE_PAGES) a superslab asks for transparent
 * huge pages when it is mapped; purging a unit of one splits it back into
 * small pages (the kernel may merge them again later).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/mman.h>

#include "internal.h"

static pthread_mutex_t ss_lock = PTHREAD_MUTEX_INITIALIZER;
static struct hak_superslab *ss_list; /* every mapped superslab */
static size_t ss_mapped;              /* how many */
/* The superslabs with free units, and those with dirty ones (a subset),
 * each the last to get some first: a new span looks only there.  It looked
 * through every superslab, twice when none had dirty units: by the time a
 * program had 1.5 GiB of small blocks out that was 7% of its time, growing
 * with the heap (bench/NOTES.md, "A new span finds its superslab"). */
enum { WITH_FREE, WITH_DIRTY };
static struct hak_superslab *with_units[2];
static size_t units_in_spans;         /* over all superslabs */
static size_t units_dirty;            /* over all superslabs: the sum of their dirty_units */

#define DIRTY_MIN_UNITS ((16u << 20) / HAK_SLAB_BYTES) /* 16 MiB of dirty units are always fine */

/* The cap's floor: DIRTY_MIN_UNITS, raised when a new span faults in clean
 * units within HAK_DECAY_MS of purges by the cap, by what they gave back
 * (at least doubled, at most the most units spans have held), and halved
 * for every HAK_DECAY_MS since.  A program that
 * frees all its blocks and takes them again, round after round, had every
 * round fault in again what the cap had given back the round before: 5000
 * blocks of 25-75 KB, 20 rounds, 1.5x tcmalloc's time (bench/NOTES.md, "The
 * cap learns what is taken again").  The decay gives it all back anyway. */
static size_t cap_floor_units = DIRTY_MIN_UNITS;
static uint64_t cap_raised_ms;
static uint64_t cap_purged_ms; /* when the cap last purged; 0: not since the last raise */
static size_t cap_purged_units; /* what it gave back since the last raise */
static size_t units_in_spans_peak;

static bool bit_get(const uint64_t *bits, unsigned i)
{
    return (bits[i / 64] >> (i % 64)) & 1;
}

static void bits_set(uint64_t *bits, unsigned first, unsigned k, bool value)
{
    for (unsigned i = first; i < first + k; i++) {
        uint64_t bit = UINT64_C(1) << (i % 64);
        if (value)
            bits[i / 64] |= bit;
        else
            bits[i / 64] &= ~bit;
    }
}

static void list_add(int l, struct hak_superslab *ss)
{
    ss->with[l].prev = NULL;
    ss->with[l].next = with_units[l];
    if (with_units[l] != NULL)
        with_units[l]->with[l].prev = ss;
    with_units[l] = ss;
}

static void list_remove(int l, struct hak_superslab *ss)
{
    struct hak_ss_link *k = &ss->with[l];
    if (k->prev != NULL)
        k->prev->with[l].next = k->next;
    else
        with_units[l] = k->next;
    if (k->next != NULL)
        k->next->with[l].prev = k->prev;
}

/* Set ss's counts of free and dirty units, and with them its place on the
 * lists: on each while it has units of that kind. */
static void set_units(struct hak_superslab *ss, uint32_t free_units, uint32_t dirty_units)
{
    if ((ss->free_units != 0) != (free_units != 0))
        (free_units != 0 ? list_add : list_remove)(WITH_FREE, ss);
    if ((ss->dirty_units != 0) != (dirty_units != 0))
        (dirty_units != 0 ? list_add : list_remove)(WITH_DIRTY, ss);
    ss->free_units = free_units;
    ss->dirty_units = dirty_units;
}

static size_t cap_floor(uint64_t now)
{
    if (HAK_DECAY_MS == 0 || cap_floor_units <= DIRTY_MIN_UNITS)
        return DIRTY_MIN_UNITS;
    /* never 0 here; the divisor says so for a decay_ms: 0 build's compiler */
    uint64_t halvings = now > cap_raised_ms ? (now - cap_raised_ms) / (HAK_DECAY_MS ? HAK_DECAY_MS : 1) : 0;
    size_t least = halvings < 32 ? cap_floor_units >> halvings : 0;
    return least > DIRTY_MIN_UNITS ? least : DIRTY_MIN_UNITS;
}

/* A new span faults in clean units: if the cap purged within HAK_DECAY_MS,
 * what it gave back is wanted again, and its floor rises by that much. */
static void cap_refaulted(void)
{
    uint64_t now = hak_now_ms();
    if (!hak_decay_is_due(now, cap_purged_ms)) {
        size_t least = cap_floor(now);
        size_t raised = least + (cap_purged_units > least ? cap_purged_units : least);
        cap_floor_units = raised < units_in_spans_peak ? raised : units_in_spans_peak;
        cap_raised_ms = now;
    }
    cap_purged_ms = 0;
    cap_purged_units = 0;
}

static bool ss_is_empty(const struct hak_superslab *ss)
{
    return ss->free_units == HAK_SS_UNITS - HAK_SS_HEADER_UNITS;
}

/* The first run of k units starting at a multiple of k whose bits are all
 * set in `bits` (unit_free, or unit_dirty: free and still resident), or -1. */
static int find_run(const uint64_t *bits, unsigned k)
{
    unsigned start = (unsigned)((HAK_SS_HEADER_UNITS + k - 1) / k * k);
    for (unsigned i = start; i + k <= HAK_SS_UNITS; i += k) {
        unsigned j = 0;
        while (j < k && bit_get(bits, i + j))
            j++;
        if (j == k)
            return (int)i;
    }
    return -1;
}

/* Where a span of k units goes: a run of dirty units if any superslab has
 * one (resident memory: no page faults, and the dirty units it uses up are
 * ones the cap would otherwise purge), else the first run of free units. */
static struct hak_superslab *find_span_run(unsigned k, int *first)
{
    for (struct hak_superslab *ss = with_units[WITH_DIRTY]; ss; ss = ss->with[WITH_DIRTY].next)
        if (ss->dirty_units >= k && (*first = find_run(ss->unit_dirty, k)) >= 0)
            return ss;
    for (struct hak_superslab *ss = with_units[WITH_FREE]; ss; ss = ss->with[WITH_FREE].next)
        if (ss->free_units >= k && (*first = find_run(ss->unit_free, k)) >= 0)
            return ss;
    return NULL;
}

static struct hak_superslab *ss_map(void)
{
    struct hak_superslab *ss = hak_region_map_superslab(); /* its codes writable */
    if (ss == NULL)
        return NULL;
#if HAK_HUGE_PAGES
    /* superslab.huge_pages: transparent huge pages for the whole region (it is
     * aligned to its size, whole huge pages): one TLB entry per 2 MiB instead
     * of 512, but each huge page is resident from its first touch.  Where the
     * kernel has no THP the call fails and the region keeps small pages. */
    madvise(ss, HAK_SUPERSLAB_BYTES, MADV_HUGEPAGE);
#endif
    /* fresh mappings are zero: every span meta is empty, every live bit clear */
    set_units(ss, (uint32_t)(HAK_SS_UNITS - HAK_SS_HEADER_UNITS), 0);
    bits_set(ss->unit_free, HAK_SS_HEADER_UNITS, ss->free_units, true);
    ss->next = ss_list;
    ss_list = ss;
    ss_mapped++;
    HAK_STAT(hak_stats_superslabs_mapped++);
    return ss;
}

struct hak_span *hak_ss_span_alloc(unsigned cls)
{
    /* a span had leaves errno as it was, whatever mapping set on the way (a
     * place in the low part found taken: EEXIST; a map failed before the
     * reclaim: ENOMEM): the malloc it is for succeeds */
    int saved_errno = errno;
    unsigned k = hak_class_info[cls].span_bytes / HAK_SLAB_BYTES;
    hak_lock(&ss_lock);
    struct hak_superslab *ss;
    int first = -1;
    ss = find_span_run(k, &first);
    if (ss == NULL) {
        ss = ss_map();
        if (ss == NULL) {
            /* out of address space or memory: give back every free page and
             * empty superslab now (not decay_ms later), and the spans that
             * blocks parked or abandoned held, and try once more: a span
             * freed in a superslab still mapped is room too */
            hak_unlock(&ss_lock);
            hak_decay_reclaim_all();
            hak_lock(&ss_lock);
            ss = find_span_run(k, &first);
            if (ss == NULL)
                ss = ss_map();
        }
        if (ss == NULL) {
            hak_unlock(&ss_lock);
            return NULL;
        }
        if (first < 0)
            first = find_run(ss->unit_free, k);
    }
    unsigned reused_dirty = 0;
    for (unsigned i = (unsigned)first; i < (unsigned)first + k; i++)
        reused_dirty += bit_get(ss->unit_dirty, i);
    set_units(ss, ss->free_units - k, ss->dirty_units - reused_dirty);
    units_dirty -= reused_dirty;
    units_in_spans += k;
    if (units_in_spans > units_in_spans_peak)
        units_in_spans_peak = units_in_spans;
    if (reused_dirty < k && cap_purged_ms != 0)
        cap_refaulted();
    bits_set(ss->unit_free, (unsigned)first, k, false);
    bits_set(ss->unit_dirty, (unsigned)first, k, false);
    struct hak_span *sp = &ss->span[first];
    /* the owner's fields; a late remote freer of the span that had these
     * units may still load `owner` (heap.c, mark_summary): atomics there */
    sp->carved = sp->scan = sp->used = 0;
    sp->cls = (uint16_t)cls;
    sp->units = (uint16_t)k;
    sp->list = 0; /* on no list (heap.c's LIST_NONE) */
    sp->next = sp->prev = NULL;
    __atomic_store_n(&sp->remote_words, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&sp->owner, NULL, __ATOMIC_RELAXED);
    hak_region_set((uintptr_t)hak_span_base(sp), (size_t)k * HAK_SLAB_BYTES, (uint8_t)(cls + 1));
    hak_unlock(&ss_lock);
    errno = saved_errno;
    return sp;
}

/* madvise away the dirty free units of ss (runs of them, one call each). */
static size_t purge_units(struct hak_superslab *ss)
{
    size_t released = 0;
    for (unsigned i = HAK_SS_HEADER_UNITS; i < HAK_SS_UNITS;) {
        if (!bit_get(ss->unit_dirty, i)) {
            i++;
            continue;
        }
        unsigned j = i;
        while (j < HAK_SS_UNITS && bit_get(ss->unit_dirty, j))
            j++;
        madvise((char *)ss + (size_t)i * HAK_SLAB_BYTES, (size_t)(j - i) * HAK_SLAB_BYTES,
                MADV_DONTNEED);
        bits_set(ss->unit_dirty, i, j - i, false);
        released += (size_t)(j - i) * HAK_SLAB_BYTES;
        i = j;
    }
    units_dirty -= ss->dirty_units;
    set_units(ss, ss->free_units, 0);
    return released;
}

/* Dirty units over the cap: purge whole superslabs' dirty units, emptiest
 * first (their units are the least likely to be reused soon), until under
 * half the cap.  Called with the lock held. */
static void purge_over_cap(size_t least, uint64_t now)
{
    size_t target = units_in_spans / 16 > least / 2 ? units_in_spans / 16 : least / 2;
    if (hak_decay_is_due(now, cap_purged_ms))
        cap_purged_units = 0; /* an older episode's */
    cap_purged_ms = now ? now : 1;
    cap_purged_units += units_dirty - target;
    while (units_dirty > target) {
        struct hak_superslab *pick = NULL;
        for (struct hak_superslab *ss = with_units[WITH_DIRTY]; ss; ss = ss->with[WITH_DIRTY].next)
            if (!pick || ss->free_units > pick->free_units)
                pick = ss;
        if (pick == NULL)
            return;
        purge_units(pick);
    }
}

void hak_ss_span_free(struct hak_span *sp)
{
    struct hak_superslab *ss = hak_ss_of(sp);
    unsigned k = sp->units, first = (unsigned)(sp - ss->span);
    uint64_t now = hak_now_ms();
    hak_lock(&ss_lock);
    hak_region_set((uintptr_t)hak_span_base(sp), (size_t)k * HAK_SLAB_BYTES, 0);
    bits_set(ss->unit_free, first, k, true);
    bits_set(ss->unit_dirty, first, k, true);
    sp->units = 0;
    if (ss->dirty_units == 0)
        ss->dirty_since = now;
    set_units(ss, ss->free_units + k, ss->dirty_units + k);
    units_dirty += k;
    units_in_spans -= k;
    if (ss_is_empty(ss))
        ss->empty_since = now;
    size_t least = cap_floor(now);
    if (units_dirty > least && units_dirty > units_in_spans / 8)
        purge_over_cap(least, now);
    size_t dirty = units_dirty * HAK_SLAB_BYTES;
    hak_unlock(&ss_lock);
    hak_decay_note(HAK_DECAY_SS, dirty);
}

/* A pass: dirty units given back once due, empty superslabs unmapped once
 * due.  Not at the map limit (os.c): there the kernel may refuse, and what
 * it unmaps may not be had again (past the limit every mmap fails: a
 * program that freed its small blocks and trimmed then failed a third of
 * them in its next round), so empty superslabs stay for the next spans,
 * their pages given back, as a refused one does. */
size_t hak_ss_purge(uint64_t now, bool all, uint64_t *next_ms)
{
    size_t released = 0;
    hak_lock(&ss_lock);
    for (struct hak_superslab **pp = &ss_list; *pp;) {
        struct hak_superslab *ss = *pp;
        bool unmapping = ss_is_empty(ss) && !hak_os_at_map_limit();
        if (unmapping && (all || hak_decay_is_due(now, ss->empty_since))) {
            struct hak_superslab *next = ss->next;
            uint32_t free_units = ss->free_units, dirty_units = ss->dirty_units;
            if (hak_heap_marking(ss)) {
                /* a remote freer is reading a span header of it (heap.c,
                 * mark_summary): a moment later */
                if (now + 1 < *next_ms)
                    *next_ms = now + 1;
            } else {
                set_units(ss, 0, 0); /* off the lists: they run through its header */
                if (hak_region_unmap_superslab(ss)) {
                    *pp = next;
                    ss_mapped--;
                    units_dirty -= dirty_units; /* gone with it */
                    released += HAK_SUPERSLAB_BYTES;
                    HAK_STAT(hak_stats_superslabs_returned++);
                    continue;
                }
                set_units(ss, free_units, dirty_units);
                unmapping = false; /* refused: at the limit from now on */
            }
        }
        if (ss->dirty_units != 0) {
            if (all || hak_decay_is_due(now, ss->dirty_since))
                released += purge_units(ss);
            else
                hak_decay_due(next_ms, ss->dirty_since);
        }
        if (unmapping)
            hak_decay_due(next_ms, ss->empty_since); /* to unmap later */
        pp = &ss->next;
    }
    hak_unlock(&ss_lock);
    return released;
}

/* mallinfo: what the superslabs hold, in bytes (struct hak_usage). */
void hak_ss_usage(struct hak_usage *u)
{
    hak_lock(&ss_lock);
    u->ss_mapped += ss_mapped * HAK_SUPERSLAB_BYTES;
    u->ss_in_spans = units_in_spans * HAK_SLAB_BYTES;
    u->ss_dirty = units_dirty * HAK_SLAB_BYTES;
    hak_unlock(&ss_lock);
}

/* Whether a purge has work here: dirty units, or an empty superslab to
 * unmap.  The caller holds the lock (the fork child holds them all). */
bool hak_ss_purgeable_locked(void)
{
    if (units_dirty != 0)
        return true;
    for (const struct hak_superslab *ss = ss_list; ss; ss = ss->next)
        if (ss_is_empty(ss))
            return true;
    return false;
}

/* Whether the lists agree with the counts: a superslab is on the list of
 * those with free (dirty) units exactly while it has some, each list is
 * linked both ways, and ss_mapped is the length of ss_list.  For tests. */
bool hak_ss_lists_valid(void)
{
    hak_lock(&ss_lock);
    size_t n = 0, having[2] = {0, 0};
    for (const struct hak_superslab *ss = ss_list; ss; ss = ss->next) {
        n++;
        having[WITH_FREE] += ss->free_units != 0;
        having[WITH_DIRTY] += ss->dirty_units != 0;
    }
    bool ok = n == ss_mapped;
    for (int l = WITH_FREE; l <= WITH_DIRTY && ok; l++) {
        size_t listed = 0;
        const struct hak_superslab *prev = NULL;
        for (const struct hak_superslab *ss = with_units[l]; ss && ok; prev = ss, ss = ss->with[l].next)
            ok = ss->with[l].prev == prev && (l == WITH_FREE ? ss->free_units : ss->dirty_units) != 0 &&
                 ++listed <= n;
        ok = ok && listed == having[l];
    }
    hak_unlock(&ss_lock);
    return ok;
}

void hak_ss_lock_all(void)
{
    hak_lock(&ss_lock);
}

void hak_ss_unlock_all(void)
{
    hak_unlock(&ss_lock);
}
