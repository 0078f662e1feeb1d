/*
 * The prototype of every route handler, generated from routes.def: one row
 * there declares its handler here, so a service needs no header of its own
 * for its routes. Included by router.c (to build the table) and by every
 * `*_http.c` file (so each definition is checked against its prototype).
 * Every handler has the dcms_http_handler_fn signature (dcms/http.h);
 * streaming routes (max body STREAM) use the same one, see struct
 * dcms_http_stream. Only the HTTP layer and `*_http.c` files include this.
 */
#ifndef DCMS_HTTP_HANDLERS_H
#define DCMS_HTTP_HANDLERS_H

#include "dcms/http.h"

#define DCMS_ROUTE(method, path, handler, perm, max_body)                                          \
    enum dcms_err handler(struct dcms_http_req *req, struct dcms_http_resp *resp);
#include "http/routes.def"
#undef DCMS_ROUTE

#endif
