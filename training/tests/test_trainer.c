/* The trainer core: accuracy on breast_cancer.csv, models, optimizers, splits, CSV, safetensors,
 * DP-SGD. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "safetensors.h"
#include "trainer.h"
#include "trainer_json.h"
#include "trainer_random.h"

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    b[n] = '\0';
    *len = (size_t)n;
    return b;
}

static char *bc_csv(size_t *len)
{
    return slurp(DCMS_SOURCE_DIR "/tests/data/breast_cancer.csv", len);
}

static void base_config(struct dcms_trainer_config *c)
{
    dcms_trainer_config_defaults(c);
    c->label = "diagnosis";
    c->epochs = 1000;
}

struct result {
    struct dcms_trainer_data d;
    struct dcms_trainer_model m;
    struct dcms_trainer_metrics met;
};

static void train_csv(const char *csv, size_t len, const struct dcms_trainer_config *c,
                      const struct dcms_trainer_run *run, struct result *r)
{
    char err[512] = "";
    assert_int_equal(dcms_trainer_data_parse(csv, len, c, &r->d, err, sizeof(err)), 0);
    enum dcms_trainer_rc rc = dcms_trainer_train(c, &r->d, run, &r->m, &r->met, err, sizeof(err));
    if (rc)
        fail_msg("train: %s", err);
}

static void result_free(struct result *r)
{
    dcms_trainer_data_free(&r->d);
    dcms_trainer_model_free(&r->m);
    dcms_trainer_metrics_free(&r->met);
}

/* The reference protocol: stdlib Python gives 0.9912 (112 of 113). */
static void test_logistic_breast_cancer(void **state)
{
    size_t len;
    char *csv = bc_csv(&len);
    struct dcms_trainer_config c;
    base_config(&c);
    struct result r = {0};
    train_csv(csv, len, &c, NULL, &r);
    assert_int_equal(r.d.rows, 569);
    assert_int_equal(r.d.features, 30);
    assert_int_equal(r.met.rows, 113);
    print_message("logistic accuracy %.4f loss %.4f\n", r.met.accuracy, r.met.loss);
    assert_true(fabs(r.met.accuracy - 0.991) <= 0.01);
    uint64_t total = 0;
    for (size_t i = 0; i < 4; i++)
        total += r.met.confusion[i];
    assert_int_equal(total, 113);
    assert_true(r.met.macro_f1 > 0.95 && r.met.macro_f1 <= 1);
    result_free(&r);
    free(csv);
}

static void test_mlp_breast_cancer(void **state)
{
    size_t len;
    char *csv = bc_csv(&len);
    struct dcms_trainer_config c;
    base_config(&c);
    c.model = DCMS_MODEL_MLP;
    c.hidden[0] = 16;
    c.n_hidden = 1;
    c.epochs = 500;
    c.seed = 7;
    struct result r = {0};
    train_csv(csv, len, &c, NULL, &r);
    print_message("mlp accuracy %.4f\n", r.met.accuracy);
    assert_true(r.met.accuracy >= 0.96);
    assert_int_equal(r.m.n_params, 30 * 16 + 16 + 16 + 1);
    /* He init comes from the seed: the same seed gives the same model. */
    struct result r2 = {0};
    train_csv(csv, len, &c, NULL, &r2);
    assert_memory_equal(r.m.params, r2.m.params, r.m.n_params * sizeof(double));
    result_free(&r);
    result_free(&r2);
    free(csv);
}

static void test_adam_minibatch(void **state)
{
    size_t len;
    char *csv = bc_csv(&len);
    struct dcms_trainer_config c;
    base_config(&c);
    c.optimizer = DCMS_OPTIM_ADAM;
    c.learning_rate = 0.01;
    c.batch_size = 32;
    c.epochs = 50;
    c.l2 = 1e-3;
    struct result r = {0};
    train_csv(csv, len, &c, NULL, &r);
    print_message("adam accuracy %.4f\n", r.met.accuracy);
    assert_true(r.met.accuracy >= 0.96);
    result_free(&r);
    /* Two hidden layers, sgd with momentum. */
    base_config(&c);
    c.model = DCMS_MODEL_MLP;
    c.hidden[0] = 8;
    c.hidden[1] = 4;
    c.n_hidden = 2;
    c.momentum = 0.9;
    c.learning_rate = 0.01;
    c.batch_size = 64;
    c.epochs = 100;
    c.seed = 3;
    train_csv(csv, len, &c, NULL, &r);
    print_message("mlp 8-4 momentum accuracy %.4f\n", r.met.accuracy);
    assert_true(r.met.accuracy >= 0.94);
    result_free(&r);
    free(csv);
}

/* Three Gaussian blobs in 2-D, labels "a", "b", "c". */
static char *blobs(size_t n, size_t *len)
{
    size_t cap = n * 64 + 64, pos = 0;
    char *b = malloc(cap);
    uint64_t s = 99;
    pos += (size_t)snprintf(b, cap, "x,y,note,cls\n");
    static const double cx[3] = {0, 4, 0}, cy[3] = {0, 0, 4};
    for (size_t i = 0; i < n; i++) {
        size_t k = i % 3;
        double u1 = ((double)(dcms_trainer_splitmix64(&s) >> 11) + 1) * 0x1.0p-53;
        double u2 = (double)(dcms_trainer_splitmix64(&s) >> 11) * 0x1.0p-53;
        double r = sqrt(-2 * log(u1));
        pos += (size_t)snprintf(b + pos, cap - pos, "%.6f,%.6f,\"text, ignored\",%c\r\n",
                                cx[k] + r * cos(2 * M_PI * u2), cy[k] + r * sin(2 * M_PI * u2),
                                "abc"[k]);
    }
    *len = pos;
    return b;
}

static void test_multinomial(void **state)
{
    size_t len;
    char *csv = blobs(600, &len);
    struct dcms_trainer_column schema[] = {{"x", DCMS_COL_NUMBER},
                                           {"y", DCMS_COL_NUMBER},
                                           {"note", DCMS_COL_TEXT},
                                           {"cls", DCMS_COL_CATEGORY}};
    struct dcms_trainer_config c;
    dcms_trainer_config_defaults(&c);
    c.label = "cls";
    c.schema = schema;
    c.schema_len = 4;
    c.epochs = 300;
    c.split = DCMS_SPLIT_RANDOM;
    c.fraction = 0.25;
    c.split_seed = 5;
    struct result r = {0};
    train_csv(csv, len, &c, NULL, &r);
    assert_int_equal(r.d.labels, 3);
    assert_string_equal(r.d.label_names[2], "c");
    assert_int_equal(r.d.features, 2);
    assert_int_equal(r.m.sizes[1], 3);
    print_message("multinomial accuracy %.4f (%zu rows)\n", r.met.accuracy, r.met.rows);
    assert_true(r.met.accuracy >= 0.9);
    assert_true(r.met.rows > 100 && r.met.rows < 200);
    double sum = 0, p[3];
    dcms_trainer_predict(&r.m, r.d.x, p);
    sum = p[0] + p[1] + p[2];
    assert_true(fabs(sum - 1) < 1e-12);
    result_free(&r);
    /* The MLP with a softmax output too. */
    c.model = DCMS_MODEL_MLP;
    c.hidden[0] = 8;
    c.n_hidden = 1;
    train_csv(csv, len, &c, NULL, &r);
    assert_true(r.met.accuracy >= 0.9);
    result_free(&r);
    free(csv);
}

static void test_split(void **state)
{
    /* splitmix64 reference output for seed 1234567 (Vigna's splitmix64.c). */
    uint64_t s = 1234567;
    assert_true(dcms_trainer_splitmix64(&s) == 6457827717110365317ull);
    assert_true(dcms_trainer_splitmix64(&s) == 3203168211198807973ull);
    struct dcms_trainer_config c;
    dcms_trainer_config_defaults(&c);
    c.folds = 5;
    c.holdout_fold = 4;
    size_t held = 0;
    for (size_t r = 0; r < 569; r++)
        held += (size_t)dcms_trainer_split_holdout(&c, r);
    assert_int_equal(held, 113);
    assert_true(dcms_trainer_split_holdout(&c, 4) && !dcms_trainer_split_holdout(&c, 5));
    /* Random: row r held out iff the (r+1)-th splitmix64 output of the seed, as a 53-bit
     * uniform, is below the fraction. */
    c.split = DCMS_SPLIT_RANDOM;
    c.fraction = 0.3;
    c.split_seed = 42;
    uint64_t st = 42;
    held = 0;
    for (size_t r = 0; r < 10000; r++) {
        double u = (double)(dcms_trainer_splitmix64(&st) >> 11) * 0x1.0p-53;
        assert_int_equal(dcms_trainer_split_holdout(&c, r), u < 0.3);
        held += u < 0.3;
    }
    assert_true(held > 2800 && held < 3200);
}

static void expect_parse_error(const char *csv, const struct dcms_trainer_config *c,
                               const char *needle)
{
    struct dcms_trainer_data d;
    char err[512] = "";
    assert_int_equal(dcms_trainer_data_parse(csv, strlen(csv), c, &d, err, sizeof(err)),
                     DCMS_TRAINER_EINVAL);
    if (!strstr(err, needle))
        fail_msg("error \"%s\" lacks \"%s\"", err, needle);
    assert_null(d.x);
}

static void test_csv(void **state)
{
    struct dcms_trainer_config c;
    dcms_trainer_config_defaults(&c);
    c.label = "y";
    expect_parse_error("a,b\n1,2\n", &c, "label column \"y\"");
    expect_parse_error("a,y\n1,0\nx,1\n", &c, "row 2, column \"a\": not a finite number");
    expect_parse_error("a,y\n1,0\n2\n", &c, "row 2: expected 2 fields");
    expect_parse_error("a,y\n1,0\n2,0\n", &c, "1 distinct values");
    expect_parse_error("a,a,y\n1,1,0\n", &c, "appears twice");
    expect_parse_error("a,y\n\"1,0\n", &c, "row 1");
    expect_parse_error("a,y\n1e999,0\n2,1\n", &c, "not a finite number");
    struct dcms_trainer_column sch[] = {{"a", DCMS_COL_CATEGORY}, {"y", DCMS_COL_TEXT}};
    c.schema = sch;
    c.schema_len = 2;
    expect_parse_error("a,y\nred,0\nblue,1\n", &c, "category features are not supported");
    sch[0].type = DCMS_COL_INTEGER;
    expect_parse_error("a,y\n1.5,0\n2,1\n", &c, "not an integer");
    struct dcms_trainer_column sch2[] = {{"a", DCMS_COL_NUMBER}};
    c.schema = sch2;
    c.schema_len = 1;
    expect_parse_error("a,b,y\n1,2,0\n", &c, "\"b\" is not in the schema");
    /* Quoting, CRLF, trailing blank line. */
    c.schema = NULL;
    struct dcms_trainer_data d;
    char err[256];
    const char *ok = "\"a\",\"y\"\r\n\"1.5\",\"yes, \"\"really\"\"\"\r\n-2,no\r\n\r\n";
    assert_int_equal(dcms_trainer_data_parse(ok, strlen(ok), &c, &d, err, sizeof(err)), 0);
    assert_int_equal(d.rows, 2);
    assert_string_equal(d.label_names[1], "yes, \"really\"");
    assert_true(d.x[0] == 1.5 && d.x[1] == -2);
    assert_int_equal(d.y[0], 1);
    dcms_trainer_data_free(&d);
}

static uint64_t le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void check_safetensors(const uint8_t *b, size_t n, const struct result *r, int f64)
{
    uint64_t hl = le(b, 8);
    assert_true(hl % 8 == 0 && 8 + hl <= n);
    json_error_t je;
    json_t *h = json_loadb((const char *)b + 8, hl, JSON_REJECT_DUPLICATES, &je);
    assert_non_null(h);
    /* Keys in sorted order, as written. */
    const char *order[] = {"__metadata__",    "layers.0.bias", "layers.0.weight", "layers.1.bias",
                           "layers.1.weight", "scaler.mean",   "scaler.std"};
    const char *prev = "";
    for (const char *p = (const char *)b + 8; p < (const char *)b + 8 + hl; p++) {
        for (size_t k = 0; k < 7; k++) {
            size_t kl = strlen(order[k]);
            if (p[0] == '"' && !strncmp(p + 1, order[k], kl) && p[kl + 1] == '"' &&
                p[kl + 2] == ':') {
                assert_true(strcmp(prev, order[k]) < 0);
                prev = order[k];
            }
        }
    }
    assert_string_equal(prev, "scaler.std");
    json_t *meta = json_object_get(h, "__metadata__");
    assert_string_equal(json_string_value(json_object_get(meta, "model")), "mlp");
    assert_string_equal(json_string_value(json_object_get(meta, "contract_id")), "c-1");
    json_t *fn = json_loads(json_string_value(json_object_get(meta, "feature_names")), 0, NULL);
    assert_int_equal(json_array_size(fn), 30);
    assert_string_equal(json_string_value(json_array_get(fn, 0)), "mean_radius");
    json_decref(fn);
    assert_string_equal(json_string_value(json_object_get(meta, "label_names")), "[\"0\",\"1\"]");
    size_t esz = f64 ? 8 : 4;
    const uint8_t *data = b + 8 + hl;
    /* layers.0.weight [16,30] is the first block of params; bias follows. */
    struct {
        const char *name;
        const double *v;
        size_t rows, cols;
    } t[] = {{"layers.0.weight", r->m.params, 16, 30},
             {"layers.0.bias", r->m.params + 480, 16, 0},
             {"layers.1.weight", r->m.params + 496, 1, 16},
             {"layers.1.bias", r->m.params + 512, 1, 0},
             {"scaler.mean", r->m.mean, 30, 0},
             {"scaler.std", r->m.std, 30, 0}};
    size_t end = 0;
    for (size_t k = 0; k < 6; k++) {
        json_t *e = json_object_get(h, t[k].name);
        assert_string_equal(json_string_value(json_object_get(e, "dtype")), f64 ? "F64" : "F32");
        json_t *sh = json_object_get(e, "shape");
        assert_int_equal(json_array_size(sh), t[k].cols ? 2 : 1);
        assert_int_equal(json_integer_value(json_array_get(sh, 0)), t[k].rows);
        if (t[k].cols)
            assert_int_equal(json_integer_value(json_array_get(sh, 1)), t[k].cols);
        json_t *off = json_object_get(e, "data_offsets");
        size_t lo = (size_t)json_integer_value(json_array_get(off, 0));
        size_t hi = (size_t)json_integer_value(json_array_get(off, 1));
        size_t cnt = t[k].rows * (t[k].cols ? t[k].cols : 1);
        assert_int_equal(hi - lo, cnt * esz);
        if (hi > end)
            end = hi;
        for (size_t i = 0; i < cnt; i++) {
            double v;
            if (f64) {
                uint64_t u = le(data + lo + 8 * i, 8);
                memcpy(&v, &u, 8);
                assert_true(v == t[k].v[i]);
            } else {
                uint32_t u = (uint32_t)le(data + lo + 4 * i, 4);
                float fl;
                memcpy(&fl, &u, 4);
                assert_true(fl == (float)t[k].v[i]);
            }
        }
    }
    assert_int_equal(8 + hl + end, n);
    json_decref(h);
}

static void test_safetensors_roundtrip(void **state)
{
    size_t len;
    char *csv = bc_csv(&len);
    struct dcms_trainer_config c;
    base_config(&c);
    c.model = DCMS_MODEL_MLP;
    c.hidden[0] = 16;
    c.n_hidden = 1;
    c.epochs = 5;
    struct result r = {0};
    train_csv(csv, len, &c, NULL, &r);
    struct dcms_st_kv meta[] = {{"contract_id", "c-1"}, {"terms_hash", "ab\"\\\n"}};
    for (int f64 = 0; f64 < 2; f64++) {
        uint8_t *b = NULL;
        size_t n = 0;
        assert_int_equal(dcms_st_encode(&r.m, &r.d, &c, meta, 2, f64, &b, &n), 0);
        check_safetensors(b, n, &r, f64);
        free(b);
    }
    /* A caller key may not shadow the trainer's own. */
    struct dcms_st_kv bad[] = {{"model", "x"}};
    uint8_t *b = NULL;
    size_t n = 0;
    assert_int_equal(dcms_st_encode(&r.m, &r.d, &c, bad, 1, 1, &b, &n), -1);
    result_free(&r);
    free(csv);
}

/* ---- DP-SGD ---- */

static void dp_config(struct dcms_trainer_config *c, double sigma, double clip_norm)
{
    base_config(c);
    c->dp = 1;
    c->noise_multiplier = sigma;
    c->max_grad_norm = clip_norm;
    c->batch_size = 456; /* = N training rows: q = 1, every row in every step */
    c->epochs = 1;
    c->learning_rate = 1;
}

/*
 * One step from zero weights with q = 1 and lr 1: w = -(sum of clipped
 * per-example gradients + N(0, sigma^2 C^2))/N, so across runs each weight
 * has standard deviation sigma*C/N exactly. 10 runs x 31 weights.
 */
static void test_dp_noise_spread(void **state)
{
    size_t len;
    char *csv = bc_csv(&len);
    struct dcms_trainer_config c;
    const double sigma = 1.3, C = 0.7;
    dp_config(&c, sigma, C);
    struct dcms_trainer_random rnd;
    assert_int_equal(dcms_trainer_random_init(&rnd), 0);
    struct dcms_trainer_run run = {NULL, NULL, dcms_trainer_random_bytes, &rnd};
    double w[10][31];
    size_t ntr = 0;
    for (int k = 0; k < 10; k++) {
        struct result r = {0};
        train_csv(csv, len, &c, &run, &r);
        ntr = r.d.rows - r.met.rows;
        assert_int_equal(r.m.dp_steps, 1);
        assert_true(r.m.dp_q == 1);
        memcpy(w[k], r.m.params, sizeof(w[k]));
        result_free(&r);
    }
    double var = 0;
    for (int j = 0; j < 31; j++) {
        double mu = 0, ss = 0;
        for (int k = 0; k < 10; k++)
            mu += w[k][j] / 10;
        for (int k = 0; k < 10; k++)
            ss += (w[k][j] - mu) * (w[k][j] - mu);
        var += ss / 9 / 31;
    }
    double predicted = sigma * C / (double)ntr, measured = sqrt(var);
    print_message("dp spread: measured %.6g predicted %.6g (ratio %.3f)\n", measured, predicted,
                  measured / predicted);
    /* 279 degrees of freedom: the ratio's standard error is about 4%. */
    assert_true(measured / predicted > 0.8 && measured / predicted < 1.2);
    /* With sigma 0 the runs agree: the spread above is the noise, nothing else. */
    dp_config(&c, 0, C);
    struct result a = {0}, b = {0};
    train_csv(csv, len, &c, &run, &a);
    train_csv(csv, len, &c, &run, &b);
    assert_memory_equal(a.m.params, b.m.params, 31 * sizeof(double));
    result_free(&a);
    result_free(&b);
    dcms_trainer_random_release(&rnd);
    free(csv);
}

/*
 * Clipping is per example: from zero weights the gradient of row i is
 * (0.5 - y_i) (x_i, 1); with sigma 0 and q = 1, one step gives exactly
 * w = -(1/N) sum_i g_i min(1, C/|g_i|). C = 2.5 clips some rows and not others.
 */
static void test_dp_clipping(void **state)
{
    size_t len;
    char *csv = bc_csv(&len);
    struct dcms_trainer_config c;
    const double C = 2.5;
    dp_config(&c, 0, C);
    struct dcms_trainer_random rnd;
    assert_int_equal(dcms_trainer_random_init(&rnd), 0);
    struct dcms_trainer_run run = {NULL, NULL, dcms_trainer_random_bytes, &rnd};
    struct result r = {0};
    train_csv(csv, len, &c, &run, &r);
    double expect[31] = {0};
    size_t N = 0, clipped = 0;
    for (size_t i = 0; i < r.d.rows; i++) {
        if (i % 5 == 4)
            continue;
        N++;
        double g[31], s = 0;
        for (size_t j = 0; j < 30; j++)
            g[j] = (0.5 - r.d.y[i]) * r.d.x[i * 30 + j];
        g[30] = 0.5 - r.d.y[i];
        for (size_t j = 0; j < 31; j++)
            s += g[j] * g[j];
        double f = sqrt(s) > C ? C / sqrt(s) : 1;
        clipped += f < 1;
        for (size_t j = 0; j < 31; j++)
            expect[j] -= g[j] * f;
    }
    assert_true(clipped > 10 && clipped < N - 10);
    for (size_t j = 0; j < 31; j++)
        assert_true(fabs(r.m.params[j] - expect[j] / (double)N) <= 1e-12);
    /* The step is bounded by C whatever the data: no example weighs more than C/N. */
    double nw = 0;
    for (size_t j = 0; j < 31; j++)
        nw += r.m.params[j] * r.m.params[j];
    assert_true(sqrt(nw) <= C);
    result_free(&r);
    dcms_trainer_random_release(&rnd);
    free(csv);
}

/*
 * With sigma 0, a C no gradient reaches and q = 1, DP-SGD's per-example
 * path must give full-batch gradient descent exactly (MLP, 3 epochs).
 */
static void test_dp_matches_plain_when_unclipped(void **state)
{
    size_t len;
    char *csv = bc_csv(&len);
    struct dcms_trainer_config c;
    dp_config(&c, 0, 1e9);
    c.model = DCMS_MODEL_MLP;
    c.hidden[0] = 16;
    c.hidden[1] = 8;
    c.n_hidden = 2;
    c.epochs = 3;
    c.learning_rate = 0.1;
    c.seed = 5;
    struct dcms_trainer_random rnd;
    assert_int_equal(dcms_trainer_random_init(&rnd), 0);
    struct dcms_trainer_run run = {NULL, NULL, dcms_trainer_random_bytes, &rnd};
    struct result a = {0}, b = {0};
    train_csv(csv, len, &c, &run, &a);
    c.dp = 0;
    c.batch_size = 0;
    train_csv(csv, len, &c, NULL, &b);
    assert_int_equal(a.m.n_params, b.m.n_params);
    for (size_t k = 0; k < a.m.n_params; k++)
        assert_true(fabs(a.m.params[k] - b.m.params[k]) <= 1e-12);
    result_free(&a);
    result_free(&b);
    free(csv);
}

/* Poisson sampling with the seeded test source: repeatable, and the seed matters. */
static void test_dp_seeded(void **state)
{
    size_t len;
    char *csv = bc_csv(&len);
    struct dcms_trainer_config c;
    dp_config(&c, 1.0, 1.0);
    c.batch_size = 64;
    c.epochs = 3;
    c.learning_rate = 0.5;
    struct dcms_trainer_random r1, r2, r3;
    assert_int_equal(dcms_trainer_random_init_seeded(&r1, 11), 0);
    assert_int_equal(dcms_trainer_random_init_seeded(&r2, 11), 0);
    assert_int_equal(dcms_trainer_random_init_seeded(&r3, 12), 0);
    struct dcms_trainer_run a = {NULL, NULL, dcms_trainer_random_bytes, &r1};
    struct dcms_trainer_run b = {NULL, NULL, dcms_trainer_random_bytes, &r2};
    struct dcms_trainer_run d = {NULL, NULL, dcms_trainer_random_bytes, &r3};
    struct result x = {0}, y = {0}, z = {0};
    train_csv(csv, len, &c, &a, &x);
    train_csv(csv, len, &c, &b, &y);
    train_csv(csv, len, &c, &d, &z);
    assert_memory_equal(x.m.params, y.m.params, 31 * sizeof(double));
    assert_memory_not_equal(x.m.params, z.m.params, 31 * sizeof(double));
    assert_int_equal(x.m.dp_steps, 3 * 8); /* ceil(456/64) steps an epoch */
    assert_true(fabs(x.m.dp_q - 64.0 / 456) < 1e-15);
    print_message("dp 3 epochs accuracy %.4f\n", x.met.accuracy);
    result_free(&x);
    result_free(&y);
    result_free(&z);
    free(csv);
}

static int count_epochs(void *ctx, const struct dcms_trainer_epoch *e)
{
    int *n = ctx;
    (*n)++;
    assert_int_equal(e->epoch, (uint32_t)*n);
    assert_true(e->val_accuracy >= 0 && e->val_accuracy <= 1);
    return *n == 7;
}

static void test_progress_and_cancel(void **state)
{
    size_t len;
    char *csv = bc_csv(&len);
    struct dcms_trainer_config c;
    base_config(&c);
    c.epochs = 20;
    int n = 0;
    struct dcms_trainer_run run = {count_epochs, &n, NULL, NULL};
    struct dcms_trainer_data d;
    struct dcms_trainer_model m;
    struct dcms_trainer_metrics met;
    char err[256];
    assert_int_equal(dcms_trainer_data_parse(csv, len, &c, &d, err, sizeof(err)), 0);
    assert_int_equal(dcms_trainer_train(&c, &d, &run, &m, &met, err, sizeof(err)),
                     DCMS_TRAINER_ECANCEL);
    assert_int_equal(n, 7);
    assert_null(m.params);
    /* DP without a random source is refused. */
    c.dp = 1;
    c.batch_size = 10;
    c.noise_multiplier = 1;
    assert_int_equal(dcms_trainer_train(&c, &d, NULL, &m, &met, err, sizeof(err)),
                     DCMS_TRAINER_EINVAL);
    dcms_trainer_data_free(&d);
    free(csv);
}

static void test_config_json(void **state)
{
    struct dcms_trainer_job j;
    char err[1024];
    const char *ok = "{\"label\":\"diagnosis\",\"split\":{\"method\":\"random\",\"fraction\":0.2,"
                     "\"seed\":9},\"model\":\"mlp\",\"hidden\":[16,8],\"optimizer\":\"adam\","
                     "\"epochs\":10,\"batch_size\":32,\"learning_rate\":0.01,\"seed\":3,"
                     "\"dp\":{\"noise_multiplier\":1.1,\"max_grad_norm\":1},\"dtype\":\"F32\","
                     "\"metadata\":{\"contract_id\":\"c\"}}";
    assert_int_equal(dcms_trainer_job_from_json(ok, strlen(ok), &j, err, sizeof(err)), 0);
    assert_int_equal(j.cfg.n_hidden, 2);
    assert_int_equal(j.cfg.hidden[1], 8);
    assert_int_equal(j.cfg.split, DCMS_SPLIT_RANDOM);
    assert_true(j.cfg.dp && j.cfg.noise_multiplier == 1.1);
    assert_int_equal(j.f64, 0);
    assert_int_equal(j.n_meta, 1);
    dcms_trainer_job_release(&j);
    const char *bad = "{\"split\":{\"method\":\"modulo\",\"folds\":5,\"holdout_fold\":5},"
                      "\"model\":\"svm\",\"epochs\":0,\"bogus\":1,\"dp\":{\"max_grad_norm\":1}}";
    assert_int_equal(dcms_trainer_job_from_json(bad, strlen(bad), &j, err, sizeof(err)), -1);
    const char *want[] = {
        "label: required",    "split.holdout_fold",   "model: logistic_regression",
        "epochs: at least 1", "bogus: unknown field", "dp.noise_multiplier: required",
        "batch_size: DP-SGD"};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        if (!strstr(err, want[i]))
            fail_msg("\"%s\" lacks \"%s\"", err, want[i]);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_logistic_breast_cancer),
        cmocka_unit_test(test_mlp_breast_cancer),
        cmocka_unit_test(test_adam_minibatch),
        cmocka_unit_test(test_multinomial),
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_csv),
        cmocka_unit_test(test_safetensors_roundtrip),
        cmocka_unit_test(test_dp_noise_spread),
        cmocka_unit_test(test_dp_clipping),
        cmocka_unit_test(test_dp_matches_plain_when_unclipped),
        cmocka_unit_test(test_dp_seeded),
        cmocka_unit_test(test_progress_and_cancel),
        cmocka_unit_test(test_config_json),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
