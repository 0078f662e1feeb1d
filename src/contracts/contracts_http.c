/*
 * Contract handlers: parse (strict JSON, unknown keys refused, every
 * problem at once), call the service, encode; ETag on every answer that
 * carries a contract. Authentication and the route permission were
 * checked by the HTTP layer; the service decides on the contract itself.
 */
#include <ctype.h>
#include <errno.h>

#include "dcms/app.h"
#include "dcms/arena.h"
#include "contracts/contracts_http.h"
#include "contracts/contracts_int.h"

static struct ct_call call_of(struct dcms_http_req *req)
{
    return (struct ct_call){req->app, req->principal, req->client_ip, req->request_id, req->ei};
}

static enum dcms_err reply(struct dcms_http_req *req, struct dcms_http_resp *resp, unsigned status,
                           json_t *v)
{
    if (!v)
        return dcms_err_set(req->ei, DCMS_ERR_NOMEM, NULL);
    return dcms_http_resp_json(resp, status, v) ? dcms_err_set(req->ei, DCMS_ERR_NOMEM, NULL)
                                                : DCMS_OK;
}

/* A contract answer with its ETag (the row version). */
static enum dcms_err reply_contract(struct dcms_http_req *req, struct dcms_http_resp *resp,
                                    unsigned status, json_t *v)
{
    const char *etag = dcms_arena_sprintf(
        req->arena, "\"%lld\"", (long long)json_integer_value(json_object_get(v, "version")));
    if (!etag || dcms_http_resp_header(resp, "ETag", etag)) {
        json_decref(v);
        return dcms_err_set(req->ei, DCMS_ERR_NOMEM, NULL);
    }
    return reply(req, resp, status, v);
}

/* A pre-rendered JSON answer (ownership of t->body passes to the response). */
static enum dcms_err reply_text(struct dcms_http_req *req, struct dcms_http_resp *resp,
                                struct ct_text *t, bool etag)
{
    if (etag) {
        const char *v = dcms_arena_sprintf(req->arena, "\"%lld\"", (long long)t->version);
        if (!v || dcms_http_resp_header(resp, "ETag", v)) {
            free(t->body);
            return dcms_err_set(req->ei, DCMS_ERR_NOMEM, NULL);
        }
    }
    if (resp->body_owned)
        free((void *)resp->body);
    resp->status = 200;
    resp->content_type = "application/json; charset=utf-8";
    resp->body = t->body;
    resp->body_len = t->len;
    resp->body_owned = true;
    return DCMS_OK;
}

enum dcms_err dcms_contracts_http_create(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    json_t *b, *out = NULL;
    enum dcms_err e = dcms_http_req_json(req, 0, &b);
    if (e)
        return e;
    struct ct_call c = call_of(req);
    if ((e = ct_create(&c, b, &out)))
        return e;
    const char *loc = dcms_arena_sprintf(req->arena, "/api/v1/contracts/%s",
                                         json_string_value(json_object_get(out, "id")));
    if (!loc || dcms_http_resp_header(resp, "Location", loc)) {
        json_decref(out);
        return dcms_err_set(req->ei, DCMS_ERR_NOMEM, NULL);
    }
    return reply_contract(req, resp, 201, out);
}

enum dcms_err dcms_contracts_http_list(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    struct ct_list_in in = {.limit = 50};
    in.status = dcms_http_req_query(req, "status");
    in.party = dcms_http_req_query(req, "party");
    in.role = dcms_http_req_query(req, "role");
    in.q = dcms_http_req_query(req, "q");
    in.cursor = dcms_http_req_query(req, "cursor");
    const char *s = dcms_http_req_query(req, "limit");
    if (s) {
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (!isdigit((unsigned char)*s) || *end || errno || v < 1 || v > 200)
            dcms_err_field(req->ei, "limit", "must be an integer from 1 to 200");
        else
            in.limit = v;
    }
    /* The service adds its own problems, so every bad parameter is named at once. */
    struct ct_text out;
    struct ct_call c = call_of(req);
    enum dcms_err e = ct_list(&c, &in, &out);
    return e ? e : reply_text(req, resp, &out, false);
}

enum dcms_err dcms_contracts_http_get(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    struct ct_text out;
    struct ct_call c = call_of(req);
    enum dcms_err e = ct_get(&c, dcms_http_req_param(req, "id"), &out);
    return e ? e : reply_text(req, resp, &out, true);
}

enum dcms_err dcms_contracts_http_put(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    json_t *b, *out;
    const char *if_match = dcms_http_req_header(req, "If-Match");
    enum dcms_err e = dcms_http_req_json(req, 0, &b);
    if (e)
        return e;
    struct ct_call c = call_of(req);
    e = ct_update(&c, dcms_http_req_param(req, "id"), b, if_match, &out);
    return e ? e : reply_contract(req, resp, 200, out);
}

enum dcms_err dcms_contracts_http_delete(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    struct ct_call c = call_of(req);
    enum dcms_err e = ct_delete(&c, dcms_http_req_param(req, "id"));
    if (e)
        return e;
    dcms_http_resp_static(resp, 204, NULL, "", 0);
    return DCMS_OK;
}

/* A transition whose optional body is {"reason": "..."}; `need_reason` makes it required. */
static enum dcms_err transition(struct dcms_http_req *req, struct dcms_http_resp *resp,
                                enum ct_op op, bool need_reason)
{
    const char *reason = NULL;
    if (req->body.len) {
        json_t *b;
        enum dcms_err e = dcms_http_req_json(req, 0, &b);
        if (e)
            return e;
        if (!json_is_object(b))
            return dcms_err_field(req->ei, "", "must be a JSON object");
        const char *key;
        json_t *v;
        json_object_foreach(b, key, v)
        {
            if (strcmp(key, "reason") != 0)
                dcms_err_field(req->ei, dcms_arena_strndup(req->arena, key, 64),
                               "is not a known field");
        }
        json_t *r = json_object_get(b, "reason");
        if (r && (!json_is_string(r) || json_string_length(r) < 1 || json_string_length(r) > 1000 ||
                  strlen(json_string_value(r)) != json_string_length(r)))
            dcms_err_field(req->ei, "reason", "must be a string of 1 to 1000 characters");
        else if (r)
            reason = json_string_value(r);
    }
    if (need_reason && !reason && !req->ei->code)
        dcms_err_field(req->ei, "reason", "is required");
    if (req->ei->code)
        return req->ei->code;
    json_t *out;
    struct ct_call c = call_of(req);
    enum dcms_err e = ct_transition(&c, dcms_http_req_param(req, "id"), op, reason, &out);
    return e ? e : reply_contract(req, resp, 200, out);
}

enum dcms_err dcms_contracts_http_submit(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    return transition(req, resp, CT_OP_SUBMIT, false);
}

enum dcms_err dcms_contracts_http_activate(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    return transition(req, resp, CT_OP_ACTIVATE, false);
}

enum dcms_err dcms_contracts_http_suspend(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    return transition(req, resp, CT_OP_SUSPEND, false);
}

enum dcms_err dcms_contracts_http_resume(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    return transition(req, resp, CT_OP_RESUME, false);
}

enum dcms_err dcms_contracts_http_terminate(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    return transition(req, resp, CT_OP_TERMINATE, true);
}

enum dcms_err dcms_contracts_http_sign(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    json_t *b, *out;
    enum dcms_err e = dcms_http_req_json(req, 0, &b);
    if (e)
        return e;
    struct ct_call c = call_of(req);
    e = ct_sign(&c, dcms_http_req_param(req, "id"), b, &out);
    return e ? e : reply_contract(req, resp, 200, out);
}

enum dcms_err dcms_contracts_http_versions(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    json_t *out;
    struct ct_call c = call_of(req);
    enum dcms_err e = ct_versions(&c, dcms_http_req_param(req, "id"), &out);
    return e ? e : reply(req, resp, 200, out);
}

enum dcms_err dcms_contracts_http_verify(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    json_t *out;
    struct ct_call c = call_of(req);
    enum dcms_err e = ct_verify(&c, dcms_http_req_param(req, "id"), &out);
    return e ? e : reply(req, resp, 200, out);
}
