/*
 * The Nitro enclave backend (backend.h): nitro-cli run-enclave /
 * describe-enclaves / terminate-enclave, run without a shell, their JSON
 * output parsed with jansson; attestation over vsock with the channel
 * protocol (channel.h), answered by the enclave's agent, which asks the
 * real NSM itself. Needs an EC2 host with Nitro Enclaves enabled, nitro-cli
 * and the allocator configured; tests put a scripted nitro-cli first.
 *
 * Every nitro-cli run is bounded: output (64 KiB per stream) and time
 * (opts.timeout_ms, then SIGKILL). Errors say which call failed and why:
 * exit status and the first line of stderr, malformed JSON, a missing field.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>
#include <linux/vm_sockets.h>

#include "dcms/attest.h"
#include "dcms/clock.h"
#include "dcms/log.h"
#include "enclaves/backend.h"
#include "enclaves/channel.h"
#include "enclaves/channel_io.h"

#define CLI_OUTPUT_MAX (64u << 10)
#define DEFAULT_TIMEOUT_MS 120000u
#define ATTEST_TIMEOUT_MS 5000
#define CLI_PATH_MAX 512

extern char **environ;

struct nentry {
    struct nentry *next;
    char id[DCMS_ENCLAVE_REF_MAX];
    unsigned cid;
    uint64_t memory_bytes;
    int64_t started_us;
    uint64_t bytes_in, bytes_out;
};

struct nitro {
    pthread_mutex_t mu;
    struct nentry *list;
    char cli[CLI_PATH_MAX];
    unsigned port, timeout_ms;
    dcms_enclave_vsock_connect_fn *connect;
    void *connect_ctx;
};

static struct nitro *N(struct dcms_enclave_backend *b)
{
    return b->impl;
}

/* ---- running nitro-cli ---- */

struct cli_out {
    char *out, *err; /* NUL-terminated, at most CLI_OUTPUT_MAX bytes each */
    size_t out_len, err_len;
    int status;
};

static void cli_out_release(struct cli_out *o)
{
    free(o->out);
    free(o->err);
    memset(o, 0, sizeof(*o));
}

/* Appends what `fd` has to *buf (bounded); false at EOF or error. */
static bool slurp(int fd, char **buf, size_t *len)
{
    char tmp[4096];
    ssize_t n = read(fd, tmp, sizeof(tmp));
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return true;
    if (n <= 0)
        return false;
    size_t keep = *len < CLI_OUTPUT_MAX ? CLI_OUTPUT_MAX - *len : 0;
    if ((size_t)n < keep)
        keep = (size_t)n;
    if (keep) {
        char *p = realloc(*buf, *len + keep + 1);
        if (!p)
            return false;
        memcpy(p + *len, tmp, keep);
        *len += keep;
        p[*len] = '\0';
        *buf = p;
    }
    return true;
}

/* The first line of stderr, for error messages (at most 120 bytes). */
static const char *first_line(const struct cli_out *o, char *line, size_t cap)
{
    const char *s = o->err && o->err_len ? o->err : "no message";
    size_t n = strcspn(s, "\r\n");
    if (n >= cap)
        n = cap - 1;
    memcpy(line, s, n);
    line[n] = '\0';
    return line;
}

/*
 * Runs `nitro-cli args...` without a shell, stdin /dev/null, and collects
 * its output. DCMS_ERR_UNAVAILABLE if it cannot run, times out (then it is
 * killed) or exits non-zero.
 */
static enum dcms_err run_cli(struct nitro *n, const char *const *args, struct cli_out *o,
                             struct dcms_errinfo *ei)
{
    memset(o, 0, sizeof(*o));
    const char *argv[12];
    size_t argc = 0;
    argv[argc++] = n->cli;
    for (; args[argc - 1] && argc < 11; argc++)
        argv[argc] = args[argc - 1];
    argv[argc] = NULL;
    const char *verb = args[0];

    int out[2] = {-1, -1}, err[2] = {-1, -1};
    posix_spawn_file_actions_t fa;
    bool fa_init = false;
    pid_t pid = -1;
    enum dcms_err e = DCMS_OK;
    if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0 ||
        posix_spawn_file_actions_init(&fa) != 0) {
        e = dcms_err_set(ei, DCMS_ERR_IO, "cannot run nitro-cli: %s", strerror(errno));
        goto out;
    }
    fa_init = true;
    int rc = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (!rc)
        rc = posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    if (!rc)
        rc = posix_spawn_file_actions_adddup2(&fa, err[1], 2);
    if (!rc)
        rc = posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    if (!rc)
        rc = strchr(n->cli, '/')
                 ? posix_spawn(&pid, n->cli, &fa, NULL, (char *const *)argv, environ)
                 : posix_spawnp(&pid, n->cli, &fa, NULL, (char *const *)argv, environ);
    if (rc) {
        pid = -1;
        e = dcms_err_set(ei, DCMS_ERR_UNAVAILABLE, "cannot run %s: %s", n->cli, strerror(rc));
        goto out;
    }
    close(out[1]);
    close(err[1]);
    out[1] = err[1] = -1;

    int64_t deadline = dcms_clock_mono_us() / 1000 + n->timeout_ms;
    bool out_open = true, err_open = true;
    while (out_open || err_open) {
        int64_t left = deadline - dcms_clock_mono_us() / 1000;
        struct pollfd p[2] = {{.fd = out_open ? out[0] : -1, .events = POLLIN},
                              {.fd = err_open ? err[0] : -1, .events = POLLIN}};
        int r = left > 0 ? poll(p, 2, (int)left) : 0;
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            kill(pid, SIGKILL);
            e = dcms_err_set(ei, DCMS_ERR_UNAVAILABLE, "nitro-cli %s did not finish within %u ms",
                             verb, n->timeout_ms);
            break;
        }
        if (p[0].revents && !slurp(out[0], &o->out, &o->out_len))
            out_open = false;
        if (p[1].revents && !slurp(err[0], &o->err, &o->err_len))
            err_open = false;
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    pid = -1;
    o->status = status;
    if (!e && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        char line[121];
        if (WIFEXITED(status))
            e = dcms_err_set(ei, DCMS_ERR_UNAVAILABLE, "nitro-cli %s failed (exit %d): %s", verb,
                             WEXITSTATUS(status), first_line(o, line, sizeof(line)));
        else
            e = dcms_err_set(ei, DCMS_ERR_UNAVAILABLE, "nitro-cli %s was killed by signal %d", verb,
                             WTERMSIG(status));
    }
out:
    if (fa_init)
        posix_spawn_file_actions_destroy(&fa);
    int fds[] = {out[0], out[1], err[0], err[1]};
    for (size_t i = 0; i < 4; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    if (e)
        cli_out_release(o);
    return e;
}

/* Parses stdout as JSON of `type` (JSON_OBJECT or JSON_ARRAY). */
static enum dcms_err cli_json(const char *verb, const struct cli_out *o, json_type type,
                              json_t **out, struct dcms_errinfo *ei)
{
    json_error_t jerr;
    *out = o->out ? json_loadb(o->out, o->out_len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    if (!*out || json_typeof(*out) != type) {
        json_decref(*out);
        *out = NULL;
        return dcms_err_set(ei, DCMS_ERR_UNAVAILABLE, "nitro-cli %s printed malformed JSON%s", verb,
                            type == JSON_ARRAY ? " (expected an array)" : "");
    }
    return DCMS_OK;
}

/* An enclave id as nitro-cli prints it: "i-0123...-enc0123...", letters, digits and '-'. */
static bool enclave_id_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= DCMS_ENCLAVE_REF_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return false;
    return true;
}

static struct nentry *find(struct nitro *n, const char *id)
{
    struct nentry *en = n->list;
    while (en && strcmp(en->id, id) != 0)
        en = en->next;
    return en;
}

/* ---- operations ---- */

static enum dcms_err nitro_start(struct dcms_enclave_backend *b, const struct dcms_enclave_spec *sp,
                                 char *ref, struct dcms_errinfo *ei)
{
    struct nitro *n = N(b);
    ref[0] = '\0';
    if (!sp->image_path || !sp->image_path[0] || sp->cpu_cores == 0 || sp->memory_mb == 0)
        return dcms_err_set(ei, DCMS_ERR_VALIDATION,
                            "an EIF path, at least 1 cpu and some memory are needed");
    char cpus[16], mem[16];
    snprintf(cpus, sizeof(cpus), "%u", sp->cpu_cores);
    snprintf(mem, sizeof(mem), "%u", sp->memory_mb);
    const char *args[] = {"run-enclave",
                          "--eif-path",
                          sp->image_path,
                          "--cpu-count",
                          cpus,
                          "--memory",
                          mem,
                          sp->debug_mode ? "--debug-mode" : NULL,
                          NULL};
    struct cli_out o;
    json_t *j = NULL;
    enum dcms_err e;
    if ((e = run_cli(n, args, &o, ei)))
        return e;
    if ((e = cli_json("run-enclave", &o, JSON_OBJECT, &j, ei)))
        goto out;
    const char *id = json_string_value(json_object_get(j, "EnclaveID"));
    json_t *cid = json_object_get(j, "EnclaveCID");
    if (!id || !enclave_id_ok(id)) {
        e = dcms_err_set(ei, DCMS_ERR_UNAVAILABLE,
                         "nitro-cli run-enclave output has no valid EnclaveID");
        goto out;
    }
    if (!json_is_integer(cid) || json_integer_value(cid) < 3 ||
        json_integer_value(cid) > UINT32_MAX) {
        e = dcms_err_set(ei, DCMS_ERR_UNAVAILABLE,
                         "nitro-cli run-enclave output has no valid EnclaveCID");
        goto out;
    }
    struct nentry *en = calloc(1, sizeof(*en));
    if (!en) {
        e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
        goto out;
    }
    snprintf(en->id, sizeof(en->id), "%s", id);
    en->cid = (unsigned)json_integer_value(cid);
    json_t *mib = json_object_get(j, "MemoryMiB");
    en->memory_bytes =
        (uint64_t)(json_is_integer(mib) && json_integer_value(mib) > 0 ? json_integer_value(mib)
                                                                       : sp->memory_mb)
        << 20;
    en->started_us = dcms_clock_mono_us();
    pthread_mutex_lock(&n->mu);
    en->next = n->list;
    n->list = en;
    pthread_mutex_unlock(&n->mu);
    snprintf(ref, DCMS_ENCLAVE_REF_MAX, "%s", en->id);
    DCMS_LOG(DCMS_LOG_INFO, "enclaves", "nitro enclave %s started (cid %u)", en->id, en->cid);
out:
    json_decref(j);
    cli_out_release(&o);
    return e;
}

/* describe-enclaves, and the entry for `id` in it (NULL when not listed). */
static enum dcms_err describe(struct nitro *n, const char *id, json_t **all, json_t **mine,
                              struct dcms_errinfo *ei)
{
    const char *args[] = {"describe-enclaves", NULL};
    struct cli_out o;
    *all = *mine = NULL;
    enum dcms_err e = run_cli(n, args, &o, ei);
    if (e)
        return e;
    e = cli_json("describe-enclaves", &o, JSON_ARRAY, all, ei);
    cli_out_release(&o);
    if (e)
        return e;
    size_t i;
    json_t *v;
    json_array_foreach(*all, i, v)
    {
        const char *vid = json_string_value(json_object_get(v, "EnclaveID"));
        if (!json_is_object(v) || !vid) {
            json_decref(*all);
            *all = NULL;
            return dcms_err_set(ei, DCMS_ERR_UNAVAILABLE,
                                "nitro-cli describe-enclaves lists an enclave without EnclaveID");
        }
        if (strcmp(vid, id) == 0)
            *mine = v;
    }
    return DCMS_OK;
}

static enum dcms_err nitro_probe(struct dcms_enclave_backend *b, const char *ref,
                                 struct dcms_enclave_probe *out, struct dcms_errinfo *ei)
{
    struct nitro *n = N(b);
    memset(out, 0, sizeof(*out));
    out->pid = -1;
    json_t *all, *mine;
    enum dcms_err e = describe(n, ref, &all, &mine, ei);
    if (e)
        return e;
    pthread_mutex_lock(&n->mu);
    struct nentry *en = find(n, ref);
    if (en) {
        out->uptime_ms = (uint64_t)(dcms_clock_mono_us() - en->started_us) / 1000;
        out->channel_bytes_in = en->bytes_in;
        out->channel_bytes_out = en->bytes_out;
        out->memory_limit_bytes = en->memory_bytes;
    }
    pthread_mutex_unlock(&n->mu);
    const char *state = mine ? json_string_value(json_object_get(mine, "State")) : NULL;
    if (!mine) {
        out->state = en ? DCMS_ENCLAVE_RUN_EXITED : DCMS_ENCLAVE_RUN_UNKNOWN;
        snprintf(out->reason, sizeof(out->reason), "%s",
                 en ? "the enclave is no longer listed by nitro-cli describe-enclaves"
                    : "nitro-cli describe-enclaves does not list this enclave");
    } else if (!state) {
        e = dcms_err_set(ei, DCMS_ERR_UNAVAILABLE,
                         "nitro-cli describe-enclaves gives no State for %s", ref);
    } else if (strcmp(state, "RUNNING") == 0) {
        out->state = DCMS_ENCLAVE_RUN_RUNNING;
        json_t *mib = json_object_get(mine, "MemoryMiB");
        if (json_is_integer(mib) && json_integer_value(mib) > 0)
            out->memory_limit_bytes = (uint64_t)json_integer_value(mib) << 20;
    } else {
        /* TERMINATING, TERMINATED or anything a newer nitro-cli invents: not running. */
        out->state = DCMS_ENCLAVE_RUN_EXITED;
        char lower[41];
        size_t i = 0;
        for (; state[i] && i < sizeof(lower) - 1; i++)
            lower[i] = state[i] >= 'A' && state[i] <= 'Z' ? (char)(state[i] - 'A' + 'a') : state[i];
        lower[i] = '\0';
        snprintf(out->reason, sizeof(out->reason), "nitro-cli reports the enclave %s", lower);
    }
    json_decref(all);
    return e;
}

static enum dcms_err nitro_terminate(struct dcms_enclave_backend *b, const char *ref,
                                     struct dcms_errinfo *ei)
{
    struct nitro *n = N(b);
    if (!enclave_id_ok(ref))
        return DCMS_OK; /* no such enclave can exist */
    json_t *all, *mine;
    enum dcms_err e = describe(n, ref, &all, &mine, ei);
    if (e)
        return e;
    bool listed = mine != NULL;
    json_decref(all);
    if (listed) {
        const char *args[] = {"terminate-enclave", "--enclave-id", ref, NULL};
        struct cli_out o;
        json_t *j = NULL;
        if ((e = run_cli(n, args, &o, ei)))
            return e;
        e = cli_json("terminate-enclave", &o, JSON_OBJECT, &j, ei);
        if (!e && !json_is_true(json_object_get(j, "Terminated")))
            e = dcms_err_set(ei, DCMS_ERR_UNAVAILABLE,
                             "nitro-cli terminate-enclave did not report Terminated: true");
        json_decref(j);
        cli_out_release(&o);
        if (e)
            return e;
    }
    pthread_mutex_lock(&n->mu);
    struct nentry **pp = &n->list;
    while (*pp && strcmp((*pp)->id, ref) != 0)
        pp = &(*pp)->next;
    struct nentry *en = *pp;
    if (en)
        *pp = en->next;
    pthread_mutex_unlock(&n->mu);
    free(en);
    DCMS_LOG(DCMS_LOG_INFO, "enclaves", "nitro enclave %s terminated", ref);
    return DCMS_OK;
}

static enum dcms_err nitro_suspend(struct dcms_enclave_backend *b, const char *ref,
                                   struct dcms_errinfo *ei)
{
    return dcms_err_set(ei, DCMS_ERR_CONFLICT, "nitro enclaves cannot be suspended");
}

static enum dcms_err nitro_resume(struct dcms_enclave_backend *b, const char *ref,
                                  struct dcms_errinfo *ei)
{
    return dcms_err_set(ei, DCMS_ERR_CONFLICT,
                        "nitro enclaves cannot be suspended, so there is nothing to resume");
}

static int vsock_connect(void *ctx, unsigned cid, unsigned port)
{
    (void)ctx;
    int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_vm addr = {.svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port};
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

/* The enclave's CID: known since start, or from nitro-cli when dcmsd restarted meanwhile. */
static enum dcms_err cid_of(struct nitro *n, const char *ref, unsigned *cid,
                            struct dcms_errinfo *ei)
{
    pthread_mutex_lock(&n->mu);
    struct nentry *en = find(n, ref);
    *cid = en ? en->cid : 0;
    pthread_mutex_unlock(&n->mu);
    if (*cid)
        return DCMS_OK;
    json_t *all, *mine;
    enum dcms_err e = describe(n, ref, &all, &mine, ei);
    if (e)
        return e;
    json_t *c = mine ? json_object_get(mine, "EnclaveCID") : NULL;
    if (json_is_integer(c) && json_integer_value(c) >= 3 && json_integer_value(c) <= UINT32_MAX)
        *cid = (unsigned)json_integer_value(c);
    json_decref(all);
    return *cid ? DCMS_OK : dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "no nitro enclave %s", ref);
}

static enum dcms_err nitro_attest(struct dcms_enclave_backend *b, const char *ref,
                                  const unsigned char *nonce, size_t nonce_len, unsigned char **doc,
                                  size_t *doc_len, struct dcms_errinfo *ei)
{
    struct nitro *n = N(b);
    *doc = NULL;
    *doc_len = 0;
    if (!nonce || nonce_len == 0 || nonce_len > DCMS_CHAN_MAX_NONCE)
        return dcms_err_set(ei, DCMS_ERR_VALIDATION, "the nonce must be 1 to 64 bytes");
    unsigned cid;
    enum dcms_err ce = cid_of(n, ref, &cid, ei);
    if (ce)
        return ce;
    int fd = n->connect(n->connect_ctx, cid, n->port);
    if (fd < 0)
        return dcms_err_set(ei, DCMS_ERR_UNAVAILABLE, "cannot reach the enclave on vsock %u:%u: %s",
                            cid, n->port, strerror(errno));
    uint64_t sent = 0, received = 0;
    uint8_t *buf = malloc(CHAN_IO_BUF);
    enum dcms_err e = DCMS_OK;
    struct dcms_chan_frame f;
    int64_t deadline = dcms_clock_mono_us() / 1000 + ATTEST_TIMEOUT_MS;
    if (!buf) {
        e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
        goto out;
    }
    if ((e = chan_io_send(fd, DCMS_CHAN_ATTEST_REQ, nonce, nonce_len, deadline, &sent, ei)) ||
        (e = chan_io_recv(fd, buf, &f, deadline, &received, ei)))
        goto out;
    /* On Nitro the agent asks /dev/nsm itself: only ATTEST_RESP is expected from it. */
    e = chan_io_attest_doc(&f, "enclave", doc, doc_len, ei);
out:
    close(fd);
    free(buf);
    pthread_mutex_lock(&n->mu);
    struct nentry *en = find(n, ref);
    if (en) {
        en->bytes_in += received;
        en->bytes_out += sent;
    }
    pthread_mutex_unlock(&n->mu);
    return e;
}

/* ---- an exclusive channel (an enclave session): a vsock connection of its own ---- */

struct nchan {
    struct dcms_enclave_channel ops; /* first */
    struct nitro *n;
    char ref[DCMS_ENCLAVE_REF_MAX];
    int fd;
    uint64_t sent, received; /* counted into the entry at close */
};

static enum dcms_err nchan_send(struct dcms_enclave_channel *ch, uint8_t type, const uint8_t *body,
                                size_t len, int64_t deadline_ms, struct dcms_errinfo *ei)
{
    struct nchan *c = (struct nchan *)ch;
    return chan_io_send(c->fd, type, body, len, deadline_ms, &c->sent, ei);
}

static enum dcms_err nchan_recv(struct dcms_enclave_channel *ch, uint8_t *buf,
                                struct dcms_chan_frame *f, int64_t deadline_ms,
                                struct dcms_errinfo *ei)
{
    struct nchan *c = (struct nchan *)ch;
    enum dcms_err e = chan_io_recv(c->fd, buf, f, deadline_ms, &c->received, ei);
    /* On Nitro the enclave asks /dev/nsm itself. */
    if (!e && f->type == DCMS_CHAN_NSM_REQ)
        e = dcms_err_set(ei, DCMS_ERR_UNAVAILABLE,
                         "the enclave broke the channel protocol (an NSM request)");
    return e;
}

static void nchan_close(struct dcms_enclave_channel *ch)
{
    struct nchan *c = (struct nchan *)ch;
    close(c->fd);
    pthread_mutex_lock(&c->n->mu);
    struct nentry *en = find(c->n, c->ref);
    if (en) {
        en->bytes_in += c->received;
        en->bytes_out += c->sent;
    }
    pthread_mutex_unlock(&c->n->mu);
    free(c);
}

static enum dcms_err nitro_channel(struct dcms_enclave_backend *b, const char *ref,
                                   struct dcms_enclave_channel **out, struct dcms_errinfo *ei)
{
    struct nitro *n = N(b);
    *out = NULL;
    unsigned cid;
    enum dcms_err e = cid_of(n, ref, &cid, ei);
    if (e)
        return e;
    struct nchan *c = calloc(1, sizeof(*c));
    if (!c)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    if ((c->fd = n->connect(n->connect_ctx, cid, n->port)) < 0) {
        e = dcms_err_set(ei, DCMS_ERR_UNAVAILABLE, "cannot reach the enclave on vsock %u:%u: %s",
                         cid, n->port, strerror(errno));
        free(c);
        return e;
    }
    c->ops = (struct dcms_enclave_channel){nchan_send, nchan_recv, nchan_close};
    c->n = n;
    snprintf(c->ref, sizeof(c->ref), "%s", ref);
    *out = &c->ops;
    return DCMS_OK;
}

static void nitro_destroy(struct dcms_enclave_backend *b)
{
    struct nitro *n = N(b);
    for (;;) {
        pthread_mutex_lock(&n->mu);
        struct nentry *en = n->list;
        char id[DCMS_ENCLAVE_REF_MAX];
        if (en)
            snprintf(id, sizeof(id), "%s", en->id);
        pthread_mutex_unlock(&n->mu);
        if (!en)
            break;
        struct dcms_errinfo ei;
        dcms_errinfo_init(&ei, NULL);
        if (nitro_terminate(b, id, &ei) != DCMS_OK) {
            DCMS_LOG(DCMS_LOG_ERROR, "enclaves", "cannot terminate nitro enclave %s: %s", id,
                     ei.message);
            pthread_mutex_lock(&n->mu);
            if ((en = find(n, id))) {
                struct nentry **pp = &n->list;
                while (*pp != en)
                    pp = &(*pp)->next;
                *pp = en->next;
                free(en);
            }
            pthread_mutex_unlock(&n->mu);
        }
    }
    pthread_mutex_destroy(&n->mu);
    free(n);
    free(b);
}

enum dcms_err dcms_enclave_backend_nitro_new(const struct dcms_enclave_nitro_opts *opts,
                                             struct dcms_enclave_backend **out,
                                             struct dcms_errinfo *ei)
{
    *out = NULL;
    const char *cli = opts && opts->nitro_cli && opts->nitro_cli[0] ? opts->nitro_cli : "nitro-cli";
    if (strlen(cli) >= CLI_PATH_MAX)
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "the nitro-cli path is too long");
    if (!opts || opts->vsock_port == 0 || opts->vsock_port > UINT32_MAX - 1)
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "the nitro backend needs a vsock port");
    struct dcms_enclave_backend *b = calloc(1, sizeof(*b));
    struct nitro *n = calloc(1, sizeof(*n));
    if (!b || !n) {
        free(b);
        free(n);
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    }
    pthread_mutex_init(&n->mu, NULL);
    snprintf(n->cli, sizeof(n->cli), "%s", cli);
    n->port = opts->vsock_port;
    n->timeout_ms = opts->timeout_ms ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
    n->connect = opts->connect ? opts->connect : vsock_connect;
    n->connect_ctx = opts->connect_ctx;
    b->name = "nitro";
    b->impl = n;
    b->start = nitro_start;
    b->attest = nitro_attest;
    b->suspend = nitro_suspend;
    b->resume = nitro_resume;
    b->terminate = nitro_terminate;
    b->probe = nitro_probe;
    b->channel = nitro_channel;
    b->destroy = nitro_destroy;
    *out = b;
    return DCMS_OK;
}
