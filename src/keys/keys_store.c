/*
 * Queries over kek_versions and data_keys, the two tables this module owns.
 * Wrapped bytes are stored base64.
 */
#include <stdio.h>
#include <string.h>

#include "dcms/clock.h"
#include "dcms/crypto.h"
#include "dcms/store.h"
#include "keys/keys_int.h"

static struct dcms_query q_active =
    DCMS_QUERY("keys_active", "SELECT version FROM kek_versions WHERE state = 'active'");
static struct dcms_query q_state =
    DCMS_QUERY("keys_version_state", "SELECT state FROM kek_versions WHERE version = $1");
static struct dcms_query q_live = DCMS_QUERY(
    "keys_live_versions",
    "SELECT version FROM kek_versions WHERE state <> 'retired' ORDER BY version LIMIT $1");
static struct dcms_query q_max =
    DCMS_QUERY("keys_max_version", "SELECT COALESCE(MAX(version), 0) FROM kek_versions");
static struct dcms_query q_demote =
    DCMS_QUERY("keys_demote", "UPDATE kek_versions SET state = 'previous' WHERE state = 'active'");
static struct dcms_query q_add_version =
    DCMS_QUERY("keys_add_version", "INSERT INTO kek_versions (version, state, backend, "
                                   "created_at) VALUES ($1, 'active', $2, $3)");
static struct dcms_query q_retire =
    DCMS_QUERY("keys_retire", "UPDATE kek_versions SET state = 'retired', retired_at = $2 "
                              "WHERE version = $1 AND state = 'previous'");
static struct dcms_query q_count_all =
    DCMS_QUERY("keys_count_all", "SELECT COUNT(*) FROM data_keys WHERE destroyed_at IS NULL");
static struct dcms_query q_count_v =
    DCMS_QUERY("keys_count_version", "SELECT COUNT(*) FROM data_keys "
                                     "WHERE destroyed_at IS NULL AND kek_version = $1");
static struct dcms_query q_count_not =
    DCMS_QUERY("keys_count_not_version", "SELECT COUNT(*) FROM data_keys "
                                         "WHERE destroyed_at IS NULL AND kek_version <> $1");
static struct dcms_query q_insert = DCMS_QUERY(
    "keys_insert", "INSERT INTO data_keys (id, purpose, owner, kek_version, wrapped, created_at) "
                   "VALUES ($1, $2, $3, $4, $5, $6)");
static struct dcms_query q_get =
    DCMS_QUERY("keys_get", "SELECT id, purpose, kek_version, wrapped, destroyed_at FROM data_keys "
                           "WHERE id = $1");
static struct dcms_query q_pending = DCMS_QUERY(
    "keys_pending", "SELECT id, purpose, kek_version, wrapped, destroyed_at FROM data_keys "
                    "WHERE destroyed_at IS NULL AND kek_version <> $1 ORDER BY id LIMIT $2");
static struct dcms_query q_rewrap = DCMS_QUERY(
    "keys_rewrap", "UPDATE data_keys SET kek_version = $3, wrapped = $4, rewrapped_at = $5 "
                   "WHERE id = $1 AND kek_version = $2 AND destroyed_at IS NULL");
static struct dcms_query q_destroy = DCMS_QUERY(
    "keys_destroy", "UPDATE data_keys SET wrapped = NULL, name = NULL, destroyed_at = $2 "
                    "WHERE id = $1 AND destroyed_at IS NULL");
static struct dcms_query q_versions = DCMS_QUERY(
    "keys_versions",
    "SELECT v.version, v.state, v.created_at, v.retired_at, "
    "(SELECT COUNT(*) FROM data_keys d WHERE d.kek_version = v.version AND d.destroyed_at IS "
    "NULL) FROM kek_versions v ORDER BY v.version DESC LIMIT $1");

static struct dcms_query q_named =
    DCMS_QUERY("keys_named", "SELECT id FROM data_keys WHERE name = $1 AND destroyed_at IS NULL");
static struct dcms_query q_set_name =
    DCMS_QUERY("keys_set_name", "UPDATE data_keys SET name = $2 WHERE id = $1");

static void now_text(char out[DCMS_TIME_STRLEN])
{
    dcms_time_format(dcms_clock_now_us(), out);
}

enum dcms_err keys_store_active(struct dcms_store_tx *tx, int64_t *version, struct dcms_errinfo *ei)
{
    enum dcms_err e = dcms_store_exec_int(tx, &q_active, NULL, 0, version, ei);
    return e == DCMS_ERR_NOT_FOUND ? dcms_err_set(ei, DCMS_ERR_CONFIG, "no active KEK version") : e;
}

static enum dcms_kek_state parse_state(const char *s)
{
    if (s && strcmp(s, "active") == 0)
        return DCMS_KEK_ACTIVE;
    if (s && strcmp(s, "previous") == 0)
        return DCMS_KEK_PREVIOUS;
    return DCMS_KEK_RETIRED;
}

enum dcms_err keys_store_version_state(struct dcms_store_tx *tx, int64_t version,
                                       enum dcms_kek_state *state, struct dcms_errinfo *ei)
{
    struct dcms_store_rows *rows = NULL;
    struct dcms_store_val p[] = {DCMS_VAL_INT(version)};
    enum dcms_err e = dcms_store_exec(tx, &q_state, p, 1, &rows, NULL, ei);
    if (!e && dcms_store_rows_count(rows) == 0)
        e = dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "KEK version %lld not found", (long long)version);
    if (!e)
        *state = parse_state(dcms_store_rows_text(rows, 0, 0));
    dcms_store_rows_free(rows);
    return e;
}

enum dcms_err keys_store_live_versions(struct dcms_store_tx *tx, int64_t *out, size_t cap,
                                       size_t *n, struct dcms_errinfo *ei)
{
    struct dcms_store_rows *rows = NULL;
    struct dcms_store_val p[] = {DCMS_VAL_INT(cap)};
    enum dcms_err e = dcms_store_exec(tx, &q_live, p, 1, &rows, NULL, ei);
    *n = 0;
    for (size_t i = 0; !e && i < dcms_store_rows_count(rows) && i < cap; i++)
        out[(*n)++] = dcms_store_rows_int(rows, i, 0);
    dcms_store_rows_free(rows);
    return e;
}

enum dcms_err keys_store_max_version(struct dcms_store_tx *tx, int64_t *version,
                                     struct dcms_errinfo *ei)
{
    return dcms_store_exec_int(tx, &q_max, NULL, 0, version, ei);
}

enum dcms_err keys_store_add_version(struct dcms_store_tx *tx, int64_t version, const char *backend,
                                     struct dcms_errinfo *ei)
{
    char now[DCMS_TIME_STRLEN];
    now_text(now);
    enum dcms_err e = dcms_store_exec(tx, &q_demote, NULL, 0, NULL, NULL, ei);
    struct dcms_store_val p[] = {DCMS_VAL_INT(version), DCMS_VAL_TEXT(backend), DCMS_VAL_TEXT(now)};
    return e ? e : dcms_store_exec(tx, &q_add_version, p, 3, NULL, NULL, ei);
}

enum dcms_err keys_store_retire_version(struct dcms_store_tx *tx, int64_t version,
                                        struct dcms_errinfo *ei)
{
    char now[DCMS_TIME_STRLEN];
    now_text(now);
    uint64_t n = 0;
    struct dcms_store_val p[] = {DCMS_VAL_INT(version), DCMS_VAL_TEXT(now)};
    enum dcms_err e = dcms_store_exec(tx, &q_retire, p, 2, NULL, &n, ei);
    if (!e && n != 1)
        e = dcms_err_set(ei, DCMS_ERR_CONFLICT, "KEK version %lld is not a previous version",
                         (long long)version);
    return e;
}

enum dcms_err keys_store_count(struct dcms_store_tx *tx, int64_t version, bool not, int64_t *n,
                               struct dcms_errinfo *ei)
{
    struct dcms_store_val p[] = {DCMS_VAL_INT(version)};
    if (version == 0)
        return dcms_store_exec_int(tx, &q_count_all, NULL, 0, n, ei);
    return dcms_store_exec_int(tx, not ? &q_count_not : &q_count_v, p, 1, n, ei);
}

enum dcms_err keys_store_insert(struct dcms_store_tx *tx, const char *id, const char *purpose,
                                const char *owner, int64_t version,
                                const unsigned char wrapped[KEYS_WRAPPED_LEN],
                                struct dcms_errinfo *ei)
{
    char now[DCMS_TIME_STRLEN];
    char b64[128];
    now_text(now);
    dcms_b64_encode(b64, wrapped, KEYS_WRAPPED_LEN);
    struct dcms_store_val p[] = {
        DCMS_VAL_TEXT(id),     DCMS_VAL_TEXT(purpose), owner ? DCMS_VAL_TEXT(owner) : DCMS_VAL_NULL,
        DCMS_VAL_INT(version), DCMS_VAL_TEXT(b64),     DCMS_VAL_TEXT(now)};
    return dcms_store_exec(tx, &q_insert, p, 6, NULL, NULL, ei);
}

static enum dcms_err row_at(const struct dcms_store_rows *rows, size_t i, struct keys_row *out,
                            struct dcms_errinfo *ei)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->id, sizeof(out->id), "%s", dcms_store_rows_text(rows, i, 0));
    snprintf(out->purpose, sizeof(out->purpose), "%s", dcms_store_rows_text(rows, i, 1));
    out->version = dcms_store_rows_int(rows, i, 2);
    out->destroyed = !dcms_store_rows_is_null(rows, i, 4);
    if (out->destroyed)
        return DCMS_OK;
    const char *b64 = dcms_store_rows_text(rows, i, 3);
    size_t got = 0;
    if (!b64 || dcms_b64_decode(out->wrapped, sizeof(out->wrapped), b64, strlen(b64), &got) ||
        got != KEYS_WRAPPED_LEN)
        return dcms_err_set(ei, DCMS_ERR_CRYPTO, "data key %s is damaged", out->id);
    return DCMS_OK;
}

enum dcms_err keys_store_get(struct dcms_store_tx *tx, const char *id, struct keys_row *out,
                             struct dcms_errinfo *ei)
{
    struct dcms_store_rows *rows = NULL;
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(id)};
    enum dcms_err e = dcms_store_exec(tx, &q_get, p, 1, &rows, NULL, ei);
    if (!e && dcms_store_rows_count(rows) == 0)
        e = dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "data key not found");
    if (!e)
        e = row_at(rows, 0, out, ei);
    dcms_store_rows_free(rows);
    return e;
}

enum dcms_err keys_store_pending(struct dcms_store_tx *tx, int64_t active, struct keys_row *out,
                                 size_t cap, size_t *n, struct dcms_errinfo *ei)
{
    struct dcms_store_rows *rows = NULL;
    struct dcms_store_val p[] = {DCMS_VAL_INT(active), DCMS_VAL_INT(cap)};
    enum dcms_err e = dcms_store_exec(tx, &q_pending, p, 2, &rows, NULL, ei);
    *n = 0;
    for (size_t i = 0; !e && i < dcms_store_rows_count(rows) && i < cap; i++)
        if (!(e = row_at(rows, i, &out[*n], ei)))
            (*n)++;
    dcms_store_rows_free(rows);
    return e;
}

enum dcms_err keys_store_rewrap(struct dcms_store_tx *tx, const char *id, int64_t from, int64_t to,
                                const unsigned char wrapped[KEYS_WRAPPED_LEN], bool *changed,
                                struct dcms_errinfo *ei)
{
    char now[DCMS_TIME_STRLEN];
    char b64[128];
    uint64_t n = 0;
    now_text(now);
    dcms_b64_encode(b64, wrapped, KEYS_WRAPPED_LEN);
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(id), DCMS_VAL_INT(from), DCMS_VAL_INT(to),
                                 DCMS_VAL_TEXT(b64), DCMS_VAL_TEXT(now)};
    enum dcms_err e = dcms_store_exec(tx, &q_rewrap, p, 5, NULL, &n, ei);
    *changed = !e && n == 1;
    return e;
}

enum dcms_err keys_store_destroy(struct dcms_store_tx *tx, const char *id, struct dcms_errinfo *ei)
{
    char now[DCMS_TIME_STRLEN];
    now_text(now);
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(id), DCMS_VAL_TEXT(now)};
    return dcms_store_exec(tx, &q_destroy, p, 2, NULL, NULL, ei);
}

enum dcms_err keys_store_status(struct dcms_store_tx *tx, struct dcms_keys_status *out,
                                struct dcms_errinfo *ei)
{
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e;
    if ((e = keys_store_active(tx, &out->active_version, ei)) ||
        (e = keys_store_count(tx, 0, false, &out->deks_total, ei)) ||
        (e = keys_store_count(tx, out->active_version, true, &out->deks_pending, ei)))
        return e;
    struct dcms_store_val p[] = {DCMS_VAL_INT(DCMS_KEYS_MAX_VERSIONS)};
    if ((e = dcms_store_exec(tx, &q_versions, p, 1, &rows, NULL, ei)))
        return e;
    out->n_versions = 0;
    for (size_t i = 0; i < dcms_store_rows_count(rows) && i < DCMS_KEYS_MAX_VERSIONS; i++) {
        struct dcms_kek_version *v = &out->versions[out->n_versions++];
        const char *c = dcms_store_rows_text(rows, i, 2), *r = dcms_store_rows_text(rows, i, 3);
        v->version = dcms_store_rows_int(rows, i, 0);
        v->state = parse_state(dcms_store_rows_text(rows, i, 1));
        snprintf(v->created_at, sizeof(v->created_at), "%s", c ? c : "");
        snprintf(v->retired_at, sizeof(v->retired_at), "%s", r ? r : "");
        v->dek_count = dcms_store_rows_int(rows, i, 4);
    }
    dcms_store_rows_free(rows);
    return DCMS_OK;
}

enum dcms_err keys_store_named(struct dcms_store_tx *tx, const char *name, char id[40],
                               struct dcms_errinfo *ei)
{
    struct dcms_store_rows *rows = NULL;
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(name)};
    enum dcms_err e = dcms_store_exec(tx, &q_named, p, 1, &rows, NULL, ei);
    if (!e && dcms_store_rows_count(rows) == 0)
        e = DCMS_ERR_NOT_FOUND;
    if (!e)
        snprintf(id, 40, "%s", dcms_store_rows_text(rows, 0, 0));
    dcms_store_rows_free(rows);
    return e;
}

enum dcms_err keys_store_set_name(struct dcms_store_tx *tx, const char *id, const char *name,
                                  struct dcms_errinfo *ei)
{
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(id), DCMS_VAL_TEXT(name)};
    return dcms_store_exec(tx, &q_set_name, p, 2, NULL, NULL, ei);
}
