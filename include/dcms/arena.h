/*
 * A bump allocator: one per request (or per job), freed all at once.
 *
 * Allocations come from chunks; nothing is freed individually. The arena has
 * a hard cap on the bytes it will hand out, so a hostile request cannot grow
 * it without bound. Foreign objects (json_t, PGresult, ...) are tied to the
 * arena with dcms_arena_defer() and released when the arena is freed, in
 * reverse order of registration. Secrets never live in an arena.
 * Not thread-safe: an arena belongs to one thread at a time.
 */
#ifndef DCMS_ARENA_H
#define DCMS_ARENA_H

#include <stdarg.h>
#include <stddef.h>

#include "dcms/err.h"

struct dcms_arena;

/* A new arena that hands out at most `max_bytes` (0: 64 MiB). NULL on OOM. */
struct dcms_arena *dcms_arena_new(size_t max_bytes);

/* Runs the deferred cleanups, then frees every chunk. NULL is a no-op. */
void dcms_arena_free(struct dcms_arena *a);

/* `n` bytes aligned to 16, or NULL when memory or the cap runs out. */
void *dcms_arena_alloc(struct dcms_arena *a, size_t n);
/* Like dcms_arena_alloc() for `count` zeroed elements of `size` (overflow-checked). */
void *dcms_arena_calloc(struct dcms_arena *a, size_t count, size_t size);
/* NUL-terminated copies; NULL on failure (or when `s` is NULL). */
char *dcms_arena_strdup(struct dcms_arena *a, const char *s);
char *dcms_arena_strndup(struct dcms_arena *a, const char *s, size_t n);
char *dcms_arena_sprintf(struct dcms_arena *a, const char *fmt, ...) DCMS_PRINTF(2, 3);

/* Bytes handed out so far. */
size_t dcms_arena_used(const struct dcms_arena *a);

/*
 * Calls fn(p) when the arena is freed. On failure (DCMS_ERR_NOMEM) fn(p) is
 * called at once, so the caller never leaks `p`.
 */
enum dcms_err dcms_arena_defer(struct dcms_arena *a, void (*fn)(void *), void *p) DCMS_MUST_CHECK;

#endif
