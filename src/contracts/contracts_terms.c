/*
 * Contract terms: a declarative description of every member (type, bounds,
 * enumerations), one walker that checks a request against it and reports
 * every problem at once with its JSON path, the rules that span members
 * (dates, raw-data export), ISO 4217 currencies, and the hash of the signed
 * content (SHA-256 over RFC 8785 canonical JSON).
 */
#include <ctype.h>

#include "dcms/arena.h"
#include "dcms/clock.h"
#include "dcms/crypto.h"
#include "dcms/jcs.h"
#include "dcms/json.h"
#include "dcms/security_level.h"
#include "contracts/contracts_int.h"

enum kind { K_STR, K_INT, K_BOOL, K_TIME, K_OBJ, K_STRS, K_ENUM, K_ENUMS, K_POS };

struct field {
    const char *name;
    enum kind kind;
    bool required;
    int64_t min, max;           /* string length, integer range, array items */
    size_t item_max;            /* each string of an array: at most this many bytes */
    const char *const *values;  /* K_ENUM / K_ENUMS */
    const struct field *fields; /* K_OBJ, NULL-name terminated */
    bool (*check)(const char *s);
    const char *check_problem;
};

/* K_POS: a number x with 0 < x <= max millionths (`max` is then in units of 1e-6). */
#define POS_PER_UNIT 1e6 /* a correctly rounded division: 1000 / 1e6 is the double 1e-3 */

static const char *const permissions[] = {"read", "train", "evaluate", "aggregate", NULL};
static const char *const deletions[] = {"delete", "crypto_shred", NULL};
static const char *const levels[] = {"standard", "high", "military", NULL};
static const char *const frameworks[] = {"GDPR",     "HIPAA",   "CCPA",      "SOC2",
                                         "ISO27001", "PCI-DSS", "FedRAMP",   "NIST-800-53",
                                         "LGPD",     "PIPEDA",  "EU-AI-ACT", NULL};
static const char *const pricing_models[] = {"fixed", "per_training_run", "subscription_monthly",
                                             NULL};

static bool country_ok(const char *s)
{
    return strlen(s) == 2 && isupper((unsigned char)s[0]) && isupper((unsigned char)s[1]);
}

static const struct field data_access[] = {
    {"datasets", K_STRS, true, 1, 100, 255, NULL, NULL, NULL, NULL},
    {"permissions", K_ENUMS, true, 1, 4, 0, permissions, NULL, NULL, NULL},
    {NULL, 0, false, 0, 0, 0, NULL, NULL, NULL, NULL},
};
static const struct field usage[] = {
    {"purposes", K_STRS, true, 1, 50, 255, NULL, NULL, NULL, NULL},
    {"allowed_model_types", K_STRS, true, 1, 50, 100, NULL, NULL, NULL, NULL},
    {"max_training_runs", K_INT, true, 1, 1000000, 0, NULL, NULL, NULL, NULL},
    {"raw_data_export", K_BOOL, true, 0, 0, 0, NULL, NULL, NULL, NULL},
    {NULL, 0, false, 0, 0, 0, NULL, NULL, NULL, NULL},
};
static const struct field retention[] = {
    {"days", K_INT, true, 1, 3650, 0, NULL, NULL, NULL, NULL},
    {"deletion", K_ENUM, true, 0, 0, 0, deletions, NULL, NULL, NULL},
    {NULL, 0, false, 0, 0, 0, NULL, NULL, NULL, NULL},
};
static const struct field security[] = {
    {"encryption_level", K_ENUM, true, 0, 0, 0, levels, NULL, NULL, NULL},
    {"network_isolation", K_BOOL, true, 0, 0, 0, NULL, NULL, NULL, NULL},
    {"audit_logging", K_BOOL, true, 0, 0, 0, NULL, NULL, NULL, NULL},
    {"custom_policies", K_STRS, false, 0, 50, 500, NULL, NULL, NULL, NULL},
    {NULL, 0, false, 0, 0, 0, NULL, NULL, NULL, NULL},
};
static const struct field compliance[] = {
    {"frameworks", K_ENUMS, true, 0, 11, 0, frameworks, NULL, NULL, NULL},
    {"data_residency", K_STRS, true, 0, 50, 2, NULL, NULL, country_ok,
     "must be an ISO 3166-1 alpha-2 country code (\"DE\")"},
    {NULL, 0, false, 0, 0, 0, NULL, NULL, NULL, NULL},
};
static const struct field pricing[] = {
    {"model", K_ENUM, true, 0, 0, 0, pricing_models, NULL, NULL, NULL},
    {"amount", K_INT, true, 0, 1000000000000000LL, 0, NULL, NULL, NULL, NULL},
    {"currency", K_STR, true, 3, 3, 0, NULL, NULL, ct_currency_valid,
     "must be an ISO 4217 currency code (\"EUR\")"},
    {NULL, 0, false, 0, 0, 0, NULL, NULL, NULL, NULL},
};
/* What leaves the enclave (the training service reads it; absent: the defaults it documents). */
static const struct field output[] = {
    {"max_model_bytes", K_INT, false, 1, 1073741824, 0, NULL, NULL, NULL, NULL},
    {"provider_receives_model", K_BOOL, false, 0, 0, 0, NULL, NULL, NULL, NULL},
    {NULL, 0, false, 0, 0, 0, NULL, NULL, NULL, NULL},
};
static const struct field privacy[] = {
    {"epsilon", K_POS, true, 0, 100000000, 0, NULL, NULL, NULL, NULL},
    {"delta", K_POS, true, 0, 1000, 0, NULL, NULL, NULL, NULL},
    {"max_epsilon_per_run", K_POS, false, 0, 100000000, 0, NULL, NULL, NULL, NULL},
    {NULL, 0, false, 0, 0, 0, NULL, NULL, NULL, NULL},
};
static const struct field terms_fields[] = {
    {"data_access", K_OBJ, true, 0, 0, 0, NULL, data_access, NULL, NULL},
    {"usage", K_OBJ, true, 0, 0, 0, NULL, usage, NULL, NULL},
    {"retention", K_OBJ, true, 0, 0, 0, NULL, retention, NULL, NULL},
    {"security", K_OBJ, true, 0, 0, 0, NULL, security, NULL, NULL},
    {"compliance", K_OBJ, true, 0, 0, 0, NULL, compliance, NULL, NULL},
    {"pricing", K_OBJ, false, 0, 0, 0, NULL, pricing, NULL, NULL},
    {"output", K_OBJ, false, 0, 0, 0, NULL, output, NULL, NULL},
    {"privacy", K_OBJ, false, 0, 0, 0, NULL, privacy, NULL, NULL},
    {"effective_from", K_TIME, true, 0, 0, 0, NULL, NULL, NULL, NULL},
    {"expires_at", K_TIME, true, 0, 0, 0, NULL, NULL, NULL, NULL},
    {NULL, 0, false, 0, 0, 0, NULL, NULL, NULL, NULL},
};

/* Active ISO 4217 alphabetic codes (funds and precious metals excluded). */
static const char currencies[] =
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN "
    "BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD "
    "FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY "
    "KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP "
    "MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR "
    "RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT "
    "TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VED VES VND VUV WST XAF XCD XCG XOF XPF YER "
    "ZAR ZMW ZWG";

bool ct_currency_valid(const char *code)
{
    if (!code || strlen(code) != 3)
        return false;
    for (int i = 0; i < 3; i++)
        if (!isupper((unsigned char)code[i]))
            return false;
    for (const char *p = currencies; *p; p += 4) {
        if (memcmp(p, code, 3) == 0)
            return true;
        if (!p[3])
            break;
    }
    return false;
}

/* Number of code points of valid UTF-8 without C0/DEL controls; -1 when invalid. */
static long utf8_chars(const char *s, bool allow_newlines)
{
    const unsigned char *p = (const unsigned char *)s;
    long n = 0;
    while (*p) {
        unsigned c = *p;
        size_t len;
        if (c < 0x80) {
            if ((c < 0x20 && !(allow_newlines && (c == '\n' || c == '\t' || c == '\r'))) ||
                c == 0x7f)
                return -1;
            len = 1;
        } else if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
        } else {
            return -1;
        }
        for (size_t i = 1; i < len; i++)
            if ((p[i] & 0xc0) != 0x80)
                return -1;
        p += len;
        n++;
    }
    return n;
}

bool ct_title_valid(const char *s)
{
    long n = s ? utf8_chars(s, false) : -1;
    return n >= 1 && n <= CT_TITLE_MAX;
}

static bool in_list(const char *const *values, const char *s)
{
    for (; *values; values++)
        if (strcmp(*values, s) == 0)
            return true;
    return false;
}

static char *join_values(char *buf, size_t cap, const char *const *values)
{
    size_t off = 0;
    buf[0] = '\0';
    for (const char *const *v = values; *v && off < cap; v++)
        off += (size_t)snprintf(buf + off, cap - off, "%s%s", v == values ? "" : ", ", *v);
    return buf;
}

/* Paths live in the error record's arena (or in a static fallback when there is none). */
static const char *path_of(struct dcms_errinfo *ei, const char *base, const char *name, long idx)
{
    char tmp[256];
    if (idx >= 0)
        snprintf(tmp, sizeof(tmp), "%s[%ld]", base, idx);
    else
        snprintf(tmp, sizeof(tmp), "%s%s%s", base, *base ? "." : "", name ? name : "");
    const char *p = ei && ei->arena ? dcms_arena_strdup(ei->arena, tmp) : NULL;
    return p ? p : "terms";
}

/* The most members one object of the terms document declares. */
#define TERMS_FIELDS_MAX 16

static void walk(const json_t *obj, const struct field *spec, const char *path, json_t *norm,
                 struct dcms_errinfo *ei);

static void check_value(const json_t *v, const struct field *f, const char *path, json_t *norm,
                        struct dcms_errinfo *ei)
{
    char buf[256];
    switch (f->kind) {
    case K_STR: {
        if (!json_is_string(v)) {
            dcms_err_field(ei, path, "must be a string");
            return;
        }
        long n = utf8_chars(json_string_value(v), false);
        if (n < f->min || n > f->max || strlen(json_string_value(v)) != json_string_length(v))
            dcms_err_field(ei, path, "must be %lld to %lld characters", (long long)f->min,
                           (long long)f->max);
        else if (f->check && !f->check(json_string_value(v)))
            dcms_err_field(ei, path, "%s", f->check_problem);
        else
            json_object_set_new(norm, f->name, json_copy((json_t *)v));
        return;
    }
    case K_INT:
        if (!json_is_integer(v) || json_integer_value(v) < f->min || json_integer_value(v) > f->max)
            dcms_err_field(ei, path, "must be an integer from %lld to %lld", (long long)f->min,
                           (long long)f->max);
        else
            json_object_set_new(norm, f->name, json_integer(json_integer_value(v)));
        return;
    case K_POS:
        /* json_number_value() of a jansson real is finite: the parser refuses NaN and inf. */
        if (!json_is_number(v) || !(json_number_value(v) > 0) ||
            json_number_value(v) > (double)f->max / POS_PER_UNIT)
            dcms_err_field(ei, path, "must be a number above 0 and at most %g",
                           (double)f->max / POS_PER_UNIT);
        else
            json_object_set_new(norm, f->name, json_real(json_number_value(v)));
        return;
    case K_BOOL:
        if (!json_is_boolean(v))
            dcms_err_field(ei, path, "must be true or false");
        else
            json_object_set_new(norm, f->name, json_boolean(json_is_true(v)));
        return;
    case K_TIME: {
        int64_t us;
        if (!json_is_string(v) || json_string_length(v) > 64 ||
            dcms_time_parse(json_string_value(v), &us)) {
            dcms_err_field(ei, path, "must be an RFC 3339 date-time (2027-01-31T00:00:00Z)");
            return;
        }
        char t[DCMS_TIME_STRLEN];
        dcms_time_format(us, t);
        json_object_set_new(norm, f->name, json_string(t));
        return;
    }
    case K_ENUM:
        if (!json_is_string(v) || !in_list(f->values, json_string_value(v)))
            dcms_err_field(ei, path, "must be one of %s", join_values(buf, sizeof(buf), f->values));
        else
            json_object_set_new(norm, f->name, json_copy((json_t *)v));
        return;
    case K_OBJ: {
        if (!json_is_object(v)) {
            dcms_err_field(ei, path, "must be an object");
            return;
        }
        json_t *sub = json_object();
        walk(v, f->fields, path, sub, ei);
        json_object_set_new(norm, f->name, sub);
        return;
    }
    case K_STRS:
    case K_ENUMS: {
        if (!json_is_array(v) || (int64_t)json_array_size(v) < f->min ||
            (int64_t)json_array_size(v) > f->max) {
            dcms_err_field(ei, path, "must be an array of %lld to %lld %s", (long long)f->min,
                           (long long)f->max, f->kind == K_ENUMS ? "values" : "strings");
            return;
        }
        json_t *out = json_array();
        size_t i;
        const json_t *s;
        json_array_foreach(v, i, s)
        {
            const char *ip = path_of(ei, path, NULL, (long)i);
            const char *sv = json_string_value(s);
            if (!json_is_string(s) || strlen(sv) != json_string_length(s)) {
                dcms_err_field(ei, ip, "must be a string");
                continue;
            }
            if (f->kind == K_ENUMS) {
                if (!in_list(f->values, sv)) {
                    dcms_err_field(ei, ip, "must be one of %s",
                                   join_values(buf, sizeof(buf), f->values));
                    continue;
                }
            } else {
                long n = utf8_chars(sv, false);
                if (n < 1 || (size_t)n > f->item_max) {
                    dcms_err_field(ei, ip, "must be 1 to %zu characters", f->item_max);
                    continue;
                }
                if (f->check && !f->check(sv)) {
                    dcms_err_field(ei, ip, "%s", f->check_problem);
                    continue;
                }
            }
            bool dup = false;
            for (size_t j = 0; j < i && !dup; j++)
                dup = json_is_string(json_array_get(v, j)) &&
                      strcmp(json_string_value(json_array_get(v, j)), sv) == 0;
            if (dup)
                dcms_err_field(ei, ip, "is listed twice");
            else
                json_array_append_new(out, json_string(sv));
        }
        json_object_set_new(norm, f->name, out);
        return;
    }
    }
}

static void walk(const json_t *obj, const struct field *spec, const char *path, json_t *norm,
                 struct dcms_errinfo *ei)
{
    const char *names[TERMS_FIELDS_MAX + 1];
    size_t n = 0;
    for (const struct field *f = spec; f->name && n < TERMS_FIELDS_MAX; f++)
        names[n++] = f->name;
    names[n] = NULL;
    char prefix[256];
    snprintf(prefix, sizeof(prefix), "%s.", path);
    dcms_json_only_members(obj, prefix, names, ei);
    for (const struct field *f = spec; f->name; f++) {
        const json_t *m = json_object_get(obj, f->name);
        const char *p = path_of(ei, path, f->name, -1);
        if (!m) {
            if (f->required)
                dcms_err_field(ei, p, "is required");
            else if (f->kind == K_STRS)
                json_object_set_new(norm, f->name, json_array());
            continue;
        }
        check_value(m, f, p, norm, ei);
    }
}

bool ct_terms_validate(const json_t *terms, int64_t now_us, json_t **norm, int64_t *from_us,
                       int64_t *to_us, struct dcms_errinfo *ei)
{
    *norm = NULL;
    size_t before = ei->ndetails;
    enum dcms_err code_before = ei->code;
    if (!json_is_object(terms)) {
        dcms_err_field(ei, "terms", "must be an object");
        return false;
    }
    json_t *n = json_object();
    if (!n) {
        dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
        return false;
    }
    walk(terms, terms_fields, "terms", n, ei);
    json_t *usage_v = json_object_get(n, "usage");
    if (json_is_true(json_object_get(usage_v, "raw_data_export")))
        dcms_err_field(ei, "terms.usage.raw_data_export",
                       "must be false: raw data never leaves the provider");
    json_t *priv = json_object_get(n, "privacy");
    json_t *per_run = json_object_get(priv, "max_epsilon_per_run");
    json_t *total = json_object_get(priv, "epsilon");
    if (per_run && total && json_real_value(per_run) > json_real_value(total))
        dcms_err_field(ei, "terms.privacy.max_epsilon_per_run",
                       "must be at most terms.privacy.epsilon");
    int64_t from = 0, to = 0;
    const char *fs = json_string_value(json_object_get(n, "effective_from"));
    const char *ts = json_string_value(json_object_get(n, "expires_at"));
    bool have = fs && ts && !dcms_time_parse(fs, &from) && !dcms_time_parse(ts, &to);
    if (have && to <= from)
        dcms_err_field(ei, "terms.expires_at", "must be after terms.effective_from");
    else if (have && to <= now_us)
        dcms_err_field(ei, "terms.expires_at", "must be in the future");
    bool ok = ei->ndetails == before && ei->code == code_before;
    if (!ok) {
        json_decref(n);
        return false;
    }
    *norm = n;
    *from_us = from;
    *to_us = to;
    return true;
}

json_t *ct_signed_content(const char *id, const char *provider_id, const char *consumer_id,
                          const char *title, const char *description, const json_t *terms,
                          int64_t terms_version)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:O, s:I}", "id", id, "provider_id", provider_id,
                     "consumer_id", consumer_id, "title", title, "description", description,
                     "terms", terms, "version", (json_int_t)terms_version);
}

enum dcms_err ct_content_hash(const json_t *content, unsigned char raw[32], char hex[65],
                              struct dcms_errinfo *ei)
{
    if (!content)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    enum dcms_err e = dcms_jcs_sha256(content, raw, ei);
    if (!e)
        dcms_hex_encode(hex, raw, 32);
    return e;
}
