/*
 * cgroup v2 for the local enclave backend (sandbox.h). Used only when the
 * cgroup2 hierarchy is mounted and writable; otherwise, and whenever a step
 * fails, the workload keeps its rlimits alone and the failure is logged.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "dcms/clock.h"
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

bool sandbox_cgroup_remove(const char *path)
{
    if (!path[0] || rmdir(path) == 0 || errno == ENOENT)
        return true;
    DCMS_LOG(DCMS_LOG_WARN, "enclaves", "cgroup v2: cannot remove %s: %s", path, strerror(errno));
    return false;
}

bool sandbox_cgroup_kill(const char *path)
{
    /* cgroup.kill (Linux 5.14) sends SIGKILL to every process, frozen ones included. */
    if (!path[0])
        return false;
    if (write_text(path, "cgroup.kill", "1"))
        return true;
    if (errno == ENOENT) {
        char dir[512];
        snprintf(dir, sizeof(dir), "%s/cgroup.procs", path);
        if (access(dir, F_OK) != 0)
            return true; /* the cgroup itself is gone: nothing left to kill */
    }
    /* An older kernel: thaw the group and kill its processes one by one. */
    (void)write_text(path, "cgroup.freeze", "0");
    char file[512], buf[4096];
    snprintf(file, sizeof(file), "%s/cgroup.procs", path);
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n < 0)
        return false;
    buf[n] = '\0';
    for (char *p = buf, *end; *p; p = end) {
        long pid = strtol(p, &end, 10);
        if (end == p)
            break;
        if (pid > 0)
            (void)kill((pid_t)pid, SIGKILL);
    }
    return true;
}

/* 1 when cgroup.events says populated 1, 0 when populated 0 or the cgroup is gone, -1 unknown. */
static int populated(const char *path)
{
    char file[512], buf[256];
    snprintf(file, sizeof(file), "%s/cgroup.events", path);
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -1;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    const char *p = strstr(buf, "populated ");
    return p ? p[10] == '1' : -1;
}

bool sandbox_cgroup_wait_empty(const char *path, int timeout_ms)
{
    if (!path[0])
        return true;
    int64_t until = dcms_clock_mono_us() + (int64_t)timeout_ms * 1000;
    for (;;) {
        if (populated(path) == 0)
            return true;
        if (dcms_clock_mono_us() >= until)
            return false;
        struct timespec ts = {0, 5 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* The pid in "dcms-enclaves-<pid>", or 0 when `name` is not one of ours. */
static pid_t base_owner(const char *name)
{
    static const char prefix[] = "dcms-enclaves-";
    if (strncmp(name, prefix, sizeof(prefix) - 1) != 0)
        return 0;
    char *end;
    long pid = strtol(name + sizeof(prefix) - 1, &end, 10);
    return *end == '\0' && pid > 0 && pid <= 0x3fffffff ? (pid_t)pid : 0;
}

unsigned sandbox_cgroup_sweep(const char *root, int timeout_ms)
{
    struct statfs sf;
    if (!root || !root[0] || strlen(root) > 200 || statfs(root, &sf) != 0 ||
        (unsigned long)sf.f_type != CGROUP2_MAGIC)
        return 0;
    DIR *d = opendir(root);
    if (!d)
        return 0;
    unsigned swept = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        pid_t owner = base_owner(de->d_name);
        /* Only a base whose dcmsd is gone: another dcmsd on this host keeps its own. */
        if (!owner || owner == getpid() || kill(owner, 0) == 0 || errno != ESRCH)
            continue;
        char base[512];
        snprintf(base, sizeof(base), "%s/%s", root, de->d_name);
        DIR *w = opendir(base);
        struct dirent *we;
        while (w && (we = readdir(w))) {
            if (we->d_type != DT_DIR || we->d_name[0] == '.')
                continue;
            char path[800];
            snprintf(path, sizeof(path), "%s/%s", base, we->d_name);
            (void)sandbox_cgroup_kill(path);
            if (!sandbox_cgroup_wait_empty(path, timeout_ms))
                DCMS_LOG(DCMS_LOG_ERROR, "enclaves",
                         "cgroup v2: the leftover workload in %s did not stop", path);
            else if (sandbox_cgroup_remove(path))
                swept++;
        }
        if (w)
            closedir(w);
        (void)sandbox_cgroup_remove(base);
    }
    closedir(d);
    return swept;
}
