/*
 * One training job from provisioning to its end, on a worker thread:
 *
 *   provisioning  the terms checks, then a trainer enclave for the contract
 *                 (dcms_enclaves_provision: the compatibility gate, start,
 *                 the enclave service's own attestation)
 *   attesting     a session on its channel, ATTEST_REQ with a fresh nonce,
 *                 the document verified with the enclave's policy
 *                 (dcms_enclave_session_verify), the trainer's public key
 *   running       the terms checked again, the key release audited (PCRs,
 *                 nonce, dataset hashes), TRAIN_JOB, one sealed DEK per
 *                 dataset (crypto_box_seal to the document's key), the
 *                 datasets' at-rest segments in chunks, then the trainer's
 *                 progress and result frames
 *   validating    lengths and SHA-384 of the result, the result's
 *                 attestation (same enclave, result nonce, user_data =
 *                 SHA-384 of the result), the model size cap; the model
 *                 sealed under a new DEK, registered for retention, and the
 *                 job succeeded, in one transaction
 *
 * Every failure fails the job with a reason code, retires the enclave and
 * stores nothing. A cancel (the consumer, a contract transition) is seen
 * between frames: the job's row is re-read at least every second.
 */
#include <math.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dcms/app.h"
#include "dcms/arena.h"
#include "dcms/audit.h"
#include "dcms/clock.h"
#include "dcms/config.h"
#include "dcms/crypto.h"
#include "dcms/datasets.h"
#include "dcms/enclaves.h"
#include "dcms/json.h"
#include "dcms/keys.h"
#include "dcms/log.h"
#include "dcms/privacy.h"
#include "dcms/store.h"
#include "dcms/str.h"
#include "training/training_int.h"

/* Frame types of the channel (src/enclaves/channel.h, training/trainer_frames.h). */
enum {
    F_ATTEST_REQ = 1,
    F_ATTEST_RESP = 4,
    F_TRAIN_JOB = 16,
    F_TRAIN_KEY = 17,
    F_TRAIN_SEGMENT = 18,
    F_TRAIN_PROGRESS = 19,
    F_TRAIN_RESULT = 20,
    F_TRAIN_RESULT_END = 21,
    F_TRAIN_ERROR = 22,
};

#define NONCE_LEN 32
#define SEGMENT_CHUNK 16384u
#define SEALED_LEN (crypto_box_SEALBYTES + DCMS_DEK_LEN)
#define MAX_METRICS_BYTES (1u << 20)
#define PROGRESS_EVERY_MS 200
#define LOOK_EVERY_MS 1000
#define SHA384_LEN 48

int64_t tr_timeout_s(const struct dcms_app *app, const char *state)
{
    const struct dcms_config *c = app->cfg;
    unsigned long s = !strcmp(state, "queued")         ? c->training_queued_timeout_s
                      : !strcmp(state, "provisioning") ? c->training_provisioning_timeout_s
                      : !strcmp(state, "attesting")    ? c->training_attesting_timeout_s
                      : !strcmp(state, "running")      ? c->training_running_timeout_s
                                                       : c->training_validating_timeout_s;
    return s ? (int64_t)s : 1;
}

static int64_t now_ms(void)
{
    return dcms_clock_mono_us() / 1000;
}

/* Everything one run holds. */
struct run {
    struct dcms_training *t;
    struct dcms_app *app;
    struct tr_slot *slot;
    const char *id;
    char contract_id[DCMS_UUID_STRLEN];
    char created_by[DCMS_UUID_STRLEN]; /* the identity that started the job */
    char enclave_id[DCMS_UUID_STRLEN];
    char state[16];
    json_t *request; /* the stored request: config + datasets */
    const char *datasets[TR_MAX_DATASETS];
    size_t ndatasets;
    const char *model;
    struct dcms_contract_terms terms;
    struct tr_dp dp; /* the DP run's record (dp.on false: not DP) */
    struct dcms_enclave_session *s;
    int64_t deadline_ms;   /* of the current state */
    int64_t last_look_ms;  /* when the job's row was last re-read */
    const char *fail_code; /* set with ei when the run fails */
    struct dcms_errinfo ei;
    unsigned char result_nonce[NONCE_LEN];
    char hashes_json[TR_MAX_DATASETS * 120 + 8];
    char nonce_hex[2 * NONCE_LEN + 1]; /* of the attestation the keys were released on */
    /* the result */
    struct dcms_buf model_buf, metrics_buf;
    bool ended; /* TRAIN_RESULT_END seen */
    uint64_t model_len, metrics_len;
    unsigned char result_sha[SHA384_LEN];
    int64_t last_progress_ms;
    int64_t epochs;
    /* when each step ended (monotonic µs), for the job's profile line in the log */
    int64_t t0_us;
    struct step_mark {
        const char *step;
        int64_t at_us;
    } marks[16];
    unsigned nmarks;
};

/* Notes that `step` has just ended (the log's profile of the job; bench-training-jobs.sh). */
static void mark(struct run *r, const char *step)
{
    if (r->nmarks < sizeof(r->marks) / sizeof(r->marks[0]))
        r->marks[r->nmarks++] = (struct step_mark){step, dcms_clock_mono_us()};
}

static enum dcms_err fail(struct run *r, const char *code, enum dcms_err e, const char *fmt, ...)
    DCMS_PRINTF(4, 5);

static enum dcms_err fail(struct run *r, const char *code, enum dcms_err e, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    r->fail_code = code;
    dcms_errinfo_init(&r->ei, NULL);
    return dcms_err_set(&r->ei, e ? e : DCMS_ERR_INTERNAL, "%s", msg);
}

/* Whether the job is still wanted: not cancelled here, nor moved on in the store. */
static bool still_wanted(struct run *r, bool force)
{
    pthread_mutex_lock(&r->t->mu);
    bool cancel = r->slot->cancel;
    pthread_mutex_unlock(&r->t->mu);
    if (cancel)
        return false;
    if (!force && now_ms() - r->last_look_ms < LOOK_EVERY_MS)
        return true;
    r->last_look_ms = now_ms();
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_store_tx *tx = NULL;
    struct dcms_store_rows *rows = NULL;
    if (dcms_store_begin(r->app->store, DCMS_TX_READ, &tx, &ei))
        return true; /* the store is busy: look again later */
    bool ok = true;
    if (!tr_store_load(tx, r->id, &rows, &ei))
        ok = strcmp(dcms_store_rows_text(rows, 0, TC_STATE), r->state) == 0;
    dcms_store_rows_free(rows);
    dcms_store_rollback(tx);
    return ok;
}

/*
 * The key release inside the transaction that moves the job to running:
 * its audit record (consumed) and, for a run reserved under the contract's
 * privacy budget, the charge: from here the run has touched the data.
 */
static enum dcms_err key_release_tx(struct run *r, struct dcms_store_tx *tx, json_t *details,
                                    struct dcms_errinfo *ei)
{
    struct dcms_audit_who system = {NULL, NULL, NULL};
    char eid[DCMS_UUID_STRLEN] = "";
    enum dcms_err e = dcms_audit_change_id(r->app->audit, tx, &system, "training",
                                           "training.key_release", r->id, details, eid, ei);
    if (!e) /* the job shows it: the parties' receipt of the release */
        e = tr_store_key_release(tx, r->id, eid, ei);
    if (!e && r->dp.budgeted)
        e = dcms_privacy_budget_charge(tx, r->app->audit, &system, r->id, ei);
    return e;
}

/*
 * Moves the job to `to`; false (with the run failed as cancelled) when it
 * had moved on. `key_release` (consumed; NULL for other moves): the key
 * release's audit details, recorded and charged in the same transaction.
 */
static enum dcms_err move(struct run *r, const char *to, struct tr_change *ch, json_t *details,
                          json_t *key_release)
{
    char dl[DCMS_TIME_STRLEN];
    struct tr_change none = {.model_size = -1};
    if (!ch)
        ch = &none;
    dcms_time_format(dcms_clock_now_us() + tr_timeout_s(r->app, to) * 1000000, dl);
    if (!ch->deadline_at)
        ch->deadline_at = dl;
    bool moved = false;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_store_tx *tx = NULL;
    enum dcms_err e = dcms_store_begin(r->app->store, DCMS_TX_WRITE, &tx, &ei);
    if (e) {
        json_decref(details);
        details = NULL;
    } else {
        e = tr_transition_tx(r->app, tx, r->id, r->state, to, ch, NULL, NULL, details, &moved, &ei);
    }
    if (!e && moved && key_release) {
        e = key_release_tx(r, tx, key_release, &ei);
        key_release = NULL;
    }
    json_decref(key_release);
    if (tx)
        e = e || !moved ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, &ei);
    if (e)
        return fail(r, "internal", e, "cannot record the state %s: %s", to, ei.message);
    if (!moved)
        return fail(r, "cancelled", DCMS_ERR_CONFLICT, "the job was cancelled");
    tr_notify(r->t, r->id);
    snprintf(r->state, sizeof(r->state), "%s", to);
    r->deadline_ms = now_ms() + tr_timeout_s(r->app, to) * 1000;
    return DCMS_OK;
}

static void hex_of(char *out, const unsigned char *p, size_t n)
{
    dcms_hex_encode(out, p, n);
}

/* ---- frames ---- */

static enum dcms_err send_frame(struct run *r, uint8_t type, const void *body, size_t len)
{
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    int64_t dl = r->deadline_ms;
    enum dcms_err e = dcms_enclave_session_send(r->s, type, body, len, dl, &ei);
    if (e)
        return fail(r, now_ms() >= dl ? "deadline_exceeded" : "protocol_error", e,
                    "sending to the enclave failed: %s", ei.message);
    return DCMS_OK;
}

/*
 * The next frame for us, waiting at most until the state's deadline and
 * looking at the job's row every second on the way.
 */
static enum dcms_err recv_frame(struct run *r, uint8_t *type, const uint8_t **body, size_t *len)
{
    for (;;) {
        if (!still_wanted(r, false))
            return fail(r, "cancelled", DCMS_ERR_CONFLICT, "the job was cancelled");
        int64_t step = now_ms() + LOOK_EVERY_MS;
        int64_t dl = step < r->deadline_ms ? step : r->deadline_ms;
        struct dcms_errinfo ei;
        dcms_errinfo_init(&ei, NULL);
        enum dcms_err e = dcms_enclave_session_recv(r->s, type, body, len, dl, &ei);
        if (!e)
            return DCMS_OK;
        if (now_ms() >= r->deadline_ms)
            return fail(r, "deadline_exceeded", DCMS_ERR_UNAVAILABLE,
                        "the %s state passed its deadline (DCMS_TRAINING_*_TIMEOUT_S)", r->state);
        if (now_ms() < dl - 5)
            return fail(r, "protocol_error", e, "the enclave's channel failed: %s", ei.message);
        /* a step of the wait ended: look at the job again */
    }
}

/* The document of an ATTEST_RESP: status 0 then the document. */
static enum dcms_err attest_doc(struct run *r, const uint8_t *body, size_t len, const uint8_t **doc,
                                size_t *doc_len)
{
    if (len < 2 || body[0] != 0)
        return fail(r, "attestation_failed", DCMS_ERR_UNAVAILABLE,
                    "the enclave could not attest: %.*s", len > 1 ? (int)(len - 1) : 0,
                    len > 1 ? (const char *)body + 1 : "");
    *doc = body + 1;
    *doc_len = len - 1;
    return DCMS_OK;
}

/* ---- steps ---- */

static enum dcms_err load_job(struct run *r)
{
    struct dcms_store_tx *tx = NULL;
    struct dcms_store_rows *rows = NULL;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    enum dcms_err e = dcms_store_begin(r->app->store, DCMS_TX_READ, &tx, &ei);
    if (!e)
        e = tr_store_load(tx, r->id, &rows, &ei);
    dcms_store_rollback(tx);
    if (e)
        return fail(r, "internal", e, "cannot read the job: %s", ei.message);
    snprintf(r->contract_id, sizeof(r->contract_id), "%s",
             dcms_store_rows_text(rows, 0, TC_CONTRACT));
    snprintf(r->state, sizeof(r->state), "%s", dcms_store_rows_text(rows, 0, TC_STATE));
    snprintf(r->created_by, sizeof(r->created_by), "%s",
             dcms_store_rows_text(rows, 0, TC_CREATED_BY));
    r->request = json_loads(dcms_store_rows_text(rows, 0, TC_REQUEST), 0, NULL);
    dcms_store_rows_free(rows);
    const json_t *ds = json_object_get(r->request, "datasets");
    r->model = json_string_value(json_object_get(r->request, "model"));
    if (!json_is_array(ds) || !r->model || json_array_size(ds) > TR_MAX_DATASETS)
        return fail(r, "internal", DCMS_ERR_INTERNAL, "the stored request is unreadable");
    for (size_t i = 0; i < json_array_size(ds); i++)
        r->datasets[r->ndatasets++] = json_string_value(json_array_get(ds, i));
    const json_t *ep = json_object_get(r->request, "epochs");
    r->epochs = json_is_integer(ep) ? json_integer_value(ep) : 100;
    const json_t *privacy = json_object_get(r->request, "privacy");
    if (privacy && !tr_dp_from_json(privacy, &r->dp))
        return fail(r, "internal", DCMS_ERR_INTERNAL, "the stored privacy record is unreadable");
    return DCMS_OK;
}

static enum dcms_err check_terms(struct run *r)
{
    const char *code = NULL;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    json_decref(r->terms.terms);
    r->terms.terms = NULL;
    enum dcms_err e = tr_check_terms(r->app, r->contract_id, r->model, r->datasets, r->ndatasets,
                                     &code, &r->terms, &ei);
    if (e) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%.200s%s%.200s", ei.message, ei.ndetails ? ": " : "",
                 ei.ndetails ? ei.details[0].problem : "");
        return fail(r, code ? code : "internal", e, "%s", msg);
    }
    return DCMS_OK;
}

static enum dcms_err provision(struct run *r)
{
    struct dcms_errinfo ei;
    /* an arena so that the gate's problems (which requirement failed) reach the reason */
    struct dcms_arena *a = dcms_arena_new(64 * 1024);
    dcms_errinfo_init(&ei, a);
    char cause[64];
    snprintf(cause, sizeof(cause), "training %s", r->id);
    enum dcms_err e =
        dcms_enclaves_provision(r->app->enclaves, r->contract_id, r->app->cfg->training_image,
                                cause, NULL, r->enclave_id, &ei);
    if (e) {
        e = fail(r, e == DCMS_ERR_VALIDATION ? "no_compatible_enclave" : "provisioning_failed", e,
                 "the training enclave could not be provisioned: %.120s%s%.120s", ei.message,
                 ei.ndetails ? ": " : "", ei.ndetails ? ei.details[0].problem : "");
        dcms_arena_free(a);
        return e;
    }
    dcms_arena_free(a);
    mark(r, "provision");
    struct tr_change ch = {.enclave_id = r->enclave_id, .model_size = -1};
    enum dcms_err me =
        move(r, "attesting", &ch, json_pack("{s:s}", "enclave_id", r->enclave_id), NULL);
    mark(r, "to_attesting");
    return me;
}

/* ATTEST_REQ with `nonce`, then the verified evidence of the ATTEST_RESP. */
static enum dcms_err attest(struct run *r, struct dcms_enclave_evidence *ev)
{
    unsigned char nonce[NONCE_LEN];
    randombytes_buf(nonce, sizeof(nonce));
    enum dcms_err e = send_frame(r, F_ATTEST_REQ, nonce, sizeof(nonce));
    uint8_t type = 0;
    const uint8_t *body = NULL, *doc = NULL;
    size_t len = 0, doc_len = 0;
    while (!e) {
        if ((e = recv_frame(r, &type, &body, &len)))
            break;
        if (type == F_ATTEST_RESP)
            break;
        e = fail(r, "protocol_error", DCMS_ERR_UNAVAILABLE,
                 "the trainer sent frame %u before its attestation", type);
    }
    if (!e)
        e = attest_doc(r, body, len, &doc, &doc_len);
    if (!e) {
        struct dcms_errinfo ei;
        dcms_errinfo_init(&ei, NULL);
        if ((e = dcms_enclave_session_verify(r->s, doc, doc_len, nonce, sizeof(nonce), ev, &ei)))
            e = fail(r, "attestation_failed", e, "the enclave's attestation does not verify: %s",
                     ei.message);
        else if (ev->public_key_len != crypto_box_PUBLICKEYBYTES)
            e = fail(r, "attestation_failed", DCMS_ERR_VALIDATION,
                     "the attestation carries no X25519 public key to seal the keys to");
    }
    if (!e) {
        /* what the key release audit record shows */
        hex_of(r->nonce_hex, nonce, sizeof(nonce));
    }
    sodium_memzero(nonce, sizeof(nonce));
    return e;
}

struct seg_ctx {
    struct run *r;
    const char *id;
};

static enum dcms_err put_id(unsigned char *p, const char *id)
{
    size_t n = strlen(id);
    p[0] = (unsigned char)(n >> 8);
    p[1] = (unsigned char)n;
    memcpy(p + 2, id, n);
    return DCMS_OK;
}

static void be64(unsigned char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--)
        p[7 - i] = (unsigned char)(v >> (8 * i));
}

static void be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* One at-rest segment as TRAIN_SEGMENT chunks (spec: id | index | final | nonce | ct_len | offset
 * | chunk). */
static enum dcms_err send_segment(void *ctx, const struct dcms_dataset_segment *sg,
                                  struct dcms_errinfo *ei)
{
    struct seg_ctx *sc = ctx;
    struct run *r = sc->r;
    (void)ei;
    size_t idn = strlen(sc->id);
    unsigned char frame[2 + 64 + 8 + 1 + DCMS_AEAD_NONCE_LEN + 4 + 4 + SEGMENT_CHUNK];
    if (idn > 64)
        return fail(r, "internal", DCMS_ERR_INTERNAL, "a dataset id is too long");
    if (!still_wanted(r, false))
        return fail(r, "cancelled", DCMS_ERR_CONFLICT, "the job was cancelled");
    for (size_t off = 0; off < sg->ct_len; off += SEGMENT_CHUNK) {
        size_t n = sg->ct_len - off < SEGMENT_CHUNK ? sg->ct_len - off : SEGMENT_CHUNK;
        size_t p = 0;
        put_id(frame, sc->id);
        p += 2 + idn;
        be64(frame + p, (uint64_t)sg->index);
        p += 8;
        frame[p++] = sg->final ? 1 : 0;
        memcpy(frame + p, sg->nonce, DCMS_AEAD_NONCE_LEN);
        p += DCMS_AEAD_NONCE_LEN;
        be32(frame + p, (uint32_t)sg->ct_len);
        p += 4;
        be32(frame + p, (uint32_t)off);
        p += 4;
        memcpy(frame + p, sg->ct + off, n);
        enum dcms_err e = send_frame(r, F_TRAIN_SEGMENT, frame, p + n);
        if (e)
            return e;
    }
    return DCMS_OK;
}

/* The checks again, the audited key release, the job, the keys and the data. */
static enum dcms_err release(struct run *r, const struct dcms_enclave_evidence *ev)
{
    const char *nonce_hex = r->nonce_hex;
    enum dcms_err e = check_terms(r);
    if (e)
        return e;
    /* the caller too: removed from the consumer side or disabled since the start, no key */
    struct dcms_errinfo mei;
    dcms_errinfo_init(&mei, NULL);
    if ((e = tr_check_member(r->app, r->created_by, &r->terms.sec, &mei)))
        return fail(r, e == DCMS_ERR_FORBIDDEN ? "caller_not_authorised" : "internal", e, "%s",
                    mei.message);
    if (!still_wanted(r, true))
        return fail(r, "cancelled", DCMS_ERR_CONFLICT, "the job was cancelled");
    /* the datasets' hashes, as the key release and the model's metadata record them */
    json_t *hashes = json_object(), *hash_list = json_array();
    for (size_t i = 0; hashes && hash_list && i < r->ndatasets; i++) {
        struct dcms_dataset_ref ref;
        struct dcms_errinfo ei;
        dcms_errinfo_init(&ei, NULL);
        if ((e = dcms_datasets_ref(r->app, r->datasets[i], &ref, &ei))) {
            json_decref(hashes);
            json_decref(hash_list);
            return fail(r, "internal", e, "cannot read dataset %s: %s", r->datasets[i], ei.message);
        }
        json_object_set_new(hashes, r->datasets[i], json_string(ref.sha256));
        json_array_append_new(hash_list,
                              json_pack("{s:s, s:s}", "id", r->datasets[i], "sha256", ref.sha256));
    }
    char *hashes_text = hashes ? dcms_json_dump(hashes, NULL) : NULL;
    json_decref(hashes);
    if (!hashes_text || !hash_list) {
        free(hashes_text);
        json_decref(hash_list);
        return fail(r, "internal", DCMS_ERR_NOMEM, "out of memory");
    }
    snprintf(r->hashes_json, sizeof(r->hashes_json), "%s", hashes_text);
    char pk_hex[2 * 32 + 1];
    hex_of(pk_hex, ev->public_key, 32);
    json_t *details =
        json_pack("{s:s, s:s, s:{s:s, s:s, s:s, s:s}, s:s, s:s, s:s, s:O}", "contract_id",
                  r->contract_id, "enclave_id", r->enclave_id, "pcrs", "0", ev->pcr0, "1", ev->pcr1,
                  "2", ev->pcr2, "8", ev->pcr8, "module_id", ev->module_id, "nonce", nonce_hex,
                  "public_key", pk_hex, "datasets", hash_list);
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    if (!details || (r->dp.on && json_object_set_new(details, "privacy", tr_dp_json(&r->dp)))) {
        json_decref(details);
        json_decref(hash_list);
        free(hashes_text);
        return fail(r, "internal", DCMS_ERR_NOMEM, "out of memory");
    }
    /*
     * Recorded before any key leaves, in the transaction that moves the job
     * to running and charges its privacy reservation: a release that is not
     * in the log does not happen, and a run that got the keys has spent.
     */
    struct tr_change ch = {.data_released = true, .dataset_hashes = hashes_text, .model_size = -1};
    mark(r, "recheck");
    e = move(r, "running", &ch, json_incref(details), details);
    mark(r, "to_running");
    free(hashes_text);
    if (e) {
        json_decref(hash_list);
        return e;
    }

    /* TRAIN_JOB: the config with the metadata the model file carries */
    char rn_hex[2 * NONCE_LEN + 1];
    randombytes_buf(r->result_nonce, sizeof(r->result_nonce));
    hex_of(rn_hex, r->result_nonce, sizeof(r->result_nonce));
    json_t *config = json_deep_copy(r->request);
    char *hl = dcms_json_dump(hash_list, NULL);
    json_decref(hash_list);
    json_t *ids = json_array();
    for (size_t i = 0; ids && i < r->ndatasets; i++)
        json_array_append_new(ids, json_string(r->datasets[i]));
    json_t *job = NULL;
    if (config && hl && ids) {
        json_object_del(config, "datasets");
        json_object_del(config, "privacy");
        json_t *meta =
            json_pack("{s:s, s:s, s:s, s:s}", "contract_id", r->contract_id, "training_id", r->id,
                      "terms_hash", r->terms.terms_hash, "datasets", hl);
        if (r->dp.on) {
            /* the trainer's form: the sigma priced here, whether asked for or found */
            json_object_set_new(config, "dp",
                                json_pack("{s:f, s:f}", "noise_multiplier", r->dp.sigma,
                                          "max_grad_norm", r->dp.max_grad_norm));
            /* the trainer records sigma, C, q and steps itself; delta and epsilon are ours */
            if (meta && r->dp.budgeted) {
                char num[32];
                snprintf(num, sizeof(num), "%.17g", r->dp.delta);
                json_object_set_new(meta, "dp.delta", json_string(num));
                snprintf(num, sizeof(num), "%.17g", r->dp.epsilon);
                json_object_set_new(meta, "dp.epsilon", json_string(num));
            }
        }
        json_object_set_new(config, "metadata", meta);
        job =
            json_pack("{s:O, s:O, s:s}", "config", config, "datasets", ids, "result_nonce", rn_hex);
    }
    free(hl);
    json_decref(config);
    json_decref(ids);
    size_t jlen = 0;
    char *jtext = job ? dcms_json_dump(job, &jlen) : NULL;
    json_decref(job);
    if (!jtext)
        return fail(r, "internal", DCMS_ERR_NOMEM, "out of memory");
    e = send_frame(r, F_TRAIN_JOB, jtext, jlen);
    free(jtext);
    if (e)
        return e;

    /* TRAIN_KEY: each DEK sealed to the attested key, wiped at once */
    for (size_t i = 0; !e && i < r->ndatasets; i++) {
        struct dcms_dataset_ref ref;
        struct dcms_store_tx *tx = NULL;
        struct dcms_dek *dek = NULL;
        dcms_errinfo_init(&ei, NULL);
        unsigned char frame[2 + 64 + SEALED_LEN];
        size_t idn = strlen(r->datasets[i]);
        if (idn > 64)
            return fail(r, "internal", DCMS_ERR_INTERNAL, "a dataset id is too long");
        if ((e = dcms_datasets_ref(r->app, r->datasets[i], &ref, &ei)) ||
            (e = dcms_store_begin(r->app->store, DCMS_TX_READ, &tx, &ei)))
            return fail(r, "internal", e, "cannot read dataset %s: %s", r->datasets[i], ei.message);
        e = dcms_keys_dek_open(r->app->keys, tx, ref.dek_id, "dataset", &dek, &ei);
        dcms_store_rollback(tx);
        if (e)
            return fail(r, "internal", e, "cannot open the key of dataset %s: %s", r->datasets[i],
                        ei.message);
        put_id(frame, r->datasets[i]);
        int rc =
            crypto_box_seal(frame + 2 + idn, dcms_dek_bytes(dek), DCMS_DEK_LEN, ev->public_key);
        dcms_dek_free(dek);
        if (rc != 0)
            return fail(r, "internal", DCMS_ERR_CRYPTO, "sealing a data key failed");
        e = send_frame(r, F_TRAIN_KEY, frame, 2 + idn + SEALED_LEN);
        sodium_memzero(frame, sizeof(frame));
    }
    mark(r, "job_keys");
    /* the segments, as stored */
    for (size_t i = 0; !e && i < r->ndatasets; i++) {
        struct seg_ctx sc = {r, r->datasets[i]};
        dcms_errinfo_init(&ei, NULL);
        e = dcms_datasets_each_segment(r->app, r->datasets[i], send_segment, &sc, &ei);
        if (e && !r->fail_code)
            e = fail(r, "internal", e, "cannot stream dataset %s: %s", r->datasets[i], ei.message);
    }
    return e;
}

static enum dcms_err on_progress(struct run *r, const uint8_t *body, size_t len)
{
    json_error_t je;
    json_t *p = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(p)) {
        json_decref(p);
        return fail(r, "protocol_error", DCMS_ERR_UNAVAILABLE, "a progress frame is not JSON");
    }
    const json_t *ep = json_object_get(p, "epoch");
    bool last = json_is_integer(ep) && json_integer_value(ep) >= r->epochs;
    if (json_is_integer(ep) && json_integer_value(ep) == 1)
        mark(r, "first_epoch");
    if (last)
        mark(r, "last_epoch");
    if (!last && now_ms() - r->last_progress_ms < PROGRESS_EVERY_MS) {
        json_decref(p);
        return DCMS_OK;
    }
    r->last_progress_ms = now_ms();
    char *text = dcms_json_dump(p, NULL);
    json_decref(p);
    if (!text)
        return fail(r, "internal", DCMS_ERR_NOMEM, "out of memory");
    char now[DCMS_TIME_STRLEN];
    dcms_time_format(dcms_clock_now_us(), now);
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_store_tx *tx = NULL;
    enum dcms_err e = dcms_store_begin(r->app->store, DCMS_TX_WRITE, &tx, &ei);
    if (!e && !(e = tr_store_progress(tx, r->id, text, now, &ei)))
        e = tr_store_event(tx, r->id, "progress", text, now, NULL, &ei);
    if (tx)
        e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, &ei);
    free(text);
    if (e)
        return fail(r, "internal", e, "cannot record progress: %s", ei.message);
    tr_notify(r->t, r->id);
    return DCMS_OK;
}

static int64_t max_model_bytes(const struct run *r)
{
    const json_t *v = json_object_get(json_object_get(r->terms.terms, "output"), "max_model_bytes");
    return json_is_integer(v) ? json_integer_value(v) : TR_DEFAULT_MAX_MODEL_BYTES;
}

static void sha384_result(const struct run *r, unsigned char out[SHA384_LEN])
{
    unsigned char len_be[8];
    be64(len_be, (uint64_t)r->model_buf.len);
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    unsigned int n = 0;
    if (!m || !EVP_DigestInit_ex(m, EVP_sha384(), NULL) ||
        !EVP_DigestUpdate(m, len_be, sizeof(len_be)) ||
        !EVP_DigestUpdate(m, r->model_buf.ptr ? r->model_buf.ptr : "", r->model_buf.len) ||
        !EVP_DigestUpdate(m, r->metrics_buf.ptr ? r->metrics_buf.ptr : "", r->metrics_buf.len) ||
        !EVP_DigestFinal_ex(m, out, &n))
        memset(out, 0, SHA384_LEN); /* matches nothing the trainer sends */
    EVP_MD_CTX_free(m);
}

/* Progress and result frames until TRAIN_RESULT_END. */
static enum dcms_err collect(struct run *r)
{
    int64_t cap = max_model_bytes(r);
    for (;;) {
        uint8_t type = 0;
        const uint8_t *body = NULL;
        size_t len = 0;
        enum dcms_err e = recv_frame(r, &type, &body, &len);
        if (e)
            return e;
        switch (type) {
        case F_TRAIN_PROGRESS:
            if ((e = on_progress(r, body, len)))
                return e;
            break;
        case F_TRAIN_RESULT: {
            if (len < 1 || body[0] > 1 || (body[0] == 0 && r->metrics_buf.len > 0))
                return fail(r, "protocol_error", DCMS_ERR_UNAVAILABLE,
                            "a result part out of order");
            struct dcms_buf *b = body[0] == 0 ? &r->model_buf : &r->metrics_buf;
            if (body[0] == 0 && (int64_t)(b->len + len - 1) > cap)
                return fail(r, "model_too_large", DCMS_ERR_TOO_LARGE,
                            "the model is larger than terms.output.max_model_bytes (%lld)",
                            (long long)cap);
            if (dcms_buf_append(b, body + 1, len - 1))
                return fail(r, body[0] == 0 ? "model_too_large" : "protocol_error",
                            DCMS_ERR_TOO_LARGE, "the result is too large");
            break;
        }
        case F_TRAIN_RESULT_END: {
            if (len != 16 + SHA384_LEN)
                return fail(r, "protocol_error", DCMS_ERR_UNAVAILABLE, "a malformed result end");
            uint64_t ml = 0, xl = 0;
            for (int i = 0; i < 8; i++) {
                ml = ml << 8 | body[i];
                xl = xl << 8 | body[8 + i];
            }
            unsigned char sha[SHA384_LEN];
            sha384_result(r, sha);
            if (ml != r->model_buf.len || xl != r->metrics_buf.len)
                return fail(r, "result_invalid", DCMS_ERR_VALIDATION,
                            "the result's lengths (%llu, %llu) are not what came (%zu, %zu)",
                            (unsigned long long)ml, (unsigned long long)xl, r->model_buf.len,
                            r->metrics_buf.len);
            if (sodium_memcmp(sha, body + 16, SHA384_LEN) != 0)
                return fail(r, "result_invalid", DCMS_ERR_VALIDATION,
                            "the result's SHA-384 is not the hash of what came");
            memcpy(r->result_sha, sha, SHA384_LEN);
            r->model_len = ml;
            r->metrics_len = xl;
            r->ended = true;
            return DCMS_OK;
        }
        case F_TRAIN_ERROR:
            return fail(r, "trainer_error", DCMS_ERR_VALIDATION,
                        "the trainer refused the job: %.*s", (int)(len > 200 ? 200 : len),
                        (const char *)body);
        case F_ATTEST_RESP:
            return fail(r, "protocol_error", DCMS_ERR_UNAVAILABLE,
                        "an attestation before the result");
        default:
            return fail(r, "protocol_error", DCMS_ERR_UNAVAILABLE, "unexpected frame %u", type);
        }
    }
}

static bool same(double a, double b)
{
    return fabs(a - b) <= 1e-12 * fabs(b);
}

/* Whether the trainer's own record of its DP-SGD (metrics.dp) is the run reserved and recorded. */
static bool dp_as_priced(const struct tr_dp *dp, const json_t *m)
{
    const json_t *steps = json_object_get(m, "steps");
    return json_is_object(m) && json_is_integer(steps) &&
           (uint64_t)json_integer_value(steps) == dp->steps &&
           same(json_number_value(json_object_get(m, "noise_multiplier")), dp->sigma) &&
           same(json_number_value(json_object_get(m, "max_grad_norm")), dp->max_grad_norm) &&
           same(json_number_value(json_object_get(m, "sample_rate")), dp->q);
}

/* The result's attestation, then the model stored and the job succeeded in one transaction. */
static enum dcms_err validate_and_store(struct run *r)
{
    enum dcms_err e;
    uint8_t type = 0;
    const uint8_t *body = NULL, *doc = NULL;
    size_t len = 0, doc_len = 0;
    if ((e = recv_frame(r, &type, &body, &len)))
        return e;
    if (type != F_ATTEST_RESP)
        return fail(r, "protocol_error", DCMS_ERR_UNAVAILABLE,
                    "frame %u instead of the result's attestation", type);
    if ((e = attest_doc(r, body, len, &doc, &doc_len)))
        return fail(r, "result_attestation_failed", e, "%s", r->ei.message);
    struct dcms_enclave_evidence ev;
    memset(&ev, 0, sizeof(ev));
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    if ((e = dcms_enclave_session_verify(r->s, doc, doc_len, r->result_nonce,
                                         sizeof(r->result_nonce), &ev, &ei)))
        return fail(r, "result_attestation_failed", e,
                    "the result's attestation does not verify: %s", ei.message);
    bool bound = ev.user_data_len == SHA384_LEN &&
                 sodium_memcmp(ev.user_data, r->result_sha, SHA384_LEN) == 0;
    char pcr0[97];
    snprintf(pcr0, sizeof(pcr0), "%s", ev.pcr0);
    char ts[DCMS_TIME_STRLEN];
    dcms_time_format(ev.timestamp_ms * 1000, ts);
    dcms_enclave_evidence_free(&ev);
    if (!bound)
        return fail(r, "result_attestation_failed", DCMS_ERR_VALIDATION,
                    "the result's attestation does not bind its hash (user_data)");
    int64_t cap = max_model_bytes(r);
    if ((int64_t)r->model_len > cap)
        return fail(r, "model_too_large", DCMS_ERR_TOO_LARGE,
                    "the model is larger than terms.output.max_model_bytes (%lld)", (long long)cap);
    json_t *metrics = json_loadb(r->metrics_buf.ptr ? r->metrics_buf.ptr : "", r->metrics_buf.len,
                                 JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(metrics)) {
        json_decref(metrics);
        return fail(r, "result_invalid", DCMS_ERR_VALIDATION, "the metrics are not a JSON object");
    }
    if (r->dp.on && !dp_as_priced(&r->dp, json_object_get(metrics, "dp"))) {
        json_decref(metrics);
        return fail(r, "result_invalid", DCMS_ERR_VALIDATION,
                    "the trainer's DP-SGD (metrics dp: sigma, C, q, steps) is not the run that "
                    "was priced");
    }
    char *metrics_text = dcms_json_dump(metrics, NULL);
    json_decref(metrics);
    char sha_hex[65], rsha_hex[2 * SHA384_LEN + 1], rn_hex[2 * NONCE_LEN + 1];
    unsigned char msha[DCMS_SHA256_LEN];
    if (dcms_digest_sha256(r->model_buf.ptr ? r->model_buf.ptr : "", r->model_buf.len, msha)) {
        free(metrics_text);
        return fail(r, "internal", DCMS_ERR_CRYPTO, "cannot hash the model");
    }
    hex_of(sha_hex, msha, sizeof(msha));
    hex_of(rsha_hex, r->result_sha, SHA384_LEN);
    hex_of(rn_hex, r->result_nonce, NONCE_LEN);
    json_t *att = json_pack("{s:b, s:s, s:s, s:s, s:s}", "verified", true, "nonce", rn_hex,
                            "user_data_sha384", rsha_hex, "pcr0", pcr0, "timestamp", ts);
    char *att_text = att ? dcms_json_dump(att, NULL) : NULL;
    json_decref(att);
    if (!metrics_text || !att_text) {
        free(metrics_text);
        free(att_text);
        return fail(r, "internal", DCMS_ERR_NOMEM, "out of memory");
    }
    struct dcms_store_tx *tx = NULL;
    char dek_id[DCMS_UUID_STRLEN] = "";
    bool moved = false;
    dcms_errinfo_init(&ei, NULL);
    e = dcms_store_begin(r->app->store, DCMS_TX_WRITE, &tx, &ei);
    if (!e)
        e = tr_model_seal(r->app, tx, r->id, (const unsigned char *)r->model_buf.ptr,
                          r->model_buf.len, dek_id, &ei);
    if (!e) {
        struct dcms_derived d = {.contract_id = r->contract_id,
                                 .dataset_id = r->ndatasets == 1 ? r->datasets[0] : NULL,
                                 .kind = "model",
                                 .ref = r->id,
                                 .dek_id = dek_id,
                                 .created_by = "system"};
        e = dcms_datasets_derived_add(tx, &d, NULL, &ei);
    }
    if (!e) {
        struct tr_change ch = {.model_dek_id = dek_id,
                               .model_sha256 = sha_hex,
                               .metrics = metrics_text,
                               .result_attestation = att_text,
                               .model_size = (int64_t)r->model_len};
        e = tr_transition_tx(r->app, tx, r->id, "validating", "succeeded", &ch, NULL, NULL,
                             json_pack("{s:s, s:I, s:s, s:s, s:s}", "enclave_id", r->enclave_id,
                                       "model_size", (json_int_t)r->model_len, "model_sha256",
                                       sha_hex, "result_sha384", rsha_hex, "result_nonce", rn_hex),
                             &moved, &ei);
    }
    if (tx)
        e = e || !moved ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, &ei);
    free(metrics_text);
    free(att_text);
    if (e)
        return fail(r, "internal", e, "cannot store the model: %s", ei.message);
    if (!moved)
        return fail(r, "cancelled", DCMS_ERR_CONFLICT, "the job was cancelled");
    tr_notify(r->t, r->id);
    snprintf(r->state, sizeof(r->state), "succeeded");
    return DCMS_OK;
}

static enum dcms_err run_steps(struct run *r)
{
    enum dcms_err e;
    if ((e = load_job(r)))
        return e;
    r->deadline_ms = now_ms() + tr_timeout_s(r->app, "provisioning") * 1000;
    if ((e = check_terms(r)))
        return e;
    mark(r, "load_check");
    if ((e = provision(r)))
        return e;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    if ((e = dcms_enclaves_session_open(r->app->enclaves, r->enclave_id, &r->s, &ei)))
        return fail(r, "provisioning_failed", e, "cannot open the enclave's channel: %s",
                    ei.message);
    mark(r, "session");
    struct dcms_enclave_evidence ev;
    memset(&ev, 0, sizeof(ev));
    if ((e = attest(r, &ev)))
        return e;
    mark(r, "attest");
    e = release(r, &ev);
    dcms_enclave_evidence_free(&ev);
    if (e || (e = collect(r)))
        return e;
    mark(r, "result");
    if ((e = move(r, "validating", NULL, NULL, NULL)))
        return e;
    mark(r, "to_validating");
    e = validate_and_store(r);
    mark(r, "validate_store");
    return e;
}

static bool stopping(struct dcms_training *t)
{
    pthread_mutex_lock(&t->mu);
    bool s = t->stopping;
    pthread_mutex_unlock(&t->mu);
    return s;
}

/* One log line: the milliseconds each step of the job took on this worker. */
static void log_profile(const struct run *r)
{
    char line[512];
    size_t n = 0;
    int64_t prev = r->t0_us;
    for (unsigned i = 0; i < r->nmarks && n < sizeof(line); i++) {
        int w = snprintf(line + n, sizeof(line) - n, "%s%s=%.1f", i ? " " : "", r->marks[i].step,
                         (double)(r->marks[i].at_us - prev) / 1000.0);
        if (w < 0)
            break;
        n += (size_t)w;
        prev = r->marks[i].at_us;
    }
    DCMS_LOG(DCMS_LOG_INFO, "training", "job %s steps (ms): %s", r->id, n ? line : "none");
}

void tr_run_job(struct dcms_training *t, const char *id, struct tr_slot *slot)
{
    struct run *r = calloc(1, sizeof(*r));
    if (!r) {
        DCMS_LOG(DCMS_LOG_ERROR, "training", "out of memory running job %s", id);
        return;
    }
    r->t = t;
    r->app = t->app;
    r->slot = slot;
    r->id = id;
    r->last_look_ms = now_ms();
    r->t0_us = dcms_clock_mono_us();
    snprintf(r->state, sizeof(r->state), "provisioning");
    dcms_errinfo_init(&r->ei, NULL);
    dcms_buf_init_secret(&r->model_buf, TR_DEFAULT_MAX_MODEL_BYTES * 16u);
    dcms_buf_init(&r->metrics_buf, MAX_METRICS_BYTES);
    enum dcms_err e = run_steps(r);
    log_profile(r);
    dcms_enclave_session_close(r->s);
    r->s = NULL;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    if (r->enclave_id[0] &&
        dcms_enclaves_retire(r->app->enclaves, r->enclave_id, "the training job ended", NULL, &ei))
        DCMS_LOG(DCMS_LOG_WARN, "training", "cannot retire enclave %s: %s", r->enclave_id,
                 ei.message);
    if (e) {
        const char *code = r->fail_code ? r->fail_code : "internal";
        bool cancelled = strcmp(code, "cancelled") == 0;
        if (!cancelled) {
            struct tr_change ch = {.reason_code = code, .reason = r->ei.message, .model_size = -1};
            bool moved = false;
            dcms_errinfo_init(&ei, NULL);
            if (tr_transition(r->app, id, NULL, "failed", &ch, NULL, NULL,
                              json_pack("{s:s}", "enclave_id", r->enclave_id), &moved, &ei))
                DCMS_LOG(DCMS_LOG_WARN, "training", "cannot fail job %s: %s", id, ei.message);
        } else if (stopping(t)) {
            /* this node stops: the job cannot go on */
            struct tr_change ch = {.reason_code = "node_stopped",
                                   .reason = "dcmsd stopped during the job",
                                   .model_size = -1};
            bool moved = false;
            dcms_errinfo_init(&ei, NULL);
            if (tr_transition(r->app, id, NULL, "failed", &ch, NULL, NULL, NULL, &moved, &ei))
                DCMS_LOG(DCMS_LOG_WARN, "training", "cannot fail job %s: %s", id, ei.message);
        }
        DCMS_LOG(DCMS_LOG_INFO, "training", "job %s ended: %s: %s", id, code, r->ei.message);
    }
    dcms_buf_release(&r->model_buf);
    dcms_buf_release(&r->metrics_buf);
    json_decref(r->request);
    json_decref(r->terms.terms);
    free(r);
}
