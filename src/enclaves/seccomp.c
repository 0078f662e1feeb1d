/*
 * The seccomp allow-list of the local enclave backend (sandbox.h). Built
 * with libseccomp in dcmsd and exported as BPF, so loading it in the
 * freshly cloned child is one system call.
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <seccomp.h>

#include "enclaves/sandbox.h"

static const char *const allowed[] = {"read",
                                      "write",
                                      "readv",
                                      "writev",
                                      "pread64",
                                      "pwrite64",
                                      "preadv",
                                      "pwritev",
                                      "close",
                                      "fstat",
                                      "stat",
                                      "lstat",
                                      "newfstatat",
                                      "statx",
                                      "lseek",
                                      "mmap",
                                      "munmap",
                                      "mprotect",
                                      "mremap",
                                      "brk",
                                      "madvise",
                                      "msync",
                                      "mincore",
                                      "rt_sigaction",
                                      "rt_sigprocmask",
                                      "rt_sigreturn",
                                      "rt_sigpending",
                                      "rt_sigtimedwait",
                                      "rt_sigsuspend",
                                      "sigaltstack",
                                      "exit",
                                      "exit_group",
                                      "getpid",
                                      "gettid",
                                      "getppid",
                                      "getpgrp",
                                      "getpgid",
                                      "getsid",
                                      "setsid",
                                      "setpgid",
                                      "getuid",
                                      "geteuid",
                                      "getgid",
                                      "getegid",
                                      "getresuid",
                                      "getresgid",
                                      "getgroups",
                                      "getrandom",
                                      "clock_gettime",
                                      "clock_getres",
                                      "clock_nanosleep",
                                      "nanosleep",
                                      "gettimeofday",
                                      "time",
                                      "futex",
                                      "set_robust_list",
                                      "get_robust_list",
                                      "set_tid_address",
                                      "arch_prctl",
                                      "prlimit64",
                                      "getrlimit",
                                      "getrusage",
                                      "times",
                                      "sysinfo",
                                      "sched_yield",
                                      "sched_getaffinity",
                                      "uname",
                                      "open",
                                      "openat",
                                      "openat2",
                                      "creat",
                                      "mkdir",
                                      "mkdirat",
                                      "rmdir",
                                      "unlink",
                                      "unlinkat",
                                      "rename",
                                      "renameat",
                                      "renameat2",
                                      "link",
                                      "linkat",
                                      "symlink",
                                      "symlinkat",
                                      "readlink",
                                      "readlinkat",
                                      "getdents64",
                                      "fcntl",
                                      "dup",
                                      "dup2",
                                      "dup3",
                                      "pipe",
                                      "pipe2",
                                      "poll",
                                      "ppoll",
                                      "select",
                                      "pselect6",
                                      "epoll_create1",
                                      "epoll_ctl",
                                      "epoll_wait",
                                      "epoll_pwait",
                                      "epoll_pwait2",
                                      "eventfd2",
                                      "timerfd_create",
                                      "timerfd_settime",
                                      "timerfd_gettime",
                                      "fsync",
                                      "fdatasync",
                                      "ftruncate",
                                      "truncate",
                                      "fallocate",
                                      "getcwd",
                                      "chdir",
                                      "fchdir",
                                      "access",
                                      "faccessat",
                                      "faccessat2",
                                      "umask",
                                      "chmod",
                                      "fchmod",
                                      "fchmodat",
                                      "utimensat",
                                      "wait4",
                                      "waitid",
                                      "kill",
                                      "tgkill",
                                      "tkill",
                                      "vfork",
                                      "execveat",
                                      "pause",
                                      "alarm",
                                      "setitimer",
                                      "getitimer",
                                      "timer_create",
                                      "timer_settime",
                                      "timer_gettime",
                                      "timer_delete",
                                      "restart_syscall",
                                      "membarrier",
                                      "sched_getparam",
                                      "sched_getscheduler",
                                      "ioctl",
                                      "statfs",
                                      "fstatfs",
                                      "sendfile",
                                      "copy_file_range",
                                      "splice",
                                      "tee",
                                      "flock",
                                      "fadvise64",
                                      "getcpu",
                                      "rseq",
                                      "close_range",
                                      "pidfd_open",
                                      "memfd_create"};

const char sandbox_seccomp_killed[] =
    "socket,socketpair,connect,bind,listen,accept,accept4,sendto,recvfrom,sendmsg,recvmsg,"
    "sendmmsg,recvmmsg,shutdown,getsockopt,setsockopt,getsockname,getpeername,ptrace,mount,"
    "umount2,pivot_root,chroot,unshare,setns,bpf,perf_event_open,keyctl,add_key,request_key,"
    "kexec_load,kexec_file_load,init_module,finit_module,delete_module,reboot,swapon,swapoff,"
    "process_vm_readv,process_vm_writev,userfaultfd,io_uring_setup,io_uring_enter,"
    "io_uring_register,open_by_handle_at,name_to_handle_at,fanotify_init,iopl,ioperm,"
    "move_mount,open_tree,fsopen,fsmount,fspick,mount_setattr,quotactl,acct,settimeofday,"
    "clock_settime,adjtimex,clock_adjtime,sethostname,setdomainname,personality,"
    "clone-with-namespace-flags";

#define NS_FLAGS                                                                                   \
    (CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS |     \
     CLONE_NEWCGROUP | 0x00000080 /* CLONE_NEWTIME */)

static int add_killed(scmp_filter_ctx ctx)
{
    char names[sizeof(sandbox_seccomp_killed)];
    memcpy(names, sandbox_seccomp_killed, sizeof(names));
    char *save = NULL;
    for (char *n = strtok_r(names, ",", &save); n; n = strtok_r(NULL, ",", &save)) {
        if (strcmp(n, "clone-with-namespace-flags") == 0)
            continue;
        int nr = seccomp_syscall_resolve_name(n);
        if (nr == __NR_SCMP_ERROR)
            continue; /* not on this architecture */
        int rc = seccomp_rule_add(ctx, SCMP_ACT_KILL_PROCESS, nr, 0);
        if (rc < 0)
            return rc;
    }
    return 0;
}

enum dcms_err sandbox_seccomp_build(struct sock_fprog *prog_out, struct dcms_errinfo *ei)
{
    prog_out->filter = NULL;
    prog_out->len = 0;
    enum dcms_err e = DCMS_OK;
    int fd = -1;
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(ENOSYS));
    if (!ctx)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, "cannot create the seccomp filter");
    int rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
    for (size_t i = 0; rc == 0 && i < sizeof(allowed) / sizeof(allowed[0]); i++) {
        int nr = seccomp_syscall_resolve_name(allowed[i]);
        if (nr != __NR_SCMP_ERROR)
            rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
    }
    /* fork and threads, but no new namespaces: those are kills, not refusals. */
    if (rc == 0)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
                              SCMP_A0(SCMP_CMP_MASKED_EQ, NS_FLAGS, 0));
    for (unsigned bit = 0; rc == 0 && bit < 32; bit++) {
        unsigned long flag = 1ul << bit;
        if (NS_FLAGS & flag)
            rc = seccomp_rule_add(ctx, SCMP_ACT_KILL_PROCESS, SCMP_SYS(clone), 1,
                                  SCMP_A0(SCMP_CMP_MASKED_EQ, flag, flag));
    }
    /* clone3 passes its flags in memory a filter cannot read: glibc falls back to clone. */
    if (rc == 0)
        rc = add_killed(ctx);
    if (rc < 0) {
        e = dcms_err_set(ei, DCMS_ERR_INTERNAL, "cannot build the seccomp filter: %s",
                         strerror(-rc));
        goto out;
    }
    fd = memfd_create("dcms-seccomp", MFD_CLOEXEC);
    if (fd < 0 || (rc = seccomp_export_bpf(ctx, fd)) < 0) {
        e = dcms_err_set(ei, DCMS_ERR_INTERNAL, "cannot export the seccomp filter");
        goto out;
    }
    off_t size = lseek(fd, 0, SEEK_END);
    if (size <= 0 || size % (off_t)sizeof(struct sock_filter) != 0 ||
        size / (off_t)sizeof(struct sock_filter) > BPF_MAXINSNS) {
        e = dcms_err_set(ei, DCMS_ERR_INTERNAL, "the exported seccomp filter has a bad size");
        goto out;
    }
    struct sock_filter *f = malloc((size_t)size);
    if (!f) {
        e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
        goto out;
    }
    if (pread(fd, f, (size_t)size, 0) != (ssize_t)size) {
        free(f);
        e = dcms_err_set(ei, DCMS_ERR_INTERNAL, "cannot read the exported seccomp filter");
        goto out;
    }
    prog_out->filter = f;
    prog_out->len = (unsigned short)(size / (off_t)sizeof(struct sock_filter));
out:
    if (fd >= 0)
        close(fd);
    seccomp_release(ctx);
    return e;
}
