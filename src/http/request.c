/*
 * The handler-facing side of a request: lookups, JSON bodies, responses and
 * the one adapter that turns an error record into the JSON error shape of
 * DESIGN.md. Nothing here knows about libmicrohttpd.
 */
#include "dcms/arena.h"
#include "dcms/json.h"
#include "dcms/log.h"
#include "http/server_int.h"

const char *dcms_http_req_header(const struct dcms_http_req *r, const char *name)
{
    return r->lookup ? r->lookup(r->conn, DCMS_HTTP_HEADER, name) : NULL;
}

const char *dcms_http_req_query(const struct dcms_http_req *r, const char *name)
{
    return r->lookup ? r->lookup(r->conn, DCMS_HTTP_QUERY, name) : NULL;
}

const char *dcms_http_req_param(const struct dcms_http_req *r, const char *name)
{
    for (size_t i = 0; i < r->nparams; i++)
        if (strcmp(r->params[i].name, name) == 0)
            return r->params[i].value;
    return NULL;
}

enum dcms_err dcms_http_req_json(struct dcms_http_req *r, size_t flags, json_t **out)
{
    json_t *v;
    enum dcms_err e = dcms_json_parse(r->body, flags, &v, r->ei);
    if (e)
        return e;
    if (dcms_arena_defer(r->arena, dcms_json_decref_cb, v))
        return dcms_err_set(r->ei, DCMS_ERR_NOMEM, NULL);
    *out = v;
    return DCMS_OK;
}

enum dcms_err dcms_http_resp_json(struct dcms_http_resp *resp, unsigned status, json_t *v)
{
    size_t len;
    char *s = v ? dcms_json_dump(v, &len) : NULL;
    json_decref(v);
    if (!s)
        return DCMS_ERR_NOMEM;
    if (resp->body_owned)
        free((void *)resp->body);
    resp->status = status;
    resp->content_type = DCMS_HTTP_JSON;
    resp->body = s;
    resp->body_len = len;
    resp->body_owned = true;
    return DCMS_OK;
}

void dcms_http_resp_static(struct dcms_http_resp *resp, unsigned status, const char *content_type,
                           const char *body, size_t len)
{
    if (resp->body_owned)
        free((void *)resp->body);
    resp->status = status;
    resp->content_type = content_type;
    resp->body = body;
    resp->body_len = len;
    resp->body_owned = false;
}

enum dcms_err dcms_http_resp_header(struct dcms_http_resp *resp, const char *name,
                                    const char *value)
{
    if (resp->nheaders >= DCMS_HTTP_MAX_HEADERS)
        return DCMS_ERR_INTERNAL;
    resp->headers[resp->nheaders].name = name;
    resp->headers[resp->nheaders].value = value;
    resp->nheaders++;
    return DCMS_OK;
}

/* Errors whose message could carry internals are sent with the default text only. */
static bool message_is_public(enum dcms_err e)
{
    return dcms_err_http(e) < 500 || e == DCMS_ERR_UNAVAILABLE || e == DCMS_ERR_RETRY;
}

void dcms_http_render_error(struct dcms_http_resp *resp, enum dcms_err e,
                            const struct dcms_errinfo *ei, const char *request_id)
{
    if (e == DCMS_OK)
        e = DCMS_ERR_INTERNAL;
    const char *msg = ei && ei->code == e && ei->message[0] && message_is_public(e)
                          ? ei->message
                          : dcms_err_str(e);
    json_t *err = json_pack("{s:s, s:s}", "code", dcms_err_slug(e), "message", msg);
    if (err && ei && ei->code == e && ei->ndetails) {
        json_t *details = json_array();
        for (size_t i = 0; details && i < ei->ndetails; i++)
            json_array_append_new(details, json_pack("{s:s, s:s}", "field", ei->details[i].field,
                                                     "problem", ei->details[i].problem));
        json_object_set_new(err, "details", details);
    }
    json_t *body =
        err ? json_pack("{s:o, s:s}", "error", err, "request_id", request_id ? request_id : "")
            : NULL;
    if (!body || dcms_http_resp_json(resp, dcms_err_http(e), body)) {
        static const char oom[] =
            "{\"error\":{\"code\":\"out_of_memory\",\"message\":\"out of memory\"}}";
        dcms_http_resp_static(resp, 500, DCMS_HTTP_JSON, oom, sizeof(oom) - 1);
        return;
    }
    resp->status = dcms_err_http(e);
}
