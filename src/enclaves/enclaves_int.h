/*
 * Inside the enclave service: the model and its validation
 * (enclaves_model.c, pure), the state machine (enclaves_model.c), the
 * service (enclaves.c), the store queries (enclaves_store.c), the handlers
 * (enclaves_http.c) and the reconcile / metrics thread
 * (enclaves_reconcile.c).
 */
#ifndef DCMS_ENCLAVES_INT_H
#define DCMS_ENCLAVES_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "dcms/attest.h"
#include "dcms/enclaves.h"
#include "dcms/http.h"
#include "dcms/iam.h"
#include "dcms/uuid.h"
#include "enclaves/backend.h"

struct dcms_store_tx;

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

/*
 * Decodes and validates a configuration object. Problems go to `ei` with
 * field paths under `prefix` ("configuration."), all at once. `limits`
 * NULL skips the host limits (re-reading a stored configuration).
 */
void enclave_config_from_json(const json_t *o, const char *prefix,
                              const struct enclave_limits *limits, struct enclave_config *out,
                              struct dcms_errinfo *ei);
/* A network or security policy alone (PATCH). Field paths under `prefix`. */
void enclave_netpol_from_json(const json_t *o, const char *prefix, struct enclave_netpol *out,
                              struct dcms_errinfo *ei);
void enclave_secpol_from_json(const json_t *o, const char *prefix, struct enclave_secpol *out,
                              struct dcms_errinfo *ei);
void enclave_netpol_default(struct enclave_netpol *n);
void enclave_secpol_default(struct enclave_secpol *s);

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

/* ---- the service (enclaves.c) ---- */

#define ENCLAVE_LOCK_STRIPES 64
#define ENCLAVE_HISTORY_MAX 60
#define ENCLAVE_NONCE_LEN 32

struct enclave_gauge {
    char id[DCMS_UUID_STRLEN];
    char status[16];
    struct dcms_enclave_probe probe;
};

struct dcms_enclaves {
    struct dcms_app *app;
    struct dcms_enclave_backend *backend;
    char images_dir[1024];
    struct enclave_limits limits;
    unsigned reconcile_ms, metrics_interval_ms;
    /* Operations on one enclave are serialized in this process (stripe by id). */
    pthread_mutex_t locks[ENCLAVE_LOCK_STRIPES];
    /* The reconcile / metrics thread. */
    pthread_t thread;
    bool thread_started, stopping;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* Last sampled gauges, for /metrics (guarded by gauges_mu). */
    pthread_mutex_t gauges_mu;
    struct enclave_gauge *gauges;
    size_t ngauges;
    unsigned long long reconcile_runs, reconcile_failed;
};

/* Who is calling, and where errors go. */
struct enclave_call {
    struct dcms_enclaves *en;
    const struct dcms_principal *p; /* NULL: the system (reconcile) */
    const char *client_ip, *request_id;
    struct dcms_errinfo *ei;
};

struct enclave_create_in {
    const char *name;
    const char *contract_id; /* NULL: none */
    const json_t *configuration;
};

struct enclave_patch_in {
    const char *name;             /* NULL: unchanged */
    bool has_contract;            /* contract_id given (NULL value unbinds) */
    const char *contract_id;      /* */
    const json_t *network_policy; /* NULL: unchanged */
    const json_t *security_policy;
    const char *if_match; /* the ETag the client saw, or NULL */
};

struct enclave_list_in {
    const char *status, *contract_id, *provider_id, *backend, *cursor;
    int64_t limit;
};

/* Results are JSON objects the caller owns. */
enum dcms_err enclave_create(const struct enclave_call *c, const struct enclave_create_in *in,
                             json_t **out) DCMS_MUST_CHECK;
enum dcms_err enclave_get(const struct enclave_call *c, const char *id,
                          json_t **out) DCMS_MUST_CHECK;
enum dcms_err enclave_list(const struct enclave_call *c, const struct enclave_list_in *in,
                           json_t **out) DCMS_MUST_CHECK;
enum dcms_err enclave_patch(const struct enclave_call *c, const char *id,
                            const struct enclave_patch_in *in, json_t **out) DCMS_MUST_CHECK;
/* suspend, resume, terminate, attest (reason: optional note for the audit and status). */
enum dcms_err enclave_act(const struct enclave_call *c, const char *id, enum enclave_event ev,
                          const char *reason, json_t **out) DCMS_MUST_CHECK;
enum dcms_err enclave_metrics(const struct enclave_call *c, const char *id,
                              json_t **out) DCMS_MUST_CHECK;
enum dcms_err enclave_compatibility(const struct enclave_call *c, const char *id,
                                    const char *contract_id, json_t **out) DCMS_MUST_CHECK;

/*
 * The system's side (reconcile): moves enclave `id` to Failed with `reason`
 * if it is still in `expect_status` with `expect_ref`, terminating the
 * workload. DCMS_OK also when nothing had to change.
 */
enum dcms_err enclave_fail_if(struct dcms_enclaves *en, const char *id, const char *expect_ref,
                              const char *reason, struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* Stores one metrics sample (latest in the row, bounded history). */
enum dcms_err enclave_store_sample(struct dcms_enclaves *en, const char *id,
                                   const struct dcms_enclave_probe *pr,
                                   struct dcms_errinfo *ei) DCMS_MUST_CHECK;

json_t *enclave_probe_json(const struct dcms_enclave_probe *pr, const char *at);

pthread_mutex_t *enclave_lock_of(struct dcms_enclaves *en, const char *id);

/* The reconcile thread (enclaves_reconcile.c). */
enum dcms_err enclave_thread_start(struct dcms_enclaves *en, struct dcms_errinfo *ei);
void enclave_thread_stop(struct dcms_enclaves *en);

#endif
