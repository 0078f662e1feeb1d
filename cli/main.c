/*
 * dcms: the command-line client of dcmsd (docs/cli.md). Wiring only: the
 * global options (taken anywhere before "--"), the profile and server,
 * colour on terminals, then one command from the table below.
 */
#include <curl/curl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "dcms/banned.h"

const struct cli_command cli_commands[] = {
    {"login", cli_cmd_login, "log in (password, then TOTP or a recovery code when asked)"},
    {"logout", cli_cmd_logout, "end the session and forget the refresh token"},
    {"whoami", cli_cmd_whoami, "who the profile is logged in as"},
    {"keys", cli_cmd_keys, "Ed25519 signing keys: generate, register, list, rotate, revoke"},
    {"contracts", cli_cmd_contracts,
     "contracts: create, edit, submit, sign, activate, evidence..."},
    {"datasets", cli_cmd_datasets, "datasets: create, upload (tus, resumable), list, show, delete"},
    {"train", cli_cmd_train, "training jobs: start, list, show, watch, cancel, model"},
    {"enclaves", cli_cmd_enclaves, "enclaves: list, show, attestation"},
    {"audit", cli_cmd_audit, "the audit log: events, verify, export"},
    {"attestation", cli_cmd_attestation, "verify an attestation document offline"},
    {"completion", cli_cmd_completion, "print the bash or zsh completion script"},
    {NULL, NULL, NULL},
};

static const struct cli_sub subs_keys[] = {
    {"generate", "[--name NAME] [--register]",
     "make an Ed25519 key pair kept in the config directory (0600)"},
    {"register", "[NAME]", "register a local key (the proof of possession is done for you)"},
    {"list", "", "your signing keys on the server, and which are kept here"},
    {"rotate", "KEY_ID [--name NAME]", "replace a registered key by a new local one"},
    {"revoke", "KEY_ID", "revoke a key (it stays listed, its past signatures stay valid)"},
    {NULL, NULL, NULL},
};

static const struct cli_sub subs_contracts[] = {
    {"list", "[--status S] [--role provider|consumer] [--limit N] [--cursor C]", "your contracts"},
    {"show", "ID", "one contract"},
    {"create", "-f FILE [--title T] [--provider ID] [--consumer ID] [--description D]",
     "create a draft from a contract or terms JSON file"},
    {"edit", "ID -f FILE", "replace a draft's content (sends If-Match)"},
    {"submit", "ID", "draft -> pending_signature"},
    {"sign", "ID [--mfa] [--key NAME] [--yes]",
     "show what is signed and the diff since your last signature, then sign"},
    {"activate", "ID", "pending_signature -> active (both sides signed)"},
    {"suspend", "ID --reason R", "active -> suspended (provider side)"},
    {"resume", "ID", "suspended -> active"},
    {"terminate", "ID --reason R", "end the contract (final)"},
    {"versions", "ID", "every terms version with its hash"},
    {"diff", "ID V1 V2", "what changed between two terms versions"},
    {"verify", "ID", "recompute the hash and re-check every signature (server side)"},
    {"evidence", "ID [-o FILE] [--verify] [--audit-key KEY]",
     "download the evidence bundle and verify it offline"},
    {NULL, NULL, NULL},
};

static const struct cli_sub subs_datasets[] = {
    {"create", "--name N (--from-csv FILE --label COL | --schema FILE)",
     "describe a dataset (the schema may be inferred from a CSV file)"},
    {"upload", "FILE [--dataset ID | --name N --label COL] [--chunk-size BYTES] [--max-rate B/s]",
     "upload through tus with a progress bar; run it again to resume"},
    {"list", "[--limit N] [--cursor C]", "your datasets"},
    {"show", "ID", "one dataset (status, SHA-256, rows, report)"},
    {"delete", "ID", "crypto-shred a dataset"},
    {NULL, NULL, NULL},
};

static const struct cli_sub subs_train[] = {
    {"start",
     "CONTRACT_ID [--datasets ID,...] --label COL [--model logistic_regression|mlp] "
     "[--hidden 16,8] [--optimizer sgd|adam] [--momentum M] [--epochs N] [--batch-size N] "
     "[--learning-rate R] [--l2 L] [--seed S] [--split modulo:5:4|random:0.2:SEED] "
     "[--dtype F64|F32] [--dp-epsilon E|--dp-noise S] [--dp-max-grad-norm C] [-f FILE] [--watch]",
     "start a training job under an active contract (consumer); prints its id"},
    {"list", "CONTRACT_ID [--limit N] [--cursor C] [--all]", "the training jobs of a contract"},
    {"show", "ID", "one job: state, progress, metrics, the model's hash"},
    {"watch", "ID [--timeout SECONDS]",
     "follow the job's events until it ends (exit 0 succeeded, 1 failed or cancelled)"},
    {"cancel", "ID", "cancel a job that has not ended (consumer)"},
    {"model", "ID [-o FILE] [--force]",
     "download the trained model (safetensors) and print its SHA-256"},
    {NULL, NULL, NULL},
};

static const struct cli_sub subs_enclaves[] = {
    {"list", "[--contract ID] [--limit N]", "the enclaves you may see"},
    {"show", "ID", "one enclave"},
    {"attestation", "ID [-o FILE]", "its last attestation document (JSON evidence)"},
    {NULL, NULL, NULL},
};

static const struct cli_sub subs_audit[] = {
    {"events", "[--action A] [--resource-id ID] [--actor ID] [--limit N] [--cursor C]",
     "audit events, newest first"},
    {"verify", "", "the server re-walks the chain and its checkpoints"},
    {"export", "[-o FILE] [--from-seq N] [--to-seq N] [--verify]",
     "export the chain (JSON lines); --verify checks it offline with the public key"},
    {"receipt", "EVENT_ID [-o FILE]",
     "an event's receipt: the event, its inclusion proof and the signed tree head"},
    {"verify-receipt", "FILE [--public-key KEY]",
     "check a receipt offline against the audit key you trust (as dcmsd audit verify-receipt)"},
    {NULL, NULL, NULL},
};

static const struct cli_sub subs_attestation[] = {
    {"verify", "FILE [--root PEM] [--max-age-seconds N] [--nonce HEX] [--expect-pcr N=HEX]",
     "verify a COSE attestation document offline (as dcmsd attestation verify)"},
    {NULL, NULL, NULL},
};

static const struct cli_sub subs_completion[] = {
    {"bash", "", "the bash completion script"},
    {"zsh", "", "the zsh completion script"},
    {NULL, NULL, NULL},
};

const struct cli_sub *cli_subs_of(const char *command)
{
    static const struct {
        const char *name;
        const struct cli_sub *subs;
    } t[] = {{"keys", subs_keys},
             {"contracts", subs_contracts},
             {"datasets", subs_datasets},
             {"train", subs_train},
             {"enclaves", subs_enclaves},
             {"audit", subs_audit},
             {"attestation", subs_attestation},
             {"completion", subs_completion}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (strcmp(t[i].name, command) == 0)
            return t[i].subs;
    return NULL;
}

void cli_print_subs(FILE *f, const char *command)
{
    const struct cli_sub *s = cli_subs_of(command);
    fprintf(f, "usage: dcms %s SUBCOMMAND [OPTIONS]\n\n", command);
    for (; s && s->name; s++)
        fprintf(f, "  dcms %s %s %s\n      %s\n", command, s->name, s->usage, s->summary);
    fprintf(f, "\ndcms %s SUBCOMMAND --help shows the options of each.\n", command);
}

int cli_usage(const char *command, const struct cli_opt *opts, int rc)
{
    FILE *f = rc ? stderr : stdout;
    cli_print_subs(f, command);
    if (opts && opts->name) {
        fprintf(f, "\noptions:\n");
        cli_args_help(f, opts);
    }
    return rc;
}

static const char *g_server, *g_profile;
static bool g_json, g_quiet, g_no_color, g_version;

const struct cli_opt cli_global_opts_help[] = {
    {"server", 0, CLI_OPT_VALUE, NULL, &g_server, "URL",
     "the dcmsd to talk to (else $DCMS_SERVER, else the profile's)"},
    {"profile", 0, CLI_OPT_VALUE, NULL, &g_profile, "NAME",
     "the profile in $XDG_CONFIG_HOME/dcms/config (else $DCMS_PROFILE, else default)"},
    {"json", 0, CLI_OPT_FLAG, &g_json, NULL, NULL, "print the API's JSON unchanged"},
    {"quiet", 'q', CLI_OPT_FLAG, &g_quiet, NULL, NULL,
     "print only what scripts need (the id of what was created)"},
    {"no-color", 0, CLI_OPT_FLAG, &g_no_color, NULL, NULL, "never colour the output"},
    {"version", 0, CLI_OPT_FLAG, &g_version, NULL, NULL, "print the version"},
    {NULL, 0, 0, NULL, NULL, NULL, NULL},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: dcms [GLOBAL OPTIONS] COMMAND [SUBCOMMAND] [OPTIONS] [ARGS]\n\n"
               "The command-line client of dcms, the Digital Contract Management System:\n"
               "log in, keep signing keys, draft and sign contracts, upload datasets, train\n"
               "models, check enclaves and evidence. See docs/cli.md.\n\ncommands:\n");
    for (const struct cli_command *c = cli_commands; c->name; c++)
        fprintf(f, "  %-12s %s\n", c->name, c->summary);
    fprintf(f, "\nglobal options (anywhere on the line):\n");
    cli_args_help(f, cli_global_opts_help);
    fprintf(f, "\nexit status: 0 ok; 1 refused by the server (or a check failed, or not\n"
               "logged in); 2 usage error or unreadable file; 3 server unreachable.\n"
               "Colour only on a terminal (NO_COLOR or --no-color turn it off).\n"
               "dcms COMMAND --help shows the subcommands and options of each.\n");
}

int main(int argc, char **argv)
{
    struct cli c = {0};
    int rc = CLI_EXIT_USAGE;
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    int nrest = 0;
    if (!rest || sodium_init() < 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "dcms: cannot initialise\n");
        free(rest);
        return CLI_EXIT_USAGE;
    }
    bool ended = false;
    for (int i = 1; i < argc; i++) {
        if (!ended && strcmp(argv[i], "--") == 0)
            ended = true;
        int n = ended ? 0 : cli_args_take(argc, argv, i, cli_global_opts_help);
        if (n < 0) {
            fprintf(stderr, "dcms: option %s needs a value\n", argv[i]);
            goto out;
        }
        if (n == 0)
            rest[nrest++] = argv[i];
        else
            i += n - 1;
    }
    if (g_version) {
        printf("dcms %s\n", DCMS_VERSION);
        rc = 0;
        goto out;
    }
    if (nrest == 0 || strcmp(rest[0], "--help") == 0 || strcmp(rest[0], "-h") == 0 ||
        strcmp(rest[0], "help") == 0) {
        usage(nrest == 0 ? stderr : stdout);
        rc = nrest == 0 ? CLI_EXIT_USAGE : 0;
        goto out;
    }
    c.json = g_json;
    c.quiet = g_quiet;
    c.no_color = g_no_color || (getenv("NO_COLOR") && *getenv("NO_COLOR"));
    c.color = !c.no_color && isatty(STDOUT_FILENO);
    c.color_err = !c.no_color && isatty(STDERR_FILENO);
    c.profile = g_profile ? g_profile : getenv("DCMS_PROFILE");
    if (!c.profile || !*c.profile)
        c.profile = "default";
    if (!cli_profile_name_ok(c.profile)) {
        cli_errorf(&c, "bad profile name \"%s\" (letters, digits, . _ -; at most 64)", c.profile);
        goto out;
    }
    c.server_opt = g_server ? g_server : getenv("DCMS_SERVER");
    if (c.server_opt && !*c.server_opt)
        c.server_opt = NULL;
    if (!(c.config_dir = cli_config_dir())) {
        cli_errorf(&c, "neither XDG_CONFIG_HOME nor HOME is set: nowhere to keep the profile");
        goto out;
    }
    size_t n = strlen(c.config_dir) + sizeof "/config";
    if (!(c.config_path = malloc(n)))
        goto out;
    snprintf(c.config_path, n, "%s/config", c.config_dir);

    const struct cli_command *cmd = NULL;
    for (const struct cli_command *x = cli_commands; x->name; x++)
        if (strcmp(x->name, rest[0]) == 0)
            cmd = x;
    if (!cmd) {
        fprintf(stderr, "dcms: unknown command \"%s\" (see dcms --help)\n", rest[0]);
        goto out;
    }
    /* The server: --server / DCMS_SERVER, else the profile's (login stores it). */
    const char *server = c.server_opt;
    struct cli_config cfg = {0};
    if (!server && strcmp(cmd->name, "attestation") != 0 && strcmp(cmd->name, "completion") != 0) {
        char err[512];
        if (cli_config_read(c.config_path, &cfg, err, sizeof err) == 0) {
            struct cli_profile *p = cli_config_profile(&cfg, c.profile, false);
            if (p && p->server)
                server = p->server;
        } else {
            cli_errorf(&c, "%s", err);
            goto out;
        }
    }
    if (!server)
        server = "http://127.0.0.1:8080";
    c.server = strdup(server);
    cli_config_release(&cfg);
    if (!c.server)
        goto out;
    size_t sl = strlen(c.server);
    while (sl > 0 && c.server[sl - 1] == '/')
        c.server[--sl] = '\0';
    rc = cmd->run(&c, nrest - 1, rest + 1);
out:
    cli_release(&c);
    free(rest);
    curl_global_cleanup();
    return rc;
}
