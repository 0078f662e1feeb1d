/*
 * The enclave service (src/enclaves/enclaves*.c) without a sandbox: the
 * transition table checked cell by cell, configuration validation (every
 * problem with its path, defaults, round trip), and the service on both
 * store backends against a scripted in-test backend (a unit-test double:
 * it "runs" workloads as table entries and has the local attestation
 * module issue real documents for them). Covered there: creation with a
 * verified attestation, a workload that stops answering, reconcile of a
 * killed workload and of a restart, the metrics history bound, and a
 * signer the policy does not allow. tests/api/enclaves.test.mjs runs the
 * real local backend.
 */
#include <sys/stat.h>

#include "testdb.h"
#include "testutil.h"

#include "dcms/app.h"
#include "dcms/arena.h"
#include "dcms/attest.h"
#include "dcms/audit.h"
#include "dcms/clock.h"
#include "dcms/crypto.h"
#include "dcms/enclaves.h"
#include "dcms/iam.h"
#include "dcms/store.h"
#include "enclaves/enclaves_int.h"

/* ---- the transition table ---- */

static void state_machine_table(void **state)
{
    (void)state;
    enum {
        I = ENCLAVE_INITIALIZING,
        R = ENCLAVE_RUNNING,
        S = ENCLAVE_SUSPENDED,
        F = ENCLAVE_FAILED,
        T = ENCLAVE_TERMINATED,
        L = ENCLAVE_LOST,
        X = -1
    };
    /* to[from][event] for the owner and for the system; X: refused. */
    static const int owner[6][ENCLAVE__EVENT_COUNT] = {
        /* start susp resume attest update fail term lose */
        [I] = {X, X, X, X, X, X, T, X}, [R] = {X, S, X, R, X, X, T, X},
        [S] = {X, X, R, X, S, X, T, X}, [F] = {X, X, X, X, X, X, T, X},
        [T] = {X, X, X, X, X, X, X, X}, [L] = {X, X, X, X, X, X, T, X},
    };
    static const int system[6][ENCLAVE__EVENT_COUNT] = {
        /* suspend / resume: the contract the enclave serves drives it (enclaves_govern.c);
         * lose: the node running it stopped beating (enclaves_nodes.c) */
        [I] = {R, X, X, X, X, F, T, L}, [R] = {X, S, X, X, X, F, T, L},
        [S] = {X, X, R, X, X, F, T, L}, [F] = {X, X, X, X, X, X, T, X},
        [T] = {X, X, X, X, X, X, X, X}, [L] = {X, X, X, X, X, X, T, X},
    };
    for (int from = 0; from < ENCLAVE__STATUS_COUNT; from++) {
        for (int ev = 0; ev < ENCLAVE__EVENT_COUNT; ev++) {
            enum enclave_status to = ENCLAVE__STATUS_COUNT;
            bool ok = enclave_transition(from, ev, ENCLAVE_BY_OWNER, &to);
            if (ok != (owner[from][ev] != X) || (ok && (int)to != owner[from][ev]))
                fail_msg("owner: %s + %s", enclave_status_name(from), enclave_event_name(ev));
            ok = enclave_transition(from, ev, ENCLAVE_BY_SYSTEM, &to);
            if (ok != (system[from][ev] != X) || (ok && (int)to != system[from][ev]))
                fail_msg("system: %s + %s", enclave_status_name(from), enclave_event_name(ev));
        }
    }
    char buf[160];
    enclave_allowed_events(ENCLAVE_RUNNING, ENCLAVE_BY_OWNER, buf, sizeof(buf));
    assert_string_equal(buf, "suspend, attest, terminate");
    enclave_allowed_events(ENCLAVE_SUSPENDED, ENCLAVE_BY_OWNER, buf, sizeof(buf));
    assert_string_equal(buf, "resume, update, terminate");
    enclave_allowed_events(ENCLAVE_TERMINATED, ENCLAVE_BY_OWNER | ENCLAVE_BY_SYSTEM, buf,
                           sizeof(buf));
    assert_string_equal(buf, "none");
    enclave_allowed_events(ENCLAVE_INITIALIZING, ENCLAVE_BY_SYSTEM, buf, 12);
    assert_string_equal(buf, "start, fail"); /* truncated at a whole name */
    for (int s = 0; s < ENCLAVE__STATUS_COUNT; s++) {
        enum enclave_status back;
        assert_true(enclave_status_parse(enclave_status_name(s), &back));
        assert_int_equal(back, s);
    }
    enum enclave_status x;
    assert_false(enclave_status_parse("Running", &x));
    assert_false(enclave_status_parse(NULL, &x));
}

/* ---- configuration ---- */

static void image_names(void **state)
{
    (void)state;
    assert_true(enclave_image_name_ok("dcms-workload"));
    assert_true(enclave_image_name_ok("model_v2.1.eif"));
    assert_true(enclave_image_name_ok("..x"));
    const char *bad[] = {"", ".", "..", "../x", "a/b", "/etc/passwd", "a b", "x\n", "\xc3\xa9"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(enclave_image_name_ok(bad[i]));
    char long_name[66];
    memset(long_name, 'a', 65);
    long_name[65] = '\0';
    assert_false(enclave_image_name_ok(long_name));
    long_name[64] = '\0';
    assert_true(enclave_image_name_ok(long_name));
}

static const struct enclave_limits limits = {2, 512, 10};

static void config_defaults_and_round_trip(void **state)
{
    (void)state;
    struct dcms_arena *a = dcms_arena_new(1 << 16);
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, a);
    json_t *in =
        json_loads("{\"image\":\"w\",\"cpu_cores\":2,\"memory_mb\":512,\"storage_gb\":1}", 0, NULL);
    struct enclave_config c;
    enclave_config_from_json(in, "configuration.", &limits, &c, &ei);
    assert_int_equal(ei.code, DCMS_OK);
    assert_true(c.net.encryption_required);
    assert_int_equal(c.net.min_tls, 13);
    assert_true(c.sec.secure_boot && c.sec.measured_boot && !c.sec.debug_mode);
    json_decref(in);

    in = json_loads("{\"image\":\"w\",\"cpu_cores\":1,\"memory_mb\":16,\"storage_gb\":10,"
                    "\"network_policy\":{\"ingress\":[{\"protocol\":\"udp\",\"port\":53,"
                    "\"cidr\":\"2001:db8::/32\"}],\"egress\":[{\"protocol\":\"tcp\",\"port\":443,"
                    "\"cidr\":\"10.1.2.3\"}],\"encryption_required\":false,"
                    "\"min_tls_version\":\"1.2\"},\"security_policy\":{\"secure_boot\":false,"
                    "\"measured_boot\":false,\"debug_mode\":true,\"allowed_signers\":[\""
                    "000000000000000000000000000000000000000000000000"
                    "0000000000000000000000000000000000000000000000ff\"]}}",
                    0, NULL);
    assert_non_null(in);
    enclave_config_from_json(in, "configuration.", &limits, &c, &ei);
    assert_int_equal(ei.code, DCMS_OK);
    json_t *out = enclave_config_to_json(&c);
    assert_true(json_equal(in, out));
    struct enclave_config c2;
    enclave_config_from_json(out, "", NULL, &c2, &ei);
    assert_int_equal(ei.code, DCMS_OK);
    assert_memory_equal(&c, &c2, sizeof(c));
    json_decref(in);
    json_decref(out);
    dcms_arena_free(a);
}

static void config_every_problem_with_its_path(void **state)
{
    (void)state;
    struct dcms_arena *a = dcms_arena_new(1 << 16);
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, a);
    char a96[97], doc[1024];
    memset(a96, 'a', 96);
    a96[96] = '\0';
    snprintf(doc, sizeof(doc),
             "{\"image\":\"../x\",\"cpu_cores\":3,\"memory_mb\":15,\"storage_gb\":1.5,\"gpu\":1,"
             "\"network_policy\":{\"ingress\":[{\"protocol\":\"tcp\",\"port\":70000,"
             "\"cidr\":\"1.2.3.4/33\",\"x\":1},{\"protocol\":\"sctp\",\"port\":1,"
             "\"cidr\":\"::1/128\"}],\"egress\":{},\"encryption_required\":\"yes\","
             "\"min_tls_version\":1.3},\"security_policy\":{\"allowed_signers\":[\"AB\",\"%s\","
             "\"%s\"],\"debug_mode\":true}}",
             a96, a96);
    json_t *in = json_loads(doc, 0, NULL);
    assert_non_null(in);
    struct enclave_config c;
    enclave_config_from_json(in, "configuration.", &limits, &c, &ei);
    assert_int_equal(ei.code, DCMS_ERR_VALIDATION);
    static const char *const want[] = {
        "configuration.gpu",
        "configuration.image",
        "configuration.cpu_cores",
        "configuration.memory_mb",
        "configuration.storage_gb",
        "configuration.network_policy.ingress[0].x",
        "configuration.network_policy.ingress[0].port",
        "configuration.network_policy.ingress[0].cidr",
        "configuration.network_policy.ingress[1].protocol",
        "configuration.network_policy.egress",
        "configuration.network_policy.encryption_required",
        "configuration.network_policy.min_tls_version",
        "configuration.security_policy.debug_mode",
        "configuration.security_policy.allowed_signers[0]",
        "configuration.security_policy.allowed_signers[2]",
    };
    assert_int_equal(ei.ndetails, sizeof(want) / sizeof(want[0]));
    for (size_t i = 0; i < ei.ndetails; i++)
        assert_string_equal(ei.details[i].field, want[i]);
    assert_string_equal(ei.details[2].problem, "must be at most 2 (DCMS_ENCLAVE_MAX_CPU_CORES)");
    assert_string_equal(ei.details[14].problem, "is listed twice");
    json_decref(in);

    dcms_errinfo_init(&ei, a);
    enclave_config_from_json(NULL, "configuration.", &limits, &c, &ei);
    assert_int_equal(ei.ndetails, 1);
    assert_string_equal(ei.details[0].field, "configuration");
    assert_string_equal(ei.details[0].problem, "is required");
    dcms_errinfo_init(&ei, a);
    in = json_loads("{}", 0, NULL);
    enclave_config_from_json(in, "configuration.", &limits, &c, &ei);
    assert_int_equal(ei.ndetails, 4); /* image, cpu_cores, memory_mb, storage_gb */
    json_decref(in);
    dcms_arena_free(a);
}

/* ---- the service against a scripted backend ---- */

#define FAKE_MAX 16

struct fake {
    struct dcms_enclave_backend b;
    struct dcms_attest_local *module;
    struct {
        bool used, exited, suspended, silent;
        char image[512];
        char reason[64];
    } w[FAKE_MAX];
    unsigned starts, terminates;
};

static int fake_index(const char *ref)
{
    int i;
    return sscanf(ref, "fake:%d", &i) == 1 && i >= 0 && i < FAKE_MAX ? i : -1;
}

static enum dcms_err fake_start(struct dcms_enclave_backend *b, const struct dcms_enclave_spec *s,
                                char *ref, struct dcms_errinfo *ei)
{
    struct fake *f = b->impl;
    for (int i = 0; i < FAKE_MAX; i++) {
        if (f->w[i].used)
            continue;
        memset(&f->w[i], 0, sizeof(f->w[i]));
        f->w[i].used = true;
        snprintf(f->w[i].image, sizeof(f->w[i].image), "%s", s->image_path);
        snprintf(ref, DCMS_ENCLAVE_REF_MAX, "fake:%d", i);
        f->starts++;
        return DCMS_OK;
    }
    return dcms_err_set(ei, DCMS_ERR_UNAVAILABLE, "no room");
}

static enum dcms_err fake_attest(struct dcms_enclave_backend *b, const char *ref,
                                 const unsigned char *nonce, size_t n, unsigned char **doc,
                                 size_t *len, struct dcms_errinfo *ei)
{
    struct fake *f = b->impl;
    int i = fake_index(ref);
    if (i < 0 || !f->w[i].used || f->w[i].exited || f->w[i].suspended || f->w[i].silent)
        return dcms_err_set(ei, DCMS_ERR_UNAVAILABLE, "the workload does not answer");
    struct dcms_attest_workload w = {.image_path = f->w[i].image, .nonce = nonce, .nonce_len = n};
    return dcms_attest_local_issue(f->module, &w, doc, len, ei);
}

static enum dcms_err fake_suspend(struct dcms_enclave_backend *b, const char *ref,
                                  struct dcms_errinfo *ei)
{
    struct fake *f = b->impl;
    int i = fake_index(ref);
    if (i < 0 || !f->w[i].used || f->w[i].exited)
        return dcms_err_set(ei, DCMS_ERR_UNAVAILABLE, "gone");
    f->w[i].suspended = true;
    return DCMS_OK;
}

static enum dcms_err fake_resume(struct dcms_enclave_backend *b, const char *ref,
                                 struct dcms_errinfo *ei)
{
    struct fake *f = b->impl;
    int i = fake_index(ref);
    if (i < 0 || !f->w[i].used || f->w[i].exited)
        return dcms_err_set(ei, DCMS_ERR_UNAVAILABLE, "gone");
    f->w[i].suspended = false;
    return DCMS_OK;
}

static enum dcms_err fake_terminate(struct dcms_enclave_backend *b, const char *ref,
                                    struct dcms_errinfo *ei)
{
    (void)ei;
    struct fake *f = b->impl;
    int i = fake_index(ref);
    if (i >= 0 && f->w[i].used) {
        f->w[i].used = false;
        f->terminates++;
    }
    return DCMS_OK;
}

static enum dcms_err fake_probe(struct dcms_enclave_backend *b, const char *ref,
                                struct dcms_enclave_probe *out, struct dcms_errinfo *ei)
{
    (void)ei;
    struct fake *f = b->impl;
    int i = fake_index(ref);
    memset(out, 0, sizeof(*out));
    out->pid = -1;
    if (i < 0 || !f->w[i].used) {
        out->state = DCMS_ENCLAVE_RUN_UNKNOWN;
    } else if (f->w[i].exited) {
        out->state = DCMS_ENCLAVE_RUN_EXITED;
        snprintf(out->reason, sizeof(out->reason), "%s", f->w[i].reason);
    } else {
        out->state = f->w[i].suspended ? DCMS_ENCLAVE_RUN_SUSPENDED : DCMS_ENCLAVE_RUN_RUNNING;
        out->pid = 1000 + i;
        out->rss_bytes = 1u << 20;
        out->peak_rss_bytes = 2u << 20;
        out->cpu_time_ms = 5;
        out->nprocs = 1;
    }
    return DCMS_OK;
}

static void fake_destroy(struct dcms_enclave_backend *b)
{
    free(b->impl);
}

/* The test keeps a pointer to the fake's state; the service owns (and frees) it. */
static struct dcms_enclave_backend *fake_new(struct dcms_attest_local *module, struct fake **out)
{
    struct fake *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->module = module;
    f->b = (struct dcms_enclave_backend){.name = "local",
                                         .impl = f,
                                         .start = fake_start,
                                         .attest = fake_attest,
                                         .suspend = fake_suspend,
                                         .resume = fake_resume,
                                         .terminate = fake_terminate,
                                         .probe = fake_probe,
                                         .destroy = fake_destroy};
    *out = f;
    return &f->b;
}

struct fixture {
    struct dcms_testdb db; /* first: see testdb.h */
    struct dcms_app app;
    struct dcms_enclaves *en;
    struct fake *fake;
    char images[128];
    struct dcms_principal p;
};

DCMS_TESTDB_SETUPS("/tmp/dcms-enc-XXXXXX", "dcms_e_")

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

static void exec_sql(struct fixture *f, const char *sql, const char *a1)
{
    struct dcms_query q = DCMS_QUERY("test_sql", sql);
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_store_tx *tx;
    CHECK(dcms_store_begin(f->app.store, DCMS_TX_WRITE, &tx, &ei), ei);
    CHECK(dcms_store_exec(tx, &q, (struct dcms_store_val[]){DCMS_VAL_TEXT(a1)}, 1, NULL, NULL, &ei),
          ei);
    CHECK(dcms_store_commit(tx, &ei), ei);
}

/* An image the service accepts: an executable file with an ELF header (ET_EXEC), then `content`. */
static void write_image(struct fixture *f, const char *name, const char *content)
{
    static const unsigned char elf[18] = {0x7f, 'E', 'L', 'F', 2, 1, 1, 0, 0,
                                          0,    0,   0,   0,   0, 0, 0, 2, 0};
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", f->images, name);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(elf, 1, sizeof(elf), fp), sizeof(elf));
    fputs(content, fp);
    fclose(fp);
    assert_int_equal(chmod(path, 0755), 0);
}

static void open_service(struct fixture *f)
{
    struct dcms_enclaves_opts o = {.backend = fake_new(f->app.attest->module, &f->fake),
                                   .images_dir = f->images,
                                   .max_cpu_cores = 2,
                                   .max_memory_mb = 512,
                                   .max_storage_gb = 10};
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    CHECK(dcms_enclaves_open(&f->app, &o, &f->en, &ei), ei);
}

/* Store, audit, attestation context, a provider identity, an image, the service. */
static void start(struct fixture *f)
{
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_store_opts so = {4, 30000};
    CHECK(dcms_store_open(f->db.url, &so, &f->app.store, &ei), ei);
    char path[160];
    snprintf(path, sizeof(path), "%s/audit.key", f->db.dir);
    struct dcms_audit_opts ao = {path, 1000, 0, 1000, NULL, 0};
    CHECK(dcms_audit_open(f->app.store, &ao, &f->app.audit, &ei), ei);
    snprintf(path, sizeof(path), "%s/attestation", f->db.dir);
    CHECK(dcms_attest_ctx_new(NULL, path, &f->app.attest, &ei), ei);
    snprintf(f->images, sizeof(f->images), "%s/images", f->db.dir);
    assert_int_equal(mkdir(f->images, 0700), 0);
    write_image(f, "w1", "workload one");
    dcms_uuid_v7(f->p.id);
    f->p.roles = DCMS_ROLE_PROVIDER;
    exec_sql(f,
             "INSERT INTO identities (id, kind, name, roles, status, created_at, updated_at) "
             "VALUES ($1, 'user', 'p', '[\"provider\"]', 'active', '2026-01-01T00:00:00Z', "
             "'2026-01-01T00:00:00Z')",
             f->p.id);
    open_service(f);
}

/* The service's enclave results as the API encodes them. */
static enum dcms_err encoded(enum dcms_err e, struct enclave_rec *rec, json_t **out)
{
    *out = e ? NULL : enclave_row_to_json(&rec->r);
    enclave_rec_release(rec);
    return e;
}

static enum dcms_err act_json(const struct enclave_call *c, const char *id, enum enclave_event ev,
                              const char *reason, json_t **out)
{
    struct enclave_rec rec;
    return encoded(enclave_act(c, id, ev, reason, &rec), &rec, out);
}

static enum dcms_err get_json(const struct enclave_call *c, const char *id, json_t **out)
{
    struct enclave_rec rec;
    return encoded(enclave_get(c, id, &rec), &rec, out);
}

static enum dcms_err create_json(const struct enclave_call *c, const struct enclave_create_in *in,
                                 json_t **out)
{
    struct enclave_rec rec;
    return encoded(enclave_create(c, in, &rec), &rec, out);
}

static json_t *create(struct fixture *f, const char *image)
{
    struct dcms_arena *a = dcms_arena_new(1 << 16);
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, a);
    char cfg[256];
    snprintf(cfg, sizeof(cfg),
             "{\"image\":\"%s\",\"cpu_cores\":1,\"memory_mb\":64,\"storage_gb\":1}", image);
    json_t *cj = json_loads(cfg, 0, NULL);
    struct enclave_call c = {f->en, &f->p, "127.0.0.1", "req-1", &ei, NULL};
    struct enclave_create_in in = {.name = "e"};
    enclave_config_from_json(cj, "configuration.", &f->en->limits, &in.config, &ei);
    json_t *out = NULL;
    CHECK(create_json(&c, &in, &out), ei);
    json_decref(cj);
    dcms_arena_free(a);
    return out;
}

static json_t *get(struct fixture *f, const char *id)
{
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct enclave_call c = {f->en, &f->p, "127.0.0.1", "req-2", &ei, NULL};
    json_t *out = NULL;
    CHECK(get_json(&c, id, &out), ei);
    return out;
}

static const char *str(json_t *o, const char *path)
{
    char buf[128];
    snprintf(buf, sizeof(buf), "%s", path);
    json_t *v = o;
    for (char *save = NULL, *k = strtok_r(buf, ".", &save); k; k = strtok_r(NULL, ".", &save))
        v = json_object_get(v, k);
    return json_string_value(v);
}

static void service_lifecycle(struct fixture *f)
{
    start(f);
    json_t *e = create(f, "w1");
    assert_string_equal(str(e, "status"), "running");
    assert_true(json_is_true(json_object_get(json_object_get(e, "attestation"), "verified")));
    assert_string_equal(str(e, "runtime.ref"), "fake:0");
    char id[DCMS_UUID_STRLEN];
    snprintf(id, sizeof(id), "%s", str(e, "id"));
    json_decref(e);

    /* Attest, suspend, attest refused with the allowed events in a detail, resume. */
    struct dcms_arena *a = dcms_arena_new(1 << 16);
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, a);
    struct enclave_call c = {f->en, &f->p, "127.0.0.1", "req-3", &ei, NULL};
    json_t *out = NULL;
    CHECK(act_json(&c, id, ENCLAVE_EV_ATTEST, NULL, &out), ei);
    json_decref(out);
    CHECK(act_json(&c, id, ENCLAVE_EV_SUSPEND, "pause", &out), ei);
    assert_string_equal(str(out, "status"), "suspended");
    json_decref(out);
    out = NULL;
    assert_int_equal(act_json(&c, id, ENCLAVE_EV_ATTEST, NULL, &out), DCMS_ERR_CONFLICT);
    assert_null(out);
    assert_int_equal(ei.ndetails, 1);
    assert_string_equal(ei.details[0].field, "status");
    assert_string_equal(ei.details[0].problem, "is suspended; allowed: resume, update, terminate");
    dcms_errinfo_init(&ei, a);
    CHECK(act_json(&c, id, ENCLAVE_EV_RESUME, NULL, &out), ei);
    assert_string_equal(str(out, "status"), "running");
    json_decref(out);

    /* Another provider: 404, not 403. */
    struct dcms_principal other = {.roles = DCMS_ROLE_PROVIDER};
    dcms_uuid_v7(other.id);
    struct enclave_call oc = {f->en, &other, "127.0.0.1", "req-4", &ei, NULL};
    dcms_errinfo_init(&ei, a);
    assert_int_equal(get_json(&oc, id, &out), DCMS_ERR_NOT_FOUND);
    assert_int_equal(act_json(&oc, id, ENCLAVE_EV_TERMINATE, NULL, &out), DCMS_ERR_NOT_FOUND);

    /* The workload stops answering: the next attestation fails it and stops the workload. */
    f->fake->w[0].silent = true;
    dcms_errinfo_init(&ei, a);
    CHECK(act_json(&c, id, ENCLAVE_EV_ATTEST, NULL, &out), ei);
    assert_string_equal(str(out, "status"), "failed");
    assert_string_equal(
        str(out, "status_reason"),
        "attestation failed: no attestation document: the workload does not answer");
    assert_false(f->fake->w[0].used);
    json_decref(out);
    dcms_errinfo_init(&ei, a);
    CHECK(act_json(&c, id, ENCLAVE_EV_TERMINATE, NULL, &out), ei);
    assert_string_equal(str(out, "status"), "terminated");
    json_decref(out);
    dcms_arena_free(a);
}
DCMS_TESTDB_CASE(service_lifecycle)

static void service_reconcile(struct fixture *f)
{
    start(f);
    json_t *e1 = create(f, "w1"), *e2 = create(f, "w1");
    char id1[DCMS_UUID_STRLEN], id2[DCMS_UUID_STRLEN];
    snprintf(id1, sizeof(id1), "%s", str(e1, "id"));
    snprintf(id2, sizeof(id2), "%s", str(e2, "id"));
    json_decref(e1);
    json_decref(e2);
    /* Killed from outside: the next pass fails it with the backend's reason. */
    f->fake->w[0].exited = true;
    snprintf(f->fake->w[0].reason, sizeof(f->fake->w[0].reason), "killed by signal 9 (SIGKILL)");
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    CHECK(dcms_enclaves_reconcile(f->en, false, &ei), ei);
    json_t *g = get(f, id1);
    assert_string_equal(str(g, "status"), "failed");
    assert_string_equal(str(g, "status_reason"), "workload exited: killed by signal 9 (SIGKILL)");
    json_decref(g);
    g = get(f, id2);
    assert_string_equal(str(g, "status"), "running");
    json_decref(g);
    /* A second pass changes nothing more. */
    CHECK(dcms_enclaves_reconcile(f->en, false, &ei), ei);
    assert_int_equal(f->fake->terminates, 1);

    /* A restart: a new service with a backend that has no workloads. */
    dcms_enclaves_close(f->en);
    f->en = NULL;
    open_service(f);
    g = get(f, id2);
    assert_string_equal(str(g, "status"), "failed");
    assert_string_equal(str(g, "status_reason"), "workload lost: dcmsd restarted");
    json_decref(g);
}
DCMS_TESTDB_CASE(service_reconcile)

static void service_metrics_bounded(struct fixture *f)
{
    start(f);
    json_t *e = create(f, "w1");
    char id[DCMS_UUID_STRLEN];
    snprintf(id, sizeof(id), "%s", str(e, "id"));
    json_decref(e);
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_enclave_probe pr = {.state = DCMS_ENCLAVE_RUN_RUNNING, .rss_bytes = 1};
    for (int i = 0; i < ENCLAVE_HISTORY_MAX + 5; i++) {
        pr.cpu_time_ms = (uint64_t)i;
        if (i == 3)
            snprintf(pr.notice, sizeof(pr.notice), "process limit reached (64 of 64)");
        else
            pr.notice[0] = '\0';
        CHECK(enclave_store_sample(f->en, id, &pr, &ei), ei);
    }
    struct enclave_call c = {f->en, &f->p, "127.0.0.1", "req-5", &ei, NULL};
    json_t *m = NULL;
    CHECK(enclave_metrics(&c, id, &m), ei);
    json_t *h = json_object_get(m, "history");
    assert_int_equal(json_array_size(h), ENCLAVE_HISTORY_MAX);
    /* Oldest first; the five oldest were pruned. */
    assert_int_equal(json_integer_value(json_object_get(json_array_get(h, 0), "cpu_time_ms")), 5);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(m, "latest"), "cpu_time_ms")),
        ENCLAVE_HISTORY_MAX + 4);
    json_decref(m);
    /* A finished workload's sample is dropped. */
    c.p = &f->p;
    json_t *out = NULL;
    CHECK(act_json(&c, id, ENCLAVE_EV_TERMINATE, NULL, &out), ei);
    json_decref(out);
    CHECK(enclave_store_sample(f->en, id, &pr, &ei), ei);
    CHECK(enclave_metrics(&c, id, &m), ei);
    assert_int_equal(json_array_size(json_object_get(m, "history")), ENCLAVE_HISTORY_MAX);
    json_decref(m);
}
DCMS_TESTDB_CASE(service_metrics_bounded)

static void service_image_pinned(struct fixture *f)
{
    start(f);
    json_t *e = create(f, "w1");
    assert_string_equal(str(e, "status"), "running");
    json_decref(e);
    write_image(f, "w1", "workload one, changed");
    e = create(f, "w1");
    assert_string_equal(str(e, "status"), "failed");
    assert_non_null(strstr(str(e, "status_reason"), "attestation failed: pcr: "));
    assert_string_not_equal(str(e, "measurement.image_sha384"),
                            str(e, "measurement.expected_pcr0"));
    json_decref(e);
}
DCMS_TESTDB_CASE(service_image_pinned)

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(state_machine_table),
    cmocka_unit_test(image_names),
    cmocka_unit_test(config_defaults_and_round_trip),
    cmocka_unit_test(config_every_problem_with_its_path),
    cmocka_unit_test_setup_teardown(service_lifecycle_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(service_lifecycle_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(service_reconcile_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(service_reconcile_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(service_metrics_bounded_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(service_metrics_bounded_pg, setup_pg, teardown),
    cmocka_unit_test_setup_teardown(service_image_pinned_sqlite, setup_sqlite, teardown),
    cmocka_unit_test_setup_teardown(service_image_pinned_pg, setup_pg, teardown),
};

DCMS_TEST_MAIN(tests)
