/*
 * The route table (routes.def) and the matcher. Templates are compared
 * segment by segment; "{name}" captures one non-empty segment. The table is
 * small and scanned linearly, which costs well under a microsecond.
 */
#include "dcms/arena.h"
#include "http/handlers.h"
#include "http/http_int.h"

#define BODY DCMS_ROUTE_BODY_DEFAULT
#define STREAM DCMS_ROUTE_BODY_STREAM

const struct dcms_route dcms_routes[] = {
#define DCMS_ROUTE(method, path, handler, perm, max_body) {#method, path, handler, #perm, max_body},
#include "http/routes.def"
#undef DCMS_ROUTE
};

const size_t dcms_routes_count = sizeof(dcms_routes) / sizeof(dcms_routes[0]);

/*
 * The handlers that take query arguments and check them themselves
 * (dcms_http_query_only). The probes and /metrics are here too: they ignore
 * their query, so monitoring tools may add cache-busting arguments. A
 * handler that starts reading a query argument is added here; until then
 * the server refuses the argument with 400.
 */
static const dcms_http_handler_fn query_owners[] = {
    dcms_sys_healthz,
    dcms_sys_readyz,
    dcms_sys_metrics,
    dcms_audit_http_events,
    dcms_audit_http_export,
    dcms_iam_http_list,
    dcms_contracts_http_list,
    dcms_enclaves_http_list,
    dcms_enclaves_http_compatibility,
    dcms_datasets_http_list,
    dcms_iam_http_member_list,
    dcms_iam_http_member_remove,
    dcms_evidence_http_contract_audit,
    dcms_training_http_list,
    dcms_audit_http_inclusion,
    dcms_audit_http_consistency,
};

bool dcms_route_owns_query(const struct dcms_route *r)
{
    for (size_t i = 0; i < sizeof(query_owners) / sizeof(query_owners[0]); i++)
        if (query_owners[i] == r->handler)
            return true;
    return false;
}

/* Compares one path against one template; fills params when `req` is set. */
static bool path_matches(const char *tmpl, const char *path, struct dcms_http_req *req)
{
    const char *t = tmpl, *p = path;
    size_t nparams = 0;
    while (*t && *p) {
        if (*t == '{') {
            const char *tend = strchr(t, '}');
            const char *pend = strchr(p, '/');
            if (!tend)
                return false;
            if (!pend)
                pend = p + strlen(p);
            if (pend == p || nparams >= DCMS_HTTP_MAX_PARAMS)
                return false;
            if (req) {
                struct dcms_http_param *hp = &req->params[nparams];
                hp->name = dcms_arena_strndup(req->arena, t + 1, (size_t)(tend - t - 1));
                hp->value = dcms_arena_strndup(req->arena, p, (size_t)(pend - p));
                if (!hp->name || !hp->value)
                    return false;
            }
            nparams++;
            t = tend + 1;
            p = pend;
            continue;
        }
        if (*t != *p)
            return false;
        t++;
        p++;
    }
    if (*t || *p)
        return false;
    if (req)
        req->nparams = nparams;
    return true;
}

enum route_match dcms_router_match(const char *method, const char *path, struct dcms_http_req *req,
                                   size_t *index, char *allow, size_t allow_len)
{
    bool path_seen = false;
    const char *m = strcmp(method, "HEAD") == 0 ? "GET" : method;
    for (size_t i = 0; i < dcms_routes_count; i++) {
        const struct dcms_route *r = &dcms_routes[i];
        if (strcmp(r->method, m) != 0)
            continue;
        if (path_matches(r->path, path, NULL)) {
            if (!path_matches(r->path, path, req))
                return ROUTE_NO_PATH; /* out of memory while capturing */
            *index = i;
            return ROUTE_FOUND;
        }
    }
    size_t used = 0;
    if (allow_len)
        allow[0] = '\0';
    for (size_t i = 0; i < dcms_routes_count; i++) {
        const struct dcms_route *r = &dcms_routes[i];
        if (!path_matches(r->path, path, NULL))
            continue;
        path_seen = true;
        const char *extra = strcmp(r->method, "GET") == 0 ? ", HEAD" : "";
        int n =
            snprintf(allow + used, allow_len - used, "%s%s%s", used ? ", " : "", r->method, extra);
        if (n > 0 && (size_t)n < allow_len - used)
            used += (size_t)n;
    }
    return path_seen ? ROUTE_BAD_METHOD : ROUTE_NO_PATH;
}
