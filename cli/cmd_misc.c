/*
 * dcms enclaves, audit, attestation and completion. The offline checks
 * (`attestation verify`, `audit export --verify`) run the same code as
 * `dcmsd attestation verify` and `dcmsd audit verify` (linked from libdcms).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "attestation/attestation.h"
#include "audit/audit.h"
#include "cli.h"
#include "dcms/banned.h"

static int too_long(struct cli *c)
{
    cli_errorf(c, "arguments too long");
    return CLI_EXIT_USAGE;
}

static int write_out(struct cli *c, const char *out, const char *data, size_t len)
{
    FILE *f = strcmp(out, "-") == 0 ? stdout : fopen(out, "wb");
    if (!f || fwrite(data, 1, len, f) != len || (f != stdout && fclose(f) != 0)) {
        cli_errorf(c, "%s: cannot write", out);
        return CLI_EXIT_USAGE;
    }
    return 0;
}

int cli_cmd_enclaves(struct cli *c, int argc, char **argv)
{
    if (argc < 1)
        return cli_usage("enclaves", NULL, CLI_EXIT_USAGE);
    const char *sub = argv[0], *pos[1], *contract = NULL, *limit = NULL, *cursor = NULL,
               *out = NULL;
    bool help = false;
    size_t npos;
    const struct cli_opt opts[] = {
        {"contract", 0, CLI_OPT_VALUE, NULL, &contract, "ID", "list: serving this contract"},
        {"limit", 0, CLI_OPT_VALUE, NULL, &limit, "N", "list: page size"},
        {"cursor", 0, CLI_OPT_VALUE, NULL, &cursor, "C", "list: the next page"},
        {"output", 'o', CLI_OPT_VALUE, NULL, &out, "FILE",
         "attestation: write the document (base64) to FILE and the root to FILE.root.pem"},
        {0},
    };
    int rc = cli_args_parse_sub(argc, argv, opts, pos, 1, &npos, &help);
    if (rc || help)
        return cli_usage("enclaves", opts, rc);
    struct cli_resp r = CLI_RESP_INIT;
    if (strcmp(sub, "list") == 0 && npos == 0) {
        char q[1024] = "/api/v1/enclaves?";
        if (cli_query_add(q, sizeof q, "contract_id", contract) ||
            cli_query_add(q, sizeof q, "limit", limit) ||
            cli_query_add(q, sizeof q, "cursor", cursor)) {
            rc = too_long(c);
            goto out;
        }
        if ((rc = cli_call(c, "GET", q, NULL, &r)) || cli_print_raw_json(c, &r))
            goto out;
        const char *titles[] = {"ID", "NAME", "STATUS", "BACKEND", "CONTRACT", "ATTESTED"};
        struct cli_table t;
        cli_table_init(&t, 6, titles);
        size_t i;
        json_t *e;
        json_array_foreach(json_object_get(r.json, "enclaves"), i, e)
        {
            if (c->quiet)
                printf("%s\n", cli_jstr(e, "id", ""));
            else
                cli_table_add(&t, cli_jstr(e, "id", NULL), cli_jstr(e, "name", NULL),
                              cli_jstr(e, "status", NULL), cli_jstr(e, "backend", NULL),
                              cli_jstr(e, "contract_id", NULL), cli_jstr(e, "attested_at", NULL));
        }
        if (!c->quiet)
            cli_table_print(c, &t, stdout);
        cli_table_release(&t);
        goto out;
    }
    if (strcmp(sub, "show") == 0 && npos == 1) {
        rc = cli_call_id(c, "GET", "/api/v1/enclaves/", pos[0], "", NULL, &r);
        if (rc || cli_print_raw_json(c, &r))
            goto out;
        json_t *e = r.json, *m = json_object_get(e, "measurement");
        if (c->quiet) {
            printf("%s\n", cli_jstr(e, "status", ""));
            goto out;
        }
        printf("id            %s\nname          %s\nstatus        %s\nbackend       %s\n"
               "contract      %s\nattested at   %s\nexpected PCR0 %s\nreason        %s\n",
               cli_jstr(e, "id", "-"), cli_jstr(e, "name", "-"), cli_jstr(e, "status", "-"),
               cli_jstr(e, "backend", "-"), cli_jstr(e, "contract_id", "-"),
               cli_jstr(e, "attested_at", "-"), cli_jstr(m, "expected_pcr0", "-"),
               cli_jstr(e, "status_reason", "-"));
        goto out;
    }
    if (strcmp(sub, "attestation") == 0 && npos == 1) {
        rc = cli_call_id(c, "GET", "/api/v1/enclaves/", pos[0], "/attestation", NULL, &r);
        if (rc || cli_print_raw_json(c, &r))
            goto out;
        const char *doc = cli_jstr(r.json, "document", NULL);
        const char *root = cli_jstr(r.json, "root_pem", NULL);
        printf("enclave %s (%s): document taken %s, verified by dcmsd: %s\n", pos[0],
               cli_jstr(r.json, "status", "?"), cli_jstr(r.json, "taken_at", "never"),
               json_is_true(json_object_get(r.json, "verified")) ? "yes" : "no");
        if (out && doc) {
            if ((rc = write_out(c, out, doc, strlen(doc))))
                goto out;
            if (root) {
                size_t n = strlen(out) + sizeof ".root.pem";
                char *rp = malloc(n);
                if (!rp) {
                    rc = CLI_EXIT_USAGE;
                    goto out;
                }
                snprintf(rp, n, "%s.root.pem", out);
                rc = write_out(c, rp, root, strlen(root));
                if (rc == 0)
                    printf("check it yourself: dcms attestation verify %s --root %s\n", out, rp);
                free(rp);
            } else {
                printf("check it yourself: dcms attestation verify %s\n", out);
            }
        }
        goto out;
    }
    rc = cli_usage("enclaves", NULL, CLI_EXIT_USAGE);
out:
    cli_resp_release(&r);
    return rc;
}

/* The server's audit public key (*pk, malloc'd), printed so that it can be compared out of band. */
static int server_audit_key(struct cli *c, struct cli_resp *r, char **pk)
{
    int rc = cli_request(c, "GET", "/api/v1/audit/public-key", NULL, NULL, NULL, false, r);
    if (rc)
        return rc;
    if (r->status != 200 || !(*pk = strdup(cli_jstr(r->json, "public_key", "")))) {
        cli_print_error(c, r);
        return CLI_EXIT_REFUSED;
    }
    fprintf(stderr, "audit key (from the server; compare it out of band): %s\n", *pk);
    return 0;
}

int cli_cmd_audit(struct cli *c, int argc, char **argv)
{
    if (argc < 1)
        return cli_usage("audit", NULL, CLI_EXIT_USAGE);
    const char *sub = argv[0], *pos[1], *action = NULL, *resource = NULL, *actor = NULL,
               *limit = NULL, *cursor = NULL, *out = NULL, *from = NULL, *to = NULL, *key = NULL,
               *outcome = NULL;
    bool help = false, verify = false;
    size_t npos;
    const struct cli_opt opts[] = {
        {"action", 0, CLI_OPT_VALUE, NULL, &action, "PREFIX", "events: action prefix (contract.)"},
        {"resource-id", 0, CLI_OPT_VALUE, NULL, &resource, "ID", "events: this resource"},
        {"actor", 0, CLI_OPT_VALUE, NULL, &actor, "ID", "events: this actor"},
        {"outcome", 0, CLI_OPT_VALUE, NULL, &outcome, "O", "events: success, denied or error"},
        {"limit", 0, CLI_OPT_VALUE, NULL, &limit, "N", "events: page size"},
        {"cursor", 0, CLI_OPT_VALUE, NULL, &cursor, "C", "events: the next (older) page"},
        {"output", 'o', CLI_OPT_VALUE, NULL, &out, "FILE",
         "export: where to write (default audit-export.jsonl; - for stdout)"},
        {"from-seq", 0, CLI_OPT_VALUE, NULL, &from, "N", "export: first seq"},
        {"to-seq", 0, CLI_OPT_VALUE, NULL, &to, "N", "export: last seq"},
        {"verify", 0, CLI_OPT_FLAG, &verify, NULL, NULL,
         "export: verify it offline (as dcmsd audit verify)"},
        {"public-key", 0, CLI_OPT_VALUE, NULL, &key, "KEY",
         "export --verify, verify-receipt: the audit key you trust (default: the server's, "
         "printed)"},
        {0},
    };
    int rc = cli_args_parse_sub(argc, argv, opts, pos, 1, &npos, &help);
    if (rc || help)
        return cli_usage("audit", opts, rc);
    struct cli_resp r = CLI_RESP_INIT;
    if (strcmp(sub, "events") == 0 && npos == 0) {
        char q[2048] = "/api/v1/audit/events?";
        if (cli_query_add(q, sizeof q, "action", action) ||
            cli_query_add(q, sizeof q, "resource_id", resource) ||
            cli_query_add(q, sizeof q, "actor", actor) ||
            cli_query_add(q, sizeof q, "outcome", outcome) ||
            cli_query_add(q, sizeof q, "limit", limit) ||
            cli_query_add(q, sizeof q, "cursor", cursor)) {
            rc = too_long(c);
            goto out;
        }
        if ((rc = cli_call(c, "GET", q, NULL, &r)) || cli_print_raw_json(c, &r))
            goto out;
        const char *titles[] = {"SEQ", "TIME", "ACTOR", "ACTION", "OUTCOME", "RESOURCE"};
        struct cli_table t;
        cli_table_init(&t, 6, titles);
        size_t i;
        json_t *e;
        json_array_foreach(json_object_get(r.json, "events"), i, e)
        {
            char seq[32];
            snprintf(seq, sizeof seq, "%lld",
                     (long long)json_integer_value(json_object_get(e, "seq")));
            if (c->quiet)
                printf("%s %s\n", seq, cli_jstr(e, "action", ""));
            else
                cli_table_add(&t, seq, cli_jstr(e, "time", NULL), cli_jstr(e, "actor", NULL),
                              cli_jstr(e, "action", NULL), cli_jstr(e, "outcome", NULL),
                              cli_jstr(e, "resource_id", NULL));
        }
        cli_table_finish(c, &t, r.json);
        goto out;
    }
    if (strcmp(sub, "verify") == 0 && npos == 0) {
        if ((rc = cli_call(c, "GET", "/api/v1/audit/verify", NULL, &r)))
            goto out;
        bool ok = json_is_true(json_object_get(r.json, "ok"));
        if (!cli_print_raw_json(c, &r)) {
            if (c->quiet)
                printf("%s\n", ok ? "ok" : "broken");
            else
                printf(
                    "audit chain %s: %lld events, %lld checkpoints checked (key %s)%s%s\n",
                    ok ? "verified" : "BROKEN",
                    (long long)json_integer_value(json_object_get(r.json, "events_checked")),
                    (long long)json_integer_value(json_object_get(r.json, "checkpoints_checked")),
                    cli_jstr(r.json, "key_id", "?"), ok ? "" : ": ",
                    ok ? "" : cli_jstr(r.json, "reason", ""));
        }
        if (!ok)
            rc = CLI_EXIT_REFUSED;
        goto out;
    }
    if (strcmp(sub, "receipt") == 0 && npos == 1) {
        /* 202 while the event waits for its position (DCMS_AUDIT_SEQUENCE_DELAY_MS): ask again */
        for (int i = 0; i < 50; i++) {
            if ((rc = cli_call_id(c, "GET", "/api/v1/audit/events/", pos[0], "/receipt", NULL,
                                  &r)) ||
                r.status != 202)
                break;
            struct timespec ts = {0, 100 * 1000000L};
            nanosleep(&ts, NULL);
        }
        if (rc)
            goto out;
        if (r.status == 202) {
            cli_errorf(c, "event %s is still waiting for its position in the log", pos[0]);
            rc = CLI_EXIT_REFUSED;
            goto out;
        }
        if (!out)
            out = "-";
        if ((rc = write_out(c, out, r.body, r.len)))
            goto out;
        if (strcmp(out, "-") != 0)
            cli_infof(c, "receipt of event %s written to %s", pos[0], out);
        goto out;
    }
    if (strcmp(sub, "verify-receipt") == 0 && npos == 1) {
        char *pk = NULL;
        if (!key) {
            if ((rc = server_audit_key(c, &r, &pk)))
                goto out;
        }
        char *args[] = {(char *)"audit",        (char *)"verify-receipt", (char *)pos[0],
                        (char *)"--public-key", pk ? pk : (char *)key,    NULL};
        fflush(stdout);
        int v = dcms_audit_cli(5, args);
        rc = v == 0 ? CLI_EXIT_OK : v == 2 ? CLI_EXIT_USAGE : CLI_EXIT_REFUSED;
        free(pk);
        goto out;
    }
    if (strcmp(sub, "export") == 0 && npos == 0) {
        char q[256] = "/api/v1/audit/export?";
        if (cli_query_add(q, sizeof q, "from_seq", from) ||
            cli_query_add(q, sizeof q, "to_seq", to)) {
            rc = too_long(c);
            goto out;
        }
        if (!out)
            out = "audit-export.jsonl";
        if ((rc = cli_call(c, "GET", q, NULL, &r)) || (rc = write_out(c, out, r.body, r.len)))
            goto out;
        if (strcmp(out, "-") != 0)
            cli_infof(c, "audit export written to %s (%zu bytes)", out, r.len);
        if (!verify)
            goto out;
        if (strcmp(out, "-") == 0) {
            cli_errorf(c, "--verify needs -o FILE");
            rc = CLI_EXIT_USAGE;
            goto out;
        }
        char *pk = NULL;
        if (!key && (rc = server_audit_key(c, &r, &pk)))
            goto out;
        char *args[] = {(char *)"audit",        (char *)"verify",      (char *)out,
                        (char *)"--public-key", pk ? pk : (char *)key, NULL};
        fflush(stdout);
        rc = dcms_audit_cli(5, args);
        free(pk);
        goto out;
    }
    rc = cli_usage("audit", NULL, CLI_EXIT_USAGE);
out:
    cli_resp_release(&r);
    return rc;
}

int cli_cmd_attestation(struct cli *c, int argc, char **argv)
{
    if (argc < 1 || strcmp(argv[0], "verify") != 0) {
        bool asked = argc >= 1 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0);
        cli_usage("attestation", NULL, asked ? 0 : CLI_EXIT_USAGE);
        if (asked) {
            char *args[] = {(char *)"attestation", (char *)"--help", NULL};
            return dcms_attest_cli(2, args);
        }
        return CLI_EXIT_USAGE;
    }
    /* The same tool as dcmsd attestation: argv is "verify FILE [options]". */
    char **args = calloc((size_t)argc + 2, sizeof *args);
    if (!args)
        return CLI_EXIT_USAGE;
    args[0] = (char *)"attestation";
    for (int i = 0; i < argc; i++)
        args[i + 1] = argv[i];
    int rc = dcms_attest_cli(argc + 1, args);
    free(args);
    return rc;
}

/* ---- completion scripts, generated from the command tables ---- */

static void put_quoted(const char *s)
{
    for (; *s; s++) {
        if (*s == '\'')
            fputs("'\\''", stdout);
        else if (*s == ':')
            fputs("\\:", stdout);
        else
            fputc(*s, stdout);
    }
}

/*
 * Calls fn for each option a subcommand's usage names ("--name" tokens):
 * with vals/vlen the words of its argument when that is a word list
 * ("--model logistic_regression|mlp"), else NULL.
 */
typedef void (*usage_opt_fn)(const char *cmd, const char *sub, const char *opt, size_t olen,
                             const char *vals, size_t vlen);

static void usage_options(const char *cmd, const struct cli_sub *s, usage_opt_fn fn)
{
    static const char word[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_|";
    const char *p = s->usage;
    while ((p = strstr(p, "--"))) {
        size_t n = 2 + strspn(p + 2, "abcdefghijklmnopqrstuvwxyz0123456789-");
        const char *arg = p + n;
        size_t an = *arg == ' ' ? strspn(arg + 1, word) : 0;
        bool list = an > 0 && memchr(arg + 1, '|', an) &&
                    (arg[1 + an] == '\0' || arg[1 + an] == ' ' || arg[1 + an] == ']');
        if (n > 2)
            fn(cmd, s->name, p, n, list ? arg + 1 : NULL, list ? an : 0);
        p += n;
    }
}

static void words(const char *vals, size_t vlen)
{
    for (size_t i = 0; i < vlen; i++)
        putchar(vals[i] == '|' ? ' ' : vals[i]);
}

static void bash_values(const char *cmd, const char *sub, const char *opt, size_t olen,
                        const char *vals, size_t vlen)
{
    if (!vals)
        return;
    printf("    \"%s %s %.*s\") opts=\"", cmd, sub, (int)olen, opt);
    words(vals, vlen);
    printf("\" ;;\n");
}

static void option_names(const char *cmd, const char *sub, const char *opt, size_t olen,
                         const char *vals, size_t vlen)
{
    printf("%.*s ", (int)olen, opt);
}

static void zsh_values(const char *cmd, const char *sub, const char *opt, size_t olen,
                       const char *vals, size_t vlen)
{
    if (!vals)
        return;
    printf("    '%s %s %.*s') compadd -- ", cmd, sub, (int)olen, opt);
    words(vals, vlen);
    printf("; return ;;\n");
}

static void bash_completion(void)
{
    printf("# bash completion for dcms (generated by `dcms completion bash`)\n"
           "_dcms() {\n"
           "    local cur=\"${COMP_WORDS[COMP_CWORD]}\" cmd= sub= i\n"
           "    for ((i = 1; i < COMP_CWORD; i++)); do\n"
           "        case \"${COMP_WORDS[i]}\" in\n"
           "        --server | --profile) ((i++)) ;;\n"
           "        -*) ;;\n"
           "        *) if [[ -z $cmd ]]; then cmd=${COMP_WORDS[i]}; elif [[ -z $sub ]]; then "
           "sub=${COMP_WORDS[i]}; fi ;;\n"
           "        esac\n"
           "    done\n"
           "    local prev=\"${COMP_WORDS[COMP_CWORD-1]}\" opts=\n"
           "    case \"$cmd $sub $prev\" in\n");
    for (const struct cli_command *x = cli_commands; x->name; x++)
        for (const struct cli_sub *s = cli_subs_of(x->name); s && s->name; s++)
            usage_options(x->name, s, bash_values);
    printf("    esac\n"
           "    if [[ -n $opts ]]; then\n"
           "        COMPREPLY=($(compgen -W \"$opts\" -- \"$cur\"))\n        return\n    fi\n"
           "    if [[ $cur == -* ]]; then\n"
           "        case \"$cmd $sub\" in\n");
    for (const struct cli_command *x = cli_commands; x->name; x++)
        for (const struct cli_sub *s = cli_subs_of(x->name); s && s->name; s++) {
            printf("        \"%s %s\") opts=\"", x->name, s->name);
            usage_options(x->name, s, option_names);
            printf("\" ;;\n");
        }
    printf("        esac\n"
           "        COMPREPLY=($(compgen -W \"$opts ");
    for (const struct cli_opt *o = cli_global_opts_help; o->name; o++)
        printf("--%s ", o->name);
    printf("--help\" -- \"$cur\"))\n        return\n    fi\n"
           "    if [[ -z $cmd ]]; then\n        COMPREPLY=($(compgen -W \"");
    for (const struct cli_command *x = cli_commands; x->name; x++)
        printf("%s ", x->name);
    printf("help\" -- \"$cur\"))\n        return\n    fi\n"
           "    if [[ -z $sub ]]; then\n        case $cmd in\n");
    for (const struct cli_command *x = cli_commands; x->name; x++) {
        const struct cli_sub *s = cli_subs_of(x->name);
        if (!s)
            continue;
        printf("        %s) COMPREPLY=($(compgen -W \"", x->name);
        for (; s->name; s++)
            printf("%s ", s->name);
        printf("\" -- \"$cur\")); return ;;\n");
    }
    printf("        esac\n    fi\n"
           "    COMPREPLY=($(compgen -f -- \"$cur\"))\n"
           "}\n"
           "complete -o filenames -F _dcms dcms\n");
}

static void zsh_completion(void)
{
    printf("#compdef dcms\n# zsh completion for dcms (generated by `dcms completion zsh`)\n"
           "_dcms() {\n"
           "    local -a cmds subs args\n"
           "    local w\n"
           "    for w in ${words[2,CURRENT-1]}; do\n"
           "        [[ $w == -* ]] || args+=($w)\n"
           "    done\n"
           "    cmds=(\n");
    for (const struct cli_command *x = cli_commands; x->name; x++) {
        printf("        '%s:", x->name);
        put_quoted(x->summary);
        printf("'\n");
    }
    printf("    )\n"
           "    case \"$args[1] $args[2] $words[CURRENT-1]\" in\n");
    for (const struct cli_command *x = cli_commands; x->name; x++)
        for (const struct cli_sub *s = cli_subs_of(x->name); s && s->name; s++)
            usage_options(x->name, s, zsh_values);
    printf("    esac\n"
           "    if [[ $words[CURRENT] == -* ]]; then\n"
           "        case \"$args[1] $args[2]\" in\n");
    for (const struct cli_command *x = cli_commands; x->name; x++)
        for (const struct cli_sub *s = cli_subs_of(x->name); s && s->name; s++) {
            printf("        '%s %s') compadd -- ", x->name, s->name);
            usage_options(x->name, s, option_names);
            printf(";;\n");
        }
    printf("        esac\n"
           "        compadd -- ");
    for (const struct cli_opt *o = cli_global_opts_help; o->name; o++)
        printf("--%s ", o->name);
    printf("--help\n        return\n    fi\n"
           "    if (( ${#args} == 0 )); then\n"
           "        _describe 'command' cmds\n        return\n    fi\n"
           "    case $args[1] in\n");
    for (const struct cli_command *x = cli_commands; x->name; x++) {
        const struct cli_sub *s = cli_subs_of(x->name);
        if (!s)
            continue;
        printf("    %s) subs=(", x->name);
        for (; s->name; s++) {
            printf(" '%s:", s->name);
            put_quoted(s->summary);
            printf("'");
        }
        printf(" ) ;;\n");
    }
    printf("    esac\n"
           "    if (( ${#args} == 1 && ${#subs} )); then\n"
           "        _describe 'subcommand' subs\n        return\n    fi\n"
           "    _files\n"
           "}\n"
           "_dcms \"$@\"\n");
}

int cli_cmd_completion(struct cli *c, int argc, char **argv)
{
    if (argc == 1 && strcmp(argv[0], "bash") == 0) {
        bash_completion();
        return 0;
    }
    if (argc == 1 && strcmp(argv[0], "zsh") == 0) {
        zsh_completion();
        return 0;
    }
    bool asked = argc == 1 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0);
    cli_usage("completion", NULL, asked ? 0 : CLI_EXIT_USAGE);
    FILE *f = asked ? stdout : stderr;
    fprintf(f, "\nbash: source <(dcms completion bash)   (or install it as\n"
               "      /usr/share/bash-completion/completions/dcms)\n"
               "zsh:  dcms completion zsh > \"${fpath[1]}/_dcms\"\n");
    return asked ? 0 : CLI_EXIT_USAGE;
}
