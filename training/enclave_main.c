/*
 * dcms-trainer: the program the enclave runs to train (static, like
 * dcms-workload). Serves one job on fd 3 (trainer_enclave.h); exit 0 after
 * the result, 2 on a protocol error, 3 when the job failed.
 */
#include <stdio.h>

#include "trainer_enclave.h"

#define CHAN_FD 3

int main(void)
{
    printf("dcms-trainer: ready\n");
    fflush(stdout);
    return dcms_trainer_enclave_run(CHAN_FD, "dcms-trainer " DCMS_TRAINER_VERSION);
}
