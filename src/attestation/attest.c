/*
 * The attestation context dcmsd keeps in struct dcms_app: the AWS verifier
 * (the embedded Nitro root G1, or a PEM file from DCMS_ATTEST_AWS_ROOT), the
 * local attestation module and a verifier for its dev root.
 */
#include <errno.h>

#include "attestation/attest_int.h"

#define ROOT_PEM_MAX_BYTES (64u << 10)

enum dcms_err attest_read_file(const char *path, size_t max, unsigned char **out, size_t *len_out,
                               struct dcms_errinfo *ei)
{
    *out = NULL;
    *len_out = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return dcms_err_set(ei, DCMS_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    enum dcms_err e = DCMS_OK;
    unsigned char *buf = malloc(max + 1);
    size_t n = buf ? fread(buf, 1, max + 1, f) : 0;
    if (!buf) {
        e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    } else if (ferror(f)) {
        e = dcms_err_set(ei, DCMS_ERR_IO, "cannot read %s", path);
    } else if (n > max) {
        e = dcms_err_set(ei, DCMS_ERR_TOO_LARGE, "%s is larger than %zu bytes", path, max);
    } else {
        buf[n] = '\0';
        *out = buf;
        *len_out = n;
        buf = NULL;
    }
    free(buf);
    fclose(f);
    return e;
}

void dcms_attest_ctx_free(struct dcms_attest_ctx *c)
{
    if (!c)
        return;
    dcms_attest_verifier_free(c->aws);
    dcms_attest_verifier_free(c->local);
    dcms_attest_local_free(c->module);
    free(c);
}

enum dcms_err dcms_attest_ctx_new(const char *aws_root_path, const char *local_dir,
                                  struct dcms_attest_ctx **out, struct dcms_errinfo *ei)
{
    *out = NULL;
    struct dcms_attest_ctx *c = calloc(1, sizeof(*c));
    if (!c)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    unsigned char *pem = NULL;
    size_t pem_len = 0;
    enum dcms_err e;
    if (aws_root_path && *aws_root_path) {
        if ((e = attest_read_file(aws_root_path, ROOT_PEM_MAX_BYTES, &pem, &pem_len, ei)))
            goto out;
        e = dcms_attest_verifier_new((const char *)pem, pem_len, &c->aws, ei);
    } else {
        e = dcms_attest_verifier_new(dcms_aws_nitro_root_g1, dcms_aws_nitro_root_g1_len, &c->aws,
                                     ei);
    }
    if (e || !local_dir)
        goto out;
    if ((e = dcms_attest_local_open(local_dir, &c->module, ei)))
        goto out;
    size_t n;
    const char *root = dcms_attest_local_root_pem(c->module, &n);
    e = dcms_attest_verifier_new(root, n, &c->local, ei);
out:
    free(pem);
    if (e)
        dcms_attest_ctx_free(c);
    else
        *out = c;
    return e;
}
