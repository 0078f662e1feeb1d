/*
 * dcms datasets: describe (the schema may be inferred from the CSV file),
 * upload through tus 1.0 in chunks with a checksum each and a progress bar
 * on a terminal, list, show, delete.
 *
 * Resuming: before the first byte goes out, the upload's URL and the
 * file's size and SHA-256 are written to $XDG_CONFIG_HOME/dcms/uploads/
 * PROFILE.SHA256.json (0600), and the offset after every chunk. Running
 * the same `dcms datasets upload FILE` again after an interruption (the
 * link or the server went down) finds that file, asks the server where the
 * upload stands (HEAD) and sends the rest; the file is removed once the
 * dataset is complete.
 */
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

#define CHUNK_DEFAULT (1024 * 1024)
#define CHUNK_MAX (64 * 1024 * 1024)
#define SCHEMA_FILE_MAX (1024 * 1024)

/* The schema from --schema FILE, or inferred from csv with --label. */
static json_t *schema_for(struct cli *c, const char *schema_file, const char *csv,
                          const char *label)
{
    char err[512];
    if (schema_file)
        return cli_read_json_object(c, schema_file, SCHEMA_FILE_MAX);
    if (!csv || !label) {
        cli_errorf(c, "the schema: --schema FILE, or --label COLUMN to infer it from the CSV file");
        return NULL;
    }
    json_t *s = cli_infer_schema(csv, label, err, sizeof err);
    if (!s)
        cli_errorf(c, "%s", err);
    return s;
}

/* POST /datasets; with upload_length >= 0 also a tus creation. */
static int create_dataset(struct cli *c, const char *name, const char *desc, json_t *schema,
                          long long upload_length, const char *sha, struct cli_resp *r)
{
    json_t *body = json_pack("{s:s, s:O}", "name", name, "schema", schema);
    char len_hdr[64];
    const char *hdrs[] = {"Tus-Resumable: 1.0.0", len_hdr, NULL};
    int rc;
    if (!body)
        return CLI_EXIT_USAGE;
    if (desc)
        json_object_set_new(body, "description", json_string(desc));
    if (sha)
        json_object_set_new(body, "expected_sha256", json_string(sha));
    snprintf(len_hdr, sizeof len_hdr, "Upload-Length: %lld", upload_length);
    rc = cli_request(c, "POST", "/api/v1/datasets", body, NULL, upload_length >= 0 ? hdrs : NULL,
                     true, r);
    json_decref(body);
    if (rc == 0 && r->status != 201) {
        cli_print_error(c, r);
        rc = CLI_EXIT_REFUSED;
    }
    return rc;
}

/* ---- the upload state kept between runs ---- */

static char *state_path(const struct cli *c, const char *sha)
{
    size_t n = strlen(c->config_dir) + strlen(c->profile) + strlen(sha) + 32;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/uploads/%s.%s.json", c->config_dir, c->profile, sha);
    return p;
}

static json_t *state_read(const struct cli *c, const char *sha)
{
    char *p = state_path(c, sha), *text = NULL, err[256];
    size_t len;
    json_t *s = NULL;
    if (p && access(p, F_OK) == 0 && cli_read_file(p, 65536, &text, &len, err, sizeof err) == 0) {
        s = json_loadb(text, len, 0, NULL);
        free(text);
    }
    free(p);
    return s;
}

static int state_write(struct cli *c, const char *sha, json_t *s)
{
    size_t n = strlen(c->config_dir) + sizeof "/uploads";
    char *dir = malloc(n), *p = state_path(c, sha), *tmp = NULL;
    int rc = -1;
    if (!dir || !p)
        goto out;
    snprintf(dir, n, "%s/uploads", c->config_dir);
    if (cli_mkdir_private(c->config_dir) || cli_mkdir_private(dir))
        goto out;
    size_t tn = strlen(p) + 8;
    if (!(tmp = malloc(tn)))
        goto out;
    snprintf(tmp, tn, "%s.tmp", p);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        goto out;
    char *text = json_dumps(s, JSON_COMPACT | JSON_SORT_KEYS);
    size_t tl = text ? strlen(text) : 0;
    bool ok = text && write(fd, text, tl) == (ssize_t)tl && fsync(fd) == 0;
    free(text);
    if (close(fd) != 0 || !ok || rename(tmp, p) != 0) {
        unlink(tmp);
        goto out;
    }
    rc = 0;
out:
    if (rc)
        cli_errorf(c, "cannot keep the upload state in %s: %s", dir ? dir : "?", strerror(errno));
    free(dir);
    free(p);
    free(tmp);
    return rc;
}

static void state_remove(const struct cli *c, const char *sha)
{
    char *p = state_path(c, sha);
    if (p)
        unlink(p);
    free(p);
}

/* ---- progress ---- */

struct progress {
    const struct cli *c;
    bool on;
    long long total, base, start_offset;
    double t0, last_draw;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void human_bytes(double b, char *out, size_t n)
{
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (b >= 1024 && i < 4) {
        b /= 1024;
        i++;
    }
    snprintf(out, n, i ? "%.1f %s" : "%.0f %s", b, u[i]);
}

static void draw(struct progress *p, long long done, bool final)
{
    double t = now_s();
    if (!p->on || (!final && t - p->last_draw < 0.1))
        return;
    p->last_draw = t;
    double el = t - p->t0, rate = el > 0 ? (double)(done - p->start_offset) / el : 0;
    int pct = p->total > 0 ? (int)(100.0 * (double)done / (double)p->total) : 100;
    char d[32], tot[32], r[32], eta[32] = "--";
    human_bytes((double)done, d, sizeof d);
    human_bytes((double)p->total, tot, sizeof tot);
    human_bytes(rate, r, sizeof r);
    if (rate > 0 && done < p->total) {
        long s = (long)((double)(p->total - done) / rate);
        snprintf(eta, sizeof eta, "%ldm%02lds", s / 60, s % 60);
    } else if (done >= p->total) {
        snprintf(eta, sizeof eta, "done");
    }
    char bar[31];
    int fill = pct * 30 / 100;
    for (int i = 0; i < 30; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[30] = '\0';
    fprintf(stderr, "\r[%s] %3d%%  %s / %s  %s/s  ETA %s\033[K", bar, pct, d, tot, r, eta);
    if (final)
        fputc('\n', stderr);
    fflush(stderr);
}

static int on_sent(void *ud, long long sent_now)
{
    struct progress *p = ud;
    draw(p, p->base + sent_now, false);
    return 0;
}

/* ---- upload ---- */

static int file_sha256(const char *path, char hex[65], long long *size, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: %s", path, fd < 0 ? strerror(errno) : "not a regular file");
        if (fd >= 0)
            close(fd);
        return -1;
    }
    crypto_hash_sha256_state s;
    crypto_hash_sha256_init(&s);
    unsigned char buf[65536], out[32];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        crypto_hash_sha256_update(&s, buf, (unsigned long long)n);
    close(fd);
    if (n < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    crypto_hash_sha256_final(&s, out);
    sodium_bin2hex(hex, 65, out, sizeof out);
    *size = (long long)st.st_size;
    return 0;
}

/* The path part of a Location (absolute or not). */
static char *location_path(const char *loc)
{
    if (strncmp(loc, "http://", 7) == 0 || strncmp(loc, "https://", 8) == 0) {
        const char *p = strchr(loc + 8, '/');
        return strdup(p ? p : "/");
    }
    return strdup(loc);
}

static void print_dataset(const struct cli *c, json_t *d)
{
    char size[32] = "-";
    json_t *len = json_object_get(d, "upload_length");
    if (json_is_integer(len))
        human_bytes((double)json_integer_value(len), size, sizeof size);
    printf("id        %s\nname      %s\nstatus    %s\nsize      %s (received %lld bytes)\n"
           "rows      %lld\nsha256    %s\nprovider  %s\nupdated   %s\n",
           cli_jstr(d, "id", "-"), cli_jstr(d, "name", "-"), cli_jstr(d, "status", "-"), size,
           (long long)json_integer_value(json_object_get(d, "upload_offset")),
           (long long)json_integer_value(json_object_get(d, "rows")), cli_jstr(d, "sha256", "-"),
           cli_jstr(d, "provider_id", "-"), cli_jstr(d, "updated_at", "-"));
    json_t *rep = json_object_get(d, "report");
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(rep, "problems"), i, p)
    {
        json_t *line = json_object_get(p, "line");
        if (json_is_integer(line))
            printf("problem   line %lld: %s\n", (long long)json_integer_value(line),
                   cli_jstr(p, "problem", "?"));
        else
            printf("problem   %s\n", cli_jstr(p, "problem", "?"));
    }
}

struct upload_opts {
    const char *file, *dataset, *name, *desc, *label, *schema;
    long long chunk;
};

static int upload(struct cli *c, const struct upload_opts *o)
{
    char sha[65], err[512];
    long long size;
    json_t *state = NULL, *schema = NULL;
    struct cli_resp r = CLI_RESP_INIT;
    char *url = NULL, *chunk = NULL, *id = NULL;
    int fd = -1, rc;
    struct progress pr = {.c = c};
    if (file_sha256(o->file, sha, &size, err, sizeof err)) {
        cli_errorf(c, "%s", err);
        return CLI_EXIT_USAGE;
    }
    state = state_read(c, sha);
    if (state && (strcmp(cli_jstr(state, "server", ""), c->server) != 0 ||
                  (o->dataset && strcmp(cli_jstr(state, "dataset_id", ""), o->dataset) != 0))) {
        json_decref(state);
        state = NULL;
    }
    if (state) {
        id = strdup(cli_jstr(state, "dataset_id", ""));
        url = strdup(cli_jstr(state, "url", ""));
        if (!c->quiet)
            fprintf(stderr, "resuming the upload of %s into dataset %s\n", o->file, id);
    } else if (o->dataset) {
        id = strdup(o->dataset);
        url = cli_path("/api/v1/datasets/", o->dataset, "/content");
    } else {
        if (!o->name) {
            cli_errorf(c, "a new dataset needs --name (or upload into one with --dataset ID)");
            rc = CLI_EXIT_USAGE;
            goto out;
        }
        if (!(schema = schema_for(c, o->schema, o->file, o->label))) {
            rc = CLI_EXIT_USAGE;
            goto out;
        }
        if ((rc = create_dataset(c, o->name, o->desc, schema, size, sha, &r)))
            goto out;
        id = strdup(cli_jstr(r.json, "id", ""));
        url =
            r.location ? location_path(r.location) : cli_path("/api/v1/datasets/", id, "/content");
    }
    if (!id || !url || !*id) {
        rc = CLI_EXIT_USAGE;
        goto out;
    }
    if (!state) {
        state = json_pack("{s:s, s:s, s:s, s:s, s:I, s:s}", "dataset_id", id, "url", url, "server",
                          c->server, "sha256", sha, "size", (json_int_t)size, "file", o->file);
        if (!state || state_write(c, sha, state)) {
            rc = CLI_EXIT_USAGE;
            goto out;
        }
    }
    if ((fd = open(o->file, O_RDONLY | O_CLOEXEC)) < 0) {
        cli_errorf(c, "%s: %s", o->file, strerror(errno));
        rc = CLI_EXIT_USAGE;
        goto out;
    }
    if (!(chunk = malloc((size_t)o->chunk))) {
        rc = CLI_EXIT_USAGE;
        goto out;
    }
    const char *tus[] = {"Tus-Resumable: 1.0.0", NULL};
    /* Where the upload stands. */
    if ((rc = cli_request(c, "HEAD", url, NULL, NULL, tus, true, &r)))
        goto interrupted;
    if (r.status != 200 || r.upload_offset < 0) {
        if (r.status == 404)
            state_remove(c, sha);
        cli_errorf(c, "dataset %s: the server answered %ld to HEAD %s", id, r.status, url);
        rc = CLI_EXIT_REFUSED;
        goto out;
    }
    long long off = r.upload_offset;
    if (r.upload_length >= 0 && r.upload_length != size) {
        cli_errorf(c, "dataset %s expects %lld bytes, %s has %lld", id, r.upload_length, o->file,
                   size);
        rc = CLI_EXIT_USAGE;
        goto out;
    }
    pr.on = isatty(STDERR_FILENO) && !c->quiet && !c->json;
    pr.total = size;
    pr.start_offset = off;
    pr.t0 = now_s();
    cli_progress_hook = on_sent;
    cli_progress_ud = &pr;
    int conflicts = 0;
    while (off < size || (size == 0 && off == 0 && r.upload_length < 0)) {
        size_t n = (size_t)(size - off < o->chunk ? size - off : o->chunk);
        ssize_t got = pread(fd, chunk, n, (off_t)off);
        if (got != (ssize_t)n) {
            cli_errorf(c, "%s: short read (the file changed?)", o->file);
            rc = CLI_EXIT_USAGE;
            goto out;
        }
        unsigned char digest[32];
        char b64[64], off_h[64], ck_h[96], len_h[64];
        crypto_hash_sha256(digest, (const unsigned char *)chunk, n);
        sodium_bin2base64(b64, sizeof b64, digest, sizeof digest, sodium_base64_VARIANT_ORIGINAL);
        snprintf(off_h, sizeof off_h, "Upload-Offset: %lld", off);
        snprintf(ck_h, sizeof ck_h, "Upload-Checksum: sha256 %s", b64);
        snprintf(len_h, sizeof len_h, "Upload-Length: %lld", size);
        const char *hdrs[] = {"Tus-Resumable: 1.0.0", off_h, ck_h, len_h, NULL};
        struct cli_body body = {chunk, n, "application/offset+octet-stream"};
        pr.base = off;
        if ((rc = cli_request(c, "PATCH", url, NULL, &body, hdrs, true, &r)))
            goto interrupted;
        if (r.status == 409 && conflicts++ < 3) {
            /* Someone (an earlier run) moved the offset: ask again. */
            if ((rc = cli_request(c, "HEAD", url, NULL, NULL, tus, true, &r)))
                goto interrupted;
            if (r.upload_offset >= 0) {
                off = r.upload_offset;
                continue;
            }
        }
        if (r.status != 204 || r.upload_offset < 0) {
            if (pr.on)
                fputc('\n', stderr);
            cli_print_error(c, &r);
            if (r.status == 409 &&
                strstr(cli_jstr(json_object_get(r.json, "error"), "message", ""), "in progress"))
                fprintf(stderr,
                        "  (a request cut short by a server crash holds the dataset until "
                        "its lease lapses, 20 seconds by default "
                        "(DCMS_DATASET_WRITER_LEASE_S); run the same command again then)\n");
            rc = CLI_EXIT_REFUSED;
            goto out;
        }
        off = r.upload_offset;
        json_object_set_new(state, "offset", json_integer(off));
        if (state_write(c, sha, state)) {
            rc = CLI_EXIT_USAGE;
            goto out;
        }
        draw(&pr, off, false);
        if (size == 0)
            break;
    }
    draw(&pr, off, true);
    cli_progress_hook = NULL;
    /* Complete: the server hashed and validated it. */
    if ((rc = cli_call_id(c, "GET", "/api/v1/datasets/", id, "", NULL, &r)))
        goto out;
    state_remove(c, sha);
    const char *status = cli_jstr(r.json, "status", "?");
    const char *got_sha = cli_jstr(r.json, "sha256", "");
    if (!cli_print_raw_json(c, &r)) {
        if (c->quiet)
            printf("%s\n", id);
        else
            print_dataset(c, r.json);
    }
    if (strcmp(status, "ready") != 0) {
        cli_errorf(c, "dataset %s is %s", id, status);
        rc = CLI_EXIT_REFUSED;
    } else if (strcmp(got_sha, sha) != 0) {
        cli_errorf(c, "the server's SHA-256 %s is not the file's %s", got_sha, sha);
        rc = CLI_EXIT_REFUSED;
    }
    goto out;
interrupted:
    if (pr.on)
        fputc('\n', stderr);
    if (rc == CLI_EXIT_UNREACHABLE)
        fprintf(stderr,
                "upload of %s interrupted; run the same command again to resume (dataset %s)\n",
                o->file, id);
out:
    cli_progress_hook = NULL;
    if (fd >= 0)
        close(fd);
    free(chunk);
    free(url);
    free(id);
    json_decref(state);
    json_decref(schema);
    cli_resp_release(&r);
    return rc;
}

static int list(struct cli *c, const char *limit, const char *cursor)
{
    char path[512] = "/api/v1/datasets?";
    if (cli_query_add(path, sizeof path, "limit", limit) ||
        cli_query_add(path, sizeof path, "cursor", cursor)) {
        cli_errorf(c, "arguments too long");
        return CLI_EXIT_USAGE;
    }
    struct cli_resp r = CLI_RESP_INIT;
    int rc = cli_call(c, "GET", path, NULL, &r);
    if (rc || cli_print_raw_json(c, &r))
        goto out;
    const char *titles[] = {"ID", "NAME", "STATUS", "SIZE", "ROWS", "SHA256", "UPDATED"};
    struct cli_table t;
    cli_table_init(&t, 7, titles);
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(r.json, "datasets"), i, d)
    {
        if (c->quiet) {
            printf("%s\n", cli_jstr(d, "id", ""));
            continue;
        }
        char size[32] = "-", rows[32] = "-", sh[20] = "-";
        json_t *len = json_object_get(d, "upload_length");
        if (json_is_integer(len))
            human_bytes((double)json_integer_value(len), size, sizeof size);
        if (json_is_integer(json_object_get(d, "rows")))
            snprintf(rows, sizeof rows, "%lld",
                     (long long)json_integer_value(json_object_get(d, "rows")));
        if (json_is_string(json_object_get(d, "sha256")))
            snprintf(sh, sizeof sh, "%.12s...", cli_jstr(d, "sha256", ""));
        cli_table_add(&t, cli_jstr(d, "id", NULL), cli_jstr(d, "name", NULL),
                      cli_jstr(d, "status", NULL), size, rows, sh, cli_jstr(d, "updated_at", NULL));
    }
    cli_table_finish(c, &t, r.json);
out:
    cli_resp_release(&r);
    return rc;
}

int cli_cmd_datasets(struct cli *c, int argc, char **argv)
{
    if (argc < 1)
        return cli_usage("datasets", NULL, CLI_EXIT_USAGE);
    const char *sub = argv[0], *pos[2];
    const char *name = NULL, *desc = NULL, *label = NULL, *schema = NULL, *from_csv = NULL;
    const char *dataset = NULL, *chunk_s = NULL, *rate_s = NULL, *limit = NULL, *cursor = NULL;
    bool help = false;
    size_t npos;
    const struct cli_opt opts[] = {
        {"name", 'n', CLI_OPT_VALUE, NULL, &name, "NAME", "create/upload: the new dataset's name"},
        {"description", 0, CLI_OPT_VALUE, NULL, &desc, "TEXT", "create/upload: its description"},
        {"label", 'l', CLI_OPT_VALUE, NULL, &label, "COLUMN",
         "create/upload: the label column (the schema is inferred from the CSV file)"},
        {"schema", 0, CLI_OPT_VALUE, NULL, &schema, "FILE",
         "create/upload: the schema as JSON ({columns, label, label_values})"},
        {"from-csv", 0, CLI_OPT_VALUE, NULL, &from_csv, "FILE",
         "create: infer the schema from this CSV file"},
        {"dataset", 'd', CLI_OPT_VALUE, NULL, &dataset, "ID", "upload: into this existing dataset"},
        {"chunk-size", 0, CLI_OPT_VALUE, NULL, &chunk_s, "BYTES",
         "upload: bytes per request (default 1 MiB)"},
        {"max-rate", 0, CLI_OPT_VALUE, NULL, &rate_s, "BYTES",
         "upload: at most this many bytes per second"},
        {"limit", 0, CLI_OPT_VALUE, NULL, &limit, "N", "list: page size"},
        {"cursor", 0, CLI_OPT_VALUE, NULL, &cursor, "C", "list: the next page"},
        {0},
    };
    int rc = cli_args_parse_sub(argc, argv, opts, pos, 2, &npos, &help);
    if (rc || help)
        return cli_usage("datasets", opts, rc);
    struct cli_resp r = CLI_RESP_INIT;
    if (strcmp(sub, "create") == 0 && npos == 0) {
        if (!name) {
            cli_errorf(c, "dcms datasets create needs --name");
            return CLI_EXIT_USAGE;
        }
        json_t *s = schema_for(c, schema, from_csv, label);
        if (!s)
            return CLI_EXIT_USAGE;
        rc = create_dataset(c, name, desc, s, -1, NULL, &r);
        json_decref(s);
        if (rc == 0 && !cli_print_brief(c, &r, "id"))
            printf("created dataset %s (upload it: dcms datasets upload FILE --dataset %s)\n",
                   cli_jstr(r.json, "id", "?"), cli_jstr(r.json, "id", "?"));
        cli_resp_release(&r);
        return rc;
    }
    if (strcmp(sub, "upload") == 0 && npos == 1) {
        struct upload_opts o = {pos[0], dataset, name, desc, label, schema, CHUNK_DEFAULT};
        char *end;
        if (chunk_s) {
            o.chunk = strtoll(chunk_s, &end, 10);
            if (*end || o.chunk < 1024 || o.chunk > CHUNK_MAX) {
                cli_errorf(c, "--chunk-size: a number of bytes from 1024 to %d", CHUNK_MAX);
                return CLI_EXIT_USAGE;
            }
        }
        if (rate_s) {
            c->max_rate = strtoll(rate_s, &end, 10);
            if (*end || c->max_rate < 1) {
                cli_errorf(c, "--max-rate: a positive number of bytes per second");
                return CLI_EXIT_USAGE;
            }
        }
        return upload(c, &o);
    }
    if (strcmp(sub, "list") == 0 && npos == 0)
        return list(c, limit, cursor);
    if ((strcmp(sub, "show") == 0 || strcmp(sub, "delete") == 0) && npos == 1) {
        bool del = strcmp(sub, "delete") == 0;
        rc = cli_call_id(c, del ? "DELETE" : "GET", "/api/v1/datasets/", pos[0], "", NULL, &r);
        if (rc == 0 && del)
            cli_infof(c, "deleted dataset %s (its data key is destroyed)", pos[0]);
        else if (rc == 0 && !cli_print_brief(c, &r, "status"))
            print_dataset(c, r.json);
        cli_resp_release(&r);
        return rc;
    }
    fprintf(stderr, "dcms datasets: unknown subcommand or wrong arguments\n");
    return cli_usage("datasets", NULL, CLI_EXIT_USAGE);
}
