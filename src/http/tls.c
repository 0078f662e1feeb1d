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

#include <gnutls/crypto.h>
#include <gnutls/x509.h>
#include <sodium.h>

#include "dcms/log.h"
#include "http/tls.h"

#define CHAIN_MAX 16
#define PATH_MAX_LEN 512
#define MAP_MAX 4096

struct client_entry {
    unsigned char fp[32];
    char key_id[37];
};

struct generation {
    gnutls_pcert_st pcerts[CHAIN_MAX];
    unsigned n;
    gnutls_privkey_t key;
    char subject[256];
    struct client_entry *clients; /* the client certificate map */
    size_t nclients;
    struct generation *older;
};

struct dcms_tls {
    char cert_file[PATH_MAX_LEN];
    char key_file[PATH_MAX_LEN];
    char map_file[PATH_MAX_LEN]; /* empty: no client certificates */
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
        free(g->clients);
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

static int hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* One map line: a fingerprint of 64 hex digits (colons allowed) and a key id. */
static bool parse_map_line(const char *line, struct client_entry *out)
{
    size_t n = 0;
    const char *p = line;
    while (*p == ' ' || *p == '\t')
        p++;
    while (n < 64 && *p && *p != ' ' && *p != '\t') {
        if (*p == ':') {
            p++;
            continue;
        }
        int v = hexval(*p++);
        if (v < 0)
            return false;
        if (n % 2 == 0)
            out->fp[n / 2] = (unsigned char)(v << 4);
        else
            out->fp[n / 2] |= (unsigned char)v;
        n++;
    }
    if (n != 64 || (*p != ' ' && *p != '\t'))
        return false;
    while (*p == ' ' || *p == '\t')
        p++;
    size_t idlen = strcspn(p, " \t\r\n");
    if (idlen != 36 || p[idlen + strspn(p + idlen, " \t\r\n")] != '\0')
        return false;
    memcpy(out->key_id, p, 36);
    out->key_id[36] = '\0';
    return true;
}

static enum dcms_err load_map(const char *path, struct generation *g, struct dcms_errinfo *ei)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "cannot read DCMS_TLS_CLIENT_MAP_FILE %s", path);
    enum dcms_err e = DCMS_OK;
    char line[512];
    unsigned lineno = 0;
    while (!e && fgets(line, sizeof(line), f)) {
        lineno++;
        const char *p = line + strspn(line, " \t");
        if (*p == '#' || *p == '\n' || *p == '\r' || *p == '\0')
            continue;
        if (g->nclients == MAP_MAX) {
            e = dcms_err_set(ei, DCMS_ERR_CONFIG, "%s: more than %d entries", path, MAP_MAX);
            break;
        }
        if (g->nclients % 64 == 0) {
            struct client_entry *more =
                realloc(g->clients, (g->nclients + 64) * sizeof(*g->clients));
            if (!more) {
                e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
                break;
            }
            g->clients = more;
        }
        if (!parse_map_line(p, &g->clients[g->nclients]))
            e = dcms_err_set(ei, DCMS_ERR_CONFIG,
                             "%s line %u: expected '<SHA-256 fingerprint> <API key id>'", path,
                             lineno);
        else
            g->nclients++;
    }
    fclose(f);
    return e;
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
    if (t->map_file[0] && (e = load_map(t->map_file, g, ei)))
        goto out;
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

enum dcms_err dcms_tls_new(const char *cert_file, const char *key_file, const char *map_file,
                           struct dcms_tls **out, struct dcms_errinfo *ei)
{
    if (!map_file)
        map_file = "";
    if (strlen(cert_file) >= PATH_MAX_LEN || strlen(key_file) >= PATH_MAX_LEN ||
        strlen(map_file) >= PATH_MAX_LEN)
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "a DCMS_TLS_* file name is too long");
    struct dcms_tls *t = calloc(1, sizeof(*t));
    if (!t)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    memcpy(t->cert_file, cert_file, strlen(cert_file) + 1);
    memcpy(t->key_file, key_file, strlen(key_file) + 1);
    memcpy(t->map_file, map_file, strlen(map_file) + 1);
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

char *dcms_tls_read_text(const char *path)
{
    gnutls_datum_t d = {0};
    if (gnutls_load_file(path, &d) < 0)
        return NULL;
    char *s = malloc((size_t)d.size + 1);
    if (s) {
        memcpy(s, d.data, d.size);
        s[d.size] = '\0';
    }
    gnutls_free(d.data);
    return s;
}

bool dcms_tls_client_key(const struct dcms_tls *t, gnutls_session_t session, char key_id[37])
{
    unsigned status = 0, n = 0;
    if (!session || gnutls_certificate_verify_peers2(session, &status) < 0 || status != 0)
        return false;
    const gnutls_datum_t *peers = gnutls_certificate_get_peers(session, &n);
    unsigned char fp[32];
    if (!peers || n == 0 ||
        gnutls_hash_fast(GNUTLS_DIG_SHA256, peers[0].data, peers[0].size, fp) < 0)
        return false;
    const struct generation *g = atomic_load(&((struct dcms_tls *)t)->current);
    for (size_t i = 0; i < g->nclients; i++)
        if (sodium_memcmp(g->clients[i].fp, fp, sizeof(fp)) == 0) {
            memcpy(key_id, g->clients[i].key_id, 37);
            return true;
        }
    return false;
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
