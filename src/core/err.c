/*
 * The error table (err.def) turned into lookups, and the per-request error
 * record used to report problems, with field paths, to API clients.
 */
#include <stdio.h>
#include <string.h>

#include "dcms/arena.h"
#include "dcms/err.h"

static const struct {
    const char *slug;
    unsigned status;
    const char *msg;
} rows[] = {
#define DCMS_ERR_ROW(name, slug, status, msg) {slug, status, msg},
#include "core/err.def"
#undef DCMS_ERR_ROW
};

const char *dcms_err_slug(enum dcms_err e)
{
    return (unsigned)e < DCMS_ERR__COUNT ? rows[e].slug : "internal_error";
}

unsigned dcms_err_http(enum dcms_err e)
{
    return (unsigned)e < DCMS_ERR__COUNT ? rows[e].status : 500;
}

const char *dcms_err_str(enum dcms_err e)
{
    return (unsigned)e < DCMS_ERR__COUNT ? rows[e].msg : "internal error";
}

void dcms_errinfo_init(struct dcms_errinfo *ei, struct dcms_arena *arena)
{
    memset(ei, 0, sizeof(*ei));
    ei->arena = arena;
}

enum dcms_err dcms_err_set(struct dcms_errinfo *ei, enum dcms_err code, const char *fmt, ...)
{
    if (!ei)
        return code;
    ei->code = code;
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ei->message, sizeof(ei->message), fmt, ap);
        va_end(ap);
    } else {
        snprintf(ei->message, sizeof(ei->message), "%s", dcms_err_str(code));
    }
    return code;
}

enum dcms_err dcms_err_field(struct dcms_errinfo *ei, const char *field, const char *fmt, ...)
{
    if (!ei)
        return DCMS_ERR_VALIDATION;
    if (ei->code == DCMS_OK)
        dcms_err_set(ei, DCMS_ERR_VALIDATION, NULL);
    if (!ei->arena || ei->ndetails >= DCMS_ERR_MAX_DETAILS)
        return DCMS_ERR_VALIDATION;
    if (!ei->details) {
        ei->details = dcms_arena_alloc(ei->arena, DCMS_ERR_MAX_DETAILS * sizeof(*ei->details));
        if (!ei->details)
            return DCMS_ERR_VALIDATION;
    }
    char problem[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(problem, sizeof(problem), fmt, ap);
    va_end(ap);
    struct dcms_err_detail *d = &ei->details[ei->ndetails];
    d->field = dcms_arena_strdup(ei->arena, field);
    d->problem = dcms_arena_strdup(ei->arena, problem);
    if (d->field && d->problem)
        ei->ndetails++;
    return DCMS_ERR_VALIDATION;
}
