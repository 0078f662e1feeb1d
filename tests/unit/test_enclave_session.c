/*
 * Enclave sessions (dcms/enclaves.h, src/enclaves/enclaves_session.c) with
 * the real local backend and the static trainer (training/, dcms-trainer)
 * on both store backends: the service creates the enclave, a session
 * attests it (the trainer's X25519 key in the document), releases a data
 * key sealed to that key, streams a CSV as the datasets service's at-rest
 * segments (dcms_datasets_segment_aad, dcms_aead_seal, a random nonce),
 * and takes progress, the result and the result's attestation, whose
 * user_data must be the SHA-384 of the result. Refused: a document with
 * another nonce, a debug-mode enclave, an attestation on demand while the
 * session is open (a reconcile pass leaves it alone). Terminating the
 * enclave ends the session's receive at once.
 */
#include <sys/stat.h>

#include <openssl/evp.h>
#include <sodium.h>

#include "testdb.h"
#include "testutil.h"

#include "dcms/app.h"
#include "dcms/arena.h"
#include "dcms/attest.h"
#include "dcms/audit.h"
#include "dcms/clock.h"
#include "dcms/crypto.h"
#include "dcms/datasets.h"
#include "dcms/enclaves.h"
#include "dcms/iam.h"
#include "dcms/store.h"
#include "enclaves/channel.h"
#include "enclaves/enclaves_int.h"

/* The trainer's frames (training/trainer_frames.h), built here independently. */
enum { T_JOB = 16, T_KEY = 17, T_SEGMENT = 18, T_PROGRESS = 19, T_RESULT = 20, T_END = 21 };

#define CONFIG                                                                                     \
    "{\"label\":\"diagnosis\",\"split\":{\"method\":\"modulo\",\"folds\":5,\"holdout_fold\":4},"   \
    "\"epochs\":30,\"learning_rate\":0.1}"
#define SEGMENT 40000u /* plaintext per segment: breast_cancer.csv makes 3 */
#define CHUNK 16384u

struct fixture {
    struct dcms_testdb db; /* first: see testdb.h */
    struct dcms_app app;
    struct dcms_enclaves *en;
    char images[128];
    struct dcms_principal p;
};

DCMS_TESTDB_SETUPS("/tmp/dcms-ses-XXXXXX", "dcms_s_")

static int teardown(void **state)
{
    struct fixture *f = *state;
    dcms_enclaves_close(f->en);
    dcms_audit_close(f->app.audit);
    dcms_store_close(f->app.store);
    dcms_attest_ctx_free(f->app.attest);
    dcms_testdb_cleanup(&f->db);
    free(f);
    return 0;
}

static void copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    assert_non_null(in);
    assert_non_null(out);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
        assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(in);
    fclose(out);
    assert_int_equal(chmod(to, 0755), 0);
}

/* Store, audit, attestation, a provider, the trainer as image "dcms-trainer", the service. */
static void start(struct fixture *f)
{
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_store_opts so = {4, 30000};
    CHECK(dcms_store_open(f->db.url, &so, &f->app.store, &ei), ei);
    char path[256];
    snprintf(path, sizeof(path), "%s/audit.key", f->db.dir);
    struct dcms_audit_opts ao = {path, 1000, 0, 1000, NULL, 0};
    CHECK(dcms_audit_open(f->app.store, &ao, &f->app.audit, &ei), ei);
    snprintf(path, sizeof(path), "%s/attestation", f->db.dir);
    CHECK(dcms_attest_ctx_new(NULL, path, &f->app.attest, &ei), ei);
    snprintf(f->images, sizeof(f->images), "%s/images", f->db.dir);
    assert_int_equal(mkdir(f->images, 0700), 0);
    snprintf(path, sizeof(path), "%s/dcms-trainer", f->images);
    copy_file(DCMS_TRAINER_IMAGE, path);
    dcms_uuid_v7(f->p.id);
    f->p.roles = DCMS_ROLE_PROVIDER;
    struct dcms_query q = DCMS_QUERY(
        "test_identity", "INSERT INTO identities (id, kind, name, roles, status, created_at, "
                         "updated_at) VALUES ($1, 'user', 'p', '[\"provider\"]', 'active', "
                         "'2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')");
    struct dcms_store_tx *tx;
    CHECK(dcms_store_begin(f->app.store, DCMS_TX_WRITE, &tx, &ei), ei);
    CHECK(dcms_store_exec(tx, &q, (struct dcms_store_val[]){DCMS_VAL_TEXT(f->p.id)}, 1, NULL, NULL,
                          &ei),
          ei);
    CHECK(dcms_store_commit(tx, &ei), ei);

    struct dcms_enclave_backend *b = NULL;
    snprintf(path, sizeof(path), "%s/scratch", f->db.dir);
    struct dcms_enclave_local_opts lo = {.scratch_root = path, .module = f->app.attest->module};
    CHECK(dcms_enclave_backend_local_new(&lo, &b, &ei), ei);
    struct dcms_enclaves_opts o = {.backend = b,
                                   .images_dir = f->images,
                                   .max_cpu_cores = 2,
                                   .max_memory_mb = 512,
                                   .max_storage_gb = 10};
    CHECK(dcms_enclaves_open(&f->app, &o, &f->en, &ei), ei);
}

/* A running enclave of the trainer; `debug`: in debug mode. Its id into `id`. */
static void create(struct fixture *f, bool debug, char id[DCMS_UUID_STRLEN])
{
    struct dcms_arena *a = dcms_arena_new(1 << 16);
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, a);
    json_t *cj = json_pack("{s:s, s:i, s:i, s:i, s:{s:b, s:b, s:b}}", "image", "dcms-trainer",
                           "cpu_cores", 1, "memory_mb", 256, "storage_gb", 1, "security_policy",
                           "debug_mode", debug, "secure_boot", !debug, "measured_boot", !debug);
    struct enclave_call c = {f->en, &f->p, "127.0.0.1", "req-1", &ei, NULL};
    struct enclave_create_in in = {.name = "trainer"};
    enclave_config_from_json(cj, "configuration.", &f->en->limits, &in.config, &ei);
    struct enclave_rec rec;
    CHECK(enclave_create(&c, &in, &rec), ei);
    assert_string_equal(rec.r.v[C_STATUS], "running");
    snprintf(id, DCMS_UUID_STRLEN, "%s", rec.r.v[C_ID]);
    enclave_rec_release(&rec);
    json_decref(cj);
    dcms_arena_free(a);
}

static int64_t deadline(void)
{
    return dcms_clock_mono_us() / 1000 + 60000;
}

static void send(struct dcms_enclave_session *s, uint8_t type, const void *body, size_t len)
{
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    CHECK(dcms_enclave_session_send(s, type, body, len, deadline(), &ei), ei);
}

static uint8_t recv_frame(struct dcms_enclave_session *s, const uint8_t **body, size_t *len)
{
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    uint8_t type = 0;
    CHECK(dcms_enclave_session_recv(s, &type, body, len, deadline(), &ei), ei);
    return type;
}

/* The document of the ATTEST_RESP that comes next (copied into doc[]). */
static size_t recv_doc(struct dcms_enclave_session *s, unsigned char *doc)
{
    const uint8_t *body;
    size_t len;
    assert_int_equal(recv_frame(s, &body, &len), DCMS_CHAN_ATTEST_RESP);
    assert_true(len > 1 && len - 1 <= DCMS_ATTEST_MAX_DOC_BYTES);
    assert_int_equal(body[0], 0);
    memcpy(doc, body + 1, len - 1);
    return len - 1;
}

/* ATTEST_REQ with a fresh 32-byte nonce; the document into doc[]. */
static size_t attest(struct dcms_enclave_session *s, unsigned char nonce[32], unsigned char *doc)
{
    randombytes_buf(nonce, 32);
    send(s, DCMS_CHAN_ATTEST_REQ, nonce, 32);
    return recv_doc(s, doc);
}

static size_t id_field(uint8_t *p, const char *id)
{
    size_t n = strlen(id);
    p[0] = (uint8_t)(n >> 8);
    p[1] = (uint8_t)n;
    memcpy(p + 2, id, n);
    return 2 + n;
}

static void be(uint8_t *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        p[i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
}

/* The dataset as the datasets service stores it, segment by segment, in chunks. */
static void stream_dataset(struct dcms_enclave_session *s, const char *dsid,
                           const unsigned char dek[32], const char *csv, size_t len)
{
    static unsigned char ct[SEGMENT + DCMS_AEAD_TAG_LEN];
    static uint8_t body[DCMS_CHAN_MAX_FRAME];
    int64_t index = 0;
    for (size_t off = 0; off < len; off += SEGMENT, index++) {
        size_t n = len - off < SEGMENT ? len - off : SEGMENT;
        bool final = off + n == len;
        unsigned char aad[DCMS_DATASET_AAD_LEN], nonce[DCMS_AEAD_NONCE_LEN];
        size_t alen = dcms_datasets_segment_aad(dsid, index, final, aad);
        randombytes_buf(nonce, sizeof(nonce));
        assert_int_equal(dcms_aead_seal(dek, nonce, aad, alen, csv + off, n, ct), DCMS_OK);
        size_t ct_len = n + DCMS_AEAD_TAG_LEN;
        for (size_t c = 0; c < ct_len; c += CHUNK) {
            size_t k = ct_len - c < CHUNK ? ct_len - c : CHUNK, p = id_field(body, dsid);
            be(body + p, (uint64_t)index, 8);
            body[p + 8] = final;
            memcpy(body + p + 9, nonce, 12);
            be(body + p + 21, ct_len, 4);
            be(body + p + 25, c, 4);
            memcpy(body + p + 29, ct + c, k);
            send(s, T_SEGMENT, body, p + 29 + k);
        }
    }
    assert_true(index >= 2);
}

static char *read_csv(size_t *len)
{
    FILE *fp = fopen(DCMS_SOURCE_DIR "/tests/data/breast_cancer.csv", "rb");
    assert_non_null(fp);
    static char b[1 << 20];
    *len = fread(b, 1, sizeof(b), fp);
    fclose(fp);
    return b;
}

static void act_ev(struct fixture *f, const char *id, enum enclave_event ev, enum dcms_err want)
{
    struct dcms_arena *a = dcms_arena_new(1 << 16);
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, a);
    struct enclave_call c = {f->en, &f->p, "127.0.0.1", "req-2", &ei, NULL};
    struct enclave_rec rec;
    enum dcms_err e = enclave_act(&c, id, ev, NULL, &rec);
    if (e != want)
        fail_msg("%s: %d (%s), wanted %d", enclave_event_name(ev), e, ei.message, want);
    if (!e)
        assert_string_equal(rec.r.v[C_STATUS],
                            ev == ENCLAVE_EV_TERMINATE ? "terminated" : "running");
    enclave_rec_release(&rec);
    dcms_arena_free(a);
}

static void act(struct fixture *f, const char *id, enum dcms_err want)
{
    act_ev(f, id, ENCLAVE_EV_ATTEST, want);
}

static void session_trains(struct fixture *f)
{
    start(f);
    char id[DCMS_UUID_STRLEN], dsid[DCMS_UUID_STRLEN];
    create(f, false, id);
    dcms_uuid_v7(dsid);
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_enclave_session *s = NULL, *s2 = NULL;
    CHECK(dcms_enclaves_session_open(f->en, id, &s, &ei), ei);
    /* Exclusive: a second session and an attestation on demand wait for this one to end. */
    assert_int_equal(dcms_enclaves_session_open(f->en, id, &s2, &ei), DCMS_ERR_CONFLICT);
    assert_null(s2);
    act(f, id, DCMS_ERR_CONFLICT);
    /* The background pass only probes: the enclave stays running, the session usable. */
    CHECK(dcms_enclaves_reconcile(f->en, false, &ei), ei);

    /* Attestation: the trainer's key in a document of this enclave. */
    static unsigned char doc[DCMS_ATTEST_MAX_DOC_BYTES];
    unsigned char nonce[32], other[32];
    size_t dl = attest(s, nonce, doc);
    struct dcms_enclave_evidence ev;
    dcms_errinfo_init(&ei, NULL);
    CHECK(dcms_enclave_session_verify(s, doc, dl, nonce, 32, &ev, &ei), ei);
    assert_int_equal(ev.public_key_len, 32);
    assert_int_equal(strlen(ev.pcr0), 96);
    assert_true(ev.user_data_len > 13 && memcmp(ev.user_data, "dcms-trainer ", 13) == 0);
    /* The same document for another nonce (a replay): refused, the check named. */
    memcpy(other, nonce, 32);
    other[0] ^= 1;
    struct dcms_enclave_evidence none;
    memset(&none, 0, sizeof(none));
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(dcms_enclave_session_verify(s, doc, dl, other, 32, &none, &ei),
                     DCMS_ERR_FORBIDDEN);
    assert_true(strncmp(ei.message, "nonce: ", 7) == 0);
    assert_null(none.doc);

    /* The job, the key sealed to the attested key, the data. */
    unsigned char result_nonce[32], dek[32];
    char rn_hex[65], job[1024];
    randombytes_buf(result_nonce, 32);
    dcms_hex_encode(rn_hex, result_nonce, 32);
    snprintf(job, sizeof(job), "{\"config\":%s,\"datasets\":[\"%s\"],\"result_nonce\":\"%s\"}",
             CONFIG, dsid, rn_hex);
    send(s, T_JOB, job, strlen(job));
    randombytes_buf(dek, 32);
    uint8_t key[2 + 64 + 80];
    size_t kp = id_field(key, dsid);
    assert_int_equal(crypto_box_seal(key + kp, dek, 32, ev.public_key), 0);
    send(s, T_KEY, key, kp + 80);
    size_t csv_len;
    const char *csv = read_csv(&csv_len);
    stream_dataset(s, dsid, dek, csv, csv_len);

    /* Progress each epoch, the result in parts, its end, its attestation. */
    unsigned epochs = 0;
    unsigned char *parts[2] = {NULL, NULL};
    size_t plen[2] = {0, 0};
    const uint8_t *body;
    size_t len;
    uint8_t t;
    while ((t = recv_frame(s, &body, &len)) != T_END) {
        if (t == T_PROGRESS) {
            epochs++;
            continue;
        }
        assert_int_equal(t, T_RESULT);
        assert_true(len >= 1 && body[0] <= 1);
        parts[body[0]] = realloc(parts[body[0]], plen[body[0]] + len);
        memcpy(parts[body[0]] + plen[body[0]], body + 1, len - 1);
        plen[body[0]] += len - 1;
    }
    assert_int_equal(epochs, 30);
    assert_int_equal(len, 16 + 48);
    unsigned char end[64], digest[48], lenbuf[8];
    memcpy(end, body, 64);
    be(lenbuf, plen[0], 8);
    assert_memory_equal(end, lenbuf, 8);
    EVP_MD_CTX *h = EVP_MD_CTX_new();
    unsigned int hl = 0;
    assert_int_equal(EVP_DigestInit_ex(h, EVP_sha384(), NULL), 1);
    EVP_DigestUpdate(h, lenbuf, 8);
    EVP_DigestUpdate(h, parts[0], plen[0]);
    EVP_DigestUpdate(h, parts[1], plen[1]);
    assert_int_equal(EVP_DigestFinal_ex(h, digest, &hl), 1);
    EVP_MD_CTX_free(h);
    assert_memory_equal(end + 16, digest, 48);
    dl = recv_doc(s, doc);
    struct dcms_enclave_evidence rev;
    dcms_errinfo_init(&ei, NULL);
    CHECK(dcms_enclave_session_verify(s, doc, dl, result_nonce, 32, &rev, &ei), ei);
    /* The binding: the result's attestation names the bytes received, from the same key. */
    assert_int_equal(rev.user_data_len, 48);
    assert_memory_equal(rev.user_data, digest, 48);
    assert_memory_equal(rev.public_key, ev.public_key, 32);
    assert_string_equal(rev.pcr0, ev.pcr0);
    json_t *m = json_loadb((const char *)parts[1], plen[1], 0, NULL);
    assert_true(json_real_value(json_object_get(m, "accuracy")) > 0.9);
    assert_int_equal(json_integer_value(json_object_get(m, "rows")), 113);
    json_decref(m);
    assert_true(plen[0] > 9 && parts[0][8] == '{'); /* safetensors: u64 LE header length, JSON */
    free(parts[0]);
    free(parts[1]);
    dcms_enclave_evidence_free(&ev);
    dcms_enclave_evidence_free(&rev);
    dcms_enclave_session_close(s);
    /* The channel is the enclave service's again. */
    act(f, id, DCMS_OK);
}
DCMS_TESTDB_CASE(session_trains)

static void session_debug_refused(struct fixture *f)
{
    start(f);
    char id[DCMS_UUID_STRLEN];
    create(f, true, id);
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_enclave_session *s = NULL;
    CHECK(dcms_enclaves_session_open(f->en, id, &s, &ei), ei);
    static unsigned char doc[DCMS_ATTEST_MAX_DOC_BYTES];
    unsigned char nonce[32];
    size_t dl = attest(s, nonce, doc);
    struct dcms_enclave_evidence ev;
    memset(&ev, 0, sizeof(ev));
    /* The enclave service accepted it (its policy allows debug mode); a session does not. */
    assert_int_equal(dcms_enclave_session_verify(s, doc, dl, nonce, 32, &ev, &ei),
                     DCMS_ERR_FORBIDDEN);
    assert_true(strncmp(ei.message, "debug: ", 7) == 0);
    assert_null(ev.doc);
    /* Frames out of the channel's range are refused before they are sent. */
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(dcms_enclave_session_send(s, 9, "x", 1, deadline(), &ei), DCMS_ERR_VALIDATION);
    dcms_enclave_session_close(s);
    /* Unknown and not running enclaves. */
    char unknown[DCMS_UUID_STRLEN];
    dcms_uuid_v7(unknown);
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(dcms_enclaves_session_open(f->en, unknown, &s, &ei), DCMS_ERR_NOT_FOUND);
    assert_null(s);
}
DCMS_TESTDB_CASE(session_debug_refused)

/* A job cancelled by terminating its enclave: the session's next receive fails at once. */
static void session_terminated(struct fixture *f)
{
    start(f);
    char id[DCMS_UUID_STRLEN];
    create(f, false, id);
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_enclave_session *s = NULL;
    CHECK(dcms_enclaves_session_open(f->en, id, &s, &ei), ei);
    act_ev(f, id, ENCLAVE_EV_TERMINATE, DCMS_OK);
    uint8_t type;
    const uint8_t *body;
    size_t len;
    int64_t t0 = dcms_clock_mono_us();
    assert_int_equal(dcms_enclave_session_recv(s, &type, &body, &len, deadline(), &ei),
                     DCMS_ERR_UNAVAILABLE);
    assert_true(dcms_clock_mono_us() - t0 < 5000000);
    dcms_enclave_session_close(s);
    dcms_errinfo_init(&ei, NULL);
    assert_int_equal(dcms_enclaves_session_open(f->en, id, &s, &ei), DCMS_ERR_CONFLICT);
}
DCMS_TESTDB_CASE(session_terminated)

static const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(session_trains_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(session_trains_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(session_debug_refused_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(session_debug_refused_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(session_terminated_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(session_terminated_pg, setup_pg, teardown),
};

DCMS_TEST_MAIN(tests)
