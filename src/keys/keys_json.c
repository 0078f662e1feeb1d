/* JSON codecs of the keys module: the status shown by the admin route and the command line. */
#include "keys/keys_int.h"

json_t *keys_status_to_json(const struct dcms_keys_status *st)
{
    json_t *vs = json_array();
    for (size_t i = 0; vs && i < st->n_versions; i++) {
        const struct dcms_kek_version *v = &st->versions[i];
        json_t *item = json_pack(
            "{s:I, s:s, s:s, s:s?, s:I}", "version", (json_int_t)v->version, "state",
            dcms_kek_state_name(v->state), "created_at", v->created_at, "retired_at",
            v->retired_at[0] ? v->retired_at : NULL, "data_keys", (json_int_t)v->dek_count);
        if (!item || json_array_append_new(vs, item)) {
            json_decref(vs);
            return NULL;
        }
    }
    return vs ? json_pack("{s:s, s:I, s:I, s:I, s:o}", "backend", st->backend, "active_version",
                          (json_int_t)st->active_version, "data_keys", (json_int_t)st->deks_total,
                          "pending_rewrap", (json_int_t)st->deks_pending, "versions", vs)
              : NULL;
}
