/*
 * Time and identifiers (src/core/clock.c): the one RFC 3339 format dcms
 * writes, the parser (offsets, fractions, calendar checks, refusals), and
 * UUIDv7 layout, uniqueness and time order.
 */
#include "testutil.h"

#include <time.h>

#include "dcms/clock.h"
#include "dcms/uuid.h"

static void assert_format(int64_t us, const char *want)
{
    char out[DCMS_TIME_STRLEN];
    memset(out, 'X', sizeof(out));
    dcms_time_format(us, out);
    assert_string_equal(out, want);
}

static void format_known(void **state)
{
    (void)state;
    assert_format(0, "1970-01-01T00:00:00.000000Z");
    assert_format(1, "1970-01-01T00:00:00.000001Z");
    assert_format(999999, "1970-01-01T00:00:00.999999Z");
    assert_format(1795464859123456, "2026-11-23T20:14:19.123456Z");
    assert_format(951782400000000, "2000-02-29T00:00:00.000000Z");
    assert_format(253402300799999999, "9999-12-31T23:59:59.999999Z");
    assert_int_equal(strlen("2026-11-23T20:14:19.123456Z") + 1, DCMS_TIME_STRLEN);
}

static void format_negative(void **state)
{
    (void)state;
    /* Before the epoch the fraction still counts forward from the second. */
    assert_format(-1, "1969-12-31T23:59:59.999999Z");
    assert_format(-1000000, "1969-12-31T23:59:59.000000Z");
    assert_format(-1500000, "1969-12-31T23:59:58.500000Z");
    assert_format(-86400000000, "1969-12-31T00:00:00.000000Z");
}

static int64_t parse_ok(const char *s)
{
    int64_t us = 0x7eadbeef;
    enum dcms_err e = dcms_time_parse(s, &us);
    if (e)
        fail_msg("dcms_time_parse(\"%s\") failed: %s", s, dcms_err_slug(e));
    return us;
}

static void parse_refused(const char *s)
{
    int64_t us = 0;
    if (dcms_time_parse(s, &us) != DCMS_ERR_BAD_REQUEST)
        fail_msg("dcms_time_parse(\"%s\") accepted it", s);
}

static void parse_round_trip(void **state)
{
    (void)state;
    static const int64_t values[] = {0,
                                     1,
                                     -1,
                                     999999,
                                     -1500000,
                                     1795464859123456,
                                     951782400000000,
                                     4102444799999999,
                                     -2208988800000000, /* 1900-01-01 */
                                     253402300799999999};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        char s[DCMS_TIME_STRLEN];
        dcms_time_format(values[i], s);
        assert_int_equal(parse_ok(s), values[i]);
    }
    /* Now, and a walk over many days and fractions. */
    for (int64_t us = -5000000000000000; us < 5000000000000000; us += 123456789012345) {
        char s[DCMS_TIME_STRLEN];
        dcms_time_format(us, s);
        assert_int_equal(parse_ok(s), us);
    }
    int64_t now = dcms_clock_now_us();
    char s[DCMS_TIME_STRLEN];
    dcms_time_format(now, s);
    assert_int_equal(parse_ok(s), now);

    assert_int_equal(parse_ok("2026-11-23T20:14:19.123456Z"), 1795464859123456);
    assert_int_equal(parse_ok("2026-11-23t20:14:19.123456z"), 1795464859123456);
}

static void parse_offsets(void **state)
{
    (void)state;
    int64_t utc = parse_ok("2026-11-23T20:14:19Z");
    assert_int_equal(utc, 1795464859000000);
    assert_int_equal(parse_ok("2026-11-23T22:14:19+02:00"), utc);
    assert_int_equal(parse_ok("2026-11-23T14:44:19-05:30"), utc);
    assert_int_equal(parse_ok("2026-11-23T20:14:19+00:00"), utc);
    assert_int_equal(parse_ok("2026-11-23T20:14:19-00:00"), utc);
    /* An offset that crosses midnight and the year. */
    assert_int_equal(parse_ok("2027-01-01T01:00:00+02:00"), parse_ok("2026-12-31T23:00:00Z"));
    assert_int_equal(parse_ok("2026-11-23T22:14:19.5+02:00"), utc + 500000);
}

static void parse_fractions(void **state)
{
    (void)state;
    int64_t base = 1795464859000000;
    static const struct {
        const char *s;
        int64_t frac;
    } cases[] = {
        {"2026-11-23T20:14:19.1Z", 100000},
        {"2026-11-23T20:14:19.12Z", 120000},
        {"2026-11-23T20:14:19.123Z", 123000},
        {"2026-11-23T20:14:19.1234Z", 123400},
        {"2026-11-23T20:14:19.12345Z", 123450},
        {"2026-11-23T20:14:19.123456Z", 123456},
        {"2026-11-23T20:14:19.1234567Z", 123456},
        {"2026-11-23T20:14:19.12345678Z", 123456},
        {"2026-11-23T20:14:19.123456789Z", 123456},
        {"2026-11-23T20:14:19.000001Z", 1},
        {"2026-11-23T20:14:19.0Z", 0},
        {"2026-11-23T20:14:19.999999999Z", 999999},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_int_equal(parse_ok(cases[i].s), base + cases[i].frac);
    parse_refused("2026-11-23T20:14:19.1234567890Z"); /* 10 digits */
    parse_refused("2026-11-23T20:14:19.Z");           /* none */
}

static void parse_refusals(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "2023-02-30T00:00:00Z", /* no Feb 30 */
        "2023-02-29T00:00:00Z", /* 2023 is not a leap year */
        "1900-02-29T00:00:00Z", /* nor is 1900 */
        "2026-04-31T00:00:00Z",
        "2026-13-01T00:00:00Z",
        "2026-00-01T00:00:00Z",
        "2026-01-00T00:00:00Z",
        "2026-01-32T00:00:00Z",
        "2026-11-23T24:00:00Z",
        "2026-11-23T20:60:00Z",
        "2026-11-23T20:14:61Z",
        "2026-11-23T20:14:19",      /* missing zone */
        "2026-11-23T20:14:19.123",  /* missing zone after a fraction */
        "2026-11-23T20:14:19Zjunk", /* junk after */
        "2026-11-23T20:14:19Z ",    /* even a space */
        "2026-11-23T20:14:19+02:00x",
        "2026-11-23T20:14:19+02",   /* offset without minutes */
        "2026-11-23T20:14:19+0200", /* basic format */
        "2026-11-23T20:14:19+24:00",
        "2026-11-23T20:14:19+02:60",
        "2026-11-23 20:14:19Z", /* space instead of T */
        "2026-11-23",           /* date only */
        "26-11-23T20:14:19Z",
        "2026-1-23T20:14:19Z",
        "2026-11-23T20:14Z",
        "+2026-11-23T20:14:19Z",
        "2026-11-23T20:14:19.+00:00",
        "abcd-ef-ghTij:kl:mnZ",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        parse_refused(bad[i]);
    /* The calendar edges that are real. */
    parse_ok("2024-02-29T00:00:00Z");
    parse_ok("2000-02-29T00:00:00Z");
    parse_ok("2026-04-30T23:59:59Z");
    parse_ok("2026-12-31T23:59:59.999999Z");
}

static void assert_uuid_layout(const char *u)
{
    assert_int_equal(strlen(u), 36);
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            assert_int_equal(u[i], '-');
        } else if (!((u[i] >= '0' && u[i] <= '9') || (u[i] >= 'a' && u[i] <= 'f'))) {
            fail_msg("%s: not lowercase hex at %d", u, i);
        }
    }
    assert_int_equal(u[14], '7'); /* version */
    if (!strchr("89ab", u[19]))   /* variant 10xx */
        fail_msg("%s: variant nibble %c", u, u[19]);
    assert_true(dcms_uuid_valid(u));
}

static void uuid_v7_format(void **state)
{
    (void)state;
    int64_t before_ms = dcms_clock_now_us() / 1000;
    char u[DCMS_UUID_STRLEN];
    dcms_uuid_v7(u);
    int64_t after_ms = dcms_clock_now_us() / 1000;
    assert_uuid_layout(u);

    /* The first 48 bits are the Unix time in milliseconds. */
    char hex[13];
    memcpy(hex, u, 8);
    memcpy(hex + 8, u + 9, 4);
    hex[12] = '\0';
    int64_t ms = (int64_t)strtoll(hex, NULL, 16);
    assert_true(ms >= before_ms && ms <= after_ms);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

static void uuid_v7_unique(void **state)
{
    (void)state;
    enum { N = 10000 };
    char(*ids)[DCMS_UUID_STRLEN] = malloc(N * sizeof(*ids));
    assert_non_null(ids);
    for (size_t i = 0; i < N; i++) {
        dcms_uuid_v7(ids[i]);
        assert_uuid_layout(ids[i]);
    }
    qsort(ids, N, sizeof(*ids), cmp_str);
    for (size_t i = 1; i < N; i++)
        if (strcmp(ids[i - 1], ids[i]) == 0)
            fail_msg("duplicate id %s", ids[i]);
    free(ids);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {0, ms * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static void uuid_v7_time_ordered(void **state)
{
    (void)state;
    char prev[DCMS_UUID_STRLEN], next[DCMS_UUID_STRLEN];
    dcms_uuid_v7(prev);
    for (int i = 0; i < 20; i++) {
        sleep_ms(2);
        dcms_uuid_v7(next);
        if (strcmp(prev, next) >= 0)
            fail_msg("%s made after %s sorts before it", next, prev);
        memcpy(prev, next, sizeof(prev));
    }
}

/* Within one millisecond too: ids made one after another sort in that order. */
static void uuid_v7_strictly_increasing(void **state)
{
    (void)state;
    char prev[DCMS_UUID_STRLEN], next[DCMS_UUID_STRLEN];
    dcms_uuid_v7(prev);
    for (int i = 0; i < 20000; i++) {
        dcms_uuid_v7(next);
        assert_true(dcms_uuid_valid(next));
        assert_int_equal(next[14], '7');
        if (strcmp(prev, next) >= 0)
            fail_msg("%s made after %s sorts before it", next, prev);
        memcpy(prev, next, sizeof(prev));
    }
}

static void uuid_valid(void **state)
{
    (void)state;
    assert_true(dcms_uuid_valid("0191f3a2-7b4c-7d1e-8f00-123456789abc"));
    assert_true(dcms_uuid_valid("0191F3A2-7B4C-7D1E-8F00-123456789ABC"));
    assert_true(dcms_uuid_valid("00000000-0000-0000-0000-000000000000"));
    assert_false(dcms_uuid_valid(NULL));
    assert_false(dcms_uuid_valid(""));
    assert_false(dcms_uuid_valid("0191f3a2-7b4c-7d1e-8f00-123456789ab"));   /* short */
    assert_false(dcms_uuid_valid("0191f3a2-7b4c-7d1e-8f00-123456789abcd")); /* long */
    assert_false(dcms_uuid_valid("0191f3a2-7b4c-7d1e-8f00-123456789abg"));  /* not hex */
    assert_false(dcms_uuid_valid("0191f3a27b4c-7d1e-8f00-123456789abcd"));  /* dash moved */
    assert_false(dcms_uuid_valid("0191f3a2_7b4c_7d1e_8f00_123456789abc"));
    assert_false(dcms_uuid_valid("{191f3a2-7b4c-7d1e-8f00-123456789ab}"));
    assert_false(dcms_uuid_valid("0191f3a2-7b4c-7d1e-8f00-123456789ab "));
    assert_false(dcms_uuid_valid("0191f3a27b4c7d1e8f00123456789abc"));
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(format_known),         cmocka_unit_test(format_negative),
    cmocka_unit_test(parse_round_trip),     cmocka_unit_test(parse_offsets),
    cmocka_unit_test(parse_fractions),      cmocka_unit_test(parse_refusals),
    cmocka_unit_test(uuid_v7_format),       cmocka_unit_test(uuid_v7_unique),
    cmocka_unit_test(uuid_v7_time_ordered), cmocka_unit_test(uuid_v7_strictly_increasing),
    cmocka_unit_test(uuid_valid),
};

DCMS_TEST_MAIN(tests)
