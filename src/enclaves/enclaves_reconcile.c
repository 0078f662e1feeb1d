/*
 * The service's lifetime and its background work: open (with a full
 * reconcile, so enclaves whose workloads did not survive a dcmsd restart
 * show Failed at once), one thread that probes every running or suspended
 * enclave each DCMS_ENCLAVE_RECONCILE_MS (a workload that exited or that
 * the backend no longer knows moves to Failed, audited as the system) and
 * samples metrics each DCMS_ENCLAVE_METRICS_INTERVAL_MS, close, and the
 * per-enclave gauges of /metrics.
 */
#include <errno.h>
#include <time.h>

#include "dcms/app.h"
#include "dcms/clock.h"
#include "dcms/log.h"
#include "dcms/store.h"
#include "enclaves/enclaves_int.h"

#define RECONCILE_MAX 4096

static struct dcms_query q_active = DCMS_QUERY(
    "enclave_active", "SELECT id, status, runtime_ref FROM enclaves WHERE backend = $1 AND "
                      "(status IN ('running', 'suspended') OR ($2 = 1 AND status = "
                      "'initializing')) ORDER BY id LIMIT 4096");

struct target {
    char id[DCMS_UUID_STRLEN];
    char status[16];
    char ref[DCMS_ENCLAVE_REF_MAX];
    bool has_ref;
};

/* One pass: probe, fail what is gone, and (with `sample`) store metrics. */
static enum dcms_err pass(struct dcms_enclaves *en, bool all, bool sample, struct dcms_errinfo *ei)
{
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_begin(en->app->store, DCMS_TX_READ, &tx, ei);
    if (e)
        return e;
    e = dcms_store_exec(
        tx, &q_active,
        (struct dcms_store_val[]){DCMS_VAL_TEXT(en->backend->name), DCMS_VAL_INT(all ? 1 : 0)}, 2,
        &rows, NULL, ei);
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

enum dcms_err dcms_enclaves_reconcile(struct dcms_enclaves *en, bool all, struct dcms_errinfo *ei)
{
    return pass(en, all, false, ei);
}

static void *thread_main(void *arg)
{
    struct dcms_enclaves *en = arg;
    int64_t next_rec = dcms_clock_mono_us() + (int64_t)en->reconcile_ms * 1000;
    int64_t next_met = en->metrics_interval_ms
                           ? dcms_clock_mono_us() + (int64_t)en->metrics_interval_ms * 1000
                           : INT64_MAX;
    if (!en->reconcile_ms)
        next_rec = INT64_MAX;
    pthread_mutex_lock(&en->mu);
    while (!en->stopping) {
        int64_t now = dcms_clock_mono_us();
        int64_t due = next_rec < next_met ? next_rec : next_met;
        if (now < due) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            int64_t wait_us = due - now;
            ts.tv_sec += (time_t)(wait_us / 1000000);
            ts.tv_nsec += (long)(wait_us % 1000000) * 1000;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&en->cv, &en->mu, &ts);
            continue;
        }
        bool sample = now >= next_met;
        if (now >= next_rec)
            next_rec = now + (int64_t)en->reconcile_ms * 1000;
        if (sample)
            next_met = now + (int64_t)en->metrics_interval_ms * 1000;
        pthread_mutex_unlock(&en->mu);
        struct dcms_errinfo ei;
        dcms_errinfo_init(&ei, NULL);
        if (pass(en, false, sample, &ei))
            DCMS_LOG(DCMS_LOG_WARN, "enclaves", "reconcile: %s", ei.message);
        pthread_mutex_lock(&en->mu);
    }
    pthread_mutex_unlock(&en->mu);
    return NULL;
}

enum dcms_err enclave_thread_start(struct dcms_enclaves *en, struct dcms_errinfo *ei)
{
    if (!en->reconcile_ms && !en->metrics_interval_ms)
        return DCMS_OK;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_destroy(&en->cv);
    int rc = pthread_cond_init(&en->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (rc || pthread_create(&en->thread, NULL, thread_main, en))
        return dcms_err_set(ei, DCMS_ERR_INTERNAL, "cannot start the enclave reconcile thread");
    en->thread_started = true;
    return DCMS_OK;
}

void enclave_thread_stop(struct dcms_enclaves *en)
{
    if (!en->thread_started)
        return;
    pthread_mutex_lock(&en->mu);
    en->stopping = true;
    pthread_cond_broadcast(&en->cv);
    pthread_mutex_unlock(&en->mu);
    pthread_join(en->thread, NULL);
    en->thread_started = false;
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
    pthread_mutex_init(&en->mu, NULL);
    pthread_cond_init(&en->cv, NULL);
    pthread_mutex_init(&en->gauges_mu, NULL);
    /* Whatever a previous dcmsd left running or starting is re-checked before serving. */
    enum dcms_err e = pass(en, true, false, ei);
    if (!e)
        e = enclave_thread_start(en, ei);
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
    enclave_thread_stop(en);
    dcms_enclave_backend_free(en->backend);
    for (size_t i = 0; i < ENCLAVE_LOCK_STRIPES; i++)
        pthread_mutex_destroy(&en->locks[i]);
    pthread_mutex_destroy(&en->mu);
    pthread_cond_destroy(&en->cv);
    pthread_mutex_destroy(&en->gauges_mu);
    free(en->gauges);
    free(en);
}
