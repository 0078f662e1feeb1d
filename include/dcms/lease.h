/*
 * Named leases in the store: at most one holder at a time, across every
 * dcmsd sharing the store. A lease is taken or renewed by one conditional
 * upsert (compare-and-set on the row: the caller already holds it, or it
 * has expired), so two nodes racing for it can never both succeed: SQLite
 * serializes writers, and PostgreSQL re-checks the condition on the newest
 * row version under the row lock. Expiry compares the holders' wall clocks
 * (keep nodes on NTP; the lease time must exceed the worst skew).
 *
 * The functions run inside the caller's transaction (DCMS_TX_WRITE for
 * acquire and release), so a takeover commits with its audit event. They
 * are thread-safe as far as the store is.
 */
#ifndef DCMS_LEASE_H
#define DCMS_LEASE_H

#include <stdbool.h>
#include <stdint.h>

#include "dcms/err.h"

struct dcms_store_tx;

#define DCMS_LEASE_HOLDER_MAX 64

/* A lease as stored: holder, expiry (wall clock, microseconds), changes of holder. */
struct dcms_lease {
    char holder[DCMS_LEASE_HOLDER_MAX];
    int64_t expires_us;
    int64_t epoch;
};

/*
 * Takes lease `name` for `holder` until now_us + ttl_ms, or renews it when
 * `holder` already holds it. *held tells whether `holder` holds it now;
 * `before` (may be NULL) receives the lease as it was (holder "" when it
 * did not exist), so the caller can tell a takeover from a renewal.
 * `holder` is at most DCMS_LEASE_HOLDER_MAX - 1 bytes. Store errors only.
 */
enum dcms_err dcms_lease_acquire(struct dcms_store_tx *tx, const char *name, const char *holder,
                                 int64_t now_us, uint64_t ttl_ms, bool *held,
                                 struct dcms_lease *before,
                                 struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* Gives lease `name` up if `holder` holds it (it expires at once); otherwise nothing. */
enum dcms_err dcms_lease_release(struct dcms_store_tx *tx, const char *name, const char *holder,
                                 struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* Reads lease `name`; *found false when it was never taken. */
enum dcms_err dcms_lease_get(struct dcms_store_tx *tx, const char *name, struct dcms_lease *out,
                             bool *found, struct dcms_errinfo *ei) DCMS_MUST_CHECK;

#endif
