/*
 * The event stream of a job (GET /api/v1/trainings/{id}/events): the
 * events after Last-Event-ID, then each new one as it is recorded, until
 * the job has ended (an `end` event, then the body ends), with a comment
 * line as a heartbeat when nothing was sent for a while.
 *
 * No thread waits for a stream. The HTTP layer pulls bytes with
 * tr_stream_read; when there is nothing, the stream is parked and the
 * `wake` callback the layer gave unparks it. Wakes come from the state
 * changes and progress of this node's jobs (tr_notify, right after their
 * commit), and from the hub thread once a second for every parked stream
 * (events written by another node sharing the store, and the heartbeat).
 * Each read is one read transaction: the job's state and its events after
 * the last one sent, so any node can serve any stream and a reconnect with
 * Last-Event-ID resumes exactly.
 *
 * Open streams are bounded per identity and in total
 * (DCMS_TRAINING_EVENT_STREAMS_PER_IDENTITY, DCMS_TRAINING_EVENT_STREAMS):
 * the one past either bound is refused with 429 before it is opened.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dcms/app.h"
#include "dcms/clock.h"
#include "dcms/config.h"
#include "dcms/iam.h"
#include "dcms/log.h"
#include "dcms/store.h"
#include "dcms/str.h"
#include "training/training_int.h"

#define EVENTS_PER_READ 1000
#define STREAM_BUF_MAX (64u << 20)
#define HUB_TICK_MS 1000

struct tr_stream {
    struct dcms_training *t;
    char id[DCMS_UUID_STRLEN];    /* the job */
    char owner[DCMS_UUID_STRLEN]; /* the identity that opened it */
    int64_t after;                /* seq of the last event queued */
    int64_t heartbeat_ms;         /* when a heartbeat is due if nothing else was sent */
    bool ended;                   /* the end event is queued: the body ends after it */
    struct dcms_buf out;          /* queued bytes, sent from `off` */
    size_t off;
    /* under t->mu: how to unpark it (set at the first read) */
    void (*wake)(void *arg);
    void *wake_arg;
    struct tr_stream *prev, *next;
};

static int64_t mono_ms(void)
{
    return dcms_clock_mono_us() / 1000;
}

static bool is_final(const char *state)
{
    return !strcmp(state, "succeeded") || !strcmp(state, "failed") || !strcmp(state, "cancelled");
}

enum dcms_err tr_stream_open(const struct tr_call *c, const char *id, int64_t after,
                             struct tr_stream **out)
{
    struct dcms_training *t = c->app->training;
    *out = NULL;
    enum dcms_err e = tr_load_authorized(c, id, "training:read");
    if (e)
        return e;
    if (!t)
        return dcms_err_set(c->ei, DCMS_ERR_UNAVAILABLE, "the training service is not running");
    struct tr_stream *s = calloc(1, sizeof(*s));
    if (!s)
        return dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
    snprintf(s->id, sizeof(s->id), "%s", id);
    snprintf(s->owner, sizeof(s->owner), "%s", c->p->id);
    s->t = t;
    s->after = after;
    s->heartbeat_ms = mono_ms() + (int64_t)c->app->cfg->training_event_heartbeat_ms;
    dcms_buf_init(&s->out, STREAM_BUF_MAX);
    unsigned long max_total = c->app->cfg->training_event_streams;
    unsigned long max_each = c->app->cfg->training_event_streams_per_identity;
    pthread_mutex_lock(&t->mu);
    unsigned long mine = 0;
    for (const struct tr_stream *o = t->streams; o; o = o->next)
        mine += strcmp(o->owner, s->owner) == 0;
    bool full = t->nstreams >= max_total || mine >= max_each;
    if (!full) {
        s->next = t->streams;
        if (s->next)
            s->next->prev = s;
        t->streams = s;
        t->nstreams++;
    }
    pthread_mutex_unlock(&t->mu);
    if (full) {
        dcms_buf_release(&s->out);
        free(s);
        return dcms_err_set(c->ei, DCMS_ERR_RATE_LIMITED,
                            mine >= max_each
                                ? "too many open event streams for this identity (%lu, "
                                  "DCMS_TRAINING_EVENT_STREAMS_PER_IDENTITY)"
                                : "too many open event streams on this node (%lu, "
                                  "DCMS_TRAINING_EVENT_STREAMS)",
                            mine >= max_each ? max_each : max_total);
    }
    /* EventSource clients reconnect a second after a lost connection, with Last-Event-ID */
    if (dcms_buf_appendf(&s->out, "retry: 1000\n\n")) {
        tr_stream_release(s);
        return dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
    }
    *out = s;
    return DCMS_OK;
}

void tr_stream_release(struct tr_stream *s)
{
    if (!s)
        return;
    struct dcms_training *t = s->t;
    pthread_mutex_lock(&t->mu);
    if (s->prev)
        s->prev->next = s->next;
    else
        t->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    t->nstreams--;
    pthread_mutex_unlock(&t->mu);
    dcms_buf_release(&s->out);
    free(s);
}

/* Queues the events after s->after, and the end when the job has ended and all are out. */
static enum dcms_err fill(struct tr_stream *s, struct dcms_errinfo *ei)
{
    struct dcms_store_tx *tx = NULL;
    struct dcms_store_rows *job = NULL, *ev = NULL;
    enum dcms_err e = dcms_store_begin(s->t->app->store, DCMS_TX_READ, &tx, ei);
    if (e)
        return e;
    /* the state first: an event recorded after this read is read next time */
    if ((e = tr_store_load(tx, s->id, &job, ei)) ||
        (e = tr_store_events(tx, s->id, s->after, EVENTS_PER_READ, &ev, ei)))
        goto out;
    const char *state = dcms_store_rows_text(job, 0, TC_STATE);
    size_t n = dcms_store_rows_count(ev);
    for (size_t i = 0; !e && i < n; i++) {
        e = dcms_buf_appendf(&s->out, "id: %s\nevent: %s\ndata: %s\n\n",
                             dcms_store_rows_text(ev, i, 0), dcms_store_rows_text(ev, i, 2),
                             dcms_store_rows_text(ev, i, 3));
        if (!e)
            s->after = dcms_store_rows_int(ev, i, 0);
    }
    if (!e && is_final(state) && n < EVENTS_PER_READ) {
        e = dcms_buf_appendf(&s->out, "event: end\ndata: {\"state\":\"%s\"}\n\n", state);
        s->ended = !e;
    }
    if (e)
        e = dcms_err_set(ei, e, NULL);
out:
    dcms_store_rollback(tx);
    dcms_store_rows_free(ev);
    dcms_store_rows_free(job);
    return e;
}

bool tr_stream_read(struct tr_stream *s, char *buf, size_t max, size_t *n, void (*wake)(void *),
                    void *wake_arg)
{
    *n = 0;
    if (!s->wake) {
        pthread_mutex_lock(&s->t->mu);
        s->wake = wake;
        s->wake_arg = wake_arg;
        pthread_mutex_unlock(&s->t->mu);
    }
    if (s->off >= s->out.len) {
        s->out.len = 0;
        s->off = 0;
        if (s->ended)
            return true;
        struct dcms_errinfo ei;
        dcms_errinfo_init(&ei, NULL);
        if (fill(s, &ei)) {
            /* the client reconnects with Last-Event-ID and resumes where this stopped */
            DCMS_LOG(DCMS_LOG_WARN, "training", "event stream of job %s: %s", s->id, ei.message);
            return true;
        }
        int64_t now = mono_ms();
        if (s->out.len == 0 && now >= s->heartbeat_ms && dcms_buf_appendf(&s->out, ": \n\n"))
            return true;
        if (s->out.len)
            s->heartbeat_ms = now + (int64_t)s->t->app->cfg->training_event_heartbeat_ms;
    }
    size_t left = s->out.len - s->off;
    *n = left < max ? left : max;
    memcpy(buf, s->out.ptr + s->off, *n);
    s->off += *n;
    return false;
}

void tr_notify(struct dcms_training *t, const char *id)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->mu);
    for (struct tr_stream *s = t->streams; s; s = s->next)
        if (s->wake && (!id || strcmp(s->id, id) == 0))
            s->wake(s->wake_arg);
    pthread_mutex_unlock(&t->mu);
}

/* Once a tick every stream reads again: another node's events, and the heartbeats. */
static void *hub(void *arg)
{
    struct dcms_training *t = arg;
    pthread_mutex_lock(&t->mu);
    while (!t->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += HUB_TICK_MS / 1000;
        pthread_cond_timedwait(&t->hub_cv, &t->mu, &ts);
        if (t->stopping)
            break;
        for (struct tr_stream *s = t->streams; s; s = s->next)
            if (s->wake)
                s->wake(s->wake_arg);
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

enum dcms_err tr_hub_start(struct dcms_training *t, struct dcms_errinfo *ei)
{
    if (pthread_create(&t->hub, NULL, hub, t) != 0)
        return dcms_err_set(ei, DCMS_ERR_INTERNAL, "cannot start the event stream thread");
    t->hub_running = true;
    return DCMS_OK;
}

void tr_hub_stop(struct dcms_training *t)
{
    if (!t->hub_running)
        return;
    pthread_mutex_lock(&t->mu);
    t->stopping = true;
    pthread_cond_broadcast(&t->hub_cv);
    pthread_mutex_unlock(&t->mu);
    pthread_join(t->hub, NULL);
    t->hub_running = false;
}
