/*
 * Single-use challenges for credential ceremonies (signing-key proofs of
 * possession, passkey registration and assertion), and the authorization
 * and denial-audit helpers the credential services share. A challenge is 32
 * random bytes, bound to one identity and one purpose, valid for five
 * minutes and used up by the first attempt that presents it.
 */
#include "dcms/app.h"
#include "dcms/audit.h"
#include "dcms/log.h"
#include "dcms/store.h"
#include "iam/iam_cred.h"

static struct dcms_query q_ch_gc =
    DCMS_QUERY("cred_challenge_gc", "DELETE FROM credential_challenges WHERE identity_id = $1 "
                                    "AND expires_at < $2");
static struct dcms_query q_ch_insert = DCMS_QUERY(
    "cred_challenge_insert", "INSERT INTO credential_challenges (id, identity_id, purpose, "
                             "challenge, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)");
static struct dcms_query q_ch_find =
    DCMS_QUERY("cred_challenge_find",
               "SELECT id, CAST(identity_id AS TEXT), purpose, challenge, expires_at, used_at "
               "FROM credential_challenges WHERE (CAST($1 AS TEXT) IS NOT NULL AND "
               "CAST(id AS TEXT) = $1) OR (CAST($2 AS TEXT) IS NOT NULL AND challenge = $2)");
static struct dcms_query q_ch_use =
    DCMS_QUERY("cred_challenge_use", "UPDATE credential_challenges SET used_at = $2 "
                                     "WHERE CAST(id AS TEXT) = $1 AND used_at IS NULL");
static struct dcms_query q_identity = DCMS_QUERY(
    "cred_identity", "SELECT CAST(organization_id AS TEXT) FROM identities WHERE id = $1");

enum dcms_err iam_challenge_issue(struct dcms_store_tx *tx, const char *identity_id,
                                  const char *purpose, struct iam_challenge *out,
                                  struct dcms_errinfo *ei)
{
    int64_t now = dcms_clock_now_us();
    char now_s[DCMS_TIME_STRLEN];
    dcms_time_format(now, now_s);
    dcms_time_format(now + (int64_t)IAM_CHALLENGE_TTL_S * 1000000, out->expires_at);
    randombytes_buf(out->raw, sizeof(out->raw));
    iam_b64url_encode(out->b64, out->raw, sizeof(out->raw));
    dcms_uuid_v7(out->id);
    enum dcms_err e = dcms_store_exec(
        tx, &q_ch_gc, (struct dcms_store_val[]){DCMS_VAL_TEXT(identity_id), DCMS_VAL_TEXT(now_s)},
        2, NULL, NULL, ei);
    if (!e)
        e = dcms_store_exec(
            tx, &q_ch_insert,
            (struct dcms_store_val[]){DCMS_VAL_TEXT(out->id), DCMS_VAL_TEXT(identity_id),
                                      DCMS_VAL_TEXT(purpose), DCMS_VAL_TEXT(out->b64),
                                      DCMS_VAL_TEXT(now_s), DCMS_VAL_TEXT(out->expires_at)},
            6, NULL, NULL, ei);
    return e;
}

enum dcms_err iam_challenge_consume(struct dcms_iam *iam, const char *identity_id,
                                    const char *purpose, const char *id, const char *b64,
                                    const char *field, struct iam_challenge *out,
                                    struct dcms_errinfo *ei)
{
    if ((id && !dcms_uuid_valid(id)) || (b64 && strlen(b64) != IAM_CHALLENGE_B64_LEN - 1))
        return dcms_err_field(ei, field, "is not a challenge this server issued");
    int64_t now = dcms_clock_now_us();
    char now_s[DCMS_TIME_STRLEN];
    dcms_time_format(now, now_s);
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_begin(iam->app->store, DCMS_TX_WRITE, &tx, ei);
    if (e)
        return e;
    e = dcms_store_exec(tx, &q_ch_find,
                        (struct dcms_store_val[]){id ? DCMS_VAL_TEXT(id) : DCMS_VAL_NULL,
                                                  b64 ? DCMS_VAL_TEXT(b64) : DCMS_VAL_NULL},
                        2, &rows, NULL, ei);
    if (e)
        goto out;
    if (dcms_store_rows_count(rows) != 1 ||
        strcmp(dcms_store_rows_text(rows, 0, 1), identity_id) != 0) {
        e = dcms_err_field(ei, field, "is not a challenge this server issued to this identity");
        goto out;
    }
    const char *cid = dcms_store_rows_text(rows, 0, 0);
    int64_t exp = 0;
    size_t rawlen = 0;
    if (strcmp(dcms_store_rows_text(rows, 0, 2), purpose) != 0)
        e = dcms_err_field(ei, field, "was issued for another purpose");
    else if (!dcms_store_rows_is_null(rows, 0, 5))
        e = dcms_err_field(ei, field, "was already used (challenges are single use)");
    else if (dcms_time_parse(dcms_store_rows_text(rows, 0, 4), &exp) || exp <= now)
        e = dcms_err_field(ei, field, "has expired (challenges are valid for %d seconds)",
                           IAM_CHALLENGE_TTL_S);
    else if (!iam_b64url_decode(out->raw, sizeof(out->raw), dcms_store_rows_text(rows, 0, 3),
                                strlen(dcms_store_rows_text(rows, 0, 3)), &rawlen) ||
             rawlen != IAM_CHALLENGE_BYTES)
        e = dcms_err_set(ei, DCMS_ERR_INTERNAL, "a stored challenge is malformed");
    if (e)
        goto out;
    snprintf(out->id, sizeof(out->id), "%s", cid);
    snprintf(out->b64, sizeof(out->b64), "%s", dcms_store_rows_text(rows, 0, 3));
    dcms_time_format(exp, out->expires_at);
    uint64_t n = 0;
    e = dcms_store_exec(tx, &q_ch_use,
                        (struct dcms_store_val[]){DCMS_VAL_TEXT(cid), DCMS_VAL_TEXT(now_s)}, 2,
                        NULL, &n, ei);
    if (!e && n != 1)
        e = dcms_err_field(ei, field, "was already used (challenges are single use)");
out:
    dcms_store_rows_free(rows);
    if (e) {
        /* An invalid challenge changes nothing; a used one stays used. */
        dcms_store_rollback(tx);
        return e;
    }
    return dcms_store_commit(tx, ei);
}

enum dcms_err iam_cred_identity(struct dcms_store_tx *tx, const char *identity_id,
                                char org[DCMS_UUID_STRLEN], struct dcms_errinfo *ei)
{
    if (!identity_id || !dcms_uuid_valid(identity_id))
        return dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "identity not found");
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_exec(
        tx, &q_identity, (struct dcms_store_val[]){DCMS_VAL_TEXT(identity_id)}, 1, &rows, NULL, ei);
    if (!e && dcms_store_rows_count(rows) != 1)
        e = dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "identity not found");
    if (!e) {
        const char *o = dcms_store_rows_text(rows, 0, 0);
        snprintf(org, DCMS_UUID_STRLEN, "%s", o ? o : "");
    }
    dcms_store_rows_free(rows);
    return e;
}

enum dcms_err iam_cred_authorize(const struct iam_call *c, struct dcms_store_tx *tx,
                                 const char *identity_id, bool self_only, const char *action,
                                 bool *hidden)
{
    char org[DCMS_UUID_STRLEN];
    enum dcms_err e = iam_cred_identity(tx, identity_id, org, c->ei);
    if (e)
        return e;
    bool self = c->p && strcmp(c->p->id, identity_id) == 0;
    if (self && !c->p->api_key[0])
        return DCMS_OK;
    struct dcms_iam_resource res = {
        .type = "identity", .id = identity_id, .org_id = org[0] ? org : NULL, .scoped = true};
    /* Someone else's identity: whoever may not see it gets the 404 of an unknown id. */
    if (!self && (e = iam_identity_authorize(c, &res, NULL, hidden)))
        return e;
    /* Credentials are registered in an interactive session, never with an API key. */
    if (self_only && self)
        return dcms_err_set(c->ei, DCMS_ERR_FORBIDDEN, "API keys cannot register credentials");
    if (self_only)
        return dcms_err_set(c->ei, DCMS_ERR_FORBIDDEN,
                            "only the identity itself may register its credentials");
    struct dcms_iam_ctx ctx = {c->iam, c->client_ip};
    return dcms_iam_authorize(c->p, action, &res, &ctx, c->ei);
}

void iam_cred_audit_denied(struct dcms_iam *iam, const char *actor, const char *action,
                           const char *rtype, const char *rid, const char *reason,
                           const char *client_ip, const char *request_id)
{
    struct dcms_errinfo tei;
    dcms_errinfo_init(&tei, NULL);
    json_t *details = json_pack("{s:s}", "reason", reason ? reason : "");
    struct dcms_audit_event ev = {
        .actor = actor ? actor : "anonymous",
        .action = action,
        .resource_type = rtype,
        .resource_id = rid,
        .outcome = DCMS_AUDIT_DENIED,
        .details = details,
        .client_ip = client_ip && *client_ip ? client_ip : NULL,
        .request_id = request_id,
    };
    if (dcms_audit_record(iam->app->audit, &ev, &tei))
        DCMS_LOG(DCMS_LOG_ERROR, "iam", "cannot audit a refused %s: %s", action, tei.message);
    json_decref(details);
}
