/*
 * Differential privacy in the training service: a DP run's schedule (the
 * training rows N, the sampling rate q and the number of noisy steps, by
 * the trainer's own split and batching functions), the noise multiplier
 * for a target ε, and the reservation of the run's ε under the contract's
 * terms.privacy in the job's own transaction. The budget itself is the
 * privacy module's (include/dcms/privacy.h); nothing here names its
 * tables. The charge (key release) is in training_runner.c, the release
 * (a run that ends before it) in tr_transition_tx.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dcms/app.h"
#include "dcms/audit.h"
#include "dcms/contracts.h"
#include "dcms/datasets.h"
#include "dcms/privacy.h"
#include "training/training_int.h"
#include "trainer.h"

/* The largest σ the trainer accepts (training/trainer_json.c, dp.noise_multiplier). */
#define TR_DP_SIGMA_MAX 1000.0

static uint64_t uint_of(const json_t *o, const char *key, uint64_t dflt)
{
    const json_t *v = json_object_get(o, key);
    return json_is_integer(v) && json_integer_value(v) >= 0 ? (uint64_t)json_integer_value(v)
                                                            : dflt;
}

void tr_dp_schedule(const json_t *config, uint64_t rows, uint64_t *n_train, double *q,
                    uint64_t *steps)
{
    struct dcms_trainer_config c;
    dcms_trainer_config_defaults(&c);
    const json_t *split = json_object_get(config, "split");
    const char *method = json_string_value(json_object_get(split, "method"));
    if (method && strcmp(method, "random") == 0) {
        c.split = DCMS_SPLIT_RANDOM;
        c.fraction = json_number_value(json_object_get(split, "fraction"));
        c.split_seed = uint_of(split, "seed", 0);
    } else if (method) {
        c.split = DCMS_SPLIT_MODULO;
        c.folds = (uint32_t)uint_of(split, "folds", c.folds);
        c.holdout_fold = (uint32_t)uint_of(split, "holdout_fold", c.holdout_fold);
    }
    c.batch_size = (size_t)uint_of(config, "batch_size", 0);
    c.epochs = (uint32_t)uint_of(config, "epochs", c.epochs);
    size_t ntr = dcms_trainer_train_rows(&c, (size_t)rows), batch = 0, per_epoch = 0;
    dcms_trainer_batching(&c, ntr, &batch, &per_epoch, q);
    *n_train = ntr;
    *steps = (uint64_t)per_epoch * c.epochs;
}

enum dcms_err tr_dp_rows(struct dcms_app *app, const struct tr_request *rq, uint64_t *rows,
                         struct dcms_errinfo *ei)
{
    *rows = 0;
    for (size_t i = 0; i < rq->ndatasets; i++) {
        struct dcms_dataset_ref ref;
        struct dcms_errinfo lei;
        dcms_errinfo_init(&lei, NULL);
        enum dcms_err e = dcms_datasets_ref(app, rq->datasets[i], &ref, &lei);
        if (e)
            return dcms_err_set(ei, e, "cannot read dataset %s: %s", rq->datasets[i], lei.message);
        *rows += ref.rows > 0 ? (uint64_t)ref.rows : 0;
    }
    return DCMS_OK;
}

json_t *tr_dp_json(const struct tr_dp *dp)
{
    if (!dp->on)
        return json_null();
    return json_pack("{s:f, s:f, s:f, s:I, s:o, s:o}", "sigma", dp->sigma, "max_grad_norm",
                     dp->max_grad_norm, "q", dp->q, "steps", (json_int_t)dp->steps, "delta",
                     dp->budgeted ? json_real(dp->delta) : json_null(), "epsilon",
                     dp->budgeted ? json_real(dp->epsilon) : json_null());
}

bool tr_dp_from_json(const json_t *j, struct tr_dp *out)
{
    memset(out, 0, sizeof(*out));
    if (!json_is_object(j))
        return false;
    const json_t *steps = json_object_get(j, "steps");
    out->on = true;
    out->sigma = json_number_value(json_object_get(j, "sigma"));
    out->max_grad_norm = json_number_value(json_object_get(j, "max_grad_norm"));
    out->q = json_number_value(json_object_get(j, "q"));
    out->steps = json_is_integer(steps) ? (uint64_t)json_integer_value(steps) : 0;
    out->budgeted = json_is_number(json_object_get(j, "epsilon"));
    out->delta = json_number_value(json_object_get(j, "delta"));
    out->epsilon = json_number_value(json_object_get(j, "epsilon"));
    return out->steps > 0 && out->q > 0;
}

enum dcms_err tr_dp_reserve(struct dcms_app *app, struct dcms_store_tx *tx,
                            const struct dcms_audit_who *who, const char *contract_id,
                            const char *job_id, const struct tr_request *rq, uint64_t rows,
                            struct tr_dp *out, struct dcms_errinfo *ei)
{
    memset(out, 0, sizeof(*out));
    struct dcms_contract_privacy term;
    enum dcms_err e = dcms_contracts_privacy_of(app, tx, NULL, NULL, contract_id, &term, NULL, ei);
    if (e)
        return e;
    if (!rq->dp) {
        if (term.present)
            return dcms_err_field(ei, "dp",
                                  "is required: the contract's terms.privacy makes every run "
                                  "differentially private; give {\"target_epsilon\": e, "
                                  "\"max_grad_norm\": C} or {\"noise_multiplier\": s, "
                                  "\"max_grad_norm\": C}, with batch_size");
        return DCMS_OK;
    }
    out->on = true;
    out->max_grad_norm = rq->dp_max_grad_norm;
    tr_dp_schedule(rq->config, rows, &out->n_train, &out->q, &out->steps);
    if (out->n_train < 1 || out->steps < 1)
        return dcms_err_field(ei, "split", "leaves no training rows in the datasets' %llu rows",
                              (unsigned long long)rows);
    if (!term.present) {
        /* DP-SGD without a budget: the run is recorded, nothing is reserved. */
        if (rq->dp_target_epsilon > 0)
            return dcms_err_field(ei, "dp.target_epsilon",
                                  "needs the contract's terms.privacy (the delta epsilon is "
                                  "stated at); give dp.noise_multiplier instead");
        out->sigma = rq->dp_sigma;
        return DCMS_OK;
    }
    out->budgeted = true;
    out->delta = term.delta;
    if (!(term.delta < 1.0 / (double)out->n_train))
        return dcms_err_field(ei, "dp",
                              "the contract's terms.privacy.delta %g is not below 1/N = %.6g for "
                              "the N = %llu training rows of this request",
                              term.delta, 1.0 / (double)out->n_train,
                              (unsigned long long)out->n_train);
    out->sigma = rq->dp_sigma;
    if (rq->dp_target_epsilon > 0) {
        struct dcms_errinfo lei;
        dcms_errinfo_init(&lei, NULL);
        /* The run's own ε: what it adds to the contract's total is at most that. */
        if (dcms_privacy_sigma_for(NULL, out->q, out->steps, term.delta, rq->dp_target_epsilon,
                                   &out->sigma, &lei))
            return dcms_err_field(ei, "dp.target_epsilon",
                                  "no noise multiplier up to 10^4 gives epsilon %g in %llu steps "
                                  "at q %.6g and delta %g",
                                  rq->dp_target_epsilon, (unsigned long long)out->steps, out->q,
                                  term.delta);
        if (out->sigma > TR_DP_SIGMA_MAX)
            return dcms_err_field(ei, "dp.target_epsilon",
                                  "epsilon %g in %llu steps at q %.6g needs a noise multiplier of "
                                  "%.6g, above the trainer's %g: fewer epochs or a larger batch",
                                  rq->dp_target_epsilon, (unsigned long long)out->steps, out->q,
                                  out->sigma, TR_DP_SIGMA_MAX);
    }
    return dcms_privacy_budget_reserve(tx, app->audit, who, contract_id, job_id, term.epsilon,
                                       term.delta, term.max_epsilon_per_run, out->q, out->sigma,
                                       out->steps, &out->epsilon, NULL, ei);
}
