/*
 * dcms-trainer's frame loop (trainer_enclave.h): attest with an ephemeral
 * X25519 key, take the job and the sealed data keys, decrypt the segments,
 * train, return the result bound to a last attestation.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <sodium.h>

#include "trainer_enclave.h"
#include "trainer_frames.h"
#include "trainer_json.h"
#include "trainer_random.h"

#define MAX_DATASETS 16
#define DATA_FIRST_BYTES (2u << 20)
/* Progress frames are written together, at most every PROGRESS_FLUSH_MS (the first at once):
 * dcmsd records one per 200 ms anyway, and a system call per epoch was a tenth of the
 * time of a small model. */
#define PROGRESS_BUF (64u << 10)
#define PROGRESS_FLUSH_MS 50

struct dataset {
    char id[DCMS_TRAIN_MAX_ID + 1];
    size_t id_len;
    uint8_t *key;  /* sodium_malloc'd DEK, NULL until TRAIN_KEY */
    uint64_t next; /* next segment index */
    int done;
    size_t start; /* offset of its first byte in enc.data */
};

struct enc {
    int fd;
    uint8_t buf[DCMS_CHAN_MAX_FRAME + 4];
    uint8_t pk[crypto_box_PUBLICKEYBYTES];
    uint8_t *sk; /* sodium_malloc'd */
    const char *identity;
    struct dcms_trainer_job job;
    int have_job;
    uint8_t result_nonce[DCMS_CHAN_MAX_NONCE];
    size_t result_nonce_len;
    struct dataset ds[MAX_DATASETS];
    size_t n_ds;
    char *data; /* decrypted CSV text of every dataset, in order (mmap'd, data_cap bytes) */
    size_t data_len, data_cap;
    /* The segment being reassembled from its chunks; have == 0 between segments. */
    struct {
        struct dataset *d;
        uint64_t index;
        int final;
        uint8_t nonce[DCMS_TRAIN_NONCE_LEN];
        uint32_t ct_len, have;
        uint8_t *ct; /* DCMS_TRAIN_MAX_SEGMENT + tag, allocated at the first segment */
    } seg;
    /* Progress frames not written yet (whole frames, header included). */
    struct {
        uint8_t buf[PROGRESS_BUF];
        size_t len;
        int64_t last_ms; /* of the last write; 0: none yet */
    } pend;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int write_all(int fd, struct iovec *v, int n)
{
    while (n > 0) {
        ssize_t w = writev(fd, v, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        while (n > 0 && (size_t)w >= v->iov_len) {
            w -= (ssize_t)v->iov_len;
            v++;
            n--;
        }
        if (n > 0) {
            v->iov_base = (uint8_t *)v->iov_base + w;
            v->iov_len -= (size_t)w;
        }
    }
    return 0;
}

/* Writes the pending progress frames. */
static int flush_progress(struct enc *e)
{
    if (!e->pend.len)
        return 0;
    struct iovec v = {e->pend.buf, e->pend.len};
    e->pend.len = 0;
    e->pend.last_ms = mono_ms();
    return write_all(e->fd, &v, 1);
}

/* Queues a progress frame; written at once when the last write is PROGRESS_FLUSH_MS old. */
static int queue_progress(struct enc *e, const void *body, size_t len)
{
    if (len + 1 > DCMS_CHAN_MAX_FRAME)
        return -1;
    if (e->pend.len + DCMS_CHAN_HDR + len > sizeof(e->pend.buf) && flush_progress(e))
        return -1;
    dcms_chan_header(e->pend.buf + e->pend.len, DCMS_TRAIN_PROGRESS, len);
    memcpy(e->pend.buf + e->pend.len + DCMS_CHAN_HDR, body, len);
    e->pend.len += DCMS_CHAN_HDR + len;
    if (e->pend.last_ms && mono_ms() - e->pend.last_ms < PROGRESS_FLUSH_MS)
        return 0;
    return flush_progress(e);
}

/* Header and body in one writev, after the progress frames still queued (order kept). */
static int send_frame(struct enc *e, uint8_t type, const void *body, size_t len)
{
    uint8_t hdr[DCMS_CHAN_HDR];
    if (len + 1 > DCMS_CHAN_MAX_FRAME || flush_progress(e))
        return -1;
    dcms_chan_header(hdr, type, len);
    struct iovec iov[2] = {{hdr, sizeof(hdr)}, {(void *)body, len}};
    return write_all(e->fd, iov, len ? 2 : 1);
}

/* 1 on a frame in e->buf, 0 on EOF at a frame boundary, -1 on error or a bad frame. */
static int read_frame(struct enc *e, struct dcms_chan_frame *f)
{
    size_t have = 0;
    for (;;) {
        enum dcms_chan_status st = dcms_chan_parse(e->buf, have, f);
        if (st == DCMS_CHAN_OK)
            return 1;
        if (st == DCMS_CHAN_BAD)
            return -1;
        size_t want = have < DCMS_CHAN_HDR ? DCMS_CHAN_HDR - have : 0;
        if (!want)
            want = ((size_t)e->buf[0] << 24 | (size_t)e->buf[1] << 16 | (size_t)e->buf[2] << 8 |
                    e->buf[3]) +
                   4 - have;
        ssize_t r = read(e->fd, e->buf + have, want);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0 && have == 0)
            return 0;
        if (r <= 0)
            return -1;
        have += (size_t)r;
    }
}

__attribute__((format(printf, 2, 3))) static int job_error(struct enc *e, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    (void)send_frame(e, DCMS_TRAIN_ERROR, msg, strlen(msg));
    return 3;
}

/* NSM_REQ -> NSM_RESP; relays the answer as ATTEST_RESP. 0, or 2 on a protocol error. */
static int attest(struct enc *e, const uint8_t *nonce, size_t nonce_len, const uint8_t *ud,
                  size_t ud_len)
{
    uint8_t req[3 * (2 + DCMS_CHAN_MAX_FIELD)];
    struct dcms_chan_nsm_req q = {.nonce = nonce,
                                  .nonce_len = nonce_len,
                                  .user_data = ud,
                                  .user_data_len = ud_len,
                                  .public_key = e->pk,
                                  .public_key_len = sizeof(e->pk)};
    struct dcms_chan_frame f;
    size_t n = dcms_chan_nsm_req_encode(&q, req, sizeof(req));
    if (!n || send_frame(e, DCMS_CHAN_NSM_REQ, req, n) || read_frame(e, &f) != 1 ||
        f.type != DCMS_CHAN_NSM_RESP || f.body_len == 0)
        return 2;
    return send_frame(e, DCMS_CHAN_ATTEST_RESP, f.body, f.body_len) ? 2 : 0;
}

static int hexval(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static int on_job(struct enc *e, const uint8_t *body, size_t len)
{
    char err[2048];
    json_error_t je;
    json_t *root = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, &je);
    json_t *cfg = json_object_get(root, "config"), *ds = json_object_get(root, "datasets"),
           *nonce = json_object_get(root, "result_nonce");
    char *cfgtext = NULL;
    int rc = 3;
    if (!json_is_object(root) || !json_is_object(cfg) || !json_is_array(ds) ||
        json_array_size(ds) < 1 || json_array_size(ds) > MAX_DATASETS || !json_is_string(nonce) ||
        json_object_size(root) != 3) {
        rc = job_error(e, "job: expected {\"config\", \"datasets\": [1..%d ids], \"result_nonce\"}",
                       MAX_DATASETS);
        goto out;
    }
    const char *hex = json_string_value(nonce);
    size_t hl = strlen(hex);
    if (hl < 2 || hl % 2 || hl / 2 > DCMS_CHAN_MAX_NONCE) {
        rc = job_error(e, "job.result_nonce: 1 to %u bytes of lowercase hex", DCMS_CHAN_MAX_NONCE);
        goto out;
    }
    for (size_t i = 0; i < hl / 2; i++) {
        int h = hexval(hex[2 * i]), l = hexval(hex[2 * i + 1]);
        if (h < 0 || l < 0) {
            rc = job_error(e, "job.result_nonce: not lowercase hex");
            goto out;
        }
        e->result_nonce[i] = (uint8_t)(h << 4 | l);
    }
    e->result_nonce_len = hl / 2;
    size_t i;
    json_t *v;
    json_array_foreach(ds, i, v)
    {
        const char *id = json_string_value(v);
        size_t n = id ? strlen(id) : 0;
        if (n < 1 || n > DCMS_TRAIN_MAX_ID) {
            rc = job_error(e, "job.datasets[%zu]: an id of 1 to %u bytes", i, DCMS_TRAIN_MAX_ID);
            goto out;
        }
        memcpy(e->ds[i].id, id, n);
        e->ds[i].id_len = n;
    }
    e->n_ds = json_array_size(ds);
    cfgtext = json_dumps(cfg, JSON_COMPACT);
    if (!cfgtext ||
        dcms_trainer_job_from_json(cfgtext, strlen(cfgtext), &e->job, err, sizeof(err))) {
        rc = job_error(e, "job.config: %s", cfgtext ? err : "out of memory");
        goto out;
    }
    if (e->job.has_test_seed) {
        rc = job_error(e, "job.config.test_seed: not accepted by the enclave trainer");
        goto out;
    }
    e->have_job = 1;
    rc = 0;
out:
    free(cfgtext);
    json_decref(root);
    return rc;
}

static struct dataset *find_ds(struct enc *e, const uint8_t *id, size_t n)
{
    for (size_t i = 0; i < e->n_ds; i++)
        if (e->ds[i].id_len == n && !memcmp(e->ds[i].id, id, n))
            return &e->ds[i];
    return NULL;
}

static int on_key(struct enc *e, const uint8_t *body, size_t len)
{
    size_t pos = 0, n;
    const uint8_t *id;
    if (dcms_train_id_parse(body, len, &pos, &id, &n) || len - pos != DCMS_TRAIN_SEALED_LEN)
        return job_error(e, "key: malformed frame");
    struct dataset *d = find_ds(e, id, n);
    if (!d || d->key)
        return job_error(e, "key: not a dataset of the job, or sent twice");
    d->key = sodium_malloc(DCMS_TRAIN_DEK_LEN);
    if (!d->key)
        return job_error(e, "key: out of memory");
    if (crypto_box_seal_open(d->key, body + pos, DCMS_TRAIN_SEALED_LEN, e->pk, e->sk) != 0) {
        sodium_free(d->key);
        d->key = NULL;
        return job_error(e, "key: cannot open the sealed data key (not sealed to this enclave)");
    }
    return 0;
}

static int gcm_open(const uint8_t *key, const uint8_t *nonce, const uint8_t *aad, size_t aad_len,
                    const uint8_t *ct, size_t len, uint8_t *out)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n = 0, ok = 0;
    size_t pl = len - DCMS_TRAIN_TAG_LEN;
    if (c && EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, DCMS_TRAIN_NONCE_LEN, NULL) == 1 &&
        EVP_DecryptInit_ex(c, NULL, NULL, key, nonce) == 1 &&
        EVP_DecryptUpdate(c, NULL, &n, aad, (int)aad_len) == 1 &&
        (pl == 0 || EVP_DecryptUpdate(c, out, &n, ct, (int)pl) == 1) &&
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, DCMS_TRAIN_TAG_LEN, (void *)(ct + pl)) == 1 &&
        EVP_DecryptFinal_ex(c, out + pl, &n) == 1)
        ok = 1;
    EVP_CIPHER_CTX_free(c);
    if (!ok)
        sodium_memzero(out, pl);
    return ok ? 0 : -1;
}

/*
 * Room for n more plaintext bytes (and a NUL) in e->data; -1 past the cap
 * or out of memory. The buffer is an anonymous mapping grown with mremap:
 * its pages move, so the plaintext is never copied nor left behind in a
 * freed block, and no byte is touched twice (streaming a dataset was
 * mostly copying and page faults with malloc, copy and wipe).
 */
static int data_reserve(struct enc *e, size_t n)
{
    size_t need = e->data_len + n + 1;
    if (need > DCMS_TRAINER_MAX_DATA_BYTES)
        return -1;
    if (need <= e->data_cap)
        return 0;
    size_t nc = e->data_cap ? e->data_cap : DATA_FIRST_BYTES;
    while (nc < need)
        nc *= 2;
    void *p = e->data ? mremap(e->data, e->data_cap, nc, MREMAP_MAYMOVE)
                      : mmap(NULL, nc, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -1;
    e->data = p;
    e->data_cap = nc;
    return 0;
}

/*
 * One chunk of an at-rest segment. The chunks of a segment come in order
 * and contiguous, all with the same header; a segment opens when its last
 * chunk arrives. Segments of a dataset come in index order from 0, datasets
 * in job order.
 */
static int on_segment(struct enc *e, const uint8_t *body, size_t len)
{
    struct dcms_train_segment sg;
    if (dcms_train_segment_parse(body, len, &sg))
        return job_error(e, "segment: malformed frame");
    struct dataset *d = find_ds(e, sg.id, sg.id_len);
    if (!d || !d->key || d->done)
        return job_error(e, "segment: unknown dataset, no key yet, or after the final segment");
    for (struct dataset *p = e->ds; p < d; p++)
        if (!p->done)
            return job_error(e, "segment: datasets stream one after the other, in job order");
    if (e->seg.have == 0) {
        if (sg.index != d->next)
            return job_error(e, "segment: index %llu out of order (expected %llu)",
                             (unsigned long long)sg.index, (unsigned long long)d->next);
        if (sg.offset != 0)
            return job_error(e, "segment %llu: chunk at offset %lu, expected 0",
                             (unsigned long long)sg.index, (unsigned long)sg.offset);
        if (!e->seg.ct && !(e->seg.ct = malloc(DCMS_TRAIN_MAX_SEGMENT + DCMS_TRAIN_TAG_LEN)))
            return job_error(e, "segment: out of memory");
        e->seg.d = d;
        e->seg.index = sg.index;
        e->seg.final = sg.final;
        memcpy(e->seg.nonce, sg.nonce, DCMS_TRAIN_NONCE_LEN);
        e->seg.ct_len = sg.ct_len;
    } else if (d != e->seg.d || sg.index != e->seg.index || sg.final != e->seg.final ||
               sg.ct_len != e->seg.ct_len ||
               memcmp(sg.nonce, e->seg.nonce, DCMS_TRAIN_NONCE_LEN) != 0) {
        return job_error(e, "segment %llu: a chunk of another segment before its end",
                         (unsigned long long)e->seg.index);
    } else if (sg.offset != e->seg.have) {
        return job_error(e, "segment %llu: chunk at offset %lu, expected %lu",
                         (unsigned long long)sg.index, (unsigned long)sg.offset,
                         (unsigned long)e->seg.have);
    }
    memcpy(e->seg.ct + sg.offset, sg.chunk, sg.chunk_len);
    e->seg.have += (uint32_t)sg.chunk_len;
    if (e->seg.have < e->seg.ct_len)
        return 0;

    size_t pl = e->seg.ct_len - DCMS_TRAIN_TAG_LEN;
    uint8_t aad[DCMS_TRAIN_AAD_MAX];
    e->seg.have = 0;
    if (d->next == 0)
        d->start = e->data_len;
    if (data_reserve(e, pl))
        return job_error(e, "segment: the data exceed %lu bytes or memory",
                         DCMS_TRAINER_MAX_DATA_BYTES);
    size_t aad_len = dcms_train_segment_aad(sg.id, sg.id_len, sg.index, sg.final, aad, sizeof(aad));
    if (gcm_open(d->key, e->seg.nonce, aad, aad_len, e->seg.ct, e->seg.ct_len,
                 (uint8_t *)e->data + e->data_len))
        return job_error(e, "segment %llu: authentication failed", (unsigned long long)sg.index);
    e->data_len += pl;
    d->next++;
    d->done = sg.final;
    return 0;
}

static size_t line_len(const char *p, size_t n)
{
    const char *nl = memchr(p, '\n', n);
    size_t l = nl ? (size_t)(nl - p) : n;
    return l && p[l - 1] == '\r' ? l - 1 : l;
}

/*
 * Joins the datasets in place: each after the first must repeat the first's
 * header row, which is dropped; a missing final newline is supplied.
 */
static int join_datasets(struct enc *e)
{
    size_t w = 0, hdr = line_len(e->data, e->data_len);
    for (size_t i = 0; i < e->n_ds; i++) {
        size_t s = e->ds[i].start;
        size_t end = i + 1 < e->n_ds ? e->ds[i + 1].start : e->data_len;
        if (i > 0) {
            size_t l = line_len(e->data + s, end - s);
            if (l != hdr || memcmp(e->data + s, e->data, hdr))
                return job_error(e, "data: dataset %s has another header row than %s", e->ds[i].id,
                                 e->ds[0].id);
            s += l;
            while (s < end && (e->data[s] == '\r' || e->data[s] == '\n'))
                s++;
            if (w > 0 && e->data[w - 1] != '\n')
                e->data[w++] = '\n'; /* room: at least the dropped header */
        }
        memmove(e->data + w, e->data + s, end - s);
        w += end - s;
    }
    e->data_len = w;
    return 0;
}

struct prog {
    struct enc *e;
    int failed;
};

static int on_epoch(void *ctx, const struct dcms_trainer_epoch *ep)
{
    struct prog *p = ctx;
    json_t *j = dcms_trainer_epoch_to_json(ep);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    p->failed = !s || queue_progress(p->e, s, strlen(s));
    free(s);
    json_decref(j);
    return p->failed;
}

static int send_part(struct enc *e, uint8_t part, const uint8_t *p, size_t n)
{
    uint8_t chunk[1 + DCMS_TRAIN_RESULT_CHUNK];
    chunk[0] = part;
    do {
        size_t k = n < DCMS_TRAIN_RESULT_CHUNK ? n : DCMS_TRAIN_RESULT_CHUNK;
        memcpy(chunk + 1, p, k);
        if (send_frame(e, DCMS_TRAIN_RESULT, chunk, k + 1))
            return -1;
        p += k;
        n -= k;
    } while (n > 0);
    return 0;
}

static void be64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static int train_and_send(struct enc *e)
{
    char err[2048];
    struct dcms_trainer_data data = {0};
    struct dcms_trainer_model model = {0};
    struct dcms_trainer_metrics met = {0};
    struct dcms_trainer_random rnd;
    uint8_t *mbytes = NULL;
    char *mjson = NULL;
    size_t mlen = 0;
    json_t *mj = NULL;
    int rc = 3;
    struct prog pg = {e, 0};
    if (join_datasets(e))
        goto out;
    if (dcms_trainer_data_parse(e->data, e->data_len, &e->job.cfg, &data, err, sizeof(err))) {
        rc = job_error(e, "data: %s", err);
        goto out;
    }
    if (dcms_trainer_random_init(&rnd)) {
        rc = job_error(e, "no random source");
        goto out;
    }
    struct dcms_trainer_run run = {on_epoch, &pg, dcms_trainer_random_bytes, &rnd};
    enum dcms_trainer_rc trc =
        dcms_trainer_train(&e->job.cfg, &data, &run, &model, &met, err, sizeof(err));
    dcms_trainer_random_release(&rnd);
    if (!trc && flush_progress(e)) { /* the last epoch now, not with the result */
        rc = 2;                      /* the channel is gone */
        goto out;
    }
    if (trc) {
        rc = pg.failed ? 2 : job_error(e, "training: %s", err);
        goto out;
    }
    mj = dcms_trainer_metrics_to_json(&met, &data, &model, &e->job.cfg);
    mjson = mj ? json_dumps(mj, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if (!mjson || dcms_st_encode(&model, &data, &e->job.cfg, e->job.meta, e->job.n_meta, e->job.f64,
                                 &mbytes, &mlen)) {
        rc = job_error(e, "cannot encode the result");
        goto out;
    }
    /* The result bytes: u64 BE model length | model | metrics JSON. */
    size_t jlen = strlen(mjson);
    uint8_t end[16 + DCMS_TRAIN_SHA384_LEN];
    unsigned int hl = 0;
    be64(end, mlen);
    be64(end + 8, jlen);
    EVP_MD_CTX *h = EVP_MD_CTX_new();
    int ok = h && EVP_DigestInit_ex(h, EVP_sha384(), NULL) == 1 &&
             EVP_DigestUpdate(h, end, 8) == 1 && EVP_DigestUpdate(h, mbytes, mlen) == 1 &&
             EVP_DigestUpdate(h, mjson, jlen) == 1 && EVP_DigestFinal_ex(h, end + 16, &hl) == 1;
    EVP_MD_CTX_free(h);
    if (!ok) {
        rc = job_error(e, "cannot hash the result");
        goto out;
    }
    rc = 2;
    if (send_part(e, 0, mbytes, mlen) || send_part(e, 1, (uint8_t *)mjson, jlen) ||
        send_frame(e, DCMS_TRAIN_RESULT_END, end, sizeof(end)))
        goto out;
    rc = attest(e, e->result_nonce, e->result_nonce_len, end + 16, DCMS_TRAIN_SHA384_LEN);
out:
    free(mjson);
    json_decref(mj);
    free(mbytes);
    dcms_trainer_metrics_free(&met);
    dcms_trainer_model_free(&model);
    if (data.x)
        sodium_memzero(data.x, data.rows * data.features * sizeof(double));
    dcms_trainer_data_free(&data);
    return rc;
}

static int all_done(const struct enc *e)
{
    for (size_t i = 0; i < e->n_ds; i++)
        if (!e->ds[i].done)
            return 0;
    return e->n_ds > 0;
}

int dcms_trainer_enclave_run(int fd, const char *identity)
{
    struct enc *e = calloc(1, sizeof(*e));
    int rc = 2, trained = 0;
    if (!e || sodium_init() < 0)
        goto out;
    e->fd = fd;
    e->identity = identity;
    e->sk = sodium_malloc(crypto_box_SECRETKEYBYTES);
    if (!e->sk || crypto_box_keypair(e->pk, e->sk) != 0)
        goto out;
    for (;;) {
        struct dcms_chan_frame f;
        int r = read_frame(e, &f);
        if (r == 0) {
            rc = trained ? 0 : 2;
            break;
        }
        if (r < 0) {
            rc = 2;
            break;
        }
        if (f.type == DCMS_CHAN_ATTEST_REQ) {
            uint8_t nonce[DCMS_CHAN_MAX_NONCE];
            if (f.body_len == 0 || f.body_len > DCMS_CHAN_MAX_NONCE)
                break;
            memcpy(nonce, f.body, f.body_len);
            if ((rc = attest(e, nonce, f.body_len, (const uint8_t *)identity, strlen(identity))))
                break;
            rc = 2;
            continue;
        }
        if (trained)
            break; /* nothing but attestation after the result */
        if (f.type == DCMS_TRAIN_JOB && !e->have_job)
            rc = on_job(e, f.body, f.body_len);
        else if (f.type == DCMS_TRAIN_KEY && e->have_job)
            rc = on_key(e, f.body, f.body_len);
        else if (f.type == DCMS_TRAIN_SEGMENT && e->have_job)
            rc = on_segment(e, f.body, f.body_len);
        else {
            rc = 2;
            break;
        }
        if (rc)
            break;
        rc = 2;
        if (all_done(e)) {
            if ((rc = train_and_send(e)))
                break;
            trained = 1;
            rc = 2;
        }
    }
out:
    if (e) {
        for (size_t i = 0; i < e->n_ds; i++)
            sodium_free(e->ds[i].key);
        if (e->data) {
            sodium_memzero(e->data, e->data_cap);
            munmap(e->data, e->data_cap);
        }
        free(e->seg.ct);
        sodium_free(e->sk);
        dcms_trainer_job_release(&e->job);
        sodium_memzero(e, sizeof(*e));
        free(e);
    }
    return rc;
}
