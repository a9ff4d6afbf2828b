/* A request no mapping can hold, of 64 bits (metrics/run.sh: it is in the
 * profile's last large bucket, and nowhere else). */
#include <stdint.h>
#include <stdlib.h>

int main(void)
{
    size_t n = SIZE_MAX;
    void *(*volatile alloc)(size_t) = malloc; /* no warning for the size */
    return alloc(n) == NULL ? 0 : 1;
}
