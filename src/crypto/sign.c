/*
 * Ed25519 signing keys (libsodium). The secret key lives in sodium_malloc'd
 * memory, is wiped when freed, and is read from a 0600 file holding the
 * base64 seed; a key file others can read is refused.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "dcms/crypto.h"
#include "dcms/log.h"

struct dcms_sign_key {
    unsigned char sk[crypto_sign_SECRETKEYBYTES];
    unsigned char pk[crypto_sign_PUBLICKEYBYTES];
    char id[17];
};

void dcms_sign_key_id_of(const unsigned char pk[DCMS_SIGN_PUBLIC_LEN], char out[17])
{
    char hex[65];
    if (dcms_digest_sha256_hex(pk, DCMS_SIGN_PUBLIC_LEN, hex)) {
        memset(out, '0', 16);
        out[16] = '\0';
        return;
    }
    memcpy(out, hex, 16);
    out[16] = '\0';
}

static enum dcms_err make_dirs(const char *path, struct dcms_errinfo *ei)
{
    char dir[4096];
    size_t n = strlen(path);
    if (n >= sizeof(dir))
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "key path is too long");
    memcpy(dir, path, n + 1);
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(dir, 0700) != 0 && errno != EEXIST)
            return dcms_err_set(ei, DCMS_ERR_CONFIG, "cannot create directory %s", dir);
        *p = '/';
    }
    return DCMS_OK;
}

static enum dcms_err read_seed(int fd, const char *path, unsigned char seed[32],
                               struct dcms_errinfo *ei)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "key file %s is not a regular file", path);
    if (st.st_mode & 077)
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "key file %s is readable by others; chmod 600 it",
                            path);
    char text[128];
    ssize_t n = read(fd, text, sizeof(text) - 1);
    enum dcms_err e = DCMS_OK;
    if (n <= 0) {
        e = dcms_err_set(ei, DCMS_ERR_CONFIG, "cannot read key file %s", path);
    } else {
        size_t len = (size_t)n;
        while (len && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '))
            len--;
        size_t got = 0;
        if (dcms_b64_decode(seed, 32, text, len, &got) || got != 32)
            e = dcms_err_set(ei, DCMS_ERR_CONFIG,
                             "key file %s must hold a base64 32-byte Ed25519 seed", path);
    }
    sodium_memzero(text, sizeof(text));
    return e;
}

/*
 * Creates the key file atomically: the seed is written to a private temporary
 * file, synced, then linked into place. When several processes start at once
 * on one new key path, exactly one link wins and the others load its key
 * (*lost set), so they all end up with the same key and none sees a partial
 * file.
 */
static enum dcms_err write_seed(const char *path, unsigned char seed[32], bool *lost,
                                struct dcms_errinfo *ei)
{
    *lost = false;
    enum dcms_err e = make_dirs(path, ei);
    if (e)
        return e;
    char tmp[4096 + 32];
    int n = snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "key path is too long");
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "cannot create key file %s: %s", tmp,
                            strerror(errno));
    randombytes_buf(seed, 32);
    char text[64];
    dcms_b64_encode(text, seed, 32);
    size_t len = strlen(text);
    text[len++] = '\n';
    bool ok = write(fd, text, len) == (ssize_t)len && fsync(fd) == 0;
    sodium_memzero(text, sizeof(text));
    close(fd);
    if (!ok) {
        unlink(tmp);
        return dcms_err_set(ei, DCMS_ERR_IO, "cannot write key file %s", path);
    }
    int rc = link(tmp, path);
    int link_errno = errno;
    unlink(tmp);
    if (rc != 0 && link_errno == EEXIST) {
        *lost = true; /* another process created it first: use theirs */
        return DCMS_OK;
    }
    if (rc != 0)
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "cannot create key file %s: %s", path,
                            strerror(link_errno));
    DCMS_LOG(DCMS_LOG_INFO, "crypto", "created signing key %s", path);
    return DCMS_OK;
}

enum dcms_err dcms_sign_key_load_or_create(const char *path, struct dcms_sign_key **out,
                                           struct dcms_errinfo *ei)
{
    unsigned char seed[32];
    enum dcms_err e;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd >= 0) {
        e = read_seed(fd, path, seed, ei);
        close(fd);
    } else if (errno == ENOENT) {
        bool lost;
        e = write_seed(path, seed, &lost, ei);
        if (!e && lost) {
            if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0) {
                e = dcms_err_set(ei, DCMS_ERR_CONFIG, "cannot open key file %s: %s", path,
                                 strerror(errno));
            } else {
                e = read_seed(fd, path, seed, ei);
                close(fd);
            }
        }
    } else {
        e = dcms_err_set(ei, DCMS_ERR_CONFIG, "cannot open key file %s: %s", path, strerror(errno));
    }
    if (e) {
        sodium_memzero(seed, sizeof(seed));
        return e;
    }
    struct dcms_sign_key *k = sodium_malloc(sizeof(*k));
    if (!k) {
        sodium_memzero(seed, sizeof(seed));
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    }
    crypto_sign_seed_keypair(k->pk, k->sk, seed);
    sodium_memzero(seed, sizeof(seed));
    dcms_sign_key_id_of(k->pk, k->id);
    *out = k;
    return DCMS_OK;
}

void dcms_sign_key_free(struct dcms_sign_key *k)
{
    if (k)
        sodium_free(k); /* wipes before freeing */
}

const unsigned char *dcms_sign_key_public(const struct dcms_sign_key *k)
{
    return k->pk;
}

const char *dcms_sign_key_id(const struct dcms_sign_key *k)
{
    return k->id;
}

enum dcms_err dcms_sign_detached(const struct dcms_sign_key *k, const void *msg, size_t len,
                                 unsigned char sig[DCMS_SIGN_BYTES])
{
    return crypto_sign_detached(sig, NULL, msg, len, k->sk) == 0 ? DCMS_OK : DCMS_ERR_CRYPTO;
}

bool dcms_sign_verify(const unsigned char pk[DCMS_SIGN_PUBLIC_LEN], const void *msg, size_t len,
                      const unsigned char sig[DCMS_SIGN_BYTES])
{
    return crypto_sign_verify_detached(sig, msg, len, pk) == 0;
}
