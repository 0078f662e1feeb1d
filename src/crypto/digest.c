/* Message digests and library start-up. */
#include <pthread.h>
#include <stdlib.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <sodium.h>

#include "dcms/crypto.h"
#include "dcms/str.h"

/* Fetched once for the process (never freed: it lives as long as the library). */
static EVP_MD *sha256;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
    sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

const struct evp_md_st *dcms_sha256_md(void)
{
    pthread_once(&sha256_once, sha256_fetch);
    return sha256 ? sha256 : EVP_sha256();
}

enum dcms_err dcms_digest_sha256(const void *p, size_t len, unsigned char out[DCMS_SHA256_LEN])
{
    return EVP_Digest(p, len, out, NULL, dcms_sha256_md(), NULL) ? DCMS_OK : DCMS_ERR_CRYPTO;
}

enum dcms_err dcms_crypto_init(void)
{
    if (sodium_init() < 0)
        return DCMS_ERR_CRYPTO;
    /* Same allocator, wiping free: safe even for nodes allocated before this call. */
    json_set_alloc_funcs(malloc, dcms_free_wiped);
    return DCMS_OK;
}

enum dcms_err dcms_digest_sha256_hex(const void *p, size_t len, char out[65])
{
    unsigned char d[DCMS_SHA256_LEN];
    if (dcms_digest_sha256(p, len, d))
        return DCMS_ERR_CRYPTO;
    dcms_hex_encode(out, d, sizeof(d));
    return DCMS_OK;
}

size_t dcms_b64_encoded_len(size_t n)
{
    return sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL);
}

void dcms_b64_encode(char *out, const void *p, size_t n)
{
    sodium_bin2base64(out, dcms_b64_encoded_len(n), p, n, sodium_base64_VARIANT_ORIGINAL);
}

enum dcms_err dcms_b64_decode(unsigned char *out, size_t cap, const char *s, size_t len,
                              size_t *out_len)
{
    const char *end = NULL;
    /* Padding is optional: strip it and decode the unpadded variant. */
    while (len && s[len - 1] == '=')
        len--;
    if (sodium_base642bin(out, cap, s, len, NULL, out_len, &end,
                          sodium_base64_VARIANT_ORIGINAL_NO_PADDING) != 0 ||
        end != s + len)
        return DCMS_ERR_BAD_REQUEST;
    return DCMS_OK;
}
