/*
 * Attestation codecs: the report as JSON (the shape of the API and the CLI),
 * and the small encoders the handler and the CLI share (hex, base64).
 */
#include <sodium.h>

#include "attestation/attest_int.h"

char *attest_hex(const unsigned char *p, size_t n)
{
    char *s = malloc(2 * n + 1);
    if (s)
        dcms_hex_encode(s, p, n);
    return s;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

bool attest_unhex(const char *s, size_t slen, unsigned char *out, size_t out_cap, size_t *out_len)
{
    if (slen % 2 || slen / 2 > out_cap)
        return false;
    for (size_t i = 0; i < slen; i += 2) {
        int hi = hexval(s[i]), lo = hexval(s[i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i / 2] = (unsigned char)(hi << 4 | lo);
    }
    *out_len = slen / 2;
    return true;
}

enum dcms_err attest_base64_decode(const char *s, size_t slen, size_t max, unsigned char **out,
                                   size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    /* Padding is optional (cape-js stores documents unpadded); when present it must be right. */
    if (slen % 4 == 0) {
        for (int i = 0; i < 2 && slen > 0 && s[slen - 1] == '='; i++)
            slen--;
    }
    if (slen == 0 || slen > (max / 3) * 4 + 4)
        return slen == 0 ? DCMS_ERR_VALIDATION : DCMS_ERR_TOO_LARGE;
    unsigned char *buf = malloc(slen / 4 * 3 + 3);
    if (!buf)
        return DCMS_ERR_NOMEM;
    size_t n = 0;
    const char *end = NULL;
    if (sodium_base642bin(buf, slen / 4 * 3 + 3, s, slen, NULL, &n, &end,
                          sodium_base64_VARIANT_ORIGINAL_NO_PADDING) != 0 ||
        end != s + slen) {
        free(buf);
        return DCMS_ERR_VALIDATION;
    }
    if (n > max) {
        free(buf);
        return DCMS_ERR_TOO_LARGE;
    }
    *out = buf;
    *out_len = n;
    return DCMS_OK;
}

/* A hex string, or JSON null when absent; NULL on OOM. */
static json_t *hex_or_null(bool has, struct dcms_attest_bytes b)
{
    if (!has)
        return json_null();
    char *h = attest_hex(b.ptr, b.len);
    json_t *v = h ? json_string(h) : NULL;
    free(h);
    return v;
}

static json_t *doc_to_json(const struct dcms_attest_doc *d)
{
    json_t *pcrs = json_object(), *bundle = json_array();
    json_t *o = NULL;
    if (!pcrs || !bundle)
        goto out;
    for (unsigned i = 0; i < DCMS_ATTEST_MAX_PCRS; i++) {
        if (!(d->pcr_mask & (1u << i)))
            continue;
        char key[4];
        snprintf(key, sizeof(key), "%u", i);
        if (json_object_set_new(pcrs, key, hex_or_null(true, d->pcrs[i])))
            goto out;
    }
    for (size_t i = 0; i < d->ncabundle; i++)
        if (json_array_append_new(bundle, hex_or_null(true, d->cabundle[i])))
            goto out;
    o = json_pack("{s:s, s:s, s:I, s:O, s:o, s:O, s:o, s:o, s:o}", "module_id", d->module_id,
                  "digest", "SHA384", "timestamp", (json_int_t)d->timestamp_ms, "pcrs", pcrs,
                  "certificate", hex_or_null(true, d->certificate), "cabundle", bundle,
                  "public_key", hex_or_null(d->has_public_key, d->public_key), "user_data",
                  hex_or_null(d->has_user_data, d->user_data), "nonce",
                  hex_or_null(d->has_nonce, d->nonce));
out:
    json_decref(pcrs);
    json_decref(bundle);
    return o;
}

json_t *dcms_attest_report_to_json(const struct dcms_attest_report *rep)
{
    json_t *checks = json_array();
    if (!checks)
        return NULL;
    for (size_t i = 0; i < rep->nchecks; i++) {
        const struct dcms_attest_check *c = &rep->checks[i];
        if (json_array_append_new(checks, json_pack("{s:s, s:b, s:s}", "name", c->name, "ok", c->ok,
                                                    "reason", c->reason))) {
            json_decref(checks);
            return NULL;
        }
    }
    const char *code = dcms_attest_failure_code(rep->failure);
    json_t *doc = rep->doc ? doc_to_json(rep->doc) : json_null();
    if (!doc) {
        json_decref(checks);
        return NULL;
    }
    return json_pack("{s:b, s:o, s:o, s:o}", "valid", rep->valid, "failure",
                     code ? json_string(code) : json_null(), "checks", checks, "document", doc);
}
