/*
 * Handlers of the passkey routes (/api/v1/webauthn/...): read the body,
 * decode (webauthn_json.c), call the passkey service (iam_webauthn.c),
 * encode the answer.
 */
#include "dcms/app.h"
#include "dcms/arena.h"
#include "dcms/clock.h"
#include "http/handlers.h"
#include "iam/iam_cred.h"
#include "iam/mfa_int.h"
#include "iam/webauthn_json.h"

/* An optional JSON body (*body NULL without one) and its user_verification. */
static enum dcms_err options_body(struct dcms_http_req *req, const char *const *keys, json_t **body,
                                  const char **uv)
{
    *body = NULL;
    if (req->body.len) {
        enum dcms_err e = dcms_http_req_json(req, 0, body);
        if (e)
            return e;
    }
    return iam_wa_options_from_json(*body, keys, uv, req->ei);
}

enum dcms_err dcms_iam_http_wa_register_options(struct dcms_http_req *req,
                                                struct dcms_http_resp *resp)
{
    static const char *const keys[] = {"user_verification", NULL};
    json_t *b, *out = NULL;
    const char *uv;
    enum dcms_err e = options_body(req, keys, &b, &uv);
    if (e)
        return e;
    struct iam_call c = IAM_CALL_OF(req);
    e = iam_wa_register_options(&c, uv, &out);
    return e ? e : dcms_http_reply(req, resp, 200, out);
}

enum dcms_err dcms_iam_http_wa_register_verify(struct dcms_http_req *req,
                                               struct dcms_http_resp *resp)
{
    json_t *b, *out = NULL;
    enum dcms_err e = dcms_http_req_json(req, 0, &b);
    if (e)
        return e;
    json_t *cred;
    const char *name;
    if ((e = iam_wa_register_from_json(b, &cred, &name, req->ei)) && !cred)
        return e;
    struct iam_call c = IAM_CALL_OF(req);
    e = iam_wa_register_verify(&c, cred, name, &out);
    json_decref(cred);
    if (e)
        return e;
    return dcms_http_reply_created(req, resp, "/api/v1/webauthn/credentials/", "id", false, out);
}

enum dcms_err dcms_iam_http_wa_assert_options(struct dcms_http_req *req,
                                              struct dcms_http_resp *resp)
{
    static const char *const keys[] = {"user_verification", "mfa_ticket", NULL};
    json_t *b, *out = NULL;
    const char *uv;
    enum dcms_err e = options_body(req, keys, &b, &uv);
    if (e)
        return e;
    /* During a step-up login the mfa_ticket names the identity; otherwise the bearer token. */
    const char *ticket;
    char id[DCMS_UUID_STRLEN], hash[65];
    if ((e = iam_wa_ticket_from_json(b, &ticket, req->ei)))
        return e;
    if (ticket) {
        if ((e = iam_mfa_ticket_lookup(req->app->iam, ticket, id, hash, req->ei)))
            return e;
    } else if (req->principal) {
        struct iam_call c = IAM_CALL_OF(req);
        if (iam_wa_no_api_key(&c))
            return req->ei->code;
        snprintf(id, sizeof(id), "%s", req->principal->id);
    } else {
        return dcms_err_set(req->ei, DCMS_ERR_UNAUTHENTICATED,
                            "a bearer token or an mfa_ticket is required");
    }
    struct iam_call c = IAM_CALL_OF(req);
    e = iam_wa_assert_options(&c, id, uv, &out);
    return e ? e : dcms_http_reply(req, resp, 200, out);
}

/*
 * Passkey-first sign-in, step one: options with a challenge bound to no
 * identity (the body, if any, is `{}`). The assertion then goes to
 * POST /api/v1/auth/login as {webauthn} (iam_session.c), which issues the
 * session like any login.
 */
enum dcms_err dcms_iam_http_passkey_options(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    static const char *const keys[] = {NULL};
    json_t *b, *out = NULL;
    const char *uv;
    enum dcms_err e = options_body(req, keys, &b, &uv);
    if (e)
        return e;
    struct iam_call c = IAM_CALL_OF(req);
    int64_t retry = 0;
    e = iam_wa_login_options(&c, &out, &retry);
    if (e == DCMS_ERR_RATE_LIMITED && retry > 0) {
        const char *after = dcms_arena_sprintf(req->arena, "%lld", (long long)retry);
        if (after && dcms_http_resp_header(resp, "Retry-After", after))
            return dcms_err_set(req->ei, DCMS_ERR_INTERNAL, NULL);
    }
    return e ? e : dcms_http_reply(req, resp, 200, out);
}

enum dcms_err dcms_iam_http_wa_assert_verify(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    json_t *b;
    enum dcms_err e = dcms_http_req_json(req, 0, &b);
    if (e)
        return e;
    struct iam_call c = IAM_CALL_OF(req);
    if (iam_wa_no_api_key(&c))
        return req->ei->code;
    struct dcms_webauthn_result r;
    e = iam_wa_assert(req->app->iam, req->principal->id, b, false, req->principal->id,
                      "webauthn.assert", req->client_ip, req->request_id, &r, req->ei);
    if (e)
        return e;
    char now[DCMS_TIME_STRLEN];
    dcms_time_format(dcms_clock_now_us(), now);
    return dcms_http_reply(req, resp, 200,
                           json_pack("{s:s, s:b, s:b, s:I, s:s}", "credential_id", r.credential_id,
                                     "user_present", r.user_present, "user_verified",
                                     r.user_verified, "sign_count", (json_int_t)r.sign_count,
                                     "verified_at", now));
}

enum dcms_err dcms_iam_http_wa_list(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    json_t *out;
    struct iam_call c = IAM_CALL_OF(req);
    enum dcms_err e = iam_wa_list(&c, &out);
    return e ? e : dcms_http_reply(req, resp, 200, out);
}

enum dcms_err dcms_iam_http_wa_delete(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    struct iam_call c = IAM_CALL_OF(req);
    enum dcms_err e = iam_wa_delete(&c, dcms_http_req_param(req, "id"));
    return e ? e : dcms_http_reply_no_content(resp);
}
