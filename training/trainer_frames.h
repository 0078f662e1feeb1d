/*
 * The training frames on the enclave channel: a proposal the training
 * service implements (training/README.md, "Channel protocol"). Same layout
 * as src/enclaves/channel.h,
 *
 *   u32 length (big-endian, 1..DCMS_CHAN_MAX_FRAME) | u8 type | body[length-1]
 *
 * with these types beside the attestation ones (1..4):
 *
 *   dcmsd -> trainer  TRAIN_JOB      JSON {"config":{..}, "datasets":[id..], "result_nonce":hex}
 *   dcmsd -> trainer  TRAIN_KEY      id | sealed DEK (crypto_box_seal of 32 bytes, 80 bytes)
 *   dcmsd -> trainer  TRAIN_SEGMENT  id | u64 index (BE) | u8 final | AES-256-GCM ct || tag
 *   trainer -> dcmsd  TRAIN_PROGRESS JSON
 * {"epoch","loss","train_accuracy","val_loss","val_accuracy"} trainer -> dcmsd  TRAIN_RESULT   u8
 * part (0 model, 1 metrics) | bytes (parts in order) trainer -> dcmsd  TRAIN_RESULT_END u64
 * model_len | u64 metrics_len | SHA-384 of the result trainer -> dcmsd  TRAIN_ERROR    UTF-8
 * message
 *
 * where id is u16 length (BE, 1..64) + the dataset id bytes.
 */
#ifndef DCMS_TRAINER_FRAMES_H
#define DCMS_TRAINER_FRAMES_H

#include <stddef.h>
#include <stdint.h>

#include "enclaves/channel.h"

enum dcms_train_frame {
    DCMS_TRAIN_JOB = 16,
    DCMS_TRAIN_KEY = 17,
    DCMS_TRAIN_SEGMENT = 18,
    DCMS_TRAIN_PROGRESS = 19,
    DCMS_TRAIN_RESULT = 20,
    DCMS_TRAIN_RESULT_END = 21,
    DCMS_TRAIN_ERROR = 22,
};

#define DCMS_TRAIN_MAX_ID 64u
#define DCMS_TRAIN_MAX_SEGMENT 16384u /* plaintext bytes per segment */
#define DCMS_TRAIN_DEK_LEN 32u
#define DCMS_TRAIN_SEALED_LEN 80u /* crypto_box_SEALBYTES + 32 */
#define DCMS_TRAIN_TAG_LEN 16u
#define DCMS_TRAIN_NONCE_LEN 12u
#define DCMS_TRAIN_RESULT_CHUNK 16384u
#define DCMS_TRAIN_SHA384_LEN 48u

/* Like dcms_chan_parse, but also accepts the training types. */
enum dcms_chan_status dcms_train_frame_parse(const uint8_t *buf, size_t len,
                                             struct dcms_chan_frame *out);

/* A dataset id field at body[*pos]: 0 and advances *pos, -1 if malformed. */
int dcms_train_id_parse(const uint8_t *body, size_t len, size_t *pos, const uint8_t **id,
                        size_t *id_len);

/*
 * The segment nonce (STREAM construction, Hoang et al. 2015): bytes 0..2
 * zero, bytes 3..10 the segment index (u64 BE), byte 11 the final flag (1
 * on the last segment, else 0). The AAD is "dcms.segment.v1" | 0x00 | the
 * dataset id, so a segment cannot move to another dataset, another index,
 * or be dropped from the end unnoticed.
 */
void dcms_train_segment_nonce(uint64_t index, int final, uint8_t nonce[DCMS_TRAIN_NONCE_LEN]);
size_t dcms_train_segment_aad(const uint8_t *id, size_t id_len, uint8_t *out, size_t cap);

#endif
