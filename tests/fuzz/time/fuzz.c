/*
 * Fuzz target: RFC 3339 timestamps from clients. A parsed value, formatted
 * and parsed again, must give the same instant.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dcms/clock.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 64)
        return 0;
    char s[65];
    memcpy(s, data, size);
    s[size] = '\0';
    int64_t us;
    if (dcms_time_parse(s, &us) != DCMS_OK)
        return 0;
    if (us < -62135596800000000LL || us > 253402300799999999LL)
        return 0; /* outside years 1..9999: formatting is not defined there */
    char out[DCMS_TIME_STRLEN];
    dcms_time_format(us, out);
    int64_t again;
    if (dcms_time_parse(out, &again) != DCMS_OK || again != us)
        abort();
    return 0;
}
