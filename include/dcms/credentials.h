/*
 * Credentials other services rest on: an identity's registered Ed25519
 * signing keys, its TOTP second factor and its passkeys (WebAuthn). The
 * contract service uses these three to check "digital", "mfa" and
 * "biometric" signatures; nothing here issues sessions.
 *
 * Every function runs its own short store transaction unless it takes a
 * struct dcms_store_tx. Thread-safe.
 */
#ifndef DCMS_CREDENTIALS_H
#define DCMS_CREDENTIALS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "dcms/clock.h"
#include "dcms/err.h"
#include "dcms/uuid.h"

struct dcms_iam;

#define DCMS_SIGNING_KEY_ID_MAX 64 /* key ids are short printable strings */

/* A registered signing key, as verification found it. */
struct dcms_signing_key_info {
    char key_id[DCMS_SIGNING_KEY_ID_MAX + 1];
    char identity_id[DCMS_UUID_STRLEN];
    char alg[16];                      /* "Ed25519" */
    unsigned char public_key[32];      /* raw Ed25519 public key */
    char created_at[DCMS_TIME_STRLEN]; /* RFC 3339 */
    char revoked_at[DCMS_TIME_STRLEN]; /* "" while active */
};

/*
 * Checks an Ed25519 signature `sig` (64 bytes) over `msg` with the key
 * `key_id` registered to `identity_id`.
 *
 * at_time NULL: a new signature; the key must be active now (a revoked or
 * rotated-out key is refused with DCMS_ERR_FORBIDDEN and a message saying
 * so). at_time an RFC 3339 time: re-verification of a past signature made
 * then; the key must have been registered at that time and not yet revoked,
 * so a revoked key's earlier signatures stay verifiable.
 *
 * DCMS_OK and *out filled (out may be NULL); DCMS_ERR_NOT_FOUND for an
 * unknown key or one registered to another identity; DCMS_ERR_VALIDATION
 * for a bad signature (the message says what failed).
 */
enum dcms_err dcms_iam_signing_key_verify(struct dcms_iam *iam, const char *identity_id,
                                          const char *key_id, const unsigned char *msg,
                                          size_t msg_len, const unsigned char sig[64],
                                          const char *at_time, struct dcms_signing_key_info *out,
                                          struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * Checks a TOTP code (6 digits) for `identity_id`, which must have a
 * confirmed TOTP enrolment, and consumes it: the same code is refused for
 * the rest of its validity window (no replay). DCMS_OK; DCMS_ERR_CONFLICT
 * when the identity has no confirmed TOTP; DCMS_ERR_VALIDATION for a wrong
 * or replayed code. Failures count towards the login throttle.
 * DCMS_ERR_RATE_LIMITED while the identity's account is locked by failed
 * logins (no code is checked then); DCMS_ERR_NOT_FOUND for an unknown
 * identity. Implemented in src/iam/totp.c.
 */
enum dcms_err dcms_iam_totp_check(struct dcms_iam *iam, const char *identity_id, const char *code,
                                  struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* What a verified WebAuthn assertion proved. */
struct dcms_webauthn_result {
    char credential_id[192]; /* base64url, as the client sent it */
    int cose_alg;            /* -7 ES256, -8 EdDSA, -257 RS256 */
    bool user_present;
    bool user_verified; /* the UV flag: what a "biometric" signature rests on */
    uint32_t sign_count;
};

/*
 * Verifies a WebAuthn assertion made by one of `identity_id`'s registered
 * passkeys over `challenge` (raw bytes; for a contract signature the
 * 32-byte terms hash). `assertion` is the PublicKeyCredential JSON as
 * browsers serialize it: {id, rawId, type: "public-key", response:
 * {clientDataJSON, authenticatorData, signature, userHandle?}} with
 * base64url fields. Checks type "webauthn.get", challenge, origin, rpIdHash,
 * the UP flag, the signature with the stored public key, and the sign
 * counter (a counter that does not increase, when either is non-zero, is
 * refused as a cloned authenticator); on success stores the new counter.
 * require_uv: also refuse an assertion without the UV flag.
 * DCMS_OK; DCMS_ERR_NOT_FOUND for a credential not registered to the
 * identity; DCMS_ERR_VALIDATION naming the check that failed.
 */
enum dcms_err dcms_iam_webauthn_verify_assertion(struct dcms_iam *iam, const char *identity_id,
                                                 const unsigned char *challenge,
                                                 size_t challenge_len, const json_t *assertion,
                                                 bool require_uv, struct dcms_webauthn_result *out,
                                                 struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * Re-checks, without the store, a WebAuthn assertion kept as evidence of a
 * past signature (a contract's /verify): `client_data_json` and
 * `authenticator_data` are the base64url fields as the client sent them.
 * The client data must be a "webauthn.get" whose challenge is `challenge`
 * (raw bytes, at most 64), the authenticator data must parse, and carry the
 * UV flag when `require_uv`. The signature and the counter were checked by
 * dcms_iam_webauthn_verify_assertion when the assertion was made (the
 * counter has moved on since, and the passkey may be gone), so they are not
 * checked again. DCMS_OK, or DCMS_ERR_VALIDATION with a message saying what
 * does not hold. Pure and thread-safe; implemented in src/iam/iam_webauthn.c.
 */
enum dcms_err dcms_iam_webauthn_recheck_assertion(const unsigned char *challenge,
                                                  size_t challenge_len,
                                                  const char *client_data_json,
                                                  const char *authenticator_data, bool require_uv,
                                                  struct dcms_errinfo *ei) DCMS_MUST_CHECK;

#endif
