/*
 * Appending pending events, signing checkpoints, and walking the store to
 * verify the chain and the tree. An append is one insert into
 * audit_pending inside the caller's transaction; positions, hashes and tree
 * heads come from the sequencer (audit_seq.c).
 */

#include "audit/audit_int.h"
#include "dcms/cancel.h"
#include "dcms/clock.h"
#include "dcms/json.h"
#include "dcms/log.h"
#include "dcms/periodic.h"
#include "dcms/store.h"
#include "dcms/uuid.h"

#define VERIFY_BATCH 1000

enum dcms_err audit_sign_checkpoint(struct dcms_audit *a, struct dcms_store_tx *tx, int64_t seq,
                                    const char *hash, struct dcms_errinfo *ei)
{
    char now[DCMS_TIME_STRLEN];
    dcms_time_format(dcms_clock_now_us(), now);
    const char *key_id = dcms_sign_key_id(a->key);
    struct dcms_buf msg;
    dcms_buf_init(&msg, 4096);
    unsigned char sig[DCMS_SIGN_BYTES];
    enum dcms_err e = audit_checkpoint_message(seq, hash, now, key_id, &msg);
    if (!e)
        e = dcms_sign_detached(a->key, msg.ptr, msg.len, sig);
    dcms_buf_release(&msg);
    if (e)
        return dcms_err_set(ei, e, NULL);
    char sig64[128];
    dcms_b64_encode(sig64, sig, sizeof(sig));
    return audit_store_add_checkpoint(tx, seq, hash, now, key_id, sig64, ei);
}

enum dcms_err dcms_audit_append(struct dcms_audit *a, struct dcms_store_tx *tx,
                                const struct dcms_audit_event *ev, char *id_out,
                                struct dcms_errinfo *ei)
{
    if (!ev->actor || !ev->action || (ev->details && !json_is_object(ev->details)))
        return dcms_err_set(ei, DCMS_ERR_INTERNAL, NULL);
    json_t *details = ev->details ? (json_t *)ev->details : json_object();
    char *details_text = dcms_json_dump(details, NULL);
    if (!ev->details)
        json_decref(details);
    if (!details_text)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);

    char id[DCMS_UUID_STRLEN], now[DCMS_TIME_STRLEN];
    dcms_uuid_v7(id);
    dcms_time_format(dcms_clock_now_us(), now);
    enum dcms_err e = audit_store_pending_insert(tx, id, now, ev, details_text, ei);
    free(details_text);
    if (!e && id_out)
        memcpy(id_out, id, DCMS_UUID_STRLEN);
    return e;
}

enum dcms_err dcms_audit_record(struct dcms_audit *a, const struct dcms_audit_event *ev,
                                struct dcms_errinfo *ei)
{
    struct dcms_store_tx *tx;
    enum dcms_err e = dcms_store_begin(a->store, DCMS_TX_WRITE, &tx, ei);
    if (e)
        return e;
    if ((e = dcms_audit_append(a, tx, ev, NULL, ei))) {
        dcms_store_rollback(tx);
        return e;
    }
    return dcms_store_commit(tx, ei);
}

enum dcms_err dcms_audit_change(struct dcms_audit *a, struct dcms_store_tx *tx,
                                const struct dcms_audit_who *who, const char *resource_type,
                                const char *action, const char *id, json_t *details,
                                struct dcms_errinfo *ei)
{
    return dcms_audit_change_id(a, tx, who, resource_type, action, id, details, NULL, ei);
}

enum dcms_err dcms_audit_change_id(struct dcms_audit *a, struct dcms_store_tx *tx,
                                   const struct dcms_audit_who *who, const char *resource_type,
                                   const char *action, const char *id, json_t *details,
                                   char *event_id, struct dcms_errinfo *ei)
{
    if (!details)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    struct dcms_audit_event ev = {
        .actor = who && who->actor ? who->actor : "system",
        .action = action,
        .resource_type = resource_type,
        .resource_id = id,
        .outcome = DCMS_AUDIT_SUCCESS,
        .details = details,
        .client_ip = who && who->client_ip && *who->client_ip ? who->client_ip : NULL,
        .request_id = who ? who->request_id : NULL,
    };
    enum dcms_err e = dcms_audit_append(a, tx, &ev, event_id, ei);
    json_decref(details);
    return e;
}

/* FNV-1a: spreads client addresses over the limiter's slots. */
static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; s && *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* One address's suppressed refusals of a past window, taken out of its slot to be written. */
struct refusal_summary {
    char client[48];
    int64_t window_s;
    unsigned recorded, suppressed, ntargets;
    bool targets_truncated;
    char targets[AUDIT_SUMMARY_TARGETS][AUDIT_TARGET_MAX];
};

#define SUMMARIES_PER_SWEEP 4

/*
 * Takes out the summaries of windows that have ended with refusals left
 * unrecorded (at most `cap`; the rest wait for the next sweep, their slots
 * stay claimed meanwhile). Caller holds a->mu.
 */
static size_t take_summaries(struct dcms_audit *a, int64_t now_s, struct refusal_summary *out,
                             size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < AUDIT_LIMIT_SLOTS && n < cap; i++) {
        struct audit_limit_slot *s = &a->slots[i];
        if (!s->client[0] || !s->suppressed || now_s - s->window_start_s < a->refusal_window_s)
            continue;
        struct refusal_summary *r = &out[n++];
        memcpy(r->client, s->client, sizeof(r->client));
        r->window_s = a->refusal_window_s;
        r->recorded = s->count;
        r->suppressed = s->suppressed;
        r->ntargets = s->ntargets;
        r->targets_truncated = s->targets_truncated;
        memcpy(r->targets, s->targets, sizeof(r->targets));
        s->suppressed = s->count = s->ntargets = 0;
        s->targets_truncated = false;
    }
    return n;
}

/* Writes one `request.refusals_summarized` event per summary. Called without a->mu. */
static void write_summaries(struct dcms_audit *a, const struct refusal_summary *sum, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct refusal_summary *r = &sum[i];
        json_t *targets = json_array();
        for (unsigned t = 0; targets && t < r->ntargets; t++)
            json_array_append_new(targets, json_string(r->targets[t]));
        json_t *details =
            json_pack("{s:i, s:i, s:i, s:o*, s:b}", "window_s", (json_int_t)r->window_s, "recorded",
                      (json_int_t)r->recorded, "suppressed", (json_int_t)r->suppressed, "targets",
                      targets, "targets_truncated", r->targets_truncated);
        struct dcms_audit_event ev = {
            .actor = "system",
            .action = "request.refusals_summarized",
            .resource_type = "client",
            .resource_id = r->client,
            .outcome = DCMS_AUDIT_DENIED,
            .details = details,
            .client_ip = r->client,
        };
        struct dcms_errinfo ei;
        dcms_errinfo_init(&ei, NULL);
        if (!details || dcms_audit_record(a, &ev, &ei))
            DCMS_LOG(DCMS_LOG_ERROR, "audit", "cannot record the refusal summary of %s: %s",
                     r->client, details ? ei.message : "out of memory");
        json_decref(details);
    }
}

/* Writes the summaries of every ended window (all of them when `all`). Takes a->mu. */
static void flush_summaries(struct dcms_audit *a, bool all)
{
    struct refusal_summary sum[SUMMARIES_PER_SWEEP];
    for (;;) {
        pthread_mutex_lock(&a->mu);
        /* At close every window counts as ended. */
        int64_t now_s = all ? INT64_MAX / 2 : dcms_clock_mono_us() / 1000000;
        size_t n = take_summaries(a, now_s, sum, SUMMARIES_PER_SWEEP);
        pthread_mutex_unlock(&a->mu);
        write_summaries(a, sum, n);
        if (n < SUMMARIES_PER_SWEEP || !all)
            return;
    }
}

/* Remembers the target of a suppressed refusal in its slot, once. Caller holds a->mu. */
static void note_target(struct audit_limit_slot *s, const struct dcms_audit_event *ev)
{
    const char *method = json_string_value(json_object_get(ev->details, "method"));
    char t[AUDIT_TARGET_MAX];
    snprintf(t, sizeof(t), "%s %s", method ? method : "?", ev->resource_id ? ev->resource_id : "");
    for (unsigned i = 0; i < s->ntargets; i++)
        if (strcmp(s->targets[i], t) == 0)
            return;
    if (s->ntargets == AUDIT_SUMMARY_TARGETS) {
        s->targets_truncated = true;
        return;
    }
    memcpy(s->targets[s->ntargets++], t, sizeof(t));
}

/*
 * Finds (or claims) the limiter slot of `client`: open addressing over
 * AUDIT_LIMIT_PROBES slots from its hash, so two addresses never share an
 * allowance. A slot is free when empty or when its window has passed with no
summary left to write. With
 * every probed slot busy the request is not recorded: a flood from many
 * addresses cannot turn into a flood of audit writes. Caller holds a->mu.
 */
static struct audit_limit_slot *limit_slot(struct dcms_audit *a, const char *client, int64_t now_s)
{
    uint64_t h = fnv1a(client);
    struct audit_limit_slot *spare = NULL;
    for (unsigned i = 0; i < AUDIT_LIMIT_PROBES; i++) {
        struct audit_limit_slot *s = &a->slots[(h + i) % AUDIT_LIMIT_SLOTS];
        if (strcmp(s->client, client) == 0 && s->client[0])
            return s;
        if (!spare &&
            (!s->client[0] || (now_s - s->window_start_s >= a->refusal_window_s && !s->suppressed)))
            spare = s;
    }
    if (spare) {
        snprintf(spare->client, sizeof(spare->client), "%s", client);
        spare->window_start_s = now_s;
        spare->count = spare->suppressed = spare->ntargets = 0;
        spare->targets_truncated = false;
    }
    return spare;
}

/*
 * Past the limit a refusal is not written on its own, but its address keeps
 * a count and the distinct targets; when the window ends one
 * `request.refusals_summarized` event carries them, so a probe always shows
 * in the log. Ended windows are summarized at the next refusal (from any
 * address), by the checkpoint timer, and at close.
 */
void dcms_audit_refusal(struct dcms_audit *a, const struct dcms_audit_event *ev)
{
    const char *client = ev->client_ip && ev->client_ip[0] ? ev->client_ip : "unknown";
    bool record = false;
    flush_summaries(a, false);
    int64_t now_s = dcms_clock_mono_us() / 1000000;
    pthread_mutex_lock(&a->mu);
    struct audit_limit_slot *s = limit_slot(a, client, now_s);
    if (s) {
        if (now_s - s->window_start_s >= a->refusal_window_s) { /* a new window */
            s->window_start_s = now_s;
            s->count = s->suppressed = s->ntargets = 0;
            s->targets_truncated = false;
        }
        record = s->count < a->denied_per_minute;
        if (record) {
            s->count++;
        } else {
            s->suppressed++;
            note_target(s, ev);
        }
    }
    pthread_mutex_unlock(&a->mu);
    if (!record)
        return;

    struct dcms_audit_event copy = *ev;
    json_t *details = ev->details ? json_deep_copy(ev->details) : json_object();
    copy.details = details;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    if (dcms_audit_record(a, &copy, &ei))
        DCMS_LOG(DCMS_LOG_ERROR, "audit", "cannot record %s: %s", ev->action, ei.message);
    json_decref(details);
}

enum dcms_err dcms_audit_checkpoint(struct dcms_audit *a, struct dcms_errinfo *ei)
{
    struct dcms_store_tx *tx;
    enum dcms_err e = dcms_store_begin(a->store, DCMS_TX_WRITE, &tx, ei);
    if (e)
        return e;
    int64_t head_seq, last;
    char head_hash[65];
    if (!(e = audit_store_head(tx, &head_seq, head_hash, ei)) &&
        !(e = audit_store_last_checkpoint(tx, &last, ei)) && head_seq > last)
        e = audit_sign_checkpoint(a, tx, head_seq, head_hash, ei);
    if (e) {
        dcms_store_rollback(tx);
        return e;
    }
    return dcms_store_commit(tx, ei);
}

/* One run of the checkpoint timer (dcms_periodic). */
static void timer_run(void *arg)
{
    struct dcms_audit *a = arg;
    flush_summaries(a, false);
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    if (dcms_audit_checkpoint(a, &ei))
        DCMS_LOG(DCMS_LOG_WARN, "audit", "periodic checkpoint failed: %s", ei.message);
}

enum dcms_err dcms_audit_open(struct dcms_store *store, const struct dcms_audit_opts *opts,
                              struct dcms_audit **out, struct dcms_errinfo *ei)
{
    struct dcms_audit *a = calloc(1, sizeof(*a));
    if (!a)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    enum dcms_err e = dcms_sign_key_load_or_create(opts->key_path, &a->key, ei);
    if (e) {
        free(a);
        return e;
    }
    a->store = store;
    a->every = opts->checkpoint_every ? opts->checkpoint_every : 1000;
    a->interval_s = opts->checkpoint_interval_s;
    a->denied_per_minute = opts->denied_per_minute ? opts->denied_per_minute : 60;
    a->refusal_window_s = 60;
    a->max_delay_ms = opts->sequence_delay_ms ? opts->sequence_delay_ms : 100;
    a->batch_max = 2000;
    pthread_mutex_init(&a->mu, NULL);
    if ((e = audit_seq_start(a, opts->database_url, ei))) {
        dcms_audit_close(a);
        return e;
    }
    if (a->interval_s &&
        (e = dcms_periodic_start("audit checkpoint", (uint64_t)a->interval_s * 1000, timer_run, a,
                                 &a->timer, ei))) {
        dcms_audit_close(a);
        return e;
    }
    *out = a;
    return DCMS_OK;
}

void dcms_audit_set_refusal_window(struct dcms_audit *a, unsigned seconds)
{
    pthread_mutex_lock(&a->mu);
    a->refusal_window_s = seconds ? seconds : 60;
    pthread_mutex_unlock(&a->mu);
}

void dcms_audit_close(struct dcms_audit *a)
{
    if (!a)
        return;
    dcms_periodic_stop(a->timer);
    if (a->key && a->seq_store)
        flush_summaries(a, true);
    audit_seq_stop(a);
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    if (a->key && a->loaded && dcms_audit_checkpoint(a, &ei))
        DCMS_LOG(DCMS_LOG_WARN, "audit", "final checkpoint failed: %s", ei.message);
    dcms_sign_key_free(a->key);
    pthread_mutex_destroy(&a->mu);
    free(a);
}

const struct dcms_sign_key *dcms_audit_key(const struct dcms_audit *a)
{
    return a->key;
}

/* Feeds one batch of events, and the checkpoints that fall inside it, to the verifier. */
enum dcms_err audit_verify_batch(struct dcms_store_tx *tx, struct audit_verifier *v, json_t *events,
                                 int64_t from, int64_t to, struct dcms_errinfo *ei)
{
    json_t *cps = json_array(), *ths = json_array();
    if (!cps || !ths) {
        json_decref(cps);
        json_decref(ths);
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    }
    enum dcms_err e = audit_store_checkpoints_range(tx, from, to, INT32_MAX, cps, ei);
    if (!e)
        e = audit_store_tree_heads_range(tx, from, to, INT32_MAX, ths, ei);
    size_t ci = 0, nc = json_array_size(cps), ti = 0, nt = json_array_size(ths);
    for (size_t i = 0; !e && i < json_array_size(events); i++) {
        json_t *ev = json_array_get(events, i);
        int64_t seq = (int64_t)json_integer_value(json_object_get(ev, "seq"));
        for (; ci < nc; ci++) {
            json_t *cp = json_array_get(cps, ci);
            int64_t cseq = (int64_t)json_integer_value(json_object_get(cp, "seq"));
            if (cseq >= seq)
                break;
            /* a checkpoint whose event is gone: the gap itself is reported first */
            audit_verifier_event(v, ev);
            audit_verifier_fail(v, cseq, "checkpoint at seq %lld refers to a missing event",
                                (long long)cseq);
        }
        if (!audit_verifier_event(v, ev))
            break;
        for (; ci < nc; ci++) {
            json_t *cp = json_array_get(cps, ci);
            if ((int64_t)json_integer_value(json_object_get(cp, "seq")) != seq)
                break;
            audit_verifier_checkpoint(v, cp);
        }
        for (; ti < nt; ti++) {
            json_t *th = json_array_get(ths, ti);
            int64_t size = (int64_t)json_integer_value(json_object_get(th, "tree_size"));
            if (size > seq)
                break;
            audit_verifier_tree_head(v, th);
        }
    }
    json_decref(cps);
    json_decref(ths);
    return e;
}

enum dcms_err dcms_audit_verify(struct dcms_audit *a, struct dcms_audit_report *report,
                                struct dcms_errinfo *ei)
{
    struct audit_verifier v;
    audit_verifier_init(&v, dcms_sign_key_public(a->key), true, report);
    struct dcms_store_tx *tx;
    /* A log the sequencer refuses to extend (tampered with) is still walked: the walk says
     * where it breaks. */
    struct dcms_errinfo sync_ei;
    dcms_errinfo_init(&sync_ei, NULL);
    if (dcms_audit_sync(a, &sync_ei))
        DCMS_LOG(DCMS_LOG_WARN, "audit", "verifying without sequencing first: %s", sync_ei.message);
    enum dcms_err e = dcms_store_begin(a->store, DCMS_TX_READ, &tx, ei);
    if (e)
        return e;
    int64_t from = 1;
    while (!e && !v.failed) {
        if (dcms_cancel_requested()) {
            e = dcms_err_set(ei, DCMS_ERR_UNAVAILABLE,
                             "the server is shutting down; verification stopped at seq %lld",
                             (long long)from);
            break;
        }
        json_t *events = json_array();
        if (!events) {
            e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
            break;
        }
        e = audit_store_events_range(tx, from, INT64_MAX, VERIFY_BATCH, events, ei);
        size_t n = json_array_size(events);
        if (!e && n) {
            int64_t last =
                (int64_t)json_integer_value(json_object_get(json_array_get(events, n - 1), "seq"));
            e = audit_verify_batch(tx, &v, events, from, last, ei);
            from = last + 1;
        }
        json_decref(events);
        if (n < VERIFY_BATCH)
            break;
    }
    int64_t head_seq = 0, orphan = 0;
    char head_hash[65];
    json_t *rest = json_array();
    if (!e && !v.failed && rest)
        e = audit_store_checkpoints_range(tx, v.last_seq + 1, INT64_MAX, 1, rest, ei);
    if (!e && !v.failed && json_array_size(rest)) {
        orphan = (int64_t)json_integer_value(json_object_get(json_array_get(rest, 0), "seq"));
        audit_verifier_fail(&v, v.last_seq + 1,
                            "events after seq %lld are missing (a checkpoint covers seq %lld)",
                            (long long)v.last_seq, (long long)orphan);
    }
    json_decref(rest);
    json_t *last_th = NULL;
    if (!e && !v.failed && !(e = audit_store_last_tree_head(tx, &last_th, ei)) && last_th &&
        json_integer_value(json_object_get(last_th, "tree_size")) > v.last_seq)
        audit_verifier_fail(&v, v.last_seq + 1,
                            "events after seq %lld are missing (a tree head covers %lld)",
                            (long long)v.last_seq,
                            (long long)json_integer_value(json_object_get(last_th, "tree_size")));
    json_decref(last_th);
    if (!e && !v.failed && !(e = audit_store_head(tx, &head_seq, head_hash, ei)) &&
        (head_seq != v.last_seq || strcmp(head_hash, v.last_hash) != 0))
        audit_verifier_fail(&v, v.last_seq + 1,
                            "the chain head (seq %lld) does not match the last event (seq %lld)",
                            (long long)head_seq, (long long)v.last_seq);
    dcms_store_rollback(tx);
    audit_verifier_finish(&v);
    return e;
}
