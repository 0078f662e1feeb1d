/*
 * dcms contracts: list, show, create, edit, the lifecycle transitions,
 * versions and diffs, server-side verification, the evidence bundle
 * (verified offline by the same code as `dcmsd evidence verify`), and
 * signing: the terms hash is recomputed here (RFC 8785, SHA-256) from the
 * content shown to the signer, the changes since the version this signer
 * last signed are shown, and the 32 hash bytes are signed with a local
 * Ed25519 key (docs/contracts.md, "Signatures").
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dcms/jcs.h"
#include "evidence/evidence.h"
#include "dcms/banned.h"

#define TERMS_FILE_MAX (1024 * 1024)

static const char *sub_usage(const char *sub)
{
    const struct cli_sub *s = cli_subs_of("contracts");
    for (; s && s->name; s++)
        if (strcmp(s->name, sub) == 0)
            return s->usage;
    return "";
}

static void print_contract(const struct cli *c, json_t *k)
{
    char *terms = json_dumps(json_object_get(k, "terms"), JSON_INDENT(2) | JSON_SORT_KEYS);
    printf("id             %s\ntitle          %s\nstatus         %s%s%s\nprovider       %s\n"
           "consumer       %s\nterms version  %lld\nterms hash     %s\nupdated        %s\n",
           cli_jstr(k, "id", "-"), cli_jstr(k, "title", "-"), cli_jstr(k, "status", "-"),
           json_is_string(json_object_get(k, "status_reason")) ? " - " : "",
           cli_jstr(k, "status_reason", ""), cli_jstr(k, "provider_id", "-"),
           cli_jstr(k, "consumer_id", "-"),
           (long long)json_integer_value(json_object_get(k, "terms_version")),
           cli_jstr(k, "terms_hash", "-"), cli_jstr(k, "updated_at", "-"));
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(k, "signatures"), i, s)
    {
        printf("signature      %s by %s (%s, key %s, %s)\n", cli_jstr(s, "side", "?"),
               cli_jstr(s, "signer_id", "?"), cli_jstr(s, "type", "?"), cli_jstr(s, "key_id", "-"),
               cli_jstr(s, "signed_at", "?"));
    }
    printf("terms\n%s\n", terms ? terms : "-");
    free(terms);
}

static const char *const CONTRACTS = "/api/v1/contracts/";

/* GET a contract (and its ETag). */
static int get_contract(struct cli *c, const char *id, struct cli_resp *r)
{
    return cli_call_id(c, "GET", CONTRACTS, id, "", NULL, r);
}

static int cmd_list(struct cli *c, const char *status, const char *role, const char *limit,
                    const char *cursor)
{
    char path[1024] = "/api/v1/contracts?";
    if (cli_query_add(path, sizeof path, "status", status) ||
        cli_query_add(path, sizeof path, "role", role) ||
        cli_query_add(path, sizeof path, "limit", limit) ||
        cli_query_add(path, sizeof path, "cursor", cursor)) {
        cli_errorf(c, "arguments too long");
        return CLI_EXIT_USAGE;
    }
    if (path[strlen(path) - 1] == '?')
        path[strlen(path) - 1] = '\0';
    struct cli_resp r = CLI_RESP_INIT;
    int rc = cli_call(c, "GET", path, NULL, &r);
    if (rc || cli_print_raw_json(c, &r))
        goto out;
    const char *titles[] = {"ID", "TITLE", "STATUS", "PROVIDER", "CONSUMER", "VERSION", "UPDATED"};
    struct cli_table t;
    cli_table_init(&t, 7, titles);
    size_t i;
    json_t *k;
    json_array_foreach(json_object_get(r.json, "contracts"), i, k)
    {
        if (c->quiet) {
            printf("%s\n", cli_jstr(k, "id", ""));
            continue;
        }
        char v[32];
        snprintf(v, sizeof v, "%lld",
                 (long long)json_integer_value(json_object_get(k, "terms_version")));
        cli_table_add(&t, cli_jstr(k, "id", NULL), cli_jstr(k, "title", NULL),
                      cli_jstr(k, "status", NULL), cli_jstr(k, "provider_id", NULL),
                      cli_jstr(k, "consumer_id", NULL), v, cli_jstr(k, "updated_at", NULL));
    }
    cli_table_finish(c, &t, r.json);
out:
    cli_resp_release(&r);
    return rc;
}

/*
 * The body of a create or edit from a file holding either a whole contract
 * ({title, provider_id, consumer_id, terms, ...}) or only the terms; the
 * options fill or override the top-level members.
 */
static int body_from_file(struct cli *c, const char *file, json_t **out)
{
    json_t *v = cli_read_json_object(c, file, TERMS_FILE_MAX);
    if (!v)
        return CLI_EXIT_USAGE;
    if (!json_object_get(v, "terms")) {
        json_t *b = json_object();
        json_object_set_new(b, "terms", v);
        v = b;
    }
    *out = v;
    return 0;
}

static void set_opt(json_t *body, const char *key, const char *val)
{
    if (val)
        json_object_set_new(body, key, json_string(val));
}

static int print_created(struct cli *c, struct cli_resp *r, const char *verb)
{
    if (!cli_print_brief(c, r, "id"))
        printf("%s contract %s (%s, terms version %lld, hash %s)\n", verb,
               cli_jstr(r->json, "id", "?"), cli_jstr(r->json, "status", "?"),
               (long long)json_integer_value(json_object_get(r->json, "terms_version")),
               cli_jstr(r->json, "terms_hash", "?"));
    return 0;
}

static int cmd_create(struct cli *c, const char *file, const char *title, const char *desc,
                      const char *provider, const char *consumer)
{
    json_t *body = NULL;
    struct cli_resp r = CLI_RESP_INIT;
    int rc;
    if (!file) {
        cli_errorf(c, "dcms contracts create needs -f FILE (a contract or its terms, JSON)");
        return CLI_EXIT_USAGE;
    }
    if ((rc = body_from_file(c, file, &body)))
        return rc;
    set_opt(body, "title", title);
    set_opt(body, "description", desc);
    set_opt(body, "provider_id", provider);
    set_opt(body, "consumer_id", consumer);
    /* One side left out: the caller's own. */
    bool has_p = json_object_get(body, "provider_id"), has_c = json_object_get(body, "consumer_id");
    if (has_p != has_c) {
        if ((rc = cli_whoami_id(c)))
            goto out;
        json_object_set_new(body, has_p ? "consumer_id" : "provider_id",
                            json_string(c->identity_id));
    }
    if ((rc = cli_call(c, "POST", "/api/v1/contracts", body, &r)) == 0)
        rc = print_created(c, &r, "created");
out:
    json_decref(body);
    cli_resp_release(&r);
    return rc;
}

static int cmd_edit(struct cli *c, const char *id, const char *file, const char *title,
                    const char *desc)
{
    json_t *body = NULL;
    struct cli_resp r = CLI_RESP_INIT;
    char *path = NULL, *ifmatch = NULL;
    int rc;
    if (!file && !title && !desc) {
        cli_errorf(c, "nothing to change: -f FILE, --title or --description");
        return CLI_EXIT_USAGE;
    }
    if ((rc = get_contract(c, id, &r)))
        goto out;
    if (file) {
        if ((rc = body_from_file(c, file, &body)))
            goto out;
    } else {
        body = json_pack("{s:O}", "terms", json_object_get(r.json, "terms"));
    }
    const char *keys[] = {"title", "description", "provider_id", "consumer_id"};
    for (int i = 0; i < 4; i++)
        if (!json_object_get(body, keys[i]) && json_object_get(r.json, keys[i]))
            json_object_set(body, keys[i], json_object_get(r.json, keys[i]));
    set_opt(body, "title", title);
    set_opt(body, "description", desc);
    size_t n = (r.etag ? strlen(r.etag) : 0) + sizeof "If-Match: ";
    if (!r.etag || !(ifmatch = malloc(n))) {
        cli_errorf(c, "the contract came without an ETag");
        rc = CLI_EXIT_REFUSED;
        goto out;
    }
    snprintf(ifmatch, n, "If-Match: %s", r.etag);
    const char *hdrs[] = {ifmatch, NULL};
    path = cli_path("/api/v1/contracts/", id, "");
    if ((rc = cli_request(c, "PUT", path, body, NULL, hdrs, true, &r)))
        goto out;
    if (r.status != 200) {
        cli_print_error(c, &r);
        rc = CLI_EXIT_REFUSED;
        goto out;
    }
    rc = print_created(c, &r, "updated");
out:
    free(path);
    free(ifmatch);
    json_decref(body);
    cli_resp_release(&r);
    return rc;
}

static int cmd_transition(struct cli *c, const char *op, const char *id, const char *reason)
{
    char tail[64];
    snprintf(tail, sizeof tail, "/%s", op);
    json_t *body = reason ? json_pack("{s:s}", "reason", reason) : NULL;
    struct cli_resp r = CLI_RESP_INIT;
    int rc = cli_call_id(c, "POST", CONTRACTS, id, tail, body, &r);
    if (rc == 0 && !cli_print_brief(c, &r, "status"))
        printf("contract %s is %s\n", id, cli_jstr(r.json, "status", "?"));
    json_decref(body);
    cli_resp_release(&r);
    return rc;
}

static int get_versions(struct cli *c, const char *id, struct cli_resp *r)
{
    return cli_call_id(c, "GET", CONTRACTS, id, "/versions", NULL, r);
}

static json_t *version_content(json_t *versions, long long v)
{
    size_t i;
    json_t *x;
    json_array_foreach(json_object_get(versions, "versions"), i, x)
    {
        if (json_integer_value(json_object_get(x, "terms_version")) == v)
            return json_object_get(x, "content");
    }
    return NULL;
}

static int cmd_versions(struct cli *c, const char *id)
{
    struct cli_resp r = CLI_RESP_INIT;
    int rc = get_versions(c, id, &r);
    if (rc || cli_print_raw_json(c, &r))
        goto out;
    const char *titles[] = {"VERSION", "TERMS HASH", "CREATED", "BY", "CURRENT"};
    struct cli_table t;
    cli_table_init(&t, 5, titles);
    size_t i;
    json_t *x;
    json_array_foreach(json_object_get(r.json, "versions"), i, x)
    {
        char v[32];
        snprintf(v, sizeof v, "%lld",
                 (long long)json_integer_value(json_object_get(x, "terms_version")));
        if (c->quiet) {
            printf("%s %s\n", v, cli_jstr(x, "terms_hash", ""));
            continue;
        }
        cli_table_add(&t, v, cli_jstr(x, "terms_hash", NULL), cli_jstr(x, "created_at", NULL),
                      cli_jstr(x, "created_by", NULL),
                      json_is_true(json_object_get(x, "current")) ? "yes" : "");
    }
    if (!c->quiet)
        cli_table_print(c, &t, stdout);
    cli_table_release(&t);
out:
    cli_resp_release(&r);
    return rc;
}

static int parse_version(struct cli *c, const char *s, long long *v)
{
    char *end;
    *v = strtoll(s, &end, 10);
    if (*end || *v < 1) {
        cli_errorf(c, "bad terms version \"%s\" (a number from dcms contracts versions)", s);
        return CLI_EXIT_USAGE;
    }
    return 0;
}

static int cmd_diff(struct cli *c, const char *id, const char *v1s, const char *v2s)
{
    long long v1, v2;
    int rc;
    if ((rc = parse_version(c, v1s, &v1)) || (rc = parse_version(c, v2s, &v2)))
        return rc;
    struct cli_resp r = CLI_RESP_INIT;
    if ((rc = get_versions(c, id, &r)))
        goto out;
    json_t *a = version_content(r.json, v1), *b = version_content(r.json, v2);
    if (!a || !b) {
        cli_errorf(c, "contract %s has no terms version %lld", id, a ? v2 : v1);
        rc = CLI_EXIT_USAGE;
        goto out;
    }
    size_t n = cli_json_diff(a, b, stdout, c->color);
    if (n == 0)
        cli_infof(c, "versions %lld and %lld have the same content", v1, v2);
out:
    cli_resp_release(&r);
    return rc;
}

static int cmd_verify(struct cli *c, const char *id)
{
    struct cli_resp r = CLI_RESP_INIT;
    int rc = cli_call_id(c, "GET", CONTRACTS, id, "/verify", NULL, &r);
    if (rc)
        goto out;
    bool valid = json_is_true(json_object_get(r.json, "valid"));
    if (!cli_print_raw_json(c, &r)) {
        json_t *h = json_object_get(r.json, "terms_hash");
        if (!c->quiet) {
            printf("contract %s (%s): %s\n", id, cli_jstr(r.json, "status", "?"),
                   valid ? "valid" : "NOT VALID");
            printf("terms hash %s: %s\n", cli_jstr(h, "stored", "?"),
                   json_is_true(json_object_get(h, "matches")) ? "matches the stored content"
                                                               : "does NOT match the content");
            size_t i;
            json_t *s;
            json_array_foreach(json_object_get(r.json, "signatures"), i, s)
            {
                printf("signature %s (%s, %s, version %lld, %s): %s%s\n", cli_jstr(s, "side", "?"),
                       cli_jstr(s, "type", "?"), cli_jstr(s, "signer_id", "?"),
                       (long long)json_integer_value(json_object_get(s, "terms_version")),
                       json_is_true(json_object_get(s, "voided")) ? "voided" : "live",
                       json_is_true(json_object_get(s, "valid")) ? "valid" : "NOT VALID",
                       json_is_string(json_object_get(s, "problem")) ? " - " : "");
                if (json_is_string(json_object_get(s, "problem")))
                    printf("  %s\n", cli_jstr(s, "problem", ""));
            }
        } else {
            printf("%s\n", valid ? "valid" : "invalid");
        }
    }
    if (!valid)
        rc = CLI_EXIT_REFUSED;
out:
    cli_resp_release(&r);
    return rc;
}

static int cmd_evidence(struct cli *c, const char *id, const char *out, bool verify,
                        const char *audit_key, const char *root)
{
    struct cli_resp r = CLI_RESP_INIT;
    char defname[128];
    int rc = cli_call_id(c, "GET", CONTRACTS, id, "/evidence", NULL, &r);
    if (rc)
        goto out;
    if (!out) {
        snprintf(defname, sizeof defname, "evidence-%.80s.json", id);
        out = defname;
    }
    FILE *f = strcmp(out, "-") == 0 ? stdout : fopen(out, "wb");
    if (!f || fwrite(r.body, 1, r.len, f) != r.len || (f != stdout && fclose(f) != 0)) {
        cli_errorf(c, "%s: cannot write", out);
        rc = CLI_EXIT_USAGE;
        goto out;
    }
    if (f != stdout)
        cli_infof(c, "evidence bundle written to %s (%zu bytes)", out, r.len);
    if (verify) {
        if (f == stdout) {
            cli_errorf(c, "--verify needs -o FILE");
            rc = CLI_EXIT_USAGE;
            goto out;
        }
        fflush(stdout);
        char *args[8];
        int n = 0;
        args[n++] = (char *)"evidence";
        args[n++] = (char *)"verify";
        args[n++] = (char *)out;
        if (audit_key) {
            args[n++] = (char *)"--audit-key";
            args[n++] = (char *)audit_key;
        }
        if (root) {
            args[n++] = (char *)"--attestation-root";
            args[n++] = (char *)root;
        }
        args[n] = NULL;
        rc = dcms_evidence_cli(n, args);
    }
out:
    cli_resp_release(&r);
    return rc;
}

/* sign: show, diff since my last signature, confirm, sign locally, submit. */
static int cmd_sign(struct cli *c, const char *id, bool mfa, const char *key_name, bool yes,
                    const char *side, const char *code_file)
{
    struct cli_resp k = CLI_RESP_INIT;
    struct cli_resp v = CLI_RESP_INIT;
    struct cli_resp s = CLI_RESP_INIT;
    unsigned char *sk = sodium_malloc(crypto_sign_SECRETKEYBYTES);
    unsigned char hash[32], computed[32], sig[crypto_sign_BYTES];
    char *key_id = NULL, *code = NULL, sig64[128];
    json_t *body = NULL;
    int rc;
    if (!sk)
        return CLI_EXIT_USAGE;
    if ((rc = cli_whoami_id(c)) || (rc = get_contract(c, id, &k)) || (rc = get_versions(c, id, &v)))
        goto out;
    const char *hex = cli_jstr(k.json, "terms_hash", "");
    long long tv = json_integer_value(json_object_get(k.json, "terms_version"));
    size_t hl = 0;
    if (strlen(hex) != 64 || sodium_hex2bin(hash, sizeof hash, hex, 64, NULL, &hl, NULL) ||
        hl != 32) {
        cli_errorf(c, "the contract's terms_hash is not 64 hex digits");
        rc = CLI_EXIT_REFUSED;
        goto out;
    }
    json_t *content = version_content(v.json, tv);
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    if (!content || dcms_jcs_sha256(content, computed, &ei) ||
        sodium_memcmp(computed, hash, sizeof hash) != 0) {
        cli_errorf(c,
                   "the terms hash %s is not the SHA-256 of the content of terms version %lld "
                   "the server shows: refusing to sign",
                   hex, tv);
        rc = CLI_EXIT_REFUSED;
        goto out;
    }
    /* The last version this identity signed (voided signatures included). */
    if ((rc = cli_call_id(c, "GET", CONTRACTS, id, "/verify", NULL, &s)))
        goto out;
    long long last = 0;
    size_t i;
    json_t *x;
    json_array_foreach(json_object_get(s.json, "signatures"), i, x)
    {
        long long xv = json_integer_value(json_object_get(x, "terms_version"));
        if (strcmp(cli_jstr(x, "signer_id", ""), c->identity_id) == 0 && xv > last)
            last = xv;
    }
    FILE *o = c->quiet || c->json ? stderr : stdout;
    fprintf(o, "Signing contract %s \"%s\" (%s)\n", id, cli_jstr(k.json, "title", ""),
            cli_jstr(k.json, "status", "?"));
    fprintf(o, "terms version %lld, SHA-256 %s (recomputed here from the content below)\n", tv,
            hex);
    if (last == tv) {
        fprintf(o, "You already signed this version.\n");
    } else if (last > 0) {
        fprintf(o, "Changes since version %lld, which you signed:\n", last);
        json_t *prev = version_content(v.json, last);
        if (!prev || cli_json_diff(prev, content, o, c->color) == 0)
            fprintf(o, "  (no change in the content)\n");
    } else {
        char *pretty = json_dumps(content, JSON_INDENT(2) | JSON_SORT_KEYS);
        fprintf(o, "You have not signed this contract before. The content:\n%s\n",
                pretty ? pretty : "?");
        free(pretty);
    }
    if (!yes && !cli_confirm(c, "Sign this version?")) {
        cli_errorf(c, "not signed");
        rc = CLI_EXIT_USAGE;
        goto out;
    }
    if ((rc = cli_key_for_signing(c, key_name, sk, &key_id)))
        goto out;
    crypto_sign_detached(sig, NULL, hash, sizeof hash, sk);
    /* Standard base64: the route takes both alphabets, but the evidence bundle decodes the
     * stored signature with the standard one only (contracts_evidence.c). */
    sodium_bin2base64(sig64, sizeof sig64, sig, sizeof sig, sodium_base64_VARIANT_ORIGINAL);
    body = json_pack("{s:s, s:s, s:s, s:s}", "type", mfa ? "mfa" : "digital", "terms_hash", hex,
                     "key_id", key_id, "signature", sig64);
    if (side)
        json_object_set_new(body, "side", json_string(side));
    if (mfa) {
        if (!(code = cli_read_secret(c, "TOTP code: ", code_file))) {
            rc = CLI_EXIT_USAGE;
            goto out;
        }
        json_object_set_new(body, "totp_code", json_string(code));
    }
    if ((rc = cli_call_id(c, "POST", CONTRACTS, id, "/sign", body, &s)))
        goto out;
    if (!cli_print_brief(c, &s, "status"))
        printf("signed terms version %lld of contract %s with key %s\n", tv, id, key_id);
out:
    if (body) {
        cli_json_wipe(json_object_get(body, "totp_code"));
        json_decref(body);
    }
    if (code)
        sodium_free(code);
    sodium_free(sk);
    free(key_id);
    cli_resp_release(&k);
    cli_resp_release(&v);
    cli_resp_release(&s);
    return rc;
}

int cli_cmd_contracts(struct cli *c, int argc, char **argv)
{
    if (argc < 1)
        return cli_usage("contracts", NULL, CLI_EXIT_USAGE);
    const char *sub = argv[0], *pos[3];
    const char *file = NULL, *title = NULL, *desc = NULL, *provider = NULL, *consumer = NULL;
    const char *reason = NULL, *key = NULL, *side = NULL, *status = NULL, *role = NULL;
    const char *limit = NULL, *cursor = NULL, *out = NULL, *audit_key = NULL, *root = NULL;
    const char *code_file = NULL;
    bool help = false, mfa = false, yes = false, verify = false;
    size_t npos;
    const struct cli_opt opts[] = {
        {"file", 'f', CLI_OPT_VALUE, NULL, &file, "FILE",
         "create/edit: a contract, or only its terms (JSON)"},
        {"title", 0, CLI_OPT_VALUE, NULL, &title, "TITLE", "create/edit: the title"},
        {"description", 0, CLI_OPT_VALUE, NULL, &desc, "TEXT", "create/edit: the description"},
        {"provider", 0, CLI_OPT_VALUE, NULL, &provider, "ID",
         "create: the provider's identity (default: you, when --consumer is given)"},
        {"consumer", 0, CLI_OPT_VALUE, NULL, &consumer, "ID",
         "create: the consumer's identity (default: you, when --provider is given)"},
        {"reason", 0, CLI_OPT_VALUE, NULL, &reason, "TEXT", "suspend/terminate: why (audited)"},
        {"mfa", 0, CLI_OPT_FLAG, &mfa, NULL, NULL, "sign: an mfa signature (asks for a TOTP code)"},
        {"code-file", 0, CLI_OPT_VALUE, NULL, &code_file, "FILE",
         "sign --mfa: read the TOTP code from FILE instead of the terminal"},
        {"key", 'k', CLI_OPT_VALUE, NULL, &key, "NAME",
         "sign: the local key (default: your newest registered one)"},
        {"side", 0, CLI_OPT_VALUE, NULL, &side, "SIDE", "sign: provider or consumer (if both)"},
        {"yes", 'y', CLI_OPT_FLAG, &yes, NULL, NULL, "sign: do not ask for confirmation"},
        {"status", 0, CLI_OPT_VALUE, NULL, &status, "STATUS", "list: only this status"},
        {"role", 0, CLI_OPT_VALUE, NULL, &role, "ROLE", "list: provider or consumer (your side)"},
        {"limit", 0, CLI_OPT_VALUE, NULL, &limit, "N", "list: page size"},
        {"cursor", 0, CLI_OPT_VALUE, NULL, &cursor, "C", "list: the next page"},
        {"output", 'o', CLI_OPT_VALUE, NULL, &out, "FILE",
         "evidence: where to write the bundle (default evidence-ID.json; - for stdout)"},
        {"verify", 0, CLI_OPT_FLAG, &verify, NULL, NULL,
         "evidence: verify the bundle offline (as dcmsd evidence verify)"},
        {"audit-key", 0, CLI_OPT_VALUE, NULL, &audit_key, "KEY",
         "evidence --verify: the audit public key you trust (base64)"},
        {"attestation-root", 0, CLI_OPT_VALUE, NULL, &root, "PEM",
         "evidence --verify: the attestation root you trust"},
        {0},
    };
    int rc = cli_args_parse_sub(argc, argv, opts, pos, 3, &npos, &help);
    if (rc || help) {
        FILE *f = rc ? stderr : stdout;
        if (strcmp(sub, "--help") != 0 && cli_subs_of("contracts") && *sub_usage(sub))
            fprintf(f, "usage: dcms contracts %s %s\n\n", sub, sub_usage(sub));
        else
            cli_print_subs(f, "contracts");
        fprintf(f, "options:\n");
        cli_args_help(f, opts);
        return rc;
    }
    if (strcmp(sub, "list") == 0 && npos == 0)
        return cmd_list(c, status, role, limit, cursor);
    if (strcmp(sub, "create") == 0 && npos == 0)
        return cmd_create(c, file, title, desc, provider, consumer);
    if (npos >= 1 && strcmp(sub, "show") == 0 && npos == 1) {
        struct cli_resp r = CLI_RESP_INIT;
        if ((rc = get_contract(c, pos[0], &r)) == 0 && !cli_print_brief(c, &r, "status"))
            print_contract(c, r.json);
        cli_resp_release(&r);
        return rc;
    }
    if (strcmp(sub, "edit") == 0 && npos == 1)
        return cmd_edit(c, pos[0], file, title, desc);
    if ((strcmp(sub, "submit") == 0 || strcmp(sub, "activate") == 0 ||
         strcmp(sub, "resume") == 0) &&
        npos == 1)
        return cmd_transition(c, sub, pos[0], reason);
    if ((strcmp(sub, "suspend") == 0 || strcmp(sub, "terminate") == 0) && npos == 1) {
        if (!reason && strcmp(sub, "terminate") == 0) {
            cli_errorf(c, "dcms contracts terminate needs --reason");
            return CLI_EXIT_USAGE;
        }
        return cmd_transition(c, sub, pos[0], reason);
    }
    if (strcmp(sub, "sign") == 0 && npos == 1)
        return cmd_sign(c, pos[0], mfa, key, yes, side, code_file);
    if (strcmp(sub, "versions") == 0 && npos == 1)
        return cmd_versions(c, pos[0]);
    if (strcmp(sub, "diff") == 0 && npos == 3)
        return cmd_diff(c, pos[0], pos[1], pos[2]);
    if (strcmp(sub, "verify") == 0 && npos == 1)
        return cmd_verify(c, pos[0]);
    if (strcmp(sub, "evidence") == 0 && npos == 1)
        return cmd_evidence(c, pos[0], out, verify, audit_key, root);
    if (*sub_usage(sub))
        fprintf(stderr, "usage: dcms contracts %s %s\n", sub, sub_usage(sub));
    else
        cli_print_subs(stderr, "contracts");
    return CLI_EXIT_USAGE;
}
