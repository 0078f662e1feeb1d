/*
 * The enclave channel: length-prefixed frames between dcmsd and a workload,
 * over the socketpair of the local backend (fd 3 in the workload) or vsock
 * on a Nitro host. Shared by dcmsd and the workload program, so it depends
 * on nothing but libc.
 *
 * A frame is
 *
 *   u32 length (big-endian, 1..DCMS_CHAN_MAX_FRAME) | u8 type | body[length-1]
 *
 * and one attestation is four frames:
 *
 *   dcmsd    -> workload  ATTEST_REQ   body: nonce (1..64 bytes)
 *   workload -> dcmsd     NSM_REQ      body: three fields, each u16 length (BE) + bytes
 *                                      (<= 1024): nonce, user_data, public_key;
 *                                      length 0 means absent
 *   dcmsd    -> workload  NSM_RESP     body: u8 status (0 ok) + the document, or
 *                                      u8 status (1) + a message
 *   workload -> dcmsd     ATTEST_RESP  body: u8 status (0 ok) + the document, or
 *                                      u8 status (1) + a message
 *
 * The NSM side (dcmsd) issues a document for whatever NSM_REQ asks; the
 * relying party checks the nonce. Types DCMS_CHAN_APP_FIRST..LAST belong to
 * the program the enclave runs (the trainer's frames, training/trainer_frames.h),
 * carried through an enclave session (dcms/enclaves.h); no other type is a frame. Every parser here
 * is bounded and total: any byte string is either a frame, "need more", or refused.
 */
#ifndef DCMS_ENCLAVES_CHANNEL_H
#define DCMS_ENCLAVES_CHANNEL_H

#include <stddef.h>
#include <stdint.h>

#define DCMS_CHAN_MAX_FRAME 20480u /* type + body; a document is at most 17408 bytes */
#define DCMS_CHAN_MAX_FIELD 1024u
#define DCMS_CHAN_MAX_NONCE 64u
#define DCMS_CHAN_HDR 5u

enum dcms_chan_type {
    DCMS_CHAN_ATTEST_REQ = 1,
    DCMS_CHAN_NSM_REQ = 2,
    DCMS_CHAN_NSM_RESP = 3,
    DCMS_CHAN_ATTEST_RESP = 4,
    DCMS_CHAN_APP_FIRST = 16, /* the workload's own frames (training: 16..22) */
    DCMS_CHAN_APP_LAST = 22,
};

/* True for a frame type of the channel: 1..4 and DCMS_CHAN_APP_FIRST..DCMS_CHAN_APP_LAST. */
int dcms_chan_type_ok(uint8_t type);

enum dcms_chan_status {
    DCMS_CHAN_OK = 0,
    DCMS_CHAN_NEED_MORE = 1, /* buffer holds a prefix of a frame */
    DCMS_CHAN_BAD = 2,       /* not a frame: length 0 or above the maximum, unknown type */
};

/* One parsed frame; body points into the caller's buffer. */
struct dcms_chan_frame {
    uint8_t type;
    const uint8_t *body;
    size_t body_len;
    size_t frame_len; /* bytes consumed from the buffer, header included */
};

/* Parses the frame at the start of buf[0..len). Never reads outside it. */
enum dcms_chan_status dcms_chan_parse(const uint8_t *buf, size_t len, struct dcms_chan_frame *out);

/* Writes the 5-byte header for a frame of `type` with `body_len` bytes of body. */
void dcms_chan_header(uint8_t hdr[DCMS_CHAN_HDR], uint8_t type, size_t body_len);

/* The three fields of an NSM request; views into the frame body. */
struct dcms_chan_nsm_req {
    const uint8_t *nonce, *user_data, *public_key; /* NULL when absent */
    size_t nonce_len, user_data_len, public_key_len;
};

/* Decodes an NSM_REQ body; DCMS_CHAN_BAD unless it is exactly three fields of <= 1024 bytes. */
enum dcms_chan_status dcms_chan_nsm_req_parse(const uint8_t *body, size_t len,
                                              struct dcms_chan_nsm_req *out);

/*
 * Encodes an NSM_REQ body into out[cap]; returns its length, or 0 if a field
 * is longer than 1024 bytes or `cap` is too small.
 */
size_t dcms_chan_nsm_req_encode(const struct dcms_chan_nsm_req *r, uint8_t *out, size_t cap);

/* What an ATTEST_RESP frame says. */
enum dcms_chan_attest {
    DCMS_CHAN_ATTEST_DOC = 0,        /* status 0 and a document of 1..max_doc bytes */
    DCMS_CHAN_ATTEST_REFUSED = 1,    /* status not 0: the workload could not attest */
    DCMS_CHAN_ATTEST_UNEXPECTED = 2, /* not an ATTEST_RESP, or no byte after the status */
    DCMS_CHAN_ATTEST_TOO_LARGE = 3,  /* a document longer than max_doc */
};

/*
 * Decodes the attestation response `f` (the one decoder both backends use).
 * On DCMS_CHAN_ATTEST_DOC, *doc and *doc_len are a view of the document in
 * the frame body; otherwise they are untouched.
 */
enum dcms_chan_attest dcms_chan_attest_resp_parse(const struct dcms_chan_frame *f, size_t max_doc,
                                                  const uint8_t **doc, size_t *doc_len);

#endif
