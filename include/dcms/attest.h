/*
 * AWS Nitro attestation documents: parse, verify against a trust root and an
 * appraisal policy, report; and the local attestation module that issues
 * documents in the same format with a dev CA.
 *
 * The verifier follows the AWS Nitro Enclaves attestation-document
 * checklist point by point; src/attestation/README.md numbers its steps and
 * describes the design. Everything here is plain C: no
 * jansson except dcms_attest_report_to_json(), no HTTP.
 *
 *   struct dcms_attest_verifier *v;
 *   dcms_attest_verifier_new(pem, pem_len, &v, ei);
 *   struct dcms_attest_policy pol;
 *   dcms_attest_policy_init(&pol);            // 5 min max age, no debug
 *   struct dcms_attest_report rep;
 *   dcms_attest_verify(v, doc, doc_len, &pol, &rep);
 *   if (rep.valid) ... rep.doc->pcrs[0] ...
 *   dcms_attest_report_release(&rep);
 */
#ifndef DCMS_ATTEST_H
#define DCMS_ATTEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "dcms/err.h"

/* Largest document accepted: AWS's 16 KiB payload plus the COSE envelope. */
#define DCMS_ATTEST_MAX_DOC_BYTES 17408u
#define DCMS_ATTEST_MAX_PCRS 32u
#define DCMS_ATTEST_PCR_MAX_LEN 64u
#define DCMS_ATTEST_MAX_CABUNDLE 8u
#define DCMS_ATTEST_MAX_FIELD_BYTES 1024u /* public_key, user_data, nonce, each certificate */
#define DCMS_ATTEST_MODULE_ID_MAX 256u
#define DCMS_ATTEST_SHA384_LEN 48u

/* Why a document was refused; each value is a distinct code in reports. */
enum dcms_attest_failure {
    DCMS_ATTEST_OK = 0,
    DCMS_ATTEST_FAIL_DECODE,     /* not one well-formed CBOR item of acceptable size */
    DCMS_ATTEST_FAIL_SYNTAX,     /* COSE_Sign1 or payload structure, types, lengths */
    DCMS_ATTEST_FAIL_CHAIN,      /* certificates, root pin, chain, validity time */
    DCMS_ATTEST_FAIL_SIGNATURE,  /* COSE ES384 signature */
    DCMS_ATTEST_FAIL_FRESHNESS,  /* policy: document too old or from the future */
    DCMS_ATTEST_FAIL_NONCE,      /* policy: nonce missing or different */
    DCMS_ATTEST_FAIL_PCR,        /* policy: a PCR differs from the expected value */
    DCMS_ATTEST_FAIL_DEBUG,      /* policy: debug-mode enclave (PCR0-2 all zero) */
    DCMS_ATTEST_FAIL_PUBLIC_KEY, /* policy: public_key missing or different */
};

/* "decode", "syntax", ... ; NULL for DCMS_ATTEST_OK. */
const char *dcms_attest_failure_code(enum dcms_attest_failure f);

/* A borrowed byte range. */
struct dcms_attest_bytes {
    const unsigned char *ptr;
    size_t len;
};

/*
 * A decoded document. Byte views point into memory owned by the document
 * (the decoded CBOR items, kept by the parser next to this struct, out of
 * callers' sight), valid until dcms_attest_doc_free(). Only
 * dcms_attest_parse() and dcms_attest_verify() make documents that
 * dcms_attest_doc_free() accepts. Fields are
 * only meaningful to callers after verification passed (checklist step 17, see
 * src/attestation/README.md).
 */
struct dcms_attest_doc {
    bool tagged; /* COSE tag 18 was present */
    struct dcms_attest_bytes protected_hdr, payload, signature;
    char module_id[DCMS_ATTEST_MODULE_ID_MAX + 1];
    uint64_t timestamp_ms;
    uint32_t pcr_mask; /* bit i set: PCR i present */
    struct dcms_attest_bytes pcrs[DCMS_ATTEST_MAX_PCRS];
    struct dcms_attest_bytes certificate;
    struct dcms_attest_bytes cabundle[DCMS_ATTEST_MAX_CABUNDLE];
    size_t ncabundle;
    bool has_public_key, has_user_data, has_nonce; /* false when absent or null */
    struct dcms_attest_bytes public_key, user_data, nonce;
    bool payload_indefinite; /* the payload map used the indefinite-length form */
};

/*
 * Decodes `len` bytes (checklist steps 1-9, no cryptography). On success
 * *out is a new document for dcms_attest_doc_free(). Otherwise returns
 * DCMS_ERR_VALIDATION (or DCMS_ERR_NOMEM), sets *failure to DECODE or SYNTAX
 * and writes a precise reason into `reason`. Thread-safe.
 */
enum dcms_err dcms_attest_parse(const unsigned char *p, size_t len, struct dcms_attest_doc **out,
                                enum dcms_attest_failure *failure, char *reason,
                                size_t reason_len) DCMS_MUST_CHECK;
void dcms_attest_doc_free(struct dcms_attest_doc *d);

/* The appraisal policy. Start from dcms_attest_policy_init(). */
struct dcms_attest_policy {
    int64_t now_ms;          /* 0: the wall clock */
    int64_t max_age_ms;      /* < 0: no freshness check */
    int64_t max_skew_ms;     /* how far in the future T may be (freshness) */
    bool check_chain_at_now; /* also require every certificate valid at now */
    bool allow_debug;        /* accept PCR0-2 all zero */
    uint32_t expected_pcr_mask;
    unsigned char expected_pcrs[DCMS_ATTEST_MAX_PCRS][DCMS_ATTEST_PCR_MAX_LEN];
    size_t expected_pcr_len[DCMS_ATTEST_MAX_PCRS];
    const unsigned char *nonce; /* NULL: no nonce expected; borrowed */
    size_t nonce_len;
    const unsigned char *public_key; /* NULL: no key required; borrowed */
    size_t public_key_len;
};

/* Defaults: max age 5 min, skew 60 s, chain also checked at now, no debug, nothing expected. */
void dcms_attest_policy_init(struct dcms_attest_policy *pol);
/* Sets the expected value of PCR `index`; DCMS_ERR_VALIDATION on a bad index or length. */
enum dcms_err dcms_attest_policy_expect_pcr(struct dcms_attest_policy *pol, unsigned index,
                                            const unsigned char *value, size_t len) DCMS_MUST_CHECK;

#define DCMS_ATTEST_MAX_CHECKS 24
#define DCMS_ATTEST_REASON_MAX 200

struct dcms_attest_check {
    const char *name; /* static */
    bool ok;
    char reason[DCMS_ATTEST_REASON_MAX]; /* why it failed, or what passed */
};

/*
 * The outcome of one verification: every check run, in order, with its
 * result. Caller-owned storage; dcms_attest_report_release() frees `doc`.
 * `doc` is set only when steps 1-16 passed (the fields are authenticated).
 */
struct dcms_attest_report {
    bool valid;
    enum dcms_attest_failure failure;
    struct dcms_attest_check checks[DCMS_ATTEST_MAX_CHECKS];
    size_t nchecks;
    struct dcms_attest_doc *doc;
};

void dcms_attest_report_release(struct dcms_attest_report *rep);

/*
 * A trust root and its cache of verified chains. Thread-safe: one verifier
 * serves every request thread.
 */
struct dcms_attest_verifier;

/* A verifier trusting the one certificate in `pem` (PEM text). DCMS_ERR_CONFIG if unreadable. */
enum dcms_err dcms_attest_verifier_new(const char *pem, size_t pem_len,
                                       struct dcms_attest_verifier **out,
                                       struct dcms_errinfo *ei) DCMS_MUST_CHECK;
void dcms_attest_verifier_free(struct dcms_attest_verifier *v);

/* The AWS Nitro Enclaves root G1 compiled into dcms (PEM, NUL-terminated). */
extern const char dcms_aws_nitro_root_g1[];
extern const size_t dcms_aws_nitro_root_g1_len;

/*
 * Verifies `len` bytes under `pol` and fills `rep` (initialized here). A
 * refused document is still DCMS_OK: look at rep->valid and rep->failure.
 * Other errors (DCMS_ERR_NOMEM, DCMS_ERR_CRYPTO) mean no verdict. Always
 * release `rep`. Thread-safe.
 */
enum dcms_err dcms_attest_verify(struct dcms_attest_verifier *v, const unsigned char *doc,
                                 size_t len, const struct dcms_attest_policy *pol,
                                 struct dcms_attest_report *rep) DCMS_MUST_CHECK;

/*
 * {"valid", "failure", "checks": [{name, ok, reason}], "document": {...} | null}
 * with byte fields and PCRs in lowercase hex. New reference, NULL on OOM.
 */
json_t *dcms_attest_report_to_json(const struct dcms_attest_report *rep);

/*
 * The local attestation module: a dev root CA and an intermediate (P-384)
 * kept in a directory, issuing Nitro-format documents for local workloads.
 */
struct dcms_attest_local;

/*
 * Loads the dev CA from `dir`, creating the directory (0700) and the CA
 * (files 0600) on first use. DCMS_ERR_IO / DCMS_ERR_CRYPTO with a message.
 */
enum dcms_err dcms_attest_local_open(const char *dir, struct dcms_attest_local **out,
                                     struct dcms_errinfo *ei) DCMS_MUST_CHECK;
void dcms_attest_local_free(struct dcms_attest_local *m);
/* The dev root certificate as PEM (owned by the module). */
const char *dcms_attest_local_root_pem(const struct dcms_attest_local *m, size_t *len_out);

/*
 * What to measure and bind. Paths are files read whole. The signing
 * certificate is one that dcms_attest_image_verify() accepted for this image.
 */
struct dcms_attest_workload {
    const char *image_path;            /* PCR0 */
    const unsigned char *image_pcr0;   /* PCR0 already measured (an immutable image); NULL:
                                          image_path is measured */
    const char *launcher_path;         /* PCR1 */
    const char *config_path;           /* PCR2 */
    const unsigned char *signing_cert; /* DER, measured as PCR8; NULL: unsigned */
    size_t signing_cert_len;
    bool debug;                                          /* all-zero PCRs, as Nitro debug mode */
    const char *module_id;                               /* NULL: "dcms-local-enc0" */
    const unsigned char *nonce, *user_data, *public_key; /* NULL: absent */
    size_t nonce_len, user_data_len, public_key_len;     /* each at most 1024 */
};

/*
 * Measures the workload and issues a signed document (COSE_Sign1, untagged)
 * with a fresh 3-hour leaf certificate. *doc_out is malloc'd. Thread-safe.
 */
enum dcms_err dcms_attest_local_issue(struct dcms_attest_local *m,
                                      const struct dcms_attest_workload *w, unsigned char **doc_out,
                                      size_t *len_out, struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* Computes the SHA-384 of a file (the PCR measurement). DCMS_ERR_IO if unreadable. */
enum dcms_err dcms_attest_measure_file(const char *path, unsigned char out[DCMS_ATTEST_SHA384_LEN],
                                       struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * Signed workload images, as Nitro signs an EIF. An image may come with a
 * detached signature `<image>.sig`: CBOR, the same structure as an EIF's
 * signature section,
 *
 *   [ {"signing_certificate": bstr (the X.509 certificate, PEM),
 *      "signature": bstr (COSE_Sign1, untagged, ES384 over the payload
 *                         {"register_index": 0, "register_value": bstr PCR0})} ]
 *
 * PCR0 is what the local attestation module reports for the image (the
 * SHA-384 of the image file). PCR8 is measured from the certificate exactly
 * as Nitro does: SHA-384(48 zero bytes || SHA-384(certificate DER)), a zeroed
 * PCR extended once. Keys and certificates are EC P-384, as nitro-cli wants.
 */
#define DCMS_IMAGE_SIG_MAX_BYTES (64u << 10)

/* Nitro's measurement of one blob: SHA-384(48 zero bytes || SHA-384(data)). DCMS_ERR_CRYPTO. */
enum dcms_err dcms_attest_pcr_extend(const unsigned char *data, size_t len,
                                     unsigned char out[DCMS_ATTEST_SHA384_LEN]) DCMS_MUST_CHECK;

/*
 * PCR8 of a signing certificate given as PEM or DER: the extend of its DER.
 * DCMS_ERR_VALIDATION when `cert` is not one certificate.
 */
enum dcms_err dcms_attest_signer_pcr8(const unsigned char *cert, size_t len,
                                      unsigned char pcr8[DCMS_ATTEST_SHA384_LEN],
                                      struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * Signs an image whose PCR0 is `pcr0` with a P-384 private key (PEM, which
 * the caller wipes) and its certificate (PEM or DER). *sig_out (malloc'd)
 * is the `.sig` file's content. DCMS_ERR_VALIDATION: the key or the
 * certificate is unusable or they do not belong together.
 */
enum dcms_err dcms_attest_image_sign(const unsigned char pcr0[DCMS_ATTEST_SHA384_LEN],
                                     const unsigned char *key_pem, size_t key_len,
                                     const unsigned char *cert, size_t cert_len,
                                     unsigned char **sig_out, size_t *sig_len,
                                     struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* The signer of a verified image: its certificate (DER, malloc'd) and PCR8. */
struct dcms_attest_image_signer {
    unsigned char *cert_der;
    size_t cert_der_len;
    unsigned char pcr8[DCMS_ATTEST_SHA384_LEN];
    char subject[256]; /* the certificate's subject, one line, for messages */
};

/*
 * Verifies a `.sig` file's content against an image measuring `pcr0`: the
 * structure, a P-384 certificate, the ES384 signature with its key, and the
 * signed PCR0 equal to `pcr0`. DCMS_ERR_VALIDATION with the reason when it
 * does not verify; on success fills `out` (release it). Thread-safe.
 */
enum dcms_err dcms_attest_image_verify(const unsigned char pcr0[DCMS_ATTEST_SHA384_LEN],
                                       const unsigned char *sig, size_t sig_len,
                                       struct dcms_attest_image_signer *out,
                                       struct dcms_errinfo *ei) DCMS_MUST_CHECK;
void dcms_attest_image_signer_release(struct dcms_attest_image_signer *s);

/* True when all `len` bytes are zero: such a PCR pins nothing (debug mode, unsigned image). */
bool dcms_attest_pcr_is_zero(const unsigned char *p, size_t len);

/*
 * What dcmsd keeps in struct dcms_app: the AWS verifier (embedded root, or
 * the PEM file named by DCMS_ATTEST_AWS_ROOT), the local module under
 * $DCMS_DATA_DIR/attestation and a verifier for its root.
 */
struct dcms_attest_ctx {
    struct dcms_attest_verifier *aws;
    struct dcms_attest_verifier *local;
    struct dcms_attest_local *module;
};

/* `aws_root_path` empty or NULL: the embedded root. `local_dir` NULL: no local module. */
enum dcms_err dcms_attest_ctx_new(const char *aws_root_path, const char *local_dir,
                                  struct dcms_attest_ctx **out,
                                  struct dcms_errinfo *ei) DCMS_MUST_CHECK;
void dcms_attest_ctx_free(struct dcms_attest_ctx *c);

#endif
