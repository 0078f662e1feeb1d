/*
 * Fuzz target for the enclave channel codec (src/enclaves/channel.c): what
 * a hostile workload can send dcmsd. Every input is parsed frame by frame;
 * a parsed frame must lie inside the input, NSM requests must decode to
 * fields inside the body and re-encode to the same bytes, an attestation
 * response's document must lie inside its body. Anything else aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "enclaves/channel.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_nsm(const struct dcms_chan_frame *f)
{
    struct dcms_chan_nsm_req q;
    if (dcms_chan_nsm_req_parse(f->body, f->body_len, &q) != DCMS_CHAN_OK)
        return;
    const uint8_t *end = f->body + f->body_len;
    const uint8_t *ptrs[3] = {q.nonce, q.user_data, q.public_key};
    size_t lens[3] = {q.nonce_len, q.user_data_len, q.public_key_len};
    for (int i = 0; i < 3; i++) {
        if (lens[i] > DCMS_CHAN_MAX_FIELD ||
            (lens[i] && (ptrs[i] < f->body || ptrs[i] + lens[i] > end)))
            abort();
    }
    uint8_t *again = malloc(f->body_len ? f->body_len : 1);
    if (!again)
        abort();
    size_t n = dcms_chan_nsm_req_encode(&q, again, f->body_len);
    if (n != f->body_len || memcmp(again, f->body, n) != 0)
        abort();
    free(again);
}

static void check_attest_resp(const struct dcms_chan_frame *f)
{
    const uint8_t *doc = NULL;
    size_t n = 0;
    if (dcms_chan_attest_resp_parse(f, 17408, &doc, &n) != DCMS_CHAN_ATTEST_DOC)
        return;
    if (n == 0 || n > 17408 || doc != f->body + 1 || n != f->body_len - 1)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t pos = 0;
    while (pos < size) {
        struct dcms_chan_frame f;
        enum dcms_chan_status st = dcms_chan_parse(data + pos, size - pos, &f);
        if (st != DCMS_CHAN_OK)
            break;
        if (f.frame_len < DCMS_CHAN_HDR || f.frame_len > size - pos ||
            f.body != data + pos + DCMS_CHAN_HDR || f.body_len != f.frame_len - DCMS_CHAN_HDR)
            abort();
        if (f.type == DCMS_CHAN_NSM_REQ)
            check_nsm(&f);
        check_attest_resp(&f);
        pos += f.frame_len;
    }
    return 0;
}
