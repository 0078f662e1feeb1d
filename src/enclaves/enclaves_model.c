/*
 * The enclave model: configuration decoding and validation (every problem
 * at once, with its JSON path), its encoding, and the lifecycle as one
 * transition table. Pure: no store, no backend, no HTTP.
 */
#include <arpa/inet.h>
#include <ctype.h>

#include "enclaves/enclaves_int.h"

/* ---- the state machine ---- */

static const char *const status_names[] = {
    [ENCLAVE_INITIALIZING] = "initializing", [ENCLAVE_RUNNING] = "running",
    [ENCLAVE_SUSPENDED] = "suspended",       [ENCLAVE_FAILED] = "failed",
    [ENCLAVE_TERMINATED] = "terminated",
};

static const char *const event_names[] = {
    [ENCLAVE_EV_STARTED] = "start",       [ENCLAVE_EV_SUSPEND] = "suspend",
    [ENCLAVE_EV_RESUME] = "resume",       [ENCLAVE_EV_ATTEST] = "attest",
    [ENCLAVE_EV_UPDATE] = "update",       [ENCLAVE_EV_FAIL] = "fail",
    [ENCLAVE_EV_TERMINATE] = "terminate",
};

/*
 * Every allowed (from, event) → to, and who may trigger it. Anything not
 * here is refused. Terminated has no row: it is final. Failed only leads
 * to Terminated (the workload is already stopped; terminating records the
 * end and frees the scratch directory).
 */
static const struct {
    enum enclave_status from;
    enum enclave_event ev;
    enum enclave_status to;
    unsigned who;
} transitions[] = {
    {ENCLAVE_INITIALIZING, ENCLAVE_EV_STARTED, ENCLAVE_RUNNING, ENCLAVE_BY_SYSTEM},
    {ENCLAVE_INITIALIZING, ENCLAVE_EV_FAIL, ENCLAVE_FAILED, ENCLAVE_BY_SYSTEM},
    {ENCLAVE_INITIALIZING, ENCLAVE_EV_TERMINATE, ENCLAVE_TERMINATED,
     ENCLAVE_BY_SYSTEM | ENCLAVE_BY_OWNER},
    {ENCLAVE_RUNNING, ENCLAVE_EV_SUSPEND, ENCLAVE_SUSPENDED, ENCLAVE_BY_OWNER},
    {ENCLAVE_RUNNING, ENCLAVE_EV_ATTEST, ENCLAVE_RUNNING, ENCLAVE_BY_OWNER},
    {ENCLAVE_RUNNING, ENCLAVE_EV_FAIL, ENCLAVE_FAILED, ENCLAVE_BY_SYSTEM},
    {ENCLAVE_RUNNING, ENCLAVE_EV_TERMINATE, ENCLAVE_TERMINATED,
     ENCLAVE_BY_SYSTEM | ENCLAVE_BY_OWNER},
    {ENCLAVE_SUSPENDED, ENCLAVE_EV_RESUME, ENCLAVE_RUNNING, ENCLAVE_BY_OWNER},
    {ENCLAVE_SUSPENDED, ENCLAVE_EV_UPDATE, ENCLAVE_SUSPENDED, ENCLAVE_BY_OWNER},
    {ENCLAVE_SUSPENDED, ENCLAVE_EV_FAIL, ENCLAVE_FAILED, ENCLAVE_BY_SYSTEM},
    {ENCLAVE_SUSPENDED, ENCLAVE_EV_TERMINATE, ENCLAVE_TERMINATED,
     ENCLAVE_BY_SYSTEM | ENCLAVE_BY_OWNER},
    {ENCLAVE_FAILED, ENCLAVE_EV_TERMINATE, ENCLAVE_TERMINATED,
     ENCLAVE_BY_SYSTEM | ENCLAVE_BY_OWNER},
};
#define NTRANSITIONS (sizeof(transitions) / sizeof(transitions[0]))

const char *enclave_status_name(enum enclave_status s)
{
    return (unsigned)s < ENCLAVE__STATUS_COUNT ? status_names[s] : "unknown";
}

bool enclave_status_parse(const char *s, enum enclave_status *out)
{
    for (unsigned i = 0; s && i < ENCLAVE__STATUS_COUNT; i++) {
        if (strcmp(status_names[i], s) == 0) {
            *out = (enum enclave_status)i;
            return true;
        }
    }
    return false;
}

const char *enclave_event_name(enum enclave_event ev)
{
    return (unsigned)ev < ENCLAVE__EVENT_COUNT ? event_names[ev] : "unknown";
}

bool enclave_transition(enum enclave_status from, enum enclave_event ev, unsigned who,
                        enum enclave_status *to)
{
    for (size_t i = 0; i < NTRANSITIONS; i++) {
        if (transitions[i].from == from && transitions[i].ev == ev && (transitions[i].who & who)) {
            *to = transitions[i].to;
            return true;
        }
    }
    return false;
}

void enclave_allowed_events(enum enclave_status from, unsigned who, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < NTRANSITIONS; i++) {
        if (transitions[i].from != from || !(transitions[i].who & who))
            continue;
        int w = snprintf(out + n, cap - n, "%s%s", n ? ", " : "", event_names[transitions[i].ev]);
        if (w < 0 || (size_t)w >= cap - n)
            break;
        n += (size_t)w;
    }
    if (!n)
        snprintf(out, cap, "none");
}

/* ---- configuration ---- */

bool enclave_image_name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n < 1 || n > ENCLAVE_IMAGE_MAX || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-')
            return false;
    return true;
}

void enclave_netpol_default(struct enclave_netpol *n)
{
    memset(n, 0, sizeof(*n));
    n->encryption_required = true;
    n->min_tls = 13;
}

void enclave_secpol_default(struct enclave_secpol *s)
{
    memset(s, 0, sizeof(*s));
    s->secure_boot = true;
    s->measured_boot = true;
}

static void fieldf(struct dcms_errinfo *ei, const char *problem, const char *fmt, ...)
    DCMS_PRINTF(3, 4);

/* A field problem whose path is formatted (prefix + member, array indexes). */
static void fieldf(struct dcms_errinfo *ei, const char *problem, const char *fmt, ...)
{
    char path[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(path, sizeof(path), fmt, ap);
    va_end(ap);
    dcms_err_field(ei, path, "%s", problem);
}

/* Refuses members not in `allowed`. */
static void known_keys(const json_t *o, const char *prefix, const char *const *allowed,
                       struct dcms_errinfo *ei)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)o, key, v)
    {
        bool ok = false;
        for (const char *const *a = allowed; *a && !ok; a++)
            ok = strcmp(*a, key) == 0;
        if (!ok)
            fieldf(ei, "is not a known field", "%s%.100s", prefix, key);
    }
}

/* An integer member in [lo, hi]; `required` says whether absence is a problem. */
static unsigned uint_member(const json_t *o, const char *prefix, const char *key, unsigned lo,
                            unsigned hi, bool required, const char *why_hi, struct dcms_errinfo *ei)
{
    const json_t *v = json_object_get(o, key);
    if (!v) {
        if (required)
            fieldf(ei, "is required", "%s%s", prefix, key);
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < (json_int_t)lo) {
        char p[160];
        snprintf(p, sizeof(p), "must be an integer of at least %u", lo);
        fieldf(ei, p, "%s%s", prefix, key);
        return 0;
    }
    if (json_integer_value(v) > (json_int_t)hi) {
        char p[200];
        snprintf(p, sizeof(p), "must be at most %u (%s)", hi, why_hi);
        fieldf(ei, p, "%s%s", prefix, key);
        return 0;
    }
    return (unsigned)json_integer_value(v);
}

static bool bool_member(const json_t *o, const char *prefix, const char *key, bool def,
                        struct dcms_errinfo *ei)
{
    const json_t *v = json_object_get(o, key);
    if (!v)
        return def;
    if (!json_is_boolean(v)) {
        fieldf(ei, "must be true or false", "%s%s", prefix, key);
        return def;
    }
    return json_is_true(v);
}

/* An address with an optional /prefix, IPv4 or IPv6, host bits allowed. */
static bool cidr_ok(const char *s)
{
    char buf[64];
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    if (n == 0 || n >= sizeof(buf))
        return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    unsigned char a[16];
    unsigned max;
    if (inet_pton(AF_INET, buf, a) == 1)
        max = 32;
    else if (inet_pton(AF_INET6, buf, a) == 1)
        max = 128;
    else
        return false;
    if (!slash)
        return true;
    const char *p = slash + 1;
    if (!*p || strlen(p) > 3 || (p[0] == '0' && p[1]))
        return false;
    unsigned v = 0;
    for (; *p; p++) {
        if (!isdigit((unsigned char)*p))
            return false;
        v = v * 10 + (unsigned)(*p - '0');
    }
    return v <= max;
}

static void rules_from_json(const json_t *a, const char *prefix, const char *key,
                            struct enclave_rule *out, size_t *n, struct dcms_errinfo *ei)
{
    *n = 0;
    if (!a)
        return;
    if (!json_is_array(a) || json_array_size(a) > ENCLAVE_MAX_RULES) {
        fieldf(ei, "must be an array of at most 32 rules", "%s%s", prefix, key);
        return;
    }
    size_t i;
    const json_t *r;
    json_array_foreach(a, i, r)
    {
        char rp[200];
        snprintf(rp, sizeof(rp), "%s%s[%zu].", prefix, key, i);
        if (!json_is_object(r)) {
            fieldf(ei, "must be an object with protocol, port and cidr", "%s%s[%zu]", prefix, key,
                   i);
            continue;
        }
        static const char *const keys[] = {"protocol", "port", "cidr", NULL};
        known_keys(r, rp, keys, ei);
        struct enclave_rule *o = &out[*n];
        memset(o, 0, sizeof(*o));
        bool ok = true;
        const char *proto = json_string_value(json_object_get(r, "protocol"));
        if (!proto || (strcmp(proto, "tcp") != 0 && strcmp(proto, "udp") != 0)) {
            fieldf(ei, "must be tcp or udp", "%sprotocol", rp);
            ok = false;
        } else {
            snprintf(o->protocol, sizeof(o->protocol), "%s", proto);
        }
        const json_t *port = json_object_get(r, "port");
        if (!json_is_integer(port) || json_integer_value(port) < 1 ||
            json_integer_value(port) > 65535) {
            fieldf(ei, "must be an integer from 1 to 65535", "%sport", rp);
            ok = false;
        } else {
            o->port = (unsigned)json_integer_value(port);
        }
        const json_t *cidr = json_object_get(r, "cidr");
        const char *cs = json_string_value(cidr);
        if (!cs || json_string_length(cidr) >= sizeof(o->cidr) || !cidr_ok(cs)) {
            fieldf(ei, "must be an IPv4 or IPv6 address with an optional /prefix", "%scidr", rp);
            ok = false;
        } else {
            snprintf(o->cidr, sizeof(o->cidr), "%s", cs);
        }
        if (ok)
            (*n)++;
    }
}

void enclave_netpol_from_json(const json_t *o, const char *prefix, struct enclave_netpol *out,
                              struct dcms_errinfo *ei)
{
    enclave_netpol_default(out);
    if (!o)
        return;
    if (!json_is_object(o)) {
        char f[128];
        snprintf(f, sizeof(f), "%.*s", (int)(strlen(prefix) ? strlen(prefix) - 1 : 0), prefix);
        dcms_err_field(ei, f, "must be an object");
        return;
    }
    static const char *const keys[] = {"ingress", "egress", "encryption_required",
                                       "min_tls_version", NULL};
    known_keys(o, prefix, keys, ei);
    rules_from_json(json_object_get(o, "ingress"), prefix, "ingress", out->ingress, &out->ningress,
                    ei);
    rules_from_json(json_object_get(o, "egress"), prefix, "egress", out->egress, &out->negress, ei);
    out->encryption_required = bool_member(o, prefix, "encryption_required", true, ei);
    const json_t *tls = json_object_get(o, "min_tls_version");
    if (tls) {
        const char *t = json_string_value(tls);
        if (t && strcmp(t, "1.2") == 0)
            out->min_tls = 12;
        else if (t && strcmp(t, "1.3") == 0)
            out->min_tls = 13;
        else
            fieldf(ei, "must be \"1.2\" or \"1.3\"", "%smin_tls_version", prefix);
    }
}

static bool signer_ok(const char *s, size_t len)
{
    if (len != ENCLAVE_SIGNER_HEX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!isdigit((unsigned char)s[i]) && !(s[i] >= 'a' && s[i] <= 'f'))
            return false;
    return true;
}

void enclave_secpol_from_json(const json_t *o, const char *prefix, struct enclave_secpol *out,
                              struct dcms_errinfo *ei)
{
    enclave_secpol_default(out);
    if (!o)
        return;
    if (!json_is_object(o)) {
        char f[128];
        snprintf(f, sizeof(f), "%.*s", (int)(strlen(prefix) ? strlen(prefix) - 1 : 0), prefix);
        dcms_err_field(ei, f, "must be an object");
        return;
    }
    static const char *const keys[] = {"secure_boot", "measured_boot", "allowed_signers",
                                       "debug_mode", NULL};
    known_keys(o, prefix, keys, ei);
    out->secure_boot = bool_member(o, prefix, "secure_boot", true, ei);
    out->measured_boot = bool_member(o, prefix, "measured_boot", true, ei);
    out->debug_mode = bool_member(o, prefix, "debug_mode", false, ei);
    if (out->debug_mode && (out->secure_boot || out->measured_boot))
        fieldf(ei,
               "a debug-mode enclave has all-zero PCRs: secure_boot and measured_boot must be "
               "false",
               "%sdebug_mode", prefix);
    const json_t *a = json_object_get(o, "allowed_signers");
    if (!a)
        return;
    if (!json_is_array(a) || json_array_size(a) > ENCLAVE_MAX_SIGNERS) {
        fieldf(ei, "must be an array of at most 16 certificate fingerprints", "%sallowed_signers",
               prefix);
        return;
    }
    size_t i;
    const json_t *s;
    json_array_foreach(a, i, s)
    {
        const char *v = json_string_value(s);
        if (!v || !signer_ok(v, json_string_length(s))) {
            fieldf(ei,
                   "must be a SHA-384 certificate fingerprint: 96 lowercase hex digits (the PCR8 "
                   "value)",
                   "%sallowed_signers[%zu]", prefix, i);
            continue;
        }
        bool dup = false;
        for (size_t j = 0; j < out->nsigners && !dup; j++)
            dup = strcmp(out->signers[j], v) == 0;
        if (dup) {
            fieldf(ei, "is listed twice", "%sallowed_signers[%zu]", prefix, i);
            continue;
        }
        memcpy(out->signers[out->nsigners++], v, ENCLAVE_SIGNER_HEX + 1);
    }
}

void enclave_config_from_json(const json_t *o, const char *prefix,
                              const struct enclave_limits *limits, struct enclave_config *out,
                              struct dcms_errinfo *ei)
{
    memset(out, 0, sizeof(*out));
    enclave_netpol_default(&out->net);
    enclave_secpol_default(&out->sec);
    if (!json_is_object(o)) {
        char f[128];
        snprintf(f, sizeof(f), "%.*s", (int)(strlen(prefix) ? strlen(prefix) - 1 : 0), prefix);
        dcms_err_field(ei, f, o ? "must be an object" : "is required");
        return;
    }
    static const char *const keys[] = {
        "image", "cpu_cores", "memory_mb", "storage_gb", "network_policy", "security_policy", NULL};
    known_keys(o, prefix, keys, ei);
    const json_t *img = json_object_get(o, "image");
    if (!img)
        fieldf(ei, "is required", "%simage", prefix);
    else if (!json_is_string(img) || json_string_length(img) != strlen(json_string_value(img)) ||
             !enclave_image_name_ok(json_string_value(img)))
        fieldf(ei,
               "must be the file name of a workload image: 1 to 64 of A-Z a-z 0-9 . _ - (no path)",
               "%simage", prefix);
    else
        snprintf(out->image, sizeof(out->image), "%s", json_string_value(img));
    unsigned max_cpu = limits ? limits->max_cpu_cores : 4096;
    unsigned max_mem = limits ? limits->max_memory_mb : 1u << 30;
    unsigned max_sto = limits ? limits->max_storage_gb : 1u << 30;
    out->cpu_cores =
        uint_member(o, prefix, "cpu_cores", 1, max_cpu, true, "DCMS_ENCLAVE_MAX_CPU_CORES", ei);
    out->memory_mb = uint_member(o, prefix, "memory_mb", ENCLAVE_MIN_MEMORY_MB, max_mem, true,
                                 "DCMS_ENCLAVE_MAX_MEMORY_MB", ei);
    out->storage_gb =
        uint_member(o, prefix, "storage_gb", 1, max_sto, true, "DCMS_ENCLAVE_MAX_STORAGE_GB", ei);
    char sub[160];
    snprintf(sub, sizeof(sub), "%snetwork_policy.", prefix);
    enclave_netpol_from_json(json_object_get(o, "network_policy"), sub, &out->net, ei);
    snprintf(sub, sizeof(sub), "%ssecurity_policy.", prefix);
    enclave_secpol_from_json(json_object_get(o, "security_policy"), sub, &out->sec, ei);
}

static json_t *rules_to_json(const struct enclave_rule *r, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        if (json_array_append_new(a, json_pack("{s:s, s:i, s:s}", "protocol", r[i].protocol, "port",
                                               (int)r[i].port, "cidr", r[i].cidr))) {
            json_decref(a);
            return NULL;
        }
    return a;
}

json_t *enclave_netpol_to_json(const struct enclave_netpol *n)
{
    return json_pack("{s:o, s:o, s:b, s:s}", "ingress", rules_to_json(n->ingress, n->ningress),
                     "egress", rules_to_json(n->egress, n->negress), "encryption_required",
                     n->encryption_required, "min_tls_version", n->min_tls == 12 ? "1.2" : "1.3");
}

json_t *enclave_secpol_to_json(const struct enclave_secpol *s)
{
    json_t *signers = json_array();
    for (size_t i = 0; signers && i < s->nsigners; i++)
        if (json_array_append_new(signers, json_string(s->signers[i]))) {
            json_decref(signers);
            return NULL;
        }
    return json_pack("{s:b, s:b, s:o, s:b}", "secure_boot", s->secure_boot, "measured_boot",
                     s->measured_boot, "allowed_signers", signers, "debug_mode", s->debug_mode);
}

json_t *enclave_config_to_json(const struct enclave_config *c)
{
    return json_pack("{s:s, s:i, s:i, s:i, s:o, s:o}", "image", c->image, "cpu_cores",
                     (int)c->cpu_cores, "memory_mb", (int)c->memory_mb, "storage_gb",
                     (int)c->storage_gb, "network_policy", enclave_netpol_to_json(&c->net),
                     "security_policy", enclave_secpol_to_json(&c->sec));
}
