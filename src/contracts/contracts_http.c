/*
 * Contract handlers: decode (contracts_json.c: strict JSON, unknown keys
 * refused, every problem at once), call the service, encode; ETag on every
 * answer that carries a contract. Authentication and the route permission were
 * checked by the HTTP layer; the service decides on the contract itself.
 */
#include "dcms/app.h"
#include "dcms/arena.h"
#include "dcms/clock.h"
#include "dcms/http.h"
#include "http/handlers.h"
#include "contracts/contracts_int.h"

static struct ct_call call_of(struct dcms_http_req *req)
{
    bool *hidden = dcms_arena_calloc(req->arena, 1, sizeof(bool));
    return (struct ct_call){req->app,        req->principal, req->client_ip,
                            req->request_id, req->ei,        hidden};
}

/*
 * A contract hidden from a caller is answered 404, which the HTTP layer
 * does not audit; record the refusal here, after the service's transaction
 * has ended (rate-limited per client address like every refusal).
 */
static enum dcms_err done(struct dcms_http_req *req, const struct ct_call *c, enum dcms_err e)
{
    if (e != DCMS_ERR_NOT_FOUND || !c->hidden || !*c->hidden || !req->app->audit)
        return e;
    dcms_contracts_audit_hidden(
        req->app, req->principal, req->client_ip, req->request_id, dcms_http_req_param(req, "id"),
        json_pack("{s:s, s:s, s:i}", "method", req->method, "path", req->path, "status", 404));
    return e;
}

/* A pre-rendered JSON answer (ownership of t->body passes to the response). */
static enum dcms_err reply_text(struct dcms_http_req *req, struct dcms_http_resp *resp,
                                unsigned status, struct ct_text *t, bool etag)
{
    if (etag && dcms_http_resp_etag(req, resp, t->version)) {
        free(t->body);
        return req->ei->code;
    }
    if (resp->body_owned)
        free((void *)resp->body);
    resp->status = status;
    resp->content_type = "application/json; charset=utf-8";
    resp->body = t->body;
    resp->body_len = t->len;
    resp->body_owned = true;
    return DCMS_OK;
}

/*
 * A contract answer (`status` 200, or 201 with its Location) with its ETag,
 * rendered from the stored text as GET does; the record is released here.
 */
static enum dcms_err reply_contract(struct dcms_http_req *req, struct dcms_http_resp *resp,
                                    unsigned status, struct ct_rec *rec)
{
    struct ct_text out;
    enum dcms_err e = ct_rec_text(rec, &out);
    const char *loc = e || status != 201
                          ? NULL
                          : dcms_arena_sprintf(req->arena, "/api/v1/contracts/%s", rec->r.id);
    ct_rec_release(rec);
    if (e)
        return dcms_err_set(req->ei, e, NULL);
    if (status == 201 && (!loc || dcms_http_resp_header(resp, "Location", loc))) {
        free(out.body);
        return dcms_err_set(req->ei, DCMS_ERR_NOMEM, NULL);
    }
    return reply_text(req, resp, status, &out, true);
}

enum dcms_err dcms_contracts_http_create(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    json_t *b;
    struct ct_rec out;
    enum dcms_err e = dcms_http_req_json(req, 0, &b);
    if (e)
        return e;
    /* The service adds the problems only the store can see (unknown or inactive
     * parties) to the decoded ones, so every problem is answered at once. */
    struct ct_input in;
    ct_input_from_json(b, dcms_clock_now_us(), &in, req->ei);
    struct ct_call c = call_of(req);
    e = ct_create(&c, &in, &out);
    ct_input_release(&in);
    if (e)
        return e;
    return reply_contract(req, resp, 201, &out);
}

enum dcms_err dcms_contracts_http_list(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    static const char *const params[] = {"status", "party", "role", "q", "cursor", "limit", NULL};
    dcms_http_query_only(req, params);
    struct ct_list_in in = {.limit = 50};
    in.status = dcms_http_req_query(req, "status");
    in.party = dcms_http_req_query(req, "party");
    in.role = dcms_http_req_query(req, "role");
    in.q = dcms_http_req_query(req, "q");
    in.cursor = dcms_http_req_query(req, "cursor");
    dcms_http_query_int(req, "limit", 1, 200, &in.limit);
    if (!ct_list_decode(&in, req->ei) || req->ei->code)
        return req->ei->code;
    struct ct_page page;
    struct ct_text out;
    struct ct_call c = call_of(req);
    enum dcms_err e = ct_list(&c, &in, &page);
    if (e)
        return e;
    e = ct_page_text(&page, &out);
    ct_page_release(&page);
    return e ? dcms_err_set(req->ei, e, NULL) : reply_text(req, resp, 200, &out, false);
}

enum dcms_err dcms_contracts_http_get(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    struct ct_rec rec;
    struct ct_text out;
    struct ct_call c = call_of(req);
    enum dcms_err e = done(req, &c, ct_get(&c, dcms_http_req_param(req, "id"), &rec));
    if (e)
        return e;
    e = ct_rec_text(&rec, &out);
    ct_rec_release(&rec);
    return e ? dcms_err_set(req->ei, e, NULL) : reply_text(req, resp, 200, &out, true);
}

enum dcms_err dcms_contracts_http_put(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    json_t *b;
    struct ct_rec out;
    struct ct_input in;
    enum dcms_err e = dcms_http_req_json(req, 0, &b);
    if (e)
        return e;
    if (!ct_update_from_json(b, dcms_http_req_header(req, "If-Match"), dcms_clock_now_us(), &in,
                             req->ei)) {
        ct_input_release(&in);
        return req->ei->code;
    }
    struct ct_call c = call_of(req);
    e = done(req, &c, ct_update(&c, dcms_http_req_param(req, "id"), &in, &out));
    ct_input_release(&in);
    return e ? e : reply_contract(req, resp, 200, &out);
}

enum dcms_err dcms_contracts_http_delete(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    struct ct_call c = call_of(req);
    enum dcms_err e = done(req, &c, ct_delete(&c, dcms_http_req_param(req, "id")));
    return e ? e : dcms_http_reply_no_content(resp);
}

/* A transition whose optional body is {"reason": "..."}; `need_reason` makes it required. */
static enum dcms_err transition(struct dcms_http_req *req, struct dcms_http_resp *resp,
                                enum ct_op op, bool need_reason)
{
    const char *reason = NULL;
    json_t *b = NULL;
    if (req->body.len && dcms_http_req_json(req, 0, &b))
        return req->ei->code;
    if (!ct_reason_from_json(b, need_reason, &reason, req->ei))
        return req->ei->code;
    struct ct_rec out;
    struct ct_call c = call_of(req);
    enum dcms_err e =
        done(req, &c, ct_transition(&c, dcms_http_req_param(req, "id"), op, reason, &out));
    return e ? e : reply_contract(req, resp, 200, &out);
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
    json_t *b;
    struct ct_rec out;
    struct ct_sign_in in;
    enum dcms_err e = dcms_http_req_json(req, 0, &b);
    if (e)
        return e;
    if (!ct_sign_from_json(b, &in, req->ei))
        return req->ei->code;
    struct ct_call c = call_of(req);
    e = done(req, &c, ct_sign(&c, dcms_http_req_param(req, "id"), &in, &out));
    return e ? e : reply_contract(req, resp, 200, &out);
}

enum dcms_err dcms_contracts_http_versions(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    struct ct_versions_out out;
    struct ct_call c = call_of(req);
    enum dcms_err e = done(req, &c, ct_versions(&c, dcms_http_req_param(req, "id"), &out));
    if (e)
        return e;
    json_t *o = ct_versions_json(&out);
    ct_versions_release(&out);
    return dcms_http_reply(req, resp, 200, o);
}

enum dcms_err dcms_contracts_http_verify(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    struct ct_verify_out out;
    struct ct_call c = call_of(req);
    enum dcms_err e = done(req, &c, ct_verify(&c, dcms_http_req_param(req, "id"), &out));
    if (e)
        return e;
    json_t *o = ct_verify_json(&out);
    ct_verify_release(&out);
    return dcms_http_reply(req, resp, 200, o);
}
