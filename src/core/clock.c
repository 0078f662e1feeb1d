/* Clocks, the RFC 3339 timestamp format, and UUIDv7 identifiers. */
#include <stdatomic.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "dcms/clock.h"
#include "dcms/uuid.h"

int64_t dcms_clock_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t dcms_clock_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void dcms_time_format(int64_t us, char out[DCMS_TIME_STRLEN])
{
    time_t secs = (time_t)(us / 1000000);
    long frac = (long)(us % 1000000);
    if (frac < 0) {
        frac += 1000000;
        secs -= 1;
    }
    struct tm tm;
    gmtime_r(&secs, &tm);
    char tmp[96];
    snprintf(tmp, sizeof(tmp), "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
    memcpy(out, tmp, DCMS_TIME_STRLEN - 1);
    out[DCMS_TIME_STRLEN - 1] = '\0';
}

static int digits(const char **p, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)**p))
            return -1;
        v = v * 10 + (**p - '0');
        (*p)++;
    }
    return v;
}

enum dcms_err dcms_time_parse(const char *s, int64_t *us_out)
{
    const char *p = s;
    int y = digits(&p, 4);
    if (y < 0 || *p++ != '-')
        return DCMS_ERR_BAD_REQUEST;
    int mo = digits(&p, 2);
    if (mo < 1 || mo > 12 || *p++ != '-')
        return DCMS_ERR_BAD_REQUEST;
    int d = digits(&p, 2);
    if (d < 1 || d > 31 || (*p != 'T' && *p != 't'))
        return DCMS_ERR_BAD_REQUEST;
    p++;
    int h = digits(&p, 2);
    if (h < 0 || h > 23 || *p++ != ':')
        return DCMS_ERR_BAD_REQUEST;
    int mi = digits(&p, 2);
    if (mi < 0 || mi > 59 || *p++ != ':')
        return DCMS_ERR_BAD_REQUEST;
    int sec = digits(&p, 2);
    if (sec < 0 || sec > 60)
        return DCMS_ERR_BAD_REQUEST;
    long frac = 0;
    if (*p == '.') {
        p++;
        int n = 0;
        while (isdigit((unsigned char)*p)) {
            if (n < 6)
                frac = frac * 10 + (*p - '0');
            n++;
            p++;
        }
        if (n == 0 || n > 9)
            return DCMS_ERR_BAD_REQUEST;
        for (; n < 6; n++)
            frac *= 10;
    }
    long offset = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1;
        int oh = digits(&p, 2);
        if (oh < 0 || oh > 23 || *p++ != ':')
            return DCMS_ERR_BAD_REQUEST;
        int om = digits(&p, 2);
        if (om < 0 || om > 59)
            return DCMS_ERR_BAD_REQUEST;
        offset = sign * (oh * 3600L + om * 60L);
    } else {
        return DCMS_ERR_BAD_REQUEST;
    }
    if (*p)
        return DCMS_ERR_BAD_REQUEST;
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d > mdays[mo - 1] || (mo == 2 && d == 29 && !leap))
        return DCMS_ERR_BAD_REQUEST;
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mo - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = sec == 60 ? 59 : sec};
    time_t t = timegm(&tm);
    *us_out = ((int64_t)t - offset) * 1000000 + frac;
    return DCMS_OK;
}

/* Random bytes for identifiers come from a per-thread pool refilled from the
 * kernel CSPRNG 4 KiB at a time: one getrandom(2) per ~400 ids instead of one
 * per id (every request gets an id). Identifiers are not secrets. */
static void id_random(unsigned char *out, size_t n)
{
    static _Thread_local unsigned char pool[4096];
    static _Thread_local size_t left;
    if (left < n) {
        randombytes_buf(pool, sizeof(pool));
        left = sizeof(pool);
    }
    memcpy(out, pool + sizeof(pool) - left, n);
    sodium_memzero(pool + sizeof(pool) - left, n);
    left -= n;
}

/*
 * The last identifier's time: milliseconds << 12 | a 12-bit sub-millisecond
 * step (RFC 9562 section 6.2, method 3). Each new id takes the clock or,
 * when that is not later, the last value plus one, so ids made in this
 * process are strictly increasing even within a millisecond and across
 * threads: "newest first" by id is creation order.
 */
static _Atomic uint64_t uuid_last;

void dcms_uuid_v7(char out[DCMS_UUID_STRLEN])
{
    unsigned char b[16];
    uint64_t us = (uint64_t)dcms_clock_now_us();
    uint64_t want = (us / 1000) << 12 | ((us % 1000) * 4096 / 1000);
    uint64_t prev = atomic_load_explicit(&uuid_last, memory_order_relaxed), next;
    do
        next = want > prev ? want : prev + 1;
    while (!atomic_compare_exchange_weak_explicit(&uuid_last, &prev, next, memory_order_relaxed,
                                                  memory_order_relaxed));
    uint64_t ms = next >> 12;
    for (int i = 0; i < 6; i++)
        b[i] = (unsigned char)(ms >> (40 - 8 * i));
    b[6] = (unsigned char)(0x70 | ((next >> 8) & 0x0f));
    b[7] = (unsigned char)(next & 0xff);
    id_random(b + 8, 8);
    b[8] = (unsigned char)(0x80 | (b[8] & 0x3f));
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
}

bool dcms_uuid_valid(const char *s)
{
    if (!s || strlen(s) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return false;
        } else if (!isxdigit((unsigned char)s[i])) {
            return false;
        }
    }
    return true;
}
