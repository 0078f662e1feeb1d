/*
 * The service's lifetime and its background work, as two jobs on the
 * shared periodic loop (dcms/periodic.h):
 * - "enclave-reconcile", every DCMS_ENCLAVE_RECONCILE_MS: probes every
 *   running or suspended enclave; a workload that exited or that the
 *   backend no longer knows moves to Failed, audited as the system;
 * - "enclave-metrics", every DCMS_ENCLAVE_METRICS_INTERVAL_MS: the same
 *   pass, which also stores a metrics sample per workload and refreshes
 *   the gauges of /metrics.
 * Two jobs rather than one so each keeps its own period (0 turns a job
 * off); their passes take one mutex (pass_mu), so a workload that
 * exited is failed and counted once even when both are due together. Open runs a full reconcile
 * first (initializing enclaves included), so enclaves whose workloads did not survive a dcmsd
 * restart show Failed at once.
 */
#include "dcms/app.h"
#include "dcms/log.h"
#include "dcms/periodic.h"
#include "dcms/store.h"
#include "enclaves/enclaves_int.h"

struct target {
    char id[DCMS_UUID_STRLEN];
    char status[16];
    char ref[DCMS_ENCLAVE_REF_MAX];
    bool has_ref;
    bool governed; /* bound to a contract, or held by one */
};

/* One pass: probe, fail what is gone, and (with `sample`) store metrics. */
static enum dcms_err pass_locked(struct dcms_enclaves *en, bool all, bool sample,
                                 struct dcms_errinfo *ei)
{
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_begin(en->app->store, DCMS_TX_READ, &tx, ei);
    if (e)
        return e;
    /* Only this node's workloads: another node's are probed by that node. */
    e = enclave_store_active(tx, en->backend->name, dcms_nodes_self(en->app->nodes), all, &rows,
                             ei);
    dcms_store_rollback(tx);
    if (e)
        return e;
    size_t n = dcms_store_rows_count(rows);
    struct target *t = calloc(n ? n : 1, sizeof(*t));
    struct enclave_gauge *g = calloc(n ? n : 1, sizeof(*g));
    size_t ng = 0;
    if (!t || !g) {
        dcms_store_rows_free(rows);
        free(t);
        free(g);
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    }
    for (size_t i = 0; i < n; i++) {
        snprintf(t[i].id, sizeof(t[i].id), "%s", dcms_store_rows_text(rows, i, 0));
        snprintf(t[i].status, sizeof(t[i].status), "%s", dcms_store_rows_text(rows, i, 1));
        const char *ref = dcms_store_rows_text(rows, i, 2);
        t[i].has_ref = ref != NULL;
        snprintf(t[i].ref, sizeof(t[i].ref), "%s", ref ? ref : "");
        t[i].governed = dcms_store_rows_text(rows, i, 3) || dcms_store_rows_text(rows, i, 4);
    }
    dcms_store_rows_free(rows);
    for (size_t i = 0; i < n; i++) {
        struct dcms_errinfo pei;
        dcms_errinfo_init(&pei, NULL);
        char reason[300];
        reason[0] = '\0';
        struct dcms_enclave_probe pr;
        memset(&pr, 0, sizeof(pr));
        pr.pid = -1;
        if (strcmp(t[i].status, "terminated") == 0) {
            /* Its contract ended it; the workload may still run here. */
            if (enclave_govern_enforce(en, t[i].id, all, NULL, &pei))
                DCMS_LOG(DCMS_LOG_WARN, "enclaves", "cannot stop the workload of %s: %s", t[i].id,
                         pei.message);
            continue;
        }
        if (!t[i].has_ref) {
            /* Initializing with no workload yet: its creator died with the previous dcmsd. */
            snprintf(reason, sizeof(reason),
                     "workload lost: dcmsd restarted while it was starting");
        } else if (en->backend->probe(en->backend, t[i].ref, &pr, &pei)) {
            DCMS_LOG(DCMS_LOG_WARN, "enclaves", "cannot probe enclave %s: %s", t[i].id,
                     pei.message);
            continue;
        } else if (pr.state == DCMS_ENCLAVE_RUN_EXITED) {
            snprintf(reason, sizeof(reason), "workload exited: %s",
                     pr.reason[0] ? pr.reason : "no reason given");
        } else if (pr.state == DCMS_ENCLAVE_RUN_UNKNOWN) {
            snprintf(reason, sizeof(reason), "workload lost: %s",
                     all ? "dcmsd restarted" : "the backend no longer knows it");
        } else if (strcmp(t[i].status, "initializing") == 0) {
            /* A creation that dcmsd did not finish: it cannot be trusted without its attestation.
             */
            snprintf(reason, sizeof(reason),
                     "workload lost: dcmsd restarted while it was starting");
        }
        if (reason[0]) {
            struct dcms_errinfo fei;
            dcms_errinfo_init(&fei, NULL);
            if (enclave_fail_if(en, t[i].id, t[i].has_ref ? t[i].ref : NULL, reason, &fei))
                DCMS_LOG(DCMS_LOG_WARN, "enclaves", "cannot record the failure of %s: %s", t[i].id,
                         fei.message);
            else
                __atomic_fetch_add(&en->reconcile_failed, 1, __ATOMIC_RELAXED);
            continue;
        }
        if (t[i].governed && strcmp(t[i].status, "initializing") != 0) {
            /* An enclave never runs for a contract that is not Active. */
            struct dcms_errinfo gei;
            dcms_errinfo_init(&gei, NULL);
            if (enclave_govern_enforce(en, t[i].id, all, NULL, &gei))
                DCMS_LOG(DCMS_LOG_WARN, "enclaves", "cannot apply the contract of %s: %s", t[i].id,
                         gei.message);
        }
        if (!sample)
            continue;
        struct dcms_errinfo sei;
        dcms_errinfo_init(&sei, NULL);
        if (enclave_store_sample(en, t[i].id, &pr, &sei))
            DCMS_LOG(DCMS_LOG_WARN, "enclaves", "cannot store metrics of %s: %s", t[i].id,
                     sei.message);
        snprintf(g[ng].id, sizeof(g[ng].id), "%s", t[i].id);
        snprintf(g[ng].status, sizeof(g[ng].status), "%s",
                 pr.state == DCMS_ENCLAVE_RUN_SUSPENDED ? "suspended" : "running");
        g[ng].probe = pr;
        ng++;
    }
    free(t);
    __atomic_fetch_add(&en->reconcile_runs, 1, __ATOMIC_RELAXED);
    if (sample) {
        pthread_mutex_lock(&en->gauges_mu);
        free(en->gauges);
        en->gauges = g;
        en->ngauges = ng;
        pthread_mutex_unlock(&en->gauges_mu);
    } else {
        free(g);
    }
    return DCMS_OK;
}

static enum dcms_err pass(struct dcms_enclaves *en, bool all, bool sample, struct dcms_errinfo *ei)
{
    pthread_mutex_lock(&en->pass_mu);
    enum dcms_err e = pass_locked(en, all, sample, ei);
    pthread_mutex_unlock(&en->pass_mu);
    return e;
}

enum dcms_err dcms_enclaves_reconcile(struct dcms_enclaves *en, bool all, struct dcms_errinfo *ei)
{
    return pass(en, all, false, ei);
}

/* The reconcile job: probe, fail what is gone. */
static void reconcile_run(void *ctx)
{
    struct dcms_enclaves *en = ctx;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    if (pass(en, false, false, &ei))
        DCMS_LOG(DCMS_LOG_WARN, "enclaves", "reconcile: %s", ei.message);
}

/* The metrics job: the same pass, also storing a sample per workload and refreshing the gauges. */
static void metrics_run(void *ctx)
{
    struct dcms_enclaves *en = ctx;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    if (pass(en, false, true, &ei))
        DCMS_LOG(DCMS_LOG_WARN, "enclaves", "reconcile: %s", ei.message);
}

enum dcms_err enclave_jobs_start(struct dcms_enclaves *en, struct dcms_errinfo *ei)
{
    enum dcms_err e = DCMS_OK;
    if (en->reconcile_ms)
        e = dcms_periodic_start("enclave-reconcile", en->reconcile_ms, reconcile_run, en,
                                &en->reconcile_job, ei);
    if (!e && en->metrics_interval_ms)
        e = dcms_periodic_start("enclave-metrics", en->metrics_interval_ms, metrics_run, en,
                                &en->metrics_job, ei);
    return e;
}

void enclave_jobs_stop(struct dcms_enclaves *en)
{
    dcms_periodic_stop(en->reconcile_job);
    dcms_periodic_stop(en->metrics_job);
    en->reconcile_job = en->metrics_job = NULL;
}

enum dcms_err dcms_enclaves_open(struct dcms_app *app, const struct dcms_enclaves_opts *opts,
                                 struct dcms_enclaves **out, struct dcms_errinfo *ei)
{
    *out = NULL;
    struct dcms_enclaves *en = calloc(1, sizeof(*en));
    if (!en) {
        dcms_enclave_backend_free(opts->backend);
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    }
    en->app = app;
    en->backend = opts->backend;
    snprintf(en->images_dir, sizeof(en->images_dir), "%s", opts->images_dir);
    en->limits =
        (struct enclave_limits){opts->max_cpu_cores, opts->max_memory_mb, opts->max_storage_gb};
    en->reconcile_ms = opts->reconcile_ms;
    en->metrics_interval_ms = opts->metrics_interval_ms;
    for (size_t i = 0; i < ENCLAVE_LOCK_STRIPES; i++)
        pthread_mutex_init(&en->locks[i], NULL);
    pthread_mutex_init(&en->gauges_mu, NULL);
    pthread_mutex_init(&en->pass_mu, NULL);
    pthread_mutex_init(&en->sessions_mu, NULL);
    pthread_mutex_init(&en->images_mu, NULL);
    /* Contract changes reach the enclaves from now on; the first pass catches up on the rest. */
    enum dcms_err e = enclave_govern_start(en, ei);
    /* The leader marks the enclaves of a node that stopped beating lost. */
    if (!e)
        e = dcms_nodes_on_lost(app->nodes, enclave_node_lost, en, ei);
    /* Whatever a previous dcmsd left running or starting is re-checked before serving. */
    if (!e)
        e = pass(en, true, false, ei);
    if (!e)
        e = enclave_jobs_start(en, ei);
    if (e) {
        dcms_enclaves_close(en);
        return e;
    }
    *out = en;
    return DCMS_OK;
}

void dcms_enclaves_close(struct dcms_enclaves *en)
{
    if (!en)
        return;
    enclave_govern_stop(en);
    enclave_jobs_stop(en);
    if (en->sessions)
        DCMS_LOG(DCMS_LOG_ERROR, "enclaves", "closing with an enclave session still open");
    dcms_enclave_backend_free(en->backend);
    for (size_t i = 0; i < ENCLAVE_LOCK_STRIPES; i++)
        pthread_mutex_destroy(&en->locks[i]);
    pthread_mutex_destroy(&en->gauges_mu);
    pthread_mutex_destroy(&en->pass_mu);
    pthread_mutex_destroy(&en->sessions_mu);
    pthread_mutex_destroy(&en->images_mu);
    free(en->gauges);
    free(en);
}
