/*
 * The contract service: create, read, list (keyset pages), replace (with
 * If-Match), delete, the lifecycle transitions, the terms versions, the
 * expiry job, and the security view the enclave service reads. Every
 * change runs in one write transaction with its audit event; every
 * decision goes through dcms_iam_authorize() with the contract's parties,
 * and a caller who may not read a contract learns nothing of it (404).
 */
#include "dcms/app.h"
#include "dcms/arena.h"
#include "dcms/audit.h"
#include "dcms/clock.h"
#include "dcms/config.h"
#include "dcms/crypto.h"
#include "dcms/datasets.h"
#include "dcms/etag.h"
#include "dcms/json.h"
#include "dcms/jcs.h"
#include "dcms/log.h"
#include "dcms/periodic.h"
#include "dcms/store.h"
#include "dcms/uuid.h"
#include "contracts/contracts_int.h"

#include <errno.h>
#include <stdio.h>
#include <time.h>

#define EXPIRY_BATCH 200

bool ct_member_of(const struct dcms_principal *p, const char *party_id, unsigned role)
{
    if (!p || !party_id || !(p->roles & role))
        return false;
    return strcmp(p->id, party_id) == 0 || (p->org[0] && strcmp(p->org, party_id) == 0);
}

static struct dcms_iam_resource resource_of(const struct ct_row *r, const char *parties[2])
{
    parties[0] = r->provider_id;
    parties[1] = r->consumer_id;
    return (struct dcms_iam_resource){
        .type = "contract", .id = r->id, .parties = parties, .nparties = 2, .scoped = true};
}

enum dcms_err ct_authorize(const struct ct_call *c, const struct ct_row *r, const char *action)
{
    const char *parties[2];
    struct dcms_iam_resource res = resource_of(r, parties);
    struct dcms_iam_ctx ctx = {c->app->iam, c->client_ip};
    /* Someone who may not read a contract must not learn that it exists. */
    if (dcms_iam_authorize(c->p, "contracts:read", &res, &ctx, c->ei)) {
        if (c->hidden)
            *c->hidden = true;
        dcms_errinfo_init(c->ei, c->ei->arena);
        return dcms_err_set(c->ei, DCMS_ERR_NOT_FOUND, "contract not found");
    }
    if (strcmp(action, "contracts:read") == 0)
        return DCMS_OK;
    return dcms_iam_authorize(c->p, action, &res, &ctx, c->ei);
}

void dcms_contracts_audit_hidden(struct dcms_app *app, const struct dcms_principal *p,
                                 const char *client_ip, const char *request_id,
                                 const char *contract_id, json_t *details)
{
    json_t *d = details ? details : json_object();
    if (!app->audit || !d ||
        json_object_set_new(d, "reason", json_string("not a party to the contract"))) {
        json_decref(d);
        return;
    }
    struct dcms_audit_event ev = {.actor = p && p->id[0] ? p->id : "anonymous",
                                  .action = "contract.hidden",
                                  .resource_type = "contract",
                                  .resource_id = contract_id,
                                  .outcome = DCMS_AUDIT_DENIED,
                                  .details = d,
                                  .client_ip = client_ip && *client_ip ? client_ip : NULL,
                                  .request_id = request_id};
    dcms_audit_refusal(app->audit, &ev);
    json_decref(d);
}

/* The "who" column of the state machine, after the role permission passed. */
static enum dcms_err check_who(const struct ct_call *c, const struct ct_row *r,
                               const struct ct_transition *t)
{
    bool admin = (c->p->roles & DCMS_ROLE_ADMIN) != 0;
    bool prov = ct_member_of(c->p, r->provider_id, DCMS_ROLE_PROVIDER);
    bool cons = ct_member_of(c->p, r->consumer_id, DCMS_ROLE_CONSUMER);
    if ((t->who & CT_BY_ADMIN) && admin)
        return DCMS_OK;
    if ((t->who & CT_BY_PARTY) && (prov || cons))
        return DCMS_OK;
    if ((t->who & CT_BY_PROVIDER) && prov)
        return DCMS_OK;
    const char *who = (t->who & CT_BY_PROVIDER) ? "the provider side or an administrator"
                      : (t->who & CT_BY_ADMIN)  ? "an authorised member of a party or an "
                                                  "administrator"
                                                : "an authorised member of a party";
    return dcms_err_set(c->ei, DCMS_ERR_FORBIDDEN, "only %s may %s this contract", who,
                        ct_op_name(t->op));
}

enum dcms_err ct_audit(const struct ct_call *c, struct dcms_store_tx *tx, const char *action,
                       const char *id, json_t *details)
{
    return ct_audit_id(c, tx, action, id, details, NULL);
}

enum dcms_err ct_audit_id(const struct ct_call *c, struct dcms_store_tx *tx, const char *action,
                          const char *id, json_t *details, char *event_id)
{
    struct dcms_audit_who who = {c->p ? c->p->id : NULL, c->client_ip, c->request_id};
    return dcms_audit_change_id(c->app->audit, tx, &who, "contract", action, id, details, event_id,
                                c->ei);
}

/*
 * Both parties exist, are active, hold the role of their side and belong to
 * two different organizations (an organization belongs to itself; two
 * identities in no organization are different parties). *parties: the rows
 * read (dcms_iam_parties: names too), whatever the checks found.
 */
static enum dcms_err check_parties(const struct ct_call *c, struct dcms_store_tx *tx,
                                   const struct ct_input *in, struct dcms_store_rows **parties)
{
    char org[2][DCMS_UUID_STRLEN] = {"", ""};
    const char *ids[2] = {in->provider_id, in->consumer_id};
    enum dcms_err e = dcms_iam_parties(tx, ids, 2, parties, c->ei);
    if (e)
        return e;
    const struct {
        const char *field, *id, *role_name;
        unsigned role;
    } sides[] = {{"provider_id", in->provider_id, "provider", DCMS_ROLE_PROVIDER},
                 {"consumer_id", in->consumer_id, "consumer", DCMS_ROLE_CONSUMER}};
    for (size_t i = 0; i < 2; i++) {
        if (!sides[i].id)
            continue;
        struct dcms_iam_party party;
        if (!dcms_iam_party_of(*parties, sides[i].id, &party))
            dcms_err_field(c->ei, sides[i].field, "is not a known identity");
        else if (strcmp(party.status, "active") != 0)
            dcms_err_field(c->ei, sides[i].field, "is not an active identity (it is %s)",
                           party.status);
        else if (!(party.roles & sides[i].role))
            dcms_err_field(c->ei, sides[i].field, "must hold the %s role", sides[i].role_name);
        else
            snprintf(org[i], sizeof(org[i]), "%s", party.org);
    }
    if (org[0][0] && strcasecmp(org[0], org[1]) == 0)
        dcms_err_field(c->ei, "consumer_id",
                       "is in the provider's organization (%s): the two sides of a contract "
                       "must be different organizations",
                       org[0]);
    return c->ei->code;
}

static enum dcms_err content_of(const struct ct_call *c, const char *id, const struct ct_input *in,
                                int64_t terms_version, char hex[65], char **canon_terms,
                                char **canon_content)
{
    json_t *content = ct_signed_content(id, in->provider_id, in->consumer_id, in->title,
                                        in->description, in->terms, terms_version);
    unsigned char raw[32];
    enum dcms_err e = ct_content_hash(content, raw, hex, c->ei);
    struct dcms_buf b1, b2;
    dcms_buf_init(&b1, 1u << 24);
    dcms_buf_init(&b2, 1u << 24);
    if (!e)
        e = dcms_jcs_canonicalize(in->terms, &b1, c->ei);
    if (!e)
        e = dcms_jcs_canonicalize(content, &b2, c->ei);
    json_decref(content);
    if (e) {
        dcms_buf_release(&b1);
        dcms_buf_release(&b2);
        return e;
    }
    *canon_terms = dcms_buf_detach(&b1, NULL);
    *canon_content = dcms_buf_detach(&b2, NULL);
    return DCMS_OK;
}

/* The parties' names of `rec` from `names` (rows of dcms_iam_party_names or dcms_iam_parties,
 * stolen; NULL: none). */
static void names_from(struct ct_rec *rec, struct dcms_store_rows *names)
{
    dcms_store_rows_free(rec->names);
    rec->names = names;
    rec->r.provider_name = dcms_iam_party_name(names, rec->r.provider_id);
    rec->r.consumer_name = dcms_iam_party_name(names, rec->r.consumer_id);
}

enum dcms_err ct_commit_answer(const struct ct_call *c, struct dcms_store_tx *tx, const char *id,
                               struct dcms_store_rows *row, struct dcms_store_rows *names,
                               struct ct_rec *out)
{
    struct ct_rec rec = {0};
    enum dcms_err e = DCMS_OK;
    if (row && dcms_store_rows_count(row) == 1) {
        rec.rows = row;
        ct_row_from(row, 0, &rec.r, dcms_clock_now_us());
    } else {
        dcms_store_rows_free(row);
        e = ct_load(tx, id, &rec.rows, &rec.r, c->ei);
    }
    if (!e && names) {
        names_from(&rec, names);
        names = NULL;
    } else if (!e && !rec.r.named) {
        dcms_store_commit_with_next(tx); /* the names' read carries the COMMIT */
        e = ct_names_read(tx, &rec, c->ei);
    }
    dcms_store_rows_free(names);
    e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, c->ei);
    if (e) {
        ct_rec_release(&rec);
        return e;
    }
    *out = rec;
    return DCMS_OK;
}

void ct_rec_release(struct ct_rec *rec)
{
    dcms_store_rows_free(rec->rows);
    dcms_store_rows_free(rec->names);
    rec->rows = rec->names = NULL;
    rec->r.provider_name = rec->r.consumer_name = NULL;
}

enum dcms_err ct_names_read(struct dcms_store_tx *tx, struct ct_rec *rec, struct dcms_errinfo *ei)
{
    const char *ids[2] = {rec->r.provider_id, rec->r.consumer_id};
    struct dcms_store_rows *names = NULL;
    enum dcms_err e = dcms_iam_party_names(tx, ids, 2, &names, ei);
    if (e) {
        dcms_store_rows_free(names);
        names = NULL;
    }
    names_from(rec, names);
    return e;
}

/* ---- create / read / list ---- */

enum dcms_err ct_create(const struct ct_call *c, const struct ct_input *inp, struct ct_rec *out)
{
    const struct ct_input in = *inp;
    enum dcms_err e = DCMS_OK;
    struct dcms_store_tx *tx = NULL;
    struct dcms_store_rows *row = NULL, *parties = NULL; /* as inserted; its parties */
    char *canon_terms = NULL, *canon_content = NULL;
    char id[DCMS_UUID_STRLEN], now[DCMS_TIME_STRLEN], from[DCMS_TIME_STRLEN], to[DCMS_TIME_STRLEN],
        hex[65];
    /* Only parties (or administrators) create a contract between them. */
    if (in.provider_id && in.consumer_id) {
        const char *ids[2] = {in.provider_id, in.consumer_id};
        struct dcms_iam_resource res = {
            .type = "contract", .parties = ids, .nparties = 2, .scoped = true};
        struct dcms_iam_ctx ctx = {c->app->iam, c->client_ip};
        struct dcms_errinfo tmp;
        dcms_errinfo_init(&tmp, c->ei->arena);
        if (dcms_iam_authorize(c->p, "contracts:create", &res, &ctx, &tmp)) {
            e = dcms_err_set(c->ei, DCMS_ERR_FORBIDDEN,
                             "contracts:create is not allowed: you may only create contracts "
                             "your identity or organization is a party to");
            goto out;
        }
    }
    if ((e = dcms_store_begin(c->app->store, DCMS_TX_WRITE, &tx, c->ei)))
        goto out;
    if ((e = check_parties(c, tx, &in, &parties)) || (e = c->ei->code))
        goto out;
    dcms_uuid_v7(id);
    dcms_time_format(dcms_clock_now_us(), now);
    dcms_time_format(in.from_us, from);
    dcms_time_format(in.to_us, to);
    if ((e = content_of(c, id, &in, 1, hex, &canon_terms, &canon_content)))
        goto out;
    e = dcms_store_exec(
        tx, &ct_q_insert,
        (struct dcms_store_val[]){DCMS_VAL_TEXT(id), DCMS_VAL_TEXT(in.title),
                                  DCMS_VAL_TEXT(in.description), DCMS_VAL_TEXT(in.provider_id),
                                  DCMS_VAL_TEXT(in.consumer_id), DCMS_VAL_TEXT(canon_terms),
                                  DCMS_VAL_TEXT(hex), DCMS_VAL_TEXT(now), DCMS_VAL_TEXT(c->p->id),
                                  DCMS_VAL_TEXT(from), DCMS_VAL_TEXT(to)},
        11, &row, NULL, c->ei);
    if (!e)
        e = dcms_store_exec_later(
            tx, &ct_q_version_insert,
            (struct dcms_store_val[]){DCMS_VAL_TEXT(id), DCMS_VAL_INT(1), DCMS_VAL_TEXT(hex),
                                      DCMS_VAL_TEXT(canon_content), DCMS_VAL_TEXT(now),
                                      DCMS_VAL_TEXT(c->p->id)},
            6, c->ei);
    if (!e)
        e = ct_audit(c, tx, "contract.create", id,
                     json_pack("{s:s, s:s, s:s, s:I, s:I, s:s}", "provider_id", in.provider_id,
                               "consumer_id", in.consumer_id, "status", "draft", "version",
                               (json_int_t)1, "terms_version", (json_int_t)1, "terms_hash", hex));
    if (!e) {
        e = ct_commit_answer(c, tx, id, row, parties, out);
        tx = NULL;
        row = parties = NULL;
    }
out:
    dcms_store_rows_free(row);
    dcms_store_rows_free(parties);
    dcms_store_rollback(tx);
    free(canon_terms);
    free(canon_content);
    return e;
}

enum dcms_err ct_get(const struct ct_call *c, const char *id, struct ct_rec *out)
{
    struct dcms_store_tx *tx;
    enum dcms_err e = dcms_store_begin(c->app->store, DCMS_TX_READ, &tx, c->ei);
    if (e)
        return e;
    out->rows = out->names = NULL;
    if (!(e = ct_load(tx, id, &out->rows, &out->r, c->ei)) &&
        !(e = ct_authorize(c, &out->r, "contracts:read")))
        e = ct_names_read(tx, out, c->ei);
    dcms_store_rollback(tx);
    if (e)
        ct_rec_release(out);
    return e;
}

enum dcms_err ct_list(const struct ct_call *c, const struct ct_list_in *in, struct ct_page *out)
{
    struct dcms_errinfo *ei = c->ei;
    bool all = (c->p->roles & (DCMS_ROLE_ADMIN | DCMS_ROLE_AUDITOR)) != 0;
    const char *me = c->p->id, *org = c->p->org[0] ? c->p->org : c->p->id;
    char *pattern = NULL;
    if (in->q) {
        size_t n = strlen(in->q);
        pattern = malloc(2 * n + 3);
        if (!pattern)
            return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
        char *w = pattern;
        *w++ = '%';
        for (size_t i = 0; i < n; i++) {
            if (in->q[i] == '%' || in->q[i] == '_' || in->q[i] == '\\')
                *w++ = '\\';
            *w++ = in->q[i];
        }
        *w++ = '%';
        *w = '\0';
    }
    char now[DCMS_TIME_STRLEN];
    dcms_time_format(dcms_clock_now_us(), now);
    /*
     * The party ids whose index ranges hold the page, and on which sides:
     * `party` (or, without it, the caller's identity and organization), on
     * the side `role` names or on both. Without a party a non-privileged
     * caller's ids are the visibility rule itself; with one, visibility is
     * checked on top (CT_LF_VIS).
     */
    const char *ids[2] = {NULL, NULL};
    if (in->party)
        ids[0] = in->party;
    else if (!all || in->role)
        ids[0] = me, ids[1] = strcmp(org, me) ? org : NULL;
    bool prov_side = !in->role || strcmp(in->role, "provider") == 0;
    bool cons_side = !in->role || strcmp(in->role, "consumer") == 0;
    int flags = (in->party && !all ? CT_LF_VIS : 0) | (in->status ? CT_LF_STATUS : 0) |
                (pattern ? CT_LF_Q : 0) | (in->cursor ? CT_LF_CURSOR : 0);
    memset(out, 0, sizeof(*out));
    struct dcms_store_rows **branch = out->branch;
    size_t nb = 0;
    struct dcms_store_tx *tx = NULL;
    enum dcms_err e = dcms_store_begin(c->app->store, DCMS_TX_READ, &tx, ei);
    for (int side = CT_LB_ALL; !e && side < CT_LB_COUNT; side++) {
        if ((side == CT_LB_ALL) != !ids[0] || (side == CT_LB_PROVIDER && !prov_side) ||
            (side == CT_LB_CONSUMER && !cons_side))
            continue;
        for (size_t i = 0; !e && i < (side == CT_LB_ALL ? 1 : 2); i++) {
            if (side != CT_LB_ALL && !ids[i])
                continue;
            struct dcms_store_val params[8];
            size_t np = 0;
            if (flags & CT_LF_VIS) {
                params[np++] = DCMS_VAL_TEXT(me);
                params[np++] = DCMS_VAL_TEXT(org);
            }
            if (side != CT_LB_ALL)
                params[np++] = DCMS_VAL_TEXT(ids[i]);
            if (flags & CT_LF_STATUS) {
                params[np++] = DCMS_VAL_TEXT(in->status);
                params[np++] = DCMS_VAL_TEXT(now);
            }
            if (flags & CT_LF_Q)
                params[np++] = DCMS_VAL_TEXT(pattern);
            if (flags & CT_LF_CURSOR)
                params[np++] = DCMS_VAL_TEXT(in->cursor_id);
            params[np++] = DCMS_VAL_INT(in->limit + 1);
            e = dcms_store_exec(tx, ct_list_query(side, flags), params, np, &branch[nb++], NULL,
                                ei);
        }
    }
    free(pattern);
    /* Merge the branches (each newest first) into one page, each contract once. */
    size_t pos[4] = {0, 0, 0, 0}, n = 0;
    const struct dcms_store_rows **pick_rows = out->rows;
    size_t *pick_idx = out->idx;
    while (!e && n < (size_t)in->limit + 1) {
        int best = -1;
        for (size_t b = 0; b < nb; b++) {
            if (pos[b] >= dcms_store_rows_count(branch[b]))
                continue;
            const char *id = dcms_store_rows_text(branch[b], pos[b], 0);
            if (best < 0 || strcmp(id, dcms_store_rows_text(branch[best], pos[best], 0)) > 0)
                best = (int)b;
        }
        if (best < 0)
            break;
        const char *id = dcms_store_rows_text(branch[best], pos[best], 0);
        for (size_t b = 0; b < nb; b++) /* skip the same contract in the other branches */
            if ((int)b != best && pos[b] < dcms_store_rows_count(branch[b]) &&
                strcmp(dcms_store_rows_text(branch[b], pos[b], 0), id) == 0)
                pos[b]++;
        pick_rows[n] = branch[best];
        pick_idx[n++] = pos[best]++;
    }
    out->more = n > (size_t)in->limit;
    out->n = out->more ? (size_t)in->limit : n;
    out->nbranches = nb;
    out->now_us = dcms_clock_now_us();
    /* The parties' names of the whole page in one statement, in the same snapshot. */
    if (!e && out->n) {
        const char *party[2 * 200];
        size_t np = 0;
        for (size_t i = 0; i < out->n && np + 2 <= sizeof(party) / sizeof(party[0]); i++) {
            party[np++] = dcms_store_rows_text(out->rows[i], out->idx[i], 3); /* provider_id */
            party[np++] = dcms_store_rows_text(out->rows[i], out->idx[i], 4); /* consumer_id */
        }
        e = dcms_iam_party_names(tx, party, np, &out->names, ei);
    }
    if (tx)
        dcms_store_rollback(tx);
    if (e)
        ct_page_release(out);
    return e;
}

void ct_page_release(struct ct_page *page)
{
    for (size_t i = 0; i < page->nbranches; i++) {
        dcms_store_rows_free(page->branch[i]);
        page->branch[i] = NULL;
    }
    dcms_store_rows_free(page->names);
    page->names = NULL;
    page->nbranches = page->n = 0;
}

/* ---- changes ---- */

/* The one If-Match meaning (dcms/etag.h): `*` or the current ETag. */
static enum dcms_err if_match_ok(const struct ct_call *c, const struct ct_row *r,
                                 const char *if_match)
{
    char version[24];
    snprintf(version, sizeof(version), "%lld", (long long)r->version);
    return dcms_etag_check(if_match, version, c->ei);
}

/* Writes the new status with the row-version check; 412 when the row moved meanwhile.
 * *row: the contract as written (ct_load's columns). */
static enum dcms_err write_status(const struct ct_call *c, struct dcms_store_tx *tx,
                                  const struct ct_row *r, enum ct_status to, const char *reason,
                                  const char *now, struct dcms_store_rows **row)
{
    uint64_t n = 0;
    enum dcms_err e = dcms_store_exec(
        tx, &ct_q_update_status,
        (struct dcms_store_val[]){DCMS_VAL_TEXT(r->id), DCMS_VAL_TEXT(ct_status_name(to)),
                                  reason ? DCMS_VAL_TEXT(reason) : DCMS_VAL_NULL,
                                  DCMS_VAL_TEXT(now), DCMS_VAL_INT(r->version)},
        5, row, &n, c->ei);
    if (!e && n != 1)
        e = dcms_err_set(c->ei, DCMS_ERR_PRECONDITION_FAILED, "the contract changed meanwhile");
    return e;
}

enum dcms_err ct_update(const struct ct_call *c, const char *id, const struct ct_input *inp,
                        struct ct_rec *out)
{
    struct ct_input in = *inp;
    struct dcms_store_tx *tx = NULL;
    struct dcms_store_rows *rows = NULL, *row = NULL; /* the contract read, and as written */
    struct dcms_store_rows *parties = NULL;           /* its parties as given */
    char *canon_terms = NULL, *canon_content = NULL;
    enum dcms_err e;
    if ((e = dcms_store_begin(c->app->store, DCMS_TX_WRITE, &tx, c->ei)))
        goto out;
    struct ct_row r;
    if ((e = ct_load_locked(tx, id, &rows, &r, c->ei)) ||
        (e = ct_authorize(c, &r, "contracts:update")) ||
        (e = check_who(c, &r, ct_transition_of(CT_OP_EDIT))) ||
        (e = if_match_ok(c, &r, in.if_match)) ||
        (e = ct_transition_check(CT_OP_EDIT, r.status, c->ei)))
        goto out;
    /* The parties of a contract are fixed at creation: an edit changes the terms only. */
    if (strcasecmp(in.provider_id, r.provider_id) != 0)
        dcms_err_field(c->ei, "provider_id", "the parties of a contract are fixed at creation");
    if (strcasecmp(in.consumer_id, r.consumer_id) != 0)
        dcms_err_field(c->ei, "consumer_id", "the parties of a contract are fixed at creation");
    if ((e = c->ei->code))
        goto out;
    in.provider_id = r.provider_id; /* the stored spelling: what the parties sign */
    in.consumer_id = r.consumer_id;
    /* The caller must stay a party of what it writes (administrators excepted). */
    const char *ids[2] = {in.provider_id, in.consumer_id};
    struct dcms_iam_resource res = {
        .type = "contract", .id = id, .parties = ids, .nparties = 2, .scoped = true};
    struct dcms_iam_ctx ctx = {c->app->iam, c->client_ip};
    if (dcms_iam_authorize(c->p, "contracts:update", &res, &ctx, c->ei)) {
        e = dcms_err_set(c->ei, DCMS_ERR_FORBIDDEN,
                         "contracts:update is not allowed: the new parties must include you");
        goto out;
    }
    if ((e = check_parties(c, tx, &in, &parties)))
        goto out;
    char hex[65], now[DCMS_TIME_STRLEN], from[DCMS_TIME_STRLEN], to[DCMS_TIME_STRLEN];
    int64_t tv = r.terms_version + 1;
    if ((e = content_of(c, id, &in, r.terms_version, hex, &canon_terms, &canon_content)))
        goto out;
    if (strcmp(hex, r.terms_hash) == 0) {
        /* Nothing the parties sign changed: nothing to void, nothing to write. */
        e = ct_commit_answer(c, tx, id, NULL, parties, out);
        tx = NULL;
        parties = NULL;
        goto out;
    }
    free(canon_terms);
    free(canon_content);
    canon_terms = canon_content = NULL;
    if ((e = content_of(c, id, &in, tv, hex, &canon_terms, &canon_content)))
        goto out;
    dcms_time_format(dcms_clock_now_us(), now);
    dcms_time_format(in.from_us, from);
    dcms_time_format(in.to_us, to);
    uint64_t n = 0, voided = 0;
    e = dcms_store_exec(
        tx, &ct_q_update_content,
        (struct dcms_store_val[]){DCMS_VAL_TEXT(id), DCMS_VAL_TEXT(in.title),
                                  DCMS_VAL_TEXT(in.description), DCMS_VAL_TEXT(in.provider_id),
                                  DCMS_VAL_TEXT(in.consumer_id), DCMS_VAL_TEXT(canon_terms),
                                  DCMS_VAL_TEXT(hex), DCMS_VAL_INT(tv), DCMS_VAL_TEXT(from),
                                  DCMS_VAL_TEXT(to), DCMS_VAL_TEXT(now), DCMS_VAL_INT(r.version)},
        12, NULL, &n, c->ei);
    if (!e && n != 1)
        e = dcms_err_set(c->ei, DCMS_ERR_PRECONDITION_FAILED, "the contract changed meanwhile");
    char reason[64];
    snprintf(reason, sizeof(reason), "terms edited (version %lld)", (long long)tv);
    if (!e)
        e = ct_signatures_void(tx, id, now, reason, &voided, c->ei);
    if (!e)
        e = ct_signatures_refresh(tx, id, &row, c->ei);
    if (!e)
        e = dcms_store_exec_later(
            tx, &ct_q_version_insert,
            (struct dcms_store_val[]){DCMS_VAL_TEXT(id), DCMS_VAL_INT(tv), DCMS_VAL_TEXT(hex),
                                      DCMS_VAL_TEXT(canon_content), DCMS_VAL_TEXT(now),
                                      DCMS_VAL_TEXT(c->p->id)},
            6, c->ei);
    if (!e)
        e = ct_audit(c, tx, "contract.update", id,
                     json_pack("{s:I, s:I, s:I, s:I, s:s, s:s, s:s, s:s, s:I}", "from_version",
                               (json_int_t)r.version, "to_version", (json_int_t)r.version + 1,
                               "from_terms_version", (json_int_t)r.terms_version,
                               "to_terms_version", (json_int_t)tv, "from_terms_hash", r.terms_hash,
                               "to_terms_hash", hex, "from_status", ct_status_name(r.status),
                               "to_status", "draft", "signatures_voided", (json_int_t)voided));
    if (!e) {
        e = ct_commit_answer(c, tx, id, row, parties, out);
        tx = NULL;
        row = parties = NULL;
    }
out:
    dcms_store_rows_free(rows);
    dcms_store_rows_free(row);
    dcms_store_rows_free(parties);
    free(canon_terms);
    free(canon_content);
    dcms_store_rollback(tx);
    return e;
}

enum dcms_err ct_delete(const struct ct_call *c, const char *id)
{
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_begin(c->app->store, DCMS_TX_WRITE, &tx, c->ei);
    if (e)
        return e;
    struct ct_row r;
    if ((e = ct_load_locked(tx, id, &rows, &r, c->ei)) ||
        (e = ct_authorize(c, &r, "contracts:delete")) ||
        (e = check_who(c, &r, ct_transition_of(CT_OP_DELETE))) ||
        (e = ct_transition_check(CT_OP_DELETE, r.status, c->ei)))
        goto out;
    uint64_t n = 0;
    struct dcms_store_val idv[] = {DCMS_VAL_TEXT(id)};
    if (!(e = dcms_store_exec(tx, &ct_q_delete_sigs, idv, 1, NULL, NULL, c->ei)) &&
        !(e = dcms_store_exec(tx, &ct_q_delete_versions, idv, 1, NULL, NULL, c->ei)))
        e = dcms_store_exec(tx, &ct_q_delete,
                            (struct dcms_store_val[]){DCMS_VAL_TEXT(id), DCMS_VAL_INT(r.version)},
                            2, NULL, &n, c->ei);
    if (!e && n != 1)
        e = dcms_err_set(c->ei, DCMS_ERR_PRECONDITION_FAILED, "the contract changed meanwhile");
    if (!e)
        e = ct_audit(c, tx, "contract.delete", id,
                     json_pack("{s:I, s:s, s:s, s:I}", "from_version", (json_int_t)r.version,
                               "from_status", ct_status_name(r.status), "terms_hash", r.terms_hash,
                               "terms_version", (json_int_t)r.terms_version));
out:
    dcms_store_rows_free(rows);
    return e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, c->ei);
}

/* The entries of terms.data_access.datasets (borrowed; NULL when there is none). */
static json_t *dataset_list(json_t *terms)
{
    return json_object_get(json_object_get(terms, "data_access"), "datasets");
}

/* Whether `terms` (the stored text) name a dataset of this service: an entry that is a UUID. */
static bool names_datasets(const char *terms_text)
{
    json_t *terms = json_loads(terms_text, 0, NULL), *v;
    size_t i;
    bool any = !terms; /* unreadable: let check_datasets say so */
    json_array_foreach(dataset_list(terms), i, v)
    {
        any = any || dcms_uuid_valid(json_string_value(v));
    }
    json_decref(terms);
    return any;
}

/*
 * Submit and activate: every UUID entry of terms.data_access.datasets must
 * name a ready dataset of the provider (dcms_datasets_check_for_contract).
 * The datasets service reads in a transaction of its own, so this runs with
 * no transaction held; `terms` is the stored terms text.
 */
static enum dcms_err check_datasets(const struct ct_call *c, const char *provider_id, json_t *terms)
{
    json_t *list = dataset_list(terms);
    size_t n = json_array_size(list);
    if (!n)
        return DCMS_OK;
    const char **entries = calloc(n, sizeof(*entries));
    if (!entries)
        return dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
    for (size_t i = 0; i < n; i++)
        entries[i] = json_string_value(json_array_get(list, i));
    enum dcms_err e = dcms_datasets_check_for_contract(c->app, provider_id, entries, n, c->ei);
    free(entries);
    return e;
}

enum dcms_err ct_transition(const struct ct_call *c, const char *id, enum ct_op op,
                            const char *reason, struct ct_rec *out)
{
    const struct ct_transition *t = ct_transition_of(op);
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL, *row = NULL; /* the contract read, and as written */
    struct dcms_store_rows *live = NULL;              /* its live signatures (activation) */
    bool datasets_checked = op != CT_OP_SUBMIT && op != CT_OP_ACTIVATE;
again:;
    enum dcms_err e = dcms_store_begin(c->app->store, DCMS_TX_WRITE, &tx, c->ei);
    if (e)
        return e;
    struct ct_row r;
    if ((e = op == CT_OP_ACTIVATE ? ct_load_live(tx, id, true, &rows, &r, &live, c->ei)
                                  : ct_load_locked(tx, id, &rows, &r, c->ei)) ||
        (e = ct_authorize(c, &r, t->permission)) || (e = check_who(c, &r, t)) ||
        (e = ct_transition_check(op, r.status, c->ei)))
        goto out;
    int64_t now_us = dcms_clock_now_us();
    char now[DCMS_TIME_STRLEN];
    dcms_time_format(now_us, now);
    int64_t from_us = 0, to_us = 0;
    if (dcms_time_parse(r.effective_from, &from_us) || dcms_time_parse(r.expires_at, &to_us)) {
        e = dcms_err_set(c->ei, DCMS_ERR_INTERNAL, NULL);
        goto out;
    }
    if (op == CT_OP_SUBMIT && to_us <= now_us) {
        e = dcms_err_set(c->ei, DCMS_ERR_CONFLICT,
                         "terms.expires_at (%s) has passed; edit the contract first", r.expires_at);
        goto out;
    }
    if (op == CT_OP_ACTIVATE) {
        bool prov = false, cons = false;
        if ((e = ct_signatures_complete(live, r.terms_hash, &prov, &cons, c->ei)))
            goto out;
        if (!prov || !cons) {
            e = dcms_err_set(c->ei, DCMS_ERR_CONFLICT,
                             "activation needs valid signatures of both sides over the current "
                             "terms; missing: %s",
                             !prov && !cons ? "provider and consumer"
                             : !prov        ? "provider"
                                            : "consumer");
            goto out;
        }
        if (from_us > now_us) {
            e = dcms_err_set(c->ei, DCMS_ERR_CONFLICT,
                             "terms.effective_from (%s) has not been reached", r.effective_from);
            goto out;
        }
    }
    if (!datasets_checked && names_datasets(r.terms)) {
        /* The checks read other services: they run with this transaction ended, then the
         * transition is done again from the start. */
        char provider[DCMS_UUID_STRLEN];
        snprintf(provider, sizeof(provider), "%s", r.provider_id);
        json_t *terms = json_loads(r.terms, 0, NULL);
        dcms_store_rows_free(rows);
        dcms_store_rows_free(live);
        rows = live = NULL;
        dcms_store_rollback(tx);
        tx = NULL;
        e = terms ? check_datasets(c, provider, terms)
                  : dcms_err_set(c->ei, DCMS_ERR_INTERNAL, NULL);
        json_decref(terms);
        if (e)
            return e;
        datasets_checked = true;
        goto again;
    }
    if ((e = write_status(c, tx, &r, t->to, reason, now, &row)))
        goto out;
    char action[48];
    snprintf(action, sizeof(action), "contract.%s", ct_op_name(op));
    json_t *d = json_pack("{s:s, s:s, s:I, s:I, s:s}", "from_status", ct_status_name(r.status),
                          "to_status", ct_status_name(t->to), "from_version", (json_int_t)r.version,
                          "to_version", (json_int_t)r.version + 1, "terms_hash", r.terms_hash);
    if (d && reason)
        json_object_set_new(d, "reason", json_string(reason));
    /* The services that follow contracts record their side in this transaction. */
    struct dcms_contract_change ch = {id,
                                      action,
                                      ct_status_name(r.status),
                                      ct_status_name(t->to),
                                      c->p ? c->p->id : NULL,
                                      c->client_ip,
                                      c->request_id};
    bool moved = r.status != t->to;
    if (!(e = ct_audit(c, tx, action, id, d)) &&
        !(moved && (e = ct_notify_record(c->app, tx, &ch, c->ei)))) {
        e = ct_commit_answer(c, tx, id, row, NULL, out);
        tx = NULL;
        row = NULL;
        if (!e && moved)
            ct_notify_committed(c->app, &ch);
    }
out:
    dcms_store_rows_free(rows);
    dcms_store_rows_free(row);
    dcms_store_rows_free(live);
    dcms_store_rollback(tx);
    return e;
}

enum dcms_err ct_versions(const struct ct_call *c, const char *id, struct ct_versions_out *out)
{
    struct dcms_store_tx *tx;
    memset(out, 0, sizeof(*out));
    enum dcms_err e = dcms_store_begin(c->app->store, DCMS_TX_READ, &tx, c->ei);
    if (e)
        return e;
    if (!(e = ct_load(tx, id, &out->rec.rows, &out->rec.r, c->ei)) &&
        !(e = ct_authorize(c, &out->rec.r, "contracts:read")))
        e = dcms_store_exec(tx, &ct_q_versions, (struct dcms_store_val[]){DCMS_VAL_TEXT(id)}, 1,
                            &out->versions, NULL, c->ei);
    dcms_store_rollback(tx);
    if (e)
        ct_versions_release(out);
    return e;
}

void ct_versions_release(struct ct_versions_out *v)
{
    dcms_store_rows_free(v->versions);
    v->versions = NULL;
    ct_rec_release(&v->rec);
}

/* ---- expiry ---- */

enum dcms_err ct_expire_due(struct dcms_app *app, unsigned *count, struct dcms_errinfo *ei)
{
    *count = 0;
    struct ct_call c = {app, NULL, NULL, NULL, ei, NULL};
    for (int batch = 0; batch < 50; batch++) {
        char now[DCMS_TIME_STRLEN];
        dcms_time_format(dcms_clock_now_us(), now);
        struct dcms_store_tx *tx;
        struct dcms_store_rows *rows = NULL;
        enum dcms_err e = dcms_store_begin(app->store, DCMS_TX_WRITE, &tx, ei);
        if (e)
            return e;
        e = dcms_store_exec(
            tx, &ct_q_due,
            (struct dcms_store_val[]){DCMS_VAL_TEXT(now), DCMS_VAL_INT(EXPIRY_BATCH)}, 2, &rows,
            NULL, ei);
        size_t n = e ? 0 : dcms_store_rows_count(rows);
        for (size_t i = 0; !e && i < n; i++) {
            struct ct_row r = {.id = dcms_store_rows_text(rows, i, 0),
                               .version = dcms_store_rows_int(rows, i, 1)};
            const char *from = dcms_store_rows_text(rows, i, 2);
            uint64_t changed = 0;
            e = dcms_store_exec(
                tx, &ct_q_update_status,
                (struct dcms_store_val[]){DCMS_VAL_TEXT(r.id), DCMS_VAL_TEXT("expired"),
                                          DCMS_VAL_TEXT("expires_at reached"), DCMS_VAL_TEXT(now),
                                          DCMS_VAL_INT(r.version)},
                5, NULL, &changed, ei);
            if (!e && changed == 1)
                e = ct_audit(&c, tx, "contract.expire", r.id,
                             json_pack("{s:s, s:s, s:I, s:I, s:s}", "from_status", from,
                                       "to_status", "expired", "from_version",
                                       (json_int_t)r.version, "to_version",
                                       (json_int_t)r.version + 1, "expires_at",
                                       dcms_store_rows_text(rows, i, 3)));
            struct dcms_contract_change ch = {r.id, "contract.expire", from, "expired", NULL, NULL,
                                              NULL};
            if (!e && changed == 1)
                e = ct_notify_record(app, tx, &ch, ei);
            if (!e && changed == 1)
                (*count)++;
        }
        e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, ei);
        for (size_t i = 0; !e && i < n; i++) {
            struct dcms_contract_change ch = {dcms_store_rows_text(rows, i, 0),
                                              "contract.expire",
                                              dcms_store_rows_text(rows, i, 2),
                                              "expired",
                                              NULL,
                                              NULL,
                                              NULL};
            ct_notify_committed(app, &ch);
        }
        dcms_store_rows_free(rows);
        if (e)
            return e;
        if (n < EXPIRY_BATCH)
            break;
    }
    return DCMS_OK;
}

enum dcms_err dcms_contracts_open(struct dcms_app *app, struct dcms_contracts **out,
                                  struct dcms_errinfo *ei)
{
    struct dcms_contracts *ct = calloc(1, sizeof(*ct));
    if (!ct)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    ct->app = app;
    ct->expiry_interval_s = (unsigned)app->cfg->contract_expiry_interval_s;
    pthread_rwlock_init(&ct->listen_mu, NULL);
    enum dcms_err e = ct_expiry_start(ct, ei);
    if (e) {
        dcms_contracts_close(ct);
        return e;
    }
    *out = ct;
    return DCMS_OK;
}

void dcms_contracts_close(struct dcms_contracts *ct)
{
    if (!ct)
        return;
    dcms_periodic_stop(ct->expiry);
    pthread_rwlock_destroy(&ct->listen_mu);
    free(ct);
}

/* ---- what the enclave service reads ---- */

static enum dcms_err security_read(struct dcms_app *app, const char *id,
                                   struct dcms_contract_security *out, json_t **terms_out,
                                   char *hash_out, struct dcms_errinfo *ei);

enum dcms_err dcms_contracts_security_of(struct dcms_app *app, const char *id,
                                         struct dcms_contract_security *out,
                                         struct dcms_errinfo *ei)
{
    return security_read(app, id, out, NULL, NULL, ei);
}

enum dcms_err dcms_contracts_terms_of(struct dcms_app *app, const char *id,
                                      struct dcms_contract_terms *out, struct dcms_errinfo *ei)
{
    memset(out, 0, sizeof(*out));
    return security_read(app, id, &out->sec, &out->terms, out->terms_hash, ei);
}

/* The security view of contract `id`; with `terms_out`, its terms and terms hash too. */
static enum dcms_err security_read(struct dcms_app *app, const char *id,
                                   struct dcms_contract_security *out, json_t **terms_out,
                                   char *hash_out, struct dcms_errinfo *ei)
{
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    struct ct_row r;
    enum dcms_err e = dcms_store_begin(app->store, DCMS_TX_READ, &tx, ei);
    if (e)
        return e;
    if ((e = ct_load(tx, id, &rows, &r, ei)))
        goto out;
    memset(out, 0, sizeof(*out));
    snprintf(out->id, sizeof(out->id), "%s", r.id);
    snprintf(out->provider_id, sizeof(out->provider_id), "%s", r.provider_id);
    snprintf(out->consumer_id, sizeof(out->consumer_id), "%s", r.consumer_id);
    snprintf(out->status, sizeof(out->status), "%s", ct_status_name(r.status));
    json_t *terms = json_loads(r.terms, 0, NULL);
    json_t *sec = json_object_get(terms, "security");
    if (!sec || !dcms_security_level_parse(
                    json_string_value(json_object_get(sec, "encryption_level")), &out->level)) {
        json_decref(terms);
        e = dcms_err_set(ei, DCMS_ERR_INTERNAL, "contract %s has unreadable terms", id);
        goto out;
    }
    out->network_isolation = json_is_true(json_object_get(sec, "network_isolation"));
    out->audit_logging = json_is_true(json_object_get(sec, "audit_logging"));
    if (terms_out) {
        snprintf(hash_out, 65, "%s", r.terms_hash ? r.terms_hash : "");
        *terms_out = terms;
        terms = NULL;
    }
    json_decref(terms);
out:
    dcms_store_rows_free(rows);
    dcms_store_rollback(tx);
    return e;
}
