/*
 * The training service as the rest of dcmsd sees it (src/training/): opened
 * by main.c after the contract, dataset and enclave services, closed before
 * them. It runs training jobs on a small pool of worker threads
 * (DCMS_TRAINING_WORKERS); jobs live in the store, so queued ones survive a
 * restart. The HTTP handlers are in src/training/training_http.c; the design
 * is in src/training/README.md.
 *
 * Thread-safety: one struct dcms_training serves every request thread and
 * its own workers.
 */
#ifndef DCMS_TRAINING_H
#define DCMS_TRAINING_H

#include <jansson.h>

#include "dcms/err.h"

struct dcms_app;
struct dcms_training;

/*
 * Starts the service: fails the jobs a previous dcmsd left in flight
 * (reason "node_restarted"), registers the contract listener and the purge
 * function of models, and starts the workers, which take the queued jobs.
 * `app` must have cfg, store, audit, keys, contracts, datasets and enclaves
 * set (enclaves may be NULL: jobs then fail at provisioning) and outlive
 * the service.
 */
enum dcms_err dcms_training_open(struct dcms_app *app, struct dcms_training **out,
                                 struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* Stops the workers (a running job is cancelled and its enclave retired), frees. NULL: no-op. */
void dcms_training_close(struct dcms_training *t);

/*
 * The ids of contract `contract_id`'s training jobs, oldest first (at most
 * DCMS_TRAINING_EVIDENCE_MAX), as a JSON array of strings in *out: the
 * contract's audit slice and evidence name their events. No authorization:
 * the caller has decided that its caller may read the contract. A NULL `t`
 * gives an empty array.
 */
#define DCMS_TRAINING_EVIDENCE_MAX 256
enum dcms_err dcms_training_ids_of_contract(struct dcms_training *t, const char *contract_id,
                                            json_t **out, struct dcms_errinfo *ei) DCMS_MUST_CHECK;

struct dcms_principal;

/*
 * Decides whether `p` may read training job `id` (the decision of GET
 * /trainings/{id}: the contract's "contracts:read", then "training:read",
 * through dcms_iam_authorize). DCMS_OK, or DCMS_ERR_NOT_FOUND, as for an
 * unknown id, when `p` may not. Thread-safe.
 */
enum dcms_err dcms_training_authorize_read(struct dcms_app *app, const struct dcms_principal *p,
                                           const char *client_ip, const char *id,
                                           struct dcms_errinfo *ei) DCMS_MUST_CHECK;

#endif
