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
#include "iam/mfa_int.h"

/* A string member of at most `max` bytes; NULL (and a problem when `required`) otherwise. */
static const char *str_member(struct dcms_http_req *req, json_t *o, const char *key, size_t max,
                              bool required)
{
    if (required && !json_object_get(o, key)) {
        dcms_err_field(req->ei, key, "is required");
        return NULL;
    }
    return dcms_http_str_member(req, o, key, max, false);
}

/* {code} (a current TOTP code), the body of the routes that need one. */
static const char *code_of(struct dcms_http_req *req)
{
    static const char *const keys[] = {"code", NULL};
    json_t *b;
    return dcms_http_body_object(req, keys, &b) ? NULL : str_member(req, b, "code", 16, true);
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
    struct iam_apikey_in in = {0};
    in.name = str_member(req, b, "name", 255, true);
    if (in.name && !in.name[0])
        dcms_err_field(req->ei, "name", "must not be empty");
    in.expires_at = str_member(req, b, "expires_at", 64, true);
    in.identity_id = str_member(req, b, "identity_id", 64, false);
    json_t *perms = json_object_get(b, "permissions");
    if (!json_is_array(perms) || json_array_size(perms) == 0 ||
        json_array_size(perms) > IAM_APIKEY_MAX_PERMS) {
        dcms_err_field(req->ei, "permissions", "must be an array of 1 to %d actions",
                       IAM_APIKEY_MAX_PERMS);
    } else {
        size_t i;
        json_t *p;
        json_array_foreach(perms, i, p)
        {
            if (!json_is_string(p) || json_string_length(p) > 64)
                dcms_err_field(req->ei, dcms_arena_sprintf(req->arena, "permissions[%zu]", i),
                               "must be a string of at most 64 characters");
            else
                in.perms[in.nperms++] = json_string_value(p);
        }
    }
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
