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
 * with at most one factor (totp, recovery_code, webauthn), and optionally
 * the client's device_token.
 */
enum dcms_err iam_login_from_json(const json_t *b, struct iam_login_in *in,
                                  struct dcms_errinfo *ei) DCMS_MUST_CHECK;

#endif
