/* mkdir -p with private permissions, for the data directory and key files. */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dcms/fs.h"

#define FS_PATH_MAX 4096

enum dcms_err dcms_fs_mkdirs(const char *dir, struct dcms_errinfo *ei)
{
    char path[FS_PATH_MAX];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof(path))
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "directory path is empty or too long");
    memcpy(path, dir, n + 1);
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST)
            return dcms_err_set(ei, DCMS_ERR_CONFIG, "cannot create directory %s: %s", path,
                                strerror(errno));
        if (c == '\0')
            return DCMS_OK;
        *p = c;
    }
}

enum dcms_err dcms_fs_mkdirs_for(const char *file, struct dcms_errinfo *ei)
{
    char dir[FS_PATH_MAX];
    size_t n = strlen(file);
    if (n >= sizeof(dir))
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "path is too long");
    memcpy(dir, file, n + 1);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return DCMS_OK; /* the current directory or the root: nothing to create */
    *slash = '\0';
    return dcms_fs_mkdirs(dir, ei);
}

bool dcms_fs_is_workload_image(const char *path, bool eif)
{
    bool ok = false;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return false;
    struct stat st;
    unsigned char h[EI_NIDENT + 2];
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || read(fd, h, sizeof(h)) != (ssize_t)sizeof(h))
        goto out;
    if (eif && memcmp(h, ".eif", 4) == 0) {
        ok = true;
        goto out;
    }
    if (memcmp(h, ELFMAG, SELFMAG) != 0 || !(st.st_mode & (S_IXUSR | S_IXGRP | S_IXOTH)))
        goto out;
    /* e_type follows e_ident, in the file's byte order. */
    unsigned type = h[EI_DATA] == ELFDATA2MSB ? (unsigned)h[EI_NIDENT] << 8 | h[EI_NIDENT + 1]
                                              : (unsigned)h[EI_NIDENT + 1] << 8 | h[EI_NIDENT];
    ok = type == ET_EXEC || type == ET_DYN;
out:
    close(fd);
    return ok;
}
