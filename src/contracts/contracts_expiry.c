/*
 * The contract expiry job: every contract_expiry_interval_s seconds it
 * writes "expired" on every Active or Suspended contract past expires_at
 * (ct_expire_due, one audited transaction per batch). Readers already see
 * such a contract as expired before the job runs (row_from in contracts.c);
 * the job makes the stored state and the audit trail agree. It runs on the
 * shared periodic-job loop (dcms/periodic.h), once at start and then every
 * interval. With several nodes on one store it runs only on the node that
 * holds the jobs lease (dcms/nodes.h); the others skip their runs.
 */
#include "dcms/app.h"
#include "dcms/log.h"
#include "dcms/nodes.h"
#include "dcms/periodic.h"
#include "contracts/contracts_int.h"

static void expiry_run(void *arg)
{
    struct dcms_contracts *ct = arg;
    if (!dcms_nodes_leading(ct->app->nodes))
        return;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    unsigned n = 0;
    if (ct_expire_due(ct->app, &n, &ei))
        DCMS_LOG(DCMS_LOG_WARN, "contracts", "expiry job: %s", ei.message);
    else if (n)
        DCMS_LOG(DCMS_LOG_INFO, "contracts", "expired %u contracts", n);
}

enum dcms_err ct_expiry_start(struct dcms_contracts *ct, struct dcms_errinfo *ei)
{
    if (!ct->expiry_interval_s)
        return DCMS_OK;
    enum dcms_err e = dcms_periodic_start("contract expiry", (uint64_t)ct->expiry_interval_s * 1000,
                                          expiry_run, ct, &ct->expiry, ei);
    if (!e)
        dcms_periodic_kick(ct->expiry); /* the first run at start, as before */
    return e;
}
