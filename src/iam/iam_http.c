/*
 * IAM handlers: decode (strict JSON, unknown keys refused, every problem
 * reported at once), call the service, encode. Authentication and the
 * route's permission were checked by the HTTP layer (authz.c).
 */
#include <sodium.h>

#include "dcms/app.h"
#include "dcms/arena.h"
#include "dcms/config.h"
#include "iam/iam_http.h"
#include "iam/iam_http_int.h"
#include "iam/iam_json.h"

struct iam_call iam_call_of(const struct dcms_http_req *req)
{
    return (struct iam_call){req->app->iam, req->principal, req->client_ip, req->request_id,
                             req->ei};
}

/* An optional string member (NULL when absent; also JSON null when `present` is given). */
/*
 * Wipes a secret string member of a request body (a password, a refresh or
 * e-mail token) once the service is done with it, so the decoded copy is
 * not left in freed memory. The body buffer itself is the HTTP layer's.
 */
static void wipe_member(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (json_is_string(v))
        sodium_memzero((char *)json_string_value(v), json_string_length(v));
}

static const char *opt_str(struct dcms_http_req *req, json_t *o, const char *key, size_t max,
                           bool *present)
{
    if (present)
        *present = json_object_get(o, key) != NULL;
    return dcms_http_str_member(req, o, key, max, present != NULL);
}

enum dcms_err dcms_iam_http_create(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    static const char *const keys[] = {"kind",  "name", "email", "password", "organization_id",
                                       "roles", NULL};
    json_t *b;
    enum dcms_err e = dcms_http_body_object(req, keys, &b);
    if (e)
        return e;
    struct iam_identity_in in;
    /* The service adds its own problems to those found here, so all come back at once. */
    (void)iam_identity_create_from_json(b, &in, req->ei);
    json_t *out = NULL;
    struct iam_call c = iam_call_of(req);
    e = iam_identity_create(&c, &in, &out);
    wipe_member(b, "password");
    if (e || req->ei->code) {
        json_decref(out);
        return e ? e : req->ei->code;
    }
    return dcms_http_reply_created(req, resp, "/api/v1/identities/", "id", false, out);
}

enum dcms_err dcms_iam_http_list(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    static const char *const params[] = {"kind", "status", "cursor", "limit", NULL};
    dcms_http_query_only(req, params);
    struct iam_list_in in = {.limit = 50};
    in.kind = dcms_http_req_query(req, "kind");
    in.status = dcms_http_req_query(req, "status");
    in.cursor = dcms_http_req_query(req, "cursor");
    if (in.kind && strcmp(in.kind, "user") && strcmp(in.kind, "organization") &&
        strcmp(in.kind, "service"))
        dcms_err_field(req->ei, "kind", "must be organization, user or service");
    if (in.status && strcmp(in.status, "pending_verification") && strcmp(in.status, "active") &&
        strcmp(in.status, "suspended"))
        dcms_err_field(req->ei, "status", "must be pending_verification, active or suspended");
    if (in.cursor && !dcms_uuid_valid(in.cursor))
        dcms_err_field(req->ei, "cursor", "must be the next_cursor of the previous page");
    dcms_http_query_int(req, "limit", 1, 500, &in.limit);
    if (req->ei->code)
        return req->ei->code;
    json_t *out;
    struct iam_call c = iam_call_of(req);
    enum dcms_err e = iam_identity_list(&c, &in, &out);
    return e ? e : dcms_http_reply(req, resp, 200, out);
}

enum dcms_err dcms_iam_http_get(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    json_t *out;
    struct iam_call c = iam_call_of(req);
    enum dcms_err e = iam_identity_get(&c, dcms_http_req_param(req, "id"), &out);
    return e ? e : dcms_http_reply_etag(req, resp, 200, out);
}

enum dcms_err dcms_iam_http_patch(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    static const char *const keys[] = {"name", "email", "organization_id", "roles", NULL};
    json_t *b;
    struct iam_identity_in in;
    enum dcms_err e = dcms_http_body_object(req, keys, &b);
    if (e || (e = iam_identity_patch_from_json(b, &in, req->ei)) || (e = req->ei->code))
        return e;
    in.if_match = dcms_http_req_header(req, "If-Match");
    json_t *out;
    struct iam_call c = iam_call_of(req);
    e = iam_identity_patch(&c, dcms_http_req_param(req, "id"), &in, &out);
    return e ? e : dcms_http_reply_etag(req, resp, 200, out);
}

static enum dcms_err transition(struct dcms_http_req *req, struct dcms_http_resp *resp,
                                const char *op)
{
    static const char *const keys[] = {"note", NULL};
    const char *note = NULL;
    if (req->body.len) {
        json_t *b;
        enum dcms_err e = dcms_http_body_object(req, keys, &b);
        if (e)
            return e;
        note = opt_str(req, b, "note", 1000, NULL);
        if (req->ei->code)
            return req->ei->code;
    }
    json_t *out;
    struct iam_call c = iam_call_of(req);
    enum dcms_err e = iam_identity_transition(&c, dcms_http_req_param(req, "id"), op, note, &out);
    return e ? e : dcms_http_reply(req, resp, 200, out);
}

enum dcms_err dcms_iam_http_verify(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    return transition(req, resp, "verify");
}

enum dcms_err dcms_iam_http_suspend(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    return transition(req, resp, "suspend");
}

enum dcms_err dcms_iam_http_reactivate(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    return transition(req, resp, "reactivate");
}

/* A required string member; records a problem when it is missing or not a string. */
static const char *req_str(struct dcms_http_req *req, json_t *o, const char *key, size_t max)
{
    const char *s = opt_str(req, o, key, max, NULL);
    if (!s && !json_object_get(o, key))
        dcms_err_field(req->ei, key, "is required");
    return s;
}

/*
 * 401 mfa_required: the error shape plus the ticket and the enrolled factors
 * (`v`, stolen). The error stays recorded in req->ei, so the refusal is
 * audited like any other 401.
 */
static enum dcms_err reply_mfa_required(struct dcms_http_req *req, struct dcms_http_resp *resp,
                                        json_t *v)
{
    json_t *err = json_pack("{s:s, s:s}", "code", dcms_err_slug(DCMS_ERR_MFA_REQUIRED), "message",
                            req->ei->message);
    if (!err || json_object_set_new(v, "error", err) ||
        json_object_set_new(v, "request_id", json_string(req->request_id ? req->request_id : ""))) {
        json_decref(v);
        return dcms_err_set(req->ei, DCMS_ERR_NOMEM, NULL);
    }
    return dcms_http_reply(req, resp, 401, v);
}

/* Wipes a string the arena holds (a Set-Cookie value) when the request ends. */
static void wipe_str(void *p)
{
    sodium_memzero(p, strlen(p));
}

/*
 * The device token of a successful login also goes out as a cookie that
 * scripts cannot read (HttpOnly), only over HTTPS (Secure; browsers treat
 * http://localhost as secure) and never on cross-site requests (Strict).
 * __Host-: no Domain, Path=/, so no subdomain can set or shadow it.
 */
static enum dcms_err set_device_cookie(struct dcms_http_req *req, struct dcms_http_resp *resp,
                                       const json_t *out)
{
    const char *tok = json_string_value(json_object_get(out, "device_token"));
    if (!tok)
        return DCMS_OK;
    char *v = dcms_arena_sprintf(
        req->arena, IAM_DEVICE_COOKIE "=%s; Path=/; Max-Age=%lu; Secure; HttpOnly; SameSite=Strict",
        tok, req->app->cfg->login_device_ttl_s);
    if (!v || dcms_arena_defer(req->arena, wipe_str, v) ||
        dcms_http_resp_header(resp, "Set-Cookie", v))
        return dcms_err_set(req->ei, DCMS_ERR_INTERNAL, NULL);
    return DCMS_OK;
}

enum dcms_err dcms_iam_http_login(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    /* The factors a login may carry; see struct iam_factor_in (mfa_int.h). */
    static const char *const keys[] = {"email",         "password", "mfa_ticket",   "totp",
                                       "recovery_code", "webauthn", "device_token", NULL};
    json_t *b;
    enum dcms_err e = dcms_http_body_object(req, keys, &b);
    if (e)
        return e;
    struct iam_login_in in;
    if ((e = iam_login_from_json(b, &in, req->ei)) || (e = req->ei->code)) {
        wipe_member(b, "password");
        return e;
    }
    /* Without one in the body, the device token comes from the browser's cookie. */
    char cookie_tok[IAM_DEVICE_TOKEN_MAX] = "";
    if (!in.device_token &&
        iam_device_cookie_find(dcms_http_req_header(req, "Cookie"), cookie_tok, sizeof(cookie_tok)))
        in.device_token = cookie_tok;
    json_t *out = NULL;
    int64_t retry = 0;
    struct iam_call c = iam_call_of(req);
    e = iam_login(&c, &in, &out, &retry);
    wipe_member(b, "password");
    wipe_member(b, "device_token");
    sodium_memzero(cookie_tok, sizeof(cookie_tok));
    if (!e && (e = set_device_cookie(req, resp, out))) {
        json_decref(out);
        return e;
    }
    if (e == DCMS_ERR_MFA_REQUIRED && out)
        return reply_mfa_required(req, resp, out);
    json_decref(e ? out : NULL);
    if (e == DCMS_ERR_RATE_LIMITED && retry > 0) {
        /* Tell the client when the lockout ends (RFC 9110 Retry-After, in seconds). */
        const char *after = dcms_arena_sprintf(req->arena, "%lld", (long long)retry);
        if (after && dcms_http_resp_header(resp, "Retry-After", after))
            return dcms_err_set(req->ei, DCMS_ERR_INTERNAL, NULL);
    }
    return e ? e : dcms_http_reply(req, resp, 200, out);
}

enum dcms_err dcms_iam_http_refresh(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    static const char *const keys[] = {"refresh_token", NULL};
    json_t *b;
    enum dcms_err e = dcms_http_body_object(req, keys, &b);
    if (e)
        return e;
    const char *token = req_str(req, b, "refresh_token", 256);
    if (req->ei->code) {
        wipe_member(b, "refresh_token");
        return req->ei->code;
    }
    json_t *out;
    struct iam_call c = iam_call_of(req);
    e = iam_refresh(&c, token, &out);
    wipe_member(b, "refresh_token");
    return e ? e : dcms_http_reply(req, resp, 200, out);
}

enum dcms_err dcms_iam_http_logout(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    static const char *const keys[] = {"refresh_token", NULL};
    const char *token = NULL;
    json_t *b = NULL;
    if (req->body.len) {
        enum dcms_err e = dcms_http_body_object(req, keys, &b);
        if (e)
            return e;
        token = opt_str(req, b, "refresh_token", 256, NULL);
        if (req->ei->code)
            return req->ei->code;
    }
    struct iam_call c = iam_call_of(req);
    enum dcms_err e = iam_logout(&c, token);
    wipe_member(b, "refresh_token");
    return e ? e : dcms_http_reply_no_content(resp);
}

enum dcms_err dcms_iam_http_verify_email(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    static const char *const keys[] = {"token", NULL};
    json_t *b;
    enum dcms_err e = dcms_http_body_object(req, keys, &b);
    if (e)
        return e;
    const char *token = req_str(req, b, "token", 256);
    if (req->ei->code)
        return req->ei->code;
    json_t *out;
    struct iam_call c = iam_call_of(req);
    e = iam_email_verify(&c, token, &out);
    wipe_member(b, "token");
    return e ? e : dcms_http_reply(req, resp, 200, out);
}

enum dcms_err dcms_iam_http_jwks(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    return dcms_http_reply(req, resp, 200, iam_keys_jwks(req->app->iam));
}

enum dcms_err dcms_iam_http_rotate(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    json_t *out;
    enum dcms_err e = iam_keys_rotate(req->app->iam, req->principal, req->client_ip,
                                      req->request_id, &out, req->ei);
    return e ? e : dcms_http_reply(req, resp, 200, out);
}

enum dcms_err dcms_iam_http_me(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    json_t *out;
    struct iam_call c = iam_call_of(req);
    enum dcms_err e = iam_identity_me(&c, &out);
    return e ? e : dcms_http_reply(req, resp, 200, out);
}
