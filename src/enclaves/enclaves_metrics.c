/*
 * Enclave metrics: one sample of a workload stored (the latest on the
 * enclave row, a bounded history beside it, so any node can answer),
 * GET /api/v1/enclaves/{id}/metrics, and the per-enclave gauges of
 * /metrics rendered from this node's last sampling pass (in memory; see
 * enclaves_reconcile.c for the job that samples).
 */
#include "dcms/app.h"
#include "dcms/clock.h"
#include "dcms/enclaves.h"
#include "dcms/json.h"
#include "dcms/store.h"
#include "dcms/str.h"
#include "enclaves/enclaves_int.h"

enum dcms_err enclave_store_sample(struct dcms_enclaves *en, const char *id,
                                   const struct dcms_enclave_probe *pr, struct dcms_errinfo *ei)
{
    char now[DCMS_TIME_STRLEN];
    dcms_time_format(dcms_clock_now_us(), now);
    json_t *latest = enclave_probe_json(pr, now);
    char *text = latest ? dcms_json_dump(latest, NULL) : NULL;
    json_decref(latest);
    if (!text)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    struct dcms_store_tx *tx;
    enum dcms_err e = dcms_store_begin(en->app->store, DCMS_TX_WRITE, &tx, ei);
    if (e) {
        free(text);
        return e;
    }
    /* Only the workload the row still names; a sample of a finished one is dropped. */
    struct dcms_store_rows *rows = NULL;
    struct enclave_row r;
    bool stored = false;
    if (!(e = enclave_store_load(tx, id, &rows, &r, ei)) && r.v[C_REF])
        e = enclave_store_put_sample(tx, id, r.v[C_REF], now, text, pr, &stored, ei);
    dcms_store_rows_free(rows);
    free(text);
    return e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, ei);
}

enum dcms_err enclave_metrics(const struct enclave_call *c, const char *id, json_t **out)
{
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL, *srows = NULL;
    struct enclave_row r;
    enum dcms_err e = dcms_store_begin(c->en->app->store, DCMS_TX_READ, &tx, c->ei);
    if (e)
        return e;
    if ((e = enclave_store_load(tx, id, &rows, &r, c->ei)) ||
        (e = enclave_authorize(c, &r, "enclaves:read")))
        goto out;
    if ((e = enclave_store_samples(tx, id, &srows, c->ei)))
        goto out;
    json_t *hist = json_array();
    size_t n = dcms_store_rows_count(srows);
    for (size_t i = n; hist && i-- > 0;) { /* oldest first */
        struct dcms_enclave_probe pr = {
            .cpu_time_ms = (uint64_t)dcms_store_rows_int(srows, i, 1),
            .rss_bytes = (uint64_t)dcms_store_rows_int(srows, i, 2),
            .peak_rss_bytes = (uint64_t)dcms_store_rows_int(srows, i, 3),
            .uptime_ms = (uint64_t)dcms_store_rows_int(srows, i, 4),
            .channel_bytes_in = (uint64_t)dcms_store_rows_int(srows, i, 5),
            .channel_bytes_out = (uint64_t)dcms_store_rows_int(srows, i, 6),
            .nprocs = (uint32_t)dcms_store_rows_int(srows, i, 7),
        };
        const char *notice = dcms_store_rows_text(srows, i, 8);
        if (notice)
            snprintf(pr.notice, sizeof(pr.notice), "%s", notice);
        json_array_append_new(hist, enclave_probe_json(&pr, dcms_store_rows_text(srows, i, 0)));
    }
    json_t *latest = enclave_json_text(r.v[C_METRICS]);
    if (json_is_object(latest) && json_object_size(latest) == 0) {
        json_decref(latest);
        latest = json_null();
    }
    *out = json_pack("{s:s, s:s, s:i, s:i, s:o, s:o}", "enclave_id", id, "status", r.v[C_STATUS],
                     "interval_ms", (int)c->en->metrics_interval_ms, "history_max",
                     ENCLAVE_HISTORY_MAX, "latest", latest, "history", hist);
    if (!*out)
        e = dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
out:
    dcms_store_rows_free(rows);
    dcms_store_rows_free(srows);
    dcms_store_rollback(tx);
    return e;
}

enum dcms_err dcms_enclaves_metrics_render(struct dcms_enclaves *en, struct dcms_buf *out)
{
    if (!en)
        return DCMS_OK;
    static const struct {
        const char *name, *type, *help;
    } m[] = {
        {"dcms_enclave_cpu_seconds_total", "counter", "CPU time used by the enclave's workload."},
        {"dcms_enclave_memory_rss_bytes", "gauge", "Resident memory of the workload now."},
        {"dcms_enclave_memory_peak_bytes", "gauge", "Peak resident memory of the workload."},
        {"dcms_enclave_uptime_seconds", "gauge", "Time since the workload started."},
        {"dcms_enclave_channel_bytes_total", "counter",
         "Bytes over the enclave channel (socketpair or vsock), by direction."},
    };
    pthread_mutex_lock(&en->gauges_mu);
    enum dcms_err e = DCMS_OK;
    for (size_t k = 0; !e && k < sizeof(m) / sizeof(m[0]); k++) {
        e = dcms_buf_appendf(out, "# HELP %s %s\n# TYPE %s %s\n", m[k].name, m[k].help, m[k].name,
                             m[k].type);
        for (size_t i = 0; !e && i < en->ngauges; i++) {
            const struct enclave_gauge *g = &en->gauges[i];
            const struct dcms_enclave_probe *p = &g->probe;
            const char *lbl = g->id;
            switch (k) {
            case 0:
                e = dcms_buf_appendf(out, "%s{enclave=\"%s\",status=\"%s\"} %.3f\n", m[k].name, lbl,
                                     g->status, (double)p->cpu_time_ms / 1e3);
                break;
            case 1:
            case 2:
                e = dcms_buf_appendf(
                    out, "%s{enclave=\"%s\",status=\"%s\"} %llu\n", m[k].name, lbl, g->status,
                    (unsigned long long)(k == 1 ? p->rss_bytes : p->peak_rss_bytes));
                break;
            case 3:
                e = dcms_buf_appendf(out, "%s{enclave=\"%s\",status=\"%s\"} %.3f\n", m[k].name, lbl,
                                     g->status, (double)p->uptime_ms / 1e3);
                break;
            default:
                e = dcms_buf_appendf(out,
                                     "%s{enclave=\"%s\",direction=\"in\"} %llu\n"
                                     "%s{enclave=\"%s\",direction=\"out\"} %llu\n",
                                     m[k].name, lbl, (unsigned long long)p->channel_bytes_in,
                                     m[k].name, lbl, (unsigned long long)p->channel_bytes_out);
            }
        }
    }
    pthread_mutex_unlock(&en->gauges_mu);
    if (!e)
        e = dcms_buf_appendf(
            out,
            "# HELP dcms_enclave_reconcile_runs_total Reconcile passes over the enclaves.\n"
            "# TYPE dcms_enclave_reconcile_runs_total counter\n"
            "dcms_enclave_reconcile_runs_total %llu\n"
            "# HELP dcms_enclave_reconcile_failed_total Enclaves moved to Failed by reconcile.\n"
            "# TYPE dcms_enclave_reconcile_failed_total counter\n"
            "dcms_enclave_reconcile_failed_total %llu\n",
            (unsigned long long)__atomic_load_n(&en->reconcile_runs, __ATOMIC_RELAXED),
            (unsigned long long)__atomic_load_n(&en->reconcile_failed, __ATOMIC_RELAXED));
    return e;
}
