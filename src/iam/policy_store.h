/*
 * Policy documents in the store (policy_store.c): create, list, get and
 * delete, each audited in its transaction and followed by a reload of this
 * node's policy snapshot. Parsing and evaluation are pure (policy.c, in
 * the core layer).
 */
#ifndef DCMS_IAM_POLICY_STORE_H
#define DCMS_IAM_POLICY_STORE_H

#include "iam/iam_core.h"

enum dcms_err iam_policy_create(const struct iam_call *c, const json_t *doc,
                                json_t **out) DCMS_MUST_CHECK;
enum dcms_err iam_policy_list(const struct iam_call *c, json_t **out) DCMS_MUST_CHECK;
/* One policy as the list shows it; DCMS_ERR_NOT_FOUND when absent. */
enum dcms_err iam_policy_get(const struct iam_call *c, const char *id,
                             json_t **out) DCMS_MUST_CHECK;
/*
 * Deletes a policy and its attachments, audited ("policy.delete", the
 * document in the details) in the same transaction, and reloads this
 * node's policy snapshot; other nodes drop it at their next refresh.
 */
enum dcms_err iam_policy_delete(const struct iam_call *c, const char *id) DCMS_MUST_CHECK;

#endif
