/*
 * Schema inference for `dcms datasets`: reads a CSV file with a header row
 * and proposes the dataset schema (docs/datasets.md): per column integer,
 * number, category (at most 50 distinct values) or text, and the label
 * column's distinct values as label_values.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dcms/banned.h"

#define CATEGORY_MAX 50
#define LABEL_VALUES_MAX 1000
#define LINE_MAX_BYTES (1024 * 1024)

struct column {
    char *name;
    bool all_int, all_num;
    char **values;
    size_t nvalues;
    bool too_many;
};

/* Splits one CSV line in place into fields (double quotes may wrap a field; "" is a quote). */
static size_t split_csv(char *line, char **fields, size_t max)
{
    size_t n = 0;
    char *p = line;
    for (;;) {
        if (n == max)
            return n + 1;
        char *start = p, *w = p;
        if (*p == '"') {
            p++;
            start = w = p;
            for (; *p; p++) {
                if (*p == '"' && p[1] == '"') {
                    *w++ = '"';
                    p++;
                } else if (*p == '"') {
                    p++;
                    break;
                } else {
                    *w++ = *p;
                }
            }
            while (*p && *p != ',')
                p++;
        } else {
            while (*p && *p != ',')
                p++;
            w = p;
        }
        char end = *p;
        *w = '\0';
        fields[n++] = start;
        if (end != ',')
            return n;
        p++;
    }
}

static bool is_int(const char *s)
{
    if (*s == '-' || *s == '+')
        s++;
    if (!*s)
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

static bool is_num(const char *s)
{
    char *end;
    if (!*s)
        return false;
    errno = 0;
    strtod(s, &end);
    return *end == '\0' && errno == 0;
}

static void add_value(struct column *col, const char *v, size_t max)
{
    if (col->too_many)
        return;
    for (size_t i = 0; i < col->nvalues; i++)
        if (strcmp(col->values[i], v) == 0)
            return;
    if (col->nvalues == max) {
        col->too_many = true;
        return;
    }
    char **vals = realloc(col->values, (col->nvalues + 1) * sizeof *vals);
    if (!vals) {
        col->too_many = true;
        return;
    }
    col->values = vals;
    if ((col->values[col->nvalues] = strdup(v)))
        col->nvalues++;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A value array of the column's distinct values, sorted (numerically when they are integers). */
static int cmp_int_str(const void *a, const void *b)
{
    long long x = strtoll(*(char *const *)a, NULL, 10), y = strtoll(*(char *const *)b, NULL, 10);
    return x < y ? -1 : x > y;
}

json_t *cli_infer_schema(const char *path, const char *label, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    char *line = NULL, *fields[1001];
    size_t cap = 0, ncol = 0, lineno = 0;
    struct column *cols = NULL;
    json_t *schema = NULL;
    long label_idx = -1;
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    ssize_t got;
    while ((got = getline(&line, &cap, f)) > 0) {
        lineno++;
        if (got > LINE_MAX_BYTES) {
            snprintf(err, errlen, "%s:%zu: line longer than %d bytes", path, lineno,
                     LINE_MAX_BYTES);
            goto out;
        }
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r'))
            line[--got] = '\0';
        if (got == 0)
            continue;
        size_t n = split_csv(line, fields, 1000);
        if (n > 1000) {
            snprintf(err, errlen, "%s:%zu: more than 1000 columns", path, lineno);
            goto out;
        }
        if (!cols) {
            ncol = n;
            if (!(cols = calloc(ncol, sizeof *cols)))
                goto oom;
            for (size_t i = 0; i < ncol; i++) {
                if (!(cols[i].name = strdup(fields[i])))
                    goto oom;
                cols[i].all_int = cols[i].all_num = true;
                if (label && strcmp(fields[i], label) == 0)
                    label_idx = (long)i;
            }
            if (label_idx < 0) {
                snprintf(err, errlen, "%s: no column \"%s\" in the header row (--label)", path,
                         label ? label : "");
                goto out;
            }
            continue;
        }
        if (n != ncol) {
            snprintf(err, errlen, "%s:%zu: %zu fields, the header has %zu", path, lineno, n, ncol);
            goto out;
        }
        for (size_t i = 0; i < ncol; i++) {
            struct column *col = &cols[i];
            col->all_int = col->all_int && is_int(fields[i]);
            col->all_num = col->all_num && (col->all_int || is_num(fields[i]));
            add_value(col, fields[i], (long)i == label_idx ? LABEL_VALUES_MAX : CATEGORY_MAX);
        }
    }
    if (!cols || lineno < 2) {
        snprintf(err, errlen, "%s: needs a header row and at least one data row", path);
        goto out;
    }
    json_t *jcols = json_array(), *labels = json_array();
    schema = json_pack("{s:o, s:s, s:o}", "columns", jcols, "label", label, "label_values", labels);
    if (!schema)
        goto oom;
    for (size_t i = 0; i < ncol; i++) {
        struct column *col = &cols[i];
        const char *type = col->all_int                         ? "integer"
                           : col->all_num                       ? "number"
                           : !col->too_many && col->nvalues > 0 ? "category"
                                                                : "text";
        json_t *jc = json_pack("{s:s, s:s}", "name", col->name, "type", type);
        if ((long)i == label_idx) {
            if (col->too_many || col->nvalues == 0 || (!col->all_int && col->all_num)) {
                snprintf(err, errlen,
                         "%s: the label column \"%s\" needs at most %d distinct integer or "
                         "category values",
                         path, label, LABEL_VALUES_MAX);
                json_decref(jc);
                json_decref(schema);
                schema = NULL;
                goto out;
            }
            qsort(col->values, col->nvalues, sizeof *col->values,
                  col->all_int ? cmp_int_str : cmp_str);
            for (size_t j = 0; j < col->nvalues; j++)
                json_array_append_new(labels, json_string(col->values[j]));
            if (!col->all_int)
                json_object_set_new(jc, "type", json_string("category"));
        }
        if (strcmp(json_string_value(json_object_get(jc, "type")), "category") == 0) {
            json_t *vals = json_array();
            qsort(col->values, col->nvalues, sizeof *col->values, cmp_str);
            for (size_t j = 0; j < col->nvalues; j++)
                json_array_append_new(vals, json_string(col->values[j]));
            json_object_set_new(jc, "values", vals);
        }
        json_array_append_new(jcols, jc);
    }
    goto out;
oom:
    snprintf(err, errlen, "out of memory");
out:
    for (size_t i = 0; cols && i < ncol; i++) {
        free(cols[i].name);
        for (size_t j = 0; j < cols[i].nvalues; j++)
            free(cols[i].values[j]);
        free(cols[i].values);
    }
    free(cols);
    free(line);
    fclose(f);
    return schema;
}
