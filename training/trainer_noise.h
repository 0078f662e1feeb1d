/*
 * Gaussian noise for DP-SGD from a stream of uniform 64-bit words (a CSPRNG).
 * Box-Muller on 53-bit uniforms: u1 in (0,1] (never 0, so the log is finite),
 * u2 in [0,1). Floating-point caveats are in training/README.md ("Noise").
 */
#ifndef DCMS_TRAINER_NOISE_H
#define DCMS_TRAINER_NOISE_H

#include <stdint.h>

typedef uint64_t (*dcms_trainer_u64_fn)(void *ctx);

/* One standard normal deviate. */
double dcms_trainer_gauss(dcms_trainer_u64_fn next, void *ctx);

/* Two independent standard normal deviates from one pair of uniforms (cos and sin). */
void dcms_trainer_gauss2(dcms_trainer_u64_fn next, void *ctx, double out[2]);

#endif
