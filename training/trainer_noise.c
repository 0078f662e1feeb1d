/* Standard normal deviates by Box-Muller (trainer_noise.h). */
#include <math.h>

#include "trainer_noise.h"

double dcms_trainer_gauss(dcms_trainer_u64_fn next, void *ctx)
{
    /* (k + 1) / 2^53 for k in [0, 2^53): exactly representable, in (0, 1]. */
    double u1 = (double)((next(ctx) >> 11) + 1) * 0x1.0p-53;
    double u2 = (double)(next(ctx) >> 11) * 0x1.0p-53;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

void dcms_trainer_gauss2(dcms_trainer_u64_fn next, void *ctx, double out[2])
{
    double u1 = (double)((next(ctx) >> 11) + 1) * 0x1.0p-53;
    double u2 = (double)(next(ctx) >> 11) * 0x1.0p-53;
    double r = sqrt(-2.0 * log(u1)), a = 2.0 * M_PI * u2;
    out[0] = r * cos(a);
    out[1] = r * sin(a);
}
