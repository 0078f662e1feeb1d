/*
 * Request bodies of the membership routes into struct iam_member_in
 * (iam_org.h): every problem at once, under its JSON path. The handler has
 * already refused members outside the allowed list.
 */
#include <stdio.h>
#include <string.h>

#include "iam/iam_org.h"

/* An optional string of 1..max bytes without NUL; NULL when absent. */
static const char *opt_str(const json_t *o, const char *key, size_t max, struct dcms_errinfo *ei)
{
    json_t *v = json_object_get(o, key);
    if (!v)
        return NULL;
    if (!json_is_string(v) || json_string_length(v) < 1 || json_string_length(v) > max ||
        strlen(json_string_value(v)) != json_string_length(v)) {
        dcms_err_field(ei, key, "must be a string of 1 to %zu characters", max);
        return NULL;
    }
    return json_string_value(v);
}

enum dcms_err iam_member_put_from_json(const json_t *b, struct iam_member_in *in,
                                       struct dcms_errinfo *ei)
{
    memset(in, 0, sizeof(*in));
    in->reason = opt_str(b, "reason", 1000, ei);
    in->identity_id = opt_str(b, "identity_id", 64, ei);
    if (!json_object_get(b, "identity_id"))
        dcms_err_field(ei, "identity_id", "is required");
    json_t *roles = json_object_get(b, "roles");
    if (!json_is_array(roles))
        dcms_err_field(ei, "roles", roles ? "must be an array of role names" : "is required");
    size_t i;
    json_t *r;
    json_array_foreach(roles, i, r)
    {
        unsigned bit = json_is_string(r) ? dcms_iam_role_parse(json_string_value(r)) : 0;
        if (!bit || (bit & ~(unsigned)IAM_ORG_ROLES)) {
            char path[40];
            snprintf(path, sizeof(path), "roles[%zu]", i);
            dcms_err_field(ei, path, "a membership grants provider, consumer or org_admin");
        }
        in->roles |= bit & IAM_ORG_ROLES;
    }
    return ei->code;
}
