/* If-Match against a resource version: the one implementation (see dcms/etag.h). */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "dcms/etag.h"

/* True when the list `v` (RFC 9110 #entity-tag) holds the strong tag `want`. */
static bool list_has(const char *v, const char *want)
{
    size_t wlen = strlen(want);
    while (*v) {
        while (*v == ' ' || *v == '\t' || *v == ',')
            v++;
        const char *end = v;
        while (*end && *end != ',')
            end++;
        const char *last = end;
        while (last > v && (last[-1] == ' ' || last[-1] == '\t'))
            last--;
        if ((size_t)(last - v) == wlen && memcmp(v, want, wlen) == 0)
            return true;
        v = end;
    }
    return false;
}

enum dcms_err dcms_etag_check(const char *if_match, const char *version, struct dcms_errinfo *ei)
{
    if (!if_match)
        return DCMS_OK;
    char want[48];
    snprintf(want, sizeof(want), "\"%s\"", version);
    if (list_has(if_match, "*") || list_has(if_match, want))
        return DCMS_OK;
    return dcms_err_set(ei, DCMS_ERR_PRECONDITION_FAILED,
                        "If-Match does not match the current version \"%s\"", version);
}
