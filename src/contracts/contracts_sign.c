/*
 * Contract signatures. A signature is over the terms hash (SHA-256 of the
 * RFC 8785 form of the signed content) and comes in three types:
 * "digital" (Ed25519 with a key the signer registered), "mfa" (digital
 * plus a fresh TOTP code) and "biometric" (a WebAuthn assertion with the
 * user-verified flag whose challenge is the hash). Evidence is checked by
 * IAM (dcms/credentials.h) outside the contract's write transaction, whose
 * own checks (state, current hash, side not yet signed) are then repeated
 * under the write lock, so a contract edited meanwhile is never signed. /verify re-checks every
 * stored signature.
 */
#include "dcms/app.h"
#include "dcms/arena.h"
#include "dcms/clock.h"
#include "dcms/credentials.h"
#include "dcms/crypto.h"
#include "dcms/json.h"
#include "dcms/store.h"
#include "dcms/uuid.h"
#include "contracts/contracts_int.h"

#define SIG_COLS                                                                                   \
    "id, side, signer_id, type, key_id, algorithm, signed_hash, terms_version, signed_at, "        \
    "evidence, voided_at, void_reason"

static struct dcms_query q_sig_insert = DCMS_QUERY(
    "ct_sig_insert",
    "INSERT INTO contract_signatures (id, contract_id, terms_version, side, signer_id, type, "
    "key_id, algorithm, signed_hash, signed_at, evidence) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, "
    "$9, $10, $11)");
static struct dcms_query q_sig_live =
    DCMS_QUERY("ct_sig_live", "SELECT " SIG_COLS " FROM contract_signatures WHERE contract_id = $1 "
                              "AND voided_at IS NULL ORDER BY signed_at, id");
static struct dcms_query q_sig_all =
    DCMS_QUERY("ct_sig_all", "SELECT " SIG_COLS " FROM contract_signatures WHERE contract_id = $1 "
                             "ORDER BY signed_at, id");
static struct dcms_query q_sig_void =
    DCMS_QUERY("ct_sig_void", "UPDATE contract_signatures SET voided_at = $2, void_reason = $3 "
                              "WHERE contract_id = $1 AND voided_at IS NULL");
static struct dcms_query q_sig_mirror =
    DCMS_QUERY("ct_sig_mirror", "UPDATE contracts SET signatures = $2 WHERE id = $1");
static struct dcms_query q_touch =
    DCMS_QUERY("ct_touch", "UPDATE contracts SET updated_at = $2, version = version + 1 "
                           "WHERE id = $1 AND version = $3");
static struct dcms_query q_version_hash =
    DCMS_QUERY("ct_version_hash", "SELECT terms_version, terms_hash FROM contract_versions "
                                  "WHERE contract_id = $1");

static json_t *parse_text(const char *s)
{
    json_t *v = s ? json_loads(s, JSON_DECODE_ANY, NULL) : NULL;
    return v ? v : json_object();
}

static json_t *sig_json(const struct dcms_store_rows *rows, size_t i)
{
#define T(c) dcms_store_rows_text(rows, i, c)
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:s, s:o}", "id", T(0), "side", T(1),
                  "signer_id", T(2), "type", T(3), "key_id", T(4), "algorithm", T(5), "signed_hash",
                  T(6), "terms_version", (json_int_t)dcms_store_rows_int(rows, i, 7), "signed_at",
                  T(8), "evidence", parse_text(T(9)));
    if (o && T(10)) {
        json_object_set_new(o, "voided_at", json_string(T(10)));
        json_object_set_new(o, "void_reason", json_string(T(11) ? T(11) : ""));
    }
#undef T
    return o;
}

enum dcms_err ct_signatures_refresh(struct dcms_store_tx *tx, const char *id, const char *now,
                                    struct dcms_errinfo *ei)
{
    (void)now;
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_exec(tx, &q_sig_live, (struct dcms_store_val[]){DCMS_VAL_TEXT(id)},
                                      1, &rows, NULL, ei);
    if (e)
        return e;
    json_t *a = json_array();
    for (size_t i = 0; a && i < dcms_store_rows_count(rows); i++)
        json_array_append_new(a, sig_json(rows, i));
    dcms_store_rows_free(rows);
    char *text = a ? json_dumps(a, JSON_COMPACT) : NULL;
    json_decref(a);
    if (!text)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    e = dcms_store_exec(tx, &q_sig_mirror,
                        (struct dcms_store_val[]){DCMS_VAL_TEXT(id), DCMS_VAL_TEXT(text)}, 2, NULL,
                        NULL, ei);
    free(text);
    return e;
}

enum dcms_err ct_signatures_void(struct dcms_store_tx *tx, const char *id, const char *now,
                                 const char *reason, uint64_t *n, struct dcms_errinfo *ei)
{
    return dcms_store_exec(
        tx, &q_sig_void,
        (struct dcms_store_val[]){DCMS_VAL_TEXT(id), DCMS_VAL_TEXT(now), DCMS_VAL_TEXT(reason)}, 3,
        NULL, n, ei);
}

enum dcms_err ct_signatures_complete(struct dcms_store_tx *tx, const char *id, const char *hash,
                                     bool *provider, bool *consumer, struct dcms_errinfo *ei)
{
    struct dcms_store_rows *rows = NULL;
    *provider = *consumer = false;
    enum dcms_err e = dcms_store_exec(tx, &q_sig_live, (struct dcms_store_val[]){DCMS_VAL_TEXT(id)},
                                      1, &rows, NULL, ei);
    if (e)
        return e;
    const char *signer[2] = {NULL, NULL}, *key[2] = {NULL, NULL};
    for (size_t i = 0; i < dcms_store_rows_count(rows); i++) {
        if (strcmp(dcms_store_rows_text(rows, i, 6), hash) != 0)
            continue;
        int s = strcmp(dcms_store_rows_text(rows, i, 1), "provider") == 0 ? 0 : 1;
        *(s == 0 ? provider : consumer) = true;
        signer[s] = dcms_store_rows_text(rows, i, 2);
        key[s] = dcms_store_rows_text(rows, i, 4);
    }
    /* Separation of duties, re-checked at activation: two signers, two keys. */
    if (signer[0] && signer[1] && strcmp(signer[0], signer[1]) == 0)
        e = dcms_err_set(ei, DCMS_ERR_CONFLICT,
                         "both sides were signed by the same signer (%s): a contract needs two "
                         "different signers",
                         signer[0]);
    else if (key[0] && key[1] && strcmp(key[0], key[1]) == 0)
        e = dcms_err_set(ei, DCMS_ERR_CONFLICT,
                         "both sides were signed with the same key (%s): a contract needs two "
                         "different signers",
                         key[0]);
    dcms_store_rows_free(rows);
    return e;
}

/*
 * Separation of duties when signing: whoever signed the other side over
 * `hash` may not sign this one, nor may the key (or passkey) used there.
 * `key_id` is NULL when not known yet.
 */
static enum dcms_err other_side_check(const struct ct_call *c, struct dcms_store_tx *tx,
                                      const char *id, const char *hash, const char *side,
                                      const char *key_id, const char *key_field)
{
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_exec(tx, &q_sig_live, (struct dcms_store_val[]){DCMS_VAL_TEXT(id)},
                                      1, &rows, NULL, c->ei);
    if (e)
        return e;
    for (size_t i = 0; !e && i < dcms_store_rows_count(rows); i++) {
        const char *other = dcms_store_rows_text(rows, i, 1);
        if (strcmp(dcms_store_rows_text(rows, i, 6), hash) != 0 || strcmp(other, side) == 0)
            continue;
        if (strcmp(dcms_store_rows_text(rows, i, 2), c->p->id) == 0)
            e = dcms_err_set(c->ei, DCMS_ERR_FORBIDDEN,
                             "you signed the %s side: the %s side needs a different signer "
                             "(separation of duties)",
                             other, side);
        else if (key_id && strcmp(dcms_store_rows_text(rows, i, 4), key_id) == 0)
            e = dcms_err_field(c->ei, key_field,
                               "uses the key that signed the %s side: the %s side needs a "
                               "different signer and key",
                               other, side);
    }
    dcms_store_rows_free(rows);
    return e;
}

/* ---- the request ---- */

struct sign_in {
    const char *type, *terms_hash, *key_id, *signature_b64, *totp_code, *side;
    const json_t *assertion;
    unsigned char sig[64];
    unsigned char hash[32];
};

static bool b64_any_decode(const char *s, unsigned char *out, size_t cap, size_t *len)
{
    size_t n = strlen(s);
    if (n == 0 || n > 4 * cap)
        return false;
    char *tmp = malloc(n + 1);
    if (!tmp)
        return false;
    for (size_t i = 0; i <= n; i++)
        tmp[i] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
    bool ok = dcms_b64_decode(out, cap, tmp, n, len) == DCMS_OK;
    free(tmp);
    return ok;
}

static bool hex_decode32(const char *s, unsigned char out[32])
{
    if (!s || strlen(s) != 64)
        return false;
    for (size_t i = 0; i < 32; i++) {
        unsigned v = 0;
        for (size_t j = 0; j < 2; j++) {
            char ch = s[2 * i + j];
            v <<= 4;
            if (ch >= '0' && ch <= '9')
                v |= (unsigned)(ch - '0');
            else if (ch >= 'a' && ch <= 'f')
                v |= (unsigned)(ch - 'a' + 10);
            else
                return false;
        }
        out[i] = (unsigned char)v;
    }
    return true;
}

static const char *opt_string(const json_t *b, const char *key, size_t max, struct dcms_errinfo *ei)
{
    const json_t *v = json_object_get(b, key);
    if (!v)
        return NULL;
    if (!json_is_string(v) || json_string_length(v) < 1 || json_string_length(v) > max ||
        strlen(json_string_value(v)) != json_string_length(v)) {
        dcms_err_field(ei, key, "must be a string of 1 to %zu characters", max);
        return NULL;
    }
    return json_string_value(v);
}

static void decode_sign(const json_t *b, struct sign_in *in, struct dcms_errinfo *ei)
{
    static const char *const keys[] = {"type",      "terms_hash", "key_id", "signature",
                                       "totp_code", "assertion",  "side",   NULL};
    memset(in, 0, sizeof(*in));
    if (!json_is_object(b)) {
        dcms_err_field(ei, "", "must be a JSON object");
        return;
    }
    dcms_json_only_members(b, "", keys, ei);
    in->type = opt_string(b, "type", 16, ei);
    bool digital = in->type && strcmp(in->type, "digital") == 0;
    bool mfa = in->type && strcmp(in->type, "mfa") == 0;
    bool bio = in->type && strcmp(in->type, "biometric") == 0;
    if (!digital && !mfa && !bio)
        dcms_err_field(ei, "type", "must be digital, mfa or biometric");
    in->terms_hash = opt_string(b, "terms_hash", 64, ei);
    if (!in->terms_hash || !hex_decode32(in->terms_hash, in->hash))
        dcms_err_field(ei, "terms_hash",
                       "must be the contract's terms_hash you are signing (64 lowercase hex)");
    in->side = opt_string(b, "side", 16, ei);
    if (in->side && strcmp(in->side, "provider") && strcmp(in->side, "consumer"))
        dcms_err_field(ei, "side", "must be provider or consumer");
    in->key_id = opt_string(b, "key_id", DCMS_SIGNING_KEY_ID_MAX, ei);
    in->signature_b64 = opt_string(b, "signature", 200, ei);
    in->totp_code = opt_string(b, "totp_code", 16, ei);
    in->assertion = json_object_get(b, "assertion");
    if (digital || mfa) {
        if (!in->key_id)
            dcms_err_field(ei, "key_id", "is required for a %s signature", in->type);
        size_t len = 0;
        if (!in->signature_b64 ||
            !b64_any_decode(in->signature_b64, in->sig, sizeof(in->sig), &len) || len != 64)
            dcms_err_field(ei, "signature",
                           "must be the base64 Ed25519 signature (64 bytes) of the terms hash");
        if (in->assertion)
            dcms_err_field(ei, "assertion", "belongs to a biometric signature");
    }
    if (mfa) {
        bool digits = in->totp_code && strlen(in->totp_code) >= 6 && strlen(in->totp_code) <= 8;
        for (const char *p = in->totp_code; digits && *p; p++)
            digits = *p >= '0' && *p <= '9';
        if (!digits)
            dcms_err_field(ei, "totp_code",
                           "must be the current 6-digit code of your authenticator");
    } else if (in->totp_code && !bio) {
        dcms_err_field(ei, "totp_code", "belongs to an mfa signature");
    }
    if (bio) {
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
}

/* Checks done before and again under the write lock: state, hash, side, not yet signed. */
static enum dcms_err precheck(const struct ct_call *c, struct dcms_store_tx *tx, const char *id,
                              const struct sign_in *in, const char *key_id, bool lock,
                              struct ct_row *r, struct dcms_store_rows **rows, const char **side)
{
    enum dcms_err e =
        lock ? ct_load_locked(tx, id, rows, r, c->ei) : ct_load(tx, id, rows, r, c->ei);
    if (e || (e = ct_authorize(c, r, "contracts:sign")))
        return e;
    if (c->p->roles & DCMS_ROLE_ADMIN)
        return dcms_err_set(c->ei, DCMS_ERR_FORBIDDEN,
                            "administrators manage contracts but never sign for a party");
    bool prov = ct_member_of(c->p, r->provider_id, DCMS_ROLE_PROVIDER);
    bool cons = ct_member_of(c->p, r->consumer_id, DCMS_ROLE_CONSUMER);
    if (in->side && strcmp(in->side, "provider") == 0)
        cons = false;
    else if (in->side)
        prov = false;
    if (!prov && !cons)
        return dcms_err_set(c->ei, DCMS_ERR_FORBIDDEN,
                            "only the provider's and the consumer's authorised members sign "
                            "(the party itself, or a member of the party organization holding "
                            "the role of its side)");
    if (prov && cons)
        return dcms_err_field(c->ei, "side", "is required: you may sign for either side");
    *side = prov ? "provider" : "consumer";
    if ((e = ct_transition_check(CT_OP_SIGN, r->status, c->ei)))
        return e;
    if (strcmp(in->terms_hash, r->terms_hash) != 0)
        return dcms_err_set(c->ei, DCMS_ERR_CONFLICT,
                            "the terms changed: terms_hash %s is not the current one (%s, terms "
                            "version %lld); review and sign the current version",
                            in->terms_hash, r->terms_hash, (long long)r->terms_version);
    bool ps = false, cs = false;
    if ((e = ct_signatures_complete(tx, id, r->terms_hash, &ps, &cs, c->ei)))
        return e;
    if (strcmp(*side, "provider") == 0 ? ps : cs)
        return dcms_err_set(c->ei, DCMS_ERR_CONFLICT, "the %s side has already signed", *side);
    return other_side_check(c, tx, id, r->terms_hash, *side, key_id,
                            strcmp(in->type, "biometric") == 0 ? "assertion" : "key_id");
}

/* Evidence checks through IAM; problems become field details (422). */
static enum dcms_err check_evidence(const struct ct_call *c, struct sign_in *in, json_t **evidence,
                                    char *key_id, size_t key_cap, char *alg, size_t alg_cap)
{
    struct dcms_errinfo *ei = c->ei;
    struct dcms_errinfo sub;
    dcms_errinfo_init(&sub, ei->arena);
    enum dcms_err e;
    if (strcmp(in->type, "biometric") == 0) {
        struct dcms_webauthn_result res;
        e = dcms_iam_webauthn_verify_assertion(c->app->iam, c->p->id, in->hash, 32, in->assertion,
                                               true, &res, &sub);
        if (e == DCMS_ERR_NOT_FOUND || e == DCMS_ERR_VALIDATION || e == DCMS_ERR_FORBIDDEN)
            return dcms_err_field(ei, "assertion", "was refused: %s",
                                  sub.message[0] ? sub.message : dcms_err_str(e));
        if (e)
            return dcms_err_set(ei, e, "%s", sub.message);
        if (!res.user_verified)
            return dcms_err_field(ei, "assertion", "lacks the user-verified flag");
        const json_t *resp = json_object_get(in->assertion, "response");
        *evidence = json_pack("{s:s, s:i, s:O?, s:O?, s:O?, s:b, s:I}", "credential_id",
                              res.credential_id, "cose_alg", res.cose_alg, "client_data_json",
                              json_object_get(resp, "clientDataJSON"), "authenticator_data",
                              json_object_get(resp, "authenticatorData"), "signature",
                              json_object_get(resp, "signature"), "user_verified",
                              res.user_verified, "sign_count", (json_int_t)res.sign_count);
        snprintf(key_id, key_cap, "%s", res.credential_id);
        snprintf(alg, alg_cap, "%s",
                 res.cose_alg == -7     ? "ES256"
                 : res.cose_alg == -8   ? "EdDSA"
                 : res.cose_alg == -257 ? "RS256"
                                        : "WebAuthn");
        return *evidence ? DCMS_OK : dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    }
    struct dcms_signing_key_info info;
    e = dcms_iam_signing_key_verify(c->app->iam, c->p->id, in->key_id, in->hash, 32, in->sig, NULL,
                                    &info, &sub);
    if (e == DCMS_ERR_NOT_FOUND)
        return dcms_err_field(ei, "key_id", "is not a signing key registered to you");
    if (e == DCMS_ERR_VALIDATION || e == DCMS_ERR_FORBIDDEN)
        return dcms_err_field(ei, "signature", "was refused: %s",
                              sub.message[0] ? sub.message : dcms_err_str(e));
    if (e)
        return dcms_err_set(ei, e, "%s", sub.message);
    bool mfa = strcmp(in->type, "mfa") == 0;
    if (mfa) {
        dcms_errinfo_init(&sub, ei->arena);
        e = dcms_iam_totp_check(c->app->iam, c->p->id, in->totp_code, &sub);
        if (e == DCMS_ERR_CONFLICT)
            return dcms_err_field(ei, "totp_code",
                                  "cannot be checked: you have no confirmed TOTP "
                                  "enrolment");
        if (e == DCMS_ERR_VALIDATION) /* IAM's own words: wrong, or used and when the next comes */
            return dcms_err_field(ei, "totp_code", "%s",
                                  sub.ndetails ? sub.details[0].problem
                                               : "is wrong or already used");
        if (e == DCMS_ERR_RATE_LIMITED) /* failed attempts locked the account: no code is checked */
            return dcms_err_set(
                ei, e, "%s", sub.message[0] ? sub.message : "too many failed attempts; try later");
        if (e)
            return dcms_err_set(ei, e, "%s", sub.message);
    }
    char now[DCMS_TIME_STRLEN];
    dcms_time_format(dcms_clock_now_us(), now);
    *evidence = json_pack("{s:s, s:s}", "signature", in->signature_b64, "message",
                          "the 32 raw bytes of signed_hash");
    if (*evidence && mfa)
        json_object_set_new(*evidence, "totp_verified_at", json_string(now));
    snprintf(key_id, key_cap, "%s", in->key_id);
    snprintf(alg, alg_cap, "%s", info.alg[0] ? info.alg : "Ed25519");
    return *evidence ? DCMS_OK : dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
}

enum dcms_err ct_sign(const struct ct_call *c, const char *id, const json_t *body, json_t **out)
{
    struct sign_in in;
    decode_sign(body, &in, c->ei);
    if (c->ei->code)
        return c->ei->code;
    struct dcms_store_tx *tx = NULL;
    struct dcms_store_rows *rows = NULL;
    struct ct_row r;
    const char *side = NULL;
    json_t *evidence = NULL;
    char *ev_text = NULL;
    char key_id[200], alg[32];
    /* First look: everything that does not need the evidence, without holding a lock. */
    enum dcms_err e = dcms_store_begin(c->app->store, DCMS_TX_READ, &tx, c->ei);
    if (e)
        return e;
    e = precheck(c, tx, id, &in, in.key_id, false, &r, &rows, &side);
    dcms_store_rows_free(rows);
    rows = NULL;
    dcms_store_rollback(tx);
    tx = NULL;
    if (e)
        goto out;
    if ((e = check_evidence(c, &in, &evidence, key_id, sizeof(key_id), alg, sizeof(alg))))
        goto out;
    /* Then under the write lock, the same checks again: the contract is still
     * PendingSignature, its hash is still the one signed (an edit changes it),
     * and this side has not signed meanwhile. The other side signing in
     * between is fine. */
    if ((e = dcms_store_begin(c->app->store, DCMS_TX_WRITE, &tx, c->ei)))
        goto out;
    if ((e = precheck(c, tx, id, &in, key_id, true, &r, &rows, &side)))
        goto out;
    char sid[DCMS_UUID_STRLEN], now[DCMS_TIME_STRLEN];
    dcms_uuid_v7(sid);
    dcms_time_format(dcms_clock_now_us(), now);
    if (!(ev_text = json_dumps(evidence, JSON_COMPACT | JSON_SORT_KEYS))) {
        e = dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
        goto out;
    }
    e = dcms_store_exec(tx, &q_sig_insert,
                        (struct dcms_store_val[]){
                            DCMS_VAL_TEXT(sid), DCMS_VAL_TEXT(id), DCMS_VAL_INT(r.terms_version),
                            DCMS_VAL_TEXT(side), DCMS_VAL_TEXT(c->p->id), DCMS_VAL_TEXT(in.type),
                            DCMS_VAL_TEXT(key_id), DCMS_VAL_TEXT(alg), DCMS_VAL_TEXT(r.terms_hash),
                            DCMS_VAL_TEXT(now), DCMS_VAL_TEXT(ev_text)},
                        11, NULL, NULL, c->ei);
    if (e == DCMS_ERR_CONFLICT) {
        dcms_errinfo_init(c->ei, c->ei->arena);
        e = dcms_err_set(c->ei, DCMS_ERR_CONFLICT, "the %s side has already signed", side);
    }
    uint64_t n = 0;
    if (!e)
        e = dcms_store_exec(tx, &q_touch,
                            (struct dcms_store_val[]){DCMS_VAL_TEXT(id), DCMS_VAL_TEXT(now),
                                                      DCMS_VAL_INT(r.version)},
                            3, NULL, &n, c->ei);
    if (!e && n != 1)
        e = dcms_err_set(c->ei, DCMS_ERR_CONFLICT, "the contract changed meanwhile; sign again");
    if (!e)
        e = ct_signatures_refresh(tx, id, now, c->ei);
    if (!e)
        e = ct_audit(c, tx, "contract.sign", id,
                     json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I}", "signature_id", sid,
                               "side", side, "type", in.type, "key_id", key_id, "signed_hash",
                               r.terms_hash, "terms_version", (json_int_t)r.terms_version,
                               "from_version", (json_int_t)r.version, "to_version",
                               (json_int_t)r.version + 1));
    if (!e) {
        e = ct_commit_answer(c, tx, id, out);
        tx = NULL;
    }
out:
    dcms_store_rows_free(rows);
    dcms_store_rollback(tx);
    json_decref(evidence);
    free(ev_text);
    return e;
}

/* ---- /verify ---- */

/* base64url without padding of 32 bytes (a WebAuthn challenge). */
static void b64url32(const unsigned char in[32], char out[48])
{
    char tmp[48];
    dcms_b64_encode(tmp, in, 32);
    size_t j = 0;
    for (size_t i = 0; tmp[i] && tmp[i] != '=' && j < 47; i++)
        out[j++] = tmp[i] == '+' ? '-' : tmp[i] == '/' ? '_' : tmp[i];
    out[j] = '\0';
}

/* What can be re-checked of a stored WebAuthn assertion: challenge, type and the UV flag. */
static const char *recheck_assertion(const json_t *ev, const unsigned char hash[32])
{
    const char *cd = json_string_value(json_object_get(ev, "client_data_json"));
    const char *ad = json_string_value(json_object_get(ev, "authenticator_data"));
    unsigned char buf[4096];
    size_t len = 0;
    if (!cd || !b64_any_decode(cd, buf, sizeof(buf) - 1, &len))
        return "the stored clientDataJSON is unreadable";
    buf[len] = '\0';
    json_t *c = json_loads((const char *)buf, 0, NULL);
    char want[48];
    b64url32(hash, want);
    const char *chal = json_string_value(json_object_get(c, "challenge"));
    const char *type = json_string_value(json_object_get(c, "type"));
    const char *problem = NULL;
    if (!chal || strcmp(chal, want) != 0)
        problem = "the assertion's challenge is not the signed hash";
    else if (!type || strcmp(type, "webauthn.get") != 0)
        problem = "the assertion is not a webauthn.get";
    json_decref(c);
    if (problem)
        return problem;
    if (!ad || !b64_any_decode(ad, buf, sizeof(buf), &len) || len < 37)
        return "the stored authenticatorData is unreadable";
    if (!(buf[32] & 0x04))
        return "the assertion lacks the user-verified flag";
    return NULL;
}

struct sig_check {
    json_t *out;
    const char *signer, *key_id, *type, *signed_at, *signed_hash;
    const char *sig_b64;
    int64_t terms_version;
    bool voided;
};

enum dcms_err ct_verify(const struct ct_call *c, const char *id, json_t **out)
{
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL, *srows = NULL, *vrows = NULL;
    json_t *result = NULL, *sigs = NULL, *terms = NULL, *content = NULL;
    enum dcms_err e = dcms_store_begin(c->app->store, DCMS_TX_READ, &tx, c->ei);
    if (e)
        return e;
    struct ct_row r;
    if ((e = ct_load(tx, id, &rows, &r, c->ei)) || (e = ct_authorize(c, &r, "contracts:read")))
        goto out;
    struct dcms_store_val idv[] = {DCMS_VAL_TEXT(id)};
    if ((e = dcms_store_exec(tx, &q_sig_all, idv, 1, &srows, NULL, c->ei)) ||
        (e = dcms_store_exec(tx, &q_version_hash, idv, 1, &vrows, NULL, c->ei)))
        goto out;
    dcms_store_rollback(tx);
    tx = NULL;

    /* The stored content, hashed again. */
    char computed[65] = "";
    unsigned char raw[32];
    terms = json_loads(r.terms, JSON_DECODE_ANY, NULL);
    content = terms ? ct_signed_content(r.id, r.provider_id, r.consumer_id, r.title, r.description,
                                        terms, r.terms_version)
                    : NULL;
    bool content_ok = content && !ct_content_hash(content, raw, computed, NULL) &&
                      strcmp(computed, r.terms_hash) == 0;
    const char *version_hash = NULL;
    for (size_t i = 0; i < dcms_store_rows_count(vrows); i++)
        if (dcms_store_rows_int(vrows, i, 0) == r.terms_version)
            version_hash = dcms_store_rows_text(vrows, i, 1);
    bool history_ok = version_hash && strcmp(version_hash, r.terms_hash) == 0;

    sigs = json_array();
    bool all_ok = content_ok && history_ok;
    size_t live = 0;
    for (size_t i = 0; sigs && i < dcms_store_rows_count(srows); i++) {
        const char *type = dcms_store_rows_text(srows, i, 3);
        const char *signed_hash = dcms_store_rows_text(srows, i, 6);
        int64_t tv = dcms_store_rows_int(srows, i, 7);
        bool voided = !dcms_store_rows_is_null(srows, i, 10);
        const char *problem = NULL;
        /* The hash it signed must be the recorded hash of its terms version ... */
        const char *vh = NULL;
        for (size_t j = 0; j < dcms_store_rows_count(vrows); j++)
            if (dcms_store_rows_int(vrows, j, 0) == tv)
                vh = dcms_store_rows_text(vrows, j, 1);
        if (!vh || strcmp(vh, signed_hash) != 0)
            problem = "the signed hash is not the recorded hash of its terms version";
        /* ... and, for a live one, the hash of the content as stored now. */
        else if (!voided && (!content_ok || strcmp(signed_hash, computed) != 0))
            problem = "the stored terms no longer hash to what was signed";
        unsigned char h[32];
        json_t *ev = parse_text(dcms_store_rows_text(srows, i, 9));
        if (!problem && !hex_decode32(signed_hash, h))
            problem = "the signed hash is malformed";
        if (!problem && strcmp(type, "biometric") == 0) {
            problem = recheck_assertion(ev, h);
        } else if (!problem) {
            unsigned char sig[64];
            size_t len = 0;
            const char *b64 = json_string_value(json_object_get(ev, "signature"));
            struct dcms_errinfo sub;
            dcms_errinfo_init(&sub, NULL);
            if (!b64 || !b64_any_decode(b64, sig, sizeof(sig), &len) || len != 64)
                problem = "the stored signature is unreadable";
            else if (dcms_iam_signing_key_verify(c->app->iam, dcms_store_rows_text(srows, i, 2),
                                                 dcms_store_rows_text(srows, i, 4), h, 32, sig,
                                                 dcms_store_rows_text(srows, i, 8), NULL, &sub))
                problem =
                    c->ei->arena
                        ? dcms_arena_sprintf(c->ei->arena, "the signature does not verify: %s",
                                             sub.message[0] ? sub.message : "refused")
                        : "the signature does not verify";
        }
        json_decref(ev);
        json_t *s = sig_json(srows, i);
        json_object_set_new(s, "valid", json_boolean(problem == NULL));
        json_object_set_new(s, "voided", json_boolean(voided));
        if (problem)
            json_object_set_new(s, "problem", json_string(problem));
        json_object_del(s, "evidence");
        json_array_append_new(sigs, s);
        if (!voided) {
            live++;
            all_ok = all_ok && problem == NULL;
        }
    }
    result =
        json_pack("{s:s, s:s, s:b, s:{s:s, s:s, s:b, s:b}, s:o}", "contract_id", r.id, "status",
                  ct_status_name(r.status), "valid", all_ok, "terms_hash", "stored", r.terms_hash,
                  "computed", content_ok || computed[0] ? computed : "", "matches", content_ok,
                  "recorded_in_history", history_ok, "signatures", sigs);
    sigs = NULL;
    (void)live;
    if (!result)
        e = dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
    *out = result;
out:
    json_decref(sigs);
    json_decref(terms);
    json_decref(content);
    dcms_store_rows_free(rows);
    dcms_store_rows_free(srows);
    dcms_store_rows_free(vrows);
    dcms_store_rollback(tx);
    return e;
}
