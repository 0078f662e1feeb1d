/*
 * Inside the store: the backend table that store_sqlite.c and store_pg.c
 * fill in, the connection pool entry, and the row builder both use.
 * Nothing outside src/store/ includes this header.
 */
#ifndef DCMS_STORE_INT_H
#define DCMS_STORE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "dcms/store.h"

#define STORE_MAX_QUERIES 1024 /* distinct named queries per process */

struct dcms_migration {
    int version;
    const char *name;
    const char *sql;
};

/* Generated from src/store/migrations/{sqlite,pg}/NNNN_name.sql; end with {0}. */
extern const struct dcms_migration dcms_migrations_sqlite[];
extern const struct dcms_migration dcms_migrations_pg[];

struct dcms_store;

struct store_backend {
    const char *name;
    enum dcms_store_backend kind;
    const struct dcms_migration *migrations;
    const char *begin_read, *begin_write;
    /*
     * The database takes one writer at a time (SQLite): write transactions
     * queue for one connection of their own, whose page cache no other
     * connection's commit invalidates, and reads use the others.
     */
    bool one_writer;
    /* SQL that takes the migration lock inside a transaction, or NULL. */
    const char *migration_lock;
    /* Opens one connection described by `target` (the URL minus any prefix). */
    enum dcms_err (*connect)(struct dcms_store *s, void **conn, struct dcms_errinfo *ei);
    void (*disconnect)(void *conn);
    /* Backend state for the whole store (started before the first connect); may be NULL. */
    enum dcms_err (*start)(struct dcms_store *s, struct dcms_errinfo *ei);
    void (*stop)(struct dcms_store *s);
    /* Repairs a connection known to be broken (PostgreSQL reconnect); may be NULL. */
    enum dcms_err (*repair)(struct dcms_store *s, void *conn, struct dcms_errinfo *ei);
    /* True when the last failure means the connection itself is gone. */
    bool (*broken)(void *conn);
    /* Runs SQL without parameters; may hold several statements. */
    enum dcms_err (*exec_script)(void *conn, const char *sql, struct dcms_errinfo *ei);
    /*
     * `read_only`: the transaction was begun DCMS_TX_READ; refuse statements
     * that write. `last`: the transaction's last statement (a read
     * transaction may end with it; the ROLLBACK that follows is then a no-op).
     */
    enum dcms_err (*exec)(void *conn, bool read_only, bool last, struct dcms_query *q,
                          const char *sql, const struct dcms_store_val *params, size_t n,
                          struct dcms_store_rows **rows, uint64_t *affected,
                          struct dcms_errinfo *ei);
    /*
     * Runs a statement whose result nobody reads, at the latest with the
     * COMMIT (its parameters copied); its failure fails the statement it went
     * out with. NULL: dcms_store_exec_later runs it at once.
     */
    enum dcms_err (*exec_later)(void *conn, struct dcms_query *q, const char *sql,
                                const struct dcms_store_val *params, size_t n,
                                struct dcms_errinfo *ei);
    /*
     * Runs two statements as `exec` would, one after the other, sent
     * together (`sql` their text). NULL: dcms_store_exec_both runs them one
     * at a time.
     */
    enum dcms_err (*exec_both)(void *conn, const struct dcms_store_stmt *st, const char *const *sql,
                               struct dcms_errinfo *ei);
};

extern const struct store_backend dcms_store_sqlite_backend;
/* The VFS that batches WAL writes (store_sqlite_vfs.c); NULL: use SQLite's default. */
#define STORE_SQLITE_VFS "dcms-walbatch"
const char *store_sqlite_vfs(void);
extern const struct store_backend dcms_store_pg_backend;

struct dcms_store_tx {
    struct dcms_store *store;
    struct pool_entry *entry;
};

struct pool_entry {
    void *conn;
    bool busy;
    bool read_only; /* the current transaction's mode */
    bool end_next;  /* dcms_store_commit_with_next: the next statement is the last */
    struct dcms_store_tx tx;
};

struct dcms_store {
    const struct store_backend *be;
    char *target; /* SQLite path or PostgreSQL conninfo URL */
    unsigned timeout_ms;
    pthread_mutex_t mu;
    pthread_cond_t cv;  /* readers (and every transaction without one_writer) */
    pthread_cond_t wcv; /* one_writer: the writers */
    struct pool_entry *pool;
    unsigned pool_size, in_use;
    unsigned writers_starving; /* one_writer: writers waiting longer than store.c allows */
    uint64_t acquired_total, wait_total, timeouts_total, reconnects_total;
    /*
     * Fault injection for tests only (SQLite's I/O fault tests): when not
     * DCMS_OK, every dcms_store_commit rolls back and fails with this error,
     * as a full disk would. Tests include this header and set it between
     * transactions; the daemon never sets it.
     */
    enum dcms_err fail_commit;
    void *be_state; /* the backend's, from start() */
    /* Messages answered by a PostgreSQL server (pipelines count once); tests count them. */
    _Atomic uint64_t round_trips;
    /* Disk-full episode (store.c, storage_*): when the last write failed for want of space. */
    _Atomic int64_t full_since_us, full_last_us;
};

/* Gives `q` its slot number (1..STORE_MAX_QUERIES-1) on first use; 0 if full. */
int dcms_store_query_slot(struct dcms_query *q);

/* Row builder shared by the backends. */
struct dcms_store_rows *dcms_store_rows_new(size_t ncols);
/* Appends one cell (NULL `p` for SQL NULL) to the current row, row-major. */
enum dcms_err dcms_store_rows_push(struct dcms_store_rows *r, const char *p, size_t len);
/* Fixes cell pointers once every cell is in; call before handing rows out. */
void dcms_store_rows_finish(struct dcms_store_rows *r);

/* Counts a reconnect in the pool statistics. */
void dcms_store_note_reconnect(struct dcms_store *s);

#endif
