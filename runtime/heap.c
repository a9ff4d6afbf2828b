/*
 * heap.c - per-thread heaps: the spans a thread owns, and frees from others.
 *
 * Every live span has one owner heap.  The owner takes blocks from it and
 * gives its own blocks back without a lock or an atomic read-modify-write.  A
 * block freed by another thread goes onto the span's `remote` list with one
 * compare-and-swap (many producers, one consumer: the owner takes the whole
 * list with an exchange, so there is no ABA), and the freer raises the owner's
 * per-class `remote` hint so that the owner looks at its full spans
 * again.  No path here waits on another thread, except the rare ones that
 * move a span between heaps (thread exit, adoption) or map one.
 *
 * A heap's spans of one class are on two lists: partial (something to hand
 * out: a freed, remote or uncarved block) and full (nothing until a block
 * comes back).  When a thread exits, its heap is released: spans still
 * holding blocks lose their owner and wait on a global per-class abandoned
 * list, where the next thread short of that class adopts them.  Heaps
 * themselves are never unmapped (a late freer may still raise a hint in one);
 * released heaps are reused by new threads.
 */
#include <string.h>

#include "internal.h"

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
    struct remote_hint remote[HAK_NUM_CLASSES];
};

static struct {
    pthread_mutex_t lock;
    struct hak_span *head;
    uint32_t count; /* atomic: read without the lock to skip an empty list */
} abandoned[HAK_NUM_CLASSES] = {
    [0 ... HAK_NUM_CLASSES - 1] = {.lock = PTHREAD_MUTEX_INITIALIZER},
};

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct hak_heap *pool; /* released heaps */

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

/* p's index in its span: the offset times the class's inverse (hak_fast),
 * exact because the offset is a multiple of the size; no division. */
static uint32_t block_index(const struct hak_span *sp, const void *p)
{
    const struct hak_fast_class *f = &hak_fast[sp->cls];
    uint32_t off = (uint32_t)((uintptr_t)p - (uintptr_t)hak_span_base(sp));
    return hak_rotr32(off * f->div_inv, f->div_shift);
}

/* Back onto the span's free list; a block whose live bit is already clear was
 * freed twice. */
static void put_back(struct hak_span *sp, void *p)
{
    uint32_t i = block_index(sp, p);
    uint64_t *word = &live_bits(sp)[i / 64];
    uint64_t bit = UINT64_C(1) << (i % 64);
    if (HAK_UNLIKELY(!(*word & bit)))
        hak_report_double_free("free", p);
    *word &= ~bit;
    *(void **)p = sp->free;
    sp->free = p;
    sp->used--;
}

/* Move the remote list onto the free list; false when it was empty. */
static bool drain_remote(struct hak_span *sp)
{
    if (__atomic_load_n(&sp->remote, __ATOMIC_RELAXED) == NULL)
        return false;
    void *p = __atomic_exchange_n(&sp->remote, NULL, __ATOMIC_ACQUIRE);
    int64_t n = 0;
    while (p) {
        void *next = *(void **)p;
        put_back(sp, p);
        p = next;
        n++;
    }
    HAK_STAT(hak_prof_out_add(sp->cls, -n));
    return true;
}

static uint32_t take_from(struct hak_span *sp, const struct hak_class_info *ci, void **out,
                          uint32_t want)
{
    uint64_t *live = live_bits(sp);
    char *base = hak_span_base(sp);
    uint32_t n = 0;
    do {
        while (n < want && sp->free) {
            void *p = sp->free;
            sp->free = *(void **)p;
            uint32_t i = block_index(sp, p);
            live[i / 64] |= UINT64_C(1) << (i % 64);
            out[n++] = p;
        }
        while (n < want && sp->carved < ci->blocks) {
            uint32_t i = sp->carved++;
            live[i / 64] |= UINT64_C(1) << (i % 64);
            out[n++] = base + (size_t)i * ci->size;
        }
    } while (n < want && drain_remote(sp));
    sp->used += n;
    HAK_STAT(hak_prof_out_add(sp->cls, (int64_t)n));
    return n;
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
        if (drain_remote(sp))
            move_to(hc, sp, LIST_PARTIAL);
    }
}

/* Take over one abandoned span of the class; false when there is none. */
static bool adopt(struct hak_heap *h, unsigned cls)
{
    if (__atomic_load_n(&abandoned[cls].count, __ATOMIC_RELAXED) == 0)
        return false;
    pthread_mutex_lock(&abandoned[cls].lock);
    struct hak_span *sp = abandoned[cls].head;
    if (sp) {
        abandoned[cls].head = sp->next;
        __atomic_store_n(&abandoned[cls].count, abandoned[cls].count - 1, __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&abandoned[cls].lock);
    if (sp == NULL)
        return false;
    sp->list = LIST_NONE;
    /* owner first, then drain: a freer that pushes after our drain sees us */
    __atomic_store_n(&sp->owner, h, __ATOMIC_SEQ_CST);
    drain_remote(sp);
    bool has = sp->free || sp->carved < hak_class_info[cls].blocks;
    move_to(&h->cls[cls], sp, has ? LIST_PARTIAL : LIST_FULL);
    return true;
}

static struct hak_span *new_span(struct hak_heap *h, unsigned cls)
{
    struct hak_span *sp = hak_ss_span_alloc(cls);
    if (sp == NULL)
        return NULL;
    __atomic_store_n(&sp->owner, h, __ATOMIC_RELAXED);
    list_push(&h->cls[cls].partial, sp, LIST_PARTIAL);
    HAK_STAT(hak_tls.stats[cls].spans_mapped++);
    return sp;
}

uint32_t hak_heap_take(struct hak_heap *h, unsigned cls, void **out, uint32_t want)
{
    const struct hak_class_info *ci = &hak_class_info[cls];
    struct heap_class *hc = &h->cls[cls];
    uint32_t n = 0;
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
        if (sp->free == NULL && sp->carved == ci->blocks &&
            __atomic_load_n(&sp->remote, __ATOMIC_RELAXED) == NULL)
            move_to(hc, sp, LIST_FULL);
    }
    return n;
}

/* ---- giving blocks back ---- */

/*
 * Blocks of one span of another heap, collected during a flush and pushed
 * with one compare-and-swap: a thread freeing what another allocated tends
 * to free runs of blocks of the same span.
 */
struct remote_run {
    struct hak_span *sp; /* NULL: empty */
    void *head, *tail;   /* linked through their first word, head first */
    uint32_t n;
    uint32_t local;      /* blocks given back to the heap's own spans (metrics) */
};

static void remote_push(struct remote_run *run, unsigned cls)
{
    struct hak_span *sp = run->sp;
    if (sp == NULL)
        return;
    void *old = __atomic_load_n(&sp->remote, __ATOMIC_RELAXED);
    do {
        *(void **)run->tail = old;
    } while (!__atomic_compare_exchange_n(&sp->remote, &old, run->head, true, __ATOMIC_SEQ_CST,
                                          __ATOMIC_RELAXED));
    HAK_STAT(hak_tls.stats[cls].remote_frees += run->n);
    /* after the push: an owner that clears the hint after this load drains us */
    struct hak_heap *owner = __atomic_load_n(&sp->owner, __ATOMIC_SEQ_CST);
    if (owner && __atomic_load_n(&owner->remote[cls].pending, __ATOMIC_SEQ_CST) == 0)
        __atomic_store_n(&owner->remote[cls].pending, 1, __ATOMIC_SEQ_CST);
    run->sp = NULL;
}

static void give_one(struct hak_heap *h, unsigned cls, void *p, struct remote_run *run)
{
    const struct hak_class_info *ci = &hak_class_info[cls];
    struct hak_span *sp = hak_span_of(p, ci->span_bytes / HAK_SLAB_BYTES);
    if (__atomic_load_n(&sp->owner, __ATOMIC_RELAXED) != h) {
        if (run->sp != sp) {
            remote_push(run, cls);
            *run = (struct remote_run){.sp = sp, .head = p, .tail = p, .local = run->local};
        } else {
            *(void **)p = run->head;
            run->head = p;
        }
        run->n++;
        return;
    }
    struct heap_class *hc = &h->cls[cls];
    put_back(sp, p);
    run->local++;
    if (sp->used == 0 && (hc->partial != sp || sp->next != NULL)) {
        /* empty, and not the class's only partial span: back to the superslab */
        list_remove(list_head(hc, sp->list), sp);
        hak_ss_span_free(sp);
        HAK_STAT(hak_tls.stats[cls].spans_returned++);
    } else {
        move_to(hc, sp, LIST_PARTIAL);
    }
}

void hak_heap_give(struct hak_heap *h, unsigned cls, void *const *blocks, uint32_t n)
{
    struct remote_run run = {0};
    for (uint32_t i = 0; i < n; i++)
        give_one(h, cls, blocks[i], &run);
    remote_push(&run, cls);
    HAK_STAT(hak_prof_out_add(cls, -(int64_t)run.local));
}

void *hak_heap_give_list(struct hak_heap *h, unsigned cls, void *head, uint32_t n)
{
    struct remote_run run = {0};
    for (uint32_t i = 0; i < n && head; i++) {
        void *next = *(void **)head;
        give_one(h, cls, head, &run);
        head = next;
    }
    remote_push(&run, cls);
    HAK_STAT(hak_prof_out_add(cls, -(int64_t)run.local));
    return head;
}

/* ---- heaps: acquire, release (thread exit), the shared heap ---- */

struct hak_heap *hak_heap_acquire(void)
{
    pthread_mutex_lock(&pool_lock);
    struct hak_heap *h = pool;
    if (h != NULL) {
        pool = h->next_unused;
    } else {
        /* a page-rounded batch of heaps; never unmapped (see the top) */
        size_t per = (sizeof *h + 63) & ~(size_t)63;
        size_t len = (per * 16 + HAK_PAGE - 1) & ~(size_t)(HAK_PAGE - 1);
        char *batch = hak_os_map(len);
        if (batch != NULL) {
            for (size_t off = per; off + per <= len; off += per) {
                struct hak_heap *extra = (struct hak_heap *)(batch + off);
                extra->next_unused = pool;
                pool = extra;
            }
            h = (struct hak_heap *)batch;
        }
    }
    pthread_mutex_unlock(&pool_lock);
    return h;
}

static void abandon(unsigned cls, struct hak_span **head)
{
    while (*head) {
        struct hak_span *sp = *head;
        list_remove(head, sp);
        drain_remote(sp);
        if (sp->used == 0) {
            hak_ss_span_free(sp);
            continue;
        }
        __atomic_store_n(&sp->owner, NULL, __ATOMIC_SEQ_CST);
        pthread_mutex_lock(&abandoned[cls].lock);
        sp->next = abandoned[cls].head;
        sp->list = LIST_ABANDONED;
        abandoned[cls].head = sp;
        __atomic_store_n(&abandoned[cls].count, abandoned[cls].count + 1, __ATOMIC_RELAXED);
        pthread_mutex_unlock(&abandoned[cls].lock);
    }
}

void hak_heap_release(struct hak_heap *h)
{
    for (unsigned cls = 0; cls < HAK_NUM_CLASSES; cls++) {
        abandon(cls, &h->cls[cls].partial);
        abandon(cls, &h->cls[cls].full);
        __atomic_store_n(&h->remote[cls].pending, 0, __ATOMIC_RELAXED);
    }
    pthread_mutex_lock(&pool_lock);
    h->next_unused = pool;
    pool = h;
    pthread_mutex_unlock(&pool_lock);
}

struct hak_heap *hak_heap_shared_lock(void)
{
    pthread_mutex_lock(&shared_lock);
    return &shared_heap;
}

void hak_heap_shared_unlock(void)
{
    pthread_mutex_unlock(&shared_lock);
}

/* Abandoned spans whose every block has come back (remotely) are freed. */
void hak_heap_trim_abandoned(void)
{
    for (unsigned cls = 0; cls < HAK_NUM_CLASSES; cls++) {
        if (__atomic_load_n(&abandoned[cls].count, __ATOMIC_RELAXED) == 0)
            continue;
        pthread_mutex_lock(&abandoned[cls].lock);
        struct hak_span **pp = &abandoned[cls].head;
        while (*pp) {
            struct hak_span *sp = *pp;
            drain_remote(sp);
            if (sp->used == 0) {
                *pp = sp->next;
                __atomic_store_n(&abandoned[cls].count, abandoned[cls].count - 1, __ATOMIC_RELAXED);
                hak_ss_span_free(sp);
            } else {
                pp = &sp->next;
            }
        }
        pthread_mutex_unlock(&abandoned[cls].lock);
    }
}

void hak_heap_trim(struct hak_heap *h)
{
    for (unsigned cls = 0; cls < HAK_NUM_CLASSES; cls++) {
        struct heap_class *hc = &h->cls[cls];
        collect(h, cls);
        for (struct hak_span *sp = hc->partial, *next; sp; sp = next) {
            next = sp->next;
            drain_remote(sp);
            if (sp->used == 0) {
                list_remove(&hc->partial, sp);
                hak_ss_span_free(sp);
            }
        }
    }
}

void hak_heap_lock_all(void)
{
    pthread_mutex_lock(&pool_lock);
    pthread_mutex_lock(&shared_lock);
    for (unsigned i = 0; i < HAK_NUM_CLASSES; i++)
        pthread_mutex_lock(&abandoned[i].lock);
}

void hak_heap_unlock_all(void)
{
    for (unsigned i = HAK_NUM_CLASSES; i-- > 0;)
        pthread_mutex_unlock(&abandoned[i].lock);
    pthread_mutex_unlock(&shared_lock);
    pthread_mutex_unlock(&pool_lock);
}
