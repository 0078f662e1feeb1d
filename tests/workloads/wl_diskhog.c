/*
 * Test workload: fills its scratch root 1 MiB at a time until refused.
 * Exits 0 when a write failed with ENOSPC or EFBIG after at least 512 MiB
 * (the 1 GB quota held and was usable), 10 if refused too early; SIGXFSZ
 * may end it first, which the backend reports as the storage quota.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static char chunk[1 << 20];

int main(void)
{
    memset(chunk, 0x5a, sizeof(chunk));
    int fd = open("/fill", O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return 20;
    size_t mib = 0;
    for (;;) {
        ssize_t n = write(fd, chunk, sizeof(chunk));
        if (n != (ssize_t)sizeof(chunk))
            break;
        mib++;
    }
    int err = errno;
    printf("wl_diskhog: refused after %zu MiB: %s\n", mib, strerror(err));
    fflush(stdout);
    close(fd);
    unlink("/fill");
    return (err == ENOSPC || err == EFBIG) && mib >= 512 ? 0 : 10;
}
