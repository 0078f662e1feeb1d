/*
 * The attestation service's entry points outside the library API: the HTTP
 * handler for POST /api/v1/attestation/verify and the `dcmsd attestation`
 * offline tool.
 */
#ifndef DCMS_ATTESTATION_H
#define DCMS_ATTESTATION_H

#include "dcms/http.h"

enum dcms_err dcms_attest_http_verify(struct dcms_http_req *req, struct dcms_http_resp *resp);

/* `dcmsd attestation verify FILE [options]`; returns the exit status. */
int dcms_attest_cli(int argc, char **argv);

/* `dcmsd image sign|measure ...` (signed workload images); returns the exit status. */
int dcms_attest_image_cli(int argc, char **argv);

#endif
