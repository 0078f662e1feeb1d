/*
 * Inside the audit module: the shared state, the queries, the event and
 * checkpoint codecs, and the chain verifier used both by the server's walk
 * and by the offline verifier (`dcmsd audit verify`).
 */
#ifndef DCMS_AUDIT_INT_H
#define DCMS_AUDIT_INT_H

#include <pthread.h>

#include "dcms/audit.h"
#include "dcms/str.h"

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

struct dcms_audit {
    struct dcms_store *store;
    struct dcms_sign_key *key;
    unsigned every, interval_s, denied_per_minute, refusal_window_s;

    pthread_mutex_t mu; /* guards the head hint and the limiter */
    int64_t hint_seq;   /* last head this process saw; only a hint (see audit.c) */
    char hint_hash[65];
    struct audit_limit_slot slots[AUDIT_LIMIT_SLOTS];

    struct dcms_periodic *timer; /* the checkpoint timer (dcms/periodic.h), or NULL */
};

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
};

/* `from_genesis`: the walk must start at seq 1 with the all-zero prev_hash. */
void audit_verifier_init(struct audit_verifier *v, const unsigned char pk[DCMS_SIGN_PUBLIC_LEN],
                         bool from_genesis, struct dcms_audit_report *r);
/* Each returns false once the chain has failed (the report says where and why). */
bool audit_verifier_event(struct audit_verifier *v, const json_t *event);
bool audit_verifier_checkpoint(struct audit_verifier *v, const json_t *checkpoint);
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
/* Compare-and-set append; *appended false when the head moved (reload and retry). */
enum dcms_err audit_store_append(struct dcms_store_tx *tx, int64_t seq, const char *id,
                                 const char *time, const struct dcms_audit_event *ev,
                                 const char *details_text, const char *prev_hash, const char *hash,
                                 bool *appended, struct dcms_errinfo *ei) DCMS_MUST_CHECK;
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
