/* A fixed allocation pattern whose per-tier counts are known exactly:
 * main: 1000 malloc(64)/free pairs; one thread: 100 malloc(64), then 100 frees. */
#include <pthread.h>
#include <stdlib.h>

static void *worker(void *arg)
{
    void *p[100];
    for (int i = 0; i < 100; i++)
        p[i] = malloc(64);
    for (int i = 0; i < 100; i++)
        free(p[i]);
    return arg;
}

int main(void)
{
    for (int i = 0; i < 1000; i++)
        free(malloc(64));
    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
    pthread_join(t, NULL);
    return 0;
}
