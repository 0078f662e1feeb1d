/*
 * cgroup v2 for the local enclave backend (sandbox.h). Used only when the
 * cgroup2 hierarchy is mounted and writable; otherwise, and whenever a step
 * fails, the workload keeps its rlimits alone and the failure is logged.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "dcms/log.h"
#include "enclaves/sandbox.h"

#define CGROUP2_MAGIC 0x63677270

static bool write_text(const char *dir, const char *file, const char *text)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    size_t n = strlen(text);
    bool ok = fd >= 0 && write(fd, text, n) == (ssize_t)n;
    if (fd >= 0)
        close(fd);
    return ok;
}

bool sandbox_cgroup_init(struct sandbox_cgroup *cg, const char *root)
{
    memset(cg, 0, sizeof(*cg));
    struct statfs sf;
    if (!root || !root[0] || strlen(root) > 200 || statfs(root, &sf) != 0 ||
        (unsigned long)sf.f_type != CGROUP2_MAGIC || access(root, W_OK) != 0)
        return false;
    snprintf(cg->base, sizeof(cg->base), "%s/dcms-enclaves-%d", root, (int)getpid());
    if (mkdir(cg->base, 0755) != 0 && errno != EEXIST) {
        DCMS_LOG(DCMS_LOG_WARN, "enclaves", "cgroup v2: cannot create %s: %s", cg->base,
                 strerror(errno));
        cg->base[0] = '\0';
        return false;
    }
    /* A controller is usable below base when root and base both delegate it. */
    static const char *const names[] = {"memory", "pids", "cpu"};
    bool *flags[] = {&cg->memory, &cg->pids, &cg->cpu};
    for (int i = 0; i < 3; i++) {
        char plus[16];
        snprintf(plus, sizeof(plus), "+%s", names[i]);
        (void)write_text(root, "cgroup.subtree_control", plus);
        *flags[i] = write_text(cg->base, "cgroup.subtree_control", plus);
    }
    DCMS_LOG(DCMS_LOG_INFO, "enclaves", "cgroup v2 in %s (memory %s, pids %s, cpu %s)", cg->base,
             cg->memory ? "yes" : "no", cg->pids ? "yes" : "no", cg->cpu ? "yes" : "no");
    return true;
}

void sandbox_cgroup_fini(struct sandbox_cgroup *cg)
{
    if (cg->base[0])
        rmdir(cg->base);
    cg->base[0] = '\0';
}

bool sandbox_cgroup_attach(const struct sandbox_cgroup *cg, const char *name, pid_t pid,
                           uint64_t memory_bytes, unsigned max_pids, unsigned cpus, char *path_out,
                           size_t cap)
{
    path_out[0] = '\0';
    if (!cg->base[0])
        return false;
    char path[512], v[64];
    snprintf(path, sizeof(path), "%s/%s", cg->base, name);
    if (mkdir(path, 0755) != 0 && (errno != EEXIST || rmdir(path) != 0 || mkdir(path, 0755) != 0)) {
        DCMS_LOG(DCMS_LOG_WARN, "enclaves", "cgroup v2: cannot create %s: %s", path,
                 strerror(errno));
        return false;
    }
    bool ok = true;
    if (cg->memory) {
        snprintf(v, sizeof(v), "%" PRIu64, memory_bytes);
        ok = write_text(path, "memory.max", v);
        (void)write_text(path, "memory.swap.max", "0"); /* absent without swap accounting */
    }
    if (ok && cg->pids) {
        snprintf(v, sizeof(v), "%u", max_pids);
        ok = write_text(path, "pids.max", v);
    }
    if (ok && cg->cpu) {
        snprintf(v, sizeof(v), "%u 100000", cpus * 100000u);
        ok = write_text(path, "cpu.max", v);
    }
    snprintf(v, sizeof(v), "%d", (int)pid);
    if (!ok || !write_text(path, "cgroup.procs", v)) {
        DCMS_LOG(DCMS_LOG_WARN, "enclaves", "cgroup v2: cannot set up %s: %s", path,
                 strerror(errno));
        rmdir(path);
        return false;
    }
    snprintf(path_out, cap, "%s", path);
    return strlen(path) < cap;
}

uint64_t sandbox_cgroup_oom_kills(const char *path)
{
    char file[512], buf[512];
    snprintf(file, sizeof(file), "%s/memory.events", path);
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    const char *p = strstr(buf, "oom_kill ");
    return p ? strtoull(p + 9, NULL, 10) : 0;
}

bool sandbox_cgroup_freeze(const char *path, bool frozen)
{
    return path[0] && write_text(path, "cgroup.freeze", frozen ? "1" : "0");
}

void sandbox_cgroup_remove(const char *path)
{
    if (path[0] && rmdir(path) != 0 && errno != ENOENT)
        DCMS_LOG(DCMS_LOG_WARN, "enclaves", "cgroup v2: cannot remove %s: %s", path,
                 strerror(errno));
}
