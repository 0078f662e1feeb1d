/*
 * Ed25519 signing keys (libsodium). The secret key lives in sodium_malloc'd
 * memory, is wiped when freed, and its seed is kept in a 0600 file
 * (dcms_secret_file_load_or_create); a key file others can read is refused.
 */

#include <sodium.h>

#include "dcms/crypto.h"
#include "dcms/log.h"

struct dcms_sign_key {
    unsigned char sk[crypto_sign_SECRETKEYBYTES];
    unsigned char pk[crypto_sign_PUBLICKEYBYTES];
    char id[17];
};

void dcms_sign_key_id_of(const unsigned char pk[DCMS_SIGN_PUBLIC_LEN], char out[17])
{
    char hex[65];
    if (dcms_digest_sha256_hex(pk, DCMS_SIGN_PUBLIC_LEN, hex)) {
        memset(out, '0', 16);
        out[16] = '\0';
        return;
    }
    memcpy(out, hex, 16);
    out[16] = '\0';
}

enum dcms_err dcms_sign_key_load_or_create(const char *path, struct dcms_sign_key **out,
                                           struct dcms_errinfo *ei)
{
    unsigned char seed[32];
    enum dcms_err e = dcms_secret_file_load_or_create(path, seed, sizeof(seed), "signing key", ei);
    if (e)
        return e;
    struct dcms_sign_key *k = sodium_malloc(sizeof(*k));
    if (!k) {
        sodium_memzero(seed, sizeof(seed));
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    }
    crypto_sign_seed_keypair(k->pk, k->sk, seed);
    sodium_memzero(seed, sizeof(seed));
    dcms_sign_key_id_of(k->pk, k->id);
    *out = k;
    return DCMS_OK;
}

void dcms_sign_key_free(struct dcms_sign_key *k)
{
    if (k)
        sodium_free(k); /* wipes before freeing */
}

const unsigned char *dcms_sign_key_public(const struct dcms_sign_key *k)
{
    return k->pk;
}

const char *dcms_sign_key_id(const struct dcms_sign_key *k)
{
    return k->id;
}

enum dcms_err dcms_sign_detached(const struct dcms_sign_key *k, const void *msg, size_t len,
                                 unsigned char sig[DCMS_SIGN_BYTES])
{
    return crypto_sign_detached(sig, NULL, msg, len, k->sk) == 0 ? DCMS_OK : DCMS_ERR_CRYPTO;
}

bool dcms_sign_verify(const unsigned char pk[DCMS_SIGN_PUBLIC_LEN], const void *msg, size_t len,
                      const unsigned char sig[DCMS_SIGN_BYTES])
{
    return crypto_sign_verify_detached(sig, msg, len, pk) == 0;
}
