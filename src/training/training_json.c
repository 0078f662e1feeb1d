/*
 * The training request codec: a POST /api/v1/contracts/{id}/trainings body
 * to the datasets and the trainer's configuration (training/trainer_json.c
 * takes the same members), every problem reported at once with its JSON
 * path. The values' ranges are the trainer's, so a request that passes here
 * is one the trainer accepts (except what depends on the data: the label
 * column must exist, the features be numbers).
 */
#include <math.h>
#include <string.h>

#include "dcms/json.h"
#include "dcms/uuid.h"
#include "training/training_int.h"

static const char *const top_keys[] = {
    "datasets", "label", "model", "hidden", "optimizer",  "momentum",
    "beta1",    "beta2", "eps",   "epochs", "batch_size", "learning_rate",
    "l2",       "seed",  "split", "dp",     "dtype",      NULL};

static bool is_one_of(const char *s, const char *const *list)
{
    for (; s && *list; list++)
        if (strcmp(s, *list) == 0)
            return true;
    return false;
}

/* An integer member within [min, max]; absent is fine unless `required`. */
static void int_member(const json_t *o, const char *prefix, const char *key, int64_t min,
                       int64_t max, bool required, struct dcms_errinfo *ei)
{
    const json_t *v = json_object_get(o, key);
    char path[64];
    snprintf(path, sizeof(path), "%s%s", prefix, key);
    if (!v) {
        if (required)
            dcms_err_field(ei, path, "is required: an integer from %lld to %lld", (long long)min,
                           (long long)max);
        return;
    }
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
        dcms_err_field(ei, path, "must be an integer from %lld to %lld", (long long)min,
                       (long long)max);
}

/* A number member within [min, max] (open at the ends named), absent fine unless `required`. */
static void num_member(const json_t *o, const char *prefix, const char *key, double min, double max,
                       bool open_min, bool open_max, bool required, struct dcms_errinfo *ei)
{
    const json_t *v = json_object_get(o, key);
    char path[64];
    snprintf(path, sizeof(path), "%s%s", prefix, key);
    if (!v) {
        if (required)
            dcms_err_field(ei, path, "is required: a number in %s%g, %g%s", open_min ? "(" : "[",
                           min, max, open_max ? ")" : "]");
        return;
    }
    double x = json_is_number(v) ? json_number_value(v) : NAN;
    if (!json_is_number(v) || !isfinite(x) || x < min || x > max || (open_min && x == min) ||
        (open_max && x == max))
        dcms_err_field(ei, path, "must be a number in %s%g, %g%s", open_min ? "(" : "[", min, max,
                       open_max ? ")" : "]");
}

static void split_from_json(const json_t *v, struct dcms_errinfo *ei)
{
    static const char *const modulo[] = {"method", "folds", "holdout_fold", NULL};
    static const char *const random[] = {"method", "fraction", "seed", NULL};
    if (!json_is_object(v)) {
        dcms_err_field(ei, "split",
                       "must be an object: {\"method\":\"modulo\",\"folds\":k,"
                       "\"holdout_fold\":i} or {\"method\":\"random\",...}");
        return;
    }
    const char *m = json_string_value(json_object_get(v, "method"));
    if (m && strcmp(m, "modulo") == 0) {
        dcms_json_only_members(v, "split.", modulo, ei);
        int_member(v, "split.", "folds", 2, 1000000, true, ei);
        int_member(v, "split.", "holdout_fold", 0, 999999, true, ei);
        const json_t *k = json_object_get(v, "folds"), *i = json_object_get(v, "holdout_fold");
        if (json_is_integer(k) && json_is_integer(i) && json_integer_value(i) >= 0 &&
            json_integer_value(i) >= json_integer_value(k))
            dcms_err_field(ei, "split.holdout_fold", "must be less than split.folds");
    } else if (m && strcmp(m, "random") == 0) {
        dcms_json_only_members(v, "split.", random, ei);
        num_member(v, "split.", "fraction", 0, 1, true, true, true, ei);
        int_member(v, "split.", "seed", 0, INT64_MAX, true, ei);
    } else {
        dcms_err_field(ei, "split.method", "must be modulo or random");
    }
}

enum dcms_err tr_request_from_json(const json_t *body, struct tr_request *out,
                                   struct dcms_errinfo *ei)
{
    memset(out, 0, sizeof(*out));
    if (!json_is_object(body))
        return dcms_err_field(ei, "", "must be a JSON object");
    dcms_json_only_members(body, "", top_keys, ei);

    const json_t *ds = json_object_get(body, "datasets");
    if (!json_is_array(ds) || json_array_size(ds) < 1 || json_array_size(ds) > TR_MAX_DATASETS) {
        dcms_err_field(ei, "datasets",
                       "is required: 1 to %d dataset ids from the contract's "
                       "terms.data_access.datasets",
                       TR_MAX_DATASETS);
    } else {
        for (size_t i = 0; i < json_array_size(ds); i++) {
            const char *id = json_string_value(json_array_get(ds, i));
            char path[32];
            snprintf(path, sizeof(path), "datasets[%zu]", i);
            if (!id || !dcms_uuid_valid(id)) {
                dcms_err_field(ei, path, "must be a dataset id");
                continue;
            }
            for (size_t j = 0; j < out->ndatasets; j++)
                if (strcmp(out->datasets[j], id) == 0)
                    dcms_err_field(ei, path, "is given more than once");
            out->datasets[out->ndatasets++] = id;
        }
    }
    const json_t *label = json_object_get(body, "label");
    if (!json_is_string(label) || json_string_length(label) < 1 ||
        json_string_length(label) > 255 ||
        strlen(json_string_value(label)) != json_string_length(label))
        dcms_err_field(ei, "label", "is required: the label column's name (1 to 255 characters)");

    static const char *const models[] = {"logistic_regression", "mlp", NULL};
    const json_t *model = json_object_get(body, "model");
    out->model = json_string_value(model);
    if (!is_one_of(out->model, models)) {
        dcms_err_field(ei, "model", "is required: logistic_regression or mlp");
        out->model = NULL;
    }
    const json_t *hidden = json_object_get(body, "hidden");
    bool mlp = out->model && strcmp(out->model, "mlp") == 0;
    if (mlp && !hidden)
        dcms_err_field(ei, "hidden", "is required for mlp: 1 to 3 layer widths, e.g. [16]");
    if (hidden && !mlp)
        dcms_err_field(ei, "hidden", "is for mlp only");
    if (hidden && mlp) {
        if (!json_is_array(hidden) || json_array_size(hidden) < 1 || json_array_size(hidden) > 3)
            dcms_err_field(ei, "hidden", "must be 1 to 3 layer widths, e.g. [16]");
        else
            for (size_t i = 0; i < json_array_size(hidden); i++) {
                const json_t *w = json_array_get(hidden, i);
                if (!json_is_integer(w) || json_integer_value(w) < 1 ||
                    json_integer_value(w) > 4096) {
                    char path[32];
                    snprintf(path, sizeof(path), "hidden[%zu]", i);
                    dcms_err_field(ei, path, "must be an integer from 1 to 4096");
                }
            }
    }
    static const char *const optimizers[] = {"sgd", "adam", NULL};
    const json_t *opt = json_object_get(body, "optimizer");
    const char *o = json_string_value(opt);
    if (opt && !is_one_of(o, optimizers))
        dcms_err_field(ei, "optimizer", "must be sgd or adam");
    bool adam = o && strcmp(o, "adam") == 0;
    if (json_object_get(body, "momentum") && adam)
        dcms_err_field(ei, "momentum", "is for sgd only");
    else
        num_member(body, "", "momentum", 0, 1, false, true, false, ei);
    const char *adam_keys[] = {"beta1", "beta2", "eps"};
    for (size_t i = 0; i < 3; i++)
        if (json_object_get(body, adam_keys[i]) && !adam)
            dcms_err_field(ei, adam_keys[i], "is for adam only");
    num_member(body, "", "beta1", 0, 1, false, true, false, ei);
    num_member(body, "", "beta2", 0, 1, false, true, false, ei);
    num_member(body, "", "eps", 1e-300, 1, false, false, false, ei);
    int_member(body, "", "epochs", 1, 100000, false, ei);
    int_member(body, "", "batch_size", 0, 100000000, false, ei);
    num_member(body, "", "learning_rate", 1e-12, 100, false, false, false, ei);
    num_member(body, "", "l2", 0, 100, false, false, false, ei);
    int_member(body, "", "seed", 0, INT64_MAX, false, ei);
    const json_t *split = json_object_get(body, "split");
    if (split)
        split_from_json(split, ei);
    const json_t *dp = json_object_get(body, "dp");
    if (dp) {
        static const char *const dp_keys[] = {"noise_multiplier", "target_epsilon", "max_grad_norm",
                                              NULL};
        if (!json_is_object(dp)) {
            dcms_err_field(ei, "dp",
                           "must be {\"noise_multiplier\": s, \"max_grad_norm\": C} or "
                           "{\"target_epsilon\": e, \"max_grad_norm\": C}");
        } else {
            dcms_json_only_members(dp, "dp.", dp_keys, ei);
            const json_t *sigma = json_object_get(dp, "noise_multiplier");
            const json_t *target = json_object_get(dp, "target_epsilon");
            if (sigma && target)
                dcms_err_field(ei, "dp", "give noise_multiplier or target_epsilon, not both");
            else if (!sigma && !target)
                dcms_err_field(ei, "dp",
                               "needs noise_multiplier (the noise multiplier sigma) or "
                               "target_epsilon (dcms finds the smallest sigma for it)");
            num_member(dp, "dp.", "noise_multiplier", 0, 1000, false, false, false, ei);
            num_member(dp, "dp.", "target_epsilon", 0, 100, true, false, false, ei);
            num_member(dp, "dp.", "max_grad_norm", 1e-9, 1e9, false, false, true, ei);
            const json_t *bs = json_object_get(body, "batch_size");
            if (!json_is_integer(bs) || json_integer_value(bs) < 1)
                dcms_err_field(ei, "batch_size",
                               "must be at least 1 with dp (DP-SGD samples "
                               "batches)");
            out->dp = true;
            out->dp_sigma = json_number_value(sigma);
            out->dp_target_epsilon = json_number_value(target);
            out->dp_max_grad_norm = json_number_value(json_object_get(dp, "max_grad_norm"));
        }
    }
    static const char *const dtypes[] = {"F64", "F32", NULL};
    const json_t *dtype = json_object_get(body, "dtype");
    if (dtype && !is_one_of(json_string_value(dtype), dtypes))
        dcms_err_field(ei, "dtype", "must be F64 or F32");
    if (ei->code)
        return ei->code;

    /* The trainer's config: the request without the datasets (the metadata comes later). */
    out->config = json_deep_copy(body);
    if (!out->config)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    json_object_del(out->config, "datasets");
    return DCMS_OK;
}
