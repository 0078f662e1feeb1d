/*
 * Inside the audit module: the shared state, the queries, the event and
 * checkpoint codecs, and the chain verifier used both by the server's walk
 * and by the offline verifier (`dcmsd audit verify`).
 */
#ifndef DCMS_AUDIT_INT_H
#define DCMS_AUDIT_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "dcms/audit.h"
#include "dcms/str.h"

struct dcms_store_rows;
struct dcms_store_tx;

#define AUDIT_GENESIS_HASH "0000000000000000000000000000000000000000000000000000000000000000"
#define AUDIT_LIMIT_SLOTS 512

#define AUDIT_LIMIT_PROBES 8
/* Distinct targets ("METHOD /route") named in one refusal summary, and their length. */
#define AUDIT_SUMMARY_TARGETS 8
#define AUDIT_TARGET_MAX 96

/* One client address's allowance for the current window (a minute by default). */
struct audit_limit_slot {
    char client[48]; /* the address ("" when free) */
    int64_t window_start_s;
    unsigned count, suppressed;
    unsigned ntargets;      /* distinct targets of the suppressed refusals kept below */
    bool targets_truncated; /* more distinct targets were refused than are kept */
    char targets[AUDIT_SUMMARY_TARGETS][AUDIT_TARGET_MAX];
};

#define AUDIT_HASH_LEN 32
#define AUDIT_TREE_LEVELS 64

/* The complete subtrees a tree of `size` leaves splits into, left to right (one per set bit). */
struct audit_range {
    int64_t size;
    int n;
    unsigned char h[AUDIT_TREE_LEVELS][AUDIT_HASH_LEN];
};

/* A complete subtree: leaves [idx * 2^level, (idx + 1) * 2^level). */
struct audit_tree_node {
    int level;
    int64_t idx;
    unsigned char hash[AUDIT_HASH_LEN];
};

/* Reads the stored hash of a complete subtree (audit_store_node_get: ctx is a transaction). */
typedef enum dcms_err audit_node_fn(void *ctx, int level, int64_t idx,
                                    unsigned char out[AUDIT_HASH_LEN], struct dcms_errinfo *ei);

struct dcms_audit {
    struct dcms_store *store;
    struct dcms_sign_key *key;
    unsigned every, interval_s, denied_per_minute, refusal_window_s;
    unsigned max_delay_ms, batch_max;

    pthread_mutex_t mu; /* guards the limiter */
    struct audit_limit_slot slots[AUDIT_LIMIT_SLOTS];

    struct dcms_periodic *timer; /* the checkpoint timer (dcms/periodic.h), or NULL */

    /* The sequencer (audit_seq.c). seq_mu serializes its passes in this process. */
    pthread_mutex_t seq_mu;
    struct dcms_store *seq_store; /* PostgreSQL: a one-connection pool holding the lock */
    bool leader;                  /* this process holds the sequencer lock */
    bool loaded;                  /* head and range below mirror the store */
    int64_t head_seq;
    char head_hash[65];
    struct audit_range range;
    struct dcms_periodic *seq_timer;
    enum dcms_err seq_failing; /* the timer's last pass failed so (timer thread only) */

    /*
     * Back-pressure (audit_seq.c, dcms_audit_admit): the age of the oldest
     * pending event as the passes last read it, and when (monotonic) the
     * oldest last changed, i.e. when the sequencer last got through some of
     * the backlog. oldest_pid and holding are the passes' (under seq_mu).
     */
    _Atomic int64_t lag_us, moved_us;
    int64_t oldest_pid;
    bool holding; /* writers are being held: logged once per episode */
};

/* Signs (seq, hash) as a checkpoint inside `tx` (audit.c). */
enum dcms_err audit_sign_checkpoint(struct dcms_audit *a, struct dcms_store_tx *tx, int64_t seq,
                                    const char *hash, struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* Sequencer (audit_seq.c). */
enum dcms_err audit_seq_start(struct dcms_audit *a, const char *database_url,
                              struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* Stops the timer, sequences what is pending (when leader), releases the lock. */
void audit_seq_stop(struct dcms_audit *a);

/* Tree (audit_tree.c). */
void audit_leaf_hash(const void *p, size_t n, unsigned char out[AUDIT_HASH_LEN]);
void audit_node_hash(const unsigned char l[AUDIT_HASH_LEN], const unsigned char r[AUDIT_HASH_LEN],
                     unsigned char out[AUDIT_HASH_LEN]);
bool audit_hex_decode(const char *hex, unsigned char out[AUDIT_HASH_LEN]);
/* The chain hash (hex) and the leaf hash of an event body, from one canonicalization. */
enum dcms_err audit_event_hashes(const json_t *body, char hash[65],
                                 unsigned char leaf[AUDIT_HASH_LEN],
                                 struct dcms_errinfo *ei) DCMS_MUST_CHECK;
void audit_range_init(struct audit_range *r);
/* Adds a leaf; `made` (may be NULL) receives the leaf and every subtree it completes. */
size_t audit_range_push(struct audit_range *r, const unsigned char leaf[AUDIT_HASH_LEN],
                        struct audit_tree_node made[AUDIT_TREE_LEVELS]);
void audit_range_root(const struct audit_range *r, unsigned char out[AUDIT_HASH_LEN]);
enum dcms_err audit_range_load(int64_t size, audit_node_fn *get, void *ctx, struct audit_range *r,
                               struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* {size, hashes: [hex...]} and back (false when malformed). */
json_t *audit_range_json(const struct audit_range *r);
bool audit_range_from_json(const json_t *j, struct audit_range *r);
/* Audit paths (RFC 9162 2.1.3.1, 2.1.4.1) appended to `path` as hex strings. */
enum dcms_err audit_tree_inclusion(audit_node_fn *get, void *ctx, int64_t index, int64_t size,
                                   json_t *path, struct dcms_errinfo *ei) DCMS_MUST_CHECK;
enum dcms_err audit_tree_consistency(audit_node_fn *get, void *ctx, int64_t first, int64_t second,
                                     json_t *path, struct dcms_errinfo *ei) DCMS_MUST_CHECK;
enum dcms_err audit_tree_root(audit_node_fn *get, void *ctx, int64_t size,
                              unsigned char out[AUDIT_HASH_LEN],
                              struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* RFC 9162 2.1.3.2 and 2.1.4.2. */
bool audit_verify_inclusion(int64_t index, int64_t size, const unsigned char leaf[AUDIT_HASH_LEN],
                            const json_t *path, const unsigned char root[AUDIT_HASH_LEN]);
bool audit_verify_consistency(int64_t first, int64_t second,
                              const unsigned char first_root[AUDIT_HASH_LEN],
                              const unsigned char second_root[AUDIT_HASH_LEN], const json_t *path);
/* The bytes a tree head signature covers (canonical JSON), appended to `out`. */
enum dcms_err audit_tree_head_message(int64_t size, const char *root_hash, const char *time,
                                      const char *key_id, struct dcms_buf *out) DCMS_MUST_CHECK;
/* Checks a stored/exported tree head's signature with `pk`; gives its size and root. */
bool audit_tree_head_verify(const json_t *th, const unsigned char pk[DCMS_SIGN_PUBLIC_LEN],
                            int64_t *size, unsigned char root[AUDIT_HASH_LEN]);

/* The hashed form of an event: every field but `hash`. Returns a new object or NULL. */
json_t *audit_event_body(int64_t seq, const char *id, const char *time, const char *actor,
                         const char *action, const char *resource_type, const char *resource_id,
                         const char *outcome, const json_t *details, const char *client_ip,
                         const char *request_id, const char *prev_hash);
/* Lowercase hex SHA-256 of the canonical JSON of `body`. */
enum dcms_err audit_hash(const json_t *body, char out[65], struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* The bytes a checkpoint signature covers (canonical JSON), appended to `out`. */
enum dcms_err audit_checkpoint_message(int64_t seq, const char *hash, const char *time,
                                       const char *key_id, struct dcms_buf *out) DCMS_MUST_CHECK;

/* Verifier: feed events in seq order, each checkpoint right after its event. */
struct audit_verifier {
    unsigned char pk[DCMS_SIGN_PUBLIC_LEN];
    char key_id[17];
    struct dcms_audit_report *r;
    bool started, failed;
    int64_t expect_seq; /* 0 until the first event when not anchored at genesis */
    int64_t last_seq;
    char last_hash[65];
    bool tree;                /* the range below is known: leaves are checked against heads */
    struct audit_range range; /* of the events fed so far */
};

/* `from_genesis`: the walk must start at seq 1 with the all-zero prev_hash. */
void audit_verifier_init(struct audit_verifier *v, const unsigned char pk[DCMS_SIGN_PUBLIC_LEN],
                         bool from_genesis, struct dcms_audit_report *r);
/* Each returns false once the chain has failed (the report says where and why). */
bool audit_verifier_event(struct audit_verifier *v, const json_t *event);
bool audit_verifier_checkpoint(struct audit_verifier *v, const json_t *checkpoint);
/* A signed tree head whose size is the last event fed: its signature and root are checked
 * (the root only when v->tree). */
bool audit_verifier_tree_head(struct audit_verifier *v, const json_t *tree_head);
/* Marks a failure found outside the verifier (missing event for a checkpoint, head mismatch). */
void audit_verifier_fail(struct audit_verifier *v, int64_t seq, const char *fmt, ...)
    DCMS_PRINTF(3, 4);
void audit_verifier_finish(struct audit_verifier *v);
/*
 * Feeds `events` (a batch read in seq order, first seq `from`, last `to`) and
 * the stored checkpoints that fall inside it to `v` (audit.c). The server's
 * walk and the slice prover (audit_slice.c) share it.
 */
enum dcms_err audit_verify_batch(struct dcms_store_tx *tx, struct audit_verifier *v, json_t *events,
                                 int64_t from, int64_t to, struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* Store access (audit_store.c). Rows become JSON objects shaped like the export. */
struct dcms_store_tx;
enum dcms_err audit_store_head(struct dcms_store_tx *tx, int64_t *seq, char hash[65],
                               struct dcms_errinfo *ei) DCMS_MUST_CHECK;
enum dcms_err audit_store_pending_insert(struct dcms_store_tx *tx, const char *id, const char *time,
                                         const struct dcms_audit_event *ev,
                                         const char *details_text,
                                         struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* Rows: pid, id, time, actor, action, resource_type, resource_id, outcome, details, client_ip,
 * request_id; oldest pid first. */
enum dcms_err audit_store_pending_batch(struct dcms_store_tx *tx, int64_t limit,
                                        struct dcms_store_rows **rows,
                                        struct dcms_errinfo *ei) DCMS_MUST_CHECK;
enum dcms_err audit_store_pending_max(struct dcms_store_tx *tx, int64_t *pid,
                                      struct dcms_errinfo *ei) DCMS_MUST_CHECK;
enum dcms_err audit_store_pending_upto(struct dcms_store_tx *tx, int64_t pid, bool *any,
                                       struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* The oldest pending event's pid and time, in a read of its own; 0 and 0 when none is. */
enum dcms_err audit_store_pending_oldest(struct dcms_store *s, int64_t *pid, int64_t *time_us,
                                         struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* A pending row as an event object (no seq, prev_hash, hash). NULL when out of memory. */
json_t *audit_pending_row_event(const struct dcms_store_rows *r, size_t i);
/* Moves `count` pending events into audit_events: `moves` is the JSON array text of
 * [pid, seq, prev_hash, hash], one per event; anything but `count` rows moved fails. */
enum dcms_err audit_store_events_move(struct dcms_store_tx *tx, const char *moves, size_t count,
                                      struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* Complete subtrees, a JSON array of [level, idx, hex hash]. */
enum dcms_err audit_store_nodes_bulk(struct dcms_store_tx *tx, const json_t *nodes,
                                     struct dcms_errinfo *ei) DCMS_MUST_CHECK;
enum dcms_err audit_store_head_cas(struct dcms_store_tx *tx, int64_t old_seq, int64_t seq,
                                   const char *hash, bool *ok,
                                   struct dcms_errinfo *ei) DCMS_MUST_CHECK;
enum dcms_err audit_store_node_put(struct dcms_store_tx *tx, int level, int64_t idx,
                                   const unsigned char hash[AUDIT_HASH_LEN],
                                   struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* audit_node_fn over the transaction `ctx`. */
enum dcms_err audit_store_node_get(void *ctx, int level, int64_t idx,
                                   unsigned char out[AUDIT_HASH_LEN],
                                   struct dcms_errinfo *ei) DCMS_MUST_CHECK;
enum dcms_err audit_store_leaf_count(struct dcms_store_tx *tx, int64_t *n,
                                     struct dcms_errinfo *ei) DCMS_MUST_CHECK;
enum dcms_err audit_store_add_tree_head(struct dcms_store_tx *tx, int64_t size, const char *root,
                                        const char *time, const char *key_id, const char *signature,
                                        struct dcms_errinfo *ei) DCMS_MUST_CHECK;
enum dcms_err audit_store_tree_heads_range(struct dcms_store_tx *tx, int64_t from, int64_t to,
                                           int64_t limit, json_t *out,
                                           struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* *out: the newest tree head (caller's), or NULL when none was signed yet. */
enum dcms_err audit_store_last_tree_head(struct dcms_store_tx *tx, json_t **out,
                                         struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* PostgreSQL: takes (try_take) or checks the session advisory lock `key`; SQLite: held. */
enum dcms_err audit_store_lock(struct dcms_store_tx *tx, int64_t key, bool try_take, bool *held,
                               struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* The event `id`, sequenced or *pending (then without seq and hashes); NULL when unknown. */
enum dcms_err audit_store_event_by_id(struct dcms_store_tx *tx, const char *id, json_t **event,
                                      bool *pending, struct dcms_errinfo *ei) DCMS_MUST_CHECK;
enum dcms_err audit_store_add_checkpoint(struct dcms_store_tx *tx, int64_t seq, const char *hash,
                                         const char *time, const char *key_id,
                                         const char *signature,
                                         struct dcms_errinfo *ei) DCMS_MUST_CHECK;
enum dcms_err audit_store_last_checkpoint(struct dcms_store_tx *tx, int64_t *seq,
                                          struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* Events with from <= seq <= to, ascending, at most `limit`, appended to `out` (a JSON array). */
enum dcms_err audit_store_events_range(struct dcms_store_tx *tx, int64_t from, int64_t to,
                                       int64_t limit, json_t *out,
                                       struct dcms_errinfo *ei) DCMS_MUST_CHECK;
enum dcms_err audit_store_checkpoints_range(struct dcms_store_tx *tx, int64_t from, int64_t to,
                                            int64_t limit, json_t *out,
                                            struct dcms_errinfo *ei) DCMS_MUST_CHECK;

struct audit_filter {
    const char *actor, *action_prefix, *resource_type, *resource_id, *outcome;
    const char *since, *until; /* normalized RFC 3339 (dcms_time_format) or NULL */
    int64_t before_seq;        /* cursor: only seq < before_seq (0: no cursor) */
    int64_t limit;
};
/* Events matching `f`, newest first. */
enum dcms_err audit_store_list(struct dcms_store_tx *tx, const struct audit_filter *f, json_t *out,
                               struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* Appends the rows of an event query (the export's columns, in order) to `out` as events. */
struct dcms_store_rows;
enum dcms_err audit_rows_to_events(const struct dcms_store_rows *rows, json_t *out,
                                   struct dcms_errinfo *ei) DCMS_MUST_CHECK;
#endif
