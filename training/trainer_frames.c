/* Training frame codec (trainer_frames.h). Plain libc. */
#include <string.h>

#include "trainer_frames.h"

int dcms_train_id_parse(const uint8_t *body, size_t len, size_t *pos, const uint8_t **id,
                        size_t *id_len)
{
    if (len < *pos || len - *pos < 2)
        return -1;
    size_t n = (size_t)body[*pos] << 8 | body[*pos + 1];
    if (n < 1 || n > DCMS_TRAIN_MAX_ID || len - *pos - 2 < n)
        return -1;
    *id = body + *pos + 2;
    *id_len = n;
    *pos += 2 + n;
    return 0;
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static int segment_ok(const struct dcms_train_segment *s)
{
    return s->final >= 0 && s->final <= 1 && s->ct_len > DCMS_TRAIN_TAG_LEN &&
           s->ct_len <= DCMS_TRAIN_MAX_SEGMENT + DCMS_TRAIN_TAG_LEN && s->chunk_len >= 1 &&
           s->chunk_len <= DCMS_TRAIN_MAX_CHUNK && s->offset < s->ct_len &&
           s->chunk_len <= s->ct_len - s->offset;
}

int dcms_train_segment_parse(const uint8_t *body, size_t len, struct dcms_train_segment *out)
{
    size_t pos = 0;
    if (dcms_train_id_parse(body, len, &pos, &out->id, &out->id_len) ||
        len - pos < DCMS_TRAIN_SEGMENT_FIXED || body[pos + 8] > 1)
        return -1;
    out->index = 0;
    for (int i = 0; i < 8; i++)
        out->index = out->index << 8 | body[pos + i];
    out->final = body[pos + 8];
    pos += 9;
    out->nonce = body + pos;
    pos += DCMS_TRAIN_NONCE_LEN;
    out->ct_len = get_u32(body + pos);
    out->offset = get_u32(body + pos + 4);
    pos += 8;
    out->chunk = body + pos;
    out->chunk_len = len - pos;
    return segment_ok(out) ? 0 : -1;
}

size_t dcms_train_segment_encode(const struct dcms_train_segment *s, uint8_t *out, size_t cap)
{
    size_t n = 2 + s->id_len + DCMS_TRAIN_SEGMENT_FIXED + s->chunk_len;
    if (s->id_len < 1 || s->id_len > DCMS_TRAIN_MAX_ID || !segment_ok(s) || n > cap)
        return 0;
    size_t pos = 0;
    out[pos++] = (uint8_t)(s->id_len >> 8);
    out[pos++] = (uint8_t)s->id_len;
    memcpy(out + pos, s->id, s->id_len);
    pos += s->id_len;
    for (int i = 0; i < 8; i++)
        out[pos++] = (uint8_t)(s->index >> (56 - 8 * i));
    out[pos++] = (uint8_t)s->final;
    memcpy(out + pos, s->nonce, DCMS_TRAIN_NONCE_LEN);
    pos += DCMS_TRAIN_NONCE_LEN;
    put_u32(out + pos, s->ct_len);
    put_u32(out + pos + 4, s->offset);
    pos += 8;
    memcpy(out + pos, s->chunk, s->chunk_len);
    return pos + s->chunk_len;
}

size_t dcms_train_segment_aad(const uint8_t *id, size_t id_len, uint64_t index, int final,
                              uint8_t *out, size_t cap)
{
    static const char tag[] = "dcms.dataset.v1"; /* its NUL is the separator */
    size_t n = sizeof(tag) + id_len + 9;
    if (n > cap)
        return 0;
    memcpy(out, tag, sizeof(tag));
    memcpy(out + sizeof(tag), id, id_len);
    for (int i = 0; i < 8; i++)
        out[sizeof(tag) + id_len + (size_t)i] = (uint8_t)(index >> (56 - 8 * i));
    out[n - 1] = final ? 1 : 0;
    return n;
}
