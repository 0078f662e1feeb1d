/*
 * The local attestation module: a dev root CA and an intermediate (P-384,
 * ecdsa-with-SHA384, the AWS certificate profile) kept in
 * $DCMS_DATA_DIR/attestation, and documents issued in the exact AWS Nitro
 * format for workloads run by the local enclave backend.
 *
 * Each document gets a fresh P-384 leaf key and a 3-hour leaf certificate,
 * as the Nitro Security Module does, so local documents exercise the same
 * verifier paths (new leaf under a known chain) as real ones.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cbor.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "attestation/attest_int.h"
#include "dcms/fs.h"
#include "dcms/clock.h"

#define LEAF_LIFETIME_S (3 * 3600)
#define ROOT_LIFETIME_S (30LL * 365 * 86400)
#define INTERMEDIATE_LIFETIME_S (10LL * 365 * 86400)
#define LOCAL_PCRS 16
#define PATH_MAX_LEN 1200

struct dcms_attest_local {
    X509 *root, *intermediate;
    EVP_PKEY *intermediate_key;
    unsigned char *root_der, *inter_der;
    size_t root_der_len, inter_der_len;
    char *root_pem;
    size_t root_pem_len;
};

enum cert_kind { CERT_ROOT, CERT_INTERMEDIATE, CERT_LEAF };

static bool add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    bool ok = ext && X509_add_ext(x, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    return ok;
}

/* A certificate for `key` signed by `issuer_key` (self-signed when issuer is NULL). */
static X509 *make_cert(enum cert_kind kind, EVP_PKEY *key, const char *cn, X509 *issuer,
                       EVP_PKEY *issuer_key, int64_t not_before, int64_t not_after)
{
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    BIGNUM *serial = BN_new();
    unsigned char rnd[16];
    bool ok = x && name && serial && RAND_bytes(rnd, sizeof(rnd)) == 1;
    if (ok) {
        rnd[0] &= 0x7f; /* positive */
        ok = BN_bin2bn(rnd, sizeof(rnd), serial) &&
             BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(x)) &&
             X509_set_version(x, X509_VERSION_3) == 1 &&
             ASN1_TIME_set(X509_getm_notBefore(x), (time_t)not_before) &&
             ASN1_TIME_set(X509_getm_notAfter(x), (time_t)not_after) &&
             X509_NAME_add_entry_by_txt(name, "C", MBSTRING_ASC, (const unsigned char *)"US", -1,
                                        -1, 0) == 1 &&
             X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"dcms", -1,
                                        -1, 0) == 1 &&
             X509_NAME_add_entry_by_txt(name, "OU", MBSTRING_ASC,
                                        (const unsigned char *)"local attestation", -1, -1,
                                        0) == 1 &&
             X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1,
                                        0) == 1 &&
             X509_set_subject_name(x, name) == 1 &&
             X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name) == 1 &&
             X509_set_pubkey(x, key) == 1;
    }
    switch (kind) {
    case CERT_ROOT:
        ok = ok && add_ext(x, NULL, NID_basic_constraints, "critical,CA:TRUE,pathlen:1") &&
             add_ext(x, NULL, NID_key_usage, "critical,keyCertSign,cRLSign") &&
             add_ext(x, NULL, NID_subject_key_identifier, "hash");
        break;
    case CERT_INTERMEDIATE:
        ok = ok && add_ext(x, issuer, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") &&
             add_ext(x, issuer, NID_key_usage, "critical,keyCertSign,cRLSign") &&
             add_ext(x, issuer, NID_subject_key_identifier, "hash") &&
             add_ext(x, issuer, NID_authority_key_identifier, "keyid:always");
        break;
    case CERT_LEAF:
        ok = ok && add_ext(x, issuer, NID_basic_constraints, "critical,CA:FALSE") &&
             add_ext(x, issuer, NID_key_usage, "digitalSignature,nonRepudiation") &&
             add_ext(x, issuer, NID_authority_key_identifier, "keyid:always");
        break;
    }
    ok = ok && X509_sign(x, issuer_key, EVP_sha384()) > 0;
    X509_NAME_free(name);
    BN_free(serial);
    if (!ok) {
        X509_free(x);
        return NULL;
    }
    return x;
}

static bool to_der(X509 *x, unsigned char **der, size_t *len)
{
    int n = i2d_X509(x, der);
    if (n <= 0)
        return false;
    *len = (size_t)n;
    return true;
}

/* Writes a PEM file atomically (tmp + rename), mode 0600. */
static enum dcms_err write_pem(const char *dir, const char *name, X509 *cert, EVP_PKEY *key,
                               struct dcms_errinfo *ei)
{
    char path[PATH_MAX_LEN], tmp[PATH_MAX_LEN + 8];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return dcms_err_set(ei, DCMS_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
    BIO *b = BIO_new_fd(fd, BIO_CLOSE);
    if (!b) {
        close(fd);
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    }
    bool ok = cert ? PEM_write_bio_X509(b, cert) == 1
                   : PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL) == 1;
    ok = ok && BIO_flush(b) == 1 && fsync(fd) == 0;
    BIO_free(b);
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return dcms_err_set(ei, DCMS_ERR_IO, "cannot write %s", path);
    }
    return DCMS_OK;
}

static enum dcms_err read_pem(const char *dir, const char *name, X509 **cert, EVP_PKEY **key,
                              struct dcms_errinfo *ei)
{
    char path[PATH_MAX_LEN];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    struct stat st;
    if (key && stat(path, &st) == 0 && (st.st_mode & 077))
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "%s is readable by others; chmod 600 it", path);
    BIO *b = BIO_new_file(path, "r");
    if (!b)
        return dcms_err_set(ei, DCMS_ERR_IO, "cannot read %s", path);
    if (cert)
        *cert = PEM_read_bio_X509(b, NULL, NULL, NULL);
    else
        *key = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    if (cert ? !*cert : !*key)
        return dcms_err_set(ei, DCMS_ERR_CRYPTO, "%s is not a PEM %s", path,
                            cert ? "certificate" : "private key");
    return DCMS_OK;
}

/* Generates the dev CA and writes it; intermediate.crt last, so its presence means "complete". */
static enum dcms_err create_ca(const char *dir, struct dcms_attest_local *m,
                               struct dcms_errinfo *ei)
{
    enum dcms_err e = DCMS_OK;
    EVP_PKEY *root_key = EVP_EC_gen("P-384");
    m->intermediate_key = EVP_EC_gen("P-384");
    int64_t now = dcms_clock_now_us() / 1000000;
    if (!root_key || !m->intermediate_key) {
        e = dcms_err_set(ei, DCMS_ERR_CRYPTO, "cannot generate P-384 keys");
        goto out;
    }
    m->root = make_cert(CERT_ROOT, root_key, "dcms local attestation root", NULL, root_key,
                        now - 3600, now + ROOT_LIFETIME_S);
    if (m->root)
        m->intermediate =
            make_cert(CERT_INTERMEDIATE, m->intermediate_key, "dcms local attestation intermediate",
                      m->root, root_key, now - 3600, now + INTERMEDIATE_LIFETIME_S);
    if (!m->root || !m->intermediate) {
        e = dcms_err_set(ei, DCMS_ERR_CRYPTO, "cannot create the dev CA certificates");
        goto out;
    }
    if ((e = write_pem(dir, "root.key", NULL, root_key, ei)) ||
        (e = write_pem(dir, "root.crt", m->root, NULL, ei)) ||
        (e = write_pem(dir, "intermediate.key", NULL, m->intermediate_key, ei)) ||
        (e = write_pem(dir, "intermediate.crt", m->intermediate, NULL, ei)))
        goto out;
out:
    EVP_PKEY_free(root_key);
    return e;
}

enum dcms_err dcms_attest_local_open(const char *dir, struct dcms_attest_local **out,
                                     struct dcms_errinfo *ei)
{
    *out = NULL;
    if (strlen(dir) > PATH_MAX_LEN - 32)
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "attestation directory path is too long");
    struct dcms_attest_local *m = calloc(1, sizeof(*m));
    if (!m)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    enum dcms_err e = DCMS_OK;
    BIO *b = NULL;
    if ((e = dcms_fs_mkdirs(dir, ei)))
        goto out;
    char probe[PATH_MAX_LEN];
    snprintf(probe, sizeof(probe), "%s/intermediate.crt", dir);
    if (access(probe, F_OK) == 0) {
        if ((e = read_pem(dir, "root.crt", &m->root, NULL, ei)) ||
            (e = read_pem(dir, "intermediate.crt", &m->intermediate, NULL, ei)) ||
            (e = read_pem(dir, "intermediate.key", NULL, &m->intermediate_key, ei)))
            goto out;
        if (X509_check_private_key(m->intermediate, m->intermediate_key) != 1) {
            e = dcms_err_set(ei, DCMS_ERR_CRYPTO,
                             "%s/intermediate.key does not match its certificate", dir);
            goto out;
        }
    } else if ((e = create_ca(dir, m, ei))) {
        goto out;
    }
    if (!to_der(m->root, &m->root_der, &m->root_der_len) ||
        !to_der(m->intermediate, &m->inter_der, &m->inter_der_len) || !(b = BIO_new(BIO_s_mem())) ||
        PEM_write_bio_X509(b, m->root) != 1) {
        e = dcms_err_set(ei, DCMS_ERR_CRYPTO, "cannot encode the dev CA");
        goto out;
    }
    char *pem;
    long n = BIO_get_mem_data(b, &pem);
    if (n <= 0 || !(m->root_pem = malloc((size_t)n + 1))) {
        e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
        goto out;
    }
    memcpy(m->root_pem, pem, (size_t)n);
    m->root_pem[n] = '\0';
    m->root_pem_len = (size_t)n;
out:
    BIO_free(b);
    if (e)
        dcms_attest_local_free(m);
    else
        *out = m;
    return e;
}

void dcms_attest_local_free(struct dcms_attest_local *m)
{
    if (!m)
        return;
    X509_free(m->root);
    X509_free(m->intermediate);
    EVP_PKEY_free(m->intermediate_key);
    OPENSSL_free(m->root_der);
    OPENSSL_free(m->inter_der);
    free(m->root_pem);
    free(m);
}

const char *dcms_attest_local_root_pem(const struct dcms_attest_local *m, size_t *len_out)
{
    if (len_out)
        *len_out = m->root_pem_len;
    return m->root_pem;
}

enum dcms_err dcms_attest_measure_file(const char *path, unsigned char out[DCMS_ATTEST_SHA384_LEN],
                                       struct dcms_errinfo *ei)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return dcms_err_set(ei, DCMS_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    enum dcms_err e = DCMS_OK;
    unsigned char buf[16384];
    if (!c || EVP_DigestInit_ex(c, EVP_sha384(), NULL) != 1) {
        e = dcms_err_set(ei, DCMS_ERR_CRYPTO, NULL);
        goto out;
    }
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
        if (EVP_DigestUpdate(c, buf, n) != 1) {
            e = dcms_err_set(ei, DCMS_ERR_CRYPTO, NULL);
            goto out;
        }
    }
    if (ferror(f)) {
        e = dcms_err_set(ei, DCMS_ERR_IO, "cannot read %s", path);
        goto out;
    }
    if (EVP_DigestFinal_ex(c, out, NULL) != 1)
        e = dcms_err_set(ei, DCMS_ERR_CRYPTO, NULL);
out:
    EVP_MD_CTX_free(c);
    fclose(f);
    return e;
}

/* Adds key → value to a map; consumes `v` (may be NULL, which fails). */
static bool map_put(cbor_item_t *m, const char *key, cbor_item_t *v)
{
    cbor_item_t *k = cbor_build_string(key);
    bool ok = k && v && cbor_map_add(m, (struct cbor_pair){.key = k, .value = v});
    if (k)
        cbor_decref(&k);
    if (v)
        cbor_decref(&v);
    return ok;
}

static cbor_item_t *opt_bstr(const unsigned char *p, size_t n)
{
    return p ? cbor_build_bytestring(p, n) : cbor_new_null();
}

static cbor_item_t *build_pcrs(unsigned char pcrs[LOCAL_PCRS][DCMS_ATTEST_SHA384_LEN])
{
    cbor_item_t *m = cbor_new_definite_map(LOCAL_PCRS);
    for (unsigned i = 0; m && i < LOCAL_PCRS; i++) {
        cbor_item_t *k = cbor_build_uint8((uint8_t)i);
        cbor_item_t *v = cbor_build_bytestring(pcrs[i], DCMS_ATTEST_SHA384_LEN);
        bool ok = k && v && cbor_map_add(m, (struct cbor_pair){.key = k, .value = v});
        if (k)
            cbor_decref(&k);
        if (v)
            cbor_decref(&v);
        if (!ok)
            cbor_decref(&m);
    }
    return m;
}

static cbor_item_t *build_bundle(const struct dcms_attest_local *m)
{
    cbor_item_t *a = cbor_new_definite_array(2);
    cbor_item_t *r = cbor_build_bytestring(m->root_der, m->root_der_len);
    cbor_item_t *i = cbor_build_bytestring(m->inter_der, m->inter_der_len);
    bool ok = a && r && i && cbor_array_push(a, r) && cbor_array_push(a, i);
    if (r)
        cbor_decref(&r);
    if (i)
        cbor_decref(&i);
    if (!ok && a)
        cbor_decref(&a);
    return a;
}

/* Signs the Sig_structure with `key`; r||s at fixed width into sig[96]. */
bool attest_cose_es384_sign(EVP_PKEY *key, const struct dcms_attest_doc *d, unsigned char sig[96])
{
    unsigned char md[DCMS_ATTEST_SHA384_LEN], der[160];
    size_t derlen = sizeof(der);
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(key, NULL);
    ECDSA_SIG *s = NULL;
    bool ok = c && attest_sig_structure_sha384(d, md) == DCMS_OK && EVP_PKEY_sign_init(c) == 1 &&
              EVP_PKEY_sign(c, der, &derlen, md, sizeof(md)) == 1;
    const unsigned char *q = der;
    ok = ok && (s = d2i_ECDSA_SIG(NULL, &q, (long)derlen)) != NULL &&
         BN_bn2binpad(ECDSA_SIG_get0_r(s), sig, 48) == 48 &&
         BN_bn2binpad(ECDSA_SIG_get0_s(s), sig + 48, 48) == 48;
    ECDSA_SIG_free(s);
    EVP_PKEY_CTX_free(c);
    return ok;
}

enum dcms_err dcms_attest_local_issue(struct dcms_attest_local *m,
                                      const struct dcms_attest_workload *w, unsigned char **doc_out,
                                      size_t *len_out, struct dcms_errinfo *ei)
{
    static const unsigned char protected_hdr[] = {0xa1, 0x01, 0x38, 0x22};
    *doc_out = NULL;
    *len_out = 0;
    enum dcms_err e = DCMS_OK;
    unsigned char pcrs[LOCAL_PCRS][DCMS_ATTEST_SHA384_LEN];
    memset(pcrs, 0, sizeof(pcrs));
    EVP_PKEY *leaf_key = NULL;
    X509 *leaf = NULL;
    unsigned char *leaf_der = NULL, *payload = NULL, *doc = NULL;
    size_t leaf_der_len = 0, payload_cap = 0;
    cbor_item_t *map = NULL;

    if ((w->nonce && w->nonce_len > DCMS_ATTEST_MAX_FIELD_BYTES) ||
        (w->user_data && w->user_data_len > DCMS_ATTEST_MAX_FIELD_BYTES) ||
        (w->public_key && w->public_key_len > DCMS_ATTEST_MAX_FIELD_BYTES)) {
        e = dcms_err_set(ei, DCMS_ERR_VALIDATION,
                         "nonce, user_data and public_key are at most "
                         "1024 bytes each");
        goto out;
    }
    if (!w->debug) {
        const char *paths[] = {w->image_pcr0 ? NULL : w->image_path, w->launcher_path,
                               w->config_path};
        if (w->image_pcr0)
            memcpy(pcrs[0], w->image_pcr0, DCMS_ATTEST_SHA384_LEN);
        for (size_t i = 0; i < 3; i++)
            if (paths[i] && (e = dcms_attest_measure_file(paths[i], pcrs[i], ei)))
                goto out;
        if (w->signing_cert &&
            (e = dcms_attest_signer_pcr8(w->signing_cert, w->signing_cert_len, pcrs[8], ei)))
            goto out;
    }

    int64_t now_ms = dcms_clock_now_us() / 1000;
    int64_t now_s = now_ms / 1000;
    const char *module_id = w->module_id ? w->module_id : "dcms-local-enc0";
    if (!(leaf_key = EVP_EC_gen("P-384")) ||
        !(leaf = make_cert(CERT_LEAF, leaf_key, module_id, m->intermediate, m->intermediate_key,
                           now_s - 60, now_s - 60 + LEAF_LIFETIME_S)) ||
        !to_der(leaf, &leaf_der, &leaf_der_len)) {
        e = dcms_err_set(ei, DCMS_ERR_CRYPTO, "cannot issue the leaf certificate");
        goto out;
    }

    map = cbor_new_definite_map(9);
    bool ok = map && map_put(map, "module_id", cbor_build_string(module_id)) &&
              map_put(map, "digest", cbor_build_string("SHA384")) &&
              map_put(map, "timestamp", cbor_build_uint64((uint64_t)now_ms)) &&
              map_put(map, "pcrs", build_pcrs(pcrs)) &&
              map_put(map, "certificate", cbor_build_bytestring(leaf_der, leaf_der_len)) &&
              map_put(map, "cabundle", build_bundle(m)) &&
              map_put(map, "public_key", opt_bstr(w->public_key, w->public_key_len)) &&
              map_put(map, "user_data", opt_bstr(w->user_data, w->user_data_len)) &&
              map_put(map, "nonce", opt_bstr(w->nonce, w->nonce_len));
    size_t payload_len = ok ? cbor_serialize_alloc(map, &payload, &payload_cap) : 0;
    if (!payload_len) {
        e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
        goto out;
    }

    struct dcms_attest_doc d = {.protected_hdr = {protected_hdr, sizeof(protected_hdr)},
                                .payload = {payload, payload_len}};
    unsigned char sig[96];
    if (!attest_cose_es384_sign(leaf_key, &d, sig)) {
        e = dcms_err_set(ei, DCMS_ERR_CRYPTO, "cannot sign the attestation document");
        goto out;
    }
    unsigned char head[9];
    size_t hl = attest_cbor_head(head, 2, payload_len);
    size_t len = 1 + 1 + sizeof(protected_hdr) + 1 + hl + payload_len + 2 + sizeof(sig);
    if (!(doc = malloc(len))) {
        e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
        goto out;
    }
    size_t pos = 0;
    doc[pos++] = 0x84;
    doc[pos++] = 0x40 | sizeof(protected_hdr);
    memcpy(doc + pos, protected_hdr, sizeof(protected_hdr));
    pos += sizeof(protected_hdr);
    doc[pos++] = 0xa0; /* unprotected: empty map */
    memcpy(doc + pos, head, hl);
    pos += hl;
    memcpy(doc + pos, payload, payload_len);
    pos += payload_len;
    doc[pos++] = 0x58;
    doc[pos++] = sizeof(sig);
    memcpy(doc + pos, sig, sizeof(sig));
    *doc_out = doc;
    *len_out = len;
    doc = NULL;
out:
    if (map)
        cbor_decref(&map);
    free(payload);
    free(doc);
    OPENSSL_free(leaf_der);
    X509_free(leaf);
    EVP_PKEY_free(leaf_key);
    return e;
}
