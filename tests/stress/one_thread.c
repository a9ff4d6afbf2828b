/* one_thread: a program that frees a little stays single-threaded.
 *
 * Sandbox launchers and container tools allocate and free a little (argument
 * parsing, stdio, a directory listing), then call unshare(CLONE_NEWUSER),
 * which the kernel refuses (EINVAL) to a process with a second thread.
 * hakmem's purger thread used to start as soon as any span went empty, so
 * such a program under hakmem failed where it works under glibc.
 *
 * Here: 1.5 MiB in blocks of 512 B (spans go empty), 300 blocks of
 * 16..4096 B and one 1 MiB block, all freed (less than the purger's
 * threshold, 4 MiB);
 * files opened and closed, a directory listed; then allocations of a size
 * not used before, which take the allocation slow path where the purger is
 * started; then 200 ms for a thread to show up.  The process must
 * still have one thread, and unshare(CLONE_NEWUSER) must not fail with EINVAL
 * (EPERM, where user namespaces are not allowed, is reported and passes).
 *
 * Usage: one_thread [SCALE] (SCALE is ignored: the amount is the point).
 * Exit status 0 on success; 1 with a message otherwise. */
#include "common.h"

#include <dirent.h>
#include <sched.h>

static int thread_count(void)
{
    DIR *d = opendir("/proc/self/task");
    if (d == NULL)
        die("opendir(/proc/self/task) failed");
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

int main(void)
{
    g_prog = "one_thread";
    if (thread_count() != 1)
        die("%d threads at start", thread_count());
    /* 3000 blocks of 512 B: more than the class's caches hold, so that
     * spans go empty; 300 of 16..4096 B; and 1 MiB, which the large cache
     * keeps: about 3 MiB to give back in all */
    enum { SAME = 3000, MIXED = 300, BLOCKS = SAME + MIXED };
    static void *blocks[BLOCKS];
    static size_t sizes[BLOCKS];
    uint64_t rng = 7;
    size_t total = 0;
    for (int i = 0; i < BLOCKS; i++) {
        size_t n = i < SAME ? 512 : rng_range(&rng, 16, 4096);
        if ((blocks[i] = malloc(n)) == NULL)
            die("malloc(%zu) failed", n);
        fill(blocks[i], n, (uint64_t)i);
        sizes[i] = n;
        total += n;
    }
    char *big = malloc((size_t)1 << 20);
    if (big == NULL)
        die("malloc(1 MiB) failed");
    memset(big, 0x5A, (size_t)1 << 20);
    for (int i = 0; i < BLOCKS; i++) {
        verify(blocks[i], sizes[i], (uint64_t)i, 0, "before free");
        free(blocks[i]);
    }
    free(big);
    for (int i = 0; i < 20; i++) {
        FILE *f = fopen("/proc/self/status", "r");
        if (f == NULL)
            die("fopen failed");
        char line[256];
        while (fgets(line, sizeof line, f) != NULL)
            ;
        fclose(f);
    }
    void *after[8];
    for (int i = 0; i < 8; i++) /* 20000 B: a class the program has not used */
        if ((after[i] = malloc(20000)) == NULL)
            die("malloc(20000) failed");
    for (int i = 0; i < 8; i++)
        free(after[i]);
    const struct timespec wait = {0, 200000000};
    nanosleep(&wait, NULL);
    int threads = thread_count();
    if (threads != 1)
        die("%d threads after freeing %zu bytes in small blocks and 1 MiB (want 1)", threads, total);
    if (unshare(CLONE_NEWUSER) == 0)
        printf("one_thread: unshare(CLONE_NEWUSER) ok\n");
    else if (errno == EINVAL)
        die("unshare(CLONE_NEWUSER) failed with EINVAL: not single-threaded");
    else
        printf("one_thread: unshare(CLONE_NEWUSER) not allowed here (%s), not a failure\n",
               strerror(errno));
    printf("one_thread: ok (1 thread after freeing %zu bytes and 1 MiB)\n", total);
    return 0;
}
