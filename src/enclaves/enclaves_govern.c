/*
 * The contract governs its enclaves. An enclave runs only for an Active
 * contract:
 * - a contract's status change reaches this file through the transition
 *   listener of dcms/contracts.h (registered at open). Inside the
 *   contract's own write transaction (record) every enclave bound to it is
 *   moved: Suspended when the contract is suspended (contract_hold
 *   "suspended"), Terminated when it is terminated or expires
 *   (contract_hold "terminated" while a workload may still run), each
 *   audited with the contract transition as its cause. A failure there
 *   rolls the contract's change back. After the commit (committed) the
 *   workloads are made to match: frozen, or killed and their scratch
 *   wiped; a contract resumed brings back the enclaves it had suspended,
 *   each only if it still meets the contract (and attests again).
 * - the reconcile pass calls enclave_govern_enforce() for every enclave it
 *   watches, so the same rule holds after a restart, after a change made
 *   by another node on the same store, or when a committed step failed.
 * Backend calls never run inside a transaction; each enclave is handled
 * under its striped lock, re-reading its row first.
 */
#include "dcms/app.h"
#include "dcms/clock.h"
#include "dcms/contracts.h"
#include "dcms/json.h"
#include "dcms/log.h"
#include "dcms/store.h"
#include "enclaves/enclaves_int.h"

static bool status_over(const char *s)
{
    return strcmp(s, "terminated") == 0 || strcmp(s, "expired") == 0;
}

/* The audit details of a cascaded change: its cause (stolen). */
static json_t *with_cause(json_t *cause)
{
    return cause ? json_pack("{s:o}", "cause", cause) : NULL;
}

static json_t *cause_of_change(const struct dcms_contract_change *ch)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:o}", "contract_id", ch->contract_id, "transition",
                     ch->transition, "from_status", ch->from_status, "to_status", ch->to_status,
                     "actor", enclave_str_or_null(ch->actor));
}

static json_t *cause_of_status(const char *contract_id, const char *status)
{
    return json_pack("{s:s, s:s, s:s}", "contract_id", contract_id, "contract_status", status,
                     "found_by", "reconcile");
}

/* ---- inside the contract's transaction ---- */

static enum dcms_err govern_record(void *ctx, struct dcms_store_tx *tx,
                                   const struct dcms_contract_change *ch, struct dcms_errinfo *ei)
{
    struct dcms_enclaves *en = ctx;
    bool end = status_over(ch->to_status);
    bool pause = !end && strcmp(ch->to_status, "active") != 0;
    if (!end && !pause)
        return DCMS_OK; /* back to Active: committed() resumes, outside the transaction */
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = enclave_store_of_contract(tx, ch->contract_id, &rows, ei);
    /* The audit actor is whoever changed the contract; the system for expiry. */
    struct dcms_principal who;
    memset(&who, 0, sizeof(who));
    if (ch->actor)
        snprintf(who.id, sizeof(who.id), "%s", ch->actor);
    struct enclave_call c = {.en = en,
                             .p = ch->actor ? &who : NULL,
                             .client_ip = ch->client_ip,
                             .request_id = ch->request_id,
                             .ei = ei};
    char reason[160];
    snprintf(reason, sizeof(reason), "%s with its contract (%s)", end ? "terminated" : "suspended",
             ch->transition);
    for (size_t i = 0; !e && i < dcms_store_rows_count(rows); i++) {
        const char *id = dcms_store_rows_text(rows, i, 0);
        const char *status = dcms_store_rows_text(rows, i, 1);
        bool live = strcmp(status, "running") == 0 || strcmp(status, "suspended") == 0;
        struct enclave_change chg = {.reason = reason, .set_reason = true, .set_hold = true};
        if (end && (live || strcmp(status, "failed") == 0)) {
            /* A workload may still run: the node that runs it stops it and clears the hold. */
            chg.hold = live ? "terminated" : NULL;
            e = enclave_apply_transition(&c, tx, id, ENCLAVE_EV_TERMINATE, ENCLAVE_BY_SYSTEM, &chg,
                                         "enclave.terminate", DCMS_AUDIT_SUCCESS,
                                         with_cause(cause_of_change(ch)), NULL);
        } else if (pause && strcmp(status, "running") == 0) {
            chg.hold = "suspended";
            e = enclave_apply_transition(&c, tx, id, ENCLAVE_EV_SUSPEND, ENCLAVE_BY_SYSTEM, &chg,
                                         "enclave.suspend", DCMS_AUDIT_SUCCESS,
                                         with_cause(cause_of_change(ch)), NULL);
        }
        /* Initializing ones are still being created: the creator's commit or reconcile settles
         * them (enclave_govern_enforce). */
    }
    dcms_store_rows_free(rows);
    return e;
}

/* ---- outside transactions ---- */

enum dcms_err enclave_govern_resume_check(const struct enclave_call *c, const struct enclave_row *r)
{
    if (!r->v[C_CONTRACT])
        return DCMS_OK;
    struct dcms_contract_security cs;
    struct dcms_errinfo cei;
    dcms_errinfo_init(&cei, NULL);
    if (dcms_contracts_security_of(c->en->app, r->v[C_CONTRACT], &cs, &cei))
        return dcms_err_set(c->ei, cei.code == DCMS_ERR_NOT_FOUND ? DCMS_ERR_CONFLICT : cei.code,
                            "the contract the enclave serves cannot be read");
    struct enclave_config cfg;
    struct dcms_errinfo pei;
    dcms_errinfo_init(&pei, NULL);
    json_t *cj = enclave_json_text(r->v[C_CONFIG]);
    enclave_config_from_json(cj, "", NULL, &cfg, &pei);
    json_decref(cj);
    if (pei.code)
        return dcms_err_set(c->ei, DCMS_ERR_INTERNAL, "the stored configuration is unreadable");
    return enclave_compat_gate(c, r->v[C_ID], &cs, &cfg);
}

/* Writes `hold` and `reason` on enclave `id` without a status change, audited as `action`. */
static enum dcms_err set_hold(struct dcms_enclaves *en, const char *id, const char *hold,
                              const char *reason, const char *action,
                              enum dcms_audit_outcome outcome, json_t *details,
                              struct dcms_errinfo *ei)
{
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    struct enclave_row r;
    char now[DCMS_TIME_STRLEN];
    dcms_time_format(dcms_clock_now_us(), now);
    enum dcms_err e = dcms_store_begin(en->app->store, DCMS_TX_WRITE, &tx, ei);
    if (e) {
        json_decref(details);
        return e;
    }
    if (!(e = enclave_store_load(tx, id, &rows, &r, ei))) {
        r.v[C_HOLD] = hold;
        if (reason)
            r.v[C_REASON] = reason;
        e = enclave_store_update(tx, &r, now, ei);
    }
    struct dcms_audit_who who = {NULL, NULL, NULL};
    if (!e)
        e = dcms_audit_change(en->app->audit, tx, &who, "enclave", action, id, details, ei);
    else
        json_decref(details);
    dcms_store_rows_free(rows);
    if (outcome != DCMS_AUDIT_SUCCESS)
        DCMS_LOG(DCMS_LOG_INFO, "enclaves", "enclave %s: %s", id, reason ? reason : action);
    return e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, ei);
}

/* Brings back an enclave its contract had suspended, if it still meets the contract. Locked. */
static enum dcms_err resume_held(struct dcms_enclaves *en, const struct enclave_row *r,
                                 json_t *cause /* stolen */, struct dcms_errinfo *ei)
{
    json_t *report = NULL;
    struct dcms_errinfo gei;
    dcms_errinfo_init(&gei, NULL);
    struct enclave_call c = {.en = en, .ei = &gei, .refusal = &report};
    enum dcms_err e = enclave_govern_resume_check(&c, r);
    if (e) {
        /* It stays suspended, now the owner's to decide about. */
        char reason[300];
        snprintf(reason, sizeof(reason), "not resumed with its contract: %s", gei.message);
        json_t *d = json_pack("{s:o, s:s, s:o}", "cause", cause, "reason", reason, "compatibility",
                              report ? report : json_null());
        return set_hold(en, r->v[C_ID], NULL, reason, "enclave.resume_refused", DCMS_AUDIT_SUCCESS,
                        d, ei);
    }
    struct dcms_enclave_backend *b = en->backend;
    struct dcms_errinfo bei;
    dcms_errinfo_init(&bei, NULL);
    if (!r->v[C_REF] || b->resume(b, r->v[C_REF], &bei)) {
        json_decref(cause);
        return dcms_err_set(ei, DCMS_ERR_UNAVAILABLE, "the backend cannot resume %s: %s",
                            r->v[C_ID], r->v[C_REF] ? bei.message : "no workload");
    }
    c = (struct enclave_call){.en = en, .ei = ei};
    struct enclave_verdict v;
    if ((e = enclave_attest_now(en, r, &v, ei))) {
        json_decref(cause);
        return e;
    }
    struct enclave_change ch = {.set_hold = true, .reason = NULL, .set_reason = true};
    e = enclave_settle_attestation(&c, r, ENCLAVE_EV_RESUME, ENCLAVE_BY_SYSTEM, &v, &ch,
                                   "enclave.resume", with_cause(cause), NULL);
    json_decref(v.attestation);
    return e;
}

enum dcms_err enclave_govern_enforce(struct dcms_enclaves *en, const char *id, bool startup,
                                     const struct dcms_contract_change *change,
                                     struct dcms_errinfo *ei)
{
    pthread_mutex_t *mu = enclave_lock_of(en, id);
    pthread_mutex_lock(mu);
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    struct enclave_row r;
    enum dcms_err e = dcms_store_begin(en->app->store, DCMS_TX_READ, &tx, ei);
    if (!e) {
        e = enclave_store_load(tx, id, &rows, &r, ei);
        dcms_store_rollback(tx);
    }
    if (e || strcmp(r.v[C_BACKEND], en->backend->name) != 0)
        goto out;
    struct dcms_enclave_backend *b = en->backend;
    const char *status = r.v[C_STATUS], *hold = r.v[C_HOLD], *ref = r.v[C_REF];
    struct dcms_enclave_probe pr;
    memset(&pr, 0, sizeof(pr));
    struct dcms_errinfo bei;
    dcms_errinfo_init(&bei, NULL);
    bool probed = ref && !b->probe(b, ref, &pr, &bei);

    if (strcmp(status, "terminated") == 0) {
        if (!hold || strcmp(hold, "terminated") != 0)
            goto out;
        /* Unknown here: another node may run it, unless this node just started. */
        if (probed && pr.state == DCMS_ENCLAVE_RUN_UNKNOWN && !startup)
            goto out;
        if (ref && b->terminate(b, ref, &bei)) {
            e = dcms_err_set(ei, DCMS_ERR_UNAVAILABLE, "cannot stop the workload of %s: %s", id,
                             bei.message);
            goto out;
        }
        e = set_hold(en, id, NULL, NULL, "enclave.workload_stopped", DCMS_AUDIT_SUCCESS,
                     json_pack("{s:s, s:o}", "reason", "its contract ended", "ref",
                               enclave_str_or_null(ref)),
                     ei);
        goto out;
    }
    bool running = strcmp(status, "running") == 0, suspended = strcmp(status, "suspended") == 0;
    if (!running && !suspended)
        goto out; /* initializing: its creator settles it; failed: nothing runs */
    struct dcms_contract_security cs;
    bool bound = r.v[C_CONTRACT] != NULL;
    if (bound) {
        struct dcms_errinfo cei;
        dcms_errinfo_init(&cei, NULL);
        if (dcms_contracts_security_of(en->app, r.v[C_CONTRACT], &cs, &cei)) {
            if (cei.code != DCMS_ERR_NOT_FOUND) {
                e = dcms_err_set(ei, cei.code, "%s", cei.message);
                goto out;
            }
            snprintf(cs.status, sizeof(cs.status), "terminated"); /* gone: nothing to serve */
        }
    }
    struct enclave_call sys = {.en = en, .ei = ei};
    char reason[200];
    if (bound && status_over(cs.status)) {
        if (ref && b->terminate(b, ref, &bei)) {
            e = dcms_err_set(ei, DCMS_ERR_UNAVAILABLE, "cannot stop the workload of %s: %s", id,
                             bei.message);
            goto out;
        }
        snprintf(reason, sizeof(reason), "terminated: its contract is %s", cs.status);
        struct enclave_change ch = {.reason = reason, .set_reason = true, .set_hold = true};
        e = enclave_commit_transition(&sys, id, ENCLAVE_EV_TERMINATE, ENCLAVE_BY_SYSTEM, &ch,
                                      "enclave.terminate", DCMS_AUDIT_SUCCESS,
                                      with_cause(cause_of_status(r.v[C_CONTRACT], cs.status)), NULL,
                                      NULL);
        goto out;
    }
    if (bound && running && strcmp(cs.status, "active") != 0) {
        if (ref && b->suspend(b, ref, &bei)) {
            e = dcms_err_set(ei, DCMS_ERR_UNAVAILABLE, "cannot suspend the workload of %s: %s", id,
                             bei.message);
            goto out;
        }
        snprintf(reason, sizeof(reason), "suspended: its contract is %s", cs.status);
        struct enclave_change ch = {
            .reason = reason, .set_reason = true, .hold = "suspended", .set_hold = true};
        e = enclave_commit_transition(&sys, id, ENCLAVE_EV_SUSPEND, ENCLAVE_BY_SYSTEM, &ch,
                                      "enclave.suspend", DCMS_AUDIT_SUCCESS,
                                      with_cause(cause_of_status(r.v[C_CONTRACT], cs.status)), NULL,
                                      NULL);
        goto out;
    }
    if (suspended && bound && hold && strcmp(hold, "suspended") == 0 &&
        strcmp(cs.status, "active") == 0) {
        e = resume_held(
            en, &r, change ? cause_of_change(change) : cause_of_status(r.v[C_CONTRACT], cs.status),
            ei);
        goto out;
    }
    /* Recorded suspended (here or by another node) but still running: freeze it. */
    if (suspended && probed && pr.state == DCMS_ENCLAVE_RUN_RUNNING && b->suspend(b, ref, &bei))
        e = dcms_err_set(ei, DCMS_ERR_UNAVAILABLE, "cannot suspend the workload of %s: %s", id,
                         bei.message);
out:
    dcms_store_rows_free(rows);
    pthread_mutex_unlock(mu);
    return e == DCMS_ERR_NOT_FOUND ? DCMS_OK : e;
}

static void govern_committed(void *ctx, const struct dcms_contract_change *ch)
{
    struct dcms_enclaves *en = ctx;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_begin(en->app->store, DCMS_TX_READ, &tx, &ei);
    if (!e) {
        e = enclave_store_of_contract(tx, ch->contract_id, &rows, &ei);
        dcms_store_rollback(tx);
    }
    if (e) {
        DCMS_LOG(DCMS_LOG_WARN, "enclaves", "contract %s %s: cannot list its enclaves: %s",
                 ch->contract_id, ch->to_status, ei.message);
        return;
    }
    for (size_t i = 0; i < dcms_store_rows_count(rows); i++) {
        const char *id = dcms_store_rows_text(rows, i, 0);
        dcms_errinfo_init(&ei, NULL);
        if (enclave_govern_enforce(en, id, false, ch, &ei))
            DCMS_LOG(DCMS_LOG_WARN, "enclaves",
                     "enclave %s after contract %s %s: %s (reconcile retries)", id, ch->contract_id,
                     ch->to_status, ei.message);
    }
    dcms_store_rows_free(rows);
}

enum dcms_err enclave_govern_start(struct dcms_enclaves *en, struct dcms_errinfo *ei)
{
    struct dcms_contracts_listener l = {govern_record, govern_committed, en};
    return dcms_contracts_listen(en->app->contracts, &l, ei);
}

void enclave_govern_stop(struct dcms_enclaves *en)
{
    dcms_contracts_unlisten(en->app->contracts, en);
}
