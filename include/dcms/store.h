/*
 * The store: one interface over SQLite (embedded default) and PostgreSQL.
 *
 * A store is opened from a URL ("sqlite:PATH", "postgres://..." or
 * "postgresql://...") with a pool of connections sized to the worker
 * threads. All access goes through transactions and named queries:
 *
 *     static struct dcms_query q_get = DCMS_QUERY("contract_get",
 *         "SELECT id, title FROM contracts WHERE id = $1");
 *     struct dcms_store_tx *tx;
 *     struct dcms_store_rows *rows;
 *     if ((e = dcms_store_begin(store, DCMS_TX_READ, &tx, ei))) return e;
 *     e = dcms_store_exec(tx, &q_get, (struct dcms_store_val[]){DCMS_VAL_TEXT(id)}, 1, &rows, ei);
 *     ...
 *     dcms_store_rows_free(rows);
 *     e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, ei);
 *
 * Parameters are written $1, $2, ... in both dialects and always bound,
 * never spliced into SQL. A query may carry per-backend SQL where the
 * dialects differ. Native errors map to enum dcms_err here: unique and
 * foreign-key violations → DCMS_ERR_CONFLICT, serialization failures and
 * deadlocks → DCMS_ERR_RETRY, a lost server → DCMS_ERR_UNAVAILABLE; native
 * text goes to the log only.
 *
 * Timestamps are bound and returned as RFC 3339 UTC text with microseconds
 * (dcms_time_format), whatever the backend stores.
 *
 * Thread-safety: the store is shared by all threads; a transaction belongs
 * to the thread that began it.
 */
#ifndef DCMS_STORE_H
#define DCMS_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "dcms/err.h"

struct dcms_store;
struct dcms_store_tx;
struct dcms_store_rows;

enum dcms_store_backend { DCMS_STORE_SQLITE, DCMS_STORE_PG };

/* A named query. `slot` is assigned by the store on first use; leave it 0. */
struct dcms_query {
    const char *name;
    const char *sql;        /* both dialects, unless overridden below */
    const char *sql_sqlite; /* NULL: use sql */
    const char *sql_pg;     /* NULL: use sql */
    int slot;
};

#define DCMS_QUERY(name, sql)                                                                      \
    {                                                                                              \
        (name), (sql), NULL, NULL, 0                                                               \
    }
#define DCMS_QUERY2(name, sqlite_sql, pg_sql)                                                      \
    {                                                                                              \
        (name), NULL, (sqlite_sql), (pg_sql), 0                                                    \
    }

enum dcms_val_type { DCMS_VT_NULL, DCMS_VT_TEXT, DCMS_VT_INT, DCMS_VT_BLOB };

/* A bound parameter; text is borrowed for the duration of the call. Small
 * binary values are stored as hex or base64 text, so both backends treat
 * them alike; bulk bytes (dataset segments) bind as DCMS_VT_BLOB into a
 * BLOB / bytea column and are read back with hex(col) / encode(col, 'hex'). */
struct dcms_store_val {
    enum dcms_val_type type;
    const void *ptr;
    size_t len;
    int64_t i;
};

#define DCMS_VAL_NULL ((struct dcms_store_val){DCMS_VT_NULL, NULL, 0, 0})
#define DCMS_VAL_TEXT(s) ((struct dcms_store_val){DCMS_VT_TEXT, (s), strlen(s), 0})
#define DCMS_VAL_TEXTN(s, n) ((struct dcms_store_val){DCMS_VT_TEXT, (s), (n), 0})
#define DCMS_VAL_BLOB(p, n) ((struct dcms_store_val){DCMS_VT_BLOB, (p), (n), 0})
#define DCMS_VAL_INT(v) ((struct dcms_store_val){DCMS_VT_INT, NULL, 0, (int64_t)(v)})

enum dcms_tx_mode {
    DCMS_TX_READ,  /* a consistent read-only snapshot */
    DCMS_TX_WRITE, /* takes the write lock up front on SQLite (BEGIN IMMEDIATE) */
};

struct dcms_store_opts {
    unsigned pool_size;  /* connections; 0 means 4 */
    unsigned timeout_ms; /* wait for a free connection / a locked database; 0 means 5000 */
};

/*
 * Opens the store and applies pending migrations (each in its own
 * transaction, recorded in schema_migrations; PostgreSQL serializes
 * concurrent starters with an advisory lock). Creates the SQLite file and
 * its directory (mode 0700) if needed. DCMS_ERR_CONFIG for a bad URL,
 * DCMS_ERR_UNAVAILABLE when the database cannot be reached.
 */
enum dcms_err dcms_store_open(const char *url, const struct dcms_store_opts *opts,
                              struct dcms_store **out, struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* Closes every connection. Transactions must be finished first. NULL is a no-op. */
void dcms_store_close(struct dcms_store *s);

enum dcms_store_backend dcms_store_backend(const struct dcms_store *s);
/* "sqlite" or "postgres". */
const char *dcms_store_backend_name(const struct dcms_store *s);

/* Round-trips to the database (SELECT 1); DCMS_ERR_UNAVAILABLE if it is unreachable. */
enum dcms_err dcms_store_ping(struct dcms_store *s, struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * True during a disk-full episode: a write failed with
 * DCMS_ERR_INSUFFICIENT_STORAGE and none has committed since (held for a few
 * seconds after the last failure; see store.c). /readyz reports it.
 */
bool dcms_store_read_only(struct dcms_store *s);

struct dcms_store_stats {
    unsigned pool_size, in_use;
    uint64_t acquired_total, wait_total, timeouts_total, reconnects_total;
};
void dcms_store_stats(struct dcms_store *s, struct dcms_store_stats *out);

/* Takes a connection from the pool and begins a transaction. */
enum dcms_err dcms_store_begin(struct dcms_store *s, enum dcms_tx_mode mode,
                               struct dcms_store_tx **out, struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* The store a transaction belongs to. */
struct dcms_store *dcms_store_tx_store(const struct dcms_store_tx *tx);
/* Commits and returns the connection; the tx is gone whatever the result. */
enum dcms_err dcms_store_commit(struct dcms_store_tx *tx, struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* Rolls back and returns the connection. NULL is a no-op. */
void dcms_store_rollback(struct dcms_store_tx *tx);

/*
 * Runs `q` with `n` parameters. When `rows` is non-NULL the whole result is
 * fetched into it (callers bound their queries with LIMIT); free it with
 * dcms_store_rows_free(). `affected` (may be NULL) receives the number of
 * rows changed by INSERT/UPDATE/DELETE.
 */
enum dcms_err dcms_store_exec(struct dcms_store_tx *tx, struct dcms_query *q,
                              const struct dcms_store_val *params, size_t n,
                              struct dcms_store_rows **rows, uint64_t *affected,
                              struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* One statement of dcms_store_exec_both: dcms_store_exec's arguments. */
struct dcms_store_stmt {
    struct dcms_query *q;
    const struct dcms_store_val *params;
    size_t n;
    struct dcms_store_rows **rows; /* may be NULL */
};

/*
 * Runs `a`, then `b`, in `tx` as two dcms_store_exec calls would, for
 * statements whose parameters do not depend on each other's results (a row
 * and the rows that hang off it); on PostgreSQL both go out in one round
 * trip. When `a` fails `b` does not run; on failure both *rows are NULL.
 */
enum dcms_err dcms_store_exec_both(struct dcms_store_tx *tx, const struct dcms_store_stmt *a,
                                   const struct dcms_store_stmt *b,
                                   struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * Runs `q`, a statement whose result nobody reads (an INSERT of an audit
 * event or of a history row), later: at the latest with the COMMIT. On
 * PostgreSQL it goes out in one round trip with the transaction's next
 * statement or its COMMIT (the parameters are copied now); on SQLite it
 * runs at once. Its failure is reported by the statement or the commit it
 * went out with, which then fails, and the transaction rolls back as usual.
 * A later statement of the same transaction sees what it wrote.
 */
enum dcms_err dcms_store_exec_later(struct dcms_store_tx *tx, struct dcms_query *q,
                                    const struct dcms_store_val *params, size_t n,
                                    struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * Says that the transaction's next statement is its last: nothing but
 * dcms_store_commit follows it when it succeeds (dcms_store_rollback when it
 * fails). On PostgreSQL the COMMIT then goes out with that statement, one
 * round trip for both: the statement fails if the commit does, and the
 * dcms_store_commit that follows only returns the connection. On SQLite it
 * changes nothing.
 */
void dcms_store_commit_with_next(struct dcms_store_tx *tx);

/*
 * A read transaction of one statement: begins, runs `q` into *rows (as
 * dcms_store_exec), and ends. On PostgreSQL a SELECT goes out alone, one
 * round trip and one statement (a transaction of its own, with one
 * snapshot); any other statement in a READ ONLY transaction, which refuses
 * a write.
 */
enum dcms_err dcms_store_read_one(struct dcms_store *s, struct dcms_query *q,
                                  const struct dcms_store_val *params, size_t n,
                                  struct dcms_store_rows **rows,
                                  struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * Runs `q` (a COUNT, MAX or single-row lookup) and reads the first column
 * of its first row as an integer into *out (0 for NULL). DCMS_ERR_NOT_FOUND,
 * with nothing recorded in `ei`, when the query returns no row: the caller
 * says what was missing. Other errors as dcms_store_exec.
 */
enum dcms_err dcms_store_exec_int(struct dcms_store_tx *tx, struct dcms_query *q,
                                  const struct dcms_store_val *params, size_t n, int64_t *out,
                                  struct dcms_errinfo *ei) DCMS_MUST_CHECK;

size_t dcms_store_rows_count(const struct dcms_store_rows *r);
size_t dcms_store_rows_columns(const struct dcms_store_rows *r);
/* NUL-terminated text of a cell, or NULL for SQL NULL. Valid until rows are freed. */
const char *dcms_store_rows_text(const struct dcms_store_rows *r, size_t row, size_t col);
/* Integer value of a cell (0 for NULL or non-numeric text). */
int64_t dcms_store_rows_int(const struct dcms_store_rows *r, size_t row, size_t col);
bool dcms_store_rows_is_null(const struct dcms_store_rows *r, size_t row, size_t col);
void dcms_store_rows_free(struct dcms_store_rows *r);

/*
 * One page of a keyset-paginated list, the shape every list route answers:
 * {"<key>": [item(rows, 0), ...], "next_cursor": c}, where c is the text of
 * column `cursor_col` of the last row when the page is full (as many rows
 * as `limit`, so there may be more), null otherwise. `item` returns a new
 * reference (NULL is skipped). Returns a new reference, NULL when out of
 * memory; `rows` stays the caller's.
 */
json_t *dcms_store_rows_page(const struct dcms_store_rows *rows, int64_t limit, size_t cursor_col,
                             const char *key,
                             json_t *(*item)(const struct dcms_store_rows *rows, size_t i));

#endif
