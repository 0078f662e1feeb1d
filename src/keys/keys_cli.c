/*
 * `dcmsd keys status|rotate|rewrap [--batch N]|retire VERSION`: KEK
 * administration from the command line, with the server's configuration
 * (environment and $DCMS_CONFIG). Changes are audited with actor "system",
 * exactly as the admin routes audit theirs. Prints JSON on stdout.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "dcms/audit.h"
#include "dcms/config.h"
#include "dcms/crypto.h"
#include "dcms/keys.h"
#include "dcms/log.h"
#include "dcms/store.h"
#include "keys/keys_int.h"

void dcms_keys_opts_from_config(const struct dcms_config *cfg, struct dcms_keys_opts *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->backend = strcmp(cfg->keys_backend, "pkcs11") == 0 ? DCMS_KEYS_PKCS11 : DCMS_KEYS_FILE;
    opts->file_path = cfg->keys_file;
    opts->pkcs11_module = cfg->pkcs11_module;
    opts->pkcs11_token_label = cfg->pkcs11_token_label;
    opts->pkcs11_pin_file = cfg->pkcs11_pin_file;
    opts->pkcs11_key_label = cfg->pkcs11_key_label;
}

static int usage(void)
{
    fprintf(stderr,
            "usage: dcmsd keys status\n"
            "       dcmsd keys rotate             make a new KEK version active\n"
            "       dcmsd keys rewrap [--batch N] rewrap every data key under the active version\n"
            "       dcmsd keys retire VERSION     retire a version no data key uses any more\n"
            "Configuration as for the server (DCMS_DATABASE_URL, DCMS_KEYS_BACKEND, ...).\n");
    return 2;
}

static void print_json(json_t *j)
{
    char *s = j ? json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    if (s)
        printf("%s\n", s);
    free(s);
    json_decref(j);
}

int dcms_keys_cli(int argc, char **argv)
{
    static struct dcms_config cfg;
    struct dcms_errinfo ei;
    struct dcms_store *store = NULL;
    struct dcms_audit *audit = NULL;
    struct dcms_keys *keys = NULL;
    struct dcms_keys_opts o;
    struct dcms_keys_actor who = {.actor = "system"};
    unsigned long batch = 0;
    int64_t version = 0;
    int status = 1;
    enum dcms_err e = DCMS_OK;
    dcms_errinfo_init(&ei, NULL);
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
        return usage();
    const char *verb = argv[1];
    if (strcmp(verb, "rewrap") == 0) {
        for (int i = 2; i < argc; i++) {
            char *end = NULL;
            if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc) {
                batch = strtoul(argv[++i], &end, 10);
                if (!end || *end || batch < 1 || batch > 10000)
                    return usage();
            } else {
                return usage();
            }
        }
    } else if (strcmp(verb, "retire") == 0) {
        char *end = NULL;
        if (argc != 3)
            return usage();
        version = strtoll(argv[2], &end, 10);
        if (!end || *end || version < 1)
            return usage();
    } else if ((strcmp(verb, "status") != 0 && strcmp(verb, "rotate") != 0) || argc != 2) {
        return usage();
    }
    if (dcms_config_load(&cfg, getenv("DCMS_CONFIG"), &ei)) {
        fprintf(stderr, "dcmsd keys: configuration: %s\n", ei.message);
        return 2;
    }
    dcms_log_set_level(cfg.log_level > DCMS_LOG_WARN ? cfg.log_level : DCMS_LOG_WARN);
    if (dcms_crypto_init()) {
        fprintf(stderr, "dcmsd keys: cannot initialise libsodium\n");
        return 1;
    }
    struct dcms_audit_opts ao = {.key_path = cfg.audit_key_file,
                                 .checkpoint_every = (unsigned)cfg.audit_checkpoint_every};
    dcms_keys_opts_from_config(&cfg, &o);
    if ((e = dcms_store_open(cfg.database_url, NULL, &store, &ei)) ||
        (e = dcms_audit_open(store, &ao, &audit, &ei)) ||
        (e = dcms_keys_open(&o, store, audit, &keys, &ei)))
        goto out;
    if (strcmp(verb, "rotate") == 0) {
        int64_t v = 0;
        if (!(e = dcms_keys_rotate(keys, &who, &v, &ei)))
            print_json(json_pack("{s:I}", "active_version", (json_int_t)v));
    } else if (strcmp(verb, "rewrap") == 0) {
        int64_t done = 0;
        e = dcms_keys_rewrap_all(keys, &who, (unsigned)batch, &done, &ei);
        if (!e)
            print_json(json_pack("{s:I, s:I}", "rewrapped", (json_int_t)done, "remaining", 0));
        else
            fprintf(stderr, "dcmsd keys: rewrapped %lld before stopping\n", (long long)done);
    } else if (strcmp(verb, "retire") == 0) {
        if (!(e = dcms_keys_retire(keys, &who, version, &ei)))
            print_json(json_pack("{s:I, s:s}", "version", (json_int_t)version, "state", "retired"));
    } else {
        struct dcms_keys_status st;
        if (!(e = dcms_keys_status(keys, &st, &ei)))
            print_json(keys_status_to_json(&st));
    }
    status = e ? 1 : 0;
out:
    if (e)
        fprintf(stderr, "dcmsd keys %s: %s (%s)\n", verb,
                ei.message[0] ? ei.message : dcms_err_str(e), dcms_err_slug(e));
    dcms_keys_close(keys);
    dcms_audit_close(audit);
    dcms_store_close(store);
    return status;
}
