/*
 * Leases and node identity (src/nodes/, dcms/lease.h) on both backends: a
 * lease is held by one holder until it expires, renewals keep it, a
 * takeover after expiry counts a new epoch, release lets another take it;
 * two threads racing on separate connections for an expired lease never
 * both win; the node id is created once (mode 0600) and read back.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "testutil.h"

#include "testdb.h"
#include "dcms/lease.h"
#include "dcms/store.h"
#include "nodes/nodes_int.h"

struct fixture {
    struct dcms_testdb db; /* first: see testdb.h */
    struct dcms_store *store;
};

DCMS_TESTDB_SETUPS("/tmp/dcms-nodes-XXXXXX", "dcms_nd_")

static int teardown(void **state)
{
    struct fixture *f = *state;
    dcms_store_close(f->store);
    dcms_testdb_cleanup(&f->db);
    free(f);
    return 0;
}

static void open_store(struct fixture *f)
{
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_store_opts so = {4, 30000};
    CHECK(dcms_store_open(f->db.url, &so, &f->store, &ei), ei);
}

/* One acquire in its own write transaction; returns whether `who` holds the lease. */
static bool take(struct dcms_store *s, const char *who, int64_t now_us, struct dcms_lease *before)
{
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_store_tx *tx;
    CHECK(dcms_store_begin(s, DCMS_TX_WRITE, &tx, &ei), ei);
    bool held = false;
    enum dcms_err e = dcms_lease_acquire(tx, "jobs", who, now_us, 1000, &held, before, &ei);
    if (e) {
        dcms_store_rollback(tx);
        /* A serialization failure or a busy database: that attempt did not get it. */
        assert_true(e == DCMS_ERR_RETRY || e == DCMS_ERR_UNAVAILABLE || e == DCMS_ERR_CONFLICT);
        return false;
    }
    CHECK(dcms_store_commit(tx, &ei), ei);
    return held;
}

static void lease_lifecycle(struct fixture *f)
{
    open_store(f);
    struct dcms_lease b;
    int64_t t0 = 1000000000;
    assert_true(take(f->store, "node-a", t0, &b));
    assert_string_equal(b.holder, ""); /* it did not exist */
    assert_false(take(f->store, "node-b", t0 + 500000, &b));
    assert_string_equal(b.holder, "node-a");
    assert_true(take(f->store, "node-a", t0 + 900000, &b)); /* renewal: until t0 + 1.9 s */
    assert_false(take(f->store, "node-b", t0 + 1500000, &b));
    assert_true(take(f->store, "node-b", t0 + 2000000, &b)); /* expired: taken over */
    assert_string_equal(b.holder, "node-a");
    assert_int_equal(b.epoch, 1);
    assert_false(take(f->store, "node-a", t0 + 2100000, &b));
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_store_tx *tx;
    CHECK(dcms_store_begin(f->store, DCMS_TX_WRITE, &tx, &ei), ei);
    CHECK(dcms_lease_release(tx, "jobs", "node-a", &ei), ei); /* not the holder: no effect */
    CHECK(dcms_store_commit(tx, &ei), ei);
    assert_false(take(f->store, "node-a", t0 + 2200000, &b));
    CHECK(dcms_store_begin(f->store, DCMS_TX_WRITE, &tx, &ei), ei);
    CHECK(dcms_lease_release(tx, "jobs", "node-b", &ei), ei);
    CHECK(dcms_store_commit(tx, &ei), ei);
    assert_true(take(f->store, "node-a", t0 + 2300000, &b));
    assert_string_equal(b.holder, "node-b");
    assert_int_equal(b.epoch, 2);
    bool found = false;
    CHECK(dcms_store_begin(f->store, DCMS_TX_READ, &tx, &ei), ei);
    CHECK(dcms_lease_get(tx, "jobs", &b, &found, &ei), ei);
    dcms_store_rollback(tx);
    assert_true(found);
    assert_string_equal(b.holder, "node-a");
    assert_int_equal(b.epoch, 3);
    assert_int_equal(b.expires_us, t0 + 2300000 + 1000000);
}
DCMS_TESTDB_CASE(lease_lifecycle)

struct racer {
    struct dcms_store *store;
    const char *who;
    int64_t now_us;
    pthread_barrier_t *start;
    bool won;
};

static void *race(void *arg)
{
    struct racer *r = arg;
    pthread_barrier_wait(r->start);
    r->won = take(r->store, r->who, r->now_us, NULL);
    return NULL;
}

/* Each round the lease has just expired and two nodes (two connections) want it. */
static void lease_race_one_winner(struct fixture *f)
{
    open_store(f);
    int64_t now = 1000000000;
    unsigned wins_a = 0, wins_b = 0;
    for (int round = 0; round < 40; round++) {
        now += 5000000; /* past the previous holder's expiry */
        pthread_barrier_t start;
        pthread_barrier_init(&start, NULL, 2);
        struct racer ra = {f->store, "node-a", now, &start, false};
        struct racer rb = {f->store, "node-b", now, &start, false};
        pthread_t ta, tb;
        assert_int_equal(pthread_create(&ta, NULL, race, &ra), 0);
        assert_int_equal(pthread_create(&tb, NULL, race, &rb), 0);
        pthread_join(ta, NULL);
        pthread_join(tb, NULL);
        pthread_barrier_destroy(&start);
        if (ra.won && rb.won)
            fail_msg("round %d: both nodes hold the lease", round);
        wins_a += ra.won;
        wins_b += rb.won;
    }
    /* A busy store may refuse both now and then; most rounds have a winner. */
    assert_true(wins_a + wins_b >= 20);
}
DCMS_TESTDB_CASE(lease_race_one_winner)

static void node_identity_kept(void **state)
{
    (void)state;
    assert_int_equal(dcms_crypto_init(), 0);
    char dir[] = "/tmp/dcms-nodeid-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char id1[DCMS_NODE_ID_MAX], id2[DCMS_NODE_ID_MAX], path[64];
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    CHECK(nodes_identity(dir, id1, &ei), ei);
    assert_int_equal(strlen(id1), 32);
    assert_true(nodes_id_ok(id1));
    snprintf(path, sizeof(path), "%s/node-id", dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    CHECK(nodes_identity(dir, id2, &ei), ei);
    assert_string_equal(id1, id2);
    /* A file others can read is refused, not silently used. */
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(nodes_identity(dir, id2, &ei), DCMS_ERR_CONFIG);
    unlink(path);
    rmdir(dir);
    assert_true(nodes_id_ok("node-1"));
    assert_false(nodes_id_ok(""));
    assert_false(nodes_id_ok("node 1"));
    assert_false(nodes_id_ok("node/1"));
    assert_false(nodes_id_ok("0123456789012345678901234567890123456789012345678901234567890123"));
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(lease_lifecycle_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(lease_lifecycle_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(lease_race_one_winner_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(lease_race_one_winner_pg, setup_pg, teardown),
    cmocka_unit_test(node_identity_kept),
};

DCMS_TEST_MAIN(tests)
