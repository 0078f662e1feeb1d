/*
 * Handlers of the signing-key routes (/api/v1/identities/{id}/keys...):
 * decode the body strictly, call the signing-key service (iam_signkey.c),
 * encode the answer.
 */
#include "dcms/app.h"
#include "dcms/arena.h"
#include "http/handlers.h"
#include "iam/iam_cred.h"
#include "iam/iam_json.h"

enum dcms_err dcms_iam_http_signkey_challenge(struct dcms_http_req *req,
                                              struct dcms_http_resp *resp)
{
    json_t *out;
    struct iam_call c = IAM_CALL_OF(req);
    enum dcms_err e = iam_signkey_challenge(&c, dcms_http_req_param(req, "id"), &out);
    return e ? e : dcms_http_reply(req, resp, 201, out);
}

static enum dcms_err register_key(struct dcms_http_req *req, struct dcms_http_resp *resp,
                                  const char *replace)
{
    static const char *const keys[] = {"public_key", "challenge_id", "signature", "name", NULL};
    json_t *b;
    enum dcms_err e = dcms_http_body_object(req, keys, &b);
    if (e)
        return e;
    struct iam_signkey_in in;
    (void)iam_signkey_from_json(b, &in, req->ei);
    json_t *out = NULL;
    struct iam_call c = IAM_CALL_OF(req);
    const char *id = dcms_http_req_param(req, "id");
    /* The service adds its own problems to those found here, so all come back at once. */
    e = iam_signkey_register(&c, id, replace, &in, &out);
    if (e || req->ei->code) {
        json_decref(out);
        return e ? e : req->ei->code;
    }
    const char *prefix = dcms_arena_sprintf(req->arena, "/api/v1/identities/%s/keys/", id);
    if (!prefix) {
        json_decref(out);
        return dcms_err_set(req->ei, DCMS_ERR_NOMEM, NULL);
    }
    return dcms_http_reply_created(req, resp, prefix, "id", false, out);
}

enum dcms_err dcms_iam_http_signkey_create(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    return register_key(req, resp, NULL);
}

enum dcms_err dcms_iam_http_signkey_rotate(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    return register_key(req, resp, dcms_http_req_param(req, "key_id"));
}

enum dcms_err dcms_iam_http_signkey_list(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    json_t *out;
    struct iam_call c = IAM_CALL_OF(req);
    enum dcms_err e = iam_signkey_list(&c, dcms_http_req_param(req, "id"), &out);
    return e ? e : dcms_http_reply(req, resp, 200, out);
}

enum dcms_err dcms_iam_http_signkey_revoke(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    json_t *out = NULL;
    struct iam_call c = IAM_CALL_OF(req);
    enum dcms_err e = iam_signkey_revoke(&c, dcms_http_req_param(req, "id"),
                                         dcms_http_req_param(req, "key_id"), &out);
    /* A revoke answers 204 like every DELETE; the key stays listed as revoked. */
    json_decref(out);
    return e ? e : dcms_http_reply_no_content(resp);
}
