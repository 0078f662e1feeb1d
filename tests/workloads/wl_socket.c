/* Test workload: tries to open a network socket. The sandbox must refuse it (SIGSYS). */
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

int main(void)
{
    printf("wl_socket: opening a socket\n");
    fflush(stdout);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    printf("wl_socket: socket() returned %d\n", s);
    return s >= 0 ? 10 : 11;
}
