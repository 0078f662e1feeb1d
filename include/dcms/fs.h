/* Filesystem helpers shared by the modules that keep state in the data directory. */
#ifndef DCMS_FS_H
#define DCMS_FS_H

#include <stdbool.h>

#include "dcms/err.h"

/*
 * Creates `dir` and any missing parents with mode 0700 (existing ones are
 * left as they are). DCMS_ERR_CONFIG naming the directory on failure.
 */
enum dcms_err dcms_fs_mkdirs(const char *dir, struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* Creates the directory that will hold `file` (everything before its last '/'). */
enum dcms_err dcms_fs_mkdirs_for(const char *file, struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * Whether `path` is a workload image: a regular file (not a link) that is
 * an executable ELF program (ET_EXEC or ET_DYN with an execute bit) or,
 * when `eif`, an AWS Nitro Enclave Image File (magic ".eif"). Anything
 * else found in an images directory (build leftovers, scripts) is not.
 */
bool dcms_fs_is_workload_image(const char *path, bool eif);

#endif
