/* fork_threads: a metrics build's counters across fork.
 *
 * The parent has a second thread with caches (so it is on the live-thread
 * list) when it forks.  The child starts a thread - glibc gives it that
 * thread's stack and TLS from its stack cache - which allocates and frees 40
 * blocks of 5000 B (a class nothing else here uses) and stays alive; the
 * child exits with HAKMEM_STATS set: its report must finish (the thread's
 * node, linked to its stale self, made it loop) and count those 40 blocks.  Exit status: the child's (0 ok, or
 * 3 when it hung and its alarm killed it).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static int started;

static void *parent_thread(void *arg)
{
    (void)arg;
    void *volatile p = malloc(100); /* this thread gets caches */
    free(p);
    pthread_mutex_lock(&lock);
    started = 1;
    pthread_cond_signal(&changed);
    pthread_mutex_unlock(&lock);
    for (;;)
        pause();
    return NULL;
}

static void *child_thread(void *arg)
{
    (void)arg;
    void *blocks[40];
    for (int i = 0; i < 40; i++)
        blocks[i] = malloc(5000);
    for (int i = 0; i < 40; i++)
        free(blocks[i]);
    pthread_mutex_lock(&lock);
    started = 2;
    pthread_cond_signal(&changed);
    pthread_mutex_unlock(&lock);
    for (;;) /* alive when the child exits: the report reads its node */
        pause();
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: fork_threads STATS.csv\n");
        return 2;
    }
    pthread_t t;
    if (pthread_create(&t, NULL, parent_thread, NULL) != 0)
        return 2;
    pthread_mutex_lock(&lock);
    while (!started)
        pthread_cond_wait(&changed, &lock);
    pthread_mutex_unlock(&lock);
    pid_t pid = fork();
    if (pid < 0)
        return 2;
    if (pid == 0) {
        alarm(10);
        pthread_t u;
        if (pthread_create(&u, NULL, child_thread, NULL) != 0)
            _exit(2);
        pthread_mutex_lock(&lock);
        while (started != 2)
            pthread_cond_wait(&changed, &lock);
        pthread_mutex_unlock(&lock);
        setenv("HAKMEM_STATS", argv[1], 1); /* the child's report only */
        exit(0);                            /* the report is written at exit */
    }
    int st = 0;
    if (waitpid(pid, &st, 0) != pid)
        return 2;
    if (WIFSIGNALED(st))
        return WTERMSIG(st) == SIGALRM ? 3 : 2;
    return WEXITSTATUS(st);
}
