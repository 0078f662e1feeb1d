/*
 * The top of the IAM service: dcms_iam_open wires the layers together
 * (the core's KEK, hashing slots, signing keys and policy snapshot, then
 * the bootstrap admin of the identity layer) and dcms_iam_close undoes it,
 * including the API-key cache. Nothing includes a header of this file's
 * own; see README.md, "Layers".
 */
#include <unistd.h>

#include "dcms/app.h"
#include "dcms/config.h"
#include "dcms/crypto.h"
#include "dcms/str.h"
#include "iam/apikey_int.h"
#include "iam/iam_core.h"
#include "iam/iam_identity.h"

/* ---- lifecycle ---- */

enum dcms_err dcms_iam_open(struct dcms_app *app, struct dcms_iam **out, struct dcms_errinfo *ei)
{
    struct dcms_iam *iam = calloc(1, sizeof(*iam));
    if (!iam)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    iam->app = app;
    iam->cfg = app->cfg;
    pthread_mutex_init(&iam->keys_mu, NULL);
    pthread_mutex_init(&iam->pol_mu, NULL);
    for (size_t i = 0; i < IAM_CACHE_STRIPES; i++)
        pthread_mutex_init(&iam->cache_mu[i], NULL);
    atomic_init(&iam->epoch, 1);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned slots = iam->cfg->pwhash_max_concurrent ? (unsigned)iam->cfg->pwhash_max_concurrent
                                                     : (unsigned)(cpus > 0 ? cpus : 1);
    sem_init(&iam->hash_slots, 0, slots);
    iam->cache = calloc(IAM_CACHE_SLOTS, sizeof(*iam->cache));
    enum dcms_err e = iam->cache ? DCMS_OK : dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    if (!e)
        e = iam_kek_open(iam, ei);
    if (!e)
        e = iam_device_open(iam, ei);
    if (!e) {
        unsigned char junk[16];
        char pw[40];
        randombytes_buf(junk, sizeof(junk));
        dcms_hex_encode(pw, junk, sizeof(junk));
        e = iam_hash_password(iam, pw, iam->dummy_hash, ei);
    }
    if (!e)
        e = iam_keys_ensure(iam, ei);
    if (!e)
        e = iam_policies_reload(iam, ei);
    if (!e)
        e = iam_bootstrap(iam, ei);
    if (e) {
        dcms_iam_close(iam);
        return e;
    }
    *out = iam;
    return DCMS_OK;
}

void dcms_iam_close(struct dcms_iam *iam)
{
    if (!iam)
        return;
    iam_keys_put(iam->keys);
    iam_policyset_put(iam->pols);
    iam_apikey_cache_free(atomic_load(&iam->apikey_cache));
    if (iam->kek)
        sodium_free(iam->kek);
    if (iam->device_key)
        sodium_free(iam->device_key);
    if (iam->cache) {
        sodium_memzero(iam->cache, IAM_CACHE_SLOTS * sizeof(*iam->cache));
        free(iam->cache);
    }
    sem_destroy(&iam->hash_slots);
    pthread_mutex_destroy(&iam->keys_mu);
    pthread_mutex_destroy(&iam->pol_mu);
    for (size_t i = 0; i < IAM_CACHE_STRIPES; i++)
        pthread_mutex_destroy(&iam->cache_mu[i]);
    free(iam);
}
