/*
 * Serves the web UI (web/, bundled at build time): the page at `/`, which
 * is never cached (it names the current assets), and the assets at
 * `/assets/<name>.<hash>.<ext>`, cached for a year as immutable (a new
 * build gives new names). Every answer carries the UI's security headers:
 * a Content-Security-Policy that allows scripts, styles and connections to
 * this origin only (no inline script, no eval, no framing), and the
 * Permissions-Policy and Cross-Origin-*-Policy headers; the HTTP layer adds
 * X-Content-Type-Options, X-Frame-Options and Referrer-Policy as for every
 * answer. The handlers override its API defaults (CSP, Cache-Control).
 */
#include <string.h>

#include "http/handlers.h"
#include "web/web_int.h"

static const char csp_ui[] =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'none'; object-src 'none'; media-src 'none'; "
    "worker-src 'none'; manifest-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'";
static const char permissions_policy[] =
    "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), "
    "payment=(), usb=()";

static const struct dcms_web_asset *find(const char *name)
{
    for (size_t i = 0; name && i < dcms_web_assets_count; i++)
        if (strcmp(dcms_web_assets[i].name, name) == 0)
            return &dcms_web_assets[i];
    return NULL;
}

static enum dcms_err serve(struct dcms_http_req *req, struct dcms_http_resp *resp,
                           const struct dcms_web_asset *a, const char *cache)
{
    dcms_http_resp_static(resp, 200, a->content_type, (const char *)a->bytes, a->len);
    if (dcms_http_resp_header(resp, "Cache-Control", cache) ||
        dcms_http_resp_header(resp, "Content-Security-Policy", csp_ui) ||
        dcms_http_resp_header(resp, "Permissions-Policy", permissions_policy) ||
        dcms_http_resp_header(resp, "Cross-Origin-Opener-Policy", "same-origin") ||
        dcms_http_resp_header(resp, "Cross-Origin-Resource-Policy", "same-origin"))
        return dcms_err_set(req->ei, DCMS_ERR_INTERNAL, NULL);
    return DCMS_OK;
}

enum dcms_err dcms_web_http_index(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    const struct dcms_web_asset *a = find("index.html");
    if (!a)
        return dcms_err_set(req->ei, DCMS_ERR_INTERNAL, "the web UI was not built into dcmsd");
    return serve(req, resp, a, "no-cache");
}

enum dcms_err dcms_web_http_asset(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    const char *name = dcms_http_req_param(req, "name");
    const struct dcms_web_asset *a = find(name);
    if (!a || a == &dcms_web_assets[0])
        return dcms_err_set(req->ei, DCMS_ERR_NOT_FOUND, "no such asset");
    return serve(req, resp, a, "public, max-age=31536000, immutable");
}
