/*
 * POST /api/v1/attestation/verify: {"document": base64, "policy": {...}}
 * answers 200 with the verification report whatever the verdict; a request
 * that cannot be understood answers 422 with a detail per bad field.
 *
 * The body is validated strictly: unknown keys are refused, the base64 text
 * is capped before it is decoded (standard alphabet, padding optional), hex
 * fields must be hex of an allowed length.
 */
#include "attestation/attest_int.h"
#include "dcms/app.h"
#include "dcms/arena.h"
#include "http/handlers.h"

#define DEFAULT_MAX_AGE_S 300
#define MAX_AGE_LIMIT_S (100LL * 365 * 86400)
/* Base64 of DCMS_ATTEST_MAX_DOC_BYTES, with padding. */
#define DOC_B64_MAX (((DCMS_ATTEST_MAX_DOC_BYTES + 2) / 3) * 4)

struct verify_req {
    unsigned char *doc; /* malloc'd */
    size_t doc_len;
    bool local_root;
    struct dcms_attest_policy pol;
    unsigned char nonce[DCMS_ATTEST_MAX_FIELD_BYTES];
};

static void parse_pcrs(json_t *o, struct verify_req *r, struct dcms_errinfo *ei)
{
    if (!json_is_object(o)) {
        dcms_err_field(ei, "policy.expected_pcrs", "must be an object of PCR index to hex");
        return;
    }
    const char *key;
    json_t *val;
    json_object_foreach(o, key, val)
    {
        char field[64];
        snprintf(field, sizeof(field), "policy.expected_pcrs.%.20s", key);
        size_t klen = strlen(key);
        unsigned idx = 0;
        bool key_ok = klen >= 1 && klen <= 2 && (klen == 1 || key[0] != '0');
        for (size_t i = 0; key_ok && i < klen; i++) {
            key_ok = key[i] >= '0' && key[i] <= '9';
            idx = idx * 10 + (unsigned)(key[i] - '0');
        }
        if (!key_ok || idx >= DCMS_ATTEST_MAX_PCRS) {
            dcms_err_field(ei, field, "PCR index must be 0..31");
            continue;
        }
        unsigned char v[DCMS_ATTEST_PCR_MAX_LEN];
        size_t n;
        const char *s = json_string_value(val);
        if (!s || !attest_unhex(s, json_string_length(val), v, sizeof(v), &n) ||
            dcms_attest_policy_expect_pcr(&r->pol, idx, v, n))
            dcms_err_field(ei, field, "must be 32, 48 or 64 bytes in hex");
        else if (dcms_attest_pcr_is_zero(v, n))
            dcms_err_field(ei, field,
                           "must not be all zeros: an all-zero PCR pins nothing (allow_debug "
                           "admits debug-mode documents)");
    }
}

static void parse_policy(json_t *o, struct verify_req *r, struct dcms_errinfo *ei)
{
    if (json_is_null(o))
        return;
    if (!json_is_object(o)) {
        dcms_err_field(ei, "policy", "must be an object");
        return;
    }
    const char *key;
    json_t *val;
    json_object_foreach(o, key, val)
    {
        if (strcmp(key, "max_age_seconds") == 0) {
            if (json_is_null(val)) {
                r->pol.max_age_ms = -1;
                r->pol.check_chain_at_now = false;
            } else if (json_is_integer(val) && json_integer_value(val) >= 0 &&
                       json_integer_value(val) <= MAX_AGE_LIMIT_S) {
                r->pol.max_age_ms = (int64_t)json_integer_value(val) * 1000;
            } else {
                dcms_err_field(ei, "policy.max_age_seconds",
                               "must be null or an integer from 0 to %lld", MAX_AGE_LIMIT_S);
            }
        } else if (strcmp(key, "allow_debug") == 0) {
            if (json_is_boolean(val))
                r->pol.allow_debug = json_is_true(val);
            else
                dcms_err_field(ei, "policy.allow_debug", "must be a boolean");
        } else if (strcmp(key, "expected_pcrs") == 0) {
            parse_pcrs(val, r, ei);
        } else if (strcmp(key, "nonce") == 0) {
            size_t n;
            const char *s = json_string_value(val);
            if (s && attest_unhex(s, json_string_length(val), r->nonce, sizeof(r->nonce), &n)) {
                r->pol.nonce = r->nonce;
                r->pol.nonce_len = n;
            } else {
                dcms_err_field(ei, "policy.nonce", "must be hex of at most 1024 bytes");
            }
        } else if (strcmp(key, "root") == 0) {
            const char *s = json_string_value(val);
            if (s && strcmp(s, "aws") == 0)
                r->local_root = false;
            else if (s && strcmp(s, "local") == 0)
                r->local_root = true;
            else
                dcms_err_field(ei, "policy.root", "must be \"aws\" or \"local\"");
        } else {
            char field[80];
            snprintf(field, sizeof(field), "policy.%.60s", key);
            dcms_err_field(ei, field, "unknown field");
        }
    }
}

static void parse_document(json_t *val, struct verify_req *r, struct dcms_errinfo *ei)
{
    const char *s = json_string_value(val);
    if (!s) {
        dcms_err_field(ei, "document", "must be a base64 string");
        return;
    }
    size_t n = json_string_length(val);
    if (n > DOC_B64_MAX) {
        dcms_err_field(ei, "document", "is longer than %u bytes once decoded",
                       DCMS_ATTEST_MAX_DOC_BYTES);
        return;
    }
    enum dcms_err e = attest_base64_decode(s, n, DCMS_ATTEST_MAX_DOC_BYTES, &r->doc, &r->doc_len);
    if (e == DCMS_ERR_NOMEM)
        dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    else if (e == DCMS_ERR_TOO_LARGE)
        dcms_err_field(ei, "document", "is longer than %u bytes once decoded",
                       DCMS_ATTEST_MAX_DOC_BYTES);
    else if (e)
        dcms_err_field(ei, "document",
                       "is not base64 (standard alphabet, padding optional, no whitespace)");
}

static enum dcms_err parse_request(json_t *in, struct verify_req *r, struct dcms_errinfo *ei)
{
    if (!json_is_object(in))
        return dcms_err_field(ei, "", "the body must be a JSON object");
    const char *key;
    json_t *val;
    json_object_foreach(in, key, val)
    {
        if (strcmp(key, "document") == 0) {
            parse_document(val, r, ei);
        } else if (strcmp(key, "policy") == 0) {
            parse_policy(val, r, ei);
        } else {
            char field[80];
            snprintf(field, sizeof(field), "%.60s", key);
            dcms_err_field(ei, field, "unknown field");
        }
    }
    if (!json_object_get(in, "document"))
        dcms_err_field(ei, "document", "is required");
    return ei->code;
}

static void free_cb(void *p)
{
    free(p);
}

enum dcms_err dcms_attest_http_verify(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    json_t *in;
    enum dcms_err e = dcms_http_req_json(req, 0, &in);
    if (e)
        return e;
    struct verify_req *r = dcms_arena_calloc(req->arena, 1, sizeof(*r));
    if (!r)
        return dcms_err_set(req->ei, DCMS_ERR_NOMEM, NULL);
    dcms_attest_policy_init(&r->pol);
    r->pol.max_age_ms = DEFAULT_MAX_AGE_S * 1000;
    e = parse_request(in, r, req->ei);
    if (r->doc && dcms_arena_defer(req->arena, free_cb, r->doc))
        return dcms_err_set(req->ei, DCMS_ERR_NOMEM, NULL);
    if (e)
        return e;
    const struct dcms_attest_ctx *ctx = req->app->attest;
    struct dcms_attest_verifier *v = ctx ? (r->local_root ? ctx->local : ctx->aws) : NULL;
    if (!v)
        return dcms_err_set(req->ei, DCMS_ERR_UNAVAILABLE, "the %s attestation root is not loaded",
                            r->local_root ? "local" : "aws");

    struct dcms_attest_report rep;
    if ((e = dcms_attest_verify(v, r->doc, r->doc_len, &r->pol, &rep)))
        return dcms_err_set(req->ei, e, NULL);
    json_t *out = dcms_attest_report_to_json(&rep);
    dcms_attest_report_release(&rep);
    if (!out)
        return dcms_err_set(req->ei, DCMS_ERR_NOMEM, NULL);
    return dcms_http_resp_json(resp, 200, out) ? dcms_err_set(req->ei, DCMS_ERR_NOMEM, NULL)
                                               : DCMS_OK;
}
