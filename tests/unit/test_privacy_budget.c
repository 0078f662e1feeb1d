/*
 * The per-contract privacy budget (src/privacy/privacy_budget.c) on both
 * backends: runs reserve until the budget is exhausted and the next is
 * refused naming the remainder; the per-run cap; two concurrent
 * reservations that together exceed the budget (exactly one succeeds); a
 * run that fails before key release returns its reservation and one that
 * fails after keeps its charge; every change is audited in the caller's
 * transaction and rolls back with it.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testutil.h"

#include "testdb.h"
#include "dcms/arena.h"
#include "dcms/audit.h"
#include "dcms/privacy.h"
#include "dcms/store.h"
#include "dcms/uuid.h"

/* |a - b| <= tol (this cmocka has no assert_double_equal). */
#define near(a, b, tol)                                                                            \
    do {                                                                                           \
        double a_ = (a), b_ = (b);                                                                 \
        if (!(a_ - b_ <= (tol) && b_ - a_ <= (tol)))                                               \
            fail_msg("%s = %.17g, expected %.17g", #a, a_, b_);                                    \
    } while (0)

struct fixture {
    struct dcms_testdb db; /* first: see testdb.h */
    struct dcms_store *store;
    struct dcms_audit *audit;
    char contract[DCMS_UUID_STRLEN];
};

DCMS_TESTDB_SETUPS("/tmp/dcms-pvbudget-XXXXXX", "dcms_pv_")

static int teardown(void **state)
{
    struct fixture *f = *state;
    dcms_audit_close(f->audit);
    dcms_store_close(f->store);
    dcms_testdb_cleanup(&f->db);
    free(f);
    return 0;
}

static void open_all(struct fixture *f)
{
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_store_opts so = {4, 30000};
    CHECK(dcms_store_open(f->db.url, &so, &f->store, &ei), ei);
    char key_path[128];
    snprintf(key_path, sizeof(key_path), "%s/audit.key", f->db.dir);
    struct dcms_audit_opts ao = {key_path, 1000, 0, 0, NULL, 0};
    CHECK(dcms_audit_open(f->store, &ao, &f->audit, &ei), ei);
    dcms_uuid_v7(f->contract);
}

/* Every run of these tests: 100 steps at q = 0.1, σ = 1 (ε ≈ 1.3 at δ = 1e-5). */
#define Q 0.1
#define SIGMA 1.0
#define STEPS 100
#define DELTA 1e-5

/* ε of `k` such runs composed (curves added, converted once). */
static double eps_of_runs(unsigned k)
{
    struct dcms_privacy_curve c;
    memset(&c, 0, sizeof(c));
    double eps;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    if (k > 1)
        dcms_privacy_curve_add(&c, Q, SIGMA, (uint64_t)STEPS * (k - 1));
    CHECK(dcms_privacy_epsilon_after(&c, Q, SIGMA, STEPS, DELTA, &eps, NULL, &ei), ei);
    return eps;
}

static const struct dcms_audit_who who = {"00000000-0000-7000-8000-000000000001", "127.0.0.1",
                                          "test"};

/* Reserves `run` in a transaction of its own; the result, with the problem in *ei. */
static enum dcms_err reserve(struct fixture *f, const char *run, double total, double cap,
                             double *eps_run, double *remaining, struct dcms_errinfo *ei)
{
    struct dcms_store_tx *tx;
    CHECK(dcms_store_begin(f->store, DCMS_TX_WRITE, &tx, ei), *ei);
    enum dcms_err e =
        dcms_privacy_budget_reserve(tx, f->audit, &who, f->contract, run, total, DELTA, cap, Q,
                                    SIGMA, STEPS, eps_run, remaining, ei);
    if (e) {
        dcms_store_rollback(tx);
        return e;
    }
    return dcms_store_commit(tx, ei);
}

static void charge(struct fixture *f, const char *run)
{
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_store_tx *tx;
    CHECK(dcms_store_begin(f->store, DCMS_TX_WRITE, &tx, &ei), ei);
    CHECK(dcms_privacy_budget_charge(tx, f->audit, &who, run, &ei), ei);
    CHECK(dcms_store_commit(tx, &ei), ei);
}

static bool release(struct fixture *f, const char *run)
{
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_store_tx *tx;
    bool returned = true;
    CHECK(dcms_store_begin(f->store, DCMS_TX_WRITE, &tx, &ei), ei);
    CHECK(dcms_privacy_budget_release(tx, f->audit, &who, run, &returned, &ei), ei);
    CHECK(dcms_store_commit(tx, &ei), ei);
    return returned;
}

static int64_t events(struct fixture *f, const char *action)
{
    static struct dcms_query q =
        DCMS_QUERY("test_pv_events", /* committed events, sequenced or still pending */
                   "SELECT count(*) FROM (SELECT action, resource_type, resource_id FROM "
                   "audit_events UNION ALL SELECT action, resource_type, resource_id FROM "
                   "audit_pending) AS e WHERE action = $1 AND "
                   "resource_type = 'contract' AND resource_id = $2");
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_store_tx *tx;
    int64_t n = -1;
    CHECK(dcms_store_begin(f->store, DCMS_TX_READ, &tx, &ei), ei);
    CHECK(dcms_store_exec_int(
              tx, &q, (struct dcms_store_val[]){DCMS_VAL_TEXT(action), DCMS_VAL_TEXT(f->contract)},
              2, &n, &ei),
          ei);
    dcms_store_rollback(tx);
    return n;
}

/* The "dp" problem of a refusal (the message names the remainder). */
static const char *dp_problem(const struct dcms_errinfo *ei)
{
    for (size_t i = 0; i < ei->ndetails; i++)
        if (strcmp(ei->details[i].field, "dp") == 0)
            return ei->details[i].problem;
    return NULL;
}

/* Two runs fit, the third is refused naming what remains; released runs give it back. */
static void exhaustion_names_remainder(struct fixture *f)
{
    open_all(f);
    struct dcms_arena *arena = dcms_arena_new(1 << 16);
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, arena);
    double e1 = eps_of_runs(1), e2 = eps_of_runs(2), e3 = eps_of_runs(3);
    /* Composition is tighter than addition: two runs cost less than twice one. */
    assert_true(e2 < 2 * e1 && e2 > e1 && e3 > e2);
    double total = (e2 + e3) / 2, run_eps, rem;
    CHECK(reserve(f, "run-1", total, 0, &run_eps, &rem, &ei), ei);
    near(run_eps, e1, 1e-9);
    near(rem, total - e1, 1e-9);
    charge(f, "run-1");
    CHECK(reserve(f, "run-2", total, 0, &run_eps, &rem, &ei), ei);
    near(run_eps, e1, 1e-9);
    near(rem, total - e2, 1e-9);

    assert_int_equal(reserve(f, "run-3", total, 0, NULL, NULL, &ei), DCMS_ERR_VALIDATION);
    const char *problem = dp_problem(&ei);
    assert_non_null(problem);
    char want[64];
    snprintf(want, sizeof(want), "epsilon %.6g remaining", total - e2);
    if (!strstr(problem, want))
        fail_msg("the refusal does not name the remainder (%s): %s", want, problem);
    assert_int_equal(events(f, "privacy.reserve"), 2);

    /* The same run id twice is a conflict, not a second reservation. */
    dcms_errinfo_init(&ei, arena);
    assert_int_equal(reserve(f, "run-1", 100, 0, NULL, NULL, &ei), DCMS_ERR_CONFLICT);

    /* run-2 fails before its key release: its reservation comes back and run-3 fits. */
    assert_true(release(f, "run-2"));
    assert_false(release(f, "run-2")); /* again: nothing more comes back, no error */
    assert_int_equal(events(f, "privacy.release"), 1);
    dcms_errinfo_init(&ei, arena);
    CHECK(reserve(f, "run-3", total, 0, &run_eps, &rem, &ei), ei);
    near(rem, total - e2, 1e-9);

    /* run-1 was charged at key release: failing later keeps its charge. */
    assert_false(release(f, "run-1"));
    assert_int_equal(events(f, "privacy.release"), 1);
    dcms_errinfo_init(&ei, arena);
    assert_int_equal(reserve(f, "run-4", total, 0, NULL, NULL, &ei), DCMS_ERR_VALIDATION);

    /* A released reservation cannot be charged; an unknown run is not found. */
    struct dcms_store_tx *tx;
    dcms_errinfo_init(&ei, arena);
    CHECK(dcms_store_begin(f->store, DCMS_TX_WRITE, &tx, &ei), ei);
    assert_int_equal(dcms_privacy_budget_charge(tx, f->audit, &who, "run-2", &ei),
                     DCMS_ERR_CONFLICT);
    assert_int_equal(dcms_privacy_budget_charge(tx, f->audit, &who, "nope", &ei),
                     DCMS_ERR_NOT_FOUND);
    dcms_store_rollback(tx);

    /* What the budget reads back: run-1 and run-3 live, their curves summed. */
    struct dcms_privacy_curve spent;
    double eps;
    CHECK(dcms_store_begin(f->store, DCMS_TX_READ, &tx, &ei), ei);
    CHECK(dcms_privacy_budget_spent(tx, f->contract, &spent, &ei), ei);
    dcms_store_rollback(tx);
    CHECK(dcms_privacy_curve_epsilon(&spent, DELTA, &eps, NULL, &ei), ei);
    near(eps, e2, 1e-9);

    /* σ for what remains: the smallest that keeps the total within the budget. */
    double sigma;
    CHECK(dcms_privacy_sigma_for(&spent, Q, STEPS, DELTA, total, &sigma, &ei), ei);
    assert_true(sigma > SIGMA);
    CHECK(dcms_privacy_epsilon_after(&spent, Q, sigma, STEPS, DELTA, &eps, NULL, &ei), ei);
    assert_true(eps <= total);
    dcms_arena_free(arena);
}
DCMS_TESTDB_CASE(exhaustion_names_remainder)

/* A run above max_epsilon_per_run is refused even with budget to spare; bad arguments named. */
static void per_run_cap(struct fixture *f)
{
    open_all(f);
    struct dcms_arena *arena = dcms_arena_new(1 << 16);
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, arena);
    double e1 = eps_of_runs(1);
    assert_int_equal(reserve(f, "big", 50, e1 * 0.9, NULL, NULL, &ei), DCMS_ERR_VALIDATION);
    const char *problem = dp_problem(&ei);
    assert_non_null(problem);
    assert_non_null(strstr(problem, "max_epsilon_per_run"));
    assert_non_null(strstr(problem, "epsilon 50 of 50 remaining"));
    dcms_errinfo_init(&ei, arena);
    CHECK(reserve(f, "fits", 50, e1 * 1.1, NULL, NULL, &ei), ei);
    assert_int_equal(events(f, "privacy.reserve"), 1);

    struct dcms_store_tx *tx;
    dcms_errinfo_init(&ei, arena);
    CHECK(dcms_store_begin(f->store, DCMS_TX_WRITE, &tx, &ei), ei);
    assert_int_equal(dcms_privacy_budget_reserve(tx, f->audit, &who, f->contract, "x", 0, 0, 0, 1.5,
                                                 -1, 0, NULL, NULL, &ei),
                     DCMS_ERR_VALIDATION);
    assert_int_equal(ei.ndetails, 5); /* epsilon, delta, q, sigma, steps: all at once */
    dcms_store_rollback(tx);
    dcms_arena_free(arena);
}
DCMS_TESTDB_CASE(per_run_cap)

/* A reservation rolled back with the caller's job leaves neither the run nor its event. */
static void rolls_back_with_caller(struct fixture *f)
{
    open_all(f);
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_store_tx *tx;
    CHECK(dcms_store_begin(f->store, DCMS_TX_WRITE, &tx, &ei), ei);
    CHECK(dcms_privacy_budget_reserve(tx, f->audit, &who, f->contract, "r", 10, DELTA, 0, Q, SIGMA,
                                      STEPS, NULL, NULL, &ei),
          ei);
    dcms_store_rollback(tx);
    assert_int_equal(events(f, "privacy.reserve"), 0);
    CHECK(dcms_store_begin(f->store, DCMS_TX_WRITE, &tx, &ei), ei);
    bool returned;
    assert_int_equal(dcms_privacy_budget_release(tx, f->audit, &who, "r", &returned, &ei),
                     DCMS_ERR_NOT_FOUND);
    dcms_store_rollback(tx);
}
DCMS_TESTDB_CASE(rolls_back_with_caller)

/* ---- two concurrent reservations ---- */

struct racer {
    struct fixture *f;
    pthread_barrier_t *start;
    const char *run;
    double total;
    enum dcms_err result;
};

static void *race(void *arg)
{
    struct racer *r = arg;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    pthread_barrier_wait(r->start);
    struct dcms_store_tx *tx;
    r->result = dcms_store_begin(r->f->store, DCMS_TX_WRITE, &tx, &ei);
    if (r->result)
        return NULL;
    r->result = dcms_privacy_budget_reserve(tx, r->f->audit, &who, r->f->contract, r->run, r->total,
                                            DELTA, 0, Q, SIGMA, STEPS, NULL, NULL, &ei);
    if (r->result) {
        dcms_store_rollback(tx);
        return NULL;
    }
    /* Hold the reservation uncommitted a while, so the other one runs against it. */
    nanosleep(&(struct timespec){0, 200 * 1000 * 1000}, NULL);
    r->result = dcms_store_commit(tx, &ei);
    return NULL;
}

static void concurrent_exactly_one(struct fixture *f)
{
    open_all(f);
    double total = (eps_of_runs(1) + eps_of_runs(2)) / 2;
    for (int round = 0; round < 3; round++) {
        dcms_uuid_v7(f->contract);
        /* The budget row exists already (a run reserved and returned): only the lock guards. */
        char warm[32];
        snprintf(warm, sizeof(warm), "warm-%d", round);
        struct dcms_errinfo ei;
        dcms_errinfo_init(&ei, NULL);
        CHECK(reserve(f, warm, total, 0, NULL, NULL, &ei), ei);
        assert_true(release(f, warm));
        pthread_barrier_t start;
        pthread_barrier_init(&start, NULL, 2);
        char a[32], b[32];
        snprintf(a, sizeof(a), "a-%d", round);
        snprintf(b, sizeof(b), "b-%d", round);
        struct racer ra = {f, &start, a, total, DCMS_ERR_INTERNAL};
        struct racer rb = {f, &start, b, total, DCMS_ERR_INTERNAL};
        pthread_t ta, tb;
        assert_int_equal(pthread_create(&ta, NULL, race, &ra), 0);
        assert_int_equal(pthread_create(&tb, NULL, race, &rb), 0);
        pthread_join(ta, NULL);
        pthread_join(tb, NULL);
        pthread_barrier_destroy(&start);
        int ok = (ra.result == DCMS_OK) + (rb.result == DCMS_OK);
        if (ok != 1)
            fail_msg("round %d: %d reservations succeeded (results %d, %d)", round, ok, ra.result,
                     rb.result);
        enum dcms_err loser = ra.result == DCMS_OK ? rb.result : ra.result;
        assert_int_equal(loser, DCMS_ERR_VALIDATION);
        assert_int_equal(events(f, "privacy.reserve"), 2); /* the warm one and the winner */
    }
}
DCMS_TESTDB_CASE(concurrent_exactly_one)

static const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(exhaustion_names_remainder_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(exhaustion_names_remainder_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(per_run_cap_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(per_run_cap_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(rolls_back_with_caller_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(rolls_back_with_caller_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(concurrent_exactly_one_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(concurrent_exactly_one_pg, setup_pg, teardown),
};

DCMS_TEST_MAIN(tests)
