/*
 * bench_audit: what the audit chain costs a write.
 *
 *     bench_audit STORE_URL KEY_FILE SECONDS THREADS...
 *
 * For each thread count, measures for SECONDS each (a) a plain insert of one
 * row with the columns of audit_events into a scratch table with no
 * constraints or indexes, and (b) dcms_audit_append (checkpoint every 1000,
 * no timer); every operation in a write transaction of its own, retried on
 * DCMS_ERR_RETRY. Prints one line per thread count:
 *
 *     threads=N plain_per_s=X audit_per_s=Y retries=R
 *
 * then verifies the chain and exits 1 on any failure. bench/bench-audit.sh
 * runs it on SQLite and PostgreSQL and prints the table.
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dcms/audit.h"
#include "dcms/clock.h"
#include "dcms/crypto.h"
#include "dcms/json.h"
#include "dcms/log.h"
#include "dcms/store.h"
#include "dcms/uuid.h"

#define MAX_THREADS 64
#define MAX_ATTEMPTS 10000

/*
 * The baseline is the same row stored the same way: a table with the columns,
 * keys and indexes of audit_events (what an unchained but equally searchable
 * audit table would need), so the difference is the chain itself: the head
 * compare-and-set, canonical JSON and SHA-256.
 */
static struct dcms_query q_create_plain[] = {
    DCMS_QUERY2("bench_create_plain",
                "CREATE TABLE IF NOT EXISTS bench_plain (seq INTEGER PRIMARY KEY, "
                "id TEXT NOT NULL UNIQUE, time TEXT NOT NULL, actor TEXT NOT NULL, "
                "action TEXT NOT NULL, resource_type TEXT, resource_id TEXT, "
                "outcome TEXT NOT NULL, details TEXT NOT NULL CHECK (json_valid(details)), "
                "client_ip TEXT, request_id TEXT, prev_hash TEXT NOT NULL, "
                "hash TEXT NOT NULL UNIQUE) STRICT",
                "CREATE TABLE IF NOT EXISTS bench_plain (LIKE audit_events INCLUDING ALL)"),
    DCMS_QUERY2("bench_create_plain_time",
                "CREATE INDEX IF NOT EXISTS bench_plain_time ON bench_plain (time)", "SELECT 1"),
    DCMS_QUERY2("bench_create_plain_actor",
                "CREATE INDEX IF NOT EXISTS bench_plain_actor ON bench_plain (actor, seq)",
                "SELECT 1"),
    DCMS_QUERY2("bench_create_plain_action",
                "CREATE INDEX IF NOT EXISTS bench_plain_action ON bench_plain (action, seq)",
                "SELECT 1"),
    DCMS_QUERY2("bench_create_plain_resource",
                "CREATE INDEX IF NOT EXISTS bench_plain_resource ON bench_plain "
                "(resource_type, resource_id, seq)",
                "SELECT 1"),
};

/* Plain rows need unique keys too: one counter across workers and runs, continuing from the
 * rows a run before this process left in the same scratch store. */
static atomic_llong plain_seq;
static struct dcms_query q_plain_max =
    DCMS_QUERY("bench_plain_max", "SELECT COALESCE(MAX(seq), 0) FROM bench_plain");

/* The same values an append binds, with the same casts on PostgreSQL. */
static struct dcms_query q_insert_plain = DCMS_QUERY2(
    "bench_insert_plain",
    "INSERT INTO bench_plain (seq, id, time, actor, action, resource_type, resource_id, outcome, "
    "details, client_ip, request_id, prev_hash, hash) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    "INSERT INTO bench_plain (seq, id, time, actor, action, resource_type, resource_id, outcome, "
    "details, client_ip, request_id, prev_hash, hash) "
    "VALUES ($1, CAST($2 AS UUID), CAST($3 AS TIMESTAMPTZ), $4, $5, $6, $7, $8, "
    "CAST($9 AS JSONB), $10, $11, $12, $13)");

#define FAKE_HASH "5f1e3a0c9b7d2e4f6a8c0e2d4b6f8a0c1e3d5f7a9b1c3e5d7f9a1b3c5d7e9f0a"

enum op { OP_PLAIN, OP_AUDIT };

struct worker {
    struct dcms_store *store;
    struct dcms_audit *audit;
    enum op op;
    int n;
    int64_t deadline_us;
    uint64_t done, retries;
    enum dcms_err failed;
    char message[256];
};

static enum dcms_err plain_once(struct worker *w, uint64_t i, struct dcms_errinfo *ei)
{
    char id[DCMS_UUID_STRLEN], now[DCMS_TIME_STRLEN], details[64], rid[32];
    dcms_uuid_v7(id);
    dcms_time_format(dcms_clock_now_us(), now);
    snprintf(details, sizeof(details), "{\"i\":%" PRIu64 ",\"w\":%d}", i, w->n);
    snprintf(rid, sizeof(rid), "bench-%d-%" PRIu64, w->n, i);
    char hash[65]; /* unique and hash-sized: the id, then filler */
    memcpy(hash, id, 36);
    memcpy(hash + 36, FAKE_HASH, 28);
    hash[64] = '\0';
    long long seq = atomic_fetch_add(&plain_seq, 1) + 1;
    struct dcms_store_val p[] = {
        DCMS_VAL_INT(seq),
        DCMS_VAL_TEXT(id),
        DCMS_VAL_TEXT(now),
        DCMS_VAL_TEXT("bench"),
        DCMS_VAL_TEXT("bench.write"),
        DCMS_VAL_TEXT("thing"),
        DCMS_VAL_TEXT(rid),
        DCMS_VAL_TEXT("success"),
        DCMS_VAL_TEXT(details),
        DCMS_VAL_TEXT("192.0.2.1"),
        DCMS_VAL_TEXT(rid),
        DCMS_VAL_TEXT(FAKE_HASH),
        DCMS_VAL_TEXT(hash),
    };
    struct dcms_store_tx *tx;
    enum dcms_err e = dcms_store_begin(w->store, DCMS_TX_WRITE, &tx, ei);
    if (e)
        return e;
    if ((e = dcms_store_exec(tx, &q_insert_plain, p, 13, NULL, NULL, ei))) {
        dcms_store_rollback(tx);
        return e;
    }
    return dcms_store_commit(tx, ei);
}

static enum dcms_err audit_once(struct worker *w, uint64_t i, struct dcms_errinfo *ei)
{
    char rid[32];
    snprintf(rid, sizeof(rid), "bench-%d-%" PRIu64, w->n, i);
    json_t *d = json_pack("{s:I, s:i}", "i", (json_int_t)i, "w", w->n);
    if (!d)
        return DCMS_ERR_NOMEM;
    struct dcms_audit_event ev = {.actor = "bench",
                                  .action = "bench.write",
                                  .resource_type = "thing",
                                  .resource_id = rid,
                                  .outcome = DCMS_AUDIT_SUCCESS,
                                  .details = d,
                                  .client_ip = "192.0.2.1",
                                  .request_id = rid};
    struct dcms_store_tx *tx;
    (void)dcms_audit_admit(w->audit); /* as the server does before each write request */
    enum dcms_err e = dcms_store_begin(w->store, DCMS_TX_WRITE, &tx, ei);
    if (!e) {
        if ((e = dcms_audit_append(w->audit, tx, &ev, NULL, ei)))
            dcms_store_rollback(tx);
        else
            e = dcms_store_commit(tx, ei);
    }
    json_decref(d);
    return e;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    for (uint64_t i = 0; dcms_clock_mono_us() < w->deadline_us; i++) {
        for (int attempt = 0;; attempt++) {
            struct dcms_errinfo ei;
            dcms_errinfo_init(&ei, NULL);
            enum dcms_err e = w->op == OP_PLAIN ? plain_once(w, i, &ei) : audit_once(w, i, &ei);
            if (!e) {
                w->done++;
                break;
            }
            if (e == DCMS_ERR_RETRY && attempt < MAX_ATTEMPTS) {
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

/* Runs `threads` workers of `op` for `seconds`; returns operations per second, or -1. */
static double measure(struct dcms_store *s, struct dcms_audit *a, enum op op, int threads,
                      int seconds, uint64_t *retries)
{
    struct worker w[MAX_THREADS];
    pthread_t t[MAX_THREADS];
    int64_t start = dcms_clock_mono_us();
    int started = 0;
    for (int i = 0; i < threads; i++) {
        w[i] = (struct worker){.store = s,
                               .audit = a,
                               .op = op,
                               .n = i,
                               .deadline_us = start + (int64_t)seconds * 1000000};
        if (pthread_create(&t[i], NULL, worker_main, &w[i]) != 0) {
            fprintf(stderr, "bench_audit: cannot start a thread\n");
            break;
        }
        started++;
    }
    uint64_t done = 0;
    bool ok = started == threads;
    for (int i = 0; i < started; i++) {
        pthread_join(t[i], NULL);
        done += w[i].done;
        *retries += w[i].retries;
        if (w[i].failed) {
            fprintf(stderr, "bench_audit: %s worker %d failed: %s (%s)\n",
                    op == OP_PLAIN ? "plain" : "audit", i, dcms_err_slug(w[i].failed),
                    w[i].message);
            ok = false;
        }
    }
    double elapsed_s = (double)(dcms_clock_mono_us() - start) / 1e6;
    return ok ? (double)done / elapsed_s : -1;
}

static struct dcms_query q_head_seq =
    DCMS_QUERY("bench_head_seq", "SELECT seq FROM audit_head WHERE id = 1");

/* How long each event of the run waited for its position: from its time (taken just before
 * its commit) to the first signed tree head that covers it, in ms, ascending. */
static struct dcms_query q_delays =
    DCMS_QUERY2("bench_delays",
                "SELECT (julianday((SELECT time FROM audit_tree_heads WHERE tree_size >= e.seq "
                "ORDER BY tree_size LIMIT 1)) - julianday(e.time)) * 86400000.0 "
                "FROM audit_events e WHERE e.seq > $1 ORDER BY 1",
                "SELECT EXTRACT(EPOCH FROM (h.time - e.time)) * 1000 FROM audit_events e, "
                "LATERAL (SELECT time FROM audit_tree_heads WHERE tree_size >= e.seq "
                "ORDER BY tree_size LIMIT 1) h WHERE e.seq > $1 ORDER BY 1");

static enum dcms_err head_seq(struct dcms_store *s, int64_t *seq, struct dcms_errinfo *ei)
{
    struct dcms_store_tx *tx;
    enum dcms_err e = dcms_store_begin(s, DCMS_TX_READ, &tx, ei);
    if (e)
        return e;
    e = dcms_store_exec_int(tx, &q_head_seq, NULL, 0, seq, ei);
    dcms_store_rollback(tx);
    return e;
}

static enum dcms_err delay_p99(struct dcms_store *s, int64_t after, double *p99,
                               struct dcms_errinfo *ei)
{
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_begin(s, DCMS_TX_READ, &tx, ei);
    if (e)
        return e;
    e = dcms_store_exec(tx, &q_delays, &DCMS_VAL_INT(after), 1, &rows, NULL, ei);
    dcms_store_rollback(tx);
    if (e)
        return e;
    size_t n = dcms_store_rows_count(rows);
    *p99 = 0;
    if (n) {
        const char *t = dcms_store_rows_text(rows, (n * 99 + 99) / 100 - 1, 0);
        *p99 = t ? strtod(t, NULL) : -1;
    }
    dcms_store_rows_free(rows);
    return DCMS_OK;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: bench_audit STORE_URL KEY_FILE SECONDS THREADS...\n");
        return 2;
    }
    int seconds = (int)strtol(argv[3], NULL, 10);
    if (seconds < 1 || seconds > 3600) {
        fprintf(stderr, "bench_audit: SECONDS must be 1 to 3600\n");
        return 2;
    }
    int max_threads = 1;
    for (int i = 4; i < argc; i++) {
        int n = (int)strtol(argv[i], NULL, 10);
        if (n < 1 || n > MAX_THREADS) {
            fprintf(stderr, "bench_audit: THREADS must be 1 to %d\n", MAX_THREADS);
            return 2;
        }
        if (n > max_threads)
            max_threads = n;
    }
    dcms_log_set_level(DCMS_LOG_WARN); /* no migration chatter between the figures */
    if (dcms_crypto_init()) {
        fprintf(stderr, "bench_audit: cannot initialize libsodium\n");
        return 1;
    }

    int status = 1;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_store *s = NULL;
    struct dcms_audit *a = NULL;
    struct dcms_store_opts sopts = {(unsigned)max_threads, 30000};
    if (dcms_store_open(argv[1], &sopts, &s, &ei)) {
        fprintf(stderr, "bench_audit: cannot open the store: %s\n", ei.message);
        goto out;
    }
    struct dcms_audit_opts aopts = {
        .key_path = argv[2], .checkpoint_every = 1000, .database_url = argv[1]};
    if (dcms_audit_open(s, &aopts, &a, &ei)) {
        fprintf(stderr, "bench_audit: cannot open the audit log: %s\n", ei.message);
        goto out;
    }
    struct dcms_store_tx *tx;
    enum dcms_err e = dcms_store_begin(s, DCMS_TX_WRITE, &tx, &ei);
    if (!e) {
        for (size_t q = 0; !e && q < sizeof(q_create_plain) / sizeof(q_create_plain[0]); q++)
            e = dcms_store_exec(tx, &q_create_plain[q], NULL, 0, NULL, NULL, &ei);
        int64_t last = 0;
        if (!e && !(e = dcms_store_exec_int(tx, &q_plain_max, NULL, 0, &last, &ei)))
            atomic_store(&plain_seq, (long long)last);
        if (e)
            dcms_store_rollback(tx);
        else
            e = dcms_store_commit(tx, &ei);
    }
    if (e) {
        fprintf(stderr, "bench_audit: cannot create the scratch table: %s\n", ei.message);
        goto out;
    }

    for (int i = 4; i < argc; i++) {
        int n = (int)strtol(argv[i], NULL, 10);
        uint64_t retries = 0;
        int64_t seq_before = 0;
        double p99 = -1;
        double plain = measure(s, a, OP_PLAIN, n, seconds, &retries);
        if (plain >= 0 && (dcms_audit_sync(a, &ei) || head_seq(s, &seq_before, &ei)))
            plain = -1;
        double audit = plain < 0 ? -1 : measure(s, a, OP_AUDIT, n, seconds, &retries);
        if (audit >= 0 && (dcms_audit_sync(a, &ei) || delay_p99(s, seq_before, &p99, &ei)))
            audit = -1;
        if (plain < 0 || audit < 0) {
            if (ei.code)
                fprintf(stderr, "bench_audit: %s\n", ei.message);
            goto out;
        }
        printf("threads=%d plain_per_s=%.0f audit_per_s=%.0f retries=%" PRIu64 " seq_p99_ms=%.1f\n",
               n, plain, audit, retries, p99);
        fflush(stdout);
    }

    struct dcms_audit_report r;
    if (dcms_audit_verify(a, &r, &ei)) {
        fprintf(stderr, "bench_audit: cannot verify: %s\n", ei.message);
        goto out;
    }
    printf("verify ok=%s events=%" PRId64 " checkpoints=%" PRId64 "\n", r.ok ? "true" : "false",
           r.events_checked, r.checkpoints_checked);
    status = r.ok ? 0 : 1;
    if (!r.ok)
        fprintf(stderr, "bench_audit: the chain does not verify at seq %" PRId64 ": %s\n",
                r.first_bad_seq, r.reason);
out:
    dcms_audit_close(a);
    dcms_store_close(s);
    return status;
}
