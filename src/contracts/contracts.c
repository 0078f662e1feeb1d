/*
 * The contract service: create, read, list (keyset pages), replace (with
 * If-Match), delete, the lifecycle transitions, the terms versions, the
 * expiry job, and the security view the enclave service reads. Every
 * change runs in one write transaction with its audit event; every
 * decision goes through dcms_iam_authorize() with the contract's parties,
 * and a caller who may not read a contract learns nothing of it (404).
 */
#include "dcms/app.h"
#include "dcms/arena.h"
#include "dcms/audit.h"
#include "dcms/clock.h"
#include "dcms/config.h"
#include "dcms/crypto.h"
#include "dcms/datasets.h"
#include "dcms/etag.h"
#include "dcms/json.h"
#include "dcms/jcs.h"
#include "dcms/log.h"
#include "dcms/periodic.h"
#include "dcms/store.h"
#include "dcms/uuid.h"
#include "contracts/contracts_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#define COLS                                                                                       \
    "id, title, description, provider_id, consumer_id, status, terms, signatures, terms_hash, "    \
    "version, created_at, updated_at, terms_version, created_by, status_reason, effective_from, "  \
    "expires_at"
#define EXPIRY_BATCH 200

static struct dcms_query q_get =
    DCMS_QUERY("ct_get", "SELECT " COLS " FROM contracts WHERE id = $1");
/* Write paths lock the row first, so concurrent changes queue instead of failing late
 * (SQLite's BEGIN IMMEDIATE already serializes writers). */
static struct dcms_query q_get_lock =
    DCMS_QUERY2("ct_get_lock", "SELECT " COLS " FROM contracts WHERE id = $1",
                "SELECT " COLS " FROM contracts WHERE id = $1 FOR UPDATE");
static struct dcms_query q_insert = DCMS_QUERY(
    "ct_insert",
    "INSERT INTO contracts (id, title, description, provider_id, consumer_id, status, terms, "
    "signatures, terms_hash, version, created_at, updated_at, terms_version, created_by, "
    "effective_from, expires_at) VALUES ($1, $2, $3, $4, $5, 'draft', $6, '[]', $7, 1, $8, $8, 1, "
    "$9, $10, $11)");
static struct dcms_query q_version_insert = DCMS_QUERY(
    "ct_version_insert",
    "INSERT INTO contract_versions (contract_id, terms_version, terms_hash, content, created_at, "
    "created_by) VALUES ($1, $2, $3, $4, $5, $6)");
static struct dcms_query q_update_content = DCMS_QUERY(
    "ct_update_content",
    "UPDATE contracts SET title = $2, description = $3, provider_id = $4, consumer_id = $5, "
    "terms = $6, terms_hash = $7, terms_version = $8, status = 'draft', status_reason = NULL, "
    "effective_from = $9, expires_at = $10, updated_at = $11, version = version + 1 "
    "WHERE id = $1 AND version = $12");
static struct dcms_query q_update_status = DCMS_QUERY(
    "ct_update_status", "UPDATE contracts SET status = $2, status_reason = $3, updated_at = $4, "
                        "version = version + 1 WHERE id = $1 AND version = $5");
static struct dcms_query q_delete_sigs =
    DCMS_QUERY("ct_delete_sigs", "DELETE FROM contract_signatures WHERE contract_id = $1");
static struct dcms_query q_delete_versions =
    DCMS_QUERY("ct_delete_versions", "DELETE FROM contract_versions WHERE contract_id = $1");
static struct dcms_query q_delete =
    DCMS_QUERY("ct_delete", "DELETE FROM contracts WHERE id = $1 AND version = $2");
static struct dcms_query q_versions = DCMS_QUERY(
    "ct_versions", "SELECT terms_version, terms_hash, content, created_at, created_by FROM "
                   "contract_versions WHERE contract_id = $1 ORDER BY terms_version");
static struct dcms_query q_due = DCMS_QUERY2(
    "ct_due",
    "SELECT id, version, status, expires_at FROM contracts WHERE status IN ('active', "
    "'suspended') AND expires_at <= $1 ORDER BY expires_at LIMIT $2",
    "SELECT id, version, status, expires_at FROM contracts WHERE status IN ('active', "
    "'suspended') AND expires_at <= CAST($1 AS TIMESTAMPTZ) ORDER BY expires_at LIMIT $2");

/*
 * Lists are newest first by id (UUIDv7). A page is read either over the
 * primary key (admins and auditors without a party or side) or along
 * (provider_id, id) / (consumer_id, id) for one party id at a time, so a
 * party's page is an index range scan however large the table is; ct_list
 * merges the branches. Each combination of filters has its own statement
 * (built once), holding only the conditions it needs: optional filters
 * written as "$n IS NULL OR ..." would hide the index from PostgreSQL's
 * generic plans and cost planning time on every call.
 */
enum { LB_ALL, LB_PROVIDER, LB_CONSUMER, LB_COUNT };
enum { LF_VIS = 1, LF_STATUS = 2, LF_Q = 4, LF_CURSOR = 8, LF_COUNT = 16 };

static struct dcms_query list_q[LB_COUNT][LF_COUNT];
static char list_sql[LB_COUNT][LF_COUNT][2][1024];
static pthread_once_t list_once = PTHREAD_ONCE_INIT;

/* Appends to a statement; the sizes above hold the longest combination. */
static void sql_add(char *sql, const char *fmt, ...) DCMS_PRINTF(2, 3);
static void sql_add(char *sql, const char *fmt, ...)
{
    size_t n = strlen(sql);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql + n, 1024 - n, fmt, ap);
    va_end(ap);
}

/* "$n" (SQLite) or "CAST($n AS UUID)" (PostgreSQL). */
static void id_param(char *out, size_t cap, bool pg, int n)
{
    if (pg)
        snprintf(out, cap, "CAST($%d AS UUID)", n);
    else
        snprintf(out, cap, "$%d", n);
}

/* Parameters, in this order when present: vis (me, org), party, status (status, now), q, cursor,
 * limit. */
static void list_build(int branch, int flags, bool pg, char *sql)
{
    char u1[32], u2[32];
    int n = 0;
    snprintf(sql, 1024, "SELECT " COLS " FROM contracts WHERE 1 = 1");
    if (flags & LF_VIS) {
        id_param(u1, sizeof(u1), pg, n + 1);
        id_param(u2, sizeof(u2), pg, n + 2);
        sql_add(sql, " AND (provider_id IN (%s, %s) OR consumer_id IN (%s, %s))", u1, u2, u1, u2);
        n += 2;
    }
    if (branch != LB_ALL) {
        id_param(u1, sizeof(u1), pg, ++n);
        sql_add(sql, " AND %s = %s", branch == LB_PROVIDER ? "provider_id" : "consumer_id", u1);
    }
    if (flags & LF_STATUS) {
        sql_add(sql,
                " AND (CASE WHEN status IN ('active', 'suspended') AND expires_at <= %s$%d%s "
                "THEN 'expired' ELSE status END) = %s$%d%s",
                pg ? "CAST(" : "", n + 2, pg ? " AS TIMESTAMPTZ)" : "", pg ? "CAST(" : "", n + 1,
                pg ? " AS TEXT)" : "");
        n += 2;
    }
    if (flags & LF_Q)
        sql_add(sql, " AND title %s %s$%d%s ESCAPE '\\'", pg ? "ILIKE" : "LIKE", pg ? "CAST(" : "",
                ++n, pg ? " AS TEXT)" : "");
    if (flags & LF_CURSOR) {
        id_param(u1, sizeof(u1), pg, ++n);
        sql_add(sql, " AND id < %s", u1);
    }
    sql_add(sql, " ORDER BY id DESC LIMIT %s$%d%s", pg ? "CAST(" : "", n + 1,
            pg ? " AS INTEGER)" : "");
}

static void list_init(void)
{
    static const char *const names[LB_COUNT] = {"ct_list", "ct_list_provider", "ct_list_consumer"};
    static char qnames[LB_COUNT][LF_COUNT][32];
    for (int b = 0; b < LB_COUNT; b++) {
        for (int f = 0; f < LF_COUNT; f++) {
            snprintf(qnames[b][f], sizeof(qnames[b][f]), "%s_%d", names[b], f);
            list_build(b, f, false, list_sql[b][f][0]);
            list_build(b, f, true, list_sql[b][f][1]);
            list_q[b][f] =
                (struct dcms_query)DCMS_QUERY2(qnames[b][f], list_sql[b][f][0], list_sql[b][f][1]);
        }
    }
}

static int64_t parse_i64(const char *s)
{
    return s ? strtoll(s, NULL, 10) : 0;
}

static void row_from(const struct dcms_store_rows *rows, size_t i, struct ct_row *r, int64_t now_us)
{
#define T(c) dcms_store_rows_text(rows, i, c)
    memset(r, 0, sizeof(*r));
    r->id = T(0);
    r->title = T(1);
    r->description = T(2);
    r->provider_id = T(3);
    r->consumer_id = T(4);
    r->status_text = T(5);
    r->terms = T(6);
    r->signatures = T(7);
    r->terms_hash = T(8);
    r->version = parse_i64(T(9));
    r->created_at = T(10);
    r->updated_at = T(11);
    r->terms_version = parse_i64(T(12));
    r->created_by = T(13);
    r->status_reason = T(14);
    r->effective_from = T(15) ? T(15) : "";
    r->expires_at = T(16) ? T(16) : "";
#undef T
    if (!ct_status_parse(r->status_text, &r->status))
        r->status = CT_TERMINATED; /* cannot happen: the schema checks the value */
    int64_t exp;
    if ((r->status == CT_ACTIVE || r->status == CT_SUSPENDED) && *r->expires_at &&
        !dcms_time_parse(r->expires_at, &exp) && exp <= now_us) {
        r->status = CT_EXPIRED;
        r->due_expiry = true;
    }
}

static enum dcms_err load_with(struct dcms_query *q, struct dcms_store_tx *tx, const char *id,
                               struct dcms_store_rows **rows, struct ct_row *r,
                               struct dcms_errinfo *ei)
{
    *rows = NULL;
    if (!id || !dcms_uuid_valid(id))
        return dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "contract not found");
    enum dcms_err e =
        dcms_store_exec(tx, q, (struct dcms_store_val[]){DCMS_VAL_TEXT(id)}, 1, rows, NULL, ei);
    if (e)
        return e;
    if (dcms_store_rows_count(*rows) != 1) {
        dcms_store_rows_free(*rows);
        *rows = NULL;
        return dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "contract not found");
    }
    row_from(*rows, 0, r, dcms_clock_now_us());
    return DCMS_OK;
}

enum dcms_err ct_load(struct dcms_store_tx *tx, const char *id, struct dcms_store_rows **rows,
                      struct ct_row *r, struct dcms_errinfo *ei)
{
    return load_with(&q_get, tx, id, rows, r, ei);
}

enum dcms_err ct_load_locked(struct dcms_store_tx *tx, const char *id,
                             struct dcms_store_rows **rows, struct ct_row *r,
                             struct dcms_errinfo *ei)
{
    return load_with(&q_get_lock, tx, id, rows, r, ei);
}

static json_t *parse_stored(const char *text)
{
    json_t *v = text ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;
    return v ? v : json_null();
}

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

json_t *ct_row_json(const struct ct_row *r)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:s, s:I, s:I, s:s, s:s, "
                     "s:s}",
                     "id", r->id, "title", r->title, "description", r->description, "provider_id",
                     r->provider_id, "consumer_id", r->consumer_id, "status",
                     ct_status_name(r->status), "status_reason", str_or_null(r->status_reason),
                     "terms", parse_stored(r->terms), "signatures", parse_stored(r->signatures),
                     "terms_hash", r->terms_hash, "version", (json_int_t)r->version,
                     "terms_version", (json_int_t)r->terms_version, "created_by", r->created_by,
                     "created_at", r->created_at, "updated_at", r->updated_at);
}

/* Appends `s` as a JSON string (quoted), or null. */
static enum dcms_err put_str(struct dcms_buf *b, const char *s)
{
    if (!s)
        return dcms_buf_appends(b, "null");
    enum dcms_err e = dcms_buf_append(b, "\"", 1);
    if (!e)
        e = dcms_buf_append_json_escaped(b, s, strlen(s));
    return e ? e : dcms_buf_append(b, "\"", 1);
}

enum dcms_err ct_row_render(const struct ct_row *r, struct dcms_buf *b)
{
    /* Same members, same order as ct_row_json(); the stored terms (canonical
     * JSON) and signatures (compact JSON written by this service) are copied
     * as they are instead of being parsed and printed again. */
    enum dcms_err e = dcms_buf_appends(b, "{\"id\":");
#define STR(k, v)                                                                                  \
    if (!e)                                                                                        \
        e = dcms_buf_appends(b, k);                                                                \
    if (!e)                                                                                        \
    e = put_str(b, v)
    if (!e)
        e = put_str(b, r->id);
    STR(",\"title\":", r->title);
    STR(",\"description\":", r->description);
    STR(",\"provider_id\":", r->provider_id);
    STR(",\"consumer_id\":", r->consumer_id);
    STR(",\"status\":", ct_status_name(r->status));
    STR(",\"status_reason\":", r->status_reason);
#undef STR
    if (!e)
        e = dcms_buf_appendf(b, ",\"terms\":%s,\"signatures\":%s,\"terms_hash\":",
                             r->terms && *r->terms ? r->terms : "null",
                             r->signatures && *r->signatures ? r->signatures : "[]");
    if (!e)
        e = put_str(b, r->terms_hash);
    if (!e)
        e = dcms_buf_appendf(b, ",\"version\":%lld,\"terms_version\":%lld,\"created_by\":",
                             (long long)r->version, (long long)r->terms_version);
    if (!e)
        e = put_str(b, r->created_by);
    if (!e)
        e = dcms_buf_appends(b, ",\"created_at\":");
    if (!e)
        e = put_str(b, r->created_at);
    if (!e)
        e = dcms_buf_appends(b, ",\"updated_at\":");
    if (!e)
        e = put_str(b, r->updated_at);
    return e ? e : dcms_buf_append(b, "}", 1);
}

bool ct_member_of(const struct dcms_principal *p, const char *party_id, unsigned role)
{
    if (!p || !party_id || !(p->roles & role))
        return false;
    return strcmp(p->id, party_id) == 0 || (p->org[0] && strcmp(p->org, party_id) == 0);
}

static struct dcms_iam_resource resource_of(const struct ct_row *r, const char *parties[2])
{
    parties[0] = r->provider_id;
    parties[1] = r->consumer_id;
    return (struct dcms_iam_resource){
        .type = "contract", .id = r->id, .parties = parties, .nparties = 2, .scoped = true};
}

enum dcms_err ct_authorize(const struct ct_call *c, const struct ct_row *r, const char *action)
{
    const char *parties[2];
    struct dcms_iam_resource res = resource_of(r, parties);
    struct dcms_iam_ctx ctx = {c->app->iam, c->client_ip};
    /* Someone who may not read a contract must not learn that it exists. */
    if (dcms_iam_authorize(c->p, "contracts:read", &res, &ctx, c->ei)) {
        if (c->hidden)
            *c->hidden = true;
        dcms_errinfo_init(c->ei, c->ei->arena);
        return dcms_err_set(c->ei, DCMS_ERR_NOT_FOUND, "contract not found");
    }
    if (strcmp(action, "contracts:read") == 0)
        return DCMS_OK;
    return dcms_iam_authorize(c->p, action, &res, &ctx, c->ei);
}

/* The "who" column of the state machine, after the role permission passed. */
static enum dcms_err check_who(const struct ct_call *c, const struct ct_row *r,
                               const struct ct_transition *t)
{
    bool admin = (c->p->roles & DCMS_ROLE_ADMIN) != 0;
    bool prov = ct_member_of(c->p, r->provider_id, DCMS_ROLE_PROVIDER);
    bool cons = ct_member_of(c->p, r->consumer_id, DCMS_ROLE_CONSUMER);
    if ((t->who & CT_BY_ADMIN) && admin)
        return DCMS_OK;
    if ((t->who & CT_BY_PARTY) && (prov || cons))
        return DCMS_OK;
    if ((t->who & CT_BY_PROVIDER) && prov)
        return DCMS_OK;
    const char *who = (t->who & CT_BY_PROVIDER) ? "the provider side or an administrator"
                      : (t->who & CT_BY_ADMIN)  ? "an authorised member of a party or an "
                                                  "administrator"
                                                : "an authorised member of a party";
    return dcms_err_set(c->ei, DCMS_ERR_FORBIDDEN, "only %s may %s this contract", who,
                        ct_op_name(t->op));
}

enum dcms_err ct_audit(const struct ct_call *c, struct dcms_store_tx *tx, const char *action,
                       const char *id, json_t *details)
{
    struct dcms_audit_who who = {c->p ? c->p->id : NULL, c->client_ip, c->request_id};
    return dcms_audit_change(c->app->audit, tx, &who, "contract", action, id, details, c->ei);
}

/* ---- input ---- */

struct ct_input {
    const char *title, *description, *provider_id, *consumer_id;
    json_t *terms; /* normalized, owned */
    int64_t from_us, to_us;
};

static const char *req_string(const json_t *b, const char *key, struct dcms_errinfo *ei,
                              bool required)
{
    const json_t *v = json_object_get(b, key);
    if (!v) {
        if (required)
            dcms_err_field(ei, key, "is required");
        return NULL;
    }
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)) {
        dcms_err_field(ei, key, "must be a string");
        return NULL;
    }
    return json_string_value(v);
}

/* Checks the body of POST and PUT; every problem is added to ei. */
static void decode_input(const json_t *b, struct ct_input *in, struct dcms_errinfo *ei)
{
    static const char *const keys[] = {"title",       "description", "provider_id",
                                       "consumer_id", "terms",       NULL};
    memset(in, 0, sizeof(*in));
    if (!json_is_object(b)) {
        dcms_err_field(ei, "", "must be a JSON object");
        return;
    }
    dcms_json_only_members(b, "", keys, ei);
    in->title = req_string(b, "title", ei, true);
    if (in->title && !ct_title_valid(in->title)) {
        dcms_err_field(ei, "title", "must be 1 to 255 characters without control characters");
        in->title = NULL;
    }
    in->description = req_string(b, "description", ei, false);
    if (in->description && strlen(in->description) > CT_DESCRIPTION_MAX)
        dcms_err_field(ei, "description", "must be at most %d bytes", CT_DESCRIPTION_MAX);
    if (!in->description)
        in->description = "";
    in->provider_id = req_string(b, "provider_id", ei, true);
    if (in->provider_id && !dcms_uuid_valid(in->provider_id)) {
        dcms_err_field(ei, "provider_id", "must be an identity id (UUID)");
        in->provider_id = NULL;
    }
    in->consumer_id = req_string(b, "consumer_id", ei, true);
    if (in->consumer_id && !dcms_uuid_valid(in->consumer_id)) {
        dcms_err_field(ei, "consumer_id", "must be an identity id (UUID)");
        in->consumer_id = NULL;
    }
    if (in->provider_id && in->consumer_id && strcasecmp(in->provider_id, in->consumer_id) == 0)
        dcms_err_field(ei, "consumer_id", "must differ from provider_id");
    const json_t *terms = json_object_get(b, "terms");
    if (!terms)
        dcms_err_field(ei, "terms", "is required");
    else
        ct_terms_validate(terms, dcms_clock_now_us(), &in->terms, &in->from_us, &in->to_us, ei);
}

/*
 * Both parties exist, are active, hold the role of their side and belong to
 * two different organizations (an organization belongs to itself; two
 * identities in no organization are different parties).
 */
static enum dcms_err check_parties(const struct ct_call *c, struct dcms_store_tx *tx,
                                   const struct ct_input *in)
{
    char org[2][DCMS_UUID_STRLEN] = {"", ""};
    const struct {
        const char *field, *id, *role_name;
        unsigned role;
    } sides[] = {{"provider_id", in->provider_id, "provider", DCMS_ROLE_PROVIDER},
                 {"consumer_id", in->consumer_id, "consumer", DCMS_ROLE_CONSUMER}};
    for (size_t i = 0; i < 2; i++) {
        if (!sides[i].id)
            continue;
        struct dcms_iam_party party;
        enum dcms_err e = dcms_iam_party_get(tx, sides[i].id, &party, c->ei);
        if (e == DCMS_ERR_NOT_FOUND)
            dcms_err_field(c->ei, sides[i].field, "is not a known identity");
        else if (e)
            return e;
        else if (strcmp(party.status, "active") != 0)
            dcms_err_field(c->ei, sides[i].field, "is not an active identity (it is %s)",
                           party.status);
        else if (!(party.roles & sides[i].role))
            dcms_err_field(c->ei, sides[i].field, "must hold the %s role", sides[i].role_name);
        else
            snprintf(org[i], sizeof(org[i]), "%s", party.org);
    }
    if (org[0][0] && strcasecmp(org[0], org[1]) == 0)
        dcms_err_field(c->ei, "consumer_id",
                       "is in the provider's organization (%s): the two sides of a contract "
                       "must be different organizations",
                       org[0]);
    return c->ei->code;
}

static enum dcms_err content_of(const struct ct_call *c, const char *id, const struct ct_input *in,
                                int64_t terms_version, char hex[65], char **canon_terms,
                                char **canon_content)
{
    json_t *content = ct_signed_content(id, in->provider_id, in->consumer_id, in->title,
                                        in->description, in->terms, terms_version);
    unsigned char raw[32];
    enum dcms_err e = ct_content_hash(content, raw, hex, c->ei);
    struct dcms_buf b1, b2;
    dcms_buf_init(&b1, 1u << 24);
    dcms_buf_init(&b2, 1u << 24);
    if (!e)
        e = dcms_jcs_canonicalize(in->terms, &b1, c->ei);
    if (!e)
        e = dcms_jcs_canonicalize(content, &b2, c->ei);
    json_decref(content);
    if (e) {
        dcms_buf_release(&b1);
        dcms_buf_release(&b2);
        return e;
    }
    *canon_terms = dcms_buf_detach(&b1, NULL);
    *canon_content = dcms_buf_detach(&b2, NULL);
    return DCMS_OK;
}

enum dcms_err ct_commit_answer(const struct ct_call *c, struct dcms_store_tx *tx, const char *id,
                               json_t **out)
{
    struct dcms_store_rows *rows = NULL;
    struct ct_row r;
    enum dcms_err e = ct_load(tx, id, &rows, &r, c->ei);
    e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, c->ei);
    if (!e && !(*out = ct_row_json(&r)))
        e = dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
    dcms_store_rows_free(rows);
    return e;
}

/* ---- create / read / list ---- */

enum dcms_err ct_create(const struct ct_call *c, const json_t *body, json_t **out)
{
    struct ct_input in;
    decode_input(body, &in, c->ei);
    enum dcms_err e = DCMS_OK;
    struct dcms_store_tx *tx = NULL;
    char *canon_terms = NULL, *canon_content = NULL;
    char id[DCMS_UUID_STRLEN], now[DCMS_TIME_STRLEN], from[DCMS_TIME_STRLEN], to[DCMS_TIME_STRLEN],
        hex[65];
    /* Only parties (or administrators) create a contract between them. */
    if (in.provider_id && in.consumer_id) {
        const char *parties[2] = {in.provider_id, in.consumer_id};
        struct dcms_iam_resource res = {
            .type = "contract", .parties = parties, .nparties = 2, .scoped = true};
        struct dcms_iam_ctx ctx = {c->app->iam, c->client_ip};
        struct dcms_errinfo tmp;
        dcms_errinfo_init(&tmp, c->ei->arena);
        if (dcms_iam_authorize(c->p, "contracts:create", &res, &ctx, &tmp)) {
            e = dcms_err_set(c->ei, DCMS_ERR_FORBIDDEN,
                             "contracts:create is not allowed: you may only create contracts "
                             "your identity or organization is a party to");
            goto out;
        }
    }
    if ((e = dcms_store_begin(c->app->store, DCMS_TX_WRITE, &tx, c->ei)))
        goto out;
    if ((e = check_parties(c, tx, &in)) || (e = c->ei->code))
        goto out;
    dcms_uuid_v7(id);
    dcms_time_format(dcms_clock_now_us(), now);
    dcms_time_format(in.from_us, from);
    dcms_time_format(in.to_us, to);
    if ((e = content_of(c, id, &in, 1, hex, &canon_terms, &canon_content)))
        goto out;
    e = dcms_store_exec(
        tx, &q_insert,
        (struct dcms_store_val[]){DCMS_VAL_TEXT(id), DCMS_VAL_TEXT(in.title),
                                  DCMS_VAL_TEXT(in.description), DCMS_VAL_TEXT(in.provider_id),
                                  DCMS_VAL_TEXT(in.consumer_id), DCMS_VAL_TEXT(canon_terms),
                                  DCMS_VAL_TEXT(hex), DCMS_VAL_TEXT(now), DCMS_VAL_TEXT(c->p->id),
                                  DCMS_VAL_TEXT(from), DCMS_VAL_TEXT(to)},
        11, NULL, NULL, c->ei);
    if (!e)
        e = dcms_store_exec(tx, &q_version_insert,
                            (struct dcms_store_val[]){DCMS_VAL_TEXT(id), DCMS_VAL_INT(1),
                                                      DCMS_VAL_TEXT(hex),
                                                      DCMS_VAL_TEXT(canon_content),
                                                      DCMS_VAL_TEXT(now), DCMS_VAL_TEXT(c->p->id)},
                            6, NULL, NULL, c->ei);
    if (!e)
        e = ct_audit(c, tx, "contract.create", id,
                     json_pack("{s:s, s:s, s:s, s:I, s:I, s:s}", "provider_id", in.provider_id,
                               "consumer_id", in.consumer_id, "status", "draft", "version",
                               (json_int_t)1, "terms_version", (json_int_t)1, "terms_hash", hex));
    if (!e) {
        e = ct_commit_answer(c, tx, id, out);
        tx = NULL;
    }
out:
    dcms_store_rollback(tx);
    free(canon_terms);
    free(canon_content);
    json_decref(in.terms);
    return e;
}

enum dcms_err ct_get(const struct ct_call *c, const char *id, struct ct_text *out)
{
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    struct ct_row r;
    enum dcms_err e = dcms_store_begin(c->app->store, DCMS_TX_READ, &tx, c->ei);
    if (e)
        return e;
    struct dcms_buf b;
    dcms_buf_init(&b, CT_RENDER_MAX);
    if (!(e = ct_load(tx, id, &rows, &r, c->ei)) && !(e = ct_authorize(c, &r, "contracts:read"))) {
        if ((e = ct_row_render(&r, &b)))
            e = dcms_err_set(c->ei, e, NULL);
        out->version = r.version;
    }
    dcms_store_rows_free(rows);
    dcms_store_rollback(tx);
    if (e) {
        dcms_buf_release(&b);
        return e;
    }
    out->body = dcms_buf_detach(&b, &out->len);
    return DCMS_OK;
}

static char *cursor_encode(const char *id)
{
    size_t n = strlen(id);
    char *b = malloc(dcms_b64_encoded_len(n));
    if (!b)
        return NULL;
    dcms_b64_encode(b, id, n);
    for (char *p = b; *p; p++) {
        if (*p == '+')
            *p = '-';
        else if (*p == '/')
            *p = '_';
        else if (*p == '=')
            *p = '\0';
    }
    return b;
}

static bool cursor_decode(const char *s, char out[DCMS_UUID_STRLEN])
{
    char tmp[64];
    size_t n = strlen(s);
    if (n == 0 || n >= sizeof(tmp))
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '+' || ch == '/' || ch == '=')
            return false;
        tmp[i] = ch == '-' ? '+' : ch == '_' ? '/' : ch;
    }
    unsigned char raw[48];
    size_t len = 0;
    if (dcms_b64_decode(raw, sizeof(raw) - 1, tmp, n, &len) || len != DCMS_UUID_STRLEN - 1)
        return false;
    memcpy(out, raw, len);
    out[len] = '\0';
    return dcms_uuid_valid(out);
}

enum dcms_err ct_list(const struct ct_call *c, const struct ct_list_in *in, struct ct_text *out)
{
    struct dcms_errinfo *ei = c->ei;
    enum ct_status st;
    if (in->status && !ct_status_parse(in->status, &st))
        dcms_err_field(ei, "status",
                       "must be draft, pending_signature, active, suspended, terminated or "
                       "expired");
    if (in->party && !dcms_uuid_valid(in->party))
        dcms_err_field(ei, "party", "must be an identity id (UUID)");
    if (in->role && strcmp(in->role, "provider") && strcmp(in->role, "consumer"))
        dcms_err_field(ei, "role", "must be provider or consumer");
    if (in->q && (strlen(in->q) < 1 || strlen(in->q) > 255))
        dcms_err_field(ei, "q", "must be 1 to 255 characters");
    char cursor[DCMS_UUID_STRLEN];
    if (in->cursor && !cursor_decode(in->cursor, cursor))
        dcms_err_field(ei, "cursor", "must be the next_cursor of the previous page");
    if (ei->code)
        return ei->code;
    bool all = (c->p->roles & (DCMS_ROLE_ADMIN | DCMS_ROLE_AUDITOR)) != 0;
    const char *me = c->p->id, *org = c->p->org[0] ? c->p->org : c->p->id;
    char *pattern = NULL;
    if (in->q) {
        size_t n = strlen(in->q);
        pattern = malloc(2 * n + 3);
        if (!pattern)
            return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
        char *w = pattern;
        *w++ = '%';
        for (size_t i = 0; i < n; i++) {
            if (in->q[i] == '%' || in->q[i] == '_' || in->q[i] == '\\')
                *w++ = '\\';
            *w++ = in->q[i];
        }
        *w++ = '%';
        *w = '\0';
    }
    char now[DCMS_TIME_STRLEN];
    dcms_time_format(dcms_clock_now_us(), now);
    pthread_once(&list_once, list_init);
    /*
     * The party ids whose index ranges hold the page, and on which sides:
     * `party` (or, without it, the caller's identity and organization), on
     * the side `role` names or on both. Without a party a non-privileged
     * caller's ids are the visibility rule itself; with one, visibility is
     * checked on top (LF_VIS).
     */
    const char *ids[2] = {NULL, NULL};
    if (in->party)
        ids[0] = in->party;
    else if (!all || in->role)
        ids[0] = me, ids[1] = strcmp(org, me) ? org : NULL;
    bool prov_side = !in->role || strcmp(in->role, "provider") == 0;
    bool cons_side = !in->role || strcmp(in->role, "consumer") == 0;
    int flags = (in->party && !all ? LF_VIS : 0) | (in->status ? LF_STATUS : 0) |
                (pattern ? LF_Q : 0) | (in->cursor ? LF_CURSOR : 0);
    struct dcms_store_rows *branch[4] = {NULL, NULL, NULL, NULL};
    size_t nb = 0;
    struct dcms_store_tx *tx = NULL;
    enum dcms_err e = dcms_store_begin(c->app->store, DCMS_TX_READ, &tx, ei);
    for (int side = LB_ALL; !e && side < LB_COUNT; side++) {
        if ((side == LB_ALL) != !ids[0] || (side == LB_PROVIDER && !prov_side) ||
            (side == LB_CONSUMER && !cons_side))
            continue;
        for (size_t i = 0; !e && i < (side == LB_ALL ? 1 : 2); i++) {
            if (side != LB_ALL && !ids[i])
                continue;
            struct dcms_store_val params[8];
            size_t np = 0;
            if (flags & LF_VIS) {
                params[np++] = DCMS_VAL_TEXT(me);
                params[np++] = DCMS_VAL_TEXT(org);
            }
            if (side != LB_ALL)
                params[np++] = DCMS_VAL_TEXT(ids[i]);
            if (flags & LF_STATUS) {
                params[np++] = DCMS_VAL_TEXT(in->status);
                params[np++] = DCMS_VAL_TEXT(now);
            }
            if (flags & LF_Q)
                params[np++] = DCMS_VAL_TEXT(pattern);
            if (flags & LF_CURSOR)
                params[np++] = DCMS_VAL_TEXT(cursor);
            params[np++] = DCMS_VAL_INT(in->limit + 1);
            e = dcms_store_exec(tx, &list_q[side][flags], params, np, &branch[nb++], NULL, ei);
        }
    }
    if (tx)
        dcms_store_rollback(tx);
    free(pattern);
    /* Merge the branches (each newest first) into one page, each contract once. */
    size_t pos[4] = {0, 0, 0, 0}, n = 0;
    const struct dcms_store_rows *pick_rows[201];
    size_t pick_idx[201];
    while (!e && n < (size_t)in->limit + 1) {
        int best = -1;
        for (size_t b = 0; b < nb; b++) {
            if (pos[b] >= dcms_store_rows_count(branch[b]))
                continue;
            const char *id = dcms_store_rows_text(branch[b], pos[b], 0);
            if (best < 0 || strcmp(id, dcms_store_rows_text(branch[best], pos[best], 0)) > 0)
                best = (int)b;
        }
        if (best < 0)
            break;
        const char *id = dcms_store_rows_text(branch[best], pos[best], 0);
        for (size_t b = 0; b < nb; b++) /* skip the same contract in the other branches */
            if ((int)b != best && pos[b] < dcms_store_rows_count(branch[b]) &&
                strcmp(dcms_store_rows_text(branch[b], pos[b], 0), id) == 0)
                pos[b]++;
        pick_rows[n] = branch[best];
        pick_idx[n++] = pos[best]++;
    }
    bool more = n > (size_t)in->limit;
    if (more)
        n = (size_t)in->limit;
    struct dcms_buf b;
    dcms_buf_init(&b, CT_RENDER_MAX * 201);
    if (!e)
        e = dcms_buf_appends(&b, "{\"contracts\":[");
    int64_t now_us = dcms_clock_now_us();
    for (size_t i = 0; !e && i < n; i++) {
        struct ct_row r;
        row_from(pick_rows[i], pick_idx[i], &r, now_us);
        if (i)
            e = dcms_buf_append(&b, ",", 1);
        if (!e)
            e = ct_row_render(&r, &b);
    }
    if (!e)
        e = dcms_buf_appends(&b, "],\"next_cursor\":");
    if (!e && more && n) {
        char *next = cursor_encode(dcms_store_rows_text(pick_rows[n - 1], pick_idx[n - 1], 0));
        e = next ? dcms_buf_appendf(&b, "\"%s\"}", next) : DCMS_ERR_NOMEM;
        free(next);
    } else if (!e) {
        e = dcms_buf_appends(&b, "null}");
    }
    for (size_t i = 0; i < nb; i++)
        dcms_store_rows_free(branch[i]);
    if (e) {
        dcms_buf_release(&b);
        return ei->code ? ei->code : dcms_err_set(ei, e, NULL);
    }
    out->body = dcms_buf_detach(&b, &out->len);
    out->version = 0;
    return DCMS_OK;
}

/* ---- changes ---- */

/* The one If-Match meaning (dcms/etag.h): `*` or the current ETag. */
static enum dcms_err if_match_ok(const struct ct_call *c, const struct ct_row *r,
                                 const char *if_match)
{
    char version[24];
    snprintf(version, sizeof(version), "%lld", (long long)r->version);
    return dcms_etag_check(if_match, version, c->ei);
}

/* Writes the new status with the row-version check; 412 when the row moved meanwhile. */
static enum dcms_err write_status(const struct ct_call *c, struct dcms_store_tx *tx,
                                  const struct ct_row *r, enum ct_status to, const char *reason,
                                  const char *now)
{
    uint64_t n = 0;
    enum dcms_err e = dcms_store_exec(
        tx, &q_update_status,
        (struct dcms_store_val[]){DCMS_VAL_TEXT(r->id), DCMS_VAL_TEXT(ct_status_name(to)),
                                  reason ? DCMS_VAL_TEXT(reason) : DCMS_VAL_NULL,
                                  DCMS_VAL_TEXT(now), DCMS_VAL_INT(r->version)},
        5, NULL, &n, c->ei);
    if (!e && n != 1)
        e = dcms_err_set(c->ei, DCMS_ERR_PRECONDITION_FAILED, "the contract changed meanwhile");
    return e;
}

enum dcms_err ct_update(const struct ct_call *c, const char *id, const json_t *body,
                        const char *if_match, json_t **out)
{
    struct ct_input in;
    struct dcms_store_tx *tx = NULL;
    struct dcms_store_rows *rows = NULL;
    char *canon_terms = NULL, *canon_content = NULL;
    enum dcms_err e;
    if (!if_match) {
        e = dcms_err_set(c->ei, DCMS_ERR_PRECONDITION_REQUIRED,
                         "If-Match is required: send the ETag of the version you edit");
        memset(&in, 0, sizeof(in));
        goto out;
    }
    decode_input(body, &in, c->ei);
    if ((e = c->ei->code))
        goto out;
    if ((e = dcms_store_begin(c->app->store, DCMS_TX_WRITE, &tx, c->ei)))
        goto out;
    struct ct_row r;
    if ((e = ct_load_locked(tx, id, &rows, &r, c->ei)) ||
        (e = ct_authorize(c, &r, "contracts:update")) ||
        (e = check_who(c, &r, ct_transition_of(CT_OP_EDIT))) ||
        (e = if_match_ok(c, &r, if_match)) ||
        (e = ct_transition_check(CT_OP_EDIT, r.status, c->ei)))
        goto out;
    /* The parties of a contract are fixed at creation: an edit changes the terms only. */
    if (strcasecmp(in.provider_id, r.provider_id) != 0)
        dcms_err_field(c->ei, "provider_id", "the parties of a contract are fixed at creation");
    if (strcasecmp(in.consumer_id, r.consumer_id) != 0)
        dcms_err_field(c->ei, "consumer_id", "the parties of a contract are fixed at creation");
    if ((e = c->ei->code))
        goto out;
    in.provider_id = r.provider_id; /* the stored spelling: what the parties sign */
    in.consumer_id = r.consumer_id;
    /* The caller must stay a party of what it writes (administrators excepted). */
    const char *parties[2] = {in.provider_id, in.consumer_id};
    struct dcms_iam_resource res = {
        .type = "contract", .id = id, .parties = parties, .nparties = 2, .scoped = true};
    struct dcms_iam_ctx ctx = {c->app->iam, c->client_ip};
    if (dcms_iam_authorize(c->p, "contracts:update", &res, &ctx, c->ei)) {
        e = dcms_err_set(c->ei, DCMS_ERR_FORBIDDEN,
                         "contracts:update is not allowed: the new parties must include you");
        goto out;
    }
    if ((e = check_parties(c, tx, &in)))
        goto out;
    char hex[65], now[DCMS_TIME_STRLEN], from[DCMS_TIME_STRLEN], to[DCMS_TIME_STRLEN];
    int64_t tv = r.terms_version + 1;
    if ((e = content_of(c, id, &in, r.terms_version, hex, &canon_terms, &canon_content)))
        goto out;
    if (strcmp(hex, r.terms_hash) == 0) {
        /* Nothing the parties sign changed: nothing to void, nothing to write. */
        e = ct_commit_answer(c, tx, id, out);
        tx = NULL;
        goto out;
    }
    free(canon_terms);
    free(canon_content);
    canon_terms = canon_content = NULL;
    if ((e = content_of(c, id, &in, tv, hex, &canon_terms, &canon_content)))
        goto out;
    dcms_time_format(dcms_clock_now_us(), now);
    dcms_time_format(in.from_us, from);
    dcms_time_format(in.to_us, to);
    uint64_t n = 0, voided = 0;
    e = dcms_store_exec(
        tx, &q_update_content,
        (struct dcms_store_val[]){DCMS_VAL_TEXT(id), DCMS_VAL_TEXT(in.title),
                                  DCMS_VAL_TEXT(in.description), DCMS_VAL_TEXT(in.provider_id),
                                  DCMS_VAL_TEXT(in.consumer_id), DCMS_VAL_TEXT(canon_terms),
                                  DCMS_VAL_TEXT(hex), DCMS_VAL_INT(tv), DCMS_VAL_TEXT(from),
                                  DCMS_VAL_TEXT(to), DCMS_VAL_TEXT(now), DCMS_VAL_INT(r.version)},
        12, NULL, &n, c->ei);
    if (!e && n != 1)
        e = dcms_err_set(c->ei, DCMS_ERR_PRECONDITION_FAILED, "the contract changed meanwhile");
    char reason[64];
    snprintf(reason, sizeof(reason), "terms edited (version %lld)", (long long)tv);
    if (!e)
        e = ct_signatures_void(tx, id, now, reason, &voided, c->ei);
    if (!e)
        e = ct_signatures_refresh(tx, id, now, c->ei);
    if (!e)
        e = dcms_store_exec(tx, &q_version_insert,
                            (struct dcms_store_val[]){DCMS_VAL_TEXT(id), DCMS_VAL_INT(tv),
                                                      DCMS_VAL_TEXT(hex),
                                                      DCMS_VAL_TEXT(canon_content),
                                                      DCMS_VAL_TEXT(now), DCMS_VAL_TEXT(c->p->id)},
                            6, NULL, NULL, c->ei);
    if (!e)
        e = ct_audit(c, tx, "contract.update", id,
                     json_pack("{s:I, s:I, s:I, s:I, s:s, s:s, s:s, s:s, s:I}", "from_version",
                               (json_int_t)r.version, "to_version", (json_int_t)r.version + 1,
                               "from_terms_version", (json_int_t)r.terms_version,
                               "to_terms_version", (json_int_t)tv, "from_terms_hash", r.terms_hash,
                               "to_terms_hash", hex, "from_status", ct_status_name(r.status),
                               "to_status", "draft", "signatures_voided", (json_int_t)voided));
    if (!e) {
        e = ct_commit_answer(c, tx, id, out);
        tx = NULL;
    }
out:
    dcms_store_rows_free(rows);
    free(canon_terms);
    free(canon_content);
    json_decref(in.terms);
    dcms_store_rollback(tx);
    return e;
}

enum dcms_err ct_delete(const struct ct_call *c, const char *id)
{
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_begin(c->app->store, DCMS_TX_WRITE, &tx, c->ei);
    if (e)
        return e;
    struct ct_row r;
    if ((e = ct_load_locked(tx, id, &rows, &r, c->ei)) ||
        (e = ct_authorize(c, &r, "contracts:delete")) ||
        (e = check_who(c, &r, ct_transition_of(CT_OP_DELETE))) ||
        (e = ct_transition_check(CT_OP_DELETE, r.status, c->ei)))
        goto out;
    uint64_t n = 0;
    struct dcms_store_val idv[] = {DCMS_VAL_TEXT(id)};
    if (!(e = dcms_store_exec(tx, &q_delete_sigs, idv, 1, NULL, NULL, c->ei)) &&
        !(e = dcms_store_exec(tx, &q_delete_versions, idv, 1, NULL, NULL, c->ei)))
        e = dcms_store_exec(tx, &q_delete,
                            (struct dcms_store_val[]){DCMS_VAL_TEXT(id), DCMS_VAL_INT(r.version)},
                            2, NULL, &n, c->ei);
    if (!e && n != 1)
        e = dcms_err_set(c->ei, DCMS_ERR_PRECONDITION_FAILED, "the contract changed meanwhile");
    if (!e)
        e = ct_audit(c, tx, "contract.delete", id,
                     json_pack("{s:I, s:s, s:s, s:I}", "from_version", (json_int_t)r.version,
                               "from_status", ct_status_name(r.status), "terms_hash", r.terms_hash,
                               "terms_version", (json_int_t)r.terms_version));
out:
    dcms_store_rows_free(rows);
    return e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, c->ei);
}

/*
 * Submit and activate: every UUID entry of terms.data_access.datasets must
 * name a ready dataset of the provider (dcms_datasets_check_for_contract).
 * The datasets service reads in a transaction of its own, so this runs with
 * no transaction held; `terms` is the stored terms text.
 */
static enum dcms_err check_datasets(const struct ct_call *c, const char *provider_id, json_t *terms)
{
    json_t *list = json_object_get(json_object_get(terms, "data_access"), "datasets");
    size_t n = json_array_size(list);
    if (!n)
        return DCMS_OK;
    const char **entries = calloc(n, sizeof(*entries));
    if (!entries)
        return dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
    for (size_t i = 0; i < n; i++)
        entries[i] = json_string_value(json_array_get(list, i));
    enum dcms_err e = dcms_datasets_check_for_contract(c->app, provider_id, entries, n, c->ei);
    free(entries);
    return e;
}

enum dcms_err ct_transition(const struct ct_call *c, const char *id, enum ct_op op,
                            const char *reason, json_t **out)
{
    const struct ct_transition *t = ct_transition_of(op);
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    bool datasets_checked = op != CT_OP_SUBMIT && op != CT_OP_ACTIVATE;
again:;
    enum dcms_err e = dcms_store_begin(c->app->store, DCMS_TX_WRITE, &tx, c->ei);
    if (e)
        return e;
    struct ct_row r;
    if ((e = ct_load_locked(tx, id, &rows, &r, c->ei)) ||
        (e = ct_authorize(c, &r, t->permission)) || (e = check_who(c, &r, t)) ||
        (e = ct_transition_check(op, r.status, c->ei)))
        goto out;
    int64_t now_us = dcms_clock_now_us();
    char now[DCMS_TIME_STRLEN];
    dcms_time_format(now_us, now);
    int64_t from_us = 0, to_us = 0;
    if (dcms_time_parse(r.effective_from, &from_us) || dcms_time_parse(r.expires_at, &to_us)) {
        e = dcms_err_set(c->ei, DCMS_ERR_INTERNAL, NULL);
        goto out;
    }
    if (op == CT_OP_SUBMIT && to_us <= now_us) {
        e = dcms_err_set(c->ei, DCMS_ERR_CONFLICT,
                         "terms.expires_at (%s) has passed; edit the contract first", r.expires_at);
        goto out;
    }
    if (op == CT_OP_ACTIVATE) {
        bool prov = false, cons = false;
        if ((e = ct_signatures_complete(tx, id, r.terms_hash, &prov, &cons, c->ei)))
            goto out;
        if (!prov || !cons) {
            e = dcms_err_set(c->ei, DCMS_ERR_CONFLICT,
                             "activation needs valid signatures of both sides over the current "
                             "terms; missing: %s",
                             !prov && !cons ? "provider and consumer"
                             : !prov        ? "provider"
                                            : "consumer");
            goto out;
        }
        if (from_us > now_us) {
            e = dcms_err_set(c->ei, DCMS_ERR_CONFLICT,
                             "terms.effective_from (%s) has not been reached", r.effective_from);
            goto out;
        }
    }
    if (!datasets_checked) {
        /* Checked with the write transaction released, then the transition is redone. */
        char provider[DCMS_UUID_STRLEN];
        snprintf(provider, sizeof(provider), "%s", r.provider_id);
        json_t *terms = json_loads(r.terms, 0, NULL);
        dcms_store_rows_free(rows);
        rows = NULL;
        dcms_store_rollback(tx);
        tx = NULL;
        e = terms ? check_datasets(c, provider, terms)
                  : dcms_err_set(c->ei, DCMS_ERR_INTERNAL, NULL);
        json_decref(terms);
        if (e)
            return e;
        datasets_checked = true;
        goto again;
    }
    if ((e = write_status(c, tx, &r, t->to, reason, now)))
        goto out;
    char action[48];
    snprintf(action, sizeof(action), "contract.%s", ct_op_name(op));
    json_t *d = json_pack("{s:s, s:s, s:I, s:I, s:s}", "from_status", ct_status_name(r.status),
                          "to_status", ct_status_name(t->to), "from_version", (json_int_t)r.version,
                          "to_version", (json_int_t)r.version + 1, "terms_hash", r.terms_hash);
    if (d && reason)
        json_object_set_new(d, "reason", json_string(reason));
    /* The services that follow contracts record their side in this transaction. */
    struct dcms_contract_change ch = {id,
                                      action,
                                      ct_status_name(r.status),
                                      ct_status_name(t->to),
                                      c->p ? c->p->id : NULL,
                                      c->client_ip,
                                      c->request_id};
    bool moved = r.status != t->to;
    if (!(e = ct_audit(c, tx, action, id, d)) &&
        !(moved && (e = ct_notify_record(c->app, tx, &ch, c->ei)))) {
        e = ct_commit_answer(c, tx, id, out);
        tx = NULL;
        if (!e && moved)
            ct_notify_committed(c->app, &ch);
    }
out:
    dcms_store_rows_free(rows);
    dcms_store_rollback(tx);
    return e;
}

enum dcms_err ct_versions(const struct ct_call *c, const char *id, json_t **out)
{
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL, *vrows = NULL;
    enum dcms_err e = dcms_store_begin(c->app->store, DCMS_TX_READ, &tx, c->ei);
    if (e)
        return e;
    struct ct_row r;
    if ((e = ct_load(tx, id, &rows, &r, c->ei)) || (e = ct_authorize(c, &r, "contracts:read")))
        goto out;
    if ((e = dcms_store_exec(tx, &q_versions, (struct dcms_store_val[]){DCMS_VAL_TEXT(id)}, 1,
                             &vrows, NULL, c->ei)))
        goto out;
    json_t *items = json_array();
    for (size_t i = 0; items && i < dcms_store_rows_count(vrows); i++) {
        json_array_append_new(items,
                              json_pack("{s:I, s:s, s:o, s:s, s:s, s:b}", "terms_version",
                                        (json_int_t)dcms_store_rows_int(vrows, i, 0), "terms_hash",
                                        dcms_store_rows_text(vrows, i, 1), "content",
                                        parse_stored(dcms_store_rows_text(vrows, i, 2)),
                                        "created_at", dcms_store_rows_text(vrows, i, 3),
                                        "created_by", dcms_store_rows_text(vrows, i, 4), "current",
                                        dcms_store_rows_int(vrows, i, 0) == r.terms_version));
    }
    *out = json_pack("{s:s, s:o}", "contract_id", r.id, "versions", items);
    if (!*out)
        e = dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
out:
    dcms_store_rows_free(vrows);
    dcms_store_rows_free(rows);
    dcms_store_rollback(tx);
    return e;
}

/* ---- expiry ---- */

enum dcms_err ct_expire_due(struct dcms_app *app, unsigned *count, struct dcms_errinfo *ei)
{
    *count = 0;
    struct ct_call c = {app, NULL, NULL, NULL, ei, NULL};
    for (int batch = 0; batch < 50; batch++) {
        char now[DCMS_TIME_STRLEN];
        dcms_time_format(dcms_clock_now_us(), now);
        struct dcms_store_tx *tx;
        struct dcms_store_rows *rows = NULL;
        enum dcms_err e = dcms_store_begin(app->store, DCMS_TX_WRITE, &tx, ei);
        if (e)
            return e;
        e = dcms_store_exec(
            tx, &q_due, (struct dcms_store_val[]){DCMS_VAL_TEXT(now), DCMS_VAL_INT(EXPIRY_BATCH)},
            2, &rows, NULL, ei);
        size_t n = e ? 0 : dcms_store_rows_count(rows);
        for (size_t i = 0; !e && i < n; i++) {
            struct ct_row r = {.id = dcms_store_rows_text(rows, i, 0),
                               .version = dcms_store_rows_int(rows, i, 1)};
            const char *from = dcms_store_rows_text(rows, i, 2);
            uint64_t changed = 0;
            e = dcms_store_exec(
                tx, &q_update_status,
                (struct dcms_store_val[]){DCMS_VAL_TEXT(r.id), DCMS_VAL_TEXT("expired"),
                                          DCMS_VAL_TEXT("expires_at reached"), DCMS_VAL_TEXT(now),
                                          DCMS_VAL_INT(r.version)},
                5, NULL, &changed, ei);
            if (!e && changed == 1)
                e = ct_audit(&c, tx, "contract.expire", r.id,
                             json_pack("{s:s, s:s, s:I, s:I, s:s}", "from_status", from,
                                       "to_status", "expired", "from_version",
                                       (json_int_t)r.version, "to_version",
                                       (json_int_t)r.version + 1, "expires_at",
                                       dcms_store_rows_text(rows, i, 3)));
            struct dcms_contract_change ch = {r.id, "contract.expire", from, "expired", NULL, NULL,
                                              NULL};
            if (!e && changed == 1)
                e = ct_notify_record(app, tx, &ch, ei);
            if (!e && changed == 1)
                (*count)++;
        }
        e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, ei);
        for (size_t i = 0; !e && i < n; i++) {
            struct dcms_contract_change ch = {dcms_store_rows_text(rows, i, 0),
                                              "contract.expire",
                                              dcms_store_rows_text(rows, i, 2),
                                              "expired",
                                              NULL,
                                              NULL,
                                              NULL};
            ct_notify_committed(app, &ch);
        }
        dcms_store_rows_free(rows);
        if (e)
            return e;
        if (n < EXPIRY_BATCH)
            break;
    }
    return DCMS_OK;
}

enum dcms_err dcms_contracts_open(struct dcms_app *app, struct dcms_contracts **out,
                                  struct dcms_errinfo *ei)
{
    struct dcms_contracts *ct = calloc(1, sizeof(*ct));
    if (!ct)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    ct->app = app;
    ct->expiry_interval_s = (unsigned)app->cfg->contract_expiry_interval_s;
    pthread_rwlock_init(&ct->listen_mu, NULL);
    enum dcms_err e = ct_expiry_start(ct, ei);
    if (e) {
        dcms_contracts_close(ct);
        return e;
    }
    *out = ct;
    return DCMS_OK;
}

void dcms_contracts_close(struct dcms_contracts *ct)
{
    if (!ct)
        return;
    dcms_periodic_stop(ct->expiry);
    pthread_rwlock_destroy(&ct->listen_mu);
    free(ct);
}

/* ---- what the enclave service reads ---- */

enum dcms_err dcms_contracts_security_of(struct dcms_app *app, const char *id,
                                         struct dcms_contract_security *out,
                                         struct dcms_errinfo *ei)
{
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    struct ct_row r;
    enum dcms_err e = dcms_store_begin(app->store, DCMS_TX_READ, &tx, ei);
    if (e)
        return e;
    if ((e = ct_load(tx, id, &rows, &r, ei)))
        goto out;
    memset(out, 0, sizeof(*out));
    snprintf(out->id, sizeof(out->id), "%s", r.id);
    snprintf(out->provider_id, sizeof(out->provider_id), "%s", r.provider_id);
    snprintf(out->consumer_id, sizeof(out->consumer_id), "%s", r.consumer_id);
    snprintf(out->status, sizeof(out->status), "%s", ct_status_name(r.status));
    json_t *terms = json_loads(r.terms, 0, NULL);
    json_t *sec = json_object_get(terms, "security");
    if (!sec || !dcms_security_level_parse(
                    json_string_value(json_object_get(sec, "encryption_level")), &out->level)) {
        json_decref(terms);
        e = dcms_err_set(ei, DCMS_ERR_INTERNAL, "contract %s has unreadable terms", id);
        goto out;
    }
    out->network_isolation = json_is_true(json_object_get(sec, "network_isolation"));
    out->audit_logging = json_is_true(json_object_get(sec, "audit_logging"));
    json_decref(terms);
out:
    dcms_store_rows_free(rows);
    dcms_store_rollback(tx);
    return e;
}
