/*
 * Prometheus metrics (src/http/metrics.c): the request counter with its
 * method/route/status labels, the cumulative latency histogram (ending with
 * le="+Inf" equal to _count), and the in-flight and connection gauges.
 */
#include "testutil.h"

#include "dcms/metrics.h"
#include "http/http_int.h"

/* The whole exposition for `m`; the caller frees it. */
static char *render(struct dcms_metrics *m)
{
    struct dcms_buf b;
    dcms_buf_init(&b, 1 << 20);
    enum dcms_err e = dcms_metrics_render(m, NULL, &b);
    if (e) {
        dcms_buf_release(&b);
        fail_msg("render failed: %s", dcms_err_slug(e));
    }
    return dcms_buf_detach(&b, NULL);
}

static void assert_line(const char *text, const char *line)
{
    char want[1024];
    snprintf(want, sizeof(want), "\n%s\n", line);
    if (!strstr(text, want))
        fail_msg("missing line \"%s\" in:\n%s", line, text);
}

/* The value of the sample whose name and labels are exactly `series`. */
static long long sample(const char *text, const char *series)
{
    char want[512];
    snprintf(want, sizeof(want), "\n%s ", series);
    const char *p = strstr(text, want);
    if (!p)
        fail_msg("no sample %s in:\n%s", series, text);
    return strtoll(p + strlen(want), NULL, 10);
}

/* Checks the histogram of one route: cumulative, ending with +Inf == _count. */
static void check_histogram(const char *text, const char *labels, long long want_count)
{
    static const char *const les[] = {"0.0005", "0.001", "0.0025", "0.005", "0.01",
                                      "0.025",  "0.05",  "0.1",    "0.25",  "0.5",
                                      "1",      "2.5",   "5",      "10",    "+Inf"};
    char series[256];
    long long prev = 0;
    for (size_t i = 0; i < sizeof(les) / sizeof(les[0]); i++) {
        snprintf(series, sizeof(series), "dcms_http_request_duration_seconds_bucket{%s,le=\"%s\"}",
                 labels, les[i]);
        long long v = sample(text, series);
        if (v < prev)
            fail_msg("%s = %lld is less than the bucket before (%lld)", series, v, prev);
        prev = v;
    }
    snprintf(series, sizeof(series), "dcms_http_request_duration_seconds_count{%s}", labels);
    assert_int_equal(sample(text, series), want_count);
    assert_int_equal(prev, want_count); /* +Inf */
    /* The +Inf bucket is the last one of the route. */
    snprintf(series, sizeof(series),
             "dcms_http_request_duration_seconds_bucket{%s,le=\"+Inf\"} %lld\n"
             "dcms_http_request_duration_seconds_sum{%s}",
             labels, want_count, labels);
    assert_non_null(strstr(text, series));
}

static void requests_and_histogram(void **state)
{
    (void)state;
    struct dcms_metrics *m = dcms_metrics_new();
    assert_non_null(m);
    assert_true(dcms_routes_count > 0);
    const char *method = dcms_routes[0].method, *path = dcms_routes[0].path;

    dcms_metrics_observe(m, 0, 200, 300);      /* 0.3 ms */
    dcms_metrics_observe(m, 0, 200, 3000);     /* 3 ms */
    dcms_metrics_observe(m, 0, 503, 2000000);  /* 2 s */
    dcms_metrics_observe(m, 0, 200, 60000000); /* 60 s: only +Inf */
    dcms_metrics_observe(m, 0, 418, 100);      /* a status dcms does not send: "other" */
    dcms_metrics_observe(m, (size_t)-1, 404, 50);
    dcms_metrics_observe(m, dcms_routes_count + 7, 404, 50); /* out of range: unmatched */

    char *text = render(m);
    char labels[256], line[512];
    snprintf(labels, sizeof(labels), "method=\"%s\",route=\"%s\"", method, path);

    assert_non_null(strstr(text, "# TYPE dcms_http_requests_total counter\n"));
    assert_non_null(strstr(text, "# TYPE dcms_http_request_duration_seconds histogram\n"));
    snprintf(line, sizeof(line), "dcms_http_requests_total{%s,status=\"200\"} 3", labels);
    assert_line(text, line);
    snprintf(line, sizeof(line), "dcms_http_requests_total{%s,status=\"503\"} 1", labels);
    assert_line(text, line);
    snprintf(line, sizeof(line), "dcms_http_requests_total{%s,status=\"other\"} 1", labels);
    assert_line(text, line);
    assert_line(text, "dcms_http_requests_total{method=\"\",route=\"unmatched\",status=\"404\"} 2");
    /* Statuses never seen are not listed. */
    snprintf(line, sizeof(line), "dcms_http_requests_total{%s,status=\"404\"}", labels);
    assert_null(strstr(text, line));

    check_histogram(text, labels, 5);
    snprintf(line, sizeof(line), "dcms_http_request_duration_seconds_bucket{%s,le=\"0.0005\"} 2",
             labels);
    assert_line(text, line); /* 0.3 ms and 0.1 ms */
    snprintf(line, sizeof(line), "dcms_http_request_duration_seconds_bucket{%s,le=\"0.005\"} 3",
             labels);
    assert_line(text, line);
    snprintf(line, sizeof(line), "dcms_http_request_duration_seconds_bucket{%s,le=\"2.5\"} 4",
             labels);
    assert_line(text, line);
    snprintf(line, sizeof(line), "dcms_http_request_duration_seconds_bucket{%s,le=\"10\"} 4",
             labels);
    assert_line(text, line);
    snprintf(line, sizeof(line), "dcms_http_request_duration_seconds_sum{%s} 62.003400", labels);
    assert_line(text, line);
    check_histogram(text, "method=\"\",route=\"unmatched\"", 2);

    /* Routes without requests have no histogram. */
    if (dcms_routes_count > 1) {
        snprintf(line, sizeof(line),
                 "dcms_http_request_duration_seconds_count{method=\"%s\","
                 "route=\"%s\"}",
                 dcms_routes[1].method, dcms_routes[1].path);
        assert_null(strstr(text, line));
    }
    free(text);
    dcms_metrics_free(m);
}

static void gauges(void **state)
{
    (void)state;
    struct dcms_metrics *m = dcms_metrics_new();
    assert_non_null(m);
    char *text = render(m);
    assert_non_null(strstr(text, "# TYPE dcms_http_requests_in_flight gauge\n"));
    assert_line(text, "dcms_http_requests_in_flight 0");
    assert_line(text, "dcms_http_connections_open 0");
    /* Nothing observed: no samples, and no pool gauges without a store. */
    assert_null(strstr(text, "dcms_http_requests_total{"));
    assert_null(strstr(text, "dcms_store_pool"));
    free(text);

    dcms_metrics_in_flight(m, 1);
    dcms_metrics_in_flight(m, 1);
    dcms_metrics_in_flight(m, 1);
    dcms_metrics_in_flight(m, -1);
    dcms_metrics_connections(m, 5);
    dcms_metrics_connections(m, -2);
    assert_int_equal(dcms_metrics_requests_in_flight(m), 2);
    assert_int_equal(dcms_metrics_connections_open(m), 3);
    text = render(m);
    assert_line(text, "dcms_http_requests_in_flight 2");
    assert_line(text, "dcms_http_connections_open 3");
    free(text);
    dcms_metrics_free(m);
}

static void render_respects_cap(void **state)
{
    (void)state;
    struct dcms_metrics *m = dcms_metrics_new();
    assert_non_null(m);
    dcms_metrics_observe(m, 0, 200, 1000);
    struct dcms_buf b;
    dcms_buf_init(&b, 100);
    assert_int_equal(dcms_metrics_render(m, NULL, &b), DCMS_ERR_TOO_LARGE);
    assert_true(b.len <= 100);
    dcms_buf_release(&b);
    dcms_metrics_free(m);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(requests_and_histogram),
    cmocka_unit_test(gauges),
    cmocka_unit_test(render_respects_cap),
};

DCMS_TEST_MAIN(tests)
