/*
 * Frames over a non-blocking socket with a deadline (the dcmsd side of the
 * enclave channel, for both backends). Private to src/enclaves.
 */
#ifndef DCMS_ENCLAVES_CHANNEL_IO_H
#define DCMS_ENCLAVES_CHANNEL_IO_H

#include <stdint.h>

#include "dcms/err.h"
#include "enclaves/channel.h"

/* Bytes a frame buffer needs: the largest frame and its length prefix. */
#define CHAN_IO_BUF (DCMS_CHAN_MAX_FRAME + 4u)

/*
 * Sends one frame on `fd` (O_NONBLOCK) before `deadline_ms` (dcms_clock_mono_us()/1000).
 * Adds the bytes sent to *sent. DCMS_ERR_UNAVAILABLE when the peer does
 * not read in time or has closed the channel.
 */
enum dcms_err chan_io_send(int fd, uint8_t type, const uint8_t *body, size_t len,
                           int64_t deadline_ms, uint64_t *sent,
                           struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * Receives one frame into buf[CHAN_IO_BUF]; f's views point into buf. Reads
 * no byte past the frame. Adds the bytes read to *received.
 * DCMS_ERR_UNAVAILABLE on a timeout, a closed channel or a malformed frame.
 */
enum dcms_err chan_io_recv(int fd, uint8_t *buf, struct dcms_chan_frame *f, int64_t deadline_ms,
                           uint64_t *received, struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * The document of the attestation response `f`, copied into *doc (malloc'd,
 * the caller frees it). `peer` ("workload", "enclave") names the other side
 * in messages. DCMS_ERR_UNAVAILABLE when `f` is not a response with a
 * document of at most DCMS_ATTEST_MAX_DOC_BYTES, or on OOM.
 */
enum dcms_err chan_io_attest_doc(const struct dcms_chan_frame *f, const char *peer, uint8_t **doc,
                                 size_t *doc_len, struct dcms_errinfo *ei) DCMS_MUST_CHECK;

#endif
