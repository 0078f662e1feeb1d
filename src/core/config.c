/*
 * Configuration loading. The variables are data (config.def); this file only
 * knows how to parse each type, read a KEY=VALUE file and check the result.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>

#include "dcms/config.h"

enum var_type { T_STR, T_UINT, T_BOOL, T_LEVEL };

static const struct var {
    const char *name;
    size_t off;
    enum var_type type;
    const char *def;
    const char *doc;
} vars[] = {
#define DCMS_CONFIG_VAR(name, field, type, def, doc)                                               \
    {#name, offsetof(struct dcms_config, field), T_##type, def, doc},
#include "core/config.def"
#undef DCMS_CONFIG_VAR
};

#define NVARS (sizeof(vars) / sizeof(vars[0]))

static enum dcms_err set_var(struct dcms_config *cfg, const struct var *v, const char *val,
                             const char *origin, struct dcms_errinfo *ei)
{
    char *dst = (char *)cfg + v->off;
    switch (v->type) {
    case T_STR: {
        size_t n = strlen(val);
        if (n >= DCMS_CONFIG_STR_MAX)
            return dcms_err_set(ei, DCMS_ERR_CONFIG, "%s (%s) is longer than %d bytes", v->name,
                                origin, DCMS_CONFIG_STR_MAX - 1);
        memcpy(dst, val, n + 1);
        return DCMS_OK;
    }
    case T_UINT: {
        char *end;
        errno = 0;
        unsigned long long x = strtoull(val, &end, 10);
        if (!isdigit((unsigned char)*val) || *end || errno || x > ULONG_MAX / 2)
            return dcms_err_set(ei, DCMS_ERR_CONFIG,
                                "%s (%s) must be a non-negative integer, got \"%.64s\"", v->name,
                                origin, val);
        memcpy(dst, &(unsigned long){(unsigned long)x}, sizeof(unsigned long));
        return DCMS_OK;
    }
    case T_BOOL: {
        static const char *const yes[] = {"1", "true", "yes", "on"};
        static const char *const no[] = {"0", "false", "no", "off"};
        for (int i = 0; i < 4; i++) {
            if (strcasecmp(val, yes[i]) == 0 || strcasecmp(val, no[i]) == 0) {
                bool b = strcasecmp(val, yes[i]) == 0;
                memcpy(dst, &b, sizeof(b));
                return DCMS_OK;
            }
        }
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "%s (%s) must be true or false, got \"%.64s\"",
                            v->name, origin, val);
    }
    case T_LEVEL: {
        enum dcms_log_level l;
        if (!dcms_log_parse_level(val, &l))
            return dcms_err_set(ei, DCMS_ERR_CONFIG,
                                "%s (%s) must be debug, info, warn or error, got \"%.64s\"",
                                v->name, origin, val);
        memcpy(dst, &l, sizeof(l));
        return DCMS_OK;
    }
    }
    return DCMS_ERR_INTERNAL;
}

static const struct var *find_var(const char *name, size_t len)
{
    for (size_t i = 0; i < NVARS; i++)
        if (strlen(vars[i].name) == len && memcmp(vars[i].name, name, len) == 0)
            return &vars[i];
    return NULL;
}

static enum dcms_err load_file(struct dcms_config *cfg, const char *path, struct dcms_errinfo *ei)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "cannot open configuration file %s: %s", path,
                            strerror(errno));
    char line[DCMS_CONFIG_STR_MAX + 128];
    unsigned lineno = 0;
    enum dcms_err e = DCMS_OK;
    while (!e && fgets(line, sizeof(line), f)) {
        lineno++;
        size_t n = strlen(line);
        if (n == sizeof(line) - 1 && line[n - 1] != '\n') {
            e = dcms_err_set(ei, DCMS_ERR_CONFIG, "%s:%u: line too long", path, lineno);
            break;
        }
        while (n && isspace((unsigned char)line[n - 1]))
            line[--n] = '\0';
        char *p = line;
        while (isspace((unsigned char)*p))
            p++;
        if (*p == '\0' || *p == '#')
            continue;
        char *eq = strchr(p, '=');
        if (!eq) {
            e = dcms_err_set(ei, DCMS_ERR_CONFIG, "%s:%u: expected KEY=VALUE", path, lineno);
            break;
        }
        size_t klen = (size_t)(eq - p);
        while (klen && isspace((unsigned char)p[klen - 1]))
            klen--;
        const struct var *v = find_var(p, klen);
        if (!v) {
            e = dcms_err_set(ei, DCMS_ERR_CONFIG, "%s:%u: unknown setting \"%.*s\"", path, lineno,
                             (int)(klen > 64 ? 64 : klen), p);
            break;
        }
        char *val = eq + 1;
        while (isspace((unsigned char)*val))
            val++;
        size_t vlen = strlen(val);
        if (vlen >= 2 && (val[0] == '"' || val[0] == '\'') && val[vlen - 1] == val[0]) {
            val[vlen - 1] = '\0';
            val++;
        }
        char origin[64];
        snprintf(origin, sizeof(origin), "line %u", lineno);
        e = set_var(cfg, v, val, origin, ei);
    }
    fclose(f);
    return e;
}

static enum dcms_err parse_listen(struct dcms_config *cfg, struct dcms_errinfo *ei)
{
    const char *colon = strrchr(cfg->listen, ':');
    size_t hlen = colon ? (size_t)(colon - cfg->listen) : 0;
    char *end;
    unsigned long port = colon ? strtoul(colon + 1, &end, 10) : 0;
    if (!colon || hlen == 0 || hlen >= sizeof(cfg->listen_host) ||
        !isdigit((unsigned char)colon[1]) || *end || port > 65535)
        return dcms_err_set(ei, DCMS_ERR_CONFIG,
                            "DCMS_LISTEN must be HOST:PORT with an IPv4 address, got \"%.64s\"",
                            cfg->listen);
    memcpy(cfg->listen_host, cfg->listen, hlen);
    cfg->listen_host[hlen] = '\0';
    cfg->listen_port = (uint16_t)port;
    return DCMS_OK;
}

enum dcms_err dcms_config_load(struct dcms_config *cfg, const char *path, struct dcms_errinfo *ei)
{
    enum dcms_err e;
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < NVARS; i++)
        if ((e = set_var(cfg, &vars[i], vars[i].def, "default", ei)))
            return e;
    if (path && (e = load_file(cfg, path, ei)))
        return e;
    for (size_t i = 0; i < NVARS; i++) {
        const char *val = getenv(vars[i].name);
        if (val && (e = set_var(cfg, &vars[i], val, "environment", ei)))
            return e;
    }
    if ((e = parse_listen(cfg, ei)))
        return e;
    if (cfg->data_dir[0] == '\0')
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "DCMS_DATA_DIR must not be empty");
    if (cfg->database_url[0] == '\0') {
        int n = snprintf(cfg->database_url, sizeof(cfg->database_url), "sqlite:%s/dcms.db",
                         cfg->data_dir);
        if (n < 0 || (size_t)n >= sizeof(cfg->database_url))
            return dcms_err_set(ei, DCMS_ERR_CONFIG, "DCMS_DATA_DIR is too long");
    }
    if (cfg->audit_key_file[0] == '\0') {
        int n = snprintf(cfg->audit_key_file, sizeof(cfg->audit_key_file), "%s/audit/ed25519.key",
                         cfg->data_dir);
        if (n < 0 || (size_t)n >= sizeof(cfg->audit_key_file))
            return dcms_err_set(ei, DCMS_ERR_CONFIG, "DCMS_DATA_DIR is too long");
    }
    if (cfg->iam_kek_file[0] == '\0') {
        int n =
            snprintf(cfg->iam_kek_file, sizeof(cfg->iam_kek_file), "%s/iam/kek.key", cfg->data_dir);
        if (n < 0 || (size_t)n >= sizeof(cfg->iam_kek_file))
            return dcms_err_set(ei, DCMS_ERR_CONFIG, "DCMS_DATA_DIR is too long");
    }
    /* ---- keys ---- */
    if (cfg->keys_file[0] == '\0') {
        int n = snprintf(cfg->keys_file, sizeof(cfg->keys_file), "%s/keys/keyring", cfg->data_dir);
        if (n < 0 || (size_t)n >= sizeof(cfg->keys_file))
            return dcms_err_set(ei, DCMS_ERR_CONFIG, "DCMS_DATA_DIR is too long");
    }
    if (strcmp(cfg->keys_backend, "file") != 0 && strcmp(cfg->keys_backend, "pkcs11") != 0)
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "DCMS_KEYS_BACKEND must be file or pkcs11");
    /* ---- end keys ---- */
    if (cfg->jwt_ttl_s < 60 || cfg->jwt_ttl_s > 86400)
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "DCMS_JWT_TTL_S must be 60..86400");
    if (cfg->refresh_ttl_s < 300)
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "DCMS_REFRESH_TTL_S must be at least 300");
    if (cfg->pwhash_memlimit_kib < 8 || cfg->pwhash_memlimit_kib > (4ul << 20))
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "DCMS_PWHASH_MEMLIMIT_KIB must be 8..4194304");
    if (cfg->dataset_writer_lease_s < 2 || cfg->dataset_writer_lease_s > 3600)
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "DCMS_DATASET_WRITER_LEASE_S must be 2..3600");
    if (cfg->pwhash_opslimit < 1 || cfg->pwhash_opslimit > 100)
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "DCMS_PWHASH_OPSLIMIT must be 1..100");
    if (cfg->login_max_failures < 1 || cfg->login_max_failures_per_ip < 1)
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "DCMS_LOGIN_MAX_FAILURES* must be at least 1");
    /* ---- login lockout ---- */
    if (cfg->login_device_max_failures < 1)
        return dcms_err_set(ei, DCMS_ERR_CONFIG,
                            "DCMS_LOGIN_DEVICE_MAX_FAILURES must be at least 1");
    if (cfg->login_lockout_s < 1 || cfg->login_lockout_max_s < cfg->login_lockout_s ||
        cfg->login_lockout_max_s > 86400)
        return dcms_err_set(ei, DCMS_ERR_CONFIG,
                            "DCMS_LOGIN_LOCKOUT_S must be at least 1 and at most "
                            "DCMS_LOGIN_LOCKOUT_MAX_S (at most 86400)");
    if (cfg->login_failure_window_s < 1 || cfg->login_failure_window_s > 86400 * 30)
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "DCMS_LOGIN_FAILURE_WINDOW_S must be 1..2592000");
    if (cfg->login_ip_delay_s < 1 || cfg->login_ip_delay_s > 3600)
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "DCMS_LOGIN_IP_DELAY_S must be 1..3600");
    if (cfg->login_device_ttl_s < 60 || cfg->login_device_ttl_s > 86400ul * 400)
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "DCMS_LOGIN_DEVICE_TTL_S must be 60..34560000");
    /* ---- end login lockout ---- */
    if (!cfg->jwt_issuer[0] || !cfg->jwt_audience[0])
        return dcms_err_set(ei, DCMS_ERR_CONFIG,
                            "DCMS_JWT_ISSUER and DCMS_JWT_AUDIENCE must be set");
    if (!cfg->admin_email[0] != !cfg->admin_password[0])
        return dcms_err_set(ei, DCMS_ERR_CONFIG,
                            "DCMS_ADMIN_EMAIL and DCMS_ADMIN_PASSWORD go together");
    if (cfg->audit_checkpoint_every < 1 || cfg->audit_checkpoint_every > 1000000)
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "DCMS_AUDIT_CHECKPOINT_EVERY must be 1..1000000");
    if (cfg->audit_refusals_per_minute < 1)
        return dcms_err_set(ei, DCMS_ERR_CONFIG,
                            "DCMS_AUDIT_REFUSALS_PER_MINUTE must be at least 1");
    if (cfg->threads > 256)
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "DCMS_THREADS must be at most 256");
    if (cfg->max_body_bytes < 1024 || cfg->max_body_bytes > (1ul << 30))
        return dcms_err_set(ei, DCMS_ERR_CONFIG,
                            "DCMS_MAX_BODY_BYTES must be between 1024 and 1073741824");
    if (cfg->max_connections < 1 || cfg->max_connections > 65536)
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "DCMS_MAX_CONNECTIONS must be 1..65536");
    /* ---- tls ---- */
    if (!cfg->tls_cert_file[0] != !cfg->tls_key_file[0])
        return dcms_err_set(ei, DCMS_ERR_CONFIG,
                            "DCMS_TLS_CERT_FILE and DCMS_TLS_KEY_FILE go together");
    if ((cfg->tls_client_ca_file[0] || cfg->tls_client_map_file[0]) &&
        (!cfg->tls_cert_file[0] || !cfg->tls_client_ca_file[0] || !cfg->tls_client_map_file[0]))
        return dcms_err_set(ei, DCMS_ERR_CONFIG,
                            "DCMS_TLS_CLIENT_CA_FILE and DCMS_TLS_CLIENT_MAP_FILE go together, "
                            "with DCMS_TLS_CERT_FILE");
    if (strcmp(cfg->tls_min_version, "1.3") != 0 && strcmp(cfg->tls_min_version, "1.2") != 0)
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "DCMS_TLS_MIN_VERSION must be 1.3 or 1.2");
    /* ---- end tls ---- */
    if (cfg->store_timeout_ms < 1)
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "DCMS_STORE_TIMEOUT_MS must be at least 1");
    return DCMS_OK;
}

void dcms_config_each(void (*fn)(void *ctx, const char *name, const char *def, const char *doc),
                      void *ctx)
{
    for (size_t i = 0; i < NVARS; i++)
        fn(ctx, vars[i].name, vars[i].def, vars[i].doc);
}
