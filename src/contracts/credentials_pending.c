/*
 * Placeholders for the credential checks whose IAM implementation has not
 * been merged into this branch yet (see dcms/credentials.h). Each refuses
 * with DCMS_ERR_UNAVAILABLE, so a signature that needs one is never
 * accepted. Removed when IAM part 2 lands.
 */
#include "dcms/credentials.h"

enum dcms_err dcms_iam_webauthn_verify_assertion(struct dcms_iam *iam, const char *identity_id,
                                                 const unsigned char *challenge,
                                                 size_t challenge_len, const json_t *assertion,
                                                 bool require_uv, struct dcms_webauthn_result *out,
                                                 struct dcms_errinfo *ei)
{
    (void)iam, (void)identity_id, (void)challenge, (void)challenge_len, (void)assertion,
        (void)require_uv, (void)out;
    return dcms_err_set(ei, DCMS_ERR_UNAVAILABLE, "passkey checks are not available yet");
}
