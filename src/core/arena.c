/*
 * Chunked bump allocator with a byte cap and a list of deferred cleanups.
 * The first chunk is part of the arena's own allocation, so a small request
 * costs a single malloc.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dcms/arena.h"

#define ARENA_ALIGN 16
#define ARENA_FIRST_CHUNK 4096
#define ARENA_DEFAULT_MAX (64u << 20)

struct chunk {
    struct chunk *next;
    size_t size, used;
    _Alignas(16) unsigned char data[];
};

struct deferred {
    struct deferred *next;
    void (*fn)(void *);
    void *p;
};

struct dcms_arena {
    struct chunk *head;
    struct chunk *first; /* lives in the same allocation as the arena */
    struct deferred *defers;
    size_t used, max;
};

#define ARENA_HEADER (((sizeof(struct dcms_arena) + ARENA_ALIGN - 1) / ARENA_ALIGN) * ARENA_ALIGN)

struct dcms_arena *dcms_arena_new(size_t max_bytes)
{
    struct dcms_arena *a =
        aligned_alloc(ARENA_ALIGN, ARENA_HEADER + sizeof(struct chunk) + ARENA_FIRST_CHUNK);
    if (!a)
        return NULL;
    a->first = (struct chunk *)(void *)((char *)a + ARENA_HEADER);
    a->first->next = NULL;
    a->first->size = ARENA_FIRST_CHUNK;
    a->first->used = 0;
    a->head = a->first;
    a->defers = NULL;
    a->used = 0;
    a->max = max_bytes ? max_bytes : ARENA_DEFAULT_MAX;
    return a;
}

void dcms_arena_free(struct dcms_arena *a)
{
    if (!a)
        return;
    while (a->defers) {
        struct deferred *d = a->defers;
        a->defers = d->next;
        d->fn(d->p);
    }
    struct chunk *c = a->head;
    while (c && c != a->first) {
        struct chunk *next = c->next;
        free(c);
        c = next;
    }
    free(a);
}

void *dcms_arena_alloc(struct dcms_arena *a, size_t n)
{
    if (n == 0)
        n = 1;
    if (n > SIZE_MAX - ARENA_ALIGN)
        return NULL;
    size_t need = (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (need > a->max - a->used)
        return NULL;
    struct chunk *c = a->head;
    if (c->size - c->used < need) {
        size_t size = c->size * 2;
        if (size < need)
            size = need;
        c = malloc(sizeof(*c) + size);
        if (!c)
            return NULL;
        c->size = size;
        c->used = 0;
        c->next = a->head;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += need;
    a->used += need;
    return p;
}

void *dcms_arena_calloc(struct dcms_arena *a, size_t count, size_t size)
{
    if (size && count > SIZE_MAX / size)
        return NULL;
    void *p = dcms_arena_alloc(a, count * size);
    if (p)
        memset(p, 0, count * size);
    return p;
}

char *dcms_arena_strndup(struct dcms_arena *a, const char *s, size_t n)
{
    if (!s)
        return NULL;
    char *p = dcms_arena_alloc(a, n + 1);
    if (!p)
        return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *dcms_arena_strdup(struct dcms_arena *a, const char *s)
{
    return s ? dcms_arena_strndup(a, s, strlen(s)) : NULL;
}

char *dcms_arena_sprintf(struct dcms_arena *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *p = dcms_arena_alloc(a, (size_t)n + 1);
    if (!p)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

size_t dcms_arena_used(const struct dcms_arena *a)
{
    return a->used;
}

enum dcms_err dcms_arena_defer(struct dcms_arena *a, void (*fn)(void *), void *p)
{
    struct deferred *d = dcms_arena_alloc(a, sizeof(*d));
    if (!d) {
        fn(p);
        return DCMS_ERR_NOMEM;
    }
    d->fn = fn;
    d->p = p;
    d->next = a->defers;
    a->defers = d;
    return DCMS_OK;
}
