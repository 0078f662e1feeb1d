/*
 * dcms, the command-line client: shared declarations.
 *
 * The client is a thin layer over the HTTP API (docs/cli.md): it keeps a
 * profile (server URL and refresh token) in $XDG_CONFIG_HOME/dcms/config,
 * Ed25519 signing keys beside it, and the state of unfinished uploads, and
 * turns each subcommand into one or a few API calls. Exit statuses are
 * CLI_EXIT_*; nothing here is thread-safe (the client is single-threaded).
 */
#ifndef DCMS_CLI_H
#define DCMS_CLI_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Exit statuses (docs/cli.md, "Exit status"). */
enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_REFUSED = 1,     /* the server refused, a check failed, or not logged in */
    CLI_EXIT_USAGE = 2,       /* bad arguments, unreadable input file */
    CLI_EXIT_UNREACHABLE = 3, /* no answer from the server */
};

/* ---- argument parsing (args.c) ---- */

enum cli_opt_kind { CLI_OPT_FLAG, CLI_OPT_VALUE };

/*
 * One option of a command: `--name` (and `-c` when `short_name` is not 0).
 * A flag sets *flag to true; a value option stores a pointer into argv in
 * *value (`--name V` or `--name=V`); the last occurrence wins.
 */
struct cli_opt {
    const char *name;
    char short_name;
    enum cli_opt_kind kind;
    bool *flag;
    const char **value;
    const char *arg_name; /* for help: "FILE" */
    const char *help;
};

/*
 * Parses argv[0..argc) against `opts` (terminated by a zero entry); the
 * arguments that are not options go to pos[] (at most max_pos, in order)
 * and their number to *npos. "--" ends the options. Returns 0, or
 * CLI_EXIT_USAGE after printing what is wrong to stderr (an unknown option,
 * a missing value, too many arguments). `--help` / `-h` sets *help.
 */
int cli_args_parse(int argc, char **argv, const struct cli_opt *opts, const char **pos,
                   size_t max_pos, size_t *npos, bool *help);

/*
 * Whether argv[i] is one of `opts` (the global options, taken anywhere on
 * the line): stores it and returns how many arguments it took (1 or 2), 0
 * when it is not one of them, -1 when its value is missing.
 */
int cli_args_take(int argc, char **argv, int i, const struct cli_opt *opts);

/*
 * cli_args_parse for a command group's argv: argv[0] is the subcommand
 * (`--help` / `-h` there sets *help too), the options and arguments follow.
 */
int cli_args_parse_sub(int argc, char **argv, const struct cli_opt *opts, const char **pos,
                       size_t max_pos, size_t *npos, bool *help);

/* Prints the options of `opts` as help lines to f. */
void cli_args_help(FILE *f, const struct cli_opt *opts);

/* ---- configuration (config.c) ---- */

#define CLI_PROFILE_MAX 64

struct cli_profile {
    char name[CLI_PROFILE_MAX + 1];
    char *server;        /* malloc'd or NULL */
    char *refresh_token; /* sodium_malloc'd or NULL; wiped on free */
};

struct cli_config {
    struct cli_profile *profiles;
    size_t n;
};

/* Whether `name` is a usable profile name: 1-64 of [A-Za-z0-9._-]. */
bool cli_profile_name_ok(const char *name);

/*
 * The configuration directory: $XDG_CONFIG_HOME/dcms, else $HOME/.config/dcms.
 * Returns a malloc'd path or NULL (neither variable set).
 */
char *cli_config_dir(void);

/*
 * Creates `dir` (and its parent) with mode 0700 if missing, and makes an
 * existing one 0700. Returns 0 or -1 (errno set).
 */
int cli_mkdir_private(const char *dir);

/*
 * Reads the configuration file `path` into *cfg (empty when the file does
 * not exist). Lines: "[profile NAME]", "server = URL", "refresh_token = T",
 * blank lines and "#" comments. Returns 0, or -1 with a message in err
 * (a malformed line names its number). Release with cli_config_release.
 */
int cli_config_read(const char *path, struct cli_config *cfg, char *err, size_t errlen);

/*
 * Writes *cfg to `path` atomically (a temporary file created 0600, fsync,
 * rename). Returns 0 or -1 with a message in err.
 */
int cli_config_write(const char *path, const struct cli_config *cfg, char *err, size_t errlen);

/* The profile `name`, created empty when absent (NULL when out of memory). */
struct cli_profile *cli_config_profile(struct cli_config *cfg, const char *name, bool create);

/* Replaces a profile's refresh token (copied into secure memory; NULL clears it). */
int cli_profile_set_token(struct cli_profile *p, const char *token);
int cli_profile_set_server(struct cli_profile *p, const char *server);

void cli_config_release(struct cli_config *cfg);

/* ---- the session: options, HTTP, authentication (http.c) ---- */

struct cli {
    const char *profile;
    const char *server_opt; /* --server or DCMS_SERVER; NULL: the profile's */
    char *server;           /* resolved, malloc'd, without a trailing slash */
    char *config_dir;
    char *config_path;
    bool json, quiet, color, color_err, no_color;
    char *access_token; /* sodium_malloc'd after a refresh or login */
    char *identity_id;  /* from /auth/me, malloc'd */
    long long max_rate; /* bytes per second for uploads; 0: unlimited */
};

struct cli_resp {
    long status;
    char *body; /* NUL-terminated */
    size_t len;
    json_t *json; /* parsed body when it is JSON, else NULL */
    char *location, *etag;
    long long upload_offset, upload_length; /* -1 when absent */
    bool timed_out;                         /* a stream's timeout_ms ran out (cli_stream) */
};

/* An empty response (the header counters "absent"). */
#define CLI_RESP_INIT                                                                              \
    {                                                                                              \
        .upload_offset = -1, .upload_length = -1                                                   \
    }

void cli_resp_release(struct cli_resp *r);

struct cli_body {
    const char *data; /* raw body (with content_type) or NULL */
    size_t len;
    const char *content_type;
};

/*
 * One request to `path` (relative to the server, "/api/v1/..."), with the
 * access token when `auth` (refreshing it first when needed, and once more
 * on a 401). `json_body` (borrowed) is sent as JSON; else `raw` when not
 * NULL. `headers` are extra "Name: value" lines (NULL-terminated, may be
 * NULL). Returns CLI_EXIT_OK with *r filled for any HTTP answer, or
 * CLI_EXIT_UNREACHABLE / CLI_EXIT_REFUSED (not logged in) after printing why.
 */
int cli_request(struct cli *c, const char *method, const char *path, json_t *json_body,
                const struct cli_body *raw, const char *const *headers, bool auth,
                struct cli_resp *r);

/*
 * cli_request with auth that also treats a non-2xx answer as a refusal:
 * prints the server's error and returns CLI_EXIT_REFUSED.
 */
int cli_call(struct cli *c, const char *method, const char *path, json_t *json_body,
             struct cli_resp *r);

/*
 * cli_call on base + the percent-encoded id + tail (cli_path): the one
 * shape of most commands, `GET /api/v1/contracts/{id}/versions`.
 */
int cli_call_id(struct cli *c, const char *method, const char *base, const char *id,
                const char *tail, json_t *json_body, struct cli_resp *r);

/*
 * Where a streamed answer goes: a 2xx body is handed to write() as it
 * arrives (a short count aborts the transfer); any other status is kept in
 * the cli_resp as usual, for cli_print_error.
 */
struct cli_stream {
    size_t (*write)(void *ud, const char *p, size_t n);
    void *ud;
    long timeout_ms; /* > 0: the whole response within this; else r->timed_out, rc 0 */
};

/*
 * cli_request with auth (GET, no body) whose 2xx body goes to `stream`
 * instead of memory (downloads, the event stream). Returns as cli_call:
 * a non-2xx answer is printed and gives CLI_EXIT_REFUSED.
 */
int cli_call_stream(struct cli *c, const char *path, const char *const *headers,
                    const struct cli_stream *stream, struct cli_resp *r);

/* Prints the server's error body (message, code, every field path) to stderr. */
void cli_print_error(struct cli *c, const struct cli_resp *r);

/* Ensures c->access_token (refreshing with the profile's token). */
int cli_authenticate(struct cli *c);

/* Ensures c->identity_id (GET /auth/me). */
int cli_whoami_id(struct cli *c);

/* Loads the config, finds the profile; the caller saves with cli_save_token. */
int cli_load_config(struct cli *c, struct cli_config *cfg);
int cli_save_config(struct cli *c, struct cli_config *cfg);

void cli_release(struct cli *c);

/* Called while a request body goes out (uploads); non-zero aborts the transfer. */
extern int (*cli_progress_hook)(void *ud, long long sent_now);
extern void *cli_progress_ud;

/* Percent-encodes s for a path segment or query value (malloc'd). */
char *cli_urlencode(const char *s);

/* base + the percent-encoded id + tail (malloc'd): cli_path("/api/v1/contracts/", id, "/sign"). */
char *cli_path(const char *base, const char *id, const char *tail);

/* ---- output (out.c) ---- */

/* "error: ..." on stderr, red on a terminal. */
void cli_errorf(const struct cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A line on stdout unless --quiet. */
void cli_infof(const struct cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A simple table: column titles, then rows of strings (NULL shows "-"). */
struct cli_table {
    size_t ncols, nrows, cap;
    const char **titles;
    char **cells; /* nrows * ncols, malloc'd strings */
};
void cli_table_init(struct cli_table *t, size_t ncols, const char **titles);
void cli_table_add(struct cli_table *t, ...); /* ncols const char * values */
void cli_table_print(const struct cli *c, struct cli_table *t, FILE *f);
void cli_table_release(struct cli_table *t);

/*
 * Prints a list page's table (unless --quiet) and, when the page has a
 * next_cursor, how to get the next one; then releases the table.
 */
void cli_table_finish(const struct cli *c, struct cli_table *t, json_t *page);

/*
 * Appends "name=value" (value percent-encoded; "?" or "&" before it) to the
 * path being built in q; nothing when value is NULL. -1 when q is too small
 * (q is then unchanged).
 */
int cli_query_add(char *q, size_t cap, const char *name, const char *value);

/*
 * The short answers of a command that made or changed something: --json
 * prints the API's JSON, --quiet the member `key` of it (an id, a status).
 * Returns true when it printed, false when the caller prints for people.
 */
bool cli_print_brief(const struct cli *c, const struct cli_resp *r, const char *key);

/* A JSON member as text for a table cell: strings as is, null as "-", others encoded. */
char *cli_json_text(json_t *v);
/* Prints the response as the API gave it (--json) and returns true, else false. */
bool cli_print_raw_json(const struct cli *c, const struct cli_resp *r);

/* Wipes every string of a JSON tree in place (before json_decref of secrets). */
void cli_json_wipe(json_t *v);

/*
 * Reads a JSON object from `file` ("-": stdin; at most max_bytes; duplicate
 * keys refused). NULL after printing why (the line of a syntax error).
 */
json_t *cli_read_json_object(const struct cli *c, const char *file, size_t max_bytes);

/* Reads a whole file (at most max_bytes) into a malloc'd NUL-terminated buffer. */
int cli_read_file(const char *path, size_t max_bytes, char **out, size_t *len, char *err,
                  size_t errlen);

/*
 * Reads a secret line: from `file` when not NULL (the first line), else
 * from the terminal without echo after printing `prompt`, else (no
 * terminal) one line from stdin. Returns a sodium_malloc'd string
 * (sodium_free it) or NULL after printing why.
 */
char *cli_read_secret(const struct cli *c, const char *prompt, const char *file);
/* Asks for one line (echoed) on the terminal; malloc'd, or NULL without a terminal or an answer. */
char *cli_prompt_line(const char *prompt);
/* Asks "question [y/N]" on the terminal; false without one. */
bool cli_confirm(const struct cli *c, const char *question);

/* s, or d when s is NULL. */
static inline const char *cli_or(const char *s, const char *d)
{
    return s ? s : d;
}
/* A string member of a JSON object, or d. */
static inline const char *cli_jstr(json_t *o, const char *key, const char *d)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : d;
}

/*
 * Prints what differs between two JSON documents as "- path = old" /
 * "+ path = new" lines (green and red when color); returns the number of
 * differing paths.
 */
size_t cli_json_diff(json_t *a, json_t *b, FILE *out, bool color);

/* ---- local signing keys (cmd_keys.c) ---- */

/*
 * Loads the signing key to use for this profile: the local key `name`, or
 * (name NULL) the newest registered, active local key of the identity
 * logged in. sk (64 bytes, libsodium secret key) should be secure memory;
 * *key_id is malloc'd. Returns 0 or an exit status after printing why.
 */
int cli_key_for_signing(struct cli *c, const char *name, unsigned char *sk, char **key_id);

/*
 * Infers a dataset schema from a CSV file with a header row: integer,
 * number, category (at most 50 distinct values) or text per column; the
 * label column's distinct values become label_values. NULL with a message
 * in err when the file cannot be read or the label does not fit.
 */
json_t *cli_infer_schema(const char *path, const char *label, char *err, size_t errlen);

/* ---- training requests and the event stream (train_req.c, sse.c: no HTTP) ---- */

/* The options of `dcms train start`, as typed (NULL: not given). */
struct cli_train_opts {
    const char *datasets; /* ID[,ID...] */
    const char *label, *model, *hidden, *optimizer, *momentum, *epochs, *batch_size;
    const char *learning_rate, *l2, *seed, *split, *dtype;
    const char *dp_epsilon, *dp_noise, *dp_max_grad_norm;
};

/*
 * The body of POST /contracts/{id}/trainings (docs/training.md): `base`
 * (borrowed; the object of -f FILE, or NULL) with the options set over it;
 * the datasets are --datasets, else base's, else `scope` (the contract's
 * terms.data_access.datasets; borrowed, may be NULL). Numbers must be
 * numbers ("--epochs: an integer"), --hidden is "16,8", --split is
 * "modulo:FOLDS:HOLDOUT" or "random:FRACTION[:SEED]"; the values themselves
 * are the server's to judge (it names the field). Returns 0 with *out
 * (new reference), or CLI_EXIT_USAGE with a message in err.
 */
int cli_train_body(const struct cli_train_opts *o, json_t *base, json_t *scope, json_t **out,
                   char *err, size_t errlen);

/* Whether the body needs the contract's scope (no --datasets, none in base). */
bool cli_train_needs_scope(const struct cli_train_opts *o, json_t *base);

/*
 * A Server-Sent Events parser (the WHATWG rules: LF, CRLF or CR line ends,
 * "field: value", comments, data lines joined by LF, dispatch on a blank
 * line) fed as bytes arrive. `last_id` keeps the last id: field seen (for
 * Last-Event-ID on a reconnection), `retry_ms` the last retry: (-1 none);
 * on_event may read `id` (the event's own id:, "" when it has none).
 */
typedef int (*cli_sse_event_fn)(void *ud, const char *event, const char *data);

struct cli_sse {
    cli_sse_event_fn on_event;
    void *ud;
    char *line, *data;
    size_t line_len, data_len;
    bool have_data, after_cr;
    char event[64];
    char id[64];      /* the id: of the event being dispatched ("" when it has none) */
    char last_id[64]; /* the last id: of the stream, kept across events */
    long retry_ms;
    int rc; /* the first non-zero of on_event, or -1 for a line too long */
};

void cli_sse_init(struct cli_sse *s, cli_sse_event_fn on_event, void *ud);
/* Feeds bytes; returns s->rc (0 to go on). Lines and data are capped at 1 MiB. */
int cli_sse_feed(struct cli_sse *s, const char *p, size_t n);
void cli_sse_release(struct cli_sse *s);

/* ---- commands ---- */

typedef int (*cli_cmd_fn)(struct cli *c, int argc, char **argv);

struct cli_command {
    const char *name;
    cli_cmd_fn run;
    const char *summary;
};

int cli_cmd_login(struct cli *c, int argc, char **argv);
int cli_cmd_logout(struct cli *c, int argc, char **argv);
int cli_cmd_whoami(struct cli *c, int argc, char **argv);
int cli_cmd_keys(struct cli *c, int argc, char **argv);
int cli_cmd_contracts(struct cli *c, int argc, char **argv);
int cli_cmd_datasets(struct cli *c, int argc, char **argv);
int cli_cmd_train(struct cli *c, int argc, char **argv);
int cli_cmd_enclaves(struct cli *c, int argc, char **argv);
int cli_cmd_audit(struct cli *c, int argc, char **argv);
int cli_cmd_attestation(struct cli *c, int argc, char **argv);
int cli_cmd_completion(struct cli *c, int argc, char **argv);

/* The top-level commands and, per command, its subcommands (for help and completion). */
extern const struct cli_command cli_commands[];

struct cli_sub {
    const char *name;
    const char *usage; /* arguments after the name */
    const char *summary;
};
/* The subcommands of a top-level command (terminated by a zero entry), or NULL. */
const struct cli_sub *cli_subs_of(const char *command);
/* Prints "usage: dcms CMD SUB ..." and the subcommand list. */
void cli_print_subs(FILE *f, const char *command);
/*
 * The help of a command group: its subcommands and (opts not NULL) its
 * options, on stdout when rc is 0, else on stderr. Returns rc.
 */
int cli_usage(const char *command, const struct cli_opt *opts, int rc);

/* Global options accepted before the command (main.c). */
extern const struct cli_opt cli_global_opts_help[];

#endif
