/*
 * Test workload: a hostile trainer for tests/api/training.test.mjs. Built
 * twice:
 *   wl_trainer_replay   answers the enclave service's first attestation
 *                       honestly, then replays that document (its nonce is
 *                       stale) when the training service asks with a fresh
 *                       nonce: no key may be released to it.
 *   wl_trainer_badbind  attests honestly, takes the job and the data, returns
 *                       a result whose lengths and SHA-384 are right, but
 *                       attests it with user_data that is not that hash: the
 *                       result must be refused and nothing stored.
 *   wl_trainer_slow     attests honestly, but answers the training service's
 *                       attestation request (the second one) only after
 *                       three seconds, so a test can change who may train
 *                       while the job waits before its key release.
 * It speaks the frames of training/README.md ("Channel protocol") on fd 3.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include <errno.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "enclaves/channel.h"

enum { F_JOB = 16, F_SEGMENT = 18, F_RESULT = 20, F_RESULT_END = 21 };

static uint8_t buf[DCMS_CHAN_MAX_FRAME + 4];
static uint8_t pk[crypto_box_PUBLICKEYBYTES], sk[crypto_box_SECRETKEYBYTES];

static int write_all(const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t w = write(3, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

static int send_frame(uint8_t type, const void *body, size_t len)
{
    uint8_t hdr[DCMS_CHAN_HDR];
    dcms_chan_header(hdr, type, len);
    return write_all(hdr, sizeof(hdr)) || (len && write_all(body, len)) ? -1 : 0;
}

/* 1 on a frame, 0 on EOF, -1 on error. */
static int read_frame(struct dcms_chan_frame *f)
{
    size_t have = 0;
    for (;;) {
        enum dcms_chan_status st = dcms_chan_parse(buf, have, f);
        if (st == DCMS_CHAN_OK)
            return 1;
        if (st == DCMS_CHAN_BAD)
            return -1;
        size_t want =
            have < DCMS_CHAN_HDR
                ? DCMS_CHAN_HDR - have
                : ((size_t)buf[0] << 24 | (size_t)buf[1] << 16 | (size_t)buf[2] << 8 | buf[3]) + 4 -
                      have;
        ssize_t r = read(3, buf + have, want);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0 && have == 0)
            return 0;
        if (r <= 0)
            return -1;
        have += (size_t)r;
    }
}

/* Asks the NSM for a document; *resp (malloc'd) is the NSM_RESP body. */
static int nsm(const uint8_t *nonce, size_t nonce_len, const uint8_t *ud, size_t ud_len,
               uint8_t **resp, size_t *resp_len)
{
    uint8_t req[3 * (2 + DCMS_CHAN_MAX_FIELD)];
    struct dcms_chan_nsm_req q = {.nonce = nonce,
                                  .nonce_len = nonce_len,
                                  .user_data = ud,
                                  .user_data_len = ud_len,
                                  .public_key = pk,
                                  .public_key_len = sizeof(pk)};
    struct dcms_chan_frame f;
    size_t n = dcms_chan_nsm_req_encode(&q, req, sizeof(req));
    if (!n || send_frame(DCMS_CHAN_NSM_REQ, req, n) || read_frame(&f) != 1 ||
        f.type != DCMS_CHAN_NSM_RESP || !f.body_len || !(*resp = malloc(f.body_len)))
        return -1;
    memcpy(*resp, f.body, f.body_len);
    *resp_len = f.body_len;
    return 0;
}

static void be64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

int main(void)
{
    static const char model[] = "not a safetensors file";
    static const char metrics[] = "{\"accuracy\":1}";
    uint8_t *first = NULL, result_nonce[64];
    size_t first_len = 0, rn_len = 0;
    unsigned attests = 0;
    if (sodium_init() < 0)
        return 1;
    crypto_box_keypair(pk, sk);
    (void)first_len; /* replayed by wl_trainer_replay only */
    for (;;) {
        struct dcms_chan_frame f;
        int r = read_frame(&f);
        if (r <= 0)
            return r == 0 ? 0 : 2;
        if (f.type == DCMS_CHAN_ATTEST_REQ) {
            uint8_t *doc = NULL;
            size_t len = 0;
            attests++;
#ifdef ROGUE_REPLAY
            if (attests > 1 && first) {
                if (send_frame(DCMS_CHAN_ATTEST_RESP, first, first_len))
                    return 2;
                continue;
            }
#endif
#ifdef ROGUE_SLOW
            if (attests > 1)
                nanosleep(&(struct timespec){3, 0}, NULL);
#endif
            if (nsm(f.body, f.body_len, NULL, 0, &doc, &len) ||
                send_frame(DCMS_CHAN_ATTEST_RESP, doc, len))
                return 2;
            if (!first) {
                first = doc;
                first_len = len;
            } else {
                free(doc);
            }
        } else if (f.type == F_JOB) {
            /* "result_nonce":"<hex>" */
            const char *p = memmem(f.body, f.body_len, "\"result_nonce\":\"", 16);
            if (!p)
                return 2;
            p += 16;
            const char *end = memchr(p, '"', (size_t)((const char *)f.body + f.body_len - p));
            if (!end || sodium_hex2bin(result_nonce, sizeof(result_nonce), p, (size_t)(end - p),
                                       NULL, &rn_len, NULL))
                return 2;
        } else if (f.type == F_SEGMENT) {
            /* id | u64 index | u8 final | nonce[12] | u32 ct_len | u32 offset | chunk */
            if (f.body_len < 2)
                return 2;
            size_t idn = (size_t)f.body[0] << 8 | f.body[1], p = 2 + idn + 8;
            if (f.body_len < p + 1 + 12 + 8)
                return 2;
            int final = f.body[p];
            p += 1 + 12;
            uint32_t ct_len = (uint32_t)f.body[p] << 24 | (uint32_t)f.body[p + 1] << 16 |
                              (uint32_t)f.body[p + 2] << 8 | f.body[p + 3];
            uint32_t off = (uint32_t)f.body[p + 4] << 24 | (uint32_t)f.body[p + 5] << 16 |
                           (uint32_t)f.body[p + 6] << 8 | f.body[p + 7];
            size_t chunk = f.body_len - (p + 8);
            if (!final || off + chunk != ct_len)
                continue;
            /* the last byte of the data: a result that hashes right, attested wrong */
            uint8_t part[64], end[16 + 48], ud[48] = {0}, lenbe[8];
            part[0] = 0;
            memcpy(part + 1, model, sizeof(model) - 1);
            if (send_frame(F_RESULT, part, sizeof(model)))
                return 2;
            part[0] = 1;
            memcpy(part + 1, metrics, sizeof(metrics) - 1);
            if (send_frame(F_RESULT, part, sizeof(metrics)))
                return 2;
            be64(end, sizeof(model) - 1);
            be64(end + 8, sizeof(metrics) - 1);
            be64(lenbe, sizeof(model) - 1);
            unsigned int hl = 0;
            EVP_MD_CTX *m = EVP_MD_CTX_new();
            if (!m || !EVP_DigestInit_ex(m, EVP_sha384(), NULL) || !EVP_DigestUpdate(m, lenbe, 8) ||
                !EVP_DigestUpdate(m, model, sizeof(model) - 1) ||
                !EVP_DigestUpdate(m, metrics, sizeof(metrics) - 1) ||
                !EVP_DigestFinal_ex(m, end + 16, &hl))
                return 2;
            EVP_MD_CTX_free(m);
            if (send_frame(F_RESULT_END, end, sizeof(end)))
                return 2;
            uint8_t *doc = NULL;
            size_t len = 0;
            ud[0] = 1; /* not the result's hash */
            if (nsm(result_nonce, rn_len, ud, sizeof(ud), &doc, &len) ||
                send_frame(DCMS_CHAN_ATTEST_RESP, doc, len))
                return 2;
            free(doc);
        }
    }
}
