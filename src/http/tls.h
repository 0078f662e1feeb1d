/*
 * The server certificate of dcmsd's HTTPS listener (tls.c), private to
 * src/http. libmicrohttpd runs the TLS handshakes through GnuTLS; the
 * certificate chain and key are handed to GnuTLS per handshake by
 * dcms_tls_retrieve, so a reload (SIGHUP) takes effect for the next
 * handshake while established connections keep the generation they began
 * with.
 */
#ifndef DCMS_HTTP_TLS_H
#define DCMS_HTTP_TLS_H

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>

#include "dcms/err.h"

struct dcms_tls;

/*
 * GnuTLS priority strings: "1.3" is TLS 1.3 only (Mozilla "modern"), "1.2"
 * adds TLS 1.2 with forward-secret AEAD suites only (Mozilla
 * "intermediate" without DHE); docs/operations.md explains the choice.
 * NULL for any other version.
 */
const char *dcms_tls_priorities(const char *min_version);

/*
 * Loads the PEM chain and key; fails (and says which file and why) when they
 * do not match. `map_file` (or NULL) maps client certificate fingerprints to
 * API key ids, one "<sha256 hex, colons allowed> <key id>" per line, '#'
 * comments; it is reloaded with the certificate.
 */
enum dcms_err dcms_tls_new(const char *cert_file, const char *key_file, const char *map_file,
                           struct dcms_tls **out, struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* A whole file as a NUL-terminated string (malloc; free it), or NULL. */
char *dcms_tls_read_text(const char *path);

/*
 * The API key id a connection's client certificate is mapped to: true when
 * the client sent a certificate that verifies against DCMS_TLS_CLIENT_CA_FILE
 * and whose SHA-256 fingerprint is in the map.
 */
bool dcms_tls_client_key(const struct dcms_tls *t, gnutls_session_t session, char key_id[37]);

/*
 * Loads the files again; on success the next handshake presents the new
 * chain. On failure the current chain stays in use. Called from one thread.
 */
enum dcms_err dcms_tls_reload(struct dcms_tls *t, struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* Frees every generation; only after the daemon has stopped. NULL is a no-op. */
void dcms_tls_free(struct dcms_tls *t);

/* The subject of the chain now presented (for the log). */
const char *dcms_tls_subject(const struct dcms_tls *t);

/*
 * The GnuTLS certificate callback (MHD_OPTION_HTTPS_CERT_CALLBACK). It reads
 * the process's current server (one TLS listener per process).
 */
gnutls_certificate_retrieve_function2 dcms_tls_retrieve;

#endif
