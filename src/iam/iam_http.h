/* IAM routes (see routes.def): identities, sessions, keys and policies. */
#ifndef DCMS_IAM_HTTP_H
#define DCMS_IAM_HTTP_H

#include "dcms/http.h"
#include "iam/iam_cred_http.h" /* credentials: signing keys, passkeys */

enum dcms_err dcms_iam_http_create(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_iam_http_list(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_iam_http_get(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_iam_http_patch(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_iam_http_verify(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_iam_http_suspend(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_iam_http_reactivate(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_iam_http_login(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_iam_http_refresh(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_iam_http_logout(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_iam_http_verify_email(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_iam_http_jwks(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_iam_http_rotate(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_iam_http_policy_create(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_iam_http_policy_list(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_iam_http_policy_get(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_iam_http_policy_delete(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_iam_http_me(struct dcms_http_req *req, struct dcms_http_resp *resp);
/* Organization membership (iam_org_http.c). */
enum dcms_err dcms_iam_http_member_list(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_iam_http_member_put(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_iam_http_member_remove(struct dcms_http_req *req, struct dcms_http_resp *resp);

#endif
