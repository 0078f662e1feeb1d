/*
 * API keys for service identities. A key is `dcms_<key id>_<secret>`: the
 * key id (a UUID) finds the row, the secret (32 random bytes, base64url)
 * is stored only as SHA-256 and compared in constant time. A key is shown
 * once, when it is created, and carries a scope: a non-empty subset of the
 * permissions both its creator and its identity hold. A call through a key
 * needs the identity's current roles and policies to allow the action and
 * the scope to cover it (dcms_iam_authorize checks both), so a role removed
 * later also leaves the key. Keys expire (at most a year out) and can be
 * revoked. Verified keys are cached like access tokens: a hit is used only
 * while the key has not expired, the node's revocation epoch has not moved
 * (a revocation, suspension or role change here bumps it: at once) and the
 * entry was checked against the store less than DCMS_IAM_REVALIDATE_MS ago
 * (a revocation on another node).
 *
 * Only identities of kind "service" hold keys: people log in (and can add
 * a second factor); services, made by admins and normally without a
 * password, use keys. Admins (apikeys:manage) create keys; a key
 * itself, or a holder of apikeys:manage, revokes it.
 */
#include <ctype.h>
#include <pthread.h>

#include "dcms/app.h"
#include "dcms/arena.h"
#include "dcms/clock.h"
#include "dcms/config.h"
#include "dcms/crypto.h"
#include "dcms/store.h"
#include "iam/apikey_int.h"

#define KEY_PREFIX "dcms_"
#define KEY_PREFIX_LEN 5
#define SECRET_BYTES 32
#define SECRET_CHARS 43 /* base64url of 32 bytes, no padding */
#define KEY_LEN (KEY_PREFIX_LEN + 36 + 1 + SECRET_CHARS)

static struct dcms_query q_key_auth = DCMS_QUERY(
    "apikey_auth",
    "SELECT k.identity_id, k.secret_hash, k.permissions, k.expires_at, k.revoked_at, i.status, "
    "i.roles, i.organization_id FROM api_keys k JOIN identities i ON i.id = k.identity_id "
    "WHERE k.id = $1");
static struct dcms_query q_target = DCMS_QUERY(
    "apikey_target", "SELECT kind, status, roles, organization_id FROM identities WHERE id = $1");
static struct dcms_query q_key_insert = DCMS_QUERY(
    "apikey_insert", "INSERT INTO api_keys (id, identity_id, name, secret_hash, permissions, "
                     "created_by, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)");
static struct dcms_query q_key_list_all = DCMS_QUERY(
    "apikey_list_all", "SELECT id, identity_id, name, permissions, created_by, created_at, "
                       "expires_at, revoked_at FROM api_keys ORDER BY created_at DESC LIMIT 500");
static struct dcms_query q_key_list_own = DCMS_QUERY(
    "apikey_list_own", "SELECT id, identity_id, name, permissions, created_by, created_at, "
                       "expires_at, revoked_at FROM api_keys WHERE identity_id = $1 "
                       "ORDER BY created_at DESC LIMIT 500");
static struct dcms_query q_key_get =
    DCMS_QUERY("apikey_get", "SELECT identity_id, revoked_at FROM api_keys WHERE id = $1");
static struct dcms_query q_key_revoke = DCMS_QUERY(
    "apikey_revoke", "UPDATE api_keys SET revoked_at = $2, revoked_by = $3 WHERE id = $1 AND "
                     "revoked_at IS NULL");

/* ---- the verified-key cache ---- */

#define CACHE_SLOTS 256
#define CACHE_STRIPES 16
#define SCOPE_TEXT_MAX (IAM_APIKEY_MAX_PERMS * 65)

struct cache_entry {
    unsigned char hash[32];     /* SHA-256 of the whole key */
    struct dcms_principal p;    /* scope pointers unset */
    char scope[SCOPE_TEXT_MAX]; /* the actions, each NUL-terminated */
    size_t nscope, scope_len;
    int64_t checked_us;
    uint64_t epoch;
    bool used;
};

struct iam_apikey_cache {
    pthread_mutex_t mu[CACHE_STRIPES];
    struct cache_entry slots[CACHE_SLOTS];
};

static struct iam_apikey_cache *cache_get(struct dcms_iam *iam)
{
    struct iam_apikey_cache *c = atomic_load(&iam->apikey_cache);
    if (c)
        return c;
    struct iam_apikey_cache *fresh = calloc(1, sizeof(*fresh));
    if (!fresh)
        return NULL;
    for (size_t i = 0; i < CACHE_STRIPES; i++)
        pthread_mutex_init(&fresh->mu[i], NULL);
    if (atomic_compare_exchange_strong(&iam->apikey_cache, &c, fresh))
        return fresh;
    iam_apikey_cache_free(fresh); /* another thread was first */
    return c;
}

void iam_apikey_cache_free(struct iam_apikey_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < CACHE_STRIPES; i++)
        pthread_mutex_destroy(&c->mu[i]);
    sodium_memzero(c->slots, sizeof(c->slots));
    free(c);
}

/* The scope of a cache entry as arena pointers into a copy of its text. */
static bool scope_from_entry(struct dcms_arena *a, const struct cache_entry *ce,
                             struct dcms_principal *p)
{
    char *text = dcms_arena_alloc(a, ce->scope_len ? ce->scope_len : 1);
    const char **v = dcms_arena_calloc(a, ce->nscope ? ce->nscope : 1, sizeof(*v));
    if (!text || !v)
        return false;
    memcpy(text, ce->scope, ce->scope_len);
    for (size_t i = 0, off = 0; i < ce->nscope; i++) {
        v[i] = text + off;
        off += strlen(text + off) + 1;
    }
    p->scope = v;
    p->nscope = ce->nscope;
    return true;
}

static bool cache_lookup(struct dcms_iam *iam, const unsigned char h[32], struct dcms_arena *a,
                         struct dcms_principal *out)
{
    struct iam_apikey_cache *c = cache_get(iam);
    if (!c)
        return false;
    size_t slot = ((size_t)h[0] | (size_t)h[1] << 8) % CACHE_SLOTS;
    pthread_mutex_t *mu = &c->mu[slot % CACHE_STRIPES];
    int64_t mono = dcms_clock_mono_us(), now_s = dcms_clock_now_us() / 1000000;
    bool hit = false;
    pthread_mutex_lock(mu);
    const struct cache_entry *ce = &c->slots[slot];
    if (ce->used && sodium_memcmp(ce->hash, h, 32) == 0 && ce->epoch == atomic_load(&iam->epoch) &&
        ce->p.exp_s > now_s &&
        mono - ce->checked_us < (int64_t)iam->cfg->iam_revalidate_ms * 1000) {
        *out = ce->p;
        hit = scope_from_entry(a, ce, out);
    }
    pthread_mutex_unlock(mu);
    return hit;
}

static void cache_store(struct dcms_iam *iam, const unsigned char h[32], uint64_t epoch,
                        const struct dcms_principal *p)
{
    struct iam_apikey_cache *c = cache_get(iam);
    size_t len = 0;
    for (size_t i = 0; i < p->nscope; i++)
        len += strlen(p->scope[i]) + 1;
    if (!c || len > SCOPE_TEXT_MAX)
        return;
    size_t slot = ((size_t)h[0] | (size_t)h[1] << 8) % CACHE_SLOTS;
    pthread_mutex_t *mu = &c->mu[slot % CACHE_STRIPES];
    pthread_mutex_lock(mu);
    struct cache_entry *ce = &c->slots[slot];
    memcpy(ce->hash, h, 32);
    ce->p = *p;
    ce->p.scope = NULL;
    ce->p.nscope = 0;
    ce->scope_len = 0;
    for (size_t i = 0; i < p->nscope; i++) {
        size_t n = strlen(p->scope[i]) + 1;
        memcpy(ce->scope + ce->scope_len, p->scope[i], n);
        ce->scope_len += n;
    }
    ce->nscope = p->nscope;
    ce->checked_us = dcms_clock_mono_us();
    ce->epoch = epoch;
    ce->used = true;
    pthread_mutex_unlock(mu);
}

bool dcms_iam_is_api_key(const char *bearer)
{
    return strncmp(bearer, KEY_PREFIX, KEY_PREFIX_LEN) == 0;
}

static enum dcms_err unauth(struct dcms_errinfo *ei, const char *why)
{
    return dcms_err_set(ei, DCMS_ERR_UNAUTHENTICATED, "invalid API key: %s", why);
}

/*
 * The permissions JSON array → p->scope in the arena. DCMS_ERR_NOMEM, or
 * DCMS_ERR_UNAUTHENTICATED for a row without a scope (never written so).
 */
static enum dcms_err scope_of(struct dcms_arena *a, const char *text, struct dcms_principal *p,
                              struct dcms_errinfo *ei)
{
    json_t *v = text ? json_loads(text, 0, NULL) : NULL;
    size_t n = json_is_array(v) ? json_array_size(v) : 0;
    const char **s = n ? dcms_arena_calloc(a, n, sizeof(*s)) : NULL;
    enum dcms_err e = n == 0 ? unauth(ei, "the key has no scope")
                      : !s   ? dcms_err_set(ei, DCMS_ERR_NOMEM, NULL)
                             : DCMS_OK;
    for (size_t i = 0; !e && i < n; i++) {
        const char *t = json_string_value(json_array_get(v, i));
        if (!t)
            e = unauth(ei, "the key has no scope");
        else if (!(s[i] = dcms_arena_strdup(a, t)))
            e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    }
    json_decref(v);
    p->scope = e ? NULL : s;
    p->nscope = e ? 0 : n;
    return e;
}

static enum dcms_err key_principal(struct dcms_iam *iam, const char *id, const char *hash,
                                   const unsigned char whole[32], struct dcms_arena *arena,
                                   struct dcms_principal *out, struct dcms_errinfo *ei);

enum dcms_err dcms_iam_authenticate_api_key(struct dcms_iam *iam, const char *key, size_t len,
                                            struct dcms_arena *arena, struct dcms_principal *out,
                                            struct dcms_errinfo *ei)
{
    if (len != KEY_LEN || !dcms_iam_is_api_key(key) || key[KEY_PREFIX_LEN + 36] != '_')
        return unauth(ei, "malformed");
    char id[DCMS_UUID_STRLEN], hash[65];
    memcpy(id, key + KEY_PREFIX_LEN, 36);
    id[36] = '\0';
    if (!dcms_uuid_valid(id))
        return unauth(ei, "malformed");
    const char *secret = key + KEY_PREFIX_LEN + 37;
    unsigned char whole[32];
    if (dcms_digest_sha256(key, len, whole))
        return dcms_err_set(ei, DCMS_ERR_CRYPTO, NULL);
    if (cache_lookup(iam, whole, arena, out))
        return DCMS_OK;
    if (dcms_digest_sha256_hex(secret, SECRET_CHARS, hash))
        return dcms_err_set(ei, DCMS_ERR_CRYPTO, NULL);
    return key_principal(iam, id, hash, whole, arena, out, ei);
}

enum dcms_err dcms_iam_authenticate_api_key_id(struct dcms_iam *iam, const char *id,
                                               struct dcms_arena *arena, struct dcms_principal *out,
                                               struct dcms_errinfo *ei)
{
    if (!dcms_uuid_valid(id))
        return unauth(ei, "malformed");
    unsigned char whole[32];
    char tagged[8 + DCMS_UUID_STRLEN];
    int n = snprintf(tagged, sizeof(tagged), "tls-key:%s", id);
    /* Cached under a digest no key string can have (it holds no secret part). */
    if (n < 0 || dcms_digest_sha256(tagged, (size_t)n, whole))
        return dcms_err_set(ei, DCMS_ERR_CRYPTO, NULL);
    if (cache_lookup(iam, whole, arena, out))
        return DCMS_OK;
    return key_principal(iam, id, NULL, whole, arena, out, ei);
}

/*
 * The principal of key `id` from the store: `hash` (the SHA-256 hex of the
 * secret) must match unless NULL (a verified client certificate named the
 * key). Cached under `whole`.
 */
static enum dcms_err key_principal(struct dcms_iam *iam, const char *id, const char *hash,
                                   const unsigned char whole[32], struct dcms_arena *arena,
                                   struct dcms_principal *out, struct dcms_errinfo *ei)
{
    iam_policies_refresh(iam); /* as the token path: on a miss, at least once a second */
    /* Read before the store, so a revocation committed meanwhile is not cached as valid. */
    uint64_t epoch = atomic_load(&iam->epoch);
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_begin(iam->app->store, DCMS_TX_READ, &tx, ei);
    if (e)
        return e;
    e = dcms_store_exec(tx, &q_key_auth, (struct dcms_store_val[]){DCMS_VAL_TEXT(id)}, 1, &rows,
                        NULL, ei);
    dcms_store_rollback(tx);
    if (e)
        return e;
    char now[DCMS_TIME_STRLEN];
    int64_t now_us = dcms_clock_now_us(), exp_us = 0;
    dcms_time_format(now_us, now);
    const char *stored = dcms_store_rows_count(rows) == 1 ? dcms_store_rows_text(rows, 0, 1) : "";
    /* Unknown ids and wrong secrets look the same to the caller. */
    if (dcms_store_rows_count(rows) != 1 ||
        (hash && (strlen(stored) != 64 || sodium_memcmp(stored, hash, 64) != 0)))
        e = unauth(ei, "unknown key or wrong secret");
    else if (!dcms_store_rows_is_null(rows, 0, 4))
        e = unauth(ei, "the key was revoked");
    else if (dcms_time_parse(dcms_store_rows_text(rows, 0, 3), &exp_us) || exp_us <= now_us)
        e = unauth(ei, "the key expired");
    else if (strcmp(dcms_store_rows_text(rows, 0, 5), "active") != 0)
        e = unauth(ei, "its identity is not active");
    if (!e) {
        struct dcms_principal p;
        memset(&p, 0, sizeof(p));
        snprintf(p.id, sizeof(p.id), "%s", dcms_store_rows_text(rows, 0, 0));
        const char *org = dcms_store_rows_text(rows, 0, 7);
        snprintf(p.org, sizeof(p.org), "%s", org ? org : "");
        snprintf(p.api_key, sizeof(p.api_key), "%s", id);
        snprintf(p.jti, sizeof(p.jti), "%s", id);
        p.roles = iam_roles_from_json_text(dcms_store_rows_text(rows, 0, 6));
        p.amr = 0; /* a key proves no authentication method of a person */
        p.iat_s = now_us / 1000000;
        p.exp_s = exp_us / 1000000;
        if (!(e = scope_of(arena, dcms_store_rows_text(rows, 0, 2), &p, ei))) {
            cache_store(iam, whole, epoch, &p);
            *out = p;
        }
    }
    dcms_store_rows_free(rows);
    return e;
}

/* resource:verb with lowercase names, or resource:* */
static bool perm_syntax_ok(const char *s)
{
    const char *colon = strchr(s, ':');
    if (!colon || colon == s || strlen(s) > 64)
        return false;
    for (const char *p = s; p < colon; p++)
        if (!(islower((unsigned char)*p) || *p == '_'))
            return false;
    const char *verb = colon + 1;
    if (strcmp(verb, "*") == 0)
        return true;
    if (!*verb)
        return false;
    for (const char *p = verb; *p; p++)
        if (!(islower((unsigned char)*p) || *p == '_'))
            return false;
    return true;
}

static json_t *key_json(const struct dcms_store_rows *r, size_t i, int64_t now_us)
{
    json_t *perms = json_loads(dcms_store_rows_text(r, i, 3), 0, NULL);
    const char *revoked = dcms_store_rows_text(r, i, 7);
    int64_t exp = 0;
    bool expired = dcms_time_parse(dcms_store_rows_text(r, i, 6), &exp) || exp <= now_us;
    return json_pack(
        "{s:s, s:s, s:s, s:o, s:s, s:s, s:s, s:o, s:s}", "id", dcms_store_rows_text(r, i, 0),
        "identity_id", dcms_store_rows_text(r, i, 1), "name", dcms_store_rows_text(r, i, 2),
        "permissions", perms ? perms : json_array(), "created_by", dcms_store_rows_text(r, i, 4),
        "created_at", dcms_store_rows_text(r, i, 5), "expires_at", dcms_store_rows_text(r, i, 6),
        "revoked_at", revoked ? json_string(revoked) : json_null(), "status",
        revoked   ? "revoked"
        : expired ? "expired"
                  : "active");
}

enum dcms_err iam_apikey_create(const struct iam_call *c, const struct iam_apikey_in *in,
                                json_t **out)
{
    struct dcms_errinfo *ei = c->ei;
    if (iam_require_recent_auth(c, "creating an API key"))
        return ei->code;
    const char *target = in->identity_id ? in->identity_id : c->p->id;
    int64_t now_us = dcms_clock_now_us(), exp_us = 0;
    if (in->identity_id && !dcms_uuid_valid(in->identity_id))
        dcms_err_field(ei, "identity_id", "must be a UUID");
    if (in->expires_at && dcms_time_parse(in->expires_at, &exp_us))
        dcms_err_field(ei, "expires_at", "must be an RFC 3339 time");
    else if (in->expires_at && exp_us <= now_us)
        dcms_err_field(ei, "expires_at", "must be in the future");
    else if (in->expires_at && exp_us > now_us + IAM_APIKEY_MAX_TTL_S * 1000000)
        dcms_err_field(ei, "expires_at", "must be at most one year from now");
    for (size_t i = 0; i < in->nperms; i++)
        if (!perm_syntax_ok(in->perms[i]))
            dcms_err_field(ei, dcms_arena_sprintf(ei->arena, "permissions[%zu]", i),
                           "must be an action such as contracts:read or contracts:*");
    if (ei->code)
        return ei->code;

    struct dcms_store_tx *tx;
    struct dcms_store_rows *t = NULL;
    enum dcms_err e = dcms_store_begin(c->iam->app->store, DCMS_TX_READ, &tx, ei);
    if (e)
        return e;
    e = dcms_store_exec(tx, &q_target, (struct dcms_store_val[]){DCMS_VAL_TEXT(target)}, 1, &t,
                        NULL, ei);
    dcms_store_rollback(tx);
    if (e)
        return e;
    if (dcms_store_rows_count(t) != 1) {
        dcms_store_rows_free(t);
        return dcms_err_field(ei, "identity_id", "no such identity");
    }
    const char *org = dcms_store_rows_text(t, 0, 3);
    struct dcms_iam_ctx ctx = {c->iam, c->client_ip};
    struct dcms_iam_resource res = {
        .type = "identity", .id = target, .owner_id = target, .org_id = org, .scoped = true};
    e = dcms_iam_authorize(c->p, "apikeys:manage", &res, &ctx, ei);
    if (!e && strcmp(dcms_store_rows_text(t, 0, 0), "service") != 0)
        e = dcms_err_field(ei, "identity_id",
                           "API keys are for service identities (kind service); people log in");
    if (!e && strcmp(dcms_store_rows_text(t, 0, 1), "active") != 0)
        e = dcms_err_set(ei, DCMS_ERR_CONFLICT, "the identity is %s",
                         dcms_store_rows_text(t, 0, 1));
    /* The scope must be a subset of what both the creator and the key's identity may do. */
    struct dcms_principal tp = {0};
    snprintf(tp.id, sizeof(tp.id), "%s", target);
    snprintf(tp.org, sizeof(tp.org), "%s", org ? org : "");
    tp.roles = iam_roles_from_json_text(dcms_store_rows_text(t, 0, 2));
    dcms_store_rows_free(t);
    for (size_t i = 0; !e && i < in->nperms; i++) {
        struct dcms_errinfo pei;
        dcms_errinfo_init(&pei, NULL);
        const char *f = dcms_arena_sprintf(ei->arena, "permissions[%zu]", i);
        if (dcms_iam_authorize(c->p, in->perms[i], NULL, &ctx, &pei))
            dcms_err_field(ei, f, "you do not hold this permission");
        else if (dcms_iam_authorize(&tp, in->perms[i], NULL, &ctx, &pei))
            dcms_err_field(ei, f, "the identity does not hold this permission");
    }
    if (e || ei->code)
        return e ? e : ei->code;

    unsigned char raw[SECRET_BYTES];
    char id[DCMS_UUID_STRLEN], secret[SECRET_CHARS + 1], hash[65], now[DCMS_TIME_STRLEN];
    char key[KEY_LEN + 1], expires[DCMS_TIME_STRLEN];
    dcms_uuid_v7(id);
    randombytes_buf(raw, sizeof(raw));
    iam_b64url_encode(secret, raw, sizeof(raw));
    sodium_memzero(raw, sizeof(raw));
    snprintf(key, sizeof(key), KEY_PREFIX "%s_%s", id, secret);
    e = dcms_digest_sha256_hex(secret, SECRET_CHARS, hash) ? DCMS_ERR_CRYPTO : DCMS_OK;
    sodium_memzero(secret, sizeof(secret));
    dcms_time_format(now_us, now);
    dcms_time_format(exp_us, expires);
    json_t *perms = json_array();
    for (size_t i = 0; perms && i < in->nperms; i++)
        json_array_append_new(perms, json_string(in->perms[i]));
    char *perms_text = perms ? json_dumps(perms, JSON_COMPACT) : NULL;
    if (e || !perms_text) {
        e = dcms_err_set(ei, e ? e : DCMS_ERR_NOMEM, NULL);
        goto out;
    }
    if ((e = dcms_store_begin(c->iam->app->store, DCMS_TX_WRITE, &tx, ei)))
        goto out;
    e = dcms_store_exec(tx, &q_key_insert,
                        (struct dcms_store_val[]){
                            DCMS_VAL_TEXT(id), DCMS_VAL_TEXT(target), DCMS_VAL_TEXT(in->name),
                            DCMS_VAL_TEXT(hash), DCMS_VAL_TEXT(perms_text), DCMS_VAL_TEXT(c->p->id),
                            DCMS_VAL_TEXT(now), DCMS_VAL_TEXT(expires)},
                        8, NULL, NULL, ei);
    if (!e)
        e = iam_audit(c->iam, tx, c->p->id, "api_key.create", "api_key", id, false,
                      json_pack("{s:s, s:s, s:O, s:s}", "identity_id", target, "name", in->name,
                                "permissions", perms, "expires_at", expires),
                      c->client_ip, c->request_id, ei);
    e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, ei);
    if (!e) {
        *out = json_pack("{s:s, s:s, s:s, s:O, s:s, s:s, s:s, s:n, s:s, s:s}", "id", id,
                         "identity_id", target, "name", in->name, "permissions", perms,
                         "created_by", c->p->id, "created_at", now, "expires_at", expires,
                         "revoked_at", "status", "active", "key", key);
        if (!*out)
            e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    }
out:
    sodium_memzero(key, sizeof(key));
    free(perms_text);
    json_decref(perms);
    return e;
}

enum dcms_err iam_apikey_list(const struct iam_call *c, json_t **out)
{
    struct dcms_iam_ctx ctx = {c->iam, c->client_ip};
    struct dcms_errinfo pei;
    dcms_errinfo_init(&pei, NULL);
    bool all = dcms_iam_authorize(c->p, "apikeys:read", NULL, &ctx, &pei) == DCMS_OK;
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_begin(c->iam->app->store, DCMS_TX_READ, &tx, c->ei);
    if (e)
        return e;
    if (all)
        e = dcms_store_exec(tx, &q_key_list_all, NULL, 0, &rows, NULL, c->ei);
    else
        e = dcms_store_exec(tx, &q_key_list_own, (struct dcms_store_val[]){DCMS_VAL_TEXT(c->p->id)},
                            1, &rows, NULL, c->ei);
    dcms_store_rollback(tx);
    if (e)
        return e;
    json_t *items = json_array();
    int64_t now_us = dcms_clock_now_us();
    for (size_t i = 0; items && i < dcms_store_rows_count(rows); i++)
        json_array_append_new(items, key_json(rows, i, now_us));
    dcms_store_rows_free(rows);
    *out = items ? json_pack("{s:o}", "api_keys", items) : NULL;
    return *out ? DCMS_OK : dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
}

enum dcms_err iam_apikey_revoke(const struct iam_call *c, const char *id)
{
    if (!dcms_uuid_valid(id))
        return dcms_err_set(c->ei, DCMS_ERR_NOT_FOUND, "API key not found");
    char now[DCMS_TIME_STRLEN];
    dcms_time_format(dcms_clock_now_us(), now);
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_begin(c->iam->app->store, DCMS_TX_WRITE, &tx, c->ei);
    if (e)
        return e;
    e = dcms_store_exec(tx, &q_key_get, (struct dcms_store_val[]){DCMS_VAL_TEXT(id)}, 1, &rows,
                        NULL, c->ei);
    if (!e && dcms_store_rows_count(rows) != 1)
        e = dcms_err_set(c->ei, DCMS_ERR_NOT_FOUND, "API key not found");
    const char *owner = e ? NULL : dcms_store_rows_text(rows, 0, 0);
    /*
     * A key may always give itself up, and a person its identity's keys; any
     * other revocation (another key of the same service included) needs
     * apikeys:manage, within the calling key's scope.
     */
    bool self =
        !e && (c->p->api_key[0] ? strcmp(id, c->p->api_key) == 0 : strcmp(owner, c->p->id) == 0);
    bool hidden = false;
    char owner_id[DCMS_UUID_STRLEN] = "";
    if (!e && !self) {
        snprintf(owner_id, sizeof(owner_id), "%s", owner);
        struct dcms_iam_resource res = {
            .type = "identity", .id = owner, .owner_id = owner, .scoped = true};
        /* The key of an identity the caller may not see is not found, as an unknown id. */
        if ((e = iam_identity_authorize(c, &res, "apikeys:manage", &hidden)) && hidden) {
            dcms_errinfo_init(c->ei, c->ei->arena);
            e = dcms_err_set(c->ei, DCMS_ERR_NOT_FOUND, "API key not found");
        }
    }
    uint64_t n = 0;
    if (!e)
        e = dcms_store_exec(tx, &q_key_revoke,
                            (struct dcms_store_val[]){DCMS_VAL_TEXT(id), DCMS_VAL_TEXT(now),
                                                      DCMS_VAL_TEXT(c->p->id)},
                            3, NULL, &n, c->ei);
    /* Revoking a revoked key changes nothing and is not recorded again. */
    if (!e && n == 1)
        e = iam_audit(c->iam, tx, c->p->id, "api_key.revoke", "api_key", id, false,
                      json_pack("{s:s}", "identity_id", owner), c->client_ip, c->request_id, c->ei);
    dcms_store_rows_free(rows);
    e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, c->ei);
    iam_identity_hidden_audit(c, hidden, owner_id, "apikeys:manage");
    if (!e && n == 1)
        iam_revocation_bump(c->iam); /* drop cached verifications: refused from now on */
    return e;
}
