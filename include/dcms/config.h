/*
 * dcmsd's configuration: defaults, then an optional KEY=VALUE file, then
 * environment variables (which win). The variables are listed in
 * src/core/config.def and documented in docs/configuration.md.
 */
#ifndef DCMS_CONFIG_H
#define DCMS_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "dcms/err.h"
#include "dcms/log.h"

#define DCMS_CONFIG_STR_MAX 1024

struct dcms_config {
#define DCMS_CONFIG_VAR_STR(field) char field[DCMS_CONFIG_STR_MAX];
#define DCMS_CONFIG_VAR_UINT(field) unsigned long field;
#define DCMS_CONFIG_VAR_BOOL(field) bool field;
#define DCMS_CONFIG_VAR_LEVEL(field) enum dcms_log_level field;
#define DCMS_CONFIG_VAR(name, field, type, def, doc) DCMS_CONFIG_VAR_##type(field)
#include "core/config.def"
#undef DCMS_CONFIG_VAR
#undef DCMS_CONFIG_VAR_STR
#undef DCMS_CONFIG_VAR_UINT
#undef DCMS_CONFIG_VAR_BOOL
#undef DCMS_CONFIG_VAR_LEVEL
    /* Derived by dcms_config_load() from `listen`. */
    char listen_host[64];
    uint16_t listen_port;
};

/*
 * Fills `cfg` from defaults, then `path` (NULL: no file), then the
 * environment, and validates the result. DCMS_ERR_CONFIG with a message
 * naming the variable on any bad value or unknown key in the file.
 */
enum dcms_err dcms_config_load(struct dcms_config *cfg, const char *path,
                               struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* Calls fn for each variable: name, default value and description. */
void dcms_config_each(void (*fn)(void *ctx, const char *name, const char *def, const char *doc),
                      void *ctx);

#endif
