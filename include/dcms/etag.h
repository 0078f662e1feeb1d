/*
 * Entity tags and If-Match, one meaning for every resource.
 *
 * A resource's ETag is its version number in double quotes ("3"). Services
 * take the client's If-Match value as it came and check it against the row
 * they read inside their transaction, so a lost update is refused in the same
 * place whatever the resource.
 *
 * `*` means "any current version" (RFC 9110 §13.1.1): the resource exists
 * when the check runs, so `If-Match: *` always passes. It lets a client say
 * deliberately that it overwrites whatever is there; a client that wants
 * protection from lost updates sends the ETag it read. Routes that require a
 * precondition refuse a missing header (428) before calling this.
 */
#ifndef DCMS_ETAG_H
#define DCMS_ETAG_H

#include "dcms/err.h"

/*
 * DCMS_OK when `if_match` is NULL (no precondition), `*`, or a list of entity
 * tags (comma-separated, weak tags never match, as RFC 9110 says for
 * If-Match) that contains `"<version>"`; otherwise DCMS_ERR_PRECONDITION_FAILED
 * with a message naming the current version. Thread-safe.
 */
enum dcms_err dcms_etag_check(const char *if_match, const char *version,
                              struct dcms_errinfo *ei) DCMS_MUST_CHECK;

#endif
