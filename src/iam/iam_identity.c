/*
 * Identities: self-registration and administrative creation, reads scoped
 * to the caller's organization, updates, the verify / suspend / reactivate
 * lifecycle, e-mail verification tokens (outbox) and the bootstrap admin.
 * Every change is audited in its own transaction.
 */
#include "dcms/app.h"
#include "dcms/clock.h"
#include "dcms/config.h"
#include "dcms/crypto.h"
#include "dcms/log.h"
#include "dcms/store.h"
#include "dcms/etag.h"
#include "iam/iam_identity.h"

#define COLS                                                                                       \
    "id, kind, name, email, roles, status, organization_id, verified_at, verified_by, "            \
    "verification_note, email_verified_at, created_at, updated_at, version"
#define EMAIL_TOKEN_TTL_S (48 * 3600)

static struct dcms_query q_insert = DCMS_QUERY(
    "iam_identity_insert",
    "INSERT INTO identities (id, kind, name, email, roles, status, organization_id, verified_at, "
    "verified_by, verification_note, email_verified_at, created_at, updated_at) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)");
static struct dcms_query q_cred_insert = DCMS_QUERY(
    "iam_cred_insert",
    "INSERT INTO credentials (identity_id, password_hash, updated_at) VALUES ($1, $2, $3)");
static struct dcms_query q_get =
    DCMS_QUERY("iam_identity_get", "SELECT " COLS " FROM identities WHERE id = $1");
static struct dcms_query q_list =
    DCMS_QUERY("iam_identity_list",
               "SELECT " COLS " FROM identities WHERE (CAST($1 AS TEXT) IS NULL OR kind = $1) "
               "AND (CAST($2 AS TEXT) IS NULL OR status = $2) "
               "AND ($3 = 1 OR CAST(id AS TEXT) = $4 OR CAST(organization_id AS TEXT) = $5 "
               "OR CAST(id AS TEXT) = $5) "
               "AND (CAST($6 AS TEXT) IS NULL OR CAST(id AS TEXT) > $6) ORDER BY id LIMIT $7");
static struct dcms_query q_update = DCMS_QUERY(
    "iam_identity_update",
    "UPDATE identities SET name = $2, email = $3, roles = $4, organization_id = $5, status = $6, "
    "verified_at = $7, verified_by = $8, verification_note = $9, email_verified_at = $10, "
    "updated_at = $11, version = version + 1 WHERE id = $1 AND version = $12");
static struct dcms_query q_count =
    DCMS_QUERY("iam_identity_count", "SELECT COUNT(*) FROM identities");
static struct dcms_query q_revoke_all =
    DCMS_QUERY("iam_revoke_identity_sessions",
               "UPDATE session_families SET revoked_at = $2, revoked_reason = $3 "
               "WHERE identity_id = $1 AND revoked_at IS NULL");
static struct dcms_query q_ev_insert = DCMS_QUERY(
    "iam_email_token_insert",
    "INSERT INTO email_verifications (token_hash, identity_id, email, created_at, expires_at) "
    "VALUES ($1, $2, $3, $4, $5)");
static struct dcms_query q_ev_get =
    DCMS_QUERY("iam_email_token_get", "SELECT identity_id, email, expires_at, used_at FROM "
                                      "email_verifications WHERE token_hash = $1");
static struct dcms_query q_ev_use = DCMS_QUERY(
    "iam_email_token_use",
    "UPDATE email_verifications SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL");
static struct dcms_query q_email_verified = DCMS_QUERY(
    "iam_email_verified", "UPDATE identities SET email_verified_at = $2, updated_at = $2, "
                          "version = version + 1 WHERE id = $1 AND lower(email) = lower($3)");

/* One identity row, as read (text; NULL where SQL NULL). */
struct row {
    const char *v[14];
};

static void row_from(const struct dcms_store_rows *r, size_t i, struct row *out)
{
    for (size_t j = 0; j < 14; j++)
        out->v[j] = dcms_store_rows_text(r, i, j);
}

enum {
    C_ID,
    C_KIND,
    C_NAME,
    C_EMAIL,
    C_ROLES,
    C_STATUS,
    C_ORG,
    C_VAT,
    C_VBY,
    C_VNOTE,
    C_EVAT,
    C_CREATED,
    C_UPDATED,
    C_VERSION
};

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

static json_t *row_json(const struct row *r)
{
    return json_pack(
        "{s:s, s:s, s:s, s:o, s:o, s:s, s:o, s:b, s:o, s:o, s:o, s:s, s:s, s:I}", "id", r->v[C_ID],
        "kind", r->v[C_KIND], "name", r->v[C_NAME], "email", str_or_null(r->v[C_EMAIL]), "roles",
        iam_roles_to_json(iam_roles_from_json_text(r->v[C_ROLES])), "status", r->v[C_STATUS],
        "organization_id", str_or_null(r->v[C_ORG]), "email_verified", r->v[C_EVAT] != NULL,
        "verified_at", str_or_null(r->v[C_VAT]), "verified_by", str_or_null(r->v[C_VBY]),
        "verification_note", str_or_null(r->v[C_VNOTE]), "created_at", r->v[C_CREATED],
        "updated_at", r->v[C_UPDATED], "version", (json_int_t)strtoll(r->v[C_VERSION], NULL, 10));
}

static char *roles_text(unsigned roles)
{
    json_t *a = iam_roles_to_json(roles);
    char *s = a ? json_dumps(a, JSON_COMPACT) : NULL;
    json_decref(a);
    return s;
}

static bool email_ok(const char *e)
{
    size_t n = strlen(e);
    const char *at = strchr(e, '@');
    if (n < 3 || n > 254 || !at || at == e || strchr(at + 1, '@') || !at[1] || !strchr(at + 1, '.'))
        return false;
    for (const char *p = e; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == '"' || *p == '<' || *p == '>' || *p == ',')
            return false;
    return true;
}

/* Reads one identity inside tx; DCMS_ERR_NOT_FOUND when absent. */
static enum dcms_err load(struct dcms_store_tx *tx, const char *id, struct dcms_store_rows **rows,
                          struct row *r, struct dcms_errinfo *ei)
{
    if (!dcms_uuid_valid(id))
        return dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "identity not found");
    enum dcms_err e = dcms_store_exec(tx, &q_get, (struct dcms_store_val[]){DCMS_VAL_TEXT(id)}, 1,
                                      rows, NULL, ei);
    if (e)
        return e;
    if (dcms_store_rows_count(*rows) != 1) {
        dcms_store_rows_free(*rows);
        *rows = NULL;
        return dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "identity not found");
    }
    row_from(*rows, 0, r);
    return DCMS_OK;
}

/*
 * The common end of an identity change: audit it in the same transaction
 * (`details` is consumed; nothing is written when `e` is already an error),
 * then read the row back for the answer. `*rows` is replaced by the new read.
 */
static enum dcms_err audit_and_reload(const struct iam_call *c, struct dcms_store_tx *tx,
                                      const char *id, const char *action, json_t *details,
                                      enum dcms_err e, struct dcms_store_rows **rows, json_t **out,
                                      struct dcms_errinfo *ei)
{
    if (!e)
        e = iam_audit(c->iam, tx, c->p->id, action, "identity", id, false, details, c->client_ip,
                      c->request_id, ei);
    else
        json_decref(details);
    dcms_store_rows_free(*rows);
    *rows = NULL;
    struct row r;
    if (!e && !(e = load(tx, id, rows, &r, ei)))
        *out = row_json(&r);
    return e;
}

static struct dcms_iam_resource resource_of(const struct row *r)
{
    return (struct dcms_iam_resource){
        .type = "identity", .id = r->v[C_ID], .org_id = r->v[C_ORG], .scoped = true};
}

static enum dcms_err authorize(const struct iam_call *c, const char *action,
                               const struct dcms_iam_resource *res)
{
    struct dcms_iam_ctx ctx = {c->iam, c->client_ip};
    return dcms_iam_authorize(c->p, action, res, &ctx, c->ei);
}

/* Creates a one-time e-mail token: SHA-256 in the store, the token itself in the outbox mail. */
static enum dcms_err email_token(const struct iam_call *c, struct dcms_store_tx *tx, const char *id,
                                 const char *email, const char *now)
{
    unsigned char raw[32];
    char token[48], hash[65], expires[DCMS_TIME_STRLEN];
    randombytes_buf(raw, sizeof(raw));
    iam_b64url_encode(token, raw, sizeof(raw));
    sodium_memzero(raw, sizeof(raw));
    enum dcms_err e = dcms_digest_sha256_hex(token, strlen(token), hash);
    dcms_time_format(dcms_clock_now_us() + (int64_t)EMAIL_TOKEN_TTL_S * 1000000, expires);
    if (!e)
        e = dcms_store_exec(tx, &q_ev_insert,
                            (struct dcms_store_val[]){DCMS_VAL_TEXT(hash), DCMS_VAL_TEXT(id),
                                                      DCMS_VAL_TEXT(email), DCMS_VAL_TEXT(now),
                                                      DCMS_VAL_TEXT(expires)},
                            5, NULL, NULL, c->ei);
    char body[512];
    snprintf(body, sizeof(body),
             "Confirm your e-mail address for dcms with this one-time token (valid 48 hours):\n\n"
             "%s\n\nPOST it as {\"token\": \"...\"} to /api/v1/auth/verify-email.\n",
             token);
    if (!e)
        e = iam_mail_queue(tx, email, "Confirm your e-mail address", body, now, c->ei);
    sodium_memzero(token, sizeof(token));
    sodium_memzero(body, sizeof(body));
    return e;
}

static struct dcms_query q_by_email = DCMS_QUERY(
    "iam_identity_by_email", "SELECT id, email FROM identities WHERE lower(email) = lower($1)");

/*
 * Self-registration for an address that already has an account (any case):
 * the owner gets a mail, the caller the same answer as for a new address.
 * *found says whether it had one. Runs inside `tx`.
 */
static enum dcms_err existing_address(const struct iam_call *c, struct dcms_store_tx *tx,
                                      const char *email, const char *now, bool *found)
{
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_exec(
        tx, &q_by_email, (struct dcms_store_val[]){DCMS_VAL_TEXT(email)}, 1, &rows, NULL, c->ei);
    *found = !e && dcms_store_rows_count(rows) == 1;
    if (*found)
        e = iam_register_existing(c, tx, dcms_store_rows_text(rows, 0, 0),
                                  dcms_store_rows_text(rows, 0, 1), now);
    dcms_store_rows_free(rows);
    return e;
}

/* Creation (c->p set) and self-registration (c->p NULL): see iam_identity.h. */
static enum dcms_err create(const struct iam_call *c, const struct iam_identity_in *in,
                            json_t **out, int64_t *retry_after_s)
{
    struct dcms_errinfo *ei = c->ei;
    bool admin = false;
    *out = NULL;
    if (c->p) {
        enum dcms_err e = authorize(c, "identities:create", NULL);
        if (e)
            return e;
        admin = true;
    }
    const char *kind = in->kind ? in->kind : "user";
    if (strcmp(kind, "user") && strcmp(kind, "organization") && strcmp(kind, "service"))
        dcms_err_field(ei, "kind", "must be organization, user or service");
    else if (!admin && strcmp(kind, "user") != 0)
        dcms_err_field(ei, "kind", "self-registration creates users only");
    if (!in->name || strlen(in->name) < 1 || strlen(in->name) > 255)
        dcms_err_field(ei, "name", "must be 1 to 255 characters");
    if (in->email && !email_ok(in->email))
        dcms_err_field(ei, "email", "must be an e-mail address");
    else if (!in->email && (!admin || strcmp(kind, "user") == 0))
        dcms_err_field(ei, "email", "is required");
    if (in->password)
        iam_password_check(in->password, in->email, "password", ei);
    else if (!admin)
        dcms_err_field(ei, "password", "is required");
    if (in->password && strcmp(kind, "organization") == 0)
        dcms_err_field(ei, "password", "organizations do not log in");
    /*
     * Membership is granted by the organization (POST /organizations/{id}/members),
     * never chosen by the member, and roles come with it or from an administrator.
     */
    if (!admin && in->roles)
        dcms_err_field(ei, "roles",
                       "self-registration takes no roles: an organization's org_admin grants them "
                       "with its membership");
    if (in->organization_id)
        dcms_err_field(ei, "organization_id",
                       admin ? "members are added with POST /api/v1/organizations/{id}/members"
                             : "self-registration cannot choose an organization: its org_admin "
                               "adds members");
    if (ei->code)
        return ei->code;
    enum dcms_err e = admin ? DCMS_OK : iam_register_admit(c, retry_after_s);
    if (e)
        return e;

    /* Hashed before anything is looked up, so a known address costs the same argon2 work. */
    char hash[crypto_pwhash_STRBYTES] = "";
    e = in->password ? iam_hash_password(c->iam, in->password, hash, ei) : DCMS_OK;
    if (e)
        return e;
    char id[DCMS_UUID_STRLEN], now[DCMS_TIME_STRLEN];
    dcms_uuid_v7(id);
    dcms_time_format(dcms_clock_now_us(), now);
    char *roles = roles_text(in->roles);
    struct dcms_store_tx *tx = NULL;
    struct dcms_store_rows *rows = NULL;
    bool found = false;
    if (!roles) {
        e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
        goto out;
    }
    /* Two rounds: a concurrent registration of the same address makes the insert conflict. */
    for (int round = 0; round < 2; round++) {
        if ((e = dcms_store_begin(c->iam->app->store, DCMS_TX_WRITE, &tx, ei)))
            goto out;
        if (!admin && (e = existing_address(c, tx, in->email, now, &found)))
            goto out;
        if (found)
            break;
        e = dcms_store_exec(
            tx, &q_insert,
            (struct dcms_store_val[]){
                DCMS_VAL_TEXT(id), DCMS_VAL_TEXT(kind), DCMS_VAL_TEXT(in->name),
                in->email ? DCMS_VAL_TEXT(in->email) : DCMS_VAL_NULL, DCMS_VAL_TEXT(roles),
                DCMS_VAL_TEXT(admin ? "active" : "pending_verification"), DCMS_VAL_NULL,
                admin ? DCMS_VAL_TEXT(now) : DCMS_VAL_NULL,
                admin ? DCMS_VAL_TEXT(c->p->id) : DCMS_VAL_NULL,
                admin ? DCMS_VAL_TEXT("created by an administrator") : DCMS_VAL_NULL, DCMS_VAL_NULL,
                DCMS_VAL_TEXT(now)},
            12, NULL, NULL, ei);
        if (e != DCMS_ERR_CONFLICT || admin || round == 1)
            break;
        dcms_store_rollback(tx);
        tx = NULL;
        dcms_errinfo_init(ei, ei->arena);
    }
    if (e == DCMS_ERR_CONFLICT) {
        dcms_errinfo_init(ei, ei->arena);
        e = dcms_err_set(ei, DCMS_ERR_CONFLICT, "an identity with this email already exists");
    }
    if (!e && !found && hash[0])
        e = dcms_store_exec(
            tx, &q_cred_insert,
            (struct dcms_store_val[]){DCMS_VAL_TEXT(id), DCMS_VAL_TEXT(hash), DCMS_VAL_TEXT(now)},
            3, NULL, NULL, ei);
    if (!e && !found && in->email && strcmp(kind, "user") == 0)
        e = email_token(c, tx, id, in->email, now);
    if (!e && !found)
        e = iam_audit(c->iam, tx, c->p ? c->p->id : "anonymous", "identity.create", "identity", id,
                      false,
                      json_pack("{s:s, s:o, s:b}", "kind", kind, "roles",
                                iam_roles_to_json(in->roles), "self_registered", !admin),
                      c->client_ip, c->request_id, ei);
    struct row r;
    if (!e && !admin)
        *out = iam_register_answer(in->email); /* the same for a new and a known address */
    else if (!e && !(e = load(tx, id, &rows, &r, ei)))
        *out = row_json(&r);
    if (!e && !*out)
        e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, ei);
    tx = NULL;
    if (!e)
        iam_mail_flush(c->iam);
out:
    dcms_store_rows_free(rows);
    dcms_store_rollback(tx);
    sodium_memzero(hash, sizeof(hash));
    free(roles);
    return e;
}

enum dcms_err iam_identity_create(const struct iam_call *c, const struct iam_identity_in *in,
                                  json_t **out)
{
    int64_t retry = 0;
    return create(c, in, out, &retry);
}

enum dcms_err iam_identity_register(const struct iam_call *c, const struct iam_identity_in *in,
                                    json_t **out, int64_t *retry_after_s)
{
    struct iam_call anon = *c;
    anon.p = NULL;
    return create(&anon, in, out, retry_after_s);
}

/* Identity `id` as its answer, after deciding `action` on it (NULL: no decision). */
static enum dcms_err read_identity(const struct iam_call *c, const char *id, const char *action,
                                   json_t **out)
{
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    struct row r;
    bool hidden = false;
    enum dcms_err e = dcms_store_begin(c->iam->app->store, DCMS_TX_READ, &tx, c->ei);
    if (e)
        return e;
    e = load(tx, id, &rows, &r, c->ei);
    if (!e && action) {
        struct dcms_iam_resource res = resource_of(&r);
        e = iam_identity_authorize(c, &res, action, &hidden);
    }
    if (!e)
        *out = row_json(&r);
    dcms_store_rows_free(rows);
    dcms_store_rollback(tx);
    iam_identity_hidden_audit(c, hidden, id, action);
    return e;
}

enum dcms_err iam_identity_get(const struct iam_call *c, const char *id, json_t **out)
{
    return read_identity(c, id, "identities:read", out);
}

/* What the caller's token (or API key) says, beyond the identity. */
static json_t *token_facts(const struct dcms_principal *p)
{
    json_t *roles = json_array();
    for (unsigned bit = 1; roles && bit <= DCMS_ROLE_LAST; bit <<= 1)
        if (p->roles & bit)
            json_array_append_new(roles, json_string(dcms_iam_role_name(bit)));
    json_t *key = json_null();
    if (p->api_key[0]) {
        json_t *scope = json_array();
        for (size_t i = 0; scope && i < p->nscope; i++)
            json_array_append_new(scope, json_string(p->scope[i]));
        key = json_pack("{s:s, s:o}", "id", p->api_key, "scope", scope);
    }
    char exp[DCMS_TIME_STRLEN];
    dcms_time_format(p->exp_s * 1000000, exp);
    return json_pack("{s:o, s:o, s:o, s:o, s:s}", "roles", roles, "amr", iam_amr_json(p->amr),
                     "session_id", p->sid[0] ? json_string(p->sid) : json_null(), "api_key", key,
                     "expires_at", exp);
}

enum dcms_err iam_identity_me(const struct iam_call *c, json_t **out)
{
    json_t *identity;
    /* Anyone may read who they are: no identities:read decision here. */
    enum dcms_err e = read_identity(c, c->p->id, NULL, &identity);
    if (e)
        return e;
    *out = json_pack("{s:o, s:o}", "identity", identity, "token", token_facts(c->p));
    return *out ? DCMS_OK : dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
}

/* One row of a list page (see dcms_store_rows_page). */
static json_t *page_item(const struct dcms_store_rows *rows, size_t i)
{
    struct row r;
    row_from(rows, i, &r);
    return row_json(&r);
}

enum dcms_err iam_identity_list(const struct iam_call *c, const struct iam_list_in *in,
                                json_t **out)
{
    bool all = (c->p->roles & (DCMS_ROLE_ADMIN | DCMS_ROLE_AUDITOR)) != 0;
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_begin(c->iam->app->store, DCMS_TX_READ, &tx, c->ei);
    if (e)
        return e;
    e = dcms_store_exec(
        tx, &q_list,
        (struct dcms_store_val[]){
            in->kind ? DCMS_VAL_TEXT(in->kind) : DCMS_VAL_NULL,
            in->status ? DCMS_VAL_TEXT(in->status) : DCMS_VAL_NULL, DCMS_VAL_INT(all ? 1 : 0),
            DCMS_VAL_TEXT(c->p->id), DCMS_VAL_TEXT(c->p->org[0] ? c->p->org : "-"),
            in->cursor ? DCMS_VAL_TEXT(in->cursor) : DCMS_VAL_NULL, DCMS_VAL_INT(in->limit)},
        7, &rows, NULL, c->ei);
    dcms_store_rollback(tx);
    if (e)
        return e;
    *out = dcms_store_rows_page(rows, in->limit, 0, "identities", page_item);
    dcms_store_rows_free(rows);
    return *out ? DCMS_OK : dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
}

/* Writes `r` back (values in `v`), bumping the version; 412 when it moved. */
static enum dcms_err store_row(struct dcms_store_tx *tx, const struct row *r, const char *now,
                               struct dcms_errinfo *ei)
{
    uint64_t n = 0;
#define V(i) (r->v[i] ? DCMS_VAL_TEXT(r->v[i]) : DCMS_VAL_NULL)
    enum dcms_err e = dcms_store_exec(
        tx, &q_update,
        (struct dcms_store_val[]){V(C_ID), V(C_NAME), V(C_EMAIL), V(C_ROLES), V(C_ORG), V(C_STATUS),
                                  V(C_VAT), V(C_VBY), V(C_VNOTE), V(C_EVAT), DCMS_VAL_TEXT(now),
                                  DCMS_VAL_INT(strtoll(r->v[C_VERSION], NULL, 10))},
        12, NULL, &n, ei);
#undef V
    if (e == DCMS_ERR_CONFLICT)
        return dcms_err_set(ei, DCMS_ERR_CONFLICT, "an identity with this email already exists");
    if (!e && n != 1)
        return dcms_err_set(ei, DCMS_ERR_PRECONDITION_FAILED, "the identity changed meanwhile");
    return e;
}

enum dcms_err iam_identity_patch(const struct iam_call *c, const char *id,
                                 const struct iam_identity_in *in, json_t **out)
{
    struct dcms_errinfo *ei = c->ei;
    if (in->name && (strlen(in->name) < 1 || strlen(in->name) > 255))
        dcms_err_field(ei, "name", "must be 1 to 255 characters");
    if (in->has_email && in->email && !email_ok(in->email))
        dcms_err_field(ei, "email", "must be an e-mail address");
    if (ei->code)
        return ei->code;
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    struct row r;
    char *roles = NULL;
    char now[DCMS_TIME_STRLEN];
    bool hidden = false;
    dcms_time_format(dcms_clock_now_us(), now);
    enum dcms_err e = dcms_store_begin(c->iam->app->store, DCMS_TX_WRITE, &tx, ei);
    if (e)
        return e;
    if ((e = load(tx, id, &rows, &r, ei)))
        goto out;
    struct dcms_iam_resource res = resource_of(&r);
    /* Anyone may rename themselves; everything else is an administrator's change. */
    bool self_rename =
        strcmp(c->p->id, id) == 0 && !in->has_roles && !in->has_email && !in->has_org;
    if (!self_rename && (e = iam_identity_authorize(c, &res, "identities:update", &hidden)))
        goto out;
    if ((e = dcms_etag_check(in->if_match, r.v[C_VERSION], ei)))
        goto out;
    json_t *before = row_json(&r);
    if (in->name)
        r.v[C_NAME] = in->name;
    if (in->has_email && (!r.v[C_EMAIL] || !in->email || strcasecmp(r.v[C_EMAIL], in->email))) {
        r.v[C_EMAIL] = in->email;
        r.v[C_EVAT] = NULL; /* a new address must be verified again */
    }
    if (in->has_roles) {
        if (!(roles = roles_text(in->roles))) {
            json_decref(before);
            e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
            goto out;
        }
        r.v[C_ROLES] = roles;
    }
    if (in->has_org) /* membership has its own routes and rules (iam_org.c) */
        e = dcms_err_field(ei, "organization_id",
                           "members are added and removed with /api/v1/organizations/{id}/members");
    if (e) {
        json_decref(before);
        goto out;
    }
    e = store_row(tx, &r, now, ei);
    json_t *changes = json_object();
    const char *fields[] = {in->name ? "name" : NULL, in->has_email ? "email" : NULL,
                            in->has_roles ? "roles" : NULL, in->has_org ? "organization_id" : NULL};
    json_t *changed = json_array();
    for (size_t i = 0; i < 4; i++)
        if (fields[i])
            json_array_append_new(changed, json_string(fields[i]));
    json_object_set_new(changes, "fields", changed);
    if (in->has_roles)
        json_object_set(changes, "roles_before", json_object_get(before, "roles"));
    json_decref(before);
    e = audit_and_reload(c, tx, id, "identity.update", changes, e, &rows, out, ei);
out:
    dcms_store_rows_free(rows);
    free(roles);
    e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, ei);
    iam_identity_hidden_audit(c, hidden, id, "identities:update");
    if (!e && (in->has_roles || in->has_org))
        iam_revocation_bump(c->iam); /* cached tokens and keys pick up the change at once */
    return e;
}

enum dcms_err iam_identity_transition(const struct iam_call *c, const char *id, const char *op,
                                      const char *note, json_t **out)
{
    struct dcms_errinfo *ei = c->ei;
    bool verify = strcmp(op, "verify") == 0, suspend = strcmp(op, "suspend") == 0;
    if (verify && (!note || strlen(note) < 1 || strlen(note) > 1000))
        return dcms_err_field(ei, "note", "the evidence note is required (1 to 1000 characters)");
    if (note && strlen(note) > 1000)
        return dcms_err_field(ei, verify ? "note" : "reason", "must be at most 1000 characters");
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    struct row r;
    char now[DCMS_TIME_STRLEN];
    dcms_time_format(dcms_clock_now_us(), now);
    enum dcms_err e = dcms_store_begin(c->iam->app->store, DCMS_TX_WRITE, &tx, ei);
    if (e)
        return e;
    if ((e = load(tx, id, &rows, &r, ei)))
        goto out;
    const char *from = r.v[C_STATUS];
    if (verify) {
        if (strcmp(from, "pending_verification") != 0) {
            e = dcms_err_set(ei, DCMS_ERR_CONFLICT,
                             "only a pending identity can be verified (it is %s)", from);
            goto out;
        }
        r.v[C_STATUS] = "active";
        r.v[C_VAT] = now;
        r.v[C_VBY] = c->p->id;
        r.v[C_VNOTE] = note;
    } else if (suspend) {
        if (strcmp(from, "suspended") == 0) {
            e = dcms_err_set(ei, DCMS_ERR_CONFLICT, "the identity is already suspended");
            goto out;
        }
        if (strcmp(id, c->p->id) == 0) {
            e = dcms_err_set(ei, DCMS_ERR_CONFLICT, "an administrator cannot suspend itself");
            goto out;
        }
        r.v[C_STATUS] = "suspended";
    } else {
        if (strcmp(from, "suspended") != 0) {
            e = dcms_err_set(ei, DCMS_ERR_CONFLICT, "only a suspended identity can be reactivated");
            goto out;
        }
        r.v[C_STATUS] = r.v[C_VAT] ? "active" : "pending_verification";
    }
    e = store_row(tx, &r, now, ei);
    if (!e && suspend)
        e = dcms_store_exec(tx, &q_revoke_all,
                            (struct dcms_store_val[]){DCMS_VAL_TEXT(id), DCMS_VAL_TEXT(now),
                                                      DCMS_VAL_TEXT("identity_suspended")},
                            3, NULL, NULL, ei);
    char action[64];
    snprintf(action, sizeof(action), "identity.%s", op);
    json_t *d = json_pack("{s:s, s:s}", "from", from, "to", r.v[C_STATUS]);
    if (d && note)
        json_object_set_new(d, verify ? "evidence" : "reason", json_string(note));
    e = audit_and_reload(c, tx, id, action, d, e, &rows, out, ei);
out:
    dcms_store_rows_free(rows);
    e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, ei);
    if (!e && suspend)
        iam_revocation_bump(c->iam);
    return e;
}

enum dcms_err iam_email_verify(const struct iam_call *c, const char *token, json_t **out)
{
    char hash[65], now[DCMS_TIME_STRLEN];
    if (dcms_digest_sha256_hex(token, strlen(token), hash))
        return dcms_err_set(c->ei, DCMS_ERR_CRYPTO, NULL);
    dcms_time_format(dcms_clock_now_us(), now);
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_begin(c->iam->app->store, DCMS_TX_WRITE, &tx, c->ei);
    if (e)
        return e;
    e = dcms_store_exec(tx, &q_ev_get, (struct dcms_store_val[]){DCMS_VAL_TEXT(hash)}, 1, &rows,
                        NULL, c->ei);
    if (!e && (dcms_store_rows_count(rows) != 1 || !dcms_store_rows_is_null(rows, 0, 3) ||
               strcmp(dcms_store_rows_text(rows, 0, 2), now) <= 0))
        e = dcms_err_field(c->ei, "token", "is unknown, used or expired");
    uint64_t n = 0;
    if (!e)
        e = dcms_store_exec(tx, &q_ev_use,
                            (struct dcms_store_val[]){DCMS_VAL_TEXT(hash), DCMS_VAL_TEXT(now)}, 2,
                            NULL, &n, c->ei);
    if (!e && n != 1)
        e = dcms_err_field(c->ei, "token", "is unknown, used or expired");
    if (!e)
        e = dcms_store_exec(tx, &q_email_verified,
                            (struct dcms_store_val[]){
                                DCMS_VAL_TEXT(dcms_store_rows_text(rows, 0, 0)), DCMS_VAL_TEXT(now),
                                DCMS_VAL_TEXT(dcms_store_rows_text(rows, 0, 1))},
                            3, NULL, &n, c->ei);
    if (!e && n != 1)
        e = dcms_err_field(c->ei, "token", "belongs to an address the identity no longer has");
    if (!e)
        e = iam_audit(c->iam, tx, dcms_store_rows_text(rows, 0, 0), "identity.email_verified",
                      "identity", dcms_store_rows_text(rows, 0, 0), false, NULL, c->client_ip,
                      c->request_id, c->ei);
    if (!e)
        *out = json_pack("{s:s, s:b}", "identity_id", dcms_store_rows_text(rows, 0, 0),
                         "email_verified", 1);
    dcms_store_rows_free(rows);
    return e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, c->ei);
}

enum dcms_err iam_bootstrap(struct dcms_iam *iam, struct dcms_errinfo *ei)
{
    const struct dcms_config *cfg = iam->cfg;
    if (!cfg->admin_email[0])
        return DCMS_OK;
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_begin(iam->app->store, DCMS_TX_WRITE, &tx, ei);
    if (e)
        return e;
    if ((e = dcms_store_exec(tx, &q_count, NULL, 0, &rows, NULL, ei)))
        goto out;
    if (dcms_store_rows_int(rows, 0, 0) != 0)
        goto out; /* not a first start */
    if (!email_ok(cfg->admin_email)) {
        e = dcms_err_set(ei, DCMS_ERR_CONFIG, "DCMS_ADMIN_EMAIL is not an e-mail address");
        goto out;
    }
    iam_password_check(cfg->admin_password, cfg->admin_email, "DCMS_ADMIN_PASSWORD", ei);
    if (ei->code) {
        e = dcms_err_set(ei, DCMS_ERR_CONFIG, "DCMS_ADMIN_PASSWORD %s", ei->details[0].problem);
        goto out;
    }
    char hash[crypto_pwhash_STRBYTES], id[DCMS_UUID_STRLEN], now[DCMS_TIME_STRLEN];
    if ((e = iam_hash_password(iam, cfg->admin_password, hash, ei)))
        goto out;
    dcms_uuid_v7(id);
    dcms_time_format(dcms_clock_now_us(), now);
    e = dcms_store_exec(
        tx, &q_insert,
        (struct dcms_store_val[]){DCMS_VAL_TEXT(id), DCMS_VAL_TEXT("user"),
                                  DCMS_VAL_TEXT("Administrator"), DCMS_VAL_TEXT(cfg->admin_email),
                                  DCMS_VAL_TEXT("[\"admin\"]"), DCMS_VAL_TEXT("active"),
                                  DCMS_VAL_NULL, DCMS_VAL_TEXT(now), DCMS_VAL_TEXT("system"),
                                  DCMS_VAL_TEXT("bootstrap administrator (DCMS_ADMIN_EMAIL)"),
                                  DCMS_VAL_TEXT(now), DCMS_VAL_TEXT(now)},
        12, NULL, NULL, ei);
    if (!e)
        e = dcms_store_exec(
            tx, &q_cred_insert,
            (struct dcms_store_val[]){DCMS_VAL_TEXT(id), DCMS_VAL_TEXT(hash), DCMS_VAL_TEXT(now)},
            3, NULL, NULL, ei);
    sodium_memzero(hash, sizeof(hash));
    if (!e)
        e = iam_audit(iam, tx, "system", "identity.bootstrap_admin", "identity", id, false, NULL,
                      NULL, NULL, ei);
    if (!e)
        DCMS_LOG(DCMS_LOG_INFO, "iam", "created the bootstrap administrator %s", id);
out:
    dcms_store_rows_free(rows);
    e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, ei);
    if (e == DCMS_ERR_CONFLICT) { /* another node bootstrapped at the same time */
        dcms_errinfo_init(ei, NULL);
        e = DCMS_OK;
    }
    return e;
}
