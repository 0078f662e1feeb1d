/*
 * What an HTTP handler sees: a parsed request and a response to fill.
 *
 * Handlers never touch libmicrohttpd. The router (src/http/) matches the
 * route, enforces the body limit and content type, and gives the handler a
 * request whose memory lives in `req->arena` until the response is sent.
 * A handler returns DCMS_OK after filling `resp`, or an error recorded in
 * `req->ei`, which the HTTP layer renders in the error shape of DESIGN.md.
 */
#ifndef DCMS_HTTP_H
#define DCMS_HTTP_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "dcms/err.h"
#include "dcms/str.h"

struct dcms_arena;
struct dcms_app;
struct dcms_principal;
struct dcms_http_req;
struct dcms_http_resp;

#define DCMS_HTTP_MAX_PARAMS 4
#define DCMS_HTTP_MAX_HEADERS 6

struct dcms_http_param {
    const char *name;
    const char *value;
};

/*
 * A streamed request body (routes whose max body is STREAM in routes.def).
 * The route's handler runs once before the first body byte, after
 * authentication and authorization, with req->stream set: it refuses the
 * request (an error return is answered at once and the body skipped) or
 * fills `on_data`, `on_end`, `on_abort` and `ctx` and returns DCMS_OK
 * without answering. The server then calls on_data for every chunk as it
 * arrives (chunks are never buffered), and exactly one of:
 *   - on_end at the end of the body, which answers like a handler;
 *   - on_abort when the request ends otherwise (the client went away, or
 *     on_data failed: its error is answered after the rest of the body is
 *     read and dropped).
 * Either one must release what ctx holds. Calls for one request are never
 * concurrent.
 */
struct dcms_http_stream {
    enum dcms_err (*on_data)(void *ctx, const void *p, size_t n, struct dcms_errinfo *ei);
    enum dcms_err (*on_end)(void *ctx, struct dcms_http_req *req, struct dcms_http_resp *resp);
    void (*on_abort)(void *ctx);
    void *ctx;
};

struct dcms_http_req {
    struct dcms_app *app;
    struct dcms_arena *arena;
    struct dcms_errinfo *ei;
    const char *method; /* "GET", "POST", ... (HEAD is served as GET) */
    const char *path;   /* decoded path, without the query */
    const char *request_id;
    const char *client_ip;
    struct dcms_str body;            /* empty unless the route accepts one */
    struct dcms_http_stream *stream; /* streaming routes only, see above; NULL otherwise */
    /* API key id a verified TLS client certificate maps to (DCMS_TLS_CLIENT_MAP_FILE), or NULL. */
    const char *client_key_id;
    /* The authenticated caller (in req->arena), or NULL when anonymous. Set by the router. */
    const struct dcms_principal *principal;
    struct dcms_http_param params[DCMS_HTTP_MAX_PARAMS];
    size_t nparams;
    /* Header and query lookups, provided by the server (or a test). */
    const char *(*lookup)(void *conn, int kind, const char *name);
    /* Calls fn for every query argument name, in order, repeats included (NULL: none). */
    void (*each_query)(void *conn, void (*fn)(void *ctx, const char *name), void *ctx);
    void *conn;
};

enum { DCMS_HTTP_HEADER = 1, DCMS_HTTP_QUERY = 2 };

/* Request header value (case-insensitive name) or NULL. */
const char *dcms_http_req_header(const struct dcms_http_req *r, const char *name);
/* Query-string argument (decoded) or NULL. */
const char *dcms_http_req_query(const struct dcms_http_req *r, const char *name);
/* Path parameter from the route template ("{id}") or NULL. */
const char *dcms_http_req_param(const struct dcms_http_req *r, const char *name);

/*
 * Parses the body as JSON (see dcms_json_parse) and ties the result to the
 * request arena, so the handler need not free it.
 */
enum dcms_err dcms_http_req_json(struct dcms_http_req *r, size_t flags,
                                 json_t **out) DCMS_MUST_CHECK;

struct dcms_http_header {
    const char *name, *value;
};

/*
 * A response body produced as it comes (a Server-Sent Events stream), with
 * no thread held while there is nothing to send. The handler sets
 * resp->pull (and no body) and returns DCMS_OK; the server then calls
 * `read` on its own threads, never two at a time for one response:
 *   - DCMS_HTTP_PULL_MORE with *n > 0 bytes written to `buf` (at most `max`);
 *   - DCMS_HTTP_PULL_MORE with *n == 0: nothing now; the connection is
 *     parked (no thread, no timeout) until someone calls dcms_http_wake(w)
 *     (any thread; a wake that comes before the park is not lost), then
 *     `read` is called again;
 *   - DCMS_HTTP_PULL_END: the body is complete.
 * `w` is the same on every call and valid until `release`, which the
 * server calls exactly once when the response is done with (ended, the
 * client gone, the server stopping); the producer must not wake `w` once
 * release has begun (serialize both on the producer's own lock). While the
 * server drains, parked responses are woken and ended without calling
 * `read`, so open streams never hold up a shutdown.
 */
struct dcms_http_waker;
enum dcms_http_pull_status { DCMS_HTTP_PULL_MORE, DCMS_HTTP_PULL_END };
struct dcms_http_pull {
    enum dcms_http_pull_status (*read)(void *ctx, struct dcms_http_waker *w, char *buf, size_t max,
                                       size_t *n);
    void (*release)(void *ctx);
    void *ctx;
};

/* Unparks the response of `w` (or marks it to be read again). Thread-safe. */
void dcms_http_wake(struct dcms_http_waker *w);

struct dcms_http_resp {
    unsigned status;
    const char *content_type;
    const char *body; /* see body_owned */
    size_t body_len;
    bool body_owned; /* true: malloc'd, wiped and freed by the HTTP layer; false: static or arena */
    struct dcms_http_header headers[DCMS_HTTP_MAX_HEADERS];
    size_t nheaders;
    struct dcms_http_pull pull; /* pull.read set: the body comes from it (see above) */
};

/* Encodes `v` (reference stolen) as the JSON body. DCMS_ERR_NOMEM on failure. */
enum dcms_err dcms_http_resp_json(struct dcms_http_resp *resp, unsigned status,
                                  json_t *v) DCMS_MUST_CHECK;
/* A body that outlives the request (a literal or an embedded file). */
void dcms_http_resp_static(struct dcms_http_resp *resp, unsigned status, const char *content_type,
                           const char *body, size_t len);
/* Adds a response header (the strings must outlive the request). */
enum dcms_err dcms_http_resp_header(struct dcms_http_resp *resp, const char *name,
                                    const char *value) DCMS_MUST_CHECK;

/*
 * Handler helpers. Each records its failure in `req->ei` and returns that
 * code, so a handler can end with `return dcms_http_reply(...)`.
 */

/*
 * Decimal integer query parameter `name` within [min, max]. Absent leaves
 * *out unchanged and returns true; anything else that is not such an
 * integer records a field problem ("must be an integer from MIN to MAX")
 * naming `name` and returns false, so several parameters can be checked
 * before the handler looks at req->ei->code.
 */
bool dcms_http_query_int(struct dcms_http_req *req, const char *name, int64_t min, int64_t max,
                         int64_t *out);

/*
 * The query of a paged list that takes nothing else: `cursor` (a UUID, the
 * previous page's next_cursor; NULL when absent) and `limit` (1 to 500,
 * 50 when absent). Records every problem as a field problem and returns
 * req->ei->code.
 */
enum dcms_err dcms_http_query_page(struct dcms_http_req *req, const char **cursor, int64_t *limit);

/*
 * Refuses query arguments not named in `allowed` (NULL-terminated; NULL
 * or empty: none allowed): each unknown name is recorded as a field
 * problem ("unknown query parameter"), each name given more than once as
 * "is given more than once". Returns true when there was no problem, so a
 * handler calls it first and adds its value checks before looking at
 * req->ei->code. Routes whose handler does not own its query (router.c)
 * get this check with no name allowed before the handler runs.
 */
bool dcms_http_query_only(struct dcms_http_req *req, const char *const allowed[]);

/*
 * The body as a JSON object whose members are all named in `allowed`
 * (NULL-terminated). Returns the parse error, or a problem on "" when the
 * body is not an object; otherwise DCMS_OK with *out set (arena-owned),
 * every unknown member recorded as a field problem ("is not a known
 * field"), so the handler can add its own problems before returning
 * req->ei->code.
 */
enum dcms_err dcms_http_body_object(struct dcms_http_req *req, const char *const *allowed,
                                    json_t **out) DCMS_MUST_CHECK;

/*
 * String member `key` of the object `o`, at most `max` bytes and without a
 * NUL inside: its value, or NULL when absent (or JSON null when
 * `nullable`). Anything else records a field problem on `key` ("must be a
 * string of at most MAX characters", plus " or null" when `nullable`) and
 * returns NULL. The value lives as long as `o`.
 */
const char *dcms_http_str_member(struct dcms_http_req *req, const json_t *o, const char *key,
                                 size_t max, bool nullable);

/*
 * Answers `status` with the JSON body `v` (reference stolen). NULL `v`
 * (a failed json_pack) or a failed encoding is DCMS_ERR_NOMEM.
 */
enum dcms_err dcms_http_reply(struct dcms_http_req *req, struct dcms_http_resp *resp,
                              unsigned status, json_t *v) DCMS_MUST_CHECK;

/* Adds `ETag: "<version>"`, the strong validator If-Match is compared with. */
enum dcms_err dcms_http_resp_etag(struct dcms_http_req *req, struct dcms_http_resp *resp,
                                  int64_t version) DCMS_MUST_CHECK;

/*
 * dcms_http_reply with an ETag taken from the integer member "version" of
 * `v` (a versioned resource: identity, contract, enclave).
 */
enum dcms_err dcms_http_reply_etag(struct dcms_http_req *req, struct dcms_http_resp *resp,
                                   unsigned status, json_t *v) DCMS_MUST_CHECK;

/*
 * 201 Created for the new resource `v` (reference stolen): `Location:
 * <location_prefix><v.id_member>`, plus an ETag as dcms_http_reply_etag
 * when `with_etag`. Example: ("/api/v1/contracts/", "id", true, v).
 */
enum dcms_err dcms_http_reply_created(struct dcms_http_req *req, struct dcms_http_resp *resp,
                                      const char *location_prefix, const char *id_member,
                                      bool with_etag, json_t *v) DCMS_MUST_CHECK;

/* 204 No Content; always DCMS_OK. */
enum dcms_err dcms_http_reply_no_content(struct dcms_http_resp *resp);

/*
 * Kept while services still call it: the same as dcms_etag_check
 * (include/dcms/etag.h), the one meaning of If-Match (`*` = any current
 * version). New code calls dcms_etag_check; this goes once its callers moved.
 */
enum dcms_err dcms_http_check_if_match(const char *if_match, const char *version,
                                       struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* Names the node that relayed a request (dcms_http_forward); a relayed request is never relayed. */
#define DCMS_HTTP_FORWARDED_BY "X-Dcms-Forwarded-By"

/*
 * Relays the request to `base_url` (another node, "http://host:port") and
 * fills `resp` with its answer: status, body, Content-Type, ETag,
 * Location. The other node authenticates and authorizes the caller again.
 * `self_id` goes out as X-Dcms-Forwarded-By. DCMS_ERR_UNAVAILABLE when the
 * node does not answer within the timeouts (3 s to connect, 60 s in all).
 * Blocks the calling worker; thread-safe.
 */
enum dcms_err dcms_http_forward(struct dcms_http_req *req, struct dcms_http_resp *resp,
                                const char *base_url, const char *self_id) DCMS_MUST_CHECK;

typedef enum dcms_err (*dcms_http_handler_fn)(struct dcms_http_req *req,
                                              struct dcms_http_resp *resp);

#endif
