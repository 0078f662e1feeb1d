/*
 * Local enclave backend: start-to-verified-attestation latency, and how
 * many idle enclaves the machine holds at once.
 *
 *   bench_enclaves WORKLOAD [RUNS [MAX_CONCURRENT]]
 *
 * Latency: RUNS times (default 50), start a sandboxed workload, ask it for
 * an attestation document with a fresh nonce and verify the document (local
 * root, nonce, PCR0 = SHA-384 of the image); the clock runs from start() to
 * the verified document. Terminate is timed separately.
 *
 * Concurrency: start 16 MiB enclaves one after the other until start()
 * fails or MAX_CONCURRENT (default 256) run; then probe each (all must be
 * RUNNING), attest the last one, and report the count, the workloads'
 * summed RSS and the drop in MemAvailable per enclave.
 *
 * Prints key=value lines; exit 1 if any run fails.
 */
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "dcms/attest.h"
#include "dcms/clock.h"
#include "enclaves/backend.h"

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st;
    (void)flag;
    (void)f;
    return remove(p);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static long mem_available_kib(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "MemAvailable: %ld kB", &v) == 1)
            break;
    if (f)
        fclose(f);
    return v;
}

struct ctx {
    struct dcms_enclave_backend *b;
    struct dcms_attest_verifier *v;
    unsigned char pcr0[DCMS_ATTEST_SHA384_LEN];
    const char *image;
};

static int attest_verified(struct ctx *c, const char *ref)
{
    unsigned char nonce[32], *doc = NULL;
    size_t len = 0;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    if (RAND_bytes(nonce, sizeof(nonce)) != 1 ||
        c->b->attest(c->b, ref, nonce, sizeof(nonce), &doc, &len, &ei) != DCMS_OK) {
        fprintf(stderr, "bench_enclaves: attest: %s\n", ei.message);
        return -1;
    }
    struct dcms_attest_policy pol;
    dcms_attest_policy_init(&pol);
    pol.nonce = nonce;
    pol.nonce_len = sizeof(nonce);
    struct dcms_attest_report rep;
    int rc = dcms_attest_policy_expect_pcr(&pol, 0, c->pcr0, sizeof(c->pcr0)) == DCMS_OK &&
                     dcms_attest_verify(c->v, doc, len, &pol, &rep) == DCMS_OK
                 ? 0
                 : -1;
    if (rc == 0) {
        if (!rep.valid) {
            fprintf(stderr, "bench_enclaves: document refused: %s\n",
                    dcms_attest_failure_code(rep.failure));
            rc = -1;
        }
        dcms_attest_report_release(&rep);
    }
    free(doc);
    return rc;
}

static int start(struct ctx *c, unsigned i, unsigned memory_mb, char *ref)
{
    char id[32];
    snprintf(id, sizeof(id), "bench-%u", i);
    struct dcms_enclave_spec sp = {.enclave_id = id,
                                   .image_path = c->image,
                                   .cpu_cores = 1,
                                   .memory_mb = memory_mb,
                                   .storage_gb = 1};
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    if (c->b->start(c->b, &sp, ref, &ei) != DCMS_OK) {
        fprintf(stderr, "bench_enclaves: start #%u: %s\n", i, ei.message);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_enclaves WORKLOAD [RUNS [MAX_CONCURRENT]]\n");
        return 2;
    }
    unsigned runs = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10) : 50;
    unsigned cap = argc > 3 ? (unsigned)strtoul(argv[3], NULL, 10) : 256;
    if (runs == 0 || runs > 10000 || cap == 0 || cap > 4096) {
        fprintf(stderr, "bench_enclaves: RUNS must be 1..10000 and MAX_CONCURRENT 1..4096\n");
        return 2;
    }
    char dir[] = "/tmp/dcms-bench-enclaves-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 2;
    }
    int rc = 1;
    struct ctx c = {.image = argv[1]};
    struct dcms_attest_local *module = NULL;
    char **refs = NULL;
    int64_t *lat = calloc(runs, sizeof(*lat)), *stop = calloc(runs, sizeof(*stop));
    int64_t *st = calloc(runs, sizeof(*st));
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    char path[128];
    snprintf(path, sizeof(path), "%s/attest", dir);
    size_t pem_len = 0;
    const char *pem = NULL;
    if (!lat || !stop || !st || dcms_attest_local_open(path, &module, &ei) != DCMS_OK ||
        !(pem = dcms_attest_local_root_pem(module, &pem_len)) ||
        dcms_attest_verifier_new(pem, pem_len, &c.v, &ei) != DCMS_OK ||
        dcms_attest_measure_file(c.image, c.pcr0, &ei) != DCMS_OK) {
        fprintf(stderr, "bench_enclaves: %s\n", ei.message);
        goto out;
    }
    snprintf(path, sizeof(path), "%s/scratch", dir);
    struct dcms_enclave_local_opts o = {.scratch_root = path, .module = module};
    if (dcms_enclave_backend_local_new(&o, &c.b, &ei) != DCMS_OK) {
        fprintf(stderr, "bench_enclaves: %s\n", ei.message);
        goto out;
    }

    char ref[DCMS_ENCLAVE_REF_MAX];
    for (unsigned i = 0; i < runs; i++) {
        int64_t t0 = dcms_clock_mono_us();
        if (start(&c, i, 64, ref))
            goto out;
        int64_t ts = dcms_clock_mono_us();
        if (attest_verified(&c, ref))
            goto out;
        int64_t t1 = dcms_clock_mono_us();
        st[i] = ts - t0;
        if (c.b->terminate(c.b, ref, &ei) != DCMS_OK) {
            fprintf(stderr, "bench_enclaves: terminate: %s\n", ei.message);
            goto out;
        }
        lat[i] = t1 - t0;
        stop[i] = dcms_clock_mono_us() - t1;
    }
    qsort(lat, runs, sizeof(*lat), cmp_i64);
    qsort(stop, runs, sizeof(*stop), cmp_i64);
    qsort(st, runs, sizeof(*st), cmp_i64);
    printf("enclave_runs=%u\n", runs);
    printf("enclave_start_attest_p50_ms=%.2f\n", (double)lat[runs / 2] / 1000.0);
    printf("enclave_start_attest_p99_ms=%.2f\n", (double)lat[(runs * 99) / 100] / 1000.0);
    printf("enclave_start_only_p50_ms=%.2f\n", (double)st[runs / 2] / 1000.0);
    printf("enclave_terminate_p50_ms=%.2f\n", (double)stop[runs / 2] / 1000.0);

    refs = calloc(cap, sizeof(*refs));
    if (!refs)
        goto out;
    long avail0 = mem_available_kib();
    unsigned n = 0;
    int64_t t0 = dcms_clock_mono_us();
    while (n < cap) {
        refs[n] = malloc(DCMS_ENCLAVE_REF_MAX);
        if (!refs[n] || start(&c, 100000 + n, 16, refs[n])) {
            free(refs[n]);
            refs[n] = NULL;
            break;
        }
        n++;
    }
    int64_t t1 = dcms_clock_mono_us();
    long avail1 = mem_available_kib();
    uint64_t rss = 0;
    unsigned running = 0;
    for (unsigned i = 0; i < n; i++) {
        struct dcms_enclave_probe p;
        if (c.b->probe(c.b, refs[i], &p, &ei) == DCMS_OK && p.state == DCMS_ENCLAVE_RUN_RUNNING)
            running++;
        rss += p.rss_bytes;
    }
    int last_ok = n ? attest_verified(&c, refs[n - 1]) : -1;
    printf("enclave_concurrent=%u\n", n);
    printf("enclave_concurrent_cap=%u\n", cap);
    printf("enclave_concurrent_running=%u\n", running);
    printf("enclave_concurrent_start_ms=%.1f\n", (double)(t1 - t0) / 1000.0);
    if (n) {
        printf("enclave_rss_kib_each=%.0f\n", (double)rss / 1024.0 / n);
        if (avail0 > 0 && avail1 > 0)
            printf("enclave_memavailable_drop_kib_each=%.0f\n", (double)(avail0 - avail1) / n);
    }
    printf("enclave_last_attest=%s\n", last_ok == 0 ? "verified" : "failed");
    rc = n > 0 && running == n && last_ok == 0 ? 0 : 1;
out:
    if (refs)
        for (unsigned i = 0; i < cap; i++)
            if (refs[i]) {
                (void)c.b->terminate(c.b, refs[i], &ei);
                free(refs[i]);
            }
    free(refs);
    dcms_enclave_backend_free(c.b);
    dcms_attest_verifier_free(c.v);
    dcms_attest_local_free(module);
    free(lat);
    free(stop);
    free(st);
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return rc;
}
