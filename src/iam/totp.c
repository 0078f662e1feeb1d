/*
 * TOTP second factor (RFC 6238 over RFC 4226, through liboath): SHA-1, six
 * digits, 30 s steps, one step of drift either way. The secret (20 random
 * bytes) is shown once at enrolment, as base32 and an otpauth:// URI, and
 * stored sealed under the key-encryption key. An enrolment is pending
 * until a first code confirms it. Each accepted code moves the identity's
 * last accepted step forward, and a code for that step or an older one is
 * refused: a code works once. Re-enrolling while confirmed is refused
 * (disable first, which needs a current code).
 */
#include <pthread.h>

#include <liboath/oath.h>

#include "dcms/app.h"
#include "dcms/clock.h"
#include "dcms/config.h"
#include "dcms/credentials.h"
#include "dcms/crypto.h"
#include "dcms/log.h"
#include "dcms/store.h"
#include "dcms/str.h"
#include "iam/mfa_int.h"

/* ---- pure ---- */

static pthread_once_t oath_once = PTHREAD_ONCE_INIT;
static int oath_ready = OATH_OK;

static void oath_start(void)
{
    oath_ready = oath_init();
}

enum dcms_err iam_totp_generate(const unsigned char *key, size_t key_len, int64_t t_s,
                                unsigned step_s, unsigned digits, enum iam_totp_alg alg, char *out)
{
    pthread_once(&oath_once, oath_start);
    if (oath_ready != OATH_OK || digits < 6 || digits > 8 || step_s == 0 || t_s < 0)
        return DCMS_ERR_CRYPTO;
    int flags = alg == IAM_TOTP_SHA256   ? OATH_TOTP_HMAC_SHA256
                : alg == IAM_TOTP_SHA512 ? OATH_TOTP_HMAC_SHA512
                                         : 0;
    int rc =
        oath_totp_generate2((const char *)key, key_len, (time_t)t_s, step_s, 0, digits, flags, out);
    return rc == OATH_OK ? DCMS_OK : DCMS_ERR_CRYPTO;
}

/* liboath asks us to compare each candidate code: 0 means a match. */
static int code_differs(void *handle, const char *candidate)
{
    const char *code = handle;
    return sodium_memcmp(code, candidate, IAM_TOTP_DIGITS) != 0;
}

enum dcms_err iam_totp_match(const unsigned char *key, size_t key_len, int64_t t_s,
                             const char *code, uint64_t *step)
{
    pthread_once(&oath_once, oath_start);
    if (oath_ready != OATH_OK)
        return DCMS_ERR_CRYPTO;
    if (!code || strlen(code) != IAM_TOTP_DIGITS || t_s < 0)
        return DCMS_ERR_VALIDATION;
    for (size_t i = 0; i < IAM_TOTP_DIGITS; i++)
        if (code[i] < '0' || code[i] > '9')
            return DCMS_ERR_VALIDATION;
    int pos = 0;
    uint64_t counter = 0;
    int rc = oath_totp_validate4_callback((const char *)key, key_len, (time_t)t_s, IAM_TOTP_STEP_S,
                                          0, IAM_TOTP_DIGITS, IAM_TOTP_WINDOW, &pos, &counter, 0,
                                          code_differs, (void *)code);
    if (rc < 0)
        return DCMS_ERR_VALIDATION;
    *step = counter;
    return DCMS_OK;
}

void iam_base32_encode(char *out, const unsigned char *p, size_t n)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    size_t o = 0;
    unsigned acc = 0, bits = 0;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | p[i];
        bits += 8;
        while (bits >= 5) {
            out[o++] = abc[(acc >> (bits - 5)) & 31];
            bits -= 5;
        }
    }
    if (bits)
        out[o++] = abc[(acc << (5 - bits)) & 31];
    out[o] = '\0';
}

/* ---- the store ---- */

static struct dcms_query q_totp_get = DCMS_QUERY(
    "totp_get", "SELECT t.secret_sealed, t.status, t.last_step, i.email FROM identities i "
                "LEFT JOIN totp_credentials t ON t.identity_id = i.id WHERE i.id = $1");
static struct dcms_query q_totp_put =
    DCMS_QUERY("totp_put",
               "INSERT INTO totp_credentials (identity_id, secret_sealed, status, last_step, "
               "created_at) VALUES ($1, $2, 'pending', 0, $3) ON CONFLICT (identity_id) DO "
               "UPDATE SET secret_sealed = $2, status = 'pending', last_step = 0, created_at = $3, "
               "confirmed_at = NULL WHERE totp_credentials.status = 'pending'");
static struct dcms_query q_totp_step =
    DCMS_QUERY("totp_step", "UPDATE totp_credentials SET last_step = $2 WHERE identity_id = $1 AND "
                            "status = 'confirmed' AND last_step < $2");
static struct dcms_query q_totp_confirm = DCMS_QUERY(
    "totp_confirm", "UPDATE totp_credentials SET status = 'confirmed', last_step = $2, "
                    "confirmed_at = $3 WHERE identity_id = $1 AND status = 'pending' AND "
                    "secret_sealed = $4");
static struct dcms_query q_totp_delete =
    DCMS_QUERY("totp_delete", "DELETE FROM totp_credentials WHERE identity_id = $1");
static struct dcms_query q_recovery_delete =
    DCMS_QUERY("recovery_delete", "DELETE FROM recovery_codes WHERE identity_id = $1");

struct totp_row {
    bool exists, confirmed;
    int64_t last_step;
    char sealed[256];
    char email[256];
};

static enum dcms_err totp_read(struct dcms_iam *iam, const char *identity_id, struct totp_row *r,
                               struct dcms_errinfo *ei)
{
    memset(r, 0, sizeof(*r));
    if (!dcms_uuid_valid(identity_id))
        return dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "identity not found");
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_begin(iam->app->store, DCMS_TX_READ, &tx, ei);
    if (e)
        return e;
    e = dcms_store_exec(tx, &q_totp_get, (struct dcms_store_val[]){DCMS_VAL_TEXT(identity_id)}, 1,
                        &rows, NULL, ei);
    dcms_store_rollback(tx);
    if (e)
        return e;
    if (dcms_store_rows_count(rows) != 1) {
        dcms_store_rows_free(rows);
        return dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "identity not found");
    }
    const char *sealed = dcms_store_rows_text(rows, 0, 0);
    const char *email = dcms_store_rows_text(rows, 0, 3);
    if (email)
        snprintf(r->email, sizeof(r->email), "%s", email);
    if (sealed) {
        r->exists = true;
        r->confirmed = strcmp(dcms_store_rows_text(rows, 0, 1), "confirmed") == 0;
        r->last_step = dcms_store_rows_int(rows, 0, 2);
        snprintf(r->sealed, sizeof(r->sealed), "%s", sealed);
    }
    dcms_store_rows_free(rows);
    return DCMS_OK;
}

/* Matches `code` against the sealed secret of `r` at time now_s. */
static enum dcms_err match_sealed(struct dcms_iam *iam, const char *identity_id,
                                  const struct totp_row *r, const char *code, int64_t now_s,
                                  uint64_t *step, struct dcms_errinfo *ei)
{
    unsigned char key[64];
    size_t klen = 0;
    if (iam_unseal(iam, r->sealed, identity_id, key, sizeof(key), &klen)) {
        DCMS_LOG(DCMS_LOG_ERROR, "iam",
                 "cannot unseal the TOTP secret of %s: is DCMS_IAM_KEK_FILE the one it was "
                 "sealed with?",
                 identity_id);
        return dcms_err_set(ei, DCMS_ERR_CRYPTO, NULL);
    }
    enum dcms_err e = iam_totp_match(key, klen, now_s, code, step);
    sodium_memzero(key, sizeof(key));
    return e;
}

enum dcms_err iam_totp_consume(struct dcms_iam *iam, const char *identity_id, const char *code,
                               int64_t now_s, const char *field, struct dcms_errinfo *ei)
{
    struct totp_row r;
    enum dcms_err e = totp_read(iam, identity_id, &r, ei);
    if (e)
        return e;
    if (!r.confirmed)
        return dcms_err_set(ei, DCMS_ERR_CONFLICT, "no confirmed TOTP is enrolled");
    uint64_t step = 0;
    e = match_sealed(iam, identity_id, &r, code, now_s, &step, ei);
    if (e == DCMS_ERR_VALIDATION)
        return dcms_err_field(ei, field, "is not a valid code");
    if (e)
        return e;
    if ((int64_t)step <= r.last_step)
        return dcms_err_field(ei, field, "was already used; wait for the next code");
    struct dcms_store_tx *tx;
    if ((e = dcms_store_begin(iam->app->store, DCMS_TX_WRITE, &tx, ei)))
        return e;
    uint64_t n = 0;
    e = dcms_store_exec(
        tx, &q_totp_step,
        (struct dcms_store_val[]){DCMS_VAL_TEXT(identity_id), DCMS_VAL_INT((int64_t)step)}, 2, NULL,
        &n, ei);
    e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, ei);
    if (e)
        return e;
    /* Another request accepted this step (or a later one) first. */
    return n == 1 ? DCMS_OK : dcms_err_field(ei, field, "was already used; wait for the next code");
}

/*
 * A caller checking its own code is already authenticated: its failures
 * count against "totp:<identity>", which only holders of that identity's
 * session move, not against the login lockout anyone can trip (docs/iam.md,
 * "Lockout"), and no address is involved.
 */
enum dcms_err iam_totp_check_throttled(const struct iam_call *c, const char *identity_id,
                                       const char *code, const char *field)
{
    char key[80];
    snprintf(key, sizeof(key), "totp:%s", identity_id);
    int64_t retry = 0;
    enum dcms_err e = iam_throttle_check(c->iam, key, "", &retry, c->ei);
    if (e)
        return e;
    e = iam_totp_consume(c->iam, identity_id, code, dcms_clock_now_us() / 1000000, field, c->ei);
    if (e == DCMS_ERR_VALIDATION)
        (void)iam_throttle_fail(c, IAM_CLIENT_SESSION, key, NULL, identity_id, NULL, "bad_totp");
    return e;
}

enum dcms_err dcms_iam_totp_check(struct dcms_iam *iam, const char *identity_id, const char *code,
                                  struct dcms_errinfo *ei)
{
    struct iam_call c = {iam, NULL, NULL, NULL, ei};
    return iam_totp_check_throttled(&c, identity_id, code, "totp");
}

/* "otpauth://totp/Issuer:label?secret=...": the label and issuer percent-encoded. */
static enum dcms_err append_pct(struct dcms_buf *b, const char *s)
{
    enum dcms_err e = DCMS_OK;
    for (; *s && !e; s++) {
        unsigned char ch = (unsigned char)*s;
        bool plain = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                     (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' || ch == '~' ||
                     ch == '@';
        e = plain ? dcms_buf_append(b, s, 1) : dcms_buf_appendf(b, "%%%02X", ch);
    }
    return e;
}

static char *otpauth_uri(const char *issuer, const char *label, const char *secret_b32)
{
    struct dcms_buf b;
    dcms_buf_init(&b, 2048);
    enum dcms_err e = dcms_buf_appends(&b, "otpauth://totp/");
    if (!e)
        e = append_pct(&b, issuer);
    if (!e)
        e = dcms_buf_appends(&b, ":");
    if (!e)
        e = append_pct(&b, label);
    if (!e)
        e = dcms_buf_appendf(&b, "?secret=%s&issuer=", secret_b32);
    if (!e)
        e = append_pct(&b, issuer);
    if (!e)
        e = dcms_buf_appendf(&b, "&algorithm=SHA1&digits=%d&period=%d", IAM_TOTP_DIGITS,
                             IAM_TOTP_STEP_S);
    if (e) {
        sodium_memzero(b.ptr, b.len);
        dcms_buf_release(&b);
        return NULL;
    }
    return dcms_buf_detach(&b, NULL);
}

static bool is_api_key(const struct iam_call *c)
{
    return c->p && c->p->api_key[0];
}

enum dcms_err iam_totp_enroll(const struct iam_call *c, json_t **out)
{
    if (is_api_key(c))
        return dcms_err_set(c->ei, DCMS_ERR_FORBIDDEN, "API keys cannot manage second factors");
    if (iam_require_recent_auth(c, "enrolling TOTP"))
        return c->ei->code;
    struct totp_row r;
    enum dcms_err e = totp_read(c->iam, c->p->id, &r, c->ei);
    if (e)
        return e;
    if (r.confirmed)
        return dcms_err_set(c->ei, DCMS_ERR_CONFLICT,
                            "TOTP is already enabled; disable it first (DELETE /api/v1/mfa/totp "
                            "with a current code)");
    unsigned char key[IAM_TOTP_SECRET_BYTES];
    char b32[40];
    randombytes_buf(key, sizeof(key));
    iam_base32_encode(b32, key, sizeof(key));
    char *sealed = iam_seal(c->iam, key, sizeof(key), c->p->id);
    sodium_memzero(key, sizeof(key));
    char *uri = otpauth_uri(c->iam->cfg->jwt_issuer, r.email[0] ? r.email : c->p->id, b32);
    char now[DCMS_TIME_STRLEN];
    dcms_time_format(dcms_clock_now_us(), now);
    struct dcms_store_tx *tx = NULL;
    if (!sealed || !uri)
        e = dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
    if (!e)
        e = dcms_store_begin(c->iam->app->store, DCMS_TX_WRITE, &tx, c->ei);
    uint64_t n = 0;
    if (!e)
        e = dcms_store_exec(tx, &q_totp_put,
                            (struct dcms_store_val[]){DCMS_VAL_TEXT(c->p->id),
                                                      DCMS_VAL_TEXT(sealed), DCMS_VAL_TEXT(now)},
                            3, NULL, &n, c->ei);
    if (!e && n != 1)
        e = dcms_err_set(c->ei, DCMS_ERR_CONFLICT, "TOTP is already enabled; disable it first");
    if (!e)
        e = iam_audit(c->iam, tx, c->p->id, "mfa.totp_enroll", "identity", c->p->id, false, NULL,
                      c->client_ip, c->request_id, c->ei);
    if (tx)
        e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, c->ei);
    if (!e)
        *out = json_pack("{s:s, s:s, s:s, s:s, s:i, s:i}", "status", "pending", "secret", b32,
                         "otpauth_uri", uri, "algorithm", "SHA1", "digits", IAM_TOTP_DIGITS,
                         "period", IAM_TOTP_STEP_S);
    if (!e && !*out)
        e = dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
    sodium_memzero(b32, sizeof(b32));
    if (uri) {
        sodium_memzero(uri, strlen(uri));
        free(uri);
    }
    free(sealed);
    return e;
}

enum dcms_err iam_totp_confirm(const struct iam_call *c, const char *code, json_t **out)
{
    if (is_api_key(c))
        return dcms_err_set(c->ei, DCMS_ERR_FORBIDDEN, "API keys cannot manage second factors");
    if (iam_require_recent_auth(c, "confirming TOTP"))
        return c->ei->code;
    struct totp_row r;
    enum dcms_err e = totp_read(c->iam, c->p->id, &r, c->ei);
    if (e)
        return e;
    if (r.confirmed)
        return dcms_err_set(c->ei, DCMS_ERR_CONFLICT, "TOTP is already confirmed");
    if (!r.exists)
        return dcms_err_set(c->ei, DCMS_ERR_CONFLICT,
                            "no pending TOTP enrolment; POST /api/v1/mfa/totp/enroll first");
    uint64_t step = 0;
    e = match_sealed(c->iam, c->p->id, &r, code, dcms_clock_now_us() / 1000000, &step, c->ei);
    if (e == DCMS_ERR_VALIDATION)
        return dcms_err_field(c->ei, "code", "is not a valid code for the enrolled secret");
    if (e)
        return e;
    char now[DCMS_TIME_STRLEN];
    dcms_time_format(dcms_clock_now_us(), now);
    struct dcms_store_tx *tx;
    if ((e = dcms_store_begin(c->iam->app->store, DCMS_TX_WRITE, &tx, c->ei)))
        return e;
    uint64_t n = 0;
    json_t *codes = NULL;
    /* The sealed value pins the enrolment the code was checked against (no re-enrol race). */
    e = dcms_store_exec(tx, &q_totp_confirm,
                        (struct dcms_store_val[]){DCMS_VAL_TEXT(c->p->id),
                                                  DCMS_VAL_INT((int64_t)step), DCMS_VAL_TEXT(now),
                                                  DCMS_VAL_TEXT(r.sealed)},
                        4, NULL, &n, c->ei);
    if (!e && n != 1)
        e = dcms_err_set(c->ei, DCMS_ERR_CONFLICT, "the enrolment changed; enrol again");
    if (!e)
        e = iam_recovery_issue_tx(c->iam, tx, c->p->id, &codes, c->ei);
    if (!e)
        e = iam_audit(c->iam, tx, c->p->id, "mfa.totp_confirm", "identity", c->p->id, false,
                      json_pack("{s:i}", "recovery_codes", IAM_RECOVERY_CODES), c->client_ip,
                      c->request_id, c->ei);
    e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, c->ei);
    if (e) {
        json_decref(codes);
        return e;
    }
    *out = json_pack("{s:s, s:s, s:o}", "status", "confirmed", "confirmed_at", now,
                     "recovery_codes", codes);
    return *out ? DCMS_OK : dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
}

enum dcms_err iam_totp_disable(const struct iam_call *c, const char *code)
{
    if (is_api_key(c))
        return dcms_err_set(c->ei, DCMS_ERR_FORBIDDEN, "API keys cannot manage second factors");
    if (iam_require_recent_auth(c, "disabling TOTP"))
        return c->ei->code;
    enum dcms_err e = iam_totp_check_throttled(c, c->p->id, code, "code");
    if (e)
        return e;
    struct dcms_store_tx *tx;
    if ((e = dcms_store_begin(c->iam->app->store, DCMS_TX_WRITE, &tx, c->ei)))
        return e;
    e = dcms_store_exec(tx, &q_totp_delete, (struct dcms_store_val[]){DCMS_VAL_TEXT(c->p->id)}, 1,
                        NULL, NULL, c->ei);
    if (!e)
        e = dcms_store_exec(tx, &q_recovery_delete,
                            (struct dcms_store_val[]){DCMS_VAL_TEXT(c->p->id)}, 1, NULL, NULL,
                            c->ei);
    if (!e)
        e = iam_audit(c->iam, tx, c->p->id, "mfa.totp_disable", "identity", c->p->id, false, NULL,
                      c->client_ip, c->request_id, c->ei);
    return e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, c->ei);
}
