/*
 * Audit routes: list events with filters and a cursor, verify the whole
 * chain, export a range as JSON Lines for offline verification, and publish
 * the checkpoint public key.
 */
#include <limits.h>

#include "audit/audit_int.h"
#include "dcms/app.h"
#include "dcms/arena.h"
#include "dcms/clock.h"
#include "dcms/json.h"
#include "dcms/store.h"
#include "dcms/uuid.h"
#include "http/handlers.h"

#define LIST_DEFAULT 50
#define LIST_MAX 500
#define EXPORT_MAX_EVENTS 100000
#define EXPORT_MAX_BYTES (512u << 20)

/* An RFC 3339 query parameter, normalized so stored timestamps compare as text. */
static const char *query_time(struct dcms_http_req *req, const char *name)
{
    const char *s = dcms_http_req_query(req, name);
    int64_t us;
    if (!s)
        return NULL;
    if (dcms_time_parse(s, &us)) {
        dcms_err_field(req->ei, name, "must be an RFC 3339 timestamp such as 2026-11-23T20:14:19Z");
        return NULL;
    }
    char *out = dcms_arena_alloc(req->arena, DCMS_TIME_STRLEN);
    if (out)
        dcms_time_format(us, out);
    return out;
}

static const char *query_text(struct dcms_http_req *req, const char *name, size_t max_len)
{
    const char *s = dcms_http_req_query(req, name);
    if (s && (strlen(s) == 0 || strlen(s) > max_len)) {
        dcms_err_field(req->ei, name, "must be 1 to %zu characters", max_len);
        return NULL;
    }
    return s;
}

enum dcms_err dcms_audit_http_events(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    static const char *const params[] = {"actor",   "action", "resource_type", "resource_id",
                                         "outcome", "since",  "until",         "limit",
                                         "cursor",  NULL};
    dcms_http_query_only(req, params);
    struct audit_filter f = {.limit = LIST_DEFAULT};
    f.actor = query_text(req, "actor", 255);
    f.action_prefix = query_text(req, "action", 255);
    f.resource_type = query_text(req, "resource_type", 255);
    f.resource_id = query_text(req, "resource_id", 255);
    f.outcome = query_text(req, "outcome", 16);
    if (f.outcome && strcmp(f.outcome, "success") && strcmp(f.outcome, "denied") &&
        strcmp(f.outcome, "error"))
        dcms_err_field(req->ei, "outcome", "must be success, denied or error");
    f.since = query_time(req, "since");
    f.until = query_time(req, "until");
    dcms_http_query_int(req, "limit", 1, LIST_MAX, &f.limit);
    dcms_http_query_int(req, "cursor", 1, INT64_MAX, &f.before_seq);
    if (req->ei->code)
        return req->ei->code;

    /* Read your writes: what was committed before this request has its seq. */
    enum dcms_err e = dcms_audit_sync(req->app->audit, req->ei);
    if (e)
        return e;
    json_t *events = json_array();
    if (!events)
        return dcms_err_set(req->ei, DCMS_ERR_NOMEM, NULL);
    struct dcms_store_tx *tx;
    e = dcms_store_begin(req->app->store, DCMS_TX_READ, &tx, req->ei);
    if (!e) {
        e = audit_store_list(tx, &f, events, req->ei);
        dcms_store_rollback(tx);
    }
    if (e) {
        json_decref(events);
        return e;
    }
    size_t n = json_array_size(events);
    json_t *next = json_null();
    if (n == (size_t)f.limit) {
        json_int_t last = json_integer_value(json_object_get(json_array_get(events, n - 1), "seq"));
        next = json_sprintf("%lld", (long long)last);
    }
    return dcms_http_reply(req, resp, 200,
                           json_pack("{s:o, s:o}", "events", events, "next_cursor", next));
}

enum dcms_err dcms_audit_http_verify(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    struct dcms_audit_report r;
    enum dcms_err e = dcms_audit_verify(req->app->audit, &r, req->ei);
    if (e)
        return e;
    json_t *v = dcms_audit_report_json(&r);
    if (v)
        json_object_set_new(v, "key_id",
                            json_string(dcms_sign_key_id(dcms_audit_key(req->app->audit))));
    return dcms_http_reply(req, resp, 200, v);
}

static enum dcms_err append_line(struct dcms_buf *b, const char *wrap, json_t *v)
{
    json_t *line = json_pack("{s:O}", wrap, v);
    char *s = line ? dcms_json_dump(line, NULL) : NULL;
    json_decref(line);
    if (!s)
        return DCMS_ERR_NOMEM;
    enum dcms_err e = dcms_buf_appends(b, s);
    free(s);
    return e ? e : dcms_buf_append(b, "\n", 1);
}

enum dcms_err dcms_audit_http_export(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    static const char *const params[] = {"from_seq", "to_seq", NULL};
    dcms_http_query_only(req, params);
    int64_t from = 1, to = INT64_MAX;
    dcms_http_query_int(req, "from_seq", 1, INT64_MAX, &from);
    dcms_http_query_int(req, "to_seq", 1, INT64_MAX, &to);
    if (!req->ei->code && to < from)
        dcms_err_field(req->ei, "to_seq", "must not be below from_seq");
    if (!req->ei->code && to != INT64_MAX && to - from >= EXPORT_MAX_EVENTS)
        dcms_err_field(req->ei, "to_seq", "an export covers at most %d events; page with from_seq",
                       EXPORT_MAX_EVENTS);
    if (req->ei->code)
        return req->ei->code;
    if (to == INT64_MAX && from <= INT64_MAX - EXPORT_MAX_EVENTS)
        to = from + EXPORT_MAX_EVENTS - 1;

    /* An export verifies offline only as far as a signature reaches, so sign the head
     * now if it moved, and extend the range to the first checkpoint at or after to_seq:
     * then every exported event is covered by a checkpoint in the export. */
    enum dcms_err e = dcms_audit_sync(req->app->audit, req->ei);
    if (!e)
        e = dcms_audit_checkpoint(req->app->audit, req->ei);
    if (e)
        return e;
    struct dcms_store_tx *tx;
    if ((e = dcms_store_begin(req->app->store, DCMS_TX_READ, &tx, req->ei)))
        return e;
    json_t *events = json_array(), *cps = json_array(), *next_cp = json_array();
    if (next_cp && !(e = audit_store_checkpoints_range(tx, to, INT64_MAX, 1, next_cp, req->ei)) &&
        json_array_size(next_cp))
        to = (int64_t)json_integer_value(json_object_get(json_array_get(next_cp, 0), "seq"));
    json_decref(next_cp);
    struct dcms_buf b;
    dcms_buf_init(&b, EXPORT_MAX_BYTES);
    if (!e && (!events || !cps))
        e = dcms_err_set(req->ei, DCMS_ERR_NOMEM, NULL);
    if (!e)
        e = audit_store_events_range(tx, from, to, to - from + 1, events, req->ei);
    if (!e)
        e = audit_store_checkpoints_range(tx, from, to, EXPORT_MAX_EVENTS, cps, req->ei);
    /* The tree heads inside the range, and the tree before it (the compact range of
     * from_seq - 1 leaves), so an export from any seq is checked against the signed roots. */
    json_t *ths = json_array(), *tree = NULL;
    struct audit_range *range = malloc(sizeof(*range));
    if (!e && (!ths || !range))
        e = dcms_err_set(req->ei, DCMS_ERR_NOMEM, NULL);
    if (!e)
        e = audit_store_tree_heads_range(tx, from, to, EXPORT_MAX_EVENTS, ths, req->ei);
    int64_t leaves = 0;
    if (!e)
        e = audit_store_leaf_count(tx, &leaves, req->ei);
    if (!e && from - 1 <= leaves &&
        !(e = audit_range_load(from - 1, audit_store_node_get, tx, range, req->ei)))
        tree = audit_range_json(range);
    free(range);
    dcms_store_rollback(tx);
    if (!e) {
        char now[DCMS_TIME_STRLEN];
        dcms_time_format(dcms_clock_now_us(), now);
        size_t n = json_array_size(events);
        int64_t last =
            n ? (int64_t)json_integer_value(json_object_get(json_array_get(events, n - 1), "seq"))
              : from - 1;
        json_t *hdr = json_pack(
            "{s:s, s:I, s:I, s:I, s:s, s:s, s:O*}", "format", "dcms-audit-export/1", "from_seq",
            (json_int_t)from, "to_seq", (json_int_t)last, "events", (json_int_t)n, "key_id",
            dcms_sign_key_id(dcms_audit_key(req->app->audit)), "exported_at", now, "tree", tree);
        e = hdr ? append_line(&b, "export", hdr) : DCMS_ERR_NOMEM;
        json_decref(hdr);
        size_t ci = 0, ti = 0;
        for (size_t i = 0; !e && i < n; i++) {
            json_t *ev = json_array_get(events, i);
            json_int_t seq = json_integer_value(json_object_get(ev, "seq"));
            e = append_line(&b, "event", ev);
            for (; !e && ci < json_array_size(cps); ci++) {
                json_t *cp = json_array_get(cps, ci);
                if (json_integer_value(json_object_get(cp, "seq")) > seq)
                    break;
                e = append_line(&b, "checkpoint", cp);
            }
            for (; !e && ti < json_array_size(ths); ti++) {
                json_t *th = json_array_get(ths, ti);
                if (json_integer_value(json_object_get(th, "tree_size")) > seq)
                    break;
                e = append_line(&b, "tree_head", th);
            }
        }
        if (e)
            e = dcms_err_set(req->ei, e == DCMS_ERR_TOO_LARGE ? DCMS_ERR_TOO_LARGE : DCMS_ERR_NOMEM,
                             "the export is too large; request a smaller range");
    }
    json_decref(events);
    json_decref(cps);
    json_decref(ths);
    json_decref(tree);
    if (e) {
        dcms_buf_release(&b);
        return e;
    }
    resp->status = 200;
    resp->content_type = "application/x-ndjson";
    resp->body = dcms_buf_detach(&b, &resp->body_len);
    resp->body_owned = true;
    return DCMS_OK;
}

enum dcms_err dcms_audit_http_public_key(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    const struct dcms_sign_key *k = dcms_audit_key(req->app->audit);
    char pk64[64];
    dcms_b64_encode(pk64, dcms_sign_key_public(k), DCMS_SIGN_PUBLIC_LEN);
    return dcms_http_reply(req, resp, 200,
                           json_pack("{s:s, s:s, s:s}", "algorithm", "Ed25519", "key_id",
                                     dcms_sign_key_id(k), "public_key", pk64));
}

/* ---- the tree: heads, proofs, events and receipts ---- */

enum dcms_err dcms_audit_http_tree_head(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    json_t *th = NULL;
    enum dcms_err e = dcms_audit_tree_head(req->app->audit, &th, req->ei);
    return e ? e : dcms_http_reply(req, resp, 200, th);
}

/* A required positive integer query parameter. */
static void query_required(struct dcms_http_req *req, const char *name, int64_t min, int64_t *out)
{
    if (!dcms_http_req_query(req, name))
        dcms_err_field(req->ei, name, "is required");
    else
        dcms_http_query_int(req, name, min, INT64_MAX, out);
}

enum dcms_err dcms_audit_http_inclusion(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    static const char *const params[] = {"seq", "tree_size", NULL};
    dcms_http_query_only(req, params);
    int64_t seq = 0, size = 0;
    query_required(req, "seq", 1, &seq);
    query_required(req, "tree_size", 1, &size);
    if (req->ei->code)
        return req->ei->code;
    json_t *proof = NULL;
    enum dcms_err e = dcms_audit_inclusion(req->app->audit, seq, size, &proof, req->ei);
    return e ? e : dcms_http_reply(req, resp, 200, proof);
}

enum dcms_err dcms_audit_http_consistency(struct dcms_http_req *req, struct dcms_http_resp *resp)
{
    static const char *const params[] = {"first", "second", NULL};
    dcms_http_query_only(req, params);
    int64_t first = 0, second = 0;
    query_required(req, "first", 1, &first);
    query_required(req, "second", 1, &second);
    if (req->ei->code)
        return req->ei->code;
    json_t *proof = NULL;
    enum dcms_err e = dcms_audit_consistency(req->app->audit, first, second, &proof, req->ei);
    return e ? e : dcms_http_reply(req, resp, 200, proof);
}
