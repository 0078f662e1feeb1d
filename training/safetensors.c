/* safetensors encoder (safetensors.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
};

static void put(struct sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 1024;
        while (nc < b->len + n + 1)
            nc *= 2;
        char *np = realloc(b->p, nc);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void puts_(struct sbuf *b, const char *s)
{
    put(b, s, strlen(s));
}

/* A JSON string literal. */
static void put_jstr(struct sbuf *b, const char *s)
{
    put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char e[8];
        if (c == '"' || c == '\\') {
            e[0] = '\\';
            e[1] = (char)c;
            put(b, e, 2);
        } else if (c < 0x20) {
            snprintf(e, sizeof(e), "\\u%04x", c);
            put(b, e, 6);
        } else
            put(b, (const char *)&c, 1);
    }
    put(b, "\"", 1);
}

/* A JSON array of strings, as a string (metadata values are strings). */
static char *json_str_array(char *const *v, size_t n)
{
    struct sbuf b = {0};
    puts_(&b, "[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            puts_(&b, ",");
        put_jstr(&b, v[i]);
    }
    puts_(&b, "]");
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

struct kv {
    char *key, *value;
};

static int cmp_kv(const void *a, const void *b)
{
    return strcmp(((const struct kv *)a)->key, ((const struct kv *)b)->key);
}

struct tensor {
    char name[48]; /* "layers.<size_t>.weight" fits whatever the index */
    size_t shape[2], rank;
    const double *data;
};

static int cmp_tensor(const void *a, const void *b)
{
    return strcmp(((const struct tensor *)a)->name, ((const struct tensor *)b)->name);
}

static void le_put(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

int dcms_st_encode(const struct dcms_trainer_model *m, const struct dcms_trainer_data *d,
                   const struct dcms_trainer_config *cfg, const struct dcms_st_kv *meta,
                   size_t n_meta, int f64, uint8_t **out, size_t *out_len)
{
    int rc = -1;
    struct kv *kv = calloc(n_meta + 16, sizeof(*kv));
    size_t nkv = 0;
    struct sbuf h = {0};
    struct tensor ts[2 * (DCMS_TRAINER_MAX_HIDDEN + 1) + 2];
    size_t nt = 0;
    char num[64];
    uint8_t *buf = NULL;
    if (!kv)
        return -1;
#define ADD(k, v)                                                                                  \
    do {                                                                                           \
        kv[nkv].key = strdup(k);                                                                   \
        kv[nkv].value = (v);                                                                       \
        if (!kv[nkv].key || !kv[nkv].value) {                                                      \
            nkv++;                                                                                 \
            goto out;                                                                              \
        }                                                                                          \
        nkv++;                                                                                     \
    } while (0)
    for (size_t i = 0; i < n_meta; i++) {
        if (!meta[i].key || !meta[i].value)
            goto out;
        ADD(meta[i].key, strdup(meta[i].value));
    }
    ADD("format", strdup("pt"));
    ADD("model", strdup(m->kind == DCMS_MODEL_MLP ? "mlp" : "logistic_regression"));
    ADD("feature_names", json_str_array(d->feature_names, d->features));
    ADD("label_names", json_str_array(d->label_names, d->labels));
    {
        struct sbuf s = {0};
        puts_(&s, "[");
        for (size_t l = 0; l <= m->n_layers; l++) {
            snprintf(num, sizeof(num), "%s%zu", l ? "," : "", m->sizes[l]);
            puts_(&s, num);
        }
        puts_(&s, "]");
        if (s.oom) {
            free(s.p);
            goto out;
        }
        ADD("layer_sizes", s.p);
    }
    ADD("output", strdup(m->labels == 2 ? "sigmoid" : "softmax"));
    if (cfg && cfg->dp) {
        snprintf(num, sizeof(num), "%.17g", cfg->noise_multiplier);
        ADD("dp.noise_multiplier", strdup(num));
        snprintf(num, sizeof(num), "%.17g", cfg->max_grad_norm);
        ADD("dp.max_grad_norm", strdup(num));
        snprintf(num, sizeof(num), "%.17g", m->dp_q);
        ADD("dp.sample_rate", strdup(num));
        snprintf(num, sizeof(num), "%llu", (unsigned long long)m->dp_steps);
        ADD("dp.steps", strdup(num));
    }
#undef ADD
    qsort(kv, nkv, sizeof(*kv), cmp_kv);
    for (size_t i = 1; i < nkv; i++)
        if (!strcmp(kv[i].key, kv[i - 1].key))
            goto out; /* a caller key collides with the trainer's */

    const double *p = m->params;
    for (size_t l = 0; l < m->n_layers; l++) {
        struct tensor *w = &ts[nt++], *b = &ts[nt++];
        snprintf(w->name, sizeof(w->name), "layers.%zu.weight", l);
        w->rank = 2;
        w->shape[0] = m->sizes[l + 1];
        w->shape[1] = m->sizes[l];
        w->data = p;
        p += w->shape[0] * w->shape[1];
        snprintf(b->name, sizeof(b->name), "layers.%zu.bias", l);
        b->rank = 1;
        b->shape[0] = m->sizes[l + 1];
        b->data = p;
        p += b->shape[0];
    }
    ts[nt] =
        (struct tensor){.name = "scaler.mean", .rank = 1, .shape = {m->features}, .data = m->mean};
    nt++;
    ts[nt] =
        (struct tensor){.name = "scaler.std", .rank = 1, .shape = {m->features}, .data = m->std};
    nt++;
    qsort(ts, nt, sizeof(ts[0]), cmp_tensor);

    size_t esz = f64 ? 8 : 4, off = 0;
    puts_(&h, "{\"__metadata__\":{");
    for (size_t i = 0; i < nkv; i++) {
        if (i)
            puts_(&h, ",");
        put_jstr(&h, kv[i].key);
        puts_(&h, ":");
        put_jstr(&h, kv[i].value);
    }
    puts_(&h, "}");
    for (size_t i = 0; i < nt; i++) {
        size_t n = ts[i].shape[0] * (ts[i].rank == 2 ? ts[i].shape[1] : 1);
        puts_(&h, ",");
        put_jstr(&h, ts[i].name);
        snprintf(num, sizeof(num), ":{\"dtype\":\"%s\",\"shape\":[", f64 ? "F64" : "F32");
        puts_(&h, num);
        if (ts[i].rank == 2)
            snprintf(num, sizeof(num), "%zu,%zu", ts[i].shape[0], ts[i].shape[1]);
        else
            snprintf(num, sizeof(num), "%zu", ts[i].shape[0]);
        puts_(&h, num);
        snprintf(num, sizeof(num), "],\"data_offsets\":[%zu,%zu]}", off, off + n * esz);
        puts_(&h, num);
        off += n * esz;
    }
    puts_(&h, "}");
    while (!h.oom && h.len % 8)
        puts_(&h, " ");
    if (h.oom)
        goto out;
    size_t total = 8 + h.len + off;
    buf = malloc(total);
    if (!buf)
        goto out;
    le_put(buf, h.len, 8);
    memcpy(buf + 8, h.p, h.len);
    uint8_t *q = buf + 8 + h.len;
    for (size_t i = 0; i < nt; i++) {
        size_t n = ts[i].shape[0] * (ts[i].rank == 2 ? ts[i].shape[1] : 1);
        for (size_t j = 0; j < n; j++) {
            if (f64) {
                uint64_t u;
                memcpy(&u, &ts[i].data[j], 8);
                le_put(q, u, 8);
                q += 8;
            } else {
                float f = (float)ts[i].data[j];
                uint32_t u;
                memcpy(&u, &f, 4);
                le_put(q, u, 4);
                q += 4;
            }
        }
    }
    *out = buf;
    *out_len = total;
    buf = NULL;
    rc = 0;
out:
    for (size_t i = 0; i < nkv; i++) {
        free(kv[i].key);
        free(kv[i].value);
    }
    free(kv);
    free(h.p);
    free(buf);
    return rc;
}
