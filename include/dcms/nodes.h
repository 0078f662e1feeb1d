/*
 * The nodes of one deployment: several dcmsd sharing one store.
 *
 * Each node has an id (DCMS_NODE_ID, or generated once and kept in
 * $DCMS_DATA_DIR/node-id) and an advertised URL (DCMS_NODE_URL) where the
 * other nodes reach it. A heartbeat job writes the node's row every third
 * of DCMS_NODE_LEASE_MS and takes or renews the "periodic-jobs" lease
 * (dcms/lease.h): the node holding it is the leader, and the periodic jobs
 * that must run on one node at a time (contract expiry, dataset retention,
 * the lost-node sweep) run only there (dcms_nodes_leading). When the leader
 * stops renewing, another node takes the lease over within the lease time.
 *
 * The leader also sweeps nodes whose heartbeat is older than the lease
 * time: it calls every registered lost-node listener (the enclave service
 * marks that node's enclaves lost, the training service fails or re-queues
 * its jobs) and then records the sweep, audited as node.lost.
 *
 * All functions are thread-safe. A NULL `struct dcms_nodes *` (tests that
 * build a partial app) means one node alone: it leads and owns everything.
 */
#ifndef DCMS_NODES_H
#define DCMS_NODES_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "dcms/err.h"
#include "dcms/lease.h"

struct dcms_app;
struct dcms_nodes;

#define DCMS_NODE_ID_MAX DCMS_LEASE_HOLDER_MAX
#define DCMS_NODE_URL_MAX 256
/* The lease whose holder runs the one-node-at-a-time periodic jobs. */
#define DCMS_NODES_JOBS_LEASE "periodic-jobs"

/*
 * Called on the leader for a node that stopped renewing its heartbeat
 * (last seen at `last_seen_us`, wall clock). It handles what that node
 * owned and was created before `last_seen_us`, audited; an error leaves the
 * node unswept, so the sweep is retried at the next heartbeat.
 */
typedef enum dcms_err dcms_nodes_lost_fn(void *ctx, const char *node_id, int64_t last_seen_us,
                                         struct dcms_errinfo *ei);

/*
 * Resolves this node's identity from app->cfg (node_id, node_url,
 * node_lease_ms, data_dir), writes its heartbeat, tries the jobs lease once
 * and starts the heartbeat job. DCMS_ERR_CONFIG for a bad DCMS_NODE_ID or
 * DCMS_NODE_URL, an unreadable or malformed node-id file; store errors.
 * On success the caller owns *out (dcms_nodes_close).
 */
enum dcms_err dcms_nodes_open(struct dcms_app *app, struct dcms_nodes **out,
                              struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * Stops the heartbeat job, gives up the jobs lease and marks the node as
 * gone (its heartbeat set to 0), so the next leader sweeps what it left at
 * once. NULL is a no-op.
 */
void dcms_nodes_close(struct dcms_nodes *n);

/* Sets the advertised URL when DCMS_NODE_URL is empty (known once the server listens). */
void dcms_nodes_set_default_url(struct dcms_nodes *n, const char *url);

/* This node's id (static for the node's life); NULL for a NULL n. */
const char *dcms_nodes_self(const struct dcms_nodes *n);

/* True when this node holds the jobs lease now (and for a NULL n). */
bool dcms_nodes_leading(struct dcms_nodes *n);

/* True when `owner` is this node, or NULL (a row from before owners were recorded). */
bool dcms_nodes_is_self(const struct dcms_nodes *n, const char *owner);

/*
 * Where node `id` is reached: *url (empty when the node is unknown) and
 * *alive (its heartbeat is younger than the lease time). Store errors only.
 */
enum dcms_err dcms_nodes_locate(struct dcms_nodes *n, const char *id, char url[DCMS_NODE_URL_MAX],
                                bool *alive, struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* Registers a lost-node listener (at most 8), before or after open's job starts. */
enum dcms_err dcms_nodes_on_lost(struct dcms_nodes *n, dcms_nodes_lost_fn *fn, void *ctx,
                                 struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* Runs one heartbeat now (renew, lead, sweep) and waits for it; for tests and the CLI. */
void dcms_nodes_heartbeat(struct dcms_nodes *n);

/* The nodes as JSON: {"self": id, "leader": id|null, "lease_ms": N, "nodes": [...]}. */
enum dcms_err dcms_nodes_list(struct dcms_nodes *n, json_t **out,
                              struct dcms_errinfo *ei) DCMS_MUST_CHECK;

#endif
