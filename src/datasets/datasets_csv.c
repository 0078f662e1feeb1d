/*
 * The streaming CSV validator: bytes in any chunking, constant memory.
 *
 * A byte-at-a-time state machine over RFC 4180 (fields separated by ',',
 * records by LF or CRLF, fields optionally in double quotes with "" for a
 * quote). It keeps at most DS_FIELD_MAX bytes of the current field, which
 * is all a type check needs: a longer number, integer or category value is
 * a problem anyway, and text is not inspected. The header row must name
 * the schema's columns in order; each data row must have as many fields,
 * each of its column's type, and the label one of the allowed values.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "datasets/datasets_int.h"

void ds_csv_init(struct ds_csv *v)
{
    memset(v, 0, sizeof(*v));
    v->version = DS_CSV_STATE_VERSION;
    v->line = 1;
    v->record_line = 1;
    v->at_record_start = true;
}

void ds_csv_problem(struct ds_csv *v, int64_t line, const char *fmt, ...)
{
    v->problems_total++;
    if (v->nproblems >= DS_MAX_PROBLEMS)
        return;
    struct ds_problem *p = &v->problems[v->nproblems++];
    p->line = line;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->message, sizeof(p->message), fmt, ap);
    va_end(ap);
}

/*
 * The reference check: what strtod/strtoll accept as the whole field, with
 * no leading blank, nothing but plain decimal characters (no hex floats,
 * "inf" or "nan"), finite and in range (ERANGE refuses both overflow and
 * underflow). The fast path below (ds_csv_number_ok) answers the same for the common case
 * without calling them.
 */
bool ds_csv_number_ok_libc(const char *s, bool integer)
{
    if (!*s || s[0] == ' ' || s[0] == '\t')
        return false;
    char *end;
    errno = 0;
    if (integer) {
        (void)strtoll(s, &end, 10);
    } else {
        double d = strtod(s, &end);
        if (!isfinite(d))
            return false;
        for (const char *q = s; q < end; q++)
            if (!((*q >= '0' && *q <= '9') || *q == '+' || *q == '-' || *q == '.' || *q == 'e' ||
                  *q == 'E'))
                return false;
    }
    return errno == 0 && *end == '\0';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/*
 * The grammar [+-]?(D+(.D*)?|.D+)([eE][+-]?D+)? for numbers and [+-]?D+
 * for integers, checked in one pass. A value this grammar accepts can still
 * be out of range only when it has many digits or a large exponent: those
 * few go to ds_csv_number_ok_libc, so both answer alike for every input
 * (tests/unit/test_datasets_csv.c compares them). Answers 1 (valid), 0
 * (not) or -1 (in the grammar, range to be checked by libc).
 */
static int number_grammar(const char *s, size_t len, bool integer)
{
    size_t i = 0, digits = 0;
    if (i < len && (s[i] == '+' || s[i] == '-'))
        i++;
    while (i < len && is_digit(s[i]))
        i++, digits++;
    if (integer)
        return digits > 0 && i == len ? (digits <= 18 ? 1 : -1) : 0;
    if (i < len && s[i] == '.') {
        i++;
        while (i < len && is_digit(s[i]))
            i++, digits++;
    }
    if (digits == 0)
        return 0;
    if (i == len)
        return 1; /* at most DS_FIELD_MAX digits: within 1e-256..1e256 */
    if (s[i] != 'e' && s[i] != 'E')
        return 0;
    i++;
    if (i < len && (s[i] == '+' || s[i] == '-'))
        i++;
    size_t exp_start = i, exp = 0;
    while (i < len && is_digit(s[i])) {
        if (exp < 1000)
            exp = exp * 10 + (size_t)(s[i] - '0');
        i++;
    }
    if (i == exp_start || i != len)
        return 0;
    /* mantissa within 1e-256..1e256; an exponent up to 40 keeps it a normal double */
    return exp <= 40 ? 1 : -1;
}

bool ds_csv_number_ok(const char *s, size_t len, bool integer)
{
    int r = number_grammar(s, len, integer);
    return r >= 0 ? r == 1 : ds_csv_number_ok_libc(s, integer);
}

static bool in_list(const char *s, const char **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, list[i]) == 0)
            return true;
    return false;
}

/* in_list for a value of `n` bytes that is not NUL-terminated */
static bool in_list_n(const unsigned char *s, size_t n, const char **list, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (strncmp(list[i], (const char *)s, n) == 0 && list[i][n] == '\0')
            return true;
    return false;
}

static void end_field(struct ds_csv *v, const struct ds_schema *s)
{
    uint32_t f = v->field++;
    if (f >= s->ncols)
        return; /* counted at the end of the record */
    const struct ds_column *c = &s->cols[f];
    bool whole = v->field_len < DS_FIELD_MAX;
    char val[DS_FIELD_MAX];
    size_t n = whole ? v->field_len : DS_FIELD_MAX - 1;
    memcpy(val, v->buf, n);
    val[n] = '\0';
    /* The checks below read val as a C string: a NUL would end it early ("1\0x" as "1"). */
    if (memchr(val, '\0', n)) {
        ds_csv_problem(v, v->record_line, "column %.40s: the field holds a NUL byte", c->name);
        return;
    }
    if (!v->header_done) {
        if (!whole || strcmp(val, c->name) != 0)
            ds_csv_problem(v, v->record_line, "header column %u is \"%.40s\", expected \"%.40s\"",
                           f + 1, val, c->name);
        return;
    }
    if (f == s->label) {
        if (!whole || !in_list(val, s->label_values, s->nlabel_values))
            ds_csv_problem(v, v->record_line, "column %.40s: label \"%.40s\" is not allowed",
                           c->name, val);
        return;
    }
    switch (c->type) {
    case DS_NUMBER:
    case DS_INTEGER:
        if (!whole || !ds_csv_number_ok(val, n, c->type == DS_INTEGER))
            ds_csv_problem(v, v->record_line, "column %.40s: \"%.40s\" is not %s", c->name, val,
                           c->type == DS_INTEGER ? "an integer" : "a number");
        break;
    case DS_CATEGORY:
        if (!whole || (c->values && !in_list(val, c->values, c->nvalues)))
            ds_csv_problem(v, v->record_line, "column %.40s: \"%.40s\" is not an allowed value",
                           c->name, val);
        break;
    case DS_TEXT:
        break;
    }
}

/* The record's fields are all counted (v->field): checks their number and starts the next. */
static void close_record(struct ds_csv *v, const struct ds_schema *s)
{
    if (v->field != s->ncols)
        ds_csv_problem(v, v->record_line, "expected %zu columns, found %u", s->ncols, v->field);
    if (v->header_done)
        v->rows++;
    v->header_done = true;
    v->field = 0;
    v->field_len = 0;
    v->was_quoted = false;
    v->at_record_start = true;
}

static void end_record(struct ds_csv *v, const struct ds_schema *s)
{
    end_field(v, s);
    close_record(v, s);
}

static void put(struct ds_csv *v, unsigned char ch)
{
    if (v->field_len < DS_FIELD_MAX)
        v->buf[v->field_len] = (char)ch;
    if (v->field_len < UINT32_MAX)
        v->field_len++;
}

static void put_run(struct ds_csv *v, const unsigned char *p, size_t n)
{
    if (v->field_len < DS_FIELD_MAX) {
        size_t room = DS_FIELD_MAX - v->field_len;
        memcpy(v->buf + v->field_len, p, n < room ? n : room);
    }
    v->field_len = n > UINT32_MAX - v->field_len ? UINT32_MAX : v->field_len + (uint32_t)n;
}

/* Bytes that end the run of an unquoted field, or need the byte-at-a-time path (NUL among them:
 * the value is compared as a C string there). */
static const bool field_stop[256] = {
    [','] = true, ['\n'] = true, ['"'] = true, ['\r'] = true, ['\0'] = true};

/*
 * The common case in one step: a data field that starts here, unquoted and
 * without CR, shorter than DS_FIELD_MAX, complete within this chunk (its
 * ',' or LF is at p[*end]) and valid for its column. Answers false, having
 * changed nothing, whenever any of that does not hold: the byte-at-a-time
 * path then reads the same bytes and reaches the verdict it always did
 * (tests/unit/test_datasets_csv.c compares both on random input).
 */
#if defined(__SSE2__)
/*
 * The bytes p[0..15] as bit masks (bit i: byte i): which stop a run
 * (field_stop), which are digits, '.', a sign, 'e' or 'E'. Lets the common
 * field of fewer than 16 bytes be checked without a branch per byte.
 */
struct ds_masks16 {
    unsigned stop, digit, dot, sign, exp;
};

static struct ds_masks16 masks16(const unsigned char *p)
{
    __m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
#define EQ(c) _mm_cmpeq_epi8(x, _mm_set1_epi8(c))
    __m128i stop = _mm_or_si128(_mm_or_si128(EQ(','), EQ('\n')),
                                _mm_or_si128(_mm_or_si128(EQ('"'), EQ('\r')), EQ('\0')));
    __m128i d = _mm_sub_epi8(x, _mm_set1_epi8('0'));
    __m128i digit = _mm_cmpeq_epi8(_mm_min_epu8(d, _mm_set1_epi8(9)), d);
    struct ds_masks16 m = {
        .stop = (unsigned)_mm_movemask_epi8(stop),
        .digit = (unsigned)_mm_movemask_epi8(digit),
        .dot = (unsigned)_mm_movemask_epi8(EQ('.')),
        .sign = (unsigned)_mm_movemask_epi8(_mm_or_si128(EQ('+'), EQ('-'))),
        .exp = (unsigned)_mm_movemask_epi8(_mm_or_si128(EQ('e'), EQ('E'))),
    };
#undef EQ
    return m;
}

/*
 * number_grammar of the `len` (< 16) bytes whose masks are m, for the
 * values without an exponent: a sign only first, at most one '.', at least
 * one digit and nothing else is exactly [+-]?(D+(.D*)?|.D+) (and at most 15
 * digits are in range); -1 for the rest, which go to number_grammar.
 */
static int number_masks(const struct ds_masks16 *m, unsigned len, bool integer)
{
    unsigned lm = (1u << len) - 1, dot = m->dot & lm;
    if (m->exp & lm)
        return -1;
    bool ok = !(~(m->digit | m->sign | (integer ? 0 : m->dot)) & lm) && !(m->sign & lm & ~1u) &&
              !(dot & (dot - 1)) && (m->digit & lm);
    return ok;
}
#endif

static bool valid_field_at(const struct ds_csv *v, const struct ds_schema *s,
                           const unsigned char *p, size_t n, size_t *end)
{
    if (v->field_len != 0 || v->was_quoted || !v->header_done || v->field >= s->ncols)
        return false;
    const struct ds_column *c = &s->cols[v->field];
    bool numeric = v->field != s->label && (c->type == DS_NUMBER || c->type == DS_INTEGER);
    size_t j = 0;
    int num = -1;
#if defined(__SSE2__)
    struct ds_masks16 m;
    if (n >= 16 && (m = masks16(p)).stop) {
        j = (size_t)__builtin_ctz(m.stop);
        if (numeric)
            num = number_masks(&m, (unsigned)j, c->type == DS_INTEGER);
    } else
#endif
    {
        size_t lim = n < DS_FIELD_MAX - 1 ? n : DS_FIELD_MAX - 1;
        while (j < lim && !field_stop[p[j]])
            j++;
        if (j == n)
            return false; /* past the chunk */
    }
    if (p[j] != ',' && p[j] != '\n')
        return false; /* too long, a quote, a CR or a NUL */
    bool ok;
    if (v->field == s->label)
        ok = in_list_n(p, j, s->label_values, s->nlabel_values);
    else if (numeric)
        ok = (num >= 0 ? num : number_grammar((const char *)p, j, c->type == DS_INTEGER)) == 1;
    else if (c->type == DS_CATEGORY)
        ok = !c->values || in_list_n(p, j, c->values, c->nvalues);
    else
        ok = true;
    *end = j;
    return ok;
}

void ds_csv_feed(struct ds_csv *v, const struct ds_schema *s, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = p[i];
        if (v->at_record_start) {
            v->at_record_start = false;
            v->record_line = v->line;
        }
        size_t len;
        if (!v->in_quotes && valid_field_at(v, s, p + i, n - i, &len)) {
            v->field++;
            i += len; /* at its ',' or LF */
            if (p[i] == '\n') {
                close_record(v, s);
                v->line++;
            }
            continue;
        }
        if (v->in_quotes) {
            if (v->quote_pending) {
                v->quote_pending = false;
                if (ch == '"') {
                    put(v, ch);
                    continue;
                }
                v->in_quotes = false; /* the quote closed the field; fall through */
            } else {
                if (ch == '"')
                    v->quote_pending = true;
                else
                    put(v, ch);
                if (ch == '\n')
                    v->line++;
                continue;
            }
        }
        switch (ch) {
        case '"':
            if (v->field_len == 0 && !v->was_quoted) {
                v->in_quotes = true;
                v->was_quoted = true;
            } else {
                ds_csv_problem(v, v->line, "a quote inside an unquoted field");
                put(v, ch);
            }
            break;
        case ',':
            end_field(v, s);
            v->field_len = 0;
            v->was_quoted = false;
            break;
        case '\n':
            /* CRLF: the CR is not part of the last field */
            if (v->field_len > 0 && v->field_len <= DS_FIELD_MAX &&
                v->buf[v->field_len - 1] == '\r')
                v->field_len--;
            end_record(v, s);
            v->line++;
            break;
        default: {
            /* the run of ordinary bytes up to the next comma, newline or quote */
            size_t j = i + 1;
            while (j < n && p[j] != ',' && p[j] != '\n' && p[j] != '"')
                j++;
            put_run(v, p + i, j - i);
            i = j - 1;
        }
        }
    }
}

void ds_csv_finish(struct ds_csv *v, const struct ds_schema *s)
{
    if (v->in_quotes && !v->quote_pending)
        ds_csv_problem(v, v->record_line, "a quoted field is not closed at the end of the file");
    v->in_quotes = v->quote_pending = false;
    if (!v->at_record_start)
        end_record(v, s);
    if (!v->header_done)
        ds_csv_problem(v, 1, "the file is empty: a header row is required");
    else if (v->rows == 0)
        ds_csv_problem(v, v->line, "no data rows after the header");
}
