/* Training frame codec (trainer_frames.h). Plain libc. */
#include <string.h>

#include "trainer_frames.h"

enum dcms_chan_status dcms_train_frame_parse(const uint8_t *buf, size_t len,
                                             struct dcms_chan_frame *out)
{
    if (len < 4)
        return DCMS_CHAN_NEED_MORE;
    uint32_t n = (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 | (uint32_t)buf[2] << 8 | buf[3];
    if (n == 0 || n > DCMS_CHAN_MAX_FRAME)
        return DCMS_CHAN_BAD;
    if (len < 5)
        return DCMS_CHAN_NEED_MORE;
    uint8_t t = buf[4];
    if (!((t >= DCMS_CHAN_ATTEST_REQ && t <= DCMS_CHAN_ATTEST_RESP) ||
          (t >= DCMS_TRAIN_JOB && t <= DCMS_TRAIN_ERROR)))
        return DCMS_CHAN_BAD;
    if (len - 4 < n)
        return DCMS_CHAN_NEED_MORE;
    out->type = t;
    out->body = buf + 5;
    out->body_len = n - 1;
    out->frame_len = (size_t)n + 4;
    return DCMS_CHAN_OK;
}

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

void dcms_train_segment_nonce(uint64_t index, int final, uint8_t nonce[DCMS_TRAIN_NONCE_LEN])
{
    memset(nonce, 0, DCMS_TRAIN_NONCE_LEN);
    for (int i = 0; i < 8; i++)
        nonce[3 + i] = (uint8_t)(index >> (56 - 8 * i));
    nonce[11] = final ? 1 : 0;
}

size_t dcms_train_segment_aad(const uint8_t *id, size_t id_len, uint8_t *out, size_t cap)
{
    static const char tag[] = "dcms.segment.v1";
    size_t n = sizeof(tag) + id_len; /* the tag's NUL is the 0x00 separator */
    if (n > cap)
        return 0;
    memcpy(out, tag, sizeof(tag));
    memcpy(out + sizeof(tag), id, id_len);
    return n;
}
