/*
 * The trainer core (trainer.h): CSV parsing, split, standardisation, the two
 * models, SGD/Adam, DP-SGD and the held-out metrics. See training/README.md.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trainer.h"
#include "trainer_noise.h"

__attribute__((format(printf, 3, 4))) static enum dcms_trainer_rc fail(char *err, size_t errlen,
                                                                       const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return DCMS_TRAINER_EINVAL;
}

void dcms_trainer_config_defaults(struct dcms_trainer_config *c)
{
    memset(c, 0, sizeof(*c));
    c->split = DCMS_SPLIT_MODULO;
    c->folds = 5;
    c->holdout_fold = 4;
    c->fraction = 0.2;
    c->model = DCMS_MODEL_LOGISTIC;
    c->optimizer = DCMS_OPTIM_SGD;
    c->learning_rate = 0.1;
    c->beta1 = 0.9;
    c->beta2 = 0.999;
    c->adam_eps = 1e-8;
    c->epochs = 100;
    c->max_grad_norm = 1.0;
}

uint64_t dcms_trainer_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [0,1) with 53 bits. */
static double unit53(uint64_t v)
{
    return (double)(v >> 11) * 0x1.0p-53;
}

int dcms_trainer_split_holdout(const struct dcms_trainer_config *cfg, size_t r)
{
    if (cfg->split == DCMS_SPLIT_MODULO)
        return cfg->folds > 0 && r % cfg->folds == cfg->holdout_fold;
    /* Row r's draw is the (r+1)-th output of splitmix64 started at the seed. */
    uint64_t s = cfg->split_seed + (uint64_t)r * 0x9e3779b97f4a7c15ull;
    return unit53(dcms_trainer_splitmix64(&s)) < cfg->fraction;
}

size_t dcms_trainer_train_rows(const struct dcms_trainer_config *cfg, size_t rows)
{
    size_t n = 0;
    for (size_t r = 0; r < rows; r++)
        n += !dcms_trainer_split_holdout(cfg, r);
    return n;
}

void dcms_trainer_batching(const struct dcms_trainer_config *cfg, size_t ntr, size_t *batch,
                           size_t *steps_per_epoch, double *q)
{
    size_t B = cfg->batch_size == 0 || cfg->batch_size > ntr ? ntr : cfg->batch_size;
    *batch = B;
    *steps_per_epoch = B ? (ntr + B - 1) / B : 0;
    *q = ntr ? (double)B / (double)ntr : 0;
}

/* ---- CSV ---- */

struct field {
    char *s;
};

struct csv {
    const char *p, *end;
};

/* Reads one field into a fresh string; sets *eol at end of record. -1 on error. */
static int csv_field(struct csv *c, char **out, int *eol)
{
    size_t cap = 16, n = 0;
    char *b = malloc(cap);
    if (!b)
        return -1;
    int quoted = c->p < c->end && *c->p == '"';
    if (quoted)
        c->p++;
    for (;;) {
        if (c->p >= c->end) {
            if (quoted)
                goto bad;
            *eol = 1;
            break;
        }
        char ch = *c->p;
        if (quoted) {
            if (ch == '"') {
                if (c->p + 1 < c->end && c->p[1] == '"') {
                    c->p += 2;
                    ch = '"';
                } else {
                    c->p++;
                    quoted = 0;
                    if (c->p < c->end && *c->p != ',' && *c->p != '\n' && *c->p != '\r')
                        goto bad;
                    continue;
                }
            } else
                c->p++;
        } else {
            if (ch == ',') {
                c->p++;
                *eol = 0;
                break;
            }
            if (ch == '\n' || ch == '\r') {
                if (ch == '\r' && c->p + 1 < c->end && c->p[1] == '\n')
                    c->p++;
                c->p++;
                *eol = 1;
                break;
            }
            if (ch == '"' || ch == '\0')
                goto bad;
            c->p++;
        }
        if (n + 2 > cap) {
            if (cap > (1u << 20))
                goto bad;
            cap *= 2;
            char *nb = realloc(b, cap);
            if (!nb)
                goto bad;
            b = nb;
        }
        b[n++] = ch;
    }
    b[n] = '\0';
    *out = b;
    return 0;
bad:
    free(b);
    return -1;
}

/* Reads one record into fields[cap]; returns the count, 0 at end of input, -1 on error. */
static long csv_record(struct csv *c, char **fields, size_t cap)
{
    if (c->p >= c->end)
        return 0;
    size_t n = 0;
    int eol = 0;
    while (!eol) {
        char *f;
        if (n >= cap || csv_field(c, &f, &eol) < 0) {
            for (size_t i = 0; i < n; i++)
                free(fields[i]);
            return -1;
        }
        fields[n++] = f;
    }
    return (long)n;
}

static void free_fields(char **f, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(f[i]);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int parse_number(const char *s, int integer, double *out)
{
    if (!*s || *s == ' ' || *s == '\t')
        return -1;
    char *e;
    double v = strtod(s, &e);
    if (*e || !isfinite(v))
        return -1;
    if (integer && v != floor(v))
        return -1;
    *out = v;
    return 0;
}

enum dcms_trainer_rc dcms_trainer_data_parse(const char *csv, size_t len,
                                             const struct dcms_trainer_config *cfg,
                                             struct dcms_trainer_data *out, char *err,
                                             size_t errlen)
{
    enum dcms_trainer_rc rc = DCMS_TRAINER_ENOMEM;
    struct csv c = {csv, csv + len};
    char **hdr = calloc(DCMS_TRAINER_MAX_COLS, sizeof(char *));
    char **rec = calloc(DCMS_TRAINER_MAX_COLS, sizeof(char *));
    int *role = calloc(DCMS_TRAINER_MAX_COLS, sizeof(int)); /* 0 skip, 1 feature, 2 label */
    int *isint = calloc(DCMS_TRAINER_MAX_COLS, sizeof(int));
    char **labels = NULL;
    char **rowlab = NULL;
    size_t ncols = 0, nlab = 0, rows = 0, rcap = 0, nfeat = 0;
    memset(out, 0, sizeof(*out));
    if (!hdr || !rec || !role || !isint)
        goto out;
    long n = csv_record(&c, hdr, DCMS_TRAINER_MAX_COLS);
    if (n <= 0) {
        rc = fail(err, errlen, "the csv has no header row");
        goto out;
    }
    ncols = (size_t)n;
    long label_col = -1;
    for (size_t i = 0; i < ncols; i++) {
        for (size_t j = 0; j < i; j++)
            if (!strcmp(hdr[i], hdr[j])) {
                rc = fail(err, errlen, "column \"%s\" appears twice in the header", hdr[i]);
                goto out;
            }
        if (cfg->label && !strcmp(hdr[i], cfg->label)) {
            label_col = (long)i;
            role[i] = 2;
            continue;
        }
        enum dcms_trainer_coltype t = DCMS_COL_NUMBER;
        if (cfg->schema) {
            size_t k;
            for (k = 0; k < cfg->schema_len; k++)
                if (!strcmp(cfg->schema[k].name, hdr[i]))
                    break;
            if (k == cfg->schema_len) {
                rc = fail(err, errlen, "column \"%s\" is not in the schema", hdr[i]);
                goto out;
            }
            t = cfg->schema[k].type;
        }
        if (t == DCMS_COL_CATEGORY) {
            rc = fail(err, errlen,
                      "column \"%s\": category features are not supported (one-hot encode them "
                      "before upload, or declare the column text to leave it out)",
                      hdr[i]);
            goto out;
        }
        if (t == DCMS_COL_TEXT)
            continue;
        role[i] = 1;
        isint[i] = t == DCMS_COL_INTEGER;
        nfeat++;
    }
    if (label_col < 0) {
        rc = fail(err, errlen, "label column \"%s\" is not in the header",
                  cfg->label ? cfg->label : "");
        goto out;
    }
    if (!nfeat) {
        rc = fail(err, errlen, "the csv has no feature column");
        goto out;
    }
    out->features = nfeat;
    for (;;) {
        /* A blank last line ends the data. */
        if (c.p < c.end && (*c.p == '\n' || *c.p == '\r')) {
            const char *q = c.p;
            while (q < c.end && (*q == '\n' || *q == '\r'))
                q++;
            if (q == c.end)
                break;
        }
        n = csv_record(&c, rec, DCMS_TRAINER_MAX_COLS);
        if (n == 0)
            break;
        if (n < 0 || (size_t)n != ncols) {
            if (n > 0)
                free_fields(rec, (size_t)n);
            rc = fail(err, errlen, "row %zu: expected %zu fields", rows + 1, ncols);
            goto out;
        }
        if (rows == rcap) {
            size_t nc = rcap ? rcap * 2 : 256;
            double *nx = realloc(out->x, nc * nfeat * sizeof(double));
            if (nx)
                out->x = nx;
            char **nl = realloc(rowlab, nc * sizeof(char *));
            if (nl)
                rowlab = nl;
            if (!nx || !nl) {
                free_fields(rec, ncols);
                goto out;
            }
            rcap = nc;
        }
        size_t f = 0;
        for (size_t i = 0; i < ncols; i++) {
            if (role[i] == 1) {
                if (parse_number(rec[i], isint[i], &out->x[rows * nfeat + f++]) < 0) {
                    rc = fail(err, errlen, "row %zu, column \"%s\": not %s", rows + 1, hdr[i],
                              isint[i] ? "an integer" : "a finite number");
                    free_fields(rec, ncols);
                    goto out;
                }
            }
        }
        if (!rec[label_col][0]) {
            rc = fail(err, errlen, "row %zu: empty label", rows + 1);
            free_fields(rec, ncols);
            goto out;
        }
        rowlab[rows] = rec[label_col];
        rec[label_col] = NULL;
        free_fields(rec, ncols);
        rows++;
    }
    if (rows < 2) {
        rc = fail(err, errlen, "the csv has fewer than two data rows");
        goto out;
    }
    /* Labels: the distinct values in byte order. */
    labels = malloc(rows * sizeof(char *));
    if (!labels)
        goto out;
    memcpy(labels, rowlab, rows * sizeof(char *));
    qsort(labels, rows, sizeof(char *), cmp_str);
    for (size_t i = 0; i < rows; i++)
        if (!nlab || strcmp(labels[nlab - 1], labels[i]))
            labels[nlab++] = labels[i];
    if (nlab < 2 || nlab > DCMS_TRAINER_MAX_LABELS) {
        rc = fail(err, errlen, "the label column has %zu distinct values (2..%u allowed)", nlab,
                  DCMS_TRAINER_MAX_LABELS);
        goto out;
    }
    out->labels = nlab;
    out->rows = rows;
    out->y = malloc(rows * sizeof(uint32_t));
    out->label_names = calloc(nlab, sizeof(char *));
    out->feature_names = calloc(nfeat, sizeof(char *));
    if (!out->y || !out->label_names || !out->feature_names)
        goto out;
    for (size_t i = 0; i < rows; i++) {
        char **hit = bsearch(&rowlab[i], labels, nlab, sizeof(char *), cmp_str);
        out->y[i] = (uint32_t)(hit - labels);
    }
    for (size_t k = 0; k < nlab; k++)
        if (!(out->label_names[k] = strdup(labels[k])))
            goto out;
    for (size_t i = 0, f = 0; i < ncols; i++)
        if (role[i] == 1 && !(out->feature_names[f++] = strdup(hdr[i])))
            goto out;
    rc = DCMS_TRAINER_OK;
out:
    if (rowlab)
        free_fields(rowlab, rows);
    free(rowlab);
    free(labels);
    if (hdr)
        free_fields(hdr, ncols);
    free(hdr);
    free(rec);
    free(role);
    free(isint);
    if (rc != DCMS_TRAINER_OK)
        dcms_trainer_data_free(out);
    return rc;
}

void dcms_trainer_data_free(struct dcms_trainer_data *d)
{
    if (d->feature_names)
        free_fields(d->feature_names, d->features);
    if (d->label_names)
        free_fields(d->label_names, d->labels);
    free(d->feature_names);
    free(d->label_names);
    free(d->x);
    free(d->y);
    memset(d, 0, sizeof(*d));
}

/* ---- model ---- */

static size_t layer_params(const struct dcms_trainer_model *m, size_t l)
{
    return m->sizes[l + 1] * m->sizes[l] + m->sizes[l + 1];
}

static size_t widest(const struct dcms_trainer_model *m)
{
    size_t w = 0;
    for (size_t l = 0; l <= m->n_layers; l++)
        if (m->sizes[l] > w)
            w = m->sizes[l];
    return w;
}

/* Forward pass; act holds n_layers+1 rows of `stride`; act[0] = x. Returns the logits row. */
static double *forward(const struct dcms_trainer_model *m, const double *x, double *act,
                       size_t stride)
{
    memcpy(act, x, m->sizes[0] * sizeof(double));
    const double *p = m->params;
    for (size_t l = 0; l < m->n_layers; l++) {
        size_t in = m->sizes[l], outn = m->sizes[l + 1];
        const double *a = act + l * stride;
        double *z = act + (l + 1) * stride;
        const double *b = p + outn * in;
        for (size_t o = 0; o < outn; o++) {
            const double *w = p + o * in;
            double s = b[o];
            for (size_t i = 0; i < in; i++)
                s += w[i] * a[i];
            z[o] = (l + 1 < m->n_layers && s < 0) ? 0 : s;
        }
        p += layer_params(m, l);
    }
    return act + m->n_layers * stride;
}

/* Probabilities from the logits into prob[labels]; returns -log p(y) when y >= 0. */
static double output(const struct dcms_trainer_model *m, const double *z, double *prob, long y)
{
    if (m->labels == 2) {
        double t = z[0];
        double p1 = t >= 0 ? 1 / (1 + exp(-t)) : exp(t) / (1 + exp(t));
        prob[0] = 1 - p1;
        prob[1] = p1;
        /* softplus(t) - y t, stably */
        double sp = t > 0 ? t + log1p(exp(-t)) : log1p(exp(t));
        return y < 0 ? 0 : sp - (y == 1 ? t : 0);
    }
    double mx = z[0];
    for (size_t k = 1; k < m->labels; k++)
        if (z[k] > mx)
            mx = z[k];
    double s = 0;
    for (size_t k = 0; k < m->labels; k++)
        s += (prob[k] = exp(z[k] - mx));
    for (size_t k = 0; k < m->labels; k++)
        prob[k] /= s;
    return y < 0 ? 0 : mx + log(s) - z[y];
}

void dcms_trainer_predict(const struct dcms_trainer_model *m, const double *x, double *out)
{
    size_t stride = widest(m);
    double *act = malloc((m->n_layers + 1) * stride * sizeof(double));
    if (!act) {
        for (size_t k = 0; k < m->labels; k++)
            out[k] = 0;
        return;
    }
    output(m, forward(m, x, act, stride), out, -1);
    free(act);
}

/*
 * Gradient of one example's loss, added into g (assign: written over g, so
 * g needs no clearing). delta and dprev are scratch of `stride`. Returns
 * the example's loss.
 */
static double backprop(const struct dcms_trainer_model *m, const double *x, uint32_t y, double *act,
                       size_t stride, double *prob, double *delta, double *dprev, double *g,
                       int assign)
{
    const double *z = forward(m, x, act, stride);
    double loss = output(m, z, prob, y);
    size_t outn = m->sizes[m->n_layers];
    if (m->labels == 2)
        delta[0] = prob[1] - (y == 1);
    else
        for (size_t k = 0; k < outn; k++)
            delta[k] = prob[k] - (y == k);
    size_t off = m->n_params;
    for (size_t l = m->n_layers; l-- > 0;) {
        size_t in = m->sizes[l], on = m->sizes[l + 1];
        off -= layer_params(m, l);
        const double *a = act + l * stride;
        double *gw = g + off, *gb = g + off + on * in;
        const double *w = m->params + off;
        for (size_t o = 0; o < on; o++) {
            double d = delta[o];
            double *row = gw + o * in;
            if (assign) {
                if (d == 0)
                    memset(row, 0, in * sizeof(double)); /* a dead ReLU unit */
                else
                    for (size_t i = 0; i < in; i++)
                        row[i] = d * a[i];
                gb[o] = d;
                continue;
            }
            if (d == 0)
                continue;
            for (size_t i = 0; i < in; i++)
                row[i] += d * a[i];
            gb[o] += d;
        }
        if (l == 0)
            break;
        for (size_t i = 0; i < in; i++) {
            double s = 0;
            if (a[i] > 0)
                for (size_t o = 0; o < on; o++)
                    s += w[o * in + i] * delta[o];
            dprev[i] = s;
        }
        memcpy(delta, dprev, in * sizeof(double));
    }
    return loss;
}

/* Adds gex[n], scaled so its L2 norm is at most c, into sum; returns the norm before clipping. */
static double clip_add(const double *gex, double *sum, size_t n, double c)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += gex[i] * gex[i];
    double norm = sqrt(s), f = norm > c ? c / norm : 1;
    for (size_t i = 0; i < n; i++)
        sum[i] += f * gex[i];
    return norm;
}

static void evaluate(const struct dcms_trainer_model *m, const struct dcms_trainer_data *d,
                     const size_t *idx, size_t n, double *act, size_t stride, double *prob,
                     double *loss, double *acc, uint64_t *confusion)
{
    double l = 0;
    size_t ok = 0;
    for (size_t j = 0; j < n; j++) {
        size_t r = idx[j];
        const double *z = forward(m, d->x + r * d->features, act, stride);
        l += output(m, z, prob, d->y[r]);
        size_t best = 0;
        for (size_t k = 1; k < m->labels; k++)
            if (prob[k] > prob[best])
                best = k;
        ok += best == d->y[r];
        if (confusion)
            confusion[(size_t)d->y[r] * m->labels + best]++;
    }
    *loss = n ? l / (double)n : NAN;
    *acc = n ? (double)ok / (double)n : NAN;
}

static double gauss_from_seed(uint64_t *s)
{
    double u1 = (double)((dcms_trainer_splitmix64(s) >> 11) + 1) * 0x1.0p-53;
    double u2 = unit53(dcms_trainer_splitmix64(s));
    return sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
}

void dcms_trainer_model_free(struct dcms_trainer_model *m)
{
    free(m->params);
    free(m->mean);
    free(m->std);
    memset(m, 0, sizeof(*m));
}

void dcms_trainer_metrics_free(struct dcms_trainer_metrics *m)
{
    free(m->precision);
    free(m->recall);
    free(m->f1);
    free(m->confusion);
    memset(m, 0, sizeof(*m));
}

static enum dcms_trainer_rc check_config(const struct dcms_trainer_config *c, char *err,
                                         size_t errlen)
{
    if (c->split == DCMS_SPLIT_MODULO && (c->folds < 2 || c->holdout_fold >= c->folds))
        return fail(err, errlen, "split: folds must be >= 2 and holdout_fold < folds");
    if (c->split == DCMS_SPLIT_RANDOM && !(c->fraction > 0 && c->fraction < 1))
        return fail(err, errlen, "split: fraction must be in (0, 1)");
    if (c->model == DCMS_MODEL_MLP && (c->n_hidden < 1 || c->n_hidden > DCMS_TRAINER_MAX_HIDDEN))
        return fail(err, errlen, "model: an mlp has 1 to 3 hidden layers");
    for (size_t i = 0; i < c->n_hidden; i++)
        if (c->hidden[i] < 1 || c->hidden[i] > DCMS_TRAINER_MAX_WIDTH)
            return fail(err, errlen, "model: hidden layer widths are 1..%u",
                        DCMS_TRAINER_MAX_WIDTH);
    if (!(c->learning_rate > 0) || !isfinite(c->learning_rate))
        return fail(err, errlen, "learning_rate must be > 0");
    if (!(c->l2 >= 0) || !isfinite(c->l2))
        return fail(err, errlen, "l2 must be >= 0");
    if (!(c->momentum >= 0 && c->momentum < 1))
        return fail(err, errlen, "momentum must be in [0, 1)");
    if (c->epochs < 1 || c->epochs > 100000)
        return fail(err, errlen, "epochs must be 1..100000");
    if (c->dp) {
        if (!(c->noise_multiplier >= 0) || !isfinite(c->noise_multiplier))
            return fail(err, errlen, "dp.noise_multiplier must be >= 0");
        if (!(c->max_grad_norm > 0) || !isfinite(c->max_grad_norm))
            return fail(err, errlen, "dp.max_grad_norm must be > 0");
    }
    return DCMS_TRAINER_OK;
}

/* Buffered CSPRNG bytes. */
struct rbuf {
    const struct dcms_trainer_run *run;
    uint8_t b[4096];
    size_t pos;
    int failed;
};

static uint64_t rbuf_u64(struct rbuf *r)
{
    if (r->pos + 8 > sizeof(r->b)) {
        if (r->run->random(r->run->random_ctx, r->b, sizeof(r->b)) != 0)
            r->failed = 1;
        r->pos = 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | r->b[r->pos++];
    return v;
}

static double rbuf_uniform(struct rbuf *r)
{
    return unit53(rbuf_u64(r));
}

static uint64_t rbuf_next(void *ctx)
{
    return rbuf_u64(ctx);
}

enum dcms_trainer_rc dcms_trainer_train(const struct dcms_trainer_config *cfg,
                                        struct dcms_trainer_data *d,
                                        const struct dcms_trainer_run *run,
                                        struct dcms_trainer_model *m,
                                        struct dcms_trainer_metrics *met, char *err, size_t errlen)
{
    enum dcms_trainer_rc rc = check_config(cfg, err, errlen);
    size_t *tr = NULL, *te = NULL, ntr = 0, nte = 0;
    double *act = NULL, *prob = NULL, *delta = NULL, *dprev = NULL, *g = NULL, *gex = NULL;
    double *v1 = NULL, *v2 = NULL;
    struct rbuf *rb = NULL;
    memset(m, 0, sizeof(*m));
    memset(met, 0, sizeof(*met));
    if (rc)
        return rc;
    if (cfg->dp && (!run || !run->random))
        return fail(err, errlen, "dp: no random source");
    rc = DCMS_TRAINER_ENOMEM;
    size_t F = d->features, K = d->labels;
    tr = malloc(d->rows * sizeof(size_t));
    te = malloc(d->rows * sizeof(size_t));
    if (!tr || !te)
        goto out;
    for (size_t r = 0; r < d->rows; r++) {
        if (dcms_trainer_split_holdout(cfg, r))
            te[nte++] = r;
        else
            tr[ntr++] = r;
    }
    if (ntr < 1 || nte < 1) {
        rc = fail(err, errlen, "split: %zu training and %zu held-out rows (both must be > 0)", ntr,
                  nte);
        goto out;
    }
    /* Standardise with the training rows only: population std, 1 where it is 0. */
    m->features = F;
    m->labels = K;
    m->mean = calloc(F, sizeof(double));
    m->std = calloc(F, sizeof(double));
    if (!m->mean || !m->std)
        goto out;
    for (size_t j = 0; j < F; j++) {
        double s = 0, ss = 0;
        for (size_t i = 0; i < ntr; i++)
            s += d->x[tr[i] * F + j];
        double mu = s / (double)ntr;
        for (size_t i = 0; i < ntr; i++) {
            double t = d->x[tr[i] * F + j] - mu;
            ss += t * t;
        }
        double sd = sqrt(ss / (double)ntr);
        m->mean[j] = mu;
        m->std[j] = sd > 0 ? sd : 1;
    }
    for (size_t r = 0; r < d->rows; r++)
        for (size_t j = 0; j < F; j++)
            d->x[r * F + j] = (d->x[r * F + j] - m->mean[j]) / m->std[j];

    /* Layers. */
    m->kind = cfg->model;
    m->sizes[0] = F;
    m->n_layers = 1;
    if (cfg->model == DCMS_MODEL_MLP)
        for (size_t i = 0; i < cfg->n_hidden; i++)
            m->sizes[m->n_layers++] = cfg->hidden[i];
    m->sizes[m->n_layers] = K == 2 ? 1 : K;
    for (size_t l = 0; l < m->n_layers; l++)
        m->n_params += layer_params(m, l);
    m->params = calloc(m->n_params, sizeof(double));
    size_t P = m->n_params, stride = widest(m);
    act = malloc((m->n_layers + 1) * stride * sizeof(double));
    prob = malloc(K * sizeof(double));
    delta = malloc(stride * sizeof(double));
    dprev = malloc(stride * sizeof(double));
    g = malloc(P * sizeof(double));
    gex = malloc(P * sizeof(double));
    v1 = calloc(P, sizeof(double));
    v2 = calloc(P, sizeof(double));
    rb = calloc(1, sizeof(*rb));
    if (!m->params || !act || !prob || !delta || !dprev || !g || !gex || !v1 || !v2 || !rb)
        goto out;
    rb->run = run;
    rb->pos = sizeof(rb->b);
    uint64_t seed = cfg->seed;
    if (cfg->model == DCMS_MODEL_MLP) {
        /* He init: weights N(0, 2/fan_in) from the seed, biases 0. */
        size_t off = 0;
        for (size_t l = 0; l < m->n_layers; l++) {
            double sd = sqrt(2.0 / (double)m->sizes[l]);
            for (size_t i = 0; i < m->sizes[l + 1] * m->sizes[l]; i++)
                m->params[off + i] = sd * gauss_from_seed(&seed);
            off += layer_params(m, l);
        }
    }
    /* Weight (not bias) mask for l2. */
    size_t B, steps_per_epoch;
    double q;
    dcms_trainer_batching(cfg, ntr, &B, &steps_per_epoch, &q);
    if (cfg->dp) {
        m->dp_q = q;
        m->dp_steps = (uint64_t)steps_per_epoch * cfg->epochs;
    }
    uint64_t t = 0;
    for (uint32_t ep = 1; ep <= cfg->epochs; ep++) {
        /* Fisher-Yates shuffle of the training rows (not used by DP, which samples). */
        if (!cfg->dp && B < ntr)
            for (size_t i = ntr - 1; i > 0; i--) {
                size_t j = (size_t)(dcms_trainer_splitmix64(&seed) % (i + 1));
                size_t tmp = tr[i];
                tr[i] = tr[j];
                tr[j] = tmp;
            }
        for (size_t s = 0; s < steps_per_epoch; s++) {
            memset(g, 0, P * sizeof(double));
            double denom;
            if (!cfg->dp) {
                size_t lo = s * B, hi = lo + B < ntr ? lo + B : ntr;
                for (size_t i = lo; i < hi; i++) {
                    size_t r = tr[i];
                    backprop(m, d->x + r * F, d->y[r], act, stride, prob, delta, dprev, g, 0);
                }
                denom = (double)(hi - lo);
            } else {
                /* Poisson sampling: each training row independently with probability q. */
                for (size_t i = 0; i < ntr; i++) {
                    if (q < 1 && !(rbuf_uniform(rb) < q))
                        continue;
                    size_t r = tr[i];
                    backprop(m, d->x + r * F, d->y[r], act, stride, prob, delta, dprev, gex, 1);
                    clip_add(gex, g, P, cfg->max_grad_norm);
                }
                double sc = cfg->noise_multiplier * cfg->max_grad_norm;
                if (sc > 0)
                    for (size_t k = 0; k < P; k += 2) {
                        double z[2];
                        dcms_trainer_gauss2(rbuf_next, rb, z);
                        g[k] += sc * z[0];
                        if (k + 1 < P)
                            g[k + 1] += sc * z[1];
                    }
                if (rb->failed) {
                    rc = fail(err, errlen, "dp: the random source failed");
                    goto out;
                }
                denom = q * (double)ntr;
            }
            t++;
            double bc1 = 1 - pow(cfg->beta1, (double)t), bc2 = 1 - pow(cfg->beta2, (double)t);
            size_t off = 0;
            for (size_t l = 0; l < m->n_layers; l++) {
                size_t nw = m->sizes[l + 1] * m->sizes[l], np = layer_params(m, l);
                for (size_t k = off; k < off + np; k++) {
                    double gk = g[k] / denom + (k < off + nw ? cfg->l2 * m->params[k] : 0);
                    if (cfg->optimizer == DCMS_OPTIM_SGD) {
                        v1[k] = cfg->momentum * v1[k] + gk;
                        m->params[k] -= cfg->learning_rate * v1[k];
                    } else {
                        v1[k] = cfg->beta1 * v1[k] + (1 - cfg->beta1) * gk;
                        v2[k] = cfg->beta2 * v2[k] + (1 - cfg->beta2) * gk * gk;
                        double mh = v1[k] / bc1, vh = v2[k] / bc2;
                        m->params[k] -= cfg->learning_rate * mh / (sqrt(vh) + cfg->adam_eps);
                    }
                }
                off += np;
            }
        }
        if (run && run->progress) {
            struct dcms_trainer_epoch e = {.epoch = ep};
            if (cfg->dp) {
                /* Metrics on training rows are outside the DP guarantee: not reported. */
                e.loss = e.train_accuracy = NAN;
            } else
                evaluate(m, d, tr, ntr, act, stride, prob, &e.loss, &e.train_accuracy, NULL);
            evaluate(m, d, te, nte, act, stride, prob, &e.val_loss, &e.val_accuracy, NULL);
            if (run->progress(run->progress_ctx, &e)) {
                rc = DCMS_TRAINER_ECANCEL;
                goto out;
            }
        }
    }
    /* Held-out metrics. */
    met->rows = nte;
    met->labels = K;
    met->precision = calloc(K, sizeof(double));
    met->recall = calloc(K, sizeof(double));
    met->f1 = calloc(K, sizeof(double));
    met->confusion = calloc(K * K, sizeof(uint64_t));
    if (!met->precision || !met->recall || !met->f1 || !met->confusion)
        goto out;
    evaluate(m, d, te, nte, act, stride, prob, &met->loss, &met->accuracy, met->confusion);
    for (size_t k = 0; k < K; k++) {
        uint64_t tp = met->confusion[k * K + k], col = 0, row = 0;
        for (size_t j = 0; j < K; j++) {
            col += met->confusion[j * K + k];
            row += met->confusion[k * K + j];
        }
        met->precision[k] = col ? (double)tp / (double)col : 0;
        met->recall[k] = row ? (double)tp / (double)row : 0;
        double pr = met->precision[k] + met->recall[k];
        met->f1[k] = pr > 0 ? 2 * met->precision[k] * met->recall[k] / pr : 0;
        met->macro_precision += met->precision[k] / (double)K;
        met->macro_recall += met->recall[k] / (double)K;
        met->macro_f1 += met->f1[k] / (double)K;
    }
    rc = DCMS_TRAINER_OK;
out:
    free(tr);
    free(te);
    free(act);
    free(prob);
    free(delta);
    free(dprev);
    free(g);
    free(gex);
    free(v1);
    free(v2);
    free(rb);
    if (rc != DCMS_TRAINER_OK) {
        dcms_trainer_model_free(m);
        dcms_trainer_metrics_free(met);
    }
    return rc;
}
