/*
 * The dcms client's pure parts (cli/): argument parsing (options, values,
 * "--", errors), the configuration file (round trip, modes, malformed
 * lines, profile names), schema inference from a CSV file, the JSON
 * diff that `contracts sign` shows, the body `train start` builds from its
 * options, and the event-stream parser of `train watch`.
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
#include "../../cli/sse.c"
#include "../../cli/train_req.c"

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

/* The body is `expected` (JSON text), compared as JSON. */
static void assert_body(json_t *body, const char *expected)
{
    json_error_t je;
    json_t *want = json_loads(expected, 0, &je);
    assert_non_null(want);
    char *got = json_dumps(body, JSON_SORT_KEYS | JSON_COMPACT);
    if (!json_equal(body, want))
        fail_msg("body %s, expected %s", got, expected);
    free(got);
    json_decref(want);
}

static void train_body_from_options(void **state)
{
    (void)state;
    char err[256] = "";
    json_t *body = NULL;
    json_t *scope = json_pack("[s, s]", "ds-1", "ds-2");
    struct cli_train_opts o = {.label = "diagnosis",
                               .model = "mlp",
                               .hidden = "16,8",
                               .optimizer = "sgd",
                               .momentum = "0.9",
                               .epochs = "1000",
                               .batch_size = "0",
                               .learning_rate = "0.1",
                               .l2 = "0",
                               .seed = "7",
                               .split = "modulo:5:4",
                               .dtype = "F32"};
    assert_true(cli_train_needs_scope(&o, NULL));
    assert_int_equal(cli_train_body(&o, NULL, scope, &body, err, sizeof err), 0);
    assert_body(body,
                "{\"datasets\": [\"ds-1\", \"ds-2\"], \"label\": \"diagnosis\", \"model\": \"mlp\","
                " \"hidden\": [16, 8], \"optimizer\": \"sgd\", \"momentum\": 0.9,"
                " \"epochs\": 1000, \"batch_size\": 0, \"learning_rate\": 0.1, \"l2\": 0.0,"
                " \"seed\": 7, \"dtype\": \"F32\","
                " \"split\": {\"method\": \"modulo\", \"folds\": 5, \"holdout_fold\": 4}}");
    json_decref(body);
    /* --datasets wins over the scope; a random split with and without its seed; DP. */
    struct cli_train_opts d = {.datasets = "a,b",
                               .split = "random:0.25:42",
                               .batch_size = "64",
                               .dp_epsilon = "1.5",
                               .dp_max_grad_norm = "1"};
    assert_false(cli_train_needs_scope(&d, NULL));
    assert_int_equal(cli_train_body(&d, NULL, scope, &body, err, sizeof err), 0);
    assert_body(body, "{\"datasets\": [\"a\", \"b\"], \"batch_size\": 64,"
                      " \"split\": {\"method\": \"random\", \"fraction\": 0.25, \"seed\": 42},"
                      " \"dp\": {\"target_epsilon\": 1.5, \"max_grad_norm\": 1.0}}");
    json_decref(body);
    struct cli_train_opts r = {.split = "random:0.2", .dp_noise = "1.1"};
    assert_int_equal(cli_train_body(&r, NULL, scope, &body, err, sizeof err), 0);
    assert_body(body, "{\"datasets\": [\"ds-1\", \"ds-2\"], \"dp\": {\"noise_multiplier\": 1.1},"
                      " \"split\": {\"method\": \"random\", \"fraction\": 0.2}}");
    json_decref(body);
    json_decref(scope);
}

static void train_body_over_a_file(void **state)
{
    (void)state;
    char err[256] = "";
    json_t *body = NULL;
    json_t *base = json_loads("{\"datasets\": [\"f-1\"], \"label\": \"y\", \"model\": "
                              "\"logistic_regression\", \"epochs\": 10,"
                              " \"dp\": {\"noise_multiplier\": 2, \"max_grad_norm\": 1}}",
                              0, NULL);
    assert_non_null(base);
    struct cli_train_opts o = {.epochs = "20", .dp_epsilon = "3"};
    /* The file names datasets: the contract is not asked for its scope. */
    assert_false(cli_train_needs_scope(&o, base));
    assert_int_equal(cli_train_body(&o, base, NULL, &body, err, sizeof err), 0);
    assert_body(body, "{\"datasets\": [\"f-1\"], \"label\": \"y\", \"model\": "
                      "\"logistic_regression\", \"epochs\": 20,"
                      " \"dp\": {\"target_epsilon\": 3.0, \"max_grad_norm\": 1}}");
    json_decref(body);
    /* The file itself is not changed. */
    assert_int_equal(json_integer_value(json_object_get(base, "epochs")), 10);
    json_decref(base);
}

static void train_body_errors(void **state)
{
    (void)state;
    static const struct {
        struct cli_train_opts o;
        const char *message;
    } cases[] = {
        {{.epochs = "ten"}, "--epochs: \"ten\" is not an integer"},
        {{.batch_size = "1.5"}, "--batch-size: \"1.5\" is not an integer"},
        {{.learning_rate = "fast"}, "--learning-rate: \"fast\" is not a number"},
        {{.l2 = "nan"}, "--l2: \"nan\" is not a number"},
        {{.hidden = "16,,8"}, "--hidden: \"16,,8\" is not a list of layer widths like 16,8"},
        {{.hidden = "16,x"}, "--hidden: \"x\" is not an integer"},
        {{.split = "modulo:5"},
         "--split: \"modulo:5\" is not modulo:FOLDS:HOLDOUT or random:FRACTION[:SEED]"},
        {{.split = "modulo:5:x"}, "--split holdout: \"x\" is not an integer"},
        {{.split = "random:0.2:1:2"},
         "--split: \"random:0.2:1:2\" is not modulo:FOLDS:HOLDOUT or random:FRACTION[:SEED]"},
        {{.split = "kfold:5"},
         "--split: \"kfold:5\" is not modulo:FOLDS:HOLDOUT or random:FRACTION[:SEED]"},
        {{.datasets = "a,,b"}, "--datasets: \"a,,b\" is not ID[,ID...]"},
        {{.dp_epsilon = "1", .dp_noise = "1"}, "--dp-epsilon and --dp-noise: one or the other"},
    };
    json_t *scope = json_pack("[s]", "ds");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[256] = "";
        json_t *body = (json_t *)1;
        assert_int_equal(cli_train_body(&cases[i].o, NULL, scope, &body, err, sizeof err),
                         CLI_EXIT_USAGE);
        assert_null(body);
        assert_string_equal(err, cases[i].message);
    }
    /* No --datasets, none in the file, and a contract without a scope. */
    char err[256] = "";
    json_t *body = NULL;
    struct cli_train_opts none = {.label = "y"};
    assert_int_equal(cli_train_body(&none, NULL, NULL, &body, err, sizeof err), CLI_EXIT_USAGE);
    assert_string_equal(err, "the contract names no dataset: give --datasets ID[,ID...]");
    json_decref(scope);
}

/* Records the events an SSE parse dispatches as "event|id|data\n" lines. */
struct sse_log {
    struct cli_sse *s;
    char text[1024];
};

static int log_event(void *ud, const char *event, const char *data)
{
    struct sse_log *l = ud;
    size_t n = strlen(l->text);
    snprintf(l->text + n, sizeof l->text - n, "%s|%s|%s\n", event, l->s->id, data);
    return strcmp(event, "stop") == 0 ? 7 : 0;
}

static void sse_events(void **state)
{
    (void)state;
    static const char stream[] = "retry: 1000\r\n\r\n"
                                 ": a comment\n"
                                 "id: 4\nevent: state\ndata: {\"state\":\"running\"}\n\n"
                                 "id: 5\r\nevent: progress\r\ndata: {\"epoch\":1,\r\n"
                                 "data:\"loss\":0.5}\r\n\r\n"
                                 "id: 6\revent: nodata\r\r"
                                 "data\n\n"
                                 "event: end\ndata: {\"state\":\"succeeded\"}\n\n"
                                 "data: half";
    /* Fed whole, then a byte at a time (CR LF split across feeds): the same events. */
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        struct cli_sse s;
        struct sse_log l = {.s = &s};
        cli_sse_init(&s, log_event, &l);
        if (bytewise) {
            for (size_t i = 0; i + 1 < sizeof stream; i++)
                assert_int_equal(cli_sse_feed(&s, stream + i, 1), 0);
        } else {
            assert_int_equal(cli_sse_feed(&s, stream, sizeof stream - 1), 0);
        }
        assert_string_equal(l.text, "state|4|{\"state\":\"running\"}\n"
                                    "progress|5|{\"epoch\":1,\n\"loss\":0.5}\n"
                                    "message||\n"
                                    "end||{\"state\":\"succeeded\"}\n");
        /* The last id: stays for Last-Event-ID; an event without data is not dispatched. */
        assert_string_equal(s.last_id, "6");
        assert_int_equal(s.retry_ms, 1000);
        cli_sse_release(&s);
    }
    /* The callback's refusal stops the parse and is returned. */
    struct cli_sse s;
    struct sse_log l = {.s = &s};
    cli_sse_init(&s, log_event, &l);
    assert_int_equal(cli_sse_feed(&s, "event: stop\ndata: x\n\nevent: late\ndata: y\n\n", 42), 7);
    assert_string_equal(l.text, "stop||x\n");
    cli_sse_release(&s);
    /* A bad retry: is ignored. */
    cli_sse_init(&s, log_event, &l);
    assert_int_equal(cli_sse_feed(&s, "retry: 1s\n\n", 11), 0);
    assert_int_equal(s.retry_ms, -1);
    cli_sse_release(&s);
}

static void sse_line_cap(void **state)
{
    (void)state;
    struct cli_sse s;
    struct sse_log l = {.s = &s};
    char *big = malloc(SSE_MAX_BYTES + 16);
    assert_non_null(big);
    memcpy(big, "data: ", 6);
    memset(big + 6, 'x', SSE_MAX_BYTES + 10);
    cli_sse_init(&s, log_event, &l);
    assert_int_equal(cli_sse_feed(&s, big, SSE_MAX_BYTES + 16), -1);
    assert_string_equal(l.text, "");
    cli_sse_release(&s);
    free(big);
}

static void args_subcommand_help(void **state)
{
    (void)state;
    const char *pos[1], *o = NULL;
    bool help = false;
    size_t npos;
    const struct cli_opt opts[] = {{"output", 'o', CLI_OPT_VALUE, NULL, &o, "FILE", ""}, {0}};
    char *a1[] = {"model", "ID", "-o", "m.safetensors"};
    assert_int_equal(cli_args_parse_sub(4, a1, opts, pos, 1, &npos, &help), 0);
    assert_false(help);
    assert_int_equal(npos, 1);
    assert_string_equal(pos[0], "ID");
    assert_string_equal(o, "m.safetensors");
    char *a2[] = {"--help"};
    assert_int_equal(cli_args_parse_sub(1, a2, opts, pos, 1, &npos, &help), 0);
    assert_true(help);
    help = false;
    char *a3[] = {"watch", "ID", "extra"};
    assert_int_equal(cli_args_parse_sub(3, a3, opts, pos, 1, &npos, &help), CLI_EXIT_USAGE);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(args_values_flags_positionals),
        cmocka_unit_test(args_errors),
        cmocka_unit_test(args_global_anywhere),
        cmocka_unit_test(profile_names),
        cmocka_unit_test(config_round_trip_and_modes),
        cmocka_unit_test(config_malformed),
        cmocka_unit_test(config_dir_from_env),
        cmocka_unit_test(schema_inferred_from_csv),
        cmocka_unit_test(schema_of_the_test_dataset),
        cmocka_unit_test(diff_paths),
        cmocka_unit_test(train_body_from_options),
        cmocka_unit_test(train_body_over_a_file),
        cmocka_unit_test(train_body_errors),
        cmocka_unit_test(sse_events),
        cmocka_unit_test(sse_line_cap),
        cmocka_unit_test(args_subcommand_help),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, make_tmp, rm_tmp);
}
