/*
 * The RDP accountant (src/privacy/rdp.c) against published values, each
 * case naming its source, and against a multi-precision reference where
 * the published figures are not precise enough.
 */
#include <math.h>
#include <stdlib.h>

#include "testutil.h"

#include "dcms/arena.h"
#include "dcms/privacy.h"

static void assert_rel(double got, double want, double rel)
{
    double err = fabs(got - want) / fabs(want);
    if (!(err <= rel))
        fail_msg("got %.15g, want %.15g (relative error %.3g > %.3g)", got, want, err, rel);
}

/*
 * Opacus (opacus/tests/accountants_test.py, test_rdp_accountant): sample rate
 * 0.04, noise multiplier 1.5, int(90 / 0.04) = 2250 steps, δ = 1e-5, default
 * orders: ε = 7.32911117143 (given to 12 digits).
 */
static void opacus_rdp_accountant(void **state)
{
    (void)state;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    double eps, order;
    assert_int_equal(dcms_privacy_epsilon_after(NULL, 0.04, 1.5, 2250, 1e-5, &eps, &order, &ei),
                     DCMS_OK);
    assert_rel(eps, 7.32911117143, 1e-10);
}

/*
 * Opacus (test_get_noise_multiplier*): ε = 8 at δ = 1e-5, q = 0.04, 90 epochs
 * (2250 steps) gives σ ≈ 1.416, and 2000 steps give σ ≈ 1.3562. Opacus
 * stops its search once ε is within 0.01 below the target, so its σ is an
 * upper bound of the exact smallest σ, which must be a little smaller and
 * still meet the target.
 */
static void opacus_noise_multiplier(void **state)
{
    (void)state;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    static const struct {
        uint64_t steps;
        double opacus_sigma;
    } cases[] = {{2250, 1.416}, {2000, 1.3562}};
    for (size_t i = 0; i < 2; i++) {
        double sigma, eps;
        assert_int_equal(dcms_privacy_sigma_for(NULL, 0.04, cases[i].steps, 1e-5, 8.0, &sigma, &ei),
                         DCMS_OK);
        assert_true(sigma <= cases[i].opacus_sigma);
        assert_true(sigma > cases[i].opacus_sigma * 0.999);
        assert_int_equal(
            dcms_privacy_epsilon_after(NULL, 0.04, sigma, cases[i].steps, 1e-5, &eps, NULL, &ei),
            DCMS_OK);
        assert_true(eps <= 8.0);
        assert_true(eps > 8.0 - 1e-3); /* the smallest such σ: ε is right at the target */
        assert_int_equal(dcms_privacy_epsilon_after(NULL, 0.04, sigma * (1 - 1e-4), cases[i].steps,
                                                    1e-5, &eps, NULL, &ei),
                         DCMS_OK);
        assert_true(eps > 8.0); /* a slightly smaller σ misses it */
    }
}

/*
 * Google dp_accounting (dp_accounting/rdp/rdp_privacy_accountant_test.py,
 * test_compute_rdp_poisson_sampled_gaussian): q = 0.01, σ = 2.5, 50 steps,
 * at the integer orders 5, 50, 100 and ∞: 2.18075656e-03, 2.38460375e-02,
 * 1.67416308e+02, ∞ (9 digits).
 */
static void dp_accounting_sequence(void **state)
{
    (void)state;
    assert_rel(50 * dcms_privacy_rdp_step(0.01, 2.5, 5), 2.18075656e-03, 1e-8);
    assert_rel(50 * dcms_privacy_rdp_step(0.01, 2.5, 50), 2.38460375e-02, 1e-8);
    assert_rel(50 * dcms_privacy_rdp_step(0.01, 2.5, 100), 1.67416308e+02, 1e-8);
    assert_true(isinf(dcms_privacy_rdp_step(0.01, 2.5, INFINITY)));
}

/*
 * Fractional orders against the defining integral
 * A_α = ∫ N(z; 0, σ²) ((1 − q) + q·exp((2z − 1)/(2σ²)))^α dz, evaluated with
 * mpmath (40 digits, mpmath.quad over split intervals) — the reference
 * method dp_accounting's own test_compute_log_a_equals_mp uses. Values are
 * log(A_α)/(α − 1), one step. (dp_accounting's published sequence above
 * gives 6.70579741e-04 and 1.08548710e-03 at orders 1.5 and 2.5 under a
 * 1e-4 tolerance; the integral gives 6.50070897e-04 and 1.08541806e-03, and
 * so does this code.)
 */
static void fractional_orders_match_integral(void **state)
{
    (void)state;
    static const struct {
        double q, sigma, order, rdp;
    } ref[] = {
        {0.01, 2.5, 1.5, 0.000013001417943760794735},
        {0.01, 2.5, 2.5, 0.000021708361138362486063},
        {1e-4, 1.0, 1.5, 1.2885373907673299451e-8},
        {0.1, 100, 20.5, 0.000010252214593881177508},
        {0.04, 1.5, 3.9, 0.0018332021995838585998},
        {0.3, 0.8, 7.3, 4.3081891116044217386},
        /* integer orders through the same integral */
        {0.01, 2.5, 5, 0.000043615131246157616686},
        {0.01, 2.5, 50, 0.00047692075077412338202},
        {1e-3, 1.0, 2, 1.7182803522145153698e-6},
        {0.01, 10, 20, 0.000010068263112022611914},
        {0.5, 2.0, 33, 3.4105383866136664074},
    };
    for (size_t i = 0; i < sizeof(ref) / sizeof(ref[0]); i++)
        assert_rel(dcms_privacy_rdp_step(ref[i].q, ref[i].sigma, ref[i].order), ref[i].rdp, 1e-7);
}

/*
 * dp_accounting (test_compute_epsilon_delta_pure_dp): orders 2..32 with a
 * constant RDP of 1.1 at δ = 1e-5 give ε = 1.32783806176 at order 32.
 */
static void dp_accounting_pure_dp(void **state)
{
    (void)state;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    double orders[31], rdp[31], eps, order;
    for (int i = 0; i < 31; i++) {
        orders[i] = 2 + i;
        rdp[i] = 1.1;
    }
    assert_int_equal(dcms_privacy_epsilon_of(orders, rdp, 31, 1e-5, &eps, &order, &ei), DCMS_OK);
    assert_rel(eps, 1.32783806176, 1e-10);
    assert_true(order == 32);
}

/*
 * dp_accounting (test_compute_epsilon_delta_gaussian): the plain Gaussian
 * (q = 1) with σ = 4.530877117 is (1, 1e-6)-DP over the orders 1.000..99.999
 * in steps of 0.001 (7 decimal places).
 */
static void dp_accounting_gaussian(void **state)
{
    (void)state;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    size_t n = 99000;
    double *orders = malloc(n * sizeof(double)), *rdp = malloc(n * sizeof(double));
    assert_non_null(orders);
    assert_non_null(rdp);
    for (size_t i = 0; i < n; i++) {
        orders[i] = 0.001 * (double)(i + 1000);
        /* At q = 1 the RDP is α/(2σ²) for every α >= 1, order 1 (the KL divergence) included. */
        rdp[i] = orders[i] == 1.0 ? 1.0 / (2 * 4.530877117 * 4.530877117)
                                  : dcms_privacy_rdp_step(1.0, 4.530877117, orders[i]);
    }
    double eps, order;
    assert_int_equal(dcms_privacy_epsilon_of(orders, rdp, n, 1e-6, &eps, &order, &ei), DCMS_OK);
    assert_true(fabs(eps - 1.0) < 5e-8);
    free(orders);
    free(rdp);
}

/* Composition adds curves: two runs equal one run of the summed steps, and ε grows. */
static void composition_and_edges(void **state)
{
    (void)state;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_privacy_curve a = {{0}}, b = {{0}}, both = {{0}};
    dcms_privacy_curve_add(&a, 0.05, 1.1, 300);
    dcms_privacy_curve_add(&b, 0.05, 1.1, 700);
    dcms_privacy_curve_add(&both, 0.05, 1.1, 1000);
    dcms_privacy_curve_sum(&a, &b);
    for (size_t i = 0; i < DCMS_PRIVACY_NORDERS; i++)
        assert_rel(a.rdp[i], both.rdp[i], 1e-12);
    double e1, e2, e3;
    assert_int_equal(dcms_privacy_epsilon_after(NULL, 0.05, 1.1, 300, 1e-5, &e1, NULL, &ei),
                     DCMS_OK);
    assert_int_equal(dcms_privacy_curve_epsilon(&both, 1e-5, &e2, NULL, &ei), DCMS_OK);
    assert_true(e1 < e2);
    /* Adding the curves is tighter than adding the runs' epsilons. */
    assert_int_equal(dcms_privacy_epsilon_after(NULL, 0.05, 1.1, 700, 1e-5, &e3, NULL, &ei),
                     DCMS_OK);
    assert_true(e2 < e1 + e3);
    /* Edges: q = 0 spends nothing, σ = 0 is no privacy, q = 1 is the Gaussian. */
    assert_true(dcms_privacy_rdp_step(0.0, 1.0, 2.5) == 0.0);
    assert_true(isinf(dcms_privacy_rdp_step(0.3, 0.0, 2.5)));
    assert_rel(dcms_privacy_rdp_step(1.0, 2.0, 7.5), 7.5 / 8.0, 1e-15);
    assert_true(isnan(dcms_privacy_rdp_step(1.5, 1.0, 2)));
    assert_true(isnan(dcms_privacy_rdp_step(0.5, 1.0, 1.0)));
    /* High orders and small σ stay finite in log space. */
    double hi = dcms_privacy_rdp_step(0.99, 0.1, 256);
    assert_true(isfinite(hi) && hi > 1000);
    assert_true(isfinite(dcms_privacy_rdp_step(1e-6, 0.1, 256)));
    assert_true(isfinite(dcms_privacy_rdp_step(0.999, 100, 256.1)));
    /* Refusals name the field. */
    struct dcms_arena *ar = dcms_arena_new(4096);
    dcms_errinfo_init(&ei, ar);
    assert_int_equal(dcms_privacy_epsilon_after(NULL, 0.05, 1.1, 10, 0.0, &e1, NULL, &ei),
                     DCMS_ERR_VALIDATION);
    assert_string_equal(ei.details[0].field, "delta");
    dcms_errinfo_init(&ei, ar);
    double sigma;
    struct dcms_privacy_curve spent = {{0}};
    dcms_privacy_curve_add(&spent, 1.0, 0.5, 100); /* already far past ε = 1 */
    assert_int_equal(dcms_privacy_sigma_for(&spent, 0.05, 100, 1e-5, 1.0, &sigma, &ei),
                     DCMS_ERR_VALIDATION);
    assert_string_equal(ei.details[0].field, "epsilon");
    dcms_arena_free(ar);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(opacus_rdp_accountant),  cmocka_unit_test(opacus_noise_multiplier),
    cmocka_unit_test(dp_accounting_sequence), cmocka_unit_test(fractional_orders_match_integral),
    cmocka_unit_test(dp_accounting_pure_dp),  cmocka_unit_test(dp_accounting_gaussian),
    cmocka_unit_test(composition_and_edges),
};

DCMS_TEST_MAIN(tests)
