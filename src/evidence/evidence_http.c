/* The evidence routes: decode, call the evidence service (or the enclave service), encode. */
#include <limits.h>

#include "dcms/app.h"
#include "dcms/audit.h"
#include "dcms/enclaves.h"
#include "evidence/evidence.h"
#include "http/handlers.h"
#include "evidence/evidence_int.h"

#define AUDIT_PAGE_DEFAULT 100
#define AUDIT_PAGE_MAX 1000

static struct evidence_call call_of(struct dcms_http_req *req)
{
    return (struct evidence_call){req->app, req->principal, req->client_ip, req->request_id,
                                  req->ei};
}

enum dcms_err dcms_evidence_http_enclave_attestation(struct dcms_http_req *req,
                                                     struct dcms_http_resp *resp)
{
    if (!req->app->enclaves)
        return dcms_err_set(req->ei, DCMS_ERR_UNAVAILABLE, "the enclave service is not running");
    json_t *out;
    enum dcms_err e =
        dcms_enclaves_attestation(req->app->enclaves, req->principal, req->client_ip,
                                  req->request_id, dcms_http_req_param(req, "id"), &out, req->ei);
    return e ? e : dcms_http_reply(req, resp, 200, out);
}

enum dcms_err dcms_evidence_http_contract_audit(struct dcms_http_req *req,
                                                struct dcms_http_resp *resp)
{
    static const char *const params[] = {"limit", "cursor", NULL};
    dcms_http_query_only(req, params);
    int64_t limit = AUDIT_PAGE_DEFAULT, after = 0;
    dcms_http_query_int(req, "limit", 1, AUDIT_PAGE_MAX, &limit);
    dcms_http_query_int(req, "cursor", 1, INT64_MAX, &after);
    if (req->ei->code)
        return req->ei->code;
    struct evidence_call c = call_of(req);
    json_t *out;
    enum dcms_err e =
        evidence_contract_audit(&c, dcms_http_req_param(req, "id"), after, limit, &out);
    return e ? e : dcms_http_reply(req, resp, 200, out);
}

enum dcms_err dcms_evidence_http_contract_bundle(struct dcms_http_req *req,
                                                 struct dcms_http_resp *resp)
{
    struct evidence_call c = call_of(req);
    json_t *out;
    enum dcms_err e = evidence_contract_bundle(&c, dcms_http_req_param(req, "id"), &out);
    return e ? e : dcms_http_reply(req, resp, 200, out);
}

/* GET /audit/events/{id}: auditors, and the readers of the event's resource
 * (evidence_event_authorize). */
enum dcms_err dcms_evidence_http_audit_event(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    struct evidence_call c = call_of(req);
    const char *id = dcms_http_req_param(req, "id");
    json_t *ev = NULL;
    enum dcms_err e = evidence_event_authorize(&c, id);
    if (!e)
        e = dcms_audit_event_get(req->app->audit, id, &ev, req->ei);
    return e ? e : dcms_http_reply(req, resp, 200, ev);
}

/* GET /audit/events/{id}/receipt: the same readers as the event's. */
enum dcms_err dcms_evidence_http_audit_receipt(struct dcms_http_req *req,
                                               struct dcms_http_resp *resp)
{
    struct evidence_call c = call_of(req);
    const char *id = dcms_http_req_param(req, "id");
    json_t *receipt = NULL;
    bool pending = false;
    enum dcms_err e = evidence_event_authorize(&c, id);
    if (!e)
        e = dcms_audit_receipt(req->app->audit, id, &receipt, &pending, req->ei);
    if (e)
        return e;
    if (pending) /* 202: ask again in a moment (within the sequencing delay) */
        return dcms_http_reply(req, resp, 202,
                               json_pack("{s:s, s:s}", "id", id, "status", "pending"));
    return dcms_http_reply(req, resp, 200, receipt);
}
