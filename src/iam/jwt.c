/*
 * ES256 JSON Web Tokens written by hand over OpenSSL 3: base64url, P-256
 * keys (RFC 7638 thumbprints as kid), JWS signing (DER signature → raw
 * r||s) and strict verification. Nothing here touches the store.
 */
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/pem.h>

#include "dcms/crypto.h"
#include "dcms/json.h"
#include "iam/iam_core.h"

#define JWT_MAX_BYTES 8192

static const char b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t iam_b64url_len(size_t n)
{
    return (n * 4 + 2) / 3 + 1;
}

void iam_b64url_encode(char *out, const void *p, size_t n)
{
    const unsigned char *s = p;
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        unsigned v = (unsigned)s[i] << 16 | (unsigned)s[i + 1] << 8 | s[i + 2];
        out[o++] = b64url_alphabet[v >> 18 & 63];
        out[o++] = b64url_alphabet[v >> 12 & 63];
        out[o++] = b64url_alphabet[v >> 6 & 63];
        out[o++] = b64url_alphabet[v & 63];
    }
    if (n - i == 1) {
        unsigned v = (unsigned)s[i] << 16;
        out[o++] = b64url_alphabet[v >> 18 & 63];
        out[o++] = b64url_alphabet[v >> 12 & 63];
    } else if (n - i == 2) {
        unsigned v = (unsigned)s[i] << 16 | (unsigned)s[i + 1] << 8;
        out[o++] = b64url_alphabet[v >> 18 & 63];
        out[o++] = b64url_alphabet[v >> 12 & 63];
        out[o++] = b64url_alphabet[v >> 6 & 63];
    }
    out[o] = '\0';
}

static int b64url_val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

bool iam_b64url_decode(unsigned char *out, size_t cap, const char *s, size_t len, size_t *out_len)
{
    if (len % 4 == 1)
        return false;
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_val(s[i]);
        if (v < 0)
            return false;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= cap)
                return false;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0) /* non-canonical trailing bits */
        return false;
    *out_len = o;
    return true;
}

/* Fills x, y and the RFC 7638 thumbprint kid from k->pkey. */
static enum dcms_err key_fill_public(struct iam_key *k)
{
    unsigned char pt[65];
    size_t ptlen = 0;
    if (EVP_PKEY_get_octet_string_param(k->pkey, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt), &ptlen) !=
            1 ||
        ptlen != 65 || pt[0] != 0x04)
        return DCMS_ERR_CRYPTO;
    iam_b64url_encode(k->x, pt + 1, 32);
    iam_b64url_encode(k->y, pt + 33, 32);
    char canon[200];
    int n = snprintf(canon, sizeof(canon),
                     "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}", k->x, k->y);
    unsigned char h[DCMS_SHA256_LEN];
    if (n < 0 || (size_t)n >= sizeof(canon) || dcms_digest_sha256(canon, (size_t)n, h))
        return DCMS_ERR_CRYPTO;
    iam_b64url_encode(k->kid, h, sizeof(h));
    return DCMS_OK;
}

enum dcms_err iam_key_generate(struct iam_key *k)
{
    memset(k, 0, sizeof(*k));
    k->pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (!k->pkey)
        return DCMS_ERR_CRYPTO;
    enum dcms_err e = key_fill_public(k);
    if (e)
        iam_key_release(k);
    return e;
}

enum dcms_err iam_key_from_pem(struct iam_key *k, const char *pem, size_t len)
{
    memset(k, 0, sizeof(*k));
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    if (!b)
        return DCMS_ERR_NOMEM;
    k->pkey = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    if (!k->pkey)
        return DCMS_ERR_CRYPTO;
    char group[32];
    size_t glen;
    if (EVP_PKEY_get_utf8_string_param(k->pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                       &glen) != 1 ||
        (strcmp(group, "prime256v1") != 0 && strcmp(group, "P-256") != 0)) {
        iam_key_release(k);
        return DCMS_ERR_CRYPTO;
    }
    enum dcms_err e = key_fill_public(k);
    if (e)
        iam_key_release(k);
    return e;
}

enum dcms_err iam_key_to_pem(const struct iam_key *k, char **pem, size_t *len)
{
    BIO *b = BIO_new(BIO_s_secmem());
    if (!b)
        return DCMS_ERR_NOMEM;
    enum dcms_err e = DCMS_ERR_CRYPTO;
    if (PEM_write_bio_PrivateKey(b, k->pkey, NULL, NULL, 0, NULL, NULL) == 1) {
        char *data;
        long n = BIO_get_mem_data(b, &data);
        char *copy = n > 0 ? sodium_malloc((size_t)n + 1) : NULL;
        if (copy) {
            memcpy(copy, data, (size_t)n);
            copy[n] = '\0';
            *pem = copy;
            *len = (size_t)n;
            e = DCMS_OK;
        } else {
            e = DCMS_ERR_NOMEM;
        }
    }
    BIO_free(b);
    return e;
}

void iam_key_release(struct iam_key *k)
{
    EVP_PKEY_free(k->pkey);
    k->pkey = NULL;
}

json_t *iam_key_jwk(const struct iam_key *k)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "kty", "EC", "crv", "P-256", "x", k->x,
                     "y", k->y, "kid", k->kid, "alg", "ES256", "use", "sig");
}

/* base64url of a JSON value's compact encoding, malloc'd. */
static char *b64url_json(const json_t *v)
{
    size_t n;
    char *s = dcms_json_dump(v, &n);
    if (!s)
        return NULL;
    char *out = malloc(iam_b64url_len(n));
    if (out)
        iam_b64url_encode(out, s, n);
    free(s);
    return out;
}

enum dcms_err iam_jwt_sign(const struct iam_key *k, const json_t *claims, char **out)
{
    json_t *hdr = json_pack("{s:s, s:s, s:s}", "alg", "ES256", "typ", "JWT", "kid", k->kid);
    char *h = hdr ? b64url_json(hdr) : NULL;
    json_decref(hdr);
    char *p = b64url_json(claims);
    enum dcms_err e = DCMS_ERR_NOMEM;
    char *tok = NULL;
    EVP_MD_CTX *md = NULL;
    ECDSA_SIG *sig = NULL;
    if (!h || !p)
        goto out;
    size_t hl = strlen(h), pl = strlen(p);
    tok = malloc(hl + pl + 2 + iam_b64url_len(64));
    if (!tok)
        goto out;
    memcpy(tok, h, hl);
    tok[hl] = '.';
    memcpy(tok + hl + 1, p, pl);
    size_t signed_len = hl + 1 + pl;
    unsigned char der[80];
    size_t derlen = sizeof(der);
    e = DCMS_ERR_CRYPTO;
    md = EVP_MD_CTX_new();
    if (!md || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, k->pkey) != 1 ||
        EVP_DigestSign(md, der, &derlen, (const unsigned char *)tok, signed_len) != 1)
        goto out;
    const unsigned char *dp = der;
    sig = d2i_ECDSA_SIG(NULL, &dp, (long)derlen);
    if (!sig)
        goto out;
    unsigned char raw[64];
    if (BN_bn2binpad(ECDSA_SIG_get0_r(sig), raw, 32) != 32 ||
        BN_bn2binpad(ECDSA_SIG_get0_s(sig), raw + 32, 32) != 32)
        goto out;
    tok[signed_len] = '.';
    iam_b64url_encode(tok + signed_len + 1, raw, sizeof(raw));
    *out = tok;
    tok = NULL;
    e = DCMS_OK;
out:
    ECDSA_SIG_free(sig);
    EVP_MD_CTX_free(md);
    free(tok);
    free(h);
    free(p);
    return e;
}

static bool verify_es256(EVP_PKEY *pkey, const char *msg, size_t len, const unsigned char raw[64])
{
    ECDSA_SIG *sig = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(raw, 32, NULL), *s = BN_bin2bn(raw + 32, 32, NULL);
    bool ok = false;
    unsigned char *der = NULL;
    EVP_MD_CTX *md = NULL;
    if (!sig || !r || !s || ECDSA_SIG_set0(sig, r, s) != 1) {
        BN_free(r);
        BN_free(s);
        goto out;
    }
    int derlen = i2d_ECDSA_SIG(sig, &der);
    md = EVP_MD_CTX_new();
    if (derlen <= 0 || !md || EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pkey) != 1)
        goto out;
    ok = EVP_DigestVerify(md, der, (size_t)derlen, (const unsigned char *)msg, len) == 1;
out:
    OPENSSL_free(der);
    EVP_MD_CTX_free(md);
    ECDSA_SIG_free(sig);
    return ok;
}

static enum dcms_err unauth(struct dcms_errinfo *ei, const char *why)
{
    return dcms_err_set(ei, DCMS_ERR_UNAUTHENTICATED, "invalid access token: %s", why);
}

/* Decodes a base64url JSON object part. */
static json_t *decode_part(const char *s, size_t len)
{
    unsigned char buf[JWT_MAX_BYTES];
    size_t n;
    if (!iam_b64url_decode(buf, sizeof(buf), s, len, &n))
        return NULL;
    json_t *v = NULL;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    if (dcms_json_parse((struct dcms_str){(const char *)buf, n}, 0, &v, &ei))
        return NULL;
    if (!json_is_object(v)) {
        json_decref(v);
        return NULL;
    }
    return v;
}

static bool aud_matches(const json_t *aud, const char *want)
{
    if (json_is_string(aud))
        return strcmp(json_string_value(aud), want) == 0;
    if (!json_is_array(aud))
        return false;
    size_t i;
    const json_t *v;
    json_array_foreach(aud, i, v) if (json_is_string(v) &&
                                      strcmp(json_string_value(v), want) == 0) return true;
    return false;
}

enum dcms_err iam_jwt_verify(const char *tok, size_t len, iam_key_lookup_fn *lookup, void *ctx,
                             const struct iam_jwt_expect *x, json_t **claims,
                             struct dcms_errinfo *ei)
{
    if (len == 0 || len > JWT_MAX_BYTES)
        return unauth(ei, "bad length");
    const char *d1 = memchr(tok, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - tok)) : NULL;
    if (!d1 || !d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - tok)))
        return unauth(ei, "not a compact JWS");
    json_t *hdr = decode_part(tok, (size_t)(d1 - tok));
    if (!hdr)
        return unauth(ei, "bad header");
    const json_t *alg = json_object_get(hdr, "alg"), *typ = json_object_get(hdr, "typ"),
                 *kid = json_object_get(hdr, "kid");
    size_t known = (alg != NULL) + (typ != NULL) + (kid != NULL);
    enum dcms_err e = DCMS_OK;
    if (!json_is_string(alg) || strcmp(json_string_value(alg), "ES256") != 0)
        e = unauth(ei, "alg must be ES256");
    else if (typ && (!json_is_string(typ) || strcmp(json_string_value(typ), "JWT") != 0))
        e = unauth(ei, "typ must be JWT");
    else if (json_object_size(hdr) != known)
        e = unauth(ei, "unexpected header parameters");
    else if (!json_is_string(kid))
        e = unauth(ei, "kid missing");
    const struct iam_key *k = e ? NULL : lookup(ctx, json_string_value(kid));
    json_decref(hdr);
    if (e)
        return e;
    if (!k)
        return unauth(ei, "unknown kid");
    unsigned char raw[64];
    size_t rawlen;
    if (!iam_b64url_decode(raw, sizeof(raw), d2 + 1, len - (size_t)(d2 + 1 - tok), &rawlen) ||
        rawlen != 64)
        return unauth(ei, "bad signature");
    if (!verify_es256(k->pkey, tok, (size_t)(d2 - tok), raw))
        return unauth(ei, "bad signature");
    json_t *c = decode_part(d1 + 1, (size_t)(d2 - d1 - 1));
    if (!c)
        return unauth(ei, "bad payload");
    const json_t *iss = json_object_get(c, "iss"), *aud = json_object_get(c, "aud"),
                 *exp = json_object_get(c, "exp"), *nbf = json_object_get(c, "nbf"),
                 *iat = json_object_get(c, "iat");
    if (!json_is_string(iss) || strcmp(json_string_value(iss), x->iss) != 0)
        e = unauth(ei, "wrong issuer");
    else if (!aud_matches(aud, x->aud))
        e = unauth(ei, "wrong audience");
    else if (!json_is_integer(exp) || json_integer_value(exp) + x->leeway_s <= x->now_s)
        e = unauth(ei, "expired");
    else if (nbf && (!json_is_integer(nbf) || json_integer_value(nbf) > x->now_s + x->leeway_s))
        e = unauth(ei, "not yet valid");
    else if (!json_is_integer(iat) || json_integer_value(iat) > x->now_s + x->leeway_s)
        e = unauth(ei, "issued in the future");
    if (e) {
        json_decref(c);
        return e;
    }
    *claims = c;
    return DCMS_OK;
}

static bool copy_uuid(const json_t *v, char out[DCMS_UUID_STRLEN], bool optional)
{
    if (!v || json_is_null(v)) {
        out[0] = '\0';
        return optional;
    }
    if (!json_is_string(v) || !dcms_uuid_valid(json_string_value(v)))
        return false;
    memcpy(out, json_string_value(v), DCMS_UUID_STRLEN);
    return true;
}

enum dcms_err iam_claims_principal(const json_t *c, struct dcms_principal *p,
                                   struct dcms_errinfo *ei)
{
    memset(p, 0, sizeof(*p));
    if (!copy_uuid(json_object_get(c, "sub"), p->id, false) ||
        !copy_uuid(json_object_get(c, "org"), p->org, true) ||
        !copy_uuid(json_object_get(c, "sid"), p->sid, false) ||
        !copy_uuid(json_object_get(c, "jti"), p->jti, false))
        return unauth(ei, "bad subject claims");
    const json_t *roles = json_object_get(c, "roles"), *amr = json_object_get(c, "amr"), *v;
    size_t i;
    if (!json_is_array(roles) || !json_is_array(amr))
        return unauth(ei, "bad roles or amr");
    json_array_foreach(roles, i, v)
    {
        unsigned r = json_is_string(v) ? dcms_iam_role_parse(json_string_value(v)) : 0;
        if (!r)
            return unauth(ei, "unknown role");
        p->roles |= r;
    }
    json_array_foreach(amr, i, v)
    {
        unsigned bit = json_is_string(v) ? iam_amr_parse(json_string_value(v)) : 0;
        if (!bit)
            return unauth(ei, "unknown amr");
        p->amr |= bit;
    }
    p->iat_s = json_integer_value(json_object_get(c, "iat"));
    p->exp_s = json_integer_value(json_object_get(c, "exp"));
    /* auth_time (OIDC): the login this session started with; tokens without it count as old. */
    const json_t *at = json_object_get(c, "auth_time");
    if (at && (!json_is_integer(at) || json_integer_value(at) < 0))
        return unauth(ei, "bad auth_time");
    p->auth_time_s = at ? json_integer_value(at) : 0;
    return DCMS_OK;
}
