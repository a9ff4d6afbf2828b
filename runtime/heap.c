/*
 * heap.c - per-thread heaps: the spans a thread owns, and frees from others.
 *
 * Every live span has one owner heap, which alone takes blocks from it,
 * gives its own blocks back and moves it between lists.  A span's free
 * blocks are the clear bits of its live bitmap below `carved`: taking a
 * block sets its bit, giving it back clears it (a bit already clear is a
 * double free), and handing a block out reads nothing of its memory.  The
 * bitmap and `used` (how many bits are set) are the owner's alone, so none
 * of this needs an atomic.
 *
 * A thread freeing a block of another heap's span sets the block's bit in
 * the span's remote bitmap (a compare-exchange, which also catches a block
 * freed twice), and marks the word in the span's `remote_words` summary when it
 * is the word's first bit: a lock-free multi-producer, single-consumer
 * set.  The owner takes it back word by word with an exchange when it next
 * takes blocks from the span (its slow path: a refill) and clears those
 * live bits then.  The owner takes a word only when its summary bit says
 * so, and only the freer that found the word empty sets that bit: so the
 * other freers touch nothing of the span once their bit is set (by then
 * their block may have been taken back, the span freed and its superslab
 * unmapped).  The one that sets the summary bit then reads the span's owner
 * again, to raise the hint of the heap that owns the span now (it may have
 * been abandoned and adopted since the first read).  Throughout, the
 * freer's heap's `marking` names the span: the purge leaves its superslab
 * mapped, and a fork child finishes a summary its parent's freer had not
 * set (hak_heap_after_fork_child).
 *
 * No block's memory is read or written on either side: a linked list
 * through the blocks (built and measured first) made the owner's drain a
 * chain of dependent misses, one per block, written by another core - 27%
 * of larson's time at 4 threads.  The freer raises the
 * owner's per-class `remote` hint once per run, so that the owner looks at
 * its full spans again.  No path here waits on another thread, except the
 * rare ones that move a span between heaps (thread exit, adoption) or map
 * one.
 *
 * A heap's spans of one class are on two lists: partial (something to hand
 * out: a free or uncarved block, or remote frees) and full (nothing until a
 * block comes back).  When a thread exits, its heap is released: spans still
 * holding blocks lose their owner and wait on a global per-class abandoned
 * list, where the next thread short of that class adopts them (frees keep
 * arriving in their remote bitmaps meanwhile).  A fork child releases the
 * heaps of the parent's other threads the same way, those it can see whole
 * (heap_enter).  Heaps themselves are never unmapped (a late freer may
 * still raise a hint in one); released heaps are reused by new threads.
 */
#include <string.h>

#include "internal.h"

_Static_assert(HAK_SPAN_BLOCKS_MAX <= 64 * 64, "a span's remote words fit one summary word");

#ifdef HAK_TEST_HOOKS
void (*hak_test_hook_remote_owner_read)(void);
void (*hak_test_hook_remote_bit_set)(void);
void (*hak_test_hook_remote_summary_set)(void);
#endif

enum { LIST_NONE, LIST_PARTIAL, LIST_FULL, LIST_ABANDONED };

struct heap_class {
    struct hak_span *partial;
    struct hak_span *full;
};

/* Set by freers, cleared by the owner's collect: a line each, away from the
 * owner's lists, so that a freer's store steals nothing the owner uses. */
struct remote_hint {
    uint32_t pending;
} __attribute__((aligned(64)));

struct hak_heap {
    struct heap_class cls[HAK_NUM_CLASSES];
    struct hak_heap *next_unused; /* in the pool */
    struct hak_heap *next_batch;  /* the first heap of each batch mapped: all heaps */
    /* atomic: the span this heap's thread is freeing a block into in
     * remote_give (NULL: none); read by the purge and the fork child */
    struct hak_span *marking;
    bool live;     /* a thread's, from acquire to release (pool_lock) */
    uint32_t busy; /* atomic: its thread is changing its lists (heap_enter) */
    struct remote_hint remote[HAK_NUM_CLASSES];
};

/*
 * Around every call of a heap's thread that changes the heap's lists.  A
 * fork child may see such a call half done: the other threads go on running
 * while fork() copies the address space, and the child keeps, of each of
 * them, the stores it made before its first store that met a page already
 * copied (in order: x86 makes stores visible in program order).  So the
 * child sees `busy` set whenever it sees any store of the call, and clear
 * only once all of them are in; it releases such a heap only when clear
 * (hak_heap_after_fork_release).  The fences keep the compiler from moving
 * the lists' plain stores across the flag's.
 */
static void heap_enter(struct hak_heap *h)
{
    __atomic_store_n(&h->busy, 1, __ATOMIC_RELAXED);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
}

static void heap_leave(struct hak_heap *h)
{
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    __atomic_store_n(&h->busy, 0, __ATOMIC_RELAXED);
}

/* Per class, the spans of exited threads: those with a free block, which
 * adopt() takes, and those full when abandoned.  adopt() looks at the full
 * ones only when other threads have freed into the class's abandoned spans
 * since it or a trim last did (`freed`), and moves those that got blocks
 * back to the adoptable list.  Every heap short of the class used to adopt
 * every full one first, and its thread's exit abandoned them all again: each
 * thread start cost as many adoptions as earlier threads had left full
 * spans (4,000 of them: 272 us a thread instead of 60). */
static struct {
    pthread_mutex_t lock;
    struct hak_span *head; /* adoptable */
    struct hak_span *full;
    uint32_t count;      /* atomic: spans on head, read without the lock to skip it */
    uint32_t full_count; /* atomic: spans on full */
    uint32_t freed;      /* atomic: frees into the class's abandoned spans since the full ones were looked at */
} abandoned[HAK_NUM_CLASSES] = {
    [0 ... HAK_NUM_CLASSES - 1] = {.lock = PTHREAD_MUTEX_INITIALIZER},
};

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct hak_heap *pool;    /* released heaps */
static struct hak_heap *batches; /* atomic: every batch of heaps mapped (next_batch) */
enum { HEAPS_PER_BATCH = 16 };

/* The heap of threads that have none (exited, or inside start-up). */
static pthread_mutex_t shared_lock = PTHREAD_MUTEX_INITIALIZER;
static struct hak_heap shared_heap;

/* ---- lists ---- */

static struct hak_span **list_head(struct heap_class *hc, uint8_t which)
{
    return which == LIST_PARTIAL ? &hc->partial : &hc->full;
}

static void list_push(struct hak_span **head, struct hak_span *sp, uint8_t which)
{
    sp->prev = NULL;
    sp->next = *head;
    if (*head)
        (*head)->prev = sp;
    *head = sp;
    sp->list = which;
}

static void list_remove(struct hak_span **head, struct hak_span *sp)
{
    if (sp->prev)
        sp->prev->next = sp->next;
    else
        *head = sp->next;
    if (sp->next)
        sp->next->prev = sp->prev;
    sp->list = LIST_NONE;
}

static void move_to(struct heap_class *hc, struct hak_span *sp, uint8_t which)
{
    if (sp->list == which)
        return;
    if (sp->list != LIST_NONE)
        list_remove(list_head(hc, sp->list), sp);
    list_push(list_head(hc, which), sp, which);
}

/* ---- blocks of a span (its owner, or whoever holds it exclusively) ---- */

static uint64_t *live_bits(struct hak_span *sp)
{
    struct hak_superslab *ss = hak_ss_of(sp);
    return ss->live[sp - ss->span];
}

/* p's index in its span, by a multiply (hak_block_index): no division. */
static uint32_t block_index(const struct hak_span *sp, unsigned cls, const void *p)
{
    uint32_t off = (uint32_t)((uintptr_t)p - (uintptr_t)hak_span_base(sp));
    return hak_block_index(cls + 1, off); /* by region code */
}

/* Block i of a span starting at base, its blocks stride bytes apart (take_from
 * passes them from locals). */
static inline void *block_in(char *base, size_t stride, uint32_t i)
{
    return base + (size_t)i * stride;
}

/* The block at index i of sp: block_index's inverse. */
static void *block_at(const struct hak_span *sp, const struct hak_class_info *ci, uint32_t i)
{
    return block_in(hak_span_base(sp), ci->stride, i);
}

/* Give p back: clear its live bit; a bit already clear means p was freed
 * twice. */
HAK_INLINE void release_block(struct hak_span *sp, unsigned cls, void *p)
{
    uint32_t i = block_index(sp, cls, p);
    uint64_t bit = UINT64_C(1) << (i % 64), *word = &live_bits(sp)[i / 64];
    if (HAK_UNLIKELY(!(*word & bit)))
        hak_report_double_free("free", p);
    *word &= ~bit;
    sp->used--;
}

static uint64_t *remote_bits(struct hak_span *sp)
{
    struct hak_superslab *ss = hak_ss_of(sp);
    return ss->remote[sp - ss->span];
}

/* Take back every block other threads have freed into sp: the remote words
 * the summary names (word w under bit w: a span has at most 64 words, the
 * generator's SPAN_MAX_BLOCKS), each emptied with one exchange.  A remote
 * bit whose live bit is already clear is a block freed by another thread
 * and again (by its owner, or after an earlier drain). */
static void drain_remote(struct hak_span *sp, unsigned cls)
{
    /* seq_cst: after adopt()'s store of the owner (see mark_summary) */
    if (__atomic_load_n(&sp->remote_words, __ATOMIC_SEQ_CST) == 0)
        return;
    uint64_t summary = __atomic_exchange_n(&sp->remote_words, 0, __ATOMIC_SEQ_CST);
    uint64_t *remote = remote_bits(sp), *live = live_bits(sp);
    for (; summary; summary &= summary - 1) {
        uint32_t w = (uint32_t)__builtin_ctzll(summary);
        uint64_t r = __atomic_exchange_n(&remote[w], 0, __ATOMIC_SEQ_CST);
        if (HAK_UNLIKELY((live[w] & r) != r))
            hak_report_double_free("free", block_at(sp, &hak_class_info[cls],
                                                    w * 64 + (uint32_t)__builtin_ctzll(r & ~live[w])));
        live[w] &= ~r;
        sp->used -= (uint32_t)__builtin_popcountll(r);
    }
}

/* Up to want free blocks, found in the live bitmap (no block's memory is
 * read), then carved ones; blocks freed by other threads are taken back
 * first. */
static uint32_t take_from(struct hak_span *sp, const struct hak_class_info *ci, void **out,
                          uint32_t want)
{
    drain_remote(sp, sp->cls);
    uint64_t *live = live_bits(sp);
    /* the span's fields in locals, each bitmap word written once: the
     * compiler could not tell the stores to out[] from them */
    char *base = hak_span_base(sp);
    size_t stride = ci->stride;
    uint32_t n = 0, carved = sp->carved, words = (carved + 63) / 64;
    if (sp->used < carved) {
        for (uint32_t k = 0; k < words && n < want; k++) {
            uint32_t w = sp->scan;
            uint64_t valid = (w + 1) * 64 <= carved ? ~UINT64_C(0) : (UINT64_C(1) << (carved % 64)) - 1;
            uint64_t free = ~live[w] & valid, taken = 0;
            while (free && n < want) {
                uint64_t bit = free & -free;
                free ^= bit;
                taken |= bit;
                out[n++] = block_in(base, stride, w * 64 + (uint32_t)__builtin_ctzll(bit));
            }
            live[w] |= taken;
            if (free == 0)
                sp->scan = w + 1 < words ? w + 1 : 0;
        }
    }
    while (n < want && carved < ci->blocks) {
        uint32_t i = carved++;
        live[i / 64] |= UINT64_C(1) << (i % 64);
        out[n++] = block_in(base, stride, i);
    }
    sp->carved = carved;
    sp->used += n;
    HAK_STAT(hak_prof_out_add(sp->cls, (int64_t)n));
    return n;
}

static bool has_free(const struct hak_span *sp, const struct hak_class_info *ci)
{
    return sp->carved < ci->blocks || sp->used < sp->carved ||
           __atomic_load_n(&sp->remote_words, __ATOMIC_SEQ_CST) != 0;
}

/* ---- where a heap gets a span to take from ---- */

/* Full spans that got remote frees since the last look go back to partial. */
static void collect(struct hak_heap *h, unsigned cls)
{
    struct heap_class *hc = &h->cls[cls];
    if (__atomic_load_n(&h->remote[cls].pending, __ATOMIC_RELAXED) == 0)
        return;
    __atomic_store_n(&h->remote[cls].pending, 0, __ATOMIC_SEQ_CST);
    for (struct hak_span *sp = hc->full, *next; sp; sp = next) {
        next = sp->next;
        if (has_free(sp, &hak_class_info[cls]))
            move_to(hc, sp, LIST_PARTIAL);
    }
}

/* Put sp on the class's adoptable list (the caller holds its lock). */
static void push_adoptable(unsigned cls, struct hak_span *sp)
{
    sp->next = abandoned[cls].head;
    abandoned[cls].head = sp;
    __atomic_store_n(&abandoned[cls].count, abandoned[cls].count + 1, __ATOMIC_RELAXED);
}

/* The class's full abandoned spans that blocks have come back to are made
 * adoptable, or freed if empty and free_empty (a trim; adopt() takes them,
 * warm).  The caller holds the lock, which makes them ours. */
static void sort_full(unsigned cls, bool free_empty)
{
    __atomic_store_n(&abandoned[cls].freed, 0, __ATOMIC_SEQ_CST); /* before the drains (remote_end) */
    for (struct hak_span **pp = &abandoned[cls].full; *pp;) {
        struct hak_span *sp = *pp;
        drain_remote(sp, cls);
        if (!has_free(sp, &hak_class_info[cls])) {
            pp = &sp->next;
            continue;
        }
        *pp = sp->next;
        __atomic_store_n(&abandoned[cls].full_count, abandoned[cls].full_count - 1, __ATOMIC_RELAXED);
        if (sp->used == 0 && free_empty)
            hak_ss_span_free(sp);
        else
            push_adoptable(cls, sp);
    }
}

/* Take over one abandoned span of the class, with a free block; false when
 * there is none. */
static bool adopt(struct hak_heap *h, unsigned cls)
{
    bool look_at_full = __atomic_load_n(&abandoned[cls].freed, __ATOMIC_RELAXED) &&
                        __atomic_load_n(&abandoned[cls].full_count, __ATOMIC_RELAXED) != 0;
    if (__atomic_load_n(&abandoned[cls].count, __ATOMIC_RELAXED) == 0 && !look_at_full)
        return false;
    hak_lock(&abandoned[cls].lock);
    if (look_at_full)
        sort_full(cls, false);
    struct hak_span *sp = abandoned[cls].head;
    if (sp) {
        abandoned[cls].head = sp->next;
        __atomic_store_n(&abandoned[cls].count, abandoned[cls].count - 1, __ATOMIC_RELAXED);
    }
    hak_unlock(&abandoned[cls].lock);
    if (sp == NULL)
        return false;
    sp->list = LIST_NONE;
    __atomic_store_n(&sp->owner, h, __ATOMIC_SEQ_CST);
    drain_remote(sp, cls);
    move_to(&h->cls[cls], sp, has_free(sp, &hak_class_info[cls]) ? LIST_PARTIAL : LIST_FULL);
    return true;
}

static struct hak_span *new_span(struct hak_heap *h, unsigned cls)
{
    struct hak_span *sp = hak_ss_span_alloc(cls);
    if (sp == NULL)
        return NULL;
    __atomic_store_n(&sp->owner, h, __ATOMIC_RELEASE);
    list_push(&h->cls[cls].partial, sp, LIST_PARTIAL);
    HAK_THREAD_STAT(hak_tls.stats[cls].spans_mapped++);
    return sp;
}

uint32_t hak_heap_take(struct hak_heap *h, unsigned cls, void **out, uint32_t want)
{
    const struct hak_class_info *ci = &hak_class_info[cls];
    struct heap_class *hc = &h->cls[cls];
    uint32_t n = 0;
    heap_enter(h);
    while (n < want) {
        struct hak_span *sp = hc->partial;
        if (sp == NULL) {
            collect(h, cls);
            while (hc->partial == NULL && adopt(h, cls))
                ;
            if ((sp = hc->partial) == NULL && (sp = new_span(h, cls)) == NULL)
                break; /* out of memory: hand out what we have */
        }
        n += take_from(sp, ci, out + n, want - n);
        if (!has_free(sp, ci))
            move_to(hc, sp, LIST_FULL);
    }
    heap_leave(h);
    return n;
}

/* Guarded mode (thread.c's hak_free_keyed): whether block p, a block start
 * in a live span of class cls, is free in a span that h owns: its live bit is
 * clear (given back, or never handed out), or another thread's free of it
 * waits in the remote bitmap.  False for another heap's span, whose bitmap is
 * not h's to read. */
bool hak_heap_holds_free(struct hak_heap *h, unsigned cls, const void *p)
{
    struct hak_span *sp = hak_span_of(p, hak_class_info[cls].span_bytes / HAK_SLAB_BYTES);
    if (__atomic_load_n(&sp->owner, __ATOMIC_RELAXED) != h)
        return false;
    uint32_t i = block_index(sp, cls, p);
    uint64_t bit = UINT64_C(1) << (i % 64);
    return !(live_bits(sp)[i / 64] & bit) ||
           (__atomic_load_n(&remote_bits(sp)[i / 64], __ATOMIC_RELAXED) & bit);
}

#if HAK_METRICS
uint32_t hak_heap_foreign_blocks(struct hak_heap *h, unsigned cls, void *const *blocks, uint32_t n)
{
    unsigned units = hak_class_info[cls].span_bytes / HAK_SLAB_BYTES;
    uint32_t foreign = 0;
    for (uint32_t i = 0; i < n; i++) /* a cached block keeps its span live: sp stays valid */
        foreign += __atomic_load_n(&hak_span_of(blocks[i], units)->owner, __ATOMIC_RELAXED) != h;
    return foreign;
}
#endif

/* ---- giving blocks back ---- */

/* Set word w's bit in sp's summary, which lets the owner take the word, and
 * return sp's owner as of then.  Both are seq_cst against adopt()'s store of
 * the owner and its drain: either the adopter's drain sees the bit or the
 * load here sees the adopter (a first read may have found the span
 * abandoned, or owned by a heap that abandoned it since).  The load comes
 * after the block can be taken back: the freer's `marking` keeps the
 * superslab mapped until then (hak_ss_purge asks hak_heap_marking); the span
 * itself may have been freed and given to another heap, whose hint is then
 * raised for nothing. */
static struct hak_heap *mark_summary(struct hak_span *sp, uint32_t w)
{
    __atomic_fetch_or(&sp->remote_words, UINT64_C(1) << w, __ATOMIC_SEQ_CST);
    HAK_TEST_POINT(remote_summary_set);
    return __atomic_load_n(&sp->owner, __ATOMIC_SEQ_CST);
}

/* Any thread but sp's owner (h: the freer's heap): set `bits`, blocks of
 * sp, in word w of sp's remote bitmap; a bit already set means its block
 * was freed twice.  The owner takes a word's bits only after the summary
 * names the word, and the summary bit is set by the one freer that found
 * the word empty: its blocks and every later one in the word wait for it.
 * A freer that found the word holding bits sets nothing more: by then its
 * blocks may have been taken back and sp freed.  Returns the heap that
 * owned sp once the summary bit was set, or `owner` when this freer set
 * none. */
static struct hak_heap *remote_give(struct hak_heap *h, struct hak_span *sp, unsigned cls,
                                    uint32_t w, uint64_t bits, struct hak_heap *owner)
{
    uint64_t *word = &remote_bits(sp)[w];
    /* the seq_cst exchange below publishes it to whoever takes the bits back,
     * and so to the purge after that owner frees the span (release: a plain
     * store on x86, and no reliance on a relaxed store's place in the
     * release sequence) */
    __atomic_store_n(&h->marking, sp, __ATOMIC_RELEASE);
    /* a compare-exchange, not an OR: the whole old word says whether this
     * freer marks the summary, and a double free changes nothing before it
     * stops the program */
    uint64_t old = __atomic_load_n(word, __ATOMIC_RELAXED);
    do {
        if (HAK_UNLIKELY(old & bits))
            hak_report_double_free("free", block_at(sp, &hak_class_info[cls],
                                                    w * 64 + (uint32_t)__builtin_ctzll(old & bits)));
    } while (!__atomic_compare_exchange_n(word, &old, old | bits, true, __ATOMIC_SEQ_CST,
                                          __ATOMIC_RELAXED));
    HAK_TEST_POINT(remote_bit_set);
    if (old == 0)
        owner = mark_summary(sp, w);
    __atomic_store_n(&h->marking, NULL, __ATOMIC_RELEASE);
    return owner;
}

/*
 * The frees of one give into spans of other heaps.  Consecutive blocks of
 * one remote word are gathered and set together, one compare-exchange for
 * them all (a thread freeing another's blocks often frees them in the order
 * they were carved: larson's hand-over frees a whole array).  Gathered
 * blocks are still the freer's: no other thread can see them until the word
 * is set, and each keeps its span live (counted in `used`), so the span's
 * owner read for the first block holds for the rest.  The hint of the
 * owner is raised once per run of frees into one heap, after the bits are
 * set.
 */
struct remote_run {
    struct hak_heap *owner; /* whose hint is owed (NULL: none yet, or the spans are abandoned) */
    uint32_t n;             /* blocks set since that hint was last raised (metrics only) */
    struct hak_span *sp;    /* the word being gathered: its span (NULL: none) */
    uint32_t w;             /* its index in sp's remote bitmap */
    uint64_t bits;          /* the blocks gathered in it */
    struct hak_heap *sp_owner; /* sp's owner as read for the word's first block */
    size_t to_abandoned;    /* bytes set in spans found abandoned */
};

/* Bytes freed into abandoned spans since hak_heap_trim_abandoned last
 * looked (atomic): no heap takes them back, so they are the decay layer's
 * to note, or an exited thread's spans would keep what another thread freed
 * until malloc_trim. */
static size_t abandoned_freed;

static void remote_hint(struct remote_run *run, unsigned cls)
{
    /* after the bits are set: an owner that clears the hint after this load
     * sees them in its collect */
    struct hak_heap *owner = run->owner;
    if (owner && __atomic_load_n(&owner->remote[cls].pending, __ATOMIC_SEQ_CST) == 0)
        __atomic_store_n(&owner->remote[cls].pending, 1, __ATOMIC_SEQ_CST);
    HAK_THREAD_STAT(hak_tls.stats[cls].remote_frees += run->n);
    run->owner = NULL;
    run->n = 0;
}

/* Set the gathered word, if any. */
static void remote_set_word(struct hak_heap *h, unsigned cls, struct remote_run *run)
{
    if (run->sp == NULL)
        return;
    struct hak_heap *now = remote_give(h, run->sp, cls, run->w, run->bits, run->sp_owner);
    if (now == NULL || now == &shared_heap) /* no thread's heap takes them back */
        run->to_abandoned += (size_t)__builtin_popcountll(run->bits) * hak_class_info[cls].stride;
    if (now != run->owner)
        remote_hint(run, cls);
    run->owner = now;
    HAK_STAT(run->n += (uint32_t)__builtin_popcountll(run->bits)); /* no popcount otherwise */
    run->sp = NULL;
}

/* Start gathering word i / 64 of sp, another heap's span, with block i. */
static void remote_gather(struct remote_run *run, struct hak_span *sp, uint32_t i,
                          struct hak_heap *owner)
{
    run->sp = sp;
    run->w = i / 64;
    run->bits = UINT64_C(1) << (i % 64);
    run->sp_owner = owner;
}

/* inlined into the two loops that give: a call per block saved and restored
 * five registers (17 of its 80 instructions) */
HAK_INLINE void give_one(struct hak_heap *h, unsigned cls, void *p, struct remote_run *run)
{
    const struct hak_class_info *ci = &hak_class_info[cls];
    struct hak_span *sp = hak_span_of(p, ci->span_bytes / HAK_SLAB_BYTES);
    if (sp == run->sp) {
        /* the span of the word being gathered: another heap's (see struct remote_run) */
        uint32_t i = block_index(sp, cls, p);
        uint64_t bit = UINT64_C(1) << (i % 64);
        if (i / 64 == run->w) {
            if (HAK_UNLIKELY(run->bits & bit))
                hak_report_double_free("free", p);
            run->bits |= bit;
            return;
        }
        struct hak_heap *owner = run->sp_owner;
        remote_set_word(h, cls, run);
        remote_gather(run, sp, i, owner);
        return;
    }
    if (run->sp != NULL) /* tested here: a call per block, mostly to return */
        remote_set_word(h, cls, run);
    /* Only h itself makes a span of h's someone else's (at its exit), so
     * owner == h stays true through this call; any other answer may change,
     * and the block goes to the remote bitmap whoever ends up draining it. */
    struct hak_heap *owner = __atomic_load_n(&sp->owner, __ATOMIC_ACQUIRE);
    if (owner != h) {
        HAK_TEST_POINT(remote_owner_read);
        remote_gather(run, sp, block_index(sp, cls, p), owner);
        return;
    }
    struct heap_class *hc = &h->cls[cls];
    release_block(sp, cls, p);
    if (sp->used == 0 && (hc->partial != sp || sp->next != NULL)) {
        /* empty, and not the class's only partial span: back to the superslab */
        list_remove(list_head(hc, sp->list), sp);
        hak_ss_span_free(sp);
        HAK_THREAD_STAT(hak_tls.stats[cls].spans_returned++);
    } else if (sp->list != LIST_PARTIAL) {
        move_to(hc, sp, LIST_PARTIAL);
    }
}

/* The end of a give: the last word is set and the last owner's hint raised. */
static void remote_end(struct hak_heap *h, unsigned cls, struct remote_run *run)
{
    remote_set_word(h, cls, run);
    remote_hint(run, cls);
    /* seq_cst, after the bits: either sort_full's drain sees them, or it
     * cleared the flag before this load (adopt() then looks again) */
    if (run->to_abandoned != 0 && !__atomic_load_n(&abandoned[cls].freed, __ATOMIC_SEQ_CST))
        __atomic_store_n(&abandoned[cls].freed, 1, __ATOMIC_SEQ_CST);
    if (run->to_abandoned != 0)
        hak_decay_note(HAK_DECAY_ABANDONED,
                       __atomic_add_fetch(&abandoned_freed, run->to_abandoned, __ATOMIC_RELAXED));
}

void hak_heap_give(struct hak_heap *h, unsigned cls, void *const *blocks, uint32_t n)
{
    struct remote_run run = {0};
    heap_enter(h);
    for (uint32_t i = 0; i < n; i++)
        give_one(h, cls, blocks[i], &run);
    remote_end(h, cls, &run);
    heap_leave(h);
    HAK_STAT(hak_prof_out_add(cls, -(int64_t)n));
}

void *hak_heap_give_list(struct hak_heap *h, unsigned cls, void *head, uint32_t n)
{
    struct remote_run run = {0};
    uint32_t given = 0;
    heap_enter(h);
    for (; given < n && head; given++) {
        void *next = HAK_BLOCK(head)->next; /* a cache list's link */
        give_one(h, cls, head, &run);
        head = next;
    }
    remote_end(h, cls, &run);
    heap_leave(h);
    HAK_STAT(hak_prof_out_add(cls, -(int64_t)given));
    return head;
}

/* ---- heaps: acquire, release (thread exit), the shared heap ---- */

struct hak_heap *hak_heap_acquire(void)
{
    hak_lock(&pool_lock);
    struct hak_heap *h = pool;
    if (h != NULL) {
        pool = h->next_unused;
    } else {
        /* a batch of heaps; never unmapped (see the top) */
        char *batch = hak_os_map(HEAPS_PER_BATCH * sizeof *h);
        if (batch != NULL) {
            for (size_t k = 1; k < HEAPS_PER_BATCH; k++) {
                struct hak_heap *extra = (struct hak_heap *)batch + k;
                extra->next_unused = pool;
                pool = extra;
            }
            h = (struct hak_heap *)batch;
            h->next_batch = batches;
            __atomic_store_n(&batches, h, __ATOMIC_RELEASE);
        }
    }
    if (h != NULL)
        h->live = true;
    hak_unlock(&pool_lock);
    return h;
}

static void abandon(unsigned cls, struct hak_span **head)
{
    while (*head) {
        struct hak_span *sp = *head;
        list_remove(head, sp);
        drain_remote(sp, cls);
        if (sp->used == 0) {
            hak_ss_span_free(sp);
            continue;
        }
        bool full = !has_free(sp, &hak_class_info[cls]); /* before: the owner's fields */
        __atomic_store_n(&sp->owner, NULL, __ATOMIC_SEQ_CST);
        hak_lock(&abandoned[cls].lock);
        sp->list = LIST_ABANDONED;
        if (full) {
            sp->next = abandoned[cls].full;
            abandoned[cls].full = sp;
            __atomic_store_n(&abandoned[cls].full_count, abandoned[cls].full_count + 1, __ATOMIC_RELAXED);
        } else {
            push_adoptable(cls, sp);
        }
        hak_unlock(&abandoned[cls].lock);
    }
}

void hak_heap_release(struct hak_heap *h)
{
    heap_enter(h);
    for (unsigned cls = 0; cls < HAK_NUM_CLASSES; cls++) {
        abandon(cls, &h->cls[cls].partial);
        abandon(cls, &h->cls[cls].full);
        __atomic_store_n(&h->remote[cls].pending, 0, __ATOMIC_RELAXED);
    }
    heap_leave(h);
    hak_lock(&pool_lock);
    h->live = false;
    h->next_unused = pool;
    pool = h;
    hak_unlock(&pool_lock);
}

struct hak_heap *hak_heap_shared_lock(void)
{
    hak_lock(&shared_lock);
    return &shared_heap;
}

/* The shared heap, or NULL when another thread holds it, or this one. */
struct hak_heap *hak_heap_shared_trylock(void)
{
    return hak_trylock(&shared_lock) ? &shared_heap : NULL;
}

void hak_heap_shared_unlock(void)
{
    hak_unlock(&shared_lock);
}

size_t hak_heap_abandoned_freed(void)
{
    return __atomic_load_n(&abandoned_freed, __ATOMIC_RELAXED);
}

/* Abandoned spans whose every block has come back (remotely) are freed, and
 * so are the shared heap's: it takes back other threads' frees only when a
 * thread with no heap allocates the class again, so what exited threads'
 * destructors allocated stayed there for good once freed elsewhere.  Its
 * lock is only tried (the caller may hold it: hak_decay_note). */
void hak_heap_trim_abandoned(void)
{
    /* before the drains: what is freed from here on is noted again */
    __atomic_store_n(&abandoned_freed, 0, __ATOMIC_RELAXED);
    if (hak_heap_shared_trylock() != NULL) {
        hak_heap_trim(&shared_heap);
        hak_heap_shared_unlock();
    }
    for (unsigned cls = 0; cls < HAK_NUM_CLASSES; cls++) {
        if (__atomic_load_n(&abandoned[cls].count, __ATOMIC_RELAXED) == 0 &&
            __atomic_load_n(&abandoned[cls].full_count, __ATOMIC_RELAXED) == 0)
            continue;
        hak_lock(&abandoned[cls].lock);
        struct hak_span **pp = &abandoned[cls].head;
        while (*pp) {
            struct hak_span *sp = *pp;
            drain_remote(sp, cls); /* the abandoned lists' lock makes it ours */
            if (sp->used == 0) {
                *pp = sp->next;
                __atomic_store_n(&abandoned[cls].count, abandoned[cls].count - 1, __ATOMIC_RELAXED);
                hak_ss_span_free(sp);
            } else {
                pp = &sp->next;
            }
        }
        sort_full(cls, true);
        hak_unlock(&abandoned[cls].lock);
    }
}

void hak_heap_trim(struct hak_heap *h)
{
    heap_enter(h);
    for (unsigned cls = 0; cls < HAK_NUM_CLASSES; cls++) {
        struct heap_class *hc = &h->cls[cls];
        collect(h, cls);
        for (struct hak_span *sp = hc->partial, *next; sp; sp = next) {
            next = sp->next;
            drain_remote(sp, cls);
            if (sp->used == 0) {
                list_remove(&hc->partial, sp);
                hak_ss_span_free(sp);
            }
        }
    }
    heap_leave(h);
}

static bool marks(struct hak_heap *hp, const struct hak_superslab *ss)
{
    struct hak_span *sp = __atomic_load_n(&hp->marking, __ATOMIC_SEQ_CST);
    return sp != NULL && hak_ss_of(sp) == ss;
}

/* Whether some thread is freeing a block into a span of ss (remote_give):
 * the purge then leaves ss mapped, though it is empty.  Every heap is
 * asked: the shared one, and all of every batch (never unmapped). */
bool hak_heap_marking(const struct hak_superslab *ss)
{
    if (marks(&shared_heap, ss))
        return true;
    for (struct hak_heap *b = __atomic_load_n(&batches, __ATOMIC_ACQUIRE); b; b = b->next_batch)
        for (size_t k = 0; k < HEAPS_PER_BATCH; k++)
            if (marks(&b[k], ss))
                return true;
    return false;
}

/* Fork child: finish what a parent thread (gone now) was doing in a run of
 * remote frees when the fork came.  In remote_give it may have set its
 * block's remote bit and not yet the word's summary bit, which no later
 * free into the word would set: every word of its span that holds bits is
 * summarised.  And it may have set summaries and not yet raised the run's
 * hint (remote_hint comes at the end of a run): every class's hint of
 * every heap is raised, so each looks at its full spans once. */
static void finish_frees(struct hak_heap *hp)
{
    for (unsigned cls = 0; cls < HAK_NUM_CLASSES; cls++)
        hp->remote[cls].pending = 1;
    struct hak_span *sp = hp->marking;
    hp->marking = NULL;
    if (sp == NULL || sp->units == 0) /* none, or the span was freed meanwhile */
        return;
    uint64_t *remote = remote_bits(sp);
    for (uint32_t w = 0; w < (sp->carved + 63) / 64; w++)
        if (remote[w] != 0)
            sp->remote_words |= UINT64_C(1) << w;
}

void hak_heap_after_fork_child(void)
{
    finish_frees(&shared_heap);
    for (struct hak_heap *b = batches; b; b = b->next_batch)
        for (size_t k = 0; k < HEAPS_PER_BATCH; k++)
            finish_frees(&b[k]);
}

/* Fork child, its locks released: the heaps of the parent's other threads
 * (gone here) are released as at a thread's exit, so that their spans are
 * abandoned and what the child frees into them comes back (adopted, or
 * trimmed when empty) instead of waiting for an owner that never drains.
 * A heap caught in a call that changes its lists (busy) is left as it is:
 * its lists may be half changed.  What those threads' caches held stays
 * used. */
void hak_heap_after_fork_release(struct hak_heap *mine)
{
    for (struct hak_heap *b = batches; b; b = b->next_batch)
        for (size_t k = 0; k < HEAPS_PER_BATCH; k++) {
            struct hak_heap *h = &b[k];
            if (h != mine && h->live && __atomic_load_n(&h->busy, __ATOMIC_RELAXED) == 0)
                hak_heap_release(h);
        }
}

void hak_heap_lock_all(void)
{
    hak_lock(&pool_lock);
    hak_lock(&shared_lock);
    for (unsigned i = 0; i < HAK_NUM_CLASSES; i++)
        hak_lock(&abandoned[i].lock);
}

void hak_heap_unlock_all(void)
{
    for (unsigned i = HAK_NUM_CLASSES; i-- > 0;)
        hak_unlock(&abandoned[i].lock);
    hak_unlock(&shared_lock);
    hak_unlock(&pool_lock);
}
