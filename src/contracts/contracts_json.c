/*
 * The contract service's codecs: request JSON into the C structs the
 * service takes (every problem at once, each with its JSON path; unknown
 * members refused with dcms_json_only_members; the terms through the
 * declarative walker of contracts_terms.c), and rows into response JSON
 * (a contract as a jansson object or as text written without re-parsing,
 * a signature, the list cursor). No store access, no HTTP.
 */
#include "dcms/audit.h"
#include "dcms/crypto.h"
#include "dcms/json.h"
#include "dcms/store.h"
#include "dcms/credentials.h"
#include "contracts/contracts_int.h"

/* ---- requests ---- */

static const char *req_string(const json_t *b, const char *key, struct dcms_errinfo *ei,
                              bool required)
{
    const json_t *v = json_object_get(b, key);
    if (!v) {
        if (required)
            dcms_err_field(ei, key, "is required");
        return NULL;
    }
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)) {
        dcms_err_field(ei, key, "must be a string");
        return NULL;
    }
    return json_string_value(v);
}

bool ct_input_from_json(const json_t *b, int64_t now_us, struct ct_input *in,
                        struct dcms_errinfo *ei)
{
    static const char *const keys[] = {"title",       "description", "provider_id",
                                       "consumer_id", "terms",       NULL};
    memset(in, 0, sizeof(*in));
    if (!json_is_object(b)) {
        dcms_err_field(ei, "", "must be a JSON object");
        return false;
    }
    dcms_json_only_members(b, "", keys, ei);
    in->title = req_string(b, "title", ei, true);
    if (in->title && !ct_title_valid(in->title)) {
        dcms_err_field(ei, "title", "must be 1 to 255 characters without control characters");
        in->title = NULL;
    }
    in->description = req_string(b, "description", ei, false);
    if (in->description && strlen(in->description) > CT_DESCRIPTION_MAX)
        dcms_err_field(ei, "description", "must be at most %d bytes", CT_DESCRIPTION_MAX);
    if (!in->description)
        in->description = "";
    in->provider_id = req_string(b, "provider_id", ei, true);
    if (in->provider_id && !dcms_uuid_valid(in->provider_id)) {
        dcms_err_field(ei, "provider_id", "must be an identity id (UUID)");
        in->provider_id = NULL;
    }
    in->consumer_id = req_string(b, "consumer_id", ei, true);
    if (in->consumer_id && !dcms_uuid_valid(in->consumer_id)) {
        dcms_err_field(ei, "consumer_id", "must be an identity id (UUID)");
        in->consumer_id = NULL;
    }
    if (in->provider_id && in->consumer_id && strcasecmp(in->provider_id, in->consumer_id) == 0)
        dcms_err_field(ei, "consumer_id", "must differ from provider_id");
    const json_t *terms = json_object_get(b, "terms");
    if (!terms)
        dcms_err_field(ei, "terms", "is required");
    else
        ct_terms_validate(terms, now_us, &in->terms, &in->from_us, &in->to_us, ei);
    return ei->code == DCMS_OK;
}

bool ct_update_from_json(const json_t *body, const char *if_match, int64_t now_us,
                         struct ct_input *in, struct dcms_errinfo *ei)
{
    if (!if_match) {
        memset(in, 0, sizeof(*in));
        dcms_err_set(ei, DCMS_ERR_PRECONDITION_REQUIRED,
                     "If-Match is required: send the ETag of the version you edit");
        return false;
    }
    bool ok = ct_input_from_json(body, now_us, in, ei);
    in->if_match = if_match;
    return ok;
}

void ct_input_release(struct ct_input *in)
{
    json_decref(in->terms);
    in->terms = NULL;
}

bool ct_reason_from_json(const json_t *b, bool required, const char **reason,
                         struct dcms_errinfo *ei)
{
    static const char *const keys[] = {"reason", NULL};
    *reason = NULL;
    if (b && !json_is_object(b))
        return !dcms_err_field(ei, "", "must be a JSON object");
    if (b) {
        dcms_json_only_members(b, "", keys, ei);
        const json_t *r = json_object_get(b, "reason");
        if (r && (!json_is_string(r) || json_string_length(r) < 1 || json_string_length(r) > 1000 ||
                  strlen(json_string_value(r)) != json_string_length(r)))
            dcms_err_field(ei, "reason", "must be a string of 1 to 1000 characters");
        else if (r)
            *reason = json_string_value(r);
    }
    if (required && !*reason && !ei->code)
        dcms_err_field(ei, "reason", "is required");
    return ei->code == DCMS_OK;
}

bool ct_sign_from_json(const json_t *b, struct ct_sign_in *in, struct dcms_errinfo *ei)
{
    static const char *const keys[] = {"type",      "terms_hash", "key_id", "signature",
                                       "totp_code", "assertion",  "side",   NULL};
    memset(in, 0, sizeof(*in));
    if (!json_is_object(b))
        return !dcms_err_field(ei, "", "must be a JSON object");
    dcms_json_only_members(b, "", keys, ei);
    in->type_name = ct_opt_string(b, "type", 16, ei);
    in->type = in->type_name ? ct_sigtype_find(in->type_name) : NULL;
    if (!in->type) {
        char names[128];
        ct_sigtype_names(names, sizeof(names));
        dcms_err_field(ei, "type", "must be %s", names);
    }
    in->terms_hash = ct_opt_string(b, "terms_hash", 64, ei);
    if (!in->terms_hash || !ct_hex_decode32(in->terms_hash, in->hash))
        dcms_err_field(ei, "terms_hash",
                       "must be the contract's terms_hash you are signing (64 lowercase hex)");
    in->side = ct_opt_string(b, "side", 16, ei);
    if (in->side && strcmp(in->side, "provider") && strcmp(in->side, "consumer"))
        dcms_err_field(ei, "side", "must be provider or consumer");
    in->key_id = ct_opt_string(b, "key_id", DCMS_SIGNING_KEY_ID_MAX, ei);
    in->signature_b64 = ct_opt_string(b, "signature", 200, ei);
    in->totp_code = ct_opt_string(b, "totp_code", 16, ei);
    in->assertion = json_object_get(b, "assertion");
    if (in->type)
        in->type->decode(b, in, ei);
    return ei->code == DCMS_OK;
}

bool ct_b64_any_decode(const char *s, unsigned char *out, size_t cap, size_t *len)
{
    size_t n = strlen(s);
    if (n == 0 || n > 4 * cap)
        return false;
    char *tmp = malloc(n + 1);
    if (!tmp)
        return false;
    for (size_t i = 0; i <= n; i++)
        tmp[i] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
    bool ok = dcms_b64_decode(out, cap, tmp, n, len) == DCMS_OK;
    free(tmp);
    return ok;
}

bool ct_hex_decode32(const char *s, unsigned char out[32])
{
    if (!s || strlen(s) != 64)
        return false;
    for (size_t i = 0; i < 32; i++) {
        unsigned v = 0;
        for (size_t j = 0; j < 2; j++) {
            char ch = s[2 * i + j];
            v <<= 4;
            if (ch >= '0' && ch <= '9')
                v |= (unsigned)(ch - '0');
            else if (ch >= 'a' && ch <= 'f')
                v |= (unsigned)(ch - 'a' + 10);
            else
                return false;
        }
        out[i] = (unsigned char)v;
    }
    return true;
}

const char *ct_opt_string(const json_t *b, const char *key, size_t max, struct dcms_errinfo *ei)
{
    const json_t *v = json_object_get(b, key);
    if (!v)
        return NULL;
    if (!json_is_string(v) || json_string_length(v) < 1 || json_string_length(v) > max ||
        strlen(json_string_value(v)) != json_string_length(v)) {
        dcms_err_field(ei, key, "must be a string of 1 to %zu characters", max);
        return NULL;
    }
    return json_string_value(v);
}

char *ct_cursor_encode(const char *id)
{
    size_t n = strlen(id);
    char *b = malloc(dcms_b64_encoded_len(n));
    if (!b)
        return NULL;
    dcms_b64_encode(b, id, n);
    for (char *p = b; *p; p++) {
        if (*p == '+')
            *p = '-';
        else if (*p == '/')
            *p = '_';
        else if (*p == '=')
            *p = '\0';
    }
    return b;
}

static bool cursor_decode(const char *s, char out[DCMS_UUID_STRLEN])
{
    char tmp[64];
    size_t n = strlen(s);
    if (n == 0 || n >= sizeof(tmp))
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '+' || ch == '/' || ch == '=')
            return false;
        tmp[i] = ch == '-' ? '+' : ch == '_' ? '/' : ch;
    }
    unsigned char raw[48];
    size_t len = 0;
    if (dcms_b64_decode(raw, sizeof(raw) - 1, tmp, n, &len) || len != DCMS_UUID_STRLEN - 1)
        return false;
    memcpy(out, raw, len);
    out[len] = '\0';
    return dcms_uuid_valid(out);
}

bool ct_list_decode(struct ct_list_in *in, struct dcms_errinfo *ei)
{
    enum ct_status st;
    if (in->status && !ct_status_parse(in->status, &st))
        dcms_err_field(ei, "status",
                       "must be draft, pending_signature, active, suspended, terminated or "
                       "expired");
    if (in->party && !dcms_uuid_valid(in->party))
        dcms_err_field(ei, "party", "must be an identity id (UUID)");
    if (in->role && strcmp(in->role, "provider") && strcmp(in->role, "consumer"))
        dcms_err_field(ei, "role", "must be provider or consumer");
    if (in->q && (strlen(in->q) < 1 || strlen(in->q) > 255))
        dcms_err_field(ei, "q", "must be 1 to 255 characters");
    if (in->cursor && !cursor_decode(in->cursor, in->cursor_id))
        dcms_err_field(ei, "cursor", "must be the next_cursor of the previous page");
    return ei->code == DCMS_OK;
}

/* ---- responses ---- */

json_t *ct_stored_json(const char *text)
{
    json_t *v = text ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;
    return v ? v : json_null();
}

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

json_t *ct_row_json(const struct ct_row *r)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:s, s:o, s:o, s:o, s:s, s:I, s:I, "
                     "s:s, s:s, s:s}",
                     "id", r->id, "title", r->title, "description", r->description, "provider_id",
                     r->provider_id, "consumer_id", r->consumer_id, "provider_name",
                     str_or_null(r->provider_name), "consumer_name", str_or_null(r->consumer_name),
                     "status", ct_status_name(r->status), "status_reason",
                     str_or_null(r->status_reason), "terms", ct_stored_json(r->terms), "signatures",
                     ct_stored_json(r->signatures), "terms_hash", r->terms_hash, "version",
                     (json_int_t)r->version, "terms_version", (json_int_t)r->terms_version,
                     "created_by", r->created_by, "created_at", r->created_at, "updated_at",
                     r->updated_at);
}

/* Appends `s` as a JSON string (quoted), or null. */
static enum dcms_err put_str(struct dcms_buf *b, const char *s)
{
    if (!s)
        return dcms_buf_appends(b, "null");
    enum dcms_err e = dcms_buf_append(b, "\"", 1);
    if (!e)
        e = dcms_buf_append_json_escaped(b, s, strlen(s));
    return e ? e : dcms_buf_append(b, "\"", 1);
}

enum dcms_err ct_row_render(const struct ct_row *r, struct dcms_buf *b)
{
    /* Same members, same order as ct_row_json(); the stored terms (canonical
     * JSON) and signatures (compact JSON written by this service) are copied
     * as they are instead of being parsed and printed again. */
    enum dcms_err e = dcms_buf_appends(b, "{\"id\":");
#define STR(k, v)                                                                                  \
    if (!e)                                                                                        \
        e = dcms_buf_appends(b, k);                                                                \
    if (!e)                                                                                        \
    e = put_str(b, v)
    if (!e)
        e = put_str(b, r->id);
    STR(",\"title\":", r->title);
    STR(",\"description\":", r->description);
    STR(",\"provider_id\":", r->provider_id);
    STR(",\"consumer_id\":", r->consumer_id);
    STR(",\"provider_name\":", r->provider_name);
    STR(",\"consumer_name\":", r->consumer_name);
    STR(",\"status\":", ct_status_name(r->status));
    STR(",\"status_reason\":", r->status_reason);
#undef STR
    if (!e)
        e = dcms_buf_appendf(b, ",\"terms\":%s,\"signatures\":%s,\"terms_hash\":",
                             r->terms && *r->terms ? r->terms : "null",
                             r->signatures && *r->signatures ? r->signatures : "[]");
    if (!e)
        e = put_str(b, r->terms_hash);
    if (!e)
        e = dcms_buf_appendf(b, ",\"version\":%lld,\"terms_version\":%lld,\"created_by\":",
                             (long long)r->version, (long long)r->terms_version);
    if (!e)
        e = put_str(b, r->created_by);
    if (!e)
        e = dcms_buf_appends(b, ",\"created_at\":");
    if (!e)
        e = put_str(b, r->created_at);
    if (!e)
        e = dcms_buf_appends(b, ",\"updated_at\":");
    if (!e)
        e = put_str(b, r->updated_at);
    return e ? e : dcms_buf_append(b, "}", 1);
}

static json_t *parse_text(const char *s)
{
    json_t *v = s ? json_loads(s, JSON_DECODE_ANY, NULL) : NULL;
    return v ? v : json_object();
}

json_t *ct_sig_json_of(const struct ct_sig_fields *f)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:s, s:o}", "id", f->id, "side",
                          f->side, "signer_id", f->signer_id, "type", f->type, "key_id", f->key_id,
                          "algorithm", f->algorithm, "signed_hash", f->signed_hash, "terms_version",
                          (json_int_t)f->terms_version, "signed_at", f->signed_at, "evidence",
                          parse_text(f->evidence));
    if (o && f->voided_at) {
        json_object_set_new(o, "voided_at", json_string(f->voided_at));
        json_object_set_new(o, "void_reason", json_string(f->void_reason ? f->void_reason : ""));
    }
    /* Its contract.sign event and where its receipt is (none for rows older than both). */
    if (o && f->audit_event_id && *f->audit_event_id) {
        json_object_set_new(o, "audit_event_id", json_string(f->audit_event_id));
        json_object_set_new(o, "receipt", json_sprintf(DCMS_AUDIT_RECEIPT_PATH, f->audit_event_id));
    }
    return o;
}

json_t *ct_sig_json(const struct dcms_store_rows *rows, size_t i)
{
#define T(c) dcms_store_rows_text(rows, i, c)
    struct ct_sig_fields f = {
        T(0), T(1), T(2),  T(3),  T(4), T(5), T(6), dcms_store_rows_int(rows, i, 7),
        T(8), T(9), T(10), T(11), T(12)};
#undef T
    return ct_sig_json_of(&f);
}

json_t *ct_versions_json(const struct ct_versions_out *v)
{
    const struct dcms_store_rows *vr = v->versions;
    json_t *items = json_array();
    for (size_t i = 0; items && i < dcms_store_rows_count(vr); i++)
        json_array_append_new(items,
                              json_pack("{s:I, s:s, s:o, s:s, s:s, s:b}", "terms_version",
                                        (json_int_t)dcms_store_rows_int(vr, i, 0), "terms_hash",
                                        dcms_store_rows_text(vr, i, 1), "content",
                                        ct_stored_json(dcms_store_rows_text(vr, i, 2)),
                                        "created_at", dcms_store_rows_text(vr, i, 3), "created_by",
                                        dcms_store_rows_text(vr, i, 4), "current",
                                        dcms_store_rows_int(vr, i, 0) == v->rec.r.terms_version));
    return json_pack("{s:s, s:o}", "contract_id", v->rec.r.id, "versions", items);
}

enum dcms_err ct_rec_text(const struct ct_rec *rec, struct ct_text *out)
{
    struct dcms_buf b;
    dcms_buf_init(&b, CT_RENDER_MAX);
    enum dcms_err e = ct_row_render(&rec->r, &b);
    if (e) {
        dcms_buf_release(&b);
        return e;
    }
    out->body = dcms_buf_detach(&b, &out->len);
    out->version = rec->r.version;
    return DCMS_OK;
}

enum dcms_err ct_page_text(const struct ct_page *page, struct ct_text *out)
{
    struct dcms_buf b;
    dcms_buf_init(&b, CT_RENDER_MAX * 201);
    enum dcms_err e = dcms_buf_appends(&b, "{\"contracts\":[");
    for (size_t i = 0; !e && i < page->n; i++) {
        struct ct_row r;
        ct_row_from(page->rows[i], page->idx[i], &r, page->now_us);
        r.provider_name = dcms_iam_party_name(page->names, r.provider_id);
        r.consumer_name = dcms_iam_party_name(page->names, r.consumer_id);
        if (i)
            e = dcms_buf_append(&b, ",", 1);
        if (!e)
            e = ct_row_render(&r, &b);
    }
    if (!e)
        e = dcms_buf_appends(&b, "],\"next_cursor\":");
    if (!e && page->more && page->n) {
        size_t last = page->n - 1;
        char *next = ct_cursor_encode(dcms_store_rows_text(page->rows[last], page->idx[last], 0));
        e = next ? dcms_buf_appendf(&b, "\"%s\"}", next) : DCMS_ERR_NOMEM;
        free(next);
    } else if (!e) {
        e = dcms_buf_appends(&b, "null}");
    }
    if (e) {
        dcms_buf_release(&b);
        return e;
    }
    out->body = dcms_buf_detach(&b, &out->len);
    out->version = 0;
    return DCMS_OK;
}

json_t *ct_verify_json(const struct ct_verify_out *v)
{
    const struct ct_row *r = &v->rec.r;
    json_t *sigs = json_array();
    for (size_t i = 0; sigs && i < dcms_store_rows_count(v->sigs); i++) {
        json_t *s = ct_sig_json(v->sigs, i);
        json_object_set_new(s, "valid", json_boolean(v->checks[i].valid));
        json_object_set_new(s, "voided", json_boolean(v->checks[i].voided));
        if (v->checks[i].problem)
            json_object_set_new(s, "problem", json_string(v->checks[i].problem));
        json_object_del(s, "evidence");
        json_array_append_new(sigs, s);
    }
    return json_pack("{s:s, s:s, s:b, s:{s:s, s:s, s:b, s:b}, s:o}", "contract_id", r->id, "status",
                     ct_status_name(r->status), "valid", v->valid, "terms_hash", "stored",
                     r->terms_hash, "computed", v->computed, "matches", v->content_ok,
                     "recorded_in_history", v->history_ok, "signatures", sigs);
}
