/*
 * dcms-trainer-cli: the trainer outside any sandbox, on files.
 *
 *   dcms-trainer-cli --csv FILE --config JSON_FILE --out model.safetensors
 *                    [--metrics metrics.json] [--every N] [--quiet]
 *
 * Prints a progress line every N epochs (default: 20 lines a run) and a
 * final line with the held-out accuracy; --quiet prints only the final line
 * and skips the per-epoch evaluation (training time alone). Exit 0 on success, 1 on bad
 * input, 2 on an I/O error.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "safetensors.h"
#include "trainer.h"
#include "trainer_json.h"
#include "trainer_random.h"

#define MAX_INPUT_BYTES (1024ul * 1024 * 1024)

static int read_file(const char *path, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap + 1);
    while (b) {
        size_t r = fread(b + n, 1, cap - n, f);
        n += r;
        if (n < cap)
            break;
        if (cap >= MAX_INPUT_BYTES) {
            free(b);
            b = NULL;
            break;
        }
        cap *= 2;
        char *nb = realloc(b, cap + 1);
        if (!nb) {
            free(b);
            b = NULL;
        }
        b = nb;
    }
    int bad = ferror(f);
    fclose(f);
    if (!b || bad) {
        free(b);
        return -1;
    }
    b[n] = '\0';
    *out = b;
    *len = n;
    return 0;
}

static int write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    int bad = fwrite(p, 1, n, f) != n;
    bad |= fclose(f) != 0;
    return bad ? -1 : 0;
}

struct progress {
    uint32_t every, epochs;
    int quiet;
};

static int on_epoch(void *ctx, const struct dcms_trainer_epoch *e)
{
    struct progress *p = ctx;
    if (!p->quiet && (e->epoch % p->every == 0 || e->epoch == p->epochs || e->epoch == 1)) {
        json_t *j = dcms_trainer_epoch_to_json(e);
        char *s = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
        if (s)
            printf("progress %s\n", s);
        free(s);
        json_decref(j);
    }
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: dcms-trainer-cli --csv FILE --config JSON_FILE --out MODEL "
                    "[--metrics FILE] [--every N] [--quiet]\n");
}

int main(int argc, char **argv)
{
    const char *csv_path = NULL, *cfg_path = NULL, *out_path = NULL, *met_path = NULL;
    struct progress pr = {0};
    int rc = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--quiet")) {
            pr.quiet = 1;
            continue;
        }
        if (!v) {
            usage();
            return 1;
        }
        if (!strcmp(a, "--csv"))
            csv_path = v;
        else if (!strcmp(a, "--config"))
            cfg_path = v;
        else if (!strcmp(a, "--out"))
            out_path = v;
        else if (!strcmp(a, "--metrics"))
            met_path = v;
        else if (!strcmp(a, "--every"))
            pr.every = (uint32_t)strtoul(v, NULL, 10);
        else {
            usage();
            return 1;
        }
        i++;
    }
    if (!csv_path || !cfg_path || !out_path) {
        usage();
        return 1;
    }
    char *csv = NULL, *cfgtext = NULL, err[2048];
    size_t csv_len = 0, cfg_len = 0, model_len = 0;
    uint8_t *model_bytes = NULL;
    struct dcms_trainer_job job = {0};
    struct dcms_trainer_data data = {0};
    struct dcms_trainer_model model = {0};
    struct dcms_trainer_metrics met = {0};
    struct dcms_trainer_random rnd = {0};
    json_t *mj = NULL;
    if (read_file(cfg_path, &cfgtext, &cfg_len) || read_file(csv_path, &csv, &csv_len)) {
        fprintf(stderr, "dcms-trainer-cli: cannot read %s: %s\n", cfgtext ? csv_path : cfg_path,
                strerror(errno));
        rc = 2;
        goto out;
    }
    if (dcms_trainer_job_from_json(cfgtext, cfg_len, &job, err, sizeof(err))) {
        fprintf(stderr, "dcms-trainer-cli: config: %s\n", err);
        goto out;
    }
    if (job.has_test_seed ? dcms_trainer_random_init_seeded(&rnd, job.test_seed)
                          : dcms_trainer_random_init(&rnd)) {
        fprintf(stderr, "dcms-trainer-cli: %s\n",
                job.has_test_seed ? "test_seed: accepted only by a test build"
                                  : "no random source");
        goto out;
    }
    if (dcms_trainer_data_parse(csv, csv_len, &job.cfg, &data, err, sizeof(err))) {
        fprintf(stderr, "dcms-trainer-cli: csv: %s\n", err);
        goto out;
    }
    pr.epochs = job.cfg.epochs;
    if (!pr.every)
        pr.every = job.cfg.epochs >= 20 ? job.cfg.epochs / 20 : 1;
    /* --quiet also skips the per-epoch evaluation the progress lines need. */
    struct dcms_trainer_run run = {pr.quiet ? NULL : on_epoch, &pr, dcms_trainer_random_bytes,
                                   &rnd};
    struct timespec t0, t1, c0, c1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
    if (dcms_trainer_train(&job.cfg, &data, &run, &model, &met, err, sizeof(err))) {
        fprintf(stderr, "dcms-trainer-cli: training: %s\n", err);
        goto out;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    double cpu = (double)(c1.tv_sec - c0.tv_sec) + (double)(c1.tv_nsec - c0.tv_nsec) / 1e9;
    if (dcms_st_encode(&model, &data, &job.cfg, job.meta, job.n_meta, job.f64, &model_bytes,
                       &model_len)) {
        fprintf(stderr, "dcms-trainer-cli: cannot encode the model (a metadata key may collide "
                        "with the trainer's own)\n");
        goto out;
    }
    if (write_file(out_path, model_bytes, model_len)) {
        fprintf(stderr, "dcms-trainer-cli: cannot write %s\n", out_path);
        rc = 2;
        goto out;
    }
    mj = dcms_trainer_metrics_to_json(&met, &data, &model, &job.cfg);
    json_object_set_new(mj, "train_seconds", json_real(secs));
    json_object_set_new(mj, "train_cpu_seconds", json_real(cpu));
    if (met_path && (!mj || json_dump_file(mj, met_path, JSON_INDENT(2) | JSON_SORT_KEYS))) {
        fprintf(stderr, "dcms-trainer-cli: cannot write %s\n", met_path);
        rc = 2;
        goto out;
    }
    printf("done accuracy=%.6f loss=%.6f rows=%zu seconds=%.3f\n", met.accuracy, met.loss, met.rows,
           secs);
    rc = 0;
out:
    json_decref(mj);
    free(model_bytes);
    free(csv);
    free(cfgtext);
    dcms_trainer_metrics_free(&met);
    dcms_trainer_model_free(&model);
    dcms_trainer_data_free(&data);
    dcms_trainer_job_release(&job);
    dcms_trainer_random_release(&rnd);
    return rc;
}
