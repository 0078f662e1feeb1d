/*
 * String views and growable byte buffers with a hard cap.
 *
 * A struct dcms_str is a borrowed view: it owns nothing and is not
 * necessarily NUL-terminated. A struct dcms_buf owns its bytes (malloc),
 * always keeps them NUL-terminated, and refuses to grow past `max`.
 */
#ifndef DCMS_STR_H
#define DCMS_STR_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "dcms/err.h"

struct dcms_str {
    const char *ptr;
    size_t len;
};

#define DCMS_STR_LIT(s) ((struct dcms_str){(s), sizeof(s) - 1})

static inline struct dcms_str dcms_str_from(const char *s)
{
    return (struct dcms_str){s, s ? strlen(s) : 0};
}

static inline bool dcms_str_eq(struct dcms_str a, struct dcms_str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* Case-insensitive ASCII comparison of a view with a C string. */
bool dcms_str_ieq_cstr(struct dcms_str a, const char *b);

struct dcms_buf {
    char *ptr;
    size_t len, cap, max;
};

/* Empty buffer that will hold at most `max_bytes` (excluding the NUL). */
void dcms_buf_init(struct dcms_buf *b, size_t max_bytes);
/* Frees the bytes; the buffer may be reused after dcms_buf_init(). */
void dcms_buf_release(struct dcms_buf *b);
/* Hands the bytes (NUL-terminated, malloc'd; never NULL) to the caller. */
char *dcms_buf_detach(struct dcms_buf *b, size_t *len_out);

/* DCMS_ERR_TOO_LARGE past the cap, DCMS_ERR_NOMEM on allocation failure. */
enum dcms_err dcms_buf_append(struct dcms_buf *b, const void *p, size_t n) DCMS_MUST_CHECK;
enum dcms_err dcms_buf_appends(struct dcms_buf *b, const char *s) DCMS_MUST_CHECK;
enum dcms_err dcms_buf_appendf(struct dcms_buf *b, const char *fmt, ...)
    DCMS_PRINTF(2, 3) DCMS_MUST_CHECK;
typedef enum dcms_err dcms_emit_fn(void *ctx, const char *p, size_t n);

/*
 * Writes `s` as the body of a JSON string (no quotes) through `emit`: the
 * minimal escapes of RFC 8259 and RFC 8785 (\" \\ \b \f \n \r \t, other
 * control characters as \u00xx in lowercase), everything else as is.
 * Stops at, and returns, the first error `emit` returns.
 */
enum dcms_err dcms_json_escape(const char *s, size_t n, dcms_emit_fn *emit,
                               void *ctx) DCMS_MUST_CHECK;

/* Appends `s` as the body of a JSON string (no quotes), escaping as RFC 8259 requires. */
enum dcms_err dcms_buf_append_json_escaped(struct dcms_buf *b, const char *s,
                                           size_t n) DCMS_MUST_CHECK;

/* Lowercase hex of `n` bytes into `out` (2n+1 bytes). */
void dcms_hex_encode(char *out, const unsigned char *p, size_t n);

#endif
