/*
 * A SHA-256 whose running state can be saved and restored, for hashes that
 * span several requests (a resumable upload hashes its plaintext across
 * PATCHes, possibly on different nodes). OpenSSL's EVP digests cannot
 * export their state; the low-level SHA256_CTX, deprecated in OpenSSL 3 but
 * kept, is a plain struct of integers, so it is copied as bytes. It uses
 * the same accelerated block function as EVP.
 */
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include <string.h>

#include <openssl/sha.h>

#include "dcms/crypto.h"

_Static_assert(sizeof(SHA256_CTX) <= sizeof(((struct dcms_sha256 *)0)->state),
               "struct dcms_sha256 too small for SHA256_CTX");
_Static_assert(_Alignof(SHA256_CTX) <= _Alignof(struct dcms_sha256),
               "struct dcms_sha256 under-aligned for SHA256_CTX");

void dcms_sha256_init(struct dcms_sha256 *s)
{
    memset(s, 0, sizeof(*s));
    SHA256_Init((SHA256_CTX *)(void *)s->state);
}

void dcms_sha256_update(struct dcms_sha256 *s, const void *p, size_t n)
{
    if (n)
        SHA256_Update((SHA256_CTX *)(void *)s->state, p, n);
}

void dcms_sha256_final(const struct dcms_sha256 *s, unsigned char out[DCMS_SHA256_LEN])
{
    SHA256_CTX c;
    memcpy(&c, s->state, sizeof(c));
    SHA256_Final(out, &c);
}
