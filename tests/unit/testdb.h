/*
 * Shared by the unit tests that run each case against both store backends
 * (test_store.c, test_audit.c, test_totp.c, ...): a fresh SQLite file in a
 * fresh directory, or a fresh PostgreSQL database made for the case on the server named by
 * DCMS_TEST_PG_URL (an admin URL such as
 * postgres://dcms:pw@127.0.0.1:PORT/postgres) and dropped afterwards.
 * Without DCMS_TEST_PG_URL the PostgreSQL cases are skipped, except under
 * CI=true, where they fail: CI must test both backends.
 *
 * A test file's fixture has a struct dcms_testdb as its first member; its
 * setup functions fill it in, its teardown closes what the case opened and
 * then calls dcms_testdb_cleanup().
 */
#ifndef DCMS_TESTDB_H
#define DCMS_TESTDB_H

#include "testutil.h"

#include <dirent.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "dcms/crypto.h"
#include "dcms/uuid.h"

enum dcms_testdb_backend { BK_SQLITE, BK_PG };

/* The database of one case. */
struct dcms_testdb {
    enum dcms_testdb_backend bk;
    bool unavailable; /* PostgreSQL not configured: skip (or fail under CI) */
    char url[1024];   /* what the stores open */
    char admin[1024]; /* PostgreSQL: the server's admin URL */
    char dbname[64];  /* PostgreSQL: the database made for this case */
    char dir[64];     /* the directory made for this case (SQLite: holds the database) */
};

/* True when CI is "true" or "1": missing PostgreSQL then fails instead of skipping. */
static inline bool dcms_testdb_ci_mode(void)
{
    const char *ci = getenv("CI");
    return ci && (strcmp(ci, "true") == 0 || strcmp(ci, "1") == 0);
}

/* A libpq notice processor that drops the server's notices. */
static inline void dcms_testdb_quiet_notices(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/* Runs one statement on the admin connection; false (with the reason printed) on failure. */
static inline bool dcms_testdb_admin_exec(const char *admin_url, const char *sql)
{
    PGconn *c = PQconnectdb(admin_url);
    if (PQstatus(c) != CONNECTION_OK) {
        print_error("cannot connect to DCMS_TEST_PG_URL: %s", PQerrorMessage(c));
        PQfinish(c);
        return false;
    }
    PQsetNoticeProcessor(c, dcms_testdb_quiet_notices, NULL);
    PGresult *res = PQexec(c, sql);
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;
    if (!ok)
        print_error("%s: %s", sql, PQerrorMessage(c));
    PQclear(res);
    PQfinish(c);
    return ok;
}

/* `admin` with its database name replaced by `db` (any ?query is kept). */
static inline bool dcms_testdb_url_with_db(const char *admin, const char *db, char *out, size_t cap)
{
    const char *scheme = strstr(admin, "://");
    if (!scheme)
        return false;
    const char *host = scheme + 3;
    const char *query = strchr(host, '?');
    if (!query)
        query = host + strlen(host);
    const char *slash = memchr(host, '/', (size_t)(query - host));
    size_t prefix = slash ? (size_t)(slash - admin) : (size_t)(query - admin);
    int n = snprintf(out, cap, "%.*s/%s%s", (int)prefix, admin, db, query);
    return n > 0 && (size_t)n < cap;
}

/* Makes the case's directory in db->dir from `tmpl`, a mkdtemp template; false on failure. */
static inline bool dcms_testdb_make_dir(struct dcms_testdb *db, const char *tmpl)
{
    snprintf(db->dir, sizeof(db->dir), "%s", tmpl);
    return mkdtemp(db->dir) != NULL;
}

/* SQLite: the case's database is db/x.db under db->dir, a subdirectory the store must create
 * itself. */
static inline void dcms_testdb_use_sqlite(struct dcms_testdb *db)
{
    db->bk = BK_SQLITE;
    snprintf(db->url, sizeof(db->url), "sqlite:%s/db/x.db", db->dir);
}

/* PostgreSQL: creates the database `prefix` + a fresh UUID (hex only) on DCMS_TEST_PG_URL's
 * server and points db->url at it. Returns 0, also when DCMS_TEST_PG_URL is unset (then
 * db->unavailable is set), or -1 on failure. */
static inline int dcms_testdb_use_pg(struct dcms_testdb *db, const char *prefix)
{
    db->bk = BK_PG;
    const char *admin = getenv("DCMS_TEST_PG_URL");
    if (!admin || !*admin) {
        db->unavailable = true;
        return 0;
    }
    snprintf(db->admin, sizeof(db->admin), "%s", admin);
    char id[DCMS_UUID_STRLEN];
    dcms_uuid_v7(id);
    int n = snprintf(db->dbname, sizeof(db->dbname), "%s", prefix);
    size_t o = n > 0 ? (size_t)n : 0;
    for (const char *p = id; *p && o + 1 < sizeof(db->dbname); p++)
        if (*p != '-')
            db->dbname[o++] = *p;
    db->dbname[o] = '\0';
    if (!dcms_testdb_url_with_db(db->admin, db->dbname, db->url, sizeof(db->url))) {
        print_error("cannot make a URL from DCMS_TEST_PG_URL");
        return -1;
    }
    char sql[128];
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", db->dbname);
    if (!dcms_testdb_admin_exec(db->admin, sql)) {
        db->dbname[0] = '\0';
        return -1;
    }
    return 0;
}

/* Removes `path` and everything under it (symbolic links are removed, not followed). */
static inline void dcms_testdb_remove_tree(const char *path)
{
    DIR *d = opendir(path);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            char sub[1024];
            int n = snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
            if (n < 0 || (size_t)n >= sizeof(sub))
                continue;
            struct stat st;
            if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode))
                dcms_testdb_remove_tree(sub);
            else
                unlink(sub);
        }
        closedir(d);
    }
    rmdir(path);
}

/* Removes the case's directory (if made) and drops its PostgreSQL database (if made). */
static inline void dcms_testdb_cleanup(struct dcms_testdb *db)
{
    if (db->dir[0])
        dcms_testdb_remove_tree(db->dir);
    if (db->bk == BK_PG && db->dbname[0]) {
        char sql[128];
        snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", db->dbname);
        (void)dcms_testdb_admin_exec(db->admin, sql);
    }
}

/*
 * The usual setup: a zeroed fixture of `size` bytes (its first member a
 * struct dcms_testdb) with a fresh directory made from `tmpl`, on SQLite
 * (pg_prefix NULL) or on a fresh PostgreSQL database whose name starts with
 * pg_prefix.
 * Also initialises the crypto libraries (dcms_crypto_init). The fixture is in *state; -1 on
 * failure.
 */
static inline int dcms_testdb_setup(void **state, size_t size, const char *tmpl,
                                    const char *pg_prefix)
{
    if (dcms_crypto_init())
        return -1;
    struct dcms_testdb *db = calloc(1, size);
    if (!db || !dcms_testdb_make_dir(db, tmpl)) {
        free(db);
        return -1;
    }
    *state = db;
    if (!pg_prefix) {
        dcms_testdb_use_sqlite(db);
        return 0;
    }
    return dcms_testdb_use_pg(db, pg_prefix);
}

/* Defines setup_sqlite and setup_pg for the test file's struct fixture. */
#define DCMS_TESTDB_SETUPS(tmpl, pg_prefix)                                                        \
    static int setup_sqlite(void **state)                                                          \
    {                                                                                              \
        return dcms_testdb_setup(state, sizeof(struct fixture), tmpl, NULL);                       \
    }                                                                                              \
    static int setup_pg(void **state)                                                              \
    {                                                                                              \
        return dcms_testdb_setup(state, sizeof(struct fixture), tmpl, pg_prefix);                  \
    }

/* The case's fixture (*state, whose first member is its struct dcms_testdb), ready for the case
 * body; skips the case when PostgreSQL is not configured, or fails it under CI. */
static inline void *dcms_testdb_fixture(void **state)
{
    struct dcms_testdb *db = *state;
    if (db->unavailable) {
        if (dcms_testdb_ci_mode())
            fail_msg("CI=true but DCMS_TEST_PG_URL is not set: the PostgreSQL backend must be "
                     "tested in CI (scripts/pg-cluster.sh start DIR prints a URL)");
        skip();
    }
    return *state;
}

/* Defines name_sqlite and name_pg, the cases running `static void name(struct fixture *)` on
 * each backend. Register both with cmocka_unit_test_setup_teardown in the test file, so that
 * tests/unit/CMakeLists.txt finds their names. */
#define DCMS_TESTDB_CASE(name)                                                                     \
    static void name##_sqlite(void **state)                                                        \
    {                                                                                              \
        name(dcms_testdb_fixture(state));                                                          \
    }                                                                                              \
    static void name##_pg(void **state)                                                            \
    {                                                                                              \
        name(dcms_testdb_fixture(state));                                                          \
    }

#endif
