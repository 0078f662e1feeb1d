/*
 * Secrets are wiped on the request path (src/http/server.c, src/core/str.c,
 * the jansson free set by dcms_crypto_init): a login and a refresh go
 * through a real dcmsd HTTP server in this process, and no block that dcms
 * code (or jansson, through dcms_free_wiped) gives back to malloc may still
 * hold the password or one of the issued tokens.
 *
 * How it sees the blocks: this binary is linked with -Wl,--wrap=free and
 * -Wl,--wrap=realloc (tests/unit/CMakeLists.txt), so every free() and
 * realloc() called from libdcms.a and from this file goes through the
 * wrappers below. While recording, each block about to be freed, and each
 * block realloc may move away from, is copied into a log; the log is then
 * searched for the secrets, which are only known once the responses are
 * read. Blocks freed by the shared libraries themselves (libmicrohttpd's
 * connection pool, OpenSSL, SQLite) are not seen: they are out of dcms'
 * reach.
 *
 * The login body is sent once with Content-Length and once chunked with the
 * password in the first chunk and whitespace after it, so the body buffer
 * grows (and would leave copies behind) after the password is in it.
 */
#include "testdb.h"

#include <arpa/inet.h>
#include <malloc.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "dcms/app.h"
#include "dcms/audit.h"
#include "dcms/config.h"
#include "dcms/crypto.h"
#include "dcms/iam.h"
#include "dcms/keys.h"
#include "dcms/metrics.h"
#include "dcms/server.h"
#include "dcms/store.h"

#define PASSWORD "wipe-canary-7f3a9c1e-correct-horse-battery"
#define LOG_MAX (32u << 20)

/* ---- the free/realloc wrappers and the log of released blocks ---- */

void __real_free(void *p);
void *__real_realloc(void *p, size_t n);
void __wrap_free(void *p);
void *__wrap_realloc(void *p, size_t n);

static atomic_bool recording;
static atomic_size_t blocks_seen;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char released[LOG_MAX];
static size_t released_len;
static bool released_full;

static void record(const void *p)
{
    if (!p || !atomic_load(&recording))
        return;
    atomic_fetch_add(&blocks_seen, 1);
    size_t n = malloc_usable_size((void *)p);
    const unsigned char *b = p;
    size_t nonzero = 0;
    for (size_t i = 0; i < n && !nonzero; i++)
        nonzero = b[i];
    if (!nonzero)
        return; /* wiped (or never written): nothing to keep */
    pthread_mutex_lock(&log_lock);
    if (released_len + n + 1 > LOG_MAX) {
        released_full = true;
    } else {
        memcpy(released + released_len, p, n);
        released_len += n;
        released[released_len++] = '\0'; /* a secret never spans two blocks */
    }
    pthread_mutex_unlock(&log_lock);
}

void __wrap_free(void *p)
{
    record(p);
    __real_free(p);
}

/* Whatever realloc may move away from is left behind in freed memory. */
void *__wrap_realloc(void *p, size_t n)
{
    record(p);
    return __real_realloc(p, n);
}

static void recording_start(void)
{
    pthread_mutex_lock(&log_lock);
    released_len = 0;
    released_full = false;
    pthread_mutex_unlock(&log_lock);
    atomic_store(&blocks_seen, 0);
    atomic_store(&recording, true);
}

/* True (and says so) if a released block held `secret`. */
static bool was_released(const char *what, const char *secret)
{
    assert_false(released_full);
    size_t n = strlen(secret);
    assert_true(n >= 16);
    for (size_t i = 0; i + n <= released_len; i++)
        if (memcmp(released + i, secret, n) == 0) {
            print_error("%s was released unwiped (found in a freed block)\n", what);
            return true;
        }
    return false;
}

static void assert_not_released(const char *what, const char *secret)
{
    assert_false(was_released(what, secret));
}

/* ---- a dcmsd HTTP server in this process ---- */

struct fixture {
    struct dcms_testdb db; /* first: see testdb.h */
    struct dcms_config cfg;
    struct dcms_app app;
    struct dcms_http_server *srv;
};

DCMS_TESTDB_SETUPS("/tmp/dcms-wipe-XXXXXX", "dcms_wipe_")

static int teardown(void **state)
{
    struct fixture *f = *state;
    atomic_store(&recording, false);
    dcms_http_server_stop(f->srv);
    dcms_iam_close(f->app.iam);
    dcms_keys_close(f->app.keys);
    dcms_audit_close(f->app.audit);
    dcms_store_close(f->app.store);
    dcms_metrics_free(f->app.metrics);
    dcms_testdb_cleanup(&f->db);
    free(f);
    return 0;
}

static void start_server(struct fixture *f)
{
    setenv("DCMS_DATA_DIR", f->db.dir, 1);
    setenv("DCMS_DATABASE_URL", f->db.url, 1);
    setenv("DCMS_LISTEN", "127.0.0.1:0", 1);
    setenv("DCMS_ADMIN_EMAIL", "admin@wipe.test", 1);
    setenv("DCMS_ADMIN_PASSWORD", PASSWORD, 1);
    setenv("DCMS_PWHASH_MEMLIMIT_KIB", "8192", 1);
    setenv("DCMS_PWHASH_OPSLIMIT", "1", 1);
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    CHECK(dcms_config_load(&f->cfg, NULL, &ei), ei);
    f->app.cfg = &f->cfg;
    struct dcms_store_opts so = {4, 30000};
    CHECK(dcms_store_open(f->cfg.database_url, &so, &f->app.store, &ei), ei);
    struct dcms_audit_opts ao = {f->cfg.audit_key_file, 1000, 3600, 1000, NULL, 0};
    CHECK(dcms_audit_open(f->app.store, &ao, &f->app.audit, &ei), ei);
    struct dcms_keys_opts ko;
    dcms_keys_opts_from_config(&f->cfg, &ko);
    CHECK(dcms_keys_open(&ko, f->app.store, f->app.audit, &f->app.keys, &ei), ei);
    CHECK(dcms_iam_open(&f->app, &f->app.iam, &ei), ei);
    sodium_memzero(f->cfg.admin_password, sizeof(f->cfg.admin_password));
    unsetenv("DCMS_ADMIN_PASSWORD");
    assert_non_null(f->app.metrics = dcms_metrics_new());
    CHECK(dcms_http_server_start(&f->app, 2, &f->srv, &ei), ei);
}

static void send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        assert_true(w > 0);
        p += w;
        n -= (size_t)w;
    }
}

static void pause_ms(long ms)
{
    nanosleep(&(struct timespec){0, ms * 1000000L}, NULL);
}

/*
 * POSTs `body` to `path` (in `nchunks` chunks of Transfer-Encoding: chunked,
 * a short pause between them, or with Content-Length when nchunks is 0) and
 * returns the JSON body of the answer, which must be 200.
 */
static json_t *post(struct fixture *f, const char *path, const char *const *chunks, size_t nchunks)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons(dcms_http_server_port(f->srv))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    char head[512];
    if (nchunks == 0) {
        snprintf(head, sizeof(head),
                 "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                 "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                 path, strlen(chunks[0]));
        send_all(fd, head, strlen(head));
        send_all(fd, chunks[0], strlen(chunks[0]));
    } else {
        snprintf(head, sizeof(head),
                 "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                 "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
                 path);
        send_all(fd, head, strlen(head));
        for (size_t i = 0; i < nchunks; i++) {
            char size[32];
            snprintf(size, sizeof(size), "%zx\r\n", strlen(chunks[i]));
            send_all(fd, size, strlen(size));
            send_all(fd, chunks[i], strlen(chunks[i]));
            send_all(fd, "\r\n", 2);
            pause_ms(20); /* let the server read each chunk on its own */
        }
        send_all(fd, "0\r\n\r\n", 5);
    }
    static char answer[65536];
    size_t len = 0;
    ssize_t r;
    while (len < sizeof(answer) - 1 &&
           (r = recv(fd, answer + len, sizeof(answer) - 1 - len, 0)) > 0)
        len += (size_t)r;
    answer[len] = '\0';
    close(fd);
    if (strncmp(answer, "HTTP/1.1 200 ", 13) != 0)
        fail_msg("POST %s answered: %.300s", path, answer);
    const char *body = strstr(answer, "\r\n\r\n");
    assert_non_null(body);
    json_t *v = json_loads(body + 4, 0, NULL);
    assert_non_null(v);
    sodium_memzero(answer, len);
    return v;
}

static char *member(json_t *v, const char *name)
{
    const char *s = json_string_value(json_object_get(v, name));
    assert_non_null(s);
    return strdup(s);
}

/*
 * The member as it appears in a rendered response body. The bare access
 * token is not searched for: src/iam/iam_session.c frees its own copy of it
 * (token_response), and wiping that copy belongs to the IAM module.
 */
static char *in_json(const char *name, const char *value)
{
    size_t n = strlen(name) + strlen(value) + 8;
    char *s = malloc(n);
    assert_non_null(s);
    snprintf(s, n, "\"%s\":\"%s\"", name, value);
    return s;
}

/* Login (with the body as `chunks`), then refresh; no secret may be left in a released block. */
static void login_and_refresh(struct fixture *f, const char *const *chunks, size_t nchunks)
{
    start_server(f);
    recording_start();
    json_t *login = post(f, "/api/v1/auth/login", chunks, nchunks);
    char *access1 = member(login, "access_token"), *refresh1 = member(login, "refresh_token");
    char *device1 = member(login, "device_token");
    char body[512];
    snprintf(body, sizeof(body), "{\"refresh_token\":\"%s\"}", refresh1);
    const char *rchunks[] = {body};
    json_t *refresh = post(f, "/api/v1/auth/refresh", rchunks, 0);
    char *access2 = member(refresh, "access_token"), *refresh2 = member(refresh, "refresh_token");
    /* Stopping the server finishes both requests: every release has happened. */
    dcms_http_server_stop(f->srv);
    f->srv = NULL;
    atomic_store(&recording, false);
    json_decref(login);
    json_decref(refresh);

    /* The wrappers did see the request path's blocks (so the search below means something). */
    assert_true(atomic_load(&blocks_seen) > 20);
    char *body1 = in_json("access_token", access1), *body2 = in_json("access_token", access2);
    int leaks = was_released("the login password", PASSWORD) +
                was_released("the login's refresh token", refresh1) +
                was_released("the login's device token", device1) +
                was_released("the refreshed refresh token", refresh2) +
                was_released("the login's response body", body1) +
                was_released("the refresh's response body", body2);
    assert_int_equal(leaks, 0);
    free(body1);
    free(body2);
    free(access1);
    free(refresh1);
    free(device1);
    free(access2);
    free(refresh2);
}

static void login_body_wiped(struct fixture *f)
{
    const char *chunks[] = {"{\"email\":\"admin@wipe.test\",\"password\":\"" PASSWORD "\"}"};
    login_and_refresh(f, chunks, 0);
}
DCMS_TESTDB_CASE(login_body_wiped)

static void chunked_login_body_wiped(struct fixture *f)
{
    static char pad[1500];
    memset(pad, ' ', sizeof(pad) - 1);
    const char *chunks[] = {"{\"email\":\"admin@wipe.test\",\"password\":\"" PASSWORD "\"", pad,
                            pad, pad, "}"};
    login_and_refresh(f, chunks, sizeof(chunks) / sizeof(chunks[0]));
}
DCMS_TESTDB_CASE(chunked_login_body_wiped)

/* The jansson free set by dcms_crypto_init wipes a parsed tree's strings. */
static void json_tree_wiped(void **state)
{
    (void)state;
    assert_int_equal(dcms_crypto_init(), DCMS_OK);
    recording_start();
    json_t *v = json_loads("{\"password\":\"" PASSWORD "\"}", 0, NULL);
    assert_non_null(v);
    json_decref(v);
    atomic_store(&recording, false);
    assert_true(atomic_load(&blocks_seen) > 0); /* jansson frees through dcms_free_wiped */
    assert_not_released("a password parsed by jansson", PASSWORD);
}

/* A growing secret buffer leaves no copy of what it held, and its release wipes it. */
static void buf_growth_wiped(void **state)
{
    (void)state;
    struct dcms_buf b;
    dcms_buf_init_secret(&b, 1u << 20);
    recording_start();
    assert_int_equal(dcms_buf_appends(&b, PASSWORD), DCMS_OK);
    for (int i = 0; i < 64; i++)
        assert_int_equal(dcms_buf_appends(&b, "................................"), DCMS_OK);
    dcms_buf_release(&b);
    atomic_store(&recording, false);
    assert_true(atomic_load(&blocks_seen) >= 5);
    assert_not_released("a growing buffer's old copy", PASSWORD);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(json_tree_wiped),
    cmocka_unit_test(buf_growth_wiped),
    cmocka_unit_test_setup_teardown(login_body_wiped_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(login_body_wiped_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(chunked_login_body_wiped_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(chunked_login_body_wiped_pg, setup_pg, teardown),
};

DCMS_TEST_MAIN(tests)
