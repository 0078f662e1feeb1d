/*
 * The decode layer of identities and sessions (iam_json.c): request JSON
 * into the C structs the services take, every problem at once under its
 * JSON path (in `ei`, allocated from ei->arena). The handlers check the
 * members against their allowed lists before calling these, which
 * check the members' values. Strings point into the JSON, which
 * must outlive the struct. No store, no HTTP.
 */
#ifndef DCMS_IAM_JSON_H
#define DCMS_IAM_JSON_H

#include <jansson.h>

#include "iam/apikey_int.h"
#include "iam/iam_cred.h"
#include "iam/iam_identity.h"
#include "iam/iam_session.h"

/*
 * POST /identities and /auth/register: {kind?, name, email?, password?,
 * organization_id?, roles?}. The result may be ignored: the service adds its
 * own problems to `ei` and refuses when ei->code is set, so all come back at
 * once.
 */
enum dcms_err iam_identity_create_from_json(const json_t *b, struct iam_identity_in *in,
                                            struct dcms_errinfo *ei);
/* PATCH /identities/{id}: {name?, email?, organization_id?, roles?}, at least one. */
enum dcms_err iam_identity_patch_from_json(const json_t *b, struct iam_identity_in *in,
                                           struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/*
 * POST /auth/login: {email, password, <factor>?} or {mfa_ticket, <factor>}
 * with at most one factor (totp, recovery_code, webauthn), or {webauthn}
 * alone (passkey-first: in->passkey_only), and optionally the client's
 * device_token.
 */
enum dcms_err iam_login_from_json(const json_t *b, struct iam_login_in *in,
                                  struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/*
 * A body of one string member `key` of at most `max` bytes ({note},
 * {refresh_token}, {token}, {code}): *out is its value, or NULL when it is
 * absent (a problem when `required`). `b` may be NULL (no body).
 */
enum dcms_err iam_str_from_json(const json_t *b, const char *key, size_t max, bool required,
                                const char **out, struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* GET /identities: the query's kind, status and cursor (already in `in`) checked. */
enum dcms_err iam_list_check(const struct iam_list_in *in, struct dcms_errinfo *ei);
/* POST /api-keys: {name, permissions, expires_at, identity_id?}. The result may be ignored
 * like iam_identity_create_from_json's: iam_apikey_create adds its own problems. */
enum dcms_err iam_apikey_from_json(const json_t *b, struct iam_apikey_in *in,
                                   struct dcms_errinfo *ei);
/* POST /identities/{id}/keys (and .../rotate): {public_key, challenge_id, signature, name?};
 * a member that is not a string is flagged in in->invalid. Result may be ignored (the service
 * adds its own problems). */
enum dcms_err iam_signkey_from_json(const json_t *b, struct iam_signkey_in *in,
                                    struct dcms_errinfo *ei);

#endif
