/*
 * Evidence for a contract's parties: the routes that give them what they
 * can check themselves (an enclave's last attestation document, the audit
 * slice of their contract with its proof, the whole evidence bundle) and
 * `dcmsd evidence verify`, which checks a bundle offline. The module reads
 * only through the other modules' public headers (dcms/contracts.h,
 * dcms/enclaves.h, dcms/audit.h, dcms/attest.h); it owns no table.
 */
#ifndef DCMS_EVIDENCE_H
#define DCMS_EVIDENCE_H

#include "dcms/http.h"

/* GET /api/v1/enclaves/{id}/attestation */
enum dcms_err dcms_evidence_http_enclave_attestation(struct dcms_http_req *req,
                                                     struct dcms_http_resp *resp);
/* GET /api/v1/contracts/{id}/audit?limit=&cursor= */
enum dcms_err dcms_evidence_http_contract_audit(struct dcms_http_req *req,
                                                struct dcms_http_resp *resp);
/* GET /api/v1/contracts/{id}/evidence */
enum dcms_err dcms_evidence_http_contract_bundle(struct dcms_http_req *req,
                                                 struct dcms_http_resp *resp);

/* `dcmsd evidence verify FILE`: exit 0 when every check passes, 1 when one fails, 2 on usage. */
int dcms_evidence_cli(int argc, char **argv);

#endif
