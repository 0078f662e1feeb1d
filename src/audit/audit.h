/* Audit routes and the offline verifier tool (see routes.def and main.c). */
#ifndef DCMS_AUDIT_HTTP_H
#define DCMS_AUDIT_HTTP_H

#include "dcms/http.h"

enum dcms_err dcms_audit_http_events(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_audit_http_verify(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_audit_http_export(struct dcms_http_req *req, struct dcms_http_resp *resp);
enum dcms_err dcms_audit_http_public_key(struct dcms_http_req *req, struct dcms_http_resp *resp);

/* `dcmsd audit verify FILE --public-key K`: checks an export offline. */
int dcms_audit_cli(int argc, char **argv);

#endif
