/*
 * Training jobs across the nodes of one store. A worker claims a queued job
 * and records its node (owner_node) in the claim's transaction; the runner,
 * its enclave and the released keys live in that node's process. A cancel
 * is a state change in the store, so any node accepts it: the owner's
 * runner sees it at its next look (every second) and stops.
 *
 * When the owner stops renewing its heartbeat, the leader's sweep
 * (dcms/nodes.h) calls tr_node_lost: a job to which no data was released
 * goes back to the queue (training.requeued: another worker runs it from
 * the start), one that had data released fails (node_lost), its privacy
 * reservation returned as for any failure. Both audited as the system.
 */
#include <stdio.h>
#include <string.h>

#include "dcms/app.h"
#include "dcms/audit.h"
#include "dcms/clock.h"
#include "dcms/json.h"
#include "dcms/log.h"
#include "dcms/store.h"
#include "training/training_int.h"

static enum dcms_err requeue_tx(struct dcms_app *app, struct dcms_store_tx *tx, const char *id,
                                const char *state, const char *node, const char *reason,
                                bool *moved, struct dcms_errinfo *ei)
{
    char now[DCMS_TIME_STRLEN], deadline[DCMS_TIME_STRLEN];
    int64_t now_us = dcms_clock_now_us();
    dcms_time_format(now_us, now);
    dcms_time_format(now_us + tr_timeout_s(app, "queued") * 1000000, deadline);
    enum dcms_err e =
        tr_store_requeue(tx, id, state, node, now, "node_lost", reason, deadline, moved, ei);
    if (e || !*moved)
        return e;
    json_t *ev = json_pack("{s:s, s:s, s:s}", "state", "queued", "reason_code", "node_lost",
                           "reason", reason);
    char *text = ev ? dcms_json_dump(ev, NULL) : NULL;
    json_decref(ev);
    if (!text)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    e = tr_store_event(tx, id, "state", text, now, NULL, ei);
    free(text);
    if (e)
        return e;
    struct dcms_audit_who who = {0};
    return dcms_audit_change(app->audit, tx, &who, "training", "training.requeued", id,
                             json_pack("{s:s, s:s, s:s, s:s}", "from", state, "node", node,
                                       "reason_code", "node_lost", "reason", reason),
                             ei);
}

static enum dcms_err handle(struct dcms_app *app, const char *id, const char *state, bool released,
                            const char *node, struct dcms_errinfo *ei)
{
    char reason[160];
    snprintf(reason, sizeof(reason), "node %s stopped renewing its heartbeat while the job was %s",
             node, state);
    struct dcms_store_tx *tx = NULL;
    enum dcms_err e = dcms_store_begin(app->store, DCMS_TX_WRITE, &tx, ei);
    if (e)
        return e;
    bool moved = false;
    if (!released) {
        e = requeue_tx(app, tx, id, state, node, reason, &moved, ei);
    } else {
        struct tr_change ch = {.reason_code = "node_lost", .reason = reason, .model_size = -1};
        e = tr_transition_tx(app, tx, id, state, "failed", &ch, NULL, NULL,
                             json_pack("{s:s}", "node", node), &moved, ei);
    }
    if (e || !moved) {
        dcms_store_rollback(tx);
        return e;
    }
    if ((e = dcms_store_commit(tx, ei)))
        return e;
    DCMS_LOG(DCMS_LOG_WARN, "training", "job %s %s: %s", id, released ? "failed" : "re-queued",
             reason);
    return DCMS_OK;
}

enum dcms_err tr_node_lost(void *ctx, const char *node_id, int64_t last_seen_us,
                           struct dcms_errinfo *ei)
{
    struct dcms_training *t = ctx;
    char before[DCMS_TIME_STRLEN];
    dcms_time_format(last_seen_us, before);
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_begin(t->app->store, DCMS_TX_READ, &tx, ei);
    if (e)
        return e;
    e = tr_store_of_node(tx, NULL, node_id, before, &rows, ei);
    dcms_store_rollback(tx);
    for (size_t i = 0; !e && i < dcms_store_rows_count(rows); i++)
        e = handle(t->app, dcms_store_rows_text(rows, i, 0), dcms_store_rows_text(rows, i, 1),
                   dcms_store_rows_int(rows, i, 3) != 0, node_id, ei);
    dcms_store_rows_free(rows);
    return e;
}
