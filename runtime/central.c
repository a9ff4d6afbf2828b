/*
 * central.c - per-class lists of spans behind the thread caches.
 *
 * A class's partial list holds its live spans that have a given-back or an
 * uncarved block; full spans are on no list (a block freed into one puts it
 * back).  A span whose last block comes back is returned to its superslab,
 * unless it is the class's only partial span (so a class that hovers around
 * one span does not map and unmap it on every flush).  Each class has its own
 * lock, taken once per batch of `refill` blocks.
 *
 * The live bitmap records which blocks are out: a block given back whose bit
 * is already clear was freed twice, and is reported instead of corrupting the
 * list.
 */
#include "internal.h"

struct central {
    pthread_mutex_t lock;
    struct hak_span *partial;
} __attribute__((aligned(64)));

static struct central central[HAK_NUM_CLASSES] = {
    [0 ... HAK_NUM_CLASSES - 1] = {.lock = PTHREAD_MUTEX_INITIALIZER},
};

static void partial_push(struct central *c, struct hak_span *sp)
{
    sp->prev = NULL;
    sp->next = c->partial;
    if (c->partial)
        c->partial->prev = sp;
    c->partial = sp;
    sp->in_partial = true;
}

static void partial_remove(struct central *c, struct hak_span *sp)
{
    if (sp->prev)
        sp->prev->next = sp->next;
    else
        c->partial = sp->next;
    if (sp->next)
        sp->next->prev = sp->prev;
    sp->in_partial = false;
}

static uint64_t *live_bits(struct hak_span *sp)
{
    struct hak_superslab *ss = hak_ss_of(sp);
    return ss->live[sp - ss->span];
}

static uint32_t block_index(const struct hak_span *sp, const void *p, uint32_t size)
{
    return (uint32_t)(((uintptr_t)p - (uintptr_t)hak_span_base(sp)) / size);
}

/* Take up to want blocks of class cls from one span; the span is on the list. */
static uint32_t take_from(struct central *c, struct hak_span *sp, uint32_t size, uint32_t blocks,
                          void **out, uint32_t want)
{
    uint64_t *live = live_bits(sp);
    char *base = hak_span_base(sp);
    uint32_t n = 0;
    while (n < want && sp->free) {
        void *p = sp->free;
        sp->free = *(void **)p;
        uint32_t i = block_index(sp, p, size);
        live[i / 64] |= UINT64_C(1) << (i % 64);
        out[n++] = p;
    }
    while (n < want && sp->carved < blocks) {
        uint32_t i = sp->carved++;
        live[i / 64] |= UINT64_C(1) << (i % 64);
        out[n++] = base + (size_t)i * size;
    }
    sp->used += n;
    if (sp->free == NULL && sp->carved == blocks)
        partial_remove(c, sp);
    return n;
}

uint32_t hak_central_take(unsigned cls, void **out, uint32_t want)
{
    const struct hak_class_info *ci = &hak_class_info[cls];
    struct central *c = &central[cls];
    uint32_t n = 0;
    pthread_mutex_lock(&c->lock);
    while (n < want) {
        struct hak_span *sp = c->partial;
        if (sp == NULL) {
            sp = hak_ss_span_alloc(cls);
            if (sp == NULL)
                break; /* out of memory: hand out what we have */
            partial_push(c, sp);
        }
        n += take_from(c, sp, ci->size, ci->blocks, out + n, want - n);
    }
    pthread_mutex_unlock(&c->lock);
    return n;
}

static void give_one(struct central *c, const struct hak_class_info *ci, void *p)
{
    struct hak_span *sp = hak_span_of(p, ci->span_bytes / HAK_SLAB_BYTES);
    uint32_t i = block_index(sp, p, ci->size);
    uint64_t *word = &live_bits(sp)[i / 64];
    uint64_t bit = UINT64_C(1) << (i % 64);
    if (HAK_UNLIKELY(!(*word & bit))) {
        pthread_mutex_unlock(&c->lock);
        hak_report_double_free("free", p);
    }
    *word &= ~bit;
    *(void **)p = sp->free;
    sp->free = p;
    if (!sp->in_partial)
        partial_push(c, sp);
    if (--sp->used == 0 && (sp->prev || sp->next)) {
        partial_remove(c, sp);
        hak_ss_span_free(sp);
    }
}

void hak_central_give(unsigned cls, void *const *blocks, uint32_t n)
{
    struct central *c = &central[cls];
    pthread_mutex_lock(&c->lock);
    for (uint32_t i = 0; i < n; i++)
        give_one(c, &hak_class_info[cls], blocks[i]);
    pthread_mutex_unlock(&c->lock);
}

void *hak_central_give_list(unsigned cls, void *head, uint32_t n)
{
    struct central *c = &central[cls];
    pthread_mutex_lock(&c->lock);
    for (uint32_t i = 0; i < n && head; i++) {
        void *next = *(void **)head;
        give_one(c, &hak_class_info[cls], head);
        head = next;
    }
    pthread_mutex_unlock(&c->lock);
    return head;
}

void hak_central_lock_all(void)
{
    for (unsigned i = 0; i < HAK_NUM_CLASSES; i++)
        pthread_mutex_lock(&central[i].lock);
}

void hak_central_unlock_all(void)
{
    for (unsigned i = HAK_NUM_CLASSES; i-- > 0;)
        pthread_mutex_unlock(&central[i].lock);
}
