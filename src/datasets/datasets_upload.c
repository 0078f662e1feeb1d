/*
 * The streamed upload (tus PATCH and plain PUT): bytes in, encrypted
 * segments out, never more than a few segments of plaintext in memory (the
 * tail and up to WRITER_QUEUE segments queued for the writer).
 *
 * A request claims the dataset (writer = its request id, a lease that
 * another request may take over after WRITER_LEASE_US without renewal; the
 * writer thread renews it every WRITER_RENEW_US for as long as the request
 * lives, so only a request that is gone, or a dcmsd that crashed, loses it),
 * restores the sealed resume state (the plaintext tail shorter than a
 * segment, the running SHA-256 and the CSV validator), and then for each
 * chunk: hashes it, validates it, and fills the tail; a full tail is queued
 * for the upload's writer thread, which seals it as segment i (not final) and
 * inserts it in a short transaction of its own that also checks the lease
 * (and renews it every WRITER_RENEW_US),
 * while the request thread hashes and validates the next segments (up to
 * WRITER_QUEUE queued: the request waits when the queue is full, and a
 * writer's error fails the request at its next segment or at its end).
 * At the end of the request, once the writer is idle:
 *   - an Upload-Checksum that does not match drops the segments this
 *     request wrote and answers 460; the offset does not move;
 *   - an upload that reached Upload-Length seals the tail as the final
 *     segment, finishes the hash and the validation and sets ready or
 *     invalid with the report;
 *   - otherwise the new offset and the sealed state are saved (HEAD then
 *     tells the client where to resume).
 * A request cut short (the client went away) keeps what it received when it
 * carried no checksum (tus: the server should keep partial data) and drops
 * it otherwise. Each of these endings is audited in its transaction.
 */
#include <pthread.h>
#include <sodium.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "datasets/datasets_int.h"
#include "dcms/app.h"
#include "dcms/arena.h"
#include "dcms/clock.h"
#include "dcms/config.h"
#include "dcms/iam.h"
#include "dcms/keys.h"
#include "dcms/log.h"
#include "dcms/store.h"
#include "dcms/str.h"

#define SEG DCMS_DATASET_SEGMENT_BYTES
/*
 * The writer lease, WRITER_LEASE_US (DCMS_DATASET_WRITER_LEASE_S): a
 * segment's transaction checks that the request still holds it, and renews
 * it when it is older than WRITER_RENEW_US, a quarter of it; an idle writer
 * (the client is slow, or paused) renews it on its own at the same pace.
 * After a crash a resume waits at most the lease (409 until then, which tus
 * clients retry).
 */
#define WRITER_LEASE_US(app) ((int64_t)(app)->cfg->dataset_writer_lease_s * 1000000)
#define WRITER_RENEW_US(app) (WRITER_LEASE_US(app) / 4)
#define STATE_MAGIC 0x64735331u /* "dsS1" */

/* The resume state, sealed under the DEK between requests (plaintext inside). */
struct ds_state {
    uint32_t magic;
    uint32_t tail_len;
    struct dcms_sha256 sha;
    struct ds_csv csv;
    unsigned char tail[SEG];
};

/*
 * The write-behind: up to WRITER_QUEUE segments handed over and not yet
 * stored, sealed and stored in order by the writer thread. A queue deeper
 * than one lets the two threads run at their own pace for a while (on two
 * cores, with the client on them too, neither keeps a steady one).
 */
#define WRITER_QUEUE 3
struct ds_writer {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool started, stop;
    unsigned head, count;               /* the queue: slots head .. head + count - 1 */
    int64_t index[WRITER_QUEUE];        /* segment number of plain[i] */
    uint32_t len[WRITER_QUEUE];         /* bytes in plain[i] */
    unsigned char *plain[WRITER_QUEUE]; /* sodium_malloc: plaintext of the queued segments */
    enum dcms_err err;                  /* the first failure; no more writes after it */
    char message[256];
};

struct ds_upload {
    struct dcms_app *app;
    struct dcms_arena *arena;
    char id[DCMS_UUID_STRLEN];
    char actor[DCMS_UUID_STRLEN];
    char request_id[130];
    char client_ip[64];
    struct ds_schema schema;
    char *expected_sha;
    int64_t expected_size;
    struct dcms_dek *dek;
    int64_t length, start_offset, offset, start_segments, segments;
    int64_t renewed_us; /* when the lease was last taken or renewed (the writer's) */
    bool put, has_checksum;
    unsigned char checksum[DCMS_SHA256_LEN];
    struct dcms_sha256 body_sum;
    struct ds_state *st; /* sodium_malloc */
    unsigned char *ct;   /* SEG + tag: the writer's, and the final segment's once it is idle */
    struct ds_writer w;
};

static struct dcms_query q_claim_load = DCMS_QUERY2(
    "ds_up_load",
    "SELECT provider_id, status, upload_length, upload_offset, segments, dek_id, schema, "
    "expected_size, expected_sha256, writer, writer_at FROM datasets WHERE id = $1",
    "SELECT provider_id, status, upload_length, upload_offset, segments, dek_id, schema, "
    "expected_size, expected_sha256, writer, writer_at FROM datasets WHERE id = $1 FOR UPDATE");
static struct dcms_query q_state_load = DCMS_QUERY2(
    "ds_up_state_load", "SELECT hex(state) FROM dataset_upload_state WHERE dataset_id = $1",
    "SELECT encode(state, 'hex') FROM dataset_upload_state WHERE dataset_id = $1");
static struct dcms_query q_state_save = DCMS_QUERY(
    "ds_up_state_save", "INSERT INTO dataset_upload_state (dataset_id, state) VALUES ($1, $2) "
                        "ON CONFLICT (dataset_id) DO UPDATE SET state = excluded.state");
static struct dcms_query q_state_drop =
    DCMS_QUERY("ds_up_state_drop", "DELETE FROM dataset_upload_state WHERE dataset_id = $1");
static struct dcms_query q_claim =
    DCMS_QUERY("ds_up_claim", "UPDATE datasets SET writer = $2, writer_at = $3, upload_length = $4 "
                              "WHERE id = $1");
static struct dcms_query q_renew =
    DCMS_QUERY("ds_up_renew", "UPDATE datasets SET writer_at = $3 WHERE id = $1 AND writer = $2");
static struct dcms_query q_holds =
    DCMS_QUERY("ds_up_holds", "SELECT count(*) FROM datasets WHERE id = $1 AND writer = $2");
static struct dcms_query q_save = DCMS_QUERY(
    "ds_up_save", "UPDATE datasets SET status = 'uploading', upload_offset = $3, segments = $4, "
                  "writer = NULL, writer_at = NULL, updated_at = $5, version = version + 1 "
                  "WHERE id = $1 AND writer = $2");
static struct dcms_query q_release = DCMS_QUERY(
    "ds_up_release", "UPDATE datasets SET writer = NULL, writer_at = NULL WHERE id = $1 AND "
                     "writer = $2");
static struct dcms_query q_complete =
    DCMS_QUERY("ds_up_complete",
               "UPDATE datasets SET status = $3, upload_offset = $4, segments = $5, sha256 = $6, "
               "row_count = $7, report = $8, writer = NULL, writer_at = NULL, "
               "updated_at = $9, version = version + 1 WHERE id = $1 AND writer = $2");
static struct dcms_query q_status = DCMS_QUERY(
    "ds_up_status", "SELECT provider_id, status, upload_offset, upload_length FROM datasets "
                    "WHERE id = $1");

static void now_text(char out[DCMS_TIME_STRLEN])
{
    dcms_time_format(dcms_clock_now_us(), out);
}

static struct ds_call call_of(const struct ds_upload *u, struct dcms_errinfo *ei,
                              struct dcms_principal *p)
{
    memset(p, 0, sizeof(*p));
    snprintf(p->id, sizeof(p->id), "%s", u->actor);
    return (struct ds_call){
        .app = u->app, .p = p, .ei = ei, .request_id = u->request_id, .client_ip = u->client_ip};
}

static size_t state_aad(const char *id, int64_t offset, unsigned char out[80])
{
    static const char tag[] = "dcms.dataset.state.v1";
    size_t n = sizeof(tag);
    memcpy(out, tag, n);
    memcpy(out + n, id, 36);
    n += 36;
    for (int i = 7; i >= 0; i--)
        out[n++] = (unsigned char)((uint64_t)offset >> (8 * i));
    return n;
}

/* Seals the state as nonce || ciphertext into *blob (malloc'd). */
static enum dcms_err seal_state(struct ds_upload *u, unsigned char **blob, size_t *blob_len,
                                struct dcms_errinfo *ei)
{
    size_t plen = offsetof(struct ds_state, tail) + u->st->tail_len;
    unsigned char aad[80];
    size_t alen = state_aad(u->id, u->offset, aad);
    unsigned char *b = malloc(DCMS_AEAD_NONCE_LEN + plen + DCMS_AEAD_TAG_LEN);
    if (!b)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    randombytes_buf(b, DCMS_AEAD_NONCE_LEN);
    if (dcms_aead_seal(dcms_dek_bytes(u->dek), b, aad, alen, u->st, plen,
                       b + DCMS_AEAD_NONCE_LEN)) {
        free(b);
        return dcms_err_set(ei, DCMS_ERR_CRYPTO, NULL);
    }
    *blob = b;
    *blob_len = DCMS_AEAD_NONCE_LEN + plen + DCMS_AEAD_TAG_LEN;
    return DCMS_OK;
}

static enum dcms_err open_state(struct ds_upload *u, const char *hex, struct dcms_errinfo *ei)
{
    size_t hlen = strlen(hex), blen = 0;
    unsigned char *b = malloc(hlen / 2 + 1);
    enum dcms_err e = DCMS_OK;
    if (!b)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    unsigned char aad[80];
    size_t alen = state_aad(u->id, u->offset, aad);
    size_t head = offsetof(struct ds_state, tail);
    if (sodium_hex2bin(b, hlen / 2 + 1, hex, hlen, NULL, &blen, NULL) != 0 ||
        blen < DCMS_AEAD_NONCE_LEN + head + DCMS_AEAD_TAG_LEN ||
        blen - DCMS_AEAD_NONCE_LEN - DCMS_AEAD_TAG_LEN > sizeof(struct ds_state) ||
        dcms_aead_open(dcms_dek_bytes(u->dek), b, aad, alen, b + DCMS_AEAD_NONCE_LEN,
                       blen - DCMS_AEAD_NONCE_LEN, (unsigned char *)u->st) ||
        u->st->magic != STATE_MAGIC || u->st->csv.version != DS_CSV_STATE_VERSION ||
        u->st->tail_len != blen - DCMS_AEAD_NONCE_LEN - DCMS_AEAD_TAG_LEN - head)
        e = dcms_err_set(ei, DCMS_ERR_CRYPTO, "the upload's resume state does not open");
    free(b);
    return e;
}

static void writer_stop(struct ds_upload *u);
static enum dcms_err writer_start(struct ds_upload *u, struct dcms_errinfo *ei);

static void upload_free(struct ds_upload *u)
{
    if (!u)
        return;
    writer_stop(u);
    for (int i = 0; i < WRITER_QUEUE; i++)
        if (u->w.plain[i])
            sodium_free(u->w.plain[i]);
    dcms_dek_free(u->dek);
    if (u->st)
        sodium_free(u->st);
    free(u->ct);
    dcms_arena_free(u->arena);
    sodium_memzero(u, sizeof(*u));
    free(u);
}

enum dcms_err ds_upload_status(const struct ds_call *c, const char *id,
                               struct ds_upload_status *out)
{
    struct dcms_store_tx *tx = NULL;
    struct dcms_store_rows *rows = NULL;
    if (!dcms_uuid_valid(id))
        return dcms_err_set(c->ei, DCMS_ERR_NOT_FOUND, "dataset not found");
    enum dcms_err e = dcms_store_begin(c->app->store, DCMS_TX_READ, &tx, c->ei);
    if (e)
        return e;
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(id)};
    if ((e = dcms_store_exec(tx, &q_status, p, 1, &rows, NULL, c->ei)))
        goto out;
    if (dcms_store_rows_count(rows) != 1 || !ds_owns(c->p, dcms_store_rows_text(rows, 0, 0))) {
        e = dcms_err_set(c->ei, DCMS_ERR_NOT_FOUND, "dataset not found");
        goto out;
    }
    snprintf(out->status, sizeof(out->status), "%s", dcms_store_rows_text(rows, 0, 1));
    out->offset = dcms_store_rows_int(rows, 0, 2);
    out->length = dcms_store_rows_is_null(rows, 0, 3) ? -1 : dcms_store_rows_int(rows, 0, 3);
out:
    dcms_store_rows_free(rows);
    dcms_store_rollback(tx);
    return e;
}

enum dcms_err ds_upload_begin(const struct ds_call *c, const char *id,
                              const struct ds_upload_in *in, struct ds_upload **out)
{
    struct dcms_store_tx *tx = NULL;
    struct dcms_store_rows *rows = NULL;
    struct ds_upload *u = NULL;
    enum dcms_err e;
    if (!dcms_uuid_valid(id))
        return dcms_err_set(c->ei, DCMS_ERR_NOT_FOUND, "dataset not found");
    u = calloc(1, sizeof(*u));
    if (!u)
        return dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
    u->arena = dcms_arena_new(4u << 20);
    u->st = sodium_malloc(sizeof(*u->st));
    u->ct = malloc(SEG + DCMS_AEAD_TAG_LEN);
    if (!u->arena || !u->st || !u->ct) {
        e = dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
        goto out;
    }
    u->app = c->app;
    snprintf(u->id, sizeof(u->id), "%s", id);
    snprintf(u->actor, sizeof(u->actor), "%s", c->p->id);
    snprintf(u->request_id, sizeof(u->request_id), "%s", c->request_id ? c->request_id : "");
    snprintf(u->client_ip, sizeof(u->client_ip), "%s", c->client_ip ? c->client_ip : "");
    u->put = in->put;
    u->has_checksum = in->has_checksum;
    memcpy(u->checksum, in->checksum, sizeof(u->checksum));
    dcms_sha256_init(&u->body_sum);

    if ((e = dcms_store_begin(c->app->store, DCMS_TX_WRITE, &tx, c->ei)))
        goto out;
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(id)};
    if ((e = dcms_store_exec(tx, &q_claim_load, p, 1, &rows, NULL, c->ei)))
        goto out;
    if (dcms_store_rows_count(rows) != 1 || !ds_owns(c->p, dcms_store_rows_text(rows, 0, 0))) {
        e = dcms_err_set(c->ei, DCMS_ERR_NOT_FOUND, "dataset not found");
        goto out;
    }
    const char *status = dcms_store_rows_text(rows, 0, 1);
    if (strcmp(status, "created") != 0 && strcmp(status, "uploading") != 0) {
        e = dcms_err_set(c->ei, DCMS_ERR_CONFLICT,
                         "the dataset is %s; its content cannot change (create a new dataset)",
                         status);
        goto out;
    }
    const char *writer_at = dcms_store_rows_text(rows, 0, 10);
    int64_t wat = 0;
    if (!dcms_store_rows_is_null(rows, 0, 9) && writer_at && !dcms_time_parse(writer_at, &wat) &&
        dcms_clock_now_us() - wat < WRITER_LEASE_US(c->app)) {
        e = dcms_err_set(c->ei, DCMS_ERR_CONFLICT, "another upload to this dataset is in progress");
        goto out;
    }
    int64_t stored_len = dcms_store_rows_is_null(rows, 0, 2) ? -1 : dcms_store_rows_int(rows, 0, 2);
    u->offset = u->start_offset = dcms_store_rows_int(rows, 0, 3);
    u->segments = u->start_segments = dcms_store_rows_int(rows, 0, 4);
    u->expected_size = dcms_store_rows_is_null(rows, 0, 7) ? -1 : dcms_store_rows_int(rows, 0, 7);
    if (!dcms_store_rows_is_null(rows, 0, 8))
        u->expected_sha = dcms_arena_strdup(u->arena, dcms_store_rows_text(rows, 0, 8));
    int64_t max = (int64_t)c->app->cfg->dataset_max_bytes;
    if (in->length >= 0 && stored_len >= 0 && in->length != stored_len) {
        e = dcms_err_field(c->ei, "Upload-Length", "must be %lld, the length given before",
                           (long long)stored_len);
        goto out;
    }
    u->length = stored_len >= 0 ? stored_len : in->length;
    if (u->length < 0) {
        e = dcms_err_field(c->ei, "Upload-Length", "is required on the first request");
        goto out;
    }
    if (u->length > max) {
        e = dcms_err_set(c->ei, DCMS_ERR_TOO_LARGE,
                         "the upload of %lld bytes exceeds the limit of %lld bytes",
                         (long long)u->length, (long long)max);
        goto out;
    }
    if (u->expected_size >= 0 && u->length != u->expected_size) {
        e = dcms_err_field(c->ei, "Upload-Length", "must be the expected_size, %lld",
                           (long long)u->expected_size);
        goto out;
    }
    if (in->put ? u->start_offset != 0 : in->offset != u->start_offset) {
        e = dcms_err_set(c->ei, DCMS_ERR_CONFLICT,
                         in->put ? "an upload has started already: resume it with PATCH at "
                                   "offset %lld"
                                 : "Upload-Offset must be %lld, where the upload stands",
                         (long long)u->start_offset);
        goto out;
    }
    if (in->body_length >= 0 && u->offset + in->body_length > u->length) {
        e = dcms_err_set(c->ei, DCMS_ERR_TOO_LARGE,
                         "the body goes past Upload-Length (%lld bytes from offset %lld)",
                         (long long)in->body_length, (long long)u->offset);
        goto out;
    }
    if ((e = dcms_keys_dek_open(c->app->keys, tx, dcms_store_rows_text(rows, 0, 5), "dataset",
                                &u->dek, c->ei)))
        goto out;
    json_t *sj = json_loads(dcms_store_rows_text(rows, 0, 6), 0, NULL);
    if (sj && dcms_arena_defer(u->arena, (void (*)(void *))json_decref, sj)) {
        json_decref(sj);
        sj = NULL;
    }
    struct dcms_errinfo sei;
    dcms_errinfo_init(&sei, NULL);
    if (!sj || ds_schema_from_json(u->arena, sj, &u->schema, &sei)) {
        e = dcms_err_set(c->ei, DCMS_ERR_INTERNAL, NULL);
        goto out;
    }
    dcms_store_rows_free(rows);
    rows = NULL;
    if ((e = dcms_store_exec(tx, &q_state_load, p, 1, &rows, NULL, c->ei)))
        goto out;
    if (dcms_store_rows_count(rows) == 1) {
        if ((e = open_state(u, dcms_store_rows_text(rows, 0, 0), c->ei)))
            goto out;
    } else {
        u->st->magic = STATE_MAGIC;
        u->st->tail_len = 0;
        dcms_sha256_init(&u->st->sha);
        ds_csv_init(&u->st->csv);
    }
    char now[DCMS_TIME_STRLEN];
    u->renewed_us = dcms_clock_now_us();
    dcms_time_format(u->renewed_us, now);
    struct dcms_store_val cp[] = {DCMS_VAL_TEXT(id), DCMS_VAL_TEXT(u->request_id),
                                  DCMS_VAL_TEXT(now), DCMS_VAL_INT(u->length)};
    if ((e = dcms_store_exec(tx, &q_claim, cp, 4, NULL, NULL, c->ei)))
        goto out;
    /* A request that ended without saving its state (dcmsd stopped or crashed mid-upload)
     * may have left segments past the saved count: they would collide with the ones this
     * request writes, and the bytes they hold will be sent again. */
    e = ds_blob_store.remove_from(tx, u->id, u->start_segments, c->ei);
out:
    dcms_store_rows_free(rows);
    if (tx)
        e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, c->ei);
    if (!e && (e = writer_start(u, c->ei))) {
        struct dcms_errinfo lei;
        dcms_errinfo_init(&lei, NULL);
        struct dcms_store_tx *rtx = NULL;
        struct dcms_store_val rp[] = {DCMS_VAL_TEXT(id), DCMS_VAL_TEXT(u->request_id)};
        if (!dcms_store_begin(c->app->store, DCMS_TX_WRITE, &rtx, &lei)) {
            if (dcms_store_exec(rtx, &q_release, rp, 2, NULL, NULL, &lei))
                dcms_store_rollback(rtx);
            else if (dcms_store_commit(rtx, &lei))
                DCMS_LOG(DCMS_LOG_WARN, "datasets", "dataset %s: cannot release the claim", id);
        }
    }
    if (e)
        upload_free(u);
    else
        *out = u;
    return e;
}

static enum dcms_err seal_segment(struct ds_upload *u, int64_t index, bool final,
                                  const unsigned char *plain, size_t len, unsigned char nonce[12],
                                  struct dcms_errinfo *ei)
{
    unsigned char aad[DCMS_DATASET_AAD_LEN];
    size_t alen = dcms_datasets_segment_aad(u->id, index, final, aad);
    randombytes_buf(nonce, DCMS_AEAD_NONCE_LEN);
    if (dcms_aead_seal(dcms_dek_bytes(u->dek), nonce, aad, alen, plain, len, u->ct))
        return dcms_err_set(ei, DCMS_ERR_CRYPTO, NULL);
    return DCMS_OK;
}

/* Seals the queued segment in slot k and stores it in a transaction that checks the lease. */
static enum dcms_err write_segment(struct ds_upload *u, unsigned k, struct dcms_errinfo *ei)
{
    unsigned char nonce[DCMS_AEAD_NONCE_LEN];
    struct dcms_store_tx *tx = NULL;
    enum dcms_err e = seal_segment(u, u->w.index[k], false, u->w.plain[k], u->w.len[k], nonce, ei);
    if (e)
        return e;
    if ((e = dcms_store_begin(u->app->store, DCMS_TX_WRITE, &tx, ei)))
        return e;
    e = ds_blob_store.put(tx, u->id, u->w.index[k], false, nonce, u->ct,
                          u->w.len[k] + DCMS_AEAD_TAG_LEN, ei);
    if (!e) {
        char now[DCMS_TIME_STRLEN];
        int64_t t = dcms_clock_now_us();
        dcms_time_format(t, now);
        bool renew = t - u->renewed_us >= WRITER_RENEW_US(u->app);
        uint64_t affected = 0;
        struct dcms_store_rows *rows = NULL;
        struct dcms_store_val p[] = {DCMS_VAL_TEXT(u->id), DCMS_VAL_TEXT(u->request_id),
                                     DCMS_VAL_TEXT(now)};
        if (renew)
            e = dcms_store_exec(tx, &q_renew, p, 3, NULL, &affected, ei);
        else if (!(e = dcms_store_exec(tx, &q_holds, p, 2, &rows, NULL, ei)))
            affected = (uint64_t)dcms_store_rows_int(rows, 0, 0);
        dcms_store_rows_free(rows);
        if (!e && affected != 1)
            e = dcms_err_set(ei, DCMS_ERR_CONFLICT, "the upload was taken over by another request");
        if (!e && renew)
            u->renewed_us = t;
    }
    return e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, ei);
}

/* Renews the lease of a writer with nothing to write; CONFLICT once another request took it. */
static enum dcms_err renew_idle(struct ds_upload *u, struct dcms_errinfo *ei)
{
    struct dcms_store_tx *tx = NULL;
    enum dcms_err e = dcms_store_begin(u->app->store, DCMS_TX_WRITE, &tx, ei);
    if (e)
        return e;
    char now[DCMS_TIME_STRLEN];
    int64_t t = dcms_clock_now_us();
    dcms_time_format(t, now);
    uint64_t affected = 0;
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(u->id), DCMS_VAL_TEXT(u->request_id),
                                 DCMS_VAL_TEXT(now)};
    if (!(e = dcms_store_exec(tx, &q_renew, p, 3, NULL, &affected, ei)) && affected != 1)
        e = dcms_err_set(ei, DCMS_ERR_CONFLICT, "the upload was taken over by another request");
    if ((e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, ei)))
        return e;
    u->renewed_us = t;
    return DCMS_OK;
}

static void *writer_main(void *arg)
{
    struct ds_upload *u = arg;
    pthread_mutex_lock(&u->w.mu);
    for (;;) {
        while (!u->w.count && !u->w.stop) {
            /* renewed_us is the wall clock the lease is written in; the wait is monotonic */
            int64_t due = u->renewed_us + WRITER_RENEW_US(u->app) - dcms_clock_now_us();
            if (due <= 0) {
                if (u->w.err)
                    due = WRITER_RENEW_US(u->app); /* lost: nothing left to renew */
                else {
                    pthread_mutex_unlock(&u->w.mu);
                    struct dcms_errinfo ei;
                    dcms_errinfo_init(&ei, NULL);
                    enum dcms_err e = renew_idle(u, &ei);
                    pthread_mutex_lock(&u->w.mu);
                    if (e && !u->w.err) {
                        u->w.err = e;
                        snprintf(u->w.message, sizeof(u->w.message), "%s", ei.message);
                    }
                    continue;
                }
            }
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            int64_t ns = (int64_t)ts.tv_nsec + (due % 1000000) * 1000;
            ts.tv_sec += (time_t)(due / 1000000 + ns / 1000000000);
            ts.tv_nsec = (long)(ns % 1000000000);
            pthread_cond_timedwait(&u->w.cv, &u->w.mu, &ts);
        }
        if (!u->w.count)
            break;
        unsigned k = u->w.head;
        bool failed = u->w.err != DCMS_OK; /* after a failure the rest is dropped, not written */
        pthread_mutex_unlock(&u->w.mu);
        struct dcms_errinfo ei;
        dcms_errinfo_init(&ei, NULL);
        enum dcms_err e = failed ? DCMS_OK : write_segment(u, k, &ei);
        sodium_memzero(u->w.plain[k], u->w.len[k]);
        pthread_mutex_lock(&u->w.mu);
        if (e && !u->w.err) {
            u->w.err = e;
            snprintf(u->w.message, sizeof(u->w.message), "%s", ei.message);
        }
        u->w.head = (u->w.head + 1) % WRITER_QUEUE;
        u->w.count--;
        pthread_cond_broadcast(&u->w.cv);
    }
    pthread_mutex_unlock(&u->w.mu);
    return NULL;
}

static enum dcms_err writer_start(struct ds_upload *u, struct dcms_errinfo *ei)
{
    for (int i = 0; i < WRITER_QUEUE; i++)
        if (!(u->w.plain[i] = sodium_malloc(SEG)))
            return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    pthread_mutex_init(&u->w.mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&u->w.cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&u->w.thread, NULL, writer_main, u) != 0) {
        pthread_mutex_destroy(&u->w.mu);
        pthread_cond_destroy(&u->w.cv);
        return dcms_err_set(ei, DCMS_ERR_INTERNAL, "cannot start the upload's writer");
    }
    u->w.started = true;
    return DCMS_OK;
}

/* Waits until at most `queued` segments are queued; answers the writer's first failure, if any. */
static enum dcms_err writer_wait(struct ds_upload *u, unsigned queued, struct dcms_errinfo *ei)
{
    if (!u->w.started)
        return DCMS_OK;
    pthread_mutex_lock(&u->w.mu);
    while (u->w.count > queued)
        pthread_cond_wait(&u->w.cv, &u->w.mu);
    enum dcms_err e = u->w.err;
    pthread_mutex_unlock(&u->w.mu);
    return e ? dcms_err_set(ei, e, "%s", u->w.message) : DCMS_OK;
}

static void writer_stop(struct ds_upload *u)
{
    if (!u->w.started)
        return;
    pthread_mutex_lock(&u->w.mu);
    u->w.stop = true;
    pthread_cond_broadcast(&u->w.cv);
    pthread_mutex_unlock(&u->w.mu);
    pthread_join(u->w.thread, NULL);
    pthread_mutex_destroy(&u->w.mu);
    pthread_cond_destroy(&u->w.cv);
    u->w.started = false;
}

/* Waits until no segment is queued; answers the writer's first failure, if any. */
static enum dcms_err writer_idle(struct ds_upload *u, struct dcms_errinfo *ei)
{
    return writer_wait(u, 0, ei);
}

/* Hands the full tail to the writer as the next (non-final) segment. */
static enum dcms_err flush_segment(struct ds_upload *u, struct dcms_errinfo *ei)
{
    enum dcms_err e = writer_wait(u, WRITER_QUEUE - 1, ei);
    if (e)
        return e;
    pthread_mutex_lock(&u->w.mu);
    /* the slot is the writer's only once counted: filled under the lock it is not reading */
    unsigned k = (u->w.head + u->w.count) % WRITER_QUEUE;
    memcpy(u->w.plain[k], u->st->tail, u->st->tail_len);
    u->w.len[k] = u->st->tail_len;
    u->w.index[k] = u->segments;
    u->w.count++;
    pthread_cond_broadcast(&u->w.cv);
    pthread_mutex_unlock(&u->w.mu);
    u->segments++;
    u->st->tail_len = 0;
    return DCMS_OK;
}

enum dcms_err ds_upload_data(struct ds_upload *u, const void *data, size_t n,
                             struct dcms_errinfo *ei)
{
    const unsigned char *p = data;
    if ((uint64_t)n > (uint64_t)(u->length - u->offset))
        return dcms_err_set(ei, DCMS_ERR_TOO_LARGE, "the body goes past Upload-Length (%lld bytes)",
                            (long long)u->length);
    if (u->has_checksum)
        dcms_sha256_update(&u->body_sum, p, n);
    while (n) {
        /* A full tail is flushed only when more bytes come, so the last segment is the final one.
         */
        if (u->st->tail_len == SEG) {
            enum dcms_err e = flush_segment(u, ei);
            if (e)
                return e;
        }
        size_t k = SEG - u->st->tail_len;
        if (k > n)
            k = n;
        dcms_sha256_update(&u->st->sha, p, k);
        ds_csv_feed(&u->st->csv, &u->schema, p, k);
        memcpy(u->st->tail + u->st->tail_len, p, k);
        u->st->tail_len += (uint32_t)k;
        u->offset += (int64_t)k;
        p += k;
        n -= k;
    }
    return DCMS_OK;
}

/* Drops what this request wrote and releases the claim; audited. */
static enum dcms_err discard(struct ds_upload *u, const char *reason, struct dcms_errinfo *ei)
{
    struct dcms_principal pr;
    struct ds_call c = call_of(u, ei, &pr);
    struct dcms_store_tx *tx = NULL;
    enum dcms_err e = dcms_store_begin(u->app->store, DCMS_TX_WRITE, &tx, ei);
    if (e)
        return e;
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(u->id), DCMS_VAL_TEXT(u->request_id)};
    if (!(e = ds_blob_store.remove_from(tx, u->id, u->start_segments, ei)) &&
        !(e = dcms_store_exec(tx, &q_release, p, 2, NULL, NULL, ei)))
        e = ds_audit(&c, tx, "dataset.upload_refused", u->id,
                     json_pack("{s:s, s:I, s:I}", "reason", reason, "offset",
                               (json_int_t)u->start_offset, "bytes_dropped",
                               (json_int_t)(u->offset - u->start_offset)));
    return e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, ei);
}

/* Saves the offset and the sealed resume state; audited. */
static enum dcms_err save_partial(struct ds_upload *u, struct dcms_errinfo *ei)
{
    struct dcms_principal pr;
    struct ds_call c = call_of(u, ei, &pr);
    unsigned char *blob = NULL;
    size_t blob_len = 0;
    struct dcms_store_tx *tx = NULL;
    enum dcms_err e = seal_state(u, &blob, &blob_len, ei);
    if (e)
        return e;
    if ((e = dcms_store_begin(u->app->store, DCMS_TX_WRITE, &tx, ei)))
        goto out;
    char now[DCMS_TIME_STRLEN];
    now_text(now);
    uint64_t affected = 0;
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(u->id), DCMS_VAL_TEXT(u->request_id),
                                 DCMS_VAL_INT(u->offset), DCMS_VAL_INT(u->segments),
                                 DCMS_VAL_TEXT(now)};
    e = dcms_store_exec(tx, &q_save, p, 5, NULL, &affected, ei);
    if (!e && affected != 1)
        e = dcms_err_set(ei, DCMS_ERR_CONFLICT, "the upload was taken over by another request");
    struct dcms_store_val sp[] = {DCMS_VAL_TEXT(u->id), DCMS_VAL_BLOB(blob, blob_len)};
    if (!e)
        e = dcms_store_exec(tx, &q_state_save, sp, 2, NULL, NULL, ei);
    if (!e)
        e = ds_audit(&c, tx, "dataset.upload", u->id,
                     json_pack("{s:I, s:I, s:I}", "from", (json_int_t)u->start_offset, "to",
                               (json_int_t)u->offset, "length", (json_int_t)u->length));
    e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, ei);
out:
    free(blob);
    return e;
}

static json_t *report_json(const struct ds_csv *v, json_t *extra)
{
    json_t *probs = json_array();
    for (size_t i = 0; probs && i < v->nproblems; i++)
        json_array_append_new(probs,
                              json_pack("{s:I, s:s}", "line", (json_int_t)v->problems[i].line,
                                        "problem", v->problems[i].message));
    size_t i;
    json_t *x;
    json_array_foreach(extra, i, x) json_array_append(probs, x);
    return json_pack("{s:b, s:I, s:I, s:o}", "valid",
                     v->problems_total == 0 && json_array_size(extra) == 0, "rows",
                     (json_int_t)v->rows, "problems_total",
                     (json_int_t)(v->problems_total + (int64_t)json_array_size(extra)), "problems",
                     probs ? probs : json_array());
}

/* The upload reached its length: final segment, hash, validation, status. */
static enum dcms_err complete(struct ds_upload *u, struct dcms_errinfo *ei, bool *valid)
{
    struct dcms_principal pr;
    struct ds_call c = call_of(u, ei, &pr);
    unsigned char nonce[DCMS_AEAD_NONCE_LEN], d[DCMS_SHA256_LEN];
    char hex[65], now[DCMS_TIME_STRLEN];
    struct dcms_store_tx *tx = NULL;
    char *report_text = NULL;
    json_t *extra = json_array(), *report = NULL;
    enum dcms_err e = seal_segment(u, u->segments, true, u->st->tail, u->st->tail_len, nonce, ei);
    if (e)
        goto out;
    dcms_sha256_final(&u->st->sha, d);
    dcms_hex_encode(hex, d, sizeof(d));
    ds_csv_finish(&u->st->csv, &u->schema);
    if (u->expected_sha && strcmp(u->expected_sha, hex) != 0)
        json_array_append_new(extra,
                              json_pack("{s:n, s:s}", "line", "problem",
                                        "the content's SHA-256 differs from expected_sha256"));
    report = report_json(&u->st->csv, extra);
    report_text = report ? json_dumps(report, JSON_COMPACT) : NULL;
    if (!report_text) {
        e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
        goto out;
    }
    *valid = json_is_true(json_object_get(report, "valid"));
    if ((e = dcms_store_begin(u->app->store, DCMS_TX_WRITE, &tx, ei)))
        goto out;
    if ((e = ds_blob_store.put(tx, u->id, u->segments, true, nonce, u->ct,
                               u->st->tail_len + DCMS_AEAD_TAG_LEN, ei)))
        goto out;
    now_text(now);
    uint64_t affected = 0;
    struct dcms_store_val p[] = {
        DCMS_VAL_TEXT(u->id),
        DCMS_VAL_TEXT(u->request_id),
        DCMS_VAL_TEXT(*valid ? "ready" : "invalid"),
        DCMS_VAL_INT(u->offset),
        DCMS_VAL_INT(u->segments + 1),
        DCMS_VAL_TEXT(hex),
        DCMS_VAL_INT(u->st->csv.rows),
        DCMS_VAL_TEXT(report_text),
        DCMS_VAL_TEXT(now),
    };
    if ((e = dcms_store_exec(tx, &q_complete, p, 9, NULL, &affected, ei)))
        goto out;
    if (affected != 1) {
        e = dcms_err_set(ei, DCMS_ERR_CONFLICT, "the upload was taken over by another request");
        goto out;
    }
    if ((e = dcms_store_exec(tx, &q_state_drop, p, 1, NULL, NULL, ei)))
        goto out;
    e = ds_audit(
        &c, tx, *valid ? "dataset.ready" : "dataset.invalid", u->id,
        json_pack("{s:I, s:I, s:s, s:I, s:I}", "size", (json_int_t)u->offset, "segments",
                  (json_int_t)(u->segments + 1), "sha256", hex, "rows", (json_int_t)u->st->csv.rows,
                  "problems_total",
                  (json_int_t)json_integer_value(json_object_get(report, "problems_total"))));
out:
    if (tx)
        e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, ei);
    if (!e)
        u->segments++;
    free(report_text);
    json_decref(report);
    json_decref(extra);
    return e;
}

enum dcms_err ds_upload_end(struct ds_upload *u, struct dcms_errinfo *ei,
                            struct ds_upload_status *out)
{
    enum dcms_err e = writer_idle(u, ei);
    if (e)
        goto out;
    if (u->has_checksum) {
        unsigned char d[DCMS_SHA256_LEN];
        dcms_sha256_final(&u->body_sum, d);
        if (sodium_memcmp(d, u->checksum, sizeof(d)) != 0) {
            e = discard(u, "checksum mismatch", ei);
            if (!e)
                e = dcms_err_set(ei, DCMS_ERR_CHECKSUM_MISMATCH,
                                 "the body does not match its Upload-Checksum; the upload stays "
                                 "at offset %lld",
                                 (long long)u->start_offset);
            goto out;
        }
    }
    bool valid = false;
    if (u->offset == u->length)
        e = complete(u, ei, &valid);
    else
        e = save_partial(u, ei);
    if (!e) {
        out->offset = u->offset;
        out->length = u->length;
        snprintf(out->status, sizeof(out->status), "%s",
                 u->offset == u->length ? (valid ? "ready" : "invalid") : "uploading");
    }
out:
    if (e && e != DCMS_ERR_CHECKSUM_MISMATCH) {
        struct dcms_errinfo lei;
        dcms_errinfo_init(&lei, NULL);
        if (discard(u, "store failure", &lei))
            DCMS_LOG(DCMS_LOG_WARN, "datasets", "dataset %s: cannot release the upload", u->id);
    }
    upload_free(u);
    return e;
}

void ds_upload_abort(struct ds_upload *u)
{
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    bool lost = writer_idle(u, &ei) != DCMS_OK; /* a segment did not reach the store */
    enum dcms_err e = lost || u->has_checksum || u->offset == u->start_offset
                          ? discard(u, "request ended early", &ei)
                          : save_partial(u, &ei);
    if (e)
        DCMS_LOG(DCMS_LOG_WARN, "datasets", "dataset %s: ending an interrupted upload failed: %s",
                 u->id, dcms_err_slug(e));
    upload_free(u);
}
