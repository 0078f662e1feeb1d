/*
 * The credentials contract signatures rest on, through the store: Ed25519
 * signing keys (registration with a proof of possession, rotation,
 * revocation, dcms_iam_signing_key_verify with and without at_time, the
 * RFC 8032 vectors through that verify path) and passkeys
 * (dcms_iam_webauthn_verify_assertion with the real assertions in
 * tests/vectors/webauthn, the counter rule and the refusals). Every
 * case runs on SQLite and, as its _pg twin, on PostgreSQL (see testdb.h).
 */
#include "testdb.h"
#include "testutil.h"

#include <sodium.h>

#include "dcms/app.h"
#include "dcms/arena.h"
#include "dcms/audit.h"
#include "dcms/keys.h"
#include "dcms/config.h"
#include "dcms/credentials.h"
#include "dcms/crypto.h"
#include "dcms/store.h"
#include "iam/iam_cred.h"
#include "iam/iam_identity.h"

#include <dirent.h>

struct fixture {
    struct dcms_testdb db; /* first: see testdb.h */
    struct dcms_config cfg;
    struct dcms_app app;
    struct dcms_store *store;
    struct dcms_audit *audit;
    struct dcms_iam *iam;
    struct dcms_arena *arena;
    struct dcms_principal admin;
};

DCMS_TESTDB_SETUPS("/tmp/dcms-cred-XXXXXX", "dcms_c_")

static int teardown(void **state)
{
    struct fixture *f = *state;
    dcms_iam_close(f->iam);
    dcms_keys_close(f->app.keys);
    f->app.keys = NULL;
    dcms_audit_close(f->audit);
    dcms_store_close(f->store);
    dcms_arena_free(f->arena);
    dcms_testdb_cleanup(&f->db);
    free(f);
    return 0;
}

/* Opens store, audit and IAM; `origins` overrides DCMS_WEBAUTHN_ORIGINS when non-NULL. */
static void open_all(struct fixture *f, const char *rp_id, const char *origins)
{
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    CHECK(dcms_config_load(&f->cfg, NULL, &ei), ei);
    snprintf(f->cfg.data_dir, sizeof(f->cfg.data_dir), "%s", f->db.dir);
    snprintf(f->cfg.iam_kek_file, sizeof(f->cfg.iam_kek_file), "%s/kek.key", f->db.dir);
    if (rp_id)
        snprintf(f->cfg.webauthn_rp_id, sizeof(f->cfg.webauthn_rp_id), "%s", rp_id);
    if (origins)
        snprintf(f->cfg.webauthn_origins, sizeof(f->cfg.webauthn_origins), "%s", origins);
    f->cfg.pwhash_max_concurrent = 1;
    struct dcms_store_opts so = {4, 30000};
    CHECK(dcms_store_open(f->db.url, &so, &f->store, &ei), ei);
    char key_path[128];
    snprintf(key_path, sizeof(key_path), "%s/audit.key", f->db.dir);
    struct dcms_audit_opts ao = {key_path, 1000, 0, 0, NULL, 0};
    CHECK(dcms_audit_open(f->store, &ao, &f->audit, &ei), ei);
    f->app.cfg = &f->cfg;
    f->app.store = f->store;
    f->app.audit = f->audit;
    /* IAM seals its secrets under a data key from the keyring. */
    snprintf(f->cfg.keys_file, sizeof(f->cfg.keys_file), "%s/keys/keyring", f->db.dir);
    struct dcms_keys_opts ko;
    dcms_keys_opts_from_config(&f->cfg, &ko);
    CHECK(dcms_keys_open(&ko, f->store, f->audit, &f->app.keys, &ei), ei);
    CHECK(dcms_iam_open(&f->app, &f->iam, &ei), ei);
    f->app.iam = f->iam;
    f->arena = dcms_arena_new(1 << 20);
    assert_non_null(f->arena);
    dcms_uuid_v7(f->admin.id);
    f->admin.roles = DCMS_ROLE_ADMIN;
    f->admin.amr = DCMS_AMR_PWD;
    f->admin.auth_time_s = dcms_clock_now_us() / 1000000; /* a fresh login (step-up) */
}

/* A fresh active user (created by an administrator); its principal into *p. */
static void new_user(struct fixture *f, struct dcms_principal *p)
{
    static int n;
    char email[96];
    snprintf(email, sizeof(email), "user-%d-%lld@example.com", ++n, (long long)dcms_clock_now_us());
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, f->arena);
    struct iam_call c = {f->iam, &f->admin, "127.0.0.1", "test", &ei};
    struct iam_identity_in in = {.kind = "user", .name = "User", .email = email};
    json_t *out = NULL;
    CHECK(iam_identity_create(&c, &in, &out), ei);
    memset(p, 0, sizeof(*p));
    snprintf(p->id, sizeof(p->id), "%s", json_string_value(json_object_get(out, "id")));
    p->roles = DCMS_ROLE_CONSUMER;
    p->amr = DCMS_AMR_PWD;
    p->auth_time_s = dcms_clock_now_us() / 1000000;
    json_decref(out);
}

static int64_t count_audit(struct fixture *f, const char *action, const char *outcome)
{
    static struct dcms_query q = DCMS_QUERY(
        "test_count_audit", /* committed events, sequenced or still pending */
        "SELECT COUNT(*) FROM (SELECT action, outcome FROM audit_events UNION ALL "
        "SELECT action, outcome FROM audit_pending) AS e WHERE action = $1 AND outcome = $2");
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows;
    CHECK(dcms_store_begin(f->store, DCMS_TX_READ, &tx, &ei), ei);
    CHECK(dcms_store_exec(tx, &q,
                          (struct dcms_store_val[]){DCMS_VAL_TEXT(action), DCMS_VAL_TEXT(outcome)},
                          2, &rows, NULL, &ei),
          ei);
    int64_t n = dcms_store_rows_int(rows, 0, 0);
    dcms_store_rows_free(rows);
    dcms_store_rollback(tx);
    return n;
}

/* ---- signing keys ---- */

/* Registers the key whose seed is `seed` for `p` (a proof of possession made with it). */
static enum dcms_err register_seed(struct fixture *f, const struct dcms_principal *p,
                                   const unsigned char seed[32], const char *replace,
                                   bool break_proof, char key_id[DCMS_SIGNING_KEY_ID_MAX + 1],
                                   struct dcms_errinfo *ei)
{
    unsigned char pk[32], sk[64], sig[64];
    crypto_sign_seed_keypair(pk, sk, seed);
    struct iam_call c = {f->iam, p, "127.0.0.1", "test", ei};
    json_t *ch = NULL;
    CHECK(iam_signkey_challenge(&c, p->id, &ch), *ei);
    unsigned char raw[IAM_CHALLENGE_BYTES];
    size_t rawlen = 0;
    const char *b64 = json_string_value(json_object_get(ch, "challenge"));
    assert_true(iam_b64url_decode(raw, sizeof(raw), b64, strlen(b64), &rawlen));
    assert_int_equal(rawlen, IAM_CHALLENGE_BYTES);
    unsigned char msg[IAM_SIGNKEY_POP_LEN];
    size_t mlen;
    iam_signkey_pop_message(raw, pk, msg, &mlen);
    crypto_sign_detached(sig, NULL, msg, mlen, sk);
    sodium_memzero(sk, sizeof(sk));
    if (break_proof)
        sig[10] ^= 0x04;
    char pk_b64[48], sig_b64[96];
    iam_b64url_encode(pk_b64, pk, sizeof(pk));
    iam_b64url_encode(sig_b64, sig, sizeof(sig));
    struct iam_signkey_in in = {pk_b64, json_string_value(json_object_get(ch, "challenge_id")),
                                sig_b64, NULL, 0};
    json_t *out = NULL;
    enum dcms_err e = iam_signkey_register(&c, p->id, replace, &in, &out);
    if (!e)
        snprintf(key_id, DCMS_SIGNING_KEY_ID_MAX + 1, "%s",
                 json_string_value(json_object_get(out, "id")));
    json_decref(out);
    json_decref(ch);
    return e;
}

static void hex_decode(const char *hex, unsigned char *out, size_t cap, size_t *n)
{
    assert_int_equal(sodium_hex2bin(out, cap, hex, strlen(hex), NULL, n, NULL), 0);
}

/* RFC 8032 section 7.1 through registration and dcms_iam_signing_key_verify. */
static void signing_key_rfc8032(struct fixture *f)
{
    open_all(f, NULL, NULL);
    size_t len;
    char *tsv = dcms_test_read_file(DCMS_VECTORS_DIR "/ed25519/rfc8032.tsv", &len);
    int rows = 0;
    for (char *line = tsv, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        if (line[0] == '#' || !line[0])
            continue;
        /* Split on every tab: TEST1 has an empty message column. */
        char *col[6];
        size_t ncol = 0;
        for (char *p = line; ncol < 6; ncol++) {
            col[ncol] = p;
            char *t = strchr(p, '\t');
            if (!t) {
                ncol++;
                break;
            }
            *t = '\0';
            p = t + 1;
        }
        assert_int_equal(ncol, 6);
        unsigned char seed[32], pk[32], want_pk[32], sig[64], *msg = malloc(2048);
        size_t n = 0, mlen = 0;
        hex_decode(col[1], seed, sizeof(seed), &n);
        assert_int_equal(n, 32);
        hex_decode(col[2], want_pk, sizeof(want_pk), &n);
        hex_decode(col[4], msg, 2048, &mlen);
        assert_int_equal(mlen, (size_t)strtoul(col[3], NULL, 10));
        hex_decode(col[5], sig, sizeof(sig), &n);
        assert_int_equal(n, 64);
        unsigned char sk[64];
        crypto_sign_seed_keypair(pk, sk, seed);
        assert_memory_equal(pk, want_pk, 32);

        struct dcms_principal p;
        new_user(f, &p);
        struct dcms_errinfo ei;
        dcms_errinfo_init(&ei, f->arena);
        char key_id[DCMS_SIGNING_KEY_ID_MAX + 1];
        CHECK(register_seed(f, &p, seed, NULL, false, key_id, &ei), ei);
        struct dcms_signing_key_info info;
        CHECK(dcms_iam_signing_key_verify(f->iam, p.id, key_id, msg, mlen, sig, NULL, &info, &ei),
              ei);
        assert_memory_equal(info.public_key, want_pk, 32);
        assert_string_equal(info.alg, "Ed25519");
        assert_string_equal(info.revoked_at, "");
        /* The signature is the RFC's, bit for bit. */
        unsigned char again[64];
        crypto_sign_detached(again, NULL, msg, mlen, sk);
        assert_memory_equal(again, sig, 64);
        sig[63] ^= 0x10;
        assert_int_equal(
            dcms_iam_signing_key_verify(f->iam, p.id, key_id, msg, mlen, sig, NULL, NULL, &ei),
            DCMS_ERR_VALIDATION);
        sig[63] ^= 0x10;
        if (mlen) {
            msg[0] ^= 1;
            assert_int_equal(
                dcms_iam_signing_key_verify(f->iam, p.id, key_id, msg, mlen, sig, NULL, NULL, &ei),
                DCMS_ERR_VALIDATION);
        }
        sodium_memzero(sk, sizeof(sk));
        free(msg);
        rows++;
    }
    assert_int_equal(rows, 5);
    free(tsv);
}

static void signing_key_pop_refused(struct fixture *f)
{
    open_all(f, NULL, NULL);
    struct dcms_principal p, q;
    new_user(f, &p);
    new_user(f, &q);
    unsigned char seed[32];
    randombytes_buf(seed, sizeof(seed));
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, f->arena);
    char key_id[DCMS_SIGNING_KEY_ID_MAX + 1];
    assert_int_equal(register_seed(f, &p, seed, NULL, true, key_id, &ei), DCMS_ERR_VALIDATION);
    assert_int_equal(ei.ndetails, 1);
    assert_string_equal(ei.details[0].field, "signature");
    assert_int_equal(count_audit(f, "signing_key.register", "denied"), 1);
    assert_int_equal(count_audit(f, "signing_key.register", "success"), 0);
    /* Someone else may not register a key for p. */
    struct dcms_principal forged = q;
    dcms_errinfo_init(&ei, f->arena);
    struct iam_call c = {f->iam, &forged, "127.0.0.1", "test", &ei};
    json_t *out = NULL;
    assert_int_equal(iam_signkey_challenge(&c, p.id, &out), DCMS_ERR_NOT_FOUND);
    dcms_errinfo_init(&ei, f->arena);
    CHECK(register_seed(f, &p, seed, NULL, false, key_id, &ei), ei);
    assert_int_equal(count_audit(f, "signing_key.register", "success"), 1);
}

static void signing_key_revoked(struct fixture *f)
{
    open_all(f, NULL, NULL);
    struct dcms_principal p, q;
    new_user(f, &p);
    new_user(f, &q);
    unsigned char seed[32], seed2[32], pk[32], sk[64], sig[64];
    randombytes_buf(seed, sizeof(seed));
    randombytes_buf(seed2, sizeof(seed2));
    crypto_sign_seed_keypair(pk, sk, seed);
    const unsigned char msg[] = "terms hash of a contract";
    crypto_sign_detached(sig, NULL, msg, sizeof(msg), sk);
    sodium_memzero(sk, sizeof(sk));
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, f->arena);
    char key_id[DCMS_SIGNING_KEY_ID_MAX + 1], key2[DCMS_SIGNING_KEY_ID_MAX + 1];
    CHECK(register_seed(f, &p, seed, NULL, false, key_id, &ei), ei);
    struct dcms_signing_key_info info;
    CHECK(
        dcms_iam_signing_key_verify(f->iam, p.id, key_id, msg, sizeof(msg), sig, NULL, &info, &ei),
        ei);
    char signed_at[DCMS_TIME_STRLEN], before[DCMS_TIME_STRLEN];
    int64_t created;
    assert_int_equal(dcms_time_parse(info.created_at, &created), DCMS_OK);
    dcms_time_format(created + 1000, signed_at);
    dcms_time_format(created - 1000000, before);
    /* Another identity's key id, and an unknown one: not found. */
    assert_int_equal(
        dcms_iam_signing_key_verify(f->iam, q.id, key_id, msg, sizeof(msg), sig, NULL, NULL, &ei),
        DCMS_ERR_NOT_FOUND);
    assert_int_equal(dcms_iam_signing_key_verify(f->iam, p.id,
                                                 "0190a0a0-0000-7000-8000-000000000000", msg,
                                                 sizeof(msg), sig, NULL, NULL, &ei),
                     DCMS_ERR_NOT_FOUND);
    /* Rotation: the old key is out for new signatures, its past ones stay verifiable. */
    usleep(2000);
    dcms_errinfo_init(&ei, f->arena);
    CHECK(register_seed(f, &p, seed2, key_id, false, key2, &ei), ei);
    dcms_errinfo_init(&ei, f->arena);
    assert_int_equal(
        dcms_iam_signing_key_verify(f->iam, p.id, key_id, msg, sizeof(msg), sig, NULL, NULL, &ei),
        DCMS_ERR_FORBIDDEN);
    assert_non_null(strstr(ei.message, "rotated"));
    CHECK(dcms_iam_signing_key_verify(f->iam, p.id, key_id, msg, sizeof(msg), sig, signed_at, &info,
                                      &ei),
          ei);
    assert_string_not_equal(info.revoked_at, "");
    char after[DCMS_TIME_STRLEN];
    int64_t revoked;
    assert_int_equal(dcms_time_parse(info.revoked_at, &revoked), DCMS_OK);
    dcms_time_format(revoked + 1, after);
    assert_int_equal(
        dcms_iam_signing_key_verify(f->iam, p.id, key_id, msg, sizeof(msg), sig, after, NULL, &ei),
        DCMS_ERR_FORBIDDEN);
    assert_int_equal(
        dcms_iam_signing_key_verify(f->iam, p.id, key_id, msg, sizeof(msg), sig, before, NULL, &ei),
        DCMS_ERR_FORBIDDEN);
    /* Revocation of the new key (by an administrator). */
    dcms_errinfo_init(&ei, f->arena);
    struct iam_call c = {f->iam, &f->admin, "127.0.0.1", "test", &ei};
    json_t *out = NULL;
    CHECK(iam_signkey_revoke(&c, p.id, key2, &out), ei);
    assert_string_equal(json_string_value(json_object_get(out, "status")), "revoked");
    json_decref(out);
    unsigned char pk2[32], sk2[64], sig2[64];
    crypto_sign_seed_keypair(pk2, sk2, seed2);
    crypto_sign_detached(sig2, NULL, msg, sizeof(msg), sk2);
    sodium_memzero(sk2, sizeof(sk2));
    assert_int_equal(
        dcms_iam_signing_key_verify(f->iam, p.id, key2, msg, sizeof(msg), sig2, NULL, NULL, &ei),
        DCMS_ERR_FORBIDDEN);
    assert_int_equal(count_audit(f, "signing_key.use_refused", "denied"), 2);
    assert_int_equal(count_audit(f, "signing_key.rotate", "success"), 1);
    assert_int_equal(count_audit(f, "signing_key.revoke", "success"), 1);
    /* A bad time is a bad request. */
    assert_int_equal(dcms_iam_signing_key_verify(f->iam, p.id, key_id, msg, sizeof(msg), sig,
                                                 "yesterday", NULL, &ei),
                     DCMS_ERR_BAD_REQUEST);
}

/* ---- passkeys ---- */

static json_t *load_vector(const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/webauthn/%s", DCMS_VECTORS_DIR, name);
    json_error_t err;
    json_t *v = json_load_file(path, 0, &err);
    if (!v)
        fail_msg("%s: %s", path, err.text);
    return v;
}

/* Stores the vector's credential for `identity_id` with its stored counter (derived vectors
 * share their credential with the one they come from: the earlier copy goes). */
static void store_credential(struct fixture *f, const char *identity_id, const json_t *v)
{
    static struct dcms_query qd =
        DCMS_QUERY("test_wa_delete", "DELETE FROM webauthn_credentials WHERE credential_id = $1");
    static struct dcms_query q = DCMS_QUERY(
        "test_wa_insert",
        "INSERT INTO webauthn_credentials (id, identity_id, credential_id, public_key_cose, alg, "
        "sign_count, user_verified, transports, attestation_fmt, aaguid, created_at) VALUES ($1, "
        "$2, $3, $4, $5, $6, 1, '[]', 'none', '00000000-0000-0000-0000-000000000000', $7)");
    char id[DCMS_UUID_STRLEN], now[DCMS_TIME_STRLEN];
    dcms_uuid_v7(id);
    dcms_time_format(dcms_clock_now_us(), now);
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_store_tx *tx;
    CHECK(dcms_store_begin(f->store, DCMS_TX_WRITE, &tx, &ei), ei);
    const char *cid = json_string_value(json_object_get(v, "credential_id"));
    CHECK(
        dcms_store_exec(tx, &qd, (struct dcms_store_val[]){DCMS_VAL_TEXT(cid)}, 1, NULL, NULL, &ei),
        ei);
    CHECK(
        dcms_store_exec(
            tx, &q,
            (struct dcms_store_val[]){
                DCMS_VAL_TEXT(id), DCMS_VAL_TEXT(identity_id),
                DCMS_VAL_TEXT(json_string_value(json_object_get(v, "credential_id"))),
                DCMS_VAL_TEXT(json_string_value(json_object_get(v, "credential_public_key_cose"))),
                DCMS_VAL_INT(json_integer_value(json_object_get(v, "credential_alg"))),
                DCMS_VAL_INT(json_integer_value(json_object_get(v, "stored_sign_count"))),
                DCMS_VAL_TEXT(now)},
            7, NULL, NULL, &ei),
        ei);
    CHECK(dcms_store_commit(tx, &ei), ei);
}

/* The PublicKeyCredential JSON a browser would send for the vector (no userHandle). */
static json_t *assertion_of(const json_t *v)
{
    return json_pack(
        "{s:O, s:O, s:s, s:{s:O, s:O, s:O}}", "id", json_object_get(v, "credential_id"), "rawId",
        json_object_get(v, "credential_id"), "type", "public-key", "response", "clientDataJSON",
        json_object_get(v, "client_data_json"), "authenticatorData",
        json_object_get(v, "authenticator_data"), "signature", json_object_get(v, "signature"));
}

static enum dcms_err verify_vector(struct fixture *f, const char *identity_id, const json_t *v,
                                   struct dcms_webauthn_result *r, struct dcms_errinfo *ei)
{
    snprintf(f->cfg.webauthn_rp_id, sizeof(f->cfg.webauthn_rp_id), "%s",
             json_string_value(json_object_get(v, "rp_id")));
    snprintf(f->cfg.webauthn_origins, sizeof(f->cfg.webauthn_origins), "https://a.example,%s",
             json_string_value(json_object_get(v, "origin")));
    const char *ch = json_string_value(json_object_get(v, "challenge"));
    unsigned char raw[256];
    size_t n = 0;
    assert_true(iam_b64url_decode(raw, sizeof(raw), ch, strlen(ch), &n));
    json_t *a = assertion_of(v);
    bool uv =
        json_is_true(json_object_get(json_object_get(v, "policy"), "require_user_verification"));
    dcms_errinfo_init(ei, f->arena);
    enum dcms_err e = dcms_iam_webauthn_verify_assertion(f->iam, identity_id, raw, n, a, uv, r, ei);
    json_decref(a);
    return e;
}

/* Every assertion vector through dcms_iam_webauthn_verify_assertion and the store. */
static void webauthn_vectors(struct fixture *f)
{
    open_all(f, NULL, NULL);
    DIR *d = opendir(DCMS_VECTORS_DIR "/webauthn");
    assert_non_null(d);
    int ok = 0, refused = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strncmp(de->d_name, "auth_", 5) != 0)
            continue;
        json_t *v = load_vector(de->d_name);
        const json_t *x = json_object_get(v, "expected");
        bool want = strcmp(json_string_value(json_object_get(x, "outcome")), "success") == 0;
        struct dcms_principal p;
        new_user(f, &p);
        store_credential(f, p.id, v);
        struct dcms_webauthn_result r;
        struct dcms_errinfo ei;
        enum dcms_err e = verify_vector(f, p.id, v, &r, &ei);
        if ((e == DCMS_OK) != want)
            fail_msg("%s: expected %s, got %s (%s)", de->d_name, want ? "success" : "failure",
                     dcms_err_slug(e), ei.message);
        if (want) {
            assert_int_equal(r.sign_count, json_integer_value(json_object_get(x, "sign_count")));
            assert_int_equal(r.user_verified, json_is_true(json_object_get(x, "user_verified")));
            assert_int_equal(r.cose_alg, json_integer_value(json_object_get(v, "credential_alg")));
            assert_string_equal(r.credential_id,
                                json_string_value(json_object_get(v, "credential_id")));
            /* The same assertion again: the counter did not move, so it is a replay. */
            assert_int_equal(verify_vector(f, p.id, v, &r, &ei), DCMS_ERR_VALIDATION);
            assert_non_null(strstr(ei.details[0].problem, "counter"));
            /* Another identity does not own the credential. */
            struct dcms_principal q;
            new_user(f, &q);
            assert_int_equal(verify_vector(f, q.id, v, &r, &ei), DCMS_ERR_NOT_FOUND);
            ok++;
        } else {
            assert_int_equal(e, DCMS_ERR_VALIDATION);
            refused++;
        }
        json_decref(v);
    }
    closedir(d);
    assert_int_equal(ok, 6);
    assert_int_equal(refused, 5);
    assert_int_equal(count_audit(f, "webauthn.sign", "success"), 6);
    assert_int_equal(count_audit(f, "webauthn.counter_regression", "denied"), 6);
    assert_true(count_audit(f, "webauthn.sign", "denied") >= 5 + 6);
}

/* "biometric" signatures ask for UV; the challenge must be the one given. */
static void webauthn_uv_and_challenge(struct fixture *f)
{
    open_all(f, NULL, NULL);
    json_t *v = load_vector("auth_es256_uv0_pywebauthn.json");
    struct dcms_principal p;
    new_user(f, &p);
    store_credential(f, p.id, v);
    json_object_set_new(json_object_get(v, "policy"), "require_user_verification", json_true());
    struct dcms_webauthn_result r;
    struct dcms_errinfo ei;
    assert_int_equal(verify_vector(f, p.id, v, &r, &ei), DCMS_ERR_VALIDATION);
    assert_string_equal(ei.details[0].field, "response.authenticatorData");
    json_object_set_new(json_object_get(v, "policy"), "require_user_verification", json_false());
    /* Another challenge than the one in clientDataJSON. */
    unsigned char other[32] = {1};
    json_t *a = assertion_of(v);
    dcms_errinfo_init(&ei, f->arena);
    assert_int_equal(
        dcms_iam_webauthn_verify_assertion(f->iam, p.id, other, sizeof(other), a, false, &r, &ei),
        DCMS_ERR_VALIDATION);
    assert_string_equal(ei.details[0].field, "response.clientDataJSON");
    /* Malformed input is a validation problem, not a crash. */
    json_object_set_new(json_object_get(a, "response"), "signature", json_integer(5));
    dcms_errinfo_init(&ei, f->arena);
    assert_int_equal(
        dcms_iam_webauthn_verify_assertion(f->iam, p.id, other, sizeof(other), a, false, &r, &ei),
        DCMS_ERR_VALIDATION);
    json_decref(a);
    assert_int_equal(
        dcms_iam_webauthn_verify_assertion(f->iam, p.id, other, 3, NULL, false, &r, &ei),
        DCMS_ERR_BAD_REQUEST);
    /* Still accepted afterwards with the right challenge (nothing was consumed). */
    assert_int_equal(verify_vector(f, p.id, v, &r, &ei), DCMS_OK);
    json_decref(v);
}

/* The step-up rule (iam_stepup.c): a recent login passes, an old or unknown one does not. */
static void stepup_rule(struct fixture *f)
{
    open_all(f, NULL, NULL);
    struct dcms_principal p;
    new_user(f, &p);
    struct dcms_errinfo ei;
    struct iam_call c = {f->iam, &p, "127.0.0.1", "test", &ei};
    json_t *out = NULL;
    int64_t now = dcms_clock_now_us() / 1000000;
    const int64_t ages[] = {0, 590, 601, 86400};
    for (size_t i = 0; i < sizeof(ages) / sizeof(ages[0]); i++) {
        p.auth_time_s = now - ages[i];
        dcms_errinfo_init(&ei, f->arena);
        enum dcms_err e = iam_signkey_challenge(&c, p.id, &out);
        assert_int_equal(e, ages[i] <= 590 ? DCMS_OK : DCMS_ERR_REAUTH_REQUIRED);
        if (e)
            assert_non_null(strstr(ei.message, "within the last 10 minutes"));
        json_decref(out);
        out = NULL;
    }
    /* A token without auth_time counts as an old login. */
    p.auth_time_s = 0;
    dcms_errinfo_init(&ei, f->arena);
    assert_int_equal(iam_signkey_challenge(&c, p.id, &out), DCMS_ERR_REAUTH_REQUIRED);
    assert_int_equal(dcms_err_http(DCMS_ERR_REAUTH_REQUIRED), 403);
    assert_string_equal(dcms_err_slug(DCMS_ERR_REAUTH_REQUIRED), "reauthentication_required");
    /* An API key is refused as before, whatever its age. */
    p.auth_time_s = now;
    snprintf(p.api_key, sizeof(p.api_key), "%s", p.id);
    dcms_errinfo_init(&ei, f->arena);
    assert_int_equal(iam_signkey_challenge(&c, p.id, &out), DCMS_ERR_FORBIDDEN);
}

DCMS_TESTDB_CASE(stepup_rule)
DCMS_TESTDB_CASE(signing_key_rfc8032)
DCMS_TESTDB_CASE(signing_key_pop_refused)
DCMS_TESTDB_CASE(signing_key_revoked)
DCMS_TESTDB_CASE(webauthn_vectors)
DCMS_TESTDB_CASE(webauthn_uv_and_challenge)

static const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(stepup_rule_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(stepup_rule_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(signing_key_rfc8032_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(signing_key_rfc8032_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(signing_key_pop_refused_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(signing_key_pop_refused_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(signing_key_revoked_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(signing_key_revoked_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(webauthn_vectors_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(webauthn_vectors_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(webauthn_uv_and_challenge_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(webauthn_uv_and_challenge_pg, setup_pg, teardown),
};

DCMS_TEST_MAIN(tests)
