/*
 * Output and input for dcms: error lines (red on a terminal), tables for
 * people, the API's JSON unchanged for scripts, files, secrets read from
 * the terminal without echo, and yes/no questions.
 */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "cli.h"
#include "dcms/banned.h"

#define SECRET_MAX 4096

void cli_errorf(const struct cli *c, const char *fmt, ...)
{
    va_list ap;
    fputs(c && c->color_err ? "\033[31merror:\033[0m " : "error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void cli_infof(const struct cli *c, const char *fmt, ...)
{
    if (c->quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
}

void cli_table_init(struct cli_table *t, size_t ncols, const char **titles)
{
    memset(t, 0, sizeof *t);
    t->ncols = ncols;
    t->titles = titles;
}

void cli_table_add(struct cli_table *t, ...)
{
    if (t->nrows == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        char **cells = realloc(t->cells, cap * t->ncols * sizeof *cells);
        if (!cells)
            return;
        t->cells = cells;
        t->cap = cap;
    }
    va_list ap;
    va_start(ap, t);
    for (size_t i = 0; i < t->ncols; i++) {
        const char *v = va_arg(ap, const char *);
        t->cells[t->nrows * t->ncols + i] = strdup(v && *v ? v : "-");
    }
    va_end(ap);
    t->nrows++;
}

/* Display width of UTF-8 text: code points (good enough for tables of ids and names). */
static size_t width(const char *s)
{
    size_t w = 0;
    for (; s && *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            w++;
    return w;
}

void cli_table_print(const struct cli *c, struct cli_table *t, FILE *f)
{
    size_t w[32] = {0};
    size_t nc = t->ncols < 32 ? t->ncols : 32;
    for (size_t j = 0; j < nc; j++)
        w[j] = width(t->titles[j]);
    for (size_t i = 0; i < t->nrows; i++)
        for (size_t j = 0; j < nc; j++) {
            size_t x = width(t->cells[i * t->ncols + j]);
            if (x > w[j])
                w[j] = x;
        }
    for (size_t j = 0; j < nc; j++) {
        fprintf(f, "%s%s%s", c->color ? "\033[1m" : "", t->titles[j], c->color ? "\033[0m" : "");
        if (j + 1 < nc)
            fprintf(f, "%*s", (int)(w[j] - width(t->titles[j]) + 2), "");
    }
    fputc('\n', f);
    for (size_t i = 0; i < t->nrows; i++) {
        for (size_t j = 0; j < nc; j++) {
            const char *s = t->cells[i * t->ncols + j];
            fputs(s ? s : "?", f);
            if (j + 1 < nc)
                fprintf(f, "%*s", (int)(w[j] - width(s) + 2), "");
        }
        fputc('\n', f);
    }
}

void cli_table_release(struct cli_table *t)
{
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    memset(t, 0, sizeof *t);
}

void cli_table_finish(const struct cli *c, struct cli_table *t, json_t *page)
{
    if (!c->quiet) {
        cli_table_print(c, t, stdout);
        if (json_is_string(json_object_get(page, "next_cursor")))
            printf("(more: --cursor %s)\n", cli_jstr(page, "next_cursor", ""));
    }
    cli_table_release(t);
}

bool cli_print_brief(const struct cli *c, const struct cli_resp *r, const char *key)
{
    if (cli_print_raw_json(c, r))
        return true;
    if (!c->quiet)
        return false;
    printf("%s\n", cli_jstr(r->json, key, ""));
    return true;
}

char *cli_json_text(json_t *v)
{
    if (!v || json_is_null(v))
        return strdup("-");
    if (json_is_string(v))
        return strdup(json_string_value(v));
    return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

bool cli_print_raw_json(const struct cli *c, const struct cli_resp *r)
{
    if (!c->json)
        return false;
    if (r->body && r->len) {
        fwrite(r->body, 1, r->len, stdout);
        if (r->body[r->len - 1] != '\n')
            fputc('\n', stdout);
    }
    return true;
}

json_t *cli_read_json_object(const struct cli *c, const char *file, size_t max_bytes)
{
    char *text = NULL, err[512];
    size_t len;
    json_error_t je;
    if (cli_read_file(file, max_bytes, &text, &len, err, sizeof err)) {
        cli_errorf(c, "%s", err);
        return NULL;
    }
    json_t *v = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    free(text);
    if (!json_is_object(v)) {
        cli_errorf(c, "%s:%d: %s", file, je.line, v ? "not a JSON object" : je.text);
        json_decref(v);
        return NULL;
    }
    return v;
}

int cli_read_file(const char *path, size_t max_bytes, char **out, size_t *len, char *err,
                  size_t errlen)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0, cap = 0;
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    for (;;) {
        if (cap - n < 4096) {
            size_t ncap = cap ? cap * 2 : 8192;
            char *b = malloc(ncap + 1);
            if (!b) {
                snprintf(err, errlen, "out of memory");
                goto fail;
            }
            if (buf) {
                memcpy(b, buf, n);
                sodium_memzero(buf, cap);
                free(buf);
            }
            buf = b;
            cap = ncap;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (n > max_bytes) {
            snprintf(err, errlen, "%s: larger than %zu bytes", path, max_bytes);
            goto fail;
        }
        if (r == 0) {
            if (ferror(f)) {
                snprintf(err, errlen, "%s: %s", path, strerror(errno));
                goto fail;
            }
            break;
        }
    }
    buf[n] = '\0';
    if (f != stdin)
        fclose(f);
    *out = buf;
    *len = n;
    return 0;
fail:
    if (buf) {
        sodium_memzero(buf, cap);
        free(buf);
    }
    if (f != stdin)
        fclose(f);
    return -1;
}

/* Reads one line from fd into a secure buffer, without the newline. */
static char *read_line_fd(int fd)
{
    char *s = sodium_malloc(SECRET_MAX + 1);
    size_t n = 0;
    if (!s)
        return NULL;
    for (;;) {
        char ch;
        ssize_t r = read(fd, &ch, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || ch == '\n')
            break;
        if (n < SECRET_MAX)
            s[n++] = ch;
    }
    while (n > 0 && s[n - 1] == '\r')
        n--;
    s[n] = '\0';
    return s;
}

char *cli_read_secret(const struct cli *c, const char *prompt, const char *file)
{
    char *s = NULL;
    if (file) {
        int fd = open(file, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            cli_errorf(c, "%s: %s", file, strerror(errno));
            return NULL;
        }
        s = read_line_fd(fd);
        close(fd);
    } else {
        int tty = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
        if (tty >= 0) {
            struct termios old, quiet;
            bool restore = tcgetattr(tty, &old) == 0;
            if (restore) {
                quiet = old;
                quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
                quiet.c_lflag |= ICANON;
                tcsetattr(tty, TCSAFLUSH, &quiet);
            }
            if (write(tty, prompt, strlen(prompt)) < 0) {
                /* the prompt is a courtesy; the read below still works */
            }
            s = read_line_fd(tty);
            if (restore)
                tcsetattr(tty, TCSAFLUSH, &old);
            if (write(tty, "\n", 1) < 0) {
                /* as above */
            }
            close(tty);
        } else {
            s = read_line_fd(STDIN_FILENO);
        }
    }
    if (!s) {
        cli_errorf(c, "out of memory");
        return NULL;
    }
    if (!*s) {
        sodium_free(s);
        cli_errorf(c, "%s: empty", file ? file : "the input");
        return NULL;
    }
    return s;
}

char *cli_prompt_line(const char *prompt)
{
    int tty = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
    if (tty < 0)
        return NULL;
    char *line = NULL;
    if (write(tty, prompt, strlen(prompt)) >= 0) {
        char *s = read_line_fd(tty);
        if (s && *s)
            line = strdup(s);
        if (s)
            sodium_free(s);
    }
    close(tty);
    return line;
}

bool cli_confirm(const struct cli *c, const char *question)
{
    int tty = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
    if (tty < 0) {
        cli_errorf(c, "no terminal to confirm on: pass --yes to confirm");
        return false;
    }
    char q[512];
    snprintf(q, sizeof q, "%s [y/N] ", question);
    bool yes = false;
    if (write(tty, q, strlen(q)) >= 0) {
        char buf[16] = {0};
        ssize_t r = read(tty, buf, sizeof buf - 1);
        yes = r > 0 && (buf[0] == 'y' || buf[0] == 'Y');
    }
    close(tty);
    return yes;
}

void cli_json_wipe(json_t *v)
{
    const char *k;
    json_t *x;
    size_t i;
    if (json_is_string(v))
        sodium_memzero((char *)json_string_value(v), json_string_length(v));
    else if (json_is_object(v))
        json_object_foreach(v, k, x) cli_json_wipe(x);
    else if (json_is_array(v))
        json_array_foreach(v, i, x) cli_json_wipe(x);
}
