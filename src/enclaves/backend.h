/*
 * Enclave backends: where a workload actually runs. The enclave service
 * (enclaves.c) keeps the model, the state machine and the store; a backend
 * only starts, inspects, pauses and stops workloads and fetches their
 * attestation documents. Two implementations:
 *
 *   local  a child process in new user, pid, net (no interfaces), mount,
 *          ipc and uts namespaces under a seccomp allow-list, rlimits (and
 *          cgroup v2 where writable), a private scratch directory, and a
 *          socketpair as its only channel to dcmsd (the vsock stand-in).
 *          Attestation documents come from the local attestation module,
 *          requested by the workload over that channel; PCR0 is the SHA-384
 *          of the exact bytes executed.
 *   nitro  nitro-cli run-enclave / describe-enclaves / terminate-enclave and
 *          vsock, on a real AWS Nitro host.
 *
 * A workload is named by `ref`, an opaque printable string the backend
 * returns from start() and the service stores (local: "local:<pid>:<start
 * time>", nitro: the EnclaveID). Every operation takes the ref, so the
 * service never holds backend pointers across calls.
 *
 * Thread-safety: every operation may be called from any thread; a backend
 * serializes what it must internally.
 */
#ifndef DCMS_ENCLAVES_BACKEND_H
#define DCMS_ENCLAVES_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dcms/err.h"

struct dcms_attest_local;
struct dcms_chan_frame;

#define DCMS_ENCLAVE_REF_MAX 128

/* What to run. Strings are borrowed for the duration of start(). */
struct dcms_enclave_spec {
    const char *enclave_id; /* UUID, for names and logs */
    const char *image_path; /* local: the workload executable; nitro: the EIF file */
    unsigned cpu_cores;     /* local: CPU time share; nitro: --cpu-count */
    unsigned memory_mb;     /* hard limit */
    unsigned storage_gb;    /* local: scratch directory quota */
    bool debug_mode;        /* local: zero PCRs; nitro: --debug-mode */
    /*
     * local: an image is signed when `<image_path>.sig` exists (dcmsd image
     * sign); start() refuses it (DCMS_ERR_VALIDATION) unless that signature
     * verifies over the bytes that run, and its certificate is measured as
     * PCR8. nitro: the EIF carries its own signature.
     */
};

enum dcms_enclave_run_state {
    DCMS_ENCLAVE_RUN_RUNNING,
    DCMS_ENCLAVE_RUN_SUSPENDED,
    DCMS_ENCLAVE_RUN_EXITED,  /* the workload ended or was killed; reason says how */
    DCMS_ENCLAVE_RUN_UNKNOWN, /* the backend has no such workload (dcmsd restarted, ...) */
};

/* One look at a workload: its state and its resource use. */
struct dcms_enclave_probe {
    enum dcms_enclave_run_state state;
    char reason[192];     /* for EXITED: "killed by signal 9", "exceeded its memory limit" */
    int64_t pid;          /* host pid of the workload's init (local), -1 when none */
    uint64_t cpu_time_ms; /* user + system */
    uint64_t rss_bytes;   /* current resident set */
    uint64_t peak_rss_bytes;
    uint64_t uptime_ms;
    uint64_t channel_bytes_in,
        channel_bytes_out; /* over the socketpair / vsock, as seen by dcmsd */
    /* Processes and limits; zero (notice "") when a backend does not measure them: */
    uint32_t nprocs;             /* processes in the workload (local: its pid namespace) */
    uint32_t nprocs_limit;       /* the process limit, 0 when none is known */
    uint64_t memory_limit_bytes; /* the memory limit, 0 when none is known */
    char notice[192]; /* RUNNING: a limit being hit ("process limit reached (64 of 64)"), or "" */
};

/*
 * An exclusive channel to one workload (an enclave session, dcms/enclaves.h),
 * handed out by the backend's channel() operation. The backend's own
 * struct starts with this one. Every call is from one thread at a time.
 */
struct dcms_enclave_channel {
    /* One frame (body at most DCMS_CHAN_MAX_FRAME - 1 bytes) before deadline_ms. */
    enum dcms_err (*send)(struct dcms_enclave_channel *ch, uint8_t type, const uint8_t *body,
                          size_t len, int64_t deadline_ms, struct dcms_errinfo *ei);
    /*
     * The next frame for the caller into buf[CHAN_IO_BUF] (f's views point
     * into it). Local: the workload's NSM requests are answered inside by
     * the attestation module and never returned. Nitro: an NSM request is
     * a protocol error (the enclave asks its own NSM).
     */
    enum dcms_err (*recv)(struct dcms_enclave_channel *ch, uint8_t *buf, struct dcms_chan_frame *f,
                          int64_t deadline_ms, struct dcms_errinfo *ei);
    /* Gives the channel back (attest() may use it again) and frees `ch`. */
    void (*close)(struct dcms_enclave_channel *ch);
};

struct dcms_enclave_backend {
    const char *name; /* "local", "nitro" */
    void *impl;

    /* Starts the workload; on success `ref` (DCMS_ENCLAVE_REF_MAX bytes) names it. */
    enum dcms_err (*start)(struct dcms_enclave_backend *b, const struct dcms_enclave_spec *spec,
                           char *ref, struct dcms_errinfo *ei);
    /*
     * Asks the workload for an attestation document binding `nonce` (1..64
     * bytes); *doc is malloc'd. Times out (DCMS_ERR_UNAVAILABLE) when the
     * workload does not answer within a few seconds or is suspended.
     */
    enum dcms_err (*attest)(struct dcms_enclave_backend *b, const char *ref,
                            const unsigned char *nonce, size_t nonce_len, unsigned char **doc,
                            size_t *doc_len, struct dcms_errinfo *ei);
    enum dcms_err (*suspend)(struct dcms_enclave_backend *b, const char *ref,
                             struct dcms_errinfo *ei);
    enum dcms_err (*resume)(struct dcms_enclave_backend *b, const char *ref,
                            struct dcms_errinfo *ei);
    /* Stops the workload and everything it started; DCMS_OK when already gone. */
    enum dcms_err (*terminate)(struct dcms_enclave_backend *b, const char *ref,
                               struct dcms_errinfo *ei);
    enum dcms_err (*probe)(struct dcms_enclave_backend *b, const char *ref,
                           struct dcms_enclave_probe *out, struct dcms_errinfo *ei);
    /*
     * Opens an exclusive channel to the running workload `ref`. Local: the
     * socketpair, after an exchange in flight (attest); attest() of this
     * workload waits until the channel is closed (the enclave service does
     * not attest an enclave while a session is open). Nitro: a vsock
     * connection of its own to the enclave's port. DCMS_ERR_NOT_FOUND for an
     * unknown workload, DCMS_ERR_CONFLICT when it has ended,
     * DCMS_ERR_UNAVAILABLE when it is suspended or cannot be reached. Close
     * every channel before destroy().
     */
    enum dcms_err (*channel)(struct dcms_enclave_backend *b, const char *ref,
                             struct dcms_enclave_channel **out, struct dcms_errinfo *ei);
    /* Terminates every workload this backend started, then frees it. NULL-safe via the helper. */
    void (*destroy)(struct dcms_enclave_backend *b);
};

void dcms_enclave_backend_free(struct dcms_enclave_backend *b);

struct dcms_enclave_local_opts {
    const char *scratch_root;         /* scratch directories are made under it (0700) */
    struct dcms_attest_local *module; /* issues the documents; borrowed */
    /* Optional (0 = the default): */
    unsigned max_processes;  /* RLIMIT_NPROC per workload (default 64) */
    unsigned host_uid;       /* host uid/gid the workload runs as when dcmsd is root */
    unsigned host_gid;       /* (default 65534, nobody); otherwise dcmsd's own ids */
    const char *cgroup_root; /* cgroup2 mount used when writable; NULL: /sys/fs/cgroup, "": none */
};
enum dcms_err dcms_enclave_backend_local_new(const struct dcms_enclave_local_opts *opts,
                                             struct dcms_enclave_backend **out,
                                             struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * Opens a stream socket to port `port` of enclave `cid` and returns its fd
 * (the backend closes it), or -1 with errno set. The default is AF_VSOCK;
 * tests substitute a unix socketpair.
 */
typedef int dcms_enclave_vsock_connect_fn(void *ctx, unsigned cid, unsigned port);

struct dcms_enclave_nitro_opts {
    const char *nitro_cli; /* program to run; "nitro-cli" is looked up on PATH */
    unsigned vsock_port;   /* where the enclave's attestation agent listens */
    /* Optional (0/NULL = the default): */
    unsigned timeout_ms;                    /* per nitro-cli run (default 120000) */
    dcms_enclave_vsock_connect_fn *connect; /* NULL: AF_VSOCK */
    void *connect_ctx;
};
enum dcms_err dcms_enclave_backend_nitro_new(const struct dcms_enclave_nitro_opts *opts,
                                             struct dcms_enclave_backend **out,
                                             struct dcms_errinfo *ei) DCMS_MUST_CHECK;

#endif
