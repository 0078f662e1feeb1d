/*
 * Enclaves across the nodes of one store. Each enclave is owned by the node
 * that created it (owner_node, migration 0021): only that node's backend can
 * reach its workload, so only that node reconciles it, and an operation on
 * the workload (PATCH, suspend, resume, attest, terminate) that reaches
 * another node is relayed to the owner (enclaves_http.c with
 * dcms_http_forward). Reads are served by any node from the store.
 *
 * When the owner stops renewing its heartbeat, the leader's sweep
 * (dcms/nodes.h) calls enclave_node_lost: each of its enclaves that still
 * claimed to run moves to Lost, audited as the system (enclave.lost). A
 * Lost enclave can only be terminated.
 */
#include <stdio.h>
#include <string.h>

#include "dcms/app.h"
#include "dcms/clock.h"
#include "dcms/log.h"
#include "dcms/store.h"
#include "enclaves/enclaves_int.h"

static enum dcms_err lose(struct dcms_enclaves *en, const char *id, const char *node_id,
                          struct dcms_errinfo *ei)
{
    /*
     * `lost` needs the PostgreSQL schema (migration 0021). A SQLite file is
     * never shared by running nodes: an earlier id of this very node is
     * what went silent there, so its enclaves fail as after a restart.
     */
    bool shared = dcms_store_backend(en->app->store) == DCMS_STORE_PG;
    enum enclave_event ev = shared ? ENCLAVE_EV_LOSE : ENCLAVE_EV_FAIL;
    struct enclave_call c = {.en = en, .ei = ei};
    pthread_mutex_t *mu = enclave_lock_of(en, id);
    pthread_mutex_lock(mu);
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    struct enclave_row r;
    enum enclave_status from, to;
    enum dcms_err e = dcms_store_begin(en->app->store, DCMS_TX_READ, &tx, ei);
    if (!e) {
        e = enclave_store_load(tx, id, &rows, &r, ei);
        dcms_store_rollback(tx);
    }
    if (e == DCMS_ERR_NOT_FOUND ||
        (!e && (!enclave_status_parse(r.v[C_STATUS], &from) ||
                !enclave_transition(from, ev, ENCLAVE_BY_SYSTEM, &to)))) {
        e = DCMS_OK; /* it moved on meanwhile (terminated, failed): nothing to do */
        dcms_errinfo_init(ei, NULL);
        goto out;
    }
    if (e)
        goto out;
    char reason[160];
    snprintf(reason, sizeof(reason), "node %s stopped renewing its heartbeat", node_id);
    struct enclave_change ch = {.reason = reason, .set_reason = true};
    e = enclave_commit_transition(
        &c, id, ev, ENCLAVE_BY_SYSTEM, &ch, shared ? "enclave.lost" : "enclave.fail",
        DCMS_AUDIT_SUCCESS, json_pack("{s:s, s:s}", "reason", reason, "node", node_id), NULL, NULL);
    if (!e)
        DCMS_LOG(DCMS_LOG_WARN, "enclaves", "enclave %s %s: %s", id, shared ? "lost" : "failed",
                 reason);
out:
    dcms_store_rows_free(rows);
    pthread_mutex_unlock(mu);
    return e;
}

enum dcms_err enclave_node_lost(void *ctx, const char *node_id, int64_t last_seen_us,
                                struct dcms_errinfo *ei)
{
    struct dcms_enclaves *en = ctx;
    char before[DCMS_TIME_STRLEN];
    dcms_time_format(last_seen_us, before);
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_begin(en->app->store, DCMS_TX_READ, &tx, ei);
    if (e)
        return e;
    e = enclave_store_of_node(tx, node_id, before, &rows, ei);
    dcms_store_rollback(tx);
    for (size_t i = 0; !e && i < dcms_store_rows_count(rows); i++)
        e = lose(en, dcms_store_rows_text(rows, i, 0), node_id, ei);
    dcms_store_rows_free(rows);
    return e;
}

bool enclave_elsewhere(struct dcms_enclaves *en, const char *id, char url[DCMS_NODE_URL_MAX])
{
    url[0] = '\0';
    struct dcms_nodes *nodes = en->app->nodes;
    if (!nodes || !id || !dcms_uuid_valid(id))
        return false;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    struct enclave_row r;
    if (dcms_store_begin(en->app->store, DCMS_TX_READ, &tx, &ei))
        return false;
    enum dcms_err e = enclave_store_load(tx, id, &rows, &r, &ei);
    dcms_store_rollback(tx);
    char owner[DCMS_NODE_ID_MAX];
    bool other = !e && !dcms_nodes_is_self(nodes, r.v[C_OWNER]);
    if (other)
        snprintf(owner, sizeof(owner), "%.63s", r.v[C_OWNER]);
    dcms_store_rows_free(rows);
    bool alive = false;
    if (!other || dcms_nodes_locate(nodes, owner, url, &alive, &ei) || !alive || !url[0]) {
        url[0] = '\0';
        return false;
    }
    return true;
}
