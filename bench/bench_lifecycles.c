/*
 * bench_lifecycles: full contract lifecycles through dcmsd's API, for
 * bench/bench-contracts.sh.
 *
 *     BENCH_USERS='{"provider": {...}, "consumer": {...}}' \
 *         bench_lifecycles BASE_URL SECONDS [CLIENTS]
 *
 * Each user is {id, token, key_id, seed}: the identity, a Bearer token and
 * a registered Ed25519 signing key with its 32-byte seed (base64url). Each
 * of CLIENTS threads (default 4) runs, for SECONDS, create → submit → sign
 * (provider) → sign (consumer) → activate, one request after the other over
 * one keep-alive connection, and prints
 *
 *     {"per_s": LIFECYCLES_PER_S, "errors": N, "clients": CLIENTS}
 *
 * The driver is C (libcurl, libsodium) so that the load generator costs
 * little CPU beside dcmsd on a small machine: a JavaScript driver used a
 * whole core for ~270 lifecycles/s and was the bottleneck.
 */
#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dcms/clock.h"

#define MAX_CLIENTS 64

struct user {
    const char *id, *token, *key_id;
    unsigned char sk[crypto_sign_SECRETKEYBYTES];
};

static struct user users[2]; /* provider, consumer */
static const char *base;
static char *create_body;
static int64_t end_us;

struct buf {
    char *p;
    size_t len, cap;
};

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
    struct buf *b = arg;
    size_t add = size * n;
    if (b->len + add + 1 > b->cap) {
        size_t cap = (b->len + add + 1) * 2;
        char *q = realloc(b->p, cap);
        if (!q)
            return 0;
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, add);
    b->len += add;
    b->p[b->len] = '\0';
    return add;
}

struct client {
    CURL *curl;
    struct buf body;
    long done, errors;
};

/* POSTs `json` (may be NULL) to base+path as `u`; 0 when the status is `want`. */
static int post(struct client *c, const struct user *u, const char *path, const char *json,
                long want)
{
    char url[512], auth[1024];
    snprintf(url, sizeof(url), "%s%s", base, path);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", u->token);
    struct curl_slist *h = curl_slist_append(NULL, auth);
    h = curl_slist_append(h, "Content-Type: application/json");
    c->body.len = 0;
    curl_easy_setopt(c->curl, CURLOPT_URL, url);
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, json ? json : "");
    CURLcode rc = curl_easy_perform(c->curl);
    curl_slist_free_all(h);
    long status = 0;
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
    if (rc != CURLE_OK || status != want) {
        if (c->errors < 3)
            fprintf(stderr, "bench_lifecycles: POST %s: %s, status %ld: %.300s\n", path,
                    curl_easy_strerror(rc), status, c->body.p ? c->body.p : "");
        return -1;
    }
    return 0;
}

static int sign(struct client *c, const struct user *u, const char *id, const char *hash)
{
    unsigned char raw[32], sig[crypto_sign_BYTES];
    size_t n = 0;
    if (sodium_hex2bin(raw, sizeof(raw), hash, strlen(hash), NULL, &n, NULL) || n != sizeof(raw))
        return -1;
    crypto_sign_detached(sig, NULL, raw, sizeof(raw), u->sk);
    char sig64[sodium_base64_ENCODED_LEN(crypto_sign_BYTES, sodium_base64_VARIANT_ORIGINAL)];
    sodium_bin2base64(sig64, sizeof(sig64), sig, sizeof(sig), sodium_base64_VARIANT_ORIGINAL);
    char body[512], path[128];
    snprintf(body, sizeof(body),
             "{\"type\":\"digital\",\"terms_hash\":\"%s\",\"key_id\":\"%s\",\"signature\":\"%s\"}",
             hash, u->key_id, sig64);
    snprintf(path, sizeof(path), "/api/v1/contracts/%s/sign", id);
    return post(c, u, path, body, 200);
}

static int lifecycle(struct client *c)
{
    if (post(c, &users[0], "/api/v1/contracts", create_body, 201))
        return -1;
    json_t *j = json_loads(c->body.p, 0, NULL);
    const char *id = json_string_value(json_object_get(j, "id"));
    const char *hash = json_string_value(json_object_get(j, "terms_hash"));
    int rc = -1;
    char path[128];
    if (!id || !hash || strlen(id) > 64)
        goto out;
    snprintf(path, sizeof(path), "/api/v1/contracts/%s/submit", id);
    if (post(c, &users[0], path, NULL, 200) || sign(c, &users[0], id, hash) ||
        sign(c, &users[1], id, hash))
        goto out;
    snprintf(path, sizeof(path), "/api/v1/contracts/%s/activate", id);
    rc = post(c, &users[1], path, NULL, 200);
out:
    json_decref(j);
    return rc;
}

static void *run(void *arg)
{
    struct client *c = arg;
    while (dcms_clock_now_us() < end_us) {
        if (lifecycle(c))
            c->errors++;
        else
            c->done++;
    }
    return NULL;
}

static int load_user(json_t *all, const char *side, struct user *u)
{
    json_t *o = json_object_get(all, side);
    const char *seed64 = json_string_value(json_object_get(o, "seed"));
    u->id = json_string_value(json_object_get(o, "id"));
    u->token = json_string_value(json_object_get(o, "token"));
    u->key_id = json_string_value(json_object_get(o, "key_id"));
    unsigned char seed[crypto_sign_SEEDBYTES], pk[crypto_sign_PUBLICKEYBYTES];
    size_t n = 0;
    if (!u->id || !u->token || !u->key_id || !seed64 ||
        sodium_base642bin(seed, sizeof(seed), seed64, strlen(seed64), NULL, &n, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) ||
        n != sizeof(seed)) {
        fprintf(stderr, "bench_lifecycles: BENCH_USERS.%s needs id, token, key_id and seed\n",
                side);
        return -1;
    }
    crypto_sign_seed_keypair(pk, u->sk, seed);
    sodium_memzero(seed, sizeof(seed));
    return 0;
}

/* The terms every lifecycle proposes (valid from an hour ago for 400 days). */
static char *make_create_body(void)
{
    char from[DCMS_TIME_STRLEN], to[DCMS_TIME_STRLEN];
    int64_t now = dcms_clock_now_us();
    dcms_time_format(now - 3600LL * 1000000, from);
    dcms_time_format(now + 400LL * 86400 * 1000000, to);
    json_t *terms = json_pack(
        "{s:{s:[s], s:[s]}, s:{s:[s], s:[s], s:i, s:b}, s:{s:i, s:s}, s:{s:s, s:b, s:b},"
        " s:{s:[s], s:[s]}, s:s, s:s}",
        "data_access", "datasets", "s3://bench/records", "permissions", "train", "usage",
        "purposes", "benchmark", "allowed_model_types", "gbm", "max_training_runs", 3,
        "raw_data_export", 0, "retention", "days", 30, "deletion", "delete", "security",
        "encryption_level", "high", "network_isolation", 1, "audit_logging", 1, "compliance",
        "frameworks", "GDPR", "data_residency", "DE", "effective_from", from, "expires_at", to);
    json_t *body = json_pack("{s:s, s:s, s:s, s:o}", "title", "bench lifecycle", "provider_id",
                             users[0].id, "consumer_id", users[1].id, "terms", terms);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    return text;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: BENCH_USERS=JSON bench_lifecycles BASE_URL SECONDS [CLIENTS]\n");
        return 2;
    }
    base = argv[1];
    long seconds = strtol(argv[2], NULL, 10);
    long nclients = argc > 3 ? strtol(argv[3], NULL, 10) : 4;
    const char *env = getenv("BENCH_USERS");
    json_t *all = env ? json_loads(env, 0, NULL) : NULL;
    if (seconds < 1 || seconds > 3600 || nclients < 1 || nclients > MAX_CLIENTS || !all ||
        sodium_init() < 0 || curl_global_init(CURL_GLOBAL_DEFAULT) ||
        load_user(all, "provider", &users[0]) || load_user(all, "consumer", &users[1]) ||
        !(create_body = make_create_body())) {
        fprintf(stderr, "bench_lifecycles: bad arguments or BENCH_USERS\n");
        return 2;
    }
    static struct client clients[MAX_CLIENTS];
    pthread_t tids[MAX_CLIENTS];
    int64_t t0 = dcms_clock_now_us();
    end_us = t0 + seconds * 1000000;
    for (long i = 0; i < nclients; i++) {
        if (!(clients[i].curl = curl_easy_init()))
            return 1;
        curl_easy_setopt(clients[i].curl, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(clients[i].curl, CURLOPT_WRITEDATA, &clients[i].body);
        curl_easy_setopt(clients[i].curl, CURLOPT_TIMEOUT, 15L);
        curl_easy_setopt(clients[i].curl, CURLOPT_NOSIGNAL, 1L);
        if (pthread_create(&tids[i], NULL, run, &clients[i]))
            return 1;
    }
    long done = 0, errors = 0;
    for (long i = 0; i < nclients; i++) {
        pthread_join(tids[i], NULL);
        done += clients[i].done;
        errors += clients[i].errors;
        curl_easy_cleanup(clients[i].curl);
        free(clients[i].body.p);
    }
    double s = (double)(dcms_clock_now_us() - t0) / 1e6;
    printf("{\"per_s\": %.1f, \"errors\": %ld, \"clients\": %ld}\n", done / s, errors, nclients);
    sodium_memzero(users, sizeof(users));
    free(create_body);
    json_decref(all);
    curl_global_cleanup();
    return errors ? 1 : 0;
}
