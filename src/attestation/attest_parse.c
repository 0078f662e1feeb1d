/*
 * Decoding an AWS Nitro attestation document (checklist steps 1-9, see README.md):
 * size cap, one well-formed CBOR item, the COSE_Sign1 envelope, the
 * protected header (ES384) and the payload map with its mandatory and
 * optional fields. No cryptography happens here.
 *
 * libcbor builds the trees, but it is only called after our own scan
 * (attest_cbor_scan) has proved the bytes are exactly one well-formed item
 * whose declared lengths fit in the input: libcbor 0.8 would otherwise
 * allocate whatever a hostile header declares, and it neither reports
 * trailing bytes reliably nor rejects duplicate map keys (we walk maps
 * ourselves for that).
 */
#include <cbor.h>

#include "attestation/attest_int.h"

#define SCAN_MAX_DEPTH 16
#define PAYLOAD_MAX_ENTRIES 64
#define COSE_TAG_SIGN1 18
#define COSE_ALG_ES384 (-35)

/*
 * A decoded document as the parser allocates it: the public struct first,
 * then the decoded CBOR trees its byte views point into (the COSE_Sign1
 * array and the payload map), released by dcms_attest_doc_free().
 */
struct attest_doc_impl {
    struct dcms_attest_doc pub;
    cbor_item_t *items[2];
};

static struct attest_doc_impl *doc_impl(struct dcms_attest_doc *d)
{
    return (struct attest_doc_impl *)((char *)d - offsetof(struct attest_doc_impl, pub));
}

const char *const attest_parse_checks[] = {"size", "cbor", "cose_sign1", "protected_header",
                                           "payload"};
const size_t attest_parse_nchecks = sizeof(attest_parse_checks) / sizeof(attest_parse_checks[0]);

size_t attest_cbor_head(unsigned char out[9], unsigned major, uint64_t v)
{
    unsigned char mt = (unsigned char)(major << 5);
    size_t n;
    if (v < 24) {
        out[0] = (unsigned char)(mt | v);
        return 1;
    }
    if (v <= 0xff) {
        out[0] = mt | 24;
        n = 1;
    } else if (v <= 0xffff) {
        out[0] = mt | 25;
        n = 2;
    } else if (v <= 0xffffffffu) {
        out[0] = mt | 26;
        n = 4;
    } else {
        out[0] = mt | 27;
        n = 8;
    }
    for (size_t i = 0; i < n; i++)
        out[1 + i] = (unsigned char)(v >> (8 * (n - 1 - i)));
    return n + 1;
}

/* Reads one head; false when truncated or reserved. ai 31 gives val 0. */
static bool read_head(const unsigned char *p, size_t len, size_t *pos, unsigned *major,
                      unsigned *ai, uint64_t *val)
{
    if (*pos >= len)
        return false;
    unsigned char ib = p[(*pos)++];
    *major = ib >> 5;
    *ai = ib & 31u;
    *val = 0;
    if (*ai < 24) {
        *val = *ai;
        return true;
    }
    if (*ai == 31)
        return true;
    if (*ai > 27)
        return false;
    size_t n = (size_t)1 << (*ai - 24);
    if (len - *pos < n)
        return false;
    for (size_t i = 0; i < n; i++)
        *val = (*val << 8) | p[*pos + i];
    *pos += n;
    return true;
}

/* RFC 3629 UTF-8: no overlong forms, no surrogates, nothing past U+10FFFF. */
static bool utf8_ok(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t len;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            len = 2;
            cp = c & 0x1fu;
            min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3;
            cp = c & 0x0fu;
            min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4;
            cp = c & 0x07u;
            min = 0x10000;
        } else {
            return false;
        }
        if (n - i < len)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3fu);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

static const char *scan_item(const unsigned char *p, size_t len, size_t *pos, unsigned depth)
{
    if (depth > SCAN_MAX_DEPTH)
        return "CBOR nested more than 16 levels deep";
    if (*pos >= len)
        return "truncated CBOR item";
    unsigned char ib = p[*pos];
    if ((ib & 31u) >= 28 && (ib & 31u) <= 30)
        return "reserved CBOR additional information value";
    unsigned major, ai;
    uint64_t val;
    if (!read_head(p, len, pos, &major, &ai, &val))
        return "truncated CBOR item";
    if (ai == 31) {
        switch (major) {
        case 2:
        case 3:
            return "indefinite-length (chunked) string";
        case 4:
        case 5:
            for (size_t n = 0;; n++) {
                if (*pos >= len)
                    return "truncated CBOR item (missing break)";
                if (p[*pos] == 0xff) {
                    if (major == 5 && n % 2)
                        return "indefinite map with a key but no value";
                    (*pos)++;
                    return NULL;
                }
                const char *e = scan_item(p, len, pos, depth + 1);
                if (e)
                    return e;
            }
        case 7:
            return "unexpected CBOR break";
        default:
            return "indefinite length on an integer or tag";
        }
    }
    switch (major) {
    case 0:
    case 1:
    case 7:
        return NULL;
    case 2:
    case 3:
        if (val > len - *pos)
            return "truncated CBOR string";
        if (major == 3 && !utf8_ok(p + *pos, (size_t)val))
            return "text string is not valid UTF-8";
        *pos += (size_t)val;
        return NULL;
    case 4:
    case 5: {
        /* Every element takes at least one byte: a larger count cannot be honest. */
        uint64_t left = len - *pos;
        if (major == 5 ? val > left / 2 : val > left)
            return "CBOR container declares more elements than there are bytes";
        uint64_t n = major == 5 ? val * 2 : val;
        for (uint64_t i = 0; i < n; i++) {
            const char *e = scan_item(p, len, pos, depth + 1);
            if (e)
                return e;
        }
        return NULL;
    }
    default: /* 6: tag */
        return scan_item(p, len, pos, depth + 1);
    }
}

const char *attest_cbor_scan(const unsigned char *p, size_t len)
{
    size_t pos = 0;
    if (len == 0)
        return "empty input";
    const char *e = scan_item(p, len, &pos, 0);
    if (e)
        return e;
    if (pos != len)
        return "trailing bytes after the CBOR item";
    return NULL;
}

/* Scans then loads; *out is NULL on failure with a reason. */
static cbor_item_t *load(const unsigned char *p, size_t len, const char **why)
{
    *why = attest_cbor_scan(p, len);
    if (*why)
        return NULL;
    struct cbor_load_result res;
    cbor_item_t *it = cbor_load(p, len, &res);
    if (!it || res.error.code != CBOR_ERR_NONE || res.read != len) {
        if (it)
            cbor_decref(&it);
        *why = res.error.code == CBOR_ERR_MEMERROR ? "out of memory"
                                                   : "the CBOR decoder refused the item";
        return NULL;
    }
    return it;
}

DCMS_PRINTF(3, 4)
static enum dcms_err fail(struct attest_parse_err *pe, const char *check, const char *fmt, ...)
{
    pe->check = check;
    pe->failure = strcmp(check, "size") == 0 || strcmp(check, "cbor") == 0
                      ? DCMS_ATTEST_FAIL_DECODE
                      : DCMS_ATTEST_FAIL_SYNTAX;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pe->reason, sizeof(pe->reason), fmt, ap);
    va_end(ap);
    return DCMS_ERR_VALIDATION;
}

/* A definite byte string as a view. */
/*
 * CBOR null. libcbor's cbor_is_null() asserts that a float-or-simple item
 * is a simple value (width 0): on a half, single or double float it aborts
 * the process. Check the width first.
 */
static bool is_null(const cbor_item_t *it)
{
    return cbor_isa_float_ctrl(it) && cbor_float_get_width(it) == CBOR_FLOAT_0 && cbor_is_null(it);
}

static bool bstr(const cbor_item_t *it, struct dcms_attest_bytes *out)
{
    if (!cbor_isa_bytestring(it) || cbor_bytestring_is_indefinite(it))
        return false;
    out->ptr = cbor_bytestring_handle(it);
    out->len = cbor_bytestring_length(it);
    if (!out->ptr)
        out->ptr = (const unsigned char *)"";
    return true;
}

static bool is_printable(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x20 || s[i] > 0x7e)
            return false;
    return true;
}

/* The key as text for a message ("" when unprintable). */
static void key_name(const cbor_item_t *k, char *out, size_t cap)
{
    size_t n = cbor_string_length(k);
    const unsigned char *s = cbor_string_handle(k);
    if (!s || !is_printable(s, n) || n > 40)
        n = 0;
    snprintf(out, cap, "%.*s", (int)n, s ? (const char *)s : "");
}

static bool key_is(const cbor_item_t *k, const char *name)
{
    size_t n = strlen(name);
    return cbor_string_length(k) == n && memcmp(cbor_string_handle(k), name, n) == 0;
}

static enum dcms_err parse_protected(struct dcms_attest_doc *d, struct attest_parse_err *pe)
{
    const char *why;
    cbor_item_t *h = load(d->protected_hdr.ptr, d->protected_hdr.len, &why);
    enum dcms_err e = DCMS_OK;
    if (!h)
        return fail(pe, "protected_header", "protected header is not CBOR: %s", why);
    if (!cbor_isa_map(h)) {
        e = fail(pe, "protected_header", "protected header is not a map");
        goto out;
    }
    size_t n = cbor_map_size(h);
    struct cbor_pair *pairs = cbor_map_handle(h);
    bool have_alg = false;
    for (size_t i = 0; i < n; i++) {
        const cbor_item_t *k = pairs[i].key, *v = pairs[i].value;
        if (!cbor_isa_uint(k) || cbor_get_int(k) != 1) {
            e = fail(pe, "protected_header", "protected header has a label other than alg (1)");
            goto out;
        }
        if (have_alg) {
            e = fail(pe, "protected_header", "protected header repeats alg");
            goto out;
        }
        have_alg = true;
        bool es384 = (cbor_isa_negint(v) && cbor_get_int(v) == (uint64_t)(-1 - COSE_ALG_ES384)) ||
                     (cbor_isa_string(v) && !cbor_string_is_indefinite(v) &&
                      cbor_string_length(v) == 5 && memcmp(cbor_string_handle(v), "ES384", 5) == 0);
        if (!es384) {
            e = fail(pe, "protected_header", "alg is not ES384 (-35)");
            goto out;
        }
    }
    if (!have_alg)
        e = fail(pe, "protected_header", "protected header has no alg");
out:
    cbor_decref(&h);
    return e;
}

/* absent / null / bstr 0..1024 */
static enum dcms_err opt_bytes(const cbor_item_t *v, const char *name, bool *has,
                               struct dcms_attest_bytes *out, struct attest_parse_err *pe)
{
    if (is_null(v)) {
        *has = false;
        return DCMS_OK;
    }
    if (!bstr(v, out))
        return fail(pe, "payload", "%s is neither a byte string nor null", name);
    if (out->len > DCMS_ATTEST_MAX_FIELD_BYTES)
        return fail(pe, "payload", "%s is %zu bytes, more than %u", name, out->len,
                    DCMS_ATTEST_MAX_FIELD_BYTES);
    *has = true;
    return DCMS_OK;
}

static enum dcms_err parse_pcrs(struct dcms_attest_doc *d, const cbor_item_t *m,
                                struct attest_parse_err *pe)
{
    if (!cbor_isa_map(m))
        return fail(pe, "payload", "pcrs is not a map");
    size_t n = cbor_map_size(m);
    if (n < 1 || n > DCMS_ATTEST_MAX_PCRS)
        return fail(pe, "payload", "pcrs has %zu entries, expected 1..32", n);
    struct cbor_pair *pairs = cbor_map_handle(m);
    for (size_t i = 0; i < n; i++) {
        const cbor_item_t *k = pairs[i].key;
        if (!cbor_isa_uint(k))
            return fail(pe, "payload", "pcrs key %zu is not an unsigned integer", i);
        uint64_t idx = cbor_get_int(k);
        if (idx >= DCMS_ATTEST_MAX_PCRS)
            return fail(pe, "payload", "PCR index %llu is out of range 0..31",
                        (unsigned long long)idx);
        if (d->pcr_mask & (1u << idx))
            return fail(pe, "payload", "PCR %u appears twice", (unsigned)idx);
        struct dcms_attest_bytes b;
        if (!bstr(pairs[i].value, &b))
            return fail(pe, "payload", "PCR %u is not a byte string", (unsigned)idx);
        if (b.len != 32 && b.len != 48 && b.len != 64)
            return fail(pe, "payload", "PCR %u is %zu bytes, expected 32, 48 or 64", (unsigned)idx,
                        b.len);
        d->pcr_mask |= 1u << idx;
        d->pcrs[idx] = b;
    }
    return DCMS_OK;
}

static enum dcms_err parse_cabundle(struct dcms_attest_doc *d, const cbor_item_t *a,
                                    struct attest_parse_err *pe)
{
    if (!cbor_isa_array(a))
        return fail(pe, "payload", "cabundle is not an array");
    size_t n = cbor_array_size(a);
    if (n < 1 || n > DCMS_ATTEST_MAX_CABUNDLE)
        return fail(pe, "payload", "cabundle has %zu entries, expected 1..%u", n,
                    DCMS_ATTEST_MAX_CABUNDLE);
    cbor_item_t **items = cbor_array_handle(a);
    for (size_t i = 0; i < n; i++) {
        if (!bstr(items[i], &d->cabundle[i]))
            return fail(pe, "payload", "cabundle[%zu] is not a byte string", i);
        if (d->cabundle[i].len < 1 || d->cabundle[i].len > DCMS_ATTEST_MAX_FIELD_BYTES)
            return fail(pe, "payload", "cabundle[%zu] is %zu bytes, expected 1..%u", i,
                        d->cabundle[i].len, DCMS_ATTEST_MAX_FIELD_BYTES);
    }
    d->ncabundle = n;
    return DCMS_OK;
}

enum {
    F_MODULE_ID = 1 << 0,
    F_DIGEST = 1 << 1,
    F_TIMESTAMP = 1 << 2,
    F_PCRS = 1 << 3,
    F_CERTIFICATE = 1 << 4,
    F_CABUNDLE = 1 << 5,
};

static enum dcms_err parse_field(struct dcms_attest_doc *d, const cbor_item_t *k,
                                 const cbor_item_t *v, unsigned *seen, struct attest_parse_err *pe)
{
    if (key_is(k, "module_id")) {
        *seen |= F_MODULE_ID;
        if (!cbor_isa_string(v) || cbor_string_is_indefinite(v))
            return fail(pe, "payload", "module_id is not a text string");
        size_t n = cbor_string_length(v);
        const unsigned char *s = cbor_string_handle(v);
        if (n < 1 || n > DCMS_ATTEST_MODULE_ID_MAX || !is_printable(s, n))
            return fail(pe, "payload", "module_id must be 1..%u printable ASCII characters",
                        DCMS_ATTEST_MODULE_ID_MAX);
        memcpy(d->module_id, s, n);
        d->module_id[n] = '\0';
    } else if (key_is(k, "digest")) {
        *seen |= F_DIGEST;
        if (!cbor_isa_string(v) || cbor_string_is_indefinite(v))
            return fail(pe, "payload", "digest is not a text string");
        if (cbor_string_length(v) != 6 || memcmp(cbor_string_handle(v), "SHA384", 6) != 0)
            return fail(pe, "payload", "digest is not \"SHA384\"");
    } else if (key_is(k, "timestamp")) {
        *seen |= F_TIMESTAMP;
        if (!cbor_isa_uint(v))
            return fail(pe, "payload", "timestamp is not an unsigned integer");
        d->timestamp_ms = cbor_get_int(v);
        if (d->timestamp_ms == 0)
            return fail(pe, "payload", "timestamp is zero");
    } else if (key_is(k, "pcrs")) {
        *seen |= F_PCRS;
        return parse_pcrs(d, v, pe);
    } else if (key_is(k, "certificate")) {
        *seen |= F_CERTIFICATE;
        if (!bstr(v, &d->certificate))
            return fail(pe, "payload", "certificate is not a byte string");
        if (d->certificate.len < 1 || d->certificate.len > DCMS_ATTEST_MAX_FIELD_BYTES)
            return fail(pe, "payload", "certificate is %zu bytes, expected 1..%u",
                        d->certificate.len, DCMS_ATTEST_MAX_FIELD_BYTES);
    } else if (key_is(k, "cabundle")) {
        *seen |= F_CABUNDLE;
        return parse_cabundle(d, v, pe);
    } else if (key_is(k, "public_key")) {
        return opt_bytes(v, "public_key", &d->has_public_key, &d->public_key, pe);
    } else if (key_is(k, "user_data")) {
        return opt_bytes(v, "user_data", &d->has_user_data, &d->user_data, pe);
    } else if (key_is(k, "nonce")) {
        return opt_bytes(v, "nonce", &d->has_nonce, &d->nonce, pe);
    }
    /* Unknown keys are skipped: they are covered by the signature anyway. */
    return DCMS_OK;
}

static enum dcms_err parse_payload(struct dcms_attest_doc *d, struct attest_parse_err *pe)
{
    const char *why;
    cbor_item_t *m = load(d->payload.ptr, d->payload.len, &why);
    if (!m)
        return fail(pe, "payload", "payload is not CBOR: %s", why);
    doc_impl(d)->items[1] = m;
    if (!cbor_isa_map(m))
        return fail(pe, "payload", "payload is not a map");
    d->payload_indefinite = cbor_map_is_indefinite(m);
    size_t n = cbor_map_size(m);
    if (n > PAYLOAD_MAX_ENTRIES)
        return fail(pe, "payload", "payload map has %zu entries, more than %d", n,
                    PAYLOAD_MAX_ENTRIES);
    struct cbor_pair *pairs = cbor_map_handle(m);
    unsigned seen = 0;
    for (size_t i = 0; i < n; i++) {
        const cbor_item_t *k = pairs[i].key;
        if (!cbor_isa_string(k) || cbor_string_is_indefinite(k))
            return fail(pe, "payload", "payload key %zu is not a text string", i);
        for (size_t j = 0; j < i; j++) {
            const cbor_item_t *o = pairs[j].key;
            if (cbor_string_length(o) == cbor_string_length(k) &&
                memcmp(cbor_string_handle(o), cbor_string_handle(k), cbor_string_length(k)) == 0) {
                char name[48];
                key_name(k, name, sizeof(name));
                return fail(pe, "payload", "duplicate payload key \"%s\"", name);
            }
        }
        enum dcms_err e = parse_field(d, k, pairs[i].value, &seen, pe);
        if (e)
            return e;
    }
    static const struct {
        unsigned bit;
        const char *name;
    } required[] = {{F_MODULE_ID, "module_id"},     {F_DIGEST, "digest"},
                    {F_TIMESTAMP, "timestamp"},     {F_PCRS, "pcrs"},
                    {F_CERTIFICATE, "certificate"}, {F_CABUNDLE, "cabundle"}};
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++)
        if (!(seen & required[i].bit))
            return fail(pe, "payload", "payload lacks %s", required[i].name);
    return DCMS_OK;
}

static enum dcms_err parse_envelope(struct dcms_attest_doc *d, const unsigned char *p, size_t len,
                                    struct attest_parse_err *pe)
{
    if (len == 0)
        return fail(pe, "size", "empty document");
    if (len > DCMS_ATTEST_MAX_DOC_BYTES)
        return fail(pe, "size", "document is %zu bytes, more than %u", len,
                    DCMS_ATTEST_MAX_DOC_BYTES);
    const char *why = attest_cbor_scan(p, len);
    if (why)
        return fail(pe, "cbor", "%s", why);
    /*
     * The tag is read here: libcbor 0.8 refuses unassigned tag numbers
     * (6..20, COSE_Sign1's 18 among them) as malformed.
     */
    size_t pos = 0;
    if (p[0] >> 5 == 6) {
        unsigned major, ai;
        uint64_t tag = 0;
        if (!read_head(p, len, &pos, &major, &ai, &tag) || tag != COSE_TAG_SIGN1)
            return fail(pe, "cose_sign1", "unexpected CBOR tag %llu (only 18, COSE_Sign1)",
                        (unsigned long long)tag);
        d->tagged = true;
    }
    cbor_item_t *root = load(p + pos, len - pos, &why);
    if (!root)
        return fail(pe, "cbor", "%s", why);
    doc_impl(d)->items[0] = root;
    const cbor_item_t *arr = root;
    if (!cbor_isa_array(arr) || cbor_array_size(arr) != 4)
        return fail(pe, "cose_sign1", "not a COSE_Sign1 array of 4 elements");
    cbor_item_t **el = cbor_array_handle(arr);
    if (!bstr(el[0], &d->protected_hdr))
        return fail(pe, "cose_sign1", "protected header is not a byte string");
    if (!cbor_isa_map(el[1]))
        return fail(pe, "cose_sign1", "unprotected header is not a map");
    if (is_null(el[2]))
        return fail(pe, "cose_sign1", "payload is nil (detached payloads are not accepted)");
    if (!bstr(el[2], &d->payload))
        return fail(pe, "cose_sign1", "payload is not a byte string");
    if (!bstr(el[3], &d->signature))
        return fail(pe, "cose_sign1", "signature is not a byte string");
    if (d->signature.len != 96)
        return fail(pe, "cose_sign1", "signature is %zu bytes, expected 96 (r||s)",
                    d->signature.len);
    enum dcms_err e = parse_protected(d, pe);
    if (e)
        return e;
    return parse_payload(d, pe);
}

enum dcms_err attest_decode(const unsigned char *p, size_t len, struct dcms_attest_doc **out,
                            struct attest_parse_err *pe)
{
    *out = NULL;
    struct attest_doc_impl *impl = calloc(1, sizeof(*impl));
    if (!impl) {
        fail(pe, "size", "out of memory");
        return DCMS_ERR_NOMEM;
    }
    struct dcms_attest_doc *d = &impl->pub;
    enum dcms_err e = parse_envelope(d, p, len, pe);
    if (e) {
        dcms_attest_doc_free(d);
        return e;
    }
    *out = d;
    return DCMS_OK;
}

void dcms_attest_doc_free(struct dcms_attest_doc *d)
{
    if (!d)
        return;
    struct attest_doc_impl *impl = doc_impl(d);
    for (size_t i = 0; i < 2; i++) {
        cbor_item_t *it = impl->items[i];
        if (it)
            cbor_decref(&it);
    }
    free(impl);
}

enum dcms_err dcms_attest_parse(const unsigned char *p, size_t len, struct dcms_attest_doc **out,
                                enum dcms_attest_failure *failure, char *reason, size_t reason_len)
{
    struct attest_parse_err pe = {0};
    enum dcms_err e = attest_decode(p, len, out, &pe);
    if (failure)
        *failure = e ? pe.failure : DCMS_ATTEST_OK;
    if (reason && reason_len)
        snprintf(reason, reason_len, "%s", e ? pe.reason : "");
    return e;
}
