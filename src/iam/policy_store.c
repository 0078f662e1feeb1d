/*
 * Policy documents in the store: create (validated by policy.c, attached to
 * identities and roles), list, get and delete, each audited in its
 * transaction; after a change this node reloads its policy snapshot and the
 * others pick it up within their refresh period (iam_core.c).
 */
#include "dcms/app.h"
#include "dcms/clock.h"
#include "dcms/store.h"
#include "iam/policy_store.h"

static struct dcms_query q_policy_insert = DCMS_QUERY(
    "iam_policy_insert", "INSERT INTO policies (id, name, document, created_by, created_at) "
                         "VALUES ($1, $2, $3, $4, $5)");
static struct dcms_query q_attach_insert = DCMS_QUERY(
    "iam_policy_attach", "INSERT INTO policy_attachments (policy_id, subject_kind, subject) "
                         "VALUES ($1, $2, $3) ON CONFLICT DO NOTHING");
static struct dcms_query q_policy_list = DCMS_QUERY(
    "iam_policy_list",
    "SELECT id, document, created_by, created_at FROM policies ORDER BY created_at LIMIT 1000");
static struct dcms_query q_policy_get = DCMS_QUERY(
    "iam_policy_get", "SELECT id, document, created_by, created_at FROM policies WHERE id = $1");
static struct dcms_query q_policy_detach =
    DCMS_QUERY("iam_policy_detach", "DELETE FROM policy_attachments WHERE policy_id = $1");
static struct dcms_query q_policy_delete =
    DCMS_QUERY("iam_policy_delete", "DELETE FROM policies WHERE id = $1");

enum dcms_err iam_policy_create(const struct iam_call *c, const json_t *doc, json_t **out)
{
    struct iam_policy p;
    enum dcms_err e = iam_policy_from_json(doc, &p, c->ei);
    if (e) {
        iam_policy_release(&p);
        return e;
    }
    char id[DCMS_UUID_STRLEN], now[DCMS_TIME_STRLEN];
    dcms_uuid_v7(id);
    dcms_time_format(dcms_clock_now_us(), now);
    char *text = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
    struct dcms_store_tx *tx;
    if (!text || (e = dcms_store_begin(c->iam->app->store, DCMS_TX_WRITE, &tx, c->ei))) {
        free(text);
        iam_policy_release(&p);
        return e ? e : dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
    }
    const char *name = json_string_value(json_object_get(doc, "name"));
    e = dcms_store_exec(tx, &q_policy_insert,
                        (struct dcms_store_val[]){DCMS_VAL_TEXT(id), DCMS_VAL_TEXT(name),
                                                  DCMS_VAL_TEXT(text), DCMS_VAL_TEXT(c->p->id),
                                                  DCMS_VAL_TEXT(now)},
                        5, NULL, NULL, c->ei);
    if (e == DCMS_ERR_CONFLICT) {
        dcms_errinfo_init(c->ei, c->ei->arena);
        e = dcms_err_set(c->ei, DCMS_ERR_CONFLICT, "a policy with this name exists");
    }
    for (size_t i = 0; !e && i < p.nidentities; i++)
        e = dcms_store_exec(tx, &q_attach_insert,
                            (struct dcms_store_val[]){DCMS_VAL_TEXT(id), DCMS_VAL_TEXT("identity"),
                                                      DCMS_VAL_TEXT(p.identities[i])},
                            3, NULL, NULL, c->ei);
    for (unsigned bit = 1; !e && bit <= DCMS_ROLE_LAST; bit <<= 1)
        if (p.roles & bit)
            e = dcms_store_exec(tx, &q_attach_insert,
                                (struct dcms_store_val[]){DCMS_VAL_TEXT(id), DCMS_VAL_TEXT("role"),
                                                          DCMS_VAL_TEXT(dcms_iam_role_name(bit))},
                                3, NULL, NULL, c->ei);
    if (!e)
        e = iam_audit(c->iam, tx, c->p->id, "policy.create", "policy", id, false,
                      json_pack("{s:O}", "document", doc), c->client_ip, c->request_id, c->ei);
    iam_policy_release(&p);
    free(text);
    e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, c->ei);
    if (e)
        return e;
    if ((e = iam_policies_reload(c->iam, c->ei)))
        return e;
    json_t *v = json_deep_copy(doc);
    json_object_set_new(v, "id", json_string(id));
    json_object_set_new(v, "created_by", json_string(c->p->id));
    json_object_set_new(v, "created_at", json_string(now));
    *out = v;
    return DCMS_OK;
}

/* Row i of a policy query (id, document, created_by, created_at) as its answer; NULL if unreadable.
 */
static json_t *policy_json(const struct dcms_store_rows *rows, size_t i)
{
    json_t *v = json_loads(dcms_store_rows_text(rows, i, 1), 0, NULL);
    if (!v)
        return NULL;
    json_object_set_new(v, "id", json_string(dcms_store_rows_text(rows, i, 0)));
    json_object_set_new(v, "created_by", json_string(dcms_store_rows_text(rows, i, 2)));
    json_object_set_new(v, "created_at", json_string(dcms_store_rows_text(rows, i, 3)));
    return v;
}

/* Reads policy `id` inside tx as its answer (*out); DCMS_ERR_NOT_FOUND when absent. */
static enum dcms_err policy_load(struct dcms_store_tx *tx, const char *id, json_t **out,
                                 struct dcms_errinfo *ei)
{
    struct dcms_store_rows *rows;
    if (!id || !dcms_uuid_valid(id))
        return dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "policy not found");
    enum dcms_err e = dcms_store_exec(
        tx, &q_policy_get, (struct dcms_store_val[]){DCMS_VAL_TEXT(id)}, 1, &rows, NULL, ei);
    if (e)
        return e;
    *out = dcms_store_rows_count(rows) ? policy_json(rows, 0) : NULL;
    dcms_store_rows_free(rows);
    return *out ? DCMS_OK : dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "policy not found");
}

enum dcms_err iam_policy_get(const struct iam_call *c, const char *id, json_t **out)
{
    struct dcms_store_tx *tx;
    enum dcms_err e = dcms_store_begin(c->iam->app->store, DCMS_TX_READ, &tx, c->ei);
    if (e)
        return e;
    e = policy_load(tx, id, out, c->ei);
    dcms_store_rollback(tx);
    return e;
}

enum dcms_err iam_policy_delete(const struct iam_call *c, const char *id)
{
    struct dcms_store_tx *tx;
    json_t *doc = NULL;
    enum dcms_err e = dcms_store_begin(c->iam->app->store, DCMS_TX_WRITE, &tx, c->ei);
    if (e)
        return e;
    e = policy_load(tx, id, &doc, c->ei);
    struct dcms_store_val key[] = {DCMS_VAL_TEXT(id)};
    if (!e)
        e = dcms_store_exec(tx, &q_policy_detach, key, 1, NULL, NULL, c->ei);
    if (!e)
        e = dcms_store_exec(tx, &q_policy_delete, key, 1, NULL, NULL, c->ei);
    if (!e) {
        json_t *details = json_pack("{s:O}", "policy", doc);
        e = details ? iam_audit(c->iam, tx, c->p->id, "policy.delete", "policy", id, false, details,
                                c->client_ip, c->request_id, c->ei)
                    : dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
    }
    json_decref(doc);
    e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, c->ei);
    /* This node decides without the policy at once; the others within their refresh period. */
    return e ? e : iam_policies_reload(c->iam, c->ei);
}

enum dcms_err iam_policy_list(const struct iam_call *c, json_t **out)
{
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows;
    enum dcms_err e = dcms_store_begin(c->iam->app->store, DCMS_TX_READ, &tx, c->ei);
    if (e)
        return e;
    e = dcms_store_exec(tx, &q_policy_list, NULL, 0, &rows, NULL, c->ei);
    dcms_store_rollback(tx);
    if (e)
        return e;
    json_t *items = json_array();
    for (size_t i = 0; i < dcms_store_rows_count(rows); i++) {
        json_t *v = policy_json(rows, i);
        if (v)
            json_array_append_new(items, v);
    }
    dcms_store_rows_free(rows);
    *out = json_pack("{s:o}", "policies", items);
    return DCMS_OK;
}
