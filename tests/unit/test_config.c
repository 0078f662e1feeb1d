/*
 * Configuration (src/core/config.c, config.def): defaults and what is
 * derived from them, environment overrides, the KEY=VALUE file (comments,
 * quotes, whitespace, unknown keys), refusals that name the variable, and
 * that docs/configuration.md documents every variable.
 *
 * Every case starts from an environment without the DCMS_* variables and
 * puts the caller's values back afterwards.
 */
#include "testutil.h"

#include <unistd.h>

#include "dcms/config.h"

#define MAX_SAVED 128

static struct saved {
    char name[64];
    char *value; /* NULL: was unset */
} saved[MAX_SAVED];
static size_t nsaved;

static void save_one(void *ctx, const char *name, const char *def, const char *doc)
{
    (void)ctx;
    (void)def;
    (void)doc;
    assert_true(nsaved < MAX_SAVED);
    struct saved *s = &saved[nsaved++];
    snprintf(s->name, sizeof(s->name), "%s", name);
    const char *v = getenv(name);
    s->value = v ? strdup(v) : NULL;
    unsetenv(name);
}

static int env_setup(void **state)
{
    (void)state;
    nsaved = 0;
    dcms_config_each(save_one, NULL);
    return 0;
}

static int env_teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < nsaved; i++) {
        if (saved[i].value)
            setenv(saved[i].name, saved[i].value, 1);
        else
            unsetenv(saved[i].name);
        free(saved[i].value);
        saved[i].value = NULL;
    }
    nsaved = 0;
    return 0;
}

/* A temporary config file with `text`; the path is written to `path`. */
static void write_file(char path[64], const char *text)
{
    snprintf(path, 64, "/tmp/dcms-config-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t n = strlen(text);
    assert_int_equal(write(fd, text, n), (ssize_t)n);
    close(fd);
}

static void defaults(void **state)
{
    (void)state;
    struct dcms_config cfg;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    if (dcms_config_load(&cfg, NULL, &ei))
        fail_msg("defaults refused: %s", ei.message);
    assert_string_equal(cfg.listen, "127.0.0.1:8080");
    assert_string_equal(cfg.listen_host, "127.0.0.1");
    assert_int_equal(cfg.listen_port, 8080);
    assert_string_equal(cfg.data_dir, "./data");
    assert_string_equal(cfg.database_url, "sqlite:./data/dcms.db");
    assert_int_equal(cfg.threads, 0);
    assert_int_equal(cfg.max_body_bytes, 1048576);
    assert_int_equal(cfg.max_connections, 1024);
    assert_int_equal(cfg.connection_timeout_s, 30);
    assert_int_equal(cfg.shutdown_timeout_ms, 10000);
    assert_int_equal(cfg.store_timeout_ms, 5000);
    assert_int_equal(cfg.log_level, DCMS_LOG_INFO);
    assert_true(cfg.access_log);
}

static void env_overrides(void **state)
{
    (void)state;
    setenv("DCMS_LISTEN", "0.0.0.0:0", 1);
    setenv("DCMS_DATA_DIR", "/var/lib/dcms", 1);
    setenv("DCMS_THREADS", "16", 1);
    setenv("DCMS_MAX_BODY_BYTES", "2048", 1);
    setenv("DCMS_LOG_LEVEL", "debug", 1);
    setenv("DCMS_ACCESS_LOG", "OFF", 1);
    setenv("DCMS_STORE_TIMEOUT_MS", "250", 1);
    struct dcms_config cfg;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    if (dcms_config_load(&cfg, NULL, &ei))
        fail_msg("refused: %s", ei.message);
    assert_string_equal(cfg.listen_host, "0.0.0.0");
    assert_int_equal(cfg.listen_port, 0);
    assert_string_equal(cfg.data_dir, "/var/lib/dcms");
    assert_string_equal(cfg.database_url, "sqlite:/var/lib/dcms/dcms.db");
    assert_int_equal(cfg.threads, 16);
    assert_int_equal(cfg.max_body_bytes, 2048);
    assert_int_equal(cfg.log_level, DCMS_LOG_DEBUG);
    assert_false(cfg.access_log);
    assert_int_equal(cfg.store_timeout_ms, 250);

    /* An explicit database URL is kept as given. */
    setenv("DCMS_DATABASE_URL", "postgres://u:p@db:5432/dcms", 1);
    dcms_errinfo_init(&ei, NULL);
    if (dcms_config_load(&cfg, NULL, &ei))
        fail_msg("refused: %s", ei.message);
    assert_string_equal(cfg.database_url, "postgres://u:p@db:5432/dcms");
}

static void file_values(void **state)
{
    (void)state;
    char path[64];
    write_file(path, "# dcms test configuration\n"
                     "\n"
                     "   # an indented comment\n"
                     "DCMS_LISTEN = \"10.0.0.1:9090\"   \n"
                     "\tDCMS_DATA_DIR='/srv/dcms data'\n"
                     "DCMS_THREADS=8\n"
                     "DCMS_ACCESS_LOG = no\r\n"
                     "DCMS_LOG_LEVEL=warn\n"
                     "DCMS_DATABASE_URL=\"\"\n"
                     "DCMS_MAX_CONNECTIONS=  77\n");
    struct dcms_config cfg;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    enum dcms_err e = dcms_config_load(&cfg, path, &ei);
    if (e)
        fail_msg("file refused: %s", ei.message);
    assert_string_equal(cfg.listen_host, "10.0.0.1");
    assert_int_equal(cfg.listen_port, 9090);
    assert_string_equal(cfg.data_dir, "/srv/dcms data");
    assert_string_equal(cfg.database_url, "sqlite:/srv/dcms data/dcms.db");
    assert_int_equal(cfg.threads, 8);
    assert_false(cfg.access_log);
    assert_int_equal(cfg.log_level, DCMS_LOG_WARN);
    assert_int_equal(cfg.max_connections, 77);

    /* The environment wins over the file. */
    setenv("DCMS_THREADS", "2", 1);
    setenv("DCMS_ACCESS_LOG", "yes", 1);
    dcms_errinfo_init(&ei, NULL);
    e = dcms_config_load(&cfg, path, &ei);
    if (e)
        fail_msg("file refused: %s", ei.message);
    assert_int_equal(cfg.threads, 2);
    assert_true(cfg.access_log);
    assert_int_equal(cfg.listen_port, 9090);
    unlink(path);
}

static void file_unknown_key(void **state)
{
    (void)state;
    char path[64];
    write_file(path, "# comment\n"
                     "DCMS_THREADS=4\n"
                     "DCMS_THRAEDS=8\n");
    struct dcms_config cfg;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(dcms_config_load(&cfg, path, &ei), DCMS_ERR_CONFIG);
    assert_int_equal(ei.code, DCMS_ERR_CONFIG);
    if (!strstr(ei.message, ":3:") || !strstr(ei.message, "DCMS_THRAEDS"))
        fail_msg("message does not name line 3 and the key: %s", ei.message);
    unlink(path);

    /* A line without '=' is refused with its number too. */
    write_file(path, "DCMS_THREADS=4\n\nDCMS_THREADS\n");
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(dcms_config_load(&cfg, path, &ei), DCMS_ERR_CONFIG);
    if (!strstr(ei.message, ":3:"))
        fail_msg("message does not name line 3: %s", ei.message);
    unlink(path);

    /* A bad value in the file names the variable and the line. */
    write_file(path, "DCMS_LOG_LEVEL=info\nDCMS_THREADS=many\n");
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(dcms_config_load(&cfg, path, &ei), DCMS_ERR_CONFIG);
    if (!strstr(ei.message, "DCMS_THREADS") || !strstr(ei.message, "line 2"))
        fail_msg("message does not name the variable and line: %s", ei.message);
    unlink(path);

    /* A missing file is a configuration error. */
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(dcms_config_load(&cfg, "/nonexistent/dcms.conf", &ei), DCMS_ERR_CONFIG);
    assert_non_null(strstr(ei.message, "/nonexistent/dcms.conf"));
}

static void assert_env_refused(const char *name, const char *value)
{
    struct dcms_config cfg;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    setenv(name, value, 1);
    enum dcms_err e = dcms_config_load(&cfg, NULL, &ei);
    unsetenv(name);
    if (e != DCMS_ERR_CONFIG)
        fail_msg("%s=%s: got %s, want config_error", name, value, dcms_err_slug(e));
    if (!strstr(ei.message, name))
        fail_msg("%s=%s: message does not name the variable: %s", name, value, ei.message);
}

static void bad_values(void **state)
{
    (void)state;
    assert_env_refused("DCMS_THREADS", "abc");
    assert_env_refused("DCMS_THREADS", "-1");
    assert_env_refused("DCMS_THREADS", "4x");
    assert_env_refused("DCMS_THREADS", "");
    assert_env_refused("DCMS_THREADS", "257");
    assert_env_refused("DCMS_THREADS", "99999999999999999999999");
    assert_env_refused("DCMS_LISTEN", "nohost");
    assert_env_refused("DCMS_LISTEN", ":8080");
    assert_env_refused("DCMS_LISTEN", "127.0.0.1:");
    assert_env_refused("DCMS_LISTEN", "127.0.0.1:65536");
    assert_env_refused("DCMS_LISTEN", "127.0.0.1:80x");
    assert_env_refused("DCMS_ACCESS_LOG", "maybe");
    assert_env_refused("DCMS_LOG_LEVEL", "loud");
    assert_env_refused("DCMS_MAX_BODY_BYTES", "10");
    assert_env_refused("DCMS_MAX_BODY_BYTES", "2000000000");
    assert_env_refused("DCMS_MAX_CONNECTIONS", "0");
    assert_env_refused("DCMS_STORE_TIMEOUT_MS", "0");
    assert_env_refused("DCMS_DATA_DIR", "");

    /* A value too long for its field. */
    char *longv = malloc(DCMS_CONFIG_STR_MAX + 10);
    assert_non_null(longv);
    memset(longv, 'a', DCMS_CONFIG_STR_MAX + 9);
    longv[DCMS_CONFIG_STR_MAX + 9] = '\0';
    assert_env_refused("DCMS_DATABASE_URL", longv);
    free(longv);

    /* After all that, the defaults load again. */
    struct dcms_config cfg;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(dcms_config_load(&cfg, NULL, &ei), DCMS_OK);
}

struct doc_check {
    const char *text;
    size_t nvars;
    char missing[1024];
};

static bool is_name_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

static void check_documented(void *ctx, const char *name, const char *def, const char *doc)
{
    (void)def;
    struct doc_check *dc = ctx;
    dc->nvars++;
    assert_non_null(doc);
    assert_true(strlen(doc) > 0);
    size_t n = strlen(name);
    /* Whole words only: DCMS_X must not be found inside DCMS_X_Y. */
    for (const char *p = dc->text; (p = strstr(p, name)) != NULL; p += n)
        if ((p == dc->text || !is_name_char(p[-1])) && !is_name_char(p[n]))
            return;
    size_t used = strlen(dc->missing);
    snprintf(dc->missing + used, sizeof(dc->missing) - used, " %s", name);
}

static void docs_mention_every_variable(void **state)
{
    (void)state;
    const char *path = DCMS_SOURCE_DIR "/docs/configuration.md";
    if (access(path, R_OK) != 0)
        fail_msg("%s is missing: every variable in src/core/config.def must be documented there",
                 path);
    struct doc_check dc = {dcms_test_read_file(path, NULL), 0, ""};
    dcms_config_each(check_documented, &dc);
    free((char *)dc.text);
    assert_true(dc.nvars >= 11);
    if (dc.missing[0])
        fail_msg("docs/configuration.md does not mention:%s", dc.missing);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(defaults, env_setup, env_teardown),
    cmocka_unit_test_setup_teardown(env_overrides, env_setup, env_teardown),
    cmocka_unit_test_setup_teardown(file_values, env_setup, env_teardown),
    cmocka_unit_test_setup_teardown(file_unknown_key, env_setup, env_teardown),
    cmocka_unit_test_setup_teardown(bad_values, env_setup, env_teardown),
    cmocka_unit_test_setup_teardown(docs_mention_every_variable, env_setup, env_teardown),
};

DCMS_TEST_MAIN(tests)
