/*
 * The training request decoder (src/training/training_json.c): what it
 * accepts becomes the trainer's config unchanged but for the datasets, and
 * what it refuses is reported all at once, each problem on its JSON path.
 * Then a DP run as the training service prices it
 * (src/training/training_privacy.c): the schedule (training rows, q,
 * steps) must be the one the trainer takes, so those cases decode a
 * request, price it, then train the same config on
 * tests/data/breast_cancer.csv with the trainer's own decoder and core and
 * compare the q and steps the trainer reports. Also the request's dp
 * member (sigma or a target epsilon, exactly one) and the job's privacy
 * record.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"

#include "dcms/arena.h"
#include "dcms/json.h"
#include "trainer.h"
#include "trainer_json.h"
#include "training/training_int.h"

static json_t *parse(const char *s)
{
    json_error_t je;
    json_t *v = json_loads(s, JSON_REJECT_DUPLICATES, &je);
    if (!v)
        fail_msg("bad test JSON: %s", je.text);
    return v;
}

static bool has_field(const struct dcms_errinfo *ei, const char *field)
{
    for (size_t i = 0; i < ei->ndetails; i++)
        if (strcmp(ei->details[i].field, field) == 0)
            return true;
    return false;
}

static void accepted_config_passes_through(void **state)
{
    (void)state;
    struct dcms_arena *a = dcms_arena_new(1 << 16);
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, a);
    json_t *b = parse("{\"datasets\":[\"01a2476c-7fe3-7245-90ae-af8a13f3887d\","
                      "\"01a2476c-7fe3-7245-90ae-af8a13f3887e\"],\"label\":\"diagnosis\","
                      "\"model\":\"mlp\",\"hidden\":[16],\"optimizer\":\"sgd\",\"momentum\":0.9,"
                      "\"epochs\":500,\"batch_size\":0,\"learning_rate\":0.1,\"l2\":0,\"seed\":7,"
                      "\"split\":{\"method\":\"modulo\",\"folds\":5,\"holdout_fold\":4}}");
    struct tr_request rq;
    CHECK(tr_request_from_json(b, &rq, &ei), ei);
    assert_int_equal(rq.ndatasets, 2);
    assert_string_equal(rq.datasets[1], "01a2476c-7fe3-7245-90ae-af8a13f3887e");
    assert_string_equal(rq.model, "mlp");
    json_t *want = json_deep_copy(b);
    json_object_del(want, "datasets");
    assert_true(json_equal(want, rq.config));
    json_decref(want);
    json_decref(rq.config);
    json_decref(b);
    dcms_arena_free(a);
}

static void every_problem_with_its_path(void **state)
{
    (void)state;
    struct dcms_arena *a = dcms_arena_new(1 << 16);
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, a);
    json_t *b = parse("{\"datasets\":[\"x\",\"01a2476c-7fe3-7245-90ae-af8a13f3887d\","
                      "\"01a2476c-7fe3-7245-90ae-af8a13f3887d\"],\"label\":\"\",\"model\":\"mlp\","
                      "\"optimizer\":\"adam\",\"momentum\":0.5,\"epochs\":0,\"batch_size\":-1,"
                      "\"learning_rate\":0,\"split\":{\"method\":\"modulo\",\"folds\":5,"
                      "\"holdout_fold\":5,\"extra\":1},\"dp\":{\"noise_multiplier\":1},"
                      "\"dtype\":\"F16\",\"bogus\":1}");
    struct tr_request rq;
    assert_int_equal(tr_request_from_json(b, &rq, &ei), DCMS_ERR_VALIDATION);
    assert_null(rq.config);
    static const char *const fields[] = {"datasets[0]", "datasets[2]",      "label",
                                         "hidden",      "momentum",         "epochs",
                                         "batch_size",  "learning_rate",    "split.holdout_fold",
                                         "split.extra", "dp.max_grad_norm", "dtype",
                                         "bogus"};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        if (!has_field(&ei, fields[i]))
            fail_msg("no problem on %s", fields[i]);
    json_decref(b);
    dcms_arena_free(a);
}

static void not_an_object(void **state)
{
    (void)state;
    struct dcms_errinfo ei;
    struct dcms_arena *a = dcms_arena_new(1 << 16);
    dcms_errinfo_init(&ei, a);
    json_t *b = parse("[1]");
    struct tr_request rq;
    assert_int_equal(tr_request_from_json(b, &rq, &ei), DCMS_ERR_VALIDATION);
    assert_true(has_field(&ei, ""));
    json_decref(b);
    dcms_arena_free(a);
}

/* Not a CSPRNG: the sampling pattern does not change q or the number of steps. */
static int test_random(void *ctx, uint8_t *buf, size_t len)
{
    uint64_t *s = ctx;
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(dcms_trainer_splitmix64(s) >> 56);
    return 0;
}

/* breast_cancer.csv `copies` times, as the trainer gets several datasets (headers after the first
 * dropped). */
static char *csv_copies(int copies, size_t *len)
{
    size_t n = 0;
    char *one = dcms_test_read_file(DCMS_SOURCE_DIR "/tests/data/breast_cancer.csv", &n);
    assert_true(n > 0 && one[n - 1] == '\n');
    const char *body = strchr(one, '\n') + 1;
    size_t blen = n - (size_t)(body - one);
    char *all = malloc(n + (size_t)(copies - 1) * blen + 1);
    assert_non_null(all);
    memcpy(all, one, n);
    *len = n;
    for (int i = 1; i < copies; i++) {
        memcpy(all + *len, body, blen);
        *len += blen;
    }
    all[*len] = '\0';
    free(one);
    return all;
}

/*
 * Prices `request` (a POST body with dp) on `copies` datasets of 569 rows,
 * trains its config with the trainer and checks q and steps are the same.
 */
static void priced_as_trained(const char *request, int copies, uint64_t want_ntr,
                              uint64_t want_steps)
{
    struct dcms_arena *a = dcms_arena_new(1 << 16);
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, a);
    json_t *b = parse(request);
    struct tr_request rq;
    CHECK(tr_request_from_json(b, &rq, &ei), ei);
    assert_true(rq.dp);
    uint64_t ntr = 0, steps = 0;
    double q = 0;
    tr_dp_schedule(rq.config, 569u * (uint64_t)copies, &ntr, &q, &steps);
    assert_int_equal(ntr, want_ntr);
    assert_int_equal(steps, want_steps);

    char *text = dcms_json_dump(rq.config, NULL);
    struct dcms_trainer_job job;
    char err[512] = "";
    if (dcms_trainer_job_from_json(text, strlen(text), &job, err, sizeof(err)))
        fail_msg("the trainer refuses the config: %s", err);
    size_t len = 0;
    char *csv = csv_copies(copies, &len);
    struct dcms_trainer_data d;
    struct dcms_trainer_model m;
    struct dcms_trainer_metrics met;
    assert_int_equal(dcms_trainer_data_parse(csv, len, &job.cfg, &d, err, sizeof(err)), 0);
    assert_int_equal(d.rows, 569u * (size_t)copies);
    uint64_t seed = 42;
    struct dcms_trainer_run run = {.random = test_random, .random_ctx = &seed};
    if (dcms_trainer_train(&job.cfg, &d, &run, &m, &met, err, sizeof(err)))
        fail_msg("train: %s", err);
    assert_int_equal(m.dp_steps, steps);
    assert_true(m.dp_q == q);
    assert_int_equal(met.rows, 569u * (size_t)copies - ntr);

    dcms_trainer_model_free(&m);
    dcms_trainer_metrics_free(&met);
    dcms_trainer_data_free(&d);
    dcms_trainer_job_release(&job);
    free(csv);
    free(text);
    json_decref(rq.config);
    json_decref(b);
    dcms_arena_free(a);
}

#define DS1 "\"01a2476c-7fe3-7245-90ae-af8a13f3887d\""
#define DS2 "\"01a2476c-7fe3-7245-90ae-af8a13f3887e\""

static void schedule_modulo(void **state)
{
    (void)state;
    /* 569 rows, every fifth held out from row 4: 113 held out, 456 train; ceil(456/128) = 4 */
    priced_as_trained(
        "{\"datasets\":[" DS1 "],\"label\":\"diagnosis\",\"model\":"
        "\"logistic_regression\",\"epochs\":10,\"batch_size\":128,\"learning_rate\":1,"
        "\"split\":{\"method\":\"modulo\",\"folds\":5,\"holdout_fold\":4},"
        "\"dp\":{\"noise_multiplier\":1.5,\"max_grad_norm\":1}}",
        1, 456, 40);
}

static void schedule_defaults(void **state)
{
    (void)state;
    /* no split (modulo 5/4), no epochs (100): ceil(456/100) = 5 steps an epoch */
    priced_as_trained("{\"datasets\":[" DS1 "],\"label\":\"diagnosis\",\"model\":"
                      "\"logistic_regression\",\"batch_size\":100,"
                      "\"dp\":{\"noise_multiplier\":2,\"max_grad_norm\":1}}",
                      1, 456, 500);
}

static void schedule_batch_above_rows(void **state)
{
    (void)state;
    /* modulo 3/0 holds out rows 0, 3, ..., 567: 190; the batch is capped at 379, q = 1 */
    priced_as_trained("{\"datasets\":[" DS1 "],\"label\":\"diagnosis\",\"model\":"
                      "\"logistic_regression\",\"epochs\":3,\"batch_size\":5000,"
                      "\"split\":{\"method\":\"modulo\",\"folds\":3,\"holdout_fold\":0},"
                      "\"dp\":{\"noise_multiplier\":2,\"max_grad_norm\":1}}",
                      1, 379, 3);
}

static void schedule_random_two_datasets(void **state)
{
    (void)state;
    /* the random split over 1138 rows: count them with the documented formula */
    struct dcms_trainer_config c;
    dcms_trainer_config_defaults(&c);
    uint64_t ntr = 0;
    for (uint64_t r = 0; r < 1138; r++) {
        uint64_t z = 7 + (r + 1) * 0x9e3779b97f4a7c15ull;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        ntr += !((double)(z >> 11) * 0x1.0p-53 < 0.05);
    }
    assert_true(ntr > 1000 && ntr < 1138);
    uint64_t per_epoch = (ntr + 49) / 50;
    priced_as_trained("{\"datasets\":[" DS1 "," DS2 "],\"label\":\"diagnosis\",\"model\":"
                      "\"logistic_regression\",\"epochs\":2,\"batch_size\":50,"
                      "\"split\":{\"method\":\"random\",\"fraction\":0.05,\"seed\":7},"
                      "\"dp\":{\"noise_multiplier\":2,\"max_grad_norm\":1}}",
                      2, ntr, 2 * per_epoch);
}

static void dp_member_decoding(void **state)
{
    (void)state;
    struct dcms_arena *a = dcms_arena_new(1 << 16);
    struct dcms_errinfo ei;
    struct tr_request rq;
    /* a target epsilon instead of sigma */
    dcms_errinfo_init(&ei, a);
    json_t *b = parse("{\"datasets\":[" DS1 "],\"label\":\"y\",\"model\":\"logistic_regression\","
                      "\"batch_size\":64,\"dp\":{\"target_epsilon\":1.5,\"max_grad_norm\":0.5}}");
    CHECK(tr_request_from_json(b, &rq, &ei), ei);
    assert_true(rq.dp);
    assert_true(rq.dp_target_epsilon == 1.5);
    assert_true(rq.dp_sigma == 0);
    assert_true(rq.dp_max_grad_norm == 0.5);
    json_decref(rq.config);
    json_decref(b);
    /* no dp: not a DP request */
    dcms_errinfo_init(&ei, a);
    b = parse("{\"datasets\":[" DS1 "],\"label\":\"y\",\"model\":\"logistic_regression\"}");
    CHECK(tr_request_from_json(b, &rq, &ei), ei);
    assert_false(rq.dp);
    json_decref(rq.config);
    json_decref(b);

    static const struct {
        const char *dp, *field;
    } bad[] = {
        {"{\"noise_multiplier\":1,\"target_epsilon\":1,\"max_grad_norm\":1}", "dp"},
        {"{\"max_grad_norm\":1}", "dp"},
        {"{\"target_epsilon\":0,\"max_grad_norm\":1}", "dp.target_epsilon"},
        {"{\"target_epsilon\":100.5,\"max_grad_norm\":1}", "dp.target_epsilon"},
        {"{\"target_epsilon\":\"1\",\"max_grad_norm\":1}", "dp.target_epsilon"},
        {"{\"noise_multiplier\":-1,\"max_grad_norm\":1}", "dp.noise_multiplier"},
        {"{\"target_epsilon\":1}", "dp.max_grad_norm"},
        {"{\"target_epsilon\":1,\"max_grad_norm\":1,\"delta\":1e-5}", "dp.delta"},
        {"[1]", "dp"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char body[512];
        snprintf(body, sizeof(body),
                 "{\"datasets\":[" DS1 "],\"label\":\"y\",\"model\":\"logistic_regression\","
                 "\"batch_size\":64,\"dp\":%s}",
                 bad[i].dp);
        dcms_errinfo_init(&ei, a);
        b = parse(body);
        assert_int_equal(tr_request_from_json(b, &rq, &ei), DCMS_ERR_VALIDATION);
        if (!has_field(&ei, bad[i].field))
            fail_msg("dp %s: no problem on %s", bad[i].dp, bad[i].field);
        json_decref(b);
    }
    /* dp samples batches: batch_size is required */
    dcms_errinfo_init(&ei, a);
    b = parse("{\"datasets\":[" DS1 "],\"label\":\"y\",\"model\":\"logistic_regression\","
              "\"dp\":{\"target_epsilon\":1,\"max_grad_norm\":1}}");
    assert_int_equal(tr_request_from_json(b, &rq, &ei), DCMS_ERR_VALIDATION);
    assert_true(has_field(&ei, "batch_size"));
    json_decref(b);
    /* the trainer requires the random split's seed, so the request does too */
    dcms_errinfo_init(&ei, a);
    b = parse("{\"datasets\":[" DS1 "],\"label\":\"y\",\"model\":\"logistic_regression\","
              "\"split\":{\"method\":\"random\",\"fraction\":0.2}}");
    assert_int_equal(tr_request_from_json(b, &rq, &ei), DCMS_ERR_VALIDATION);
    assert_true(has_field(&ei, "split.seed"));
    json_decref(b);
    dcms_arena_free(a);
}

static void privacy_record_round_trip(void **state)
{
    (void)state;
    struct tr_dp dp = {.on = true,
                       .budgeted = true,
                       .sigma = 7.4321,
                       .max_grad_norm = 1,
                       .q = 128.0 / 456.0,
                       .steps = 40,
                       .delta = 1e-5,
                       .epsilon = 0.99999};
    json_t *j = tr_dp_json(&dp);
    assert_non_null(j);
    struct tr_dp back;
    assert_true(tr_dp_from_json(j, &back));
    assert_true(back.on && back.budgeted);
    assert_true(back.sigma == dp.sigma && back.q == dp.q && back.max_grad_norm == 1);
    assert_true(back.delta == dp.delta && back.epsilon == dp.epsilon);
    assert_int_equal(back.steps, 40);
    json_decref(j);
    /* DP without a budget: no delta, no epsilon */
    dp.budgeted = false;
    j = tr_dp_json(&dp);
    assert_true(json_is_null(json_object_get(j, "delta")));
    assert_true(json_is_null(json_object_get(j, "epsilon")));
    assert_true(tr_dp_from_json(j, &back));
    assert_false(back.budgeted);
    json_decref(j);
    /* not DP: null */
    dp.on = false;
    j = tr_dp_json(&dp);
    assert_true(json_is_null(j));
    assert_false(tr_dp_from_json(j, &back));
    json_decref(j);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(accepted_config_passes_through),
    cmocka_unit_test(every_problem_with_its_path),
    cmocka_unit_test(not_an_object),
    cmocka_unit_test(schedule_modulo),
    cmocka_unit_test(schedule_defaults),
    cmocka_unit_test(schedule_batch_above_rows),
    cmocka_unit_test(schedule_random_two_datasets),
    cmocka_unit_test(dp_member_decoding),
    cmocka_unit_test(privacy_record_round_trip),
};

DCMS_TEST_MAIN(tests)
