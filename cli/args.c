/*
 * Argument parsing for dcms subcommands: long options (`--name V`,
 * `--name=V`), one-letter aliases (`-f V`), flags, and positional
 * arguments in order, with "--" ending the options. Global options are
 * parsed by the same function in main.c. Kept apart for the unit tests.
 */
#include <string.h>

#include "cli.h"
#include "dcms/banned.h"

static const struct cli_opt *find_long(const struct cli_opt *opts, const char *name, size_t len)
{
    for (const struct cli_opt *o = opts; o && o->name; o++)
        if (strlen(o->name) == len && memcmp(o->name, name, len) == 0)
            return o;
    return NULL;
}

static const struct cli_opt *find_short(const struct cli_opt *opts, char ch)
{
    for (const struct cli_opt *o = opts; o && o->name; o++)
        if (o->short_name && o->short_name == ch)
            return o;
    return NULL;
}

int cli_args_parse(int argc, char **argv, const struct cli_opt *opts, const char **pos,
                   size_t max_pos, size_t *npos, bool *help)
{
    bool only_pos = false;
    *npos = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const struct cli_opt *o = NULL;
        const char *inline_val = NULL;
        if (!only_pos && strcmp(a, "--") == 0) {
            only_pos = true;
            continue;
        }
        if (!only_pos && (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)) {
            if (help)
                *help = true;
            continue;
        }
        if (!only_pos && a[0] == '-' && a[1] == '-' && a[2]) {
            const char *eq = strchr(a + 2, '=');
            size_t len = eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);
            o = find_long(opts, a + 2, len);
            if (!o) {
                fprintf(stderr, "dcms: unknown option \"%.*s\"\n", (int)(len + 2), a);
                return CLI_EXIT_USAGE;
            }
            if (eq) {
                if (o->kind == CLI_OPT_FLAG) {
                    fprintf(stderr, "dcms: option --%s takes no value\n", o->name);
                    return CLI_EXIT_USAGE;
                }
                inline_val = eq + 1;
            }
        } else if (!only_pos && a[0] == '-' && a[1] && a[1] != '-' && a[2] == '\0') {
            o = find_short(opts, a[1]);
            if (!o) {
                fprintf(stderr, "dcms: unknown option \"%s\"\n", a);
                return CLI_EXIT_USAGE;
            }
        }
        if (!o) {
            if (*npos >= max_pos) {
                fprintf(stderr, "dcms: unexpected argument \"%s\"\n", a);
                return CLI_EXIT_USAGE;
            }
            pos[(*npos)++] = a;
            continue;
        }
        if (o->kind == CLI_OPT_FLAG) {
            *o->flag = true;
            continue;
        }
        if (!inline_val) {
            if (i + 1 >= argc) {
                fprintf(stderr, "dcms: option --%s needs a value (%s)\n", o->name,
                        o->arg_name ? o->arg_name : "VALUE");
                return CLI_EXIT_USAGE;
            }
            inline_val = argv[++i];
        }
        *o->value = inline_val;
    }
    return 0;
}

int cli_args_parse_sub(int argc, char **argv, const struct cli_opt *opts, const char **pos,
                       size_t max_pos, size_t *npos, bool *help)
{
    int rc = cli_args_parse(argc - 1, argv + 1, opts, pos, max_pos, npos, help);
    if (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)
        *help = true;
    return rc;
}

void cli_args_help(FILE *f, const struct cli_opt *opts)
{
    for (const struct cli_opt *o = opts; o && o->name; o++) {
        char left[64];
        if (o->short_name)
            snprintf(left, sizeof left, "-%c, --%s%s%s", o->short_name, o->name,
                     o->kind == CLI_OPT_VALUE ? " " : "",
                     o->kind == CLI_OPT_VALUE ? (o->arg_name ? o->arg_name : "VALUE") : "");
        else
            snprintf(left, sizeof left, "    --%s%s%s", o->name,
                     o->kind == CLI_OPT_VALUE ? " " : "",
                     o->kind == CLI_OPT_VALUE ? (o->arg_name ? o->arg_name : "VALUE") : "");
        fprintf(f, "  %-28s %s\n", left, o->help ? o->help : "");
    }
}

int cli_args_take(int argc, char **argv, int i, const struct cli_opt *opts)
{
    const char *a = argv[i];
    for (const struct cli_opt *o = opts; o && o->name; o++) {
        size_t n = strlen(o->name);
        bool long_match = a[0] == '-' && a[1] == '-' && strncmp(a + 2, o->name, n) == 0;
        if (long_match && a[2 + n] == '\0') {
            if (o->kind == CLI_OPT_FLAG) {
                *o->flag = true;
                return 1;
            }
            if (i + 1 >= argc)
                return -1;
            *o->value = argv[i + 1];
            return 2;
        }
        if (long_match && a[2 + n] == '=' && o->kind == CLI_OPT_VALUE) {
            *o->value = a + 3 + n;
            return 1;
        }
        if (o->short_name && o->kind == CLI_OPT_FLAG && a[0] == '-' && a[1] == o->short_name &&
            a[2] == '\0') {
            *o->flag = true;
            return 1;
        }
    }
    return 0;
}
