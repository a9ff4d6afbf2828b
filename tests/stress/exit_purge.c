/* exit_purge: threads that free memory and exit must not hang the process.
 *
 * The allocator's background purger is started lazily.  glibc frees a dead
 * thread's TLS (its dtv) with its stack-cache lock held, and pthread_create
 * takes that lock: an allocator that starts a thread from inside that free
 * deadlocks, and every later pthread_create or thread exit waits behind it.
 * hakmem did so (3 runs of 3 hung) when a thread's exit was the first time
 * memory became free.
 *
 * Two rounds, each in a fresh child process (so that no purger runs yet):
 *   user stack  one detached thread on a stack of its own
 *               (pthread_attr_setstack), whose TLS glibc frees at its exit;
 *   cached      ten detached threads with default stacks exiting one by one
 *               (glibc frees the TLS of a cached stack it evicts, past
 *               40 MiB of cached stacks).
 * Each thread allocates and frees 100 blocks and one of 8 MiB (enough for the
 * purger to be wanted), waits to be released and exits;
 * the child's main thread makes no allocator call meanwhile, then creates and
 * joins one more thread.  A child still alive after 20 s has hung.
 *
 * Usage: exit_purge [SCALE]
 * Exit status 0 on success; 1 with a message otherwise. */
#include "common.h"

#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define THREADS 10

static sem_t go[THREADS];

static void *worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    void *blocks[100];
    for (int i = 0; i < 100; i++) {
        blocks[i] = malloc(64);
        if (!blocks[i]) die("worker: malloc(64) returned NULL");
        fill(blocks[i], 64, (uint64_t)(id * 100 + i));
    }
    for (int i = 0; i < 100; i++) {
        verify(blocks[i], 64, (uint64_t)(id * 100 + i), 0, "worker verifying");
        free(blocks[i]);
    }
    /* enough freed for the purger to be wanted (hakmem starts it only for
     * 4 MiB or more): the exit's poll starts it */
    char *big = malloc((size_t)8 << 20);
    if (!big) die("worker: malloc(8 MiB) returned NULL");
    big[0] = 1;
    free(big);
    sem_wait(&go[id]);
    return NULL;
}

static void *nothing(void *arg) { return arg; }

/* The round, in a child process: exits 0, or hangs. */
static void round_in_child(int user_stack)
{
    int n = user_stack ? 1 : THREADS;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (user_stack) {
        size_t len = 1 << 20;
        void *stack = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (stack == MAP_FAILED) die("mmap of a thread stack failed");
        pthread_attr_setstack(&attr, stack, len);
    }
    for (int i = 0; i < n; i++)
        sem_init(&go[i], 0, 0);
    for (int i = 0; i < n; i++) {
        pthread_t t;
        if (pthread_create(&t, &attr, worker, (void *)(intptr_t)i) != 0) die("pthread_create failed");
    }
    const struct timespec settle = {0, 100000000}, step = {0, 50000000};
    nanosleep(&settle, NULL);
    for (int i = 0; i < n; i++) { /* no allocator call here meanwhile */
        sem_post(&go[i]);
        nanosleep(&step, NULL);
    }
    pthread_t t;
    if (pthread_create(&t, NULL, nothing, NULL) != 0) die("pthread_create after the exits failed");
    pthread_join(t, NULL);
    _exit(0);
}

int main(void)
{
    g_prog = "exit_purge";
    static const char *names[] = {"cached stacks", "user stack"};
    for (int user_stack = 0; user_stack < 2; user_stack++) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) die("fork failed");
        if (pid == 0) {
            alarm(20);
            round_in_child(user_stack);
        }
        int st = 0;
        if (waitpid(pid, &st, 0) != pid) die("waitpid failed");
        if (WIFSIGNALED(st))
            die("%s: child killed by signal %d%s", names[user_stack], WTERMSIG(st),
                WTERMSIG(st) == SIGALRM ? " (hung: a thread's exit deadlocked)" : "");
        if (WEXITSTATUS(st) != 0) die("%s: child exited with status %d", names[user_stack], WEXITSTATUS(st));
        printf("exit_purge: %s: ok\n", names[user_stack]);
    }
    return 0;
}
