/*
 * The store front end: picks the backend from the URL, keeps a pool of
 * connections sized to the worker threads, runs transactions and named
 * queries through the backend table, and applies the embedded migrations
 * at open.
 */
#include <errno.h>
#include <stdatomic.h>
#include <time.h>

#include "dcms/clock.h"
#include "dcms/log.h"
#include "store/store_int.h"

struct dcms_store_rows {
    size_t ncols, ncells, cap;
    size_t *offs; /* per cell: offset into data + 1, or 0 for NULL */
    const char **cells;
    char *data;
    size_t data_len, data_cap;
};

/* ---- named queries ---- */

static atomic_int next_slot = 1;

int dcms_store_query_slot(struct dcms_query *q)
{
    int slot = __atomic_load_n(&q->slot, __ATOMIC_ACQUIRE);
    if (slot)
        return slot;
    int fresh = atomic_fetch_add(&next_slot, 1);
    if (fresh >= STORE_MAX_QUERIES)
        return 0;
    int expected = 0;
    if (!__atomic_compare_exchange_n(&q->slot, &expected, fresh, false, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE))
        return expected; /* another thread won; its slot stands */
    return fresh;
}

/* ---- rows ---- */

struct dcms_store_rows *dcms_store_rows_new(size_t ncols)
{
    struct dcms_store_rows *r = calloc(1, sizeof(*r));
    if (r)
        r->ncols = ncols;
    return r;
}

enum dcms_err dcms_store_rows_push(struct dcms_store_rows *r, const char *p, size_t len)
{
    if (r->ncells == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        size_t *o = realloc(r->offs, cap * sizeof(*o));
        if (!o)
            return DCMS_ERR_NOMEM;
        r->offs = o;
        r->cap = cap;
    }
    if (!p) {
        r->offs[r->ncells++] = 0;
        return DCMS_OK;
    }
    if (r->data_len + len + 1 > r->data_cap) {
        size_t cap = r->data_cap ? r->data_cap : 256;
        while (cap < r->data_len + len + 1)
            cap *= 2;
        char *d = realloc(r->data, cap);
        if (!d)
            return DCMS_ERR_NOMEM;
        r->data = d;
        r->data_cap = cap;
    }
    memcpy(r->data + r->data_len, p, len);
    r->data[r->data_len + len] = '\0';
    r->offs[r->ncells++] = r->data_len + 1;
    r->data_len += len + 1;
    return DCMS_OK;
}

void dcms_store_rows_finish(struct dcms_store_rows *r)
{
    /* Reuse the offsets array in place: a pointer and a size_t have the same size. */
    _Static_assert(sizeof(size_t) == sizeof(char *), "pointer and size_t differ");
    r->cells = (const char **)(void *)r->offs;
    for (size_t i = 0; i < r->ncells; i++) {
        size_t o = r->offs[i];
        r->cells[i] = o ? r->data + o - 1 : NULL;
    }
}

size_t dcms_store_rows_count(const struct dcms_store_rows *r)
{
    return r && r->ncols ? r->ncells / r->ncols : 0;
}

size_t dcms_store_rows_columns(const struct dcms_store_rows *r)
{
    return r ? r->ncols : 0;
}

const char *dcms_store_rows_text(const struct dcms_store_rows *r, size_t row, size_t col)
{
    if (!r || col >= r->ncols || row >= dcms_store_rows_count(r))
        return NULL;
    return r->cells[row * r->ncols + col];
}

int64_t dcms_store_rows_int(const struct dcms_store_rows *r, size_t row, size_t col)
{
    const char *t = dcms_store_rows_text(r, row, col);
    return t ? strtoll(t, NULL, 10) : 0;
}

bool dcms_store_rows_is_null(const struct dcms_store_rows *r, size_t row, size_t col)
{
    return dcms_store_rows_text(r, row, col) == NULL;
}

void dcms_store_rows_free(struct dcms_store_rows *r)
{
    if (!r)
        return;
    free(r->offs);
    free(r->data);
    free(r);
}

/* ---- pool ---- */

/*
 * The entry a transaction of `mode` may take now, or NULL. With one writer,
 * entry 0 is the writers' and the others are the readers'. A writer that
 * has waited more than WRITER_STARVING_US (`starving`) is served before any
 * other: a thread that commits and at once begins again (the audit
 * sequencer under load, a bulk import) would otherwise take the entry back
 * every time before a woken waiter runs. Below that, whoever comes first
 * takes it, which keeps the lock passing without a context switch each
 * time (a strict queue ran 8 writer threads at a quarter of the rate).
 */
#define WRITER_STARVING_US 2000

/* The writers have an entry (and a condition variable) of their own. */
static bool writers_apart(const struct dcms_store *s)
{
    return s->be->one_writer && s->pool_size > 1;
}

static struct pool_entry *pool_free(struct dcms_store *s, enum dcms_tx_mode mode, bool starving)
{
    unsigned lo = 0, hi = s->pool_size;
    if (writers_apart(s)) {
        if (mode == DCMS_TX_WRITE)
            return !s->pool[0].busy && (starving || s->writers_starving == 0) ? &s->pool[0] : NULL;
        lo = 1;
    }
    for (unsigned i = lo; i < hi; i++)
        if (!s->pool[i].busy)
            return &s->pool[i];
    return NULL;
}

static enum dcms_err pool_acquire(struct dcms_store *s, enum dcms_tx_mode mode,
                                  struct pool_entry **out, struct dcms_errinfo *ei)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += s->timeout_ms / 1000;
    deadline.tv_nsec += (long)(s->timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    bool writer = writers_apart(s) && mode == DCMS_TX_WRITE;
    int64_t since = writer ? dcms_clock_mono_us() : 0;
    pthread_mutex_lock(&s->mu);
    bool waited = false, starving = false;
    struct pool_entry *e;
    while (!(e = pool_free(s, mode, starving))) {
        waited = true;
        if (pthread_cond_timedwait(writer ? &s->wcv : &s->cv, &s->mu, &deadline) == ETIMEDOUT &&
            !(e = pool_free(s, mode, true))) {
            if (starving)
                s->writers_starving--;
            s->timeouts_total++;
            /* It may have been this one's turn: pass it on. */
            pthread_cond_signal(writer ? &s->wcv : &s->cv);
            pthread_mutex_unlock(&s->mu);
            DCMS_LOG(DCMS_LOG_WARN, "store", "no free connection after %u ms", s->timeout_ms);
            return dcms_err_set(ei, DCMS_ERR_UNAVAILABLE, "the database is busy, try again");
        }
        if (e)
            break;
        if (writer && !starving && dcms_clock_mono_us() - since > WRITER_STARVING_US) {
            starving = true;
            s->writers_starving++;
        }
    }
    if (starving)
        s->writers_starving--;
    e->busy = true;
    s->in_use++;
    s->acquired_total++;
    if (waited)
        s->wait_total++;
    pthread_mutex_unlock(&s->mu);
    *out = e;
    return DCMS_OK;
}

static void pool_release(struct dcms_store *s, struct pool_entry *e)
{
    pthread_mutex_lock(&s->mu);
    e->busy = false;
    s->in_use--;
    /* One waiter is enough (waking them all costs a context switch each, per commit), but
     * while a writer is starving only it may take the entry: wake them all then. */
    bool writers = writers_apart(s) && e == &s->pool[0];
    if (writers && s->writers_starving)
        pthread_cond_broadcast(&s->wcv);
    else
        pthread_cond_signal(writers ? &s->wcv : &s->cv);
    pthread_mutex_unlock(&s->mu);
}

void dcms_store_note_reconnect(struct dcms_store *s)
{
    pthread_mutex_lock(&s->mu);
    s->reconnects_total++;
    pthread_mutex_unlock(&s->mu);
}

void dcms_store_stats(struct dcms_store *s, struct dcms_store_stats *out)
{
    pthread_mutex_lock(&s->mu);
    out->pool_size = s->pool_size;
    out->in_use = s->in_use;
    out->acquired_total = s->acquired_total;
    out->wait_total = s->wait_total;
    out->timeouts_total = s->timeouts_total;
    out->reconnects_total = s->reconnects_total;
    pthread_mutex_unlock(&s->mu);
}

/* ---- disk full ---- */

/*
 * A write that fails for want of space starts an episode: one log line, and
 * dcms_store_read_only is true until a write commits again or, with no
 * write since, STORE_FULL_HOLD_MS after the last failure (so a node taken
 * out of rotation by /readyz comes back by itself and the next write
 * decides). The episode's end is logged once too.
 */
#define STORE_FULL_HOLD_MS 5000

static enum dcms_err storage_note(struct dcms_store *s, enum dcms_err r)
{
    if (r != DCMS_ERR_INSUFFICIENT_STORAGE)
        return r;
    int64_t now = dcms_clock_mono_us(), zero = 0;
    atomic_store(&s->full_last_us, now);
    if (atomic_compare_exchange_strong(&s->full_since_us, &zero, now))
        DCMS_LOG(DCMS_LOG_ERROR, "store",
                 "the database disk is full: writes are refused with 507 and /readyz says "
                 "read_only until space is freed");
    return r;
}

static void storage_ok(struct dcms_store *s)
{
    int64_t since = atomic_load(&s->full_since_us);
    if (since && atomic_compare_exchange_strong(&s->full_since_us, &since, 0))
        DCMS_LOG(DCMS_LOG_INFO, "store", "writes succeed again after %.1f s of a full disk",
                 (double)(dcms_clock_mono_us() - since) / 1e6);
}

bool dcms_store_read_only(struct dcms_store *s)
{
    if (!atomic_load(&s->full_since_us))
        return false;
    return dcms_clock_mono_us() - atomic_load(&s->full_last_us) < STORE_FULL_HOLD_MS * 1000;
}

/* ---- transactions ---- */

/* A connection found broken is repaired before use; a repaired one that fails again is not. */
static enum dcms_err begin_on(struct dcms_store *s, struct pool_entry *e, enum dcms_tx_mode mode,
                              struct dcms_errinfo *ei)
{
    const char *sql = mode == DCMS_TX_WRITE ? s->be->begin_write : s->be->begin_read;
    if (s->be->broken(e->conn)) {
        enum dcms_err r = s->be->repair(s, e->conn, ei);
        if (r)
            return r;
    }
    /* The only backend that repairs (PostgreSQL) sends BEGIN with the transaction's first
     * statement, and retries both on a fresh connection there when the server had dropped
     * this one (store_pg.c): the BEGIN itself cannot find it broken. */
    return s->be->exec_script(e->conn, sql, ei);
}

enum dcms_err dcms_store_begin(struct dcms_store *s, enum dcms_tx_mode mode,
                               struct dcms_store_tx **out, struct dcms_errinfo *ei)
{
    struct pool_entry *e = NULL;
    enum dcms_err r = pool_acquire(s, mode, &e, ei);
    if (r)
        return r;
    if ((r = begin_on(s, e, mode, ei))) {
        pool_release(s, e);
        return storage_note(s, r);
    }
    e->read_only = mode == DCMS_TX_READ;
    e->end_next = false;
    e->tx.store = s;
    e->tx.entry = e;
    *out = &e->tx;
    return DCMS_OK;
}

struct dcms_store *dcms_store_tx_store(const struct dcms_store_tx *tx)
{
    return tx->store;
}

enum dcms_err dcms_store_commit(struct dcms_store_tx *tx, struct dcms_errinfo *ei)
{
    struct dcms_store *s = tx->store;
    struct pool_entry *e = tx->entry;
    enum dcms_err r = s->fail_commit
                          ? dcms_err_set(ei, s->fail_commit, "commit failed (injected fault)")
                          : s->be->exec_script(e->conn, "COMMIT", ei);
    if (r && !s->be->broken(e->conn))
        (void)s->be->exec_script(e->conn, "ROLLBACK", NULL);
    else if (!r && !e->read_only)
        storage_ok(s);
    pool_release(s, e);
    return storage_note(s, r);
}

void dcms_store_rollback(struct dcms_store_tx *tx)
{
    if (!tx)
        return;
    struct dcms_store *s = tx->store;
    struct pool_entry *e = tx->entry;
    if (!s->be->broken(e->conn))
        (void)s->be->exec_script(e->conn, "ROLLBACK", NULL);
    pool_release(s, e);
}

/* The query's SQL for the store's backend, its slot given; NULL (logged) when it cannot run. */
static const char *query_sql(const struct store_backend *be, struct dcms_query *q)
{
    const char *sql = be->kind == DCMS_STORE_PG ? q->sql_pg : q->sql_sqlite;
    if (!sql)
        sql = q->sql;
    if (!sql) {
        DCMS_LOG(DCMS_LOG_ERROR, "store", "query %s has no SQL for %s", q->name, be->name);
        return NULL;
    }
    if (!dcms_store_query_slot(q)) {
        DCMS_LOG(DCMS_LOG_ERROR, "store", "too many named queries (limit %d)", STORE_MAX_QUERIES);
        return NULL;
    }
    return sql;
}

static enum dcms_err run(struct dcms_store_tx *tx, bool last, struct dcms_query *q,
                         const struct dcms_store_val *params, size_t n,
                         struct dcms_store_rows **rows, uint64_t *affected, struct dcms_errinfo *ei)
{
    const struct store_backend *be = tx->store->be;
    if (rows)
        *rows = NULL;
    if (affected)
        *affected = 0;
    const char *sql = query_sql(be, q);
    if (!sql)
        return dcms_err_set(ei, DCMS_ERR_INTERNAL, NULL);
    /* An injected commit fault must find the transaction still open. */
    last = (last || tx->entry->end_next) && !tx->store->fail_commit;
    tx->entry->end_next = false;
    return storage_note(tx->store, be->exec(tx->entry->conn, tx->entry->read_only, last, q, sql,
                                            params, n, rows, affected, ei));
}

void dcms_store_commit_with_next(struct dcms_store_tx *tx)
{
    tx->entry->end_next = true;
}

enum dcms_err dcms_store_exec(struct dcms_store_tx *tx, struct dcms_query *q,
                              const struct dcms_store_val *params, size_t n,
                              struct dcms_store_rows **rows, uint64_t *affected,
                              struct dcms_errinfo *ei)
{
    return run(tx, false, q, params, n, rows, affected, ei);
}

enum dcms_err dcms_store_exec_both(struct dcms_store_tx *tx, const struct dcms_store_stmt *a,
                                   const struct dcms_store_stmt *b, struct dcms_errinfo *ei)
{
    const struct store_backend *be = tx->store->be;
    if (a->rows)
        *a->rows = NULL;
    if (b->rows)
        *b->rows = NULL;
    enum dcms_err r;
    if (!be->exec_both || tx->entry->end_next) {
        /* One at a time; a transaction's last statement (commit_with_next) is `b`, not `a`. */
        bool end = tx->entry->end_next;
        tx->entry->end_next = false;
        if (!(r = run(tx, false, a->q, a->params, a->n, a->rows, NULL, ei))) {
            tx->entry->end_next = end;
            if ((r = run(tx, false, b->q, b->params, b->n, b->rows, NULL, ei)) && a->rows) {
                dcms_store_rows_free(*a->rows);
                *a->rows = NULL;
            }
        }
        return r;
    }
    const char *sql[2] = {query_sql(be, a->q), query_sql(be, b->q)};
    if (!sql[0] || !sql[1])
        return dcms_err_set(ei, DCMS_ERR_INTERNAL, NULL);
    const struct dcms_store_stmt st[2] = {*a, *b};
    return storage_note(tx->store, be->exec_both(tx->entry->conn, st, sql, ei));
}

enum dcms_err dcms_store_exec_later(struct dcms_store_tx *tx, struct dcms_query *q,
                                    const struct dcms_store_val *params, size_t n,
                                    struct dcms_errinfo *ei)
{
    const struct store_backend *be = tx->store->be;
    if (!be->exec_later)
        return run(tx, false, q, params, n, NULL, NULL, ei);
    const char *sql = query_sql(be, q);
    if (!sql)
        return dcms_err_set(ei, DCMS_ERR_INTERNAL, NULL);
    return storage_note(tx->store, be->exec_later(tx->entry->conn, q, sql, params, n, ei));
}

enum dcms_err dcms_store_read_one(struct dcms_store *s, struct dcms_query *q,
                                  const struct dcms_store_val *params, size_t n,
                                  struct dcms_store_rows **rows, struct dcms_errinfo *ei)
{
    struct dcms_store_tx *tx;
    if (rows)
        *rows = NULL;
    enum dcms_err r = dcms_store_begin(s, DCMS_TX_READ, &tx, ei);
    if (r)
        return r;
    r = run(tx, true, q, params, n, rows, NULL, ei);
    dcms_store_rollback(tx);
    return r;
}

enum dcms_err dcms_store_exec_int(struct dcms_store_tx *tx, struct dcms_query *q,
                                  const struct dcms_store_val *params, size_t n, int64_t *out,
                                  struct dcms_errinfo *ei)
{
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_exec(tx, q, params, n, &rows, NULL, ei);
    if (!e && dcms_store_rows_count(rows) == 0)
        e = DCMS_ERR_NOT_FOUND;
    if (!e)
        *out = dcms_store_rows_int(rows, 0, 0);
    dcms_store_rows_free(rows);
    return e;
}

/* ---- open, migrate, close ---- */

static struct dcms_query q_ping = DCMS_QUERY("store_ping", "SELECT 1");
static struct dcms_query q_schema_version =
    DCMS_QUERY("schema_version", "SELECT COALESCE(MAX(version), 0) FROM schema_migrations");
static struct dcms_query q_schema_record =
    DCMS_QUERY("schema_record",
               "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)");

enum dcms_err dcms_store_ping(struct dcms_store *s, struct dcms_errinfo *ei)
{
    struct dcms_store_tx *tx;
    enum dcms_err r = dcms_store_begin(s, DCMS_TX_READ, &tx, ei);
    if (r)
        return r;
    if ((r = dcms_store_exec(tx, &q_ping, NULL, 0, NULL, NULL, ei))) {
        dcms_store_rollback(tx);
        return r;
    }
    return dcms_store_commit(tx, ei);
}

static enum dcms_err migrate(struct dcms_store *s, struct dcms_errinfo *ei)
{
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    enum dcms_err r = dcms_store_begin(s, DCMS_TX_WRITE, &tx, ei);
    if (r)
        return r;
    void *conn = tx->entry->conn;
    if (s->be->migration_lock && (r = s->be->exec_script(conn, s->be->migration_lock, ei)))
        goto out;
    if ((r = s->be->exec_script(conn,
                                s->be->kind == DCMS_STORE_PG
                                    ? "CREATE TABLE IF NOT EXISTS schema_migrations ("
                                      "version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                                      "applied_at TIMESTAMPTZ NOT NULL)"
                                    : "CREATE TABLE IF NOT EXISTS schema_migrations ("
                                      "version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                                      "applied_at TEXT NOT NULL) STRICT",
                                ei)))
        goto out;
    if ((r = dcms_store_exec(tx, &q_schema_version, NULL, 0, &rows, NULL, ei)))
        goto out;
    int64_t current = dcms_store_rows_int(rows, 0, 0);
    int latest = 0;
    for (const struct dcms_migration *m = s->be->migrations; m->sql; m++)
        latest = m->version;
    if (current > latest) {
        r = dcms_err_set(ei, DCMS_ERR_CONFIG,
                         "the database schema (version %lld) is newer than this dcmsd knows (%d)",
                         (long long)current, latest);
        goto out;
    }
    for (const struct dcms_migration *m = s->be->migrations; m->sql; m++) {
        if (m->version <= current)
            continue;
        char now[DCMS_TIME_STRLEN];
        dcms_time_format(dcms_clock_now_us(), now);
        if ((r = s->be->exec_script(conn, m->sql, ei)))
            goto out;
        struct dcms_store_val p[] = {DCMS_VAL_INT(m->version), DCMS_VAL_TEXT(m->name),
                                     DCMS_VAL_TEXT(now)};
        if ((r = dcms_store_exec(tx, &q_schema_record, p, 3, NULL, NULL, ei)))
            goto out;
        DCMS_LOG(DCMS_LOG_INFO, "store", "applied migration %04d_%s", m->version, m->name);
    }
out:
    dcms_store_rows_free(rows);
    if (r) {
        dcms_store_rollback(tx);
        return r;
    }
    return dcms_store_commit(tx, ei);
}

enum dcms_err dcms_store_open(const char *url, const struct dcms_store_opts *opts,
                              struct dcms_store **out, struct dcms_errinfo *ei)
{
    const struct store_backend *be;
    const char *target;
    *out = NULL;
    if (strncmp(url, "sqlite:", 7) == 0) {
        be = &dcms_store_sqlite_backend;
        target = url + 7;
        if (strncmp(target, "//", 2) == 0)
            target += 2;
        if (*target == '\0')
            return dcms_err_set(ei, DCMS_ERR_CONFIG, "sqlite URL has no path");
    } else if (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0) {
        be = &dcms_store_pg_backend;
        target = url;
    } else {
        return dcms_err_set(ei, DCMS_ERR_CONFIG,
                            "DCMS_DATABASE_URL must start with sqlite: or postgres://");
    }

    struct dcms_store *s = calloc(1, sizeof(*s));
    if (!s)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    s->be = be;
    s->timeout_ms = opts && opts->timeout_ms ? opts->timeout_ms : 5000;
    s->pool_size = opts && opts->pool_size ? opts->pool_size : 4;
    if (be->one_writer && s->pool_size > 1)
        s->pool_size++; /* the writers' connection, beside as many for readers */
    s->target = strdup(target);
    s->pool = calloc(s->pool_size, sizeof(*s->pool));
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    pthread_cond_init(&s->wcv, NULL);
    if (!s->target || !s->pool) {
        dcms_store_close(s);
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    }
    enum dcms_err r = be->start ? be->start(s, ei) : DCMS_OK;
    for (unsigned i = 0; i < s->pool_size && !r; i++)
        r = be->connect(s, &s->pool[i].conn, ei);
    if (!r)
        r = migrate(s, ei);
    if (r) {
        dcms_store_close(s);
        return r;
    }
    *out = s;
    return DCMS_OK;
}

void dcms_store_close(struct dcms_store *s)
{
    if (!s)
        return;
    for (unsigned i = 0; s->pool && i < s->pool_size; i++)
        if (s->pool[i].conn)
            s->be->disconnect(s->pool[i].conn);
    if (s->be->stop)
        s->be->stop(s);
    free(s->pool);
    free(s->target);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    pthread_cond_destroy(&s->wcv);
    free(s);
}

enum dcms_store_backend dcms_store_backend(const struct dcms_store *s)
{
    return s->be->kind;
}

const char *dcms_store_backend_name(const struct dcms_store *s)
{
    return s->be->name;
}

json_t *dcms_store_rows_page(const struct dcms_store_rows *rows, int64_t limit, size_t cursor_col,
                             const char *key,
                             json_t *(*item)(const struct dcms_store_rows *rows, size_t i))
{
    json_t *items = json_array();
    size_t n = dcms_store_rows_count(rows);
    for (size_t i = 0; items && i < n; i++)
        json_array_append_new(items, item(rows, i));
    json_t *next = n && n == (size_t)limit
                       ? json_string(dcms_store_rows_text(rows, n - 1, cursor_col))
                       : json_null();
    return json_pack("{s:o, s:o}", key, items, "next_cursor", next);
}
