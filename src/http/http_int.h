/*
 * Inside the HTTP layer: the compiled route table and the matcher, shared
 * by the server (server.c), the metrics (metrics.c) and their tests.
 */
#ifndef DCMS_HTTP_INT_H
#define DCMS_HTTP_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dcms/http.h"

#define DCMS_ROUTE_BODY_DEFAULT SIZE_MAX
#define DCMS_ROUTE_BODY_STREAM (SIZE_MAX - 1) /* streamed to the handler, never buffered */
#define DCMS_ROUTE_MAX_SEGMENTS 12

struct dcms_route {
    const char *method;
    const char *path;
    dcms_http_handler_fn handler;
    const char *permission;
    size_t max_body; /* 0: no body; DCMS_ROUTE_BODY_DEFAULT: the configured limit;
                        DCMS_ROUTE_BODY_STREAM: struct dcms_http_stream */
};

extern const struct dcms_route dcms_routes[];
extern const size_t dcms_routes_count;

/*
 * Whether the route's handler reads (and checks, with dcms_http_query_only)
 * its own query string. For every other route the server refuses any query
 * argument before the handler runs.
 */
bool dcms_route_owns_query(const struct dcms_route *r);

enum route_match { ROUTE_FOUND, ROUTE_NO_PATH, ROUTE_BAD_METHOD };

/*
 * Matches method and path against the table. On ROUTE_FOUND, *index is the
 * route and the path parameters are written to req->params (values
 * allocated in req->arena). On ROUTE_BAD_METHOD, `allow` receives the
 * methods the path does accept ("GET, HEAD"). HEAD matches GET routes.
 */
enum route_match dcms_router_match(const char *method, const char *path, struct dcms_http_req *req,
                                   size_t *index, char *allow, size_t allow_len);

#endif
