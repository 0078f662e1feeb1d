/*
 * Sessions and policies. Login checks the throttle (per account and per
 * client IP, in the store so every node sees it), verifies the password
 * (argon2id, upgraded when the configured cost rose), starts a session
 * family and hands out an access token and a refresh token. Refresh
 * rotates the token; presenting a rotated token again revokes the whole
 * family. Logout revokes the family. An identity with a second factor
 * (mfa_int.h) gets a login ticket instead of tokens after its password and
 * completes with the ticket and the factor (step-up).
 */
#include "dcms/app.h"
#include "dcms/clock.h"
#include "dcms/config.h"
#include "dcms/crypto.h"
#include "dcms/log.h"
#include "dcms/store.h"
#include "iam/mfa_int.h"

#define LOCKOUT_MAX_S 900
#define THROTTLE_FORGET_S 900

static struct dcms_query q_by_email = DCMS_QUERY(
    "iam_login_lookup",
    "SELECT i.id, i.status, i.roles, i.organization_id, c.password_hash, i.email FROM identities i "
    "LEFT JOIN credentials c ON c.identity_id = i.id WHERE lower(i.email) = lower($1)");
static struct dcms_query q_by_id = DCMS_QUERY(
    "iam_login_by_id",
    "SELECT i.id, i.status, i.roles, i.organization_id, c.password_hash, i.email FROM identities i "
    "LEFT JOIN credentials c ON c.identity_id = i.id WHERE i.id = $1");
static struct dcms_query q_throttle_get = DCMS_QUERY(
    "iam_throttle_get", "SELECT key, locked_until FROM login_throttle WHERE key IN ($1, $2)");
static struct dcms_query q_throttle_fail = DCMS_QUERY(
    "iam_throttle_fail",
    "INSERT INTO login_throttle (key, failures, locked_until, updated_at) VALUES ($1, 1, NULL, $2) "
    "ON CONFLICT (key) DO UPDATE SET failures = CASE WHEN login_throttle.updated_at < $3 THEN 1 "
    "ELSE login_throttle.failures + 1 END, updated_at = $2 RETURNING failures");
static struct dcms_query q_throttle_lock =
    DCMS_QUERY("iam_throttle_lock", "UPDATE login_throttle SET locked_until = $2 WHERE key = $1");
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
static struct dcms_query q_policy_insert = DCMS_QUERY(
    "iam_policy_insert", "INSERT INTO policies (id, name, document, created_by, created_at) "
                         "VALUES ($1, $2, $3, $4, $5)");
static struct dcms_query q_attach_insert = DCMS_QUERY(
    "iam_policy_attach", "INSERT INTO policy_attachments (policy_id, subject_kind, subject) "
                         "VALUES ($1, $2, $3) ON CONFLICT DO NOTHING");
static struct dcms_query q_policy_list = DCMS_QUERY(
    "iam_policy_list",
    "SELECT id, document, created_by, created_at FROM policies ORDER BY created_at LIMIT 1000");
static struct dcms_query q_policy_get = DCMS_QUERY(
    "iam_policy_get", "SELECT id, document, created_by, created_at FROM policies WHERE id = $1");
static struct dcms_query q_policy_detach =
    DCMS_QUERY("iam_policy_detach", "DELETE FROM policy_attachments WHERE policy_id = $1");
static struct dcms_query q_policy_delete =
    DCMS_QUERY("iam_policy_delete", "DELETE FROM policies WHERE id = $1");

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

static json_t *token_response(const struct dcms_iam *iam, char *access, const char *refresh)
{
    json_t *v = json_pack("{s:s, s:s, s:I, s:s}", "access_token", access, "token_type", "Bearer",
                          "expires_in", (json_int_t)iam->cfg->jwt_ttl_s, "refresh_token", refresh);
    free(access);
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

void iam_throttle_keys(const char *account, const char *client_ip, char acct[300], char ip[80])
{
    memcpy(acct, "acct:", 5);
    size_t el = strlen(account);
    for (size_t i = 0; i < el && i < 254; i++)
        acct[5 + i] =
            (char)((account[i] >= 'A' && account[i] <= 'Z') ? account[i] + 32 : account[i]);
    acct[5 + (el < 254 ? el : 254)] = '\0';
    /* No address (a check from inside dcmsd): no address key, which all such checks would share. */
    if (client_ip && *client_ip)
        snprintf(ip, 80, "ip:%s", client_ip);
    else
        ip[0] = '\0';
}

enum dcms_err iam_throttle_check(struct dcms_iam *iam, const char *acct, const char *ip,
                                 int64_t *retry_after_s, struct dcms_errinfo *ei)
{
    int64_t now = dcms_clock_now_us();
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_begin(iam->app->store, DCMS_TX_READ, &tx, ei);
    if (e)
        return e;
    e = dcms_store_exec(tx, &q_throttle_get,
                        (struct dcms_store_val[]){DCMS_VAL_TEXT(acct), DCMS_VAL_TEXT(ip)}, 2, &rows,
                        NULL, ei);
    dcms_store_rollback(tx);
    int64_t locked_until = 0;
    for (size_t i = 0; !e && i < dcms_store_rows_count(rows); i++) {
        const char *u = dcms_store_rows_text(rows, i, 1);
        int64_t t;
        if (u && dcms_time_parse(u, &t) == DCMS_OK && t > now && t > locked_until)
            locked_until = t;
    }
    dcms_store_rows_free(rows);
    if (e || !locked_until)
        return e;
    *retry_after_s = (locked_until - now) / 1000000 + 1;
    return dcms_err_set(ei, DCMS_ERR_RATE_LIMITED,
                        "too many failed logins; try again in %lld seconds",
                        (long long)*retry_after_s);
}

/* Records a failed login: counts it for the account and the address, locks either past its limit.
 */
enum dcms_err iam_throttle_fail(const struct iam_call *c, const char *acct_key, const char *ip_key,
                                const char *identity_id, const char *why)
{
    struct dcms_errinfo tei;
    dcms_errinfo_init(&tei, NULL);
    int64_t now = dcms_clock_now_us();
    char now_s[DCMS_TIME_STRLEN], forget_s[DCMS_TIME_STRLEN];
    fmt_time(now, now_s);
    fmt_time(now - (int64_t)THROTTLE_FORGET_S * 1000000, forget_s);
    struct dcms_store_tx *tx;
    enum dcms_err e = dcms_store_begin(c->iam->app->store, DCMS_TX_WRITE, &tx, &tei);
    if (e)
        return e;
    const char *keys[2] = {acct_key, ip_key};
    unsigned long limits[2] = {c->iam->cfg->login_max_failures,
                               c->iam->cfg->login_max_failures_per_ip};
    for (size_t k = 0; !e && k < 2; k++) {
        if (!keys[k][0])
            continue;
        struct dcms_store_rows *rows = NULL;
        e = dcms_store_exec(tx, &q_throttle_fail,
                            (struct dcms_store_val[]){DCMS_VAL_TEXT(keys[k]), DCMS_VAL_TEXT(now_s),
                                                      DCMS_VAL_TEXT(forget_s)},
                            3, &rows, NULL, &tei);
        int64_t failures = e ? 0 : dcms_store_rows_int(rows, 0, 0);
        dcms_store_rows_free(rows);
        if (e || failures < (int64_t)limits[k])
            continue;
        /* Exponential back-off: base, 2x base, 4x base ... capped. */
        int64_t over = failures - (int64_t)limits[k];
        int64_t lock_s = (int64_t)c->iam->cfg->login_lockout_s << (over > 10 ? 10 : over);
        if (lock_s > LOCKOUT_MAX_S)
            lock_s = LOCKOUT_MAX_S;
        char until[DCMS_TIME_STRLEN];
        fmt_time(now + lock_s * 1000000, until);
        e = dcms_store_exec(tx, &q_throttle_lock,
                            (struct dcms_store_val[]){DCMS_VAL_TEXT(keys[k]), DCMS_VAL_TEXT(until)},
                            2, NULL, NULL, &tei);
        if (!e)
            e = iam_audit(c->iam, tx, identity_id ? identity_id : "anonymous", "auth.lockout",
                          k == 0 ? "account" : "client_ip", k == 0 ? identity_id : c->client_ip,
                          true,
                          json_pack("{s:s, s:I, s:s}", "scope", k == 0 ? "account" : "ip",
                                    "failures", (json_int_t)failures, "locked_until", until),
                          c->client_ip, c->request_id, &tei);
    }
    if (!e)
        e = iam_audit(c->iam, tx, identity_id ? identity_id : "anonymous", "auth.login_failed",
                      "identity", identity_id, true, json_pack("{s:s}", "reason", why),
                      c->client_ip, c->request_id, &tei);
    e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, &tei);
    if (e)
        DCMS_LOG(DCMS_LOG_ERROR, "iam", "cannot record a failed login: %s", tei.message);
    return e;
}

/* The identity a login is about (columns of q_by_email / q_by_id) and its throttle keys. */
struct login_who {
    struct dcms_store_rows *rows;
    const char *id, *status, *roles, *org, *hash;
    char acct[300], ip[80];
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
    (void)iam_throttle_fail(c, w->acct, w->ip, w->id, why);
    char msg[200];
    snprintf(msg, sizeof(msg), "invalid second factor: %s %s",
             c->ei->ndetails ? c->ei->details[0].field : "",
             c->ei->ndetails ? c->ei->details[0].problem : "");
    dcms_errinfo_init(c->ei, c->ei->arena);
    return dcms_err_set(c->ei, DCMS_ERR_UNAUTHENTICATED, "%s", msg);
}

/* Ends a successful login: a session family, a refresh token, the access token. */
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
    dcms_uuid_v7(fam);
    fmt_time(now + (int64_t)iam->cfg->refresh_ttl_s * 1000000, exp_s);
    enum dcms_err e = new_token(token, thash);
    if (e)
        return e;
    json_t *amrs = iam_amr_json(amr);
    char *amr_text = json_dumps(amrs, JSON_COMPACT);
    struct dcms_store_tx *tx;
    if ((e = dcms_store_begin(iam->app->store, DCMS_TX_WRITE, &tx, ei))) {
        free(amr_text);
        json_decref(amrs);
        return e;
    }
    /* The ticket is used up in the transaction that starts the session: it works once. */
    if (ticket_hash)
        e = iam_mfa_ticket_use_tx(tx, ticket_hash, ei);
    if (!e)
        e = dcms_store_exec(tx, &q_throttle_clear,
                            (struct dcms_store_val[]){DCMS_VAL_TEXT(w->acct)}, 1, NULL, NULL, ei);
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
    free(amr_text);
    if (!e)
        e = dcms_store_exec(tx, &q_rt_insert,
                            (struct dcms_store_val[]){DCMS_VAL_TEXT(thash), DCMS_VAL_TEXT(fam),
                                                      DCMS_VAL_TEXT(now_s), DCMS_VAL_TEXT(exp_s)},
                            4, NULL, NULL, ei);
    if (!e)
        e = iam_audit(iam, tx, w->id, "auth.login", "session", fam, false,
                      json_pack("{s:O, s:b, s:b, s:s?}", "amr", amrs, "rehashed", newhash[0] != 0,
                                "mfa_ticket", ticket_hash != NULL, "factor", factor),
                      c->client_ip, c->request_id, ei);
    json_decref(amrs);
    e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, ei);
    char *access = NULL;
    if (!e)
        e = iam_issue_access(iam, w->id, w->org, iam_roles_from_json_text(w->roles), amr, fam,
                             now / 1000000, &access, ei);
    if (!e && !(*out = token_response(iam, access, token)))
        e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    sodium_memzero(token, sizeof(token));
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
    if ((e = iam_throttle_check(c->iam, w.acct, w.ip, retry_after_s, c->ei)))
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

enum dcms_err iam_login(const struct iam_call *c, const struct iam_login_in *in, json_t **out,
                        int64_t *retry_after_s)
{
    if (in->mfa_ticket)
        return login_ticket(c, in, out, retry_after_s);
    struct dcms_errinfo *ei = c->ei;
    struct dcms_iam *iam = c->iam;
    struct login_who w = {0};
    enum dcms_err e = who_load(c, &q_by_email, in->email, &w);
    if (e)
        return e;
    who_fill(c, &w, in->email);
    if ((e = iam_throttle_check(iam, w.acct, w.ip, retry_after_s, ei)))
        goto out;
    bool ok = false;
    if ((e = iam_verify_password(iam, w.hash, in->password, &ok, ei)))
        goto out;
    if (!ok) {
        (void)iam_throttle_fail(c, w.acct, w.ip, w.id, w.id ? "bad_password" : "unknown_email");
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
    char newhash[crypto_pwhash_STRBYTES] = "";
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
    sodium_memzero(newhash, sizeof(newhash));
out:
    dcms_store_rows_free(w.rows);
    return e;
}

enum dcms_err iam_refresh(const struct iam_call *c, const char *refresh_token, json_t **out)
{
    struct dcms_errinfo *ei = c->ei;
    struct dcms_iam *iam = c->iam;
    char hash[65], now_s[DCMS_TIME_STRLEN];
    int64_t now = dcms_clock_now_us();
    fmt_time(now, now_s);
    if (dcms_digest_sha256_hex(refresh_token, strlen(refresh_token), hash))
        return dcms_err_set(ei, DCMS_ERR_CRYPTO, NULL);
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_begin(iam->app->store, DCMS_TX_WRITE, &tx, ei);
    if (e)
        return e;
    e = dcms_store_exec(tx, &q_rt_get, (struct dcms_store_val[]){DCMS_VAL_TEXT(hash)}, 1, &rows,
                        NULL, ei);
    if (e)
        goto fail;
    if (dcms_store_rows_count(rows) != 1) {
        e = dcms_err_set(ei, DCMS_ERR_UNAUTHENTICATED, "invalid refresh token");
        goto fail;
    }
    const char *fam = dcms_store_rows_text(rows, 0, 0);
    const char *id = dcms_store_rows_text(rows, 0, 4);
    if (!dcms_store_rows_is_null(rows, 0, 3)) {
        e = dcms_err_set(ei, DCMS_ERR_UNAUTHENTICATED, "the session was revoked");
        goto fail;
    }
    uint64_t n = 0;
    if (dcms_store_rows_is_null(rows, 0, 1))
        e = dcms_store_exec(tx, &q_rt_use,
                            (struct dcms_store_val[]){DCMS_VAL_TEXT(hash), DCMS_VAL_TEXT(now_s)}, 2,
                            NULL, &n, ei);
    if (e)
        goto fail;
    if (n != 1) {
        /* A rotated token came back: someone holds a copy. Revoke the whole family. */
        e = dcms_store_exec(tx, &q_family_revoke,
                            (struct dcms_store_val[]){DCMS_VAL_TEXT(fam), DCMS_VAL_TEXT(now_s),
                                                      DCMS_VAL_TEXT("refresh_token_reuse")},
                            3, NULL, NULL, ei);
        if (!e)
            e = iam_audit(iam, tx, id, "auth.refresh_reuse", "session", fam, true,
                          json_pack("{s:s}", "effect", "session family revoked"), c->client_ip,
                          c->request_id, ei);
        e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, ei);
        dcms_store_rows_free(rows);
        if (e)
            return e;
        iam_revocation_bump(iam);
        return dcms_err_set(ei, DCMS_ERR_UNAUTHENTICATED,
                            "refresh token reused; the session has been revoked");
    }
    if (strcmp(dcms_store_rows_text(rows, 0, 2), now_s) <= 0 ||
        strcmp(dcms_store_rows_text(rows, 0, 6), now_s) <= 0) {
        e = dcms_err_set(ei, DCMS_ERR_UNAUTHENTICATED, "the refresh token expired");
        goto fail;
    }
    if (strcmp(dcms_store_rows_text(rows, 0, 7), "active") != 0) {
        e = dcms_err_set(ei, DCMS_ERR_UNAUTHENTICATED, "the identity is not active");
        goto fail;
    }
    char token[48], thash[65];
    if ((e = new_token(token, thash)))
        goto fail;
    e = dcms_store_exec(tx, &q_rt_insert,
                        (struct dcms_store_val[]){DCMS_VAL_TEXT(thash), DCMS_VAL_TEXT(fam),
                                                  DCMS_VAL_TEXT(now_s),
                                                  DCMS_VAL_TEXT(dcms_store_rows_text(rows, 0, 6))},
                        4, NULL, NULL, ei);
    if (!e)
        e = iam_audit(iam, tx, id, "auth.refresh", "session", fam, false, NULL, c->client_ip,
                      c->request_id, ei);
    if (e)
        goto fail;
    if ((e = dcms_store_commit(tx, ei))) {
        dcms_store_rows_free(rows);
        return e;
    }
    char *access = NULL;
    /* The new token keeps the login's time: a refresh is not a fresh authentication. */
    int64_t auth_us = 0;
    if (dcms_time_parse(dcms_store_rows_text(rows, 0, 10), &auth_us))
        auth_us = 0;
    e = iam_issue_access(iam, id, dcms_store_rows_text(rows, 0, 9),
                         iam_roles_from_json_text(dcms_store_rows_text(rows, 0, 8)),
                         amr_from_text(dcms_store_rows_text(rows, 0, 5)), fam, auth_us / 1000000,
                         &access, ei);
    if (!e && !(*out = token_response(iam, access, token)))
        e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    sodium_memzero(token, sizeof(token));
    dcms_store_rows_free(rows);
    return e;
fail:
    dcms_store_rows_free(rows);
    dcms_store_rollback(tx);
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

enum dcms_err iam_policy_create(const struct iam_call *c, const json_t *doc, json_t **out)
{
    struct iam_policy p;
    enum dcms_err e = iam_policy_from_json(doc, &p, c->ei);
    if (e) {
        iam_policy_release(&p);
        return e;
    }
    char id[DCMS_UUID_STRLEN], now[DCMS_TIME_STRLEN];
    dcms_uuid_v7(id);
    dcms_time_format(dcms_clock_now_us(), now);
    char *text = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
    struct dcms_store_tx *tx;
    if (!text || (e = dcms_store_begin(c->iam->app->store, DCMS_TX_WRITE, &tx, c->ei))) {
        free(text);
        iam_policy_release(&p);
        return e ? e : dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
    }
    const char *name = json_string_value(json_object_get(doc, "name"));
    e = dcms_store_exec(tx, &q_policy_insert,
                        (struct dcms_store_val[]){DCMS_VAL_TEXT(id), DCMS_VAL_TEXT(name),
                                                  DCMS_VAL_TEXT(text), DCMS_VAL_TEXT(c->p->id),
                                                  DCMS_VAL_TEXT(now)},
                        5, NULL, NULL, c->ei);
    if (e == DCMS_ERR_CONFLICT) {
        dcms_errinfo_init(c->ei, c->ei->arena);
        e = dcms_err_set(c->ei, DCMS_ERR_CONFLICT, "a policy with this name exists");
    }
    for (size_t i = 0; !e && i < p.nidentities; i++)
        e = dcms_store_exec(tx, &q_attach_insert,
                            (struct dcms_store_val[]){DCMS_VAL_TEXT(id), DCMS_VAL_TEXT("identity"),
                                                      DCMS_VAL_TEXT(p.identities[i])},
                            3, NULL, NULL, c->ei);
    for (unsigned bit = 1; !e && bit <= DCMS_ROLE_OPERATOR; bit <<= 1)
        if (p.roles & bit)
            e = dcms_store_exec(tx, &q_attach_insert,
                                (struct dcms_store_val[]){DCMS_VAL_TEXT(id), DCMS_VAL_TEXT("role"),
                                                          DCMS_VAL_TEXT(dcms_iam_role_name(bit))},
                                3, NULL, NULL, c->ei);
    if (!e)
        e = iam_audit(c->iam, tx, c->p->id, "policy.create", "policy", id, false,
                      json_pack("{s:O}", "document", doc), c->client_ip, c->request_id, c->ei);
    iam_policy_release(&p);
    free(text);
    e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, c->ei);
    if (e)
        return e;
    if ((e = iam_policies_reload(c->iam, c->ei)))
        return e;
    json_t *v = json_deep_copy(doc);
    json_object_set_new(v, "id", json_string(id));
    json_object_set_new(v, "created_by", json_string(c->p->id));
    json_object_set_new(v, "created_at", json_string(now));
    *out = v;
    return DCMS_OK;
}

/* Row i of a policy query (id, document, created_by, created_at) as its answer; NULL if unreadable.
 */
static json_t *policy_json(const struct dcms_store_rows *rows, size_t i)
{
    json_t *v = json_loads(dcms_store_rows_text(rows, i, 1), 0, NULL);
    if (!v)
        return NULL;
    json_object_set_new(v, "id", json_string(dcms_store_rows_text(rows, i, 0)));
    json_object_set_new(v, "created_by", json_string(dcms_store_rows_text(rows, i, 2)));
    json_object_set_new(v, "created_at", json_string(dcms_store_rows_text(rows, i, 3)));
    return v;
}

/* Reads policy `id` inside tx as its answer (*out); DCMS_ERR_NOT_FOUND when absent. */
static enum dcms_err policy_load(struct dcms_store_tx *tx, const char *id, json_t **out,
                                 struct dcms_errinfo *ei)
{
    struct dcms_store_rows *rows;
    if (!id || !dcms_uuid_valid(id))
        return dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "policy not found");
    enum dcms_err e = dcms_store_exec(
        tx, &q_policy_get, (struct dcms_store_val[]){DCMS_VAL_TEXT(id)}, 1, &rows, NULL, ei);
    if (e)
        return e;
    *out = dcms_store_rows_count(rows) ? policy_json(rows, 0) : NULL;
    dcms_store_rows_free(rows);
    return *out ? DCMS_OK : dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "policy not found");
}

enum dcms_err iam_policy_get(const struct iam_call *c, const char *id, json_t **out)
{
    struct dcms_store_tx *tx;
    enum dcms_err e = dcms_store_begin(c->iam->app->store, DCMS_TX_READ, &tx, c->ei);
    if (e)
        return e;
    e = policy_load(tx, id, out, c->ei);
    dcms_store_rollback(tx);
    return e;
}

enum dcms_err iam_policy_delete(const struct iam_call *c, const char *id)
{
    struct dcms_store_tx *tx;
    json_t *doc = NULL;
    enum dcms_err e = dcms_store_begin(c->iam->app->store, DCMS_TX_WRITE, &tx, c->ei);
    if (e)
        return e;
    e = policy_load(tx, id, &doc, c->ei);
    struct dcms_store_val key[] = {DCMS_VAL_TEXT(id)};
    if (!e)
        e = dcms_store_exec(tx, &q_policy_detach, key, 1, NULL, NULL, c->ei);
    if (!e)
        e = dcms_store_exec(tx, &q_policy_delete, key, 1, NULL, NULL, c->ei);
    if (!e) {
        json_t *details = json_pack("{s:O}", "policy", doc);
        e = details ? iam_audit(c->iam, tx, c->p->id, "policy.delete", "policy", id, false, details,
                                c->client_ip, c->request_id, c->ei)
                    : dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
    }
    json_decref(doc);
    e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, c->ei);
    /* This node decides without the policy at once; the others within their refresh period. */
    return e ? e : iam_policies_reload(c->iam, c->ei);
}

enum dcms_err iam_policy_list(const struct iam_call *c, json_t **out)
{
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows;
    enum dcms_err e = dcms_store_begin(c->iam->app->store, DCMS_TX_READ, &tx, c->ei);
    if (e)
        return e;
    e = dcms_store_exec(tx, &q_policy_list, NULL, 0, &rows, NULL, c->ei);
    dcms_store_rollback(tx);
    if (e)
        return e;
    json_t *items = json_array();
    for (size_t i = 0; i < dcms_store_rows_count(rows); i++) {
        json_t *v = policy_json(rows, i);
        if (v)
            json_array_append_new(items, v);
    }
    dcms_store_rows_free(rows);
    *out = json_pack("{s:o}", "policies", items);
    return DCMS_OK;
}
