/*
 * Forwarding a request to the node that owns the resource (dcms_http_forward
 * in dcms/http.h), with libcurl. The owner authenticates and authorizes the
 * caller again from the same Authorization header, so forwarding adds no
 * trust: this node only relays. What is relayed: the method, the path, the
 * body, Authorization, Content-Type, If-Match and the request id; what comes
 * back: the status, the body (at most 1 MiB) and Content-Type, ETag and
 * Location. X-Dcms-Forwarded-By names this node, so the owner never
 * forwards again.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dcms/arena.h"
#include "dcms/http.h"

#define FORWARD_MAX_BODY (1u << 20)

struct fwd {
    struct dcms_arena *arena;
    char *body;
    size_t len;
    bool too_big;
    const char *content_type, *etag, *location;
};

static size_t on_body(char *p, size_t size, size_t nmemb, void *ctx)
{
    struct fwd *f = ctx;
    size_t n = size * nmemb;
    if (f->len + n > FORWARD_MAX_BODY) {
        f->too_big = true;
        return 0;
    }
    char *nb = realloc(f->body, f->len + n + 1);
    if (!nb)
        return 0;
    memcpy(nb + f->len, p, n);
    f->body = nb;
    f->len += n;
    f->body[f->len] = '\0';
    return n;
}

/* Keeps the value of one of the relayed response headers (trimmed, in the arena). */
static size_t on_header(char *p, size_t size, size_t nmemb, void *ctx)
{
    struct fwd *f = ctx;
    size_t n = size * nmemb;
    static const char *const names[] = {"Content-Type", "ETag", "Location"};
    for (size_t i = 0; i < 3; i++) {
        size_t k = strlen(names[i]);
        if (n <= k + 1 || strncasecmp(p, names[i], k) != 0 || p[k] != ':')
            continue;
        const char *v = p + k + 1;
        size_t vl = n - k - 1;
        while (vl && (*v == ' ' || *v == '\t'))
            v++, vl--;
        while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
            vl--;
        char *s = dcms_arena_strndup(f->arena, v, vl);
        if (i == 0)
            f->content_type = s;
        else if (i == 1)
            f->etag = s;
        else
            f->location = s;
    }
    return n;
}

static struct curl_slist *relay_header(struct dcms_http_req *req, struct curl_slist *h,
                                       const char *name, const char *value)
{
    if (!value || !h)
        return h;
    char *line = dcms_arena_sprintf(req->arena, "%s: %s", name, value);
    struct curl_slist *nh = line ? curl_slist_append(h, line) : NULL;
    if (!nh)
        curl_slist_free_all(h);
    return nh;
}

enum dcms_err dcms_http_forward(struct dcms_http_req *req, struct dcms_http_resp *resp,
                                const char *base_url, const char *self_id)
{
    enum dcms_err e = DCMS_OK;
    struct fwd f = {.arena = req->arena};
    char *url = dcms_arena_sprintf(req->arena, "%s%s", base_url, req->path);
    CURL *curl = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "Expect:");
    h = relay_header(req, h, "Authorization", dcms_http_req_header(req, "Authorization"));
    h = relay_header(req, h, "Content-Type", dcms_http_req_header(req, "Content-Type"));
    h = relay_header(req, h, "If-Match", dcms_http_req_header(req, "If-Match"));
    h = relay_header(req, h, "X-Request-Id", req->request_id);
    h = relay_header(req, h, DCMS_HTTP_FORWARDED_BY, self_id);
    if (!url || !curl || !h) {
        e = dcms_err_set(req->ei, DCMS_ERR_NOMEM, NULL);
        goto out;
    }
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, req->method);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, h);
    if (strcmp(req->method, "GET") != 0) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body.len);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, req->body.len ? req->body.ptr : "");
    }
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 3000L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 60000L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &f);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &f);
    CURLcode rc = curl_easy_perform(curl);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    if (rc != CURLE_OK || status < 100 || status > 599) {
        e = dcms_err_set(req->ei, DCMS_ERR_UNAVAILABLE,
                         "the node that runs this resource does not answer (%s); try again",
                         f.too_big ? "answer too large" : curl_easy_strerror(rc));
        goto out;
    }
    resp->status = (unsigned)status;
    resp->content_type = f.content_type ? f.content_type : "application/json; charset=utf-8";
    resp->body = f.body ? f.body : "";
    resp->body_len = f.len;
    resp->body_owned = f.body != NULL;
    f.body = NULL;
    if ((f.etag && (e = dcms_http_resp_header(resp, "ETag", f.etag))) ||
        (f.location && (e = dcms_http_resp_header(resp, "Location", f.location))))
        goto out;
out:
    free(f.body);
    curl_slist_free_all(h);
    if (curl)
        curl_easy_cleanup(curl);
    return e;
}
