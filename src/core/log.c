/*
 * JSON-lines logger. Each event is formatted into a stack buffer and written
 * with a single write(2), so lines from concurrent threads never interleave.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "dcms/clock.h"
#include "dcms/log.h"
#include "dcms/str.h"

int dcms_log_min_level = DCMS_LOG_INFO;
static int log_fd = 2;
static _Thread_local const char *tls_request_id;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

bool dcms_log_parse_level(const char *s, enum dcms_log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum dcms_log_level)i;
            return true;
        }
    }
    return false;
}

void dcms_log_set_level(enum dcms_log_level level)
{
    dcms_log_min_level = (int)level;
}

void dcms_log_set_fd(int fd)
{
    log_fd = fd;
}

void dcms_log_set_request_id(const char *request_id)
{
    tls_request_id = request_id;
}

const char *dcms_log_request_id(void)
{
    return tls_request_id;
}

void dcms_log_write(enum dcms_log_level level, const char *sub, const char *fields, const char *fmt,
                    ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    size_t msg_len = (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1;

    char ts[DCMS_TIME_STRLEN];
    dcms_time_format(dcms_clock_now_us(), ts);

    struct dcms_buf b;
    dcms_buf_init(&b, 8192);
    enum dcms_err e = dcms_buf_appendf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"sub\":\"", ts,
                                       level_names[(unsigned)level & 3]);
    if (!e)
        e = dcms_buf_append_json_escaped(&b, sub, strlen(sub));
    if (!e)
        e = dcms_buf_appends(&b, "\",\"msg\":\"");
    if (!e)
        e = dcms_buf_append_json_escaped(&b, msg, msg_len);
    if (!e)
        e = dcms_buf_appends(&b, "\"");
    if (!e && tls_request_id) {
        e = dcms_buf_appends(&b, ",\"request_id\":\"");
        if (!e)
            e = dcms_buf_append_json_escaped(&b, tls_request_id, strlen(tls_request_id));
        if (!e)
            e = dcms_buf_appends(&b, "\"");
    }
    if (!e && fields && *fields)
        e = dcms_buf_appendf(&b, ",%s", fields);
    if (!e)
        e = dcms_buf_appends(&b, "}\n");
    if (!e) {
        ssize_t w = write(log_fd, b.ptr, b.len);
        (void)w;
    }
    dcms_buf_release(&b);
}
