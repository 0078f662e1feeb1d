/*
 * Assembles a contract's evidence from the modules that own it: the
 * contract service (signed content, signatures with keys; it also decides
 * who may read), the enclave service (last attestation documents), the
 * training service (which jobs ran under it), and the audit log (the slice
 * of the contract, its enclaves and its training jobs, with the signed proof
 * that it belongs to the chain, and receipts for the signatures, key
 * releases and model downloads).
 */
#include "dcms/app.h"
#include "dcms/audit.h"
#include "dcms/clock.h"
#include "dcms/contracts.h"
#include "dcms/enclaves.h"
#include "dcms/iam.h"
#include "dcms/training.h"
#include "evidence/evidence_int.h"

/*
 * The contract, then (type, id) of the contract, of each enclave bound to it
 * and of each of its training jobs. The job ids live in *trainings, which
 * the caller frees after *res (the entries point into it).
 */
static enum dcms_err resources_of(const struct evidence_call *c, const char *id,
                                  bool with_signatures, json_t **contract, json_t **enclaves,
                                  json_t **trainings, struct dcms_audit_resource **res,
                                  size_t *nres)
{
    *contract = *enclaves = *trainings = NULL;
    *res = NULL;
    enum dcms_err e = dcms_contracts_evidence(c->app, c->p, c->client_ip, c->request_id, id,
                                              with_signatures, contract, c->ei);
    if (e || (e = dcms_enclaves_of_contract(c->app->enclaves, id, enclaves, c->ei)) ||
        (e = dcms_training_ids_of_contract(c->app->training, id, trainings, c->ei)))
        goto fail;
    size_t ne = json_array_size(*enclaves), n = 1 + ne + json_array_size(*trainings);
    *res = calloc(n, sizeof(**res));
    if (!*res) {
        e = dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
        goto fail;
    }
    (*res)[0] = (struct dcms_audit_resource){"contract", id};
    for (size_t i = 1; i <= ne; i++)
        (*res)[i] = (struct dcms_audit_resource){
            "enclave",
            json_string_value(json_object_get(json_array_get(*enclaves, i - 1), "enclave_id"))};
    for (size_t i = 1 + ne; i < n; i++)
        (*res)[i] = (struct dcms_audit_resource){
            "training", json_string_value(json_array_get(*trainings, i - 1 - ne))};
    *nres = n;
    return DCMS_OK;
fail:
    json_decref(*contract);
    json_decref(*enclaves);
    json_decref(*trainings);
    *contract = *enclaves = *trainings = NULL;
    return e;
}

enum dcms_err evidence_contract_audit(const struct evidence_call *c, const char *id, int64_t after,
                                      int64_t limit, json_t **out)
{
    *out = NULL;
    json_t *contract, *enclaves, *trainings, *slice = NULL;
    struct dcms_audit_resource *res;
    size_t nres = 0;
    bool more = false;
    enum dcms_err e = resources_of(c, id, false, &contract, &enclaves, &trainings, &res, &nres);
    if (e)
        return e;
    e = dcms_audit_slice(c->app->audit, res, nres, after, limit, &slice, &more, c->ei);
    if (!e) {
        size_t n = json_array_size(json_object_get(slice, "events"));
        json_t *last = json_array_get(json_object_get(slice, "events"), n ? n - 1 : 0);
        json_object_set_new(slice, "next_cursor",
                            more && last ? json_sprintf("%lld", (long long)json_integer_value(
                                                                    json_object_get(last, "seq")))
                                         : json_null());
        json_object_set_new(slice, "contract_id", json_string(id));
        *out = slice;
    }
    free(res);
    json_decref(contract);
    json_decref(enclaves);
    json_decref(trainings);
    return e;
}

enum dcms_err evidence_contract_bundle(const struct evidence_call *c, const char *id, json_t **out)
{
    *out = NULL;
    json_t *bundle, *enclaves, *trainings, *slice = NULL;
    struct dcms_audit_resource *res;
    size_t nres = 0;
    bool more = false;
    enum dcms_err e = resources_of(c, id, true, &bundle, &enclaves, &trainings, &res, &nres);
    if (e)
        return e;
    if ((e = dcms_audit_slice(c->app->audit, res, nres, 0, EVIDENCE_MAX_EVENTS, &slice, &more,
                              c->ei)))
        goto out;
    /* A receipt (RFC 9162 inclusion proof and signed tree head) for each signature, key release
     * and model download. */
    json_t *receipts = json_array();
    size_t i;
    json_t *ev;
    json_array_foreach(json_object_get(slice, "events"), i, ev)
    {
        const char *action = json_string_value(json_object_get(ev, "action"));
        if (!receipts || !action ||
            (strcmp(action, "contract.sign") != 0 && strcmp(action, "training.key_release") != 0 &&
             strcmp(action, "training.model_download") != 0))
            continue;
        json_t *rc = NULL;
        bool pending = false;
        if ((e = dcms_audit_receipt(c->app->audit, json_string_value(json_object_get(ev, "id")),
                                    &rc, &pending, c->ei)))
            break;
        if (rc && json_array_append_new(receipts, rc))
            receipts = NULL;
    }
    if (!e && (!receipts || json_object_set_new(bundle, "receipts", receipts)))
        e = dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
    else
        receipts = NULL;
    json_decref(receipts);
    if (e)
        goto out;
    char now[DCMS_TIME_STRLEN];
    dcms_time_format(dcms_clock_now_us(), now);
    if (json_object_set_new(bundle, "type", json_string(DCMS_EVIDENCE_TYPE)) ||
        json_object_set_new(bundle, "generated_at", json_string(now)) ||
        json_object_set(bundle, "enclaves", enclaves) || json_object_set(bundle, "audit", slice) ||
        json_object_set_new(bundle, "audit_complete", json_boolean(!more))) {
        e = dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
        goto out;
    }
    *out = bundle;
    bundle = NULL;
out:
    free(res);
    json_decref(bundle);
    json_decref(enclaves);
    json_decref(trainings);
    json_decref(slice);
    return e;
}

/* A caller refused an audit event behind a 404 (rate-limited like every refusal). */
static void record_hidden(const struct evidence_call *c, const char *id)
{
    json_t *d =
        json_pack("{s:s}", "reason", "no audit:read, and may not read the resource of the event");
    struct dcms_audit_event ev = {.actor = c->p && c->p->id[0] ? c->p->id : "anonymous",
                                  .action = "audit.event_hidden",
                                  .resource_type = "audit_event",
                                  .resource_id = id,
                                  .outcome = DCMS_AUDIT_DENIED,
                                  .details = d,
                                  .client_ip = c->client_ip && *c->client_ip ? c->client_ip : NULL,
                                  .request_id = c->request_id};
    if (d)
        dcms_audit_refusal(c->app->audit, &ev);
    json_decref(d);
}

enum dcms_err evidence_event_authorize(const struct evidence_call *c, const char *id)
{
    if (!id || !dcms_uuid_valid(id))
        return dcms_err_set(c->ei, DCMS_ERR_NOT_FOUND, "no such audit event");
    struct dcms_iam_ctx ctx = {c->app->iam, c->client_ip};
    if (dcms_iam_authorize(c->p, "audit:read", NULL, &ctx, NULL) == DCMS_OK)
        return DCMS_OK;
    json_t *ev = NULL;
    enum dcms_err e = dcms_audit_event_get(c->app->audit, id, &ev, c->ei);
    if (e)
        return e;
    const char *type = json_string_value(json_object_get(ev, "resource_type"));
    const char *rid = json_string_value(json_object_get(ev, "resource_id"));
    const char *outcome = json_string_value(json_object_get(ev, "outcome"));
    /* Refusals name the caller who was refused: theirs, not the parties' history. */
    e = DCMS_ERR_NOT_FOUND;
    struct dcms_errinfo lei;
    dcms_errinfo_init(&lei, NULL);
    if (type && rid && outcome && strcmp(outcome, "success") == 0) {
        if (strcmp(type, "contract") == 0)
            e = dcms_contracts_authorize_read(c->app, c->p, c->client_ip, rid, &lei);
        else if (strcmp(type, "training") == 0)
            e = dcms_training_authorize_read(c->app, c->p, c->client_ip, rid, &lei);
    }
    json_decref(ev);
    if (e == DCMS_ERR_NOT_FOUND || e == DCMS_ERR_FORBIDDEN) {
        record_hidden(c, id);
        return dcms_err_set(c->ei, DCMS_ERR_NOT_FOUND, "no such audit event");
    }
    return e ? dcms_err_set(c->ei, e, "%s", lei.message) : DCMS_OK;
}
