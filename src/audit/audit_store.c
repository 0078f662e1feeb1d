/*
 * Audit queries. Appends are a compare-and-set on audit_head: on PostgreSQL
 * one statement (the head UPDATE takes the row lock, and READ COMMITTED
 * re-checks the condition after waiting, so concurrent appenders from any
 * process serialize without forking the chain); on SQLite two statements
 * inside the BEGIN IMMEDIATE transaction that already serializes writers.
 */
#include "audit/audit_int.h"
#include "dcms/json.h"
#include "dcms/store.h"

#define EVENT_COLUMNS                                                                              \
    "seq, id, time, actor, action, resource_type, resource_id, outcome, details, client_ip, "      \
    "request_id, prev_hash, hash"

static struct dcms_query q_head =
    DCMS_QUERY("audit_head", "SELECT seq, hash FROM audit_head WHERE id = 1");

static struct dcms_query q_append_pg =
    DCMS_QUERY2("audit_append", NULL,
                "WITH h AS (UPDATE audit_head SET seq = $1, hash = $12 "
                "WHERE id = 1 AND seq = $1 - 1 AND hash = $11 RETURNING 1) "
                "INSERT INTO audit_events (" EVENT_COLUMNS ") "
                "SELECT $1, CAST($2 AS UUID), CAST($3 AS TIMESTAMPTZ), $4, $5, $6, $7, $8, "
                "CAST($9 AS JSONB), $10, $13, $11, $12 FROM h");

static struct dcms_query q_head_cas_sqlite = DCMS_QUERY2(
    "audit_head_cas",
    "UPDATE audit_head SET seq = $1, hash = $3 WHERE id = 1 AND seq = $1 - 1 AND hash = $2", NULL);

static struct dcms_query q_insert_sqlite =
    DCMS_QUERY2("audit_insert",
                "INSERT INTO audit_events (" EVENT_COLUMNS ") "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $13, $11, $12)",
                NULL);

static struct dcms_query q_add_checkpoint = DCMS_QUERY(
    "audit_add_checkpoint", "INSERT INTO audit_checkpoints (seq, hash, time, key_id, signature) "
                            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (seq) DO NOTHING");

static struct dcms_query q_last_checkpoint =
    DCMS_QUERY("audit_last_checkpoint", "SELECT COALESCE(MAX(seq), 0) FROM audit_checkpoints");

static struct dcms_query q_events_range =
    DCMS_QUERY("audit_events_range", "SELECT " EVENT_COLUMNS " FROM audit_events "
                                     "WHERE seq >= $1 AND seq <= $2 ORDER BY seq LIMIT $3");

static struct dcms_query q_checkpoints_range = DCMS_QUERY(
    "audit_checkpoints_range", "SELECT seq, hash, time, key_id, signature FROM audit_checkpoints "
                               "WHERE seq >= $1 AND seq <= $2 ORDER BY seq LIMIT $3");

#define LIST_WHERE(time_cast_open, time_cast_close)                                                \
    "SELECT " EVENT_COLUMNS " FROM audit_events WHERE "                                            \
    "(CAST($1 AS TEXT) IS NULL OR actor = CAST($1 AS TEXT)) AND "                                  \
    "(CAST($2 AS TEXT) IS NULL OR substr(action, 1, length(CAST($2 AS TEXT))) = CAST($2 AS "       \
    "TEXT)) "                                                                                      \
    "AND (CAST($3 AS TEXT) IS NULL OR resource_type = CAST($3 AS TEXT)) AND "                      \
    "(CAST($4 AS TEXT) IS NULL OR resource_id = CAST($4 AS TEXT)) AND "                            \
    "(CAST($5 AS TEXT) IS NULL OR outcome = CAST($5 AS TEXT)) AND "                                \
    "(CAST($6 AS TEXT) IS NULL OR time >= " time_cast_open "$6" time_cast_close ") AND "           \
    "(CAST($7 AS TEXT) IS NULL OR time < " time_cast_open "$7" time_cast_close ") AND "            \
    "(CAST($8 AS BIGINT) = 0 OR seq < CAST($8 AS BIGINT)) ORDER BY seq DESC LIMIT $9"

static struct dcms_query q_list =
    DCMS_QUERY2("audit_list", LIST_WHERE("", ""), LIST_WHERE("CAST(", " AS TIMESTAMPTZ)"));

enum dcms_err audit_store_head(struct dcms_store_tx *tx, int64_t *seq, char hash[65],
                               struct dcms_errinfo *ei)
{
    struct dcms_store_rows *rows;
    enum dcms_err e = dcms_store_exec(tx, &q_head, NULL, 0, &rows, NULL, ei);
    if (e)
        return e;
    const char *h = dcms_store_rows_text(rows, 0, 1);
    if (!h || strlen(h) != 64) {
        dcms_store_rows_free(rows);
        return dcms_err_set(ei, DCMS_ERR_INTERNAL, NULL);
    }
    *seq = dcms_store_rows_int(rows, 0, 0);
    memcpy(hash, h, 65);
    dcms_store_rows_free(rows);
    return DCMS_OK;
}

static struct dcms_store_val opt_text(const char *s)
{
    return s ? DCMS_VAL_TEXT(s) : DCMS_VAL_NULL;
}

enum dcms_err audit_store_append(struct dcms_store_tx *tx, int64_t seq, const char *id,
                                 const char *time, const struct dcms_audit_event *ev,
                                 const char *details_text, const char *prev_hash, const char *hash,
                                 bool *appended, struct dcms_errinfo *ei)
{
    struct dcms_store_val p[] = {
        DCMS_VAL_INT(seq),           DCMS_VAL_TEXT(id),
        DCMS_VAL_TEXT(time),         DCMS_VAL_TEXT(ev->actor),
        DCMS_VAL_TEXT(ev->action),   opt_text(ev->resource_type),
        opt_text(ev->resource_id),   DCMS_VAL_TEXT(dcms_audit_outcome_str(ev->outcome)),
        DCMS_VAL_TEXT(details_text), opt_text(ev->client_ip),
        DCMS_VAL_TEXT(prev_hash),    DCMS_VAL_TEXT(hash),
        opt_text(ev->request_id),
    };
    uint64_t n = 0;
    enum dcms_err e;
    *appended = false;
    if (dcms_store_backend(dcms_store_tx_store(tx)) == DCMS_STORE_PG) {
        if ((e = dcms_store_exec(tx, &q_append_pg, p, 13, NULL, &n, ei)))
            return e;
        *appended = n == 1;
        return DCMS_OK;
    }
    struct dcms_store_val cas[] = {DCMS_VAL_INT(seq), DCMS_VAL_TEXT(prev_hash),
                                   DCMS_VAL_TEXT(hash)};
    if ((e = dcms_store_exec(tx, &q_head_cas_sqlite, cas, 3, NULL, &n, ei)) || n != 1)
        return e;
    if ((e = dcms_store_exec(tx, &q_insert_sqlite, p, 13, NULL, &n, ei)))
        return e;
    *appended = n == 1;
    return DCMS_OK;
}

enum dcms_err audit_store_add_checkpoint(struct dcms_store_tx *tx, int64_t seq, const char *hash,
                                         const char *time, const char *key_id,
                                         const char *signature, struct dcms_errinfo *ei)
{
    struct dcms_store_val p[] = {DCMS_VAL_INT(seq), DCMS_VAL_TEXT(hash), DCMS_VAL_TEXT(time),
                                 DCMS_VAL_TEXT(key_id), DCMS_VAL_TEXT(signature)};
    return dcms_store_exec(tx, &q_add_checkpoint, p, 5, NULL, NULL, ei);
}

enum dcms_err audit_store_last_checkpoint(struct dcms_store_tx *tx, int64_t *seq,
                                          struct dcms_errinfo *ei)
{
    struct dcms_store_rows *rows;
    enum dcms_err e = dcms_store_exec(tx, &q_last_checkpoint, NULL, 0, &rows, NULL, ei);
    if (e)
        return e;
    *seq = dcms_store_rows_int(rows, 0, 0);
    dcms_store_rows_free(rows);
    return DCMS_OK;
}

static json_t *text_or_null(const struct dcms_store_rows *r, size_t i, size_t col)
{
    const char *t = dcms_store_rows_text(r, i, col);
    return t ? json_string(t) : json_null();
}

/* Appends the rows of an EVENT_COLUMNS query to `out` as event objects. */
enum dcms_err audit_rows_to_events(const struct dcms_store_rows *rows, json_t *out,
                                   struct dcms_errinfo *ei)
{
    for (size_t i = 0; i < dcms_store_rows_count(rows); i++) {
        const char *dt = dcms_store_rows_text(rows, i, 8);
        json_t *details = NULL;
        /* Integers stay integers for readers; only numbers beyond int64 need reals. The
         * hash is the same either way: canonical JSON treats every number as a double. */
        if (!dt || (dcms_json_parse(dcms_str_from(dt), 0, &details, NULL) &&
                    dcms_json_parse(dcms_str_from(dt), JSON_DECODE_INT_AS_REAL, &details, NULL)))
            details = json_null(); /* corrupted in the store: the hash check will say so */
        json_t *ev = json_object();
        if (!ev) {
            json_decref(details);
            return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
        }
        json_object_set_new(ev, "seq", json_integer(dcms_store_rows_int(rows, i, 0)));
        json_object_set_new(ev, "id", text_or_null(rows, i, 1));
        json_object_set_new(ev, "time", text_or_null(rows, i, 2));
        json_object_set_new(ev, "actor", text_or_null(rows, i, 3));
        json_object_set_new(ev, "action", text_or_null(rows, i, 4));
        json_object_set_new(ev, "resource_type", text_or_null(rows, i, 5));
        json_object_set_new(ev, "resource_id", text_or_null(rows, i, 6));
        json_object_set_new(ev, "outcome", text_or_null(rows, i, 7));
        json_object_set_new(ev, "details", details);
        json_object_set_new(ev, "client_ip", text_or_null(rows, i, 9));
        json_object_set_new(ev, "request_id", text_or_null(rows, i, 10));
        json_object_set_new(ev, "prev_hash", text_or_null(rows, i, 11));
        json_object_set_new(ev, "hash", text_or_null(rows, i, 12));
        if (json_array_append_new(out, ev))
            return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    }
    return DCMS_OK;
}

enum dcms_err audit_store_events_range(struct dcms_store_tx *tx, int64_t from, int64_t to,
                                       int64_t limit, json_t *out, struct dcms_errinfo *ei)
{
    struct dcms_store_val p[] = {DCMS_VAL_INT(from), DCMS_VAL_INT(to), DCMS_VAL_INT(limit)};
    struct dcms_store_rows *rows;
    enum dcms_err e = dcms_store_exec(tx, &q_events_range, p, 3, &rows, NULL, ei);
    if (e)
        return e;
    e = audit_rows_to_events(rows, out, ei);
    dcms_store_rows_free(rows);
    return e;
}

enum dcms_err audit_store_checkpoints_range(struct dcms_store_tx *tx, int64_t from, int64_t to,
                                            int64_t limit, json_t *out, struct dcms_errinfo *ei)
{
    struct dcms_store_val p[] = {DCMS_VAL_INT(from), DCMS_VAL_INT(to), DCMS_VAL_INT(limit)};
    struct dcms_store_rows *rows;
    enum dcms_err e = dcms_store_exec(tx, &q_checkpoints_range, p, 3, &rows, NULL, ei);
    if (e)
        return e;
    for (size_t i = 0; !e && i < dcms_store_rows_count(rows); i++) {
        json_t *cp = json_pack("{s:I, s:o, s:o, s:o, s:o}", "seq",
                               (json_int_t)dcms_store_rows_int(rows, i, 0), "hash",
                               text_or_null(rows, i, 1), "time", text_or_null(rows, i, 2), "key_id",
                               text_or_null(rows, i, 3), "signature", text_or_null(rows, i, 4));
        if (!cp || json_array_append_new(out, cp))
            e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    }
    dcms_store_rows_free(rows);
    return e;
}

enum dcms_err audit_store_list(struct dcms_store_tx *tx, const struct audit_filter *f, json_t *out,
                               struct dcms_errinfo *ei)
{
    struct dcms_store_val p[] = {
        opt_text(f->actor),       opt_text(f->action_prefix),  opt_text(f->resource_type),
        opt_text(f->resource_id), opt_text(f->outcome),        opt_text(f->since),
        opt_text(f->until),       DCMS_VAL_INT(f->before_seq), DCMS_VAL_INT(f->limit),
    };
    struct dcms_store_rows *rows;
    enum dcms_err e = dcms_store_exec(tx, &q_list, p, 9, &rows, NULL, ei);
    if (e)
        return e;
    e = audit_rows_to_events(rows, out, ei);
    dcms_store_rows_free(rows);
    return e;
}
