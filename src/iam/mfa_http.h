/* Second-factor and API-key routes (see routes.def). */
#ifndef DCMS_IAM_MFA_HTTP_H
#define DCMS_IAM_MFA_HTTP_H

#include "dcms/http.h"

enum dcms_err dcms_mfa_http_status(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_mfa_http_totp_enroll(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_mfa_http_totp_confirm(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_mfa_http_totp_disable(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_mfa_http_recovery_codes(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_apikey_http_create(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_apikey_http_list(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_apikey_http_revoke(struct dcms_http_req *req, struct dcms_http_resp *resp);

#endif
