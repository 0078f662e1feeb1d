/*
 * The enclave service's JSON codecs: request bodies to C structs (every
 * problem at once, each with its JSON path, unknown members refused with
 * dcms_json_only_members), a configuration and its policies to and from
 * JSON, and a stored enclave row, a metrics sample to response JSON. No
 * store, no backend, no HTTP.
 */
#include <stdarg.h>

#include "dcms/json.h"
#include "dcms/store.h"
#include "enclaves/enclaves_int.h"

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
        dcms_json_only_members(r, rp, keys, ei);
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
        if (!cs || json_string_length(cidr) >= sizeof(o->cidr) || !enclave_cidr_ok(cs)) {
            fieldf(ei, "must be an IPv4 or IPv6 address with an optional /prefix", "%scidr", rp);
            ok = false;
        } else {
            snprintf(o->cidr, sizeof(o->cidr), "%s", cs);
        }
        if (ok)
            (*n)++;
    }
}

/*
 * A policy object at `prefix` ("network_policy."): false when it is absent
 * (the defaults stand) or not an object (a problem on its path); unknown
 * members are problems.
 */
static bool policy_object(const json_t *o, const char *prefix, const char *const *keys,
                          struct dcms_errinfo *ei)
{
    if (!o)
        return false;
    if (!json_is_object(o)) {
        char f[128];
        snprintf(f, sizeof(f), "%.*s", (int)(strlen(prefix) ? strlen(prefix) - 1 : 0), prefix);
        dcms_err_field(ei, f, "must be an object");
        return false;
    }
    dcms_json_only_members(o, prefix, keys, ei);
    return true;
}

void enclave_netpol_from_json(const json_t *o, const char *prefix, struct enclave_netpol *out,
                              struct dcms_errinfo *ei)
{
    static const char *const keys[] = {"ingress", "egress", "encryption_required",
                                       "min_tls_version", NULL};
    enclave_netpol_default(out);
    if (!policy_object(o, prefix, keys, ei))
        return;
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

void enclave_secpol_from_json(const json_t *o, const char *prefix, struct enclave_secpol *out,
                              struct dcms_errinfo *ei)
{
    static const char *const keys[] = {"secure_boot", "measured_boot", "allowed_signers",
                                       "debug_mode", NULL};
    enclave_secpol_default(out);
    if (!policy_object(o, prefix, keys, ei))
        return;
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
        if (!v || !enclave_signer_ok(v, json_string_length(s))) {
            fieldf(ei,
                   "must be a SHA-384 certificate fingerprint: 96 lowercase hex digits (the PCR8 "
                   "value)",
                   "%sallowed_signers[%zu]", prefix, i);
            continue;
        }
        if (strspn(v, "0") == ENCLAVE_SIGNER_HEX) {
            fieldf(ei,
                   "must not be all zeros: an unsigned image shows an all-zero PCR8, so it pins "
                   "no signer",
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
    dcms_json_only_members(o, prefix, keys, ei);
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

/* ---- responses ---- */

json_t *enclave_str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

static json_t *page_item(const struct dcms_store_rows *rows, size_t i)
{
    struct enclave_row r;
    enclave_row_from(rows, i, &r);
    return enclave_row_to_json(&r);
}

json_t *enclave_list_to_json(struct dcms_store_rows *rows, int64_t limit)
{
    json_t *page = dcms_store_rows_page(rows, limit, 0, "enclaves", page_item);
    dcms_store_rows_free(rows);
    return page;
}

json_t *enclave_json_text(const char *s)
{
    if (!s)
        return json_null();
    json_t *v = json_loads(s, JSON_REJECT_DUPLICATES, NULL);
    return v ? v : json_null();
}

bool enclave_config_stored(const char *text, struct enclave_config *out)
{
    struct dcms_errinfo pei;
    dcms_errinfo_init(&pei, NULL);
    json_t *cj = enclave_json_text(text);
    enclave_config_from_json(cj, "", NULL, out, &pei);
    json_decref(cj);
    return pei.code == DCMS_OK;
}

json_t *enclave_row_to_json(const struct enclave_row *r)
{
    json_t *runtime = json_null();
    if (r->v[C_REF])
        runtime = json_pack(
            "{s:s, s:o, s:o, s:o}", "ref", r->v[C_REF], "pid",
            r->v[C_PID] ? json_integer(strtoll(r->v[C_PID], NULL, 10)) : json_null(), "started_at",
            enclave_str_or_null(r->v[C_STARTED]), "node", enclave_str_or_null(r->v[C_OWNER]));
    json_t *metrics = enclave_json_text(r->v[C_METRICS]);
    if (json_is_object(metrics) && json_object_size(metrics) == 0) {
        json_decref(metrics);
        metrics = json_null();
    }
    return json_pack(
        "{s:s, s:s, s:s, s:o, s:s, s:s, s:o, s:o, s:{s:o, s:o}, s:o, s:o, s:o, s:o, s:I, s:s, "
        "s:s}",
        "id", r->v[C_ID], "name", r->v[C_NAME], "provider_id", r->v[C_PROVIDER], "contract_id",
        enclave_str_or_null(r->v[C_CONTRACT]), "backend", r->v[C_BACKEND], "status", r->v[C_STATUS],
        "status_reason", enclave_str_or_null(r->v[C_REASON]), "configuration",
        enclave_json_text(r->v[C_CONFIG]), "measurement", "image_sha384",
        enclave_str_or_null(r->v[C_IMAGE_SHA]), "expected_pcr0", enclave_str_or_null(r->v[C_PCR0]),
        "attestation", enclave_json_text(r->v[C_ATTEST]), "attested_at",
        enclave_str_or_null(r->v[C_ATTESTED]), "metrics", metrics, "runtime", runtime, "version",
        (json_int_t)strtoll(r->v[C_VERSION], NULL, 10), "created_at", r->v[C_CREATED], "updated_at",
        r->v[C_UPDATED]);
}

json_t *enclave_probe_json(const struct dcms_enclave_probe *pr, const char *at)
{
    return json_pack(
        "{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:i, s:o}", "at", at, "cpu_time_ms",
        (json_int_t)pr->cpu_time_ms, "rss_bytes", (json_int_t)pr->rss_bytes, "peak_rss_bytes",
        (json_int_t)pr->peak_rss_bytes, "uptime_ms", (json_int_t)pr->uptime_ms, "channel_bytes_in",
        (json_int_t)pr->channel_bytes_in, "channel_bytes_out", (json_int_t)pr->channel_bytes_out,
        "nprocs", (int)pr->nprocs, "notice", pr->notice[0] ? json_string(pr->notice) : json_null());
}

/* ---- request bodies ---- */

/*
 * String member `key` of `o`, at most `max` bytes and without a NUL inside:
 * its value, or NULL when absent (or JSON null when `nullable`); anything
 * else is a field problem on `key`.
 */
static const char *str_member(const json_t *o, const char *key, size_t max, bool nullable,
                              struct dcms_errinfo *ei)
{
    json_t *v = json_object_get(o, key);
    if (!v || (nullable && json_is_null(v)))
        return NULL;
    if (!json_is_string(v) || json_string_length(v) > max ||
        strlen(json_string_value(v)) != json_string_length(v)) {
        dcms_err_field(ei, key, "must be a string of at most %zu characters%s", max,
                       nullable ? " or null" : "");
        return NULL;
    }
    return json_string_value(v);
}

/* False (with a problem on "") when the body is not an object; unknown members are problems. */
static bool body_object(const json_t *body, const char *const *allowed, struct dcms_errinfo *ei)
{
    if (!json_is_object(body)) {
        dcms_err_field(ei, "", "must be a JSON object");
        return false;
    }
    dcms_json_only_members(body, "", allowed, ei);
    return true;
}

void enclave_create_in_from_json(const json_t *body, const struct enclave_limits *limits,
                                 struct enclave_create_in *in, struct dcms_errinfo *ei)
{
    static const char *const keys[] = {"name", "contract_id", "configuration", NULL};
    memset(in, 0, sizeof(*in));
    if (!body_object(body, keys, ei))
        return;
    in->name = str_member(body, "name", 1000, false, ei);
    if (!json_object_get(body, "name"))
        dcms_err_field(ei, "name", "is required");
    in->contract_id = str_member(body, "contract_id", 64, true, ei);
    enclave_config_from_json(json_object_get(body, "configuration"), "configuration.", limits,
                             &in->config, ei);
}

void enclave_patch_in_from_json(const json_t *body, struct enclave_patch_in *in,
                                struct dcms_errinfo *ei)
{
    static const char *const keys[] = {"name", "contract_id", "network_policy", "security_policy",
                                       NULL};
    memset(in, 0, sizeof(*in));
    if (!body_object(body, keys, ei))
        return;
    in->name = str_member(body, "name", 1000, false, ei);
    in->has_contract = json_object_get(body, "contract_id") != NULL;
    in->contract_id = str_member(body, "contract_id", 64, true, ei);
    const json_t *net = json_object_get(body, "network_policy");
    const json_t *sec = json_object_get(body, "security_policy");
    if (json_object_size(body) == 0)
        dcms_err_field(ei, "", "name, contract_id, network_policy or security_policy is required");
    if (ei->code)
        return;
    in->has_net = net != NULL;
    in->has_sec = sec != NULL;
    if (net)
        enclave_netpol_from_json(net, "network_policy.", &in->net, ei);
    if (sec)
        enclave_secpol_from_json(sec, "security_policy.", &in->sec, ei);
}

void enclave_reason_from_json(const json_t *body, const char **reason, struct dcms_errinfo *ei)
{
    static const char *const keys[] = {"reason", NULL};
    *reason = NULL;
    if (body && body_object(body, keys, ei))
        *reason = str_member(body, "reason", 1000, false, ei);
}

void enclave_list_in_check(const struct enclave_list_in *in, struct dcms_errinfo *ei)
{
    enum enclave_status st;
    if (in->status && !enclave_status_parse(in->status, &st))
        dcms_err_field(ei, "status",
                       "must be initializing, running, suspended, failed or terminated");
    if (in->contract_id && !dcms_uuid_valid(in->contract_id))
        dcms_err_field(ei, "contract_id", "must be a contract id");
    if (in->provider_id && !dcms_uuid_valid(in->provider_id))
        dcms_err_field(ei, "provider_id", "must be an identity id");
    if (in->backend && strcmp(in->backend, "local") != 0 && strcmp(in->backend, "nitro") != 0)
        dcms_err_field(ei, "backend", "must be local or nitro");
    if (in->cursor && !dcms_uuid_valid(in->cursor))
        dcms_err_field(ei, "cursor", "must be the next_cursor of the previous page");
}
