/*
 * Identity and access management: who is calling (the principal, from a
 * verified ES256 access token) and what they may do (roles, JSON policies
 * and resource-level rules).
 *
 * The HTTP layer authenticates every request into a struct dcms_principal
 * and authorizes the route's action (src/http/authz.c); services call
 * dcms_iam_authorize() again for decisions that depend on the resource
 * ("may this principal read this identity / this contract?"). A refused
 * decision returns DCMS_ERR_FORBIDDEN; the HTTP layer audits every 401 and
 * 403 it sends.
 *
 * Thread-safety: struct dcms_iam is shared by all threads; principals are
 * read-only values.
 */
#ifndef DCMS_IAM_H
#define DCMS_IAM_H

#include <stdbool.h>
#include <stdint.h>

#include "dcms/err.h"
#include "dcms/uuid.h"

struct dcms_app;
struct dcms_iam;

/* Roles, as a bit set in struct dcms_principal. */
enum {
    DCMS_ROLE_ADMIN = 1u << 0,
    DCMS_ROLE_PROVIDER = 1u << 1,
    DCMS_ROLE_CONSUMER = 1u << 2,
    DCMS_ROLE_AUDITOR = 1u << 3,
    DCMS_ROLE_OPERATOR = 1u << 4,
    /* Manages the members of its own organization (docs/iam.md, "Organization membership"). */
    DCMS_ROLE_ORG_ADMIN = 1u << 5,
    DCMS_ROLE_LAST = DCMS_ROLE_ORG_ADMIN, /* the highest bit, for loops over the roles */
};

/*
 * Authentication methods (the amr claim, RFC 8176 values): password,
 * one-time code, hardware key, multiple factors, user presence/verification.
 */
enum {
    DCMS_AMR_PWD = 1u << 0,
    DCMS_AMR_OTP = 1u << 1,
    DCMS_AMR_HWK = 1u << 2,
    DCMS_AMR_MFA = 1u << 3,
    DCMS_AMR_USER = 1u << 4,
};

/* An authenticated caller, as the access token says. */
struct dcms_principal {
    char id[DCMS_UUID_STRLEN];  /* identity id (sub) */
    char org[DCMS_UUID_STRLEN]; /* organization id, "" when none */
    char sid[DCMS_UUID_STRLEN]; /* session family the token belongs to */
    char jti[DCMS_UUID_STRLEN];
    unsigned roles; /* DCMS_ROLE_* */
    unsigned amr;   /* DCMS_AMR_* */
    int64_t iat_s, exp_s;
    /* When the session's login happened (auth_time; refreshes keep it); 0 when unknown. */
    int64_t auth_time_s;
    /*
     * Callers authenticated by an API key: the key's id, and its scope (the
     * actions it may perform, '*' wildcards) in the request arena. Every
     * authorization also needs the scope to cover the action. api_key is ""
     * (and nscope 0) for access tokens.
     */
    char api_key[DCMS_UUID_STRLEN];
    const char *const *scope;
    size_t nscope;
};

/*
 * What a decision is about. type is "identity", "contract", ...; id NULL
 * means the collection. A `scoped` resource may only be touched by
 * principals related to it (itself, its owner, its organization or a
 * party) unless they are admin (or auditor, for reads) or a policy allows
 * it explicitly. All strings borrowed.
 */
struct dcms_iam_resource {
    const char *type;
    const char *id;
    const char *owner_id;
    const char *org_id;
    const char *const *parties; /* identity or organization ids (contract parties) */
    size_t nparties;
    bool scoped;
};

/* The request around a decision (for policy conditions such as ip_range). */
struct dcms_iam_ctx {
    struct dcms_iam *iam; /* policies come from here; NULL: roles only */
    const char *client_ip;
};

/*
 * Decides whether `p` may perform `action` ("contracts:read") on `res`
 * (NULL: no particular resource). Explicit deny policies win; then role
 * permissions (subject to resource scope), then allow policies; otherwise
 * deny. DCMS_OK or DCMS_ERR_FORBIDDEN (recorded in `ei`, may be NULL).
 */
enum dcms_err dcms_iam_authorize(const struct dcms_principal *p, const char *action,
                                 const struct dcms_iam_resource *res,
                                 const struct dcms_iam_ctx *ctx,
                                 struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* "admin" ... for a single DCMS_ROLE_* bit; NULL otherwise. */
const char *dcms_iam_role_name(unsigned role);
/* The DCMS_ROLE_* bit for a name, 0 when unknown. */
unsigned dcms_iam_role_parse(const char *name);

/*
 * Starts the service: loads (or creates) the JWT signing keys, the
 * policies, and creates the bootstrap admin when the store has no
 * identity and DCMS_ADMIN_EMAIL / DCMS_ADMIN_PASSWORD are set.
 * `app` must have cfg, store and audit set and outlive the service.
 */
enum dcms_err dcms_iam_open(struct dcms_app *app, struct dcms_iam **out,
                            struct dcms_errinfo *ei) DCMS_MUST_CHECK;
void dcms_iam_close(struct dcms_iam *iam);

/*
 * Verifies a bearer access token (ES256, known kid, issuer, audience,
 * times) and that its session is not revoked; verified tokens are cached
 * by their SHA-256 and re-checked against the store at most every
 * DCMS_IAM_REVALIDATE_MS, at once after a local revocation.
 * DCMS_ERR_UNAUTHENTICATED on any problem.
 */
enum dcms_err dcms_iam_authenticate(struct dcms_iam *iam, const char *token, size_t len,
                                    struct dcms_principal *out,
                                    struct dcms_errinfo *ei) DCMS_MUST_CHECK;

struct dcms_arena;

/*
 * Authenticates an API key (`dcms_<key id>_<secret>`): the key must exist,
 * match (SHA-256, compared in constant time), be unrevoked and unexpired,
 * and belong to an active identity. The principal has the identity's
 * current roles, amr empty (an API key is never a second factor) and the
 * key's scope (allocated in `arena`). Verified keys are cached like access
 * tokens: a revocation, suspension or role change on this node takes effect
 * at once, one on another node within DCMS_IAM_REVALIDATE_MS.
 * DCMS_ERR_UNAUTHENTICATED on any problem.
 */
enum dcms_err dcms_iam_authenticate_api_key(struct dcms_iam *iam, const char *key, size_t len,
                                            struct dcms_arena *arena, struct dcms_principal *out,
                                            struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * The same for a request whose verified TLS client certificate is mapped to
 * API key `id` (DCMS_TLS_CLIENT_MAP_FILE): the key's identity, scope,
 * expiry and revocation apply exactly as above; the certificate stands in
 * for the secret.
 */
enum dcms_err dcms_iam_authenticate_api_key_id(struct dcms_iam *iam, const char *id,
                                               struct dcms_arena *arena, struct dcms_principal *out,
                                               struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* True when a bearer credential looks like an API key ("dcms_" prefix). */
bool dcms_iam_is_api_key(const char *bearer);

/* ---- parties: what other modules may know of an identity ---- */

struct dcms_store_tx;

/* An identity as a party to an agreement (contracts): no names, no secrets. */
struct dcms_iam_party {
    char kind[16];              /* "user", "organization", "service" */
    char status[16];            /* "active", "suspended", "deleted", ... */
    unsigned roles;             /* DCMS_ROLE_* bit set */
    char org[DCMS_UUID_STRLEN]; /* organization it belongs to: its own id for an
                                   organization, "" for an identity in none */
};

/*
 * Reads identity `id` inside the caller's transaction `tx` (so a check and
 * the write it guards see the same state). DCMS_ERR_NOT_FOUND (nothing
 * recorded in `ei`) when no such identity exists or `id` is not a UUID;
 * store errors otherwise. Thread-safe; *out is caller-owned storage.
 */
enum dcms_err dcms_iam_party_get(struct dcms_store_tx *tx, const char *id,
                                 struct dcms_iam_party *out,
                                 struct dcms_errinfo *ei) DCMS_MUST_CHECK;

struct dcms_store_rows;

/*
 * The display names of the identities `ids` (n of them; duplicates and NULL
 * entries allowed), read in one statement inside `tx`: *rows (the caller
 * frees it with dcms_store_rows_free) holds one (id, name) row per identity
 * that exists, in no particular order. Names only: never an e-mail or any
 * other member of the identity. The caller decides who may see them (the
 * contract service shows the names of a contract's parties to whoever may
 * read the contract). Thread-safe.
 */
enum dcms_err dcms_iam_party_names(struct dcms_store_tx *tx, const char *const *ids, size_t n,
                                   struct dcms_store_rows **rows,
                                   struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* The name of identity `id` in rows of dcms_iam_party_names (or of dcms_iam_parties), or
 * NULL when not there. */
const char *dcms_iam_party_name(const struct dcms_store_rows *rows, const char *id);

/*
 * The SQL expression (a scalar subquery, on both backends) of the display
 * name of the identity whose id is in column `col` (a string literal) of the
 * statement's own row, NULL when there is none: a module that answers with
 * its parties' names puts it in its statement's select or RETURNING list
 * and spares the dcms_iam_party_names statement after it. IAM keeps it true
 * to its schema; the rules of dcms_iam_party_names hold (a name only; the
 * caller decides who may see it).
 */
#define DCMS_IAM_NAME_OF_SQL(col) "(SELECT name FROM identities WHERE id = " col ")"

/*
 * dcms_iam_party_names and dcms_iam_party_get for several identities in
 * one statement: *rows serves both dcms_iam_party_name and
 * dcms_iam_party_of. Thread-safe.
 */
enum dcms_err dcms_iam_parties(struct dcms_store_tx *tx, const char *const *ids, size_t n,
                               struct dcms_store_rows **rows,
                               struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* Identity `id` in rows of dcms_iam_parties into *out; false when it is not there. */
bool dcms_iam_party_of(const struct dcms_store_rows *rows, const char *id,
                       struct dcms_iam_party *out);

#endif
