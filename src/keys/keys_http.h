/* Admin routes of the keys module (see routes.def): status, rotate, rewrap, retire. */
#ifndef DCMS_KEYS_HTTP_H
#define DCMS_KEYS_HTTP_H

#include "dcms/http.h"

enum dcms_err dcms_keys_http_status(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_keys_http_rotate(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_keys_http_rewrap(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_keys_http_retire(struct dcms_http_req *req, struct dcms_http_resp *resp);

#endif
