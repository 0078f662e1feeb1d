/*
 * API keys (apikey.c): creation, listing, revocation, authentication and
 * the verified-key cache. Above the core layer only.
 */
#ifndef DCMS_IAM_APIKEY_H
#define DCMS_IAM_APIKEY_H

#include "iam/iam_core.h"

#define IAM_APIKEY_MAX_PERMS 32
#define IAM_APIKEY_MAX_TTL_S (366LL * 24 * 3600)

struct iam_apikey_in {
    const char *name, *identity_id, *expires_at;
    const char *perms[IAM_APIKEY_MAX_PERMS];
    size_t nperms;
};

enum dcms_err iam_apikey_create(const struct iam_call *c, const struct iam_apikey_in *in,
                                json_t **out) DCMS_MUST_CHECK;
enum dcms_err iam_apikey_list(const struct iam_call *c, json_t **out) DCMS_MUST_CHECK;
enum dcms_err iam_apikey_revoke(const struct iam_call *c, const char *id) DCMS_MUST_CHECK;
/* Frees the verified-key cache (dcms_iam_close). NULL is a no-op. */
void iam_apikey_cache_free(struct iam_apikey_cache *c);

#endif
