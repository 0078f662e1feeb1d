/*
 * Handlers for second factors (/api/v1/mfa/...) and API keys
 * (/api/v1/api-keys): decode strictly (unknown members refused, every
 * problem at once), call the service, encode. Authentication and the
 * route's permission were checked by the HTTP layer (authz.c).
 */
#include "dcms/app.h"
#include "dcms/arena.h"
#include "http/handlers.h"
#include "iam/apikey_int.h"
#include "iam/iam_json.h"
#include "iam/mfa_int.h"

/* {code} (a current TOTP code), the body of the routes that need one. */
static const char *code_of(struct dcms_http_req *req)
{
    static const char *const keys[] = {"code", NULL};
    json_t *b;
    const char *code = NULL;
    if (dcms_http_body_object(req, keys, &b) ||
        iam_str_from_json(b, "code", 16, true, &code, req->ei))
        return NULL;
    return code;
}

enum dcms_err dcms_mfa_http_status(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    json_t *out;
    struct iam_call c = IAM_CALL_OF(req);
    enum dcms_err e = iam_mfa_status(&c, &out);
    return e ? e : dcms_http_reply(req, resp, 200, out);
}

enum dcms_err dcms_mfa_http_totp_enroll(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    json_t *out;
    struct iam_call c = IAM_CALL_OF(req);
    enum dcms_err e = iam_totp_enroll(&c, &out);
    return e ? e : dcms_http_reply(req, resp, 201, out);
}

enum dcms_err dcms_mfa_http_totp_confirm(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    const char *code = code_of(req);
    if (req->ei->code)
        return req->ei->code;
    json_t *out;
    struct iam_call c = IAM_CALL_OF(req);
    enum dcms_err e = iam_totp_confirm(&c, code, &out);
    return e ? e : dcms_http_reply(req, resp, 200, out);
}

enum dcms_err dcms_mfa_http_totp_disable(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    const char *code = code_of(req);
    if (req->ei->code)
        return req->ei->code;
    struct iam_call c = IAM_CALL_OF(req);
    enum dcms_err e = iam_totp_disable(&c, code);
    return e ? e : dcms_http_reply_no_content(resp);
}

enum dcms_err dcms_mfa_http_recovery_codes(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    const char *code = code_of(req);
    if (req->ei->code)
        return req->ei->code;
    json_t *out;
    struct iam_call c = IAM_CALL_OF(req);
    enum dcms_err e = iam_recovery_regenerate(&c, code, &out);
    return e ? e : dcms_http_reply(req, resp, 200, out);
}

enum dcms_err dcms_apikey_http_create(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    static const char *const keys[] = {"name", "permissions", "expires_at", "identity_id", NULL};
    json_t *b;
    enum dcms_err e = dcms_http_body_object(req, keys, &b);
    if (e)
        return e;
    struct iam_apikey_in in;
    (void)iam_apikey_from_json(b, &in, req->ei);
    /* iam_apikey_create adds its own syntax checks to these and stops before
     * the store when any failed, so every problem is reported at once. */
    json_t *out;
    struct iam_call c = IAM_CALL_OF(req);
    e = iam_apikey_create(&c, &in, &out);
    return e ? e : dcms_http_reply(req, resp, 201, out);
}

enum dcms_err dcms_apikey_http_list(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    json_t *out;
    struct iam_call c = IAM_CALL_OF(req);
    enum dcms_err e = iam_apikey_list(&c, &out);
    return e ? e : dcms_http_reply(req, resp, 200, out);
}

enum dcms_err dcms_apikey_http_revoke(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    struct iam_call c = IAM_CALL_OF(req);
    enum dcms_err e = iam_apikey_revoke(&c, dcms_http_req_param(req, "id"));
    return e ? e : dcms_http_reply_no_content(resp);
}
