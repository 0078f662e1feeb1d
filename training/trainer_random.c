/* DP-SGD randomness from libsodium (trainer_random.h). */
#include <string.h>

#include <sodium.h>

#include "trainer_random.h"

int dcms_trainer_random_init(struct dcms_trainer_random *r)
{
    memset(r, 0, sizeof(*r));
    if (sodium_init() < 0)
        return -1;
    /* A fresh 256-bit key from the OS (getrandom through libsodium). */
    randombytes_buf(r->key, sizeof(r->key));
    return 0;
}

int dcms_trainer_random_init_seeded(struct dcms_trainer_random *r, uint64_t seed)
{
#ifdef DCMS_TRAINER_TEST_SEED
    memset(r, 0, sizeof(*r));
    if (sodium_init() < 0)
        return -1;
    uint8_t s[8];
    for (int i = 0; i < 8; i++)
        s[i] = (uint8_t)(seed >> (8 * i));
    crypto_generichash(r->key, sizeof(r->key), s, sizeof(s), NULL, 0);
    r->seeded = 1;
    return 0;
#else
    (void)r;
    (void)seed;
    return -1;
#endif
}

int dcms_trainer_random_bytes(void *ctx, uint8_t *buf, size_t len)
{
    struct dcms_trainer_random *r = ctx;
    /*
     * ChaCha20 keystream under the key, a fresh nonce per call (2^64 calls
     * before one would repeat). Debian's libsodium answers randombytes_buf
     * with one getrandom call per 256 bytes, which made DP-SGD spend most
     * of its time in the kernel; a key from getrandom expanded by ChaCha20
     * is what libsodium's own internal generator does.
     */
    uint8_t nonce[crypto_stream_chacha20_NONCEBYTES] = {0};
    for (int i = 0; i < 8; i++)
        nonce[i] = (uint8_t)(r->counter >> (8 * i));
    r->counter++;
    return crypto_stream_chacha20(buf, len, nonce, r->key);
}

void dcms_trainer_random_release(struct dcms_trainer_random *r)
{
    sodium_memzero(r, sizeof(*r));
}
