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

#endif
