/* jansson wrappers: strict parsing with positioned errors, compact dumping. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dcms/json.h"

enum dcms_err dcms_json_parse(struct dcms_str text, size_t flags, json_t **out,
                              struct dcms_errinfo *ei)
{
    json_error_t jerr;
    *out = NULL;
    if (text.len == 0)
        return dcms_err_set(ei, DCMS_ERR_MALFORMED_JSON, "request body is empty, expected JSON");
    json_t *v =
        json_loadb(text.ptr, text.len, flags | JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!v) {
        if (json_error_code(&jerr) == json_error_out_of_memory)
            return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
        return dcms_err_set(ei, DCMS_ERR_MALFORMED_JSON,
                            "malformed JSON at line %d, column %d (byte %d): %s", jerr.line,
                            jerr.column, jerr.position, jerr.text);
    }
    *out = v;
    return DCMS_OK;
}

char *dcms_json_dump(const json_t *v, size_t *len_out)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (s && len_out)
        *len_out = strlen(s);
    return s;
}

void dcms_json_decref_cb(void *v)
{
    json_decref((json_t *)v);
}

bool dcms_json_only_members(const json_t *obj, const char *prefix, const char *const *allowed,
                            struct dcms_errinfo *ei)
{
    const char *key;
    json_t *v;
    bool refused = false;
    json_object_foreach((json_t *)obj, key, v)
    {
        bool known = false;
        for (const char *const *a = allowed; *a && !known; a++)
            known = strcmp(*a, key) == 0;
        if (known)
            continue;
        char path[512];
        snprintf(path, sizeof(path), "%s%.200s", prefix ? prefix : "", key);
        dcms_err_field(ei, path, "is not a known field");
        refused = true;
    }
    return refused;
}
