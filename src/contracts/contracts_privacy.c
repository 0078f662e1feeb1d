/*
 * The privacy term as other services read it: terms.privacy of a contract
 * (the per-contract differential-privacy budget the privacy module keeps),
 * behind the contract's own read authorization when a caller asks.
 */
#include "dcms/app.h"
#include "dcms/store.h"
#include "contracts/contracts_int.h"

static double member(const json_t *o, const char *name)
{
    const json_t *v = json_object_get(o, name);
    return json_is_number(v) ? json_number_value(v) : 0;
}

enum dcms_err dcms_contracts_privacy_of(struct dcms_app *app, struct dcms_store_tx *tx,
                                        const struct dcms_principal *p, const char *client_ip,
                                        const char *id, struct dcms_contract_privacy *out,
                                        bool *hidden, struct dcms_errinfo *ei)
{
    memset(out, 0, sizeof(*out));
    if (hidden)
        *hidden = false;
    struct ct_call c = {app, p, client_ip, NULL, ei, hidden};
    struct dcms_store_tx *own = NULL;
    struct dcms_store_rows *rows = NULL;
    json_t *terms = NULL;
    enum dcms_err e = DCMS_OK;
    if (!tx && (e = dcms_store_begin(app->store, DCMS_TX_READ, &own, ei)))
        return e;
    struct ct_row r;
    if ((e = ct_load(tx ? tx : own, id, &rows, &r, ei)) ||
        (p && (e = ct_authorize(&c, &r, "contracts:read"))))
        goto out;
    terms = json_loads(r.terms, JSON_DECODE_ANY, NULL);
    if (!json_is_object(terms)) {
        e = dcms_err_set(ei, DCMS_ERR_INTERNAL, "contract %s: unreadable terms", r.id);
        goto out;
    }
    snprintf(out->provider_id, sizeof(out->provider_id), "%s", r.provider_id);
    snprintf(out->consumer_id, sizeof(out->consumer_id), "%s", r.consumer_id);
    const json_t *priv = json_object_get(terms, "privacy");
    if (json_is_object(priv)) {
        out->present = true;
        out->epsilon = member(priv, "epsilon");
        out->delta = member(priv, "delta");
        out->max_epsilon_per_run = member(priv, "max_epsilon_per_run");
    }
out:
    json_decref(terms);
    dcms_store_rows_free(rows);
    dcms_store_rollback(own);
    return e;
}
