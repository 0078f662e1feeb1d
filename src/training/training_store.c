/*
 * Every query of the training tables (training_jobs, training_events,
 * training_models, training_run_counts; migration 0017) and the job row's
 * JSON. No query here names another module's table.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dcms/audit.h"
#include "dcms/store.h"
#include "dcms/app.h"
#include "training/training_int.h"

#define COLS                                                                                       \
    "id, contract_id, consumer_id, provider_id, created_by, request, model_type, state, "          \
    "reason_code, reason, enclave_id, data_released, progress, created_at, provisioning_at, "      \
    "attesting_at, running_at, validating_at, finished_at, deadline_at, model_dek_id, "            \
    "model_size, model_sha256, metrics, result_attestation, dataset_hashes, updated_at, version, " \
    "key_release_event_id"

static struct dcms_query q_get =
    DCMS_QUERY("tr_get", "SELECT " COLS " FROM training_jobs WHERE id = $1");
static struct dcms_query q_list =
    DCMS_QUERY("tr_list", "SELECT " COLS " FROM training_jobs WHERE contract_id = $1 AND id > $2 "
                          "ORDER BY id LIMIT $3");
static struct dcms_query q_insert = DCMS_QUERY(
    "tr_insert",
    "INSERT INTO training_jobs (id, contract_id, consumer_id, provider_id, created_by, request, "
    "model_type, state, created_at, deadline_at, updated_at) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued', $8, $9, $8)");
static struct dcms_query q_take_run = DCMS_QUERY(
    "tr_take_run", "INSERT INTO training_run_counts (contract_id, used) VALUES ($1, 1) "
                   "ON CONFLICT (contract_id) DO UPDATE SET used = training_run_counts.used + 1 "
                   "WHERE training_run_counts.used < $2");
/* A run given back: only by a job whose keys were never released (no data moved). */
static struct dcms_query q_give_back_run =
    DCMS_QUERY("tr_give_back_run",
               "UPDATE training_run_counts SET used = used - 1 WHERE used > 0 AND contract_id = "
               "(SELECT contract_id FROM training_jobs WHERE id = $1 AND data_released = 0)");
static struct dcms_query q_event_seq = DCMS_QUERY(
    "tr_event_seq", "SELECT coalesce(max(seq), 0) FROM training_events WHERE job_id = $1");
static struct dcms_query q_event_put = DCMS_QUERY(
    "tr_event_put",
    "INSERT INTO training_events (job_id, seq, at, type, data) VALUES ($1, $2, $3, $4, $5)");
static struct dcms_query q_events =
    DCMS_QUERY("tr_events", "SELECT seq, at, type, data FROM training_events "
                            "WHERE job_id = $1 AND seq > $2 ORDER BY seq LIMIT $3");
static struct dcms_query q_key_release = DCMS_QUERY(
    "tr_key_release", "UPDATE training_jobs SET key_release_event_id = $2 WHERE id = $1");
static struct dcms_query q_progress = DCMS_QUERY(
    "tr_progress", "UPDATE training_jobs SET progress = $2, updated_at = $3 WHERE id = $1");
static struct dcms_query q_next =
    DCMS_QUERY("tr_next", "SELECT id FROM training_jobs WHERE state = 'queued' "
                          "ORDER BY created_at, id LIMIT 1");
static struct dcms_query q_inflight =
    DCMS_QUERY("tr_inflight", "SELECT id, state, enclave_id FROM training_jobs WHERE state IN "
                              "('queued', 'provisioning', 'attesting', 'running', 'validating') "
                              "AND ($1 = '' OR contract_id = $1) ORDER BY id LIMIT $2");
static struct dcms_query q_model_put =
    DCMS_QUERY("tr_model_put",
               "INSERT INTO training_models (job_id, dek_id, nonce, ct) VALUES ($1, $2, $3, $4)");
static struct dcms_query q_model_get = DCMS_QUERY2(
    "tr_model_get", "SELECT dek_id, hex(nonce), hex(ct) FROM training_models WHERE job_id = $1",
    "SELECT dek_id, encode(nonce, 'hex'), encode(ct, 'hex') FROM training_models "
    "WHERE job_id = $1");
static struct dcms_query q_model_delete =
    DCMS_QUERY("tr_model_delete", "DELETE FROM training_models WHERE job_id = $1");

/*
 * One UPDATE per target state: the state's timestamp column is part of the
 * SQL text, never spliced from input. $1 id, $2 from ('' = any non-final),
 * $3 now, then the change's members (NULL keeps the value).
 */
#define MOVE_SQL(to, col)                                                                          \
    "UPDATE training_jobs SET state = '" to "', " col " = $3, updated_at = $3, "                   \
    "version = version + 1, "                                                                      \
    "reason_code = coalesce($4, reason_code), reason = coalesce($5, reason), "                     \
    "enclave_id = coalesce($6, enclave_id), "                                                      \
    "data_released = CASE WHEN $7 = 1 THEN 1 ELSE data_released END, "                             \
    "deadline_at = $8, progress = coalesce($9, progress), "                                        \
    "model_dek_id = coalesce($10, model_dek_id), model_sha256 = coalesce($11, model_sha256), "     \
    "metrics = coalesce($12, metrics), result_attestation = coalesce($13, result_attestation), "   \
    "dataset_hashes = coalesce($14, dataset_hashes), "                                             \
    "model_size = CASE WHEN $15 >= 0 THEN $15 ELSE model_size END "                                \
    "WHERE id = $1 AND ((state = $2) OR ($2 = '' AND state IN ('queued', 'provisioning', "         \
    "'attesting', 'running', 'validating')))"

static struct dcms_query q_move[] = {
    DCMS_QUERY("tr_move_provisioning", MOVE_SQL("provisioning", "provisioning_at")),
    DCMS_QUERY("tr_move_attesting", MOVE_SQL("attesting", "attesting_at")),
    DCMS_QUERY("tr_move_running", MOVE_SQL("running", "running_at")),
    DCMS_QUERY("tr_move_validating", MOVE_SQL("validating", "validating_at")),
    DCMS_QUERY("tr_move_succeeded", MOVE_SQL("succeeded", "finished_at")),
    DCMS_QUERY("tr_move_failed", MOVE_SQL("failed", "finished_at")),
    DCMS_QUERY("tr_move_cancelled", MOVE_SQL("cancelled", "finished_at")),
};
static const char *const move_states[] = {"provisioning", "attesting", "running",  "validating",
                                          "succeeded",    "failed",    "cancelled"};

enum dcms_err tr_store_load(struct dcms_store_tx *tx, const char *id, struct dcms_store_rows **rows,
                            struct dcms_errinfo *ei)
{
    *rows = NULL;
    if (!id || !dcms_uuid_valid(id))
        return dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "training not found");
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(id)};
    enum dcms_err e = dcms_store_exec(tx, &q_get, p, 1, rows, NULL, ei);
    if (!e && dcms_store_rows_count(*rows) != 1)
        e = dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "training not found");
    if (e) {
        dcms_store_rows_free(*rows);
        *rows = NULL;
    }
    return e;
}

static json_t *text_or_null(const struct dcms_store_rows *r, size_t i, size_t col)
{
    const char *s = dcms_store_rows_text(r, i, col);
    return s ? json_string(s) : json_null();
}

static json_t *json_or_null(const struct dcms_store_rows *r, size_t i, size_t col)
{
    const char *s = dcms_store_rows_text(r, i, col);
    json_t *v = s ? json_loads(s, 0, NULL) : NULL;
    return v ? v : json_null();
}

json_t *tr_job_json(const struct dcms_store_rows *r, size_t i)
{
    json_t *result = json_null();
    if (!dcms_store_rows_is_null(r, i, TC_MODEL_SHA))
        result =
            json_pack("{s:I, s:o, s:o, s:o}", "model_size",
                      (json_int_t)dcms_store_rows_int(r, i, TC_MODEL_SIZE), "model_sha256",
                      text_or_null(r, i, TC_MODEL_SHA), "metrics", json_or_null(r, i, TC_METRICS),
                      "attestation", json_or_null(r, i, TC_RESULT_ATT));
    else if (!dcms_store_rows_is_null(r, i, TC_METRICS))
        result = json_pack("{s:o}", "metrics", json_or_null(r, i, TC_METRICS));
    json_t *timestamps =
        json_pack("{s:o, s:o, s:o, s:o, s:o, s:o}", "queued", text_or_null(r, i, TC_CREATED_AT),
                  "provisioning", text_or_null(r, i, TC_PROVISIONING_AT), "attesting",
                  text_or_null(r, i, TC_ATTESTING_AT), "running", text_or_null(r, i, TC_RUNNING_AT),
                  "validating", text_or_null(r, i, TC_VALIDATING_AT), "finished",
                  text_or_null(r, i, TC_FINISHED_AT));
    /* The privacy record is stored with the request (tr_start); the job shows it beside it. */
    json_t *request = json_or_null(r, i, TC_REQUEST);
    json_t *privacy = json_object_get(request, "privacy");
    privacy = privacy ? json_incref(privacy) : json_null();
    json_object_del(request, "privacy");
    json_t *job = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:s, s:s, s:o, s:o, s:o, s:b, s:o, s:o, s:o, s:o, "
        "s:o, s:o, s:s, s:s, s:I}",
        "id", dcms_store_rows_text(r, i, TC_ID), "contract_id",
        dcms_store_rows_text(r, i, TC_CONTRACT), "consumer_id",
        dcms_store_rows_text(r, i, TC_CONSUMER), "provider_id",
        dcms_store_rows_text(r, i, TC_PROVIDER), "created_by",
        dcms_store_rows_text(r, i, TC_CREATED_BY), "request", request, "privacy", privacy, "model",
        dcms_store_rows_text(r, i, TC_MODEL_TYPE), "state", dcms_store_rows_text(r, i, TC_STATE),
        "reason_code", text_or_null(r, i, TC_REASON_CODE), "reason", text_or_null(r, i, TC_REASON),
        "enclave_id", text_or_null(r, i, TC_ENCLAVE), "data_released",
        dcms_store_rows_int(r, i, TC_RELEASED) != 0, "progress", json_or_null(r, i, TC_PROGRESS),
        "timestamps", timestamps ? timestamps : json_null(), "deadline_at",
        text_or_null(r, i, TC_DEADLINE_AT), "dataset_hashes", json_or_null(r, i, TC_HASHES),
        "result", result ? result : json_null(), "model_url",
        dcms_store_rows_is_null(r, i, TC_MODEL_SHA)
            ? json_null()
            : json_sprintf("/api/v1/trainings/%s/model", dcms_store_rows_text(r, i, TC_ID)),
        "created_at", dcms_store_rows_text(r, i, TC_CREATED_AT), "updated_at",
        dcms_store_rows_text(r, i, TC_UPDATED_AT), "version",
        (json_int_t)dcms_store_rows_int(r, i, TC_VERSION));
    /* The key release's audit event and its receipt, once the keys were released. */
    const char *kr = dcms_store_rows_text(r, i, TC_KEY_RELEASE_EVENT);
    if (job)
        json_object_set_new(job, "key_release",
                            kr && *kr ? json_pack("{s:s, s:o}", "audit_event_id", kr, "receipt",
                                                  json_sprintf(DCMS_AUDIT_RECEIPT_PATH, kr))
                                      : json_null());
    return job;
}

enum dcms_err tr_store_key_release(struct dcms_store_tx *tx, const char *id, const char *event_id,
                                   struct dcms_errinfo *ei)
{
    return dcms_store_exec(tx, &q_key_release,
                           (struct dcms_store_val[]){DCMS_VAL_TEXT(id), DCMS_VAL_TEXT(event_id)}, 2,
                           NULL, NULL, ei);
}

enum dcms_err tr_store_take_run(struct dcms_store_tx *tx, const char *contract_id, int64_t max_runs,
                                bool *taken, struct dcms_errinfo *ei)
{
    uint64_t affected = 0;
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(contract_id), DCMS_VAL_INT(max_runs)};
    enum dcms_err e = dcms_store_exec(tx, &q_take_run, p, 2, NULL, &affected, ei);
    *taken = !e && affected == 1;
    return e;
}

enum dcms_err tr_store_give_back_run(struct dcms_store_tx *tx, const char *id, bool *given,
                                     struct dcms_errinfo *ei)
{
    uint64_t affected = 0;
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(id)};
    enum dcms_err e = dcms_store_exec(tx, &q_give_back_run, p, 1, NULL, &affected, ei);
    *given = !e && affected == 1;
    return e;
}

enum dcms_err tr_store_insert(struct dcms_store_tx *tx, const struct tr_new_job *j,
                              struct dcms_errinfo *ei)
{
    struct dcms_store_val p[] = {
        DCMS_VAL_TEXT(j->id),          DCMS_VAL_TEXT(j->contract_id),
        DCMS_VAL_TEXT(j->consumer_id), DCMS_VAL_TEXT(j->provider_id),
        DCMS_VAL_TEXT(j->created_by),  DCMS_VAL_TEXT(j->request_json),
        DCMS_VAL_TEXT(j->model_type),  DCMS_VAL_TEXT(j->now),
        DCMS_VAL_TEXT(j->deadline_at),
    };
    return dcms_store_exec(tx, &q_insert, p, 9, NULL, NULL, ei);
}

enum dcms_err tr_store_event(struct dcms_store_tx *tx, const char *id, const char *type,
                             const char *data, const char *now, int64_t *seq_out,
                             struct dcms_errinfo *ei)
{
    int64_t seq = 0;
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(id)};
    enum dcms_err e = dcms_store_exec_int(tx, &q_event_seq, p, 1, &seq, ei);
    if (e)
        return e == DCMS_ERR_NOT_FOUND ? dcms_err_set(ei, DCMS_ERR_INTERNAL, NULL) : e;
    seq++;
    struct dcms_store_val q[] = {DCMS_VAL_TEXT(id), DCMS_VAL_INT(seq), DCMS_VAL_TEXT(now),
                                 DCMS_VAL_TEXT(type), DCMS_VAL_TEXT(data)};
    e = dcms_store_exec(tx, &q_event_put, q, 5, NULL, NULL, ei);
    if (!e && seq_out)
        *seq_out = seq;
    return e;
}

enum dcms_err tr_store_events(struct dcms_store_tx *tx, const char *id, int64_t after,
                              int64_t limit, struct dcms_store_rows **rows, struct dcms_errinfo *ei)
{
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(id), DCMS_VAL_INT(after), DCMS_VAL_INT(limit)};
    return dcms_store_exec(tx, &q_events, p, 3, rows, NULL, ei);
}

enum dcms_err tr_store_list(struct dcms_store_tx *tx, const char *contract_id, const char *cursor,
                            int64_t limit, struct dcms_store_rows **rows, struct dcms_errinfo *ei)
{
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(contract_id), DCMS_VAL_TEXT(cursor ? cursor : ""),
                                 DCMS_VAL_INT(limit)};
    return dcms_store_exec(tx, &q_list, p, 3, rows, NULL, ei);
}

static struct dcms_store_val opt(const char *s)
{
    return s ? DCMS_VAL_TEXT(s) : DCMS_VAL_NULL;
}

enum dcms_err tr_store_move(struct dcms_store_tx *tx, const char *id, const char *from,
                            const char *to, const struct tr_change *ch, const char *now,
                            bool *moved, struct dcms_errinfo *ei)
{
    *moved = false;
    size_t k = 0;
    while (k < sizeof(move_states) / sizeof(move_states[0]) && strcmp(move_states[k], to) != 0)
        k++;
    if (k == sizeof(move_states) / sizeof(move_states[0]))
        return dcms_err_set(ei, DCMS_ERR_INTERNAL, "no training state %s", to);
    static const struct tr_change none = {.model_size = -1};
    if (!ch)
        ch = &none;
    struct dcms_store_val p[] = {
        DCMS_VAL_TEXT(id),
        DCMS_VAL_TEXT(from ? from : ""),
        DCMS_VAL_TEXT(now),
        opt(ch->reason_code),
        opt(ch->reason),
        opt(ch->enclave_id),
        DCMS_VAL_INT(ch->data_released ? 1 : 0),
        opt(ch->deadline_at),
        opt(ch->progress),
        opt(ch->model_dek_id),
        opt(ch->model_sha256),
        opt(ch->metrics),
        opt(ch->result_attestation),
        opt(ch->dataset_hashes),
        DCMS_VAL_INT(ch->model_size),
    };
    uint64_t affected = 0;
    enum dcms_err e = dcms_store_exec(tx, &q_move[k], p, 15, NULL, &affected, ei);
    *moved = !e && affected == 1;
    return e;
}

enum dcms_err tr_store_progress(struct dcms_store_tx *tx, const char *id, const char *progress,
                                const char *now, struct dcms_errinfo *ei)
{
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(id), DCMS_VAL_TEXT(progress), DCMS_VAL_TEXT(now)};
    return dcms_store_exec(tx, &q_progress, p, 3, NULL, NULL, ei);
}

enum dcms_err tr_store_next_queued(struct dcms_store_tx *tx, char id[DCMS_UUID_STRLEN],
                                   struct dcms_errinfo *ei)
{
    struct dcms_store_rows *rows = NULL;
    id[0] = '\0';
    enum dcms_err e = dcms_store_exec(tx, &q_next, NULL, 0, &rows, NULL, ei);
    if (!e && dcms_store_rows_count(rows) == 1)
        snprintf(id, DCMS_UUID_STRLEN, "%s", dcms_store_rows_text(rows, 0, 0));
    dcms_store_rows_free(rows);
    return e;
}

enum dcms_err tr_store_inflight(struct dcms_store_tx *tx, const char *cid, int64_t limit,
                                struct dcms_store_rows **rows, struct dcms_errinfo *ei)
{
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(cid ? cid : ""), DCMS_VAL_INT(limit)};
    return dcms_store_exec(tx, &q_inflight, p, 2, rows, NULL, ei);
}

enum dcms_err tr_store_model_put(struct dcms_store_tx *tx, const char *job_id, const char *dek_id,
                                 const unsigned char *nonce, const unsigned char *ct, size_t ct_len,
                                 struct dcms_errinfo *ei)
{
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(job_id), DCMS_VAL_TEXT(dek_id),
                                 DCMS_VAL_BLOB(nonce, 12), DCMS_VAL_BLOB(ct, ct_len)};
    return dcms_store_exec(tx, &q_model_put, p, 4, NULL, NULL, ei);
}

enum dcms_err tr_store_model_get(struct dcms_store_tx *tx, const char *job_id,
                                 struct dcms_store_rows **rows, struct dcms_errinfo *ei)
{
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(job_id)};
    enum dcms_err e = dcms_store_exec(tx, &q_model_get, p, 1, rows, NULL, ei);
    if (!e && dcms_store_rows_count(*rows) != 1) {
        dcms_store_rows_free(*rows);
        *rows = NULL;
        e = dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "the training has no model");
    }
    return e;
}

enum dcms_err tr_store_model_delete(struct dcms_store_tx *tx, const char *job_id,
                                    struct dcms_errinfo *ei)
{
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(job_id)};
    return dcms_store_exec(tx, &q_model_delete, p, 1, NULL, NULL, ei);
}

/* ---- nodes: the node that runs a job (owner_node, migration 0021; training_nodes.c) ---- */

static struct dcms_query q_set_owner =
    DCMS_QUERY("tr_set_owner", "UPDATE training_jobs SET owner_node = $2 WHERE id = $1");
static struct dcms_query q_of_node = DCMS_QUERY(
    "tr_of_node", "SELECT id, state, enclave_id, data_released FROM training_jobs "
                  "WHERE state IN ('provisioning', 'attesting', 'running', 'validating') AND "
                  "($1 = '' OR owner_node = $1 OR owner_node IS NULL) AND ($2 = '' OR "
                  "owner_node = $2) AND provisioning_at <= $3 ORDER BY id LIMIT 10000");
static struct dcms_query q_requeue =
    DCMS_QUERY("tr_requeue",
               "UPDATE training_jobs SET state = 'queued', owner_node = NULL, enclave_id = NULL, "
               "updated_at = $3, version = version + 1, reason_code = $4, reason = $5, "
               "deadline_at = $6 WHERE id = $1 AND state = $2 AND data_released = 0 AND "
               "owner_node = $7");

enum dcms_err tr_store_set_owner(struct dcms_store_tx *tx, const char *id, const char *node,
                                 struct dcms_errinfo *ei)
{
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(id), node ? DCMS_VAL_TEXT(node) : DCMS_VAL_NULL};
    return dcms_store_exec(tx, &q_set_owner, p, 2, NULL, NULL, ei);
}

enum dcms_err tr_store_of_node(struct dcms_store_tx *tx, const char *mine, const char *lost,
                               const char *before, struct dcms_store_rows **rows,
                               struct dcms_errinfo *ei)
{
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(mine ? mine : ""), DCMS_VAL_TEXT(lost ? lost : ""),
                                 DCMS_VAL_TEXT(before)};
    return dcms_store_exec(tx, &q_of_node, p, 3, rows, NULL, ei);
}

enum dcms_err tr_store_requeue(struct dcms_store_tx *tx, const char *id, const char *from,
                               const char *node, const char *now, const char *reason_code,
                               const char *reason, const char *deadline, bool *moved,
                               struct dcms_errinfo *ei)
{
    uint64_t n = 0;
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(id),     DCMS_VAL_TEXT(from),
                                 DCMS_VAL_TEXT(now),    DCMS_VAL_TEXT(reason_code),
                                 DCMS_VAL_TEXT(reason), DCMS_VAL_TEXT(deadline),
                                 DCMS_VAL_TEXT(node)};
    enum dcms_err e = dcms_store_exec(tx, &q_requeue, p, 7, NULL, &n, ei);
    *moved = !e && n == 1;
    return e;
}

/* ---- the jobs of a contract, for its evidence (dcms/training.h) ---- */

static struct dcms_query q_ids_of_contract =
    DCMS_QUERY("tr_ids_of_contract", "SELECT CAST(id AS TEXT) FROM training_jobs "
                                     "WHERE CAST(contract_id AS TEXT) = $1 "
                                     "ORDER BY created_at, id LIMIT $2");

enum dcms_err dcms_training_ids_of_contract(struct dcms_training *t, const char *contract_id,
                                            json_t **out, struct dcms_errinfo *ei)
{
    *out = json_array();
    if (!*out)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    if (!t)
        return DCMS_OK;
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_begin(t->app->store, DCMS_TX_READ, &tx, ei);
    if (e)
        goto fail;
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(contract_id),
                                 DCMS_VAL_INT(DCMS_TRAINING_EVIDENCE_MAX)};
    e = dcms_store_exec(tx, &q_ids_of_contract, p, 2, &rows, NULL, ei);
    dcms_store_rollback(tx);
    for (size_t i = 0; !e && i < dcms_store_rows_count(rows); i++)
        if (json_array_append_new(*out, json_string(dcms_store_rows_text(rows, i, 0))))
            e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    dcms_store_rows_free(rows);
    if (!e)
        return DCMS_OK;
fail:
    json_decref(*out);
    *out = NULL;
    return e;
}
