/*
 * A readable diff of two JSON documents (terms versions): both are
 * flattened into "path = value" lines (terms.retention.days = 30,
 * terms.usage.purposes[0] = "research"), then compared by path. Used by
 * `dcms contracts diff` and by `dcms contracts sign` (what changed since
 * the version this signer last signed).
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dcms/banned.h"

struct flat {
    char **path, **value;
    size_t n, cap;
};

static void flat_add(struct flat *f, const char *path, json_t *v)
{
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 64;
        char **p = realloc(f->path, cap * sizeof *p);
        if (!p)
            return;
        f->path = p;
        char **q = realloc(f->value, cap * sizeof *q);
        if (!q)
            return;
        f->value = q;
        f->cap = cap;
    }
    f->path[f->n] = strdup(path);
    f->value[f->n] = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (f->path[f->n] && f->value[f->n])
        f->n++;
    else {
        free(f->path[f->n]);
        free(f->value[f->n]);
    }
}

static void flatten(struct flat *f, const char *prefix, json_t *v)
{
    char path[1024];
    if (json_is_object(v) && json_object_size(v) > 0) {
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x)
        {
            snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", k);
            flatten(f, path, x);
        }
    } else if (json_is_array(v) && json_array_size(v) > 0) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x)
        {
            snprintf(path, sizeof path, "%s[%zu]", prefix, i);
            flatten(f, path, x);
        }
    } else {
        flat_add(f, *prefix ? prefix : ".", v);
    }
}

static void flat_release(struct flat *f)
{
    for (size_t i = 0; i < f->n; i++) {
        free(f->path[i]);
        free(f->value[i]);
    }
    free(f->path);
    free(f->value);
}

static long find(const struct flat *f, const char *path)
{
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->path[i], path) == 0)
            return (long)i;
    return -1;
}

size_t cli_json_diff(json_t *a, json_t *b, FILE *out, bool color)
{
    struct flat fa = {0}, fb = {0};
    size_t changes = 0;
    flatten(&fa, "", a);
    flatten(&fb, "", b);
    const char *red = color ? "\033[31m" : "", *green = color ? "\033[32m" : "",
               *off = color ? "\033[0m" : "";
    for (size_t i = 0; i < fa.n; i++) {
        long j = find(&fb, fa.path[i]);
        if (j < 0) {
            fprintf(out, "%s- %s = %s%s\n", red, fa.path[i], fa.value[i], off);
            changes++;
        } else if (strcmp(fa.value[i], fb.value[j]) != 0) {
            fprintf(out, "%s- %s = %s%s\n%s+ %s = %s%s\n", red, fa.path[i], fa.value[i], off, green,
                    fb.path[j], fb.value[j], off);
            changes++;
        }
    }
    for (size_t j = 0; j < fb.n; j++)
        if (find(&fa, fb.path[j]) < 0) {
            fprintf(out, "%s+ %s = %s%s\n", green, fb.path[j], fb.value[j], off);
            changes++;
        }
    flat_release(&fa);
    flat_release(&fb);
    return changes;
}
