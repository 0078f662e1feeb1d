/*
 * Fuzz target for the attestation document parser and verifier
 * (src/attestation): any input is decoded and, when it decodes, verified
 * against the AWS Nitro root with a policy at the document's own time.
 * Nothing may crash, leak or read out of bounds; the report must be
 * consistent (valid exactly when no failure), a decoded document only
 * comes with a report whose signature check passed, and the JSON encoding
 * of the report must succeed.
 */
#include <stdint.h>
#include <stdlib.h>

#include "attestation/attest_int.h"
#include "dcms/attest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct dcms_attest_verifier *verifier;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!verifier && dcms_attest_verifier_new(dcms_aws_nitro_root_g1, dcms_aws_nitro_root_g1_len,
                                              &verifier, NULL) != DCMS_OK)
        abort();

    /* The parser alone. */
    struct dcms_attest_doc *d = NULL;
    enum dcms_attest_failure f;
    char reason[DCMS_ATTEST_REASON_MAX];
    enum dcms_err e = dcms_attest_parse(data, size, &d, &f, reason, sizeof(reason));
    if (e == DCMS_OK) {
        if (!d || f != DCMS_ATTEST_OK || d->signature.len != 96 || d->ncabundle < 1 ||
            d->ncabundle > DCMS_ATTEST_MAX_CABUNDLE)
            abort();
    } else if (e != DCMS_ERR_NOMEM &&
               (d || (f != DCMS_ATTEST_FAIL_DECODE && f != DCMS_ATTEST_FAIL_SYNTAX))) {
        abort();
    }

    /* The whole verification, at the document's time when there is one. */
    struct dcms_attest_policy pol;
    dcms_attest_policy_init(&pol);
    pol.now_ms = d ? (int64_t)(d->timestamp_ms % (1ull << 62)) : 1665582606081;
    if (pol.now_ms == 0)
        pol.now_ms = 1;
    pol.allow_debug = true;
    dcms_attest_doc_free(d);
    struct dcms_attest_report rep;
    e = dcms_attest_verify(verifier, data, size, &pol, &rep);
    if (e == DCMS_OK) {
        if (rep.valid != (rep.failure == DCMS_ATTEST_OK) || rep.nchecks == 0)
            abort();
        if (rep.doc) {
            bool signed_ok = false;
            for (size_t i = 0; i < rep.nchecks; i++)
                if (strcmp(rep.checks[i].name, "signature") == 0)
                    signed_ok = rep.checks[i].ok;
            if (!signed_ok)
                abort();
        }
        json_t *j = dcms_attest_report_to_json(&rep);
        if (!j)
            abort();
        json_decref(j);
    }
    dcms_attest_report_release(&rep);
    return 0;
}
