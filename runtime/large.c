/*
 * large.c - requests above the largest class: one mmap'd span each.
 *
 * Spans are recorded out of band, in an open-addressing table keyed by the
 * address handed out, so free() of any pointer can be checked without reading
 * the memory it points to.  Freed spans are kept in a small cache (at most
 * HAK_LARGE_CACHE_BYTES of address space) and reused by a later request of
 * about the same size: that saves the mmap, the munmap and the page faults of
 * touching fresh pages; they are unmapped after HAK_DECAY_MS (decay.c).  At
 * the kernel's map count, ranges are kept instead, their pages given back,
 * and serve requests before any mmap (kept.c).  One lock guards table,
 * cache and kept ranges; every call that takes it also makes a system call
 * or avoids one, which costs far more.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>

#include "internal.h"

struct span {
    uintptr_t user;    /* the address handed out; 0: empty slot */
    uintptr_t base;    /* the mapping */
    size_t len;
    uint64_t freed_ms; /* in the cache: when it was freed */
};

#define CACHE_SLOTS 32

static pthread_mutex_t large_lock = PTHREAD_MUTEX_INITIALIZER;
static struct span *table;
static size_t table_cap, table_used;
static struct span cache[CACHE_SLOTS]; /* oldest first; .user unused */
static unsigned cache_count;
static size_t cache_bytes;
/* The addresses of the last blocks freed, for the reports only */
#define FREED_RECENT 64
static uintptr_t freed_recent[FREED_RECENT];
static unsigned freed_next;

/* Unmap a range that is no longer a span, or keep it (kept.c): at the map
 * limit, or where the kernel refuses.  Whether to try is told under no
 * lock; the keeping is done under it (`locked`: the caller holds it). */
static void unmap_or_keep(uintptr_t base, size_t len, bool locked)
{
    if (!hak_os_at_map_limit() && hak_os_unmap((void *)base, len))
        return;
    bool dirty = !hak_os_release((void *)base, len);
    if (!locked)
        hak_lock(&large_lock);
    hak_kept_add(base, len, dirty);
    if (!locked)
        hak_unlock(&large_lock);
}

/* Unmap (or keep) spans taken out of the cache, after dropping the lock; their bytes. */
static size_t unmap_spans(const struct span *s, unsigned n)
{
    size_t bytes = 0;
    for (unsigned i = 0; i < n; i++) {
        unmap_or_keep(s[i].base, s[i].len, false);
        bytes += s[i].len;
    }
    return bytes;
}

/* A kept range of len bytes as span *s (lock held); *dirty: bytes from its
 * base that may not read zero.  false: none fits. */
static bool take_kept(size_t len, struct span *s, size_t *dirty)
{
    uintptr_t base;
    bool locked_pages;
    if (!hak_kept_take(len, &base, &locked_pages))
        return false;
    *s = (struct span){.base = base, .len = len};
    *dirty = locked_pages ? len : 0;
    return true;
}

static size_t slot_of(uintptr_t user, size_t cap)
{
    return (size_t)((user >> 12) * UINT64_C(0x9E3779B97F4A7C15) >> 17) & (cap - 1);
}

static struct span *find(uintptr_t user)
{
    if (table_cap == 0)
        return NULL;
    for (size_t i = slot_of(user, table_cap);; i = (i + 1) & (table_cap - 1)) {
        if (table[i].user == user)
            return &table[i];
        if (table[i].user == 0)
            return NULL;
    }
}

/* Live spans and their bytes, and the most of each at once (mallinfo2,
 * malloc_stats); the lock guards them. */
static size_t live_count, live_bytes, max_count, max_bytes;

/* Make room for an insert: a table twice the size, mapped, or at the map
 * limit taken from the kept ranges (where no mmap succeeds, a table that
 * could not grow failed every large malloc from then on). */
static bool grow(void)
{
    size_t cap = table_cap == 0 ? 1024 : table_cap * 2;
    size_t bytes = cap * sizeof(struct span);
    struct span *t = hak_os_map(bytes);
    if (t == NULL) {
        uintptr_t base;
        bool dirty;
        if (!hak_kept_take(bytes, &base, &dirty))
            return false;
        t = memset((void *)base, 0, bytes); /* empty slots */
    }
    for (size_t i = 0; i < table_cap; i++) {
        if (table[i].user == 0)
            continue;
        size_t j = slot_of(table[i].user, cap);
        while (t[j].user)
            j = (j + 1) & (cap - 1);
        t[j] = table[i];
    }
    if (table)
        unmap_or_keep((uintptr_t)table, table_cap * sizeof *table, true);
    table = t;
    table_cap = cap;
    return true;
}

static void count_live(ptrdiff_t spans, ptrdiff_t bytes)
{
    live_count += (size_t)spans;
    live_bytes += (size_t)bytes;
    if (live_count > max_count)
        max_count = live_count;
    if (live_bytes > max_bytes)
        max_bytes = live_bytes;
}

static bool insert(struct span s)
{
    if ((table_used + 1) * 2 > table_cap && !grow())
        return false;
    size_t i = slot_of(s.user, table_cap);
    while (table[i].user != 0)
        i = (i + 1) & (table_cap - 1);
    table_used++;
    table[i] = s;
    count_live(1, (ptrdiff_t)s.len);
    return true;
}

/* Span s is no longer live.  Its slot is emptied and the entries after it
 * in its run moved back where their probe would stop short of them (linear
 * probing's deletion without markers: the table holds only live spans, so
 * it never grows for addresses freed long ago). */
static void delete(struct span *s)
{
    count_live(-1, -(ptrdiff_t)s->len);
    size_t mask = table_cap - 1, hole = (size_t)(s - table);
    for (size_t j = (hole + 1) & mask; table[j].user != 0; j = (j + 1) & mask) {
        size_t home = slot_of(table[j].user, table_cap);
        /* j stays if its home lies cyclically in (hole, j] */
        bool stays = hole < j ? hole < home && home <= j : hole < home || home <= j;
        if (!stays) {
            table[hole] = table[j];
            hole = j;
        }
    }
    table[hole].user = 0;
    table_used--;
}

static void cache_remove(unsigned i)
{
    cache_bytes -= cache[i].len;
    memmove(&cache[i], &cache[i + 1], (cache_count - i - 1) * sizeof *cache);
    cache_count--;
}

/*
 * Reuse cached pages for a request of len bytes; they are resident, so the
 * program touches them without page faults.  The smallest cached span of at
 * least len serves it (what it has beyond twice len stays cached, split off);
 * failing that, the largest smaller one, to be grown by mremap (*grow): its
 * pages stay, only the extension is new.  false: nothing cached.
 */
static bool cache_take(size_t len, struct span *out, bool *grow)
{
    int fit = -1, below = -1;
    for (unsigned i = 0; i < cache_count; i++) {
        if (cache[i].len >= len && (fit < 0 || cache[i].len < cache[fit].len))
            fit = (int)i;
        if (cache[i].len < len && (below < 0 || cache[i].len > cache[below].len))
            below = (int)i;
    }
    *grow = fit < 0;
    if (fit < 0 && below < 0)
        return false;
    unsigned i = (unsigned)(fit >= 0 ? fit : below);
    *out = cache[i];
    if (fit >= 0 && cache[i].len > 2 * len) { /* split: the tail stays cached */
        out->len = len;
        cache[i].base += len;
        cache[i].len -= len;
        cache_bytes -= len;
    } else {
        cache_remove(i);
    }
    return true;
}

/* Keep a freed mapping, merged with a cached neighbour (address ranges, not
 * mappings, are what the cache holds, so a split-off tail can rejoin); the
 * evicted ones are returned in *evict (their count returned).  A merged
 * range is as old as its oldest part, and takes its place in the cache's
 * order (oldest first): had it the time of the last free, a program taking
 * a small part of a large cached range now and then, and giving it back,
 * would keep the whole range from ever being due. */
static unsigned cache_put(struct span s, struct span *evict)
{
    unsigned n = 0;
    for (unsigned i = 0; i < cache_count;) {
        if (cache[i].base + cache[i].len == s.base || s.base + s.len == cache[i].base) {
            s.base = s.base < cache[i].base ? s.base : cache[i].base;
            s.len += cache[i].len;
            if (cache[i].freed_ms < s.freed_ms)
                s.freed_ms = cache[i].freed_ms;
            cache_remove(i);
            continue;
        }
        i++;
    }
    if (s.len > HAK_LARGE_CACHE_BYTES) {
        evict[n++] = s;
        return n;
    }
    while (cache_count == CACHE_SLOTS || cache_bytes + s.len > HAK_LARGE_CACHE_BYTES) {
        evict[n++] = cache[0];
        cache_remove(0);
    }
    unsigned at = cache_count;
    for (; at > 0 && cache[at - 1].freed_ms > s.freed_ms; at--)
        cache[at] = cache[at - 1];
    cache[at] = s;
    cache_count++;
    cache_bytes += s.len;
    return n;
}

void *hak_large_alloc(size_t n, size_t align, bool zero)
{
    int saved_errno = errno; /* a success leaves it alone (a map failed before the reclaim) */
    hak_thread_poll(); /* an allocation slow path: what waits to be purged goes, in time */
    if (align < HAK_PAGE)
        align = HAK_PAGE;
    /* n + align + a page must stay below PTRDIFF_MAX; compared in unsigned
     * arithmetic, so an alignment above it must be refused first (2^63 made
     * the bound wrap, and len below with it, to a few pages) */
    if (align > (size_t)PTRDIFF_MAX / 2 || n > (size_t)PTRDIFF_MAX - align - HAK_PAGE) {
        errno = ENOMEM;
        return NULL;
    }
    size_t len = (n + align - 1 + HAK_PAGE - 1) & ~(size_t)(HAK_PAGE - 1); /* room to align */
    if (align == HAK_PAGE)
        len = (n + HAK_PAGE - 1) & ~(size_t)(HAK_PAGE - 1);
    if (len == 0)
        len = HAK_PAGE;
    struct span s;
    bool grow;
    hak_lock(&large_lock);
    bool reused = cache_take(len, &s, &grow);
    hak_unlock(&large_lock);
    size_t dirty = reused ? s.len : 0; /* bytes from s.base that may not read zero */
    if (reused && grow) {
        void *moved = hak_os_remap((void *)s.base, s.len, len);
        if (moved == NULL) {
            /* A cached range merged from neighbouring mappings may span two
             * of the kernel's areas, which mremap refuses (EFAULT): keep its
             * resident pages cached for a later request and map afresh. */
            struct span evict[CACHE_SLOTS + 1];
            hak_lock(&large_lock);
            unsigned n_evict = cache_put(s, evict);
            hak_unlock(&large_lock);
            unmap_spans(evict, n_evict);
            reused = false;
            dirty = 0;
        } else {
            s.base = (uintptr_t)moved;
            s.len = len;
        }
    }
    if (!reused && hak_kept_count() != 0) {
        hak_lock(&large_lock);
        reused = take_kept(len, &s, &dirty);
        hak_unlock(&large_lock);
    }
    if (!reused) {
        s.base = (uintptr_t)hak_os_map(len);
        if (s.base == 0) {
            /* give back what is cached and try again, even if this purge found
             * nothing: the purger may be unmapping what it took just now */
            hak_decay_reclaim_all();
            s.base = (uintptr_t)hak_os_map(len);
        }
        if (s.base == 0) {
            /* what the reclaim could not unmap was kept */
            hak_lock(&large_lock);
            reused = take_kept(len, &s, &dirty);
            hak_unlock(&large_lock);
            if (!reused)
                return NULL;
        } else {
            s.len = len;
        }
    }
    s.user = (s.base + align - 1) & ~(uintptr_t)(align - 1);
    hak_lock(&large_lock);
    bool ok = insert(s);
    hak_unlock(&large_lock);
    if (!ok) { /* the table could not grow: make room, retry (as above) */
        hak_decay_reclaim_all();
        hak_lock(&large_lock);
        ok = insert(s);
        hak_unlock(&large_lock);
    }
    if (!ok) {
        unmap_or_keep(s.base, s.len, false);
        errno = ENOMEM;
        return NULL;
    }
    /* calloc: what was cached may not read zero, and is cleared; what mremap
     * added to it does, and is not touched (a 2 GiB calloc grown from a
     * cached 1 MiB span wrote all 2 GiB: a big array used sparsely took its
     * whole size) */
    size_t held = dirty > s.user - s.base ? dirty - (s.user - s.base) : 0; /* from s.user */
    if (zero)
        memset((void *)s.user, 0, held < n ? held : n);
    errno = saved_errno;
    return (void *)s.user;
}

bool hak_large_free(void *p)
{
    struct span evict[CACHE_SLOTS + 1];
    unsigned n;
    hak_lock(&large_lock);
    struct span *s = find((uintptr_t)p);
    if (s == NULL) {
        hak_unlock(&large_lock);
        return false;
    }
    struct span freed = *s;
    delete(s);
    freed_recent[freed_next++ % FREED_RECENT] = freed.user;
    freed.freed_ms = hak_now_ms();
    n = cache_put(freed, evict);
    size_t cached = cache_bytes;
    hak_unlock(&large_lock);
    unmap_spans(evict, n);
    hak_decay_note(HAK_DECAY_LARGE, cached);
    return true;
}

/* Whether p is a block freed lately whose pages are still cached: the
 * report of a second free, realloc or malloc_usable_size says so. */
bool hak_large_was_freed(const void *p)
{
    bool recent = false, cached = false;
    hak_lock(&large_lock);
    for (unsigned i = 0; i < FREED_RECENT; i++)
        recent |= freed_recent[i] == (uintptr_t)p;
    for (unsigned i = 0; i < cache_count; i++)
        cached |= (uintptr_t)p - cache[i].base < cache[i].len;
    hak_unlock(&large_lock);
    return recent && cached;
}

size_t hak_large_usable(const void *p)
{
    hak_lock(&large_lock);
    struct span *s = find((uintptr_t)p);
    size_t usable = s ? s->base + s->len - s->user : 0;
    hak_unlock(&large_lock);
    return usable;
}

/* Grow span s in place by `extra` bytes taken from the head of a cached range
 * that starts where s ends (a freed neighbour, often the rest of the cached
 * span s was split from): its pages are resident already, so this costs no
 * system call and no fault, and they stop counting twice, as cache and as the
 * grown copy.  Lock held. */
static bool grow_into_cache(struct span *s, size_t extra)
{
    for (unsigned i = 0; i < cache_count; i++) {
        if (cache[i].base != s->base + s->len || cache[i].len < extra)
            continue;
        s->len += extra;
        count_live(0, (ptrdiff_t)extra);
        cache[i].base += extra;
        cache[i].len -= extra;
        cache_bytes -= extra;
        if (cache[i].len == 0)
            cache_remove(i);
        return true;
    }
    return false;
}

/* A block grew by `grown` bytes of new pages while the cache could not give
 * them: give back at least as many cached bytes, oldest first (returned in
 * *evict for the caller to unmap after the lock).  A program growing a buffer
 * by realloc often frees an older one of the same size meanwhile (a sort's
 * runs, a rebuilt index); kept, the cached copy would double its peak.  Lock
 * held. */
static unsigned evict_for_growth(size_t grown, struct span *evict)
{
    unsigned n = 0;
    size_t released = 0;
    while (released < grown && cache_count > 0) {
        released += cache[0].len;
        evict[n++] = cache[0];
        cache_remove(0);
    }
    return n;
}

/* Grow or shrink large block p (of at most PTRDIFF_MAX bytes) in place or by
 * mremap: NULL with errno ENOMEM when the system is out of address space or
 * memory, EFAULT when the span is a range of two mappings, which mremap
 * refuses.  The lock is held throughout so that the table cannot need to
 * grow between the remap and the record of its result. */
static void *resize(void *p, size_t n)
{
    struct span evict[CACHE_SLOTS];
    unsigned n_evict = 0;
    hak_lock(&large_lock);
    struct span *s = find((uintptr_t)p);
    size_t offset = s->user - s->base;
    size_t usable = s->len - offset;
    size_t len = offset + ((n + HAK_PAGE - 1) & ~(size_t)(HAK_PAGE - 1));
    void *base = NULL;
    if (n <= usable && n >= usable / 2) {
        base = (void *)s->base; /* fits, and not worth shrinking */
    } else if (len > s->len && grow_into_cache(s, len - s->len)) {
        base = (void *)s->base;
    } else if ((table_used + 1) * 2 <= table_cap || grow()) {
        s = find((uintptr_t)p); /* grow() moved the table */
        size_t old_len = s->len;
        base = hak_os_remap((void *)s->base, s->len, len);
        if (base != NULL) {
            delete(s);
            insert((struct span){.user = (uintptr_t)base + offset, .base = (uintptr_t)base,
                                 .len = len});
            if (len > old_len)
                n_evict = evict_for_growth(len - old_len, evict);
        }
    }
    hak_unlock(&large_lock);
    if (n_evict > 0)
        unmap_spans(evict, n_evict);
    return base != NULL ? (char *)base + offset : NULL;
}

/* p is known to be large. */
void *hak_large_realloc(void *p, size_t n)
{
    hak_thread_poll(); /* as hak_large_alloc */
    if (n > PTRDIFF_MAX - HAK_PAGE) {
        errno = ENOMEM;
        return NULL;
    }
    int saved_errno = errno; /* a success leaves it alone */
    void *q = resize(p, n);
    if (q == NULL && errno == ENOMEM) {
        /* Out of room (ulimit -v, say), where mremap needs only the growth:
         * give back what is cached and try once more, as hak_large_alloc
         * does.  The caller's fallback, a new block and a copy, needs the
         * whole new size at once; it failed where glibc, which keeps no
         * freed mapping, grew the block. */
        hak_decay_reclaim_all();
        q = resize(p, n);
    }
    errno = q != NULL ? saved_errno : ENOMEM;
    return q;
}

size_t hak_large_purge(uint64_t now, bool all, uint64_t *next_ms)
{
    struct span evict[CACHE_SLOTS];
    unsigned n = 0;
    hak_lock(&large_lock);
    /* oldest first: stop at the first one too young */
    while (cache_count > 0 && (all || hak_decay_is_due(now, cache[0].freed_ms))) {
        evict[n++] = cache[0];
        cache_remove(0);
    }
    if (cache_count > 0)
        hak_decay_due(next_ms, cache[0].freed_ms);
    hak_unlock(&large_lock);
    return unmap_spans(evict, n);
}

void hak_large_usage(struct hak_usage *u)
{
    hak_lock(&large_lock);
    u->large_count = live_count;
    u->large_bytes = live_bytes;
    u->large_cached = cache_bytes;
    u->large_max_count = max_count;
    u->large_max_bytes = max_bytes;
    hak_unlock(&large_lock);
}

/* Whether spans are cached (a purge has work).  The caller holds the lock. */
bool hak_large_cached_locked(void)
{
    return cache_count != 0;
}

void hak_large_lock(void)
{
    hak_lock(&large_lock);
}

void hak_large_unlock(void)
{
    hak_unlock(&large_lock);
}

size_t hak_large_table_slots(void)
{
    hak_lock(&large_lock);
    size_t cap = table_cap;
    hak_unlock(&large_lock);
    return cap;
}
