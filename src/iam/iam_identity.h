/*
 * Identities (iam_identity.c) and the e-mail outbox (iam_mail.c): register,
 * create, read, list, patch, verify / suspend / reactivate, e-mail tokens,
 * the bootstrap admin. Above the core layer only.
 */
#ifndef DCMS_IAM_IDENTITY_H
#define DCMS_IAM_IDENTITY_H

#include "iam/iam_core.h"

struct iam_identity_in {
    const char *kind, *name, *email, *password, *organization_id;
    unsigned roles;
    bool has_roles, has_email, has_org; /* PATCH: which members were given */
    const char *if_match;               /* PATCH: the version the client saw, or NULL */
};

struct iam_list_in {
    const char *kind, *status, *cursor;
    int64_t limit;
};

/* Identities (iam_identity.c). Results are JSON objects the caller owns. */
enum dcms_err iam_identity_create(const struct iam_call *c, const struct iam_identity_in *in,
                                  json_t **out) DCMS_MUST_CHECK;
enum dcms_err iam_identity_get(const struct iam_call *c, const char *id,
                               json_t **out) DCMS_MUST_CHECK;
enum dcms_err iam_identity_list(const struct iam_call *c, const struct iam_list_in *in,
                                json_t **out) DCMS_MUST_CHECK;
enum dcms_err iam_identity_patch(const struct iam_call *c, const char *id,
                                 const struct iam_identity_in *in, json_t **out) DCMS_MUST_CHECK;
/* op: "verify" (note = evidence, required), "suspend" (note = reason), "reactivate". */
enum dcms_err iam_identity_transition(const struct iam_call *c, const char *id, const char *op,
                                      const char *note, json_t **out) DCMS_MUST_CHECK;
enum dcms_err iam_email_verify(const struct iam_call *c, const char *token,
                               json_t **out) DCMS_MUST_CHECK;

/*
 * GET /auth/me: {identity: the caller's identity as GET /identities/{id}
 * shows it, token: {roles, amr, session_id, api_key: {id, scope} or null,
 * expires_at}}. Needs no permission beyond being authenticated.
 */
enum dcms_err iam_identity_me(const struct iam_call *c, json_t **out) DCMS_MUST_CHECK;
/* Mail (iam_mail.c): sends pending outbox rows through DCMS_SMTP_URL; logs in dev mode. */
void iam_mail_flush(struct dcms_iam *iam);
/* One message through libcurl; DCMS_ERR_UNAVAILABLE when the server refuses it. */
enum dcms_err iam_mail_send(const char *url, const char *from, const char *to, const char *subject,
                            const char *body, struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* Creates the bootstrap admin when the store has no identity (iam_identity.c). */
enum dcms_err iam_bootstrap(struct dcms_iam *iam, struct dcms_errinfo *ei) DCMS_MUST_CHECK;

#endif
