/*
 * The decode layer of passkeys (webauthn_json.c): request JSON into C
 * structs, every problem at once with its JSON path. Used by the passkey
 * service (iam_webauthn.c) and its handlers (webauthn_http.c).
 */
#ifndef DCMS_IAM_WEBAUTHN_JSON_H
#define DCMS_IAM_WEBAUTHN_JSON_H

#include <jansson.h>

#include "iam/iam_core.h"

struct bin {
    unsigned char *p;
    size_t n;
};

struct iam_wa_cred_in {
    const char *id; /* base64url credential id, canonical (re-encoded) */
    struct bin cdj; /* response.clientDataJSON */
    struct bin att; /* response.attestationObject (registration) */
    struct bin ad;  /* response.authenticatorData (assertion) */
    struct bin sig; /* response.signature (assertion) */
    struct bin uh;  /* response.userHandle (assertion, optional) */
    json_t *transports;
    char challenge[200];
};

/* Frees what iam_wa_cred_from_json allocated (also after a failure) and zeroes *in. */
void iam_wa_cred_in_free(struct iam_wa_cred_in *in);
/*
 * Decodes {id, rawId, type, response: {...}, ...}; `registration` picks the
 * response shape. DCMS_ERR_VALIDATION with every problem; release *in with
 * iam_wa_cred_in_free either way.
 */
enum dcms_err iam_wa_cred_from_json(const json_t *c, bool registration, struct iam_wa_cred_in *in,
                                    struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* The options body {user_verification?, ...}: `keys` are the allowed members; *uv defaults to
 * "preferred". A NULL body (none sent) is allowed. */
enum dcms_err iam_wa_options_from_json(const json_t *body, const char *const *keys, const char **uv,
                                       struct dcms_errinfo *ei) DCMS_MUST_CHECK;

#endif
