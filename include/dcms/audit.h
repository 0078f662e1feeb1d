/*
 * The audit log: an append-only, hash-chained, signed record of every state
 * change and every refused request.
 *
 * Each event's hash is SHA-256 over the RFC 8785 canonical JSON of the event
 * (every field but `hash`, including `prev_hash`), so editing, removing or
 * reordering an event breaks the chain. Every N events and every T seconds
 * the head (seq, hash) is signed with the audit Ed25519 key and stored as a
 * checkpoint, so even a consistent rewrite of the tail by someone with
 * database access is caught. Appends run inside the caller's write
 * transaction: the change and its event commit or roll back together.
 *
 * Thread-safety: struct dcms_audit is shared by all threads; each call uses
 * the transaction it is given.
 */
#ifndef DCMS_AUDIT_H
#define DCMS_AUDIT_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "dcms/crypto.h"
#include "dcms/err.h"

struct dcms_store;
struct dcms_store_tx;
struct dcms_audit;

enum dcms_audit_outcome { DCMS_AUDIT_SUCCESS, DCMS_AUDIT_DENIED, DCMS_AUDIT_ERROR };

/* What happened. Strings are borrowed; NULL for absent optional fields. */
struct dcms_audit_event {
    const char *actor;         /* identity id, "system" or "anonymous" */
    const char *action;        /* "contract.create", "request.denied", ... */
    const char *resource_type; /* "contract", "identity", ... or NULL */
    const char *resource_id;
    enum dcms_audit_outcome outcome;
    const json_t *details; /* an object or NULL; never a secret, token or key */
    const char *client_ip;
    const char *request_id;
};

struct dcms_audit_opts {
    const char *key_path;           /* Ed25519 seed file; created if missing */
    unsigned checkpoint_every;      /* sign the head every N events (0: 1000) */
    unsigned checkpoint_interval_s; /* and every T seconds when it moved (0: no timer) */
    unsigned denied_per_minute;     /* refused-request events per client IP per minute (0: 60) */
    const char *database_url;       /* the store's URL: PostgreSQL's sequencer opens its own
                                       connection to hold its lock (NULL: the store's only) */
    unsigned sequence_delay_ms;     /* the longest an event waits for its position (0: 100) */
};

/* Loads the key and starts the checkpoint timer. DCMS_ERR_CONFIG for a bad key file. */
enum dcms_err dcms_audit_open(struct dcms_store *store, const struct dcms_audit_opts *opts,
                              struct dcms_audit **out, struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/*
 * Sets the window of `denied_per_minute` to `seconds` (0: 60, the default).
 * Call it right after dcms_audit_open, before any refusal is recorded.
 */
void dcms_audit_set_refusal_window(struct dcms_audit *a, unsigned seconds);

/* Stops the timer, signs a last checkpoint if the head moved, frees. NULL is a no-op. */
void dcms_audit_close(struct dcms_audit *a);

/*
 * Appends `ev` inside `tx` (which must be a DCMS_TX_WRITE transaction) as a
 * pending event: one insert that touches no shared row, durable when `tx`
 * commits. The sequencer gives it its seq (and chain hash and tree leaf)
 * within sequence_delay_ms of the commit. On any error the caller must roll
 * back: an audit write that fails fails the change. On PostgreSQL the
 * insert goes out with the transaction's next statement or its COMMIT
 * (dcms_store_exec_later), so its failure fails that statement or the
 * commit instead: the change is lost with it all the same. `id_out` (may be NULL)
 * receives the new event's id (a UUID v7), which names its receipt
 * (GET /api/v1/audit/events/{id}/receipt) once it has a position.
 */
enum dcms_err dcms_audit_append(struct dcms_audit *a, struct dcms_store_tx *tx,
                                const struct dcms_audit_event *ev, char *id_out,
                                struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* Who caused a change: the acting identity and where the request came from. */
struct dcms_audit_who {
    const char *actor;      /* identity id; NULL: "system" */
    const char *client_ip;  /* NULL or "": not recorded */
    const char *request_id; /* may be NULL */
};

/*
 * The one way services record a change they made: appends a success event
 * for `who` acting on (resource_type, id) inside `tx`. Takes ownership of
 * `details` (an object, decref'd here); a NULL `details` means the caller's
 * json_pack failed, and answers DCMS_ERR_NOMEM.
 */
enum dcms_err dcms_audit_change(struct dcms_audit *a, struct dcms_store_tx *tx,
                                const struct dcms_audit_who *who, const char *resource_type,
                                const char *action, const char *id, json_t *details,
                                struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* dcms_audit_change that also gives the new event's id (`event_id`, DCMS_UUID_STRLEN bytes). */
enum dcms_err dcms_audit_change_id(struct dcms_audit *a, struct dcms_store_tx *tx,
                                   const struct dcms_audit_who *who, const char *resource_type,
                                   const char *action, const char *id, json_t *details,
                                   char *event_id, struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* Appends `ev` in a transaction of its own (events with no other change). */
enum dcms_err dcms_audit_record(struct dcms_audit *a, const struct dcms_audit_event *ev,
                                struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * Records a refused request (outcome denied or error) unless this client IP
 * has used its allowance for the current minute; suppressed events are
 * counted and reported in the client's next recorded event. Never fails the
 * request: problems are logged.
 */
void dcms_audit_refusal(struct dcms_audit *a, const struct dcms_audit_event *ev);

/*
 * Back-pressure for writers: call before beginning a write that will append
 * an event (the HTTP server does, for every request that is not a GET or
 * HEAD). Returns at once while the sequencer keeps up; while the oldest
 * pending event is older than sequence_delay_ms and the sequencer is getting
 * through the backlog, waits until it is not (at most ten times
 * sequence_delay_ms), so that an event's wait for its position stays bounded
 * when writers would outrun the sequencer. Never waits for a stuck
 * sequencer. Returns the microseconds waited. NULL is a no-op. Thread-safe.
 */
int64_t dcms_audit_admit(struct dcms_audit *a);

/*
 * Waits until every event committed before the call has its position: runs
 * a sequencing pass at once when this process is (or can become) the
 * sequencer, otherwise waits for the one that is (at most ten times
 * sequence_delay_ms, then DCMS_ERR_UNAVAILABLE). Readers of the log call it
 * first. Must not be called inside a transaction. Thread-safe.
 */
enum dcms_err dcms_audit_sync(struct dcms_audit *a, struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* Signs the current head now if it moved since the last checkpoint. */
enum dcms_err dcms_audit_checkpoint(struct dcms_audit *a, struct dcms_errinfo *ei) DCMS_MUST_CHECK;

const struct dcms_sign_key *dcms_audit_key(const struct dcms_audit *a);

/* ---- verification (the server's walk and the offline verifier share it) ---- */

struct dcms_audit_report {
    bool ok;
    int64_t events_checked, checkpoints_checked, tree_heads_checked;
    int64_t first_bad_seq; /* 0 when ok */
    int64_t last_seq;
    char reason[256];
};

/* Re-walks the whole chain and every checkpoint in the store. */
enum dcms_err dcms_audit_verify(struct dcms_audit *a, struct dcms_audit_report *report,
                                struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* Report as {"ok", "events_checked", "checkpoints_checked", "first_bad_seq", "reason", ...}. */
json_t *dcms_audit_report_json(const struct dcms_audit_report *r);

/* Text of an outcome ("success" | "denied" | "error"). */
const char *dcms_audit_outcome_str(enum dcms_audit_outcome o);

/* ---- slices: the events of some resources, with the proof that they are in the log ---- */

/* A resource whose events a slice holds ("contract", id). Strings borrowed. */
struct dcms_audit_resource {
    const char *type, *id;
};

#define DCMS_AUDIT_SLICE_TYPE "dcms.audit.slice.v1"
#define DCMS_AUDIT_INCLUSION_TYPE "dcms.audit.inclusion.v1"
#define DCMS_AUDIT_TREE_HEAD_TYPE "dcms.audit.tree_head.v1"

/*
 * The events naming any of `res` (refusal records of other callers left
 * out) with seq > after_seq, ascending, at most `limit`; *more says whether
 * more follow. The head is checkpointed first when it moved, so every event
 * is covered; the chain from the first event of the slice to the newest
 * checkpoint is then verified, and only then does the audit key sign the
 * inclusion statement naming each event's (seq, hash) and that checkpoint.
 * *out (caller's): {type, events, proof: {public_key, key_id, checkpoint,
 * statement, signature}}. A walk that finds the chain broken answers
 * DCMS_ERR_INTERNAL (the reason goes to the log): a broken chain is never
 * signed. Thread-safe.
 */
enum dcms_err dcms_audit_slice(struct dcms_audit *a, const struct dcms_audit_resource *res,
                               size_t nres, int64_t after_seq, int64_t limit, json_t **out,
                               bool *more, struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * Checks a slice offline with the audit public key `pk`: each event's hash
 * against its content, the prev_hash link between consecutive events, the
 * checkpoint's signature, the statement's signature, and that the
 * statement names exactly the events present, by seq and hash. The report
 * says what failed first. Returns r->ok.
 */
bool dcms_audit_slice_verify(const json_t *slice, const unsigned char pk[DCMS_SIGN_PUBLIC_LEN],
                             struct dcms_audit_report *r);

/* ---- the Merkle tree (RFC 9162): tree heads, proofs, receipts ---- */

#define DCMS_AUDIT_RECEIPT_TYPE "dcms.audit.receipt.v1"
/* Where event %s's receipt is served (the link a signature, a key release or a download gives). */
#define DCMS_AUDIT_RECEIPT_PATH "/api/v1/audit/events/%s/receipt"

/*
 * The newest signed tree head, {tree_size, root_hash, time, key_id,
 * signature} (caller's). The signature covers the canonical JSON of {type:
 * DCMS_AUDIT_TREE_HEAD_TYPE, tree_size, root_hash, time, key_id}.
 * DCMS_ERR_NOT_FOUND before the first one. Thread-safe.
 */
enum dcms_err dcms_audit_tree_head(struct dcms_audit *a, json_t **out,
                                   struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * The audit path of event `seq` (leaf seq - 1) in the tree of `tree_size`
 * leaves (1 <= seq <= tree_size <= the newest signed size; a field problem
 * naming `seq` or `tree_size` otherwise): {seq, leaf_index, tree_size,
 * leaf_hash, audit_path: [hex...]} (caller's).
 */
enum dcms_err dcms_audit_inclusion(struct dcms_audit *a, int64_t seq, int64_t tree_size,
                                   json_t **out, struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* The consistency proof from size `first` to `second` ({first, second, consistency_path}). */
enum dcms_err dcms_audit_consistency(struct dcms_audit *a, int64_t first, int64_t second,
                                     json_t **out, struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* Event `id` with `status` "pending" (no seq or hashes yet) or "sequenced". NOT_FOUND. */
enum dcms_err dcms_audit_event_get(struct dcms_audit *a, const char *id, json_t **out,
                                   struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * The receipt of event `id`: {type, event, inclusion: {leaf_index,
 * tree_size, audit_path}, tree_head, key_id, public_key} against the newest
 * signed tree head (caller's). *pending (and *out NULL) while the event has
 * no position yet. DCMS_ERR_NOT_FOUND for an unknown id. Thread-safe.
 */
enum dcms_err dcms_audit_receipt(struct dcms_audit *a, const char *id, json_t **out, bool *pending,
                                 struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * Checks a receipt offline against the pinned audit public key `pk` (never
 * the key the receipt carries): the tree head's signature, the event's hash
 * against its content, and the inclusion proof from its leaf to the signed
 * root. Returns r->ok; the report says what failed.
 */
bool dcms_audit_receipt_verify(const json_t *receipt, const unsigned char pk[DCMS_SIGN_PUBLIC_LEN],
                               struct dcms_audit_report *r);

#endif
