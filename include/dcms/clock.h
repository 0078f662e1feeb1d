/* Wall-clock and monotonic time, and the one timestamp format dcms writes. */
#ifndef DCMS_CLOCK_H
#define DCMS_CLOCK_H

#include <stdint.h>

#include "dcms/err.h"

/* Microseconds since the Unix epoch (UTC wall clock). */
int64_t dcms_clock_now_us(void);
/* Monotonic microseconds, for durations only. */
int64_t dcms_clock_mono_us(void);

#define DCMS_TIME_STRLEN 28 /* "2026-11-23T20:14:19.123456Z" + NUL */

/* RFC 3339 UTC with microseconds: "2026-11-23T20:14:19.123456Z". */
void dcms_time_format(int64_t us, char out[DCMS_TIME_STRLEN]);

/*
 * Parses RFC 3339 ("2026-11-23T20:14:19Z", an optional fraction of 1 to 9
 * digits of which the first 6 count, "Z" or a numeric offset) into
 * microseconds since the epoch.
 * DCMS_ERR_BAD_REQUEST on anything else.
 */
enum dcms_err dcms_time_parse(const char *s, int64_t *us_out) DCMS_MUST_CHECK;

#endif
