/*
 * AES-256-GCM with a caller-chosen 96-bit nonce and a 128-bit tag appended
 * to the ciphertext (OpenSSL 3 EVP). Used for wrapped data keys and for
 * everything encrypted under a data key.
 */
#include <limits.h>
#include <string.h>

#include <openssl/evp.h>
#include <sodium.h>

#include "dcms/crypto.h"

static enum dcms_err gcm(int enc, const unsigned char *key, const unsigned char *nonce,
                         const void *aad, size_t aad_len, const unsigned char *in, size_t len,
                         unsigned char *tag, unsigned char *out)
{
    enum dcms_err e = DCMS_ERR_CRYPTO;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n = 0;
    if (!c)
        return DCMS_ERR_NOMEM;
    if (len > INT_MAX || aad_len > INT_MAX)
        goto out;
    if (EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, DCMS_AEAD_NONCE_LEN, NULL) != 1 ||
        EVP_CipherInit_ex(c, NULL, NULL, key, nonce, enc) != 1)
        goto out;
    if (aad_len && EVP_CipherUpdate(c, NULL, &n, aad, (int)aad_len) != 1)
        goto out;
    if (len && EVP_CipherUpdate(c, out, &n, in, (int)len) != 1)
        goto out;
    if (!enc && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, DCMS_AEAD_TAG_LEN, tag) != 1)
        goto out;
    if (EVP_CipherFinal_ex(c, out + len, &n) != 1)
        goto out;
    if (enc && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, DCMS_AEAD_TAG_LEN, tag) != 1)
        goto out;
    e = DCMS_OK;
out:
    EVP_CIPHER_CTX_free(c);
    return e;
}

enum dcms_err dcms_aead_seal(const unsigned char key[DCMS_AEAD_KEY_LEN],
                             const unsigned char nonce[DCMS_AEAD_NONCE_LEN], const void *aad,
                             size_t aad_len, const void *pt, size_t len, unsigned char *out)
{
    return gcm(1, key, nonce, aad, aad_len, pt, len, out + len, out);
}

enum dcms_err dcms_aead_open(const unsigned char key[DCMS_AEAD_KEY_LEN],
                             const unsigned char nonce[DCMS_AEAD_NONCE_LEN], const void *aad,
                             size_t aad_len, const void *ct, size_t len, unsigned char *out)
{
    unsigned char tag[DCMS_AEAD_TAG_LEN];
    enum dcms_err e;
    if (len < DCMS_AEAD_TAG_LEN)
        return DCMS_ERR_CRYPTO;
    len -= DCMS_AEAD_TAG_LEN;
    memcpy(tag, (const unsigned char *)ct + len, sizeof(tag));
    e = gcm(0, key, nonce, aad, aad_len, ct, len, tag, out);
    if (e && len)
        sodium_memzero(out, len);
    return e;
}
