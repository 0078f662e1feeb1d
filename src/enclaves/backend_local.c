/*
 * The local enclave backend (backend.h): each workload is a child of dcmsd
 * in new user, pid, net, mount, ipc and uts namespaces, its root a tmpfs
 * sized by storage_gb, mapped to an unprivileged host uid, with no
 * capabilities, no_new_privs, a seccomp allow-list (seccomp.c) and rlimits.
 * Its only channel to dcmsd is a socketpair (fd 3). The image is copied
 * into a sealed memfd and executed from it, so the bytes measured for PCR0
 * are the bytes that run.
 *
 * Threads: callers start, probe and stop workloads from any thread; one
 * reaper thread per backend waits on the workloads' pidfds (epoll), records
 * how each ended (wait4 status and rusage) and copies their stdout/stderr
 * into the enclave directory. See docs/enclaves.md "Backends".
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/capability.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <linux/securebits.h>

#include <openssl/evp.h>

#include "dcms/attest.h"
#include "dcms/clock.h"
#include "dcms/fs.h"
#include "dcms/log.h"
#include "enclaves/backend.h"
#include "enclaves/channel.h"
#include "enclaves/channel_io.h"
#include "enclaves/sandbox.h"

#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U
#endif
#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif

#define LOCAL_PATH_MAX 512
#define IMAGE_MAX_BYTES (256u << 20)
#define LOG_MAX_BYTES (1u << 20)
#define DEFAULT_MAX_PROCESSES 64u
#define CHILD_NOFILE 64u
#define START_TIMEOUT_MS 5000
#define ATTEST_TIMEOUT_MS 5000
#define TERMINATE_TIMEOUT_MS 5000
#define ATTEST_MAX_NSM_REQUESTS 4
#define SCAN_MAX_PROCS 65536
#define CHAN_SOCKBUF (2 << 20)
#define SNAPSHOT_MAX_AGE_US 250000 /* probes within this window share one /proc pass */

/* Fixed fds in the child before exec. */
#define CHILD_CHAN_FD 3
#define CHILD_IMAGE_FD 4
#define CHILD_SYNC_FD 5

struct lentry {
    struct lentry *next;
    char ref[DCMS_ENCLAVE_REF_MAX];
    char dir[LOCAL_PATH_MAX + 80];
    char config_path[LOCAL_PATH_MAX + 100];
    pid_t pid;
    int pidfd, chan, image_fd, log_in, log_out;
    size_t log_written;
    bool debug;
    unsigned char pcr0[DCMS_ATTEST_SHA384_LEN]; /* of the sealed image, measured once at start */
    unsigned char *signing_cert; /* DER of the verified signer (PCR8), NULL: unsigned image */
    size_t signing_cert_len;
    uint64_t memory_limit, peak_rss;
    unsigned nproc_limit;
    char cgroup[512]; /* its cgroup v2 directory, "" when none */
    dev_t pidns_dev;
    ino_t pidns_ino;
    int64_t started_us, ended_us;
    bool exited, suspended, terminating;
    char reason[192];
    uint64_t final_cpu_ms;
    uint64_t bytes_in, bytes_out; /* as seen by dcmsd: in = from the workload */
    unsigned refs;                /* lookups in flight; freed when unlinked and 0 */
    bool unlinked;
    pthread_mutex_t chan_mu; /* one exchange on the channel at a time */
};

/* Processes, CPU ticks and RSS of one pid namespace, from one pass over /proc. */
struct ns_usage {
    dev_t dev;
    ino_t ino;
    uint32_t nprocs;
    uint64_t ticks, rss;
};

struct local {
    pthread_mutex_t snap_mu; /* the shared /proc snapshot probe() reads */
    struct ns_usage *snap;
    size_t nsnap;
    int64_t snap_us;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* an entry exited */
    pthread_mutex_t start_mu;
    struct lentry *list;
    char scratch_root[LOCAL_PATH_MAX];
    char launcher_path[64];
    struct dcms_attest_local *module;
    unsigned max_processes;
    struct sock_fprog prog;
    int launcher_fd, epfd, evfd;
    pthread_t reaper;
    bool reaper_started, stop;
    /* The spawner thread clones every workload (see spawn_clone). */
    pthread_mutex_t spawn_mu;
    pthread_cond_t spawn_cv;
    struct spawn_req *spawn_req;
    pthread_t spawner;
    bool spawner_started, spawn_stop;
    bool as_root;
    struct sandbox_cgroup cg;
    bool use_cgroup;
    uid_t host_uid;
    gid_t host_gid;
    cpu_set_t cpus;
    unsigned ncpus, next_cpu;
};

/* Everything the child needs, prepared before clone: the child only makes system calls. */
struct child_args {
    int sync_fd, chan_fd, image_fd, null_fd, log_fd;
    int parent_sync_fd; /* dcmsd's end of the sync socket, closed first */
    bool as_root;
    char root_dir[LOCAL_PATH_MAX + 100];
    char tmpfs_opts[96];
    struct rlimit lim_as, lim_nproc, lim_nofile, lim_fsize;
    cpu_set_t cpus;
    const struct sock_fprog *prog;
    char *argv[2];
    char *envp[3];
    char env_id[80];
};

/* Steps the child reports on failure (sync socket: {step, errno}). */
enum child_step {
    STEP_SYNC = 1,
    STEP_MOUNT_PRIVATE,
    STEP_MOUNT_TMPFS,
    STEP_PIVOT,
    STEP_IDS,
    STEP_FDS,
    STEP_LIMITS,
    STEP_CAPS,
    STEP_SECCOMP,
    STEP_EXEC,
};

static const char *const step_names[] = {"",
                                         "waiting for the id maps",
                                         "making mounts private",
                                         "mounting the scratch tmpfs",
                                         "pivoting to the scratch root",
                                         "switching to the unprivileged ids",
                                         "arranging the fds",
                                         "setting the limits",
                                         "dropping capabilities",
                                         "loading the seccomp filter",
                                         "executing"};

static struct local *L(struct dcms_enclave_backend *b)
{
    return b->impl;
}

/* ---- the child (after clone3; async-signal-safe system calls only) ---- */

/* Reports the failed step on the sync socket (where it is now: `fd`) and exits. */
static __attribute__((noreturn)) void child_fail_fd(int fd, int step)
{
    int msg[2] = {step, errno};
    (void)!write(fd, msg, sizeof(msg));
    _exit(127);
}

/* Nothing of the host filesystem: a private tmpfs becomes "/". */
static void child_setup_mounts(const struct child_args *a)
{
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        child_fail_fd(a->sync_fd, STEP_MOUNT_PRIVATE);
    if (mount("dcms-enclave", a->root_dir, "tmpfs", MS_NOSUID | MS_NODEV, a->tmpfs_opts) != 0)
        child_fail_fd(a->sync_fd, STEP_MOUNT_TMPFS);
    if (chdir(a->root_dir) != 0 || syscall(SYS_pivot_root, ".", ".") != 0 ||
        umount2(".", MNT_DETACH) != 0 || chdir("/") != 0)
        child_fail_fd(a->sync_fd, STEP_PIVOT);
    (void)syscall(SYS_sethostname, "enclave", 7);
}

/* uid/gid 0 inside is the unprivileged host id; drop the host's supplementary groups. */
static void child_setup_ids(const struct child_args *a)
{
    if ((a->as_root && syscall(SYS_setgroups, 0, NULL) != 0) ||
        syscall(SYS_setresgid, 0, 0, 0) != 0 || syscall(SYS_setresuid, 0, 0, 0) != 0)
        child_fail_fd(a->sync_fd, STEP_IDS);
}

/*
 * fd 0 /dev/null, 1-2 the log pipe, 3 the channel; the image and sync fds
 * close at exec. From here the sync socket is CHILD_SYNC_FD.
 */
static void child_setup_fds(const struct child_args *a)
{
    int src[5] = {a->null_fd, a->log_fd, a->log_fd, a->chan_fd, a->image_fd};
    int tmp[5];
    for (int i = 0; i < 5; i++)
        if ((tmp[i] = fcntl(src[i], F_DUPFD_CLOEXEC, 16)) < 0)
            child_fail_fd(a->sync_fd, STEP_FDS);
    int sync_tmp = fcntl(a->sync_fd, F_DUPFD_CLOEXEC, 16);
    if (sync_tmp < 0 || dup3(sync_tmp, CHILD_SYNC_FD, O_CLOEXEC) < 0)
        child_fail_fd(a->sync_fd, STEP_FDS);
    for (int i = 0; i < 4; i++)
        if (dup3(tmp[i], i, 0) < 0)
            child_fail_fd(CHILD_SYNC_FD, STEP_FDS);
    if (dup3(tmp[4], CHILD_IMAGE_FD, O_CLOEXEC) < 0 ||
        syscall(SYS_close_range, CHILD_SYNC_FD + 1, ~0u, 0) != 0)
        child_fail_fd(CHILD_SYNC_FD, STEP_FDS);
}

static void child_setup_limits(const struct child_args *a)
{
    struct rlimit zero = {0, 0};
    if (setrlimit(RLIMIT_AS, &a->lim_as) != 0 || setrlimit(RLIMIT_NPROC, &a->lim_nproc) != 0 ||
        setrlimit(RLIMIT_NOFILE, &a->lim_nofile) != 0 ||
        setrlimit(RLIMIT_FSIZE, &a->lim_fsize) != 0 || setrlimit(RLIMIT_CORE, &zero) != 0 ||
        setrlimit(RLIMIT_MEMLOCK, &zero) != 0 || setrlimit(RLIMIT_MSGQUEUE, &zero) != 0 ||
        sched_setaffinity(0, sizeof(a->cpus), &a->cpus) != 0)
        child_fail_fd(CHILD_SYNC_FD, STEP_LIMITS);
}

/* No capability survives exec: securebits, empty bounding and ambient sets, empty sets. */
static void child_drop_caps(void)
{
    if (prctl(PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
                                     SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED |
                                     SECBIT_NO_CAP_AMBIENT_RAISE |
                                     SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED) != 0)
        child_fail_fd(CHILD_SYNC_FD, STEP_CAPS);
    for (int cap = 0; cap <= 63; cap++)
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL)
            child_fail_fd(CHILD_SYNC_FD, STEP_CAPS);
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof(data));
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 ||
        syscall(SYS_capset, &hdr, data) != 0 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        child_fail_fd(CHILD_SYNC_FD, STEP_CAPS);
}

/*
 * dcmsd's ignored signals (SIGPIPE, and whatever its parent ignored, even
 * the real-time signals libc keeps for itself) and the calling thread's
 * mask would survive exec: reset them with the raw system call.
 */
static void child_reset_signals(void)
{
    struct {
        void (*handler)(int);
        unsigned long flags;
        void (*restorer)(void);
        uint64_t mask;
    } dfl = {SIG_DFL, 0, NULL, 0};
    for (int sig = 1; sig <= 64; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            (void)syscall(SYS_rt_sigaction, sig, &dfl, NULL, sizeof(dfl.mask));
    uint64_t none = 0;
    if (syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, sizeof(none)) != 0)
        child_fail_fd(CHILD_SYNC_FD, STEP_LIMITS);
}

/* The last steps: the seccomp filter, then the image (by fd: nothing to find on disk). */
static __attribute__((noreturn)) void child_seccomp_exec(const struct child_args *a)
{
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, a->prog) != 0)
        child_fail_fd(CHILD_SYNC_FD, STEP_SECCOMP);
    syscall(SYS_execveat, CHILD_IMAGE_FD, "", a->argv, a->envp, AT_EMPTY_PATH);
    child_fail_fd(CHILD_SYNC_FD, STEP_EXEC);
}

/*
 * The workload dies with dcmsd: SIGKILL when the thread that cloned it (the
 * spawner, which lives as long as the backend) exits. A change of the
 * effective ids clears the setting, so it is made again after
 * child_setup_ids; dcmsd may have died before either, which the sync
 * socket shows (its end in dcmsd stays open until the workload execs).
 */
static void child_die_with_parent(const struct child_args *a)
{
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0)
        child_fail_fd(a->sync_fd, STEP_SYNC);
    struct pollfd pfd = {.fd = a->sync_fd, .events = POLLRDHUP};
    if (poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)))
        _exit(127);
}

/* After clone3: wait for the id maps, then each step in order; a failed step reports and exits. */
static __attribute__((noreturn)) void child_main(const struct child_args *a)
{
    close(a->parent_sync_fd); /* so that only dcmsd holds it: its death hangs the socket up */
    child_die_with_parent(a);
    char go;
    if (read(a->sync_fd, &go, 1) != 1)
        child_fail_fd(a->sync_fd, STEP_SYNC);
    child_setup_mounts(a);
    child_setup_ids(a);
    child_die_with_parent(a);
    child_setup_fds(a);
    child_setup_limits(a);
    child_drop_caps();
    child_reset_signals();
    child_seccomp_exec(a);
}

/* ---- helpers ---- */

static bool id_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_'))
            return false;
    return true;
}

static int64_t now_ms(void)
{
    return dcms_clock_mono_us() / 1000;
}
/* Copies the image into a sealed, executable memfd. */
static enum dcms_err load_image(const char *path, int *fd_out, struct dcms_errinfo *ei)
{
    *fd_out = -1;
    int in = open(path, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return dcms_err_set(ei, DCMS_ERR_VALIDATION, "cannot open the workload image %s: %s", path,
                            strerror(errno));
    struct stat st;
    enum dcms_err e = DCMS_OK;
    int fd = -1;
    if (fstat(in, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
        (uint64_t)st.st_size > IMAGE_MAX_BYTES) {
        e = dcms_err_set(ei, DCMS_ERR_VALIDATION,
                         "the workload image %s is not a regular file of 1 byte to 256 MiB", path);
        goto out;
    }
    fd = memfd_create("dcms-workload", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC);
    if (fd < 0 && errno == EINVAL)
        fd = memfd_create("dcms-workload", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) {
        e = dcms_err_set(ei, DCMS_ERR_IO, "memfd_create: %s", strerror(errno));
        goto out;
    }
    off_t left = st.st_size;
    while (left > 0) {
        ssize_t n = sendfile(fd, in, NULL, (size_t)left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            e = dcms_err_set(ei, DCMS_ERR_IO, "cannot copy the workload image %s", path);
            goto out;
        }
        left -= n;
    }
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
        e = dcms_err_set(ei, DCMS_ERR_IO, "cannot seal the workload image: %s", strerror(errno));
        goto out;
    }
    /* exec refuses a file that is open for writing: keep a read-only descriptor only. */
    char path_ro[64];
    snprintf(path_ro, sizeof(path_ro), "/proc/self/fd/%d", fd);
    int ro = open(path_ro, O_RDONLY | O_CLOEXEC);
    if (ro < 0) {
        e = dcms_err_set(ei, DCMS_ERR_IO, "cannot reopen the workload image: %s", strerror(errno));
        goto out;
    }
    close(fd);
    fd = ro;
out:
    close(in);
    if (e && fd >= 0)
        close(fd);
    else
        *fd_out = fd;
    return e;
}

/*
 * PCR0: the sealed image cannot change, so it is measured once, here, and
 * every document the NSM issues for this workload reports the same value
 * (as Nitro measures an enclave image once, when it boots).
 */
static enum dcms_err measure_image(struct lentry *en, struct dcms_errinfo *ei)
{
    char fd_path[64];
    snprintf(fd_path, sizeof(fd_path), "/proc/self/fd/%d", en->image_fd);
    return dcms_attest_measure_file(fd_path, en->pcr0, ei);
}

/*
 * A signed image (`<image>.sig` beside it, as an EIF carries its signature):
 * the signature must verify over the PCR0 of the sealed bytes that will run,
 * or the image is refused; its certificate is then measured as PCR8. No
 * `.sig`: an unsigned image, PCR8 zero.
 */
static enum dcms_err check_signature(const char *image_path, struct lentry *en,
                                     struct dcms_errinfo *ei)
{
    char sig_path[PATH_MAX];
    if ((size_t)snprintf(sig_path, sizeof(sig_path), "%s.sig", image_path) >= sizeof(sig_path))
        return dcms_err_set(ei, DCMS_ERR_VALIDATION, "the workload image path is too long");
    int fd = open(sig_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 && errno == ENOENT)
        return DCMS_OK;
    enum dcms_err e = DCMS_OK;
    unsigned char *sig = malloc(DCMS_IMAGE_SIG_MAX_BYTES + 1);
    size_t len = 0;
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        e = dcms_err_set(ei, DCMS_ERR_VALIDATION, "cannot read the image signature %s", sig_path);
        goto out;
    }
    if (!sig) {
        e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
        goto out;
    }
    for (;;) {
        ssize_t n = read(fd, sig + len, DCMS_IMAGE_SIG_MAX_BYTES + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            e = dcms_err_set(ei, DCMS_ERR_VALIDATION, "cannot read the image signature %s",
                             sig_path);
            goto out;
        }
        if (n == 0 || (len += (size_t)n) > DCMS_IMAGE_SIG_MAX_BYTES)
            break;
    }
    struct dcms_attest_image_signer signer;
    struct dcms_errinfo vei;
    dcms_errinfo_init(&vei, NULL);
    if ((e = dcms_attest_image_verify(en->pcr0, sig, len, &signer, &vei))) {
        e = dcms_err_set(ei, e, "the image signature %s does not verify: %s", sig_path,
                         vei.message);
        goto out;
    }
    en->signing_cert = signer.cert_der;
    en->signing_cert_len = signer.cert_der_len;
    DCMS_LOG(DCMS_LOG_INFO, "enclaves", "image %s signed by %s", image_path, signer.subject);
out:
    if (fd >= 0)
        close(fd);
    free(sig);
    return e;
}

static enum dcms_err write_file(const char *path, const char *text, struct dcms_errinfo *ei)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    size_t n = strlen(text);
    bool ok = fd >= 0 && write(fd, text, n) == (ssize_t)n;
    if (fd >= 0 && close(fd) != 0)
        ok = false;
    return ok ? DCMS_OK : dcms_err_set(ei, DCMS_ERR_IO, "cannot write %s", path);
}

static bool write_proc(pid_t pid, const char *name, const char *text)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, name);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    size_t n = strlen(text);
    bool ok = fd >= 0 && write(fd, text, n) == (ssize_t)n;
    if (fd >= 0)
        close(fd);
    return ok;
}

/* Field 22 of /proc/<pid>/stat (start time in clock ticks) and fields 14-15 (utime, stime). */
static bool read_stat(pid_t pid, uint64_t *start, uint64_t *cpu_ticks, char *state)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may contain spaces and parentheses */
    if (!p || p[1] != ' ')
        return false;
    p += 2;
    if (state)
        *state = *p;
    uint64_t utime = 0, stime = 0, st = 0;
    for (int field = 3; field <= 22 && *p; field++) {
        char *end;
        unsigned long long v = strtoull(p, &end, 10);
        if (field == 14)
            utime = v;
        else if (field == 15)
            stime = v;
        else if (field == 22)
            st = v;
        p = strchr(p, ' ');
        if (!p)
            break;
        p++;
    }
    if (start)
        *start = st;
    if (cpu_ticks)
        *cpu_ticks = utime + stime;
    return true;
}

/* VmRSS and VmHWM of /proc/<pid>/status, in bytes. */
static void read_rss(pid_t pid, uint64_t *rss, uint64_t *hwm)
{
    char path[64], buf[4096];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    *rss = *hwm = 0;
    if (fd < 0)
        return;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return;
    buf[n] = '\0';
    const char *p;
    if ((p = strstr(buf, "VmRSS:")))
        *rss = strtoull(p + 6, NULL, 10) * 1024;
    if ((p = strstr(buf, "VmHWM:")))
        *hwm = strtoull(p + 6, NULL, 10) * 1024;
}

/* Calls fn for every host process in the pid namespace (dev, ino); returns how many. */
static unsigned scan_pidns(dev_t dev, ino_t ino, void (*fn)(pid_t, void *), void *arg)
{
    DIR *d = opendir("/proc");
    if (!d)
        return 0;
    unsigned n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < SCAN_MAX_PROCS) {
        if (de->d_name[0] < '1' || de->d_name[0] > '9')
            continue;
        char path[300];
        snprintf(path, sizeof(path), "/proc/%.32s/ns/pid", de->d_name);
        struct stat st;
        if (stat(path, &st) != 0 || st.st_ino != ino || st.st_dev != dev)
            continue;
        n++;
        if (fn)
            fn((pid_t)strtol(de->d_name, NULL, 10), arg);
    }
    closedir(d);
    return n;
}

static const char *signal_name(int sig)
{
    switch (sig) {
    case SIGKILL:
        return "SIGKILL";
    case SIGTERM:
        return "SIGTERM";
    case SIGSEGV:
        return "SIGSEGV";
    case SIGABRT:
        return "SIGABRT";
    case SIGBUS:
        return "SIGBUS";
    case SIGSYS:
        return "SIGSYS";
    case SIGXFSZ:
        return "SIGXFSZ";
    case SIGXCPU:
        return "SIGXCPU";
    case SIGINT:
        return "SIGINT";
    case SIGHUP:
        return "SIGHUP";
    case SIGILL:
        return "SIGILL";
    case SIGFPE:
        return "SIGFPE";
    default:
        return "signal";
    }
}

/* Says how a workload ended, from its wait status and peak memory. */
static void describe_exit(struct lentry *en, int status, uint64_t peak, bool oom_killed)
{
    char how[80];
    int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    if (sig)
        snprintf(how, sizeof(how), "killed by signal %d (%s)", sig, signal_name(sig));
    else
        snprintf(how, sizeof(how), "exited with status %d", WEXITSTATUS(status));
    bool abnormal = sig || WEXITSTATUS(status) != 0;
    /* RLIMIT_AS makes allocations fail; a program that then dies had reached the limit. */
    bool memory = abnormal && sig != SIGSYS && en->memory_limit && peak * 2 >= en->memory_limit;
    if (en->terminating && sig == SIGKILL)
        snprintf(en->reason, sizeof(en->reason), "terminated");
    else if (sig == SIGSYS)
        snprintf(en->reason, sizeof(en->reason),
                 "seccomp violation: a forbidden system call (network, namespaces, mounts, "
                 "ptrace, ...) killed it (SIGSYS)");
    else if (oom_killed && sig == SIGKILL)
        snprintf(en->reason, sizeof(en->reason),
                 "exceeded its memory limit (killed by the OOM killer of its cgroup at %" PRIu64
                 " MiB)",
                 en->memory_limit >> 20);
    else if (sig == SIGXFSZ)
        snprintf(en->reason, sizeof(en->reason), "exceeded its storage quota (SIGXFSZ)");
    else if (memory)
        snprintf(en->reason, sizeof(en->reason),
                 "exceeded its memory limit (peak RSS %" PRIu64 " MiB of %" PRIu64 " MiB; %s)",
                 peak >> 20, en->memory_limit >> 20, how);
    else
        snprintf(en->reason, sizeof(en->reason), "%s", how);
}

/* ---- the reaper thread ---- */

#define TAG_LOG 1u

/*
 * Copies what the workload wrote to its log. At EOF the pipe leaves the
 * epoll set before it is closed: closing alone does not remove it while
 * another descriptor of the same pipe is open anywhere (a process forked
 * meanwhile), and its next event would name an entry that may be freed.
 */
static void drain_log(struct local *l, struct lentry *en)
{
    char buf[8192];
    for (;;) {
        ssize_t n = read(en->log_in, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0 || errno != EAGAIN) {
                epoll_ctl(l->epfd, EPOLL_CTL_DEL, en->log_in, NULL);
                close(en->log_in);
                en->log_in = -1;
            }
            return;
        }
        if (en->log_out >= 0 && en->log_written < LOG_MAX_BYTES) {
            size_t room = LOG_MAX_BYTES - en->log_written;
            size_t w = (size_t)n < room ? (size_t)n : room;
            if (write(en->log_out, buf, w) == (ssize_t)w)
                en->log_written += w;
        }
    }
}

/* Records how the workload ended, if it has; true when it was reaped. */
static bool reap(struct local *l, struct lentry *en)
{
    int status = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof(ru));
    pid_t r;
    do
        r = wait4(en->pid, &status, WNOHANG | __WALL, &ru);
    while (r < 0 && errno == EINTR);
    if (r == 0)
        return false; /* not yet */
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, en->pidfd, NULL);
    if (en->log_in >= 0) {
        drain_log(l, en);
        if (en->log_in >= 0) {
            epoll_ctl(l->epfd, EPOLL_CTL_DEL, en->log_in, NULL);
            close(en->log_in);
            en->log_in = -1;
        }
    }
    uint64_t peak = (uint64_t)ru.ru_maxrss * 1024;
    bool oom = en->cgroup[0] && sandbox_cgroup_oom_kills(en->cgroup) > 0;
    pthread_mutex_lock(&l->mu);
    if (peak > en->peak_rss)
        en->peak_rss = peak;
    en->final_cpu_ms = (uint64_t)ru.ru_utime.tv_sec * 1000 + (uint64_t)ru.ru_utime.tv_usec / 1000 +
                       (uint64_t)ru.ru_stime.tv_sec * 1000 + (uint64_t)ru.ru_stime.tv_usec / 1000;
    if (r < 0)
        snprintf(en->reason, sizeof(en->reason), "ended (its status was lost: %s)",
                 strerror(errno));
    else
        describe_exit(en, status, en->peak_rss, oom);
    en->ended_us = dcms_clock_mono_us();
    /*
     * Every process of the namespace is gone once its init is reaped, so the
     * cgroup is empty; if it cannot be removed, terminate tries again.
     */
    if (sandbox_cgroup_remove(en->cgroup))
        en->cgroup[0] = '\0';
    en->exited = true;
    en->suspended = false;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    DCMS_LOG(DCMS_LOG_INFO, "enclaves", "local workload %s %s", en->ref, en->reason);
    return true;
}

static void entry_put(struct local *l, struct lentry *en);

/*
 * The reaper holds a reference on each running entry; it drops it after the
 * batch in which the entry was reaped, so a later event of the same batch
 * never touches a freed entry.
 */
static void *reaper_main(void *arg)
{
    struct local *l = arg;
    struct epoll_event evs[32];
    for (bool stop = false; !stop;) {
        int n = epoll_wait(l->epfd, evs, 32, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        struct lentry *done[32];
        int ndone = 0;
        for (int i = 0; i < n; i++) {
            uintptr_t tag = (uintptr_t)evs[i].data.u64;
            if (tag == 0) {
                uint64_t v;
                (void)!read(l->evfd, &v, sizeof(v));
                pthread_mutex_lock(&l->mu);
                stop = l->stop;
                pthread_mutex_unlock(&l->mu);
                continue;
            }
            struct lentry *en = (struct lentry *)(tag & ~(uintptr_t)TAG_LOG);
            if (tag & TAG_LOG) {
                if (en->log_in >= 0)
                    drain_log(l, en); /* at EOF the pipe leaves the epoll set, then closes */
            } else if (reap(l, en)) {
                done[ndone++] = en;
            }
        }
        for (int i = 0; i < ndone; i++)
            entry_put(l, done[i]);
    }
    return NULL;
}

/* ---- entries ---- */

static void entry_free(struct lentry *en)
{
    int fds[] = {en->pidfd, en->chan, en->image_fd, en->log_in, en->log_out};
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
        if (fds[i] >= 0)
            close(fds[i]);
    pthread_mutex_destroy(&en->chan_mu);
    OPENSSL_free(en->signing_cert);
    free(en);
}

/* Finds a live entry and takes a reference; NULL when the backend has no such workload. */
static struct lentry *entry_get(struct local *l, const char *ref)
{
    pthread_mutex_lock(&l->mu);
    struct lentry *en = l->list;
    while (en && strcmp(en->ref, ref) != 0)
        en = en->next;
    if (en)
        en->refs++;
    pthread_mutex_unlock(&l->mu);
    return en;
}

static void entry_put(struct local *l, struct lentry *en)
{
    pthread_mutex_lock(&l->mu);
    bool last = --en->refs == 0 && en->unlinked;
    pthread_mutex_unlock(&l->mu);
    if (last)
        entry_free(en);
}

static void remove_dir(const char *dir)
{
    char path[LOCAL_PATH_MAX + 120];
    static const char *const names[] = {"workload.log", "config.json"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        unlink(path);
    }
    snprintf(path, sizeof(path), "%s/root", dir);
    rmdir(path);
    rmdir(dir);
}

/* ---- operations ---- */

/* The descriptors a start sets up: [0] stays with dcmsd, [1] goes to the workload. */
struct start_fds {
    int chan[2], sync[2], logp[2], null_fd;
};

/* Step 1: is the spec something the sandbox can run? */
static enum dcms_err check_spec(const struct dcms_enclave_spec *sp, struct dcms_errinfo *ei)
{
    if (!id_ok(sp->enclave_id))
        return dcms_err_set(ei, DCMS_ERR_VALIDATION,
                            "enclave id must be 1 to 64 letters, digits, '-' or '_'");
    if (!sp->image_path || sp->cpu_cores == 0 || sp->memory_mb < 8 || sp->storage_gb == 0 ||
        sp->memory_mb > (1u << 20) || sp->storage_gb > 1024)
        return dcms_err_set(ei, DCMS_ERR_VALIDATION,
                            "an image, at least 1 cpu, 8 MiB of memory and 1 GB of storage are "
                            "needed");
    return DCMS_OK;
}

/* Step 2: the entry that will track the workload (not yet listed). */
static enum dcms_err new_entry(const struct local *l, const struct dcms_enclave_spec *sp,
                               struct lentry **out, struct dcms_errinfo *ei)
{
    *out = NULL;
    struct lentry *en = calloc(1, sizeof(*en));
    if (!en)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    en->pidfd = en->chan = en->image_fd = en->log_in = en->log_out = -1;
    pthread_mutex_init(&en->chan_mu, NULL);
    en->debug = sp->debug_mode;
    en->memory_limit = (uint64_t)sp->memory_mb << 20;
    en->nproc_limit = l->max_processes;
    *out = en;
    return DCMS_OK;
}

/* Step 3: the enclave's directory, its scratch root and config.json (what PCR2 measures). */
static enum dcms_err make_dir(const struct local *l, const struct dcms_enclave_spec *sp,
                              struct lentry *en, struct child_args *a, bool *made,
                              struct dcms_errinfo *ei)
{
    snprintf(en->dir, sizeof(en->dir), "%s/%s", l->scratch_root, sp->enclave_id);
    snprintf(a->root_dir, sizeof(a->root_dir), "%s/root", en->dir);
    if ((mkdir(en->dir, 0700) != 0 && errno != EEXIST) ||
        (mkdir(a->root_dir, 0700) != 0 && errno != EEXIST))
        return dcms_err_set(ei, DCMS_ERR_IO, "cannot create the enclave directory %s", en->dir);
    *made = true;
    /* PCR2: the configuration in canonical form (JCS: sorted keys, no spaces). */
    char config[160];
    snprintf(config, sizeof(config),
             "{\"cpu_cores\":%u,\"debug_mode\":%s,\"memory_mb\":%u,\"storage_gb\":%u}",
             sp->cpu_cores, sp->debug_mode ? "true" : "false", sp->memory_mb, sp->storage_gb);
    snprintf(en->config_path, sizeof(en->config_path), "%s/config.json", en->dir);
    return write_file(en->config_path, config, ei);
}

/* Step 4: the workload log file, /dev/null, the channel, the sync socket and the log pipe. */
static enum dcms_err make_channel(struct lentry *en, struct start_fds *f, struct dcms_errinfo *ei)
{
    char log_path[LOCAL_PATH_MAX + 100];
    snprintf(log_path, sizeof(log_path), "%s/workload.log", en->dir);
    en->log_out = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    f->null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (en->log_out < 0 || f->null_fd < 0 ||
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, f->chan) != 0 ||
        socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, f->sync) != 0 ||
        pipe2(f->logp, O_CLOEXEC) != 0)
        return dcms_err_set(ei, DCMS_ERR_IO, "cannot set up the workload's descriptors: %s",
                            strerror(errno));
    /*
     * Room for a whole dataset segment (1 MiB) in flight, so that streaming
     * one into the workload is not a context switch per 200 KiB (the
     * default). Capped by net.core.wmem_max; a smaller buffer still works.
     */
    int sz = CHAN_SOCKBUF;
    (void)setsockopt(f->chan[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    return DCMS_OK;
}

/* Step 5: everything the child needs, so that after clone it only makes system calls. */
static void child_args_fill(const struct local *l, const struct dcms_enclave_spec *sp,
                            const struct lentry *en, const struct start_fds *f,
                            struct child_args *a)
{
    a->sync_fd = f->sync[1];
    a->parent_sync_fd = f->sync[0];
    a->chan_fd = f->chan[1];
    a->image_fd = en->image_fd;
    a->null_fd = f->null_fd;
    a->log_fd = f->logp[1];
    a->as_root = l->as_root;
    snprintf(a->tmpfs_opts, sizeof(a->tmpfs_opts), "size=%uG,nr_inodes=65536,mode=0755,uid=0,gid=0",
             sp->storage_gb);
    a->lim_as.rlim_cur = a->lim_as.rlim_max = en->memory_limit;
    a->lim_nproc.rlim_cur = a->lim_nproc.rlim_max = l->max_processes;
    a->lim_nofile.rlim_cur = a->lim_nofile.rlim_max = CHILD_NOFILE;
    a->lim_fsize.rlim_cur = a->lim_fsize.rlim_max = (rlim_t)sp->storage_gb << 30;
    a->prog = &l->prog;
    a->argv[0] = "dcms-workload";
    snprintf(a->env_id, sizeof(a->env_id), "DCMS_ENCLAVE_ID=%s", sp->enclave_id);
    a->envp[0] = "PATH=/";
    a->envp[1] = a->env_id;
}

/*
 * The parent-death signal fires when the thread that cloned the workload
 * exits, not the process: a request or job thread that ends must not take
 * its workloads with it. So one thread per backend, alive until every
 * workload is gone (local_destroy), makes every clone. One request at a
 * time (the caller holds start_mu).
 */
struct spawn_req {
    struct clone_args *ca;
    const struct child_args *a;
    long r;
    int err;
    bool done;
};

static void *spawner_main(void *arg)
{
    struct local *l = arg;
    pthread_mutex_lock(&l->spawn_mu);
    for (;;) {
        while (!l->spawn_req && !l->spawn_stop)
            pthread_cond_wait(&l->spawn_cv, &l->spawn_mu);
        struct spawn_req *q = l->spawn_req;
        if (!q)
            break;
        pthread_mutex_unlock(&l->spawn_mu);
        long r = syscall(SYS_clone3, q->ca, sizeof(*q->ca));
        if (r == 0)
            child_main(q->a);
        int err = errno;
        pthread_mutex_lock(&l->spawn_mu);
        q->r = r;
        q->err = err;
        q->done = true;
        l->spawn_req = NULL;
        pthread_cond_broadcast(&l->spawn_cv);
    }
    pthread_mutex_unlock(&l->spawn_mu);
    return NULL;
}

/* clone3 on the spawner thread; the child runs child_main. Returns its pid or -1 (*err). */
static long spawn_clone(struct local *l, struct clone_args *ca, const struct child_args *a,
                        int *err)
{
    struct spawn_req q = {.ca = ca, .a = a, .r = -1, .err = ESRCH};
    pthread_mutex_lock(&l->spawn_mu);
    if (l->spawner_started && !l->spawn_stop) {
        l->spawn_req = &q;
        pthread_cond_broadcast(&l->spawn_cv);
        while (!q.done)
            pthread_cond_wait(&l->spawn_cv, &l->spawn_mu);
    }
    pthread_mutex_unlock(&l->spawn_mu);
    *err = q.err;
    return q.r;
}

/*
 * Step 6: the CPU share (cpu_cores of the CPUs dcmsd may use, taken
 * round-robin; *ncpus gets how many) and the clone into new namespaces.
 * The child runs child_main and never returns here.
 */
static enum dcms_err clone_sandbox(struct local *l, const struct dcms_enclave_spec *sp,
                                   struct child_args *a, pid_t *pid, int *pidfd, unsigned *ncpus,
                                   struct dcms_errinfo *ei)
{
    pthread_mutex_lock(&l->start_mu);
    CPU_ZERO(&a->cpus);
    unsigned want = sp->cpu_cores < l->ncpus ? sp->cpu_cores : l->ncpus;
    unsigned first = l->next_cpu;
    for (unsigned got = 0, i = 0; got < want && i < CPU_SETSIZE; i++) {
        unsigned c = (first + i) % CPU_SETSIZE;
        if (CPU_ISSET(c, &l->cpus)) {
            CPU_SET(c, &a->cpus);
            got++;
            l->next_cpu = (c + 1) % CPU_SETSIZE;
        }
    }
    *ncpus = want;
    struct clone_args ca;
    memset(&ca, 0, sizeof(ca));
    ca.flags = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWIPC |
               CLONE_NEWUTS | CLONE_PIDFD;
    ca.pidfd = (uint64_t)(uintptr_t)pidfd;
    ca.exit_signal = SIGCHLD;
    int err = 0;
    long r = spawn_clone(l, &ca, a, &err);
    pthread_mutex_unlock(&l->start_mu);
    if (r < 0)
        return dcms_err_set(ei, DCMS_ERR_UNAVAILABLE, "cannot create the sandbox (clone3): %s",
                            strerror(err));
    *pid = (pid_t)r;
    return DCMS_OK;
}

/* Step 7: the child's uid/gid maps, its cgroup, then the go-ahead on the sync socket. */
static enum dcms_err parent_release_child(struct local *l, const struct dcms_enclave_spec *sp,
                                          struct lentry *en, int sync_fd, unsigned ncpus,
                                          struct dcms_errinfo *ei)
{
    char map[64];
    bool mapped;
    if (l->as_root) {
        snprintf(map, sizeof(map), "0 %u 1\n", (unsigned)l->host_uid);
        mapped = write_proc(en->pid, "uid_map", map);
        snprintf(map, sizeof(map), "0 %u 1\n", (unsigned)l->host_gid);
        mapped = mapped && write_proc(en->pid, "gid_map", map);
    } else {
        snprintf(map, sizeof(map), "0 %u 1\n", (unsigned)getuid());
        mapped = write_proc(en->pid, "setgroups", "deny") && write_proc(en->pid, "uid_map", map);
        snprintf(map, sizeof(map), "0 %u 1\n", (unsigned)getgid());
        mapped = mapped && write_proc(en->pid, "gid_map", map);
    }
    if (mapped && l->use_cgroup)
        (void)sandbox_cgroup_attach(&l->cg, sp->enclave_id, en->pid, en->memory_limit,
                                    l->max_processes, ncpus, en->cgroup, sizeof(en->cgroup));
    if (!mapped || write(sync_fd, "g", 1) != 1)
        return dcms_err_set(ei, DCMS_ERR_UNAVAILABLE, "cannot map the workload's user namespace");
    return DCMS_OK;
}

/*
 * Step 8: the child's end of the sync socket closes at exec, so EOF means
 * the workload runs; a message says which step failed and why.
 */
static enum dcms_err parent_wait_ready(int sync_fd, struct dcms_errinfo *ei)
{
    struct pollfd pfd = {.fd = sync_fd, .events = POLLIN};
    int pr = poll(&pfd, 1, START_TIMEOUT_MS);
    int msg[2] = {0, 0};
    ssize_t got = pr > 0 ? recv(sync_fd, msg, sizeof(msg), 0) : -1;
    if (got == 0)
        return DCMS_OK;
    int step = got == (ssize_t)sizeof(msg) && msg[0] > 0 && msg[0] <= STEP_EXEC ? msg[0] : 0;
    return dcms_err_set(ei, DCMS_ERR_UNAVAILABLE, "the sandbox failed %s: %s",
                        step ? step_names[step] : "to start in time",
                        step ? strerror(msg[1]) : "no answer");
}

/*
 * Step 9: name the running workload (pid and start time, so a reused pid
 * is never mistaken for it), take dcmsd's ends of the channel and the log,
 * and hand the entry to the reaper.
 */
static enum dcms_err register_workload(struct local *l, struct lentry *en, struct start_fds *f,
                                       struct dcms_errinfo *ei)
{
    uint64_t start_ticks = 0;
    char nspath[64];
    snprintf(nspath, sizeof(nspath), "/proc/%d/ns/pid", (int)en->pid);
    struct stat nsst;
    if (!read_stat(en->pid, &start_ticks, NULL, NULL) || stat(nspath, &nsst) != 0)
        return dcms_err_set(ei, DCMS_ERR_UNAVAILABLE, "the workload ended at once");
    en->pidns_dev = nsst.st_dev;
    en->pidns_ino = nsst.st_ino;
    snprintf(en->ref, sizeof(en->ref), "local:%d:%" PRIu64, (int)en->pid, start_ticks);
    en->chan = f->chan[0];
    f->chan[0] = -1;
    en->log_in = f->logp[0];
    f->logp[0] = -1;
    fcntl(en->chan, F_SETFL, O_NONBLOCK);
    fcntl(en->log_in, F_SETFL, O_NONBLOCK);
    en->started_us = dcms_clock_mono_us();

    pthread_mutex_lock(&l->mu);
    en->next = l->list;
    l->list = en;
    en->refs = 1; /* the reaper's, dropped when it has reaped the workload */
    pthread_mutex_unlock(&l->mu);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uintptr_t)en};
    struct epoll_event evl = {.events = EPOLLIN, .data.u64 = (uintptr_t)en | TAG_LOG};
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, en->log_in, &evl) != 0 ||
        epoll_ctl(l->epfd, EPOLL_CTL_ADD, en->pidfd, &ev) != 0)
        DCMS_LOG(DCMS_LOG_ERROR, "enclaves", "epoll_ctl for %s: %s", en->ref, strerror(errno));
    return DCMS_OK;
}

/* Closes `f` (what is still open) and undoes a start that failed after clone or mkdir. */
static void start_cleanup(struct lentry *en, struct start_fds *f, bool dir_made)
{
    if (en && en->pid > 0) {
        syscall(SYS_pidfd_send_signal, en->pidfd, SIGKILL, NULL, 0);
        while (waitpid(en->pid, NULL, __WALL) < 0 && errno == EINTR)
            ;
        (void)sandbox_cgroup_remove(en->cgroup);
    }
    int fds[] = {f->chan[0], f->chan[1], f->sync[0], f->sync[1],
                 f->logp[0], f->logp[1], f->null_fd};
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
        if (fds[i] >= 0)
            close(fds[i]);
    if (en) {
        if (dir_made)
            remove_dir(en->dir);
        entry_free(en);
    }
}

/* Closes the child's ends once it has them. */
static void close_child_ends(struct start_fds *f)
{
    int *ends[] = {&f->sync[1], &f->chan[1], &f->logp[1]};
    for (size_t i = 0; i < sizeof(ends) / sizeof(ends[0]); i++) {
        close(*ends[i]);
        *ends[i] = -1;
    }
}

static enum dcms_err local_start(struct dcms_enclave_backend *b, const struct dcms_enclave_spec *sp,
                                 char *ref, struct dcms_errinfo *ei)
{
    struct local *l = L(b);
    ref[0] = '\0';
    struct lentry *en = NULL;
    enum dcms_err e = check_spec(sp, ei);
    if (e || (e = new_entry(l, sp, &en, ei)))
        return e;
    struct start_fds f = {{-1, -1}, {-1, -1}, {-1, -1}, -1};
    bool dir_made = false;
    unsigned ncpus = 0;
    struct child_args *a = calloc(1, sizeof(*a));
    if (!a) {
        e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
        goto out;
    }
    if ((e = load_image(sp->image_path, &en->image_fd, ei)) || (e = measure_image(en, ei)) ||
        (e = check_signature(sp->image_path, en, ei)) ||
        (e = make_dir(l, sp, en, a, &dir_made, ei)) || (e = make_channel(en, &f, ei)))
        goto out;
    child_args_fill(l, sp, en, &f, a);
    int pidfd = -1;
    if ((e = clone_sandbox(l, sp, a, &en->pid, &pidfd, &ncpus, ei)))
        goto out;
    en->pidfd = pidfd;
    close_child_ends(&f);
    if ((e = parent_release_child(l, sp, en, f.sync[0], ncpus, ei)) ||
        (e = parent_wait_ready(f.sync[0], ei)) || (e = register_workload(l, en, &f, ei)))
        goto out;
    snprintf(ref, DCMS_ENCLAVE_REF_MAX, "%s", en->ref);
    DCMS_LOG(DCMS_LOG_INFO, "enclaves", "local workload %s started for enclave %s", en->ref,
             sp->enclave_id);
    en = NULL;
out:
    start_cleanup(en, &f, dir_made);
    free(a);
    return e;
}

/* ---- the channel ---- */

/* One frame each way through channel_io.c, counting the bytes for probe(). */
static enum dcms_err chan_write(struct local *l, struct lentry *en, uint8_t type,
                                const uint8_t *body, size_t len, int64_t deadline,
                                struct dcms_errinfo *ei)
{
    uint64_t n = 0;
    enum dcms_err e = chan_io_send(en->chan, type, body, len, deadline, &n, ei);
    pthread_mutex_lock(&l->mu);
    en->bytes_out += n;
    pthread_mutex_unlock(&l->mu);
    return e;
}

static enum dcms_err chan_read(struct local *l, struct lentry *en, uint8_t *buf,
                               struct dcms_chan_frame *f, int64_t deadline, struct dcms_errinfo *ei)
{
    uint64_t n = 0;
    enum dcms_err e = chan_io_recv(en->chan, buf, f, deadline, &n, ei);
    pthread_mutex_lock(&l->mu);
    en->bytes_in += n;
    pthread_mutex_unlock(&l->mu);
    return e;
}

/* The NSM: issues a document for the workload's request, measured from its sealed image. */
static enum dcms_err serve_nsm(struct local *l, struct lentry *en, const struct dcms_chan_frame *f,
                               int64_t deadline, struct dcms_errinfo *ei)
{
    struct dcms_chan_nsm_req q;
    uint8_t *doc = NULL;
    size_t doc_len = 0;
    enum dcms_err e;
    char image_path[64];
    snprintf(image_path, sizeof(image_path), "/proc/self/fd/%d", en->image_fd);
    if (dcms_chan_nsm_req_parse(f->body, f->body_len, &q) != DCMS_CHAN_OK) {
        static const uint8_t err[] = "\001malformed NSM request";
        return chan_write(l, en, DCMS_CHAN_NSM_RESP, err, sizeof(err) - 1, deadline, ei);
    }
    struct dcms_attest_workload w = {.image_path = image_path,
                                     .image_pcr0 = en->pcr0,
                                     .launcher_path = l->launcher_path,
                                     .config_path = en->config_path,
                                     .signing_cert = en->signing_cert,
                                     .signing_cert_len = en->signing_cert_len,
                                     .debug = en->debug,
                                     .nonce = q.nonce,
                                     .nonce_len = q.nonce_len,
                                     .user_data = q.user_data,
                                     .user_data_len = q.user_data_len,
                                     .public_key = q.public_key,
                                     .public_key_len = q.public_key_len};
    struct dcms_errinfo iei;
    dcms_errinfo_init(&iei, NULL);
    if (dcms_attest_local_issue(l->module, &w, &doc, &doc_len, &iei) != DCMS_OK) {
        DCMS_LOG(DCMS_LOG_ERROR, "enclaves", "NSM for %s: %s", en->ref, iei.message);
        static const uint8_t err[] = "\001the NSM cannot issue a document";
        return chan_write(l, en, DCMS_CHAN_NSM_RESP, err, sizeof(err) - 1, deadline, ei);
    }
    uint8_t *body = malloc(doc_len + 1);
    if (!body) {
        free(doc);
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    }
    body[0] = 0;
    memcpy(body + 1, doc, doc_len);
    e = chan_write(l, en, DCMS_CHAN_NSM_RESP, body, doc_len + 1, deadline, ei);
    free(body);
    free(doc);
    return e;
}

static enum dcms_err local_attest(struct dcms_enclave_backend *b, const char *ref,
                                  const unsigned char *nonce, size_t nonce_len, unsigned char **doc,
                                  size_t *doc_len, struct dcms_errinfo *ei)
{
    struct local *l = L(b);
    *doc = NULL;
    *doc_len = 0;
    if (!nonce || nonce_len == 0 || nonce_len > DCMS_CHAN_MAX_NONCE)
        return dcms_err_set(ei, DCMS_ERR_VALIDATION, "the nonce must be 1 to 64 bytes");
    struct lentry *en = entry_get(l, ref);
    if (!en)
        return dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "no local workload %s", ref);
    enum dcms_err e = DCMS_OK;
    uint8_t *buf = NULL;
    pthread_mutex_lock(&en->chan_mu);
    pthread_mutex_lock(&l->mu);
    bool exited = en->exited, suspended = en->suspended;
    pthread_mutex_unlock(&l->mu);
    if (exited) {
        e = dcms_err_set(ei, DCMS_ERR_CONFLICT, "the workload has ended: %s", en->reason);
        goto out;
    }
    if (suspended) {
        e = dcms_err_set(ei, DCMS_ERR_UNAVAILABLE, "the workload is suspended");
        goto out;
    }
    if (!(buf = malloc(CHAN_IO_BUF))) {
        e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
        goto out;
    }
    /* Whatever the workload sent unasked is dropped before the exchange. */
    ssize_t junk;
    while ((junk = recv(en->chan, buf, DCMS_CHAN_MAX_FRAME, MSG_DONTWAIT)) > 0) {
        pthread_mutex_lock(&l->mu);
        en->bytes_in += (uint64_t)junk;
        pthread_mutex_unlock(&l->mu);
    }
    int64_t deadline = now_ms() + ATTEST_TIMEOUT_MS;
    if ((e = chan_write(l, en, DCMS_CHAN_ATTEST_REQ, nonce, nonce_len, deadline, ei)))
        goto out;
    for (int nsm = 0;;) {
        struct dcms_chan_frame f;
        if ((e = chan_read(l, en, buf, &f, deadline, ei)))
            goto out;
        if (f.type == DCMS_CHAN_NSM_REQ) {
            if (++nsm > ATTEST_MAX_NSM_REQUESTS) {
                e = dcms_err_set(ei, DCMS_ERR_UNAVAILABLE,
                                 "the workload asked the NSM too many times");
                goto out;
            }
            if ((e = serve_nsm(l, en, &f, deadline, ei)))
                goto out;
            continue;
        }
        e = chan_io_attest_doc(&f, "workload", doc, doc_len, ei);
        break;
    }
out:
    pthread_mutex_unlock(&en->chan_mu);
    free(buf);
    entry_put(l, en);
    return e;
}

/* ---- an exclusive channel (an enclave session) ---- */

#define SESSION_MAX_NSM_REQUESTS 64

struct lchan {
    struct dcms_enclave_channel ops; /* first */
    struct local *l;
    struct lentry *en; /* referenced, chan_mu held */
    unsigned nsm;
};

static enum dcms_err lchan_send(struct dcms_enclave_channel *ch, uint8_t type, const uint8_t *body,
                                size_t len, int64_t deadline_ms, struct dcms_errinfo *ei)
{
    struct lchan *c = (struct lchan *)ch;
    return chan_write(c->l, c->en, type, body, len, deadline_ms, ei);
}

/* The workload's NSM requests are served here, as local_attest serves them. */
static enum dcms_err lchan_recv(struct dcms_enclave_channel *ch, uint8_t *buf,
                                struct dcms_chan_frame *f, int64_t deadline_ms,
                                struct dcms_errinfo *ei)
{
    struct lchan *c = (struct lchan *)ch;
    for (;;) {
        enum dcms_err e = chan_read(c->l, c->en, buf, f, deadline_ms, ei);
        if (e || f->type != DCMS_CHAN_NSM_REQ)
            return e;
        if (++c->nsm > SESSION_MAX_NSM_REQUESTS)
            return dcms_err_set(ei, DCMS_ERR_UNAVAILABLE,
                                "the workload asked the NSM too many times");
        if ((e = serve_nsm(c->l, c->en, f, deadline_ms, ei)))
            return e;
    }
}

static void lchan_close(struct dcms_enclave_channel *ch)
{
    struct lchan *c = (struct lchan *)ch;
    pthread_mutex_unlock(&c->en->chan_mu);
    entry_put(c->l, c->en);
    free(c);
}

static enum dcms_err local_channel(struct dcms_enclave_backend *b, const char *ref,
                                   struct dcms_enclave_channel **out, struct dcms_errinfo *ei)
{
    struct local *l = L(b);
    *out = NULL;
    struct lchan *c = calloc(1, sizeof(*c));
    if (!c)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    struct lentry *en = entry_get(l, ref);
    if (!en) {
        free(c);
        return dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "no local workload %s", ref);
    }
    pthread_mutex_lock(&en->chan_mu);
    pthread_mutex_lock(&l->mu);
    bool exited = en->exited, suspended = en->suspended;
    pthread_mutex_unlock(&l->mu);
    if (exited || suspended) {
        enum dcms_err e =
            exited ? dcms_err_set(ei, DCMS_ERR_CONFLICT, "the workload has ended: %s", en->reason)
                   : dcms_err_set(ei, DCMS_ERR_UNAVAILABLE, "the workload is suspended");
        pthread_mutex_unlock(&en->chan_mu);
        entry_put(l, en);
        free(c);
        return e;
    }
    /* Whatever the workload sent unasked is dropped, as before an attestation. */
    uint8_t junk[512];
    ssize_t n;
    while ((n = recv(en->chan, junk, sizeof(junk), MSG_DONTWAIT)) > 0) {
        pthread_mutex_lock(&l->mu);
        en->bytes_in += (uint64_t)n;
        pthread_mutex_unlock(&l->mu);
    }
    c->ops = (struct dcms_enclave_channel){lchan_send, lchan_recv, lchan_close};
    c->l = l;
    c->en = en;
    *out = &c->ops;
    return DCMS_OK;
}

/* ---- suspend, resume, terminate, probe ---- */

static void send_stop(pid_t pid, void *arg)
{
    kill(pid, *(int *)arg);
}

static enum dcms_err signal_all(struct local *l, const char *ref, int sig, bool suspended,
                                struct dcms_errinfo *ei)
{
    struct lentry *en = entry_get(l, ref);
    if (!en)
        return dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "no local workload %s", ref);
    enum dcms_err e = DCMS_OK;
    pthread_mutex_lock(&l->mu);
    bool exited = en->exited;
    char cgroup[sizeof(en->cgroup)];
    memcpy(cgroup, en->cgroup, sizeof(cgroup));
    pthread_mutex_unlock(&l->mu);
    if (exited) {
        e = dcms_err_set(ei, DCMS_ERR_CONFLICT, "the workload has ended: %s", en->reason);
        goto out;
    }
    /* The cgroup freezer stops the whole cgroup at once, unseen by the workload. */
    if (sandbox_cgroup_freeze(cgroup, suspended))
        goto done;
    /* Otherwise every process of the pid namespace; repeated to catch one forked meanwhile. */
    syscall(SYS_pidfd_send_signal, en->pidfd, sig, NULL, 0);
    unsigned prev = 0;
    for (int pass = 0; pass < 5; pass++) {
        unsigned n = scan_pidns(en->pidns_dev, en->pidns_ino, send_stop, &sig);
        if (pass > 0 && n == prev)
            break;
        prev = n;
    }
done:
    pthread_mutex_lock(&l->mu);
    en->suspended = suspended;
    pthread_mutex_unlock(&l->mu);
out:
    entry_put(l, en);
    return e;
}

static enum dcms_err local_suspend(struct dcms_enclave_backend *b, const char *ref,
                                   struct dcms_errinfo *ei)
{
    return signal_all(L(b), ref, SIGSTOP, true, ei);
}

static enum dcms_err local_resume(struct dcms_enclave_backend *b, const char *ref,
                                  struct dcms_errinfo *ei)
{
    return signal_all(L(b), ref, SIGCONT, false, ei);
}

/*
 * Kills the workload's cgroup (cgroup.kill: every process, frozen ones
 * too) and the namespace's init (the kernel then kills the rest of the
 * namespace), and waits until the init is reaped.
 */
static bool kill_and_wait(struct local *l, struct lentry *en, int timeout_ms)
{
    char cgroup[sizeof(en->cgroup)];
    pthread_mutex_lock(&l->mu);
    memcpy(cgroup, en->cgroup, sizeof(cgroup));
    bool exited = en->exited;
    if (!exited)
        en->terminating = true;
    pthread_mutex_unlock(&l->mu);
    if (!exited && cgroup[0] && !sandbox_cgroup_kill(cgroup))
        DCMS_LOG(DCMS_LOG_WARN, "enclaves", "cgroup v2: cannot kill %s: %s", cgroup,
                 strerror(errno));
    pthread_mutex_lock(&l->mu);
    if (!en->exited)
        syscall(SYS_pidfd_send_signal, en->pidfd, SIGKILL, NULL, 0);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    while (!en->exited && pthread_cond_timedwait(&l->cv, &l->mu, &until) == 0)
        ;
    bool done = en->exited;
    pthread_mutex_unlock(&l->mu);
    return done;
}

/*
 * A workload this backend does not know, named by a ref of an earlier
 * dcmsd on this host ("local:<pid>:<start time>"): if that very process
 * still runs (same start time, in a pid namespace of its own), it is
 * killed and waited for. DCMS_OK when no such process is left.
 */
static enum dcms_err kill_leftover(const char *ref, struct dcms_errinfo *ei)
{
    int pid = 0;
    unsigned long long want = 0;
    char tail;
    if (sscanf(ref, "local:%d:%llu%c", &pid, &want, &tail) != 2 || pid <= 1)
        return DCMS_OK;
    uint64_t start = 0;
    char nspath[64];
    struct stat ns_self, ns_it;
    snprintf(nspath, sizeof(nspath), "/proc/%d/ns/pid", pid);
    if (!read_stat(pid, &start, NULL, NULL) || start != want || stat(nspath, &ns_it) != 0 ||
        stat("/proc/self/ns/pid", &ns_self) != 0 ||
        (ns_it.st_dev == ns_self.st_dev && ns_it.st_ino == ns_self.st_ino))
        return DCMS_OK;
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0)
        return errno == ESRCH ? DCMS_OK
                              : dcms_err_set(ei, DCMS_ERR_UNAVAILABLE,
                                             "cannot reach the leftover workload %s: %s", ref,
                                             strerror(errno));
    /* The pid could have been reused between the check and pidfd_open: check again. */
    enum dcms_err e = DCMS_OK;
    if (read_stat(pid, &start, NULL, NULL) && start == want) {
        DCMS_LOG(DCMS_LOG_WARN, "enclaves", "killing the leftover workload %s", ref);
        syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0);
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, TERMINATE_TIMEOUT_MS) <= 0)
            e = dcms_err_set(ei, DCMS_ERR_UNAVAILABLE,
                             "the leftover workload %s did not stop in time", ref);
    }
    close(fd);
    return e;
}

/*
 * After the init is reaped: the workload's cgroup must be empty (or, without
 * one, its pid namespace), within the rest of the terminate's time.
 */
static bool workload_gone(struct local *l, struct lentry *en, int64_t until_ms)
{
    char cgroup[sizeof(en->cgroup)];
    pthread_mutex_lock(&l->mu);
    memcpy(cgroup, en->cgroup, sizeof(cgroup));
    pthread_mutex_unlock(&l->mu);
    int left = (int)(until_ms - now_ms());
    if (cgroup[0]) {
        if (!sandbox_cgroup_wait_empty(cgroup, left > 0 ? left : 0) ||
            !sandbox_cgroup_remove(cgroup))
            return false;
        pthread_mutex_lock(&l->mu);
        en->cgroup[0] = '\0';
        pthread_mutex_unlock(&l->mu);
        return true;
    }
    for (;;) {
        if (scan_pidns(en->pidns_dev, en->pidns_ino, NULL, NULL) == 0)
            return true;
        if (now_ms() >= until_ms)
            return false;
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static enum dcms_err local_terminate(struct dcms_enclave_backend *b, const char *ref,
                                     struct dcms_errinfo *ei)
{
    struct local *l = L(b);
    struct lentry *en = entry_get(l, ref);
    if (!en)
        return kill_leftover(ref, ei);
    int64_t until = now_ms() + TERMINATE_TIMEOUT_MS;
    if (!kill_and_wait(l, en, TERMINATE_TIMEOUT_MS) || !workload_gone(l, en, until)) {
        entry_put(l, en);
        return dcms_err_set(ei, DCMS_ERR_UNAVAILABLE, "the workload %s did not stop in time", ref);
    }
    pthread_mutex_lock(&l->mu);
    struct lentry **pp = &l->list;
    while (*pp && *pp != en)
        pp = &(*pp)->next;
    if (*pp) {
        *pp = en->next;
        en->unlinked = true;
    }
    pthread_mutex_unlock(&l->mu);
    remove_dir(en->dir);
    DCMS_LOG(DCMS_LOG_INFO, "enclaves", "local workload %s terminated", ref);
    entry_put(l, en);
    return DCMS_OK;
}

static int cmp_ns(const void *a, const void *b)
{
    const struct ns_usage *x = a, *y = b;
    if (x->dev != y->dev)
        return x->dev < y->dev ? -1 : 1;
    return x->ino < y->ino ? -1 : x->ino > y->ino;
}

/*
 * One pass over /proc for every running workload, so that sampling N
 * workloads costs one pass, not N. Called with snap_mu held.
 */
static void snapshot_take(struct local *l)
{
    pthread_mutex_lock(&l->mu);
    size_t n = 0;
    for (struct lentry *en = l->list; en; en = en->next)
        n += !en->exited;
    struct ns_usage *rows = calloc(n ? n : 1, sizeof(*rows));
    size_t k = 0;
    for (struct lentry *en = l->list; rows && en; en = en->next)
        if (!en->exited)
            rows[k++] = (struct ns_usage){.dev = en->pidns_dev, .ino = en->pidns_ino};
    pthread_mutex_unlock(&l->mu);
    if (!rows)
        return;
    qsort(rows, k, sizeof(*rows), cmp_ns);
    DIR *d = k ? opendir("/proc") : NULL;
    struct dirent *de;
    unsigned seen = 0;
    while (d && (de = readdir(d)) && seen++ < SCAN_MAX_PROCS) {
        if (de->d_name[0] < '1' || de->d_name[0] > '9')
            continue;
        char path[300];
        snprintf(path, sizeof(path), "/proc/%.32s/ns/pid", de->d_name);
        struct stat st;
        if (stat(path, &st) != 0)
            continue;
        struct ns_usage key = {.dev = st.st_dev, .ino = st.st_ino};
        struct ns_usage *row = bsearch(&key, rows, k, sizeof(*rows), cmp_ns);
        if (!row)
            continue;
        pid_t pid = (pid_t)strtol(de->d_name, NULL, 10);
        uint64_t ticks = 0, rss = 0, hwm = 0;
        row->nprocs++;
        if (read_stat(pid, NULL, &ticks, NULL))
            row->ticks += ticks;
        read_rss(pid, &rss, &hwm);
        row->rss += rss;
    }
    if (d)
        closedir(d);
    free(l->snap);
    l->snap = rows;
    l->nsnap = k;
    l->snap_us = dcms_clock_mono_us();
}

/* The usage of one pid namespace from a snapshot at most SNAPSHOT_MAX_AGE_US old. */
static void snapshot_get(struct local *l, dev_t dev, ino_t ino, struct ns_usage *out)
{
    struct ns_usage key = {.dev = dev, .ino = ino};
    pthread_mutex_lock(&l->snap_mu);
    struct ns_usage *row = NULL;
    if (l->snap && dcms_clock_mono_us() - l->snap_us < SNAPSHOT_MAX_AGE_US)
        row = bsearch(&key, l->snap, l->nsnap, sizeof(*l->snap), cmp_ns);
    if (!row) {
        snapshot_take(l);
        row = l->snap ? bsearch(&key, l->snap, l->nsnap, sizeof(*l->snap), cmp_ns) : NULL;
    }
    *out = row ? *row : key;
    pthread_mutex_unlock(&l->snap_mu);
}

static enum dcms_err local_probe(struct dcms_enclave_backend *b, const char *ref,
                                 struct dcms_enclave_probe *out, struct dcms_errinfo *ei)
{
    struct local *l = L(b);
    memset(out, 0, sizeof(*out));
    out->pid = -1;
    struct lentry *en = entry_get(l, ref);
    if (!en) {
        out->state = DCMS_ENCLAVE_RUN_UNKNOWN;
        snprintf(out->reason, sizeof(out->reason), "this backend runs no workload %s", ref);
        return DCMS_OK;
    }
    out->nprocs_limit = en->nproc_limit;
    out->memory_limit_bytes = en->memory_limit;
    pthread_mutex_lock(&l->mu);
    bool exited = en->exited;
    if (exited) {
        out->state = DCMS_ENCLAVE_RUN_EXITED;
        snprintf(out->reason, sizeof(out->reason), "%s", en->reason);
        out->cpu_time_ms = en->final_cpu_ms;
        out->peak_rss_bytes = en->peak_rss;
        out->uptime_ms = (uint64_t)(en->ended_us - en->started_us) / 1000;
    } else {
        out->state = en->suspended ? DCMS_ENCLAVE_RUN_SUSPENDED : DCMS_ENCLAVE_RUN_RUNNING;
        out->pid = en->pid;
        out->uptime_ms = (uint64_t)(dcms_clock_mono_us() - en->started_us) / 1000;
    }
    out->channel_bytes_in = en->bytes_in;
    out->channel_bytes_out = en->bytes_out;
    pthread_mutex_unlock(&l->mu);
    if (!exited) {
        struct ns_usage u;
        snapshot_get(l, en->pidns_dev, en->pidns_ino, &u);
        out->nprocs = u.nprocs;
        uint64_t rss = 0, hwm = 0;
        read_rss(en->pid, &rss, &hwm);
        long hz = sysconf(_SC_CLK_TCK);
        out->cpu_time_ms = hz > 0 ? u.ticks * 1000 / (uint64_t)hz : 0;
        out->rss_bytes = u.rss;
        pthread_mutex_lock(&l->mu);
        if (hwm > en->peak_rss)
            en->peak_rss = hwm;
        if (u.rss > en->peak_rss)
            en->peak_rss = u.rss;
        out->peak_rss_bytes = en->peak_rss;
        pthread_mutex_unlock(&l->mu);
        if (out->nprocs >= en->nproc_limit)
            snprintf(out->notice, sizeof(out->notice), "process limit reached (%u of %u)",
                     out->nprocs, en->nproc_limit);
        else if (out->peak_rss_bytes * 10 >= en->memory_limit * 9)
            snprintf(out->notice, sizeof(out->notice),
                     "memory near its limit (peak RSS %" PRIu64 " MiB of %" PRIu64 " MiB)",
                     out->peak_rss_bytes >> 20, en->memory_limit >> 20);
    }
    entry_put(l, en);
    (void)ei;
    return DCMS_OK;
}

/* ---- construction ---- */

static void local_destroy(struct dcms_enclave_backend *b)
{
    struct local *l = L(b);
    if (l->reaper_started) {
        for (struct lentry *en = l->list; en; en = en->next)
            if (!kill_and_wait(l, en, TERMINATE_TIMEOUT_MS))
                DCMS_LOG(DCMS_LOG_ERROR, "enclaves", "local workload %s did not stop", en->ref);
        pthread_mutex_lock(&l->mu);
        l->stop = true;
        pthread_mutex_unlock(&l->mu);
        uint64_t one = 1;
        (void)!write(l->evfd, &one, sizeof(one));
        pthread_join(l->reaper, NULL);
    }
    if (l->spawner_started) {
        pthread_mutex_lock(&l->spawn_mu);
        l->spawn_stop = true;
        pthread_cond_broadcast(&l->spawn_cv);
        pthread_mutex_unlock(&l->spawn_mu);
        pthread_join(l->spawner, NULL);
    }
    while (l->list) {
        struct lentry *en = l->list;
        l->list = en->next;
        remove_dir(en->dir);
        entry_free(en);
    }
    if (l->use_cgroup)
        sandbox_cgroup_fini(&l->cg);
    if (l->epfd >= 0)
        close(l->epfd);
    if (l->evfd >= 0)
        close(l->evfd);
    if (l->launcher_fd >= 0)
        close(l->launcher_fd);
    free(l->prog.filter);
    free(l->snap);
    pthread_mutex_destroy(&l->snap_mu);
    pthread_mutex_destroy(&l->mu);
    pthread_mutex_destroy(&l->start_mu);
    pthread_mutex_destroy(&l->spawn_mu);
    pthread_cond_destroy(&l->cv);
    pthread_cond_destroy(&l->spawn_cv);
    free(l);
    free(b);
}

/*
 * The cgroup2 mount to use: /sys/fs/cgroup on a unified host, else the
 * "unified" hierarchy of a hybrid one (no controllers there, but the
 * freezer and cgroup.kill).
 */
static const char *default_cgroup_root(void)
{
    static const char *const roots[] = {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"};
    for (size_t i = 0; i < 2; i++) {
        struct statfs sf;
        if (statfs(roots[i], &sf) == 0 && (unsigned long)sf.f_type == 0x63677270)
            return roots[i];
    }
    return roots[0];
}

/*
 * At start, every enclave directory under the scratch root belongs to an
 * earlier dcmsd (the root is this dcmsd's alone): its workload was killed
 * with that dcmsd, and the store's enclave is failed by the startup
 * reconcile, so the directory goes.
 */
static void sweep_scratch(const char *root)
{
    DIR *d = opendir(root);
    if (!d)
        return;
    unsigned n = 0, left = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.' || !id_ok(de->d_name))
            continue;
        char dir[LOCAL_PATH_MAX + 80];
        snprintf(dir, sizeof(dir), "%s/%s", root, de->d_name);
        remove_dir(dir);
        struct stat st;
        if (lstat(dir, &st) == 0)
            left++;
        else
            n++;
    }
    closedir(d);
    if (n || left)
        DCMS_LOG(n && !left ? DCMS_LOG_INFO : DCMS_LOG_WARN, "enclaves",
                 "removed %u scratch directories left by an earlier dcmsd in %s (%u could not be "
                 "removed)",
                 n, root, left);
}

/* PCR1: what the launcher does, in text; any change to the sandbox changes the measurement. */
static enum dcms_err make_launcher(struct local *l, struct dcms_errinfo *ei)
{
    unsigned char md[48];
    unsigned int mdlen = 0;
    if (EVP_Digest(l->prog.filter, l->prog.len * sizeof(struct sock_filter), md, &mdlen,
                   EVP_sha384(), NULL) != 1)
        return dcms_err_set(ei, DCMS_ERR_CRYPTO, "cannot hash the seccomp filter");
    char hex[97];
    for (unsigned i = 0; i < mdlen && i < 48; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    char text[2048];
    int n = snprintf(text, sizeof(text),
                     "dcms local enclave launcher 1\n"
                     "dcms %s\n"
                     "namespaces user pid net mnt ipc uts\n"
                     "root tmpfs pivot\n"
                     "ids unprivileged no-new-privs no-capabilities\n"
                     "limits as nproc=%u nofile=%u fsize core=0 memlock=0 affinity\n"
                     "seccomp-bpf-sha384 %s\n"
                     "seccomp-kill %s\n",
                     DCMS_VERSION, l->max_processes, CHILD_NOFILE, hex, sandbox_seccomp_killed);
    l->launcher_fd = memfd_create("dcms-launcher", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (l->launcher_fd < 0 || n <= 0 || (size_t)n >= sizeof(text) ||
        write(l->launcher_fd, text, (size_t)n) != n ||
        fcntl(l->launcher_fd, F_ADD_SEALS,
              F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0)
        return dcms_err_set(ei, DCMS_ERR_IO, "cannot write the launcher description");
    snprintf(l->launcher_path, sizeof(l->launcher_path), "/proc/self/fd/%d", l->launcher_fd);
    return DCMS_OK;
}

enum dcms_err dcms_enclave_backend_local_new(const struct dcms_enclave_local_opts *opts,
                                             struct dcms_enclave_backend **out,
                                             struct dcms_errinfo *ei)
{
    *out = NULL;
    if (!opts || !opts->scratch_root || !opts->module)
        return dcms_err_set(ei, DCMS_ERR_CONFIG,
                            "the local enclave backend needs a scratch root and an attestation "
                            "module");
    if (strlen(opts->scratch_root) > LOCAL_PATH_MAX - 100)
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "the enclave scratch root path is too long");
    struct dcms_enclave_backend *b = calloc(1, sizeof(*b));
    struct local *l = calloc(1, sizeof(*l));
    if (!b || !l) {
        free(b);
        free(l);
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    }
    b->impl = l;
    b->name = "local";
    b->start = local_start;
    b->attest = local_attest;
    b->suspend = local_suspend;
    b->resume = local_resume;
    b->terminate = local_terminate;
    b->probe = local_probe;
    b->channel = local_channel;
    b->destroy = local_destroy;
    l->launcher_fd = l->epfd = l->evfd = -1;
    pthread_mutex_init(&l->mu, NULL);
    pthread_mutex_init(&l->snap_mu, NULL);
    pthread_mutex_init(&l->start_mu, NULL);
    pthread_mutex_init(&l->spawn_mu, NULL);
    pthread_cond_init(&l->spawn_cv, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_cond_init(&l->cv, &ca);
    pthread_condattr_destroy(&ca);
    snprintf(l->scratch_root, sizeof(l->scratch_root), "%s", opts->scratch_root);
    l->module = opts->module;
    l->max_processes = opts->max_processes ? opts->max_processes : DEFAULT_MAX_PROCESSES;
    l->as_root = geteuid() == 0;
    l->host_uid = opts->host_uid ? opts->host_uid : 65534;
    l->host_gid = opts->host_gid ? opts->host_gid : 65534;
    if (sched_getaffinity(0, sizeof(l->cpus), &l->cpus) != 0) {
        CPU_ZERO(&l->cpus);
        CPU_SET(0, &l->cpus);
    }
    l->ncpus = (unsigned)CPU_COUNT(&l->cpus);
    const char *cg_root = opts->cgroup_root ? opts->cgroup_root : default_cgroup_root();
    unsigned swept = sandbox_cgroup_sweep(cg_root, TERMINATE_TIMEOUT_MS);
    if (swept)
        DCMS_LOG(DCMS_LOG_WARN, "enclaves",
                 "killed the workloads of %u cgroups left by an earlier dcmsd in %s", swept,
                 cg_root);
    l->use_cgroup = sandbox_cgroup_init(&l->cg, cg_root);

    enum dcms_err e;
    if ((e = dcms_fs_mkdirs(l->scratch_root, ei)) || (e = sandbox_seccomp_build(&l->prog, ei)) ||
        (e = make_launcher(l, ei)))
        goto fail;
    sweep_scratch(l->scratch_root);
    /* Each workload holds five descriptors in dcmsd: use the whole hard limit. */
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &nofile);
    }
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0};
    if (l->epfd < 0 || l->evfd < 0 || epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->evfd, &ev) != 0) {
        e = dcms_err_set(ei, DCMS_ERR_IO, "cannot create the reaper's epoll set");
        goto fail;
    }
    if (pthread_create(&l->reaper, NULL, reaper_main, l) != 0) {
        e = dcms_err_set(ei, DCMS_ERR_INTERNAL, "cannot start the reaper thread");
        goto fail;
    }
    l->reaper_started = true;
    if (pthread_create(&l->spawner, NULL, spawner_main, l) != 0) {
        e = dcms_err_set(ei, DCMS_ERR_INTERNAL, "cannot start the spawner thread");
        goto fail;
    }
    l->spawner_started = true;
    *out = b;
    return DCMS_OK;
fail:
    local_destroy(b);
    return e;
}

void dcms_enclave_backend_free(struct dcms_enclave_backend *b)
{
    if (b && b->destroy)
        b->destroy(b);
}
