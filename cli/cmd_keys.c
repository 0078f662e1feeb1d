/*
 * dcms keys: Ed25519 signing keys generated and kept locally, in
 * $XDG_CONFIG_HOME/dcms/keys/PROFILE.NAME.key (mode 0600, directory 0700),
 * registered with the server by a proof of possession: the private key
 * signs "dcms-signing-key-pop:" || challenge || public_key (docs/iam.md).
 * The private key never leaves this machine.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "dcms/banned.h"

#define KEY_FILE_MAX 8192
#define B64URL sodium_base64_VARIANT_URLSAFE_NO_PADDING

static bool key_name_ok(const char *s)
{
    return cli_profile_name_ok(s) && strlen(s) <= 48;
}

static char *keys_dir(const struct cli *c)
{
    size_t n = strlen(c->config_dir) + sizeof "/keys";
    char *d = malloc(n);
    if (d)
        snprintf(d, n, "%s/keys", c->config_dir);
    return d;
}

static char *key_path(const struct cli *c, const char *name)
{
    char *d = keys_dir(c);
    if (!d)
        return NULL;
    size_t n = strlen(d) + strlen(c->profile) + strlen(name) + 8;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s.%s.key", d, c->profile, name);
    free(d);
    return p;
}

/* A local key file: JSON {name, public_key, secret_key, key_id, identity_id, server, status}. */
static json_t *key_read(const struct cli *c, const char *name)
{
    char *path = key_path(c, name), *text = NULL, err[512];
    size_t len;
    json_t *k = NULL;
    if (!path)
        return NULL;
    if (cli_read_file(path, KEY_FILE_MAX, &text, &len, err, sizeof err) == 0) {
        json_error_t je;
        k = json_loadb(text, len, 0, &je);
        sodium_memzero(text, len);
        free(text);
        if (!k)
            cli_errorf(c, "%s: not a key file (%s)", path, je.text);
    } else {
        cli_errorf(c, "%s", err);
    }
    free(path);
    return k;
}

static int key_write(struct cli *c, const char *name, json_t *k, bool create)
{
    char *dir = keys_dir(c), *path = key_path(c, name), *text = NULL;
    int rc = CLI_EXIT_USAGE, fd = -1;
    if (!dir || !path || cli_mkdir_private(c->config_dir) || cli_mkdir_private(dir)) {
        cli_errorf(c, "%s: %s", dir ? dir : "keys", strerror(errno));
        goto out;
    }
    if (!(text = json_dumps(k, JSON_INDENT(2) | JSON_SORT_KEYS)))
        goto out;
    fd =
        open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | (create ? O_EXCL : O_TRUNC), 0600);
    if (fd < 0) {
        cli_errorf(c, "%s: %s", path,
                   errno == EEXIST ? "a key of that name exists (pick another --name)"
                                   : strerror(errno));
        goto out;
    }
    size_t n = strlen(text);
    if (fchmod(fd, 0600) != 0 || write(fd, text, n) != (ssize_t)n || write(fd, "\n", 1) != 1 ||
        fsync(fd) != 0) {
        cli_errorf(c, "%s: %s", path, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    if (text) {
        sodium_memzero(text, strlen(text));
        free(text);
    }
    free(dir);
    free(path);
    return rc;
}

static void key_free(json_t *k)
{
    if (k) {
        cli_json_wipe(k);
        json_decref(k);
    }
}

/* Decodes base64url text into exactly `len` bytes. */
static int b64_exact(const char *s, unsigned char *out, size_t len)
{
    size_t n = 0;
    if (!s || sodium_base642bin(out, len, s, strlen(s), NULL, &n, NULL, B64URL) != 0 || n != len)
        return -1;
    return 0;
}

/* The 64-byte libsodium secret key of a key file (its 32-byte seed), into sk. */
static int key_secret(const struct cli *c, json_t *k, unsigned char *sk)
{
    unsigned char seed[crypto_sign_SEEDBYTES], pk[crypto_sign_PUBLICKEYBYTES];
    int rc = -1;
    if (b64_exact(cli_jstr(k, "secret_key", NULL), seed, sizeof seed) == 0) {
        crypto_sign_seed_keypair(pk, sk, seed);
        rc = 0;
    } else {
        cli_errorf(c, "key %s: bad secret_key", cli_jstr(k, "name", "?"));
    }
    sodium_memzero(seed, sizeof seed);
    return rc;
}

/* Lists the names of this profile's local key files, newest file first. */
static size_t local_names(const struct cli *c, char names[][64], time_t *mtimes, size_t max)
{
    char *dir = keys_dir(c);
    size_t n = 0, plen = strlen(c->profile);
    DIR *d = dir ? opendir(dir) : NULL;
    struct dirent *e;
    while (d && (e = readdir(d)) && n < max) {
        size_t l = strlen(e->d_name);
        if (l <= plen + 5 || strncmp(e->d_name, c->profile, plen) != 0 || e->d_name[plen] != '.' ||
            strcmp(e->d_name + l - 4, ".key") != 0 || l - plen - 5 >= 64)
            continue;
        snprintf(names[n], 64, "%.*s", (int)(l - plen - 5), e->d_name + plen + 1);
        struct stat st;
        char full[4096];
        snprintf(full, sizeof full, "%s/%s", dir, e->d_name);
        mtimes[n] = stat(full, &st) == 0 ? st.st_mtime : 0;
        n++;
    }
    if (d)
        closedir(d);
    free(dir);
    /* newest first (insertion sort: a handful of keys) */
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && mtimes[j] > mtimes[j - 1]; j--) {
            char t[64];
            memcpy(t, names[j], 64);
            memcpy(names[j], names[j - 1], 64);
            memcpy(names[j - 1], t, 64);
            time_t tm = mtimes[j];
            mtimes[j] = mtimes[j - 1];
            mtimes[j - 1] = tm;
        }
    return n;
}

int cli_key_for_signing(struct cli *c, const char *name, unsigned char *sk, char **key_id)
{
    char names[64][64];
    time_t mt[64];
    size_t n;
    int rc;
    if ((rc = cli_whoami_id(c)))
        return rc;
    if (name) {
        snprintf(names[0], sizeof names[0], "%s", name);
        n = 1;
    } else {
        n = local_names(c, names, mt, 64);
    }
    for (size_t i = 0; i < n; i++) {
        json_t *k = key_read(c, names[i]);
        if (!k)
            continue;
        const char *kid = cli_jstr(k, "key_id", NULL);
        bool usable = kid && strcmp(cli_jstr(k, "identity_id", ""), c->identity_id) == 0 &&
                      strcmp(cli_jstr(k, "status", "active"), "active") == 0;
        if (usable || (name && kid)) {
            rc = key_secret(c, k, sk) ? CLI_EXIT_USAGE : 0;
            if (rc == 0 && !(*key_id = strdup(kid)))
                rc = CLI_EXIT_USAGE;
            key_free(k);
            return rc;
        }
        key_free(k);
    }
    if (name)
        cli_errorf(c, "local key %s is not registered: dcms keys register %s", name, name);
    else
        cli_errorf(c, "no registered signing key of this identity here: dcms keys generate "
                      "--register");
    return CLI_EXIT_USAGE;
}

/* Makes a new local key file; *out_name gets its name. */
static int generate(struct cli *c, const char *name, char *out_name, size_t out_len)
{
    unsigned char *seed = sodium_malloc(crypto_sign_SEEDBYTES);
    unsigned char pk[crypto_sign_PUBLICKEYBYTES];
    unsigned char *sk = sodium_malloc(crypto_sign_SECRETKEYBYTES);
    char pk64[64], *seed64 = sodium_malloc(64);
    json_t *k = NULL;
    int rc = CLI_EXIT_USAGE;
    char gen[64];
    if (!seed || !sk || !seed64)
        goto out;
    if (!name) {
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(gen, sizeof gen, "key-%Y%m%dT%H%M%SZ", &tm);
        name = gen;
    }
    if (!key_name_ok(name)) {
        cli_errorf(c, "bad key name \"%s\" (letters, digits, . _ -; at most 48)", name);
        goto out;
    }
    randombytes_buf(seed, crypto_sign_SEEDBYTES);
    crypto_sign_seed_keypair(pk, sk, seed);
    sodium_bin2base64(pk64, sizeof pk64, pk, sizeof pk, B64URL);
    sodium_bin2base64(seed64, 64, seed, crypto_sign_SEEDBYTES, B64URL);
    k = json_pack("{s:s, s:s, s:s, s:n, s:n, s:s, s:s, s:s}", "name", name, "public_key", pk64,
                  "secret_key", seed64, "key_id", "identity_id", "server", c->server, "status",
                  "local", "algorithm", "Ed25519");
    if (!k)
        goto out;
    rc = key_write(c, name, k, true);
    if (rc == 0)
        snprintf(out_name, out_len, "%s", name);
out:
    key_free(k);
    if (seed)
        sodium_free(seed);
    if (sk)
        sodium_free(sk);
    if (seed64)
        sodium_free(seed64);
    return rc;
}

/*
 * Registers local key `name` (rotate_id NULL) or rotates rotate_id into it:
 * challenge, proof of possession, POST. Prints the new key id.
 */
static int register_key(struct cli *c, const char *name, const char *rotate_id)
{
    struct cli_resp r = CLI_RESP_INIT;
    json_t *k = NULL, *body = NULL;
    unsigned char *sk = sodium_malloc(crypto_sign_SECRETKEYBYTES);
    unsigned char pk[crypto_sign_PUBLICKEYBYTES], ch[32], sig[crypto_sign_BYTES];
    unsigned char *msg = NULL;
    char path[1024], sig64[128];
    int rc;
    if (!sk)
        return CLI_EXIT_USAGE;
    if ((rc = cli_whoami_id(c)))
        goto out;
    if (!(k = key_read(c, name))) {
        rc = CLI_EXIT_USAGE;
        goto out;
    }
    if (cli_jstr(k, "key_id", NULL)) {
        cli_errorf(c, "local key %s is already registered as %s", name, cli_jstr(k, "key_id", ""));
        rc = CLI_EXIT_USAGE;
        goto out;
    }
    const char *pk64 = cli_jstr(k, "public_key", NULL);
    if (b64_exact(pk64, pk, sizeof pk) || key_secret(c, k, sk)) {
        cli_errorf(c, "local key %s: bad public_key", name);
        rc = CLI_EXIT_USAGE;
        goto out;
    }
    char *me = cli_urlencode(c->identity_id);
    snprintf(path, sizeof path, "/api/v1/identities/%s/keys/challenge", me ? me : "");
    if ((rc = cli_call(c, "POST", path, NULL, &r)))
        goto out_me;
    const char *prefix = cli_jstr(r.json, "message_prefix", "dcms-signing-key-pop:");
    const char *cid = cli_jstr(r.json, "challenge_id", NULL);
    if (!cid || b64_exact(cli_jstr(r.json, "challenge", NULL), ch, sizeof ch)) {
        cli_errorf(c, "the challenge answer is not understood");
        rc = CLI_EXIT_REFUSED;
        goto out_me;
    }
    size_t plen = strlen(prefix), mlen = plen + sizeof ch + sizeof pk;
    if (!(msg = malloc(mlen))) {
        rc = CLI_EXIT_USAGE;
        goto out_me;
    }
    memcpy(msg, prefix, plen);
    memcpy(msg + plen, ch, sizeof ch);
    memcpy(msg + plen + sizeof ch, pk, sizeof pk);
    crypto_sign_detached(sig, NULL, msg, mlen, sk);
    sodium_bin2base64(sig64, sizeof sig64, sig, sizeof sig, B64URL);
    body = json_pack("{s:s, s:s, s:s, s:s}", "public_key", pk64, "challenge_id", cid, "signature",
                     sig64, "name", name);
    if (!body) {
        rc = CLI_EXIT_USAGE;
        goto out_me;
    }
    if (rotate_id) {
        char *kid = cli_urlencode(rotate_id);
        snprintf(path, sizeof path, "/api/v1/identities/%s/keys/%s/rotate", me ? me : "",
                 kid ? kid : "");
        free(kid);
    } else {
        snprintf(path, sizeof path, "/api/v1/identities/%s/keys", me ? me : "");
    }
    if ((rc = cli_call(c, "POST", path, body, &r))) {
        if (r.status == 403)
            fprintf(stderr, "  (registering a key needs a login of the last 10 minutes: dcms "
                            "login, then retry)\n");
        goto out_me;
    }
    const char *new_id = cli_jstr(r.json, "id", NULL);
    if (!new_id) {
        cli_errorf(c, "the registration answer has no key id");
        rc = CLI_EXIT_REFUSED;
        goto out_me;
    }
    json_object_set_new(k, "key_id", json_string(new_id));
    json_object_set_new(k, "identity_id", json_string(c->identity_id));
    json_object_set_new(k, "status", json_string("active"));
    if ((rc = key_write(c, name, k, false)))
        goto out_me;
    if (!cli_print_brief(c, &r, "id"))
        printf("%s key %s (local %s)\n", rotate_id ? "rotated to" : "registered", new_id, name);
out_me:
    free(me);
out:
    free(msg);
    key_free(k);
    json_decref(body);
    sodium_free(sk);
    cli_resp_release(&r);
    return rc;
}

/* Marks the local file holding `key_id` (if any) with `status`. */
static void mark_local(struct cli *c, const char *key_id, const char *status)
{
    char names[64][64];
    time_t mt[64];
    size_t n = local_names(c, names, mt, 64);
    for (size_t i = 0; i < n; i++) {
        json_t *k = key_read(c, names[i]);
        if (k && strcmp(cli_jstr(k, "key_id", ""), key_id) == 0) {
            json_object_set_new(k, "status", json_string(status));
            if (key_write(c, names[i], k, false) != 0)
                cli_errorf(c, "could not mark local key %s %s", names[i], status);
        }
        key_free(k);
    }
}

static int list(struct cli *c)
{
    struct cli_resp r = CLI_RESP_INIT;
    char path[512];
    int rc;
    if ((rc = cli_whoami_id(c)))
        return rc;
    char *me = cli_urlencode(c->identity_id);
    snprintf(path, sizeof path, "/api/v1/identities/%s/keys", me ? me : "");
    free(me);
    if ((rc = cli_call(c, "GET", path, NULL, &r)) || cli_print_raw_json(c, &r))
        goto out;
    char names[64][64];
    time_t mt[64];
    size_t n = local_names(c, names, mt, 64);
    char local_of[64][128];
    for (size_t i = 0; i < n; i++) {
        json_t *k = key_read(c, names[i]);
        snprintf(local_of[i], sizeof local_of[i], "%s", cli_jstr(k, "key_id", ""));
        key_free(k);
    }
    const char *titles[] = {"ID", "NAME", "STATUS", "CREATED", "LOCAL"};
    struct cli_table t;
    cli_table_init(&t, 5, titles);
    size_t i;
    json_t *key;
    json_array_foreach(json_object_get(r.json, "keys"), i, key)
    {
        const char *id = cli_jstr(key, "id", "");
        const char *local = NULL;
        for (size_t j = 0; j < n; j++)
            if (strcmp(local_of[j], id) == 0)
                local = names[j];
        if (c->quiet) {
            printf("%s\n", id);
            continue;
        }
        cli_table_add(&t, id, cli_jstr(key, "name", NULL), cli_jstr(key, "status", NULL),
                      cli_jstr(key, "created_at", NULL), local);
    }
    if (!c->quiet)
        cli_table_print(c, &t, stdout);
    cli_table_release(&t);
    /* Local keys not registered yet. */
    for (size_t j = 0; j < n && !c->quiet; j++)
        if (!local_of[j][0])
            printf("(local key %s is not registered: dcms keys register %s)\n", names[j], names[j]);
out:
    cli_resp_release(&r);
    return rc;
}

int cli_cmd_keys(struct cli *c, int argc, char **argv)
{
    if (argc < 1)
        return cli_usage("keys", NULL, CLI_EXIT_USAGE);
    const char *sub = argv[0], *name = NULL, *pos[2];
    bool help = false, reg = false;
    size_t npos;
    const struct cli_opt opts[] = {
        {"name", 'n', CLI_OPT_VALUE, NULL, &name, "NAME", "the local name of the new key"},
        {"register", 0, CLI_OPT_FLAG, &reg, NULL, NULL, "generate: register it at once"},
        {0},
    };
    int rc = cli_args_parse_sub(argc, argv, opts, pos, 2, &npos, &help);
    if (rc || help)
        return cli_usage("keys", opts, rc);
    char made[64];
    if (strcmp(sub, "generate") == 0 && npos == 0) {
        if ((rc = generate(c, name, made, sizeof made)))
            return rc;
        if (reg)
            return register_key(c, made, NULL);
        if (c->quiet)
            printf("%s\n", made);
        else
            printf("generated local key %s (register it: dcms keys register %s)\n", made, made);
        return 0;
    }
    if (strcmp(sub, "register") == 0 && npos <= 1) {
        const char *n = npos ? pos[0] : name;
        if (!n) {
            /* The newest local key that is not registered. */
            char names[64][64];
            time_t mt[64];
            size_t k = local_names(c, names, mt, 64);
            for (size_t i = 0; i < k && !n; i++) {
                json_t *kf = key_read(c, names[i]);
                if (kf && !cli_jstr(kf, "key_id", NULL)) {
                    snprintf(made, sizeof made, "%.63s", names[i]);
                    n = made;
                }
                key_free(kf);
            }
            if (!n) {
                cli_errorf(c, "no unregistered local key: dcms keys generate first");
                return CLI_EXIT_USAGE;
            }
        }
        return register_key(c, n, NULL);
    }
    if (strcmp(sub, "list") == 0 && npos == 0)
        return list(c);
    if (strcmp(sub, "rotate") == 0 && npos == 1) {
        if ((rc = generate(c, name, made, sizeof made)))
            return rc;
        if ((rc = register_key(c, made, pos[0])) == 0)
            mark_local(c, pos[0], "rotated");
        return rc;
    }
    if (strcmp(sub, "revoke") == 0 && npos == 1) {
        struct cli_resp r = CLI_RESP_INIT;
        char path[512];
        if ((rc = cli_whoami_id(c)))
            return rc;
        char *me = cli_urlencode(c->identity_id), *kid = cli_urlencode(pos[0]);
        snprintf(path, sizeof path, "/api/v1/identities/%s/keys/%s", me ? me : "", kid ? kid : "");
        free(me);
        free(kid);
        if ((rc = cli_call(c, "DELETE", path, NULL, &r)) == 0) {
            mark_local(c, pos[0], "revoked");
            cli_infof(c, "revoked key %s", pos[0]);
        }
        cli_resp_release(&r);
        return rc;
    }
    fprintf(stderr, "dcms keys: unknown subcommand or wrong arguments\n");
    return cli_usage("keys", NULL, CLI_EXIT_USAGE);
}
