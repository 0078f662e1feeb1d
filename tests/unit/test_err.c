/*
 * The error table and record (src/core/err.c, err.def): every code has a
 * slug, a status and a message; dcms_err_set formats; dcms_err_field
 * collects details in an arena (capped) and drops them without one. Also
 * the JSON parse errors clients see (src/core/json.c).
 */
#include "testutil.h"

#include "dcms/arena.h"
#include "dcms/json.h"

static void every_code_described(void **state)
{
    (void)state;
    for (int i = 0; i < DCMS_ERR__COUNT; i++) {
        enum dcms_err e = (enum dcms_err)i;
        const char *slug = dcms_err_slug(e), *msg = dcms_err_str(e);
        unsigned status = dcms_err_http(e);
        assert_non_null(slug);
        assert_non_null(msg);
        assert_true(strlen(slug) > 0);
        assert_true(strlen(msg) > 0);
        for (const char *p = slug; *p; p++)
            if (!((*p >= 'a' && *p <= 'z') || *p == '_'))
                fail_msg("slug \"%s\" is not lowercase snake_case", slug);
        /* Messages: lowercase start, no trailing period. */
        if (msg[0] >= 'A' && msg[0] <= 'Z')
            fail_msg("message \"%s\" starts uppercase", msg);
        if (msg[strlen(msg) - 1] == '.')
            fail_msg("message \"%s\" ends with a period", msg);
        if (e == DCMS_OK)
            assert_int_equal(status, 200);
        else if (status < 400 || status > 599)
            fail_msg("%s has status %u", slug, status);
        for (int j = 0; j < i; j++)
            if (strcmp(dcms_err_slug((enum dcms_err)j), slug) == 0)
                fail_msg("slug %s used twice", slug);
    }
    assert_int_equal(DCMS_OK, 0);
    assert_string_equal(dcms_err_slug(DCMS_ERR_NOT_FOUND), "not_found");
    assert_int_equal(dcms_err_http(DCMS_ERR_CONFLICT), 409);
    assert_int_equal(dcms_err_http(DCMS_ERR_UNAVAILABLE), 503);
    assert_int_equal(dcms_err_http(DCMS_ERR_VALIDATION), 422);
    /* Out-of-range values still give something safe. */
    assert_string_equal(dcms_err_slug(DCMS_ERR__COUNT), "internal_error");
    assert_int_equal(dcms_err_http(DCMS_ERR__COUNT), 500);
    assert_non_null(dcms_err_str(DCMS_ERR__COUNT));
    assert_string_equal(dcms_err_slug((enum dcms_err)(-1)), "internal_error");
    assert_int_equal(dcms_err_http((enum dcms_err)(-1)), 500);
}

static void err_set_formats(void **state)
{
    (void)state;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(ei.code, DCMS_OK);
    assert_string_equal(ei.message, "");
    assert_int_equal(dcms_err_set(&ei, DCMS_ERR_NOT_FOUND, "contract %s not found", "c-1"),
                     DCMS_ERR_NOT_FOUND);
    assert_int_equal(ei.code, DCMS_ERR_NOT_FOUND);
    assert_string_equal(ei.message, "contract c-1 not found");

    /* NULL format: the default message. */
    assert_int_equal(dcms_err_set(&ei, DCMS_ERR_RATE_LIMITED, NULL), DCMS_ERR_RATE_LIMITED);
    assert_string_equal(ei.message, dcms_err_str(DCMS_ERR_RATE_LIMITED));

    /* Long messages are cut, still NUL-terminated. */
    char longs[600];
    memset(longs, 'x', sizeof(longs) - 1);
    longs[sizeof(longs) - 1] = '\0';
    dcms_err_set(&ei, DCMS_ERR_BAD_REQUEST, "%s", longs);
    assert_int_equal(strlen(ei.message), sizeof(ei.message) - 1);

    /* A NULL record only passes the code through. */
    assert_int_equal(dcms_err_set(NULL, DCMS_ERR_CONFLICT, "x %d", 1), DCMS_ERR_CONFLICT);
    assert_int_equal(dcms_err_field(NULL, "a", "b"), DCMS_ERR_VALIDATION);
}

static void err_field_collects(void **state)
{
    (void)state;
    struct dcms_arena *a = dcms_arena_new(0);
    assert_non_null(a);
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, a);
    assert_int_equal(dcms_err_field(&ei, "title", "must not be empty"), DCMS_ERR_VALIDATION);
    assert_int_equal(dcms_err_field(&ei, "terms.retention.days", "must be at most %d", 3650),
                     DCMS_ERR_VALIDATION);
    assert_int_equal(ei.code, DCMS_ERR_VALIDATION);
    assert_string_equal(ei.message, dcms_err_str(DCMS_ERR_VALIDATION));
    assert_int_equal(ei.ndetails, 2);
    assert_string_equal(ei.details[0].field, "title");
    assert_string_equal(ei.details[0].problem, "must not be empty");
    assert_string_equal(ei.details[1].field, "terms.retention.days");
    assert_string_equal(ei.details[1].problem, "must be at most 3650");

    /* Capped at DCMS_ERR_MAX_DETAILS. */
    for (int i = 0; i < DCMS_ERR_MAX_DETAILS + 10; i++)
        assert_int_equal(dcms_err_field(&ei, "items", "bad item %d", i), DCMS_ERR_VALIDATION);
    assert_int_equal(ei.ndetails, DCMS_ERR_MAX_DETAILS);
    assert_string_equal(ei.details[DCMS_ERR_MAX_DETAILS - 1].problem, "bad item 61");
    dcms_arena_free(a);

    /* An earlier error is not overwritten by a field problem. */
    a = dcms_arena_new(0);
    assert_non_null(a);
    dcms_errinfo_init(&ei, a);
    dcms_err_set(&ei, DCMS_ERR_CONFLICT, "already signed");
    assert_int_equal(dcms_err_field(&ei, "x", "y"), DCMS_ERR_VALIDATION);
    assert_int_equal(ei.code, DCMS_ERR_CONFLICT);
    assert_string_equal(ei.message, "already signed");
    assert_int_equal(ei.ndetails, 1);
    dcms_arena_free(a);
}

static void err_field_without_arena(void **state)
{
    (void)state;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(dcms_err_field(&ei, "title", "must not be empty"), DCMS_ERR_VALIDATION);
    assert_int_equal(ei.code, DCMS_ERR_VALIDATION);
    assert_int_equal(ei.ndetails, 0);
    assert_null(ei.details);

    /* An arena at its cap drops details too, but the code is still set. */
    struct dcms_arena *a = dcms_arena_new(64);
    assert_non_null(a);
    dcms_errinfo_init(&ei, a);
    assert_int_equal(dcms_err_field(&ei, "title", "too long"), DCMS_ERR_VALIDATION);
    assert_int_equal(ei.code, DCMS_ERR_VALIDATION);
    assert_int_equal(ei.ndetails, 0);
    dcms_arena_free(a);
}

static enum dcms_err parse(const char *text, struct dcms_errinfo *ei)
{
    json_t *v = NULL;
    dcms_errinfo_init(ei, NULL);
    enum dcms_err e = dcms_json_parse(dcms_str_from(text), 0, &v, ei);
    if (e)
        assert_null(v);
    json_decref(v);
    return e;
}

static void json_errors_positioned(void **state)
{
    (void)state;
    struct dcms_errinfo ei;
    assert_int_equal(parse("{\"a\": 1,\n  \"b\": }", &ei), DCMS_ERR_MALFORMED_JSON);
    assert_int_equal(ei.code, DCMS_ERR_MALFORMED_JSON);
    if (!strstr(ei.message, "line 2") || !strstr(ei.message, "column 8") ||
        !strstr(ei.message, "byte 17"))
        fail_msg("message lacks the position: %s", ei.message);

    assert_int_equal(parse("[1, 2", &ei), DCMS_ERR_MALFORMED_JSON);
    if (!strstr(ei.message, "line 1") || !strstr(ei.message, "column") ||
        !strstr(ei.message, "byte"))
        fail_msg("message lacks the position: %s", ei.message);

    /* Anything after the value is refused. */
    assert_int_equal(parse("{} x", &ei), DCMS_ERR_MALFORMED_JSON);
    assert_int_equal(parse("{}{}", &ei), DCMS_ERR_MALFORMED_JSON);

    /* The text need not be NUL-terminated: only `len` bytes are read. */
    json_t *v = NULL;
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(dcms_json_parse((struct dcms_str){"[1]garbage", 3}, 0, &v, &ei), DCMS_OK);
    assert_true(json_is_array(v));
    json_decref(v);

    /* Scalars are values too. */
    assert_int_equal(parse("42", &ei), DCMS_OK);
    assert_int_equal(parse("\"s\"", &ei), DCMS_OK);
}

static void json_duplicate_keys(void **state)
{
    (void)state;
    struct dcms_errinfo ei;
    assert_int_equal(parse("{\"a\": 1, \"a\": 2}", &ei), DCMS_ERR_MALFORMED_JSON);
    assert_non_null(strstr(ei.message, "duplicate"));
    assert_int_equal(parse("{\"x\": {\"b\": 1, \"b\": 1}}", &ei), DCMS_ERR_MALFORMED_JSON);
    assert_int_equal(parse("{\"a\": 1, \"b\": 2}", &ei), DCMS_OK);

    /* Even when the caller passes its own flags. */
    json_t *v = NULL;
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(
        dcms_json_parse(dcms_str_from("{\"a\": 1, \"a\": 2}"), JSON_DECODE_INT_AS_REAL, &v, &ei),
        DCMS_ERR_MALFORMED_JSON);
    assert_null(v);
}

static void json_empty_refused(void **state)
{
    (void)state;
    struct dcms_errinfo ei;
    json_t *v = (json_t *)&ei; /* must be reset to NULL */
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(dcms_json_parse((struct dcms_str){NULL, 0}, 0, &v, &ei),
                     DCMS_ERR_MALFORMED_JSON);
    assert_null(v);
    assert_non_null(strstr(ei.message, "empty"));
    assert_int_equal(parse("", &ei), DCMS_ERR_MALFORMED_JSON);
    assert_int_equal(parse("   \n", &ei), DCMS_ERR_MALFORMED_JSON);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(every_code_described),   cmocka_unit_test(err_set_formats),
    cmocka_unit_test(err_field_collects),     cmocka_unit_test(err_field_without_arena),
    cmocka_unit_test(json_errors_positioned), cmocka_unit_test(json_duplicate_keys),
    cmocka_unit_test(json_empty_refused),
};

DCMS_TEST_MAIN(tests)
