/*
 * Fuzz target for RFC 8785 canonicalization (src/core/jcs.c).
 *
 * Any JSON that parses must canonicalize, and canonicalization must be a
 * fixed point: parsing the canonical text and canonicalizing it again gives
 * the same bytes, and the SHA-256 of the value is the SHA-256 of those bytes.
 * Anything else aborts.
 */
#include <stdint.h>
#include <stdlib.h>

#include <openssl/evp.h>

#include "dcms/jcs.h"
#include "dcms/json.h"

#define FUZZ_MAX_BYTES (1u << 22)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Canonical form of `v` into `out`; aborts unless it succeeds or hits the cap. */
static int canonicalize(const json_t *v, struct dcms_buf *out)
{
    enum dcms_err e = dcms_jcs_canonicalize(v, out, NULL);
    if (e == DCMS_ERR_TOO_LARGE)
        return -1;
    if (e)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *v1 = NULL, *v2 = NULL;
    struct dcms_buf c1, c2;
    dcms_buf_init(&c1, FUZZ_MAX_BYTES);
    dcms_buf_init(&c2, FUZZ_MAX_BYTES);

    struct dcms_str text = {(const char *)data, size};
    if (dcms_json_parse(text, JSON_DECODE_INT_AS_REAL, &v1, NULL))
        goto out;
    if (canonicalize(v1, &c1))
        goto out;

    /* The canonical text is JSON that canonicalizes to itself. */
    struct dcms_str canon = {c1.ptr, c1.len};
    if (dcms_json_parse(canon, JSON_DECODE_INT_AS_REAL, &v2, NULL))
        abort();
    if (canonicalize(v2, &c2))
        abort();
    if (c1.len != c2.len || memcmp(c1.ptr, c2.ptr, c1.len) != 0)
        abort();

    unsigned char d1[32], d2[32];
    if (dcms_jcs_sha256(v1, d1, NULL))
        abort();
    if (EVP_Digest(c1.ptr, c1.len, d2, NULL, EVP_sha256(), NULL) != 1 || memcmp(d1, d2, 32) != 0)
        abort();

out:
    json_decref(v1);
    json_decref(v2);
    dcms_buf_release(&c1);
    dcms_buf_release(&c2);
    return 0;
}
