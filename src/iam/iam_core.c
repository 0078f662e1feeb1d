/*
 * The bottom layer of the IAM service (iam_core.h): the key-encryption key
 * and what it seals, the JWT signing keys in the store, the policy
 * snapshot, bounded password hashing, roles and amr, the audit helper,
 * issuing access tokens and authenticating them with a cache that honours
 * revocation. Uses nothing above it; see README.md, "Layers".
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dcms/app.h"
#include "dcms/audit.h"
#include "dcms/clock.h"
#include "dcms/config.h"
#include "dcms/crypto.h"
#include "dcms/json.h"
#include "dcms/log.h"
#include "dcms/store.h"
#include "iam/iam_core.h"

#define KEYS_MAX_AGE_US (30 * 1000000LL)
#define KEYS_RELOAD_MIN_US (1000000LL)
#define POLICIES_MAX_AGE_US (2 * 1000000LL)
#define POLICIES_MAX 1000
#define LEEWAY_S 30
#define HASH_WAIT_S 10

/* ---- amr (RFC 8176) ---- */

static const struct {
    unsigned bit;
    const char *name;
} amr_names[] = {
    {DCMS_AMR_PWD, "pwd"}, {DCMS_AMR_OTP, "otp"},   {DCMS_AMR_HWK, "hwk"},
    {DCMS_AMR_MFA, "mfa"}, {DCMS_AMR_USER, "user"},
};

json_t *iam_amr_json(unsigned amr)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < sizeof(amr_names) / sizeof(amr_names[0]); i++)
        if (amr & amr_names[i].bit)
            json_array_append_new(a, json_string(amr_names[i].name));
    return a;
}

unsigned iam_amr_parse(const char *name)
{
    for (size_t i = 0; name && i < sizeof(amr_names) / sizeof(amr_names[0]); i++)
        if (strcmp(amr_names[i].name, name) == 0)
            return amr_names[i].bit;
    return 0;
}

/* ---- small helpers ---- */

unsigned iam_roles_from_json_text(const char *text)
{
    unsigned r = 0;
    json_t *v = text ? json_loads(text, 0, NULL) : NULL;
    size_t i;
    json_t *s;
    json_array_foreach(v, i, s) if (json_is_string(s)) r |=
        dcms_iam_role_parse(json_string_value(s));
    json_decref(v);
    return r;
}

json_t *iam_roles_to_json(unsigned roles)
{
    json_t *a = json_array();
    for (unsigned bit = 1; a && bit <= DCMS_ROLE_LAST; bit <<= 1)
        if (roles & bit)
            json_array_append_new(a, json_string(dcms_iam_role_name(bit)));
    return a;
}

enum dcms_err iam_audit(struct dcms_iam *iam, struct dcms_store_tx *tx, const char *actor,
                        const char *action, const char *rtype, const char *rid, bool denied,
                        json_t *details, const char *client_ip, const char *request_id,
                        struct dcms_errinfo *ei)
{
    if (!denied) {
        struct dcms_audit_who who = {actor ? actor : "anonymous", client_ip, request_id};
        return dcms_audit_change(iam->app->audit, tx, &who, rtype, action, rid,
                                 details ? details : json_object(), ei);
    }
    struct dcms_audit_event ev = {
        .actor = actor ? actor : "anonymous",
        .action = action,
        .resource_type = rtype,
        .resource_id = rid,
        .outcome = DCMS_AUDIT_DENIED,
        .details = details,
        .client_ip = client_ip && *client_ip ? client_ip : NULL,
        .request_id = request_id,
    };
    enum dcms_err e = dcms_audit_append(iam->app->audit, tx, &ev, NULL, ei);
    json_decref(details);
    return e;
}

enum dcms_err iam_identity_authorize(const struct iam_call *c, const struct dcms_iam_resource *res,
                                     const char *action, bool *hidden)
{
    struct dcms_iam_ctx ctx = {c->iam, c->client_ip};
    /* Whoever may not read an identity must not learn that it exists. */
    if (dcms_iam_authorize(c->p, "identities:read", res, &ctx, c->ei)) {
        *hidden = true;
        dcms_errinfo_init(c->ei, c->ei->arena);
        return dcms_err_set(c->ei, DCMS_ERR_NOT_FOUND, "identity not found");
    }
    if (!action || strcmp(action, "identities:read") == 0)
        return DCMS_OK;
    return dcms_iam_authorize(c->p, action, res, &ctx, c->ei);
}

void iam_identity_hidden_audit(const struct iam_call *c, bool hidden, const char *id,
                               const char *action)
{
    if (!hidden || !c->iam->app->audit)
        return;
    json_t *d = json_pack("{s:s, s:s}", "action", action ? action : "identities:read", "reason",
                          "the caller may not see the identity");
    struct dcms_audit_event ev = {
        .actor = c->p ? c->p->id : "anonymous",
        .action = "identity.hidden",
        .resource_type = "identity",
        .resource_id = id,
        .outcome = DCMS_AUDIT_DENIED,
        .details = d,
        .client_ip = c->client_ip && *c->client_ip ? c->client_ip : NULL,
        .request_id = c->request_id,
    };
    if (d)
        dcms_audit_refusal(c->iam->app->audit, &ev);
    json_decref(d);
}

/*
 * ---- the key-encryption key ----
 * Everything that touches iam->kek is in this section (loading it is
 * iam_kek.c's, from the keyring): sealing
 * the JWT signing keys (seal / unseal_key) and small secrets (iam_seal /
 * iam_unseal).
 */

/* nonce || secretbox(pem), base64; malloc'd. */
static char *seal(struct dcms_iam *iam, const char *pem, size_t len)
{
    size_t clen = crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES + len;
    unsigned char *c = malloc(clen);
    char *out = c ? malloc(dcms_b64_encoded_len(clen)) : NULL;
    if (out) {
        randombytes_buf(c, crypto_secretbox_NONCEBYTES);
        crypto_secretbox_easy(c + crypto_secretbox_NONCEBYTES, (const unsigned char *)pem, len, c,
                              iam->kek);
        dcms_b64_encode(out, c, clen);
    }
    free(c);
    return out;
}

static enum dcms_err unseal_key(struct dcms_iam *iam, const char *sealed, struct iam_key *k)
{
    size_t slen = strlen(sealed), clen = 0;
    unsigned char *c = malloc(slen);
    if (!c)
        return DCMS_ERR_NOMEM;
    enum dcms_err e = dcms_b64_decode(c, slen, sealed, slen, &clen);
    if (e || clen < crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES) {
        free(c);
        return DCMS_ERR_CRYPTO;
    }
    size_t mlen = clen - crypto_secretbox_NONCEBYTES - crypto_secretbox_MACBYTES;
    char *pem = sodium_malloc(mlen + 1);
    e = DCMS_ERR_CRYPTO;
    if (pem && crypto_secretbox_open_easy((unsigned char *)pem, c + crypto_secretbox_NONCEBYTES,
                                          clen - crypto_secretbox_NONCEBYTES, c, iam->kek) == 0)
        e = iam_key_from_pem(k, pem, mlen);
    if (pem)
        sodium_free(pem);
    free(c);
    return e;
}

/* Small secrets (TOTP) under the same KEK, bound to their owner by the associated data. */

#define SEAL_NONCE crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define SEAL_TAG crypto_aead_xchacha20poly1305_ietf_ABYTES

char *iam_seal(struct dcms_iam *iam, const unsigned char *p, size_t n, const char *ad)
{
    size_t clen = SEAL_NONCE + n + SEAL_TAG;
    unsigned char *c = malloc(clen);
    char *out = c ? malloc(dcms_b64_encoded_len(clen)) : NULL;
    if (out) {
        randombytes_buf(c, SEAL_NONCE);
        crypto_aead_xchacha20poly1305_ietf_encrypt(
            c + SEAL_NONCE, NULL, p, n, (const unsigned char *)ad, strlen(ad), NULL, c, iam->kek);
        dcms_b64_encode(out, c, clen);
    }
    free(c);
    return out;
}

enum dcms_err iam_unseal(struct dcms_iam *iam, const char *sealed, const char *ad,
                         unsigned char *out, size_t cap, size_t *out_len)
{
    unsigned char c[512];
    size_t clen = 0;
    size_t slen = sealed ? strlen(sealed) : 0;
    if (slen == 0 || dcms_b64_decode(c, sizeof(c), sealed, slen, &clen) ||
        clen < SEAL_NONCE + SEAL_TAG || clen - SEAL_NONCE - SEAL_TAG > cap)
        return DCMS_ERR_CRYPTO;
    unsigned long long mlen = 0;
    int rc = crypto_aead_xchacha20poly1305_ietf_decrypt(
        out, &mlen, NULL, c + SEAL_NONCE, clen - SEAL_NONCE, (const unsigned char *)ad, strlen(ad),
        c, iam->kek);
    *out_len = (size_t)mlen;
    return rc == 0 ? DCMS_OK : DCMS_ERR_CRYPTO;
}

/* ---- signing keys ---- */

static struct dcms_query q_keys_load =
    DCMS_QUERY("iam_keys_load", "SELECT kid, private_sealed, status, retire_at FROM jwt_keys "
                                "WHERE status IN ('current', 'previous') ORDER BY created_at DESC "
                                "LIMIT 16");
static struct dcms_query q_key_insert = DCMS_QUERY(
    "iam_key_insert", "INSERT INTO jwt_keys (kid, alg, public_x, public_y, private_sealed, status, "
                      "created_at) VALUES ($1, 'ES256', $2, $3, $4, 'current', $5)");
static struct dcms_query q_keys_retire = DCMS_QUERY(
    "iam_keys_retire",
    "UPDATE jwt_keys SET status = 'retired' WHERE status = 'previous' AND retire_at <= $1");
static struct dcms_query q_key_demote =
    DCMS_QUERY("iam_key_demote",
               "UPDATE jwt_keys SET status = 'previous', retire_at = $1 WHERE status = 'current'");

struct iam_keyset *iam_keys_get(struct dcms_iam *iam)
{
    pthread_mutex_lock(&iam->keys_mu);
    struct iam_keyset *ks = iam->keys;
    if (ks)
        atomic_fetch_add(&ks->refs, 1);
    pthread_mutex_unlock(&iam->keys_mu);
    return ks;
}

void iam_keys_put(struct iam_keyset *ks)
{
    if (!ks || atomic_fetch_sub(&ks->refs, 1) != 1)
        return;
    for (size_t i = 0; i < ks->n; i++)
        iam_key_release(&ks->keys[i]);
    free(ks);
}

static enum dcms_err keys_load_tx(struct dcms_iam *iam, struct dcms_store_tx *tx,
                                  struct iam_keyset **out, struct dcms_errinfo *ei)
{
    struct dcms_store_rows *rows;
    enum dcms_err e = dcms_store_exec(tx, &q_keys_load, NULL, 0, &rows, NULL, ei);
    if (e)
        return e;
    struct iam_keyset *ks = calloc(1, sizeof(*ks));
    if (!ks) {
        dcms_store_rows_free(rows);
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    }
    atomic_init(&ks->refs, 1);
    ks->loaded_us = dcms_clock_mono_us();
    int64_t now = dcms_clock_now_us();
    for (size_t i = 0; i < dcms_store_rows_count(rows) && ks->n < 16; i++) {
        struct iam_key *k = &ks->keys[ks->n];
        const char *retire = dcms_store_rows_text(rows, i, 3);
        int64_t retire_us = 0;
        if (retire && dcms_time_parse(retire, &retire_us) == DCMS_OK && retire_us <= now)
            continue; /* its tokens have all expired */
        if (unseal_key(iam, dcms_store_rows_text(rows, i, 1), k) ||
            strcmp(k->kid, dcms_store_rows_text(rows, i, 0)) != 0) {
            iam_key_release(k);
            DCMS_LOG(DCMS_LOG_ERROR, "iam",
                     "cannot unseal JWT key %s: is DCMS_IAM_KEK_FILE the one this store was "
                     "created with?",
                     dcms_store_rows_text(rows, i, 0));
            continue;
        }
        k->current = strcmp(dcms_store_rows_text(rows, i, 2), "current") == 0;
        k->retire_us = retire_us;
        ks->n++;
    }
    dcms_store_rows_free(rows);
    *out = ks;
    return DCMS_OK;
}

static void keys_swap(struct dcms_iam *iam, struct iam_keyset *ks)
{
    pthread_mutex_lock(&iam->keys_mu);
    struct iam_keyset *old = iam->keys;
    iam->keys = ks;
    pthread_mutex_unlock(&iam->keys_mu);
    iam_keys_put(old);
}

enum dcms_err iam_keys_reload(struct dcms_iam *iam, struct dcms_errinfo *ei)
{
    struct dcms_store_tx *tx;
    struct iam_keyset *ks = NULL;
    enum dcms_err e = dcms_store_begin(iam->app->store, DCMS_TX_READ, &tx, ei);
    if (e)
        return e;
    e = keys_load_tx(iam, tx, &ks, ei);
    dcms_store_rollback(tx);
    if (!e)
        keys_swap(iam, ks);
    return e;
}

/* Inserts a new current key inside tx; *kid_out receives its kid. */
static enum dcms_err key_insert(struct dcms_iam *iam, struct dcms_store_tx *tx, char kid_out[48],
                                struct dcms_errinfo *ei)
{
    struct iam_key k;
    if (iam_key_generate(&k))
        return dcms_err_set(ei, DCMS_ERR_CRYPTO, NULL);
    char *pem = NULL;
    size_t pemlen = 0;
    enum dcms_err e = iam_key_to_pem(&k, &pem, &pemlen);
    char *sealed = e ? NULL : seal(iam, pem, pemlen);
    if (pem)
        sodium_free(pem);
    if (!sealed) {
        iam_key_release(&k);
        return dcms_err_set(ei, e ? e : DCMS_ERR_NOMEM, NULL);
    }
    char now[DCMS_TIME_STRLEN];
    dcms_time_format(dcms_clock_now_us(), now);
    e = dcms_store_exec(tx, &q_key_insert,
                        (struct dcms_store_val[]){DCMS_VAL_TEXT(k.kid), DCMS_VAL_TEXT(k.x),
                                                  DCMS_VAL_TEXT(k.y), DCMS_VAL_TEXT(sealed),
                                                  DCMS_VAL_TEXT(now)},
                        5, NULL, NULL, ei);
    memcpy(kid_out, k.kid, sizeof(k.kid));
    free(sealed);
    iam_key_release(&k);
    return e;
}

enum dcms_err iam_keys_ensure(struct dcms_iam *iam, struct dcms_errinfo *ei)
{
    enum dcms_err e = iam_keys_reload(iam, ei);
    if (e)
        return e;
    struct iam_keyset *ks = iam_keys_get(iam);
    bool have = false;
    for (size_t i = 0; i < ks->n; i++)
        have |= ks->keys[i].current;
    iam_keys_put(ks);
    if (have)
        return DCMS_OK;
    struct dcms_store_tx *tx;
    if ((e = dcms_store_begin(iam->app->store, DCMS_TX_WRITE, &tx, ei)))
        return e;
    char kid[48];
    e = key_insert(iam, tx, kid, ei);
    if (!e)
        e = iam_audit(iam, tx, "system", "iam.key_create", "jwt_key", kid, false, NULL, NULL, NULL,
                      ei);
    e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, ei);
    if (e == DCMS_ERR_CONFLICT) /* another node created it first */
        dcms_errinfo_init(ei, NULL), e = DCMS_OK;
    return e ? e : iam_keys_reload(iam, ei);
}

enum dcms_err iam_keys_rotate(struct dcms_iam *iam, const struct dcms_principal *by,
                              const char *client_ip, const char *request_id, json_t **out,
                              struct dcms_errinfo *ei)
{
    int64_t now = dcms_clock_now_us();
    char now_s[DCMS_TIME_STRLEN], retire_s[DCMS_TIME_STRLEN];
    dcms_time_format(now, now_s);
    /* Tokens signed by the old key live at most the token lifetime (plus leeway). */
    dcms_time_format(now + ((int64_t)iam->cfg->jwt_ttl_s + LEEWAY_S) * 1000000, retire_s);
    struct dcms_store_tx *tx;
    enum dcms_err e = dcms_store_begin(iam->app->store, DCMS_TX_WRITE, &tx, ei);
    if (e)
        return e;
    char kid[48];
    e = dcms_store_exec(tx, &q_keys_retire, (struct dcms_store_val[]){DCMS_VAL_TEXT(now_s)}, 1,
                        NULL, NULL, ei);
    if (!e)
        e = dcms_store_exec(tx, &q_key_demote, (struct dcms_store_val[]){DCMS_VAL_TEXT(retire_s)},
                            1, NULL, NULL, ei);
    if (!e)
        e = key_insert(iam, tx, kid, ei);
    if (!e)
        e = iam_audit(iam, tx, by->id, "iam.key_rotate", "jwt_key", kid, false,
                      json_pack("{s:s}", "previous_retire_at", retire_s), client_ip, request_id,
                      ei);
    e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, ei);
    if (e)
        return e;
    if ((e = iam_keys_reload(iam, ei)))
        return e;
    json_t *jwks = iam_keys_jwks(iam);
    *out = json_pack("{s:s, s:o}", "kid", kid, "keys", json_incref(json_object_get(jwks, "keys")));
    json_decref(jwks);
    return *out ? DCMS_OK : dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
}

json_t *iam_keys_jwks(struct dcms_iam *iam)
{
    struct iam_keyset *ks = iam_keys_get(iam);
    json_t *keys = json_array();
    int64_t now = dcms_clock_now_us();
    for (size_t i = 0; ks && i < ks->n; i++)
        if (ks->keys[i].current || ks->keys[i].retire_us > now)
            json_array_append_new(keys, iam_key_jwk(&ks->keys[i]));
    iam_keys_put(ks);
    return json_pack("{s:o}", "keys", keys);
}

/* ---- policies ---- */

static struct dcms_query q_policies_load = DCMS_QUERY(
    "iam_policies_load", "SELECT id, document FROM policies ORDER BY created_at LIMIT 1000");

enum dcms_err iam_policies_reload(struct dcms_iam *iam, struct dcms_errinfo *ei)
{
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows;
    enum dcms_err e = dcms_store_begin(iam->app->store, DCMS_TX_READ, &tx, ei);
    if (e)
        return e;
    e = dcms_store_exec(tx, &q_policies_load, NULL, 0, &rows, NULL, ei);
    dcms_store_rollback(tx);
    if (e)
        return e;
    struct iam_policyset *ps = calloc(1, sizeof(*ps));
    size_t n = dcms_store_rows_count(rows);
    if (ps)
        ps->p = calloc(n ? n : 1, sizeof(*ps->p));
    if (!ps || !ps->p) {
        free(ps);
        dcms_store_rows_free(rows);
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    }
    atomic_init(&ps->refs, 1);
    ps->loaded_us = dcms_clock_mono_us();
    for (size_t i = 0; i < n; i++) {
        json_t *doc = json_loads(dcms_store_rows_text(rows, i, 1), 0, NULL);
        struct dcms_errinfo pei;
        dcms_errinfo_init(&pei, NULL);
        struct iam_policy *p = &ps->p[ps->n];
        if (iam_policy_from_json(doc, p, &pei) == DCMS_OK) {
            snprintf(p->id, sizeof(p->id), "%s", dcms_store_rows_text(rows, i, 0));
            ps->n++;
        } else {
            iam_policy_release(p);
        }
        json_decref(doc);
    }
    dcms_store_rows_free(rows);
    pthread_mutex_lock(&iam->pol_mu);
    struct iam_policyset *old = iam->pols;
    iam->pols = ps;
    pthread_mutex_unlock(&iam->pol_mu);
    iam_policyset_put(old);
    return DCMS_OK;
}

/* Policies created on other nodes show up within POLICIES_MAX_AGE_US. */
void iam_policies_refresh(struct dcms_iam *iam)
{
    pthread_mutex_lock(&iam->pol_mu);
    bool stale = !iam->pols || dcms_clock_mono_us() - iam->pols->loaded_us > POLICIES_MAX_AGE_US;
    if (stale && iam->pols)
        iam->pols->loaded_us = dcms_clock_mono_us(); /* one refresher at a time */
    pthread_mutex_unlock(&iam->pol_mu);
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    if (stale && iam_policies_reload(iam, &ei))
        DCMS_LOG(DCMS_LOG_WARN, "iam", "cannot reload policies: %s", ei.message);
}

/* ---- passwords with a bound on concurrent hashes ---- */

static enum dcms_err hash_slot(struct dcms_iam *iam, struct dcms_errinfo *ei)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += HASH_WAIT_S;
    while (sem_timedwait(&iam->hash_slots, &ts) != 0) {
        if (errno != EINTR)
            return dcms_err_set(ei, DCMS_ERR_RATE_LIMITED, "too many logins in progress; retry");
    }
    return DCMS_OK;
}

enum dcms_err iam_hash_password(struct dcms_iam *iam, const char *pw,
                                char out[crypto_pwhash_STRBYTES], struct dcms_errinfo *ei)
{
    enum dcms_err e = hash_slot(iam, ei);
    if (e)
        return e;
    e = iam_password_hash(pw, iam->cfg->pwhash_opslimit,
                          (size_t)iam->cfg->pwhash_memlimit_kib * 1024, out);
    sem_post(&iam->hash_slots);
    return e ? dcms_err_set(ei, e, "cannot hash the password") : DCMS_OK;
}

enum dcms_err iam_verify_password(struct dcms_iam *iam, const char *hash, const char *pw, bool *ok,
                                  struct dcms_errinfo *ei)
{
    enum dcms_err e = hash_slot(iam, ei);
    if (e)
        return e;
    /* Unknown accounts are checked against a dummy hash, so timing does not tell them apart. */
    *ok = iam_password_verify(hash ? hash : iam->dummy_hash, pw) && hash != NULL;
    sem_post(&iam->hash_slots);
    return DCMS_OK;
}

/* ---- access tokens ---- */

enum dcms_err iam_issue_access(struct dcms_iam *iam, const char *sub, const char *org,
                               unsigned roles, unsigned amr, const char *sid, int64_t auth_time_s,
                               char **token, struct dcms_errinfo *ei)
{
    struct iam_keyset *ks = iam_keys_get(iam);
    if (ks && dcms_clock_mono_us() - ks->loaded_us > KEYS_MAX_AGE_US) {
        /* Another node may have rotated; pick up its current key. */
        iam_keys_put(ks);
        struct dcms_errinfo rei;
        dcms_errinfo_init(&rei, NULL);
        if (iam_keys_reload(iam, &rei))
            DCMS_LOG(DCMS_LOG_WARN, "iam", "cannot reload JWT keys: %s", rei.message);
        ks = iam_keys_get(iam);
    }
    const struct iam_key *k = NULL;
    for (size_t i = 0; ks && i < ks->n && !k; i++)
        if (ks->keys[i].current)
            k = &ks->keys[i];
    if (!k) {
        iam_keys_put(ks);
        return dcms_err_set(ei, DCMS_ERR_INTERNAL, "no current signing key");
    }
    char jti[DCMS_UUID_STRLEN];
    dcms_uuid_v7(jti);
    json_int_t now = dcms_clock_now_us() / 1000000;
    json_t *amrs = iam_amr_json(amr);
    json_t *c =
        json_pack("{s:s, s:s, s:s, s:o, s:o, s:I, s:I, s:s, s:o, s:s, s:I}", "iss",
                  iam->cfg->jwt_issuer, "aud", iam->cfg->jwt_audience, "sub", sub, "roles",
                  iam_roles_to_json(roles), "org", org && *org ? json_string(org) : json_null(),
                  "iat", now, "exp", now + (json_int_t)iam->cfg->jwt_ttl_s, "jti", jti, "amr", amrs,
                  "sid", sid, "auth_time", (json_int_t)auth_time_s);
    enum dcms_err e = c ? iam_jwt_sign(k, c, token) : DCMS_ERR_NOMEM;
    json_decref(c);
    iam_keys_put(ks);
    return e ? dcms_err_set(ei, e, NULL) : DCMS_OK;
}

struct lookup_ctx {
    struct iam_keyset *ks;
    bool missing;
};

static const struct iam_key *lookup_kid(void *ctx, const char *kid)
{
    struct lookup_ctx *l = ctx;
    for (size_t i = 0; l->ks && i < l->ks->n; i++)
        if (strcmp(l->ks->keys[i].kid, kid) == 0)
            return &l->ks->keys[i];
    l->missing = true;
    return NULL;
}

static struct dcms_query q_session_check = DCMS_QUERY(
    "iam_session_check", "SELECT f.revoked_at, f.expires_at, i.status, i.roles, i.organization_id "
                         "FROM session_families f JOIN identities i ON i.id = f.identity_id "
                         "WHERE f.id = $1 AND f.identity_id = $2");

/*
 * The session must be live and its identity active. The identity's roles
 * and organization are read here too and replace the token's claims, so a
 * role or organization change made on any node reaches every token within
 * one revalidation (DCMS_IAM_REVALIDATE_MS; at once on the node that made
 * it, which bumps the epoch). The claims only say what held at issue time.
 */
static enum dcms_err session_check(struct dcms_iam *iam, struct dcms_principal *p,
                                   struct dcms_errinfo *ei)
{
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_begin(iam->app->store, DCMS_TX_READ, &tx, ei);
    if (e)
        return e;
    e = dcms_store_exec(tx, &q_session_check,
                        (struct dcms_store_val[]){DCMS_VAL_TEXT(p->sid), DCMS_VAL_TEXT(p->id)}, 2,
                        &rows, NULL, ei);
    dcms_store_rollback(tx);
    if (e)
        return e;
    bool ok = dcms_store_rows_count(rows) == 1 && dcms_store_rows_is_null(rows, 0, 0) &&
              strcmp(dcms_store_rows_text(rows, 0, 2), "active") == 0;
    if (ok) {
        const char *org = dcms_store_rows_text(rows, 0, 4);
        p->roles = iam_roles_from_json_text(dcms_store_rows_text(rows, 0, 3));
        snprintf(p->org, sizeof(p->org), "%s", org ? org : "");
    }
    dcms_store_rows_free(rows);
    return ok ? DCMS_OK
              : dcms_err_set(ei, DCMS_ERR_UNAUTHENTICATED,
                             "invalid access token: session revoked or identity not active");
}

void iam_revocation_bump(struct dcms_iam *iam)
{
    atomic_fetch_add(&iam->epoch, 1);
}

enum dcms_err dcms_iam_authenticate(struct dcms_iam *iam, const char *token, size_t len,
                                    struct dcms_principal *out, struct dcms_errinfo *ei)
{
    unsigned char h[32];
    if (len == 0 || len > 8192 || dcms_digest_sha256(token, len, h))
        return dcms_err_set(ei, DCMS_ERR_UNAUTHENTICATED, "invalid access token: bad length");
    size_t slot = ((size_t)h[0] | (size_t)h[1] << 8 | (size_t)h[2] << 16) % IAM_CACHE_SLOTS;
    pthread_mutex_t *mu = &iam->cache_mu[slot % IAM_CACHE_STRIPES];
    int64_t now_us = dcms_clock_now_us(), mono = dcms_clock_mono_us();
    uint64_t epoch = atomic_load(&iam->epoch);
    int64_t revalidate_us = (int64_t)iam->cfg->iam_revalidate_ms * 1000;
    pthread_mutex_lock(mu);
    struct iam_cache_entry *c = &iam->cache[slot];
    if (c->used && sodium_memcmp(c->hash, h, 32) == 0 && c->epoch == epoch &&
        c->p.exp_s + LEEWAY_S > now_us / 1000000 && mono - c->checked_us < revalidate_us) {
        *out = c->p;
        pthread_mutex_unlock(mu);
        return DCMS_OK;
    }
    pthread_mutex_unlock(mu);

    struct iam_jwt_expect x = {iam->cfg->jwt_issuer, iam->cfg->jwt_audience, now_us / 1000000,
                               LEEWAY_S};
    struct lookup_ctx l = {iam_keys_get(iam), false};
    json_t *claims = NULL;
    enum dcms_err e = iam_jwt_verify(token, len, lookup_kid, &l, &x, &claims, ei);
    if (e && l.missing) {
        /* Maybe another node rotated: reload at most once a second, then retry. */
        bool reload = false;
        pthread_mutex_lock(&iam->keys_mu);
        if (mono - iam->keys_reload_us > KEYS_RELOAD_MIN_US) {
            iam->keys_reload_us = mono;
            reload = true;
        }
        pthread_mutex_unlock(&iam->keys_mu);
        struct dcms_errinfo rei;
        dcms_errinfo_init(&rei, NULL);
        if (reload && iam_keys_reload(iam, &rei) == DCMS_OK) {
            iam_keys_put(l.ks);
            l.ks = iam_keys_get(iam);
            l.missing = false;
            dcms_errinfo_init(ei, ei->arena);
            e = iam_jwt_verify(token, len, lookup_kid, &l, &x, &claims, ei);
        }
    }
    iam_keys_put(l.ks);
    if (e)
        return e;
    struct dcms_principal p;
    e = iam_claims_principal(claims, &p, ei);
    json_decref(claims);
    if (e)
        return e;
    if ((e = session_check(iam, &p, ei)))
        return e;
    pthread_mutex_lock(mu);
    memcpy(c->hash, h, 32);
    c->p = p;
    c->checked_us = mono;
    c->epoch = epoch;
    c->used = true;
    pthread_mutex_unlock(mu);
    *out = p;
    iam_policies_refresh(iam);
    return DCMS_OK;
}
