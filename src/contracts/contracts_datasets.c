/*
 * What Active contracts name in terms.data_access.datasets, for the
 * datasets service (include/dcms/contracts.h). Kept apart from the rest of
 * the contract service: one query, no state.
 */
#include <string.h>

#include "dcms/app.h"
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
