/*
 * The nodes service (dcms/nodes.h): this node's identity, its heartbeat and
 * the jobs lease, and the sweep of nodes that stopped beating.
 *
 * One heartbeat (every third of the lease time, on dcms/periodic.h) is one
 * write transaction: the node's row, then the jobs lease taken or renewed
 * by compare-and-set; a takeover from another node is audited (node.lead)
 * in that transaction. The node leads from the start of a successful heartbeat for
 * 90% of the lease time, measured on the monotonic clock, so it stops
 * running the leader's jobs before another node can take the lease over,
 * even when its store writes start failing. The leader then sweeps the
 * nodes whose heartbeat is older than the lease time: every lost-node
 * listener first, then the sweep recorded (node.lost) unless the node beat
 * meanwhile.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dcms/app.h"
#include "dcms/audit.h"
#include "dcms/clock.h"
#include "dcms/config.h"
#include "dcms/crypto.h"
#include "dcms/log.h"
#include "dcms/periodic.h"
#include "dcms/store.h"
#include "dcms/str.h"
#include "nodes/nodes_int.h"

bool nodes_id_ok(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n >= DCMS_NODE_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* An advertised URL: http(s)://, printable, no spaces, no trailing slash needed. */
static bool url_ok(const char *url)
{
    size_t n = strlen(url);
    if (n >= DCMS_NODE_URL_MAX ||
        (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0))
        return false;
    for (size_t i = 0; i < n; i++)
        if (url[i] <= ' ' || url[i] == 0x7f)
            return false;
    return n > 8;
}

enum dcms_err nodes_identity(const char *data_dir, char id[DCMS_NODE_ID_MAX],
                             struct dcms_errinfo *ei)
{
    char path[DCMS_CONFIG_STR_MAX + 16];
    snprintf(path, sizeof(path), "%s/node-id", data_dir);
    /* 16 random bytes, created atomically (0600) by the one helper for such files. */
    unsigned char raw[16];
    enum dcms_err e = dcms_secret_file_load_or_create(path, raw, sizeof(raw), "node id", ei);
    if (!e)
        dcms_hex_encode(id, raw, sizeof(raw));
    return e;
}

static void set_lead(struct dcms_nodes *n, bool held, int64_t from_mono_us)
{
    pthread_mutex_lock(&n->mu);
    n->leading = held;
    n->lead_until_mono_us = held ? from_mono_us + (int64_t)n->lease_ms * 900 : 0;
    pthread_mutex_unlock(&n->mu);
}

bool dcms_nodes_leading(struct dcms_nodes *n)
{
    if (!n)
        return true;
    pthread_mutex_lock(&n->mu);
    bool lead = n->leading && dcms_clock_mono_us() < n->lead_until_mono_us;
    pthread_mutex_unlock(&n->mu);
    return lead;
}

const char *dcms_nodes_self(const struct dcms_nodes *n)
{
    return n ? n->id : NULL;
}

bool dcms_nodes_is_self(const struct dcms_nodes *n, const char *owner)
{
    return !n || !owner || strcmp(owner, n->id) == 0;
}

void dcms_nodes_set_default_url(struct dcms_nodes *n, const char *url)
{
    if (!n)
        return;
    pthread_mutex_lock(&n->mu);
    if (!n->url[0] && url_ok(url))
        snprintf(n->url, sizeof(n->url), "%s", url);
    pthread_mutex_unlock(&n->mu);
}

enum dcms_err dcms_nodes_on_lost(struct dcms_nodes *n, dcms_nodes_lost_fn *fn, void *ctx,
                                 struct dcms_errinfo *ei)
{
    if (!n)
        return DCMS_OK;
    enum dcms_err e = DCMS_OK;
    pthread_mutex_lock(&n->mu);
    if (n->nlost == NODES_MAX_LISTENERS)
        e = dcms_err_set(ei, DCMS_ERR_INTERNAL, "too many lost-node listeners");
    else
        n->lost[n->nlost].fn = fn, n->lost[n->nlost++].ctx = ctx;
    pthread_mutex_unlock(&n->mu);
    return e;
}

/* One stale node: its listeners, then the sweep recorded and audited. */
static enum dcms_err sweep_one(struct dcms_nodes *n, const char *id, int64_t last_seen_us,
                               int64_t now_us, struct dcms_errinfo *ei)
{
    /* A node that left (0) handed over everything it had when it left. */
    int64_t cutoff = last_seen_us ? last_seen_us : now_us;
    pthread_mutex_lock(&n->mu);
    unsigned nl = n->nlost;
    pthread_mutex_unlock(&n->mu);
    for (unsigned i = 0; i < nl; i++) {
        enum dcms_err e = n->lost[i].fn(n->lost[i].ctx, id, cutoff, ei);
        if (e)
            return e;
    }
    struct dcms_store_tx *tx;
    enum dcms_err e = dcms_store_begin(n->app->store, DCMS_TX_WRITE, &tx, ei);
    if (e)
        return e;
    bool done = false;
    e = nodes_store_swept(tx, id, last_seen_us, now_us, &done, ei);
    if (!e && done) {
        struct dcms_audit_who who = {0};
        e = dcms_audit_change(n->app->audit, tx, &who, "node", "node.lost", id,
                              json_pack("{s:I, s:s, s:I}", "last_seen_us", (json_int_t)last_seen_us,
                                        "swept_by", n->id, "lease_ms", (json_int_t)n->lease_ms),
                              ei);
    }
    if (!e)
        e = dcms_store_commit(tx, ei);
    else
        dcms_store_rollback(tx);
    if (!e && done)
        DCMS_LOG(DCMS_LOG_WARN, "nodes", "node %s stopped renewing its heartbeat: swept", id);
    return e;
}

static void sweep(struct dcms_nodes *n, int64_t now_us)
{
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    if (dcms_store_begin(n->app->store, DCMS_TX_READ, &tx, &ei))
        goto fail;
    enum dcms_err e =
        nodes_store_stale(tx, n->id, now_us - (int64_t)n->lease_ms * 1000, &rows, &ei);
    dcms_store_rollback(tx);
    if (e)
        goto fail;
    for (size_t i = 0; i < dcms_store_rows_count(rows); i++) {
        const char *id = dcms_store_rows_text(rows, i, 0);
        if (sweep_one(n, id, dcms_store_rows_int(rows, i, 1), now_us, &ei))
            DCMS_LOG(DCMS_LOG_WARN, "nodes", "cannot sweep node %s: %s (retried)", id, ei.message);
        dcms_errinfo_init(&ei, NULL);
    }
    dcms_store_rows_free(rows);
    return;
fail:
    DCMS_LOG(DCMS_LOG_WARN, "nodes", "cannot look for lost nodes: %s", ei.message);
}

/* Row, lease, audit of a takeover: one transaction. */
static enum dcms_err beat_tx(struct dcms_nodes *n, int64_t now_us, bool *held,
                             struct dcms_errinfo *ei)
{
    char url[DCMS_NODE_URL_MAX];
    pthread_mutex_lock(&n->mu);
    memcpy(url, n->url, sizeof(url));
    pthread_mutex_unlock(&n->mu);
    struct dcms_store_tx *tx;
    enum dcms_err e = dcms_store_begin(n->app->store, DCMS_TX_WRITE, &tx, ei);
    if (e)
        return e;
    struct dcms_lease before;
    e = nodes_store_beat(tx, n->id, url, n->started_us, now_us, ei);
    if (!e)
        e = dcms_lease_acquire(tx, DCMS_NODES_JOBS_LEASE, n->id, now_us, n->lease_ms, held, &before,
                               ei);
    /* A takeover from another node is audited; the first lease, or our own again, is not. */
    if (!e && *held && before.holder[0] && strcmp(before.holder, n->id) != 0) {
        struct dcms_audit_who who = {0};
        e = dcms_audit_change(n->app->audit, tx, &who, "node", "node.lead", n->id,
                              json_pack("{s:s, s:o, s:I}", "lease", DCMS_NODES_JOBS_LEASE,
                                        "previous",
                                        before.holder[0] ? json_string(before.holder) : json_null(),
                                        "lease_ms", (json_int_t)n->lease_ms),
                              ei);
    }
    if (!e)
        e = dcms_store_commit(tx, ei);
    else
        dcms_store_rollback(tx);
    if (e)
        *held = false;
    return e;
}

void dcms_nodes_heartbeat(struct dcms_nodes *n)
{
    if (!n)
        return;
    pthread_mutex_lock(&n->beat_mu);
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    int64_t mono = dcms_clock_mono_us(), now = dcms_clock_now_us();
    bool was = dcms_nodes_leading(n), held = false;
    if (beat_tx(n, now, &held, &ei))
        DCMS_LOG(DCMS_LOG_WARN, "nodes", "heartbeat failed: %s", ei.message);
    set_lead(n, held, mono);
    if (held != was)
        DCMS_LOG(DCMS_LOG_INFO, "nodes", "node %s %s the periodic jobs", n->id,
                 held ? "now runs" : "no longer runs");
    if (held)
        sweep(n, now);
    pthread_mutex_unlock(&n->beat_mu);
}

static void heartbeat_run(void *ctx)
{
    dcms_nodes_heartbeat(ctx);
}

enum dcms_err dcms_nodes_locate(struct dcms_nodes *n, const char *id, char url[DCMS_NODE_URL_MAX],
                                bool *alive, struct dcms_errinfo *ei)
{
    url[0] = '\0';
    *alive = false;
    if (!n)
        return DCMS_OK;
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_begin(n->app->store, DCMS_TX_READ, &tx, ei);
    if (e)
        return e;
    e = nodes_store_get(tx, id, &rows, ei);
    dcms_store_rollback(tx);
    if (!e && dcms_store_rows_count(rows) == 1) {
        snprintf(url, DCMS_NODE_URL_MAX, "%s", dcms_store_rows_text(rows, 0, 0));
        *alive =
            dcms_store_rows_int(rows, 0, 1) >= dcms_clock_now_us() - (int64_t)n->lease_ms * 1000;
    }
    dcms_store_rows_free(rows);
    return e;
}

enum dcms_err dcms_nodes_list(struct dcms_nodes *n, json_t **out, struct dcms_errinfo *ei)
{
    *out = NULL;
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    struct dcms_lease lease;
    bool found = false;
    enum dcms_err e = dcms_store_begin(n->app->store, DCMS_TX_READ, &tx, ei);
    if (e)
        return e;
    e = nodes_store_list(tx, &rows, ei);
    if (!e)
        e = dcms_lease_get(tx, DCMS_NODES_JOBS_LEASE, &lease, &found, ei);
    dcms_store_rollback(tx);
    int64_t now = dcms_clock_now_us(), stale = now - (int64_t)n->lease_ms * 1000;
    json_t *list = e ? NULL : json_array();
    for (size_t i = 0; list && i < dcms_store_rows_count(rows); i++) {
        char started[DCMS_TIME_STRLEN], seen[DCMS_TIME_STRLEN];
        int64_t last = dcms_store_rows_int(rows, i, 3);
        dcms_time_format(dcms_store_rows_int(rows, i, 2), started);
        dcms_time_format(last, seen);
        const char *state = last >= stale ? "alive" : last == 0 ? "left" : "lost";
        json_array_append_new(
            list,
            json_pack("{s:s, s:s, s:s, s:o, s:s}", "id", dcms_store_rows_text(rows, i, 0), "url",
                      dcms_store_rows_text(rows, i, 1), "started_at", started, "last_seen_at",
                      last ? json_string(seen) : json_null(), "state", state));
    }
    dcms_store_rows_free(rows);
    if (e)
        return e;
    bool held = found && lease.expires_us >= now;
    *out = json_pack("{s:s, s:o, s:I, s:o}", "self", n->id, "leader",
                     held ? json_string(lease.holder) : json_null(), "lease_ms",
                     (json_int_t)n->lease_ms, "nodes", list ? list : json_null());
    return *out ? DCMS_OK : dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
}

enum dcms_err dcms_nodes_open(struct dcms_app *app, struct dcms_nodes **out,
                              struct dcms_errinfo *ei)
{
    *out = NULL;
    const struct dcms_config *cfg = app->cfg;
    struct dcms_nodes *n = calloc(1, sizeof(*n));
    if (!n)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    n->app = app;
    n->lease_ms = cfg->node_lease_ms;
    n->started_us = dcms_clock_now_us();
    pthread_mutex_init(&n->mu, NULL);
    pthread_mutex_init(&n->beat_mu, NULL);
    enum dcms_err e = DCMS_OK;
    if (n->lease_ms < 300 || n->lease_ms > 3600000) {
        e = dcms_err_set(ei, DCMS_ERR_CONFIG, "DCMS_NODE_LEASE_MS must be from 300 to 3600000");
    } else if (cfg->node_id[0]) {
        if (!nodes_id_ok(cfg->node_id))
            e = dcms_err_set(ei, DCMS_ERR_CONFIG,
                             "DCMS_NODE_ID must be 1 to 63 letters, digits, '.', '_' or '-'");
        else
            snprintf(n->id, sizeof(n->id), "%.63s", cfg->node_id);
    } else {
        e = nodes_identity(cfg->data_dir, n->id, ei);
    }
    if (!e && cfg->node_url[0] && !url_ok(cfg->node_url))
        e = dcms_err_set(ei, DCMS_ERR_CONFIG,
                         "DCMS_NODE_URL must be an http:// or https:// URL without spaces");
    if (e)
        goto fail;
    snprintf(n->url, sizeof(n->url), "%.255s", cfg->node_url);
    dcms_nodes_heartbeat(n); /* the row exists, and the lease is tried, before serving */
    if ((e = dcms_periodic_start("node heartbeat", n->lease_ms / 3, heartbeat_run, n, &n->job, ei)))
        goto fail;
    DCMS_LOG(DCMS_LOG_INFO, "nodes", "node id %s, lease %llu ms%s", n->id,
             (unsigned long long)n->lease_ms, dcms_nodes_leading(n) ? ", leading" : "");
    *out = n;
    return DCMS_OK;
fail:
    pthread_mutex_destroy(&n->mu);
    pthread_mutex_destroy(&n->beat_mu);
    free(n);
    return e;
}

void dcms_nodes_close(struct dcms_nodes *n)
{
    if (!n)
        return;
    dcms_periodic_stop(n->job);
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_store_tx *tx = NULL;
    enum dcms_err e = dcms_store_begin(n->app->store, DCMS_TX_WRITE, &tx, &ei);
    if (!e) {
        if (!(e = dcms_lease_release(tx, DCMS_NODES_JOBS_LEASE, n->id, &ei)) &&
            !(e = nodes_store_leave(tx, n->id, &ei)))
            e = dcms_store_commit(tx, &ei);
        else
            dcms_store_rollback(tx);
    }
    if (e)
        DCMS_LOG(DCMS_LOG_WARN, "nodes", "cannot record that node %s leaves: %s", n->id,
                 ei.message);
    pthread_mutex_destroy(&n->mu);
    pthread_mutex_destroy(&n->beat_mu);
    free(n);
}
