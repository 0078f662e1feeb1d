/*
 * Every query of the contract service's tables (contracts,
 * contract_versions, contract_signatures), kept as data: the named
 * statements, the keyset-page statements built once per combination of
 * filters, and the row codec (ct_load, ct_row_from). No query here names
 * another module's table (tests/unit/test_table_owners.c checks it): the
 * parties' names a write returns are IAM's expression (dcms/iam.h). The
 * service logic is in contracts.c and contracts_sign.c.
 */
#include "dcms/clock.h"
#include "dcms/store.h"
#include "dcms/uuid.h"
#include "contracts/contracts_int.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#define COLS                                                                                       \
    "id, title, description, provider_id, consumer_id, status, terms, signatures, terms_hash, "    \
    "version, created_at, updated_at, terms_version, created_by, status_reason, effective_from, "  \
    "expires_at"
/* A written row as its answer shows it: COLS, then its parties' names (IAM's expression), so
 * no statement reads them after the write. ct_row_from tells the two apart by their count. */
#define COLS_NAMED                                                                                 \
    COLS ", " DCMS_IAM_NAME_OF_SQL("provider_id") ", " DCMS_IAM_NAME_OF_SQL("consumer_id")
#define NCOLS_NAMED 19

struct dcms_query ct_q_get = DCMS_QUERY("ct_get", "SELECT " COLS " FROM contracts WHERE id = $1");
/* Write paths lock the row first, so concurrent changes queue instead of failing late
 * (SQLite's BEGIN IMMEDIATE already serializes writers). */
struct dcms_query ct_q_get_lock =
    DCMS_QUERY2("ct_get_lock", "SELECT " COLS " FROM contracts WHERE id = $1",
                "SELECT " COLS " FROM contracts WHERE id = $1 FOR UPDATE");
struct dcms_query ct_q_insert = DCMS_QUERY(
    "ct_insert",
    "INSERT INTO contracts (id, title, description, provider_id, consumer_id, status, terms, "
    "signatures, terms_hash, version, created_at, updated_at, terms_version, created_by, "
    "effective_from, expires_at) VALUES ($1, $2, $3, $4, $5, 'draft', $6, '[]', $7, 1, $8, $8, 1, "
    "$9, $10, $11) RETURNING " COLS);
struct dcms_query ct_q_version_insert = DCMS_QUERY(
    "ct_version_insert",
    "INSERT INTO contract_versions (contract_id, terms_version, terms_hash, content, created_at, "
    "created_by) VALUES ($1, $2, $3, $4, $5, $6)");
struct dcms_query ct_q_update_content = DCMS_QUERY(
    "ct_update_content",
    "UPDATE contracts SET title = $2, description = $3, provider_id = $4, consumer_id = $5, "
    "terms = $6, terms_hash = $7, terms_version = $8, status = 'draft', status_reason = NULL, "
    "effective_from = $9, expires_at = $10, updated_at = $11, version = version + 1 "
    "WHERE id = $1 AND version = $12");
struct dcms_query ct_q_update_status =
    DCMS_QUERY("ct_update_status",
               "UPDATE contracts SET status = $2, status_reason = $3, updated_at = $4, "
               "version = version + 1 WHERE id = $1 AND version = $5 RETURNING " COLS_NAMED);
struct dcms_query ct_q_delete_sigs =
    DCMS_QUERY("ct_delete_sigs", "DELETE FROM contract_signatures WHERE contract_id = $1");
struct dcms_query ct_q_delete_versions =
    DCMS_QUERY("ct_delete_versions", "DELETE FROM contract_versions WHERE contract_id = $1");
struct dcms_query ct_q_delete =
    DCMS_QUERY("ct_delete", "DELETE FROM contracts WHERE id = $1 AND version = $2");
struct dcms_query ct_q_versions = DCMS_QUERY(
    "ct_versions", "SELECT terms_version, terms_hash, content, created_at, created_by FROM "
                   "contract_versions WHERE contract_id = $1 ORDER BY terms_version");
struct dcms_query ct_q_due = DCMS_QUERY2(
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

static struct dcms_query list_q[CT_LB_COUNT][CT_LF_COUNT];
static char list_sql[CT_LB_COUNT][CT_LF_COUNT][2][1024];
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
    if (flags & CT_LF_VIS) {
        id_param(u1, sizeof(u1), pg, n + 1);
        id_param(u2, sizeof(u2), pg, n + 2);
        sql_add(sql, " AND (provider_id IN (%s, %s) OR consumer_id IN (%s, %s))", u1, u2, u1, u2);
        n += 2;
    }
    if (branch != CT_LB_ALL) {
        id_param(u1, sizeof(u1), pg, ++n);
        sql_add(sql, " AND %s = %s", branch == CT_LB_PROVIDER ? "provider_id" : "consumer_id", u1);
    }
    if (flags & CT_LF_STATUS) {
        sql_add(sql,
                " AND (CASE WHEN status IN ('active', 'suspended') AND expires_at <= %s$%d%s "
                "THEN 'expired' ELSE status END) = %s$%d%s",
                pg ? "CAST(" : "", n + 2, pg ? " AS TIMESTAMPTZ)" : "", pg ? "CAST(" : "", n + 1,
                pg ? " AS TEXT)" : "");
        n += 2;
    }
    if (flags & CT_LF_Q)
        sql_add(sql, " AND title %s %s$%d%s ESCAPE '\\'", pg ? "ILIKE" : "LIKE", pg ? "CAST(" : "",
                ++n, pg ? " AS TEXT)" : "");
    if (flags & CT_LF_CURSOR) {
        id_param(u1, sizeof(u1), pg, ++n);
        sql_add(sql, " AND id < %s", u1);
    }
    sql_add(sql, " ORDER BY id DESC LIMIT %s$%d%s", pg ? "CAST(" : "", n + 1,
            pg ? " AS INTEGER)" : "");
}

static void list_init(void)
{
    static const char *const names[CT_LB_COUNT] = {"ct_list", "ct_list_provider",
                                                   "ct_list_consumer"};
    static char qnames[CT_LB_COUNT][CT_LF_COUNT][32];
    for (int b = 0; b < CT_LB_COUNT; b++) {
        for (int f = 0; f < CT_LF_COUNT; f++) {
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

void ct_row_from(const struct dcms_store_rows *rows, size_t i, struct ct_row *r, int64_t now_us)
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
    if ((r->named = dcms_store_rows_columns(rows) >= NCOLS_NAMED)) {
        r->provider_name = T(17);
        r->consumer_name = T(18);
    }
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

/* The contract in *rows, read by a statement that succeeded, into *r; 404 (rows freed) when
 * there is none. */
static enum dcms_err found(struct dcms_store_rows **rows, struct ct_row *r, struct dcms_errinfo *ei)
{
    if (dcms_store_rows_count(*rows) != 1) {
        dcms_store_rows_free(*rows);
        *rows = NULL;
        return dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "contract not found");
    }
    ct_row_from(*rows, 0, r, dcms_clock_now_us());
    return DCMS_OK;
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
    return e ? e : found(rows, r, ei);
}

enum dcms_err ct_load(struct dcms_store_tx *tx, const char *id, struct dcms_store_rows **rows,
                      struct ct_row *r, struct dcms_errinfo *ei)
{
    return load_with(&ct_q_get, tx, id, rows, r, ei);
}

enum dcms_err ct_load_locked(struct dcms_store_tx *tx, const char *id,
                             struct dcms_store_rows **rows, struct ct_row *r,
                             struct dcms_errinfo *ei)
{
    return load_with(&ct_q_get_lock, tx, id, rows, r, ei);
}

#define SIG_COLS                                                                                   \
    "id, side, signer_id, type, key_id, algorithm, signed_hash, terms_version, signed_at, "        \
    "evidence, voided_at, void_reason, audit_event_id"

struct dcms_query ct_q_sig_insert = DCMS_QUERY(
    "ct_sig_insert",
    "INSERT INTO contract_signatures (id, contract_id, terms_version, side, signer_id, type, "
    "key_id, algorithm, signed_hash, signed_at, evidence, audit_event_id) VALUES ($1, $2, $3, $4, "
    "$5, $6, $7, $8, $9, $10, $11, $12)");
struct dcms_query ct_q_sig_live =
    DCMS_QUERY("ct_sig_live", "SELECT " SIG_COLS " FROM contract_signatures WHERE contract_id = $1 "
                              "AND voided_at IS NULL ORDER BY signed_at, id");

enum dcms_err ct_load_live(struct dcms_store_tx *tx, const char *id, bool lock,
                           struct dcms_store_rows **rows, struct ct_row *r,
                           struct dcms_store_rows **live, struct dcms_errinfo *ei)
{
    *rows = *live = NULL;
    if (!id || !dcms_uuid_valid(id))
        return dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "contract not found");
    const struct dcms_store_val idv[] = {DCMS_VAL_TEXT(id)};
    struct dcms_store_stmt row = {lock ? &ct_q_get_lock : &ct_q_get, idv, 1, rows};
    struct dcms_store_stmt sigs = {&ct_q_sig_live, idv, 1, live};
    enum dcms_err e = dcms_store_exec_both(tx, &row, &sigs, ei);
    if (!e && (e = found(rows, r, ei))) {
        dcms_store_rows_free(*live);
        *live = NULL;
    }
    return e;
}

struct dcms_query ct_q_sig_all =
    DCMS_QUERY("ct_sig_all", "SELECT " SIG_COLS " FROM contract_signatures WHERE contract_id = $1 "
                             "ORDER BY signed_at, id");
struct dcms_query ct_q_sig_void =
    DCMS_QUERY("ct_sig_void", "UPDATE contract_signatures SET voided_at = $2, void_reason = $3 "
                              "WHERE contract_id = $1 AND voided_at IS NULL");
struct dcms_query ct_q_sig_mirror = DCMS_QUERY(
    "ct_sig_mirror", "UPDATE contracts SET signatures = $2 WHERE id = $1 RETURNING " COLS_NAMED);
/* A signature's one write of the contract row: its mirror, the time and the version. */
struct dcms_query ct_q_touch = DCMS_QUERY(
    "ct_touch", "UPDATE contracts SET signatures = $2, updated_at = $3, version = version + 1 "
                "WHERE id = $1 AND version = $4 RETURNING " COLS_NAMED);
struct dcms_query ct_q_version_hash =
    DCMS_QUERY("ct_version_hash", "SELECT terms_version, terms_hash FROM contract_versions "
                                  "WHERE contract_id = $1");

struct dcms_query *ct_list_query(int branch, int flags)
{
    pthread_once(&list_once, list_init);
    return &list_q[branch][flags];
}
