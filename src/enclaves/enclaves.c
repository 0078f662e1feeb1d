/*
 * The enclave service: creation (measure the image, start the workload,
 * attest it with a fresh nonce, Running or Failed), reads scoped to the
 * caller, policy updates, the suspend / resume / attest / terminate
 * actions, and the system's Failed transition used by reconcile. Every
 * state change goes through the transition table (enclaves_model.c) and is
 * audited in the transaction that makes it. Operations on one enclave are
 * serialized in this process by a striped lock, so a request and the
 * reconcile job never interleave on the same workload. Queries are in
 * enclaves_store.c, the attestation step in enclaves_attest.c.
 */
#include <sodium.h>
#include <sys/stat.h>
#include <time.h>

#include "dcms/app.h"
#include "dcms/audit.h"
#include "dcms/clock.h"
#include "dcms/config.h"
#include "dcms/contracts.h"
#include "dcms/etag.h"
#include "dcms/fs.h"
#include "dcms/json.h"
#include "dcms/log.h"
#include "dcms/store.h"
#include "enclaves/enclaves_int.h"

/* ---- helpers ---- */

pthread_mutex_t *enclave_lock_of(struct dcms_enclaves *en, const char *id)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const char *p = id; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    return &en->locks[h % ENCLAVE_LOCK_STRIPES];
}

static enum dcms_err audit(const struct enclave_call *c, struct dcms_store_tx *tx,
                           const char *action, const char *id, enum dcms_audit_outcome outcome,
                           json_t *details /* stolen */, struct dcms_errinfo *ei)
{
    if (outcome == DCMS_AUDIT_SUCCESS) {
        struct dcms_audit_who who = {c->p ? c->p->id : NULL, c->client_ip, c->request_id};
        return dcms_audit_change(c->en->app->audit, tx, &who, "enclave", action, id, details, ei);
    }
    struct dcms_audit_event ev = {
        .actor = c->p ? c->p->id : "system",
        .action = action,
        .resource_type = "enclave",
        .resource_id = id,
        .outcome = outcome,
        .details = details,
        .client_ip = c->client_ip && *c->client_ip ? c->client_ip : NULL,
        .request_id = c->request_id,
    };
    enum dcms_err e = dcms_audit_append(c->en->app->audit, tx, &ev, NULL, ei);
    json_decref(details);
    return e;
}

/*
 * The one resource-level decision. Reads also admit the consumer of the
 * contract the enclave serves; changes only its provider (and admins). A
 * read refusal is answered 404, so callers cannot learn which ids exist;
 * the refusal itself is audited (rate-limited, like the HTTP layer's).
 */
enum dcms_err enclave_authorize(const struct enclave_call *c, const struct enclave_row *r,
                                const char *action)
{
    if (!c->p)
        return DCMS_OK; /* the system */
    bool read = strcmp(action, "enclaves:read") == 0;
    const char *parties[1] = {r->v[C_CONSUMER]};
    struct dcms_iam_resource res = {
        .type = "enclave",
        .id = r->v[C_ID],
        .owner_id = r->v[C_PROVIDER],
        .org_id = r->v[C_PROVIDER],
        .parties = parties,
        .nparties = read && r->v[C_CONSUMER] ? 1 : 0,
        .scoped = true,
    };
    struct dcms_iam_ctx ctx = {c->en->app->iam, c->client_ip};
    if (!read) {
        /* Whoever may not even read it learns nothing about it. */
        enum dcms_err e = enclave_authorize(c, r, "enclaves:read");
        if (e)
            return e;
    }
    struct dcms_errinfo tmp;
    dcms_errinfo_init(&tmp, NULL);
    enum dcms_err e = dcms_iam_authorize(c->p, action, &res, &ctx, &tmp);
    if (!e)
        return DCMS_OK;
    if (read) {
        json_t *d = json_pack("{s:s, s:s}", "action", action, "reason", tmp.message);
        struct dcms_audit_event ev = {.actor = c->p->id,
                                      .action = "enclave.read_denied",
                                      .resource_type = "enclave",
                                      .resource_id = r->v[C_ID],
                                      .outcome = DCMS_AUDIT_DENIED,
                                      .details = d,
                                      .client_ip = c->client_ip,
                                      .request_id = c->request_id};
        dcms_audit_refusal(c->en->app->audit, &ev);
        json_decref(d);
        return dcms_err_set(c->ei, DCMS_ERR_NOT_FOUND, "enclave not found");
    }
    return dcms_err_set(c->ei, e, "%s", tmp.message);
}

/* 409 naming the current state and what may happen in it. */
static enum dcms_err check_transition(const struct enclave_call *c, const struct enclave_row *r,
                                      enum enclave_event ev, unsigned who, enum enclave_status *to)
{
    enum enclave_status from;
    if (!enclave_status_parse(r->v[C_STATUS], &from))
        return dcms_err_set(c->ei, DCMS_ERR_INTERNAL, NULL);
    if (enclave_transition(from, ev, who, to))
        return DCMS_OK;
    char allowed[160];
    enclave_allowed_events(from, who, allowed, sizeof(allowed));
    dcms_err_set(c->ei, DCMS_ERR_CONFLICT, "cannot %s an enclave that is %s (allowed: %s)",
                 enclave_event_name(ev), r->v[C_STATUS], allowed);
    dcms_err_field(c->ei, "status", "is %s; allowed: %s", r->v[C_STATUS], allowed);
    return DCMS_ERR_CONFLICT;
}

/* ---- transitions ---- */

/*
 * In `tx`: re-read the enclave, check the transition (`who`), apply `ch`,
 * write, audit `action` (details stolen) and, for a failed attestation, an
 * extra enclave.attest event (attest_details stolen).
 */
enum dcms_err enclave_apply_transition(const struct enclave_call *c, struct dcms_store_tx *tx,
                                       const char *id, enum enclave_event ev, unsigned who,
                                       const struct enclave_change *ch, const char *action,
                                       enum dcms_audit_outcome outcome, json_t *details,
                                       json_t *attest_details)
{
    struct dcms_errinfo *ei = c->ei;
    struct dcms_store_rows *rows = NULL;
    struct enclave_row r;
    char now[DCMS_TIME_STRLEN];
    dcms_time_format(dcms_clock_now_us(), now);
    enum dcms_err e;
    if ((e = enclave_store_load(tx, id, &rows, &r, ei)))
        goto out;
    enum enclave_status to;
    if ((e = check_transition(c, &r, ev, who, &to)))
        goto out;
    json_t *d = details ? details : json_object();
    details = NULL;
    if (d) {
        json_object_set_new(d, "from", json_string(r.v[C_STATUS]));
        json_object_set_new(d, "to", json_string(enclave_status_name(to)));
    }
    r.v[C_STATUS] = enclave_status_name(to);
    if (ch->set_reason)
        r.v[C_REASON] = ch->reason;
    if (ch->set_hold)
        r.v[C_HOLD] = ch->hold;
    if (ch->attestation)
        r.v[C_ATTEST] = ch->attestation;
    if (ch->attested_at)
        r.v[C_ATTESTED] = ch->attested_at;
    if (ch->ref) {
        r.v[C_REF] = ch->ref;
        r.v[C_PID] = ch->pid;
        r.v[C_STARTED] = ch->started_at;
    }
    e = enclave_store_update(tx, &r, now, ei);
    if (!e && ch->document)
        e = enclave_store_put_attestation(tx, id, now, ch->document, ch->attestation, ei);
    if (!e && attest_details)
        e = audit(c, tx, "enclave.attest", id,
                  json_is_true(json_object_get(attest_details, "verified")) ? DCMS_AUDIT_SUCCESS
                                                                            : DCMS_AUDIT_DENIED,
                  json_incref(attest_details), ei);
    if (!e)
        e = audit(c, tx, action, id, outcome, d, ei);
    else
        json_decref(d);
out:
    json_decref(details);
    json_decref(attest_details);
    dcms_store_rows_free(rows);
    return e;
}

/* enclave_apply_transition in a write transaction of its own; *out gets the new row when
 * non-NULL. */
enum dcms_err enclave_commit_transition(const struct enclave_call *c, const char *id,
                                        enum enclave_event ev, unsigned who,
                                        const struct enclave_change *ch, const char *action,
                                        enum dcms_audit_outcome outcome, json_t *details,
                                        json_t *attest_details, struct enclave_rec *out)
{
    struct dcms_errinfo *ei = c->ei;
    struct dcms_store_tx *tx = NULL;
    struct dcms_store_rows *rows = NULL;
    struct enclave_row r;
    enum dcms_err e = dcms_store_begin(c->en->app->store, DCMS_TX_WRITE, &tx, ei);
    if (e) {
        json_decref(details);
        json_decref(attest_details);
        return e;
    }
    e = enclave_apply_transition(c, tx, id, ev, who, ch, action, outcome, details, attest_details);
    if (!e && out && !(e = enclave_store_load(tx, id, &rows, &r, ei)))
        enclave_rec_take(out, &rows, &r);
    dcms_store_rows_free(rows);
    return e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, ei);
}

/*
 * After an attestation: Running (or the same state) with the new report
 * when it verified; otherwise the workload is terminated and the enclave
 * Failed with the reason. `ev` is the event on success.
 */
enum dcms_err enclave_settle_attestation(const struct enclave_call *c, const struct enclave_row *r,
                                         enum enclave_event ev, unsigned who,
                                         struct enclave_verdict *v,
                                         const struct enclave_change *base, const char *action,
                                         json_t *details, struct enclave_rec *out)
{
    json_t *doc = json_incref(json_object_get(v->attestation, "document"));
    json_object_del(v->attestation, "document"); /* kept apart (enclaves_evidence.c) */
    char *text = dcms_json_dump(v->attestation, NULL);
    json_t *ad = enclave_attest_audit_details(v, r);
    if (!text || !ad) {
        json_decref(doc);
        free(text);
        json_decref(ad);
        json_decref(details);
        return dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
    }
    struct enclave_change ch = *base;
    ch.attestation = text;
    ch.document = json_string_value(doc);
    enum dcms_err e;
    if (v->verified) {
        ch.attested_at = json_string_value(json_object_get(v->attestation, "verified_at"));
        e = enclave_commit_transition(c, r->v[C_ID], ev, who, &ch, action, DCMS_AUDIT_SUCCESS,
                                      details, ev == ENCLAVE_EV_ATTEST ? NULL : ad, out);
        if (ev == ENCLAVE_EV_ATTEST)
            json_decref(ad);
    } else {
        json_decref(details);
        const char *ref = ch.ref ? ch.ref : r->v[C_REF];
        /* A workload that died (or hit a limit) says more than the missing document. */
        struct dcms_enclave_probe pr;
        memset(&pr, 0, sizeof(pr));
        struct dcms_errinfo pei;
        dcms_errinfo_init(&pei, NULL);
        bool probed = ref && !c->en->backend->probe(c->en->backend, ref, &pr, &pei);
        /* No document at all: the workload may be dying; give it a moment to be reaped. */
        for (int i = 0;
             probed && !v->report_valid_syntax && pr.state == DCMS_ENCLAVE_RUN_RUNNING && i < 10;
             i++) {
            struct timespec ts = {0, 25 * 1000 * 1000};
            nanosleep(&ts, NULL);
            probed = !c->en->backend->probe(c->en->backend, ref, &pr, &pei);
        }
        char reason[700];
        if (probed && pr.state == DCMS_ENCLAVE_RUN_EXITED)
            snprintf(reason, sizeof(reason), "workload exited: %s",
                     pr.reason[0] ? pr.reason : "no reason given");
        else if (probed && pr.notice[0])
            snprintf(reason, sizeof(reason), "attestation failed: %s (workload: %s)", v->reason,
                     pr.notice);
        else
            snprintf(reason, sizeof(reason), "attestation failed: %s", v->reason);
        struct dcms_errinfo tei;
        dcms_errinfo_init(&tei, NULL);
        if (ref && c->en->backend->terminate(c->en->backend, ref, &tei))
            DCMS_LOG(DCMS_LOG_WARN, "enclaves",
                     "cannot terminate %s after a failed attestation: %s", r->v[C_ID], tei.message);
        ch.reason = reason;
        ch.set_reason = true;
        struct enclave_call sys = *c;
        sys.p = NULL; /* the verifier, not the caller, fails it */
        e = enclave_commit_transition(&sys, r->v[C_ID], ENCLAVE_EV_FAIL, ENCLAVE_BY_SYSTEM, &ch,
                                      "enclave.fail", DCMS_AUDIT_SUCCESS,
                                      json_pack("{s:s, s:s}", "reason", reason, "during", action),
                                      ad, out);
    }
    json_decref(doc);
    free(text);
    return e;
}

/* Starts the workload of a new (Initializing) enclave and attests it; the lock is held. */
enum dcms_err enclave_start_and_attest(const struct enclave_call *c, const char *id,
                                       struct enclave_rec *out)
{
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    struct enclave_row r;
    enum dcms_err e = dcms_store_begin(c->en->app->store, DCMS_TX_READ, &tx, c->ei);
    if (e)
        return e;
    e = enclave_store_load(tx, id, &rows, &r, c->ei);
    dcms_store_rollback(tx);
    if (e)
        return e;
    struct enclave_config cfg;
    struct dcms_errinfo pei;
    dcms_errinfo_init(&pei, NULL);
    json_t *cj = enclave_json_text(r.v[C_CONFIG]);
    enclave_config_from_json(cj, "", NULL, &cfg, &pei);
    json_decref(cj);
    char path[2048], ref[DCMS_ENCLAVE_REF_MAX] = "", pid[24] = "", started[DCMS_TIME_STRLEN];
    enclave_image_path(c->en, cfg.image, path, sizeof(path));
    struct dcms_enclave_spec spec = {
        .enclave_id = id,
        .image_path = path,
        .cpu_cores = cfg.cpu_cores,
        .memory_mb = cfg.memory_mb,
        .storage_gb = cfg.storage_gb,
        .debug_mode = cfg.sec.debug_mode,
    };
    struct dcms_errinfo bei;
    dcms_errinfo_init(&bei, NULL);
    struct enclave_call sys = *c;
    sys.p = NULL;
    if (pei.code || c->en->backend->start(c->en->backend, &spec, ref, &bei)) {
        char reason[300];
        snprintf(reason, sizeof(reason), "the workload did not start: %s",
                 pei.code ? "the stored configuration is unreadable" : bei.message);
        struct enclave_change ch = {.reason = reason, .set_reason = true};
        e = enclave_commit_transition(&sys, id, ENCLAVE_EV_FAIL, ENCLAVE_BY_SYSTEM, &ch,
                                      "enclave.fail", DCMS_AUDIT_SUCCESS,
                                      json_pack("{s:s}", "reason", reason), NULL, out);
        dcms_store_rows_free(rows);
        return e;
    }
    dcms_time_format(dcms_clock_now_us(), started);
    struct dcms_enclave_probe pr;
    memset(&pr, 0, sizeof(pr));
    pr.pid = -1;
    dcms_errinfo_init(&bei, NULL);
    if (!c->en->backend->probe(c->en->backend, ref, &pr, &bei) && pr.pid > 0)
        snprintf(pid, sizeof(pid), "%lld", (long long)pr.pid);
    r.v[C_REF] = ref;
    struct enclave_verdict v;
    e = enclave_attest_now(c->en, &r, &v, c->ei);
    if (e) {
        /* No verdict (out of memory, a crypto failure): it cannot run unverified. */
        struct dcms_errinfo tei;
        dcms_errinfo_init(&tei, NULL);
        if (c->en->backend->terminate(c->en->backend, ref, &tei))
            DCMS_LOG(DCMS_LOG_WARN, "enclaves", "cannot terminate %s: %s", id, tei.message);
        char reason[320];
        snprintf(reason, sizeof(reason), "the attestation could not be checked: %s",
                 c->ei->message);
        struct enclave_change ch = {.reason = reason,
                                    .set_reason = true,
                                    .ref = ref,
                                    .pid = pid[0] ? pid : NULL,
                                    .started_at = started};
        struct dcms_errinfo fei;
        dcms_errinfo_init(&fei, NULL);
        sys.ei = &fei;
        if (enclave_commit_transition(&sys, id, ENCLAVE_EV_FAIL, ENCLAVE_BY_SYSTEM, &ch,
                                      "enclave.fail", DCMS_AUDIT_SUCCESS,
                                      json_pack("{s:s}", "reason", reason), NULL, NULL))
            DCMS_LOG(DCMS_LOG_WARN, "enclaves", "cannot record the failure of %s: %s", id,
                     fei.message);
        dcms_store_rows_free(rows);
        return e;
    }
    struct enclave_change base = {.ref = ref, .pid = pid[0] ? pid : NULL, .started_at = started};
    e = enclave_settle_attestation(
        &sys, &r, ENCLAVE_EV_STARTED, ENCLAVE_BY_SYSTEM, &v, &base, "enclave.start",
        json_pack("{s:s, s:o}", "ref", ref, "pid", pid[0] ? json_integer(pr.pid) : json_null()),
        out);
    json_decref(v.attestation);
    dcms_store_rows_free(rows);
    return e;
}

/* ---- the API ---- */

static const char *provider_of(const struct dcms_principal *p)
{
    return p->org[0] ? p->org : p->id;
}

enum dcms_err enclave_contract_read(const struct enclave_call *c, const char *contract_id,
                                    struct dcms_contract_security *cs)
{
    struct dcms_errinfo tmp;
    dcms_errinfo_init(&tmp, NULL);
    if (!contract_id || !dcms_uuid_valid(contract_id))
        return DCMS_ERR_NOT_FOUND;
    enum dcms_err e = dcms_contracts_security_of(c->en->app, contract_id, cs, &tmp);
    if (e)
        return e == DCMS_ERR_NOT_FOUND ? e : dcms_err_set(c->ei, e, "%s", tmp.message);
    if (!c->p)
        return DCMS_OK; /* the system */
    /* The contract's existence and requirements are the parties' business (and admins', auditors').
     */
    const char *parties[2] = {cs->provider_id, cs->consumer_id};
    struct dcms_iam_resource res = {
        .type = "contract", .id = cs->id, .parties = parties, .nparties = 2, .scoped = true};
    struct dcms_iam_ctx ctx = {c->en->app->iam, c->client_ip};
    if (!dcms_iam_authorize(c->p, "contracts:read", &res, &ctx, &tmp))
        return DCMS_OK;
    json_t *d = json_pack("{s:s}", "reason", "not a party to the contract");
    struct dcms_audit_event ev = {.actor = c->p->id,
                                  .action = "contract.hidden",
                                  .resource_type = "contract",
                                  .resource_id = cs->id,
                                  .outcome = DCMS_AUDIT_DENIED,
                                  .details = d,
                                  .client_ip = c->client_ip,
                                  .request_id = c->request_id};
    if (d)
        dcms_audit_refusal(c->en->app->audit, &ev);
    json_decref(d);
    return DCMS_ERR_NOT_FOUND;
}

/*
 * Checks that the contract `cs` (NULL: not found) may be served by an
 * enclave of `provider`: it exists and the provider is its provider
 * (admins may bind any). Problems are field problems on contract_id; its
 * status and security requirements are the compatibility gate's
 * (enclave_compat_gate). The enclave row keeps the contract's consumer: a
 * contract's parties never change once it exists.
 */
static void check_contract(const struct enclave_call *c, const struct dcms_contract_security *cs,
                           const char *provider)
{
    bool admin = c->p && (c->p->roles & DCMS_ROLE_ADMIN);
    if (!cs)
        dcms_err_field(c->ei, "contract_id", "must be the id of a contract");
    else if (!admin && strcmp(cs->provider_id, provider) != 0)
        dcms_err_field(c->ei, "contract_id",
                       "must be a contract in which the enclave's provider is the provider");
}

/* ---- workload images: which files count, in one place ---- */

void enclave_image_path(const struct dcms_enclaves *en, const char *image, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", en->images_dir, image);
}

static bool same_time(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

/*
 * The cached measurement of `name` when stat() says the file is the one that
 * was measured: same device, inode, size, mtime and ctime (ctime cannot be
 * set by a writer, and any write or rename changes it). A file whose ctime
 * was within RACY_S of its measurement is not cached, since a write in the
 * same timestamp tick would leave its stat unchanged (git's "racy" entries).
 * A stale hash could at worst make an enclave fail its attestation: the
 * backend measures the bytes it runs, and PCR0 is checked against this.
 */
#define RACY_S 2
static bool image_cached(struct dcms_enclaves *en, const char *name, const struct stat *st,
                         unsigned char sha[DCMS_ATTEST_SHA384_LEN])
{
    bool hit = false;
    pthread_mutex_lock(&en->images_mu);
    for (unsigned i = 0; !hit && i < en->nimages; i++) {
        const struct enclave_image_meas *m = &en->images[i];
        if (strcmp(m->name, name) == 0 && m->dev == st->st_dev && m->ino == st->st_ino &&
            m->size == st->st_size && same_time(&m->mtime, &st->st_mtim) &&
            same_time(&m->ctime, &st->st_ctim)) {
            memcpy(sha, m->sha, DCMS_ATTEST_SHA384_LEN);
            hit = true;
        }
    }
    pthread_mutex_unlock(&en->images_mu);
    return hit;
}

static void image_remember(struct dcms_enclaves *en, const char *name, const struct stat *st,
                           const unsigned char sha[DCMS_ATTEST_SHA384_LEN])
{
    if (strlen(name) >= sizeof(en->images[0].name) ||
        (int64_t)st->st_ctim.tv_sec > dcms_clock_now_us() / 1000000 - RACY_S)
        return;
    pthread_mutex_lock(&en->images_mu);
    unsigned i = 0;
    while (i < en->nimages && strcmp(en->images[i].name, name) != 0)
        i++;
    if (i == en->nimages) {
        if (en->nimages < ENCLAVE_IMAGE_CACHE)
            i = en->nimages++;
        else
            i = en->next_image++ % ENCLAVE_IMAGE_CACHE;
    }
    struct enclave_image_meas *m = &en->images[i];
    snprintf(m->name, sizeof(m->name), "%s", name);
    m->dev = st->st_dev;
    m->ino = st->st_ino;
    m->size = st->st_size;
    m->mtime = st->st_mtim;
    m->ctime = st->st_ctim;
    memcpy(m->sha, sha, DCMS_ATTEST_SHA384_LEN);
    pthread_mutex_unlock(&en->images_mu);
}

/*
 * True when `image` names a workload image (a regular file under
 * DCMS_ENCLAVE_IMAGES_DIR), with its SHA-384 in `sha_hex` (lowercase hex).
 * An unchanged file is not hashed again (image_cached).
 */
bool enclave_image_measure(struct dcms_enclaves *en, const char *image,
                           char sha_hex[2 * DCMS_ATTEST_SHA384_LEN + 1])
{
    char path[2048];
    struct stat st;
    unsigned char sha[DCMS_ATTEST_SHA384_LEN];
    struct dcms_errinfo mei;
    dcms_errinfo_init(&mei, NULL);
    enclave_image_path(en, image, path, sizeof(path));
    /* Only executable ELF images (EIFs for nitro) are images: nothing else in the folder runs. */
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) ||
        !dcms_fs_is_workload_image(path, strcmp(en->backend->name, "nitro") == 0))
        return false;
    if (!image_cached(en, image, &st, sha)) {
        if (dcms_attest_measure_file(path, sha, &mei))
            return false;
        image_remember(en, image, &st, sha);
    }
    dcms_hex_encode(sha_hex, sha, sizeof(sha));
    return true;
}

enum dcms_err enclave_create(const struct enclave_call *c, const struct enclave_create_in *in,
                             struct enclave_rec *out)
{
    *out = (struct enclave_rec){0};
    struct dcms_errinfo *ei = c->ei;
    struct dcms_enclaves *en = c->en;
    /* A missing or mistyped name was reported by the decoder. */
    if (in->name && (strlen(in->name) < 1 || strlen(in->name) > 255))
        dcms_err_field(ei, "name", "must be 1 to 255 characters");
    if (in->contract_id && !dcms_uuid_valid(in->contract_id))
        dcms_err_field(ei, "contract_id", "must be the id of a contract");
    const struct enclave_config *cfg = &in->config;
    char sha_hex[2 * DCMS_ATTEST_SHA384_LEN + 1] = "", pcr0_hex[2 * DCMS_ATTEST_SHA384_LEN + 1];
    if (cfg->image[0] && !enclave_image_measure(en, cfg->image, sha_hex))
        dcms_err_field(ei, "configuration.image",
                       "no workload image of this name (see DCMS_ENCLAVE_IMAGES_DIR)");
    if (ei->code)
        return ei->code;
    const char *provider = provider_of(c->p);
    struct dcms_iam_resource res = {
        .type = "enclave", .owner_id = provider, .org_id = provider, .scoped = true};
    struct dcms_iam_ctx ctx = {en->app->iam, c->client_ip};
    enum dcms_err e = dcms_iam_authorize(c->p, "enclaves:create", &res, &ctx, ei);
    if (e)
        return e;
    struct dcms_contract_security cs;
    if (in->contract_id) {
        if ((e = enclave_contract_read(c, in->contract_id, &cs)) && e != DCMS_ERR_NOT_FOUND)
            return e;
        check_contract(c, e ? NULL : &cs, provider);
    }
    if (ei->code)
        return ei->code;
    /* Compatibility is a gate: what could not serve the contract is not created for it. */
    if (in->contract_id && (e = enclave_compat_gate(c, NULL, &cs, cfg)))
        return e;

    json_t *cj = enclave_config_to_json(cfg);
    char *ctext = cj ? dcms_json_dump(cj, NULL) : NULL;
    json_decref(cj);
    if (!ctext)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    char id[DCMS_UUID_STRLEN], now[DCMS_TIME_STRLEN];
    dcms_uuid_v7(id);
    dcms_time_format(dcms_clock_now_us(), now);
    struct dcms_store_tx *tx = NULL;
    if ((e = dcms_store_begin(en->app->store, DCMS_TX_WRITE, &tx, ei)))
        goto out;
    /*
     * The expected PCR0 is the image's pinned measurement (taken when its
     * name was first used), so a file changed in place fails attestation;
     * a debug-mode workload reports all-zero PCRs, as on Nitro.
     */
    if ((e = enclave_store_pin_image(tx, cfg->image, sha_hex, now, c->p->id, pcr0_hex,
                                     sizeof(pcr0_hex), ei)))
        goto out;
    bool changed = strcmp(pcr0_hex, sha_hex) != 0;
    if (changed)
        DCMS_LOG(DCMS_LOG_WARN, "enclaves",
                 "workload image %s changed since it was registered: its attestation will fail",
                 cfg->image);
    if (cfg->sec.debug_mode) {
        memset(pcr0_hex, '0', 2 * DCMS_ATTEST_SHA384_LEN);
        pcr0_hex[2 * DCMS_ATTEST_SHA384_LEN] = '\0';
    }
    struct enclave_row nr = {0};
    nr.v[C_ID] = id;
    nr.v[C_NAME] = in->name;
    nr.v[C_PROVIDER] = provider;
    nr.v[C_CONTRACT] = in->contract_id;
    nr.v[C_CONSUMER] = in->contract_id ? cs.consumer_id : NULL;
    nr.v[C_BACKEND] = en->backend->name;
    nr.v[C_CONFIG] = ctext;
    nr.v[C_IMAGE_SHA] = sha_hex;
    nr.v[C_PCR0] = pcr0_hex;
    nr.v[C_OWNER] = dcms_nodes_self(en->app->nodes);
    e = enclave_store_insert(tx, &nr, now, ei);
    if (!e)
        e = audit(c, tx, "enclave.create", id, DCMS_AUDIT_SUCCESS,
                  json_pack("{s:s, s:s, s:o, s:s, s:s, s:s, s:b, s:i, s:i, s:b}", "name", in->name,
                            "backend", en->backend->name, "contract_id",
                            enclave_str_or_null(in->contract_id), "image", cfg->image,
                            "image_sha384", sha_hex, "expected_pcr0", pcr0_hex, "image_changed",
                            changed, "cpu_cores", (int)cfg->cpu_cores, "memory_mb",
                            (int)cfg->memory_mb, "debug_mode", cfg->sec.debug_mode),
                  ei);
    e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, ei);
    tx = NULL;
    if (e)
        goto out;
    pthread_mutex_t *mu = enclave_lock_of(en, id);
    pthread_mutex_lock(mu);
    e = enclave_start_and_attest(c, id, out);
    pthread_mutex_unlock(mu);
out:
    dcms_store_rollback(tx);
    free(ctext);
    return e;
}

enum dcms_err enclave_get(const struct enclave_call *c, const char *id, struct enclave_rec *out)
{
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    struct enclave_row r;
    *out = (struct enclave_rec){0};
    enum dcms_err e = dcms_store_begin(c->en->app->store, DCMS_TX_READ, &tx, c->ei);
    if (e)
        return e;
    if (!(e = enclave_store_load(tx, id, &rows, &r, c->ei)) &&
        !(e = enclave_authorize(c, &r, "enclaves:read")))
        enclave_rec_take(out, &rows, &r);
    dcms_store_rows_free(rows);
    dcms_store_rollback(tx);
    return e;
}

enum dcms_err enclave_list(const struct enclave_call *c, const struct enclave_list_in *in,
                           struct dcms_store_rows **out)
{
    bool all = (c->p->roles & (DCMS_ROLE_ADMIN | DCMS_ROLE_AUDITOR)) != 0;
    struct dcms_store_tx *tx;
    *out = NULL;
    enum dcms_err e = dcms_store_begin(c->en->app->store, DCMS_TX_READ, &tx, c->ei);
    if (e)
        return e;
    e = enclave_store_list(tx, in, all, c->p->id, provider_of(c->p), out, c->ei);
    dcms_store_rollback(tx);
    return e;
}

enum dcms_err enclave_patch(const struct enclave_call *c, const char *id,
                            const struct enclave_patch_in *in, struct enclave_rec *out)
{
    *out = (struct enclave_rec){0};
    struct dcms_errinfo *ei = c->ei;
    if (in->name && (strlen(in->name) < 1 || strlen(in->name) > 255))
        dcms_err_field(ei, "name", "must be 1 to 255 characters");
    if (in->has_contract && in->contract_id && !dcms_uuid_valid(in->contract_id))
        dcms_err_field(ei, "contract_id", "must be the id of a contract");
    if (ei->code)
        return ei->code;
    struct dcms_contract_security cs;
    /*
     * Whoever may not read the enclave gets its 404 here, before the write
     * transaction: the refusal's audit record needs a write transaction of
     * its own, which would wait on ours (SQLite) for the store timeout.
     */
    struct enclave_rec seen;
    enum dcms_err ge = enclave_get(c, id, &seen);
    if (ge)
        return ge;
    enclave_rec_release(&seen);
    bool bind = in->has_contract && in->contract_id;
    enum dcms_err ce = bind ? enclave_contract_read(c, in->contract_id, &cs) : DCMS_ERR_NOT_FOUND;
    if (ce && ce != DCMS_ERR_NOT_FOUND)
        return ce;
    bool found = !ce;
    pthread_mutex_t *mu = enclave_lock_of(c->en, id);
    pthread_mutex_lock(mu);
    struct dcms_store_tx *tx = NULL;
    struct dcms_store_rows *rows = NULL;
    struct enclave_row r;
    char now[DCMS_TIME_STRLEN];
    char *ctext = NULL;
    dcms_time_format(dcms_clock_now_us(), now);
    enum dcms_err e = dcms_store_begin(c->en->app->store, DCMS_TX_WRITE, &tx, ei);
    if (e)
        goto out;
    if ((e = enclave_store_load(tx, id, &rows, &r, ei)) ||
        (e = enclave_authorize(c, &r, "enclaves:manage")))
        goto out;
    if ((e = dcms_etag_check(in->if_match, r.v[C_VERSION], ei)))
        goto out;
    enum enclave_status to;
    if ((e = check_transition(c, &r, ENCLAVE_EV_UPDATE, ENCLAVE_BY_OWNER, &to)))
        goto out;
    struct enclave_config cfg;
    struct dcms_errinfo pei;
    dcms_errinfo_init(&pei, NULL);
    json_t *cj = enclave_json_text(r.v[C_CONFIG]);
    enclave_config_from_json(cj, "", NULL, &cfg, &pei);
    json_decref(cj);
    if (pei.code) {
        e = dcms_err_set(ei, DCMS_ERR_INTERNAL, "the stored configuration is unreadable");
        goto out;
    }
    if (in->has_sec && in->sec.debug_mode != cfg.sec.debug_mode)
        dcms_err_field(ei, "security_policy.debug_mode",
                       "cannot change after creation: the workload was started %s debug mode",
                       cfg.sec.debug_mode ? "in" : "without");
    if (bind)
        check_contract(c, found ? &cs : NULL, r.v[C_PROVIDER]);
    if ((e = ei->code))
        goto out;
    if (in->has_net)
        cfg.net = in->net;
    if (in->has_sec)
        cfg.sec = in->sec;
    if (bind && (e = enclave_compat_gate(c, id, &cs, &cfg)))
        goto out;
    cj = enclave_config_to_json(&cfg);
    ctext = cj ? dcms_json_dump(cj, NULL) : NULL;
    json_decref(cj);
    if (!ctext) {
        e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
        goto out;
    }
    r.v[C_CONFIG] = ctext;
    if (in->name)
        r.v[C_NAME] = in->name;
    if (in->has_contract) {
        r.v[C_CONTRACT] = in->contract_id;
        r.v[C_CONSUMER] = bind ? cs.consumer_id : NULL;
    }
    if ((e = enclave_store_update(tx, &r, now, ei)))
        goto out;
    json_t *fields = json_array();
    const char *names[] = {in->name ? "name" : NULL, in->has_contract ? "contract_id" : NULL,
                           in->has_net ? "network_policy" : NULL,
                           in->has_sec ? "security_policy" : NULL};
    for (size_t i = 0; fields && i < 4; i++)
        if (names[i])
            json_array_append_new(fields, json_string(names[i]));
    e = audit(c, tx, "enclave.update", id, DCMS_AUDIT_SUCCESS,
              json_pack("{s:o, s:o}", "fields", fields, "contract_id",
                        enclave_str_or_null(in->has_contract ? in->contract_id : r.v[C_CONTRACT])),
              ei);
    dcms_store_rows_free(rows);
    rows = NULL;
    if (!e && !(e = enclave_store_load(tx, id, &rows, &r, ei)))
        enclave_rec_take(out, &rows, &r);
out:
    dcms_store_rows_free(rows);
    if (tx)
        e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, ei);
    pthread_mutex_unlock(mu);
    free(ctext);
    return e;
}

/* suspend / resume / attest / terminate, with the lock held. */
static enum dcms_err act_locked(const struct enclave_call *c, const char *id, enum enclave_event ev,
                                const char *note, struct enclave_rec *out)
{
    struct dcms_enclaves *en = c->en;
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    struct enclave_row r;
    enum dcms_err e = dcms_store_begin(en->app->store, DCMS_TX_READ, &tx, c->ei);
    if (e)
        return e;
    e = enclave_store_load(tx, id, &rows, &r, c->ei);
    dcms_store_rollback(tx);
    if (e)
        return e;
    enum enclave_status to;
    if ((e = enclave_authorize(c, &r,
                               ev == ENCLAVE_EV_ATTEST ? "enclaves:attest" : "enclaves:manage")) ||
        (e = check_transition(c, &r, ev, ENCLAVE_BY_OWNER, &to)))
        goto out;
    /* Resumed only while it still meets its contract (which must be Active). */
    if (ev == ENCLAVE_EV_RESUME && (e = enclave_govern_resume_check(c, &r)))
        goto out;
    struct dcms_errinfo bei;
    dcms_errinfo_init(&bei, NULL);
    struct dcms_enclave_backend *b = en->backend;
    json_t *d = note ? json_pack("{s:s}", "reason", note) : NULL;
    switch (ev) {
    case ENCLAVE_EV_SUSPEND:
    case ENCLAVE_EV_RESUME:
        if (!r.v[C_REF] || (ev == ENCLAVE_EV_SUSPEND ? b->suspend(b, r.v[C_REF], &bei)
                                                     : b->resume(b, r.v[C_REF], &bei))) {
            json_decref(d);
            e = dcms_err_set(c->ei, DCMS_ERR_UNAVAILABLE, "the backend cannot %s the workload: %s",
                             enclave_event_name(ev), r.v[C_REF] ? bei.message : "none is running");
            goto out;
        }
        if (ev == ENCLAVE_EV_SUSPEND) {
            /* The owner's own suspension: a contract resumption does not undo it. */
            struct enclave_change ch = {.set_hold = true};
            e = enclave_commit_transition(c, id, ev, ENCLAVE_BY_OWNER, &ch, "enclave.suspend",
                                          DCMS_AUDIT_SUCCESS, d, NULL, out);
            break;
        }
        /* A resumed workload proves again what it is, against the policy as it is now. */
        /* fall through */
    case ENCLAVE_EV_ATTEST: {
        struct enclave_verdict v;
        if ((e = enclave_attest_now(en, &r, &v, c->ei))) {
            json_decref(d);
            goto out;
        }
        struct enclave_change ch = {.set_hold = ev == ENCLAVE_EV_RESUME};
        e = enclave_settle_attestation(
            c, &r, ev, ENCLAVE_BY_OWNER, &v, &ch,
            ev == ENCLAVE_EV_ATTEST ? "enclave.attest" : "enclave.resume",
            ev == ENCLAVE_EV_ATTEST ? enclave_attest_audit_details(&v, &r) : d, out);
        if (ev == ENCLAVE_EV_ATTEST)
            json_decref(d);
        json_decref(v.attestation);
        break;
    }
    case ENCLAVE_EV_TERMINATE: {
        /* A lost enclave's workload went with its node: nothing here can reach it. */
        bool lost = r.v[C_STATUS] && strcmp(r.v[C_STATUS], "lost") == 0;
        if (r.v[C_REF] && !lost && b->terminate(b, r.v[C_REF], &bei)) {
            json_decref(d);
            e = dcms_err_set(c->ei, DCMS_ERR_UNAVAILABLE,
                             "the backend cannot terminate the workload: %s", bei.message);
            goto out;
        }
        char reason[1100];
        snprintf(reason, sizeof(reason), "terminated by %s%s%s", c->p ? c->p->id : "the system",
                 note ? ": " : "", note ? note : "");
        struct enclave_change ch = {.reason = reason, .set_reason = true, .set_hold = true};
        e = enclave_commit_transition(c, id, ev, ENCLAVE_BY_OWNER, &ch, "enclave.terminate",
                                      DCMS_AUDIT_SUCCESS, d, NULL, out);
        break;
    }
    default:
        json_decref(d);
        e = dcms_err_set(c->ei, DCMS_ERR_INTERNAL, NULL);
    }
out:
    dcms_store_rows_free(rows);
    return e;
}

enum dcms_err enclave_act(const struct enclave_call *c, const char *id, enum enclave_event ev,
                          const char *reason, struct enclave_rec *out)
{
    *out = (struct enclave_rec){0};
    if (!id || !dcms_uuid_valid(id))
        return dcms_err_set(c->ei, DCMS_ERR_NOT_FOUND, "enclave not found");
    pthread_mutex_t *mu = enclave_lock_of(c->en, id);
    pthread_mutex_lock(mu);
    enum dcms_err e = act_locked(c, id, ev, reason, out);
    pthread_mutex_unlock(mu);
    return e;
}

enum dcms_err enclave_fail_if(struct dcms_enclaves *en, const char *id, const char *expect_ref,
                              const char *reason, struct dcms_errinfo *ei)
{
    struct enclave_call c = {.en = en, .ei = ei};
    pthread_mutex_t *mu = enclave_lock_of(en, id);
    pthread_mutex_lock(mu);
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    struct enclave_row r;
    enum dcms_err e = dcms_store_begin(en->app->store, DCMS_TX_READ, &tx, ei);
    if (!e) {
        e = enclave_store_load(tx, id, &rows, &r, ei);
        dcms_store_rollback(tx);
    }
    enum enclave_status from = ENCLAVE_TERMINATED, to;
    bool same_ref = !e && ((!expect_ref && !r.v[C_REF]) ||
                           (expect_ref && r.v[C_REF] && strcmp(expect_ref, r.v[C_REF]) == 0));
    if (e || !same_ref || !enclave_status_parse(r.v[C_STATUS], &from) ||
        !enclave_transition(from, ENCLAVE_EV_FAIL, ENCLAVE_BY_SYSTEM, &to))
        goto out; /* it moved on meanwhile: nothing to do */
    struct dcms_errinfo tei;
    dcms_errinfo_init(&tei, NULL);
    if (r.v[C_REF] && en->backend->terminate(en->backend, r.v[C_REF], &tei))
        DCMS_LOG(DCMS_LOG_WARN, "enclaves", "cannot terminate the workload of %s: %s", id,
                 tei.message);
    struct enclave_change ch = {.reason = reason, .set_reason = true};
    e = enclave_commit_transition(&c, id, ENCLAVE_EV_FAIL, ENCLAVE_BY_SYSTEM, &ch, "enclave.fail",
                                  DCMS_AUDIT_SUCCESS, json_pack("{s:s}", "reason", reason), NULL,
                                  NULL);
    if (!e)
        DCMS_LOG(DCMS_LOG_WARN, "enclaves", "enclave %s failed: %s", id, reason);
out:
    dcms_store_rows_free(rows);
    pthread_mutex_unlock(mu);
    return e == DCMS_ERR_NOT_FOUND ? DCMS_OK : e;
}
