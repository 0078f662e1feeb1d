/* Dataset routes (see routes.def): metadata, tus upload, verify, delete. */
#ifndef DCMS_DATASETS_HTTP_H
#define DCMS_DATASETS_HTTP_H

#include "dcms/http.h"

enum dcms_err dcms_datasets_http_create(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_datasets_http_list(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_datasets_http_get(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_datasets_http_delete(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_datasets_http_verify(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_datasets_http_options(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_datasets_http_status(struct dcms_http_req *req, struct dcms_http_resp *resp);
/* Streaming routes (max body STREAM): called before the body, see struct dcms_http_stream. */
enum dcms_err dcms_datasets_http_patch(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_datasets_http_put(struct dcms_http_req *req, struct dcms_http_resp *resp);

#endif
