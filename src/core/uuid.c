/*
 * UUIDv7 identifiers (RFC 9562): time-ordered, strictly increasing within
 * the process, 62 random bits from a per-thread pool.
 */
#include <ctype.h>
#include <stdatomic.h>
#include <string.h>

#include <sodium.h>

#include "dcms/clock.h"
#include "dcms/uuid.h"

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
