/* GET /api/v1/contracts/{id}/privacy: decode, call the budget view, encode. */
#include "dcms/app.h"
#include "dcms/privacy.h"
#include "http/handlers.h"

enum dcms_err dcms_privacy_http_budget(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    json_t *out;
    enum dcms_err e =
        dcms_privacy_budget_view(req->app, req->principal, req->client_ip, req->request_id,
                                 dcms_http_req_param(req, "id"), &out, req->ei);
    return e ? e : dcms_http_reply(req, resp, 200, out);
}
