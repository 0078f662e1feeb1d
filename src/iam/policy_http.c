/*
 * Handlers of the policy routes (/api/v1/policies...): read the body, call
 * the policy store (policy_store.c, which validates the document through
 * policy.c), encode the answer.
 */
#include "dcms/app.h"
#include "http/handlers.h"
#include "iam/iam_core.h"
#include "iam/policy_store.h"

enum dcms_err dcms_iam_http_policy_create(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    json_t *b, *out;
    enum dcms_err e = dcms_http_req_json(req, 0, &b);
    if (e)
        return e;
    struct iam_call c = IAM_CALL_OF(req);
    e = iam_policy_create(&c, b, &out);
    return e ? e : dcms_http_reply(req, resp, 201, out);
}

enum dcms_err dcms_iam_http_policy_get(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    json_t *out;
    struct iam_call c = IAM_CALL_OF(req);
    enum dcms_err e = iam_policy_get(&c, dcms_http_req_param(req, "id"), &out);
    return e ? e : dcms_http_reply(req, resp, 200, out);
}

enum dcms_err dcms_iam_http_policy_delete(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    struct iam_call c = IAM_CALL_OF(req);
    enum dcms_err e = iam_policy_delete(&c, dcms_http_req_param(req, "id"));
    return e ? e : dcms_http_reply_no_content(resp);
}

enum dcms_err dcms_iam_http_policy_list(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    json_t *out;
    struct iam_call c = IAM_CALL_OF(req);
    enum dcms_err e = iam_policy_list(&c, &out);
    return e ? e : dcms_http_reply(req, resp, 200, out);
}
