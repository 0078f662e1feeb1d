/*
 * Inside the privacy module: the budget's queries (privacy_store.c) and
 * the view's encoder (privacy_json.c), shared by privacy_budget.c.
 */
#ifndef DCMS_PRIVACY_INT_H
#define DCMS_PRIVACY_INT_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "dcms/err.h"
#include "dcms/privacy.h"

struct dcms_store_tx;
struct dcms_store_rows;

/* Reals travel as text: 17 significant digits read back as the same double. */
#define PV_REAL_STRLEN 32
void pv_real_format(double d, char out[PV_REAL_STRLEN]);
/* The double of stored text; false when it is not a finite number. */
bool pv_real_parse(const char *s, double *out);

/*
 * Creates the budget row of `contract_id` if missing, locks it for the rest
 * of `tx` (FOR UPDATE on PostgreSQL) and records the term's values.
 */
enum dcms_err pv_budget_lock(struct dcms_store_tx *tx, const char *contract_id, double epsilon,
                             double delta, double max_per_run, const char *now,
                             struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* Adds the runs of `contract_id` in state `state` (or reserved and charged: NULL) to `c`. */
enum dcms_err pv_curve_of(struct dcms_store_tx *tx, const char *contract_id, const char *state,
                          struct dcms_privacy_curve *c, struct dcms_errinfo *ei) DCMS_MUST_CHECK;

struct pv_run {
    const char *run_id, *contract_id;
    double q, sigma, delta, epsilon, epsilon_after;
    uint64_t steps;
    const char *now;
};
/* A new reservation. DCMS_ERR_CONFLICT when run_id exists. */
enum dcms_err pv_run_insert(struct dcms_store_tx *tx, const struct pv_run *r,
                            struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * Moves `run_id` from reserved to `to` ("charged" or "released") at `now`.
 * *moved says whether it did; otherwise *state (PV_STATE_MAX bytes)
 * holds the state it is in. In both cases *contract receives its
 * contract. DCMS_ERR_NOT_FOUND (nothing recorded) for an unknown run.
 */
#define PV_STATE_MAX 16
enum dcms_err pv_run_move(struct dcms_store_tx *tx, const char *run_id, const char *to,
                          const char *now, bool *moved, char state[PV_STATE_MAX], char contract[64],
                          struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* The runs of a contract, oldest first (columns: see privacy_store.c), at most `limit`. */
enum dcms_err pv_runs_list(struct dcms_store_tx *tx, const char *contract_id, int64_t limit,
                           struct dcms_store_rows **rows, struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* The most runs the view lists (the totals always count every run). */
#define PV_VIEW_RUNS_MAX 1000

/* One run row of pv_runs_list as the API shows it (a new reference, NULL when out of memory). */
json_t *pv_run_json(const struct dcms_store_rows *rows, size_t i);

#endif
