/* Job config decoding and metrics encoding (trainer_json.h). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trainer_json.h"

struct probs {
    char *err;
    size_t len, cap;
    int n;
};

__attribute__((format(printf, 2, 3))) static void problem(struct probs *p, const char *fmt, ...)
{
    p->n++;
    if (!p->err || p->len + 3 >= p->cap)
        return;
    if (p->len) {
        p->err[p->len++] = ';';
        p->err[p->len++] = ' ';
        p->err[p->len] = '\0';
    }
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(p->err + p->len, p->cap - p->len, fmt, ap);
    va_end(ap);
    if (w > 0)
        p->len = p->len + (size_t)w < p->cap ? p->len + (size_t)w : p->cap - 1;
}

static int get_num(json_t *o, const char *key, double lo, double hi, double *out, struct probs *p)
{
    json_t *v = json_object_get(o, key);
    if (!v)
        return 0;
    if (!json_is_number(v) || json_number_value(v) < lo || json_number_value(v) > hi) {
        problem(p, "%s: must be a number in [%g, %g]", key, lo, hi);
        return -1;
    }
    *out = json_number_value(v);
    return 1;
}

static int get_uint(json_t *o, const char *path, const char *key, uint64_t hi, uint64_t *out,
                    struct probs *p)
{
    json_t *v = json_object_get(o, key);
    if (!v)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) > hi) {
        problem(p, "%s%s: must be an integer in [0, %llu]", path, key, (unsigned long long)hi);
        return -1;
    }
    *out = (uint64_t)json_integer_value(v);
    return 1;
}

static const char *const top_keys[] = {"label",         "schema",    "split",     "model",
                                       "hidden",        "optimizer", "momentum",  "beta1",
                                       "beta2",         "eps",       "epochs",    "batch_size",
                                       "learning_rate", "l2",        "seed",      "dp",
                                       "dtype",         "metadata",  "test_seed", NULL};

static void unknown_keys(json_t *o, const char *path, const char *const *allowed, struct probs *p)
{
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        int ok = 0;
        for (size_t i = 0; allowed[i]; i++)
            ok |= !strcmp(allowed[i], k);
        if (!ok)
            problem(p, "%s%s: unknown field", path, k);
    }
}

int dcms_trainer_job_from_json(const char *text, size_t len, struct dcms_trainer_job *job,
                               char *err, size_t errlen)
{
    struct probs p = {err, 0, errlen, 0};
    if (err && errlen)
        err[0] = '\0';
    memset(job, 0, sizeof(*job));
    struct dcms_trainer_config *c = &job->cfg;
    dcms_trainer_config_defaults(c);
    job->f64 = 1;
    json_error_t je;
    job->root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!job->root || !json_is_object(job->root)) {
        problem(&p, "config: not a JSON object (%s)", job->root ? "" : je.text);
        goto out;
    }
    json_t *r = job->root, *v;
    unknown_keys(r, "", top_keys, &p);
    v = json_object_get(r, "label");
    if (!json_is_string(v))
        problem(&p, "label: required, a column name");
    else
        c->label = json_string_value(v);
    if ((v = json_object_get(r, "schema"))) {
        if (!json_is_array(v) || json_array_size(v) > DCMS_TRAINER_MAX_COLS) {
            problem(&p, "schema: must be an array of {name, type}");
        } else {
            job->columns = calloc(json_array_size(v) + 1, sizeof(*job->columns));
            if (!job->columns) {
                problem(&p, "schema: out of memory");
                goto out;
            }
            size_t i;
            json_t *col;
            json_array_foreach(v, i, col)
            {
                static const char *const types[] = {"number", "integer", "category", "text"};
                json_t *n = json_object_get(col, "name"), *t = json_object_get(col, "type");
                int ti = -1;
                for (int k = 0; k < 4 && json_is_string(t); k++)
                    if (!strcmp(types[k], json_string_value(t)))
                        ti = k;
                if (!json_is_object(col) || !json_is_string(n) || ti < 0 ||
                    json_object_size(col) != 2) {
                    problem(&p,
                            "schema[%zu]: must be {\"name\": string, \"type\": "
                            "number|integer|category|text}",
                            i);
                    continue;
                }
                job->columns[i].name = json_string_value(n);
                job->columns[i].type = (enum dcms_trainer_coltype)ti;
            }
            c->schema = job->columns;
            c->schema_len = json_array_size(v);
        }
    }
    if ((v = json_object_get(r, "split"))) {
        json_t *m = json_object_get(v, "method");
        uint64_t u = 0;
        if (!json_is_object(v) || !json_is_string(m))
            problem(&p, "split.method: required, modulo or random");
        else if (!strcmp(json_string_value(m), "modulo")) {
            static const char *const ks[] = {"method", "folds", "holdout_fold", NULL};
            unknown_keys(v, "split.", ks, &p);
            c->split = DCMS_SPLIT_MODULO;
            if (get_uint(v, "split.", "folds", 1000000, &u, &p) != 1 || u < 2)
                problem(&p, "split.folds: required, an integer >= 2");
            else
                c->folds = (uint32_t)u;
            if (get_uint(v, "split.", "holdout_fold", 1000000, &u, &p) != 1 || u >= c->folds)
                problem(&p, "split.holdout_fold: required, an integer < folds");
            else
                c->holdout_fold = (uint32_t)u;
        } else if (!strcmp(json_string_value(m), "random")) {
            static const char *const ks[] = {"method", "fraction", "seed", NULL};
            unknown_keys(v, "split.", ks, &p);
            c->split = DCMS_SPLIT_RANDOM;
            double f = 0;
            if (get_num(v, "fraction", 0, 1, &f, &p) != 1 || !(f > 0 && f < 1))
                problem(&p, "split.fraction: required, in (0, 1)");
            c->fraction = f;
            if (get_uint(v, "split.", "seed", UINT64_MAX, &c->split_seed, &p) == 0)
                problem(&p, "split.seed: required");
        } else
            problem(&p, "split.method: modulo or random");
    }
    if ((v = json_object_get(r, "model"))) {
        const char *s = json_string_value(v);
        if (s && !strcmp(s, "logistic_regression"))
            c->model = DCMS_MODEL_LOGISTIC;
        else if (s && !strcmp(s, "mlp"))
            c->model = DCMS_MODEL_MLP;
        else
            problem(&p, "model: logistic_regression or mlp");
    }
    if ((v = json_object_get(r, "hidden"))) {
        if (c->model != DCMS_MODEL_MLP)
            problem(&p, "hidden: only for model mlp");
        else if (!json_is_array(v) || json_array_size(v) < 1 ||
                 json_array_size(v) > DCMS_TRAINER_MAX_HIDDEN)
            problem(&p, "hidden: 1 to 3 layer widths");
        else {
            size_t i;
            json_t *w;
            json_array_foreach(v, i, w)
            {
                if (!json_is_integer(w) || json_integer_value(w) < 1 ||
                    json_integer_value(w) > DCMS_TRAINER_MAX_WIDTH)
                    problem(&p, "hidden[%zu]: an integer in [1, %u]", i, DCMS_TRAINER_MAX_WIDTH);
                else
                    c->hidden[i] = (size_t)json_integer_value(w);
            }
            c->n_hidden = json_array_size(v);
        }
    } else if (c->model == DCMS_MODEL_MLP)
        problem(&p, "hidden: required for model mlp, e.g. [16]");
    if ((v = json_object_get(r, "optimizer"))) {
        const char *s = json_string_value(v);
        if (s && !strcmp(s, "sgd"))
            c->optimizer = DCMS_OPTIM_SGD;
        else if (s && !strcmp(s, "adam"))
            c->optimizer = DCMS_OPTIM_ADAM;
        else
            problem(&p, "optimizer: sgd or adam");
    }
    if (get_num(r, "momentum", 0, 0.999999, &c->momentum, &p) == 1 &&
        c->optimizer != DCMS_OPTIM_SGD)
        problem(&p, "momentum: only for optimizer sgd");
    if (get_num(r, "beta1", 0, 0.999999, &c->beta1, &p) +
                get_num(r, "beta2", 0, 0.999999999, &c->beta2, &p) +
                get_num(r, "eps", 1e-300, 1, &c->adam_eps, &p) >
            0 &&
        c->optimizer != DCMS_OPTIM_ADAM)
        problem(&p, "beta1, beta2, eps: only for optimizer adam");
    uint64_t u;
    if (get_uint(r, "", "epochs", 100000, &u, &p) == 1) {
        if (u < 1)
            problem(&p, "epochs: at least 1");
        c->epochs = (uint32_t)u;
    }
    if (get_uint(r, "", "batch_size", 100000000, &u, &p) == 1)
        c->batch_size = (size_t)u;
    if (get_num(r, "learning_rate", 1e-12, 100, &c->learning_rate, &p) == 0)
        (void)0;
    get_num(r, "l2", 0, 100, &c->l2, &p);
    get_uint(r, "", "seed", UINT64_MAX, &c->seed, &p);
    if ((v = json_object_get(r, "dp"))) {
        static const char *const ks[] = {"noise_multiplier", "max_grad_norm", NULL};
        if (!json_is_object(v))
            problem(&p, "dp: an object {noise_multiplier, max_grad_norm}");
        else {
            unknown_keys(v, "dp.", ks, &p);
            c->dp = 1;
            if (get_num(v, "noise_multiplier", 0, 1000, &c->noise_multiplier, &p) != 1)
                problem(&p, "dp.noise_multiplier: required, a number in [0, 1000]");
            if (get_num(v, "max_grad_norm", 1e-9, 1e9, &c->max_grad_norm, &p) != 1)
                problem(&p, "dp.max_grad_norm: required, a number > 0");
            if (c->batch_size == 0)
                problem(&p, "batch_size: DP-SGD needs an expected batch size (q = batch_size/N)");
        }
    }
    if ((v = json_object_get(r, "dtype"))) {
        const char *s = json_string_value(v);
        if (s && !strcmp(s, "F64"))
            job->f64 = 1;
        else if (s && !strcmp(s, "F32"))
            job->f64 = 0;
        else
            problem(&p, "dtype: F32 or F64");
    }
    if ((v = json_object_get(r, "metadata"))) {
        if (!json_is_object(v) || json_object_size(v) > 64)
            problem(&p, "metadata: an object of at most 64 strings");
        else {
            job->meta = calloc(json_object_size(v) + 1, sizeof(*job->meta));
            if (!job->meta) {
                problem(&p, "metadata: out of memory");
                goto out;
            }
            const char *k;
            json_t *s;
            json_object_foreach(v, k, s)
            {
                if (!json_is_string(s))
                    problem(&p, "metadata.%s: must be a string", k);
                else
                    job->meta[job->n_meta++] = (struct dcms_st_kv){k, json_string_value(s)};
            }
        }
    }
    if (get_uint(r, "", "test_seed", UINT64_MAX, &job->test_seed, &p) == 1)
        job->has_test_seed = 1;
out:
    if (p.n) {
        dcms_trainer_job_release(job);
        return -1;
    }
    return 0;
}

void dcms_trainer_job_release(struct dcms_trainer_job *job)
{
    free(job->columns);
    free(job->meta);
    json_decref(job->root);
    memset(job, 0, sizeof(*job));
}

static json_t *num_or_null(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

json_t *dcms_trainer_metrics_to_json(const struct dcms_trainer_metrics *m,
                                     const struct dcms_trainer_data *d,
                                     const struct dcms_trainer_model *model,
                                     const struct dcms_trainer_config *cfg)
{
    json_t *o = json_object(), *pc = json_object(), *cm = json_array(), *labels = json_array();
    size_t K = m->labels;
    for (size_t k = 0; k < K; k++) {
        uint64_t support = 0;
        for (size_t j = 0; j < K; j++)
            support += m->confusion[k * K + j];
        json_object_set_new(pc, d->label_names[k],
                            json_pack("{s:o,s:o,s:o,s:I}", "precision",
                                      num_or_null(m->precision[k]), "recall",
                                      num_or_null(m->recall[k]), "f1", num_or_null(m->f1[k]),
                                      "support", (json_int_t)support));
        json_t *row = json_array();
        for (size_t j = 0; j < K; j++)
            json_array_append_new(row, json_integer((json_int_t)m->confusion[k * K + j]));
        json_array_append_new(cm, row);
        json_array_append_new(labels, json_string(d->label_names[k]));
    }
    json_object_set_new(o, "rows", json_integer((json_int_t)m->rows));
    json_object_set_new(o, "accuracy", num_or_null(m->accuracy));
    json_object_set_new(o, "loss", num_or_null(m->loss));
    json_object_set_new(o, "macro",
                        json_pack("{s:o,s:o,s:o}", "precision", num_or_null(m->macro_precision),
                                  "recall", num_or_null(m->macro_recall), "f1",
                                  num_or_null(m->macro_f1)));
    json_object_set_new(o, "per_class", pc);
    json_object_set_new(o, "confusion_matrix",
                        json_pack("{s:o,s:o,s:s}", "labels", labels, "matrix", cm, "rows_are",
                                  "true labels; columns are predicted labels"));
    if (cfg && cfg->dp)
        json_object_set_new(o, "dp",
                            json_pack("{s:f,s:f,s:f,s:I}", "noise_multiplier",
                                      cfg->noise_multiplier, "max_grad_norm", cfg->max_grad_norm,
                                      "sample_rate", model->dp_q, "steps",
                                      (json_int_t)model->dp_steps));
    return o;
}

json_t *dcms_trainer_epoch_to_json(const struct dcms_trainer_epoch *e)
{
    return json_pack("{s:I,s:o,s:o,s:o,s:o}", "epoch", (json_int_t)e->epoch, "loss",
                     num_or_null(e->loss), "train_accuracy", num_or_null(e->train_accuracy),
                     "val_loss", num_or_null(e->val_loss), "val_accuracy",
                     num_or_null(e->val_accuracy));
}
