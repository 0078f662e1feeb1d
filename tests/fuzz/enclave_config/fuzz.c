/*
 * Fuzz target: an enclave configuration (the body's "configuration", and
 * the PATCH policies) through the decoder and validator. Must never crash
 * or leak; every problem must name a field; what is accepted must encode
 * and decode back to the same configuration.
 */
#include <stdint.h>
#include <stdlib.h>

#include "dcms/arena.h"
#include "dcms/json.h"
#include "enclaves/enclaves_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct dcms_arena *a = dcms_arena_new(1 << 20);
    if (!a)
        return 0;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, a);
    json_t *v = NULL;
    if (dcms_json_parse((struct dcms_str){(const char *)data, size}, 0, &v, &ei) != DCMS_OK) {
        dcms_arena_free(a);
        return 0;
    }
    static const struct enclave_limits limits = {4, 4096, 100};
    struct enclave_config c;
    enclave_config_from_json(v, "configuration.", &limits, &c, &ei);
    for (size_t i = 0; i < ei.ndetails; i++)
        if (!ei.details[i].field || !ei.details[i].problem[0])
            abort();
    if (ei.code == DCMS_OK) {
        json_t *out = enclave_config_to_json(&c);
        struct enclave_config again;
        struct dcms_errinfo ei2;
        dcms_errinfo_init(&ei2, a);
        enclave_config_from_json(out, "", &limits, &again, &ei2);
        if (!out || ei2.code != DCMS_OK || memcmp(&c, &again, sizeof(c)) != 0)
            abort();
        json_decref(out);
    }
    /* The same document as a PATCH's policies. */
    struct enclave_netpol n;
    struct enclave_secpol s;
    dcms_errinfo_init(&ei, a);
    enclave_netpol_from_json(v, "network_policy.", &n, &ei);
    enclave_secpol_from_json(v, "security_policy.", &s, &ei);
    json_decref(v);
    dcms_arena_free(a);
    return 0;
}
