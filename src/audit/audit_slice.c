/*
 * Slices of the log for the parties of a resource: the events that name a
 * contract and the enclaves serving it, with a proof a party can check
 * offline. An event's hash covers its whole content and the chain links it
 * to every other event, so proving that an event is in the log by the chain
 * alone would mean handing over every event between it and a checkpoint,
 * other parties' included. Instead the server walks that stretch itself
 * (hashes, links, checkpoint signatures) and, only when it verified, signs
 * with the audit key an inclusion statement naming each event of the slice
 * by (seq, hash) and the checkpoint it was walked to. The statement is as
 * strong as a checkpoint (the same key signs both); the stored checkpoint
 * travels with it. See src/audit/README.md, "Slices".
 */
#include "audit/audit_int.h"
#include "dcms/clock.h"
#include "dcms/crypto.h"
#include "dcms/jcs.h"
#include "dcms/log.h"
#include "dcms/store.h"

#define SLICE_WALK_BATCH 1000

/* Refusal records name the resource a caller was refused; they are that caller's, not the
 * parties' history, and are left out of a slice. */
static struct dcms_query q_slice =
    DCMS_QUERY("audit_slice",
               "SELECT seq, id, time, actor, action, resource_type, resource_id, outcome, details, "
               "client_ip, request_id, prev_hash, hash FROM audit_events "
               "WHERE resource_type = $1 AND resource_id = $2 AND seq > $3 AND seq <= $4 "
               "AND action NOT LIKE 'request.%' AND action NOT LIKE '%.read!_denied' ESCAPE '!' "
               "ORDER BY seq LIMIT $5");

static int64_t seq_of(const json_t *o)
{
    json_t *s = json_object_get(o, "seq");
    return json_is_integer(s) ? (int64_t)json_integer_value(s)
           : json_is_real(s)  ? (int64_t)json_real_value(s)
                              : 0;
}

/* Ascending merge of `add` into `all` (both sorted by seq; seqs are unique per event). */
static enum dcms_err merge(json_t *all, json_t *add, struct dcms_errinfo *ei)
{
    size_t i = 0;
    for (size_t k = 0; k < json_array_size(add); k++) {
        json_t *ev = json_array_get(add, k);
        int64_t s = seq_of(ev);
        while (i < json_array_size(all) && seq_of(json_array_get(all, i)) < s)
            i++;
        if (i < json_array_size(all) && seq_of(json_array_get(all, i)) == s)
            continue; /* an event naming two resources of the set */
        if (json_array_insert(all, i, ev))
            return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    }
    return DCMS_OK;
}

/* The events of the slice: at most limit + 1 (the extra one says more follow). */
static enum dcms_err slice_events(struct dcms_store_tx *tx, const struct dcms_audit_resource *res,
                                  size_t nres, int64_t after, int64_t upto, int64_t limit,
                                  json_t *out, struct dcms_errinfo *ei)
{
    enum dcms_err e = DCMS_OK;
    for (size_t r = 0; !e && r < nres; r++) {
        struct dcms_store_val p[] = {DCMS_VAL_TEXT(res[r].type), DCMS_VAL_TEXT(res[r].id),
                                     DCMS_VAL_INT(after), DCMS_VAL_INT(upto),
                                     DCMS_VAL_INT(limit + 1)};
        struct dcms_store_rows *rows = NULL;
        json_t *part = json_array();
        if (!part)
            return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
        if (!(e = dcms_store_exec(tx, &q_slice, p, 5, &rows, NULL, ei)) &&
            !(e = audit_rows_to_events(rows, part, ei)))
            e = merge(out, part, ei);
        dcms_store_rows_free(rows);
        json_decref(part);
    }
    while (!e && json_array_size(out) > (size_t)limit + 1)
        json_array_remove(out, json_array_size(out) - 1);
    return e;
}

/* Walks the chain from `from` to checkpoint `to` inside `tx`; false (logged) when broken. */
static enum dcms_err walk(struct dcms_audit *a, struct dcms_store_tx *tx, int64_t from, int64_t to,
                          bool *ok, struct dcms_errinfo *ei)
{
    struct dcms_audit_report r;
    struct audit_verifier v;
    audit_verifier_init(&v, dcms_sign_key_public(a->key), false, &r);
    enum dcms_err e = DCMS_OK;
    int64_t at = from;
    while (!e && !v.failed && at <= to) {
        json_t *events = json_array();
        if (!events)
            return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
        e = audit_store_events_range(tx, at, to, SLICE_WALK_BATCH, events, ei);
        size_t n = json_array_size(events);
        if (!e && n) {
            int64_t last = seq_of(json_array_get(events, n - 1));
            e = audit_verify_batch(tx, &v, events, at, last, ei);
            at = last + 1;
        }
        json_decref(events);
        if (!e && n < SLICE_WALK_BATCH)
            break;
    }
    if (!e && !v.failed && v.last_seq != to)
        audit_verifier_fail(&v, v.last_seq + 1,
                            "events up to the checkpoint at seq %lld are missing", (long long)to);
    *ok = !e && !v.failed && r.checkpoints_checked > 0;
    if (!e && !*ok)
        DCMS_LOG(DCMS_LOG_ERROR, "audit", "refusing to sign a slice: seq %lld: %s",
                 (long long)r.first_bad_seq, r.reason[0] ? r.reason : "no checkpoint reached");
    return e;
}

/* Signs the canonical JSON of `statement` with the audit key (base64 into sig64). */
static enum dcms_err sign_statement(struct dcms_audit *a, const json_t *statement, char sig64[128],
                                    struct dcms_errinfo *ei)
{
    struct dcms_buf msg;
    dcms_buf_init(&msg, 16u << 20);
    unsigned char sig[DCMS_SIGN_BYTES];
    enum dcms_err e = dcms_jcs_canonicalize(statement, &msg, ei);
    if (!e && (e = dcms_sign_detached(a->key, msg.ptr, msg.len, sig)))
        dcms_err_set(ei, e, NULL);
    dcms_buf_release(&msg);
    if (!e)
        dcms_b64_encode(sig64, sig, sizeof(sig));
    return e;
}

enum dcms_err dcms_audit_slice(struct dcms_audit *a, const struct dcms_audit_resource *res,
                               size_t nres, int64_t after_seq, int64_t limit, json_t **out,
                               bool *more, struct dcms_errinfo *ei)
{
    *out = NULL;
    *more = false;
    struct dcms_store_tx *tx = NULL;
    json_t *events = NULL, *cps = NULL, *entries = NULL, *statement = NULL, *slice = NULL;
    enum dcms_err e = dcms_audit_sync(a, ei);
    if (!e)
        e = dcms_audit_checkpoint(a, ei);
    if (e || (e = dcms_store_begin(a->store, DCMS_TX_READ, &tx, ei)))
        goto out;
    int64_t cp_seq = 0;
    if ((e = audit_store_last_checkpoint(tx, &cp_seq, ei)))
        goto out;
    events = json_array();
    cps = json_array();
    entries = json_array();
    if (!events || !cps || !entries) {
        e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
        goto out;
    }
    if ((e = slice_events(tx, res, nres, after_seq, cp_seq, limit, events, ei)))
        goto out;
    if (json_array_size(events) > (size_t)limit) {
        *more = true;
        json_array_remove(events, (size_t)limit);
    }
    json_t *cp = json_null();
    if (cp_seq > 0) {
        if ((e = audit_store_checkpoints_range(tx, cp_seq, cp_seq, 1, cps, ei)))
            goto out;
        cp = json_array_get(cps, 0);
    }
    if (json_array_size(events)) {
        bool ok = false;
        if ((e = walk(a, tx, seq_of(json_array_get(events, 0)), cp_seq, &ok, ei)))
            goto out;
        if (!ok) {
            e = dcms_err_set(ei, DCMS_ERR_INTERNAL, "the audit chain does not verify");
            goto out;
        }
    }
    size_t i;
    json_t *ev;
    json_array_foreach(events, i, ev)
    {
        if (json_array_append_new(entries, json_pack("{s:I, s:O}", "seq", (json_int_t)seq_of(ev),
                                                     "hash", json_object_get(ev, "hash")))) {
            e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
            goto out;
        }
    }
    char now[DCMS_TIME_STRLEN], sig64[128], pk64[64];
    dcms_time_format(dcms_clock_now_us(), now);
    const char *key_id = dcms_sign_key_id(a->key);
    statement =
        json_pack("{s:s, s:o, s:O, s:s, s:s}", "type", DCMS_AUDIT_INCLUSION_TYPE, "checkpoint",
                  cp_seq > 0 ? json_pack("{s:I, s:O}", "seq", (json_int_t)cp_seq, "hash",
                                         json_object_get(cp, "hash"))
                             : json_null(),
                  "events", entries, "time", now, "key_id", key_id);
    if (!statement) {
        e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
        goto out;
    }
    if ((e = sign_statement(a, statement, sig64, ei)))
        goto out;
    dcms_b64_encode(pk64, dcms_sign_key_public(a->key), DCMS_SIGN_PUBLIC_LEN);
    slice = json_pack("{s:s, s:O, s:{s:s, s:s, s:O, s:O, s:s}}", "type", DCMS_AUDIT_SLICE_TYPE,
                      "events", events, "proof", "public_key", pk64, "key_id", key_id, "checkpoint",
                      cp, "statement", statement, "signature", sig64);
    if (!slice) {
        e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
        goto out;
    }
    *out = slice;
out:
    if (tx)
        dcms_store_rollback(tx);
    json_decref(events);
    json_decref(cps);
    json_decref(entries);
    json_decref(statement);
    return e;
}

/* ---- offline ---- */

static bool fail(struct dcms_audit_report *r, int64_t seq, const char *why)
{
    if (r->ok) {
        r->ok = false;
        r->first_bad_seq = seq;
        snprintf(r->reason, sizeof(r->reason), "%s", why);
    }
    return false;
}

static bool sig_ok(const unsigned char pk[DCMS_SIGN_PUBLIC_LEN], const struct dcms_buf *msg,
                   const char *sig64)
{
    unsigned char sig[DCMS_SIGN_BYTES];
    size_t n = 0;
    return sig64 && dcms_b64_decode(sig, sizeof(sig), sig64, strlen(sig64), &n) == DCMS_OK &&
           n == sizeof(sig) && dcms_sign_verify(pk, msg->ptr, msg->len, sig);
}

bool dcms_audit_slice_verify(const json_t *slice, const unsigned char pk[DCMS_SIGN_PUBLIC_LEN],
                             struct dcms_audit_report *r)
{
    memset(r, 0, sizeof(*r));
    r->ok = true;
    char key_id[17], why[200];
    dcms_sign_key_id_of(pk, key_id);
    json_t *events = json_object_get(slice, "events"), *proof = json_object_get(slice, "proof");
    json_t *st = json_object_get(proof, "statement"), *cp = json_object_get(proof, "checkpoint");
    json_t *entries = json_object_get(st, "events");
    const char *type = json_string_value(json_object_get(slice, "type"));
    if (!type || strcmp(type, DCMS_AUDIT_SLICE_TYPE) != 0 || !json_is_array(events) ||
        !json_is_object(st) || !json_is_array(entries))
        return fail(r, 0, "not an audit slice (type, events, proof.statement)");
    const char *st_type = json_string_value(json_object_get(st, "type"));
    const char *st_key = json_string_value(json_object_get(st, "key_id"));
    if (!st_type || strcmp(st_type, DCMS_AUDIT_INCLUSION_TYPE) != 0)
        return fail(r, 0, "the proof is not an inclusion statement");
    if (!st_key || strcmp(st_key, key_id) != 0)
        return fail(r, 0, "the inclusion statement is signed by another key");
    /* The statement's signature first: everything else is checked against what it names. */
    struct dcms_buf msg;
    dcms_buf_init(&msg, 16u << 20);
    bool good = dcms_jcs_canonicalize(st, &msg, NULL) == DCMS_OK &&
                sig_ok(pk, &msg, json_string_value(json_object_get(proof, "signature")));
    dcms_buf_release(&msg);
    if (!good)
        return fail(r, 0, "the inclusion statement's signature is not valid");
    /* The stored checkpoint it was walked to. */
    json_t *stcp = json_object_get(st, "checkpoint");
    if (json_is_object(stcp)) {
        int64_t cseq = seq_of(cp);
        const char *chash = json_string_value(json_object_get(cp, "hash"));
        const char *ctime = json_string_value(json_object_get(cp, "time"));
        const char *ckey = json_string_value(json_object_get(cp, "key_id"));
        dcms_buf_init(&msg, 4096);
        good = cseq > 0 && chash && ctime && ckey && strcmp(ckey, key_id) == 0 &&
               audit_checkpoint_message(cseq, chash, ctime, ckey, &msg) == DCMS_OK &&
               sig_ok(pk, &msg, json_string_value(json_object_get(cp, "signature")));
        dcms_buf_release(&msg);
        if (!good)
            return fail(r, cseq, "the checkpoint's signature is not valid");
        const char *sthash = json_string_value(json_object_get(stcp, "hash"));
        if (seq_of(stcp) != cseq || !sthash || strcmp(sthash, chash) != 0)
            return fail(r, cseq, "the inclusion statement names another checkpoint");
        r->checkpoints_checked = 1;
    } else if (json_array_size(events)) {
        return fail(r, 0, "the events are not covered by a checkpoint");
    }
    if (json_array_size(entries) != json_array_size(events))
        return fail(r, 0, "the slice holds other events than the inclusion statement names");
    int64_t prev_seq = 0;
    const char *prev_hash = NULL;
    size_t i;
    json_t *ev;
    json_array_foreach(events, i, ev)
    {
        int64_t seq = seq_of(ev);
        json_t *ent = json_array_get(entries, i);
        const char *hash = json_string_value(json_object_get(ev, "hash"));
        const char *ehash = json_string_value(json_object_get(ent, "hash"));
        const char *link = json_string_value(json_object_get(ev, "prev_hash"));
        if (seq <= prev_seq || !hash || !link) {
            snprintf(why, sizeof(why), "event %zu is malformed or out of order", i);
            return fail(r, seq, why);
        }
        json_t *body = json_deep_copy(ev);
        char computed[65];
        /* seq may have been read as a real: the hash covers the integer */
        good = body && json_object_set_new(body, "seq", json_integer(seq)) == 0 &&
               json_object_del(body, "hash") == 0 && audit_hash(body, computed, NULL) == DCMS_OK &&
               strcmp(computed, hash) == 0;
        json_decref(body);
        if (!good) {
            snprintf(why, sizeof(why), "event seq %lld: hash does not match its content",
                     (long long)seq);
            return fail(r, seq, why);
        }
        if (seq_of(ent) != seq || !ehash || strcmp(ehash, hash) != 0) {
            snprintf(why, sizeof(why),
                     "event seq %lld is not the one the inclusion statement names", (long long)seq);
            return fail(r, seq, why);
        }
        if (json_is_object(stcp) && seq > seq_of(stcp)) {
            snprintf(why, sizeof(why), "event seq %lld is after the checkpoint", (long long)seq);
            return fail(r, seq, why);
        }
        if (prev_hash && seq == prev_seq + 1 && strcmp(link, prev_hash) != 0) {
            snprintf(why, sizeof(why), "event seq %lld: prev_hash does not match seq %lld",
                     (long long)seq, (long long)prev_seq);
            return fail(r, seq, why);
        }
        prev_seq = seq;
        prev_hash = hash;
        r->events_checked++;
        r->last_seq = seq;
    }
    snprintf(r->reason, sizeof(r->reason), "%s",
             "events, checkpoint and inclusion statement verified");
    return true;
}
