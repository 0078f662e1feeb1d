/*
 * Inside the training service: the request codec (training_json.c), the
 * store queries (training_store.c), the service (training.c), the runner
 * (training_runner.c) and the handlers (training_http.c, the only file that
 * sees the HTTP layer).
 */
#ifndef DCMS_TRAINING_INT_H
#define DCMS_TRAINING_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "dcms/contracts.h"
#include "dcms/err.h"
#include "dcms/training.h"
#include "dcms/uuid.h"

struct dcms_app;
struct dcms_principal;
struct dcms_store_tx;
struct dcms_store_rows;

#define TR_MAX_DATASETS 16
#define TR_MAX_WORKERS 8
#define TR_DEFAULT_MAX_MODEL_BYTES (64 * 1024 * 1024)

/* ---- the request (training_json.c) ---- */

struct tr_request {
    const char *datasets[TR_MAX_DATASETS]; /* point into `body` */
    size_t ndatasets;
    const char *model; /* "logistic_regression" | "mlp" */
    json_t *config;    /* the trainer's config (no metadata yet); the caller's reference */
    /* dp: DP-SGD asked for, with sigma (dp.noise_multiplier) or a target epsilon (0: none) */
    bool dp;
    double dp_sigma, dp_target_epsilon, dp_max_grad_norm;
};

/*
 * Decodes a POST .../trainings body: every problem goes to `ei` with its
 * path, all at once. On success out->config is the trainer's configuration
 * (training/trainer_json.c takes it as is).
 */
enum dcms_err tr_request_from_json(const json_t *body, struct tr_request *out,
                                   struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* ---- the store (training_store.c) ---- */

enum tr_col {
    TC_ID,
    TC_CONTRACT,
    TC_CONSUMER,
    TC_PROVIDER,
    TC_CREATED_BY,
    TC_REQUEST,
    TC_MODEL_TYPE,
    TC_STATE,
    TC_REASON_CODE,
    TC_REASON,
    TC_ENCLAVE,
    TC_RELEASED,
    TC_PROGRESS,
    TC_CREATED_AT,
    TC_PROVISIONING_AT,
    TC_ATTESTING_AT,
    TC_RUNNING_AT,
    TC_VALIDATING_AT,
    TC_FINISHED_AT,
    TC_DEADLINE_AT,
    TC_MODEL_DEK,
    TC_MODEL_SIZE,
    TC_MODEL_SHA,
    TC_METRICS,
    TC_RESULT_ATT,
    TC_HASHES,
    TC_UPDATED_AT,
    TC_VERSION,
    TC_KEY_RELEASE_EVENT,
    TC__COUNT
};

/* A job's row as the store returns it (rows[0]); DCMS_ERR_NOT_FOUND when absent. */
enum dcms_err tr_store_load(struct dcms_store_tx *tx, const char *id, struct dcms_store_rows **rows,
                            struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* Job row `i` as the API shows it. New reference; NULL on OOM. */
json_t *tr_job_json(const struct dcms_store_rows *rows, size_t i);

/*
 * Takes one run of contract `contract_id` against `max_runs`: *taken false
 * when every run is used. Atomic on both backends (one conditional upsert).
 */
enum dcms_err tr_store_take_run(struct dcms_store_tx *tx, const char *contract_id, int64_t max_runs,
                                bool *taken, struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * Gives back the run job `id` took, when no key was ever released to it
 * (data_released still 0): *given says whether a run came back. Called in
 * the transaction that moves the job to failed or cancelled, once per job.
 */
enum dcms_err tr_store_give_back_run(struct dcms_store_tx *tx, const char *id, bool *given,
                                     struct dcms_errinfo *ei) DCMS_MUST_CHECK;

struct tr_new_job {
    const char *id, *contract_id, *consumer_id, *provider_id, *created_by, *request_json,
        *model_type, *now, *deadline_at;
};
enum dcms_err tr_store_insert(struct dcms_store_tx *tx, const struct tr_new_job *j,
                              struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* Appends event `type` with `data` (JSON text) to job `id`; *seq_out (may be NULL) its seq. */
enum dcms_err tr_store_event(struct dcms_store_tx *tx, const char *id, const char *type,
                             const char *data, const char *now, int64_t *seq_out,
                             struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* Events of job `id` with seq > after, oldest first, at most `limit`: seq, at, type, data. */
enum dcms_err tr_store_events(struct dcms_store_tx *tx, const char *id, int64_t after,
                              int64_t limit, struct dcms_store_rows **rows,
                              struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* A page of the jobs of a contract (id > cursor), limit rows. */
enum dcms_err tr_store_list(struct dcms_store_tx *tx, const char *contract_id, const char *cursor,
                            int64_t limit, struct dcms_store_rows **rows,
                            struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * What a state change writes besides the state. NULL members keep the
 * row's value.
 */
struct tr_change {
    const char *reason_code, *reason;
    const char *enclave_id;
    bool data_released;
    const char *deadline_at;
    const char *progress;
    const char *model_dek_id, *model_sha256, *metrics, *result_attestation, *dataset_hashes;
    int64_t model_size; /* -1: keep */
};

/*
 * Moves job `id` from `from` (NULL: any non-final state) to `to` in `tx`,
 * with the state's timestamp; *moved false (nothing written) when the job
 * was not in that state.
 */
enum dcms_err tr_store_move(struct dcms_store_tx *tx, const char *id, const char *from,
                            const char *to, const struct tr_change *ch, const char *now,
                            bool *moved, struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* The last progress of job `id` (no state change). */
/* Records the audit event of job `id`'s key release (its receipt). */
enum dcms_err tr_store_key_release(struct dcms_store_tx *tx, const char *id, const char *event_id,
                                   struct dcms_errinfo *ei) DCMS_MUST_CHECK;
enum dcms_err tr_store_progress(struct dcms_store_tx *tx, const char *id, const char *progress,
                                const char *now, struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* The id of the oldest queued job, "" when none. */
enum dcms_err tr_store_next_queued(struct dcms_store_tx *tx, char id[DCMS_UUID_STRLEN],
                                   struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* id, state, enclave_id of jobs in `state` ("" any non-final in-flight state) of contract `cid`
 * (NULL: any), at most `limit`. */
enum dcms_err tr_store_inflight(struct dcms_store_tx *tx, const char *cid, int64_t limit,
                                struct dcms_store_rows **rows,
                                struct dcms_errinfo *ei) DCMS_MUST_CHECK;

enum dcms_err tr_store_model_put(struct dcms_store_tx *tx, const char *job_id, const char *dek_id,
                                 const unsigned char *nonce, const unsigned char *ct, size_t ct_len,
                                 struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* dek_id, hex(nonce), hex(ct) of job `job_id`'s model; DCMS_ERR_NOT_FOUND when absent. */
enum dcms_err tr_store_model_get(struct dcms_store_tx *tx, const char *job_id,
                                 struct dcms_store_rows **rows,
                                 struct dcms_errinfo *ei) DCMS_MUST_CHECK;
enum dcms_err tr_store_model_delete(struct dcms_store_tx *tx, const char *job_id,
                                    struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* ---- the service (training.c) ---- */

/* The running part: workers, the jobs they run, the contract listener. */
struct tr_slot {
    struct dcms_training *owner;
    char id[DCMS_UUID_STRLEN]; /* "" when the slot is free */
    bool cancel;
};

struct dcms_training {
    struct dcms_app *app;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stopping;
    unsigned nworkers;
    pthread_t workers[TR_MAX_WORKERS];
    struct tr_slot slots[TR_MAX_WORKERS]; /* the job each worker runs */
    bool listening;
    /* the event streams (training_stream.c), under mu */
    struct tr_stream *streams;
    unsigned long nstreams;
    pthread_t hub;
    pthread_cond_t hub_cv;
    bool hub_running;
};

/* Who is calling, and where errors go. */
struct tr_call {
    struct dcms_app *app;
    const struct dcms_principal *p;
    struct dcms_errinfo *ei;
    const char *request_id, *client_ip;
};

/* Each returns a new reference in *out (a job, a page, ...). */
enum dcms_err tr_start(const struct tr_call *c, const char *contract_id,
                       const struct tr_request *rq, json_t **out) DCMS_MUST_CHECK;
enum dcms_err tr_get(const struct tr_call *c, const char *id, json_t **out) DCMS_MUST_CHECK;
enum dcms_err tr_list(const struct tr_call *c, const char *contract_id, const char *cursor,
                      int64_t limit, json_t **out) DCMS_MUST_CHECK;
enum dcms_err tr_cancel(const struct tr_call *c, const char *id, json_t **out) DCMS_MUST_CHECK;
/*
 * The model file (malloc'd, the caller frees it with dcms_free_wiped semantics);
 * `event_id` (DCMS_UUID_STRLEN bytes) receives the id of its training.model_download event.
 */
enum dcms_err tr_model(const struct tr_call *c, const char *id, unsigned char **model, size_t *len,
                       char *event_id) DCMS_MUST_CHECK;
/* Loads job `id` and decides `action` on it (404 for who may not read its contract). */
enum dcms_err tr_load_authorized(const struct tr_call *c, const char *id,
                                 const char *action) DCMS_MUST_CHECK;

/* ---- the event stream (training_stream.c) ---- */

struct tr_stream;

/*
 * Opens the event stream of job `id` for the caller, resuming after event
 * `after` (0: from the first): 404 as tr_get, 429 (DCMS_ERR_RATE_LIMITED)
 * past DCMS_TRAINING_EVENT_STREAMS in total or
 * DCMS_TRAINING_EVENT_STREAMS_PER_IDENTITY for the caller. The caller owns
 * *out until it hands it to tr_stream_release.
 */
enum dcms_err tr_stream_open(const struct tr_call *c, const char *id, int64_t after,
                             struct tr_stream **out) DCMS_MUST_CHECK;
/*
 * Copies at most `max` bytes of the stream to `buf` (*n of them); *n == 0
 * means nothing now: `wake(wake_arg)` is called (under the service's lock,
 * from any thread) when there may be more. True when the stream has ended
 * (everything sent, the job over, or the store failing: the client resumes
 * with Last-Event-ID). Never called concurrently for one stream.
 */
bool tr_stream_read(struct tr_stream *s, char *buf, size_t max, size_t *n, void (*wake)(void *),
                    void *wake_arg);
/* Closes `s`: no wake comes for it once this has returned. */
void tr_stream_release(struct tr_stream *s);
/* Wakes the streams of job `id` (NULL: all) after a change to it was committed. */
void tr_notify(struct dcms_training *t, const char *id);
/* The thread that wakes every stream once a second; stopped before the service closes. */
enum dcms_err tr_hub_start(struct dcms_training *t, struct dcms_errinfo *ei) DCMS_MUST_CHECK;
void tr_hub_stop(struct dcms_training *t);

/*
 * The checks that gate any data movement, against the contract as it is
 * now: Active (not expired), "train" permitted, the model type allowed,
 * every dataset in the scope and ready. On failure *code names the check
 * (a reason code) and `ei` says why; *terms (when not NULL) receives the
 * contract's terms on success (the caller releases terms->terms).
 */
enum dcms_err tr_check_terms(struct dcms_app *app, const char *contract_id, const char *model,
                             const char *const *datasets, size_t n, const char **code,
                             struct dcms_contract_terms *terms,
                             struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * The caller check again, for the key release: identity `identity_id`
 * (the job's starter) still exists, is active, is a member of the consumer
 * side of contract `cs` with the consumer role, and may "training:run" on
 * it (policies included). DCMS_ERR_FORBIDDEN with the reason in `ei`
 * otherwise; store errors as they come.
 */
enum dcms_err tr_check_member(struct dcms_app *app, const char *identity_id,
                              const struct dcms_contract_security *cs,
                              struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * Moves job `id` to `to` (from `from`, NULL: any non-final state) with its
 * event and its audit record ("training.<to>", actor `actor` or the system)
 * in one transaction. *moved false when the job had left `from`.
 */
enum dcms_err tr_transition(struct dcms_app *app, const char *id, const char *from, const char *to,
                            const struct tr_change *ch, const char *actor, const char *request_id,
                            json_t *details, bool *moved, struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * An audit record of job `id` with no state change (model download);
 * `event_id` (DCMS_UUID_STRLEN bytes, may be NULL) receives its id.
 */
enum dcms_err tr_audit(struct dcms_app *app, const char *actor, const char *client_ip,
                       const char *request_id, const char *action, const char *id, json_t *details,
                       char *event_id, struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* Wakes a worker (a job was queued). */
void tr_kick(struct dcms_training *t);
/* Marks job `id` cancelled for the worker running it here (no-op when none). */
void tr_signal_cancel(struct dcms_training *t, const char *id);

/*
 * Seals `model` under a new DEK (purpose "model", owner the job) and stores
 * it in `tx`; dek_id receives the DEK's id.
 */
enum dcms_err tr_model_seal(struct dcms_app *app, struct dcms_store_tx *tx, const char *job_id,
                            const unsigned char *model, size_t len, char dek_id[DCMS_UUID_STRLEN],
                            struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* The state change inside the caller's write transaction (see tr_transition). */
enum dcms_err tr_transition_tx(struct dcms_app *app, struct dcms_store_tx *tx, const char *id,
                               const char *from, const char *to, const struct tr_change *ch,
                               const char *actor, const char *request_id, json_t *details,
                               bool *moved, struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* ---- differential privacy (training_privacy.c) ---- */

struct dcms_audit_who;

/* A DP run's privacy record, as the job (`privacy`) and the model's metadata show it. */
struct tr_dp {
    bool on;                        /* a DP-SGD run */
    bool budgeted;                  /* reserved under the contract's terms.privacy */
    double sigma, max_grad_norm, q; /* the noise multiplier, C, the sampling rate */
    uint64_t steps, n_train;        /* noisy steps; training rows (not recorded) */
    double delta, epsilon;          /* the run's own (epsilon, delta); budgeted runs only */
};

/*
 * The schedule the trainer follows for the validated request config
 * `config` on `rows` data rows (the datasets' rows added up: the trainer
 * concatenates them): N = the rows its split trains on, q = B / N and
 * steps = ceil(N / B) × epochs, B = min(batch_size, N), computed by the
 * trainer's own dcms_trainer_train_rows and dcms_trainer_batching.
 */
void tr_dp_schedule(const json_t *config, uint64_t rows, uint64_t *n_train, double *q,
                    uint64_t *steps);
/* The rows of the request's datasets, added up. */
enum dcms_err tr_dp_rows(struct dcms_app *app, const struct tr_request *rq, uint64_t *rows,
                         struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/*
 * In the start's write transaction `tx`: reads the contract's terms.privacy
 * and, when it is there, requires `dp` (422, field "dp"), refuses a delta
 * not below 1/N, turns a target epsilon into the smallest sigma that meets
 * it (the run's own epsilon) and reserves the run's epsilon as run `job_id`
 * (dcms_privacy_budget_reserve: 422, field "dp", naming the remaining
 * budget, when it does not fit). Without the term a `dp` run is recorded
 * but not budgeted. *out is the run's record (out->on false: not DP).
 */
enum dcms_err tr_dp_reserve(struct dcms_app *app, struct dcms_store_tx *tx,
                            const struct dcms_audit_who *who, const char *contract_id,
                            const char *job_id, const struct tr_request *rq, uint64_t rows,
                            struct tr_dp *out, struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* {sigma, max_grad_norm, q, steps, delta, epsilon} (null when not DP). New reference. */
json_t *tr_dp_json(const struct tr_dp *dp);
/* The record back from tr_dp_json's object; false when `j` is not one. */
bool tr_dp_from_json(const json_t *j, struct tr_dp *out);

/* ---- the runner (training_runner.c) ---- */

/* Runs job `id` (claimed: provisioning) to its end; `slot` carries the cancel flag. */
void tr_run_job(struct dcms_training *t, const char *id, struct tr_slot *slot);

/* Deadlines of each state, in seconds, from the configuration. */
int64_t tr_timeout_s(const struct dcms_app *app, const char *state);

/* ---- nodes (training_nodes.c): the node that runs a job, migration 0021 ---- */

/* Records `node` (NULL: none) as the node running job `id`, in the claim's transaction. */
enum dcms_err tr_store_set_owner(struct dcms_store_tx *tx, const char *id, const char *node,
                                 struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/*
 * id, state, enclave_id, data_released of the jobs in flight past queued
 * that were claimed at or before `before` by node `lost` ("" or NULL: any)
 * or, with `mine`, by `mine` or by no recorded node.
 */
enum dcms_err tr_store_of_node(struct dcms_store_tx *tx, const char *mine, const char *lost,
                               const char *before, struct dcms_store_rows **rows,
                               struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* Back to queued, if still in `from` on `node` with no data released (*moved says). */
enum dcms_err tr_store_requeue(struct dcms_store_tx *tx, const char *id, const char *from,
                               const char *node, const char *now, const char *reason_code,
                               const char *reason, const char *deadline, bool *moved,
                               struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/*
 * The lost-node listener (dcms/nodes.h): each job node `node_id` ran moves
 * back to queued when no data was released to it (training.requeued),
 * otherwise to failed with reason_code node_lost; audited as the system.
 */
enum dcms_err tr_node_lost(void *ctx, const char *node_id, int64_t last_seen_us,
                           struct dcms_errinfo *ei);

#endif
