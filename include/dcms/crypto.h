/*
 * Thin wrappers over OpenSSL 3 and libsodium, named by what they do.
 * Secrets handled here are wiped before return; all functions are
 * thread-safe.
 */
#ifndef DCMS_CRYPTO_H
#define DCMS_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>

#include "dcms/err.h"

#define DCMS_SHA256_LEN 32

/*
 * OpenSSL's SHA-256 implementation, fetched once per process (an EVP_MD).
 * EVP_sha256() passed to EVP_Digest* makes OpenSSL 3 fetch it again on
 * every call, a provider lookup under a lock: on the contract benchmark
 * that was 5% of dcmsd's CPU (one digest per authenticated request).
 */
struct evp_md_st;
const struct evp_md_st *dcms_sha256_md(void);

/* SHA-256 of `len` bytes. DCMS_ERR_CRYPTO if OpenSSL fails. */
enum dcms_err dcms_digest_sha256(const void *p, size_t len,
                                 unsigned char out[DCMS_SHA256_LEN]) DCMS_MUST_CHECK;

/* Lowercase hex of SHA-256(p) into out (65 bytes). */
enum dcms_err dcms_digest_sha256_hex(const void *p, size_t len, char out[65]) DCMS_MUST_CHECK;

/*
 * An incremental SHA-256 whose state is plain bytes: it may be copied,
 * stored and restored (an upload hashed across several requests). Caller
 * storage; no release needed. Not thread-safe per object.
 */
struct dcms_sha256 {
    _Alignas(8) unsigned char state[128];
};
void dcms_sha256_init(struct dcms_sha256 *s);
void dcms_sha256_update(struct dcms_sha256 *s, const void *p, size_t n);
/* The digest of everything fed so far; `s` stays usable. */
void dcms_sha256_final(const struct dcms_sha256 *s, unsigned char out[DCMS_SHA256_LEN]);

/* ---- base64 (standard alphabet, padded on output; padding optional on input) ---- */

/* Encoded length including the NUL. */
size_t dcms_b64_encoded_len(size_t n);
/* Encodes into `out` (at least dcms_b64_encoded_len(n) bytes). */
void dcms_b64_encode(char *out, const void *p, size_t n);
/* Decodes into `out` (capacity `cap`); DCMS_ERR_BAD_REQUEST on bad input or overflow. */
enum dcms_err dcms_b64_decode(unsigned char *out, size_t cap, const char *s, size_t len,
                              size_t *out_len) DCMS_MUST_CHECK;

/* ---- secrets kept in files ---- */

/*
 * Reads `len` (1..64) secret bytes kept base64 in `path`, or, when the file
 * does not exist, fills `out` with fresh random bytes and creates it
 * atomically (mode 0600, parent directories 0700; when several processes
 * race, all end up with the one that was linked first). `what` names the
 * secret in messages ("signing key"). A file that group or others can read,
 * or one that does not hold exactly `len` bytes, is DCMS_ERR_CONFIG. `out`
 * should be guarded memory (sodium_malloc); it is wiped on failure.
 */
enum dcms_err dcms_secret_file_load_or_create(const char *path, unsigned char *out, size_t len,
                                              const char *what,
                                              struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* ---- Ed25519 signatures ---- */

#define DCMS_SIGN_PUBLIC_LEN 32
#define DCMS_SIGN_BYTES 64

/* A secret signing key, held in guarded libsodium memory. */
struct dcms_sign_key;

/*
 * Loads the Ed25519 seed kept (base64, one line) in `path`, or creates it
 * (mode 0600, parent directory 0700) when the file does not exist. A key
 * file readable by group or others is refused: DCMS_ERR_CONFIG.
 */
enum dcms_err dcms_sign_key_load_or_create(const char *path, struct dcms_sign_key **out,
                                           struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* Wipes and frees. NULL is a no-op. */
void dcms_sign_key_free(struct dcms_sign_key *k);
const unsigned char *dcms_sign_key_public(const struct dcms_sign_key *k);
/* Key id: the first 16 hex digits of SHA-256 of the public key (17 bytes with NUL). */
const char *dcms_sign_key_id(const struct dcms_sign_key *k);
void dcms_sign_key_id_of(const unsigned char pk[DCMS_SIGN_PUBLIC_LEN], char out[17]);
/* Detached signature of `len` bytes. Thread-safe. */
enum dcms_err dcms_sign_detached(const struct dcms_sign_key *k, const void *msg, size_t len,
                                 unsigned char sig[DCMS_SIGN_BYTES]) DCMS_MUST_CHECK;
/* True when `sig` is a valid signature of `msg` by `pk`. */
bool dcms_sign_verify(const unsigned char pk[DCMS_SIGN_PUBLIC_LEN], const void *msg, size_t len,
                      const unsigned char sig[DCMS_SIGN_BYTES]);

/* ---- authenticated encryption: AES-256-GCM ---- */

#define DCMS_AEAD_KEY_LEN 32
#define DCMS_AEAD_NONCE_LEN 12
#define DCMS_AEAD_TAG_LEN 16

/*
 * Encrypts `len` bytes of `pt` under `key` with `nonce` (never reuse a
 * nonce under one key) and associated data `aad` (may be NULL with
 * aad_len 0) into `out`, which receives len ciphertext bytes followed by
 * the DCMS_AEAD_TAG_LEN-byte tag (out may equal pt). DCMS_ERR_CRYPTO if
 * OpenSSL fails. Thread-safe.
 */
enum dcms_err dcms_aead_seal(const unsigned char key[DCMS_AEAD_KEY_LEN],
                             const unsigned char nonce[DCMS_AEAD_NONCE_LEN], const void *aad,
                             size_t aad_len, const void *pt, size_t len,
                             unsigned char *out) DCMS_MUST_CHECK;

/*
 * Decrypts `len` bytes of `ct` (ciphertext followed by the tag, so len >=
 * DCMS_AEAD_TAG_LEN) into `out` (len - DCMS_AEAD_TAG_LEN bytes; may equal
 * ct). DCMS_ERR_CRYPTO when the tag, key, nonce or associated data do not
 * match; `out` is wiped then. Thread-safe.
 */
enum dcms_err dcms_aead_open(const unsigned char key[DCMS_AEAD_KEY_LEN],
                             const unsigned char nonce[DCMS_AEAD_NONCE_LEN], const void *aad,
                             size_t aad_len, const void *ct, size_t len,
                             unsigned char *out) DCMS_MUST_CHECK;

/*
 * Initializes libsodium and makes jansson wipe every block it frees (a JSON
 * tree may hold a password from a login body or an issued token); call once
 * at start, before other threads use jansson. DCMS_ERR_CRYPTO on failure.
 */
enum dcms_err dcms_crypto_init(void) DCMS_MUST_CHECK;

#endif
