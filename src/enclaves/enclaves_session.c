/*
 * Enclave sessions (dcms/enclaves.h): an exclusive channel to a running
 * enclave's workload for another service's frames, and the verification of
 * the documents that come through it with the enclave service's own check
 * (enclave_attest_check in enclaves_attest.c). The backend hands out the
 * channel (backend.h, channel()); this file keeps the list of open sessions
 * that enclave_attest_now consults, so an on-demand attestation never
 * interleaves its frames with a session's.
 */
#include <sodium.h>

#include "dcms/app.h"
#include "dcms/store.h"
#include "enclaves/channel_io.h"
#include "enclaves/enclaves_int.h"

struct dcms_enclave_session {
    struct dcms_enclave_session *next; /* in en->sessions */
    struct dcms_enclaves *en;
    char id[DCMS_UUID_STRLEN];
    char ref[DCMS_ENCLAVE_REF_MAX];
    struct dcms_enclave_channel *ch;
    uint8_t *buf; /* CHAN_IO_BUF: the last frame received */
};

bool enclave_session_busy(struct dcms_enclaves *en, const char *id)
{
    bool busy = false;
    pthread_mutex_lock(&en->sessions_mu);
    for (struct dcms_enclave_session *s = en->sessions; s && !busy; s = s->next)
        busy = strcmp(s->id, id) == 0;
    pthread_mutex_unlock(&en->sessions_mu);
    return busy;
}

/* Enclave `id`'s row: *rows owns it. */
static enum dcms_err load_row(struct dcms_enclaves *en, const char *id,
                              struct dcms_store_rows **rows, struct enclave_row *r,
                              struct dcms_errinfo *ei)
{
    struct dcms_store_tx *tx = NULL;
    enum dcms_err e = dcms_store_begin(en->app->store, DCMS_TX_READ, &tx, ei);
    if (e)
        return e;
    e = enclave_store_load(tx, id, rows, r, ei);
    dcms_store_rollback(tx);
    return e;
}

/*
 * With the enclave's lock held, as every attestation of it is: the row says
 * running, no other session is open, the backend hands out the channel,
 * and the session joins the list.
 */
static enum dcms_err open_locked(struct dcms_enclaves *en, struct dcms_enclave_session *s,
                                 struct dcms_errinfo *ei)
{
    struct dcms_store_rows *rows = NULL;
    struct enclave_row r;
    enum dcms_err e = load_row(en, s->id, &rows, &r, ei);
    if (e)
        goto out;
    if (strcmp(r.v[C_STATUS], "running") != 0 || !r.v[C_REF]) {
        e = dcms_err_set(ei, DCMS_ERR_CONFLICT, "the enclave is %s, not running", r.v[C_STATUS]);
        goto out;
    }
    if (enclave_session_busy(en, s->id)) {
        e = dcms_err_set(ei, DCMS_ERR_CONFLICT, "a session is open on the enclave already");
        goto out;
    }
    snprintf(s->ref, sizeof(s->ref), "%s", r.v[C_REF]);
    if (!en->backend->channel) {
        e = dcms_err_set(ei, DCMS_ERR_UNAVAILABLE, "the %s backend has no sessions",
                         en->backend->name);
        goto out;
    }
    if ((e = en->backend->channel(en->backend, s->ref, &s->ch, ei)))
        goto out;
    pthread_mutex_lock(&en->sessions_mu);
    s->next = en->sessions;
    en->sessions = s;
    pthread_mutex_unlock(&en->sessions_mu);
out:
    dcms_store_rows_free(rows);
    return e;
}

enum dcms_err dcms_enclaves_session_open(struct dcms_enclaves *en, const char *id,
                                         struct dcms_enclave_session **out, struct dcms_errinfo *ei)
{
    *out = NULL;
    if (!dcms_uuid_valid(id))
        return dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "no enclave %s", id ? id : "(null)");
    struct dcms_enclave_session *s = calloc(1, sizeof(*s));
    if (!s || !(s->buf = malloc(CHAN_IO_BUF))) {
        free(s);
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    }
    s->en = en;
    snprintf(s->id, sizeof(s->id), "%s", id);
    pthread_mutex_t *mu = enclave_lock_of(en, id);
    pthread_mutex_lock(mu);
    enum dcms_err e = open_locked(en, s, ei);
    pthread_mutex_unlock(mu);
    if (e) {
        free(s->buf);
        free(s);
        return e;
    }
    *out = s;
    return DCMS_OK;
}

enum dcms_err dcms_enclave_session_send(struct dcms_enclave_session *s, uint8_t type,
                                        const void *body, size_t len, int64_t deadline_ms,
                                        struct dcms_errinfo *ei)
{
    if (!dcms_chan_type_ok(type) || len > DCMS_CHAN_MAX_FRAME - 1 || (len && !body))
        return dcms_err_set(ei, DCMS_ERR_VALIDATION,
                            "a frame of type %u with %zu bytes is not one the channel carries",
                            (unsigned)type, len);
    return s->ch->send(s->ch, type, body, len, deadline_ms, ei);
}

enum dcms_err dcms_enclave_session_recv(struct dcms_enclave_session *s, uint8_t *type,
                                        const uint8_t **body, size_t *len, int64_t deadline_ms,
                                        struct dcms_errinfo *ei)
{
    struct dcms_chan_frame f;
    enum dcms_err e = s->ch->recv(s->ch, s->buf, &f, deadline_ms, ei);
    if (e)
        return e;
    *type = f.type;
    *body = f.body;
    *len = f.body_len;
    return DCMS_OK;
}

void dcms_enclave_evidence_free(struct dcms_enclave_evidence *ev)
{
    if (!ev)
        return;
    free(ev->doc);
    sodium_memzero(ev, sizeof(*ev));
}

static void pcr_hex(const struct dcms_attest_doc *d, unsigned i, char out[97])
{
    out[0] = '\0';
    if ((d->pcr_mask & (1u << i)) && d->pcrs[i].len <= 48)
        dcms_hex_encode(out, d->pcrs[i].ptr, d->pcrs[i].len);
}

/* The authenticated fields of a verified document into *out. */
static enum dcms_err fill_evidence(const struct dcms_attest_doc *d, const unsigned char *doc,
                                   size_t doc_len, struct dcms_enclave_evidence *out,
                                   struct dcms_errinfo *ei)
{
    if (d->has_public_key && d->public_key.len != sizeof(out->public_key))
        return dcms_err_set(ei, DCMS_ERR_FORBIDDEN,
                            "public_key: %zu bytes, not an X25519 key of 32 bytes",
                            d->public_key.len);
    if (d->has_user_data && d->user_data.len > sizeof(out->user_data))
        return dcms_err_set(ei, DCMS_ERR_FORBIDDEN, "user_data: %zu bytes, more than 64",
                            d->user_data.len);
    memset(out, 0, sizeof(*out));
    if (!(out->doc = malloc(doc_len)))
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    memcpy(out->doc, doc, doc_len);
    out->doc_len = doc_len;
    if (d->has_public_key) {
        memcpy(out->public_key, d->public_key.ptr, d->public_key.len);
        out->public_key_len = d->public_key.len;
    }
    if (d->has_user_data && d->user_data.len) {
        memcpy(out->user_data, d->user_data.ptr, d->user_data.len);
        out->user_data_len = d->user_data.len;
    }
    pcr_hex(d, 0, out->pcr0);
    pcr_hex(d, 1, out->pcr1);
    pcr_hex(d, 2, out->pcr2);
    pcr_hex(d, 8, out->pcr8);
    snprintf(out->module_id, sizeof(out->module_id), "%.63s", d->module_id);
    out->timestamp_ms = (int64_t)d->timestamp_ms;
    return DCMS_OK;
}

enum dcms_err dcms_enclave_session_verify(struct dcms_enclave_session *s, const unsigned char *doc,
                                          size_t doc_len, const unsigned char *nonce,
                                          size_t nonce_len, struct dcms_enclave_evidence *out,
                                          struct dcms_errinfo *ei)
{
    if (!doc || !doc_len || !nonce || nonce_len < 1 || nonce_len > DCMS_CHAN_MAX_NONCE)
        return dcms_err_set(ei, DCMS_ERR_VALIDATION,
                            "a document and a nonce of 1 to 64 bytes are needed");
    struct dcms_store_rows *rows = NULL;
    struct enclave_row r;
    struct dcms_attest_report rep;
    memset(&rep, 0, sizeof(rep));
    enum dcms_err e = load_row(s->en, s->id, &rows, &r, ei);
    if (e)
        goto out;
    /* The expectations of the enclave as it is now, and of the workload the session reaches. */
    if (!r.v[C_REF] || strcmp(r.v[C_REF], s->ref) != 0) {
        e = dcms_err_set(ei, DCMS_ERR_FORBIDDEN, "the enclave no longer runs this workload");
        goto out;
    }
    struct enclave_config cfg;
    if (!enclave_config_stored(r.v[C_CONFIG], &cfg)) {
        e = dcms_err_set(ei, DCMS_ERR_INTERNAL, "the enclave's stored configuration is unreadable");
        goto out;
    }
    struct enclave_verdict v;
    memset(&v, 0, sizeof(v));
    if ((e = enclave_attest_check(s->en, &r, &cfg, doc, doc_len, nonce, nonce_len, true, &rep, &v,
                                  ei)))
        goto out;
    if (!v.verified || !rep.doc) {
        e = dcms_err_set(ei, DCMS_ERR_FORBIDDEN, "%s", v.reason[0] ? v.reason : "not verified");
        goto out;
    }
    e = fill_evidence(rep.doc, doc, doc_len, out, ei);
out:
    dcms_attest_report_release(&rep);
    dcms_store_rows_free(rows);
    return e;
}

void dcms_enclave_session_close(struct dcms_enclave_session *s)
{
    if (!s)
        return;
    struct dcms_enclaves *en = s->en;
    pthread_mutex_lock(&en->sessions_mu);
    struct dcms_enclave_session **pp = &en->sessions;
    while (*pp && *pp != s)
        pp = &(*pp)->next;
    if (*pp)
        *pp = s->next;
    pthread_mutex_unlock(&en->sessions_mu);
    s->ch->close(s->ch);
    free(s->buf);
    free(s);
}
