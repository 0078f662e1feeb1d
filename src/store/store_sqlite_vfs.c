/*
 * A thin SQLite VFS over the default one that turns the many small writes
 * of a write-ahead log into few large ones.
 *
 * SQLite appends a WAL frame as two writes (24-byte header, then the page),
 * so a transaction that writes a 1 MiB blob in 4 KiB pages costs ~514
 * pwrite calls. Here the WAL file gathers writes that extend a contiguous
 * run in a buffer (WAL_BUF_BYTES) and writes the run at once. Nothing
 * another reader could need is held back:
 *   - a commit becomes visible to other connections only when the writer
 *     publishes the new wal-index header, and walIndexWriteHdr() calls
 *     xShmBarrier on the database file between the two copies of the header
 *     (readers ignore a header whose copies differ): the database file of
 *     the same connection flushes its WAL's buffer there, so every frame a
 *     published header counts is in the file first;
 *   - any other operation on the WAL (read, sync, truncate, size, file
 *     control, close) and any write that does not extend the run flushes
 *     first, so the file sees the writes in the order they were made.
 * Durability is unchanged: the syncs happen where SQLite asks for them,
 * after the flush. A WAL whose database file cannot be found is not
 * buffered at all.
 *
 * The database file is matched with its WAL by the name pointer SQLite
 * gives both (sqlite3_filename_wal() of the database's name is the very
 * string the WAL is opened with), so each connection pairs with its own.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "dcms/log.h"
#include "store/store_int.h"

#define WAL_BUF_BYTES (2u << 20)

struct vfs_file {
    sqlite3_file base;
    sqlite3_file *real;    /* the default VFS's file, allocated right after this struct */
    bool wal;              /* a WAL file (else a main database file) */
    bool flush_next;       /* WAL: the last write was a commit frame's header */
    bool ckpt;             /* database: holds the checkpoint (or recovery) lock */
    const char *wal_name;  /* database: the name its WAL will be opened with */
    struct vfs_file *peer; /* database <-> its open WAL */
    struct vfs_file *next; /* database: in the list of open databases */
    unsigned char *buf;    /* the pending run of writes, [buf_off, buf_off + buf_len) */
    sqlite3_int64 buf_off;
    size_t buf_len;
    unsigned char *ra; /* WAL: bytes read ahead, [ra_off, ra_off + ra_len) */
    sqlite3_int64 ra_off;
    size_t ra_len;
};

static sqlite3_vfs *g_real;
static sqlite3_vfs g_vfs;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static struct vfs_file *g_dbs; /* open database files, to pair with their WAL */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static bool g_ok;

/* The default unix VFS writes at most 128 KiB - 1 per call (it masks the length with 0x1ffff). */
#define IO_MAX (120u << 10)

/* Writes the pending run out. */
static int run_flush(struct vfs_file *f)
{
    int rc = SQLITE_OK;
    for (size_t at = 0; at < f->buf_len && rc == SQLITE_OK; at += IO_MAX) {
        size_t k = f->buf_len - at < IO_MAX ? f->buf_len - at : IO_MAX;
        rc =
            f->real->pMethods->xWrite(f->real, f->buf + at, (int)k, f->buf_off + (sqlite3_int64)at);
    }
    f->buf_len = 0;
    return rc;
}

/*
 * Before any operation but a write that extends the run or a read of the
 * WAL: the file gets what was written, in order, and what was read ahead
 * is forgotten (another connection may write there once locks change).
 */
static int settle(struct vfs_file *f)
{
    f->ra_len = 0;
    return run_flush(f);
}

static int x_close(sqlite3_file *pf)
{
    struct vfs_file *f = (struct vfs_file *)pf;
    int rc = settle(f);
    pthread_mutex_lock(&g_mu);
    if (f->peer) {
        if (f->wal) {
            /* the database without its WAL writes straight through again */
            int rc3 = run_flush(f->peer);
            rc = rc != SQLITE_OK ? rc : rc3;
            free(f->peer->buf);
            f->peer->buf = NULL;
        }
        f->peer->peer = NULL;
    }
    f->peer = NULL;
    for (struct vfs_file **pp = &g_dbs; *pp; pp = &(*pp)->next)
        if (*pp == f) {
            *pp = f->next;
            break;
        }
    pthread_mutex_unlock(&g_mu);
    free(f->buf);
    free(f->ra);
    int rc2 = f->real->pMethods->xClose(f->real);
    return rc != SQLITE_OK ? rc : rc2;
}

/*
 * Reads of the WAL by a checkpoint or a recovery (frame by frame, in page
 * or frame order: mostly ascending offsets) are served from IO_MAX bytes
 * read ahead; a reader's lookups of single pages read what they ask. Only
 * frames a published header counts are read, and those do not change while
 * the reader holds its locks; what was read ahead is dropped at every
 * change of the connection's locks (x_shm_lock) and at its own writes.
 */
static int x_read(sqlite3_file *pf, void *p, int n, sqlite3_int64 off)
{
    struct vfs_file *f = (struct vfs_file *)pf;
    int rc = run_flush(f);
    if (rc != SQLITE_OK)
        return rc;
    if (!f->wal || !f->ra || !f->peer || !f->peer->ckpt || n <= 0 || (size_t)n > IO_MAX / 2)
        return f->real->pMethods->xRead(f->real, p, n, off);
    if (!(f->ra_len && off >= f->ra_off && off + n <= f->ra_off + (sqlite3_int64)f->ra_len)) {
        f->ra_len = 0;
        if (f->real->pMethods->xRead(f->real, f->ra, (int)IO_MAX, off) != SQLITE_OK)
            return f->real->pMethods->xRead(f->real, p, n, off); /* near the end: as asked */
        f->ra_off = off;
        f->ra_len = IO_MAX;
    }
    memcpy(p, f->ra + (off - f->ra_off), (size_t)n);
    return SQLITE_OK;
}

/*
 * Writes that extend the run are gathered (up to WAL_BUF_BYTES). In the
 * WAL a frame is written as its 24-byte header, then the page; a commit
 * frame's header holds the database size in pages (bytes 4-7), never 0.
 * The run is written out right after a commit frame's page, so a failure
 * is the commit's error, before SQLite publishes anything. In the database
 * file (written by checkpoints) the run goes out at the SQLITE_FCNTL_CKPT_DONE
 * that ends the copy, or at the sync, before the checkpoint is recorded.
 */
static int x_write(sqlite3_file *pf, const void *p, int n, sqlite3_int64 off)
{
    struct vfs_file *f = (struct vfs_file *)pf;
    f->ra_len = 0;
    if (!f->buf || n <= 0)
        return f->real->pMethods->xWrite(f->real, p, n, off);
    const unsigned char *b = p;
    bool commit_header = f->wal && n == 24 && (b[4] | b[5] | b[6] | b[7]) != 0;
    int rc = SQLITE_OK;
    if (f->buf_len &&
        (off != f->buf_off + (sqlite3_int64)f->buf_len || f->buf_len + (size_t)n > WAL_BUF_BYTES))
        rc = run_flush(f);
    if (rc == SQLITE_OK && (size_t)n > WAL_BUF_BYTES) {
        rc = f->real->pMethods->xWrite(f->real, p, n, off);
    } else if (rc == SQLITE_OK) {
        if (!f->buf_len)
            f->buf_off = off;
        memcpy(f->buf + f->buf_len, p, (size_t)n);
        f->buf_len += (size_t)n;
    }
    if (rc == SQLITE_OK && f->flush_next && !commit_header)
        rc = run_flush(f);
    f->flush_next = rc == SQLITE_OK && commit_header;
    return rc;
}

static int x_truncate(sqlite3_file *pf, sqlite3_int64 size)
{
    struct vfs_file *f = (struct vfs_file *)pf;
    int rc = settle(f);
    return rc != SQLITE_OK ? rc : f->real->pMethods->xTruncate(f->real, size);
}

static int x_sync(sqlite3_file *pf, int flags)
{
    struct vfs_file *f = (struct vfs_file *)pf;
    int rc = settle(f);
    return rc != SQLITE_OK ? rc : f->real->pMethods->xSync(f->real, flags);
}

static int x_file_size(sqlite3_file *pf, sqlite3_int64 *size)
{
    struct vfs_file *f = (struct vfs_file *)pf;
    int rc = settle(f);
    return rc != SQLITE_OK ? rc : f->real->pMethods->xFileSize(f->real, size);
}

static int x_lock(sqlite3_file *pf, int lock)
{
    struct vfs_file *f = (struct vfs_file *)pf;
    int rc = settle(f);
    return rc != SQLITE_OK ? rc : f->real->pMethods->xLock(f->real, lock);
}

static int x_unlock(sqlite3_file *pf, int lock)
{
    struct vfs_file *f = (struct vfs_file *)pf;
    int rc = settle(f);
    return rc != SQLITE_OK ? rc : f->real->pMethods->xUnlock(f->real, lock);
}

static int x_check_reserved(sqlite3_file *pf, int *out)
{
    struct vfs_file *f = (struct vfs_file *)pf;
    int rc = settle(f);
    return rc != SQLITE_OK ? rc : f->real->pMethods->xCheckReservedLock(f->real, out);
}

static int x_file_control(sqlite3_file *pf, int op, void *arg)
{
    struct vfs_file *f = (struct vfs_file *)pf;
    int rc = settle(f);
    return rc != SQLITE_OK ? rc : f->real->pMethods->xFileControl(f->real, op, arg);
}

static int x_sector_size(sqlite3_file *pf)
{
    struct vfs_file *f = (struct vfs_file *)pf;
    return f->real->pMethods->xSectorSize(f->real);
}

static int x_device_characteristics(sqlite3_file *pf)
{
    struct vfs_file *f = (struct vfs_file *)pf;
    return f->real->pMethods->xDeviceCharacteristics(f->real);
}

static int x_shm_map(sqlite3_file *pf, int pg, int pgsz, int extend, void volatile **pp)
{
    struct vfs_file *f = (struct vfs_file *)pf;
    return f->real->pMethods->xShmMap(f->real, pg, pgsz, extend, pp);
}

/* A lock of the wal-index changes: the database's run goes out, the WAL's read-ahead is dropped. */
static int x_shm_lock(sqlite3_file *pf, int offset, int n, int flags)
{
    struct vfs_file *f = (struct vfs_file *)pf;
    int rc = settle(f);
    if (f->peer)
        f->peer->ra_len = 0;
    if (rc == SQLITE_OK)
        rc = f->real->pMethods->xShmLock(f->real, offset, n, flags);
    /* wal.c's lock 1 (WAL_CKPT_LOCK) is held exclusively by a checkpoint and by a recovery */
    if (rc == SQLITE_OK && offset <= 1 && 1 < offset + n) {
        if (flags & SQLITE_SHM_UNLOCK)
            f->ckpt = false;
        else if (flags & SQLITE_SHM_EXCLUSIVE)
            f->ckpt = true;
    }
    return rc;
}

/*
 * Called between the two copies of a new wal-index header. The commit frame
 * has flushed the WAL's run already (x_write); should one still be pending,
 * it goes out before the header can be trusted, and if it cannot be written
 * the process stops rather than publish frames that are not in the file
 * (the next start recovers the WAL from the file, checksums and all).
 */
static void x_shm_barrier(sqlite3_file *pf)
{
    struct vfs_file *f = (struct vfs_file *)pf;
    if (run_flush(f) != SQLITE_OK || (f->peer && run_flush(f->peer) != SQLITE_OK)) {
        DCMS_LOG(DCMS_LOG_ERROR, "store", "cannot write the sqlite database or WAL; stopping");
        abort();
    }
    if (f->peer)
        f->peer->ra_len = 0;
    f->real->pMethods->xShmBarrier(f->real);
}

static int x_shm_unmap(sqlite3_file *pf, int del)
{
    struct vfs_file *f = (struct vfs_file *)pf;
    int rc = settle(f);
    return rc != SQLITE_OK ? rc : f->real->pMethods->xShmUnmap(f->real, del);
}

static int x_fetch(sqlite3_file *pf, sqlite3_int64 off, int n, void **pp)
{
    struct vfs_file *f = (struct vfs_file *)pf;
    int rc = settle(f);
    return rc != SQLITE_OK ? rc : f->real->pMethods->xFetch(f->real, off, n, pp);
}

static int x_unfetch(sqlite3_file *pf, sqlite3_int64 off, void *p)
{
    struct vfs_file *f = (struct vfs_file *)pf;
    return f->real->pMethods->xUnfetch(f->real, off, p);
}

static const sqlite3_io_methods g_methods = {
    3,
    x_close,
    x_read,
    x_write,
    x_truncate,
    x_sync,
    x_file_size,
    x_lock,
    x_unlock,
    x_check_reserved,
    x_file_control,
    x_sector_size,
    x_device_characteristics,
    x_shm_map,
    x_shm_lock,
    x_shm_barrier,
    x_shm_unmap,
    x_fetch,
    x_unfetch,
};

static int x_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *pf, int flags, int *out_flags)
{
    bool main_db = (flags & SQLITE_OPEN_MAIN_DB) != 0, wal = (flags & SQLITE_OPEN_WAL) != 0;
    if (!name || (!main_db && !wal))
        return g_real->xOpen(g_real, name, pf, flags, out_flags); /* fits: szOsFile is larger */
    struct vfs_file *f = (struct vfs_file *)pf;
    memset(f, 0, sizeof(*f));
    f->real = (sqlite3_file *)(f + 1);
    int rc = g_real->xOpen(g_real, name, f->real, flags, out_flags);
    if (rc != SQLITE_OK)
        return rc; /* base.pMethods stays NULL: SQLite does not close it */
    if (f->real->pMethods->iVersion < 3) {
        f->real->pMethods->xClose(f->real);
        return SQLITE_CANTOPEN;
    }
    f->wal = wal;
    pthread_mutex_lock(&g_mu);
    if (main_db) {
        f->wal_name = sqlite3_filename_wal(name);
        f->next = g_dbs;
        g_dbs = f;
    } else {
        for (struct vfs_file *d = g_dbs; d; d = d->next)
            if (d->wal_name == name && !d->peer) {
                d->peer = f;
                f->peer = d;
                break;
            }
    }
    pthread_mutex_unlock(&g_mu);
    if (wal && f->peer) {
        /* without a peer (or memory) nothing is gathered: writes and reads go straight through */
        f->buf = malloc(WAL_BUF_BYTES);
        f->ra = malloc(IO_MAX);
        if (f->buf && !f->peer->buf)
            f->peer->buf = malloc(WAL_BUF_BYTES);
    }
    f->base.pMethods = &g_methods;
    return SQLITE_OK;
}

static int x_delete(sqlite3_vfs *v, const char *name, int sync)
{
    return g_real->xDelete(g_real, name, sync);
}

static int x_access(sqlite3_vfs *v, const char *name, int flags, int *out)
{
    return g_real->xAccess(g_real, name, flags, out);
}

static int x_full_pathname(sqlite3_vfs *v, const char *name, int n, char *out)
{
    return g_real->xFullPathname(g_real, name, n, out);
}

static void *x_dl_open(sqlite3_vfs *v, const char *name)
{
    return g_real->xDlOpen(g_real, name);
}

static void x_dl_error(sqlite3_vfs *v, int n, char *msg)
{
    g_real->xDlError(g_real, n, msg);
}

static void (*x_dl_sym(sqlite3_vfs *v, void *h, const char *sym))(void)
{
    return g_real->xDlSym(g_real, h, sym);
}

static void x_dl_close(sqlite3_vfs *v, void *h)
{
    g_real->xDlClose(g_real, h);
}

static int x_randomness(sqlite3_vfs *v, int n, char *out)
{
    return g_real->xRandomness(g_real, n, out);
}

static int x_sleep(sqlite3_vfs *v, int us)
{
    return g_real->xSleep(g_real, us);
}

static int x_current_time(sqlite3_vfs *v, double *out)
{
    return g_real->xCurrentTime(g_real, out);
}

static int x_get_last_error(sqlite3_vfs *v, int n, char *out)
{
    return g_real->xGetLastError(g_real, n, out);
}

static int x_current_time_int64(sqlite3_vfs *v, sqlite3_int64 *out)
{
    return g_real->xCurrentTimeInt64(g_real, out);
}

static void vfs_init(void)
{
    g_real = sqlite3_vfs_find(NULL);
    if (!g_real || g_real->iVersion < 2)
        return;
    g_vfs = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)sizeof(struct vfs_file) + g_real->szOsFile,
        .mxPathname = g_real->mxPathname,
        .zName = STORE_SQLITE_VFS,
        .xOpen = x_open,
        .xDelete = x_delete,
        .xAccess = x_access,
        .xFullPathname = x_full_pathname,
        .xDlOpen = x_dl_open,
        .xDlError = x_dl_error,
        .xDlSym = x_dl_sym,
        .xDlClose = x_dl_close,
        .xRandomness = x_randomness,
        .xSleep = x_sleep,
        .xCurrentTime = x_current_time,
        .xGetLastError = x_get_last_error,
        .xCurrentTimeInt64 = x_current_time_int64,
    };
    g_ok = sqlite3_vfs_register(&g_vfs, 0) == SQLITE_OK;
}

const char *store_sqlite_vfs(void)
{
    pthread_once(&g_once, vfs_init);
    return g_ok ? STORE_SQLITE_VFS : NULL;
}
