/*
 * Sessions (iam_session.c): login (with the step-up of mfa_int.h), refresh
 * rotation with reuse detection, logout. Above the MFA layer.
 */
#ifndef DCMS_IAM_SESSION_H
#define DCMS_IAM_SESSION_H

#include "iam/mfa_int.h"

/*
 * Login (iam_session.c): {email, password} alone, {email, password,
 * <factor>} in one shot, or {mfa_ticket, <factor>}. An identity with an
 * enrolled second factor that logs in with a password alone gets
 * DCMS_ERR_MFA_REQUIRED and *out = {mfa_ticket, factors, expires_in}
 * (the caller owns it). A wrong factor is 401 and counts as a failed login.
 * {webauthn} alone (passkey_only) signs in with a discoverable passkey over
 * a challenge of iam_wa_login_options: the credential names the identity,
 * the user must be verified, and the session's amr is ["hwk","user","mfa"].
 * `device_token` (or NULL) is the client's device token (iam_core.h): valid
 * for the identity, the client is throttled on it alone. A successful login
 * answers a new one in *out's "device_token".
 */
struct iam_login_in {
    const char *email, *password, *mfa_ticket, *device_token;
    struct iam_factor_in factor;
    bool passkey_only; /* {webauthn} alone: passkey-first sign-in (no email, password, ticket) */
};
enum dcms_err iam_login(const struct iam_call *c, const struct iam_login_in *in, json_t **out,
                        int64_t *retry_after_s) DCMS_MUST_CHECK;

enum dcms_err iam_refresh(const struct iam_call *c, const char *refresh_token,
                          json_t **out) DCMS_MUST_CHECK;
enum dcms_err iam_logout(const struct iam_call *c, const char *refresh_token) DCMS_MUST_CHECK;

/*
 * The caller's live sessions, newest first (at most 200): *out =
 * {sessions: [{id, amr, created_at, expires_at, last_active_at, current}]}.
 * An API key's identity has none.
 */
enum dcms_err iam_sessions_list(const struct iam_call *c, json_t **out) DCMS_MUST_CHECK;
/* Revokes one of the caller's own sessions (NOT_FOUND otherwise); audited. */
enum dcms_err iam_session_revoke(const struct iam_call *c, const char *id) DCMS_MUST_CHECK;

#endif
