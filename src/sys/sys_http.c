/*
 * System routes. /healthz answers while the process runs; /readyz only when
 * the store answers too; /metrics is the Prometheus exposition;
 * /api/v1/system reads the applied migrations from the store;
 * /api/v1/canonicalize returns the RFC 8785 form of any JSON value and its
 * SHA-256, the same computation dcms uses for terms hashes, so clients can
 * check what they are about to sign.
 */
#include <stdlib.h>
#include <string.h>

#include "dcms/app.h"
#include "dcms/clock.h"
#include "dcms/crypto.h"
#include "dcms/jcs.h"
#include "dcms/enclaves.h"
#include "dcms/iam.h"
#include "dcms/metrics.h"
#include "dcms/store.h"
#include "http/handlers.h"

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
    if (dcms_store_read_only(req->app->store)) {
        /* Reads still work, writes fail for want of space: out of rotation until it passes. */
        json_t *d = json_pack("{s:s, s:s, s:s}", "status", "not_ready", "store", "read_only",
                              "backend", dcms_store_backend_name(req->app->store));
        if (!d || dcms_http_resp_json(resp, 503, d))
            return dcms_err_set(req->ei, DCMS_ERR_NOMEM, NULL);
        return dcms_http_resp_header(resp, "Retry-After", "5")
                   ? dcms_err_set(req->ei, DCMS_ERR_NOMEM, NULL)
                   : DCMS_OK;
    }
    json_t *v = json_pack("{s:s, s:s}", "status", "ready", "store",
                          dcms_store_backend_name(req->app->store));
    return dcms_http_resp_json(resp, 200, v) ? dcms_err_set(req->ei, DCMS_ERR_NOMEM, NULL)
                                             : DCMS_OK;
}

#define AGG_MAX 64
#define AGG_KEY_MAX 256

/* One series of an enclave metric with the enclave label taken out, summed over enclaves. */
struct agg_series {
    char key[AGG_KEY_MAX]; /* name{remaining labels} */
    double sum;
    unsigned n;
};

struct agg_family {
    struct agg_series s[AGG_MAX];
    size_t n;
};

/* `line` without its enclave="..." label; false when it has none or does not fit. */
static bool strip_enclave_label(const char *line, size_t len, char *key, size_t cap,
                                const char **value)
{
    const char *open = memchr(line, '{', len),
               *close = open ? memchr(open, '}', len - (size_t)(open - line)) : NULL;
    if (!open || !close)
        return false;
    const char *lbl = strstr(open, "enclave=\"");
    if (!lbl || lbl > close)
        return false;
    const char *end = memchr(lbl + 9, '"', (size_t)(close - (lbl + 9)));
    if (!end)
        return false;
    end++;
    if (*end == ',')
        end++;
    else if (lbl > open + 1 && lbl[-1] == ',')
        lbl--; /* the last label: drop the comma before it */
    int n = snprintf(key, cap, "%.*s%.*s", (int)(lbl - line), line, (int)(close + 1 - end), end);
    if (n < 0 || (size_t)n >= cap)
        return false;
    if (n >= 2 && key[n - 2] == '{' && key[n - 1] == '}')
        key[n - 2] = '\0'; /* no label left */
    *value = close + 1;
    return true;
}

static enum dcms_err agg_flush(struct agg_family *f, bool count, struct dcms_buf *out)
{
    enum dcms_err e = DCMS_OK;
    for (size_t i = 0; !e && i < f->n; i++)
        e = dcms_buf_appendf(out, "%s %.17g\n", f->s[i].key, f->s[i].sum);
    if (count && f->n && !e) {
        /* How many enclaves per status: the series of the first family, one per enclave. */
        e = dcms_buf_appendf(out, "# HELP dcms_enclaves Enclaves with a running or suspended "
                                  "workload, by status.\n# TYPE dcms_enclaves gauge\n");
        for (size_t i = 0; !e && i < f->n; i++) {
            const char *l = strchr(f->s[i].key, '{');
            e = dcms_buf_appendf(out, "dcms_enclaves%s %u\n", l ? l : "", f->s[i].n);
        }
    }
    f->n = 0;
    return e;
}

/*
 * The enclave metrics of `in` with every per-enclave series summed by its
 * other labels, so the exposition names no enclave, plus dcms_enclaves by
 * status. What an anonymous scraper of /metrics gets.
 */
static enum dcms_err aggregate_enclave_metrics(const struct dcms_buf *in, struct dcms_buf *out)
{
    struct agg_family *f = calloc(1, sizeof(*f));
    if (!f)
        return DCMS_ERR_NOMEM;
    enum dcms_err e = DCMS_OK;
    bool counted = false;
    const char *p = in->ptr ? in->ptr : "", *end = p + in->len;
    while (!e && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        char key[AGG_KEY_MAX];
        const char *val;
        if (len > 0 && p[0] == '#') {
            if (f->n) {
                e = agg_flush(f, !counted, out);
                counted = true;
            }
            if (!e)
                e = dcms_buf_appendf(out, "%.*s\n", (int)len, p);
        } else if (len > 0 && strip_enclave_label(p, len, key, sizeof(key), &val)) {
            double v = strtod(val, NULL);
            size_t i = 0;
            while (i < f->n && strcmp(f->s[i].key, key) != 0)
                i++;
            if (i == f->n && f->n < AGG_MAX)
                memcpy(f->s[f->n++].key, key, sizeof(key));
            if (i < f->n) {
                f->s[i].sum += v;
                f->s[i].n++;
            }
        } else if (len > 0) {
            e = dcms_buf_appendf(out, "%.*s\n", (int)len, p);
        }
        p += len + 1;
    }
    if (!e && f->n)
        e = agg_flush(f, !counted, out);
    free(f);
    return e;
}

/*
 * /metrics is public, for probes and scrapers, but names no object to a
 * caller who could not read it otherwise: per-enclave series (ids, status,
 * memory) only for a caller granted system:read (operators, admins, or an
 * API key scoped to it: the metrics token); everyone else gets them summed.
 */
enum dcms_err dcms_sys_metrics(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    struct dcms_buf b, enc;
    dcms_buf_init(&b, 4u << 20);
    dcms_buf_init(&enc, 4u << 20);
    struct dcms_iam_ctx ctx = {req->app->iam, req->client_ip};
    bool detail = req->principal &&
                  dcms_iam_authorize(req->principal, "system:read", NULL, &ctx, NULL) == DCMS_OK;
    enum dcms_err e = dcms_metrics_render(req->app->metrics, req->app->store, &b);
    if (!e && detail)
        e = dcms_enclaves_metrics_render(req->app->enclaves, &b);
    if (!e && !detail && !(e = dcms_enclaves_metrics_render(req->app->enclaves, &enc)))
        e = aggregate_enclave_metrics(&enc, &b);
    dcms_buf_release(&enc);
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
