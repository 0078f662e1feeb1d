/*
 * Frame codec of the enclave channel (channel.h). Plain libc so the
 * workload program compiles the same file; fuzzed by tests/fuzz/enclave_channel.
 */
#include <string.h>

#include "enclaves/channel.h"

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

int dcms_chan_type_ok(uint8_t type)
{
    return (type >= DCMS_CHAN_ATTEST_REQ && type <= DCMS_CHAN_ATTEST_RESP) ||
           (type >= DCMS_CHAN_APP_FIRST && type <= DCMS_CHAN_APP_LAST);
}

enum dcms_chan_status dcms_chan_parse(const uint8_t *buf, size_t len, struct dcms_chan_frame *out)
{
    if (len < 4)
        return DCMS_CHAN_NEED_MORE;
    uint32_t n = get_u32(buf);
    if (n == 0 || n > DCMS_CHAN_MAX_FRAME)
        return DCMS_CHAN_BAD;
    if (len < 5)
        return DCMS_CHAN_NEED_MORE;
    if (!dcms_chan_type_ok(buf[4]))
        return DCMS_CHAN_BAD;
    if (len - 4 < n)
        return DCMS_CHAN_NEED_MORE;
    out->type = buf[4];
    out->body = buf + 5;
    out->body_len = n - 1;
    out->frame_len = (size_t)n + 4;
    return DCMS_CHAN_OK;
}

void dcms_chan_header(uint8_t hdr[DCMS_CHAN_HDR], uint8_t type, size_t body_len)
{
    uint32_t n = (uint32_t)body_len + 1;
    hdr[0] = (uint8_t)(n >> 24);
    hdr[1] = (uint8_t)(n >> 16);
    hdr[2] = (uint8_t)(n >> 8);
    hdr[3] = (uint8_t)n;
    hdr[4] = type;
}

enum dcms_chan_status dcms_chan_nsm_req_parse(const uint8_t *body, size_t len,
                                              struct dcms_chan_nsm_req *out)
{
    const uint8_t **ptrs[3] = {&out->nonce, &out->user_data, &out->public_key};
    size_t *lens[3] = {&out->nonce_len, &out->user_data_len, &out->public_key_len};
    size_t pos = 0;
    for (int i = 0; i < 3; i++) {
        if (len - pos < 2)
            return DCMS_CHAN_BAD;
        size_t n = (size_t)body[pos] << 8 | body[pos + 1];
        pos += 2;
        if (n > DCMS_CHAN_MAX_FIELD || len - pos < n)
            return DCMS_CHAN_BAD;
        *ptrs[i] = n ? body + pos : NULL;
        *lens[i] = n;
        pos += n;
    }
    return pos == len ? DCMS_CHAN_OK : DCMS_CHAN_BAD;
}

size_t dcms_chan_nsm_req_encode(const struct dcms_chan_nsm_req *r, uint8_t *out, size_t cap)
{
    const uint8_t *ptrs[3] = {r->nonce, r->user_data, r->public_key};
    size_t lens[3] = {r->nonce ? r->nonce_len : 0, r->user_data ? r->user_data_len : 0,
                      r->public_key ? r->public_key_len : 0};
    size_t pos = 0;
    for (int i = 0; i < 3; i++) {
        if (lens[i] > DCMS_CHAN_MAX_FIELD || cap - pos < 2 + lens[i])
            return 0;
        out[pos++] = (uint8_t)(lens[i] >> 8);
        out[pos++] = (uint8_t)lens[i];
        if (lens[i])
            memcpy(out + pos, ptrs[i], lens[i]);
        pos += lens[i];
    }
    return pos;
}

enum dcms_chan_attest dcms_chan_attest_resp_parse(const struct dcms_chan_frame *f, size_t max_doc,
                                                  const uint8_t **doc, size_t *doc_len)
{
    if (f->type != DCMS_CHAN_ATTEST_RESP || f->body_len < 2)
        return DCMS_CHAN_ATTEST_UNEXPECTED;
    if (f->body[0] != 0)
        return DCMS_CHAN_ATTEST_REFUSED;
    if (f->body_len - 1 > max_doc)
        return DCMS_CHAN_ATTEST_TOO_LARGE;
    *doc = f->body + 1;
    *doc_len = f->body_len - 1;
    return DCMS_CHAN_ATTEST_DOC;
}
