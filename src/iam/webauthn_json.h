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
/*
 * The registration body: a PublicKeyCredential plus an optional `name`
 * label. *cred is a copy without `name` (the caller decrefs it), NULL when
 * the body is not an object (a problem recorded) or memory ran out. A bad
 * name is recorded in `ei` without stopping: the service adds its own
 * problems, so all come back at once.
 */
enum dcms_err iam_wa_register_from_json(const json_t *b, json_t **cred, const char **name,
                                        struct dcms_errinfo *ei);
/* The optional mfa_ticket of the assertion options (NULL when absent). */
enum dcms_err iam_wa_ticket_from_json(const json_t *b, const char **ticket,
                                      struct dcms_errinfo *ei) DCMS_MUST_CHECK;

#endif
