/*
 * Fuzz target: a request body through the JSON decoder and, when it fails,
 * the error renderer clients see. Must never crash, leak or produce an
 * error body that is not itself valid JSON.
 */
#include <stdint.h>
#include <stdlib.h>

#include "dcms/arena.h"
#include "dcms/json.h"
#include "http/server_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct dcms_arena *a = dcms_arena_new(1 << 20);
    if (!a)
        return 0;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, a);
    json_t *v = NULL;
    struct dcms_str body = {(const char *)data, size};
    enum dcms_err e = dcms_json_parse(body, size & 1 ? JSON_DECODE_INT_AS_REAL : 0, &v, &ei);
    if (e == DCMS_OK) {
        size_t len;
        char *s = dcms_json_dump(v, &len);
        json_t *again = NULL;
        if (s && dcms_json_parse((struct dcms_str){s, len}, 0, &again, NULL) != DCMS_OK)
            abort(); /* what we print we must be able to read back */
        json_decref(again);
        free(s);
        json_decref(v);
    } else {
        struct dcms_http_resp resp = {0};
        dcms_http_render_error(&resp, e, &ei, "fuzz");
        json_t *check = json_loadb(resp.body, resp.body_len, 0, NULL);
        if (!check)
            abort();
        json_decref(check);
        if (resp.body_owned)
            free((void *)resp.body);
    }
    dcms_arena_free(a);
    return 0;
}
