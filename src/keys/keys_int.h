/*
 * Private to src/keys: the keyring backend table and the module's state.
 * A keyring holds KEK versions and wraps/unwraps 32-byte DEKs with them;
 * which version is active or retired is kept in the store (keys_store.c).
 */
#ifndef DCMS_KEYS_INT_H
#define DCMS_KEYS_INT_H

#include <pthread.h>

#include "dcms/keys.h"

/* nonce (12) || ciphertext (32) || tag (16) */
#define KEYS_NONCE_LEN 12
#define KEYS_WRAPPED_LEN (KEYS_NONCE_LEN + DCMS_DEK_LEN + 16)
/* "dcms-dek-v1\0" id "\0" purpose "\0" version */
#define KEYS_AAD_MAX 160

struct keyring_ops {
    const char *name;
    enum dcms_err (*open)(const struct dcms_keys_opts *opts, void **ctx, struct dcms_errinfo *ei);
    void (*close)(void *ctx);
    /* True when the keyring holds `version` (a file keyring re-reads its file once to see). */
    bool (*has)(void *ctx, int64_t version);
    /* Creates KEK `version` (which must not exist yet). */
    enum dcms_err (*create)(void *ctx, int64_t version, struct dcms_errinfo *ei);
    /* Destroys KEK `version`; a missing version is DCMS_OK. */
    enum dcms_err (*destroy)(void *ctx, int64_t version, struct dcms_errinfo *ei);
    enum dcms_err (*wrap)(void *ctx, int64_t version, const unsigned char *aad, size_t aad_len,
                          const unsigned char dek[DCMS_DEK_LEN],
                          unsigned char out[KEYS_WRAPPED_LEN], struct dcms_errinfo *ei);
    /* DCMS_ERR_CRYPTO when `in` does not authenticate; dek is wiped then. */
    enum dcms_err (*unwrap)(void *ctx, int64_t version, const unsigned char *aad, size_t aad_len,
                            const unsigned char in[KEYS_WRAPPED_LEN],
                            unsigned char dek[DCMS_DEK_LEN], struct dcms_errinfo *ei);
};

extern const struct keyring_ops keyring_file_ops;
extern const struct keyring_ops keyring_pkcs11_ops;

struct dcms_keys {
    const struct keyring_ops *ops;
    void *ring;
    struct dcms_store *store;
    struct dcms_audit *audit;
    pthread_mutex_t mu; /* serializes rotate/retire within the process */
};

struct dcms_dek {
    char id[40];
    unsigned char *key; /* sodium_malloc'd, DCMS_DEK_LEN */
};

/* Builds the wrap's associated data; returns its length. */
size_t keys_aad(unsigned char out[KEYS_AAD_MAX], const char *id, const char *purpose,
                int64_t version);

/* ---- keys_json.c ---- */

#include <jansson.h>

/* The status as GET /api/v1/admin/data-keys answers it (new reference; NULL without memory). */
json_t *keys_status_to_json(const struct dcms_keys_status *st);

/* ---- keys_store.c ---- */

struct keys_row {
    char id[40];
    char purpose[72];
    int64_t version;
    bool destroyed;
    unsigned char wrapped[KEYS_WRAPPED_LEN];
};

enum dcms_err keys_store_active(struct dcms_store_tx *tx, int64_t *version,
                                struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* The state of `version`; DCMS_ERR_NOT_FOUND when unknown. */
enum dcms_err keys_store_version_state(struct dcms_store_tx *tx, int64_t version,
                                       enum dcms_kek_state *state,
                                       struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* Versions not retired, into out[0..*n), at most cap. */
enum dcms_err keys_store_live_versions(struct dcms_store_tx *tx, int64_t *out, size_t cap,
                                       size_t *n, struct dcms_errinfo *ei) DCMS_MUST_CHECK;
enum dcms_err keys_store_max_version(struct dcms_store_tx *tx, int64_t *version,
                                     struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* Inserts `version` as active, demoting the former active one to previous. */
enum dcms_err keys_store_add_version(struct dcms_store_tx *tx, int64_t version, const char *backend,
                                     struct dcms_errinfo *ei) DCMS_MUST_CHECK;
enum dcms_err keys_store_retire_version(struct dcms_store_tx *tx, int64_t version,
                                        struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* Live DEKs under `version` (all versions when version is 0), and not under it when `not`. */
enum dcms_err keys_store_count(struct dcms_store_tx *tx, int64_t version, bool not, int64_t *n,
                               struct dcms_errinfo *ei) DCMS_MUST_CHECK;
enum dcms_err keys_store_insert(struct dcms_store_tx *tx, const char *id, const char *purpose,
                                const char *owner, int64_t version,
                                const unsigned char wrapped[KEYS_WRAPPED_LEN],
                                struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* DCMS_ERR_NOT_FOUND when there is no row `id`. */
enum dcms_err keys_store_get(struct dcms_store_tx *tx, const char *id, struct keys_row *out,
                             struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* Up to `cap` live DEKs not under `active`, in id order. */
enum dcms_err keys_store_pending(struct dcms_store_tx *tx, int64_t active, struct keys_row *out,
                                 size_t cap, size_t *n, struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* Replaces the wrap of `id` if it is still under `from` (*changed says whether it was). */
enum dcms_err keys_store_rewrap(struct dcms_store_tx *tx, const char *id, int64_t from, int64_t to,
                                const unsigned char wrapped[KEYS_WRAPPED_LEN], bool *changed,
                                struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* The id of the live DEK named `name` into id (40 bytes); DCMS_ERR_NOT_FOUND when none. */
enum dcms_err keys_store_named(struct dcms_store_tx *tx, const char *name, char id[40],
                               struct dcms_errinfo *ei) DCMS_MUST_CHECK;
enum dcms_err keys_store_set_name(struct dcms_store_tx *tx, const char *id, const char *name,
                                  struct dcms_errinfo *ei) DCMS_MUST_CHECK;
enum dcms_err keys_store_destroy(struct dcms_store_tx *tx, const char *id,
                                 struct dcms_errinfo *ei) DCMS_MUST_CHECK;
enum dcms_err keys_store_status(struct dcms_store_tx *tx, struct dcms_keys_status *out,
                                struct dcms_errinfo *ei) DCMS_MUST_CHECK;

#endif
