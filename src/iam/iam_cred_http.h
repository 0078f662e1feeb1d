/* Credential routes (see routes.def): signing keys and passkeys. */
#ifndef DCMS_IAM_CRED_HTTP_H
#define DCMS_IAM_CRED_HTTP_H

#include "dcms/http.h"

enum dcms_err dcms_iam_http_signkey_challenge(struct dcms_http_req *req,
                                              struct dcms_http_resp *resp);
enum dcms_err dcms_iam_http_signkey_create(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_iam_http_signkey_list(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_iam_http_signkey_rotate(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_iam_http_signkey_revoke(struct dcms_http_req *req, struct dcms_http_resp *resp);

enum dcms_err dcms_iam_http_wa_register_options(struct dcms_http_req *req,
                                                struct dcms_http_resp *resp);
enum dcms_err dcms_iam_http_wa_register_verify(struct dcms_http_req *req,
                                               struct dcms_http_resp *resp);
enum dcms_err dcms_iam_http_wa_assert_options(struct dcms_http_req *req,
                                              struct dcms_http_resp *resp);
enum dcms_err dcms_iam_http_wa_assert_verify(struct dcms_http_req *req,
                                             struct dcms_http_resp *resp);
enum dcms_err dcms_iam_http_wa_list(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_iam_http_wa_delete(struct dcms_http_req *req, struct dcms_http_resp *resp);

#endif
