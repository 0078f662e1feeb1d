/*
 * The client's configuration file, $XDG_CONFIG_HOME/dcms/config: one
 * section per profile holding only the server URL and the refresh token.
 *
 *   # dcms client configuration (written by dcms; mode 0600)
 *   [profile default]
 *   server = http://127.0.0.1:8080
 *   refresh_token = ...
 *
 * The file is written atomically with mode 0600 in a 0700 directory, and
 * refresh tokens live in libsodium secure memory, wiped when freed.
 */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "dcms/banned.h"

#define CONFIG_MAX_BYTES (1024 * 1024)
#define VALUE_MAX 8192

bool cli_profile_name_ok(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > CLI_PROFILE_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

char *cli_config_dir(void)
{
    const char *xdg = getenv("XDG_CONFIG_HOME");
    const char *home = getenv("HOME");
    char *out = NULL;
    size_t n;
    if (xdg && xdg[0] == '/') {
        n = strlen(xdg) + sizeof "/dcms";
        if ((out = malloc(n)))
            snprintf(out, n, "%s/dcms", xdg);
    } else if (home && home[0]) {
        n = strlen(home) + sizeof "/.config/dcms";
        if ((out = malloc(n)))
            snprintf(out, n, "%s/.config/dcms", home);
    }
    return out;
}

int cli_mkdir_private(const char *dir)
{
    char *parent = strdup(dir);
    if (!parent)
        return -1;
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent) {
        *slash = '\0';
        if (mkdir(parent, 0700) != 0 && errno != EEXIST) {
            free(parent);
            return -1;
        }
    }
    free(parent);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return -1;
    return chmod(dir, 0700);
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        s[--n] = '\0';
    return s;
}

struct cli_profile *cli_config_profile(struct cli_config *cfg, const char *name, bool create)
{
    for (size_t i = 0; i < cfg->n; i++)
        if (strcmp(cfg->profiles[i].name, name) == 0)
            return &cfg->profiles[i];
    if (!create || !cli_profile_name_ok(name))
        return NULL;
    struct cli_profile *p = realloc(cfg->profiles, (cfg->n + 1) * sizeof *p);
    if (!p)
        return NULL;
    cfg->profiles = p;
    p = &cfg->profiles[cfg->n++];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    return p;
}

int cli_profile_set_token(struct cli_profile *p, const char *token)
{
    if (p->refresh_token)
        sodium_free(p->refresh_token);
    p->refresh_token = NULL;
    if (!token)
        return 0;
    size_t n = strlen(token);
    if (!(p->refresh_token = sodium_malloc(n + 1)))
        return -1;
    memcpy(p->refresh_token, token, n + 1);
    return 0;
}

int cli_profile_set_server(struct cli_profile *p, const char *server)
{
    char *s = server ? strdup(server) : NULL;
    if (server && !s)
        return -1;
    free(p->server);
    p->server = s;
    return 0;
}

void cli_config_release(struct cli_config *cfg)
{
    for (size_t i = 0; i < cfg->n; i++) {
        free(cfg->profiles[i].server);
        if (cfg->profiles[i].refresh_token)
            sodium_free(cfg->profiles[i].refresh_token);
    }
    free(cfg->profiles);
    cfg->profiles = NULL;
    cfg->n = 0;
}

int cli_config_read(const char *path, struct cli_config *cfg, char *err, size_t errlen)
{
    memset(cfg, 0, sizeof *cfg);
    char *text = NULL;
    size_t len = 0;
    int rc = -1;
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT)
            return 0;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (cli_read_file(path, CONFIG_MAX_BYTES, &text, &len, err, errlen))
        return -1;
    if (strlen(text) != len) {
        snprintf(err, errlen, "%s: contains a NUL byte", path);
        goto out;
    }
    struct cli_profile *cur = NULL;
    unsigned lineno = 0;
    for (char *line = text; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        lineno++;
        char *s = trim(line);
        line = nl ? nl + 1 : NULL;
        if (!*s || *s == '#')
            continue;
        if (*s == '[') {
            size_t n = strlen(s);
            if (n < 10 || strncmp(s, "[profile ", 9) != 0 || s[n - 1] != ']') {
                snprintf(err, errlen, "%s:%u: expected [profile NAME]", path, lineno);
                goto out;
            }
            s[n - 1] = '\0';
            char *name = trim(s + 9);
            if (!cli_profile_name_ok(name)) {
                snprintf(err, errlen, "%s:%u: bad profile name", path, lineno);
                goto out;
            }
            if (!(cur = cli_config_profile(cfg, name, true))) {
                snprintf(err, errlen, "out of memory");
                goto out;
            }
            continue;
        }
        char *eq = strchr(s, '=');
        if (!eq || !cur) {
            snprintf(err, errlen, "%s:%u: expected KEY = VALUE inside a [profile NAME] section",
                     path, lineno);
            goto out;
        }
        *eq = '\0';
        char *key = trim(s), *val = trim(eq + 1);
        if (strlen(val) > VALUE_MAX) {
            snprintf(err, errlen, "%s:%u: value too long", path, lineno);
            goto out;
        }
        int e;
        if (strcmp(key, "server") == 0)
            e = cli_profile_set_server(cur, val);
        else if (strcmp(key, "refresh_token") == 0)
            e = cli_profile_set_token(cur, val);
        else {
            snprintf(err, errlen, "%s:%u: unknown key \"%s\" (server, refresh_token)", path, lineno,
                     key);
            goto out;
        }
        if (e) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
    }
    rc = 0;
out:
    if (text) {
        sodium_memzero(text, len);
        free(text);
    }
    if (rc)
        cli_config_release(cfg);
    return rc;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int cli_config_write(const char *path, const struct cli_config *cfg, char *err, size_t errlen)
{
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    int fd = -1, rc = -1;
    if (!tmp) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    snprintf(tmp, plen + 16, "%s.tmp%ld", path, (long)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0 || fchmod(fd, 0600) != 0) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    const char *head = "# dcms client configuration (written by dcms; mode 0600)\n";
    if (write_all(fd, head, strlen(head)))
        goto io;
    for (size_t i = 0; i < cfg->n; i++) {
        const struct cli_profile *p = &cfg->profiles[i];
        char line[256];
        snprintf(line, sizeof line, "\n[profile %s]\n", p->name);
        if (write_all(fd, line, strlen(line)))
            goto io;
        if (p->server && (write_all(fd, "server = ", 9) ||
                          write_all(fd, p->server, strlen(p->server)) || write_all(fd, "\n", 1)))
            goto io;
        if (p->refresh_token &&
            (write_all(fd, "refresh_token = ", 16) ||
             write_all(fd, p->refresh_token, strlen(p->refresh_token)) || write_all(fd, "\n", 1)))
            goto io;
    }
    if (fsync(fd) != 0)
        goto io;
    if (close(fd) != 0) {
        fd = -1;
        goto io;
    }
    fd = -1;
    if (rename(tmp, path) != 0)
        goto io;
    rc = 0;
    goto out;
io:
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
out:
    if (fd >= 0)
        close(fd);
    if (rc)
        unlink(tmp);
    free(tmp);
    return rc;
}
