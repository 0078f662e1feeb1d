/*
 * Device tokens: the OWASP "device cookie". A successful login hands the
 * client a token proving that this client once logged in as this identity;
 * later logins that present it are throttled on the token alone (its own
 * small lockout) instead of on the account's lockout for untrusted clients,
 * so failures by anyone else cannot keep the owner out (docs/iam.md,
 * "Lockout").
 *
 *   dv1.<id>.<expires, unix seconds>.<base64url HMAC-SHA256, 43 characters>
 *
 * The MAC covers a version label, the identity id, the token id and the
 * expiry, under a key of its own: the keyring's data key "iam.device_tokens"
 * (wrapped by the active KEK like every other data key, so every node sharing
 * the store verifies every node's tokens and a KEK rotation leaves them
 * valid). Nothing about a token is stored: the id names the token's failure
 * counter in login_throttle ("dev:<id>"), which is not a secret. The identity
 * is not in the token, so a cookie does not reveal whom it belongs to; it is
 * verified against the identity the login names. Thread-safe: the key is
 * read-only after dcms_iam_open.
 */
#include <stdlib.h>

#include "dcms/app.h"
#include "dcms/config.h"
#include "dcms/keys.h"
#include "dcms/store.h"
#include "dcms/uuid.h"
#include "iam/iam_core.h"

#define DEVICE_DEK_NAME "iam.device_tokens"
#define DEVICE_PREFIX "dv1."
#define DEVICE_MAC_LABEL "dcms-device-token-v1"
#define DEVICE_MAC_B64_LEN 43 /* 32 bytes, base64url without padding */

static enum dcms_err key_load_once(struct dcms_iam *iam, struct dcms_errinfo *ei)
{
    struct dcms_store_tx *tx;
    struct dcms_dek *dek = NULL;
    enum dcms_err e = dcms_store_begin(iam->app->store, DCMS_TX_WRITE, &tx, ei);
    if (e)
        return e;
    e = dcms_keys_dek_named(iam->app->keys, tx, DEVICE_DEK_NAME, DEVICE_DEK_NAME, true, &dek, NULL,
                            ei);
    /* Like "iam.secrets": internal key material made at the first start, not a change anyone
     * asked for; the keys module audits what happens to it later (rewrap, rotation). */
    if (!e)
        memcpy(iam->device_key, dcms_dek_bytes(dek), crypto_auth_hmacsha256_KEYBYTES);
    dcms_dek_free(dek);
    return e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, ei);
}

enum dcms_err iam_device_open(struct dcms_iam *iam, struct dcms_errinfo *ei)
{
    if (!iam->app->keys)
        return dcms_err_set(ei, DCMS_ERR_INTERNAL, "IAM needs the keyring");
    iam->device_key = sodium_malloc(crypto_auth_hmacsha256_KEYBYTES);
    if (!iam->device_key)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    enum dcms_err e = key_load_once(iam, ei);
    if (e == DCMS_ERR_CONFLICT || e == DCMS_ERR_RETRY) {
        /* Another node made the key at the same moment: read the one that won. */
        dcms_errinfo_init(ei, ei->arena);
        e = key_load_once(iam, ei);
    }
    return e;
}

/* HMAC-SHA256(key, label 0 identity 0 id 0 expires) into mac. */
static void device_mac(const struct dcms_iam *iam, const char *identity_id, const char *id,
                       const char *exp, unsigned char mac[crypto_auth_hmacsha256_BYTES])
{
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, iam->device_key, crypto_auth_hmacsha256_KEYBYTES);
    const char *parts[] = {DEVICE_MAC_LABEL, identity_id, id, exp};
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
        crypto_auth_hmacsha256_update(&st, (const unsigned char *)parts[i], strlen(parts[i]) + 1);
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_memzero(&st, sizeof(st));
}

enum dcms_err iam_device_issue(const struct dcms_iam *iam, const char *identity_id, int64_t now_s,
                               char token[IAM_DEVICE_TOKEN_MAX])
{
    char id[DCMS_UUID_STRLEN], exp[24], mac64[DEVICE_MAC_B64_LEN + 1];
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    dcms_uuid_v7(id);
    snprintf(exp, sizeof(exp), "%lld", (long long)(now_s + (int64_t)iam->cfg->login_device_ttl_s));
    device_mac(iam, identity_id, id, exp, mac);
    iam_b64url_encode(mac64, mac, sizeof(mac));
    int n = snprintf(token, IAM_DEVICE_TOKEN_MAX, DEVICE_PREFIX "%s.%s.%s", id, exp, mac64);
    sodium_memzero(mac, sizeof(mac));
    sodium_memzero(mac64, sizeof(mac64));
    return n > 0 && n < IAM_DEVICE_TOKEN_MAX ? DCMS_OK : DCMS_ERR_INTERNAL;
}

bool iam_device_verify(const struct dcms_iam *iam, const char *token, const char *identity_id,
                       int64_t now_s, char id[DCMS_UUID_STRLEN])
{
    if (!token || !identity_id)
        return false;
    size_t len = strlen(token), pl = strlen(DEVICE_PREFIX);
    if (len >= IAM_DEVICE_TOKEN_MAX || strncmp(token, DEVICE_PREFIX, pl) != 0)
        return false;
    const char *p = token + pl;
    /* <uuid>.<digits>.<mac>, each part exactly as issued. */
    if (len < pl + DCMS_UUID_STRLEN || p[DCMS_UUID_STRLEN - 1] != '.')
        return false;
    char tid[DCMS_UUID_STRLEN], exp[24];
    memcpy(tid, p, DCMS_UUID_STRLEN - 1);
    tid[DCMS_UUID_STRLEN - 1] = '\0';
    if (!dcms_uuid_valid(tid))
        return false;
    p += DCMS_UUID_STRLEN;
    size_t ne = 0;
    while (p[ne] >= '0' && p[ne] <= '9' && ne < 19)
        ne++;
    if (ne == 0 || p[ne] != '.' || (p[0] == '0' && ne > 1))
        return false;
    memcpy(exp, p, ne);
    exp[ne] = '\0';
    p += ne + 1;
    unsigned char got[crypto_auth_hmacsha256_BYTES], want[crypto_auth_hmacsha256_BYTES];
    size_t glen = 0;
    if (strlen(p) != DEVICE_MAC_B64_LEN ||
        !iam_b64url_decode(got, sizeof(got), p, DEVICE_MAC_B64_LEN, &glen) || glen != sizeof(got))
        return false;
    device_mac(iam, identity_id, tid, exp, want);
    bool ok = crypto_verify_32(got, want) == 0;
    sodium_memzero(want, sizeof(want));
    sodium_memzero(got, sizeof(got));
    /* Expired, or issued for longer than the lifetime configured now (a lowered TTL counts). */
    long long e = strtoll(exp, NULL, 10);
    if (!ok || e <= now_s || e > now_s + (int64_t)iam->cfg->login_device_ttl_s)
        return false;
    memcpy(id, tid, DCMS_UUID_STRLEN);
    return true;
}

bool iam_device_cookie_find(const char *cookie, char *out, size_t cap)
{
    return iam_cookie_find(cookie, IAM_DEVICE_COOKIE, out, cap);
}

bool iam_cookie_find(const char *cookie, const char *name, char *out, size_t cap)
{
    /* Cookie: name=value; name2=value2 (RFC 6265 section 5.4); the first of ours wins. */
    size_t nl = strlen(name);
    for (const char *p = cookie; p && *p;) {
        while (*p == ' ' || *p == ';')
            p++;
        const char *end = strchr(p, ';');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
            size_t vl = n - nl - 1;
            while (vl && p[nl + 1 + vl - 1] == ' ')
                vl--;
            if (vl == 0 || vl >= cap)
                return false;
            memcpy(out, p + nl + 1, vl);
            out[vl] = '\0';
            return true;
        }
        p = end;
    }
    return false;
}
