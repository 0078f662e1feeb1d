/*
 * The training service: starting a job (authorization, the terms checks,
 * the atomic run count), reading, listing, cancelling, the model download,
 * the event stream, the state changes with their events and audit records,
 * the contract listener (a suspended or ended contract cancels its jobs)
 * and the worker pool. The job itself runs in training_runner.c.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dcms/app.h"
#include "dcms/audit.h"
#include "dcms/clock.h"
#include "dcms/config.h"
#include "dcms/contracts.h"
#include "dcms/crypto.h"
#include "dcms/datasets.h"
#include "dcms/enclaves.h"
#include "dcms/iam.h"
#include "dcms/json.h"
#include "dcms/keys.h"
#include "dcms/log.h"
#include "dcms/nodes.h"
#include "dcms/privacy.h"
#include "dcms/store.h"
#include "dcms/str.h"
#include "training/training_int.h"

/* ---- checks ---- */

static bool json_array_has(const json_t *a, const char *s)
{
    size_t i;
    const json_t *v;
    json_array_foreach(a, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), s) == 0)
            return true;
    }
    return false;
}

enum dcms_err tr_check_terms(struct dcms_app *app, const char *contract_id, const char *model,
                             const char *const *datasets, size_t n, const char **code,
                             struct dcms_contract_terms *terms, struct dcms_errinfo *ei)
{
    struct dcms_contract_terms t;
    *code = NULL;
    enum dcms_err e = dcms_contracts_terms_of(app, contract_id, &t, ei);
    if (e) {
        *code = e == DCMS_ERR_NOT_FOUND ? "contract_not_found" : "internal";
        return e;
    }
    const json_t *da = json_object_get(t.terms, "data_access");
    const json_t *usage = json_object_get(t.terms, "usage");
    if (strcmp(t.sec.status, "active") != 0) {
        *code = "contract_not_active";
        e = dcms_err_set(ei, DCMS_ERR_CONFLICT, "the contract is %s, not active", t.sec.status);
        goto out;
    }
    if (!json_array_has(json_object_get(da, "permissions"), "train")) {
        *code = "training_not_permitted";
        e = dcms_err_set(ei, DCMS_ERR_FORBIDDEN,
                         "the contract's terms.data_access.permissions do not include train");
        goto out;
    }
    if (!json_array_has(json_object_get(usage, "allowed_model_types"), model)) {
        *code = "model_type_not_allowed";
        e = dcms_err_field(ei, "model",
                           "%s is not among the contract's "
                           "terms.usage.allowed_model_types",
                           model);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        char path[32];
        snprintf(path, sizeof(path), "datasets[%zu]", i);
        struct dcms_dataset_ref ref;
        struct dcms_errinfo lei;
        dcms_errinfo_init(&lei, NULL);
        if (!json_array_has(json_object_get(da, "datasets"), datasets[i])) {
            *code = "dataset_not_in_scope";
            dcms_err_field(ei, path, "is not in the contract's terms.data_access.datasets");
            continue;
        }
        enum dcms_err re = dcms_datasets_ref(app, datasets[i], &ref, &lei);
        if (re == DCMS_ERR_NOT_FOUND || (!re && strcmp(ref.provider_id, t.sec.provider_id) != 0)) {
            *code = "dataset_not_in_scope";
            dcms_err_field(ei, path, "is not a dataset of the contract's provider");
        } else if (re) {
            *code = "internal";
            e = dcms_err_set(ei, re, "%s", lei.message);
            goto out;
        } else if (strcmp(ref.status, "ready") != 0) {
            if (!*code)
                *code = "dataset_not_ready";
            dcms_err_field(ei, path, "the dataset is %s, not ready", ref.status);
        }
    }
    e = ei->code;
out:
    if (!e && terms)
        *terms = t;
    else
        json_decref(t.terms);
    return e;
}

/* ---- authorization ---- */

static bool member_of(const struct dcms_principal *p, const char *party)
{
    return p && party && (strcmp(p->id, party) == 0 || (p->org[0] && strcmp(p->org, party) == 0));
}

/*
 * The one decision for the jobs of a contract: whoever may not read the
 * contract learns nothing (404, as the contract service answers), then
 * `action` ("training:read", "training:run") through dcms_iam_authorize.
 */
static enum dcms_err authorize(const struct tr_call *c, const struct dcms_contract_security *cs,
                               const char *action)
{
    const char *parties[2] = {cs->provider_id, cs->consumer_id};
    struct dcms_iam_resource res = {
        .type = "contract", .id = cs->id, .parties = parties, .nparties = 2, .scoped = true};
    struct dcms_iam_ctx ctx = {c->app->iam, c->client_ip};
    if (dcms_iam_authorize(c->p, "contracts:read", &res, &ctx, c->ei)) {
        dcms_errinfo_init(c->ei, c->ei->arena);
        return dcms_err_set(c->ei, DCMS_ERR_NOT_FOUND, "not found");
    }
    return dcms_iam_authorize(c->p, action, &res, &ctx, c->ei);
}

enum dcms_err tr_check_member(struct dcms_app *app, const char *identity_id,
                              const struct dcms_contract_security *cs, struct dcms_errinfo *ei)
{
    struct dcms_store_tx *tx = NULL;
    struct dcms_iam_party party;
    struct dcms_errinfo lei;
    dcms_errinfo_init(&lei, NULL);
    enum dcms_err e = dcms_store_begin(app->store, DCMS_TX_READ, &tx, &lei);
    if (!e)
        e = dcms_iam_party_get(tx, identity_id, &party, &lei);
    dcms_store_rollback(tx);
    if (e == DCMS_ERR_NOT_FOUND)
        return dcms_err_set(ei, DCMS_ERR_FORBIDDEN, "the identity that started the job is gone");
    if (e)
        return dcms_err_set(ei, e, "cannot read the identity that started the job: %s",
                            lei.message);
    if (strcmp(party.status, "active") != 0)
        return dcms_err_set(ei, DCMS_ERR_FORBIDDEN,
                            "the identity that started the job is %s, not active", party.status);
    struct dcms_principal p = {.roles = party.roles};
    snprintf(p.id, sizeof(p.id), "%s", identity_id);
    snprintf(p.org, sizeof(p.org), "%s", party.org);
    if (!member_of(&p, cs->consumer_id) || !(p.roles & DCMS_ROLE_CONSUMER))
        return dcms_err_set(ei, DCMS_ERR_FORBIDDEN,
                            "the identity that started the job is no longer an authorised "
                            "member of the consumer side");
    const char *parties[2] = {cs->provider_id, cs->consumer_id};
    struct dcms_iam_resource res = {
        .type = "contract", .id = cs->id, .parties = parties, .nparties = 2, .scoped = true};
    struct dcms_iam_ctx ctx = {app->iam, NULL};
    if (dcms_iam_authorize(&p, "training:run", &res, &ctx, NULL))
        return dcms_err_set(ei, DCMS_ERR_FORBIDDEN,
                            "the identity that started the job may no longer run trainings "
                            "under the contract");
    return DCMS_OK;
}

static enum dcms_err consumer_only(const struct tr_call *c, const struct dcms_contract_security *cs,
                                   const char *what)
{
    if (member_of(c->p, cs->consumer_id) && (c->p->roles & DCMS_ROLE_CONSUMER))
        return DCMS_OK;
    return dcms_err_set(c->ei, DCMS_ERR_FORBIDDEN,
                        "only an authorised member of the consumer side may %s", what);
}

/* ---- audit and state changes ---- */

enum dcms_err tr_audit(struct dcms_app *app, const char *actor, const char *client_ip,
                       const char *request_id, const char *action, const char *id, json_t *details,
                       char *event_id, struct dcms_errinfo *ei)
{
    struct dcms_store_tx *tx = NULL;
    enum dcms_err e = dcms_store_begin(app->store, DCMS_TX_WRITE, &tx, ei);
    if (e) {
        json_decref(details);
        return e;
    }
    struct dcms_audit_who who = {actor, client_ip, request_id};
    e = dcms_audit_change_id(app->audit, tx, &who, "training", action, id, details, event_id, ei);
    return e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, ei);
}

/*
 * A run that ends (failed, cancelled) gives back its privacy reservation in
 * the transaction of its state change; one charged at its key release keeps
 * the charge. A run with nothing reserved (not DP, or no terms.privacy) has
 * nothing to give back.
 */
static enum dcms_err release_privacy(struct dcms_app *app, struct dcms_store_tx *tx,
                                     const struct dcms_audit_who *who, const char *id,
                                     struct dcms_errinfo *ei)
{
    struct dcms_errinfo lei;
    dcms_errinfo_init(&lei, NULL);
    enum dcms_err e = dcms_privacy_budget_release(tx, app->audit, who, id, NULL, &lei);
    if (e == DCMS_ERR_NOT_FOUND)
        return DCMS_OK;
    return e ? dcms_err_set(ei, e, "cannot return the privacy reservation: %s", lei.message)
             : DCMS_OK;
}

/* The state change inside `tx`: the row, its event, its audit record, the privacy release. */
enum dcms_err tr_transition_tx(struct dcms_app *app, struct dcms_store_tx *tx, const char *id,
                               const char *from, const char *to, const struct tr_change *ch,
                               const char *actor, const char *request_id, json_t *details,
                               bool *moved, struct dcms_errinfo *ei)
{
    char now[DCMS_TIME_STRLEN];
    dcms_time_format(dcms_clock_now_us(), now);
    enum dcms_err e = tr_store_move(tx, id, from, to, ch, now, moved, ei);
    if (e || !*moved) {
        json_decref(details);
        return e;
    }
    json_t *ev = json_pack("{s:s, s:o, s:o}", "state", to, "reason_code",
                           ch && ch->reason_code ? json_string(ch->reason_code) : json_null(),
                           "reason", ch && ch->reason ? json_string(ch->reason) : json_null());
    char *text = ev ? dcms_json_dump(ev, NULL) : NULL;
    json_decref(ev);
    if (!text) {
        json_decref(details);
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    }
    e = tr_store_event(tx, id, "state", text, now, NULL, ei);
    free(text);
    if (e) {
        json_decref(details);
        return e;
    }
    /* A job that ends before any key was released gives its run back (no data moved). */
    bool ends = strcmp(to, "failed") == 0 || strcmp(to, "cancelled") == 0, given = false;
    if (ends && (e = tr_store_give_back_run(tx, id, &given, ei))) {
        json_decref(details);
        return e;
    }
    if (!details)
        details = json_object();
    if (details) {
        if (ends)
            json_object_set_new(details, "run_returned", json_boolean(given));
        json_object_set_new(details, "to", json_string(to));
        if (ch && ch->reason_code)
            json_object_set_new(details, "reason_code", json_string(ch->reason_code));
        if (ch && ch->reason)
            json_object_set_new(details, "reason", json_string(ch->reason));
    }
    char action[48];
    snprintf(action, sizeof(action), "training.%s", to);
    struct dcms_audit_who who = {actor, NULL, request_id};
    if ((e = dcms_audit_change(app->audit, tx, &who, "training", action, id, details, ei)))
        return e;
    return ends ? release_privacy(app, tx, &who, id, ei) : DCMS_OK;
}

enum dcms_err tr_transition(struct dcms_app *app, const char *id, const char *from, const char *to,
                            const struct tr_change *ch, const char *actor, const char *request_id,
                            json_t *details, bool *moved, struct dcms_errinfo *ei)
{
    struct dcms_store_tx *tx = NULL;
    enum dcms_err e = dcms_store_begin(app->store, DCMS_TX_WRITE, &tx, ei);
    if (e) {
        json_decref(details);
        return e;
    }
    e = tr_transition_tx(app, tx, id, from, to, ch, actor, request_id, details, moved, ei);
    e = e || !*moved ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, ei);
    if (!e && *moved)
        tr_notify(app->training, id);
    return e;
}

/* ---- the API ---- */

static int64_t max_runs_of(const json_t *terms)
{
    const json_t *v = json_object_get(json_object_get(terms, "usage"), "max_training_runs");
    return json_is_integer(v) ? json_integer_value(v) : 0;
}

enum dcms_err tr_start(const struct tr_call *c, const char *contract_id,
                       const struct tr_request *rq, json_t **out)
{
    struct dcms_contract_terms t = {0};
    struct dcms_store_tx *tx = NULL;
    struct dcms_store_rows *rows = NULL;
    char *request_text = NULL;
    json_t *request = NULL;
    *out = NULL;
    struct dcms_errinfo lei;
    dcms_errinfo_init(&lei, NULL);
    enum dcms_err e = contract_id && dcms_uuid_valid(contract_id)
                          ? dcms_contracts_terms_of(c->app, contract_id, &t, &lei)
                          : DCMS_ERR_NOT_FOUND;
    if (e)
        return e == DCMS_ERR_NOT_FOUND ? dcms_err_set(c->ei, e, "contract not found")
                                       : dcms_err_set(c->ei, e, "%s", lei.message);
    if ((e = authorize(c, &t.sec, "training:run")) ||
        (e = consumer_only(c, &t.sec, "start a training")))
        goto out;
    json_decref(t.terms);
    t.terms = NULL;
    const char *code = NULL;
    if ((e = tr_check_terms(c->app, contract_id, rq->model, rq->datasets, rq->ndatasets, &code, &t,
                            c->ei)))
        goto out;
    uint64_t data_rows = 0;
    if (rq->dp && (e = tr_dp_rows(c->app, rq, &data_rows, c->ei)))
        goto out;
    request = json_deep_copy(rq->config);
    json_t *ds = json_array();
    for (size_t i = 0; ds && i < rq->ndatasets; i++)
        json_array_append_new(ds, json_string(rq->datasets[i]));
    if (!request || !ds || json_object_set_new(request, "datasets", ds)) {
        e = dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
        goto out;
    }
    char id[DCMS_UUID_STRLEN], now[DCMS_TIME_STRLEN], deadline[DCMS_TIME_STRLEN];
    dcms_uuid_v7(id);
    int64_t now_us = dcms_clock_now_us();
    dcms_time_format(now_us, now);
    dcms_time_format(now_us + tr_timeout_s(c->app, "queued") * 1000000, deadline);
    if ((e = dcms_store_begin(c->app->store, DCMS_TX_WRITE, &tx, c->ei)))
        goto out;
    bool taken = false;
    int64_t max_runs = max_runs_of(t.terms);
    if ((e = tr_store_take_run(tx, contract_id, max_runs, &taken, c->ei)))
        goto out;
    if (!taken) {
        e = dcms_err_set(c->ei, DCMS_ERR_CONFLICT,
                         "the contract's %lld training runs (terms.usage.max_training_runs) are "
                         "used up",
                         (long long)max_runs);
        dcms_err_field(c->ei, "contract.max_training_runs", "runs_exhausted");
        goto out;
    }
    /* The run's epsilon is reserved with the job: both commit or neither does. */
    struct dcms_audit_who who = {c->p->id, c->client_ip, c->request_id};
    struct tr_dp dp;
    if ((e = tr_dp_reserve(c->app, tx, &who, contract_id, id, rq, data_rows, &dp, c->ei)))
        goto out;
    /* The privacy record travels with the stored request (the job shows it as `privacy`). */
    if ((dp.on && json_object_set_new(request, "privacy", tr_dp_json(&dp))) ||
        !(request_text = dcms_json_dump(request, NULL))) {
        e = dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
        goto out;
    }
    struct tr_new_job j = {id,       contract_id,  t.sec.consumer_id, t.sec.provider_id,
                           c->p->id, request_text, rq->model,         now,
                           deadline};
    if ((e = tr_store_insert(tx, &j, c->ei)) ||
        (e = tr_store_event(tx, id, "state", "{\"state\":\"queued\"}", now, NULL, c->ei)))
        goto out;
    if ((e = dcms_audit_change(c->app->audit, tx, &who, "training", "training.start", id,
                               json_pack("{s:s, s:s, s:O, s:s, s:I, s:o}", "contract_id",
                                         contract_id, "model", rq->model, "datasets", ds,
                                         "terms_hash", t.terms_hash, "max_training_runs",
                                         (json_int_t)max_runs, "privacy", tr_dp_json(&dp)),
                               c->ei)))
        goto out;
    if ((e = tr_store_load(tx, id, &rows, c->ei)))
        goto out;
    *out = tr_job_json(rows, 0);
    e = *out ? dcms_store_commit(tx, c->ei) : dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
    tx = NULL;
    if (!e)
        tr_kick(c->app->training);
out:
    if (tx)
        dcms_store_rollback(tx);
    if (e) {
        json_decref(*out);
        *out = NULL;
    }
    dcms_store_rows_free(rows);
    free(request_text);
    json_decref(request);
    json_decref(t.terms);
    return e;
}

/* Loads job `id` and decides `action` on it; *rows holds the row on success. */
static enum dcms_err load_authorized(const struct tr_call *c, const char *id, const char *action,
                                     struct dcms_store_rows **rows,
                                     struct dcms_contract_security *cs)
{
    struct dcms_store_tx *tx = NULL;
    *rows = NULL;
    enum dcms_err e = dcms_store_begin(c->app->store, DCMS_TX_READ, &tx, c->ei);
    if (e)
        return e;
    e = tr_store_load(tx, id, rows, c->ei);
    dcms_store_rollback(tx);
    if (e)
        return e;
    struct dcms_errinfo lei;
    dcms_errinfo_init(&lei, NULL);
    if (dcms_contracts_security_of(c->app, dcms_store_rows_text(*rows, 0, TC_CONTRACT), cs, &lei))
        e = dcms_err_set(c->ei, DCMS_ERR_NOT_FOUND, "training not found");
    else if ((e = authorize(c, cs, action)) == DCMS_ERR_NOT_FOUND)
        dcms_err_set(c->ei, DCMS_ERR_NOT_FOUND, "training not found");
    if (e) {
        dcms_store_rows_free(*rows);
        *rows = NULL;
    }
    return e;
}

enum dcms_err tr_load_authorized(const struct tr_call *c, const char *id, const char *action)
{
    struct dcms_store_rows *rows = NULL;
    struct dcms_contract_security cs;
    enum dcms_err e = load_authorized(c, id, action, &rows, &cs);
    dcms_store_rows_free(rows);
    return e;
}

enum dcms_err dcms_training_authorize_read(struct dcms_app *app, const struct dcms_principal *p,
                                           const char *client_ip, const char *id,
                                           struct dcms_errinfo *ei)
{
    struct tr_call c = {app, p, ei, NULL, client_ip};
    enum dcms_err e = tr_load_authorized(&c, id, "training:read");
    if (e == DCMS_ERR_FORBIDDEN) { /* may read the contract, not its trainings: hidden too */
        dcms_errinfo_init(ei, ei->arena);
        e = dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "training not found");
    }
    return e;
}

enum dcms_err tr_get(const struct tr_call *c, const char *id, json_t **out)
{
    struct dcms_store_rows *rows = NULL;
    struct dcms_contract_security cs;
    enum dcms_err e = load_authorized(c, id, "training:read", &rows, &cs);
    if (e)
        return e;
    *out = tr_job_json(rows, 0);
    dcms_store_rows_free(rows);
    return *out ? DCMS_OK : dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
}

enum dcms_err tr_list(const struct tr_call *c, const char *contract_id, const char *cursor,
                      int64_t limit, json_t **out)
{
    struct dcms_contract_security cs;
    struct dcms_errinfo lei;
    dcms_errinfo_init(&lei, NULL);
    if (!contract_id || !dcms_uuid_valid(contract_id) ||
        dcms_contracts_security_of(c->app, contract_id, &cs, &lei))
        return dcms_err_set(c->ei, DCMS_ERR_NOT_FOUND, "contract not found");
    enum dcms_err e = authorize(c, &cs, "training:read");
    if (e == DCMS_ERR_NOT_FOUND)
        return dcms_err_set(c->ei, DCMS_ERR_NOT_FOUND, "contract not found");
    if (e)
        return e;
    struct dcms_store_tx *tx = NULL;
    struct dcms_store_rows *rows = NULL;
    if ((e = dcms_store_begin(c->app->store, DCMS_TX_READ, &tx, c->ei)))
        return e;
    e = tr_store_list(tx, contract_id, cursor, limit, &rows, c->ei);
    dcms_store_rollback(tx);
    if (!e) {
        *out = dcms_store_rows_page(rows, limit, TC_ID, "trainings", tr_job_json);
        e = *out ? DCMS_OK : dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
    }
    dcms_store_rows_free(rows);
    return e;
}

enum dcms_err tr_cancel(const struct tr_call *c, const char *id, json_t **out)
{
    struct dcms_store_rows *rows = NULL;
    struct dcms_contract_security cs;
    enum dcms_err e = load_authorized(c, id, "training:run", &rows, &cs);
    if (e)
        return e;
    if ((e = consumer_only(c, &cs, "cancel a training")))
        goto out;
    struct tr_change ch = {.reason_code = "cancelled_by_consumer",
                           .reason = "cancelled by the consumer",
                           .model_size = -1};
    bool moved = false;
    if ((e = tr_transition(c->app, id, NULL, "cancelled", &ch, c->p->id, c->request_id,
                           json_pack("{s:s}", "contract_id", cs.id), &moved, c->ei)))
        goto out;
    if (!moved) {
        e = dcms_err_set(c->ei, DCMS_ERR_CONFLICT, "the training has ended (%s)",
                         dcms_store_rows_text(rows, 0, TC_STATE));
        goto out;
    }
    tr_signal_cancel(c->app->training, id);
    e = tr_get(c, id, out);
out:
    dcms_store_rows_free(rows);
    return e;
}

/* The associated data of a stored model: "dcms.model.v1" NUL | the job id. */
static size_t model_aad(const char *job_id, unsigned char out[64])
{
    static const char tag[] = "dcms.model.v1";
    memcpy(out, tag, sizeof(tag));
    memcpy(out + sizeof(tag), job_id, 36);
    return sizeof(tag) + 36;
}

enum dcms_err tr_model_seal(struct dcms_app *app, struct dcms_store_tx *tx, const char *job_id,
                            const unsigned char *model, size_t len, char dek_id[DCMS_UUID_STRLEN],
                            struct dcms_errinfo *ei)
{
    struct dcms_dek *dek = NULL;
    unsigned char nonce[DCMS_AEAD_NONCE_LEN], aad[64];
    unsigned char *ct = malloc(len + DCMS_AEAD_TAG_LEN);
    if (!ct)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    enum dcms_err e = dcms_keys_dek_create(app->keys, tx, "model", job_id, &dek, ei);
    if (e)
        goto out;
    randombytes_buf(nonce, sizeof(nonce));
    size_t alen = model_aad(job_id, aad);
    if ((e = dcms_aead_seal(dcms_dek_bytes(dek), nonce, aad, alen, model, len, ct)))
        goto out;
    snprintf(dek_id, DCMS_UUID_STRLEN, "%s", dcms_dek_id(dek));
    e = tr_store_model_put(tx, job_id, dek_id, nonce, ct, len + DCMS_AEAD_TAG_LEN, ei);
out:
    dcms_dek_free(dek);
    free(ct);
    return e;
}

static bool provider_receives_model(const json_t *terms)
{
    return json_is_true(
        json_object_get(json_object_get(terms, "output"), "provider_receives_model"));
}

enum dcms_err tr_model(const struct tr_call *c, const char *id, unsigned char **model, size_t *len,
                       char *event_id)
{
    struct dcms_store_rows *rows = NULL, *mrows = NULL;
    struct dcms_contract_security cs;
    struct dcms_contract_terms t = {0};
    struct dcms_store_tx *tx = NULL;
    struct dcms_dek *dek = NULL;
    unsigned char *ct = NULL, *pt = NULL;
    *model = NULL;
    enum dcms_err e = load_authorized(c, id, "training:read", &rows, &cs);
    if (e)
        return e;
    bool consumer = member_of(c->p, cs.consumer_id) && (c->p->roles & DCMS_ROLE_CONSUMER);
    if (!consumer) {
        struct dcms_errinfo lei;
        dcms_errinfo_init(&lei, NULL);
        bool provider = member_of(c->p, cs.provider_id) && (c->p->roles & DCMS_ROLE_PROVIDER) &&
                        !dcms_contracts_terms_of(c->app, cs.id, &t, &lei) &&
                        provider_receives_model(t.terms);
        if (!provider) {
            e = dcms_err_set(c->ei, DCMS_ERR_FORBIDDEN,
                             "the model goes to the consumer only (unless the terms' "
                             "output.provider_receives_model says otherwise)");
            goto out;
        }
    }
    if (strcmp(dcms_store_rows_text(rows, 0, TC_STATE), "succeeded") != 0) {
        e = dcms_err_set(c->ei, DCMS_ERR_CONFLICT, "the training is %s: there is no model",
                         dcms_store_rows_text(rows, 0, TC_STATE));
        goto out;
    }
    if ((e = dcms_store_begin(c->app->store, DCMS_TX_READ, &tx, c->ei)))
        goto out;
    if ((e = tr_store_model_get(tx, id, &mrows, c->ei)))
        goto out;
    if ((e = dcms_keys_dek_open(c->app->keys, tx, dcms_store_rows_text(mrows, 0, 0), "model", &dek,
                                c->ei))) {
        if (e == DCMS_ERR_NOT_FOUND)
            dcms_err_set(c->ei, DCMS_ERR_NOT_FOUND, "the model was purged");
        goto out;
    }
    const char *nhex = dcms_store_rows_text(mrows, 0, 1), *chex = dcms_store_rows_text(mrows, 0, 2);
    size_t clen = chex ? strlen(chex) / 2 : 0, nlen = 0, got = 0;
    unsigned char nonce[DCMS_AEAD_NONCE_LEN], aad[64];
    ct = malloc(clen + 1);
    pt = malloc(clen + 1);
    if (!ct || !pt) {
        e = dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
        goto out;
    }
    if (!nhex || sodium_hex2bin(nonce, sizeof(nonce), nhex, strlen(nhex), NULL, &nlen, NULL) ||
        nlen != sizeof(nonce) ||
        sodium_hex2bin(ct, clen + 1, chex, strlen(chex), NULL, &got, NULL) || got != clen ||
        clen < DCMS_AEAD_TAG_LEN) {
        e = dcms_err_set(c->ei, DCMS_ERR_CRYPTO, "the stored model is unreadable");
        goto out;
    }
    size_t alen = model_aad(id, aad);
    if (dcms_aead_open(dcms_dek_bytes(dek), nonce, aad, alen, ct, clen, pt)) {
        e = dcms_err_set(c->ei, DCMS_ERR_CRYPTO, "the stored model does not authenticate");
        goto out;
    }
    *len = clen - DCMS_AEAD_TAG_LEN;
    dcms_store_rollback(tx);
    tx = NULL;
    if ((e = tr_audit(c->app, c->p->id, c->client_ip, c->request_id, "training.model_download", id,
                      json_pack("{s:s, s:I, s:s, s:s}", "contract_id", cs.id, "model_size",
                                (json_int_t)*len, "model_sha256",
                                dcms_store_rows_text(rows, 0, TC_MODEL_SHA), "as",
                                consumer ? "consumer" : "provider"),
                      event_id, c->ei)))
        goto out;
    *model = pt;
    pt = NULL;
out:
    dcms_dek_free(dek);
    free(ct);
    dcms_free_wiped(pt);
    dcms_store_rollback(tx);
    dcms_store_rows_free(mrows);
    dcms_store_rows_free(rows);
    json_decref(t.terms);
    return e;
}

/* ---- the contract listener: a contract that stops being Active cancels its jobs ---- */

static enum dcms_err on_contract(void *ctx, struct dcms_store_tx *tx,
                                 const struct dcms_contract_change *ch, struct dcms_errinfo *ei)
{
    struct dcms_training *t = ctx;
    if (!ch->to_status || strcmp(ch->to_status, "active") == 0)
        return DCMS_OK;
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = tr_store_inflight(tx, ch->contract_id, 1000, &rows, ei);
    if (e)
        return e;
    char code[48], reason[160];
    snprintf(code, sizeof(code), "contract_%s", ch->to_status);
    snprintf(reason, sizeof(reason), "the contract became %s (%s)", ch->to_status,
             ch->transition ? ch->transition : "");
    for (size_t i = 0; !e && i < dcms_store_rows_count(rows); i++) {
        struct tr_change c = {.reason_code = code, .reason = reason, .model_size = -1};
        bool moved = false;
        e = tr_transition_tx(t->app, tx, dcms_store_rows_text(rows, i, 0), NULL, "cancelled", &c,
                             ch->actor, ch->request_id,
                             json_pack("{s:s, s:s}", "contract_id", ch->contract_id, "cause",
                                       ch->transition ? ch->transition : ""),
                             &moved, ei);
    }
    dcms_store_rows_free(rows);
    return e;
}

static void on_contract_committed(void *ctx, const struct dcms_contract_change *ch)
{
    struct dcms_training *t = ctx;
    /* Jobs run only under an Active contract (on_contract cancels them when it leaves
     * Active, and a job starts only under an Active one): any other change has nothing
     * for the workers or the streams to see, and waking them costs each a store read. */
    if (!ch->from_status || strcmp(ch->from_status, "active") != 0)
        return;
    /* The workers see the cancelled state at their next look; wake those waiting. */
    pthread_mutex_lock(&t->mu);
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    tr_notify(t, NULL);
}

/* ---- retention: models are purged with what else was derived under the contract ---- */

static enum dcms_err purge_model(void *ctx, struct dcms_store_tx *tx, const char *ref,
                                 bool crypto_shred, struct dcms_errinfo *ei)
{
    (void)ctx;
    (void)crypto_shred;
    return tr_store_model_delete(tx, ref, ei);
}

/* ---- workers ---- */

void tr_kick(struct dcms_training *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->mu);
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

void tr_signal_cancel(struct dcms_training *t, const char *id)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->mu);
    for (unsigned i = 0; i < t->nworkers; i++)
        if (strcmp(t->slots[i].id, id) == 0)
            t->slots[i].cancel = true;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

/* Claims the oldest queued job (queued -> provisioning); "" when there is none. */
static void claim(struct dcms_training *t, char id[DCMS_UUID_STRLEN])
{
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_store_tx *tx = NULL;
    struct dcms_store_rows *rows = NULL;
    id[0] = '\0';
    if (dcms_store_begin(t->app->store, DCMS_TX_READ, &tx, &ei))
        return;
    char next[DCMS_UUID_STRLEN];
    enum dcms_err e = tr_store_next_queued(tx, next, &ei);
    if (!e && next[0])
        e = tr_store_load(tx, next, &rows, &ei);
    dcms_store_rollback(tx);
    if (e || !next[0])
        goto out;
    int64_t deadline = 0;
    const char *d = dcms_store_rows_text(rows, 0, TC_DEADLINE_AT);
    bool late = d && !dcms_time_parse(d, &deadline) && deadline < dcms_clock_now_us();
    char dl[DCMS_TIME_STRLEN];
    dcms_time_format(dcms_clock_now_us() + tr_timeout_s(t->app, "provisioning") * 1000000, dl);
    struct tr_change ch = {.deadline_at = late ? NULL : dl, .model_size = -1};
    if (late) {
        ch.reason_code = "deadline_exceeded";
        ch.reason = "the job waited in the queue past DCMS_TRAINING_QUEUED_TIMEOUT_S";
    }
    bool moved = false;
    /* The claim records this node as the job's owner in the same transaction (training_nodes.c). */
    struct dcms_store_tx *wtx = NULL;
    e = dcms_store_begin(t->app->store, DCMS_TX_WRITE, &wtx, &ei);
    if (!e)
        e = tr_transition_tx(t->app, wtx, next, "queued", late ? "failed" : "provisioning", &ch,
                             NULL, NULL, NULL, &moved, &ei);
    if (!e && moved && !late)
        e = tr_store_set_owner(wtx, next, dcms_nodes_self(t->app->nodes), &ei);
    if (wtx)
        e = e || !moved ? (dcms_store_rollback(wtx), e) : dcms_store_commit(wtx, &ei);
    if (e)
        DCMS_LOG(DCMS_LOG_WARN, "training", "cannot claim job %s: %s", next, ei.message);
    else if (moved && !late)
        memcpy(id, next, DCMS_UUID_STRLEN);
out:
    dcms_store_rows_free(rows);
}

static void *worker(void *arg)
{
    struct tr_slot *slot = arg;
    struct dcms_training *t = slot->owner;
    pthread_mutex_lock(&t->mu);
    while (!t->stopping) {
        pthread_mutex_unlock(&t->mu);
        char id[DCMS_UUID_STRLEN];
        claim(t, id);
        pthread_mutex_lock(&t->mu);
        if (id[0] && !t->stopping) {
            memcpy(slot->id, id, sizeof(id));
            slot->cancel = false;
            pthread_mutex_unlock(&t->mu);
            tr_run_job(t, id, slot);
            pthread_mutex_lock(&t->mu);
            slot->id[0] = '\0';
            continue;
        }
        if (t->stopping)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 2;
        pthread_cond_timedwait(&t->cv, &t->mu, &ts);
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

/*
 * A restart: the jobs this node's previous process had in flight (or that no
 * node recorded, from before node ids) cannot be resumed. Other nodes' jobs
 * are theirs; the leader's sweep handles those of a node that is gone.
 */
static void fail_interrupted(struct dcms_training *t)
{
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_store_tx *tx = NULL;
    struct dcms_store_rows *rows = NULL;
    if (dcms_store_begin(t->app->store, DCMS_TX_READ, &tx, &ei))
        return;
    char far[DCMS_TIME_STRLEN];
    dcms_time_format(dcms_clock_now_us() + 86400000000LL, far);
    const char *self = dcms_nodes_self(t->app->nodes);
    enum dcms_err e = tr_store_of_node(tx, self ? self : "", NULL, far, &rows, &ei);
    dcms_store_rollback(tx);
    for (size_t i = 0; !e && i < dcms_store_rows_count(rows); i++) {
        const char *id = dcms_store_rows_text(rows, i, 0),
                   *state = dcms_store_rows_text(rows, i, 1);
        const char *enclave = dcms_store_rows_text(rows, i, 2);
        char reason[160];
        snprintf(reason, sizeof(reason), "dcmsd restarted while the job was %s", state);
        struct tr_change ch = {.reason_code = "node_restarted", .reason = reason, .model_size = -1};
        bool moved = false;
        if (tr_transition(t->app, id, state, "failed", &ch, NULL, NULL, NULL, &moved, &ei))
            DCMS_LOG(DCMS_LOG_WARN, "training", "cannot fail job %s: %s", id, ei.message);
        if (enclave &&
            dcms_enclaves_retire(t->app->enclaves, enclave, "the training job ended", NULL, &ei))
            DCMS_LOG(DCMS_LOG_WARN, "training", "cannot retire enclave %s: %s", enclave,
                     ei.message);
    }
    dcms_store_rows_free(rows);
}

enum dcms_err dcms_training_open(struct dcms_app *app, struct dcms_training **out,
                                 struct dcms_errinfo *ei)
{
    struct dcms_training *t = calloc(1, sizeof(*t));
    if (!t)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    t->app = app;
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    pthread_cond_init(&t->hub_cv, NULL);
    enum dcms_err e = DCMS_OK;
    if ((e = tr_hub_start(t, ei)))
        goto fail;
    fail_interrupted(t);
    if (app->datasets && (e = dcms_datasets_on_purge(app->datasets, "model", purge_model, t, ei)))
        goto fail;
    if ((e = dcms_nodes_on_lost(app->nodes, tr_node_lost, t, ei)))
        goto fail;
    struct dcms_contracts_listener l = {on_contract, on_contract_committed, t};
    if ((e = dcms_contracts_listen(app->contracts, &l, ei)))
        goto fail;
    t->listening = true;
    unsigned n = (unsigned)app->cfg->training_workers;
    if (n > TR_MAX_WORKERS)
        n = TR_MAX_WORKERS;
    for (unsigned i = 0; i < n; i++) {
        t->slots[i].owner = t;
        if (pthread_create(&t->workers[i], NULL, worker, &t->slots[i]) != 0) {
            e = dcms_err_set(ei, DCMS_ERR_INTERNAL, "cannot start a training worker");
            goto fail;
        }
        t->nworkers++;
    }
    *out = t;
    return DCMS_OK;
fail:
    dcms_training_close(t);
    return e;
}

void dcms_training_close(struct dcms_training *t)
{
    if (!t)
        return;
    if (t->listening)
        dcms_contracts_unlisten(t->app->contracts, t);
    pthread_mutex_lock(&t->mu);
    t->stopping = true;
    for (unsigned i = 0; i < t->nworkers; i++)
        t->slots[i].cancel = true;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    for (unsigned i = 0; i < t->nworkers; i++)
        pthread_join(t->workers[i], NULL);
    tr_hub_stop(t);
    pthread_cond_destroy(&t->hub_cv);
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->mu);
    free(t);
}
