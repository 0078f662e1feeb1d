/*
 * WebAuthn verification (see webauthn.h), following the W3C WebAuthn Level 2
 * registration (§7.1) and assertion (§7.2) procedures and the "packed"
 * (§8.2), "fido-u2f" (§8.6) and "none" (§8.7) attestation formats.
 *
 * CBOR is read with a small cursor of our own that only knows what WebAuthn
 * uses (definite lengths, integers, byte and text strings, arrays, maps,
 * simple values); every declared length is checked against the bytes that
 * are left, nesting is bounded, duplicate map keys and trailing bytes are
 * refused. Attestation certificate chains are not validated against roots
 * (dcms keeps no list of authenticator vendors): a "packed" x5c statement
 * proves that the leaf certificate's key signed this registration, and the
 * leaf must meet §8.2.1.
 */
#include <openssl/core_names.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <jansson.h>

#include "dcms/crypto.h"
#include "iam/iam_core.h"
#include "iam/webauthn.h"

/* ---- a bounded CBOR cursor ---- */

struct cb {
    const unsigned char *p;
    size_t n, pos;
};

/* One head: major type and argument. Indefinite lengths and reserved values are refused. */
static bool cb_head(struct cb *c, unsigned *major, uint64_t *val)
{
    if (c->pos >= c->n)
        return false;
    unsigned char ib = c->p[c->pos++];
    unsigned ai = ib & 31u;
    *major = ib >> 5;
    if (ai < 24) {
        *val = ai;
        return true;
    }
    if (ai > 27)
        return false;
    size_t len = (size_t)1 << (ai - 24);
    if (c->n - c->pos < len)
        return false;
    *val = 0;
    for (size_t i = 0; i < len; i++)
        *val = (*val << 8) | c->p[c->pos + i];
    c->pos += len;
    return true;
}

static bool cb_skip(struct cb *c, unsigned depth)
{
    unsigned major;
    uint64_t val;
    if (depth > WA_CBOR_MAX_DEPTH || !cb_head(c, &major, &val))
        return false;
    switch (major) {
    case 0:
    case 1:
        return true;
    case 2:
    case 3:
        if (val > c->n - c->pos)
            return false;
        c->pos += (size_t)val;
        return true;
    case 4:
    case 5: {
        uint64_t left = c->n - c->pos;
        if (major == 5 ? val > left / 2 : val > left)
            return false;
        for (uint64_t i = 0; i < (major == 5 ? val * 2 : val); i++)
            if (!cb_skip(c, depth + 1))
                return false;
        return true;
    }
    case 6:
        return cb_skip(c, depth + 1);
    default: /* 7: false, true, null, undefined and floats; the head carried the value */
        return true;
    }
}

static bool cb_int(struct cb *c, int64_t *out)
{
    unsigned major;
    uint64_t val;
    if (!cb_head(c, &major, &val) || (major != 0 && major != 1) || val > INT64_MAX)
        return false;
    *out = major == 0 ? (int64_t)val : -1 - (int64_t)val;
    return true;
}

/* A definite byte (major 2) or text (major 3) string. */
static bool cb_str(struct cb *c, unsigned want, const unsigned char **p, size_t *n)
{
    unsigned major;
    uint64_t val;
    if (!cb_head(c, &major, &val) || major != want || val > c->n - c->pos)
        return false;
    *p = c->p + c->pos;
    *n = (size_t)val;
    c->pos += (size_t)val;
    return true;
}

/* A map (major 5) or array (major 4) head; the count cannot exceed what the bytes could hold. */
static bool cb_container(struct cb *c, unsigned want, uint64_t *count)
{
    unsigned major;
    uint64_t val;
    if (!cb_head(c, &major, &val) || major != want)
        return false;
    uint64_t left = c->n - c->pos;
    if (want == 5 ? val > left / 2 : val > left)
        return false;
    *count = val;
    return true;
}

static bool text_is(const unsigned char *p, size_t n, const char *s)
{
    return n == strlen(s) && memcmp(p, s, n) == 0;
}

/* ---- authenticator data ---- */

const char *wa_authdata_parse(const unsigned char *p, size_t n, struct wa_authdata *out)
{
    memset(out, 0, sizeof(*out));
    if (n < 37)
        return "authenticator data is shorter than 37 bytes";
    if (n > WA_AUTH_DATA_MAX)
        return "authenticator data is too large";
    out->rp_id_hash = p;
    out->flags = p[32];
    out->sign_count = (uint32_t)p[33] << 24 | (uint32_t)p[34] << 16 | (uint32_t)p[35] << 8 | p[36];
    if ((out->flags & WA_FLAG_BS) && !(out->flags & WA_FLAG_BE))
        return "the backup state flag is set without backup eligibility";
    size_t pos = 37;
    if (out->flags & WA_FLAG_AT) {
        if (n - pos < 18)
            return "attested credential data is truncated";
        out->attested = true;
        memcpy(out->aaguid, p + pos, 16);
        size_t idlen = (size_t)p[pos + 16] << 8 | p[pos + 17];
        pos += 18;
        if (idlen < 1 || idlen > WA_CRED_ID_MAX)
            return "the credential id must be 1 to 1023 bytes";
        if (n - pos < idlen)
            return "the credential id is truncated";
        out->cred_id = p + pos;
        out->cred_id_len = idlen;
        pos += idlen;
        struct cb c = {p, n, pos};
        if (!cb_skip(&c, 0))
            return "the credential public key is not a well-formed CBOR item";
        out->cose_key = p + pos;
        out->cose_key_len = c.pos - pos;
        pos = c.pos;
    }
    if (out->flags & WA_FLAG_ED) {
        struct cb c = {p, n, pos};
        uint64_t cnt;
        size_t start = pos;
        if (!cb_container(&c, 5, &cnt))
            return "the extension data is not a CBOR map";
        c.pos = start;
        if (!cb_skip(&c, 0))
            return "the extension data is not a well-formed CBOR item";
        pos = c.pos;
    }
    if (pos != n)
        return "trailing bytes after the authenticator data";
    return NULL;
}

/* ---- COSE keys ---- */

static EVP_PKEY *pkey_from_params(const char *type, OSSL_PARAM_BLD *bld)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    EVP_PKEY *pkey = NULL;
    if (!params || !ctx || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
        pkey = NULL;
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    if (pkey && strcmp(type, "EC") == 0) {
        /* Points must lie on the curve. (RSA: OpenSSL's public check tests the modulus for
         * primality, milliseconds per key; wa_cose_key_decode bounds its size instead.) */
        EVP_PKEY_CTX *chk = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
        int ok = chk ? EVP_PKEY_public_check(chk) : 0;
        EVP_PKEY_CTX_free(chk);
        if (ok != 1) {
            EVP_PKEY_free(pkey);
            pkey = NULL;
        }
    }
    return pkey;
}

static EVP_PKEY *ec_p256(const unsigned char *x, const unsigned char *y)
{
    unsigned char pub[65];
    pub[0] = 0x04;
    memcpy(pub + 1, x, 32);
    memcpy(pub + 33, y, 32);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    EVP_PKEY *k = NULL;
    if (bld &&
        OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) == 1 &&
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof(pub)) == 1)
        k = pkey_from_params("EC", bld);
    OSSL_PARAM_BLD_free(bld);
    return k;
}

static EVP_PKEY *rsa_key(const unsigned char *n, size_t nlen, const unsigned char *e, size_t elen)
{
    BIGNUM *bn = BN_bin2bn(n, (int)nlen, NULL), *be = BN_bin2bn(e, (int)elen, NULL);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    EVP_PKEY *k = NULL;
    if (bn && be && bld && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) == 1 &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) == 1)
        k = pkey_from_params("RSA", bld);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    return k;
}

const char *wa_cose_key_decode(const unsigned char *p, size_t n, int *alg, EVP_PKEY **pkey)
{
    *pkey = NULL;
    if (n > WA_COSE_KEY_MAX)
        return "the COSE key is too large";
    struct cb c = {p, n, 0};
    uint64_t cnt;
    if (!cb_container(&c, 5, &cnt) || cnt > 16)
        return "the COSE key is not a CBOR map of at most 16 entries";
    /* Labels we read: 1 kty, 3 alg, -1 crv or n, -2 x or e, -3 y. */
    int64_t kty = 0, calg = 0, crv = 0;
    const unsigned char *b1 = NULL, *b2 = NULL, *b3 = NULL;
    size_t l1 = 0, l2 = 0, l3 = 0;
    int64_t seen[16];
    for (uint64_t i = 0; i < cnt; i++) {
        int64_t label;
        if (!cb_int(&c, &label))
            return "a COSE key label is not an integer";
        for (uint64_t j = 0; j < i; j++)
            if (seen[j] == label)
                return "a COSE key label appears twice";
        seen[i] = label;
        size_t at = c.pos;
        bool ok;
        switch (label) {
        case 1:
            ok = cb_int(&c, &kty);
            break;
        case 3:
            ok = cb_int(&c, &calg);
            break;
        case -1:
            ok = cb_int(&c, &crv) || (c.pos = at, cb_str(&c, 2, &b1, &l1));
            break;
        case -2:
            ok = cb_str(&c, 2, &b2, &l2);
            break;
        case -3:
            ok = cb_str(&c, 2, &b3, &l3);
            break;
        default:
            ok = cb_skip(&c, 1);
        }
        if (!ok)
            return "a COSE key parameter has the wrong type or is malformed";
    }
    if (c.pos != n)
        return "trailing bytes after the COSE key";
    if (kty == 2 && calg == WA_ALG_ES256) {
        if (crv != 1 || l2 != 32 || l3 != 32)
            return "an ES256 key must be P-256 with 32-byte x and y";
        *pkey = ec_p256(b2, b3);
    } else if (kty == 1 && calg == WA_ALG_EDDSA) {
        if (crv != 6 || l2 != 32 || b3)
            return "an EdDSA key must be Ed25519 with a 32-byte x";
        *pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, b2, 32);
    } else if (kty == 3 && calg == WA_ALG_RS256) {
        if (!b1 || l1 < 256 || l1 > 1024 || b1[0] == 0 || !(b1[l1 - 1] & 1) || !b2 || l2 < 1 ||
            l2 > 8 || b2[0] == 0 || !(b2[l2 - 1] & 1) || (l2 == 1 && b2[0] < 3))
            return "an RS256 key needs an odd 2048- to 8192-bit modulus and an odd exponent >= 3";
        *pkey = rsa_key(b1, l1, b2, l2);
    } else {
        return "the COSE key is not ES256 (-7), EdDSA (-8) or RS256 (-257)";
    }
    if (!*pkey)
        return "the COSE key is not a valid public key";
    *alg = (int)calg;
    return NULL;
}

bool wa_signature_ok(EVP_PKEY *pkey, int alg, const unsigned char *msg, size_t n,
                     const unsigned char *sig, size_t siglen)
{
    const EVP_MD *md;
    const char *type;
    switch (alg) {
    case WA_ALG_ES256:
        md = EVP_sha256();
        type = "EC";
        break;
    case WA_ALG_RS256:
        md = EVP_sha256();
        type = "RSA";
        break;
    case WA_ALG_EDDSA:
        md = NULL;
        type = "ED25519";
        break;
    default:
        return false;
    }
    if (!pkey || !EVP_PKEY_is_a(pkey, type) || siglen == 0 || siglen > WA_SIGNATURE_MAX)
        return false;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    bool ok = ctx && EVP_DigestVerifyInit(ctx, &pctx, md, NULL, pkey) == 1;
    if (ok && alg == WA_ALG_RS256)
        ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) == 1;
    ok = ok && EVP_DigestVerify(ctx, sig, siglen, msg, n) == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
}

bool wa_counter_ok(uint32_t stored, uint32_t received)
{
    return (stored == 0 && received == 0) || received > stored;
}

/* ---- clientDataJSON ---- */

static json_t *client_data_load(const unsigned char *p, size_t n)
{
    if (!p || n == 0 || n > WA_CLIENT_DATA_MAX)
        return NULL;
    json_t *v = json_loadb((const char *)p, n, JSON_REJECT_DUPLICATES, NULL);
    if (v && !json_is_object(v)) {
        json_decref(v);
        v = NULL;
    }
    return v;
}

bool wa_client_data_challenge(const unsigned char *p, size_t n, char *out, size_t cap)
{
    json_t *v = client_data_load(p, n);
    json_t *ch = json_object_get(v, "challenge");
    bool ok = json_is_string(ch) && json_string_length(ch) < cap &&
              strlen(json_string_value(ch)) == json_string_length(ch);
    if (ok)
        snprintf(out, cap, "%s", json_string_value(ch));
    json_decref(v);
    return ok;
}

static bool origin_allowed(const char *origin, const char *list)
{
    size_t olen = strlen(origin);
    for (const char *s = list; s && *s;) {
        while (*s == ' ' || *s == ',')
            s++;
        const char *end = strchr(s, ',');
        size_t len = end ? (size_t)(end - s) : strlen(s);
        while (len && s[len - 1] == ' ')
            len--;
        if (len && len == olen && memcmp(s, origin, len) == 0)
            return true;
        s = end;
    }
    return false;
}

static const char *client_data_check(const unsigned char *p, size_t n, const char *type,
                                     const char *challenge, const struct wa_rp *rp)
{
    json_t *v = client_data_load(p, n);
    if (!v)
        return "is not a JSON object of at most 4096 bytes";
    const char *why = NULL;
    json_t *t = json_object_get(v, "type"), *ch = json_object_get(v, "challenge"),
           *o = json_object_get(v, "origin"), *co = json_object_get(v, "crossOrigin"),
           *tb = json_object_get(v, "tokenBinding");
    if (!json_is_string(t) || strcmp(json_string_value(t), type) != 0)
        why = strcmp(type, "webauthn.get") == 0 ? "type must be webauthn.get"
                                                : "type must be webauthn.create";
    else if (!json_is_string(ch) || !challenge || strcmp(json_string_value(ch), challenge) != 0)
        why = "the challenge is not the one this ceremony was issued";
    else if (!json_is_string(o) || !origin_allowed(json_string_value(o), rp->origins))
        why = "the origin is not one of DCMS_WEBAUTHN_ORIGINS";
    else if (co && !json_is_false(co))
        why = "cross-origin ceremonies are not accepted";
    else if (json_is_object(tb) && json_is_string(json_object_get(tb, "status")) &&
             strcmp(json_string_value(json_object_get(tb, "status")), "present") == 0)
        why = "token binding is not supported";
    json_decref(v);
    return why;
}

/* rpIdHash == SHA-256(rp id). */
static bool rp_id_hash_ok(const struct wa_authdata *ad, const char *rp_id)
{
    unsigned char h[DCMS_SHA256_LEN];
    return dcms_digest_sha256(rp_id, strlen(rp_id), h) == DCMS_OK &&
           CRYPTO_memcmp(h, ad->rp_id_hash, sizeof(h)) == 0;
}

/* authData || SHA-256(clientDataJSON), malloc'd. */
static unsigned char *signed_data(const unsigned char *ad, size_t adlen, const unsigned char *cdj,
                                  size_t cdjlen, size_t *len)
{
    unsigned char *buf = malloc(adlen + DCMS_SHA256_LEN);
    if (!buf)
        return NULL;
    memcpy(buf, ad, adlen);
    if (dcms_digest_sha256(cdj, cdjlen, buf + adlen)) {
        free(buf);
        return NULL;
    }
    *len = adlen + DCMS_SHA256_LEN;
    return buf;
}

/* ---- attestation statements ---- */

#define F_ATT "response.attestationObject"
#define F_CDJ "response.clientDataJSON"
#define F_AD "response.authenticatorData"
#define F_SIG "response.signature"

struct att_stmt {
    bool has_alg;
    int64_t alg;
    const unsigned char *sig;
    size_t sig_len;
    const unsigned char *x5c[4];
    size_t x5c_len[4];
    size_t nx5c;
    bool other; /* members we do not know (ecdaaKeyId, ...) */
};

static const char *stmt_parse(struct cb *c, struct att_stmt *st)
{
    memset(st, 0, sizeof(*st));
    uint64_t cnt;
    if (!cb_container(c, 5, &cnt) || cnt > 8)
        return "attStmt is not a CBOR map of at most 8 entries";
    unsigned seen = 0;
    for (uint64_t i = 0; i < cnt; i++) {
        const unsigned char *k;
        size_t kl;
        if (!cb_str(c, 3, &k, &kl))
            return "an attStmt key is not a text string";
        unsigned bit = text_is(k, kl, "alg")   ? 1u
                       : text_is(k, kl, "sig") ? 2u
                       : text_is(k, kl, "x5c") ? 4u
                                               : 8u;
        if (bit != 8u && (seen & bit))
            return "an attStmt key appears twice";
        seen |= bit;
        if (bit == 1u) {
            if (!cb_int(c, &st->alg))
                return "attStmt.alg is not an integer";
            st->has_alg = true;
        } else if (bit == 2u) {
            if (!cb_str(c, 2, &st->sig, &st->sig_len) || st->sig_len == 0 ||
                st->sig_len > WA_SIGNATURE_MAX)
                return "attStmt.sig is not a byte string of 1 to 1024 bytes";
        } else if (bit == 4u) {
            uint64_t nc;
            if (!cb_container(c, 4, &nc) || nc < 1 || nc > 4)
                return "attStmt.x5c is not an array of 1 to 4 certificates";
            for (uint64_t j = 0; j < nc; j++)
                if (!cb_str(c, 2, &st->x5c[j], &st->x5c_len[j]))
                    return "an attStmt.x5c entry is not a byte string";
            st->nx5c = (size_t)nc;
        } else {
            st->other = true;
            if (!cb_skip(c, 2))
                return "attStmt is malformed";
        }
    }
    return NULL;
}

static bool x509_name_has(X509_NAME *name, int nid, const char *want)
{
    int i = X509_NAME_get_index_by_NID(name, nid, -1);
    if (i < 0)
        return false;
    ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
    if (!s || ASN1_STRING_length(s) < 1)
        return false;
    return !want || ((size_t)ASN1_STRING_length(s) == strlen(want) &&
                     memcmp(ASN1_STRING_get0_data(s), want, strlen(want)) == 0);
}

/* WebAuthn §8.2.1: the packed attestation leaf certificate. */
static const char *packed_leaf_check(X509 *leaf, const unsigned char aaguid[16])
{
    if (X509_get_version(leaf) != 2)
        return "the attestation certificate is not X.509 version 3";
    X509_NAME *subj = X509_get_subject_name(leaf);
    if (!x509_name_has(subj, NID_countryName, NULL) ||
        !x509_name_has(subj, NID_organizationName, NULL) ||
        !x509_name_has(subj, NID_organizationalUnitName, "Authenticator Attestation") ||
        !x509_name_has(subj, NID_commonName, NULL))
        return "the attestation certificate subject lacks C, O, OU=Authenticator Attestation or CN";
    if (X509_check_ca(leaf) != 0)
        return "the attestation certificate is a CA certificate";
    ASN1_OBJECT *oid = OBJ_txt2obj("1.3.6.1.4.1.45724.1.1.4", 1);
    int idx = oid ? X509_get_ext_by_OBJ(leaf, oid, -1) : -1;
    ASN1_OBJECT_free(oid);
    if (idx >= 0) {
        X509_EXTENSION *ext = X509_get_ext(leaf, idx);
        ASN1_OCTET_STRING *d = X509_EXTENSION_get_data(ext);
        const unsigned char *v = d ? ASN1_STRING_get0_data(d) : NULL;
        if (X509_EXTENSION_get_critical(ext))
            return "the attestation certificate's AAGUID extension is critical";
        if (!v || ASN1_STRING_length(d) != 18 || v[0] != 0x04 || v[1] != 16 ||
            memcmp(v + 2, aaguid, 16) != 0)
            return "the attestation certificate's AAGUID differs from the authenticator data";
    }
    return NULL;
}

static X509 *cert_decode(const unsigned char *p, size_t n)
{
    const unsigned char *q = p;
    X509 *x = n <= 4096 ? d2i_X509(NULL, &q, (long)n) : NULL;
    if (x && q != p + n) {
        X509_free(x);
        x = NULL;
    }
    return x;
}

/* The COSE algorithm a certificate key can make, or 0. */
static int cert_alg(EVP_PKEY *k)
{
    if (EVP_PKEY_is_a(k, "EC")) {
        char group[32];
        size_t gl = 0;
        return EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                              &gl) == 1 &&
                       strcmp(group, "prime256v1") == 0
                   ? WA_ALG_ES256
                   : 0;
    }
    if (EVP_PKEY_is_a(k, "ED25519"))
        return WA_ALG_EDDSA;
    if (EVP_PKEY_is_a(k, "RSA"))
        return EVP_PKEY_get_bits(k) >= 2048 ? WA_ALG_RS256 : 0;
    return 0;
}

static enum dcms_err verify_packed(const struct att_stmt *st, const unsigned char *ad, size_t adlen,
                                   const unsigned char *cdj, size_t cdjlen,
                                   struct wa_registration *out, EVP_PKEY *cred,
                                   struct dcms_errinfo *ei)
{
    if (!st->has_alg || !st->sig || st->other)
        return dcms_err_field(ei, F_ATT,
                              "a packed attStmt needs alg and sig (ECDAA is not "
                              "supported)");
    size_t len = 0;
    unsigned char *data = signed_data(ad, adlen, cdj, cdjlen, &len);
    if (!data)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    enum dcms_err e = DCMS_OK;
    if (st->nx5c) {
        X509 *leaf = cert_decode(st->x5c[0], st->x5c_len[0]);
        EVP_PKEY *k = leaf ? X509_get0_pubkey(leaf) : NULL;
        const char *why = !leaf ? "the attestation certificate is not DER X.509"
                          : !k  ? "the attestation certificate has no usable key"
                                : packed_leaf_check(leaf, out->ad.aaguid);
        if (!why && cert_alg(k) != st->alg)
            why = "attStmt.alg does not match the attestation certificate's key";
        if (!why && !wa_signature_ok(k, (int)st->alg, data, len, st->sig, st->sig_len))
            why = "the packed attestation signature does not verify with the certificate";
        for (size_t i = 1; !why && i < st->nx5c; i++) {
            X509 *x = cert_decode(st->x5c[i], st->x5c_len[i]);
            if (!x)
                why = "an attestation chain certificate is not DER X.509";
            X509_free(x);
        }
        X509_free(leaf);
        if (why)
            e = dcms_err_field(ei, F_ATT, "%s", why);
        else
            snprintf(out->att_type, sizeof(out->att_type), "basic");
    } else {
        if (st->alg != out->alg)
            e = dcms_err_field(ei, F_ATT,
                               "self attestation: attStmt.alg differs from the "
                               "credential's algorithm");
        else if (!wa_signature_ok(cred, out->alg, data, len, st->sig, st->sig_len))
            e = dcms_err_field(ei, F_ATT,
                               "the self attestation signature does not verify with the "
                               "credential key");
        else
            snprintf(out->att_type, sizeof(out->att_type), "self");
    }
    free(data);
    return e;
}

static enum dcms_err verify_u2f(const struct att_stmt *st, const unsigned char *cdj, size_t cdjlen,
                                struct wa_registration *out, EVP_PKEY *cred,
                                struct dcms_errinfo *ei)
{
    if (st->has_alg || !st->sig || st->nx5c != 1 || st->other)
        return dcms_err_field(ei, F_ATT, "a fido-u2f attStmt needs exactly sig and one x5c");
    if (out->alg != WA_ALG_ES256)
        return dcms_err_field(ei, F_ATT, "a fido-u2f credential must be ES256");
    unsigned char pub[65];
    size_t publen = 0;
    if (EVP_PKEY_get_octet_string_param(cred, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pub, sizeof(pub),
                                        &publen) != 1 ||
        publen != 65)
        return dcms_err_set(ei, DCMS_ERR_CRYPTO, "cannot encode the credential key");
    size_t len = 1 + 32 + 32 + out->ad.cred_id_len + 65;
    unsigned char *data = malloc(len);
    if (!data)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    data[0] = 0x00;
    memcpy(data + 1, out->ad.rp_id_hash, 32);
    enum dcms_err e = dcms_digest_sha256(cdj, cdjlen, data + 33)
                          ? dcms_err_set(ei, DCMS_ERR_CRYPTO, NULL)
                          : DCMS_OK;
    memcpy(data + 65, out->ad.cred_id, out->ad.cred_id_len);
    memcpy(data + 65 + out->ad.cred_id_len, pub, 65);
    X509 *leaf = cert_decode(st->x5c[0], st->x5c_len[0]);
    EVP_PKEY *k = leaf ? X509_get0_pubkey(leaf) : NULL;
    if (!e && (!k || cert_alg(k) != WA_ALG_ES256))
        e = dcms_err_field(ei, F_ATT, "the fido-u2f certificate must hold a P-256 key");
    else if (!e && !wa_signature_ok(k, WA_ALG_ES256, data, len, st->sig, st->sig_len))
        e = dcms_err_field(ei, F_ATT, "the fido-u2f attestation signature does not verify");
    if (!e)
        snprintf(out->att_type, sizeof(out->att_type), "basic");
    X509_free(leaf);
    free(data);
    return e;
}

static void uuid_text(const unsigned char b[16], char out[37])
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
}

/* Flags every ceremony checks: the RP id hash, user presence and (when asked) verification. */
static enum dcms_err check_flags(const struct wa_authdata *ad, const struct wa_rp *rp,
                                 bool require_uv, const char *field, struct dcms_errinfo *ei)
{
    if (!rp_id_hash_ok(ad, rp->rp_id))
        return dcms_err_field(ei, field, "rpIdHash is not SHA-256 of the relying party id %s",
                              rp->rp_id);
    if (!(ad->flags & WA_FLAG_UP))
        return dcms_err_field(ei, field, "the user present (UP) flag is not set");
    if (require_uv && !(ad->flags & WA_FLAG_UV))
        return dcms_err_field(ei, field, "user verification is required but the UV flag is clear");
    return DCMS_OK;
}

enum dcms_err wa_verify_registration(const unsigned char *att, size_t att_len,
                                     const unsigned char *cdj, size_t cdj_len,
                                     const char *challenge, const struct wa_rp *rp, bool require_uv,
                                     struct wa_registration *out, struct dcms_errinfo *ei)
{
    memset(out, 0, sizeof(*out));
    const char *why = client_data_check(cdj, cdj_len, "webauthn.create", challenge, rp);
    if (why)
        return dcms_err_field(ei, F_CDJ, "%s", why);
    if (!att || att_len == 0 || att_len > WA_ATT_OBJECT_MAX)
        return dcms_err_field(ei, F_ATT, "must be 1 to %d bytes", WA_ATT_OBJECT_MAX);
    /* {fmt: text, attStmt: map, authData: bytes}, in any order, nothing else. */
    struct cb c = {att, att_len, 0};
    uint64_t cnt;
    if (!cb_container(&c, 5, &cnt) || cnt != 3)
        return dcms_err_field(ei, F_ATT, "is not a CBOR map of fmt, attStmt and authData");
    const unsigned char *fmt = NULL, *ad = NULL;
    size_t fmtlen = 0, adlen = 0;
    struct cb stmt = {0};
    bool has_stmt = false;
    for (uint64_t i = 0; i < cnt; i++) {
        const unsigned char *k;
        size_t kl;
        if (!cb_str(&c, 3, &k, &kl))
            return dcms_err_field(ei, F_ATT, "a key is not a text string");
        if (text_is(k, kl, "fmt") && !fmt) {
            if (!cb_str(&c, 3, &fmt, &fmtlen) || fmtlen < 1 || fmtlen > 15)
                return dcms_err_field(ei, F_ATT, "fmt is not a short text string");
        } else if (text_is(k, kl, "authData") && !ad) {
            if (!cb_str(&c, 2, &ad, &adlen))
                return dcms_err_field(ei, F_ATT, "authData is not a byte string");
        } else if (text_is(k, kl, "attStmt") && !has_stmt) {
            size_t at = c.pos;
            if (!cb_skip(&c, 0))
                return dcms_err_field(ei, F_ATT, "attStmt is malformed");
            stmt = (struct cb){att, c.pos, at};
            has_stmt = true;
        } else {
            return dcms_err_field(ei, F_ATT, "has an unknown or repeated key");
        }
    }
    if (c.pos != att_len)
        return dcms_err_field(ei, F_ATT, "has trailing bytes after the CBOR map");
    if (!fmt || !ad || !has_stmt)
        return dcms_err_field(ei, F_ATT, "needs fmt, attStmt and authData");
    memcpy(out->fmt, fmt, fmtlen);
    out->fmt[fmtlen] = '\0';

    if ((why = wa_authdata_parse(ad, adlen, &out->ad)))
        return dcms_err_field(ei, F_ATT, "authData: %s", why);
    enum dcms_err e = check_flags(&out->ad, rp, require_uv, F_ATT, ei);
    if (e)
        return e;
    if (!out->ad.attested)
        return dcms_err_field(ei, F_ATT, "authData has no attested credential data (AT flag)");
    EVP_PKEY *cred = NULL;
    if ((why = wa_cose_key_decode(out->ad.cose_key, out->ad.cose_key_len, &out->alg, &cred)))
        return dcms_err_field(ei, F_ATT, "credential public key: %s", why);
    out->user_verified = (out->ad.flags & WA_FLAG_UV) != 0;
    uuid_text(out->ad.aaguid, out->aaguid);

    struct att_stmt st;
    if ((why = stmt_parse(&stmt, &st)))
        e = dcms_err_field(ei, F_ATT, "%s", why);
    else if (stmt.pos != stmt.n)
        e = dcms_err_field(ei, F_ATT, "attStmt has trailing bytes");
    else if (strcmp(out->fmt, "none") == 0) {
        if (st.has_alg || st.sig || st.nx5c || st.other)
            e = dcms_err_field(ei, F_ATT, "a \"none\" attestation must have an empty attStmt");
        else
            snprintf(out->att_type, sizeof(out->att_type), "none");
    } else if (strcmp(out->fmt, "packed") == 0) {
        e = verify_packed(&st, ad, adlen, cdj, cdj_len, out, cred, ei);
    } else if (strcmp(out->fmt, "fido-u2f") == 0) {
        e = verify_u2f(&st, cdj, cdj_len, out, cred, ei);
    } else {
        e = dcms_err_field(ei, F_ATT,
                           "attestation format %s is not supported (none, packed, "
                           "fido-u2f)",
                           out->fmt);
    }
    EVP_PKEY_free(cred);
    return e;
}

enum dcms_err wa_verify_assertion(const struct wa_assertion_in *in, const char *challenge,
                                  const struct wa_rp *rp, bool require_uv, struct wa_assertion *out,
                                  struct dcms_errinfo *ei)
{
    memset(out, 0, sizeof(*out));
    const char *why =
        client_data_check(in->client_data, in->client_data_len, "webauthn.get", challenge, rp);
    if (why)
        return dcms_err_field(ei, F_CDJ, "%s", why);
    struct wa_authdata ad;
    if ((why = wa_authdata_parse(in->auth_data, in->auth_data_len, &ad)))
        return dcms_err_field(ei, F_AD, "%s", why);
    if (ad.attested)
        return dcms_err_field(ei, F_AD, "an assertion carries no attested credential data");
    enum dcms_err e = check_flags(&ad, rp, require_uv, F_AD, ei);
    if (e)
        return e;
    int alg = 0;
    EVP_PKEY *k = NULL;
    if ((why = wa_cose_key_decode(in->cose_key, in->cose_key_len, &alg, &k)))
        return dcms_err_set(ei, DCMS_ERR_INTERNAL, "a stored credential key is unusable: %s", why);
    size_t len = 0;
    unsigned char *data =
        signed_data(in->auth_data, in->auth_data_len, in->client_data, in->client_data_len, &len);
    if (!data)
        e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    else if (!wa_signature_ok(k, alg, data, len, in->signature, in->signature_len))
        e = dcms_err_field(ei, F_SIG, "does not verify with the credential's public key");
    free(data);
    EVP_PKEY_free(k);
    if (e)
        return e;
    out->flags = ad.flags;
    out->sign_count = ad.sign_count;
    out->user_present = (ad.flags & WA_FLAG_UP) != 0;
    out->user_verified = (ad.flags & WA_FLAG_UV) != 0;
    return DCMS_OK;
}
