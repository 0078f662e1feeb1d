/*
 * The per-contract privacy budget: a DP run reserves its ε before any data
 * moves, the reservation is charged when the data key is released and
 * returned when the run ends before that. The contract's spending is the
 * sum of the RDP curves of its reserved and charged runs, converted to ε
 * once at the term's δ (tighter than adding each run's ε). Every change
 * runs in the caller's write transaction with its audit event, so a job
 * and its reservation commit together. See src/privacy/README.md.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dcms/app.h"
#include "dcms/audit.h"
#include "dcms/clock.h"
#include "dcms/contracts.h"
#include "dcms/iam.h"
#include "dcms/store.h"
#include "privacy/privacy_int.h"

/* The largest total a contract may declare (terms.privacy.epsilon). */
#define PV_EPSILON_MAX 100.0

static enum dcms_err check_args(const char *contract_id, const char *run_id, double epsilon_total,
                                double delta, double q, double sigma, uint64_t steps,
                                struct dcms_errinfo *ei)
{
    bool bad = false;
    if (!contract_id || !*contract_id || strlen(contract_id) > 63)
        bad = dcms_err_field(ei, "contract_id", "must be 1 to 63 characters");
    if (!run_id || !*run_id || strlen(run_id) > 63)
        bad = dcms_err_field(ei, "run_id", "must be 1 to 63 characters");
    if (!(epsilon_total > 0) || epsilon_total > PV_EPSILON_MAX)
        bad = dcms_err_field(ei, "terms.privacy.epsilon", "must be above 0 and at most 100");
    if (!(delta > 0) || !(delta < 1))
        bad = dcms_err_field(ei, "terms.privacy.delta", "must be above 0 and below 1");
    if (!(q > 0) || q > 1)
        bad = dcms_err_field(ei, "dp.sample_rate", "must be above 0 and at most 1");
    if (!(sigma > 0) || isinf(sigma))
        bad = dcms_err_field(ei, "dp.noise_multiplier", "must be a positive number");
    if (!steps || steps > (uint64_t)INT64_MAX)
        bad = dcms_err_field(ei, "dp.steps", "must be at least 1");
    return bad ? DCMS_ERR_VALIDATION : DCMS_OK;
}

static enum dcms_err audit(struct dcms_audit *a, struct dcms_store_tx *tx,
                           const struct dcms_audit_who *who, const char *action,
                           const char *contract_id, json_t *details, struct dcms_errinfo *ei)
{
    return dcms_audit_change(a, tx, who, "contract", action, contract_id, details, ei);
}

enum dcms_err dcms_privacy_budget_reserve(struct dcms_store_tx *tx, struct dcms_audit *audit_log,
                                          const struct dcms_audit_who *who, const char *contract_id,
                                          const char *run_id, double epsilon_total, double delta,
                                          double max_epsilon_per_run, double q, double sigma,
                                          uint64_t steps, double *eps_run, double *eps_remaining,
                                          struct dcms_errinfo *ei)
{
    enum dcms_err e;
    if ((e = check_args(contract_id, run_id, epsilon_total, delta, q, sigma, steps, ei)))
        return e;
    bool capped = max_epsilon_per_run > 0;
    char now[DCMS_TIME_STRLEN];
    dcms_time_format(dcms_clock_now_us(), now);
    /* From here on the contract's budget is ours until the caller commits or rolls back. */
    if ((e = pv_budget_lock(tx, contract_id, epsilon_total, delta, capped ? max_epsilon_per_run : 0,
                            now, ei)))
        return e;
    struct dcms_privacy_curve spent;
    memset(&spent, 0, sizeof(spent));
    if ((e = pv_curve_of(tx, contract_id, NULL, &spent, ei)))
        return e;
    double before = 0, after, own;
    if ((e = dcms_privacy_curve_epsilon(&spent, delta, &before, NULL, ei)) ||
        (e = dcms_privacy_epsilon_after(NULL, q, sigma, steps, delta, &own, NULL, ei)) ||
        (e = dcms_privacy_epsilon_after(&spent, q, sigma, steps, delta, &after, NULL, ei)))
        return e;
    double remaining = epsilon_total - before;
    if (remaining < 0)
        remaining = 0;
    if (capped && own > max_epsilon_per_run)
        return dcms_err_field(ei, "dp",
                              "this run costs epsilon %.6g, above max_epsilon_per_run %.6g; the "
                              "contract's budget has epsilon %.6g of %.6g remaining (delta %g)",
                              own, max_epsilon_per_run, remaining, epsilon_total, delta);
    if (!(after <= epsilon_total))
        return dcms_err_field(ei, "dp",
                              "this run would bring the contract's epsilon to %.6g, above its "
                              "budget of %.6g; the budget has epsilon %.6g remaining (delta %g)",
                              after, epsilon_total, remaining, delta);
    struct pv_run r = {run_id, contract_id, q, sigma, delta, own, after, steps, now};
    if ((e = pv_run_insert(tx, &r, ei))) {
        if (e == DCMS_ERR_CONFLICT)
            dcms_err_set(ei, DCMS_ERR_CONFLICT, "run %s already has a privacy reservation", run_id);
        return e;
    }
    e = audit(audit_log, tx, who, "privacy.reserve", contract_id,
              json_pack("{s:s, s:f, s:f, s:I, s:f, s:f, s:f, s:f}", "run_id", run_id, "q", q,
                        "sigma", sigma, "steps", (json_int_t)steps, "delta", delta, "epsilon", own,
                        "epsilon_total_after", after, "epsilon_budget", epsilon_total),
              ei);
    if (e)
        return e;
    if (eps_run)
        *eps_run = own;
    if (eps_remaining)
        *eps_remaining = epsilon_total - after > 0 ? epsilon_total - after : 0;
    return DCMS_OK;
}

/* Moves a reservation to `to`; *moved says whether it did (then it is audited). */
static enum dcms_err move(struct dcms_store_tx *tx, struct dcms_audit *audit_log,
                          const struct dcms_audit_who *who, const char *run_id, const char *to,
                          bool *moved, char state[PV_STATE_MAX], struct dcms_errinfo *ei)
{
    if (!run_id || !*run_id)
        return dcms_err_field(ei, "run_id", "must be 1 to 63 characters");
    char now[DCMS_TIME_STRLEN], contract[64];
    dcms_time_format(dcms_clock_now_us(), now);
    enum dcms_err e = pv_run_move(tx, run_id, to, now, moved, state, contract, ei);
    if (e == DCMS_ERR_NOT_FOUND)
        return dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "run %s has no privacy reservation", run_id);
    if (e || !*moved)
        return e;
    return audit(audit_log, tx, who,
                 strcmp(to, "charged") == 0 ? "privacy.charge" : "privacy.release", contract,
                 json_pack("{s:s}", "run_id", run_id), ei);
}

enum dcms_err dcms_privacy_budget_charge(struct dcms_store_tx *tx, struct dcms_audit *audit_log,
                                         const struct dcms_audit_who *who, const char *run_id,
                                         struct dcms_errinfo *ei)
{
    bool moved;
    char state[PV_STATE_MAX];
    enum dcms_err e = move(tx, audit_log, who, run_id, "charged", &moved, state, ei);
    if (e || moved || strcmp(state, "charged") == 0)
        return e;
    return dcms_err_set(ei, DCMS_ERR_CONFLICT,
                        "run %s's privacy reservation was released: it cannot be charged", run_id);
}

enum dcms_err dcms_privacy_budget_release(struct dcms_store_tx *tx, struct dcms_audit *audit_log,
                                          const struct dcms_audit_who *who, const char *run_id,
                                          bool *returned, struct dcms_errinfo *ei)
{
    bool moved = false;
    char state[PV_STATE_MAX];
    enum dcms_err e = move(tx, audit_log, who, run_id, "released", &moved, state, ei);
    if (returned)
        *returned = !e && moved;
    return e;
}

enum dcms_err dcms_privacy_budget_spent(struct dcms_store_tx *tx, const char *contract_id,
                                        struct dcms_privacy_curve *out, struct dcms_errinfo *ei)
{
    memset(out, 0, sizeof(*out));
    return pv_curve_of(tx, contract_id, NULL, out, ei);
}

/* ε of a curve at δ, as a JSON number (the curve may be zero: ε 0). */
static enum dcms_err eps_of(const struct dcms_privacy_curve *c, double delta, double *out,
                            struct dcms_errinfo *ei)
{
    return dcms_privacy_curve_epsilon(c, delta, out, NULL, ei);
}

enum dcms_err dcms_privacy_budget_view(struct dcms_app *app, const struct dcms_principal *p,
                                       const char *client_ip, const char *request_id,
                                       const char *contract_id, json_t **out,
                                       struct dcms_errinfo *ei)
{
    bool hidden = false;
    *out = NULL;
    struct dcms_store_tx *tx = NULL;
    struct dcms_store_rows *rows = NULL;
    json_t *res = NULL, *runs = NULL;
    struct dcms_contract_privacy term;
    enum dcms_err e = dcms_store_begin(app->store, DCMS_TX_READ, &tx, ei);
    if (e)
        return e;
    if ((e = dcms_contracts_privacy_of(app, tx, p, client_ip, contract_id, &term, &hidden, ei)))
        goto out;
    struct dcms_privacy_curve charged, live;
    memset(&charged, 0, sizeof(charged));
    memset(&live, 0, sizeof(live));
    if ((e = pv_curve_of(tx, contract_id, "charged", &charged, ei)) ||
        (e = pv_curve_of(tx, contract_id, NULL, &live, ei)) ||
        (e = pv_runs_list(tx, contract_id, PV_VIEW_RUNS_MAX, &rows, ei)))
        goto out;
    runs = json_array();
    for (size_t i = 0; runs && i < dcms_store_rows_count(rows); i++)
        if (json_array_append_new(runs, pv_run_json(rows, i))) {
            json_decref(runs);
            runs = NULL;
        }
    res = runs ? json_pack("{s:s, s:o}", "contract_id", contract_id, "runs", runs) : NULL;
    runs = NULL;
    if (!res) {
        e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
        goto out;
    }
    if (!term.present) {
        json_object_set_new(res, "budget", json_null());
        json_object_set_new(res, "spent_epsilon", json_null());
        json_object_set_new(res, "committed_epsilon", json_null());
        json_object_set_new(res, "remaining_epsilon", json_null());
    } else {
        double spent, committed;
        if ((e = eps_of(&charged, term.delta, &spent, ei)) ||
            (e = eps_of(&live, term.delta, &committed, ei)))
            goto out;
        double remaining = term.epsilon - committed > 0 ? term.epsilon - committed : 0;
        json_object_set_new(res, "budget",
                            json_pack("{s:f, s:f, s:o}", "epsilon", term.epsilon, "delta",
                                      term.delta, "max_epsilon_per_run",
                                      term.max_epsilon_per_run > 0
                                          ? json_real(term.max_epsilon_per_run)
                                          : json_null()));
        json_object_set_new(res, "spent_epsilon", json_real(spent));
        json_object_set_new(res, "committed_epsilon", json_real(committed));
        json_object_set_new(res, "remaining_epsilon", json_real(remaining));
        if (!json_object_get(res, "budget") || !json_object_get(res, "remaining_epsilon")) {
            e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
            goto out;
        }
    }
    *out = res;
    res = NULL;
out:
    json_decref(res);
    dcms_store_rows_free(rows);
    dcms_store_rollback(tx);
    if (e == DCMS_ERR_NOT_FOUND && hidden)
        dcms_contracts_audit_hidden(app, p, client_ip, request_id, contract_id,
                                    json_pack("{s:s}", "view", "privacy budget"));
    return e;
}
