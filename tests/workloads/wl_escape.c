/*
 * Test workload: tries to read host files (absolute, through "..", through
 * /proc) and writes to its scratch directory. Exits 0 when every read was
 * refused and the scratch write worked, 10 + the index of the first read
 * that succeeded otherwise, 20 if the scratch write failed.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(void)
{
    static const char *paths[] = {"/etc/passwd",
                                  "../../../../etc/passwd",
                                  "/proc/1/root/etc/passwd",
                                  "/proc/self/root/etc/passwd",
                                  "/sys/kernel/notes",
                                  "/dev/sda"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        int fd = open(paths[i], O_RDONLY);
        char c;
        if (fd >= 0 && read(fd, &c, 1) >= 0) {
            printf("wl_escape: read %s\n", paths[i]);
            return 10 + (int)i;
        }
        printf("wl_escape: %s refused\n", paths[i]);
    }
    int fd = open("/scratch.txt", O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, "ok\n", 3) != 3 || close(fd) != 0)
        return 20;
    printf("wl_escape: contained\n");
    return 0;
}
