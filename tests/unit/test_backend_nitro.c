/*
 * The Nitro enclave backend against a scripted nitro-cli (a shell script
 * in a temp directory whose behaviour per verb comes from a "mode" file
 * next to it, and which records its arguments in "calls"), with vsock
 * replaced by a socketpair served by a thread playing the enclave's agent.
 * Every backend call, its happy path and its error paths.
 */
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#include "dcms/clock.h"
#include "enclaves/backend.h"
#include "enclaves/channel.h"

static const char fake_cli[] =
    "#!/bin/sh\n"
    "d=$(dirname \"$0\")\n"
    "printf '%s\\n' \"$*\" >> \"$d/calls\"\n"
    "m=$(grep \"^$1=\" \"$d/mode\" 2>/dev/null | cut -d= -f2)\n"
    "case \"$1:$m\" in\n"
    "run-enclave:fail) echo '[ E26 ] Insufficient memory requested.' >&2; exit 1 ;;\n"
    "run-enclave:garbage) echo 'this is not { json' ;;\n"
    "run-enclave:noid) echo '{\"EnclaveCID\": 16, \"MemoryMiB\": 512}' ;;\n"
    "run-enclave:nocid) echo '{\"EnclaveID\": \"i-abc-enc123\"}' ;;\n"
    "run-enclave:badid) echo '{\"EnclaveID\": \"../../x\", \"EnclaveCID\": 16}' ;;\n"
    "*:slow) exec sleep 10 ;;\n"
    "*:signal) kill -9 $$ ;;\n"
    "run-enclave:*) echo '{\"EnclaveName\": \"x\", \"EnclaveID\": \"i-abc-enc123\", "
    "\"ProcessID\": 42, \"EnclaveCID\": 16, \"NumberOfCPUs\": 2, \"CPUIDs\": [1, 3], "
    "\"MemoryMiB\": 512}' ;;\n"
    "describe-enclaves:garbage) echo '{\"not\": \"an array\"}' ;;\n"
    "describe-enclaves:noid) echo '[{\"State\": \"RUNNING\"}]' ;;\n"
    "describe-enclaves:nostate) echo '[{\"EnclaveID\": \"i-abc-enc123\"}]' ;;\n"
    "describe-enclaves:terminating) echo '[{\"EnclaveID\": \"i-abc-enc123\", \"State\": "
    "\"TERMINATING\"}]' ;;\n"
    "describe-enclaves:fail) echo 'no permission on /dev/nitro_enclaves' >&2; exit 4 ;;\n"
    "describe-enclaves:*) if [ -e \"$d/gone\" ]; then echo '[]'; else echo '[{\"EnclaveName\": "
    "\"x\", \"EnclaveID\": \"i-abc-enc123\", \"ProcessID\": 42, \"EnclaveCID\": 16, "
    "\"NumberOfCPUs\": 2, \"CPUIDs\": [1, 3], \"MemoryMiB\": 512, \"State\": \"RUNNING\", "
    "\"Flags\": \"NONE\"}]'; fi ;;\n"
    "terminate-enclave:fail) echo 'cannot terminate' >&2; exit 3 ;;\n"
    "terminate-enclave:false) echo '{\"EnclaveID\": \"i-abc-enc123\", \"Terminated\": false}' ;;\n"
    "terminate-enclave:*) touch \"$d/gone\"; echo '{\"EnclaveID\": \"i-abc-enc123\", "
    "\"Terminated\": true}' ;;\n"
    "*) echo \"unknown call $*\" >&2; exit 2 ;;\n"
    "esac\n";

enum agent_mode { AGENT_OK, AGENT_GARBAGE, AGENT_NSM, AGENT_ERROR, AGENT_REFUSE, AGENT_SESSION };

struct fx {
    char dir[64];
    char cli[128];
    struct dcms_enclave_backend *b;
    enum agent_mode agent;
    unsigned cid, port;
    pthread_t thread;
    bool thread_started;
};

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st;
    (void)flag;
    (void)f;
    return remove(p);
}

/* One whole request frame: the backend may send its header and body apart, and
 * an agent that answered (and closed) after the header alone would make the
 * backend's send of the body fail instead of exercising the answer. */
static ssize_t read_frame(int fd, uint8_t *buf, size_t cap)
{
    size_t have = 0;
    for (;;) {
        size_t need =
            have < 4
                ? 4
                : 4 + ((size_t)buf[0] << 24 | (size_t)buf[1] << 16 | (size_t)buf[2] << 8 | buf[3]);
        if (have >= need)
            return (ssize_t)have;
        if (need > cap)
            return -1;
        ssize_t r = read(fd, buf + have, need - have);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return have ? (ssize_t)have : r;
        have += (size_t)r;
    }
}

/* The enclave's agent: one request, one answer, per mode. */
static void *agent_main(void *arg)
{
    int fd = (int)(intptr_t)arg;
    uint8_t buf[256];
    ssize_t n = read_frame(fd, buf, sizeof(buf));
    if (n > 5) {
        uint8_t out[300];
        size_t len = (size_t)n - 5; /* the nonce */
        memcpy(out + 6, buf + 5, len);
        dcms_chan_header(out, DCMS_CHAN_ATTEST_RESP, len + 1);
        out[5] = 0;
        (void)!write(fd, out, len + 6);
    }
    close(fd);
    return NULL;
}

static void *agent_bad_main(void *arg)
{
    int fd = (int)(intptr_t)arg & 0xffff;
    enum agent_mode mode = (enum agent_mode)((intptr_t)arg >> 16);
    uint8_t buf[256];
    if (read_frame(fd, buf, sizeof(buf)) > 0) {
        static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 1};
        static const uint8_t nsm[] = {0, 0, 0, 7, DCMS_CHAN_NSM_REQ, 0, 0, 0, 0, 0, 0};
        static const uint8_t err[] = {0, 0, 0, 3, DCMS_CHAN_ATTEST_RESP, 1, 'x'};
        if (mode == AGENT_GARBAGE)
            (void)!write(fd, garbage, sizeof(garbage));
        else if (mode == AGENT_NSM)
            (void)!write(fd, nsm, sizeof(nsm));
        else
            (void)!write(fd, err, sizeof(err));
    }
    close(fd);
    return NULL;
}

/*
 * A session's peer (the trainer's frames): answers each of two frames with
 * type + 3 and the body's length (u32 BE) and first byte, then asks for an
 * NSM document, which a Nitro enclave never asks dcmsd for.
 */
static void *agent_session_main(void *arg)
{
    int fd = (int)(intptr_t)arg;
    static uint8_t buf[DCMS_CHAN_MAX_FRAME + 4];
    for (int i = 0; i < 2; i++) {
        ssize_t n = read_frame(fd, buf, sizeof(buf));
        if (n < 6)
            break;
        uint8_t out[10];
        uint32_t len = (uint32_t)n - 5;
        dcms_chan_header(out, (uint8_t)(buf[4] + 3), 5);
        out[5] = (uint8_t)(len >> 24);
        out[6] = (uint8_t)(len >> 16);
        out[7] = (uint8_t)(len >> 8);
        out[8] = (uint8_t)len;
        out[9] = buf[5];
        (void)!write(fd, out, sizeof(out));
    }
    static const uint8_t nsm[] = {0, 0, 0, 7, DCMS_CHAN_NSM_REQ, 0, 0, 0, 0, 0, 0};
    (void)!write(fd, nsm, sizeof(nsm));
    close(fd);
    return NULL;
}

static int fake_connect(void *ctx, unsigned cid, unsigned port)
{
    struct fx *x = ctx;
    x->cid = cid;
    x->port = port;
    if (x->agent == AGENT_REFUSE) {
        errno = ECONNREFUSED;
        return -1;
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return -1;
    int rc = x->agent == AGENT_OK
                 ? pthread_create(&x->thread, NULL, agent_main, (void *)(intptr_t)sv[1])
             : x->agent == AGENT_SESSION
                 ? pthread_create(&x->thread, NULL, agent_session_main, (void *)(intptr_t)sv[1])
                 : pthread_create(&x->thread, NULL, agent_bad_main,
                                  (void *)(intptr_t)(sv[1] | (int)x->agent << 16));
    assert_int_equal(rc, 0);
    x->thread_started = true;
    return sv[0];
}

static void set_mode(struct fx *x, const char *text)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/mode", x->dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup(void **state)
{
    struct fx *x = calloc(1, sizeof(*x));
    assert_non_null(x);
    snprintf(x->dir, sizeof(x->dir), "/tmp/dcms-bn-XXXXXX");
    assert_non_null(mkdtemp(x->dir));
    snprintf(x->cli, sizeof(x->cli), "%s/nitro-cli", x->dir);
    FILE *f = fopen(x->cli, "w");
    assert_non_null(f);
    fputs(fake_cli, f);
    fclose(f);
    chmod(x->cli, 0755);
    struct dcms_enclave_nitro_opts o = {.nitro_cli = x->cli,
                                        .vsock_port = 5005,
                                        .timeout_ms = 5000,
                                        .connect = fake_connect,
                                        .connect_ctx = x};
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(dcms_enclave_backend_nitro_new(&o, &x->b, &ei), DCMS_OK);
    assert_string_equal(x->b->name, "nitro");
    *state = x;
    return 0;
}

static int teardown(void **state)
{
    struct fx *x = *state;
    set_mode(x, "");
    dcms_enclave_backend_free(x->b);
    if (x->thread_started)
        pthread_join(x->thread, NULL);
    nftw(x->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(x);
    return 0;
}

static char *calls(struct fx *x)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/calls", x->dir);
    return dcms_test_read_file(path, NULL);
}

static enum dcms_err start(struct fx *x, bool debug, char *ref, struct dcms_errinfo *ei)
{
    struct dcms_enclave_spec sp = {.enclave_id = "e1",
                                   .image_path = "/srv/enclaves/app.eif",
                                   .cpu_cores = 2,
                                   .memory_mb = 512,
                                   .storage_gb = 1,
                                   .debug_mode = debug};
    dcms_errinfo_init(ei, NULL);
    return x->b->start(x->b, &sp, ref, ei);
}

static void test_lifecycle(void **state)
{
    struct fx *x = *state;
    struct dcms_errinfo ei;
    char ref[DCMS_ENCLAVE_REF_MAX];
    assert_int_equal(start(x, false, ref, &ei), DCMS_OK);
    assert_string_equal(ref, "i-abc-enc123");

    struct dcms_enclave_probe p;
    assert_int_equal(x->b->probe(x->b, ref, &p, &ei), DCMS_OK);
    assert_int_equal(p.state, DCMS_ENCLAVE_RUN_RUNNING);
    assert_int_equal(p.memory_limit_bytes, 512u << 20);

    unsigned char nonce[16] = {1, 2, 3}, *doc = NULL;
    size_t doc_len = 0;
    assert_int_equal(x->b->attest(x->b, ref, nonce, sizeof(nonce), &doc, &doc_len, &ei), DCMS_OK);
    assert_int_equal(x->cid, 16);
    assert_int_equal(x->port, 5005);
    assert_int_equal(doc_len, sizeof(nonce)); /* the fake agent echoes the nonce */
    assert_memory_equal(doc, nonce, sizeof(nonce));
    free(doc);
    assert_int_equal(x->b->probe(x->b, ref, &p, &ei), DCMS_OK);
    assert_int_equal(p.channel_bytes_out, 5 + sizeof(nonce));
    assert_int_equal(p.channel_bytes_in, 6 + sizeof(nonce));

    assert_int_equal(x->b->terminate(x->b, ref, &ei), DCMS_OK);
    assert_int_equal(x->b->probe(x->b, ref, &p, &ei), DCMS_OK);
    assert_int_equal(p.state, DCMS_ENCLAVE_RUN_UNKNOWN);
    /* Already gone: OK, and terminate-enclave is not called again. */
    assert_int_equal(x->b->terminate(x->b, ref, &ei), DCMS_OK);

    char *c = calls(x);
    assert_string_equal(c,
                        "run-enclave --eif-path /srv/enclaves/app.eif --cpu-count 2 --memory 512\n"
                        "describe-enclaves\n"
                        "describe-enclaves\n"
                        "describe-enclaves\n"
                        "terminate-enclave --enclave-id i-abc-enc123\n"
                        "describe-enclaves\n"
                        "describe-enclaves\n");
    free(c);
}

static void test_debug_mode(void **state)
{
    struct fx *x = *state;
    struct dcms_errinfo ei;
    char ref[DCMS_ENCLAVE_REF_MAX];
    assert_int_equal(start(x, true, ref, &ei), DCMS_OK);
    char *c = calls(x);
    assert_non_null(strstr(c, "--memory 512 --debug-mode\n"));
    free(c);
}

static void expect_start_error(struct fx *x, const char *mode, const char *message)
{
    set_mode(x, mode);
    struct dcms_errinfo ei;
    char ref[DCMS_ENCLAVE_REF_MAX];
    assert_int_equal(start(x, false, ref, &ei), DCMS_ERR_UNAVAILABLE);
    if (!strstr(ei.message, message))
        fail_msg("%s: expected \"%s\" in \"%s\"", mode, message, ei.message);
    assert_string_equal(ref, "");
}

static void test_run_enclave_errors(void **state)
{
    struct fx *x = *state;
    expect_start_error(x, "run-enclave=fail",
                       "nitro-cli run-enclave failed (exit 1): [ E26 ] Insufficient memory");
    expect_start_error(x, "run-enclave=garbage", "nitro-cli run-enclave printed malformed JSON");
    expect_start_error(x, "run-enclave=noid", "no valid EnclaveID");
    expect_start_error(x, "run-enclave=badid", "no valid EnclaveID");
    expect_start_error(x, "run-enclave=nocid", "no valid EnclaveCID");
    expect_start_error(x, "run-enclave=signal", "was killed by signal 9");
    int64_t t0 = (int64_t)time(NULL);
    expect_start_error(x, "run-enclave=slow", "did not finish within 5000 ms");
    assert_true((int64_t)time(NULL) - t0 < 8);
}

static void test_missing_program(void **state)
{
    struct fx *x = *state;
    struct dcms_enclave_backend *b;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_enclave_nitro_opts o = {.nitro_cli = "/nonexistent/nitro-cli", .vsock_port = 5005};
    assert_int_equal(dcms_enclave_backend_nitro_new(&o, &b, &ei), DCMS_OK);
    char ref[DCMS_ENCLAVE_REF_MAX];
    struct dcms_enclave_spec sp = {
        .enclave_id = "e1", .image_path = "/x.eif", .cpu_cores = 2, .memory_mb = 512};
    assert_int_equal(b->start(b, &sp, ref, &ei), DCMS_ERR_UNAVAILABLE);
    assert_non_null(strstr(ei.message, "/nonexistent/nitro-cli"));
    dcms_enclave_backend_free(b);
    o.vsock_port = 0;
    assert_int_equal(dcms_enclave_backend_nitro_new(&o, &b, &ei), DCMS_ERR_CONFIG);
    (void)x;
}

static void test_describe_errors(void **state)
{
    struct fx *x = *state;
    struct dcms_errinfo ei;
    char ref[DCMS_ENCLAVE_REF_MAX];
    assert_int_equal(start(x, false, ref, &ei), DCMS_OK);
    struct dcms_enclave_probe p;
    static const struct {
        const char *mode, *message;
    } cases[] = {
        {"describe-enclaves=garbage", "printed malformed JSON (expected an array)"},
        {"describe-enclaves=noid", "lists an enclave without EnclaveID"},
        {"describe-enclaves=nostate", "gives no State"},
        {"describe-enclaves=fail", "failed (exit 4): no permission on /dev/nitro_enclaves"},
        {"describe-enclaves=slow", "did not finish within"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        set_mode(x, cases[i].mode);
        dcms_errinfo_init(&ei, NULL);
        assert_int_equal(x->b->probe(x->b, ref, &p, &ei), DCMS_ERR_UNAVAILABLE);
        if (!strstr(ei.message, cases[i].message))
            fail_msg("%s: \"%s\"", cases[i].mode, ei.message);
    }
    set_mode(x, "describe-enclaves=terminating");
    assert_int_equal(x->b->probe(x->b, ref, &p, &ei), DCMS_OK);
    assert_int_equal(p.state, DCMS_ENCLAVE_RUN_EXITED);
    assert_string_equal(p.reason, "nitro-cli reports the enclave terminating");
    /* Started here but no longer listed: it ended. */
    set_mode(x, "");
    char gone[128];
    snprintf(gone, sizeof(gone), "%s/gone", x->dir);
    fclose(fopen(gone, "w"));
    assert_int_equal(x->b->probe(x->b, ref, &p, &ei), DCMS_OK);
    assert_int_equal(p.state, DCMS_ENCLAVE_RUN_EXITED);
    assert_non_null(strstr(p.reason, "no longer listed"));
}

static void test_terminate_errors(void **state)
{
    struct fx *x = *state;
    struct dcms_errinfo ei;
    char ref[DCMS_ENCLAVE_REF_MAX];
    assert_int_equal(start(x, false, ref, &ei), DCMS_OK);
    set_mode(x, "terminate-enclave=fail");
    assert_int_equal(x->b->terminate(x->b, ref, &ei), DCMS_ERR_UNAVAILABLE);
    assert_non_null(strstr(ei.message, "nitro-cli terminate-enclave failed (exit 3)"));
    set_mode(x, "terminate-enclave=false");
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(x->b->terminate(x->b, ref, &ei), DCMS_ERR_UNAVAILABLE);
    assert_non_null(strstr(ei.message, "did not report Terminated"));
    set_mode(x, "describe-enclaves=fail");
    assert_int_equal(x->b->terminate(x->b, ref, &ei), DCMS_ERR_UNAVAILABLE);
    set_mode(x, "terminate-enclave=slow");
    assert_int_equal(x->b->terminate(x->b, ref, &ei), DCMS_ERR_UNAVAILABLE);
    assert_non_null(strstr(ei.message, "did not finish within"));
    set_mode(x, "");
    assert_int_equal(x->b->terminate(x->b, ref, &ei), DCMS_OK);
    /* A reference that cannot be an enclave id is not passed to nitro-cli. */
    assert_int_equal(x->b->terminate(x->b, "--help", &ei), DCMS_OK);
    char *c = calls(x);
    assert_null(strstr(c, "--help"));
    free(c);
}

static void test_no_suspend(void **state)
{
    struct fx *x = *state;
    struct dcms_errinfo ei;
    char ref[DCMS_ENCLAVE_REF_MAX];
    assert_int_equal(start(x, false, ref, &ei), DCMS_OK);
    assert_int_equal(x->b->suspend(x->b, ref, &ei), DCMS_ERR_CONFLICT);
    assert_string_equal(ei.message, "nitro enclaves cannot be suspended");
    assert_int_equal(x->b->resume(x->b, ref, &ei), DCMS_ERR_CONFLICT);
}

static void expect_attest_error(struct fx *x, const char *ref, enum agent_mode mode,
                                const char *message)
{
    if (x->thread_started) {
        pthread_join(x->thread, NULL);
        x->thread_started = false;
    }
    x->agent = mode;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    unsigned char nonce[8] = {7}, *doc = NULL;
    size_t doc_len = 0;
    assert_int_equal(x->b->attest(x->b, ref, nonce, sizeof(nonce), &doc, &doc_len, &ei),
                     DCMS_ERR_UNAVAILABLE);
    assert_null(doc);
    if (!strstr(ei.message, message))
        fail_msg("agent mode %d: \"%s\"", mode, ei.message);
}

static void test_attest_errors(void **state)
{
    struct fx *x = *state;
    struct dcms_errinfo ei;
    char ref[DCMS_ENCLAVE_REF_MAX];
    assert_int_equal(start(x, false, ref, &ei), DCMS_OK);
    expect_attest_error(x, ref, AGENT_REFUSE, "cannot reach the enclave on vsock 16:5005");
    expect_attest_error(x, ref, AGENT_GARBAGE, "bad frame");
    expect_attest_error(x, ref, AGENT_NSM, "unexpected frame");
    expect_attest_error(x, ref, AGENT_ERROR, "could not attest");
    unsigned char nonce[65] = {0}, *doc = NULL;
    size_t doc_len = 0;
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(x->b->attest(x->b, ref, nonce, sizeof(nonce), &doc, &doc_len, &ei),
                     DCMS_ERR_VALIDATION);
    assert_int_equal(x->b->attest(x->b, "i-other-enc1", nonce, 8, &doc, &doc_len, &ei),
                     DCMS_ERR_NOT_FOUND);
}

/* After a dcmsd restart: a new backend finds a running enclave's CID through describe-enclaves. */
static void test_attest_after_restart(void **state)
{
    struct fx *x = *state;
    struct dcms_enclave_nitro_opts o = {.nitro_cli = x->cli,
                                        .vsock_port = 5006,
                                        .timeout_ms = 5000,
                                        .connect = fake_connect,
                                        .connect_ctx = x};
    struct dcms_enclave_backend *b;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(dcms_enclave_backend_nitro_new(&o, &b, &ei), DCMS_OK);
    struct dcms_enclave_probe p;
    assert_int_equal(b->probe(b, "i-abc-enc123", &p, &ei), DCMS_OK);
    assert_int_equal(p.state, DCMS_ENCLAVE_RUN_RUNNING);
    unsigned char nonce[4] = {1, 2, 3, 4}, *doc = NULL;
    size_t doc_len = 0;
    assert_int_equal(b->attest(b, "i-abc-enc123", nonce, sizeof(nonce), &doc, &doc_len, &ei),
                     DCMS_OK);
    assert_int_equal(x->cid, 16);
    assert_int_equal(x->port, 5006);
    free(doc);
    pthread_join(x->thread, NULL);
    x->thread_started = false;
    dcms_enclave_backend_free(b); /* it started nothing: terminates nothing */
    char *c = calls(x);
    assert_null(strstr(c, "terminate-enclave"));
    free(c);
}

/* A session's channel: its own vsock connection, the application's frames both ways. */
static void test_session_channel(void **state)
{
    struct fx *x = *state;
    struct dcms_errinfo ei;
    char ref[DCMS_ENCLAVE_REF_MAX];
    assert_int_equal(start(x, false, ref, &ei), DCMS_OK);
    struct dcms_enclave_channel *ch = NULL;
    x->agent = AGENT_REFUSE;
    assert_int_equal(x->b->channel(x->b, ref, &ch, &ei), DCMS_ERR_UNAVAILABLE);
    assert_null(ch);
    x->agent = AGENT_SESSION;
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(x->b->channel(x->b, ref, &ch, &ei), DCMS_OK);
    assert_int_equal(x->cid, 16);
    assert_int_equal(x->port, 5005);
    int64_t deadline = dcms_clock_mono_us() / 1000 + 5000;
    static uint8_t buf[DCMS_CHAN_MAX_FRAME + 4], big[16000];
    struct dcms_chan_frame f;
    assert_int_equal(ch->send(ch, 16, (const uint8_t *)"job", 3, deadline, &ei), DCMS_OK);
    assert_int_equal(ch->recv(ch, buf, &f, deadline, &ei), DCMS_OK);
    assert_int_equal(f.type, 19);
    assert_int_equal(f.body_len, 5);
    assert_memory_equal(f.body, "\0\0\0\3j", 5);
    memset(big, 'z', sizeof(big));
    assert_int_equal(ch->send(ch, 18, big, sizeof(big), deadline, &ei), DCMS_OK);
    assert_int_equal(ch->recv(ch, buf, &f, deadline, &ei), DCMS_OK);
    assert_int_equal(f.type, 21);
    assert_memory_equal(f.body, "\0\0\x3e\x80z", 5); /* 16000 */
    /* An NSM request is a protocol error on Nitro. */
    assert_int_equal(ch->recv(ch, buf, &f, deadline, &ei), DCMS_ERR_UNAVAILABLE);
    assert_non_null(strstr(ei.message, "an NSM request"));
    ch->close(ch);
    struct dcms_enclave_probe p;
    assert_int_equal(x->b->probe(x->b, ref, &p, &ei), DCMS_OK);
    assert_int_equal(p.channel_bytes_out, 5 + 3 + 5 + sizeof(big));
    assert_int_equal(p.channel_bytes_in, 10 + 10 + 11);
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(x->b->channel(x->b, "i-other-enc1", &ch, &ei), DCMS_ERR_NOT_FOUND);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lifecycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_debug_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_enclave_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_program, setup, teardown),
        cmocka_unit_test_setup_teardown(test_describe_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_terminate_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_suspend, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attest_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attest_after_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_channel, setup, teardown),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
