/*
 * The attestation service's entry point outside the library API: the
 * `dcmsd attestation` offline tool (main.c). Its route handler is declared
 * with the others in src/http/handlers.h.
 */
#ifndef DCMS_ATTESTATION_H
#define DCMS_ATTESTATION_H

/* `dcmsd attestation verify FILE [options]`; returns the exit status. */
int dcms_attest_cli(int argc, char **argv);

/* `dcmsd image sign|measure ...` (signed workload images); returns the exit status. */
int dcms_attest_image_cli(int argc, char **argv);

#endif
