/*
 * Verifying a decoded attestation document (checklist steps 10-22, see README.md):
 * certificates, root pin, chain order and profiles, the X.509 chain to the
 * configured root, the COSE ES384 signature, validity at the document's
 * time, then the appraisal policy. Every check lands in the report.
 *
 * Order: the chain is verified structurally (signatures, constraints) with
 * OpenSSL's time checks off, then the COSE signature, then the validity
 * windows at T. So a document whose signed bytes were altered (the
 * timestamp included) is refused as "signature" whatever the altered T
 * says; the time window is a separate, cheap comparison.
 *
 * Verified chains are cached per verifier, keyed by the SHA-256 of the
 * cabundle; a cached entry remembers the last leaf under it. Same leaf: no
 * X.509 work at all. New leaf: one ECDSA verification of the leaf against
 * the cached issuing CA. See README.md.
 */
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "attestation/attest_int.h"
#include "dcms/clock.h"

const char *dcms_attest_failure_code(enum dcms_attest_failure f)
{
    switch (f) {
    case DCMS_ATTEST_OK:
        return NULL;
    case DCMS_ATTEST_FAIL_DECODE:
        return "decode";
    case DCMS_ATTEST_FAIL_SYNTAX:
        return "syntax";
    case DCMS_ATTEST_FAIL_CHAIN:
        return "chain";
    case DCMS_ATTEST_FAIL_SIGNATURE:
        return "signature";
    case DCMS_ATTEST_FAIL_FRESHNESS:
        return "freshness";
    case DCMS_ATTEST_FAIL_NONCE:
        return "nonce";
    case DCMS_ATTEST_FAIL_PCR:
        return "pcr";
    case DCMS_ATTEST_FAIL_DEBUG:
        return "debug";
    case DCMS_ATTEST_FAIL_PUBLIC_KEY:
        return "public_key";
    }
    return "unknown";
}

void dcms_attest_policy_init(struct dcms_attest_policy *pol)
{
    memset(pol, 0, sizeof(*pol));
    pol->max_age_ms = 5 * 60 * 1000;
    pol->max_skew_ms = 60 * 1000;
    pol->check_chain_at_now = true;
}

enum dcms_err dcms_attest_policy_expect_pcr(struct dcms_attest_policy *pol, unsigned index,
                                            const unsigned char *value, size_t len)
{
    if (index >= DCMS_ATTEST_MAX_PCRS || (len != 32 && len != 48 && len != 64))
        return DCMS_ERR_VALIDATION;
    memcpy(pol->expected_pcrs[index], value, len);
    pol->expected_pcr_len[index] = len;
    pol->expected_pcr_mask |= 1u << index;
    return DCMS_OK;
}

void dcms_attest_report_release(struct dcms_attest_report *rep)
{
    if (!rep)
        return;
    dcms_attest_doc_free(rep->doc);
    rep->doc = NULL;
}

/* ---- verifier ---------------------------------------------------------- */

static void entry_clear(struct attest_cache_entry *en)
{
    X509_STORE_free(en->partial);
    EVP_PKEY_free(en->leaf_key);
    X509_free(en->issuer);
    memset(en, 0, sizeof(*en));
}

enum dcms_err dcms_attest_verifier_new(const char *pem, size_t pem_len,
                                       struct dcms_attest_verifier **out, struct dcms_errinfo *ei)
{
    *out = NULL;
    struct dcms_attest_verifier *v = calloc(1, sizeof(*v));
    if (!v)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    enum dcms_err e = DCMS_OK;
    BIO *bio = NULL;
    if (pem_len > INT32_MAX || !(bio = BIO_new_mem_buf(pem, (int)pem_len))) {
        e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
        goto out;
    }
    v->root = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    if (!v->root) {
        e = dcms_err_set(ei, DCMS_ERR_CONFIG,
                         "the attestation trust root is not a PEM certificate");
        goto out;
    }
    unsigned char *der = NULL;
    int n = i2d_X509(v->root, &der);
    if (n <= 0) {
        e = dcms_err_set(ei, DCMS_ERR_CRYPTO, "cannot encode the attestation trust root");
        goto out;
    }
    v->root_der = der;
    v->root_der_len = (size_t)n;
    if (!(v->store = X509_STORE_new()) || X509_STORE_add_cert(v->store, v->root) != 1) {
        e = dcms_err_set(ei, DCMS_ERR_CRYPTO, "cannot build the attestation trust store");
        goto out;
    }
    if (pthread_mutex_init(&v->lock, NULL) != 0) {
        e = dcms_err_set(ei, DCMS_ERR_INTERNAL, "cannot create a mutex");
        goto out;
    }
    v->lock_ok = true;
out:
    BIO_free(bio);
    if (e)
        dcms_attest_verifier_free(v);
    else
        *out = v;
    return e;
}

void dcms_attest_verifier_free(struct dcms_attest_verifier *v)
{
    if (!v)
        return;
    for (size_t i = 0; i < ATTEST_CACHE_SLOTS; i++)
        entry_clear(&v->cache[i]);
    X509_STORE_free(v->store);
    X509_free(v->root);
    OPENSSL_free(v->root_der);
    if (v->lock_ok)
        pthread_mutex_destroy(&v->lock);
    free(v);
}

/* ---- report helpers ---------------------------------------------------- */

DCMS_PRINTF(4, 5)
static void check(struct dcms_attest_report *rep, const char *name, enum dcms_attest_failure f,
                  const char *fmt, ...)
{
    if (f != DCMS_ATTEST_OK && rep->failure == DCMS_ATTEST_OK)
        rep->failure = f;
    if (rep->nchecks >= DCMS_ATTEST_MAX_CHECKS)
        return;
    struct dcms_attest_check *c = &rep->checks[rep->nchecks++];
    c->name = name;
    c->ok = f == DCMS_ATTEST_OK;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->reason, sizeof(c->reason), fmt, ap);
    va_end(ap);
}

#define PASS(rep, name, ...) check((rep), (name), DCMS_ATTEST_OK, __VA_ARGS__)
#define FAIL_CHAIN(rep, name, ...) check((rep), (name), DCMS_ATTEST_FAIL_CHAIN, __VA_ARGS__)

/* ---- certificates ------------------------------------------------------ */

/* What a chain verification leaves behind for the signature and time checks. */
struct chain_result {
    EVP_PKEY *leaf_key; /* owned reference */
    size_t n;           /* cabundle entries; index n is the leaf */
    int64_t not_before[DCMS_ATTEST_MAX_CABUNDLE + 1], not_after[DCMS_ATTEST_MAX_CABUNDLE + 1];
    const char *source; /* "verified", "leaf verified under a cached chain", "cached" */
};

static bool asn1_epoch(const ASN1_TIME *t, int64_t *out)
{
    struct tm tm;
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
        return false;
    *out = (int64_t)timegm(&tm);
    return true;
}

static bool cert_window(X509 *c, int64_t *nb, int64_t *na)
{
    return asn1_epoch(X509_get0_notBefore(c), nb) && asn1_epoch(X509_get0_notAfter(c), na);
}

static bool is_p384(EVP_PKEY *k)
{
    char group[64];
    size_t glen = 0;
    if (!k || EVP_PKEY_get_base_id(k) != EVP_PKEY_EC)
        return false;
    if (EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                       &glen) != 1)
        return false;
    return strcmp(group, "secp384r1") == 0;
}

static bool ext_critical(X509 *c, int nid)
{
    int idx = X509_get_ext_by_NID(c, nid, -1);
    return idx >= 0 && X509_EXTENSION_get_critical(X509_get_ext(c, idx));
}

/* The key and signature algorithm every certificate must use; NULL when fine. */
static const char *algo_problem(X509 *c)
{
    if (!is_p384(X509_get0_pubkey(c)))
        return "key is not an EC P-384 key";
    if (X509_get_signature_nid(c) != NID_ecdsa_with_SHA384)
        return "is not signed with ecdsa-with-SHA384";
    return NULL;
}

static const char *ca_problem(X509 *c)
{
    uint32_t fl = X509_get_extension_flags(c);
    const char *why = algo_problem(c);
    if (why)
        return why;
    if (!(fl & EXFLAG_BCONS) || !(fl & EXFLAG_CA))
        return "is not a CA (basicConstraints CA:TRUE missing)";
    if (!ext_critical(c, NID_basic_constraints))
        return "has a non-critical basicConstraints";
    if (!(fl & EXFLAG_KUSAGE) || !(X509_get_key_usage(c) & KU_KEY_CERT_SIGN))
        return "keyUsage lacks keyCertSign";
    if (!ext_critical(c, NID_key_usage))
        return "has a non-critical keyUsage";
    return NULL;
}

static const char *leaf_problem(X509 *c)
{
    uint32_t fl = X509_get_extension_flags(c);
    const char *why = algo_problem(c);
    if (why)
        return why;
    if (fl & EXFLAG_CA)
        return "is a CA certificate";
    if (!(fl & EXFLAG_KUSAGE) || !(X509_get_key_usage(c) & KU_DIGITAL_SIGNATURE))
        return "keyUsage lacks digitalSignature";
    return NULL;
}

/* The leaf's key, algorithm and usage, reported as the "leaf" check; false when it fails. */
static bool leaf_checked(struct dcms_attest_report *rep, X509 *leaf)
{
    const char *why = leaf_problem(leaf);
    if (why) {
        FAIL_CHAIN(rep, "leaf", "leaf certificate %s", why);
        return false;
    }
    PASS(rep, "leaf", "P-384 key, ecdsa-with-SHA384, end entity with digitalSignature");
    return true;
}

static X509 *parse_der(struct dcms_attest_bytes b)
{
    const unsigned char *q = b.ptr;
    X509 *c = d2i_X509(NULL, &q, (long)b.len);
    if (c && q != b.ptr + b.len) {
        X509_free(c);
        return NULL;
    }
    return c;
}

static void fingerprint(const struct dcms_attest_doc *d, unsigned char bundle[32],
                        unsigned char leaf[32])
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    bool ok = c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1;
    for (size_t i = 0; ok && i < d->ncabundle; i++) {
        unsigned char hd[9];
        size_t hl = attest_cbor_head(hd, 2, d->cabundle[i].len); /* length-prefixed */
        ok = EVP_DigestUpdate(c, hd, hl) == 1 &&
             EVP_DigestUpdate(c, d->cabundle[i].ptr, d->cabundle[i].len) == 1;
    }
    ok = ok && EVP_DigestFinal_ex(c, bundle, NULL) == 1;
    EVP_MD_CTX_free(c);
    if (!ok ||
        EVP_Digest(d->certificate.ptr, d->certificate.len, leaf, NULL, EVP_sha256(), NULL) != 1) {
        /* Unreachable in practice; a unique value keeps the cache from matching. */
        RAND_bytes(bundle, 32);
        RAND_bytes(leaf, 32);
    }
}

static int verify_with(X509_STORE *store, X509 *leaf, STACK_OF(X509) * untrusted, bool partial,
                       int *depth, int *chain_len)
{
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    int err = X509_V_ERR_OUT_OF_MEM;
    if (!ctx || X509_STORE_CTX_init(ctx, store, leaf, untrusted) != 1)
        goto out;
    X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(ctx);
    /* No X509_STRICT (real AWS leaves lack an AKI), no purpose, no CRLs; times checked by us. */
    unsigned long flags = X509_V_FLAG_NO_CHECK_TIME;
    if (partial)
        flags |= X509_V_FLAG_PARTIAL_CHAIN;
    X509_VERIFY_PARAM_set_flags(param, flags);
    X509_VERIFY_PARAM_set_depth(param, DCMS_ATTEST_MAX_CABUNDLE + 1);
    if (X509_verify_cert(ctx) == 1) {
        err = X509_V_OK;
        *chain_len = sk_X509_num(X509_STORE_CTX_get0_chain(ctx));
    } else {
        err = X509_STORE_CTX_get_error(ctx);
        if (err == X509_V_OK)
            err = X509_V_ERR_UNSPECIFIED;
        *depth = X509_STORE_CTX_get_error_depth(ctx);
    }
out:
    X509_STORE_CTX_free(ctx);
    return err;
}

static struct attest_cache_entry *cache_find(struct dcms_attest_verifier *v,
                                             const unsigned char fp[32], size_t n)
{
    for (size_t i = 0; i < ATTEST_CACHE_SLOTS; i++) {
        struct attest_cache_entry *en = &v->cache[i];
        if (en->used && en->ncerts == n && memcmp(en->bundle_fp, fp, 32) == 0)
            return en;
    }
    return NULL;
}

static struct attest_cache_entry *cache_slot(struct dcms_attest_verifier *v)
{
    struct attest_cache_entry *best = &v->cache[0];
    for (size_t i = 0; i < ATTEST_CACHE_SLOTS; i++) {
        if (!v->cache[i].used)
            return &v->cache[i];
        if (v->cache[i].last_used < best->last_used)
            best = &v->cache[i];
    }
    entry_clear(best);
    return best;
}

/* Remembers `leaf` (already verified) as the entry's current leaf. Under lock. */
static void entry_set_leaf(struct attest_cache_entry *en, const unsigned char leaf_fp[32],
                           EVP_PKEY *key, int64_t nb, int64_t na)
{
    EVP_PKEY_free(en->leaf_key);
    en->leaf_key = NULL;
    en->has_leaf = EVP_PKEY_up_ref(key) == 1;
    if (!en->has_leaf)
        return;
    en->leaf_key = key;
    memcpy(en->leaf_fp, leaf_fp, 32);
    en->leaf_not_before = nb;
    en->leaf_not_after = na;
}

/* Full verification of cabundle + leaf; on success caches the chain. */
static enum dcms_err chain_full(struct dcms_attest_verifier *v, const struct dcms_attest_doc *d,
                                const unsigned char bundle_fp[32], const unsigned char leaf_fp[32],
                                struct chain_result *cr, struct dcms_attest_report *rep)
{
    enum dcms_err e = DCMS_OK;
    X509 *certs[DCMS_ATTEST_MAX_CABUNDLE] = {0};
    X509 *leaf = NULL;
    STACK_OF(X509) *untrusted = NULL;
    X509_STORE *partial = NULL;
    size_t n = d->ncabundle;

    for (size_t i = 0; i < n; i++) {
        if (!(certs[i] = parse_der(d->cabundle[i]))) {
            FAIL_CHAIN(rep, "certificates", "cabundle[%zu] is not a DER X.509 certificate", i);
            goto out;
        }
    }
    if (!(leaf = parse_der(d->certificate))) {
        FAIL_CHAIN(rep, "certificates", "certificate is not a DER X.509 certificate");
        goto out;
    }
    PASS(rep, "certificates", "leaf and %zu cabundle certificates parsed", n);

    if (d->cabundle[0].len != v->root_der_len ||
        memcmp(d->cabundle[0].ptr, v->root_der, v->root_der_len) != 0) {
        FAIL_CHAIN(rep, "root_pinned", "cabundle[0] is not the configured trust root");
        goto out;
    }
    PASS(rep, "root_pinned", "cabundle[0] is byte-identical to the configured root");

    for (size_t i = 1; i <= n; i++) {
        X509 *subject = i < n ? certs[i] : leaf;
        if (X509_check_issued(certs[i - 1], subject) != X509_V_OK) {
            if (i < n)
                FAIL_CHAIN(rep, "chain_order", "cabundle[%zu] is not issued by cabundle[%zu]", i,
                           i - 1);
            else
                FAIL_CHAIN(rep, "chain_order", "the leaf is not issued by cabundle[%zu]", i - 1);
            goto out;
        }
    }
    PASS(rep, "chain_order", "root, %zu intermediates, leaf, each issued by the one before", n - 1);

    if (!leaf_checked(rep, leaf))
        goto out;

    bool name_constraints = false;
    const char *why;
    for (size_t i = 0; i < n; i++) {
        if ((why = ca_problem(certs[i]))) {
            FAIL_CHAIN(rep, "chain", "cabundle[%zu] %s", i, why);
            goto out;
        }
        name_constraints |= X509_get_ext_by_NID(certs[i], NID_name_constraints, -1) >= 0;
    }
    if (!(untrusted = sk_X509_new_null())) {
        e = DCMS_ERR_NOMEM;
        goto out;
    }
    for (size_t i = 1; i < n; i++) {
        if (!sk_X509_push(untrusted, certs[i])) {
            e = DCMS_ERR_NOMEM;
            goto out;
        }
    }
    int depth = -1, chain_len = 0;
    int err = verify_with(v->store, leaf, untrusted, false, &depth, &chain_len);
    if (err == X509_V_ERR_OUT_OF_MEM) {
        e = DCMS_ERR_NOMEM;
        goto out;
    }
    if (err != X509_V_OK) {
        FAIL_CHAIN(rep, "chain", "chain does not verify at depth %d: %s", depth,
                   X509_verify_cert_error_string(err));
        goto out;
    }
    if ((size_t)chain_len != n + 1) {
        FAIL_CHAIN(rep, "chain", "the verified chain has %d certificates, the document %zu",
                   chain_len, n + 1);
        goto out;
    }
    for (size_t i = 0; i <= n; i++) {
        if (!cert_window(i < n ? certs[i] : leaf, &cr->not_before[i], &cr->not_after[i])) {
            FAIL_CHAIN(rep, "chain", "unreadable validity dates in certificate %zu", i);
            goto out;
        }
    }
    cr->n = n;
    if (!(cr->leaf_key = X509_get_pubkey(leaf))) {
        e = DCMS_ERR_NOMEM;
        goto out;
    }
    cr->source = "verified to the configured root";
    PASS(rep, "chain", "%zu certificates %s", n + 1, cr->source);

    /* Cache it. A store trusting only the issuing CA verifies a new leaf with one check. */
    if (!name_constraints && (partial = X509_STORE_new()) &&
        X509_STORE_add_cert(partial, certs[n - 1]) != 1) {
        X509_STORE_free(partial);
        partial = NULL;
    }
    pthread_mutex_lock(&v->lock);
    v->full_verifications++;
    struct attest_cache_entry *en = cache_find(v, bundle_fp, n);
    if (!en) {
        en = cache_slot(v);
        en->used = true;
        memcpy(en->bundle_fp, bundle_fp, 32);
        en->ncerts = n;
        memcpy(en->not_before, cr->not_before, n * sizeof(int64_t));
        memcpy(en->not_after, cr->not_after, n * sizeof(int64_t));
        en->partial = partial;
        partial = NULL;
        if (X509_up_ref(certs[n - 1]) == 1)
            en->issuer = certs[n - 1];
    }
    en->last_used = ++v->tick;
    entry_set_leaf(en, leaf_fp, cr->leaf_key, cr->not_before[n], cr->not_after[n]);
    pthread_mutex_unlock(&v->lock);
out:
    X509_STORE_free(partial);
    sk_X509_free(untrusted);
    for (size_t i = 0; i < n; i++)
        X509_free(certs[i]);
    X509_free(leaf);
    return e;
}

/* A new leaf under a cached cabundle: verify it against the cached issuing CA only. */
static enum dcms_err chain_leaf(struct dcms_attest_verifier *v, const struct dcms_attest_doc *d,
                                X509_STORE *partial, X509 *issuer,
                                const unsigned char bundle_fp[32], const unsigned char leaf_fp[32],
                                struct chain_result *cr, struct dcms_attest_report *rep)
{
    enum dcms_err e = DCMS_OK;
    size_t n = d->ncabundle;
    X509 *leaf = parse_der(d->certificate);
    if (!leaf) {
        FAIL_CHAIN(rep, "certificates", "certificate is not a DER X.509 certificate");
        goto out;
    }
    PASS(rep, "certificates", "leaf parsed; %zu cabundle certificates known", n);
    PASS(rep, "root_pinned", "cabundle[0] is byte-identical to the configured root (cached)");
    if (X509_check_issued(issuer, leaf) != X509_V_OK) {
        FAIL_CHAIN(rep, "chain_order", "the leaf is not issued by cabundle[%zu]", n - 1);
        goto out;
    }
    PASS(rep, "chain_order", "root, %zu intermediates, leaf, each issued by the one before", n - 1);
    if (!leaf_checked(rep, leaf))
        goto out;
    int depth = -1, chain_len = 0;
    int err = verify_with(partial, leaf, NULL, true, &depth, &chain_len);
    if (err == X509_V_ERR_OUT_OF_MEM) {
        e = DCMS_ERR_NOMEM;
        goto out;
    }
    if (err != X509_V_OK || chain_len != 2) {
        FAIL_CHAIN(rep, "chain", "leaf does not verify under the cached chain: %s",
                   X509_verify_cert_error_string(err != X509_V_OK ? err : X509_V_ERR_UNSPECIFIED));
        goto out;
    }
    if (!cert_window(leaf, &cr->not_before[n], &cr->not_after[n])) {
        FAIL_CHAIN(rep, "chain", "unreadable validity dates in the leaf certificate");
        goto out;
    }
    if (!(cr->leaf_key = X509_get_pubkey(leaf))) {
        e = DCMS_ERR_NOMEM;
        goto out;
    }
    cr->source = "verified (leaf under a cached chain)";
    PASS(rep, "chain", "%zu certificates %s", n + 1, cr->source);
    pthread_mutex_lock(&v->lock);
    v->leaf_verifications++;
    struct attest_cache_entry *en = cache_find(v, bundle_fp, n);
    if (en) {
        en->last_used = ++v->tick;
        entry_set_leaf(en, leaf_fp, cr->leaf_key, cr->not_before[n], cr->not_after[n]);
    }
    pthread_mutex_unlock(&v->lock);
out:
    X509_free(leaf);
    return e;
}

static enum dcms_err chain_check(struct dcms_attest_verifier *v, const struct dcms_attest_doc *d,
                                 struct chain_result *cr, struct dcms_attest_report *rep)
{
    unsigned char bundle_fp[32], leaf_fp[32];
    size_t n = d->ncabundle;
    fingerprint(d, bundle_fp, leaf_fp);

    X509_STORE *partial = NULL;
    X509 *issuer = NULL;
    bool hit = false;
    pthread_mutex_lock(&v->lock);
    struct attest_cache_entry *en = cache_find(v, bundle_fp, n);
    if (en) {
        en->last_used = ++v->tick;
        memcpy(cr->not_before, en->not_before, n * sizeof(int64_t));
        memcpy(cr->not_after, en->not_after, n * sizeof(int64_t));
        cr->n = n;
        if (en->has_leaf && memcmp(en->leaf_fp, leaf_fp, 32) == 0 &&
            EVP_PKEY_up_ref(en->leaf_key) == 1) {
            cr->leaf_key = en->leaf_key;
            cr->not_before[n] = en->leaf_not_before;
            cr->not_after[n] = en->leaf_not_after;
            v->cache_hits++;
            hit = true;
        } else if (en->partial && en->issuer && X509_STORE_up_ref(en->partial) == 1) {
            partial = en->partial;
            if (X509_up_ref(en->issuer) == 1) {
                issuer = en->issuer;
            } else {
                X509_STORE_free(partial);
                partial = NULL;
            }
        }
    }
    pthread_mutex_unlock(&v->lock);

    if (hit) {
        cr->source = "verified earlier (chain cache)";
        PASS(rep, "certificates", "leaf and %zu cabundle certificates known", n);
        PASS(rep, "root_pinned", "cabundle[0] is byte-identical to the configured root (cached)");
        PASS(rep, "chain_order", "root, %zu intermediates, leaf, each issued by the one before",
             n - 1);
        PASS(rep, "leaf", "P-384 key, ecdsa-with-SHA384, end entity with digitalSignature");
        PASS(rep, "chain", "%zu certificates %s", n + 1, cr->source);
        return DCMS_OK;
    }
    enum dcms_err e;
    if (partial)
        e = chain_leaf(v, d, partial, issuer, bundle_fp, leaf_fp, cr, rep);
    else
        e = chain_full(v, d, bundle_fp, leaf_fp, cr, rep);
    X509_STORE_free(partial);
    X509_free(issuer);
    return e;
}

/* First certificate whose validity window excludes `t` (seconds), with a reason. */
static bool window_ok(const struct chain_result *cr, int64_t t, char *why, size_t cap)
{
    for (size_t k = 0; k <= cr->n; k++) {
        /* Report the leaf first: it is the one that expires soonest. */
        size_t i = k == 0 ? cr->n : k - 1;
        char label[32], when[DCMS_TIME_STRLEN];
        if (i == cr->n)
            snprintf(label, sizeof(label), "leaf certificate");
        else if (i == 0)
            snprintf(label, sizeof(label), "root certificate");
        else
            snprintf(label, sizeof(label), "cabundle[%zu]", i);
        if (t < cr->not_before[i]) {
            dcms_time_format(cr->not_before[i] * 1000000, when);
            snprintf(why, cap, "%s is not valid before %s", label, when);
            return false;
        }
        if (t > cr->not_after[i]) {
            dcms_time_format(cr->not_after[i] * 1000000, when);
            snprintf(why, cap, "%s expired at %s", label, when);
            return false;
        }
    }
    return true;
}

/* ---- signature --------------------------------------------------------- */

enum dcms_err attest_sig_structure_sha384(const struct dcms_attest_doc *d,
                                          unsigned char out[DCMS_ATTEST_SHA384_LEN])
{
    static const unsigned char start[] = {0x84, 0x6a, 'S', 'i', 'g', 'n',
                                          'a',  't',  'u', 'r', 'e', '1'};
    static const unsigned char empty_aad = 0x40;
    unsigned char h1[9], h2[9];
    size_t l1 = attest_cbor_head(h1, 2, d->protected_hdr.len);
    size_t l2 = attest_cbor_head(h2, 2, d->payload.len);
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    bool ok = c && EVP_DigestInit_ex(c, EVP_sha384(), NULL) == 1 &&
              EVP_DigestUpdate(c, start, sizeof(start)) == 1 && EVP_DigestUpdate(c, h1, l1) == 1 &&
              EVP_DigestUpdate(c, d->protected_hdr.ptr, d->protected_hdr.len) == 1 &&
              EVP_DigestUpdate(c, &empty_aad, 1) == 1 && EVP_DigestUpdate(c, h2, l2) == 1 &&
              EVP_DigestUpdate(c, d->payload.ptr, d->payload.len) == 1 &&
              EVP_DigestFinal_ex(c, out, NULL) == 1;
    EVP_MD_CTX_free(c);
    return ok ? DCMS_OK : DCMS_ERR_CRYPTO;
}

/* 1: valid; 0: not valid; -1: internal failure. High S and leading zeros are accepted. */
int attest_cose_es384_ok(EVP_PKEY *key, const struct dcms_attest_doc *d)
{
    unsigned char md[DCMS_ATTEST_SHA384_LEN];
    unsigned char *der = NULL;
    int rc = -1;
    ECDSA_SIG *sig = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(d->signature.ptr, 48, NULL);
    BIGNUM *s = BN_bin2bn(d->signature.ptr + 48, 48, NULL);
    EVP_PKEY_CTX *pctx = NULL;
    if (!sig || !r || !s || ECDSA_SIG_set0(sig, r, s) != 1) {
        BN_free(r);
        BN_free(s);
        goto out;
    }
    int derlen = i2d_ECDSA_SIG(sig, &der);
    if (derlen <= 0 || attest_sig_structure_sha384(d, md))
        goto out;
    if (!(pctx = EVP_PKEY_CTX_new(key, NULL)) || EVP_PKEY_verify_init(pctx) != 1)
        goto out;
    rc = EVP_PKEY_verify(pctx, der, (size_t)derlen, md, sizeof(md)) == 1 ? 1 : 0;
out:
    EVP_PKEY_CTX_free(pctx);
    OPENSSL_free(der);
    ECDSA_SIG_free(sig);
    return rc;
}

/* ---- policy ------------------------------------------------------------ */

static bool all_zero(struct dcms_attest_bytes b)
{
    unsigned char acc = 0;
    for (size_t i = 0; i < b.len; i++)
        acc |= b.ptr[i];
    return acc == 0;
}

static void appraise(const struct dcms_attest_doc *d, const struct chain_result *cr,
                     const struct dcms_attest_policy *pol, struct dcms_attest_report *rep)
{
    int64_t now_ms = pol->now_ms ? pol->now_ms : dcms_clock_now_us() / 1000;
    /* Unsigned ms: T is any uint64 the payload carried, now is after 1970. */
    uint64_t t = d->timestamp_ms, now = now_ms > 0 ? (uint64_t)now_ms : 0;
    char why[DCMS_ATTEST_REASON_MAX];

    if (pol->max_age_ms >= 0) {
        uint64_t skew = pol->max_skew_ms > 0 ? (uint64_t)pol->max_skew_ms : 0;
        if (t > now && t - now > skew)
            check(rep, "freshness", DCMS_ATTEST_FAIL_FRESHNESS,
                  "timestamp is %llu ms in the future", (unsigned long long)(t - now));
        else if (t < now && now - t > (uint64_t)pol->max_age_ms)
            check(rep, "freshness", DCMS_ATTEST_FAIL_FRESHNESS,
                  "document is %llu s old, more than the %lld s allowed",
                  (unsigned long long)((now - t) / 1000), (long long)(pol->max_age_ms / 1000));
        else
            PASS(rep, "freshness", "document is %lld ms old",
                 t < now ? (long long)(now - t) : -(long long)(t - now));
    }
    if (pol->check_chain_at_now) {
        int64_t now_s = now_ms >= 0 ? now_ms / 1000 : -((-now_ms + 999) / 1000);
        if (window_ok(cr, now_s, why, sizeof(why)))
            PASS(rep, "chain_at_now", "every certificate is valid now");
        else
            FAIL_CHAIN(rep, "chain_at_now", "at the current time the %s", why);
    }
    if (pol->nonce) {
        if (!d->has_nonce)
            check(rep, "nonce", DCMS_ATTEST_FAIL_NONCE, "document has no nonce");
        else if (d->nonce.len != pol->nonce_len ||
                 CRYPTO_memcmp(d->nonce.ptr, pol->nonce, pol->nonce_len) != 0)
            check(rep, "nonce", DCMS_ATTEST_FAIL_NONCE, "nonce differs from the expected one");
        else
            PASS(rep, "nonce", "nonce matches");
    }
    bool debug = (d->pcr_mask & 7u) == 7u && all_zero(d->pcrs[0]) && all_zero(d->pcrs[1]) &&
                 all_zero(d->pcrs[2]);
    if (!debug)
        PASS(rep, "debug", "not a debug-mode enclave");
    else if (pol->allow_debug)
        PASS(rep, "debug", "debug-mode enclave (PCR0-2 zero), allowed by the policy");
    else
        check(rep, "debug", DCMS_ATTEST_FAIL_DEBUG,
              "debug-mode enclave (PCR0-2 all zero) refused by the policy");
    if (pol->expected_pcr_mask) {
        bool ok = true;
        for (unsigned i = 0; ok && i < DCMS_ATTEST_MAX_PCRS; i++) {
            if (!(pol->expected_pcr_mask & (1u << i)))
                continue;
            if (!(d->pcr_mask & (1u << i))) {
                check(rep, "pcrs", DCMS_ATTEST_FAIL_PCR, "PCR%u is absent", i);
                ok = false;
            } else if (d->pcrs[i].len != pol->expected_pcr_len[i] ||
                       memcmp(d->pcrs[i].ptr, pol->expected_pcrs[i], d->pcrs[i].len) != 0) {
                char got[17];
                dcms_hex_encode(got, d->pcrs[i].ptr, d->pcrs[i].len < 8 ? d->pcrs[i].len : 8);
                check(rep, "pcrs", DCMS_ATTEST_FAIL_PCR,
                      "PCR%u differs from the expected value (document has %s...)", i, got);
                ok = false;
            }
        }
        if (ok)
            PASS(rep, "pcrs", "%d expected PCRs match", __builtin_popcount(pol->expected_pcr_mask));
    }
    if (pol->public_key) {
        if (!d->has_public_key)
            check(rep, "public_key", DCMS_ATTEST_FAIL_PUBLIC_KEY, "document has no public_key");
        else if (d->public_key.len != pol->public_key_len ||
                 memcmp(d->public_key.ptr, pol->public_key, pol->public_key_len) != 0)
            check(rep, "public_key", DCMS_ATTEST_FAIL_PUBLIC_KEY,
                  "public_key differs from the required one");
        else
            PASS(rep, "public_key", "public_key matches");
    }
}

/* ---- the whole verification -------------------------------------------- */

enum dcms_err dcms_attest_verify(struct dcms_attest_verifier *v, const unsigned char *doc,
                                 size_t len, const struct dcms_attest_policy *pol,
                                 struct dcms_attest_report *rep)
{
    memset(rep, 0, sizeof(*rep));
    struct dcms_attest_doc *d = NULL;
    struct attest_parse_err pe = {0};
    struct chain_result cr = {0};
    enum dcms_err e = attest_decode(doc, len, &d, &pe);
    if (e == DCMS_ERR_NOMEM)
        goto out;
    for (size_t i = 0; i < attest_parse_nchecks; i++) {
        const char *name = attest_parse_checks[i];
        if (e && strcmp(name, pe.check) == 0) {
            check(rep, name, pe.failure, "%s", pe.reason);
            break;
        }
        if (i == 0)
            PASS(rep, name, "%zu bytes, at most %u", len, DCMS_ATTEST_MAX_DOC_BYTES);
        else if (i == 1)
            PASS(rep, name, "one well-formed CBOR item");
        else if (i == 2)
            PASS(rep, name, "COSE_Sign1 array, %s", d && d->tagged ? "tag 18" : "untagged");
        else if (i == 3)
            PASS(rep, name, "alg ES384");
        else
            PASS(rep, name, "%s map, mandatory fields present and well-typed, %d PCRs",
                 d->payload_indefinite ? "indefinite-length" : "definite-length",
                 __builtin_popcount(d->pcr_mask));
    }
    if (e) {
        e = DCMS_OK;
        goto out;
    }

    if ((e = chain_check(v, d, &cr, rep)) || rep->failure)
        goto out;

    int sig = attest_cose_es384_ok(cr.leaf_key, d);
    if (sig < 0) {
        e = DCMS_ERR_CRYPTO;
        goto out;
    }
    if (!sig) {
        check(rep, "signature", DCMS_ATTEST_FAIL_SIGNATURE,
              "ES384 signature does not verify with the leaf certificate's key");
        goto out;
    }
    PASS(rep, "signature", "ES384 signature verifies with the leaf certificate's key");

    char why[DCMS_ATTEST_REASON_MAX];
    int64_t t_s = (int64_t)(d->timestamp_ms / 1000); /* floor: notBefore may share T's second */
    if (!window_ok(&cr, t_s, why, sizeof(why))) {
        FAIL_CHAIN(rep, "chain_at_document_time", "at the document's timestamp the %s", why);
        goto out;
    }
    PASS(rep, "chain_at_document_time", "every certificate is valid at the document's timestamp");

    /* Steps 1-16 passed: the fields are authenticated and may be released. */
    rep->doc = d;
    d = NULL;
    appraise(rep->doc, &cr, pol, rep);
    rep->valid = rep->failure == DCMS_ATTEST_OK;
out:
    EVP_PKEY_free(cr.leaf_key);
    dcms_attest_doc_free(d);
    if (e) {
        dcms_attest_report_release(rep);
        rep->valid = false;
    }
    return e;
}
