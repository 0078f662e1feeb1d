/*
 * System routes: liveness, readiness, metrics, the API description, store
 * information and the canonical-JSON tool. Handlers only; see routes.def.
 */
#ifndef DCMS_SYS_H
#define DCMS_SYS_H

#include "dcms/http.h"

enum dcms_err dcms_sys_healthz(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_sys_readyz(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_sys_metrics(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_sys_openapi(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_sys_info(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_sys_canonicalize(struct dcms_http_req *req, struct dcms_http_resp *resp);

#endif
