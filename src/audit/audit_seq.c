/*
 * The sequencer: the one writer that turns pending events into the log.
 *
 * Audited writes only insert into audit_pending (no shared row). One
 * sequencer at a time, across every dcmsd on the database, moves them into
 * audit_events in batches, in one transaction per batch: each event gets the
 * next seq, its prev_hash and hash (the chain), and its leaf in the RFC 9162
 * tree; every complete subtree the leaf finishes is stored, so any proof is
 * a handful of lookups; the batch ends with a signed tree head.
 *
 * Who sequences: on PostgreSQL the holder of a session-level advisory lock,
 * taken with pg_try_advisory_lock on a connection of its own (a one-
 * connection pool) and checked before every pass; every node retries it each
 * pass, so when the holder dies (its session ends, and the lock with it)
 * another takes over within one period. The head's compare-and-set fences a
 * holder that lost its lock mid-pass. On SQLite the process is alone.
 *
 * Order: a batch takes what is committed, oldest pid first, and deletes
 * exactly those pids. An event committed after the batch was read, even one
 * with a lower pid (its transaction began earlier), waits for the next
 * batch: positions follow the order in which commits become visible, and
 * within a batch pid order, which respects causality (a transaction that
 * saw another's change drew its pid after that one committed).
 */
#include "audit/audit_int.h"
#include "dcms/clock.h"
#include "dcms/json.h"
#include "dcms/log.h"
#include "dcms/periodic.h"
#include "dcms/store.h"

#define SEQ_LOCK_KEY 0x64636d73 /* "dcms" */
#define SEQ_BATCH_MAX 2000
#define SEQ_PASSES_MAX 64
#define SEQ_RACES_MAX 100
#define BACKFILL_BATCH 1000

static enum dcms_err sign_tree_head(struct dcms_audit *a, struct dcms_store_tx *tx, int64_t size,
                                    const unsigned char root[AUDIT_HASH_LEN],
                                    struct dcms_errinfo *ei)
{
    char now[DCMS_TIME_STRLEN], hex[65], sig64[128];
    dcms_time_format(dcms_clock_now_us(), now);
    dcms_hex_encode(hex, root, AUDIT_HASH_LEN);
    const char *key_id = dcms_sign_key_id(a->key);
    struct dcms_buf msg;
    dcms_buf_init(&msg, 4096);
    unsigned char sig[DCMS_SIGN_BYTES];
    enum dcms_err e = audit_tree_head_message(size, hex, now, key_id, &msg);
    if (!e)
        e = dcms_sign_detached(a->key, msg.ptr, msg.len, sig);
    dcms_buf_release(&msg);
    if (e)
        return dcms_err_set(ei, e, NULL);
    dcms_b64_encode(sig64, sig, sizeof(sig));
    return audit_store_add_tree_head(tx, size, hex, now, key_id, sig64, ei);
}

static enum dcms_err put_nodes(struct dcms_store_tx *tx, const struct audit_tree_node *made,
                               size_t n, struct dcms_errinfo *ei)
{
    enum dcms_err e = DCMS_OK;
    for (size_t i = 0; !e && i < n; i++)
        e = audit_store_node_put(tx, made[i].level, made[i].idx, made[i].hash, ei);
    return e;
}

/*
 * Reads the head and the tree's compact range; events sequenced before the
 * tree existed (the chain alone, up to schema 20) are added to it as leaves
 * first, each one's hash checked, and a tree head is signed for them.
 */
static enum dcms_err load(struct dcms_audit *a, struct dcms_store_tx *tx, int64_t *head_seq,
                          char head_hash[65], struct audit_range *r, struct dcms_errinfo *ei)
{
    int64_t leaves = 0;
    enum dcms_err e = audit_store_head(tx, head_seq, head_hash, ei);
    if (!e)
        e = audit_store_leaf_count(tx, &leaves, ei);
    if (!e && leaves > *head_seq)
        e = dcms_err_set(ei, DCMS_ERR_INTERNAL, "the audit tree has more leaves than events");
    if (!e)
        e = audit_range_load(leaves, audit_store_node_get, tx, r, ei);
    bool grew = false;
    while (!e && r->size < *head_seq) {
        json_t *events = json_array();
        if (!events)
            return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
        e = audit_store_events_range(tx, r->size + 1, *head_seq, BACKFILL_BATCH, events, ei);
        size_t n = json_array_size(events);
        if (!e && n == 0)
            e = dcms_err_set(ei, DCMS_ERR_INTERNAL, "audit event %lld is missing",
                             (long long)r->size + 1);
        for (size_t i = 0; !e && i < n; i++) {
            json_t *ev = json_array_get(events, i);
            json_t *body = json_deep_copy(ev);
            char hash[65];
            unsigned char leaf[AUDIT_HASH_LEN];
            if (!body || json_object_del(body, "hash"))
                e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
            else
                e = audit_event_hashes(body, hash, leaf, ei);
            json_decref(body);
            if (e)
                break;
            const char *stored = json_string_value(json_object_get(ev, "hash"));
            if (json_integer_value(json_object_get(ev, "seq")) != r->size + 1 || !stored ||
                strcmp(hash, stored) != 0) {
                e = dcms_err_set(ei, DCMS_ERR_INTERNAL,
                                 "audit event %lld does not match its hash: not adding it to "
                                 "the tree",
                                 (long long)r->size + 1);
                break;
            }
            struct audit_tree_node made[AUDIT_TREE_LEVELS];
            e = put_nodes(tx, made, audit_range_push(r, leaf, made), ei);
            grew = true;
        }
        json_decref(events);
    }
    if (!e && grew) {
        unsigned char root[AUDIT_HASH_LEN];
        audit_range_root(r, root);
        e = sign_tree_head(a, tx, r->size, root, ei);
    }
    return e;
}

/* Appends [pid, seq, "prev_hash", "hash"] to the JSON array text in `b` ("[..."; closed by
 * the caller): pending row `pid` placed at `seq` (audit_store_events_move). */
static enum dcms_err add_move(struct dcms_buf *b, int64_t pid, int64_t seq, const char *prev_hash,
                              const char *hash)
{
    char item[256];
    snprintf(item, sizeof(item), "%s[%lld,%lld,\"%s\",\"%s\"]", b->len ? "," : "[", (long long)pid,
             (long long)seq, prev_hash, hash);
    return dcms_buf_appends(b, item);
}

static enum dcms_err add_nodes(json_t *nodes, const struct audit_tree_node *made, size_t n,
                               struct dcms_errinfo *ei)
{
    for (size_t i = 0; i < n; i++) {
        char hex[65];
        dcms_hex_encode(hex, made[i].hash, AUDIT_HASH_LEN);
        if (json_array_append_new(
                nodes, json_pack("[i, I, s]", made[i].level, (json_int_t)made[i].idx, hex)))
            return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    }
    return DCMS_OK;
}

/* A checkpoint due inside a batch: signed and stored with the batch's writes. */
struct due_checkpoint {
    int64_t seq;
    char hash[65];
};

/*
 * One batch. The pending rows are read in a read transaction and everything
 * is computed outside any transaction (the chain and leaf hashes, the tree
 * nodes); only the writes take the write transaction, whose first step
 * checks that the head is still where this sequencer left it (another
 * sequencer, a second process on one SQLite file, makes it read everything
 * again). The first batch after a start or a failure loads the head and the
 * tree in the write transaction itself. *n: events sequenced.
 */
static enum dcms_err batch(struct dcms_audit *a, size_t *n, struct dcms_errinfo *ei)
{
    *n = 0;
    struct dcms_store_tx *tx = NULL;
    struct dcms_store_rows *rows = NULL;
    struct dcms_buf moves;
    dcms_buf_init(&moves, 64u << 20);
    struct audit_range *r = malloc(sizeof(*r));
    struct due_checkpoint *due = NULL;
    size_t ndue = 0;
    json_t *nodes = json_array();
    int64_t head_seq = a->head_seq, old_seq;
    char head_hash[65];
    memcpy(head_hash, a->head_hash, 65);
    enum dcms_err e = r && nodes ? DCMS_OK : dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    bool fresh = !a->loaded;
    if (!e && fresh) {
        if (!(e = dcms_store_begin(a->seq_store, DCMS_TX_WRITE, &tx, ei)) &&
            !(e = load(a, tx, &head_seq, head_hash, r, ei)))
            e = audit_store_pending_batch(tx, a->batch_max, &rows, ei);
    } else if (!e) {
        memcpy(r, &a->range, sizeof(*r));
        struct dcms_store_tx *rtx = NULL;
        if (!(e = dcms_store_begin(a->seq_store, DCMS_TX_READ, &rtx, ei)))
            e = audit_store_pending_batch(rtx, a->batch_max, &rows, ei);
        dcms_store_rollback(rtx);
    }
    if (e)
        goto out;
    old_seq = head_seq;
    size_t count = dcms_store_rows_count(rows);
    for (size_t i = 0; !e && i < count; i++) {
        json_t *ev = audit_pending_row_event(rows, i);
        json_t *body =
            ev ? audit_event_body(head_seq + 1, json_string_value(json_object_get(ev, "id")),
                                  json_string_value(json_object_get(ev, "time")),
                                  json_string_value(json_object_get(ev, "actor")),
                                  json_string_value(json_object_get(ev, "action")),
                                  json_string_value(json_object_get(ev, "resource_type")),
                                  json_string_value(json_object_get(ev, "resource_id")),
                                  json_string_value(json_object_get(ev, "outcome")),
                                  json_object_get(ev, "details"),
                                  json_string_value(json_object_get(ev, "client_ip")),
                                  json_string_value(json_object_get(ev, "request_id")), head_hash)
               : NULL;
        json_decref(ev);
        char hash[65];
        unsigned char leaf[AUDIT_HASH_LEN];
        e = body ? audit_event_hashes(body, hash, leaf, ei)
                 : dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
        json_decref(body);
        if (e)
            break;
        int64_t seq = head_seq + 1;
        struct audit_tree_node made[AUDIT_TREE_LEVELS];
        size_t nmade = audit_range_push(r, leaf, made);
        if ((e = add_nodes(nodes, made, nmade, ei)))
            break;
        if (add_move(&moves, dcms_store_rows_int(rows, i, 0), seq, head_hash, hash)) {
            e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
            break;
        }
        if (seq % a->every == 0) {
            if (!due && !(due = malloc(count * sizeof(*due)))) {
                e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
                break;
            }
            due[ndue].seq = seq;
            memcpy(due[ndue++].hash, hash, 65);
        }
        head_seq = seq;
        memcpy(head_hash, hash, 65);
    }
    if (e || (!count && !fresh))
        goto out;
    if (!fresh) {
        int64_t seq_now = 0;
        char hash_now[65];
        if (!(e = dcms_store_begin(a->seq_store, DCMS_TX_WRITE, &tx, ei)) &&
            !(e = audit_store_head(tx, &seq_now, hash_now, ei)) &&
            (seq_now != old_seq || strcmp(hash_now, a->head_hash) != 0))
            e = dcms_err_set(ei, DCMS_ERR_RETRY, "the audit head moved: reading it again");
        if (e)
            goto out;
    }
    if (count) {
        bool ok = false;
        unsigned char root[AUDIT_HASH_LEN];
        audit_range_root(r, root);
        if (dcms_buf_append(&moves, "]", 1))
            e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
        if (!e)
            e = audit_store_events_move(tx, moves.ptr, count, ei);
        if (!e)
            e = audit_store_nodes_bulk(tx, nodes, ei);
        for (size_t i = 0; !e && i < ndue; i++)
            e = audit_sign_checkpoint(a, tx, due[i].seq, due[i].hash, ei);
        if (!e && !(e = audit_store_head_cas(tx, old_seq, head_seq, head_hash, &ok, ei)) && !ok)
            e = dcms_err_set(ei, DCMS_ERR_RETRY, "the audit head moved under the sequencer");
        if (!e)
            e = sign_tree_head(a, tx, r->size, root, ei);
    }
    if (e)
        goto out;
    e = dcms_store_commit(tx, ei);
    tx = NULL;
    if (e)
        goto out;
    memcpy(&a->range, r, sizeof(*r));
    a->head_seq = head_seq;
    memcpy(a->head_hash, head_hash, 65);
    a->loaded = true;
    *n = count;
out:
    if (e)
        a->loaded = false; /* read everything again next time */
    dcms_store_rollback(tx);
    dcms_store_rows_free(rows);
    dcms_buf_release(&moves);
    free(due);
    free(r);
    json_decref(nodes);
    return e;
}

/* Takes the lock when free, or checks it is still held. Caller holds seq_mu. */
static enum dcms_err ensure_leader(struct dcms_audit *a, struct dcms_errinfo *ei)
{
    /* SQLite, or PostgreSQL without a connection of its own (tools and tests that open the
     * log alone): no lock. Two such sequencers still cannot fork the log: the head's
     * compare-and-set and the unique seq make the loser roll back and reload. */
    if (dcms_store_backend(a->seq_store) != DCMS_STORE_PG || a->seq_store == a->store) {
        a->leader = true;
        return DCMS_OK;
    }
    struct dcms_store_tx *tx;
    enum dcms_err e = dcms_store_begin(a->seq_store, DCMS_TX_WRITE, &tx, ei);
    if (e) {
        a->leader = a->loaded = false;
        return e;
    }
    bool held = false;
    if (a->leader && !(e = audit_store_lock(tx, SEQ_LOCK_KEY, false, &held, ei)) && !held) {
        DCMS_LOG(DCMS_LOG_WARN, "audit", "lost the sequencer lock (connection reset?)");
        a->leader = a->loaded = false;
    }
    if (!e && !a->leader && !(e = audit_store_lock(tx, SEQ_LOCK_KEY, true, &held, ei)) && held) {
        DCMS_LOG(DCMS_LOG_INFO, "audit", "this node is now the audit sequencer");
        a->leader = true;
        a->loaded = false;
    }
    if (e) {
        dcms_store_rollback(tx);
        a->leader = a->loaded = false;
        return e;
    }
    return dcms_store_commit(tx, ei);
}

/* Nothing pending and nothing to load: a pass is one cheap read. */
static enum dcms_err idle(struct dcms_audit *a, bool *is_idle, struct dcms_errinfo *ei)
{
    *is_idle = false;
    if (!a->loaded)
        return DCMS_OK;
    struct dcms_store_tx *tx;
    int64_t max = 0;
    enum dcms_err e = dcms_store_begin(a->seq_store, DCMS_TX_READ, &tx, ei);
    if (e)
        return e;
    e = audit_store_pending_max(tx, &max, ei);
    dcms_store_rollback(tx);
    *is_idle = !e && max == 0;
    return e;
}

/*
 * Back-pressure. Appends cost less than sequencing them (an insert against
 * a batch that also writes the events' indexes, the tree and the head), so
 * writers that never pause outrun the one sequencer and the delay before
 * an event's position grows without bound. Every node, sequencer or not,
 * reads the oldest pending event after each pass (and the sequencer after
 * each full batch); while it is older than sequence_delay_ms and the
 * sequencer is getting through the backlog, writers wait before they begin
 * (dcms_audit_admit). A sequencer that is stuck (failing over, a full disk)
 * holds nobody: waiting would not help. Caller holds seq_mu.
 */
#define ADMIT_STUCK_PERIODS 4 /* the oldest unchanged this many bounds: the sequencer is stuck */
#define ADMIT_WAIT_BOUNDS 10  /* a writer waits at most this many bounds */

static void note_lag(struct dcms_audit *a, struct dcms_store *s, bool none_pending)
{
    int64_t pid = 0, t_us = 0;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    if (!none_pending && audit_store_pending_oldest(s, &pid, &t_us, &ei))
        return; /* the pass's own failure is what gets logged */
    int64_t mono = dcms_clock_mono_us(), bound = (int64_t)a->max_delay_ms * 1000;
    if (pid != a->oldest_pid) {
        a->oldest_pid = pid;
        atomic_store(&a->moved_us, mono);
    }
    int64_t lag = pid ? dcms_clock_now_us() - t_us : 0;
    atomic_store(&a->lag_us, lag > 0 ? lag : 0);
    bool hold = lag > bound && mono - atomic_load(&a->moved_us) <= ADMIT_STUCK_PERIODS * bound;
    if (hold && !a->holding)
        DCMS_LOG(DCMS_LOG_INFO, "audit", "writes wait: the audit sequencer is %lld ms behind",
                 (long long)(lag / 1000));
    else if (!hold && a->holding)
        DCMS_LOG(DCMS_LOG_INFO, "audit", "%s (%lld ms behind): writes go on",
                 lag > bound ? "the audit sequencer is stuck" : "the audit sequencer caught up",
                 (long long)(lag / 1000));
    a->holding = hold;
}

int64_t dcms_audit_admit(struct dcms_audit *a)
{
    if (!a)
        return 0;
    int64_t bound = (int64_t)a->max_delay_ms * 1000, t0 = dcms_clock_mono_us(), now = t0;
    struct timespec step = {0, (long)(bound / 20 > 1000 ? bound / 20 : 1000) * 1000};
    while (atomic_load(&a->lag_us) > bound && now - t0 < ADMIT_WAIT_BOUNDS * bound &&
           now - atomic_load(&a->moved_us) <= ADMIT_STUCK_PERIODS * bound) {
        nanosleep(&step, NULL);
        now = dcms_clock_mono_us();
    }
    return now - t0;
}

/* One pass: sequences everything pending when this process is the sequencer. */
static enum dcms_err pass(struct dcms_audit *a, bool *leader, struct dcms_errinfo *ei)
{
    pthread_mutex_lock(&a->seq_mu);
    enum dcms_err e = ensure_leader(a, ei);
    *leader = a->leader;
    bool is_idle = false;
    if (!e && a->leader)
        e = idle(a, &is_idle, ei);
    int lost = 0;
    for (int i = 0; !e && a->leader && !is_idle && i < SEQ_PASSES_MAX; i++) {
        size_t n = 0;
        struct dcms_errinfo bei;
        dcms_errinfo_init(&bei, NULL);
        e = batch(a, &n, &bei);
        /* Another sequencer without the lock (tools, tests) placed the same seqs first:
         * reload and go again. */
        if ((e == DCMS_ERR_CONFLICT || e == DCMS_ERR_RETRY) && ++lost < SEQ_RACES_MAX) {
            e = DCMS_OK;
            continue;
        }
        if (e)
            dcms_err_set(ei, e, "%s", bei.message);
        if (e || n < a->batch_max)
            break;
        note_lag(a, a->seq_store, false); /* a full batch: more is waiting */
    }
    note_lag(a, a->leader ? a->seq_store : a->store, !e && is_idle);
    pthread_mutex_unlock(&a->seq_mu);
    return e;
}

static void timer_run(void *arg)
{
    struct dcms_audit *a = arg;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    bool leader;
    enum dcms_err e = pass(a, &leader, &ei);
    /*
     * A pass runs every few milliseconds: an outage is one line when it starts
     * and one when it ends, not a line per pass. A full disk is the store's to
     * log (once per episode, dcms_store_read_only).
     */
    if (e && e != a->seq_failing && e != DCMS_ERR_INSUFFICIENT_STORAGE)
        DCMS_LOG(DCMS_LOG_WARN, "audit", "sequencing failed: %s (retried until it succeeds)",
                 ei.message);
    else if (!e && a->seq_failing && a->seq_failing != DCMS_ERR_INSUFFICIENT_STORAGE)
        DCMS_LOG(DCMS_LOG_INFO, "audit", "sequencing succeeds again");
    a->seq_failing = e;
}

enum dcms_err dcms_audit_sync(struct dcms_audit *a, struct dcms_errinfo *ei)
{
    bool leader = false;
    enum dcms_err e = pass(a, &leader, ei);
    if (e || leader)
        return e;
    /* Another node sequences: wait until what was committed before now has its place. */
    struct dcms_store_tx *tx;
    int64_t upto = 0;
    if ((e = dcms_store_begin(a->store, DCMS_TX_READ, &tx, ei)))
        return e;
    e = audit_store_pending_max(tx, &upto, ei);
    dcms_store_rollback(tx);
    int64_t deadline = dcms_clock_mono_us() + (int64_t)a->max_delay_ms * 10000;
    while (!e && upto > 0) {
        bool any = false;
        if ((e = dcms_store_begin(a->store, DCMS_TX_READ, &tx, ei)))
            return e;
        e = audit_store_pending_upto(tx, upto, &any, ei);
        dcms_store_rollback(tx);
        if (e || !any)
            break;
        if (dcms_clock_mono_us() > deadline)
            return dcms_err_set(ei, DCMS_ERR_UNAVAILABLE,
                                "the audit sequencer has not sequenced recent events");
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return e;
}

enum dcms_err audit_seq_start(struct dcms_audit *a, const char *database_url,
                              struct dcms_errinfo *ei)
{
    pthread_mutex_init(&a->seq_mu, NULL);
    a->seq_store = a->store;
    enum dcms_err e;
    if (dcms_store_backend(a->store) == DCMS_STORE_PG && database_url && *database_url) {
        struct dcms_store_opts o = {.pool_size = 1};
        if ((e = dcms_store_open(database_url, &o, &a->seq_store, ei))) {
            a->seq_store = NULL;
            return e;
        }
    }
    struct dcms_errinfo first;
    dcms_errinfo_init(&first, NULL);
    bool leader;
    if (pass(a, &leader, &first)) /* a broken chain is reported by verify, not fatal here */
        DCMS_LOG(DCMS_LOG_ERROR, "audit", "first sequencing pass failed: %s", first.message);
    unsigned period = a->max_delay_ms / 4 ? a->max_delay_ms / 4 : 1;
    return dcms_periodic_start("audit sequencer", period, timer_run, a, &a->seq_timer, ei);
}

void audit_seq_stop(struct dcms_audit *a)
{
    if (!a->seq_store)
        return;
    dcms_periodic_stop(a->seq_timer);
    a->seq_timer = NULL;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    bool leader;
    if (pass(a, &leader, &ei))
        DCMS_LOG(DCMS_LOG_WARN, "audit", "last sequencing pass failed: %s", ei.message);
    if (a->seq_store != a->store)
        dcms_store_close(a->seq_store); /* ends the session: the lock goes with it */
    a->seq_store = NULL;
    atomic_store(&a->lag_us, 0); /* nobody waits for a sequencer that is gone */
    pthread_mutex_destroy(&a->seq_mu);
}
