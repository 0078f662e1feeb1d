/*
 * Attestation (src/attestation): every real AWS Nitro document in
 * vectors/nitro verifies against the AWS root at its own time and decodes to
 * its sidecar's fields; at now it fails on the expired leaf; single-byte
 * corruptions of the signature, a PCR, the timestamp and the certificate are
 * refused with the right failure; truncated, garbage and malformed input is
 * refused with the right class; the policy; the chain cache; the local
 * attestation module round trip.
 */
#include "testutil.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cbor.h>
#include <jansson.h>

#include "attestation/attest_int.h"
#include "dcms/attest.h"

#define NITRO_DIR DCMS_VECTORS_DIR "/nitro"
#define MAX_VECTORS 32

struct vector {
    char name[128];
    unsigned char *doc;
    size_t len;
    json_t *side;
};

static struct vector vectors[MAX_VECTORS];
static size_t nvectors;
static struct dcms_attest_verifier *aws;

static int cmp_names(const void *a, const void *b)
{
    return strcmp(((const struct vector *)a)->name, ((const struct vector *)b)->name);
}

static int setup(void **state)
{
    (void)state;
    DIR *dir = opendir(NITRO_DIR);
    assert_non_null(dir);
    struct dirent *e;
    while ((e = readdir(dir)) && nvectors < MAX_VECTORS) {
        size_t n = strlen(e->d_name);
        if (n < 6 || strcmp(e->d_name + n - 5, ".cbor") != 0)
            continue;
        struct vector *v = &vectors[nvectors++];
        snprintf(v->name, sizeof(v->name), "%.*s", (int)(n - 5), e->d_name);
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", NITRO_DIR, e->d_name);
        v->doc = (unsigned char *)dcms_test_read_file(path, &v->len);
        snprintf(path, sizeof(path), "%s/%s.json", NITRO_DIR, v->name);
        json_error_t jerr;
        v->side = json_load_file(path, 0, &jerr);
        if (!v->side)
            fail_msg("%s: %s", path, jerr.text);
    }
    closedir(dir);
    qsort(vectors, nvectors, sizeof(vectors[0]), cmp_names);
    assert_true(nvectors >= 7);
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(
        dcms_attest_verifier_new(dcms_aws_nitro_root_g1, dcms_aws_nitro_root_g1_len, &aws, &ei),
        DCMS_OK);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < nvectors; i++) {
        free(vectors[i].doc);
        json_decref(vectors[i].side);
    }
    nvectors = 0;
    dcms_attest_verifier_free(aws);
    aws = NULL;
    return 0;
}

static const json_t *side_at(const struct vector *v, const char *a, const char *b)
{
    const json_t *o = json_object_get(v->side, a);
    return b ? json_object_get(o, b) : o;
}

static uint64_t doc_time_ms(const struct vector *v)
{
    return (uint64_t)json_integer_value(side_at(v, "payload", "timestamp_ms"));
}

static bool side_is_debug(const struct vector *v)
{
    const json_t *pcrs = side_at(v, "payload", "pcrs_hex");
    for (int i = 0; i < 3; i++) {
        char key[4];
        snprintf(key, sizeof(key), "%d", i);
        const char *h = json_string_value(json_object_get(pcrs, key));
        for (size_t k = 0; h && h[k]; k++)
            if (h[k] != '0')
                return false;
    }
    return true;
}

/* Policy at the document's own time: chain at T, no freshness failure. */
static void policy_at_doc_time(struct dcms_attest_policy *pol, const struct vector *v)
{
    dcms_attest_policy_init(pol);
    pol->now_ms = (int64_t)doc_time_ms(v);
}

static enum dcms_attest_failure verify_code(struct dcms_attest_verifier *ver,
                                            const unsigned char *doc, size_t len,
                                            const struct dcms_attest_policy *pol, char *why,
                                            size_t cap)
{
    struct dcms_attest_report rep;
    assert_int_equal(dcms_attest_verify(ver, doc, len, pol, &rep), DCMS_OK);
    enum dcms_attest_failure f = rep.failure;
    assert_true(rep.valid == (f == DCMS_ATTEST_OK));
    if (why) {
        why[0] = '\0';
        for (size_t i = 0; i < rep.nchecks; i++)
            if (!rep.checks[i].ok) {
                snprintf(why, cap, "%s: %s", rep.checks[i].name, rep.checks[i].reason);
                break;
            }
    }
    dcms_attest_report_release(&rep);
    return f;
}

static void hex_eq(struct dcms_attest_bytes b, const char *hex, const char *what)
{
    char *h = attest_hex(b.ptr, b.len);
    assert_non_null(h);
    if (strcmp(h, hex) != 0)
        fail_msg("%s: got %s, want %s", what, h, hex);
    free(h);
}

static void test_embedded_root_is_the_vector(void **state)
{
    (void)state;
    size_t n;
    char *pem = dcms_test_read_file(NITRO_DIR "/aws_nitro_root_g1.pem", &n);
    assert_int_equal(dcms_aws_nitro_root_g1_len, n);
    assert_memory_equal(dcms_aws_nitro_root_g1, pem, n);
    free(pem);
}

static void test_vectors_verify_at_document_time(void **state)
{
    (void)state;
    for (size_t i = 0; i < nvectors; i++) {
        const struct vector *v = &vectors[i];
        struct dcms_attest_policy pol;
        policy_at_doc_time(&pol, v);
        pol.allow_debug = true;
        struct dcms_attest_report rep;
        assert_int_equal(dcms_attest_verify(aws, v->doc, v->len, &pol, &rep), DCMS_OK);
        if (!rep.valid) {
            for (size_t k = 0; k < rep.nchecks; k++)
                print_error("  %s %s %s\n", rep.checks[k].name, rep.checks[k].ok ? "ok" : "FAIL",
                            rep.checks[k].reason);
            fail_msg("%s does not verify at its own time", v->name);
        }
        const struct dcms_attest_doc *d = rep.doc;
        assert_non_null(d);
        assert_string_equal(d->module_id, json_string_value(side_at(v, "payload", "module_id")));
        assert_int_equal(d->timestamp_ms, doc_time_ms(v));
        assert_int_equal(d->tagged, false);
        assert_int_equal(d->payload_indefinite,
                         strcmp(json_string_value(side_at(v, "payload", "map_encoding")),
                                "indefinite-length") == 0);
        assert_int_equal(__builtin_popcount(d->pcr_mask),
                         json_integer_value(side_at(v, "payload", "pcr_count")));
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)side_at(v, "payload", "pcrs_hex"), key, val)
        {
            unsigned idx = (unsigned)strtoul(key, NULL, 10);
            assert_true(d->pcr_mask & (1u << idx));
            hex_eq(d->pcrs[idx], json_string_value(val), key);
        }
        hex_eq(d->signature, json_string_value(side_at(v, "cose", "signature_hex")), "signature");
        assert_int_equal(d->payload.len, json_integer_value(side_at(v, "cose", "payload_len")));
        assert_int_equal(d->certificate.len,
                         json_integer_value(
                             side_at(v, "payload", "certificate")
                                 ? json_object_get(side_at(v, "payload", "certificate"), "der_len")
                                 : NULL));
        const json_t *bundle = side_at(v, "payload", "cabundle");
        assert_int_equal(d->ncabundle, json_array_size(bundle));
        for (size_t k = 0; k < d->ncabundle; k++)
            assert_int_equal(d->cabundle[k].len, json_integer_value(json_object_get(
                                                     json_array_get(bundle, k), "der_len")));
        static const char *const opt[] = {"public_key", "user_data", "nonce"};
        const bool has[] = {d->has_public_key, d->has_user_data, d->has_nonce};
        const struct dcms_attest_bytes bytes[] = {d->public_key, d->user_data, d->nonce};
        for (size_t k = 0; k < 3; k++) {
            const json_t *o = side_at(v, "payload", opt[k]);
            const char *enc = json_string_value(json_object_get(o, "encoding"));
            if (enc && strcmp(enc, "bstr") == 0) {
                assert_true(has[k]);
                hex_eq(bytes[k], json_string_value(json_object_get(o, "hex")), opt[k]);
            } else {
                assert_false(has[k]);
            }
        }
        unsigned char md[DCMS_ATTEST_SHA384_LEN];
        assert_int_equal(attest_sig_structure_sha384(d, md), DCMS_OK);
        struct dcms_attest_bytes mdb = {md, sizeof(md)};
        hex_eq(mdb, json_string_value(side_at(v, "cose", "sig_structure_sha384")),
               "sig_structure_sha384");
        assert_string_equal(json_string_value(side_at(v, "expected", "result_at_document_time")),
                            "VALID");
        dcms_attest_report_release(&rep);

        /* The default policy (no debug) refuses exactly the debug-mode documents. */
        policy_at_doc_time(&pol, v);
        enum dcms_attest_failure f = verify_code(aws, v->doc, v->len, &pol, NULL, 0);
        assert_int_equal(f, side_is_debug(v) ? DCMS_ATTEST_FAIL_DEBUG : DCMS_ATTEST_OK);
    }
}

static void test_vectors_fail_now_on_expired_leaf(void **state)
{
    (void)state;
    for (size_t i = 0; i < nvectors; i++) {
        struct dcms_attest_policy pol;
        dcms_attest_policy_init(&pol);
        pol.max_age_ms = -1; /* isolate the chain-at-now check */
        pol.allow_debug = true;
        char why[256];
        assert_int_equal(verify_code(aws, vectors[i].doc, vectors[i].len, &pol, why, sizeof(why)),
                         DCMS_ATTEST_FAIL_CHAIN);
        if (!strstr(why, "chain_at_now: at the current time the leaf certificate expired at"))
            fail_msg("%s: %s", vectors[i].name, why);

        /* The default policy: too old first. */
        dcms_attest_policy_init(&pol);
        pol.allow_debug = true;
        assert_int_equal(verify_code(aws, vectors[i].doc, vectors[i].len, &pol, why, sizeof(why)),
                         DCMS_ATTEST_FAIL_FRESHNESS);
    }
}

static unsigned char *dup_bytes(const unsigned char *p, size_t n)
{
    unsigned char *q = malloc(n ? n : 1);
    assert_non_null(q);
    memcpy(q, p, n);
    return q;
}

/* Position of `needle` in `hay`; fails the test when absent. */
static size_t find(const unsigned char *hay, size_t n, const unsigned char *needle, size_t m)
{
    const unsigned char *p = memmem(hay, n, needle, m);
    if (!p)
        fail_msg("pattern not found");
    return (size_t)(p - hay);
}

/* Flips each byte in [off, off+n) of every vector with `mask`, expecting failure `want`. */
static void corrupt_range(const struct vector *v, size_t off, size_t n, unsigned char mask,
                          enum dcms_attest_failure want, const char *what)
{
    struct dcms_attest_policy pol;
    policy_at_doc_time(&pol, v);
    pol.allow_debug = true;
    unsigned char *doc = dup_bytes(v->doc, v->len);
    for (size_t i = off; i < off + n; i++) {
        doc[i] ^= mask;
        char why[256];
        enum dcms_attest_failure f = verify_code(aws, doc, v->len, &pol, why, sizeof(why));
        if (f != want)
            fail_msg("%s: %s byte %zu ^ 0x%02x: failure %s (%s), want %s", v->name, what, i - off,
                     mask, f ? dcms_attest_failure_code(f) : "none", why,
                     dcms_attest_failure_code(want));
        doc[i] ^= mask;
    }
    free(doc);
}

static void test_corrupt_signature(void **state)
{
    (void)state;
    for (size_t i = 0; i < nvectors; i++) {
        const struct vector *v = &vectors[i];
        assert_int_equal(v->doc[v->len - 98], 0x58);
        assert_int_equal(v->doc[v->len - 97], 0x60);
        corrupt_range(v, v->len - 96, 96, 0x01, DCMS_ATTEST_FAIL_SIGNATURE, "signature");
        corrupt_range(v, v->len - 96, 96, 0xff, DCMS_ATTEST_FAIL_SIGNATURE, "signature");
    }
}

static void test_corrupt_pcr(void **state)
{
    (void)state;
    for (size_t i = 0; i < nvectors; i++) {
        const struct vector *v = &vectors[i];
        /* PCR0 and PCR3 values, found by their position in the pcrs map (keys 0 and 3). */
        static const unsigned char pcrs_key[] = {0x64, 'p', 'c', 'r', 's', 0xb0, 0x00, 0x58, 0x30};
        size_t at = find(v->doc, v->len, pcrs_key, sizeof(pcrs_key)) + sizeof(pcrs_key);
        corrupt_range(v, at, 48, 0x01, DCMS_ATTEST_FAIL_SIGNATURE, "PCR0");
        size_t pcr3 = at + 3 * (48 + 3);
        assert_int_equal(v->doc[pcr3 - 3], 0x03);
        corrupt_range(v, pcr3, 48, 0x80, DCMS_ATTEST_FAIL_SIGNATURE, "PCR3");
    }
}

static void test_corrupt_timestamp(void **state)
{
    (void)state;
    for (size_t i = 0; i < nvectors; i++) {
        const struct vector *v = &vectors[i];
        static const unsigned char key[] = {0x69, 't', 'i', 'm', 'e', 's',
                                            't',  'a', 'm', 'p', 0x1b};
        size_t at = find(v->doc, v->len, key, sizeof(key)) + sizeof(key);
        corrupt_range(v, at, 8, 0x01, DCMS_ATTEST_FAIL_SIGNATURE, "timestamp");
        corrupt_range(v, at, 8, 0xff, DCMS_ATTEST_FAIL_SIGNATURE, "timestamp");
    }
}

static void test_corrupt_certificate(void **state)
{
    (void)state;
    for (size_t i = 0; i < nvectors; i++) {
        const struct vector *v = &vectors[i];
        struct dcms_attest_doc *d;
        enum dcms_attest_failure f;
        char why[DCMS_ATTEST_REASON_MAX];
        assert_int_equal(dcms_attest_parse(v->doc, v->len, &d, &f, why, sizeof(why)), DCMS_OK);
        size_t at = find(v->doc, v->len, d->certificate.ptr, d->certificate.len);
        size_t n = d->certificate.len;
        dcms_attest_doc_free(d);
        corrupt_range(v, at, n, 0x01, DCMS_ATTEST_FAIL_CHAIN, "certificate");
    }
}

static void test_truncated_and_garbage(void **state)
{
    (void)state;
    struct dcms_attest_policy pol;
    const struct vector *v = &vectors[0];
    policy_at_doc_time(&pol, v);
    for (size_t n = 0; n < v->len; n++)
        assert_int_equal(verify_code(aws, v->doc, n, &pol, NULL, 0), DCMS_ATTEST_FAIL_DECODE);

    /* Trailing bytes, and input over the cap. */
    unsigned char *big = calloc(1, DCMS_ATTEST_MAX_DOC_BYTES + 1);
    assert_non_null(big);
    memcpy(big, v->doc, v->len);
    char why[256];
    assert_int_equal(verify_code(aws, big, v->len + 1, &pol, why, sizeof(why)),
                     DCMS_ATTEST_FAIL_DECODE);
    assert_non_null(strstr(why, "trailing bytes"));
    assert_int_equal(verify_code(aws, big, DCMS_ATTEST_MAX_DOC_BYTES + 1, &pol, why, sizeof(why)),
                     DCMS_ATTEST_FAIL_DECODE);
    assert_non_null(strstr(why, "size:"));

    /* Garbage: never valid, always decode or syntax. */
    srand(7);
    for (int round = 0; round < 2000; round++) {
        size_t n = (size_t)(rand() % 600);
        for (size_t k = 0; k < n; k++)
            big[k] = (unsigned char)rand();
        if (round % 2 && n)
            big[0] = 0x84; /* make it look like an array of 4 */
        enum dcms_attest_failure f = verify_code(aws, big, n, &pol, NULL, 0);
        assert_true(f == DCMS_ATTEST_FAIL_DECODE || f == DCMS_ATTEST_FAIL_SYNTAX);
    }
    /* A huge declared length must not be believed. */
    static const unsigned char huge[] = {0x9b, 0xff, 0xff, 0xff, 0xff,
                                         0xff, 0xff, 0xff, 0xff, 0x00};
    assert_int_equal(verify_code(aws, huge, sizeof(huge), &pol, NULL, 0), DCMS_ATTEST_FAIL_DECODE);
    free(big);
}

/* COSE_Sign1 [protected, {}, payload, signature] around the given parts. */
static unsigned char *envelope(const unsigned char *prot, size_t plen, const unsigned char *payload,
                               size_t len, const unsigned char *sig, size_t slen, size_t *out_len)
{
    unsigned char *doc = malloc(32 + plen + len + slen);
    assert_non_null(doc);
    size_t pos = 0;
    doc[pos++] = 0x84;
    pos += attest_cbor_head(doc + pos, 2, plen);
    memcpy(doc + pos, prot, plen);
    pos += plen;
    doc[pos++] = 0xa0;
    pos += attest_cbor_head(doc + pos, 2, len);
    memcpy(doc + pos, payload, len);
    pos += len;
    pos += attest_cbor_head(doc + pos, 2, slen);
    memcpy(doc + pos, sig, slen);
    pos += slen;
    *out_len = pos;
    return doc;
}

/* The payload of vectors[0] with bytes [at, at+cut) replaced by `ins`, re-wrapped. */
struct edited {
    unsigned char *doc;
    size_t len;
};

static struct edited edit_payload(size_t at, size_t cut, const unsigned char *ins, size_t ins_len)
{
    const struct vector *v = &vectors[0];
    struct dcms_attest_doc *d;
    enum dcms_attest_failure f;
    char why[DCMS_ATTEST_REASON_MAX];
    assert_int_equal(dcms_attest_parse(v->doc, v->len, &d, &f, why, sizeof(why)), DCMS_OK);
    size_t n = d->payload.len - cut + ins_len;
    unsigned char *p = malloc(n + 1);
    assert_non_null(p);
    memcpy(p, d->payload.ptr, at);
    memcpy(p + at, ins, ins_len);
    memcpy(p + at + ins_len, d->payload.ptr + at + cut, d->payload.len - at - cut);
    struct edited e;
    e.doc = envelope(d->protected_hdr.ptr, d->protected_hdr.len, p, n, d->signature.ptr,
                     d->signature.len, &e.len);
    free(p);
    dcms_attest_doc_free(d);
    return e;
}

/*
 * A COSE_Sign1 whose payload (or an optional field) is a float, not null:
 * libcbor's cbor_is_null() asserts on floats and aborted the process (found
 * by fuzzing). The parser must refuse it with a reason.
 */
static void test_float_where_null_allowed(void **state)
{
    (void)state;
    static const unsigned char doc[] = {0x84, 0x40, 0xa0, 0xfb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0x40};
    struct dcms_attest_doc *d = NULL;
    enum dcms_attest_failure f;
    char why[DCMS_ATTEST_REASON_MAX];
    assert_int_not_equal(dcms_attest_parse(doc, sizeof(doc), &d, &f, why, sizeof(why)), DCMS_OK);
    assert_null(d);
    assert_non_null(strstr(why, "payload is not a byte string"));
}

/* Where `pat` starts in vectors[0]'s payload. */
static size_t payload_find(const unsigned char *pat, size_t n)
{
    struct dcms_attest_doc *d;
    enum dcms_attest_failure f;
    char why[DCMS_ATTEST_REASON_MAX];
    assert_int_equal(dcms_attest_parse(vectors[0].doc, vectors[0].len, &d, &f, why, sizeof(why)),
                     DCMS_OK);
    size_t at = find(d->payload.ptr, d->payload.len, pat, n);
    dcms_attest_doc_free(d);
    return at;
}

static void expect_edit(size_t at, size_t cut, const unsigned char *ins, size_t ins_len,
                        enum dcms_attest_failure want, const char *reason_part)
{
    struct edited e = edit_payload(at, cut, ins, ins_len);
    struct dcms_attest_policy pol;
    policy_at_doc_time(&pol, &vectors[0]);
    char why[256];
    enum dcms_attest_failure f = verify_code(aws, e.doc, e.len, &pol, why, sizeof(why));
    if (f != want || (reason_part && !strstr(why, reason_part)))
        fail_msg("edit at %zu: failure %s (%s), want %s with \"%s\"", at,
                 f ? dcms_attest_failure_code(f) : "none", why, dcms_attest_failure_code(want),
                 reason_part ? reason_part : "");
    free(e.doc);
}

static void test_payload_syntax(void **state)
{
    (void)state;
    /* Unchanged re-wrap is still valid (the envelope helper is right). */
    expect_edit(0, 0, (const unsigned char *)"", 0, DCMS_ATTEST_OK, NULL);

    static const unsigned char pcrs0[] = {0x64, 'p', 'c', 'r', 's', 0xb0, 0x00, 0x58, 0x30};
    size_t pcrs = payload_find(pcrs0, sizeof(pcrs0));
    static const unsigned char idx32[] = {0x18, 0x20};
    expect_edit(pcrs + 6, 1, idx32, 2, DCMS_ATTEST_FAIL_SYNTAX, "PCR index 32 is out of range");
    static const unsigned char dup1[] = {0x00};
    expect_edit(pcrs + 6 + 51, 1, dup1, 1, DCMS_ATTEST_FAIL_SYNTAX, "PCR 0 appears twice");
    static const unsigned char len47[] = {0x58, 0x2f};
    expect_edit(pcrs + 7, 3, len47, 2, DCMS_ATTEST_FAIL_SYNTAX, "PCR 0 is 47 bytes");
    static const unsigned char pcr_text[] = {0x63, 'a', 'b', 'c'};
    expect_edit(pcrs + 7, 50, pcr_text, 4, DCMS_ATTEST_FAIL_SYNTAX, "PCR 0 is not a byte string");
    static const unsigned char bad_utf8[] = {0x62, 0xc3, 0x28};
    expect_edit(pcrs + 7, 50, bad_utf8, 3, DCMS_ATTEST_FAIL_SYNTAX, "not valid UTF-8");

    static const unsigned char module_id[] = {0x69, 'm', 'o', 'd', 'u', 'l', 'e', '_', 'i', 'd'};
    size_t mod = payload_find(module_id, sizeof(module_id));
    expect_edit(mod + 9, 1, (const unsigned char *)"x", 1, DCMS_ATTEST_FAIL_SYNTAX,
                "payload lacks module_id");
    static const unsigned char digest[] = {0x66, 'S', 'H', 'A', '3', '8', '4'};
    size_t dg = payload_find(digest, sizeof(digest));
    expect_edit(dg + 4, 3, (const unsigned char *)"512", 3, DCMS_ATTEST_FAIL_SYNTAX,
                "digest is not \"SHA384\"");
    static const unsigned char ts[] = {0x69, 't', 'i', 'm', 'e', 's', 't', 'a', 'm', 'p'};
    size_t t = payload_find(ts, sizeof(ts));
    static const unsigned char neg[] = {0x3b};
    expect_edit(t + 10, 1, neg, 1, DCMS_ATTEST_FAIL_SYNTAX, "timestamp is not an unsigned");

    /* Duplicate key: one more entry repeating "digest". */
    {
        const struct vector *v = &vectors[0];
        struct dcms_attest_doc *d;
        enum dcms_attest_failure f;
        char why[256];
        assert_int_equal(dcms_attest_parse(v->doc, v->len, &d, &f, why, sizeof(why)), DCMS_OK);
        static const unsigned char extra[] = {0x66, 'd', 'i', 'g', 'e', 's', 't',
                                              0x66, 'S', 'H', 'A', '3', '8', '4'};
        size_t n = d->payload.len + sizeof(extra);
        unsigned char *p = malloc(n);
        assert_non_null(p);
        memcpy(p, d->payload.ptr, d->payload.len);
        assert_int_equal(p[0], 0xa9);
        p[0] = 0xaa;
        memcpy(p + d->payload.len, extra, sizeof(extra));
        size_t len;
        unsigned char *doc =
            envelope(d->protected_hdr.ptr, d->protected_hdr.len, p, n, d->signature.ptr, 96, &len);
        struct dcms_attest_policy pol;
        policy_at_doc_time(&pol, v);
        assert_int_equal(verify_code(aws, doc, len, &pol, why, sizeof(why)),
                         DCMS_ATTEST_FAIL_SYNTAX);
        assert_non_null(strstr(why, "duplicate payload key \"digest\""));
        free(doc);

        /* The indefinite-length form of the same map decodes (and the signature then fails). */
        memcpy(p, d->payload.ptr, d->payload.len);
        p[0] = 0xbf;
        p[d->payload.len] = 0xff;
        doc = envelope(d->protected_hdr.ptr, d->protected_hdr.len, p, d->payload.len + 1,
                       d->signature.ptr, 96, &len);
        assert_int_equal(verify_code(aws, doc, len, &pol, why, sizeof(why)),
                         DCMS_ATTEST_FAIL_SIGNATURE);
        free(doc);

        /* Wrong alg, short signature, tag 18 accepted, other tags refused. */
        static const unsigned char es256[] = {0xa1, 0x01, 0x26};
        doc = envelope(es256, 3, d->payload.ptr, d->payload.len, d->signature.ptr, 96, &len);
        assert_int_equal(verify_code(aws, doc, len, &pol, why, sizeof(why)),
                         DCMS_ATTEST_FAIL_SYNTAX);
        assert_non_null(strstr(why, "alg is not ES384"));
        free(doc);
        doc = envelope(d->protected_hdr.ptr, d->protected_hdr.len, d->payload.ptr, d->payload.len,
                       d->signature.ptr, 95, &len);
        assert_int_equal(verify_code(aws, doc, len, &pol, why, sizeof(why)),
                         DCMS_ATTEST_FAIL_SYNTAX);
        free(doc);
        unsigned char *tagged = malloc(v->len + 1);
        assert_non_null(tagged);
        tagged[0] = 0xd2;
        memcpy(tagged + 1, v->doc, v->len);
        assert_int_equal(verify_code(aws, tagged, v->len + 1, &pol, why, sizeof(why)),
                         DCMS_ATTEST_OK);
        tagged[0] = 0xd1;
        assert_int_equal(verify_code(aws, tagged, v->len + 1, &pol, why, sizeof(why)),
                         DCMS_ATTEST_FAIL_SYNTAX);
        free(tagged);
        free(p);
        dcms_attest_doc_free(d);
    }
}

static void test_policy(void **state)
{
    (void)state;
    const struct vector *v = NULL;
    for (size_t i = 0; i < nvectors && !v; i++)
        if (!side_is_debug(&vectors[i]) &&
            strcmp(json_string_value(
                       side_at(&vectors[i], "payload", "nonce")
                           ? json_object_get(side_at(&vectors[i], "payload", "nonce"), "encoding")
                           : NULL),
                   "bstr") == 0)
            v = &vectors[i];
    assert_non_null(v);
    struct dcms_attest_doc *d;
    enum dcms_attest_failure f;
    char why[256];
    assert_int_equal(dcms_attest_parse(v->doc, v->len, &d, &f, why, sizeof(why)), DCMS_OK);

    struct dcms_attest_policy pol;
    policy_at_doc_time(&pol, v);
    static const unsigned idx[] = {0, 1, 2, 8};
    for (size_t k = 0; k < 4; k++)
        assert_int_equal(
            dcms_attest_policy_expect_pcr(&pol, idx[k], d->pcrs[idx[k]].ptr, d->pcrs[idx[k]].len),
            DCMS_OK);
    pol.nonce = d->nonce.ptr;
    pol.nonce_len = d->nonce.len;
    assert_int_equal(verify_code(aws, v->doc, v->len, &pol, why, sizeof(why)), DCMS_ATTEST_OK);

    unsigned char other[64];
    memcpy(other, d->pcrs[1].ptr, d->pcrs[1].len);
    other[5] ^= 1;
    assert_int_equal(dcms_attest_policy_expect_pcr(&pol, 1, other, d->pcrs[1].len), DCMS_OK);
    assert_int_equal(verify_code(aws, v->doc, v->len, &pol, why, sizeof(why)),
                     DCMS_ATTEST_FAIL_PCR);
    assert_non_null(strstr(why, "PCR1 differs"));
    assert_int_equal(dcms_attest_policy_expect_pcr(&pol, 1, d->pcrs[1].ptr, d->pcrs[1].len),
                     DCMS_OK);
    assert_int_equal(dcms_attest_policy_expect_pcr(&pol, 40, other, 48), DCMS_ERR_VALIDATION);

    unsigned char nonce[1024];
    memcpy(nonce, d->nonce.ptr, d->nonce.len);
    nonce[0] ^= 1;
    pol.nonce = nonce;
    assert_int_equal(verify_code(aws, v->doc, v->len, &pol, why, sizeof(why)),
                     DCMS_ATTEST_FAIL_NONCE);
    pol.nonce = d->nonce.ptr;
    pol.nonce_len = d->nonce.len - 1;
    assert_int_equal(verify_code(aws, v->doc, v->len, &pol, why, sizeof(why)),
                     DCMS_ATTEST_FAIL_NONCE);
    pol.nonce_len = d->nonce.len;

    /* Freshness: too old, from the future. */
    pol.now_ms = (int64_t)d->timestamp_ms + pol.max_age_ms + 1000;
    pol.check_chain_at_now = false;
    assert_int_equal(verify_code(aws, v->doc, v->len, &pol, why, sizeof(why)),
                     DCMS_ATTEST_FAIL_FRESHNESS);
    pol.now_ms = (int64_t)d->timestamp_ms - pol.max_skew_ms - 1000;
    assert_int_equal(verify_code(aws, v->doc, v->len, &pol, why, sizeof(why)),
                     DCMS_ATTEST_FAIL_FRESHNESS);
    assert_non_null(strstr(why, "in the future"));
    pol.now_ms = (int64_t)d->timestamp_ms;

    /* Required public key. */
    static const unsigned char key[] = "not the key";
    pol.public_key = key;
    pol.public_key_len = sizeof(key);
    f = verify_code(aws, v->doc, v->len, &pol, why, sizeof(why));
    assert_int_equal(f, DCMS_ATTEST_FAIL_PUBLIC_KEY);
    dcms_attest_doc_free(d);
}

static void test_chain_cache(void **state)
{
    (void)state;
    struct dcms_attest_verifier *v;
    assert_int_equal(
        dcms_attest_verifier_new(dcms_aws_nitro_root_g1, dcms_aws_nitro_root_g1_len, &v, NULL),
        DCMS_OK);
    struct dcms_attest_policy pol;
    policy_at_doc_time(&pol, &vectors[0]);
    pol.allow_debug = true;
    for (int i = 0; i < 3; i++)
        assert_int_equal(verify_code(v, vectors[0].doc, vectors[0].len, &pol, NULL, 0),
                         DCMS_ATTEST_OK);
    assert_int_equal(v->full_verifications, 1);
    assert_int_equal(v->cache_hits, 2);
    /* A corrupted document from the cached chain still fails. */
    unsigned char *doc = dup_bytes(vectors[0].doc, vectors[0].len);
    doc[vectors[0].len - 1] ^= 1;
    assert_int_equal(verify_code(v, doc, vectors[0].len, &pol, NULL, 0),
                     DCMS_ATTEST_FAIL_SIGNATURE);
    free(doc);
    /* A root that is not AWS's refuses every document at the pin. */
    dcms_attest_verifier_free(v);
}

/* ---- local module ------------------------------------------------------ */

static char tmpdir[256];

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void rm_rf(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char p[512];
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            rm_rf(p);
        else
            unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

static void test_local_round_trip(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/dcms-attest-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    char ca[300], image[300], launcher[300], config[300];
    snprintf(ca, sizeof(ca), "%s/attestation", tmpdir);
    snprintf(image, sizeof(image), "%s/image.bin", tmpdir);
    snprintf(launcher, sizeof(launcher), "%s/launcher", tmpdir);
    snprintf(config, sizeof(config), "%s/config.json", tmpdir);
    write_file(image, "workload image v1");
    write_file(launcher, "launcher");
    write_file(config, "{\"cpu\": 2}");
    /* Any certificate will do as the image signer: the AWS root's, from the vectors. */
    size_t cert_len;
    char *cert = dcms_test_read_file(DCMS_VECTORS_DIR "/nitro/aws_nitro_root_g1.pem", &cert_len);

    struct dcms_attest_ctx *ctx;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    if (dcms_attest_ctx_new(NULL, ca, &ctx, &ei))
        fail_msg("%s", ei.message);
    struct stat st;
    assert_int_equal(stat(ca, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    static const char *const files[] = {"root.key", "root.crt", "intermediate.key",
                                        "intermediate.crt"};
    for (size_t i = 0; i < 4; i++) {
        char p[400];
        snprintf(p, sizeof(p), "%s/%s", ca, files[i]);
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
    }

    unsigned char nonce[20] = {1, 2, 3}, user[600] = {9}, pub[91] = {4};
    struct dcms_attest_workload w = {.image_path = image,
                                     .launcher_path = launcher,
                                     .config_path = config,
                                     .signing_cert = (const unsigned char *)cert,
                                     .signing_cert_len = cert_len,
                                     .nonce = nonce,
                                     .nonce_len = sizeof(nonce),
                                     .user_data = user,
                                     .user_data_len = sizeof(user),
                                     .public_key = pub,
                                     .public_key_len = sizeof(pub)};
    unsigned char *doc;
    size_t len;
    if (dcms_attest_local_issue(ctx->module, &w, &doc, &len, &ei))
        fail_msg("%s", ei.message);

    struct dcms_attest_policy pol;
    dcms_attest_policy_init(&pol);
    const char *paths[] = {image, launcher, config};
    unsigned char m[DCMS_ATTEST_SHA384_LEN];
    for (unsigned i = 0; i < 3; i++) {
        assert_int_equal(dcms_attest_measure_file(paths[i], m, NULL), DCMS_OK);
        assert_int_equal(dcms_attest_policy_expect_pcr(&pol, i, m, sizeof(m)), DCMS_OK);
    }
    /* PCR8 as Nitro measures the signing certificate (the extend of its DER). */
    assert_int_equal(dcms_attest_signer_pcr8((const unsigned char *)cert, cert_len, m, NULL),
                     DCMS_OK);
    assert_int_equal(dcms_attest_policy_expect_pcr(&pol, 8, m, sizeof(m)), DCMS_OK);
    pol.nonce = nonce;
    pol.nonce_len = sizeof(nonce);
    pol.public_key = pub;
    pol.public_key_len = sizeof(pub);
    struct dcms_attest_report rep;
    assert_int_equal(dcms_attest_verify(ctx->local, doc, len, &pol, &rep), DCMS_OK);
    if (!rep.valid)
        for (size_t k = 0; k < rep.nchecks; k++)
            print_error("  %s %d %s\n", rep.checks[k].name, rep.checks[k].ok, rep.checks[k].reason);
    assert_true(rep.valid);
    assert_int_equal(rep.doc->user_data.len, sizeof(user));
    assert_memory_equal(rep.doc->public_key.ptr, pub, sizeof(pub));
    json_t *j = dcms_attest_report_to_json(&rep);
    assert_non_null(j);
    assert_true(json_is_true(json_object_get(j, "valid")));
    assert_true(json_is_null(json_object_get(j, "failure")));
    assert_int_equal(strlen(json_string_value(json_object_get(
                         json_object_get(json_object_get(j, "document"), "pcrs"), "0"))),
                     96);
    json_decref(j);
    dcms_attest_report_release(&rep);

    /* The same document fails with the AWS root, at the pin. */
    char why[256];
    assert_int_equal(verify_code(ctx->aws, doc, len, &pol, why, sizeof(why)),
                     DCMS_ATTEST_FAIL_CHAIN);
    assert_non_null(strstr(why, "root_pinned"));
    free(doc);

    /* A second document: new leaf under the cached chain. */
    if (dcms_attest_local_issue(ctx->module, &w, &doc, &len, &ei))
        fail_msg("%s", ei.message);
    assert_int_equal(verify_code(ctx->local, doc, len, &pol, why, sizeof(why)), DCMS_ATTEST_OK);
    assert_int_equal(ctx->local->leaf_verifications, 1);
    free(doc);

    /* One byte of the image changes PCR0, and the policy refuses it. */
    write_file(image, "workload image v2");
    if (dcms_attest_local_issue(ctx->module, &w, &doc, &len, &ei))
        fail_msg("%s", ei.message);
    assert_int_equal(verify_code(ctx->local, doc, len, &pol, why, sizeof(why)),
                     DCMS_ATTEST_FAIL_PCR);
    assert_non_null(strstr(why, "PCR0 differs"));
    free(doc);

    /* A PCR0 measured once (a sealed image) is reported as given; the file is not read. */
    unsigned char pcr0[DCMS_ATTEST_SHA384_LEN];
    char moved[700];
    snprintf(moved, sizeof(moved), "%s.moved", image);
    write_file(image, "workload image v1");
    assert_int_equal(dcms_attest_measure_file(image, pcr0, NULL), DCMS_OK);
    assert_int_equal(rename(image, moved), 0);
    w.image_pcr0 = pcr0;
    if (dcms_attest_local_issue(ctx->module, &w, &doc, &len, &ei))
        fail_msg("%s", ei.message);
    assert_int_equal(verify_code(ctx->local, doc, len, &pol, why, sizeof(why)), DCMS_ATTEST_OK);
    free(doc);
    pcr0[0] ^= 1;
    if (dcms_attest_local_issue(ctx->module, &w, &doc, &len, &ei))
        fail_msg("%s", ei.message);
    assert_int_equal(verify_code(ctx->local, doc, len, &pol, why, sizeof(why)),
                     DCMS_ATTEST_FAIL_PCR);
    free(doc);
    w.image_pcr0 = NULL;
    assert_int_equal(rename(moved, image), 0);

    /* Debug mode: zero PCRs, refused unless allowed. */
    w.debug = true;
    if (dcms_attest_local_issue(ctx->module, &w, &doc, &len, &ei))
        fail_msg("%s", ei.message);
    struct dcms_attest_policy dbg;
    dcms_attest_policy_init(&dbg);
    assert_int_equal(verify_code(ctx->local, doc, len, &dbg, why, sizeof(why)),
                     DCMS_ATTEST_FAIL_DEBUG);
    dbg.allow_debug = true;
    assert_int_equal(verify_code(ctx->local, doc, len, &dbg, why, sizeof(why)), DCMS_ATTEST_OK);
    free(doc);

    /* Reopening loads the same CA. */
    size_t n1, n2;
    char *root1 = strdup(dcms_attest_local_root_pem(ctx->module, &n1));
    dcms_attest_ctx_free(ctx);
    if (dcms_attest_ctx_new(NULL, ca, &ctx, &ei))
        fail_msg("%s", ei.message);
    const char *root2 = dcms_attest_local_root_pem(ctx->module, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(root1, root2, n1);
    free(root1);
    w.debug = false;
    w.nonce = NULL;
    w.user_data = NULL;
    w.public_key = NULL;
    if (dcms_attest_local_issue(ctx->module, &w, &doc, &len, &ei))
        fail_msg("%s", ei.message);
    dcms_attest_policy_init(&dbg);
    assert_int_equal(verify_code(ctx->local, doc, len, &dbg, why, sizeof(why)), DCMS_ATTEST_OK);
    free(doc);
    free(cert);
    dcms_attest_ctx_free(ctx);
    rm_rf(tmpdir);
}

static void test_base64_and_hex(void **state)
{
    (void)state;
    unsigned char *out;
    size_t n;
    assert_int_equal(attest_base64_decode("aGVsbG8=", 8, 100, &out, &n), DCMS_OK);
    assert_int_equal(n, 5);
    assert_memory_equal(out, "hello", 5);
    free(out);
    assert_int_equal(attest_base64_decode("aGVsbG8", 7, 100, &out, &n), DCMS_OK);
    assert_int_equal(n, 5);
    free(out);
    assert_int_equal(attest_base64_decode("aGVsbG8==", 9, 100, &out, &n), DCMS_ERR_VALIDATION);
    assert_int_equal(attest_base64_decode("aGVs_G8", 7, 100, &out, &n), DCMS_ERR_VALIDATION);
    assert_int_equal(attest_base64_decode("aGVsbG9", 7, 100, &out, &n), DCMS_ERR_VALIDATION);
    assert_int_equal(attest_base64_decode("aGVsbG8", 7, 4, &out, &n), DCMS_ERR_TOO_LARGE);
    assert_int_equal(attest_base64_decode("", 0, 4, &out, &n), DCMS_ERR_VALIDATION);
    unsigned char b[4];
    assert_true(attest_unhex("0aFf", 4, b, sizeof(b), &n));
    assert_int_equal(n, 2);
    assert_int_equal(b[1], 0xff);
    assert_false(attest_unhex("0aF", 3, b, sizeof(b), &n));
    assert_false(attest_unhex("0g", 2, b, sizeof(b), &n));
    assert_false(attest_unhex("0011223344", 10, b, sizeof(b), &n));
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_embedded_root_is_the_vector),
        cmocka_unit_test(test_vectors_verify_at_document_time),
        cmocka_unit_test(test_vectors_fail_now_on_expired_leaf),
        cmocka_unit_test(test_corrupt_signature),
        cmocka_unit_test(test_float_where_null_allowed),
        cmocka_unit_test(test_corrupt_pcr),
        cmocka_unit_test(test_corrupt_timestamp),
        cmocka_unit_test(test_corrupt_certificate),
        cmocka_unit_test(test_truncated_and_garbage),
        cmocka_unit_test(test_payload_syntax),
        cmocka_unit_test(test_policy),
        cmocka_unit_test(test_chain_cache),
        cmocka_unit_test(test_local_round_trip),
        cmocka_unit_test(test_base64_and_hex),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, setup, teardown);
}
