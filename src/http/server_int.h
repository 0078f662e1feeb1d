/* Inside the HTTP layer: what request.c and server.c share. */
#ifndef DCMS_SERVER_INT_H
#define DCMS_SERVER_INT_H

#include "dcms/http.h"
#include "http/http_int.h"

#define DCMS_HTTP_JSON "application/json; charset=utf-8"

/*
 * Fills `resp` with the error body of DESIGN.md for `e`: the record's
 * message and details when they belong to `e` and are safe to show, the
 * default message otherwise (always for 5xx internals).
 */
void dcms_http_render_error(struct dcms_http_resp *resp, enum dcms_err e,
                            const struct dcms_errinfo *ei, const char *request_id);

/*
 * Decides whether `req` may run `route` (see authz.c). DCMS_OK, or an error
 * recorded in req->ei (401 or 403).
 */
enum dcms_err dcms_http_authorize(const struct dcms_route *route,
                                  struct dcms_http_req *req) DCMS_MUST_CHECK;

#endif
