/*
 * What a contract's parties need to check its signatures without dcms: the
 * signed content as the exact RFC 8785 bytes that were hashed, and each live
 * signature over it with the signer's public key as registered when it
 * signed. The evidence bundle (src/evidence/) puts this beside the enclave
 * attestations and the audit slice. Reads only; the read authorization is
 * the contract's own (404 to whoever may not see the contract).
 */
#include "dcms/app.h"
#include "dcms/credentials.h"
#include "dcms/crypto.h"
#include "dcms/jcs.h"
#include "dcms/json.h"
#include "dcms/store.h"
#include "contracts/contracts_int.h"

/* Live signatures only: voided ones signed content that is no longer the contract's. */
static struct dcms_query q_sigs = DCMS_QUERY(
    "ct_evidence_sigs",
    "SELECT id, side, signer_id, type, key_id, algorithm, signed_hash, terms_version, signed_at, "
    "evidence FROM contract_signatures WHERE contract_id = $1 AND voided_at IS NULL "
    "ORDER BY signed_at, id");

/* One live signature with the signer's public key (null when it cannot be found). */
static json_t *sig_entry(struct dcms_app *app, const struct dcms_store_rows *rows, size_t i)
{
#define T(c) dcms_store_rows_text(rows, i, c)
    json_t *ev = T(9) ? json_loads(T(9), 0, NULL) : NULL;
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:s}", "id", T(0), "side", T(1),
                          "signer_id", T(2), "type", T(3), "key_id", T(4), "algorithm", T(5),
                          "signed_hash", T(6), "terms_version",
                          (json_int_t)dcms_store_rows_int(rows, i, 7), "signed_at", T(8));
    if (!o) {
        json_decref(ev);
        return NULL;
    }
    if (strcmp(T(3), "biometric") == 0) {
        /* A WebAuthn assertion: its challenge is the signed hash. */
        json_object_set_new(o, "assertion", ev ? ev : json_null());
        json_object_set_new(o, "public_key", json_null());
        return o;
    }
    /* The signer may have sent base64url (the sign route takes either); the bundle always
     * carries the standard alphabet, which is what offline verifiers decode. */
    const char *sig64 = json_string_value(json_object_get(ev, "signature"));
    unsigned char h[32], sig[64];
    size_t n = 0;
    bool decoded = sig64 && ct_b64_any_decode(sig64, sig, sizeof(sig), &n) && n == 64;
    char b64[96]; /* 88 characters and the NUL */
    if (decoded)
        dcms_b64_encode(b64, sig, n);
    json_object_set_new(o, "signature",
                        decoded ? json_string(b64)
                        : sig64 ? json_string(sig64)
                                : json_null());
    /* The key as registered when it signed: looked up by re-verifying the signature at its
     * time. A signature that no longer verifies keeps a null key, and fails offline too. */
    struct dcms_signing_key_info info;
    struct dcms_errinfo sub;
    dcms_errinfo_init(&sub, NULL);
    json_t *pk = json_null();
    if (decoded && ct_hex_decode32(T(6), h) &&
        dcms_iam_signing_key_verify(app->iam, T(2), T(4), h, 32, sig, T(8), &info, &sub) ==
            DCMS_OK) {
        char kb64[64];
        dcms_b64_encode(kb64, info.public_key, sizeof(info.public_key));
        pk = json_string(kb64);
    }
    json_object_set_new(o, "public_key", pk);
    json_decref(ev);
#undef T
    return o;
}

enum dcms_err dcms_contracts_evidence(struct dcms_app *app, const struct dcms_principal *p,
                                      const char *client_ip, const char *request_id, const char *id,
                                      bool with_signatures, json_t **out, struct dcms_errinfo *ei)
{
    *out = NULL;
    bool hidden = false;
    struct ct_call c = {app, p, client_ip, request_id, ei, &hidden};
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL, *srows = NULL;
    json_t *terms = NULL, *content = NULL, *sigs = NULL, *res = NULL;
    struct dcms_buf jcs;
    dcms_buf_init(&jcs, CT_RENDER_MAX);
    enum dcms_err e = dcms_store_begin(app->store, DCMS_TX_READ, &tx, ei);
    if (e)
        return e;
    struct ct_row r;
    if ((e = ct_load(tx, id, &rows, &r, ei)) || (e = ct_authorize(&c, &r, "contracts:read")))
        goto out;
    if (with_signatures &&
        (e = dcms_store_exec(tx, &q_sigs, (struct dcms_store_val[]){DCMS_VAL_TEXT(r.id)}, 1, &srows,
                             NULL, ei)))
        goto out;
    dcms_store_rollback(tx);
    tx = NULL;
    res = json_pack("{s:{s:s, s:s, s:s, s:s, s:s, s:I, s:s}}", "contract", "id", r.id, "title",
                    r.title, "status", ct_status_name(r.status), "provider_id", r.provider_id,
                    "consumer_id", r.consumer_id, "terms_version", (json_int_t)r.terms_version,
                    "terms_hash", r.terms_hash);
    if (!res) {
        e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
        goto out;
    }
    if (with_signatures) {
        terms = json_loads(r.terms, JSON_DECODE_ANY, NULL);
        content = terms ? ct_signed_content(r.id, r.provider_id, r.consumer_id, r.title,
                                            r.description, terms, r.terms_version)
                        : NULL;
        if (!content || (e = dcms_jcs_canonicalize(content, &jcs, ei))) {
            e = e ? e : dcms_err_set(ei, DCMS_ERR_INTERNAL, "the stored terms are unreadable");
            goto out;
        }
        char *b64 = malloc(dcms_b64_encoded_len(jcs.len));
        if (!b64) {
            e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
            goto out;
        }
        dcms_b64_encode(b64, jcs.ptr, jcs.len);
        json_object_set_new(res, "signed_content",
                            json_pack("{s:s, s:O, s:s}", "canonical_base64", b64, "content",
                                      content, "algorithm", "SHA-256 over RFC 8785 JSON"));
        free(b64);
        sigs = json_array();
        for (size_t i = 0; sigs && i < dcms_store_rows_count(srows); i++)
            if (json_array_append_new(sigs, sig_entry(app, srows, i))) {
                json_decref(sigs);
                sigs = NULL;
            }
        if (!sigs || !json_object_get(res, "signed_content") ||
            json_object_set_new(res, "signatures", sigs)) {
            sigs = NULL;
            e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
            goto out;
        }
        sigs = NULL;
    }
    *out = res;
    res = NULL;
out:
    dcms_buf_release(&jcs);
    json_decref(terms);
    json_decref(content);
    json_decref(res);
    dcms_store_rows_free(rows);
    dcms_store_rows_free(srows);
    if (tx)
        dcms_store_rollback(tx);
    if (e == DCMS_ERR_NOT_FOUND && hidden)
        dcms_contracts_audit_hidden(
            app, p, client_ip, request_id, id,
            json_pack("{s:s}", "view", with_signatures ? "evidence bundle" : "audit slice"));
    return e;
}

enum dcms_err dcms_contracts_authorize_read(struct dcms_app *app, const struct dcms_principal *p,
                                            const char *client_ip, const char *id,
                                            struct dcms_errinfo *ei)
{
    struct ct_call c = {app, p, client_ip, NULL, ei, NULL};
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    struct ct_row r;
    if (!id || !dcms_uuid_valid(id))
        return dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "contract not found");
    enum dcms_err e = dcms_store_begin(app->store, DCMS_TX_READ, &tx, ei);
    if (e)
        return e;
    if (!(e = ct_load(tx, id, &rows, &r, ei)))
        e = ct_authorize(&c, &r, "contracts:read");
    dcms_store_rows_free(rows);
    dcms_store_rollback(tx);
    return e;
}
