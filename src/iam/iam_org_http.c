/*
 * Membership handlers (routes.def, "iam membership"): decode, call
 * iam_org.c, encode. The route's permission (members:read / members:manage)
 * was checked by the HTTP layer; the service decides again on the
 * organization itself.
 */
#include <string.h>

#include "dcms/app.h"
#include "dcms/arena.h"
#include "http/handlers.h"
#include "iam/iam_core.h"
#include "iam/iam_org.h"

enum dcms_err dcms_iam_http_member_put(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    static const char *const keys[] = {"identity_id", "roles", "reason", NULL};
    json_t *b;
    struct iam_member_in in;
    enum dcms_err e = dcms_http_body_object(req, keys, &b);
    if (e)
        return e;
    if ((e = iam_member_put_from_json(b, &in, req->ei)) || (e = req->ei->code))
        return e;
    const char *org = dcms_http_req_param(req, "id");
    json_t *out;
    bool created;
    struct iam_call c = IAM_CALL_OF(req);
    if ((e = iam_org_member_put(&c, org, &in, &out, &created)))
        return e;
    if (!created)
        return dcms_http_reply(req, resp, 200, out);
    const char *prefix = dcms_arena_sprintf(req->arena, "/api/v1/organizations/%s/members/", org);
    if (!prefix) {
        json_decref(out);
        return dcms_err_set(req->ei, DCMS_ERR_NOMEM, NULL);
    }
    return dcms_http_reply_created(req, resp, prefix, "identity_id", false, out);
}

enum dcms_err dcms_iam_http_member_remove(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    /* DELETE takes no body (routes.def): the reason travels as ?reason=. */
    static const char *const params[] = {"reason", NULL};
    dcms_http_query_only(req, params);
    struct iam_member_in in = {.reason = dcms_http_req_query(req, "reason")};
    if (in.reason && (!*in.reason || strlen(in.reason) > 1000))
        dcms_err_field(req->ei, "reason", "must be 1 to 1000 characters");
    if (req->ei->code)
        return req->ei->code;
    struct iam_call c = IAM_CALL_OF(req);
    enum dcms_err e = iam_org_member_remove(&c, dcms_http_req_param(req, "id"),
                                            dcms_http_req_param(req, "identity_id"), &in);
    return e ? e : dcms_http_reply_no_content(resp);
}

enum dcms_err dcms_iam_http_member_list(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    struct iam_member_list_in in;
    if (dcms_http_query_page(req, &in.cursor, &in.limit))
        return req->ei->code;
    json_t *out;
    struct iam_call c = IAM_CALL_OF(req);
    enum dcms_err e = iam_org_member_list(&c, dcms_http_req_param(req, "id"), &in, &out);
    return e ? e : dcms_http_reply(req, resp, 200, out);
}
