/*
 * What the datasets service asks of contracts (include/dcms/contracts.h):
 * what Active contracts name in terms.data_access.datasets, and when a
 * contract ended and what its retention term says. Kept apart from the rest
 * of the contract service: queries only, no state.
 */
#include <string.h>

#include "dcms/app.h"
#include "dcms/clock.h"
#include "dcms/contracts.h"
#include "dcms/store.h"

static struct dcms_query q_active_datasets = DCMS_QUERY2(
    "ct_active_datasets",
    "SELECT DISTINCT j.value FROM contracts c, json_each(c.terms, '$.data_access.datasets') j "
    "WHERE c.status = 'active' AND c.consumer_id IN ($1, $2) AND j.type = 'text' "
    "ORDER BY 1 LIMIT $3",
    "SELECT DISTINCT d FROM contracts c, "
    "jsonb_array_elements_text(c.terms::jsonb -> 'data_access' -> 'datasets') AS d "
    "WHERE c.status = 'active' AND c.consumer_id::text IN ($1, $2) ORDER BY 1 LIMIT $3");

enum dcms_err dcms_contracts_active_datasets(struct dcms_app *app, const char *consumer_id,
                                             const char *consumer_org, size_t max,
                                             void (*fn)(void *ctx, const char *dataset), void *ctx,
                                             struct dcms_errinfo *ei)
{
    struct dcms_store_tx *tx = NULL;
    struct dcms_store_rows *rows = NULL;
    const char *a = consumer_id && *consumer_id ? consumer_id : "";
    const char *b = consumer_org && *consumer_org ? consumer_org : a;
    if (!*a && !*b)
        return DCMS_OK;
    enum dcms_err e = dcms_store_begin(app->store, DCMS_TX_READ, &tx, ei);
    if (e)
        goto out;
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(a), DCMS_VAL_TEXT(b), DCMS_VAL_INT(max)};
    e = dcms_store_exec(tx, &q_active_datasets, p, 3, &rows, NULL, ei);
    if (e)
        goto out;
    for (size_t i = 0; i < dcms_store_rows_count(rows); i++) {
        const char *v = dcms_store_rows_text(rows, i, 0);
        if (v)
            fn(ctx, v);
    }
out:
    dcms_store_rows_free(rows);
    if (tx)
        dcms_store_rollback(tx);
    return e;
}

/* ---- the end of a contract, for the datasets retention job ---- */

static struct dcms_query q_end_of =
    DCMS_QUERY2("ct_end_of",
                "SELECT status, updated_at, json_extract(terms, '$.retention.days'), "
                "json_extract(terms, '$.retention.deletion') FROM contracts WHERE id = $1",
                "SELECT status, updated_at, (terms::jsonb -> 'retention' ->> 'days')::bigint, "
                "terms::jsonb -> 'retention' ->> 'deletion' "
                "FROM contracts WHERE id = $1");

enum dcms_err dcms_contracts_end_of(struct dcms_app *app, const char *id,
                                    struct dcms_contract_end *out, struct dcms_errinfo *ei)
{
    struct dcms_store_tx *tx = NULL;
    struct dcms_store_rows *rows = NULL;
    memset(out, 0, sizeof(*out));
    enum dcms_err e = dcms_store_begin(app->store, DCMS_TX_READ, &tx, ei);
    if (e)
        return e;
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(id)};
    if ((e = dcms_store_exec(tx, &q_end_of, p, 1, &rows, NULL, ei)))
        goto out;
    if (dcms_store_rows_count(rows) != 1) {
        e = dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "contract not found");
        goto out;
    }
    const char *status = dcms_store_rows_text(rows, 0, 0);
    out->ended = strcmp(status, "terminated") == 0 || strcmp(status, "expired") == 0;
    if (out->ended && dcms_time_parse(dcms_store_rows_text(rows, 0, 1), &out->ended_at_us)) {
        e = dcms_err_set(ei, DCMS_ERR_INTERNAL, "contract %s: unreadable updated_at", id);
        goto out;
    }
    if (!dcms_store_rows_is_null(rows, 0, 2)) {
        out->has_retention = true;
        out->retention_days = (unsigned)dcms_store_rows_int(rows, 0, 2);
    }
    const char *del = dcms_store_rows_is_null(rows, 0, 3) ? NULL : dcms_store_rows_text(rows, 0, 3);
    out->crypto_shred = !del || strcmp(del, "delete") != 0;
out:
    dcms_store_rows_free(rows);
    dcms_store_rollback(tx);
    return e;
}
