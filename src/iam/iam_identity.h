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
/*
 * POST /identities with a token: administrative creation (needs
 * identities:create; the identity as JSON, `active`). No organization_id:
 * members join through iam_org_member_put (iam_org.h).
 */
enum dcms_err iam_identity_create(const struct iam_call *c, const struct iam_identity_in *in,
                                  json_t **out) DCMS_MUST_CHECK;
/*
 * POST /identities without a token: self-registration of a user, which
 * chooses no organization and no roles (422 naming the field), is limited
 * per address (DCMS_ERR_RATE_LIMITED with *retry_after_s) and answers
 * iam_register_answer() whether the address was new or already had an
 * account (that one's owner gets a mail). c->p is ignored.
 */
enum dcms_err iam_identity_register(const struct iam_call *c, const struct iam_identity_in *in,
                                    json_t **out, int64_t *retry_after_s) DCMS_MUST_CHECK;
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
/*
 * Mail (iam_mail.c): iam_mail_queue writes one message to the outbox inside
 * `tx` (sent after the commit); iam_mail_flush sends pending outbox rows
 * through DCMS_SMTP_URL (in dev mode: logs recipient, subject and token).
 */
enum dcms_err iam_mail_queue(struct dcms_store_tx *tx, const char *to, const char *subject,
                             const char *body, const char *now,
                             struct dcms_errinfo *ei) DCMS_MUST_CHECK;
void iam_mail_flush(struct dcms_iam *iam);
/* Where and how mail goes (from DCMS_SMTP_*); strings borrowed. */
struct iam_smtp {
    const char *url;     /* smtp:// or smtps:// */
    const char *ca_file; /* PEM CAs for the server's certificate; NULL or "": the system's */
    bool starttls;       /* smtp://: STARTTLS required (never a plaintext fallback) */
};
/*
 * One message through libcurl, over TLS with the server's certificate and
 * host name verified (smtps://, or smtp:// with STARTTLS unless
 * smtp->starttls is false). DCMS_ERR_UNAVAILABLE when the server refuses it
 * or the TLS setup fails (the message says why: curl's error and detail).
 */
enum dcms_err iam_mail_send(const struct iam_smtp *smtp, const char *from, const char *to,
                            const char *subject, const char *body,
                            struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* ---- self-registration (iam_register.c) ---- */

/*
 * Counts one self-registration from c->client_ip in the current window
 * (DCMS_REGISTRATIONS_PER_HOUR per address and hour, shared by every node
 * through the store). DCMS_ERR_RATE_LIMITED past the limit, with
 * *retry_after_s set to the seconds until the window ends. No address or a
 * limit of 0: always DCMS_OK.
 */
enum dcms_err iam_register_admit(const struct iam_call *c, int64_t *retry_after_s) DCMS_MUST_CHECK;
/*
 * A registration for an address that already has an account (identity
 * `id`, stored address `email`): queues a mail to that address saying so
 * and audits it, inside `tx`. The caller answers as for a new account.
 */
enum dcms_err iam_register_existing(const struct iam_call *c, struct dcms_store_tx *tx,
                                    const char *id, const char *email,
                                    const char *now) DCMS_MUST_CHECK;
/* The one answer of a self-registration, new address or not: {status, email, message}. */
json_t *iam_register_answer(const char *email);

/* Creates the bootstrap admin when the store has no identity (iam_identity.c). */
enum dcms_err iam_bootstrap(struct dcms_iam *iam, struct dcms_errinfo *ei) DCMS_MUST_CHECK;

#endif
