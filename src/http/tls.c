/*
 * The HTTPS listener's certificate: PEM chain and key loaded into GnuTLS
 * "pcert" form and handed out per handshake by dcms_tls_retrieve (the
 * callback libmicrohttpd installs with gnutls_certificate_set_retrieve_
 * function2). A reload builds a new generation and swaps one pointer, so a
 * handshake sees either the old chain or the new one, never a mix. GnuTLS
 * keeps pointing at the chain a session was given (the
 * retrieve_function2 contract: the caller keeps ownership), so old
 * generations stay allocated until the server stops; a reload costs a few
 * kilobytes.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/x509.h>
#include <sodium.h>

#include "dcms/log.h"
#include "http/tls.h"

#define CHAIN_MAX 16
#define PATH_MAX_LEN 512

struct generation {
    gnutls_pcert_st pcerts[CHAIN_MAX];
    unsigned n;
    gnutls_privkey_t key;
    char subject[256];
    struct generation *older;
};

struct dcms_tls {
    char cert_file[PATH_MAX_LEN];
    char key_file[PATH_MAX_LEN];
    _Atomic(struct generation *) current;
};

/* The listener whose chain the callback hands out (one per process). */
static _Atomic(struct dcms_tls *) active;

/*
 * TLS 1.3 only, the AEAD suites and groups of Mozilla's "modern" profile.
 * With 1.2 allowed: the same plus TLS 1.2 with ECDHE key exchange and AEAD
 * ciphers only (Mozilla "intermediate" minus the DHE suites), no CBC, no
 * static RSA key exchange, no SHA-1 signatures.
 */
static const char prio_13[] =
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305:"
    "-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:+GROUP-SECP384R1";
static const char prio_12[] =
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:"
    "+CHACHA20-POLY1305:-MAC-ALL:+AEAD:-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA:"
    "-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:+GROUP-SECP384R1:"
    "-SIGN-RSA-SHA1:-SIGN-ECDSA-SHA1:-SIGN-DSA-SHA1";

const char *dcms_tls_priorities(const char *min_version)
{
    if (strcmp(min_version, "1.3") == 0)
        return prio_13;
    if (strcmp(min_version, "1.2") == 0)
        return prio_12;
    return NULL;
}

static void generation_free(struct generation *g)
{
    while (g) {
        struct generation *older = g->older;
        for (unsigned i = 0; i < g->n; i++)
            gnutls_pcert_deinit(&g->pcerts[i]);
        if (g->key)
            gnutls_privkey_deinit(g->key);
        free(g);
        g = older;
    }
}

static bool same_public_key(gnutls_pubkey_t a, gnutls_privkey_t key)
{
    gnutls_pubkey_t b = NULL;
    gnutls_datum_t da = {0}, db = {0};
    bool same = false;
    if (gnutls_pubkey_init(&b) < 0 || gnutls_pubkey_import_privkey(b, key, 0, 0) < 0 ||
        gnutls_pubkey_export2(a, GNUTLS_X509_FMT_DER, &da) < 0 ||
        gnutls_pubkey_export2(b, GNUTLS_X509_FMT_DER, &db) < 0)
        goto out;
    same = da.size == db.size && memcmp(da.data, db.data, da.size) == 0;
out:
    gnutls_free(da.data);
    gnutls_free(db.data);
    if (b)
        gnutls_pubkey_deinit(b);
    return same;
}

static void describe(struct generation *g)
{
    gnutls_x509_crt_t crt = NULL;
    gnutls_datum_t dn = {0};
    snprintf(g->subject, sizeof(g->subject), "?");
    if (gnutls_x509_crt_init(&crt) < 0)
        return;
    if (gnutls_x509_crt_import(crt, &g->pcerts[0].cert, GNUTLS_X509_FMT_DER) >= 0 &&
        gnutls_x509_crt_get_dn3(crt, &dn, 0) >= 0) {
        snprintf(g->subject, sizeof(g->subject), "%.*s", (int)dn.size, (const char *)dn.data);
        time_t until = gnutls_x509_crt_get_expiration_time(crt);
        if (until != (time_t)-1 && until < time(NULL))
            DCMS_LOG(DCMS_LOG_WARN, "tls", "the certificate %s expired", g->subject);
    }
    gnutls_free(dn.data);
    gnutls_x509_crt_deinit(crt);
}

static enum dcms_err load(const struct dcms_tls *t, struct generation **out,
                          struct dcms_errinfo *ei)
{
    enum dcms_err e = DCMS_OK;
    gnutls_datum_t certs = {0}, key = {0};
    struct generation *g = calloc(1, sizeof(*g));
    if (!g)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    int rc;
    if ((rc = gnutls_load_file(t->cert_file, &certs)) < 0) {
        e = dcms_err_set(ei, DCMS_ERR_CONFIG, "cannot read DCMS_TLS_CERT_FILE %s: %s", t->cert_file,
                         gnutls_strerror(rc));
        goto out;
    }
    if ((rc = gnutls_load_file(t->key_file, &key)) < 0) {
        e = dcms_err_set(ei, DCMS_ERR_CONFIG, "cannot read DCMS_TLS_KEY_FILE %s: %s", t->key_file,
                         gnutls_strerror(rc));
        goto out;
    }
    g->n = CHAIN_MAX;
    if ((rc = gnutls_pcert_list_import_x509_raw(g->pcerts, &g->n, &certs, GNUTLS_X509_FMT_PEM,
                                                GNUTLS_X509_CRT_LIST_FAIL_IF_UNSORTED)) < 0) {
        g->n = 0;
        e = dcms_err_set(ei, DCMS_ERR_CONFIG,
                         "DCMS_TLS_CERT_FILE %s holds no PEM certificate chain (leaf first, at "
                         "most %d): %s",
                         t->cert_file, CHAIN_MAX, gnutls_strerror(rc));
        goto out;
    }
    if ((rc = gnutls_privkey_init(&g->key)) < 0 ||
        (rc = gnutls_privkey_import_x509_raw(g->key, &key, GNUTLS_X509_FMT_PEM, NULL, 0)) < 0) {
        e = dcms_err_set(ei, DCMS_ERR_CONFIG,
                         "DCMS_TLS_KEY_FILE %s holds no unencrypted PEM private key: %s",
                         t->key_file, gnutls_strerror(rc));
        goto out;
    }
    if (!same_public_key(g->pcerts[0].pubkey, g->key)) {
        e = dcms_err_set(ei, DCMS_ERR_CONFIG,
                         "DCMS_TLS_KEY_FILE %s is not the key of the first certificate in %s",
                         t->key_file, t->cert_file);
        goto out;
    }
    describe(g);
    *out = g;
    g = NULL;
out:
    gnutls_free(certs.data);
    if (key.data) {
        sodium_memzero(key.data, key.size);
        gnutls_free(key.data);
    }
    generation_free(g);
    return e;
}

enum dcms_err dcms_tls_new(const char *cert_file, const char *key_file, struct dcms_tls **out,
                           struct dcms_errinfo *ei)
{
    if (strlen(cert_file) >= PATH_MAX_LEN || strlen(key_file) >= PATH_MAX_LEN)
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "DCMS_TLS_CERT_FILE or _KEY_FILE is too long");
    struct dcms_tls *t = calloc(1, sizeof(*t));
    if (!t)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    memcpy(t->cert_file, cert_file, strlen(cert_file) + 1);
    memcpy(t->key_file, key_file, strlen(key_file) + 1);
    struct generation *g = NULL;
    enum dcms_err e = load(t, &g, ei);
    if (e) {
        free(t);
        return e;
    }
    atomic_store(&t->current, g);
    atomic_store(&active, t);
    *out = t;
    return DCMS_OK;
}

enum dcms_err dcms_tls_reload(struct dcms_tls *t, struct dcms_errinfo *ei)
{
    struct generation *g = NULL;
    enum dcms_err e = load(t, &g, ei);
    if (e)
        return e;
    g->older = atomic_load(&t->current);
    atomic_store(&t->current, g);
    return DCMS_OK;
}

const char *dcms_tls_subject(const struct dcms_tls *t)
{
    return atomic_load(&((struct dcms_tls *)t)->current)->subject;
}

void dcms_tls_free(struct dcms_tls *t)
{
    if (!t)
        return;
    struct dcms_tls *expected = t;
    atomic_compare_exchange_strong(&active, &expected, NULL);
    generation_free(atomic_load(&t->current));
    free(t);
}

int dcms_tls_retrieve(gnutls_session_t session, const gnutls_datum_t *req_ca_rdn, int nreqs,
                      const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length,
                      gnutls_pcert_st **pcert, unsigned int *pcert_length,
                      gnutls_privkey_t *privkey)
{
    (void)session;
    (void)req_ca_rdn;
    (void)nreqs;
    (void)pk_algos;
    (void)pk_algos_length;
    struct dcms_tls *t = atomic_load(&active);
    if (!t)
        return -1;
    struct generation *g = atomic_load(&t->current);
    *pcert = g->pcerts;
    *pcert_length = g->n;
    *privkey = g->key;
    return 0;
}
