/*
 * Organization membership (iam_org.c, decoded by iam_org_json.c): who
 * belongs to an organization, and with which of the organization roles
 * (provider, consumer, org_admin). Membership is granted by the
 * organization's own org_admins, or by a platform admin acting for it with
 * a `reason` that is audited; never chosen by the member (self-registration
 * takes no organization) and never a side effect of verifying an identity.
 * Above the core layer only.
 */
#ifndef DCMS_IAM_ORG_H
#define DCMS_IAM_ORG_H

#include "iam/iam_core.h"

/* The roles a membership grants; the others are the platform's (admin, auditor, operator). */
#define IAM_ORG_ROLES (DCMS_ROLE_PROVIDER | DCMS_ROLE_CONSUMER | DCMS_ROLE_ORG_ADMIN)

/* POST /organizations/{id}/members body; DELETE .../members/{identity_id}?reason= */
struct iam_member_in {
    const char *identity_id; /* POST: required */
    unsigned roles;          /* POST: required, a subset of IAM_ORG_ROLES */
    const char *reason;      /* required when a platform admin acts for the organization */
};

struct iam_member_list_in {
    const char *cursor;
    int64_t limit;
};

/*
 * {identity_id, roles[], reason?}: every problem at once under its JSON
 * path. Strings point into `b`.
 */
enum dcms_err iam_member_put_from_json(const json_t *b, struct iam_member_in *in,
                                       struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * Adds the active user or service `in->identity_id`, which belongs to no
 * organization, to organization `org_id` with `in->roles`, or, when it is
 * already a member, sets its organization roles to `in->roles` (platform
 * roles are kept). Needs members:manage on the organization (its
 * org_admin; an admin needs `reason`). Audited (organization.member_add /
 * member_update) in the same transaction; existing tokens see the change
 * at once on this node, within DCMS_IAM_REVALIDATE_MS elsewhere. *out is
 * the member, *created whether it joined now. 403 for an organization the
 * caller does not manage (existing or not), 404 for an unknown one (to
 * admins), 422 identity_id for anything else about the identity.
 */
enum dcms_err iam_org_member_put(const struct iam_call *c, const char *org_id,
                                 const struct iam_member_in *in, json_t **out,
                                 bool *created) DCMS_MUST_CHECK;
/*
 * Removes `identity_id` from organization `org_id`: no organization, no
 * organization roles. Same permission, reason rule, audit
 * (organization.member_remove) and propagation as iam_org_member_put; 404
 * when it is not a member.
 */
enum dcms_err iam_org_member_remove(const struct iam_call *c, const char *org_id,
                                    const char *identity_id,
                                    const struct iam_member_in *in) DCMS_MUST_CHECK;
/* A page of the organization's members ({members, next_cursor}); needs members:read. */
enum dcms_err iam_org_member_list(const struct iam_call *c, const char *org_id,
                                  const struct iam_member_list_in *in,
                                  json_t **out) DCMS_MUST_CHECK;

#endif
