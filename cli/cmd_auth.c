/*
 * dcms login, logout, whoami. The password (and a second factor when the
 * server asks for one) is read from the terminal without echo or from a
 * file, never from argv; only the server URL and the refresh token are
 * written to the profile.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dcms/banned.h"

/* Sends a login body (wiped afterwards) and returns the answer in *r. */
static int post_login(struct cli *c, json_t *body, struct cli_resp *r)
{
    int rc = cli_request(c, "POST", "/api/v1/auth/login", body, NULL, NULL, false, r);
    cli_json_wipe(body);
    return rc;
}

static void print_login_help(void)
{
    printf("usage: dcms login [--email EMAIL] [--password-file FILE] [--code-file FILE]\n\n"
           "The e-mail address is asked for on the terminal when --email is not given.\n"
           "Logs in and keeps the session's refresh token in the profile (mode 0600).\n"
           "The password is read from the terminal without echo, or from the first line\n"
           "of --password-file (from stdin when there is no terminal). When the account\n"
           "has a second factor the server asks for it: a TOTP code or a recovery code,\n"
           "read the same way (or from --code-file). Registering signing keys needs a\n"
           "login made in the last 10 minutes (with the second factor, if any).\n\n");
}

int cli_cmd_login(struct cli *c, int argc, char **argv)
{
    const char *email = NULL, *pwfile = NULL, *codefile = NULL, *pos[1];
    bool help = false;
    size_t npos;
    const struct cli_opt opts[] = {
        {"email", 'e', CLI_OPT_VALUE, NULL, &email, "EMAIL", "the account's e-mail address"},
        {"password-file", 0, CLI_OPT_VALUE, NULL, &pwfile, "FILE",
         "read the password from the first line of FILE"},
        {"code-file", 0, CLI_OPT_VALUE, NULL, &codefile, "FILE",
         "read the TOTP or recovery code from FILE"},
        {0},
    };
    int rc = cli_args_parse(argc, argv, opts, pos, 1, &npos, &help);
    if (rc || help) {
        print_login_help();
        cli_args_help(stdout, opts);
        return rc;
    }
    if (npos == 1)
        email = pos[0];
    char *asked = email ? NULL : cli_prompt_line("e-mail: ");
    if (asked)
        email = asked;
    if (!email) {
        cli_errorf(c, "which account? dcms login --email EMAIL");
        return CLI_EXIT_USAGE;
    }
    struct cli_resp r = CLI_RESP_INIT;
    struct cli_config cfg = {0};
    json_t *body = NULL;
    char *pw = NULL, *code = NULL;
    if (!(pw = cli_read_secret(c, "password: ", pwfile))) {
        rc = CLI_EXIT_USAGE;
        goto out;
    }
    body = json_pack("{s:s, s:s}", "email", email, "password", pw);
    sodium_free(pw);
    pw = NULL;
    if (!body || (rc = post_login(c, body, &r)))
        goto out;
    json_t *err = json_object_get(r.json, "error");
    if (r.status == 401 && strcmp(cli_jstr(err, "code", ""), "mfa_required") == 0) {
        const char *ticket = json_string_value(json_object_get(r.json, "mfa_ticket"));
        if (!ticket) {
            cli_print_error(c, &r);
            rc = CLI_EXIT_REFUSED;
            goto out;
        }
        char *t = strdup(ticket);
        if (!(code =
                  cli_read_secret(c, "second factor (TOTP code or recovery code): ", codefile)) ||
            !t) {
            free(t);
            rc = CLI_EXIT_USAGE;
            goto out;
        }
        json_decref(body);
        body = json_pack("{s:s, s:s}", "mfa_ticket", t,
                         strchr(code, '-') ? "recovery_code" : "totp", code);
        sodium_memzero(t, strlen(t));
        free(t);
        if (!body || (rc = post_login(c, body, &r)))
            goto out;
    }
    if (r.status != 200) {
        cli_print_error(c, &r);
        rc = CLI_EXIT_REFUSED;
        goto out;
    }
    const char *at = json_string_value(json_object_get(r.json, "access_token"));
    const char *rt = json_string_value(json_object_get(r.json, "refresh_token"));
    if (!at || !rt) {
        cli_errorf(c, "the login answer has no tokens");
        rc = CLI_EXIT_REFUSED;
        goto out;
    }
    if ((rc = cli_load_config(c, &cfg)))
        goto out;
    struct cli_profile *p = cli_config_profile(&cfg, c->profile, true);
    if (!p || cli_profile_set_token(p, rt) || cli_profile_set_server(p, c->server)) {
        rc = CLI_EXIT_USAGE;
        goto out;
    }
    if ((rc = cli_save_config(c, &cfg)))
        goto out;
    c->access_token = sodium_malloc(strlen(at) + 1);
    if (c->access_token)
        memcpy(c->access_token, at, strlen(at) + 1);
    cli_json_wipe(r.json);
    cli_infof(c, "logged in as %s on %s (profile %s)", email, c->server, c->profile);
out:
    if (pw)
        sodium_free(pw);
    if (code)
        sodium_free(code);
    if (body) {
        cli_json_wipe(body);
        json_decref(body);
    }
    if (r.json)
        cli_json_wipe(r.json);
    cli_resp_release(&r);
    cli_config_release(&cfg);
    free(asked);
    return rc;
}

int cli_cmd_logout(struct cli *c, int argc, char **argv)
{
    bool help = false;
    const char *pos[1];
    size_t npos;
    const struct cli_opt opts[] = {{0}};
    int rc = cli_args_parse(argc, argv, opts, pos, 0, &npos, &help);
    if (rc || help) {
        printf("usage: dcms logout\n\nRevokes the profile's session on the server and removes its\n"
               "refresh token from the configuration.\n");
        return rc;
    }
    struct cli_config cfg = {0};
    struct cli_resp r = CLI_RESP_INIT;
    json_t *body = NULL;
    if ((rc = cli_load_config(c, &cfg)))
        goto out;
    struct cli_profile *p = cli_config_profile(&cfg, c->profile, false);
    if (!p || !p->refresh_token) {
        cli_infof(c, "profile %s is not logged in", c->profile);
        goto out;
    }
    body = json_pack("{s:s}", "refresh_token", p->refresh_token);
    rc = body ? cli_request(c, "POST", "/api/v1/auth/logout", body, NULL, NULL, false, &r)
              : CLI_EXIT_USAGE;
    /* Forget the token whatever the server said: a dead session is no use. */
    cli_profile_set_token(p, NULL);
    int sv = cli_save_config(c, &cfg);
    if (rc)
        goto out;
    if (r.status != 204 && r.status != 401) {
        cli_print_error(c, &r);
        rc = CLI_EXIT_REFUSED;
        goto out;
    }
    rc = sv;
    cli_infof(c, "logged out (profile %s)", c->profile);
out:
    if (body) {
        cli_json_wipe(body);
        json_decref(body);
    }
    cli_resp_release(&r);
    cli_config_release(&cfg);
    return rc;
}

int cli_cmd_whoami(struct cli *c, int argc, char **argv)
{
    bool help = false;
    const char *pos[1];
    size_t npos;
    const struct cli_opt opts[] = {{0}};
    int rc = cli_args_parse(argc, argv, opts, pos, 0, &npos, &help);
    if (rc || help) {
        printf(
            "usage: dcms whoami\n\nThe identity the profile is logged in as (with -q: its id).\n");
        return rc;
    }
    struct cli_resp r = CLI_RESP_INIT;
    if ((rc = cli_call(c, "GET", "/api/v1/auth/me", NULL, &r)))
        goto out;
    if (cli_print_raw_json(c, &r))
        goto out;
    json_t *id = json_object_get(r.json, "identity");
    if (c->quiet) {
        printf("%s\n", cli_jstr(id, "id", ""));
        goto out;
    }
    char *roles = cli_json_text(json_object_get(id, "roles"));
    char *org = cli_json_text(json_object_get(id, "organization_id"));
    char *amr = cli_json_text(json_object_get(json_object_get(r.json, "token"), "amr"));
    printf("id            %s\nname          %s\nemail         %s\nroles         %s\n"
           "organization  %s\nlogin         %s\nserver        %s (profile %s)\n",
           cli_jstr(id, "id", "-"), cli_jstr(id, "name", "-"), cli_jstr(id, "email", "-"),
           roles ? roles : "-", org ? org : "-", amr ? amr : "-", c->server, c->profile);
    free(roles);
    free(org);
    free(amr);
out:
    cli_resp_release(&r);
    return rc;
}
