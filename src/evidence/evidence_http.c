/* The evidence routes: decode, call the evidence service (or the enclave service), encode. */
#include <limits.h>

#include "dcms/app.h"
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
