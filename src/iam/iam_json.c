/*
 * Request bodies of identities and logins into C structs (iam_json.h).
 * Every problem is recorded with its JSON path before returning, so the
 * client sees them all at once.
 */
#include <stdio.h>
#include <string.h>

#include "iam/iam_json.h"

/*
 * String member `key` of `o`, at most `max` bytes and without a NUL inside:
 * its value, or NULL when absent (or JSON null when `present` is given:
 * *present then says whether the member was there at all).
 */
static const char *str_member(const json_t *o, const char *key, size_t max, bool *present,
                              struct dcms_errinfo *ei)
{
    json_t *v = json_object_get(o, key);
    if (present)
        *present = v != NULL;
    if (!v || (present && json_is_null(v)))
        return NULL;
    if (!json_is_string(v) || json_string_length(v) > max ||
        strlen(json_string_value(v)) != json_string_length(v)) {
        dcms_err_field(ei, key, "must be a string of at most %zu characters%s", max,
                       present ? " or null" : "");
        return NULL;
    }
    return json_string_value(v);
}

/* A required string member: a problem when it is missing. */
static const char *required_str(const json_t *o, const char *key, size_t max,
                                struct dcms_errinfo *ei)
{
    const char *s = str_member(o, key, max, NULL, ei);
    if (!s && !json_object_get(o, key))
        dcms_err_field(ei, key, "is required");
    return s;
}

/* roles: an array of role names, as a bit set; *present says whether it was given. */
static unsigned roles_member(const json_t *o, bool *present, struct dcms_errinfo *ei)
{
    json_t *v = json_object_get(o, "roles");
    *present = v != NULL;
    if (!v)
        return 0;
    unsigned roles = 0;
    if (!json_is_array(v))
        dcms_err_field(ei, "roles", "must be an array of role names");
    size_t i;
    json_t *s;
    json_array_foreach(v, i, s)
    {
        unsigned r = json_is_string(s) ? dcms_iam_role_parse(json_string_value(s)) : 0;
        if (!r) {
            char path[40];
            snprintf(path, sizeof(path), "roles[%zu]", i);
            dcms_err_field(ei, path,
                           "must be admin, provider, consumer, auditor, operator or org_admin");
        }
        roles |= r;
    }
    return roles;
}

enum dcms_err iam_identity_create_from_json(const json_t *b, struct iam_identity_in *in,
                                            struct dcms_errinfo *ei)
{
    memset(in, 0, sizeof(*in));
    in->kind = str_member(b, "kind", 32, NULL, ei);
    in->name = str_member(b, "name", 1000, NULL, ei);
    in->email = str_member(b, "email", 1000, NULL, ei);
    in->password = str_member(b, "password", 4096, NULL, ei);
    in->organization_id = str_member(b, "organization_id", 64, NULL, ei);
    in->roles = roles_member(b, &in->has_roles, ei);
    if (!json_object_get(b, "name"))
        dcms_err_field(ei, "name", "is required");
    return ei->code;
}

enum dcms_err iam_identity_patch_from_json(const json_t *b, struct iam_identity_in *in,
                                           struct dcms_errinfo *ei)
{
    memset(in, 0, sizeof(*in));
    in->name = str_member(b, "name", 1000, NULL, ei);
    if (json_is_null(json_object_get(b, "name")))
        dcms_err_field(ei, "name", "must not be null");
    in->email = str_member(b, "email", 1000, &in->has_email, ei);
    in->organization_id = str_member(b, "organization_id", 64, &in->has_org, ei);
    in->roles = roles_member(b, &in->has_roles, ei);
    if (json_object_size(b) == 0)
        dcms_err_field(ei, "", "name, email, organization_id or roles is required");
    return ei->code;
}

enum dcms_err iam_login_from_json(const json_t *b, struct iam_login_in *in, struct dcms_errinfo *ei)
{
    memset(in, 0, sizeof(*in));
    in->mfa_ticket = str_member(b, "mfa_ticket", 128, NULL, ei);
    if (json_object_get(b, "mfa_ticket")) {
        /* Second step: the ticket stands for the password already checked. */
        if (json_object_get(b, "email"))
            dcms_err_field(ei, "email", "is not allowed with mfa_ticket");
        if (json_object_get(b, "password"))
            dcms_err_field(ei, "password", "is not allowed with mfa_ticket");
    } else if (!json_object_get(b, "email") && !json_object_get(b, "password") &&
               json_object_get(b, "webauthn")) {
        /* Passkey-first: the assertion names the credential, hence the identity. */
        in->passkey_only = true;
    } else {
        in->email = required_str(b, "email", 254, ei);
        in->password = required_str(b, "password", 4096, ei);
    }
    in->device_token = str_member(b, "device_token", IAM_DEVICE_TOKEN_MAX, NULL, ei);
    in->factor.totp = str_member(b, "totp", 16, NULL, ei);
    in->factor.recovery_code = str_member(b, "recovery_code", 64, NULL, ei);
    in->factor.webauthn = json_object_get(b, "webauthn");
    if (in->factor.webauthn && !json_is_object(in->factor.webauthn))
        dcms_err_field(ei, "webauthn", "must be a PublicKeyCredential (passkey assertion)");
    if ((in->factor.totp != NULL) + (in->factor.recovery_code != NULL) +
            (in->factor.webauthn != NULL) >
        1)
        dcms_err_field(ei, in->factor.webauthn ? "webauthn" : "recovery_code",
                       "give one second factor only");
    if (json_object_get(b, "mfa_ticket") && !iam_factor_given(&in->factor, NULL) && !ei->code)
        dcms_err_field(ei, "",
                       "a second factor (totp, recovery_code or webauthn) is required with "
                       "mfa_ticket");
    return ei->code;
}

enum dcms_err iam_str_from_json(const json_t *b, const char *key, size_t max, bool required,
                                const char **out, struct dcms_errinfo *ei)
{
    *out = b ? str_member(b, key, max, NULL, ei) : NULL;
    if (required && !json_object_get(b, key))
        dcms_err_field(ei, key, "is required");
    return ei->code;
}

enum dcms_err iam_list_check(const struct iam_list_in *in, struct dcms_errinfo *ei)
{
    if (in->kind && strcmp(in->kind, "user") && strcmp(in->kind, "organization") &&
        strcmp(in->kind, "service"))
        dcms_err_field(ei, "kind", "must be organization, user or service");
    if (in->status && strcmp(in->status, "pending_verification") && strcmp(in->status, "active") &&
        strcmp(in->status, "suspended"))
        dcms_err_field(ei, "status", "must be pending_verification, active or suspended");
    if (in->cursor && !dcms_uuid_valid(in->cursor))
        dcms_err_field(ei, "cursor", "must be the next_cursor of the previous page");
    return ei->code;
}

enum dcms_err iam_apikey_from_json(const json_t *b, struct iam_apikey_in *in,
                                   struct dcms_errinfo *ei)
{
    memset(in, 0, sizeof(*in));
    in->name = required_str(b, "name", 255, ei);
    if (in->name && !in->name[0])
        dcms_err_field(ei, "name", "must not be empty");
    in->expires_at = required_str(b, "expires_at", 64, ei);
    in->identity_id = str_member(b, "identity_id", 64, NULL, ei);
    json_t *perms = json_object_get(b, "permissions");
    if (!json_is_array(perms) || json_array_size(perms) == 0 ||
        json_array_size(perms) > IAM_APIKEY_MAX_PERMS) {
        dcms_err_field(ei, "permissions", "must be an array of 1 to %d actions",
                       IAM_APIKEY_MAX_PERMS);
        return ei->code;
    }
    size_t i;
    json_t *p;
    json_array_foreach(perms, i, p)
    {
        if (!json_is_string(p) || json_string_length(p) > 64) {
            char path[40];
            snprintf(path, sizeof(path), "permissions[%zu]", i);
            dcms_err_field(ei, path, "must be a string of at most 64 characters");
        } else {
            in->perms[in->nperms++] = json_string_value(p);
        }
    }
    return ei->code;
}

enum dcms_err iam_signkey_from_json(const json_t *b, struct iam_signkey_in *in,
                                    struct dcms_errinfo *ei)
{
    static const char *const keys[] = {"public_key", "challenge_id", "signature", "name"};
    const char *v[4] = {NULL};
    unsigned invalid = 0;
    for (size_t i = 0; i < 4; i++) {
        json_t *m = json_object_get(b, keys[i]);
        if (!m)
            continue;
        if (!json_is_string(m) || json_string_length(m) > 200 ||
            strlen(json_string_value(m)) != json_string_length(m)) {
            dcms_err_field(ei, keys[i], "must be a string of at most %d characters", 200);
            invalid |= 1u << i;
        } else {
            v[i] = json_string_value(m);
        }
    }
    *in = (struct iam_signkey_in){v[0], v[1], v[2], v[3], invalid};
    return ei->code;
}
