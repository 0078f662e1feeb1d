/*
 * Secrets kept in files: a fixed number of random bytes, base64 on one line,
 * mode 0600 in a 0700 directory. A file that group or others can read is
 * refused. Creation is atomic (a private temporary file, synced, then linked
 * into place), so when several dcmsd processes start at once on one new
 * path, exactly one creates it and the others load what it wrote.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "dcms/crypto.h"
#include "dcms/fs.h"
#include "dcms/log.h"

#define SECRET_MAX 64

static enum dcms_err read_secret(int fd, const char *path, unsigned char *out, size_t len,
                                 const char *what, struct dcms_errinfo *ei)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "%s file %s is not a regular file", what, path);
    if (st.st_mode & 077)
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "%s file %s is readable by others; chmod 600 it",
                            what, path);
    char text[128];
    ssize_t n = read(fd, text, sizeof(text) - 1);
    enum dcms_err e = DCMS_OK;
    if (n <= 0) {
        e = dcms_err_set(ei, DCMS_ERR_CONFIG, "cannot read %s file %s", what, path);
    } else {
        size_t tlen = (size_t)n;
        while (tlen && (text[tlen - 1] == '\n' || text[tlen - 1] == '\r' || text[tlen - 1] == ' '))
            tlen--;
        size_t got = 0;
        if (dcms_b64_decode(out, len, text, tlen, &got) || got != len)
            e = dcms_err_set(ei, DCMS_ERR_CONFIG, "%s file %s must hold %zu base64 bytes", what,
                             path, len);
    }
    sodium_memzero(text, sizeof(text));
    return e;
}

/* Writes fresh random bytes; *lost when another process created the file first. */
static enum dcms_err write_secret(const char *path, unsigned char *out, size_t len,
                                  const char *what, bool *lost, struct dcms_errinfo *ei)
{
    *lost = false;
    enum dcms_err e = dcms_fs_mkdirs_for(path, ei);
    if (e)
        return e;
    char tmp[4096 + 32];
    int n = snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "%s path is too long", what);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "cannot create %s file %s: %s", what, tmp,
                            strerror(errno));
    randombytes_buf(out, len);
    char text[128];
    dcms_b64_encode(text, out, len);
    size_t tlen = strlen(text);
    text[tlen++] = '\n';
    bool ok = write(fd, text, tlen) == (ssize_t)tlen && fsync(fd) == 0;
    sodium_memzero(text, sizeof(text));
    close(fd);
    if (!ok) {
        unlink(tmp);
        return dcms_err_set(ei, DCMS_ERR_IO, "cannot write %s file %s", what, path);
    }
    int rc = link(tmp, path);
    int link_errno = errno;
    unlink(tmp);
    if (rc != 0 && link_errno == EEXIST) {
        *lost = true; /* another process created it first: use theirs */
        return DCMS_OK;
    }
    if (rc != 0)
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "cannot create %s file %s: %s", what, path,
                            strerror(link_errno));
    DCMS_LOG(DCMS_LOG_INFO, "crypto", "created %s %s", what, path);
    return DCMS_OK;
}

enum dcms_err dcms_secret_file_load_or_create(const char *path, unsigned char *out, size_t len,
                                              const char *what, struct dcms_errinfo *ei)
{
    if (len == 0 || len > SECRET_MAX)
        return dcms_err_set(ei, DCMS_ERR_INTERNAL, NULL);
    enum dcms_err e = DCMS_OK;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 && errno == ENOENT) {
        bool lost;
        if ((e = write_secret(path, out, len, what, &lost, ei)) || !lost)
            goto out;
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    }
    if (fd < 0) {
        e = dcms_err_set(ei, DCMS_ERR_CONFIG, "cannot open %s file %s: %s", what, path,
                         strerror(errno));
        goto out;
    }
    e = read_secret(fd, path, out, len, what, ei);
    close(fd);
out:
    if (e)
        sodium_memzero(out, len);
    return e;
}
