/* A thread whose first call is a large malloc (metrics/run.sh: it is in the profile). */
#include <stdlib.h>

int main(void)
{
    char *volatile p = malloc(800000); /* above every class: a large span */
    if (p == NULL)
        return 1;
    p[0] = 1;
    free(p);
    return 0;
}
