/*
 * Structured logs: one JSON object per line on stderr, with the current
 * request id when the calling thread is serving a request.
 *
 *   DCMS_LOG(DCMS_LOG_WARN, "store", "connection lost: %s", why);
 *
 * The level is checked before anything is formatted. Never log a secret,
 * a token, a key or a request body. Thread-safe: each line is one write(2).
 */
#ifndef DCMS_LOG_H
#define DCMS_LOG_H

#include <stdbool.h>

#include "dcms/err.h"

enum dcms_log_level { DCMS_LOG_DEBUG, DCMS_LOG_INFO, DCMS_LOG_WARN, DCMS_LOG_ERROR };

extern int dcms_log_min_level;

#define DCMS_LOG(level, sub, ...)                                                                  \
    do {                                                                                           \
        if ((int)(level) >= dcms_log_min_level)                                                    \
            dcms_log_write((level), (sub), NULL, __VA_ARGS__);                                     \
    } while (0)

/* Like DCMS_LOG with extra members: `fields` is JSON object members without braces. */
#define DCMS_LOG_FIELDS(level, sub, fields, ...)                                                   \
    do {                                                                                           \
        if ((int)(level) >= dcms_log_min_level)                                                    \
            dcms_log_write((level), (sub), (fields), __VA_ARGS__);                                 \
    } while (0)

void dcms_log_write(enum dcms_log_level level, const char *sub, const char *fields, const char *fmt,
                    ...) DCMS_PRINTF(4, 5);

/* "debug" | "info" | "warn" | "error"; false for anything else. */
bool dcms_log_parse_level(const char *s, enum dcms_log_level *out);
void dcms_log_set_level(enum dcms_log_level level);
/* Where lines go (default 2, stderr). */
void dcms_log_set_fd(int fd);

/* The request id attached to this thread's lines; NULL clears it. Borrowed. */
void dcms_log_set_request_id(const char *request_id);
const char *dcms_log_request_id(void);

#endif
