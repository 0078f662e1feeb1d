/*
 * From dcmsd's configuration to a running enclave service: picks the
 * backend (DCMS_ENCLAVE_BACKEND), resolves the images directory (empty:
 * the `workload` directory next to the dcmsd executable, where the build
 * puts dcms-workload) and the scratch directory (empty:
 * $DCMS_DATA_DIR/enclaves), and opens the service.
 */
#include <libgen.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

#include "dcms/app.h"
#include "dcms/config.h"
#include "enclaves/enclaves_int.h"

/* <directory of the running executable>/workload */
static enum dcms_err default_images_dir(char *out, size_t cap, struct dcms_errinfo *ei)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0)
        return dcms_err_set(ei, DCMS_ERR_CONFIG,
                            "cannot find dcmsd's own directory; set DCMS_ENCLAVE_IMAGES_DIR");
    exe[n] = '\0';
    int w = snprintf(out, cap, "%s/workload", dirname(exe));
    if (w < 0 || (size_t)w >= cap)
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "the enclave images directory path is too long");
    return DCMS_OK;
}

enum dcms_err dcms_enclaves_start(struct dcms_app *app, struct dcms_enclaves **out,
                                  struct dcms_errinfo *ei)
{
    const struct dcms_config *cfg = app->cfg;
    char images[1024], scratch[DCMS_CONFIG_STR_MAX + 16];
    enum dcms_err e = DCMS_OK;
    if (cfg->enclave_images_dir[0])
        snprintf(images, sizeof(images), "%.1000s", cfg->enclave_images_dir);
    else if ((e = default_images_dir(images, sizeof(images), ei)))
        return e;
    if (cfg->enclave_scratch_dir[0])
        snprintf(scratch, sizeof(scratch), "%s", cfg->enclave_scratch_dir);
    else
        snprintf(scratch, sizeof(scratch), "%s/enclaves", cfg->data_dir);
    if (!cfg->enclave_max_cpu_cores || !cfg->enclave_max_memory_mb ||
        !cfg->enclave_max_storage_gb || cfg->enclave_max_cpu_cores > 4096 ||
        cfg->enclave_max_memory_mb > (1ul << 30) || cfg->enclave_max_storage_gb > (1ul << 30) ||
        cfg->enclave_max_memory_mb < ENCLAVE_MIN_MEMORY_MB)
        return dcms_err_set(ei, DCMS_ERR_CONFIG,
                            "DCMS_ENCLAVE_MAX_CPU_CORES, DCMS_ENCLAVE_MAX_MEMORY_MB (at least 16) "
                            "and DCMS_ENCLAVE_MAX_STORAGE_GB must be positive");
    if (cfg->enclave_reconcile_ms > 3600000 || cfg->enclave_metrics_interval_ms > 3600000)
        return dcms_err_set(ei, DCMS_ERR_CONFIG,
                            "DCMS_ENCLAVE_RECONCILE_MS and DCMS_ENCLAVE_METRICS_INTERVAL_MS must "
                            "be at most 3600000");
    struct dcms_enclave_backend *b = NULL;
    if (strcmp(cfg->enclave_backend, "local") == 0) {
        if (!app->attest || !app->attest->module)
            return dcms_err_set(ei, DCMS_ERR_CONFIG,
                                "the local enclave backend needs the local attestation module");
        const char *cg = cfg->enclave_cgroup_root;
        struct dcms_enclave_local_opts lo = {.scratch_root = scratch,
                                             .module = app->attest->module,
                                             .cgroup_root = strcmp(cg, "auto") == 0   ? NULL
                                                            : strcmp(cg, "none") == 0 ? ""
                                                                                      : cg};
        e = dcms_enclave_backend_local_new(&lo, &b, ei);
    } else if (strcmp(cfg->enclave_backend, "nitro") == 0) {
        if (!cfg->nitro_vsock_port || cfg->nitro_vsock_port > 4294967294ul)
            return dcms_err_set(ei, DCMS_ERR_CONFIG,
                                "DCMS_NITRO_VSOCK_PORT must be from 1 to 4294967294");
        struct dcms_enclave_nitro_opts no = {.nitro_cli = cfg->nitro_cli,
                                             .vsock_port = (unsigned)cfg->nitro_vsock_port};
        e = dcms_enclave_backend_nitro_new(&no, &b, ei);
    } else {
        e = dcms_err_set(ei, DCMS_ERR_CONFIG, "DCMS_ENCLAVE_BACKEND must be local or nitro");
    }
    if (e)
        return e;
    struct dcms_enclaves_opts o = {
        .backend = b,
        .images_dir = images,
        .max_cpu_cores = (unsigned)cfg->enclave_max_cpu_cores,
        .max_memory_mb = (unsigned)cfg->enclave_max_memory_mb,
        .max_storage_gb = (unsigned)cfg->enclave_max_storage_gb,
        .reconcile_ms = (unsigned)cfg->enclave_reconcile_ms,
        .metrics_interval_ms = (unsigned)cfg->enclave_metrics_interval_ms,
    };
    return dcms_enclaves_open(app, &o, out, ei);
}
