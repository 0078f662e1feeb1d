/*
 * Authorization: the role → permission table, JSON policies (effect,
 * actions and resources with '*' wildcards, conditions, attachments to
 * identities and roles) and the one decision function. Pure: the policies
 * to consider are handed in; dcms_iam_authorize() takes them from the
 * service's in-memory snapshot.
 */
#include <arpa/inet.h>
#include <sys/socket.h>

#include "dcms/app.h"
#include "dcms/json.h"
#include "iam/iam_core.h"

static const struct {
    unsigned role;
    const char *name;
    const char *const *perms;
} roles[] = {
    {DCMS_ROLE_ADMIN, "admin", (const char *const[]){"*", NULL}},
    {DCMS_ROLE_PROVIDER, "provider",
     (const char *const[]){"contracts:create", "contracts:read", "contracts:update",
                           "contracts:sign", "contracts:delete", "contracts:activate",
                           "contracts:suspend", "contracts:terminate", "enclaves:create",
                           "enclaves:manage", "enclaves:read", "enclaves:attest", "datasets:manage",
                           "datasets:read", "training:read", "identities:read", NULL}},
    {DCMS_ROLE_CONSUMER, "consumer",
     (const char *const[]){"contracts:create", "contracts:read", "contracts:update",
                           "contracts:sign", "contracts:delete", "contracts:activate",
                           "contracts:terminate", "training:run", "training:read", "datasets:read",
                           "enclaves:read", "identities:read", NULL}},
    {DCMS_ROLE_AUDITOR, "auditor",
     (const char *const[]){"audit:read", "contracts:read", "enclaves:read", "identities:read",
                           "policies:read", "attestation:verify", "training:read", "datasets:read",
                           "members:read", NULL}},
    {DCMS_ROLE_OPERATOR, "operator",
     (const char *const[]){"enclaves:create", "enclaves:manage", "enclaves:read", "enclaves:attest",
                           "attestation:verify", "identities:read", "system:read", NULL}},
    /* Scoped: members:* only reach the organization the principal belongs to (iam_org.c). */
    {DCMS_ROLE_ORG_ADMIN, "org_admin",
     (const char *const[]){"members:read", "members:manage", "identities:read", NULL}},
};
#define NROLES (sizeof(roles) / sizeof(roles[0]))

const char *dcms_iam_role_name(unsigned role)
{
    for (size_t i = 0; i < NROLES; i++)
        if (roles[i].role == role)
            return roles[i].name;
    return NULL;
}

unsigned dcms_iam_role_parse(const char *name)
{
    for (size_t i = 0; i < NROLES; i++)
        if (strcmp(roles[i].name, name) == 0)
            return roles[i].role;
    return 0;
}

bool iam_glob(const char *pat, const char *s)
{
    const char *star = NULL, *resume = NULL;
    while (*s) {
        if (*pat == '*') {
            star = pat++;
            resume = s;
        } else if (*pat == *s) {
            pat++;
            s++;
        } else if (star) {
            pat = star + 1;
            s = ++resume;
        } else {
            return false;
        }
    }
    while (*pat == '*')
        pat++;
    return *pat == '\0';
}

bool iam_role_allows(unsigned r, const char *action)
{
    for (size_t i = 0; i < NROLES; i++) {
        if (!(r & roles[i].role))
            continue;
        for (const char *const *p = roles[i].perms; *p; p++)
            if (iam_glob(*p, action))
                return true;
    }
    return false;
}

bool iam_ipnet_contains(const struct iam_ipnet *net, const char *ip)
{
    unsigned char a[16];
    if (!ip)
        return false;
    if (net->family == AF_INET) {
        if (inet_pton(AF_INET, ip, a) != 1) {
            /* IPv4-mapped IPv6 (::ffff:a.b.c.d) */
            if (strncmp(ip, "::ffff:", 7) != 0 || inet_pton(AF_INET, ip + 7, a) != 1)
                return false;
        }
    } else if (inet_pton(AF_INET6, ip, a) != 1) {
        return false;
    }
    unsigned full = net->prefix / 8, rest = net->prefix % 8;
    if (memcmp(a, net->addr, full) != 0)
        return false;
    if (rest) {
        unsigned char mask = (unsigned char)(0xFF << (8 - rest));
        if ((a[full] & mask) != (net->addr[full] & mask))
            return false;
    }
    return true;
}

static bool parse_cidr(const char *s, struct iam_ipnet *out)
{
    char buf[64];
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    if (n >= sizeof(buf))
        return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    memset(out, 0, sizeof(*out));
    unsigned max;
    if (inet_pton(AF_INET, buf, out->addr) == 1) {
        out->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
        out->family = AF_INET6;
        max = 128;
    } else {
        return false;
    }
    out->prefix = max;
    if (slash) {
        char *end;
        unsigned long p = strtoul(slash + 1, &end, 10);
        if (!slash[1] || *end || p > max)
            return false;
        out->prefix = (unsigned)p;
    }
    return true;
}

/* A non-empty array of 1..255-character strings, copied (malloc'd). */
static char **string_list(const json_t *v, const char *field, size_t *n, bool required,
                          struct dcms_errinfo *ei)
{
    *n = 0;
    if (!v) {
        if (required)
            dcms_err_field(ei, field, "is required");
        return NULL;
    }
    if (!json_is_array(v) || json_array_size(v) > 64 || (required && json_array_size(v) == 0)) {
        dcms_err_field(ei, field, "must be an array of 1 to 64 strings");
        return NULL;
    }
    char **out = calloc(json_array_size(v) + 1, sizeof(char *));
    if (!out)
        return NULL;
    size_t i;
    const json_t *s;
    json_array_foreach(v, i, s)
    {
        if (!json_is_string(s) || json_string_length(s) < 1 || json_string_length(s) > 255) {
            char f[64];
            snprintf(f, sizeof(f), "%s[%zu]", field, i);
            dcms_err_field(ei, f, "must be a string of 1 to 255 characters");
            continue;
        }
        out[(*n)++] = strdup(json_string_value(s));
    }
    return out;
}

static void free_list(char **l, size_t n)
{
    for (size_t i = 0; l && i < n; i++)
        free(l[i]);
    free(l);
}

void iam_policy_release(struct iam_policy *p)
{
    free_list(p->actions, p->nactions);
    free_list(p->resources, p->nresources);
    free_list(p->identities, p->nidentities);
    free(p->nets);
    memset(p, 0, sizeof(*p));
}

static bool cond_bool(const json_t *conds, const char *name, struct dcms_errinfo *ei)
{
    const json_t *v = json_object_get(conds, name);
    if (!v)
        return false;
    if (!json_is_true(v)) {
        char f[64];
        snprintf(f, sizeof(f), "conditions.%s", name);
        dcms_err_field(ei, f, "must be true when present");
    }
    return json_is_true(v);
}

enum dcms_err iam_policy_from_json(const json_t *doc, struct iam_policy *p, struct dcms_errinfo *ei)
{
    memset(p, 0, sizeof(*p));
    if (!json_is_object(doc))
        return dcms_err_field(ei, "", "must be a JSON object");
    static const char *const top[] = {"name",      "description", "effect", "actions",
                                      "resources", "conditions",  "attach", NULL};
    dcms_json_only_members(doc, "", top, ei);
    const json_t *name = json_object_get(doc, "name"), *desc = json_object_get(doc, "description");
    if (!json_is_string(name) || json_string_length(name) < 1 || json_string_length(name) > 255)
        dcms_err_field(ei, "name", "must be a string of 1 to 255 characters");
    if (desc && (!json_is_string(desc) || json_string_length(desc) > 1000))
        dcms_err_field(ei, "description", "must be a string of at most 1000 characters");
    const json_t *effect = json_object_get(doc, "effect");
    if (json_is_string(effect) && strcmp(json_string_value(effect), "deny") == 0)
        p->deny = true;
    else if (!json_is_string(effect) || strcmp(json_string_value(effect), "allow") != 0)
        dcms_err_field(ei, "effect", "must be allow or deny");
    p->actions = string_list(json_object_get(doc, "actions"), "actions", &p->nactions, true, ei);
    p->resources =
        string_list(json_object_get(doc, "resources"), "resources", &p->nresources, true, ei);
    const json_t *conds = json_object_get(doc, "conditions");
    if (conds && !json_is_object(conds)) {
        dcms_err_field(ei, "conditions", "must be an object");
    } else if (conds) {
        static const char *const ck[] = {"party_of_contract", "mfa_present", "self",
                                         "same_organization", "ip_range",    NULL};
        dcms_json_only_members(conds, "conditions.", ck, ei);
        p->c_party = cond_bool(conds, "party_of_contract", ei);
        p->c_mfa = cond_bool(conds, "mfa_present", ei);
        p->c_self = cond_bool(conds, "self", ei);
        p->c_same_org = cond_bool(conds, "same_organization", ei);
        const json_t *ips = json_object_get(conds, "ip_range");
        if (ips) {
            size_t n;
            char **l = string_list(ips, "conditions.ip_range", &n, true, ei);
            p->nets = calloc(n ? n : 1, sizeof(*p->nets));
            for (size_t i = 0; p->nets && i < n; i++) {
                if (parse_cidr(l[i], &p->nets[p->nnets]))
                    p->nnets++;
                else {
                    char f[64];
                    snprintf(f, sizeof(f), "conditions.ip_range[%zu]", i);
                    dcms_err_field(ei, f, "must be an IPv4 or IPv6 address or CIDR range");
                }
            }
            free_list(l, n);
        }
    }
    const json_t *attach = json_object_get(doc, "attach");
    if (!json_is_object(attach)) {
        dcms_err_field(ei, "attach", "must be an object with identities and/or roles");
    } else {
        static const char *const ak[] = {"identities", "roles", NULL};
        dcms_json_only_members(attach, "attach.", ak, ei);
        p->identities = string_list(json_object_get(attach, "identities"), "attach.identities",
                                    &p->nidentities, false, ei);
        for (size_t i = 0; i < p->nidentities; i++)
            if (!dcms_uuid_valid(p->identities[i])) {
                char f[64];
                snprintf(f, sizeof(f), "attach.identities[%zu]", i);
                dcms_err_field(ei, f, "must be an identity id");
            }
        size_t nr;
        char **rl = string_list(json_object_get(attach, "roles"), "attach.roles", &nr, false, ei);
        for (size_t i = 0; i < nr; i++) {
            unsigned r = dcms_iam_role_parse(rl[i]);
            if (!r) {
                char f[64];
                snprintf(f, sizeof(f), "attach.roles[%zu]", i);
                dcms_err_field(ei, f,
                               "must be admin, provider, consumer, auditor, operator or org_admin");
            }
            p->roles |= r;
        }
        free_list(rl, nr);
        if (p->nidentities == 0 && nr == 0)
            dcms_err_field(ei, "attach", "must name at least one identity or role");
    }
    return ei->code ? ei->code : DCMS_OK;
}

static bool str_set_eq(const char *a, const char *b)
{
    return a && b && *a && strcmp(a, b) == 0;
}

static bool is_party(const struct dcms_principal *p, const struct dcms_iam_resource *res)
{
    for (size_t i = 0; res && i < res->nparties; i++)
        if (str_set_eq(res->parties[i], p->id) || str_set_eq(res->parties[i], p->org))
            return true;
    return false;
}

static bool related(const struct dcms_principal *p, const struct dcms_iam_resource *res)
{
    return str_set_eq(res->id, p->id) || str_set_eq(res->owner_id, p->id) ||
           str_set_eq(res->org_id, p->org) || str_set_eq(res->id, p->org) || is_party(p, res);
}

static bool is_read(const char *action)
{
    const char *verb = strrchr(action, ':');
    verb = verb ? verb + 1 : action;
    return strcmp(verb, "read") == 0 || strcmp(verb, "verify") == 0 || strcmp(verb, "list") == 0;
}

static bool policy_applies(const struct iam_policy *pol, const struct dcms_principal *p,
                           const char *action, const char *resource,
                           const struct dcms_iam_resource *res, const char *client_ip)
{
    bool subject = (pol->roles & p->roles) != 0;
    for (size_t i = 0; !subject && i < pol->nidentities; i++)
        subject = strcmp(pol->identities[i], p->id) == 0;
    if (!subject)
        return false;
    bool act = false;
    for (size_t i = 0; !act && i < pol->nactions; i++)
        act = iam_glob(pol->actions[i], action);
    bool rsc = false;
    for (size_t i = 0; act && !rsc && i < pol->nresources; i++)
        rsc = iam_glob(pol->resources[i], resource);
    if (!act || !rsc)
        return false;
    if (pol->c_mfa && !(p->amr & (DCMS_AMR_OTP | DCMS_AMR_HWK)))
        return false;
    if (pol->c_party && !is_party(p, res))
        return false;
    if (pol->c_self && !(res && (str_set_eq(res->id, p->id) || str_set_eq(res->owner_id, p->id))))
        return false;
    if (pol->c_same_org &&
        !(res && (str_set_eq(res->org_id, p->org) || str_set_eq(res->id, p->org))))
        return false;
    if (pol->nnets) {
        bool in = false;
        for (size_t i = 0; !in && i < pol->nnets; i++)
            in = iam_ipnet_contains(&pol->nets[i], client_ip);
        if (!in)
            return false;
    }
    return true;
}

enum iam_decision iam_decide(const struct iam_policy *pol, size_t npol,
                             const struct dcms_principal *p, const char *action,
                             const struct dcms_iam_resource *res, const char *client_ip)
{
    char resource[320];
    if (res && res->type)
        snprintf(resource, sizeof(resource), "%s:%s", res->type, res->id ? res->id : "*");
    else
        resource[0] = '\0';
    bool allow_policy = false;
    for (size_t i = 0; i < npol; i++) {
        if (!policy_applies(&pol[i], p, action, resource, res, client_ip))
            continue;
        if (pol[i].deny)
            return IAM_DENY_POLICY;
        allow_policy = true;
    }
    /* An auditor reads and changes nothing, whatever else it is granted. */
    if ((p->roles & DCMS_ROLE_AUDITOR) && !(p->roles & DCMS_ROLE_ADMIN) && !is_read(action))
        return IAM_DENY_AUDITOR;
    bool role_ok = iam_role_allows(p->roles, action);
    bool privileged =
        (p->roles & DCMS_ROLE_ADMIN) || ((p->roles & DCMS_ROLE_AUDITOR) && is_read(action) &&
                                         iam_role_allows(DCMS_ROLE_AUDITOR, action));
    if (role_ok && res && res->scoped && !privileged && !related(p, res)) {
        if (allow_policy)
            return IAM_ALLOW_POLICY;
        return IAM_DENY_SCOPE;
    }
    if (role_ok)
        return IAM_ALLOW_ROLE;
    return allow_policy ? IAM_ALLOW_POLICY : IAM_DENY_DEFAULT;
}

void iam_policyset_put(struct iam_policyset *ps)
{
    if (!ps || atomic_fetch_sub(&ps->refs, 1) != 1)
        return;
    for (size_t i = 0; i < ps->n; i++)
        iam_policy_release(&ps->p[i]);
    free(ps->p);
    free(ps);
}

enum dcms_err dcms_iam_authorize(const struct dcms_principal *p, const char *action,
                                 const struct dcms_iam_resource *res,
                                 const struct dcms_iam_ctx *ctx, struct dcms_errinfo *ei)
{
    if (!p)
        return dcms_err_set(ei, DCMS_ERR_UNAUTHENTICATED, "authentication required");
    /* An API key can do no more than its scope, whatever its identity may do. */
    bool in_scope = !p->api_key[0];
    for (size_t i = 0; !in_scope && i < p->nscope; i++)
        in_scope = iam_glob(p->scope[i], action);
    if (!in_scope)
        return dcms_err_set(ei, DCMS_ERR_FORBIDDEN,
                            "%s is not allowed: outside the API key's scope", action);
    struct iam_policyset *ps = NULL;
    if (ctx && ctx->iam) {
        pthread_mutex_lock(&ctx->iam->pol_mu);
        ps = ctx->iam->pols;
        if (ps)
            atomic_fetch_add(&ps->refs, 1);
        pthread_mutex_unlock(&ctx->iam->pol_mu);
    }
    enum iam_decision d =
        iam_decide(ps ? ps->p : NULL, ps ? ps->n : 0, p, action, res, ctx ? ctx->client_ip : NULL);
    iam_policyset_put(ps);
    if (iam_allowed(d))
        return DCMS_OK;
    static const char *const why[] = {
        [IAM_DENY_DEFAULT] = "no role or policy grants it",
        [IAM_DENY_POLICY] = "a policy denies it",
        [IAM_DENY_AUDITOR] = "auditors cannot change anything",
        [IAM_DENY_SCOPE] = "the resource belongs to someone else",
    };
    return dcms_err_set(ei, DCMS_ERR_FORBIDDEN, "%s is not allowed: %s", action, why[d]);
}
