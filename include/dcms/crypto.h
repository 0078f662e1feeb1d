/*
 * Thin wrappers over OpenSSL 3 and libsodium, named by what they do.
 * Secrets handled here are wiped before return; all functions are
 * thread-safe.
 */
#ifndef DCMS_CRYPTO_H
#define DCMS_CRYPTO_H

#include <stddef.h>

#include "dcms/err.h"

#define DCMS_SHA256_LEN 32

/* SHA-256 of `len` bytes. DCMS_ERR_CRYPTO if OpenSSL fails. */
enum dcms_err dcms_digest_sha256(const void *p, size_t len,
                                 unsigned char out[DCMS_SHA256_LEN]) DCMS_MUST_CHECK;

/* Initializes libsodium; call once at start. DCMS_ERR_CRYPTO on failure. */
enum dcms_err dcms_crypto_init(void) DCMS_MUST_CHECK;

#endif
