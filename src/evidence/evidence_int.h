/* Inside the evidence module: the service that assembles what the routes return. */
#ifndef DCMS_EVIDENCE_INT_H
#define DCMS_EVIDENCE_INT_H

#include <stdint.h>

#include <jansson.h>

#include "dcms/err.h"

#define DCMS_EVIDENCE_TYPE "dcms.evidence.v1"

struct dcms_app;
struct dcms_principal;

/* Who asks, and where errors go. */
struct evidence_call {
    struct dcms_app *app;
    const struct dcms_principal *p;
    const char *client_ip, *request_id;
    struct dcms_errinfo *ei;
};

/* Events a bundle holds at most; past it the bundle says audit_complete: false. */
#define EVIDENCE_MAX_EVENTS 10000

/*
 * A page of the audit slice of contract `id` (its own events and those of the
 * enclaves bound to it) after seq `after`: the slice with next_cursor.
 * DCMS_ERR_NOT_FOUND when the caller may not read the contract.
 */
enum dcms_err evidence_contract_audit(const struct evidence_call *c, const char *id, int64_t after,
                                      int64_t limit, json_t **out) DCMS_MUST_CHECK;
/* The evidence bundle of contract `id` (see docs/contracts.md, "Evidence"). */
enum dcms_err evidence_contract_bundle(const struct evidence_call *c, const char *id,
                                       json_t **out) DCMS_MUST_CHECK;

/*
 * Decides whether the caller may read audit event `id` and its receipt: a
 * holder of audit:read may read every event; anyone else only a success
 * event on a resource they may read (a contract: its parties, the decision
 * of contracts:read; a training job: whoever may read the job). Every
 * decision is dcms_iam_authorize's. DCMS_ERR_NOT_FOUND otherwise, as for an
 * unknown id (the refusal is recorded as "audit.event_hidden").
 */
enum dcms_err evidence_event_authorize(const struct evidence_call *c,
                                       const char *id) DCMS_MUST_CHECK;

#endif
