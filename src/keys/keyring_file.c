/*
 * The file keyring: KEK versions kept in one file, one line each,
 * "v<N> <base64 of 32 bytes>", after a comment line. The file is mode 0600
 * in a 0700 directory and refused when group or others can read it. It is
 * created atomically on first start (a private temporary file, synced, then
 * linked into place, so concurrent starters end up with one file), and
 * changed only by writing a complete new file and renaming it over the old
 * one under an flock, so a reader never sees half a keyring. Nodes that
 * share a store share this file; a node that meets a version it does not
 * hold re-reads the file.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "dcms/crypto.h"
#include "dcms/fs.h"
#include "dcms/log.h"
#include "keys/keys_int.h"

#define RING_MAX 256
#define RING_TEXT_MAX (RING_MAX * 80 + 256)

struct kek {
    int64_t version;
    unsigned char *key; /* sodium_malloc'd */
};

struct ring {
    char path[4096];
    pthread_mutex_t mu;
    size_t n;
    struct kek keks[RING_MAX];
};

static void ring_clear(struct ring *r)
{
    for (size_t i = 0; i < r->n; i++)
        sodium_free(r->keks[i].key);
    r->n = 0;
}

static struct kek *find(struct ring *r, int64_t version)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->keks[i].version == version)
            return &r->keks[i];
    return NULL;
}

/* Parses the file text into r (replacing what it held). */
static enum dcms_err parse(struct ring *r, char *text, size_t len, struct dcms_errinfo *ei)
{
    ring_clear(r);
    enum dcms_err e = DCMS_OK;
    size_t pos = 0;
    unsigned lineno = 0;
    while (pos < len) {
        char *line = text + pos;
        char *nl = memchr(line, '\n', len - pos);
        size_t ll = nl ? (size_t)(nl - line) : len - pos;
        pos += ll + (nl ? 1 : 0);
        lineno++;
        if (ll == 0 || line[0] == '#')
            continue;
        char *sp = memchr(line, ' ', ll);
        char *end = NULL;
        long long v = line[0] == 'v' ? strtoll(line + 1, &end, 10) : 0;
        if (!sp || v <= 0 || end != sp || r->n == RING_MAX) {
            e = dcms_err_set(ei, DCMS_ERR_CONFIG, "keyring file %s: line %u is not \"vN KEY\"",
                             r->path, lineno);
            goto out;
        }
        if (find(r, v)) {
            e = dcms_err_set(ei, DCMS_ERR_CONFIG, "keyring file %s: version %lld twice", r->path,
                             v);
            goto out;
        }
        unsigned char *key = sodium_malloc(DCMS_DEK_LEN);
        size_t got = 0;
        if (!key) {
            e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
            goto out;
        }
        if (dcms_b64_decode(key, DCMS_DEK_LEN, sp + 1, ll - (size_t)(sp + 1 - line), &got) ||
            got != DCMS_DEK_LEN) {
            sodium_free(key);
            e = dcms_err_set(ei, DCMS_ERR_CONFIG,
                             "keyring file %s: line %u must hold 32 base64 bytes", r->path, lineno);
            goto out;
        }
        r->keks[r->n].version = v;
        r->keks[r->n].key = key;
        r->n++;
    }
out:
    if (e)
        ring_clear(r);
    return e;
}

/* Reads the keyring file into r. *missing when it does not exist (r is then empty). */
static enum dcms_err load(struct ring *r, bool *missing, struct dcms_errinfo *ei)
{
    *missing = false;
    enum dcms_err e = DCMS_OK;
    char *text = NULL;
    int fd = open(r->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 && errno == ENOENT) {
        *missing = true;
        ring_clear(r);
        return DCMS_OK;
    }
    if (fd < 0)
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "cannot open keyring file %s: %s", r->path,
                            strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        e = dcms_err_set(ei, DCMS_ERR_CONFIG, "keyring file %s is not a regular file", r->path);
        goto out;
    }
    if (st.st_mode & 077) {
        e = dcms_err_set(ei, DCMS_ERR_CONFIG,
                         "keyring file %s is readable by group or others; chmod 600 it", r->path);
        goto out;
    }
    if (st.st_size > RING_TEXT_MAX) {
        e = dcms_err_set(ei, DCMS_ERR_CONFIG, "keyring file %s is too large", r->path);
        goto out;
    }
    if (!(text = sodium_malloc(RING_TEXT_MAX + 1))) {
        e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
        goto out;
    }
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, text + len, RING_TEXT_MAX - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            e = dcms_err_set(ei, DCMS_ERR_IO, "cannot read keyring file %s", r->path);
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len == RING_TEXT_MAX)
            break;
    }
    e = parse(r, text, len, ei);
out:
    if (text) {
        sodium_memzero(text, RING_TEXT_MAX + 1);
        sodium_free(text);
    }
    close(fd);
    return e;
}

/*
 * Writes r as the keyring file: a private temporary file, synced, then
 * linked into place when `create` (EEXIST: *lost) or renamed over it.
 */
static enum dcms_err store_ring(struct ring *r, bool create, bool *lost, struct dcms_errinfo *ei)
{
    enum dcms_err e = DCMS_OK;
    char tmp[4096 + 48];
    char *text = NULL;
    if (lost)
        *lost = false;
    int n = snprintf(tmp, sizeof(tmp), "%s.%ld.%08x.tmp", r->path, (long)getpid(),
                     randombytes_random());
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "keyring path is too long");
    if (!(text = sodium_malloc(RING_TEXT_MAX + 1)))
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    size_t len = (size_t)snprintf(text, RING_TEXT_MAX,
                                  "# dcms keyring: key-encryption keys by version; secret, "
                                  "mode 0600 (see docs/keys.md)\n");
    for (size_t i = 0; i < r->n; i++) {
        char b64[64];
        dcms_b64_encode(b64, r->keks[i].key, DCMS_DEK_LEN);
        len += (size_t)snprintf(text + len, RING_TEXT_MAX - len, "v%" PRId64 " %s\n",
                                r->keks[i].version, b64);
        sodium_memzero(b64, sizeof(b64));
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        e = dcms_err_set(ei, DCMS_ERR_CONFIG, "cannot create keyring file %s: %s", tmp,
                         strerror(errno));
        goto out;
    }
    bool ok = write(fd, text, len) == (ssize_t)len && fsync(fd) == 0;
    close(fd);
    if (!ok) {
        unlink(tmp);
        e = dcms_err_set(ei, DCMS_ERR_IO, "cannot write keyring file %s", r->path);
        goto out;
    }
    int rc = create ? link(tmp, r->path) : rename(tmp, r->path);
    int err = errno;
    if (create || rc != 0)
        unlink(tmp);
    if (rc != 0 && create && err == EEXIST && lost) {
        *lost = true;
        goto out;
    }
    if (rc != 0) {
        e = dcms_err_set(ei, DCMS_ERR_CONFIG, "cannot write keyring file %s: %s", r->path,
                         strerror(err));
        goto out;
    }
    /* Make the new directory entry durable too. */
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", r->path);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = slash == dir ? (slash[1] = '\0', '/') : '\0';
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            (void)fsync(dfd);
            close(dfd);
        }
    }
out:
    sodium_memzero(text, RING_TEXT_MAX + 1);
    sodium_free(text);
    return e;
}

/* Runs fn under an exclusive flock on "<path>.lock", so nodes change the file one at a time. */
static int lock_file(struct ring *r, struct dcms_errinfo *ei)
{
    char lp[4096 + 8];
    int n = snprintf(lp, sizeof(lp), "%s.lock", r->path);
    if (n < 0 || (size_t)n >= sizeof(lp)) {
        dcms_err_set(ei, DCMS_ERR_CONFIG, "keyring path is too long");
        return -1;
    }
    int fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        dcms_err_set(ei, DCMS_ERR_CONFIG, "cannot open %s: %s", lp, strerror(errno));
        return -1;
    }
    while (flock(fd, LOCK_EX) != 0 && errno == EINTR)
        ;
    return fd;
}

static enum dcms_err f_open(const struct dcms_keys_opts *opts, void **ctx, struct dcms_errinfo *ei)
{
    enum dcms_err e = DCMS_OK;
    if (!opts->file_path || !*opts->file_path)
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "DCMS_KEYS_FILE is empty");
    struct ring *r = calloc(1, sizeof(*r));
    if (!r)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    pthread_mutex_init(&r->mu, NULL);
    int n = snprintf(r->path, sizeof(r->path), "%s", opts->file_path);
    if (n < 0 || (size_t)n >= sizeof(r->path)) {
        e = dcms_err_set(ei, DCMS_ERR_CONFIG, "DCMS_KEYS_FILE is too long");
        goto out;
    }
    if ((e = dcms_fs_mkdirs_for(r->path, ei)))
        goto out;
    bool missing;
    if ((e = load(r, &missing, ei)))
        goto out;
    if (missing) {
        /* First start: an empty keyring; dcms_keys_open creates version 1 in it. */
        bool lost;
        if ((e = store_ring(r, true, &lost, ei)))
            goto out;
        if (lost && (e = load(r, &missing, ei)))
            goto out;
        if (!lost)
            DCMS_LOG(DCMS_LOG_INFO, "keys", "created keyring file %s", r->path);
    }
out:
    if (e) {
        ring_clear(r);
        pthread_mutex_destroy(&r->mu);
        free(r);
        return e;
    }
    *ctx = r;
    return DCMS_OK;
}

static void f_close(void *ctx)
{
    struct ring *r = ctx;
    if (!r)
        return;
    ring_clear(r);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

static bool f_has(void *ctx, int64_t version)
{
    struct ring *r = ctx;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    pthread_mutex_lock(&r->mu);
    bool found = find(r, version) != NULL;
    if (!found) {
        bool missing;
        if (load(r, &missing, &ei))
            DCMS_LOG(DCMS_LOG_ERROR, "keys", "cannot re-read the keyring: %s", ei.message);
        found = find(r, version) != NULL;
    }
    pthread_mutex_unlock(&r->mu);
    return found;
}

/* Re-reads the file under the lock, applies a change and writes it back. */
static enum dcms_err change(struct ring *r, int64_t add, int64_t drop, struct dcms_errinfo *ei)
{
    enum dcms_err e = DCMS_OK;
    int lfd = lock_file(r, ei);
    if (lfd < 0)
        return ei->code ? ei->code : DCMS_ERR_CONFIG;
    pthread_mutex_lock(&r->mu);
    bool missing;
    if ((e = load(r, &missing, ei)))
        goto out;
    if (add) {
        if (find(r, add)) {
            e = dcms_err_set(ei, DCMS_ERR_CONFLICT, "keyring already holds version %lld",
                             (long long)add);
            goto out;
        }
        if (r->n == RING_MAX) {
            e = dcms_err_set(ei, DCMS_ERR_CONFLICT, "the keyring is full");
            goto out;
        }
        unsigned char *key = sodium_malloc(DCMS_DEK_LEN);
        if (!key) {
            e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
            goto out;
        }
        randombytes_buf(key, DCMS_DEK_LEN);
        r->keks[r->n].version = add;
        r->keks[r->n].key = key;
        r->n++;
    }
    if (drop) {
        struct kek *k = find(r, drop);
        if (!k)
            goto out;
        sodium_free(k->key);
        *k = r->keks[--r->n];
    }
    e = store_ring(r, false, NULL, ei);
    if (e) {
        /* What is in memory must match the file: read it again. */
        struct dcms_errinfo ei2;
        dcms_errinfo_init(&ei2, NULL);
        (void)load(r, &missing, &ei2);
    }
out:
    pthread_mutex_unlock(&r->mu);
    flock(lfd, LOCK_UN);
    close(lfd);
    return e;
}

static enum dcms_err f_create(void *ctx, int64_t version, struct dcms_errinfo *ei)
{
    return change(ctx, version, 0, ei);
}

static enum dcms_err f_destroy(void *ctx, int64_t version, struct dcms_errinfo *ei)
{
    return change(ctx, 0, version, ei);
}

static enum dcms_err f_wrap(void *ctx, int64_t version, const unsigned char *aad, size_t aad_len,
                            const unsigned char dek[DCMS_DEK_LEN],
                            unsigned char out[KEYS_WRAPPED_LEN], struct dcms_errinfo *ei)
{
    struct ring *r = ctx;
    enum dcms_err e;
    if (!f_has(r, version))
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "the keyring has no version %lld",
                            (long long)version);
    pthread_mutex_lock(&r->mu);
    struct kek *k = find(r, version);
    randombytes_buf(out, KEYS_NONCE_LEN);
    e = k ? dcms_aead_seal(k->key, out, aad, aad_len, dek, DCMS_DEK_LEN, out + KEYS_NONCE_LEN)
          : DCMS_ERR_CONFIG;
    pthread_mutex_unlock(&r->mu);
    return e ? dcms_err_set(ei, e, "cannot wrap a data key") : DCMS_OK;
}

static enum dcms_err f_unwrap(void *ctx, int64_t version, const unsigned char *aad, size_t aad_len,
                              const unsigned char in[KEYS_WRAPPED_LEN],
                              unsigned char dek[DCMS_DEK_LEN], struct dcms_errinfo *ei)
{
    struct ring *r = ctx;
    enum dcms_err e;
    if (!f_has(r, version))
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "the keyring has no version %lld",
                            (long long)version);
    pthread_mutex_lock(&r->mu);
    struct kek *k = find(r, version);
    e = k ? dcms_aead_open(k->key, in, aad, aad_len, in + KEYS_NONCE_LEN,
                           KEYS_WRAPPED_LEN - KEYS_NONCE_LEN, dek)
          : DCMS_ERR_CONFIG;
    pthread_mutex_unlock(&r->mu);
    if (e)
        sodium_memzero(dek, DCMS_DEK_LEN);
    return e ? dcms_err_set(ei, e, "the wrapped data key does not authenticate") : DCMS_OK;
}

const struct keyring_ops keyring_file_ops = {
    .name = "file",
    .open = f_open,
    .close = f_close,
    .has = f_has,
    .create = f_create,
    .destroy = f_destroy,
    .wrap = f_wrap,
    .unwrap = f_unwrap,
};
