/*
 * Request-head deadlines (see conn_guard.h): a list of watched sockets under
 * one mutex, and a sweeper thread that wakes a few times per deadline and
 * shuts down the sockets whose head is late. The mutex is held across
 * shutdown(2) and across removal, and libmicrohttpd removes a connection
 * (its close notification) before it closes the socket, so the sweeper never
 * touches a descriptor number that has been reused.
 */
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

#include "dcms/clock.h"
#include "http/conn_guard.h"

struct dcms_conn_slot {
    struct dcms_conn_slot *prev, *next;
    int fd;
    int64_t deadline_us; /* 0: not waiting for a head */
};

struct dcms_conn_guard {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t sweeper;
    bool stop;
    int64_t timeout_us;
    unsigned period_ms;
    struct dcms_conn_slot *head;
};

static void sweep(struct dcms_conn_guard *g)
{
    int64_t now = dcms_clock_mono_us();
    for (struct dcms_conn_slot *s = g->head; s; s = s->next) {
        if (s->deadline_us && now >= s->deadline_us) {
            /* Once: libmicrohttpd closes the connection at its next turn. */
            s->deadline_us = 0;
            shutdown(s->fd, SHUT_RDWR);
        }
    }
}

static void *sweeper_main(void *arg)
{
    struct dcms_conn_guard *g = arg;
    pthread_mutex_lock(&g->lock);
    while (!g->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += (long)(g->period_ms % 1000) * 1000000L;
        ts.tv_sec += g->period_ms / 1000 + ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&g->wake, &g->lock, &ts);
        if (!g->stop)
            sweep(g);
    }
    pthread_mutex_unlock(&g->lock);
    return NULL;
}

enum dcms_err dcms_conn_guard_new(unsigned head_timeout_ms, struct dcms_conn_guard **out)
{
    enum dcms_err rc = DCMS_OK;
    pthread_condattr_t ca;
    bool ca_ok = false, lock_ok = false, cond_ok = false;
    struct dcms_conn_guard *g = calloc(1, sizeof(*g));
    if (!g)
        return DCMS_ERR_NOMEM;
    g->timeout_us = (int64_t)head_timeout_ms * 1000;
    /* A few sweeps per deadline: a late head is cut within a quarter of it (0.1 s to 1 s). */
    g->period_ms = head_timeout_ms / 4;
    if (g->period_ms < 100)
        g->period_ms = 100;
    if (g->period_ms > 1000)
        g->period_ms = 1000;
    if (pthread_condattr_init(&ca) != 0) {
        rc = DCMS_ERR_INTERNAL;
        goto out;
    }
    ca_ok = true;
    if (pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
        pthread_cond_init(&g->wake, &ca) != 0) {
        rc = DCMS_ERR_INTERNAL;
        goto out;
    }
    cond_ok = true;
    if (pthread_mutex_init(&g->lock, NULL) != 0) {
        rc = DCMS_ERR_INTERNAL;
        goto out;
    }
    lock_ok = true;
    if (pthread_create(&g->sweeper, NULL, sweeper_main, g) != 0) {
        rc = DCMS_ERR_INTERNAL;
        goto out;
    }
    *out = g;
    g = NULL;
out:
    if (ca_ok)
        pthread_condattr_destroy(&ca);
    if (g) {
        if (lock_ok)
            pthread_mutex_destroy(&g->lock);
        if (cond_ok)
            pthread_cond_destroy(&g->wake);
        free(g);
    }
    return rc;
}

void dcms_conn_guard_free(struct dcms_conn_guard *g)
{
    if (!g)
        return;
    pthread_mutex_lock(&g->lock);
    g->stop = true;
    pthread_cond_signal(&g->wake);
    pthread_mutex_unlock(&g->lock);
    pthread_join(g->sweeper, NULL);
    while (g->head) {
        struct dcms_conn_slot *s = g->head;
        g->head = s->next;
        free(s);
    }
    pthread_cond_destroy(&g->wake);
    pthread_mutex_destroy(&g->lock);
    free(g);
}

struct dcms_conn_slot *dcms_conn_guard_add(struct dcms_conn_guard *g, int fd)
{
    struct dcms_conn_slot *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->fd = fd;
    s->deadline_us = dcms_clock_mono_us() + g->timeout_us;
    pthread_mutex_lock(&g->lock);
    s->next = g->head;
    if (g->head)
        g->head->prev = s;
    g->head = s;
    pthread_mutex_unlock(&g->lock);
    return s;
}

void dcms_conn_guard_head_done(struct dcms_conn_guard *g, struct dcms_conn_slot *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&g->lock);
    s->deadline_us = 0;
    pthread_mutex_unlock(&g->lock);
}

void dcms_conn_guard_head_wait(struct dcms_conn_guard *g, struct dcms_conn_slot *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&g->lock);
    s->deadline_us = dcms_clock_mono_us() + g->timeout_us;
    pthread_mutex_unlock(&g->lock);
}

void dcms_conn_guard_remove(struct dcms_conn_guard *g, struct dcms_conn_slot *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&g->lock);
    if (s->prev)
        s->prev->next = s->next;
    else
        g->head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    pthread_mutex_unlock(&g->lock);
    free(s);
}
