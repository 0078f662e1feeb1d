/*
 * GET /api/v1/nodes: the nodes of this store and the leader. Thin: the
 * service builds the document (nodes.c), the route's permission was
 * checked by the HTTP layer.
 */
#include "dcms/app.h"
#include "dcms/nodes.h"
#include "http/handlers.h"

enum dcms_err dcms_nodes_http_list(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    if (!req->app->nodes)
        return dcms_err_set(req->ei, DCMS_ERR_UNAVAILABLE, "the node service is not running");
    json_t *out = NULL;
    enum dcms_err e = dcms_nodes_list(req->app->nodes, &out, req->ei);
    return e ? e : dcms_http_reply(req, resp, 200, out);
}
