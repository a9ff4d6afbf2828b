/*
 * stats.c - the counters of a metrics build (options.metrics: true).
 *
 * Each thread counts into its own struct hak_thread_block.stats (no atomics on the
 * fast path); a thread's counts are added to the totals when it exits, and at
 * process exit the totals plus every live thread's counts are reported:
 *   HAKMEM_STATS=1         a table on stderr
 *   HAKMEM_STATS=path.csv  CSV: one row per class, then a row "superslabs"
 *                          whose spans_mapped / spans_returned columns count
 *                          superslabs mapped and unmapped.
 * Counts of threads still running at exit are read without stopping them.
 *
 * The same builds record a profile (struct hak_prof, per thread) and write it
 * at exit as JSON when HAKMEM_PROFILE=path.json: the histogram of requested
 * sizes (by 16 bytes), the peak number of blocks out of spans per class (with
 * the program or in thread caches), the bursts of each class, the threads
 * seen and the share of frees that went to another thread's span.  It is
 * what `gen/hakgen tune` reads.
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
    struct hak_prof *prof;
};

static pthread_mutex_t stats_lock = PTHREAD_MUTEX_INITIALIZER;
static struct stats_node *live_threads;
static struct hak_class_stats totals[HAK_NUM_CLASSES];
static struct hak_prof prof_totals;
static uint64_t threads_seen;
static int64_t prof_out[HAK_NUM_CLASSES], prof_peak[HAK_NUM_CLASSES]; /* atomic */

void hak_prof_out_add(unsigned cls, int64_t delta)
{
    int64_t now = __atomic_add_fetch(&prof_out[cls], delta, __ATOMIC_RELAXED);
    int64_t peak = __atomic_load_n(&prof_peak[cls], __ATOMIC_RELAXED);
    while (now > peak &&
           !__atomic_compare_exchange_n(&prof_peak[cls], &peak, now, true, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED))
        ;
}

/* Add a thread's profile to `to`, counting its bursts still running. */
static void prof_add(struct hak_prof *to, const struct hak_prof *from)
{
    for (unsigned i = 0; i < HAK_PROF_SIZE_BUCKETS; i++)
        to->size_hist[i] += from->size_hist[i];
    for (unsigned i = 0; i < 64; i++)
        to->large_hist[i] += from->large_hist[i];
    for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
        for (unsigned k = 0; k < 2; k++)
            for (unsigned b = 0; b < HAK_PROF_BURST_BUCKETS; b++)
                to->bursts[c][k][b] += from->bursts[c][k][b];
        if (from->run_kind[c] != 0 && from->run[c] != 0)
            to->bursts[c][from->run_kind[c] - 1][31 - __builtin_clz(from->run[c])]++;
    }
}
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
    thread_node.prof = &hak_tls.prof;
    hak_lock(&stats_lock);
    threads_seen++;
    thread_node.prev = NULL;
    thread_node.next = live_threads;
    if (live_threads)
        live_threads->prev = &thread_node;
    live_threads = &thread_node;
    hak_unlock(&stats_lock);
}

/* fork: the child must not inherit the lock held by another thread */
void hak_stats_lock(void)
{
    hak_lock(&stats_lock);
}

void hak_stats_unlock(void)
{
    hak_unlock(&stats_lock);
}

/* fork, in the child (the lock held since prepare): only the forking thread
 * exists.  The others' nodes are in TLS that glibc hands to the child's new
 * threads (its stack cache), whose start would link the same node again - a
 * loop in the list.  Their counts go to the totals, their nodes off the list. */
void hak_stats_after_fork_child(void)
{
    for (struct stats_node *n = live_threads; n; n = n->next) {
        if (n == &thread_node)
            continue;
        for (unsigned c = 0; c < HAK_NUM_CLASSES; c++)
            add(&totals[c], &n->stats[c]);
        prof_add(&prof_totals, n->prof);
    }
    live_threads = NULL;
    if (thread_node.stats != NULL) { /* this thread has its caches: it stays */
        thread_node.prev = thread_node.next = NULL;
        live_threads = &thread_node;
    }
    hak_unlock(&stats_lock);
}

void hak_stats_thread_exit(void)
{
    hak_lock(&stats_lock);
    for (unsigned c = 0; c < HAK_NUM_CLASSES; c++)
        add(&totals[c], &hak_tls.stats[c]);
    memset(hak_tls.stats, 0, sizeof hak_tls.stats);
    prof_add(&prof_totals, &hak_tls.prof);
    memset(&hak_tls.prof, 0, sizeof hak_tls.prof);
    if (thread_node.prev)
        thread_node.prev->next = thread_node.next;
    else if (live_threads == &thread_node)
        live_threads = thread_node.next;
    if (thread_node.next)
        thread_node.next->prev = thread_node.prev;
    thread_node.next = thread_node.prev = NULL;
    hak_unlock(&stats_lock);
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

static void write_bursts(FILE *f, const uint64_t *b)
{
    fputc('[', f);
    bool first = true;
    for (unsigned k = 0; k < HAK_PROF_BURST_BUCKETS; k++) {
        if (b[k] == 0)
            continue;
        fprintf(f, "%s[%lu, %lu]", first ? "" : ", ", 1ul << k, b[k]);
        first = false;
    }
    fputc(']', f);
}

static void write_profile(const char *path, const struct hak_class_stats *s,
                          const struct hak_prof *p)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "hakmem: HAKMEM_PROFILE: cannot write %s\n", path);
        return;
    }
    uint64_t frees = 0, remote = 0;
    for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
        frees += s[c].free_hit[0] + s[c].free_hit[1] + s[c].free_slow;
        remote += s[c].remote_frees;
    }
    fprintf(f, "{\n  \"format\": \"hakmem-profile\",\n  \"version\": 1,\n");
    fprintf(f, "  \"spec\": {\"name\": \"%s\", \"hash\": \"%s\"},\n", HAK_SPEC_NAME, HAK_SPEC_HASH);
    fprintf(f, "  \"threads\": %lu,\n", threads_seen);
    fprintf(f, "  \"cross_thread_free_share\": %.6f,\n", frees ? (double)remote / (double)frees : 0.0);
    fprintf(f, "  \"size_histogram\": [");
    bool first = true;
    for (unsigned i = 0; i < HAK_PROF_SIZE_BUCKETS; i++) {
        if (p->size_hist[i] == 0)
            continue;
        fprintf(f, "%s[%u, %lu]", first ? "" : ", ", i * 16, p->size_hist[i]);
        first = false;
    }
    fprintf(f, "],\n  \"large_histogram\": [");
    first = true;
    for (unsigned i = 0; i < 64; i++) {
        if (p->large_hist[i] == 0)
            continue;
        fprintf(f, "%s[%lu, %lu]", first ? "" : ", ", i >= 63 ? ~0ul : (1ul << i) - 1, p->large_hist[i]);
        first = false;
    }
    fprintf(f, "],\n  \"classes\": [\n");
    for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
        const struct hak_class_stats *x = &s[c];
        fprintf(f, "    {\"size\": %u, \"allocs\": %lu, \"frees\": %lu, \"peak_out\": %ld, "
                   "\"remote_frees\": %lu, \"alloc_bursts\": ",
                hak_class_info[c].size, x->alloc_hit[0] + x->alloc_hit[1] + x->alloc_slow,
                x->free_hit[0] + x->free_hit[1] + x->free_slow,
                __atomic_load_n(&prof_peak[c], __ATOMIC_RELAXED), x->remote_frees);
        write_bursts(f, p->bursts[c][HAK_PROF_ALLOC]);
        fprintf(f, ", \"free_bursts\": ");
        write_bursts(f, p->bursts[c][HAK_PROF_FREE]);
        fprintf(f, "}%s\n", c + 1 < HAK_NUM_CLASSES ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
    fclose(f);
}

__attribute__((destructor)) static void report_at_exit(void)
{
    const char *where = getenv("HAKMEM_STATS");
    const char *profile = getenv("HAKMEM_PROFILE");
    bool want_stats = where != NULL && *where != '\0' && strcmp(where, "0") != 0;
    if (!want_stats && (profile == NULL || *profile == '\0'))
        return;
    static struct hak_class_stats sum[HAK_NUM_CLASSES];
    static struct hak_prof prof_sum;
    hak_lock(&stats_lock);
    memcpy(sum, totals, sizeof sum);
    prof_sum = prof_totals;
    for (struct stats_node *n = live_threads; n; n = n->next) {
        for (unsigned c = 0; c < HAK_NUM_CLASSES; c++)
            add(&sum[c], &n->stats[c]);
        prof_add(&prof_sum, n->prof);
    }
    hak_unlock(&stats_lock);
    if (profile != NULL && *profile != '\0')
        write_profile(profile, sum, &prof_sum);
    if (!want_stats)
        return;
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
