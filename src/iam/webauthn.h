/*
 * WebAuthn verification without the store (webauthn.c): clientDataJSON,
 * authenticator data, COSE public keys (ES256, EdDSA/Ed25519, RS256),
 * attestation statements ("none", "packed" self and x5c, "fido-u2f") and
 * assertion signatures. Everything a client sends is parsed with explicit
 * bounds: sizes, CBOR nesting depth, declared lengths, trailing bytes. The
 * routes and dcms_iam_webauthn_verify_assertion() call exactly this code,
 * and so do the unit tests with the shared vectors.
 */
#ifndef DCMS_IAM_WEBAUTHN_H
#define DCMS_IAM_WEBAUTHN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "dcms/err.h"

#define WA_ALG_ES256 (-7)
#define WA_ALG_EDDSA (-8)
#define WA_ALG_RS256 (-257)

#define WA_CRED_ID_MAX 1023     /* WebAuthn: credential ids are at most 1023 bytes */
#define WA_CLIENT_DATA_MAX 4096 /* clientDataJSON */
#define WA_AUTH_DATA_MAX 4096   /* authenticatorData (attested credential data included) */
#define WA_ATT_OBJECT_MAX 16384 /* attestationObject (certificates included) */
#define WA_SIGNATURE_MAX 1024   /* RS256 with a 8192-bit key */
#define WA_COSE_KEY_MAX 2048    /* RSA moduli up to 8192 bits */
#define WA_CBOR_MAX_DEPTH 8

enum {
    WA_FLAG_UP = 0x01,
    WA_FLAG_UV = 0x04,
    WA_FLAG_BE = 0x08,
    WA_FLAG_BS = 0x10,
    WA_FLAG_AT = 0x40,
    WA_FLAG_ED = 0x80,
};

/* The relying party: its id and the origins ceremonies may come from. */
struct wa_rp {
    const char *rp_id;
    const char *origins; /* comma-separated, as DCMS_WEBAUTHN_ORIGINS */
};

/* Parsed authenticator data; the pointers point into the parsed buffer. */
struct wa_authdata {
    const unsigned char *rp_id_hash; /* 32 bytes */
    unsigned char flags;
    uint32_t sign_count;
    bool attested; /* AT: the fields below are set */
    unsigned char aaguid[16];
    const unsigned char *cred_id;
    size_t cred_id_len;
    const unsigned char *cose_key;
    size_t cose_key_len;
};

/* NULL, or what is wrong with the authenticator data. */
const char *wa_authdata_parse(const unsigned char *p, size_t n, struct wa_authdata *out);

/* NULL and *pkey, *alg set; or what is wrong with the COSE_Key (exactly one CBOR map). */
const char *wa_cose_key_decode(const unsigned char *p, size_t n, int *alg, EVP_PKEY **pkey);

/* Whether `sig` over `msg` verifies with `pkey` under the COSE algorithm `alg`. */
bool wa_signature_ok(EVP_PKEY *pkey, int alg, const unsigned char *msg, size_t n,
                     const unsigned char *sig, size_t siglen);

/* The challenge member of a clientDataJSON (base64url text) into out; false if there is none. */
bool wa_client_data_challenge(const unsigned char *p, size_t n, char *out, size_t cap);

/*
 * The sign counter rule: when the stored or the received counter is
 * non-zero, the received one must be greater (otherwise the authenticator
 * may have been cloned).
 */
bool wa_counter_ok(uint32_t stored, uint32_t received);

/* What a verified registration established. Pointers point into the attestation object. */
struct wa_registration {
    char fmt[16];     /* "none", "packed", "fido-u2f" */
    char att_type[8]; /* "none", "self", "basic" */
    char aaguid[37];  /* canonical UUID text */
    struct wa_authdata ad;
    int alg;
    bool user_verified;
};

/*
 * Verifies a registration (navigator.credentials.create()): clientDataJSON
 * (type webauthn.create, `challenge`, an allowed origin), the attestation
 * object, the authenticator data (rpIdHash, UP, UV when required, attested
 * credential data) and the attestation statement. Problems are recorded in
 * `ei` naming response.clientDataJSON / response.attestationObject.
 */
enum dcms_err wa_verify_registration(const unsigned char *att, size_t att_len,
                                     const unsigned char *cdj, size_t cdj_len,
                                     const char *challenge, const struct wa_rp *rp, bool require_uv,
                                     struct wa_registration *out,
                                     struct dcms_errinfo *ei) DCMS_MUST_CHECK;

struct wa_assertion_in {
    const unsigned char *auth_data, *client_data, *signature, *cose_key;
    size_t auth_data_len, client_data_len, signature_len, cose_key_len;
};

struct wa_assertion {
    unsigned char flags;
    uint32_t sign_count;
    bool user_present, user_verified;
};

/*
 * Verifies an assertion (navigator.credentials.get()) against the stored
 * COSE public key: clientDataJSON (type webauthn.get, `challenge`, origin),
 * rpIdHash, UP, UV when required, and the signature over authenticatorData
 * || SHA-256(clientDataJSON). The counter rule is the caller's (it needs the
 * stored counter). Problems name response.clientDataJSON,
 * response.authenticatorData or response.signature.
 */
enum dcms_err wa_verify_assertion(const struct wa_assertion_in *in, const char *challenge,
                                  const struct wa_rp *rp, bool require_uv, struct wa_assertion *out,
                                  struct dcms_errinfo *ei) DCMS_MUST_CHECK;

#endif
