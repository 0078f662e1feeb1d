/*
 * The training frames on the enclave channel (training/README.md, "Channel
 * protocol"). Same layout as src/enclaves/channel.h,
 *
 *   u32 length (big-endian, 1..DCMS_CHAN_MAX_FRAME) | u8 type | body[length-1]
 *
 * with these types beside the attestation ones (1..4):
 *
 *   dcmsd -> trainer  TRAIN_JOB        JSON {"config":{..}, "datasets":[id..], "result_nonce":hex}
 *   dcmsd -> trainer  TRAIN_KEY        id | sealed DEK (crypto_box_seal of 32 bytes, 80 bytes)
 *   dcmsd -> trainer  TRAIN_SEGMENT    id | u64 index | u8 final | nonce[12] | u32 ct_len |
 *                                      u32 offset | chunk   (one chunk of an at-rest segment)
 *   trainer -> dcmsd  TRAIN_PROGRESS   JSON {"epoch","loss","train_accuracy","val_loss",..}
 *   trainer -> dcmsd  TRAIN_RESULT     u8 part (0 model, 1 metrics) | bytes (parts in order)
 *   trainer -> dcmsd  TRAIN_RESULT_END u64 model_len | u64 metrics_len | SHA-384 of the result
 *   trainer -> dcmsd  TRAIN_ERROR      UTF-8 message
 *
 * where id is u16 length (BE, 1..64) + the dataset id bytes and every
 * integer is big-endian.
 */
#ifndef DCMS_TRAINER_FRAMES_H
#define DCMS_TRAINER_FRAMES_H

#include <stddef.h>
#include <stdint.h>

#include "enclaves/channel.h"

/* The application range of the channel (DCMS_CHAN_APP_FIRST..LAST, parsed by dcms_chan_parse). */
enum dcms_train_frame {
    DCMS_TRAIN_JOB = DCMS_CHAN_APP_FIRST,
    DCMS_TRAIN_KEY = 17,
    DCMS_TRAIN_SEGMENT = 18,
    DCMS_TRAIN_PROGRESS = 19,
    DCMS_TRAIN_RESULT = 20,
    DCMS_TRAIN_RESULT_END = 21,
    DCMS_TRAIN_ERROR = DCMS_CHAN_APP_LAST,
};

#define DCMS_TRAIN_MAX_ID 64u
#define DCMS_TRAIN_MAX_SEGMENT (1u << 20) /* plaintext bytes per segment (the datasets') */
#define DCMS_TRAIN_MAX_CHUNK 16384u       /* ciphertext bytes per TRAIN_SEGMENT frame */
#define DCMS_TRAIN_DEK_LEN 32u
#define DCMS_TRAIN_SEALED_LEN 80u /* crypto_box_SEALBYTES + 32 */
#define DCMS_TRAIN_TAG_LEN 16u
#define DCMS_TRAIN_NONCE_LEN 12u
#define DCMS_TRAIN_RESULT_CHUNK 16384u
#define DCMS_TRAIN_SHA384_LEN 48u

/* A dataset id field at body[*pos]: 0 and advances *pos, -1 if malformed. */
int dcms_train_id_parse(const uint8_t *body, size_t len, size_t *pos, const uint8_t **id,
                        size_t *id_len);

/* The fixed part of a TRAIN_SEGMENT body after the id: index, final, nonce, ct_len, offset. */
#define DCMS_TRAIN_SEGMENT_FIXED (8u + 1u + DCMS_TRAIN_NONCE_LEN + 4u + 4u)
#define DCMS_TRAIN_AAD_MAX (16u + DCMS_TRAIN_MAX_ID + 9u)

/* A TRAIN_SEGMENT frame: one chunk of segment `index` of dataset `id`. Views into the body. */
struct dcms_train_segment {
    const uint8_t *id;
    size_t id_len;
    uint64_t index;
    int final;
    const uint8_t *nonce; /* DCMS_TRAIN_NONCE_LEN bytes */
    uint32_t ct_len;      /* the whole segment: ciphertext and tag */
    uint32_t offset;      /* of this chunk in the segment */
    const uint8_t *chunk;
    size_t chunk_len;
};

/*
 * Decodes a TRAIN_SEGMENT body. -1 unless the frame is well formed: final 0
 * or 1, ct_len in DCMS_TRAIN_TAG_LEN + 1 .. DCMS_TRAIN_MAX_SEGMENT +
 * DCMS_TRAIN_TAG_LEN, a chunk of 1..DCMS_TRAIN_MAX_CHUNK bytes that lies
 * inside ct_len. (Order and contiguity are the receiver's to check.)
 */
int dcms_train_segment_parse(const uint8_t *body, size_t len, struct dcms_train_segment *out);

/*
 * Writes the TRAIN_SEGMENT body for s (chunk included) into out[cap];
 * returns its length, or 0 when it does not fit or s breaks the rules above.
 */
size_t dcms_train_segment_encode(const struct dcms_train_segment *s, uint8_t *out, size_t cap);

/*
 * The associated data of segment `index` of dataset `id`, as the datasets
 * service seals it at rest (dcms_datasets_segment_aad in
 * include/dcms/datasets.h): "dcms.dataset.v1" NUL | id | u64 BE index | u8
 * final. With the random nonce stored beside each segment, a segment moved
 * to another index or dataset, or a stream cut after a non-final segment,
 * fails to open. Returns the length, 0 if cap is too small.
 */
size_t dcms_train_segment_aad(const uint8_t *id, size_t id_len, uint64_t index, int final,
                              uint8_t *out, size_t cap);

#endif
