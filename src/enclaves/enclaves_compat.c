/*
 * May this enclave serve that contract? The contract's encryption level
 * names a set of rules (include/dcms/security_level.h, one table shared
 * with key release) and its terms say whether the enclave must be
 * network-isolated; each rule is checked against the enclave's
 * configuration, state and last verified attestation, and explained
 * requirement by requirement.
 */
#include "dcms/app.h"
#include "dcms/clock.h"
#include "dcms/contracts.h"
#include "dcms/store.h"
#include "enclaves/enclaves_int.h"

/* Appends {name, required, actual, ok, reason}; `required`/`actual` are stolen. */
static bool add(json_t *reqs, const char *name, json_t *required, json_t *actual, bool ok,
                const char *reason)
{
    json_t *o = json_pack("{s:s, s:o, s:o, s:b, s:s}", "name", name, "required", required, "actual",
                          actual, "ok", ok, "reason", reason);
    return o && json_array_append_new(reqs, o) == 0;
}

json_t *enclave_compat_evaluate(const struct dcms_contract_security *cs, const char *status,
                                const struct enclave_config *cfg, const char *attested_at,
                                bool attestation_verified, const char *bound_contract,
                                bool *compatible)
{
    const struct dcms_security_rules *r = dcms_security_rules(cs->level);
    json_t *reqs = json_array();
    if (!r || !reqs) {
        json_decref(reqs);
        return NULL;
    }
    const struct enclave_netpol *net = &cfg->net;
    const struct enclave_secpol *sec = &cfg->sec;
    char why[256];
    bool all = true, ok = true;
#define ADD(name, req, act, cond, ...)                                                             \
    do {                                                                                           \
        ok = (cond);                                                                               \
        snprintf(why, sizeof(why), __VA_ARGS__);                                                   \
        all = all && ok;                                                                           \
        if (!add(reqs, name, req, act, ok, why))                                                   \
            goto oom;                                                                              \
    } while (0)

    /* Only an Active contract may be served: the contract drives its enclaves. */
    bool active = strcmp(cs->status, "active") == 0;
    ADD("contract_status", json_string("active"), json_string(cs->status), active,
        active ? "the contract is active"
               : "the contract is %s: only an active contract may be served",
        cs->status);
    if (status) {
        bool running = strcmp(status, "running") == 0;
        ADD("enclave_status", json_string("running"), json_string(status), running,
            running ? "the enclave is running" : "the enclave is %s", status);
    }
    ADD("encryption_required", json_boolean(r->encryption_required),
        json_boolean(net->encryption_required), !r->encryption_required || net->encryption_required,
        "%s requires encryption on every connection: the network policy %s it", r->name,
        net->encryption_required ? "requires" : "does not require");
    ADD("min_tls_version", json_string(r->min_tls == 13 ? "1.3" : "1.2"),
        json_string(net->min_tls == 13 ? "1.3" : "1.2"), net->min_tls >= r->min_tls,
        "%s needs TLS %s or later; the network policy allows TLS %s", r->name,
        r->min_tls == 13 ? "1.3" : "1.2", net->min_tls == 13 ? "1.3" : "1.2");
    ADD("debug_mode", r->debug_allowed ? json_string("any") : json_false(),
        json_boolean(sec->debug_mode), r->debug_allowed || !sec->debug_mode, "%s",
        sec->debug_mode && !r->debug_allowed
            ? "a debug-mode enclave (all-zero PCRs, memory readable by its host) may not "
              "serve it"
            : "the enclave is not in debug mode");
    ADD("allowed_signers", json_integer(r->signers_required ? 1 : 0),
        json_integer((json_int_t)sec->nsigners), !r->signers_required || sec->nsigners > 0,
        "%s %s the image signers to be pinned (PCR8); the policy lists %zu", r->name,
        r->signers_required ? "requires" : "does not require", sec->nsigners);
    ADD("secure_boot", r->measured_boot ? json_true() : json_string("any"),
        json_boolean(sec->secure_boot), !r->measured_boot || sec->secure_boot,
        "%s %s secure boot; the policy %s it", r->name,
        r->measured_boot ? "requires" : "does not require",
        sec->secure_boot ? "requires" : "does not require");
    ADD("measured_boot", r->measured_boot ? json_true() : json_string("any"),
        json_boolean(sec->measured_boot), !r->measured_boot || sec->measured_boot,
        "%s %s measured boot; the policy %s it", r->name,
        r->measured_boot ? "requires" : "does not require",
        sec->measured_boot ? "requires" : "does not require");
    ADD("egress", r->egress_allowed ? json_string("any") : json_integer(0),
        json_integer((json_int_t)net->negress), r->egress_allowed || net->negress == 0,
        "%s %s egress; the policy has %zu egress rule%s", r->name,
        r->egress_allowed ? "allows" : "allows no", net->negress, net->negress == 1 ? "" : "s");
    size_t nrules = net->ningress + net->negress;
    ADD("network_isolation", cs->network_isolation ? json_integer(0) : json_string("any"),
        json_integer((json_int_t)nrules), !cs->network_isolation || nrules == 0,
        "the contract %s network isolation; the policy has %zu ingress and %zu egress rules",
        cs->network_isolation ? "requires" : "does not require", net->ningress, net->negress);
    int64_t at_us = 0, age_s = -1;
    if (attested_at && attestation_verified && !dcms_time_parse(attested_at, &at_us))
        age_s = (dcms_clock_now_us() - at_us) / 1000000;
    if (status)
        ADD("attestation_freshness", json_integer((json_int_t)r->attest_max_age_s),
            age_s >= 0 ? json_integer((json_int_t)age_s) : json_null(),
            age_s >= 0 && age_s <= (int64_t)r->attest_max_age_s,
            age_s < 0 ? "%s needs a verified attestation at most %u s old; the enclave has none"
                      : "%s needs a verified attestation at most %u s old; the last is %lld s old",
            r->name, (unsigned)r->attest_max_age_s, (long long)age_s);
    bool bound = bound_contract && strcmp(bound_contract, cs->id) == 0;
    ADD("dedicated", r->dedicated ? json_string(cs->id) : json_string("any"),
        bound_contract ? json_string(bound_contract) : json_null(), !r->dedicated || bound,
        "%s %s an enclave bound to this contract alone; the enclave is %s", r->name,
        r->dedicated ? "requires" : "does not require",
        bound            ? "bound to it"
        : bound_contract ? "bound to another contract"
                         : "not bound");
#undef ADD
    *compatible = all;
    return reqs;
oom:
    json_decref(reqs);
    return NULL;
}

enum dcms_err enclave_compatibility(const struct enclave_call *c, const char *id,
                                    const char *contract_id, json_t **out)
{
    struct dcms_errinfo *ei = c->ei;
    /* First: may the caller see the enclave at all (404 otherwise)? */
    struct enclave_rec enc;
    enum dcms_err e = enclave_get(c, id, &enc);
    if (e)
        return e;
    enclave_rec_release(&enc);
    if (!contract_id)
        return dcms_err_field(ei, "contract_id", "is required");
    struct dcms_contract_security cs;
    if ((e = enclave_contract_read(c, contract_id, &cs)) == DCMS_ERR_NOT_FOUND)
        return dcms_err_field(ei, "contract_id", "must be the id of a contract you may read");
    if (e)
        return e;

    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    struct enclave_row r;
    if ((e = dcms_store_begin(c->en->app->store, DCMS_TX_READ, &tx, ei)))
        return e;
    e = enclave_store_load(tx, id, &rows, &r, ei);
    dcms_store_rollback(tx);
    if (e)
        return e;
    struct enclave_config cfg;
    struct dcms_errinfo pei;
    dcms_errinfo_init(&pei, NULL);
    json_t *cj = enclave_json_text(r.v[C_CONFIG]);
    enclave_config_from_json(cj, "", NULL, &cfg, &pei);
    json_decref(cj);
    json_t *att = enclave_json_text(r.v[C_ATTEST]);
    bool verified = json_is_true(json_object_get(att, "verified"));
    json_decref(att);
    bool compatible = false;
    json_t *reqs = pei.code ? NULL
                            : enclave_compat_evaluate(&cs, r.v[C_STATUS], &cfg, r.v[C_ATTESTED],
                                                      verified, r.v[C_CONTRACT], &compatible);
    dcms_store_rows_free(rows);
    if (!reqs)
        return dcms_err_set(ei, pei.code ? DCMS_ERR_INTERNAL : DCMS_ERR_NOMEM, NULL);
    *out = json_pack("{s:s, s:s, s:s, s:b, s:b, s:o}", "enclave_id", id, "contract_id", cs.id,
                     "encryption_level", dcms_security_rules(cs.level)->name, "network_isolation",
                     cs.network_isolation, "compatible", compatible, "requirements", reqs);
    return *out ? DCMS_OK : dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
}

enum dcms_err enclave_compat_gate(const struct enclave_call *c, const char *enclave_id,
                                  const struct dcms_contract_security *cs,
                                  const struct enclave_config *cfg)
{
    bool compatible = false;
    json_t *reqs = enclave_compat_evaluate(cs, NULL, cfg, NULL, false, cs->id, &compatible);
    if (!reqs)
        return dcms_err_set(c->ei, DCMS_ERR_NOMEM, NULL);
    if (compatible) {
        json_decref(reqs);
        return DCMS_OK;
    }
    size_t i;
    json_t *q;
    json_array_foreach(reqs, i, q)
    {
        if (!json_is_true(json_object_get(q, "ok")))
            dcms_err_field(c->ei, "contract_id", "%s: %s",
                           json_string_value(json_object_get(q, "name")),
                           json_string_value(json_object_get(q, "reason")));
    }
    dcms_err_set(c->ei, DCMS_ERR_VALIDATION,
                 "the enclave does not satisfy contract %s (see error.compatibility)", cs->id);
    json_t *report = json_pack(
        "{s:o, s:s, s:s, s:b, s:b, s:o}", "enclave_id", enclave_str_or_null(enclave_id),
        "contract_id", cs->id, "encryption_level", dcms_security_rules(cs->level)->name,
        "network_isolation", cs->network_isolation, "compatible", false, "requirements", reqs);
    if (c->refusal && report) {
        json_decref(*c->refusal);
        *c->refusal = report;
    } else {
        json_decref(report);
    }
    return DCMS_ERR_VALIDATION;
}
