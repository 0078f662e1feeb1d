/*
 * Organization membership (iam_org.h, docs/iam.md "Organization
 * membership"). Every route decides members:read / members:manage through
 * dcms_iam_authorize on the organization as a scoped resource, so an
 * org_admin reaches only its own organization and an admin any; an admin
 * that is not that organization's org_admin acts *for* it and must give a
 * reason, which the audit event keeps. Each change and its audit event are
 * one transaction, and the revocation epoch is bumped after the commit so
 * cached tokens re-read roles and organization at once.
 */
#include "dcms/app.h"
#include "dcms/clock.h"
#include "dcms/store.h"
#include "iam/iam_org.h"

#define MEMBER_COLS "id, kind, name, email, roles, status, organization_id, version"

static struct dcms_query q_get =
    DCMS_QUERY("iam_org_identity_get", "SELECT " MEMBER_COLS " FROM identities WHERE id = $1");
static struct dcms_query q_set =
    DCMS_QUERY("iam_org_member_set",
               "UPDATE identities SET organization_id = $2, roles = $3, updated_at = $4, "
               "version = version + 1 WHERE id = $1 AND version = $5");
static struct dcms_query q_list =
    DCMS_QUERY("iam_org_member_list",
               "SELECT " MEMBER_COLS " FROM identities WHERE organization_id = $1 "
               "AND (CAST($2 AS TEXT) IS NULL OR CAST(id AS TEXT) > $2) ORDER BY id LIMIT $3");

enum { M_ID, M_KIND, M_NAME, M_EMAIL, M_ROLES, M_STATUS, M_ORG, M_VERSION };

static json_t *member_json(const struct dcms_store_rows *r, size_t i)
{
    const char *email = dcms_store_rows_text(r, i, M_EMAIL);
    const char *org = dcms_store_rows_text(r, i, M_ORG);
    return json_pack(
        "{s:s, s:s, s:s, s:o, s:o, s:s, s:o}", "identity_id", dcms_store_rows_text(r, i, M_ID),
        "kind", dcms_store_rows_text(r, i, M_KIND), "name", dcms_store_rows_text(r, i, M_NAME),
        "email", email ? json_string(email) : json_null(), "roles",
        iam_roles_to_json(iam_roles_from_json_text(dcms_store_rows_text(r, i, M_ROLES))), "status",
        dcms_store_rows_text(r, i, M_STATUS), "organization_id",
        org ? json_string(org) : json_null());
}

/*
 * The one decision of every membership route: `action` on the organization
 * as a scoped resource. *acting_for is set when the caller is not an
 * org_admin of that organization (an admin, or an allow policy), which is
 * when a change needs a reason.
 */
static enum dcms_err decide(const struct iam_call *c, const char *action, const char *org_id,
                            bool *acting_for)
{
    struct dcms_iam_resource res = {
        .type = "organization", .id = org_id, .org_id = org_id, .scoped = true};
    struct dcms_iam_ctx ctx = {c->iam, c->client_ip};
    enum dcms_err e = dcms_iam_authorize(c->p, action, &res, &ctx, c->ei);
    *acting_for =
        !((c->p->roles & DCMS_ROLE_ORG_ADMIN) && c->p->org[0] && strcmp(c->p->org, org_id) == 0);
    return e;
}

/* Identity `id` (NULL rows when there is none); `id` must be a UUID. */
static enum dcms_err get(struct dcms_store_tx *tx, const char *id, struct dcms_store_rows **rows,
                         struct dcms_errinfo *ei)
{
    *rows = NULL;
    if (!dcms_uuid_valid(id))
        return DCMS_OK;
    enum dcms_err e = dcms_store_exec(tx, &q_get, (struct dcms_store_val[]){DCMS_VAL_TEXT(id)}, 1,
                                      rows, NULL, ei);
    if (!e && dcms_store_rows_count(*rows) != 1) {
        dcms_store_rows_free(*rows);
        *rows = NULL;
    }
    return e;
}

/* The organization `org_id` exists (404 otherwise; only callers allowed to know get here). */
static enum dcms_err load_org(struct dcms_store_tx *tx, const char *org_id, struct dcms_errinfo *ei)
{
    struct dcms_store_rows *rows;
    enum dcms_err e = get(tx, org_id, &rows, ei);
    if (!e && (!rows || strcmp(dcms_store_rows_text(rows, 0, M_KIND), "organization") != 0))
        e = dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "organization not found");
    dcms_store_rows_free(rows);
    return e;
}

static enum dcms_err need_reason(const struct iam_member_in *in, bool acting_for,
                                 struct dcms_errinfo *ei)
{
    if (acting_for && !in->reason)
        return dcms_err_field(ei, "reason",
                              "is required when an administrator acts for the organization");
    return DCMS_OK;
}

/* Writes organization and roles of member row `m` (at its version), audits, and commits. */
static enum dcms_err write_member(const struct iam_call *c, struct dcms_store_tx *tx,
                                  const struct dcms_store_rows *m, const char *org_id,
                                  unsigned roles, const char *action, const char *reason,
                                  bool acting_for, const char *audit_org)
{
    char now[DCMS_TIME_STRLEN];
    dcms_time_format(dcms_clock_now_us(), now);
    json_t *ra = iam_roles_to_json(roles);
    char *roles_s = ra ? json_dumps(ra, JSON_COMPACT) : NULL;
    json_decref(ra);
    if (!roles_s)
        return dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
    const char *id = dcms_store_rows_text(m, 0, M_ID);
    uint64_t n = 0;
    enum dcms_err e =
        dcms_store_exec(tx, &q_set,
                        (struct dcms_store_val[]){
                            DCMS_VAL_TEXT(id), org_id ? DCMS_VAL_TEXT(org_id) : DCMS_VAL_NULL,
                            DCMS_VAL_TEXT(roles_s), DCMS_VAL_TEXT(now),
                            DCMS_VAL_INT(strtoll(dcms_store_rows_text(m, 0, M_VERSION), NULL, 10))},
                        5, NULL, &n, c->ei);
    free(roles_s);
    if (!e && n != 1)
        e = dcms_err_set(c->ei, DCMS_ERR_CONFLICT, "the identity changed meanwhile; try again");
    if (e)
        return e;
    json_t *d =
        json_pack("{s:s, s:o, s:o, s:s}", "identity_id", id, "roles", iam_roles_to_json(roles),
                  "roles_before",
                  iam_roles_to_json(iam_roles_from_json_text(dcms_store_rows_text(m, 0, M_ROLES))),
                  "acting_as", acting_for ? "admin" : "org_admin");
    if (d && reason)
        json_object_set_new(d, "reason", json_string(reason));
    return d ? iam_audit(c->iam, tx, c->p->id, action, "organization", audit_org, false, d,
                         c->client_ip, c->request_id, c->ei)
             : dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
}

enum dcms_err iam_org_member_put(const struct iam_call *c, const char *org_id,
                                 const struct iam_member_in *in, json_t **out, bool *created)
{
    *out = NULL;
    *created = false;
    bool acting_for;
    enum dcms_err e = decide(c, "members:manage", org_id, &acting_for);
    if (e || (e = need_reason(in, acting_for, c->ei)))
        return e;
    struct dcms_store_tx *tx;
    struct dcms_store_rows *m = NULL;
    if ((e = dcms_store_begin(c->iam->app->store, DCMS_TX_WRITE, &tx, c->ei)))
        return e;
    if ((e = load_org(tx, org_id, c->ei)) || (e = get(tx, in->identity_id, &m, c->ei)))
        goto out;
    /* One answer for unknown, inactive, other organization's: nothing to tell apart. */
    const char *kind = m ? dcms_store_rows_text(m, 0, M_KIND) : "";
    const char *cur = m ? dcms_store_rows_text(m, 0, M_ORG) : NULL;
    if (!m || strcmp(kind, "organization") == 0 ||
        strcmp(dcms_store_rows_text(m, 0, M_STATUS), "active") != 0 ||
        (cur && strcmp(cur, org_id) != 0)) {
        e = dcms_err_field(c->ei, "identity_id",
                           "must be the id of an active (verified) user or service that belongs "
                           "to no other organization");
        goto out;
    }
    *created = cur == NULL;
    unsigned before = iam_roles_from_json_text(dcms_store_rows_text(m, 0, M_ROLES));
    e = write_member(c, tx, m, org_id, (before & ~(unsigned)IAM_ORG_ROLES) | in->roles,
                     *created ? "organization.member_add" : "organization.member_update",
                     in->reason, acting_for, org_id);
    dcms_store_rows_free(m);
    m = NULL;
    if (!e && !(e = get(tx, in->identity_id, &m, c->ei)) && m)
        *out = member_json(m, 0);
    if (!e && !*out)
        e = dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
out:
    dcms_store_rows_free(m);
    e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, c->ei);
    if (!e)
        iam_revocation_bump(c->iam); /* cached tokens re-read roles and organization */
    return e;
}

enum dcms_err iam_org_member_remove(const struct iam_call *c, const char *org_id,
                                    const char *identity_id, const struct iam_member_in *in)
{
    bool acting_for;
    enum dcms_err e = decide(c, "members:manage", org_id, &acting_for);
    if (e || (e = need_reason(in, acting_for, c->ei)))
        return e;
    struct dcms_store_tx *tx;
    struct dcms_store_rows *m = NULL;
    if ((e = dcms_store_begin(c->iam->app->store, DCMS_TX_WRITE, &tx, c->ei)))
        return e;
    if ((e = load_org(tx, org_id, c->ei)) || (e = get(tx, identity_id, &m, c->ei)))
        goto out;
    const char *cur = m ? dcms_store_rows_text(m, 0, M_ORG) : NULL;
    if (!cur || strcmp(cur, org_id) != 0) {
        e = dcms_err_set(c->ei, DCMS_ERR_NOT_FOUND, "no such member of this organization");
        goto out;
    }
    unsigned before = iam_roles_from_json_text(dcms_store_rows_text(m, 0, M_ROLES));
    e = write_member(c, tx, m, NULL, before & ~(unsigned)IAM_ORG_ROLES,
                     "organization.member_remove", in->reason, acting_for, org_id);
out:
    dcms_store_rows_free(m);
    e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, c->ei);
    if (!e)
        iam_revocation_bump(c->iam);
    return e;
}

enum dcms_err iam_org_member_list(const struct iam_call *c, const char *org_id,
                                  const struct iam_member_list_in *in, json_t **out)
{
    bool acting_for;
    enum dcms_err e = decide(c, "members:read", org_id, &acting_for);
    if (e)
        return e;
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    if ((e = dcms_store_begin(c->iam->app->store, DCMS_TX_READ, &tx, c->ei)))
        return e;
    if (!(e = load_org(tx, org_id, c->ei)))
        e = dcms_store_exec(
            tx, &q_list,
            (struct dcms_store_val[]){DCMS_VAL_TEXT(org_id),
                                      in->cursor ? DCMS_VAL_TEXT(in->cursor) : DCMS_VAL_NULL,
                                      DCMS_VAL_INT(in->limit)},
            3, &rows, NULL, c->ei);
    dcms_store_rollback(tx);
    if (!e && !(*out = dcms_store_rows_page(rows, in->limit, M_ID, "members", member_json)))
        e = dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
    dcms_store_rows_free(rows);
    return e;
}
