/*
 * The request-head deadline: a client has a fixed time from the moment its
 * connection opens (or its previous request on that connection completed)
 * to deliver a whole request head. libmicrohttpd's connection timeout is an
 * idle timeout that every received byte restarts, so a client sending one
 * byte per second holds a connection for ever; this guard keeps its own
 * clock per connection and a sweeper thread shuts down the socket of every
 * connection past its deadline. libmicrohttpd then sees the socket end and
 * closes the connection itself, freeing what it holds.
 *
 * No libmicrohttpd type appears here: a connection is its socket.
 * All functions are thread-safe.
 */
#ifndef DCMS_HTTP_CONN_GUARD_H
#define DCMS_HTTP_CONN_GUARD_H

#include <stdbool.h>

#include "dcms/err.h"

struct dcms_conn_guard;
struct dcms_conn_slot;

/*
 * Starts the guard with a head deadline of `head_timeout_ms` (> 0) and its
 * sweeper thread. DCMS_ERR_NOMEM, or DCMS_ERR_INTERNAL if the thread cannot
 * start. Free with dcms_conn_guard_free after the connections are gone.
 */
enum dcms_err dcms_conn_guard_new(unsigned head_timeout_ms,
                                  struct dcms_conn_guard **out) DCMS_MUST_CHECK;

/* Stops the sweeper and frees the guard and any slot left. NULL is fine. */
void dcms_conn_guard_free(struct dcms_conn_guard *g);

/*
 * Watches socket `fd`, waiting for a head from now. NULL when out of memory
 * (the connection is then simply not watched). The caller must call
 * dcms_conn_guard_remove before the socket is closed.
 */
struct dcms_conn_slot *dcms_conn_guard_add(struct dcms_conn_guard *g, int fd);

/* The head arrived: the connection is no longer on the clock. NULL is fine. */
void dcms_conn_guard_head_done(struct dcms_conn_guard *g, struct dcms_conn_slot *s);

/* A request completed: the next head must arrive within the deadline from now. */
void dcms_conn_guard_head_wait(struct dcms_conn_guard *g, struct dcms_conn_slot *s);

/* Forgets the connection; call it before its socket is closed. NULL is fine. */
void dcms_conn_guard_remove(struct dcms_conn_guard *g, struct dcms_conn_slot *s);

#endif
