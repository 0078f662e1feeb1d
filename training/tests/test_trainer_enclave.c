/*
 * dcms-trainer's frame loop driven over a socketpair by an in-process fake
 * dcmsd: attestation with the ephemeral key, job, sealed keys, encrypted
 * segments, progress, result and the result's attestation; and refusals.
 * The segments are sealed exactly as the datasets service stores them
 * (dcms_datasets_segment_aad, dcms_aead_seal with a random nonce, from
 * libdcms) and cut into chunks.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <sodium.h>

#include "dcms/crypto.h"
#include "dcms/datasets.h"
#include "safetensors.h"
#include "trainer.h"
#include "trainer_enclave.h"
#include "trainer_frames.h"
#include "trainer_json.h"

#define IDENTITY "dcms-trainer test"
#define DS1 "0b6f1c2e-5d4a-4e1b-9c3d-2a7f8e9d0c11"
#define DS2 "7a1e2f3d-4c5b-4a69-8b7c-6d5e4f3a2b10"
#define CONFIG                                                                                     \
    "{\"label\":\"diagnosis\",\"split\":{\"method\":\"modulo\",\"folds\":5,\"holdout_fold\":4},"   \
    "\"epochs\":40,\"learning_rate\":0.1,\"metadata\":{\"training_id\":\"t-1\"}}"

struct side {
    int fd[2];
    pthread_t th;
    int rc;
    uint8_t buf[DCMS_CHAN_MAX_FRAME + 4];
    uint8_t pk[32];
};

static void *trainer_thread(void *arg)
{
    struct side *s = arg;
    s->rc = dcms_trainer_enclave_run(s->fd[1], IDENTITY);
    close(s->fd[1]);
    return NULL;
}

static void start(struct side *s)
{
    memset(s, 0, sizeof(*s));
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, s->fd), 0);
    assert_int_equal(pthread_create(&s->th, NULL, trainer_thread, s), 0);
}

static int finish(struct side *s)
{
    close(s->fd[0]);
    pthread_join(s->th, NULL);
    return s->rc;
}

static void send_frame(struct side *s, uint8_t type, const void *body, size_t len)
{
    uint8_t hdr[DCMS_CHAN_HDR];
    dcms_chan_header(hdr, type, len);
    /* The trainer may already have stopped reading: a failed write is fine in refusal tests. */
    if (send(s->fd[0], hdr, sizeof(hdr), MSG_NOSIGNAL) != (ssize_t)sizeof(hdr))
        return;
    if (len && send(s->fd[0], body, len, MSG_NOSIGNAL) != (ssize_t)len)
        return;
}

/* Reads one frame; returns its type, 0 on EOF. */
static int recv_frame(struct side *s, struct dcms_chan_frame *f)
{
    size_t have = 0;
    for (;;) {
        enum dcms_chan_status st = dcms_chan_parse(s->buf, have, f);
        if (st == DCMS_CHAN_OK)
            return f->type;
        assert_int_not_equal(st, DCMS_CHAN_BAD);
        size_t want = have < 5 ? 5 - have
                               : ((size_t)s->buf[0] << 24 | (size_t)s->buf[1] << 16 |
                                  (size_t)s->buf[2] << 8 | s->buf[3]) +
                                     4 - have;
        ssize_t r = read(s->fd[0], s->buf + have, want);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (r < 0)
                fail_msg("read: %s", strerror(errno));
            assert_int_equal(have, 0);
            return 0;
        }
        have += (size_t)r;
    }
}

/* Plays the NSM: answers one NSM_REQ with a document "doc:<user_data>", checks the relay. */
static void nsm(struct side *s, const char *nonce, const uint8_t *ud, size_t ud_len)
{
    struct dcms_chan_frame f;
    struct dcms_chan_nsm_req q;
    assert_int_equal(recv_frame(s, &f), DCMS_CHAN_NSM_REQ);
    assert_int_equal(dcms_chan_nsm_req_parse(f.body, f.body_len, &q), DCMS_CHAN_OK);
    assert_int_equal(q.nonce_len, strlen(nonce));
    assert_memory_equal(q.nonce, nonce, q.nonce_len);
    assert_int_equal(q.user_data_len, ud_len);
    assert_memory_equal(q.user_data, ud, ud_len);
    assert_int_equal(q.public_key_len, 32);
    memcpy(s->pk, q.public_key, 32);
    uint8_t resp[128] = {0};
    memcpy(resp + 1, "doc", 3);
    send_frame(s, DCMS_CHAN_NSM_RESP, resp, 4);
    assert_int_equal(recv_frame(s, &f), DCMS_CHAN_ATTEST_RESP);
    assert_int_equal(f.body_len, 4);
    assert_memory_equal(f.body, resp, 4);
}

static void attest_first(struct side *s)
{
    send_frame(s, DCMS_CHAN_ATTEST_REQ, "n1", 2);
    nsm(s, "n1", (const uint8_t *)IDENTITY, strlen(IDENTITY));
}

static void send_job(struct side *s, const char *config, const char *datasets)
{
    char job[2048];
    snprintf(job, sizeof(job), "{\"config\":%s,\"datasets\":%s,\"result_nonce\":\"6e32\"}", config,
             datasets);
    send_frame(s, DCMS_TRAIN_JOB, job, strlen(job));
}

static size_t id_field(uint8_t *p, const char *id)
{
    size_t n = strlen(id);
    p[0] = (uint8_t)(n >> 8);
    p[1] = (uint8_t)n;
    memcpy(p + 2, id, n);
    return 2 + n;
}

static void send_key(struct side *s, const char *id, const uint8_t dek[32], const uint8_t *to_pk)
{
    uint8_t body[2 + 64 + DCMS_TRAIN_SEALED_LEN];
    size_t n = id_field(body, id);
    assert_int_equal(crypto_box_seal(body + n, dek, 32, to_pk), 0);
    send_frame(s, DCMS_TRAIN_KEY, body, n + DCMS_TRAIN_SEALED_LEN);
}

static uint8_t ct_buf[DCMS_DATASET_SEGMENT_BYTES + DCMS_AEAD_TAG_LEN];

/*
 * Seals pt as the datasets service stores segment idx of dataset `aad_id`:
 * a random nonce, AAD dcms_datasets_segment_aad(). Returns the ct length.
 */
static size_t seal_at_rest(const char *aad_id, const uint8_t dek[32], uint64_t idx, int final,
                           const char *pt, size_t len, uint8_t nonce[12])
{
    unsigned char aad[DCMS_DATASET_AAD_LEN];
    size_t alen = dcms_datasets_segment_aad(aad_id, (int64_t)idx, final, aad);
    randombytes_buf(nonce, 12);
    assert_true(len <= DCMS_DATASET_SEGMENT_BYTES);
    assert_int_equal(dcms_aead_seal(dek, nonce, aad, alen, pt, len, ct_buf), DCMS_OK);
    return len + DCMS_AEAD_TAG_LEN;
}

/*
 * Sends ct_buf[from..to) of a segment of ct_len bytes as TRAIN_SEGMENT
 * chunks of at most `chunk` bytes (to = 0: up to the end).
 */
static void send_chunks(struct side *s, const char *id, uint64_t idx, int final,
                        const uint8_t nonce[12], size_t ct_len, size_t from, size_t to,
                        size_t chunk)
{
    static uint8_t body[DCMS_CHAN_MAX_FRAME];
    if (!to)
        to = ct_len;
    for (size_t off = from; off < to; off += chunk) {
        struct dcms_train_segment sg = {.id = (const uint8_t *)id,
                                        .id_len = strlen(id),
                                        .index = idx,
                                        .final = final,
                                        .nonce = nonce,
                                        .ct_len = (uint32_t)ct_len,
                                        .offset = (uint32_t)off,
                                        .chunk = ct_buf + off,
                                        .chunk_len = to - off < chunk ? to - off : chunk};
        size_t n = dcms_train_segment_encode(&sg, body, sizeof(body));
        assert_true(n > 0);
        send_frame(s, DCMS_TRAIN_SEGMENT, body, n);
    }
}

static void send_segment(struct side *s, const char *id, const uint8_t dek[32], uint64_t idx,
                         int final, const char *pt, size_t len, size_t chunk)
{
    uint8_t nonce[12];
    size_t ct_len = seal_at_rest(id, dek, idx, final, pt, len, nonce);
    send_chunks(s, id, idx, final, nonce, ct_len, 0, 0, chunk);
}

/* A dataset as segments of `seg` plaintext bytes, each in chunks of `chunk` bytes. */
static void send_dataset(struct side *s, const char *id, const uint8_t dek[32], const char *pt,
                         size_t len, size_t seg, size_t chunk)
{
    uint64_t idx = 0;
    for (size_t off = 0;; off += seg, idx++) {
        size_t k = len - off < seg ? len - off : seg;
        int final = off + k == len;
        send_segment(s, id, dek, idx, final, pt + off, k, chunk);
        if (final)
            break;
    }
}

static char *bc_csv(size_t *len)
{
    FILE *f = fopen(DCMS_SOURCE_DIR "/tests/data/breast_cancer.csv", "rb");
    assert_non_null(f);
    static char b[1 << 20];
    *len = fread(b, 1, sizeof(b), f);
    fclose(f);
    return b;
}

/* Expects a TRAIN_ERROR containing `needle`, then the trainer ends with 3. */
static void expect_error(struct side *s, const char *needle)
{
    struct dcms_chan_frame f;
    assert_int_equal(recv_frame(s, &f), DCMS_TRAIN_ERROR);
    char msg[1100];
    snprintf(msg, sizeof(msg), "%.*s", (int)f.body_len, (const char *)f.body);
    if (!strstr(msg, needle))
        fail_msg("error \"%s\" lacks \"%s\"", msg, needle);
    assert_int_equal(finish(s), 3);
}

static void test_job_end_to_end(void **state)
{
    struct side s;
    start(&s);
    attest_first(&s);
    size_t len;
    char *csv = bc_csv(&len);
    /* Two datasets: the first 300 lines, then the header and the rest. */
    const char *p = csv;
    for (int i = 0; i < 300; i++)
        p = strchr(p, '\n') + 1;
    size_t first = (size_t)(p - csv), hdr = (size_t)(strchr(csv, '\n') + 1 - csv);
    char *second = malloc(hdr + len - first);
    memcpy(second, csv, hdr);
    memcpy(second + hdr, p, len - first);
    uint8_t k1[32], k2[32];
    randombytes_buf(k1, 32);
    randombytes_buf(k2, 32);
    send_job(&s, CONFIG, "[\"" DS1 "\",\"" DS2 "\"]");
    send_key(&s, DS1, k1, s.pk);
    send_key(&s, DS2, k2, s.pk);
    /* One segment of ~100 KB in full 16 KiB chunks, then small segments in odd chunks. */
    send_dataset(&s, DS1, k1, csv, first, DCMS_DATASET_SEGMENT_BYTES, DCMS_TRAIN_MAX_CHUNK);
    /* An attestation request in the middle of the stream is answered too. */
    send_frame(&s, DCMS_CHAN_ATTEST_REQ, "n2", 2);
    nsm(&s, "n2", (const uint8_t *)IDENTITY, strlen(IDENTITY));
    send_dataset(&s, DS2, k2, second, hdr + len - first, 5000, 1500);
    free(second);

    struct dcms_chan_frame f;
    int epochs = 0;
    uint8_t *parts[2] = {NULL, NULL};
    size_t plen[2] = {0, 0};
    for (;;) {
        int t = recv_frame(&s, &f);
        if (t == DCMS_TRAIN_PROGRESS) {
            json_t *j = json_loadb((const char *)f.body, f.body_len, 0, NULL);
            assert_int_equal(json_integer_value(json_object_get(j, "epoch")), ++epochs);
            assert_true(json_is_real(json_object_get(j, "val_accuracy")));
            json_decref(j);
            continue;
        }
        if (t != DCMS_TRAIN_RESULT)
            break;
        assert_true(f.body_len >= 1 && f.body[0] <= 1);
        int k = f.body[0];
        parts[k] = realloc(parts[k], plen[k] + f.body_len);
        memcpy(parts[k] + plen[k], f.body + 1, f.body_len - 1);
        plen[k] += f.body_len - 1;
    }
    assert_int_equal(epochs, 40);
    assert_int_equal(f.type, DCMS_TRAIN_RESULT_END);
    assert_int_equal(f.body_len, 16 + 48);
    uint8_t end[64], digest[48], lenbuf[8];
    memcpy(end, f.body, 64);
    uint64_t ml = 0, jl = 0;
    for (int i = 0; i < 8; i++) {
        ml = ml << 8 | end[i];
        jl = jl << 8 | end[8 + i];
    }
    assert_int_equal(ml, plen[0]);
    assert_int_equal(jl, plen[1]);
    memcpy(lenbuf, end, 8);
    EVP_MD_CTX *h = EVP_MD_CTX_new();
    unsigned int dl = 0;
    EVP_DigestInit_ex(h, EVP_sha384(), NULL);
    EVP_DigestUpdate(h, lenbuf, 8);
    EVP_DigestUpdate(h, parts[0], plen[0]);
    EVP_DigestUpdate(h, parts[1], plen[1]);
    EVP_DigestFinal_ex(h, digest, &dl);
    EVP_MD_CTX_free(h);
    assert_memory_equal(digest, end + 16, 48);
    /* The result's attestation: user_data = SHA-384 of the result, nonce from the job. */
    nsm(&s, "n2", digest, 48);
    assert_int_equal(finish(&s), 0);

    /* The model is the one the core trains on the original file. */
    struct dcms_trainer_job job;
    struct dcms_trainer_data d;
    struct dcms_trainer_model m;
    struct dcms_trainer_metrics met;
    char err[512];
    assert_int_equal(dcms_trainer_job_from_json(CONFIG, strlen(CONFIG), &job, err, sizeof(err)), 0);
    assert_int_equal(dcms_trainer_data_parse(csv, len, &job.cfg, &d, err, sizeof(err)), 0);
    assert_int_equal(dcms_trainer_train(&job.cfg, &d, NULL, &m, &met, err, sizeof(err)), 0);
    uint8_t *mb;
    size_t mn;
    assert_int_equal(dcms_st_encode(&m, &d, &job.cfg, job.meta, job.n_meta, 1, &mb, &mn), 0);
    assert_int_equal(mn, plen[0]);
    assert_memory_equal(mb, parts[0], mn);
    json_t *mj = json_loadb((const char *)parts[1], plen[1], 0, NULL);
    assert_true(json_real_value(json_object_get(mj, "accuracy")) == met.accuracy);
    assert_int_equal(json_integer_value(json_object_get(mj, "rows")), 113);
    json_decref(mj);
    free(mb);
    free(parts[0]);
    free(parts[1]);
    dcms_trainer_model_free(&m);
    dcms_trainer_metrics_free(&met);
    dcms_trainer_data_free(&d);
    dcms_trainer_job_release(&job);
}

/* Job, key, ready for segments of DS1 (and DS2 when two). */
static void ready(struct side *s, const uint8_t k[32], int two)
{
    start(s);
    attest_first(s);
    send_job(s, CONFIG, two ? "[\"" DS1 "\",\"" DS2 "\"]" : "[\"" DS1 "\"]");
    send_key(s, DS1, k, s->pk);
    if (two)
        send_key(s, DS2, k, s->pk);
}

static void test_tampered_segment(void **state)
{
    struct side s;
    size_t len;
    char *csv = bc_csv(&len);
    uint8_t k[32], nonce[12];
    randombytes_buf(k, 32);
    ready(&s, k, 0);
    send_segment(&s, DS1, k, 0, 0, csv, 4096, 1000);
    size_t n = seal_at_rest(DS1, k, 1, 1, csv + 4096, 4096, nonce);
    ct_buf[3500] ^= 1; /* a ciphertext bit in the second chunk */
    send_chunks(&s, DS1, 1, 1, nonce, n, 0, 0, 3000);
    expect_error(&s, "segment 1: authentication failed");
    /* Another nonce than the one it was sealed with. */
    ready(&s, k, 0);
    n = seal_at_rest(DS1, k, 0, 1, csv, 100, nonce);
    nonce[0] ^= 1;
    send_chunks(&s, DS1, 0, 1, nonce, n, 0, 0, 3000);
    expect_error(&s, "segment 0: authentication failed");
}

static void test_reordered_and_truncated(void **state)
{
    struct side s;
    size_t len;
    char *csv = bc_csv(&len);
    uint8_t k[32], nonce[12];
    randombytes_buf(k, 32);
    /* Segment 1 first. */
    ready(&s, k, 0);
    send_segment(&s, DS1, k, 1, 0, csv, 100, 1000);
    expect_error(&s, "out of order");
    /* Segment 1 sent as segment 0 (relabelled): its AAD says 1. */
    ready(&s, k, 0);
    size_t n = seal_at_rest(DS1, k, 1, 0, csv, 100, nonce);
    send_chunks(&s, DS1, 0, 0, nonce, n, 0, 0, 1000);
    expect_error(&s, "segment 0: authentication failed");
    /* A non-final segment relabelled final (truncation) fails authentication. */
    ready(&s, k, 0);
    n = seal_at_rest(DS1, k, 0, 0, csv, 100, nonce);
    send_chunks(&s, DS1, 0, 1, nonce, n, 0, 0, 1000);
    expect_error(&s, "segment 0: authentication failed");
    /* Stream cut before the final segment: no training, protocol error on EOF. */
    ready(&s, k, 0);
    send_segment(&s, DS1, k, 0, 0, csv, 100, 1000);
    assert_int_equal(finish(&s), 2);
    /* Cut inside a segment (its last chunk missing): the same. */
    ready(&s, k, 0);
    n = seal_at_rest(DS1, k, 0, 1, csv, 5000, nonce);
    send_chunks(&s, DS1, 0, 1, nonce, n, 0, 3000, 1000);
    assert_int_equal(finish(&s), 2);
}

static void test_segment_of_another_dataset(void **state)
{
    struct side s;
    size_t len;
    char *csv = bc_csv(&len);
    uint8_t k[32], nonce[12];
    randombytes_buf(k, 32);
    /* Sealed for DS2 (same key, to isolate the AAD), sent as DS1's. */
    ready(&s, k, 1);
    size_t n = seal_at_rest(DS2, k, 0, 1, csv, 200, nonce);
    send_chunks(&s, DS1, 0, 1, nonce, n, 0, 0, 1000);
    expect_error(&s, "segment 0: authentication failed");
    /* DS2's segments before DS1 is complete. */
    ready(&s, k, 1);
    send_segment(&s, DS1, k, 0, 0, csv, 200, 1000);
    send_segment(&s, DS2, k, 0, 1, csv, 200, 1000);
    expect_error(&s, "one after the other");
    /* A chunk of DS2 in the middle of a DS1 segment. */
    ready(&s, k, 1);
    send_segment(&s, DS1, k, 0, 0, csv, 200, 1000);
    n = seal_at_rest(DS1, k, 1, 1, csv, 3000, nonce);
    send_chunks(&s, DS1, 1, 1, nonce, n, 0, 1000, 1000); /* first chunk only */
    send_segment(&s, DS2, k, 0, 1, csv, 200, 1000);
    expect_error(&s, "one after the other");
}

static void test_bad_chunks(void **state)
{
    struct side s;
    size_t len;
    char *csv = bc_csv(&len);
    uint8_t k[32], nonce[12], other[12];
    randombytes_buf(k, 32);
    /* The first chunk of a segment not at offset 0. */
    ready(&s, k, 0);
    size_t n = seal_at_rest(DS1, k, 0, 1, csv, 5000, nonce);
    send_chunks(&s, DS1, 0, 1, nonce, n, 1000, 0, 1000);
    expect_error(&s, "chunk at offset 1000, expected 0");
    /* A gap: 0..1000, then 2000.. */
    ready(&s, k, 0);
    n = seal_at_rest(DS1, k, 0, 1, csv, 5000, nonce);
    send_chunks(&s, DS1, 0, 1, nonce, n, 0, 1000, 1000);
    send_chunks(&s, DS1, 0, 1, nonce, n, 2000, 0, 1000);
    expect_error(&s, "chunk at offset 2000, expected 1000");
    /* A chunk repeated (overlap). */
    ready(&s, k, 0);
    n = seal_at_rest(DS1, k, 0, 1, csv, 5000, nonce);
    send_chunks(&s, DS1, 0, 1, nonce, n, 0, 2000, 1000);
    send_chunks(&s, DS1, 0, 1, nonce, n, 1000, 0, 1000);
    expect_error(&s, "chunk at offset 1000, expected 2000");
    /* The next chunk with another nonce (another segment) before the end. */
    ready(&s, k, 0);
    n = seal_at_rest(DS1, k, 0, 1, csv, 5000, nonce);
    memcpy(other, nonce, 12);
    other[11] ^= 1;
    send_chunks(&s, DS1, 0, 1, nonce, n, 0, 1000, 1000);
    send_chunks(&s, DS1, 0, 1, other, n, 1000, 0, 1000);
    expect_error(&s, "a chunk of another segment");
    /* Malformed: a chunk past ct_len, a chunk above 16 KiB, ct_len above 1 MiB + tag. */
    uint8_t body[DCMS_CHAN_MAX_FRAME];
    struct dcms_train_segment sg = {.id = (const uint8_t *)DS1,
                                    .id_len = 36,
                                    .nonce = nonce,
                                    .ct_len = 100,
                                    .offset = 90,
                                    .chunk = ct_buf,
                                    .chunk_len = 20};
    assert_int_equal(dcms_train_segment_encode(&sg, body, sizeof(body)), 0);
    sg.offset = 80;
    n = dcms_train_segment_encode(&sg, body, sizeof(body));
    assert_true(n > 0);
    struct dcms_train_segment back;
    assert_int_equal(dcms_train_segment_parse(body, n, &back), 0);
    assert_int_equal(back.offset, 80);
    assert_int_equal(back.ct_len, 100);
    assert_int_equal(back.chunk_len, 20);
    body[n - 20 - 1] = 95; /* offset 95: the chunk ends past ct_len */
    assert_int_equal(dcms_train_segment_parse(body, n, &back), -1);
    ready(&s, k, 0);
    send_frame(&s, DCMS_TRAIN_SEGMENT, body, n);
    expect_error(&s, "segment: malformed frame");
    sg.offset = 0;
    sg.ct_len = DCMS_TRAIN_MAX_SEGMENT + DCMS_TRAIN_TAG_LEN + 1;
    assert_int_equal(dcms_train_segment_encode(&sg, body, sizeof(body)), 0);
    sg.ct_len = 20000;
    sg.chunk_len = DCMS_TRAIN_MAX_CHUNK + 1;
    assert_int_equal(dcms_train_segment_encode(&sg, body, sizeof(body)), 0);
    sg.chunk_len = 10;
    sg.ct_len = DCMS_TRAIN_TAG_LEN; /* an empty segment */
    assert_int_equal(dcms_train_segment_encode(&sg, body, sizeof(body)), 0);
}

/* The trainer's AAD is byte for byte the one the datasets service seals with. */
static void test_aad_equals_datasets(void **state)
{
    const char *ids[] = {DS1, DS2};
    const uint64_t idx[] = {0, 1, 255, 256, 0x0102030405060708ull};
    for (size_t i = 0; i < 2; i++)
        for (size_t j = 0; j < sizeof(idx) / sizeof(idx[0]); j++)
            for (int fin = 0; fin <= 1; fin++) {
                unsigned char want[DCMS_DATASET_AAD_LEN];
                uint8_t got[DCMS_TRAIN_AAD_MAX];
                size_t wl = dcms_datasets_segment_aad(ids[i], (int64_t)idx[j], fin, want);
                size_t gl = dcms_train_segment_aad((const uint8_t *)ids[i], 36, idx[j], fin, got,
                                                   sizeof(got));
                assert_int_equal(gl, wl);
                assert_memory_equal(got, want, wl);
            }
    uint8_t small[20];
    assert_int_equal(dcms_train_segment_aad((const uint8_t *)DS1, 36, 0, 0, small, sizeof(small)),
                     0);
}

static void test_key_for_another_enclave(void **state)
{
    struct side s;
    uint8_t k[32], pk[32], sk[32];
    randombytes_buf(k, 32);
    crypto_box_keypair(pk, sk);
    start(&s);
    attest_first(&s);
    send_job(&s, CONFIG, "[\"" DS1 "\"]");
    send_key(&s, DS1, k, pk);
    expect_error(&s, "not sealed to this enclave");
}

static void test_bad_jobs(void **state)
{
    struct side s;
    start(&s);
    attest_first(&s);
    send_job(&s, "{\"label\":\"diagnosis\",\"test_seed\":1}", "[\"" DS1 "\"]");
    expect_error(&s, "test_seed: not accepted");
    start(&s);
    send_job(&s, "{\"model\":\"svm\"}", "[\"" DS1 "\"]");
    expect_error(&s, "model: logistic_regression or mlp");
    start(&s);
    send_job(&s, CONFIG, "[]");
    expect_error(&s, "job: expected");
    /* A second dataset with another header. */
    size_t len;
    char *csv = bc_csv(&len);
    uint8_t k[32];
    randombytes_buf(k, 32);
    start(&s);
    attest_first(&s);
    send_job(&s, CONFIG, "[\"" DS1 "\",\"" DS2 "\"]");
    send_key(&s, DS1, k, s.pk);
    send_key(&s, DS2, k, s.pk);
    send_dataset(&s, DS1, k, csv, len, 8000, 3000);
    send_dataset(&s, DS2, k, "x,diagnosis\n1,0\n", 16, 8000, 3000);
    expect_error(&s, "another header row");
    /* Frames out of place: a key before the job, an unknown type. */
    uint8_t pk[32], sk[32];
    crypto_box_keypair(pk, sk);
    start(&s);
    send_key(&s, DS1, k, pk);
    assert_int_equal(finish(&s), 2);
    start(&s);
    send_frame(&s, 9, "x", 1);
    assert_int_equal(finish(&s), 2);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_job_end_to_end),
        cmocka_unit_test(test_tampered_segment),
        cmocka_unit_test(test_reordered_and_truncated),
        cmocka_unit_test(test_segment_of_another_dataset),
        cmocka_unit_test(test_bad_chunks),
        cmocka_unit_test(test_aad_equals_datasets),
        cmocka_unit_test(test_key_for_another_enclave),
        cmocka_unit_test(test_bad_jobs),
    };
    if (sodium_init() < 0)
        return 1;
    /* The trainer writes its error frame after a refusal even when the fake side has closed. */
    signal(SIGPIPE, SIG_IGN);
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
