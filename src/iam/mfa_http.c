/*
 * Handlers for second factors (/api/v1/mfa/...) and API keys
 * (/api/v1/api-keys): decode strictly (unknown members refused, every
 * problem at once), call the service, encode. Authentication and the
 * route's permission were checked by the HTTP layer (authz.c).
 */
#include "dcms/app.h"
#include "dcms/arena.h"
#include "iam/mfa_http.h"
#include "iam/mfa_int.h"

static struct iam_call call_of(struct dcms_http_req *req)
{
    return (struct iam_call){req->app->iam, req->principal, req->client_ip, req->request_id,
                             req->ei};
}

static enum dcms_err reply(struct dcms_http_req *req, struct dcms_http_resp *resp, unsigned status,
                           json_t *v)
{
    if (!v)
        return dcms_err_set(req->ei, DCMS_ERR_NOMEM, NULL);
    return dcms_http_resp_json(resp, status, v) ? dcms_err_set(req->ei, DCMS_ERR_NOMEM, NULL)
                                                : DCMS_OK;
}

/* The body as an object whose members are all in `allowed` (problems recorded in req->ei). */
static json_t *body_object(struct dcms_http_req *req, const char *const *allowed)
{
    json_t *v;
    if (dcms_http_req_json(req, 0, &v))
        return NULL;
    if (!json_is_object(v)) {
        dcms_err_field(req->ei, "", "must be a JSON object");
        return NULL;
    }
    const char *key;
    json_t *m;
    json_object_foreach(v, key, m)
    {
        bool ok = false;
        for (const char *const *a = allowed; *a && !ok; a++)
            ok = strcmp(*a, key) == 0;
        if (!ok)
            dcms_err_field(req->ei, dcms_arena_strndup(req->arena, key, strnlen(key, 200)),
                           "is not a known field");
    }
    return v;
}

/* A string member of at most `max` bytes; NULL (and a problem when `required`) otherwise. */
static const char *str_member(struct dcms_http_req *req, json_t *o, const char *key, size_t max,
                              bool required)
{
    json_t *v = json_object_get(o, key);
    if (!v) {
        if (required)
            dcms_err_field(req->ei, key, "is required");
        return NULL;
    }
    if (!json_is_string(v) || json_string_length(v) > max ||
        strlen(json_string_value(v)) != json_string_length(v)) {
        dcms_err_field(req->ei, key, "must be a string of at most %zu characters", max);
        return NULL;
    }
    return json_string_value(v);
}

/* {code} (a current TOTP code), the body of the routes that need one. */
static const char *code_of(struct dcms_http_req *req)
{
    static const char *const keys[] = {"code", NULL};
    json_t *b = body_object(req, keys);
    return b ? str_member(req, b, "code", 16, true) : NULL;
}

enum dcms_err dcms_mfa_http_status(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    json_t *out;
    struct iam_call c = call_of(req);
    enum dcms_err e = iam_mfa_status(&c, &out);
    return e ? e : reply(req, resp, 200, out);
}

enum dcms_err dcms_mfa_http_totp_enroll(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    json_t *out;
    struct iam_call c = call_of(req);
    enum dcms_err e = iam_totp_enroll(&c, &out);
    return e ? e : reply(req, resp, 201, out);
}

enum dcms_err dcms_mfa_http_totp_confirm(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    const char *code = code_of(req);
    if (req->ei->code)
        return req->ei->code;
    json_t *out;
    struct iam_call c = call_of(req);
    enum dcms_err e = iam_totp_confirm(&c, code, &out);
    return e ? e : reply(req, resp, 200, out);
}

enum dcms_err dcms_mfa_http_totp_disable(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    const char *code = code_of(req);
    if (req->ei->code)
        return req->ei->code;
    struct iam_call c = call_of(req);
    enum dcms_err e = iam_totp_disable(&c, code);
    if (e)
        return e;
    dcms_http_resp_static(resp, 204, NULL, "", 0);
    return DCMS_OK;
}

enum dcms_err dcms_mfa_http_recovery_codes(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    const char *code = code_of(req);
    if (req->ei->code)
        return req->ei->code;
    json_t *out;
    struct iam_call c = call_of(req);
    enum dcms_err e = iam_recovery_regenerate(&c, code, &out);
    return e ? e : reply(req, resp, 200, out);
}

enum dcms_err dcms_apikey_http_create(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    static const char *const keys[] = {"name", "permissions", "expires_at", "identity_id", NULL};
    json_t *b = body_object(req, keys);
    if (!b)
        return req->ei->code;
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
    struct iam_call c = call_of(req);
    enum dcms_err e = iam_apikey_create(&c, &in, &out);
    return e ? e : reply(req, resp, 201, out);
}

enum dcms_err dcms_apikey_http_list(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    json_t *out;
    struct iam_call c = call_of(req);
    enum dcms_err e = iam_apikey_list(&c, &out);
    return e ? e : reply(req, resp, 200, out);
}

enum dcms_err dcms_apikey_http_revoke(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    struct iam_call c = call_of(req);
    enum dcms_err e = iam_apikey_revoke(&c, dcms_http_req_param(req, "id"));
    if (e)
        return e;
    dcms_http_resp_static(resp, 204, NULL, "", 0);
    return DCMS_OK;
}
