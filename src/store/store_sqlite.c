/*
 * SQLite backend: one connection per pool slot (the pool is sized to the
 * worker threads), WAL journal, foreign keys on, a busy timeout, and a cache
 * of prepared statements per connection indexed by query slot. Files are
 * opened through store_sqlite_vfs.c, which batches the WAL's writes.
 *
 * Checkpoints (copying the WAL back into the database file, with its two
 * fsyncs) run as a dcms_periodic job with a connection of its own: a
 * commit that leaves the WAL past CKPT_PAGES kicks it, instead of running
 * the checkpoint itself as SQLite's autocheckpoint would, on the request's
 * thread and, with store.c's one writer connection, in every writer's way.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "dcms/fs.h"
#include "dcms/log.h"
#include "dcms/periodic.h"
#include "store/store_int.h"

#define CKPT_PAGES 4000       /* WAL pages (4 KiB) past which a checkpoint is due */
#define CKPT_HARD_PAGES 16000 /* past which the committing writer checkpoints itself */

/* BEGIN, COMMIT and ROLLBACK, prepared once per connection like the queries. */
static const char *const control_sql[] = {"BEGIN DEFERRED", "BEGIN IMMEDIATE", "COMMIT",
                                          "ROLLBACK"};
#define NCONTROL (sizeof(control_sql) / sizeof(control_sql[0]))

struct sq_conn {
    sqlite3 *db;
    sqlite3_stmt *control[NCONTROL];
    sqlite3_stmt *stmts[STORE_MAX_QUERIES];
};

/* The checkpointer: a dcms_periodic job, kicked by the commit that makes a checkpoint due. */
#define CKPT_PERIOD_MS 60000 /* a run finds nothing due unless a commit kicked it */

struct sq_ckpt {
    struct dcms_periodic *job;
    atomic_bool due;
    pthread_mutex_t run_mu; /* held while a checkpoint runs: one at a time in the process */
    void *conn;             /* the checkpointer's own connection */
    _Atomic int last_log;   /* the WAL's frames when the last checkpoint ended */
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

/*
 * After every commit: wakes the checkpointer when CKPT_PAGES frames were
 * added since its last pass. (The WAL starts over from its first frame once
 * a checkpoint has copied all of it and no reader is still on it; until then
 * `pages` counts the frames already copied too.)
 */
static int sq_wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
    struct sq_ckpt *k = arg;
    if (pages >= CKPT_HARD_PAGES) {
        /*
         * Writers that never pause outrun the checkpointer: each of its passes
         * ends behind new frames, the WAL is never all copied, so it never
         * starts over and grows without bound (gigabytes in a minute of
         * bench_audit). This commit still holds the writers' connection, so no
         * writer of this process appends while it copies everything and waits
         * (the busy timeout) for the readers to leave the WAL, which lets the
         * next write start it over.
         */
        pthread_mutex_lock(&k->run_mu); /* the checkpointer's pass ends first */
        sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_RESTART, NULL, NULL);
        atomic_store(&k->last_log, 0);
        pthread_mutex_unlock(&k->run_mu);
        return SQLITE_OK;
    }
    int last = atomic_load(&k->last_log);
    if (pages - (pages < last ? 0 : last) >= CKPT_PAGES) {
        atomic_store(&k->due, true);
        dcms_periodic_kick(k->job);
    }
    return SQLITE_OK;
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
    if (s->be_state) /* replaces the autocheckpoint */
        sqlite3_wal_hook(c->db, sq_wal_hook, s->be_state);
    char *msg = NULL;
    rc = sqlite3_exec(c->db,
                      "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON; "
                      "PRAGMA synchronous=NORMAL; PRAGMA temp_store=MEMORY;",
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
    for (size_t i = 0; i < NCONTROL; i++)
        sqlite3_finalize(c->control[i]);
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
    for (size_t i = 0; i < NCONTROL; i++) {
        if (strcmp(sql, control_sql[i]) != 0)
            continue;
        /* SQLite ends the transaction itself on some errors (a full disk, out of memory):
         * nothing is left to roll back, and saying so would be a warning per request. */
        if (strcmp(sql, "ROLLBACK") == 0 && sqlite3_get_autocommit(c->db))
            return DCMS_OK;
        int rc = c->control[i] ? SQLITE_OK
                               : sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT,
                                                    &c->control[i], NULL);
        if (rc == SQLITE_OK) {
            rc = sqlite3_step(c->control[i]);
            sqlite3_reset(c->control[i]);
        }
        return rc == SQLITE_DONE || rc == SQLITE_OK ? DCMS_OK : map_error(c->db, rc, sql, ei);
    }
    int rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? DCMS_OK : map_error(c->db, rc, "statement", ei);
}

/* ---- the checkpointer ---- */

static void ckpt_run(void *arg)
{
    struct sq_ckpt *k = arg;
    struct sq_conn *c = k->conn;
    if (!atomic_exchange(&k->due, false))
        return;
    /* PASSIVE: copies what no reader still needs, and never waits for a lock. */
    int log = 0;
    pthread_mutex_lock(&k->run_mu);
    int rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, NULL);
    atomic_store(&k->last_log, log > 0 ? log : 0);
    pthread_mutex_unlock(&k->run_mu);
    /* Busy: the next pass copies it. Full: the writes' own failure is the episode's line. */
    if (rc != SQLITE_OK && (rc & 0xff) != SQLITE_BUSY && (rc & 0xff) != SQLITE_FULL)
        DCMS_LOG(DCMS_LOG_WARN, "store", "sqlite checkpoint failed: %s (%d)", sqlite3_errmsg(c->db),
                 sqlite3_extended_errcode(c->db));
}

static enum dcms_err sq_start(struct dcms_store *s, struct dcms_errinfo *ei)
{
    struct sq_ckpt *k = calloc(1, sizeof(*k));
    if (!k)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    enum dcms_err r = sq_connect(s, &k->conn, ei); /* before be_state: no hook on this one */
    if (r) {
        free(k);
        return r;
    }
    sqlite3_wal_autocheckpoint(((struct sq_conn *)k->conn)->db, 0);
    pthread_mutex_init(&k->run_mu, NULL);
    if ((r = dcms_periodic_start("sqlite checkpoints", CKPT_PERIOD_MS, ckpt_run, k, &k->job, ei))) {
        pthread_mutex_destroy(&k->run_mu);
        sq_disconnect(k->conn);
        free(k);
        return r;
    }
    s->be_state = k;
    return DCMS_OK;
}

/* After the pool's connections are closed: the checkpointer's is the last one. */
static void sq_stop(struct dcms_store *s)
{
    struct sq_ckpt *k = s->be_state;
    if (!k)
        return;
    dcms_periodic_stop(k->job);
    sq_disconnect(k->conn);
    pthread_mutex_destroy(&k->run_mu);
    free(k);
    s->be_state = NULL;
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

static enum dcms_err sq_exec(void *conn, bool read_only, bool last, struct dcms_query *q,
                             const char *sql, const struct dcms_store_val *params, size_t n,
                             struct dcms_store_rows **rows_out, uint64_t *affected,
                             struct dcms_errinfo *ei)
{
    (void)last; /* no round trips to save */
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
    .one_writer = true,
    .migration_lock = NULL, /* BEGIN IMMEDIATE already serializes */
    .connect = sq_connect,
    .disconnect = sq_disconnect,
    .start = sq_start,
    .stop = sq_stop,
    .repair = NULL,
    .broken = sq_broken,
    .exec_script = sq_exec_script,
    .exec = sq_exec,
};
