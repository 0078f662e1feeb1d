/*
 * dcms-trainer inside the local sandbox, driven through the backend's
 * session channel (what dcms_enclave_session_send/recv use): attestation
 * with the trainer's key, a data key sealed to it, the datasets' at-rest
 * segments (1 MiB, random nonce, dcms_datasets_segment_aad, sealed before
 * the clock starts, as they are stored), in 16 KiB chunks.
 *
 *   bench_trainer_session TRAINER CSV CONFIG_JSON STREAM_MIB STREAM_OUT
 *
 * Training: CSV (one dataset) with CONFIG_JSON (the trainer's job config).
 * train_cpu_seconds= is the CPU time the workload used from after its
 * attestation to the end of its result (job, key, segments, parsing,
 * training with a progress frame per epoch, the result), read from the
 * backend's probe (10 ms ticks), comparable with the CPU time of a whole
 * dcms-trainer-cli run. train_epochs_timed= and train_seconds= are the wall
 * clock from the first progress frame received to the last (epochs 2..N).
 *
 * Streaming (skipped when STREAM_MIB is 0): a synthetic numeric CSV of STREAM_MIB MiB (written to
 * STREAM_OUT, for sha256sum to hash in the same run) as the first of two
 * datasets of a job; the clock runs from its first chunk to the answer of
 * an attestation request sent after its last chunk (the trainer answers
 * frames in order, so every segment has been received and decrypted by
 * then). Prints stream_bytes= and stream_seconds=.
 *
 * Exit 1 on any failure.
 */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "dcms/attest.h"
#include "dcms/clock.h"
#include "dcms/crypto.h"
#include "dcms/datasets.h"
#include "enclaves/backend.h"
#include "enclaves/channel.h"
#include "enclaves/channel_io.h"

enum { T_JOB = 16, T_KEY = 17, T_SEGMENT = 18, T_PROGRESS = 19, T_RESULT = 20, T_END = 21 };
#define CHUNK 16384u
#define SEG DCMS_DATASET_SEGMENT_BYTES

struct bench {
    struct dcms_enclave_backend *b;
    struct dcms_attest_verifier *v;
    struct dcms_enclave_channel *ch;
    char ref[DCMS_ENCLAVE_REF_MAX];
    uint8_t buf[CHAN_IO_BUF];
    unsigned char pk[32];
};

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st;
    (void)flag;
    (void)f;
    return remove(p);
}

static int fail(const char *what, const struct dcms_errinfo *ei)
{
    fprintf(stderr, "bench_trainer_session: %s%s%s\n", what, ei ? ": " : "", ei ? ei->message : "");
    return -1;
}

static int64_t deadline(void)
{
    return dcms_clock_mono_us() / 1000 + 600000;
}

static int sendf(struct bench *x, uint8_t type, const void *body, size_t len)
{
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    return x->ch->send(x->ch, type, body, len, deadline(), &ei) ? fail("send", &ei) : 0;
}

static int recvf(struct bench *x, struct dcms_chan_frame *f)
{
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    return x->ch->recv(x->ch, x->buf, f, deadline(), &ei) ? fail("recv", &ei) : 0;
}

/* ATTEST_REQ, the document verified (local root, nonce); the trainer's key into x->pk. */
static int attest(struct bench *x)
{
    unsigned char nonce[32];
    struct dcms_chan_frame f;
    randombytes_buf(nonce, sizeof(nonce));
    if (sendf(x, DCMS_CHAN_ATTEST_REQ, nonce, sizeof(nonce)) || recvf(x, &f))
        return -1;
    if (f.type != DCMS_CHAN_ATTEST_RESP || f.body_len < 2 || f.body[0] != 0)
        return fail("no attestation document", NULL);
    struct dcms_attest_policy pol;
    dcms_attest_policy_init(&pol);
    pol.nonce = nonce;
    pol.nonce_len = sizeof(nonce);
    struct dcms_attest_report rep;
    int rc = -1;
    if (dcms_attest_verify(x->v, f.body + 1, f.body_len - 1, &pol, &rep) == DCMS_OK && rep.valid &&
        rep.doc->has_public_key && rep.doc->public_key.len == 32) {
        memcpy(x->pk, rep.doc->public_key.ptr, 32);
        rc = 0;
    }
    dcms_attest_report_release(&rep);
    return rc ? fail("the attestation does not verify", NULL) : 0;
}

static int open_trainer(struct bench *x, const char *trainer)
{
    struct dcms_enclave_spec sp = {.enclave_id = "bench-trainer",
                                   .image_path = trainer,
                                   .cpu_cores = 1,
                                   .memory_mb = 1024,
                                   .storage_gb = 1};
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    if (x->b->start(x->b, &sp, x->ref, &ei))
        return fail("start", &ei);
    if (x->b->channel(x->b, x->ref, &x->ch, &ei))
        return fail("channel", &ei);
    return attest(x);
}

static void close_trainer(struct bench *x)
{
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    if (x->ch)
        x->ch->close(x->ch);
    x->ch = NULL;
    (void)x->b->terminate(x->b, x->ref, &ei);
}

static size_t id_field(uint8_t *p, const char *id)
{
    size_t n = strlen(id);
    p[0] = (uint8_t)(n >> 8);
    p[1] = (uint8_t)n;
    memcpy(p + 2, id, n);
    return 2 + n;
}

static void be(uint8_t *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        p[i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
}

/* A dataset sealed as stored at rest: segment i at ct[i], its nonce at nonces[i]. */
struct sealed {
    size_t n;
    unsigned char **ct;
    size_t *ct_len;
    unsigned char (*nonces)[DCMS_AEAD_NONCE_LEN];
};

static int seal_dataset(const char *id, const unsigned char dek[32], const char *pt, size_t len,
                        struct sealed *s)
{
    s->n = (len + SEG - 1) / SEG;
    s->ct = calloc(s->n, sizeof(*s->ct));
    s->ct_len = calloc(s->n, sizeof(*s->ct_len));
    s->nonces = calloc(s->n, sizeof(*s->nonces));
    if (!s->ct || !s->ct_len || !s->nonces)
        return fail("out of memory", NULL);
    for (size_t i = 0; i < s->n; i++) {
        size_t off = i * SEG, k = len - off < SEG ? len - off : SEG;
        unsigned char aad[DCMS_DATASET_AAD_LEN];
        size_t alen = dcms_datasets_segment_aad(id, (int64_t)i, i + 1 == s->n, aad);
        randombytes_buf(s->nonces[i], DCMS_AEAD_NONCE_LEN);
        if (!(s->ct[i] = malloc(k + DCMS_AEAD_TAG_LEN)) ||
            dcms_aead_seal(dek, s->nonces[i], aad, alen, pt + off, k, s->ct[i]))
            return fail("seal", NULL);
        s->ct_len[i] = k + DCMS_AEAD_TAG_LEN;
    }
    return 0;
}

static void sealed_free(struct sealed *s)
{
    for (size_t i = 0; s->ct && i < s->n; i++)
        free(s->ct[i]);
    free(s->ct);
    free(s->ct_len);
    free(s->nonces);
}

static int send_dataset(struct bench *x, const char *id, const struct sealed *s)
{
    static uint8_t body[DCMS_CHAN_MAX_FRAME];
    for (size_t i = 0; i < s->n; i++)
        for (size_t c = 0; c < s->ct_len[i]; c += CHUNK) {
            size_t k = s->ct_len[i] - c < CHUNK ? s->ct_len[i] - c : CHUNK, p = id_field(body, id);
            be(body + p, i, 8);
            body[p + 8] = i + 1 == s->n;
            memcpy(body + p + 9, s->nonces[i], 12);
            be(body + p + 21, s->ct_len[i], 4);
            be(body + p + 25, c, 4);
            memcpy(body + p + 29, s->ct[i] + c, k);
            if (sendf(x, T_SEGMENT, body, p + 29 + k))
                return -1;
        }
    return 0;
}

static int send_job(struct bench *x, const char *config, const char *const *ids, size_t n,
                    const unsigned char dek[32])
{
    char job[8192], list[256] = "";
    for (size_t i = 0; i < n; i++)
        snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s\"%s\"", i ? "," : "",
                 ids[i]);
    int jl =
        snprintf(job, sizeof(job),
                 "{\"config\":%s,\"datasets\":[%s],\"result_nonce\":\"6e6f6e6365\"}", config, list);
    if (jl < 0 || (size_t)jl >= sizeof(job) || sendf(x, T_JOB, job, (size_t)jl))
        return fail("job", NULL);
    for (size_t i = 0; i < n; i++) {
        uint8_t key[2 + 64 + 80];
        size_t kp = id_field(key, ids[i]);
        if (crypto_box_seal(key + kp, dek, 32, x->pk) != 0 || sendf(x, T_KEY, key, kp + 80))
            return fail("key", NULL);
    }
    return 0;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *b = NULL;
    long n;
    if (f && fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (b = malloc((size_t)n)) && fread(b, 1, (size_t)n, f) == (size_t)n)
        *len = (size_t)n;
    else {
        free(b);
        b = NULL;
    }
    if (f)
        fclose(f);
    return b;
}

static int bench_training(struct bench *x, const char *trainer, const char *csv_path,
                          const char *config)
{
    size_t len = 0;
    char *csv = read_file(csv_path, &len);
    unsigned char dek[32];
    struct sealed s = {0};
    const char *id = "0b6f1c2e-5d4a-4e1b-9c3d-2a7f8e9d0c11";
    int rc = -1;
    randombytes_buf(dek, sizeof(dek));
    struct dcms_enclave_probe p0, p1;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    if (!csv || seal_dataset(id, dek, csv, len, &s) || open_trainer(x, trainer) ||
        x->b->probe(x->b, x->ref, &p0, &ei) || send_job(x, config, &id, 1, dek) ||
        send_dataset(x, id, &s))
        goto out;
    int64_t first = 0, last = 0;
    unsigned epochs = 0;
    for (;;) {
        struct dcms_chan_frame f;
        if (recvf(x, &f))
            goto out;
        if (f.type == T_PROGRESS) {
            last = dcms_clock_mono_us();
            if (!epochs++)
                first = last;
        } else if (f.type == T_END) {
            break;
        } else if (f.type != T_RESULT) {
            fail("the trainer refused the job", NULL);
            fprintf(stderr, "  %.*s\n", (int)f.body_len, (const char *)f.body);
            goto out;
        }
    }
    if (epochs < 2) {
        fail("fewer than 2 epochs", NULL);
        goto out;
    }
    if (x->b->probe(x->b, x->ref, &p1, &ei))
        goto out;
    printf("train_epochs_timed=%u\ntrain_seconds=%.6f\ntrain_cpu_seconds=%.3f\n", epochs - 1,
           (double)(last - first) / 1e6, (double)(p1.cpu_time_ms - p0.cpu_time_ms) / 1e3);
    rc = 0;
out:
    close_trainer(x);
    sealed_free(&s);
    free(csv);
    return rc;
}

/* Numeric rows "f1,...,f8,label" until `bytes`, written to `out_path`. */
static char *synth_csv(size_t bytes, const char *out_path, size_t *len)
{
    char *b = malloc(bytes + 256);
    if (!b)
        return NULL;
    size_t n = (size_t)snprintf(b, 256, "f1,f2,f3,f4,f5,f6,f7,f8,label\n");
    uint32_t r = 12345;
    while (n < bytes) {
        for (int i = 0; i < 8; i++) {
            r = r * 1103515245u + 12345u;
            n += (size_t)snprintf(b + n, 32, "%u.%03u,", (r >> 16) % 1000, (r >> 4) % 1000);
        }
        n += (size_t)snprintf(b + n, 8, "%u\n", (r >> 8) & 1);
    }
    FILE *f = fopen(out_path, "wb");
    if (!f || fwrite(b, 1, n, f) != n || fclose(f) != 0) {
        free(b);
        return NULL;
    }
    *len = n;
    return b;
}

static int bench_streaming(struct bench *x, const char *trainer, size_t mib, const char *out_path)
{
    size_t len = 0;
    char *csv = synth_csv(mib << 20, out_path, &len);
    unsigned char dek[32];
    struct sealed s = {0};
    const char *ids[2] = {"7a1e2f3d-4c5b-4a69-8b7c-6d5e4f3a2b10",
                          "0b6f1c2e-5d4a-4e1b-9c3d-2a7f8e9d0c11"};
    int rc = -1;
    randombytes_buf(dek, sizeof(dek));
    if (!csv || seal_dataset(ids[0], dek, csv, len, &s) || open_trainer(x, trainer) ||
        send_job(x, "{\"label\":\"label\",\"epochs\":1}", ids, 2, dek))
        goto out;
    struct dcms_enclave_probe p0, p1;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct timespec c0, c1;
    if (x->b->probe(x->b, x->ref, &p0, &ei))
        goto out;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
    int64_t t0 = dcms_clock_mono_us();
    if (send_dataset(x, ids[0], &s) || attest(x))
        goto out;
    int64_t t1 = dcms_clock_mono_us();
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
    if (x->b->probe(x->b, x->ref, &p1, &ei))
        goto out;
    printf("stream_bytes=%zu\nstream_seconds=%.6f\n", len, (double)(t1 - t0) / 1e6);
    /* Where the time went: CPU of this side (sending) and of the trainer (receiving, opening). */
    printf("stream_sender_cpu_ms=%.0f\nstream_trainer_cpu_ms=%llu\n",
           (double)(c1.tv_sec - c0.tv_sec) * 1e3 + (double)(c1.tv_nsec - c0.tv_nsec) / 1e6,
           (unsigned long long)(p1.cpu_time_ms - p0.cpu_time_ms));
    rc = 0;
out:
    close_trainer(x);
    sealed_free(&s);
    free(csv);
    return rc;
}

int main(int argc, char **argv)
{
    char *end = NULL;
    long mib = argc == 6 ? strtol(argv[4], &end, 10) : 0;
    if (argc != 6 || !end || *end || mib < 0 || mib > 256) {
        fprintf(stderr,
                "usage: bench_trainer_session TRAINER CSV CONFIG_JSON STREAM_MIB STREAM_OUT\n");
        return 2;
    }
    struct bench *x = calloc(1, sizeof(*x));
    char dir[] = "/tmp/dcms-btr-XXXXXX", path[64];
    struct dcms_attest_local *module = NULL;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    int rc = 1;
    if (!x || dcms_crypto_init() || !mkdtemp(dir))
        goto out;
    snprintf(path, sizeof(path), "%s/attest", dir);
    size_t pem_len;
    const char *pem;
    if (dcms_attest_local_open(path, &module, &ei) ||
        !(pem = dcms_attest_local_root_pem(module, &pem_len)) ||
        dcms_attest_verifier_new(pem, pem_len, &x->v, &ei)) {
        fail("attestation module", &ei);
        goto out;
    }
    snprintf(path, sizeof(path), "%s/scratch", dir);
    struct dcms_enclave_local_opts o = {.scratch_root = path, .module = module};
    if (dcms_enclave_backend_local_new(&o, &x->b, &ei)) {
        fail("local backend", &ei);
        goto out;
    }
    if (!bench_training(x, argv[1], argv[2], argv[3]) &&
        (mib == 0 || !bench_streaming(x, argv[1], (size_t)mib, argv[5])))
        rc = 0;
out:
    if (x) {
        dcms_enclave_backend_free(x->b);
        dcms_attest_verifier_free(x->v);
    }
    dcms_attest_local_free(module);
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(x);
    return rc;
}
