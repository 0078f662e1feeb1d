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
 * (tests/unit/test_datasets_csv.c compares them).
 */
bool ds_csv_number_ok(const char *s, size_t len, bool integer)
{
    size_t i = 0, digits = 0;
    if (i < len && (s[i] == '+' || s[i] == '-'))
        i++;
    while (i < len && is_digit(s[i]))
        i++, digits++;
    if (integer)
        return digits > 0 && i == len && (digits <= 18 || ds_csv_number_ok_libc(s, true));
    if (i < len && s[i] == '.') {
        i++;
        while (i < len && is_digit(s[i]))
            i++, digits++;
    }
    if (digits == 0)
        return false;
    if (i == len)
        return true; /* at most DS_FIELD_MAX digits: within 1e-256..1e256 */
    if (s[i] != 'e' && s[i] != 'E')
        return false;
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
        return false;
    /* mantissa within 1e-256..1e256; an exponent up to 40 keeps it a normal double */
    return exp <= 40 || ds_csv_number_ok_libc(s, false);
}

static bool in_list(const char *s, const char **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, list[i]) == 0)
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

static void end_record(struct ds_csv *v, const struct ds_schema *s)
{
    end_field(v, s);
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

void ds_csv_feed(struct ds_csv *v, const struct ds_schema *s, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = p[i];
        if (v->at_record_start) {
            v->at_record_start = false;
            v->record_line = v->line;
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
