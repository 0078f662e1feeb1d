/*
 * The one authorization decision point: every routed request passes here
 * before its handler runs. Until identity and access management exists,
 * routes that need a permission are refused with 401 unless the operator
 * opted into DCMS_INSECURE_OPEN_ACCESS (tests only).
 */
#include "dcms/app.h"
#include "dcms/config.h"
#include "dcms/log.h"
#include "http/server_int.h"

enum dcms_err dcms_http_authorize(const struct dcms_route *route, struct dcms_http_req *req)
{
    if (strcmp(route->permission, "PUBLIC") == 0)
        return DCMS_OK;
    if (req->app->cfg->insecure_open_access)
        return DCMS_OK;
    return dcms_err_set(req->ei, DCMS_ERR_UNAUTHENTICATED, "authentication required for %s %s",
                        route->method, route->path);
}
