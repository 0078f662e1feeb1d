/*
 * The one authentication and authorization point: every routed request
 * passes here before its handler runs (and before its body is read).
 *
 * A request with `Authorization: Bearer <JWT>` is authenticated into a
 * principal (dcms_iam_authenticate: ES256, known kid, issuer, audience,
 * times, session not revoked); a bad token is 401 on every route, public
 * ones included. Then the route's permission decides: PUBLIC passes,
 * AUTHENTICATED needs a principal, anything else is an action
 * (AUDIT_READ → "audit:read") that dcms_iam_authorize must grant (403
 * otherwise). A request without a token on any route that is not PUBLIC
 * is 401: there is no way around authentication. The HTTP layer audits
 * every 401 and 403.
 *
 * `Bearer dcms_...` is an API key instead (dcms_iam_authenticate_api_key):
 * the principal then carries the key's scope, which bounds every decision.
 * Without an Authorization header, a verified TLS client certificate that
 * DCMS_TLS_CLIENT_MAP_FILE maps to an API key authenticates as that key
 * (dcms_iam_authenticate_api_key_id): same identity, scope and checks.
 */
#include <ctype.h>
#include <strings.h>

#include "dcms/app.h"
#include "dcms/arena.h"
#include "dcms/iam.h"
#include "dcms/log.h"
#include "http/server_int.h"

/* AUDIT_READ → "audit:read"; false when it does not fit. */
static bool action_of(const char *perm, char *out, size_t cap)
{
    size_t n = strlen(perm);
    if (n + 1 > cap)
        return false;
    bool colon = false;
    for (size_t i = 0; i <= n; i++) {
        char ch = perm[i];
        if (ch == '_' && !colon) {
            ch = ':';
            colon = true;
        }
        out[i] = (char)tolower((unsigned char)ch);
    }
    return true;
}

enum dcms_err dcms_http_authorize(const struct dcms_route *route, struct dcms_http_req *req)
{
    const char *auth = dcms_http_req_header(req, "Authorization");
    if (auth) {
        if (strncasecmp(auth, "Bearer ", 7) != 0)
            return dcms_err_set(req->ei, DCMS_ERR_UNAUTHENTICATED,
                                "unsupported authorization scheme; use Bearer");
        const char *tok = auth + 7;
        while (*tok == ' ')
            tok++;
        struct dcms_principal *p = dcms_arena_alloc(req->arena, sizeof(*p));
        if (!p)
            return dcms_err_set(req->ei, DCMS_ERR_NOMEM, NULL);
        if (!req->app->iam)
            return dcms_err_set(req->ei, DCMS_ERR_UNAUTHENTICATED, "authentication unavailable");
        enum dcms_err e = dcms_iam_is_api_key(tok)
                              ? dcms_iam_authenticate_api_key(req->app->iam, tok, strlen(tok),
                                                              req->arena, p, req->ei)
                              : dcms_iam_authenticate(req->app->iam, tok, strlen(tok), p, req->ei);
        if (e)
            return e;
        req->principal = p;
    } else if (req->client_key_id && req->app->iam) {
        struct dcms_principal *p = dcms_arena_alloc(req->arena, sizeof(*p));
        if (!p)
            return dcms_err_set(req->ei, DCMS_ERR_NOMEM, NULL);
        enum dcms_err e = dcms_iam_authenticate_api_key_id(req->app->iam, req->client_key_id,
                                                           req->arena, p, req->ei);
        if (e)
            return e;
        req->principal = p;
    }
    if (strcmp(route->permission, "PUBLIC") == 0)
        return DCMS_OK;
    if (!req->principal)
        return dcms_err_set(req->ei, DCMS_ERR_UNAUTHENTICATED, "authentication required for %s %s",
                            route->method, route->path);
    if (strcmp(route->permission, "AUTHENTICATED") == 0)
        return DCMS_OK;
    char action[96];
    if (!action_of(route->permission, action, sizeof(action)))
        return dcms_err_set(req->ei, DCMS_ERR_INTERNAL, NULL);
    struct dcms_iam_ctx ctx = {req->app->iam, req->client_ip};
    return dcms_iam_authorize(req->principal, action, NULL, &ctx, req->ei);
}
