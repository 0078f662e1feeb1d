/*
 * The store (src/store/): every case runs against SQLite (a fresh file in a
 * fresh directory) and, as its own ctest entry ending in _pg, against
 * PostgreSQL in a fresh database made for the case on the server named by
 * DCMS_TEST_PG_URL (an admin URL such as
 * postgres://dcms:pw@127.0.0.1:PORT/postgres) and dropped afterwards.
 * Without DCMS_TEST_PG_URL the _pg entries are skipped, except under CI=true,
 * where they fail: CI must test both backends.
 *
 * Covered: migrations at open (and none on reopen), value round trips
 * (text, int, NULL, timestamps in the one RFC 3339 form), affected rows,
 * rollback, conflicts (unique, foreign key, check), per-backend SQL, pool
 * exhaustion, concurrent writers, a schema newer than the binary, bad URLs
 * and an unreachable server; statements held back to the next one or the
 * commit (exec_later), one-statement reads (read_one) and a last statement
 * that carries the COMMIT (commit_with_next), with the round trips they
 * save on PostgreSQL.
 */
#include "testdb.h"
#include "testutil.h"

#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "dcms/clock.h"
#include "dcms/store.h"
#include "dcms/uuid.h"
#include "store/store_int.h"

struct fixture {
    struct dcms_testdb db; /* first: see testdb.h */
    struct dcms_store *store;
};

/* ---- fixtures ---- */

static int setup_sqlite(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    if (!dcms_testdb_make_dir(&f->db, "/tmp/dcms-store-XXXXXX")) {
        free(f);
        return -1;
    }
    dcms_testdb_use_sqlite(&f->db);
    *state = f;
    return 0;
}

static int setup_pg(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    *state = f;
    return dcms_testdb_use_pg(&f->db, "dcms_u_");
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    dcms_store_close(f->store);
    dcms_testdb_cleanup(&f->db); /* SQLite: the directory; PostgreSQL: the database */
    free(f);
    return 0;
}

#define STORE_CASE(name) DCMS_TESTDB_CASE(name)

/* ---- helpers ---- */

static struct dcms_store *open_store(struct fixture *f, unsigned pool_size, unsigned timeout_ms)
{
    struct dcms_store_opts opts = {pool_size, timeout_ms};
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    dcms_store_close(f->store);
    f->store = NULL;
    CHECK(dcms_store_open(f->db.url, &opts, &f->store, &ei), ei);
    assert_non_null(f->store);
    assert_int_equal(dcms_store_backend(f->store),
                     f->db.bk == BK_PG ? DCMS_STORE_PG : DCMS_STORE_SQLITE);
    return f->store;
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

/* Runs `q`, which must succeed; returns the rows (when `want_rows`) and the affected count. */
static struct dcms_store_rows *run(struct dcms_store_tx *tx, struct dcms_query *q,
                                   const struct dcms_store_val *p, size_t n, bool want_rows,
                                   uint64_t *affected)
{
    struct dcms_store_rows *rows = NULL;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    enum dcms_err e = dcms_store_exec(tx, q, p, n, want_rows ? &rows : NULL, affected, &ei);
    if (e)
        fail_msg("query %s: %s (%s)", q->name, dcms_err_slug(e), ei.message);
    if (want_rows)
        assert_non_null(rows);
    return rows;
}

/* Runs `q`, which must fail; returns the error and leaves the message in `ei`. */
static enum dcms_err run_err(struct dcms_store_tx *tx, struct dcms_query *q,
                             const struct dcms_store_val *p, size_t n, struct dcms_errinfo *ei)
{
    struct dcms_store_rows *rows = (struct dcms_store_rows *)ei; /* must come back NULL */
    dcms_errinfo_init(ei, NULL);
    enum dcms_err e = dcms_store_exec(tx, q, p, n, &rows, NULL, ei);
    if (!e)
        fail_msg("query %s succeeded", q->name);
    assert_null(rows);
    assert_int_equal(ei->code, e);
    return e;
}

static struct dcms_query q_ins_identity = DCMS_QUERY(
    "t_ins_identity", "INSERT INTO identities (id, kind, name, email, created_at, updated_at) "
                      "VALUES ($1, $2, $3, $4, $5, $6)");
static struct dcms_query q_count_identities =
    DCMS_QUERY("t_count_identities", "SELECT COUNT(*) FROM identities");

#define TS1 "2026-11-23T20:14:19.123456Z"

/* Inserts an identity (email may be NULL); the new id goes to `id` when set. */
static void insert_identity(struct dcms_store_tx *tx, const char *kind, const char *email,
                            char *id_out)
{
    char id[DCMS_UUID_STRLEN];
    dcms_uuid_v7(id);
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(id),    DCMS_VAL_TEXT(kind),
                                 DCMS_VAL_TEXT("Ada"), email ? DCMS_VAL_TEXT(email) : DCMS_VAL_NULL,
                                 DCMS_VAL_TEXT(TS1),   DCMS_VAL_TEXT(TS1)};
    uint64_t affected = 0;
    run(tx, &q_ins_identity, p, 6, false, &affected);
    assert_int_equal(affected, 1);
    if (id_out)
        memcpy(id_out, id, DCMS_UUID_STRLEN);
}

static int64_t count_identities(struct dcms_store *s)
{
    struct dcms_store_tx *tx = begin(s, DCMS_TX_READ);
    struct dcms_store_rows *rows = run(tx, &q_count_identities, NULL, 0, true, NULL);
    assert_int_equal(dcms_store_rows_count(rows), 1);
    int64_t n = dcms_store_rows_int(rows, 0, 0);
    dcms_store_rows_free(rows);
    commit(tx);
    return n;
}

/* ---- cases ---- */

static struct dcms_query q_migrations = DCMS_QUERY(
    "t_migrations", "SELECT version, name, applied_at FROM schema_migrations ORDER BY version");
static struct dcms_query q_tables = DCMS_QUERY2(
    "t_tables",
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN "
    "('identities', 'contracts', 'enclaves', 'audit_events') ORDER BY name",
    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND "
    "table_name IN ('identities', 'contracts', 'enclaves', 'audit_events') ORDER BY table_name");

static size_t known_migrations(enum dcms_testdb_backend bk)
{
    size_t n = 0;
    for (const struct dcms_migration *m = bk == BK_PG ? dcms_migrations_pg : dcms_migrations_sqlite;
         m->sql; m++)
        n++;
    return n;
}

static void open_migrates(struct fixture *f)
{
    struct dcms_store *s = open_store(f, 2, 0);
    assert_string_equal(dcms_store_backend_name(s), f->db.bk == BK_PG ? "postgres" : "sqlite");
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    CHECK(dcms_store_ping(s, &ei), ei);
    if (f->db.bk == BK_SQLITE) {
        /* The store made the database's directory, private to its owner. */
        char dir[128];
        struct stat st;
        snprintf(dir, sizeof(dir), "%s/db", f->db.dir);
        assert_int_equal(stat(dir, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0700);
    }

    struct dcms_store_tx *tx = begin(s, DCMS_TX_READ);
    struct dcms_store_rows *rows = run(tx, &q_migrations, NULL, 0, true, NULL);
    assert_int_equal(dcms_store_rows_columns(rows), 3);
    assert_int_equal(dcms_store_rows_count(rows), known_migrations(f->db.bk));
    assert_int_equal(dcms_store_rows_int(rows, 0, 0), 1);
    assert_string_equal(dcms_store_rows_text(rows, 0, 1), "init");
    char applied[64];
    snprintf(applied, sizeof(applied), "%s", dcms_store_rows_text(rows, 0, 2));
    int64_t applied_us;
    if (dcms_time_parse(applied, &applied_us))
        fail_msg("applied_at \"%s\" is not RFC 3339", applied);
    assert_int_equal(strlen(applied), DCMS_TIME_STRLEN - 1);
    dcms_store_rows_free(rows);

    rows = run(tx, &q_tables, NULL, 0, true, NULL);
    assert_int_equal(dcms_store_rows_count(rows), 4);
    assert_string_equal(dcms_store_rows_text(rows, 0, 0), "audit_events");
    assert_string_equal(dcms_store_rows_text(rows, 1, 0), "contracts");
    assert_string_equal(dcms_store_rows_text(rows, 2, 0), "enclaves");
    assert_string_equal(dcms_store_rows_text(rows, 3, 0), "identities");
    dcms_store_rows_free(rows);
    commit(tx);

    /* Reopening applies nothing: the same rows, the same time. */
    s = open_store(f, 2, 0);
    tx = begin(s, DCMS_TX_READ);
    rows = run(tx, &q_migrations, NULL, 0, true, NULL);
    assert_int_equal(dcms_store_rows_count(rows), known_migrations(f->db.bk));
    assert_string_equal(dcms_store_rows_text(rows, 0, 2), applied);
    dcms_store_rows_free(rows);
    commit(tx);
}
STORE_CASE(open_migrates)

static struct dcms_query q_get_identity =
    DCMS_QUERY("t_get_identity", "SELECT id, kind, name, email, created_at, updated_at, version, "
                                 "verified_at, roles FROM identities WHERE id = $1");
static struct dcms_query q_set_version = DCMS_QUERY(
    "t_set_version", "UPDATE identities SET version = $1, verified_at = $2, verified_by = $3 "
                     "WHERE id = $4");
static struct dcms_query q_get_version = DCMS_QUERY(
    "t_get_version", "SELECT version, verified_at, verified_by FROM identities WHERE id = $1");

static void round_trip(struct fixture *f)
{
    struct dcms_store *s = open_store(f, 2, 0);
    const char *name = "O'Brien \"Bob\" \\ caf\xc3\xa9 \xe2\x82\xac; DROP TABLE identities; --";
    char id[DCMS_UUID_STRLEN];
    dcms_uuid_v7(id);

    struct dcms_store_tx *tx = begin(s, DCMS_TX_WRITE);
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(id),
                                 DCMS_VAL_TEXT("organization"),
                                 DCMS_VAL_TEXT(name),
                                 DCMS_VAL_NULL,
                                 DCMS_VAL_TEXT("2026-11-23T20:14:19.123456Z"),
                                 DCMS_VAL_TEXT("2026-11-23T20:14:19.000000Z")};
    run(tx, &q_ins_identity, p, 6, false, NULL);
    commit(tx);

    tx = begin(s, DCMS_TX_READ);
    struct dcms_store_rows *rows = run(tx, &q_get_identity, &DCMS_VAL_TEXT(id), 1, true, NULL);
    assert_int_equal(dcms_store_rows_count(rows), 1);
    assert_int_equal(dcms_store_rows_columns(rows), 9);
    assert_string_equal(dcms_store_rows_text(rows, 0, 0), id);
    assert_string_equal(dcms_store_rows_text(rows, 0, 1), "organization");
    assert_string_equal(dcms_store_rows_text(rows, 0, 2), name);
    assert_true(dcms_store_rows_is_null(rows, 0, 3));
    assert_null(dcms_store_rows_text(rows, 0, 3));
    assert_int_equal(dcms_store_rows_int(rows, 0, 3), 0);
    assert_string_equal(dcms_store_rows_text(rows, 0, 4), "2026-11-23T20:14:19.123456Z");
    assert_string_equal(dcms_store_rows_text(rows, 0, 5), "2026-11-23T20:14:19.000000Z");
    assert_int_equal(dcms_store_rows_int(rows, 0, 6), 1); /* the column default */
    assert_string_equal(dcms_store_rows_text(rows, 0, 6), "1");
    assert_true(dcms_store_rows_is_null(rows, 0, 7));
    assert_string_equal(dcms_store_rows_text(rows, 0, 8), "[]");
    assert_false(dcms_store_rows_is_null(rows, 0, 0));
    /* Out of range reads are NULL, not a crash. */
    assert_null(dcms_store_rows_text(rows, 1, 0));
    assert_null(dcms_store_rows_text(rows, 0, 9));
    dcms_store_rows_free(rows);

    /* No rows is an empty result, not NULL. */
    char other[DCMS_UUID_STRLEN];
    dcms_uuid_v7(other);
    rows = run(tx, &q_get_identity, &DCMS_VAL_TEXT(other), 1, true, NULL);
    assert_int_equal(dcms_store_rows_count(rows), 0);
    assert_int_equal(dcms_store_rows_columns(rows), 9);
    dcms_store_rows_free(rows);
    commit(tx);

    /* Integers (to the edge of INTEGER), and more timestamps, including a short fraction. */
    static const struct {
        int64_t v;
        const char *ts;
    } cases[] = {
        {2147483647, "2026-11-23T20:14:19.120000Z"},
        {-2147483647 - 1, "1970-01-01T00:00:00.000000Z"},
        {0, "1999-12-31T23:59:59.999999Z"},
        {42, "2026-11-23T20:14:19.000001Z"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tx = begin(s, DCMS_TX_WRITE);
        struct dcms_store_val up[] = {DCMS_VAL_INT(cases[i].v), DCMS_VAL_TEXT(cases[i].ts),
                                      DCMS_VAL_NULL, DCMS_VAL_TEXT(id)};
        uint64_t affected = 0;
        run(tx, &q_set_version, up, 4, false, &affected);
        assert_int_equal(affected, 1);
        commit(tx);

        tx = begin(s, DCMS_TX_READ);
        rows = run(tx, &q_get_version, &DCMS_VAL_TEXT(id), 1, true, NULL);
        assert_int_equal(dcms_store_rows_int(rows, 0, 0), cases[i].v);
        assert_string_equal(dcms_store_rows_text(rows, 0, 1), cases[i].ts);
        assert_true(dcms_store_rows_is_null(rows, 0, 2));
        dcms_store_rows_free(rows);
        commit(tx);
    }

    /* A timestamp made now comes back exactly as formatted. */
    char now[DCMS_TIME_STRLEN];
    dcms_time_format(dcms_clock_now_us(), now);
    tx = begin(s, DCMS_TX_WRITE);
    struct dcms_store_val up[] = {DCMS_VAL_INT(7), DCMS_VAL_TEXT(now), DCMS_VAL_TEXT("admin"),
                                  DCMS_VAL_TEXT(id)};
    run(tx, &q_set_version, up, 4, false, NULL);
    commit(tx);
    tx = begin(s, DCMS_TX_READ);
    rows = run(tx, &q_get_version, &DCMS_VAL_TEXT(id), 1, true, NULL);
    assert_string_equal(dcms_store_rows_text(rows, 0, 1), now);
    assert_string_equal(dcms_store_rows_text(rows, 0, 2), "admin");
    dcms_store_rows_free(rows);
    commit(tx);
}
STORE_CASE(round_trip)

static struct dcms_query q_get_name =
    DCMS_QUERY("t_get_name", "SELECT name, email FROM identities WHERE id = $1");

/* DCMS_VAL_TEXTN binds exactly `n` bytes, whatever follows them in memory. */
static void text_length_respected(struct fixture *f)
{
    struct dcms_store *s = open_store(f, 1, 0);
    char id[DCMS_UUID_STRLEN];
    dcms_uuid_v7(id);
    const char *buf = "Alice-and-more";
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(id),      DCMS_VAL_TEXT("user"),
                                 DCMS_VAL_TEXTN(buf, 5), DCMS_VAL_TEXTN("a@x.org,b@y.org", 7),
                                 DCMS_VAL_TEXT(TS1),     DCMS_VAL_TEXT(TS1)};
    struct dcms_store_tx *tx = begin(s, DCMS_TX_WRITE);
    run(tx, &q_ins_identity, p, 6, false, NULL);
    commit(tx);
    tx = begin(s, DCMS_TX_READ);
    struct dcms_store_rows *rows = run(tx, &q_get_name, &DCMS_VAL_TEXT(id), 1, true, NULL);
    char name[64], email[64];
    snprintf(name, sizeof(name), "%s", dcms_store_rows_text(rows, 0, 0));
    snprintf(email, sizeof(email), "%s", dcms_store_rows_text(rows, 0, 1));
    dcms_store_rows_free(rows);
    commit(tx);
    assert_string_equal(name, "Alice");
    assert_string_equal(email, "a@x.org");
}
STORE_CASE(text_length_respected)

static struct dcms_query q_rename_kind =
    DCMS_QUERY("t_rename_kind", "UPDATE identities SET name = $1 WHERE kind = $2");
static struct dcms_query q_delete_identity =
    DCMS_QUERY("t_delete_identity", "DELETE FROM identities WHERE id = $1");

static void affected_rows(struct fixture *f)
{
    struct dcms_store *s = open_store(f, 2, 0);
    char id[DCMS_UUID_STRLEN];
    struct dcms_store_tx *tx = begin(s, DCMS_TX_WRITE);
    insert_identity(tx, "user", "u1@x.org", id);
    insert_identity(tx, "user", "u2@x.org", NULL);
    insert_identity(tx, "service", NULL, NULL);
    commit(tx);

    uint64_t affected = 99;
    tx = begin(s, DCMS_TX_WRITE);
    run(tx, &q_rename_kind, (struct dcms_store_val[]){DCMS_VAL_TEXT("B"), DCMS_VAL_TEXT("user")}, 2,
        false, &affected);
    assert_int_equal(affected, 2);
    run(tx, &q_rename_kind,
        (struct dcms_store_val[]){DCMS_VAL_TEXT("C"), DCMS_VAL_TEXT("organization")}, 2, false,
        &affected);
    assert_int_equal(affected, 0);
    run(tx, &q_delete_identity, &DCMS_VAL_TEXT(id), 1, false, &affected);
    assert_int_equal(affected, 1);
    run(tx, &q_delete_identity, &DCMS_VAL_TEXT(id), 1, false, &affected);
    assert_int_equal(affected, 0);
    commit(tx);
    assert_int_equal(count_identities(s), 2);
}
STORE_CASE(affected_rows)

static void rollback_discards(struct fixture *f)
{
    struct dcms_store *s = open_store(f, 1, 0);
    struct dcms_store_tx *tx = begin(s, DCMS_TX_WRITE);
    insert_identity(tx, "user", "r1@x.org", NULL);
    insert_identity(tx, "user", "r2@x.org", NULL);
    dcms_store_rollback(tx);
    assert_int_equal(count_identities(s), 0);

    tx = begin(s, DCMS_TX_WRITE);
    insert_identity(tx, "user", "r1@x.org", NULL);
    commit(tx);
    assert_int_equal(count_identities(s), 1);

    /* After a failed statement, rolling back leaves the connection usable. */
    tx = begin(s, DCMS_TX_WRITE);
    insert_identity(tx, "user", "r3@x.org", NULL);
    char id[DCMS_UUID_STRLEN];
    dcms_uuid_v7(id);
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(id),    DCMS_VAL_TEXT("user"),
                                 DCMS_VAL_TEXT("Ada"), DCMS_VAL_TEXT("R1@X.ORG"),
                                 DCMS_VAL_TEXT(TS1),   DCMS_VAL_TEXT(TS1)};
    struct dcms_errinfo ei;
    assert_int_equal(run_err(tx, &q_ins_identity, p, 6, &ei), DCMS_ERR_CONFLICT);
    dcms_store_rollback(tx);
    assert_int_equal(count_identities(s), 1); /* r3 went with the rollback */
    tx = begin(s, DCMS_TX_WRITE);
    insert_identity(tx, "user", "r3@x.org", NULL);
    commit(tx);
    assert_int_equal(count_identities(s), 2);

    struct dcms_store_stats st;
    dcms_store_stats(s, &st);
    assert_int_equal(st.in_use, 0);
    dcms_store_rollback(NULL); /* a no-op */
}
STORE_CASE(rollback_discards)

/*
 * SQLite ends a transaction itself on some errors (a full disk, out of
 * memory); rolling back after that is quiet. It used to log "cannot rollback
 * - no transaction is active" once per refused request on a full disk.
 */
static void rollback_after_sqlite_ended_it(void **state)
{
    struct fixture *f = *state;
    struct dcms_store *s = open_store(f, 1, 0);
    struct dcms_store_tx *tx = begin(s, DCMS_TX_WRITE);
    insert_identity(tx, "user", "gone@x.org", NULL);
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    CHECK(s->be->exec_script(tx->entry->conn, "ROLLBACK", &ei), ei); /* as SQLite would */
    FILE *log = dcms_test_log_begin();
    dcms_store_rollback(tx);
    char *lines = dcms_test_log_end(log);
    assert_string_equal(lines, "");
    free(lines);
    assert_int_equal(count_identities(s), 0);
    tx = begin(s, DCMS_TX_WRITE); /* the connection is usable */
    insert_identity(tx, "user", "kept@x.org", NULL);
    commit(tx);
    assert_int_equal(count_identities(s), 1);
}

static void unique_conflict(struct fixture *f)
{
    struct dcms_store *s = open_store(f, 1, 0);
    char id[DCMS_UUID_STRLEN];
    struct dcms_store_tx *tx = begin(s, DCMS_TX_WRITE);
    insert_identity(tx, "user", "A@x.org", id);
    commit(tx);

    /* The email index is on lower(email). */
    char id2[DCMS_UUID_STRLEN];
    dcms_uuid_v7(id2);
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(id2),   DCMS_VAL_TEXT("user"),
                                 DCMS_VAL_TEXT("Ada"), DCMS_VAL_TEXT("a@x.org"),
                                 DCMS_VAL_TEXT(TS1),   DCMS_VAL_TEXT(TS1)};
    struct dcms_errinfo ei;
    tx = begin(s, DCMS_TX_WRITE);
    assert_int_equal(run_err(tx, &q_ins_identity, p, 6, &ei), DCMS_ERR_CONFLICT);
    /* The client sees no native text. */
    assert_null(strstr(ei.message, "identities"));
    assert_null(strstr(ei.message, "UNIQUE"));
    dcms_store_rollback(tx);

    /* The same primary key. */
    struct dcms_store_val p2[] = {DCMS_VAL_TEXT(id), DCMS_VAL_TEXT("user"), DCMS_VAL_TEXT("Ada"),
                                  DCMS_VAL_NULL,     DCMS_VAL_TEXT(TS1),    DCMS_VAL_TEXT(TS1)};
    tx = begin(s, DCMS_TX_WRITE);
    assert_int_equal(run_err(tx, &q_ins_identity, p2, 6, &ei), DCMS_ERR_CONFLICT);
    dcms_store_rollback(tx);

    /* Many NULL emails are fine (the index is partial). */
    tx = begin(s, DCMS_TX_WRITE);
    insert_identity(tx, "service", NULL, NULL);
    insert_identity(tx, "service", NULL, NULL);
    commit(tx);
    assert_int_equal(count_identities(s), 3);
}
STORE_CASE(unique_conflict)

static struct dcms_query q_ins_contract =
    DCMS_QUERY("t_ins_contract",
               "INSERT INTO contracts (id, title, provider_id, consumer_id, terms, "
               "terms_hash, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)");

static enum dcms_err insert_contract(struct dcms_store_tx *tx, const char *title,
                                     const char *provider, const char *consumer,
                                     struct dcms_errinfo *ei)
{
    char id[DCMS_UUID_STRLEN];
    dcms_uuid_v7(id);
    struct dcms_store_val p[] = {
        DCMS_VAL_TEXT(id),   DCMS_VAL_TEXT(title), DCMS_VAL_TEXT(provider), DCMS_VAL_TEXT(consumer),
        DCMS_VAL_TEXT("{}"), DCMS_VAL_TEXT("00"),  DCMS_VAL_TEXT(TS1),      DCMS_VAL_TEXT(TS1)};
    dcms_errinfo_init(ei, NULL);
    return dcms_store_exec(tx, &q_ins_contract, p, 8, NULL, NULL, ei);
}

static void foreign_key_conflict(struct fixture *f)
{
    struct dcms_store *s = open_store(f, 1, 0);
    char a[DCMS_UUID_STRLEN], b[DCMS_UUID_STRLEN], unknown[DCMS_UUID_STRLEN];
    struct dcms_store_tx *tx = begin(s, DCMS_TX_WRITE);
    insert_identity(tx, "organization", NULL, a);
    insert_identity(tx, "organization", NULL, b);
    commit(tx);
    dcms_uuid_v7(unknown);

    struct dcms_errinfo ei;
    tx = begin(s, DCMS_TX_WRITE);
    assert_int_equal(insert_contract(tx, "t", unknown, b, &ei), DCMS_ERR_CONFLICT);
    assert_int_equal(ei.code, DCMS_ERR_CONFLICT);
    dcms_store_rollback(tx);

    tx = begin(s, DCMS_TX_WRITE);
    CHECK(insert_contract(tx, "t", a, b, &ei), ei);
    commit(tx);
}
STORE_CASE(foreign_key_conflict)

static void check_conflict(struct fixture *f)
{
    struct dcms_store *s = open_store(f, 1, 0);
    char id[DCMS_UUID_STRLEN], a[DCMS_UUID_STRLEN];
    dcms_uuid_v7(id);
    struct dcms_errinfo ei;

    /* kind must be organization, user or service. */
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(id), DCMS_VAL_TEXT("robot"), DCMS_VAL_TEXT("Ada"),
                                 DCMS_VAL_NULL,     DCMS_VAL_TEXT(TS1),     DCMS_VAL_TEXT(TS1)};
    struct dcms_store_tx *tx = begin(s, DCMS_TX_WRITE);
    assert_int_equal(run_err(tx, &q_ins_identity, p, 6, &ei), DCMS_ERR_CONFLICT);
    dcms_store_rollback(tx);

    /* name must not be empty. */
    struct dcms_store_val p2[] = {DCMS_VAL_TEXT(id), DCMS_VAL_TEXT("user"), DCMS_VAL_TEXT(""),
                                  DCMS_VAL_NULL,     DCMS_VAL_TEXT(TS1),    DCMS_VAL_TEXT(TS1)};
    tx = begin(s, DCMS_TX_WRITE);
    assert_int_equal(run_err(tx, &q_ins_identity, p2, 6, &ei), DCMS_ERR_CONFLICT);
    dcms_store_rollback(tx);

    /* NOT NULL. */
    struct dcms_store_val p3[] = {DCMS_VAL_TEXT(id), DCMS_VAL_TEXT("user"), DCMS_VAL_NULL,
                                  DCMS_VAL_NULL,     DCMS_VAL_TEXT(TS1),    DCMS_VAL_TEXT(TS1)};
    tx = begin(s, DCMS_TX_WRITE);
    assert_int_equal(run_err(tx, &q_ins_identity, p3, 6, &ei), DCMS_ERR_CONFLICT);
    dcms_store_rollback(tx);

    /* A table-level check: a contract's provider and consumer differ. */
    tx = begin(s, DCMS_TX_WRITE);
    insert_identity(tx, "organization", NULL, a);
    commit(tx);
    tx = begin(s, DCMS_TX_WRITE);
    assert_int_equal(insert_contract(tx, "t", a, a, &ei), DCMS_ERR_CONFLICT);
    dcms_store_rollback(tx);
    assert_int_equal(count_identities(s), 1);
}
STORE_CASE(check_conflict)

static struct dcms_query q_which =
    DCMS_QUERY2("t_which", "SELECT 'sqlite' AS b", "SELECT 'postgres' AS b");
static struct dcms_query q_pg_override = {"t_pg_override", "SELECT 'common'", NULL,
                                          "SELECT 'pg-only'", 0};
static struct dcms_query q_only_sqlite = DCMS_QUERY2("t_only_sqlite", "SELECT 1", NULL);
static struct dcms_query q_only_pg = DCMS_QUERY2("t_only_pg", NULL, "SELECT 1");

static void per_backend_sql(struct fixture *f)
{
    struct dcms_store *s = open_store(f, 1, 0);
    struct dcms_store_tx *tx = begin(s, DCMS_TX_READ);
    struct dcms_store_rows *rows = run(tx, &q_which, NULL, 0, true, NULL);
    assert_string_equal(dcms_store_rows_text(rows, 0, 0), dcms_store_backend_name(s));
    dcms_store_rows_free(rows);
    rows = run(tx, &q_pg_override, NULL, 0, true, NULL);
    assert_string_equal(dcms_store_rows_text(rows, 0, 0), f->db.bk == BK_PG ? "pg-only" : "common");
    dcms_store_rows_free(rows);
    /* A query without SQL for this backend is an internal error, not a crash. */
    struct dcms_errinfo ei;
    assert_int_equal(run_err(tx, f->db.bk == BK_PG ? &q_only_sqlite : &q_only_pg, NULL, 0, &ei),
                     DCMS_ERR_INTERNAL);
    dcms_store_rollback(tx);

    /* The queries keep their slots across transactions and connections. */
    int slot = q_which.slot;
    assert_true(slot > 0);
    tx = begin(s, DCMS_TX_READ);
    rows = run(tx, &q_which, NULL, 0, true, NULL);
    dcms_store_rows_free(rows);
    commit(tx);
    assert_int_equal(q_which.slot, slot);
}
STORE_CASE(per_backend_sql)

static void pool_timeout(struct fixture *f)
{
    struct dcms_store *s = open_store(f, 1, 200);
    struct dcms_store_stats st;
    dcms_store_stats(s, &st);
    assert_int_equal(st.pool_size, 1);
    assert_int_equal(st.in_use, 0);
    assert_int_equal(st.timeouts_total, 0);

    struct dcms_store_tx *held = begin(s, DCMS_TX_WRITE);
    struct dcms_store_tx *tx = NULL;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    int64_t t0 = dcms_clock_mono_us();
    assert_int_equal(dcms_store_begin(s, DCMS_TX_READ, &tx, &ei), DCMS_ERR_UNAVAILABLE);
    int64_t waited_ms = (dcms_clock_mono_us() - t0) / 1000;
    assert_int_equal(ei.code, DCMS_ERR_UNAVAILABLE);
    if (waited_ms < 190 || waited_ms > 2000)
        fail_msg("begin gave up after %lld ms, expected about 200", (long long)waited_ms);
    dcms_store_stats(s, &st);
    assert_int_equal(st.timeouts_total, 1);
    assert_int_equal(st.in_use, 1);

    /* Once the holder finishes, the connection is lent again at once. */
    dcms_store_rollback(held);
    t0 = dcms_clock_mono_us();
    tx = begin(s, DCMS_TX_READ);
    assert_true(dcms_clock_mono_us() - t0 < 150000);
    commit(tx);
    dcms_store_stats(s, &st);
    assert_int_equal(st.in_use, 0);
    assert_int_equal(st.timeouts_total, 1);
}
STORE_CASE(pool_timeout)

/* A holder that lets go while another thread waits: the waiter gets it. */
struct waiter {
    struct dcms_store *s;
    enum dcms_err e;
};

static void *wait_for_connection(void *arg)
{
    struct waiter *w = arg;
    struct dcms_store_tx *tx = NULL;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    w->e = dcms_store_begin(w->s, DCMS_TX_READ, &tx, &ei);
    if (!w->e)
        w->e = dcms_store_commit(tx, &ei);
    return NULL;
}

static void pool_wait_succeeds(struct fixture *f)
{
    struct dcms_store *s = open_store(f, 1, 5000);
    struct dcms_store_tx *held = begin(s, DCMS_TX_WRITE);
    struct waiter w = {s, DCMS_ERR_INTERNAL};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, wait_for_connection, &w), 0);
    struct timespec ts = {0, 100 * 1000000L};
    nanosleep(&ts, NULL);
    dcms_store_rollback(held);
    pthread_join(t, NULL);
    assert_int_equal(w.e, DCMS_OK);
    struct dcms_store_stats st;
    dcms_store_stats(s, &st);
    assert_int_equal(st.wait_total, 1);
    assert_int_equal(st.timeouts_total, 0);
    assert_int_equal(st.in_use, 0);
}
STORE_CASE(pool_wait_succeeds)

#define WRITERS 8
#define WRITES_PER_THREAD 200

struct writer {
    struct dcms_store *s;
    int n;
    int done, retries;
    enum dcms_err failed;
    char message[256];
};

static struct dcms_query q_ins_writer = DCMS_QUERY(
    "t_ins_writer", "INSERT INTO identities (id, kind, name, email, created_at, updated_at) "
                    "VALUES ($1, 'user', $2, $3, $4, $4)");

static enum dcms_err write_one(struct writer *w, int i, struct dcms_errinfo *ei)
{
    char id[DCMS_UUID_STRLEN], email[64], now[DCMS_TIME_STRLEN];
    dcms_uuid_v7(id);
    snprintf(email, sizeof(email), "w%d-%d@X.org", w->n, i);
    dcms_time_format(dcms_clock_now_us(), now);
    struct dcms_store_tx *tx;
    enum dcms_err e = dcms_store_begin(w->s, DCMS_TX_WRITE, &tx, ei);
    if (e)
        return e;
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(id), DCMS_VAL_TEXT(email), DCMS_VAL_TEXT(email),
                                 DCMS_VAL_TEXT(now)};
    uint64_t affected = 0;
    e = dcms_store_exec(tx, &q_ins_writer, p, 4, NULL, &affected, ei);
    if (!e && affected != 1)
        e = dcms_err_set(ei, DCMS_ERR_INTERNAL, "affected %llu rows", (unsigned long long)affected);
    if (e) {
        dcms_store_rollback(tx);
        return e;
    }
    return dcms_store_commit(tx, ei);
}

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    for (int i = 0; i < WRITES_PER_THREAD; i++) {
        for (int attempt = 0;; attempt++) {
            struct dcms_errinfo ei;
            dcms_errinfo_init(&ei, NULL);
            enum dcms_err e = write_one(w, i, &ei);
            if (!e) {
                w->done++;
                break;
            }
            if (e == DCMS_ERR_RETRY && attempt < 100) {
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

static void concurrent_writers(struct fixture *f)
{
    struct dcms_store *s = open_store(f, 4, 0);
    struct writer w[WRITERS];
    pthread_t t[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        w[i] = (struct writer){.s = s, .n = i};
        assert_int_equal(pthread_create(&t[i], NULL, writer_main, &w[i]), 0);
    }
    for (int i = 0; i < WRITERS; i++)
        pthread_join(t[i], NULL);
    int retries = 0;
    for (int i = 0; i < WRITERS; i++) {
        if (w[i].failed)
            fail_msg("writer %d failed after %d writes: %s (%s)", i, w[i].done,
                     dcms_err_slug(w[i].failed), w[i].message);
        assert_int_equal(w[i].done, WRITES_PER_THREAD);
        retries += w[i].retries;
    }
    assert_int_equal(count_identities(s), WRITERS * WRITES_PER_THREAD);
    struct dcms_store_stats st;
    dcms_store_stats(s, &st);
    assert_int_equal(st.in_use, 0);
    /* SQLite: one connection for the writers, beside the four for readers. */
    bool sqlite = f->db.bk != BK_PG;
    assert_int_equal(st.pool_size, sqlite ? 5 : 4);
    assert_true(st.acquired_total >= (uint64_t)(WRITERS * WRITES_PER_THREAD));
    assert_int_equal(st.timeouts_total, 0);
    /* The writers queue for that connection, so SQLite never answers them "busy". */
    if (sqlite)
        assert_int_equal(retries, 0);
    print_message("%d retries\n", retries);
}
STORE_CASE(concurrent_writers)

/*
 * SQLite: writers that never pause must not outrun the checkpoints. Each
 * passive pass of the checkpointer ends behind new frames, so without the
 * committing writer's own RESTART checkpoint past 16000 frames the WAL is
 * never all copied, never starts over, and grows with everything written.
 */
#define WAL_WRITERS 4
#define WAL_WRITES 5000

struct wal_writer {
    struct dcms_store *s;
    int n;
    enum dcms_err failed;
};

static struct dcms_query q_wal_table =
    DCMS_QUERY("t_wal_table", "CREATE TABLE t_wal (k INTEGER PRIMARY KEY, v BLOB NOT NULL)");
static struct dcms_query q_wal_put = DCMS_QUERY("t_wal_put", "INSERT INTO t_wal (v) VALUES ($1)");

static void *wal_writer_main(void *arg)
{
    struct wal_writer *w = arg;
    static const unsigned char blob[8192]; /* three or so WAL frames per commit */
    for (int i = 0; i < WAL_WRITES && !w->failed; i++) {
        struct dcms_errinfo ei;
        dcms_errinfo_init(&ei, NULL);
        struct dcms_store_tx *tx;
        struct dcms_store_val p[] = {DCMS_VAL_BLOB(blob, sizeof(blob))};
        if ((w->failed = dcms_store_begin(w->s, DCMS_TX_WRITE, &tx, &ei)))
            break;
        if ((w->failed = dcms_store_exec(tx, &q_wal_put, p, 1, NULL, NULL, &ei)))
            dcms_store_rollback(tx);
        else
            w->failed = dcms_store_commit(tx, &ei);
    }
    return NULL;
}

static void wal_bounded_sqlite(void **state)
{
    struct fixture *f = dcms_testdb_fixture(state);
    struct dcms_store *s = open_store(f, 4, 0);
    struct dcms_store_tx *tx = begin(s, DCMS_TX_WRITE);
    run(tx, &q_wal_table, NULL, 0, false, NULL);
    commit(tx);
    struct wal_writer w[WAL_WRITERS];
    pthread_t t[WAL_WRITERS];
    for (int i = 0; i < WAL_WRITERS; i++) {
        w[i] = (struct wal_writer){.s = s, .n = i};
        assert_int_equal(pthread_create(&t[i], NULL, wal_writer_main, &w[i]), 0);
    }
    for (int i = 0; i < WAL_WRITERS; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < WAL_WRITERS; i++)
        assert_int_equal(w[i].failed, DCMS_OK);
    char wal[1100];
    snprintf(wal, sizeof(wal), "%s-wal", f->db.url + strlen("sqlite:"));
    struct stat st;
    assert_int_equal(stat(wal, &st), 0);
    /* 16000 frames of 4 KiB and their headers, plus the commits made while a checkpoint
     * was busy elsewhere: 65-90 MiB here, where everything written (4 x 5000 x 8 KiB
     * blobs) takes ~240 MiB of frames. */
    print_message("WAL %lld bytes\n", (long long)st.st_size);
    assert_true(st.st_size < 112ll << 20);
}

static struct dcms_query q_future = DCMS_QUERY(
    "t_future", "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)");

static void newer_schema_refused(struct fixture *f)
{
    struct dcms_store *s = open_store(f, 1, 0);
    struct dcms_store_tx *tx = begin(s, DCMS_TX_WRITE);
    run(tx, &q_future,
        (struct dcms_store_val[]){DCMS_VAL_INT(999), DCMS_VAL_TEXT("future"), DCMS_VAL_TEXT(TS1)},
        3, false, NULL);
    commit(tx);
    dcms_store_close(s);
    f->store = NULL;

    struct dcms_store_opts opts = {1, 0};
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_store *s2 = (struct dcms_store *)&ei;
    assert_int_equal(dcms_store_open(f->db.url, &opts, &s2, &ei), DCMS_ERR_CONFIG);
    assert_null(s2);
    assert_int_equal(ei.code, DCMS_ERR_CONFIG);
    if (!strstr(ei.message, "999"))
        fail_msg("message does not name the version: %s", ei.message);
}
STORE_CASE(newer_schema_refused)

/* DCMS_TX_READ is a read-only snapshot on both backends: writes in it fail. */
static void read_tx_is_read_only(struct fixture *f)
{
    struct dcms_store *s = open_store(f, 1, 0);
    char id[DCMS_UUID_STRLEN];
    dcms_uuid_v7(id);
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(id), DCMS_VAL_TEXT("user"), DCMS_VAL_TEXT("Ada"),
                                 DCMS_VAL_NULL,     DCMS_VAL_TEXT(TS1),    DCMS_VAL_TEXT(TS1)};
    struct dcms_store_tx *tx = begin(s, DCMS_TX_READ);
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    enum dcms_err e = dcms_store_exec(tx, &q_ins_identity, p, 6, NULL, NULL, &ei);
    if (e)
        dcms_store_rollback(tx);
    else
        e = dcms_store_commit(tx, &ei);
    int64_t n = count_identities(s);
    if (e == DCMS_OK || n != 0)
        fail_msg("an INSERT in a DCMS_TX_READ transaction was accepted (%lld rows)", (long long)n);
}
STORE_CASE(read_tx_is_read_only)

/* ---- statements held back (exec_later) and one-statement reads (read_one) ---- */

static struct dcms_query q_later_table =
    DCMS_QUERY2("t_later_table", "CREATE TABLE t_later (n INTEGER NOT NULL UNIQUE, t TEXT, b BLOB)",
                "CREATE TABLE t_later (n INTEGER NOT NULL UNIQUE, t TEXT, b BYTEA)");
static struct dcms_query q_later_insert =
    DCMS_QUERY("t_later_insert", "INSERT INTO t_later (n, t, b) VALUES ($1, $2, $3)");
static struct dcms_query q_later_rows =
    DCMS_QUERY2("t_later_rows", "SELECT n, t, hex(b) FROM t_later ORDER BY n",
                "SELECT n, t, upper(encode(b, 'hex')) FROM t_later ORDER BY n");
static struct dcms_query q_later_count =
    DCMS_QUERY("t_later_count", "SELECT COUNT(*) FROM t_later");

static uint64_t round_trips(struct dcms_store *s)
{
    return atomic_load(&s->round_trips);
}

/* A store of one connection with the table t_later. */
static struct dcms_store *later_store(struct fixture *f)
{
    struct dcms_store *s = open_store(f, 1, 0);
    struct dcms_store_tx *tx = begin(s, DCMS_TX_WRITE);
    run(tx, &q_later_table, NULL, 0, false, NULL);
    commit(tx);
    return s;
}

/* Holds back an insert of row n; its parameters live in buffers overwritten at once. */
static enum dcms_err later_row(struct dcms_store_tx *tx, int n, struct dcms_errinfo *ei)
{
    char text[16];
    unsigned char blob[3] = {0xde, 0xad, (unsigned char)n};
    snprintf(text, sizeof(text), "row %d", n);
    struct dcms_store_val p[] = {DCMS_VAL_INT(n), DCMS_VAL_TEXT(text), DCMS_VAL_BLOB(blob, 3)};
    dcms_errinfo_init(ei, NULL);
    enum dcms_err e = dcms_store_exec_later(tx, &q_later_insert, p, 3, ei);
    memset(text, 'x', sizeof(text) - 1);
    memset(blob, 0, sizeof(blob));
    return e;
}

static int64_t later_count(struct dcms_store_tx *tx)
{
    struct dcms_store_rows *rows = run(tx, &q_later_count, NULL, 0, true, NULL);
    int64_t n = dcms_store_rows_int(rows, 0, 0);
    dcms_store_rows_free(rows);
    return n;
}

/* t_later holds n rows, and every connection is back in the pool. */
static void later_kept(struct dcms_store *s, int64_t n)
{
    struct dcms_store_tx *tx = begin(s, DCMS_TX_READ);
    assert_int_equal(later_count(tx), n);
    dcms_store_rollback(tx);
    struct dcms_store_stats st;
    dcms_store_stats(s, &st);
    assert_int_equal(st.in_use, 0);
}

/*
 * A held-back statement runs with its own copy of its parameters, before the
 * transaction's next statement (which sees its row) or with the COMMIT; on
 * PostgreSQL each of those is one round trip with what it carries.
 */
static void exec_later_goes_with_the_next(struct fixture *f)
{
    struct dcms_store *s = later_store(f);
    struct dcms_errinfo ei;
    struct dcms_store_tx *tx;

    uint64_t trips = round_trips(s);
    tx = begin(s, DCMS_TX_WRITE);
    CHECK(later_row(tx, 1, &ei), ei);
    assert_int_equal(later_count(tx), 1); /* BEGIN, the insert and the count: one trip */
    CHECK(later_row(tx, 2, &ei), ei);
    CHECK(later_row(tx, 3, &ei), ei);
    commit(tx); /* two inserts and the COMMIT: one trip */
    if (f->db.bk == BK_PG)
        assert_int_equal(round_trips(s) - trips, 2); /* first PREPAREs travel with them */

    trips = round_trips(s);
    tx = begin(s, DCMS_TX_WRITE);
    CHECK(later_row(tx, 4, &ei), ei);
    commit(tx); /* BEGIN, the insert and the COMMIT: one trip */
    if (f->db.bk == BK_PG)
        assert_int_equal(round_trips(s) - trips, 1);

    /* More than a pipeline holds back: the surplus goes out on its own, none is lost. */
    tx = begin(s, DCMS_TX_WRITE);
    for (int n = 10; n < 30; n++)
        CHECK(later_row(tx, n, &ei), ei);
    commit(tx);

    /* A rollback drops what was held back. */
    tx = begin(s, DCMS_TX_WRITE);
    CHECK(later_row(tx, 99, &ei), ei);
    dcms_store_rollback(tx);

    tx = begin(s, DCMS_TX_READ);
    struct dcms_store_rows *rows = run(tx, &q_later_rows, NULL, 0, true, NULL);
    commit(tx);
    assert_int_equal(dcms_store_rows_count(rows), 24);
    assert_int_equal(dcms_store_rows_int(rows, 0, 0), 1);
    assert_string_equal(dcms_store_rows_text(rows, 0, 1), "row 1");
    assert_string_equal(dcms_store_rows_text(rows, 0, 2), "DEAD01");
    assert_string_equal(dcms_store_rows_text(rows, 23, 1), "row 29");
    assert_string_equal(dcms_store_rows_text(rows, 23, 2), "DEAD1D");
    dcms_store_rows_free(rows);
}
STORE_CASE(exec_later_goes_with_the_next)

/*
 * A held-back statement that fails fails what it went out with (the next
 * statement or the commit), and the whole transaction is gone.
 */
static void exec_later_failure_fails_the_transaction(struct fixture *f)
{
    struct dcms_store *s = open_store(f, 1, 0);
    struct dcms_errinfo ei;
    struct dcms_store_tx *tx = begin(s, DCMS_TX_WRITE);
    run(tx, &q_later_table, NULL, 0, false, NULL);
    CHECK(later_row(tx, 1, &ei), ei);
    commit(tx);

    /* With the commit. */
    tx = begin(s, DCMS_TX_WRITE);
    insert_identity(tx, "user", "gone@x.org", NULL);
    CHECK(later_row(tx, 2, &ei), ei);
    enum dcms_err e = later_row(tx, 1, &ei); /* SQLite runs it at once */
    if (!e)
        e = dcms_store_commit(tx, &ei);
    else
        dcms_store_rollback(tx);
    assert_int_equal(e, DCMS_ERR_CONFLICT);
    assert_int_equal(ei.code, DCMS_ERR_CONFLICT);

    /* With the next statement. */
    tx = begin(s, DCMS_TX_WRITE);
    e = later_row(tx, 1, &ei);
    if (!e) {
        struct dcms_store_rows *rows = NULL;
        dcms_errinfo_init(&ei, NULL);
        e = dcms_store_exec(tx, &q_later_count, NULL, 0, &rows, NULL, &ei);
        assert_null(rows);
    }
    assert_int_equal(e, DCMS_ERR_CONFLICT);
    dcms_store_rollback(tx);

    assert_int_equal(count_identities(s), 0);
    later_kept(s, 1); /* the connection is usable, nothing was kept */
}
STORE_CASE(exec_later_failure_fails_the_transaction)

/*
 * A statement said to be the last carries the COMMIT (one round trip on
 * PostgreSQL): when it fails nothing is kept, and an injected commit fault
 * still finds the transaction open.
 */
static void commit_with_next_carries_the_commit(struct fixture *f)
{
    struct dcms_store *s = open_store(f, 1, 0);
    struct dcms_errinfo ei;
    struct dcms_store_tx *tx = begin(s, DCMS_TX_WRITE);
    insert_identity(tx, "user", "a@x.org", NULL);
    commit(tx);
    assert_int_equal(count_identities(s), 1);

    uint64_t trips = round_trips(s);
    tx = begin(s, DCMS_TX_WRITE);
    insert_identity(tx, "user", "b@x.org", NULL);
    dcms_store_commit_with_next(tx);
    struct dcms_store_rows *rows = run(tx, &q_count_identities, NULL, 0, true, NULL);
    assert_int_equal(dcms_store_rows_int(rows, 0, 0), 2);
    dcms_store_rows_free(rows);
    if (f->db.bk == BK_PG) { /* nothing may run after the last: it would be outside the tx */
        dcms_errinfo_init(&ei, NULL);
        FILE *log = dcms_test_log_begin();
        assert_int_equal(dcms_store_exec(tx, &q_count_identities, NULL, 0, NULL, NULL, &ei),
                         DCMS_ERR_INTERNAL);
        free(dcms_test_log_end(log));
    }
    commit(tx);
    if (f->db.bk == BK_PG)
        assert_int_equal(round_trips(s) - trips, 2); /* BEGIN + insert, count + COMMIT */
    assert_int_equal(count_identities(s), 2);

    /* The last statement fails: the transaction rolls back whole. */
    tx = begin(s, DCMS_TX_WRITE);
    insert_identity(tx, "user", "c@x.org", NULL);
    dcms_store_commit_with_next(tx);
    char id[DCMS_UUID_STRLEN];
    dcms_uuid_v7(id);
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(id),    DCMS_VAL_TEXT("user"),
                                 DCMS_VAL_TEXT("Ada"), DCMS_VAL_TEXT("a@x.org"),
                                 DCMS_VAL_TEXT(TS1),   DCMS_VAL_TEXT(TS1)};
    assert_int_equal(run_err(tx, &q_ins_identity, p, 6, &ei), DCMS_ERR_CONFLICT);
    dcms_store_rollback(tx);
    assert_int_equal(count_identities(s), 2);

    /* A commit that fails (injected) after the last statement keeps nothing either. */
    tx = begin(s, DCMS_TX_WRITE);
    insert_identity(tx, "user", "d@x.org", NULL);
    s->fail_commit = DCMS_ERR_INSUFFICIENT_STORAGE;
    dcms_store_commit_with_next(tx);
    rows = run(tx, &q_count_identities, NULL, 0, true, NULL);
    dcms_store_rows_free(rows);
    dcms_errinfo_init(&ei, NULL);
    FILE *log = dcms_test_log_begin();
    assert_int_equal(dcms_store_commit(tx, &ei), DCMS_ERR_INSUFFICIENT_STORAGE);
    free(dcms_test_log_end(log));
    s->fail_commit = DCMS_OK;
    assert_int_equal(count_identities(s), 2);
    struct dcms_store_stats st;
    dcms_store_stats(s, &st);
    assert_int_equal(st.in_use, 0);
}
STORE_CASE(commit_with_next_carries_the_commit)

static struct dcms_query q_fails =
    DCMS_QUERY("t_fails", "SELECT 1 / (SELECT COUNT(*) - COUNT(*) FROM identities)");

/* A read of one statement: one round trip on PostgreSQL, read only, the connection back. */
static struct dcms_query q_isolation =
    DCMS_QUERY("t_isolation", "SELECT current_setting('transaction_isolation')");

static void read_one_is_one_trip(struct fixture *f)
{
    struct dcms_store *s = open_store(f, 1, 0);
    struct dcms_store_tx *tx = begin(s, DCMS_TX_WRITE);
    insert_identity(tx, "user", "a@x.org", NULL);
    commit(tx);
    assert_int_equal(count_identities(s), 1); /* prepares the count */

    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_store_rows *rows = NULL;
    uint64_t trips = round_trips(s);
    CHECK(dcms_store_read_one(s, &q_count_identities, NULL, 0, &rows, &ei), ei);
    if (f->db.bk == BK_PG)
        assert_int_equal(round_trips(s) - trips, 1);
    assert_int_equal(dcms_store_rows_int(rows, 0, 0), 1);
    dcms_store_rows_free(rows);
    if (f->db.bk == BK_PG) {
        /* The SELECT went out alone, a transaction of its own: no BEGIN (which would have
         * made it REPEATABLE READ), no ROLLBACK. */
        rows = NULL;
        CHECK(dcms_store_read_one(s, &q_isolation, NULL, 0, &rows, &ei), ei);
        assert_string_equal(dcms_store_rows_text(rows, 0, 0), "read committed");
        dcms_store_rows_free(rows);
    }

    /* A write is refused; a failing read fails and leaves the connection usable. */
    char id[DCMS_UUID_STRLEN];
    dcms_uuid_v7(id);
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(id), DCMS_VAL_TEXT("user"), DCMS_VAL_TEXT("Ada"),
                                 DCMS_VAL_NULL,     DCMS_VAL_TEXT(TS1),    DCMS_VAL_TEXT(TS1)};
    rows = (struct dcms_store_rows *)&ei;
    assert_int_not_equal(dcms_store_read_one(s, &q_ins_identity, p, 6, &rows, &ei), DCMS_OK);
    assert_null(rows);
    dcms_errinfo_init(&ei, NULL);
    if (f->db.bk == BK_PG) /* SQLite's integer division by zero is NULL, not an error */
        assert_int_equal(dcms_store_read_one(s, &q_fails, NULL, 0, &rows, &ei), DCMS_ERR_INTERNAL);
    assert_int_equal(count_identities(s), 1);
    struct dcms_store_stats st;
    dcms_store_stats(s, &st);
    assert_int_equal(st.in_use, 0);
}
STORE_CASE(read_one_is_one_trip)

/*
 * Two statements run as one (exec_both): both results, in order, the first
 * seeing what was held back; on PostgreSQL one round trip with the held
 * BEGIN and insert. A failure of either fails the pair and hands back no rows.
 */
static struct dcms_query q_missing = DCMS_QUERY("t_missing", "SELECT n FROM t_no_such_table");

static void exec_both_is_one_trip(struct fixture *f)
{
    struct dcms_store *s = later_store(f);
    struct dcms_errinfo ei;
    struct dcms_store_tx *tx;
    tx = begin(s, DCMS_TX_WRITE);
    CHECK(later_row(tx, 1, &ei), ei);
    assert_int_equal(later_count(tx), 1); /* prepares both queries */
    commit(tx);

    tx = begin(s, DCMS_TX_WRITE);
    CHECK(later_row(tx, 2, &ei), ei);
    uint64_t trips = round_trips(s);
    struct dcms_store_rows *count = NULL, *rows = NULL;
    struct dcms_store_stmt a = {&q_later_count, NULL, 0, &count};
    struct dcms_store_stmt b = {&q_later_rows, NULL, 0, &rows};
    dcms_errinfo_init(&ei, NULL);
    CHECK(dcms_store_exec_both(tx, &a, &b, &ei), ei);
    if (f->db.bk == BK_PG)
        assert_int_equal(round_trips(s) - trips, 1);
    assert_int_equal(dcms_store_rows_int(count, 0, 0), 2);
    assert_int_equal(dcms_store_rows_count(rows), 2);
    assert_string_equal(dcms_store_rows_text(rows, 1, 1), "row 2");
    dcms_store_rows_free(count);
    dcms_store_rows_free(rows);
    commit(tx);

    /* Either failing: an error, no rows, and the transaction is lost whole. */
    for (int which = 0; which < 2; which++) {
        tx = begin(s, DCMS_TX_WRITE);
        CHECK(later_row(tx, 3, &ei), ei);
        count = rows = (struct dcms_store_rows *)&ei;
        struct dcms_store_stmt bad = {&q_missing, NULL, 0, which ? &rows : &count};
        struct dcms_store_stmt good = {which ? &q_later_count : &q_later_rows, NULL, 0,
                                       which ? &count : &rows};
        dcms_errinfo_init(&ei, NULL);
        enum dcms_err e = which ? dcms_store_exec_both(tx, &good, &bad, &ei)
                                : dcms_store_exec_both(tx, &bad, &good, &ei);
        assert_int_not_equal(e, DCMS_OK);
        assert_null(count);
        assert_null(rows);
        dcms_store_rollback(tx);
    }
    later_kept(s, 2);

    /* Said to be the transaction's last, the pair ends it after `b`, not after `a`. */
    tx = begin(s, DCMS_TX_WRITE);
    CHECK(later_row(tx, 4, &ei), ei);
    dcms_store_commit_with_next(tx);
    dcms_errinfo_init(&ei, NULL);
    CHECK(dcms_store_exec_both(tx, &a, &b, &ei), ei);
    assert_int_equal(dcms_store_rows_int(count, 0, 0), 3);
    assert_int_equal(dcms_store_rows_count(rows), 3);
    dcms_store_rows_free(count);
    dcms_store_rows_free(rows);
    commit(tx);
    later_kept(s, 3);
}
STORE_CASE(exec_both_is_one_trip)

/* ---- migration 0008: the enclave keeps its contract's consumer ---- */

static struct dcms_query q_undo8_index =
    DCMS_QUERY("t_undo8_index", "DROP INDEX enclaves_consumer");
static struct dcms_query q_undo8_column =
    DCMS_QUERY("t_undo8_column", "ALTER TABLE enclaves DROP COLUMN consumer_id");
/* The store applies only migrations above its latest, so the later ones are undone too. */
static struct dcms_query q_undo_later[] = {
    DCMS_QUERY("t_undo23_signature_event",
               "ALTER TABLE contract_signatures DROP COLUMN audit_event_id"),
    DCMS_QUERY("t_undo23_key_release_event",
               "ALTER TABLE training_jobs DROP COLUMN key_release_event_id"),
    DCMS_QUERY("t_undo22_login_challenges", "DROP TABLE webauthn_login_challenges"),
    DCMS_QUERY("t_undo22_user_handles", "DROP TABLE webauthn_user_handles"),
    DCMS_QUERY("t_undo21_leases", "DROP TABLE leases"),
    DCMS_QUERY("t_undo21_nodes", "DROP TABLE nodes"),
    DCMS_QUERY("t_undo21_enclave_owner_index", "DROP INDEX enclaves_owner_node"),
    DCMS_QUERY("t_undo21_enclave_owner", "ALTER TABLE enclaves DROP COLUMN owner_node"),
    DCMS_QUERY("t_undo20_heads", "DROP TABLE audit_tree_heads"),
    DCMS_QUERY("t_undo20_nodes", "DROP TABLE audit_tree_nodes"),
    DCMS_QUERY("t_undo20_pending", "DROP TABLE audit_pending"),
    DCMS_QUERY("t_undo19_upload_state", "DROP TABLE dataset_upload_state"),
    DCMS_QUERY("t_undo18_runs", "DROP TABLE privacy_runs"),
    DCMS_QUERY("t_undo18_budgets", "DROP TABLE privacy_budgets"),
    DCMS_QUERY("t_undo17_models", "DROP TABLE training_models"),
    DCMS_QUERY("t_undo17_events", "DROP TABLE training_events"),
    DCMS_QUERY("t_undo17_counts", "DROP TABLE training_run_counts"),
    DCMS_QUERY("t_undo17_jobs", "DROP TABLE training_jobs"),
    DCMS_QUERY("t_undo16_derived", "DROP TABLE dataset_derived"),
    DCMS_QUERY("t_undo15_attestations", "DROP TABLE enclave_attestations"),
    DCMS_QUERY("t_undo13_hold", "ALTER TABLE enclaves DROP COLUMN contract_hold"),
    DCMS_QUERY("t_undo11_limits", "DROP TABLE registration_limits"),
    DCMS_QUERY("t_undo10_segments", "DROP TABLE dataset_segments"),
    DCMS_QUERY("t_undo10_datasets", "DROP TABLE datasets"),
    DCMS_QUERY("t_undo9_data_keys", "DROP TABLE data_keys"),
    DCMS_QUERY("t_undo9_kek_versions", "DROP TABLE kek_versions"),
};
static struct dcms_query q_undo8_row =
    DCMS_QUERY("t_undo8_row", "DELETE FROM schema_migrations WHERE version >= 8");
static struct dcms_query q_ins8_contract =
    DCMS_QUERY("t_ins_contract",
               "INSERT INTO contracts (id, title, provider_id, consumer_id, terms, "
               "terms_hash, created_at, updated_at) VALUES ($1, 'c', $2, $3, '{}', 'h', $4, $4)");
static struct dcms_query q_ins_enclave = DCMS_QUERY(
    "t_ins_enclave", "INSERT INTO enclaves (id, name, provider_id, contract_id, backend, "
                     "configuration, created_at, updated_at) VALUES ($1, 'e', $2, $3, 'local', "
                     "'{}', $4, $4)");
static struct dcms_query q_enclave_consumer = DCMS_QUERY(
    "t_enclave_consumer", "SELECT CAST(consumer_id AS TEXT) FROM enclaves WHERE id = $1");

/*
 * A store at schema 7 with a bound and an unbound enclave: migrating to 8
 * copies the bound one's contract consumer onto it and leaves the other
 * NULL (the service then reads the enclave row alone).
 */
static void migration_0008_backfills_consumer(struct fixture *f)
{
    struct dcms_store *s = open_store(f, 1, 0);
    char provider[DCMS_UUID_STRLEN], consumer[DCMS_UUID_STRLEN], contract[DCMS_UUID_STRLEN];
    char bound[DCMS_UUID_STRLEN], unbound[DCMS_UUID_STRLEN];
    dcms_uuid_v7(contract);
    dcms_uuid_v7(bound);
    dcms_uuid_v7(unbound);
    struct dcms_store_tx *tx = begin(s, DCMS_TX_WRITE);
    for (size_t i = 0; i < sizeof(q_undo_later) / sizeof(q_undo_later[0]); i++)
        run(tx, &q_undo_later[i], NULL, 0, false, NULL);
    run(tx, &q_undo8_index, NULL, 0, false, NULL);
    run(tx, &q_undo8_column, NULL, 0, false, NULL);
    run(tx, &q_undo8_row, NULL, 0, false, NULL);
    insert_identity(tx, "user", NULL, provider);
    insert_identity(tx, "user", NULL, consumer);
    run(tx, &q_ins8_contract,
        (struct dcms_store_val[]){DCMS_VAL_TEXT(contract), DCMS_VAL_TEXT(provider),
                                  DCMS_VAL_TEXT(consumer), DCMS_VAL_TEXT(TS1)},
        4, false, NULL);
    run(tx, &q_ins_enclave,
        (struct dcms_store_val[]){DCMS_VAL_TEXT(bound), DCMS_VAL_TEXT(provider),
                                  DCMS_VAL_TEXT(contract), DCMS_VAL_TEXT(TS1)},
        4, false, NULL);
    run(tx, &q_ins_enclave,
        (struct dcms_store_val[]){DCMS_VAL_TEXT(unbound), DCMS_VAL_TEXT(provider), DCMS_VAL_NULL,
                                  DCMS_VAL_TEXT(TS1)},
        4, false, NULL);
    commit(tx);

    s = open_store(f, 1, 0); /* applies 0008 again */
    tx = begin(s, DCMS_TX_READ);
    struct dcms_store_rows *r = run(tx, &q_enclave_consumer,
                                    (struct dcms_store_val[]){DCMS_VAL_TEXT(bound)}, 1, true, NULL);
    assert_int_equal(dcms_store_rows_count(r), 1);
    assert_non_null(dcms_store_rows_text(r, 0, 0));
    assert_string_equal(dcms_store_rows_text(r, 0, 0), consumer);
    dcms_store_rows_free(r);
    r = run(tx, &q_enclave_consumer, (struct dcms_store_val[]){DCMS_VAL_TEXT(unbound)}, 1, true,
            NULL);
    assert_int_equal(dcms_store_rows_count(r), 1);
    assert_null(dcms_store_rows_text(r, 0, 0));
    dcms_store_rows_free(r);
    dcms_store_rollback(tx);
}
STORE_CASE(migration_0008_backfills_consumer)

static struct dcms_query q_undo22_row =
    DCMS_QUERY("t_undo22_row", "DELETE FROM schema_migrations WHERE version >= 22");
static struct dcms_query q_ins_passkey = DCMS_QUERY(
    "t_ins_passkey",
    "INSERT INTO webauthn_credentials (id, identity_id, credential_id, public_key_cose, alg, "
    "sign_count, user_verified, transports, attestation_fmt, aaguid, created_at) VALUES ($1, $2, "
    "$3, 'k', -7, 0, 1, '[]', 'none', '00000000-0000-0000-0000-000000000000', $4)");
static struct dcms_query q_user_handle = DCMS_QUERY(
    "t_user_handle", "SELECT user_handle FROM webauthn_user_handles WHERE identity_id = $1");

/*
 * A store at schema 21 whose identity has two passkeys: migrating to 22
 * keeps the user handle those passkeys hold (the UUID's 16 bytes, hex) as
 * the identity's, once; an identity without passkeys gets none.
 */
static void migration_0022_keeps_legacy_user_handles(struct fixture *f)
{
    struct dcms_store *s = open_store(f, 1, 0);
    char who[DCMS_UUID_STRLEN], other[DCMS_UUID_STRLEN], k1[DCMS_UUID_STRLEN], k2[DCMS_UUID_STRLEN];
    dcms_uuid_v7(k1);
    dcms_uuid_v7(k2);
    struct dcms_store_tx *tx = begin(s, DCMS_TX_WRITE);
    for (size_t i = 0; i < 4; i++) /* 0023, then 0022 */
        run(tx, &q_undo_later[i], NULL, 0, false, NULL);
    run(tx, &q_undo22_row, NULL, 0, false, NULL);
    insert_identity(tx, "user", NULL, who);
    insert_identity(tx, "user", NULL, other);
    run(tx, &q_ins_passkey,
        (struct dcms_store_val[]){DCMS_VAL_TEXT(k1), DCMS_VAL_TEXT(who), DCMS_VAL_TEXT("cred-1"),
                                  DCMS_VAL_TEXT(TS1)},
        4, false, NULL);
    run(tx, &q_ins_passkey,
        (struct dcms_store_val[]){DCMS_VAL_TEXT(k2), DCMS_VAL_TEXT(who), DCMS_VAL_TEXT("cred-2"),
                                  DCMS_VAL_TEXT(TS1)},
        4, false, NULL);
    commit(tx);

    s = open_store(f, 1, 0); /* applies 0022 again */
    tx = begin(s, DCMS_TX_READ);
    struct dcms_store_rows *r =
        run(tx, &q_user_handle, (struct dcms_store_val[]){DCMS_VAL_TEXT(who)}, 1, true, NULL);
    char hex[33];
    size_t o = 0;
    for (const char *p = who; *p; p++)
        if (*p != '-')
            hex[o++] = *p;
    hex[o] = '\0';
    assert_int_equal(dcms_store_rows_count(r), 1);
    assert_string_equal(dcms_store_rows_text(r, 0, 0), hex);
    dcms_store_rows_free(r);
    r = run(tx, &q_user_handle, (struct dcms_store_val[]){DCMS_VAL_TEXT(other)}, 1, true, NULL);
    assert_int_equal(dcms_store_rows_count(r), 0);
    dcms_store_rows_free(r);
    commit(tx);
}
STORE_CASE(migration_0022_keeps_legacy_user_handles)

/* Ends every server session of the case's database but the admin's own. */
static void kill_sessions(struct fixture *f)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '%s' "
             "AND pid <> pg_backend_pid()",
             f->db.dbname);
    assert_true(dcms_testdb_admin_exec(f->db.admin, sql));
    /* pg_terminate_backend only signals; wait until the sessions are gone. */
    PGconn *c = PQconnectdb(f->db.admin);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM pg_stat_activity WHERE datname = '%s'",
             f->db.dbname);
    for (int i = 0; i < 100; i++) {
        PGresult *res = PQexec(c, sql);
        bool gone =
            PQresultStatus(res) == PGRES_TUPLES_OK && strcmp(PQgetvalue(res, 0, 0), "0") == 0;
        PQclear(res);
        if (gone)
            break;
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    PQfinish(c);
}

/* A server that drops the connection: the next begin reconnects; a tx in flight fails. */
static void reconnect_pg(void **state)
{
    struct fixture *f = dcms_testdb_fixture(state);
    struct dcms_store *s = open_store(f, 1, 0);
    struct dcms_store_tx *tx = begin(s, DCMS_TX_WRITE);
    insert_identity(tx, "user", "k1@x.org", NULL);
    commit(tx);

    kill_sessions(f);
    assert_int_equal(count_identities(s), 1); /* begin repaired the connection */
    struct dcms_store_stats st;
    dcms_store_stats(s, &st);
    assert_int_equal(st.reconnects_total, 1);

    /* Prepared statements are made again on the new session. */
    tx = begin(s, DCMS_TX_WRITE);
    insert_identity(tx, "user", "k2@x.org", NULL);
    commit(tx);

    /* Lost after BEGIN, before any statement: the BEGIN travels with the first statement,
     * nothing ran yet, so both go again on a fresh connection. */
    tx = begin(s, DCMS_TX_WRITE);
    kill_sessions(f);
    insert_identity(tx, "user", "k3@x.org", NULL);
    commit(tx);
    dcms_store_stats(s, &st);
    assert_int_equal(st.reconnects_total, 2);

    /* Lost in the middle of a transaction: the statement fails as unavailable. */
    tx = begin(s, DCMS_TX_WRITE);
    insert_identity(tx, "user", "k4@x.org", NULL);
    kill_sessions(f);
    char id[DCMS_UUID_STRLEN];
    dcms_uuid_v7(id);
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(id), DCMS_VAL_TEXT("user"), DCMS_VAL_TEXT("Ada"),
                                 DCMS_VAL_NULL,     DCMS_VAL_TEXT(TS1),    DCMS_VAL_TEXT(TS1)};
    struct dcms_errinfo ei;
    assert_int_equal(run_err(tx, &q_ins_identity, p, 6, &ei), DCMS_ERR_UNAVAILABLE);
    dcms_store_rollback(tx);
    dcms_errinfo_init(&ei, NULL);
    CHECK(dcms_store_ping(s, &ei), ei);
    assert_int_equal(count_identities(s), 3); /* k4 went with its transaction */
    dcms_store_stats(s, &st);
    assert_int_equal(st.reconnects_total, 3);
    assert_int_equal(st.in_use, 0);
}

/* ---- cases that need no database ---- */

static void bad_url_refused(void **state)
{
    (void)state;
    static const char *const urls[] = {
        "mysql://x",     "", "sqlite:", "sqlite://", "postgres:/x", "SQLITE:/tmp/x.db",
        "file:/tmp/x.db"};
    for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
        struct dcms_store *s = (struct dcms_store *)urls;
        struct dcms_errinfo ei;
        dcms_errinfo_init(&ei, NULL);
        enum dcms_err e = dcms_store_open(urls[i], NULL, &s, &ei);
        if (e != DCMS_ERR_CONFIG)
            fail_msg("\"%s\": got %s, want config_error", urls[i], dcms_err_slug(e));
        assert_null(s);
        assert_int_equal(ei.code, DCMS_ERR_CONFIG);
    }
}

static void pg_unreachable(void **state)
{
    (void)state;
    struct dcms_store *s = (struct dcms_store *)state;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    int64_t t0 = dcms_clock_mono_us();
    assert_int_equal(dcms_store_open("postgres://dcms@127.0.0.1:1/x", NULL, &s, &ei),
                     DCMS_ERR_UNAVAILABLE);
    assert_null(s);
    assert_int_equal(ei.code, DCMS_ERR_UNAVAILABLE);
    /* The client-facing message carries no connection details. */
    assert_null(strstr(ei.message, "127.0.0.1"));
    assert_true(dcms_clock_mono_us() - t0 < 15 * 1000000);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(open_migrates_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(open_migrates_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(round_trip_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(round_trip_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(text_length_respected_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(text_length_respected_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(affected_rows_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(affected_rows_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(rollback_discards_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(rollback_discards_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(unique_conflict_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(unique_conflict_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(foreign_key_conflict_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(foreign_key_conflict_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(check_conflict_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(check_conflict_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(per_backend_sql_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(per_backend_sql_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(pool_timeout_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(pool_timeout_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(pool_wait_succeeds_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(pool_wait_succeeds_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(concurrent_writers_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(concurrent_writers_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(newer_schema_refused_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(newer_schema_refused_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(read_tx_is_read_only_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(read_tx_is_read_only_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(reconnect_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(wal_bounded_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(rollback_after_sqlite_ended_it, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(exec_later_goes_with_the_next_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(exec_later_goes_with_the_next_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(exec_later_failure_fails_the_transaction_sqlite, setup_sqlite,
                                    teardown),
    cmocka_unit_test_setup_teardown(exec_later_failure_fails_the_transaction_pg, setup_pg,
                                    teardown),
    cmocka_unit_test_setup_teardown(read_one_is_one_trip_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(commit_with_next_carries_the_commit_sqlite, setup_sqlite,
                                    teardown),
    cmocka_unit_test_setup_teardown(commit_with_next_carries_the_commit_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(read_one_is_one_trip_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(exec_both_is_one_trip_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(exec_both_is_one_trip_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(migration_0008_backfills_consumer_sqlite, setup_sqlite,
                                    teardown),
    cmocka_unit_test_setup_teardown(migration_0008_backfills_consumer_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(migration_0022_keeps_legacy_user_handles_sqlite, setup_sqlite,
                                    teardown),
    cmocka_unit_test_setup_teardown(migration_0022_keeps_legacy_user_handles_pg, setup_pg,
                                    teardown),
    cmocka_unit_test(bad_url_refused),
    cmocka_unit_test(pg_unreachable),
};

DCMS_TEST_MAIN(tests)
