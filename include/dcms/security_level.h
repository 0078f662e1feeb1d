/*
 * What a contract's encryption level demands of the enclave that serves it.
 *
 * A contract's terms name a level (terms.security.encryption_level:
 * "standard", "high" or "military"); the enclave service checks an
 * enclave against the level's rules before it may serve the contract
 * (GET /api/v1/enclaves/{id}/compatibility) and the training service will
 * refuse to release data otherwise. One table, read by both, documented
 * in docs/contracts.md.
 */
#ifndef DCMS_SECURITY_LEVEL_H
#define DCMS_SECURITY_LEVEL_H

#include <stdbool.h>
#include <stdint.h>

enum dcms_security_level {
    DCMS_SECURITY_STANDARD,
    DCMS_SECURITY_HIGH,
    DCMS_SECURITY_MILITARY,
};

struct dcms_security_rules {
    const char *name;          /* "standard", "high", "military" */
    const char *data_cipher;   /* data encryption at rest and in the channel */
    const char *key_wrap;      /* how the data key is sealed to the enclave */
    unsigned min_tls;          /* 12 = TLS 1.2, 13 = TLS 1.3: the enclave's network policy floor */
    bool encryption_required;  /* the enclave's network policy must require encryption */
    bool debug_allowed;        /* a debug-mode enclave (zero PCRs) may serve it */
    bool signers_required;     /* the enclave must pin allowed signers (PCR8) */
    bool measured_boot;        /* secure boot and measured boot required */
    bool egress_allowed;       /* any egress rule at all */
    uint32_t attest_max_age_s; /* the enclave's last verified attestation must be this fresh */
    bool dedicated;            /* the enclave must be bound to this one contract */
};

/* The rules of a level (never NULL for a valid enum value). */
const struct dcms_security_rules *dcms_security_rules(enum dcms_security_level level);

/* Parses "standard" / "high" / "military"; false for anything else. */
bool dcms_security_level_parse(const char *name, enum dcms_security_level *out);

#endif
