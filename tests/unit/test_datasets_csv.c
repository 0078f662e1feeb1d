/*
 * The streaming CSV validator (src/datasets/datasets_csv.c): the one-pass
 * number check against the strtod/strtoll reference on a large set of
 * generated values, and the validator itself fed the same file in every
 * chunking, so the bulk copy of ordinary runs cannot change a verdict.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "datasets/datasets_int.h"

static const char *const fixed[] = {
    "0",
    "-0",
    "+1",
    "1.",
    ".5",
    "+.5",
    "-.5e3",
    "1e308",
    "1e309",
    "1e-307",
    "1e-400",
    "2.5E+10",
    "1e",
    "1e+",
    "e5",
    ".",
    "-",
    "+",
    "",
    " 1",
    "1 ",
    "\t1",
    "0x10",
    "0x1p3",
    "inf",
    "nan",
    "Infinity",
    "1..2",
    "1.2.3",
    "1e5.5",
    "--1",
    "+-1",
    "12a",
    "1,5",
    "1e40",
    "1e41",
    "1e-40",
    "1e-41",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "123456789012345678",
    "1234567890123456789",
    "00000000000000000000001",
};

/* One random string over the characters numbers are made of (and a few others). */
static void random_value(char *out, size_t cap, unsigned *seed)
{
    static const char alphabet[] = "0123456789012345678901234567890123456789+-..eEx ";
    size_t n = (size_t)(rand_r(seed) % 24);
    if (n >= cap)
        n = cap - 1;
    for (size_t i = 0; i < n; i++)
        out[i] = alphabet[rand_r(seed) % (sizeof(alphabet) - 1)];
    out[n] = '\0';
}

static void number_check_agrees_with_libc(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        for (int integer = 0; integer <= 1; integer++) {
            bool fast = ds_csv_number_ok(fixed[i], strlen(fixed[i]), integer);
            bool ref = ds_csv_number_ok_libc(fixed[i], integer);
            if (fast != ref)
                fail_msg("\"%s\" (%s): fast %d, reference %d", fixed[i],
                         integer ? "integer" : "number", fast, ref);
        }
    /* Long mantissas with exponents around the edge of the fast path. */
    char buf[300];
    for (int exp = -330; exp <= 330; exp += 7)
        for (int digits = 1; digits < 255; digits += 31) {
            memset(buf, '7', (size_t)digits);
            snprintf(buf + digits, sizeof(buf) - (size_t)digits, "e%d", exp);
            assert_int_equal(ds_csv_number_ok(buf, strlen(buf), false),
                             ds_csv_number_ok_libc(buf, false));
        }
    unsigned seed = 12345;
    size_t accepted = 0;
    for (int i = 0; i < 200000; i++) {
        random_value(buf, sizeof(buf), &seed);
        for (int integer = 0; integer <= 1; integer++) {
            bool fast = ds_csv_number_ok(buf, strlen(buf), integer);
            if (fast != ds_csv_number_ok_libc(buf, integer))
                fail_msg("\"%s\" (%s): fast %d", buf, integer ? "integer" : "number", fast);
            accepted += fast;
        }
    }
    assert_true(accepted > 1000); /* the generator does reach valid values */
}

static struct ds_schema schema3(struct ds_column cols[3], const char **labels)
{
    cols[0] = (struct ds_column){.name = "x", .type = DS_NUMBER};
    cols[1] = (struct ds_column){.name = "n", .type = DS_INTEGER};
    cols[2] = (struct ds_column){.name = "y", .type = DS_CATEGORY};
    return (struct ds_schema){
        .cols = cols, .ncols = 3, .label = 2, .label_values = labels, .nlabel_values = 2};
}

static void feed_in_chunks(struct ds_csv *v, const struct ds_schema *s, const char *text,
                           size_t chunk)
{
    size_t len = strlen(text);
    ds_csv_init(v);
    for (size_t off = 0; off < len; off += chunk)
        ds_csv_feed(v, s, (const unsigned char *)text + off, len - off < chunk ? len - off : chunk);
    ds_csv_finish(v, s);
}

static void any_chunking_same_verdict(void **state)
{
    (void)state;
    static const char *labels[] = {"0", "1"};
    struct ds_column cols[3];
    struct ds_schema s = schema3(cols, labels);
    static const char text[] = "x,n,y\r\n"
                               "1.5,2,0\r\n"
                               "\"2.5\",3,1\n"
                               "abc,4,1\n"        /* line 4: not a number */
                               "1e999,5,0\n"      /* line 5: out of range */
                               "3,4.5,0\n"        /* line 6: not an integer */
                               "3,4,2\n"          /* line 7: label */
                               "3,4\n"            /* line 8: columns */
                               "\"a\"\"b\",1,0\n" /* line 9: quoted quote, not a number */
                               "4,5,1\n";
    struct ds_csv ref;
    feed_in_chunks(&ref, &s, text, sizeof(text));
    assert_int_equal(ref.rows, 9);
    assert_int_equal(ref.problems_total, 6);
    const int64_t lines[] = {4, 5, 6, 7, 8, 9};
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(ref.problems[i].line, lines[i]);
    for (size_t chunk = 1; chunk < sizeof(text); chunk++) {
        struct ds_csv v;
        feed_in_chunks(&v, &s, text, chunk);
        assert_int_equal(v.rows, ref.rows);
        assert_int_equal(v.problems_total, ref.problems_total);
        for (uint32_t i = 0; i < v.nproblems; i++) {
            assert_int_equal(v.problems[i].line, ref.problems[i].line);
            assert_string_equal(v.problems[i].message, ref.problems[i].message);
        }
    }
}

/* A NUL byte inside a field is a problem wherever it is, not the end of the value. */
static void nul_in_a_field_is_refused(void **state)
{
    (void)state;
    static const char *labels[] = {"0", "1"};
    struct ds_column cols[3];
    struct ds_schema s = schema3(cols, labels);
    static const char text[] = "x,n,y\n"
                               "1.5,2,0\n"
                               "1\0x,2,0\n" /* line 3: a number, then junk */
                               "1,2,1\0z\n" /* line 4: an allowed label, then junk */
                               "1,2,1\n";
    const int64_t lines[] = {3, 4};
    for (size_t chunk = 1; chunk < sizeof(text); chunk++) {
        struct ds_csv v;
        ds_csv_init(&v);
        for (size_t off = 0; off < sizeof(text) - 1; off += chunk)
            ds_csv_feed(&v, &s, (const unsigned char *)text + off,
                        sizeof(text) - 1 - off < chunk ? sizeof(text) - 1 - off : chunk);
        ds_csv_finish(&v, &s);
        assert_int_equal(v.rows, 4);
        assert_int_equal(v.problems_total, 2);
        for (size_t i = 0; i < 2; i++) {
            assert_int_equal(v.problems[i].line, lines[i]);
            assert_non_null(strstr(v.problems[i].message, "NUL byte"));
        }
    }
}

/* A field longer than DS_FIELD_MAX in one run is cut, counted, and refused as a number. */
static void long_field_in_one_run(void **state)
{
    (void)state;
    static const char *labels[] = {"0", "1"};
    struct ds_column cols[3];
    struct ds_schema s = schema3(cols, labels);
    size_t n = DS_FIELD_MAX * 3;
    char *text = malloc(n + 64);
    assert_non_null(text);
    size_t at = (size_t)snprintf(text, n + 64, "x,n,y\n");
    memset(text + at, '1', n);
    snprintf(text + at + n, 64, ",1,0\n");
    struct ds_csv v;
    feed_in_chunks(&v, &s, text, strlen(text));
    assert_int_equal(v.rows, 1);
    assert_int_equal(v.problems_total, 1);
    assert_non_null(strstr(v.problems[0].message, "is not a number"));
    free(text);
}

/*
 * The whole-chunk fast path against the byte-at-a-time path: random text
 * from an alphabet of digits, signs, quotes, CR, LF, commas, NUL and
 * letters, fed whole and one byte at a time (a field never completes
 * within a one-byte chunk, so the fast path never answers there), must get
 * the same rows, problems and messages.
 */
static void fast_path_agrees_with_bytewise(void **state)
{
    (void)state;
    static const char *labels[] = {"0", "1"};
    static const char *cats[] = {"a", "ab"};
    struct ds_column cols[5] = {
        {.name = "x", .type = DS_NUMBER},
        {.name = "n", .type = DS_INTEGER},
        {.name = "c", .type = DS_CATEGORY, .values = cats, .nvalues = 2},
        {.name = "t", .type = DS_TEXT},
        {.name = "y", .type = DS_CATEGORY},
    };
    struct ds_schema s = {
        .cols = cols, .ncols = 5, .label = 4, .label_values = labels, .nlabel_values = 2};
    static const char alphabet[] = "0123456789012345678901.-+eE,,,,,\n\n\"\rab ";
    unsigned char text[512];
    uint32_t seed = 12345;
    for (int round = 0; round < 3000; round++) {
        size_t at = (size_t)snprintf((char *)text, sizeof(text), "x,n,c,t,y\n");
        size_t len = at + (size_t)(seed % (sizeof(text) - at));
        for (size_t i = at; i < len; i++) {
            seed = seed * 1103515245u + 12345u;
            unsigned r = (seed >> 16) % (sizeof(alphabet) - 1 + 1);
            text[i] = r == sizeof(alphabet) - 1 ? '\0' : (unsigned char)alphabet[r];
        }
        struct ds_csv whole, bytewise;
        ds_csv_init(&whole);
        ds_csv_feed(&whole, &s, text, len);
        ds_csv_finish(&whole, &s);
        ds_csv_init(&bytewise);
        for (size_t i = 0; i < len; i++)
            ds_csv_feed(&bytewise, &s, text + i, 1);
        ds_csv_finish(&bytewise, &s);
        assert_int_equal(whole.rows, bytewise.rows);
        assert_int_equal(whole.line, bytewise.line);
        assert_int_equal(whole.problems_total, bytewise.problems_total);
        for (uint32_t i = 0; i < whole.nproblems; i++) {
            assert_int_equal(whole.problems[i].line, bytewise.problems[i].line);
            assert_string_equal(whole.problems[i].message, bytewise.problems[i].message);
        }
    }
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(number_check_agrees_with_libc),  cmocka_unit_test(any_chunking_same_verdict),
    cmocka_unit_test(long_field_in_one_run),          cmocka_unit_test(nul_in_a_field_is_refused),
    cmocka_unit_test(fast_path_agrees_with_bytewise),
};

DCMS_TEST_MAIN(tests)
