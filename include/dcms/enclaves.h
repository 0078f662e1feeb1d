/*
 * The enclave service as the rest of dcmsd sees it: opened by main.c with a
 * backend (src/enclaves/backend.h), closed at shutdown, and asked for its
 * Prometheus gauges by /metrics. The HTTP handlers live in
 * src/enclaves/enclaves_http.c; the design is in src/enclaves/README.md.
 *
 * Thread-safety: one struct dcms_enclaves serves every request thread and
 * its own reconcile thread.
 */
#ifndef DCMS_ENCLAVES_H
#define DCMS_ENCLAVES_H

#include <stdbool.h>

#include <jansson.h>

#include "dcms/err.h"
#include "dcms/str.h"

struct dcms_app;
struct dcms_enclaves;
struct dcms_enclave_backend;

struct dcms_enclaves_opts {
    /* Runs the workloads; ownership passes to the service (freed by close). */
    struct dcms_enclave_backend *backend;
    /* Where workload images are looked up by name (no trailing slash needed). */
    const char *images_dir;
    unsigned max_cpu_cores, max_memory_mb, max_storage_gb; /* host limits */
    unsigned reconcile_ms;        /* probe period of running/suspended enclaves; 0: no thread */
    unsigned metrics_interval_ms; /* metrics sampling period; 0: no sampling */
};

/*
 * Starts the service: reconciles every enclave that is not final with the
 * backend (after a restart the local backend has no workloads, so they move
 * to Failed) and starts the reconcile/metrics thread. `app` must have cfg,
 * store, audit and attest set and outlive the service. On failure the
 * backend is freed too.
 */
enum dcms_err dcms_enclaves_open(struct dcms_app *app, const struct dcms_enclaves_opts *opts,
                                 struct dcms_enclaves **out,
                                 struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * dcmsd's way in: the backend, directories and limits from app->cfg
 * (DCMS_ENCLAVE_*), then dcms_enclaves_open(). DCMS_ERR_CONFIG names the
 * variable at fault.
 */
enum dcms_err dcms_enclaves_start(struct dcms_app *app, struct dcms_enclaves **out,
                                  struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* Stops the thread, terminates the backend's workloads (the backend's destroy), frees. */
void dcms_enclaves_close(struct dcms_enclaves *en);

/*
 * Appends the per-enclave gauges (Prometheus text) of the workloads this
 * node sampled last. NULL `en` appends nothing. Thread-safe.
 */
enum dcms_err dcms_enclaves_metrics_render(struct dcms_enclaves *en,
                                           struct dcms_buf *out) DCMS_MUST_CHECK;

/*
 * Runs one reconcile pass now (what the thread does every period): every
 * running or suspended enclave (with `all`, also initializing ones) is
 * probed; lost or exited workloads move to Failed. For tests and startup.
 */
enum dcms_err dcms_enclaves_reconcile(struct dcms_enclaves *en, bool all,
                                      struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* ---- evidence for the parties (src/enclaves/enclaves_evidence.c) ---- */

struct dcms_principal;

/*
 * The last attestation of enclave `id` as `p` may see it: {enclave_id,
 * contract_id, backend, status, taken_at, document (base64 COSE_Sign1),
 * verified, reason, verified_at, nonce, verifier, report, root_pem (the dev
 * root of a local enclave, else null)}. DCMS_ERR_NOT_FOUND when `p` may not
 * read the enclave (indistinguishable from an unknown id; the refusal is
 * audited) or no document was kept yet. *out is the caller's. Thread-safe.
 */
enum dcms_err dcms_enclaves_attestation(struct dcms_enclaves *en, const struct dcms_principal *p,
                                        const char *client_ip, const char *request_id,
                                        const char *id, json_t **out,
                                        struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * Every enclave bound to contract `contract_id` (at most 256, oldest first),
 * each shaped as above, document null when none was kept. No authorization:
 * the caller has decided that its caller may read the contract. A NULL `en`
 * (no enclave service) gives an empty array.
 */
enum dcms_err dcms_enclaves_of_contract(struct dcms_enclaves *en, const char *contract_id,
                                        json_t **out, struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* ---- training enclaves (src/enclaves/enclaves_provision.c) ---- */

/*
 * Creates, as the system, an enclave for contract `contract_id` running
 * workload image `image` (a name under DCMS_ENCLAVE_IMAGES_DIR) with the
 * default policies (no network, secure and measured boot, no debug), its
 * provider being the contract's provider. The contract must be Active and
 * the configuration must pass the compatibility gate (422 with a problem per
 * failing requirement otherwise). The workload is started and attested as
 * for POST /api/v1/enclaves; `id_out` receives the enclave id even when the
 * start failed, and then DCMS_ERR_UNAVAILABLE says why. Audited
 * ("enclave.create" by "system", `cause` in the details). Thread-safe.
 */
enum dcms_err dcms_enclaves_provision(struct dcms_enclaves *en, const char *contract_id,
                                      const char *image, const char *cause, const char *request_id,
                                      char id_out[37], struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * Terminates enclave `id` as the system (the backend stops the workload and
 * removes its scratch directory), audited as "enclave.terminate" with
 * `reason`. DCMS_OK when it is already terminated or unknown. Thread-safe.
 */
enum dcms_err dcms_enclaves_retire(struct dcms_enclaves *en, const char *id, const char *reason,
                                   const char *request_id, struct dcms_errinfo *ei) DCMS_MUST_CHECK;

#endif
