/*
 * The small shared pieces every service uses: the "only these members" JSON
 * check (src/core/json.c), If-Match against a version (src/core/etag.c) and
 * the periodic-job loop (src/core/periodic.c).
 */
#include <stdatomic.h>
#include <unistd.h>

#include "testutil.h"

#include "dcms/arena.h"
#include "dcms/etag.h"
#include "dcms/json.h"
#include "dcms/periodic.h"

static void only_members(void **state)
{
    (void)state;
    struct dcms_arena *a = dcms_arena_new(1 << 16);
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, a);
    static const char *const allowed[] = {"name", "days", NULL};
    json_t *ok = json_pack("{s:s, s:i}", "name", "x", "days", 3);
    assert_false(dcms_json_only_members(ok, "terms.retention.", allowed, &ei));
    assert_int_equal(ei.ndetails, 0);
    json_t *bad = json_pack("{s:s, s:i, s:b}", "name", "x", "dayz", 3, "extra", 1);
    assert_true(dcms_json_only_members(bad, "terms.retention.", allowed, &ei));
    assert_int_equal(ei.code, DCMS_ERR_VALIDATION);
    assert_int_equal(ei.ndetails, 2); /* every unknown member, not only the first */
    assert_string_equal(ei.details[0].field, "terms.retention.dayz");
    assert_string_equal(ei.details[0].problem, "is not a known field");
    assert_string_equal(ei.details[1].field, "terms.retention.extra");
    /* A long member name is cut, never copied past its end. */
    char longname[400];
    memset(longname, 'k', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    json_t *lng = json_object();
    json_object_set_new(lng, longname, json_true());
    dcms_errinfo_init(&ei, a);
    assert_true(dcms_json_only_members(lng, "", allowed, &ei));
    assert_int_equal(strlen(ei.details[0].field), 200);
    json_decref(ok);
    json_decref(bad);
    json_decref(lng);
    dcms_arena_free(a);
}

static void etag_if_match(void **state)
{
    (void)state;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(dcms_etag_check(NULL, "3", &ei), DCMS_OK);
    assert_int_equal(dcms_etag_check("\"3\"", "3", &ei), DCMS_OK);
    assert_int_equal(dcms_etag_check("*", "3", &ei), DCMS_OK);
    assert_int_equal(dcms_etag_check(" * ", "3", &ei), DCMS_OK);
    assert_int_equal(dcms_etag_check("\"1\", \"3\"", "3", &ei), DCMS_OK);
    assert_int_equal(dcms_etag_check("\"2\"", "3", &ei), DCMS_ERR_PRECONDITION_FAILED);
    assert_int_equal(dcms_etag_check("W/\"3\"", "3", &ei), DCMS_ERR_PRECONDITION_FAILED);
    assert_int_equal(dcms_etag_check("3", "3", &ei), DCMS_ERR_PRECONDITION_FAILED);
    assert_int_equal(dcms_etag_check("\"33\"", "3", &ei), DCMS_ERR_PRECONDITION_FAILED);
    assert_int_equal(dcms_etag_check("", "3", &ei), DCMS_ERR_PRECONDITION_FAILED);
}

static atomic_int runs;
static void count_run(void *ctx)
{
    (void)ctx;
    atomic_fetch_add(&runs, 1);
}

static void periodic_runs_kicks_and_stops(void **state)
{
    (void)state;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_periodic *p;
    atomic_store(&runs, 0);
    /* A long period: nothing runs until kicked. */
    assert_int_equal(dcms_periodic_start("test", 3600 * 1000, count_run, NULL, &p, &ei), DCMS_OK);
    usleep(50 * 1000);
    assert_int_equal(atomic_load(&runs), 0);
    dcms_periodic_kick(p);
    for (int i = 0; i < 200 && atomic_load(&runs) == 0; i++)
        usleep(5 * 1000);
    assert_int_equal(atomic_load(&runs), 1);
    dcms_periodic_stop(p); /* returns promptly although the period is an hour */
    /* A short period runs repeatedly, and nothing runs after stop. */
    atomic_store(&runs, 0);
    assert_int_equal(dcms_periodic_start("test", 10, count_run, NULL, &p, &ei), DCMS_OK);
    for (int i = 0; i < 400 && atomic_load(&runs) < 3; i++)
        usleep(5 * 1000);
    dcms_periodic_stop(p);
    int n = atomic_load(&runs);
    assert_true(n >= 3);
    usleep(50 * 1000);
    assert_int_equal(atomic_load(&runs), n);
    assert_int_equal(dcms_periodic_start("test", 0, count_run, NULL, &p, &ei), DCMS_ERR_INTERNAL);
    assert_null(p);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(only_members),
    cmocka_unit_test(etag_if_match),
    cmocka_unit_test(periodic_runs_kicks_and_stops),
};

DCMS_TEST_MAIN(tests)
