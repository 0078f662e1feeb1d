/*
 * The keys service: data keys (DEKs) generated per object, kept wrapped by
 * the active KEK version, unwrapped on demand into guarded memory; KEK
 * rotation, resumable rewrap and retirement. See include/dcms/keys.h and
 * README.md beside this file.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "dcms/audit.h"
#include "dcms/log.h"
#include "dcms/store.h"
#include "dcms/uuid.h"
#include "keys/keys_int.h"

#define REWRAP_BATCH_DEFAULT 500
#define REWRAP_BATCH_MAX 10000

size_t keys_aad(unsigned char out[KEYS_AAD_MAX], const char *id, const char *purpose,
                int64_t version)
{
    /* NUL-separated fields: neither an id nor a purpose can hold a NUL. */
    int n = snprintf((char *)out, KEYS_AAD_MAX, "dcms-dek-v1%c%s%c%s%c%" PRId64, 0, id, 0, purpose,
                     0, version);
    return n < 0 ? 0 : (size_t)n < KEYS_AAD_MAX ? (size_t)n : KEYS_AAD_MAX - 1;
}

static bool purpose_valid(const char *p)
{
    size_t n = p ? strlen(p) : 0;
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

const char *dcms_kek_state_name(enum dcms_kek_state s)
{
    switch (s) {
    case DCMS_KEK_ACTIVE:
        return "active";
    case DCMS_KEK_PREVIOUS:
        return "previous";
    case DCMS_KEK_RETIRED:
        return "retired";
    }
    return "retired";
}

const char *dcms_keys_backend_name(const struct dcms_keys *k)
{
    return k->ops->name;
}

static enum dcms_err audit_in(struct dcms_keys *k, struct dcms_store_tx *tx,
                              const struct dcms_keys_actor *who, const char *action,
                              const char *resource_id, json_t *details, struct dcms_errinfo *ei)
{
    if (!k->audit) {
        if (!details)
            return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
        json_decref(details);
        return DCMS_OK;
    }
    struct dcms_audit_who w = {who ? who->actor : NULL, who ? who->client_ip : NULL,
                               who ? who->request_id : NULL};
    return dcms_audit_change(k->audit, tx, &w, "kek_version", action, resource_id, details, ei);
}

static enum dcms_err finish(struct dcms_store_tx *tx, enum dcms_err e, struct dcms_errinfo *ei)
{
    if (e) {
        dcms_store_rollback(tx);
        return e;
    }
    return dcms_store_commit(tx, ei);
}

/* The lowest version above the store's newest that the keyring does not hold yet. */
static enum dcms_err next_version(struct dcms_keys *k, struct dcms_store_tx *tx, int64_t *out,
                                  struct dcms_errinfo *ei)
{
    int64_t v = 0;
    enum dcms_err e = keys_store_max_version(tx, &v, ei);
    if (e)
        return e;
    v++;
    /* A version left in the keyring by a rotation that failed before it reached the store. */
    while (k->ops->has(k->ring, v))
        v++;
    *out = v;
    return DCMS_OK;
}

static enum dcms_err bootstrap(struct dcms_keys *k, struct dcms_errinfo *ei)
{
    struct dcms_store_tx *tx;
    int64_t v = 0, max = 0;
    enum dcms_err e = dcms_store_begin(k->store, DCMS_TX_WRITE, &tx, ei);
    if (e)
        return e;
    if ((e = keys_store_max_version(tx, &max, ei)) || max > 0)
        return finish(tx, e, ei);
    /* A new store: version 1, or the one a keyring shared with another node already holds. */
    v = 1;
    if (!k->ops->has(k->ring, v) && (e = k->ops->create(k->ring, v, ei)) &&
        !k->ops->has(k->ring, v))
        return finish(tx, e, ei);
    dcms_errinfo_init(ei, ei->arena);
    if (!(e = keys_store_add_version(tx, v, k->ops->name, ei))) {
        char vs[24];
        snprintf(vs, sizeof(vs), "%" PRId64, v);
        e = audit_in(k, tx, NULL, "keys.kek_create", vs,
                     json_pack("{s:I, s:s}", "version", (json_int_t)v, "backend", k->ops->name),
                     ei);
    }
    if (!(e = finish(tx, e, ei)))
        DCMS_LOG(DCMS_LOG_INFO, "keys", "created KEK version %" PRId64 " (%s)", v, k->ops->name);
    return e;
}

static enum dcms_err check_versions(struct dcms_keys *k, struct dcms_errinfo *ei)
{
    struct dcms_store_tx *tx;
    int64_t vs[DCMS_KEYS_MAX_VERSIONS * 4];
    size_t n = 0;
    enum dcms_err e = dcms_store_begin(k->store, DCMS_TX_READ, &tx, ei);
    if (e)
        return e;
    e = keys_store_live_versions(tx, vs, sizeof(vs) / sizeof(vs[0]), &n, ei);
    dcms_store_rollback(tx);
    for (size_t i = 0; !e && i < n; i++)
        if (!k->ops->has(k->ring, vs[i]))
            e = dcms_err_set(ei, DCMS_ERR_CONFIG,
                             "the %s keyring lacks KEK version %" PRId64
                             " that the store still uses",
                             k->ops->name, vs[i]);
    return e;
}

enum dcms_err dcms_keys_open(const struct dcms_keys_opts *opts, struct dcms_store *store,
                             struct dcms_audit *audit, struct dcms_keys **out,
                             struct dcms_errinfo *ei)
{
    enum dcms_err e;
    *out = NULL;
    struct dcms_keys *k = calloc(1, sizeof(*k));
    if (!k)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    pthread_mutex_init(&k->mu, NULL);
    k->store = store;
    k->audit = audit;
    k->ops = opts->backend == DCMS_KEYS_PKCS11 ? &keyring_pkcs11_ops : &keyring_file_ops;
    if ((e = k->ops->open(opts, &k->ring, ei)))
        goto out;
    e = bootstrap(k, ei);
    if (e == DCMS_ERR_CONFLICT) /* another node bootstrapped at the same moment */
        e = bootstrap(k, ei);
    if (!e)
        e = check_versions(k, ei);
out:
    if (e) {
        dcms_keys_close(k);
        return e;
    }
    *out = k;
    return DCMS_OK;
}

void dcms_keys_close(struct dcms_keys *k)
{
    if (!k)
        return;
    if (k->ring)
        k->ops->close(k->ring);
    pthread_mutex_destroy(&k->mu);
    free(k);
}

/* ---- data keys ---- */

const unsigned char *dcms_dek_bytes(const struct dcms_dek *d)
{
    return d->key;
}

const char *dcms_dek_id(const struct dcms_dek *d)
{
    return d->id;
}

void dcms_dek_free(struct dcms_dek *d)
{
    if (!d)
        return;
    sodium_free(d->key); /* wipes */
    free(d);
}

static struct dcms_dek *dek_alloc(const char *id)
{
    struct dcms_dek *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    if (!(d->key = sodium_malloc(DCMS_DEK_LEN))) {
        free(d);
        return NULL;
    }
    snprintf(d->id, sizeof(d->id), "%s", id);
    return d;
}

enum dcms_err dcms_keys_dek_create(struct dcms_keys *k, struct dcms_store_tx *tx,
                                   const char *purpose, const char *owner, struct dcms_dek **out,
                                   struct dcms_errinfo *ei)
{
    enum dcms_err e;
    unsigned char aad[KEYS_AAD_MAX], wrapped[KEYS_WRAPPED_LEN];
    int64_t v = 0;
    char id[DCMS_UUID_STRLEN];
    *out = NULL;
    if (!purpose_valid(purpose))
        return dcms_err_set(ei, DCMS_ERR_INTERNAL, "bad data key purpose");
    if ((e = keys_store_active(tx, &v, ei)))
        return e;
    dcms_uuid_v7(id);
    struct dcms_dek *d = dek_alloc(id);
    if (!d)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    randombytes_buf(d->key, DCMS_DEK_LEN);
    size_t alen = keys_aad(aad, id, purpose, v);
    if ((e = k->ops->wrap(k->ring, v, aad, alen, d->key, wrapped, ei)) ||
        (e = keys_store_insert(tx, id, purpose, owner, v, wrapped, ei))) {
        dcms_dek_free(d);
        return e;
    }
    *out = d;
    return DCMS_OK;
}

enum dcms_err dcms_keys_dek_open(struct dcms_keys *k, struct dcms_store_tx *tx, const char *id,
                                 const char *purpose, struct dcms_dek **out,
                                 struct dcms_errinfo *ei)
{
    enum dcms_err e;
    struct keys_row row;
    unsigned char aad[KEYS_AAD_MAX];
    enum dcms_kek_state st;
    *out = NULL;
    if (!id || !purpose)
        return dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "data key not found");
    if ((e = keys_store_get(tx, id, &row, ei)))
        return e;
    if (row.destroyed || strcmp(row.purpose, purpose) != 0)
        return dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "data key not found");
    if ((e = keys_store_version_state(tx, row.version, &st, ei)))
        return e;
    if (st == DCMS_KEK_RETIRED)
        return dcms_err_set(ei, DCMS_ERR_CONFLICT, "KEK version %" PRId64 " is retired",
                            row.version);
    struct dcms_dek *d = dek_alloc(id);
    if (!d)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    size_t alen = keys_aad(aad, row.id, purpose, row.version);
    if ((e = k->ops->unwrap(k->ring, row.version, aad, alen, row.wrapped, d->key, ei))) {
        dcms_dek_free(d);
        return e;
    }
    *out = d;
    return DCMS_OK;
}

enum dcms_err dcms_keys_dek_destroy(struct dcms_keys *k, struct dcms_store_tx *tx, const char *id,
                                    struct dcms_errinfo *ei)
{
    (void)k;
    struct keys_row row;
    enum dcms_err e = keys_store_get(tx, id, &row, ei);
    if (e || row.destroyed)
        return e;
    sodium_memzero(row.wrapped, sizeof(row.wrapped));
    return keys_store_destroy(tx, id, ei);
}

enum dcms_err dcms_keys_dek_named(struct dcms_keys *k, struct dcms_store_tx *tx, const char *name,
                                  const char *purpose, bool create, struct dcms_dek **out,
                                  bool *created, struct dcms_errinfo *ei)
{
    char id[40];
    struct dcms_dek *d = NULL;
    *out = NULL;
    if (created)
        *created = false;
    enum dcms_err e = keys_store_named(tx, name, id, ei);
    if (!e)
        return dcms_keys_dek_open(k, tx, id, purpose, out, ei);
    if (e != DCMS_ERR_NOT_FOUND)
        return e;
    if (!create)
        return dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "data key %s not found", name);
    if ((e = dcms_keys_dek_create(k, tx, purpose, NULL, &d, ei)))
        return e;
    /* A unique violation here (another node won) is DCMS_ERR_CONFLICT. */
    if ((e = keys_store_set_name(tx, dcms_dek_id(d), name, ei))) {
        dcms_dek_free(d);
        return e;
    }
    if (created)
        *created = true;
    *out = d;
    return DCMS_OK;
}

/* ---- versions ---- */

enum dcms_err dcms_keys_status(struct dcms_keys *k, struct dcms_keys_status *out,
                               struct dcms_errinfo *ei)
{
    struct dcms_store_tx *tx;
    memset(out, 0, sizeof(*out));
    snprintf(out->backend, sizeof(out->backend), "%s", k->ops->name);
    enum dcms_err e = dcms_store_begin(k->store, DCMS_TX_READ, &tx, ei);
    if (e)
        return e;
    e = keys_store_status(tx, out, ei);
    dcms_store_rollback(tx);
    return e;
}

enum dcms_err dcms_keys_rotate(struct dcms_keys *k, const struct dcms_keys_actor *who,
                               int64_t *new_version, struct dcms_errinfo *ei)
{
    struct dcms_store_tx *tx = NULL;
    int64_t old = 0, v = 0, vs[DCMS_KEYS_MAX_VERSIONS + 1];
    size_t nlive = 0;
    bool created = false;
    pthread_mutex_lock(&k->mu);
    enum dcms_err e = dcms_store_begin(k->store, DCMS_TX_WRITE, &tx, ei);
    if (e)
        goto out;
    if ((e = keys_store_live_versions(tx, vs, DCMS_KEYS_MAX_VERSIONS + 1, &nlive, ei)) ||
        (e = keys_store_active(tx, &old, ei)))
        goto out;
    if (nlive >= DCMS_KEYS_MAX_VERSIONS) {
        e = dcms_err_set(ei, DCMS_ERR_CONFLICT,
                         "%d KEK versions are live: rewrap and retire old ones first",
                         DCMS_KEYS_MAX_VERSIONS);
        goto out;
    }
    if ((e = next_version(k, tx, &v, ei)) || (e = k->ops->create(k->ring, v, ei)))
        goto out;
    created = true;
    if ((e = keys_store_add_version(tx, v, k->ops->name, ei)))
        goto out;
    char vs_text[24];
    snprintf(vs_text, sizeof(vs_text), "%" PRId64, v);
    e = audit_in(k, tx, who, "keys.rotate", vs_text,
                 json_pack("{s:I, s:I, s:s}", "version", (json_int_t)v, "previous", (json_int_t)old,
                           "backend", k->ops->name),
                 ei);
out:
    if (tx)
        e = finish(tx, e, ei);
    if (e && created) {
        /* The store does not know the new version: take it out of the keyring again. */
        struct dcms_errinfo ei2;
        dcms_errinfo_init(&ei2, NULL);
        if (k->ops->destroy(k->ring, v, &ei2))
            DCMS_LOG(DCMS_LOG_WARN, "keys", "cannot remove unused KEK version %" PRId64 ": %s", v,
                     ei2.message);
    }
    pthread_mutex_unlock(&k->mu);
    if (!e) {
        *new_version = v;
        DCMS_LOG(DCMS_LOG_INFO, "keys", "KEK version %" PRId64 " is active", v);
    }
    return e;
}

enum dcms_err dcms_keys_rewrap(struct dcms_keys *k, const struct dcms_keys_actor *who,
                               unsigned batch, int64_t *done, int64_t *remaining,
                               struct dcms_errinfo *ei)
{
    struct dcms_store_tx *tx = NULL;
    struct keys_row *rows = NULL;
    unsigned char aad[KEYS_AAD_MAX], dek[DCMS_DEK_LEN], wrapped[KEYS_WRAPPED_LEN];
    int64_t active = 0, count = 0, left = 0;
    size_t n = 0;
    enum dcms_err e;
    if (batch == 0)
        batch = REWRAP_BATCH_DEFAULT;
    if (batch > REWRAP_BATCH_MAX)
        return dcms_err_field(ei, "batch", "must be 1..%d", REWRAP_BATCH_MAX);
    if (!(rows = calloc(batch, sizeof(*rows))))
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    if ((e = dcms_store_begin(k->store, DCMS_TX_WRITE, &tx, ei)))
        goto out;
    if ((e = keys_store_active(tx, &active, ei)) ||
        (e = keys_store_pending(tx, active, rows, batch, &n, ei)))
        goto out;
    json_t *from = json_object();
    for (size_t i = 0; !e && i < n; i++) {
        bool changed = false;
        size_t alen = keys_aad(aad, rows[i].id, rows[i].purpose, rows[i].version);
        if ((e = k->ops->unwrap(k->ring, rows[i].version, aad, alen, rows[i].wrapped, dek, ei)))
            break;
        alen = keys_aad(aad, rows[i].id, rows[i].purpose, active);
        e = k->ops->wrap(k->ring, active, aad, alen, dek, wrapped, ei);
        sodium_memzero(dek, sizeof(dek));
        if (!e)
            e = keys_store_rewrap(tx, rows[i].id, rows[i].version, active, wrapped, &changed, ei);
        if (!e && changed) {
            char vk[24];
            snprintf(vk, sizeof(vk), "%" PRId64, rows[i].version);
            json_t *c = json_object_get(from, vk);
            json_object_set_new(from, vk, json_integer((c ? json_integer_value(c) : 0) + 1));
            count++;
        }
        sodium_memzero(rows[i].wrapped, sizeof(rows[i].wrapped));
    }
    if (!e)
        e = keys_store_count(tx, active, true, &left, ei);
    if (!e && count > 0) {
        char vs_text[24];
        snprintf(vs_text, sizeof(vs_text), "%" PRId64, active);
        e = audit_in(k, tx, who, "keys.rewrap", vs_text,
                     json_pack("{s:I, s:I, s:O, s:I}", "version", (json_int_t)active, "rewrapped",
                               (json_int_t)count, "from", from, "remaining", (json_int_t)left),
                     ei);
    }
    json_decref(from);
out:
    if (tx)
        e = finish(tx, e, ei);
    sodium_memzero(wrapped, sizeof(wrapped));
    free(rows);
    if (!e) {
        if (done)
            *done = count;
        if (remaining)
            *remaining = left;
    }
    return e;
}

enum dcms_err dcms_keys_rewrap_all(struct dcms_keys *k, const struct dcms_keys_actor *who,
                                   unsigned batch, int64_t *done, struct dcms_errinfo *ei)
{
    int64_t total = 0, n = 0, left = 1;
    enum dcms_err e = DCMS_OK;
    /* Bounded: each round either rewraps something or finds nothing left. */
    while (left > 0) {
        if ((e = dcms_keys_rewrap(k, who, batch, &n, &left, ei)))
            break;
        total += n;
        if (n == 0 && left > 0) {
            e = dcms_err_set(ei, DCMS_ERR_RETRY, "rewrap made no progress");
            break;
        }
    }
    if (done)
        *done = total;
    return e;
}

enum dcms_err dcms_keys_retire(struct dcms_keys *k, const struct dcms_keys_actor *who,
                               int64_t version, struct dcms_errinfo *ei)
{
    struct dcms_store_tx *tx = NULL;
    enum dcms_kek_state st;
    int64_t n = 0;
    bool retired = false;
    pthread_mutex_lock(&k->mu);
    enum dcms_err e = dcms_store_begin(k->store, DCMS_TX_WRITE, &tx, ei);
    if (e)
        goto out;
    if ((e = keys_store_version_state(tx, version, &st, ei)))
        goto out;
    if (st == DCMS_KEK_RETIRED)
        goto out;
    if (st == DCMS_KEK_ACTIVE) {
        e = dcms_err_set(ei, DCMS_ERR_CONFLICT, "KEK version %" PRId64 " is active: rotate first",
                         version);
        goto out;
    }
    if ((e = keys_store_count(tx, version, false, &n, ei)))
        goto out;
    if (n > 0) {
        e = dcms_err_set(ei, DCMS_ERR_CONFLICT,
                         "%" PRId64 " data keys are still wrapped under KEK version %" PRId64
                         ": rewrap first",
                         n, version);
        goto out;
    }
    if ((e = keys_store_retire_version(tx, version, ei)))
        goto out;
    char vs_text[24];
    snprintf(vs_text, sizeof(vs_text), "%" PRId64, version);
    e = audit_in(k, tx, who, "keys.retire", vs_text,
                 json_pack("{s:I, s:s}", "version", (json_int_t)version, "backend", k->ops->name),
                 ei);
    retired = !e;
out:
    if (tx)
        e = finish(tx, e, ei);
    /* Only once the store refuses the version is its key material destroyed. */
    if (!e && retired && (e = k->ops->destroy(k->ring, version, ei)))
        DCMS_LOG(DCMS_LOG_ERROR, "keys",
                 "KEK version %" PRId64 " is retired but its key material is not destroyed: %s",
                 version, ei->message);
    pthread_mutex_unlock(&k->mu);
    return e;
}
