/*
 * The encryption levels a contract can demand, as concrete rules an
 * enclave must meet. Kept as one table so the contract docs, the
 * compatibility check and key release cannot disagree.
 */
#include "dcms/security_level.h"

#include <string.h>

/*
 * What every level shares: data sealed with AES-256-GCM under a key
 * wrapped to the attested enclave, encryption always on, debug never.
 * The levels differ only in the columns of LEVEL().
 */
#define LEVEL(level_name, tls, signers, measured, egress, max_age_s, dedicated_host)               \
    {                                                                                              \
        .name = level_name, .data_cipher = "AES-256-GCM",                                          \
        .key_wrap = "X25519 sealed box to the attested enclave key", .min_tls = tls,               \
        .encryption_required = true, .debug_allowed = false, .signers_required = signers,          \
        .measured_boot = measured, .egress_allowed = egress, .attest_max_age_s = max_age_s,        \
        .dedicated = dedicated_host                                                                \
    }

/* Columns: name, minimum TLS (12 = 1.2), signers required, measured boot,
 * egress allowed, maximum attestation age (s), dedicated host. */
static const struct dcms_security_rules rules[] = {
    [DCMS_SECURITY_STANDARD] = LEVEL("standard", 12, false, false, true, 24 * 3600, false),
    [DCMS_SECURITY_HIGH] = LEVEL("high", 13, true, true, true, 3600, false),
    [DCMS_SECURITY_MILITARY] = LEVEL("military", 13, true, true, false, 300, true),
};

const struct dcms_security_rules *dcms_security_rules(enum dcms_security_level level)
{
    if ((unsigned)level >= sizeof(rules) / sizeof(rules[0]))
        return NULL;
    return &rules[level];
}

bool dcms_security_level_parse(const char *name, enum dcms_security_level *out)
{
    if (!name)
        return false;
    for (unsigned i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
        if (strcmp(rules[i].name, name) == 0) {
            *out = (enum dcms_security_level)i;
            return true;
        }
    }
    return false;
}
