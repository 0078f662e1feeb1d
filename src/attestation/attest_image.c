/*
 * Signed workload images, as AWS Nitro signs an EIF (include/dcms/attest.h
 * has the format). A `.sig` file is the CBOR of an EIF signature section:
 * one {signing_certificate, signature} pair whose signature is a COSE_Sign1
 * (ES384) over {register_index: 0, register_value: PCR0}. PCR8 is the
 * measurement of the certificate's DER extended into a zeroed PCR, which is
 * how nitro-cli computes it and how the Nitro hypervisor reports it.
 *
 * Every input here is untrusted (the `.sig` file sits next to the image in
 * the images directory): it is size-capped, scanned by attest_cbor_scan
 * before libcbor loads it, and each member's type and length is checked.
 */
#include <cbor.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "attestation/attest_int.h"

/* The COSE protected header {1: -35}: alg ES384, the only one accepted. */
static const unsigned char protected_es384[] = {0xa1, 0x01, 0x38, 0x22};

enum dcms_err dcms_attest_pcr_extend(const unsigned char *data, size_t len,
                                     unsigned char out[DCMS_ATTEST_SHA384_LEN])
{
    unsigned char zero[DCMS_ATTEST_SHA384_LEN] = {0}, inner[DCMS_ATTEST_SHA384_LEN];
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    bool ok = c && EVP_Digest(data, len, inner, NULL, EVP_sha384(), NULL) == 1 &&
              EVP_DigestInit_ex(c, EVP_sha384(), NULL) == 1 &&
              EVP_DigestUpdate(c, zero, sizeof(zero)) == 1 &&
              EVP_DigestUpdate(c, inner, sizeof(inner)) == 1 &&
              EVP_DigestFinal_ex(c, out, NULL) == 1;
    EVP_MD_CTX_free(c);
    return ok ? DCMS_OK : DCMS_ERR_CRYPTO;
}

bool dcms_attest_pcr_is_zero(const unsigned char *p, size_t len)
{
    unsigned char acc = 0;
    for (size_t i = 0; i < len; i++)
        acc |= p[i];
    return acc == 0;
}

/* One certificate from PEM or DER; NULL when `p` is anything else (or has trailing bytes). */
static X509 *cert_parse(const unsigned char *p, size_t len)
{
    if (len == 0 || len > DCMS_IMAGE_SIG_MAX_BYTES)
        return NULL;
    if (p[0] == 0x30) {
        const unsigned char *q = p;
        X509 *x = d2i_X509(NULL, &q, (long)len);
        if (x && q != p + len) {
            X509_free(x);
            x = NULL;
        }
        return x;
    }
    BIO *b = BIO_new_mem_buf(p, (int)len);
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    return x;
}

/* True for an EC key on P-384 (what nitro-cli signs with). */
static bool key_is_p384(EVP_PKEY *k)
{
    char group[32] = "";
    size_t n = 0;
    return k && EVP_PKEY_is_a(k, "EC") &&
           EVP_PKEY_get_group_name(k, group, sizeof(group), &n) == 1 &&
           strcmp(group, "secp384r1") == 0;
}

static enum dcms_err cert_der(X509 *x, unsigned char **der, size_t *len, struct dcms_errinfo *ei)
{
    unsigned char *d = NULL;
    int n = i2d_X509(x, &d);
    if (n <= 0)
        return dcms_err_set(ei, DCMS_ERR_CRYPTO, "cannot encode the signing certificate");
    *der = d;
    *len = (size_t)n;
    return DCMS_OK;
}

enum dcms_err dcms_attest_signer_pcr8(const unsigned char *cert, size_t len,
                                      unsigned char pcr8[DCMS_ATTEST_SHA384_LEN],
                                      struct dcms_errinfo *ei)
{
    X509 *x = cert_parse(cert, len);
    if (!x)
        return dcms_err_set(ei, DCMS_ERR_VALIDATION,
                            "the signing certificate is not one X.509 certificate (PEM or DER)");
    unsigned char *der = NULL;
    size_t der_len = 0;
    enum dcms_err e = cert_der(x, &der, &der_len, ei);
    if (!e && (e = dcms_attest_pcr_extend(der, der_len, pcr8)))
        dcms_err_set(ei, e, "cannot measure the signing certificate");
    OPENSSL_free(der);
    X509_free(x);
    return e;
}

/* The signed payload: {"register_index": 0, "register_value": bstr(PCR0)}. */
static bool payload_build(const unsigned char pcr0[DCMS_ATTEST_SHA384_LEN], unsigned char **out,
                          size_t *len)
{
    cbor_item_t *m = cbor_new_definite_map(2);
    struct cbor_pair p1 = {.key = cbor_build_string("register_index"),
                           .value = cbor_build_uint8(0)};
    struct cbor_pair p2 = {.key = cbor_build_string("register_value"),
                           .value = cbor_build_bytestring(pcr0, DCMS_ATTEST_SHA384_LEN)};
    bool ok =
        m && p1.key && p1.value && p2.key && p2.value && cbor_map_add(m, p1) && cbor_map_add(m, p2);
    size_t cap = 0;
    *out = NULL;
    *len = ok ? cbor_serialize_alloc(m, out, &cap) : 0;
    cbor_item_t *items[] = {m, p1.key, p1.value, p2.key, p2.value};
    for (size_t i = 0; i < 5; i++)
        if (items[i])
            cbor_decref(&items[i]);
    return *len > 0;
}

/* The COSE_Sign1 array [protected, {}, payload, signature], untagged (as in an EIF). */
static unsigned char *cose_build(const unsigned char *payload, size_t payload_len,
                                 const unsigned char sig[96], size_t *len)
{
    unsigned char head[9];
    size_t hl = attest_cbor_head(head, 2, payload_len);
    size_t n = 1 + 1 + sizeof(protected_es384) + 1 + hl + payload_len + 2 + 96;
    unsigned char *out = malloc(n), *p = out;
    if (!out)
        return NULL;
    *p++ = 0x84;
    *p++ = 0x40 | sizeof(protected_es384);
    memcpy(p, protected_es384, sizeof(protected_es384));
    p += sizeof(protected_es384);
    *p++ = 0xa0;
    memcpy(p, head, hl);
    p += hl;
    memcpy(p, payload, payload_len);
    p += payload_len;
    *p++ = 0x58;
    *p++ = 96;
    memcpy(p, sig, 96);
    *len = n;
    return out;
}

enum dcms_err dcms_attest_image_sign(const unsigned char pcr0[DCMS_ATTEST_SHA384_LEN],
                                     const unsigned char *key_pem, size_t key_len,
                                     const unsigned char *cert, size_t cert_len,
                                     unsigned char **sig_out, size_t *sig_len,
                                     struct dcms_errinfo *ei)
{
    *sig_out = NULL;
    *sig_len = 0;
    enum dcms_err e = DCMS_OK;
    X509 *x = cert_parse(cert, cert_len);
    BIO *kb = NULL, *pb = NULL;
    EVP_PKEY *key = NULL;
    unsigned char *payload = NULL, *cose = NULL, *out = NULL;
    size_t payload_len = 0, cose_len = 0, cap = 0;
    cbor_item_t *arr = NULL, *map = NULL;
    struct cbor_pair p1 = {0}, p2 = {0};
    if (!x) {
        e = dcms_err_set(ei, DCMS_ERR_VALIDATION,
                         "the signing certificate is not one X.509 certificate (PEM or DER)");
        goto out;
    }
    if (key_len > INT32_MAX || !(kb = BIO_new_mem_buf(key_pem, (int)key_len)) ||
        !(key = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL)) || !key_is_p384(key)) {
        e = dcms_err_set(ei, DCMS_ERR_VALIDATION,
                         "the signing key must be an unencrypted EC P-384 private key in PEM");
        goto out;
    }
    if (!key_is_p384(X509_get0_pubkey(x)) || X509_check_private_key(x, key) != 1) {
        e = dcms_err_set(ei, DCMS_ERR_VALIDATION,
                         "the certificate's public key is not the signing key's (P-384)");
        goto out;
    }
    unsigned char sig[96];
    if (!payload_build(pcr0, &payload, &payload_len)) {
        e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
        goto out;
    }
    struct dcms_attest_doc d = {.protected_hdr = {protected_es384, sizeof(protected_es384)},
                                .payload = {payload, payload_len}};
    if (!attest_cose_es384_sign(key, &d, sig)) {
        e = dcms_err_set(ei, DCMS_ERR_CRYPTO, "cannot sign the image");
        goto out;
    }
    char *pem = NULL;
    long pem_len = 0;
    if (!(cose = cose_build(payload, payload_len, sig, &cose_len)) ||
        !(pb = BIO_new(BIO_s_mem())) || PEM_write_bio_X509(pb, x) != 1 ||
        (pem_len = BIO_get_mem_data(pb, &pem)) <= 0) {
        e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
        goto out;
    }
    arr = cbor_new_definite_array(1);
    map = cbor_new_definite_map(2);
    p1 = (struct cbor_pair){.key = cbor_build_string("signing_certificate"),
                            .value = cbor_build_bytestring((unsigned char *)pem, (size_t)pem_len)};
    p2 = (struct cbor_pair){.key = cbor_build_string("signature"),
                            .value = cbor_build_bytestring(cose, cose_len)};
    bool ok = arr && map && p1.key && p1.value && p2.key && p2.value && cbor_map_add(map, p1) &&
              cbor_map_add(map, p2) && cbor_array_push(arr, map);
    if (!ok || !(*sig_len = cbor_serialize_alloc(arr, &out, &cap))) {
        e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
        goto out;
    }
    *sig_out = out;
    out = NULL;
out:
    if (arr)
        cbor_decref(&arr);
    cbor_item_t *items[] = {map, p1.key, p1.value, p2.key, p2.value};
    for (size_t i = 0; i < 5; i++)
        if (items[i])
            cbor_decref(&items[i]);
    free(out);
    free(cose);
    free(payload);
    BIO_free(pb);
    BIO_free(kb);
    EVP_PKEY_free(key);
    X509_free(x);
    return e;
}

/* Scans, then loads one CBOR item; NULL when it is not exactly one well-formed item. */
static cbor_item_t *load(const unsigned char *p, size_t len)
{
    if (len > DCMS_IMAGE_SIG_MAX_BYTES || attest_cbor_scan(p, len))
        return NULL;
    struct cbor_load_result res;
    cbor_item_t *it = cbor_load(p, len, &res);
    if (it && (res.error.code != CBOR_ERR_NONE || res.read != len))
        cbor_decref(&it);
    return it;
}

/* The value of text key `name` in a definite map of text keys; NULL when absent. */
static cbor_item_t *map_get(cbor_item_t *m, const char *name)
{
    if (!cbor_isa_map(m) || !cbor_map_is_definite(m))
        return NULL;
    struct cbor_pair *pairs = cbor_map_handle(m);
    size_t n = cbor_map_size(m), nl = strlen(name);
    for (size_t i = 0; i < n; i++) {
        cbor_item_t *k = pairs[i].key;
        if (cbor_isa_string(k) && cbor_string_is_definite(k) && cbor_string_length(k) == nl &&
            memcmp(cbor_string_handle(k), name, nl) == 0)
            return pairs[i].value;
    }
    return NULL;
}

static bool is_bstr(cbor_item_t *it)
{
    return it && cbor_isa_bytestring(it) && cbor_bytestring_is_definite(it);
}

/* Member `name` of `m` as a definite byte string. */
static bool get_bytes(cbor_item_t *m, const char *name, struct dcms_attest_bytes *out)
{
    cbor_item_t *v = map_get(m, name);
    if (!is_bstr(v))
        return false;
    out->ptr = cbor_bytestring_handle(v);
    out->len = cbor_bytestring_length(v);
    return true;
}

/* Reads the COSE_Sign1 [protected, unprotected, payload, signature] into `d`. */
static bool cose_read(cbor_item_t *cose, struct dcms_attest_doc *d)
{
    if (!cbor_isa_array(cose) || !cbor_array_is_definite(cose) || cbor_array_size(cose) != 4)
        return false;
    cbor_item_t **a = cbor_array_handle(cose);
    if (!is_bstr(a[0]) || !cbor_isa_map(a[1]) || !is_bstr(a[2]) || !is_bstr(a[3]) ||
        cbor_bytestring_length(a[3]) != 96)
        return false;
    d->protected_hdr =
        (struct dcms_attest_bytes){cbor_bytestring_handle(a[0]), cbor_bytestring_length(a[0])};
    d->payload =
        (struct dcms_attest_bytes){cbor_bytestring_handle(a[2]), cbor_bytestring_length(a[2])};
    d->signature = (struct dcms_attest_bytes){cbor_bytestring_handle(a[3]), 96};
    return d->protected_hdr.len == sizeof(protected_es384) &&
           memcmp(d->protected_hdr.ptr, protected_es384, sizeof(protected_es384)) == 0;
}

void dcms_attest_image_signer_release(struct dcms_attest_image_signer *s)
{
    if (!s)
        return;
    OPENSSL_free(s->cert_der);
    memset(s, 0, sizeof(*s));
}

enum dcms_err dcms_attest_image_verify(const unsigned char pcr0[DCMS_ATTEST_SHA384_LEN],
                                       const unsigned char *sig, size_t sig_len,
                                       struct dcms_attest_image_signer *out,
                                       struct dcms_errinfo *ei)
{
    memset(out, 0, sizeof(*out));
    enum dcms_err e = DCMS_OK;
    cbor_item_t *top = load(sig, sig_len), *cose = NULL, *payload = NULL;
    X509 *x = NULL;
    struct dcms_attest_bytes cert = {0}, cose_bytes = {0}, reg = {0};
    struct dcms_attest_doc d = {0};
    if (!top || !cbor_isa_array(top) || !cbor_array_is_definite(top) || cbor_array_size(top) != 1 ||
        !get_bytes(cbor_array_handle(top)[0], "signing_certificate", &cert) ||
        !get_bytes(cbor_array_handle(top)[0], "signature", &cose_bytes)) {
        e = dcms_err_set(ei, DCMS_ERR_VALIDATION,
                         "not an image signature: CBOR [{signing_certificate, signature}] of at "
                         "most %u bytes expected",
                         DCMS_IMAGE_SIG_MAX_BYTES);
        goto out;
    }
    if (!(x = cert_parse(cert.ptr, cert.len)) || !key_is_p384(X509_get0_pubkey(x))) {
        e = dcms_err_set(ei, DCMS_ERR_VALIDATION,
                         "the signing certificate is not one X.509 certificate with a P-384 key");
        goto out;
    }
    X509_NAME_oneline(X509_get_subject_name(x), out->subject, sizeof(out->subject));
    if (!(cose = load(cose_bytes.ptr, cose_bytes.len)) || !cose_read(cose, &d)) {
        e = dcms_err_set(ei, DCMS_ERR_VALIDATION,
                         "the signature is not an untagged ES384 COSE_Sign1");
        goto out;
    }
    int ok = attest_cose_es384_ok(X509_get0_pubkey(x), &d);
    if (ok < 0) {
        e = dcms_err_set(ei, DCMS_ERR_CRYPTO, "cannot check the image signature");
        goto out;
    }
    if (ok == 0) {
        e = dcms_err_set(ei, DCMS_ERR_VALIDATION,
                         "the signature does not verify with the signing certificate's key");
        goto out;
    }
    cbor_item_t *idx = NULL;
    if (!(payload = load(d.payload.ptr, d.payload.len)) ||
        !(idx = map_get(payload, "register_index")) || !cbor_isa_uint(idx) ||
        cbor_get_int(idx) != 0 || !get_bytes(payload, "register_value", &reg) ||
        reg.len != DCMS_ATTEST_SHA384_LEN) {
        e = dcms_err_set(ei, DCMS_ERR_VALIDATION,
                         "the signed payload is not {register_index: 0, register_value: PCR0}");
        goto out;
    }
    if (CRYPTO_memcmp(reg.ptr, pcr0, DCMS_ATTEST_SHA384_LEN) != 0) {
        e = dcms_err_set(ei, DCMS_ERR_VALIDATION,
                         "the signature is for another image: it signs PCR0 %02x%02x%02x%02x..., "
                         "the image measures %02x%02x%02x%02x...",
                         reg.ptr[0], reg.ptr[1], reg.ptr[2], reg.ptr[3], pcr0[0], pcr0[1], pcr0[2],
                         pcr0[3]);
        goto out;
    }
    if ((e = cert_der(x, &out->cert_der, &out->cert_der_len, ei)))
        goto out;
    if ((e = dcms_attest_pcr_extend(out->cert_der, out->cert_der_len, out->pcr8)))
        dcms_err_set(ei, e, "cannot measure the signing certificate");
out:
    if (e)
        dcms_attest_image_signer_release(out);
    if (payload)
        cbor_decref(&payload);
    if (cose)
        cbor_decref(&cose);
    if (top)
        cbor_decref(&top);
    X509_free(x);
    return e;
}
