/* Message digests and library start-up. */
#include <openssl/evp.h>
#include <sodium.h>

#include "dcms/crypto.h"

enum dcms_err dcms_digest_sha256(const void *p, size_t len, unsigned char out[DCMS_SHA256_LEN])
{
    return EVP_Digest(p, len, out, NULL, EVP_sha256(), NULL) ? DCMS_OK : DCMS_ERR_CRYPTO;
}

enum dcms_err dcms_crypto_init(void)
{
    return sodium_init() < 0 ? DCMS_ERR_CRYPTO : DCMS_OK;
}
