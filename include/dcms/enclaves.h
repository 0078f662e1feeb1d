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

#endif
