/*
 * Enclave handlers: decode (enclaves_json.c: strict JSON, unknown keys
 * refused, every problem reported at once with its path), call the
 * service, encode.
 * Authentication and the route's permission were checked by the HTTP
 * layer; the service makes the resource-level decisions. The actions on a
 * workload (suspend, resume, attest, terminate) of an enclave another live
 * node owns are relayed to that node (dcms_http_forward), which decides.
 */
#include "dcms/app.h"
#include "dcms/arena.h"
#include "http/handlers.h"
#include "enclaves/enclaves_int.h"

static enum dcms_err call_of(struct dcms_http_req *req, struct enclave_call *c)
{
    *c = (struct enclave_call){req->app->enclaves, req->principal, req->client_ip,
                               req->request_id,    req->ei,        NULL};
    if (!c->en)
        return dcms_err_set(req->ei, DCMS_ERR_UNAVAILABLE, "the enclave service is not running");
    return DCMS_OK;
}

/*
 * A refusal on compatibility: the usual error body (validation_failed, one
 * contract_id problem per failing requirement) with the requirement-by-
 * requirement report as error.compatibility. Takes `report`.
 */
static enum dcms_err reply_refusal(struct dcms_http_req *req, struct dcms_http_resp *resp,
                                   enum dcms_err e, json_t *report)
{
    const struct dcms_errinfo *ei = req->ei;
    json_t *details = json_array();
    for (size_t i = 0; details && i < ei->ndetails; i++)
        json_array_append_new(details, json_pack("{s:s, s:s}", "field", ei->details[i].field,
                                                 "problem", ei->details[i].problem));
    json_t *body = json_pack("{s:{s:s, s:s, s:o, s:o}, s:s}", "error", "code", dcms_err_slug(e),
                             "message", ei->message, "details", details, "compatibility", report,
                             "request_id", req->request_id ? req->request_id : "");
    if (!body)
        return dcms_err_set(req->ei, DCMS_ERR_NOMEM, NULL);
    return dcms_http_resp_json(resp, dcms_err_http(e), body);
}

/* The enclave a service call returned, as response JSON (NULL on OOM); releases `rec`. */
static json_t *encode(struct enclave_rec *rec)
{
    json_t *j = enclave_row_to_json(&rec->r);
    enclave_rec_release(rec);
    return j;
}

enum dcms_err dcms_enclaves_http_create(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    struct enclave_call c;
    enum dcms_err e = call_of(req, &c);
    if (e)
        return e;
    json_t *b;
    if ((e = dcms_http_req_json(req, 0, &b)))
        return e;
    struct enclave_create_in in;
    enclave_create_in_from_json(b, &c.en->limits, &in, req->ei);
    struct enclave_rec out;
    json_t *refusal = NULL;
    c.refusal = &refusal;
    /* The service adds its own problems to these, so all come back at once. */
    e = enclave_create(&c, &in, &out);
    if (e && refusal && e == req->ei->code)
        return reply_refusal(req, resp, e, refusal);
    json_decref(refusal);
    if (e || req->ei->code) {
        enclave_rec_release(&out);
        return e ? e : req->ei->code;
    }
    json_t *j = encode(&out);
    if (!j)
        return dcms_err_set(req->ei, DCMS_ERR_NOMEM, NULL);
    return dcms_http_reply_created(req, resp, "/api/v1/enclaves/", "id", true, j);
}

enum dcms_err dcms_enclaves_http_list(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    struct enclave_call c;
    enum dcms_err e = call_of(req, &c);
    if (e)
        return e;
    static const char *const params[] = {"status", "contract_id", "provider_id", "backend",
                                         "cursor", "limit",       NULL};
    dcms_http_query_only(req, params);
    struct enclave_list_in in = {.limit = 50};
    in.status = dcms_http_req_query(req, "status");
    in.contract_id = dcms_http_req_query(req, "contract_id");
    in.provider_id = dcms_http_req_query(req, "provider_id");
    in.backend = dcms_http_req_query(req, "backend");
    in.cursor = dcms_http_req_query(req, "cursor");
    enclave_list_in_check(&in, req->ei);
    dcms_http_query_int(req, "limit", 1, 500, &in.limit);
    if (req->ei->code)
        return req->ei->code;
    struct dcms_store_rows *rows;
    if ((e = enclave_list(&c, &in, &rows)))
        return e;
    return dcms_http_reply(req, resp, 200, enclave_list_to_json(rows, in.limit));
}

enum dcms_err dcms_enclaves_http_get(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    struct enclave_call c;
    enum dcms_err e = call_of(req, &c);
    if (e)
        return e;
    struct enclave_rec out;
    e = enclave_get(&c, dcms_http_req_param(req, "id"), &out);
    return e ? e : dcms_http_reply_etag(req, resp, 200, encode(&out));
}

enum dcms_err dcms_enclaves_http_patch(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    struct enclave_call c;
    enum dcms_err e = call_of(req, &c);
    if (e)
        return e;
    json_t *b;
    if ((e = dcms_http_req_json(req, 0, &b)))
        return e;
    struct enclave_patch_in in;
    enclave_patch_in_from_json(b, &in, req->ei);
    in.if_match = dcms_http_req_header(req, "If-Match");
    if (req->ei->code)
        return req->ei->code;
    struct enclave_rec out;
    json_t *refusal = NULL;
    c.refusal = &refusal;
    e = enclave_patch(&c, dcms_http_req_param(req, "id"), &in, &out);
    if (e && refusal && e == req->ei->code)
        return reply_refusal(req, resp, e, refusal);
    json_decref(refusal);
    return e ? e : dcms_http_reply_etag(req, resp, 200, encode(&out));
}

static enum dcms_err act(struct dcms_http_req *req, struct dcms_http_resp *resp,
                         enum enclave_event ev)
{
    struct enclave_call c;
    enum dcms_err e = call_of(req, &c);
    if (e)
        return e;
    /* The workload is reachable only from its node: relay there (enclaves_nodes.c). */
    char owner_url[DCMS_NODE_URL_MAX];
    if (enclave_elsewhere(c.en, dcms_http_req_param(req, "id"), owner_url)) {
        if (dcms_http_req_header(req, DCMS_HTTP_FORWARDED_BY))
            return dcms_err_set(req->ei, DCMS_ERR_UNAVAILABLE,
                                "the enclave runs on another node and this request was already "
                                "relayed once; try again");
        return dcms_http_forward(req, resp, owner_url, dcms_nodes_self(req->app->nodes));
    }
    const char *reason = NULL;
    if (req->body.len) {
        json_t *b;
        if ((e = dcms_http_req_json(req, 0, &b)))
            return e;
        enclave_reason_from_json(b, &reason, req->ei);
        if (req->ei->code)
            return req->ei->code;
    }
    struct enclave_rec out;
    json_t *refusal = NULL;
    c.refusal = &refusal;
    e = enclave_act(&c, dcms_http_req_param(req, "id"), ev, reason, &out);
    if (e && refusal && e == req->ei->code)
        return reply_refusal(req, resp, e, refusal);
    json_decref(refusal);
    return e ? e : dcms_http_reply_etag(req, resp, 200, encode(&out));
}

enum dcms_err dcms_enclaves_http_suspend(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    return act(req, resp, ENCLAVE_EV_SUSPEND);
}

enum dcms_err dcms_enclaves_http_resume(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    return act(req, resp, ENCLAVE_EV_RESUME);
}

enum dcms_err dcms_enclaves_http_terminate(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    return act(req, resp, ENCLAVE_EV_TERMINATE);
}

enum dcms_err dcms_enclaves_http_attest(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    return act(req, resp, ENCLAVE_EV_ATTEST);
}

enum dcms_err dcms_enclaves_http_metrics(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    struct enclave_call c;
    enum dcms_err e = call_of(req, &c);
    if (e)
        return e;
    json_t *out = NULL;
    e = enclave_metrics(&c, dcms_http_req_param(req, "id"), &out);
    return e ? e : dcms_http_reply(req, resp, 200, out);
}

enum dcms_err dcms_enclaves_http_compatibility(struct dcms_http_req *req,
                                               struct dcms_http_resp *resp)
{
    struct enclave_call c;
    enum dcms_err e = call_of(req, &c);
    if (e)
        return e;
    static const char *const params[] = {"contract_id", NULL};
    if (!dcms_http_query_only(req, params))
        return req->ei->code;
    json_t *out = NULL;
    e = enclave_compatibility(&c, dcms_http_req_param(req, "id"),
                              dcms_http_req_query(req, "contract_id"), &out);
    return e ? e : dcms_http_reply(req, resp, 200, out);
}
