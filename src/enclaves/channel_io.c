/*
 * Frames over a non-blocking socket with a deadline (channel_io.h). The
 * peer is untrusted: lengths are checked before any read, and no read goes
 * past the frame or the buffer.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <stdbool.h>
#include <sys/socket.h>

#include "dcms/attest.h"
#include "dcms/clock.h"
#include "enclaves/channel_io.h"

static bool wait_fd(int fd, short events, int64_t deadline_ms)
{
    for (;;) {
        int64_t left = deadline_ms - dcms_clock_mono_us() / 1000;
        if (left <= 0)
            return false;
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, (int)left);
        if (r > 0)
            return true;
        if (r < 0 && errno != EINTR)
            return false;
    }
}

enum dcms_err chan_io_send(int fd, uint8_t type, const uint8_t *body, size_t len,
                           int64_t deadline_ms, uint64_t *sent, struct dcms_errinfo *ei)
{
    if (len + 1 > DCMS_CHAN_MAX_FRAME)
        return dcms_err_set(ei, DCMS_ERR_INTERNAL, "channel frame too large");
    uint8_t hdr[DCMS_CHAN_HDR];
    dcms_chan_header(hdr, type, len);
    const uint8_t *parts[2] = {hdr, body};
    size_t lens[2] = {sizeof(hdr), len};
    for (int i = 0; i < 2; i++) {
        size_t off = 0;
        while (off < lens[i]) {
            ssize_t w = send(fd, parts[i] + off, lens[i] - off, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w > 0) {
                off += (size_t)w;
                *sent += (uint64_t)w;
            } else if (w < 0 && errno == EINTR) {
                continue;
            } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                if (!wait_fd(fd, POLLOUT, deadline_ms))
                    return dcms_err_set(ei, DCMS_ERR_UNAVAILABLE,
                                        "the workload does not read its channel");
            } else {
                return dcms_err_set(ei, DCMS_ERR_UNAVAILABLE, "the workload closed its channel");
            }
        }
    }
    return DCMS_OK;
}

enum dcms_err chan_io_recv(int fd, uint8_t *buf, struct dcms_chan_frame *f, int64_t deadline_ms,
                           uint64_t *received, struct dcms_errinfo *ei)
{
    size_t have = 0;
    for (;;) {
        enum dcms_chan_status st = dcms_chan_parse(buf, have, f);
        if (st == DCMS_CHAN_OK)
            return DCMS_OK;
        if (st == DCMS_CHAN_BAD)
            return dcms_err_set(ei, DCMS_ERR_UNAVAILABLE,
                                "the workload broke the channel protocol (bad frame)");
        /* The header first, then exactly the rest of the frame (parse checked its length). */
        size_t want = have < DCMS_CHAN_HDR ? DCMS_CHAN_HDR - have : 0;
        if (!want)
            want = ((size_t)buf[0] << 24 | (size_t)buf[1] << 16 | (size_t)buf[2] << 8 | buf[3]) +
                   4 - have;
        if (have + want > CHAN_IO_BUF)
            return dcms_err_set(ei, DCMS_ERR_UNAVAILABLE, "the workload sent an oversized frame");
        ssize_t r = recv(fd, buf + have, want, MSG_DONTWAIT);
        if (r > 0) {
            have += (size_t)r;
            *received += (uint64_t)r;
        } else if (r < 0 && errno == EINTR) {
            continue;
        } else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!wait_fd(fd, POLLIN, deadline_ms))
                return dcms_err_set(ei, DCMS_ERR_UNAVAILABLE,
                                    "the workload did not answer the attestation request in time");
        } else {
            return dcms_err_set(ei, DCMS_ERR_UNAVAILABLE, "the workload closed its channel");
        }
    }
}

enum dcms_err chan_io_attest_doc(const struct dcms_chan_frame *f, const char *peer, uint8_t **doc,
                                 size_t *doc_len, struct dcms_errinfo *ei)
{
    const uint8_t *d = NULL;
    size_t n = 0;
    switch (dcms_chan_attest_resp_parse(f, DCMS_ATTEST_MAX_DOC_BYTES, &d, &n)) {
    case DCMS_CHAN_ATTEST_DOC:
        break;
    case DCMS_CHAN_ATTEST_REFUSED:
        return dcms_err_set(ei, DCMS_ERR_UNAVAILABLE, "the %s could not attest", peer);
    case DCMS_CHAN_ATTEST_UNEXPECTED:
        return dcms_err_set(ei, DCMS_ERR_UNAVAILABLE,
                            "the %s broke the channel protocol (unexpected frame)", peer);
    default:
        return dcms_err_set(ei, DCMS_ERR_UNAVAILABLE, "the %s's document is too large", peer);
    }
    if (!(*doc = malloc(n)))
        return dcms_err_set(ei, DCMS_ERR_UNAVAILABLE, "the %s's document is too large", peer);
    memcpy(*doc, d, n);
    *doc_len = n;
    return DCMS_OK;
}
