/*
 * SQLite backend: one connection per pool slot (the pool is sized to the
 * worker threads), WAL journal, foreign keys on, a busy timeout, and a cache
 * of prepared statements per connection indexed by query slot. Files are
 * opened through store_sqlite_vfs.c, which batches the WAL's writes.
 */
#include <errno.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "dcms/fs.h"
#include "dcms/log.h"
#include "store/store_int.h"

struct sq_conn {
    sqlite3 *db;
    sqlite3_stmt *stmts[STORE_MAX_QUERIES];
};

static enum dcms_err map_error(sqlite3 *db, int rc, const char *what, struct dcms_errinfo *ei)
{
    int ext = sqlite3_extended_errcode(db);
    /* A full disk is logged once per episode by store.c, not once per statement. */
    if ((rc & 0xff) == SQLITE_FULL)
        return dcms_err_set(ei, DCMS_ERR_INSUFFICIENT_STORAGE, "the database disk is full");
    DCMS_LOG(DCMS_LOG_WARN, "store", "sqlite %s failed: %s (%d)", what, sqlite3_errmsg(db), ext);
    switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
        if (ext == SQLITE_CONSTRAINT_UNIQUE || ext == SQLITE_CONSTRAINT_PRIMARYKEY)
            return dcms_err_set(ei, DCMS_ERR_CONFLICT, "the resource already exists");
        if (ext == SQLITE_CONSTRAINT_FOREIGNKEY)
            return dcms_err_set(ei, DCMS_ERR_CONFLICT, "a referenced resource does not exist");
        return dcms_err_set(ei, DCMS_ERR_CONFLICT, "the change violates a constraint");
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return dcms_err_set(ei, DCMS_ERR_RETRY, NULL);
    case SQLITE_NOMEM:
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
        return dcms_err_set(ei, DCMS_ERR_IO, "the database could not be written");
    default:
        return dcms_err_set(ei, DCMS_ERR_INTERNAL, NULL);
    }
}

static enum dcms_err sq_connect(struct dcms_store *s, void **out, struct dcms_errinfo *ei)
{
    enum dcms_err r = dcms_fs_mkdirs_for(s->target, ei);
    if (r)
        return r;
    struct sq_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    int rc = sqlite3_open_v2(s->target, &c->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX |
                                 SQLITE_OPEN_EXRESCODE,
                             store_sqlite_vfs());
    if (rc != SQLITE_OK) {
        DCMS_LOG(DCMS_LOG_ERROR, "store", "cannot open sqlite database %s: %s", s->target,
                 c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
        sqlite3_close(c->db);
        free(c);
        return dcms_err_set(ei, DCMS_ERR_UNAVAILABLE, "cannot open the database");
    }
    (void)chmod(s->target, 0600);
    sqlite3_busy_timeout(c->db, (int)s->timeout_ms);
    char *msg = NULL;
    rc = sqlite3_exec(c->db,
                      "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON; "
                      "PRAGMA synchronous=NORMAL;",
                      NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        DCMS_LOG(DCMS_LOG_ERROR, "store", "sqlite setup failed: %s", msg ? msg : "?");
        sqlite3_free(msg);
        sqlite3_close(c->db);
        free(c);
        return dcms_err_set(ei, DCMS_ERR_UNAVAILABLE, "cannot open the database");
    }
    *out = c;
    return DCMS_OK;
}

static void sq_disconnect(void *conn)
{
    struct sq_conn *c = conn;
    for (int i = 0; i < STORE_MAX_QUERIES; i++)
        sqlite3_finalize(c->stmts[i]);
    sqlite3_close(c->db);
    free(c);
}

static bool sq_broken(void *conn)
{
    return false;
}

static enum dcms_err sq_exec_script(void *conn, const char *sql, struct dcms_errinfo *ei)
{
    struct sq_conn *c = conn;
    int rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? DCMS_OK : map_error(c->db, rc, "statement", ei);
}

static enum dcms_err bind_params(sqlite3_stmt *st, const struct dcms_store_val *params, size_t n,
                                 const char *qname, struct dcms_errinfo *ei)
{
    int count = sqlite3_bind_parameter_count(st);
    for (int i = 1; i <= count; i++) {
        const char *name = sqlite3_bind_parameter_name(st, i);
        char *end;
        long k = name && name[0] == '$' ? strtol(name + 1, &end, 10) : 0;
        if (k < 1 || (size_t)k > n || *end) {
            DCMS_LOG(DCMS_LOG_ERROR, "store", "query %s: parameter %s not bound", qname,
                     name ? name : "?");
            return dcms_err_set(ei, DCMS_ERR_INTERNAL, NULL);
        }
        const struct dcms_store_val *v = &params[k - 1];
        int rc;
        switch (v->type) {
        case DCMS_VT_TEXT:
            rc = sqlite3_bind_text64(st, i, v->ptr, v->len, SQLITE_STATIC, SQLITE_UTF8);
            break;
        case DCMS_VT_INT:
            rc = sqlite3_bind_int64(st, i, v->i);
            break;
        case DCMS_VT_BLOB:
            rc = sqlite3_bind_blob64(st, i, v->ptr ? v->ptr : "", v->len, SQLITE_STATIC);
            break;
        default:
            rc = sqlite3_bind_null(st, i);
        }
        if (rc != SQLITE_OK)
            return map_error(sqlite3_db_handle(st), rc, "bind", ei);
    }
    return DCMS_OK;
}

static enum dcms_err sq_exec(void *conn, bool read_only, struct dcms_query *q, const char *sql,
                             const struct dcms_store_val *params, size_t n,
                             struct dcms_store_rows **rows_out, uint64_t *affected,
                             struct dcms_errinfo *ei)
{
    struct sq_conn *c = conn;
    sqlite3_stmt *st = c->stmts[q->slot];
    if (!st) {
        int rc = sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL);
        if (rc != SQLITE_OK) {
            DCMS_LOG(DCMS_LOG_ERROR, "store", "cannot prepare %s: %s", q->name,
                     sqlite3_errmsg(c->db));
            return dcms_err_set(ei, DCMS_ERR_INTERNAL, NULL);
        }
        c->stmts[q->slot] = st;
    }
    if (read_only && !sqlite3_stmt_readonly(st)) {
        /* PostgreSQL refuses this itself (READ ONLY); SQLite needs telling. */
        DCMS_LOG(DCMS_LOG_ERROR, "store", "query %s writes in a read-only transaction", q->name);
        return dcms_err_set(ei, DCMS_ERR_INTERNAL, NULL);
    }
    struct dcms_store_rows *rows = NULL;
    enum dcms_err r = bind_params(st, params, n, q->name, ei);
    if (!r && rows_out && !(rows = dcms_store_rows_new((size_t)sqlite3_column_count(st))))
        r = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    while (!r) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
            break;
        if (rc != SQLITE_ROW) {
            r = map_error(c->db, rc, q->name, ei);
            break;
        }
        int ncols = sqlite3_column_count(st);
        for (int i = 0; rows && i < ncols && !r; i++) {
            const char *t = (const char *)sqlite3_column_text(st, i);
            if (!t && sqlite3_column_type(st, i) != SQLITE_NULL)
                r = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
            else if (dcms_store_rows_push(rows, t, t ? (size_t)sqlite3_column_bytes(st, i) : 0))
                r = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
        }
    }
    if (!r && affected) /* sqlite3_changes64 keeps the last write's count across SELECTs */
        *affected = sqlite3_stmt_readonly(st) ? 0 : (uint64_t)sqlite3_changes64(c->db);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (r) {
        dcms_store_rows_free(rows);
        return r;
    }
    if (rows) {
        dcms_store_rows_finish(rows);
        *rows_out = rows;
    }
    return DCMS_OK;
}

const struct store_backend dcms_store_sqlite_backend = {
    .name = "sqlite",
    .kind = DCMS_STORE_SQLITE,
    .migrations = dcms_migrations_sqlite,
    .begin_read = "BEGIN DEFERRED",
    .begin_write = "BEGIN IMMEDIATE",
    .migration_lock = NULL, /* BEGIN IMMEDIATE already serializes */
    .connect = sq_connect,
    .disconnect = sq_disconnect,
    .repair = NULL,
    .broken = sq_broken,
    .exec_script = sq_exec_script,
    .exec = sq_exec,
};
