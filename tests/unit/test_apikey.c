/*
 * API keys (src/iam/apikey.c) on both store backends: a created key
 * authenticates to its service identity with the key's scope and an empty
 * amr, dcms_iam_authorize keeps it inside the scope, and a wrong secret,
 * a revocation (also of a cached verification) and a suspension are
 * refused at once. The scope rule itself is checked without a store.
 */
#include "testdb.h"

#include <stdlib.h>

#include "dcms/app.h"
#include "dcms/arena.h"
#include "dcms/audit.h"
#include "dcms/keys.h"
#include "dcms/clock.h"
#include "dcms/config.h"
#include "dcms/crypto.h"
#include "dcms/store.h"
#include "iam/apikey_int.h"
#include "iam/iam_identity.h"
#include "iam/mfa_int.h"

/* ---- without a store ---- */

static void scope_bounds_decisions(void **state)
{
    (void)state;
    static const char *const scope[] = {"identities:read", "contracts:*"};
    struct dcms_principal p = {.roles = DCMS_ROLE_ADMIN, .amr = 0};
    snprintf(p.id, sizeof(p.id), "01a20a4c-8dc2-74d1-aeba-1f2726c8ba96");
    /* An access token of an admin may do anything. */
    assert_int_equal(dcms_iam_authorize(&p, "policies:manage", NULL, NULL, NULL), DCMS_OK);
    /* The same identity through a key may only do what the scope names. */
    snprintf(p.api_key, sizeof(p.api_key), "01a20a4c-8dc2-74d1-aeba-1f2726c8ba97");
    p.scope = scope;
    p.nscope = 2;
    assert_int_equal(dcms_iam_authorize(&p, "identities:read", NULL, NULL, NULL), DCMS_OK);
    assert_int_equal(dcms_iam_authorize(&p, "contracts:sign", NULL, NULL, NULL), DCMS_OK);
    assert_int_equal(dcms_iam_authorize(&p, "policies:manage", NULL, NULL, NULL),
                     DCMS_ERR_FORBIDDEN);
    assert_int_equal(dcms_iam_authorize(&p, "identities:manage", NULL, NULL, NULL),
                     DCMS_ERR_FORBIDDEN);
    /* A key with an empty scope can do nothing. */
    p.nscope = 0;
    assert_int_equal(dcms_iam_authorize(&p, "identities:read", NULL, NULL, NULL),
                     DCMS_ERR_FORBIDDEN);
    /* The scope never widens the roles: a consumer's key cannot manage policies. */
    static const char *const wide[] = {"*:*"};
    p.roles = DCMS_ROLE_CONSUMER;
    p.scope = wide;
    p.nscope = 1;
    assert_int_equal(dcms_iam_authorize(&p, "policies:manage", NULL, NULL, NULL),
                     DCMS_ERR_FORBIDDEN);
    assert_int_equal(dcms_iam_authorize(&p, "contracts:read", NULL, NULL, NULL), DCMS_OK);
}

/* ---- on the store ---- */

struct fixture {
    struct dcms_testdb db; /* first: see testdb.h */
    struct dcms_config cfg;
    struct dcms_app app;
    struct dcms_iam *iam;
    struct dcms_principal admin;
    struct dcms_arena *arena;
};

DCMS_TESTDB_SETUPS("/tmp/dcms-apikey-XXXXXX", "dcms_key_")

static int teardown(void **state)
{
    struct fixture *f = *state;
    dcms_arena_free(f->arena);
    dcms_iam_close(f->iam);
    dcms_keys_close(f->app.keys);
    f->app.keys = NULL;
    dcms_audit_close(f->app.audit);
    dcms_store_close(f->app.store);
    dcms_testdb_cleanup(&f->db);
    free(f);
    return 0;
}

static struct dcms_query q_admin = DCMS_QUERY("t_key_admin", "SELECT id FROM identities LIMIT 1");

static void open_all(struct fixture *f)
{
    setenv("DCMS_DATA_DIR", f->db.dir, 1);
    setenv("DCMS_DATABASE_URL", f->db.url, 1);
    setenv("DCMS_ADMIN_EMAIL", "admin@key.test", 1);
    setenv("DCMS_ADMIN_PASSWORD", "key-admin-passphrase-42", 1);
    setenv("DCMS_PWHASH_MEMLIMIT_KIB", "8192", 1);
    setenv("DCMS_PWHASH_OPSLIMIT", "1", 1);
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    CHECK(dcms_config_load(&f->cfg, NULL, &ei), ei);
    f->app.cfg = &f->cfg;
    struct dcms_store_opts so = {4, 30000};
    CHECK(dcms_store_open(f->cfg.database_url, &so, &f->app.store, &ei), ei);
    struct dcms_audit_opts ao = {f->cfg.audit_key_file, 1000, 3600, 1000, NULL, 0};
    CHECK(dcms_audit_open(f->app.store, &ao, &f->app.audit, &ei), ei);
    /* IAM seals its secrets under a data key from the keyring. */
    snprintf(f->cfg.keys_file, sizeof(f->cfg.keys_file), "%s/keys/keyring", f->db.dir);
    struct dcms_keys_opts ko;
    dcms_keys_opts_from_config(&f->cfg, &ko);
    CHECK(dcms_keys_open(&ko, f->app.store, f->app.audit, &f->app.keys, &ei), ei);
    CHECK(dcms_iam_open(&f->app, &f->iam, &ei), ei);
    f->app.iam = f->iam;
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows;
    CHECK(dcms_store_begin(f->app.store, DCMS_TX_READ, &tx, &ei), ei);
    CHECK(dcms_store_exec(tx, &q_admin, NULL, 0, &rows, NULL, &ei), ei);
    snprintf(f->admin.id, sizeof(f->admin.id), "%s", dcms_store_rows_text(rows, 0, 0));
    f->admin.roles = DCMS_ROLE_ADMIN;
    f->admin.amr = DCMS_AMR_PWD;
    f->admin.auth_time_s = dcms_clock_now_us() / 1000000; /* a fresh login (step-up) */
    dcms_store_rows_free(rows);
    dcms_store_rollback(tx);
    f->arena = dcms_arena_new(0);
    assert_non_null(f->arena);
}

static struct iam_call call(struct fixture *f, const struct dcms_principal *p,
                            struct dcms_errinfo *ei)
{
    dcms_errinfo_init(ei, f->arena);
    return (struct iam_call){f->iam, p, "127.0.0.1", NULL, ei};
}

static void key_lifecycle(struct fixture *f)
{
    open_all(f);
    struct dcms_errinfo ei;
    struct iam_call c = call(f, &f->admin, &ei);
    struct iam_identity_in svc_in = {
        .kind = "service", .name = "exporter", .roles = DCMS_ROLE_AUDITOR, .has_roles = true};
    json_t *svc = NULL;
    CHECK(iam_identity_create(&c, &svc_in, &svc), ei);
    const char *svc_id = json_string_value(json_object_get(svc, "id"));

    char exp[DCMS_TIME_STRLEN];
    dcms_time_format(dcms_clock_now_us() + 3600 * 1000000LL, exp);
    struct iam_apikey_in in = {.name = "k",
                               .identity_id = svc_id,
                               .expires_at = exp,
                               .perms = {"identities:read"},
                               .nperms = 1};
    json_t *k = NULL;
    c = call(f, &f->admin, &ei);
    CHECK(iam_apikey_create(&c, &in, &k), ei);
    const char *key = json_string_value(json_object_get(k, "key"));
    const char *key_id = json_string_value(json_object_get(k, "id"));

    struct dcms_principal p;
    dcms_errinfo_init(&ei, NULL);
    CHECK(dcms_iam_authenticate_api_key(f->iam, key, strlen(key), f->arena, &p, &ei), ei);
    assert_string_equal(p.id, svc_id);
    assert_string_equal(p.api_key, key_id);
    assert_int_equal(p.roles, DCMS_ROLE_AUDITOR);
    assert_int_equal(p.amr, 0);
    assert_int_equal(p.nscope, 1);
    assert_string_equal(p.scope[0], "identities:read");
    assert_int_equal(dcms_iam_authorize(&p, "identities:read", NULL, NULL, NULL), DCMS_OK);
    assert_int_equal(dcms_iam_authorize(&p, "policies:read", NULL, NULL, NULL), DCMS_ERR_FORBIDDEN);
    /* Again: now from the cache, with the same result. */
    struct dcms_principal p2;
    CHECK(dcms_iam_authenticate_api_key(f->iam, key, strlen(key), f->arena, &p2, &ei), ei);
    assert_string_equal(p2.id, svc_id);
    assert_int_equal(p2.nscope, 1);
    assert_string_equal(p2.scope[0], "identities:read");

    /* A wrong secret, a malformed key. */
    char *bad = strdup(key);
    bad[strlen(bad) - 1] = bad[strlen(bad) - 1] == 'A' ? 'B' : 'A';
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(dcms_iam_authenticate_api_key(f->iam, bad, strlen(bad), f->arena, &p, &ei),
                     DCMS_ERR_UNAUTHENTICATED);
    free(bad);
    assert_int_equal(dcms_iam_authenticate_api_key(f->iam, "dcms_x", 6, f->arena, &p, &ei),
                     DCMS_ERR_UNAUTHENTICATED);

    /* Revoked: refused at once although the verification was cached. */
    c = call(f, &f->admin, &ei);
    CHECK(iam_apikey_revoke(&c, key_id), ei);
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(dcms_iam_authenticate_api_key(f->iam, key, strlen(key), f->arena, &p, &ei),
                     DCMS_ERR_UNAUTHENTICATED);
    assert_non_null(strstr(ei.message, "revoked"));

    /* A suspended identity's keys are refused at once too. */
    json_t *k2 = NULL;
    c = call(f, &f->admin, &ei);
    CHECK(iam_apikey_create(&c, &in, &k2), ei);
    const char *key2 = json_string_value(json_object_get(k2, "key"));
    dcms_errinfo_init(&ei, NULL);
    CHECK(dcms_iam_authenticate_api_key(f->iam, key2, strlen(key2), f->arena, &p, &ei), ei);
    json_t *st = NULL;
    c = call(f, &f->admin, &ei);
    CHECK(iam_identity_transition(&c, svc_id, "suspend", "test", &st), ei);
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(dcms_iam_authenticate_api_key(f->iam, key2, strlen(key2), f->arena, &p, &ei),
                     DCMS_ERR_UNAUTHENTICATED);
    json_decref(st);
    json_decref(k2);
    json_decref(k);
    json_decref(svc);
}
DCMS_TESTDB_CASE(key_lifecycle)

static void key_rules(struct fixture *f)
{
    open_all(f);
    struct dcms_errinfo ei;
    struct iam_call c = call(f, &f->admin, &ei);
    struct iam_identity_in svc_in = {
        .kind = "service", .name = "reader", .roles = DCMS_ROLE_CONSUMER, .has_roles = true};
    json_t *svc = NULL;
    CHECK(iam_identity_create(&c, &svc_in, &svc), ei);
    const char *svc_id = json_string_value(json_object_get(svc, "id"));
    char exp[DCMS_TIME_STRLEN];
    dcms_time_format(dcms_clock_now_us() + 3600 * 1000000LL, exp);
    json_t *k = NULL;
    /* Wider than the identity: refused, naming the permission. */
    struct iam_apikey_in in = {.name = "k",
                               .identity_id = svc_id,
                               .expires_at = exp,
                               .perms = {"contracts:read", "policies:manage"},
                               .nperms = 2};
    c = call(f, &f->admin, &ei);
    assert_int_equal(iam_apikey_create(&c, &in, &k), DCMS_ERR_VALIDATION);
    assert_int_equal(ei.ndetails, 1);
    assert_string_equal(ei.details[0].field, "permissions[1]");
    /* For a user (the admin): refused. */
    in.identity_id = f->admin.id;
    in.nperms = 1;
    c = call(f, &f->admin, &ei);
    assert_int_equal(iam_apikey_create(&c, &in, &k), DCMS_ERR_VALIDATION);
    assert_string_equal(ei.details[0].field, "identity_id");
    /* By a non-admin: refused. */
    struct dcms_principal other = {.roles = DCMS_ROLE_PROVIDER,
                                   .auth_time_s = dcms_clock_now_us() / 1000000};
    snprintf(other.id, sizeof(other.id), "%s", svc_id);
    in.identity_id = svc_id;
    c = call(f, &other, &ei);
    in.identity_id = NULL; /* its own key */
    assert_int_equal(iam_apikey_create(&c, &in, &k), DCMS_ERR_FORBIDDEN);
    json_decref(svc);
}
DCMS_TESTDB_CASE(key_rules)

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(scope_bounds_decisions),
    cmocka_unit_test_setup_teardown(key_lifecycle_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(key_lifecycle_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(key_rules_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(key_rules_pg, setup_pg, teardown),
};

DCMS_TEST_MAIN(tests)
