/*
 * The encryption levels a contract can demand, as concrete rules an
 * enclave must meet. Kept as one table so the contract docs, the
 * compatibility check and key release cannot disagree.
 */
#include "dcms/security_level.h"

#include <string.h>

static const struct dcms_security_rules rules[] = {
    [DCMS_SECURITY_STANDARD] =
        {
            .name = "standard",
            .data_cipher = "AES-256-GCM",
            .key_wrap = "X25519 sealed box to the attested enclave key",
            .min_tls = 12,
            .encryption_required = true,
            .debug_allowed = false,
            .signers_required = false,
            .measured_boot = false,
            .egress_allowed = true,
            .attest_max_age_s = 24 * 3600,
            .dedicated = false,
        },
    [DCMS_SECURITY_HIGH] =
        {
            .name = "high",
            .data_cipher = "AES-256-GCM",
            .key_wrap = "X25519 sealed box to the attested enclave key",
            .min_tls = 13,
            .encryption_required = true,
            .debug_allowed = false,
            .signers_required = true,
            .measured_boot = true,
            .egress_allowed = true,
            .attest_max_age_s = 3600,
            .dedicated = false,
        },
    [DCMS_SECURITY_MILITARY] =
        {
            .name = "military",
            .data_cipher = "AES-256-GCM",
            .key_wrap = "X25519 sealed box to the attested enclave key",
            .min_tls = 13,
            .encryption_required = true,
            .debug_allowed = false,
            .signers_required = true,
            .measured_boot = true,
            .egress_allowed = false,
            .attest_max_age_s = 300,
            .dedicated = true,
        },
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
