/*
 * The DP-SGD random source for dcms_trainer_run.random: a ChaCha20
 * keystream (libsodium crypto_stream_chacha20) under a 256-bit key drawn
 * from the OS by randombytes_buf (getrandom) at init. A build with
 * DCMS_TRAINER_TEST_SEED also offers a seeded ChaCha20 stream so tests can
 * repeat a run; release builds have no way to fix the seed.
 */
#ifndef DCMS_TRAINER_RANDOM_H
#define DCMS_TRAINER_RANDOM_H

#include <stddef.h>
#include <stdint.h>

struct dcms_trainer_random {
    int seeded;
    uint8_t key[32];
    uint64_t counter;
};

/* The CSPRNG source; 0 on success (sodium_init must have succeeded). */
int dcms_trainer_random_init(struct dcms_trainer_random *r);

/* Seeded source: -1 unless built with DCMS_TRAINER_TEST_SEED. */
int dcms_trainer_random_init_seeded(struct dcms_trainer_random *r, uint64_t seed);

/* dcms_trainer_random_fn: fills buf[len]. */
int dcms_trainer_random_bytes(void *ctx, uint8_t *buf, size_t len);

void dcms_trainer_random_release(struct dcms_trainer_random *r);

#endif
