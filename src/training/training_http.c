/*
 * Thin handlers of the training routes: decode (training_json.c), call the
 * service (training.c), encode. The event stream is text/event-stream.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dcms/app.h"
#include "dcms/arena.h"
#include "dcms/audit.h"
#include "dcms/str.h"
#include "http/handlers.h"
#include "training/training_int.h"

static struct tr_call call_of(struct dcms_http_req *req)
{
    return (struct tr_call){req->app, req->principal, req->ei, req->request_id, req->client_ip};
}

enum dcms_err dcms_training_http_start(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    json_t *b = NULL;
    enum dcms_err e = dcms_http_req_json(req, 0, &b);
    if (e)
        return e;
    struct tr_request rq;
    if ((e = tr_request_from_json(b, &rq, req->ei)))
        return e;
    struct tr_call c = call_of(req);
    json_t *out = NULL;
    e = tr_start(&c, dcms_http_req_param(req, "id"), &rq, &out);
    json_decref(rq.config);
    if (e)
        return e;
    char *loc = dcms_arena_sprintf(req->arena, "/api/v1/trainings/%s",
                                   json_string_value(json_object_get(out, "id")));
    if (!loc || dcms_http_resp_header(resp, "Location", loc)) {
        json_decref(out);
        return dcms_err_set(req->ei, DCMS_ERR_NOMEM, NULL);
    }
    return dcms_http_reply(req, resp, 202, out);
}

enum dcms_err dcms_training_http_list(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    const char *cursor;
    int64_t limit;
    if (dcms_http_query_page(req, &cursor, &limit))
        return req->ei->code;
    struct tr_call c = call_of(req);
    json_t *out = NULL;
    enum dcms_err e = tr_list(&c, dcms_http_req_param(req, "id"), cursor, limit, &out);
    return e ? e : dcms_http_reply(req, resp, 200, out);
}

enum dcms_err dcms_training_http_get(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    struct tr_call c = call_of(req);
    json_t *out = NULL;
    enum dcms_err e = tr_get(&c, dcms_http_req_param(req, "id"), &out);
    return e ? e : dcms_http_reply(req, resp, 200, out);
}

enum dcms_err dcms_training_http_cancel(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    struct tr_call c = call_of(req);
    json_t *out = NULL;
    enum dcms_err e = tr_cancel(&c, dcms_http_req_param(req, "id"), &out);
    return e ? e : dcms_http_reply(req, resp, 200, out);
}

enum dcms_err dcms_training_http_model(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    struct tr_call c = call_of(req);
    unsigned char *model = NULL;
    size_t len = 0;
    char eid[DCMS_UUID_STRLEN] = "";
    enum dcms_err e = tr_model(&c, dcms_http_req_param(req, "id"), &model, &len, eid);
    if (e)
        return e;
    resp->status = 200;
    resp->content_type = "application/octet-stream";
    resp->body = (const char *)model;
    resp->body_len = len;
    resp->body_owned = true;
    char *cd = dcms_arena_sprintf(req->arena, "attachment; filename=\"%s.safetensors\"",
                                  dcms_http_req_param(req, "id"));
    /* The download's audit event and its receipt (docs/audit.md, "Receipts"). */
    char *link =
        dcms_arena_sprintf(req->arena, "<" DCMS_AUDIT_RECEIPT_PATH ">; rel=\"receipt\"", eid);
    char *ev = dcms_arena_sprintf(req->arena, "%s", eid);
    if (!cd || !link || !ev || dcms_http_resp_header(resp, "Content-Disposition", cd) ||
        dcms_http_resp_header(resp, "X-Dcms-Audit-Event", ev) ||
        dcms_http_resp_header(resp, "Link", link))
        return dcms_err_set(req->ei, DCMS_ERR_NOMEM, NULL);
    return DCMS_OK;
}

static void wake(void *w)
{
    dcms_http_wake(w);
}

static enum dcms_http_pull_status pull(void *ctx, struct dcms_http_waker *w, char *buf, size_t max,
                                       size_t *n)
{
    return tr_stream_read(ctx, buf, max, n, wake, w) ? DCMS_HTTP_PULL_END : DCMS_HTTP_PULL_MORE;
}

static void pull_release(void *ctx)
{
    tr_stream_release(ctx);
}

enum dcms_err dcms_training_http_events(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    int64_t after = 0;
    const char *last = dcms_http_req_header(req, "Last-Event-ID");
    if (last && *last) {
        char *end;
        errno = 0;
        long long v = strtoll(last, &end, 10);
        if (*end || errno || v < 0 || *last < '0' || *last > '9')
            return dcms_err_field(req->ei, "Last-Event-ID", "must be the id of an event");
        after = v;
    }
    struct tr_call c = call_of(req);
    struct tr_stream *s = NULL;
    enum dcms_err e = tr_stream_open(&c, dcms_http_req_param(req, "id"), after, &s);
    if (e)
        return e;
    resp->status = 200;
    resp->content_type = "text/event-stream; charset=utf-8";
    resp->pull = (struct dcms_http_pull){pull, pull_release, s};
    return DCMS_OK;
}
