/*
 * Inside the contract service: the terms validator and the signed-content
 * hash (contracts_terms.c), the lifecycle state machine (contracts_state.c),
 * the service with its store queries and the expiry job (contracts.c),
 * signatures (contracts_sign.c) and the HTTP handlers (contracts_http.c).
 * The pure parts (terms, state machine, hash) never touch the store, so the
 * unit tests call them directly.
 */
#ifndef DCMS_CONTRACTS_INT_H
#define DCMS_CONTRACTS_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "dcms/contracts.h"
#include "dcms/iam.h"
#include "dcms/str.h"

struct dcms_store_tx;
struct dcms_store_rows;

/* ---- terms and content (contracts_terms.c) ---- */

#define CT_TITLE_MAX 255
#define CT_DESCRIPTION_MAX 10000

/*
 * Validates `terms` (the request's "terms" member) and records every
 * problem in `ei` with its path under "terms.". On success *norm is a new
 * normalized copy (timestamps rewritten as RFC 3339 UTC with microseconds)
 * and *from_us / *to_us hold effective_from / expires_at. `now_us` is the
 * reference for "expires_at must be in the future". Returns true when no
 * problem was found.
 */
bool ct_terms_validate(const json_t *terms, int64_t now_us, json_t **norm, int64_t *from_us,
                       int64_t *to_us, struct dcms_errinfo *ei);

/* True for an active ISO 4217 alphabetic currency code ("EUR"). */
bool ct_currency_valid(const char *code);

/* A title: 1 to 255 Unicode characters of valid UTF-8 without control characters. */
bool ct_title_valid(const char *s);

/*
 * The signed content {id, provider_id, consumer_id, title, description,
 * terms, version} (version = terms_version) as a new object.
 */
json_t *ct_signed_content(const char *id, const char *provider_id, const char *consumer_id,
                          const char *title, const char *description, const json_t *terms,
                          int64_t terms_version);

/* SHA-256 of the RFC 8785 form of `content`, raw and as lowercase hex. */
enum dcms_err ct_content_hash(const json_t *content, unsigned char raw[32], char hex[65],
                              struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* ---- the lifecycle (contracts_state.c) ---- */

enum ct_status {
    CT_DRAFT,
    CT_PENDING_SIGNATURE,
    CT_ACTIVE,
    CT_SUSPENDED,
    CT_TERMINATED,
    CT_EXPIRED,
    CT_STATUS_COUNT
};

enum ct_op {
    CT_OP_SUBMIT,    /* draft → pending_signature */
    CT_OP_SIGN,      /* pending_signature → pending_signature */
    CT_OP_ACTIVATE,  /* pending_signature → active */
    CT_OP_SUSPEND,   /* active → suspended */
    CT_OP_RESUME,    /* suspended → active */
    CT_OP_TERMINATE, /* active | suspended → terminated */
    CT_OP_EXPIRE,    /* active | suspended → expired (the system) */
    CT_OP_EDIT,      /* draft | pending_signature → draft */
    CT_OP_DELETE,    /* draft → (gone) */
    CT_OP_COUNT
};

const char *ct_status_name(enum ct_status s);
bool ct_status_parse(const char *s, enum ct_status *out);
const char *ct_op_name(enum ct_op op);

/* Who may trigger an operation (besides the route permission). */
enum {
    CT_BY_PARTY = 1u << 0,    /* an authorised member of either side */
    CT_BY_PROVIDER = 1u << 1, /* an authorised member of the provider side */
    CT_BY_ADMIN = 1u << 2,
    CT_BY_SYSTEM = 1u << 3,
};

struct ct_transition {
    enum ct_op op;
    unsigned from; /* bit set of (1u << enum ct_status) */
    enum ct_status to;
    unsigned who; /* CT_BY_* */
    const char *permission;
};

/* The row for `op` (never NULL for a valid op). */
const struct ct_transition *ct_transition_of(enum ct_op op);

/*
 * Whether `op` is legal from `from`. When it is not, the 409 message names
 * the current state and the operations allowed from it (written into `ei`).
 */
enum dcms_err ct_transition_check(enum ct_op op, enum ct_status from,
                                  struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* ---- the service ---- */

struct dcms_contracts {
    struct dcms_app *app;
    unsigned expiry_interval_s;
    struct dcms_periodic *expiry; /* the expiry job (contracts_expiry.c), or NULL */
    /* Transition listeners (contracts_listen.c), guarded by listen_mu. */
    pthread_rwlock_t listen_mu;
    struct dcms_contracts_listener listeners[DCMS_CONTRACTS_MAX_LISTENERS];
    size_t nlisteners;
};

/*
 * Tells the listeners of app->contracts (none when NULL) about `ch`:
 * ct_notify_record inside the change's transaction (the first error stops
 * and is returned: the caller rolls back), ct_notify_committed after the
 * commit. contracts_listen.c.
 */
enum dcms_err ct_notify_record(struct dcms_app *app, struct dcms_store_tx *tx,
                               const struct dcms_contract_change *ch,
                               struct dcms_errinfo *ei) DCMS_MUST_CHECK;
void ct_notify_committed(struct dcms_app *app, const struct dcms_contract_change *ch);

/*
 * Starts the expiry job when expiry_interval_s > 0: a dcms_periodic job that
 * runs ct_expire_due at once and then every interval. Stopped by
 * dcms_periodic_stop(ct->expiry) in dcms_contracts_close.
 */
enum dcms_err ct_expiry_start(struct dcms_contracts *ct, struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* Who calls, and where errors go. */
struct ct_call {
    struct dcms_app *app;
    const struct dcms_principal *p;
    const char *client_ip, *request_id;
    struct dcms_errinfo *ei;
    /* Set when a contract was hidden from the caller (answered 404); may be NULL. */
    bool *hidden;
};

/* One contract row as read (strings valid while `rows` lives). */
struct ct_row {
    const char *id, *title, *description, *provider_id, *consumer_id, *status_text, *terms,
        *signatures, *terms_hash, *created_at, *updated_at, *created_by, *status_reason,
        *effective_from, *expires_at;
    int64_t version, terms_version;
    enum ct_status status; /* expiry applied: an Active contract past expires_at is Expired */
    bool due_expiry;       /* stored active/suspended but past expires_at */
};

struct ct_list_in {
    const char *status, *party, *role, *q, *cursor;
    int64_t limit;
};

enum dcms_err ct_create(const struct ct_call *c, const json_t *body, json_t **out) DCMS_MUST_CHECK;
/* A rendered answer: JSON text (malloc'd; the caller frees it) and the row version. */
struct ct_text {
    char *body;
    size_t len;
    int64_t version;
};

/* The most one rendered contract may take (terms and signatures are bounded far below). */
#define CT_RENDER_MAX (4u << 20)

enum dcms_err ct_get(const struct ct_call *c, const char *id, struct ct_text *out) DCMS_MUST_CHECK;
enum dcms_err ct_list(const struct ct_call *c, const struct ct_list_in *in,
                      struct ct_text *out) DCMS_MUST_CHECK;
enum dcms_err ct_update(const struct ct_call *c, const char *id, const json_t *body,
                        const char *if_match, json_t **out) DCMS_MUST_CHECK;
enum dcms_err ct_delete(const struct ct_call *c, const char *id) DCMS_MUST_CHECK;
/* submit, activate, suspend, resume, terminate (reason required for terminate). */
enum dcms_err ct_transition(const struct ct_call *c, const char *id, enum ct_op op,
                            const char *reason, json_t **out) DCMS_MUST_CHECK;
enum dcms_err ct_versions(const struct ct_call *c, const char *id, json_t **out) DCMS_MUST_CHECK;

/* Expires every contract past expires_at; returns how many through *n. */
enum dcms_err ct_expire_due(struct dcms_app *app, unsigned *n,
                            struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* Helpers shared with contracts_sign.c. */
enum dcms_err ct_load(struct dcms_store_tx *tx, const char *id, struct dcms_store_rows **rows,
                      struct ct_row *r, struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* The same, locking the row for the rest of the write transaction (PostgreSQL FOR UPDATE). */
enum dcms_err ct_load_locked(struct dcms_store_tx *tx, const char *id,
                             struct dcms_store_rows **rows, struct ct_row *r,
                             struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* Read access (404 when the caller may not see it), then `action` (403). */
enum dcms_err ct_authorize(const struct ct_call *c, const struct ct_row *r,
                           const char *action) DCMS_MUST_CHECK;
/* Which side(s) the caller may act for: CT_BY_PROVIDER and/or a consumer bit. */
bool ct_member_of(const struct dcms_principal *p, const char *party_id, unsigned role);
json_t *ct_row_json(const struct ct_row *r);
/*
 * Ends a write: reads contract `id` back inside `tx`, commits, and only then
 * builds the answer, so a failed commit leaves nothing for the caller to free.
 * `tx` is ended (committed or rolled back) whatever happens; *out is set (and
 * owned by the caller) only on DCMS_OK.
 */
enum dcms_err ct_commit_answer(const struct ct_call *c, struct dcms_store_tx *tx, const char *id,
                               json_t **out) DCMS_MUST_CHECK;
/* The same object as ct_row_json(), appended to `b` as JSON text without re-parsing. */
enum dcms_err ct_row_render(const struct ct_row *r, struct dcms_buf *b) DCMS_MUST_CHECK;
enum dcms_err ct_audit(const struct ct_call *c, struct dcms_store_tx *tx, const char *action,
                       const char *id, json_t *details /* stolen */) DCMS_MUST_CHECK;

/* ---- signatures (contracts_sign.c) ---- */

enum dcms_err ct_sign(const struct ct_call *c, const char *id, const json_t *body,
                      json_t **out) DCMS_MUST_CHECK;
enum dcms_err ct_verify(const struct ct_call *c, const char *id, json_t **out) DCMS_MUST_CHECK;
/* The current signatures as the contract row mirrors them (new array). */
enum dcms_err ct_signatures_refresh(struct dcms_store_tx *tx, const char *id, const char *now,
                                    struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* Voids every live signature of `id` (kept, with voided_at and the reason). */
enum dcms_err ct_signatures_void(struct dcms_store_tx *tx, const char *id, const char *now,
                                 const char *reason, uint64_t *n,
                                 struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* Whether both sides hold a live signature over `hash` (for activation);
 * DCMS_ERR_CONFLICT when one signer or one key signed both sides. */
enum dcms_err ct_signatures_complete(struct dcms_store_tx *tx, const char *id, const char *hash,
                                     bool *provider, bool *consumer,
                                     struct dcms_errinfo *ei) DCMS_MUST_CHECK;

#endif
