/* Enclave routes (see routes.def): create, list, read, update, actions, metrics, compatibility. */
#ifndef DCMS_ENCLAVES_HTTP_H
#define DCMS_ENCLAVES_HTTP_H

#include "dcms/err.h"

struct dcms_http_req;
struct dcms_http_resp;

enum dcms_err dcms_enclaves_http_create(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_enclaves_http_list(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_enclaves_http_get(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_enclaves_http_patch(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_enclaves_http_suspend(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_enclaves_http_resume(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_enclaves_http_terminate(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_enclaves_http_attest(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_enclaves_http_metrics(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_enclaves_http_compatibility(struct dcms_http_req *req,
                                               struct dcms_http_resp *resp);

#endif
