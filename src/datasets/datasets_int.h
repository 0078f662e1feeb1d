/* Inside the datasets service: schema, streaming CSV validator, store and blob access. */
#ifndef DCMS_DATASETS_INT_H
#define DCMS_DATASETS_INT_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "dcms/datasets.h"
#include "dcms/err.h"
#include "dcms/uuid.h"

struct dcms_app;
struct dcms_store_tx;
struct dcms_principal;
struct dcms_arena;
struct dcms_store_rows;

#define DS_MAX_COLUMNS 1000
#define DS_MAX_VALUES 1000
#define DS_NAME_MAX 128
#define DS_FIELD_MAX 256 /* bytes of a field the validator looks at */
#define DS_MAX_PROBLEMS 100

enum ds_type { DS_NUMBER, DS_INTEGER, DS_CATEGORY, DS_TEXT };

struct ds_column {
    const char *name;
    enum ds_type type;
    const char **values; /* category: allowed values, or NULL for any */
    size_t nvalues;
};

/* A decoded schema; strings live in the arena or json it came from. */
struct ds_schema {
    struct ds_column *cols;
    size_t ncols;
    size_t label; /* index into cols */
    const char **label_values;
    size_t nlabel_values;
};

/* Decodes `v` (the "schema" member) recording problems under "schema...". */
enum dcms_err ds_schema_from_json(struct dcms_arena *a, const json_t *v, struct ds_schema *out,
                                  struct dcms_errinfo *ei);

struct ds_problem {
    int64_t line;
    char message[152];
};

/*
 * The streaming CSV validator (RFC 4180 quoting, a header row, LF or CRLF).
 * Plain data, no pointers: it is sealed into the upload's resume state and
 * restored by the next request, so its layout is versioned by
 * DS_CSV_STATE_VERSION.
 */
#define DS_CSV_STATE_VERSION 1
struct ds_csv {
    uint32_t version;
    int64_t line;        /* physical line being read (1-based) */
    int64_t record_line; /* line where the current record started */
    int64_t rows;        /* data rows seen */
    int64_t problems_total;
    uint32_t field;     /* index of the current field in the record */
    uint32_t field_len; /* bytes of the current field (may exceed DS_FIELD_MAX) */
    bool in_quotes, quote_pending, was_quoted, at_record_start, header_done, record_bad;
    char buf[DS_FIELD_MAX];
    uint32_t nproblems;
    struct ds_problem problems[DS_MAX_PROBLEMS];
};

void ds_csv_init(struct ds_csv *v);
void ds_csv_feed(struct ds_csv *v, const struct ds_schema *s, const unsigned char *p, size_t n);
/* End of input: closes the last record and checks there were a header and a row. */
void ds_csv_finish(struct ds_csv *v, const struct ds_schema *s);
/*
 * Whether the `len` bytes at `s` (NUL-terminated) are a `number` (or, with
 * `integer`, an `integer`) value: the one-pass check the validator uses, and
 * the strtod/strtoll reference it must agree with. Exposed for the tests.
 */
bool ds_csv_number_ok(const char *s, size_t len, bool integer);
bool ds_csv_number_ok_libc(const char *s, bool integer);
/* Adds a problem (counted always, kept while fewer than DS_MAX_PROBLEMS). */
void ds_csv_problem(struct ds_csv *v, int64_t line, const char *fmt, ...) DCMS_PRINTF(3, 4);

/* ---- segments at rest (the blob interface, src/datasets/blob_store.c) ---- */

/*
 * Where segments live. Today the store (table dataset_segments); an
 * object store would be another table of these functions. Each call runs
 * in the caller's transaction.
 */
struct ds_blob_ops {
    enum dcms_err (*put)(struct dcms_store_tx *tx, const char *id, int64_t index, bool final,
                         const unsigned char nonce[DCMS_AEAD_NONCE_LEN], const unsigned char *ct,
                         size_t ct_len, struct dcms_errinfo *ei);
    /* Loads segment `index` into *ct (malloc'd, caller frees); DCMS_ERR_NOT_FOUND if absent. */
    enum dcms_err (*get)(struct dcms_store_tx *tx, const char *id, int64_t index,
                         struct dcms_dataset_segment *out, unsigned char **ct,
                         struct dcms_errinfo *ei);
    /* Number of stored segments and the highest index (-1 when none). */
    enum dcms_err (*count)(struct dcms_store_tx *tx, const char *id, int64_t *n, int64_t *max_index,
                           struct dcms_errinfo *ei);
    /* Removes the segments with index >= from. */
    enum dcms_err (*remove_from)(struct dcms_store_tx *tx, const char *id, int64_t from,
                                 struct dcms_errinfo *ei);
};

extern const struct ds_blob_ops ds_blob_store;

/* ---- the service (datasets.c, datasets_upload.c) ---- */

/* Who calls, for authorization and audit; strings borrowed for the call. */
struct ds_call {
    struct dcms_app *app;
    const struct dcms_principal *p;
    struct dcms_errinfo *ei;
    struct dcms_arena *arena;
    const char *request_id, *client_ip;
};

struct ds_create_in {
    const char *name, *description;
    const char *schema_json;     /* canonical JSON text of the decoded schema */
    int64_t expected_size;       /* -1: unknown */
    const char *expected_sha256; /* lowercase hex or NULL */
    int64_t upload_length;       /* the tus Upload-Length given at creation, -1: none */
};

enum dcms_err ds_create(const struct ds_call *c, const struct ds_create_in *in, json_t **out);
enum dcms_err ds_get(const struct ds_call *c, const char *id, json_t **out);
enum dcms_err ds_list(const struct ds_call *c, const char *cursor, int64_t limit, json_t **out);
enum dcms_err ds_delete(const struct ds_call *c, const char *id);
enum dcms_err ds_verify(const struct ds_call *c, const char *id, json_t **out);

enum dcms_err ds_load(struct dcms_store_tx *tx, const char *id, struct dcms_store_rows **rows,
                      struct dcms_errinfo *ei);
json_t *ds_row_json(const struct dcms_store_rows *r, size_t i);
bool ds_owns(const struct dcms_principal *p, const char *provider_id);
const char *ds_org_of(const struct dcms_principal *p);
enum dcms_err ds_audit(const struct ds_call *c, struct dcms_store_tx *tx, const char *action,
                       const char *id, json_t *details);

/* The upload state of a dataset, as HEAD / GET .../content report it. */
struct ds_upload_status {
    int64_t offset, length; /* length -1: not known yet */
    char status[16];
};
enum dcms_err ds_upload_status(const struct ds_call *c, const char *id,
                               struct ds_upload_status *out);

/* One streamed upload request (PATCH or PUT). */
struct ds_upload;
struct ds_upload_in {
    bool put;            /* PUT: the whole body from offset 0 */
    int64_t offset;      /* PATCH: Upload-Offset */
    int64_t length;      /* Upload-Length (PATCH) or Content-Length (PUT); -1: not sent */
    int64_t body_length; /* Content-Length of this request; -1: chunked */
    bool has_checksum;   /* Upload-Checksum: sha256 <base64> */
    unsigned char checksum[DCMS_SHA256_LEN];
};
enum dcms_err ds_upload_begin(const struct ds_call *c, const char *id,
                              const struct ds_upload_in *in, struct ds_upload **out);
enum dcms_err ds_upload_data(struct ds_upload *u, const void *p, size_t n, struct dcms_errinfo *ei);
/* Ends the request: stores what came, answers the new offset; frees `u`. */
enum dcms_err ds_upload_end(struct ds_upload *u, struct dcms_errinfo *ei,
                            struct ds_upload_status *out);
/* The request ended early: keeps what came (no checksum) or drops it; frees `u`. */
void ds_upload_abort(struct ds_upload *u);

#endif
