/*
 * IAM handlers: decode (strict JSON, unknown keys refused, every problem
 * reported at once), call the service, encode. Authentication and the
 * route's permission were checked by the HTTP layer (authz.c).
 */
#include <sodium.h>

#include "dcms/app.h"
#include "dcms/arena.h"
#include "dcms/config.h"
#include "http/handlers.h"
#include "iam/iam_core.h"
#include "iam/iam_json.h"

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

/* Retry-After (RFC 9110, seconds) on a 429; nonzero when the header cannot be added. */
static int set_retry_after(struct dcms_http_req *req, struct dcms_http_resp *resp, int64_t s)
{
    const char *after = dcms_arena_sprintf(req->arena, "%lld", (long long)s);
    return !after || dcms_http_resp_header(resp, "Retry-After", after);
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
    int64_t retry = 0;
    struct iam_call c = IAM_CALL_OF(req);
    e = c.p ? iam_identity_create(&c, &in, &out) : iam_identity_register(&c, &in, &out, &retry);
    wipe_member(b, "password");
    if (e || req->ei->code) {
        json_decref(out);
        if (e == DCMS_ERR_RATE_LIMITED && retry > 0 && set_retry_after(req, resp, retry))
            return dcms_err_set(req->ei, DCMS_ERR_INTERNAL, NULL);
        return e ? e : req->ei->code;
    }
    /* Self-registration: 202 and the same body whether the address was new or not. */
    if (!req->principal)
        return dcms_http_reply(req, resp, 202, out);
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
    (void)iam_list_check(&in, req->ei);
    dcms_http_query_int(req, "limit", 1, 500, &in.limit);
    if (req->ei->code)
        return req->ei->code;
    json_t *out;
    struct iam_call c = IAM_CALL_OF(req);
    enum dcms_err e = iam_identity_list(&c, &in, &out);
    return e ? e : dcms_http_reply(req, resp, 200, out);
}

enum dcms_err dcms_iam_http_get(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    json_t *out;
    struct iam_call c = IAM_CALL_OF(req);
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
    struct iam_call c = IAM_CALL_OF(req);
    e = iam_identity_patch(&c, dcms_http_req_param(req, "id"), &in, &out);
    return e ? e : dcms_http_reply_etag(req, resp, 200, out);
}

/*
 * verify takes the evidence `note`; suspend and reactivate take `reason`, the
 * name every contract and enclave action uses ("note" there is refused by name).
 */
static enum dcms_err transition(struct dcms_http_req *req, struct dcms_http_resp *resp,
                                const char *op)
{
    bool verify = strcmp(op, "verify") == 0;
    static const char *const verify_keys[] = {"note", NULL};
    static const char *const reason_keys[] = {"reason", "note", NULL};
    const char *note = NULL;
    if (req->body.len) {
        json_t *b;
        enum dcms_err e = dcms_http_body_object(req, verify ? verify_keys : reason_keys, &b);
        if (e)
            return e;
        if (!verify && json_object_get(b, "note"))
            return dcms_err_field(req->ei, "note",
                                  "is not accepted: the reason is sent as \"reason\"");
        if ((e = iam_str_from_json(b, verify ? "note" : "reason", 1000, false, &note, req->ei)))
            return e;
    }
    json_t *out;
    struct iam_call c = IAM_CALL_OF(req);
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

/*
 * ---- browser sessions (cookie mode) ----
 * A request with `X-DCMS-Session: cookie` keeps its refresh token out of
 * script reach: login and refresh answer it only as the cookie
 * IAM_REFRESH_COOKIE (HttpOnly, Secure, SameSite=Strict, Path = the
 * refresh route, so no other request carries it), refresh reads it from
 * that cookie, and logout clears it. CSRF: the custom header cannot be sent
 * cross-site without a CORS preflight (which dcmsd never grants), and the
 * Origin header must name this site (its Host, or one of
 * DCMS_WEBAUTHN_ORIGINS). See web/README.md, "Sessions".
 */
#define IAM_REFRESH_COOKIE "__Secure-dcms_refresh"
#define IAM_REFRESH_PATH "/api/v1/auth/refresh"
#define IAM_REFRESH_MAX 256

/* Whether `origin` ("scheme://host[:port]") is one of the comma-separated `list`. */
static bool origin_listed(const char *list, const char *origin)
{
    size_t n = strlen(origin);
    for (const char *p = list; p && *p;) {
        while (*p == ',' || *p == ' ')
            p++;
        size_t len = strcspn(p, ", ");
        if (len == n && len && strncmp(p, origin, n) == 0)
            return true;
        p += len;
    }
    return false;
}

/*
 * DCMS_OK with *on false when the request does not ask for cookie mode;
 * with *on true when it does and comes from this site; 403 when its Origin
 * is missing or foreign, 422 when the header has another value.
 */
static enum dcms_err cookie_mode(struct dcms_http_req *req, bool *on)
{
    *on = false;
    const char *mode = dcms_http_req_header(req, "X-DCMS-Session");
    if (!mode)
        return DCMS_OK;
    if (strcmp(mode, "cookie") != 0)
        return dcms_err_field(req->ei, "X-DCMS-Session", "must be \"cookie\" when given");
    const char *origin = dcms_http_req_header(req, "Origin");
    const char *host = dcms_http_req_header(req, "Host");
    const char *sep = origin ? strstr(origin, "://") : NULL;
    bool same = sep && host &&
                (strncmp(origin, "http://", 7) == 0 || strncmp(origin, "https://", 8) == 0) &&
                strcmp(sep + 3, host) == 0;
    if (!same && !(origin && origin_listed(req->app->cfg->webauthn_origins, origin)))
        return dcms_err_set(req->ei, DCMS_ERR_FORBIDDEN,
                            "a cookie session needs a request from this site's own origin "
                            "(the Origin header)");
    *on = true;
    return DCMS_OK;
}

/* Sets the refresh cookie to `tok` (NULL: clears it). */
static enum dcms_err set_refresh_cookie(struct dcms_http_req *req, struct dcms_http_resp *resp,
                                        const char *tok)
{
    char *v = dcms_arena_sprintf(req->arena,
                                 IAM_REFRESH_COOKIE "=%s; Path=" IAM_REFRESH_PATH
                                                    "; Max-Age=%lu; Secure; HttpOnly; "
                                                    "SameSite=Strict",
                                 tok ? tok : "", tok ? req->app->cfg->refresh_ttl_s : 0ul);
    if (!v || dcms_arena_defer(req->arena, wipe_str, v) ||
        dcms_http_resp_header(resp, "Set-Cookie", v))
        return dcms_err_set(req->ei, DCMS_ERR_INTERNAL, NULL);
    return DCMS_OK;
}

/* Moves the answer's refresh token into the cookie; the body keeps the access token only. */
static enum dcms_err refresh_to_cookie(struct dcms_http_req *req, struct dcms_http_resp *resp,
                                       json_t *out)
{
    const char *tok = json_string_value(json_object_get(out, "refresh_token"));
    enum dcms_err e = tok ? set_refresh_cookie(req, resp, tok) : DCMS_OK;
    wipe_member(out, "refresh_token");
    json_object_del(out, "refresh_token");
    return e;
}

/* The refresh token of the cookie, copied into out[cap]; false when there is none. */
static bool refresh_cookie_find(const struct dcms_http_req *req, char *out, size_t cap)
{
    return iam_cookie_find(dcms_http_req_header(req, "Cookie"), IAM_REFRESH_COOKIE, out, cap);
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
    bool cookies;
    if ((e = cookie_mode(req, &cookies))) {
        wipe_member(b, "password");
        return e;
    }
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
    struct iam_call c = IAM_CALL_OF(req);
    e = iam_login(&c, &in, &out, &retry);
    wipe_member(b, "password");
    wipe_member(b, "device_token");
    sodium_memzero(cookie_tok, sizeof(cookie_tok));
    if (!e && ((e = set_device_cookie(req, resp, out)) ||
               (cookies && (e = refresh_to_cookie(req, resp, out))))) {
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
    static const char *const no_keys[] = {NULL};
    bool cookies;
    enum dcms_err e = cookie_mode(req, &cookies);
    if (e)
        return e;
    json_t *b = NULL;
    const char *token = NULL;
    char cookie_tok[IAM_REFRESH_MAX] = "";
    if (cookies) {
        /* The token is the cookie's: a body, if any, is an empty object. */
        if (req->body.len && (e = dcms_http_body_object(req, no_keys, &b)))
            return e;
        if (req->ei->code)
            return req->ei->code;
        if (!refresh_cookie_find(req, cookie_tok, sizeof(cookie_tok))) {
            sodium_memzero(cookie_tok, sizeof(cookie_tok));
            return dcms_err_set(req->ei, DCMS_ERR_UNAUTHENTICATED,
                                "no session cookie: log in again");
        }
        token = cookie_tok;
    } else {
        if ((e = dcms_http_body_object(req, keys, &b)))
            return e;
        if ((e = iam_str_from_json(b, "refresh_token", 256, true, &token, req->ei))) {
            wipe_member(b, "refresh_token");
            return e;
        }
    }
    json_t *out = NULL;
    struct iam_call c = IAM_CALL_OF(req);
    e = iam_refresh(&c, token, &out);
    wipe_member(b, "refresh_token");
    sodium_memzero(cookie_tok, sizeof(cookie_tok));
    if (cookies) {
        /* A refused cookie is cleared, so the browser stops sending it. */
        enum dcms_err ce =
            e ? set_refresh_cookie(req, resp, NULL) : refresh_to_cookie(req, resp, out);
        if (ce && !e) {
            json_decref(out);
            return ce;
        }
    }
    return e ? e : dcms_http_reply(req, resp, 200, out);
}

enum dcms_err dcms_iam_http_logout(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    static const char *const keys[] = {"refresh_token", NULL};
    const char *token = NULL;
    json_t *b = NULL;
    bool cookies;
    enum dcms_err e = cookie_mode(req, &cookies);
    if (e)
        return e;
    if (req->body.len) {
        if ((e = dcms_http_body_object(req, keys, &b)))
            return e;
        if ((e = iam_str_from_json(b, "refresh_token", 256, false, &token, req->ei)))
            return e;
    }
    /* Cookie mode: the cookie is cleared whatever the answer; without a token in the body
     * or a bearer token, the cookie's names the session. */
    char cookie_tok[IAM_REFRESH_MAX] = "";
    if (cookies) {
        if ((e = set_refresh_cookie(req, resp, NULL)))
            return e;
        if (!token && !req->principal && refresh_cookie_find(req, cookie_tok, sizeof(cookie_tok)))
            token = cookie_tok;
    }
    struct iam_call c = IAM_CALL_OF(req);
    e = iam_logout(&c, token);
    wipe_member(b, "refresh_token");
    sodium_memzero(cookie_tok, sizeof(cookie_tok));
    return e ? e : dcms_http_reply_no_content(resp);
}

enum dcms_err dcms_iam_http_verify_email(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    static const char *const keys[] = {"token", NULL};
    json_t *b;
    enum dcms_err e = dcms_http_body_object(req, keys, &b);
    if (e)
        return e;
    const char *token;
    if ((e = iam_str_from_json(b, "token", 256, true, &token, req->ei)))
        return e;
    json_t *out;
    struct iam_call c = IAM_CALL_OF(req);
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

enum dcms_err dcms_iam_http_sessions(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    json_t *out;
    struct iam_call c = IAM_CALL_OF(req);
    enum dcms_err e = iam_sessions_list(&c, &out);
    return e ? e : dcms_http_reply(req, resp, 200, out);
}

enum dcms_err dcms_iam_http_session_revoke(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    struct iam_call c = IAM_CALL_OF(req);
    enum dcms_err e = iam_session_revoke(&c, dcms_http_req_param(req, "id"));
    return e ? e : dcms_http_reply_no_content(resp);
}

enum dcms_err dcms_iam_http_me(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    json_t *out;
    struct iam_call c = IAM_CALL_OF(req);
    enum dcms_err e = iam_identity_me(&c, &out);
    return e ? e : dcms_http_reply(req, resp, 200, out);
}
