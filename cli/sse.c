/*
 * A Server-Sent Events parser for `dcms train watch` (the event stream of
 * a training job, docs/training.md), after the WHATWG HTML "event stream
 * interpretation": lines end in LF, CRLF or CR; a line "field: value" (one
 * space after the colon dropped) sets a field; ":" starts a comment; data
 * lines are joined with LF; a blank line dispatches the event (none when
 * it had no data). Fed in pieces as curl hands them over; no HTTP here,
 * so the unit tests include it.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dcms/banned.h"

#define SSE_MAX_BYTES (1024u * 1024)

void cli_sse_init(struct cli_sse *s, cli_sse_event_fn on_event, void *ud)
{
    memset(s, 0, sizeof *s);
    s->on_event = on_event;
    s->ud = ud;
    s->retry_ms = -1;
}

void cli_sse_release(struct cli_sse *s)
{
    free(s->line);
    free(s->data);
    s->line = s->data = NULL;
    s->line_len = s->data_len = 0;
}

/* Appends n bytes to a capped buffer (+1 for a NUL); -1 past the cap or out of memory. */
static int append(char **buf, size_t *len, const char *p, size_t n)
{
    if (*len + n > SSE_MAX_BYTES)
        return -1;
    char *b = realloc(*buf, *len + n + 1);
    if (!b)
        return -1;
    memcpy(b + *len, p, n);
    *len += n;
    b[*len] = '\0';
    *buf = b;
    return 0;
}

static void dispatch(struct cli_sse *s)
{
    if (s->have_data && s->rc == 0 && s->on_event)
        s->rc = s->on_event(s->ud, s->event[0] ? s->event : "message", s->data ? s->data : "");
    s->have_data = false;
    s->data_len = 0;
    if (s->data)
        s->data[0] = '\0';
    s->event[0] = '\0';
    s->id[0] = '\0';
}

static void field(struct cli_sse *s, const char *line, size_t n)
{
    if (n == 0) {
        dispatch(s);
        return;
    }
    if (line[0] == ':')
        return;
    const char *colon = memchr(line, ':', n);
    size_t nlen = colon ? (size_t)(colon - line) : n;
    const char *v = colon ? colon + 1 : line + n;
    size_t vlen = (size_t)(line + n - v);
    if (vlen && *v == ' ') {
        v++;
        vlen--;
    }
    if (nlen == 4 && memcmp(line, "data", 4) == 0) {
        if ((s->have_data && append(&s->data, &s->data_len, "\n", 1)) ||
            append(&s->data, &s->data_len, v, vlen)) {
            s->rc = -1;
            return;
        }
        s->have_data = true;
    } else if (nlen == 5 && memcmp(line, "event", 5) == 0) {
        snprintf(s->event, sizeof s->event, "%.*s", (int)vlen, v);
    } else if (nlen == 2 && memcmp(line, "id", 2) == 0) {
        if (!memchr(v, '\0', vlen)) {
            snprintf(s->last_id, sizeof s->last_id, "%.*s", (int)vlen, v);
            snprintf(s->id, sizeof s->id, "%.*s", (int)vlen, v);
        }
    } else if (nlen == 5 && memcmp(line, "retry", 5) == 0 && vlen > 0 && vlen < 10 &&
               strspn(v, "0123456789") >= vlen) {
        long ms = 0;
        for (size_t i = 0; i < vlen; i++)
            ms = ms * 10 + (v[i] - '0');
        s->retry_ms = ms;
    }
}

int cli_sse_feed(struct cli_sse *s, const char *p, size_t n)
{
    for (size_t i = 0; i < n && s->rc == 0; i++) {
        char ch = p[i];
        if (ch == '\n' && s->after_cr) {
            s->after_cr = false;
            continue;
        }
        s->after_cr = ch == '\r';
        if (ch == '\n' || ch == '\r') {
            field(s, s->line ? s->line : "", s->line_len);
            s->line_len = 0;
            continue;
        }
        /* The rest of the line at once. */
        size_t j = i;
        while (j < n && p[j] != '\n' && p[j] != '\r')
            j++;
        if (append(&s->line, &s->line_len, p + i, j - i)) {
            s->rc = -1;
            break;
        }
        i = j - 1;
    }
    return s->rc;
}
