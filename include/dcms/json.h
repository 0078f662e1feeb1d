/*
 * JSON in and out (jansson), with the errors dcms reports to clients.
 *
 * Parsing always rejects duplicate object keys and anything after the value;
 * a syntax error becomes DCMS_ERR_MALFORMED_JSON naming line, column and
 * byte position. Returned json_t values are owned by the caller.
 */
#ifndef DCMS_JSON_H
#define DCMS_JSON_H

#include <stdbool.h>

#include <jansson.h>

#include "dcms/err.h"
#include "dcms/str.h"

/*
 * Parses `text` (which need not be NUL-terminated). `flags` are extra
 * jansson decode flags (e.g. JSON_DECODE_INT_AS_REAL); JSON_REJECT_DUPLICATES
 * is always on. Nesting deeper than jansson's limit is a syntax error.
 */
enum dcms_err dcms_json_parse(struct dcms_str text, size_t flags, json_t **out,
                              struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/* Compact UTF-8 encoding (malloc'd, NUL-terminated) or NULL on OOM. */
char *dcms_json_dump(const json_t *v, size_t *len_out);

/*
 * The one "only these members" check: records a validation problem "is not a
 * known field" at `prefix` + member name (the name cut at 200 bytes) for every
 * member of `obj` that is not in `allowed` (a NULL-terminated list). `prefix`
 * is the JSON path of `obj` with its trailing dot ("terms.retention."), or ""
 * for the top level. Returns true when at least one member was refused. The
 * caller checks that `obj` is an object. Thread-safe; allocates from ei->arena.
 */
bool dcms_json_only_members(const json_t *obj, const char *prefix, const char *const *allowed,
                            struct dcms_errinfo *ei);

/* Deferred-cleanup adapter: json_decref for dcms_arena_defer(). */
void dcms_json_decref_cb(void *v);

#endif
