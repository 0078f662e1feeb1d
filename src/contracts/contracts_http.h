/* Contract routes (see routes.def): the contract model, lifecycle and signatures. */
#ifndef DCMS_CONTRACTS_HTTP_H
#define DCMS_CONTRACTS_HTTP_H

#include "dcms/http.h"

enum dcms_err dcms_contracts_http_create(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_contracts_http_list(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_contracts_http_get(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_contracts_http_put(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_contracts_http_delete(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_contracts_http_submit(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_contracts_http_sign(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_contracts_http_activate(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_contracts_http_suspend(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_contracts_http_resume(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_contracts_http_terminate(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_contracts_http_versions(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_contracts_http_verify(struct dcms_http_req *req, struct dcms_http_resp *resp);

#endif
