/*
 * The enclave service: creation (measure the image, start the workload,
 * attest it with a fresh nonce, Running or Failed), reads scoped to the
 * caller, policy updates, the suspend / resume / attest / terminate
 * actions, and the system's Failed transition used by reconcile. Every
 * state change goes through the transition table (enclaves_model.c) and is
 * audited in the transaction that makes it. Operations on one enclave are
 * serialized in this process by a striped lock, so a request and the
 * reconcile thread never interleave on the same workload.
 */
#include <sodium.h>
#include <sys/stat.h>
#include <time.h>

#include "dcms/app.h"
#include "dcms/audit.h"
#include "dcms/clock.h"
#include "dcms/config.h"
#include "dcms/fs.h"
#include "dcms/json.h"
#include "dcms/log.h"
#include "dcms/store.h"
#include "enclaves/enclaves_int.h"

#define COLS                                                                                       \
    "e.id, e.name, e.provider_id, e.contract_id, e.backend, e.status, e.status_reason, "           \
    "e.attestation, e.configuration, e.metrics, e.version, e.created_at, e.updated_at, "           \
    "e.image_sha384, e.expected_pcr0, e.runtime_ref, e.runtime_pid, e.started_at, e.attested_at, " \
    "c.consumer_id"

enum {
    C_ID,
    C_NAME,
    C_PROVIDER,
    C_CONTRACT,
    C_BACKEND,
    C_STATUS,
    C_REASON,
    C_ATTEST,
    C_CONFIG,
    C_METRICS,
    C_VERSION,
    C_CREATED,
    C_UPDATED,
    C_IMAGE_SHA,
    C_PCR0,
    C_REF,
    C_PID,
    C_STARTED,
    C_ATTESTED,
    C_CONSUMER,
    C__COUNT
};

/* One enclave row as text (NULL where SQL NULL); pointers into rows or caller strings. */
struct row {
    const char *v[C__COUNT];
};

static struct dcms_query q_insert = DCMS_QUERY(
    "enclave_insert",
    "INSERT INTO enclaves (id, name, provider_id, contract_id, backend, status, configuration, "
    "metrics, created_at, updated_at, image_sha384, expected_pcr0) "
    "VALUES ($1, $2, $3, $4, $5, 'initializing', $6, '{}', $7, $7, $8, $9)");
static struct dcms_query q_get =
    DCMS_QUERY("enclave_get", "SELECT " COLS " FROM enclaves e LEFT JOIN contracts c "
                              "ON c.id = e.contract_id WHERE e.id = $1");
static struct dcms_query q_update = DCMS_QUERY(
    "enclave_update",
    "UPDATE enclaves SET name = $2, contract_id = $3, status = $4, status_reason = $5, "
    "attestation = $6, configuration = $7, runtime_ref = $8, runtime_pid = $9, started_at = $10, "
    "attested_at = $11, updated_at = $12, version = version + 1 WHERE id = $1 AND version = $13");
static struct dcms_query q_list =
    DCMS_QUERY("enclave_list",
               "SELECT " COLS " FROM enclaves e LEFT JOIN contracts c ON c.id = e.contract_id "
               "WHERE (CAST($1 AS TEXT) IS NULL OR e.status = $1) "
               "AND (CAST($2 AS TEXT) IS NULL OR CAST(e.contract_id AS TEXT) = $2) "
               "AND (CAST($3 AS TEXT) IS NULL OR CAST(e.provider_id AS TEXT) = $3) "
               "AND (CAST($4 AS TEXT) IS NULL OR e.backend = $4) "
               "AND ($5 = 1 OR CAST(e.provider_id AS TEXT) IN ($6, $7) "
               "OR CAST(c.consumer_id AS TEXT) IN ($6, $7)) "
               "AND (CAST($8 AS TEXT) IS NULL OR CAST(e.id AS TEXT) > $8) ORDER BY e.id LIMIT $9");
static struct dcms_query q_contract = DCMS_QUERY(
    "enclave_contract", "SELECT provider_id, consumer_id, status FROM contracts WHERE id = $1");
static struct dcms_query q_image_pin = DCMS_QUERY(
    "enclave_image_pin", "INSERT INTO enclave_images (name, sha384, registered_at, registered_by) "
                         "VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING");
static struct dcms_query q_image_get =
    DCMS_QUERY("enclave_image_get", "SELECT sha384 FROM enclave_images WHERE name = $1");
static struct dcms_query q_samples =
    DCMS_QUERY("enclave_samples",
               "SELECT at, cpu_time_ms, rss_bytes, peak_rss_bytes, uptime_ms, channel_bytes_in, "
               "channel_bytes_out, nprocs, notice FROM enclave_metric_samples WHERE enclave_id = "
               "$1 ORDER BY at DESC LIMIT "
               "60");
static struct dcms_query q_sample_insert = DCMS_QUERY(
    "enclave_sample_insert",
    "INSERT INTO enclave_metric_samples (enclave_id, at, cpu_time_ms, rss_bytes, peak_rss_bytes, "
    "uptime_ms, channel_bytes_in, channel_bytes_out, nprocs, notice) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)");
static struct dcms_query q_sample_prune = DCMS_QUERY(
    "enclave_sample_prune", "DELETE FROM enclave_metric_samples WHERE enclave_id = $1 AND at < "
                            "(SELECT at FROM enclave_metric_samples WHERE enclave_id = $1 "
                            "ORDER BY at DESC LIMIT 1 OFFSET 59)");
static struct dcms_query q_metrics_set =
    DCMS_QUERY("enclave_metrics_set", "UPDATE enclaves SET metrics = $2 WHERE id = $1 AND "
                                      "runtime_ref = $3 AND status IN ('running', 'suspended')");

/* ---- helpers ---- */

pthread_mutex_t *enclave_lock_of(struct dcms_enclaves *en, const char *id)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const char *p = id; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    return &en->locks[h % ENCLAVE_LOCK_STRIPES];
}

static void row_from(const struct dcms_store_rows *r, size_t i, struct row *out)
{
    for (size_t j = 0; j < C__COUNT; j++)
        out->v[j] = dcms_store_rows_text(r, i, j);
}

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

/* Stored JSON text back to a value; null when absent or unreadable. */
static json_t *json_text(const char *s)
{
    if (!s)
        return json_null();
    json_t *v = json_loads(s, JSON_REJECT_DUPLICATES, NULL);
    return v ? v : json_null();
}

static bool hex_decode(const char *s, unsigned char *out, size_t cap, size_t *n)
{
    size_t len = s ? strlen(s) : 0;
    if (len % 2 || len / 2 > cap)
        return false;
    for (size_t i = 0; i < len; i += 2) {
        int v[2];
        for (int k = 0; k < 2; k++) {
            char ch = s[i + (size_t)k];
            v[k] = ch >= '0' && ch <= '9'   ? ch - '0'
                   : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                   : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                            : -1;
            if (v[k] < 0)
                return false;
        }
        out[i / 2] = (unsigned char)(v[0] << 4 | v[1]);
    }
    *n = len / 2;
    return true;
}

static json_t *row_json(const struct row *r)
{
    json_t *runtime = json_null();
    if (r->v[C_REF])
        runtime =
            json_pack("{s:s, s:o, s:o}", "ref", r->v[C_REF], "pid",
                      r->v[C_PID] ? json_integer(strtoll(r->v[C_PID], NULL, 10)) : json_null(),
                      "started_at", str_or_null(r->v[C_STARTED]));
    json_t *metrics = json_text(r->v[C_METRICS]);
    if (json_is_object(metrics) && json_object_size(metrics) == 0) {
        json_decref(metrics);
        metrics = json_null();
    }
    return json_pack(
        "{s:s, s:s, s:s, s:o, s:s, s:s, s:o, s:o, s:{s:o, s:o}, s:o, s:o, s:o, s:o, s:I, s:s, "
        "s:s}",
        "id", r->v[C_ID], "name", r->v[C_NAME], "provider_id", r->v[C_PROVIDER], "contract_id",
        str_or_null(r->v[C_CONTRACT]), "backend", r->v[C_BACKEND], "status", r->v[C_STATUS],
        "status_reason", str_or_null(r->v[C_REASON]), "configuration", json_text(r->v[C_CONFIG]),
        "measurement", "image_sha384", str_or_null(r->v[C_IMAGE_SHA]), "expected_pcr0",
        str_or_null(r->v[C_PCR0]), "attestation", json_text(r->v[C_ATTEST]), "attested_at",
        str_or_null(r->v[C_ATTESTED]), "metrics", metrics, "runtime", runtime, "version",
        (json_int_t)strtoll(r->v[C_VERSION], NULL, 10), "created_at", r->v[C_CREATED], "updated_at",
        r->v[C_UPDATED]);
}

static enum dcms_err load(struct dcms_store_tx *tx, const char *id, struct dcms_store_rows **rows,
                          struct row *r, struct dcms_errinfo *ei)
{
    *rows = NULL;
    if (!id || !dcms_uuid_valid(id))
        return dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "enclave not found");
    enum dcms_err e = dcms_store_exec(tx, &q_get, (struct dcms_store_val[]){DCMS_VAL_TEXT(id)}, 1,
                                      rows, NULL, ei);
    if (e)
        return e;
    if (dcms_store_rows_count(*rows) != 1) {
        dcms_store_rows_free(*rows);
        *rows = NULL;
        return dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "enclave not found");
    }
    row_from(*rows, 0, r);
    return DCMS_OK;
}

/* Writes `r` back with a new version; 412 when it moved since it was read. */
static enum dcms_err store_row(struct dcms_store_tx *tx, const struct row *r, const char *now,
                               struct dcms_errinfo *ei)
{
    uint64_t n = 0;
#define V(i) (r->v[i] ? DCMS_VAL_TEXT(r->v[i]) : DCMS_VAL_NULL)
    enum dcms_err e = dcms_store_exec(
        tx, &q_update,
        (struct dcms_store_val[]){
            V(C_ID), V(C_NAME), V(C_CONTRACT), V(C_STATUS), V(C_REASON), V(C_ATTEST), V(C_CONFIG),
            V(C_REF), r->v[C_PID] ? DCMS_VAL_INT(strtoll(r->v[C_PID], NULL, 10)) : DCMS_VAL_NULL,
            V(C_STARTED), V(C_ATTESTED), DCMS_VAL_TEXT(now),
            DCMS_VAL_INT(strtoll(r->v[C_VERSION], NULL, 10))},
        13, NULL, &n, ei);
#undef V
    if (!e && n != 1)
        return dcms_err_set(ei, DCMS_ERR_PRECONDITION_FAILED, "the enclave changed meanwhile");
    return e;
}

static enum dcms_err audit(const struct enclave_call *c, struct dcms_store_tx *tx,
                           const char *action, const char *id, enum dcms_audit_outcome outcome,
                           json_t *details /* stolen */, struct dcms_errinfo *ei)
{
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
static enum dcms_err authorize(const struct enclave_call *c, const struct row *r,
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
        enum dcms_err e = authorize(c, r, "enclaves:read");
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
static enum dcms_err check_transition(const struct enclave_call *c, const struct row *r,
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

/* ---- attestation ---- */

struct verdict {
    bool verified;
    bool report_valid_syntax; /* a document came back (verified or not) */
    char reason[256];
    json_t *attestation; /* {verified, reason, verified_at, nonce, backend, report} */
};

/*
 * Asks the workload for a document bound to a fresh 32-byte nonce and
 * verifies it against the enclave's expectations: the chain to the root of
 * its backend (local dev CA or AWS), the nonce, PCR0 (the image measured at
 * creation, all zeros in debug mode), debug mode only when the security
 * policy says so, freshness, and PCR8 among the allowed signers when the
 * policy lists any. The nonce is used once and wiped.
 */
static enum dcms_err attest_now(struct dcms_enclaves *en, const struct row *r, struct verdict *v,
                                struct dcms_errinfo *ei)
{
    memset(v, 0, sizeof(*v));
    struct enclave_config cfg;
    struct dcms_errinfo pei;
    dcms_errinfo_init(&pei, NULL);
    json_t *cj = json_text(r->v[C_CONFIG]);
    enclave_config_from_json(cj, "", NULL, &cfg, &pei);
    json_decref(cj);
    unsigned char nonce[ENCLAVE_NONCE_LEN];
    char nonce_hex[2 * ENCLAVE_NONCE_LEN + 1], now[DCMS_TIME_STRLEN];
    randombytes_buf(nonce, sizeof(nonce));
    dcms_hex_encode(nonce_hex, nonce, sizeof(nonce));
    dcms_time_format(dcms_clock_now_us(), now);
    unsigned char *doc = NULL;
    size_t doc_len = 0;
    struct dcms_attest_report rep;
    memset(&rep, 0, sizeof(rep));
    json_t *report = json_null();
    enum dcms_err e = DCMS_OK;

    struct dcms_errinfo bei;
    dcms_errinfo_init(&bei, NULL);
    bool local = strcmp(r->v[C_BACKEND], "local") == 0;
    struct dcms_attest_verifier *verifier =
        en->app->attest ? (local ? en->app->attest->local : en->app->attest->aws) : NULL;
    if (pei.code) {
        snprintf(v->reason, sizeof(v->reason), "the stored configuration is unreadable");
    } else if (!verifier) {
        snprintf(v->reason, sizeof(v->reason), "no attestation verifier for the %s backend",
                 r->v[C_BACKEND]);
    } else if (!r->v[C_REF]) {
        snprintf(v->reason, sizeof(v->reason), "the workload is not running");
    } else if (en->backend->attest(en->backend, r->v[C_REF], nonce, sizeof(nonce), &doc, &doc_len,
                                   &bei)) {
        snprintf(v->reason, sizeof(v->reason), "no attestation document: %.200s", bei.message);
    } else {
        struct dcms_attest_policy pol;
        dcms_attest_policy_init(&pol);
        pol.nonce = nonce;
        pol.nonce_len = sizeof(nonce);
        pol.allow_debug = cfg.sec.debug_mode;
        unsigned char pcr0[DCMS_ATTEST_PCR_MAX_LEN];
        size_t pcr0_len = 0;
        if (!hex_decode(r->v[C_PCR0], pcr0, sizeof(pcr0), &pcr0_len) ||
            dcms_attest_policy_expect_pcr(&pol, 0, pcr0, pcr0_len)) {
            snprintf(v->reason, sizeof(v->reason), "the expected PCR0 is unreadable");
        } else if ((e = dcms_attest_verify(verifier, doc, doc_len, &pol, &rep))) {
            dcms_err_set(ei, e, "cannot verify the attestation document");
        } else {
            json_decref(report);
            report = dcms_attest_report_to_json(&rep);
            v->report_valid_syntax = true;
            if (!rep.valid) {
                const char *why = "";
                for (size_t i = 0; i < rep.nchecks && !*why; i++)
                    if (!rep.checks[i].ok)
                        why = rep.checks[i].reason;
                snprintf(v->reason, sizeof(v->reason), "%s: %s",
                         dcms_attest_failure_code(rep.failure), why);
            } else if (cfg.sec.nsigners) {
                char pcr8[2 * DCMS_ATTEST_PCR_MAX_LEN + 1] = "";
                if (rep.doc && (rep.doc->pcr_mask & (1u << 8)) &&
                    rep.doc->pcrs[8].len <= DCMS_ATTEST_PCR_MAX_LEN)
                    dcms_hex_encode(pcr8, rep.doc->pcrs[8].ptr, rep.doc->pcrs[8].len);
                bool ok = false;
                for (size_t i = 0; i < cfg.sec.nsigners && !ok; i++)
                    ok = strcmp(cfg.sec.signers[i], pcr8) == 0;
                if (ok)
                    v->verified = true;
                else
                    snprintf(v->reason, sizeof(v->reason),
                             "signer: PCR8 %.16s... is not among the allowed signers",
                             *pcr8 ? pcr8 : "(absent)");
            } else {
                v->verified = true;
            }
        }
    }
    dcms_attest_report_release(&rep);
    free(doc);
    sodium_memzero(nonce, sizeof(nonce));
    if (e) {
        json_decref(report);
        return e;
    }
    v->attestation =
        json_pack("{s:b, s:o, s:s, s:s, s:s, s:o}", "verified", v->verified, "reason",
                  v->verified ? json_null() : json_string(v->reason), "verified_at", now, "nonce",
                  nonce_hex, "verifier", local ? "local" : "aws", "report", report);
    if (!v->attestation)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    return DCMS_OK;
}

/* ---- transitions ---- */

/*
 * What a transition changes besides the status. NULL members keep the
 * row's value. The runtime (ref, pid) stays on record after the workload
 * is gone: it says what ran.
 */
struct change {
    const char *reason;
    bool set_reason;
    const char *attestation; /* JSON text */
    const char *attested_at;
    const char *ref, *pid, *started_at;
};

/*
 * In one write transaction: re-read the enclave, check the transition
 * (`who`), apply `ch`, write, audit `action` (details stolen) and, for a
 * failed attestation, an extra enclave.attest event. *out gets the new row
 * when non-NULL.
 */
static enum dcms_err commit_transition(const struct enclave_call *c, const char *id,
                                       enum enclave_event ev, unsigned who, const struct change *ch,
                                       const char *action, enum dcms_audit_outcome outcome,
                                       json_t *details, json_t *attest_details, json_t **out)
{
    struct dcms_errinfo *ei = c->ei;
    struct dcms_store_tx *tx = NULL;
    struct dcms_store_rows *rows = NULL;
    struct row r;
    char now[DCMS_TIME_STRLEN];
    dcms_time_format(dcms_clock_now_us(), now);
    enum dcms_err e = dcms_store_begin(c->en->app->store, DCMS_TX_WRITE, &tx, ei);
    if (e)
        goto out;
    if ((e = load(tx, id, &rows, &r, ei)))
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
    if (ch->attestation)
        r.v[C_ATTEST] = ch->attestation;
    if (ch->attested_at)
        r.v[C_ATTESTED] = ch->attested_at;
    if (ch->ref) {
        r.v[C_REF] = ch->ref;
        r.v[C_PID] = ch->pid;
        r.v[C_STARTED] = ch->started_at;
    }
    e = store_row(tx, &r, now, ei);
    if (!e && attest_details)
        e = audit(c, tx, "enclave.attest", id,
                  json_is_true(json_object_get(attest_details, "verified")) ? DCMS_AUDIT_SUCCESS
                                                                            : DCMS_AUDIT_DENIED,
                  json_incref(attest_details), ei);
    if (!e)
        e = audit(c, tx, action, id, outcome, d, ei);
    else
        json_decref(d);
    dcms_store_rows_free(rows);
    rows = NULL;
    if (!e && out && !(e = load(tx, id, &rows, &r, ei)))
        *out = row_json(&r);
out:
    json_decref(details);
    json_decref(attest_details);
    dcms_store_rows_free(rows);
    if (tx)
        e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, ei);
    return e;
}

/* What the audit log keeps of an attestation (not the certificates). */
static json_t *attest_audit_details(const struct verdict *v, const struct row *r)
{
    json_t *rep = json_object_get(v->attestation, "report");
    json_t *doc = json_object_get(rep, "document");
    json_t *pcrs = json_object_get(doc, "pcrs");
    return json_pack("{s:b, s:o, s:O, s:O, s:o, s:s}", "verified", v->verified, "reason",
                     v->verified ? json_null() : json_string(v->reason), "failure",
                     json_object_get(rep, "failure") ? json_object_get(rep, "failure")
                                                     : json_null(),
                     "nonce", json_object_get(v->attestation, "nonce"), "pcr0",
                     str_or_null(json_string_value(json_object_get(pcrs, "0"))), "expected_pcr0",
                     r->v[C_PCR0] ? r->v[C_PCR0] : "");
}

/*
 * After an attestation: Running (or the same state) with the new report
 * when it verified; otherwise the workload is terminated and the enclave
 * Failed with the reason. `ev` is the event on success.
 */
static enum dcms_err settle_attestation(const struct enclave_call *c, const struct row *r,
                                        enum enclave_event ev, unsigned who, struct verdict *v,
                                        const struct change *base, const char *action,
                                        json_t *details, json_t **out)
{
    char *text = dcms_json_dump(v->attestation, NULL);
    json_t *ad = attest_audit_details(v, r);
    if (!text || !ad) {
        free(text);
        json_decref(ad);
        json_decref(details);
        return dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
    }
    struct change ch = *base;
    ch.attestation = text;
    enum dcms_err e;
    if (v->verified) {
        ch.attested_at = json_string_value(json_object_get(v->attestation, "verified_at"));
        e = commit_transition(c, r->v[C_ID], ev, who, &ch, action, DCMS_AUDIT_SUCCESS, details,
                              ev == ENCLAVE_EV_ATTEST ? NULL : ad, out);
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
        e = commit_transition(&sys, r->v[C_ID], ENCLAVE_EV_FAIL, ENCLAVE_BY_SYSTEM, &ch,
                              "enclave.fail", DCMS_AUDIT_SUCCESS,
                              json_pack("{s:s, s:s}", "reason", reason, "during", action), ad, out);
    }
    free(text);
    return e;
}

/* Starts the workload of a new (Initializing) enclave and attests it; the lock is held. */
static enum dcms_err start_and_attest(const struct enclave_call *c, const char *id, json_t **out)
{
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    struct row r;
    enum dcms_err e = dcms_store_begin(c->en->app->store, DCMS_TX_READ, &tx, c->ei);
    if (e)
        return e;
    e = load(tx, id, &rows, &r, c->ei);
    dcms_store_rollback(tx);
    if (e)
        return e;
    struct enclave_config cfg;
    struct dcms_errinfo pei;
    dcms_errinfo_init(&pei, NULL);
    json_t *cj = json_text(r.v[C_CONFIG]);
    enclave_config_from_json(cj, "", NULL, &cfg, &pei);
    json_decref(cj);
    char path[2048], ref[DCMS_ENCLAVE_REF_MAX] = "", pid[24] = "", started[DCMS_TIME_STRLEN];
    snprintf(path, sizeof(path), "%s/%s", c->en->images_dir, cfg.image);
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
        struct change ch = {.reason = reason, .set_reason = true};
        e = commit_transition(&sys, id, ENCLAVE_EV_FAIL, ENCLAVE_BY_SYSTEM, &ch, "enclave.fail",
                              DCMS_AUDIT_SUCCESS, json_pack("{s:s}", "reason", reason), NULL, out);
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
    struct verdict v;
    e = attest_now(c->en, &r, &v, c->ei);
    if (e) {
        /* No verdict (out of memory, a crypto failure): it cannot run unverified. */
        struct dcms_errinfo tei;
        dcms_errinfo_init(&tei, NULL);
        if (c->en->backend->terminate(c->en->backend, ref, &tei))
            DCMS_LOG(DCMS_LOG_WARN, "enclaves", "cannot terminate %s: %s", id, tei.message);
        char reason[320];
        snprintf(reason, sizeof(reason), "the attestation could not be checked: %s",
                 c->ei->message);
        struct change ch = {.reason = reason,
                            .set_reason = true,
                            .ref = ref,
                            .pid = pid[0] ? pid : NULL,
                            .started_at = started};
        struct dcms_errinfo fei;
        dcms_errinfo_init(&fei, NULL);
        sys.ei = &fei;
        if (commit_transition(&sys, id, ENCLAVE_EV_FAIL, ENCLAVE_BY_SYSTEM, &ch, "enclave.fail",
                              DCMS_AUDIT_SUCCESS, json_pack("{s:s}", "reason", reason), NULL, NULL))
            DCMS_LOG(DCMS_LOG_WARN, "enclaves", "cannot record the failure of %s: %s", id,
                     fei.message);
        dcms_store_rows_free(rows);
        return e;
    }
    struct change base = {.ref = ref, .pid = pid[0] ? pid : NULL, .started_at = started};
    e = settle_attestation(
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

/*
 * Checks that `contract_id` may be served by an enclave of `provider`:
 * it exists, the provider is its provider (admins may bind any), and it
 * is not over. Problems are field problems on contract_id.
 */
static void check_contract(const struct enclave_call *c, struct dcms_store_tx *tx,
                           const char *contract_id, const char *provider)
{
    struct dcms_store_rows *rows = NULL;
    struct dcms_errinfo tmp;
    dcms_errinfo_init(&tmp, NULL);
    if (!dcms_uuid_valid(contract_id) ||
        dcms_store_exec(tx, &q_contract, (struct dcms_store_val[]){DCMS_VAL_TEXT(contract_id)}, 1,
                        &rows, NULL, &tmp) ||
        dcms_store_rows_count(rows) != 1) {
        dcms_err_field(c->ei, "contract_id", "must be the id of a contract");
    } else {
        const char *cp = dcms_store_rows_text(rows, 0, 0);
        const char *st = dcms_store_rows_text(rows, 0, 2);
        bool admin = c->p && (c->p->roles & DCMS_ROLE_ADMIN);
        if (!admin && (!cp || strcmp(cp, provider) != 0))
            dcms_err_field(c->ei, "contract_id",
                           "must be a contract in which the enclave's provider is the provider");
        else if (st && (strcmp(st, "terminated") == 0 || strcmp(st, "expired") == 0))
            dcms_err_field(c->ei, "contract_id", "the contract is %s", st);
    }
    dcms_store_rows_free(rows);
}

enum dcms_err enclave_create(const struct enclave_call *c, const struct enclave_create_in *in,
                             json_t **out)
{
    struct dcms_errinfo *ei = c->ei;
    struct dcms_enclaves *en = c->en;
    /* A missing or mistyped name was reported by the decoder. */
    if (in->name && (strlen(in->name) < 1 || strlen(in->name) > 255))
        dcms_err_field(ei, "name", "must be 1 to 255 characters");
    if (in->contract_id && !dcms_uuid_valid(in->contract_id))
        dcms_err_field(ei, "contract_id", "must be the id of a contract");
    struct enclave_config cfg;
    enclave_config_from_json(in->configuration, "configuration.", &en->limits, &cfg, ei);
    unsigned char sha[DCMS_ATTEST_SHA384_LEN];
    char sha_hex[2 * DCMS_ATTEST_SHA384_LEN + 1] = "", pcr0_hex[2 * DCMS_ATTEST_SHA384_LEN + 1];
    if (cfg.image[0]) {
        char path[2048];
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s", en->images_dir, cfg.image);
        struct dcms_errinfo mei;
        dcms_errinfo_init(&mei, NULL);
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) ||
            !dcms_fs_is_workload_image(path, strcmp(en->backend->name, "nitro") == 0) ||
            dcms_attest_measure_file(path, sha, &mei))
            dcms_err_field(ei, "configuration.image",
                           "no workload image of this name (see DCMS_ENCLAVE_IMAGES_DIR)");
        else
            dcms_hex_encode(sha_hex, sha, sizeof(sha));
    }
    if (ei->code)
        return ei->code;
    const char *provider = provider_of(c->p);
    struct dcms_iam_resource res = {
        .type = "enclave", .owner_id = provider, .org_id = provider, .scoped = true};
    struct dcms_iam_ctx ctx = {en->app->iam, c->client_ip};
    enum dcms_err e = dcms_iam_authorize(c->p, "enclaves:create", &res, &ctx, ei);
    if (e)
        return e;

    json_t *cj = enclave_config_to_json(&cfg);
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
    if (in->contract_id)
        check_contract(c, tx, in->contract_id, provider);
    if ((e = ei->code))
        goto out;
    /*
     * The expected PCR0 is the image's pinned measurement (taken when its
     * name was first used), so a file changed in place fails attestation;
     * a debug-mode workload reports all-zero PCRs, as on Nitro.
     */
    struct dcms_store_rows *prow = NULL;
    e = dcms_store_exec(tx, &q_image_pin,
                        (struct dcms_store_val[]){DCMS_VAL_TEXT(cfg.image), DCMS_VAL_TEXT(sha_hex),
                                                  DCMS_VAL_TEXT(now), DCMS_VAL_TEXT(c->p->id)},
                        4, NULL, NULL, ei);
    if (!e)
        e = dcms_store_exec(tx, &q_image_get, (struct dcms_store_val[]){DCMS_VAL_TEXT(cfg.image)},
                            1, &prow, NULL, ei);
    if (!e && dcms_store_rows_count(prow) == 1)
        snprintf(pcr0_hex, sizeof(pcr0_hex), "%s", dcms_store_rows_text(prow, 0, 0));
    else if (!e)
        e = dcms_err_set(ei, DCMS_ERR_INTERNAL, "the image measurement was not recorded");
    dcms_store_rows_free(prow);
    if (e)
        goto out;
    bool changed = strcmp(pcr0_hex, sha_hex) != 0;
    if (changed)
        DCMS_LOG(DCMS_LOG_WARN, "enclaves",
                 "workload image %s changed since it was registered: its attestation will fail",
                 cfg.image);
    if (cfg.sec.debug_mode) {
        memset(pcr0_hex, '0', 2 * DCMS_ATTEST_SHA384_LEN);
        pcr0_hex[2 * DCMS_ATTEST_SHA384_LEN] = '\0';
    }
    e = dcms_store_exec(tx, &q_insert,
                        (struct dcms_store_val[]){
                            DCMS_VAL_TEXT(id), DCMS_VAL_TEXT(in->name), DCMS_VAL_TEXT(provider),
                            in->contract_id ? DCMS_VAL_TEXT(in->contract_id) : DCMS_VAL_NULL,
                            DCMS_VAL_TEXT(en->backend->name), DCMS_VAL_TEXT(ctext),
                            DCMS_VAL_TEXT(now), DCMS_VAL_TEXT(sha_hex), DCMS_VAL_TEXT(pcr0_hex)},
                        9, NULL, NULL, ei);
    if (!e)
        e = audit(c, tx, "enclave.create", id, DCMS_AUDIT_SUCCESS,
                  json_pack("{s:s, s:s, s:o, s:s, s:s, s:s, s:b, s:i, s:i, s:b}", "name", in->name,
                            "backend", en->backend->name, "contract_id",
                            str_or_null(in->contract_id), "image", cfg.image, "image_sha384",
                            sha_hex, "expected_pcr0", pcr0_hex, "image_changed", changed,
                            "cpu_cores", (int)cfg.cpu_cores, "memory_mb", (int)cfg.memory_mb,
                            "debug_mode", cfg.sec.debug_mode),
                  ei);
    e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, ei);
    tx = NULL;
    if (e)
        goto out;
    pthread_mutex_t *mu = enclave_lock_of(en, id);
    pthread_mutex_lock(mu);
    e = start_and_attest(c, id, out);
    pthread_mutex_unlock(mu);
out:
    dcms_store_rollback(tx);
    free(ctext);
    return e;
}

enum dcms_err enclave_get(const struct enclave_call *c, const char *id, json_t **out)
{
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    struct row r;
    enum dcms_err e = dcms_store_begin(c->en->app->store, DCMS_TX_READ, &tx, c->ei);
    if (e)
        return e;
    if (!(e = load(tx, id, &rows, &r, c->ei)) && !(e = authorize(c, &r, "enclaves:read")))
        *out = row_json(&r);
    dcms_store_rows_free(rows);
    dcms_store_rollback(tx);
    if (!e && !*out)
        e = dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
    return e;
}

/* One row of a list page (see dcms_store_rows_page). */
static json_t *page_item(const struct dcms_store_rows *rows, size_t i)
{
    struct row r;
    row_from(rows, i, &r);
    return row_json(&r);
}

enum dcms_err enclave_list(const struct enclave_call *c, const struct enclave_list_in *in,
                           json_t **out)
{
    bool all = (c->p->roles & (DCMS_ROLE_ADMIN | DCMS_ROLE_AUDITOR)) != 0;
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_begin(c->en->app->store, DCMS_TX_READ, &tx, c->ei);
    if (e)
        return e;
#define OPT(s) ((s) ? DCMS_VAL_TEXT(s) : DCMS_VAL_NULL)
    e = dcms_store_exec(tx, &q_list,
                        (struct dcms_store_val[]){
                            OPT(in->status), OPT(in->contract_id), OPT(in->provider_id),
                            OPT(in->backend), DCMS_VAL_INT(all ? 1 : 0), DCMS_VAL_TEXT(c->p->id),
                            DCMS_VAL_TEXT(c->p->org[0] ? c->p->org : c->p->id), OPT(in->cursor),
                            DCMS_VAL_INT(in->limit)},
                        9, &rows, NULL, c->ei);
#undef OPT
    dcms_store_rollback(tx);
    if (e)
        return e;
    *out = dcms_store_rows_page(rows, in->limit, 0, "enclaves", page_item);
    dcms_store_rows_free(rows);
    return *out ? DCMS_OK : dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
}

enum dcms_err enclave_patch(const struct enclave_call *c, const char *id,
                            const struct enclave_patch_in *in, json_t **out)
{
    struct dcms_errinfo *ei = c->ei;
    if (in->name && (strlen(in->name) < 1 || strlen(in->name) > 255))
        dcms_err_field(ei, "name", "must be 1 to 255 characters");
    if (in->has_contract && in->contract_id && !dcms_uuid_valid(in->contract_id))
        dcms_err_field(ei, "contract_id", "must be the id of a contract");
    struct enclave_netpol net;
    struct enclave_secpol sec;
    if (in->network_policy)
        enclave_netpol_from_json(in->network_policy, "network_policy.", &net, ei);
    if (in->security_policy)
        enclave_secpol_from_json(in->security_policy, "security_policy.", &sec, ei);
    if (ei->code)
        return ei->code;
    pthread_mutex_t *mu = enclave_lock_of(c->en, id);
    pthread_mutex_lock(mu);
    struct dcms_store_tx *tx = NULL;
    struct dcms_store_rows *rows = NULL;
    struct row r;
    char now[DCMS_TIME_STRLEN];
    char *ctext = NULL;
    dcms_time_format(dcms_clock_now_us(), now);
    enum dcms_err e = dcms_store_begin(c->en->app->store, DCMS_TX_WRITE, &tx, ei);
    if (e)
        goto out;
    if ((e = load(tx, id, &rows, &r, ei)) || (e = authorize(c, &r, "enclaves:manage")))
        goto out;
    if ((e = dcms_http_check_if_match(in->if_match, r.v[C_VERSION], ei)))
        goto out;
    enum enclave_status to;
    if ((e = check_transition(c, &r, ENCLAVE_EV_UPDATE, ENCLAVE_BY_OWNER, &to)))
        goto out;
    struct enclave_config cfg;
    struct dcms_errinfo pei;
    dcms_errinfo_init(&pei, NULL);
    json_t *cj = json_text(r.v[C_CONFIG]);
    enclave_config_from_json(cj, "", NULL, &cfg, &pei);
    json_decref(cj);
    if (pei.code) {
        e = dcms_err_set(ei, DCMS_ERR_INTERNAL, "the stored configuration is unreadable");
        goto out;
    }
    if (in->security_policy && sec.debug_mode != cfg.sec.debug_mode)
        dcms_err_field(ei, "security_policy.debug_mode",
                       "cannot change after creation: the workload was started %s debug mode",
                       cfg.sec.debug_mode ? "in" : "without");
    if (in->has_contract && in->contract_id)
        check_contract(c, tx, in->contract_id, r.v[C_PROVIDER]);
    if ((e = ei->code))
        goto out;
    if (in->network_policy)
        cfg.net = net;
    if (in->security_policy)
        cfg.sec = sec;
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
    if (in->has_contract)
        r.v[C_CONTRACT] = in->contract_id;
    if ((e = store_row(tx, &r, now, ei)))
        goto out;
    json_t *fields = json_array();
    const char *names[] = {in->name ? "name" : NULL, in->has_contract ? "contract_id" : NULL,
                           in->network_policy ? "network_policy" : NULL,
                           in->security_policy ? "security_policy" : NULL};
    for (size_t i = 0; fields && i < 4; i++)
        if (names[i])
            json_array_append_new(fields, json_string(names[i]));
    e = audit(c, tx, "enclave.update", id, DCMS_AUDIT_SUCCESS,
              json_pack("{s:o, s:o}", "fields", fields, "contract_id",
                        str_or_null(in->has_contract ? in->contract_id : r.v[C_CONTRACT])),
              ei);
    dcms_store_rows_free(rows);
    rows = NULL;
    if (!e && !(e = load(tx, id, &rows, &r, ei)))
        *out = row_json(&r);
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
                                const char *note, json_t **out)
{
    struct dcms_enclaves *en = c->en;
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    struct row r;
    enum dcms_err e = dcms_store_begin(en->app->store, DCMS_TX_READ, &tx, c->ei);
    if (e)
        return e;
    e = load(tx, id, &rows, &r, c->ei);
    dcms_store_rollback(tx);
    if (e)
        return e;
    enum enclave_status to;
    if ((e = authorize(c, &r, ev == ENCLAVE_EV_ATTEST ? "enclaves:attest" : "enclaves:manage")) ||
        (e = check_transition(c, &r, ev, ENCLAVE_BY_OWNER, &to)))
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
            struct change ch = {0};
            e = commit_transition(c, id, ev, ENCLAVE_BY_OWNER, &ch, "enclave.suspend",
                                  DCMS_AUDIT_SUCCESS, d, NULL, out);
            break;
        }
        /* A resumed workload proves again what it is, against the policy as it is now. */
        /* fall through */
    case ENCLAVE_EV_ATTEST: {
        struct verdict v;
        if ((e = attest_now(en, &r, &v, c->ei))) {
            json_decref(d);
            goto out;
        }
        struct change ch = {0};
        e = settle_attestation(c, &r, ev, ENCLAVE_BY_OWNER, &v, &ch,
                               ev == ENCLAVE_EV_ATTEST ? "enclave.attest" : "enclave.resume",
                               ev == ENCLAVE_EV_ATTEST ? attest_audit_details(&v, &r) : d, out);
        if (ev == ENCLAVE_EV_ATTEST)
            json_decref(d);
        json_decref(v.attestation);
        break;
    }
    case ENCLAVE_EV_TERMINATE: {
        if (r.v[C_REF] && b->terminate(b, r.v[C_REF], &bei)) {
            json_decref(d);
            e = dcms_err_set(c->ei, DCMS_ERR_UNAVAILABLE,
                             "the backend cannot terminate the workload: %s", bei.message);
            goto out;
        }
        char reason[1100];
        snprintf(reason, sizeof(reason), "terminated by %s%s%s", c->p ? c->p->id : "the system",
                 note ? ": " : "", note ? note : "");
        struct change ch = {.reason = reason, .set_reason = true};
        e = commit_transition(c, id, ev, ENCLAVE_BY_OWNER, &ch, "enclave.terminate",
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
                          const char *reason, json_t **out)
{
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
    struct row r;
    enum dcms_err e = dcms_store_begin(en->app->store, DCMS_TX_READ, &tx, ei);
    if (!e) {
        e = load(tx, id, &rows, &r, ei);
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
    struct change ch = {.reason = reason, .set_reason = true};
    e = commit_transition(&c, id, ENCLAVE_EV_FAIL, ENCLAVE_BY_SYSTEM, &ch, "enclave.fail",
                          DCMS_AUDIT_SUCCESS, json_pack("{s:s}", "reason", reason), NULL, NULL);
    if (!e)
        DCMS_LOG(DCMS_LOG_WARN, "enclaves", "enclave %s failed: %s", id, reason);
out:
    dcms_store_rows_free(rows);
    pthread_mutex_unlock(mu);
    return e == DCMS_ERR_NOT_FOUND ? DCMS_OK : e;
}

json_t *enclave_probe_json(const struct dcms_enclave_probe *pr, const char *at)
{
    return json_pack(
        "{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:i, s:o}", "at", at, "cpu_time_ms",
        (json_int_t)pr->cpu_time_ms, "rss_bytes", (json_int_t)pr->rss_bytes, "peak_rss_bytes",
        (json_int_t)pr->peak_rss_bytes, "uptime_ms", (json_int_t)pr->uptime_ms, "channel_bytes_in",
        (json_int_t)pr->channel_bytes_in, "channel_bytes_out", (json_int_t)pr->channel_bytes_out,
        "nprocs", (int)pr->nprocs, "notice", pr->notice[0] ? json_string(pr->notice) : json_null());
}

enum dcms_err enclave_store_sample(struct dcms_enclaves *en, const char *id,
                                   const struct dcms_enclave_probe *pr, struct dcms_errinfo *ei)
{
    char now[DCMS_TIME_STRLEN];
    dcms_time_format(dcms_clock_now_us(), now);
    json_t *latest = enclave_probe_json(pr, now);
    char *text = latest ? dcms_json_dump(latest, NULL) : NULL;
    json_decref(latest);
    if (!text)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    struct dcms_store_tx *tx;
    enum dcms_err e = dcms_store_begin(en->app->store, DCMS_TX_WRITE, &tx, ei);
    if (e) {
        free(text);
        return e;
    }
    /* Only the workload the row still names; a sample of a finished one is dropped. */
    struct dcms_store_rows *rows = NULL;
    struct row r;
    uint64_t n = 0;
    if (!(e = load(tx, id, &rows, &r, ei)) && r.v[C_REF])
        e = dcms_store_exec(tx, &q_metrics_set,
                            (struct dcms_store_val[]){DCMS_VAL_TEXT(id), DCMS_VAL_TEXT(text),
                                                      DCMS_VAL_TEXT(r.v[C_REF])},
                            3, NULL, &n, ei);
    if (!e && n == 1)
        e = dcms_store_exec(
            tx, &q_sample_insert,
            (struct dcms_store_val[]){DCMS_VAL_TEXT(id), DCMS_VAL_TEXT(now),
                                      DCMS_VAL_INT(pr->cpu_time_ms), DCMS_VAL_INT(pr->rss_bytes),
                                      DCMS_VAL_INT(pr->peak_rss_bytes), DCMS_VAL_INT(pr->uptime_ms),
                                      DCMS_VAL_INT(pr->channel_bytes_in),
                                      DCMS_VAL_INT(pr->channel_bytes_out), DCMS_VAL_INT(pr->nprocs),
                                      pr->notice[0] ? DCMS_VAL_TEXT(pr->notice) : DCMS_VAL_NULL},
            10, NULL, NULL, ei);
    if (!e && n == 1)
        e = dcms_store_exec(tx, &q_sample_prune, (struct dcms_store_val[]){DCMS_VAL_TEXT(id)}, 1,
                            NULL, NULL, ei);
    dcms_store_rows_free(rows);
    free(text);
    return e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, ei);
}

enum dcms_err enclave_metrics(const struct enclave_call *c, const char *id, json_t **out)
{
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL, *srows = NULL;
    struct row r;
    enum dcms_err e = dcms_store_begin(c->en->app->store, DCMS_TX_READ, &tx, c->ei);
    if (e)
        return e;
    if ((e = load(tx, id, &rows, &r, c->ei)) || (e = authorize(c, &r, "enclaves:read")))
        goto out;
    if ((e = dcms_store_exec(tx, &q_samples, (struct dcms_store_val[]){DCMS_VAL_TEXT(id)}, 1,
                             &srows, NULL, c->ei)))
        goto out;
    json_t *hist = json_array();
    size_t n = dcms_store_rows_count(srows);
    for (size_t i = n; hist && i-- > 0;) { /* oldest first */
        struct dcms_enclave_probe pr = {
            .cpu_time_ms = (uint64_t)dcms_store_rows_int(srows, i, 1),
            .rss_bytes = (uint64_t)dcms_store_rows_int(srows, i, 2),
            .peak_rss_bytes = (uint64_t)dcms_store_rows_int(srows, i, 3),
            .uptime_ms = (uint64_t)dcms_store_rows_int(srows, i, 4),
            .channel_bytes_in = (uint64_t)dcms_store_rows_int(srows, i, 5),
            .channel_bytes_out = (uint64_t)dcms_store_rows_int(srows, i, 6),
            .nprocs = (uint32_t)dcms_store_rows_int(srows, i, 7),
        };
        const char *notice = dcms_store_rows_text(srows, i, 8);
        if (notice)
            snprintf(pr.notice, sizeof(pr.notice), "%s", notice);
        json_array_append_new(hist, enclave_probe_json(&pr, dcms_store_rows_text(srows, i, 0)));
    }
    json_t *latest = json_text(r.v[C_METRICS]);
    if (json_is_object(latest) && json_object_size(latest) == 0) {
        json_decref(latest);
        latest = json_null();
    }
    *out = json_pack("{s:s, s:s, s:i, s:i, s:o, s:o}", "enclave_id", id, "status", r.v[C_STATUS],
                     "interval_ms", (int)c->en->metrics_interval_ms, "history_max",
                     ENCLAVE_HISTORY_MAX, "latest", latest, "history", hist);
    if (!*out)
        e = dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
out:
    dcms_store_rows_free(rows);
    dcms_store_rows_free(srows);
    dcms_store_rollback(tx);
    return e;
}
enum dcms_err dcms_enclaves_metrics_render(struct dcms_enclaves *en, struct dcms_buf *out)
{
    if (!en)
        return DCMS_OK;
    static const struct {
        const char *name, *type, *help;
    } m[] = {
        {"dcms_enclave_cpu_seconds_total", "counter", "CPU time used by the enclave's workload."},
        {"dcms_enclave_memory_rss_bytes", "gauge", "Resident memory of the workload now."},
        {"dcms_enclave_memory_peak_bytes", "gauge", "Peak resident memory of the workload."},
        {"dcms_enclave_uptime_seconds", "gauge", "Time since the workload started."},
        {"dcms_enclave_channel_bytes_total", "counter",
         "Bytes over the enclave channel (socketpair or vsock), by direction."},
    };
    pthread_mutex_lock(&en->gauges_mu);
    enum dcms_err e = DCMS_OK;
    for (size_t k = 0; !e && k < sizeof(m) / sizeof(m[0]); k++) {
        e = dcms_buf_appendf(out, "# HELP %s %s\n# TYPE %s %s\n", m[k].name, m[k].help, m[k].name,
                             m[k].type);
        for (size_t i = 0; !e && i < en->ngauges; i++) {
            const struct enclave_gauge *g = &en->gauges[i];
            const struct dcms_enclave_probe *p = &g->probe;
            const char *lbl = g->id;
            switch (k) {
            case 0:
                e = dcms_buf_appendf(out, "%s{enclave=\"%s\",status=\"%s\"} %.3f\n", m[k].name, lbl,
                                     g->status, (double)p->cpu_time_ms / 1e3);
                break;
            case 1:
            case 2:
                e = dcms_buf_appendf(
                    out, "%s{enclave=\"%s\",status=\"%s\"} %llu\n", m[k].name, lbl, g->status,
                    (unsigned long long)(k == 1 ? p->rss_bytes : p->peak_rss_bytes));
                break;
            case 3:
                e = dcms_buf_appendf(out, "%s{enclave=\"%s\",status=\"%s\"} %.3f\n", m[k].name, lbl,
                                     g->status, (double)p->uptime_ms / 1e3);
                break;
            default:
                e = dcms_buf_appendf(out,
                                     "%s{enclave=\"%s\",direction=\"in\"} %llu\n"
                                     "%s{enclave=\"%s\",direction=\"out\"} %llu\n",
                                     m[k].name, lbl, (unsigned long long)p->channel_bytes_in,
                                     m[k].name, lbl, (unsigned long long)p->channel_bytes_out);
            }
        }
    }
    pthread_mutex_unlock(&en->gauges_mu);
    if (!e)
        e = dcms_buf_appendf(
            out,
            "# HELP dcms_enclave_reconcile_runs_total Reconcile passes over the enclaves.\n"
            "# TYPE dcms_enclave_reconcile_runs_total counter\n"
            "dcms_enclave_reconcile_runs_total %llu\n"
            "# HELP dcms_enclave_reconcile_failed_total Enclaves moved to Failed by reconcile.\n"
            "# TYPE dcms_enclave_reconcile_failed_total counter\n"
            "dcms_enclave_reconcile_failed_total %llu\n",
            (unsigned long long)__atomic_load_n(&en->reconcile_runs, __ATOMIC_RELAXED),
            (unsigned long long)__atomic_load_n(&en->reconcile_failed, __ATOMIC_RELAXED));
    return e;
}
