/*
 * Admin routes over KEK versions: decode, call the keys service, encode.
 * The router has already authorized keys:read / keys:rotate.
 */
#include "dcms/app.h"
#include "dcms/arena.h"
#include "dcms/iam.h"
#include "http/handlers.h"
#include "keys/keys_int.h"

static struct dcms_keys_actor actor_of(const struct dcms_http_req *req)
{
    struct dcms_keys_actor a = {.actor = req->principal ? req->principal->id : "anonymous",
                                .request_id = req->request_id,
                                .client_ip = req->client_ip};
    return a;
}

/* An integer member `key` of `o` within [min, max]; absent leaves *out. Records a problem. */
static void int_member(struct dcms_http_req *req, const json_t *o, const char *key, int64_t min,
                       int64_t max, int64_t *out)
{
    const json_t *v = o ? json_object_get(o, key) : NULL;
    if (!v)
        return;
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        dcms_err_field(req->ei, key, "must be an integer from %lld to %lld", (long long)min,
                       (long long)max);
        return;
    }
    *out = json_integer_value(v);
}

static json_t *status_or_null(struct dcms_http_req *req)
{
    struct dcms_keys_status *st = dcms_arena_alloc(req->arena, sizeof(*st));
    if (!st) {
        dcms_err_set(req->ei, DCMS_ERR_NOMEM, NULL);
        return NULL;
    }
    if (dcms_keys_status(req->app->keys, st, req->ei))
        return NULL;
    json_t *j = keys_status_to_json(st);
    if (!j)
        dcms_err_set(req->ei, DCMS_ERR_NOMEM, NULL);
    return j;
}

enum dcms_err dcms_keys_http_status(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    json_t *j = status_or_null(req);
    return j ? dcms_http_reply(req, resp, 200, j) : req->ei->code;
}

enum dcms_err dcms_keys_http_rotate(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    struct dcms_keys_actor who = actor_of(req);
    int64_t v = 0;
    enum dcms_err e = dcms_keys_rotate(req->app->keys, &who, &v, req->ei);
    if (e)
        return e;
    json_t *j = status_or_null(req);
    return j ? dcms_http_reply(req, resp, 200, j) : req->ei->code;
}

enum dcms_err dcms_keys_http_rewrap(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    static const char *const allowed[] = {"batch", NULL};
    json_t *b = NULL;
    int64_t batch = 500, done = 0, left = 0;
    if (req->body.len > 0) {
        enum dcms_err e = dcms_http_body_object(req, allowed, &b);
        if (e)
            return e;
        int_member(req, b, "batch", 1, 10000, &batch);
        if (req->ei->code)
            return req->ei->code;
    }
    struct dcms_keys_actor who = actor_of(req);
    enum dcms_err e =
        dcms_keys_rewrap(req->app->keys, &who, (unsigned)batch, &done, &left, req->ei);
    if (e)
        return e;
    return dcms_http_reply(
        req, resp, 200,
        json_pack("{s:I, s:I}", "rewrapped", (json_int_t)done, "remaining", (json_int_t)left));
}

enum dcms_err dcms_keys_http_retire(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    static const char *const allowed[] = {"version", NULL};
    json_t *b = NULL;
    int64_t version = 0;
    enum dcms_err e = dcms_http_body_object(req, allowed, &b);
    if (e)
        return e;
    if (!json_object_get(b, "version"))
        dcms_err_field(req->ei, "version", "is required");
    int_member(req, b, "version", 1, INT64_MAX, &version);
    if (req->ei->code)
        return req->ei->code;
    struct dcms_keys_actor who = actor_of(req);
    if ((e = dcms_keys_retire(req->app->keys, &who, version, req->ei)))
        return e;
    json_t *j = status_or_null(req);
    return j ? dcms_http_reply(req, resp, 200, j) : req->ei->code;
}
