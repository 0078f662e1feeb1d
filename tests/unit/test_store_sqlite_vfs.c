/*
 * The SQLite VFS that batches WAL and checkpoint writes
 * (src/store/store_sqlite_vfs.c): what one connection commits, another
 * reads at once, byte for byte; rolled-back and overwritten frames, and
 * checkpoints in between, leave a file that SQLite's own VFS reads back
 * whole and that passes an integrity check.
 */
#include "testutil.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/store_int.h"

#define BLOB_BYTES (300u << 10) /* ~75 pages: runs longer than one 120 KiB write */
#define ROWS 40

static void fill(unsigned char *b, size_t n, int k)
{
    uint32_t x = 2166136261u ^ (uint32_t)k;
    for (size_t i = 0; i < n; i++) {
        x = x * 16777619u + 1u;
        b[i] = (unsigned char)(x >> 24);
    }
}

static sqlite3 *open_db(const char *path, const char *vfs)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs),
                     SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                                  "PRAGMA wal_autocheckpoint=200;",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    return db;
}

static void put(sqlite3 *db, int k, const unsigned char *b, size_t n)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(
        sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO t (k, v) VALUES (?1, ?2)", -1, &st, NULL),
        SQLITE_OK);
    sqlite3_bind_int(st, 1, k);
    sqlite3_bind_blob(st, 2, b, (int)n, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
}

/* Row k as another connection sees it must be exactly the bytes of fill(k). */
static void expect(sqlite3 *db, int k, unsigned char *want, size_t n)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT v FROM t WHERE k = ?1", -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_int(st, 1, k);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    fill(want, n, k);
    assert_int_equal((size_t)sqlite3_column_bytes(st, 0), n);
    assert_memory_equal(sqlite3_column_blob(st, 0), want, n);
    sqlite3_finalize(st);
}

static void commits_visible_and_file_whole(void **state)
{
    (void)state;
    const char *vfs = store_sqlite_vfs();
    assert_non_null(vfs);
    char dir[] = "/tmp/dcms-test-vfs.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof(path), "%s/t.db", dir);
    unsigned char *b = malloc(BLOB_BYTES), *want = malloc(BLOB_BYTES);
    assert_non_null(b);
    assert_non_null(want);

    sqlite3 *w = open_db(path, vfs), *r = open_db(path, vfs);
    assert_int_equal(
        sqlite3_exec(w, "CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)", NULL, NULL, NULL),
        SQLITE_OK);
    for (int k = 0; k < ROWS; k++) {
        fill(b, BLOB_BYTES, k);
        if (k % 7 == 3) { /* frames written, then rolled back and written over */
            assert_int_equal(sqlite3_exec(w, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
            put(w, k, b, BLOB_BYTES / 2);
            assert_int_equal(sqlite3_exec(w, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
        }
        if (k % 5 == 4) { /* one page changed twice in a transaction: a frame rewritten */
            assert_int_equal(sqlite3_exec(w, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
            put(w, k, b, 100);
            put(w, k, b, BLOB_BYTES);
            assert_int_equal(sqlite3_exec(w, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
        } else {
            put(w, k, b, BLOB_BYTES);
        }
        expect(r, k, want, BLOB_BYTES); /* another connection, another file handle */
        if (k % 13 == 12)               /* the reader checkpoints, then the writer goes on */
            assert_int_equal(
                sqlite3_wal_checkpoint_v2(r, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL),
                SQLITE_OK);
        if (k > 0)
            expect(r, k - 1, want, BLOB_BYTES);
    }

    /* SQLite's own VFS, without the batching, reads the same file back whole */
    sqlite3 *plain = open_db(path, NULL);
    for (int k = 0; k < ROWS; k++)
        expect(plain, k, want, BLOB_BYTES);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(plain, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_close(plain), SQLITE_OK);
    assert_int_equal(sqlite3_close(r), SQLITE_OK);

    /* the writer checkpoints everything and closes last: the database file alone is whole */
    assert_int_equal(sqlite3_wal_checkpoint_v2(w, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_close(w), SQLITE_OK);
    sqlite3 *again = open_db(path, NULL);
    for (int k = 0; k < ROWS; k++)
        expect(again, k, want, BLOB_BYTES);
    assert_int_equal(sqlite3_close(again), SQLITE_OK);

    free(b);
    free(want);
    char wal[160], shm[160];
    snprintf(wal, sizeof(wal), "%s-wal", path);
    snprintf(shm, sizeof(shm), "%s-shm", path);
    unlink(wal);
    unlink(shm);
    unlink(path);
    rmdir(dir);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(commits_visible_and_file_whole),
};

DCMS_TEST_MAIN(tests)
