/*
 * The enclave channel codec (src/enclaves/channel.c): frames are parsed
 * only when complete and well-formed, NSM requests round-trip, and every
 * bound is enforced.
 */
#include "testutil.h"

#include "enclaves/channel.h"

static void test_frames(void **state)
{
    (void)state;
    uint8_t buf[16];
    dcms_chan_header(buf, DCMS_CHAN_ATTEST_REQ, 3);
    memcpy(buf + 5, "abc", 3);
    struct dcms_chan_frame f;
    for (size_t n = 0; n < 8; n++)
        assert_int_equal(dcms_chan_parse(buf, n, &f), DCMS_CHAN_NEED_MORE);
    assert_int_equal(dcms_chan_parse(buf, 8, &f), DCMS_CHAN_OK);
    assert_int_equal(f.type, DCMS_CHAN_ATTEST_REQ);
    assert_int_equal(f.body_len, 3);
    assert_memory_equal(f.body, "abc", 3);
    assert_int_equal(f.frame_len, 8);
    /* Extra bytes belong to the next frame. */
    assert_int_equal(dcms_chan_parse(buf, sizeof(buf), &f), DCMS_CHAN_OK);
    assert_int_equal(f.frame_len, 8);

    static const uint8_t zero[] = {0, 0, 0, 0, 1};
    static const uint8_t huge[] = {0, 0, 0x50, 0x01, 1}; /* 20481 > DCMS_CHAN_MAX_FRAME */
    static const uint8_t max_ok[] = {0, 0, 0x50, 0x00, 4};
    static const uint8_t type0[] = {0, 0, 0, 1, 0};
    static const uint8_t type5[] = {0, 0, 0, 1, 5};
    assert_int_equal(dcms_chan_parse(zero, 4, &f), DCMS_CHAN_BAD);
    assert_int_equal(dcms_chan_parse(huge, 4, &f), DCMS_CHAN_BAD); /* refused on the length alone */
    assert_int_equal(dcms_chan_parse(max_ok, sizeof(max_ok), &f), DCMS_CHAN_NEED_MORE);
    assert_int_equal(dcms_chan_parse(type0, sizeof(type0), &f), DCMS_CHAN_BAD);
    assert_int_equal(dcms_chan_parse(type5, sizeof(type5), &f), DCMS_CHAN_BAD);
    /* The workload's own range (the trainer's frames) is 16..22, nothing around it. */
    for (unsigned t = 5; t < 256; t++) {
        uint8_t one[] = {0, 0, 0, 1, (uint8_t)t};
        assert_int_equal(dcms_chan_parse(one, sizeof(one), &f),
                         t >= 16 && t <= 22 ? DCMS_CHAN_OK : DCMS_CHAN_BAD);
    }
}

static void test_nsm_request(void **state)
{
    (void)state;
    uint8_t pk[32], big[DCMS_CHAN_MAX_FIELD + 1], out[3 * (2 + DCMS_CHAN_MAX_FIELD) + 2];
    memset(pk, 7, sizeof(pk));
    memset(big, 1, sizeof(big));
    struct dcms_chan_nsm_req q = {.nonce = (const uint8_t *)"nonce",
                                  .nonce_len = 5,
                                  .public_key = pk,
                                  .public_key_len = sizeof(pk)};
    size_t n = dcms_chan_nsm_req_encode(&q, out, sizeof(out));
    assert_int_equal(n, 2 + 5 + 2 + 2 + 32);
    struct dcms_chan_nsm_req r;
    assert_int_equal(dcms_chan_nsm_req_parse(out, n, &r), DCMS_CHAN_OK);
    assert_int_equal(r.nonce_len, 5);
    assert_memory_equal(r.nonce, "nonce", 5);
    assert_null(r.user_data); /* length 0: absent */
    assert_int_equal(r.public_key_len, 32);
    assert_memory_equal(r.public_key, pk, 32);

    /* Truncated, trailing bytes, too few fields. */
    assert_int_equal(dcms_chan_nsm_req_parse(out, n - 1, &r), DCMS_CHAN_BAD);
    out[n] = 0;
    assert_int_equal(dcms_chan_nsm_req_parse(out, n + 1, &r), DCMS_CHAN_BAD);
    assert_int_equal(dcms_chan_nsm_req_parse(out, 7, &r), DCMS_CHAN_BAD);
    assert_int_equal(dcms_chan_nsm_req_parse(out, 0, &r), DCMS_CHAN_BAD);

    /* A field over 1024 bytes is neither encoded nor accepted. */
    q.user_data = big;
    q.user_data_len = sizeof(big);
    assert_int_equal(dcms_chan_nsm_req_encode(&q, out, sizeof(out)), 0);
    uint8_t hostile[2 + 2 + DCMS_CHAN_MAX_FIELD + 1 + 2] = {0, 0, 0x04, 0x01};
    assert_int_equal(dcms_chan_nsm_req_parse(hostile, sizeof(hostile), &r), DCMS_CHAN_BAD);
    /* Too small an output buffer. */
    q.user_data = NULL;
    assert_int_equal(dcms_chan_nsm_req_encode(&q, out, 10), 0);
}

/* The one attestation-response decoder both backends use. */
static void test_attest_response(void **state)
{
    (void)state;
    const uint8_t *doc = NULL;
    size_t n = 0;
    static const uint8_t ok[] = {0, 'd', 'o', 'c'};
    struct dcms_chan_frame f = {DCMS_CHAN_ATTEST_RESP, ok, sizeof(ok), sizeof(ok) + 4};
    assert_int_equal(dcms_chan_attest_resp_parse(&f, 3, &doc, &n), DCMS_CHAN_ATTEST_DOC);
    assert_ptr_equal(doc, ok + 1);
    assert_int_equal(n, 3);
    /* One byte over the limit. */
    doc = NULL;
    assert_int_equal(dcms_chan_attest_resp_parse(&f, 2, &doc, &n), DCMS_CHAN_ATTEST_TOO_LARGE);
    assert_null(doc);
    /* A status other than 0 is a refusal, whatever follows. */
    static const uint8_t refused[] = {1, 'n', 'o'};
    f = (struct dcms_chan_frame){DCMS_CHAN_ATTEST_RESP, refused, sizeof(refused), 0};
    assert_int_equal(dcms_chan_attest_resp_parse(&f, 100, &doc, &n), DCMS_CHAN_ATTEST_REFUSED);
    /* No document after the status, or another frame type. */
    f = (struct dcms_chan_frame){DCMS_CHAN_ATTEST_RESP, ok, 1, 0};
    assert_int_equal(dcms_chan_attest_resp_parse(&f, 100, &doc, &n), DCMS_CHAN_ATTEST_UNEXPECTED);
    f = (struct dcms_chan_frame){DCMS_CHAN_NSM_RESP, ok, sizeof(ok), 0};
    assert_int_equal(dcms_chan_attest_resp_parse(&f, 100, &doc, &n), DCMS_CHAN_ATTEST_UNEXPECTED);
    assert_null(doc);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_frames),
    cmocka_unit_test(test_nsm_request),
    cmocka_unit_test(test_attest_response),
};

DCMS_TEST_MAIN(tests)
