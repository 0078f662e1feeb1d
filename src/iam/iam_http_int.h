/*
 * Shared by the IAM handler files (*_http.c) only: the call context of a
 * request. Services never include this header or dcms/http.h.
 */
#ifndef DCMS_IAM_HTTP_INT_H
#define DCMS_IAM_HTTP_INT_H

#include "dcms/http.h"
#include "iam/iam_core.h"

/* The call context of a request (defined in iam_http.c). */
struct iam_call iam_call_of(const struct dcms_http_req *req);

#endif
