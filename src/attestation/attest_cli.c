/*
 * `dcmsd attestation verify FILE [options]`: verifies an attestation
 * document offline and prints the same JSON report as the API. Exit status
 * 0 when the document is valid under the policy, 1 when it is not, 2 on a
 * usage or I/O error.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>

#include "attestation/attest_int.h"
#include "attestation/attestation.h"
#include "dcms/json.h"

#define INPUT_MAX_BYTES (64u << 10)

static void usage(FILE *f)
{
    fprintf(f, "usage: dcmsd attestation verify FILE [--root PEM] [--max-age-seconds N]\n"
               "                                [--allow-debug] [--expect-pcr N=HEX]...\n"
               "                                [--nonce HEX]\n\n"
               "Verifies an AWS Nitro attestation document (FILE: raw CBOR, or base64 text)\n"
               "and prints the JSON report. The chain is checked at the document's own time;\n"
               "--max-age-seconds adds the freshness check and the chain check at now.\n"
               "Debug-mode documents are refused unless --allow-debug. The trust root is\n"
               "the AWS Nitro root G1 unless --root names a PEM file (e.g. the dev root in\n"
               "$DCMS_DATA_DIR/attestation/root.crt). Exit status: 0 valid, 1 not valid,\n"
               "2 usage or I/O error.\n");
}

static bool parse_u64(const char *s, unsigned long long max, unsigned long long *out)
{
    if (!s || !*s || !isdigit((unsigned char)*s))
        return false;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > max)
        return false;
    *out = v;
    return true;
}

/* Raw CBOR as is; otherwise base64 text with whitespace ignored (when it decodes). */
static enum dcms_err load_document(unsigned char *raw, size_t n, unsigned char **doc, size_t *len)
{
    *doc = NULL;
    *len = 0;
    if (n > 0 && (raw[0] == 0x84 || raw[0] == 0xd2))
        return DCMS_OK;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!isspace(raw[i]))
            raw[k++] = raw[i];
    enum dcms_err e =
        attest_base64_decode((const char *)raw, k, DCMS_ATTEST_MAX_DOC_BYTES, doc, len);
    return e == DCMS_ERR_NOMEM ? e : DCMS_OK;
}

static int verify_cmd(int argc, char **argv)
{
    static const struct option opts[] = {{"root", required_argument, NULL, 'r'},
                                         {"max-age-seconds", required_argument, NULL, 'm'},
                                         {"allow-debug", no_argument, NULL, 'd'},
                                         {"expect-pcr", required_argument, NULL, 'p'},
                                         {"nonce", required_argument, NULL, 'n'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    struct dcms_attest_policy pol;
    dcms_attest_policy_init(&pol);
    pol.max_age_ms = -1;
    pol.check_chain_at_now = false;
    const char *root_path = NULL;
    unsigned char nonce[DCMS_ATTEST_MAX_FIELD_BYTES];
    int status = 2, ch;
    unsigned char *raw = NULL, *decoded = NULL, *root = NULL;
    struct dcms_attest_verifier *v = NULL;
    struct dcms_attest_report rep = {0};
    json_t *j = NULL;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);

    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        unsigned long long num;
        size_t n;
        switch (ch) {
        case 'r':
            root_path = optarg;
            break;
        case 'm':
            if (!parse_u64(optarg, 100ull * 365 * 86400, &num)) {
                fprintf(stderr, "dcmsd attestation: bad --max-age-seconds \"%s\"\n", optarg);
                goto out;
            }
            pol.max_age_ms = (int64_t)num * 1000;
            pol.check_chain_at_now = true;
            break;
        case 'd':
            pol.allow_debug = true;
            break;
        case 'p': {
            const char *eq = strchr(optarg, '=');
            char idx[8];
            unsigned char val[DCMS_ATTEST_PCR_MAX_LEN];
            if (!eq || (size_t)(eq - optarg) >= sizeof(idx)) {
                fprintf(stderr, "dcmsd attestation: --expect-pcr wants N=HEX\n");
                goto out;
            }
            snprintf(idx, sizeof(idx), "%.*s", (int)(eq - optarg), optarg);
            if (!parse_u64(idx, DCMS_ATTEST_MAX_PCRS - 1, &num) ||
                !attest_unhex(eq + 1, strlen(eq + 1), val, sizeof(val), &n) ||
                dcms_attest_policy_expect_pcr(&pol, (unsigned)num, val, n)) {
                fprintf(stderr,
                        "dcmsd attestation: bad --expect-pcr \"%s\" (index 0..31, 32/48/64 "
                        "bytes of hex)\n",
                        optarg);
                goto out;
            }
            if (dcms_attest_pcr_is_zero(val, n)) {
                fprintf(stderr,
                        "dcmsd attestation: --expect-pcr %u is all zeros: it pins nothing "
                        "(use --allow-debug for debug-mode documents)\n",
                        (unsigned)num);
                goto out;
            }
            break;
        }
        case 'n': {
            if (!attest_unhex(optarg, strlen(optarg), nonce, sizeof(nonce), &n)) {
                fprintf(stderr, "dcmsd attestation: bad --nonce (hex, at most 1024 bytes)\n");
                goto out;
            }
            pol.nonce = nonce;
            pol.nonce_len = n;
            break;
        }
        case 'h':
            usage(stdout);
            status = 0;
            goto out;
        default:
            usage(stderr);
            goto out;
        }
    }
    if (optind != argc - 1) {
        usage(stderr);
        goto out;
    }
    size_t n, len, root_len;
    if (attest_read_file(argv[optind], INPUT_MAX_BYTES, &raw, &n, &ei)) {
        fprintf(stderr, "dcmsd attestation: %s\n", ei.message);
        goto out;
    }
    if (load_document(raw, n, &decoded, &len)) {
        fprintf(stderr, "dcmsd attestation: out of memory\n");
        goto out;
    }
    if (root_path) {
        if (attest_read_file(root_path, INPUT_MAX_BYTES, &root, &root_len, &ei) ||
            dcms_attest_verifier_new((const char *)root, root_len, &v, &ei)) {
            fprintf(stderr, "dcmsd attestation: %s: %s\n", root_path, ei.message);
            goto out;
        }
    } else if (dcms_attest_verifier_new(dcms_aws_nitro_root_g1, dcms_aws_nitro_root_g1_len, &v,
                                        &ei)) {
        fprintf(stderr, "dcmsd attestation: %s\n", ei.message);
        goto out;
    }
    if (dcms_attest_verify(v, decoded ? decoded : raw, decoded ? len : n, &pol, &rep) ||
        !(j = dcms_attest_report_to_json(&rep))) {
        fprintf(stderr, "dcmsd attestation: verification failed internally\n");
        goto out;
    }
    if (json_dumpf(j, stdout, JSON_INDENT(2)) != 0 || fputc('\n', stdout) == EOF) {
        fprintf(stderr, "dcmsd attestation: cannot write the report\n");
        goto out;
    }
    status = rep.valid ? 0 : 1;
out:
    json_decref(j);
    dcms_attest_report_release(&rep);
    dcms_attest_verifier_free(v);
    free(raw);
    free(decoded);
    free(root);
    return status;
}

int dcms_attest_cli(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "verify") == 0)
        return verify_cmd(argc - 1, argv + 1);
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    usage(stderr);
    return 2;
}
