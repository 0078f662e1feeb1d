/*
 * dcms-workload: the program the local enclave backend runs by default, and
 * the reference for what a workload does on the enclave channel
 * (src/enclaves/channel.h). Statically linked: inside the sandbox nothing of
 * the host filesystem is visible.
 *
 * At start it makes an X25519 key pair (libsodium) and prints "ready". Then,
 * on fd 3, for every ATTEST_REQ it asks the NSM (dcmsd's side of the
 * channel) for a document binding the nonce, its public key and a
 * user_data naming itself, and relays the answer as ATTEST_RESP. It exits 0
 * when dcmsd closes the channel, 2 on a protocol error.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "enclaves/channel.h"

#define CHAN_FD 3

static uint8_t buf[DCMS_CHAN_MAX_FRAME + 4];

static int write_all(const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(CHAN_FD, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int send_frame(uint8_t type, const uint8_t *body, size_t len)
{
    uint8_t hdr[DCMS_CHAN_HDR];
    dcms_chan_header(hdr, type, len);
    return write_all(hdr, sizeof(hdr)) || (len && write_all(body, len)) ? -1 : 0;
}

/* Reads one frame into buf; 1 on a frame, 0 on EOF, -1 on error or a bad frame. */
static int read_frame(struct dcms_chan_frame *f)
{
    size_t have = 0;
    for (;;) {
        enum dcms_chan_status st = dcms_chan_parse(buf, have, f);
        if (st == DCMS_CHAN_OK)
            return 1;
        if (st == DCMS_CHAN_BAD)
            return -1;
        /* Read exactly what the frame still needs, so nothing of the next one is lost. */
        size_t want = have < DCMS_CHAN_HDR ? DCMS_CHAN_HDR - have : 0;
        if (!want) {
            size_t total = ((size_t)buf[0] << 24 | (size_t)buf[1] << 16 | (size_t)buf[2] << 8 |
                            (size_t)buf[3]) +
                           4;
            want = total - have;
        }
        ssize_t r = read(CHAN_FD, buf + have, want);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0 && have == 0)
            return 0;
        if (r <= 0)
            return -1;
        have += (size_t)r;
    }
}

int main(void)
{
    static const char user_data[] = "dcms-workload " DCMS_WORKLOAD_VERSION;
    uint8_t pk[crypto_box_PUBLICKEYBYTES], sk[crypto_box_SECRETKEYBYTES];
    if (sodium_init() < 0 || crypto_box_keypair(pk, sk) != 0) {
        fprintf(stderr, "dcms-workload: cannot make a key pair\n");
        return 1;
    }
    printf("dcms-workload: ready\n");
    fflush(stdout);

    for (;;) {
        struct dcms_chan_frame f;
        int r = read_frame(&f);
        if (r == 0)
            break;
        if (r < 0 || f.type != DCMS_CHAN_ATTEST_REQ || f.body_len == 0 ||
            f.body_len > DCMS_CHAN_MAX_NONCE) {
            fprintf(stderr, "dcms-workload: protocol error on the channel\n");
            return 2;
        }
        uint8_t nonce[DCMS_CHAN_MAX_NONCE], req[3 * (2 + DCMS_CHAN_MAX_FIELD)];
        size_t nonce_len = f.body_len;
        memcpy(nonce, f.body, nonce_len);
        struct dcms_chan_nsm_req q = {.nonce = nonce,
                                      .nonce_len = nonce_len,
                                      .user_data = (const uint8_t *)user_data,
                                      .user_data_len = sizeof(user_data) - 1,
                                      .public_key = pk,
                                      .public_key_len = sizeof(pk)};
        size_t n = dcms_chan_nsm_req_encode(&q, req, sizeof(req));
        if (!n || send_frame(DCMS_CHAN_NSM_REQ, req, n) || read_frame(&f) != 1 ||
            f.type != DCMS_CHAN_NSM_RESP || f.body_len == 0) {
            fprintf(stderr, "dcms-workload: no answer from the NSM\n");
            return 2;
        }
        /* Relay the NSM's answer (status byte and document, or its error) unchanged. */
        if (send_frame(DCMS_CHAN_ATTEST_RESP, f.body, f.body_len))
            return 2;
    }
    sodium_memzero(sk, sizeof(sk));
    return 0;
}
