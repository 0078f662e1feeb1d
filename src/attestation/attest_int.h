/*
 * Private to src/attestation: the decoder's error record, the verifier's
 * chain cache, and helpers shared by the parser, verifier, JSON codec,
 * local module and CLI.
 */
#ifndef DCMS_ATTEST_INT_H
#define DCMS_ATTEST_INT_H

#include <pthread.h>

#include <openssl/x509.h>

#include "dcms/attest.h"
#include "dcms/str.h"

/* Where decoding stopped: the check that failed, its failure class, why. */
struct attest_parse_err {
    const char *check; /* "size", "cbor", "cose_sign1", "protected_header", "payload" */
    enum dcms_attest_failure failure;
    char reason[DCMS_ATTEST_REASON_MAX];
};

/* The decoder's checks, in the order they run. */
extern const char *const attest_parse_checks[];
extern const size_t attest_parse_nchecks;

/* Decodes a document; on failure fills `pe` and returns DCMS_ERR_VALIDATION (or NOMEM). */
enum dcms_err attest_decode(const unsigned char *p, size_t len, struct dcms_attest_doc **out,
                            struct attest_parse_err *pe) DCMS_MUST_CHECK;

/*
 * Checks that p[0..len) is exactly one well-formed CBOR data item, nested at
 * most 16 deep, with no indefinite-length strings and no declared length
 * larger than the bytes left. NULL when fine, else a static reason.
 */
const char *attest_cbor_scan(const unsigned char *p, size_t len);

/* SHA-384 of the COSE Sig_structure built from the received bytes (checklist 15). */
enum dcms_err
attest_sig_structure_sha384(const struct dcms_attest_doc *d,
                            unsigned char out[DCMS_ATTEST_SHA384_LEN]) DCMS_MUST_CHECK;

/* Appends the CBOR head of a major type with argument `v` (minimal form) into out; returns its
 * length. */
size_t attest_cbor_head(unsigned char out[9], unsigned major, uint64_t v);

/*
 * ES384 over the COSE Sig_structure of `d` (protected_hdr and payload):
 * attest_cose_es384_sign writes r||s at fixed width into sig[96] (false on a
 * crypto failure); attest_cose_es384_ok checks d->signature (96 bytes) with
 * `key`: 1 valid, 0 not valid, -1 internal failure.
 */
bool attest_cose_es384_sign(EVP_PKEY *key, const struct dcms_attest_doc *d, unsigned char sig[96]);
int attest_cose_es384_ok(EVP_PKEY *key, const struct dcms_attest_doc *d);

#define ATTEST_CACHE_SLOTS 32

/*
 * One verified chain: the cabundle (root first) identified by the SHA-256 of
 * its DER certificates, their validity windows, a store that trusts only the
 * last cabundle certificate (to verify a new leaf with one signature check),
 * and the last leaf seen under it.
 */
struct attest_cache_entry {
    bool used;
    uint64_t last_used;
    unsigned char bundle_fp[32];
    size_t ncerts;
    int64_t not_before[DCMS_ATTEST_MAX_CABUNDLE], not_after[DCMS_ATTEST_MAX_CABUNDLE];
    X509_STORE *partial; /* NULL: new leaves need the full chain verification */
    X509 *issuer;        /* the last cabundle certificate, the one in `partial` */
    bool has_leaf;
    unsigned char leaf_fp[32];
    int64_t leaf_not_before, leaf_not_after;
    EVP_PKEY *leaf_key;
};

struct dcms_attest_verifier {
    X509 *root;
    unsigned char *root_der;
    size_t root_der_len;
    X509_STORE *store;
    pthread_mutex_t lock;
    bool lock_ok;
    uint64_t tick;
    struct attest_cache_entry cache[ATTEST_CACHE_SLOTS];
    /* Counters for tests and the benchmark (under lock). */
    uint64_t full_verifications, leaf_verifications, cache_hits;
};

/* Lowercase hex of `n` bytes, malloc'd (NULL on OOM). */
char *attest_hex(const unsigned char *p, size_t n);
/* Decodes hex (either case) of at most 2*out_cap digits; false on an odd length or a non-digit. */
bool attest_unhex(const char *s, size_t slen, unsigned char *out, size_t out_cap, size_t *out_len);

/* Standard-alphabet base64 with or without padding into a malloc'd buffer of at most `max` bytes.
 */
enum dcms_err attest_base64_decode(const char *s, size_t slen, size_t max, unsigned char **out,
                                   size_t *out_len) DCMS_MUST_CHECK;

/* Reads a whole file of at most `max` bytes into a malloc'd buffer. */
enum dcms_err attest_read_file(const char *path, size_t max, unsigned char **out, size_t *len_out,
                               struct dcms_errinfo *ei) DCMS_MUST_CHECK;

#endif
