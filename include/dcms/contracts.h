/*
 * Contracts as other services see them. The contract service itself lives
 * in src/contracts/; this header is what the enclave and training services
 * may call.
 *
 * Contract status values, as the API writes them: "draft",
 * "pending_signature", "active", "suspended", "terminated", "expired".
 */
#ifndef DCMS_CONTRACTS_H
#define DCMS_CONTRACTS_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "dcms/err.h"
#include "dcms/security_level.h"
#include "dcms/uuid.h"

struct dcms_app;
struct dcms_contracts;

/* The security-relevant part of a contract (terms.security and the parties). */
struct dcms_contract_security {
    char id[DCMS_UUID_STRLEN];
    char provider_id[DCMS_UUID_STRLEN];
    char consumer_id[DCMS_UUID_STRLEN];
    char status[24]; /* as above; an Active contract past expires_at reads "expired" */
    enum dcms_security_level level; /* terms.security.encryption_level */
    bool network_isolation;         /* terms.security.network_isolation */
    bool audit_logging;             /* terms.security.audit_logging */
};

/*
 * Reads the security requirements of contract `id` (no authorization: the
 * caller decides who may learn what). DCMS_ERR_NOT_FOUND when there is no
 * such contract.
 */
enum dcms_err dcms_contracts_security_of(struct dcms_app *app, const char *id,
                                         struct dcms_contract_security *out,
                                         struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * Calls `fn` once for every distinct entry of terms.data_access.datasets
 * in the contracts with status "active" whose consumer is `consumer_id`
 * or `consumer_org` (either may be NULL), at most `max` entries. No
 * authorization: the datasets service uses it to let a consumer see the
 * metadata of what its Active contracts name. Implemented in
 * src/contracts/contracts_datasets.c.
 */
enum dcms_err dcms_contracts_active_datasets(struct dcms_app *app, const char *consumer_id,
                                             const char *consumer_org, size_t max,
                                             void (*fn)(void *ctx, const char *dataset), void *ctx,
                                             struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* ---- the terms as the training service reads them (src/contracts/contracts.c) ---- */

/* A contract's security view, its terms and the hash of what was signed. */
struct dcms_contract_terms {
    struct dcms_contract_security sec; /* status, parties, security requirements */
    char terms_hash[65];               /* lowercase hex SHA-256 of the signed content */
    json_t *terms;                     /* the terms object; the caller's reference */
};

/*
 * Reads contract `id` with its terms (no authorization: the caller decides
 * who may learn what). DCMS_ERR_NOT_FOUND when there is no such contract.
 * On success the caller releases out->terms with json_decref.
 */
enum dcms_err dcms_contracts_terms_of(struct dcms_app *app, const char *id,
                                      struct dcms_contract_terms *out,
                                      struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* ---- transition listeners: how other services follow a contract's status ---- */

struct dcms_store_tx;

/* One status change of a contract, as listeners see it (strings borrowed for the call). */
struct dcms_contract_change {
    const char *contract_id;
    const char *transition; /* the contract's audit action: "contract.suspend", "contract.expire" */
    const char *from_status; /* status values as above */
    const char *to_status;
    const char *actor;      /* identity id, or NULL for the system (expiry) */
    const char *client_ip;  /* may be NULL */
    const char *request_id; /* may be NULL */
};

/*
 * A service that must follow contracts (the enclave service) registers one
 * of these; the contract service knows nothing else about it.
 *
 * record: called inside the write transaction of every status change,
 *   after the contract row and its audit event are written and before the
 *   commit. What the listener writes there (its own tables, its own audit
 *   events) commits or rolls back with the change; an error it returns
 *   rolls the whole change back and becomes the caller's answer. It must
 *   not wait on anything outside the store (no locks, no processes).
 * committed: called after the commit, in the same request or job, for the
 *   work that cannot run inside a transaction (stopping processes). It
 *   cannot undo the change; what it fails to do its owner must redo later.
 * Either may be NULL. Both run on the thread that made the change. Only
 * changes from Active, Suspended, Terminated or Expired are told: a contract
 * in Draft or Pending signature has never been Active (the lifecycle never
 * returns there), so nothing can have started under it yet.
 */
struct dcms_contracts_listener {
    enum dcms_err (*record)(void *ctx, struct dcms_store_tx *tx,
                            const struct dcms_contract_change *ch, struct dcms_errinfo *ei);
    void (*committed)(void *ctx, const struct dcms_contract_change *ch);
    void *ctx;
};

#define DCMS_CONTRACTS_MAX_LISTENERS 4

/*
 * Registers `l` (copied) with the running contract service `ct` (NULL: no
 * service, nothing to follow, DCMS_OK). DCMS_ERR_CONFLICT when
 * DCMS_CONTRACTS_MAX_LISTENERS are registered already. Thread-safe.
 */
enum dcms_err dcms_contracts_listen(struct dcms_contracts *ct,
                                    const struct dcms_contracts_listener *l,
                                    struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/*
 * Removes the listener whose ctx is `ctx`; when it returns, no call into
 * that listener is running or will start. NULL `ct` is a no-op. Thread-safe.
 */
void dcms_contracts_unlisten(struct dcms_contracts *ct, void *ctx);

/* How a contract ended, for the retention of what was derived under it. */
struct dcms_contract_end {
    bool ended;              /* terminated or expired */
    int64_t ended_at_us;     /* when it reached that status (valid when ended) */
    bool has_retention;      /* terms.retention.days is present */
    unsigned retention_days; /* terms.retention.days */
    bool crypto_shred;       /* terms.retention.deletion is not "delete" */
};

/*
 * Reads whether contract `id` has ended and its retention term (no
 * authorization). DCMS_ERR_NOT_FOUND when there is no such contract.
 * Implemented in src/contracts/contracts_datasets.c.
 */
enum dcms_err dcms_contracts_end_of(struct dcms_app *app, const char *id,
                                    struct dcms_contract_end *out,
                                    struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * Starts the contract service (src/contracts/) and its expiry job, which
 * every DCMS_CONTRACT_EXPIRY_INTERVAL_S seconds moves contracts past
 * terms.expires_at to "expired" (reads already show them expired). `app`
 * must have cfg, store, audit and iam set and outlive the service.
 */
enum dcms_err dcms_contracts_open(struct dcms_app *app, struct dcms_contracts **out,
                                  struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* Stops the expiry job and frees. NULL is a no-op. */
void dcms_contracts_close(struct dcms_contracts *ct);

/* ---- evidence for the parties (src/contracts/contracts_evidence.c) ---- */

struct dcms_principal;

/*
 * Contract `id` as evidence for `p`, a caller who may read it (otherwise
 * DCMS_ERR_NOT_FOUND, as for an unknown id): {contract: {id, title, status,
 * provider_id, consumer_id, terms_version, terms_hash}} and, with
 * `with_signatures`, signed_content {canonical_base64 (the RFC 8785 bytes
 * whose SHA-256 is terms_hash), content, algorithm} and signatures: each
 * live one with signature (base64 Ed25519 over the 32-byte hash) and the
 * signer's public_key as registered when it signed (a biometric one carries
 * its WebAuthn assertion instead). *out is the caller's. Thread-safe.
 */
enum dcms_err dcms_contracts_evidence(struct dcms_app *app, const struct dcms_principal *p,
                                      const char *client_ip, const char *request_id, const char *id,
                                      bool with_signatures, json_t **out,
                                      struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * Decides whether `p` may read contract `id` (the decision of GET
 * /contracts/{id}: dcms_iam_authorize "contracts:read" with its parties).
 * DCMS_OK, or DCMS_ERR_NOT_FOUND, as for an unknown id, when `p` may not
 * (no refusal is recorded: the caller records what it hid). Thread-safe.
 */
enum dcms_err dcms_contracts_authorize_read(struct dcms_app *app, const struct dcms_principal *p,
                                            const char *client_ip, const char *id,
                                            struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* ---- the privacy term (src/contracts/contracts_privacy.c) ---- */

/* terms.privacy of a contract: the differential-privacy budget the parties agreed. */
struct dcms_contract_privacy {
    char provider_id[DCMS_UUID_STRLEN];
    char consumer_id[DCMS_UUID_STRLEN];
    bool present;               /* the terms have a privacy member; the rest is 0 otherwise */
    double epsilon;             /* terms.privacy.epsilon: the contract's total, 0 < ε <= 100 */
    double delta;               /* terms.privacy.delta: 0 < δ <= 1e-3 */
    double max_epsilon_per_run; /* terms.privacy.max_epsilon_per_run; 0 when absent */
};

/*
 * Records that a contract was hidden from `p` behind a 404 (audit
 * "contract.hidden", outcome denied, rate-limited per client address like
 * every refusal). `details` (owned; NULL: none) says what was asked; a
 * "reason" is added. Call it after the caller's transaction has ended.
 */
void dcms_contracts_audit_hidden(struct dcms_app *app, const struct dcms_principal *p,
                                 const char *client_ip, const char *request_id,
                                 const char *contract_id, json_t *details);

/*
 * Reads terms.privacy of contract `id` inside `tx` (NULL: a read
 * transaction of its own). With a principal `p`, the contract's read
 * authorization applies first (dcms_iam_authorize with its parties):
 * DCMS_ERR_NOT_FOUND, as for an unknown id, when `p` may not read it.
 * `p` NULL means no authorization, for services that decide themselves
 * (the training service before it reserves a run's budget).
 * DCMS_ERR_NOT_FOUND for an unknown id. *hidden (may be NULL) is set when
 * the 404 hid a contract from `p`: the caller records that refusal
 * (audit "contract.hidden") once its transaction has ended. Thread-safe;
 * *out is caller storage.
 */
enum dcms_err dcms_contracts_privacy_of(struct dcms_app *app, struct dcms_store_tx *tx,
                                        const struct dcms_principal *p, const char *client_ip,
                                        const char *id, struct dcms_contract_privacy *out,
                                        bool *hidden, struct dcms_errinfo *ei) DCMS_MUST_CHECK;

#endif
