/*
 * Parties: the view of an identity that other modules may read (kind,
 * status, roles), so that no module outside src/iam/ queries the identities
 * table. The contract service checks with it that both sides of a contract
 * exist, are active, hold the provider / consumer role and belong to two
 * different organizations, and shows the display names of the parties of
 * the contracts it answers (dcms_iam_party_names: one statement a page).
 */
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dcms/iam.h"
#include "dcms/store.h"
#include "dcms/uuid.h"

#define PARTY_COLS "kind, roles, status, organization_id" /* party_from's columns */
static struct dcms_query q_party =
    DCMS_QUERY("iam_party_get", "SELECT " PARTY_COLS " FROM identities WHERE id = $1");

/* The ids come as a JSON array (one parameter, whatever their number). */
#define IDS_SQLITE "(SELECT value FROM json_each($1))"
#define IDS_PG "(SELECT CAST(jsonb_array_elements_text(CAST($1 AS JSONB)) AS UUID))"
static struct dcms_query q_names =
    DCMS_QUERY2("iam_party_names", "SELECT id, name FROM identities WHERE id IN " IDS_SQLITE,
                "SELECT id, name FROM identities WHERE id IN " IDS_PG);
/* The columns of q_party after (id, name), so that rows serve dcms_iam_party_name too. */
static struct dcms_query q_parties = DCMS_QUERY2(
    "iam_parties", "SELECT id, name, " PARTY_COLS " FROM identities WHERE id IN " IDS_SQLITE,
    "SELECT id, name, " PARTY_COLS " FROM identities WHERE id IN " IDS_PG);

/* roles JSON array text (["provider", ...]) to a DCMS_ROLE_* bit set; unknown names ignored. */
static unsigned roles_of(const char *text)
{
    json_t *a = text ? json_loads(text, 0, NULL) : NULL;
    unsigned roles = 0;
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v)
    {
        if (json_is_string(v))
            roles |= dcms_iam_role_parse(json_string_value(v));
    }
    json_decref(a);
    return roles;
}

/* Row i of q_party's columns, from column `col` on, into *out (`id` is the identity's). */
static void party_from(const struct dcms_store_rows *rows, size_t i, size_t col, const char *id,
                       struct dcms_iam_party *out)
{
    const char *kind = dcms_store_rows_text(rows, i, col);
    const char *status = dcms_store_rows_text(rows, i, col + 2);
    snprintf(out->kind, sizeof(out->kind), "%s", kind ? kind : "");
    snprintf(out->status, sizeof(out->status), "%s", status ? status : "");
    out->roles = roles_of(dcms_store_rows_text(rows, i, col + 1));
    const char *org =
        strcmp(out->kind, "organization") == 0 ? id : dcms_store_rows_text(rows, i, col + 3);
    snprintf(out->org, sizeof(out->org), "%s", org ? org : "");
}

enum dcms_err dcms_iam_party_get(struct dcms_store_tx *tx, const char *id,
                                 struct dcms_iam_party *out, struct dcms_errinfo *ei)
{
    if (!id || !dcms_uuid_valid(id))
        return DCMS_ERR_NOT_FOUND;
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_exec(tx, &q_party, (struct dcms_store_val[]){DCMS_VAL_TEXT(id)}, 1,
                                      &rows, NULL, ei);
    if (e)
        return e;
    if (dcms_store_rows_count(rows) != 1)
        e = DCMS_ERR_NOT_FOUND;
    else
        party_from(rows, 0, 0, id, out);
    dcms_store_rows_free(rows);
    return e;
}

/* The statement of ids (a JSON array of the UUIDs among them) run with `q`. */
static enum dcms_err by_ids(struct dcms_store_tx *tx, struct dcms_query *q, const char *const *ids,
                            size_t n, struct dcms_store_rows **rows, struct dcms_errinfo *ei)
{
    *rows = NULL;
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++) {
        /* Only UUIDs reach the statement: PostgreSQL's cast would fail on anything else. */
        if (ids[i] && dcms_uuid_valid(ids[i]) && json_array_append_new(a, json_string(ids[i])))
            break;
    }
    char *text = a ? json_dumps(a, JSON_COMPACT) : NULL;
    json_decref(a);
    if (!text)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    enum dcms_err e =
        dcms_store_exec(tx, q, (struct dcms_store_val[]){DCMS_VAL_TEXT(text)}, 1, rows, NULL, ei);
    free(text);
    return e;
}

enum dcms_err dcms_iam_party_names(struct dcms_store_tx *tx, const char *const *ids, size_t n,
                                   struct dcms_store_rows **rows, struct dcms_errinfo *ei)
{
    return by_ids(tx, &q_names, ids, n, rows, ei);
}

enum dcms_err dcms_iam_parties(struct dcms_store_tx *tx, const char *const *ids, size_t n,
                               struct dcms_store_rows **rows, struct dcms_errinfo *ei)
{
    return by_ids(tx, &q_parties, ids, n, rows, ei);
}

/* The row of identity `id` (column 0), or -1. */
static ptrdiff_t row_of(const struct dcms_store_rows *rows, const char *id)
{
    for (size_t i = 0; id && i < dcms_store_rows_count(rows); i++) {
        const char *rid = dcms_store_rows_text(rows, i, 0);
        if (rid && strcasecmp(rid, id) == 0) /* PostgreSQL answers a UUID in lowercase */
            return (ptrdiff_t)i;
    }
    return -1;
}

bool dcms_iam_party_of(const struct dcms_store_rows *rows, const char *id,
                       struct dcms_iam_party *out)
{
    ptrdiff_t i = row_of(rows, id);
    if (i >= 0)
        party_from(rows, (size_t)i, 2, id, out);
    return i >= 0;
}

const char *dcms_iam_party_name(const struct dcms_store_rows *rows, const char *id)
{
    ptrdiff_t i = row_of(rows, id);
    return i >= 0 ? dcms_store_rows_text(rows, (size_t)i, 1) : NULL;
}
