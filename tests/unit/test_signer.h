/*
 * Test-only image signers: a fresh EC key and a self-signed certificate
 * made at test time (nothing secret is committed), as PEM, for the unit
 * tests of signed workload images (test_image_sign.c, test_backend_local.c).
 */
#ifndef DCMS_TEST_SIGNER_H
#define DCMS_TEST_SIGNER_H

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "testutil.h"

struct test_signer {
    char *key_pem, *cert_pem; /* malloc'd, NUL-terminated */
    size_t key_len, cert_len;
};

static inline char *test_signer_bio_text(BIO *b, size_t *len)
{
    char *p = NULL;
    long n = BIO_get_mem_data(b, &p);
    assert_true(n > 0);
    char *out = malloc((size_t)n + 1);
    assert_non_null(out);
    memcpy(out, p, (size_t)n);
    out[n] = '\0';
    *len = (size_t)n;
    return out;
}

/* A key on `curve` ("P-384", "P-256") and a self-signed certificate for it named `cn`. */
static inline void test_signer_make(struct test_signer *s, const char *curve, const char *cn)
{
    EVP_PKEY *k = EVP_EC_gen(curve);
    X509 *x = X509_new();
    assert_non_null(k);
    assert_non_null(x);
    assert_int_equal(X509_set_version(x, 2), 1);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    assert_int_equal(X509_set_issuer_name(x, name), 1);
    assert_int_equal(X509_set_pubkey(x, k), 1);
    assert_true(X509_sign(x, k, EVP_sha384()) > 0);
    BIO *kb = BIO_new(BIO_s_mem()), *cb = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PrivateKey(kb, k, NULL, NULL, 0, NULL, NULL), 1);
    assert_int_equal(PEM_write_bio_X509(cb, x), 1);
    s->key_pem = test_signer_bio_text(kb, &s->key_len);
    s->cert_pem = test_signer_bio_text(cb, &s->cert_len);
    BIO_free(kb);
    BIO_free(cb);
    X509_free(x);
    EVP_PKEY_free(k);
}

static inline void test_signer_free(struct test_signer *s)
{
    free(s->key_pem);
    free(s->cert_pem);
}

#endif
