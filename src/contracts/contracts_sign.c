/*
 * Contract signatures. A signature is over the terms hash (SHA-256 of the
 * RFC 8785 form of the signed content) and comes in three types:
 * "digital" (Ed25519 with a key the signer registered), "mfa" (digital
 * plus a fresh TOTP code) and "biometric" (a WebAuthn assertion with the
 * user-verified flag whose challenge is the hash). Evidence is checked by
 * IAM (dcms/credentials.h) outside the contract's write transaction, whose
 * own checks (state, current hash, side not yet signed) are then repeated
 * under the write lock, so a contract edited meanwhile is never signed.
 * /verify re-checks every stored signature. What differs per type (its
 * members, its evidence, its re-check) is a row of contracts_sigtypes.c.
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

/*
 * The contract row's mirror of its live signatures (*text malloc'd): `rows`
 * (ct_q_sig_live's, in its order: signed_at, then id) with `added` (may be
 * NULL) in its place among them, as a read after inserting it would list it.
 */
static enum dcms_err mirror_json(const struct dcms_store_rows *rows,
                                 const struct ct_sig_fields *added, char **text,
                                 struct dcms_errinfo *ei)
{
    json_t *a = json_array();
    size_t n = dcms_store_rows_count(rows);
    for (size_t i = 0; a && i <= n; i++) {
        const char *at = i < n ? dcms_store_rows_text(rows, i, 8) : NULL;
        int cmp = at ? strcmp(at, added ? added->signed_at : "") : 1;
        if (added &&
            (cmp > 0 || (cmp == 0 && strcmp(dcms_store_rows_text(rows, i, 0), added->id) > 0))) {
            json_array_append_new(a, ct_sig_json_of(added));
            added = NULL;
        }
        if (i < n)
            json_array_append_new(a, ct_sig_json(rows, i));
    }
    *text = a ? json_dumps(a, JSON_COMPACT) : NULL;
    json_decref(a);
    return *text ? DCMS_OK : dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
}

/* The live signatures of `id` as the contract row mirrors them (*text malloc'd). */
static enum dcms_err live_json(struct dcms_store_tx *tx, const char *id, char **text,
                               struct dcms_errinfo *ei)
{
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_exec(
        tx, &ct_q_sig_live, (struct dcms_store_val[]){DCMS_VAL_TEXT(id)}, 1, &rows, NULL, ei);
    if (!e)
        e = mirror_json(rows, NULL, text, ei);
    dcms_store_rows_free(rows);
    return e;
}

enum dcms_err ct_signatures_refresh(struct dcms_store_tx *tx, const char *id,
                                    struct dcms_store_rows **row, struct dcms_errinfo *ei)
{
    char *text = NULL;
    enum dcms_err e = live_json(tx, id, &text, ei);
    if (e)
        return e;
    e = dcms_store_exec(tx, &ct_q_sig_mirror,
                        (struct dcms_store_val[]){DCMS_VAL_TEXT(id), DCMS_VAL_TEXT(text)}, 2, row,
                        NULL, ei);
    free(text);
    return e;
}

enum dcms_err ct_signatures_void(struct dcms_store_tx *tx, const char *id, const char *now,
                                 const char *reason, uint64_t *n, struct dcms_errinfo *ei)
{
    return dcms_store_exec(
        tx, &ct_q_sig_void,
        (struct dcms_store_val[]){DCMS_VAL_TEXT(id), DCMS_VAL_TEXT(now), DCMS_VAL_TEXT(reason)}, 3,
        NULL, n, ei);
}

enum dcms_err ct_signatures_complete(const struct dcms_store_rows *rows, const char *hash,
                                     bool *provider, bool *consumer, struct dcms_errinfo *ei)
{
    *provider = *consumer = false;
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
        return dcms_err_set(ei, DCMS_ERR_CONFLICT,
                            "both sides were signed by the same signer (%s): a contract needs two "
                            "different signers",
                            signer[0]);
    if (key[0] && key[1] && strcmp(key[0], key[1]) == 0)
        return dcms_err_set(ei, DCMS_ERR_CONFLICT,
                            "both sides were signed with the same key (%s): a contract needs two "
                            "different signers",
                            key[0]);
    return DCMS_OK;
}

/*
 * Separation of duties when signing: whoever signed the other side over
 * `hash` may not sign this one, nor may the key (or passkey) used there.
 * `key_id` is NULL when not known yet.
 */
static enum dcms_err other_side_check(const struct ct_call *c, const struct dcms_store_rows *rows,
                                      const char *hash, const char *side, const char *key_id,
                                      const char *key_field)
{
    enum dcms_err e = DCMS_OK;
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
    return e;
}

/* precheck's checks of the contract row: who, which side, state, hash. */
static enum dcms_err row_checks(const struct ct_call *c, const struct ct_sign_in *in,
                                const struct ct_row *r, const char **side)
{
    enum dcms_err e = ct_authorize(c, r, "contracts:sign");
    if (e)
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
    return DCMS_OK;
}

/*
 * Checks done before and again under the write lock: state, hash, side, not
 * yet signed. *live (when `live` is not NULL): the live signatures read for
 * them, on success.
 */
static enum dcms_err precheck(const struct ct_call *c, struct dcms_store_tx *tx, const char *id,
                              const struct ct_sign_in *in, const char *key_id, bool lock,
                              struct ct_row *r, struct dcms_store_rows **rows, const char **side,
                              struct dcms_store_rows **live)
{
    struct dcms_store_rows *sigs = NULL; /* its live signatures, read with it */
    enum dcms_err e = ct_load_live(tx, id, lock, rows, r, &sigs, c->ei);
    if (!e)
        e = row_checks(c, in, r, side);
    bool ps = false, cs = false;
    if (!e && !(e = ct_signatures_complete(sigs, r->terms_hash, &ps, &cs, c->ei))) {
        if (strcmp(*side, "provider") == 0 ? ps : cs)
            e = dcms_err_set(c->ei, DCMS_ERR_CONFLICT, "the %s side has already signed", *side);
        else
            e = other_side_check(c, sigs, r->terms_hash, *side, key_id, in->type->key_field);
    }
    if (!e && live)
        *live = sigs;
    else
        dcms_store_rows_free(sigs);
    return e;
}

/* The first look: everything that does not need the evidence, without holding a lock. */
static enum dcms_err first_look(const struct ct_call *c, const char *id,
                                const struct ct_sign_in *in)
{
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    struct ct_row r;
    const char *side = NULL;
    enum dcms_err e = dcms_store_begin(c->app->store, DCMS_TX_READ, &tx, c->ei);
    if (e)
        return e;
    e = precheck(c, tx, id, in, in->key_id, false, &r, &rows, &side, NULL);
    dcms_store_rows_free(rows);
    dcms_store_rollback(tx);
    return e;
}

enum dcms_err ct_sign(const struct ct_call *c, const char *id, const struct ct_sign_in *in,
                      struct ct_rec *out)
{
    struct dcms_store_tx *tx = NULL;
    struct dcms_store_rows *rows = NULL, *row = NULL; /* the contract read, and as written */
    struct dcms_store_rows *live = NULL;              /* its live signatures before this one */
    struct ct_row r;
    const char *side = NULL;
    struct ct_evidence ev = {NULL, "", ""};
    char *ev_text = NULL;
    enum dcms_err e;
    if (in->type->verify_first) {
        /* The evidence's check says nothing of the contract and spends nothing: it runs
         * first, and when it passes the contract's checks run once, under the write lock
         * (one read transaction fewer). Refused, the answer is what the first look would
         * have answered, then the refusal: the same as for the other types. */
        struct dcms_errinfo vei;
        dcms_errinfo_init(&vei, c->ei->arena);
        struct ct_call vc = *c;
        vc.ei = &vei;
        if ((e = in->type->verify(&vc, in, &ev))) {
            if (!(e = first_look(c, id, in))) {
                *c->ei = vei;
                e = vei.code;
            }
            goto out;
        }
    } else if ((e = first_look(c, id, in)) || (e = in->type->verify(c, in, &ev))) {
        goto out; /* the first look comes before a check that spends a code or a counter */
    }
    /* Then under the write lock, the checks (again, after a first look): the
     * contract is still PendingSignature, its hash is still the one signed (an
     * edit changes it), and this side has not signed meanwhile. The other side
     * signing in between is fine. */
    if ((e = dcms_store_begin(c->app->store, DCMS_TX_WRITE, &tx, c->ei)))
        goto out;
    if ((e = precheck(c, tx, id, in, ev.key_id, true, &r, &rows, &side, &live)))
        goto out;
    char sid[DCMS_UUID_STRLEN], now[DCMS_TIME_STRLEN];
    dcms_uuid_v7(sid);
    dcms_time_format(dcms_clock_now_us(), now);
    if (!(ev_text = json_dumps(ev.json, JSON_COMPACT | JSON_SORT_KEYS))) {
        e = dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
        goto out;
    }
    /* The event first: the signature row names it (its receipt). */
    char eid[DCMS_UUID_STRLEN] = "";
    e = ct_audit_id(c, tx, "contract.sign", id,
                    json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I}", "signature_id", sid,
                              "side", side, "type", in->type->name, "key_id", ev.key_id,
                              "signed_hash", r.terms_hash, "terms_version",
                              (json_int_t)r.terms_version, "from_version", (json_int_t)r.version,
                              "to_version", (json_int_t)r.version + 1),
                    eid);
    if (!e) /* goes out with the contract row's update below (a conflict shows there) */
        e = dcms_store_exec_later(
            tx, &ct_q_sig_insert,
            (struct dcms_store_val[]){
                DCMS_VAL_TEXT(sid), DCMS_VAL_TEXT(id), DCMS_VAL_INT(r.terms_version),
                DCMS_VAL_TEXT(side), DCMS_VAL_TEXT(c->p->id), DCMS_VAL_TEXT(in->type->name),
                DCMS_VAL_TEXT(ev.key_id), DCMS_VAL_TEXT(ev.alg), DCMS_VAL_TEXT(r.terms_hash),
                DCMS_VAL_TEXT(now), DCMS_VAL_TEXT(ev_text), DCMS_VAL_TEXT(eid)},
            12, c->ei);
    /* One write of the contract row: the new mirror, the time, the next version. */
    char *mirror = NULL;
    struct ct_sig_fields added = {.id = sid,
                                  .side = side,
                                  .signer_id = c->p->id,
                                  .type = in->type->name,
                                  .key_id = ev.key_id,
                                  .algorithm = ev.alg,
                                  .signed_hash = r.terms_hash,
                                  .terms_version = r.terms_version,
                                  .signed_at = now,
                                  .evidence = ev_text,
                                  .audit_event_id = eid};
    if (!e && !(e = mirror_json(live, &added, &mirror, c->ei)))
        e = dcms_store_exec(tx, &ct_q_touch,
                            (struct dcms_store_val[]){DCMS_VAL_TEXT(id), DCMS_VAL_TEXT(mirror),
                                                      DCMS_VAL_TEXT(now), DCMS_VAL_INT(r.version)},
                            4, &row, NULL, c->ei);
    free(mirror);
    if (e == DCMS_ERR_CONFLICT) { /* the live-signature index: a race with the same side */
        dcms_errinfo_init(c->ei, c->ei->arena);
        e = dcms_err_set(c->ei, DCMS_ERR_CONFLICT, "the %s side has already signed", side);
    }
    if (!e && dcms_store_rows_count(row) != 1)
        e = dcms_err_set(c->ei, DCMS_ERR_CONFLICT, "the contract changed meanwhile; sign again");
    if (!e) {
        e = ct_commit_answer(c, tx, id, row, NULL, out);
        tx = NULL;
        row = NULL;
    }
out:
    dcms_store_rows_free(rows);
    dcms_store_rows_free(row);
    dcms_store_rows_free(live);
    dcms_store_rollback(tx);
    json_decref(ev.json);
    free(ev_text);
    return e;
}

/* ---- /verify ---- */

enum dcms_err ct_verify(const struct ct_call *c, const char *id, struct ct_verify_out *out)
{
    struct dcms_store_tx *tx;
    struct dcms_store_rows *vrows = NULL;
    json_t *terms = NULL, *content = NULL;
    memset(out, 0, sizeof(*out));
    enum dcms_err e = dcms_store_begin(c->app->store, DCMS_TX_READ, &tx, c->ei);
    if (e)
        return e;
    struct ct_row *r = &out->rec.r;
    if ((e = ct_load(tx, id, &out->rec.rows, r, c->ei)) ||
        (e = ct_authorize(c, r, "contracts:read")))
        goto out;
    struct dcms_store_val idv[] = {DCMS_VAL_TEXT(id)};
    if ((e = dcms_store_exec(tx, &ct_q_sig_all, idv, 1, &out->sigs, NULL, c->ei)) ||
        (e = dcms_store_exec(tx, &ct_q_version_hash, idv, 1, &vrows, NULL, c->ei)))
        goto out;
    dcms_store_rollback(tx);
    tx = NULL;

    /* The stored content, hashed again. */
    unsigned char raw[32];
    terms = json_loads(r->terms, JSON_DECODE_ANY, NULL);
    content = terms ? ct_signed_content(r->id, r->provider_id, r->consumer_id, r->title,
                                        r->description, terms, r->terms_version)
                    : NULL;
    out->content_ok = content && !ct_content_hash(content, raw, out->computed, NULL) &&
                      strcmp(out->computed, r->terms_hash) == 0;
    const char *version_hash = NULL;
    for (size_t i = 0; i < dcms_store_rows_count(vrows); i++)
        if (dcms_store_rows_int(vrows, i, 0) == r->terms_version)
            version_hash = dcms_store_rows_text(vrows, i, 1);
    out->history_ok = version_hash && strcmp(version_hash, r->terms_hash) == 0;

    const struct dcms_store_rows *srows = out->sigs;
    size_t nsigs = dcms_store_rows_count(srows);
    out->checks = calloc(nsigs ? nsigs : 1, sizeof(*out->checks));
    if (!out->checks) {
        e = dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
        goto out;
    }
    out->valid = out->content_ok && out->history_ok;
    for (size_t i = 0; i < nsigs; i++) {
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
        else if (!voided && (!out->content_ok || strcmp(signed_hash, out->computed) != 0))
            problem = "the stored terms no longer hash to what was signed";
        unsigned char h[32];
        json_t *ev = ct_stored_json(dcms_store_rows_text(srows, i, 9));
        const struct ct_sigtype *st = ct_sigtype_find(type);
        if (!problem && !ct_hex_decode32(signed_hash, h))
            problem = "the signed hash is malformed";
        if (!problem && !st)
            problem = "the signature type is unknown";
        if (!problem)
            problem = st->recheck(c, srows, i, ev, h);
        json_decref(ev);
        out->checks[i] = (struct ct_sig_check){problem == NULL, voided, problem};
        if (!voided)
            out->valid = out->valid && problem == NULL;
    }
out:
    json_decref(terms);
    json_decref(content);
    dcms_store_rows_free(vrows);
    dcms_store_rollback(tx);
    if (e)
        ct_verify_release(out);
    return e;
}

void ct_verify_release(struct ct_verify_out *v)
{
    free(v->checks);
    v->checks = NULL;
    dcms_store_rows_free(v->sigs);
    v->sigs = NULL;
    ct_rec_release(&v->rec);
}
