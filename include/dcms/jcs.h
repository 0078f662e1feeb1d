/*
 * RFC 8785 JSON Canonicalization Scheme (JCS) over jansson values.
 *
 * The canonical form is what dcms hashes and signs: no whitespace, object
 * members sorted by their names compared as arrays of UTF-16 code units,
 * strings as UTF-8 with only the escapes \" \\ \b \f \n \r \t and \u00xx
 * (lowercase hex) for the other control characters, no Unicode
 * normalization, and every number written the way ECMAScript's
 * Number.prototype.toString writes an IEEE-754 double.
 *
 * Because RFC 8785 treats every number as a double, jansson integers are
 * converted to double before they are formatted (so 9007199254740993 comes
 * out as 9007199254740992). Callers that canonicalize client input should
 * parse it with JSON_DECODE_INT_AS_REAL (e.g. dcms_json_parse(text,
 * JSON_DECODE_INT_AS_REAL, ...)): without it jansson rejects integers that do
 * not fit in json_int_t, which JCS accepts.
 *
 * Every function here is thread-safe: it reads the value without changing it
 * (jansson values may be shared between threads only while nobody modifies
 * them) and keeps no global state. Number formatting uses snprintf and strtod
 * and works under any LC_NUMERIC locale whose decimal point is not a digit.
 */
#ifndef DCMS_JCS_H
#define DCMS_JCS_H

#include <jansson.h>

#include "dcms/err.h"
#include "dcms/str.h"

/* Deepest nesting of arrays and objects accepted (jansson's parser limit). */
#define DCMS_JCS_MAX_DEPTH 2048

/* Size of the buffer dcms_jcs_format_number() writes into, NUL included. */
#define DCMS_JCS_NUMBER_MAX 32

/*
 * Appends the canonical form of `v` to `out`. The caller owns both; `v` is
 * only read. Bytes already in `out` are kept, and on error `out` is left as
 * it was (same length and contents).
 *
 * Errors (recorded in `ei`, which may be NULL):
 * - DCMS_ERR_VALIDATION: a number is NaN or infinite (JSON cannot represent
 *   it), or arrays and objects nest deeper than DCMS_JCS_MAX_DEPTH (which
 *   also catches a value that contains itself);
 * - DCMS_ERR_TOO_LARGE: the canonical form does not fit under out's cap;
 * - DCMS_ERR_NOMEM: an allocation failed;
 * - DCMS_ERR_INTERNAL: `v` (or a value inside it) is NULL.
 */
enum dcms_err dcms_jcs_canonicalize(const json_t *v, struct dcms_buf *out,
                                    struct dcms_errinfo *ei) DCMS_MUST_CHECK;

/*
 * Writes `d` into `out` (NUL-terminated, at most DCMS_JCS_NUMBER_MAX bytes)
 * as RFC 8785 section 3.2.2.3 requires, i.e. as ECMAScript's
 * Number.prototype.toString: the shortest digits that read back as `d`, in
 * plain notation for 1e-7 <= |d| < 1e21 and as d.ddde+XX / d.ddde-XX
 * otherwise; -0 is written "0". Returns DCMS_ERR_VALIDATION (and writes an
 * empty string) for NaN and the infinities.
 */
enum dcms_err dcms_jcs_format_number(double d, char out[DCMS_JCS_NUMBER_MAX]) DCMS_MUST_CHECK;

/*
 * Puts the SHA-256 of the canonical form of `v` into `out` (caller-owned, 32
 * bytes). The canonical form is streamed into the digest, so there is no
 * size cap and DCMS_ERR_TOO_LARGE never comes back. Errors (in `ei`, which
 * may be NULL): DCMS_ERR_VALIDATION as for dcms_jcs_canonicalize(),
 * DCMS_ERR_NOMEM, DCMS_ERR_CRYPTO if OpenSSL fails. `out` is unspecified on
 * error.
 */
enum dcms_err dcms_jcs_sha256(const json_t *v, unsigned char out[32],
                              struct dcms_errinfo *ei) DCMS_MUST_CHECK;

#endif
