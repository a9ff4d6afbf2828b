/*
 * loading.c - the programs of loading.sh, one per role (-DROLE_...):
 *
 *   ROLE_PROBE   run preloaded or linked with -lhakmem: malloc must be
 *                hakmem's (malloc_usable_size(malloc(100)) is the spec's class
 *                size, dladdr(malloc) and /proc/self/maps name libhakmem),
 *                and so the cfree an old binary binds (cfree@GLIBC_2.2.5)
 *   ROLE_USER    libuser.so, linked against libhakmem.so: user_work() calls
 *                hak_malloc/hak_free/hak_realloc/hak_usable_size
 *   ROLE_DLOPEN  a plain program (no hakmem) that dlopen()s libuser.so, calls
 *                user_work() in the main thread, in a thread that existed
 *                before the dlopen() and in a new one; with
 *                --dlclose then dlclose()s it, waits past decay_ms and starts
 *                one more thread
 *   ROLE_VG      a mix of allocations for valgrind memcheck, linked with -lhakmem
 *   ROLE_NORANDOM libnorandom.so, preloaded before libhakmem.so: a getrandom()
 *                that fails with ENOSYS, as on a kernel before 3.17, and counts
 *                its calls (norandom_calls)
 *   ROLE_ERRNO   run with both preloaded: hakmem's start-up, before main,
 *                must not have called that getrandom() (it needs no
 *                entropy: the cache key is the region map's address) and
 *                must have left errno 0 (C11 7.5: no library function sets
 *                it to 0, so it is 0 at main's start unless something before
 *                main wrote it); malloc works
 *   ROLE_ATFORK  libatfork.so: its constructor, run before hakmem's start-up,
 *                registers fork handlers that allocate (small, mid and large
 *                blocks, a realloc and a calloc): glibc runs the prepare
 *                handlers in the reverse order of their registration and the
 *                others in order, so these run inside hakmem's (its prepare
 *                has taken its locks, its parent and child handlers have not
 *                released them yet); each counts its calls (atfork_calls)
 *   ROLE_FORK    linked with libatfork.so, hakmem preloaded: 200 forks
 *                while two threads allocate, check and free small and large
 *                blocks; every handler ran and found its contents intact,
 *                the children allocate; with ATFORK_NEST set each prepare
 *                forks once more
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(ROLE_PROBE)

/* glibc's compatibility cfree, as a program built against glibc < 2.26
 * binds it: hakmem's must take its place, or glibc frees hakmem's block */
void cfree(void *p);
__asm__(".symver cfree,cfree@GLIBC_2.2.5");

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: probe EXPECTED_USABLE_SIZE_OF_100\n");
        return 2;
    }
    size_t expected = strtoul(argv[1], NULL, 10);
    int bad = 0;
    void *volatile p = malloc(100);
    size_t u = malloc_usable_size(p);
    printf("malloc_usable_size(malloc(100)) = %zu (hakmem's class: %zu)\n", u, expected);
    if (u != expected)
        bad = 1;
    free(p);
    cfree(malloc(100));
    printf("cfree@GLIBC_2.2.5 freed a block of malloc\n");
    Dl_info info;
    void *(*volatile m)(size_t) = malloc;
    const char *from = dladdr((void *)m, &info) && info.dli_fname ? info.dli_fname : "?";
    printf("malloc is defined in %s\n", from);
    if (strstr(from, "libhakmem") == NULL)
        bad = 1;
    char line[4096];
    int mapped = 0;
    FILE *f = fopen("/proc/self/maps", "r");
    while (f != NULL && fgets(line, sizeof line, f) != NULL)
        if (strstr(line, "libhakmem") != NULL)
            mapped = 1;
    if (f != NULL)
        fclose(f);
    printf("/proc/self/maps lists libhakmem: %s\n", mapped ? "yes" : "no");
    if (!mapped)
        bad = 1;
    return bad;
}

#elif defined(ROLE_USER)

#include "hakmem.h"

/* Allocation work through hakmem's own names; returns the number of errors. */
__attribute__((visibility("default"))) int user_work(void)
{
    enum { N = 2000 };
    unsigned char *blocks[N];
    int errors = 0;
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < N; i++) {
            size_t n = 1 + (size_t)(i * 7919 + round * 131) % (i % 50 == 0 ? 200000 : 2000);
            unsigned char *p = hak_malloc(n);
            if (p == NULL || hak_usable_size(p) < n) {
                errors++;
                continue;
            }
            memset(p, i & 0xff, n);
            if (i % 3 == 0) {
                unsigned char *q = hak_realloc(p, n * 2);
                if (q == NULL || q[n - 1] != (unsigned char)(i & 0xff))
                    errors++;
                else
                    p = q;
            }
            blocks[i] = p;
        }
        for (int i = 0; i < N; i++) {
            if (blocks[i] && blocks[i][0] != (unsigned char)(i & 0xff))
                errors++;
            hak_free(blocks[i]);
            blocks[i] = NULL;
        }
    }
    return errors;
}

#elif defined(ROLE_DLOPEN)

static int (*work)(void);

static void *in_thread(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)work();
}

static void *nothing(void *arg)
{
    return arg;
}

/* A thread that exists before the dlopen() and works after it: its copy of
 * hakmem's thread-locals is made by the dlopen() itself. */
static pthread_mutex_t gate = PTHREAD_MUTEX_INITIALIZER;

static void *early_thread(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&gate);
    pthread_mutex_unlock(&gate);
    return (void *)(intptr_t)work();
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3 || (argc == 3 && strcmp(argv[2], "--dlclose") != 0)) {
        fprintf(stderr, "usage: dlopen_main PATH/libuser.so [--dlclose]\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    pthread_t early;
    pthread_mutex_lock(&gate);
    if (pthread_create(&early, NULL, early_thread, NULL) != 0) {
        printf("thread failed\n");
        return 3;
    }
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        printf("dlopen failed: %s\n", dlerror());
        return 3;
    }
    work = (int (*)(void))dlsym(h, "user_work");
    if (work == NULL) {
        printf("dlsym(user_work) failed: %s\n", dlerror());
        return 3;
    }
    int errors = work();
    pthread_t t;
    void *res = NULL, *early_res = NULL;
    pthread_mutex_unlock(&gate);
    if (pthread_create(&t, NULL, in_thread, NULL) != 0 || pthread_join(t, &res) != 0 ||
        pthread_join(early, &early_res) != 0) {
        printf("thread failed\n");
        return 3;
    }
    errors += (int)(intptr_t)res + (int)(intptr_t)early_res;
    printf("user_work: %d errors (main thread, a thread started before dlopen, one after)\n", errors);
    if (argc == 2)
        return errors != 0;
    if (dlclose(h) != 0) {
        printf("dlclose failed: %s\n", dlerror());
        return 3;
    }
    /* the library may be gone now (or kept: -z nodelete); either way no
     * thread of it may run, and no destructor of it may be called */
    usleep(1500 * 1000);
    if (pthread_create(&t, NULL, nothing, NULL) != 0 || pthread_join(t, NULL) != 0) {
        printf("thread after dlclose failed\n");
        return 3;
    }
    printf("after dlclose: a thread started and exited\n");
    return errors != 0;
}

#elif defined(ROLE_VG)

/* A mix of allocations, two threads, blocks handed from one to the other. */
enum { SLOTS = 512, OPS = 40000 };

static void *worker(void *arg)
{
    uintptr_t seed = (uintptr_t)arg;
    void **slots = calloc(SLOTS, sizeof *slots);
    size_t *lens = calloc(SLOTS, sizeof *lens);
    unsigned long sum = 0;
    uint64_t r = 0x9E3779B97F4A7C15ull * (seed + 1);
    for (int i = 0; i < OPS; i++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        unsigned s = (unsigned)(r % SLOTS);
        size_t n = (r >> 20) % 16 == 0 ? 1 + (r >> 24) % 300000 : 1 + (r >> 24) % 1500;
        unsigned char *p = slots[s];
        if (p != NULL) {
            for (size_t k = 0; k < lens[s]; k += 97)
                sum += p[k];
        }
        switch ((r >> 8) % 6) {
        case 0: case 1:
            free(p);
            p = malloc(n);
            memset(p, (int)i, n);
            break;
        case 2:
            free(p);
            p = calloc(1, n);
            break;
        case 3:
            p = realloc(p, n);
            if (p != NULL && n > lens[s])
                memset(p + lens[s], 1, n - lens[s]);
            break;
        case 4:
            free(p);
            if (posix_memalign((void **)&p, (size_t)64 << ((r >> 40) % 6), n) != 0)
                p = NULL;
            else
                memset(p, 2, n);
            break;
        default:
            free(p);
            p = NULL;
            n = 0;
            break;
        }
        slots[s] = p;
        lens[s] = p ? n : 0;
    }
    for (unsigned s = 0; s < SLOTS; s++)
        free(slots[s]);
    free(lens);
    free(slots);
    return (void *)sum;
}

int main(void)
{
    void *volatile p = malloc(100);
    printf("malloc_usable_size(malloc(100)) = %zu\n", malloc_usable_size(p));
    free(p);
    pthread_t t[2];
    for (uintptr_t i = 0; i < 2; i++)
        if (pthread_create(&t[i], NULL, worker, (void *)i) != 0) {
            fprintf(stderr, "loading: pthread_create failed\n");
            return 1;
        }
    unsigned long total = 0;
    for (int i = 0; i < 2; i++) {
        void *res;
        pthread_join(t[i], &res);
        total += (unsigned long)(uintptr_t)res;
    }
    total += (unsigned long)(uintptr_t)worker((void *)7);
    printf("checksum %lu\n", total);
    return 0;
}

#elif defined(ROLE_NORANDOM)
#include <errno.h>
#include <sys/types.h>

int norandom_calls;

ssize_t getrandom(void *buf, size_t len, unsigned int flags)
{
    (void)buf, (void)len, (void)flags;
    norandom_calls++;
    errno = ENOSYS;
    return -1;
}

#elif defined(ROLE_ERRNO)
#include <errno.h>

int main(void)
{
    int at_main = errno;
    const int *calls = dlsym(RTLD_DEFAULT, "norandom_calls");
    printf("getrandom() called %d times before main\n", calls ? *calls : -1);
    printf("errno at main: %d\n", at_main);
    char *volatile p = malloc(100);
    if (p == NULL)
        return 1;
    memset(p, 0xa5, 100);
    free(p);
    printf("errno after malloc and free: %d\n", errno);
    return calls == NULL || *calls != 0 || at_main != 0 || errno != 0;
}

#elif defined(ROLE_ATFORK)
#include <sys/wait.h>

int atfork_calls[3]; /* prepare, parent, child */

/* every kind of block hakmem has, filled and checked byte by byte */
static void allocate(int which)
{
    static const size_t sizes[] = {24, 100, 3000, 40000, 300000, 3u << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        unsigned char *p = malloc(sizes[i]);
        if (p == NULL)
            abort();
        memset(p, 0x40 + which, sizes[i]);
        p = realloc(p, sizes[i] * 2);
        unsigned char *z = calloc(1, sizes[i]);
        if (p == NULL || z == NULL)
            abort();
        for (size_t j = 0; j < sizes[i]; j++)
            if (p[j] != 0x40 + which || z[j] != 0)
                abort();
        free(z);
        free(p);
    }
    atfork_calls[which]++;
}

/* With ATFORK_NEST set the prepare handler forks too, once per fork (a
 * child that allocates and exits): hakmem's handlers then run inside its
 * own, nested. */
static void on_prepare(void)
{
    static __thread int nesting;
    allocate(0);
    const char *nest = getenv("ATFORK_NEST");
    if (nest == NULL || *nest == '\0' || nesting)
        return;
    nesting = 1;
    pid_t pid = fork();
    if (pid == 0) {
        allocate(0);
        _exit(0);
    }
    int status;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        abort();
    nesting = 0;
}
static void on_parent(void) { allocate(1); }
static void on_child(void) { allocate(2); }

__attribute__((constructor)) static void register_handlers(void)
{
    pthread_atfork(on_prepare, on_parent, on_child);
}

#elif defined(ROLE_FORK)
#include <sys/wait.h>

extern int atfork_calls[3];

#define ROUNDS 200
static volatile int stop, bad;

/* small and large blocks (the large ones take hakmem's locks), checked */
static void *churn(void *arg)
{
    unsigned char tag = (unsigned char)(long)arg;
    unsigned char *held[8] = {0};
    for (unsigned i = 0; !stop; i++) {
        unsigned k = i % 8;
        if (held[k] != NULL && (held[k][0] != tag || held[k][4095] != tag))
            bad = 1;
        free(held[k]);
        size_t n = i % 2 ? (size_t)(i % 50) * 40 + 4096 : (size_t)((i % 5) + 1) << 16;
        held[k] = malloc(n);
        if (held[k] == NULL)
            abort();
        memset(held[k], tag, 4096);
    }
    for (unsigned k = 0; k < 8; k++)
        free(held[k]);
    return arg;
}

int main(void)
{
    pthread_t t[2];
    for (long i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, churn, (void *)(i + 1));
    for (int round = 0; round < ROUNDS; round++) {
        pid_t pid = fork();
        if (pid < 0)
            return 1;
        if (pid == 0) {
            free(malloc(200000));
            _exit(atfork_calls[2] == 1 ? 0 : 3);
        }
        int status;
        if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            printf("round %d: child status %d\n", round, status);
            return 1;
        }
    }
    stop = 1;
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    free(malloc(100));
    printf("prepare %d parent %d child %d, blocks %s\n", atfork_calls[0], atfork_calls[1],
           atfork_calls[2], bad ? "changed" : "intact");
    const char *nest = getenv("ATFORK_NEST");
    int forks = ROUNDS * (nest && *nest ? 2 : 1); /* each fork nests one */
    return bad || atfork_calls[0] != forks || atfork_calls[1] != forks || atfork_calls[2] != 0;
}

#else
#error "define one ROLE_"
#endif
