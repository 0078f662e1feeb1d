/* The budget view's encoder: one privacy run as GET /contracts/{id}/privacy shows it. */
#include "dcms/store.h"
#include "privacy/privacy_int.h"

static json_t *real_or_null(const char *s)
{
    double d;
    return pv_real_parse(s, &d) ? json_real(d) : json_null();
}

static json_t *text_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

json_t *pv_run_json(const struct dcms_store_rows *rows, size_t i)
{
#define T(c) dcms_store_rows_text(rows, i, c)
    return json_pack("{s:s, s:s, s:o, s:o, s:I, s:o, s:o, s:o, s:o, s:o}", "run_id", T(0), "state",
                     T(1), "q", real_or_null(T(2)), "sigma", real_or_null(T(3)), "steps",
                     (json_int_t)dcms_store_rows_int(rows, i, 4), "delta", real_or_null(T(5)),
                     "epsilon", real_or_null(T(6)), "reserved_at", text_or_null(T(7)), "charged_at",
                     text_or_null(T(8)), "released_at", text_or_null(T(9)));
#undef T
}
