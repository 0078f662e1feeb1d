/*
 * String views and growable byte buffers with a hard cap.
 *
 * A struct dcms_str is a borrowed view: it owns nothing and is not
 * necessarily NUL-terminated. A struct dcms_buf owns its bytes (malloc),
 * always keeps them NUL-terminated, and refuses to grow past `max`. A
 * secret buffer (dcms_buf_init_secret: a request body, which may carry a
 * password or a token) wipes its bytes before malloc gets them back, on
 * release and on every growth.
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

/*
 * Frees a malloc'd block after wiping all of it (sodium_memzero over
 * malloc_usable_size): for memory that may have held a secret and whose
 * length the caller no longer knows, such as a response body libmicrohttpd
 * hands back or a node of a JSON tree. NULL does nothing. Thread-safe.
 */
void dcms_free_wiped(void *p);

struct dcms_buf {
    char *ptr;
    size_t len, cap, max;
    bool secret; /* wipe on release and growth; see dcms_buf_init_secret */
};

/* Empty buffer that will hold at most `max_bytes` (excluding the NUL). */
void dcms_buf_init(struct dcms_buf *b, size_t max_bytes);
/*
 * The same for bytes that may be secret: growth allocates a new block,
 * copies and wipes the old one (never realloc, which may leave a copy
 * behind), and release wipes before freeing. Costs one copy per growth;
 * dcms_buf_reserve avoids it when the final size is known.
 */
void dcms_buf_init_secret(struct dcms_buf *b, size_t max_bytes);
/* Makes room for `n` bytes in all (at most the cap) so appends up to it do not grow the
 * buffer. DCMS_ERR_NOMEM on allocation failure. */
enum dcms_err dcms_buf_reserve(struct dcms_buf *b, size_t n) DCMS_MUST_CHECK;
/* Frees the bytes (wiped first if secret); the buffer may be reused after dcms_buf_init(). */
void dcms_buf_release(struct dcms_buf *b);
/* Hands the bytes (NUL-terminated, malloc'd; never NULL) to the caller, who frees them with
 * dcms_free_wiped() if they may hold a secret. */
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
