/*
 * The signature types as one table (as contracts_state.c holds the
 * lifecycle): a row per type with its name, the member that names its key,
 * how its own members of the sign body are decoded, how its evidence is
 * verified when it is made (through IAM, dcms/credentials.h) and how a
 * stored one is re-checked by /verify. contracts_json.c and
 * contracts_sign.c dispatch through ct_sigtype_find(); docs/development.md
 * says how to add a row.
 */
#include "dcms/app.h"
#include "dcms/arena.h"
#include "dcms/clock.h"
#include "dcms/credentials.h"
#include "dcms/store.h"
#include "contracts/contracts_int.h"

/* ---- decoding: each type's own members ---- */

/* key_id and a 64-byte Ed25519 signature, shared by digital and mfa. */
static void decode_key_and_signature(const json_t *b, struct ct_sign_in *in,
                                     struct dcms_errinfo *ei)
{
    (void)b;
    if (!in->key_id)
        dcms_err_field(ei, "key_id", "is required for a %s signature", in->type->name);
    size_t len = 0;
    if (!in->signature_b64 ||
        !ct_b64_any_decode(in->signature_b64, in->sig, sizeof(in->sig), &len) || len != 64)
        dcms_err_field(ei, "signature",
                       "must be the base64 Ed25519 signature (64 bytes) of the terms hash");
    if (in->assertion)
        dcms_err_field(ei, "assertion", "belongs to a biometric signature");
}

static void decode_digital(const json_t *b, struct ct_sign_in *in, struct dcms_errinfo *ei)
{
    decode_key_and_signature(b, in, ei);
    if (in->totp_code)
        dcms_err_field(ei, "totp_code", "belongs to an mfa signature");
}

static void decode_mfa(const json_t *b, struct ct_sign_in *in, struct dcms_errinfo *ei)
{
    decode_key_and_signature(b, in, ei);
    bool digits = in->totp_code && strlen(in->totp_code) >= 6 && strlen(in->totp_code) <= 8;
    for (const char *p = in->totp_code; digits && *p; p++)
        digits = *p >= '0' && *p <= '9';
    if (!digits)
        dcms_err_field(ei, "totp_code", "must be the current 6-digit code of your authenticator");
}

static void decode_biometric(const json_t *b, struct ct_sign_in *in, struct dcms_errinfo *ei)
{
    (void)b;
    if (!json_is_object(in->assertion))
        dcms_err_field(ei, "assertion",
                       "must be the WebAuthn assertion (PublicKeyCredential JSON) whose "
                       "challenge is the terms hash");
    if (in->key_id || in->signature_b64 || in->totp_code)
        dcms_err_field(ei,
                       in->key_id          ? "key_id"
                       : in->signature_b64 ? "signature"
                                           : "totp_code",
                       "does not belong to a biometric signature");
}

/* ---- verification when signing ---- */

/* The Ed25519 signature with a key the signer registered (and did not revoke). */
static enum dcms_err verify_digital(const struct ct_call *c, const struct ct_sign_in *in,
                                    struct ct_evidence *out)
{
    struct dcms_errinfo *ei = c->ei;
    struct dcms_errinfo sub;
    dcms_errinfo_init(&sub, ei->arena);
    struct dcms_signing_key_info info;
    enum dcms_err e = dcms_iam_signing_key_verify(c->app->iam, c->p->id, in->key_id, in->hash, 32,
                                                  in->sig, NULL, &info, &sub);
    if (e == DCMS_ERR_NOT_FOUND)
        return dcms_err_field(ei, "key_id", "is not a signing key registered to you");
    if (e == DCMS_ERR_VALIDATION || e == DCMS_ERR_FORBIDDEN)
        return dcms_err_field(ei, "signature", "was refused: %s",
                              sub.message[0] ? sub.message : dcms_err_str(e));
    if (e)
        return dcms_err_set(ei, e, "%s", sub.message);
    out->json = json_pack("{s:s, s:s}", "signature", in->signature_b64, "message",
                          "the 32 raw bytes of signed_hash");
    snprintf(out->key_id, sizeof(out->key_id), "%s", in->key_id);
    snprintf(out->alg, sizeof(out->alg), "%s", info.alg[0] ? info.alg : "Ed25519");
    return out->json ? DCMS_OK : dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
}

/* The digital part, then a fresh TOTP code of the signer (consumed). */
static enum dcms_err verify_mfa(const struct ct_call *c, const struct ct_sign_in *in,
                                struct ct_evidence *out)
{
    struct dcms_errinfo *ei = c->ei;
    struct dcms_errinfo sub;
    dcms_errinfo_init(&sub, ei->arena);
    enum dcms_err e = verify_digital(c, in, out);
    if (e)
        return e;
    e = dcms_iam_totp_check(c->app->iam, c->p->id, in->totp_code, &sub);
    if (e == DCMS_ERR_CONFLICT)
        e = dcms_err_field(ei, "totp_code",
                           "cannot be checked: you have no confirmed TOTP enrolment");
    else if (e == DCMS_ERR_VALIDATION)
        e = dcms_err_field(ei, "totp_code", "%s", /* IAM's words: when the next code comes */
                           sub.ndetails ? sub.details[0].problem : "is wrong or already used");
    else if (e == DCMS_ERR_RATE_LIMITED) /* failed attempts locked the account: no code checked */
        e = dcms_err_set(ei, e, "%s",
                         sub.message[0] ? sub.message : "too many failed attempts; try later");
    else if (e)
        e = dcms_err_set(ei, e, "%s", sub.message);
    if (e)
        return e;
    char now[DCMS_TIME_STRLEN];
    dcms_time_format(dcms_clock_now_us(), now);
    json_object_set_new(out->json, "totp_verified_at", json_string(now));
    return DCMS_OK;
}

/* A WebAuthn assertion of one of the signer's passkeys over the hash, with UV. */
static enum dcms_err verify_biometric(const struct ct_call *c, const struct ct_sign_in *in,
                                      struct ct_evidence *out)
{
    struct dcms_errinfo *ei = c->ei;
    struct dcms_errinfo sub;
    dcms_errinfo_init(&sub, ei->arena);
    struct dcms_webauthn_result res;
    enum dcms_err e = dcms_iam_webauthn_verify_assertion(c->app->iam, c->p->id, in->hash, 32,
                                                         in->assertion, true, &res, &sub);
    if (e == DCMS_ERR_NOT_FOUND || e == DCMS_ERR_VALIDATION || e == DCMS_ERR_FORBIDDEN)
        return dcms_err_field(ei, "assertion", "was refused: %s",
                              sub.message[0] ? sub.message : dcms_err_str(e));
    if (e)
        return dcms_err_set(ei, e, "%s", sub.message);
    if (!res.user_verified)
        return dcms_err_field(ei, "assertion", "lacks the user-verified flag");
    const json_t *resp = json_object_get(in->assertion, "response");
    out->json = json_pack("{s:s, s:i, s:O?, s:O?, s:O?, s:b, s:I}", "credential_id",
                          res.credential_id, "cose_alg", res.cose_alg, "client_data_json",
                          json_object_get(resp, "clientDataJSON"), "authenticator_data",
                          json_object_get(resp, "authenticatorData"), "signature",
                          json_object_get(resp, "signature"), "user_verified", res.user_verified,
                          "sign_count", (json_int_t)res.sign_count);
    snprintf(out->key_id, sizeof(out->key_id), "%s", res.credential_id);
    snprintf(out->alg, sizeof(out->alg), "%s",
             res.cose_alg == -7     ? "ES256"
             : res.cose_alg == -8   ? "EdDSA"
             : res.cose_alg == -257 ? "RS256"
                                    : "WebAuthn");
    return out->json ? DCMS_OK : dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
}

/* ---- /verify: re-checking a stored signature ---- */

/* Columns of a signature row (ct_q_sig_all). */
enum { SIG_SIGNER = 2, SIG_KEY_ID = 4, SIG_SIGNED_AT = 8 };

/* Ed25519 again, with the key as it was when it signed (a key revoked later still verifies). */
static const char *recheck_key_signature(const struct ct_call *c,
                                         const struct dcms_store_rows *rows, size_t i,
                                         const json_t *ev, const unsigned char h[32])
{
    unsigned char sig[64];
    size_t len = 0;
    const char *b64 = json_string_value(json_object_get(ev, "signature"));
    struct dcms_errinfo sub;
    dcms_errinfo_init(&sub, NULL);
    if (!b64 || !ct_b64_any_decode(b64, sig, sizeof(sig), &len) || len != 64)
        return "the stored signature is unreadable";
    if (!dcms_iam_signing_key_verify(c->app->iam, dcms_store_rows_text(rows, i, SIG_SIGNER),
                                     dcms_store_rows_text(rows, i, SIG_KEY_ID), h, 32, sig,
                                     dcms_store_rows_text(rows, i, SIG_SIGNED_AT), NULL, &sub))
        return NULL;
    return c->ei->arena ? dcms_arena_sprintf(c->ei->arena, "the signature does not verify: %s",
                                             sub.message[0] ? sub.message : "refused")
                        : "the signature does not verify";
}

/* What IAM can re-check offline of a used assertion: challenge, type, UV flag. */
static const char *recheck_assertion(const struct ct_call *c, const struct dcms_store_rows *rows,
                                     size_t i, const json_t *ev, const unsigned char h[32])
{
    (void)rows;
    (void)i;
    struct dcms_errinfo sub;
    dcms_errinfo_init(&sub, NULL);
    if (!dcms_iam_webauthn_recheck_assertion(
            h, 32, json_string_value(json_object_get(ev, "client_data_json")),
            json_string_value(json_object_get(ev, "authenticator_data")), true, &sub))
        return NULL;
    return c->ei->arena && sub.message[0] ? dcms_arena_sprintf(c->ei->arena, "%s", sub.message)
                                          : "the stored assertion does not hold";
}

/* ---- the table ---- */

static const struct ct_sigtype table[] = {
    {"digital", "key_id", decode_digital, verify_digital, recheck_key_signature, true},
    {"mfa", "key_id", decode_mfa, verify_mfa, recheck_key_signature, false},
    {"biometric", "assertion", decode_biometric, verify_biometric, recheck_assertion, false},
};

const struct ct_sigtype *ct_sigtype_find(const char *name)
{
    for (size_t i = 0; name && i < sizeof(table) / sizeof(table[0]); i++)
        if (strcmp(table[i].name, name) == 0)
            return &table[i];
    return NULL;
}

void ct_sigtype_names(char *buf, size_t cap)
{
    size_t n = sizeof(table) / sizeof(table[0]);
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(buf);
        snprintf(buf + len, cap - len, "%s%s",
                 i == 0       ? ""
                 : i + 1 == n ? " or "
                              : ", ",
                 table[i].name);
    }
}
