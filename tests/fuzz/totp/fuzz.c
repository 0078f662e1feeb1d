/*
 * Fuzz target: second-factor input from clients and sealed secrets read
 * back from the store. The first byte picks the part: a TOTP code checked
 * against a fixed secret (only six digits that match a step in the window
 * may pass, and the step reported must be in the window), or text opened
 * as a sealed secret (base64 of nonce || ciphertext) under a fixed key,
 * which must never open unless it was sealed with that key and identity.
 * The first input also checks that a genuine code and a genuine sealed
 * value pass, so the target cannot silently refuse everything.
 */
#include <stdint.h>
#include <stdlib.h>

#include "iam/mfa_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW_S 1800000015LL
#define AD "01a20a4c-8dc2-74d1-aeba-1f2726c8ba96"

static const unsigned char secret[IAM_TOTP_SECRET_BYTES] = "12345678901234567890";
static struct dcms_iam iam;
static unsigned char kek[32];
static bool ready;

static void init(void)
{
    if (sodium_init() < 0)
        abort();
    memset(kek, 7, sizeof(kek));
    iam.kek = kek;
    char code[8];
    uint64_t step = 0;
    if (iam_totp_generate(secret, sizeof(secret), NOW_S, 30, 6, IAM_TOTP_SHA1, code) ||
        iam_totp_match(secret, sizeof(secret), NOW_S, code, &step) || step != NOW_S / 30)
        abort(); /* a genuine code must pass */
    char *sealed = iam_seal(&iam, secret, sizeof(secret), AD);
    unsigned char out[64];
    size_t n = 0;
    if (!sealed || iam_unseal(&iam, sealed, AD, out, sizeof(out), &n) || n != sizeof(secret))
        abort(); /* a genuine sealed value must open */
    free(sealed);
    ready = true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ready)
        init();
    if (size < 1 || size > 4096)
        return 0;
    char *s = malloc(size);
    if (!s)
        return 0;
    memcpy(s, data + 1, size - 1);
    s[size - 1] = '\0';
    if (data[0] & 1) {
        uint64_t step = 0;
        if (iam_totp_match(secret, sizeof(secret), NOW_S, s, &step) == DCMS_OK) {
            if (strlen(s) != 6 || step + 1 < NOW_S / 30 || step > NOW_S / 30 + 1)
                abort();
            char want[8];
            if (iam_totp_generate(secret, sizeof(secret), (int64_t)step * 30, 30, 6, IAM_TOTP_SHA1,
                                  want) ||
                strcmp(want, s) != 0)
                abort();
        }
    } else {
        unsigned char out[64];
        size_t n = 0;
        /* Random text opening under our key would be a forgery. */
        if (iam_unseal(&iam, s, AD, out, sizeof(out), &n) == DCMS_OK)
            abort();
    }
    free(s);
    return 0;
}
