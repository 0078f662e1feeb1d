/*
 * `dcmsd privacy ...`: the accountant offline, so that anyone can check the
 * ε dcms charges for a run (or the σ it picks for a target ε) by hand.
 *
 *   dcmsd privacy epsilon --q Q --sigma S --steps T --delta D
 *       {"epsilon":…,"order":…}
 *   dcmsd privacy sigma --q Q --steps T --delta D --epsilon E
 *       {"sigma":…,"epsilon":…,"order":…}
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dcms/arena.h"
#include "dcms/privacy.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: dcmsd privacy epsilon --q Q --sigma S --steps T --delta D\n"
               "       dcmsd privacy sigma --q Q --steps T --delta D --epsilon E\n\n"
               "epsilon: the (epsilon, delta) guarantee of T steps of DP-SGD with Poisson\n"
               "sampling rate Q and noise multiplier S (RDP accountant, Opacus's default\n"
               "orders, the conversion of Balle et al. 2020). sigma: the smallest noise\n"
               "multiplier that keeps epsilon at or below E. Prints one JSON object.\n");
}

struct args {
    double q, sigma, delta, epsilon;
    unsigned long long steps;
    int have_q, have_sigma, have_delta, have_epsilon, have_steps;
};

static int number(const char *name, const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) {
        fprintf(stderr, "dcmsd privacy: %s: not a number: %s\n", name, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse(int argc, char **argv, struct args *a)
{
    memset(a, 0, sizeof(*a));
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i];
        if (i + 1 >= argc) {
            fprintf(stderr, "dcmsd privacy: %s needs a value\n", k);
            return -1;
        }
        const char *v = argv[++i];
        if (strcmp(k, "--q") == 0) {
            if (number(k, v, &a->q))
                return -1;
            a->have_q = 1;
        } else if (strcmp(k, "--sigma") == 0) {
            if (number(k, v, &a->sigma))
                return -1;
            a->have_sigma = 1;
        } else if (strcmp(k, "--delta") == 0) {
            if (number(k, v, &a->delta))
                return -1;
            a->have_delta = 1;
        } else if (strcmp(k, "--epsilon") == 0) {
            if (number(k, v, &a->epsilon))
                return -1;
            a->have_epsilon = 1;
        } else if (strcmp(k, "--steps") == 0) {
            char *end;
            errno = 0;
            a->steps = strtoull(v, &end, 10);
            if (errno || end == v || *end || v[0] == '-' || !a->steps) {
                fprintf(stderr, "dcmsd privacy: --steps: not a positive integer: %s\n", v);
                return -1;
            }
            a->have_steps = 1;
        } else {
            fprintf(stderr, "dcmsd privacy: unknown option %s\n", k);
            return -1;
        }
    }
    return 0;
}

static int report(enum dcms_err e, const struct dcms_errinfo *ei)
{
    if (!e)
        return 0;
    if (ei->ndetails)
        fprintf(stderr, "dcmsd privacy: %s %s\n", ei->details[0].field, ei->details[0].problem);
    else
        fprintf(stderr, "dcmsd privacy: %s\n", ei->message);
    return 1;
}

int dcms_privacy_cli(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    int want_sigma = strcmp(argv[1], "sigma") == 0;
    if (!want_sigma && strcmp(argv[1], "epsilon") != 0) {
        usage(stderr);
        return 2;
    }
    struct args a;
    if (parse(argc - 1, argv + 1, &a))
        return 2;
    if (!a.have_q || !a.have_steps || !a.have_delta ||
        (want_sigma ? !a.have_epsilon : !a.have_sigma)) {
        usage(stderr);
        return 2;
    }
    /* The error record keeps its details in an arena. */
    struct dcms_arena *arena = dcms_arena_new(4096);
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, arena);
    double eps = 0, order = 0;
    enum dcms_err e;
    if (want_sigma) {
        double sigma = 0;
        e = dcms_privacy_sigma_for(NULL, a.q, a.steps, a.delta, a.epsilon, &sigma, &ei);
        if (!e)
            e = dcms_privacy_epsilon_after(NULL, a.q, sigma, a.steps, a.delta, &eps, &order, &ei);
        if (!e)
            printf("{\"sigma\":%.10g,\"epsilon\":%.12g,\"order\":%g}\n", sigma, eps, order);
    } else {
        e = dcms_privacy_epsilon_after(NULL, a.q, a.sigma, a.steps, a.delta, &eps, &order, &ei);
        if (!e) {
            if (isinf(eps))
                printf("{\"epsilon\":null,\"order\":null}\n");
            else
                printf("{\"epsilon\":%.12g,\"order\":%g}\n", eps, order);
        }
    }
    int rc = report(e, &ei);
    dcms_arena_free(arena);
    return rc;
}
