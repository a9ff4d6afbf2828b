/*
 * hak_abi.h - the boundary between a generated front and the runtime.
 *
 * generated/X/hak_spec.h defines the spec's constants and then includes this
 * file; everything here may use them.  The generated front (hak_front.h) calls
 * only the functions declared here; the runtime (the C files of runtime/) implements them.
 * Bump HAK_RUNTIME_VERSION together with gen/render.py's GENERATOR_VERSION
 * whenever this contract changes.
 */
#ifndef HAK_ABI_H
#define HAK_ABI_H

#include <stddef.h>
#include <stdint.h>

#define HAK_RUNTIME_VERSION 10

#ifndef HAK_GENERATED_VERSION
#error "include the generated hak_spec.h, not hak_abi.h directly"
#elif HAK_GENERATED_VERSION != HAK_RUNTIME_VERSION
#error "generated/ was made by another hakgen version: regenerate it (make)"
#endif

#define HAK_LIKELY(x) __builtin_expect(!!(x), 1)
#define HAK_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define HAK_NOINLINE __attribute__((noinline))
#define HAK_INLINE static inline __attribute__((always_inline)) /* fast paths */
#define HAK_NORETURN __attribute__((noreturn))
#define HAK_HIDDEN __attribute__((visibility("hidden")))
#define HAK_EXPORT __attribute__((visibility("default")))

/* Built with thread-sanitizer: the few races the fast paths make on purpose
 * are made with atomics there (HAK_REGION_SLABS, HAK_ROOM_TAKE). */
#if defined(__SANITIZE_THREAD__) /* gcc */
#define HAK_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) /* clang */
#define HAK_TSAN 1
#endif
#endif
/*
 * The TLS model of everything thread-local: initial-exec, one GOT load and an
 * %fs-relative access.  Its storage is the static TLS area, of which glibc
 * keeps only a small surplus for libraries loaded later by dlopen(): the
 * default options.tls (pointer) keeps a few words there, options.tls: static
 * the whole cache block (see hak_spec.h and spec/README.md).
 */
#define HAK_TLS __thread __attribute__((tls_model("initial-exec")))

/*
 * One class's per-thread cache.  The ring's slots follow this header in the
 * generated struct hak_thread_block (one struct per class, so every capacity is a
 * literal).  The ring's count is biased by one, the list is NULL-terminated
 * and counts the room it has left:
 *
 *     ring count = ring_s - 1 (0: not set up),
 *     list length = capacity - sll_room, empty when sll_head is NULL.
 *
 * A thread that has not set up its cache (or has exited) has every field 0,
 * so the alloc tests (s > 1, sll_head != NULL) and the free tests (s - 1 <
 * capacity, sll_room > 0) all fail and the slow path runs: no separate
 * "initialized" check on the fast path.  The list's two tests are on what
 * its hit touches anyway: malloc reads the head, free writes the room
 * (against a biased length that both compared and wrote: malloc 17 -> 15
 * instructions, free 27 -> 26; fixed 64 B 63 -> 60 a pair with the loop).
 * free's test is its write: one subtraction in memory, whose sign the jump
 * reads (where a load, a subtraction and a store took 26 -> 24).  So it
 * writes the room before it knows whether the bin is a thread's or a shared
 * block of threads not started or exited (runtime/thread.c): a miss writes
 * the room back as 0, which is what a bin's room is when it misses (it is
 * never negative); see HAK_ROOM_TAKE below.
 * The table dispatch's free tests a first-tier ring against front_lim
 * instead, its capacity + 1 in a set-up bin and 0 otherwise (s < front_lim:
 * no subtraction to make); zeroed memory is a bin not set up either way.
 */
struct hak_bin {
    /* The list's head first: at offset 0 its load and store take no
     * displacement byte, which brings guarded malloc's hit path from 65 bytes
     * to 63, inside one 64-byte line of code (fixed 16..128 B 1.07-1.09x,
     * bench/NOTES.md, "Malloc in one line of code").  Words, not 32-bit
     * counts: a count indexes its ring as it is loaded, where a 32-bit one
     * took a move to widen it on free's path. */
    void *sll_head;      /* L1: blocks linked through their first word */
    uintptr_t sll_room;  /* L1: blocks the list may still take */
    uintptr_t ring_s;    /* L0: used slots of the ring + 1 */
    uintptr_t front_lim; /* first tier's capacity + 1 once set up (hak_fast.cap); a ring's free reads it */
};

/*
 * free's take of a place in its list: the room, less 1, written back and
 * tested for a sign (one `subq` in memory); and the room written back as 0
 * after a miss.  Threads not started, or exited, share one block (thread.c),
 * and their frees write its rooms at once: a race made on purpose, harmless
 * because each write is 0 or a room of at most 0 less 1, so that no room
 * there is ever read above 0.  Thread-sanitizer builds make it with relaxed
 * atomics, so that it is not reported (a locked subtraction: such builds are
 * not measured); atomics everywhere would cost free a load and a store of
 * their own, gcc folding no atomic access into the subtraction.
 */
#if defined(HAK_TSAN)
#define HAK_ROOM_TAKE(b) ((intptr_t)__atomic_sub_fetch(&(b)->sll_room, 1, __ATOMIC_RELAXED))
#define HAK_ROOM_RESET(b) __atomic_store_n(&(b)->sll_room, 0, __ATOMIC_RELAXED)
#else
#define HAK_ROOM_TAKE(b) ((intptr_t)--(b)->sll_room)
#define HAK_ROOM_RESET(b) ((void)((b)->sll_room = 0))
#endif

/*
 * A block in a thread's cache, as the fronts and the runtime read and write
 * it.  A struct of its own, not (void **)p and ((uintptr_t *)p)[1]: a store
 * through it cannot, by C's type rules, change a struct hak_thread_block, so
 * where a free and a malloc are inlined one after the other (the static build,
 * hakmem.h) the compiler keeps the bin's count and head in registers instead
 * of loading them again, and the TLS pointer with them (fixed_static 64 B:
 * 45 -> 38 instructions a pair).  Blocks never lie inside a thread block.
 */
struct hak_cached_block {
    void *next;    /* the sll tier's link */
    uintptr_t key; /* guarded: hak_cache_key while cached, 0 once handed out */
};
#define HAK_BLOCK(p) ((struct hak_cached_block *)(p))

/*
 * Guarded mode (hak_front.h): a block in a thread's cache carries
 * hak_cache_key() in its second word (every class is at least 16 bytes, and
 * the list links through the first); a block handed out has it cleared.  The
 * key is below, with the region map.  hak_free_keyed: a free met a block
 * that carries it.
 */
#define HAK_KEY_WORD(p) (HAK_BLOCK(p)->key)

/*
 * Per-class counters of a metrics build (options.metrics: true), one set per
 * thread in struct hak_thread_block, summed by runtime/stats.c.  In any other build the
 * struct is not used and no counter exists in the binary.  Cache tiers are
 * counted by their position in the class's tier list (0: tried first).
 */
struct hak_class_stats {
    uint64_t alloc_hit[2];   /* allocations served by cache tier 0 / 1 */
    uint64_t alloc_slow;     /* allocations that went to the runtime */
    uint64_t free_hit[2];    /* frees kept by cache tier 0 / 1 */
    uint64_t free_slow;      /* frees that went to the runtime */
    uint64_t refills;        /* batches taken from the thread's heap */
    uint64_t refill_blocks;
    uint64_t flushes;        /* batches given back */
    uint64_t flush_blocks;
    uint64_t remote_frees;   /* blocks of another thread's heap given back: to their spans, or in transfer batches */
    uint64_t spans_mapped;   /* spans this thread took from a superslab */
    uint64_t spans_returned; /* spans this thread gave back to one */
};

/*
 * The profile of a metrics build (HAKMEM_PROFILE=path.json, runtime/stats.c),
 * one per thread in struct hak_thread_block: what `gen/hakgen tune` derives a spec from.
 * A burst is a run of consecutive allocations (or frees) of one class by one
 * thread; its length is counted in log2 buckets: bucket k holds [2^k, 2^(k+1)).
 */
#define HAK_PROF_SIZE_BUCKETS (HAK_MAX_CLASS_SIZE / 16 + 1) /* by ceil(size / 16) */
#define HAK_PROF_BURST_BUCKETS 32
enum { HAK_PROF_ALLOC = 0, HAK_PROF_FREE = 1 };
struct hak_prof {
    uint64_t size_hist[HAK_PROF_SIZE_BUCKETS];
    uint64_t large_hist[64];  /* larger requests by bit length of the size */
    uint64_t bursts[HAK_NUM_CLASSES][2][HAK_PROF_BURST_BUCKETS];
    uint32_t run[HAK_NUM_CLASSES];      /* length of the current burst */
    uint8_t run_kind[HAK_NUM_CLASSES];  /* 0: none yet, else HAK_PROF_ALLOC/FREE + 1 */
};

#if HAK_METRICS
#define HAK_STAT(expr) ((void)(expr))
#else
#define HAK_STAT(expr) ((void)0)
#endif
/* A count into the calling thread's own hak_tls.stats or .prof.  A thread that
 * has no caches (not started yet, or exited) has the shared empty block as its
 * hak_tls, which nothing may write: its counts are dropped (an exited thread's
 * totals have already been added up by then). */
#define HAK_THREAD_STAT(expr) \
    HAK_STAT(HAK_LIKELY(hak_tls.state == HAK_THREAD_LIVE) ? (void)(expr) : (void)0)

/* Thread states, in struct hak_thread_block.state. */
enum { HAK_THREAD_NEW = 0, HAK_THREAD_LIVE = 1, HAK_THREAD_DEAD = 2 };

/*
 * The region map: one byte per slab (HAK_SLAB_BYTES) of address space, saying
 * which class's span covers it (code = class index + 1), or 0 when the slab
 * is not a live span of ours.  Flat, so that free reaches a code with one load
 * that depends on the pointer.  It covers the slabs [0, slabs): all of the
 * 47-bit user address space (HAK_MAP_SLABS bytes, 2 GiB at 64 KiB slabs)
 * where the process may map that much, otherwise its low part, where the
 * SuperSlabs are then placed (region.c).  Mapped read-only before the first
 * SuperSlab is made, so that it commits no memory: reads of a page never
 * written see the kernel's zero page; the map pages that cover a SuperSlab are
 * made writable when it is mapped.  Until the map exists slabs is 0, so every
 * address is not ours.
 */
#define HAK_MAP_SLABS ((uintptr_t)1 << (47 - HAK_SLAB_SHIFT))
struct hak_region_map {
    const uint8_t *codes; /* codes[i]: the code of slab i */
    uintptr_t slabs;      /* slabs covered: 0 until codes is mapped */
} __attribute__((aligned(64))); /* a line of its own: every free reads it */
extern struct hak_region_map hak_region HAK_HIDDEN;

/*
 * Whether the map covers address a: an address below what it covers (not
 * above user space), and the map exists.  A thread that sees slabs set must
 * see codes: region.c stores codes first, then slabs with a release, once.
 * An acquire load of slabs would give that, but gcc never folds an atomic
 * load into the compare, a move of its own on every free.  So slabs is read
 * with a plain load, and hak_region_covered_code loads codes after a compiler
 * fence; x86 keeps two loads in order (where an acquire is a plain move too).
 * The one store the plain load may meet is that release; thread-sanitizer
 * builds, and other machines, read slabs with an acquire.
 */
#if defined(__x86_64__) && !defined(HAK_TSAN)
#define HAK_REGION_SLABS() (hak_region.slabs)
#else
#define HAK_REGION_SLABS() __atomic_load_n(&hak_region.slabs, __ATOMIC_ACQUIRE)
#endif
static inline int hak_region_covers(uintptr_t a)
{
    return (a >> HAK_SLAB_SHIFT) < HAK_REGION_SLABS();
}

/* The class code of the slab holding address a, which the map covers (a
 * test of hak_region_covers came first). */
static inline unsigned hak_region_covered_code(uintptr_t a)
{
    __atomic_signal_fence(__ATOMIC_ACQUIRE); /* codes is loaded after slabs */
    /* relaxed: a plain move, but written concurrently (region.c) */
    return __atomic_load_n(&hak_region.codes[a >> HAK_SLAB_SHIFT], __ATOMIC_RELAXED);
}

/*
 * Guarded mode's cache key: the region map's own address.  Free's front has
 * it in a register already, loaded to read p's code, so its test of the key
 * is a compare with no load of its own (a random key in a variable took one:
 * 24 -> 23 instructions a free).  It is set before any block exists (the
 * first SuperSlab maps the map) and never changes; it is never 0 (the word of
 * a block handed out), and no program object lies at it: the map is
 * hakmem's, and outside every span (hak_region_code gives 0 for it), so a
 * block's second word holds it only where a program computed it by chance.
 * Like the random key before it, a chance match costs a search, never a
 * false report (hak_free_keyed).
 */
static inline uintptr_t hak_cache_key(void)
{
    return (uintptr_t)hak_region.codes;
}

/* The class code of the slab holding address a; 0 when not ours. */
static inline unsigned hak_region_code(uintptr_t a)
{
    return HAK_LIKELY(hak_region_covers(a)) ? hak_region_covered_code(a) : 0;
}

/*
 * The table dispatch (options.dispatch: table): class-indexed constants that
 * let malloc and free reach any class's first cache tier, a ring or a list,
 * with no indirect jump.  free finds a class's bin by arithmetic
 * (HAK_BIN_STRIDE, hak_spec.h; bin_offset below where the spec's bins are
 * packed) and tests it against the bin's front_lim;
 * classes without a cache tier have cap 0, and so a bin whose front_lim stays
 * 0: they always take the per-class path (hak_*_tiers).  Only a spec whose
 * classes start with tiers of both kinds has fronts that test which one a
 * class has: first_sll in free, bit 0 of its hak_size_bin entry
 * (HAK_BIN_SLL) in malloc.
 */
struct hak_fast_table {
    /* offsetof(struct hak_thread_block, cN), or of the empty bin: free's,
     * where the spec's bins are packed (no HAK_BIN_STRIDE) */
    uint32_t bin_offset[HAK_NUM_CLASSES + 1];
    uint32_t cap[HAK_NUM_CLASSES + 1];       /* capacity of the first tier (front_lim - 1) */
    uint32_t span_mask[HAK_NUM_CLASSES + 1]; /* span_bytes - 1 */
    uint8_t first_sll[HAK_NUM_CLASSES + 1];  /* 1: the first tier is the list, 0: the ring (or none) */
    uint64_t div_mul[HAK_NUM_CLASSES + 1];   /* ceil(2^64 / stride): hak_block_start, hak_block_index */
    uint64_t start_limit[HAK_NUM_CLASSES + 1]; /* blocks * (stride * div_mul - 2^64), or 1 when that is 0 */
};
/* Indexed by region code: class + 1, and 0 for memory not in a span (its
 * only offset, 0, passes hak_block_start; no cache tier).  An array per
 * field, not a row per class: free()'s front then reaches every field with
 * one scaled load from one base, where a 32-byte row took a shift and an
 * add to find first (3 instructions per free). */
extern const struct hak_fast_table hak_fast HAK_HIDDEN;
#define HAK_BIN_SLL 1u /* in a hak_size_bin entry: the class's first tier is the list */

/*
 * free's front reads hak_fast through a copy that the region map keeps just
 * below its codes (region.c), a constant distance from the codes pointer free
 * has loaded already.  hak_fast itself took a `lea` of its address on every
 * free: a shared object addresses its tables relative to the instruction
 * pointer, and such an address takes no index register (mixed 16..1040 B:
 * 81.1 -> 80.1 instructions a pair).  Only once the map exists, that is after
 * hak_region_covers has said yes.
 */
#define HAK_FAST_COPY_BYTES ((sizeof(struct hak_fast_table) + 4095) & ~(size_t)4095)
static inline const struct hak_fast_table *hak_fast_near(void)
{
    return (const struct hak_fast_table *)(hak_region.codes - HAK_FAST_COPY_BYTES);
}

/*
 * Whether offset `off` in a span of the class with region code `code` starts
 * one of its blocks (off = q * stride with q < blocks; the stride is the class's
 * size, or more with options.stride_pad), by one multiply and
 * one compare.  With c = div_mul and e = stride * c - 2^64 (0 <= e < stride),
 * the 64-bit product off * c wraps to q * e when stride divides off, and to
 * at least c when it does not (off = q * stride + r, 0 < r < stride: q * e +
 * r * c, below 2^64 because (q + 1) * e < off + stride < 2^33 <= c for a
 * 32-bit off and a stride below 2^31).  A block start in the span has
 * q * e < blocks * e < span < 2^32 < c, so one bound tells both apart and
 * rejects the tail (q >= blocks) too.  A stride with e = 0 is a power of two;
 * its spans have no tail, and the bound is 1.
 */
static inline int hak_block_start(const struct hak_fast_table *f, unsigned code, uint32_t off)
{
    return (uint64_t)off * f->div_mul[code] < f->start_limit[code];
}

/* off / stride for any 32-bit off: the high half of off * div_mul (Lemire,
 * Kaser and Kurz, "Faster remainder by direct computation", 2019). */
static inline uint32_t hak_block_index(unsigned code, uint32_t off)
{
    return (uint32_t)(((unsigned __int128)off * hak_fast.div_mul[code]) >> 64);
}

/* Slow paths: one call from a generated fast path when its caches miss. */
/* A table miss of malloc(n), n at most the largest class: the class is looked
 * up there, so that the front keeps no index of its own for it. */
void *hak_alloc_tiers(size_t n) HAK_HIDDEN HAK_NOINLINE;
/* A table miss.  It, and hak_free_keyed below, take p alone and look its class
 * up again: the front's jump to them then needs no register of its own. */
void hak_free_tiers(void *p) HAK_HIDDEN HAK_NOINLINE;
void *hak_alloc_slow(unsigned cls) HAK_HIDDEN HAK_NOINLINE;
void hak_free_slow(unsigned cls, void *p) HAK_HIDDEN HAK_NOINLINE;
void *hak_large_malloc(size_t n) HAK_HIDDEN HAK_NOINLINE;
void hak_free_other(void *p) HAK_HIDDEN HAK_NOINLINE;
/* Give the calling thread its caches if it has none yet: nonzero when it has
 * them (metrics builds call it before counting an operation). */
int hak_thread_setup(void) HAK_HIDDEN HAK_NOINLINE;

/* Misuse found by a guarded front: print "hakmem: free(): ..." and abort. */
HAK_NORETURN void hak_report_invalid(const char *fn, const void *p) HAK_HIDDEN HAK_NOINLINE;
HAK_NORETURN void hak_report_double_free(const char *fn, const void *p) HAK_HIDDEN HAK_NOINLINE;
/* The first for free()'s generated front.  It never returns either, but is
 * not declared noreturn: a front reaches it with a jump instead of a call,
 * so that free needs no stack frame (a call site keeps the stack aligned, two
 * instructions on every free).  The front returns right after it. */
void hak_front_invalid(const void *p) HAK_HIDDEN HAK_NOINLINE;
/* Guarded mode: p carries the cache key.  Reports a double free when p is in
 * the thread's caches or free in its span; otherwise frees p (a tail call from
 * the front, for the same reason). */
void hak_free_keyed(void *p) HAK_HIDDEN HAK_NOINLINE;
/* The same, from a list tier's front, which has taken a place in its bin for
 * p before it read the key (hak_front.h): the place is given back first. */
void hak_free_keyed_listed(void *p) HAK_HIDDEN HAK_NOINLINE;

#endif /* HAK_ABI_H */
