/*
 * The decode layer of passkeys: a PublicKeyCredential (registration or
 * assertion) from its JSON into struct iam_wa_cred_in with every problem at
 * once under its JSON path, and the options bodies. No store, no HTTP.
 */
#include "dcms/json.h"
#include "iam/webauthn.h"
#include "iam/webauthn_json.h"

static bool known(const char *key, const char *const *allowed)
{
    for (; *allowed; allowed++)
        if (strcmp(*allowed, key) == 0)
            return true;
    return false;
}

void iam_wa_cred_in_free(struct iam_wa_cred_in *in)
{
    free(in->cdj.p);
    free(in->att.p);
    free(in->ad.p);
    free(in->sig.p);
    free(in->uh.p);
    json_decref(in->transports);
    free((char *)in->id);
    memset(in, 0, sizeof(*in));
}

/* A base64url member of `o` (path `path`), at most `max` decoded bytes; absent allowed if opt. */
static void b64_member(const json_t *o, const char *key, const char *path, size_t max, bool opt,
                       struct bin *out, struct dcms_errinfo *ei)
{
    json_t *v = json_object_get(o, key);
    if (!v || (opt && json_is_null(v))) {
        if (!opt)
            dcms_err_field(ei, path, "is required");
        return;
    }
    size_t len = json_string_length(v);
    if (!json_is_string(v) || len == 0 || len > (max * 4 + 2) / 3 + 4) {
        dcms_err_field(ei, path, "must be base64url of at most %zu bytes", max);
        return;
    }
    /* Browsers send unpadded base64url; tolerate padding some libraries add. */
    const char *s = json_string_value(v);
    while (len && s[len - 1] == '=')
        len--;
    out->p = malloc(max + 1);
    if (!out->p || !iam_b64url_decode(out->p, max, s, len, &out->n) || out->n == 0) {
        free(out->p);
        out->p = NULL;
        out->n = 0;
        dcms_err_field(ei, path, "must be base64url of at most %zu bytes", max);
    }
}

/* Decodes {id, rawId, type, response: {...}, ...}; `registration` picks the response shape. */
enum dcms_err iam_wa_cred_from_json(const json_t *c, bool registration, struct iam_wa_cred_in *in,
                                    struct dcms_errinfo *ei)
{
    static const char *const top[] = {
        "id", "rawId", "type", "response", "authenticatorAttachment", "clientExtensionResults",
        NULL};
    static const char *const reg[] = {
        "clientDataJSON", "attestationObject", "transports", "publicKeyAlgorithm",
        "publicKey",      "authenticatorData", NULL};
    static const char *const get[] = {"clientDataJSON", "authenticatorData", "signature",
                                      "userHandle", NULL};
    memset(in, 0, sizeof(*in));
    if (!json_is_object(c))
        return dcms_err_field(ei, "credential", "must be a PublicKeyCredential object");
    dcms_json_only_members(c, "", top, ei);
    json_t *type = json_object_get(c, "type");
    if (!json_is_string(type) || strcmp(json_string_value(type), "public-key") != 0)
        dcms_err_field(ei, "type", "must be \"public-key\"");
    json_t *id = json_object_get(c, "id"), *raw = json_object_get(c, "rawId");
    struct bin idb = {0};
    b64_member(c, "id", "id", WA_CRED_ID_MAX, false, &idb, ei);
    if (raw && (!json_is_string(raw) || !json_equal(raw, id)))
        dcms_err_field(ei, "rawId", "must equal id");
    if (idb.p) {
        char *canon = malloc(iam_b64url_len(idb.n));
        if (canon)
            iam_b64url_encode(canon, idb.p, idb.n);
        in->id = canon;
        free(idb.p);
    }
    json_t *r = json_object_get(c, "response");
    if (!json_is_object(r)) {
        dcms_err_field(ei, "response", "must be an object");
        return ei->code;
    }
    dcms_json_only_members(r, "response.", registration ? reg : get, ei);
    b64_member(r, "clientDataJSON", "response.clientDataJSON", WA_CLIENT_DATA_MAX, false, &in->cdj,
               ei);
    if (registration) {
        b64_member(r, "attestationObject", "response.attestationObject", WA_ATT_OBJECT_MAX, false,
                   &in->att, ei);
        json_t *tr = json_object_get(r, "transports");
        static const char *const ok[] = {"usb",    "nfc",        "ble", "internal",
                                         "hybrid", "smart-card", NULL};
        if (tr && (!json_is_array(tr) || json_array_size(tr) > 8))
            dcms_err_field(ei, "response.transports", "must be an array of at most 8 transports");
        size_t i;
        json_t *t;
        json_array_foreach(tr, i, t)
        {
            if (!json_is_string(t) || !known(json_string_value(t), ok)) {
                char path[48];
                snprintf(path, sizeof(path), "response.transports[%zu]", i);
                dcms_err_field(ei, path, "must be usb, nfc, ble, internal, hybrid or smart-card");
            }
        }
        in->transports = json_is_array(tr) ? json_incref(tr) : json_array();
    } else {
        b64_member(r, "authenticatorData", "response.authenticatorData", WA_AUTH_DATA_MAX, false,
                   &in->ad, ei);
        b64_member(r, "signature", "response.signature", WA_SIGNATURE_MAX, false, &in->sig, ei);
        b64_member(r, "userHandle", "response.userHandle", 64, true, &in->uh, ei);
    }
    if (in->cdj.p &&
        !wa_client_data_challenge(in->cdj.p, in->cdj.n, in->challenge, sizeof(in->challenge)))
        dcms_err_field(ei, "response.clientDataJSON", "must be JSON with a challenge");
    return ei->code;
}

/* The options body {user_verification?, ...}: `keys` are the allowed members; *uv defaults to
 * "preferred". `body` NULL (no body) is allowed. */
enum dcms_err iam_wa_options_from_json(const json_t *body, const char *const *keys, const char **uv,
                                       struct dcms_errinfo *ei)
{
    *uv = "preferred";
    if (!body)
        return DCMS_OK;
    if (!json_is_object(body))
        return dcms_err_field(ei, "", "must be a JSON object");
    dcms_json_only_members(body, "", keys, ei);
    json_t *v = json_object_get(body, "user_verification");
    if (v) {
        const char *s = json_is_string(v) ? json_string_value(v) : "";
        if (strcmp(s, "required") && strcmp(s, "preferred") && strcmp(s, "discouraged"))
            dcms_err_field(ei, "user_verification", "must be required, preferred or discouraged");
        else
            *uv = s;
    }
    return ei->code;
}

enum dcms_err iam_wa_register_from_json(const json_t *b, json_t **cred, const char **name,
                                        struct dcms_errinfo *ei)
{
    *cred = NULL;
    *name = NULL;
    if (!json_is_object(b))
        return dcms_err_field(ei, "", "must be a JSON object");
    json_t *nm = json_object_get(b, "name");
    if (nm && (!json_is_string(nm) || strlen(json_string_value(nm)) != json_string_length(nm)))
        dcms_err_field(ei, "name", "must be a string");
    else if (nm)
        *name = json_string_value(nm);
    *cred = json_deep_copy(b);
    json_object_del(*cred, "name");
    return ei->code;
}

enum dcms_err iam_wa_ticket_from_json(const json_t *b, const char **ticket, struct dcms_errinfo *ei)
{
    json_t *t = json_object_get(b, "mfa_ticket");
    *ticket = NULL;
    if (!t)
        return DCMS_OK;
    if (!json_is_string(t) || json_string_length(t) > 128)
        return dcms_err_field(ei, "mfa_ticket", "must be the mfa_ticket of a login");
    *ticket = json_string_value(t);
    return DCMS_OK;
}
