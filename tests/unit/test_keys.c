/*
 * The keys module on both stores and both keyrings: wrap/unwrap, the
 * binding of a wrap to its DEK id and purpose, rotate, resumable rewrap,
 * retire, destroy; the file keyring's permissions and atomic creation; the
 * PKCS#11 keyring against a SoftHSM2 token this test initialises in the
 * case's directory (cases skip when softhsm2-util is missing, and fail
 * under CI=true).
 */
#include "testdb.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <sodium.h>

#include "dcms/audit.h"
#include "dcms/keys.h"
#include "dcms/store.h"
#include "keys/keys_int.h"

#include <p11-kit/pkcs11.h>

#define SOFTHSM_MODULE "/usr/lib/softhsm/libsofthsm2.so"

struct fixture {
    struct dcms_testdb db; /* first: see testdb.h */
    char ring_path[256];
    char pin_path[256];
    bool pkcs11;
    struct dcms_store *store;
    struct dcms_audit *audit;
    struct dcms_keys *keys;
};

DCMS_TESTDB_SETUPS("/tmp/dcms-keys-XXXXXX", "dcms_k_")

static int teardown(void **state)
{
    struct fixture *f = *state;
    dcms_keys_close(f->keys);
    dcms_audit_close(f->audit);
    dcms_store_close(f->store);
    dcms_testdb_cleanup(&f->db);
    free(f);
    return 0;
}

/* A fresh SoftHSM2 token "dcms-test" (user PIN in f->pin_path) under f->db.dir. */
static void init_softhsm(struct fixture *f)
{
    if (access(SOFTHSM_MODULE, R_OK) != 0) {
        if (dcms_testdb_ci_mode())
            fail_msg("SoftHSM2 is not installed (scripts/deps.sh installs softhsm2)");
        skip();
    }
    char path[512], cmd[1024];
    snprintf(path, sizeof(path), "%s/tokens", f->db.dir);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof(path), "%s/softhsm2.conf", f->db.dir);
    FILE *c = fopen(path, "w");
    assert_non_null(c);
    fprintf(c, "directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n",
            f->db.dir);
    fclose(c);
    assert_int_equal(setenv("SOFTHSM2_CONF", path, 1), 0);
    snprintf(cmd, sizeof(cmd),
             "softhsm2-util --init-token --free --label dcms-test --pin 4321 --so-pin 8765 "
             ">/dev/null");
    assert_int_equal(system(cmd), 0);
    snprintf(f->pin_path, sizeof(f->pin_path), "%s/pin", f->db.dir);
    int fd = open(f->pin_path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "4321\n", 5), 5);
    close(fd);
    f->pkcs11 = true;
}

static struct dcms_keys_opts opts_of(struct fixture *f)
{
    struct dcms_keys_opts o = {.backend = f->pkcs11 ? DCMS_KEYS_PKCS11 : DCMS_KEYS_FILE,
                               .file_path = f->ring_path,
                               .pkcs11_module = SOFTHSM_MODULE,
                               .pkcs11_token_label = "dcms-test",
                               .pkcs11_pin_file = f->pin_path};
    return o;
}

static void open_all(struct fixture *f)
{
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    snprintf(f->ring_path, sizeof(f->ring_path), "%s/keys/keyring", f->db.dir);
    char apath[300];
    snprintf(apath, sizeof(apath), "%s/audit.key", f->db.dir);
    CHECK(dcms_store_open(f->db.url, NULL, &f->store, &ei), ei);
    struct dcms_audit_opts ao = {.key_path = apath};
    CHECK(dcms_audit_open(f->store, &ao, &f->audit, &ei), ei);
    struct dcms_keys_opts o = opts_of(f);
    CHECK(dcms_keys_open(&o, f->store, f->audit, &f->keys, &ei), ei);
}

/* Creates a DEK for `purpose` and returns its id and bytes. */
static void make_dek(struct fixture *f, const char *purpose, char id[40],
                     unsigned char bytes[DCMS_DEK_LEN])
{
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_store_tx *tx;
    struct dcms_dek *d = NULL;
    CHECK(dcms_store_begin(f->store, DCMS_TX_WRITE, &tx, &ei), ei);
    CHECK(dcms_keys_dek_create(f->keys, tx, purpose, "owner-1", &d, &ei), ei);
    CHECK(dcms_store_commit(tx, &ei), ei);
    snprintf(id, 40, "%s", dcms_dek_id(d));
    memcpy(bytes, dcms_dek_bytes(d), DCMS_DEK_LEN);
    dcms_dek_free(d);
}

/* Opens DEK `id`; returns the error, and on success its bytes in `bytes`. */
static enum dcms_err open_dek(struct fixture *f, const char *id, const char *purpose,
                              unsigned char bytes[DCMS_DEK_LEN])
{
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_store_tx *tx;
    struct dcms_dek *d = NULL;
    CHECK(dcms_store_begin(f->store, DCMS_TX_READ, &tx, &ei), ei);
    enum dcms_err e = dcms_keys_dek_open(f->keys, tx, id, purpose, &d, &ei);
    dcms_store_rollback(tx);
    if (!e)
        memcpy(bytes, dcms_dek_bytes(d), DCMS_DEK_LEN);
    dcms_dek_free(d);
    return e;
}

static void exec_sql(struct fixture *f, struct dcms_query *q, const struct dcms_store_val *p,
                     size_t n)
{
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_store_tx *tx;
    CHECK(dcms_store_begin(f->store, DCMS_TX_WRITE, &tx, &ei), ei);
    CHECK(dcms_store_exec(tx, q, p, n, NULL, NULL, &ei), ei);
    CHECK(dcms_store_commit(tx, &ei), ei);
}

static int64_t count_sql(struct fixture *f, struct dcms_query *q, const struct dcms_store_val *p,
                         size_t n)
{
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    CHECK(dcms_store_begin(f->store, DCMS_TX_READ, &tx, &ei), ei);
    CHECK(dcms_store_exec(tx, q, p, n, &rows, NULL, &ei), ei);
    int64_t v = dcms_store_rows_int(rows, 0, 0);
    dcms_store_rows_free(rows);
    dcms_store_rollback(tx);
    return v;
}

/* ---- cases run on every store and keyring ---- */

static void wrap_unwrap(struct fixture *f)
{
    open_all(f);
    char id[40], id2[40];
    unsigned char b[DCMS_DEK_LEN], b2[DCMS_DEK_LEN], got[DCMS_DEK_LEN];
    make_dek(f, "dataset", id, b);
    make_dek(f, "dataset", id2, b2);
    assert_true(dcms_uuid_valid(id));
    assert_memory_not_equal(b, b2, DCMS_DEK_LEN);
    assert_int_equal(open_dek(f, id, "dataset", got), DCMS_OK);
    assert_memory_equal(b, got, DCMS_DEK_LEN);
    assert_int_equal(open_dek(f, id2, "dataset", got), DCMS_OK);
    assert_memory_equal(b2, got, DCMS_DEK_LEN);
    /* Another purpose, an unknown id: not found. */
    assert_int_equal(open_dek(f, id, "model", got), DCMS_ERR_NOT_FOUND);
    assert_int_equal(open_dek(f, "0190d1c4-0000-7000-8000-000000000000", "dataset", got),
                     DCMS_ERR_NOT_FOUND);
    /* The store never holds the DEK in the clear. */
    static struct dcms_query q_wrapped =
        DCMS_QUERY("t_wrapped", "SELECT wrapped FROM data_keys WHERE id = $1");
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(id)};
    CHECK(dcms_store_begin(f->store, DCMS_TX_READ, &tx, &ei), ei);
    CHECK(dcms_store_exec(tx, &q_wrapped, p, 1, &rows, NULL, &ei), ei);
    unsigned char raw[128];
    size_t rn = 0;
    const char *w = dcms_store_rows_text(rows, 0, 0);
    assert_int_equal(dcms_b64_decode(raw, sizeof(raw), w, strlen(w), &rn), DCMS_OK);
    assert_int_equal(rn, KEYS_WRAPPED_LEN);
    assert_null(memmem(raw, rn, b, 8));
    dcms_store_rows_free(rows);
    dcms_store_rollback(tx);
    /* Reopening the keyring (a restart) still unwraps. */
    dcms_keys_close(f->keys);
    f->keys = NULL;
    struct dcms_keys_opts o = opts_of(f);
    CHECK(dcms_keys_open(&o, f->store, f->audit, &f->keys, &ei), ei);
    assert_int_equal(open_dek(f, id, "dataset", got), DCMS_OK);
    assert_memory_equal(b, got, DCMS_DEK_LEN);
}

static void aad_binding(struct fixture *f)
{
    open_all(f);
    char a[40], b[40];
    unsigned char ka[DCMS_DEK_LEN], kb[DCMS_DEK_LEN], got[DCMS_DEK_LEN];
    make_dek(f, "dataset", a, ka);
    make_dek(f, "dataset", b, kb);
    /* Copy a's wrap into b's row: b must not unwrap to a's key. */
    static struct dcms_query q_copy = DCMS_QUERY(
        "t_copy", "UPDATE data_keys SET wrapped = (SELECT wrapped FROM data_keys WHERE id = $1) "
                  "WHERE id = $2");
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(a), DCMS_VAL_TEXT(b)};
    exec_sql(f, &q_copy, p, 2);
    assert_int_equal(open_dek(f, b, "dataset", got), DCMS_ERR_CRYPTO);
    assert_int_equal(open_dek(f, a, "dataset", got), DCMS_OK);
    /* Relabel a's purpose in the store: the wrap no longer authenticates. */
    static struct dcms_query q_purpose =
        DCMS_QUERY("t_purpose", "UPDATE data_keys SET purpose = 'model' WHERE id = $1");
    struct dcms_store_val pa[] = {DCMS_VAL_TEXT(a)};
    exec_sql(f, &q_purpose, pa, 1);
    assert_int_equal(open_dek(f, a, "model", got), DCMS_ERR_CRYPTO);
    /* Flip one bit of a wrap. */
    char c[40];
    unsigned char kc[DCMS_DEK_LEN];
    make_dek(f, "dataset", c, kc);
    static struct dcms_query q_get =
        DCMS_QUERY("t_get", "SELECT wrapped FROM data_keys WHERE id = $1");
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    struct dcms_store_val pc[] = {DCMS_VAL_TEXT(c)};
    CHECK(dcms_store_begin(f->store, DCMS_TX_READ, &tx, &ei), ei);
    CHECK(dcms_store_exec(tx, &q_get, pc, 1, &rows, NULL, &ei), ei);
    unsigned char raw[128];
    size_t rn = 0;
    const char *w = dcms_store_rows_text(rows, 0, 0);
    assert_int_equal(dcms_b64_decode(raw, sizeof(raw), w, strlen(w), &rn), DCMS_OK);
    dcms_store_rows_free(rows);
    dcms_store_rollback(tx);
    raw[20] ^= 1;
    char b64[128];
    dcms_b64_encode(b64, raw, rn);
    static struct dcms_query q_set =
        DCMS_QUERY("t_set", "UPDATE data_keys SET wrapped = $2 WHERE id = $1");
    struct dcms_store_val ps[] = {DCMS_VAL_TEXT(c), DCMS_VAL_TEXT(b64)};
    exec_sql(f, &q_set, ps, 2);
    assert_int_equal(open_dek(f, c, "dataset", got), DCMS_ERR_CRYPTO);
}

static void rotate_rewrap_retire(struct fixture *f)
{
    open_all(f);
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_keys_actor who = {.actor = "system", .request_id = "t-1"};
    enum { N = 7 };
    char ids[N][40];
    unsigned char ks[N][DCMS_DEK_LEN], got[DCMS_DEK_LEN];
    for (int i = 0; i < N; i++)
        make_dek(f, "dataset", ids[i], ks[i]);
    struct dcms_keys_status st;
    CHECK(dcms_keys_status(f->keys, &st, &ei), ei);
    assert_int_equal(st.active_version, 1);
    assert_int_equal(st.deks_total, N);
    assert_int_equal(st.deks_pending, 0);

    int64_t v = 0;
    CHECK(dcms_keys_rotate(f->keys, &who, &v, &ei), ei);
    assert_int_equal(v, 2);
    /* New wraps use version 2; old DEKs still open under version 1. */
    char nid[40];
    unsigned char nk[DCMS_DEK_LEN];
    make_dek(f, "dataset", nid, nk);
    assert_int_equal(open_dek(f, ids[0], "dataset", got), DCMS_OK);
    assert_memory_equal(ks[0], got, DCMS_DEK_LEN);
    CHECK(dcms_keys_status(f->keys, &st, &ei), ei);
    assert_int_equal(st.active_version, 2);
    assert_int_equal(st.deks_pending, N);
    assert_int_equal(st.n_versions, 2);
    assert_int_equal(st.versions[0].state, DCMS_KEK_ACTIVE);
    assert_int_equal(st.versions[1].state, DCMS_KEK_PREVIOUS);
    assert_int_equal(st.versions[1].dek_count, N);

    /* Retiring the active version or one still in use is refused. */
    assert_int_equal(dcms_keys_retire(f->keys, &who, 2, &ei), DCMS_ERR_CONFLICT);
    assert_int_equal(dcms_keys_retire(f->keys, &who, 1, &ei), DCMS_ERR_CONFLICT);
    assert_int_equal(dcms_keys_retire(f->keys, &who, 9, &ei), DCMS_ERR_NOT_FOUND);

    /* Rewrap in batches: a stopped rewrap resumes where it stopped. */
    int64_t done = 0, left = 0;
    CHECK(dcms_keys_rewrap(f->keys, &who, 3, &done, &left, &ei), ei);
    assert_int_equal(done, 3);
    assert_int_equal(left, N - 3);
    CHECK(dcms_keys_rewrap_all(f->keys, &who, 2, &done, &ei), ei);
    assert_int_equal(done, N - 3);
    CHECK(dcms_keys_rewrap(f->keys, &who, 0, &done, &left, &ei), ei);
    assert_int_equal(done, 0);
    assert_int_equal(left, 0);
    CHECK(dcms_keys_status(f->keys, &st, &ei), ei);
    assert_int_equal(st.deks_pending, 0);

    CHECK(dcms_keys_retire(f->keys, &who, 1, &ei), ei);
    CHECK(dcms_keys_retire(f->keys, &who, 1, &ei), ei); /* idempotent */
    /* Every DEK still opens with the same bytes. */
    for (int i = 0; i < N; i++) {
        assert_int_equal(open_dek(f, ids[i], "dataset", got), DCMS_OK);
        assert_memory_equal(ks[i], got, DCMS_DEK_LEN);
    }
    assert_int_equal(open_dek(f, nid, "dataset", got), DCMS_OK);
    assert_memory_equal(nk, got, DCMS_DEK_LEN);
    /* The retired version's material is gone from the keyring. */
    assert_false(f->keys->ops->has(f->keys->ring, 1));
    assert_true(f->keys->ops->has(f->keys->ring, 2));

    /* A wrap under the retired version (restored from an old backup) is refused. */
    static struct dcms_query q_back =
        DCMS_QUERY("t_back", "UPDATE data_keys SET kek_version = 1 WHERE id = $1");
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(ids[0])};
    exec_sql(f, &q_back, p, 1);
    assert_int_equal(open_dek(f, ids[0], "dataset", got), DCMS_ERR_CONFLICT);

    /* Audited: one rotate, at least three rewrap batches, one retire. */
    static struct dcms_query q_ev =
        DCMS_QUERY("t_ev", /* committed events, sequenced or still pending */
                   "SELECT COUNT(*) FROM (SELECT action FROM audit_events UNION ALL "
                   "SELECT action FROM audit_pending) AS e WHERE action = $1");
    struct dcms_store_val a1[] = {DCMS_VAL_TEXT("keys.rotate")};
    struct dcms_store_val a2[] = {DCMS_VAL_TEXT("keys.rewrap")};
    struct dcms_store_val a3[] = {DCMS_VAL_TEXT("keys.retire")};
    assert_int_equal(count_sql(f, &q_ev, a1, 1), 1);
    assert_int_equal(count_sql(f, &q_ev, a2, 1), 3);
    assert_int_equal(count_sql(f, &q_ev, a3, 1), 1);
}

static void destroy(struct fixture *f)
{
    open_all(f);
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    char id[40], keep[40];
    unsigned char k[DCMS_DEK_LEN], kk[DCMS_DEK_LEN], got[DCMS_DEK_LEN];
    make_dek(f, "dataset", id, k);
    make_dek(f, "dataset", keep, kk);
    struct dcms_store_tx *tx;
    CHECK(dcms_store_begin(f->store, DCMS_TX_WRITE, &tx, &ei), ei);
    CHECK(dcms_keys_dek_destroy(f->keys, tx, id, &ei), ei);
    CHECK(dcms_keys_dek_destroy(f->keys, tx, id, &ei), ei); /* idempotent */
    assert_int_equal(
        dcms_keys_dek_destroy(f->keys, tx, "0190d1c4-0000-7000-8000-000000000000", &ei),
        DCMS_ERR_NOT_FOUND);
    CHECK(dcms_store_commit(tx, &ei), ei);
    assert_int_equal(open_dek(f, id, "dataset", got), DCMS_ERR_NOT_FOUND);
    assert_int_equal(open_dek(f, keep, "dataset", got), DCMS_OK);
    static struct dcms_query q_w =
        DCMS_QUERY("t_w", "SELECT COUNT(*) FROM data_keys WHERE id = $1 AND wrapped IS NULL AND "
                          "destroyed_at IS NOT NULL");
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(id)};
    assert_int_equal(count_sql(f, &q_w, p, 1), 1);
    /* A destroyed DEK neither counts nor blocks a retire. */
    struct dcms_keys_status st;
    CHECK(dcms_keys_status(f->keys, &st, &ei), ei);
    assert_int_equal(st.deks_total, 1);
    /* A rollback keeps the DEK. */
    CHECK(dcms_store_begin(f->store, DCMS_TX_WRITE, &tx, &ei), ei);
    CHECK(dcms_keys_dek_destroy(f->keys, tx, keep, &ei), ei);
    dcms_store_rollback(tx);
    assert_int_equal(open_dek(f, keep, "dataset", got), DCMS_OK);
}

DCMS_TESTDB_CASE(wrap_unwrap)
DCMS_TESTDB_CASE(aad_binding)
DCMS_TESTDB_CASE(rotate_rewrap_retire)
DCMS_TESTDB_CASE(destroy)

/* The same cases with the PKCS#11 keyring. */
#define PKCS11_CASE(name)                                                                          \
    static void name##_pkcs11_sqlite(void **state)                                                 \
    {                                                                                              \
        struct fixture *f = dcms_testdb_fixture(state);                                            \
        init_softhsm(f);                                                                           \
        name(f);                                                                                   \
    }                                                                                              \
    static void name##_pkcs11_pg(void **state)                                                     \
    {                                                                                              \
        struct fixture *f = dcms_testdb_fixture(state);                                            \
        init_softhsm(f);                                                                           \
        name(f);                                                                                   \
    }
PKCS11_CASE(wrap_unwrap)
PKCS11_CASE(aad_binding)
PKCS11_CASE(rotate_rewrap_retire)
PKCS11_CASE(destroy)

/* ---- file keyring ---- */

static void file_permissions(void **state)
{
    struct fixture *f = *state;
    open_all(f);
    struct stat st;
    assert_int_equal(stat(f->ring_path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    dcms_keys_close(f->keys);
    f->keys = NULL;
    assert_int_equal(chmod(f->ring_path, 0640), 0);
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_keys_opts o = opts_of(f);
    assert_int_equal(dcms_keys_open(&o, f->store, f->audit, &f->keys, &ei), DCMS_ERR_CONFIG);
    assert_non_null(strstr(ei.message, "chmod 600"));
    assert_int_equal(chmod(f->ring_path, 0600), 0);
    dcms_errinfo_init(&ei, NULL);
    CHECK(dcms_keys_open(&o, f->store, f->audit, &f->keys, &ei), ei);
}

/* A keyring that lacks a version the store uses (another file) is refused at start. */
static void file_missing_version(void **state)
{
    struct fixture *f = *state;
    open_all(f);
    dcms_keys_close(f->keys);
    f->keys = NULL;
    assert_int_equal(unlink(f->ring_path), 0);
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_keys_opts o = opts_of(f);
    assert_int_equal(dcms_keys_open(&o, f->store, f->audit, &f->keys, &ei), DCMS_ERR_CONFIG);
    assert_non_null(strstr(ei.message, "lacks KEK version 1"));
}

struct racer {
    struct fixture *f;
    struct dcms_keys *k;
    enum dcms_err e;
};

static void *race_open(void *arg)
{
    struct racer *r = arg;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_keys_opts o = opts_of(r->f);
    r->e = dcms_keys_open(&o, r->f->store, r->f->audit, &r->k, &ei);
    return NULL;
}

/* Several starters on one new keyring path and one new store end up with one keyring. */
static void file_atomic_create(void **state)
{
    struct fixture *f = *state;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    snprintf(f->ring_path, sizeof(f->ring_path), "%s/keys/keyring", f->db.dir);
    char apath[300];
    snprintf(apath, sizeof(apath), "%s/audit.key", f->db.dir);
    struct dcms_store_opts so = {.pool_size = 8};
    CHECK(dcms_store_open(f->db.url, &so, &f->store, &ei), ei);
    struct dcms_audit_opts ao = {.key_path = apath};
    CHECK(dcms_audit_open(f->store, &ao, &f->audit, &ei), ei);
    enum { T = 4 };
    struct racer r[T];
    pthread_t t[T];
    for (int i = 0; i < T; i++) {
        r[i] = (struct racer){.f = f};
        assert_int_equal(pthread_create(&t[i], NULL, race_open, &r[i]), 0);
    }
    for (int i = 0; i < T; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    for (int i = 0; i < T; i++)
        assert_int_equal(r[i].e, DCMS_OK);
    f->keys = r[0].k;
    char id[40];
    unsigned char k[DCMS_DEK_LEN], got[DCMS_DEK_LEN];
    make_dek(f, "dataset", id, k);
    for (int i = 1; i < T; i++) {
        f->keys = r[i].k;
        assert_int_equal(open_dek(f, id, "dataset", got), DCMS_OK);
        assert_memory_equal(k, got, DCMS_DEK_LEN);
        dcms_keys_close(r[i].k);
    }
    f->keys = r[0].k;
    /* Mode 0600 and no temporary files left beside it. */
    struct stat st;
    assert_int_equal(stat(f->ring_path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char dir[300];
    snprintf(dir, sizeof(dir), "%s/keys", f->db.dir);
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        assert_null(strstr(de->d_name, ".tmp"));
    closedir(d);
    struct dcms_keys_status s;
    CHECK(dcms_keys_status(f->keys, &s, &ei), ei);
    assert_int_equal(s.n_versions, 1);
}

/* ---- PKCS#11 keyring ---- */

static void pkcs11_wrong_pin(void **state)
{
    struct fixture *f = *state;
    init_softhsm(f);
    int fd = open(f->pin_path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "0000\n", 5), 5);
    close(fd);
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    CHECK(dcms_store_open(f->db.url, NULL, &f->store, &ei), ei);
    struct dcms_keys_opts o = opts_of(f);
    assert_int_equal(dcms_keys_open(&o, f->store, NULL, &f->keys, &ei), DCMS_ERR_CONFIG);
    o.pkcs11_token_label = "no-such-token";
    assert_int_equal(dcms_keys_open(&o, f->store, NULL, &f->keys, &ei), DCMS_ERR_CONFIG);
    assert_int_equal(chmod(f->pin_path, 0644), 0);
    o.pkcs11_token_label = "dcms-test";
    assert_int_equal(dcms_keys_open(&o, f->store, NULL, &f->keys, &ei), DCMS_ERR_CONFIG);
}

/* The KEK in the token is sensitive and not extractable. */
static void pkcs11_kek_stays_in_token(void **state)
{
    struct fixture *f = *state;
    init_softhsm(f);
    open_all(f);
    /* Ask the token through the module directly, as anyone holding the PIN could. */
    void *lib = dlopen(SOFTHSM_MODULE, RTLD_NOW);
    assert_non_null(lib);
    CK_C_GetFunctionList get = NULL;
    void *sym = dlsym(lib, "C_GetFunctionList");
    memcpy(&get, &sym, sizeof(get));
    CK_FUNCTION_LIST_PTR fl = NULL;
    assert_int_equal(get(&fl), CKR_OK);
    CK_ULONG n = 8;
    CK_SLOT_ID slots[8];
    assert_int_equal(fl->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
    assert_true(n >= 1);
    CK_SLOT_ID slot = slots[0]; /* the token made by init_softhsm; the free slot follows */
    CK_SESSION_HANDLE s;
    assert_int_equal(fl->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s), CKR_OK);
    CK_RV rv = fl->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) "4321", 4);
    assert_true(rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN);
    const char *label = "dcms-kek-v1";
    CK_ATTRIBUTE tmpl[] = {{CKA_LABEL, (void *)label, strlen(label)}};
    CK_OBJECT_HANDLE h;
    assert_int_equal(fl->C_FindObjectsInit(s, tmpl, 1), CKR_OK);
    assert_int_equal(fl->C_FindObjects(s, &h, 1, &n), CKR_OK);
    fl->C_FindObjectsFinal(s);
    assert_int_equal(n, 1);
    unsigned char value[64];
    CK_BBOOL ex = CK_TRUE, sens = CK_FALSE;
    CK_ATTRIBUTE q[] = {{CKA_EXTRACTABLE, &ex, sizeof(ex)}, {CKA_SENSITIVE, &sens, sizeof(sens)}};
    assert_int_equal(fl->C_GetAttributeValue(s, h, q, 2), CKR_OK);
    assert_false(ex);
    assert_true(sens);
    CK_ATTRIBUTE qv[] = {{CKA_VALUE, value, sizeof(value)}};
    assert_int_equal(fl->C_GetAttributeValue(s, h, qv, 1), CKR_ATTRIBUTE_SENSITIVE);
    fl->C_CloseSession(s);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(wrap_unwrap_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(wrap_unwrap_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(aad_binding_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(aad_binding_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(rotate_rewrap_retire_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(rotate_rewrap_retire_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(destroy_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(destroy_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(wrap_unwrap_pkcs11_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(wrap_unwrap_pkcs11_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(aad_binding_pkcs11_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(aad_binding_pkcs11_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(rotate_rewrap_retire_pkcs11_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(rotate_rewrap_retire_pkcs11_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(destroy_pkcs11_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(destroy_pkcs11_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(file_permissions, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(file_missing_version, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(file_atomic_create, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(pkcs11_wrong_pin, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(pkcs11_kek_stays_in_token, setup_sqlite, teardown),
};

DCMS_TEST_MAIN(tests)
