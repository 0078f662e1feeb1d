/*
 * Fuzz target: a request body through the contract terms validator and,
 * for accepted terms, the signed-content hash. Must never crash or leak;
 * accepted terms must validate again unchanged once normalized, and every
 * reported problem must name a field under "terms".
 */
#include <stdint.h>
#include <stdlib.h>

#include "contracts/contracts_int.h"
#include "dcms/arena.h"
#include "dcms/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct dcms_arena *a = dcms_arena_new(1 << 20);
    if (!a)
        return 0;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, a);
    json_t *v = NULL;
    if (dcms_json_parse((struct dcms_str){(const char *)data, size}, 0, &v, &ei) == DCMS_OK) {
        json_t *norm = NULL;
        int64_t from, to;
        /* A fixed "now" so that a corpus file keeps its meaning. */
        const int64_t now = 1767225600LL * 1000000; /* 2026-01-01T00:00:00Z */
        if (ct_terms_validate(v, now, &norm, &from, &to, &ei)) {
            json_t *again = NULL;
            struct dcms_errinfo ei2;
            dcms_errinfo_init(&ei2, a);
            if (!ct_terms_validate(norm, now, &again, &from, &to, &ei2) || !json_equal(norm, again))
                abort(); /* normalizing is idempotent */
            json_t *content = ct_signed_content("i", "p", "c", "t", "d", norm, 1);
            unsigned char raw[32];
            char hex[65];
            if (ct_content_hash(content, raw, hex, NULL) != DCMS_OK)
                abort();
            json_decref(content);
            json_decref(again);
            json_decref(norm);
        } else {
            for (size_t i = 0; i < ei.ndetails; i++)
                if (strncmp(ei.details[i].field, "terms", 5) != 0)
                    abort();
        }
        json_decref(v);
    }
    dcms_arena_free(a);
    return 0;
}
