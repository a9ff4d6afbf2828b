/* Blocks freed by another thread, counted as remote frees wherever they go:
 * main mallocs N blocks of 64 B (class 3: a list or ring of 256, refill 64)
 * and one thread frees them all while main lives.  Its cache takes 256; four
 * flushes give 64 each back (to the transfer cache, or to main's spans
 * without one), and its exit gives back the other 193: N remote frees. */
#include <pthread.h>
#include <stdlib.h>

#define N 449

static void *blocks[N];

static void *free_all(void *arg)
{
    for (int i = 0; i < N; i++)
        free(blocks[i]);
    return arg;
}

int main(void)
{
    for (int i = 0; i < N; i++)
        blocks[i] = malloc(64);
    pthread_t t;
    pthread_create(&t, NULL, free_all, NULL);
    pthread_join(t, NULL);
    return 0;
}
