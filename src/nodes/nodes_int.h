/*
 * The nodes module's private header: the service state and the queries of
 * nodes_store.c.
 */
#ifndef DCMS_NODES_INT_H
#define DCMS_NODES_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "dcms/nodes.h"

struct dcms_store_tx;
struct dcms_store_rows;
struct dcms_periodic;

#define NODES_MAX_LISTENERS 8

struct dcms_nodes {
    struct dcms_app *app;
    char id[DCMS_NODE_ID_MAX];
    uint64_t lease_ms;
    int64_t started_us;
    struct dcms_periodic *job;
    pthread_mutex_t mu; /* guards url, the listeners, the leading state; one heartbeat at a time */
    pthread_mutex_t beat_mu;
    char url[DCMS_NODE_URL_MAX];
    struct {
        dcms_nodes_lost_fn *fn;
        void *ctx;
    } lost[NODES_MAX_LISTENERS];
    unsigned nlost;
    bool leading;
    int64_t lead_until_mono_us; /* the lease is ours until then (monotonic clock) */
};

/* Reads or creates $data_dir/node-id (a UUID, created atomically with mode 0600). */
enum dcms_err nodes_identity(const char *data_dir, char id[DCMS_NODE_ID_MAX],
                             struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* A node id given in DCMS_NODE_ID: 1 to 63 of [A-Za-z0-9._-]. */
bool nodes_id_ok(const char *id);

enum dcms_err nodes_store_beat(struct dcms_store_tx *tx, const char *id, const char *url,
                               int64_t started_us, int64_t now_us,
                               struct dcms_errinfo *ei) DCMS_MUST_CHECK;
enum dcms_err nodes_store_leave(struct dcms_store_tx *tx, const char *id,
                                struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* url, last_seen_us of one node (0 or 1 row). */
enum dcms_err nodes_store_get(struct dcms_store_tx *tx, const char *id,
                              struct dcms_store_rows **rows,
                              struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* id, last_seen_us of other nodes last seen before `before_us` and not swept since. */
enum dcms_err nodes_store_stale(struct dcms_store_tx *tx, const char *self, int64_t before_us,
                                struct dcms_store_rows **rows,
                                struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* Records the sweep unless the node beat meanwhile (*done false then). */
enum dcms_err nodes_store_swept(struct dcms_store_tx *tx, const char *id, int64_t last_seen_us,
                                int64_t now_us, bool *done,
                                struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* id, url, started_us, last_seen_us, swept_us of every node. */
enum dcms_err nodes_store_list(struct dcms_store_tx *tx, struct dcms_store_rows **rows,
                               struct dcms_errinfo *ei) DCMS_MUST_CHECK;

#endif
