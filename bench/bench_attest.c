/*
 * Attestation verification throughput, single thread: how many real AWS
 * Nitro documents per second one core verifies against the AWS root at the
 * document's own time.
 *
 *   bench_attest DOC.cbor [SECONDS]
 *
 * Prints key=value lines: warm (the chain is in the verifier's cache, so a
 * document costs parsing plus one ECDSA P-384 verification) and cold (a new
 * verifier per document: the whole chain is verified each time). Exit 1 if
 * any verification is not valid.
 */
#include <stdio.h>
#include <stdlib.h>

#include "attestation/attest_int.h"
#include "dcms/attest.h"
#include "dcms/clock.h"

static int verify_once(struct dcms_attest_verifier *v, const unsigned char *doc, size_t len,
                       const struct dcms_attest_policy *pol)
{
    struct dcms_attest_report rep;
    if (dcms_attest_verify(v, doc, len, pol, &rep) != DCMS_OK)
        return -1;
    int ok = rep.valid ? 0 : -1;
    dcms_attest_report_release(&rep);
    return ok;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_attest DOC.cbor [SECONDS]\n");
        return 2;
    }
    double seconds = argc > 2 ? strtod(argv[2], NULL) : 3.0;
    if (!(seconds > 0 && seconds <= 600))
        seconds = 3.0;
    unsigned char *doc;
    size_t len;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    if (attest_read_file(argv[1], DCMS_ATTEST_MAX_DOC_BYTES, &doc, &len, &ei)) {
        fprintf(stderr, "bench_attest: %s\n", ei.message);
        return 2;
    }
    struct dcms_attest_doc *d;
    enum dcms_attest_failure f;
    char why[DCMS_ATTEST_REASON_MAX];
    if (dcms_attest_parse(doc, len, &d, &f, why, sizeof(why))) {
        fprintf(stderr, "bench_attest: %s: %s\n", argv[1], why);
        free(doc);
        return 2;
    }
    struct dcms_attest_policy pol;
    dcms_attest_policy_init(&pol);
    pol.now_ms = (int64_t)d->timestamp_ms;
    pol.allow_debug = true;
    dcms_attest_doc_free(d);

    int status = 1;
    struct dcms_attest_verifier *v = NULL;
    if (dcms_attest_verifier_new(dcms_aws_nitro_root_g1, dcms_aws_nitro_root_g1_len, &v, &ei) ||
        verify_once(v, doc, len, &pol)) {
        fprintf(stderr, "bench_attest: the document does not verify\n");
        goto out;
    }

    /* Warm chain cache. */
    uint64_t n = 0;
    int64_t start = dcms_clock_mono_us(), end = start + (int64_t)(seconds * 1e6), now = start;
    while (now < end) {
        for (int i = 0; i < 16; i++, n++)
            if (verify_once(v, doc, len, &pol))
                goto out;
        now = dcms_clock_mono_us();
    }
    double warm = (double)n / ((double)(now - start) / 1e6);

    /* Cold: a fresh verifier (empty cache) per document, for a third of the time. */
    uint64_t m = 0;
    start = now = dcms_clock_mono_us();
    end = start + (int64_t)(seconds / 3 * 1e6);
    while (now < end) {
        struct dcms_attest_verifier *c = NULL;
        if (dcms_attest_verifier_new(dcms_aws_nitro_root_g1, dcms_aws_nitro_root_g1_len, &c, &ei))
            goto out;
        int bad = verify_once(c, doc, len, &pol);
        dcms_attest_verifier_free(c);
        if (bad)
            goto out;
        m++;
        now = dcms_clock_mono_us();
    }
    double cold = (double)m / ((double)(now - start) / 1e6);
    printf("attest_document_bytes=%zu\n", len);
    printf("attest_warm_docs_per_s=%.1f\n", warm);
    printf("attest_warm_us_per_doc=%.1f\n", 1e6 / warm);
    printf("attest_cold_docs_per_s=%.1f\n", cold);
    printf("attest_cache_hits=%llu full_verifications=%llu\n", (unsigned long long)v->cache_hits,
           (unsigned long long)v->full_verifications);
    status = 0;
out:
    dcms_attest_verifier_free(v);
    free(doc);
    return status;
}
