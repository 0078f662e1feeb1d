/*
 * dcms train: start a training job under an active contract (the body
 * built from options by train_req.c), follow it through its Server-Sent
 * Events (sse.c; the stream stays open until the job ends with an `end`
 * event, and a cut stream is resumed with Last-Event-ID), list, show
 * and cancel jobs, and download the model: streamed into a temporary file
 * beside the target while its SHA-256 is computed, compared with the
 * job's result.model_sha256, then put in place (link(2) when the target
 * must not be overwritten, so a file that appears meanwhile is kept).
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

#define BODY_FILE_MAX (1024 * 1024)
#define RETRY_MAX_MS 5000

static const char *const TRAININGS = "/api/v1/trainings/";

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* A number member as text with `digits` decimals ("-" when absent or null). */
static void num_text(json_t *o, const char *key, int digits, char *out, size_t n)
{
    json_t *v = json_object_get(o, key);
    if (json_is_number(v))
        snprintf(out, n, "%.*f", digits, json_number_value(v));
    else
        snprintf(out, n, "-");
}

/* ---- start ---- */

static int watch(struct cli *c, const char *id, double timeout_s, bool print_state);

static int cmd_start(struct cli *c, const char *contract, const struct cli_train_opts *o,
                     const char *file, bool follow, double timeout_s)
{
    json_t *base = NULL, *body = NULL;
    struct cli_resp r = CLI_RESP_INIT;
    char err[512];
    int rc = 0;
    if (file && !(base = cli_read_json_object(c, file, BODY_FILE_MAX)))
        return CLI_EXIT_USAGE;
    if (cli_train_needs_scope(o, base)) {
        /* The default datasets: all the contract's scope. */
        if ((rc = cli_call_id(c, "GET", "/api/v1/contracts/", contract, "", NULL, &r)))
            goto out;
    }
    json_t *scope = json_object_get(
        json_object_get(json_object_get(r.json, "terms"), "data_access"), "datasets");
    if ((rc = cli_train_body(o, base, scope, &body, err, sizeof err))) {
        cli_errorf(c, "%s", err);
        goto out;
    }
    if ((rc = cli_call_id(c, "POST", "/api/v1/contracts/", contract, "/trainings", body, &r)))
        goto out;
    const char *id = cli_jstr(r.json, "id", "");
    if (!cli_print_brief(c, &r, "id"))
        printf("started training %s under contract %s (%s; follow it: dcms train watch %s)\n", id,
               contract, cli_jstr(r.json, "state", "?"), id);
    if (follow) {
        char *job = strdup(id);
        fflush(stdout);
        rc = job ? watch(c, job, timeout_s, false) : CLI_EXIT_USAGE;
        free(job);
    }
out:
    json_decref(base);
    json_decref(body);
    cli_resp_release(&r);
    return rc;
}

/* ---- watch ---- */

struct watcher {
    struct cli *c;
    struct cli_sse sse;
    bool live;        /* a progress line redrawn in place (a terminal) */
    bool line_open;   /* the live line is on screen */
    bool ended;       /* an `end` event came */
    size_t events;    /* in this response */
    long long epochs; /* of the request, for "epoch 12/100" */
    char state[32];
    json_t *progress;
};

static void progress_text(const struct watcher *w, char *out, size_t n)
{
    char loss[32], acc[32];
    json_t *p = w->progress;
    num_text(p, "loss", 4, loss, sizeof loss);
    num_text(p, "val_accuracy", 4, acc, sizeof acc);
    snprintf(out, n, "epoch %lld/%lld  loss %s  val_accuracy %s",
             (long long)json_integer_value(json_object_get(p, "epoch")), w->epochs, loss, acc);
}

static void show(struct watcher *w, bool state_changed)
{
    struct cli *c = w->c;
    char prog[160] = "";
    if (c->quiet || c->json)
        return;
    if (w->progress)
        progress_text(w, prog, sizeof prog);
    if (w->live) {
        printf("\r%s%-10s%s  %s\033[K", c->color ? "\033[1m" : "", w->state,
               c->color ? "\033[0m" : "", prog);
        w->line_open = true;
    } else if (state_changed) {
        printf("state %s\n", w->state);
    } else {
        printf("%s\n", prog);
    }
    fflush(stdout);
}

static int on_event(void *ud, const char *event, const char *data)
{
    struct watcher *w = ud;
    json_t *d = json_loads(data, 0, NULL);
    w->events++;
    if (w->c->json) {
        json_t *line = json_pack("{s:s, s:s*, s:O?}", "event", event, "id",
                                 w->sse.id[0] ? w->sse.id : NULL, "data", d);
        char *text = line ? json_dumps(line, JSON_COMPACT) : NULL;
        if (text)
            printf("%s\n", text);
        free(text);
        json_decref(line);
        fflush(stdout);
    }
    if (strcmp(event, "state") == 0 || strcmp(event, "end") == 0) {
        const char *s = cli_jstr(d, "state", "?");
        bool changed = strcmp(s, w->state) != 0;
        snprintf(w->state, sizeof w->state, "%s", s);
        if (strcmp(event, "end") == 0)
            w->ended = true;
        else if (changed)
            show(w, true);
    } else if (strcmp(event, "progress") == 0 && json_is_object(d)) {
        json_decref(w->progress);
        w->progress = json_incref(d);
        show(w, false);
    }
    json_decref(d);
    return 0;
}

static size_t sse_write(void *ud, const char *p, size_t n)
{
    struct watcher *w = ud;
    if (cli_sse_feed(&w->sse, p, n)) {
        cli_errorf(w->c, "the event stream is malformed (a line longer than 1 MiB)");
        return 0;
    }
    return n;
}

/* After the job ended: what it became, from the job itself (reason, metrics). */
static int summary(struct cli *c, const char *id, bool print_state)
{
    struct cli_resp r = CLI_RESP_INIT;
    int rc = cli_call_id(c, "GET", TRAININGS, id, "", NULL, &r);
    if (rc)
        goto out;
    const char *state = cli_jstr(r.json, "state", "?");
    json_t *res = json_object_get(r.json, "result");
    json_t *m = json_object_get(res, "metrics");
    if (strcmp(state, "succeeded") != 0) {
        cli_errorf(c, "training %s %s: %s (%s)", id, state, cli_jstr(r.json, "reason", "-"),
                   cli_jstr(r.json, "reason_code", "-"));
        rc = CLI_EXIT_REFUSED;
    } else if (!c->quiet && !c->json) {
        char acc[32];
        num_text(m, "accuracy", 4, acc, sizeof acc);
        printf("training %s succeeded: accuracy %s on %lld held-out rows; model %lld bytes, "
               "SHA-256 %s\n",
               id, acc, (long long)json_integer_value(json_object_get(m, "rows")),
               (long long)json_integer_value(json_object_get(res, "model_size")),
               cli_jstr(res, "model_sha256", "-"));
    }
    if (c->quiet && print_state)
        printf("%s\n", state);
out:
    cli_resp_release(&r);
    return rc;
}

static int watch(struct cli *c, const char *id, double timeout_s, bool print_state)
{
    struct watcher w = {.c = c, .epochs = 100};
    struct cli_resp r = CLI_RESP_INIT;
    struct cli_stream stream = {sse_write, &w, 0};
    char *path = cli_path(TRAININGS, id, "/events"), hdr[96];
    double t0 = now_s();
    int rc;
    cli_sse_init(&w.sse, on_event, &w);
    w.live = isatty(STDOUT_FILENO) && !c->quiet && !c->json;
    if (!path) {
        rc = CLI_EXIT_USAGE;
        goto out;
    }
    /* The job first: it exists and may be read, and how many epochs it has. */
    if ((rc = cli_call_id(c, "GET", TRAININGS, id, "", NULL, &r)))
        goto out;
    json_t *epochs = json_object_get(json_object_get(r.json, "request"), "epochs");
    if (json_is_integer(epochs))
        w.epochs = (long long)json_integer_value(epochs);
    for (;;) {
        const char *hdrs[] = {"Accept: text/event-stream", w.sse.last_id[0] ? hdr : NULL, NULL};
        snprintf(hdr, sizeof hdr, "Last-Event-ID: %s", w.sse.last_id);
        w.events = 0;
        /* Each response is a stream of its own: a half line does not carry over. */
        cli_sse_release(&w.sse);
        w.sse.have_data = w.sse.after_cr = false;
        w.sse.event[0] = w.sse.id[0] = '\0';
        if (timeout_s > 0) {
            /* the stream is held open: the deadline must cut it, not wait for its end */
            double left = timeout_s - (now_s() - t0);
            stream.timeout_ms = left > 0.001 ? (long)(left * 1000) : 1;
        }
        r.timed_out = false;
        if ((rc = cli_call_stream(c, path, hdrs, &stream, &r)))
            goto out;
        if (w.ended)
            break;
        if (timeout_s > 0 && (r.timed_out || now_s() - t0 > timeout_s)) {
            if (w.line_open)
                putchar('\n');
            w.line_open = false;
            cli_errorf(c, "training %s is still %s after %.0f seconds", id, w.state, timeout_s);
            rc = CLI_EXIT_REFUSED;
            goto out;
        }
        /* Nothing new: wait as the server says (bounded); else ask again at once. */
        if (w.events == 0) {
            long ms = w.sse.retry_ms >= 0 ? w.sse.retry_ms : 1000;
            sleep_ms(ms > RETRY_MAX_MS ? RETRY_MAX_MS : ms < 100 ? 100 : ms);
        }
    }
    if (w.line_open)
        putchar('\n');
    w.line_open = false;
    fflush(stdout);
    rc = summary(c, id, print_state);
out:
    if (w.line_open)
        putchar('\n');
    cli_sse_release(&w.sse);
    json_decref(w.progress);
    free(path);
    cli_resp_release(&r);
    return rc;
}

/* ---- list, show, cancel ---- */

static void table_add_job(struct cli_table *t, json_t *j)
{
    char epoch[48] = "-", acc[32] = "-";
    json_t *p = json_object_get(j, "progress");
    json_t *e = json_object_get(json_object_get(j, "request"), "epochs");
    if (json_is_integer(json_object_get(p, "epoch")))
        snprintf(epoch, sizeof epoch, "%lld/%lld",
                 (long long)json_integer_value(json_object_get(p, "epoch")),
                 json_is_integer(e) ? (long long)json_integer_value(e) : 100LL);
    num_text(json_object_get(json_object_get(j, "result"), "metrics"), "accuracy", 4, acc,
             sizeof acc);
    cli_table_add(t, cli_jstr(j, "id", NULL), cli_jstr(j, "state", NULL),
                  cli_jstr(j, "model", NULL), epoch, acc, cli_jstr(j, "reason_code", NULL),
                  cli_jstr(j, "created_at", NULL));
}

static int cmd_list(struct cli *c, const char *contract, const char *limit, const char *cursor,
                    bool all)
{
    struct cli_resp r = CLI_RESP_INIT;
    const char *titles[] = {"ID", "STATE", "MODEL", "EPOCH", "ACCURACY", "REASON", "CREATED"};
    struct cli_table t;
    json_t *every = json_array();
    char *base = cli_path("/api/v1/contracts/", contract, "/trainings?");
    char *next = NULL;
    int rc = 0;
    cli_table_init(&t, 7, titles);
    if (!base || !every) {
        rc = CLI_EXIT_USAGE;
        goto out;
    }
    for (;;) {
        char q[1024];
        snprintf(q, sizeof q, "%s", base);
        if (cli_query_add(q, sizeof q, "limit", limit) ||
            cli_query_add(q, sizeof q, "cursor", next ? next : cursor)) {
            cli_errorf(c, "arguments too long");
            rc = CLI_EXIT_USAGE;
            goto out;
        }
        if ((rc = cli_call(c, "GET", q, NULL, &r)))
            goto out;
        if (!all && cli_print_raw_json(c, &r))
            goto out;
        size_t i;
        json_t *j;
        json_array_foreach(json_object_get(r.json, "trainings"), i, j)
        {
            if (c->json)
                json_array_append(every, j);
            else if (c->quiet)
                printf("%s\n", cli_jstr(j, "id", ""));
            else
                table_add_job(&t, j);
        }
        const char *nc = cli_jstr(r.json, "next_cursor", NULL);
        if (!all || !nc)
            break;
        free(next);
        if (!(next = strdup(nc))) {
            rc = CLI_EXIT_USAGE;
            goto out;
        }
    }
    if (c->json) {
        /* --all --json: the pages as one. */
        json_t *page = json_pack("{s:O, s:n}", "trainings", every, "next_cursor");
        char *text = page ? json_dumps(page, JSON_COMPACT) : NULL;
        if (text)
            printf("%s\n", text);
        free(text);
        json_decref(page);
    } else {
        cli_table_finish(c, &t, all ? NULL : r.json);
    }
out:
    cli_table_release(&t);
    json_decref(every);
    free(base);
    free(next);
    cli_resp_release(&r);
    return rc;
}

static void print_job(json_t *j)
{
    json_t *res = json_object_get(j, "result"), *m = json_object_get(res, "metrics");
    json_t *pv = json_object_get(j, "privacy");
    char prog[128] = "-", acc[32], loss[32], eps[32];
    struct watcher w = {.progress = json_object_get(j, "progress"), .epochs = 100};
    json_t *e = json_object_get(json_object_get(j, "request"), "epochs");
    if (json_is_integer(e))
        w.epochs = (long long)json_integer_value(e);
    if (json_is_object(w.progress))
        progress_text(&w, prog, sizeof prog);
    num_text(m, "accuracy", 4, acc, sizeof acc);
    num_text(m, "loss", 4, loss, sizeof loss);
    num_text(pv, "epsilon", 4, eps, sizeof eps);
    printf("id          %s\ncontract    %s\nstate       %s\nreason      %s%s%s\nmodel       %s\n"
           "progress    %s\naccuracy    %s (loss %s, %lld held-out rows)\n"
           "model file  %lld bytes, SHA-256 %s\nprivacy     %s\nenclave     %s\n"
           "created     %s\nupdated     %s\n",
           cli_jstr(j, "id", "-"), cli_jstr(j, "contract_id", "-"), cli_jstr(j, "state", "-"),
           cli_jstr(j, "reason_code", "-"),
           json_is_string(json_object_get(j, "reason")) ? ": " : "", cli_jstr(j, "reason", ""),
           cli_jstr(j, "model", "-"), prog, acc, loss,
           (long long)json_integer_value(json_object_get(m, "rows")),
           (long long)json_integer_value(json_object_get(res, "model_size")),
           cli_jstr(res, "model_sha256", "-"), json_is_object(pv) ? "DP-SGD" : "-",
           cli_jstr(j, "enclave_id", "-"), cli_jstr(j, "created_at", "-"),
           cli_jstr(j, "updated_at", "-"));
    if (json_is_object(pv))
        printf("dp          epsilon %s, sigma %.4g, C %.4g, %lld steps\n", eps,
               json_number_value(json_object_get(pv, "sigma")),
               json_number_value(json_object_get(pv, "max_grad_norm")),
               (long long)json_integer_value(json_object_get(pv, "steps")));
}

/* ---- model ---- */

struct download {
    int fd;
    crypto_hash_sha256_state sha;
    long long bytes;
    int err; /* errno of a failed write */
};

static size_t download_write(void *ud, const char *p, size_t n)
{
    struct download *d = ud;
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(d->fd, p + done, n - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            d->err = w < 0 ? errno : EIO;
            return 0;
        }
        done += (size_t)w;
    }
    crypto_hash_sha256_update(&d->sha, (const unsigned char *)p, n);
    d->bytes += (long long)n;
    return n;
}

static int cmd_model(struct cli *c, const char *id, const char *out, bool force)
{
    struct cli_resp r = CLI_RESP_INIT;
    struct download d = {.fd = -1};
    char defname[128], *tmp = NULL, hex[65], *path = NULL;
    char *expect = NULL;
    unsigned char digest[32];
    bool to_stdout;
    int rc;
    if (!out) {
        snprintf(defname, sizeof defname, "model-%.80s.safetensors", id);
        out = defname;
    }
    to_stdout = strcmp(out, "-") == 0;
    if (!to_stdout && !force && access(out, F_OK) == 0) {
        cli_errorf(c, "%s exists: pass --force to overwrite it", out);
        return CLI_EXIT_USAGE;
    }
    /* What the job says the model is, to check the download against. */
    if ((rc = cli_call_id(c, "GET", TRAININGS, id, "", NULL, &r)))
        goto out;
    const char *sha = cli_jstr(json_object_get(r.json, "result"), "model_sha256", NULL);
    if (sha && !(expect = strdup(sha))) {
        rc = CLI_EXIT_USAGE;
        goto out;
    }
    if (to_stdout) {
        d.fd = STDOUT_FILENO;
    } else {
        size_t n = strlen(out) + sizeof ".XXXXXX";
        if (!(tmp = malloc(n))) {
            rc = CLI_EXIT_USAGE;
            goto out;
        }
        snprintf(tmp, n, "%s.XXXXXX", out);
        if ((d.fd = mkstemp(tmp)) < 0) {
            cli_errorf(c, "%s: %s", out, strerror(errno));
            free(tmp);
            tmp = NULL;
            rc = CLI_EXIT_USAGE;
            goto out;
        }
    }
    crypto_hash_sha256_init(&d.sha);
    struct cli_stream stream = {download_write, &d, 0};
    if (!(path = cli_path(TRAININGS, id, "/model"))) {
        rc = CLI_EXIT_USAGE;
        goto out;
    }
    const char *hdrs[] = {"Accept: application/octet-stream", NULL};
    if ((rc = cli_call_stream(c, path, hdrs, &stream, &r))) {
        if (d.err)
            cli_errorf(c, "%s: %s", to_stdout ? "standard output" : out, strerror(d.err));
        goto out;
    }
    crypto_hash_sha256_final(&d.sha, digest);
    sodium_bin2hex(hex, sizeof hex, digest, sizeof digest);
    if (expect && strcmp(expect, hex) != 0) {
        cli_errorf(c, "the download's SHA-256 %s is not the job's %s: not kept", hex, expect);
        rc = CLI_EXIT_REFUSED;
        goto out;
    }
    if (!to_stdout) {
        int fd = d.fd;
        d.fd = -1;
        if (fsync(fd) != 0 || close(fd) != 0) {
            cli_errorf(c, "%s: %s", out, strerror(errno));
            rc = CLI_EXIT_USAGE;
            goto out;
        }
        /* Without --force a file that appeared during the download is not replaced. */
        if (force ? rename(tmp, out) != 0 : link(tmp, out) != 0) {
            cli_errorf(c, "%s: %s", out,
                       errno == EEXIST ? "exists (pass --force to overwrite it)" : strerror(errno));
            rc = CLI_EXIT_USAGE;
            goto out;
        }
        if (!force)
            unlink(tmp);
        free(tmp);
        tmp = NULL;
    }
    if (c->json) {
        json_t *o =
            json_pack("{s:s, s:I, s:s}", "file", out, "bytes", (json_int_t)d.bytes, "sha256", hex);
        char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
        if (text)
            fprintf(to_stdout ? stderr : stdout, "%s\n", text);
        free(text);
        json_decref(o);
    } else if (c->quiet) {
        if (!to_stdout)
            printf("%s\n", hex);
    } else {
        fprintf(to_stdout ? stderr : stdout, "model of training %s: %s, %lld bytes, SHA-256 %s%s\n",
                id, to_stdout ? "standard output" : out, d.bytes, hex,
                expect ? " (the job's result)" : "");
    }
out:
    if (d.fd >= 0 && d.fd != STDOUT_FILENO)
        close(d.fd);
    if (tmp) {
        unlink(tmp);
        free(tmp);
    }
    free(expect);
    free(path);
    cli_resp_release(&r);
    return rc;
}

/* ---- the command ---- */

int cli_cmd_train(struct cli *c, int argc, char **argv)
{
    if (argc < 1)
        return cli_usage("train", NULL, CLI_EXIT_USAGE);
    const char *sub = argv[0], *pos[1], *file = NULL, *out = NULL, *limit = NULL, *cursor = NULL,
               *timeout = NULL;
    struct cli_train_opts o = {0};
    bool help = false, follow = false, all = false, force = false;
    size_t npos;
    const struct cli_opt opts[] = {
        {"datasets", 'd', CLI_OPT_VALUE, NULL, &o.datasets, "ID,...",
         "start: the datasets (default: all of the contract's scope)"},
        {"label", 'l', CLI_OPT_VALUE, NULL, &o.label, "COLUMN", "start: the label column"},
        {"model", 'm', CLI_OPT_VALUE, NULL, &o.model, "MODEL",
         "start: logistic_regression or mlp (the terms must allow it)"},
        {"hidden", 0, CLI_OPT_VALUE, NULL, &o.hidden, "W,...",
         "start: mlp's hidden layer widths, e.g. 16,8"},
        {"optimizer", 0, CLI_OPT_VALUE, NULL, &o.optimizer, "OPT", "start: sgd or adam"},
        {"momentum", 0, CLI_OPT_VALUE, NULL, &o.momentum, "M", "start: sgd's momentum, in [0,1)"},
        {"epochs", 0, CLI_OPT_VALUE, NULL, &o.epochs, "N", "start: passes over the data"},
        {"batch-size", 0, CLI_OPT_VALUE, NULL, &o.batch_size, "N",
         "start: rows per step (0: full batch)"},
        {"learning-rate", 0, CLI_OPT_VALUE, NULL, &o.learning_rate, "R", "start: the step size"},
        {"l2", 0, CLI_OPT_VALUE, NULL, &o.l2, "L", "start: L2 penalty on the weights"},
        {"seed", 0, CLI_OPT_VALUE, NULL, &o.seed, "S", "start: initialisation and shuffling"},
        {"split", 0, CLI_OPT_VALUE, NULL, &o.split, "SPLIT",
         "start: modulo:FOLDS:HOLDOUT or random:FRACTION[:SEED] (held-out rows)"},
        {"dtype", 0, CLI_OPT_VALUE, NULL, &o.dtype, "T", "start: F64 or F32 in the model file"},
        {"dp-epsilon", 0, CLI_OPT_VALUE, NULL, &o.dp_epsilon, "E",
         "start: DP-SGD with this run's target epsilon (docs/privacy.md)"},
        {"dp-noise", 0, CLI_OPT_VALUE, NULL, &o.dp_noise, "SIGMA",
         "start: DP-SGD with this noise multiplier"},
        {"dp-max-grad-norm", 0, CLI_OPT_VALUE, NULL, &o.dp_max_grad_norm, "C",
         "start: DP-SGD's clipping norm"},
        {"file", 'f', CLI_OPT_VALUE, NULL, &file, "FILE",
         "start: the request body (JSON); options given too override it"},
        {"watch", 'w', CLI_OPT_FLAG, &follow, NULL, NULL, "start: then follow it as watch does"},
        {"timeout", 0, CLI_OPT_VALUE, NULL, &timeout, "SECONDS",
         "watch, start --watch: give up (exit 1) after this long (default: never)"},
        {"limit", 0, CLI_OPT_VALUE, NULL, &limit, "N", "list: page size"},
        {"cursor", 0, CLI_OPT_VALUE, NULL, &cursor, "C", "list: the next page"},
        {"all", 0, CLI_OPT_FLAG, &all, NULL, NULL, "list: every page"},
        {"output", 'o', CLI_OPT_VALUE, NULL, &out, "FILE",
         "model: where to write it (default model-ID.safetensors; - for stdout)"},
        {"force", 0, CLI_OPT_FLAG, &force, NULL, NULL, "model: overwrite FILE"},
        {0},
    };
    int rc = cli_args_parse_sub(argc, argv, opts, pos, 1, &npos, &help);
    if (rc || help)
        return cli_usage("train", opts, rc);
    double timeout_s = 0;
    if (timeout) {
        char *end;
        timeout_s = strtod(timeout, &end);
        if (*end || !(timeout_s > 0) || timeout_s > 1e7) {
            cli_errorf(c, "--timeout: a positive number of seconds");
            return CLI_EXIT_USAGE;
        }
    }
    struct cli_resp r = CLI_RESP_INIT;
    if (strcmp(sub, "start") == 0 && npos == 1)
        return cmd_start(c, pos[0], &o, file, follow, timeout_s);
    if (strcmp(sub, "watch") == 0 && npos == 1)
        return watch(c, pos[0], timeout_s, true);
    if (strcmp(sub, "list") == 0 && npos == 1)
        return cmd_list(c, pos[0], limit, cursor, all);
    if (strcmp(sub, "model") == 0 && npos == 1)
        return cmd_model(c, pos[0], out, force);
    if (strcmp(sub, "show") == 0 && npos == 1) {
        if ((rc = cli_call_id(c, "GET", TRAININGS, pos[0], "", NULL, &r)) == 0 &&
            !cli_print_brief(c, &r, "state"))
            print_job(r.json);
        cli_resp_release(&r);
        return rc;
    }
    if (strcmp(sub, "cancel") == 0 && npos == 1) {
        if ((rc = cli_call_id(c, "POST", TRAININGS, pos[0], "/cancel", NULL, &r)) == 0 &&
            !cli_print_brief(c, &r, "state"))
            printf("training %s is %s\n", pos[0], cli_jstr(r.json, "state", "?"));
        cli_resp_release(&r);
        return rc;
    }
    fprintf(stderr, "dcms train: unknown subcommand or wrong arguments\n");
    return cli_usage("train", NULL, CLI_EXIT_USAGE);
}
