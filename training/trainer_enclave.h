/*
 * The enclave side of a training job (dcms-trainer): the frame loop of
 * trainer_frames.h on one file descriptor. Separate from main() so a unit
 * test can drive it over a socketpair.
 */
#ifndef DCMS_TRAINER_ENCLAVE_H
#define DCMS_TRAINER_ENCLAVE_H

#include <stddef.h>

#define DCMS_TRAINER_MAX_DATA_BYTES (512ul * 1024 * 1024) /* decrypted CSV, all datasets */

/*
 * Serves one job on fd. Returns 0 after the result was sent and the peer
 * closed the channel, 2 on a protocol error, 3 when the job failed (a
 * TRAIN_ERROR frame was sent). `identity` is the user_data of attestation
 * requests before the result (e.g. "dcms-trainer 0.1.0").
 */
int dcms_trainer_enclave_run(int fd, const char *identity);

#endif
