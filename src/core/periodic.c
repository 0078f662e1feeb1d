/*
 * The one periodic-job loop (see dcms/periodic.h): a thread sleeping on a
 * condition variable bound to the monotonic clock, woken early by kick and
 * stop.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "dcms/periodic.h"

struct dcms_periodic {
    const char *name;
    uint64_t period_ms;
    dcms_periodic_fn *fn;
    void *ctx;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stopping, kicked;
};

static struct timespec deadline_after(uint64_t ms)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    t.tv_sec += (time_t)(ms / 1000);
    t.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

static void *loop(void *arg)
{
    struct dcms_periodic *p = arg;
    pthread_mutex_lock(&p->mu);
    while (!p->stopping) {
        struct timespec until = deadline_after(p->period_ms);
        while (!p->stopping && !p->kicked &&
               pthread_cond_timedwait(&p->cv, &p->mu, &until) != ETIMEDOUT)
            ;
        if (p->stopping)
            break;
        p->kicked = false;
        pthread_mutex_unlock(&p->mu);
        p->fn(p->ctx);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

enum dcms_err dcms_periodic_start(const char *name, uint64_t period_ms, dcms_periodic_fn *fn,
                                  void *ctx, struct dcms_periodic **out, struct dcms_errinfo *ei)
{
    *out = NULL;
    if (!period_ms || !fn)
        return dcms_err_set(ei, DCMS_ERR_INTERNAL, "periodic job %s needs a period and a function",
                            name);
    struct dcms_periodic *p = calloc(1, sizeof(*p));
    if (!p)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    *p = (struct dcms_periodic){.name = name, .period_ms = period_ms, .fn = fn, .ctx = ctx};
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* wall-clock jumps do not move the timer */
    pthread_cond_init(&p->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&p->thread, NULL, loop, p) != 0) {
        pthread_cond_destroy(&p->cv);
        pthread_mutex_destroy(&p->mu);
        free(p);
        return dcms_err_set(ei, DCMS_ERR_INTERNAL, "cannot start the %s job", name);
    }
    *out = p;
    return DCMS_OK;
}

void dcms_periodic_kick(struct dcms_periodic *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->kicked = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void dcms_periodic_stop(struct dcms_periodic *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}
