/*
 * libmicrohttpd glue, the only file that includes microhttpd.h.
 *
 * Per request: the first access-handler call creates the context (arena,
 * request id, route match) and checks the declared body size and content
 * type; later calls stream the body into a capped buffer; the last call
 * runs the handler and queues the response. Answering on a later call, not
 * the first, keeps keep-alive connections open. An error decided before the
 * body arrives is queued at once, which makes libmicrohttpd skip the body
 * and close the connection, so an oversized upload is never buffered.
 *
 * A body may carry a password or a refresh token and a response an issued
 * token, so both are wiped before their memory is released, on every path:
 * the body buffer (a secret dcms_buf: each copy it leaves behind while
 * growing, and itself on release), owned response bodies by dcms_free_wiped,
 * which is also the free callback handed to libmicrohttpd.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "dcms/app.h"
#include "dcms/arena.h"
#include "dcms/audit.h"
#include "dcms/cancel.h"
#include "dcms/clock.h"
#include "dcms/config.h"
#include "dcms/iam.h"
#include "dcms/log.h"
#include "dcms/metrics.h"
#include "dcms/server.h"
#include "dcms/uuid.h"
#include "http/conn_guard.h"
#include "http/server_int.h"
#include "http/tls.h"

#define REQUEST_ARENA_MAX (8u << 20)
#define REQUEST_ID_MAX 128
#define ROUTE_UNMATCHED ((size_t)-1)
#define DISCARD_BUDGET (64u << 20)
#define BODY_RESERVE_MAX (64u << 10)
/* A route that takes no body still accepts an empty JSON object, which many clients send. */
#define EMPTY_BODY_MAX 64

/* Two years, as Mozilla's guidelines recommend; sent only over TLS (RFC 6797 section 7.2). */
static const char hsts[] = "max-age=63072000";

static const char csp_api[] =
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

struct dcms_http_server {
    struct MHD_Daemon *daemon;
    struct dcms_app *app;
    struct dcms_conn_guard *guard; /* request-head deadlines; NULL when turned off */
    struct dcms_tls *tls;          /* the HTTPS certificate; NULL for plain HTTP */
    char *client_ca;               /* PEM of DCMS_TLS_CLIENT_CA_FILE, or NULL */
    atomic_bool draining;
    uint16_t port;
    pthread_mutex_t pull_mu;
    struct dcms_http_waker *pulls; /* the pulled responses in flight, a list */
};

/* A pulled response (struct dcms_http_pull): its connection and whether it is parked. */
struct dcms_http_waker {
    struct dcms_http_server *srv;
    struct MHD_Connection *conn;
    struct dcms_http_pull pull;
    pthread_mutex_t mu;
    bool suspended; /* parked with MHD_suspend_connection */
    bool woken;     /* a wake came while it was not parked */
    struct dcms_http_waker *prev, *next;
};

struct reqctx {
    struct dcms_http_server *srv;
    struct dcms_arena *arena;
    struct dcms_errinfo ei;
    struct dcms_http_req req;
    size_t route;
    size_t max_body;
    struct dcms_buf body;
    struct dcms_http_stream stream; /* streaming routes: set by the handler */
    bool streaming;                 /* stream callbacks owed an on_end or on_abort */
    enum dcms_err early; /* decided on the first call, answered later (or at once with a body) */
    bool begun;          /* begin() ran; before it only the raw-URI verdict is set */
    bool bad_path;       /* the raw path holds an encoded separator, dot or control byte */
    bool close;          /* framing error: answer, then close the connection */
    bool empty_only;     /* the route takes no body: only nothing or {} is accepted */
    bool queued;
    size_t discarded; /* body bytes dropped after an early error */
    unsigned status;
    size_t resp_bytes;
    int64_t start_us;
    char allow[64];
    char request_id[REQUEST_ID_MAX + 1];
    char client_ip[INET6_ADDRSTRLEN];
    char client_key[37]; /* API key named by a verified client certificate */
};

static const char *mhd_lookup(void *conn, int kind, const char *name)
{
    return MHD_lookup_connection_value(
        conn, kind == DCMS_HTTP_QUERY ? MHD_GET_ARGUMENT_KIND : MHD_HEADER_KIND, name);
}

struct query_walk {
    void (*fn)(void *ctx, const char *name);
    void *ctx;
};

static enum MHD_Result query_walk_one(void *cls, enum MHD_ValueKind kind, const char *key,
                                      const char *value)
{
    (void)kind;
    (void)value;
    struct query_walk *w = cls;
    w->fn(w->ctx, key ? key : "");
    return MHD_YES;
}

static void mhd_each_query(void *conn, void (*fn)(void *ctx, const char *name), void *ctx)
{
    struct query_walk w = {fn, ctx};
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, query_walk_one, &w);
}

static bool request_id_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > REQUEST_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || c == ':'))
            return false;
    }
    return true;
}

static void client_address(struct MHD_Connection *conn, char *out, size_t cap)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    out[0] = '\0';
    if (!ci || !ci->client_addr)
        return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, out,
                  (socklen_t)cap);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, out,
                  (socklen_t)cap);
}

static bool is_json_type(const char *ct)
{
    static const char want[] = "application/json";
    size_t n = sizeof(want) - 1;
    if (strncasecmp(ct, want, n) != 0)
        return false;
    ct += n;
    while (*ct == ' ')
        ct++;
    if (*ct == '\0')
        return true;
    if (*ct != ';')
        return false;
    /* JSON is UTF-8 (RFC 8259); a charset parameter may only say so. */
    const char *cs = strcasestr(ct, "charset=");
    if (!cs)
        return true;
    cs += 8;
    if (*cs == '"')
        cs++;
    return strncasecmp(cs, "utf-8", 5) == 0 || strncasecmp(cs, "utf8", 4) == 0;
}

/* Whether the handler set header `name` itself (compared without case). */
static bool resp_sets(const struct dcms_http_resp *resp, const char *name)
{
    for (size_t i = 0; i < resp->nheaders; i++)
        if (strcasecmp(resp->headers[i].name, name) == 0)
            return true;
    return false;
}

void dcms_http_wake(struct dcms_http_waker *w)
{
    pthread_mutex_lock(&w->mu);
    if (w->suspended) {
        w->suspended = false;
        MHD_resume_connection(w->conn);
    } else {
        w->woken = true;
    }
    pthread_mutex_unlock(&w->mu);
}

/* Wakes every pulled response (a drain or a stop: they end at once). */
static void wake_all(struct dcms_http_server *s)
{
    pthread_mutex_lock(&s->pull_mu);
    for (struct dcms_http_waker *w = s->pulls; w; w = w->next)
        dcms_http_wake(w);
    pthread_mutex_unlock(&s->pull_mu);
}

/*
 * libmicrohttpd's content reader for a pulled response. Nothing to send:
 * the connection is suspended from inside the reader (as libmicrohttpd
 * expects: returning 0 without it would spin) and resumed by
 * dcms_http_wake; a wake that raced in before the suspend reads again.
 */
static ssize_t pull_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct dcms_http_waker *w = cls;
    (void)pos;
    for (int pass = 0; pass < 64; pass++) {
        if (atomic_load(&w->srv->draining))
            return MHD_CONTENT_READER_END_OF_STREAM;
        pthread_mutex_lock(&w->mu);
        w->woken = false;
        pthread_mutex_unlock(&w->mu);
        size_t n = 0;
        if (w->pull.read(w->pull.ctx, w, buf, max, &n) == DCMS_HTTP_PULL_END)
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (n > 0)
            return (ssize_t)(n < max ? n : max);
        pthread_mutex_lock(&w->mu);
        bool again = w->woken || atomic_load(&w->srv->draining);
        if (!again) {
            w->suspended = true;
            MHD_suspend_connection(w->conn);
        }
        pthread_mutex_unlock(&w->mu);
        if (!again)
            return 0;
    }
    /* woken on every pass: park and unpark, so the next read comes from the event loop */
    pthread_mutex_lock(&w->mu);
    MHD_suspend_connection(w->conn);
    MHD_resume_connection(w->conn);
    pthread_mutex_unlock(&w->mu);
    return 0;
}

static void pull_free(void *cls)
{
    struct dcms_http_waker *w = cls;
    w->pull.release(w->pull.ctx);
    struct dcms_http_server *s = w->srv;
    pthread_mutex_lock(&s->pull_mu);
    if (w->prev)
        w->prev->next = w->next;
    else
        s->pulls = w->next;
    if (w->next)
        w->next->prev = w->prev;
    pthread_mutex_unlock(&s->pull_mu);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

/* The response of a pull (the waker then owns pull.ctx: pull_free releases it). */
static struct MHD_Response *pull_response(struct reqctx *c, struct MHD_Connection *conn,
                                          struct dcms_http_resp *resp)
{
    struct dcms_http_waker *w = calloc(1, sizeof(*w));
    if (!w) {
        resp->pull.release(resp->pull.ctx);
        return NULL;
    }
    w->srv = c->srv;
    w->conn = conn;
    w->pull = resp->pull;
    pthread_mutex_init(&w->mu, NULL);
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, pull_read, w, pull_free);
    if (!r) {
        resp->pull.release(resp->pull.ctx);
        pthread_mutex_destroy(&w->mu);
        free(w);
        return NULL;
    }
    pthread_mutex_lock(&c->srv->pull_mu);
    w->next = c->srv->pulls;
    if (w->next)
        w->next->prev = w;
    c->srv->pulls = w;
    pthread_mutex_unlock(&c->srv->pull_mu);
    return r;
}

static enum MHD_Result queue(struct reqctx *c, struct MHD_Connection *conn,
                             struct dcms_http_resp *resp)
{
    struct MHD_Response *r;
    if (resp->pull.read)
        r = pull_response(c, conn, resp);
    else if (resp->body_owned)
        r = MHD_create_response_from_buffer_with_free_callback(resp->body_len, (void *)resp->body,
                                                               dcms_free_wiped);
    else
        r = MHD_create_response_from_buffer(resp->body_len, (void *)resp->body,
                                            MHD_RESPMEM_PERSISTENT);
    if (!r) {
        if (resp->body_owned)
            dcms_free_wiped((void *)resp->body);
        return MHD_NO;
    }
    resp->body_owned = false; /* the response owns it now */
    const struct dcms_http_header std[] = {
        {"Content-Type", resp->content_type ? resp->content_type : DCMS_HTTP_JSON},
        {"X-Request-Id", c->request_id},
        {"X-Content-Type-Options", "nosniff"},
        {"X-Frame-Options", "DENY"},
        {"Referrer-Policy", "no-referrer"},
        {"Content-Security-Policy", csp_api},
        {"Cache-Control", "no-store"},
    };
    bool ok = true;
    for (size_t i = 0; i < sizeof(std) / sizeof(std[0]); i++)
        if (!resp_sets(resp, std[i].name)) /* a handler's own value replaces the default */
            ok &= MHD_add_response_header(r, std[i].name, std[i].value) == MHD_YES;
    for (size_t i = 0; i < resp->nheaders; i++)
        ok &= MHD_add_response_header(r, resp->headers[i].name, resp->headers[i].value) == MHD_YES;
    if (atomic_load(&c->srv->draining) || c->close)
        ok &= MHD_add_response_header(r, "Connection", "close") == MHD_YES;
    if (c->srv->tls)
        ok &= MHD_add_response_header(r, "Strict-Transport-Security", hsts) == MHD_YES;
    c->status = resp->status;
    c->resp_bytes = resp->body_len;
    c->queued = true;
    enum MHD_Result res = ok ? MHD_queue_response(conn, resp->status, r) : MHD_NO;
    MHD_destroy_response(r);
    return res;
}

/* The error body for `e`, with the headers a failing handler set (Retry-After, say). */
static enum MHD_Result queue_error_with(struct reqctx *c, struct MHD_Connection *conn,
                                        enum dcms_err e, const struct dcms_http_resp *handler)
{
    struct dcms_http_resp resp = {0};
    dcms_http_render_error(&resp, e, &c->ei, c->request_id);
    if (e == DCMS_ERR_METHOD_NOT_ALLOWED && c->allow[0] &&
        dcms_http_resp_header(&resp, "Allow", c->allow))
        return MHD_NO;
    for (size_t i = 0; handler && i < handler->nheaders; i++)
        if (dcms_http_resp_header(&resp, handler->headers[i].name, handler->headers[i].value))
            return MHD_NO;
    return queue(c, conn, &resp);
}

static enum MHD_Result queue_error(struct reqctx *c, struct MHD_Connection *conn, enum dcms_err e)
{
    return queue_error_with(c, conn, e, NULL);
}

/*
 * The raw request-target, before libmicrohttpd decodes it: a path holding an
 * encoded '/', '\\', '.', NUL or other control byte is refused, so the path is
 * decoded exactly once and a decoded byte never acts as a separator. The
 * query string is not checked here (its values are data, decoded by the
 * handlers' parameters). The context made here becomes the request's.
 */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    (void)cls;
    (void)conn;
    struct reqctx *c = calloc(1, sizeof(*c));
    if (!c || !uri)
        return c;
    for (const char *p = uri; *p && *p != '?' && *p != '#'; p++) {
        if (*p != '%')
            continue;
        unsigned v = 0;
        int i;
        for (i = 1; i <= 2; i++) {
            char h = p[i];
            unsigned d = h >= '0' && h <= '9'   ? (unsigned)(h - '0')
                         : h >= 'a' && h <= 'f' ? (unsigned)(h - 'a' + 10)
                         : h >= 'A' && h <= 'F' ? (unsigned)(h - 'A' + 10)
                                                : 16u;
            if (d == 16u)
                break;
            v = v * 16 + d;
        }
        if (i <= 2 || v < 0x20 || v == 0x7f || v == '/' || v == '\\' || v == '.' || v == '%') {
            c->bad_path = true;
            break;
        }
    }
    return c;
}

struct head_scan {
    unsigned content_length, transfer_encoding, host;
    const char *cl_first, *te;
    bool cl_conflict, cl_bad;
};

static enum MHD_Result head_scan_one(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    (void)kind;
    struct head_scan *h = cls;
    if (!key)
        return MHD_YES;
    value = value ? value : "";
    if (strcasecmp(key, "Content-Length") == 0) {
        if (!value[0] || strspn(value, "0123456789") != strlen(value))
            h->cl_bad = true;
        if (h->content_length++ == 0)
            h->cl_first = value;
        else if (strcmp(value, h->cl_first) != 0)
            h->cl_conflict = true;
    } else if (strcasecmp(key, "Transfer-Encoding") == 0) {
        h->transfer_encoding++;
        h->te = value;
    } else if (strcasecmp(key, "Host") == 0) {
        h->host++;
    }
    return MHD_YES;
}

/*
 * Message framing (RFC 9112 section 6): what a proxy in front of dcmsd could
 * read differently from libmicrohttpd is refused, and the connection closed
 * after the answer, so no second request can hide in a body.
 */
static enum dcms_err check_framing(struct reqctx *c, struct MHD_Connection *conn,
                                   const char *version)
{
    struct head_scan h = {0};
    MHD_get_connection_values(conn, MHD_HEADER_KIND, head_scan_one, &h);
    struct dcms_errinfo *ei = &c->ei;
    if (c->bad_path)
        return dcms_err_set(ei, DCMS_ERR_BAD_REQUEST,
                            "request path holds an encoded separator, dot or control character");
    if (h.cl_bad)
        return dcms_err_set(ei, DCMS_ERR_BAD_REQUEST, "Content-Length is not a decimal number");
    if (h.cl_conflict)
        return dcms_err_set(ei, DCMS_ERR_BAD_REQUEST, "Content-Length headers disagree");
    if (h.content_length && h.transfer_encoding)
        return dcms_err_set(ei, DCMS_ERR_BAD_REQUEST,
                            "Content-Length and Transfer-Encoding may not come together");
    if (h.transfer_encoding > 1)
        return dcms_err_set(ei, DCMS_ERR_BAD_REQUEST, "more than one Transfer-Encoding header");
    if (h.transfer_encoding && strcasecmp(h.te, "chunked") != 0)
        return dcms_err_set(ei, DCMS_ERR_NOT_IMPLEMENTED,
                            "transfer coding %.40s is not supported; only chunked is", h.te);
    if (h.host > 1 || (h.host == 0 && version && strcmp(version, MHD_HTTP_VERSION_1_1) == 0))
        return dcms_err_set(ei, DCMS_ERR_BAD_REQUEST,
                            "an HTTP/1.1 request needs exactly one Host header");
    return DCMS_OK;
}

/*
 * A streaming route: its handler decides from the headers (size, media
 * type, offsets) and sets the callbacks; nothing of the body is buffered.
 */
static struct reqctx *begin_stream(struct reqctx *c, const struct dcms_route *rt)
{
    struct dcms_http_resp unused = {0};
    c->req.stream = &c->stream;
    dcms_log_set_request_id(c->request_id);
    enum dcms_err e = rt->handler(&c->req, &unused);
    dcms_log_set_request_id(NULL);
    if (unused.body_owned)
        dcms_free_wiped((void *)unused.body);
    if (e) {
        c->early = c->ei.code == e ? e : dcms_err_set(&c->ei, e, NULL);
        return c;
    }
    c->streaming = c->stream.on_data && c->stream.on_end && c->stream.on_abort;
    if (!c->streaming)
        c->early = dcms_err_set(&c->ei, DCMS_ERR_INTERNAL, NULL);
    return c;
}

static void stream_abort(struct reqctx *c)
{
    if (!c->streaming)
        return;
    c->streaming = false;
    dcms_log_set_request_id(c->request_id);
    c->stream.on_abort(c->stream.ctx);
    dcms_log_set_request_id(NULL);
}

/* First call: everything that can be decided from the request line and headers. */
static struct reqctx *begin(struct dcms_http_server *srv, struct reqctx *c,
                            struct MHD_Connection *conn, const char *url, const char *method,
                            const char *version)
{
    c->arena = dcms_arena_new(REQUEST_ARENA_MAX);
    if (!c->arena)
        return NULL;
    c->begun = true;
    c->srv = srv;
    c->start_us = dcms_clock_mono_us();
    c->route = ROUTE_UNMATCHED;
    dcms_errinfo_init(&c->ei, c->arena);
    dcms_metrics_in_flight(srv->app->metrics, 1);

    const char *rid = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
    if (rid && request_id_ok(rid))
        memcpy(c->request_id, rid, strlen(rid) + 1);
    else
        dcms_uuid_v7(c->request_id);
    client_address(conn, c->client_ip, sizeof(c->client_ip));

    struct dcms_http_req *req = &c->req;
    req->app = srv->app;
    req->arena = c->arena;
    req->ei = &c->ei;
    req->method = strcmp(method, "HEAD") == 0 ? "GET" : method;
    req->path = url;
    req->request_id = c->request_id;
    req->client_ip = c->client_ip;
    req->lookup = mhd_lookup;
    req->each_query = mhd_each_query;
    req->conn = conn;
    if (srv->client_ca) {
        const union MHD_ConnectionInfo *ti =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
        if (ti && dcms_tls_client_key(srv->tls, (gnutls_session_t)ti->tls_session, c->client_key))
            req->client_key_id = c->client_key;
    }

    if ((c->early = check_framing(c, conn, version))) {
        c->close = true;
        return c;
    }
    switch (dcms_router_match(method, url, req, &c->route, c->allow, sizeof(c->allow))) {
    case ROUTE_NO_PATH:
        c->early = dcms_err_set(&c->ei, DCMS_ERR_NOT_FOUND, "no route for %s %.200s", method, url);
        return c;
    case ROUTE_BAD_METHOD:
        c->early = dcms_err_set(&c->ei, DCMS_ERR_METHOD_NOT_ALLOWED,
                                "%s is not allowed here; allowed: %s", method, c->allow);
        return c;
    case ROUTE_FOUND:
        break;
    }
    const struct dcms_route *rt = &dcms_routes[c->route];
    if ((c->early = dcms_http_authorize(rt, req)))
        return c;
    /* A route whose handler does not read the query string refuses any argument. */
    if (!dcms_route_owns_query(rt) && !dcms_http_query_only(req, NULL)) {
        c->early = c->ei.code;
        return c;
    }
    if (rt->max_body == DCMS_ROUTE_BODY_STREAM)
        return begin_stream(c, rt);
    c->max_body =
        rt->max_body == DCMS_ROUTE_BODY_DEFAULT ? srv->app->cfg->max_body_bytes : rt->max_body;
    if (c->max_body == 0) {
        c->empty_only = true;
        c->max_body = EMPTY_BODY_MAX;
    }
    dcms_buf_init_secret(&c->body, c->max_body);

    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    const char *te = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Transfer-Encoding");
    unsigned long long declared = cl ? strtoull(cl, NULL, 10) : 0;
    bool has_body = declared > 0 || te != NULL;
    if (declared > c->max_body) {
        c->early = !c->empty_only ? dcms_err_set(&c->ei, DCMS_ERR_TOO_LARGE,
                                                 "request body of %llu bytes exceeds the limit "
                                                 "of %zu bytes",
                                                 declared, c->max_body)
                                  : dcms_err_set(&c->ei, DCMS_ERR_TOO_LARGE,
                                                 "this route takes no request body");
        return c;
    }
    /* A declared length up to BODY_RESERVE_MAX arrives into one block, never copied by growth;
     * past it the buffer grows with what arrives, so a declared length alone reserves little. */
    if (declared &&
        dcms_buf_reserve(&c->body, declared < BODY_RESERVE_MAX ? declared : BODY_RESERVE_MAX)) {
        c->early = dcms_err_set(&c->ei, DCMS_ERR_NOMEM, NULL);
        return c;
    }
    if (has_body) {
        const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
        if (!ct || !is_json_type(ct))
            c->early = dcms_err_set(&c->ei, DCMS_ERR_UNSUPPORTED_MEDIA_TYPE,
                                    "request body must be application/json");
    }
    return c;
}

/* Nothing, or `{}` with optional whitespace: what a route without a body accepts. */
static bool empty_object(struct dcms_str b)
{
    size_t i = 0;
    while (i < b.len && strchr(" \t\r\n", b.ptr[i]))
        i++;
    if (i == b.len)
        return true;
    if (b.ptr[i++] != '{')
        return false;
    while (i < b.len && strchr(" \t\r\n", b.ptr[i]))
        i++;
    if (i == b.len || b.ptr[i++] != '}')
        return false;
    while (i < b.len && strchr(" \t\r\n", b.ptr[i]))
        i++;
    return i == b.len;
}

static enum MHD_Result dispatch(struct reqctx *c, struct MHD_Connection *conn)
{
    const struct dcms_route *rt = &dcms_routes[c->route];
    c->req.body = (struct dcms_str){c->body.ptr ? c->body.ptr : "", c->body.len};
    if (c->empty_only) {
        if (!empty_object(c->req.body))
            return queue_error(c, conn,
                               dcms_err_set(&c->ei, DCMS_ERR_TOO_LARGE,
                                            "this route takes no request body (an empty JSON "
                                            "object is accepted)"));
        c->req.body = (struct dcms_str){"", 0};
    }
    struct dcms_http_resp resp = {.status = 200};
    dcms_log_set_request_id(c->request_id);
    /* A write waits while the audit sequencer is behind (dcms_audit_admit). */
    if (strcmp(rt->method, "GET") != 0 && strcmp(rt->method, "HEAD") != 0)
        (void)dcms_audit_admit(c->srv->app->audit);
    enum dcms_err e;
    if (c->streaming) {
        c->streaming = false;
        e = c->stream.on_end(c->stream.ctx, &c->req, &resp);
    } else {
        e = rt->handler(&c->req, &resp);
    }
    if (e) {
        if (c->ei.code != e)
            dcms_err_set(&c->ei, e, NULL);
        /* A full disk is logged once per episode by the store. */
        if (dcms_err_http(e) >= 500 && e != DCMS_ERR_INSUFFICIENT_STORAGE)
            DCMS_LOG(DCMS_LOG_ERROR, "http", "%s %s failed: %s", rt->method, rt->path,
                     dcms_err_slug(e));
        if (resp.body_owned)
            dcms_free_wiped((void *)resp.body);
        if (resp.pull.read)
            resp.pull.release(resp.pull.ctx);
        dcms_log_set_request_id(NULL);
        return queue_error_with(c, conn, e, &resp);
    }
    dcms_log_set_request_id(NULL);
    return queue(c, conn, &resp);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct dcms_http_server *srv = cls;
    struct reqctx *c = *con_cls;
    if (!c || !c->begun) {
        if (!c) {
            c = calloc(1, sizeof(*c));
            if (!c)
                return MHD_NO;
            *con_cls = c;
        }
        if (srv->guard) {
            const union MHD_ConnectionInfo *ci =
                MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
            dcms_conn_guard_head_done(srv->guard, ci ? ci->socket_context : NULL);
        }
        if (!begin(srv, c, conn, url, method, version))
            return MHD_NO;
        if (c->close)
            return queue_error(c, conn, c->early);
        bool body_coming = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length") ||
                           MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Transfer-Encoding");
        if (c->early && body_coming)
            return queue_error(c, conn, c->early);
        return MHD_YES;
    }
    if (c->queued) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size) {
        /* libmicrohttpd cannot answer in the middle of an upload, so a chunked body that
         * outgrows the limit is read and dropped (never stored) and answered at its end;
         * past the discard budget the connection is simply closed. */
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (c->early) {
            c->discarded += n;
            return c->discarded > DISCARD_BUDGET ? MHD_NO : MHD_YES;
        }
        if (c->streaming) {
            dcms_log_set_request_id(c->request_id);
            enum dcms_err se = c->stream.on_data(c->stream.ctx, upload_data, n, &c->ei);
            dcms_log_set_request_id(NULL);
            if (se) {
                c->early = c->ei.code == se ? se : dcms_err_set(&c->ei, se, NULL);
                stream_abort(c);
            }
            return MHD_YES;
        }
        enum dcms_err e = dcms_buf_append(&c->body, upload_data, n);
        if (e == DCMS_ERR_TOO_LARGE)
            c->early =
                c->empty_only
                    ? dcms_err_set(&c->ei, DCMS_ERR_TOO_LARGE, "this route takes no request body")
                    : dcms_err_set(&c->ei, DCMS_ERR_TOO_LARGE,
                                   "request body exceeds the limit of %zu bytes", c->max_body);
        else if (e)
            c->early = dcms_err_set(&c->ei, e, NULL);
        if (c->early)
            dcms_buf_release(&c->body);
        return MHD_YES;
    }
    if (c->early) {
        stream_abort(c);
        return queue_error(c, conn, c->early);
    }
    return dispatch(c, conn);
}

static bool changes_state(const char *method)
{
    return strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
           strcmp(method, "PATCH") == 0 || strcmp(method, "DELETE") == 0;
}

/*
 * Refused requests are audited: every 401 and 403, and every rejected
 * attempt to change state on a protected route. The audit module rate-limits
 * per client address so a flood cannot flood the log.
 */
static void audit_refusal(struct reqctx *c, unsigned status)
{
    const struct dcms_route *rt = c->route == ROUTE_UNMATCHED ? NULL : &dcms_routes[c->route];
    bool denied = status == 401 || status == 403;
    bool rejected = rt && status >= 400 && status < 500 && status != 404 && status != 405 &&
                    strcmp(rt->permission, "PUBLIC") != 0 && changes_state(rt->method);
    if (!denied && !rejected)
        return;
    json_t *details = json_pack("{s:s, s:s, s:i, s:s, s:s}", "method", c->req.method, "route",
                                rt ? rt->path : "", "status", (int)status, "code",
                                dcms_err_slug(c->ei.code), "permission", rt ? rt->permission : "");
    if (details && status == 403 && c->ei.code == DCMS_ERR_FORBIDDEN && c->ei.message[0])
        json_object_set_new(details, "reason", json_string(c->ei.message));
    struct dcms_audit_event ev = {
        .actor = c->req.principal ? c->req.principal->id : "anonymous",
        .action = denied ? "request.denied" : "request.rejected",
        .resource_type = "route",
        .resource_id = rt ? rt->path : NULL,
        .outcome = denied ? DCMS_AUDIT_DENIED : DCMS_AUDIT_ERROR,
        .details = details,
        .client_ip = c->client_ip[0] ? c->client_ip : NULL,
        .request_id = c->request_id,
    };
    if (details)
        dcms_audit_refusal(c->srv->app->audit, &ev);
    json_decref(details);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct dcms_http_server *srv = cls;
    struct reqctx *c = *con_cls;
    if (!c)
        return;
    *con_cls = NULL;
    stream_abort(c); /* the client went away in the middle of a streamed body */
    if (srv->guard) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        dcms_conn_guard_head_wait(srv->guard, ci ? ci->socket_context : NULL);
    }
    if (!c->begun) {
        free(c);
        return;
    }
    int64_t dur = dcms_clock_mono_us() - c->start_us;
    unsigned status = c->queued ? c->status : 499; /* client went away before an answer */
    dcms_metrics_observe(srv->app->metrics, c->route, status, dur);
    if (c->queued && c->status >= 400 && srv->app->audit)
        audit_refusal(c, c->status);
    dcms_metrics_in_flight(srv->app->metrics, -1);
    if (srv->app->cfg->access_log && dcms_log_min_level <= DCMS_LOG_INFO) {
        struct dcms_buf f;
        dcms_buf_init(&f, 2048);
        size_t plen = strlen(c->req.path ? c->req.path : "");
        enum dcms_err e = dcms_buf_appendf(&f, "\"method\":\"%s\",\"path\":\"",
                                           c->req.method ? c->req.method : "");
        if (!e)
            e = dcms_buf_append_json_escaped(&f, c->req.path ? c->req.path : "",
                                             plen > 512 ? 512 : plen);
        if (!e)
            e = dcms_buf_appendf(&f,
                                 "\",\"route\":\"%s\",\"status\":%u,\"bytes\":%zu,"
                                 "\"duration_ms\":%.3f,\"remote\":\"%s\"%s",
                                 c->route == ROUTE_UNMATCHED ? "" : dcms_routes[c->route].path,
                                 status, c->resp_bytes, (double)dur / 1000.0, c->client_ip,
                                 toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? ""
                                                                            : ",\"aborted\":true");
        if (!e) {
            dcms_log_set_request_id(c->request_id);
            DCMS_LOG_FIELDS(DCMS_LOG_INFO, "access", f.ptr, "request");
            dcms_log_set_request_id(NULL);
        }
        dcms_buf_release(&f);
    }
    dcms_buf_release(&c->body);
    dcms_arena_free(c->arena);
    free(c);
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_ctx,
                          enum MHD_ConnectionNotificationCode code)
{
    struct dcms_http_server *srv = cls;
    dcms_metrics_connections(srv->app->metrics, code == MHD_CONNECTION_NOTIFY_STARTED ? 1 : -1);
    if (!srv->guard)
        return;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        *socket_ctx = ci ? dcms_conn_guard_add(srv->guard, ci->connect_fd) : NULL;
    } else {
        /* Called before libmicrohttpd closes the socket (see conn_guard.c). */
        dcms_conn_guard_remove(srv->guard, *socket_ctx);
        *socket_ctx = NULL;
    }
}

__attribute__((format(printf, 2, 0))) static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    DCMS_LOG(DCMS_LOG_WARN, "mhd", "%s", msg);
}

enum dcms_err dcms_http_server_start(struct dcms_app *app, unsigned threads,
                                     struct dcms_http_server **out, struct dcms_errinfo *ei)
{
    const struct dcms_config *cfg = app->cfg;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(cfg->listen_port)};
    if (inet_pton(AF_INET, cfg->listen_host, &addr.sin_addr) != 1)
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "DCMS_LISTEN host %s is not an IPv4 address",
                            cfg->listen_host);
    bool loopback = (ntohl(addr.sin_addr.s_addr) >> 24) == 127;
    if (!cfg->tls_cert_file[0] && !loopback && !cfg->allow_plaintext)
        return dcms_err_set(ei, DCMS_ERR_CONFIG,
                            "plain HTTP on the non-loopback address %s: set DCMS_TLS_CERT_FILE "
                            "and DCMS_TLS_KEY_FILE, or DCMS_ALLOW_PLAINTEXT=true when a "
                            "TLS-terminating proxy is in front",
                            cfg->listen_host);
    struct dcms_http_server *s = calloc(1, sizeof(*s));
    if (!s)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    s->app = app;
    /* suspend/resume: pulled responses (event streams) park without holding a thread */
    unsigned flags =
        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME;
    struct MHD_OptionItem tls_opts[4] = {{MHD_OPTION_END, 0, NULL}};
    if (cfg->tls_cert_file[0]) {
        if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES ||
            MHD_is_feature_supported(MHD_FEATURE_HTTPS_CERT_CALLBACK) != MHD_YES) {
            free(s);
            return dcms_err_set(ei, DCMS_ERR_CONFIG,
                                "this libmicrohttpd was built without HTTPS (GnuTLS) support");
        }
        const char *prio = dcms_tls_priorities(cfg->tls_min_version);
        enum dcms_err e = prio ? dcms_tls_new(cfg->tls_cert_file, cfg->tls_key_file,
                                              cfg->tls_client_map_file, &s->tls, ei)
                               : dcms_err_set(ei, DCMS_ERR_CONFIG, "bad DCMS_TLS_MIN_VERSION");
        if (!e && cfg->tls_client_ca_file[0] &&
            !(s->client_ca = dcms_tls_read_text(cfg->tls_client_ca_file)))
            e = dcms_err_set(ei, DCMS_ERR_CONFIG, "cannot read DCMS_TLS_CLIENT_CA_FILE %s",
                             cfg->tls_client_ca_file);
        if (e) {
            dcms_tls_free(s->tls);
            free(s);
            return e;
        }
        flags |= MHD_USE_TLS;
        tls_opts[0] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_CERT_CALLBACK, 0,
                                              (void *)(uintptr_t)dcms_tls_retrieve};
        tls_opts[1] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)prio};
        /* Client certificates are asked for (not required) and checked against these CAs. */
        if (s->client_ca)
            tls_opts[2] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_TRUST, 0, s->client_ca};
    }
    if (cfg->header_timeout_s) {
        enum dcms_err e = dcms_conn_guard_new(cfg->header_timeout_s * 1000u, &s->guard);
        if (e) {
            dcms_tls_free(s->tls);
            free(s->client_ca);
            free(s);
            return dcms_err_set(ei, e, "cannot start the request-head deadline");
        }
    }
    s->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)threads, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&addr, MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->max_connections,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->connection_timeout_s,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)cfg->max_connections_per_ip,
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, s, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, s, MHD_OPTION_LISTENING_ADDRESS_REUSE,
        (unsigned)1, MHD_OPTION_ARRAY, tls_opts, MHD_OPTION_END);
    if (!s->daemon) {
        dcms_conn_guard_free(s->guard);
        dcms_tls_free(s->tls);
        free(s->client_ca);
        free(s);
        return dcms_err_set(ei, DCMS_ERR_UNAVAILABLE, "cannot listen on %s", cfg->listen);
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : cfg->listen_port;
    *out = s;
    return DCMS_OK;
}

uint16_t dcms_http_server_port(const struct dcms_http_server *s)
{
    return s->port;
}

bool dcms_http_server_tls(const struct dcms_http_server *s)
{
    return s->tls != NULL;
}

enum dcms_err dcms_http_server_reload_tls(struct dcms_http_server *s, struct dcms_errinfo *ei)
{
    if (!s->tls)
        return DCMS_OK;
    enum dcms_err e = dcms_tls_reload(s->tls, ei);
    if (!e)
        DCMS_LOG(DCMS_LOG_INFO, "tls", "certificate reloaded: %s", dcms_tls_subject(s->tls));
    return e;
}

int64_t dcms_http_server_drain(struct dcms_http_server *s, unsigned timeout_ms)
{
    atomic_store(&s->draining, true);
    wake_all(s); /* open streams end now, not at the deadline */
    MHD_socket fd = MHD_quiesce_daemon(s->daemon);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    struct dcms_metrics *m = s->app->metrics;
    int64_t now0 = dcms_clock_mono_us(), deadline = now0 + (int64_t)timeout_ms * 1000;
    /* Long operations are cancelled a little before the deadline, so they can still answer. */
    int64_t margin =
        (int64_t)timeout_ms * 1000 / 4 < 250000 ? (int64_t)timeout_ms * 1000 / 4 : 250000;
    int64_t cancel_at = deadline - margin;
    int64_t idle_since = 0;
    /* Done when every connection is closed, or when nothing has been in flight for 300 ms
     * (idle keep-alive clients are then cut off; they did not have a request running). */
    while (dcms_clock_mono_us() < deadline) {
        if (!dcms_cancel_requested() && dcms_clock_mono_us() >= cancel_at &&
            dcms_metrics_requests_in_flight(m) > 0) {
            DCMS_LOG(DCMS_LOG_WARN, "http",
                     "shutdown deadline near: cancelling %lld running requests",
                     (long long)dcms_metrics_requests_in_flight(m));
            dcms_cancel_all();
        }
        if (dcms_metrics_connections_open(m) <= 0)
            return 0;
        if (dcms_metrics_requests_in_flight(m) > 0) {
            idle_since = 0;
        } else {
            int64_t now = dcms_clock_mono_us();
            if (!idle_since)
                idle_since = now;
            else if (now - idle_since >= 300000)
                return 0;
        }
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    }
    return dcms_metrics_requests_in_flight(m);
}

void dcms_http_server_stop(struct dcms_http_server *s)
{
    if (!s)
        return;
    /* libmicrohttpd must not stop with a suspended connection: unpark and end them all */
    atomic_store(&s->draining, true);
    wake_all(s);
    MHD_stop_daemon(s->daemon);
    pthread_mutex_destroy(&s->pull_mu);
    dcms_conn_guard_free(s->guard);
    dcms_tls_free(s->tls);
    free(s->client_ca);
    free(s);
}
