/*
 * Codecs of the datasets service: the schema of a CSV dataset, decoded
 * with every problem reported at once under its JSON path.
 *
 *   {"columns": [{"name": "radius", "type": "number"},
 *                {"name": "diagnosis", "type": "category", "values": ["0", "1"]}],
 *    "label": "diagnosis", "label_values": ["0", "1"]}
 */
#include <string.h>

#include "datasets/datasets_int.h"
#include "dcms/arena.h"

static bool str_ok(const json_t *v, size_t max)
{
    return json_is_string(v) && json_string_length(v) >= 1 && json_string_length(v) <= max &&
           strlen(json_string_value(v)) == json_string_length(v);
}

/* An array of 1..DS_MAX_VALUES distinct strings of 1..255 bytes, copied into the arena. */
static bool values_of(struct dcms_arena *a, const json_t *v, const char *path, const char ***out,
                      size_t *n, struct dcms_errinfo *ei)
{
    if (!json_is_array(v) || json_array_size(v) < 1 || json_array_size(v) > DS_MAX_VALUES) {
        dcms_err_field(ei, path, "must be an array of 1 to %d strings", DS_MAX_VALUES);
        return false;
    }
    size_t k = json_array_size(v);
    const char **vals = dcms_arena_calloc(a, k, sizeof(*vals));
    if (!vals) {
        dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
        return false;
    }
    bool ok = true;
    for (size_t i = 0; i < k; i++) {
        const json_t *x = json_array_get(v, i);
        char p[96];
        snprintf(p, sizeof(p), "%s[%zu]", path, i);
        if (!str_ok(x, 255)) {
            dcms_err_field(ei, p, "must be a string of 1 to 255 characters");
            ok = false;
            continue;
        }
        vals[i] = json_string_value(x);
        for (size_t j = 0; j < i; j++)
            if (vals[j] && strcmp(vals[j], vals[i]) == 0) {
                dcms_err_field(ei, p, "is given more than once");
                ok = false;
            }
    }
    *out = vals;
    *n = k;
    return ok;
}

enum dcms_err ds_schema_from_json(struct dcms_arena *a, const json_t *v, struct ds_schema *out,
                                  struct dcms_errinfo *ei)
{
    memset(out, 0, sizeof(*out));
    if (!json_is_object(v))
        return dcms_err_field(ei, "schema", "must be an object");
    const char *key;
    json_t *x;
    json_object_foreach((json_t *)v, key, x)
    {
        if (strcmp(key, "columns") && strcmp(key, "label") && strcmp(key, "label_values"))
            dcms_err_field(ei, "schema", "member %.40s is not a known field", key);
    }
    const json_t *cols = json_object_get(v, "columns");
    if (!json_is_array(cols) || json_array_size(cols) < 1 ||
        json_array_size(cols) > DS_MAX_COLUMNS) {
        dcms_err_field(ei, "schema.columns", "must be an array of 1 to %d columns", DS_MAX_COLUMNS);
    } else {
        out->ncols = json_array_size(cols);
        out->cols = dcms_arena_calloc(a, out->ncols, sizeof(*out->cols));
        if (!out->cols)
            return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
        for (size_t i = 0; i < out->ncols; i++) {
            const json_t *c = json_array_get(cols, i);
            char p[64];
            snprintf(p, sizeof(p), "schema.columns[%zu]", i);
            if (!json_is_object(c)) {
                dcms_err_field(ei, p, "must be an object with name and type");
                continue;
            }
            json_object_foreach((json_t *)c, key, x)
            {
                if (strcmp(key, "name") && strcmp(key, "type") && strcmp(key, "values"))
                    dcms_err_field(ei, p, "member %.40s is not a known field", key);
            }
            char f[96];
            const json_t *name = json_object_get(c, "name");
            snprintf(f, sizeof(f), "%s.name", p);
            if (!str_ok(name, DS_NAME_MAX) || strpbrk(json_string_value(name), ",\"\r\n"))
                dcms_err_field(ei, f,
                               "must be a string of 1 to %d characters without a comma, a "
                               "quote or a line break",
                               DS_NAME_MAX);
            else
                out->cols[i].name = json_string_value(name);
            for (size_t j = 0; out->cols[i].name && j < i; j++)
                if (out->cols[j].name && strcmp(out->cols[j].name, out->cols[i].name) == 0)
                    dcms_err_field(ei, f, "is the name of column %zu too", j);
            const char *t = json_string_value(json_object_get(c, "type"));
            snprintf(f, sizeof(f), "%s.type", p);
            if (t && strcmp(t, "number") == 0)
                out->cols[i].type = DS_NUMBER;
            else if (t && strcmp(t, "integer") == 0)
                out->cols[i].type = DS_INTEGER;
            else if (t && strcmp(t, "category") == 0)
                out->cols[i].type = DS_CATEGORY;
            else if (t && strcmp(t, "text") == 0)
                out->cols[i].type = DS_TEXT;
            else
                dcms_err_field(ei, f, "must be number, integer, category or text");
            const json_t *vals = json_object_get(c, "values");
            snprintf(f, sizeof(f), "%s.values", p);
            if (vals && (!t || strcmp(t, "category") != 0))
                dcms_err_field(ei, f, "is allowed for category columns only");
            else if (vals)
                values_of(a, vals, f, &out->cols[i].values, &out->cols[i].nvalues, ei);
        }
    }
    const json_t *label = json_object_get(v, "label");
    if (!str_ok(label, DS_NAME_MAX)) {
        dcms_err_field(ei, "schema.label", "must name one of the columns");
    } else {
        bool found = false;
        for (size_t i = 0; i < out->ncols; i++)
            if (out->cols[i].name && strcmp(out->cols[i].name, json_string_value(label)) == 0) {
                out->label = i;
                found = true;
                if (out->cols[i].type == DS_TEXT || out->cols[i].type == DS_NUMBER)
                    dcms_err_field(ei, "schema.label", "must name a category or integer column");
            }
        if (!found && out->ncols)
            dcms_err_field(ei, "schema.label", "must name one of the columns");
    }
    values_of(a, json_object_get(v, "label_values"), "schema.label_values", &out->label_values,
              &out->nlabel_values, ei);
    return ei->code;
}
