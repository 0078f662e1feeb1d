/* Test workload: allocates and touches memory 1 MiB at a time until refused, then aborts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void)
{
    size_t mib = 0;
    for (;;) {
        char *p = malloc(1 << 20);
        if (!p)
            break;
        memset(p, 0xa5, 1 << 20);
        mib++;
    }
    printf("wl_memhog: refused after %zu MiB\n", mib);
    fflush(stdout);
    abort();
}
