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

#include <stddef.h>
#include <stdint.h>

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

#endif
