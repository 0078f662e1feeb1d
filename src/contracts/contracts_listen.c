/*
 * Transition listeners: the one way another service follows a contract's
 * status without the contract service knowing it (the enclave service
 * suspends and terminates the enclaves of a contract this way). Each
 * status change calls every listener's record() inside its write
 * transaction, before the commit, and committed() after it; see
 * include/dcms/contracts.h for the contract of each call. Changes of a
 * contract that was never Active reach no listener (followed()). Listeners are
 * registered at startup; a read-write lock lets unlisten wait for calls in
 * flight.
 */
#include "dcms/app.h"
#include "contracts/contracts_int.h"

enum dcms_err dcms_contracts_listen(struct dcms_contracts *ct,
                                    const struct dcms_contracts_listener *l,
                                    struct dcms_errinfo *ei)
{
    if (!ct)
        return DCMS_OK;
    enum dcms_err e = DCMS_OK;
    pthread_rwlock_wrlock(&ct->listen_mu);
    if (ct->nlisteners == DCMS_CONTRACTS_MAX_LISTENERS)
        e = dcms_err_set(ei, DCMS_ERR_CONFLICT, "too many contract listeners");
    else
        ct->listeners[ct->nlisteners++] = *l;
    pthread_rwlock_unlock(&ct->listen_mu);
    return e;
}

void dcms_contracts_unlisten(struct dcms_contracts *ct, void *ctx)
{
    if (!ct)
        return;
    pthread_rwlock_wrlock(&ct->listen_mu);
    for (size_t i = 0; i < ct->nlisteners; i++) {
        if (ct->listeners[i].ctx != ctx)
            continue;
        memmove(&ct->listeners[i], &ct->listeners[i + 1],
                (ct->nlisteners - i - 1) * sizeof(ct->listeners[0]));
        ct->nlisteners--;
        break;
    }
    pthread_rwlock_unlock(&ct->listen_mu);
}

/*
 * Whether a change can concern anything a listener follows. Enclaves and
 * training jobs start only under an Active contract, and the lifecycle
 * table never leads back to Draft or Pending signature: a change from
 * those has nothing bound to it, and telling the listeners would cost each
 * change a store read per listener (two round trips on PostgreSQL).
 */
static bool followed(const struct dcms_contract_change *ch)
{
    enum ct_status from;
    return !ch->from_status || !ct_status_parse(ch->from_status, &from) ||
           (from != CT_DRAFT && from != CT_PENDING_SIGNATURE);
}

enum dcms_err ct_notify_record(struct dcms_app *app, struct dcms_store_tx *tx,
                               const struct dcms_contract_change *ch, struct dcms_errinfo *ei)
{
    struct dcms_contracts *ct = app->contracts;
    if (!ct || !followed(ch))
        return DCMS_OK;
    enum dcms_err e = DCMS_OK;
    pthread_rwlock_rdlock(&ct->listen_mu);
    for (size_t i = 0; !e && i < ct->nlisteners; i++)
        if (ct->listeners[i].record)
            e = ct->listeners[i].record(ct->listeners[i].ctx, tx, ch, ei);
    pthread_rwlock_unlock(&ct->listen_mu);
    return e;
}

void ct_notify_committed(struct dcms_app *app, const struct dcms_contract_change *ch)
{
    struct dcms_contracts *ct = app->contracts;
    if (!ct || !followed(ch))
        return;
    pthread_rwlock_rdlock(&ct->listen_mu);
    for (size_t i = 0; i < ct->nlisteners; i++)
        if (ct->listeners[i].committed)
            ct->listeners[i].committed(ct->listeners[i].ctx, ch);
    pthread_rwlock_unlock(&ct->listen_mu);
}
