/*
 * Ed25519 signing keys for "digital" contract signatures. An identity
 * registers its own public key after proving possession of the private key:
 * it signs "dcms-signing-key-pop:" || challenge || public key, where the
 * challenge is a single-use server challenge. Keys are rotated (a new key
 * replaces an old one atomically) and revoked; a revoked key stays stored so
 * that the signatures it made before its revocation remain verifiable.
 */
#include "dcms/app.h"
#include "dcms/arena.h"
#include "dcms/crypto.h"
#include "dcms/log.h"
#include "dcms/store.h"
#include "iam/iam_cred.h"

#define KEY_COLS                                                                                   \
    "id, CAST(identity_id AS TEXT), alg, public_key, name, created_at, revoked_at, "               \
    "revoked_reason, replaced_by"
#define KEYS_LIST_MAX 1000 /* active and past keys listed per identity */
#define KEYS_ACTIVE_MAX 20 /* active keys per identity */

static struct dcms_query q_insert = DCMS_QUERY(
    "signkey_insert", "INSERT INTO signing_keys (id, identity_id, alg, public_key, name, "
                      "created_at) VALUES ($1, $2, 'Ed25519', $3, $4, $5)");
static struct dcms_query q_get = DCMS_QUERY(
    "signkey_get", "SELECT " KEY_COLS " FROM signing_keys WHERE id = $1 AND identity_id = $2");
static struct dcms_query q_list =
    DCMS_QUERY("signkey_list", "SELECT " KEY_COLS " FROM signing_keys WHERE identity_id = $1 "
                               "ORDER BY created_at, id LIMIT $2");
static struct dcms_query q_active =
    DCMS_QUERY("signkey_active",
               "SELECT COUNT(*) FROM signing_keys WHERE identity_id = $1 AND revoked_at IS NULL");
static struct dcms_query q_revoke = DCMS_QUERY(
    "signkey_revoke", "UPDATE signing_keys SET revoked_at = $3, revoked_by = $4, "
                      "revoked_reason = $5, replaced_by = $6 WHERE id = $1 AND identity_id = $2 "
                      "AND revoked_at IS NULL");

enum { K_ID, K_IDENTITY, K_ALG, K_PK, K_NAME, K_CREATED, K_REVOKED, K_REASON, K_REPLACED };

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

static json_t *key_json(const struct dcms_store_rows *r, size_t i)
{
    const char *reason = dcms_store_rows_text(r, i, K_REASON);
    const char *status = !dcms_store_rows_text(r, i, K_REVOKED)     ? "active"
                         : reason && strcmp(reason, "rotated") == 0 ? "rotated"
                                                                    : "revoked";
    return json_pack(
        "{s:s, s:s, s:s, s:s, s:o, s:s, s:s, s:o, s:o}", "id", dcms_store_rows_text(r, i, K_ID),
        "identity_id", dcms_store_rows_text(r, i, K_IDENTITY), "alg",
        dcms_store_rows_text(r, i, K_ALG), "public_key", dcms_store_rows_text(r, i, K_PK), "name",
        str_or_null(dcms_store_rows_text(r, i, K_NAME)), "status", status, "created_at",
        dcms_store_rows_text(r, i, K_CREATED), "revoked_at",
        str_or_null(dcms_store_rows_text(r, i, K_REVOKED)), "replaced_by",
        str_or_null(dcms_store_rows_text(r, i, K_REPLACED)));
}

/* The key's row, read in `tx`, or when `tx` is NULL in a read of its own from `s`. */
static enum dcms_err load_key_from(struct dcms_store *s, struct dcms_store_tx *tx,
                                   const char *identity_id, const char *key_id,
                                   struct dcms_store_rows **rows, struct dcms_errinfo *ei)
{
    *rows = NULL;
    if (!key_id || !dcms_uuid_valid(key_id) || !dcms_uuid_valid(identity_id))
        return dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "signing key not found");
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(key_id), DCMS_VAL_TEXT(identity_id)};
    enum dcms_err e = tx ? dcms_store_exec(tx, &q_get, p, 2, rows, NULL, ei)
                         : dcms_store_read_one(s, &q_get, p, 2, rows, ei);
    if (!e && dcms_store_rows_count(*rows) != 1) {
        dcms_store_rows_free(*rows);
        *rows = NULL;
        e = dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "signing key not found");
    }
    return e;
}

static enum dcms_err load_key(struct dcms_store_tx *tx, const char *identity_id, const char *key_id,
                              struct dcms_store_rows **rows, struct dcms_errinfo *ei)
{
    return load_key_from(NULL, tx, identity_id, key_id, rows, ei);
}

void iam_signkey_pop_message(const unsigned char challenge[IAM_CHALLENGE_BYTES],
                             const unsigned char pk[32], unsigned char *out, size_t *len)
{
    size_t n = sizeof(IAM_SIGNKEY_POP_PREFIX) - 1;
    memcpy(out, IAM_SIGNKEY_POP_PREFIX, n);
    memcpy(out + n, challenge, IAM_CHALLENGE_BYTES);
    memcpy(out + n + IAM_CHALLENGE_BYTES, pk, 32);
    *len = n + IAM_CHALLENGE_BYTES + 32;
}

enum dcms_err iam_signkey_challenge(const struct iam_call *c, const char *identity_id, json_t **out)
{
    if (iam_require_recent_auth(c, "registering a signing key"))
        return c->ei->code;
    struct dcms_store_tx *tx;
    enum dcms_err e = dcms_store_begin(c->iam->app->store, DCMS_TX_WRITE, &tx, c->ei);
    if (e)
        return e;
    struct iam_challenge ch;
    bool hidden = false;
    e = iam_cred_authorize(c, tx, identity_id, true, NULL, &hidden);
    if (!e)
        e = iam_challenge_issue(tx, identity_id, IAM_PURPOSE_SIGNING_KEY, &ch, c->ei);
    if (!e)
        e = iam_audit(c->iam, tx, c->p->id, "signing_key.challenge", "identity", identity_id, false,
                      json_pack("{s:s}", "challenge_id", ch.id), c->client_ip, c->request_id,
                      c->ei);
    e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, c->ei);
    iam_identity_hidden_audit(c, hidden, identity_id, "signing_key.challenge");
    if (e)
        return e;
    *out = json_pack("{s:s, s:s, s:s, s:s}", "challenge_id", ch.id, "challenge", ch.b64,
                     "expires_at", ch.expires_at, "message_prefix", IAM_SIGNKEY_POP_PREFIX);
    return *out ? DCMS_OK : dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
}

/* Checks the body's shape; fills pk and sig. Every problem is recorded at once. */
static void check_input(const struct iam_signkey_in *in, unsigned char pk[32],
                        unsigned char sig[64], struct dcms_errinfo *ei)
{
    size_t n = 0;
    if (!in->public_key) {
        if (!(in->invalid & 1u))
            dcms_err_field(ei, "public_key", "is required");
    } else if (!iam_b64url_decode(pk, 32, in->public_key, strlen(in->public_key), &n) || n != 32)
        dcms_err_field(ei, "public_key", "must be a raw 32-byte Ed25519 public key, base64url");
    else if (crypto_core_ed25519_is_valid_point(pk) != 1)
        dcms_err_field(ei, "public_key",
                       "is not a valid Ed25519 public key (small order or not "
                       "on the curve)");
    if (!in->challenge_id) {
        if (!(in->invalid & 2u))
            dcms_err_field(ei, "challenge_id", "is required");
    } else if (!dcms_uuid_valid(in->challenge_id))
        dcms_err_field(ei, "challenge_id", "must be the challenge_id of a key challenge");
    if (!in->signature) {
        if (!(in->invalid & 4u))
            dcms_err_field(ei, "signature", "is required");
    } else if (!iam_b64url_decode(sig, 64, in->signature, strlen(in->signature), &n) || n != 64)
        dcms_err_field(ei, "signature", "must be a 64-byte Ed25519 signature, base64url");
    if (in->name && (strlen(in->name) < 1 || strlen(in->name) > 100))
        dcms_err_field(ei, "name", "must be 1 to 100 characters");
}

enum dcms_err iam_signkey_register(const struct iam_call *c, const char *identity_id,
                                   const char *replace_key_id, const struct iam_signkey_in *in,
                                   json_t **out)
{
    struct dcms_errinfo *ei = c->ei;
    if (iam_require_recent_auth(c, replace_key_id ? "rotating a signing key"
                                                  : "registering a signing key"))
        return ei->code;
    unsigned char pk[32], sig[64];
    check_input(in, pk, sig, ei);
    if (ei->code)
        return ei->code;
    /* Who may do this, and (for a rotation) whether the old key is there and active. */
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_begin(c->iam->app->store, DCMS_TX_READ, &tx, ei);
    if (e)
        return e;
    bool hidden = false;
    e = iam_cred_authorize(c, tx, identity_id, true, NULL, &hidden);
    if (!e && replace_key_id && !(e = load_key(tx, identity_id, replace_key_id, &rows, ei)) &&
        dcms_store_rows_text(rows, 0, K_REVOKED))
        e = dcms_err_set(ei, DCMS_ERR_CONFLICT, "the key was already revoked at %s",
                         dcms_store_rows_text(rows, 0, K_REVOKED));
    dcms_store_rows_free(rows);
    rows = NULL;
    dcms_store_rollback(tx);
    iam_identity_hidden_audit(c, hidden, identity_id,
                              replace_key_id ? "signing_key.rotate" : "signing_key.register");
    if (e)
        return e;

    /* The proof of possession; the challenge is used up whatever it shows. */
    const char *action = replace_key_id ? "signing_key.rotate" : "signing_key.register";
    struct iam_challenge ch;
    e = iam_challenge_consume(c->iam, identity_id, IAM_PURPOSE_SIGNING_KEY, in->challenge_id, NULL,
                              "challenge_id", &ch, ei);
    if (!e) {
        unsigned char msg[IAM_SIGNKEY_POP_LEN];
        size_t mlen;
        iam_signkey_pop_message(ch.raw, pk, msg, &mlen);
        if (!dcms_sign_verify(pk, msg, mlen, sig))
            e = dcms_err_field(ei, "signature",
                               "is not a valid proof of possession: sign \"%s\" || challenge "
                               "|| public_key with the private key",
                               IAM_SIGNKEY_POP_PREFIX);
    }
    if (e) {
        if (e == DCMS_ERR_VALIDATION)
            iam_cred_audit_denied(c->iam, c->p->id, action, "identity", identity_id, ei->message,
                                  c->client_ip, c->request_id);
        return e;
    }

    char key_id[DCMS_UUID_STRLEN], now[DCMS_TIME_STRLEN];
    dcms_uuid_v7(key_id);
    dcms_time_format(dcms_clock_now_us(), now);
    char pk_b64[48];
    iam_b64url_encode(pk_b64, pk, 32);
    if ((e = dcms_store_begin(c->iam->app->store, DCMS_TX_WRITE, &tx, ei)))
        return e;
    if (replace_key_id) {
        uint64_t n = 0;
        e = dcms_store_exec(
            tx, &q_revoke,
            (struct dcms_store_val[]){DCMS_VAL_TEXT(replace_key_id), DCMS_VAL_TEXT(identity_id),
                                      DCMS_VAL_TEXT(now), DCMS_VAL_TEXT(c->p->id),
                                      DCMS_VAL_TEXT("rotated"), DCMS_VAL_TEXT(key_id)},
            6, NULL, &n, ei);
        if (!e && n != 1)
            e = dcms_err_set(ei, DCMS_ERR_CONFLICT, "the key was revoked meanwhile");
    }
    if (!e) {
        int64_t active = 0;
        e = dcms_store_exec_int(
            tx, &q_active, (struct dcms_store_val[]){DCMS_VAL_TEXT(identity_id)}, 1, &active, ei);
        if (!e && active >= KEYS_ACTIVE_MAX)
            e = dcms_err_set(ei, DCMS_ERR_CONFLICT,
                             "at most %d active signing keys per identity: revoke one first",
                             KEYS_ACTIVE_MAX);
        rows = NULL;
    }
    if (!e) {
        e = dcms_store_exec(
            tx, &q_insert,
            (struct dcms_store_val[]){
                DCMS_VAL_TEXT(key_id), DCMS_VAL_TEXT(identity_id), DCMS_VAL_TEXT(pk_b64),
                in->name ? DCMS_VAL_TEXT(in->name) : DCMS_VAL_NULL, DCMS_VAL_TEXT(now)},
            5, NULL, NULL, ei);
        if (e == DCMS_ERR_CONFLICT) {
            dcms_errinfo_init(ei, ei->arena);
            e = dcms_err_set(ei, DCMS_ERR_CONFLICT, "this public key is already registered");
        }
    }
    if (!e)
        e = iam_audit(c->iam, tx, c->p->id, action, "signing_key", key_id, false,
                      replace_key_id ? json_pack("{s:s, s:s, s:s}", "identity_id", identity_id,
                                                 "public_key", pk_b64, "replaces", replace_key_id)
                                     : json_pack("{s:s, s:s}", "identity_id", identity_id,
                                                 "public_key", pk_b64),
                      c->client_ip, c->request_id, ei);
    if (!e)
        e = load_key(tx, identity_id, key_id, &rows, ei);
    if (!e)
        *out = key_json(rows, 0);
    dcms_store_rows_free(rows);
    e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, ei);
    if (e) {
        json_decref(*out);
        *out = NULL;
    }
    return e;
}

enum dcms_err iam_signkey_list(const struct iam_call *c, const char *identity_id, json_t **out)
{
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_begin(c->iam->app->store, DCMS_TX_READ, &tx, c->ei);
    if (e)
        return e;
    bool hidden = false;
    e = iam_cred_authorize(c, tx, identity_id, false, "identities:read", &hidden);
    if (!e)
        e = dcms_store_exec(
            tx, &q_list,
            (struct dcms_store_val[]){DCMS_VAL_TEXT(identity_id), DCMS_VAL_INT(KEYS_LIST_MAX)}, 2,
            &rows, NULL, c->ei);
    dcms_store_rollback(tx);
    iam_identity_hidden_audit(c, hidden, identity_id, "identities:read");
    if (e)
        return e;
    json_t *items = json_array();
    for (size_t i = 0; items && i < dcms_store_rows_count(rows); i++)
        json_array_append_new(items, key_json(rows, i));
    dcms_store_rows_free(rows);
    *out = json_pack("{s:o}", "keys", items);
    return *out ? DCMS_OK : dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
}

enum dcms_err iam_signkey_revoke(const struct iam_call *c, const char *identity_id,
                                 const char *key_id, json_t **out)
{
    struct dcms_errinfo *ei = c->ei;
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    char now[DCMS_TIME_STRLEN];
    dcms_time_format(dcms_clock_now_us(), now);
    if (iam_require_recent_auth(c, "revoking a signing key"))
        return ei->code;
    enum dcms_err e = dcms_store_begin(c->iam->app->store, DCMS_TX_WRITE, &tx, ei);
    if (e)
        return e;
    bool hidden = false;
    e = iam_cred_authorize(c, tx, identity_id, false, "identities:manage", &hidden);
    if (!e)
        e = load_key(tx, identity_id, key_id, &rows, ei);
    if (!e && dcms_store_rows_text(rows, 0, K_REVOKED))
        e = dcms_err_set(ei, DCMS_ERR_CONFLICT, "the key was already revoked at %s",
                         dcms_store_rows_text(rows, 0, K_REVOKED));
    dcms_store_rows_free(rows);
    rows = NULL;
    if (!e)
        e = dcms_store_exec(tx, &q_revoke,
                            (struct dcms_store_val[]){DCMS_VAL_TEXT(key_id),
                                                      DCMS_VAL_TEXT(identity_id),
                                                      DCMS_VAL_TEXT(now), DCMS_VAL_TEXT(c->p->id),
                                                      DCMS_VAL_TEXT("revoked"), DCMS_VAL_NULL},
                            6, NULL, NULL, ei);
    if (!e)
        e = iam_audit(c->iam, tx, c->p->id, "signing_key.revoke", "signing_key", key_id, false,
                      json_pack("{s:s}", "identity_id", identity_id), c->client_ip, c->request_id,
                      ei);
    if (!e && !(e = load_key(tx, identity_id, key_id, &rows, ei)))
        *out = key_json(rows, 0);
    dcms_store_rows_free(rows);
    e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, ei);
    iam_identity_hidden_audit(c, hidden, identity_id, "signing_key.revoke");
    if (e) {
        json_decref(*out);
        *out = NULL;
    }
    return e;
}

/* ---- verification for the contract service (include/dcms/credentials.h) ---- */

enum dcms_err dcms_iam_signing_key_verify(struct dcms_iam *iam, const char *identity_id,
                                          const char *key_id, const unsigned char *msg,
                                          size_t msg_len, const unsigned char sig[64],
                                          const char *at_time, struct dcms_signing_key_info *out,
                                          struct dcms_errinfo *ei)
{
    int64_t at_us = 0;
    if (at_time && dcms_time_parse(at_time, &at_us))
        return dcms_err_set(ei, DCMS_ERR_BAD_REQUEST, "at_time must be an RFC 3339 time");
    if (!msg && msg_len)
        return dcms_err_set(ei, DCMS_ERR_BAD_REQUEST, "no message");
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e =
        load_key_from(iam->app->store, NULL, identity_id ? identity_id : "", key_id, &rows, ei);
    if (e)
        return e;
    const char *created = dcms_store_rows_text(rows, 0, K_CREATED);
    const char *revoked = dcms_store_rows_text(rows, 0, K_REVOKED);
    const char *reason = dcms_store_rows_text(rows, 0, K_REASON);
    unsigned char pk[32];
    size_t n = 0;
    int64_t created_us = 0, revoked_us = 0;
    const char *why = NULL;
    if (!iam_b64url_decode(pk, sizeof(pk), dcms_store_rows_text(rows, 0, K_PK),
                           strlen(dcms_store_rows_text(rows, 0, K_PK)), &n) ||
        n != 32 || dcms_time_parse(created, &created_us) ||
        (revoked && dcms_time_parse(revoked, &revoked_us))) {
        e = dcms_err_set(ei, DCMS_ERR_INTERNAL, "a stored signing key is malformed");
    } else if (!at_time && revoked) {
        e = dcms_err_set(ei, DCMS_ERR_FORBIDDEN, "the signing key was %s at %s",
                         reason && strcmp(reason, "rotated") == 0 ? "rotated out" : "revoked",
                         revoked);
        why = "revoked";
    } else if (at_time && at_us < created_us) {
        e = dcms_err_set(ei, DCMS_ERR_FORBIDDEN, "the signing key was registered at %s, after %s",
                         created, at_time);
    } else if (at_time && revoked && at_us >= revoked_us) {
        e = dcms_err_set(ei, DCMS_ERR_FORBIDDEN, "the signing key was revoked at %s, before %s",
                         revoked, at_time);
    } else if (!sig || !dcms_sign_verify(pk, msg ? (const void *)msg : "", msg_len, sig)) {
        e = dcms_err_set(ei, DCMS_ERR_VALIDATION,
                         "the Ed25519 signature does not verify with the signing key");
        why = "bad_signature";
    }
    if (!e && out) {
        memset(out, 0, sizeof(*out));
        snprintf(out->key_id, sizeof(out->key_id), "%s", key_id);
        snprintf(out->identity_id, sizeof(out->identity_id), "%s", identity_id);
        snprintf(out->alg, sizeof(out->alg), "%s", dcms_store_rows_text(rows, 0, K_ALG));
        memcpy(out->public_key, pk, 32);
        dcms_time_format(created_us, out->created_at);
        if (revoked)
            dcms_time_format(revoked_us, out->revoked_at);
    }
    dcms_store_rows_free(rows);
    /* A new signature refused is a denial worth recording. */
    if (why && !at_time)
        iam_cred_audit_denied(iam, identity_id, "signing_key.use_refused", "signing_key", key_id,
                              why, NULL, NULL);
    return e;
}
