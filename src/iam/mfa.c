/*
 * Second factors around login: recovery codes (ten, 80 random bits each,
 * shown once, stored as SHA-256, each usable once), login tickets (handed
 * out after a correct password when a second factor is enrolled; random,
 * stored as SHA-256, five minutes, single use, bound to the identity), the
 * factor table step-up login dispatches on (see mfa_int.h for how a new
 * factor plugs in) and the amr values (RFC 8176) tokens carry.
 */
#include <ctype.h>

#include "dcms/app.h"
#include "dcms/clock.h"
#include "dcms/config.h"
#include "dcms/crypto.h"
#include "dcms/store.h"
#include "iam/iam_cred.h"
#include "iam/mfa_int.h"

#define RECOVERY_RAW_BYTES 10 /* 80 bits: 16 base32 characters */
#define RECOVERY_CHARS 16

static struct dcms_query q_recovery_delete =
    DCMS_QUERY("mfa_recovery_delete", "DELETE FROM recovery_codes WHERE identity_id = $1");
static struct dcms_query q_recovery_insert = DCMS_QUERY(
    "mfa_recovery_insert",
    "INSERT INTO recovery_codes (identity_id, code_hash, created_at) VALUES ($1, $2, $3)");
static struct dcms_query q_recovery_unused =
    DCMS_QUERY("mfa_recovery_unused", "SELECT code_hash FROM recovery_codes WHERE identity_id = "
                                      "$1 AND used_at IS NULL LIMIT 100");
static struct dcms_query q_recovery_use = DCMS_QUERY(
    "mfa_recovery_use", "UPDATE recovery_codes SET used_at = $3 WHERE identity_id = $1 AND "
                        "code_hash = $2 AND used_at IS NULL");
static struct dcms_query q_enrolled =
    DCMS_QUERY("mfa_enrolled",
               "SELECT (SELECT status FROM totp_credentials WHERE identity_id = $1), "
               "(SELECT count(*) FROM recovery_codes WHERE identity_id = $1 AND used_at IS NULL)");
static struct dcms_query q_ticket_insert = DCMS_QUERY(
    "mfa_ticket_insert", "INSERT INTO mfa_tickets (ticket_hash, identity_id, created_at, "
                         "expires_at) VALUES ($1, $2, $3, $4)");
static struct dcms_query q_ticket_purge =
    DCMS_QUERY("mfa_ticket_purge", "DELETE FROM mfa_tickets WHERE expires_at < $1");
static struct dcms_query q_ticket_get =
    DCMS_QUERY("mfa_ticket_get", "SELECT identity_id FROM mfa_tickets WHERE ticket_hash = $1 AND "
                                 "used_at IS NULL AND expires_at > $2");
static struct dcms_query q_ticket_use =
    DCMS_QUERY("mfa_ticket_use", "UPDATE mfa_tickets SET used_at = $2 WHERE ticket_hash = $1 AND "
                                 "used_at IS NULL AND expires_at > $2");

/* ---- recovery codes ---- */

/* Lowercase base32 without separators into out[RECOVERY_CHARS + 1]; false when malformed. */
static bool recovery_normalize(const char *in, char out[RECOVERY_CHARS + 1])
{
    size_t n = 0;
    for (; in && *in; in++) {
        char ch = (char)tolower((unsigned char)*in);
        if (ch == '-' || ch == ' ')
            continue;
        if (n == RECOVERY_CHARS || !((ch >= 'a' && ch <= 'z') || (ch >= '2' && ch <= '7')))
            return false;
        out[n++] = ch;
    }
    out[n] = '\0';
    return n == RECOVERY_CHARS;
}

enum dcms_err iam_recovery_issue_tx(struct dcms_iam *iam, struct dcms_store_tx *tx,
                                    const char *identity_id, json_t **codes,
                                    struct dcms_errinfo *ei)
{
    (void)iam;
    char now[DCMS_TIME_STRLEN];
    dcms_time_format(dcms_clock_now_us(), now);
    enum dcms_err e =
        dcms_store_exec(tx, &q_recovery_delete,
                        (struct dcms_store_val[]){DCMS_VAL_TEXT(identity_id)}, 1, NULL, NULL, ei);
    json_t *a = e ? NULL : json_array();
    if (!e && !a)
        e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    for (int i = 0; !e && i < IAM_RECOVERY_CODES; i++) {
        unsigned char raw[RECOVERY_RAW_BYTES];
        char b32[RECOVERY_CHARS + 1], shown[RECOVERY_CHARS + 4], hash[65];
        randombytes_buf(raw, sizeof(raw));
        iam_base32_encode(b32, raw, sizeof(raw));
        for (size_t k = 0; k < RECOVERY_CHARS; k++)
            b32[k] = (char)tolower((unsigned char)b32[k]);
        snprintf(shown, sizeof(shown), "%.4s-%.4s-%.4s-%.4s", b32, b32 + 4, b32 + 8, b32 + 12);
        e = dcms_digest_sha256_hex(b32, RECOVERY_CHARS, hash);
        if (!e)
            e = dcms_store_exec(tx, &q_recovery_insert,
                                (struct dcms_store_val[]){DCMS_VAL_TEXT(identity_id),
                                                          DCMS_VAL_TEXT(hash), DCMS_VAL_TEXT(now)},
                                3, NULL, NULL, ei);
        if (!e && json_array_append_new(a, json_string(shown)))
            e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
        sodium_memzero(raw, sizeof(raw));
        sodium_memzero(b32, sizeof(b32));
        sodium_memzero(shown, sizeof(shown));
    }
    if (e) {
        json_decref(a);
        return e;
    }
    *codes = a;
    return DCMS_OK;
}

enum dcms_err iam_recovery_consume(struct dcms_iam *iam, const char *identity_id, const char *code,
                                   const char *field, struct dcms_errinfo *ei)
{
    char norm[RECOVERY_CHARS + 1], hash[65];
    if (!recovery_normalize(code, norm))
        return dcms_err_field(ei, field, "is not a valid recovery code");
    enum dcms_err e = dcms_digest_sha256_hex(norm, RECOVERY_CHARS, hash);
    sodium_memzero(norm, sizeof(norm));
    if (e)
        return dcms_err_set(ei, DCMS_ERR_CRYPTO, NULL);
    char now[DCMS_TIME_STRLEN];
    dcms_time_format(dcms_clock_now_us(), now);
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    if ((e = dcms_store_begin(iam->app->store, DCMS_TX_WRITE, &tx, ei)))
        return e;
    e = dcms_store_exec(tx, &q_recovery_unused,
                        (struct dcms_store_val[]){DCMS_VAL_TEXT(identity_id)}, 1, &rows, NULL, ei);
    /* Compare with every unused hash in constant time rather than looking it up by value. */
    bool found = false;
    for (size_t i = 0; !e && i < dcms_store_rows_count(rows); i++) {
        const char *h = dcms_store_rows_text(rows, i, 0);
        found |= strlen(h) == 64 && sodium_memcmp(h, hash, 64) == 0;
    }
    dcms_store_rows_free(rows);
    uint64_t n = 0;
    if (!e && found)
        e = dcms_store_exec(tx, &q_recovery_use,
                            (struct dcms_store_val[]){DCMS_VAL_TEXT(identity_id),
                                                      DCMS_VAL_TEXT(hash), DCMS_VAL_TEXT(now)},
                            3, NULL, &n, ei);
    e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, ei);
    if (e)
        return e;
    return n == 1 ? DCMS_OK : dcms_err_field(ei, field, "is not a valid unused recovery code");
}

enum dcms_err iam_recovery_regenerate(const struct iam_call *c, const char *totp, json_t **out)
{
    if (c->p->api_key[0])
        return dcms_err_set(c->ei, DCMS_ERR_FORBIDDEN, "API keys cannot manage second factors");
    if (iam_require_recent_auth(c, "replacing recovery codes"))
        return c->ei->code;
    enum dcms_err e = iam_totp_check_throttled(c, c->p->id, totp, "code");
    if (e == DCMS_ERR_CONFLICT) {
        dcms_errinfo_init(c->ei, c->ei->arena);
        return dcms_err_set(c->ei, DCMS_ERR_CONFLICT,
                            "recovery codes come with TOTP; enrol and confirm TOTP first");
    }
    if (e)
        return e;
    struct dcms_store_tx *tx;
    if ((e = dcms_store_begin(c->iam->app->store, DCMS_TX_WRITE, &tx, c->ei)))
        return e;
    json_t *codes = NULL;
    e = iam_recovery_issue_tx(c->iam, tx, c->p->id, &codes, c->ei);
    if (!e)
        e = iam_audit(c->iam, tx, c->p->id, "mfa.recovery_regenerate", "identity", c->p->id, false,
                      json_pack("{s:i}", "recovery_codes", IAM_RECOVERY_CODES), c->client_ip,
                      c->request_id, c->ei);
    e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, c->ei);
    if (e) {
        json_decref(codes);
        return e;
    }
    *out = json_pack("{s:o}", "recovery_codes", codes);
    return *out ? DCMS_OK : dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
}

/* ---- enrolled factors and status ---- */

struct enrolled {
    const char *totp; /* "none", "pending", "confirmed" */
    int64_t recovery_left;
};

static enum dcms_err enrolled_read(struct dcms_iam *iam, const char *identity_id,
                                   struct enrolled *out, struct dcms_errinfo *ei)
{
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_begin(iam->app->store, DCMS_TX_READ, &tx, ei);
    if (e)
        return e;
    e = dcms_store_exec(tx, &q_enrolled, (struct dcms_store_val[]){DCMS_VAL_TEXT(identity_id)}, 1,
                        &rows, NULL, ei);
    dcms_store_rollback(tx);
    if (e)
        return e;
    const char *st = dcms_store_rows_count(rows) ? dcms_store_rows_text(rows, 0, 0) : NULL;
    out->totp = !st ? "none" : strcmp(st, "confirmed") == 0 ? "confirmed" : "pending";
    out->recovery_left = dcms_store_rows_count(rows) ? dcms_store_rows_int(rows, 0, 1) : 0;
    dcms_store_rows_free(rows);
    return DCMS_OK;
}

/* ---- the factor table: one row per second factor (see mfa_int.h) ---- */

static enum dcms_err totp_enrolled(struct dcms_iam *iam, const char *identity_id, bool *yes,
                                   struct dcms_errinfo *ei)
{
    struct enrolled en;
    enum dcms_err e = enrolled_read(iam, identity_id, &en, ei);
    *yes = !e && strcmp(en.totp, "confirmed") == 0;
    return e;
}

static enum dcms_err recovery_enrolled(struct dcms_iam *iam, const char *identity_id, bool *yes,
                                       struct dcms_errinfo *ei)
{
    struct enrolled en;
    enum dcms_err e = enrolled_read(iam, identity_id, &en, ei);
    /* Recovery codes stand in for a confirmed TOTP only. */
    *yes = !e && strcmp(en.totp, "confirmed") == 0 && en.recovery_left > 0;
    return e;
}

static enum dcms_err totp_verify(const struct iam_call *c, const char *identity_id,
                                 const struct iam_factor_in *f, unsigned *amr)
{
    enum dcms_err e = iam_totp_consume(c->iam, identity_id, f->totp, dcms_clock_now_us() / 1000000,
                                       "totp", c->ei);
    if (!e)
        *amr |= DCMS_AMR_OTP | DCMS_AMR_MFA;
    return e;
}

static enum dcms_err recovery_verify(const struct iam_call *c, const char *identity_id,
                                     const struct iam_factor_in *f, unsigned *amr)
{
    enum dcms_err e =
        iam_recovery_consume(c->iam, identity_id, f->recovery_code, "recovery_code", c->ei);
    if (!e)
        *amr |= DCMS_AMR_OTP | DCMS_AMR_MFA;
    return e;
}

/* Passkeys: an assertion over a challenge from /api/v1/webauthn/assert/options (iam_webauthn.c). */
static enum dcms_err webauthn_verify(const struct iam_call *c, const char *identity_id,
                                     const struct iam_factor_in *f, unsigned *amr)
{
    struct dcms_webauthn_result r;
    enum dcms_err e = iam_wa_assert(c->iam, identity_id, f->webauthn, false, identity_id,
                                    "webauthn.login", c->client_ip, c->request_id, &r, c->ei);
    if (e == DCMS_ERR_NOT_FOUND) {
        dcms_errinfo_init(c->ei, c->ei->arena);
        e = dcms_err_field(c->ei, "webauthn.id", "is not a passkey of this identity");
    }
    if (!e)
        *amr |= DCMS_AMR_HWK | DCMS_AMR_MFA | (r.user_verified ? DCMS_AMR_USER : 0u);
    return e;
}

/* The assertion options for the mfa_required answer (the same as assert/options with the ticket).
 */
static json_t *webauthn_challenge(const struct iam_call *c, const char *identity_id,
                                  const char *ticket)
{
    (void)ticket;
    struct dcms_errinfo tei;
    dcms_errinfo_init(&tei, NULL);
    struct iam_call cc = {c->iam, NULL, c->client_ip, c->request_id, &tei};
    json_t *out = NULL;
    if (iam_wa_assert_options(&cc, identity_id, "preferred", &out))
        return NULL; /* the client can still ask assert/options with the ticket */
    return out;
}

static const char *in_webauthn(const struct iam_factor_in *f)
{
    return f->webauthn ? "webauthn" : NULL;
}

static const char *in_totp(const struct iam_factor_in *f)
{
    return f->totp;
}

static const char *in_recovery(const struct iam_factor_in *f)
{
    return f->recovery_code;
}

static const struct factor {
    unsigned bit;
    const char *name;                                   /* in `factors` and as the request member */
    const char *(*given)(const struct iam_factor_in *); /* non-NULL when the request carries it */
    enum dcms_err (*enrolled)(struct dcms_iam *, const char *, bool *, struct dcms_errinfo *);
    enum dcms_err (*verify)(const struct iam_call *, const char *, const struct iam_factor_in *,
                            unsigned *);
    const char *fail_reason; /* for the throttle's audit event */
    /* Optional: what the client needs to answer this factor (a WebAuthn challenge), or NULL. */
    json_t *(*challenge)(const struct iam_call *, const char *identity_id, const char *ticket);
} factors[] = {
    {IAM_FACTOR_TOTP, "totp", in_totp, totp_enrolled, totp_verify, "bad_totp", NULL},
    {IAM_FACTOR_RECOVERY, "recovery_code", in_recovery, recovery_enrolled, recovery_verify,
     "bad_recovery_code", NULL},
    {IAM_FACTOR_WEBAUTHN, "webauthn", in_webauthn, iam_wa_enrolled, webauthn_verify, "bad_webauthn",
     webauthn_challenge},
};
#define NFACTORS (sizeof(factors) / sizeof(factors[0]))

bool iam_factor_given(const struct iam_factor_in *f, const char **name)
{
    for (size_t i = 0; i < NFACTORS; i++)
        if (factors[i].given(f)) {
            if (name)
                *name = factors[i].name;
            return true;
        }
    return false;
}

enum dcms_err iam_mfa_enrolled(struct dcms_iam *iam, const char *identity_id, unsigned *mask,
                               struct dcms_errinfo *ei)
{
    *mask = 0;
    for (size_t i = 0; i < NFACTORS; i++) {
        bool yes = false;
        enum dcms_err e = factors[i].enrolled(iam, identity_id, &yes, ei);
        if (e)
            return e;
        if (yes)
            *mask |= factors[i].bit;
    }
    return DCMS_OK;
}

json_t *iam_factors_json(unsigned mask)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < NFACTORS; i++)
        if (mask & factors[i].bit)
            json_array_append_new(a, json_string(factors[i].name));
    return a;
}

json_t *iam_factor_challenges(const struct iam_call *c, const char *identity_id, unsigned enrolled,
                              const char *ticket)
{
    json_t *o = NULL;
    for (size_t i = 0; i < NFACTORS; i++) {
        json_t *v = (enrolled & factors[i].bit) && factors[i].challenge
                        ? factors[i].challenge(c, identity_id, ticket)
                        : NULL;
        if (v && !o)
            o = json_object();
        if (v)
            json_object_set_new(o, factors[i].name, v);
    }
    return o;
}

enum dcms_err iam_factor_verify(const struct iam_call *c, const char *identity_id,
                                unsigned enrolled, const struct iam_factor_in *f, unsigned *amr,
                                const char **why)
{
    for (size_t i = 0; i < NFACTORS; i++) {
        if (!factors[i].given(f))
            continue;
        *why = factors[i].fail_reason;
        if (!(enrolled & factors[i].bit))
            return dcms_err_field(c->ei, factors[i].name,
                                  "this second factor is not enrolled for the identity");
        return factors[i].verify(c, identity_id, f, amr);
    }
    *why = "unsupported_factor";
    return dcms_err_field(c->ei, "", "no supported second factor was given");
}

enum dcms_err iam_mfa_status(const struct iam_call *c, json_t **out)
{
    if (c->p->api_key[0])
        return dcms_err_set(c->ei, DCMS_ERR_FORBIDDEN, "API keys have no second factors");
    struct enrolled en;
    unsigned mask = 0;
    enum dcms_err e = enrolled_read(c->iam, c->p->id, &en, c->ei);
    if (!e)
        e = iam_mfa_enrolled(c->iam, c->p->id, &mask, c->ei);
    if (e)
        return e;
    *out = json_pack("{s:s, s:I, s:o}", "totp", en.totp, "recovery_codes_remaining",
                     (json_int_t)en.recovery_left, "factors", iam_factors_json(mask));
    return *out ? DCMS_OK : dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
}

/* ---- login tickets ---- */

enum dcms_err iam_mfa_ticket_issue(struct dcms_iam *iam, const char *identity_id, char ticket[48],
                                   struct dcms_errinfo *ei)
{
    unsigned char raw[32];
    char hash[65], now_s[DCMS_TIME_STRLEN], exp_s[DCMS_TIME_STRLEN];
    randombytes_buf(raw, sizeof(raw));
    iam_b64url_encode(ticket, raw, sizeof(raw));
    sodium_memzero(raw, sizeof(raw));
    if (dcms_digest_sha256_hex(ticket, strlen(ticket), hash))
        return dcms_err_set(ei, DCMS_ERR_CRYPTO, NULL);
    int64_t now = dcms_clock_now_us();
    dcms_time_format(now, now_s);
    dcms_time_format(now + (int64_t)IAM_MFA_TICKET_TTL_S * 1000000, exp_s);
    struct dcms_store_tx *tx;
    enum dcms_err e = dcms_store_begin(iam->app->store, DCMS_TX_WRITE, &tx, ei);
    if (e)
        return e;
    /* Expired tickets are worthless; drop them as new ones come. */
    e = dcms_store_exec(tx, &q_ticket_purge, (struct dcms_store_val[]){DCMS_VAL_TEXT(now_s)}, 1,
                        NULL, NULL, ei);
    if (!e)
        e = dcms_store_exec(tx, &q_ticket_insert,
                            (struct dcms_store_val[]){DCMS_VAL_TEXT(hash),
                                                      DCMS_VAL_TEXT(identity_id),
                                                      DCMS_VAL_TEXT(now_s), DCMS_VAL_TEXT(exp_s)},
                            4, NULL, NULL, ei);
    return e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, ei);
}

enum dcms_err iam_mfa_ticket_lookup(struct dcms_iam *iam, const char *ticket,
                                    char id[DCMS_UUID_STRLEN], char hash[65],
                                    struct dcms_errinfo *ei)
{
    if (dcms_digest_sha256_hex(ticket, strlen(ticket), hash))
        return dcms_err_set(ei, DCMS_ERR_CRYPTO, NULL);
    char now_s[DCMS_TIME_STRLEN];
    dcms_time_format(dcms_clock_now_us(), now_s);
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_begin(iam->app->store, DCMS_TX_READ, &tx, ei);
    if (e)
        return e;
    e = dcms_store_exec(tx, &q_ticket_get,
                        (struct dcms_store_val[]){DCMS_VAL_TEXT(hash), DCMS_VAL_TEXT(now_s)}, 2,
                        &rows, NULL, ei);
    dcms_store_rollback(tx);
    if (!e && dcms_store_rows_count(rows) != 1)
        e = dcms_err_set(ei, DCMS_ERR_UNAUTHENTICATED,
                         "invalid mfa_ticket: unknown, used or expired; log in again");
    if (!e)
        snprintf(id, DCMS_UUID_STRLEN, "%s", dcms_store_rows_text(rows, 0, 0));
    dcms_store_rows_free(rows);
    return e;
}

enum dcms_err iam_mfa_ticket_use_tx(struct dcms_store_tx *tx, const char *hash,
                                    struct dcms_errinfo *ei)
{
    char now_s[DCMS_TIME_STRLEN];
    dcms_time_format(dcms_clock_now_us(), now_s);
    uint64_t n = 0;
    enum dcms_err e = dcms_store_exec(
        tx, &q_ticket_use, (struct dcms_store_val[]){DCMS_VAL_TEXT(hash), DCMS_VAL_TEXT(now_s)}, 2,
        NULL, &n, ei);
    if (!e && n != 1)
        e = dcms_err_set(ei, DCMS_ERR_UNAUTHENTICATED,
                         "invalid mfa_ticket: unknown, used or expired; log in again");
    return e;
}
