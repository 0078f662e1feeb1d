/*
 * What the tree proves to outsiders: the latest signed tree head, inclusion
 * and consistency proofs (RFC 9162 2.1.3 and 2.1.4) computed from the
 * stored complete-subtree hashes (O(log^2 n) lookups, never the whole log),
 * and receipts: one event with its inclusion proof and the signed tree head
 * it is proven against, checkable offline with the audit public key
 * (dcms_audit_receipt_verify, `dcmsd audit verify-receipt`).
 */
#include "audit/audit_int.h"
#include "dcms/store.h"

static enum dcms_err last_head(struct dcms_store_tx *tx, json_t **th, int64_t *size,
                               struct dcms_errinfo *ei)
{
    enum dcms_err e = audit_store_last_tree_head(tx, th, ei);
    *size = !e && *th ? (int64_t)json_integer_value(json_object_get(*th, "tree_size")) : 0;
    return e;
}

enum dcms_err dcms_audit_tree_head(struct dcms_audit *a, json_t **out, struct dcms_errinfo *ei)
{
    *out = NULL;
    struct dcms_store_tx *tx;
    enum dcms_err e = dcms_store_begin(a->store, DCMS_TX_READ, &tx, ei);
    if (e)
        return e;
    int64_t size = 0;
    json_t *th = NULL;
    e = last_head(tx, &th, &size, ei);
    dcms_store_rollback(tx);
    if (e)
        return e;
    if (!th)
        return dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "no tree head has been signed yet");
    *out = th;
    return DCMS_OK;
}

enum dcms_err dcms_audit_inclusion(struct dcms_audit *a, int64_t seq, int64_t tree_size,
                                   json_t **out, struct dcms_errinfo *ei)
{
    *out = NULL;
    struct dcms_store_tx *tx;
    enum dcms_err e = dcms_store_begin(a->store, DCMS_TX_READ, &tx, ei);
    if (e)
        return e;
    int64_t size = 0;
    json_t *th = NULL, *path = NULL;
    if ((e = last_head(tx, &th, &size, ei)))
        goto out;
    if (tree_size > size) {
        e = dcms_err_field(ei, "tree_size", "must not exceed the latest signed tree size (%lld)",
                           (long long)size);
        goto out;
    }
    if (seq > tree_size) {
        e = dcms_err_field(ei, "seq", "must not exceed tree_size");
        goto out;
    }
    unsigned char leaf[AUDIT_HASH_LEN];
    char hex[65];
    path = json_array();
    if (!path) {
        e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
        goto out;
    }
    if ((e = audit_store_node_get(tx, 0, seq - 1, leaf, ei)) ||
        (e = audit_tree_inclusion(audit_store_node_get, tx, seq - 1, tree_size, path, ei)))
        goto out;
    dcms_hex_encode(hex, leaf, AUDIT_HASH_LEN);
    *out = json_pack("{s:I, s:I, s:I, s:s, s:O}", "seq", (json_int_t)seq, "leaf_index",
                     (json_int_t)(seq - 1), "tree_size", (json_int_t)tree_size, "leaf_hash", hex,
                     "audit_path", path);
    if (!*out)
        e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
out:
    dcms_store_rollback(tx);
    json_decref(th);
    json_decref(path);
    return e;
}

enum dcms_err dcms_audit_consistency(struct dcms_audit *a, int64_t first, int64_t second,
                                     json_t **out, struct dcms_errinfo *ei)
{
    *out = NULL;
    struct dcms_store_tx *tx;
    enum dcms_err e = dcms_store_begin(a->store, DCMS_TX_READ, &tx, ei);
    if (e)
        return e;
    int64_t size = 0;
    json_t *th = NULL, *path = NULL;
    if ((e = last_head(tx, &th, &size, ei)))
        goto out;
    if (second > size) {
        e = dcms_err_field(ei, "second", "must not exceed the latest signed tree size (%lld)",
                           (long long)size);
        goto out;
    }
    if (first > second) {
        e = dcms_err_field(ei, "first", "must not exceed second");
        goto out;
    }
    path = json_array();
    if (!path) {
        e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
        goto out;
    }
    if ((e = audit_tree_consistency(audit_store_node_get, tx, first, second, path, ei)))
        goto out;
    *out = json_pack("{s:I, s:I, s:O}", "first", (json_int_t)first, "second", (json_int_t)second,
                     "consistency_path", path);
    if (!*out)
        e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
out:
    dcms_store_rollback(tx);
    json_decref(th);
    json_decref(path);
    return e;
}

enum dcms_err dcms_audit_event_get(struct dcms_audit *a, const char *id, json_t **out,
                                   struct dcms_errinfo *ei)
{
    *out = NULL;
    struct dcms_store_tx *tx;
    enum dcms_err e = dcms_store_begin(a->store, DCMS_TX_READ, &tx, ei);
    if (e)
        return e;
    json_t *ev = NULL;
    bool pending = false;
    e = audit_store_event_by_id(tx, id, &ev, &pending, ei);
    dcms_store_rollback(tx);
    if (e)
        return e;
    if (!ev)
        return dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "no such audit event");
    json_object_set_new(ev, "status", json_string(pending ? "pending" : "sequenced"));
    *out = ev;
    return DCMS_OK;
}

enum dcms_err dcms_audit_receipt(struct dcms_audit *a, const char *id, json_t **out, bool *pending,
                                 struct dcms_errinfo *ei)
{
    *out = NULL;
    *pending = false;
    struct dcms_store_tx *tx;
    enum dcms_err e = dcms_store_begin(a->store, DCMS_TX_READ, &tx, ei);
    if (e)
        return e;
    json_t *ev = NULL, *th = NULL, *path = NULL;
    int64_t size = 0;
    if ((e = audit_store_event_by_id(tx, id, &ev, pending, ei)))
        goto out;
    if (!ev) {
        e = dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "no such audit event");
        goto out;
    }
    if (*pending)
        goto out;
    int64_t seq = (int64_t)json_integer_value(json_object_get(ev, "seq"));
    if ((e = last_head(tx, &th, &size, ei)))
        goto out;
    if (!th || size < seq) { /* sequenced, its tree head being signed in the same batch */
        *pending = true;
        goto out;
    }
    path = json_array();
    if (!path) {
        e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
        goto out;
    }
    if ((e = audit_tree_inclusion(audit_store_node_get, tx, seq - 1, size, path, ei)))
        goto out;
    char pk64[64];
    dcms_b64_encode(pk64, dcms_sign_key_public(a->key), DCMS_SIGN_PUBLIC_LEN);
    *out = json_pack("{s:s, s:O, s:{s:I, s:I, s:O}, s:O, s:s, s:s}", "type",
                     DCMS_AUDIT_RECEIPT_TYPE, "event", ev, "inclusion", "leaf_index",
                     (json_int_t)(seq - 1), "tree_size", (json_int_t)size, "audit_path", path,
                     "tree_head", th, "key_id", dcms_sign_key_id(a->key), "public_key", pk64);
    if (!*out)
        e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
out:
    dcms_store_rollback(tx);
    json_decref(ev);
    json_decref(th);
    json_decref(path);
    return e;
}

static bool bad(struct dcms_audit_report *r, int64_t seq, const char *why)
{
    r->ok = false;
    r->first_bad_seq = seq;
    snprintf(r->reason, sizeof(r->reason), "%s", why);
    return false;
}

static int64_t int_of(const json_t *j)
{
    return json_is_integer(j) ? (int64_t)json_integer_value(j)
           : json_is_real(j)  ? (int64_t)json_real_value(j)
                              : -1;
}

bool dcms_audit_receipt_verify(const json_t *receipt, const unsigned char pk[DCMS_SIGN_PUBLIC_LEN],
                               struct dcms_audit_report *r)
{
    memset(r, 0, sizeof(*r));
    r->ok = true;
    const char *type = json_string_value(json_object_get(receipt, "type"));
    json_t *ev = json_object_get(receipt, "event"), *inc = json_object_get(receipt, "inclusion");
    json_t *th = json_object_get(receipt, "tree_head");
    if (!type || strcmp(type, DCMS_AUDIT_RECEIPT_TYPE) != 0 || !json_is_object(ev) ||
        !json_is_object(inc) || !json_is_object(th))
        return bad(r, 0, "not an audit receipt (type, event, inclusion, tree_head)");
    int64_t seq = int_of(json_object_get(ev, "seq"));
    /* The tree head first: only the pinned key makes anything below mean something. */
    int64_t size = 0;
    unsigned char root[AUDIT_HASH_LEN];
    if (!audit_tree_head_verify(th, pk, &size, root))
        return bad(r, seq, "the tree head is not signed by the pinned audit key");
    r->tree_heads_checked = 1;
    json_t *body = json_deep_copy(ev);
    char hash[65];
    unsigned char leaf[AUDIT_HASH_LEN];
    const char *stored = json_string_value(json_object_get(ev, "hash"));
    bool ok = seq > 0 && stored && body &&
              json_object_set_new(body, "seq", json_integer(seq)) == 0 &&
              json_object_del(body, "hash") == 0 &&
              audit_event_hashes(body, hash, leaf, NULL) == DCMS_OK && strcmp(hash, stored) == 0;
    json_decref(body);
    if (!ok)
        return bad(r, seq, "the event's hash does not match its content");
    if (int_of(json_object_get(inc, "leaf_index")) != seq - 1 ||
        int_of(json_object_get(inc, "tree_size")) != size)
        return bad(r, seq, "the inclusion proof is for another leaf or tree size");
    if (!audit_verify_inclusion(seq - 1, size, leaf, json_object_get(inc, "audit_path"), root))
        return bad(r, seq, "the inclusion proof does not lead to the signed root");
    r->events_checked = 1;
    r->last_seq = seq;
    snprintf(r->reason, sizeof(r->reason), "event seq %lld is in the log of size %lld",
             (long long)seq, (long long)size);
    return true;
}
