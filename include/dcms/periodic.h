/*
 * Background jobs that run every N milliseconds on a thread of their own:
 * the audit checkpoint timer, the contract expiry job, the enclave
 * reconcile loop, and every later periodic job use this one loop.
 *
 * The period is measured on the monotonic clock, so wall-clock jumps do not
 * move it; the next run is due one period after the previous run ended. A
 * run is never concurrent with another run of the same job. Stopping waits
 * for a run in progress to end, and no run starts afterwards.
 */
#ifndef DCMS_PERIODIC_H
#define DCMS_PERIODIC_H

#include <stdint.h>

#include "dcms/err.h"

struct dcms_periodic;

/* One run of the job; it logs its own failures (it has no caller to report to). */
typedef void dcms_periodic_fn(void *ctx);

/*
 * Starts a thread that calls fn(ctx) every `period_ms` (> 0), the first time
 * one period after the start (or at once with dcms_periodic_kick). `name`
 * (static storage) names the job in logs. On success *out owns the thread
 * and must be released with dcms_periodic_stop. DCMS_ERR_NOMEM or
 * DCMS_ERR_INTERNAL when no thread could be started.
 */
enum dcms_err dcms_periodic_start(const char *name, uint64_t period_ms, dcms_periodic_fn *fn,
                                  void *ctx, struct dcms_periodic **out,
                                  struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* Makes the next run due now (a run in progress finishes first). Thread-safe. */
void dcms_periodic_kick(struct dcms_periodic *p);

/* Stops the job: waits for a run in progress, joins the thread, frees p. NULL is a no-op. */
void dcms_periodic_stop(struct dcms_periodic *p);

#endif
