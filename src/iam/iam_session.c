/*
 * Sessions. Login checks the throttle (in the store so every node sees
 * it): a client presenting a valid device token for the identity
 * (iam_device.c) is throttled on that token alone; any other client on the
 * account's untrusted lockout and its address (docs/iam.md, "Lockout").
 * It verifies the password (argon2id, upgraded when the configured cost
 * rose), starts a session family and hands out an access token, a refresh
 * token and a new device token. Refresh
 * rotates the token; presenting a rotated token again revokes the whole
 * family. Logout revokes the family. An identity with a second factor
 * (mfa_int.h) gets a login ticket instead of tokens after its password and
 * completes with the ticket and the factor (step-up).
 */
#include "dcms/app.h"
#include "dcms/arena.h"
#include "dcms/clock.h"
#include "dcms/config.h"
#include "dcms/crypto.h"
#include "dcms/log.h"
#include "dcms/store.h"
#include "iam/iam_cred.h"
#include "iam/iam_session.h"
#include "iam/webauthn_json.h"

static struct dcms_query q_by_email = DCMS_QUERY(
    "iam_login_lookup",
    "SELECT i.id, i.status, i.roles, i.organization_id, c.password_hash, i.email FROM identities i "
    "LEFT JOIN credentials c ON c.identity_id = i.id WHERE lower(i.email) = lower($1)");
static struct dcms_query q_by_id = DCMS_QUERY(
    "iam_login_by_id",
    "SELECT i.id, i.status, i.roles, i.organization_id, c.password_hash, i.email FROM identities i "
    "LEFT JOIN credentials c ON c.identity_id = i.id WHERE i.id = $1");
static struct dcms_query q_throttle_clear =
    DCMS_QUERY("iam_throttle_clear", "DELETE FROM login_throttle WHERE key = $1");
static struct dcms_query q_rehash =
    DCMS_QUERY("iam_rehash",
               "UPDATE credentials SET password_hash = $2, updated_at = $3 WHERE identity_id = $1");
static struct dcms_query q_family_insert = DCMS_QUERY(
    "iam_family_insert", "INSERT INTO session_families (id, identity_id, amr, created_at, "
                         "expires_at) VALUES ($1, $2, $3, $4, $5)");
static struct dcms_query q_rt_insert = DCMS_QUERY(
    "iam_refresh_insert", "INSERT INTO refresh_tokens (token_hash, family_id, created_at, "
                          "expires_at) VALUES ($1, $2, $3, $4)");
static struct dcms_query q_rt_get = DCMS_QUERY(
    "iam_refresh_get",
    "SELECT r.family_id, r.used_at, r.expires_at, f.revoked_at, f.identity_id, f.amr, "
    "f.expires_at, i.status, i.roles, i.organization_id, f.created_at FROM refresh_tokens r "
    "JOIN session_families f ON f.id = r.family_id JOIN identities i ON i.id = f.identity_id "
    "WHERE r.token_hash = $1");
static struct dcms_query q_rt_use =
    DCMS_QUERY("iam_refresh_use",
               "UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL");
static struct dcms_query q_family_revoke = DCMS_QUERY(
    "iam_family_revoke", "UPDATE session_families SET revoked_at = $2, revoked_reason = $3 "
                         "WHERE id = $1 AND revoked_at IS NULL");
static void fmt_time(int64_t us, char out[DCMS_TIME_STRLEN])
{
    dcms_time_format(us, out);
}

/* Stores a password hash recomputed with the configured cost. */
static enum dcms_err rehash_only(const struct iam_call *c, const char *id, const char *newhash)
{
    char now_s[DCMS_TIME_STRLEN];
    fmt_time(dcms_clock_now_us(), now_s);
    struct dcms_store_tx *tx;
    enum dcms_err e = dcms_store_begin(c->iam->app->store, DCMS_TX_WRITE, &tx, c->ei);
    if (e)
        return e;
    e = dcms_store_exec(
        tx, &q_rehash,
        (struct dcms_store_val[]){DCMS_VAL_TEXT(id), DCMS_VAL_TEXT(newhash), DCMS_VAL_TEXT(now_s)},
        3, NULL, NULL, c->ei);
    return e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, c->ei);
}

/* A random opaque token (shown once) and its SHA-256 hex (stored). */
static enum dcms_err new_token(char token[48], char hash[65])
{
    unsigned char raw[32];
    randombytes_buf(raw, sizeof(raw));
    iam_b64url_encode(token, raw, sizeof(raw));
    sodium_memzero(raw, sizeof(raw));
    return dcms_digest_sha256_hex(token, strlen(token), hash);
}

/* Wipes and frees an issued access token (malloc'd by iam_issue_access); NULL is a no-op. */
static void access_free(char *access)
{
    if (access) {
        sodium_memzero(access, strlen(access));
        free(access);
    }
}

/* The token answer (with a device token after a login); `access` is wiped and freed here. */
static json_t *token_response(const struct dcms_iam *iam, char *access, const char *refresh,
                              const char *device)
{
    json_t *v = json_pack("{s:s, s:s, s:I, s:s}", "access_token", access, "token_type", "Bearer",
                          "expires_in", (json_int_t)iam->cfg->jwt_ttl_s, "refresh_token", refresh);
    access_free(access);
    if (v && device && json_object_set_new(v, "device_token", json_string(device))) {
        json_decref(v);
        v = NULL;
    }
    return v;
}

static unsigned amr_from_text(const char *text)
{
    unsigned amr = 0;
    json_t *v = text ? json_loads(text, 0, NULL) : NULL;
    size_t i;
    json_t *s;
    json_array_foreach(v, i, s) amr |= json_is_string(s) ? iam_amr_parse(json_string_value(s)) : 0;
    json_decref(v);
    return amr;
}

/*
 * The identity a login is about (columns of q_by_email / q_by_id), its
 * throttle keys, and whether the client holds a valid device token for it
 * (`trusted`, with the token's id and key).
 */
struct login_who {
    struct dcms_store_rows *rows;
    const char *id, *status, *roles, *org, *hash;
    char acct[300], ip[80];
    bool trusted;
    char device_id[DCMS_UUID_STRLEN], dev[80];
};

static void who_fill(const struct iam_call *c, struct login_who *w, const char *account)
{
    bool found = dcms_store_rows_count(w->rows) == 1;
    w->id = found ? dcms_store_rows_text(w->rows, 0, 0) : NULL;
    w->status = found ? dcms_store_rows_text(w->rows, 0, 1) : NULL;
    w->roles = found ? dcms_store_rows_text(w->rows, 0, 2) : NULL;
    w->org = found ? dcms_store_rows_text(w->rows, 0, 3) : NULL;
    w->hash = found ? dcms_store_rows_text(w->rows, 0, 4) : NULL;
    if (found && !account)
        account =
            dcms_store_rows_is_null(w->rows, 0, 5) ? w->id : dcms_store_rows_text(w->rows, 0, 5);
    iam_throttle_keys(account ? account : "", c->client_ip, w->acct, w->ip);
}

static enum dcms_err who_load(const struct iam_call *c, struct dcms_query *q, const char *key,
                              struct login_who *w)
{
    struct dcms_store_tx *tx;
    enum dcms_err e = dcms_store_begin(c->iam->app->store, DCMS_TX_READ, &tx, c->ei);
    if (e)
        return e;
    e = dcms_store_exec(tx, q, (struct dcms_store_val[]){DCMS_VAL_TEXT(key)}, 1, &w->rows, NULL,
                        c->ei);
    dcms_store_rollback(tx);
    return e;
}

/*
 * Decides which lockout the client is under and checks it: a valid device
 * token for this identity whose own lockout is not running makes the client
 * trusted (the account's untrusted lockout and the address limit do not
 * apply to it); a locked device token counts as none (OWASP: the client is
 * then untrusted). DCMS_ERR_RATE_LIMITED with *retry_after_s when locked.
 */
static enum dcms_err who_gate(const struct iam_call *c, struct login_who *w,
                              const char *device_token, int64_t *retry_after_s)
{
    w->trusted = false;
    if (w->id && device_token &&
        iam_device_verify(c->iam, device_token, w->id, dcms_clock_now_us() / 1000000,
                          w->device_id)) {
        snprintf(w->dev, sizeof(w->dev), "dev:%s", w->device_id);
        struct dcms_errinfo tei;
        dcms_errinfo_init(&tei, NULL);
        int64_t ignored = 0;
        w->trusted = iam_throttle_check(c->iam, w->dev, "", &ignored, &tei) == DCMS_OK;
    }
    return w->trusted ? DCMS_OK : iam_throttle_check(c->iam, w->acct, w->ip, retry_after_s, c->ei);
}

/* Counts a failed login against the device token (trusted) or the account and address. */
static void who_fail(const struct iam_call *c, const struct login_who *w, const char *why)
{
    if (w->trusted)
        (void)iam_throttle_fail(c, IAM_CLIENT_DEVICE, w->dev, NULL, w->id, w->device_id, why);
    else
        (void)iam_throttle_fail(c, IAM_CLIENT_UNTRUSTED, w->acct, w->ip, w->id, NULL, why);
}

/*
 * Verifies the second factor of a login; a wrong one counts as a failed
 * login and answers 401 naming what was wrong.
 */
static enum dcms_err second_factor(const struct iam_call *c, const struct login_who *w,
                                   unsigned enrolled, const struct iam_factor_in *f, unsigned *amr)
{
    const char *why = "bad_second_factor";
    enum dcms_err e = iam_factor_verify(c, w->id, enrolled, f, amr, &why);
    if (e != DCMS_ERR_VALIDATION)
        return e;
    who_fail(c, w, why);
    char msg[200];
    snprintf(msg, sizeof(msg), "invalid second factor: %s %s",
             c->ei->ndetails ? c->ei->details[0].field : "",
             c->ei->ndetails ? c->ei->details[0].problem : "");
    dcms_errinfo_init(c->ei, c->ei->arena);
    return dcms_err_set(c->ei, DCMS_ERR_UNAUTHENTICATED, "%s", msg);
}

/*
 * Ends a successful login: a session family, a refresh token, the access
 * token and a new device token. Success clears the counter the client was
 * under: the device token's, or the account's untrusted one (a trusted
 * login leaves that alone, so the owner logging in gives a guesser no fresh
 * attempts).
 */
static enum dcms_err login_finish(const struct iam_call *c, const struct login_who *w, unsigned amr,
                                  const char *newhash, const char *ticket_hash,
                                  const struct iam_factor_in *f, json_t **out)
{
    const char *factor = NULL;
    if (!f || !iam_factor_given(f, &factor))
        factor = NULL;
    struct dcms_errinfo *ei = c->ei;
    struct dcms_iam *iam = c->iam;
    char now_s[DCMS_TIME_STRLEN];
    int64_t now = dcms_clock_now_us();
    fmt_time(now, now_s);
    char fam[DCMS_UUID_STRLEN], token[48], thash[65], exp_s[DCMS_TIME_STRLEN];
    char device[IAM_DEVICE_TOKEN_MAX] = "";
    dcms_uuid_v7(fam);
    fmt_time(now + (int64_t)iam->cfg->refresh_ttl_s * 1000000, exp_s);
    json_t *amrs = NULL;
    char *amr_text = NULL, *access = NULL;
    struct dcms_store_tx *tx;
    enum dcms_err e = new_token(token, thash);
    if (!e && iam_device_issue(iam, w->id, now / 1000000, device))
        e = dcms_err_set(ei, DCMS_ERR_INTERNAL, "cannot issue a device token");
    if (e)
        goto out;
    amrs = iam_amr_json(amr);
    amr_text = json_dumps(amrs, JSON_COMPACT);
    if ((e = dcms_store_begin(iam->app->store, DCMS_TX_WRITE, &tx, ei)))
        goto out;
    /* The ticket is used up in the transaction that starts the session: it works once. */
    if (ticket_hash)
        e = iam_mfa_ticket_use_tx(tx, ticket_hash, ei);
    if (!e)
        e = dcms_store_exec(tx, &q_throttle_clear,
                            (struct dcms_store_val[]){DCMS_VAL_TEXT(w->trusted ? w->dev : w->acct)},
                            1, NULL, NULL, ei);
    if (!e && newhash[0])
        e = dcms_store_exec(tx, &q_rehash,
                            (struct dcms_store_val[]){DCMS_VAL_TEXT(w->id), DCMS_VAL_TEXT(newhash),
                                                      DCMS_VAL_TEXT(now_s)},
                            3, NULL, NULL, ei);
    if (!e)
        e = dcms_store_exec(tx, &q_family_insert,
                            (struct dcms_store_val[]){DCMS_VAL_TEXT(fam), DCMS_VAL_TEXT(w->id),
                                                      DCMS_VAL_TEXT(amr_text ? amr_text : "[]"),
                                                      DCMS_VAL_TEXT(now_s), DCMS_VAL_TEXT(exp_s)},
                            5, NULL, NULL, ei);
    if (!e)
        e = dcms_store_exec(tx, &q_rt_insert,
                            (struct dcms_store_val[]){DCMS_VAL_TEXT(thash), DCMS_VAL_TEXT(fam),
                                                      DCMS_VAL_TEXT(now_s), DCMS_VAL_TEXT(exp_s)},
                            4, NULL, NULL, ei);
    if (!e)
        e = iam_audit(iam, tx, w->id, "auth.login", "session", fam, false,
                      json_pack("{s:O, s:b, s:b, s:s?, s:s, s:s?}", "amr", amrs, "rehashed",
                                newhash[0] != 0, "mfa_ticket", ticket_hash != NULL, "factor",
                                factor, "client", w->trusted ? "device" : "untrusted", "device_id",
                                w->trusted ? w->device_id : NULL),
                      c->client_ip, c->request_id, ei);
    e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, ei);
    if (!e)
        e = iam_issue_access(iam, w->id, w->org, iam_roles_from_json_text(w->roles), amr, fam,
                             now / 1000000, &access, ei);
    if (!e) {
        *out = token_response(iam, access, token, device);
        access = NULL; /* wiped and freed by token_response */
        if (!*out)
            e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    }
out:
    access_free(access);
    free(amr_text);
    json_decref(amrs);
    sodium_memzero(token, sizeof(token));
    sodium_memzero(device, sizeof(device));
    return e;
}

/* Second step of a step-up login: {mfa_ticket, <factor>}. */
static enum dcms_err login_ticket(const struct iam_call *c, const struct iam_login_in *in,
                                  json_t **out, int64_t *retry_after_s)
{
    char id[DCMS_UUID_STRLEN], hash[65];
    enum dcms_err e = iam_mfa_ticket_lookup(c->iam, in->mfa_ticket, id, hash, c->ei);
    if (e)
        return e;
    struct login_who w = {0};
    if ((e = who_load(c, &q_by_id, id, &w)))
        goto out;
    who_fill(c, &w, NULL);
    if (!w.id) {
        e = dcms_err_set(c->ei, DCMS_ERR_UNAUTHENTICATED, "invalid mfa_ticket");
        goto out;
    }
    if ((e = who_gate(c, &w, in->device_token, retry_after_s)))
        goto out;
    if (strcmp(w.status, "active") != 0) {
        e = dcms_err_set(c->ei, DCMS_ERR_FORBIDDEN, "the identity is %s", w.status);
        goto out;
    }
    unsigned enrolled = 0, amr = DCMS_AMR_PWD;
    struct iam_factor_in f = in->factor;
    f.mfa_ticket = in->mfa_ticket;
    if (!(e = iam_mfa_enrolled(c->iam, w.id, &enrolled, c->ei)))
        e = second_factor(c, &w, enrolled, &f, &amr);
    if (!e)
        e = login_finish(c, &w, amr, "", hash, &f, out);
out:
    dcms_store_rows_free(w.rows);
    return e;
}

/* The problems of the assertion, named under the login body's `webauthn` member. */
static void webauthn_fields(struct dcms_errinfo *ei)
{
    for (size_t i = 0; i < ei->ndetails; i++) {
        const char *f = ei->details[i].field;
        const char *g = dcms_arena_sprintf(ei->arena, "webauthn%s%s", f && *f ? "." : "", f);
        if (g)
            ei->details[i].field = g;
    }
}

/*
 * Passkey-first sign-in: {webauthn} alone. The credential id names the
 * identity; the client is then gated and its failures counted exactly as a
 * password login's (device token, account, address). An unknown credential
 * counts against the address only (there is no account to lock). The
 * assertion must be over a sign-in challenge, carry the identity's user
 * handle and the UV flag (iam_wa_login_verify). A refusal is 401 with the
 * problem under its JSON path; a valid assertion of an identity that is not
 * active is 403, as for a password.
 */
static enum dcms_err login_passkey(const struct iam_call *c, const struct iam_login_in *in,
                                   json_t **out, int64_t *retry_after_s)
{
    struct dcms_errinfo *ei = c->ei;
    struct iam_wa_cred_in cin;
    struct login_who w = {0};
    char id[DCMS_UUID_STRLEN];
    enum dcms_err e = iam_wa_cred_from_json(in->factor.webauthn, false, &cin, ei);
    if (e) {
        webauthn_fields(ei);
        goto out;
    }
    if ((e = iam_wa_credential_owner(c->iam, cin.id, id, ei)) == DCMS_ERR_NOT_FOUND) {
        char acct[300], ip[80];
        iam_throttle_keys("", c->client_ip, acct, ip);
        dcms_errinfo_init(ei, ei->arena);
        if ((e = iam_throttle_check(c->iam, ip, "", retry_after_s, ei)))
            goto out;
        (void)iam_throttle_fail(c, IAM_CLIENT_UNTRUSTED, NULL, ip, NULL, NULL, "unknown_passkey");
        e = dcms_err_set(ei, DCMS_ERR_UNAUTHENTICATED, "passkey sign-in refused: unknown passkey");
        dcms_err_field(ei, "webauthn.id", "is not a passkey registered here");
        goto out;
    }
    if (e || (e = who_load(c, &q_by_id, id, &w)))
        goto out;
    who_fill(c, &w, NULL);
    if (!w.id) {
        e = dcms_err_set(ei, DCMS_ERR_UNAUTHENTICATED, "passkey sign-in refused: unknown passkey");
        goto out;
    }
    if ((e = who_gate(c, &w, in->device_token, retry_after_s)))
        goto out;
    const char *why = "bad_passkey";
    struct dcms_webauthn_result r;
    e = iam_wa_login_verify(c->iam, w.id, &cin, c->client_ip, c->request_id, &r, &why, ei);
    if (e == DCMS_ERR_VALIDATION || e == DCMS_ERR_NOT_FOUND) {
        who_fail(c, &w, why);
        char problem[sizeof(ei->message)];
        snprintf(problem, sizeof(problem), "%s",
                 ei->ndetails ? ei->details[0].problem : ei->message);
        webauthn_fields(ei);
        e = dcms_err_set(ei, DCMS_ERR_UNAUTHENTICATED, "passkey sign-in refused: %s", problem);
        goto out;
    }
    if (e)
        goto out;
    if (strcmp(w.status, "active") != 0) {
        char reason[80];
        snprintf(reason, sizeof(reason), "the identity is %s", w.status);
        iam_cred_audit_denied(c->iam, w.id, "auth.login", "identity", w.id, reason, c->client_ip,
                              c->request_id);
        e = dcms_err_set(ei, DCMS_ERR_FORBIDDEN, "%s", reason);
        goto out;
    }
    e = login_finish(c, &w, DCMS_AMR_HWK | DCMS_AMR_USER | DCMS_AMR_MFA, "", NULL, &in->factor,
                     out);
out:
    dcms_store_rows_free(w.rows);
    iam_wa_cred_in_free(&cin);
    return e;
}

enum dcms_err iam_login(const struct iam_call *c, const struct iam_login_in *in, json_t **out,
                        int64_t *retry_after_s)
{
    if (in->mfa_ticket)
        return login_ticket(c, in, out, retry_after_s);
    if (in->passkey_only)
        return login_passkey(c, in, out, retry_after_s);
    struct dcms_errinfo *ei = c->ei;
    struct dcms_iam *iam = c->iam;
    struct login_who w = {0};
    /* A rehash of the password: wiped at out, whichever way the login ends. */
    char newhash[crypto_pwhash_STRBYTES] = "";
    enum dcms_err e = who_load(c, &q_by_email, in->email, &w);
    if (e)
        goto out;
    who_fill(c, &w, in->email);
    if ((e = who_gate(c, &w, in->device_token, retry_after_s)))
        goto out;
    bool ok = false;
    if ((e = iam_verify_password(iam, w.hash, in->password, &ok, ei)))
        goto out;
    if (!ok) {
        who_fail(c, &w, w.id ? "bad_password" : "unknown_email");
        e = dcms_err_set(ei, DCMS_ERR_UNAUTHENTICATED, "invalid email or password");
        goto out;
    }
    if (strcmp(w.status, "active") != 0) {
        e = dcms_err_set(ei, DCMS_ERR_FORBIDDEN, "the identity is %s", w.status);
        goto out;
    }
    unsigned enrolled = 0, amr = DCMS_AMR_PWD;
    if ((e = iam_mfa_enrolled(iam, w.id, &enrolled, ei)))
        goto out;
    const char *fname = NULL;
    bool given = iam_factor_given(&in->factor, &fname);
    if (given && !enrolled) {
        e = dcms_err_field(ei, fname, "no second factor is enrolled for this identity");
        goto out;
    }
    if (iam_password_needs_rehash(w.hash, iam->cfg->pwhash_opslimit,
                                  (size_t)iam->cfg->pwhash_memlimit_kib * 1024) &&
        (e = iam_hash_password(iam, in->password, newhash, ei)))
        goto out;
    if (enrolled && !given) {
        /* Step-up: the password was right; the client completes with the ticket and a factor. */
        char ticket[48];
        e = iam_mfa_ticket_issue(iam, w.id, ticket, ei);
        if (!e && newhash[0])
            e = rehash_only(c, w.id, newhash);
        if (!e) {
            *out = json_pack("{s:s, s:o, s:i}", "mfa_ticket", ticket, "factors",
                             iam_factors_json(enrolled), "expires_in", IAM_MFA_TICKET_TTL_S);
            json_t *ch = iam_factor_challenges(c, w.id, enrolled, ticket);
            if (ch && *out)
                json_object_set_new(*out, "challenges", ch);
            else
                json_decref(ch);
            e = *out ? dcms_err_set(ei, DCMS_ERR_MFA_REQUIRED,
                                    "a second factor is required: complete the login with "
                                    "mfa_ticket and one of the factors")
                     : dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
        }
        sodium_memzero(ticket, sizeof(ticket));
    } else if (!enrolled || !(e = second_factor(c, &w, enrolled, &in->factor, &amr))) {
        e = login_finish(c, &w, amr, newhash, NULL, enrolled ? &in->factor : NULL, out);
    }
out:
    sodium_memzero(newhash, sizeof(newhash));
    dcms_store_rows_free(w.rows);
    return e;
}

enum dcms_err iam_refresh(const struct iam_call *c, const char *refresh_token, json_t **out)
{
    struct dcms_errinfo *ei = c->ei;
    struct dcms_iam *iam = c->iam;
    char hash[65], now_s[DCMS_TIME_STRLEN];
    /* The next refresh token (shown once) and the access token: wiped at out on every path. */
    char token[48] = "", thash[65];
    char *access = NULL;
    int64_t now = dcms_clock_now_us();
    fmt_time(now, now_s);
    if (dcms_digest_sha256_hex(refresh_token, strlen(refresh_token), hash))
        return dcms_err_set(ei, DCMS_ERR_CRYPTO, NULL);
    struct dcms_store_tx *tx = NULL;
    struct dcms_store_rows *rows = NULL;
    bool reused = false;
    enum dcms_err e = dcms_store_begin(iam->app->store, DCMS_TX_WRITE, &tx, ei);
    if (e)
        return e;
    e = dcms_store_exec(tx, &q_rt_get, (struct dcms_store_val[]){DCMS_VAL_TEXT(hash)}, 1, &rows,
                        NULL, ei);
    if (e)
        goto out;
    if (dcms_store_rows_count(rows) != 1) {
        e = dcms_err_set(ei, DCMS_ERR_UNAUTHENTICATED, "invalid refresh token");
        goto out;
    }
    const char *fam = dcms_store_rows_text(rows, 0, 0);
    const char *id = dcms_store_rows_text(rows, 0, 4);
    if (!dcms_store_rows_is_null(rows, 0, 3)) {
        e = dcms_err_set(ei, DCMS_ERR_UNAUTHENTICATED, "the session was revoked");
        goto out;
    }
    uint64_t n = 0;
    if (dcms_store_rows_is_null(rows, 0, 1))
        e = dcms_store_exec(tx, &q_rt_use,
                            (struct dcms_store_val[]){DCMS_VAL_TEXT(hash), DCMS_VAL_TEXT(now_s)}, 2,
                            NULL, &n, ei);
    if (e)
        goto out;
    if (n != 1) {
        /* A rotated token came back: someone holds a copy. Revoke the whole family. */
        reused = true;
        e = dcms_store_exec(tx, &q_family_revoke,
                            (struct dcms_store_val[]){DCMS_VAL_TEXT(fam), DCMS_VAL_TEXT(now_s),
                                                      DCMS_VAL_TEXT("refresh_token_reuse")},
                            3, NULL, NULL, ei);
        if (!e)
            e = iam_audit(iam, tx, id, "auth.refresh_reuse", "session", fam, true,
                          json_pack("{s:s}", "effect", "session family revoked"), c->client_ip,
                          c->request_id, ei);
        goto out;
    }
    if (strcmp(dcms_store_rows_text(rows, 0, 2), now_s) <= 0 ||
        strcmp(dcms_store_rows_text(rows, 0, 6), now_s) <= 0) {
        e = dcms_err_set(ei, DCMS_ERR_UNAUTHENTICATED, "the refresh token expired");
        goto out;
    }
    if (strcmp(dcms_store_rows_text(rows, 0, 7), "active") != 0) {
        e = dcms_err_set(ei, DCMS_ERR_UNAUTHENTICATED, "the identity is not active");
        goto out;
    }
    if ((e = new_token(token, thash)))
        goto out;
    e = dcms_store_exec(tx, &q_rt_insert,
                        (struct dcms_store_val[]){DCMS_VAL_TEXT(thash), DCMS_VAL_TEXT(fam),
                                                  DCMS_VAL_TEXT(now_s),
                                                  DCMS_VAL_TEXT(dcms_store_rows_text(rows, 0, 6))},
                        4, NULL, NULL, ei);
    if (!e)
        e = iam_audit(iam, tx, id, "auth.refresh", "session", fam, false, NULL, c->client_ip,
                      c->request_id, ei);
    if (e)
        goto out;
    e = dcms_store_commit(tx, ei);
    tx = NULL;
    if (e)
        goto out;
    /* The new token keeps the login's time: a refresh is not a fresh authentication. */
    int64_t auth_us = 0;
    if (dcms_time_parse(dcms_store_rows_text(rows, 0, 10), &auth_us))
        auth_us = 0;
    e = iam_issue_access(iam, id, dcms_store_rows_text(rows, 0, 9),
                         iam_roles_from_json_text(dcms_store_rows_text(rows, 0, 8)),
                         amr_from_text(dcms_store_rows_text(rows, 0, 5)), fam, auth_us / 1000000,
                         &access, ei);
    if (!e) {
        *out = token_response(iam, access, token, NULL);
        access = NULL; /* wiped and freed by token_response */
        if (!*out)
            e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    }
out:
    if (tx && reused && !e) {
        /* The revocation is kept; the caller is refused all the same. */
        e = dcms_store_commit(tx, ei);
        tx = NULL;
        if (!e) {
            iam_revocation_bump(iam);
            e = dcms_err_set(ei, DCMS_ERR_UNAUTHENTICATED,
                             "refresh token reused; the session has been revoked");
        }
    }
    if (tx)
        dcms_store_rollback(tx);
    access_free(access);
    sodium_memzero(token, sizeof(token));
    dcms_store_rows_free(rows);
    return e;
}

enum dcms_err iam_logout(const struct iam_call *c, const char *refresh_token)
{
    struct dcms_errinfo *ei = c->ei;
    char hash[65], now_s[DCMS_TIME_STRLEN];
    fmt_time(dcms_clock_now_us(), now_s);
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_begin(c->iam->app->store, DCMS_TX_WRITE, &tx, ei);
    if (e)
        return e;
    const char *fam = NULL, *id = NULL;
    if (refresh_token) {
        if (dcms_digest_sha256_hex(refresh_token, strlen(refresh_token), hash))
            e = dcms_err_set(ei, DCMS_ERR_CRYPTO, NULL);
        if (!e)
            e = dcms_store_exec(tx, &q_rt_get, (struct dcms_store_val[]){DCMS_VAL_TEXT(hash)}, 1,
                                &rows, NULL, ei);
        if (!e && dcms_store_rows_count(rows) != 1)
            e = dcms_err_set(ei, DCMS_ERR_UNAUTHENTICATED, "invalid refresh token");
        if (!e) {
            fam = dcms_store_rows_text(rows, 0, 0);
            id = dcms_store_rows_text(rows, 0, 4);
        }
    } else if (c->p && c->p->api_key[0]) {
        /* A key has no session: revoke it instead (DELETE /api/v1/api-keys/{id}). */
        e = dcms_err_field(ei, "", "an API key has no session to log out of; revoke the key");
    } else if (c->p) {
        fam = c->p->sid;
        id = c->p->id;
    } else {
        e = dcms_err_set(ei, DCMS_ERR_UNAUTHENTICATED,
                         "give a refresh_token or an access token to log out");
    }
    if (!e)
        e = dcms_store_exec(tx, &q_family_revoke,
                            (struct dcms_store_val[]){DCMS_VAL_TEXT(fam), DCMS_VAL_TEXT(now_s),
                                                      DCMS_VAL_TEXT("logout")},
                            3, NULL, NULL, ei);
    if (!e)
        e = iam_audit(c->iam, tx, id, "auth.logout", "session", fam, false, NULL, c->client_ip,
                      c->request_id, ei);
    dcms_store_rows_free(rows);
    e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, ei);
    if (!e)
        iam_revocation_bump(c->iam);
    return e;
}

/* ---- the caller's sessions ---- */

#define IAM_SESSIONS_MAX 200

static struct dcms_query q_sessions = DCMS_QUERY(
    "iam_sessions", "SELECT CAST(f.id AS TEXT), f.amr, f.created_at, f.expires_at, "
                    "(SELECT max(r.created_at) FROM refresh_tokens r WHERE r.family_id = f.id) "
                    "FROM session_families f WHERE f.identity_id = $1 AND f.revoked_at IS NULL "
                    "AND f.expires_at > $2 ORDER BY f.created_at DESC, f.id LIMIT $3");

enum dcms_err iam_sessions_list(const struct iam_call *c, json_t **out)
{
    char now_s[DCMS_TIME_STRLEN];
    fmt_time(dcms_clock_now_us(), now_s);
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_begin(c->iam->app->store, DCMS_TX_READ, &tx, c->ei);
    if (e)
        return e;
    e = dcms_store_exec(tx, &q_sessions,
                        (struct dcms_store_val[]){DCMS_VAL_TEXT(c->p->id), DCMS_VAL_TEXT(now_s),
                                                  DCMS_VAL_INT(IAM_SESSIONS_MAX)},
                        3, &rows, NULL, c->ei);
    dcms_store_rollback(tx);
    if (e)
        return e;
    json_t *a = json_array();
    for (size_t i = 0; a && i < dcms_store_rows_count(rows); i++) {
        const char *id = dcms_store_rows_text(rows, i, 0);
        json_t *amr = json_loads(dcms_store_rows_text(rows, i, 1), 0, NULL);
        const char *last = dcms_store_rows_text(rows, i, 4);
        json_array_append_new(a, json_pack("{s:s, s:o, s:s, s:s, s:s, s:b}", "id", id, "amr",
                                           amr ? amr : json_array(), "created_at",
                                           dcms_store_rows_text(rows, i, 2), "expires_at",
                                           dcms_store_rows_text(rows, i, 3), "last_active_at",
                                           last ? last : dcms_store_rows_text(rows, i, 2),
                                           "current", strcmp(id, c->p->sid) == 0));
    }
    dcms_store_rows_free(rows);
    *out = json_pack("{s:o}", "sessions", a);
    return *out ? DCMS_OK : dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
}

static struct dcms_query q_session_revoke_own = DCMS_QUERY(
    "iam_session_revoke_own", "UPDATE session_families SET revoked_at = $3, revoked_reason = $4 "
                              "WHERE CAST(id AS TEXT) = $1 AND identity_id = $2 AND "
                              "revoked_at IS NULL");

enum dcms_err iam_session_revoke(const struct iam_call *c, const char *id)
{
    if (!id || !dcms_uuid_valid(id))
        return dcms_err_set(c->ei, DCMS_ERR_NOT_FOUND, "session not found");
    char now_s[DCMS_TIME_STRLEN];
    fmt_time(dcms_clock_now_us(), now_s);
    struct dcms_store_tx *tx;
    enum dcms_err e = dcms_store_begin(c->iam->app->store, DCMS_TX_WRITE, &tx, c->ei);
    if (e)
        return e;
    uint64_t n = 0;
    e = dcms_store_exec(tx, &q_session_revoke_own,
                        (struct dcms_store_val[]){DCMS_VAL_TEXT(id), DCMS_VAL_TEXT(c->p->id),
                                                  DCMS_VAL_TEXT(now_s), DCMS_VAL_TEXT("revoked")},
                        4, NULL, &n, c->ei);
    if (!e && n != 1)
        e = dcms_err_set(c->ei, DCMS_ERR_NOT_FOUND, "session not found");
    if (!e)
        e = iam_audit(c->iam, tx, c->p->id, "auth.session_revoke", "session", id, false,
                      json_pack("{s:b}", "current", strcmp(id, c->p->sid) == 0), c->client_ip,
                      c->request_id, c->ei);
    e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, c->ei);
    if (!e)
        iam_revocation_bump(c->iam);
    return e;
}
