/*
 * RFC 8785 JSON Canonicalization Scheme over jansson values.
 *
 * One recursive writer produces the canonical bytes into a "sink" that
 * either appends to a capped dcms_buf or feeds a SHA-256 digest, so hashing
 * never needs the whole canonical text in memory. Output is staged in a
 * small buffer to keep the number of appends and digest updates low.
 *
 * Numbers follow ECMAScript's Number.prototype.toString: the shortest
 * decimal digits that read back as the same double (found by trying 1 to 17
 * significant digits with "%.*e" and strtod), laid out by the ES rules.
 * glibc's printf and strtod round correctly, which this relies on.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <openssl/evp.h>

#include "dcms/crypto.h"
#include "dcms/jcs.h"

struct sink {
    struct dcms_buf *buf; /* exactly one of buf and md is set */
    EVP_MD_CTX *md;
    struct dcms_errinfo *ei;
    size_t used;
    char stage[1024];
};

static enum dcms_err sink_error(struct sink *s, enum dcms_err e)
{
    switch (e) {
    case DCMS_ERR_TOO_LARGE:
        return dcms_err_set(s->ei, e, "canonical JSON is longer than the %zu-byte limit",
                            s->buf ? s->buf->max : 0);
    case DCMS_ERR_CRYPTO:
        return dcms_err_set(s->ei, e, "sha-256 digest update failed");
    default:
        return dcms_err_set(s->ei, e, NULL);
    }
}

static enum dcms_err sink_write(struct sink *s, const char *p, size_t n)
{
    if (s->buf) {
        enum dcms_err e = dcms_buf_append(s->buf, p, n);
        return e ? sink_error(s, e) : DCMS_OK;
    }
    if (EVP_DigestUpdate(s->md, p, n) != 1)
        return sink_error(s, DCMS_ERR_CRYPTO);
    return DCMS_OK;
}

static enum dcms_err sink_flush(struct sink *s)
{
    size_t n = s->used;
    s->used = 0;
    return n ? sink_write(s, s->stage, n) : DCMS_OK;
}

static enum dcms_err emit(struct sink *s, const char *p, size_t n)
{
    if (n > sizeof(s->stage) - s->used) {
        enum dcms_err e = sink_flush(s);
        if (e)
            return e;
        if (n > sizeof(s->stage))
            return sink_write(s, p, n);
    }
    memcpy(s->stage + s->used, p, n);
    s->used += n;
    return DCMS_OK;
}

static enum dcms_err emit_char(struct sink *s, char c)
{
    return emit(s, &c, 1);
}

/* ---- numbers ------------------------------------------------------------ */

enum dcms_err dcms_jcs_format_number(double d, char out[DCMS_JCS_NUMBER_MAX])
{
    out[0] = '\0';
    if (!isfinite(d))
        return DCMS_ERR_VALIDATION;
    if (d == 0) { /* +0 and -0 */
        out[0] = '0';
        out[1] = '\0';
        return DCMS_OK;
    }

    /* An integer below 2^53 is exact, and no shorter digit string reads back
     * as it (every integer there is a double of its own): its decimal digits
     * are the answer. Sequence numbers, sizes and counts take this path,
     * without the search below (a dozen printf/strtod pairs). */
    double a = fabs(d);
    if (a < 9007199254740992.0 && a == floor(a)) {
        snprintf(out, DCMS_JCS_NUMBER_MAX, "%lld", (long long)d);
        return DCMS_OK;
    }

    /* Shortest significand that round-trips: "%.*e" rounds correctly, so the
     * first precision whose text reads back as |d| gives the digits. */
    char tmp[48];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof(tmp), "%.*e", prec - 1, a);
        if (strtod(tmp, NULL) == a)
            break;
    }

    /* tmp is "d[.ddd]e[+-]xx"; the decimal point is whatever the locale uses,
     * so take the digits before 'e' and skip anything else. */
    char digits[18];
    int k = 0;
    const char *p = tmp;
    for (; *p && *p != 'e'; p++) {
        if (*p >= '0' && *p <= '9' && k < 17)
            digits[k++] = *p;
    }
    if (*p != 'e' || k == 0)
        return DCMS_ERR_INTERNAL;
    int n = (int)strtol(p + 1, NULL, 10) + 1; /* value = 0.digits * 10^n */
    while (k > 1 && digits[k - 1] == '0')
        k--;

    /* ECMA-262 Number::toString layout, with k digits and exponent n. */
    char *o = out;
    if (d < 0)
        *o++ = '-';
    if (k <= n && n <= 21) {
        memcpy(o, digits, (size_t)k);
        o += k;
        for (int i = k; i < n; i++)
            *o++ = '0';
    } else if (0 < n && n <= 21) {
        memcpy(o, digits, (size_t)n);
        o += n;
        *o++ = '.';
        memcpy(o, digits + n, (size_t)(k - n));
        o += k - n;
    } else if (-6 < n && n <= 0) {
        *o++ = '0';
        *o++ = '.';
        for (int i = n; i < 0; i++)
            *o++ = '0';
        memcpy(o, digits, (size_t)k);
        o += k;
    } else {
        *o++ = digits[0];
        if (k > 1) {
            *o++ = '.';
            memcpy(o, digits + 1, (size_t)(k - 1));
            o += k - 1;
        }
        int e = n - 1;
        *o++ = 'e';
        *o++ = e < 0 ? '-' : '+';
        snprintf(o, (size_t)(out + DCMS_JCS_NUMBER_MAX - o), "%d", e < 0 ? -e : e);
        return DCMS_OK;
    }
    *o = '\0';
    return DCMS_OK;
}

static enum dcms_err emit_number(struct sink *s, double d)
{
    char text[DCMS_JCS_NUMBER_MAX];
    enum dcms_err e = dcms_jcs_format_number(d, text);
    if (e == DCMS_ERR_VALIDATION) {
        const char *what = isnan(d) ? "NaN" : d > 0 ? "Infinity" : "-Infinity";
        return dcms_err_set(s->ei, e,
                            "number %s cannot be canonicalized: JSON has no NaN or Infinity", what);
    }
    if (e)
        return dcms_err_set(s->ei, e, "cannot format number %g", d);
    return emit(s, text, strlen(text));
}

/* ---- strings ------------------------------------------------------------ */

static enum dcms_err sink_emit(void *ctx, const char *p, size_t n)
{
    return emit(ctx, p, n);
}

/* RFC 8785 strings use exactly the minimal escapes of dcms_json_escape. */
static enum dcms_err emit_string(struct sink *s, const char *str, size_t len)
{
    enum dcms_err e = emit_char(s, '"');
    if (!e)
        e = dcms_json_escape(str, len, sink_emit, s);
    return e ? e : emit_char(s, '"');
}

/* ---- member order ------------------------------------------------------- */

/* Next code point of UTF-8 text. jansson only holds valid UTF-8; anything
 * else is read one byte at a time, so the order stays total and in bounds. */
static uint32_t next_code_point(const unsigned char **pp, const unsigned char *end)
{
    const unsigned char *p = *pp;
    uint32_t c = *p;
    size_t n = c < 0x80 ? 0 : c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : 0;
    if ((size_t)(end - p) <= n)
        n = 0;
    for (size_t i = 1; i <= n; i++) {
        if ((p[i] & 0xC0) != 0x80) {
            n = 0;
            break;
        }
    }
    if (n > 0) {
        c &= 0x3Fu >> n;
        for (size_t i = 1; i <= n; i++)
            c = (c << 6) | (p[i] & 0x3F);
    }
    *pp = p + n + 1;
    return c;
}

/*
 * Compares two names as arrays of UTF-16 code units. UTF-8 byte order is code
 * point order, and so is UTF-16 order except between a supplementary
 * character (a surrogate pair, first unit 0xD800..0xDBFF) and a BMP
 * character at 0xE000 or above.
 */
static int cmp_utf16(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t i = 0, m = alen < blen ? alen : blen;
    while (i < m && a[i] == b[i])
        i++;
    /* Restart decoding after the last ASCII byte of the common prefix: such a
     * position starts a character in both names, even in invalid UTF-8. */
    while (i > 0 && (unsigned char)a[i - 1] >= 0x80)
        i--;
    const unsigned char *pa = (const unsigned char *)a + i, *ea = (const unsigned char *)a + alen;
    const unsigned char *pb = (const unsigned char *)b + i, *eb = (const unsigned char *)b + blen;
    while (pa < ea && pb < eb) {
        uint32_t ca = next_code_point(&pa, ea), cb = next_code_point(&pb, eb);
        if (ca == cb)
            continue;
        if ((ca >= 0x10000) != (cb >= 0x10000)) {
            uint32_t ua = ca >= 0x10000 ? 0xD800 + ((ca - 0x10000) >> 10) : ca;
            uint32_t ub = cb >= 0x10000 ? 0xD800 + ((cb - 0x10000) >> 10) : cb;
            if (ua != ub)
                return ua < ub ? -1 : 1;
        }
        return ca < cb ? -1 : 1;
    }
    return (pa < ea) - (pb < eb);
}

struct member {
    const char *key;
    size_t len;
    json_t *value;
};

static int cmp_members(const void *x, const void *y)
{
    const struct member *a = x, *b = y;
    return cmp_utf16(a->key, a->len, b->key, b->len);
}

/* ---- values ------------------------------------------------------------- */

static enum dcms_err emit_value(struct sink *s, const json_t *v, unsigned depth);

static enum dcms_err emit_array(struct sink *s, const json_t *v, unsigned depth)
{
    enum dcms_err e = emit_char(s, '[');
    size_t n = json_array_size(v);
    for (size_t i = 0; i < n && !e; i++) {
        if (i > 0 && (e = emit_char(s, ',')))
            break;
        e = emit_value(s, json_array_get(v, i), depth + 1);
    }
    return e ? e : emit_char(s, ']');
}

static enum dcms_err emit_object(struct sink *s, const json_t *v, unsigned depth)
{
    size_t n = json_object_size(v);
    if (n == 0)
        return emit(s, "{}", 2);
    struct member *m = calloc(n, sizeof(*m));
    if (!m)
        return sink_error(s, DCMS_ERR_NOMEM);
    enum dcms_err e = DCMS_OK;
    size_t count = 0;
    /* jansson's iterators take a non-const object but do not change it. */
    for (void *it = json_object_iter((json_t *)v); it && count < n;
         it = json_object_iter_next((json_t *)v, it)) {
        m[count].key = json_object_iter_key(it);
        m[count].len = json_object_iter_key_len(it);
        m[count].value = json_object_iter_value(it);
        count++;
    }
    qsort(m, count, sizeof(*m), cmp_members);
    if ((e = emit_char(s, '{')))
        goto out;
    for (size_t i = 0; i < count; i++) {
        if (i > 0 && (e = emit_char(s, ',')))
            goto out;
        if ((e = emit_string(s, m[i].key, m[i].len)) || (e = emit_char(s, ':')) ||
            (e = emit_value(s, m[i].value, depth + 1)))
            goto out;
    }
    e = emit_char(s, '}');
out:
    free(m);
    return e;
}

static enum dcms_err emit_value(struct sink *s, const json_t *v, unsigned depth)
{
    if (!v)
        return dcms_err_set(s->ei, DCMS_ERR_INTERNAL, "no JSON value to canonicalize");
    switch (json_typeof(v)) {
    case JSON_OBJECT:
    case JSON_ARRAY:
        /* The value itself may come from code rather than the parser, and
         * could even contain itself, so recursion is bounded here too. */
        if (depth >= DCMS_JCS_MAX_DEPTH)
            return dcms_err_set(s->ei, DCMS_ERR_VALIDATION,
                                "JSON nests deeper than %d levels of arrays and objects",
                                DCMS_JCS_MAX_DEPTH);
        return json_is_object(v) ? emit_object(s, v, depth) : emit_array(s, v, depth);
    case JSON_STRING:
        return emit_string(s, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        /* RFC 8785 3.2.2.3: every number is an IEEE-754 double. */
        return emit_number(s, (double)json_integer_value(v));
    case JSON_REAL:
        return emit_number(s, json_real_value(v));
    case JSON_TRUE:
        return emit(s, "true", 4);
    case JSON_FALSE:
        return emit(s, "false", 5);
    case JSON_NULL:
        return emit(s, "null", 4);
    }
    return dcms_err_set(s->ei, DCMS_ERR_INTERNAL, "unknown JSON type %d", (int)json_typeof(v));
}

/* ---- entry points ------------------------------------------------------- */

enum dcms_err dcms_jcs_canonicalize(const json_t *v, struct dcms_buf *out, struct dcms_errinfo *ei)
{
    struct sink s = {.buf = out, .ei = ei};
    size_t start = out->len;
    enum dcms_err e = emit_value(&s, v, 0);
    if (!e)
        e = sink_flush(&s);
    if (e && out->ptr) { /* leave out as the caller gave it */
        out->len = start;
        out->ptr[start] = '\0';
    }
    return e;
}

enum dcms_err dcms_jcs_sha256(const json_t *v, unsigned char out[32], struct dcms_errinfo *ei)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    struct sink s = {.md = md, .ei = ei};
    enum dcms_err e = DCMS_OK;
    unsigned int len = 0;
    if (EVP_DigestInit_ex(md, dcms_sha256_md(), NULL) != 1) {
        e = dcms_err_set(ei, DCMS_ERR_CRYPTO, "sha-256 digest init failed");
        goto out;
    }
    if ((e = emit_value(&s, v, 0)) || (e = sink_flush(&s)))
        goto out;
    if (EVP_DigestFinal_ex(md, out, &len) != 1 || len != 32)
        e = dcms_err_set(ei, DCMS_ERR_CRYPTO, "sha-256 digest final failed");
out:
    EVP_MD_CTX_free(md);
    return e;
}
