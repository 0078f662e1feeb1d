/*
 * The handler-facing side of a request: lookups, JSON bodies, responses and
 * the one adapter that turns an error record into the JSON error shape of
 * DESIGN.md. Nothing here knows about libmicrohttpd.
 */
#include <ctype.h>
#include <errno.h>

#include "dcms/arena.h"
#include "dcms/etag.h"
#include "dcms/json.h"
#include "dcms/log.h"
#include "dcms/uuid.h"
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
        dcms_free_wiped((void *)resp->body);
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
        dcms_free_wiped((void *)resp->body);
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

bool dcms_http_query_int(struct dcms_http_req *req, const char *name, int64_t min, int64_t max,
                         int64_t *out)
{
    const char *s = dcms_http_req_query(req, name);
    if (!s)
        return true;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!isdigit((unsigned char)*s) || *end || errno || v < min || v > max) {
        dcms_err_field(req->ei, name, "must be an integer from %lld to %lld", (long long)min,
                       (long long)max);
        return false;
    }
    *out = v;
    return true;
}

enum dcms_err dcms_http_query_page(struct dcms_http_req *req, const char **cursor, int64_t *limit)
{
    static const char *const params[] = {"cursor", "limit", NULL};
    dcms_http_query_only(req, params);
    *limit = 50;
    *cursor = dcms_http_req_query(req, "cursor");
    if (*cursor && !dcms_uuid_valid(*cursor))
        dcms_err_field(req->ei, "cursor", "must be the next_cursor of the previous page");
    dcms_http_query_int(req, "limit", 1, 500, limit);
    return req->ei->code;
}

struct query_check {
    struct dcms_http_req *req;
    const char *const *allowed;
    const char *seen[32];
    size_t nseen;
    bool ok;
};

static void query_check_one(void *ctx, const char *name)
{
    struct query_check *q = ctx;
    const char *field = dcms_arena_strndup(q->req->arena, name, strnlen(name, 200));
    bool known = false;
    for (const char *const *a = q->allowed; a && *a && !known; a++)
        known = strcmp(*a, name) == 0;
    if (!known) {
        dcms_err_field(q->req->ei, field, "unknown query parameter");
        q->ok = false;
        return;
    }
    for (size_t i = 0; i < q->nseen; i++)
        if (strcmp(q->seen[i], name) == 0) {
            dcms_err_field(q->req->ei, field, "is given more than once");
            q->ok = false;
            return;
        }
    if (q->nseen < sizeof(q->seen) / sizeof(q->seen[0]))
        q->seen[q->nseen++] = field;
}

bool dcms_http_query_only(struct dcms_http_req *req, const char *const allowed[])
{
    struct query_check q = {.req = req, .allowed = allowed, .ok = true};
    if (req->each_query)
        req->each_query(req->conn, query_check_one, &q);
    return q.ok;
}

enum dcms_err dcms_http_body_object(struct dcms_http_req *req, const char *const *allowed,
                                    json_t **out)
{
    json_t *v;
    enum dcms_err e = dcms_http_req_json(req, 0, &v);
    if (e)
        return e;
    if (!json_is_object(v))
        return dcms_err_field(req->ei, "", "must be a JSON object");
    dcms_json_only_members(v, "", allowed, req->ei);
    *out = v;
    return DCMS_OK;
}

const char *dcms_http_str_member(struct dcms_http_req *req, const json_t *o, const char *key,
                                 size_t max, bool nullable)
{
    json_t *v = json_object_get(o, key);
    if (!v || (nullable && json_is_null(v)))
        return NULL;
    if (!json_is_string(v) || json_string_length(v) > max ||
        strlen(json_string_value(v)) != json_string_length(v)) {
        dcms_err_field(req->ei, key, "must be a string of at most %zu characters%s", max,
                       nullable ? " or null" : "");
        return NULL;
    }
    return json_string_value(v);
}

enum dcms_err dcms_http_reply(struct dcms_http_req *req, struct dcms_http_resp *resp,
                              unsigned status, json_t *v)
{
    if (!v || dcms_http_resp_json(resp, status, v))
        return dcms_err_set(req->ei, DCMS_ERR_NOMEM, NULL);
    return DCMS_OK;
}

enum dcms_err dcms_http_resp_etag(struct dcms_http_req *req, struct dcms_http_resp *resp,
                                  int64_t version)
{
    const char *etag = dcms_arena_sprintf(req->arena, "\"%lld\"", (long long)version);
    if (!etag || dcms_http_resp_header(resp, "ETag", etag))
        return dcms_err_set(req->ei, DCMS_ERR_NOMEM, NULL);
    return DCMS_OK;
}

enum dcms_err dcms_http_reply_etag(struct dcms_http_req *req, struct dcms_http_resp *resp,
                                   unsigned status, json_t *v)
{
    if (dcms_http_resp_etag(req, resp, json_integer_value(json_object_get(v, "version")))) {
        json_decref(v);
        return req->ei->code;
    }
    return dcms_http_reply(req, resp, status, v);
}

enum dcms_err dcms_http_reply_created(struct dcms_http_req *req, struct dcms_http_resp *resp,
                                      const char *location_prefix, const char *id_member,
                                      bool with_etag, json_t *v)
{
    const char *loc = dcms_arena_sprintf(req->arena, "%s%s", location_prefix,
                                         json_string_value(json_object_get(v, id_member)));
    if (!loc || dcms_http_resp_header(resp, "Location", loc)) {
        json_decref(v);
        return dcms_err_set(req->ei, DCMS_ERR_NOMEM, NULL);
    }
    return with_etag ? dcms_http_reply_etag(req, resp, 201, v) : dcms_http_reply(req, resp, 201, v);
}

enum dcms_err dcms_http_reply_no_content(struct dcms_http_resp *resp)
{
    dcms_http_resp_static(resp, 204, NULL, "", 0);
    return DCMS_OK;
}

enum dcms_err dcms_http_check_if_match(const char *if_match, const char *version,
                                       struct dcms_errinfo *ei)
{
    return dcms_etag_check(if_match, version, ei);
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
    /* A full disk passes when space is freed; clients retry after a pause. */
    if (e == DCMS_ERR_INSUFFICIENT_STORAGE && dcms_http_resp_header(resp, "Retry-After", "5"))
        DCMS_LOG(DCMS_LOG_WARN, "http", "cannot add Retry-After to a 507 answer");
}
