/*
 * Fuzz target: method and path (split at the first space) through the
 * route matcher. Captured parameters must be non-empty and contain no '/'.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dcms/arena.h"
#include "http/http_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    char *sp = strchr(s, ' ');
    const char *method = "GET", *path = s;
    if (sp) {
        *sp = '\0';
        method = s;
        path = sp + 1;
    }
    struct dcms_arena *a = dcms_arena_new(1 << 16);
    struct dcms_http_req req = {.arena = a};
    size_t idx = 0;
    char allow[64];
    if (a && dcms_router_match(method, path, &req, &idx, allow, sizeof(allow)) == ROUTE_FOUND) {
        if (idx >= dcms_routes_count)
            abort();
        for (size_t i = 0; i < req.nparams; i++)
            if (!req.params[i].value[0] || strchr(req.params[i].value, '/'))
                abort();
    }
    dcms_arena_free(a);
    free(s);
    return 0;
}
