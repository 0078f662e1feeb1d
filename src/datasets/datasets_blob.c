/*
 * The blob interface's store backend: encrypted segments as BLOB / bytea
 * rows of dataset_segments, written in binary and read back as hex (the
 * store's rows are text). An object store (S3 and the like) would be a
 * second struct ds_blob_ops keyed by "<dataset id>/<index>".
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/datasets_int.h"
#include "dcms/store.h"

static struct dcms_query q_put =
    DCMS_QUERY("ds_seg_put", "INSERT INTO dataset_segments (dataset_id, idx, final, nonce, ct) "
                             "VALUES ($1, $2, $3, $4, $5)");
static struct dcms_query q_get =
    DCMS_QUERY2("ds_seg_get",
                "SELECT final, hex(nonce), hex(ct) FROM dataset_segments "
                "WHERE dataset_id = $1 AND idx = $2",
                "SELECT final, encode(nonce, 'hex'), encode(ct, 'hex') FROM dataset_segments "
                "WHERE dataset_id = $1 AND idx = $2");
static struct dcms_query q_count =
    DCMS_QUERY("ds_seg_count", "SELECT count(*), coalesce(max(idx), -1) FROM dataset_segments "
                               "WHERE dataset_id = $1");
static struct dcms_query q_remove =
    DCMS_QUERY("ds_seg_remove", "DELETE FROM dataset_segments WHERE dataset_id = $1 AND idx >= $2");

static enum dcms_err seg_put(struct dcms_store_tx *tx, const char *id, int64_t index, bool final,
                             const unsigned char nonce[DCMS_AEAD_NONCE_LEN],
                             const unsigned char *ct, size_t ct_len, struct dcms_errinfo *ei)
{
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(id), DCMS_VAL_INT(index), DCMS_VAL_INT(final),
                                 DCMS_VAL_BLOB(nonce, DCMS_AEAD_NONCE_LEN),
                                 DCMS_VAL_BLOB(ct, ct_len)};
    return dcms_store_exec(tx, &q_put, p, 5, NULL, NULL, ei);
}

static enum dcms_err seg_get(struct dcms_store_tx *tx, const char *id, int64_t index,
                             struct dcms_dataset_segment *out, unsigned char **ct_out,
                             struct dcms_errinfo *ei)
{
    struct dcms_store_rows *rows = NULL;
    unsigned char *ct = NULL;
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(id), DCMS_VAL_INT(index)};
    enum dcms_err e = dcms_store_exec(tx, &q_get, p, 2, &rows, NULL, ei);
    if (e)
        goto out;
    if (dcms_store_rows_count(rows) != 1) {
        e = dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "segment %lld is missing", (long long)index);
        goto out;
    }
    const char *nhex = dcms_store_rows_text(rows, 0, 1), *chex = dcms_store_rows_text(rows, 0, 2);
    size_t nlen = 0, clen = 0, chex_len = chex ? strlen(chex) : 0;
    ct = malloc(chex_len / 2 + 1);
    if (!ct) {
        e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
        goto out;
    }
    if (!nhex ||
        sodium_hex2bin(out->nonce, sizeof(out->nonce), nhex, strlen(nhex), NULL, &nlen, NULL) !=
            0 ||
        nlen != sizeof(out->nonce) ||
        sodium_hex2bin(ct, chex_len / 2 + 1, chex, chex_len, NULL, &clen, NULL) != 0) {
        e = dcms_err_set(ei, DCMS_ERR_CRYPTO, "segment %lld is malformed", (long long)index);
        goto out;
    }
    out->index = index;
    out->final = dcms_store_rows_int(rows, 0, 0) != 0;
    out->ct = ct;
    out->ct_len = clen;
    *ct_out = ct;
    ct = NULL;
out:
    free(ct);
    dcms_store_rows_free(rows);
    return e;
}

static enum dcms_err seg_count(struct dcms_store_tx *tx, const char *id, int64_t *n,
                               int64_t *max_index, struct dcms_errinfo *ei)
{
    struct dcms_store_rows *rows = NULL;
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(id)};
    enum dcms_err e = dcms_store_exec(tx, &q_count, p, 1, &rows, NULL, ei);
    if (!e) {
        *n = dcms_store_rows_int(rows, 0, 0);
        *max_index = dcms_store_rows_int(rows, 0, 1);
    }
    dcms_store_rows_free(rows);
    return e;
}

static enum dcms_err seg_remove_from(struct dcms_store_tx *tx, const char *id, int64_t from,
                                     struct dcms_errinfo *ei)
{
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(id), DCMS_VAL_INT(from)};
    return dcms_store_exec(tx, &q_remove, p, 2, NULL, NULL, ei);
}

const struct ds_blob_ops ds_blob_store = {seg_put, seg_get, seg_count, seg_remove_from};
