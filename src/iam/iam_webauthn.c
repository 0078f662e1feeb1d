/*
 * Passkeys (WebAuthn): registration and assertion ceremonies over stored
 * single-use challenges, the credential list, removal, and
 * dcms_iam_webauthn_verify_assertion() for "biometric" contract signatures.
 * The cryptographic checks are webauthn.c's; this file adds the store: the
 * challenge (consumed before verification), the credential (its public key,
 * counter and UV flag at registration) and the counter rule, with every
 * success and every refusal audited.
 */
#include "dcms/app.h"
#include "dcms/arena.h"
#include "dcms/config.h"
#include "dcms/crypto.h"
#include "dcms/log.h"
#include "dcms/store.h"
#include "dcms/str.h"
#include "iam/iam_cred.h"
#include "iam/webauthn.h"
#include "iam/webauthn_json.h"

#define CRED_COLS                                                                                  \
    "CAST(id AS TEXT), credential_id, alg, sign_count, user_verified, transports, "                \
    "attestation_fmt, aaguid, name, created_at, last_used_at, public_key_cose"
#define CREDS_MAX 20 /* passkeys per identity */
#define CRED_ID_B64_MAX 1400

static struct dcms_query q_cred_insert = DCMS_QUERY(
    "wa_cred_insert",
    "INSERT INTO webauthn_credentials (id, identity_id, credential_id, public_key_cose, alg, "
    "sign_count, user_verified, transports, attestation_fmt, aaguid, name, created_at) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)");
static struct dcms_query q_cred_list =
    DCMS_QUERY("wa_cred_list", "SELECT " CRED_COLS " FROM webauthn_credentials "
                               "WHERE identity_id = $1 ORDER BY created_at, id LIMIT $2");
static struct dcms_query q_cred_by_cid =
    DCMS_QUERY("wa_cred_by_cid", "SELECT " CRED_COLS " FROM webauthn_credentials "
                                 "WHERE credential_id = $1 AND identity_id = $2");
static struct dcms_query q_cred_by_id =
    DCMS_QUERY("wa_cred_by_id", "SELECT " CRED_COLS " FROM webauthn_credentials "
                                "WHERE CAST(id AS TEXT) = $1 AND identity_id = $2");
static struct dcms_query q_cred_count =
    DCMS_QUERY("wa_cred_count", "SELECT COUNT(*) FROM webauthn_credentials WHERE identity_id = $1");
static struct dcms_query q_cred_use = DCMS_QUERY(
    "wa_cred_use", "UPDATE webauthn_credentials SET sign_count = $3, last_used_at = $4 "
                   "WHERE CAST(id AS TEXT) = $1 AND identity_id = $2 AND sign_count = $5");
static struct dcms_query q_cred_delete =
    DCMS_QUERY("wa_cred_delete", "DELETE FROM webauthn_credentials WHERE CAST(id AS TEXT) = $1 "
                                 "AND identity_id = $2");
static struct dcms_query q_ident =
    DCMS_QUERY("wa_identity", "SELECT name, email FROM identities WHERE id = $1");
static struct dcms_query q_cred_owner =
    DCMS_QUERY("wa_cred_owner", "SELECT CAST(identity_id AS TEXT) FROM webauthn_credentials "
                                "WHERE credential_id = $1");
/* Serializes removals of one identity's factors (SQLite's BEGIN IMMEDIATE already does). */
static struct dcms_query q_identity_lock =
    DCMS_QUERY2("wa_identity_lock", "SELECT id FROM identities WHERE id = $1",
                "SELECT id FROM identities WHERE id = $1 FOR UPDATE");
static struct dcms_query q_factors_left = DCMS_QUERY(
    "wa_factors_left",
    "SELECT (SELECT count(*) FROM webauthn_credentials WHERE identity_id = $1) + (SELECT count(*) "
    "FROM totp_credentials WHERE identity_id = $1 AND status = 'confirmed')");
static struct dcms_query q_uh_get = DCMS_QUERY(
    "wa_user_handle_get", "SELECT user_handle FROM webauthn_user_handles WHERE identity_id = $1");
static struct dcms_query q_uh_insert =
    DCMS_QUERY("wa_user_handle_insert",
               "INSERT INTO webauthn_user_handles (identity_id, user_handle, created_at) "
               "VALUES ($1, $2, $3) ON CONFLICT (identity_id) DO NOTHING");
static struct dcms_query q_lch_gc = DCMS_QUERY(
    "wa_login_challenge_gc", "DELETE FROM webauthn_login_challenges WHERE expires_at < $1");
static struct dcms_query q_lch_insert =
    DCMS_QUERY("wa_login_challenge_insert",
               "INSERT INTO webauthn_login_challenges (id, challenge, created_at, expires_at) "
               "VALUES ($1, $2, $3, $4)");
static struct dcms_query q_lch_find =
    DCMS_QUERY("wa_login_challenge_find", "SELECT CAST(id AS TEXT), expires_at, used_at FROM "
                                          "webauthn_login_challenges WHERE challenge = $1");
static struct dcms_query q_lch_use =
    DCMS_QUERY("wa_login_challenge_use", "UPDATE webauthn_login_challenges SET used_at = $2 "
                                         "WHERE CAST(id AS TEXT) = $1 AND used_at IS NULL");

enum {
    W_ID,
    W_CID,
    W_ALG,
    W_COUNT,
    W_UV,
    W_TRANSPORTS,
    W_FMT,
    W_AAGUID,
    W_NAME,
    W_CREATED,
    W_USED,
    W_COSE
};

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

static json_t *cred_json(const struct dcms_store_rows *r, size_t i)
{
    json_t *tr = json_loads(dcms_store_rows_text(r, i, W_TRANSPORTS), 0, NULL);
    if (!json_is_array(tr)) {
        json_decref(tr);
        tr = json_array();
    }
    return json_pack(
        "{s:s, s:s, s:I, s:I, s:b, s:o, s:s, s:s, s:o, s:s, s:o}", "id",
        dcms_store_rows_text(r, i, W_ID), "credential_id", dcms_store_rows_text(r, i, W_CID), "alg",
        (json_int_t)dcms_store_rows_int(r, i, W_ALG), "sign_count",
        (json_int_t)dcms_store_rows_int(r, i, W_COUNT), "user_verified",
        dcms_store_rows_int(r, i, W_UV) != 0, "transports", tr, "attestation_fmt",
        dcms_store_rows_text(r, i, W_FMT), "aaguid", dcms_store_rows_text(r, i, W_AAGUID), "name",
        str_or_null(dcms_store_rows_text(r, i, W_NAME)), "created_at",
        dcms_store_rows_text(r, i, W_CREATED), "last_used_at",
        str_or_null(dcms_store_rows_text(r, i, W_USED)));
}

static struct wa_rp rp_of(const struct dcms_iam *iam)
{
    return (struct wa_rp){iam->cfg->webauthn_rp_id, iam->cfg->webauthn_origins};
}

/*
 * The WebAuthn user handle of an identity (user.id, and the userHandle a
 * discoverable credential returns): opaque random bytes kept in
 * webauthn_user_handles, hex. With `create`, an identity without one gets
 * IAM_WA_USER_HANDLE_BYTES random bytes (two concurrent first registrations
 * agree: the second insert does nothing and both read the winner). *len is
 * 0 when the identity has none and `create` is false.
 */
#define IAM_WA_USER_HANDLE_BYTES 32
#define IAM_WA_USER_HANDLE_MAX 64 /* WebAuthn: at most 64 bytes */

static enum dcms_err user_handle(struct dcms_store_tx *tx, const char *identity_id, bool create,
                                 unsigned char out[IAM_WA_USER_HANDLE_MAX], size_t *len,
                                 struct dcms_errinfo *ei)
{
    *len = 0;
    struct dcms_store_rows *rows = NULL;
    struct dcms_store_val id[] = {DCMS_VAL_TEXT(identity_id)};
    enum dcms_err e = dcms_store_exec(tx, &q_uh_get, id, 1, &rows, NULL, ei);
    if (!e && dcms_store_rows_count(rows) == 0 && create) {
        unsigned char raw[IAM_WA_USER_HANDLE_BYTES];
        char hex[2 * IAM_WA_USER_HANDLE_BYTES + 1], now[DCMS_TIME_STRLEN];
        randombytes_buf(raw, sizeof(raw));
        dcms_hex_encode(hex, raw, sizeof(raw));
        dcms_time_format(dcms_clock_now_us(), now);
        e = dcms_store_exec(tx, &q_uh_insert,
                            (struct dcms_store_val[]){DCMS_VAL_TEXT(identity_id),
                                                      DCMS_VAL_TEXT(hex), DCMS_VAL_TEXT(now)},
                            3, NULL, NULL, ei);
        dcms_store_rows_free(rows);
        rows = NULL;
        if (!e)
            e = dcms_store_exec(tx, &q_uh_get, id, 1, &rows, NULL, ei);
    }
    if (!e && dcms_store_rows_count(rows) == 1) {
        const char *hex = dcms_store_rows_text(rows, 0, 0);
        if (sodium_hex2bin(out, IAM_WA_USER_HANDLE_MAX, hex, strlen(hex), NULL, len, NULL) != 0 ||
            *len == 0)
            e = dcms_err_set(ei, DCMS_ERR_INTERNAL, "a stored user handle is malformed");
    }
    dcms_store_rows_free(rows);
    return e;
}

/* The first problem recorded, for an audit reason. */
static const char *reason_of(const struct dcms_errinfo *ei)
{
    return ei->ndetails ? ei->details[0].problem : ei->message;
}

/* ---- options ---- */

static json_t *cred_descriptors(const struct dcms_store_rows *rows)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < dcms_store_rows_count(rows); i++) {
        json_t *tr = json_loads(dcms_store_rows_text(rows, i, W_TRANSPORTS), 0, NULL);
        json_t *d = json_pack("{s:s, s:s}", "type", "public-key", "id",
                              dcms_store_rows_text(rows, i, W_CID));
        if (d && json_is_array(tr) && json_array_size(tr))
            json_object_set(d, "transports", tr);
        json_decref(tr);
        json_array_append_new(a, d);
    }
    return a;
}

static enum dcms_err list_rows(struct dcms_store_tx *tx, const char *identity_id,
                               struct dcms_store_rows **rows, struct dcms_errinfo *ei)
{
    return dcms_store_exec(
        tx, &q_cred_list,
        (struct dcms_store_val[]){DCMS_VAL_TEXT(identity_id), DCMS_VAL_INT(CREDS_MAX)}, 2, rows,
        NULL, ei);
}

enum dcms_err iam_wa_no_api_key(const struct iam_call *c)
{
    return c->p && c->p->api_key[0]
               ? dcms_err_set(c->ei, DCMS_ERR_FORBIDDEN, "API keys cannot manage or use passkeys")
               : DCMS_OK;
}

enum dcms_err iam_wa_register_options(const struct iam_call *c, const char *uv, json_t **out)
{
    struct dcms_errinfo *ei = c->ei;
    if (iam_wa_no_api_key(c) || iam_require_recent_auth(c, "registering a passkey"))
        return ei->code;
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL, *ident = NULL;
    struct iam_challenge ch;
    enum dcms_err e = dcms_store_begin(c->iam->app->store, DCMS_TX_WRITE, &tx, ei);
    if (e)
        return e;
    e = dcms_store_exec(tx, &q_ident, (struct dcms_store_val[]){DCMS_VAL_TEXT(c->p->id)}, 1, &ident,
                        NULL, ei);
    if (!e && dcms_store_rows_count(ident) != 1)
        e = dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "identity not found");
    if (!e)
        e = list_rows(tx, c->p->id, &rows, ei);
    if (!e && dcms_store_rows_count(rows) >= CREDS_MAX)
        e = dcms_err_set(ei, DCMS_ERR_CONFLICT, "at most %d passkeys per identity", CREDS_MAX);
    unsigned char uh[IAM_WA_USER_HANDLE_MAX];
    size_t uh_len = 0;
    if (!e)
        e = user_handle(tx, c->p->id, true, uh, &uh_len, ei);
    if (!e)
        e = iam_challenge_issue(tx, c->p->id, IAM_PURPOSE_WA_REGISTER, &ch, ei);
    if (!e)
        e = iam_audit(c->iam, tx, c->p->id, "webauthn.register_options", "identity", c->p->id,
                      false, json_pack("{s:s}", "challenge_id", ch.id), c->client_ip, c->request_id,
                      ei);
    if (!e) {
        char uh64[2 * IAM_WA_USER_HANDLE_MAX];
        iam_b64url_encode(uh64, uh, uh_len);
        const char *name = dcms_store_rows_text(ident, 0, 0);
        const char *email = dcms_store_rows_text(ident, 0, 1);
        *out = json_pack(
            "{s:s, s:{s:s, s:s}, s:{s:s, s:s, s:s}, s:[{s:s, s:i}, {s:s, s:i}, {s:s, s:i}], s:i, "
            "s:o, s:{s:s, s:b, s:s}, s:s}",
            "challenge", ch.b64, "rp", "id", c->iam->cfg->webauthn_rp_id, "name", "dcms", "user",
            "id", uh64, "name", email ? email : name, "displayName", name, "pubKeyCredParams",
            "type", "public-key", "alg", WA_ALG_ES256, "type", "public-key", "alg", WA_ALG_EDDSA,
            "type", "public-key", "alg", WA_ALG_RS256, "timeout", IAM_CHALLENGE_TTL_S * 1000,
            "excludeCredentials", cred_descriptors(rows), "authenticatorSelection", "residentKey",
            "preferred", "requireResidentKey", 0, "userVerification", uv, "attestation", "direct");
        if (!*out)
            e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    }
    dcms_store_rows_free(rows);
    dcms_store_rows_free(ident);
    e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, ei);
    if (e) {
        json_decref(*out);
        *out = NULL;
    }
    return e;
}

enum dcms_err iam_wa_assert_options(const struct iam_call *c, const char *identity_id,
                                    const char *uv, json_t **out)
{
    struct dcms_errinfo *ei = c->ei;
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    struct iam_challenge ch;
    enum dcms_err e = dcms_store_begin(c->iam->app->store, DCMS_TX_WRITE, &tx, ei);
    if (e)
        return e;
    e = list_rows(tx, identity_id, &rows, ei);
    if (!e && dcms_store_rows_count(rows) == 0)
        e = dcms_err_set(ei, DCMS_ERR_CONFLICT, "no passkey is registered for this identity");
    if (!e)
        e = iam_challenge_issue(tx, identity_id, IAM_PURPOSE_WA_ASSERT, &ch, ei);
    if (!e)
        e = iam_audit(c->iam, tx, c->p ? c->p->id : identity_id, "webauthn.assert_options",
                      "identity", identity_id, false, json_pack("{s:s}", "challenge_id", ch.id),
                      c->client_ip, c->request_id, ei);
    if (!e) {
        *out = json_pack("{s:s, s:s, s:o, s:s, s:i}", "challenge", ch.b64, "rpId",
                         c->iam->cfg->webauthn_rp_id, "allowCredentials", cred_descriptors(rows),
                         "userVerification", uv, "timeout", IAM_CHALLENGE_TTL_S * 1000);
        if (!*out)
            e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    }
    dcms_store_rows_free(rows);
    e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, ei);
    if (e) {
        json_decref(*out);
        *out = NULL;
    }
    return e;
}

/* ---- registration ---- */

enum dcms_err iam_wa_register_verify(const struct iam_call *c, const json_t *credential,
                                     const char *name, json_t **out)
{
    struct dcms_errinfo *ei = c->ei;
    struct dcms_iam *iam = c->iam;
    struct iam_wa_cred_in in;
    if (iam_wa_no_api_key(c) || iam_require_recent_auth(c, "registering a passkey"))
        return ei->code;
    if (name && (strlen(name) < 1 || strlen(name) > 100))
        dcms_err_field(ei, "name", "must be 1 to 100 characters");
    enum dcms_err e = iam_wa_cred_from_json(credential, true, &in, ei);
    if (e) {
        iam_wa_cred_in_free(&in);
        return e;
    }
    struct iam_challenge ch;
    e = iam_challenge_consume(iam, c->p->id, IAM_PURPOSE_WA_REGISTER, NULL, in.challenge,
                              "response.clientDataJSON", &ch, ei);
    struct wa_registration reg;
    struct wa_rp rp = rp_of(iam);
    if (!e)
        e = wa_verify_registration(in.att.p, in.att.n, in.cdj.p, in.cdj.n, ch.b64, &rp, false, &reg,
                                   ei);
    char *cid = NULL;
    if (!e) {
        cid = malloc(iam_b64url_len(reg.ad.cred_id_len));
        if (!cid)
            e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
        else
            iam_b64url_encode(cid, reg.ad.cred_id, reg.ad.cred_id_len);
        if (!e && strcmp(cid, in.id) != 0)
            e = dcms_err_field(ei, "id", "is not the credential id in the attestation");
    }
    if (e) {
        if (e == DCMS_ERR_VALIDATION)
            iam_cred_audit_denied(iam, c->p->id, "webauthn.register", "identity", c->p->id,
                                  reason_of(ei), c->client_ip, c->request_id);
        free(cid);
        iam_wa_cred_in_free(&in);
        return e;
    }
    char *cose = malloc(iam_b64url_len(reg.ad.cose_key_len));
    char *transports = json_dumps(in.transports, JSON_COMPACT);
    char id[DCMS_UUID_STRLEN], now[DCMS_TIME_STRLEN];
    dcms_uuid_v7(id);
    dcms_time_format(dcms_clock_now_us(), now);
    struct dcms_store_tx *tx = NULL;
    struct dcms_store_rows *rows = NULL;
    if (!cose || !transports) {
        e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
        goto out;
    }
    iam_b64url_encode(cose, reg.ad.cose_key, reg.ad.cose_key_len);
    if ((e = dcms_store_begin(iam->app->store, DCMS_TX_WRITE, &tx, ei)))
        goto out;
    int64_t ncreds = 0;
    e = dcms_store_exec_int(tx, &q_cred_count, (struct dcms_store_val[]){DCMS_VAL_TEXT(c->p->id)},
                            1, &ncreds, ei);
    if (!e && ncreds >= CREDS_MAX)
        e = dcms_err_set(ei, DCMS_ERR_CONFLICT, "at most %d passkeys per identity", CREDS_MAX);
    if (!e) {
        char fmt[40];
        snprintf(fmt, sizeof(fmt), "%s", reg.fmt);
        e = dcms_store_exec(tx, &q_cred_insert,
                            (struct dcms_store_val[]){
                                DCMS_VAL_TEXT(id), DCMS_VAL_TEXT(c->p->id), DCMS_VAL_TEXT(cid),
                                DCMS_VAL_TEXT(cose), DCMS_VAL_INT(reg.alg),
                                DCMS_VAL_INT(reg.ad.sign_count),
                                DCMS_VAL_INT(reg.user_verified ? 1 : 0), DCMS_VAL_TEXT(transports),
                                DCMS_VAL_TEXT(fmt), DCMS_VAL_TEXT(reg.aaguid),
                                name ? DCMS_VAL_TEXT(name) : DCMS_VAL_NULL, DCMS_VAL_TEXT(now)},
                            12, NULL, NULL, ei);
        if (e == DCMS_ERR_CONFLICT) {
            dcms_errinfo_init(ei, ei->arena);
            e = dcms_err_set(ei, DCMS_ERR_CONFLICT, "this passkey is already registered");
        }
    }
    if (!e)
        e = iam_audit(iam, tx, c->p->id, "webauthn.register", "webauthn_credential", id, false,
                      json_pack("{s:s, s:i, s:s, s:s, s:s, s:b}", "credential_id", cid, "alg",
                                reg.alg, "attestation_fmt", reg.fmt, "attestation_type",
                                reg.att_type, "aaguid", reg.aaguid, "user_verified",
                                reg.user_verified),
                      c->client_ip, c->request_id, ei);
    if (!e)
        e = dcms_store_exec(tx, &q_cred_by_id,
                            (struct dcms_store_val[]){DCMS_VAL_TEXT(id), DCMS_VAL_TEXT(c->p->id)},
                            2, &rows, NULL, ei);
    if (!e && dcms_store_rows_count(rows) == 1)
        *out = cred_json(rows, 0);
    e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, ei);
    tx = NULL;
    if (!e && !*out)
        e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
out:
    dcms_store_rows_free(rows);
    dcms_store_rollback(tx);
    free(cose);
    free(transports);
    free(cid);
    iam_wa_cred_in_free(&in);
    return e;
}

/* ---- assertions ---- */

/*
 * The assertion's userHandle must be the identity's (compared in constant
 * time: it stands for the account in passkey-first sign-in).
 */
static enum dcms_err user_handle_check(struct dcms_iam *iam, const char *identity_id,
                                       const struct iam_wa_cred_in *in, struct dcms_errinfo *ei)
{
    unsigned char uh[IAM_WA_USER_HANDLE_MAX];
    size_t len = 0;
    struct dcms_store_tx *tx;
    enum dcms_err e = dcms_store_begin(iam->app->store, DCMS_TX_READ, &tx, ei);
    if (e)
        return e;
    e = user_handle(tx, identity_id, false, uh, &len, ei);
    dcms_store_rollback(tx);
    if (e)
        return e;
    if (!len || in->uh.n != len || sodium_memcmp(in->uh.p, uh, len) != 0)
        return dcms_err_field(ei, "response.userHandle", "is not this identity's user handle");
    return DCMS_OK;
}

/*
 * The assertion core shared by the route, the login factor and contract
 * signatures: the credential must be `identity_id`'s; the assertion is
 * checked against `challenge` (base64url) by webauthn.c, then the counter
 * rule, then the new counter is stored (compare-and-set, so two uses of one
 * assertion cannot both pass). Refusals are audited as `action` (denied).
 */
static enum dcms_err assert_core(struct dcms_iam *iam, const char *identity_id,
                                 const struct iam_wa_cred_in *in, const char *challenge,
                                 bool require_uv, const char *actor, const char *action,
                                 const char *client_ip, const char *request_id,
                                 struct dcms_webauthn_result *out, struct dcms_errinfo *ei)
{
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_begin(iam->app->store, DCMS_TX_READ, &tx, ei);
    if (e)
        return e;
    e = dcms_store_exec(
        tx, &q_cred_by_cid,
        (struct dcms_store_val[]){DCMS_VAL_TEXT(in->id), DCMS_VAL_TEXT(identity_id)}, 2, &rows,
        NULL, ei);
    dcms_store_rollback(tx);
    if (!e && dcms_store_rows_count(rows) != 1)
        e = dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "no such passkey is registered to the identity");
    if (e) {
        if (e == DCMS_ERR_NOT_FOUND)
            iam_cred_audit_denied(iam, actor, action, "identity", identity_id, "unknown credential",
                                  client_ip, request_id);
        dcms_store_rows_free(rows);
        return e;
    }
    char row_id[DCMS_UUID_STRLEN];
    snprintf(row_id, sizeof(row_id), "%s", dcms_store_rows_text(rows, 0, W_ID));
    uint32_t stored = (uint32_t)dcms_store_rows_int(rows, 0, W_COUNT);
    int alg = (int)dcms_store_rows_int(rows, 0, W_ALG);
    const char *cose64 = dcms_store_rows_text(rows, 0, W_COSE);
    size_t cose_cap = strlen(cose64), cose_len = 0;
    unsigned char *cose = malloc(cose_cap + 1);
    if (!cose || !iam_b64url_decode(cose, cose_cap, cose64, strlen(cose64), &cose_len))
        e = dcms_err_set(ei, DCMS_ERR_INTERNAL, "a stored passkey is malformed");
    dcms_store_rows_free(rows);
    rows = NULL;
    struct wa_assertion as;
    struct wa_rp rp = rp_of(iam);
    if (!e) {
        struct wa_assertion_in ai = {in->ad.p, in->cdj.p, in->sig.p, cose,
                                     in->ad.n, in->cdj.n, in->sig.n, cose_len};
        e = wa_verify_assertion(&ai, challenge, &rp, require_uv, &as, ei);
    }
    free(cose);
    if (!e && in->uh.p)
        e = user_handle_check(iam, identity_id, in, ei);
    bool cloned = false;
    if (!e && !wa_counter_ok(stored, as.sign_count)) {
        cloned = true;
        e = dcms_err_field(ei, "response.authenticatorData",
                           "the signature counter did not increase (%lu after %lu): a replayed "
                           "assertion or a cloned authenticator",
                           (unsigned long)as.sign_count, (unsigned long)stored);
    }
    if (!e) {
        char now[DCMS_TIME_STRLEN];
        dcms_time_format(dcms_clock_now_us(), now);
        if ((e = dcms_store_begin(iam->app->store, DCMS_TX_WRITE, &tx, ei)))
            return e;
        uint64_t n = 0;
        e = dcms_store_exec(tx, &q_cred_use,
                            (struct dcms_store_val[]){DCMS_VAL_TEXT(row_id),
                                                      DCMS_VAL_TEXT(identity_id),
                                                      DCMS_VAL_INT(as.sign_count),
                                                      DCMS_VAL_TEXT(now), DCMS_VAL_INT(stored)},
                            5, NULL, &n, ei);
        if (!e && n != 1) {
            cloned = true;
            e = dcms_err_field(ei, "response.authenticatorData",
                               "the signature counter moved meanwhile: a replayed assertion");
        }
        if (!e)
            e = iam_audit(iam, tx, actor, action, "webauthn_credential", row_id, false,
                          json_pack("{s:s, s:I, s:b}", "identity_id", identity_id, "sign_count",
                                    (json_int_t)as.sign_count, "user_verified", as.user_verified),
                          client_ip, request_id, ei);
        e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, ei);
    }
    if (e == DCMS_ERR_VALIDATION)
        iam_cred_audit_denied(iam, actor, cloned ? "webauthn.counter_regression" : action,
                              "webauthn_credential", row_id, reason_of(ei), client_ip, request_id);
    if (!e && out) {
        memset(out, 0, sizeof(*out));
        snprintf(out->credential_id, sizeof(out->credential_id), "%s", in->id);
        out->cose_alg = alg;
        out->user_present = as.user_present;
        out->user_verified = as.user_verified;
        out->sign_count = as.sign_count;
    }
    return e;
}

enum dcms_err iam_wa_assert(struct dcms_iam *iam, const char *identity_id, const json_t *assertion,
                            bool require_uv, const char *actor, const char *action,
                            const char *client_ip, const char *request_id,
                            struct dcms_webauthn_result *out, struct dcms_errinfo *ei)
{
    struct iam_wa_cred_in in;
    enum dcms_err e = iam_wa_cred_from_json(assertion, false, &in, ei);
    struct iam_challenge ch;
    if (!e)
        e = iam_challenge_consume(iam, identity_id, IAM_PURPOSE_WA_ASSERT, NULL, in.challenge,
                                  "response.clientDataJSON", &ch, ei);
    if (e == DCMS_ERR_VALIDATION)
        iam_cred_audit_denied(iam, actor, action, "identity", identity_id, reason_of(ei), client_ip,
                              request_id);
    if (!e)
        e = assert_core(iam, identity_id, &in, ch.b64, require_uv, actor, action, client_ip,
                        request_id, out, ei);
    iam_wa_cred_in_free(&in);
    return e;
}

enum dcms_err dcms_iam_webauthn_verify_assertion(struct dcms_iam *iam, const char *identity_id,
                                                 const unsigned char *challenge,
                                                 size_t challenge_len, const json_t *assertion,
                                                 bool require_uv, struct dcms_webauthn_result *out,
                                                 struct dcms_errinfo *ei)
{
    if (!identity_id || !dcms_uuid_valid(identity_id))
        return dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "identity not found");
    if (!challenge || challenge_len < 16 || challenge_len > 96)
        return dcms_err_set(ei, DCMS_ERR_BAD_REQUEST, "the challenge must be 16 to 96 bytes");
    char b64[130];
    iam_b64url_encode(b64, challenge, challenge_len);
    struct iam_wa_cred_in in;
    enum dcms_err e = iam_wa_cred_from_json(assertion, false, &in, ei);
    if (!e)
        e = assert_core(iam, identity_id, &in, b64, require_uv, identity_id, "webauthn.sign", NULL,
                        NULL, out, ei);
    else if (e == DCMS_ERR_VALIDATION)
        iam_cred_audit_denied(iam, identity_id, "webauthn.sign", "identity", identity_id,
                              reason_of(ei), NULL, NULL);
    iam_wa_cred_in_free(&in);
    return e;
}

/* ---- passkey-first sign-in ---- */

enum dcms_err iam_wa_login_options(const struct iam_call *c, json_t **out, int64_t *retry_after_s)
{
    struct dcms_errinfo *ei = c->ei;
    /* An address locked out of logins gets no challenges either (they are store rows). */
    char acct[300], ip[80];
    iam_throttle_keys("", c->client_ip, acct, ip);
    enum dcms_err e = iam_throttle_check(c->iam, ip, "", retry_after_s, ei);
    if (e)
        return e;
    int64_t now = dcms_clock_now_us();
    char id[DCMS_UUID_STRLEN], now_s[DCMS_TIME_STRLEN], exp_s[DCMS_TIME_STRLEN];
    char b64[IAM_CHALLENGE_B64_LEN];
    unsigned char raw[IAM_CHALLENGE_BYTES];
    randombytes_buf(raw, sizeof(raw));
    iam_b64url_encode(b64, raw, sizeof(raw));
    dcms_uuid_v7(id);
    dcms_time_format(now, now_s);
    dcms_time_format(now + (int64_t)IAM_WA_LOGIN_CHALLENGE_TTL_S * 1000000, exp_s);
    struct dcms_store_tx *tx;
    if ((e = dcms_store_begin(c->iam->app->store, DCMS_TX_WRITE, &tx, ei)))
        return e;
    e = dcms_store_exec(tx, &q_lch_gc, (struct dcms_store_val[]){DCMS_VAL_TEXT(now_s)}, 1, NULL,
                        NULL, ei);
    if (!e)
        e = dcms_store_exec(tx, &q_lch_insert,
                            (struct dcms_store_val[]){DCMS_VAL_TEXT(id), DCMS_VAL_TEXT(b64),
                                                      DCMS_VAL_TEXT(now_s), DCMS_VAL_TEXT(exp_s)},
                            4, NULL, NULL, ei);
    if (!e)
        e = iam_audit(c->iam, tx, "anonymous", "webauthn.login_options", "webauthn_challenge", id,
                      false, json_pack("{s:s}", "expires_at", exp_s), c->client_ip, c->request_id,
                      ei);
    e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, ei);
    if (e)
        return e;
    /* No allowCredentials: the browser offers the discoverable passkeys it holds for the RP. */
    *out = json_pack("{s:s, s:s, s:[], s:s, s:i}", "challenge", b64, "rpId",
                     c->iam->cfg->webauthn_rp_id, "allowCredentials", "userVerification",
                     "required", "timeout", IAM_WA_LOGIN_CHALLENGE_TTL_S * 1000);
    return *out ? DCMS_OK : dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
}

enum dcms_err iam_wa_credential_owner(struct dcms_iam *iam, const char *credential_id,
                                      char identity_id[DCMS_UUID_STRLEN], struct dcms_errinfo *ei)
{
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_begin(iam->app->store, DCMS_TX_READ, &tx, ei);
    if (e)
        return e;
    e = dcms_store_exec(tx, &q_cred_owner, (struct dcms_store_val[]){DCMS_VAL_TEXT(credential_id)},
                        1, &rows, NULL, ei);
    dcms_store_rollback(tx);
    if (!e && dcms_store_rows_count(rows) != 1)
        e = dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "this passkey is not registered here");
    if (!e)
        snprintf(identity_id, DCMS_UUID_STRLEN, "%s", dcms_store_rows_text(rows, 0, 0));
    dcms_store_rows_free(rows);
    return e;
}

/* Uses up a passkey-first challenge (by its base64url text): unused, unexpired, issued here. */
static enum dcms_err login_challenge_consume(struct dcms_iam *iam, const char *b64,
                                             struct dcms_errinfo *ei)
{
    static const char field[] = "response.clientDataJSON";
    if (strlen(b64) != IAM_CHALLENGE_B64_LEN - 1)
        return dcms_err_field(ei, field, "is not a sign-in challenge this server issued");
    int64_t now = dcms_clock_now_us(), exp = 0;
    char now_s[DCMS_TIME_STRLEN];
    dcms_time_format(now, now_s);
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_begin(iam->app->store, DCMS_TX_WRITE, &tx, ei);
    if (e)
        return e;
    e = dcms_store_exec(tx, &q_lch_find, (struct dcms_store_val[]){DCMS_VAL_TEXT(b64)}, 1, &rows,
                        NULL, ei);
    uint64_t n = 0;
    if (!e && dcms_store_rows_count(rows) != 1)
        e = dcms_err_field(ei, field, "is not a sign-in challenge this server issued");
    else if (!e && !dcms_store_rows_is_null(rows, 0, 2))
        e = dcms_err_field(ei, field, "was already used (challenges are single use)");
    else if (!e && (dcms_time_parse(dcms_store_rows_text(rows, 0, 1), &exp) || exp <= now))
        e = dcms_err_field(ei, field, "has expired (sign-in challenges are valid for %d seconds)",
                           IAM_WA_LOGIN_CHALLENGE_TTL_S);
    if (!e)
        e = dcms_store_exec(
            tx, &q_lch_use,
            (struct dcms_store_val[]){DCMS_VAL_TEXT(dcms_store_rows_text(rows, 0, 0)),
                                      DCMS_VAL_TEXT(now_s)},
            2, NULL, &n, ei);
    if (!e && n != 1)
        e = dcms_err_field(ei, field, "was already used (challenges are single use)");
    dcms_store_rows_free(rows);
    return e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, ei);
}

enum dcms_err iam_wa_login_verify(struct dcms_iam *iam, const char *identity_id,
                                  const struct iam_wa_cred_in *in, const char *client_ip,
                                  const char *request_id, struct dcms_webauthn_result *out,
                                  const char **why, struct dcms_errinfo *ei)
{
    static const char action[] = "webauthn.login";
    *why = "bad_passkey";
    enum dcms_err e = login_challenge_consume(iam, in->challenge, ei);
    if (!e && !in->uh.p)
        e = dcms_err_field(ei, "response.userHandle",
                           "is required: sign in with a discoverable passkey (one that holds your "
                           "account), or with your password");
    if (!e && (e = user_handle_check(iam, identity_id, in, ei)) == DCMS_ERR_VALIDATION)
        *why = "passkey_user_handle";
    if (e) {
        if (e == DCMS_ERR_VALIDATION)
            iam_cred_audit_denied(iam, identity_id, action, "identity", identity_id, reason_of(ei),
                                  client_ip, request_id);
        return e;
    }
    /* A passkey alone replaces the password and the second factor: the user must be verified. */
    e = assert_core(iam, identity_id, in, in->challenge, true, identity_id, action, client_ip,
                    request_id, out, ei);
    struct wa_authdata ad;
    if (e == DCMS_ERR_VALIDATION && !wa_authdata_parse(in->ad.p, in->ad.n, &ad) &&
        !(ad.flags & WA_FLAG_UV))
        *why = "passkey_no_user_verification";
    return e;
}

/* ---- list and removal ---- */

enum dcms_err iam_wa_enrolled(struct dcms_iam *iam, const char *identity_id, bool *yes,
                              struct dcms_errinfo *ei)
{
    struct dcms_store_tx *tx;
    int64_t n = 0;
    enum dcms_err e = dcms_store_begin(iam->app->store, DCMS_TX_READ, &tx, ei);
    if (e)
        return e;
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(identity_id)};
    e = dcms_store_exec_int(tx, &q_cred_count, p, 1, &n, ei);
    dcms_store_rollback(tx);
    *yes = !e && n > 0;
    return e;
}

enum dcms_err iam_wa_list(const struct iam_call *c, json_t **out)
{
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_begin(c->iam->app->store, DCMS_TX_READ, &tx, c->ei);
    if (e)
        return e;
    e = list_rows(tx, c->p->id, &rows, c->ei);
    dcms_store_rollback(tx);
    if (e)
        return e;
    json_t *a = json_array();
    for (size_t i = 0; a && i < dcms_store_rows_count(rows); i++)
        json_array_append_new(a, cred_json(rows, i));
    dcms_store_rows_free(rows);
    *out = json_pack("{s:o}", "credentials", a);
    return *out ? DCMS_OK : dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
}

enum dcms_err iam_wa_delete(const struct iam_call *c, const char *id)
{
    if (iam_wa_no_api_key(c) || iam_require_recent_auth(c, "deleting a passkey"))
        return c->ei->code;
    if (!id || !dcms_uuid_valid(id))
        return dcms_err_set(c->ei, DCMS_ERR_NOT_FOUND, "passkey not found");
    struct dcms_store_tx *tx;
    enum dcms_err e = dcms_store_begin(c->iam->app->store, DCMS_TX_WRITE, &tx, c->ei);
    if (e)
        return e;
    uint64_t n = 0;
    /*
     * Two removals of the identity's last two passkeys must not both see the other one left
     * (PostgreSQL writes run READ COMMITTED): lock the identity first.
     */
    e = dcms_store_exec(tx, &q_identity_lock, (struct dcms_store_val[]){DCMS_VAL_TEXT(c->p->id)}, 1,
                        NULL, NULL, c->ei);
    if (!e)
        e = dcms_store_exec(tx, &q_cred_delete,
                            (struct dcms_store_val[]){DCMS_VAL_TEXT(id), DCMS_VAL_TEXT(c->p->id)},
                            2, NULL, &n, c->ei);
    if (!e && n != 1)
        e = dcms_err_set(c->ei, DCMS_ERR_NOT_FOUND, "passkey not found");
    /* Never the last second factor: what is left (passkeys, a confirmed TOTP) must not be none. */
    int64_t left = 0;
    if (!e)
        e = dcms_store_exec_int(tx, &q_factors_left,
                                (struct dcms_store_val[]){DCMS_VAL_TEXT(c->p->id)}, 1, &left,
                                c->ei);
    if (!e && left == 0) {
        dcms_store_rollback(tx);
        iam_cred_audit_denied(c->iam, c->p->id, "webauthn.delete", "webauthn_credential", id,
                              "last second factor", c->client_ip, c->request_id);
        dcms_err_field(c->ei, "id",
                       "is the last second factor of the account; removing it would leave the "
                       "password alone");
        return dcms_err_set(c->ei, DCMS_ERR_CONFLICT,
                            "this passkey is your only second factor: add another passkey or an "
                            "authenticator app first");
    }
    if (!e)
        e = iam_audit(c->iam, tx, c->p->id, "webauthn.delete", "webauthn_credential", id, false,
                      NULL, c->client_ip, c->request_id, c->ei);
    return e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, c->ei);
}

/* ---- re-checking a stored assertion (dcms/credentials.h) ---- */

enum dcms_err dcms_iam_webauthn_recheck_assertion(const unsigned char *challenge,
                                                  size_t challenge_len,
                                                  const char *client_data_json,
                                                  const char *authenticator_data, bool require_uv,
                                                  struct dcms_errinfo *ei)
{
    unsigned char
        buf[WA_CLIENT_DATA_MAX > WA_AUTH_DATA_MAX ? WA_CLIENT_DATA_MAX : WA_AUTH_DATA_MAX];
    size_t len = 0;
    if (!client_data_json || !iam_b64url_decode(buf, WA_CLIENT_DATA_MAX, client_data_json,
                                                strlen(client_data_json), &len))
        return dcms_err_set(ei, DCMS_ERR_VALIDATION, "the stored clientDataJSON is unreadable");
    json_t *cd = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, NULL);
    const char *type = json_string_value(json_object_get(cd, "type"));
    bool is_get = type && strcmp(type, "webauthn.get") == 0;
    json_decref(cd);
    char got[96], want[96];
    if (challenge_len > 64)
        return dcms_err_set(ei, DCMS_ERR_VALIDATION, "the challenge is too long");
    iam_b64url_encode(want, challenge, challenge_len);
    if (!wa_client_data_challenge(buf, len, got, sizeof(got)) || strcmp(got, want) != 0)
        return dcms_err_set(ei, DCMS_ERR_VALIDATION,
                            "the assertion's challenge is not the signed challenge");
    if (!is_get)
        return dcms_err_set(ei, DCMS_ERR_VALIDATION, "the assertion is not a webauthn.get");
    struct wa_authdata ad;
    if (!authenticator_data ||
        !iam_b64url_decode(buf, WA_AUTH_DATA_MAX, authenticator_data, strlen(authenticator_data),
                           &len) ||
        wa_authdata_parse(buf, len, &ad))
        return dcms_err_set(ei, DCMS_ERR_VALIDATION, "the stored authenticatorData is unreadable");
    if (require_uv && !(ad.flags & WA_FLAG_UV))
        return dcms_err_set(ei, DCMS_ERR_VALIDATION, "the assertion lacks the user-verified flag");
    return DCMS_OK;
}
