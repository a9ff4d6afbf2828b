/*
 * internal.h - declarations shared between the runtime's files, one heading
 * per file.  Layers, lowest first (see README.md):
 *   os -> region -> superslab -> heap -> transfer -> thread -> kept -> large -> api -> wrappers
 * A file calls only the layers below it.
 */
#ifndef HAK_INTERNAL_H
#define HAK_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hak_front.h"

#define HAK_PAGE 4096u

/* ---- the locks fork's prepare handler takes (thread.c) ----
 * From hakmem's prepare handler to its parent or child handler the forking
 * thread holds every one of them.  Fork handlers registered before hakmem's
 * run inside that window (glibc runs prepare handlers in the reverse order
 * of their registration, the others in order) and may allocate: the thread
 * that holds them passes through (hak_fork_depth, set and cleared by
 * the handlers; in the child too, where that thread is the one left and its
 * TLS a copy of the parent's).  A trylock fails there: its callers take it
 * to see whether they already hold it, and do without. */
extern HAK_TLS unsigned hak_fork_depth HAK_HIDDEN; /* nonzero: held; forks nest (thread.c) */

static inline void hak_lock(pthread_mutex_t *m)
{
    if (!hak_fork_depth)
        pthread_mutex_lock(m);
}

static inline void hak_unlock(pthread_mutex_t *m)
{
    if (!hak_fork_depth)
        pthread_mutex_unlock(m);
}

static inline bool hak_trylock(pthread_mutex_t *m)
{
    return !hak_fork_depth && pthread_mutex_trylock(m) == 0;
}

/* ---- os.c: the only file that calls mmap/munmap/mremap/mprotect ---- */
void *hak_os_map(size_t len) HAK_HIDDEN;                      /* NULL on failure */
void *hak_os_map_aligned(size_t len, size_t align) HAK_HIDDEN; /* len, align: pages */
void *hak_os_map_read_only(size_t len) HAK_HIDDEN;            /* PROT_READ, no reserve */
void *hak_os_map_at(uintptr_t addr, size_t len) HAK_HIDDEN;   /* NULL + EEXIST: taken */
bool hak_os_make_writable(void *p, size_t len) HAK_HIDDEN;
bool hak_os_make_read_only(void *p, size_t len) HAK_HIDDEN;
bool hak_os_unmap(void *p, size_t len) HAK_HIDDEN;             /* false: refused, still mapped (os.c) */
bool hak_os_release(void *p, size_t len) HAK_HIDDEN;          /* pages back, addresses kept; false: locked */
bool hak_os_at_map_limit(void) HAK_HIDDEN;                    /* munmap refused once: keep address space */
void *hak_os_remap(void *p, size_t old_len, size_t new_len) HAK_HIDDEN; /* may move; NULL: mremap's errno */
void hak_os_write_stderr(const char *s) HAK_HIDDEN;           /* no malloc */
char *hak_fmt_hex(char *out, uintptr_t v) HAK_HIDDEN;         /* writes "0x..", returns end */

/* ---- decay.c: when free memory goes back to the OS (options.decay_ms) ---- */
uint64_t hak_now_ms(void) HAK_HIDDEN;   /* monotonic, coarse */
/* Something became free: purge it in time.  `holds` is what the layer now
 * holds to give back (dirty units, cached large spans), in bytes. */
enum { HAK_DECAY_SS, HAK_DECAY_LARGE, HAK_DECAY_TRANSFER, HAK_DECAY_ABANDONED, HAK_DECAY_THREADS,
       HAK_DECAY_LAYERS };
void hak_decay_note(unsigned layer, size_t holds) HAK_HIDDEN;
/* The purger thread is started only when this much is dirty or cached
 * (decay.c: a process with less stays single-threaded). */
#define HAK_PURGER_MIN_BYTES ((size_t)4 << 20)
/* Whether what was freed at `since` is due at `now`.  `since` may be later
 * than `now`: a pass reads its clock before it takes the locks, a freer
 * stamps its memory under them (now - since would wrap to "long ago"). */
static inline bool hak_decay_is_due(uint64_t now, uint64_t since)
{
    return since + HAK_DECAY_MS <= now;
}

/* Lower *next_ms to since + HAK_DECAY_MS (when what was freed at `since` is due). */
static inline void hak_decay_due(uint64_t *next_ms, uint64_t since)
{
    if (since + HAK_DECAY_MS < *next_ms)
        *next_ms = since + HAK_DECAY_MS;
}
void hak_decay_poll(void) HAK_HIDDEN;   /* only where no lock can be held: see decay.c */
size_t hak_decay_purge_all(void) HAK_HIDDEN; /* malloc_trim: everything, now */
uint32_t hak_decay_passes(void) HAK_HIDDEN;  /* passes made so far (wraps): thread.c's big lists */
size_t hak_decay_reclaim_all(void) HAK_HIDDEN; /* mmap or mremap failed: blocks parked and spans emptied too */
void hak_decay_release_blocks(void) HAK_HIDDEN; /* malloc_trim: every transfer batch back, abandoned spans trimmed */
void hak_decay_lock(void) HAK_HIDDEN;   /* fork: prepare */
void hak_decay_unlock(void) HAK_HIDDEN; /* fork: parent */
void hak_decay_purge_lock(void) HAK_HIDDEN;   /* fork: no purge in progress */
void hak_decay_purge_unlock(void) HAK_HIDDEN; /* fork: parent and child */
void hak_decay_after_fork_child(void) HAK_HIDDEN; /* fork: child (unlocks) */

/* ---- region.c: the address -> class map (hak_region_code in hak_abi.h) ---- */
/* A new SuperSlab, aligned to its size, where the map covers it, its codes
 * writable (the map made first if there is none); NULL with errno ENOMEM. */
void *hak_region_map_superslab(void) HAK_HIDDEN;
bool hak_region_unmap_superslab(void *ss) HAK_HIDDEN; /* superslab lock held; false: refused */
void hak_region_set(uintptr_t start, size_t len, uint8_t code) HAK_HIDDEN;

/* ---- superslab.c: aligned regions cut into spans of one class ---- */
#define HAK_SS_UNITS (HAK_SUPERSLAB_BYTES / HAK_SLAB_BYTES)
#define HAK_UNIT_BLOCKS_MAX (HAK_SLAB_BYTES / 16)  /* blocks per unit of the smallest size */

/*
 * A span: 2^k consecutive units of one superslab, aligned to its own length,
 * carved into blocks of one class and owned by one heap (heap.c).  Its meta
 * lives in the superslab header at the index of its first unit; its live
 * bitmap (struct hak_superslab.live) has a bit per block.  While the span is
 * live:
 *
 *     used == set live bits,    free blocks == carved - used
 *
 * used counts blocks in thread caches, with the program, or in the remote
 * bitmap (freed by another thread, not yet taken back); blocks at index >=
 * carved were never handed out (their bits are clear).  Only the owner (or
 * whoever holds an ownerless span exclusively) reads or writes the owner's
 * line and the live bitmap; any thread sets bits in the remote bitmap.
 */
struct hak_span {
    /* the owner's line */
    uint32_t carved;
    uint32_t scan;                /* bitmap word where the last search for a free block stopped */
    uint32_t used;
    uint16_t cls;                 /* class index */
    uint16_t units;               /* length in units; 0 for a unit that starts no span */
    uint8_t list;                 /* which of its owner's lists it is on (heap.c) */
    struct hak_span *next, *prev; /* that list */
    /* the line other threads write */
    uint64_t remote_words __attribute__((aligned(64))); /* atomic: bit w: remote word w has bits (heap.c) */
    struct hak_heap *owner;       /* atomic: NULL while abandoned */
};
_Static_assert(sizeof(struct hak_span) == 128, "span meta: the owner's line, then the shared one");

/* A superslab's place on one of superslab.c's lists of those with free units. */
struct hak_ss_link {
    struct hak_superslab *next, *prev;
};

struct hak_superslab {
    struct hak_superslab *next;                 /* every superslab (superslab.c's lock) */
    struct hak_ss_link with[2];                 /* with free units, with dirty ones (superslab.c) */
    uint32_t free_units;                        /* units in no span */
    uint32_t dirty_units;                       /* free units not yet given back to the OS */
    uint64_t dirty_since;                       /* hak_now_ms() when the oldest became dirty */
    uint64_t empty_since;                       /* hak_now_ms() when the last span left */
    uint64_t unit_free[(HAK_SS_UNITS + 63) / 64];  /* bit i: unit i is in no span */
    uint64_t unit_dirty[(HAK_SS_UNITS + 63) / 64]; /* bit i: free, and maybe resident */
    struct hak_span span[HAK_SS_UNITS];
    /* One bit per block handed out (take) and not yet given back (give):
     * the span at unit i uses live[i .. i + units - 1] as one bitmap. */
    uint64_t live[HAK_SS_UNITS][HAK_UNIT_BLOCKS_MAX / 64];
    /* The same shape: blocks freed by threads other than the span's owner,
     * not yet taken back (set with an atomic OR, taken with an exchange). */
    uint64_t remote[HAK_SS_UNITS][HAK_UNIT_BLOCKS_MAX / 64];
};

#define HAK_SS_HEADER_UNITS ((sizeof(struct hak_superslab) + HAK_SLAB_BYTES - 1) / HAK_SLAB_BYTES)
_Static_assert(HAK_SS_HEADER_UNITS <= HAK_SS_UNITS / 4, "superslab header takes too many units");
_Static_assert(HAK_UNIT_BLOCKS_MAX % 64 == 0, "slab holds a multiple of 64 minimal blocks");

static inline struct hak_superslab *hak_ss_of(const void *p)
{
    return (struct hak_superslab *)((uintptr_t)p & ~((uintptr_t)HAK_SUPERSLAB_BYTES - 1));
}
static inline char *hak_span_base(const struct hak_span *sp)
{
    struct hak_superslab *ss = hak_ss_of(sp);
    return (char *)ss + (size_t)(sp - ss->span) * HAK_SLAB_BYTES;
}
/* The span holding block p (p must be in a live span: its region code is set). */
static inline struct hak_span *hak_span_of(const void *p, unsigned units)
{
    struct hak_superslab *ss = hak_ss_of(p);
    size_t unit = ((uintptr_t)p - (uintptr_t)ss) >> HAK_SLAB_SHIFT;
    return &ss->span[unit & ~(size_t)(units - 1)];
}

struct hak_span *hak_ss_span_alloc(unsigned cls) HAK_HIDDEN; /* NULL: out of memory */
void hak_ss_span_free(struct hak_span *sp) HAK_HIDDEN;
/* Give back what has been free for HAK_DECAY_MS (or everything: all); returns
 * bytes released, and lowers *next_ms to when the rest will be due. */
size_t hak_ss_purge(uint64_t now, bool all, uint64_t *next_ms) HAK_HIDDEN;
bool hak_ss_purgeable_locked(void) HAK_HIDDEN; /* fork child: anything for a purge? */
bool hak_ss_lists_valid(void) HAK_HIDDEN; /* tests: the lists of superslabs with free units agree */
/* What the allocator holds, for mallinfo2 and malloc_stats (api.c). */
struct hak_usage {
    size_t ss_mapped;     /* superslabs mapped */
    size_t ss_in_spans;   /* their units in spans (blocks out, cached or free in a span) */
    size_t ss_dirty;      /* their free units not yet given back to the OS */
    size_t large_count;   /* large blocks live */
    size_t large_bytes;   /* their mappings */
    size_t large_cached;  /* freed large spans kept for reuse */
    size_t large_max_count, large_max_bytes; /* the most ever live at once */
};
void hak_ss_usage(struct hak_usage *u) HAK_HIDDEN;
void hak_ss_lock_all(void) HAK_HIDDEN;   /* fork */
void hak_ss_unlock_all(void) HAK_HIDDEN;

/* ---- heap.c: per-thread heaps of owned spans, remote frees, abandonment ---- */
struct hak_heap;
struct hak_heap *hak_heap_acquire(void) HAK_HIDDEN;      /* NULL: out of memory */
void hak_heap_release(struct hak_heap *h) HAK_HIDDEN;    /* thread exit: abandon its spans */
struct hak_heap *hak_heap_shared_lock(void) HAK_HIDDEN;  /* for threads without a heap */
struct hak_heap *hak_heap_shared_trylock(void) HAK_HIDDEN; /* NULL: held (by this thread too) */
void hak_heap_shared_unlock(void) HAK_HIDDEN;
uint32_t hak_heap_take(struct hak_heap *h, unsigned cls, void **out, uint32_t want) HAK_HIDDEN;
void hak_heap_give(struct hak_heap *h, unsigned cls, void *const *blocks, uint32_t n) HAK_HIDDEN;
void *hak_heap_give_list(struct hak_heap *h, unsigned cls, void *head, uint32_t n) HAK_HIDDEN; /* rest */
void hak_heap_trim_abandoned(void) HAK_HIDDEN;           /* free abandoned spans now empty */
void hak_heap_after_fork_release(struct hak_heap *mine) HAK_HIDDEN; /* child: the other threads' heaps */
size_t hak_heap_abandoned_freed(void) HAK_HIDDEN;        /* bytes freed into them since */
void hak_heap_trim(struct hak_heap *h) HAK_HIDDEN;       /* free h's empty spans, even the last */
bool hak_heap_holds_free(struct hak_heap *h, unsigned cls, const void *p) HAK_HIDDEN; /* guarded free */
/* Metrics builds: how many of blocks[0..n), cached by h's thread, are in
 * spans of another heap (thread.c counts them as remote frees when a flush
 * puts them in a transfer batch). */
uint32_t hak_heap_foreign_blocks(struct hak_heap *h, unsigned cls, void *const *blocks, uint32_t n) HAK_HIDDEN;
bool hak_heap_marking(const struct hak_superslab *ss) HAK_HIDDEN; /* purge: keep ss mapped */
void hak_heap_after_fork_child(void) HAK_HIDDEN; /* finish the gone threads' remote frees */

/* Race points (heap.c, decay.c, transfer.c) where tests/hooks, built with -DHAK_TEST_HOOKS,
 * stops a free to act as another thread: a race replayed in one thread.
 * Other builds have no hook and no test of one. */
#ifdef HAK_TEST_HOOKS
extern void (*hak_test_hook_remote_owner_read)(void);  /* give_one: owner read, nothing set */
extern void (*hak_test_hook_remote_bit_set)(void);     /* remote_give: bit set, not the summary */
extern void (*hak_test_hook_remote_summary_set)(void); /* mark_summary: bit set, owner not read */
extern void (*hak_test_hook_decay_pass_purged)(void);  /* purge_pass: purged, left not read */
extern void (*hak_test_hook_transfer_lock_nap)(void);  /* transfer.c lock: about to sleep */
#define HAK_TEST_POINT(name)                  \
    do {                                      \
        if (hak_test_hook_##name)             \
            hak_test_hook_##name();           \
    } while (0)
#else
#define HAK_TEST_POINT(name) ((void)0)
#endif
void hak_heap_lock_all(void) HAK_HIDDEN;                 /* fork */
void hak_heap_unlock_all(void) HAK_HIDDEN;

/* ---- transfer.c: batches of free blocks passed between threads' caches ---- */
bool hak_transfer_init(void) HAK_HIDDEN;     /* false: no memory, no transfers */
uint32_t hak_transfer_capacity(unsigned cls) HAK_HIDDEN; /* batches cls may hold (its spec's `transfer`) */
bool hak_transfer_room(unsigned cls) HAK_HIDDEN; /* a batch may be put (a hint: read unlocked) */
/* Hand over a batch of exactly `refill` blocks; false: no room now (the
 * caller gives them to its heap). */
bool hak_transfer_put(unsigned cls, void *const *blocks) HAK_HIDDEN;
/* Take one batch (`refill` blocks) into out; false: none now. */
bool hak_transfer_take(unsigned cls, void **out) HAK_HIDDEN;
bool hak_transfer_holds(unsigned cls, const void *p) HAK_HIDDEN; /* guarded free */
size_t hak_transfer_bytes(void) HAK_HIDDEN;  /* the blocks held, in bytes */
/* Batches idle for HAK_DECAY_MS (or all) back to their spans, given as h;
 * lowers *next_ms to when the rest will be due.  Caller holds h's lock. */
void hak_transfer_release(struct hak_heap *h, uint64_t now, bool all, uint64_t *next_ms) HAK_HIDDEN;
void hak_transfer_due(uint64_t *next_ms) HAK_HIDDEN; /* every pass: when what is held falls due */
void hak_transfer_lock_all(void) HAK_HIDDEN;   /* fork */
void hak_transfer_unlock_all(void) HAK_HIDDEN;
void hak_transfer_after_fork_child(void) HAK_HIDDEN; /* unlocks */

/* ---- thread.c: the per-thread caches' slow paths, thread start and exit ---- */
/* Class cls's bin in the calling thread's block. */
static inline struct hak_bin *hak_thread_bin(unsigned cls)
{
    return (struct hak_bin *)((char *)&hak_tls + hak_class_info[cls].bin_offset);
}
/* The blocks bin b of class cls holds in its list (hak_abi.h: the bin
 * counts the list's room).  An empty list, also one not set up, has no head. */
static inline uint32_t hak_bin_sll_length(unsigned cls, const struct hak_bin *b)
{
    return b->sll_head == NULL ? 0 : hak_class_info[cls].sll - (uint32_t)b->sll_room;
}
bool hak_global_init(void) HAK_HIDDEN;
bool hak_thread_block_freed(unsigned cls, const void *p) HAK_HIDDEN; /* guarded: p has the key */
void hak_thread_trim(void) HAK_HIDDEN;
void hak_thread_poll(void) HAK_HIDDEN; /* an allocation slow path: hak_decay_poll, unless exited */
/* Blocks above this many bytes (8 pages): the caches of their classes go back
 * after a decay pass (thread.c), and a calloc of them is a fresh mapping
 * (api.c), as they were large blocks before the classes went on to 256 KiB. */
#define HAK_BIG_BLOCK_BYTES ((size_t)32 << 10)
/* The pool of exited threads' blocks (options.tls: pointer; none with
 * static TLS): its bytes, when what it holds will be due, and the blocks
 * idle for HAK_DECAY_MS (all: every one) unmapped, *next_ms lowered to when
 * the rest will be.  The release takes the pool's lock, the first in the
 * runtime's lock order: its caller holds none. */
size_t hak_thread_pool_bytes(void) HAK_HIDDEN;
void hak_thread_pool_due(uint64_t *next_ms) HAK_HIDDEN;
void hak_thread_pool_release(uint64_t now, bool all, uint64_t *next_ms) HAK_HIDDEN;

/* ---- kept.c: address ranges held at the kernel's map count (large.c's lock held) ---- */
void hak_kept_add(uintptr_t base, size_t len, bool dirty) HAK_HIDDEN; /* dirty: may not read zero */
bool hak_kept_take(size_t len, uintptr_t *base, bool *dirty) HAK_HIDDEN; /* smallest that fits, cut */
size_t hak_kept_count(void) HAK_HIDDEN; /* without the lock: 0, nothing to look for */

/* ---- large.c: mmap'd spans above the largest class ---- */
void *hak_large_alloc(size_t n, size_t align, bool zero) HAK_HIDDEN; /* zero: calloc */
bool hak_large_free(void *p) HAK_HIDDEN;        /* false: not a large block of ours */
size_t hak_large_usable(const void *p) HAK_HIDDEN; /* 0: not a large block of ours */
bool hak_large_was_freed(const void *p) HAK_HIDDEN; /* freed lately, pages still cached */
void *hak_large_realloc(void *p, size_t n) HAK_HIDDEN; /* p is large; NULL: ENOMEM, p kept */
size_t hak_large_purge(uint64_t now, bool all, uint64_t *next_ms) HAK_HIDDEN; /* as hak_ss_purge */
bool hak_large_cached_locked(void) HAK_HIDDEN; /* fork child: anything for a purge? */
void hak_large_usage(struct hak_usage *u) HAK_HIDDEN;
void hak_large_lock(void) HAK_HIDDEN;
void hak_large_unlock(void) HAK_HIDDEN;
size_t hak_large_table_slots(void) HAK_HIDDEN; /* tests: slots of the table of spans */

/* ---- stats.c: counters of a metrics build (HAK_STAT in hak_abi.h) ---- */
void hak_stats_thread_start(void) HAK_HIDDEN;
void hak_stats_thread_exit(void) HAK_HIDDEN;
void hak_stats_lock(void) HAK_HIDDEN;   /* fork: prepare (a leaf: nothing is taken under it) */
void hak_stats_unlock(void) HAK_HIDDEN; /* fork: parent */
void hak_stats_after_fork_child(void) HAK_HIDDEN; /* fork: child (unlocks) */
void hak_prof_out_add(unsigned cls, int64_t delta) HAK_HIDDEN; /* blocks out of spans, and their peak */
extern uint64_t hak_stats_superslabs_mapped HAK_HIDDEN, hak_stats_superslabs_returned HAK_HIDDEN;

/* ---- api.c: the allocator's whole API, behind the exported names ---- */
void *hak_api_malloc(size_t n) HAK_HIDDEN;
void hak_api_free(void *p) HAK_HIDDEN;
void *hak_api_calloc(size_t n, size_t size) HAK_HIDDEN;
void *hak_api_realloc(void *p, size_t n) HAK_HIDDEN;
void *hak_api_reallocarray(void *p, size_t n, size_t size) HAK_HIDDEN;
int hak_api_posix_memalign(void **out, size_t align, size_t n) HAK_HIDDEN;
void *hak_api_aligned_alloc(size_t align, size_t n) HAK_HIDDEN;
void *hak_api_memalign(size_t align, size_t n) HAK_HIDDEN;
void *hak_api_valloc(size_t n) HAK_HIDDEN;
void *hak_api_pvalloc(size_t n) HAK_HIDDEN;
size_t hak_api_usable_size(void *p) HAK_HIDDEN;
void hak_api_free_sized(void *p, size_t n) HAK_HIDDEN;                       /* C23 */
void hak_api_free_aligned_sized(void *p, size_t align, size_t n) HAK_HIDDEN; /* C23 */
int hak_api_trim(size_t pad) HAK_HIDDEN;
void hak_api_usage(struct hak_usage *u) HAK_HIDDEN;

#endif /* HAK_INTERNAL_H */
