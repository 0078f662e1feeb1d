/*
 * One error type for the whole program (src/core/err.def), and the
 * per-request error record that carries details to the client.
 *
 * Functions that can fail return enum dcms_err; results go out through
 * out-parameters. The client sees the slug, the message and the details; the
 * log may see more. Messages are lowercase, without a trailing period.
 */
#ifndef DCMS_ERR_H
#define DCMS_ERR_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum dcms_err {
#define DCMS_ERR_ROW(name, slug, status, msg) name,
#include "core/err.def"
#undef DCMS_ERR_ROW
    DCMS_ERR__COUNT
};

#define DCMS_MUST_CHECK __attribute__((warn_unused_result))
#define DCMS_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* Stable machine-readable slug ("not_found"); never NULL. */
const char *dcms_err_slug(enum dcms_err e);
/* HTTP status for the error (500 for unknown values). */
unsigned dcms_err_http(enum dcms_err e);
/* Default human message for the error. */
const char *dcms_err_str(enum dcms_err e);

struct dcms_arena;

/* One field-level problem: field is a JSON path ("terms.retention.days"). */
struct dcms_err_detail {
    const char *field;
    const char *problem;
};

#define DCMS_ERR_MAX_DETAILS 64

/*
 * The per-request error record. Caller-owned (usually on the stack or inside
 * the request); details are allocated from `arena` when one is set and are
 * dropped otherwise. Not thread-safe: one record per request.
 */
struct dcms_errinfo {
    enum dcms_err code;
    char message[256];
    struct dcms_arena *arena;
    struct dcms_err_detail *details;
    size_t ndetails;
};

/* Starts an empty record; details, if any, will live in `arena` (may be NULL). */
void dcms_errinfo_init(struct dcms_errinfo *ei, struct dcms_arena *arena);

/*
 * Records `code` with a client-visible message (printf format; NULL keeps the
 * default message) and returns `code`, so callers can write
 * `return dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "contract %s not found", id);`.
 * `ei` may be NULL.
 */
enum dcms_err dcms_err_set(struct dcms_errinfo *ei, enum dcms_err code, const char *fmt, ...)
    DCMS_PRINTF(3, 4);

/*
 * Adds a validation problem for `field` and marks the record
 * DCMS_ERR_VALIDATION (unless another error is already set). Returns
 * DCMS_ERR_VALIDATION. Keeps at most DCMS_ERR_MAX_DETAILS details.
 */
enum dcms_err dcms_err_field(struct dcms_errinfo *ei, const char *field, const char *fmt, ...)
    DCMS_PRINTF(3, 4);

/* Every dcms file includes this header, so the banned list applies everywhere. */
#include "dcms/banned.h"

#endif
