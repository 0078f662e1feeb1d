/*
 * The trained model as a safetensors file, in memory (no I/O):
 *
 *   u64 header length (little-endian) | JSON header | tensor bytes
 *
 * The header maps each tensor name to {"dtype","shape","data_offsets"} and
 * "__metadata__" to a string map; keys are sorted, the header is padded with
 * spaces to a multiple of 8, tensors are little-endian and laid out in key
 * order. Tensors: layers.N.weight [out,in], layers.N.bias [out],
 * scaler.mean [features], scaler.std [features].
 */
#ifndef DCMS_TRAINER_SAFETENSORS_H
#define DCMS_TRAINER_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "trainer.h"

struct dcms_st_kv {
    const char *key, *value;
};

/*
 * Encodes the model with dtype "F32" or "F64" (f64 != 0). meta[n_meta] are
 * caller strings added to __metadata__ beside the trainer's own (model,
 * feature_names, label_names, the layer sizes, and the DP parameters when
 * the model was trained with DP). Returns 0 and a malloc'd buffer, -1 on
 * bad input or no memory.
 */
int dcms_st_encode(const struct dcms_trainer_model *m, const struct dcms_trainer_data *d,
                   const struct dcms_trainer_config *cfg, const struct dcms_st_kv *meta,
                   size_t n_meta, int f64, uint8_t **out, size_t *out_len);

#endif
