/* fork_mt: fork while other threads are inside the allocator.
 *
 * Two worker threads allocate, fill, verify and free blocks of mixed sizes
 * in a loop while the main thread forks FORKS times (default 150).  Each
 * child must be able to use the allocator at once: it verifies and frees
 * the blocks the main thread allocated before the fork, allocates and frees
 * blocks of every kind (small, mid, large, aligned, realloc'd), runs one
 * thread that does the same, and _exit(0)s.  The parent waits for each child
 * with a deadline (CHILD_TIMEOUT seconds): a child still alive then is a
 * deadlock (a lock held by a worker at fork time and never released in the
 * child), killed and reported.  An alarm bounds the whole run as well.
 *
 * Usage: fork_mt [SCALE]
 * Exit status 0 on success; 1 with a message otherwise. */
#include "common.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>

#define WORKERS 2
#define MAIN_BLOCKS 64
#define CHILD_TIMEOUT 10.0

static atomic_int stop;
static _Atomic long worker_ops;

static void *worker(void *arg)
{
    uint64_t rng = mix64(0xf0 + (uintptr_t)arg);
    void *ptr[128] = {0};
    size_t size[128] = {0};
    uint64_t tag[128] = {0};
    long ops = 0;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        int i = (int)(rng_next(&rng) % 128);
        if (ptr[i]) {
            verify(ptr[i], size[i], tag[i], 1, "worker verifying its block");
            free(ptr[i]);
        }
        size[i] = size_mixed(&rng);
        tag[i] = rng_next(&rng);
        ptr[i] = (rng_next(&rng) & 7) ? malloc(size[i]) : calloc(1, size[i]);
        if (!ptr[i]) die("worker: allocation of %zu bytes returned NULL", size[i]);
        fill(ptr[i], size[i], tag[i]);
        ops++;
        if ((ops & 1023) == 0) atomic_fetch_add_explicit(&worker_ops, 1024, memory_order_relaxed);
    }
    for (int i = 0; i < 128; i++)
        if (ptr[i]) {
            verify(ptr[i], size[i], tag[i], 1, "worker verifying its block at exit");
            free(ptr[i]);
        }
    return NULL;
}

/* what a child does: everything an allocator can be asked, quickly */
static void exercise(uint64_t seed, const char *who)
{
    uint64_t rng = seed;
    void *ptr[128];
    size_t size[128];
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 128; i++) {
            size[i] = size_mixed(&rng);
            if (i % 64 == 63) size[i] = rng_range(&rng, 300000, 2000000);   /* large */
            ptr[i] = malloc(size[i]);
            if (!ptr[i]) die("%s: malloc(%zu) returned NULL", who, size[i]);
            fill(ptr[i], size[i], seed + (uint64_t)i);
        }
        for (int i = 0; i < 128; i += 3) {
            verify(ptr[i], size[i], seed + (uint64_t)i, 1, who);
            size_t ns = size[i] * 2 + 1;
            void *q = realloc(ptr[i], ns);
            if (!q) die("%s: realloc to %zu returned NULL", who, ns);
            if (check_range(q, size[i] < FULL_BYTES ? size[i] : 64, seed + (uint64_t)i, 0) != (size_t)-1)
                die("%s: realloc lost contents", who);
            ptr[i] = q;
            size[i] = ns;
            fill(q, ns, seed + (uint64_t)i);
        }
        void *a = NULL;
        if (posix_memalign(&a, 4096, 10000)) die("%s: posix_memalign failed", who);
        if ((uintptr_t)a & 4095) die("%s: posix_memalign misaligned %p", who, a);
        memset(a, 1, 10000);
        free(a);
        for (int i = 0; i < 128; i++) {
            verify(ptr[i], size[i], seed + (uint64_t)i, 1, who);
            free(ptr[i]);
        }
    }
}

static void *child_thread(void *arg)
{
    exercise((uint64_t)(uintptr_t)arg, "child's thread");
    return NULL;
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "fork_mt: FAIL: overall time limit reached (parent deadlocked?)\n";
    (void)!write(2, msg, sizeof msg - 1);
    _exit(1);
}

int main(int argc, char **argv)
{
    g_prog = "fork_mt";
    double scale = arg_scale(argc, argv);
    int forks = (int)(150 * scale);
    if (forks < 1) forks = 1;
    signal(SIGALRM, on_alarm);
    alarm(100);
    double t0 = now_sec();

    pthread_t th[WORKERS];
    for (int i = 0; i < WORKERS; i++)
        if (pthread_create(&th[i], NULL, worker, (void *)(uintptr_t)i)) die("pthread_create failed");

    uint64_t rng = 99;
    void *mine[MAIN_BLOCKS];
    size_t msize[MAIN_BLOCKS];
    double worst = 0;
    for (int f = 0; f < forks; f++) {
        for (int i = 0; i < MAIN_BLOCKS; i++) {
            msize[i] = size_mixed(&rng);
            mine[i] = malloc(msize[i]);
            if (!mine[i]) die("malloc(%zu) returned NULL", msize[i]);
            fill(mine[i], msize[i], (uint64_t)f * 1000 + (uint64_t)i);
        }
        /* let the workers get going again between forks */
        while (atomic_load(&worker_ops) < (long)(f + 1) * 64) sched_yield();

        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) die("fork: %s", strerror(errno));
        if (pid == 0) {
            alarm(0);
            for (int i = 0; i < MAIN_BLOCKS; i++) {
                verify(mine[i], msize[i], (uint64_t)f * 1000 + (uint64_t)i, 1, "child verifying a pre-fork block");
                free(mine[i]);
            }
            exercise(mix64((uint64_t)f), "child");
            if (f % 4 == 0) {
                pthread_t ct;
                if (pthread_create(&ct, NULL, child_thread, (void *)(uintptr_t)(f + 7))) die("child: pthread_create failed");
                pthread_join(ct, NULL);
            }
            _exit(0);
        }
        /* the parent keeps using its copies meanwhile */
        for (int i = 0; i < MAIN_BLOCKS; i++) {
            verify(mine[i], msize[i], (uint64_t)f * 1000 + (uint64_t)i, 1, "parent verifying a block after fork");
            free(mine[i]);
        }
        double start = now_sec();
        int status;
        for (;;) {
            pid_t r = waitpid(pid, &status, WNOHANG);
            if (r == pid) break;
            if (r < 0) die("waitpid: %s", strerror(errno));
            if (now_sec() - start > CHILD_TIMEOUT) {
                kill(pid, SIGKILL);
                waitpid(pid, &status, 0);
                die("child %d of fork #%d still running after %.0f s: deadlocked in the allocator after fork", (int)pid,
                    f, CHILD_TIMEOUT);
            }
            usleep(200);
        }
        double took = now_sec() - start;
        if (took > worst) worst = took;
        if (WIFSIGNALED(status)) die("child of fork #%d killed by signal %d (%s)", f, WTERMSIG(status), strsignal(WTERMSIG(status)));
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            die("child of fork #%d exited with status %d", f, WEXITSTATUS(status));
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < WORKERS; i++) pthread_join(th[i], NULL);
    printf("fork_mt: ok: %d forks with %d busy threads in %.2f s, slowest child %.3f s, %ld worker ops\n", forks, WORKERS,
           now_sec() - t0, worst, atomic_load(&worker_ops));
    return 0;
}
