/*
 * PostgreSQL backend (libpq): one connection per pool slot, statements
 * prepared once per connection and run with bound text parameters, sessions
 * pinned to UTC, and a reconnect (PQreset) when the server went away, after
 * which statements are prepared again.
 *
 * BEGIN costs no round trip of its own: it is held back and sent in one
 * pipeline with the transaction's first statement (and its PREPARE, the
 * first time), and a transaction that ran no statement ends without
 * reaching the server at all. The snapshot is the same either way: a
 * transaction takes it at its first statement, not at BEGIN.
 *
 * Statements whose result nobody reads (dcms_store_exec_later: an audit
 * event, a history row) are held back the same way, with copies of their
 * parameters, and go out in the pipeline of the next statement or of the
 * COMMIT; a transaction's last statement (dcms_store_commit_with_next)
 * takes the COMMIT or ROLLBACK along, and a read of one SELECT
 * (dcms_store_read_one) goes out without BEGIN or ROLLBACK at all. One
 * failing statement aborts the rest of its pipeline, and its error is the
 * one reported.
 */
#include <limits.h>
#include <ctype.h>
#include <inttypes.h>

#include <libpq-fe.h>

#include "dcms/log.h"
#include "store/store_int.h"

#define PG_TIMESTAMPTZ_OID 1184
#define PG_MAX_PARAMS 64
#define PG_MAX_LATER 8 /* statements held back per transaction before they are sent anyway */

/* A statement's parameters in libpq's form; `block` holds the copied bytes. */
struct pg_bound {
    int n;
    const char *values[PG_MAX_PARAMS];
    int lengths[PG_MAX_PARAMS];
    int formats[PG_MAX_PARAMS];
    char *block;
};

/* A statement held back (dcms_store_exec_later), with its own copy of its parameters. */
struct pg_later {
    struct dcms_query *q;
    const char *sql;
    struct pg_bound b;
};

struct pg_conn {
    PGconn *pg;
    struct dcms_store *store; /* for the reconnect */
    const char *begin;        /* a BEGIN not sent yet, or NULL */
    bool ended;               /* the last statement's pipeline ended the transaction */
    int nlater;
    struct pg_later later[PG_MAX_LATER];
    unsigned char prepared[STORE_MAX_QUERIES];
};

/* One command of a pipeline: plain SQL (`q` NULL: BEGIN, COMMIT, ROLLBACK) or a named query. */
struct pg_cmd {
    struct dcms_query *q;
    const char *sql;
    const struct pg_bound *b;
};

static void quiet_notices(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

static enum dcms_err session_setup(struct pg_conn *c, struct dcms_errinfo *ei)
{
    PGresult *res = PQexec(c->pg, "SET TIME ZONE 'UTC'; SET datestyle = 'ISO'");
    ExecStatusType st = PQresultStatus(res);
    PQclear(res);
    if (st != PGRES_COMMAND_OK) {
        DCMS_LOG(DCMS_LOG_ERROR, "store", "postgres session setup failed: %s",
                 PQerrorMessage(c->pg));
        return dcms_err_set(ei, DCMS_ERR_UNAVAILABLE, "the database is unavailable");
    }
    memset(c->prepared, 0, sizeof(c->prepared));
    return DCMS_OK;
}

static enum dcms_err pg_connect(struct dcms_store *s, void **out, struct dcms_errinfo *ei)
{
    struct pg_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    const char *keys[] = {"dbname", "application_name", "connect_timeout", NULL};
    const char *vals[] = {s->target, "dcmsd", "10", NULL};
    c->store = s;
    c->pg = PQconnectdbParams(keys, vals, 1);
    if (!c->pg || PQstatus(c->pg) != CONNECTION_OK) {
        const char *why = c->pg ? PQerrorMessage(c->pg) : "out of memory";
        DCMS_LOG(DCMS_LOG_ERROR, "store", "cannot connect to postgres: %s", why);
        /* Only at open (main's log): a refused server certificate is a configuration error. */
        bool tls = strstr(why, "SSL") || strstr(why, "certificate");
        PQfinish(c->pg);
        free(c);
        if (tls)
            return dcms_err_set(ei, DCMS_ERR_CONFIG,
                                "cannot connect to the database: its TLS certificate was not "
                                "accepted (check sslrootcert, and that the URL's host is in the "
                                "certificate for sslmode=verify-full; see docs/operations.md)");
        return dcms_err_set(ei, DCMS_ERR_UNAVAILABLE, "cannot connect to the database");
    }
    PQsetNoticeProcessor(c->pg, quiet_notices, NULL);
    enum dcms_err r = session_setup(c, ei);
    if (r) {
        PQfinish(c->pg);
        free(c);
        return r;
    }
    *out = c;
    return DCMS_OK;
}

static void later_clear(struct pg_conn *c);

static void pg_disconnect(void *conn)
{
    struct pg_conn *c = conn;
    later_clear(c);
    PQfinish(c->pg);
    free(c);
}

static bool pg_broken(void *conn)
{
    return PQstatus(((struct pg_conn *)conn)->pg) != CONNECTION_OK;
}

static enum dcms_err pg_repair(struct dcms_store *s, void *conn, struct dcms_errinfo *ei)
{
    struct pg_conn *c = conn;
    PQreset(c->pg);
    if (PQstatus(c->pg) != CONNECTION_OK) {
        DCMS_LOG(DCMS_LOG_WARN, "store", "postgres reconnect failed: %s", PQerrorMessage(c->pg));
        return dcms_err_set(ei, DCMS_ERR_UNAVAILABLE, "the database is unavailable");
    }
    dcms_store_note_reconnect(s);
    DCMS_LOG(DCMS_LOG_INFO, "store", "reconnected to postgres");
    return session_setup(c, ei);
}

/* Maps a failed result to dcms_err by SQLSTATE; the native text goes to the log only. */
static enum dcms_err map_result(struct pg_conn *c, PGresult *res, const char *what,
                                struct dcms_errinfo *ei)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    /* disk_full, logged once per episode by store.c, not once per statement. */
    if (state && strcmp(state, "53100") == 0 && PQstatus(c->pg) == CONNECTION_OK)
        return dcms_err_set(ei, DCMS_ERR_INSUFFICIENT_STORAGE, "the database disk is full");
    DCMS_LOG(DCMS_LOG_WARN, "store", "postgres %s failed: %s%s%s", what, state ? state : "",
             state ? " " : "", PQerrorMessage(c->pg));
    if (PQstatus(c->pg) != CONNECTION_OK)
        return dcms_err_set(ei, DCMS_ERR_UNAVAILABLE, "the database is unavailable");
    if (!state)
        return dcms_err_set(ei, DCMS_ERR_INTERNAL, NULL);
    if (strcmp(state, "23505") == 0)
        return dcms_err_set(ei, DCMS_ERR_CONFLICT, "the resource already exists");
    if (strcmp(state, "23503") == 0)
        return dcms_err_set(ei, DCMS_ERR_CONFLICT, "a referenced resource does not exist");
    if (strncmp(state, "23", 2) == 0)
        return dcms_err_set(ei, DCMS_ERR_CONFLICT, "the change violates a constraint");
    if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0)
        return dcms_err_set(ei, DCMS_ERR_RETRY, NULL);
    if (strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0)
        return dcms_err_set(ei, DCMS_ERR_UNAVAILABLE, "the database is unavailable");
    return dcms_err_set(ei, DCMS_ERR_INTERNAL, NULL);
}

static enum dcms_err run_script(struct pg_conn *c, const char *sql, struct dcms_errinfo *ei)
{
    PGresult *res = PQexec(c->pg, sql);
    atomic_fetch_add(&c->store->round_trips, 1);
    ExecStatusType st = PQresultStatus(res);
    enum dcms_err r = DCMS_OK;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        r = map_result(c, res, "statement", ei);
    PQclear(res);
    return r;
}

/* A statement after the transaction's last one (c->ended) would run outside the transaction:
 * a caller's mistake, refused. */
static enum dcms_err after_end(const struct dcms_query *q, struct dcms_errinfo *ei)
{
    DCMS_LOG(DCMS_LOG_ERROR, "store", "query %s after the transaction's last statement", q->name);
    return dcms_err_set(ei, DCMS_ERR_INTERNAL, NULL);
}

static void later_clear(struct pg_conn *c)
{
    for (int i = 0; i < c->nlater; i++)
        free(c->later[i].b.block);
    c->nlater = 0;
}

/*
 * Sends `cmds` in one pipeline, each named query preceded by its PREPARE
 * when this connection has not prepared it yet, and reads every result:
 * one round trip. The first failure is the error (the server skips the
 * commands after it); on success out[k] (out may be NULL) is the result of
 * cmds[want + k], for k below nout (at most 2).
 */
static enum dcms_err pipeline(struct pg_conn *c, const struct pg_cmd *cmds, int ncmds, int want,
                              int nout, PGresult **out, struct dcms_errinfo *ei)
{
    bool prep[PG_MAX_LATER + 3] = {0};
    bool sent = PQenterPipelineMode(c->pg) == 1;
    for (int i = 0; sent && i < ncmds; i++) {
        const struct pg_cmd *k = &cmds[i];
        if (!k->q) {
            sent = PQsendQueryParams(c->pg, k->sql, 0, NULL, NULL, NULL, NULL, 0) == 1;
            continue;
        }
        char stmt[16];
        snprintf(stmt, sizeof(stmt), "q%d", k->q->slot);
        prep[i] = !c->prepared[k->q->slot];
        for (int j = 0; prep[i] && j < i; j++) /* once per pipeline */
            prep[i] = !(prep[j] && cmds[j].q->slot == k->q->slot);
        sent = (!prep[i] || PQsendPrepare(c->pg, stmt, k->sql, 0, NULL) == 1) &&
               PQsendQueryPrepared(c->pg, stmt, k->b->n, k->b->values, k->b->lengths, k->b->formats,
                                   0) == 1;
    }
    sent = sent && PQpipelineSync(c->pg) == 1;
    atomic_fetch_add(&c->store->round_trips, 1);
    PGresult *failed = NULL, *kept[2] = {NULL, NULL};
    const char *what = "statement";
    /* One result per command (each followed by NULL), then the sync's. */
    for (int i = 0; sent && i < ncmds; i++) {
        for (int part = prep[i] ? 0 : 1; sent && part < 2; part++) {
            PGresult *res = PQgetResult(c->pg);
            if (!res) {
                sent = false;
                break;
            }
            ExecStatusType st = PQresultStatus(res);
            bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
            if (part == 0 && ok)
                c->prepared[cmds[i].q->slot] = 1;
            if (!ok && !failed && st != PGRES_PIPELINE_ABORTED) {
                failed = res;
                what = cmds[i].q ? cmds[i].q->name : cmds[i].sql;
            } else if (part == 1 && i >= want && i < want + nout && ok && out) {
                kept[i - want] = res;
            } else {
                PQclear(res);
            }
            while ((res = PQgetResult(c->pg)))
                PQclear(res);
        }
    }
    if (sent) {
        PGresult *sync = PQgetResult(c->pg);
        sent = sync && PQresultStatus(sync) == PGRES_PIPELINE_SYNC;
        PQclear(sync);
    }
    if (sent)
        sent = PQexitPipelineMode(c->pg) == 1;
    if (failed || !sent) {
        enum dcms_err r = map_result(c, failed, what, ei);
        PQclear(failed);
        PQclear(kept[0]);
        PQclear(kept[1]);
        if (!sent && PQstatus(c->pg) == CONNECTION_OK)
            PQexitPipelineMode(c->pg);
        return r;
    }
    for (int k = 0; out && k < nout; k++)
        out[k] = kept[k];
    return DCMS_OK;
}

/*
 * The held-back BEGIN and statements, then `tail` (at most two commands),
 * in one pipeline; out[k] (out may be NULL) is tail[k]'s result, for k
 * below nout. Nothing is held back afterwards, whatever the result.
 */
static enum dcms_err send_held(struct pg_conn *c, const struct pg_cmd *tail, int ntail, bool fresh,
                               int nout, PGresult **out, struct dcms_errinfo *ei)
{
    struct pg_cmd cmds[PG_MAX_LATER + 3];
    int n = 0;
    if (c->begin)
        cmds[n++] = (struct pg_cmd){NULL, c->begin, NULL};
    for (int i = 0; i < c->nlater; i++)
        cmds[n++] = (struct pg_cmd){c->later[i].q, c->later[i].sql, &c->later[i].b};
    int want = n;
    for (int i = 0; i < ntail && i < 2; i++)
        cmds[n++] = tail[i];
    enum dcms_err r = pipeline(c, cmds, n, want, nout, out, ei);
    /* A connection the server dropped while idle shows it here: when nothing had run in
     * this transaction yet (`fresh`), one retry on a fresh connection is safe. */
    if (r && fresh && ei && PQstatus(c->pg) != CONNECTION_OK &&
        pg_repair(c->store, c, ei) == DCMS_OK) {
        dcms_errinfo_init(ei, ei->arena);
        r = pipeline(c, cmds, n, want, nout, out, ei);
    }
    c->begin = NULL;
    later_clear(c);
    return r;
}

static enum dcms_err pg_exec_script(void *conn, const char *sql, struct dcms_errinfo *ei)
{
    struct pg_conn *c = conn;
    if (strncmp(sql, "BEGIN", 5) == 0) {
        c->begin = sql; /* sent with the first statement */
        c->ended = false;
        return DCMS_OK;
    }
    bool commit = strcmp(sql, "COMMIT") == 0, rollback = strcmp(sql, "ROLLBACK") == 0;
    if (rollback)
        later_clear(c);
    if ((commit || rollback) && c->ended) { /* the last statement's pipeline ended it */
        c->ended = false;
        return DCMS_OK;
    }
    if ((commit || rollback) && c->begin && !c->nlater) {
        c->begin = NULL; /* nothing ran: nothing to end */
        return DCMS_OK;
    }
    if (c->begin || c->nlater) { /* what is held back goes first, a COMMIT with it */
        struct pg_cmd end = {NULL, sql, NULL};
        enum dcms_err r = send_held(c, &end, commit ? 1 : 0, c->begin != NULL, 0, NULL, ei);
        if (r || commit)
            return r;
    }
    return run_script(c, sql, ei);
}

/*
 * `params` in libpq's form in b->block: text NUL-terminated (libpq ends
 * text parameters at the NUL, not at the length; PostgreSQL text cannot
 * hold one, so an embedded NUL is refused), integers as decimal text,
 * blobs in binary format (bytea takes the bytes as they are), copied only
 * when `copy_blobs` (a held-back statement outlives the caller's buffers).
 */
static enum dcms_err bind_params(const struct dcms_query *q, const struct dcms_store_val *params,
                                 size_t n, bool copy_blobs, struct pg_bound *b,
                                 struct dcms_errinfo *ei)
{
    b->n = (int)n;
    b->block = NULL;
    if (n > PG_MAX_PARAMS) {
        DCMS_LOG(DCMS_LOG_ERROR, "store", "query %s has too many parameters", q->name);
        return dcms_err_set(ei, DCMS_ERR_INTERNAL, NULL);
    }
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        const struct dcms_store_val *v = &params[i];
        if (v->type == DCMS_VT_TEXT && memchr(v->ptr, '\0', v->len))
            return dcms_err_set(ei, DCMS_ERR_BAD_REQUEST, "text must not contain NUL characters");
        if (v->type == DCMS_VT_BLOB && v->len > INT_MAX)
            return dcms_err_set(ei, DCMS_ERR_TOO_LARGE, NULL);
        bytes += v->type == DCMS_VT_TEXT   ? v->len + 1
                 : v->type == DCMS_VT_INT  ? 24
                 : v->type == DCMS_VT_BLOB ? (copy_blobs ? v->len : 0)
                                           : 0;
    }
    char *p = b->block = bytes ? malloc(bytes) : NULL;
    if (bytes && !p)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    for (size_t i = 0; i < n; i++) {
        const struct dcms_store_val *v = &params[i];
        b->lengths[i] = 0;
        b->formats[i] = 0;
        b->values[i] = NULL;
        switch (v->type) {
        case DCMS_VT_BLOB:
            b->values[i] = v->len ? v->ptr : "";
            if (copy_blobs && v->len) {
                memcpy(p, v->ptr, v->len);
                b->values[i] = p;
                p += v->len;
            }
            b->lengths[i] = (int)v->len;
            b->formats[i] = 1;
            break;
        case DCMS_VT_TEXT:
            memcpy(p, v->ptr, v->len);
            p[v->len] = '\0';
            b->values[i] = p;
            b->lengths[i] = (int)v->len;
            p += v->len + 1;
            break;
        case DCMS_VT_INT:
            snprintf(p, 24, "%" PRId64, v->i);
            b->values[i] = p;
            p += 24;
            break;
        default:
            break;
        }
    }
    return DCMS_OK;
}

static enum dcms_err pg_exec_later(void *conn, struct dcms_query *q, const char *sql,
                                   const struct dcms_store_val *params, size_t n,
                                   struct dcms_errinfo *ei)
{
    struct pg_conn *c = conn;
    if (c->ended)
        return after_end(q, ei);
    if (c->nlater == PG_MAX_LATER) {
        enum dcms_err r = send_held(c, NULL, 0, c->begin != NULL, 0, NULL, ei);
        if (r)
            return r;
    }
    struct pg_later *l = &c->later[c->nlater];
    enum dcms_err r = bind_params(q, params, n, true, &l->b, ei);
    if (r)
        return r;
    l->q = q;
    l->sql = sql;
    c->nlater++;
    return DCMS_OK;
}

/* "2026-11-23 20:14:19.12+00" → "2026-11-23T20:14:19.120000Z" (sessions run in UTC). */
static size_t normalize_timestamp(const char *in, char *out, size_t cap)
{
    size_t n = strlen(in);
    if (n < 19 || cap < 32 || in[10] != ' ') {
        size_t m = n < cap - 1 ? n : cap - 1;
        memcpy(out, in, m);
        out[m] = '\0';
        return m;
    }
    memcpy(out, in, 19);
    out[10] = 'T';
    size_t o = 19, i = 19;
    out[o++] = '.';
    int digits = 0;
    if (in[i] == '.') {
        for (i++; isdigit((unsigned char)in[i]) && digits < 6; i++, digits++)
            out[o++] = in[i];
    }
    for (; digits < 6; digits++)
        out[o++] = '0';
    out[o++] = 'Z';
    out[o] = '\0';
    return o;
}

/* A statement's result into *rows_out (may be NULL) and *affected (may be NULL); clears `res`. */
static enum dcms_err take_result(struct pg_conn *c, struct dcms_query *q, PGresult *res,
                                 struct dcms_store_rows **rows_out, uint64_t *affected,
                                 struct dcms_errinfo *ei)
{
    enum dcms_err r = DCMS_OK;
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        r = map_result(c, res, q->name, ei);
        PQclear(res);
        return r;
    }
    if (affected && strncmp(PQcmdStatus(res), "SELECT", 6) != 0) { /* SELECT changes nothing */
        const char *t = PQcmdTuples(res);
        *affected = t && *t ? strtoull(t, NULL, 10) : 0;
    }
    if (rows_out) {
        int nrows = PQntuples(res), ncols = PQnfields(res);
        struct dcms_store_rows *rows = dcms_store_rows_new((size_t)ncols);
        if (!rows)
            r = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
        for (int i = 0; !r && i < nrows; i++) {
            for (int j = 0; !r && j < ncols; j++) {
                const char *v = PQgetisnull(res, i, j) ? NULL : PQgetvalue(res, i, j);
                size_t len = v ? (size_t)PQgetlength(res, i, j) : 0;
                char ts[40];
                if (v && PQftype(res, j) == PG_TIMESTAMPTZ_OID) {
                    len = normalize_timestamp(v, ts, sizeof(ts));
                    v = ts;
                }
                if (dcms_store_rows_push(rows, v, len))
                    r = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
            }
        }
        if (r) {
            dcms_store_rows_free(rows);
        } else {
            dcms_store_rows_finish(rows);
            *rows_out = rows;
        }
    }
    PQclear(res);
    return r;
}

static enum dcms_err pg_exec(void *conn, bool read_only, bool last, struct dcms_query *q,
                             const char *sql, const struct dcms_store_val *params, size_t n,
                             struct dcms_store_rows **rows_out, uint64_t *affected,
                             struct dcms_errinfo *ei)
{
    struct pg_conn *c = conn;
    if (c->ended)
        return after_end(q, ei);
    struct pg_bound b;
    enum dcms_err r = bind_params(q, params, n, false, &b, ei);
    if (r)
        return r;
    PGresult *res = NULL;
    /* A read transaction of one SELECT (dcms_store_read_one) goes out alone: a statement
     * outside BEGIN is a transaction of its own with one snapshot, all that REPEATABLE READ
     * gives a single statement, and it is two statements fewer for the server. Anything
     * else keeps the READ ONLY transaction that would refuse it. */
    bool alone = read_only && last && c->begin && !c->nlater && strncmp(sql, "SELECT ", 7) == 0;
    if (c->begin || c->nlater || last) {
        /* The transaction's last statement takes its end along: both succeed or neither. */
        struct pg_cmd tail[2] = {{q, sql, &b}, {NULL, read_only ? "ROLLBACK" : "COMMIT", NULL}};
        bool fresh = c->begin != NULL;
        if (alone)
            c->begin = NULL;
        r = send_held(c, tail, last && !alone ? 2 : 1, fresh, 1, &res, ei);
        c->ended = !r && last;
    } else {
        char stmt[16];
        snprintf(stmt, sizeof(stmt), "q%d", q->slot);
        if (!c->prepared[q->slot]) {
            PGresult *pr = PQprepare(c->pg, stmt, sql, 0, NULL);
            atomic_fetch_add(&c->store->round_trips, 1);
            r = PQresultStatus(pr) == PGRES_COMMAND_OK ? DCMS_OK : map_result(c, pr, q->name, ei);
            PQclear(pr);
            c->prepared[q->slot] = !r;
        }
        if (!r) {
            res = PQexecPrepared(c->pg, stmt, b.n, b.values, b.lengths, b.formats, 0);
            atomic_fetch_add(&c->store->round_trips, 1);
        }
    }
    free(b.block);
    return r ? r : take_result(c, q, res, rows_out, affected, ei);
}

static enum dcms_err pg_exec_both(void *conn, const struct dcms_store_stmt *st,
                                  const char *const *sql, struct dcms_errinfo *ei)
{
    struct pg_conn *c = conn;
    if (c->ended)
        return after_end(st[0].q, ei);
    struct pg_bound b[2] = {{0}, {0}};
    enum dcms_err r = bind_params(st[0].q, st[0].params, st[0].n, false, &b[0], ei);
    if (!r)
        r = bind_params(st[1].q, st[1].params, st[1].n, false, &b[1], ei);
    PGresult *res[2] = {NULL, NULL};
    if (!r) {
        struct pg_cmd tail[2] = {{st[0].q, sql[0], &b[0]}, {st[1].q, sql[1], &b[1]}};
        r = send_held(c, tail, 2, c->begin != NULL, 2, res, ei);
    }
    free(b[0].block);
    free(b[1].block);
    for (int k = 0; k < 2; k++) {
        if (!r)
            r = take_result(c, st[k].q, res[k], st[k].rows, NULL, ei);
        else
            PQclear(res[k]);
    }
    if (r && st[0].rows) {
        dcms_store_rows_free(*st[0].rows);
        *st[0].rows = NULL;
    }
    return r;
}

const struct store_backend dcms_store_pg_backend = {
    .name = "postgres",
    .kind = DCMS_STORE_PG,
    .migrations = dcms_migrations_pg,
    .begin_read = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
    .begin_write = "BEGIN ISOLATION LEVEL READ COMMITTED",
    .migration_lock = "SELECT pg_advisory_xact_lock(7263746)",
    .connect = pg_connect,
    .disconnect = pg_disconnect,
    .repair = pg_repair,
    .broken = pg_broken,
    .exec_script = pg_exec_script,
    .exec = pg_exec,
    .exec_later = pg_exec_later,
    .exec_both = pg_exec_both,
};
