/*
 * dcmsd: wiring only. Load the configuration, open the store, start the HTTP
 * server, wait for SIGTERM or SIGINT, drain, stop, close the store.
 */
#include <getopt.h>
#include <sodium.h>
#include <curl/curl.h>
#include <signal.h>
#include <unistd.h>

#include "attestation/attestation.h"
#include "audit/audit.h"
#include "dcms/app.h"
#include "dcms/attest.h"
#include "dcms/audit.h"
#include "dcms/clock.h"
#include "dcms/config.h"
#include "dcms/contracts.h"
#include "dcms/datasets.h"
#include "dcms/training.h"
#include "dcms/crypto.h"
#include "dcms/enclaves.h"
#include "dcms/iam.h"
#include "dcms/keys.h"
#include "dcms/log.h"
#include "dcms/metrics.h"
#include "dcms/nodes.h"
#include "dcms/server.h"
#include "dcms/privacy.h"
#include "dcms/store.h"
#include "evidence/evidence.h"

/*
 * Offline tools: `dcmsd <tool> ...` runs a tool instead of the server. Each
 * service that has one adds a row; the tool gets argv from its own name on
 * and returns the process exit status.
 */
static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} tools[] = {
    {"audit", dcms_audit_cli,
     "verify an audit export offline (dcmsd audit verify FILE --public-key K)"},
    {"attestation", dcms_attest_cli, "verify attestation documents offline"},
    {"image", dcms_attest_image_cli,
     "sign a workload image, print its PCR0 and PCR8 (dcmsd image sign|measure, docs/enclaves.md)"},
    {"privacy", dcms_privacy_cli,
     "the DP-SGD privacy accountant (dcmsd privacy epsilon --q Q --sigma S --steps T --delta D)"},
    {"keys", dcms_keys_cli, "key-encryption keys: status, rotate, rewrap, retire (docs/keys.md)"},
    {"evidence", dcms_evidence_cli,
     "verify a contract's evidence bundle offline (dcmsd evidence verify FILE)"},
    {NULL, NULL, NULL},
};

static void print_var(void *ctx, const char *name, const char *def, const char *doc)
{
    fprintf(ctx, "  %-26s %s (default: %s)\n", name, doc, *def ? def : "empty");
}

static void usage(FILE *f)
{
    fprintf(f, "usage: dcmsd [--config FILE] [--help] [--version]\n"
               "       dcmsd TOOL [ARGS...]\n\n"
               "dcms server: digital contracts, attested enclaves, audit.\n"
               "Configuration comes from the environment (and FILE, KEY=VALUE lines;\n"
               "the environment wins). See docs/configuration.md.\n\n");
    dcms_config_each(print_var, f);
    if (tools[0].name)
        fprintf(f, "\ntools (dcmsd TOOL --help for each):\n");
    for (size_t i = 0; tools[i].name; i++)
        fprintf(f, "  %-26s %s\n", tools[i].name, tools[i].summary);
}

/* Start and stop are audited: an auditor sees every period a node was serving. */
static enum dcms_err record_system_event(struct dcms_app *app, const char *action,
                                         struct dcms_errinfo *ei)
{
    json_t *details = json_pack("{s:s, s:s, s:I}", "version", DCMS_VERSION, "store",
                                dcms_store_backend_name(app->store), "pid", (json_int_t)getpid());
    struct dcms_audit_event ev = {
        .actor = "system", .action = action, .outcome = DCMS_AUDIT_SUCCESS, .details = details};
    enum dcms_err e = details ? dcms_audit_record(app->audit, &ev, ei) : DCMS_ERR_NOMEM;
    json_decref(details);
    return e;
}

static unsigned cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}

static int run_tool(int argc, char **argv)
{
    for (size_t i = 0; tools[i].name; i++)
        if (strcmp(argv[1], tools[i].name) == 0)
            return tools[i].run(argc - 1, argv + 1);
    fprintf(stderr, "dcmsd: unknown command \"%s\" (see dcmsd --help)\n", argv[1]);
    return 2;
}

int main(int argc, char **argv)
{
    if (argc > 1 && argv[1][0] != '-')
        return run_tool(argc, argv);
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"help", no_argument, NULL, 'h'},
                                         {"version", no_argument, NULL, 'V'},
                                         {NULL, 0, NULL, 0}};
    const char *config_path = getenv("DCMS_CONFIG");
    int ch;
    while ((ch = getopt_long(argc, argv, "c:hV", opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            config_path = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("dcmsd %s\n", DCMS_VERSION);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }

    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    static struct dcms_config cfg;
    if (dcms_config_load(&cfg, config_path, &ei)) {
        DCMS_LOG(DCMS_LOG_ERROR, "main", "configuration: %s", ei.message);
        return 2;
    }
    dcms_log_set_level(cfg.log_level);
    if (dcms_crypto_init() || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        DCMS_LOG(DCMS_LOG_ERROR, "main", "cannot initialise libsodium");
        return 1;
    }

    /* Signals are taken synchronously by this thread; workers inherit the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    unsigned threads = cfg.threads ? (unsigned)cfg.threads : cpu_count();
    struct dcms_app app = {.cfg = &cfg, .started_us = dcms_clock_now_us()};
    int status = 1;
    struct dcms_http_server *srv = NULL;
    struct dcms_store_opts sopts = {.pool_size = threads,
                                    .timeout_ms = (unsigned)cfg.store_timeout_ms};
    if (dcms_store_open(cfg.database_url, &sopts, &app.store, &ei)) {
        DCMS_LOG(DCMS_LOG_ERROR, "main", "cannot open the store: %s", ei.message);
        goto out;
    }
    struct dcms_audit_opts aopts = {
        .key_path = cfg.audit_key_file,
        .checkpoint_every = (unsigned)cfg.audit_checkpoint_every,
        .checkpoint_interval_s = (unsigned)cfg.audit_checkpoint_interval_s,
        .denied_per_minute = (unsigned)cfg.audit_refusals_per_minute,
        .database_url = cfg.database_url,
        .sequence_delay_ms = (unsigned)cfg.audit_sequence_delay_ms,
    };
    if (dcms_audit_open(app.store, &aopts, &app.audit, &ei)) {
        DCMS_LOG(DCMS_LOG_ERROR, "main", "cannot open the audit log: %s", ei.message);
        goto out;
    }
    dcms_audit_set_refusal_window(app.audit, (unsigned)cfg.audit_refusal_window_s);
    /* The start comes first in the log: what the services do while starting follows it. */
    if (record_system_event(&app, "system.start", &ei)) {
        DCMS_LOG(DCMS_LOG_ERROR, "main", "cannot write to the audit log: %s", ei.message);
        goto out;
    }
    char attest_dir[DCMS_CONFIG_STR_MAX + 16];
    snprintf(attest_dir, sizeof(attest_dir), "%s/attestation", cfg.data_dir);
    if (dcms_attest_ctx_new(cfg.attest_aws_root, attest_dir, &app.attest, &ei)) {
        DCMS_LOG(DCMS_LOG_ERROR, "main", "cannot set up attestation: %s", ei.message);
        goto out;
    }
    /* ---- keys: open ---- */
    struct dcms_keys_opts kopts;
    dcms_keys_opts_from_config(&cfg, &kopts);
    if (dcms_keys_open(&kopts, app.store, app.audit, &app.keys, &ei)) {
        DCMS_LOG(DCMS_LOG_ERROR, "main", "cannot open the keyring: %s", ei.message);
        goto out;
    }
    /* ---- end keys: open ---- */
    enum dcms_err iam_e = dcms_iam_open(&app, &app.iam, &ei);
    /* The bootstrap password is not needed any more: keep it out of core dumps. */
    sodium_memzero(cfg.admin_password, sizeof(cfg.admin_password));
    if (iam_e) {
        DCMS_LOG(DCMS_LOG_ERROR, "main", "cannot start identity and access management: %s",
                 ei.message);
        goto out;
    }
    /* Before the services: they register lost-node listeners and ask who leads. */
    if (dcms_nodes_open(&app, &app.nodes, &ei)) {
        DCMS_LOG(DCMS_LOG_ERROR, "main", "cannot join the nodes of this store: %s", ei.message);
        goto out;
    }
    if (dcms_contracts_open(&app, &app.contracts, &ei)) {
        DCMS_LOG(DCMS_LOG_ERROR, "main", "cannot start the contract service: %s", ei.message);
        goto out;
    }
    if (dcms_datasets_open(&app, &app.datasets, &ei)) {
        DCMS_LOG(DCMS_LOG_ERROR, "main", "cannot start the dataset retention job: %s", ei.message);
        goto out;
    }
    if (dcms_enclaves_start(&app, &app.enclaves, &ei)) {
        DCMS_LOG(DCMS_LOG_ERROR, "main", "cannot start the enclave service: %s", ei.message);
        goto out;
    }
    if (dcms_training_open(&app, &app.training, &ei)) {
        DCMS_LOG(DCMS_LOG_ERROR, "main", "cannot start the training service: %s", ei.message);
        goto out;
    }

    if (!(app.metrics = dcms_metrics_new())) {
        DCMS_LOG(DCMS_LOG_ERROR, "main", "out of memory");
        goto out;
    }
    if (dcms_http_server_start(&app, threads, &srv, &ei)) {
        DCMS_LOG(DCMS_LOG_ERROR, "main", "cannot start the HTTP server: %s", ei.message);
        goto out;
    }
    char fields[256];
    snprintf(fields, sizeof(fields),
             "\"host\":\"%s\",\"port\":%u,\"tls\":%s,\"store\":\"%s\",\"threads\":%u,"
             "\"version\":\"%s\"",
             cfg.listen_host, dcms_http_server_port(srv),
             dcms_http_server_tls(srv) ? "true" : "false", dcms_store_backend_name(app.store),
             threads, DCMS_VERSION);
    DCMS_LOG_FIELDS(DCMS_LOG_INFO, "main", fields, "listening");
    char self_url[128];
    snprintf(self_url, sizeof(self_url), "%s://%s:%u", dcms_http_server_tls(srv) ? "https" : "http",
             cfg.listen_host, dcms_http_server_port(srv));
    dcms_nodes_set_default_url(app.nodes, self_url);
    dcms_nodes_heartbeat(app.nodes); /* the URL is known to the other nodes from now on */

    int sig = 0;
    /* SIGHUP reloads the TLS certificate and key (certificate rotation); the rest stop. */
    while (sigwait(&sigs, &sig) == 0 && sig == SIGHUP) {
        if (!dcms_http_server_tls(srv))
            DCMS_LOG(DCMS_LOG_INFO, "main", "SIGHUP: nothing to reload without TLS");
        else if (dcms_http_server_reload_tls(srv, &ei))
            DCMS_LOG(DCMS_LOG_ERROR, "main",
                     "SIGHUP: the certificate was not reloaded, the "
                     "previous one stays in use: %s",
                     ei.message);
    }
    DCMS_LOG(DCMS_LOG_INFO, "main", "received %s, draining", sig == SIGINT ? "SIGINT" : "SIGTERM");
    int64_t left = dcms_http_server_drain(srv, (unsigned)cfg.shutdown_timeout_ms);
    if (left > 0)
        DCMS_LOG(DCMS_LOG_WARN, "main", "%lld requests still running at the deadline",
                 (long long)left);
    status = 0;
out:
    dcms_http_server_stop(srv);
    if (srv && record_system_event(&app, "system.stop", &ei))
        DCMS_LOG(DCMS_LOG_WARN, "main", "cannot audit the stop: %s", ei.message);
    /* First: no heartbeat or sweep reaches a service being closed; the others take over. */
    dcms_nodes_close(app.nodes);
    dcms_training_close(app.training);
    dcms_enclaves_close(app.enclaves);
    dcms_datasets_close(app.datasets);
    dcms_contracts_close(app.contracts);
    dcms_iam_close(app.iam);
    /* ---- keys: close ---- */
    dcms_keys_close(app.keys);
    /* ---- end keys: close ---- */
    dcms_audit_close(app.audit);
    dcms_store_close(app.store);
    dcms_metrics_free(app.metrics);
    dcms_attest_ctx_free(app.attest);
    if (status == 0)
        DCMS_LOG(DCMS_LOG_INFO, "main", "stopped");
    return status;
}
