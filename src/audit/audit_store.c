/*
 * Audit queries. An audited write inserts its event into audit_pending,
 * touching no shared row; the sequencer moves a batch into audit_events
 * (audit_events_move: the database copies the rows, the sequencer sends
 * each one's seq and chain hashes), writes the tree nodes, advances
 * audit_head with a compare-and-set, and adds the signed tree head.
 */
#include <inttypes.h>

#include "audit/audit_int.h"
#include "dcms/clock.h"
#include "dcms/json.h"
#include "dcms/log.h"
#include "dcms/store.h"

#define EVENT_COLUMNS                                                                              \
    "seq, id, time, actor, action, resource_type, resource_id, outcome, details, client_ip, "      \
    "request_id, prev_hash, hash"

static json_t *text_or_null(const struct dcms_store_rows *r, size_t i, size_t col);

static struct dcms_query q_head =
    DCMS_QUERY("audit_head", "SELECT seq, hash FROM audit_head WHERE id = 1");

static struct dcms_query q_pending_insert =
    DCMS_QUERY2("audit_pending_insert",
                "INSERT INTO audit_pending (id, time, actor, action, resource_type, resource_id, "
                "outcome, details, client_ip, request_id) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                "INSERT INTO audit_pending (id, time, actor, action, resource_type, resource_id, "
                "outcome, details, client_ip, request_id) "
                "VALUES (CAST($1 AS UUID), CAST($2 AS TIMESTAMPTZ), $3, $4, $5, $6, $7, "
                "CAST($8 AS JSONB), $9, $10)");

static struct dcms_query q_pending_batch =
    DCMS_QUERY("audit_pending_batch",
               "SELECT pid, id, time, actor, action, resource_type, resource_id, outcome, details, "
               "client_ip, request_id FROM audit_pending ORDER BY pid LIMIT $1");

static struct dcms_query q_pending_max =
    DCMS_QUERY("audit_pending_max", "SELECT COALESCE(MAX(pid), 0) FROM audit_pending");

static struct dcms_query q_pending_upto = DCMS_QUERY(
    "audit_pending_upto", "SELECT COUNT(*) FROM (SELECT 1 FROM audit_pending WHERE pid <= $1 "
                          "LIMIT 1) AS p");

static struct dcms_query q_pending_oldest =
    DCMS_QUERY("audit_pending_oldest", "SELECT pid, time FROM audit_pending ORDER BY pid LIMIT 1");

static struct dcms_query q_pending_get =
    DCMS_QUERY2("audit_pending_get",
                "SELECT pid, id, time, actor, action, resource_type, resource_id, outcome, "
                "details, client_ip, request_id FROM audit_pending WHERE id = $1",
                "SELECT pid, id, time, actor, action, resource_type, resource_id, outcome, "
                "details, client_ip, request_id FROM audit_pending WHERE id = CAST($1 AS UUID)");

static struct dcms_query q_event_get =
    DCMS_QUERY2("audit_event_get", "SELECT " EVENT_COLUMNS " FROM audit_events WHERE id = $1",
                "SELECT " EVENT_COLUMNS " FROM audit_events WHERE id = CAST($1 AS UUID)");

/*
 * A batch moved from audit_pending into audit_events: $1 is a JSON array of
 * [pid, seq, prev_hash, hash], one per event sequenced. The events' contents
 * are copied by the database, so they never travel to the sequencer and
 * back; what the sequencer hashed is what it read, and pending rows are
 * never changed. PostgreSQL deletes and inserts in one statement; SQLite
 * inserts, then audit_store_events_move deletes.
 */
static struct dcms_query q_events_move = DCMS_QUERY2(
    "audit_events_move",
    "INSERT INTO audit_events (" EVENT_COLUMNS ") "
    "SELECT json_extract(m.value, '$[1]'), p.id, p.time, p.actor, p.action, p.resource_type, "
    "p.resource_id, p.outcome, json(p.details), p.client_ip, p.request_id, "
    "json_extract(m.value, '$[2]'), json_extract(m.value, '$[3]') "
    "FROM json_each($1) AS m JOIN audit_pending AS p ON p.pid = json_extract(m.value, '$[0]')",
    "WITH m AS (SELECT CAST(x->>0 AS BIGINT) AS pid, CAST(x->>1 AS BIGINT) AS seq, "
    "x->>2 AS prev_hash, x->>3 AS hash FROM jsonb_array_elements(CAST($1 AS JSONB)) AS x), "
    "moved AS (DELETE FROM audit_pending AS p USING m WHERE p.pid = m.pid RETURNING m.seq, p.id, "
    "p.time, p.actor, p.action, p.resource_type, p.resource_id, p.outcome, p.details, "
    "p.client_ip, p.request_id, m.prev_hash, m.hash) "
    "INSERT INTO audit_events (" EVENT_COLUMNS ") SELECT * FROM moved");

/* SQLite's second half of the move (exactly the rows sequenced: a lower pid committed after
 * the batch was read stays). */
static struct dcms_query q_pending_delete =
    DCMS_QUERY("audit_pending_delete", "DELETE FROM audit_pending WHERE pid IN "
                                       "(SELECT json_extract(value, '$[0]') FROM json_each($1))");

/* Complete subtrees, [[level, idx, hash], ...], in one statement. */
static struct dcms_query q_nodes_bulk = DCMS_QUERY2(
    "audit_nodes_bulk",
    "INSERT INTO audit_tree_nodes (level, idx, hash) SELECT json_extract(value, '$[0]'), "
    "json_extract(value, '$[1]'), json_extract(value, '$[2]') FROM json_each($1)",
    "INSERT INTO audit_tree_nodes (level, idx, hash) SELECT CAST(x->>0 AS INTEGER), "
    "CAST(x->>1 AS BIGINT), x->>2 FROM jsonb_array_elements(CAST($1 AS JSONB)) AS x");

/* Runs `q` with `v` as its one parameter, as JSON text. */
static enum dcms_err exec_json(struct dcms_store_tx *tx, struct dcms_query *q, const json_t *v,
                               struct dcms_errinfo *ei)
{
    char *text = dcms_json_dump(v, NULL);
    if (!text)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(text)};
    enum dcms_err e = dcms_store_exec(tx, q, p, 1, NULL, NULL, ei);
    free(text);
    return e;
}

enum dcms_err audit_store_events_move(struct dcms_store_tx *tx, const char *moves, size_t count,
                                      struct dcms_errinfo *ei)
{
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(moves)};
    uint64_t moved = 0, deleted = count; /* PostgreSQL deletes in the move itself */
    enum dcms_err e = dcms_store_exec(tx, &q_events_move, p, 1, NULL, &moved, ei);
    if (!e && dcms_store_backend(dcms_store_tx_store(tx)) != DCMS_STORE_PG)
        e = dcms_store_exec(tx, &q_pending_delete, p, 1, NULL, &deleted, ei);
    if (!e && (moved != count || deleted != count)) { /* only the sequencer deletes them */
        DCMS_LOG(DCMS_LOG_ERROR, "audit",
                 "sequencer: %zu events to move, %" PRIu64 " copied, %" PRIu64 " deleted", count,
                 moved, deleted);
        e = dcms_err_set(ei, DCMS_ERR_INTERNAL, NULL);
    }
    return e;
}

static struct dcms_query q_node_put = DCMS_QUERY(
    "audit_node_put", "INSERT INTO audit_tree_nodes (level, idx, hash) VALUES ($1, $2, $3)");

enum dcms_err audit_store_nodes_bulk(struct dcms_store_tx *tx, const json_t *nodes,
                                     struct dcms_errinfo *ei)
{
    if (dcms_store_backend(dcms_store_tx_store(tx)) == DCMS_STORE_PG)
        return exec_json(tx, &q_nodes_bulk, nodes, ei);
    enum dcms_err e = DCMS_OK;
    for (size_t i = 0; !e && i < json_array_size(nodes); i++) {
        const json_t *n = json_array_get(nodes, i);
        const char *hash = json_string_value(json_array_get(n, 2));
        struct dcms_store_val p[] = {DCMS_VAL_INT(json_integer_value(json_array_get(n, 0))),
                                     DCMS_VAL_INT(json_integer_value(json_array_get(n, 1))),
                                     hash ? DCMS_VAL_TEXT(hash) : DCMS_VAL_NULL};
        e = dcms_store_exec(tx, &q_node_put, p, 3, NULL, NULL, ei);
    }
    return e;
}

/* The sequencer is the head's only writer; the condition fences a deposed one. */
static struct dcms_query q_head_cas = DCMS_QUERY(
    "audit_head_cas", "UPDATE audit_head SET seq = $2, hash = $3 WHERE id = 1 AND seq = $1");

static struct dcms_query q_node_get =
    DCMS_QUERY("audit_node_get", "SELECT hash FROM audit_tree_nodes WHERE level = $1 AND idx = $2");

static struct dcms_query q_leaf_count = DCMS_QUERY(
    "audit_leaf_count", "SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_tree_nodes WHERE level = 0");

static struct dcms_query q_add_tree_head =
    DCMS_QUERY("audit_add_tree_head",
               "INSERT INTO audit_tree_heads (tree_size, root_hash, time, key_id, signature) "
               "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tree_size) DO NOTHING");

static struct dcms_query q_tree_heads_range =
    DCMS_QUERY("audit_tree_heads_range",
               "SELECT tree_size, root_hash, time, key_id, signature FROM audit_tree_heads "
               "WHERE tree_size >= $1 AND tree_size <= $2 ORDER BY tree_size LIMIT $3");

static struct dcms_query q_last_tree_head =
    DCMS_QUERY("audit_last_tree_head",
               "SELECT tree_size, root_hash, time, key_id, signature FROM audit_tree_heads "
               "ORDER BY tree_size DESC LIMIT 1");

/* Session-level, on the sequencer's own connection: held until it closes or dies. */
static struct dcms_query q_try_lock =
    DCMS_QUERY2("audit_seq_try_lock", "SELECT 1", "SELECT CAST(pg_try_advisory_lock($1) AS INT)");

static struct dcms_query q_holds_lock = DCMS_QUERY2(
    "audit_seq_holds_lock", "SELECT 1",
    "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() "
    "AND granted AND classid = 0 AND objid = $1 AND objsubid = 1");

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

enum dcms_err audit_store_pending_insert(struct dcms_store_tx *tx, const char *id, const char *time,
                                         const struct dcms_audit_event *ev,
                                         const char *details_text, struct dcms_errinfo *ei)
{
    struct dcms_store_val p[] = {
        DCMS_VAL_TEXT(id),
        DCMS_VAL_TEXT(time),
        DCMS_VAL_TEXT(ev->actor),
        DCMS_VAL_TEXT(ev->action),
        opt_text(ev->resource_type),
        opt_text(ev->resource_id),
        DCMS_VAL_TEXT(dcms_audit_outcome_str(ev->outcome)),
        DCMS_VAL_TEXT(details_text),
        opt_text(ev->client_ip),
        opt_text(ev->request_id),
    };
    return dcms_store_exec_later(tx, &q_pending_insert, p, 10, ei); /* with the COMMIT */
}

enum dcms_err audit_store_pending_batch(struct dcms_store_tx *tx, int64_t limit,
                                        struct dcms_store_rows **rows, struct dcms_errinfo *ei)
{
    struct dcms_store_val p[] = {DCMS_VAL_INT(limit)};
    return dcms_store_exec(tx, &q_pending_batch, p, 1, rows, NULL, ei);
}

enum dcms_err audit_store_pending_max(struct dcms_store_tx *tx, int64_t *pid,
                                      struct dcms_errinfo *ei)
{
    return dcms_store_exec_int(tx, &q_pending_max, NULL, 0, pid, ei);
}

enum dcms_err audit_store_pending_upto(struct dcms_store_tx *tx, int64_t pid, bool *any,
                                       struct dcms_errinfo *ei)
{
    struct dcms_store_val p[] = {DCMS_VAL_INT(pid)};
    int64_t n = 0;
    enum dcms_err e = dcms_store_exec_int(tx, &q_pending_upto, p, 1, &n, ei);
    *any = n > 0;
    return e;
}

enum dcms_err audit_store_pending_oldest(struct dcms_store *s, int64_t *pid, int64_t *time_us,
                                         struct dcms_errinfo *ei)
{
    struct dcms_store_rows *rows = NULL;
    *pid = *time_us = 0;
    enum dcms_err e = dcms_store_read_one(s, &q_pending_oldest, NULL, 0, &rows, ei);
    if (!e && dcms_store_rows_count(rows) == 1) {
        *pid = dcms_store_rows_int(rows, 0, 0);
        if (dcms_time_parse(dcms_store_rows_text(rows, 0, 1), time_us))
            e = dcms_err_set(ei, DCMS_ERR_INTERNAL, "a pending audit event has a malformed time");
    }
    dcms_store_rows_free(rows);
    return e;
}

enum dcms_err audit_store_head_cas(struct dcms_store_tx *tx, int64_t old_seq, int64_t seq,
                                   const char *hash, bool *ok, struct dcms_errinfo *ei)
{
    struct dcms_store_val p[] = {DCMS_VAL_INT(old_seq), DCMS_VAL_INT(seq), DCMS_VAL_TEXT(hash)};
    uint64_t n = 0;
    enum dcms_err e = dcms_store_exec(tx, &q_head_cas, p, 3, NULL, &n, ei);
    *ok = !e && n == 1;
    return e;
}

enum dcms_err audit_store_node_put(struct dcms_store_tx *tx, int level, int64_t idx,
                                   const unsigned char hash[AUDIT_HASH_LEN],
                                   struct dcms_errinfo *ei)
{
    char hex[65];
    dcms_hex_encode(hex, hash, AUDIT_HASH_LEN);
    struct dcms_store_val p[] = {DCMS_VAL_INT(level), DCMS_VAL_INT(idx), DCMS_VAL_TEXT(hex)};
    return dcms_store_exec(tx, &q_node_put, p, 3, NULL, NULL, ei);
}

enum dcms_err audit_store_node_get(void *ctx, int level, int64_t idx,
                                   unsigned char out[AUDIT_HASH_LEN], struct dcms_errinfo *ei)
{
    struct dcms_store_tx *tx = ctx;
    struct dcms_store_val p[] = {DCMS_VAL_INT(level), DCMS_VAL_INT(idx)};
    struct dcms_store_rows *rows;
    enum dcms_err e = dcms_store_exec(tx, &q_node_get, p, 2, &rows, NULL, ei);
    if (e)
        return e;
    bool ok =
        dcms_store_rows_count(rows) == 1 && audit_hex_decode(dcms_store_rows_text(rows, 0, 0), out);
    dcms_store_rows_free(rows);
    if (!ok)
        return dcms_err_set(ei, DCMS_ERR_INTERNAL, "audit tree node (%d, %lld) is missing or bad",
                            level, (long long)idx);
    return DCMS_OK;
}

enum dcms_err audit_store_leaf_count(struct dcms_store_tx *tx, int64_t *n, struct dcms_errinfo *ei)
{
    return dcms_store_exec_int(tx, &q_leaf_count, NULL, 0, n, ei);
}

enum dcms_err audit_store_add_tree_head(struct dcms_store_tx *tx, int64_t size, const char *root,
                                        const char *time, const char *key_id, const char *signature,
                                        struct dcms_errinfo *ei)
{
    struct dcms_store_val p[] = {DCMS_VAL_INT(size), DCMS_VAL_TEXT(root), DCMS_VAL_TEXT(time),
                                 DCMS_VAL_TEXT(key_id), DCMS_VAL_TEXT(signature)};
    return dcms_store_exec(tx, &q_add_tree_head, p, 5, NULL, NULL, ei);
}

static enum dcms_err tree_heads(struct dcms_store_tx *tx, struct dcms_query *q,
                                const struct dcms_store_val *p, size_t np, json_t *out,
                                struct dcms_errinfo *ei)
{
    struct dcms_store_rows *rows;
    enum dcms_err e = dcms_store_exec(tx, q, p, np, &rows, NULL, ei);
    if (e)
        return e;
    for (size_t i = 0; !e && i < dcms_store_rows_count(rows); i++) {
        json_t *th = json_pack("{s:I, s:o, s:o, s:o, s:o}", "tree_size",
                               (json_int_t)dcms_store_rows_int(rows, i, 0), "root_hash",
                               text_or_null(rows, i, 1), "time", text_or_null(rows, i, 2), "key_id",
                               text_or_null(rows, i, 3), "signature", text_or_null(rows, i, 4));
        if (!th || json_array_append_new(out, th))
            e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    }
    dcms_store_rows_free(rows);
    return e;
}

enum dcms_err audit_store_tree_heads_range(struct dcms_store_tx *tx, int64_t from, int64_t to,
                                           int64_t limit, json_t *out, struct dcms_errinfo *ei)
{
    struct dcms_store_val p[] = {DCMS_VAL_INT(from), DCMS_VAL_INT(to), DCMS_VAL_INT(limit)};
    return tree_heads(tx, &q_tree_heads_range, p, 3, out, ei);
}

enum dcms_err audit_store_last_tree_head(struct dcms_store_tx *tx, json_t **out,
                                         struct dcms_errinfo *ei)
{
    json_t *all = json_array();
    if (!all)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    enum dcms_err e = tree_heads(tx, &q_last_tree_head, NULL, 0, all, ei);
    *out = e ? NULL : json_incref(json_array_get(all, 0));
    json_decref(all);
    return e;
}

enum dcms_err audit_store_lock(struct dcms_store_tx *tx, int64_t key, bool try_take, bool *held,
                               struct dcms_errinfo *ei)
{
    struct dcms_store_val p[] = {DCMS_VAL_INT(key)};
    int64_t n = 0;
    enum dcms_err e = dcms_store_exec_int(
        tx, try_take ? &q_try_lock : &q_holds_lock, p,
        dcms_store_backend(dcms_store_tx_store(tx)) == DCMS_STORE_PG ? 1 : 0, &n, ei);
    *held = !e && n > 0;
    return e;
}

enum dcms_err audit_store_event_by_id(struct dcms_store_tx *tx, const char *id, json_t **event,
                                      bool *pending, struct dcms_errinfo *ei)
{
    *event = NULL;
    *pending = false;
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(id)};
    struct dcms_store_rows *rows;
    json_t *all = json_array();
    if (!all)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    enum dcms_err e = dcms_store_exec(tx, &q_event_get, p, 1, &rows, NULL, ei);
    if (!e) {
        e = audit_rows_to_events(rows, all, ei);
        dcms_store_rows_free(rows);
    }
    if (!e && json_array_size(all) == 0 &&
        !(e = dcms_store_exec(tx, &q_pending_get, p, 1, &rows, NULL, ei))) {
        if (dcms_store_rows_count(rows) == 1) {
            json_t *ev = audit_pending_row_event(rows, 0);
            if (!ev || json_array_append_new(all, ev))
                e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
            *pending = true;
        }
        dcms_store_rows_free(rows);
    }
    if (!e)
        *event = json_incref(json_array_get(all, 0));
    json_decref(all);
    return e;
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

/* Stored details text as JSON: integers stay integers for readers; only numbers beyond int64
 * need reals. The hash is the same either way: canonical JSON treats every number as a double. */
static json_t *details_of(const char *dt)
{
    json_t *details = NULL;
    if (!dt || (dcms_json_parse(dcms_str_from(dt), 0, &details, NULL) &&
                dcms_json_parse(dcms_str_from(dt), JSON_DECODE_INT_AS_REAL, &details, NULL)))
        details = json_null(); /* corrupted in the store: the hash check will say so */
    return details;
}

json_t *audit_pending_row_event(const struct dcms_store_rows *r, size_t i)
{
    json_t *ev = json_object();
    if (!ev)
        return NULL;
    static const char *const names[] = {
        "id",          "time",    "actor", "action",    "resource_type",
        "resource_id", "outcome", NULL,    "client_ip", "request_id"};
    for (size_t c = 1; c <= 10; c++)
        json_object_set_new(ev, c == 8 ? "details" : names[c - 1],
                            c == 8 ? details_of(dcms_store_rows_text(r, i, c))
                                   : text_or_null(r, i, c));
    return ev;
}

/* Appends the rows of an EVENT_COLUMNS query to `out` as event objects. */
enum dcms_err audit_rows_to_events(const struct dcms_store_rows *rows, json_t *out,
                                   struct dcms_errinfo *ei)
{
    for (size_t i = 0; i < dcms_store_rows_count(rows); i++) {
        json_t *details = details_of(dcms_store_rows_text(rows, i, 8));
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
