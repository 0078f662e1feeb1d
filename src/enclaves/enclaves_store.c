/*
 * Every query of the enclave service's tables (enclaves, enclave_images,
 * enclave_metric_samples) and the row codec. No query here names another
 * module's table: who may see an enclave is decided from its own row (the
 * consumer of its contract is copied onto it at bind time, migration 0008).
 */
#include "dcms/store.h"
#include "enclaves/enclaves_int.h"

#define COLS                                                                                       \
    "id, name, provider_id, contract_id, backend, status, status_reason, attestation, "            \
    "configuration, metrics, version, created_at, updated_at, image_sha384, expected_pcr0, "       \
    "runtime_ref, runtime_pid, started_at, attested_at, consumer_id, contract_hold, owner_node"

static struct dcms_query q_insert = DCMS_QUERY(
    "enclave_insert",
    "INSERT INTO enclaves (id, name, provider_id, contract_id, consumer_id, backend, status, "
    "configuration, metrics, created_at, updated_at, image_sha384, expected_pcr0, owner_node) "
    "VALUES ($1, $2, $3, $4, $5, $6, 'initializing', $7, '{}', $8, $8, $9, $10, $11)");
static struct dcms_query q_get =
    DCMS_QUERY("enclave_get", "SELECT " COLS " FROM enclaves WHERE id = $1");
static struct dcms_query q_update = DCMS_QUERY(
    "enclave_update",
    "UPDATE enclaves SET name = $2, contract_id = $3, status = $4, status_reason = $5, "
    "attestation = $6, configuration = $7, runtime_ref = $8, runtime_pid = $9, started_at = $10, "
    "attested_at = $11, updated_at = $12, consumer_id = $14, contract_hold = $15, "
    "version = version + 1 "
    "WHERE id = $1 AND version = $13");
static struct dcms_query q_list = DCMS_QUERY(
    "enclave_list", "SELECT " COLS " FROM enclaves "
                    "WHERE (CAST($1 AS TEXT) IS NULL OR status = $1) "
                    "AND (CAST($2 AS TEXT) IS NULL OR CAST(contract_id AS TEXT) = $2) "
                    "AND (CAST($3 AS TEXT) IS NULL OR CAST(provider_id AS TEXT) = $3) "
                    "AND (CAST($4 AS TEXT) IS NULL OR backend = $4) "
                    "AND ($5 = 1 OR CAST(provider_id AS TEXT) IN ($6, $7) "
                    "OR CAST(consumer_id AS TEXT) IN ($6, $7)) "
                    "AND (CAST($8 AS TEXT) IS NULL OR CAST(id AS TEXT) > $8) ORDER BY id LIMIT $9");
static struct dcms_query q_image_pin = DCMS_QUERY(
    "enclave_image_pin", "INSERT INTO enclave_images (name, sha384, registered_at, registered_by) "
                         "VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING");
static struct dcms_query q_image_get =
    DCMS_QUERY("enclave_image_get", "SELECT sha384 FROM enclave_images WHERE name = $1");
static struct dcms_query q_samples =
    DCMS_QUERY("enclave_samples",
               "SELECT at, cpu_time_ms, rss_bytes, peak_rss_bytes, uptime_ms, channel_bytes_in, "
               "channel_bytes_out, nprocs, notice FROM enclave_metric_samples WHERE enclave_id = "
               "$1 ORDER BY at DESC LIMIT "
               "60");
static struct dcms_query q_sample_insert = DCMS_QUERY(
    "enclave_sample_insert",
    "INSERT INTO enclave_metric_samples (enclave_id, at, cpu_time_ms, rss_bytes, peak_rss_bytes, "
    "uptime_ms, channel_bytes_in, channel_bytes_out, nprocs, notice) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)");
static struct dcms_query q_sample_prune = DCMS_QUERY(
    "enclave_sample_prune", "DELETE FROM enclave_metric_samples WHERE enclave_id = $1 AND at < "
                            "(SELECT at FROM enclave_metric_samples WHERE enclave_id = $1 "
                            "ORDER BY at DESC LIMIT 1 OFFSET 59)");
static struct dcms_query q_metrics_set =
    DCMS_QUERY("enclave_metrics_set", "UPDATE enclaves SET metrics = $2 WHERE id = $1 AND "
                                      "runtime_ref = $3 AND status IN ('running', 'suspended')");
static struct dcms_query q_active = DCMS_QUERY(
    "enclave_active",
    "SELECT id, status, runtime_ref, contract_id, contract_hold FROM enclaves WHERE backend = $1 "
    "AND (owner_node = $3 OR owner_node IS NULL OR CAST($3 AS TEXT) IS NULL) AND (status IN "
    "('running', 'suspended') OR ($2 = 1 AND status = 'initializing') OR "
    "(status = 'terminated' AND contract_hold IS NOT NULL)) ORDER BY id LIMIT 4096");
/* A lost node's enclaves that still claim to run (created before it was last seen). */
static struct dcms_query q_of_node = DCMS_QUERY(
    "enclave_of_node", "SELECT id FROM enclaves WHERE owner_node = $1 AND created_at <= $2 "
                       "AND status IN ('initializing', 'running', 'suspended') ORDER BY id "
                       "LIMIT 4096");
static struct dcms_query q_of_contract = DCMS_QUERY2(
    "enclave_of_contract",
    "SELECT id, status, contract_hold FROM enclaves WHERE contract_id = $1 "
    "ORDER BY id LIMIT 4096",
    "SELECT id, status, contract_hold FROM enclaves WHERE contract_id = CAST($1 AS UUID) "
    "ORDER BY id LIMIT 4096");

#define V(i) (r->v[i] ? DCMS_VAL_TEXT(r->v[i]) : DCMS_VAL_NULL)

void enclave_row_from(const struct dcms_store_rows *rows, size_t i, struct enclave_row *out)
{
    for (size_t j = 0; j < C__COUNT; j++)
        out->v[j] = dcms_store_rows_text(rows, i, j);
}

void enclave_rec_take(struct enclave_rec *out, struct dcms_store_rows **rows,
                      const struct enclave_row *r)
{
    out->rows = *rows;
    out->r = *r;
    *rows = NULL;
}

void enclave_rec_release(struct enclave_rec *rec)
{
    dcms_store_rows_free(rec->rows);
    *rec = (struct enclave_rec){0};
}

enum dcms_err enclave_store_load(struct dcms_store_tx *tx, const char *id,
                                 struct dcms_store_rows **rows, struct enclave_row *r,
                                 struct dcms_errinfo *ei)
{
    *rows = NULL;
    if (!id || !dcms_uuid_valid(id))
        return dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "enclave not found");
    enum dcms_err e = dcms_store_exec(tx, &q_get, (struct dcms_store_val[]){DCMS_VAL_TEXT(id)}, 1,
                                      rows, NULL, ei);
    if (e)
        return e;
    if (dcms_store_rows_count(*rows) != 1) {
        dcms_store_rows_free(*rows);
        *rows = NULL;
        return dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "enclave not found");
    }
    enclave_row_from(*rows, 0, r);
    return DCMS_OK;
}

enum dcms_err enclave_store_update(struct dcms_store_tx *tx, const struct enclave_row *r,
                                   const char *now, struct dcms_errinfo *ei)
{
    uint64_t n = 0;
    enum dcms_err e = dcms_store_exec(
        tx, &q_update,
        (struct dcms_store_val[]){
            V(C_ID), V(C_NAME), V(C_CONTRACT), V(C_STATUS), V(C_REASON), V(C_ATTEST), V(C_CONFIG),
            V(C_REF), r->v[C_PID] ? DCMS_VAL_INT(strtoll(r->v[C_PID], NULL, 10)) : DCMS_VAL_NULL,
            V(C_STARTED), V(C_ATTESTED), DCMS_VAL_TEXT(now),
            DCMS_VAL_INT(strtoll(r->v[C_VERSION], NULL, 10)), V(C_CONSUMER), V(C_HOLD)},
        15, NULL, &n, ei);
    if (!e && n != 1)
        return dcms_err_set(ei, DCMS_ERR_PRECONDITION_FAILED, "the enclave changed meanwhile");
    return e;
}

enum dcms_err enclave_store_insert(struct dcms_store_tx *tx, const struct enclave_row *r,
                                   const char *now, struct dcms_errinfo *ei)
{
    return dcms_store_exec(tx, &q_insert,
                           (struct dcms_store_val[]){V(C_ID), V(C_NAME), V(C_PROVIDER),
                                                     V(C_CONTRACT), V(C_CONSUMER), V(C_BACKEND),
                                                     V(C_CONFIG), DCMS_VAL_TEXT(now),
                                                     V(C_IMAGE_SHA), V(C_PCR0), V(C_OWNER)},
                           11, NULL, NULL, ei);
}

#undef V

enum dcms_err enclave_store_list(struct dcms_store_tx *tx, const struct enclave_list_in *in,
                                 bool all, const char *who, const char *org,
                                 struct dcms_store_rows **rows, struct dcms_errinfo *ei)
{
#define OPT(s) ((s) ? DCMS_VAL_TEXT(s) : DCMS_VAL_NULL)
    return dcms_store_exec(
        tx, &q_list,
        (struct dcms_store_val[]){OPT(in->status), OPT(in->contract_id), OPT(in->provider_id),
                                  OPT(in->backend), DCMS_VAL_INT(all ? 1 : 0), DCMS_VAL_TEXT(who),
                                  DCMS_VAL_TEXT(org), OPT(in->cursor), DCMS_VAL_INT(in->limit)},
        9, rows, NULL, ei);
#undef OPT
}

enum dcms_err enclave_store_pin_image(struct dcms_store_tx *tx, const char *name,
                                      const char *sha_hex, const char *now, const char *by,
                                      char *pinned, size_t cap, struct dcms_errinfo *ei)
{
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e =
        dcms_store_exec(tx, &q_image_pin,
                        (struct dcms_store_val[]){DCMS_VAL_TEXT(name), DCMS_VAL_TEXT(sha_hex),
                                                  DCMS_VAL_TEXT(now), DCMS_VAL_TEXT(by)},
                        4, NULL, NULL, ei);
    if (!e)
        e = dcms_store_exec(tx, &q_image_get, (struct dcms_store_val[]){DCMS_VAL_TEXT(name)}, 1,
                            &rows, NULL, ei);
    if (!e && dcms_store_rows_count(rows) == 1)
        snprintf(pinned, cap, "%s", dcms_store_rows_text(rows, 0, 0));
    else if (!e)
        e = dcms_err_set(ei, DCMS_ERR_INTERNAL, "the image measurement was not recorded");
    dcms_store_rows_free(rows);
    return e;
}

enum dcms_err enclave_store_put_sample(struct dcms_store_tx *tx, const char *id, const char *ref,
                                       const char *now, const char *latest_json,
                                       const struct dcms_enclave_probe *pr, bool *stored,
                                       struct dcms_errinfo *ei)
{
    uint64_t n = 0;
    *stored = false;
    enum dcms_err e =
        dcms_store_exec(tx, &q_metrics_set,
                        (struct dcms_store_val[]){DCMS_VAL_TEXT(id), DCMS_VAL_TEXT(latest_json),
                                                  DCMS_VAL_TEXT(ref)},
                        3, NULL, &n, ei);
    if (e || n != 1)
        return e;
    e = dcms_store_exec(tx, &q_sample_insert,
                        (struct dcms_store_val[]){
                            DCMS_VAL_TEXT(id), DCMS_VAL_TEXT(now), DCMS_VAL_INT(pr->cpu_time_ms),
                            DCMS_VAL_INT(pr->rss_bytes), DCMS_VAL_INT(pr->peak_rss_bytes),
                            DCMS_VAL_INT(pr->uptime_ms), DCMS_VAL_INT(pr->channel_bytes_in),
                            DCMS_VAL_INT(pr->channel_bytes_out), DCMS_VAL_INT(pr->nprocs),
                            pr->notice[0] ? DCMS_VAL_TEXT(pr->notice) : DCMS_VAL_NULL},
                        10, NULL, NULL, ei);
    if (!e)
        e = dcms_store_exec(tx, &q_sample_prune, (struct dcms_store_val[]){DCMS_VAL_TEXT(id)}, 1,
                            NULL, NULL, ei);
    *stored = !e;
    return e;
}

enum dcms_err enclave_store_samples(struct dcms_store_tx *tx, const char *id,
                                    struct dcms_store_rows **rows, struct dcms_errinfo *ei)
{
    return dcms_store_exec(tx, &q_samples, (struct dcms_store_val[]){DCMS_VAL_TEXT(id)}, 1, rows,
                           NULL, ei);
}

enum dcms_err enclave_store_active(struct dcms_store_tx *tx, const char *backend, const char *owner,
                                   bool all, struct dcms_store_rows **rows, struct dcms_errinfo *ei)
{
    return dcms_store_exec(tx, &q_active,
                           (struct dcms_store_val[]){DCMS_VAL_TEXT(backend),
                                                     DCMS_VAL_INT(all ? 1 : 0),
                                                     owner ? DCMS_VAL_TEXT(owner) : DCMS_VAL_NULL},
                           3, rows, NULL, ei);
}

enum dcms_err enclave_store_of_node(struct dcms_store_tx *tx, const char *node,
                                    const char *created_before, struct dcms_store_rows **rows,
                                    struct dcms_errinfo *ei)
{
    return dcms_store_exec(
        tx, &q_of_node,
        (struct dcms_store_val[]){DCMS_VAL_TEXT(node), DCMS_VAL_TEXT(created_before)}, 2, rows,
        NULL, ei);
}

enum dcms_err enclave_store_of_contract(struct dcms_store_tx *tx, const char *contract_id,
                                        struct dcms_store_rows **rows, struct dcms_errinfo *ei)
{
    return dcms_store_exec(tx, &q_of_contract,
                           (struct dcms_store_val[]){DCMS_VAL_TEXT(contract_id)}, 1, rows, NULL,
                           ei);
}
