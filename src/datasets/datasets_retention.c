/*
 * Retention of what was derived from datasets under a contract.
 *
 * Modules that derive something from a provider's data for a contract
 * (staged copies, job scratch, trained models, results) register it in
 * dataset_derived, in the transaction that creates it, under a kind whose
 * purge function they registered at start (dcms_datasets_on_purge). Once
 * the contract has ended (terminated or expired) and terms.retention.days
 * have passed since (no retention term: at once), the retention job purges
 * each object with the method the terms name:
 *   - crypto_shred (the default): the object's data key is destroyed first,
 *     so the ciphertext is unreadable from that commit on, then the module
 *     removes the object;
 *   - delete: the module removes the object, then its data key goes.
 * One write transaction per object: the module's removal, the key, the
 * purged_at mark and the audit event ("dataset.derived_purged" on the
 * contract, actor "system") commit together. The job keeps no state of its
 * own beyond the table, so it survives restarts and runs on any node; with
 * several nodes on one store, only the one holding the jobs lease runs it
 * (dcms/nodes.h).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/datasets_int.h"
#include "dcms/app.h"
#include "dcms/audit.h"
#include "dcms/clock.h"
#include "dcms/config.h"
#include "dcms/contracts.h"
#include "dcms/nodes.h"
#include "dcms/datasets.h"
#include "dcms/keys.h"
#include "dcms/log.h"
#include "dcms/periodic.h"
#include "dcms/store.h"

#define MAX_KINDS 8
#define CONTRACTS_PER_RUN 500
#define OBJECTS_PER_CONTRACT 200

struct purger {
    char kind[32];
    dcms_derived_purge_fn *fn;
    void *ctx;
};

struct dcms_datasets {
    struct dcms_app *app;
    pthread_mutex_t mu;
    struct purger purgers[MAX_KINDS];
    size_t npurgers;
    struct dcms_periodic *job;
};

static struct dcms_query q_add = DCMS_QUERY(
    "ds_derived_add",
    "INSERT INTO dataset_derived (id, contract_id, dataset_id, kind, ref, dek_id, created_by, "
    "created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)");
static struct dcms_query q_open_contracts =
    DCMS_QUERY("ds_derived_contracts", "SELECT DISTINCT contract_id FROM dataset_derived "
                                       "WHERE purged_at IS NULL ORDER BY contract_id LIMIT $1");
static struct dcms_query q_open_objects = DCMS_QUERY(
    "ds_derived_objects", "SELECT id, kind, ref, dek_id, dataset_id FROM dataset_derived "
                          "WHERE contract_id = $1 AND purged_at IS NULL ORDER BY id LIMIT $2");
static struct dcms_query q_mark =
    DCMS_QUERY("ds_derived_mark", "UPDATE dataset_derived SET purged_at = $2, purge_method = $3 "
                                  "WHERE id = $1 AND purged_at IS NULL");

enum dcms_err dcms_datasets_derived_add(struct dcms_store_tx *tx, const struct dcms_derived *d,
                                        char id_out[DCMS_UUID_STRLEN], struct dcms_errinfo *ei)
{
    if (!d->contract_id || !dcms_uuid_valid(d->contract_id) || !d->kind || !*d->kind ||
        strlen(d->kind) >= sizeof(((struct purger *)0)->kind) || !d->ref || !*d->ref ||
        !d->created_by)
        return dcms_err_set(ei, DCMS_ERR_INTERNAL,
                            "a derived object needs a contract, kind and ref");
    char id[DCMS_UUID_STRLEN], now[DCMS_TIME_STRLEN];
    dcms_uuid_v7(id);
    dcms_time_format(dcms_clock_now_us(), now);
    struct dcms_store_val p[] = {
        DCMS_VAL_TEXT(id),
        DCMS_VAL_TEXT(d->contract_id),
        d->dataset_id ? DCMS_VAL_TEXT(d->dataset_id) : DCMS_VAL_NULL,
        DCMS_VAL_TEXT(d->kind),
        DCMS_VAL_TEXT(d->ref),
        d->dek_id ? DCMS_VAL_TEXT(d->dek_id) : DCMS_VAL_NULL,
        DCMS_VAL_TEXT(d->created_by),
        DCMS_VAL_TEXT(now),
    };
    enum dcms_err e = dcms_store_exec(tx, &q_add, p, 8, NULL, NULL, ei);
    if (!e && id_out)
        memcpy(id_out, id, DCMS_UUID_STRLEN);
    return e;
}

enum dcms_err dcms_datasets_on_purge(struct dcms_datasets *ds, const char *kind,
                                     dcms_derived_purge_fn *fn, void *ctx, struct dcms_errinfo *ei)
{
    if (!kind || strlen(kind) >= sizeof(ds->purgers[0].kind) || !fn)
        return dcms_err_set(ei, DCMS_ERR_INTERNAL, "bad purge registration");
    enum dcms_err e = DCMS_OK;
    pthread_mutex_lock(&ds->mu);
    size_t i = 0;
    while (i < ds->npurgers && strcmp(ds->purgers[i].kind, kind) != 0)
        i++;
    if (i == MAX_KINDS) {
        e = dcms_err_set(ei, DCMS_ERR_INTERNAL, "too many derived kinds");
    } else {
        snprintf(ds->purgers[i].kind, sizeof(ds->purgers[i].kind), "%s", kind);
        ds->purgers[i].fn = fn;
        ds->purgers[i].ctx = ctx;
        if (i == ds->npurgers)
            ds->npurgers++;
    }
    pthread_mutex_unlock(&ds->mu);
    return e;
}

static bool purger_of(struct dcms_datasets *ds, const char *kind, struct purger *out)
{
    bool found = false;
    pthread_mutex_lock(&ds->mu);
    for (size_t i = 0; i < ds->npurgers && !found; i++)
        if (strcmp(ds->purgers[i].kind, kind) == 0) {
            *out = ds->purgers[i];
            found = true;
        }
    pthread_mutex_unlock(&ds->mu);
    return found;
}

struct derived_row {
    const char *id, *kind, *ref, *dek_id, *dataset_id;
};

/* Purges one object in one write transaction (see the top of the file). */
static enum dcms_err purge_one(struct dcms_datasets *ds, const char *contract_id,
                               const struct dcms_contract_end *end, const struct derived_row *r,
                               struct dcms_errinfo *ei)
{
    struct purger pg;
    if (!purger_of(ds, r->kind, &pg) && !r->dek_id)
        return dcms_err_set(ei, DCMS_ERR_UNAVAILABLE,
                            "no purge function for derived kind \"%s\" (its module is not running)",
                            r->kind);
    bool have_fn = purger_of(ds, r->kind, &pg);
    const char *method = end->crypto_shred ? "crypto_shred" : "delete";
    struct dcms_store_tx *tx = NULL;
    enum dcms_err e = dcms_store_begin(ds->app->store, DCMS_TX_WRITE, &tx, ei);
    if (e)
        return e;
    if (end->crypto_shred && r->dek_id &&
        (e = dcms_keys_dek_destroy(ds->app->keys, tx, r->dek_id, ei)) && e != DCMS_ERR_NOT_FOUND)
        goto out;
    if (have_fn && (e = pg.fn(pg.ctx, tx, r->ref, end->crypto_shred, ei)))
        goto out;
    if (!end->crypto_shred && r->dek_id &&
        (e = dcms_keys_dek_destroy(ds->app->keys, tx, r->dek_id, ei)) && e != DCMS_ERR_NOT_FOUND)
        goto out;
    char now[DCMS_TIME_STRLEN];
    dcms_time_format(dcms_clock_now_us(), now);
    uint64_t affected = 0;
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(r->id), DCMS_VAL_TEXT(now), DCMS_VAL_TEXT(method)};
    if ((e = dcms_store_exec(tx, &q_mark, p, 3, NULL, &affected, ei)))
        goto out;
    if (affected != 1) { /* another node purged it meanwhile */
        e = DCMS_ERR_CONFLICT;
        goto out;
    }
    e = dcms_audit_change(
        ds->app->audit, tx, NULL, "contract", "dataset.derived_purged", contract_id,
        json_pack("{s:s, s:s, s:s, s:s?, s:s, s:I, s:b}", "derived_id", r->id, "kind", r->kind,
                  "ref", r->ref, "dataset_id", r->dataset_id, "method", method, "retention_days",
                  (json_int_t)(end->has_retention ? end->retention_days : 0), "key_destroyed",
                  r->dek_id != NULL),
        ei);
out:
    if (e == DCMS_ERR_CONFLICT) {
        dcms_store_rollback(tx);
        return DCMS_OK;
    }
    return e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, ei);
}

/* Purges what contract `id` left, if it ended and its retention has passed. */
static enum dcms_err purge_contract(struct dcms_datasets *ds, const char *id, int64_t now,
                                    unsigned *purged, struct dcms_errinfo *ei)
{
    struct dcms_contract_end end;
    enum dcms_err e = dcms_contracts_end_of(ds->app, id, &end, ei);
    if (e)
        return e;
    int64_t days = end.has_retention ? end.retention_days : 0;
    if (!end.ended || now < end.ended_at_us + days * 86400 * (int64_t)1000000)
        return DCMS_OK;
    struct dcms_store_tx *tx = NULL;
    struct dcms_store_rows *rows = NULL;
    if ((e = dcms_store_begin(ds->app->store, DCMS_TX_READ, &tx, ei)))
        return e;
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(id), DCMS_VAL_INT(OBJECTS_PER_CONTRACT)};
    e = dcms_store_exec(tx, &q_open_objects, p, 2, &rows, NULL, ei);
    dcms_store_rollback(tx);
    for (size_t i = 0; !e && i < dcms_store_rows_count(rows); i++) {
        struct derived_row r = {
            dcms_store_rows_text(rows, i, 0),
            dcms_store_rows_text(rows, i, 1),
            dcms_store_rows_text(rows, i, 2),
            dcms_store_rows_is_null(rows, i, 3) ? NULL : dcms_store_rows_text(rows, i, 3),
            dcms_store_rows_is_null(rows, i, 4) ? NULL : dcms_store_rows_text(rows, i, 4),
        };
        struct dcms_errinfo oei;
        dcms_errinfo_init(&oei, NULL);
        if (purge_one(ds, id, &end, &r, &oei))
            DCMS_LOG(DCMS_LOG_WARN, "datasets",
                     "retention: cannot purge %s (%s) of contract %s: %s", r.id, r.kind, id,
                     oei.message);
        else
            (*purged)++;
    }
    dcms_store_rows_free(rows);
    return e;
}

enum dcms_err dcms_datasets_retention_run(struct dcms_datasets *ds, unsigned *purged,
                                          struct dcms_errinfo *ei)
{
    struct dcms_store_tx *tx = NULL;
    struct dcms_store_rows *rows = NULL;
    *purged = 0;
    enum dcms_err e = dcms_store_begin(ds->app->store, DCMS_TX_READ, &tx, ei);
    if (e)
        return e;
    struct dcms_store_val p[] = {DCMS_VAL_INT(CONTRACTS_PER_RUN)};
    e = dcms_store_exec(tx, &q_open_contracts, p, 1, &rows, NULL, ei);
    dcms_store_rollback(tx);
    int64_t now = dcms_clock_now_us();
    for (size_t i = 0; !e && i < dcms_store_rows_count(rows); i++) {
        struct dcms_errinfo cei;
        dcms_errinfo_init(&cei, NULL);
        const char *cid = dcms_store_rows_text(rows, i, 0);
        if (purge_contract(ds, cid, now, purged, &cei))
            DCMS_LOG(DCMS_LOG_WARN, "datasets", "retention: contract %s: %s", cid, cei.message);
    }
    dcms_store_rows_free(rows);
    return e;
}

static void retention_job(void *arg)
{
    struct dcms_datasets *ds = arg;
    if (!dcms_nodes_leading(ds->app->nodes))
        return;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    unsigned n = 0;
    if (dcms_datasets_retention_run(ds, &n, &ei))
        DCMS_LOG(DCMS_LOG_WARN, "datasets", "retention job: %s", ei.message);
    else if (n)
        DCMS_LOG(DCMS_LOG_INFO, "datasets", "retention: purged %u derived objects", n);
}

enum dcms_err dcms_datasets_open(struct dcms_app *app, struct dcms_datasets **out,
                                 struct dcms_errinfo *ei)
{
    struct dcms_datasets *ds = calloc(1, sizeof(*ds));
    if (!ds)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    ds->app = app;
    pthread_mutex_init(&ds->mu, NULL);
    unsigned every = app->cfg ? app->cfg->retention_interval_s : 0;
    if (every) {
        enum dcms_err e = dcms_periodic_start("dataset retention", (uint64_t)every * 1000,
                                              retention_job, ds, &ds->job, ei);
        if (e) {
            pthread_mutex_destroy(&ds->mu);
            free(ds);
            return e;
        }
        dcms_periodic_kick(ds->job); /* what came due while dcmsd was down */
    }
    *out = ds;
    return DCMS_OK;
}

void dcms_datasets_close(struct dcms_datasets *ds)
{
    if (!ds)
        return;
    dcms_periodic_stop(ds->job);
    pthread_mutex_destroy(&ds->mu);
    free(ds);
}
