/*
 * The MFA layer of IAM: TOTP (totp.c), recovery codes, login tickets and
 * the factor dispatch of step-up login (mfa.c), which also dispatches to
 * passkeys (iam_cred.h, the layer below). The pure TOTP functions never
 * touch the store; the unit tests run the RFC 6238 vectors through them.
 */
#ifndef DCMS_IAM_MFA_INT_H
#define DCMS_IAM_MFA_INT_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "iam/iam_core.h"

struct dcms_store_tx;

/* ---- TOTP, pure (totp.c) ---- */

#define IAM_TOTP_SECRET_BYTES 20 /* RFC 4226 recommends 160 bits for HMAC-SHA-1 */
#define IAM_TOTP_DIGITS 6
#define IAM_TOTP_STEP_S 30
#define IAM_TOTP_WINDOW 1 /* steps accepted either side of now (clock drift) */

enum iam_totp_alg { IAM_TOTP_SHA1, IAM_TOTP_SHA256, IAM_TOTP_SHA512 };

/*
 * The code (digits 6..8, NUL-terminated into out[digits + 1]) for the step
 * holding time `t_s` (T0 = 0). DCMS_ERR_CRYPTO when liboath fails.
 */
enum dcms_err iam_totp_generate(const unsigned char *key, size_t key_len, int64_t t_s,
                                unsigned step_s, unsigned digits, enum iam_totp_alg alg,
                                char *out) DCMS_MUST_CHECK;

/*
 * Looks for `code` (IAM_TOTP_DIGITS digits, SHA-1, 30 s steps) among the
 * steps within IAM_TOTP_WINDOW of time `t_s`, comparing each candidate in
 * constant time; *step receives the step that matched. DCMS_ERR_VALIDATION
 * when none does or the code is not six digits.
 */
enum dcms_err iam_totp_match(const unsigned char *key, size_t key_len, int64_t t_s,
                             const char *code, uint64_t *step) DCMS_MUST_CHECK;

/* RFC 4648 base32 without padding; out needs (n * 8 + 4) / 5 + 1 bytes. */
void iam_base32_encode(char *out, const unsigned char *p, size_t n);

/* ---- TOTP enrolment and checks (totp.c) ---- */

/* New pending enrolment for the caller: {secret, otpauth_uri, ...}. 409 when one is confirmed. */
enum dcms_err iam_totp_enroll(const struct iam_call *c, json_t **out) DCMS_MUST_CHECK;
/* Confirms the pending enrolment with a first code; answers the ten recovery codes. */
enum dcms_err iam_totp_confirm(const struct iam_call *c, const char *code,
                               json_t **out) DCMS_MUST_CHECK;
/* Removes the caller's TOTP (and recovery codes); needs a current code. */
enum dcms_err iam_totp_disable(const struct iam_call *c, const char *code) DCMS_MUST_CHECK;

/*
 * Checks and consumes a code of `identity_id`'s confirmed TOTP as at time
 * now_s: the matched step must be newer than the last accepted one, which
 * it then becomes (atomically: of two concurrent uses of one code, one
 * wins). DCMS_ERR_CONFLICT: no confirmed TOTP; DCMS_ERR_VALIDATION (field
 * `field`): wrong or already used. No throttling here.
 */
enum dcms_err iam_totp_consume(struct dcms_iam *iam, const char *identity_id, const char *code,
                               int64_t now_s, const char *field,
                               struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * iam_totp_consume with the login throttle around it: refused with 429
 * while the identity's account is locked; a wrong code counts as a failed
 * login (audited as auth.login_failed, reason `why`).
 */
enum dcms_err iam_totp_check_throttled(const struct iam_call *c, const char *identity_id,
                                       const char *code, const char *field) DCMS_MUST_CHECK;

/* ---- recovery codes, tickets, status (mfa.c) ---- */

#define IAM_RECOVERY_CODES 10
#define IAM_MFA_TICKET_TTL_S 300

/* Replaces `identity_id`'s recovery codes inside tx; *codes is the array shown once. */
enum dcms_err iam_recovery_issue_tx(struct dcms_iam *iam, struct dcms_store_tx *tx,
                                    const char *identity_id, json_t **codes,
                                    struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* Uses up one recovery code; DCMS_ERR_VALIDATION (field `field`) when none matches. */
enum dcms_err iam_recovery_consume(struct dcms_iam *iam, const char *identity_id, const char *code,
                                   const char *field, struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* New recovery codes for the caller (needs a current TOTP code). */
enum dcms_err iam_recovery_regenerate(const struct iam_call *c, const char *totp,
                                      json_t **out) DCMS_MUST_CHECK;
/* The caller's second factors: {totp, recovery_codes_remaining, factors}. */
enum dcms_err iam_mfa_status(const struct iam_call *c, json_t **out) DCMS_MUST_CHECK;

/*
 * ---- step-up login: the factor dispatch (mfa.c) ----
 *
 * The seam for new second factors. A login request carries at most one
 * factor (struct iam_factor_in). Each factor is a row of the table in
 * mfa.c: its name (as listed in `factors` of the mfa_required answer), the
 * request member that carries it, whether an identity has it enrolled,
 * how to verify it (adding DCMS_AMR_* bits), the throttle's failure reason
 * and, optionally, a challenge for the mfa_required answer. A passkey
 * assertion is added as a row named "webauthn" with a `webauthn` member
 * here (and in the login handler's allowed keys), an enrolled check on the
 * passkeys table, a challenge function answering the assertion options
 * for the ticket, and a verify function that checks the assertion against
 * that challenge (f->mfa_ticket is set in a second step); login itself
 * (iam_session.c) does not change.
 */
struct iam_factor_in {
    const char *totp;
    const char *recovery_code;
    const json_t *webauthn; /* a passkey assertion (PublicKeyCredential JSON) */
    /* Set by login: the ticket of a second step (NULL in one shot), e.g. to derive a challenge. */
    const char *mfa_ticket;
};

enum { IAM_FACTOR_TOTP = 1u << 0, IAM_FACTOR_RECOVERY = 1u << 1, IAM_FACTOR_WEBAUTHN = 1u << 2 };

/* Whether the request carries a factor; the name of the first one (for messages). */
bool iam_factor_given(const struct iam_factor_in *f, const char **name);
/* The factors `identity_id` has enrolled (IAM_FACTOR_* bits). */
enum dcms_err iam_mfa_enrolled(struct dcms_iam *iam, const char *identity_id, unsigned *mask,
                               struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* Names of the IAM_FACTOR_* bits, as a JSON array. */
json_t *iam_factors_json(unsigned mask);
/*
 * {factor name: what the client needs to answer it} for the enrolled
 * factors that have a challenge (passkeys: their assertion options, a
 * fresh single-use challenge), put under `challenges` in the mfa_required
 * answer.
 * NULL when there is none.
 */
json_t *iam_factor_challenges(const struct iam_call *c, const char *identity_id, unsigned enrolled,
                              const char *ticket);
/*
 * Verifies the one factor in `f` for `identity_id` (which has `enrolled`);
 * on success ORs the amr bits it proves into *amr. DCMS_ERR_VALIDATION
 * (field named) for a wrong code; *why names the failure for the throttle.
 */
enum dcms_err iam_factor_verify(const struct iam_call *c, const char *identity_id,
                                unsigned enrolled, const struct iam_factor_in *f, unsigned *amr,
                                const char **why) DCMS_MUST_CHECK;

/* A login ticket (shown once) for `identity_id`; hash stored, valid IAM_MFA_TICKET_TTL_S. */
enum dcms_err iam_mfa_ticket_issue(struct dcms_iam *iam, const char *identity_id, char ticket[48],
                                   struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/*
 * The identity an unused, unexpired ticket belongs to (into id) and the
 * ticket's hash (to consume it with iam_mfa_ticket_use_tx when the login
 * completes). DCMS_ERR_UNAUTHENTICATED otherwise.
 */
enum dcms_err iam_mfa_ticket_lookup(struct dcms_iam *iam, const char *ticket,
                                    char id[DCMS_UUID_STRLEN], char hash[65],
                                    struct dcms_errinfo *ei) DCMS_MUST_CHECK;
enum dcms_err iam_mfa_ticket_use_tx(struct dcms_store_tx *tx, const char *hash,
                                    struct dcms_errinfo *ei) DCMS_MUST_CHECK;

#endif
