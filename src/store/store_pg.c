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
 */
#include <limits.h>
#include <ctype.h>
#include <inttypes.h>

#include <libpq-fe.h>

#include "dcms/log.h"
#include "store/store_int.h"

#define PG_TIMESTAMPTZ_OID 1184
#define PG_MAX_PARAMS 64

struct pg_conn {
    PGconn *pg;
    struct dcms_store *store; /* for the reconnect */
    const char *begin;        /* a BEGIN not sent yet, or NULL */
    unsigned char prepared[STORE_MAX_QUERIES];
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

static void pg_disconnect(void *conn)
{
    struct pg_conn *c = conn;
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
    ExecStatusType st = PQresultStatus(res);
    enum dcms_err r = DCMS_OK;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        r = map_result(c, res, "statement", ei);
    PQclear(res);
    return r;
}

static enum dcms_err pg_exec_script(void *conn, const char *sql, struct dcms_errinfo *ei)
{
    struct pg_conn *c = conn;
    if (strncmp(sql, "BEGIN", 5) == 0) {
        c->begin = sql; /* sent with the first statement */
        return DCMS_OK;
    }
    if (c->begin) {
        if (strcmp(sql, "COMMIT") == 0 || strcmp(sql, "ROLLBACK") == 0) {
            c->begin = NULL; /* nothing ran: nothing to end */
            return DCMS_OK;
        }
        const char *begin = c->begin;
        c->begin = NULL;
        enum dcms_err r = run_script(c, begin, ei);
        if (r)
            return r;
    }
    return run_script(c, sql, ei);
}

/*
 * The held-back BEGIN, the statement's PREPARE when this connection has not
 * prepared it yet, and the statement, in one pipeline: one round trip. On
 * success *out is the statement's result (the caller checks its status).
 */
static enum dcms_err begin_and_run(struct pg_conn *c, const char *what, const char *stmt,
                                   const char *sql, int slot, int n, const char *const *values,
                                   const int *lengths, const int *formats, PGresult **out,
                                   struct dcms_errinfo *ei)
{
    *out = NULL;
    bool prepare = !c->prepared[slot];
    bool sent = PQenterPipelineMode(c->pg) == 1 &&
                PQsendQueryParams(c->pg, c->begin, 0, NULL, NULL, NULL, NULL, 0) == 1 &&
                (!prepare || PQsendPrepare(c->pg, stmt, sql, 0, NULL) == 1) &&
                PQsendQueryPrepared(c->pg, stmt, n, values, lengths, formats, 0) == 1 &&
                PQpipelineSync(c->pg) == 1;
    PGresult *failed = NULL, *last = NULL;
    bool prepared = false;
    /* One result per command (each followed by NULL), then the sync's. */
    for (int cmd = 0; sent && cmd < (prepare ? 3 : 2); cmd++) {
        PGresult *res = PQgetResult(c->pg);
        if (!res) {
            sent = false;
            break;
        }
        ExecStatusType st = PQresultStatus(res);
        bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
        if (prepare && cmd == 1)
            prepared = ok;
        if (!ok && !failed && st != PGRES_PIPELINE_ABORTED) {
            failed = res;
        } else if (cmd == (prepare ? 2 : 1) && ok) {
            last = res;
        } else {
            PQclear(res);
        }
        while ((res = PQgetResult(c->pg)))
            PQclear(res);
    }
    if (sent) {
        PGresult *sync = PQgetResult(c->pg);
        sent = sync && PQresultStatus(sync) == PGRES_PIPELINE_SYNC;
        PQclear(sync);
    }
    if (sent)
        sent = PQexitPipelineMode(c->pg) == 1;
    c->begin = NULL;
    if (prepared)
        c->prepared[slot] = 1;
    enum dcms_err r = DCMS_OK;
    if (failed || !sent) {
        r = map_result(c, failed, what, ei);
        PQclear(failed);
        PQclear(last);
        if (!sent && PQstatus(c->pg) == CONNECTION_OK)
            PQexitPipelineMode(c->pg);
        return r;
    }
    *out = last;
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

static enum dcms_err pg_exec(void *conn, bool read_only, struct dcms_query *q, const char *sql,
                             const struct dcms_store_val *params, size_t n,
                             struct dcms_store_rows **rows_out, uint64_t *affected,
                             struct dcms_errinfo *ei)
{
    struct pg_conn *c = conn;
    char stmt[16];
    snprintf(stmt, sizeof(stmt), "q%d", q->slot);
    if (n > PG_MAX_PARAMS) {
        DCMS_LOG(DCMS_LOG_ERROR, "store", "query %s has too many parameters", q->name);
        return dcms_err_set(ei, DCMS_ERR_INTERNAL, NULL);
    }
    if (!c->prepared[q->slot] && !c->begin) {
        PGresult *res = PQprepare(c->pg, stmt, sql, 0, NULL);
        enum dcms_err r =
            PQresultStatus(res) == PGRES_COMMAND_OK ? DCMS_OK : map_result(c, res, q->name, ei);
        PQclear(res);
        if (r)
            return r;
        c->prepared[q->slot] = 1;
    }
    const char *values[PG_MAX_PARAMS];
    int lengths[PG_MAX_PARAMS];
    int formats[PG_MAX_PARAMS];
    char ints[PG_MAX_PARAMS][24];
    /* Text parameters travel in text format, which libpq ends at the NUL, not at the
     * length: copy each one NUL-terminated, and refuse embedded NULs (PostgreSQL text
     * cannot hold them). */
    size_t text_bytes = 0;
    for (size_t i = 0; i < n; i++) {
        if (params[i].type != DCMS_VT_TEXT)
            continue;
        if (memchr(params[i].ptr, '\0', params[i].len))
            return dcms_err_set(ei, DCMS_ERR_BAD_REQUEST, "text must not contain NUL characters");
        text_bytes += params[i].len + 1;
    }
    char *texts = text_bytes ? malloc(text_bytes) : NULL;
    if (text_bytes && !texts)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    char *tp = texts;
    for (size_t i = 0; i < n; i++) {
        lengths[i] = 0;
        formats[i] = 0;
        switch (params[i].type) {
        case DCMS_VT_BLOB: /* binary format: bytea takes the bytes as they are */
            if (params[i].len > INT_MAX) {
                free(texts);
                return dcms_err_set(ei, DCMS_ERR_TOO_LARGE, NULL);
            }
            values[i] = params[i].ptr ? params[i].ptr : "";
            lengths[i] = (int)params[i].len;
            formats[i] = 1;
            break;
        case DCMS_VT_TEXT:
            memcpy(tp, params[i].ptr, params[i].len);
            tp[params[i].len] = '\0';
            values[i] = tp;
            lengths[i] = (int)params[i].len;
            tp += params[i].len + 1;
            break;
        case DCMS_VT_INT:
            snprintf(ints[i], sizeof(ints[i]), "%" PRId64, params[i].i);
            values[i] = ints[i];
            break;
        default:
            values[i] = NULL;
        }
    }
    PGresult *res = NULL;
    if (c->begin) {
        const char *begin = c->begin;
        enum dcms_err r = begin_and_run(c, q->name, stmt, sql, q->slot, (int)n, values, lengths,
                                        formats, &res, ei);
        /* A connection the server dropped while idle shows it here: nothing ran in this
         * transaction yet, so one retry on a fresh connection is safe. */
        if (r && PQstatus(c->pg) != CONNECTION_OK && pg_repair(c->store, c, ei) == DCMS_OK) {
            dcms_errinfo_init(ei, ei->arena);
            c->begin = begin;
            r = begin_and_run(c, q->name, stmt, sql, q->slot, (int)n, values, lengths, formats,
                              &res, ei);
        }
        if (r) {
            free(texts);
            return r;
        }
    } else {
        res = PQexecPrepared(c->pg, stmt, (int)n, values, lengths, formats, 0);
    }
    free(texts);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        enum dcms_err r = map_result(c, res, q->name, ei);
        PQclear(res);
        return r;
    }
    if (affected && strncmp(PQcmdStatus(res), "SELECT", 6) != 0) { /* SELECT changes nothing */
        const char *t = PQcmdTuples(res);
        *affected = t && *t ? strtoull(t, NULL, 10) : 0;
    }
    enum dcms_err r = DCMS_OK;
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
};
