/*
 * The dcms client's pure parts (cli/): argument parsing (options, values,
 * "--", errors), the configuration file (round trip, modes, malformed
 * lines, profile names), schema inference from a CSV file, and the JSON
 * diff that `contracts sign` shows.
 */
#include "testutil.h"

#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../cli/args.c"
#include "../../cli/config.c"
#include "../../cli/diff.c"
#include "../../cli/out.c"
#include "../../cli/schema.c"

static char tmpdir[256];

static int make_tmp(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/dcms-test-cli-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    assert_true(sodium_init() >= 0);
    return 0;
}

static int rm_tmp(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void args_values_flags_positionals(void **state)
{
    (void)state;
    const char *file = NULL, *name = NULL, *pos[3];
    bool yes = false, help = false;
    size_t npos;
    const struct cli_opt opts[] = {
        {"file", 'f', CLI_OPT_VALUE, NULL, &file, "FILE", ""},
        {"name", 0, CLI_OPT_VALUE, NULL, &name, "N", ""},
        {"yes", 'y', CLI_OPT_FLAG, &yes, NULL, NULL, ""},
        {0},
    };
    char *argv[] = {"ID", "-f", "terms.json", "--name=a=b", "-y", "V2", "--", "--not-an-option"};
    assert_int_equal(cli_args_parse(8, argv, opts, pos, 3, &npos, &help), 0);
    assert_int_equal(npos, 3);
    assert_string_equal(pos[0], "ID");
    assert_string_equal(pos[1], "V2");
    assert_string_equal(pos[2], "--not-an-option");
    assert_string_equal(file, "terms.json");
    assert_string_equal(name, "a=b"); /* only the first '=' splits */
    assert_true(yes);
    assert_false(help);

    /* The last occurrence wins; --help is reported, not an error. */
    char *argv2[] = {"--file", "a", "--file", "b", "--help"};
    assert_int_equal(cli_args_parse(5, argv2, opts, pos, 0, &npos, &help), 0);
    assert_string_equal(file, "b");
    assert_true(help);
}

static void args_errors(void **state)
{
    (void)state;
    const char *file = NULL, *pos[1];
    bool yes = false;
    size_t npos;
    const struct cli_opt opts[] = {
        {"file", 'f', CLI_OPT_VALUE, NULL, &file, "FILE", ""},
        {"yes", 0, CLI_OPT_FLAG, &yes, NULL, NULL, ""},
        {0},
    };
    char *unknown[] = {"--fil", "x"};
    assert_int_equal(cli_args_parse(2, unknown, opts, pos, 1, &npos, NULL), CLI_EXIT_USAGE);
    char *missing[] = {"-f"};
    assert_int_equal(cli_args_parse(1, missing, opts, pos, 1, &npos, NULL), CLI_EXIT_USAGE);
    char *flag_value[] = {"--yes=no"};
    assert_int_equal(cli_args_parse(1, flag_value, opts, pos, 1, &npos, NULL), CLI_EXIT_USAGE);
    char *too_many[] = {"a", "b"};
    assert_int_equal(cli_args_parse(2, too_many, opts, pos, 1, &npos, NULL), CLI_EXIT_USAGE);
    char *short_unknown[] = {"-z"};
    assert_int_equal(cli_args_parse(1, short_unknown, opts, pos, 1, &npos, NULL), CLI_EXIT_USAGE);
    /* A lone "-" is an argument (stdin), not an option. */
    char *dash[] = {"-"};
    assert_int_equal(cli_args_parse(1, dash, opts, pos, 1, &npos, NULL), 0);
    assert_int_equal(npos, 1);
    assert_string_equal(pos[0], "-");
}

static void args_global_anywhere(void **state)
{
    (void)state;
    const char *server = NULL, *profile = NULL;
    bool json = false, quiet = false;
    const struct cli_opt g[] = {
        {"server", 0, CLI_OPT_VALUE, NULL, &server, "URL", ""},
        {"profile", 0, CLI_OPT_VALUE, NULL, &profile, "N", ""},
        {"json", 0, CLI_OPT_FLAG, &json, NULL, NULL, ""},
        {"quiet", 'q', CLI_OPT_FLAG, &quiet, NULL, NULL, ""},
        {0},
    };
    char *argv[] = {"dcms",      "contracts", "--profile",         "p1",
                    "sign",      "-q",        "--server=http://x", "--json",
                    "--serverx", "-f",        "--profile"};
    assert_int_equal(cli_args_take(11, argv, 1, g), 0);
    assert_int_equal(cli_args_take(11, argv, 2, g), 2);
    assert_string_equal(profile, "p1");
    assert_int_equal(cli_args_take(11, argv, 5, g), 1);
    assert_true(quiet);
    assert_int_equal(cli_args_take(11, argv, 6, g), 1);
    assert_string_equal(server, "http://x");
    assert_int_equal(cli_args_take(11, argv, 7, g), 1);
    assert_true(json);
    assert_int_equal(cli_args_take(11, argv, 8, g), 0);   /* a prefix is not the option */
    assert_int_equal(cli_args_take(11, argv, 9, g), 0);   /* a command's own option */
    assert_int_equal(cli_args_take(11, argv, 10, g), -1); /* its value is missing */
}

static void profile_names(void **state)
{
    (void)state;
    assert_true(cli_profile_name_ok("default"));
    assert_true(cli_profile_name_ok("prod-eu_1.x"));
    assert_false(cli_profile_name_ok(""));
    assert_false(cli_profile_name_ok(NULL));
    assert_false(cli_profile_name_ok("a b"));
    assert_false(cli_profile_name_ok("../x"));
    assert_false(cli_profile_name_ok("x]"));
    char long_name[80];
    memset(long_name, 'a', 65);
    long_name[65] = '\0';
    assert_false(cli_profile_name_ok(long_name));
    long_name[64] = '\0';
    assert_true(cli_profile_name_ok(long_name));
}

static void config_round_trip_and_modes(void **state)
{
    (void)state;
    char dir[512], path[600], err[512];
    snprintf(dir, sizeof dir, "%s/xdg/dcms", tmpdir);
    assert_int_equal(cli_mkdir_private(dir), 0);
    struct stat st;
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    snprintf(path, sizeof path, "%s/config", dir);

    /* A missing file is an empty configuration. */
    struct cli_config cfg;
    assert_int_equal(cli_config_read(path, &cfg, err, sizeof err), 0);
    assert_int_equal(cfg.n, 0);

    struct cli_profile *p = cli_config_profile(&cfg, "default", true);
    assert_non_null(p);
    assert_int_equal(cli_profile_set_server(p, "http://127.0.0.1:8080"), 0);
    assert_int_equal(cli_profile_set_token(p, "rt-1"), 0);
    p = cli_config_profile(&cfg, "prod", true);
    assert_int_equal(cli_profile_set_server(p, "https://dcms.example.com"), 0);
    assert_null(cli_config_profile(&cfg, "bad name", true));
    assert_int_equal(cli_config_write(path, &cfg, err, sizeof err), 0);
    cli_config_release(&cfg);

    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(cli_config_read(path, &cfg, err, sizeof err), 0);
    assert_int_equal(cfg.n, 2);
    p = cli_config_profile(&cfg, "default", false);
    assert_string_equal(p->server, "http://127.0.0.1:8080");
    assert_string_equal(p->refresh_token, "rt-1");
    p = cli_config_profile(&cfg, "prod", false);
    assert_string_equal(p->server, "https://dcms.example.com");
    assert_null(p->refresh_token);
    assert_null(cli_config_profile(&cfg, "other", false));

    /* Clearing the token removes it from the file. */
    p = cli_config_profile(&cfg, "default", false);
    assert_int_equal(cli_profile_set_token(p, NULL), 0);
    assert_int_equal(cli_config_write(path, &cfg, err, sizeof err), 0);
    cli_config_release(&cfg);
    size_t len;
    char *text = dcms_test_read_file(path, &len);
    assert_null(strstr(text, "refresh_token"));
    assert_non_null(strstr(text, "[profile prod]"));
    free(text);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void config_malformed(void **state)
{
    (void)state;
    char path[600], err[512];
    struct cli_config cfg;
    snprintf(path, sizeof path, "%s/bad-config", tmpdir);
    const struct {
        const char *text, *want;
    } cases[] = {
        {"server = x\n", ":1: expected KEY = VALUE inside a [profile NAME] section"},
        {"[profile a]\nserver x\n", ":2: expected KEY = VALUE"},
        {"[profile a]\npassword = hunter2\n", ":2: unknown key \"password\""},
        {"[default]\n", ":1: expected [profile NAME]"},
        {"[profile a b]\n", ":1: bad profile name"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_text(path, cases[i].text);
        err[0] = '\0';
        assert_int_equal(cli_config_read(path, &cfg, err, sizeof err), -1);
        if (!strstr(err, cases[i].want))
            fail_msg("case %zu: \"%s\" does not say \"%s\"", i, err, cases[i].want);
        assert_int_equal(cfg.n, 0);
    }
    /* Comments, blank lines and spaces are fine. */
    write_text(path, "# c\n\n  [profile a]  \n  server =  http://x  \r\n# refresh_token = no\n");
    assert_int_equal(cli_config_read(path, &cfg, err, sizeof err), 0);
    assert_int_equal(cfg.n, 1);
    assert_string_equal(cfg.profiles[0].server, "http://x");
    assert_null(cfg.profiles[0].refresh_token);
    cli_config_release(&cfg);
}

static void config_dir_from_env(void **state)
{
    (void)state;
    setenv("XDG_CONFIG_HOME", "/x/conf", 1);
    char *d = cli_config_dir();
    assert_string_equal(d, "/x/conf/dcms");
    free(d);
    /* A relative XDG_CONFIG_HOME is ignored (the XDG spec): $HOME/.config. */
    setenv("XDG_CONFIG_HOME", "rel", 1);
    setenv("HOME", "/home/u", 1);
    d = cli_config_dir();
    assert_string_equal(d, "/home/u/.config/dcms");
    free(d);
}

static void schema_inferred_from_csv(void **state)
{
    (void)state;
    char path[600], err[512];
    snprintf(path, sizeof path, "%s/x.csv", tmpdir);
    write_text(path, "age,score,city,\"note, quoted\",label\n"
                     "31,0.5,Paris,\"a, b\",yes\n"
                     "40,1,Lyon,c,no\n"
                     "-2,1e3,Paris,\"d \"\"e\"\"\",yes\n");
    json_t *s = cli_infer_schema(path, "label", err, sizeof err);
    if (!s)
        fail_msg("%s", err);
    char *got = json_dumps(s, JSON_COMPACT);
    assert_string_equal(got,
                        "{\"columns\":[{\"name\":\"age\",\"type\":\"integer\"},"
                        "{\"name\":\"score\",\"type\":\"number\"},"
                        "{\"name\":\"city\",\"type\":\"category\",\"values\":[\"Lyon\",\"Paris\"]},"
                        "{\"name\":\"note, quoted\",\"type\":\"category\",\"values\":"
                        "[\"a, b\",\"c\",\"d \\\"e\\\"\"]},"
                        "{\"name\":\"label\",\"type\":\"category\",\"values\":[\"no\",\"yes\"]}],"
                        "\"label\":\"label\",\"label_values\":[\"no\",\"yes\"]}");
    free(got);
    json_decref(s);

    /* The label must exist; rows must match the header. */
    assert_null(cli_infer_schema(path, "nope", err, sizeof err));
    assert_non_null(strstr(err, "no column \"nope\""));
    write_text(path, "a,b\n1,2\n3\n");
    assert_null(cli_infer_schema(path, "b", err, sizeof err));
    assert_non_null(strstr(err, ":3: 1 fields, the header has 2"));
    /* A numeric (non-integer) label cannot be a label. */
    write_text(path, "a,b\n1,0.5\n2,1.5\n");
    assert_null(cli_infer_schema(path, "b", err, sizeof err));
}

static void schema_of_the_test_dataset(void **state)
{
    (void)state;
    char err[512];
    json_t *s = cli_infer_schema(DCMS_SOURCE_DIR "/tests/data/breast_cancer.csv", "diagnosis", err,
                                 sizeof err);
    if (!s)
        fail_msg("%s", err);
    json_t *cols = json_object_get(s, "columns");
    assert_int_equal(json_array_size(cols), 31);
    size_t i;
    json_t *c;
    json_array_foreach(cols, i, c)
    {
        const char *want = strcmp(json_string_value(json_object_get(c, "name")), "diagnosis") == 0
                               ? "integer"
                               : "number";
        assert_string_equal(json_string_value(json_object_get(c, "type")), want);
    }
    char *lv = json_dumps(json_object_get(s, "label_values"), JSON_COMPACT);
    assert_string_equal(lv, "[\"0\",\"1\"]");
    free(lv);
    json_decref(s);
}

static void diff_paths(void **state)
{
    (void)state;
    json_t *a = json_loads("{\"title\":\"t\",\"terms\":{\"retention\":{\"days\":30},"
                           "\"purposes\":[\"x\",\"y\"],\"gone\":true}}",
                           0, NULL);
    json_t *b = json_loads("{\"title\":\"t\",\"terms\":{\"retention\":{\"days\":60},"
                           "\"purposes\":[\"x\"],\"new\":{}}}",
                           0, NULL);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_int_equal(cli_json_diff(a, b, f, false), 4);
    fclose(f);
    assert_string_equal(buf, "- terms.retention.days = 30\n"
                             "+ terms.retention.days = 60\n"
                             "- terms.purposes[1] = \"y\"\n"
                             "- terms.gone = true\n"
                             "+ terms.new = {}\n");
    free(buf);
    f = open_memstream(&buf, &len);
    assert_int_equal(cli_json_diff(a, a, f, false), 0);
    fclose(f);
    assert_string_equal(buf, "");
    free(buf);
    json_decref(a);
    json_decref(b);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(args_values_flags_positionals), cmocka_unit_test(args_errors),
        cmocka_unit_test(args_global_anywhere),          cmocka_unit_test(profile_names),
        cmocka_unit_test(config_round_trip_and_modes),   cmocka_unit_test(config_malformed),
        cmocka_unit_test(config_dir_from_env),           cmocka_unit_test(schema_inferred_from_csv),
        cmocka_unit_test(schema_of_the_test_dataset),    cmocka_unit_test(diff_paths),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, make_tmp, rm_tmp);
}
