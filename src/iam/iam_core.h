/*
 * The bottom layer of IAM (see README.md, "Layers"): what every other part
 * of the service uses and that uses nothing above it. Passwords
 * (password.c), base64url and ES256 JWTs (jwt.c), the role table and the
 * pure policy decision (policy.c), the service state with the key-encryption
 * key, JWT signing keys, policy snapshot, bounded hashing, revocation epoch,
 * access tokens, roles, amr and the audit helper (iam_core.c), the login
 * throttle (iam_throttle.c) and the step-up rule (iam_stepup.c). The pure
 * parts never touch the store, so the unit tests exercise them directly.
 * Nothing here includes the HTTP header or another IAM header.
 */
#ifndef DCMS_IAM_CORE_H
#define DCMS_IAM_CORE_H

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <sodium.h>

#include "dcms/iam.h"

struct dcms_store_tx;
struct iam_apikey_cache;

/* ---- passwords (password.c) ---- */

#define IAM_PASSWORD_MIN_CHARS 12
#define IAM_PASSWORD_MAX_BYTES 1024

/* True when `pw` (any case) is on the shipped list of common passwords. */
bool iam_password_is_common(const char *pw);
/* Adds a problem for `field` when `pw` breaks the rules (length, common, equals the email). */
void iam_password_check(const char *pw, const char *email, const char *field,
                        struct dcms_errinfo *ei);
/* argon2id string (with its parameters) into out[crypto_pwhash_STRBYTES]. */
enum dcms_err iam_password_hash(const char *pw, unsigned long long opslimit, size_t memlimit,
                                char out[crypto_pwhash_STRBYTES]) DCMS_MUST_CHECK;
/* Constant-time verification inside libsodium. */
bool iam_password_verify(const char *hash, const char *pw);
bool iam_password_needs_rehash(const char *hash, unsigned long long opslimit, size_t memlimit);

/* ---- base64url and ES256 JWTs (jwt.c) ---- */

/* Encoded length (no padding) plus NUL. */
size_t iam_b64url_len(size_t n);
void iam_b64url_encode(char *out, const void *p, size_t n);
/* Strict: only the URL alphabet, no padding, no trailing bits. */
bool iam_b64url_decode(unsigned char *out, size_t cap, const char *s, size_t len, size_t *out_len);

struct iam_key {
    char kid[48];
    EVP_PKEY *pkey;
    char x[48], y[48]; /* base64url coordinates (JWK) */
    bool current;
    int64_t retire_us; /* 0: not scheduled */
};

/* A fresh P-256 key; kid is its RFC 7638 thumbprint. */
enum dcms_err iam_key_generate(struct iam_key *k) DCMS_MUST_CHECK;
/* Private key from PKCS#8 PEM (also fills kid, x, y). */
enum dcms_err iam_key_from_pem(struct iam_key *k, const char *pem, size_t len) DCMS_MUST_CHECK;
/* PKCS#8 PEM of the private key in sodium_malloc'd memory; free with sodium_free. */
enum dcms_err iam_key_to_pem(const struct iam_key *k, char **pem, size_t *len) DCMS_MUST_CHECK;
void iam_key_release(struct iam_key *k);
/* {"kty":"EC","crv":"P-256","x","y","kid","alg":"ES256","use":"sig"} */
json_t *iam_key_jwk(const struct iam_key *k);

/* Signs `claims` as a compact JWS (header alg ES256, typ JWT, kid). *out is malloc'd. */
enum dcms_err iam_jwt_sign(const struct iam_key *k, const json_t *claims,
                           char **out) DCMS_MUST_CHECK;

typedef const struct iam_key *iam_key_lookup_fn(void *ctx, const char *kid);

struct iam_jwt_expect {
    const char *iss, *aud;
    int64_t now_s;
    int64_t leeway_s;
};

/*
 * Verifies a compact JWS strictly: three base64url parts, header exactly
 * {alg: ES256, typ: JWT, kid} (nothing else), a kid `lookup` knows, a
 * valid signature, iss and aud as expected, exp in the future and
 * nbf/iat not in the future (both within leeway). *claims is the payload
 * (caller owns it). DCMS_ERR_UNAUTHENTICATED with the reason otherwise.
 */
enum dcms_err iam_jwt_verify(const char *tok, size_t len, iam_key_lookup_fn *lookup, void *ctx,
                             const struct iam_jwt_expect *x, json_t **claims,
                             struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* The principal the claims describe (sub, org, sid, jti, roles, amr, iat, exp). */
enum dcms_err iam_claims_principal(const json_t *claims, struct dcms_principal *p,
                                   struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* ---- policies (policy.c) ---- */

struct iam_ipnet {
    int family; /* AF_INET or AF_INET6 */
    unsigned char addr[16];
    unsigned prefix;
};

struct iam_policy {
    char id[DCMS_UUID_STRLEN];
    bool deny;
    char **actions, **resources, **identities;
    size_t nactions, nresources, nidentities;
    unsigned roles; /* attached to these roles */
    bool c_party, c_mfa, c_self, c_same_org;
    struct iam_ipnet *nets;
    size_t nnets;
};

/* Glob match: '*' matches any run of characters (also ':'), everything else is literal. */
bool iam_glob(const char *pat, const char *s);
/* Whether the role permission table grants `action` to any role in `roles`. */
bool iam_role_allows(unsigned roles, const char *action);
/* Whether `ip` (text) lies in `net`. */
bool iam_ipnet_contains(const struct iam_ipnet *net, const char *ip);

/*
 * Parses and validates a policy document (every problem at once, field
 * paths from the root). Members are malloc'd; release with
 * iam_policy_release (also after a failure).
 */
enum dcms_err iam_policy_from_json(const json_t *doc, struct iam_policy *out,
                                   struct dcms_errinfo *ei) DCMS_MUST_CHECK;
void iam_policy_release(struct iam_policy *p);

enum iam_decision {
    IAM_DENY_DEFAULT,
    IAM_DENY_POLICY,
    IAM_DENY_AUDITOR,
    IAM_DENY_SCOPE,
    IAM_ALLOW_ROLE,
    IAM_ALLOW_POLICY,
};

static inline bool iam_allowed(enum iam_decision d)
{
    return d == IAM_ALLOW_ROLE || d == IAM_ALLOW_POLICY;
}

/* The pure decision (see dcms_iam_authorize). */
enum iam_decision iam_decide(const struct iam_policy *pol, size_t npol,
                             const struct dcms_principal *p, const char *action,
                             const struct dcms_iam_resource *res, const char *client_ip);

/* ---- the service state (iam_core.c) ---- */

struct iam_keyset {
    atomic_int refs;
    size_t n;
    struct iam_key keys[16];
    int64_t loaded_us;
};

struct iam_policyset {
    atomic_int refs;
    size_t n;
    struct iam_policy *p;
    int64_t loaded_us;
};

#define IAM_CACHE_SLOTS 4096
#define IAM_CACHE_STRIPES 64

struct iam_cache_entry {
    unsigned char hash[32];
    struct dcms_principal p;
    int64_t checked_us;
    uint64_t epoch;
    bool used;
};

struct dcms_iam {
    struct dcms_app *app;
    const struct dcms_config *cfg;
    unsigned char *kek; /* sodium_malloc'd, crypto_secretbox_KEYBYTES: the "iam.secrets" DEK */
    /* sodium_malloc'd, crypto_auth_hmacsha256_KEYBYTES: the "iam.device_tokens" DEK */
    unsigned char *device_key;
    pthread_mutex_t keys_mu;
    struct iam_keyset *keys;
    int64_t keys_reload_us; /* last reload attempt for an unknown kid */
    pthread_mutex_t pol_mu;
    struct iam_policyset *pols;
    sem_t hash_slots;
    char dummy_hash[crypto_pwhash_STRBYTES];
    atomic_uint_fast64_t epoch; /* bumped on every local revocation */
    pthread_mutex_t cache_mu[IAM_CACHE_STRIPES];
    struct iam_cache_entry *cache;
    _Atomic(struct iam_apikey_cache *) apikey_cache; /* apikey.c; made on first use */
};

struct iam_keyset *iam_keys_get(struct dcms_iam *iam);
void iam_keys_put(struct iam_keyset *ks);
/*
 * ---- the key-encryption key (iam_kek.c) ----
 * Loads the key sealing IAM's secrets into iam->kek: the keyring's
 * "iam.secrets" data key, made on first start, and, for a store from before
 * the keys module, the secrets sealed under DCMS_IAM_KEK_FILE re-sealed
 * under it once. It seals the JWT signing keys in the store and, through
 * iam_seal, small secrets (TOTP).
 */
enum dcms_err iam_kek_open(struct dcms_iam *iam, struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/*
 * XChaCha20-Poly1305 under the IAM key-encryption key, with `ad` (the
 * owning identity) as associated data, so a sealed value cannot be moved
 * to another identity. base64(nonce || ciphertext), malloc'd; NULL on OOM.
 */
char *iam_seal(struct dcms_iam *iam, const unsigned char *p, size_t n, const char *ad);
/* Opens into out[cap]; DCMS_ERR_CRYPTO when it does not authenticate. */
enum dcms_err iam_unseal(struct dcms_iam *iam, const char *sealed, const char *ad,
                         unsigned char *out, size_t cap, size_t *out_len) DCMS_MUST_CHECK;

/* Loads the signing keys, making the first one when the store has none (dcms_iam_open). */
enum dcms_err iam_keys_ensure(struct dcms_iam *iam, struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* Reloads keys from the store (after a rotation here or elsewhere). */
enum dcms_err iam_keys_reload(struct dcms_iam *iam, struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* Rotates the signing key: current → previous (valid until its tokens expire). */
enum dcms_err iam_keys_rotate(struct dcms_iam *iam, const struct dcms_principal *by,
                              const char *client_ip, const char *request_id, json_t **out,
                              struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* The JWKS document: current and not yet retired previous keys. */
json_t *iam_keys_jwks(struct dcms_iam *iam);

/* Drops a reference to a policy snapshot (frees it with the last one). NULL is a no-op. */
void iam_policyset_put(struct iam_policyset *ps);
enum dcms_err iam_policies_reload(struct dcms_iam *iam, struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* Reloads the policies when the snapshot is older than 2 s (changes made on other nodes). */
void iam_policies_refresh(struct dcms_iam *iam);

/* Hashing with the concurrency bound (DCMS_PWHASH_MAX_CONCURRENT). */
enum dcms_err iam_hash_password(struct dcms_iam *iam, const char *pw,
                                char out[crypto_pwhash_STRBYTES],
                                struct dcms_errinfo *ei) DCMS_MUST_CHECK;
enum dcms_err iam_verify_password(struct dcms_iam *iam, const char *hash, const char *pw, bool *ok,
                                  struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* Drops every cached token verification (after a revocation). */
void iam_revocation_bump(struct dcms_iam *iam);

/*
 * Signs an access token for the given identity/session. auth_time_s is when
 * the session's login happened (a refresh passes the family's creation
 * time). *token malloc'd.
 */
enum dcms_err iam_issue_access(struct dcms_iam *iam, const char *sub, const char *org,
                               unsigned roles, unsigned amr, const char *sid, int64_t auth_time_s,
                               char **token, struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* roles JSON array text → bit set (unknown names ignored). */
unsigned iam_roles_from_json_text(const char *text);
json_t *iam_roles_to_json(unsigned roles);

/* Common audit helper: appends an event inside tx. */
enum dcms_err iam_audit(struct dcms_iam *iam, struct dcms_store_tx *tx, const char *actor,
                        const char *action, const char *rtype, const char *rid, bool denied,
                        json_t *details /* stolen */, const char *client_ip, const char *request_id,
                        struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* Who is calling a service function, and where errors go. */
struct iam_call {
    struct dcms_iam *iam;
    const struct dcms_principal *p; /* NULL: anonymous */
    const char *client_ip, *request_id;
    struct dcms_errinfo *ei;
};

/*
 * The call context of a route's request (`req`: the handler's request
 * argument), for the *_http.c files, which alone see its struct.
 */
#define IAM_CALL_OF(req)                                                                           \
    ((struct iam_call){(req)->app->iam, (req)->principal, (req)->client_ip, (req)->request_id,     \
                       (req)->ei})

/*
 * The resource-level decision on identity `res` (type "identity", scoped;
 * iam_core.c). A caller who may not read the identity (identities:read)
 * gets DCMS_ERR_NOT_FOUND "identity not found", the answer for an id that
 * does not exist, and *hidden is set; then `action` (NULL: reading only) is
 * decided as usual (403 when refused). Callers pass *hidden to
 * iam_identity_hidden_audit once their store transaction has ended.
 */
enum dcms_err iam_identity_authorize(const struct iam_call *c, const struct dcms_iam_resource *res,
                                     const char *action, bool *hidden) DCMS_MUST_CHECK;
/* Audits (rate-limited) the 404 of a hidden identity; nothing when !hidden. No transaction open. */
void iam_identity_hidden_audit(const struct iam_call *c, bool hidden, const char *id,
                               const char *action);

/* ---- amr (RFC 8176, iam_core.c) ---- */

json_t *iam_amr_json(unsigned amr);
unsigned iam_amr_parse(const char *name); /* 0 when unknown */

/*
 * ---- the login throttle (iam_throttle.c): logins, TOTP and MFA routes ----
 * Failures are counted per key in login_throttle and forgotten after
 * DCMS_LOGIN_FAILURE_WINDOW_S quiet seconds. Who a failure counts against
 * depends on the client (docs/iam.md, "Lockout"):
 *   IAM_CLIENT_UNTRUSTED  no valid device token: the account's untrusted
 *                         lockout ("acct:<email>", exponential back-off past
 *                         DCMS_LOGIN_MAX_FAILURES) and the address
 *                         ("ip:<addr>": past DCMS_LOGIN_MAX_FAILURES_PER_IP
 *                         each failure slows it for DCMS_LOGIN_IP_DELAY_S);
 *   IAM_CLIENT_DEVICE     a valid device token: that token only ("dev:<id>",
 *                         back-off past DCMS_LOGIN_DEVICE_MAX_FAILURES);
 *   IAM_CLIENT_SESSION    an authenticated caller checking its own TOTP
 *                         ("totp:<identity>", back-off past
 *                         DCMS_LOGIN_MAX_FAILURES): no one else can move it.
 */
enum iam_client { IAM_CLIENT_UNTRUSTED, IAM_CLIENT_DEVICE, IAM_CLIENT_SESSION };

/* "acct:<lowercased email or id>" and "ip:<addr>" (empty without an address: no address key). */
void iam_throttle_keys(const char *account, const char *client_ip, char acct[300], char ip[80]);
/* DCMS_ERR_RATE_LIMITED (and *retry_after_s) while either key is locked ("" is no key). */
enum dcms_err iam_throttle_check(struct dcms_iam *iam, const char *key, const char *key2,
                                 int64_t *retry_after_s, struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/*
 * Counts a failure of a `kind` client: `key` is the account key (untrusted;
 * NULL when the failure names no account), the device key or the TOTP key;
 * `ip_key` is used for untrusted clients only.
 * Locks past the limits and audits auth.login_failed (and auth.lockout) in
 * one transaction; `why` is the reason recorded, `device_id` (or NULL) the
 * device token's id.
 */
enum dcms_err iam_throttle_fail(const struct iam_call *c, enum iam_client kind, const char *key,
                                const char *ip_key, const char *identity_id, const char *device_id,
                                const char *why);

/*
 * ---- device tokens (iam_device.c): the OWASP "device cookie" ----
 * "dv1.<id>.<expires>.<HMAC-SHA256>" over (identity, id, expires) under the
 * keyring's data key "iam.device_tokens"; stateless, valid
 * DCMS_LOGIN_DEVICE_TTL_S. Also sent as the cookie IAM_DEVICE_COOKIE.
 */
#define IAM_DEVICE_TOKEN_MAX 128
#define IAM_DEVICE_COOKIE "__Host-dcms_device"

/* Loads (or on the first start makes) the device token key into iam->device_key. */
enum dcms_err iam_device_open(struct dcms_iam *iam, struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* A new token for `identity_id`, valid DCMS_LOGIN_DEVICE_TTL_S from now_s. Wipe it after use. */
enum dcms_err iam_device_issue(const struct dcms_iam *iam, const char *identity_id, int64_t now_s,
                               char token[IAM_DEVICE_TOKEN_MAX]) DCMS_MUST_CHECK;
/*
 * True when `token` was issued by this deployment for `identity_id` and has
 * not expired (constant-time MAC comparison); `id` then holds its id.
 * Anything else (NULL, malformed, another identity's, tampered) is false.
 */
bool iam_device_verify(const struct dcms_iam *iam, const char *token, const char *identity_id,
                       int64_t now_s, char id[DCMS_UUID_STRLEN]);
/* Copies the value of the IAM_DEVICE_COOKIE cookie of a Cookie header into out[cap]. */
bool iam_device_cookie_find(const char *cookie_header, char *out, size_t cap);
/*
 * Copies the value of the first cookie `name` of a Cookie header (NULL: none)
 * into out[cap]; false when there is none, it is empty, or it does not fit.
 */
bool iam_cookie_find(const char *cookie_header, const char *name, char *out, size_t cap);

/* ---- amr (RFC 8176) ---- */

json_t *iam_amr_json(unsigned amr);
unsigned iam_amr_parse(const char *name); /* 0 when unknown */

/*
 * The step-up rule for every change to the credentials that protect an
 * account or that signatures rest on (iam_stepup.c). The caller must be a
 * person's session (not an API key) whose login, not a refresh, happened
 * at most DCMS_IAM_STEPUP_MAX_AGE_S ago (the token's auth_time), and, when
 * the caller has a second factor enrolled (confirmed TOTP or a passkey),
 * that login must have used it (amr "mfa"). Otherwise 403
 * reauthentication_required (DCMS_ERR_REAUTH_REQUIRED; the HTTP layer
 * audits it as a denial) with a message naming `purpose` ("registering a
 * signing key") and what to do. Call it before opening a transaction.
 */
enum dcms_err iam_require_recent_auth(const struct iam_call *c,
                                      const char *purpose) DCMS_MUST_CHECK;

#endif
