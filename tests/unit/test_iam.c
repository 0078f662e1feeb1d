/*
 * IAM's pure parts: password rules and argon2id hashing with rehash, the
 * common-password list, base64url, ES256 JWT signing and strict
 * verification against every attack in the issue, and policy evaluation
 * (wildcards, deny wins, conditions, auditor guard, resource scope).
 */
#include "testutil.h"

#include <openssl/hmac.h>

#include "dcms/crypto.h"
#include "iam/iam_core.h"

/* ---- passwords ---- */

static void password_rules(void **state)
{
    (void)state;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    iam_password_check("short", NULL, "password", &ei);
    assert_int_equal(ei.code, DCMS_ERR_VALIDATION);
    dcms_errinfo_init(&ei, NULL);
    iam_password_check("Password2024!", NULL, "password", &ei);
    assert_int_equal(ei.code, DCMS_ERR_VALIDATION); /* common, any case */
    dcms_errinfo_init(&ei, NULL);
    iam_password_check("qwertyuiopasdfghjkl", NULL, "password", &ei);
    assert_int_equal(ei.code, DCMS_ERR_VALIDATION);
    dcms_errinfo_init(&ei, NULL);
    iam_password_check("someone@example.com", "Someone@Example.com", "password", &ei);
    assert_int_equal(ei.code, DCMS_ERR_VALIDATION);
    dcms_errinfo_init(&ei, NULL);
    iam_password_check("ünïcödé-pässwörd", NULL, "password", &ei);
    assert_int_equal(ei.code, DCMS_OK);
    assert_true(iam_password_is_common("LETMEIN2020"));
    assert_false(iam_password_is_common("correct horse battery staple"));
}

static void password_hash_and_rehash(void **state)
{
    (void)state;
    assert_int_equal(sodium_init() >= 0, 1);
    char h[crypto_pwhash_STRBYTES];
    assert_int_equal(iam_password_hash("correct horse battery", 2, 8192 * 1024, h), DCMS_OK);
    assert_memory_equal(h, "$argon2id$", 10);
    assert_true(iam_password_verify(h, "correct horse battery"));
    assert_false(iam_password_verify(h, "correct horse batterY"));
    assert_false(iam_password_needs_rehash(h, 2, 8192 * 1024));
    assert_true(iam_password_needs_rehash(h, 3, 8192 * 1024));
    assert_true(iam_password_needs_rehash(h, 2, 19456 * 1024));
}

/* ---- base64url and JWT ---- */

static void b64url(void **state)
{
    (void)state;
    char out[16];
    iam_b64url_encode(out, "\xfb\xff", 2);
    assert_string_equal(out, "-_8");
    unsigned char buf[8];
    size_t n;
    assert_true(iam_b64url_decode(buf, sizeof(buf), "-_8", 3, &n));
    assert_int_equal(n, 2);
    assert_false(iam_b64url_decode(buf, sizeof(buf), "-_9", 3, &n)); /* trailing bits */
    assert_false(iam_b64url_decode(buf, sizeof(buf), "+/8=", 4, &n));
    assert_false(iam_b64url_decode(buf, sizeof(buf), "a", 1, &n));
}

static struct iam_key key1, key2;

static const struct iam_key *lookup(void *ctx, const char *kid)
{
    (void)ctx;
    if (strcmp(kid, key1.kid) == 0)
        return &key1;
    return NULL;
}

static json_t *claims(int64_t now)
{
    return json_pack("{s:s, s:s, s:s, s:[s], s:n, s:I, s:I, s:s, s:[s], s:s}", "iss", "dcms", "aud",
                     "dcms-api", "sub", "01a20a44-8f49-7cb8-a563-4e533609e7a6", "roles", "consumer",
                     "org", "iat", (json_int_t)now, "exp", (json_int_t)(now + 900), "jti",
                     "01a20a44-8f49-7cb8-a563-4e533609e7a7", "amr", "pwd", "sid",
                     "01a20a44-8f49-7cb8-a563-4e533609e7a8");
}

static int keys_setup(void **state)
{
    (void)state;
    assert_true(sodium_init() >= 0);
    assert_int_equal(iam_key_generate(&key1), DCMS_OK);
    assert_int_equal(iam_key_generate(&key2), DCMS_OK);
    return 0;
}

static int keys_teardown(void **state)
{
    (void)state;
    iam_key_release(&key1);
    iam_key_release(&key2);
    return 0;
}

static enum dcms_err verify(const char *tok, int64_t now, json_t **out)
{
    struct iam_jwt_expect x = {"dcms", "dcms-api", now, 30};
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    json_t *c = NULL;
    enum dcms_err e = iam_jwt_verify(tok, strlen(tok), lookup, NULL, &x, &c, &ei);
    if (out)
        *out = c;
    else
        json_decref(c);
    return e;
}

static char *sign(const struct iam_key *k, json_t *c)
{
    char *t = NULL;
    assert_int_equal(iam_jwt_sign(k, c, &t), DCMS_OK);
    json_decref(c);
    return t;
}

static void jwt_round_trip(void **state)
{
    (void)state;
    int64_t now = 1795468596;
    char *t = sign(&key1, claims(now));
    json_t *c;
    assert_int_equal(verify(t, now, &c), DCMS_OK);
    struct dcms_principal p;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(iam_claims_principal(c, &p, &ei), DCMS_OK);
    assert_int_equal(p.roles, DCMS_ROLE_CONSUMER);
    assert_int_equal(p.amr, DCMS_AMR_PWD);
    assert_string_equal(p.org, "");
    json_decref(c);
    /* key from PEM round trip keeps the kid */
    char *pem;
    size_t len;
    assert_int_equal(iam_key_to_pem(&key1, &pem, &len), DCMS_OK);
    struct iam_key k;
    assert_int_equal(iam_key_from_pem(&k, pem, len), DCMS_OK);
    assert_string_equal(k.kid, key1.kid);
    sodium_free(pem);
    iam_key_release(&k);
    free(t);
}

static char *b64json(const char *json)
{
    char *o = malloc(iam_b64url_len(strlen(json)));
    iam_b64url_encode(o, json, strlen(json));
    return o;
}

static void jwt_attacks(void **state)
{
    (void)state;
    int64_t now = 1795468596;
    char *good = sign(&key1, claims(now));
    const char *d1 = strchr(good, '.'), *d2 = strrchr(good, '.');
    char payload[2048];
    snprintf(payload, sizeof(payload), "%.*s", (int)(d2 - d1 - 1), d1 + 1);
    char tok[8192];

    /* alg none, with and without a signature */
    char hdr[256];
    snprintf(hdr, sizeof(hdr), "{\"alg\":\"none\",\"typ\":\"JWT\",\"kid\":\"%s\"}", key1.kid);
    char *h = b64json(hdr);
    snprintf(tok, sizeof(tok), "%s.%s.", h, payload);
    assert_int_equal(verify(tok, now, NULL), DCMS_ERR_UNAUTHENTICATED);
    snprintf(tok, sizeof(tok), "%s.%s.%s", h, payload, d2 + 1);
    assert_int_equal(verify(tok, now, NULL), DCMS_ERR_UNAUTHENTICATED);
    free(h);

    /* HS256 keyed with the public key */
    snprintf(hdr, sizeof(hdr), "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"%s\"}", key1.kid);
    h = b64json(hdr);
    char signing[4096];
    int n = snprintf(signing, sizeof(signing), "%s.%s", h, payload);
    unsigned char mac[32];
    unsigned maclen;
    HMAC(EVP_sha256(), key1.x, (int)strlen(key1.x), (unsigned char *)signing, (size_t)n, mac,
         &maclen);
    char macb[64];
    iam_b64url_encode(macb, mac, 32);
    snprintf(tok, sizeof(tok), "%s.%s", signing, macb);
    assert_int_equal(verify(tok, now, NULL), DCMS_ERR_UNAUTHENTICATED);
    free(h);

    /* unknown kid (signed by another key), and a known kid with the wrong key */
    char *other = sign(&key2, claims(now));
    assert_int_equal(verify(other, now, NULL), DCMS_ERR_UNAUTHENTICATED);
    snprintf(hdr, sizeof(hdr), "{\"alg\":\"ES256\",\"typ\":\"JWT\",\"kid\":\"%s\"}", key1.kid);
    h = b64json(hdr);
    snprintf(tok, sizeof(tok), "%s.%s", h, strchr(other, '.') + 1);
    assert_int_equal(verify(tok, now, NULL), DCMS_ERR_UNAUTHENTICATED);
    free(h);
    free(other);

    /* an extra header parameter, a wrong typ */
    snprintf(hdr, sizeof(hdr), "{\"alg\":\"ES256\",\"typ\":\"JWT\",\"kid\":\"%s\",\"jku\":\"x\"}",
             key1.kid);
    h = b64json(hdr);
    snprintf(tok, sizeof(tok), "%s.%s.%s", h, payload, d2 + 1);
    assert_int_equal(verify(tok, now, NULL), DCMS_ERR_UNAUTHENTICATED);
    free(h);

    /* a flipped signature bit; a truncated token; extra segments */
    snprintf(tok, sizeof(tok), "%s", good);
    tok[strlen(tok) - 2] = tok[strlen(tok) - 2] == 'A' ? 'B' : 'A';
    assert_int_equal(verify(tok, now, NULL), DCMS_ERR_UNAUTHENTICATED);
    snprintf(tok, sizeof(tok), "%.*s", (int)(d2 - good), good);
    assert_int_equal(verify(tok, now, NULL), DCMS_ERR_UNAUTHENTICATED);
    snprintf(tok, sizeof(tok), "%s.x", good);
    assert_int_equal(verify(tok, now, NULL), DCMS_ERR_UNAUTHENTICATED);

    /* properly signed but expired, not yet valid, wrong audience, wrong issuer */
    assert_int_equal(verify(good, now + 900 + 31, NULL), DCMS_ERR_UNAUTHENTICATED);
    assert_int_equal(verify(good, now + 900 + 29, NULL), DCMS_OK);            /* leeway */
    assert_int_equal(verify(good, now - 31, NULL), DCMS_ERR_UNAUTHENTICATED); /* iat ahead */
    json_t *c = claims(now);
    json_object_set_new(c, "aud", json_string("other"));
    char *t = sign(&key1, c);
    assert_int_equal(verify(t, now, NULL), DCMS_ERR_UNAUTHENTICATED);
    free(t);
    c = claims(now);
    json_object_set_new(c, "aud", json_pack("[s, s]", "x", "dcms-api"));
    t = sign(&key1, c);
    assert_int_equal(verify(t, now, NULL), DCMS_OK);
    free(t);
    c = claims(now);
    json_object_set_new(c, "iss", json_string("evil"));
    t = sign(&key1, c);
    assert_int_equal(verify(t, now, NULL), DCMS_ERR_UNAUTHENTICATED);
    free(t);
    c = claims(now);
    json_object_set_new(c, "nbf", json_integer(now + 120));
    t = sign(&key1, c);
    assert_int_equal(verify(t, now, NULL), DCMS_ERR_UNAUTHENTICATED);
    free(t);
    free(good);
}

/* ---- policies ---- */

static struct dcms_principal principal(unsigned roles, unsigned amr)
{
    struct dcms_principal p = {.roles = roles, .amr = amr};
    snprintf(p.id, sizeof(p.id), "%s", "01a20a44-0000-7000-8000-000000000001");
    snprintf(p.org, sizeof(p.org), "%s", "01a20a44-0000-7000-8000-0000000000aa");
    return p;
}

static void parse_policy(const char *json, struct iam_policy *p)
{
    json_t *doc = json_loads(json, 0, NULL);
    assert_non_null(doc);
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(iam_policy_from_json(doc, p, &ei), DCMS_OK);
    json_decref(doc);
}

static void glob(void **state)
{
    (void)state;
    assert_true(iam_glob("*", "contracts:read"));
    assert_true(iam_glob("contracts:*", "contracts:read"));
    assert_false(iam_glob("contracts:*", "contract:read"));
    assert_true(iam_glob("*:read", "audit:read"));
    assert_true(iam_glob("c*s:r*d", "contracts:read"));
    assert_false(iam_glob("contracts:read", "contracts:readx"));
}

static void roles_and_scope(void **state)
{
    (void)state;
    struct dcms_principal consumer = principal(DCMS_ROLE_CONSUMER, DCMS_AMR_PWD);
    struct dcms_principal auditor = principal(DCMS_ROLE_AUDITOR, DCMS_AMR_PWD);
    struct dcms_principal admin = principal(DCMS_ROLE_ADMIN, DCMS_AMR_PWD);
    assert_int_equal(iam_decide(NULL, 0, &consumer, "contracts:read", NULL, NULL), IAM_ALLOW_ROLE);
    assert_int_equal(iam_decide(NULL, 0, &consumer, "audit:read", NULL, NULL), IAM_DENY_DEFAULT);
    assert_int_equal(iam_decide(NULL, 0, &auditor, "audit:read", NULL, NULL), IAM_ALLOW_ROLE);
    assert_int_equal(iam_decide(NULL, 0, &auditor, "contracts:create", NULL, NULL),
                     IAM_DENY_AUDITOR);
    assert_int_equal(iam_decide(NULL, 0, &admin, "keys:rotate", NULL, NULL), IAM_ALLOW_ROLE);
    /* a party sees its own contracts only */
    const char *mine[] = {"01a20a44-0000-7000-8000-0000000000aa", "x"};
    const char *theirs[] = {"y", "z"};
    struct dcms_iam_resource c1 = {"contract", "c1", NULL, NULL, mine, 2, true};
    struct dcms_iam_resource c2 = {"contract", "c2", NULL, NULL, theirs, 2, true};
    assert_int_equal(iam_decide(NULL, 0, &consumer, "contracts:read", &c1, NULL), IAM_ALLOW_ROLE);
    assert_int_equal(iam_decide(NULL, 0, &consumer, "contracts:read", &c2, NULL), IAM_DENY_SCOPE);
    assert_int_equal(iam_decide(NULL, 0, &auditor, "contracts:read", &c2, NULL), IAM_ALLOW_ROLE);
    assert_int_equal(iam_decide(NULL, 0, &auditor, "contracts:sign", &c2, NULL), IAM_DENY_AUDITOR);
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(dcms_iam_authorize(&consumer, "contracts:read", &c2, NULL, &ei),
                     DCMS_ERR_FORBIDDEN);
    assert_int_equal(dcms_iam_authorize(NULL, "contracts:read", NULL, NULL, &ei),
                     DCMS_ERR_UNAUTHENTICATED);
}

/* org_admin (issue 13): members:* on its own organization only; admins and auditors (reads) on any.
 */
static void org_admin_reaches_its_organization_only(void **state)
{
    (void)state;
    struct dcms_principal oa = principal(DCMS_ROLE_ORG_ADMIN, DCMS_AMR_PWD);
    struct dcms_principal provider = principal(DCMS_ROLE_PROVIDER, DCMS_AMR_PWD);
    struct dcms_principal auditor = principal(DCMS_ROLE_AUDITOR, DCMS_AMR_PWD);
    struct dcms_principal admin = principal(DCMS_ROLE_ADMIN, DCMS_AMR_PWD);
    const char *own = "01a20a44-0000-7000-8000-0000000000aa";
    const char *other = "01a20a44-0000-7000-8000-0000000000bb";
    struct dcms_iam_resource mine = {
        .type = "organization", .id = own, .org_id = own, .scoped = true};
    struct dcms_iam_resource theirs = {
        .type = "organization", .id = other, .org_id = other, .scoped = true};
    assert_int_equal(iam_decide(NULL, 0, &oa, "members:manage", &mine, NULL), IAM_ALLOW_ROLE);
    assert_int_equal(iam_decide(NULL, 0, &oa, "members:read", &mine, NULL), IAM_ALLOW_ROLE);
    assert_int_equal(iam_decide(NULL, 0, &oa, "members:manage", &theirs, NULL), IAM_DENY_SCOPE);
    assert_int_equal(iam_decide(NULL, 0, &oa, "members:read", &theirs, NULL), IAM_DENY_SCOPE);
    /* Not in an organization: related to none. */
    oa.org[0] = '\0';
    assert_int_equal(iam_decide(NULL, 0, &oa, "members:manage", &mine, NULL), IAM_DENY_SCOPE);
    /* Nothing else comes with the role. */
    assert_int_equal(iam_decide(NULL, 0, &oa, "contracts:read", NULL, NULL), IAM_DENY_DEFAULT);
    assert_int_equal(iam_decide(NULL, 0, &oa, "identities:manage", NULL, NULL), IAM_DENY_DEFAULT);
    assert_int_equal(iam_decide(NULL, 0, &provider, "members:manage", &mine, NULL),
                     IAM_DENY_DEFAULT);
    assert_int_equal(iam_decide(NULL, 0, &auditor, "members:read", &theirs, NULL), IAM_ALLOW_ROLE);
    assert_int_equal(iam_decide(NULL, 0, &auditor, "members:manage", &theirs, NULL),
                     IAM_DENY_AUDITOR);
    assert_int_equal(iam_decide(NULL, 0, &admin, "members:manage", &theirs, NULL), IAM_ALLOW_ROLE);
    assert_int_equal(dcms_iam_role_parse("org_admin"), DCMS_ROLE_ORG_ADMIN);
    assert_string_equal(dcms_iam_role_name(DCMS_ROLE_ORG_ADMIN), "org_admin");
}

static void policies_deny_wins_and_conditions(void **state)
{
    (void)state;
    struct iam_policy pol[3];
    parse_policy("{\"name\":\"a\",\"effect\":\"allow\",\"actions\":[\"audit:*\"],"
                 "\"resources\":[\"*\"],\"conditions\":{\"mfa_present\":true},"
                 "\"attach\":{\"roles\":[\"consumer\"]}}",
                 &pol[0]);
    parse_policy("{\"name\":\"d\",\"effect\":\"deny\",\"actions\":[\"contracts:sign\"],"
                 "\"resources\":[\"contract:*\"],\"conditions\":{\"ip_range\":[\"10.0.0.0/8\","
                 "\"2001:db8::/32\"]},\"attach\":{\"identities\":"
                 "[\"01a20a44-0000-7000-8000-000000000001\"]}}",
                 &pol[1]);
    parse_policy("{\"name\":\"p\",\"effect\":\"allow\",\"actions\":[\"training:run\"],"
                 "\"resources\":[\"contract:*\"],\"conditions\":{\"party_of_contract\":true},"
                 "\"attach\":{\"roles\":[\"provider\"]}}",
                 &pol[2]);
    struct dcms_principal c = principal(DCMS_ROLE_CONSUMER, DCMS_AMR_PWD);
    struct dcms_principal cm = principal(DCMS_ROLE_CONSUMER, DCMS_AMR_PWD | DCMS_AMR_OTP);
    assert_int_equal(iam_decide(pol, 3, &c, "audit:read", NULL, NULL), IAM_DENY_DEFAULT);
    assert_int_equal(iam_decide(pol, 3, &cm, "audit:read", NULL, NULL), IAM_ALLOW_POLICY);
    const char *mine[] = {"01a20a44-0000-7000-8000-000000000001"};
    struct dcms_iam_resource k = {"contract", "k", NULL, NULL, mine, 1, true};
    assert_int_equal(iam_decide(pol, 3, &c, "contracts:sign", &k, "10.1.2.3"), IAM_DENY_POLICY);
    assert_int_equal(iam_decide(pol, 3, &c, "contracts:sign", &k, "2001:db8::1"), IAM_DENY_POLICY);
    assert_int_equal(iam_decide(pol, 3, &c, "contracts:sign", &k, "192.168.1.1"), IAM_ALLOW_ROLE);
    struct dcms_principal prov = principal(DCMS_ROLE_PROVIDER, DCMS_AMR_PWD);
    assert_int_equal(iam_decide(pol, 3, &prov, "training:run", &k, NULL), IAM_ALLOW_POLICY);
    struct dcms_iam_resource other = {"contract", "o", NULL, NULL, NULL, 0, true};
    assert_int_equal(iam_decide(pol, 3, &prov, "training:run", &other, NULL), IAM_DENY_DEFAULT);
    for (size_t i = 0; i < 3; i++)
        iam_policy_release(&pol[i]);
}

static void policy_validation(void **state)
{
    (void)state;
    json_t *doc = json_loads("{\"name\":\"\",\"effect\":\"perhaps\",\"actions\":[],\"resources\":"
                             "[1],\"conditions\":{\"ip_range\":[\"1.2.3.4/33\"],\"moon\":true},"
                             "\"attach\":{\"roles\":[\"king\"]},\"extra\":1}",
                             0, NULL);
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_arena *a = NULL;
    (void)a;
    struct iam_policy p;
    assert_int_equal(iam_policy_from_json(doc, &p, &ei), DCMS_ERR_VALIDATION);
    iam_policy_release(&p);
    json_decref(doc);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(password_rules),
    cmocka_unit_test(password_hash_and_rehash),
    cmocka_unit_test(b64url),
    cmocka_unit_test_setup_teardown(jwt_round_trip, keys_setup, keys_teardown),
    cmocka_unit_test_setup_teardown(jwt_attacks, keys_setup, keys_teardown),
    cmocka_unit_test(glob),
    cmocka_unit_test(roles_and_scope),
    cmocka_unit_test(org_admin_reaches_its_organization_only),
    cmocka_unit_test(policies_deny_wins_and_conditions),
    cmocka_unit_test(policy_validation),
};

DCMS_TEST_MAIN(tests)
