/*
 * Every query of the nodes module's tables (nodes, leases; migration 0021),
 * and the lease compare-and-set of dcms/lease.h. No query here names
 * another module's table.
 */
#include <stdio.h>
#include <string.h>

#include "dcms/lease.h"
#include "dcms/store.h"
#include "nodes/nodes_int.h"

/*
 * The compare-and-set: the row is written only when it is ours or expired.
 * On PostgreSQL the WHERE of DO UPDATE is evaluated on the newest row
 * version under its row lock, so of two racing nodes one sees the other's
 * fresh expiry and changes nothing.
 */
static struct dcms_query q_lease_take =
    DCMS_QUERY("lease_take",
               "INSERT INTO leases (name, holder, expires_us, epoch) VALUES ($1, $2, $3, 1) "
               "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
               "expires_us = excluded.expires_us, "
               "epoch = leases.epoch + CASE WHEN leases.holder = excluded.holder THEN 0 ELSE 1 END "
               "WHERE leases.holder = excluded.holder OR leases.expires_us < $4");
static struct dcms_query q_lease_get =
    DCMS_QUERY("lease_get", "SELECT holder, expires_us, epoch FROM leases WHERE name = $1");
static struct dcms_query q_lease_release =
    DCMS_QUERY("lease_release", "UPDATE leases SET expires_us = 0 WHERE name = $1 AND holder = $2");

static struct dcms_query q_node_beat = DCMS_QUERY(
    "node_beat", "INSERT INTO nodes (id, url, started_us, last_seen_us) VALUES ($1, $2, $3, $4) "
                 "ON CONFLICT (id) DO UPDATE SET url = excluded.url, "
                 "started_us = excluded.started_us, last_seen_us = excluded.last_seen_us");
static struct dcms_query q_node_leave =
    DCMS_QUERY("node_leave", "UPDATE nodes SET last_seen_us = 0 WHERE id = $1");
static struct dcms_query q_node_get =
    DCMS_QUERY("node_get", "SELECT url, last_seen_us FROM nodes WHERE id = $1");
static struct dcms_query q_node_stale =
    DCMS_QUERY("node_stale", "SELECT id, last_seen_us FROM nodes WHERE id <> $1 "
                             "AND last_seen_us < $2 AND (swept_us IS NULL OR swept_us < "
                             "last_seen_us OR (last_seen_us = 0 AND swept_us < started_us)) "
                             "ORDER BY id LIMIT 64");
static struct dcms_query q_node_swept =
    DCMS_QUERY("node_swept", "UPDATE nodes SET swept_us = $3 WHERE id = $1 AND last_seen_us = $2");
static struct dcms_query q_node_list =
    DCMS_QUERY("node_list", "SELECT id, url, started_us, last_seen_us, swept_us FROM nodes "
                            "ORDER BY id LIMIT 1000");

enum dcms_err dcms_lease_get(struct dcms_store_tx *tx, const char *name, struct dcms_lease *out,
                             bool *found, struct dcms_errinfo *ei)
{
    struct dcms_store_rows *rows = NULL;
    memset(out, 0, sizeof(*out));
    *found = false;
    enum dcms_err e = dcms_store_exec(
        tx, &q_lease_get, (struct dcms_store_val[]){DCMS_VAL_TEXT(name)}, 1, &rows, NULL, ei);
    if (!e && dcms_store_rows_count(rows) == 1) {
        *found = true;
        snprintf(out->holder, sizeof(out->holder), "%s", dcms_store_rows_text(rows, 0, 0));
        out->expires_us = dcms_store_rows_int(rows, 0, 1);
        out->epoch = dcms_store_rows_int(rows, 0, 2);
    }
    dcms_store_rows_free(rows);
    return e;
}

enum dcms_err dcms_lease_acquire(struct dcms_store_tx *tx, const char *name, const char *holder,
                                 int64_t now_us, uint64_t ttl_ms, bool *held,
                                 struct dcms_lease *before, struct dcms_errinfo *ei)
{
    *held = false;
    struct dcms_lease prev;
    bool found = false;
    if (strlen(holder) >= DCMS_LEASE_HOLDER_MAX)
        return dcms_err_set(ei, DCMS_ERR_INTERNAL, "lease holder name too long");
    enum dcms_err e = dcms_lease_get(tx, name, &prev, &found, ei);
    if (e)
        return e;
    if (before)
        *before = prev;
    uint64_t n = 0;
    e = dcms_store_exec(tx, &q_lease_take,
                        (struct dcms_store_val[]){DCMS_VAL_TEXT(name), DCMS_VAL_TEXT(holder),
                                                  DCMS_VAL_INT(now_us + (int64_t)ttl_ms * 1000),
                                                  DCMS_VAL_INT(now_us)},
                        4, NULL, &n, ei);
    *held = !e && n == 1;
    return e;
}

enum dcms_err dcms_lease_release(struct dcms_store_tx *tx, const char *name, const char *holder,
                                 struct dcms_errinfo *ei)
{
    return dcms_store_exec(tx, &q_lease_release,
                           (struct dcms_store_val[]){DCMS_VAL_TEXT(name), DCMS_VAL_TEXT(holder)}, 2,
                           NULL, NULL, ei);
}

enum dcms_err nodes_store_beat(struct dcms_store_tx *tx, const char *id, const char *url,
                               int64_t started_us, int64_t now_us, struct dcms_errinfo *ei)
{
    return dcms_store_exec(tx, &q_node_beat,
                           (struct dcms_store_val[]){DCMS_VAL_TEXT(id), DCMS_VAL_TEXT(url),
                                                     DCMS_VAL_INT(started_us),
                                                     DCMS_VAL_INT(now_us)},
                           4, NULL, NULL, ei);
}

enum dcms_err nodes_store_leave(struct dcms_store_tx *tx, const char *id, struct dcms_errinfo *ei)
{
    return dcms_store_exec(tx, &q_node_leave, (struct dcms_store_val[]){DCMS_VAL_TEXT(id)}, 1, NULL,
                           NULL, ei);
}

enum dcms_err nodes_store_get(struct dcms_store_tx *tx, const char *id,
                              struct dcms_store_rows **rows, struct dcms_errinfo *ei)
{
    return dcms_store_exec(tx, &q_node_get, (struct dcms_store_val[]){DCMS_VAL_TEXT(id)}, 1, rows,
                           NULL, ei);
}

enum dcms_err nodes_store_stale(struct dcms_store_tx *tx, const char *self, int64_t before_us,
                                struct dcms_store_rows **rows, struct dcms_errinfo *ei)
{
    return dcms_store_exec(tx, &q_node_stale,
                           (struct dcms_store_val[]){DCMS_VAL_TEXT(self), DCMS_VAL_INT(before_us)},
                           2, rows, NULL, ei);
}

enum dcms_err nodes_store_swept(struct dcms_store_tx *tx, const char *id, int64_t last_seen_us,
                                int64_t now_us, bool *done, struct dcms_errinfo *ei)
{
    uint64_t n = 0;
    enum dcms_err e =
        dcms_store_exec(tx, &q_node_swept,
                        (struct dcms_store_val[]){DCMS_VAL_TEXT(id), DCMS_VAL_INT(last_seen_us),
                                                  DCMS_VAL_INT(now_us)},
                        3, NULL, &n, ei);
    *done = !e && n == 1;
    return e;
}

enum dcms_err nodes_store_list(struct dcms_store_tx *tx, struct dcms_store_rows **rows,
                               struct dcms_errinfo *ei)
{
    return dcms_store_exec(tx, &q_node_list, NULL, 0, rows, NULL, ei);
}
