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
 * The driver is C (libsodium, and HTTP/1.1 written on the socket) so that
 * the load generator costs little CPU beside dcmsd on a small machine: a
 * JavaScript driver used a whole core for ~270 lifecycles/s and was the
 * bottleneck, and libcurl's per-request work was still half of the
 * driver's CPU (about 10% of the two cores). BASE_URL is
 * http://HOST:PORT; every answer must carry Content-Length (dcmsd's do).
 */
#include <errno.h>
#include <jansson.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

#include "dcms/clock.h"

#define MAX_CLIENTS 64

struct user {
    const char *id, *token, *key_id;
    unsigned char sk[crypto_sign_SECRETKEYBYTES];
};

static struct user users[2];     /* provider, consumer */
static char host[256], port[16]; /* of BASE_URL */
static char *create_body;
static int64_t end_us;

struct client {
    int fd;     /* the keep-alive connection, -1 when closed */
    char *in;   /* the last answer (headers, then the body at `body`) */
    size_t cap; /* of `in` */
    char *body; /* NUL-terminated */
    long done, errors;
};

static int connect_to(struct client *c)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    if (getaddrinfo(host, port, &hints, &ai))
        return -1;
    c->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
    struct timeval tv = {15, 0}; /* every wait is bounded */
    int one = 1;
    if (c->fd < 0 || setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) ||
        setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) ||
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) ||
        connect(c->fd, ai->ai_addr, ai->ai_addrlen)) {
        if (c->fd >= 0)
            close(c->fd);
        c->fd = -1;
    }
    freeaddrinfo(ai);
    return c->fd < 0 ? -1 : 0;
}

static int send_all(int fd, struct iovec *iov, int n)
{
    while (n > 0) {
        ssize_t w = writev(fd, iov, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

/* Reads one answer into c->in; its status, or -1. */
static long read_answer(struct client *c)
{
    size_t len = 0, hdr = 0, need = 0; /* hdr: where the body starts, once known */
    while (!hdr || len < need) {
        if (len + 4096 + 1 > c->cap) {
            size_t cap = c->cap ? c->cap * 2 : 65536;
            char *q = realloc(c->in, cap);
            if (!q)
                return -1;
            c->in = q;
            c->cap = cap;
        }
        ssize_t r = recv(c->fd, c->in + len, c->cap - len - 1, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        len += (size_t)r;
        c->in[len] = '\0';
        const char *end = hdr ? NULL : strstr(c->in, "\r\n\r\n");
        if (end) {
            const char *cl = NULL;
            for (const char *h = strstr(c->in, "\r\n"); h && h < end; h = strstr(h + 2, "\r\n"))
                if (strncasecmp(h + 2, "Content-Length:", 15) == 0)
                    cl = h + 17;
            if (!cl)
                return -1;
            hdr = (size_t)(end + 4 - c->in);
            need = hdr + strtoul(cl, NULL, 10);
        }
    }
    c->body = c->in + hdr;
    c->in[need] = '\0';
    long status = 0;
    return sscanf(c->in, "HTTP/1.%*d %ld", &status) == 1 ? status : -1;
}

/* POSTs `json` (may be NULL) to `path` as `u`; 0 when the status is `want`. */
static int post(struct client *c, const struct user *u, const char *path, const char *json,
                long want)
{
    char head[2048];
    size_t blen = json ? strlen(json) : 0;
    int n = snprintf(head, sizeof(head),
                     "POST %s HTTP/1.1\r\nHost: %s:%s\r\nAuthorization: Bearer %s\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                     path, host, port, u->token, blen);
    long status = -1;
    for (int attempt = 0; status < 0 && attempt < 2 && n > 0 && (size_t)n < sizeof(head);
         attempt++) {
        if (c->fd < 0 && connect_to(c))
            break;
        struct iovec iov[2] = {{head, (size_t)n}, {(void *)(json ? json : ""), blen}};
        if (send_all(c->fd, iov, 2) || (status = read_answer(c)) < 0) {
            close(c->fd); /* dropped: once more on a new connection */
            c->fd = -1;
            status = -1;
        }
    }
    if (status != want) {
        if (c->errors < 3)
            fprintf(stderr, "bench_lifecycles: POST %s: status %ld: %.300s\n", path, status,
                    status > 0 && c->body ? c->body : "");
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
    json_t *j = json_loads(c->body, 0, NULL);
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
    const char *base = argv[1];
    long seconds = strtol(argv[2], NULL, 10);
    long nclients = argc > 3 ? strtol(argv[3], NULL, 10) : 4;
    const char *env = getenv("BENCH_USERS");
    json_t *all = env ? json_loads(env, 0, NULL) : NULL;
    if (sscanf(base, "http://%255[^:/]:%15[0-9]", host, port) != 2) {
        fprintf(stderr, "bench_lifecycles: BASE_URL must be http://HOST:PORT\n");
        return 2;
    }
    if (seconds < 1 || seconds > 3600 || nclients < 1 || nclients > MAX_CLIENTS || !all ||
        sodium_init() < 0 || load_user(all, "provider", &users[0]) ||
        load_user(all, "consumer", &users[1]) || !(create_body = make_create_body())) {
        fprintf(stderr, "bench_lifecycles: bad arguments or BENCH_USERS\n");
        return 2;
    }
    static struct client clients[MAX_CLIENTS];
    pthread_t tids[MAX_CLIENTS];
    int64_t t0 = dcms_clock_now_us();
    end_us = t0 + seconds * 1000000;
    for (long i = 0; i < nclients; i++) {
        clients[i].fd = -1;
        if (pthread_create(&tids[i], NULL, run, &clients[i]))
            return 1;
    }
    long done = 0, errors = 0;
    for (long i = 0; i < nclients; i++) {
        pthread_join(tids[i], NULL);
        done += clients[i].done;
        errors += clients[i].errors;
        if (clients[i].fd >= 0)
            close(clients[i].fd);
        free(clients[i].in);
    }
    double s = (double)(dcms_clock_now_us() - t0) / 1e6;
    printf("{\"per_s\": %.1f, \"errors\": %ld, \"clients\": %ld}\n", done / s, errors, nclients);
    sodium_memzero(users, sizeof(users));
    free(create_body);
    json_decref(all);
    return errors ? 1 : 0;
}
