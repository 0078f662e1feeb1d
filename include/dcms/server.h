/*
 * The HTTP server (libmicrohttpd with an epoll thread pool). main.c starts
 * it, waits for a signal, drains it and stops it.
 */
#ifndef DCMS_SERVER_H
#define DCMS_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "dcms/err.h"

struct dcms_app;
struct dcms_http_server;

/*
 * Starts listening on the configured address with `threads` workers. The
 * app (and its config, store and metrics) must outlive the server.
 * DCMS_ERR_UNAVAILABLE when the address cannot be bound.
 */
enum dcms_err dcms_http_server_start(struct dcms_app *app, unsigned threads,
                                     struct dcms_http_server **out,
                                     struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* The bound port (useful with port 0). */
uint16_t dcms_http_server_port(const struct dcms_http_server *s);

/* Whether the server speaks HTTPS (DCMS_TLS_CERT_FILE is set). */
bool dcms_http_server_tls(const struct dcms_http_server *s);

/*
 * Reads DCMS_TLS_CERT_FILE and DCMS_TLS_KEY_FILE again (SIGHUP): new
 * handshakes get the new chain, established connections are not touched.
 * On failure the chain in use stays. DCMS_OK without TLS.
 */
enum dcms_err dcms_http_server_reload_tls(struct dcms_http_server *s,
                                          struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * Stops accepting connections, answers every further request with
 * "Connection: close", and waits up to `timeout_ms` for requests in flight
 * to finish. Returns the number of requests still running at the deadline.
 */
int64_t dcms_http_server_drain(struct dcms_http_server *s, unsigned timeout_ms);

/* Closes every connection and frees the server. NULL is a no-op. */
void dcms_http_server_stop(struct dcms_http_server *s);

#endif
