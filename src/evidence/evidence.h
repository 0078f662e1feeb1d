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

/*
 * The routes (GET /api/v1/enclaves/{id}/attestation, /contracts/{id}/audit,
 * /contracts/{id}/evidence) are declared by http/handlers.h from routes.def.
 */

/* `dcmsd evidence verify FILE`: exit 0 when every check passes, 1 when one fails, 2 on usage. */
int dcms_evidence_cli(int argc, char **argv);

#endif
