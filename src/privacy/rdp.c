/*
 * The RDP accountant of the Poisson-subsampled Gaussian mechanism and the
 * (ε, δ) conversion (see dcms/privacy.h and README.md beside this file).
 *
 * Everything is computed in log space: log A_α can be in the millions at
 * high orders and small σ, and the terms of the sums span hundreds of orders
 * of magnitude, so sums are log-sum-exp and differences log-sub-exp.
 */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "dcms/privacy.h"

double dcms_privacy_order(size_t i)
{
    if (i < 99)
        return 1.0 + (double)(i + 1) / 10.0;
    return (double)(12 + (i - 99));
}

/* log(exp(a) + exp(b)) without overflow. */
static double log_add(double a, double b)
{
    double lo = a < b ? a : b, hi = a < b ? b : a;
    if (lo == -INFINITY)
        return hi;
    return log1p(exp(lo - hi)) + hi;
}

/* log(exp(a) − exp(b)) for a >= b; −∞ when they are equal. */
static double log_sub(double a, double b)
{
    if (b == -INFINITY)
        return a;
    if (a <= b)
        return -INFINITY; /* equal up to rounding: the difference is below what doubles hold */
    double d = a - b;
    if (d > 700.0) /* exp(−d) is below rounding: log(1 − exp(−d)) is 0 */
        return a;
    return log(expm1(d)) + b;
}

/*
 * log(erfc(x)). erfc underflows past x ≈ 26.5; there the asymptotic series
 * erfc(x) = exp(−x²)/(x√π) · (1 − 1/(2x²) + 3/(4x⁴) − 15/(8x⁶) + 105/(16x⁸))
 * is exact to far below double precision (the next term is < 1e-13 at x = 26).
 */
static double log_erfc(double x)
{
    if (x < 26.0)
        return log(erfc(x));
    double r = 1.0 / (x * x);
    double series =
        1.0 - r / 2.0 + 3.0 * r * r / 4.0 - 15.0 * r * r * r / 8.0 + 105.0 * r * r * r * r / 16.0;
    return -x * x - log(x) - 0.5 * log(M_PI) + log(series);
}

/* log of the binomial coefficient C(n, k) for integers 0 <= k <= n. */
static double log_binom_int(double n, double k)
{
    return lgamma(n + 1.0) - lgamma(k + 1.0) - lgamma(n - k + 1.0);
}

/* log A_α at integer α: Σ_{k=0..α} C(α,k) q^k (1−q)^(α−k) exp((k² − k)/(2σ²)). */
static double log_a_int(double q, double sigma, double alpha)
{
    double la = -INFINITY, lq = log(q), l1q = log1p(-q), s2 = 2.0 * sigma * sigma;
    for (double k = 0; k <= alpha; k++)
        la = log_add(la, log_binom_int(alpha, k) + k * lq + (alpha - k) * l1q + (k * k - k) / s2);
    return la;
}

/*
 * log A_α at fractional α: the two-sided series of Mironov, Talwar and Zhang
 * (2019, §3.3), split at z0 = σ² log(1/q − 1) + 1/2, summed until both new
 * terms fall below e^−30 of the unit (they then decrease geometrically). The
 * generalised binomial coefficient C(α, i) changes sign once i > α: its
 * magnitude follows log|C(α,i+1)| = log|C(α,i)| + log|α − i| − log(i + 1).
 */
static double log_a_frac(double q, double sigma, double alpha)
{
    double la0 = -INFINITY, la1 = -INFINITY;
    double lq = log(q), l1q = log1p(-q), s2 = 2.0 * sigma * sigma;
    double z0 = sigma * sigma * log(1.0 / q - 1.0) + 0.5;
    double lcoef = 0.0; /* log|C(α, 0)| */
    bool positive = true;
    for (double i = 0;; i++) {
        double j = alpha - i;
        double lt0 = lcoef + i * lq + j * l1q;
        double lt1 = lcoef + j * lq + i * l1q;
        double le0 = log(0.5) + log_erfc((i - z0) / (M_SQRT2 * sigma));
        double le1 = log(0.5) + log_erfc((z0 - j) / (M_SQRT2 * sigma));
        double ls0 = lt0 + (i * i - i) / s2 + le0;
        double ls1 = lt1 + (j * j - j) / s2 + le1;
        if (positive) {
            la0 = log_add(la0, ls0);
            la1 = log_add(la1, ls1);
        } else {
            la0 = log_sub(la0, ls0);
            la1 = log_sub(la1, ls1);
        }
        if ((ls0 > ls1 ? ls0 : ls1) < -30.0 || i > 1e6)
            break;
        double step = alpha - i; /* C(α, i+1) = C(α, i) · (α − i)/(i + 1) */
        if (step == 0.0)
            break; /* integer α reached: every later coefficient is zero */
        if (step < 0.0)
            positive = !positive;
        lcoef += log(fabs(step)) - log(i + 1.0);
    }
    return log_add(la0, la1);
}

double dcms_privacy_rdp_step(double q, double sigma, double order)
{
    if (!(q >= 0.0 && q <= 1.0) || !(sigma >= 0.0) || !(order > 1.0))
        return NAN;
    if (q == 0.0)
        return 0.0;
    if (sigma == 0.0 || isinf(order))
        return INFINITY;
    if (q == 1.0)
        return order / (2.0 * sigma * sigma);
    double la = order == floor(order) ? log_a_int(q, sigma, order) : log_a_frac(q, sigma, order);
    return la / (order - 1.0);
}

void dcms_privacy_curve_add(struct dcms_privacy_curve *c, double q, double sigma, uint64_t steps)
{
    if (!steps)
        return;
    for (size_t i = 0; i < DCMS_PRIVACY_NORDERS; i++)
        c->rdp[i] += (double)steps * dcms_privacy_rdp_step(q, sigma, dcms_privacy_order(i));
}

void dcms_privacy_curve_sum(struct dcms_privacy_curve *acc, const struct dcms_privacy_curve *c)
{
    for (size_t i = 0; i < DCMS_PRIVACY_NORDERS; i++)
        acc->rdp[i] += c->rdp[i];
}

enum dcms_err dcms_privacy_epsilon_of(const double *orders, const double *rdp, size_t n,
                                      double delta, double *eps_out, double *order_out,
                                      struct dcms_errinfo *ei)
{
    if (!(delta > 0.0 && delta < 1.0))
        return dcms_err_field(ei, "delta", "must be in (0, 1)");
    if (!n)
        return dcms_err_field(ei, "orders", "must not be empty");
    double best = INFINITY, best_order = orders[0];
    for (size_t i = 0; i < n; i++) {
        double a = orders[i], r = rdp[i], eps;
        if (!(a >= 1.0) || !(r >= 0.0))
            return dcms_err_field(ei, "orders", "orders must be >= 1 and RDP values >= 0");
        if (delta * delta + expm1(-r) > 0.0)
            eps = 0.0;     /* the KL bound δ >= sqrt(1 − e^−rdp) already holds */
        else if (a > 1.01) /* the bound is unstable as α → 1, and useless there anyway */
            eps = r + log1p(-1.0 / a) - log(delta * a) / (a - 1.0);
        else
            eps = INFINITY;
        if (eps < best) {
            best = eps;
            best_order = a;
        }
    }
    *eps_out = best > 0.0 ? best : 0.0;
    if (order_out)
        *order_out = best_order;
    return DCMS_OK;
}

enum dcms_err dcms_privacy_curve_epsilon(const struct dcms_privacy_curve *c, double delta,
                                         double *eps_out, double *order_out,
                                         struct dcms_errinfo *ei)
{
    double orders[DCMS_PRIVACY_NORDERS];
    for (size_t i = 0; i < DCMS_PRIVACY_NORDERS; i++)
        orders[i] = dcms_privacy_order(i);
    return dcms_privacy_epsilon_of(orders, c->rdp, DCMS_PRIVACY_NORDERS, delta, eps_out, order_out,
                                   ei);
}

enum dcms_err dcms_privacy_epsilon_after(const struct dcms_privacy_curve *spent, double q,
                                         double sigma, uint64_t steps, double delta,
                                         double *eps_out, double *order_out,
                                         struct dcms_errinfo *ei)
{
    if (!(q > 0.0 && q <= 1.0))
        return dcms_err_field(ei, "q", "must be in (0, 1]");
    if (!(sigma > 0.0) || isinf(sigma))
        return dcms_err_field(ei, "sigma", "must be a positive number");
    struct dcms_privacy_curve c;
    if (spent)
        c = *spent;
    else
        memset(&c, 0, sizeof(c));
    dcms_privacy_curve_add(&c, q, sigma, steps);
    return dcms_privacy_curve_epsilon(&c, delta, eps_out, order_out, ei);
}

enum dcms_err dcms_privacy_sigma_for(const struct dcms_privacy_curve *spent, double q,
                                     uint64_t steps, double delta, double target_eps,
                                     double *sigma_out, struct dcms_errinfo *ei)
{
    if (!(target_eps > 0.0) || isinf(target_eps))
        return dcms_err_field(ei, "epsilon", "must be a positive number");
    if (!steps)
        return dcms_err_field(ei, "steps", "must be at least 1");
    double eps;
    enum dcms_err e;
    /* ε falls as σ grows: bisect on log σ between a σ that misses and one that meets. */
    double lo = 1e-3, hi = 1e4;
    if ((e = dcms_privacy_epsilon_after(spent, q, hi, steps, delta, &eps, NULL, ei)))
        return e;
    if (eps > target_eps)
        return dcms_err_field(ei, "epsilon",
                              "no noise multiplier up to 10000 keeps epsilon at or below %g",
                              target_eps);
    if ((e = dcms_privacy_epsilon_after(spent, q, lo, steps, delta, &eps, NULL, ei)))
        return e;
    if (eps <= target_eps) {
        *sigma_out = lo;
        return DCMS_OK;
    }
    while (hi / lo > 1.0 + 1e-6) {
        double mid = sqrt(lo * hi);
        if ((e = dcms_privacy_epsilon_after(spent, q, mid, steps, delta, &eps, NULL, ei)))
            return e;
        if (eps <= target_eps)
            hi = mid;
        else
            lo = mid;
    }
    *sigma_out = hi;
    return DCMS_OK;
}
