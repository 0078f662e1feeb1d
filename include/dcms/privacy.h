/*
 * Differential-privacy accounting: the Rényi DP (RDP) of DP-SGD, that is of
 * the Poisson-subsampled Gaussian mechanism, and its conversion to (ε, δ).
 *
 * Pure functions: no I/O, no allocation, no global state; every function is
 * thread-safe. The training service uses them to price a run before any data
 * moves and to keep each contract's budget; `dcmsd privacy epsilon` prints
 * the same figures so anyone can check them.
 *
 * The mathematics (see src/privacy/README.md for the derivation and sources):
 * - one step of DP-SGD with sampling rate q and noise multiplier σ has, at
 *   order α > 1, RDP  log(A_α) / (α − 1)  where A_α is the α-th moment of the
 *   privacy-loss ratio of the mixture (1 − q)·N(0, σ²) + q·N(1, σ²) against
 *   N(0, σ²) (Mironov, Talwar, Zhang 2019, "Rényi Differential Privacy of the
 *   Sampled Gaussian Mechanism"): a finite binomial sum at integer α, an
 *   absolutely convergent series with erfc terms at fractional α, both in log
 *   space so that no order overflows; q = 1 is the plain Gaussian, α/(2σ²);
 * - T steps have T times that RDP, and runs compose by adding their curves;
 * - the curve converts to ε at a target δ by the bound of Balle, Barthe,
 *   Gaboardi, Hsu, Sato 2020 (Theorem 21), minimised over the orders:
 *   ε = min_α  rdp(α) + log((α − 1)/α) − (log δ + log α)/(α − 1),
 *   the conversion Opacus and Google's dp_accounting use.
 */
#ifndef DCMS_PRIVACY_H
#define DCMS_PRIVACY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "dcms/err.h"

/* Opacus's default orders: 1 + x/10 for x = 1..99, then 12..63 (151 orders). */
#define DCMS_PRIVACY_NORDERS 151

/* The order of index i (0 <= i < DCMS_PRIVACY_NORDERS) in the default list. */
double dcms_privacy_order(size_t i);

/*
 * RDP of ONE step of the Poisson-subsampled Gaussian mechanism at `order`
 * (> 1, or +INFINITY). q in [0, 1], sigma >= 0. Returns 0 for q = 0,
 * +INFINITY for sigma = 0 or an infinite order, NAN for arguments out of
 * range.
 */
double dcms_privacy_rdp_step(double q, double sigma, double order);

/* An RDP curve over the default orders; zero-initialise it for "no spending yet". */
struct dcms_privacy_curve {
    double rdp[DCMS_PRIVACY_NORDERS];
};

/* Adds `steps` steps of (q, sigma) to the curve: composition is addition. */
void dcms_privacy_curve_add(struct dcms_privacy_curve *c, double q, double sigma, uint64_t steps);

/* Adds one curve to another (the runs of a contract). */
void dcms_privacy_curve_sum(struct dcms_privacy_curve *acc, const struct dcms_privacy_curve *c);

/*
 * The smallest ε over `n` (order, rdp) pairs at `delta` (0 < delta < 1), and
 * the order that gives it. ε is 0 when the curve is that small (the KL bound
 * δ ≥ sqrt(1 − exp(−rdp)) already holds), +INFINITY when no order gives a
 * finite bound (sigma 0, or orders only at or below 1.01). DCMS_ERR_VALIDATION
 * for delta out of range, n = 0, an order below 1 or a negative rdp.
 */
enum dcms_err dcms_privacy_epsilon_of(const double *orders, const double *rdp, size_t n,
                                      double delta, double *eps_out, double *order_out,
                                      struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* The same over a curve on the default orders. */
enum dcms_err dcms_privacy_curve_epsilon(const struct dcms_privacy_curve *c, double delta,
                                         double *eps_out, double *order_out,
                                         struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * ε of the curve `spent` (NULL: nothing spent) plus `steps` steps of
 * (q, sigma): a contract's total after a run. RDP curves add, so this is
 * tighter than adding the run's own ε to what was spent.
 */
enum dcms_err dcms_privacy_epsilon_after(const struct dcms_privacy_curve *spent, double q,
                                         double sigma, uint64_t steps, double delta,
                                         double *eps_out, double *order_out,
                                         struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * The smallest noise multiplier σ (to a relative precision of 1e-6, rounded
 * up so the target holds) such that ε(spent + steps of (q, σ)) <= target_eps
 * at delta. DCMS_ERR_VALIDATION (field "epsilon") when no σ up to 10^4 meets
 * it, e.g. because `spent` alone already exceeds the target.
 */
enum dcms_err dcms_privacy_sigma_for(const struct dcms_privacy_curve *spent, double q,
                                     uint64_t steps, double delta, double target_eps,
                                     double *sigma_out, struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* `dcmsd privacy ...`: the offline tool. Returns the process exit status. */
int dcms_privacy_cli(int argc, char **argv);

/* ---- the per-contract budget (privacy_budget.c, tables of migration 0018) ---- */

struct dcms_store_tx;
struct dcms_audit;
struct dcms_audit_who;

/*
 * Reserves the privacy cost of DP run `run_id` (a new id: DCMS_ERR_CONFLICT
 * if it was reserved before) under contract `contract_id`, whose terms
 * give the total `epsilon_total` (0 < ε <= 100) at `delta` (0 < δ < 1) and
 * the per-run cap `max_epsilon_per_run` (<= 0: none). The run is `steps`
 * (>= 1) steps of the Poisson-subsampled Gaussian with rate q (0 < q <= 1)
 * and noise multiplier sigma (> 0).
 *
 * The contract's spending is the sum of the RDP curves of its runs that
 * are reserved or charged (not released), converted once at `delta`.
 * *eps_run receives the run's own ε, *eps_remaining what the budget has
 * left after it (epsilon_total − ε(all runs with this one)); either may be
 * NULL. Refused with DCMS_ERR_VALIDATION, field "dp", and nothing written
 * when the run's own ε exceeds max_epsilon_per_run or the total after it
 * would exceed epsilon_total; the message names the remaining budget.
 * DCMS_ERR_VALIDATION (field named) for arguments out of range.
 *
 * `tx` is the caller's DCMS_TX_WRITE transaction: the reservation and its
 * audit event ("privacy.reserve" on the contract, actor `who`, may be
 * NULL for the system) commit or roll back with the caller's job. It locks
 * the contract's budget row (SELECT ... FOR UPDATE on PostgreSQL; SQLite
 * write transactions are serialized), so concurrent reservations of one
 * contract are priced one after the other and cannot overspend together.
 * Thread-safe (a transaction belongs to one thread).
 */
enum dcms_err dcms_privacy_budget_reserve(struct dcms_store_tx *tx, struct dcms_audit *audit,
                                          const struct dcms_audit_who *who, const char *contract_id,
                                          const char *run_id, double epsilon_total, double delta,
                                          double max_epsilon_per_run, double q, double sigma,
                                          uint64_t steps, double *eps_run, double *eps_remaining,
                                          struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * Charges the reservation of `run_id`: call it in the transaction that
 * releases the data key to the run. From then on the run's ε stays spent,
 * whether the run later succeeds or fails. Charging a charged run changes
 * nothing (DCMS_OK); DCMS_ERR_CONFLICT when the reservation was released,
 * DCMS_ERR_NOT_FOUND when `run_id` was never reserved. Audited
 * ("privacy.charge") in `tx`.
 */
enum dcms_err dcms_privacy_budget_charge(struct dcms_store_tx *tx, struct dcms_audit *audit,
                                         const struct dcms_audit_who *who, const char *run_id,
                                         struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * Returns the reservation of `run_id`, for a run that ended (failed or was
 * cancelled) before its key release: its ε no longer counts. A charged run
 * keeps its charge: DCMS_OK and nothing changes, *returned (may be NULL)
 * tells which happened. Releasing a released run changes nothing.
 * DCMS_ERR_NOT_FOUND when `run_id` was never reserved. Audited
 * ("privacy.release") in `tx` when something was returned.
 */
enum dcms_err dcms_privacy_budget_release(struct dcms_store_tx *tx, struct dcms_audit *audit,
                                          const struct dcms_audit_who *who, const char *run_id,
                                          bool *returned, struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * The RDP curve of what contract `contract_id` has reserved or charged so
 * far (zero when nothing), read in `tx` (any mode): pass it as `spent` to
 * dcms_privacy_sigma_for to find the σ that fits what remains.
 */
enum dcms_err dcms_privacy_budget_spent(struct dcms_store_tx *tx, const char *contract_id,
                                        struct dcms_privacy_curve *out,
                                        struct dcms_errinfo *ei) DCMS_MUST_CHECK;

struct dcms_app;
struct dcms_principal;

/*
 * GET /api/v1/contracts/{id}/privacy: the budget of contract `id` for `p`,
 * a party or auditor (dcms_contracts_privacy_of decides; DCMS_ERR_NOT_FOUND
 * for anyone else, as for an unknown id): {contract_id, budget: {epsilon,
 * delta, max_epsilon_per_run} or null without a privacy term, runs: [{run_id,
 * state, q, sigma, steps, delta, epsilon, reserved_at, charged_at,
 * released_at}], spent_epsilon (charged runs), committed_epsilon (charged
 * and reserved), remaining_epsilon}, the totals by curve composition at the
 * term's δ. A contract hidden from `p` is audited as "contract.hidden"
 * (denied). *out is the caller's. Thread-safe.
 */
enum dcms_err dcms_privacy_budget_view(struct dcms_app *app, const struct dcms_principal *p,
                                       const char *client_ip, const char *request_id,
                                       const char *contract_id, json_t **out,
                                       struct dcms_errinfo *ei) DCMS_MUST_CHECK;

#endif
