/*
 * Inside the enclave service: the model, its rules and the state machine
 * (enclaves_model.c, pure), the JSON codecs (enclaves_json.c), the store
 * queries and the row codec (enclaves_store.c), the service
 * (enclaves.c), the attestation step (enclaves_attest.c), metrics
 * (enclaves_metrics.c), the background jobs (enclaves_reconcile.c) and
 * the handlers (enclaves_http.c, the only file that sees the HTTP layer).
 */
#ifndef DCMS_ENCLAVES_INT_H
#define DCMS_ENCLAVES_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include <jansson.h>

#include "dcms/attest.h"
#include "dcms/audit.h"
#include "dcms/enclaves.h"
#include "dcms/nodes.h"
#include "dcms/iam.h"
#include "dcms/uuid.h"
#include "enclaves/backend.h"

struct dcms_store_tx;
struct dcms_store_rows;

/* ---- the model (enclaves_model.c) ---- */

#define ENCLAVE_MAX_RULES 32
#define ENCLAVE_MAX_SIGNERS 16
#define ENCLAVE_IMAGE_MAX 64
#define ENCLAVE_SIGNER_HEX 96 /* SHA-384 in lowercase hex */

struct enclave_rule {
    char protocol[4]; /* "tcp" | "udp" */
    unsigned port;    /* 1..65535 */
    char cidr[64];    /* IPv4 or IPv6 address with a prefix, as given */
};

struct enclave_netpol {
    struct enclave_rule ingress[ENCLAVE_MAX_RULES], egress[ENCLAVE_MAX_RULES];
    size_t ningress, negress;
    bool encryption_required;
    unsigned min_tls; /* 12 = TLS 1.2, 13 = TLS 1.3 */
};

struct enclave_secpol {
    bool secure_boot, measured_boot, debug_mode;
    char signers[ENCLAVE_MAX_SIGNERS][ENCLAVE_SIGNER_HEX + 1];
    size_t nsigners;
};

struct enclave_config {
    char image[ENCLAVE_IMAGE_MAX + 1];
    unsigned cpu_cores, memory_mb, storage_gb;
    struct enclave_netpol net;
    struct enclave_secpol sec;
};

struct enclave_limits {
    unsigned max_cpu_cores, max_memory_mb, max_storage_gb;
};

#define ENCLAVE_MIN_MEMORY_MB 16

/* True for a workload image name: [A-Za-z0-9._-]{1,64}, not "." or "..". */
bool enclave_image_name_ok(const char *s);
/* True for an IPv4 or IPv6 address with an optional /prefix (host bits allowed). */
bool enclave_cidr_ok(const char *s);
/* True for an allowed signer: `len` lowercase hex digits of a SHA-384 (PCR8). */
bool enclave_signer_ok(const char *s, size_t len);
void enclave_netpol_default(struct enclave_netpol *n);
void enclave_secpol_default(struct enclave_secpol *s);

/* ---- the JSON codecs (enclaves_json.c) ---- */

/*
 * Decodes and validates a configuration object. Problems go to `ei` with
 * field paths under `prefix` ("configuration."), all at once. `limits`
 * NULL skips the host limits (re-reading a stored configuration).
 */
void enclave_config_from_json(const json_t *o, const char *prefix,
                              const struct enclave_limits *limits, struct enclave_config *out,
                              struct dcms_errinfo *ei);
/* A stored configuration (JSON text) back to *out; false when it is unreadable. */
bool enclave_config_stored(const char *text, struct enclave_config *out);
/* A network or security policy alone (PATCH). Field paths under `prefix`. */
void enclave_netpol_from_json(const json_t *o, const char *prefix, struct enclave_netpol *out,
                              struct dcms_errinfo *ei);
void enclave_secpol_from_json(const json_t *o, const char *prefix, struct enclave_secpol *out,
                              struct dcms_errinfo *ei);

/* New references; NULL on OOM. */
json_t *enclave_config_to_json(const struct enclave_config *c);
json_t *enclave_netpol_to_json(const struct enclave_netpol *n);
json_t *enclave_secpol_to_json(const struct enclave_secpol *s);

/* ---- the state machine (enclaves_model.c) ---- */

enum enclave_status {
    ENCLAVE_INITIALIZING,
    ENCLAVE_RUNNING,
    ENCLAVE_SUSPENDED,
    ENCLAVE_FAILED,
    ENCLAVE_TERMINATED,
    ENCLAVE_LOST, /* its node stopped renewing its heartbeat: the workload is out of reach */
    ENCLAVE__STATUS_COUNT
};

enum enclave_event {
    ENCLAVE_EV_STARTED,   /* the workload runs and its attestation verified */
    ENCLAVE_EV_SUSPEND,   /* pause the workload */
    ENCLAVE_EV_RESUME,    /* continue it (and attest again) */
    ENCLAVE_EV_ATTEST,    /* a fresh attestation on demand */
    ENCLAVE_EV_UPDATE,    /* policy changes (PATCH) */
    ENCLAVE_EV_FAIL,      /* the workload died, was lost, or failed attestation */
    ENCLAVE_EV_TERMINATE, /* stop for good */
    ENCLAVE_EV_LOSE,      /* the owner node is gone (another node's sweep) */
    ENCLAVE__EVENT_COUNT
};

/* Who may trigger a transition. */
enum { ENCLAVE_BY_SYSTEM = 1u << 0, ENCLAVE_BY_OWNER = 1u << 1 };

const char *enclave_status_name(enum enclave_status s);
bool enclave_status_parse(const char *s, enum enclave_status *out);
const char *enclave_event_name(enum enclave_event ev);

/*
 * The one transition table: true and *to set when `ev` may happen in
 * `from` when triggered by `who` (ENCLAVE_BY_*).
 */
bool enclave_transition(enum enclave_status from, enum enclave_event ev, unsigned who,
                        enum enclave_status *to);
/* "resume, terminate, update": the events `who` may trigger in `from` ("none" if none). */
void enclave_allowed_events(enum enclave_status from, unsigned who, char *out, size_t cap);

/* ---- the store (enclaves_store.c): every query of the enclaves tables ---- */

struct enclave_list_in;

enum enclave_col {
    C_ID,
    C_NAME,
    C_PROVIDER,
    C_CONTRACT,
    C_BACKEND,
    C_STATUS,
    C_REASON,
    C_ATTEST,
    C_CONFIG,
    C_METRICS,
    C_VERSION,
    C_CREATED,
    C_UPDATED,
    C_IMAGE_SHA,
    C_PCR0,
    C_REF,
    C_PID,
    C_STARTED,
    C_ATTESTED,
    C_CONSUMER, /* the bound contract's consumer, copied at bind time (migration 0008) */
    C_HOLD,     /* contract_hold: NULL, "suspended" or "terminated" (migration 0013) */
    C_OWNER,    /* owner_node: the node running the workload; NULL before migration 0021 */
    C__COUNT
};

/* One enclave row as text (NULL where SQL NULL); pointers into rows or caller strings. */
struct enclave_row {
    const char *v[C__COUNT];
};

/*
 * One enclave as the service returns it: `r` points into `rows`, which the
 * caller releases with enclave_rec_release (enclaves_store.c) after
 * encoding it (enclave_row_to_json). Zeroed by the service on entry; empty
 * on error.
 */
struct enclave_rec {
    struct dcms_store_rows *rows;
    struct enclave_row r;
};

/* Row `i` of an enclave query result. */
void enclave_row_from(const struct dcms_store_rows *rows, size_t i, struct enclave_row *out);
/* Enclave `id` (*rows owns the text; free it). DCMS_ERR_NOT_FOUND when absent. */
enum dcms_err enclave_store_load(struct dcms_store_tx *tx, const char *id,
                                 struct dcms_store_rows **rows, struct enclave_row *r,
                                 struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* Moves *rows and *r into `out` (*rows becomes NULL). */
void enclave_rec_take(struct enclave_rec *out, struct dcms_store_rows **rows,
                      const struct enclave_row *r);
/* Frees what `rec` owns and empties it. */
void enclave_rec_release(struct enclave_rec *rec);
/* Writes `r` back with a new version; 412 when it moved since it was read. */
enum dcms_err enclave_store_update(struct dcms_store_tx *tx, const struct enclave_row *r,
                                   const char *now, struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* A new Initializing enclave from the members of `r` (id, name, provider, contract, consumer,
 * backend, config, sha, pcr0). */
enum dcms_err enclave_store_insert(struct dcms_store_tx *tx, const struct enclave_row *r,
                                   const char *now, struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/*
 * A page of enclaves matching `in`; `all` lists every enclave, otherwise
 * only those where `who` or `org` is the provider or the consumer.
 */
enum dcms_err enclave_store_list(struct dcms_store_tx *tx, const struct enclave_list_in *in,
                                 bool all, const char *who, const char *org,
                                 struct dcms_store_rows **rows,
                                 struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/*
 * Pins image `name` to `sha_hex` unless it is pinned already, and gives the
 * pinned measurement in `pinned` (hex, 2 * 48 + 1 bytes).
 */
enum dcms_err enclave_store_pin_image(struct dcms_store_tx *tx, const char *name,
                                      const char *sha_hex, const char *now, const char *by,
                                      char *pinned, size_t cap,
                                      struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/*
 * Stores one metrics sample of the workload `ref` of enclave `id`: the
 * latest in the row (`latest_json`) and a history row, pruned to the last
 * ENCLAVE_HISTORY_MAX. *stored false when the row no longer names `ref`.
 */
enum dcms_err enclave_store_put_sample(struct dcms_store_tx *tx, const char *id, const char *ref,
                                       const char *now, const char *latest_json,
                                       const struct dcms_enclave_probe *pr, bool *stored,
                                       struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* The history of enclave `id`, newest first: at, then the probe's counters, then notice. */
enum dcms_err enclave_store_samples(struct dcms_store_tx *tx, const char *id,
                                    struct dcms_store_rows **rows,
                                    struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/*
 * id, status, runtime_ref, contract_id, contract_hold of the running / suspended (and with
 * `all`, initializing) enclaves of `backend`, and of the terminated ones whose workload the
 * contract's end has still to stop (contract_hold "terminated").
 */
enum dcms_err enclave_store_active(struct dcms_store_tx *tx, const char *backend, const char *owner,
                                   bool all, struct dcms_store_rows **rows,
                                   struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* ids of node `node`'s initializing, running or suspended enclaves created at or before the time.
 */
enum dcms_err enclave_store_of_node(struct dcms_store_tx *tx, const char *node,
                                    const char *created_before, struct dcms_store_rows **rows,
                                    struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* id, status, contract_hold of every enclave bound to `contract_id`. */
enum dcms_err enclave_store_of_contract(struct dcms_store_tx *tx, const char *contract_id,
                                        struct dcms_store_rows **rows,
                                        struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* ---- the service (enclaves.c) ---- */

#define ENCLAVE_LOCK_STRIPES 64
#define ENCLAVE_HISTORY_MAX 60
#define ENCLAVE_NONCE_LEN 32

struct dcms_periodic;

struct enclave_gauge {
    char id[DCMS_UUID_STRLEN];
    char status[16];
    struct dcms_enclave_probe probe;
};

/* An image file's measurement, valid while stat() says the same of the file (image_cache). */
#define ENCLAVE_IMAGE_CACHE 16
struct enclave_image_meas {
    char name[256];
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime, ctime;
    unsigned char sha[DCMS_ATTEST_SHA384_LEN];
};

struct dcms_enclaves {
    struct dcms_app *app;
    struct dcms_enclave_backend *backend;
    char images_dir[1024];
    struct enclave_limits limits;
    unsigned reconcile_ms, metrics_interval_ms;
    /* Operations on one enclave are serialized in this process (stripe by id). */
    pthread_mutex_t locks[ENCLAVE_LOCK_STRIPES];
    /* The background jobs (enclaves_reconcile.c); NULL when their interval is 0. */
    struct dcms_periodic *reconcile_job, *metrics_job;
    pthread_mutex_t pass_mu; /* one reconcile / metrics pass at a time */
    /* Last sampled gauges, for /metrics (guarded by gauges_mu). */
    pthread_mutex_t gauges_mu;
    struct enclave_gauge *gauges;
    size_t ngauges;
    unsigned long long reconcile_runs, reconcile_failed;
    /* Open sessions (enclaves_session.c), guarded by sessions_mu. */
    pthread_mutex_t sessions_mu;
    struct dcms_enclave_session *sessions;
    /* Measured images (enclave_image_measure), guarded by images_mu; round robin. */
    pthread_mutex_t images_mu;
    struct enclave_image_meas images[ENCLAVE_IMAGE_CACHE];
    unsigned nimages, next_image;
};

/* Who is calling, and where errors go. */
struct enclave_call {
    struct dcms_enclaves *en;
    const struct dcms_principal *p; /* NULL: the system (reconcile) */
    const char *client_ip, *request_id;
    struct dcms_errinfo *ei;
    /* Where a refusal on compatibility (422) leaves its report (the caller owns it); NULL:
     * nowhere. */
    json_t **refusal;
};

struct enclave_create_in {
    const char *name;        /* NULL: missing (the decoder reported it) */
    const char *contract_id; /* NULL: none */
    struct enclave_config config;
};

struct enclave_patch_in {
    const char *name;        /* NULL: unchanged */
    bool has_contract;       /* contract_id given (NULL value unbinds) */
    const char *contract_id; /* */
    bool has_net, has_sec;   /* which policies are replaced */
    struct enclave_netpol net;
    struct enclave_secpol sec;
    const char *if_match; /* the If-Match the client sent, or NULL (dcms/etag.h) */
};

struct enclave_list_in {
    const char *status, *contract_id, *provider_id, *backend, *cursor;
    int64_t limit;
};

enum dcms_err enclave_create(const struct enclave_call *c, const struct enclave_create_in *in,
                             struct enclave_rec *out) DCMS_MUST_CHECK;
enum dcms_err enclave_get(const struct enclave_call *c, const char *id,
                          struct enclave_rec *out) DCMS_MUST_CHECK;
/* A page of the enclaves the caller may see (limit + 1 rows: see dcms_store_rows_page). */
enum dcms_err enclave_list(const struct enclave_call *c, const struct enclave_list_in *in,
                           struct dcms_store_rows **out) DCMS_MUST_CHECK;
enum dcms_err enclave_patch(const struct enclave_call *c, const char *id,
                            const struct enclave_patch_in *in,
                            struct enclave_rec *out) DCMS_MUST_CHECK;
/* suspend, resume, terminate, attest (reason: optional note for the audit and status). */
enum dcms_err enclave_act(const struct enclave_call *c, const char *id, enum enclave_event ev,
                          const char *reason, struct enclave_rec *out) DCMS_MUST_CHECK;
/* Results that are reports rather than the enclave (metrics, compatibility) are JSON the caller
 * owns. */
enum dcms_err enclave_metrics(const struct enclave_call *c, const char *id,
                              json_t **out) DCMS_MUST_CHECK;
enum dcms_err enclave_compatibility(const struct enclave_call *c, const char *id,
                                    const char *contract_id, json_t **out) DCMS_MUST_CHECK;

/*
 * What a transition changes besides the status. NULL members keep the
 * row's value (set_reason / set_hold write even NULL). The runtime (ref,
 * pid) stays on record after the workload is gone: it says what ran.
 */
struct enclave_change {
    const char *reason;
    bool set_reason;
    const char *hold; /* contract_hold */
    bool set_hold;
    const char *attestation; /* JSON text */
    const char *attested_at;
    const char *ref, *pid, *started_at;
    const char *document; /* base64 attestation document to keep as the last one, or NULL */
};

/*
 * In `tx`: re-reads enclave `id`, checks the transition `ev` for `who`
 * (409 naming the state otherwise), applies `ch`, writes (412 when the row
 * moved), audits `action` with `details` (stolen; "from"/"to" added) and,
 * when `attest_details` (stolen) is given, an enclave.attest event first.
 */
enum dcms_err enclave_apply_transition(const struct enclave_call *c, struct dcms_store_tx *tx,
                                       const char *id, enum enclave_event ev, unsigned who,
                                       const struct enclave_change *ch, const char *action,
                                       enum dcms_audit_outcome outcome, json_t *details,
                                       json_t *attest_details) DCMS_MUST_CHECK;
/* The same in a write transaction of its own; *out gets the new row when non-NULL. */
enum dcms_err enclave_commit_transition(const struct enclave_call *c, const char *id,
                                        enum enclave_event ev, unsigned who,
                                        const struct enclave_change *ch, const char *action,
                                        enum dcms_audit_outcome outcome, json_t *details,
                                        json_t *attest_details,
                                        struct enclave_rec *out) DCMS_MUST_CHECK;
struct enclave_verdict;
/*
 * After an attestation `v` of enclave `r`: transition `ev` with the new
 * report when it verified (base's changes included, `details` stolen);
 * otherwise the workload is terminated and the enclave Failed with the
 * reason, as the system.
 */
enum dcms_err enclave_settle_attestation(const struct enclave_call *c, const struct enclave_row *r,
                                         enum enclave_event ev, unsigned who,
                                         struct enclave_verdict *v,
                                         const struct enclave_change *base, const char *action,
                                         json_t *details, struct enclave_rec *out) DCMS_MUST_CHECK;

/*
 * The system's side (reconcile): moves enclave `id` to Failed with `reason`
 * if it is still in `expect_status` with `expect_ref`, terminating the
 * workload. DCMS_OK also when nothing had to change.
 */
enum dcms_err enclave_fail_if(struct dcms_enclaves *en, const char *id, const char *expect_ref,
                              const char *reason, struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* ---- nodes (enclaves_nodes.c): ownership across the nodes of one store ---- */

/*
 * The lost-node listener (dcms/nodes.h) the service registers at open:
 * every enclave node `node_id` still ran, created before `last_seen_us`,
 * moves to Lost, audited (enclave.lost) as the system.
 */
enum dcms_err enclave_node_lost(void *ctx, const char *node_id, int64_t last_seen_us,
                                struct dcms_errinfo *ei);
/*
 * Whether enclave `id` runs on another node: true with that node's URL in
 * `url` when it is alive there (the caller forwards the request), else
 * false (the caller serves it here: not found, ours, or its node is gone).
 */
bool enclave_elsewhere(struct dcms_enclaves *en, const char *id, char url[DCMS_NODE_URL_MAX]);

pthread_mutex_t *enclave_lock_of(struct dcms_enclaves *en, const char *id);

struct enclave_row;
/*
 * The one resource-level decision for enclave `r` and `action`
 * ("enclaves:read", "enclaves:manage", ...). A read refusal is answered
 * 404 (and audited, rate-limited); the system (c->p NULL) may do anything.
 */
enum dcms_err enclave_authorize(const struct enclave_call *c, const struct enclave_row *r,
                                const char *action) DCMS_MUST_CHECK;

struct dcms_contract_security;
/*
 * Reads contract `contract_id` for an enclave of the caller into `*cs`.
 * DCMS_ERR_NOT_FOUND (nothing recorded in c->ei) when there is no such
 * contract or when the caller may not read it (contracts:read on the
 * contract, the one decision point), so another party's contract and an
 * unknown id answer alike; that refusal is audited (rate-limited), so call
 * it outside any store transaction. Other errors are recorded in c->ei.
 */
enum dcms_err enclave_contract_read(const struct enclave_call *c, const char *contract_id,
                                    struct dcms_contract_security *cs) DCMS_MUST_CHECK;

/*
 * Where the workload image named `image` lives: DCMS_ENCLAVE_IMAGES_DIR
 * joined with the name. The one place that decides which files are images.
 */
void enclave_image_path(const struct dcms_enclaves *en, const char *image, char *out, size_t cap);

/*
 * True when `image` names a workload image (a regular file under
 * DCMS_ENCLAVE_IMAGES_DIR), with its SHA-384 in `sha_hex` (lowercase hex).
 */
bool enclave_image_measure(struct dcms_enclaves *en, const char *image,
                           char sha_hex[2 * DCMS_ATTEST_SHA384_LEN + 1]);
/*
 * Starts the workload of the new (Initializing) enclave `id` and attests it;
 * the enclave's lock must be held. *out gets the settled row (running, or
 * failed with the reason).
 */
enum dcms_err enclave_start_and_attest(const struct enclave_call *c, const char *id,
                                       struct enclave_rec *out) DCMS_MUST_CHECK;

/* ---- response and request codecs (enclaves_json.c) ---- */

json_t *enclave_row_to_json(const struct enclave_row *r);
/* A list page ({enclaves, next_cursor}) of enclave_list's rows, which it frees. NULL on OOM. */
json_t *enclave_list_to_json(struct dcms_store_rows *rows, int64_t limit);
/* Stored JSON text back to a value; JSON null when absent or unreadable. */
json_t *enclave_json_text(const char *s);
/* A string, or JSON null for NULL. */
json_t *enclave_str_or_null(const char *s);
json_t *enclave_probe_json(const struct dcms_enclave_probe *pr, const char *at);
/*
 * Request bodies to the service's inputs. Every problem goes to `ei` with
 * its path; the caller still calls the service, which adds its own, so all
 * come back at once. The strings point into `body`.
 */
void enclave_create_in_from_json(const json_t *body, const struct enclave_limits *limits,
                                 struct enclave_create_in *in, struct dcms_errinfo *ei);
void enclave_patch_in_from_json(const json_t *body, struct enclave_patch_in *in,
                                struct dcms_errinfo *ei);
/* {"reason": "..."} of an action; NULL body: no reason. */
void enclave_reason_from_json(const json_t *body, const char **reason, struct dcms_errinfo *ei);
/* Checks the list filters (query parameters) of `in`. */
void enclave_list_in_check(const struct enclave_list_in *in, struct dcms_errinfo *ei);

/* ---- compatibility (enclaves_compat.c) ---- */

struct dcms_contract_security;
/*
 * Contract `cs` requirement by requirement against an enclave's
 * configuration, its status, its last attestation and the contract it is
 * bound to; *compatible when every one holds. A NULL `status` evaluates the
 * configuration alone (what creation and binding check: no enclave_status,
 * no attestation_freshness). A new array; NULL on OOM.
 */
json_t *enclave_compat_evaluate(const struct dcms_contract_security *cs, const char *status,
                                const struct enclave_config *cfg, const char *attested_at,
                                bool attestation_verified, const char *bound_contract,
                                bool *compatible);
/*
 * The gate of creation and binding: DCMS_OK when `cfg`, bound to `cs`,
 * meets every configuration requirement. Otherwise DCMS_ERR_VALIDATION
 * with one contract_id problem per failing requirement, and the report
 * (the compatibility route's object, enclave_id null at creation) left
 * in *c->refusal when c->refusal is set.
 */
enum dcms_err enclave_compat_gate(const struct enclave_call *c, const char *enclave_id,
                                  const struct dcms_contract_security *cs,
                                  const struct enclave_config *cfg) DCMS_MUST_CHECK;

/* ---- attestation (enclaves_attest.c) ---- */

struct enclave_verdict {
    bool verified;
    bool report_valid_syntax; /* a document came back (verified or not) */
    char reason[256];
    json_t *attestation; /* {verified, reason, verified_at, nonce, verifier, report} */
};

/*
 * Asks the workload of `r` for a document bound to a fresh nonce and
 * verifies it against the enclave's expectations. *v gets the verdict
 * (v->attestation owned by the caller) unless an error comes back (out of
 * memory, a crypto failure): then there is no verdict.
 */
enum dcms_err enclave_attest_now(struct dcms_enclaves *en, const struct enclave_row *r,
                                 struct enclave_verdict *v,
                                 struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/*
 * Verifies `doc` against what enclave `r` (configuration `cfg`) must show,
 * with `nonce`; `refuse_debug` refuses a debug-mode document even when the
 * policy allows debug mode. Fills *v (verified, reason,
 * report_valid_syntax; not attestation) and *rep (release it). An error
 * means no verdict (out of memory, a crypto failure).
 */
enum dcms_err enclave_attest_check(struct dcms_enclaves *en, const struct enclave_row *r,
                                   const struct enclave_config *cfg, const unsigned char *doc,
                                   size_t doc_len, const unsigned char *nonce, size_t nonce_len,
                                   bool refuse_debug, struct dcms_attest_report *rep,
                                   struct enclave_verdict *v,
                                   struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* ---- sessions (enclaves_session.c) ---- */

/* True while a session is open on enclave `id`. */
bool enclave_session_busy(struct dcms_enclaves *en, const char *id);

/* What the audit log keeps of an attestation (not the certificates). New reference. */
json_t *enclave_attest_audit_details(const struct enclave_verdict *v, const struct enclave_row *r);

/* ---- evidence for the parties (enclaves_evidence.c) ---- */

/*
 * Keeps `document` (base64) and `attestation` (JSON text of the verdict) as
 * the last attestation of enclave `id`, inside the caller's transaction.
 */
enum dcms_err enclave_store_put_attestation(struct dcms_store_tx *tx, const char *id,
                                            const char *now, const char *document,
                                            const char *attestation,
                                            struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* ---- metrics (enclaves_metrics.c) ---- */

/* Stores one metrics sample (latest in the row, bounded history). */
enum dcms_err enclave_store_sample(struct dcms_enclaves *en, const char *id,
                                   const struct dcms_enclave_probe *pr,
                                   struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* ---- the contract governs its enclaves (enclaves_govern.c) ---- */

struct dcms_contract_change;
/* Registers / removes the contract transition listener (dcms/contracts.h). */
enum dcms_err enclave_govern_start(struct dcms_enclaves *en,
                                   struct dcms_errinfo *ei) DCMS_MUST_CHECK;
void enclave_govern_stop(struct dcms_enclaves *en);
/*
 * Makes enclave `id` and its workload follow its contract, under the
 * enclave's lock: a contract terminated or expired terminates it, one not
 * Active suspends it, one Active again resumes what it had suspended (if
 * it still meets the contract); a row recorded suspended or terminated
 * whose workload still runs here is frozen or stopped. `startup`: this
 * node just started (a workload it does not know is gone); `change`: the
 * contract change being applied, or NULL (reconcile). DCMS_OK when there
 * was nothing to do.
 */
enum dcms_err enclave_govern_enforce(struct dcms_enclaves *en, const char *id, bool startup,
                                     const struct dcms_contract_change *change,
                                     struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/*
 * May enclave `r` be resumed? Its contract (if bound) must be Active and
 * met by its configuration: otherwise the gate's 422 (enclave_compat_gate).
 */
enum dcms_err enclave_govern_resume_check(const struct enclave_call *c,
                                          const struct enclave_row *r) DCMS_MUST_CHECK;

/* ---- background jobs (enclaves_reconcile.c) ---- */

/* Starts the reconcile and metrics jobs (those whose interval is not 0). */
enum dcms_err enclave_jobs_start(struct dcms_enclaves *en, struct dcms_errinfo *ei);
void enclave_jobs_stop(struct dcms_enclaves *en);

#endif
