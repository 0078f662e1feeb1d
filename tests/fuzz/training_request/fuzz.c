/*
 * Fuzz target: a request body through the training request decoder
 * (src/training/training_json.c). Must never crash or leak; an accepted
 * request gives a trainer config without "datasets" and 1..16 datasets;
 * a refused one reports at least one problem, each with a field path.
 */
#include <stdint.h>
#include <stdlib.h>

#include "dcms/arena.h"
#include "dcms/json.h"
#include "training/training_int.h"

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
        struct tr_request rq;
        if (tr_request_from_json(v, &rq, &ei) == DCMS_OK) {
            if (!rq.config || json_object_get(rq.config, "datasets") || rq.ndatasets < 1 ||
                rq.ndatasets > TR_MAX_DATASETS || !rq.model)
                abort();
            json_decref(rq.config);
        } else if (ei.ndetails == 0 || rq.config) {
            abort();
        }
        json_decref(v);
    }
    dcms_arena_free(a);
    return 0;
}
