/*
 * The body of `dcms train start` (POST /api/v1/contracts/{id}/trainings,
 * docs/training.md "The config") from its options: types are checked here
 * (an option that wants a number gets one), values are left to the server,
 * which names the field it refuses. No HTTP, so the unit tests include it.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dcms/banned.h"

static int int_of(const char *opt, const char *s, long long *v, char *err, size_t errlen)
{
    char *end;
    errno = 0;
    *v = strtoll(s, &end, 10);
    if (!*s || *end || errno) {
        snprintf(err, errlen, "%s: \"%s\" is not an integer", opt, s);
        return -1;
    }
    return 0;
}

static int num_of(const char *opt, const char *s, double *v, char *err, size_t errlen)
{
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    if (!*s || *end || errno || !isfinite(*v)) {
        snprintf(err, errlen, "%s: \"%s\" is not a number", opt, s);
        return -1;
    }
    return 0;
}

static int set_int(json_t *o, const char *key, const char *opt, const char *s, char *err,
                   size_t errlen)
{
    long long v;
    if (!s)
        return 0;
    if (int_of(opt, s, &v, err, errlen))
        return -1;
    return json_object_set_new(o, key, json_integer((json_int_t)v));
}

static int set_num(json_t *o, const char *key, const char *opt, const char *s, char *err,
                   size_t errlen)
{
    double v;
    if (!s)
        return 0;
    if (num_of(opt, s, &v, err, errlen))
        return -1;
    return json_object_set_new(o, key, json_real(v));
}

/* "16,8" -> [16, 8]. */
static json_t *hidden_of(const char *s, char *err, size_t errlen)
{
    json_t *a = json_array();
    char item[32];
    const char *p = s;
    while (a) {
        size_t n = strcspn(p, ",");
        long long v;
        if (n == 0 || n >= sizeof item) {
            snprintf(err, errlen, "--hidden: \"%s\" is not a list of layer widths like 16,8", s);
            json_decref(a);
            return NULL;
        }
        snprintf(item, sizeof item, "%.*s", (int)n, p);
        if (int_of("--hidden", item, &v, err, errlen)) {
            json_decref(a);
            return NULL;
        }
        json_array_append_new(a, json_integer((json_int_t)v));
        if (!p[n])
            break;
        p += n + 1;
    }
    return a;
}

/* "modulo:5:4" or "random:0.2[:SEED]". */
static json_t *split_of(const char *s, char *err, size_t errlen)
{
    char a[64] = "", b[64] = "";
    const char *rest;
    json_t *o = NULL;
    if (strncmp(s, "modulo:", 7) == 0) {
        long long k, h;
        rest = s + 7;
        size_t n = strcspn(rest, ":");
        if (n >= sizeof a || !rest[n])
            goto bad;
        snprintf(a, sizeof a, "%.*s", (int)n, rest);
        snprintf(b, sizeof b, "%s", rest + n + 1);
        if (int_of("--split folds", a, &k, err, errlen) ||
            int_of("--split holdout", b, &h, err, errlen))
            return NULL;
        return json_pack("{s:s, s:I, s:I}", "method", "modulo", "folds", (json_int_t)k,
                         "holdout_fold", (json_int_t)h);
    }
    if (strncmp(s, "random:", 7) == 0) {
        double f;
        rest = s + 7;
        size_t n = strcspn(rest, ":");
        if (n >= sizeof a)
            goto bad;
        snprintf(a, sizeof a, "%.*s", (int)n, rest);
        if (num_of("--split fraction", a, &f, err, errlen))
            return NULL;
        o = json_pack("{s:s, s:f}", "method", "random", "fraction", f);
        if (o && rest[n]) {
            long long seed;
            const char *sd = rest + n + 1;
            if (strchr(sd, ':'))
                goto bad;
            if (int_of("--split seed", sd, &seed, err, errlen)) {
                json_decref(o);
                return NULL;
            }
            json_object_set_new(o, "seed", json_integer((json_int_t)seed));
        }
        return o;
    }
bad:
    json_decref(o);
    snprintf(err, errlen, "--split: \"%s\" is not modulo:FOLDS:HOLDOUT or random:FRACTION[:SEED]",
             s);
    return NULL;
}

/* "a,b" -> ["a", "b"]. */
static json_t *ids_of(const char *s, char *err, size_t errlen)
{
    json_t *a = json_array();
    const char *p = s;
    while (a) {
        size_t n = strcspn(p, ",");
        if (n == 0) {
            snprintf(err, errlen, "--datasets: \"%s\" is not ID[,ID...]", s);
            json_decref(a);
            return NULL;
        }
        json_array_append_new(a, json_stringn(p, n));
        if (!p[n])
            break;
        p += n + 1;
    }
    return a;
}

bool cli_train_needs_scope(const struct cli_train_opts *o, json_t *base)
{
    return !o->datasets && !json_object_get(base, "datasets");
}

int cli_train_body(const struct cli_train_opts *o, json_t *base, json_t *scope, json_t **out,
                   char *err, size_t errlen)
{
    json_t *b = base ? json_deep_copy(base) : json_object(), *x;
    *out = NULL;
    if (!json_is_object(b)) {
        snprintf(err, errlen, "out of memory");
        json_decref(b);
        return CLI_EXIT_USAGE;
    }
    if (o->datasets) {
        if (!(x = ids_of(o->datasets, err, errlen)))
            goto fail;
        json_object_set_new(b, "datasets", x);
    } else if (!json_object_get(b, "datasets")) {
        if (!json_is_array(scope) || json_array_size(scope) == 0) {
            snprintf(err, errlen, "the contract names no dataset: give --datasets ID[,ID...]");
            goto fail;
        }
        json_object_set(b, "datasets", scope);
    }
    const char *strs[][2] = {
        {"label", o->label}, {"model", o->model}, {"optimizer", o->optimizer}, {"dtype", o->dtype}};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        if (strs[i][1])
            json_object_set_new(b, strs[i][0], json_string(strs[i][1]));
    if (o->hidden) {
        if (!(x = hidden_of(o->hidden, err, errlen)))
            goto fail;
        json_object_set_new(b, "hidden", x);
    }
    if (o->split) {
        if (!(x = split_of(o->split, err, errlen)))
            goto fail;
        json_object_set_new(b, "split", x);
    }
    if (set_int(b, "epochs", "--epochs", o->epochs, err, errlen) ||
        set_int(b, "batch_size", "--batch-size", o->batch_size, err, errlen) ||
        set_int(b, "seed", "--seed", o->seed, err, errlen) ||
        set_num(b, "momentum", "--momentum", o->momentum, err, errlen) ||
        set_num(b, "learning_rate", "--learning-rate", o->learning_rate, err, errlen) ||
        set_num(b, "l2", "--l2", o->l2, err, errlen))
        goto fail;
    if (o->dp_epsilon || o->dp_noise || o->dp_max_grad_norm) {
        json_t *dp = json_object_get(b, "dp");
        if (!json_is_object(dp)) {
            dp = json_object();
            json_object_set_new(b, "dp", dp);
        }
        if (o->dp_epsilon && o->dp_noise) {
            snprintf(err, errlen, "--dp-epsilon and --dp-noise: one or the other");
            goto fail;
        }
        if (set_num(dp, "target_epsilon", "--dp-epsilon", o->dp_epsilon, err, errlen) ||
            set_num(dp, "noise_multiplier", "--dp-noise", o->dp_noise, err, errlen) ||
            set_num(dp, "max_grad_norm", "--dp-max-grad-norm", o->dp_max_grad_norm, err, errlen))
            goto fail;
        /* A target replaces a noise multiplier given by the file, and the other way round. */
        if (o->dp_epsilon)
            json_object_del(dp, "noise_multiplier");
        if (o->dp_noise)
            json_object_del(dp, "target_epsilon");
    }
    *out = b;
    return 0;
fail:
    json_decref(b);
    return CLI_EXIT_USAGE;
}
