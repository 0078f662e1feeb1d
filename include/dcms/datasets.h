/*
 * Datasets as other services see them (src/datasets/).
 *
 * A dataset is a provider organization's CSV file, uploaded with tus or a
 * plain PUT and stored only as AES-256-GCM segments of
 * DCMS_DATASET_SEGMENT_BYTES plaintext under the dataset's own data key
 * (a DEK of the keys module, purpose "dataset"). Segment i is sealed with a
 * random 96-bit nonce and the associated data built by
 * dcms_datasets_segment_aad(): the dataset id, i and a final-segment flag,
 * so a segment moved to another index or dataset, or a stream cut after a
 * non-final segment, fails to open (the STREAM construction).
 *
 * Who may call what: these functions do no authorization; the caller (the
 * training service, after its own checks) decides. Nothing here hands out
 * plaintext to a route.
 *
 * Thread-safety: all functions may be called from any thread.
 */
#ifndef DCMS_DATASETS_H
#define DCMS_DATASETS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dcms/crypto.h"
#include "dcms/err.h"
#include "dcms/uuid.h"

struct dcms_app;

#define DCMS_DATASET_SEGMENT_BYTES (1u << 20)
#define DCMS_DATASET_AAD_LEN 64

/* One stored segment as it is at rest; `ct` is ciphertext then tag, valid during the call. */
struct dcms_dataset_segment {
    int64_t index;
    bool final;
    unsigned char nonce[DCMS_AEAD_NONCE_LEN];
    const unsigned char *ct;
    size_t ct_len;
};

/*
 * The associated data of segment `index` of dataset `id` (a UUID):
 * "dcms.dataset.v1" NUL, the 36-character id, the index as 8 big-endian
 * bytes, and 1 for the final segment or 0. Writes DCMS_DATASET_AAD_LEN
 * bytes at most; returns the length. An enclave rebuilds it to open the
 * segments it is streamed.
 */
size_t dcms_datasets_segment_aad(const char *id, int64_t index, bool final,
                                 unsigned char out[DCMS_DATASET_AAD_LEN]);

/* What the training service needs to stream a ready dataset into an enclave. */
struct dcms_dataset_ref {
    char id[DCMS_UUID_STRLEN];
    char provider_id[DCMS_UUID_STRLEN];
    char dek_id[DCMS_UUID_STRLEN]; /* the wrapped DEK (keys module, purpose "dataset") */
    char status[16];               /* created | uploading | ready | invalid */
    char sha256[65];               /* of the plaintext, "" until ready */
    int64_t size, segments, rows;
};

/* Reads dataset `id`. DCMS_ERR_NOT_FOUND when there is none. */
enum dcms_err dcms_datasets_ref(struct dcms_app *app, const char *id, struct dcms_dataset_ref *out,
                                struct dcms_errinfo *ei) DCMS_MUST_CHECK;

typedef enum dcms_err (*dcms_dataset_segment_fn)(void *ctx, const struct dcms_dataset_segment *s,
                                                 struct dcms_errinfo *ei);

/*
 * Calls `fn` for every stored segment of a ready dataset, in index order,
 * one at a time (memory stays at about two segments). Stops at the first
 * error `fn` returns. DCMS_ERR_CONFLICT when the dataset is not ready;
 * DCMS_ERR_CRYPTO when the store does not hold exactly the segments the
 * dataset says (a gap, a missing final segment, an extra one).
 */
enum dcms_err dcms_datasets_each_segment(struct dcms_app *app, const char *id,
                                         dcms_dataset_segment_fn fn, void *ctx,
                                         struct dcms_errinfo *ei) DCMS_MUST_CHECK;

typedef enum dcms_err (*dcms_dataset_plain_fn)(void *ctx, const void *p, size_t n,
                                               struct dcms_errinfo *ei);

/*
 * The verifying reader, for dcms-internal use and tests: unwraps the DEK,
 * opens every segment in order (checking index, dataset and final flag)
 * and calls `fn` (may be NULL) with the plaintext, which is wiped after
 * each call; *sha256 (may be NULL) receives the hash of the whole
 * plaintext, which is also compared with the recorded one. DCMS_ERR_CRYPTO
 * when a segment does not open or the stream is truncated, reordered or
 * spliced, or the hash differs.
 */
enum dcms_err dcms_datasets_read(struct dcms_app *app, const char *id, dcms_dataset_plain_fn fn,
                                 void *ctx, unsigned char sha256[DCMS_SHA256_LEN],
                                 struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * Checks the terms.data_access.datasets of a contract of `provider_id`:
 * every entry that is a UUID must name a ready dataset of that provider
 * (other entries are free-form names and pass). Each failing entry is
 * recorded as a field problem on "terms.data_access.datasets[i]"
 * (DCMS_ERR_VALIDATION). The contract service calls it at submit and at
 * activation.
 */
enum dcms_err dcms_datasets_check_for_contract(struct dcms_app *app, const char *provider_id,
                                               const char *const *entries, size_t n,
                                               struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* ---- retention of what is derived from datasets (src/datasets/datasets_retention.c) ---- */

struct dcms_datasets; /* the running part of the service: the retention job */
struct dcms_store_tx;

/* Something derived from a provider's data for a contract. Strings are borrowed. */
struct dcms_derived {
    const char *contract_id; /* the contract it was derived under */
    const char *dataset_id;  /* the dataset it came from, or NULL */
    const char *kind;        /* names the purge function (dcms_datasets_on_purge) */
    const char *ref;         /* the object, in the owning module's terms */
    const char *dek_id;      /* the data key it is sealed under, or NULL */
    const char *created_by;  /* identity id or "system" */
};

/*
 * Registers `d` inside `tx`, the transaction that creates the object, so
 * the object and its registration commit together. *id_out (may be NULL)
 * gets the registration's id. The caller audits its own change.
 */
enum dcms_err dcms_datasets_derived_add(struct dcms_store_tx *tx, const struct dcms_derived *d,
                                        char id_out[DCMS_UUID_STRLEN],
                                        struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * Removes the object `ref` of a kind inside `tx` (the purge's transaction).
 * With `crypto_shred` its data key is already destroyed in `tx`.
 */
typedef enum dcms_err dcms_derived_purge_fn(void *ctx, struct dcms_store_tx *tx, const char *ref,
                                            bool crypto_shred, struct dcms_errinfo *ei);

/* Registers the purge function of `kind` (a module calls it at start). */
enum dcms_err dcms_datasets_on_purge(struct dcms_datasets *ds, const char *kind,
                                     dcms_derived_purge_fn *fn, void *ctx,
                                     struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * One pass of the retention job: purges every registered object of every
 * contract that has ended at least terms.retention.days ago (at once without
 * a retention term). *purged counts the objects purged. Objects that fail are
 * logged and retried on the next pass.
 */
enum dcms_err dcms_datasets_retention_run(struct dcms_datasets *ds, unsigned *purged,
                                          struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * Starts the retention job (every DCMS_RETENTION_INTERVAL_S seconds, at once
 * on start; 0 disables it). `app` must have cfg, store, audit, keys and
 * contracts set and outlive the service.
 */
enum dcms_err dcms_datasets_open(struct dcms_app *app, struct dcms_datasets **out,
                                 struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* Stops the job and frees. NULL is a no-op. */
void dcms_datasets_close(struct dcms_datasets *ds);

#endif
