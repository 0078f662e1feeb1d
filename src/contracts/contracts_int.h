/*
 * Inside the contract service: the terms schema and the signed-content
 * hash (contracts_terms.c), the lifecycle table (contracts_state.c), the
 * signature-type table (contracts_sigtypes.c), the codecs
 * (contracts_json.c), the queries and row codec (contracts_store.c), the
 * service (contracts.c, contracts_sign.c), the expiry job
 * (contracts_expiry.c) and the HTTP handlers (contracts_http.c). The pure
 * parts (terms, tables, codecs, hash) never touch the store, so the unit
 * tests call them directly.
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
#include "dcms/uuid.h"

struct dcms_store_tx;
struct dcms_store_rows;
struct ct_call;

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

/* ---- request and response codecs (contracts_json.c) ---- */

/* The body of POST /contracts and PUT /contracts/{id}, decoded. */
struct ct_input {
    const char *title, *description, *provider_id, *consumer_id; /* live as long as the body */
    json_t *terms; /* normalized copy, owned: ct_input_release */
    int64_t from_us, to_us;
    const char *if_match; /* PUT only: the If-Match header */
};

/*
 * Decodes a create body into *in, recording every problem in `ei` with its
 * JSON path (unknown members, types, bounds, the terms walker's problems
 * under "terms."); `now_us` is the reference for expires_at. Returns true
 * when there was none. Release *in with ct_input_release either way.
 */
bool ct_input_from_json(const json_t *body, int64_t now_us, struct ct_input *in,
                        struct dcms_errinfo *ei);
/* The same for an edit; a missing If-Match is 428 before the body is looked at. */
bool ct_update_from_json(const json_t *body, const char *if_match, int64_t now_us,
                         struct ct_input *in, struct dcms_errinfo *ei);
void ct_input_release(struct ct_input *in);

/*
 * The optional body {"reason": "..."} of a transition (body NULL: none);
 * `required` makes the reason required. *reason lives as long as `body`.
 */
bool ct_reason_from_json(const json_t *body, bool required, const char **reason,
                         struct dcms_errinfo *ei);

/* The list query: strings as received, then what ct_list_decode made of them. */
struct ct_list_in {
    const char *status, *party, *role, *q, *cursor;
    int64_t limit;
    char cursor_id[DCMS_UUID_STRLEN]; /* the decoded cursor, when `cursor` is set */
};
/* Checks the list parameters (each problem named by its parameter); true when none. */
bool ct_list_decode(struct ct_list_in *in, struct dcms_errinfo *ei);
/* The opaque next_cursor of a page ending at contract `id` (malloc'd). */
char *ct_cursor_encode(const char *id);

struct ct_sigtype;

/* The body of POST /contracts/{id}/sign, decoded. */
struct ct_sign_in {
    const struct ct_sigtype *type; /* the row of contracts_sigtypes.c */
    const char *type_name, *terms_hash, *key_id, *signature_b64, *totp_code, *side;
    const json_t *assertion;
    unsigned char sig[64];  /* the decoded signature (digital, mfa) */
    unsigned char hash[32]; /* the decoded terms_hash */
};
/* Decodes a sign body: the common members here, the material by the type's row. */
bool ct_sign_from_json(const json_t *body, struct ct_sign_in *in, struct dcms_errinfo *ei);

/* base64 or base64url, padded or not, into at most `cap` bytes. */
bool ct_b64_any_decode(const char *s, unsigned char *out, size_t cap, size_t *len);
/* 64 lowercase hex digits into 32 bytes. */
bool ct_hex_decode32(const char *s, unsigned char out[32]);
/* A member that, when present, is a string of 1 to `max` bytes (else a problem on `key`). */
const char *ct_opt_string(const json_t *b, const char *key, size_t max, struct dcms_errinfo *ei);

/* A signature's columns, in ct_q_sig_live's order; the last three may be NULL. */
struct ct_sig_fields {
    const char *id, *side, *signer_id, *type, *key_id, *algorithm, *signed_hash;
    int64_t terms_version;
    const char *signed_at, *evidence, *voided_at, *void_reason, *audit_event_id;
};
/* One signature as JSON (the answer's and the contract row mirror's shape). */
json_t *ct_sig_json_of(const struct ct_sig_fields *f);
/* One stored signature row (ct_q_sig_live / ct_q_sig_all columns) as JSON. */
json_t *ct_sig_json(const struct dcms_store_rows *rows, size_t i);
/* Stored JSON text parsed, or JSON null when absent or unreadable. */
json_t *ct_stored_json(const char *text);

/* ---- signature types (contracts_sigtypes.c): one row per type ---- */

/* What a type's verification established, for the stored signature. */
struct ct_evidence {
    json_t *json; /* owned by the caller */
    char key_id[200];
    char alg[32];
};

struct ct_sigtype {
    const char *name;
    /* The member whose key signed, for separation-of-duties problems. */
    const char *key_field;
    /* Decodes and checks the type's own members of the sign body (problems to ei). */
    void (*decode)(const json_t *body, struct ct_sign_in *in, struct dcms_errinfo *ei);
    /* Checks the evidence through IAM; problems become field details (422). */
    enum dcms_err (*verify)(const struct ct_call *c, const struct ct_sign_in *in,
                            struct ct_evidence *out);
    /*
     * /verify: re-checks a stored signature of this type (its row `i` of
     * `rows`, its evidence `ev`, the signed hash `h`). NULL when it holds,
     * else the problem (static or in c->ei->arena).
     */
    const char *(*recheck)(const struct ct_call *c, const struct dcms_store_rows *rows, size_t i,
                           const json_t *ev, const unsigned char h[32]);
    /*
     * verify spends nothing (no one-time code, no counter) and reads nothing
     * of the contract: it runs first, and when it passes the contract's
     * checks run once, under the write lock (ct_sign).
     */
    bool verify_first;
};

/* The row named `name`, or NULL. */
const struct ct_sigtype *ct_sigtype_find(const char *name);
/* "digital, mfa or biometric": the names of the table, for problems. */
void ct_sigtype_names(char *buf, size_t cap);

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
    /* The parties' display names (IAM's, see ct_names_read); NULL when not read or gone. */
    const char *provider_name, *consumer_name;
    bool named; /* the names came with the row (a write's RETURNING list) */
    int64_t version, terms_version;
    enum ct_status status; /* expiry applied: an Active contract past expires_at is Expired */
    bool due_expiry;       /* stored active/suspended but past expires_at */
};

/*
 * A contract as the service hands it back: the row and the store rows its
 * strings point into. The caller encodes it (ct_row_json, ct_row_render)
 * and releases it with ct_rec_release; a failed call leaves nothing to
 * release.
 */
struct ct_rec {
    struct dcms_store_rows *rows;
    struct ct_row r;
    struct dcms_store_rows *names; /* the parties' names r points into (ct_names_read) */
};
void ct_rec_release(struct ct_rec *rec);

/*
 * Reads the display names of the parties of rec->r (one statement, inside
 * `tx`) into rec->names and points r.provider_name / r.consumer_name at
 * them. Only for answers to a caller allowed to read the contract.
 */
enum dcms_err ct_names_read(struct dcms_store_tx *tx, struct ct_rec *rec,
                            struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* The terms versions of a contract (ct_q_versions rows) with the contract. */
struct ct_versions_out {
    struct ct_rec rec;
    struct dcms_store_rows *versions;
};
void ct_versions_release(struct ct_versions_out *v);

/* Problems the decoder recorded in c->ei are answered together with the parties' (422). */
enum dcms_err ct_create(const struct ct_call *c, const struct ct_input *in,
                        struct ct_rec *out) DCMS_MUST_CHECK;
/* A rendered answer: JSON text (malloc'd; the caller frees it) and the row version. */
struct ct_text {
    char *body;
    size_t len;
    int64_t version;
};

/* The most one rendered contract may take (terms and signatures are bounded far below). */
#define CT_RENDER_MAX (4u << 20)

enum dcms_err ct_get(const struct ct_call *c, const char *id, struct ct_rec *out) DCMS_MUST_CHECK;
/*
 * A page of contracts: the store rows of each branch read (see ct_list)
 * and, in page order, which row of which branch each contract is.
 * Release with ct_page_release.
 */
struct ct_page {
    struct dcms_store_rows *branch[4];
    size_t nbranches;
    const struct dcms_store_rows *rows[201];
    size_t idx[201];
    size_t n;                      /* contracts on the page (at most the limit) */
    struct dcms_store_rows *names; /* the display names of the page's parties (one read) */
    bool more;                     /* a next page exists: next_cursor is the last id */
    int64_t now_us;                /* the reference for expiry when encoding */
};
void ct_page_release(struct ct_page *page);
enum dcms_err ct_list(const struct ct_call *c, const struct ct_list_in *in,
                      struct ct_page *out) DCMS_MUST_CHECK;

/* Encoders of the service's answers (contracts_json.c). */
/* The versions answer {contract_id, versions: [...]} (new object, NULL when out of memory). */
json_t *ct_versions_json(const struct ct_versions_out *v);
/* A page as {"contracts": [...], "next_cursor": ...} text into *out, body malloc'd. */
enum dcms_err ct_page_text(const struct ct_page *page, struct ct_text *out) DCMS_MUST_CHECK;
/* A contract as JSON text (ct_row_render) into *out, body malloc'd. */
enum dcms_err ct_rec_text(const struct ct_rec *rec, struct ct_text *out) DCMS_MUST_CHECK;
/* `in` as ct_update_from_json decoded it (in->if_match set). */
enum dcms_err ct_update(const struct ct_call *c, const char *id, const struct ct_input *in,
                        struct ct_rec *out) DCMS_MUST_CHECK;
enum dcms_err ct_delete(const struct ct_call *c, const char *id) DCMS_MUST_CHECK;
/* submit, activate, suspend, resume, terminate (reason required for terminate). */
enum dcms_err ct_transition(const struct ct_call *c, const char *id, enum ct_op op,
                            const char *reason, struct ct_rec *out) DCMS_MUST_CHECK;
enum dcms_err ct_versions(const struct ct_call *c, const char *id,
                          struct ct_versions_out *out) DCMS_MUST_CHECK;

/* Expires every contract past expires_at; returns how many through *n. */
enum dcms_err ct_expire_due(struct dcms_app *app, unsigned *n,
                            struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* ---- the store (contracts_store.c): every query of the contract tables ---- */

struct dcms_query;
extern struct dcms_query ct_q_get, ct_q_get_lock, ct_q_insert, ct_q_version_insert,
    ct_q_update_content, ct_q_update_status, ct_q_delete_sigs, ct_q_delete_versions, ct_q_delete,
    ct_q_versions, ct_q_due, ct_q_sig_insert, ct_q_sig_live, ct_q_sig_all, ct_q_sig_void,
    ct_q_sig_mirror, ct_q_touch, ct_q_version_hash;

/* The list statements: one per branch (index range) and combination of filters. */
enum { CT_LB_ALL, CT_LB_PROVIDER, CT_LB_CONSUMER, CT_LB_COUNT };
enum { CT_LF_VIS = 1, CT_LF_STATUS = 2, CT_LF_Q = 4, CT_LF_CURSOR = 8, CT_LF_COUNT = 16 };
/*
 * The statement for `branch` (CT_LB_*) and `flags` (CT_LF_*), built once.
 * Parameters, in this order when present: vis (me, org), party, status
 * (status, now), q, cursor, limit. Thread-safe.
 */
struct dcms_query *ct_list_query(int branch, int flags);

/* Helpers shared with contracts_sign.c. */
enum dcms_err ct_load(struct dcms_store_tx *tx, const char *id, struct dcms_store_rows **rows,
                      struct ct_row *r, struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* The same, locking the row for the rest of the write transaction (PostgreSQL FOR UPDATE). */
enum dcms_err ct_load_locked(struct dcms_store_tx *tx, const char *id,
                             struct dcms_store_rows **rows, struct ct_row *r,
                             struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* ct_load (`lock`: ct_load_locked) with the contract's live signatures (ct_q_sig_live's rows,
 * into *live) read beside it: one round trip on PostgreSQL. */
enum dcms_err ct_load_live(struct dcms_store_tx *tx, const char *id, bool lock,
                           struct dcms_store_rows **rows, struct ct_row *r,
                           struct dcms_store_rows **live, struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* Read access (404 when the caller may not see it), then `action` (403). */
enum dcms_err ct_authorize(const struct ct_call *c, const struct ct_row *r,
                           const char *action) DCMS_MUST_CHECK;
/* Which side(s) the caller may act for: CT_BY_PROVIDER and/or a consumer bit. */
bool ct_member_of(const struct dcms_principal *p, const char *party_id, unsigned role);
/* Row `i` of a contract read (ct_load's columns); now_us applies expiry. */
void ct_row_from(const struct dcms_store_rows *rows, size_t i, struct ct_row *r, int64_t now_us);
json_t *ct_row_json(const struct ct_row *r);
/*
 * Ends a write: the contract row as the write's last statement returned it
 * (`row`, ct_load's columns, stolen; NULL: contract `id` is read back inside
 * `tx`), its parties' names (`names`, rows of dcms_iam_parties read in `tx`,
 * stolen; NULL: as `row` brought them, or read here), then the commit, and
 * only then the answer, so a failed commit leaves nothing for the caller to
 * free. `tx` is ended (committed or rolled back) whatever happens; *out is
 * set (and owned by the caller) only on DCMS_OK.
 */
enum dcms_err ct_commit_answer(const struct ct_call *c, struct dcms_store_tx *tx, const char *id,
                               struct dcms_store_rows *row, struct dcms_store_rows *names,
                               struct ct_rec *out) DCMS_MUST_CHECK;
/* The same object as ct_row_json(), appended to `b` as JSON text without re-parsing. */
enum dcms_err ct_row_render(const struct ct_row *r, struct dcms_buf *b) DCMS_MUST_CHECK;
enum dcms_err ct_audit(const struct ct_call *c, struct dcms_store_tx *tx, const char *action,
                       const char *id, json_t *details /* stolen */) DCMS_MUST_CHECK;
/* ct_audit that gives the new event's id in `event_id` (DCMS_UUID_STRLEN bytes; may be NULL). */
enum dcms_err ct_audit_id(const struct ct_call *c, struct dcms_store_tx *tx, const char *action,
                          const char *id, json_t *details /* stolen */,
                          char *event_id) DCMS_MUST_CHECK;

/* ---- signatures (contracts_sign.c) ---- */

enum dcms_err ct_sign(const struct ct_call *c, const char *id, const struct ct_sign_in *in,
                      struct ct_rec *out) DCMS_MUST_CHECK;
/* What /verify found: the content hashed again, and each stored signature re-checked. */
struct ct_sig_check {
    bool valid, voided;
    const char *problem; /* NULL when valid; static or in the caller's arena */
};
struct ct_verify_out {
    struct ct_rec rec;
    struct dcms_store_rows *sigs; /* every signature, voided ones too (ct_q_sig_all) */
    struct ct_sig_check *checks;  /* one per row of `sigs` (malloc'd) */
    char computed[65];            /* the hash of the stored content, "" when unreadable */
    bool content_ok, history_ok;
    bool valid; /* content, history and every live signature hold */
};
void ct_verify_release(struct ct_verify_out *v);
enum dcms_err ct_verify(const struct ct_call *c, const char *id,
                        struct ct_verify_out *out) DCMS_MUST_CHECK;
/* The /verify answer (contracts_json.c; new object, NULL when out of memory). */
json_t *ct_verify_json(const struct ct_verify_out *v);
/* The current signatures as the contract row mirrors them; *row: the row as it is now. */
enum dcms_err ct_signatures_refresh(struct dcms_store_tx *tx, const char *id,
                                    struct dcms_store_rows **row,
                                    struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* Voids every live signature of `id` (kept, with voided_at and the reason). */
enum dcms_err ct_signatures_void(struct dcms_store_tx *tx, const char *id, const char *now,
                                 const char *reason, uint64_t *n,
                                 struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* Whether both sides hold a live signature over `hash` among `live` (ct_load_live's; for
 * activation); DCMS_ERR_CONFLICT when one signer or one key signed both sides. */
enum dcms_err ct_signatures_complete(const struct dcms_store_rows *live, const char *hash,
                                     bool *provider, bool *consumer,
                                     struct dcms_errinfo *ei) DCMS_MUST_CHECK;

#endif
