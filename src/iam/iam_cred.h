/*
 * Inside IAM, the credentials contract signatures rest on: single-use
 * challenges (iam_challenge.c), Ed25519 signing keys registered with a proof
 * of possession (iam_signkey.c) and passkeys (iam_webauthn.c, over the pure
 * verification in webauthn.c). The public entry points are in
 * include/dcms/credentials.h; the handlers in src/http/handlers.h.
 */
#ifndef DCMS_IAM_CRED_H
#define DCMS_IAM_CRED_H

#include <jansson.h>

#include "dcms/clock.h"
#include "dcms/credentials.h"
#include "dcms/uuid.h"
#include "iam/iam_core.h"

/* ---- challenges (iam_challenge.c) ---- */

#define IAM_CHALLENGE_BYTES 32
#define IAM_CHALLENGE_TTL_S 300
#define IAM_CHALLENGE_B64_LEN 44 /* 43 base64url characters and the NUL */

/* What a challenge is for; a challenge issued for one purpose is refused for another. */
#define IAM_PURPOSE_SIGNING_KEY "signing_key"
#define IAM_PURPOSE_WA_REGISTER "webauthn.register"
#define IAM_PURPOSE_WA_ASSERT "webauthn.assert"

struct iam_challenge {
    char id[DCMS_UUID_STRLEN];
    char b64[IAM_CHALLENGE_B64_LEN]; /* base64url of the 32 random bytes */
    unsigned char raw[IAM_CHALLENGE_BYTES];
    char expires_at[DCMS_TIME_STRLEN];
};

/*
 * Issues a fresh challenge for `identity_id` and `purpose` inside `tx` (a
 * write transaction; expired challenges of the identity are dropped on the
 * way).
 */
enum dcms_err iam_challenge_issue(struct dcms_store_tx *tx, const char *identity_id,
                                  const char *purpose, struct iam_challenge *out,
                                  struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * Consumes a challenge in a transaction of its own, found by id (`id`) or
 * by its base64url text (`b64`; exactly one of the two is non-NULL). It
 * must belong to `identity_id`, have been issued for `purpose`, be unused
 * and unexpired; it is used up whatever the caller's verification then
 * finds. DCMS_ERR_VALIDATION naming `field` otherwise.
 */
enum dcms_err iam_challenge_consume(struct dcms_iam *iam, const char *identity_id,
                                    const char *purpose, const char *id, const char *b64,
                                    const char *field, struct iam_challenge *out,
                                    struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* ---- signing keys (iam_signkey.c) ---- */

/* The domain-separation prefix of the proof-of-possession message. */
#define IAM_SIGNKEY_POP_PREFIX "dcms-signing-key-pop:"

struct iam_signkey_in {
    const char *public_key;   /* base64url, raw 32-byte Ed25519 */
    const char *challenge_id; /* from the challenge route */
    const char *signature;    /* base64url, Ed25519 over the PoP message */
    const char *name;         /* optional label */
    unsigned invalid;         /* bit i: member i (in the order above) was given but not a string */
};

/* The PoP message: prefix || challenge (32 bytes) || public key (32 bytes). */
void iam_signkey_pop_message(const unsigned char challenge[IAM_CHALLENGE_BYTES],
                             const unsigned char pk[32], unsigned char *out, size_t *len);
#define IAM_SIGNKEY_POP_LEN (sizeof(IAM_SIGNKEY_POP_PREFIX) - 1 + IAM_CHALLENGE_BYTES + 32)

enum dcms_err iam_signkey_challenge(const struct iam_call *c, const char *identity_id,
                                    json_t **out) DCMS_MUST_CHECK;
/* Registers a key; with `replace_key_id`, also revokes that key (rotation) atomically. */
enum dcms_err iam_signkey_register(const struct iam_call *c, const char *identity_id,
                                   const char *replace_key_id, const struct iam_signkey_in *in,
                                   json_t **out) DCMS_MUST_CHECK;
enum dcms_err iam_signkey_list(const struct iam_call *c, const char *identity_id,
                               json_t **out) DCMS_MUST_CHECK;
enum dcms_err iam_signkey_revoke(const struct iam_call *c, const char *identity_id,
                                 const char *key_id, json_t **out) DCMS_MUST_CHECK;

/* ---- passkeys (iam_webauthn.c) ---- */

/* PublicKeyCredentialCreationOptions for the caller (uv: required / preferred / discouraged). */
enum dcms_err iam_wa_register_options(const struct iam_call *c, const char *uv,
                                      json_t **out) DCMS_MUST_CHECK;
/* Verifies navigator.credentials.create()'s result and stores the passkey. */
enum dcms_err iam_wa_register_verify(const struct iam_call *c, const json_t *credential,
                                     const char *name, json_t **out) DCMS_MUST_CHECK;
/* PublicKeyCredentialRequestOptions for `identity_id`'s passkeys (409 when it has none). */
enum dcms_err iam_wa_assert_options(const struct iam_call *c, const char *identity_id,
                                    const char *uv, json_t **out) DCMS_MUST_CHECK;
/*
 * Verifies an assertion over a challenge issued by iam_wa_assert_options
 * for `identity_id` (consumed), stores the new counter, audits `action`
 * (success or denied) as `actor`.
 */
enum dcms_err iam_wa_assert(struct dcms_iam *iam, const char *identity_id, const json_t *assertion,
                            bool require_uv, const char *actor, const char *action,
                            const char *client_ip, const char *request_id,
                            struct dcms_webauthn_result *out,
                            struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/*
 * Passkey-first sign-in. iam_wa_login_options: PublicKeyCredentialRequestOptions
 * with a challenge bound to nothing but itself (webauthn_login_challenges,
 * single use, IAM_WA_LOGIN_CHALLENGE_TTL_S), no allowCredentials and
 * userVerification "required"; audited; 429 while the caller's address is
 * locked out of logins. iam_wa_credential_owner: the identity a credential
 * id is registered to (DCMS_ERR_NOT_FOUND). iam_wa_login_verify: uses the
 * challenge up, requires the userHandle and that it is the identity's
 * (constant time), then the assertion checks with UV required and the
 * counter rule, audited as webauthn.login; *why is the reason a refusal
 * counts under (auth.login_failed).
 */
#define IAM_WA_LOGIN_CHALLENGE_TTL_S 120
enum dcms_err iam_wa_login_options(const struct iam_call *c, json_t **out,
                                   int64_t *retry_after_s) DCMS_MUST_CHECK;
enum dcms_err iam_wa_credential_owner(struct dcms_iam *iam, const char *credential_id,
                                      char identity_id[DCMS_UUID_STRLEN],
                                      struct dcms_errinfo *ei) DCMS_MUST_CHECK;
struct iam_wa_cred_in;
enum dcms_err iam_wa_login_verify(struct dcms_iam *iam, const char *identity_id,
                                  const struct iam_wa_cred_in *in, const char *client_ip,
                                  const char *request_id, struct dcms_webauthn_result *out,
                                  const char **why, struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* Passkeys are managed and used in interactive sessions, never with an API key: 403 otherwise. */
enum dcms_err iam_wa_no_api_key(const struct iam_call *c) DCMS_MUST_CHECK;
/* Whether `identity_id` has a passkey (the login step-up offers "webauthn" then). */
enum dcms_err iam_wa_enrolled(struct dcms_iam *iam, const char *identity_id, bool *yes,
                              struct dcms_errinfo *ei) DCMS_MUST_CHECK;
enum dcms_err iam_wa_list(const struct iam_call *c, json_t **out) DCMS_MUST_CHECK;
/* Removes one of the caller's passkeys; 409 naming `id` when it is the last second factor. */
enum dcms_err iam_wa_delete(const struct iam_call *c, const char *id) DCMS_MUST_CHECK;

/* ---- shared by the credential services ---- */

/* The identity's organization (may be "") into org; DCMS_ERR_NOT_FOUND when absent. */
enum dcms_err iam_cred_identity(struct dcms_store_tx *tx, const char *identity_id,
                                char org[DCMS_UUID_STRLEN],
                                struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * May the caller act on `identity_id`'s credentials? `self_only`: only the
 * identity itself (registering); otherwise the identity itself, or whoever
 * `action` on that identity is granted to (admins: "identities:manage").
 * Someone else's identity the caller may not see is DCMS_ERR_NOT_FOUND, as
 * for an unknown id, with *hidden set (iam_identity_authorize): pass it to
 * iam_identity_hidden_audit after the transaction.
 */
enum dcms_err iam_cred_authorize(const struct iam_call *c, struct dcms_store_tx *tx,
                                 const char *identity_id, bool self_only, const char *action,
                                 bool *hidden) DCMS_MUST_CHECK;

/* Records a refused credential operation (outcome denied) in a transaction of its own. */
void iam_cred_audit_denied(struct dcms_iam *iam, const char *actor, const char *action,
                           const char *rtype, const char *rid, const char *reason,
                           const char *client_ip, const char *request_id);

#endif
