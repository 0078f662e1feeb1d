/*
 * The datasets service: metadata, visibility, crypto-shredding delete,
 * and the public reader (include/dcms/datasets.h). The streamed upload is
 * in datasets_upload.c; design notes in README.md.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/datasets_int.h"
#include <stdio.h>
#include "dcms/app.h"
#include "dcms/audit.h"
#include "dcms/clock.h"
#include "dcms/contracts.h"
#include "dcms/iam.h"
#include "dcms/keys.h"
#include "dcms/store.h"
#include "dcms/str.h"

#define COLS                                                                                       \
    "id, provider_id, created_by, name, description, format, schema, expected_size, "              \
    "expected_sha256, status, upload_length, upload_offset, segments, dek_id, sha256, "            \
    "row_count, report, created_at, updated_at, version"

enum {
    C_ID,
    C_PROVIDER,
    C_CREATED_BY,
    C_NAME,
    C_DESCRIPTION,
    C_FORMAT,
    C_SCHEMA,
    C_EXPECTED_SIZE,
    C_EXPECTED_SHA,
    C_STATUS,
    C_LENGTH,
    C_OFFSET,
    C_SEGMENTS,
    C_DEK,
    C_SHA,
    C_ROWS,
    C_REPORT,
    C_CREATED_AT,
    C_UPDATED_AT,
    C_VERSION
};

static struct dcms_query q_insert = DCMS_QUERY(
    "ds_insert",
    "INSERT INTO datasets (id, provider_id, created_by, name, description, format, schema, "
    "expected_size, expected_sha256, status, upload_length, dek_id, created_at, updated_at) "
    "VALUES ($1, $2, $3, $4, $5, 'csv', $6, $7, $8, 'created', $9, $10, $11, $11)");
static struct dcms_query q_get =
    DCMS_QUERY("ds_get", "SELECT " COLS " FROM datasets WHERE id = $1");
static struct dcms_query q_list =
    DCMS_QUERY2("ds_list",
                "SELECT " COLS " FROM datasets WHERE (provider_id IN ($1, $2) OR $3 = 1 OR id IN "
                "(SELECT value FROM json_each($4))) AND id > $5 ORDER BY id LIMIT $6",
                "SELECT " COLS " FROM datasets WHERE (provider_id IN ($1, $2) OR $3 = 1 OR id IN "
                "(SELECT jsonb_array_elements_text($4::jsonb))) AND id > $5 ORDER BY id LIMIT $6");
static struct dcms_query q_delete =
    DCMS_QUERY("ds_delete", "DELETE FROM datasets WHERE id = $1 AND writer IS NULL");
static struct dcms_query q_delete_state =
    DCMS_QUERY("ds_delete_state", "DELETE FROM dataset_upload_state WHERE dataset_id = $1");

/* ---- rows ---- */

json_t *ds_row_json(const struct dcms_store_rows *r, size_t i)
{
    json_t *schema = json_loads(dcms_store_rows_text(r, i, C_SCHEMA), 0, NULL);
    const char *rep = dcms_store_rows_text(r, i, C_REPORT);
    json_t *report = rep ? json_loads(rep, 0, NULL) : json_null();
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:s, s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:s, s:s, "
        "s:I}",
        "id", dcms_store_rows_text(r, i, C_ID), "provider_id",
        dcms_store_rows_text(r, i, C_PROVIDER), "created_by",
        dcms_store_rows_text(r, i, C_CREATED_BY), "name", dcms_store_rows_text(r, i, C_NAME),
        "description", dcms_store_rows_text(r, i, C_DESCRIPTION), "format",
        dcms_store_rows_text(r, i, C_FORMAT), "schema", schema ? schema : json_null(), "status",
        dcms_store_rows_text(r, i, C_STATUS), "upload_offset",
        (json_int_t)dcms_store_rows_int(r, i, C_OFFSET), "upload_length",
        dcms_store_rows_is_null(r, i, C_LENGTH) ? json_null()
                                                : json_integer(dcms_store_rows_int(r, i, C_LENGTH)),
        "expected_size",
        dcms_store_rows_is_null(r, i, C_EXPECTED_SIZE)
            ? json_null()
            : json_integer(dcms_store_rows_int(r, i, C_EXPECTED_SIZE)),
        "expected_sha256",
        dcms_store_rows_is_null(r, i, C_EXPECTED_SHA)
            ? json_null()
            : json_string(dcms_store_rows_text(r, i, C_EXPECTED_SHA)),
        "sha256",
        dcms_store_rows_is_null(r, i, C_SHA) ? json_null()
                                             : json_string(dcms_store_rows_text(r, i, C_SHA)),
        "rows",
        dcms_store_rows_is_null(r, i, C_ROWS) ? json_null()
                                              : json_integer(dcms_store_rows_int(r, i, C_ROWS)),
        "report", report ? report : json_null(), "created_at",
        dcms_store_rows_text(r, i, C_CREATED_AT), "updated_at",
        dcms_store_rows_text(r, i, C_UPDATED_AT), "version",
        (json_int_t)dcms_store_rows_int(r, i, C_VERSION));
    return o;
}

static void fill_ref(const struct dcms_store_rows *r, struct dcms_dataset_ref *out)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->id, sizeof(out->id), "%s", dcms_store_rows_text(r, 0, C_ID));
    snprintf(out->provider_id, sizeof(out->provider_id), "%s",
             dcms_store_rows_text(r, 0, C_PROVIDER));
    snprintf(out->dek_id, sizeof(out->dek_id), "%s", dcms_store_rows_text(r, 0, C_DEK));
    snprintf(out->status, sizeof(out->status), "%s", dcms_store_rows_text(r, 0, C_STATUS));
    const char *sha = dcms_store_rows_text(r, 0, C_SHA);
    snprintf(out->sha256, sizeof(out->sha256), "%s", sha ? sha : "");
    out->size = dcms_store_rows_int(r, 0, C_OFFSET);
    out->segments = dcms_store_rows_int(r, 0, C_SEGMENTS);
    out->rows = dcms_store_rows_int(r, 0, C_ROWS);
}

enum dcms_err ds_load(struct dcms_store_tx *tx, const char *id, struct dcms_store_rows **rows,
                      struct dcms_errinfo *ei)
{
    *rows = NULL;
    if (!id || !dcms_uuid_valid(id))
        return dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "dataset not found");
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(id)};
    enum dcms_err e = dcms_store_exec(tx, &q_get, p, 1, rows, NULL, ei);
    if (!e && dcms_store_rows_count(*rows) != 1)
        e = dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "dataset not found");
    if (e) {
        dcms_store_rows_free(*rows);
        *rows = NULL;
    }
    return e;
}

/* ---- who sees what ---- */

const char *ds_org_of(const struct dcms_principal *p)
{
    return p->org[0] ? p->org : p->id;
}

bool ds_owns(const struct dcms_principal *p, const char *provider_id)
{
    return p && provider_id &&
           (strcmp(p->id, provider_id) == 0 || (p->org[0] && strcmp(p->org, provider_id) == 0));
}

static bool sees_all(const struct dcms_principal *p)
{
    return p && (p->roles & (DCMS_ROLE_ADMIN | DCMS_ROLE_AUDITOR));
}

struct named {
    json_t *ids;
    const char *want;
    bool found;
};

static void collect_named(void *ctx, const char *ds)
{
    struct named *n = ctx;
    if (n->want && strcmp(n->want, ds) == 0)
        n->found = true;
    if (n->ids && dcms_uuid_valid(ds))
        json_array_append_new(n->ids, json_string(ds));
}

/* Whether a consumer's Active contracts name dataset `id`. */
static enum dcms_err named_by_contract(const struct ds_call *c, const char *id, bool *out)
{
    struct named n = {.want = id};
    enum dcms_err e = dcms_contracts_active_datasets(c->app, c->p->id, c->p->org, 100000,
                                                     collect_named, &n, c->ei);
    *out = n.found;
    return e;
}

/* ---- audit ---- */

enum dcms_err ds_audit(const struct ds_call *c, struct dcms_store_tx *tx, const char *action,
                       const char *id, json_t *details)
{
    struct dcms_audit_who who = {c->p ? c->p->id : NULL, c->client_ip, c->request_id};
    return dcms_audit_change(c->app->audit, tx, &who, "dataset", action, id, details, c->ei);
}

/* ---- create, get, list, delete ---- */

enum dcms_err ds_create(const struct ds_call *c, const struct ds_create_in *in, json_t **out)
{
    struct dcms_store_tx *tx = NULL;
    struct dcms_store_rows *rows = NULL;
    struct dcms_dek *dek = NULL;
    char id[DCMS_UUID_STRLEN], now[DCMS_TIME_STRLEN];
    dcms_uuid_v7(id);
    dcms_time_format(dcms_clock_now_us(), now);
    const char *org = ds_org_of(c->p);
    enum dcms_err e = dcms_store_begin(c->app->store, DCMS_TX_WRITE, &tx, c->ei);
    if (e)
        goto out;
    if ((e = dcms_keys_dek_create(c->app->keys, tx, "dataset", id, &dek, c->ei)))
        goto out;
    struct dcms_store_val p[] = {
        DCMS_VAL_TEXT(id),
        DCMS_VAL_TEXT(org),
        DCMS_VAL_TEXT(c->p->id),
        DCMS_VAL_TEXT(in->name),
        DCMS_VAL_TEXT(in->description),
        DCMS_VAL_TEXT(in->schema_json),
        in->expected_size >= 0 ? DCMS_VAL_INT(in->expected_size) : DCMS_VAL_NULL,
        in->expected_sha256 ? DCMS_VAL_TEXT(in->expected_sha256) : DCMS_VAL_NULL,
        in->upload_length >= 0 ? DCMS_VAL_INT(in->upload_length) : DCMS_VAL_NULL,
        DCMS_VAL_TEXT(dcms_dek_id(dek)),
        DCMS_VAL_TEXT(now),
    };
    if ((e = dcms_store_exec(tx, &q_insert, p, 11, NULL, NULL, c->ei)))
        goto out;
    if ((e = ds_audit(c, tx, "dataset.create", id,
                      json_pack("{s:s, s:s, s:s}", "provider_id", org, "name", in->name, "dek_id",
                                dcms_dek_id(dek)))))
        goto out;
    if ((e = ds_load(tx, id, &rows, c->ei)))
        goto out;
    *out = ds_row_json(rows, 0);
    e = *out ? DCMS_OK : dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
out:
    dcms_dek_free(dek);
    dcms_store_rows_free(rows);
    if (tx)
        e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, c->ei);
    return e;
}

enum dcms_err ds_get(const struct ds_call *c, const char *id, json_t **out)
{
    struct dcms_store_tx *tx = NULL;
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_begin(c->app->store, DCMS_TX_READ, &tx, c->ei);
    if (e)
        return e;
    if ((e = ds_load(tx, id, &rows, c->ei)))
        goto out;
    bool ok = ds_owns(c->p, dcms_store_rows_text(rows, 0, C_PROVIDER)) || sees_all(c->p);
    if (!ok && (e = named_by_contract(c, id, &ok)))
        goto out;
    if (!ok) {
        /* a non-party learns nothing, not even that the dataset exists */
        e = dcms_err_set(c->ei, DCMS_ERR_NOT_FOUND, "dataset not found");
        goto out;
    }
    *out = ds_row_json(rows, 0);
    e = *out ? DCMS_OK : dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
out:
    dcms_store_rows_free(rows);
    dcms_store_rollback(tx);
    return e;
}

enum dcms_err ds_list(const struct ds_call *c, const char *cursor, int64_t limit, json_t **out)
{
    struct dcms_store_tx *tx = NULL;
    struct dcms_store_rows *rows = NULL;
    char *named_text = NULL;
    struct named n = {.ids = json_array()};
    enum dcms_err e = n.ids ? DCMS_OK : dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
    if (e)
        goto out;
    if ((e = dcms_contracts_active_datasets(c->app, c->p->id, c->p->org, 100000, collect_named, &n,
                                            c->ei)))
        goto out;
    named_text = json_dumps(n.ids, JSON_COMPACT);
    if (!named_text) {
        e = dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
        goto out;
    }
    if ((e = dcms_store_begin(c->app->store, DCMS_TX_READ, &tx, c->ei)))
        goto out;
    struct dcms_store_val p[] = {
        DCMS_VAL_TEXT(c->p->id),
        DCMS_VAL_TEXT(ds_org_of(c->p)),
        DCMS_VAL_INT(sees_all(c->p)),
        DCMS_VAL_TEXT(named_text),
        DCMS_VAL_TEXT(cursor ? cursor : ""),
        DCMS_VAL_INT(limit),
    };
    if ((e = dcms_store_exec(tx, &q_list, p, 6, &rows, NULL, c->ei)))
        goto out;
    *out = dcms_store_rows_page(rows, limit, C_ID, "datasets", ds_row_json);
    e = *out ? DCMS_OK : dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
out:
    free(named_text);
    json_decref(n.ids);
    dcms_store_rows_free(rows);
    if (tx)
        dcms_store_rollback(tx);
    return e;
}

enum dcms_err ds_delete(const struct ds_call *c, const char *id)
{
    struct dcms_store_tx *tx = NULL;
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_begin(c->app->store, DCMS_TX_WRITE, &tx, c->ei);
    if (e)
        return e;
    if ((e = ds_load(tx, id, &rows, c->ei)))
        goto out;
    if (!ds_owns(c->p, dcms_store_rows_text(rows, 0, C_PROVIDER)) &&
        !(c->p->roles & DCMS_ROLE_ADMIN)) {
        bool named = false;
        if (!(e = named_by_contract(c, id, &named)))
            e = named ? dcms_err_set(c->ei, DCMS_ERR_FORBIDDEN,
                                     "only the provider may delete a dataset")
                      : dcms_err_set(c->ei, DCMS_ERR_NOT_FOUND, "dataset not found");
        goto out;
    }
    int64_t nseg = 0, maxidx = -1;
    const char *dek_id = dcms_store_rows_text(rows, 0, C_DEK);
    /* Crypto-shred first: once the DEK is gone the segments are noise, whatever happens next. */
    if ((e = dcms_keys_dek_destroy(c->app->keys, tx, dek_id, c->ei)))
        goto out;
    if ((e = ds_blob_store.count(tx, id, &nseg, &maxidx, c->ei)))
        goto out;
    if ((e = ds_blob_store.remove_from(tx, id, 0, c->ei)))
        goto out;
    uint64_t affected = 0;
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(id)};
    if ((e = dcms_store_exec(tx, &q_delete_state, p, 1, NULL, NULL, c->ei)) ||
        (e = dcms_store_exec(tx, &q_delete, p, 1, NULL, &affected, c->ei)))
        goto out;
    if (affected != 1) {
        e = dcms_err_set(c->ei, DCMS_ERR_CONFLICT, "an upload to this dataset is in progress");
        goto out;
    }
    e = ds_audit(c, tx, "dataset.delete", id,
                 json_pack("{s:s, s:s, s:I, s:s}", "provider_id",
                           dcms_store_rows_text(rows, 0, C_PROVIDER), "dek_id", dek_id,
                           "segments_removed", (json_int_t)nseg, "method", "crypto_shred"));
out:
    dcms_store_rows_free(rows);
    return e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, c->ei);
}

/* ---- reading ---- */

size_t dcms_datasets_segment_aad(const char *id, int64_t index, bool final,
                                 unsigned char out[DCMS_DATASET_AAD_LEN])
{
    static const char tag[] = "dcms.dataset.v1"; /* with its NUL */
    size_t n = 0;
    memcpy(out, tag, sizeof(tag));
    n += sizeof(tag);
    memcpy(out + n, id, 36);
    n += 36;
    for (int i = 7; i >= 0; i--)
        out[n++] = (unsigned char)((uint64_t)index >> (8 * i));
    out[n++] = final ? 1 : 0;
    return n;
}

enum dcms_err dcms_datasets_ref(struct dcms_app *app, const char *id, struct dcms_dataset_ref *out,
                                struct dcms_errinfo *ei)
{
    struct dcms_store_tx *tx = NULL;
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_begin(app->store, DCMS_TX_READ, &tx, ei);
    if (e)
        return e;
    if (!(e = ds_load(tx, id, &rows, ei)))
        fill_ref(rows, out);
    dcms_store_rows_free(rows);
    dcms_store_rollback(tx);
    return e;
}

/*
 * Walks the segments of a ready dataset in `tx`. The store must hold
 * exactly indexes 0..n-1 with only the last one flagged final.
 */
static enum dcms_err walk(struct dcms_store_tx *tx, const struct dcms_dataset_ref *ref,
                          dcms_dataset_segment_fn fn, void *ctx, struct dcms_errinfo *ei)
{
    if (strcmp(ref->status, "ready") != 0)
        return dcms_err_set(ei, DCMS_ERR_CONFLICT, "dataset is %s, not ready", ref->status);
    int64_t n = 0, maxidx = -1;
    enum dcms_err e = ds_blob_store.count(tx, ref->id, &n, &maxidx, ei);
    if (e)
        return e;
    if (n != ref->segments || maxidx != n - 1 || n < 1)
        return dcms_err_set(ei, DCMS_ERR_CRYPTO,
                            "the store holds %lld segments (last index %lld), the dataset has %lld",
                            (long long)n, (long long)maxidx, (long long)ref->segments);
    for (int64_t i = 0; i < n && !e; i++) {
        struct dcms_dataset_segment s;
        unsigned char *ct = NULL;
        e = ds_blob_store.get(tx, ref->id, i, &s, &ct, ei);
        if (!e && s.final != (i == n - 1))
            e = dcms_err_set(ei, DCMS_ERR_CRYPTO, "segment %lld has the wrong final flag",
                             (long long)i);
        if (!e)
            e = fn(ctx, &s, ei);
        free(ct);
    }
    return e;
}

enum dcms_err dcms_datasets_each_segment(struct dcms_app *app, const char *id,
                                         dcms_dataset_segment_fn fn, void *ctx,
                                         struct dcms_errinfo *ei)
{
    struct dcms_dataset_ref ref;
    struct dcms_store_tx *tx = NULL;
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_begin(app->store, DCMS_TX_READ, &tx, ei);
    if (e)
        return e;
    if (!(e = ds_load(tx, id, &rows, ei))) {
        fill_ref(rows, &ref);
        e = walk(tx, &ref, fn, ctx, ei);
    }
    dcms_store_rows_free(rows);
    dcms_store_rollback(tx);
    return e;
}

struct reader {
    const struct dcms_dataset_ref *ref;
    const struct dcms_dek *dek;
    struct dcms_sha256 sha;
    unsigned char *pt;
    dcms_dataset_plain_fn fn;
    void *ctx;
};

static enum dcms_err open_one(void *ctx, const struct dcms_dataset_segment *s,
                              struct dcms_errinfo *ei)
{
    struct reader *r = ctx;
    unsigned char aad[DCMS_DATASET_AAD_LEN];
    /* The final flag comes from the position the reader expects, not from the row. */
    size_t alen =
        dcms_datasets_segment_aad(r->ref->id, s->index, s->index == r->ref->segments - 1, aad);
    if (s->ct_len < DCMS_AEAD_TAG_LEN || s->ct_len - DCMS_AEAD_TAG_LEN > DCMS_DATASET_SEGMENT_BYTES)
        return dcms_err_set(ei, DCMS_ERR_CRYPTO, "segment %lld has a bad length",
                            (long long)s->index);
    size_t n = s->ct_len - DCMS_AEAD_TAG_LEN;
    if (dcms_aead_open(dcms_dek_bytes(r->dek), s->nonce, aad, alen, s->ct, s->ct_len, r->pt))
        return dcms_err_set(ei, DCMS_ERR_CRYPTO,
                            "segment %lld does not authenticate (tampered, moved or truncated)",
                            (long long)s->index);
    dcms_sha256_update(&r->sha, r->pt, n);
    enum dcms_err e = r->fn ? r->fn(r->ctx, r->pt, n, ei) : DCMS_OK;
    sodium_memzero(r->pt, n);
    return e;
}

enum dcms_err dcms_datasets_read(struct dcms_app *app, const char *id, dcms_dataset_plain_fn fn,
                                 void *ctx, unsigned char sha256[DCMS_SHA256_LEN],
                                 struct dcms_errinfo *ei)
{
    struct dcms_dataset_ref ref;
    struct dcms_store_tx *tx = NULL;
    struct dcms_store_rows *rows = NULL;
    struct dcms_dek *dek = NULL;
    struct reader r = {.ref = &ref, .fn = fn, .ctx = ctx};
    enum dcms_err e = dcms_store_begin(app->store, DCMS_TX_READ, &tx, ei);
    if (e)
        return e;
    if ((e = ds_load(tx, id, &rows, ei)))
        goto out;
    fill_ref(rows, &ref);
    if ((e = dcms_keys_dek_open(app->keys, tx, ref.dek_id, "dataset", &dek, ei)))
        goto out;
    r.dek = dek;
    r.pt = sodium_malloc(DCMS_DATASET_SEGMENT_BYTES + DCMS_AEAD_TAG_LEN);
    if (!r.pt) {
        e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
        goto out;
    }
    dcms_sha256_init(&r.sha);
    if ((e = walk(tx, &ref, open_one, &r, ei)))
        goto out;
    unsigned char d[DCMS_SHA256_LEN];
    char hex[65];
    dcms_sha256_final(&r.sha, d);
    dcms_hex_encode(hex, d, sizeof(d));
    if (strcmp(hex, ref.sha256) != 0) {
        e = dcms_err_set(ei, DCMS_ERR_CRYPTO, "the content hashes to %s, not the recorded %s", hex,
                         ref.sha256);
        goto out;
    }
    if (sha256)
        memcpy(sha256, d, sizeof(d));
out:
    if (r.pt)
        sodium_free(r.pt);
    dcms_dek_free(dek);
    dcms_store_rows_free(rows);
    dcms_store_rollback(tx);
    return e;
}

enum dcms_err ds_verify(const struct ds_call *c, const char *id, json_t **out)
{
    struct dcms_dataset_ref ref;
    enum dcms_err e = dcms_datasets_ref(c->app, id, &ref, c->ei);
    if (e)
        return e;
    if (!ds_owns(c->p, ref.provider_id) && !(c->p->roles & DCMS_ROLE_ADMIN))
        return dcms_err_set(c->ei, DCMS_ERR_NOT_FOUND, "dataset not found");
    struct dcms_errinfo rei;
    dcms_errinfo_init(&rei, NULL);
    int64_t t0 = dcms_clock_mono_us();
    enum dcms_err re = dcms_datasets_read(c->app, id, NULL, NULL, NULL, &rei);
    if (re && re != DCMS_ERR_CRYPTO && re != DCMS_ERR_CONFLICT)
        return dcms_err_set(c->ei, re, "%s", rei.message);
    bool ok = re == DCMS_OK;
    struct dcms_store_tx *tx = NULL;
    if ((e = dcms_store_begin(c->app->store, DCMS_TX_WRITE, &tx, c->ei)))
        return e;
    struct ds_call ac = *c;
    e = ds_audit(&ac, tx, "dataset.verify", id,
                 json_pack("{s:b, s:s}", "ok", ok, "problem", ok ? "" : rei.message));
    e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, c->ei);
    if (e)
        return e;
    *out = json_pack("{s:s, s:b, s:I, s:I, s:f}", "id", id, "ok", ok, "segments",
                     (json_int_t)ref.segments, "size", (json_int_t)ref.size, "seconds",
                     (double)(dcms_clock_mono_us() - t0) / 1e6);
    if (*out && !ok)
        json_object_set_new(*out, "problem", json_string(rei.message));
    return *out ? DCMS_OK : dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
}

/* ---- contracts ---- */

enum dcms_err dcms_datasets_check_for_contract(struct dcms_app *app, const char *provider_id,
                                               const char *const *entries, size_t n,
                                               struct dcms_errinfo *ei)
{
    for (size_t i = 0; i < n; i++) {
        if (!entries[i] || !dcms_uuid_valid(entries[i]))
            continue;
        struct dcms_dataset_ref ref;
        struct dcms_errinfo lei;
        dcms_errinfo_init(&lei, NULL);
        enum dcms_err e = dcms_datasets_ref(app, entries[i], &ref, &lei);
        char field[64];
        snprintf(field, sizeof(field), "terms.data_access.datasets[%zu]", i);
        if (e == DCMS_ERR_NOT_FOUND || (!e && strcmp(ref.provider_id, provider_id) != 0))
            dcms_err_field(ei, field, "must name a dataset of the contract's provider");
        else if (e)
            return dcms_err_set(ei, e, NULL);
        else if (strcmp(ref.status, "ready") != 0)
            dcms_err_field(ei, field, "names a dataset that is %s, not ready", ref.status);
    }
    return ei && ei->code ? ei->code : DCMS_OK;
}
