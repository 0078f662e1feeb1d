/*
 * The chain's codecs and its verifier. An event's hash covers the canonical
 * JSON (RFC 8785) of all its fields but `hash`; a checkpoint signature
 * covers the canonical JSON of {type, seq, hash, time, key_id}. The verifier
 * is fed events in ascending seq and each checkpoint right after its event,
 * by the server's walk over the store and by the offline verifier alike.
 */
#include <stdarg.h>

#include "audit/audit_int.h"
#include "dcms/crypto.h"
#include "dcms/jcs.h"

const char *dcms_audit_outcome_str(enum dcms_audit_outcome o)
{
    switch (o) {
    case DCMS_AUDIT_SUCCESS:
        return "success";
    case DCMS_AUDIT_DENIED:
        return "denied";
    default:
        return "error";
    }
}

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

json_t *audit_event_body(int64_t seq, const char *id, const char *time, const char *actor,
                         const char *action, const char *resource_type, const char *resource_id,
                         const char *outcome, const json_t *details, const char *client_ip,
                         const char *request_id, const char *prev_hash)
{
    /* The body only reads the details: share them rather than copy. */
    json_t *d = details ? json_incref((json_t *)details) : json_object();
    return json_pack("{s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "seq",
                     (json_int_t)seq, "id", str_or_null(id), "time", str_or_null(time), "actor",
                     str_or_null(actor), "action", str_or_null(action), "resource_type",
                     str_or_null(resource_type), "resource_id", str_or_null(resource_id), "outcome",
                     str_or_null(outcome), "details", d ? d : json_null(), "client_ip",
                     str_or_null(client_ip), "request_id", str_or_null(request_id), "prev_hash",
                     str_or_null(prev_hash));
}

enum dcms_err audit_hash(const json_t *body, char out[65], struct dcms_errinfo *ei)
{
    unsigned char d[DCMS_SHA256_LEN];
    enum dcms_err e = dcms_jcs_sha256(body, d, ei);
    if (e)
        return e;
    dcms_hex_encode(out, d, sizeof(d));
    return DCMS_OK;
}

enum dcms_err audit_checkpoint_message(int64_t seq, const char *hash, const char *time,
                                       const char *key_id, struct dcms_buf *out)
{
    json_t *m = json_pack("{s:s, s:I, s:s, s:s, s:s}", "type", "dcms.audit.checkpoint.v1", "seq",
                          (json_int_t)seq, "hash", hash, "time", time, "key_id", key_id);
    if (!m)
        return DCMS_ERR_NOMEM;
    enum dcms_err e = dcms_jcs_canonicalize(m, out, NULL);
    json_decref(m);
    return e;
}

void audit_verifier_init(struct audit_verifier *v, const unsigned char pk[DCMS_SIGN_PUBLIC_LEN],
                         bool from_genesis, struct dcms_audit_report *r)
{
    memset(v, 0, sizeof(*v));
    memcpy(v->pk, pk, DCMS_SIGN_PUBLIC_LEN);
    dcms_sign_key_id_of(pk, v->key_id);
    memset(r, 0, sizeof(*r));
    r->ok = true;
    v->r = r;
    audit_range_init(&v->range);
    if (from_genesis) {
        v->tree = true;
        v->started = true;
        v->expect_seq = 1;
        memcpy(v->last_hash, AUDIT_GENESIS_HASH, 65);
    }
}

void audit_verifier_fail(struct audit_verifier *v, int64_t seq, const char *fmt, ...)
{
    if (v->failed)
        return;
    v->failed = true;
    v->r->ok = false;
    v->r->first_bad_seq = seq;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->r->reason, sizeof(v->r->reason), fmt, ap);
    va_end(ap);
}

static const char *get_str(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static bool is_hex64(const char *s)
{
    if (!s || strlen(s) != 64)
        return false;
    for (int i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

bool audit_verifier_event(struct audit_verifier *v, const json_t *ev)
{
    if (v->failed)
        return false;
    json_t *jseq = json_object_get(ev, "seq");
    int64_t seq = json_is_integer(jseq) ? (int64_t)json_integer_value(jseq)
                  : json_is_real(jseq)  ? (int64_t)json_real_value(jseq)
                                        : 0;
    const char *hash = get_str(ev, "hash"), *prev = get_str(ev, "prev_hash");
    if (seq <= 0 || !is_hex64(hash) || !is_hex64(prev)) {
        audit_verifier_fail(v, v->expect_seq ? v->expect_seq : seq,
                            "event after seq %lld is malformed", (long long)v->last_seq);
        return false;
    }
    if (!v->started) { /* an export that starts mid-chain is anchored at its first event */
        v->started = true;
        v->expect_seq = seq;
        memcpy(v->last_hash, prev, 65);
    }
    if (seq != v->expect_seq) {
        audit_verifier_fail(v, v->expect_seq,
                            "event seq %lld is missing (the next event present is seq %lld)",
                            (long long)v->expect_seq, (long long)seq);
        return false;
    }
    if (strcmp(prev, v->last_hash) != 0) {
        audit_verifier_fail(v, seq, "event seq %lld: prev_hash does not match the previous event",
                            (long long)seq);
        return false;
    }
    json_t *body = json_deep_copy(ev);
    char computed[65];
    unsigned char leaf[AUDIT_HASH_LEN];
    bool ok = body && json_object_del(body, "hash") == 0 &&
              audit_event_hashes(body, computed, leaf, NULL) == 0;
    json_decref(body);
    if (!ok || strcmp(computed, hash) != 0) {
        audit_verifier_fail(v, seq, "event seq %lld: hash does not match its content",
                            (long long)seq);
        return false;
    }
    if (v->tree && v->range.size != seq - 1)
        v->tree = false; /* cannot happen when fed in order; never compare a wrong root */
    if (v->tree)
        audit_range_push(&v->range, leaf, NULL);
    memcpy(v->last_hash, hash, 65);
    v->last_seq = seq;
    v->expect_seq = seq + 1;
    v->r->events_checked++;
    v->r->last_seq = seq;
    return true;
}

bool audit_verifier_checkpoint(struct audit_verifier *v, const json_t *cp)
{
    if (v->failed)
        return false;
    json_t *jseq = json_object_get(cp, "seq");
    int64_t seq = json_is_integer(jseq) ? (int64_t)json_integer_value(jseq) : 0;
    const char *hash = get_str(cp, "hash"), *time = get_str(cp, "time");
    const char *key_id = get_str(cp, "key_id"), *sig64 = get_str(cp, "signature");
    if (seq <= 0 || !is_hex64(hash) || !time || !key_id || !sig64) {
        audit_verifier_fail(v, seq, "checkpoint at seq %lld is malformed", (long long)seq);
        return false;
    }
    if (seq != v->last_seq) {
        audit_verifier_fail(v, seq, "checkpoint at seq %lld refers to a missing event",
                            (long long)seq);
        return false;
    }
    if (strcmp(key_id, v->key_id) != 0) {
        audit_verifier_fail(v, seq, "checkpoint at seq %lld is signed by unknown key %.32s",
                            (long long)seq, key_id);
        return false;
    }
    unsigned char sig[DCMS_SIGN_BYTES];
    size_t siglen = 0;
    struct dcms_buf msg;
    dcms_buf_init(&msg, 4096);
    bool ok = dcms_b64_decode(sig, sizeof(sig), sig64, strlen(sig64), &siglen) == DCMS_OK &&
              siglen == sizeof(sig) &&
              audit_checkpoint_message(seq, hash, time, key_id, &msg) == DCMS_OK &&
              dcms_sign_verify(v->pk, msg.ptr, msg.len, sig);
    dcms_buf_release(&msg);
    if (!ok) {
        audit_verifier_fail(v, seq, "checkpoint at seq %lld: signature is not valid",
                            (long long)seq);
        return false;
    }
    if (strcmp(hash, v->last_hash) != 0) {
        audit_verifier_fail(v, seq,
                            "checkpoint at seq %lld: the signed hash differs from the chain "
                            "(events up to it were rewritten)",
                            (long long)seq);
        return false;
    }
    v->r->checkpoints_checked++;
    return true;
}

bool audit_verifier_tree_head(struct audit_verifier *v, const json_t *th)
{
    if (v->failed)
        return false;
    json_t *js = json_object_get(th, "tree_size");
    int64_t seq = json_is_integer(js) ? (int64_t)json_integer_value(js) : 0;
    int64_t size = 0;
    unsigned char root[AUDIT_HASH_LEN], mine[AUDIT_HASH_LEN];
    if (seq != v->last_seq) {
        audit_verifier_fail(v, seq, "tree head of size %lld refers to a missing event",
                            (long long)seq);
        return false;
    }
    if (!audit_tree_head_verify(th, v->pk, &size, root) || size != seq) {
        audit_verifier_fail(v, seq,
                            "tree head of size %lld: signature is not valid or not by key %s",
                            (long long)seq, v->key_id);
        return false;
    }
    if (v->tree) {
        audit_range_root(&v->range, mine);
        if (memcmp(mine, root, AUDIT_HASH_LEN) != 0) {
            audit_verifier_fail(v, seq,
                                "tree head of size %lld: the signed root differs from the tree "
                                "of the events (events up to it were rewritten)",
                                (long long)seq);
            return false;
        }
    }
    v->r->tree_heads_checked++;
    return true;
}

void audit_verifier_finish(struct audit_verifier *v)
{
    if (!v->failed && !v->r->reason[0])
        snprintf(v->r->reason, sizeof(v->r->reason), "%s",
                 v->r->tree_heads_checked ? "chain, tree heads and checkpoints verified"
                                          : "chain and checkpoints verified");
}

json_t *dcms_audit_report_json(const struct dcms_audit_report *r)
{
    return json_pack("{s:b, s:I, s:I, s:I, s:o, s:I, s:s}", "ok", r->ok, "events_checked",
                     (json_int_t)r->events_checked, "checkpoints_checked",
                     (json_int_t)r->checkpoints_checked, "tree_heads_checked",
                     (json_int_t)r->tree_heads_checked, "first_bad_seq",
                     r->ok ? json_null() : json_integer(r->first_bad_seq), "last_seq",
                     (json_int_t)r->last_seq, "reason", r->reason);
}
