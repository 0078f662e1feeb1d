/*
 * Fuzz target: what a browser sends in a passkey ceremony. The first byte
 * picks the parser, the rest is its input: 0 an attestation object (a full
 * registration with a fixed clientDataJSON, relying party "localhost"), 1 a
 * COSE public key, 2 authenticator data, 3 an assertion's authenticator data
 * (and, after it, the signature) against a fixed credential key. Nothing may
 * crash or leak, and a parse that succeeds must describe its input
 * consistently.
 */
#include <stdint.h>
#include <stdlib.h>

#include "dcms/crypto.h"
#include "iam/webauthn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char cdj_create[] =
    "{\"type\":\"webauthn.create\",\"challenge\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\","
    "\"origin\":\"http://localhost:5000\"}";
static const char cdj_get[] =
    "{\"type\":\"webauthn.get\",\"challenge\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\","
    "\"origin\":\"http://localhost:5000\"}";
static const char challenge[] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
/* The ES256 credential key of the shared vector auth_es256_uv0_pywebauthn. */
static const unsigned char cose_es256[] = {
    0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21, 0x58, 0x20, 0x87, 0x83, 0x4d, 0xef, 0xa0, 0x37,
    0xc0, 0x3e, 0xcd, 0x07, 0x25, 0x1e, 0x84, 0x67, 0x18, 0x55, 0x8d, 0xf1, 0xe8, 0x4c, 0xd5, 0xbe,
    0xf2, 0x02, 0xc6, 0xbc, 0x23, 0xc2, 0x88, 0xbe, 0x6a, 0x65, 0x22, 0x58, 0x20, 0xe2, 0x71, 0x46,
    0x4f, 0x9a, 0x71, 0xf2, 0x8e, 0xa0, 0xa4, 0xf6, 0x59, 0x84, 0xed, 0x35, 0xc1, 0xdc, 0xbd, 0x72,
    0xb0, 0xd2, 0x03, 0xf3, 0x60, 0xb6, 0x4c, 0x74, 0xbc, 0x6a, 0x6f, 0x3c, 0x72};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    if (!ready) {
        if (dcms_crypto_init())
            abort();
        ready = true;
    }
    if (size < 1 || size > 20000)
        return 0;
    const unsigned char *p = data + 1;
    size_t n = size - 1;
    struct wa_rp rp = {"localhost", "http://localhost:5000"};
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    switch (data[0] & 3) {
    case 0: {
        struct wa_registration reg;
        if (wa_verify_registration(p, n, (const unsigned char *)cdj_create, strlen(cdj_create),
                                   challenge, &rp, false, &reg, &ei) == DCMS_OK &&
            (!reg.ad.attested || reg.ad.cred_id < p ||
             reg.ad.cose_key + reg.ad.cose_key_len > p + n))
            abort();
        break;
    }
    case 1: {
        int alg = 0;
        EVP_PKEY *k = NULL;
        if (!wa_cose_key_decode(p, n, &alg, &k)) {
            if (!k || (alg != WA_ALG_ES256 && alg != WA_ALG_EDDSA && alg != WA_ALG_RS256))
                abort();
            EVP_PKEY_free(k);
        }
        break;
    }
    case 2: {
        struct wa_authdata ad;
        if (!wa_authdata_parse(p, n, &ad) &&
            (n < 37 || (ad.attested && ad.cose_key + ad.cose_key_len > p + n)))
            abort();
        break;
    }
    default: {
        size_t adlen = n > 37 ? 37 + (n - 37) / 2 : n;
        struct wa_assertion_in in = {p,         (const unsigned char *)cdj_get,
                                     p + adlen, cose_es256,
                                     adlen,     strlen(cdj_get),
                                     n - adlen, sizeof(cose_es256)};
        struct wa_assertion out;
        if (wa_verify_assertion(&in, challenge, &rp, false, &out, &ei) == DCMS_OK &&
            !out.user_present)
            abort();
    }
    }
    return 0;
}
