/*
 * The trainer's JSON: the job config it reads, the metrics and progress it
 * writes (jansson). Shared by dcms-trainer-cli and the enclave program.
 */
#ifndef DCMS_TRAINER_JSON_H
#define DCMS_TRAINER_JSON_H

#include <jansson.h>

#include "safetensors.h"
#include "trainer.h"

struct dcms_trainer_job {
    struct dcms_trainer_config cfg;
    struct dcms_trainer_column *columns;
    struct dcms_st_kv *meta; /* "metadata" strings for the safetensors header */
    size_t n_meta;
    int f64;           /* "dtype": "F64" (default) or "F32" */
    int has_test_seed; /* "test_seed": honoured only in a DCMS_TRAINER_TEST_SEED build */
    uint64_t test_seed;
    json_t *root; /* owns the strings above */
};

/*
 * Decodes a job config. On failure returns -1 and writes every problem,
 * each with its JSON path, separated by "; ", into err[errlen].
 */
int dcms_trainer_job_from_json(const char *text, size_t len, struct dcms_trainer_job *job,
                               char *err, size_t errlen);
void dcms_trainer_job_release(struct dcms_trainer_job *job);

/* {"rows","accuracy","loss","macro":{..},"per_class":{label:{..}},"confusion_matrix":{..}} */
json_t *dcms_trainer_metrics_to_json(const struct dcms_trainer_metrics *m,
                                     const struct dcms_trainer_data *d,
                                     const struct dcms_trainer_model *model,
                                     const struct dcms_trainer_config *cfg);

/* {"epoch","loss","train_accuracy","val_loss","val_accuracy"}; NaN is null. */
json_t *dcms_trainer_epoch_to_json(const struct dcms_trainer_epoch *e);

#endif
