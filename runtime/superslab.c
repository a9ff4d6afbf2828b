/*
 * superslab.c - HAK_SUPERSLAB_BYTES regions from mmap, aligned to their size,
 * cut into spans.  The header (struct hak_superslab) fills the first
 * HAK_SS_HEADER_UNITS units; a span of k units starts at a multiple of k, so
 * free() finds a block's span by masking its address.  One lock guards the
 * list and every superslab's unit bitmap; it is taken only when a class needs
 * a new span or gives an empty one back.
 */
#include "internal.h"

static pthread_mutex_t ss_lock = PTHREAD_MUTEX_INITIALIZER;
static struct hak_superslab *ss_list;  /* every mapped superslab */
static unsigned ss_empty;              /* how many of them have no span */

#define SS_SPARE_EMPTY 1 /* fully empty superslabs kept mapped for reuse */

static bool unit_is_free(const struct hak_superslab *ss, unsigned i)
{
    return (ss->unit_free[i / 64] >> (i % 64)) & 1;
}

static void units_mark(struct hak_superslab *ss, unsigned first, unsigned k, bool free)
{
    for (unsigned i = first; i < first + k; i++) {
        uint64_t bit = UINT64_C(1) << (i % 64);
        if (free)
            ss->unit_free[i / 64] |= bit;
        else
            ss->unit_free[i / 64] &= ~bit;
    }
}

/* The first run of k free units starting at a multiple of k, or -1. */
static int find_run(const struct hak_superslab *ss, unsigned k)
{
    unsigned start = (unsigned)((HAK_SS_HEADER_UNITS + k - 1) / k * k);
    for (unsigned i = start; i + k <= HAK_SS_UNITS; i += k) {
        unsigned j = 0;
        while (j < k && unit_is_free(ss, i + j))
            j++;
        if (j == k)
            return (int)i;
    }
    return -1;
}

static struct hak_superslab *ss_map(void)
{
    struct hak_superslab *ss = hak_os_map_aligned(HAK_SUPERSLAB_BYTES, HAK_SUPERSLAB_BYTES);
    if (ss == NULL)
        return NULL;
    if (!hak_region_reserve((uintptr_t)ss, HAK_SUPERSLAB_BYTES)) {
        hak_os_unmap(ss, HAK_SUPERSLAB_BYTES);
        return NULL;
    }
    /* fresh mappings are zero: every span meta is empty, every live bit clear */
    ss->free_units = (uint32_t)(HAK_SS_UNITS - HAK_SS_HEADER_UNITS);
    units_mark(ss, HAK_SS_HEADER_UNITS, ss->free_units, true);
    ss->next = ss_list;
    ss_list = ss;
    ss_empty++;
    return ss;
}

static void ss_unmap(struct hak_superslab *dead)
{
    for (struct hak_superslab **pp = &ss_list; *pp; pp = &(*pp)->next) {
        if (*pp == dead) {
            *pp = dead->next;
            break;
        }
    }
    ss_empty--;
    hak_os_unmap(dead, HAK_SUPERSLAB_BYTES);
}

struct hak_span *hak_ss_span_alloc(unsigned cls)
{
    unsigned k = hak_class_info[cls].span_bytes / HAK_SLAB_BYTES;
    pthread_mutex_lock(&ss_lock);
    struct hak_superslab *ss;
    int first = -1;
    for (ss = ss_list; ss; ss = ss->next) {
        if (ss->free_units >= k && (first = find_run(ss, k)) >= 0)
            break;
    }
    if (ss == NULL) {
        ss = ss_map();
        if (ss == NULL) {
            pthread_mutex_unlock(&ss_lock);
            return NULL;
        }
        first = find_run(ss, k);
    }
    if (ss->free_units == HAK_SS_UNITS - HAK_SS_HEADER_UNITS)
        ss_empty--;
    units_mark(ss, (unsigned)first, k, false);
    ss->free_units -= k;
    struct hak_span *sp = &ss->span[first];
    *sp = (struct hak_span){.cls = (uint16_t)cls, .units = (uint16_t)k};
    hak_region_set((uintptr_t)hak_span_base(sp), (size_t)k * HAK_SLAB_BYTES, (uint8_t)(cls + 1));
    pthread_mutex_unlock(&ss_lock);
    return sp;
}

void hak_ss_span_free(struct hak_span *sp)
{
    struct hak_superslab *ss = hak_ss_of(sp);
    unsigned k = sp->units;
    pthread_mutex_lock(&ss_lock);
    hak_region_set((uintptr_t)hak_span_base(sp), (size_t)k * HAK_SLAB_BYTES, 0);
    units_mark(ss, (unsigned)(sp - ss->span), k, true);
    sp->units = 0;
    ss->free_units += k;
    if (ss->free_units == HAK_SS_UNITS - HAK_SS_HEADER_UNITS) {
        ss_empty++;
        if (ss_empty > SS_SPARE_EMPTY)
            ss_unmap(ss);
    }
    pthread_mutex_unlock(&ss_lock);
}

void hak_ss_lock_all(void)
{
    pthread_mutex_lock(&ss_lock);
}

void hak_ss_unlock_all(void)
{
    pthread_mutex_unlock(&ss_lock);
}
