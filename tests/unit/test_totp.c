/*
 * TOTP (src/iam/totp.c, mfa.c): every RFC 6238 vector of
 * shared/vectors/totp through the code generator, base32, the drift
 * window, and on both store backends enrolment, confirmation, one use per
 * code (replay and older steps refused, also between two threads), the
 * sealed secret, recovery codes used once, and dcms_iam_totp_check.
 */
#include "testdb.h"

#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "dcms/app.h"
#include "dcms/arena.h"
#include "dcms/audit.h"
#include "dcms/keys.h"
#include "dcms/clock.h"
#include "dcms/config.h"
#include "dcms/credentials.h"
#include "dcms/crypto.h"
#include "dcms/fs.h"
#include "dcms/store.h"
#include "dcms/uuid.h"
#include "iam/mfa_int.h"

/* ---- pure ---- */

static size_t hex_decode(const char *hex, unsigned char *out, size_t cap)
{
    size_t n = strlen(hex) / 2;
    assert_true(n <= cap);
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        out[i] = (unsigned char)v;
    }
    return n;
}

static void rfc6238_vectors(void **state)
{
    (void)state;
    char *text = dcms_test_read_file(DCMS_VECTORS_DIR "/totp/rfc6238.tsv", NULL);
    size_t rows = 0;
    for (char *line = text, *end; line && *line; line = end ? end + 1 : NULL) {
        end = strchr(line, '\n');
        if (end)
            *end = '\0';
        if (line[0] == '#' || line[0] == '\0')
            continue;
        char *f[9] = {0};
        size_t nf = 0;
        for (char *t = line; t && nf < 9;) {
            f[nf++] = t;
            t = strchr(t, '\t');
            if (t)
                *t++ = '\0';
        }
        assert_int_equal(nf, 9);
        long long t = strtoll(f[0], NULL, 10);
        enum iam_totp_alg alg = strcmp(f[4], "SHA256") == 0   ? IAM_TOTP_SHA256
                                : strcmp(f[4], "SHA512") == 0 ? IAM_TOTP_SHA512
                                                              : IAM_TOTP_SHA1;
        unsigned char key[64];
        size_t klen = hex_decode(f[5], key, sizeof(key));
        unsigned step = (unsigned)strtoul(f[6], NULL, 10);
        unsigned digits = (unsigned)strtoul(f[8], NULL, 10);
        assert_int_equal(strtoll(f[7], NULL, 10), 0);
        assert_int_equal(strtoll(f[2], NULL, 16), t / step); /* T as the vectors say */
        char code[10];
        assert_int_equal(iam_totp_generate(key, klen, t, step, digits, alg, code), DCMS_OK);
        if (strcmp(code, f[3]) != 0)
            fail_msg("t=%lld %s: got %s, want %s", t, f[4], code, f[3]);
        rows++;
    }
    assert_int_equal(rows, 18);
    free(text);
}

static void base32(void **state)
{
    (void)state;
    /* RFC 4648 section 10, without padding. */
    static const char *const want[] = {"",        "MY",       "MZXQ",      "MZXW6",
                                       "MZXW6YQ", "MZXW6YTB", "MZXW6YTBOI"};
    for (size_t n = 0; n <= 6; n++) {
        char out[16];
        iam_base32_encode(out, (const unsigned char *)"foobar", n);
        assert_string_equal(out, want[n]);
    }
}

static void window(void **state)
{
    (void)state;
    unsigned char key[IAM_TOTP_SECRET_BYTES];
    randombytes_buf(key, sizeof(key));
    const int64_t t = 1800000015; /* inside step 60000000 */
    char code[8];
    uint64_t step = 0;
    for (int d = -1; d <= 1; d++) {
        assert_int_equal(
            iam_totp_generate(key, sizeof(key), t + d * 30, 30, 6, IAM_TOTP_SHA1, code), DCMS_OK);
        assert_int_equal(iam_totp_match(key, sizeof(key), t, code, &step), DCMS_OK);
        assert_int_equal(step, (uint64_t)(60000000 + d));
    }
    for (int d = -3; d <= 3; d += 6) {
        assert_int_equal(
            iam_totp_generate(key, sizeof(key), t + d * 30, 30, 6, IAM_TOTP_SHA1, code), DCMS_OK);
        assert_int_equal(iam_totp_match(key, sizeof(key), t, code, &step), DCMS_ERR_VALIDATION);
    }
    assert_int_equal(iam_totp_match(key, sizeof(key), t, "12345", &step), DCMS_ERR_VALIDATION);
    assert_int_equal(iam_totp_match(key, sizeof(key), t, "12345a", &step), DCMS_ERR_VALIDATION);
    assert_int_equal(iam_totp_match(key, sizeof(key), t, "1234567", &step), DCMS_ERR_VALIDATION);
    assert_int_equal(iam_totp_match(key, sizeof(key), t, NULL, &step), DCMS_ERR_VALIDATION);
}

/* ---- on the store ---- */

struct fixture {
    struct dcms_testdb db; /* first: see testdb.h */
    struct dcms_config cfg;
    struct dcms_app app;
    struct dcms_iam *iam;
    char admin_id[DCMS_UUID_STRLEN];
};

DCMS_TESTDB_SETUPS("/tmp/dcms-totp-XXXXXX", "dcms_totp_")

static int teardown(void **state)
{
    struct fixture *f = *state;
    dcms_iam_close(f->iam);
    dcms_keys_close(f->app.keys);
    f->app.keys = NULL;
    dcms_audit_close(f->app.audit);
    dcms_store_close(f->app.store);
    dcms_testdb_cleanup(&f->db);
    free(f);
    return 0;
}

static struct dcms_query q_admin = DCMS_QUERY("t_admin", "SELECT id FROM identities LIMIT 1");
static struct dcms_query q_sealed =
    DCMS_QUERY("t_sealed", "SELECT secret_sealed FROM totp_credentials WHERE identity_id = $1");

/* Store, audit and IAM with a bootstrap admin, the way dcmsd starts them. */
static void open_all(struct fixture *f)
{
    setenv("DCMS_DATA_DIR", f->db.dir, 1);
    setenv("DCMS_DATABASE_URL", f->db.url, 1);
    setenv("DCMS_ADMIN_EMAIL", "admin@totp.test", 1);
    setenv("DCMS_ADMIN_PASSWORD", "totp-admin-passphrase-42", 1);
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
    /* IAM seals its secrets under a data key from the keyring. */
    snprintf(f->cfg.keys_file, sizeof(f->cfg.keys_file), "%s/keys/keyring", f->db.dir);
    struct dcms_keys_opts ko;
    dcms_keys_opts_from_config(&f->cfg, &ko);
    CHECK(dcms_keys_open(&ko, f->app.store, f->app.audit, &f->app.keys, &ei), ei);
    CHECK(dcms_iam_open(&f->app, &f->iam, &ei), ei);
    f->app.iam = f->iam;
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows;
    CHECK(dcms_store_begin(f->app.store, DCMS_TX_READ, &tx, &ei), ei);
    CHECK(dcms_store_exec(tx, &q_admin, NULL, 0, &rows, NULL, &ei), ei);
    snprintf(f->admin_id, sizeof(f->admin_id), "%s", dcms_store_rows_text(rows, 0, 0));
    dcms_store_rows_free(rows);
    dcms_store_rollback(tx);
}

static size_t base32_decode(const char *s, unsigned char *out)
{
    size_t n = 0;
    unsigned acc = 0, bits = 0;
    for (; *s; s++) {
        const char *abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        const char *p = strchr(abc, *s);
        assert_non_null(p);
        acc = (acc << 5) | (unsigned)(p - abc);
        bits += 5;
        if (bits >= 8) {
            out[n++] = (unsigned char)(acc >> (bits - 8));
            bits -= 8;
        }
    }
    return n;
}

/* Enrols and confirms TOTP for the admin; key[] receives the secret, *confirmed_s the time. */
static json_t *enrol(struct fixture *f, unsigned char key[IAM_TOTP_SECRET_BYTES],
                     int64_t *confirmed_s)
{
    struct dcms_principal p = {0};
    snprintf(p.id, sizeof(p.id), "%s", f->admin_id);
    p.amr = DCMS_AMR_PWD;
    p.auth_time_s = dcms_clock_now_us() / 1000000; /* a fresh login (step-up) */
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct iam_call c = {f->iam, &p, NULL, NULL, &ei};
    json_t *en = NULL, *conf = NULL;
    CHECK(iam_totp_enroll(&c, &en), ei);
    const char *secret = json_string_value(json_object_get(en, "secret"));
    assert_int_equal(strlen(secret), 32);
    assert_non_null(strstr(json_string_value(json_object_get(en, "otpauth_uri")), secret));
    assert_int_equal(base32_decode(secret, key), IAM_TOTP_SECRET_BYTES);

    /* The store holds the secret sealed, bound to the identity. */
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows;
    CHECK(dcms_store_begin(f->app.store, DCMS_TX_READ, &tx, &ei), ei);
    CHECK(dcms_store_exec(tx, &q_sealed, (struct dcms_store_val[]){DCMS_VAL_TEXT(f->admin_id)}, 1,
                          &rows, NULL, &ei),
          ei);
    const char *sealed = dcms_store_rows_text(rows, 0, 0);
    assert_null(strstr(sealed, secret));
    unsigned char out[64];
    size_t olen = 0;
    assert_int_equal(iam_unseal(f->iam, sealed, f->admin_id, out, sizeof(out), &olen), DCMS_OK);
    assert_int_equal(olen, IAM_TOTP_SECRET_BYTES);
    assert_memory_equal(out, key, olen);
    assert_int_equal(
        iam_unseal(f->iam, sealed, "01a20a81-0000-7000-8000-000000000000", out, sizeof(out), &olen),
        DCMS_ERR_CRYPTO);
    dcms_store_rows_free(rows);
    dcms_store_rollback(tx);

    char code[8], wrong[8];
    *confirmed_s = dcms_clock_now_us() / 1000000;
    assert_int_equal(
        iam_totp_generate(key, IAM_TOTP_SECRET_BYTES, *confirmed_s, 30, 6, IAM_TOTP_SHA1, code),
        DCMS_OK);
    /* A wrong first code leaves it pending. */
    snprintf(wrong, sizeof(wrong), "%06ld", (strtol(code, NULL, 10) + 500000) % 1000000);
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(iam_totp_confirm(&c, wrong, &conf), DCMS_ERR_VALIDATION);
    dcms_errinfo_init(&ei, NULL);
    CHECK(iam_totp_confirm(&c, code, &conf), ei);
    assert_int_equal(json_array_size(json_object_get(conf, "recovery_codes")), 10);
    /* Confirmed: the password-only session may no longer change credentials (step-up) ... */
    json_t *again = NULL;
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(iam_totp_enroll(&c, &again), DCMS_ERR_REAUTH_REQUIRED);
    /* ... and for a session started with the code, enrolling again is refused. */
    p.amr |= DCMS_AMR_OTP | DCMS_AMR_MFA;
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(iam_totp_enroll(&c, &again), DCMS_ERR_CONFLICT);
    json_decref(en);
    return conf;
}

static void totp_once(struct fixture *f)
{
    open_all(f);
    unsigned char key[IAM_TOTP_SECRET_BYTES];
    int64_t t0;
    json_t *conf = enrol(f, key, &t0);
    struct dcms_errinfo ei;
    char code[8];
    /* The confirming code is used up: the same code again is a replay. */
    assert_int_equal(iam_totp_generate(key, sizeof(key), t0, 30, 6, IAM_TOTP_SHA1, code), DCMS_OK);
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(iam_totp_consume(f->iam, f->admin_id, code, t0, "totp", &ei),
                     DCMS_ERR_VALIDATION);
    /* The next step's code works once; after it, older steps are refused too. */
    assert_int_equal(iam_totp_generate(key, sizeof(key), t0 + 30, 30, 6, IAM_TOTP_SHA1, code),
                     DCMS_OK);
    dcms_errinfo_init(&ei, NULL);
    CHECK(iam_totp_consume(f->iam, f->admin_id, code, t0 + 30, "totp", &ei), ei);
    struct dcms_arena *a = dcms_arena_new(0);
    dcms_errinfo_init(&ei, a);
    assert_int_equal(iam_totp_consume(f->iam, f->admin_id, code, t0 + 30, "totp", &ei),
                     DCMS_ERR_VALIDATION);
    assert_int_equal(ei.ndetails, 1);
    assert_string_equal(ei.details[0].field, "totp");
    dcms_arena_free(a);
    assert_int_equal(iam_totp_generate(key, sizeof(key), t0, 30, 6, IAM_TOTP_SHA1, code), DCMS_OK);
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(iam_totp_consume(f->iam, f->admin_id, code, t0 + 30, "totp", &ei),
                     DCMS_ERR_VALIDATION);
    /* A code from the future step, inside the window, is accepted (drift). */
    assert_int_equal(iam_totp_generate(key, sizeof(key), t0 + 90, 30, 6, IAM_TOTP_SHA1, code),
                     DCMS_OK);
    dcms_errinfo_init(&ei, NULL);
    CHECK(iam_totp_consume(f->iam, f->admin_id, code, t0 + 60, "totp", &ei), ei);

    /* Recovery codes: each works once, with or without dashes, any case. */
    const char *rc = json_string_value(json_array_get(json_object_get(conf, "recovery_codes"), 3));
    char upper[32];
    size_t n = 0;
    for (const char *s = rc; *s; s++)
        if (*s != '-')
            upper[n++] = (char)toupper((unsigned char)*s);
    upper[n] = '\0';
    dcms_errinfo_init(&ei, NULL);
    CHECK(iam_recovery_consume(f->iam, f->admin_id, upper, "recovery_code", &ei), ei);
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(iam_recovery_consume(f->iam, f->admin_id, rc, "recovery_code", &ei),
                     DCMS_ERR_VALIDATION);
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(
        iam_recovery_consume(f->iam, f->admin_id, "aaaa-aaaa-aaaa-aaaa", "recovery_code", &ei),
        DCMS_ERR_VALIDATION);
    unsigned mask = 0;
    CHECK(iam_mfa_enrolled(f->iam, f->admin_id, &mask, &ei), ei);
    assert_int_equal(mask, IAM_FACTOR_TOTP | IAM_FACTOR_RECOVERY);
    json_decref(conf);
}
DCMS_TESTDB_CASE(totp_once)

static void totp_check(struct fixture *f)
{
    open_all(f);
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    /* No confirmed TOTP: conflict. */
    assert_int_equal(dcms_iam_totp_check(f->iam, f->admin_id, "123456", &ei), DCMS_ERR_CONFLICT);
    unsigned char key[IAM_TOTP_SECRET_BYTES];
    int64_t t0;
    json_decref(enrol(f, key, &t0));
    char code[8];
    assert_int_equal(iam_totp_generate(key, sizeof(key), t0 + 30, 30, 6, IAM_TOTP_SHA1, code),
                     DCMS_OK);
    /* t0 + 30 is within the window of now (the test takes well under 30 s). */
    dcms_errinfo_init(&ei, NULL);
    CHECK(dcms_iam_totp_check(f->iam, f->admin_id, code, &ei), ei);
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(dcms_iam_totp_check(f->iam, f->admin_id, code, &ei), DCMS_ERR_VALIDATION);
    /* Wrong codes count towards the login throttle: the account locks. */
    enum dcms_err e = DCMS_OK;
    for (int i = 0; i < 10 && e != DCMS_ERR_RATE_LIMITED; i++) {
        dcms_errinfo_init(&ei, NULL);
        e = dcms_iam_totp_check(f->iam, f->admin_id, "000000", &ei);
    }
    assert_int_equal(e, DCMS_ERR_RATE_LIMITED);
}
DCMS_TESTDB_CASE(totp_check)

static struct dcms_query q_ip_rows =
    DCMS_QUERY("t_ip_rows", "SELECT COUNT(*) FROM login_throttle WHERE key LIKE 'ip:%'");

/*
 * dcms_iam_totp_check knows no client address: its failures must not count
 * against one address key shared by every such check (a user failing its
 * own codes would lock everyone's contract signatures out).
 */
static void totp_check_no_shared_ip(struct fixture *f)
{
    setenv("DCMS_LOGIN_MAX_FAILURES", "20", 1);
    setenv("DCMS_LOGIN_MAX_FAILURES_PER_IP", "2", 1);
    open_all(f);
    unsetenv("DCMS_LOGIN_MAX_FAILURES");
    unsetenv("DCMS_LOGIN_MAX_FAILURES_PER_IP");
    unsigned char key[IAM_TOTP_SECRET_BYTES];
    int64_t t0;
    json_decref(enrol(f, key, &t0));
    struct dcms_errinfo ei;
    char code[8];
    assert_int_equal(iam_totp_generate(key, sizeof(key), t0, 30, 6, IAM_TOTP_SHA1, code), DCMS_OK);
    const char *wrong = strcmp(code, "000000") ? "000000" : "111111";
    for (int i = 0; i < 3; i++) {
        dcms_errinfo_init(&ei, NULL);
        assert_int_equal(dcms_iam_totp_check(f->iam, f->admin_id, wrong, &ei), DCMS_ERR_VALIDATION);
    }
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows;
    dcms_errinfo_init(&ei, NULL);
    CHECK(dcms_store_begin(f->app.store, DCMS_TX_READ, &tx, &ei), ei);
    CHECK(dcms_store_exec(tx, &q_ip_rows, NULL, 0, &rows, NULL, &ei), ei);
    assert_int_equal(dcms_store_rows_int(rows, 0, 0), 0);
    dcms_store_rows_free(rows);
    dcms_store_rollback(tx);
    /* Three failures are below the account's limit: a right code still works. */
    assert_int_equal(iam_totp_generate(key, sizeof(key), t0 + 30, 30, 6, IAM_TOTP_SHA1, code),
                     DCMS_OK);
    dcms_errinfo_init(&ei, NULL);
    CHECK(dcms_iam_totp_check(f->iam, f->admin_id, code, &ei), ei);
}
DCMS_TESTDB_CASE(totp_check_no_shared_ip)

struct race {
    struct fixture *f;
    char code[8];
    int64_t t;
    enum dcms_err e;
};

static void *race_one(void *arg)
{
    struct race *r = arg;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    r->e = iam_totp_consume(r->f->iam, r->f->admin_id, r->code, r->t, "totp", &ei);
    return NULL;
}

static void totp_race(struct fixture *f)
{
    open_all(f);
    unsigned char key[IAM_TOTP_SECRET_BYTES];
    int64_t t0;
    json_decref(enrol(f, key, &t0));
    /* Eight threads present the same fresh code at once: exactly one wins. */
    for (int round = 1; round <= 3; round++) {
        struct race r[8];
        pthread_t th[8];
        for (int i = 0; i < 8; i++) {
            r[i] = (struct race){f, "", t0 + round * 30, DCMS_OK};
            assert_int_equal(
                iam_totp_generate(key, sizeof(key), r[i].t, 30, 6, IAM_TOTP_SHA1, r[i].code),
                DCMS_OK);
        }
        for (int i = 0; i < 8; i++)
            assert_int_equal(pthread_create(&th[i], NULL, race_one, &r[i]), 0);
        int ok = 0;
        for (int i = 0; i < 8; i++) {
            pthread_join(th[i], NULL);
            ok += r[i].e == DCMS_OK;
            if (r[i].e != DCMS_OK && r[i].e != DCMS_ERR_VALIDATION && r[i].e != DCMS_ERR_RETRY)
                fail_msg("unexpected %s", dcms_err_slug(r[i].e));
        }
        assert_int_equal(ok, 1);
    }
}
DCMS_TESTDB_CASE(totp_race)

/* ---- IAM secrets under the keyring ---- */

static struct dcms_query q_jwt_sealed =
    DCMS_QUERY("t_jwt_sealed", "SELECT private_sealed FROM jwt_keys ORDER BY kid LIMIT 1");
static struct dcms_query q_migrated =
    /* Sequenced or still pending: the sequencer places events within a bounded delay. */
    DCMS_QUERY("t_migrated", "SELECT (SELECT COUNT(*) FROM audit_events WHERE action = $1) + "
                             "(SELECT COUNT(*) FROM audit_pending WHERE action = $1)");

static char *one_text(struct fixture *f, struct dcms_query *q, const struct dcms_store_val *p,
                      size_t n)
{
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows;
    CHECK(dcms_store_begin(f->app.store, DCMS_TX_READ, &tx, &ei), ei);
    CHECK(dcms_store_exec(tx, q, p, n, &rows, NULL, &ei), ei);
    char *out = strdup(dcms_store_rows_text(rows, 0, 0));
    dcms_store_rows_free(rows);
    dcms_store_rollback(tx);
    return out;
}

static void write_kek_file(const char *path, const unsigned char *k)
{
    char b64[64];
    dcms_b64_encode(b64, k, 32);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    assert_int_equal(chmod(path, 0600), 0);
    fprintf(fp, "%s\n", b64);
    fclose(fp);
}

/*
 * A store from before the keys module sealed its JWT keys and TOTP secrets
 * under the key in DCMS_IAM_KEK_FILE. The next start reads that file once,
 * re-seals every secret under the keyring's "iam.secrets" data key (a wrong
 * file is refused) and removes the file; later starts need only the keyring.
 */
static void legacy_kek_migrates(struct fixture *f)
{
    open_all(f);
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    unsigned char key[IAM_TOTP_SECRET_BYTES];
    int64_t confirmed_s;
    json_decref(enrol(f, key, &confirmed_s));

    /* Make it an old store: the data key's bytes go to the old file, the data key goes. */
    struct dcms_store_tx *tx;
    struct dcms_dek *d = NULL;
    CHECK(dcms_store_begin(f->app.store, DCMS_TX_WRITE, &tx, &ei), ei);
    CHECK(dcms_keys_dek_named(f->app.keys, tx, "iam.secrets", "iam.secrets", false, &d, NULL, &ei),
          ei);
    unsigned char old[32];
    memcpy(old, dcms_dek_bytes(d), sizeof(old));
    char old_id[40];
    snprintf(old_id, sizeof(old_id), "%s", dcms_dek_id(d));
    CHECK(dcms_keys_dek_destroy(f->app.keys, tx, old_id, &ei), ei);
    CHECK(dcms_store_commit(tx, &ei), ei);
    dcms_dek_free(d);
    char *jwt_before = one_text(f, &q_jwt_sealed, NULL, 0);
    struct dcms_store_val pa[] = {DCMS_VAL_TEXT(f->admin_id)};
    char *totp_before = one_text(f, &q_sealed, pa, 1);
    dcms_iam_close(f->iam);
    f->iam = f->app.iam = NULL;
    assert_int_equal(dcms_fs_mkdirs_for(f->cfg.iam_kek_file, &ei), DCMS_OK);

    /* Without the old file the secrets could not be opened: refused, and no data key is made. */
    unlink(f->cfg.iam_kek_file);
    assert_int_equal(dcms_iam_open(&f->app, &f->iam, &ei), DCMS_ERR_CONFIG);
    assert_non_null(strstr(ei.message, "DCMS_IAM_KEK_FILE"));
    f->iam = NULL;
    CHECK(dcms_store_begin(f->app.store, DCMS_TX_READ, &tx, &ei), ei);
    assert_int_equal(
        dcms_keys_dek_named(f->app.keys, tx, "iam.secrets", "iam.secrets", false, &d, NULL, &ei),
        DCMS_ERR_NOT_FOUND);
    dcms_store_rollback(tx);
    dcms_errinfo_init(&ei, NULL);

    /* Another file's key does not open the old secrets: refused, nothing changes. */
    unsigned char wrong[32];
    randombytes_buf(wrong, sizeof(wrong));
    write_kek_file(f->cfg.iam_kek_file, wrong);
    assert_int_equal(dcms_iam_open(&f->app, &f->iam, &ei), DCMS_ERR_CONFIG);
    f->iam = NULL;
    char *jwt_same = one_text(f, &q_jwt_sealed, NULL, 0);
    assert_string_equal(jwt_same, jwt_before);
    free(jwt_same);

    write_kek_file(f->cfg.iam_kek_file, old);
    dcms_errinfo_init(&ei, NULL);
    CHECK(dcms_iam_open(&f->app, &f->iam, &ei), ei);
    f->app.iam = f->iam;
    assert_int_not_equal(access(f->cfg.iam_kek_file, F_OK), 0); /* read once, then removed */
    char *jwt_after = one_text(f, &q_jwt_sealed, NULL, 0);
    char *totp_after = one_text(f, &q_sealed, pa, 1);
    assert_string_not_equal(jwt_after, jwt_before);
    assert_string_not_equal(totp_after, totp_before);
    unsigned char out[64];
    size_t olen = 0;
    assert_int_equal(iam_unseal(f->iam, totp_after, f->admin_id, out, sizeof(out), &olen), DCMS_OK);
    assert_memory_equal(out, key, IAM_TOTP_SECRET_BYTES);
    struct dcms_store_val pm[] = {DCMS_VAL_TEXT("iam.secrets_migrate")};
    char *n = one_text(f, &q_migrated, pm, 1);
    assert_string_equal(n, "1");
    free(n);

    /* A new data key, wrapped by the keyring: rotation rewraps it, and IAM still starts. */
    CHECK(dcms_store_begin(f->app.store, DCMS_TX_READ, &tx, &ei), ei);
    CHECK(dcms_keys_dek_named(f->app.keys, tx, "iam.secrets", "iam.secrets", false, &d, NULL, &ei),
          ei);
    dcms_store_rollback(tx);
    assert_string_not_equal(dcms_dek_id(d), old_id);
    assert_memory_not_equal(dcms_dek_bytes(d), old, sizeof(old));
    dcms_dek_free(d);
    int64_t v = 0, done = 0;
    CHECK(dcms_keys_rotate(f->app.keys, NULL, &v, &ei), ei);
    CHECK(dcms_keys_rewrap_all(f->app.keys, NULL, 0, &done, &ei), ei);
    assert_int_equal(done, 2); /* iam.secrets and iam.device_tokens */
    CHECK(dcms_keys_retire(f->app.keys, NULL, 1, &ei), ei);
    dcms_iam_close(f->iam);
    f->iam = f->app.iam = NULL;
    CHECK(dcms_iam_open(&f->app, &f->iam, &ei), ei);
    f->app.iam = f->iam;
    assert_int_equal(iam_unseal(f->iam, totp_after, f->admin_id, out, sizeof(out), &olen), DCMS_OK);
    free(jwt_before);
    free(totp_before);
    free(jwt_after);
    free(totp_after);
}
DCMS_TESTDB_CASE(legacy_kek_migrates)

/*
 * Device tokens (iam_device.c): bound to their identity, unforgeable,
 * expiring, and still valid after a restart (the key lives in the store).
 */
static void device_token(struct fixture *f)
{
    open_all(f);
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    int64_t now = dcms_clock_now_us() / 1000000;
    char tok[IAM_DEVICE_TOKEN_MAX], id[DCMS_UUID_STRLEN], other[DCMS_UUID_STRLEN];
    assert_int_equal(iam_device_issue(f->iam, f->admin_id, now, tok), DCMS_OK);
    assert_true(iam_device_verify(f->iam, tok, f->admin_id, now, id));
    assert_non_null(strstr(tok, id));
    dcms_uuid_v7(other);
    assert_false(iam_device_verify(f->iam, tok, other, now, id));
    /* Any changed character, a cut or an extra one: no token. */
    size_t n = strlen(tok);
    for (size_t i = 0; i < n; i++) {
        char t[IAM_DEVICE_TOKEN_MAX];
        memcpy(t, tok, n + 1);
        t[i] = t[i] == 'A' ? 'B' : 'A';
        assert_false(iam_device_verify(f->iam, t, f->admin_id, now, id));
    }
    char cut[IAM_DEVICE_TOKEN_MAX], longer[IAM_DEVICE_TOKEN_MAX + 1];
    memcpy(cut, tok, n - 1);
    cut[n - 1] = '\0';
    memcpy(longer, tok, n);
    longer[n] = 'A';
    longer[n + 1] = '\0';
    assert_false(iam_device_verify(f->iam, cut, f->admin_id, now, id));
    assert_false(iam_device_verify(f->iam, longer, f->admin_id, now, id));
    assert_false(iam_device_verify(f->iam, NULL, f->admin_id, now, id));
    assert_false(iam_device_verify(f->iam, "", f->admin_id, now, id));
    assert_false(iam_device_verify(f->iam, "dv1.", f->admin_id, now, id));
    /* Expired, and issued for longer than the configured lifetime. */
    int64_t ttl = (int64_t)f->cfg.login_device_ttl_s;
    assert_false(iam_device_verify(f->iam, tok, f->admin_id, now + ttl, id));
    assert_int_equal(iam_device_issue(f->iam, f->admin_id, now + 100, tok), DCMS_OK);
    assert_false(iam_device_verify(f->iam, tok, f->admin_id, now, id));
    /* Another start of dcmsd (or another node) verifies it with the stored key. */
    assert_int_equal(iam_device_issue(f->iam, f->admin_id, now, tok), DCMS_OK);
    dcms_iam_close(f->iam);
    f->iam = f->app.iam = NULL;
    CHECK(dcms_iam_open(&f->app, &f->iam, &ei), ei);
    f->app.iam = f->iam;
    assert_true(iam_device_verify(f->iam, tok, f->admin_id, now, id));
    /* The cookie: found among others, exact name only, bounded. */
    char v[IAM_DEVICE_TOKEN_MAX];
    assert_true(iam_device_cookie_find("a=b; __Host-dcms_device=dv1.x ; c=d", v, sizeof(v)));
    assert_string_equal(v, "dv1.x");
    assert_true(iam_device_cookie_find("__Host-dcms_device=y", v, sizeof(v)));
    assert_string_equal(v, "y");
    assert_false(
        iam_device_cookie_find("__Host-dcms_device_x=1; x__Host-dcms_device=2", v, sizeof(v)));
    assert_false(iam_device_cookie_find("__Host-dcms_device=", v, sizeof(v)));
    assert_false(iam_device_cookie_find(NULL, v, sizeof(v)));
    assert_false(iam_device_cookie_find("__Host-dcms_device=abcdef", v, 4));
}
DCMS_TESTDB_CASE(device_token)

/*
 * A signed-in caller's own TOTP check is not refused because others failed
 * to log in to the account (that lockout is for untrusted clients only).
 */
static void totp_check_ignores_login_lockout(struct fixture *f)
{
    open_all(f);
    unsigned char key[IAM_TOTP_SECRET_BYTES];
    int64_t t0;
    json_decref(enrol(f, key, &t0));
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    char acct[300], ip[80];
    iam_throttle_keys("admin@totp.test", "192.0.2.9", acct, ip);
    struct iam_call c = {f->iam, NULL, "192.0.2.9", NULL, &ei};
    for (int i = 0; i < 10; i++)
        (void)iam_throttle_fail(&c, IAM_CLIENT_UNTRUSTED, acct, ip, f->admin_id, NULL,
                                "bad_password");
    int64_t retry = 0;
    assert_int_equal(iam_throttle_check(f->iam, acct, "", &retry, &ei), DCMS_ERR_RATE_LIMITED);
    char code[8];
    assert_int_equal(iam_totp_generate(key, sizeof(key), t0 + 30, 30, 6, IAM_TOTP_SHA1, code),
                     DCMS_OK);
    dcms_errinfo_init(&ei, NULL);
    CHECK(dcms_iam_totp_check(f->iam, f->admin_id, code, &ei), ei);
}
DCMS_TESTDB_CASE(totp_check_ignores_login_lockout)

static const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(legacy_kek_migrates_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(legacy_kek_migrates_pg, setup_pg, teardown),
    cmocka_unit_test(rfc6238_vectors),
    cmocka_unit_test(base32),
    cmocka_unit_test(window),
    cmocka_unit_test_setup_teardown(totp_once_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(totp_once_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(totp_check_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(totp_check_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(totp_check_no_shared_ip_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(totp_check_no_shared_ip_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(totp_race_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(totp_race_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(device_token_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(device_token_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(totp_check_ignores_login_lockout_sqlite, setup_sqlite,
                                    teardown),
    cmocka_unit_test_setup_teardown(totp_check_ignores_login_lockout_pg, setup_pg, teardown),
};

DCMS_TEST_MAIN(tests)
