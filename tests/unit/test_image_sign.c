/*
 * Signed workload images (src/attestation/attest_image.c): PCR8 measured
 * from a certificate exactly as Nitro does, checked against a value computed
 * outside dcms; signing and verifying a `.sig`; every way a signature must
 * be refused (a one-byte-changed image, a flipped signature byte, another
 * certificate, a P-256 key, a key that is not the certificate's, garbage).
 * Keys and certificates are made at test time (test_signer.h).
 */
#include "testutil.h"
#include "test_signer.h"

#include <cbor.h>

#include "dcms/attest.h"
#include "dcms/str.h"

/*
 * PCR8 of tests/vectors/nitro/aws_nitro_root_g1.pem used as a signing
 * certificate, computed outside dcms (OpenSSL 3.0.19 command line):
 *
 *   openssl x509 -in tests/vectors/nitro/aws_nitro_root_g1.pem -outform DER \
 *     | openssl dgst -sha384 -binary > inner
 *   (head -c 48 /dev/zero; cat inner) | openssl dgst -sha384
 *
 * and again with Python's hashlib: sha384(b"\0" * 48 + sha384(der).digest()).
 * The empty-input value below was computed the same way from `printf ''`.
 */
static const char ROOT_G1_PCR8[] =
    "df3a0511a411c6a5628d91a189a052d281dec8153ffecde6bdc1a059825c32e4"
    "bfb7fc95b367564a64812a8795af8f8a";

static void hex(const unsigned char p[DCMS_ATTEST_SHA384_LEN], char out[97])
{
    dcms_hex_encode(out, p, DCMS_ATTEST_SHA384_LEN);
}

static void test_pcr8_known_vector(void **state)
{
    (void)state;
    size_t len;
    char *pem = dcms_test_read_file(DCMS_VECTORS_DIR "/nitro/aws_nitro_root_g1.pem", &len);
    unsigned char pcr8[DCMS_ATTEST_SHA384_LEN];
    char h[97];
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(dcms_attest_signer_pcr8((unsigned char *)pem, len, pcr8, &ei), DCMS_OK);
    hex(pcr8, h);
    assert_string_equal(h, ROOT_G1_PCR8);
    /* The same certificate as DER measures the same. */
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    assert_non_null(x);
    unsigned char *der = NULL;
    int der_len = i2d_X509(x, &der);
    assert_true(der_len > 0);
    memset(pcr8, 0, sizeof(pcr8));
    assert_int_equal(dcms_attest_signer_pcr8(der, (size_t)der_len, pcr8, &ei), DCMS_OK);
    hex(pcr8, h);
    assert_string_equal(h, ROOT_G1_PCR8);
    /* A trailing byte after the DER, or text that is not a certificate, is no certificate. */
    unsigned char *longer = malloc((size_t)der_len + 1);
    assert_non_null(longer);
    memcpy(longer, der, (size_t)der_len);
    longer[der_len] = 0;
    assert_int_equal(dcms_attest_signer_pcr8(longer, (size_t)der_len + 1, pcr8, &ei),
                     DCMS_ERR_VALIDATION);
    assert_int_equal(dcms_attest_signer_pcr8((const unsigned char *)"hello", 5, pcr8, &ei),
                     DCMS_ERR_VALIDATION);
    free(longer);
    OPENSSL_free(der);
    X509_free(x);
    BIO_free(b);
    free(pem);
    /* The extend of nothing: SHA-384(48 zeros || SHA-384("")), also from openssl dgst. */
    assert_int_equal(dcms_attest_pcr_extend((const unsigned char *)"", 0, pcr8), DCMS_OK);
    hex(pcr8, h);
    assert_string_equal(h, "21b9efbc184807662e966d34f390821309eeac6802309798826296bf3e8bec7c"
                           "10edb30948c90ba67310f7b964fc500a");
}

/* A measured "image": 4 KiB of pattern bytes, its PCR0 the SHA-384 of them. */
static void image_pcr0(unsigned char *img, size_t n, unsigned char pcr0[DCMS_ATTEST_SHA384_LEN])
{
    assert_int_equal(EVP_Digest(img, n, pcr0, NULL, EVP_sha384(), NULL), 1);
}

static void test_sign_then_verify(void **state)
{
    (void)state;
    struct test_signer s;
    test_signer_make(&s, "P-384", "dcms test image signer (test only)");
    unsigned char img[4096], pcr0[DCMS_ATTEST_SHA384_LEN];
    for (size_t i = 0; i < sizeof(img); i++)
        img[i] = (unsigned char)(i * 7 + 3);
    image_pcr0(img, sizeof(img), pcr0);
    unsigned char *sig = NULL;
    size_t sig_len = 0;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(dcms_attest_image_sign(pcr0, (unsigned char *)s.key_pem, s.key_len,
                                            (unsigned char *)s.cert_pem, s.cert_len, &sig, &sig_len,
                                            &ei),
                     DCMS_OK);
    struct dcms_attest_image_signer signer;
    assert_int_equal(dcms_attest_image_verify(pcr0, sig, sig_len, &signer, &ei), DCMS_OK);
    unsigned char want[DCMS_ATTEST_SHA384_LEN];
    assert_int_equal(dcms_attest_signer_pcr8((unsigned char *)s.cert_pem, s.cert_len, want, &ei),
                     DCMS_OK);
    assert_memory_equal(signer.pcr8, want, sizeof(want));
    assert_false(dcms_attest_pcr_is_zero(signer.pcr8, sizeof(signer.pcr8)));
    assert_non_null(strstr(signer.subject, "dcms test image signer"));
    dcms_attest_image_signer_release(&signer);

    /* The file is an EIF signature section: [{signing_certificate: PEM, signature: COSE}]. */
    struct cbor_load_result res;
    cbor_item_t *top = cbor_load(sig, sig_len, &res);
    assert_non_null(top);
    assert_true(cbor_isa_array(top) && cbor_array_size(top) == 1);
    cbor_item_t *m = cbor_array_handle(top)[0];
    assert_true(cbor_isa_map(m) && cbor_map_size(m) == 2);
    cbor_decref(&top);

    /* One byte of the image changed: its PCR0 differs, the signature is for another image. */
    img[100] ^= 1;
    unsigned char pcr0b[DCMS_ATTEST_SHA384_LEN];
    image_pcr0(img, sizeof(img), pcr0b);
    assert_int_equal(dcms_attest_image_verify(pcr0b, sig, sig_len, &signer, &ei),
                     DCMS_ERR_VALIDATION);
    assert_non_null(strstr(ei.message, "another image"));
    assert_null(signer.cert_der);

    /* Each byte of the ES384 signature (the last 96 bytes of the file) flipped: refused. */
    for (size_t i = sig_len - 96; i < sig_len; i += 7) {
        sig[i] ^= 0x40;
        assert_int_equal(dcms_attest_image_verify(pcr0, sig, sig_len, &signer, &ei),
                         DCMS_ERR_VALIDATION);
        sig[i] ^= 0x40;
    }
    /* Truncated, or not CBOR at all. */
    assert_int_equal(dcms_attest_image_verify(pcr0, sig, sig_len - 1, &signer, &ei),
                     DCMS_ERR_VALIDATION);
    assert_int_equal(dcms_attest_image_verify(pcr0, (const unsigned char *)"{}", 2, &signer, &ei),
                     DCMS_ERR_VALIDATION);
    assert_int_equal(dcms_attest_image_verify(pcr0, sig, 0, &signer, &ei), DCMS_ERR_VALIDATION);
    free(sig);
    test_signer_free(&s);
}

/* The certificate inside must be the key's: a signature with another certificate fails. */
static void test_refused_signers(void **state)
{
    (void)state;
    struct test_signer a, b, p256;
    test_signer_make(&a, "P-384", "signer a (test only)");
    test_signer_make(&b, "P-384", "signer b (test only)");
    test_signer_make(&p256, "P-256", "p256 signer (test only)");
    unsigned char pcr0[DCMS_ATTEST_SHA384_LEN];
    memset(pcr0, 0x5a, sizeof(pcr0));
    unsigned char *sig = NULL;
    size_t sig_len = 0;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    /* a's key with b's certificate. */
    assert_int_equal(dcms_attest_image_sign(pcr0, (unsigned char *)a.key_pem, a.key_len,
                                            (unsigned char *)b.cert_pem, b.cert_len, &sig, &sig_len,
                                            &ei),
                     DCMS_ERR_VALIDATION);
    assert_null(sig);
    /* P-256 (nitro-cli signs with P-384). */
    assert_int_equal(dcms_attest_image_sign(pcr0, (unsigned char *)p256.key_pem, p256.key_len,
                                            (unsigned char *)p256.cert_pem, p256.cert_len, &sig,
                                            &sig_len, &ei),
                     DCMS_ERR_VALIDATION);
    /* A certificate given as the key. */
    assert_int_equal(dcms_attest_image_sign(pcr0, (unsigned char *)a.cert_pem, a.cert_len,
                                            (unsigned char *)a.cert_pem, a.cert_len, &sig, &sig_len,
                                            &ei),
                     DCMS_ERR_VALIDATION);
    /* A valid signature by a, with b's certificate put in its place: does not verify. */
    assert_int_equal(dcms_attest_image_sign(pcr0, (unsigned char *)a.key_pem, a.key_len,
                                            (unsigned char *)a.cert_pem, a.cert_len, &sig, &sig_len,
                                            &ei),
                     DCMS_OK);
    struct cbor_load_result res;
    cbor_item_t *top = cbor_load(sig, sig_len, &res);
    assert_non_null(top);
    struct cbor_pair *pairs = cbor_map_handle(cbor_array_handle(top)[0]);
    size_t ci =
        strncmp((char *)cbor_string_handle(pairs[0].key), "signing_certificate", 19) == 0 ? 0 : 1;
    cbor_item_t *other = cbor_build_bytestring((unsigned char *)b.cert_pem, b.cert_len);
    assert_non_null(other);
    cbor_decref(&pairs[ci].value);
    pairs[ci].value = other;
    unsigned char *forged = NULL;
    size_t cap = 0, forged_len = cbor_serialize_alloc(top, &forged, &cap);
    assert_true(forged_len > 0);
    struct dcms_attest_image_signer signer;
    assert_int_equal(dcms_attest_image_verify(pcr0, forged, forged_len, &signer, &ei),
                     DCMS_ERR_VALIDATION);
    assert_non_null(strstr(ei.message, "does not verify"));
    free(forged);
    cbor_decref(&top);
    free(sig);
    test_signer_free(&a);
    test_signer_free(&b);
    test_signer_free(&p256);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_pcr8_known_vector),
    cmocka_unit_test(test_sign_then_verify),
    cmocka_unit_test(test_refused_signers),
};

DCMS_TEST_MAIN(tests)
