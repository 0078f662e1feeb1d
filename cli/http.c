/*
 * HTTP for dcms (libcurl) and the session: the profile's refresh token is
 * exchanged for an access token on first use (and again on a 401), the new
 * refresh token saved at once under a lock on the configuration directory
 * (refresh tokens work once: two runs racing on one would end the session).
 * Tokens live in libsodium secure memory and are wiped when freed.
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <unistd.h>

#include "cli.h"
#include "dcms/banned.h"

#define BODY_MAX_BYTES (256u * 1024 * 1024)
#define TIMEOUT_S 120L

void cli_resp_release(struct cli_resp *r)
{
    if (r->body) {
        sodium_memzero(r->body, r->len);
        free(r->body);
    }
    json_decref(r->json);
    free(r->location);
    free(r->etag);
    memset(r, 0, sizeof *r);
    r->upload_offset = r->upload_length = -1;
}

struct sink {
    struct cli_resp *r;
    size_t cap;
    bool too_big;
    CURL *h;
    const struct cli_stream *stream; /* a 2xx body goes here; NULL: memory */
    long status;                     /* of the answer being streamed; 0 before the body */
    bool stream_failed;
};

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
    struct sink *s = ud;
    size_t n = size * nmemb;
    if (s->stream) {
        if (!s->status)
            curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &s->status);
        if (s->status >= 200 && s->status <= 299) {
            size_t w = s->stream->write(s->stream->ud, p, n);
            s->stream_failed = w != n;
            return w;
        }
    }
    if (s->r->len + n > BODY_MAX_BYTES) {
        s->too_big = true;
        return 0;
    }
    if (s->r->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->r->len + n + 1)
            cap *= 2;
        char *b = malloc(cap);
        if (!b)
            return 0;
        if (s->r->body) {
            memcpy(b, s->r->body, s->r->len);
            sodium_memzero(s->r->body, s->r->len);
            free(s->r->body);
        }
        s->r->body = b;
        s->cap = cap;
    }
    memcpy(s->r->body + s->r->len, p, n);
    s->r->len += n;
    s->r->body[s->r->len] = '\0';
    return n;
}

static char *header_value(const char *line, size_t n, const char *name)
{
    size_t k = strlen(name);
    if (n <= k + 1 || strncasecmp(line, name, k) != 0 || line[k] != ':')
        return NULL;
    const char *v = line + k + 1;
    const char *end = line + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    return strndup(v, (size_t)(end - v));
}

static long long parse_ll(const char *s)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    return (errno || end == s || *end) ? -1 : v;
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *ud)
{
    struct cli_resp *r = ud;
    size_t n = size * nmemb;
    char *v;
    if ((v = header_value(p, n, "Location"))) {
        free(r->location);
        r->location = v;
    } else if ((v = header_value(p, n, "ETag"))) {
        free(r->etag);
        r->etag = v;
    } else if ((v = header_value(p, n, "Upload-Offset"))) {
        r->upload_offset = parse_ll(v);
        free(v);
    } else if ((v = header_value(p, n, "Upload-Length"))) {
        r->upload_length = parse_ll(v);
        free(v);
    }
    return n;
}

/* Upload progress is shown by datasets.c through this hook while a PATCH body goes out. */
int (*cli_progress_hook)(void *ud, long long sent_now);
void *cli_progress_ud;

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    if (cli_progress_hook)
        return cli_progress_hook(cli_progress_ud, (long long)ulnow);
    return 0;
}

char *cli_urlencode(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *o = malloc(3 * n + 1), *p = o;
    if (!o)
        return NULL;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '_' || ch == '.' || ch == '~') {
            *p++ = (char)ch;
        } else {
            *p++ = '%';
            *p++ = hex[ch >> 4];
            *p++ = hex[ch & 15];
        }
    }
    *p = '\0';
    return o;
}

int cli_query_add(char *q, size_t cap, const char *name, const char *value)
{
    if (!value)
        return 0;
    char *e = cli_urlencode(value);
    size_t n = strlen(q);
    int w = e ? snprintf(q + n, cap - n, "%s%s=%s", n && q[n - 1] == '?' ? "" : "&", name, e) : -1;
    free(e);
    if (w < 0 || (size_t)w >= cap - n) {
        q[n] = '\0';
        return -1;
    }
    return 0;
}

/* One HTTP exchange; bearer may be NULL. */
static int perform(struct cli *c, const char *method, const char *path, const char *bearer,
                   const char *body, size_t body_len, const char *content_type,
                   const char *const *headers, const struct cli_stream *stream, struct cli_resp *r)
{
    cli_resp_release(r);
    CURL *h = curl_easy_init();
    struct curl_slist *hl = NULL;
    char *url = NULL, *auth = NULL;
    int rc = CLI_EXIT_UNREACHABLE;
    if (!h)
        goto out;
    size_t ulen = strlen(c->server) + strlen(path) + 1;
    if (!(url = malloc(ulen)))
        goto out;
    snprintf(url, ulen, "%s%s", c->server, path);
    if (bearer) {
        size_t alen = strlen(bearer) + sizeof "Authorization: Bearer ";
        if (!(auth = sodium_malloc(alen)))
            goto out;
        snprintf(auth, alen, "Authorization: Bearer %s", bearer);
        hl = curl_slist_append(hl, auth);
    }
    if (content_type) {
        char ct[128];
        snprintf(ct, sizeof ct, "Content-Type: %s", content_type);
        hl = curl_slist_append(hl, ct);
    }
    if (!stream)
        hl = curl_slist_append(hl, "Accept: application/json");
    hl = curl_slist_append(hl, "Expect:");
    for (size_t i = 0; headers && headers[i]; i++)
        hl = curl_slist_append(hl, headers[i]);
    struct sink s = {.r = r, .h = h, .stream = stream};
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "dcms/" DCMS_VERSION);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
    /* A whole-request timeout would cut slow uploads (--max-rate); a stalled transfer is cut
     * instead: less than 1 byte/s for TIMEOUT_S seconds. */
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, TIMEOUT_S);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
        if (body || strcmp(method, "POST") == 0 || strcmp(method, "PATCH") == 0 ||
            strcmp(method, "PUT") == 0) {
            curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? body : "");
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body ? body_len : 0));
        }
    }
    if (cli_progress_hook) {
        curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    }
    if (c->max_rate > 0)
        curl_easy_setopt(h, CURLOPT_MAX_SEND_SPEED_LARGE, (curl_off_t)c->max_rate);
    if (stream && stream->timeout_ms > 0)
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, stream->timeout_ms);
    CURLcode e = curl_easy_perform(h);
    if (e == CURLE_OPERATION_TIMEDOUT && stream && stream->timeout_ms > 0 && !s.stream_failed) {
        /* The caller's deadline, not a dead server: what came is in the stream already. */
        r->timed_out = true;
        r->status = 200;
        rc = CLI_EXIT_OK;
        goto out;
    }
    if (e != CURLE_OK) {
        if (s.stream_failed) {
            /* The stream's writer said why (a full disk, a bad event). */
            rc = CLI_EXIT_USAGE;
            goto out;
        }
        if (s.too_big)
            cli_errorf(c, "%s %s: the answer is larger than %u bytes", method, path,
                       BODY_MAX_BYTES);
        else
            cli_errorf(c, "cannot reach %s: %s", c->server, curl_easy_strerror(e));
        goto out;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    if (r->body && r->len) {
        json_error_t je;
        r->json = json_loadb(r->body, r->len, 0, &je);
    }
    rc = CLI_EXIT_OK;
out:
    /* curl copied the Authorization line into the list: wipe that copy too. */
    for (struct curl_slist *x = hl; x; x = x->next)
        sodium_memzero(x->data, strlen(x->data));
    curl_slist_free_all(hl);
    if (auth)
        sodium_free(auth);
    free(url);
    if (h)
        curl_easy_cleanup(h);
    return rc;
}

/* ---- configuration and the profile's tokens ---- */

static int lock_config(struct cli *c)
{
    size_t n = strlen(c->config_dir) + sizeof "/.lock";
    char *p = malloc(n);
    if (!p)
        return -1;
    snprintf(p, n, "%s/.lock", c->config_dir);
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    free(p);
    if (fd >= 0 && flock(fd, LOCK_EX) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int cli_load_config(struct cli *c, struct cli_config *cfg)
{
    char err[512];
    if (cli_mkdir_private(c->config_dir) != 0) {
        cli_errorf(c, "%s: %s", c->config_dir, strerror(errno));
        return CLI_EXIT_USAGE;
    }
    if (cli_config_read(c->config_path, cfg, err, sizeof err)) {
        cli_errorf(c, "%s", err);
        return CLI_EXIT_USAGE;
    }
    return 0;
}

int cli_save_config(struct cli *c, struct cli_config *cfg)
{
    char err[512];
    if (cli_config_write(c->config_path, cfg, err, sizeof err)) {
        cli_errorf(c, "%s", err);
        return CLI_EXIT_USAGE;
    }
    return 0;
}

static int set_access_token(struct cli *c, const char *t)
{
    if (c->access_token)
        sodium_free(c->access_token);
    size_t n = strlen(t);
    if (!(c->access_token = sodium_malloc(n + 1)))
        return -1;
    memcpy(c->access_token, t, n + 1);
    return 0;
}

/* Exchanges the profile's refresh token for new tokens, saving the new refresh token. */
static int refresh(struct cli *c)
{
    struct cli_config cfg = {0};
    struct cli_resp r = CLI_RESP_INIT;
    json_t *body = NULL;
    int rc, lock = lock_config(c);
    if ((rc = cli_load_config(c, &cfg)))
        goto out;
    struct cli_profile *p = cli_config_profile(&cfg, c->profile, false);
    if (!p || !p->refresh_token) {
        cli_errorf(c, "not logged in (profile \"%s\"): run dcms login", c->profile);
        rc = CLI_EXIT_REFUSED;
        goto out;
    }
    body = json_pack("{s:s}", "refresh_token", p->refresh_token);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    if (!text) {
        rc = CLI_EXIT_USAGE;
        goto out;
    }
    rc = perform(c, "POST", "/api/v1/auth/refresh", NULL, text, strlen(text), "application/json",
                 NULL, NULL, &r);
    sodium_memzero(text, strlen(text));
    free(text);
    if (rc)
        goto out;
    json_t *at = json_object_get(r.json, "access_token");
    json_t *rt = json_object_get(r.json, "refresh_token");
    if (r.status != 200 || !json_is_string(at) || !json_is_string(rt)) {
        if (r.status == 401) {
            cli_errorf(c, "the session of profile \"%s\" has ended: run dcms login", c->profile);
            cli_profile_set_token(p, NULL);
            cli_save_config(c, &cfg);
        } else {
            cli_print_error(c, &r);
        }
        rc = CLI_EXIT_REFUSED;
        goto out;
    }
    if (cli_profile_set_token(p, json_string_value(rt)) ||
        set_access_token(c, json_string_value(at))) {
        rc = CLI_EXIT_USAGE;
        goto out;
    }
    rc = cli_save_config(c, &cfg);
out:
    if (body) {
        json_t *v = json_object_get(body, "refresh_token");
        if (v)
            sodium_memzero((char *)json_string_value(v), json_string_length(v));
        json_decref(body);
    }
    if (r.json) {
        /* The token strings of the answer are wiped with the body; clear jansson's copies too. */
        const char *k;
        json_t *v;
        json_object_foreach(r.json, k, v)
        {
            if (json_is_string(v))
                sodium_memzero((char *)json_string_value(v), json_string_length(v));
        }
    }
    cli_resp_release(&r);
    cli_config_release(&cfg);
    if (lock >= 0)
        close(lock);
    return rc;
}

int cli_authenticate(struct cli *c)
{
    if (c->access_token)
        return 0;
    return refresh(c);
}

static int request(struct cli *c, const char *method, const char *path, json_t *json_body,
                   const struct cli_body *raw, const char *const *headers, bool auth,
                   const struct cli_stream *stream, struct cli_resp *r)
{
    char *text = NULL;
    const char *body = NULL, *ct = NULL;
    size_t len = 0;
    int rc;
    if (json_body) {
        if (!(text = json_dumps(json_body, JSON_COMPACT))) {
            cli_errorf(c, "out of memory");
            return CLI_EXIT_USAGE;
        }
        body = text;
        len = strlen(text);
        ct = "application/json";
    } else if (raw) {
        body = raw->data;
        len = raw->len;
        ct = raw->content_type;
    }
    bool refreshed = auth && !c->access_token;
    if (auth && (rc = cli_authenticate(c)))
        goto out;
    rc = perform(c, method, path, auth ? c->access_token : NULL, body, len, ct, headers, stream, r);
    if (rc == 0 && auth && r->status == 401 && !refreshed) {
        /* The access token expired during a long run: refresh once and retry. */
        if ((rc = refresh(c)) == 0)
            rc = perform(c, method, path, c->access_token, body, len, ct, headers, stream, r);
    }
out:
    if (text) {
        sodium_memzero(text, len);
        free(text);
    }
    return rc;
}

int cli_request(struct cli *c, const char *method, const char *path, json_t *json_body,
                const struct cli_body *raw, const char *const *headers, bool auth,
                struct cli_resp *r)
{
    return request(c, method, path, json_body, raw, headers, auth, NULL, r);
}

void cli_print_error(struct cli *c, const struct cli_resp *r)
{
    json_t *err = json_object_get(r->json, "error");
    const char *msg = json_string_value(json_object_get(err, "message"));
    const char *code = json_string_value(json_object_get(err, "code"));
    if (!msg) {
        cli_errorf(c, "the server answered %ld", r->status);
        return;
    }
    cli_errorf(c, "%s (%s, %ld)", msg, code ? code : "error", r->status);
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(err, "details"), i, d)
    {
        const char *f = json_string_value(json_object_get(d, "field"));
        const char *p = json_string_value(json_object_get(d, "problem"));
        fprintf(stderr, "  %s: %s\n", f ? f : "?", p ? p : "?");
    }
}

/* A request's exit status, with a non-2xx answer printed as a refusal. */
static int refused_unless_2xx(struct cli *c, int rc, const struct cli_resp *r)
{
    if (rc)
        return rc;
    if (r->status < 200 || r->status > 299) {
        cli_print_error(c, r);
        return CLI_EXIT_REFUSED;
    }
    return 0;
}

int cli_call(struct cli *c, const char *method, const char *path, json_t *json_body,
             struct cli_resp *r)
{
    return refused_unless_2xx(c, cli_request(c, method, path, json_body, NULL, NULL, true, r), r);
}

int cli_call_id(struct cli *c, const char *method, const char *base, const char *id,
                const char *tail, json_t *json_body, struct cli_resp *r)
{
    char *p = cli_path(base, id, tail);
    int rc = p ? cli_call(c, method, p, json_body, r) : CLI_EXIT_USAGE;
    free(p);
    return rc;
}

int cli_call_stream(struct cli *c, const char *path, const char *const *headers,
                    const struct cli_stream *stream, struct cli_resp *r)
{
    return refused_unless_2xx(c, request(c, "GET", path, NULL, NULL, headers, true, stream, r), r);
}

int cli_whoami_id(struct cli *c)
{
    if (c->identity_id)
        return 0;
    struct cli_resp r = CLI_RESP_INIT;
    int rc = cli_call(c, "GET", "/api/v1/auth/me", NULL, &r);
    if (rc == 0) {
        const char *id =
            json_string_value(json_object_get(json_object_get(r.json, "identity"), "id"));
        if (!id || !(c->identity_id = strdup(id))) {
            cli_errorf(c, "GET /api/v1/auth/me: no identity in the answer");
            rc = CLI_EXIT_REFUSED;
        }
    }
    cli_resp_release(&r);
    return rc;
}

void cli_release(struct cli *c)
{
    if (c->access_token)
        sodium_free(c->access_token);
    c->access_token = NULL;
    free(c->server);
    free(c->config_dir);
    free(c->config_path);
    free(c->identity_id);
}

char *cli_path(const char *base, const char *id, const char *tail)
{
    char *e = cli_urlencode(id);
    size_t n = strlen(base) + (e ? strlen(e) : 0) + strlen(tail) + 1;
    char *p = e ? malloc(n) : NULL;
    if (p)
        snprintf(p, n, "%s%s%s", base, e, tail);
    free(e);
    return p;
}
