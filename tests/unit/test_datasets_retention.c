/*
 * The retention job (src/datasets/datasets_retention.c) on both backends:
 * what was derived under a contract is purged only once the contract has
 * ended and its terms.retention.days have passed (at once without the
 * term), with the method the terms name, its data key destroyed, each purge
 * audited, and nothing purged twice.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "testdb.h"
#include "dcms/app.h"
#include "dcms/arena.h"
#include "dcms/audit.h"
#include "dcms/clock.h"
#include "dcms/config.h"
#include "dcms/datasets.h"
#include "dcms/keys.h"
#include "dcms/store.h"
#include "iam/iam_core.h"
#include "iam/iam_identity.h"

struct fixture {
    struct dcms_testdb db; /* first: see testdb.h */
    struct dcms_config cfg;
    struct dcms_app app;
    struct dcms_arena *arena;
    struct dcms_principal admin;
    char prov[DCMS_UUID_STRLEN], cons[DCMS_UUID_STRLEN];
};

DCMS_TESTDB_SETUPS("/tmp/dcms-retention-XXXXXX", "dcms_rt_")

static int teardown(void **state)
{
    struct fixture *f = *state;
    dcms_datasets_close(f->app.datasets);
    dcms_iam_close(f->app.iam);
    dcms_keys_close(f->app.keys);
    dcms_audit_close(f->app.audit);
    dcms_store_close(f->app.store);
    dcms_arena_free(f->arena);
    dcms_testdb_cleanup(&f->db);
    free(f);
    return 0;
}

static void user(struct fixture *f, unsigned role, char id[DCMS_UUID_STRLEN])
{
    static int n;
    char email[96];
    snprintf(email, sizeof(email), "rt-%d-%lld@example.com", ++n, (long long)dcms_clock_now_us());
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, f->arena);
    struct iam_call c = {f->app.iam, &f->admin, "127.0.0.1", "test", &ei};
    struct iam_identity_in in = {
        .kind = "user", .name = "U", .email = email, .roles = role, .has_roles = true};
    json_t *out = NULL;
    CHECK(iam_identity_create(&c, &in, &out), ei);
    snprintf(id, DCMS_UUID_STRLEN, "%s", json_string_value(json_object_get(out, "id")));
    json_decref(out);
}

static void open_all(struct fixture *f)
{
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    CHECK(dcms_config_load(&f->cfg, NULL, &ei), ei);
    snprintf(f->cfg.data_dir, sizeof(f->cfg.data_dir), "%s", f->db.dir);
    snprintf(f->cfg.keys_file, sizeof(f->cfg.keys_file), "%s/keys/keyring", f->db.dir);
    f->cfg.pwhash_max_concurrent = 1;
    f->cfg.retention_interval_s = 0; /* the test runs the job itself */
    struct dcms_store_opts so = {4, 30000};
    CHECK(dcms_store_open(f->db.url, &so, &f->app.store, &ei), ei);
    char key_path[128];
    snprintf(key_path, sizeof(key_path), "%s/audit.key", f->db.dir);
    struct dcms_audit_opts ao = {key_path, 1000, 0, 0, NULL, 0};
    CHECK(dcms_audit_open(f->app.store, &ao, &f->app.audit, &ei), ei);
    f->app.cfg = &f->cfg;
    struct dcms_keys_opts ko;
    dcms_keys_opts_from_config(&f->cfg, &ko);
    CHECK(dcms_keys_open(&ko, f->app.store, f->app.audit, &f->app.keys, &ei), ei);
    CHECK(dcms_iam_open(&f->app, &f->app.iam, &ei), ei);
    CHECK(dcms_datasets_open(&f->app, &f->app.datasets, &ei), ei);
    f->arena = dcms_arena_new(1 << 20);
    assert_non_null(f->arena);
    dcms_uuid_v7(f->admin.id);
    f->admin.roles = DCMS_ROLE_ADMIN;
    user(f, DCMS_ROLE_PROVIDER, f->prov);
    user(f, DCMS_ROLE_CONSUMER, f->cons);
}

/* A contract row as the contract service would leave it, ended `ago_s` seconds ago. */
static void contract(struct fixture *f, const char *status, int64_t ago_s, const char *retention,
                     char id[DCMS_UUID_STRLEN])
{
    static struct dcms_query q = DCMS_QUERY(
        "test_rt_contract",
        "INSERT INTO contracts (id, title, provider_id, consumer_id, status, terms, terms_hash, "
        "created_at, updated_at) VALUES ($1, 'T', $2, $3, $4, $5, 'h', $6, $6)");
    char terms[256], when[DCMS_TIME_STRLEN];
    snprintf(terms, sizeof(terms), "{\"purpose\":\"p\"%s%s}", retention ? ",\"retention\":" : "",
             retention ? retention : "");
    dcms_time_format(dcms_clock_now_us() - ago_s * 1000000, when);
    dcms_uuid_v7(id);
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_store_tx *tx;
    CHECK(dcms_store_begin(f->app.store, DCMS_TX_WRITE, &tx, &ei), ei);
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(id),      DCMS_VAL_TEXT(f->prov),
                                 DCMS_VAL_TEXT(f->cons), DCMS_VAL_TEXT(status),
                                 DCMS_VAL_TEXT(terms),   DCMS_VAL_TEXT(when)};
    CHECK(dcms_store_exec(tx, &q, p, 6, NULL, NULL, &ei), ei);
    CHECK(dcms_store_commit(tx, &ei), ei);
}

/* What the purge function saw: refs in order and whether the key was already gone. */
struct seen {
    struct fixture *f;
    char refs[8][64];
    bool shredded[8];
    size_t n;
    bool fail;
};

static enum dcms_err record_purge(void *ctx, struct dcms_store_tx *tx, const char *ref,
                                  bool crypto_shred, struct dcms_errinfo *ei)
{
    (void)tx;
    struct seen *s = ctx;
    if (s->fail)
        return dcms_err_set(ei, DCMS_ERR_UNAVAILABLE, "object store down");
    assert_true(s->n < 8);
    snprintf(s->refs[s->n], sizeof(s->refs[0]), "%s", ref);
    s->shredded[s->n++] = crypto_shred;
    return DCMS_OK;
}

/* Registers one object of kind "test" under `cid`, sealed under a new data key. */
static void derived(struct fixture *f, const char *cid, const char *ref, char dek_id[64])
{
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_store_tx *tx;
    struct dcms_dek *dek = NULL;
    CHECK(dcms_store_begin(f->app.store, DCMS_TX_WRITE, &tx, &ei), ei);
    CHECK(dcms_keys_dek_create(f->app.keys, tx, "model", cid, &dek, &ei), ei);
    snprintf(dek_id, 64, "%s", dcms_dek_id(dek));
    struct dcms_derived d = {cid, NULL, "test", ref, dek_id, "system"};
    CHECK(dcms_datasets_derived_add(tx, &d, NULL, &ei), ei);
    CHECK(dcms_store_commit(tx, &ei), ei);
    dcms_dek_free(dek);
}

static bool key_alive(struct fixture *f, const char *dek_id)
{
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_store_tx *tx;
    struct dcms_dek *dek = NULL;
    CHECK(dcms_store_begin(f->app.store, DCMS_TX_READ, &tx, &ei), ei);
    enum dcms_err e = dcms_keys_dek_open(f->app.keys, tx, dek_id, "model", &dek, &ei);
    dcms_store_rollback(tx);
    dcms_dek_free(dek);
    return e == DCMS_OK;
}

static int64_t purge_events(struct fixture *f, const char *cid)
{
    static struct dcms_query q =
        DCMS_QUERY("test_rt_events", /* committed events, sequenced or still pending */
                   "SELECT count(*) FROM (SELECT action, resource_id FROM audit_events UNION ALL "
                   "SELECT action, resource_id FROM audit_pending) AS e WHERE action = "
                   "'dataset.derived_purged' AND resource_id = $1");
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    CHECK(dcms_store_begin(f->app.store, DCMS_TX_READ, &tx, &ei), ei);
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(cid)};
    CHECK(dcms_store_exec(tx, &q, p, 1, &rows, NULL, &ei), ei);
    int64_t n = dcms_store_rows_int(rows, 0, 0);
    dcms_store_rows_free(rows);
    dcms_store_rollback(tx);
    return n;
}

static void purges_after_retention(struct fixture *f)
{
    open_all(f);
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct seen s = {.f = f};
    CHECK(dcms_datasets_on_purge(f->app.datasets, "test", record_purge, &s, &ei), ei);

    const int64_t day = 86400;
    char due[DCMS_UUID_STRLEN], young[DCMS_UUID_STRLEN], active[DCMS_UUID_STRLEN],
        none[DCMS_UUID_STRLEN], del[DCMS_UUID_STRLEN];
    contract(f, "terminated", 2 * day, "{\"days\":1,\"deletion\":\"crypto_shred\"}", due);
    contract(f, "expired", day / 2, "{\"days\":1,\"deletion\":\"crypto_shred\"}", young);
    contract(f, "active", 30 * day, "{\"days\":1,\"deletion\":\"delete\"}", active);
    contract(f, "terminated", 1, NULL, none);
    contract(f, "expired", 8 * day, "{\"days\":7,\"deletion\":\"delete\"}", del);
    char k_due[64], k_young[64], k_active[64], k_none[64], k_del[64];
    derived(f, due, "model-due", k_due);
    derived(f, young, "model-young", k_young);
    derived(f, active, "model-active", k_active);
    derived(f, none, "model-none", k_none);
    derived(f, del, "model-del", k_del);

    unsigned n = 0;
    CHECK(dcms_datasets_retention_run(f->app.datasets, &n, &ei), ei);
    assert_int_equal(n, 3);
    assert_int_equal(s.n, 3);
    /* due and none: crypto_shred (the default without a term); del: delete */
    for (size_t i = 0; i < s.n; i++) {
        bool is_del = strcmp(s.refs[i], "model-del") == 0;
        assert_true(is_del || strcmp(s.refs[i], "model-due") == 0 ||
                    strcmp(s.refs[i], "model-none") == 0);
        assert_int_equal(s.shredded[i], !is_del);
    }
    assert_false(key_alive(f, k_due));
    assert_false(key_alive(f, k_none));
    assert_false(key_alive(f, k_del));
    assert_true(key_alive(f, k_young));
    assert_true(key_alive(f, k_active));
    assert_int_equal(purge_events(f, due), 1);
    assert_int_equal(purge_events(f, del), 1);
    assert_int_equal(purge_events(f, young), 0);
    assert_int_equal(purge_events(f, active), 0);

    /* A second pass finds nothing left to do. */
    CHECK(dcms_datasets_retention_run(f->app.datasets, &n, &ei), ei);
    assert_int_equal(n, 0);
    assert_int_equal(s.n, 3);
    assert_int_equal(purge_events(f, due), 1);

    /* A failing module keeps its object (and its key with `delete`) for the next pass. */
    char later[DCMS_UUID_STRLEN], k_later[64];
    contract(f, "terminated", 3 * day, "{\"days\":2,\"deletion\":\"delete\"}", later);
    derived(f, later, "model-later", k_later);
    s.fail = true;
    CHECK(dcms_datasets_retention_run(f->app.datasets, &n, &ei), ei);
    assert_int_equal(n, 0);
    assert_true(key_alive(f, k_later));
    assert_int_equal(purge_events(f, later), 0);
    s.fail = false;
    CHECK(dcms_datasets_retention_run(f->app.datasets, &n, &ei), ei);
    assert_int_equal(n, 1);
    assert_false(key_alive(f, k_later));
    assert_int_equal(purge_events(f, later), 1);

    /* The purge events belong to a log that still verifies. */
    struct dcms_audit_report rep;
    CHECK(dcms_audit_verify(f->app.audit, &rep, &ei), ei);
    assert_true(rep.ok);
}
DCMS_TESTDB_CASE(purges_after_retention)

static const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(purges_after_retention_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(purges_after_retention_pg, setup_pg, teardown),
};

DCMS_TEST_MAIN(tests)
