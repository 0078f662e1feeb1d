/*
 * Shared by the unit tests: cmocka's headers in the right order, a main()
 * that runs one named case (so ctest lists each case) or all of them, and
 * small helpers for reading test files.
 */
#ifndef DCMS_TESTUTIL_H
#define DCMS_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dcms/err.h"
#include "dcms/log.h"

/* Fails the case with the error's slug and message when `call` returns an error. */
#define CHECK(call, ei)                                                                            \
    do {                                                                                           \
        enum dcms_err e_ = (call);                                                                 \
        if (e_)                                                                                    \
            fail_msg("%s: %s (%s)", #call, dcms_err_slug(e_), (ei).message);                       \
    } while (0)

/* Runs the case named argv[1], or every case when there is no argument. */
#define DCMS_TEST_MAIN(tests)                                                                      \
    int main(int argc, char **argv)                                                                \
    {                                                                                              \
        if (argc > 1)                                                                              \
            cmocka_set_test_filter(argv[1]);                                                       \
        return cmocka_run_group_tests(tests, NULL, NULL);                                          \
    }

/* Reads all of `f` into a malloc'd, NUL-terminated buffer and closes it. */
static inline char *dcms_test_read_stream(FILE *f, size_t *len_out)
{
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
    p[n] = '\0';
    fclose(f);
    if (len_out)
        *len_out = (size_t)n;
    return p;
}

/* Reads a whole file into a malloc'd, NUL-terminated buffer; fails the test if it cannot. */
static inline char *dcms_test_read_file(const char *path, size_t *len_out)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    return dcms_test_read_stream(f, len_out);
}

/* Log lines go to a temporary file from dcms_test_log_begin until dcms_test_log_end. */
static inline FILE *dcms_test_log_begin(void)
{
    FILE *f = tmpfile();
    assert_non_null(f);
    dcms_log_set_fd(fileno(f));
    return f;
}

/* The lines logged since dcms_test_log_begin, malloc'd; logs go to stderr again. */
static inline char *dcms_test_log_end(FILE *f)
{
    dcms_log_set_fd(2);
    return dcms_test_read_stream(f, NULL);
}

/* How many times `needle` occurs in `s`. */
static inline int dcms_test_count(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

#endif
