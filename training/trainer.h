/*
 * dcms trainer core: CSV -> standardised matrix -> split -> model -> metrics.
 * Pure C11 and libm: no I/O, no network, no global state. Randomness for
 * DP-SGD comes from a caller-supplied byte source (trainer_noise.h), so the
 * core never chooses its own entropy.
 */
#ifndef DCMS_TRAINER_H
#define DCMS_TRAINER_H

#include <stddef.h>
#include <stdint.h>

#define DCMS_TRAINER_MAX_COLS 4096u
#define DCMS_TRAINER_MAX_LABELS 256u
#define DCMS_TRAINER_MAX_HIDDEN 3u
#define DCMS_TRAINER_MAX_WIDTH 4096u

enum dcms_trainer_rc {
    DCMS_TRAINER_OK = 0,
    DCMS_TRAINER_EINVAL = 1, /* bad config or data; message in the error buffer */
    DCMS_TRAINER_ENOMEM = 2,
    DCMS_TRAINER_ECANCEL = 3, /* the progress callback asked to stop */
};

enum dcms_trainer_coltype {
    DCMS_COL_NUMBER = 0,
    DCMS_COL_INTEGER,
    DCMS_COL_CATEGORY,
    DCMS_COL_TEXT,
};

struct dcms_trainer_column {
    const char *name;
    enum dcms_trainer_coltype type;
};

enum dcms_trainer_model_kind { DCMS_MODEL_LOGISTIC = 0, DCMS_MODEL_MLP };
enum dcms_trainer_optim { DCMS_OPTIM_SGD = 0, DCMS_OPTIM_ADAM };
enum dcms_trainer_split_method { DCMS_SPLIT_MODULO = 0, DCMS_SPLIT_RANDOM };

struct dcms_trainer_config {
    /* data */
    const char *label;                        /* label column name */
    const struct dcms_trainer_column *schema; /* NULL: every non-label column is a number */
    size_t schema_len;
    /* split */
    enum dcms_trainer_split_method split;
    uint32_t folds, holdout_fold; /* modulo */
    double fraction;              /* random: share of rows held out */
    uint64_t split_seed;
    /* model */
    enum dcms_trainer_model_kind model;
    size_t hidden[DCMS_TRAINER_MAX_HIDDEN];
    size_t n_hidden;
    /* optimisation */
    enum dcms_trainer_optim optimizer;
    double learning_rate, momentum, l2;
    double beta1, beta2, adam_eps;
    uint32_t epochs;
    size_t batch_size; /* 0 = full batch */
    uint64_t seed;     /* init and shuffling */
    /* DP-SGD: on when dp is non-zero */
    int dp;
    double noise_multiplier; /* sigma */
    double max_grad_norm;    /* C */
};

/* Defaults: modulo 5/4, logistic, sgd, lr 0.1, 100 epochs, full batch, adam betas. */
void dcms_trainer_config_defaults(struct dcms_trainer_config *c);

/* A parsed, not yet standardised data set. Owned; free with dcms_trainer_data_free. */
struct dcms_trainer_data {
    size_t rows, features, labels;
    double *x;            /* rows x features, row-major */
    uint32_t *y;          /* label index per row */
    char **feature_names; /* features entries (category features: "col=value") */
    char **label_names;   /* labels entries, sorted (byte order) */
};

/*
 * Parses CSV text (RFC 4180 quoting, header row, LF or CRLF) under the config's
 * schema and label. On failure returns EINVAL and a message in err[errlen].
 */
enum dcms_trainer_rc dcms_trainer_data_parse(const char *csv, size_t len,
                                             const struct dcms_trainer_config *cfg,
                                             struct dcms_trainer_data *out, char *err,
                                             size_t errlen);
void dcms_trainer_data_free(struct dcms_trainer_data *d);

/* 1 if data row r (0-based) is held out by the config's split. Deterministic. */
int dcms_trainer_split_holdout(const struct dcms_trainer_config *cfg, size_t r);

/* The number of the first `rows` data rows that the split of `cfg` trains on (not held out). */
size_t dcms_trainer_train_rows(const struct dcms_trainer_config *cfg, size_t rows);

/*
 * The batching of `ntr` (>= 1) training rows, the one place it is computed:
 * the batch B is batch_size, or ntr when batch_size is 0 or above ntr; an
 * epoch is ceil(ntr / B) steps; DP-SGD samples each row with probability
 * q = B / ntr. Over `epochs` epochs DP-SGD takes steps_per_epoch × epochs
 * noisy steps. dcmsd prices a DP run with the same function before any
 * data moves (src/training/training_privacy.c), so the run it reserves is
 * the run the trainer takes.
 */
void dcms_trainer_batching(const struct dcms_trainer_config *cfg, size_t ntr, size_t *batch,
                           size_t *steps_per_epoch, double *q);

/* splitmix64: the documented generator of the random split and the init. */
uint64_t dcms_trainer_splitmix64(uint64_t *state);

/* Bytes from a CSPRNG, for DP-SGD sampling and noise; 0 on success. */
typedef int (*dcms_trainer_random_fn)(void *ctx, uint8_t *buf, size_t len);

struct dcms_trainer_epoch {
    uint32_t epoch; /* 1-based */
    double loss;    /* mean cross-entropy on the training rows */
    double train_accuracy;
    double val_loss, val_accuracy; /* on the held-out rows */
};

/* Non-zero return stops training with DCMS_TRAINER_ECANCEL. */
typedef int (*dcms_trainer_progress_fn)(void *ctx, const struct dcms_trainer_epoch *e);

struct dcms_trainer_metrics {
    size_t rows, labels;
    double accuracy, loss;
    double *precision, *recall, *f1; /* labels entries */
    double macro_precision, macro_recall, macro_f1;
    uint64_t *confusion; /* labels x labels, [true][predicted] */
};

/* A trained model: layer sizes, parameters and the scaler. */
struct dcms_trainer_model {
    enum dcms_trainer_model_kind kind;
    size_t n_layers;
    size_t sizes[DCMS_TRAINER_MAX_HIDDEN + 2]; /* sizes[0] inputs .. sizes[n_layers] outputs */
    double *params;                            /* per layer: weight [out][in] then bias [out] */
    size_t n_params;
    double *mean, *std; /* features entries */
    size_t features, labels;
    /* DP accounting inputs, filled when DP was on */
    double dp_q;
    uint64_t dp_steps;
};

struct dcms_trainer_run {
    dcms_trainer_progress_fn progress;
    void *progress_ctx;
    dcms_trainer_random_fn random; /* required when cfg->dp */
    void *random_ctx;
};

/*
 * Trains on d under cfg; fills model and the held-out metrics. d is
 * standardised in place with the training rows' mean and population std.
 */
enum dcms_trainer_rc
dcms_trainer_train(const struct dcms_trainer_config *cfg, struct dcms_trainer_data *d,
                   const struct dcms_trainer_run *run, struct dcms_trainer_model *model,
                   struct dcms_trainer_metrics *metrics, char *err, size_t errlen);
void dcms_trainer_model_free(struct dcms_trainer_model *m);
void dcms_trainer_metrics_free(struct dcms_trainer_metrics *m);

/* Class probabilities of one standardised example into out[labels]. */
void dcms_trainer_predict(const struct dcms_trainer_model *m, const double *x, double *out);

#endif
