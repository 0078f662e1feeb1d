/*
 * `dcmsd image sign|measure`: signs a workload image for the local enclave
 * backend with the operator's P-384 key and certificate (the detached
 * `<image>.sig` described in include/dcms/attest.h), and prints the PCR0 and
 * PCR8 an enclave running it will report. Exit status 0 on success, 1 when
 * an image's signature does not verify, 2 on a usage or I/O error.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <sodium.h>
#include <unistd.h>

#include "attestation/attest_int.h"
#include "attestation/attestation.h"

#define KEY_MAX_BYTES (64u << 10)

static void usage(FILE *f)
{
    fprintf(f, "usage: dcmsd image sign --key KEY.pem --cert CERT.pem [--out SIG] IMAGE\n"
               "       dcmsd image measure [--sig SIG] IMAGE\n\n"
               "sign     writes IMAGE.sig (or SIG): the signing certificate and an ES384\n"
               "         signature over the image's PCR0, as an EIF's signature section.\n"
               "         KEY is an unencrypted EC P-384 private key (PEM), CERT its X.509\n"
               "         certificate (PEM or DER).\n"
               "measure  verifies IMAGE.sig (or SIG) when there is one.\n"
               "Both print the measurements an enclave running IMAGE reports:\n"
               "  PCR0 <SHA-384 of the image file>\n"
               "  PCR8 <SHA-384(48 zero bytes || SHA-384(certificate DER))>, zeros if unsigned\n"
               "PCR8 is the value to list in security_policy.allowed_signers.\n"
               "Exit status: 0 ok, 1 the signature does not verify, 2 usage or I/O error.\n");
}

static void print_pcrs(const unsigned char pcr0[DCMS_ATTEST_SHA384_LEN],
                       const unsigned char pcr8[DCMS_ATTEST_SHA384_LEN])
{
    char hex[2 * DCMS_ATTEST_SHA384_LEN + 1];
    dcms_hex_encode(hex, pcr0, DCMS_ATTEST_SHA384_LEN);
    printf("PCR0 %s\n", hex);
    dcms_hex_encode(hex, pcr8, DCMS_ATTEST_SHA384_LEN);
    printf("PCR8 %s\n", hex);
}

/* Writes `len` bytes to `path` through a temporary file and a rename (0644). */
static bool write_atomic(const char *path, const unsigned char *p, size_t len)
{
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
        return false;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return false;
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, p + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    bool ok = off == len && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (ok && rename(tmp, path) == 0)
        return true;
    unlink(tmp);
    return false;
}

static int sign_cmd(int argc, char **argv)
{
    static const struct option opts[] = {{"key", required_argument, NULL, 'k'},
                                         {"cert", required_argument, NULL, 'c'},
                                         {"out", required_argument, NULL, 'o'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *key_path = NULL, *cert_path = NULL, *out_path = NULL;
    int status = 2, ch;
    unsigned char *key = NULL, *cert = NULL, *sig = NULL;
    size_t key_len = 0, cert_len = 0, sig_len = 0;
    struct dcms_attest_image_signer signer = {0};
    char sig_path[4096];
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (ch == 'k')
            key_path = optarg;
        else if (ch == 'c')
            cert_path = optarg;
        else if (ch == 'o')
            out_path = optarg;
        else {
            usage(ch == 'h' ? stdout : stderr);
            return ch == 'h' ? 0 : 2;
        }
    }
    if (!key_path || !cert_path || optind != argc - 1) {
        usage(stderr);
        return 2;
    }
    const char *image = argv[optind];
    if ((size_t)snprintf(sig_path, sizeof(sig_path), out_path ? "%s" : "%s.sig",
                         out_path ? out_path : image) >= sizeof(sig_path)) {
        fprintf(stderr, "dcmsd image: path too long\n");
        return 2;
    }
    unsigned char pcr0[DCMS_ATTEST_SHA384_LEN];
    if (dcms_attest_measure_file(image, pcr0, &ei) ||
        attest_read_file(key_path, KEY_MAX_BYTES, &key, &key_len, &ei) ||
        attest_read_file(cert_path, DCMS_IMAGE_SIG_MAX_BYTES, &cert, &cert_len, &ei)) {
        fprintf(stderr, "dcmsd image: %s\n", ei.message);
        goto out;
    }
    if (dcms_attest_image_sign(pcr0, key, key_len, cert, cert_len, &sig, &sig_len, &ei)) {
        fprintf(stderr, "dcmsd image: %s\n", ei.message);
        goto out;
    }
    /* Checked the way the backend will check it before anything is written. */
    if (dcms_attest_image_verify(pcr0, sig, sig_len, &signer, &ei)) {
        fprintf(stderr, "dcmsd image: the new signature does not verify: %s\n", ei.message);
        goto out;
    }
    if (!write_atomic(sig_path, sig, sig_len)) {
        fprintf(stderr, "dcmsd image: cannot write %s: %s\n", sig_path, strerror(errno));
        goto out;
    }
    fprintf(stderr, "dcmsd image: wrote %s (signer %s)\n", sig_path, signer.subject);
    print_pcrs(pcr0, signer.pcr8);
    status = 0;
out:
    if (key) {
        sodium_memzero(key, key_len);
        free(key);
    }
    free(cert);
    free(sig);
    dcms_attest_image_signer_release(&signer);
    return status;
}

static int measure_cmd(int argc, char **argv)
{
    static const struct option opts[] = {{"sig", required_argument, NULL, 's'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *sig_opt = NULL;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (ch == 's') {
            sig_opt = optarg;
        } else {
            usage(ch == 'h' ? stdout : stderr);
            return ch == 'h' ? 0 : 2;
        }
    }
    if (optind != argc - 1) {
        usage(stderr);
        return 2;
    }
    const char *image = argv[optind];
    char sig_path[4096];
    if ((size_t)snprintf(sig_path, sizeof(sig_path), sig_opt ? "%s" : "%s.sig",
                         sig_opt ? sig_opt : image) >= sizeof(sig_path)) {
        fprintf(stderr, "dcmsd image: path too long\n");
        return 2;
    }
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    unsigned char pcr0[DCMS_ATTEST_SHA384_LEN], zero[DCMS_ATTEST_SHA384_LEN] = {0};
    if (dcms_attest_measure_file(image, pcr0, &ei)) {
        fprintf(stderr, "dcmsd image: %s\n", ei.message);
        return 2;
    }
    if (!sig_opt && access(sig_path, F_OK) != 0 && errno == ENOENT) {
        fprintf(stderr, "dcmsd image: %s is not signed (no %s)\n", image, sig_path);
        print_pcrs(pcr0, zero);
        return 0;
    }
    unsigned char *sig = NULL;
    size_t sig_len = 0;
    if (attest_read_file(sig_path, DCMS_IMAGE_SIG_MAX_BYTES, &sig, &sig_len, &ei)) {
        fprintf(stderr, "dcmsd image: %s\n", ei.message);
        return 2;
    }
    struct dcms_attest_image_signer signer;
    int status = 1;
    if (dcms_attest_image_verify(pcr0, sig, sig_len, &signer, &ei)) {
        fprintf(stderr, "dcmsd image: %s does not verify: %s\n", sig_path, ei.message);
    } else {
        fprintf(stderr, "dcmsd image: %s verifies (signer %s)\n", sig_path, signer.subject);
        print_pcrs(pcr0, signer.pcr8);
        status = 0;
    }
    dcms_attest_image_signer_release(&signer);
    free(sig);
    return status;
}

int dcms_attest_image_cli(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "sign") == 0)
        return sign_cmd(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "measure") == 0)
        return measure_cmd(argc - 1, argv + 1);
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    usage(stderr);
    return 2;
}
