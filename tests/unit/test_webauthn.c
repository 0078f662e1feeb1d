/*
 * WebAuthn verification (src/iam/webauthn.c) with the real registrations and
 * assertions in tests/vectors/webauthn: every positive vector is accepted
 * with the values upstream asserts (credential id, COSE key, algorithm,
 * AAGUID, counter, flags), every negative one is refused, by the same
 * functions the routes call. Then hostile input: truncations, every single
 * bit flip of an attestation object, deep CBOR nesting, huge declared
 * lengths, duplicate keys and trailing bytes must be refused without a
 * crash, and the counter rule.
 */
#include "testutil.h"

#include <dirent.h>

#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/x509v3.h>
#include <sodium.h>

#include "dcms/credentials.h"
#include "dcms/crypto.h"
#include "iam/iam_core.h"
#include "iam/webauthn.h"

#define VDIR DCMS_VECTORS_DIR "/webauthn"

/* A base64url member decoded into a malloc'd buffer. */
static unsigned char *b64m(const json_t *o, const char *key, size_t *n)
{
    const char *s = json_string_value(json_object_get(o, key));
    if (!s)
        fail_msg("vector member %s missing", key);
    size_t cap = strlen(s) + 4;
    unsigned char *p = malloc(cap);
    assert_non_null(p);
    if (!iam_b64url_decode(p, cap, s, strlen(s), n))
        fail_msg("vector member %s is not base64url", key);
    return p;
}

static json_t *load_vector(const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", VDIR, name);
    json_error_t err;
    json_t *v = json_load_file(path, 0, &err);
    if (!v)
        fail_msg("%s: %s", path, err.text);
    return v;
}

static bool expect_success(const json_t *v)
{
    return strcmp(json_string_value(json_object_get(json_object_get(v, "expected"), "outcome")),
                  "success") == 0;
}

static bool require_uv(const json_t *v)
{
    return json_is_true(json_object_get(json_object_get(v, "policy"), "require_user_verification"));
}

/* Runs one registration vector; returns whether it was accepted. */
static bool run_registration(const json_t *v, struct wa_registration *reg, const char *origin_over,
                             const char *challenge_over)
{
    size_t alen, clen;
    unsigned char *att = b64m(v, "attestation_object", &alen);
    unsigned char *cdj = b64m(v, "client_data_json", &clen);
    struct wa_rp rp = {json_string_value(json_object_get(v, "rp_id")),
                       origin_over ? origin_over : json_string_value(json_object_get(v, "origin"))};
    const char *challenge =
        challenge_over ? challenge_over : json_string_value(json_object_get(v, "challenge"));
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    enum dcms_err e =
        wa_verify_registration(att, alen, cdj, clen, challenge, &rp, require_uv(v), reg, &ei);
    if (e && getenv("WA_DEBUG"))
        print_message("  %s: %s\n", json_string_value(json_object_get(v, "name")), ei.message);
    /* reg points into att: compare before freeing. */
    if (!e) {
        const json_t *x = json_object_get(v, "expected");
        size_t n;
        unsigned char *id = b64m(x, "credential_id", &n);
        assert_int_equal(reg->ad.cred_id_len, n);
        assert_memory_equal(reg->ad.cred_id, id, n);
        free(id);
        unsigned char *cose = b64m(x, "credential_public_key_cose", &n);
        assert_int_equal(reg->ad.cose_key_len, n);
        assert_memory_equal(reg->ad.cose_key, cose, n);
        free(cose);
        assert_int_equal(reg->alg, json_integer_value(json_object_get(x, "credential_alg")));
        assert_string_equal(reg->aaguid, json_string_value(json_object_get(x, "aaguid")));
        assert_int_equal(reg->ad.sign_count, json_integer_value(json_object_get(x, "sign_count")));
        assert_int_equal(reg->ad.flags, json_integer_value(json_object_get(x, "flags")));
        assert_int_equal(reg->user_verified,
                         json_is_true(json_object_get(x, "user_verified")) ? 1 : 0);
        const json_t *a = json_object_get(x, "attestation");
        assert_string_equal(reg->fmt, json_string_value(json_object_get(a, "fmt")));
        const char *type = json_string_value(json_object_get(a, "type"));
        assert_true(strncmp(type, reg->att_type, strlen(reg->att_type)) == 0);
    }
    free(att);
    free(cdj);
    return e == DCMS_OK;
}

static bool run_assertion(const json_t *v, struct wa_assertion *out, const char *challenge_over)
{
    struct wa_assertion_in in;
    unsigned char *ad = b64m(v, "authenticator_data", &in.auth_data_len);
    unsigned char *cdj = b64m(v, "client_data_json", &in.client_data_len);
    unsigned char *sig = b64m(v, "signature", &in.signature_len);
    unsigned char *cose = b64m(v, "credential_public_key_cose", &in.cose_key_len);
    in.auth_data = ad;
    in.client_data = cdj;
    in.signature = sig;
    in.cose_key = cose;
    struct wa_rp rp = {json_string_value(json_object_get(v, "rp_id")),
                       json_string_value(json_object_get(v, "origin"))};
    const char *challenge =
        challenge_over ? challenge_over : json_string_value(json_object_get(v, "challenge"));
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    enum dcms_err e = wa_verify_assertion(&in, challenge, &rp, require_uv(v), out, &ei);
    if (!e && !wa_counter_ok((uint32_t)json_integer_value(json_object_get(v, "stored_sign_count")),
                             out->sign_count))
        e = DCMS_ERR_VALIDATION;
    if (e && getenv("WA_DEBUG"))
        print_message("  %s: %s\n", json_string_value(json_object_get(v, "name")), ei.message);
    free(ad);
    free(cdj);
    free(sig);
    free(cose);
    return e == DCMS_OK;
}

/* Every vector in the directory, with its expected outcome. */
static void all_vectors(void **state)
{
    (void)state;
    DIR *d = opendir(VDIR);
    assert_non_null(d);
    int regs = 0, asserts = 0, negatives = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l < 6 || strcmp(de->d_name + l - 5, ".json") != 0)
            continue;
        json_t *v = load_vector(de->d_name);
        bool want = expect_success(v);
        bool got;
        const char *kind = json_string_value(json_object_get(v, "kind"));
        if (strcmp(kind, "registration") == 0) {
            struct wa_registration reg;
            got = run_registration(v, &reg, NULL, NULL);
            regs++;
        } else {
            struct wa_assertion as;
            got = run_assertion(v, &as, NULL);
            if (got) {
                const json_t *x = json_object_get(v, "expected");
                assert_int_equal(as.sign_count,
                                 json_integer_value(json_object_get(x, "sign_count")));
                assert_int_equal(as.user_verified,
                                 json_is_true(json_object_get(x, "user_verified")) ? 1 : 0);
            }
            asserts++;
        }
        if (got != want)
            fail_msg("%s: expected %s, got %s", de->d_name, want ? "success" : "failure",
                     got ? "success" : "failure");
        negatives += !want;
        json_decref(v);
    }
    closedir(d);
    assert_int_equal(regs, 9);
    assert_int_equal(asserts, 11);
    assert_int_equal(negatives, 6);
}

/* The positive vectors under the wrong challenge, origin or relying party are refused. */
static void wrong_context_refused(void **state)
{
    (void)state;
    json_t *v = load_vector("reg_packed_x5c_es256_yubikey_pywebauthn.json");
    struct wa_registration reg;
    assert_true(run_registration(v, &reg, NULL, NULL));
    assert_false(run_registration(v, &reg, "http://evil.example", NULL));
    assert_false(run_registration(v, &reg, NULL, "AAAA"));
    assert_true(run_registration(v, &reg, "https://a.example, http://localhost:5000", NULL));
    json_object_set_new(v, "rp_id", json_string("example.com"));
    assert_false(run_registration(v, &reg, NULL, NULL));
    json_decref(v);

    v = load_vector("auth_es256_uv1_pywebauthn.json");
    struct wa_assertion as;
    assert_true(run_assertion(v, &as, NULL));
    assert_false(
        run_assertion(v, &as, "6zrSRX8CxwPSXEArXyXL2tpb6rB7Star0rLVIj5rvf74mZKF5ir715Xmgz5t"));
    /* A registration's clientDataJSON is not an assertion's (type webauthn.create). */
    json_t *r = load_vector("reg_none_es256_pywebauthn.json");
    json_object_set(v, "client_data_json", json_object_get(r, "client_data_json"));
    assert_false(run_assertion(v, &as, json_string_value(json_object_get(r, "challenge"))));
    json_decref(r);
    json_decref(v);
}

static void counter_rule(void **state)
{
    (void)state;
    assert_true(wa_counter_ok(0, 0));
    assert_true(wa_counter_ok(0, 1));
    assert_true(wa_counter_ok(77, 78));
    assert_false(wa_counter_ok(78, 78));
    assert_false(wa_counter_ok(78, 77));
    assert_false(wa_counter_ok(5, 0));
    assert_true(wa_counter_ok(0xfffffffe, 0xffffffff));
}

/* Every truncation and every single bit flip of an attestation object is survived; in a
 * "packed" statement, which signs the whole authenticator data, no flip inside the
 * authenticator data is accepted. (Flips inside the attestation certificate may pass: chains
 * are not validated, see webauthn.c; a "none" statement signs nothing.) */
static void hostile_attestation_objects(void **state)
{
    (void)state;
    const char *names[] = {
        "reg_packed_x5c_es256_yubikey_pywebauthn.json", "reg_packed_self_es256_simplewebauthn.json",
        "reg_packed_x5c_eddsa_yubikey_pywebauthn.json", "reg_none_rs256_simplewebauthn.json",
        "reg_fidou2f_es256_simplewebauthn.json"};
    for (size_t t = 0; t < sizeof(names) / sizeof(names[0]); t++) {
        json_t *v = load_vector(names[t]);
        size_t alen, clen;
        unsigned char *att = b64m(v, "attestation_object", &alen);
        unsigned char *cdj = b64m(v, "client_data_json", &clen);
        struct wa_rp rp = {json_string_value(json_object_get(v, "rp_id")),
                           json_string_value(json_object_get(v, "origin"))};
        const char *challenge = json_string_value(json_object_get(v, "challenge"));
        struct wa_registration reg;
        struct dcms_errinfo ei;
        dcms_errinfo_init(&ei, NULL);
        assert_int_equal(
            wa_verify_registration(att, alen, cdj, clen, challenge, &rp, false, &reg, &ei),
            DCMS_OK);
        size_t ad_start = (size_t)(reg.ad.rp_id_hash - att);
        size_t ad_end = (size_t)(reg.ad.cose_key + reg.ad.cose_key_len - att);
        bool packed = strcmp(reg.fmt, "packed") == 0;
        for (size_t n = 0; n < alen; n++) {
            dcms_errinfo_init(&ei, NULL);
            assert_int_not_equal(
                wa_verify_registration(att, n, cdj, clen, challenge, &rp, false, &reg, &ei),
                DCMS_OK);
        }
        for (size_t i = 0; i < alen * 8; i++) {
            att[i / 8] ^= (unsigned char)(1u << (i % 8));
            dcms_errinfo_init(&ei, NULL);
            enum dcms_err e =
                wa_verify_registration(att, alen, cdj, clen, challenge, &rp, false, &reg, &ei);
            att[i / 8] ^= (unsigned char)(1u << (i % 8));
            if (packed && e == DCMS_OK && i / 8 >= ad_start && i / 8 < ad_end)
                fail_msg("%s: bit %zu of the authenticator data flipped unnoticed", names[t], i);
        }
        free(att);
        free(cdj);
        json_decref(v);
    }
}

static void hostile_cbor(void **state)
{
    (void)state;
    struct wa_authdata ad;
    int alg;
    EVP_PKEY *k;
    /* 1000 nested arrays inside a COSE key. */
    unsigned char deep[1100];
    deep[0] = 0xa1; /* map of 1 */
    deep[1] = 0x01;
    memset(deep + 2, 0x81, 1000);
    deep[1002] = 0x00;
    assert_non_null(wa_cose_key_decode(deep, 1003, &alg, &k));
    /* A byte string declaring 2^63 bytes. */
    const unsigned char huge[] = {0xa1, 0x20, 0x5b, 0x7f, 0xff, 0xff,
                                  0xff, 0xff, 0xff, 0xff, 0xff, 0x00};
    assert_non_null(wa_cose_key_decode(huge, sizeof(huge), &alg, &k));
    /* A map declaring 2^32 entries. */
    const unsigned char many[] = {0xba, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02};
    assert_non_null(wa_cose_key_decode(many, sizeof(many), &alg, &k));
    /* Indefinite lengths. */
    const unsigned char indef[] = {0xbf, 0x01, 0x02, 0xff};
    assert_non_null(wa_cose_key_decode(indef, sizeof(indef), &alg, &k));
    /* Duplicate labels and trailing bytes on a valid key. */
    json_t *v = load_vector("auth_es256_uv0_pywebauthn.json");
    size_t n;
    unsigned char *cose = b64m(v, "credential_public_key_cose", &n);
    assert_null(wa_cose_key_decode(cose, n, &alg, &k));
    assert_int_equal(alg, WA_ALG_ES256);
    EVP_PKEY_free(k);
    unsigned char *longer = malloc(n + 4);
    memcpy(longer, cose, n);
    longer[n] = 0x00;
    assert_non_null(wa_cose_key_decode(longer, n + 1, &alg, &k));
    /* Same map with kty repeated: bump the count, append 01 02. */
    memcpy(longer, cose, n);
    longer[0] = (unsigned char)(cose[0] + 1);
    longer[n] = 0x01;
    longer[n + 1] = 0x02;
    assert_non_null(wa_cose_key_decode(longer, n + 2, &alg, &k));
    /* A point off the curve: flip a bit of y. */
    memcpy(longer, cose, n);
    longer[n - 1] ^= 1;
    assert_non_null(wa_cose_key_decode(longer, n, &alg, &k));
    free(longer);
    free(cose);
    /* Authenticator data: short, trailing bytes, AT with a truncated key. */
    unsigned char *raw = b64m(v, "authenticator_data", &n);
    assert_null(wa_authdata_parse(raw, n, &ad));
    assert_non_null(wa_authdata_parse(raw, n - 1, &ad));
    unsigned char big[64] = {0};
    memcpy(big, raw, n);
    assert_non_null(wa_authdata_parse(big, n + 1, &ad));
    big[32] |= WA_FLAG_AT;
    assert_non_null(wa_authdata_parse(big, n, &ad));
    big[32] = WA_FLAG_UP | WA_FLAG_BS;
    assert_non_null(wa_authdata_parse(big, n, &ad));
    free(raw);
    json_decref(v);
    /* Signatures of the wrong algorithm for the key are refused, not crashed on. */
    assert_false(wa_signature_ok(NULL, WA_ALG_ES256, (const unsigned char *)"x", 1,
                                 (const unsigned char *)"y", 1));
}

/* ---- packed x5c attestation made here: the leaf certificate rules of WebAuthn §8.2.1 ---- */

struct wbuf {
    unsigned char b[8192];
    size_t n;
};

static void put(struct wbuf *w, const void *p, size_t n)
{
    assert_true(w->n + n <= sizeof(w->b));
    memcpy(w->b + w->n, p, n);
    w->n += n;
}

static void cb_head(struct wbuf *w, unsigned major, uint64_t v)
{
    unsigned char h[3];
    if (v < 24) {
        h[0] = (unsigned char)(major << 5 | v);
        put(w, h, 1);
    } else if (v < 256) {
        h[0] = (unsigned char)(major << 5 | 24);
        h[1] = (unsigned char)v;
        put(w, h, 2);
    } else {
        h[0] = (unsigned char)(major << 5 | 25);
        h[1] = (unsigned char)(v >> 8);
        h[2] = (unsigned char)v;
        put(w, h, 3);
    }
}

static void cb_text(struct wbuf *w, const char *s)
{
    cb_head(w, 3, strlen(s));
    put(w, s, strlen(s));
}

static void cb_bytes(struct wbuf *w, const void *p, size_t n)
{
    cb_head(w, 2, n);
    put(w, p, n);
}

enum leaf_flaw { LEAF_OK, LEAF_NO_OU, LEAF_CA, LEAF_AAGUID, LEAF_V1 };

/* A self-signed attestation certificate for `k` with the given flaw. */
static X509 *leaf_cert(EVP_PKEY *k, enum leaf_flaw flaw, const unsigned char aaguid[16])
{
    X509 *x = X509_new();
    assert_non_null(x);
    assert_int_equal(X509_set_version(x, flaw == LEAF_V1 ? 0 : 2), 1);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_NAME *nm = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(nm, "C", MBSTRING_ASC, (const unsigned char *)"SE", -1, -1, 0);
    X509_NAME_add_entry_by_txt(nm, "O", MBSTRING_ASC, (const unsigned char *)"dcms test", -1, -1,
                               0);
    X509_NAME_add_entry_by_txt(nm, "OU", MBSTRING_ASC,
                               (const unsigned char *)(flaw == LEAF_NO_OU
                                                           ? "Something Else"
                                                           : "Authenticator Attestation"),
                               -1, -1, 0);
    X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)"dcms key", -1, -1,
                               0);
    X509_set_issuer_name(x, nm);
    X509_set_pubkey(x, k);
    if (flaw != LEAF_V1) {
        X509V3_CTX ctx;
        X509V3_set_ctx_nodb(&ctx);
        X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
        X509_EXTENSION *bc =
            X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints,
                                flaw == LEAF_CA ? "critical,CA:TRUE" : "critical,CA:FALSE");
        assert_non_null(bc);
        X509_add_ext(x, bc, -1);
        X509_EXTENSION_free(bc);
        unsigned char val[18] = {0x04, 16};
        memcpy(val + 2, aaguid, 16);
        if (flaw == LEAF_AAGUID)
            val[5] ^= 1;
        ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
        ASN1_OCTET_STRING_set(os, val, sizeof(val));
        ASN1_OBJECT *oid = OBJ_txt2obj("1.3.6.1.4.1.45724.1.1.4", 1);
        X509_EXTENSION *ext = X509_EXTENSION_create_by_OBJ(NULL, oid, 0, os);
        X509_add_ext(x, ext, -1);
        X509_EXTENSION_free(ext);
        ASN1_OBJECT_free(oid);
        ASN1_OCTET_STRING_free(os);
    }
    assert_true(X509_sign(x, k, EVP_sha256()) > 0);
    return x;
}

/* Registers a fresh ES256 credential with a packed x5c statement whose leaf has `flaw`. */
static enum dcms_err packed_x5c(enum leaf_flaw flaw, bool break_sig)
{
    static const char cdj[] = "{\"type\":\"webauthn.create\",\"challenge\":\"Y2hhbGxlbmdl\","
                              "\"origin\":\"https://dcms.example\"}";
    EVP_PKEY *cred = EVP_EC_gen("P-256"), *att = EVP_EC_gen("P-256");
    assert_non_null(cred);
    assert_non_null(att);
    unsigned char pub[65], aaguid[16], cred_id[16];
    size_t publen = 0;
    assert_int_equal(EVP_PKEY_get_octet_string_param(cred, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pub,
                                                     sizeof(pub), &publen),
                     1);
    randombytes_buf(aaguid, sizeof(aaguid));
    randombytes_buf(cred_id, sizeof(cred_id));
    struct wbuf ad = {.n = 0}, cose = {.n = 0}, att_obj = {.n = 0};
    /* COSE key {1: 2, 3: -7, -1: 1, -2: x, -3: y}. */
    cb_head(&cose, 5, 5);
    cb_head(&cose, 0, 1);
    cb_head(&cose, 0, 2);
    cb_head(&cose, 0, 3);
    cb_head(&cose, 1, 6);
    cb_head(&cose, 1, 0);
    cb_head(&cose, 0, 1);
    cb_head(&cose, 1, 1);
    cb_bytes(&cose, pub + 1, 32);
    cb_head(&cose, 1, 2);
    cb_bytes(&cose, pub + 33, 32);
    unsigned char h[32];
    assert_int_equal(dcms_digest_sha256("dcms.example", 12, h), DCMS_OK);
    put(&ad, h, 32);
    const unsigned char flags_count[5] = {WA_FLAG_UP | WA_FLAG_UV | WA_FLAG_AT, 0, 0, 0, 9};
    put(&ad, flags_count, 5);
    put(&ad, aaguid, 16);
    const unsigned char idlen[2] = {0, 16};
    put(&ad, idlen, 2);
    put(&ad, cred_id, 16);
    put(&ad, cose.b, cose.n);
    /* The attestation signature over authData || SHA-256(clientDataJSON). */
    struct wbuf tbs = {.n = 0};
    put(&tbs, ad.b, ad.n);
    assert_int_equal(dcms_digest_sha256(cdj, strlen(cdj), h), DCMS_OK);
    put(&tbs, h, 32);
    unsigned char sig[128];
    size_t siglen = sizeof(sig);
    EVP_MD_CTX *mctx = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestSignInit(mctx, NULL, EVP_sha256(), NULL, att), 1);
    assert_int_equal(EVP_DigestSign(mctx, sig, &siglen, tbs.b, tbs.n), 1);
    EVP_MD_CTX_free(mctx);
    if (break_sig)
        sig[siglen - 2] ^= 1;
    X509 *leaf = leaf_cert(att, flaw, aaguid);
    unsigned char *der = NULL;
    int derlen = i2d_X509(leaf, &der);
    assert_true(derlen > 0);
    cb_head(&att_obj, 5, 3);
    cb_text(&att_obj, "fmt");
    cb_text(&att_obj, "packed");
    cb_text(&att_obj, "attStmt");
    cb_head(&att_obj, 5, 3);
    cb_text(&att_obj, "alg");
    cb_head(&att_obj, 1, 6);
    cb_text(&att_obj, "sig");
    cb_bytes(&att_obj, sig, siglen);
    cb_text(&att_obj, "x5c");
    cb_head(&att_obj, 4, 1);
    cb_bytes(&att_obj, der, (size_t)derlen);
    cb_text(&att_obj, "authData");
    cb_bytes(&att_obj, ad.b, ad.n);
    OPENSSL_free(der);
    X509_free(leaf);
    struct wa_rp rp = {"dcms.example", "https://dcms.example"};
    struct wa_registration reg;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    enum dcms_err e = wa_verify_registration(att_obj.b, att_obj.n, (const unsigned char *)cdj,
                                             strlen(cdj), "Y2hhbGxlbmdl", &rp, true, &reg, &ei);
    if (!e) {
        assert_string_equal(reg.att_type, "basic");
        assert_int_equal(reg.ad.sign_count, 9);
        assert_true(reg.user_verified);
    }
    EVP_PKEY_free(cred);
    EVP_PKEY_free(att);
    return e;
}

static void packed_leaf_rules(void **state)
{
    (void)state;
    assert_int_equal(packed_x5c(LEAF_OK, false), DCMS_OK);
    assert_int_equal(packed_x5c(LEAF_OK, true), DCMS_ERR_VALIDATION);
    assert_int_equal(packed_x5c(LEAF_NO_OU, false), DCMS_ERR_VALIDATION);
    assert_int_equal(packed_x5c(LEAF_CA, false), DCMS_ERR_VALIDATION);
    assert_int_equal(packed_x5c(LEAF_AAGUID, false), DCMS_ERR_VALIDATION);
    assert_int_equal(packed_x5c(LEAF_V1, false), DCMS_ERR_VALIDATION);
}

static int init(void **state)
{
    (void)state;
    return dcms_crypto_init() ? -1 : 0;
}

/* Base64url of `n` bytes into a fresh string. */
static char *b64u(const void *p, size_t n)
{
    char *s = malloc(iam_b64url_len(n));
    assert_non_null(s);
    iam_b64url_encode(s, p, n);
    return s;
}

/*
 * dcms_iam_webauthn_recheck_assertion: what /verify re-checks of a stored
 * assertion. Each broken part is refused with what does not hold.
 */
static void recheck_stored_assertion(void **state)
{
    (void)state;
    unsigned char hash[32], other[32], ad[37];
    memset(hash, 0x11, sizeof(hash));
    memset(other, 0x22, sizeof(other));
    memset(ad, 0, sizeof(ad));
    ad[32] = WA_FLAG_UP | WA_FLAG_UV;
    char *chal = b64u(hash, 32), cdj[256];
    snprintf(cdj, sizeof(cdj),
             "{\"type\":\"webauthn.get\",\"challenge\":\"%s\",\"origin\":\"https://x\"}", chal);
    char *cd = b64u(cdj, strlen(cdj)), *adb = b64u(ad, sizeof(ad));
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(dcms_iam_webauthn_recheck_assertion(hash, 32, cd, adb, true, &ei), DCMS_OK);

    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(dcms_iam_webauthn_recheck_assertion(other, 32, cd, adb, true, &ei),
                     DCMS_ERR_VALIDATION);
    assert_non_null(strstr(ei.message, "challenge"));

    ad[32] = WA_FLAG_UP;
    char *no_uv = b64u(ad, sizeof(ad));
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(dcms_iam_webauthn_recheck_assertion(hash, 32, cd, no_uv, true, &ei),
                     DCMS_ERR_VALIDATION);
    assert_non_null(strstr(ei.message, "user-verified"));
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(dcms_iam_webauthn_recheck_assertion(hash, 32, cd, no_uv, false, &ei), DCMS_OK);

    char *short_ad = b64u(ad, 20);
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(dcms_iam_webauthn_recheck_assertion(hash, 32, cd, short_ad, true, &ei),
                     DCMS_ERR_VALIDATION);
    assert_non_null(strstr(ei.message, "authenticatorData"));

    snprintf(cdj, sizeof(cdj), "{\"type\":\"webauthn.create\",\"challenge\":\"%s\"}", chal);
    char *create = b64u(cdj, strlen(cdj));
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(dcms_iam_webauthn_recheck_assertion(hash, 32, create, adb, true, &ei),
                     DCMS_ERR_VALIDATION);
    assert_non_null(strstr(ei.message, "webauthn.get"));
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(dcms_iam_webauthn_recheck_assertion(hash, 32, "!!", adb, true, &ei),
                     DCMS_ERR_VALIDATION);
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(dcms_iam_webauthn_recheck_assertion(hash, 32, NULL, NULL, true, &ei),
                     DCMS_ERR_VALIDATION);
    free(chal);
    free(cd);
    free(adb);
    free(no_uv);
    free(short_ad);
    free(create);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup(all_vectors, init),
    cmocka_unit_test_setup(wrong_context_refused, init),
    cmocka_unit_test(counter_rule),
    cmocka_unit_test(recheck_stored_assertion),
    cmocka_unit_test_setup(hostile_attestation_objects, init),
    cmocka_unit_test_setup(hostile_cbor, init),
    cmocka_unit_test_setup(packed_leaf_rules, init),
};

DCMS_TEST_MAIN(tests)
