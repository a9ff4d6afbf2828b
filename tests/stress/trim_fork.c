/* trim_fork: fork while another thread is inside malloc_trim.
 *
 * A trimmer thread loops: a short-lived thread allocates BLOCKS blocks and
 * exits (its spans, still holding them, are abandoned), the trimmer checks
 * and frees them all (remote frees into abandoned spans) and calls
 * malloc_trim(0), which frees those spans under the abandoned lists' locks.
 * Meanwhile the main thread forks FORKS times (default 2000); each child
 * allocates, checks, frees and trims, then _exit(0)s.
 *
 * This found a lock-order inversion: the trim noted the freed span for the
 * purge (decay's lock) while holding an abandoned list's lock, and fork's
 * prepare handler took decay's lock before the heaps' locks: 3 runs of 3000
 * forks out of 3 deadlocked.  A child that hangs is killed by its own alarm;
 * a parent that hangs in fork by the overall one, with a message.
 *
 * Usage: trim_fork [SCALE]
 * Exit status 0 on success; 1 with a message otherwise. */
#include "common.h"

#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>

#define BLOCKS 2000

static void *blocks[BLOCKS];
static atomic_int stop;
static _Atomic long trims;

static size_t block_size(int i) { return 64 + (size_t)(i % 4) * 64; }

static void *leaver(void *arg)
{
    uint64_t round = (uint64_t)(uintptr_t)arg;
    for (int i = 0; i < BLOCKS; i++) {
        blocks[i] = malloc(block_size(i));
        if (!blocks[i]) die("leaver: malloc(%zu) returned NULL", block_size(i));
        fill(blocks[i], block_size(i), round * BLOCKS + (uint64_t)i);
    }
    return NULL;
}

static void *trimmer(void *arg)
{
    (void)arg;
    for (uint64_t round = 1; !atomic_load(&stop); round++) {
        pthread_t t;
        if (pthread_create(&t, NULL, leaver, (void *)(uintptr_t)round) != 0)
            die("pthread_create failed");
        pthread_join(t, NULL);
        for (int i = 0; i < BLOCKS; i++) {
            verify(blocks[i], block_size(i), round * BLOCKS + (uint64_t)i, 1, "trimmer verifying");
            free(blocks[i]);
        }
        malloc_trim(0);
        atomic_fetch_add(&trims, 1);
    }
    return NULL;
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "trim_fork: FAIL: overall time limit reached (deadlocked in fork?)\n";
    (void)!write(2, msg, sizeof msg - 1);
    _exit(1);
}

int main(int argc, char **argv)
{
    g_prog = "trim_fork";
    int forks = (int)(2000 * arg_scale(argc, argv));
    if (forks < 1) forks = 1;
    signal(SIGALRM, on_alarm);
    alarm(100);

    pthread_t th;
    if (pthread_create(&th, NULL, trimmer, NULL) != 0) die("pthread_create failed");
    for (int f = 0; f < forks; f++) {
        pid_t pid = fork();
        if (pid < 0) die("fork failed");
        if (pid == 0) {
            alarm(10);
            void *p = malloc(1000);
            if (!p) _exit(2);
            fill(p, 1000, (uint64_t)f);
            if (check_range(p, 1000, (uint64_t)f, 1) != (size_t)-1) _exit(3);
            free(p);
            malloc_trim(0);
            _exit(0);
        }
        int st = 0;
        if (waitpid(pid, &st, 0) != pid) die("waitpid failed");
        if (WIFSIGNALED(st))
            die("child %d killed by signal %d%s", f, WTERMSIG(st),
                WTERMSIG(st) == SIGALRM ? " (deadlocked after fork)" : "");
        if (WEXITSTATUS(st) != 0) die("child %d exited with status %d", f, WEXITSTATUS(st));
    }
    atomic_store(&stop, 1);
    pthread_join(th, NULL);
    printf("trim_fork: %d forks, %ld trims of abandoned spans: ok\n", forks, atomic_load(&trims));
    return 0;
}
