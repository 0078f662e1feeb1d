/* Filesystem helpers shared by the modules that keep state in the data directory. */
#ifndef DCMS_FS_H
#define DCMS_FS_H

#include "dcms/err.h"

/*
 * Creates `dir` and any missing parents with mode 0700 (existing ones are
 * left as they are). DCMS_ERR_CONFIG naming the directory on failure.
 */
enum dcms_err dcms_fs_mkdirs(const char *dir, struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* Creates the directory that will hold `file` (everything before its last '/'). */
enum dcms_err dcms_fs_mkdirs_for(const char *file, struct dcms_errinfo *ei) DCMS_MUST_CHECK;

#endif
