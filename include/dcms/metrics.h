/*
 * Request metrics for /metrics (Prometheus text format 0.0.4): requests by
 * route and status, a latency histogram per route, requests in flight, open
 * connections, and the store pool. Lock-free (relaxed atomics): every
 * function is thread-safe.
 */
#ifndef DCMS_METRICS_H
#define DCMS_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "dcms/err.h"
#include "dcms/str.h"

struct dcms_metrics;
struct dcms_store;

/* One slot per route in the route table plus one for unmatched requests. */
struct dcms_metrics *dcms_metrics_new(void);
void dcms_metrics_free(struct dcms_metrics *m);

/* Route index from the route table, or (size_t)-1 for unmatched requests. */
void dcms_metrics_observe(struct dcms_metrics *m, size_t route, unsigned status,
                          int64_t duration_us);
void dcms_metrics_in_flight(struct dcms_metrics *m, int delta);
void dcms_metrics_connections(struct dcms_metrics *m, int delta);
int64_t dcms_metrics_connections_open(struct dcms_metrics *m);
int64_t dcms_metrics_requests_in_flight(struct dcms_metrics *m);

/* Appends the exposition text; `store` (may be NULL) adds the pool gauges. */
enum dcms_err dcms_metrics_render(struct dcms_metrics *m, struct dcms_store *store,
                                  struct dcms_buf *out) DCMS_MUST_CHECK;

#endif
