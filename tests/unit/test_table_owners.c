/*
 * Module boundaries in SQL: no statement in one module names another
 * module's table. Every table has one owner (the map below); the test reads
 * the C sources of src/<module>/, joins each file's string literals the way
 * the compiler joins adjacent ones, and finds the table after FROM, JOIN,
 * INTO, UPDATE and TABLE. A module that needs another's data calls its
 * public header (include/dcms/) instead. Every CREATE TABLE in the
 * migrations must have an owner here, so a new table cannot slip past.
 */
#include "testutil.h"

#include <ctype.h>
#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct owner {
    const char *table, *module;
} owners[] = {
    {"audit_events", "audit"},
    {"audit_head", "audit"},
    {"audit_checkpoints", "audit"},
    {"audit_pending", "audit"},
    {"audit_tree_nodes", "audit"},
    {"audit_tree_heads", "audit"},
    {"identities", "iam"},
    {"credentials", "iam"},
    {"credential_challenges", "iam"},
    {"api_keys", "iam"},
    {"email_outbox", "iam"},
    {"email_verifications", "iam"},
    {"jwt_keys", "iam"},
    {"login_throttle", "iam"},
    {"mfa_tickets", "iam"},
    {"policies", "iam"},
    {"policy_attachments", "iam"},
    {"recovery_codes", "iam"},
    {"refresh_tokens", "iam"},
    {"session_families", "iam"},
    {"signing_keys", "iam"},
    {"totp_credentials", "iam"},
    {"webauthn_credentials", "iam"},
    {"webauthn_user_handles", "iam"},
    {"webauthn_login_challenges", "iam"},
    {"contracts", "contracts"},
    {"contract_versions", "contracts"},
    {"contract_signatures", "contracts"},
    {"enclaves", "enclaves"},
    {"enclave_images", "enclaves"},
    {"enclave_metric_samples", "enclaves"},
    {"enclave_attestations", "enclaves"},
    {"kek_versions", "keys"},
    {"data_keys", "keys"},
    {"datasets", "datasets"},
    {"dataset_segments", "datasets"},
    {"dataset_derived", "datasets"},
    {"training_jobs", "training"},
    {"training_events", "training"},
    {"training_models", "training"},
    {"training_run_counts", "training"},
    {"dataset_upload_state", "datasets"},
    {"registration_limits", "iam"},
    {"privacy_budgets", "privacy"},
    {"nodes", "nodes"},
    {"leases", "nodes"},
    {"privacy_runs", "privacy"},
    {NULL, NULL},
};

/* Known violations, "file:table": none. A new entry needs a reason beside it. */
static const char *const allowlist[] = {
    NULL,
};

static const char *owner_of(const char *table)
{
    for (const struct owner *o = owners; o->table; o++)
        if (strcmp(o->table, table) == 0)
            return o->module;
    return NULL;
}

static bool allowed(const char *rel, const char *table)
{
    char key[1024];
    snprintf(key, sizeof(key), "%s:%s", rel, table);
    for (const char *const *a = allowlist; *a; a++)
        if (strcmp(*a, key) == 0)
            return true;
    return false;
}

/* The contents of every string literal in C source `src`, concatenated; comments skipped. */
static char *literals(const char *src, size_t len)
{
    char *out = malloc(len + 1);
    assert_non_null(out);
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '/' && src[i + 1] == '*') {
            const char *end = strstr(src + i + 2, "*/");
            i = end ? (size_t)(end - src) + 1 : len;
        } else if (src[i] == '/' && src[i + 1] == '/') {
            while (i < len && src[i] != '\n')
                i++;
        } else if (src[i] == '\'') {
            i++;
            while (i < len && src[i] != '\'')
                i += src[i] == '\\' ? 2 : 1;
        } else if (src[i] == '"') {
            for (i++; i < len && src[i] != '"'; i++) {
                if (src[i] == '\\')
                    i++;
                else
                    out[o++] = src[i];
            }
        }
    }
    out[o] = 0;
    return out;
}

/* Table names after the SQL keywords in `sql`; reports the ones `module` does not own. */
static int scan(const char *rel, const char *module, const char *sql)
{
    static const char *const kw[] = {"FROM ", "JOIN ", "INTO ", "UPDATE ", "TABLE ", NULL};
    int bad = 0;
    for (const char *const *k = kw; *k; k++) {
        for (const char *p = strstr(sql, *k); p; p = strstr(p + 1, *k)) {
            if (p > sql && (isalnum((unsigned char)p[-1]) || p[-1] == '_'))
                continue;
            const char *t = p + strlen(*k);
            while (*t == ' ')
                t++;
            if (strncmp(t, "IF NOT EXISTS ", 14) == 0)
                t += 14;
            char name[64];
            size_t n = 0;
            while (n < sizeof(name) - 1 && (islower((unsigned char)t[n]) || t[n] == '_'))
                name[n] = t[n], n++;
            name[n] = 0;
            if (isalnum((unsigned char)t[n]) || !n)
                continue;
            const char *own = owner_of(name);
            if (own && strcmp(own, module) != 0 && !allowed(rel, name)) {
                print_error("%s (module %s) names table %s of module %s\n", rel, module, name, own);
                bad++;
            }
        }
    }
    return bad;
}

static void no_module_names_another_modules_table(void **state)
{
    (void)state;
    char path[1024];
    snprintf(path, sizeof(path), "%s/src", DCMS_SOURCE_DIR);
    DIR *top = opendir(path);
    assert_non_null(top);
    int bad = 0, files = 0;
    struct dirent *m;
    while ((m = readdir(top))) {
        if (m->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/src/%s", DCMS_SOURCE_DIR, m->d_name);
        DIR *d = opendir(path);
        if (!d)
            continue;
        struct dirent *f;
        while ((f = readdir(d))) {
            size_t n = strlen(f->d_name);
            if (n < 3 ||
                (strcmp(f->d_name + n - 2, ".c") != 0 && strcmp(f->d_name + n - 2, ".h") != 0))
                continue;
            char rel[600], full[2048];
            snprintf(rel, sizeof(rel), "src/%s/%s", m->d_name, f->d_name);
            snprintf(full, sizeof(full), "%s/%s", DCMS_SOURCE_DIR, rel);
            size_t len;
            char *src = dcms_test_read_file(full, &len), *sql = literals(src, len);
            bad += scan(rel, m->d_name, sql);
            files++;
            free(sql);
            free(src);
        }
        closedir(d);
    }
    closedir(top);
    assert_true(files > 20);
    assert_int_equal(bad, 0);
}

/* Every table the migrations create has an owner above. */
static void every_table_has_an_owner(void **state)
{
    (void)state;
    static const char *const dialects[] = {"sqlite", "pg", NULL};
    int missing = 0, tables = 0;
    for (const char *const *dl = dialects; *dl; dl++) {
        char path[1024];
        snprintf(path, sizeof(path), "%s/src/store/migrations/%s", DCMS_SOURCE_DIR, *dl);
        DIR *d = opendir(path);
        assert_non_null(d);
        struct dirent *f;
        while ((f = readdir(d))) {
            if (!strstr(f->d_name, ".sql"))
                continue;
            char full[2048];
            snprintf(full, sizeof(full), "%s/%s", path, f->d_name);
            size_t len;
            char *sql = dcms_test_read_file(full, &len);
            for (const char *p = strstr(sql, "CREATE TABLE "); p;
                 p = strstr(p + 1, "CREATE TABLE ")) {
                const char *t = p + 13;
                if (strncmp(t, "IF NOT EXISTS ", 14) == 0)
                    t += 14;
                char name[64];
                size_t n = 0;
                while (n < sizeof(name) - 1 && (islower((unsigned char)t[n]) || t[n] == '_'))
                    name[n] = t[n], n++;
                name[n] = 0;
                tables++;
                if (!owner_of(name) && strcmp(name, "schema_migrations") != 0) {
                    print_error("%s/%s: table %s has no owner in test_table_owners.c\n", *dl,
                                f->d_name, name);
                    missing++;
                }
            }
            free(sql);
        }
        closedir(d);
    }
    assert_true(tables > 20);
    assert_int_equal(missing, 0);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(no_module_names_another_modules_table),
    cmocka_unit_test(every_table_has_an_owner),
};

DCMS_TEST_MAIN(tests)
