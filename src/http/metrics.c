/*
 * Prometheus metrics kept in fixed arrays of relaxed atomics: a counter per
 * (route, status) and a latency histogram per route. Statuses are folded
 * into the few dcms actually sends, plus "other".
 */
#include <stdatomic.h>

#include "dcms/metrics.h"
#include "dcms/store.h"
#include "http/http_int.h"

static const unsigned statuses[] = {200, 201, 202, 204, 304, 400, 401, 403, 404, 405,
                                    409, 412, 413, 415, 422, 429, 499, 500, 503};
#define NSTATUS (sizeof(statuses) / sizeof(statuses[0]) + 1) /* last: other */

static const double buckets_s[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                   0.1,    0.25,  0.5,    1,     2.5,  5,     10};
#define NBUCKETS (sizeof(buckets_s) / sizeof(buckets_s[0]))

struct route_metrics {
    atomic_uint_fast64_t by_status[NSTATUS];
    atomic_uint_fast64_t bucket[NBUCKETS]; /* non-cumulative; summed when rendered */
    atomic_uint_fast64_t count, sum_us;
};

struct dcms_metrics {
    atomic_int_fast64_t in_flight, connections;
    size_t nroutes;
    struct route_metrics routes[]; /* dcms_routes_count + 1 (unmatched) */
};

struct dcms_metrics *dcms_metrics_new(void)
{
    size_t n = dcms_routes_count + 1;
    struct dcms_metrics *m = calloc(1, sizeof(*m) + n * sizeof(struct route_metrics));
    if (m)
        m->nroutes = n;
    return m;
}

void dcms_metrics_free(struct dcms_metrics *m)
{
    free(m);
}

void dcms_metrics_observe(struct dcms_metrics *m, size_t route, unsigned status,
                          int64_t duration_us)
{
    struct route_metrics *r = &m->routes[route < dcms_routes_count ? route : dcms_routes_count];
    size_t si = NSTATUS - 1;
    for (size_t i = 0; i < NSTATUS - 1; i++)
        if (statuses[i] == status)
            si = i;
    atomic_fetch_add_explicit(&r->by_status[si], 1, memory_order_relaxed);
    double s = (double)duration_us / 1e6;
    for (size_t b = 0; b < NBUCKETS; b++) {
        if (s <= buckets_s[b]) {
            atomic_fetch_add_explicit(&r->bucket[b], 1, memory_order_relaxed);
            break;
        }
    }
    atomic_fetch_add_explicit(&r->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&r->sum_us, (uint64_t)(duration_us > 0 ? duration_us : 0),
                              memory_order_relaxed);
}

void dcms_metrics_in_flight(struct dcms_metrics *m, int delta)
{
    atomic_fetch_add_explicit(&m->in_flight, delta, memory_order_relaxed);
}

void dcms_metrics_connections(struct dcms_metrics *m, int delta)
{
    atomic_fetch_add_explicit(&m->connections, delta, memory_order_relaxed);
}

int64_t dcms_metrics_connections_open(struct dcms_metrics *m)
{
    return atomic_load_explicit(&m->connections, memory_order_relaxed);
}

int64_t dcms_metrics_requests_in_flight(struct dcms_metrics *m)
{
    return atomic_load_explicit(&m->in_flight, memory_order_relaxed);
}

static void route_labels(size_t i, const char **method, const char **path)
{
    if (i < dcms_routes_count) {
        *method = dcms_routes[i].method;
        *path = dcms_routes[i].path;
    } else {
        *method = "";
        *path = "unmatched";
    }
}

enum dcms_err dcms_metrics_render(struct dcms_metrics *m, struct dcms_store *store,
                                  struct dcms_buf *out)
{
    enum dcms_err e =
        dcms_buf_appends(out, "# HELP dcms_http_requests_total HTTP requests by route and status.\n"
                              "# TYPE dcms_http_requests_total counter\n");
    for (size_t i = 0; !e && i < m->nroutes; i++) {
        const char *method, *path;
        route_labels(i, &method, &path);
        for (size_t s = 0; !e && s < NSTATUS; s++) {
            uint64_t v = atomic_load_explicit(&m->routes[i].by_status[s], memory_order_relaxed);
            if (!v)
                continue;
            char code[8];
            if (s < NSTATUS - 1)
                snprintf(code, sizeof(code), "%u", statuses[s]);
            else
                snprintf(code, sizeof(code), "other");
            e = dcms_buf_appendf(out,
                                 "dcms_http_requests_total{method=\"%s\",route=\"%s\","
                                 "status=\"%s\"} %llu\n",
                                 method, path, code, (unsigned long long)v);
        }
    }
    if (!e)
        e = dcms_buf_appends(out,
                             "# HELP dcms_http_request_duration_seconds Time to answer, by route.\n"
                             "# TYPE dcms_http_request_duration_seconds histogram\n");
    for (size_t i = 0; !e && i < m->nroutes; i++) {
        struct route_metrics *r = &m->routes[i];
        uint64_t count = atomic_load_explicit(&r->count, memory_order_relaxed);
        if (!count)
            continue;
        const char *method, *path;
        route_labels(i, &method, &path);
        uint64_t cum = 0;
        for (size_t b = 0; !e && b < NBUCKETS; b++) {
            cum += atomic_load_explicit(&r->bucket[b], memory_order_relaxed);
            e = dcms_buf_appendf(out,
                                 "dcms_http_request_duration_seconds_bucket{method=\"%s\","
                                 "route=\"%s\",le=\"%g\"} %llu\n",
                                 method, path, buckets_s[b], (unsigned long long)cum);
        }
        if (!e)
            e = dcms_buf_appendf(
                out,
                "dcms_http_request_duration_seconds_bucket{method=\"%s\",route=\"%s\","
                "le=\"+Inf\"} %llu\n"
                "dcms_http_request_duration_seconds_sum{method=\"%s\",route=\"%s\"} %.6f\n"
                "dcms_http_request_duration_seconds_count{method=\"%s\",route=\"%s\"} %llu\n",
                method, path, (unsigned long long)count, method, path,
                (double)atomic_load_explicit(&r->sum_us, memory_order_relaxed) / 1e6, method, path,
                (unsigned long long)count);
    }
    if (!e)
        e = dcms_buf_appendf(
            out,
            "# HELP dcms_http_requests_in_flight Requests being served now.\n"
            "# TYPE dcms_http_requests_in_flight gauge\n"
            "dcms_http_requests_in_flight %lld\n"
            "# HELP dcms_http_connections_open Client connections open now.\n"
            "# TYPE dcms_http_connections_open gauge\n"
            "dcms_http_connections_open %lld\n",
            (long long)atomic_load_explicit(&m->in_flight, memory_order_relaxed),
            (long long)atomic_load_explicit(&m->connections, memory_order_relaxed));
    if (!e && store) {
        struct dcms_store_stats st;
        dcms_store_stats(store, &st);
        e = dcms_buf_appendf(
            out,
            "# HELP dcms_store_pool_connections Store connections in the pool.\n"
            "# TYPE dcms_store_pool_connections gauge\n"
            "dcms_store_pool_connections{backend=\"%s\"} %u\n"
            "# HELP dcms_store_pool_in_use Store connections lent out now.\n"
            "# TYPE dcms_store_pool_in_use gauge\n"
            "dcms_store_pool_in_use{backend=\"%s\"} %u\n"
            "# HELP dcms_store_pool_acquired_total Store connections lent out.\n"
            "# TYPE dcms_store_pool_acquired_total counter\n"
            "dcms_store_pool_acquired_total{backend=\"%s\"} %llu\n"
            "# HELP dcms_store_pool_waits_total Times a request waited for a connection.\n"
            "# TYPE dcms_store_pool_waits_total counter\n"
            "dcms_store_pool_waits_total{backend=\"%s\"} %llu\n"
            "# HELP dcms_store_pool_timeouts_total Times no connection came in time.\n"
            "# TYPE dcms_store_pool_timeouts_total counter\n"
            "dcms_store_pool_timeouts_total{backend=\"%s\"} %llu\n"
            "# HELP dcms_store_reconnects_total Reconnections to the database.\n"
            "# TYPE dcms_store_reconnects_total counter\n"
            "dcms_store_reconnects_total{backend=\"%s\"} %llu\n",
            dcms_store_backend_name(store), st.pool_size, dcms_store_backend_name(store), st.in_use,
            dcms_store_backend_name(store), (unsigned long long)st.acquired_total,
            dcms_store_backend_name(store), (unsigned long long)st.wait_total,
            dcms_store_backend_name(store), (unsigned long long)st.timeouts_total,
            dcms_store_backend_name(store), (unsigned long long)st.reconnects_total);
    }
    return e;
}
