/*
 * Fuzz target for the signed-image verifier (src/attestation/attest_image.c):
 * any input is read as a `.sig` file for an image whose PCR0 is the SHA-384
 * of "dcms fuzz image\n" (the corpus's valid.sig was made for that image
 * with a throwaway test-only key by `dcmsd image sign`). Nothing may crash,
 * leak or read out of bounds; a verified signer has a certificate and a
 * non-zero PCR8 that is the extend of that certificate, a refusal leaves
 * nothing behind.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "dcms/attest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char image[] = "dcms fuzz image\n";
    unsigned char pcr0[DCMS_ATTEST_SHA384_LEN], pcr8[DCMS_ATTEST_SHA384_LEN];
    if (EVP_Digest(image, sizeof(image) - 1, pcr0, NULL, EVP_sha384(), NULL) != 1)
        abort();
    struct dcms_attest_image_signer s;
    enum dcms_err e = dcms_attest_image_verify(pcr0, data, size, &s, NULL);
    if (e == DCMS_OK) {
        if (!s.cert_der || !s.cert_der_len || dcms_attest_pcr_is_zero(s.pcr8, sizeof(s.pcr8)) ||
            dcms_attest_pcr_extend(s.cert_der, s.cert_der_len, pcr8) != DCMS_OK ||
            memcmp(pcr8, s.pcr8, sizeof(pcr8)) != 0)
            abort();
    } else if (s.cert_der || s.cert_der_len) {
        abort();
    }
    dcms_attest_image_signer_release(&s);
    return 0;
}
