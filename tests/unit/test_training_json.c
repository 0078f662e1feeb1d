/*
 * The training request decoder (src/training/training_json.c): what it
 * accepts becomes the trainer's config unchanged but for the datasets, and
 * what it refuses is reported all at once, each problem on its JSON path.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"

#include "dcms/arena.h"
#include "dcms/json.h"
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

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(accepted_config_passes_through),
    cmocka_unit_test(every_problem_with_its_path),
    cmocka_unit_test(not_an_object),
};

DCMS_TEST_MAIN(tests)
