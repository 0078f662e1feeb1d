/*
 * Test workload: forks until refused; every child sleeps. Prints how many
 * children it made, then sleeps too (the sandbox keeps the count bounded).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(void)
{
    unsigned n = 0;
    for (;;) {
        pid_t p = fork();
        if (p == 0) {
            for (;;)
                pause();
        }
        if (p < 0)
            break;
        n++;
    }
    printf("wl_forkbomb: fork refused after %u children: %s\n", n, strerror(errno));
    fflush(stdout);
    for (;;)
        pause();
}
