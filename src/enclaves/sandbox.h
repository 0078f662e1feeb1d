/*
 * The local backend's sandbox (sandbox.c, seccomp.c): the seccomp
 * allow-list as a BPF program, and the launcher description measured as
 * PCR1. Private to src/enclaves.
 */
#ifndef DCMS_ENCLAVES_SANDBOX_H
#define DCMS_ENCLAVES_SANDBOX_H

#include <stddef.h>
#include <stdint.h>

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

#endif
