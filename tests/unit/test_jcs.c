/*
 * RFC 8785 canonicalization (src/core/jcs.c): the reference input/output
 * pairs, the RFC's number table and the first 10,000 lines of the ES6 number
 * test file (all under DCMS_VECTORS_DIR/jcs), plus member order, escaping,
 * caps, depth limits and SHA-256 of the canonical form.
 */
#include "testutil.h"

#include <math.h>

#include <openssl/evp.h>

#include "dcms/jcs.h"
#include "dcms/json.h"

#define JCS_DIR DCMS_VECTORS_DIR "/jcs"

static json_t *parse(const char *text)
{
    json_t *v = NULL;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    enum dcms_err e = dcms_json_parse(dcms_str_from(text), JSON_DECODE_INT_AS_REAL, &v, &ei);
    if (e)
        fail_msg("parse failed: %s", ei.message);
    return v;
}

/* Canonical form of `v` as a malloc'd string; fails the test on error. */
static char *canon(const json_t *v, size_t *len_out)
{
    struct dcms_buf b;
    struct dcms_errinfo ei;
    dcms_buf_init(&b, 1 << 20);
    dcms_errinfo_init(&ei, NULL);
    if (dcms_jcs_canonicalize(v, &b, &ei))
        fail_msg("canonicalize failed: %s", ei.message);
    return dcms_buf_detach(&b, len_out);
}

static void assert_canon(const json_t *v, const char *want)
{
    size_t len;
    char *got = canon(v, &len);
    assert_string_equal(got, want);
    assert_int_equal(len, strlen(want));
    free(got);
}

static void assert_canon_text(const char *input, const char *want)
{
    json_t *v = parse(input);
    assert_canon(v, want);
    json_decref(v);
}

static void check_pair(const char *name)
{
    char in_path[512], out_path[512];
    snprintf(in_path, sizeof(in_path), "%s/%s.input.json", JCS_DIR, name);
    snprintf(out_path, sizeof(out_path), "%s/%s.output.json", JCS_DIR, name);
    size_t in_len, want_len, got_len;
    char *in = dcms_test_read_file(in_path, &in_len);
    char *want = dcms_test_read_file(out_path, &want_len);

    json_error_t jerr;
    json_t *v = json_loadb(in, in_len, JSON_DECODE_INT_AS_REAL | JSON_REJECT_DUPLICATES, &jerr);
    if (!v)
        fail_msg("%s: %s", in_path, jerr.text);
    char *got = canon(v, &got_len);
    assert_int_equal(got_len, want_len);
    assert_memory_equal(got, want, want_len);

    /* The digest covers exactly those bytes. */
    unsigned char d1[32], d2[32];
    assert_int_equal(dcms_jcs_sha256(v, d1, NULL), DCMS_OK);
    assert_non_null(EVP_Digest(want, want_len, d2, NULL, EVP_sha256(), NULL));
    assert_memory_equal(d1, d2, 32);

    free(got);
    json_decref(v);
    free(in);
    free(want);
}

static void pair_arrays(void **state)
{
    check_pair("arrays");
}

static void pair_french(void **state)
{
    check_pair("french");
}

static void pair_structures(void **state)
{
    check_pair("structures");
}

static void pair_unicode(void **state)
{
    check_pair("unicode");
}

static void pair_values(void **state)
{
    check_pair("values");
}

static void pair_weird(void **state)
{
    check_pair("weird");
}

static double from_bits(const char *hex)
{
    char *end;
    unsigned long long bits = strtoull(hex, &end, 16);
    assert_true(end != hex);
    double d;
    memcpy(&d, &bits, sizeof(d));
    return d;
}

static void numbers_tsv(void **state)
{
    char *text = dcms_test_read_file(JCS_DIR "/numbers.tsv", NULL);
    int rows = 0, errors = 0;
    for (char *line = text, *next; *line; line = next) {
        next = strchr(line, '\n');
        next = next ? (*next = '\0', next + 1) : line + strlen(line);
        if (line[0] == '#' || line[0] == '\0')
            continue;
        char *tab1 = strchr(line, '\t');
        assert_non_null(tab1);
        *tab1 = '\0';
        char *want = tab1 + 1, *tab2 = strchr(want, '\t');
        if (tab2)
            *tab2 = '\0';
        char got[DCMS_JCS_NUMBER_MAX];
        enum dcms_err e = dcms_jcs_format_number(from_bits(line), got);
        if (strcmp(want, "ERROR") == 0) {
            if (e != DCMS_ERR_VALIDATION)
                fail_msg("%s: want DCMS_ERR_VALIDATION, got %d \"%s\"", line, (int)e, got);
            errors++;
        } else {
            if (e != DCMS_OK || strcmp(got, want) != 0)
                fail_msg("%s: want %s, got %d \"%s\"", line, want, (int)e, got);
        }
        rows++;
    }
    assert_int_equal(rows, 26);
    assert_int_equal(errors, 2);
    free(text);
}

static void es6_first10000(void **state)
{
    char *text = dcms_test_read_file(JCS_DIR "/es6testfile_first10000.csv", NULL);
    int lines = 0, bad = 0;
    for (char *line = text, *next; *line; line = next) {
        next = strchr(line, '\n');
        next = next ? (*next = '\0', next + 1) : line + strlen(line);
        char *comma = strchr(line, ',');
        assert_non_null(comma);
        *comma = '\0';
        char got[DCMS_JCS_NUMBER_MAX];
        enum dcms_err e = dcms_jcs_format_number(from_bits(line), got);
        if (e != DCMS_OK || strcmp(got, comma + 1) != 0) {
            if (bad++ < 20)
                print_error("line %d: %s: want %s, got %d \"%s\"\n", lines + 1, line, comma + 1,
                            (int)e, got);
        }
        lines++;
    }
    free(text);
    assert_int_equal(lines, 10000);
    assert_int_equal(bad, 0);
}

static void assert_number(double d, const char *want)
{
    char got[DCMS_JCS_NUMBER_MAX];
    assert_int_equal(dcms_jcs_format_number(d, got), DCMS_OK);
    assert_string_equal(got, want);
}

static void format_number_layout(void **state)
{
    assert_number(0.0, "0");
    assert_number(-0.0, "0");
    assert_number(1, "1");
    assert_number(-1, "-1");
    assert_number(100, "100");
    assert_number(0.1, "0.1");
    assert_number(-1.5, "-1.5");
    assert_number(123.456, "123.456");
    assert_number(1e20, "100000000000000000000");
    assert_number(1e21, "1e+21");
    assert_number(-1e21, "-1e+21");
    assert_number(1.5e21, "1.5e+21");
    assert_number(1e-6, "0.000001");
    assert_number(1.25e-6, "0.00000125");
    assert_number(1e-7, "1e-7");
    assert_number(-1.5e-7, "-1.5e-7");
    assert_number(1e300, "1e+300");
    assert_number(4.35, "4.35");
    assert_number(0.3, "0.3");
    assert_number(0.1 + 0.2, "0.30000000000000004");
    assert_number(9007199254740993.0, "9007199254740992");
    /* Integers below 2^53 print their digits directly; from 2^53 on, the search does. */
    assert_number(9007199254740991.0, "9007199254740991");
    assert_number(-9007199254740991.0, "-9007199254740991");
    assert_number(9007199254740992.0, "9007199254740992");
    assert_number(18014398509481984.0, "18014398509481984");
    assert_number(1e15, "1000000000000000");
    assert_number(123456789, "123456789");
    assert_number(-1.7976931348623157e308, "-1.7976931348623157e+308");
    assert_number(-5e-324, "-5e-324");
}

static void nonfinite_rejected(void **state)
{
    char got[DCMS_JCS_NUMBER_MAX] = "junk";
    assert_int_equal(dcms_jcs_format_number(NAN, got), DCMS_ERR_VALIDATION);
    assert_string_equal(got, "");
    assert_int_equal(dcms_jcs_format_number(INFINITY, got), DCMS_ERR_VALIDATION);
    assert_int_equal(dcms_jcs_format_number(-INFINITY, got), DCMS_ERR_VALIDATION);
    /* jansson refuses to hold them, so no json_t can carry one. */
    assert_null(json_real(NAN));
    assert_null(json_real(INFINITY));
}

static void integers_as_doubles(void **state)
{
    json_t *v = json_pack("[I,I,I,I]", (json_int_t)0, (json_int_t)-42,
                          (json_int_t)9007199254740993LL, (json_int_t)1000000000000000000LL);
    assert_non_null(v);
    assert_canon(v, "[0,-42,9007199254740992,1000000000000000000]");
    json_decref(v);
    /* Big integers need JSON_DECODE_INT_AS_REAL; the result is the nearest double. */
    assert_canon_text("[123456789012345678901234567890, -0, -0.0, 1E2]",
                      "[1.2345678901234568e+29,0,0,100]");
}

static void utf16_member_order(void **state)
{
    /* Code point order would put U+FB33 before U+1F600; UTF-16 order puts the
     * surrogate pair (0xD83D 0xDE00) first. */
    assert_canon_text("{\"\\ufb33\":1,\"\\ud83d\\ude00\":2,\"\\u20ac\":3,\"\\uffff\":4,"
                      "\"\\ud800\\udc00\":5,\"z\":6,\"\":7,\"zz\":8,\"Z\":9}",
                      "{\"\":7,\"Z\":9,\"z\":6,\"zz\":8,\"\xe2\x82\xac\":3,\"\xf0\x90\x80\x80\":5,"
                      "\"\xf0\x9f\x98\x80\":2,\"\xef\xac\xb3\":1,\"\xef\xbf\xbf\":4}");
    /* Names that share a multibyte prefix. */
    assert_canon_text("{\"\\u00e9\\ufb33\":1,\"\\u00e9\\ud83d\\ude00\":2,\"\\u00e9\":3}",
                      "{\"\xc3\xa9\":3,\"\xc3\xa9\xf0\x9f\x98\x80\":2,\"\xc3\xa9\xef\xac\xb3\":1}");
}

static void string_escapes(void **state)
{
    assert_canon_text("[\"\\u0001\\b\\t\\n\\u000b\\f\\r\\u001f \\\"\\\\\\/\\u007f\\u2028\"]",
                      "[\"\\u0001\\b\\t\\n\\u000b\\f\\r\\u001f \\\"\\\\/\x7f\xe2\x80\xa8\"]");
    json_t *v = json_stringn("a\0b", 3);
    assert_non_null(v);
    assert_canon(v, "\"a\\u0000b\"");
    json_decref(v);
}

static void scalars_and_empty(void **state)
{
    assert_canon_text("true", "true");
    assert_canon_text("false", "false");
    assert_canon_text("null", "null");
    assert_canon_text("\"\"", "\"\"");
    assert_canon_text(" [ ] ", "[]");
    assert_canon_text(" { } ", "{}");
    assert_canon_text("[{},[],[[]],{\"a\":{}}]", "[{},[],[[]],{\"a\":{}}]");
}

static void appends_to_buffer(void **state)
{
    json_t *v = parse("{\"b\":1,\"a\":2}");
    struct dcms_buf b;
    dcms_buf_init(&b, 100);
    assert_int_equal(dcms_buf_appends(&b, "x="), DCMS_OK);
    assert_int_equal(dcms_jcs_canonicalize(v, &b, NULL), DCMS_OK);
    assert_string_equal(b.ptr, "x={\"a\":2,\"b\":1}");
    dcms_buf_release(&b);
    json_decref(v);
}

static void cap_gives_too_large(void **state)
{
    json_t *v = parse("{\"b\":[1,2,3],\"a\":\"hello\"}");
    const char *want = "{\"a\":\"hello\",\"b\":[1,2,3]}";
    size_t n = strlen(want);
    struct dcms_errinfo ei;
    struct dcms_buf b;

    /* Exactly the canonical length fits. */
    dcms_buf_init(&b, n);
    assert_int_equal(dcms_jcs_canonicalize(v, &b, NULL), DCMS_OK);
    assert_string_equal(b.ptr, want);
    dcms_buf_release(&b);

    /* One byte less fails, and the buffer keeps what it had. */
    dcms_buf_init(&b, n + 1);
    assert_int_equal(dcms_buf_appends(&b, "xy"), DCMS_OK);
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(dcms_jcs_canonicalize(v, &b, &ei), DCMS_ERR_TOO_LARGE);
    assert_int_equal(ei.code, DCMS_ERR_TOO_LARGE);
    assert_non_null(strstr(ei.message, "limit"));
    assert_int_equal(b.len, 2);
    assert_string_equal(b.ptr, "xy");
    dcms_buf_release(&b);

    /* A value bigger than the internal staging buffer hits the cap too. */
    json_t *big = json_array();
    for (int i = 0; i < 5000; i++)
        assert_int_equal(json_array_append_new(big, json_integer(i)), 0);
    dcms_buf_init(&b, 4096);
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(dcms_jcs_canonicalize(big, &b, &ei), DCMS_ERR_TOO_LARGE);
    assert_true(b.len == 0);
    dcms_buf_release(&b);
    json_decref(big);
    json_decref(v);
}

static void sha256_known(void **state)
{
    /* printf '%s' '{"a":{"€":true,"😀":null,"דּ":false},"b":[1,2.5,"x\n"]}' | sha256sum
     * (the literal backslash-n escape, the Hebrew letter is U+FB33) */
    static const char want[] = "14af16be2a1a39dc373dd2fb98b9890695b4dacb33eaf95a4344e4bc2f9b1ca9";
    json_t *v =
        parse("{ \"b\": [1.0, 25e-1, \"x\\u000a\"],\n"
              "  \"a\": {\"\\ufb33\": false, \"\\ud83d\\ude00\": null, \"\\u20ac\": true} }");
    unsigned char d[32];
    char hex[65];
    assert_int_equal(dcms_jcs_sha256(v, d, NULL), DCMS_OK);
    dcms_hex_encode(hex, d, sizeof(d));
    assert_string_equal(hex, want);
    json_decref(v);

    /* sha256sum values.output.json */
    char *in = dcms_test_read_file(JCS_DIR "/values.input.json", NULL);
    v = parse(in);
    assert_int_equal(dcms_jcs_sha256(v, d, NULL), DCMS_OK);
    dcms_hex_encode(hex, d, sizeof(d));
    assert_string_equal(hex, "2d5e01a318d0f0879ab568c4be289c8b1f64ef8921a53c6277d5e069978baacb");
    json_decref(v);
    free(in);
}

static void sha256_large_value(void **state)
{
    /* Longer than the staging buffer, with long strings and many members. */
    json_t *v = json_object();
    char key[32], *s = malloc(5000);
    assert_non_null(s);
    memset(s, 'q', 4999);
    s[4999] = '\0';
    for (int i = 0; i < 300; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        assert_int_equal(json_object_set_new(v, key, i % 7 ? json_real(i / 3.0) : json_string(s)),
                         0);
    }
    size_t len;
    char *c = canon(v, &len);
    assert_true(len > 40000);
    unsigned char d1[32], d2[32];
    assert_int_equal(dcms_jcs_sha256(v, d1, NULL), DCMS_OK);
    assert_non_null(EVP_Digest(c, len, d2, NULL, EVP_sha256(), NULL));
    assert_memory_equal(d1, d2, 32);
    free(c);
    free(s);
    json_decref(v);
}

static json_t *nest(int levels)
{
    json_t *v = json_array();
    for (int i = 1; i < levels; i++) {
        json_t *outer = i % 2 ? json_array() : json_object();
        if (json_is_array(outer))
            assert_int_equal(json_array_append_new(outer, v), 0);
        else
            assert_int_equal(json_object_set_new(outer, "k", v), 0);
        v = outer;
    }
    return v;
}

static void depth_limit(void **state)
{
    /* The deepest value jansson parses is still canonicalized. */
    size_t n = DCMS_JCS_MAX_DEPTH;
    char *text = malloc(2 * n + 1);
    assert_non_null(text);
    memset(text, '[', n);
    memset(text + n, ']', n);
    text[2 * n] = '\0';
    json_t *v = parse(text);
    size_t len;
    char *c = canon(v, &len);
    assert_string_equal(c, text);
    free(c);
    json_decref(v);
    free(text);

    v = nest(DCMS_JCS_MAX_DEPTH);
    c = canon(v, &len);
    free(c);
    json_decref(v);

    struct dcms_errinfo ei;
    struct dcms_buf b;
    unsigned char d[32];
    v = nest(DCMS_JCS_MAX_DEPTH + 1);
    dcms_buf_init(&b, 1 << 20);
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(dcms_jcs_canonicalize(v, &b, &ei), DCMS_ERR_VALIDATION);
    assert_non_null(strstr(ei.message, "2048"));
    assert_int_equal(b.len, 0);
    assert_int_equal(dcms_jcs_sha256(v, d, NULL), DCMS_ERR_VALIDATION);
    dcms_buf_release(&b);
    json_decref(v);
}

static void self_reference_rejected(void **state)
{
    /* jansson refuses a direct self-append but not a longer cycle. */
    json_t *a = json_array(), *b = json_object();
    assert_int_equal(json_array_append_new(a, b), 0);
    assert_int_equal(json_object_set(b, "a", a), 0);
    struct dcms_buf buf;
    unsigned char d[32];
    dcms_buf_init(&buf, 1 << 20);
    assert_int_equal(dcms_jcs_canonicalize(a, &buf, NULL), DCMS_ERR_VALIDATION);
    assert_int_equal(dcms_jcs_sha256(b, d, NULL), DCMS_ERR_VALIDATION);
    dcms_buf_release(&buf);
    json_object_clear(b); /* break the cycle so both can be freed */
    json_decref(a);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(pair_arrays),          cmocka_unit_test(pair_french),
    cmocka_unit_test(pair_structures),      cmocka_unit_test(pair_unicode),
    cmocka_unit_test(pair_values),          cmocka_unit_test(pair_weird),
    cmocka_unit_test(numbers_tsv),          cmocka_unit_test(es6_first10000),
    cmocka_unit_test(format_number_layout), cmocka_unit_test(nonfinite_rejected),
    cmocka_unit_test(integers_as_doubles),  cmocka_unit_test(utf16_member_order),
    cmocka_unit_test(string_escapes),       cmocka_unit_test(scalars_and_empty),
    cmocka_unit_test(appends_to_buffer),    cmocka_unit_test(cap_gives_too_large),
    cmocka_unit_test(sha256_known),         cmocka_unit_test(sha256_large_value),
    cmocka_unit_test(depth_limit),          cmocka_unit_test(self_reference_rejected),
};

DCMS_TEST_MAIN(tests)
