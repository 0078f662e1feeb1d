/*
 * The budget's queries: privacy_budgets (one row per contract, the row a
 * reservation locks) and privacy_runs (one per DP run), migration 0018.
 * Reals are bound and read as text with 17 significant digits.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dcms/store.h"
#include "privacy/privacy_int.h"

static struct dcms_query q_budget_create = DCMS_QUERY(
    "pv_budget_create",
    "INSERT INTO privacy_budgets (contract_id, epsilon, delta, max_epsilon_per_run, created_at, "
    "updated_at) VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (contract_id) DO NOTHING");
/* SQLite has no row locks: BEGIN IMMEDIATE already holds the database's write lock. */
static struct dcms_query q_budget_lock =
    DCMS_QUERY2("pv_budget_lock", "SELECT contract_id FROM privacy_budgets WHERE contract_id = $1",
                "SELECT contract_id FROM privacy_budgets WHERE contract_id = $1 FOR UPDATE");
static struct dcms_query q_budget_set =
    DCMS_QUERY("pv_budget_set", "UPDATE privacy_budgets SET epsilon = $2, delta = $3, "
                                "max_epsilon_per_run = $4, updated_at = $5 WHERE contract_id = $1");
/* Runs of one (q, sigma) compose as one run of their summed steps. */
static struct dcms_query q_curve_live =
    DCMS_QUERY("pv_curve_live", "SELECT q, sigma, SUM(steps) FROM privacy_runs WHERE contract_id "
                                "= $1 AND state IN ('reserved', 'charged') GROUP BY q, sigma");
static struct dcms_query q_curve_state =
    DCMS_QUERY("pv_curve_state", "SELECT q, sigma, SUM(steps) FROM privacy_runs WHERE contract_id "
                                 "= $1 AND state = $2 GROUP BY q, sigma");
static struct dcms_query q_run_insert = DCMS_QUERY(
    "pv_run_insert",
    "INSERT INTO privacy_runs (run_id, contract_id, state, q, sigma, steps, delta, epsilon, "
    "epsilon_after, reserved_at) VALUES ($1, $2, 'reserved', $3, $4, $5, $6, $7, $8, $9)");
static struct dcms_query q_run_charge =
    DCMS_QUERY("pv_run_charge", "UPDATE privacy_runs SET state = 'charged', charged_at = $2 "
                                "WHERE run_id = $1 AND state = 'reserved'");
static struct dcms_query q_run_release =
    DCMS_QUERY("pv_run_release", "UPDATE privacy_runs SET state = 'released', released_at = $2 "
                                 "WHERE run_id = $1 AND state = 'reserved'");
static struct dcms_query q_run_state =
    DCMS_QUERY("pv_run_state", "SELECT state, contract_id FROM privacy_runs WHERE run_id = $1");
static struct dcms_query q_runs_list = DCMS_QUERY(
    "pv_runs_list",
    "SELECT run_id, state, q, sigma, steps, delta, epsilon, reserved_at, charged_at, released_at "
    "FROM privacy_runs WHERE contract_id = $1 ORDER BY reserved_at, run_id LIMIT $2");

void pv_real_format(double d, char out[PV_REAL_STRLEN])
{
    snprintf(out, PV_REAL_STRLEN, "%.17g", d);
}

bool pv_real_parse(const char *s, double *out)
{
    if (!s || !*s)
        return false;
    char *end;
    errno = 0;
    double d = strtod(s, &end);
    if (*end || errno || !isfinite(d))
        return false;
    *out = d;
    return true;
}

enum dcms_err pv_budget_lock(struct dcms_store_tx *tx, const char *contract_id, double epsilon,
                             double delta, double max_per_run, const char *now,
                             struct dcms_errinfo *ei)
{
    char e[PV_REAL_STRLEN], d[PV_REAL_STRLEN], m[PV_REAL_STRLEN];
    pv_real_format(epsilon, e);
    pv_real_format(delta, d);
    pv_real_format(max_per_run, m);
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(contract_id), DCMS_VAL_TEXT(e), DCMS_VAL_TEXT(d),
                                 max_per_run > 0 ? DCMS_VAL_TEXT(m) : DCMS_VAL_NULL,
                                 DCMS_VAL_TEXT(now)};
    struct dcms_store_rows *rows = NULL;
    enum dcms_err err;
    if ((err = dcms_store_exec(tx, &q_budget_create, p, 5, NULL, NULL, ei)) ||
        (err = dcms_store_exec(tx, &q_budget_lock, p, 1, &rows, NULL, ei)))
        goto out;
    if (dcms_store_rows_count(rows) != 1) {
        err = dcms_err_set(ei, DCMS_ERR_INTERNAL, "the privacy budget row is missing");
        goto out;
    }
    err = dcms_store_exec(tx, &q_budget_set, p, 5, NULL, NULL, ei);
out:
    dcms_store_rows_free(rows);
    return err;
}

enum dcms_err pv_curve_of(struct dcms_store_tx *tx, const char *contract_id, const char *state,
                          struct dcms_privacy_curve *c, struct dcms_errinfo *ei)
{
    struct dcms_store_rows *rows = NULL;
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(contract_id),
                                 state ? DCMS_VAL_TEXT(state) : DCMS_VAL_NULL};
    enum dcms_err e = dcms_store_exec(tx, state ? &q_curve_state : &q_curve_live, p, state ? 2 : 1,
                                      &rows, NULL, ei);
    if (e)
        return e;
    for (size_t i = 0; i < dcms_store_rows_count(rows); i++) {
        double q, sigma;
        int64_t steps = dcms_store_rows_int(rows, i, 2);
        if (!pv_real_parse(dcms_store_rows_text(rows, i, 0), &q) ||
            !pv_real_parse(dcms_store_rows_text(rows, i, 1), &sigma) || steps <= 0) {
            e = dcms_err_set(ei, DCMS_ERR_INTERNAL, "a stored privacy run is unreadable");
            break;
        }
        dcms_privacy_curve_add(c, q, sigma, (uint64_t)steps);
    }
    dcms_store_rows_free(rows);
    return e;
}

enum dcms_err pv_run_insert(struct dcms_store_tx *tx, const struct pv_run *r,
                            struct dcms_errinfo *ei)
{
    char q[PV_REAL_STRLEN], s[PV_REAL_STRLEN], d[PV_REAL_STRLEN], e[PV_REAL_STRLEN],
        a[PV_REAL_STRLEN];
    pv_real_format(r->q, q);
    pv_real_format(r->sigma, s);
    pv_real_format(r->delta, d);
    pv_real_format(r->epsilon, e);
    pv_real_format(r->epsilon_after, a);
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(r->run_id),
                                 DCMS_VAL_TEXT(r->contract_id),
                                 DCMS_VAL_TEXT(q),
                                 DCMS_VAL_TEXT(s),
                                 DCMS_VAL_INT((int64_t)r->steps),
                                 DCMS_VAL_TEXT(d),
                                 DCMS_VAL_TEXT(e),
                                 DCMS_VAL_TEXT(a),
                                 DCMS_VAL_TEXT(r->now)};
    return dcms_store_exec(tx, &q_run_insert, p, 9, NULL, NULL, ei);
}

enum dcms_err pv_run_move(struct dcms_store_tx *tx, const char *run_id, const char *to,
                          const char *now, bool *moved, char state[PV_STATE_MAX], char contract[64],
                          struct dcms_errinfo *ei)
{
    *moved = false;
    state[0] = '\0';
    contract[0] = '\0';
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(run_id), DCMS_VAL_TEXT(now)};
    uint64_t n = 0;
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_exec(
        tx, strcmp(to, "charged") == 0 ? &q_run_charge : &q_run_release, p, 2, NULL, &n, ei);
    /* Read after the update: on PostgreSQL it waited for any concurrent mover. */
    if (e || (e = dcms_store_exec(tx, &q_run_state, p, 1, &rows, NULL, ei)))
        goto out;
    if (dcms_store_rows_count(rows) != 1) {
        e = DCMS_ERR_NOT_FOUND;
        goto out;
    }
    *moved = n == 1;
    snprintf(state, PV_STATE_MAX, "%s", dcms_store_rows_text(rows, 0, 0));
    snprintf(contract, 64, "%s", dcms_store_rows_text(rows, 0, 1));
out:
    dcms_store_rows_free(rows);
    return e;
}

enum dcms_err pv_runs_list(struct dcms_store_tx *tx, const char *contract_id, int64_t limit,
                           struct dcms_store_rows **rows, struct dcms_errinfo *ei)
{
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(contract_id), DCMS_VAL_INT(limit)};
    return dcms_store_exec(tx, &q_runs_list, p, 2, rows, NULL, ei);
}
