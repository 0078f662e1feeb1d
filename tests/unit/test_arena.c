/*
 * The request arena (src/core/arena.c): 16-byte alignment, growth past the
 * first 4 KiB chunk, the byte cap, overflow-checked calloc, the string
 * helpers, and deferred cleanups (reverse order; run at once when the
 * arena cannot record them).
 */
#include "testutil.h"

#include "dcms/arena.h"

static void alloc_is_aligned(void **state)
{
    (void)state;
    struct dcms_arena *a = dcms_arena_new(0);
    assert_non_null(a);
    static const size_t sizes[] = {0, 1, 3, 7, 15, 16, 17, 31, 33, 100, 255, 1000, 5000};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        unsigned char *p = dcms_arena_alloc(a, sizes[i]);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 16, 0);
        memset(p, 0xa5, sizes[i]); /* writable in full (ASan checks the bounds) */
    }
    dcms_arena_free(a);
}

static void alloc_grows_past_first_chunk(void **state)
{
    (void)state;
    struct dcms_arena *a = dcms_arena_new(0);
    assert_non_null(a);
    unsigned char *ptrs[200];
    for (size_t i = 0; i < 200; i++) {
        ptrs[i] = dcms_arena_alloc(a, 100);
        assert_non_null(ptrs[i]);
        memset(ptrs[i], (int)i, 100);
    }
    /* 200 * 112 bytes is well past 4 KiB; nothing was overwritten. */
    for (size_t i = 0; i < 200; i++)
        for (size_t j = 0; j < 100; j++)
            assert_int_equal(ptrs[i][j], (unsigned char)i);
    assert_int_equal(dcms_arena_used(a), 200 * 112);

    /* A single allocation larger than any chunk so far. */
    unsigned char *big = dcms_arena_alloc(a, 100000);
    assert_non_null(big);
    memset(big, 1, 100000);
    assert_int_equal(dcms_arena_used(a), 200 * 112 + 100000);
    dcms_arena_free(a);
}

static void cap_refuses(void **state)
{
    (void)state;
    struct dcms_arena *a = dcms_arena_new(256);
    assert_non_null(a);
    assert_non_null(dcms_arena_alloc(a, 200)); /* 208 */
    assert_null(dcms_arena_alloc(a, 64));      /* 208 + 64 > 256 */
    assert_int_equal(dcms_arena_used(a), 208);
    assert_non_null(dcms_arena_alloc(a, 48)); /* exactly 256 */
    assert_null(dcms_arena_alloc(a, 1));
    assert_null(dcms_arena_strdup(a, "x"));
    assert_null(dcms_arena_sprintf(a, "%d", 1));
    assert_int_equal(dcms_arena_used(a), 256);
    dcms_arena_free(a);

    a = dcms_arena_new(0);
    assert_non_null(a);
    assert_null(dcms_arena_alloc(a, SIZE_MAX));
    assert_null(dcms_arena_alloc(a, SIZE_MAX - 8));
    assert_null(dcms_arena_alloc(a, (64u << 20) + 1)); /* past the default cap of 64 MiB */
    assert_int_equal(dcms_arena_used(a), 0);
    dcms_arena_free(a);
}

static void calloc_checks_overflow(void **state)
{
    (void)state;
    struct dcms_arena *a = dcms_arena_new(0);
    assert_non_null(a);
    assert_null(dcms_arena_calloc(a, SIZE_MAX / 2 + 1, 2));
    assert_null(dcms_arena_calloc(a, 2, SIZE_MAX / 2 + 1));
    assert_null(dcms_arena_calloc(a, SIZE_MAX, SIZE_MAX));
    assert_int_equal(dcms_arena_used(a), 0);

    /* Dirty the first chunk, then check that calloc zeroes what it returns. */
    unsigned char *d = dcms_arena_alloc(a, 64);
    assert_non_null(d);
    memset(d, 0xff, 64);
    uint64_t *z = dcms_arena_calloc(a, 10, sizeof(uint64_t));
    assert_non_null(z);
    for (size_t i = 0; i < 10; i++)
        assert_int_equal(z[i], 0);
    assert_non_null(dcms_arena_calloc(a, 0, 8));
    dcms_arena_free(a);
}

static void strings(void **state)
{
    (void)state;
    struct dcms_arena *a = dcms_arena_new(0);
    assert_non_null(a);

    char *s = dcms_arena_strdup(a, "hello");
    assert_string_equal(s, "hello");
    assert_null(dcms_arena_strdup(a, NULL));
    assert_string_equal(dcms_arena_strdup(a, ""), "");

    char *n = dcms_arena_strndup(a, "hello world", 5);
    assert_string_equal(n, "hello");
    /* strndup copies exactly n bytes, even past an embedded NUL. */
    char *raw = dcms_arena_strndup(a, "ab\0cd", 5);
    assert_non_null(raw);
    assert_memory_equal(raw, "ab\0cd", 6);
    assert_null(dcms_arena_strndup(a, NULL, 3));

    char *f = dcms_arena_sprintf(a, "%s-%d-%05.1f", "x", 42, 3.14159);
    assert_string_equal(f, "x-42-003.1");
    assert_string_equal(dcms_arena_sprintf(a, "%s", ""), "");

    /* A formatted string longer than the first chunk. */
    char *long_s = dcms_arena_sprintf(a, "%6000d", 7);
    assert_non_null(long_s);
    assert_int_equal(strlen(long_s), 6000);
    assert_int_equal(long_s[5999], '7');
    dcms_arena_free(a);
}

static int order[8];
static size_t norder;

static void record(void *p)
{
    order[norder++] = *(int *)p;
}

static void defer_runs_in_reverse(void **state)
{
    (void)state;
    static int ids[] = {1, 2, 3};
    norder = 0;
    struct dcms_arena *a = dcms_arena_new(0);
    assert_non_null(a);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(dcms_arena_defer(a, record, &ids[i]), DCMS_OK);
    assert_int_equal(norder, 0); /* nothing runs before the arena is freed */
    dcms_arena_free(a);
    assert_int_equal(norder, 3);
    assert_int_equal(order[0], 3);
    assert_int_equal(order[1], 2);
    assert_int_equal(order[2], 1);

    dcms_arena_free(NULL); /* a no-op */
}

static void defer_failure_cleans_up_at_once(void **state)
{
    (void)state;
    static int ids[] = {1, 2};
    norder = 0;
    struct dcms_arena *a = dcms_arena_new(64);
    assert_non_null(a);
    assert_int_equal(dcms_arena_defer(a, record, &ids[0]), DCMS_OK);
    assert_non_null(dcms_arena_alloc(a, 64 - dcms_arena_used(a))); /* fill to the cap */
    assert_int_equal(dcms_arena_defer(a, record, &ids[1]), DCMS_ERR_NOMEM);
    assert_int_equal(norder, 1); /* called at once, so the caller does not leak */
    assert_int_equal(order[0], 2);
    dcms_arena_free(a);
    assert_int_equal(norder, 2); /* only the registered one runs at free */
    assert_int_equal(order[1], 1);

    /* A real foreign object: no leak under ASan either way. */
    a = dcms_arena_new(16);
    assert_non_null(a);
    assert_non_null(dcms_arena_alloc(a, 16));
    char *heap = malloc(32);
    assert_non_null(heap);
    assert_int_equal(dcms_arena_defer(a, free, heap), DCMS_ERR_NOMEM);
    dcms_arena_free(a);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(alloc_is_aligned),
    cmocka_unit_test(alloc_grows_past_first_chunk),
    cmocka_unit_test(cap_refuses),
    cmocka_unit_test(calloc_checks_overflow),
    cmocka_unit_test(strings),
    cmocka_unit_test(defer_runs_in_reverse),
    cmocka_unit_test(defer_failure_cleans_up_at_once),
};

DCMS_TEST_MAIN(tests)
