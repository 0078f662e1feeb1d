/*
 * Thin handlers of the dataset routes, and the tus 1.0 protocol headers
 * (core, creation, creation-defer-length, checksum with sha256).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "datasets/datasets_int.h"
#include "dcms/app.h"
#include "dcms/arena.h"
#include "dcms/config.h"
#include "dcms/crypto.h"
#include "http/handlers.h"

#define TUS_VERSION "1.0.0"

static struct ds_call call_of(struct dcms_http_req *req)
{
    return (struct ds_call){req->app,   req->principal,  req->ei,
                            req->arena, req->request_id, req->client_ip};
}

/* A non-negative decimal header value; -1 when absent, -2 when malformed. */
static int64_t header_int(struct dcms_http_req *req, const char *name)
{
    const char *v = dcms_http_req_header(req, name);
    if (!v)
        return -1;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (!*v || *v < '0' || *v > '9' || *end || errno || x < 0)
        return -2;
    return x;
}

static enum dcms_err hdr(struct dcms_http_req *req, struct dcms_http_resp *resp, const char *name,
                         int64_t v)
{
    char *s = dcms_arena_sprintf(req->arena, "%lld", (long long)v);
    return s ? dcms_http_resp_header(resp, name, s) : dcms_err_set(req->ei, DCMS_ERR_NOMEM, NULL);
}

enum dcms_err dcms_datasets_http_create(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    static const char *const keys[] = {"name",          "description",     "format", "schema",
                                       "expected_size", "expected_sha256", NULL};
    json_t *b;
    enum dcms_err e = dcms_http_body_object(req, keys, &b);
    if (e)
        return e;
    struct ds_create_in in = {.expected_size = -1, .upload_length = -1};
    in.name = dcms_http_str_member(req, b, "name", 255, false);
    if (!json_object_get(b, "name") || (in.name && !*in.name))
        dcms_err_field(req->ei, "name", "is required (1 to 255 characters)");
    in.description = dcms_http_str_member(req, b, "description", 10000, false);
    if (!in.description)
        in.description = "";
    const char *format = dcms_http_str_member(req, b, "format", 16, false);
    if (format && strcmp(format, "csv") != 0)
        dcms_err_field(req->ei, "format", "must be csv (with a header row)");
    int64_t max = (int64_t)req->app->cfg->dataset_max_bytes;
    const json_t *es = json_object_get(b, "expected_size");
    if (es && !json_is_null(es)) {
        if (!json_is_integer(es) || json_integer_value(es) < 0 || json_integer_value(es) > max)
            dcms_err_field(req->ei, "expected_size", "must be an integer from 0 to %lld",
                           (long long)max);
        else
            in.expected_size = json_integer_value(es);
    }
    in.expected_sha256 = dcms_http_str_member(req, b, "expected_sha256", 64, true);
    if (in.expected_sha256) {
        bool ok = strlen(in.expected_sha256) == 64;
        for (const char *p = in.expected_sha256; ok && *p; p++)
            ok = (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f');
        if (!ok)
            dcms_err_field(req->ei, "expected_sha256", "must be 64 lowercase hex digits");
    }
    /* tus creation: the length may come as Upload-Length */
    int64_t ul = header_int(req, "Upload-Length");
    if (ul == -2 || ul > max)
        dcms_err_field(req->ei, "Upload-Length", "must be an integer from 0 to %lld",
                       (long long)max);
    else if (ul >= 0 && in.expected_size >= 0 && ul != in.expected_size)
        dcms_err_field(req->ei, "Upload-Length", "must equal expected_size");
    else
        in.upload_length = ul >= 0 ? ul : in.expected_size;
    struct ds_schema schema;
    const json_t *sj = json_object_get(b, "schema");
    if (!sj)
        dcms_err_field(req->ei, "schema", "is required");
    else
        (void)ds_schema_from_json(req->arena, sj, &schema, req->ei);
    if (req->ei->code)
        return req->ei->code;
    char *st = json_dumps(sj, JSON_COMPACT);
    in.schema_json = st ? dcms_arena_strdup(req->arena, st) : NULL;
    free(st);
    if (!in.schema_json)
        return dcms_err_set(req->ei, DCMS_ERR_NOMEM, NULL);
    struct ds_call c = call_of(req);
    json_t *out = NULL;
    if ((e = ds_create(&c, &in, &out)))
        return e;
    if (dcms_http_req_header(req, "Tus-Resumable")) {
        /* a tus client uploads to the Location it is given */
        char *loc = dcms_arena_sprintf(req->arena, "/api/v1/datasets/%s/content",
                                       json_string_value(json_object_get(out, "id")));
        if (!loc || dcms_http_resp_header(resp, "Location", loc) ||
            dcms_http_resp_header(resp, "Tus-Resumable", TUS_VERSION)) {
            json_decref(out);
            return dcms_err_set(req->ei, DCMS_ERR_NOMEM, NULL);
        }
        return dcms_http_reply_etag(req, resp, 201, out);
    }
    return dcms_http_reply_created(req, resp, "/api/v1/datasets/", "id", true, out);
}

enum dcms_err dcms_datasets_http_list(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    const char *cursor;
    int64_t limit;
    if (dcms_http_query_page(req, &cursor, &limit))
        return req->ei->code;
    struct ds_call c = call_of(req);
    json_t *out = NULL;
    enum dcms_err e = ds_list(&c, cursor, limit, &out);
    return e ? e : dcms_http_reply(req, resp, 200, out);
}

enum dcms_err dcms_datasets_http_get(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    struct ds_call c = call_of(req);
    json_t *out = NULL;
    enum dcms_err e = ds_get(&c, dcms_http_req_param(req, "id"), &out);
    return e ? e : dcms_http_reply_etag(req, resp, 200, out);
}

enum dcms_err dcms_datasets_http_delete(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    struct ds_call c = call_of(req);
    enum dcms_err e = ds_delete(&c, dcms_http_req_param(req, "id"));
    return e ? e : dcms_http_reply_no_content(resp);
}

enum dcms_err dcms_datasets_http_verify(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    struct ds_call c = call_of(req);
    json_t *out = NULL;
    enum dcms_err e = ds_verify(&c, dcms_http_req_param(req, "id"), &out);
    return e ? e : dcms_http_reply(req, resp, 200, out);
}

enum dcms_err dcms_datasets_http_options(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    enum dcms_err e = dcms_http_reply_no_content(resp);
    if (!e)
        e = dcms_http_resp_header(resp, "Tus-Resumable", TUS_VERSION);
    if (!e)
        e = dcms_http_resp_header(resp, "Tus-Version", TUS_VERSION);
    if (!e)
        e = dcms_http_resp_header(resp, "Tus-Extension", "creation,creation-defer-length,checksum");
    if (!e)
        e = dcms_http_resp_header(resp, "Tus-Checksum-Algorithm", "sha256");
    if (!e)
        e = hdr(req, resp, "Tus-Max-Size", (int64_t)req->app->cfg->dataset_max_bytes);
    return e ? dcms_err_set(req->ei, e, NULL) : DCMS_OK;
}

static enum dcms_err status_headers(struct dcms_http_req *req, struct dcms_http_resp *resp,
                                    const struct ds_upload_status *st)
{
    enum dcms_err e = dcms_http_resp_header(resp, "Tus-Resumable", TUS_VERSION);
    if (!e)
        e = hdr(req, resp, "Upload-Offset", st->offset);
    if (!e && st->length >= 0)
        e = hdr(req, resp, "Upload-Length", st->length);
    return e ? dcms_err_set(req->ei, e, NULL) : DCMS_OK;
}

enum dcms_err dcms_datasets_http_status(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    struct ds_call c = call_of(req);
    struct ds_upload_status st;
    enum dcms_err e = ds_upload_status(&c, dcms_http_req_param(req, "id"), &st);
    if (e)
        return e;
    if ((e = status_headers(req, resp, &st)))
        return e;
    json_t *o =
        json_pack("{s:I, s:o, s:s}", "upload_offset", (json_int_t)st.offset, "upload_length",
                  st.length >= 0 ? json_integer(st.length) : json_null(), "status", st.status);
    return dcms_http_reply(req, resp, 200, o);
}

/* ---- streamed bodies ---- */

struct stream_ctx {
    struct ds_upload *u;
    bool put;
    char id[DCMS_UUID_STRLEN];
};

static enum dcms_err on_data(void *ctx, const void *p, size_t n, struct dcms_errinfo *ei)
{
    struct stream_ctx *s = ctx;
    return ds_upload_data(s->u, p, n, ei);
}

static enum dcms_err on_end(void *ctx, struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    struct stream_ctx *s = ctx;
    struct ds_upload_status st;
    enum dcms_err e = ds_upload_end(s->u, req->ei, &st);
    s->u = NULL;
    if (e)
        return e;
    if ((e = status_headers(req, resp, &st)))
        return e;
    if (!s->put)
        return dcms_http_reply_no_content(resp);
    struct ds_call c = call_of(req);
    json_t *out = NULL;
    e = ds_get(&c, s->id, &out);
    return e ? e : dcms_http_reply(req, resp, 200, out);
}

static void on_abort(void *ctx)
{
    struct stream_ctx *s = ctx;
    if (s->u)
        ds_upload_abort(s->u);
    s->u = NULL;
}

/* "sha256 <base64 of 32 bytes>" (tus checksum extension). */
static bool parse_checksum(struct dcms_http_req *req, struct ds_upload_in *in)
{
    const char *v = dcms_http_req_header(req, "Upload-Checksum");
    if (!v)
        return true;
    size_t n = 0;
    if (strncasecmp(v, "sha256 ", 7) != 0) {
        dcms_err_field(req->ei, "Upload-Checksum", "the algorithm must be sha256");
        return false;
    }
    if (dcms_b64_decode(in->checksum, sizeof(in->checksum), v + 7, strlen(v + 7), &n) ||
        n != DCMS_SHA256_LEN) {
        dcms_err_field(req->ei, "Upload-Checksum",
                       "must be \"sha256 \" and the base64 of 32 bytes");
        return false;
    }
    in->has_checksum = true;
    return true;
}

static enum dcms_err start(struct dcms_http_req *req, struct ds_upload_in *in)
{
    if (!req->stream)
        return dcms_err_set(req->ei, DCMS_ERR_INTERNAL, NULL);
    in->body_length = header_int(req, "Content-Length");
    if (!parse_checksum(req, in) || req->ei->code)
        return req->ei->code;
    struct stream_ctx *s = dcms_arena_calloc(req->arena, 1, sizeof(*s));
    if (!s)
        return dcms_err_set(req->ei, DCMS_ERR_NOMEM, NULL);
    s->put = in->put;
    snprintf(s->id, sizeof(s->id), "%s", dcms_http_req_param(req, "id"));
    struct ds_call c = call_of(req);
    enum dcms_err e = ds_upload_begin(&c, s->id, in, &s->u);
    if (e)
        return e;
    *req->stream = (struct dcms_http_stream){on_data, on_end, on_abort, s};
    return DCMS_OK;
}

enum dcms_err dcms_datasets_http_patch(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    const char *tr = dcms_http_req_header(req, "Tus-Resumable");
    if (!tr || strcmp(tr, TUS_VERSION) != 0)
        return dcms_err_set(req->ei, DCMS_ERR_PRECONDITION_FAILED,
                            "Tus-Resumable must be " TUS_VERSION);
    const char *ct = dcms_http_req_header(req, "Content-Type");
    if (!ct || strcasecmp(ct, "application/offset+octet-stream") != 0)
        return dcms_err_set(req->ei, DCMS_ERR_UNSUPPORTED_MEDIA_TYPE,
                            "a tus PATCH body must be application/offset+octet-stream");
    struct ds_upload_in in = {.put = false};
    in.offset = header_int(req, "Upload-Offset");
    if (in.offset < 0)
        dcms_err_field(req->ei, "Upload-Offset", "is required: a non-negative integer");
    in.length = header_int(req, "Upload-Length");
    if (in.length == -2)
        dcms_err_field(req->ei, "Upload-Length", "must be a non-negative integer");
    if (req->ei->code)
        return req->ei->code;
    return start(req, &in);
}

enum dcms_err dcms_datasets_http_put(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    const char *ct = dcms_http_req_header(req, "Content-Type");
    if (!ct ||
        (strncasecmp(ct, "text/csv", 8) != 0 && strcasecmp(ct, "application/octet-stream") != 0))
        return dcms_err_set(req->ei, DCMS_ERR_UNSUPPORTED_MEDIA_TYPE,
                            "the body must be text/csv or application/octet-stream");
    struct ds_upload_in in = {.put = true, .offset = 0};
    in.length = header_int(req, "Content-Length");
    if (in.length < 0)
        return dcms_err_field(req->ei, "Content-Length",
                              "is required: PUT takes the whole file (use tus PATCH to stream "
                              "one of unknown length)");
    return start(req, &in);
}
