/*
 * The audit log (src/audit/): every case runs against SQLite (a fresh file
 * in a fresh directory) and, as its own ctest entry ending in _pg, against
 * PostgreSQL in a fresh database made for the case on the server named by
 * DCMS_TEST_PG_URL (an admin URL such as
 * postgres://dcms:pw@127.0.0.1:PORT/postgres) and dropped afterwards.
 * Without DCMS_TEST_PG_URL the _pg entries are skipped, except under CI=true,
 * where they fail: CI must test both backends.
 *
 * Covered: concurrent appends from 8 threads and from two independent
 * audit instances on one database (two dcmsd processes; the API test runs
 * real ones), checkpoints every N and by the timer, tampering (an edited
 * event, a deleted event, a consistently rewritten tail, a deleted tail, a
 * forged checkpoint), a rolled-back append, an audit write failure failing
 * the change it records, the refused-request rate limit, the key file, and
 * details that must survive each backend's JSON storage unchanged.
 */
#include "testdb.h"
#include "testutil.h"

#include <pthread.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <sqlite3.h>

#include "audit/audit_int.h"
#include "dcms/audit.h"
#include "dcms/cancel.h"
#include "dcms/clock.h"
#include "dcms/crypto.h"
#include "dcms/json.h"
#include "dcms/store.h"
#include "dcms/uuid.h"
#include "store/store_int.h"

struct fixture {
    struct dcms_testdb db; /* first: see testdb.h; db.dir also holds the key files */
    char key_path[128];    /* the audit key of the case */
    struct dcms_store *store, *store2;
    struct dcms_audit *audit, *audit2;
};

/* ---- fixtures ---- */

static struct fixture *new_fixture(void)
{
    if (dcms_crypto_init())
        return NULL;
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    if (!dcms_testdb_make_dir(&f->db, "/tmp/dcms-audit-XXXXXX")) {
        free(f);
        return NULL;
    }
    snprintf(f->key_path, sizeof(f->key_path), "%s/keys/audit.key", f->db.dir);
    return f;
}

static int setup_sqlite(void **state)
{
    struct fixture *f = new_fixture();
    if (!f)
        return -1;
    dcms_testdb_use_sqlite(&f->db);
    *state = f;
    return 0;
}

static int setup_pg(void **state)
{
    struct fixture *f = new_fixture();
    if (!f)
        return -1;
    *state = f;
    return dcms_testdb_use_pg(&f->db, "dcms_a_");
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    dcms_audit_close(f->audit);
    dcms_audit_close(f->audit2);
    dcms_store_close(f->store);
    dcms_store_close(f->store2);
    dcms_testdb_cleanup(&f->db);
    free(f);
    return 0;
}

#define AUDIT_CASE(name) DCMS_TESTDB_CASE(name)

/* ---- helpers ---- */

static struct dcms_store *open_store(struct fixture *f, unsigned pool_size)
{
    struct dcms_store_opts opts = {pool_size, 30000};
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_store *s = NULL;
    CHECK(dcms_store_open(f->db.url, &opts, &s, &ei), ei);
    assert_non_null(s);
    return s;
}

static struct dcms_audit *open_audit(struct fixture *f, struct dcms_store *s, unsigned every,
                                     unsigned interval_s, unsigned denied_per_minute)
{
    struct dcms_audit_opts o = {f->key_path, every, interval_s, denied_per_minute, NULL, 0};
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_audit *a = NULL;
    CHECK(dcms_audit_open(s, &o, &a, &ei), ei);
    assert_non_null(a);
    return a;
}

/* The usual start of a case: one store, one audit. */
static void open_both(struct fixture *f, unsigned every, unsigned interval_s, unsigned denied)
{
    f->store = open_store(f, 4);
    f->audit = open_audit(f, f->store, every, interval_s, denied);
}

static struct dcms_store_tx *begin(struct dcms_store *s, enum dcms_tx_mode mode)
{
    struct dcms_store_tx *tx = NULL;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    CHECK(dcms_store_begin(s, mode, &tx, &ei), ei);
    return tx;
}

static void commit(struct dcms_store_tx *tx)
{
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    CHECK(dcms_store_commit(tx, &ei), ei);
}

static void run(struct dcms_store_tx *tx, struct dcms_query *q, const struct dcms_store_val *p,
                size_t n, uint64_t *affected)
{
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    enum dcms_err e = dcms_store_exec(tx, q, p, n, NULL, affected, &ei);
    if (e)
        fail_msg("query %s: %s (%s)", q->name, dcms_err_slug(e), ei.message);
}

static struct dcms_query q_head_seq =
    DCMS_QUERY("t_head_seq", "SELECT seq FROM audit_head WHERE id = 1");

/* Lets the sequencer place what is pending; answers the head's seq. */
static int64_t sync_head(struct dcms_audit *a, struct dcms_store *s)
{
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    CHECK(dcms_audit_sync(a, &ei), ei);
    struct dcms_store_tx *tx = begin(s, DCMS_TX_READ);
    int64_t seq = -1;
    enum dcms_err e = dcms_store_exec_int(tx, &q_head_seq, NULL, 0, &seq, &ei);
    dcms_store_rollback(tx);
    CHECK(e, ei);
    return seq;
}

/* Appends one test event (details {"i": i, "tag": tag}) in a write transaction of its own,
 * without waiting for the sequencer. */
static void append_pending(struct dcms_audit *a, struct dcms_store *s, int i, const char *tag)
{
    json_t *d = json_pack("{s:i, s:s}", "i", i, "tag", tag);
    assert_non_null(d);
    struct dcms_audit_event ev = {.actor = "user-1",
                                  .action = "test.append",
                                  .resource_type = "thing",
                                  .resource_id = tag,
                                  .outcome = DCMS_AUDIT_SUCCESS,
                                  .details = d,
                                  .client_ip = "192.0.2.1",
                                  .request_id = "req-1"};
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_store_tx *tx = begin(s, DCMS_TX_WRITE);
    char eid[DCMS_UUID_STRLEN] = "";
    enum dcms_err e = dcms_audit_append(a, tx, &ev, eid, &ei);
    json_decref(d);
    if (e) {
        dcms_store_rollback(tx);
        fail_msg("dcms_audit_append: %s (%s)", dcms_err_slug(e), ei.message);
    }
    commit(tx);
    assert_true(dcms_uuid_valid(eid)); /* the id names the event (and its receipt) at once */
}

/* append_pending, then waits for the event's position (the head's seq when the call returns). */
static int64_t append_one(struct dcms_audit *a, struct dcms_store *s, int i, const char *tag)
{
    append_pending(a, s, i, tag);
    return sync_head(a, s);
}

static void append_n(struct fixture *f, int n)
{
    for (int i = 1; i <= n; i++)
        assert_int_equal(append_one(f->audit, f->store, i, "t"), i);
}

static void verify(struct dcms_audit *a, struct dcms_audit_report *r)
{
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    CHECK(dcms_audit_verify(a, r, &ei), ei);
}

static void assert_verifies(struct dcms_audit *a, int64_t events, int64_t checkpoints)
{
    struct dcms_audit_report r;
    verify(a, &r);
    if (!r.ok)
        fail_msg("verify failed at seq %lld: %s", (long long)r.first_bad_seq, r.reason);
    assert_int_equal(r.first_bad_seq, 0);
    assert_int_equal(r.events_checked, events);
    assert_int_equal(r.last_seq, events);
    if (checkpoints >= 0)
        assert_int_equal(r.checkpoints_checked, checkpoints);
}

/* Verification must fail at `seq` with a reason containing `word`. */
static void assert_caught(struct dcms_audit *a, int64_t seq, const char *word)
{
    struct dcms_audit_report r;
    verify(a, &r);
    if (r.ok)
        fail_msg("verify passed (%lld events, %lld checkpoints); want a failure at seq %lld",
                 (long long)r.events_checked, (long long)r.checkpoints_checked, (long long)seq);
    if (r.first_bad_seq != seq || !strstr(r.reason, word))
        fail_msg("verify failed at seq %lld (\"%s\"); want seq %lld and a reason naming \"%s\"",
                 (long long)r.first_bad_seq, r.reason, (long long)seq, word);
}

/* ---- direct SQL, beside the store (as an intruder with database access would) ---- */

/* Runs `sql` (one or more statements, no parameters) on a connection of its own. */
static void sql_exec(struct fixture *f, const char *sql)
{
    if (f->db.bk == BK_PG) {
        PGconn *c = PQconnectdb(f->db.url);
        if (PQstatus(c) != CONNECTION_OK)
            fail_msg("cannot connect: %s", PQerrorMessage(c));
        PQsetNoticeProcessor(c, dcms_testdb_quiet_notices, NULL);
        PGresult *res = PQexec(c, sql);
        bool ok = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", PQerrorMessage(c));
        PQclear(res);
        PQfinish(c);
        if (!ok)
            fail_msg("%s: %s", sql, msg);
        return;
    }
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(f->db.url + strlen("sqlite:"), &db, SQLITE_OPEN_READWRITE, NULL) !=
        SQLITE_OK)
        fail_msg("cannot open %s", f->db.url);
    sqlite3_busy_timeout(db, 30000);
    char *err = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    char msg[512];
    snprintf(msg, sizeof(msg), "%s", err ? err : "");
    sqlite3_free(err);
    sqlite3_close(db);
    if (rc != SQLITE_OK)
        fail_msg("%s: %s", sql, msg);
}

/* The integer in the first cell of `sql`'s result, read on a connection of its own. */
static int64_t sql_int(struct fixture *f, const char *sql)
{
    int64_t v = 0;
    if (f->db.bk == BK_PG) {
        PGconn *c = PQconnectdb(f->db.url);
        if (PQstatus(c) != CONNECTION_OK)
            fail_msg("cannot connect: %s", PQerrorMessage(c));
        PGresult *res = PQexec(c, sql);
        bool ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
        if (ok)
            v = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", PQerrorMessage(c));
        PQclear(res);
        PQfinish(c);
        if (!ok)
            fail_msg("%s: %s", sql, msg);
        return v;
    }
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    if (sqlite3_open_v2(f->db.url + strlen("sqlite:"), &db, SQLITE_OPEN_READONLY, NULL) !=
        SQLITE_OK)
        fail_msg("cannot open %s", f->db.url);
    sqlite3_busy_timeout(db, 30000);
    bool ok =
        sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW;
    if (ok)
        v = sqlite3_column_int64(st, 0);
    char msg[512];
    snprintf(msg, sizeof(msg), "%s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    sqlite3_close(db);
    if (!ok)
        fail_msg("%s: %s", sql, msg);
    return v;
}

static int64_t count_events(struct fixture *f)
{
    /* committed events, sequenced or still pending */
    return sql_int(f, "SELECT (SELECT count(*) FROM audit_events) + "
                      "(SELECT count(*) FROM audit_pending)");
}

/* The chain has exactly seq 1..n, no gap, no fork, and the head at n. */
static void assert_gap_free(struct fixture *f, int64_t n)
{
    assert_int_equal(count_events(f), n);
    assert_int_equal(sql_int(f, "SELECT COALESCE(min(seq), 0) FROM audit_events"), n ? 1 : 0);
    assert_int_equal(sql_int(f, "SELECT COALESCE(max(seq), 0) FROM audit_events"), n);
    assert_int_equal(sql_int(f, "SELECT count(DISTINCT prev_hash) FROM audit_events"), n);
    assert_int_equal(sql_int(f, "SELECT seq FROM audit_head"), n);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM audit_events e JOIN audit_head h "
                                "ON h.seq = e.seq AND h.hash = e.hash"),
                     n ? 1 : 0);
    /* every event links to the one before it */
    assert_int_equal(sql_int(f, "SELECT count(*) FROM audit_events a JOIN audit_events b "
                                "ON b.seq = a.seq + 1 AND b.prev_hash = a.hash"),
                     n ? n - 1 : 0);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- concurrency ---- */

#define THREADS 8
#define APPENDS_PER_THREAD 100

struct appender {
    struct dcms_audit *a;
    struct dcms_store *s;
    int n;
    int done, retries;
    enum dcms_err failed;
    char message[256];
};

/* One change: begin a write transaction, append, commit. */
static enum dcms_err append_tx(struct appender *w, int i, struct dcms_errinfo *ei)
{
    char tag[32];
    snprintf(tag, sizeof(tag), "w%d", w->n);
    json_t *d = json_pack("{s:i, s:i}", "writer", w->n, "i", i);
    if (!d)
        return DCMS_ERR_NOMEM;
    struct dcms_audit_event ev = {
        .actor = tag, .action = "test.concurrent", .outcome = DCMS_AUDIT_SUCCESS, .details = d};
    struct dcms_store_tx *tx;
    enum dcms_err e = dcms_store_begin(w->s, DCMS_TX_WRITE, &tx, ei);
    if (!e) {
        e = dcms_audit_append(w->a, tx, &ev, NULL, ei);
        if (e)
            dcms_store_rollback(tx);
        else
            e = dcms_store_commit(tx, ei);
    }
    json_decref(d);
    return e;
}

static void *appender_main(void *arg)
{
    struct appender *w = arg;
    for (int i = 0; i < APPENDS_PER_THREAD; i++) {
        for (int attempt = 0;; attempt++) {
            struct dcms_errinfo ei;
            dcms_errinfo_init(&ei, NULL);
            enum dcms_err e = append_tx(w, i, &ei);
            if (!e) {
                w->done++;
                break;
            }
            if (e == DCMS_ERR_RETRY && attempt < 1000) {
                w->retries++;
                continue;
            }
            w->failed = e;
            snprintf(w->message, sizeof(w->message), "%s", ei.message);
            return NULL;
        }
    }
    return NULL;
}

/* Runs THREADS appenders, thread i on audits[i % 2] / stores[i % 2]; returns the retries. */
static int run_appenders(struct dcms_audit *audits[2], struct dcms_store *stores[2])
{
    struct appender w[THREADS];
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct appender){.a = audits[i % 2], .s = stores[i % 2], .n = i};
        assert_int_equal(pthread_create(&t[i], NULL, appender_main, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    int retries = 0;
    for (int i = 0; i < THREADS; i++) {
        if (w[i].failed)
            fail_msg("appender %d failed after %d appends: %s (%s)", i, w[i].done,
                     dcms_err_slug(w[i].failed), w[i].message);
        assert_int_equal(w[i].done, APPENDS_PER_THREAD);
        retries += w[i].retries;
    }
    return retries;
}

/* 8 threads × 100 changes: one gap-free chain, a checkpoint at every 50th event. */
static void concurrent_appends(struct fixture *f)
{
    f->store = open_store(f, 4);
    f->audit = open_audit(f, f->store, 50, 0, 0);
    struct dcms_audit *audits[2] = {f->audit, f->audit};
    struct dcms_store *stores[2] = {f->store, f->store};
    int retries = run_appenders(audits, stores);
    const int64_t n = THREADS * APPENDS_PER_THREAD;

    assert_verifies(f->audit, n, n / 50);
    assert_gap_free(f, n);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM audit_checkpoints"), n / 50);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM audit_checkpoints WHERE seq % 50 = 0"),
                     n / 50);
    /* each checkpoint signs the hash of its own event */
    assert_int_equal(sql_int(f, "SELECT count(*) FROM audit_checkpoints c JOIN audit_events e "
                                "ON e.seq = c.seq AND e.hash = c.hash"),
                     n / 50);
    /* every thread's changes are all there */
    for (int i = 0; i < THREADS; i++) {
        char sql[128];
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM audit_events WHERE actor = 'w%d'", i);
        assert_int_equal(sql_int(f, sql), APPENDS_PER_THREAD);
    }
    print_message("%d retries\n", retries);
}
AUDIT_CASE(concurrent_appends)

/* Two audit instances with stores of their own on one database: two dcmsd processes. */
static void two_instances(struct fixture *f)
{
    f->store = open_store(f, 4);
    f->store2 = open_store(f, 4);
    f->audit = open_audit(f, f->store, 50, 0, 0);
    f->audit2 = open_audit(f, f->store2, 50, 0, 0);
    /* Each instance has seen the head before the race, so both hints go stale. */
    assert_int_equal(append_one(f->audit, f->store, 0, "a"), 1);
    assert_int_equal(append_one(f->audit2, f->store2, 0, "b"), 2);
    assert_int_equal(append_one(f->audit, f->store, 0, "a"), 3);

    struct dcms_audit *audits[2] = {f->audit, f->audit2};
    struct dcms_store *stores[2] = {f->store, f->store2};
    int retries = run_appenders(audits, stores);
    const int64_t n = 3 + THREADS * APPENDS_PER_THREAD;

    assert_verifies(f->audit, n, n / 50);
    assert_verifies(f->audit2, n, n / 50);
    assert_gap_free(f, n);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM audit_checkpoints"), n / 50);
    print_message("%d retries\n", retries);
}
AUDIT_CASE(two_instances)

/* ---- tampering ---- */

#define TAMPER_EVENTS 120 /* checkpoints at 50 and 100 */

static struct dcms_query q_set_details =
    DCMS_QUERY2("t_set_details", "UPDATE audit_events SET details = $1 WHERE seq = $2",
                "UPDATE audit_events SET details = CAST($1 AS JSONB) WHERE seq = $2");
static struct dcms_query q_rechain = DCMS_QUERY2(
    "t_rechain", "UPDATE audit_events SET details = $1, prev_hash = $2, hash = $3 WHERE seq = $4",
    "UPDATE audit_events SET details = CAST($1 AS JSONB), prev_hash = $2, hash = $3 "
    "WHERE seq = $4");
static struct dcms_query q_set_head =
    DCMS_QUERY("t_set_head", "UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1");
static struct dcms_query q_delete_from =
    DCMS_QUERY("t_delete_from", "DELETE FROM audit_events WHERE seq >= $1 AND seq <= $2");
static struct dcms_query q_event_hash =
    DCMS_QUERY("t_event_hash", "SELECT hash FROM audit_events WHERE seq = $1");

/* An UPDATE of one event's details is caught at that event, as a hash mismatch. */
static void tamper_edit(struct fixture *f)
{
    open_both(f, 50, 0, 0);
    append_n(f, TAMPER_EVENTS);
    assert_verifies(f->audit, TAMPER_EVENTS, 2);

    const int64_t k = 60;
    struct dcms_store_tx *tx = begin(f->store, DCMS_TX_WRITE);
    uint64_t n = 0;
    run(tx, &q_set_details,
        (struct dcms_store_val[]){DCMS_VAL_TEXT("{\"i\":60,\"tag\":\"forged\"}"), DCMS_VAL_INT(k)},
        2, &n);
    assert_int_equal(n, 1);
    commit(tx);
    assert_caught(f->audit, k, "hash");

    /* The hash covers what the details mean, not how they are stored: restoring the original
     * content restores the chain, and changing a number's value (60 → 60.5) is caught. */
    tx = begin(f->store, DCMS_TX_WRITE);
    run(tx, &q_set_details,
        (struct dcms_store_val[]){DCMS_VAL_TEXT("{\"i\":60,\"tag\":\"t\"}"), DCMS_VAL_INT(k)}, 2,
        NULL);
    commit(tx);
    assert_verifies(f->audit, TAMPER_EVENTS, 2);
    tx = begin(f->store, DCMS_TX_WRITE);
    run(tx, &q_set_details,
        (struct dcms_store_val[]){DCMS_VAL_TEXT("{\"i\":60.5,\"tag\":\"t\"}"), DCMS_VAL_INT(k)}, 2,
        NULL);
    commit(tx);
    assert_caught(f->audit, k, "hash");

    /* Other columns too: the actor of an earlier event. */
    sql_exec(f, "UPDATE audit_events SET actor = 'someone-else' WHERE seq = 7");
    assert_caught(f->audit, 7, "hash");
}
AUDIT_CASE(tamper_edit)

/* A deleted event is caught at its seq. */
static void tamper_delete(struct fixture *f)
{
    open_both(f, 50, 0, 0);
    append_n(f, TAMPER_EVENTS);
    sql_exec(f, "DELETE FROM audit_events WHERE seq = 60");
    assert_caught(f->audit, 60, "missing");

    /* A checkpointed event (seq 50) deleted: caught at 50 as well. */
    sql_exec(f, "DELETE FROM audit_events WHERE seq = 50");
    assert_caught(f->audit, 50, "missing");

    /* The very first event. */
    sql_exec(f, "DELETE FROM audit_events WHERE seq = 1");
    assert_caught(f->audit, 1, "missing");
}
AUDIT_CASE(tamper_delete)

/*
 * Rewrites every event from `k` to the end consistently with the module's own
 * codec (event k with changed details), chaining prev_hash, and moves the head:
 * what someone with database access but without the signing key can do.
 */
static void rewrite_tail(struct fixture *f, int64_t k)
{
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_store_tx *tx = begin(f->store, DCMS_TX_WRITE);
    json_t *events = json_array();
    assert_non_null(events);
    CHECK(audit_store_events_range(tx, k, INT64_MAX, 100000, events, &ei), ei);
    assert_int_equal(json_array_size(events), TAMPER_EVENTS - k + 1);

    char prev[65];
    struct dcms_store_rows *rows = NULL;
    CHECK(dcms_store_exec(tx, &q_event_hash, &DCMS_VAL_INT(k - 1), 1, &rows, NULL, &ei), ei);
    assert_int_equal(dcms_store_rows_count(rows), 1);
    snprintf(prev, sizeof(prev), "%s", dcms_store_rows_text(rows, 0, 0));
    dcms_store_rows_free(rows);

    int64_t last = 0;
    size_t i;
    json_t *ev;
    json_array_foreach(events, i, ev)
    {
        int64_t seq = (int64_t)json_integer_value(json_object_get(ev, "seq"));
        json_t *details = json_deep_copy(json_object_get(ev, "details"));
        assert_non_null(details);
        if (seq == k)
            json_object_set_new(details, "tag", json_string("rewritten"));
#define S(key) json_string_value(json_object_get(ev, key))
        json_t *body = audit_event_body(seq, S("id"), S("time"), S("actor"), S("action"),
                                        S("resource_type"), S("resource_id"), S("outcome"), details,
                                        S("client_ip"), S("request_id"), prev);
#undef S
        assert_non_null(body);
        char hash[65];
        CHECK(audit_hash(body, hash, &ei), ei);
        json_decref(body);
        char *text = dcms_json_dump(details, NULL);
        assert_non_null(text);
        uint64_t n = 0;
        run(tx, &q_rechain,
            (struct dcms_store_val[]){DCMS_VAL_TEXT(text), DCMS_VAL_TEXT(prev), DCMS_VAL_TEXT(hash),
                                      DCMS_VAL_INT(seq)},
            4, &n);
        assert_int_equal(n, 1);
        free(text);
        json_decref(details);
        memcpy(prev, hash, sizeof(prev));
        last = seq;
    }
    run(tx, &q_set_head, (struct dcms_store_val[]){DCMS_VAL_INT(last), DCMS_VAL_TEXT(prev)}, 2,
        NULL);
    commit(tx);
    json_decref(events);
}

/* The events alone (no checkpoints) verify from genesis: the rewrite was consistent. */
static void assert_chain_alone_verifies(struct fixture *f, int64_t n)
{
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_audit_report r;
    struct audit_verifier v;
    audit_verifier_init(&v, dcms_sign_key_public(dcms_audit_key(f->audit)), true, &r);
    struct dcms_store_tx *tx = begin(f->store, DCMS_TX_READ);
    json_t *events = json_array();
    CHECK(audit_store_events_range(tx, 1, INT64_MAX, 100000, events, &ei), ei);
    dcms_store_rollback(tx);
    size_t i;
    json_t *ev;
    json_array_foreach(events, i, ev)
    {
        audit_verifier_event(&v, ev);
    }
    audit_verifier_finish(&v);
    json_decref(events);
    if (!r.ok)
        fail_msg("the rewritten chain does not verify on its own at seq %lld: %s",
                 (long long)r.first_bad_seq, r.reason);
    assert_int_equal(r.events_checked, n);
}

/*
 * A consistent rewrite of the tail passes the chain walk; the first signed
 * tree head at or after it catches it (append_n syncs each event, so there is
 * one per event), and with the tree heads deleted the signed checkpoint does.
 */
static void tamper_rewrite_tail(struct fixture *f)
{
    open_both(f, 50, 0, 0);
    append_n(f, TAMPER_EVENTS);
    const int64_t k = 60; /* the first checkpoint at or after it is 100 */
    rewrite_tail(f, k);
    assert_chain_alone_verifies(f, TAMPER_EVENTS);
    assert_caught(f->audit, 60, "tree head");
    sql_exec(f, "DELETE FROM audit_tree_heads");
    assert_caught(f->audit, 100, "checkpoint");

    /* A rewrite that reaches back past a checkpoint is caught at that one. */
    rewrite_tail(f, 20);
    assert_chain_alone_verifies(f, TAMPER_EVENTS);
    assert_caught(f->audit, 50, "checkpoint");
}
AUDIT_CASE(tamper_rewrite_tail)

/*
 * Deleting the tail. Events after the last checkpoint, deleted together with a
 * matching rewind of audit_head, cannot be told from events never written:
 * nothing signed covers them yet. That window is what the checkpoint timer
 * (DCMS_AUDIT_CHECKPOINT_INTERVAL_S) bounds, and exports kept elsewhere close.
 * Deleting events that a checkpoint covers is caught.
 */
static void tamper_delete_tail(struct fixture *f)
{
    open_both(f, 50, 0, 0);
    append_n(f, TAMPER_EVENTS);

    /* The window (events 111..120, after the checkpoint at 100): not detectable. */
    struct dcms_store_tx *tx = begin(f->store, DCMS_TX_WRITE);
    struct dcms_store_rows *rows = NULL;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    CHECK(dcms_store_exec(tx, &q_event_hash, &DCMS_VAL_INT(110), 1, &rows, NULL, &ei), ei);
    char h110[65];
    snprintf(h110, sizeof(h110), "%s", dcms_store_rows_text(rows, 0, 0));
    dcms_store_rows_free(rows);
    run(tx, &q_delete_from, (struct dcms_store_val[]){DCMS_VAL_INT(111), DCMS_VAL_INT(120)}, 2,
        NULL);
    run(tx, &q_set_head, (struct dcms_store_val[]){DCMS_VAL_INT(110), DCMS_VAL_TEXT(h110)}, 2,
        NULL);
    commit(tx);
    /* The signed tree heads of sizes 111..120 still say the events were there. */
    assert_caught(f->audit, 111, "tree head");
    sql_exec(f, "DELETE FROM audit_tree_heads WHERE tree_size > 110");
    assert_verifies(f->audit, 110, 2);

    /* Without rewinding the head, even the window is caught. */
    sql_exec(f, "DELETE FROM audit_events WHERE seq = 110");
    assert_caught(f->audit, 110, "head");

    /* Events 95..110 deleted, the head rewound to 94: the checkpoint at 100 covers them. */
    tx = begin(f->store, DCMS_TX_WRITE);
    CHECK(dcms_store_exec(tx, &q_event_hash, &DCMS_VAL_INT(94), 1, &rows, NULL, &ei), ei);
    char h94[65];
    snprintf(h94, sizeof(h94), "%s", dcms_store_rows_text(rows, 0, 0));
    dcms_store_rows_free(rows);
    run(tx, &q_delete_from, (struct dcms_store_val[]){DCMS_VAL_INT(95), DCMS_VAL_INT(110)}, 2,
        NULL);
    run(tx, &q_set_head, (struct dcms_store_val[]){DCMS_VAL_INT(94), DCMS_VAL_TEXT(h94)}, 2, NULL);
    commit(tx);
    assert_caught(f->audit, 95, "checkpoint");
}
AUDIT_CASE(tamper_delete_tail)

/* A forged checkpoint (moved in time, or re-pointed at another hash) fails its signature. */
static void tamper_checkpoint(struct fixture *f)
{
    open_both(f, 50, 0, 0);
    append_n(f, TAMPER_EVENTS);
    sql_exec(f, f->db.bk == BK_PG
                    ? "UPDATE audit_checkpoints SET time = time + interval '1 second' "
                      "WHERE seq = 100"
                    : "UPDATE audit_checkpoints SET time = '2000-01-01T00:00:00.000000Z' "
                      "WHERE seq = 100");
    assert_caught(f->audit, 100, "signature");
}
AUDIT_CASE(tamper_checkpoint)

/* ---- transactions ---- */

/* A rolled-back append leaves no event, and the next append takes its seq. */
static void rollback(struct fixture *f)
{
    open_both(f, 1000, 0, 0);
    struct dcms_audit_event ev = {
        .actor = "user-1", .action = "test.rollback", .outcome = DCMS_AUDIT_SUCCESS};
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);

    /* On an empty chain. */
    struct dcms_store_tx *tx = begin(f->store, DCMS_TX_WRITE);
    char eid[DCMS_UUID_STRLEN] = "", eid2[DCMS_UUID_STRLEN] = "";
    CHECK(dcms_audit_append(f->audit, tx, &ev, eid, &ei), ei);
    assert_true(dcms_uuid_valid(eid)); /* known at once, before any position */
    dcms_store_rollback(tx);
    assert_int_equal(count_events(f), 0);
    assert_int_equal(sql_int(f, "SELECT seq FROM audit_head"), 0);
    assert_int_equal(append_one(f->audit, f->store, 1, "after"), 1);

    /* Mid-chain, twice in a row: nothing rolled back reaches the sequencer. */
    append_one(f->audit, f->store, 2, "x");
    append_one(f->audit, f->store, 3, "x");
    for (int r = 0; r < 2; r++) {
        tx = begin(f->store, DCMS_TX_WRITE);
        CHECK(dcms_audit_append(f->audit, tx, &ev, eid, &ei), ei);
        CHECK(dcms_audit_append(f->audit, tx, &ev, eid2, &ei), ei);
        assert_string_not_equal(eid, eid2);
        dcms_store_rollback(tx);
    }
    assert_int_equal(count_events(f), 3);
    assert_int_equal(append_one(f->audit, f->store, 4, "after"), 4);
    assert_verifies(f->audit, 4, 0);
    assert_gap_free(f, 4);
}
AUDIT_CASE(rollback)

static struct dcms_query q_ins_identity =
    DCMS_QUERY("t_ins_identity", "INSERT INTO identities (id, kind, name, created_at, updated_at) "
                                 "VALUES ($1, 'user', $2, $3, $3)");

/* An audit write that fails fails the change it records. */
static void write_failure_fails_change(struct fixture *f)
{
    open_both(f, 1000, 0, 0);
    append_n(f, 2);
    if (f->db.bk == BK_PG)
        sql_exec(f, "CREATE FUNCTION t_fail() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN RAISE EXCEPTION 'injected'; END $$; "
                    "CREATE TRIGGER t BEFORE INSERT ON audit_pending "
                    "FOR EACH ROW EXECUTE FUNCTION t_fail()");
    else
        sql_exec(f, "CREATE TRIGGER t BEFORE INSERT ON audit_pending "
                    "BEGIN SELECT RAISE(ABORT, 'injected'); END");

    char id[DCMS_UUID_STRLEN], now[DCMS_TIME_STRLEN];
    dcms_uuid_v7(id);
    dcms_time_format(dcms_clock_now_us(), now);
    struct dcms_store_tx *tx = begin(f->store, DCMS_TX_WRITE);
    uint64_t n = 0;
    run(tx, &q_ins_identity,
        (struct dcms_store_val[]){DCMS_VAL_TEXT(id), DCMS_VAL_TEXT("Ada"), DCMS_VAL_TEXT(now)}, 3,
        &n);
    assert_int_equal(n, 1);
    struct dcms_audit_event ev = {.actor = "system",
                                  .action = "identity.create",
                                  .resource_type = "identity",
                                  .resource_id = id,
                                  .outcome = DCMS_AUDIT_SUCCESS};
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    char eid[DCMS_UUID_STRLEN] = "untouched";
    enum dcms_err e = dcms_audit_append(f->audit, tx, &ev, eid, &ei);
    if (e == DCMS_OK && f->db.bk == BK_PG) { /* held back: the commit carries it and fails */
        e = dcms_store_commit(tx, &ei);
        tx = NULL;
        assert_int_not_equal(e, DCMS_OK);
    } else if (e == DCMS_OK) {
        dcms_store_rollback(tx);
        fail_msg("dcms_audit_append succeeded although the event insert failed (id %s)", eid);
    } else {
        assert_string_equal(eid, "untouched");
    }
    assert_int_equal(ei.code, e);
    assert_null(strstr(ei.message, "injected")); /* native text goes to the log only */
    dcms_store_rollback(tx);

    assert_int_equal(sql_int(f, "SELECT count(*) FROM identities"), 0);
    assert_int_equal(count_events(f), 2);
    assert_int_equal(sql_int(f, "SELECT seq FROM audit_head"), 2);

    /* An event with no other change fails the same way; a refusal is only logged. */
    dcms_errinfo_init(&ei, NULL);
    assert_true(dcms_audit_record(f->audit, &ev, &ei) != DCMS_OK);
    struct dcms_audit_event refused = {.actor = "anonymous",
                                       .action = "request.denied",
                                       .outcome = DCMS_AUDIT_DENIED,
                                       .client_ip = "192.0.2.9"};
    dcms_audit_refusal(f->audit, &refused);
    assert_int_equal(count_events(f), 2);

    /* Once the store accepts writes again, the chain continues where it was. */
    sql_exec(f, f->db.bk == BK_PG ? "DROP TRIGGER t ON audit_pending" : "DROP TRIGGER t");
    assert_int_equal(append_one(f->audit, f->store, 3, "after"), 3);
    assert_verifies(f->audit, 3, 0);
    assert_gap_free(f, 3);
}
AUDIT_CASE(write_failure_fails_change)

/*
 * The sequencer's timer passes every few milliseconds: a store that refuses
 * its writes is one line when that starts and one when it ends, not a line
 * per pass; a full disk is the store's own line alone (the fault suite's
 * disk-full test once counted four).
 */
static void sequencer_outage_logged_once(struct fixture *f)
{
    open_both(f, 100000, 0, 0);
    f->store2 = open_store(f, 2); /* the appends' store, which keeps working */
    append_n(f, 1);
    static const struct {
        enum dcms_err fault;
        int failed, again, full;
    } cases[] = {{DCMS_ERR_UNAVAILABLE, 1, 1, 0}, {DCMS_ERR_INSUFFICIENT_STORAGE, 0, 0, 1}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        FILE *log = dcms_test_log_begin();
        f->store->fail_commit = cases[i].fault;
        append_pending(f->audit, f->store2, (int)i, "while refused");
        sleep_ms(400); /* sixteen passes of the 25 ms timer */
        int64_t before = sql_int(f, "SELECT seq FROM audit_head");
        f->store->fail_commit = DCMS_OK;
        assert_int_equal(sync_head(f->audit, f->store), (int64_t)i + 2);
        sleep_ms(100); /* the timer's next passes succeed */
        char *lines = dcms_test_log_end(log);
        assert_int_equal(before, (int64_t)i + 1); /* nothing was sequenced meanwhile */
        if (dcms_test_count(lines, "sequencing failed") != cases[i].failed ||
            dcms_test_count(lines, "sequencing succeeds again") != cases[i].again ||
            dcms_test_count(lines, "disk is full") != cases[i].full)
            fail_msg("%s: unexpected lines:\n%s", dcms_err_slug(cases[i].fault), lines);
        free(lines);
    }
    assert_verifies(f->audit, 3, 0);
}
AUDIT_CASE(sequencer_outage_logged_once)

/* ---- back-pressure (dcms_audit_admit) ---- */

static struct dcms_query q_age_pending =
    DCMS_QUERY("t_age_pending", "UPDATE audit_pending SET time = '2026-01-01T00:00:00.000000Z'");

/* `n` events in one transaction, all dated long ago: a backlog the sequencer finds at once. */
static void old_backlog(struct fixture *f, struct dcms_store *s, int n)
{
    struct dcms_store_tx *tx = begin(s, DCMS_TX_WRITE);
    for (int i = 0; i < n; i++) {
        struct dcms_audit_event ev = {.actor = "user-1",
                                      .action = "test.append",
                                      .resource_type = "thing",
                                      .resource_id = "backlog",
                                      .outcome = DCMS_AUDIT_SUCCESS};
        struct dcms_errinfo ei;
        dcms_errinfo_init(&ei, NULL);
        CHECK(dcms_audit_append(f->audit, tx, &ev, NULL, &ei), ei);
    }
    run(tx, &q_age_pending, NULL, 0, NULL);
    commit(tx);
}

/* Waits (at most 2 s) until the passes have seen the sequencer `ms` behind or more. */
static void await_lag(struct dcms_audit *a, int64_t ms)
{
    int64_t t0 = dcms_clock_mono_us();
    while (atomic_load(&a->lag_us) < ms * 1000 && dcms_clock_mono_us() - t0 < 2000000)
        sleep_ms(5);
    assert_true(atomic_load(&a->lag_us) >= ms * 1000);
}

/*
 * A writer waits while the sequencer is behind and getting through its
 * backlog, and goes on once it caught up; a sequencer that is stuck holds
 * nobody. It used to be that writers never waited and the delay before a
 * position grew with the backlog (4.5 s p99 in bench_audit at 35k appends/s).
 */
static void admit_holds_writers_while_behind(struct fixture *f)
{
    open_both(f, 100000, 0, 0);
    f->store2 = open_store(f, 2);                    /* the appends' store, which keeps working */
    assert_true(dcms_audit_admit(f->audit) < 20000); /* nothing pending: no wait */

    /* Behind and progressing: a slow sequencer (ten events a batch) with a backlog. */
    pthread_mutex_lock(&f->audit->seq_mu);
    f->audit->batch_max = 10;
    pthread_mutex_unlock(&f->audit->seq_mu);
    FILE *log = dcms_test_log_begin();
    old_backlog(f, f->store2, 1500);
    await_lag(f->audit, 1000);
    int64_t waited = dcms_audit_admit(f->audit);
    int64_t left = sql_int(f, "SELECT count(*) FROM audit_pending");
    sync_head(f->audit, f->store);
    char *lines = dcms_test_log_end(log);
    if (waited < 10000 || (waited < 1000000 && left != 0) ||
        dcms_test_count(lines, "writes wait: the audit sequencer is") != 1)
        fail_msg("waited %lld us with %lld events left to sequence; log:\n%s", (long long)waited,
                 (long long)left, lines);
    free(lines);
    assert_verifies(f->audit, 1500, 0);

    /* Stuck (its commits refused): writers wait a little while, then not at all. */
    f->store->fail_commit = DCMS_ERR_UNAVAILABLE;
    log = dcms_test_log_begin();
    old_backlog(f, f->store2, 1);
    await_lag(f->audit, 1000);
    sleep_ms(600); /* the oldest has not moved for four bounds and more */
    waited = dcms_audit_admit(f->audit);
    f->store->fail_commit = DCMS_OK;
    assert_int_equal(sync_head(f->audit, f->store), 1501);
    free(dcms_test_log_end(log));
    if (waited > 50000)
        fail_msg("waited %lld us for a stuck sequencer", (long long)waited);
}
AUDIT_CASE(admit_holds_writers_while_behind)

/* ---- checkpoints ---- */

/* With the timer on and N large, a checkpoint for the head appears within ~2.5 s. */
static void checkpoint_timer(struct fixture *f)
{
    open_both(f, 100000, 1, 0);
    append_n(f, 5);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM audit_checkpoints"), 0);
    int64_t t0 = dcms_clock_mono_us();
    while (sql_int(f, "SELECT count(*) FROM audit_checkpoints WHERE seq = 5") == 0 &&
           dcms_clock_mono_us() - t0 < 2500000)
        sleep_ms(50);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM audit_checkpoints WHERE seq = 5"), 1);

    /* The head does not move: no new checkpoint. It moves: a new one. */
    sleep_ms(1500);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM audit_checkpoints"), 1);
    append_one(f->audit, f->store, 6, "t");
    t0 = dcms_clock_mono_us();
    while (sql_int(f, "SELECT count(*) FROM audit_checkpoints WHERE seq = 6") == 0 &&
           dcms_clock_mono_us() - t0 < 2500000)
        sleep_ms(50);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM audit_checkpoints WHERE seq = 6"), 1);
    assert_verifies(f->audit, 6, 2);
}
AUDIT_CASE(checkpoint_timer)

/* Closing signs the head when it moved since the last checkpoint; an explicit call does too. */
static void checkpoint_on_close(struct fixture *f)
{
    open_both(f, 1000, 0, 0);
    append_n(f, 3);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM audit_checkpoints"), 0);
    dcms_audit_close(f->audit);
    f->audit = NULL;
    assert_int_equal(sql_int(f, "SELECT count(*) FROM audit_checkpoints WHERE seq = 3"), 1);

    f->audit = open_audit(f, f->store, 1000, 0, 0);
    assert_verifies(f->audit, 3, 1);
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    CHECK(dcms_audit_checkpoint(f->audit, &ei), ei); /* head unmoved: nothing */
    assert_int_equal(sql_int(f, "SELECT count(*) FROM audit_checkpoints"), 1);
    append_one(f->audit, f->store, 4, "t");
    CHECK(dcms_audit_checkpoint(f->audit, &ei), ei);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM audit_checkpoints WHERE seq = 4"), 1);
    assert_verifies(f->audit, 4, 2);
}
AUDIT_CASE(checkpoint_on_close)

/* ---- refused requests ---- */

static int64_t count_ip(struct fixture *f, const char *ip)
{
    char sql[256];
    /* sequenced or still pending: both are recorded */
    snprintf(sql, sizeof(sql),
             "SELECT (SELECT count(*) FROM audit_events WHERE client_ip = '%s') + "
             "(SELECT count(*) FROM audit_pending WHERE client_ip = '%s')",
             ip, ip);
    return sql_int(f, sql);
}

/* At most denied_per_minute refusal events per client IP per minute; other IPs unaffected. */
static void refusal_rate_limit(struct fixture *f)
{
    open_both(f, 1000, 0, 5);
    json_t *d = json_pack("{s:s, s:i}", "method", "GET", "status", 401);
    assert_non_null(d);
    struct dcms_audit_event ev = {.actor = "anonymous",
                                  .action = "request.denied",
                                  .resource_type = "route",
                                  .resource_id = "/api/v1/audit/events",
                                  .outcome = DCMS_AUDIT_DENIED,
                                  .details = d,
                                  .client_ip = "203.0.113.7",
                                  .request_id = "r-1"};
    for (int i = 0; i < 20; i++)
        dcms_audit_refusal(f->audit, &ev);
    assert_int_equal(count_ip(f, "203.0.113.7"), 5);
    ev.client_ip = "198.51.100.2";
    dcms_audit_refusal(f->audit, &ev);
    assert_int_equal(count_ip(f, "198.51.100.2"), 1);
    ev.client_ip = "203.0.113.7";
    dcms_audit_refusal(f->audit, &ev); /* still limited after another IP was seen */
    assert_int_equal(count_ip(f, "203.0.113.7"), 5);
    json_decref(d);
    sync_head(f->audit, f->store);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM audit_events WHERE action = "
                                "'request.denied' AND outcome = 'denied'"),
                     6);
    assert_verifies(f->audit, 6, 0);
}
AUDIT_CASE(refusal_rate_limit)

/* The limiter's slot index, as src/audit/audit.c computes it (FNV-1a of the address, mod the
 * slot count): used only to find two addresses that share a slot. */
static unsigned limiter_slot(const char *ip)
{
    uint64_t h = 1469598103934665603ull;
    for (; *ip; ip++)
        h = (h ^ (unsigned char)*ip) * 1099511628211ull;
    return (unsigned)(h % AUDIT_LIMIT_SLOTS);
}

/* Two clients whose addresses share a limiter slot are each still limited: alternating between
 * them must not reset each other's allowance (else two addresses give an unlimited flood). */
static void refusal_limit_shared_slot(struct fixture *f)
{
    open_both(f, 1000, 0, 5);
    char a[32] = "10.0.0.1", b[32] = "";
    for (unsigned i = 2; i < 65536 && !b[0]; i++) {
        char ip[32];
        snprintf(ip, sizeof(ip), "10.0.%u.%u", i / 256, i % 256);
        if (limiter_slot(ip) == limiter_slot(a))
            snprintf(b, sizeof(b), "%s", ip);
    }
    assert_true(b[0] != '\0');
    struct dcms_audit_event ev = {.actor = "anonymous",
                                  .action = "request.denied",
                                  .outcome = DCMS_AUDIT_DENIED,
                                  .request_id = "r-2"};
    for (int i = 0; i < 20; i++) {
        ev.client_ip = a;
        dcms_audit_refusal(f->audit, &ev);
        ev.client_ip = b;
        dcms_audit_refusal(f->audit, &ev);
    }
    int64_t na = count_ip(f, a), nb = count_ip(f, b);
    if (na > 5 || nb > 5)
        fail_msg("limit 5 per client per minute, but %s (slot %u) got %lld events and %s (slot %u) "
                 "%lld: clients sharing a limiter slot reset each other's window",
                 a, limiter_slot(a), (long long)na, b, limiter_slot(b), (long long)nb);
    assert_true(na >= 1 && nb >= 1);
}
AUDIT_CASE(refusal_limit_shared_slot)

/* ---- the key ---- */

/* The key file is created 0600 in a 0700 directory, reused on reopen, refused when others can
 * read it. */
static void key_file(struct fixture *f)
{
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_sign_key *k = NULL;
    CHECK(dcms_sign_key_load_or_create(f->key_path, &k, &ei), ei);
    struct stat st;
    assert_int_equal(stat(f->key_path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char dir[160];
    snprintf(dir, sizeof(dir), "%s/keys", f->db.dir);
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    char id[17];
    unsigned char pk[DCMS_SIGN_PUBLIC_LEN];
    snprintf(id, sizeof(id), "%s", dcms_sign_key_id(k));
    memcpy(pk, dcms_sign_key_public(k), sizeof(pk));
    char expect_id[17];
    dcms_sign_key_id_of(pk, expect_id);
    assert_string_equal(id, expect_id);
    dcms_sign_key_free(k);

    /* Reopened: the same key, and an audit using it verifies what an earlier one signed. */
    k = NULL;
    CHECK(dcms_sign_key_load_or_create(f->key_path, &k, &ei), ei);
    assert_string_equal(dcms_sign_key_id(k), id);
    assert_memory_equal(dcms_sign_key_public(k), pk, sizeof(pk));
    dcms_sign_key_free(k);
    open_both(f, 2, 0, 0);
    assert_string_equal(dcms_sign_key_id(dcms_audit_key(f->audit)), id);
    append_n(f, 4);
    dcms_audit_close(f->audit);
    f->audit = open_audit(f, f->store, 2, 0, 0);
    assert_verifies(f->audit, 4, 2);
    dcms_audit_close(f->audit);
    f->audit = NULL;

    /* Readable by group or others: refused, by the key loader and by the audit. */
    static const mode_t bad[] = {0644, 0640, 0604};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(chmod(f->key_path, bad[i]), 0);
        dcms_errinfo_init(&ei, NULL);
        k = NULL;
        assert_int_equal(dcms_sign_key_load_or_create(f->key_path, &k, &ei), DCMS_ERR_CONFIG);
        assert_null(k);
        struct dcms_audit_opts o = {f->key_path, 0, 0, 0, NULL, 0};
        struct dcms_audit *a = NULL;
        dcms_errinfo_init(&ei, NULL);
        assert_int_equal(dcms_audit_open(f->store, &o, &a, &ei), DCMS_ERR_CONFIG);
        assert_null(a);
    }

    /* Not a key: refused, never replaced. */
    assert_int_equal(chmod(f->key_path, 0600), 0);
    FILE *fp = fopen(f->key_path, "w");
    assert_non_null(fp);
    fputs("not base64 at all!\n", fp);
    fclose(fp);
    dcms_errinfo_init(&ei, NULL);
    k = NULL;
    assert_int_equal(dcms_sign_key_load_or_create(f->key_path, &k, &ei), DCMS_ERR_CONFIG);
    assert_null(k);
}
AUDIT_CASE(key_file)

/* ---- details through each backend's JSON storage ---- */

/*
 * PostgreSQL keeps details as JSONB (keys reordered, numbers as numeric,
 * whitespace gone), SQLite as text: what comes back must hash the same.
 */
static void details_round_trip(struct fixture *f)
{
    open_both(f, 3, 0, 0);
    assert_verifies(f->audit, 0, 0); /* the empty chain */
    static const char *const docs[] = {
        "{}",
        "{\"z\":1,\"a\":2,\"mm\":{\"b\":[1,2,{\"c\":null}],\"a\":true}}",
        "{\"big\":9007199254740993,\"neg\":-9223372036854775807,\"zero\":0}",
        "{\"f\":1.5,\"tiny\":5e-324,\"huge\":1e300,\"third\":0.3333333333333333,\"one\":1.0}",
        "{\"s\":\"caf\\u00e9 \\u20ac \\ud83d\\ude00 \\\"q\\\" \\\\ \\n\\t\\u001f </script>\"}",
        "{\"\\u00e9\":1,\"\\ud83d\\ude00\":2,\"\\uff21\":3,\"a\":4}",
        "{\"empty\":\"\",\"arr\":[],\"obj\":{}}",
    };
    const size_t n = sizeof(docs) / sizeof(docs[0]);
    for (size_t i = 0; i < n; i++) {
        json_t *d = NULL;
        if (dcms_json_parse(dcms_str_from(docs[i]), 0, &d, NULL))
            fail_msg("test document %zu does not parse", i);
        struct dcms_audit_event ev = {.actor = "user-\xc3\xa9",
                                      .action = "test.details",
                                      .resource_type = NULL,
                                      .resource_id = NULL,
                                      .outcome = i % 2 ? DCMS_AUDIT_ERROR : DCMS_AUDIT_DENIED,
                                      .details = d,
                                      .client_ip = i % 2 ? "2001:db8::1" : NULL,
                                      .request_id = NULL};
        struct dcms_errinfo ei;
        dcms_errinfo_init(&ei, NULL);
        CHECK(dcms_audit_record(f->audit, &ev, &ei), ei);
        json_decref(d);
        struct dcms_audit_report r;
        verify(f->audit, &r);
        if (!r.ok)
            fail_msg("details %s: verify failed at seq %lld: %s", docs[i],
                     (long long)r.first_bad_seq, r.reason);
    }
    assert_verifies(f->audit, (int64_t)n, (int64_t)n / 3);

    /* Bad input is refused before anything is written. */
    json_t *arr = json_array();
    struct dcms_audit_event ev = {
        .actor = "x", .action = "test.bad", .outcome = DCMS_AUDIT_SUCCESS, .details = arr};
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    assert_true(dcms_audit_record(f->audit, &ev, &ei) != DCMS_OK);
    json_decref(arr);
    ev.details = NULL;
    ev.actor = NULL;
    assert_true(dcms_audit_record(f->audit, &ev, &ei) != DCMS_OK);
    assert_int_equal(count_events(f), (int64_t)n);
}
AUDIT_CASE(details_round_trip)

/* ---- the Merkle tree ---- */

/*
 * Events appended in separate transactions and sequenced in one batch: one
 * tree head. Then, for every tree size m up to the log and every event in
 * it, the inclusion proof built from stored subtrees verifies (RFC 9162
 * 2.1.3.2) against the root of a compact range fed the leaves in order (a
 * different computation), and every consistency proof m1 -> m2 verifies; a
 * changed path element, or another leaf, does not.
 */
static void tree_proofs(struct fixture *f)
{
    open_both(f, 1000, 0, 0);
    const int n = 37;
    for (int i = 0; i < n; i++) { /* no sync between: one batch sequences them all */
        json_t *d = json_pack("{s:i}", "i", i);
        struct dcms_audit_event ev = {.actor = "u", .action = "test.tree", .details = d};
        struct dcms_errinfo ei;
        dcms_errinfo_init(&ei, NULL);
        struct dcms_store_tx *tx = begin(f->store, DCMS_TX_WRITE);
        CHECK(dcms_audit_append(f->audit, tx, &ev, NULL, &ei), ei);
        commit(tx);
        json_decref(d);
    }
    int64_t heads_before = sql_int(f, "SELECT count(*) FROM audit_tree_heads");
    assert_int_equal(sync_head(f->audit, f->store), n);
    assert_true(sql_int(f, "SELECT count(*) FROM audit_tree_heads") <= heads_before + 1);
    assert_verifies(f->audit, n, -1);

    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_store_tx *tx = begin(f->store, DCMS_TX_READ);
    json_t *events = json_array();
    CHECK(audit_store_events_range(tx, 1, n, n, events, &ei), ei);
    dcms_store_rollback(tx);
    assert_int_equal(json_array_size(events), n);
    unsigned char leaves[37][AUDIT_HASH_LEN], roots[38][AUDIT_HASH_LEN];
    struct audit_range r;
    audit_range_init(&r);
    audit_range_root(&r, roots[0]);
    for (int i = 0; i < n; i++) {
        json_t *body = json_deep_copy(json_array_get(events, (size_t)i));
        char hash[65];
        json_object_del(body, "hash");
        CHECK(audit_event_hashes(body, hash, leaves[i], &ei), ei);
        json_decref(body);
        audit_range_push(&r, leaves[i], NULL);
        audit_range_root(&r, roots[i + 1]);
    }
    json_decref(events);
    for (int m = 1; m <= n; m++) {
        for (int seq = 1; seq <= m; seq++) {
            json_t *proof = NULL;
            CHECK(dcms_audit_inclusion(f->audit, seq, m, &proof, &ei), ei);
            json_t *path = json_object_get(proof, "audit_path");
            assert_true(audit_verify_inclusion(seq - 1, m, leaves[seq - 1], path, roots[m]));
            if (m > 1) {
                assert_false(audit_verify_inclusion(seq - 1, m, leaves[seq % m], path, roots[m]));
                json_array_set_new(path, 0, json_string(AUDIT_GENESIS_HASH));
                assert_false(audit_verify_inclusion(seq - 1, m, leaves[seq - 1], path, roots[m]));
            }
            json_decref(proof);
        }
        for (int m1 = 1; m1 <= m; m1++) {
            json_t *proof = NULL;
            CHECK(dcms_audit_consistency(f->audit, m1, m, &proof, &ei), ei);
            json_t *path = json_object_get(proof, "consistency_path");
            assert_true(audit_verify_consistency(m1, m, roots[m1], roots[m], path));
            if (m1 < m) {
                assert_false(audit_verify_consistency(m1, m, roots[m1 - 1], roots[m], path));
                json_array_set_new(path, 0, json_string(AUDIT_GENESIS_HASH));
                assert_false(audit_verify_consistency(m1, m, roots[m1], roots[m], path));
            }
            json_decref(proof);
        }
    }
    /* Beyond the signed tree: a field problem, not a proof. */
    json_t *none = NULL;
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(dcms_audit_inclusion(f->audit, 1, n + 1, &none, &ei), DCMS_ERR_VALIDATION);
    assert_null(none);
}
AUDIT_CASE(tree_proofs)

/* At the shutdown deadline a verification stops between batches with 503 (unavailable). */
static void cancel_stops_verify(struct fixture *f)
{
    open_both(f, 50, 0, 0);
    append_n(f, 3);
    struct dcms_audit_report before;
    verify(f->audit, &before);
    assert_true(before.ok);
    dcms_cancel_all(); /* this process ends with the case (one ctest entry per case) */
    struct dcms_audit_report r;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(dcms_audit_verify(f->audit, &r, &ei), DCMS_ERR_UNAVAILABLE);
    assert_non_null(strstr(ei.message, "shutting down"));
}
AUDIT_CASE(cancel_stops_verify)

static const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(concurrent_appends_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(concurrent_appends_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(two_instances_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(two_instances_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(tamper_edit_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(tamper_edit_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(tamper_delete_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(tamper_delete_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(tamper_rewrite_tail_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(tamper_rewrite_tail_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(tamper_delete_tail_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(tamper_delete_tail_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(tamper_checkpoint_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(tamper_checkpoint_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(rollback_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(rollback_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(write_failure_fails_change_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(write_failure_fails_change_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(sequencer_outage_logged_once_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(sequencer_outage_logged_once_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(admit_holds_writers_while_behind_sqlite, setup_sqlite,
                                    teardown),
    cmocka_unit_test_setup_teardown(admit_holds_writers_while_behind_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(checkpoint_timer_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(checkpoint_timer_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(checkpoint_on_close_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(checkpoint_on_close_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(refusal_rate_limit_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(refusal_rate_limit_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(refusal_limit_shared_slot_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(refusal_limit_shared_slot_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(key_file_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(key_file_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(details_round_trip_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(details_round_trip_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(cancel_stops_verify_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(cancel_stops_verify_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(tree_proofs_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(tree_proofs_pg, setup_pg, teardown),
};

DCMS_TEST_MAIN(tests)
