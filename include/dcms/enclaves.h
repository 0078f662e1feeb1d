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
#include <stddef.h>
#include <stdint.h>

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

/* ---- enclave sessions (src/enclaves/enclaves_session.c) ---- */

/*
 * An exclusive session on an enclave's channel, for a service that speaks
 * its own frames with the program the enclave runs (the training service
 * and dcms-trainer, training/README.md "Channel protocol"). While a session
 * is open the enclave service does not use the channel: an attestation on
 * demand (POST .../attest, resume) is refused with 409. Close every
 * session before dcms_enclaves_close(). One thread uses a session at a time.
 */
struct dcms_enclave_session;

/*
 * Opens a session on enclave `id` (status running). DCMS_ERR_NOT_FOUND for
 * an unknown enclave, DCMS_ERR_CONFLICT when it is not running or a
 * session is open on it already, DCMS_ERR_UNAVAILABLE when the backend
 * cannot reach the workload. No authorization: the caller decides.
 */
enum dcms_err dcms_enclaves_session_open(struct dcms_enclaves *en, const char *id,
                                         struct dcms_enclave_session **out,
                                         struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * Sends one frame of `type` (1..4, or 16..22: the channel's application
 * range) with `len` bytes of body (at most DCMS_CHAN_MAX_FRAME - 1 = 20479)
 * before deadline_ms (dcms_clock_mono_us() / 1000). DCMS_ERR_VALIDATION for
 * a type or length out of range, DCMS_ERR_UNAVAILABLE on timeout or a
 * closed channel.
 */
enum dcms_err dcms_enclave_session_send(struct dcms_enclave_session *s, uint8_t type,
                                        const void *body, size_t len, int64_t deadline_ms,
                                        struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * Receives the next frame meant for the caller. The workload's NSM
 * requests are answered inside (local backend: by the local attestation
 * module, measured from the sealed image) and never returned. *body is
 * valid until the next call or close. DCMS_ERR_UNAVAILABLE on timeout, a
 * closed channel or a malformed frame. Frame types 1..4 and 16..22.
 */
enum dcms_err dcms_enclave_session_recv(struct dcms_enclave_session *s, uint8_t *type,
                                        const uint8_t **body, size_t *len, int64_t deadline_ms,
                                        struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* What a verified attestation document says. */
struct dcms_enclave_evidence {
    unsigned char *doc; /* the COSE_Sign1 document (malloc'd copy) */
    size_t doc_len;
    unsigned char public_key[32]; /* the enclave's X25519 key from the document */
    size_t public_key_len;        /* 0 when the document carries none */
    unsigned char user_data[64];
    size_t user_data_len;                        /* 0 when absent */
    char pcr0[97], pcr1[97], pcr2[97], pcr8[97]; /* lowercase hex, "" when absent */
    char module_id[64];
    int64_t timestamp_ms;
};

/* Frees doc and wipes *ev. NULL is a no-op. */
void dcms_enclave_evidence_free(struct dcms_enclave_evidence *ev);

/*
 * Verifies `doc` as an attestation of THIS session's enclave with the
 * enclave service's own check of it (enclave_attest_check): the chain to
 * the backend's root, the signature, the nonce equal to `nonce` (1..64
 * bytes), freshness, PCR0 equal to the enclave's pinned image measurement,
 * PCR8 among the allowed signers when its security policy lists any — and
 * never a debug-mode enclave, whatever its policy. DCMS_ERR_FORBIDDEN when
 * the document does not hold, the failing check first in the message
 * ("nonce: ...", "pcr: ...", "debug: ...", "signer: ...", "chain: ...");
 * also when its public_key is not 32 bytes or its user_data longer than 64.
 * *out is filled only on success (release it with dcms_enclave_evidence_free).
 */
enum dcms_err dcms_enclave_session_verify(struct dcms_enclave_session *s, const unsigned char *doc,
                                          size_t doc_len, const unsigned char *nonce,
                                          size_t nonce_len, struct dcms_enclave_evidence *out,
                                          struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* Ends the session; the channel goes back to the enclave service. NULL is a no-op. */
void dcms_enclave_session_close(struct dcms_enclave_session *s);

#endif
