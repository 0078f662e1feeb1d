/*
 * Envelope encryption: data keys (DEKs) wrapped by a versioned key-encryption
 * key (KEK) held in a keyring.
 *
 * Every object that is encrypted at rest (a dataset, a sealed IAM secret, a
 * model) has its own 256-bit DEK. A DEK exists in the clear only in guarded
 * memory while it is used; the store keeps it wrapped by the active KEK
 * version in the `data_keys` table, owned by this module. Other modules
 * refer to a DEK by its id (a UUID) and never see the wrapped bytes.
 *
 * The wrap is AES-256-GCM (file keyring) or the token's AES-GCM (pkcs11)
 * with associated data binding the DEK id, its purpose and the KEK version,
 * so a wrapped DEK copied to another row, another purpose or another
 * version does not unwrap.
 *
 * KEK versions: one is `active` (new wraps), older ones are `previous`
 * (unwrap only) until every DEK has been rewrapped under the active one;
 * then they may be `retired`: refused for unwrap, and their key material is
 * destroyed in the keyring. Version state lives in the store, so every node
 * sharing a PostgreSQL agrees; the key material lives in the keyring
 * backend:
 *   - file:   a keyring file (base64 lines "v<N> <key>"), mode 0600,
 *             created atomically on first start, refused when group or
 *             others can read it. Nodes sharing a store share the file.
 *   - pkcs11: the KEK is a non-extractable AES key in a PKCS#11 token
 *             (label "<prefix>-v<N>"); wrap and unwrap run inside the token.
 *
 * Thread-safety: struct dcms_keys is shared by all threads. Functions that
 * take a transaction use it and nothing else of the store.
 */
#ifndef DCMS_KEYS_H
#define DCMS_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dcms/err.h"

struct dcms_store;
struct dcms_store_tx;
struct dcms_audit;
struct dcms_keys;

#define DCMS_DEK_LEN 32

enum dcms_keys_backend { DCMS_KEYS_FILE, DCMS_KEYS_PKCS11 };

struct dcms_keys_opts {
    enum dcms_keys_backend backend;
    const char *file_path; /* file: the keyring file; created when missing */
    /* pkcs11: */
    const char *pkcs11_module;      /* path of the PKCS#11 module to dlopen */
    const char *pkcs11_token_label; /* token to log in to */
    const char *pkcs11_pin_file;    /* file holding the user PIN (0600) */
    const char *pkcs11_key_label;   /* prefix of the KEK labels; NULL: "dcms-kek" */
};

/* Who asks for a change, for the audit event. Strings borrowed; NULL allowed. */
struct dcms_keys_actor {
    const char *actor; /* identity id, or "system" for the command line */
    const char *request_id;
    const char *client_ip;
};

/*
 * Opens the keyring and, on a store with no KEK version yet, creates
 * version 1 (active) in the keyring and the store. Every version the store
 * does not list as retired must be present in the keyring:
 * DCMS_ERR_CONFIG otherwise, as for a bad file mode, a missing module, a
 * wrong PIN or an unknown token. `audit` may be NULL only in tests that do
 * not rotate.
 */
enum dcms_err dcms_keys_open(const struct dcms_keys_opts *opts, struct dcms_store *store,
                             struct dcms_audit *audit, struct dcms_keys **out,
                             struct dcms_errinfo *ei) DCMS_MUST_CHECK;
/* Fills `opts` from the configuration (strings borrowed from cfg). */
struct dcms_config;
void dcms_keys_opts_from_config(const struct dcms_config *cfg, struct dcms_keys_opts *opts);

/* Logs out of the token, wipes every KEK held in memory, frees. NULL is a no-op. */
void dcms_keys_close(struct dcms_keys *k);

/* "file" or "pkcs11". */
const char *dcms_keys_backend_name(const struct dcms_keys *k);

/* ---- data keys ---- */

/* A DEK in the clear, in guarded memory. Freed (and wiped) by dcms_dek_free. */
struct dcms_dek;

/* The 32 key bytes; valid until dcms_dek_free. */
const unsigned char *dcms_dek_bytes(const struct dcms_dek *d);
/* The DEK id (a UUID, 36 characters). */
const char *dcms_dek_id(const struct dcms_dek *d);
/* Wipes and frees. NULL is a no-op. */
void dcms_dek_free(struct dcms_dek *d);

/*
 * Generates a fresh DEK for `purpose` (a short name such as "dataset" or
 * "iam.secret", 1..64 characters of [a-z0-9._-]) and `owner` (the id of
 * the object it protects, or NULL), wraps it under the active KEK version
 * and inserts it into `data_keys` inside `tx` (a write transaction). The
 * caller audits its own change in the same transaction. *out is the DEK in
 * the clear; free it with dcms_dek_free as soon as it is no longer needed.
 */
enum dcms_err dcms_keys_dek_create(struct dcms_keys *k, struct dcms_store_tx *tx,
                                   const char *purpose, const char *owner, struct dcms_dek **out,
                                   struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * Loads DEK `id` in `tx` and unwraps it. `purpose` must be the one it was
 * created for (it is bound into the wrap). DCMS_ERR_NOT_FOUND for an
 * unknown or destroyed DEK or another purpose; DCMS_ERR_CRYPTO when the
 * wrapped bytes do not authenticate; DCMS_ERR_CONFLICT when its KEK
 * version is retired.
 */
enum dcms_err dcms_keys_dek_open(struct dcms_keys *k, struct dcms_store_tx *tx, const char *id,
                                 const char *purpose, struct dcms_dek **out,
                                 struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * Crypto-shreds DEK `id` inside `tx`: the wrapped bytes are erased and the
 * row keeps only its id, purpose, owner and destroyed_at, so whatever it
 * encrypted can never be read again. Idempotent: destroying a destroyed
 * DEK is DCMS_OK. DCMS_ERR_NOT_FOUND for an unknown id. The caller audits.
 */
enum dcms_err dcms_keys_dek_destroy(struct dcms_keys *k, struct dcms_store_tx *tx, const char *id,
                                    struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * The one live DEK called `name` (unique among live DEKs), for a module that
 * seals many small secrets under one data key (IAM: "iam.secrets"). When
 * there is none: DCMS_ERR_NOT_FOUND unless `create`, which makes it inside
 * `tx` (*created then true; `created` may be NULL). DCMS_ERR_CONFLICT when
 * another node created it at the same moment: roll back and try again.
 * Other errors as dcms_keys_dek_open.
 */
enum dcms_err dcms_keys_dek_named(struct dcms_keys *k, struct dcms_store_tx *tx, const char *name,
                                  const char *purpose, bool create, struct dcms_dek **out,
                                  bool *created, struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* ---- KEK versions and rotation (admin; each call audits in its own transaction) ---- */

enum dcms_kek_state { DCMS_KEK_ACTIVE, DCMS_KEK_PREVIOUS, DCMS_KEK_RETIRED };

struct dcms_kek_version {
    int64_t version;
    enum dcms_kek_state state;
    char created_at[40]; /* RFC 3339 */
    char retired_at[40]; /* "" unless retired */
    int64_t dek_count;   /* live (not destroyed) DEKs wrapped under this version */
};

#define DCMS_KEYS_MAX_VERSIONS 64

struct dcms_keys_status {
    char backend[16]; /* "file" or "pkcs11" */
    int64_t active_version;
    int64_t deks_total;   /* live DEKs */
    int64_t deks_pending; /* live DEKs not yet under the active version */
    size_t n_versions;
    struct dcms_kek_version versions[DCMS_KEYS_MAX_VERSIONS]; /* newest first */
};

/* "active", "previous", "retired". */
const char *dcms_kek_state_name(enum dcms_kek_state s);

/* Versions, counts and pending rewrap work. */
enum dcms_err dcms_keys_status(struct dcms_keys *k, struct dcms_keys_status *out,
                               struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * Creates KEK version N+1 in the keyring and makes it active; the former
 * active version becomes previous (still unwraps). Existing DEKs are not
 * touched: run dcms_keys_rewrap. Audited as "keys.rotate".
 * DCMS_ERR_CONFLICT when more than DCMS_KEYS_MAX_VERSIONS versions are live.
 */
enum dcms_err dcms_keys_rotate(struct dcms_keys *k, const struct dcms_keys_actor *who,
                               int64_t *new_version, struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * Rewraps up to `batch` (1..10000; 0 means 500) live DEKs that are not
 * under the active version, in one transaction with one "keys.rewrap"
 * audit event; the DEK bytes and so the data they protect do not change.
 * Progress is the data itself (each rewrapped row carries the new version),
 * so a rewrap that stops resumes where it stopped. *done receives the
 * number rewrapped, *remaining the number still pending (either may be
 * NULL). Call until *remaining is 0, or use dcms_keys_rewrap_all.
 */
enum dcms_err dcms_keys_rewrap(struct dcms_keys *k, const struct dcms_keys_actor *who,
                               unsigned batch, int64_t *done, int64_t *remaining,
                               struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* Runs dcms_keys_rewrap batches until nothing remains; *done totals them. */
enum dcms_err dcms_keys_rewrap_all(struct dcms_keys *k, const struct dcms_keys_actor *who,
                                   unsigned batch, int64_t *done,
                                   struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * Retires a previous version: refused with DCMS_ERR_CONFLICT while live
 * DEKs are still wrapped under it or when it is the active version;
 * DCMS_ERR_NOT_FOUND for an unknown version. Afterwards the version is
 * refused for unwrap and its key material is destroyed in the keyring.
 * Retiring a retired version is DCMS_OK. Audited as "keys.retire".
 */
enum dcms_err dcms_keys_retire(struct dcms_keys *k, const struct dcms_keys_actor *who,
                               int64_t version, struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * Command line: `dcmsd keys status|rotate|rewrap [--batch N]|retire VERSION`.
 * argv[0] is "keys". Reads the configuration as the server does (the
 * environment and $DCMS_CONFIG), prints JSON on stdout and returns the exit
 * status: 0 done, 1 refused or failed, 2 bad usage.
 */
int dcms_keys_cli(int argc, char **argv);

#endif
