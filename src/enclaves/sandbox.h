/*
 * The local backend's sandbox (sandbox.c, seccomp.c): the seccomp
 * allow-list as a BPF program, and the launcher description measured as
 * PCR1. Private to src/enclaves.
 */
#ifndef DCMS_ENCLAVES_SANDBOX_H
#define DCMS_ENCLAVES_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <linux/filter.h>

#include "dcms/err.h"

/*
 * The workload's system call filter, exported from libseccomp once so the
 * child can load it with a plain seccomp(2) call (no allocation after
 * clone). Allowed: what a single-process program with threads and child
 * processes needs on its own files and the channel. Refused with ENOSYS:
 * anything else. Killed (SIGSYS, reported as a seccomp violation): sockets,
 * namespaces, mounts, ptrace, keyrings, BPF, modules, io_uring, and clone
 * with namespace flags. *prog_out->filter is malloc'd.
 */
enum dcms_err sandbox_seccomp_build(struct sock_fprog *prog_out,
                                    struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* The names of the system calls that kill the workload, comma-separated (docs, PCR1). */
extern const char sandbox_seccomp_killed[];

/*
 * cgroup v2, used when the host has a writable cgroup2 hierarchy: one
 * cgroup per workload under <root>/dcms-enclaves-<dcmsd pid>, with
 * memory.max, memory.swap.max, pids.max and cpu.max where those
 * controllers can be enabled, and cgroup.freeze. Everything here is best
 * effort: on any failure the workload runs under its rlimits alone.
 */
struct sandbox_cgroup {
    char base[320];
    bool memory, pids, cpu;
};

/* Detects a writable cgroup2 mount at `root` and prepares the base cgroup; false when none. */
bool sandbox_cgroup_init(struct sandbox_cgroup *cg, const char *root);
/* Removes the base cgroup (it must be empty). */
void sandbox_cgroup_fini(struct sandbox_cgroup *cg);
/*
 * Creates <base>/<name> with the limits and moves `pid` into it. Writes the
 * cgroup's path to path_out; false (and path_out "") when it cannot.
 */
bool sandbox_cgroup_attach(const struct sandbox_cgroup *cg, const char *name, pid_t pid,
                           uint64_t memory_bytes, unsigned max_pids, unsigned cpus, char *path_out,
                           size_t cap);
/* The oom_kill count of memory.events, 0 when unknown. */
uint64_t sandbox_cgroup_oom_kills(const char *path);
/* Writes cgroup.freeze (1 or 0); false when the cgroup cannot be frozen. */
bool sandbox_cgroup_freeze(const char *path, bool frozen);
/* Removes a workload's cgroup once its processes are gone; false (logged) when it cannot. */
bool sandbox_cgroup_remove(const char *path);
/*
 * Kills every process of the cgroup with cgroup.kill, which also kills
 * frozen ones (without it, on kernels before 5.14: thaw, then SIGKILL each
 * pid of cgroup.procs). True when the kill was sent or the cgroup is gone.
 */
bool sandbox_cgroup_kill(const char *path);
/* Waits up to timeout_ms for cgroup.events to say "populated 0" (or the cgroup to be gone). */
bool sandbox_cgroup_wait_empty(const char *path, int timeout_ms);
/*
 * At start: under `root`, every dcms-enclaves-<pid> base whose dcmsd is no
 * longer alive (another dcmsd's base is left alone) has its workload
 * cgroups killed, emptied and removed, then the base. Returns how many
 * workload cgroups were swept.
 */
unsigned sandbox_cgroup_sweep(const char *root, int timeout_ms);

#endif
