/*
 * stats.c - the counters of a metrics build (options.metrics: true).
 *
 * Each thread counts into its own struct hak_tls.stats (no atomics on the
 * fast path); a thread's counts are added to the totals when it exits, and at
 * process exit the totals plus every live thread's counts are reported:
 *   HAKMEM_STATS=1         a table on stderr
 *   HAKMEM_STATS=path.csv  CSV: one row per class, then a row "superslabs"
 *                          whose spans_mapped / spans_returned columns count
 *                          superslabs mapped and unmapped.
 * Counts of threads still running at exit are read without stopping them.
 * In a build without metrics this file compiles to nothing.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#if HAK_METRICS

struct stats_node { /* one per live thread, in its TLS */
    struct stats_node *next, *prev;
    struct hak_class_stats *stats;
};

static pthread_mutex_t stats_lock = PTHREAD_MUTEX_INITIALIZER;
static struct stats_node *live_threads;
static struct hak_class_stats totals[HAK_NUM_CLASSES];
static HAK_TLS struct stats_node thread_node;
uint64_t hak_stats_superslabs_mapped, hak_stats_superslabs_returned;

#define FIELDS(X)                                                                          \
    X(alloc_hit[0]) X(alloc_hit[1]) X(alloc_slow) X(free_hit[0]) X(free_hit[1]) X(free_slow) \
    X(refills) X(refill_blocks) X(flushes) X(flush_blocks) X(remote_frees) X(spans_mapped)   \
    X(spans_returned)

static void add(struct hak_class_stats *to, const struct hak_class_stats *from)
{
#define ADD(f) to->f += __atomic_load_n(&from->f, __ATOMIC_RELAXED);
    FIELDS(ADD)
#undef ADD
}

void hak_stats_thread_start(void)
{
    thread_node.stats = hak_tls.stats;
    pthread_mutex_lock(&stats_lock);
    thread_node.prev = NULL;
    thread_node.next = live_threads;
    if (live_threads)
        live_threads->prev = &thread_node;
    live_threads = &thread_node;
    pthread_mutex_unlock(&stats_lock);
}

void hak_stats_thread_exit(void)
{
    pthread_mutex_lock(&stats_lock);
    for (unsigned c = 0; c < HAK_NUM_CLASSES; c++)
        add(&totals[c], &hak_tls.stats[c]);
    memset(hak_tls.stats, 0, sizeof hak_tls.stats);
    if (thread_node.prev)
        thread_node.prev->next = thread_node.next;
    else if (live_threads == &thread_node)
        live_threads = thread_node.next;
    if (thread_node.next)
        thread_node.next->prev = thread_node.prev;
    thread_node.next = thread_node.prev = NULL;
    pthread_mutex_unlock(&stats_lock);
}

static void tier_names(unsigned c, char *out, size_t len, char sep)
{
    const struct hak_class_info *ci = &hak_class_info[c];
    const char *first = ci->ring_first ? "ring" : "sll", *second = ci->ring_first ? "sll" : "ring";
    bool has_first = ci->tiers & (ci->ring_first ? HAK_TIER_RING : HAK_TIER_SLL);
    bool has_second = ci->tiers & (ci->ring_first ? HAK_TIER_SLL : HAK_TIER_RING);
    snprintf(out, len, "%s%s%s%sslab", has_first ? first : "", has_first ? (char[]){sep, 0} : "",
             has_second ? second : "", has_second ? (char[]){sep, 0} : "");
}

static void report_table(FILE *f, const struct hak_class_stats *s)
{
    fprintf(f, "hakmem stats: spec %s hash %s (alloc/free per cache tier in the class's order)\n",
            HAK_SPEC_NAME, HAK_SPEC_HASH);
    fprintf(f, "%5s %6s %-13s %10s %10s %10s %10s %10s %10s %8s %8s %10s %7s %7s\n", "class",
            "size", "tiers", "alloc:t0", "alloc:t1", "alloc:slow", "free:t0", "free:t1",
            "free:slow", "refills", "flushes", "remote", "spans+", "spans-");
    for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
        const struct hak_class_stats *x = &s[c];
        if (!x->alloc_hit[0] && !x->alloc_hit[1] && !x->alloc_slow && !x->free_hit[0] &&
            !x->free_hit[1] && !x->free_slow && !x->remote_frees)
            continue;
        char tiers[32];
        tier_names(c, tiers, sizeof tiers, ',');
        fprintf(f, "%5u %6u %-13s %10lu %10lu %10lu %10lu %10lu %10lu %8lu %8lu %10lu %7lu %7lu\n",
                c, hak_class_info[c].size, tiers, x->alloc_hit[0], x->alloc_hit[1], x->alloc_slow,
                x->free_hit[0], x->free_hit[1], x->free_slow, x->refills, x->flushes,
                x->remote_frees, x->spans_mapped, x->spans_returned);
    }
    fprintf(f, "superslabs mapped %lu, returned %lu\n", hak_stats_superslabs_mapped,
            hak_stats_superslabs_returned);
}

static void report_csv(FILE *f, const struct hak_class_stats *s)
{
    fprintf(f, "class,size,tiers,alloc_tier0,alloc_tier1,alloc_slow,free_tier0,free_tier1,"
               "free_slow,refills,refill_blocks,flushes,flush_blocks,remote_frees,spans_mapped,"
               "spans_returned\n");
    for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
        const struct hak_class_stats *x = &s[c];
        char tiers[32];
        tier_names(c, tiers, sizeof tiers, ';');
        fprintf(f, "%u,%u,%s,%lu,%lu,%lu,%lu,%lu,%lu,%lu,%lu,%lu,%lu,%lu,%lu,%lu\n", c,
                hak_class_info[c].size, tiers, x->alloc_hit[0], x->alloc_hit[1], x->alloc_slow,
                x->free_hit[0], x->free_hit[1], x->free_slow, x->refills, x->refill_blocks,
                x->flushes, x->flush_blocks, x->remote_frees, x->spans_mapped, x->spans_returned);
    }
    fprintf(f, "superslabs,0,,0,0,0,0,0,0,0,0,0,0,0,%lu,%lu\n", hak_stats_superslabs_mapped,
            hak_stats_superslabs_returned);
}

__attribute__((destructor)) static void report_at_exit(void)
{
    const char *where = getenv("HAKMEM_STATS");
    if (where == NULL || *where == '\0' || strcmp(where, "0") == 0)
        return;
    static struct hak_class_stats sum[HAK_NUM_CLASSES];
    pthread_mutex_lock(&stats_lock);
    memcpy(sum, totals, sizeof sum);
    for (struct stats_node *n = live_threads; n; n = n->next)
        for (unsigned c = 0; c < HAK_NUM_CLASSES; c++)
            add(&sum[c], &n->stats[c]);
    pthread_mutex_unlock(&stats_lock);
    if (strcmp(where, "1") == 0) {
        report_table(stderr, sum);
        return;
    }
    FILE *f = fopen(where, "w");
    if (f == NULL) {
        fprintf(stderr, "hakmem: HAKMEM_STATS: cannot write %s\n", where);
        return;
    }
    report_csv(f, sum);
    fclose(f);
}

#endif /* HAK_METRICS */
