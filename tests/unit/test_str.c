/*
 * Strings and capped buffers (src/core/str.c): the hard cap (refused appends
 * leave the content alone), appendf, detach, JSON string escaping, hex and
 * the case-insensitive comparison.
 */
#include "testutil.h"

#include "dcms/str.h"

static void buf_cap_refuses(void **state)
{
    (void)state;
    struct dcms_buf b;
    dcms_buf_init(&b, 10);
    assert_int_equal(dcms_buf_appends(&b, "hello"), DCMS_OK);
    assert_int_equal(dcms_buf_appends(&b, "world!"), DCMS_ERR_TOO_LARGE);
    assert_int_equal(b.len, 5);
    assert_string_equal(b.ptr, "hello");
    assert_int_equal(dcms_buf_appends(&b, "world"), DCMS_OK); /* exactly at the cap */
    assert_int_equal(b.len, 10);
    assert_string_equal(b.ptr, "helloworld");
    assert_int_equal(dcms_buf_append(&b, "x", 1), DCMS_ERR_TOO_LARGE);
    assert_int_equal(dcms_buf_appendf(&b, "%d", 1), DCMS_ERR_TOO_LARGE);
    assert_int_equal(dcms_buf_append_json_escaped(&b, "x", 1), DCMS_ERR_TOO_LARGE);
    assert_int_equal(dcms_buf_append(&b, "", 0), DCMS_OK); /* nothing to add still fits */
    assert_string_equal(b.ptr, "helloworld");
    assert_int_equal(b.len, 10);
    assert_int_equal(dcms_buf_append(&b, "x", SIZE_MAX), DCMS_ERR_TOO_LARGE);
    assert_string_equal(b.ptr, "helloworld");
    dcms_buf_release(&b);
    assert_null(b.ptr);
    assert_int_equal(b.len, 0);

    /* A cap of zero refuses any byte. */
    dcms_buf_init(&b, 0);
    assert_int_equal(dcms_buf_appends(&b, "a"), DCMS_ERR_TOO_LARGE);
    dcms_buf_release(&b);
}

static void buf_grows(void **state)
{
    (void)state;
    struct dcms_buf b;
    dcms_buf_init(&b, 1 << 20);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(dcms_buf_appends(&b, "0123456789"), DCMS_OK);
    assert_int_equal(b.len, 10000);
    assert_int_equal(strlen(b.ptr), 10000);
    assert_memory_equal(b.ptr + 9990, "0123456789", 10);
    dcms_buf_release(&b);
}

/* A secret buffer grows by copying and keeps every byte; a reserve makes room once, capped. */
static void buf_secret_and_reserve(void **state)
{
    (void)state;
    struct dcms_buf b;
    dcms_buf_init_secret(&b, 5000);
    for (int i = 0; i < 500; i++)
        assert_int_equal(dcms_buf_appends(&b, "0123456789"), DCMS_OK);
    assert_int_equal(strlen(b.ptr), 5000);
    for (int i = 0; i < 500; i++)
        assert_memory_equal(b.ptr + 10 * i, "0123456789", 10);
    assert_int_equal(dcms_buf_appends(&b, "x"), DCMS_ERR_TOO_LARGE);
    dcms_buf_release(&b);
    assert_null(b.ptr);

    dcms_buf_init_secret(&b, 100);
    assert_int_equal(dcms_buf_reserve(&b, 1000), DCMS_OK); /* capped at max */
    assert_int_equal(b.cap, 101);
    const char *first = b.ptr;
    assert_int_equal(dcms_buf_appends(&b, "abc"), DCMS_OK);
    assert_int_equal(dcms_buf_reserve(&b, 50), DCMS_OK); /* already room: no move */
    for (int i = 0; i < 97; i++)
        assert_int_equal(dcms_buf_appends(&b, "d"), DCMS_OK);
    assert_ptr_equal(b.ptr, first);
    assert_int_equal(b.len, 100);
    assert_memory_equal(b.ptr, "abcd", 4);
    dcms_buf_release(&b);

    dcms_buf_init(&b, SIZE_MAX);
    assert_int_equal(dcms_buf_reserve(&b, SIZE_MAX), DCMS_ERR_NOMEM);
    dcms_buf_release(&b);
}

/* SIZE_MAX as the cap means "no limit in practice"; it must not wrap the capacity. */
static void buf_max_size_max(void **state)
{
    (void)state;
    struct dcms_buf b;
    dcms_buf_init(&b, SIZE_MAX);
    assert_int_equal(dcms_buf_appends(&b, "hello"), DCMS_OK);
    assert_int_equal(dcms_buf_appendf(&b, " %s", "world"), DCMS_OK);
    assert_string_equal(b.ptr, "hello world");
    assert_true(b.cap > b.len);
    dcms_buf_release(&b);
}

static void buf_appendf(void **state)
{
    (void)state;
    struct dcms_buf b;
    dcms_buf_init(&b, 64);
    assert_int_equal(dcms_buf_appendf(&b, "%s=%d", "a", 1), DCMS_OK);
    assert_int_equal(dcms_buf_appendf(&b, ",%s=%05u", "b", 42u), DCMS_OK);
    assert_string_equal(b.ptr, "a=1,b=00042");
    assert_int_equal(b.len, 11);
    /* 11 + 60 > 64: refused, nothing written. */
    assert_int_equal(dcms_buf_appendf(&b, "%60s", "x"), DCMS_ERR_TOO_LARGE);
    assert_string_equal(b.ptr, "a=1,b=00042");
    assert_int_equal(b.len, 11);
    assert_int_equal(dcms_buf_appendf(&b, "%53s", "y"), DCMS_OK); /* 64 exactly */
    assert_int_equal(b.len, 64);
    assert_int_equal(b.ptr[63], 'y');
    assert_int_equal(b.ptr[64], '\0');
    dcms_buf_release(&b);
}

static void buf_detach(void **state)
{
    (void)state;
    struct dcms_buf b;
    size_t len = 99;
    dcms_buf_init(&b, 100);
    assert_int_equal(dcms_buf_appends(&b, "abc"), DCMS_OK);
    char *p = dcms_buf_detach(&b, &len);
    assert_string_equal(p, "abc");
    assert_int_equal(len, 3);
    assert_null(b.ptr);
    assert_int_equal(b.len, 0);
    free(p);

    /* The buffer is reusable after a detach, and an empty one detaches as "". */
    p = dcms_buf_detach(&b, &len);
    assert_non_null(p);
    assert_string_equal(p, "");
    assert_int_equal(len, 0);
    free(p);
    assert_int_equal(dcms_buf_appends(&b, "again"), DCMS_OK);
    p = dcms_buf_detach(&b, NULL);
    assert_string_equal(p, "again");
    free(p);
    dcms_buf_release(&b);
}

static void assert_escaped(const char *in, size_t n, const char *want)
{
    struct dcms_buf b;
    dcms_buf_init(&b, 1024);
    assert_int_equal(dcms_buf_append_json_escaped(&b, in, n), DCMS_OK);
    assert_string_equal(b.ptr ? b.ptr : "", want);
    assert_int_equal(b.len, strlen(want));
    dcms_buf_release(&b);
}

static void json_escaping(void **state)
{
    (void)state;
    assert_escaped("plain", 5, "plain");
    assert_escaped("", 0, "");
    assert_escaped("say \"hi\"", 8, "say \\\"hi\\\"");
    assert_escaped("a\\b", 3, "a\\\\b");
    assert_escaped("\n\r\t\b\f", 5, "\\n\\r\\t\\b\\f");
    assert_escaped("\x01", 1, "\\u0001");
    assert_escaped("\x1f\x1e", 2, "\\u001f\\u001e"); /* lowercase hex */
    assert_escaped("a\0b", 3, "a\\u0000b");          /* the length counts, not the NUL */
    assert_escaped("\x7f", 1, "\x7f");               /* DEL needs no escape */
    assert_escaped("/", 1, "/");
    assert_escaped("caf\xc3\xa9 \xe2\x82\xac", 9, "caf\xc3\xa9 \xe2\x82\xac"); /* UTF-8 as is */
    assert_escaped("x\"y\\z\x0b", 6, "x\\\"y\\\\z\\u000b");

    /* Appends after what is there. */
    struct dcms_buf b;
    dcms_buf_init(&b, 64);
    assert_int_equal(dcms_buf_appends(&b, "\""), DCMS_OK);
    assert_int_equal(dcms_buf_append_json_escaped(&b, "a\"", 2), DCMS_OK);
    assert_int_equal(dcms_buf_appends(&b, "\""), DCMS_OK);
    assert_string_equal(b.ptr, "\"a\\\"\"");
    dcms_buf_release(&b);

    /* An escape that would cross the cap is refused. */
    dcms_buf_init(&b, 5);
    assert_int_equal(dcms_buf_append_json_escaped(&b, "\x01", 1), DCMS_ERR_TOO_LARGE);
    dcms_buf_release(&b);
}

static void hex_encode(void **state)
{
    (void)state;
    static const unsigned char in[] = {0x00, 0x01, 0xab, 0xcd, 0xef, 0xff, 0x10, 0x9a};
    char out[2 * sizeof(in) + 1];
    memset(out, 'X', sizeof(out));
    dcms_hex_encode(out, in, sizeof(in));
    assert_string_equal(out, "0001abcdefff109a");

    char empty[1] = {'X'};
    dcms_hex_encode(empty, in, 0);
    assert_string_equal(empty, "");
}

static void str_ieq(void **state)
{
    (void)state;
    assert_true(dcms_str_ieq_cstr(DCMS_STR_LIT("Content-Type"), "content-type"));
    assert_true(dcms_str_ieq_cstr(DCMS_STR_LIT("ABC"), "abc"));
    assert_true(dcms_str_ieq_cstr(DCMS_STR_LIT(""), ""));
    assert_false(dcms_str_ieq_cstr(DCMS_STR_LIT("abc"), "abcd"));
    assert_false(dcms_str_ieq_cstr(DCMS_STR_LIT("abcd"), "abc"));
    assert_false(dcms_str_ieq_cstr(DCMS_STR_LIT("abc"), "abd"));
    assert_false(dcms_str_ieq_cstr(DCMS_STR_LIT("["), "{")); /* '[' is not 'Z' + 1 folded */
    assert_false(dcms_str_ieq_cstr(DCMS_STR_LIT("@"), "`"));
    /* Only ASCII letters fold. */
    assert_false(dcms_str_ieq_cstr(DCMS_STR_LIT("\xc3\x89"), "\xc3\xa9"));
    /* A view need not be NUL-terminated. */
    struct dcms_str v = {"HOSTNAME", 4};
    assert_true(dcms_str_ieq_cstr(v, "host"));
    assert_false(dcms_str_ieq_cstr(v, "hostname"));

    assert_true(dcms_str_eq(DCMS_STR_LIT("a"), dcms_str_from("a")));
    assert_int_equal(dcms_str_from(NULL).len, 0);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(buf_cap_refuses),
    cmocka_unit_test(buf_grows),
    cmocka_unit_test(buf_appendf),
    cmocka_unit_test(buf_detach),
    cmocka_unit_test(json_escaping),
    cmocka_unit_test(hex_encode),
    cmocka_unit_test(str_ieq),
    cmocka_unit_test(buf_max_size_max),
    cmocka_unit_test(buf_secret_and_reserve),
};

DCMS_TEST_MAIN(tests)
