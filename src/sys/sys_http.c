/*
 * System routes. /healthz answers while the process runs; /readyz only when
 * the store answers too; /metrics is the Prometheus exposition;
 * /api/v1/system reads the applied migrations from the store;
 * /api/v1/canonicalize returns the RFC 8785 form of any JSON value and its
 * SHA-256, the same computation dcms uses for terms hashes, so clients can
 * check what they are about to sign.
 */
#include "dcms/app.h"
#include "dcms/clock.h"
#include "dcms/crypto.h"
#include "dcms/jcs.h"
#include "dcms/enclaves.h"
#include "dcms/metrics.h"
#include "dcms/store.h"
#include "sys/sys.h"

extern const char dcms_openapi_yaml[];
extern const size_t dcms_openapi_yaml_len;

#define CANONICAL_MAX_BYTES (4u << 20)

enum dcms_err dcms_sys_healthz(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    int64_t uptime_s = (dcms_clock_now_us() - req->app->started_us) / 1000000;
    json_t *v = json_pack("{s:s, s:s, s:I}", "status", "ok", "version", DCMS_VERSION, "uptime_s",
                          (json_int_t)uptime_s);
    return dcms_http_resp_json(resp, 200, v) ? dcms_err_set(req->ei, DCMS_ERR_NOMEM, NULL)
                                             : DCMS_OK;
}

enum dcms_err dcms_sys_readyz(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    enum dcms_err e = dcms_store_ping(req->app->store, req->ei);
    if (e)
        return dcms_err_set(req->ei, DCMS_ERR_UNAVAILABLE, "the store is not reachable");
    json_t *v = json_pack("{s:s, s:s}", "status", "ready", "store",
                          dcms_store_backend_name(req->app->store));
    return dcms_http_resp_json(resp, 200, v) ? dcms_err_set(req->ei, DCMS_ERR_NOMEM, NULL)
                                             : DCMS_OK;
}

enum dcms_err dcms_sys_metrics(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    struct dcms_buf b;
    dcms_buf_init(&b, 4u << 20);
    enum dcms_err e = dcms_metrics_render(req->app->metrics, req->app->store, &b);
    if (!e)
        e = dcms_enclaves_metrics_render(req->app->enclaves, &b);
    if (e) {
        dcms_buf_release(&b);
        return dcms_err_set(req->ei, e, NULL);
    }
    resp->status = 200;
    resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
    resp->body = dcms_buf_detach(&b, &resp->body_len);
    resp->body_owned = true;
    return DCMS_OK;
}

enum dcms_err dcms_sys_openapi(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    dcms_http_resp_static(resp, 200, "application/yaml; charset=utf-8", dcms_openapi_yaml,
                          dcms_openapi_yaml_len);
    return DCMS_OK;
}

static struct dcms_query q_migrations = DCMS_QUERY(
    "sys_migrations", "SELECT version, name, applied_at FROM schema_migrations ORDER BY version");

enum dcms_err dcms_sys_info(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_begin(req->app->store, DCMS_TX_READ, &tx, req->ei);
    if (e)
        return e;
    e = dcms_store_exec(tx, &q_migrations, NULL, 0, &rows, NULL, req->ei);
    dcms_store_rollback(tx); /* read-only: nothing to commit */
    if (e)
        return e;
    json_t *migs = json_array();
    json_int_t latest = 0;
    for (size_t i = 0; migs && i < dcms_store_rows_count(rows); i++) {
        latest = (json_int_t)dcms_store_rows_int(rows, i, 0);
        json_array_append_new(migs, json_pack("{s:I, s:s, s:s}", "version", latest, "name",
                                              dcms_store_rows_text(rows, i, 1), "applied_at",
                                              dcms_store_rows_text(rows, i, 2)));
    }
    dcms_store_rows_free(rows);
    json_t *v = json_pack("{s:s, s:{s:s, s:I, s:o}}", "version", DCMS_VERSION, "store", "backend",
                          dcms_store_backend_name(req->app->store), "schema_version", latest,
                          "migrations", migs);
    return dcms_http_resp_json(resp, 200, v) ? dcms_err_set(req->ei, DCMS_ERR_NOMEM, NULL)
                                             : DCMS_OK;
}

enum dcms_err dcms_sys_canonicalize(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    json_t *in;
    enum dcms_err e = dcms_http_req_json(req, JSON_DECODE_INT_AS_REAL, &in);
    if (e)
        return e;
    struct dcms_buf b;
    dcms_buf_init(&b, CANONICAL_MAX_BYTES);
    if ((e = dcms_jcs_canonicalize(in, &b, req->ei))) {
        dcms_buf_release(&b);
        return e;
    }
    unsigned char digest[32];
    char hex[65];
    if (dcms_digest_sha256(b.ptr, b.len, digest)) {
        dcms_buf_release(&b);
        return dcms_err_set(req->ei, DCMS_ERR_CRYPTO, NULL);
    }
    dcms_hex_encode(hex, digest, sizeof(digest));
    json_t *v = json_pack("{s:s%, s:s}", "canonical", b.ptr, b.len, "sha256", hex);
    dcms_buf_release(&b);
    return dcms_http_resp_json(resp, 200, v) ? dcms_err_set(req->ei, DCMS_ERR_NOMEM, NULL)
                                             : DCMS_OK;
}
