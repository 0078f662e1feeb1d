/*
 * The attestation step of the enclave service: ask the workload for a
 * document bound to a fresh nonce, verify it with the attestation module
 * (dcms/attest.h) against what this enclave must show, and say what the
 * audit log keeps of it. No store, no state change: enclaves.c settles the
 * verdict.
 */
#include <sodium.h>

#include "dcms/app.h"
#include "dcms/clock.h"
#include "dcms/crypto.h"
#include "dcms/json.h"
#include "enclaves/enclaves_int.h"

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

static struct dcms_attest_verifier *verifier_of(struct dcms_enclaves *en,
                                                const struct enclave_row *r)
{
    bool local = strcmp(r->v[C_BACKEND], "local") == 0;
    return en->app->attest ? (local ? en->app->attest->local : en->app->attest->aws) : NULL;
}

/*
 * The enclave's expectations applied to one document: the chain to the
 * root of its backend (local dev CA or AWS), the signature, the nonce,
 * freshness, PCR0 (the image measured at creation, all zeros in debug
 * mode), debug mode only when the security policy says so (never with
 * `refuse_debug`), and PCR8 among the allowed signers when the policy
 * lists any. The one verifier of the enclave service and its sessions.
 */
enum dcms_err enclave_attest_check(struct dcms_enclaves *en, const struct enclave_row *r,
                                   const struct enclave_config *cfg, const unsigned char *doc,
                                   size_t doc_len, const unsigned char *nonce, size_t nonce_len,
                                   bool refuse_debug, struct dcms_attest_report *rep,
                                   struct enclave_verdict *v, struct dcms_errinfo *ei)
{
    struct dcms_attest_verifier *verifier = verifier_of(en, r);
    if (!verifier) {
        snprintf(v->reason, sizeof(v->reason), "no attestation verifier for the %s backend",
                 r->v[C_BACKEND]);
        return DCMS_OK;
    }
    struct dcms_attest_policy pol;
    dcms_attest_policy_init(&pol);
    pol.nonce = nonce;
    pol.nonce_len = nonce_len;
    pol.allow_debug = cfg->sec.debug_mode && !refuse_debug;
    unsigned char pcr0[DCMS_ATTEST_PCR_MAX_LEN];
    size_t pcr0_len = 0;
    if (!hex_decode(r->v[C_PCR0], pcr0, sizeof(pcr0), &pcr0_len) ||
        dcms_attest_policy_expect_pcr(&pol, 0, pcr0, pcr0_len)) {
        snprintf(v->reason, sizeof(v->reason), "the expected PCR0 is unreadable");
        return DCMS_OK;
    }
    enum dcms_err e = dcms_attest_verify(verifier, doc, doc_len, &pol, rep);
    if (e)
        return dcms_err_set(ei, e, "cannot verify the attestation document");
    v->report_valid_syntax = true;
    if (!rep->valid) {
        const char *why = "";
        for (size_t i = 0; i < rep->nchecks && !*why; i++)
            if (!rep->checks[i].ok)
                why = rep->checks[i].reason;
        snprintf(v->reason, sizeof(v->reason), "%s: %s", dcms_attest_failure_code(rep->failure),
                 why);
    } else if (cfg->sec.nsigners) {
        char pcr8[2 * DCMS_ATTEST_PCR_MAX_LEN + 1] = "";
        if (rep->doc && (rep->doc->pcr_mask & (1u << 8)) &&
            rep->doc->pcrs[8].len <= DCMS_ATTEST_PCR_MAX_LEN)
            dcms_hex_encode(pcr8, rep->doc->pcrs[8].ptr, rep->doc->pcrs[8].len);
        bool ok = false;
        for (size_t i = 0; i < cfg->sec.nsigners && !ok; i++)
            ok = strcmp(cfg->sec.signers[i], pcr8) == 0;
        if (ok)
            v->verified = true;
        else
            snprintf(v->reason, sizeof(v->reason),
                     "signer: PCR8 %.16s... is not among the allowed signers",
                     *pcr8 ? pcr8 : "(absent)");
    } else {
        v->verified = true;
    }
    return DCMS_OK;
}

/*
 * Asks the workload for a document bound to a fresh 32-byte nonce and
 * verifies it against the enclave's expectations (enclave_attest_check).
 * The nonce is used once and wiped.
 */
enum dcms_err enclave_attest_now(struct dcms_enclaves *en, const struct enclave_row *r,
                                 struct enclave_verdict *v, struct dcms_errinfo *ei)
{
    memset(v, 0, sizeof(*v));
    /* The channel belongs to an open session: no verdict, nothing changes. */
    if (enclave_session_busy(en, r->v[C_ID]))
        return dcms_err_set(ei, DCMS_ERR_CONFLICT,
                            "the enclave's channel is in use by a session (a training job); "
                            "attest it after the session");
    struct enclave_config cfg;
    bool cfg_ok = enclave_config_stored(r->v[C_CONFIG], &cfg);
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
    if (!cfg_ok) {
        snprintf(v->reason, sizeof(v->reason), "the stored configuration is unreadable");
    } else if (!verifier_of(en, r)) {
        snprintf(v->reason, sizeof(v->reason), "no attestation verifier for the %s backend",
                 r->v[C_BACKEND]);
    } else if (!r->v[C_REF]) {
        snprintf(v->reason, sizeof(v->reason), "the workload is not running");
    } else if (en->backend->attest(en->backend, r->v[C_REF], nonce, sizeof(nonce), &doc, &doc_len,
                                   &bei)) {
        snprintf(v->reason, sizeof(v->reason), "no attestation document: %.200s", bei.message);
    } else if (!(e = enclave_attest_check(en, r, &cfg, doc, doc_len, nonce, sizeof(nonce), false,
                                          &rep, v, ei)) &&
               v->report_valid_syntax) {
        json_decref(report);
        report = dcms_attest_report_to_json(&rep);
    }
    dcms_attest_report_release(&rep);
    /* The raw document travels with the verdict so the parties can verify it themselves
     * (settle_attestation stores it apart from the report; see enclaves_evidence.c). */
    char *doc64 = doc && !e ? malloc(dcms_b64_encoded_len(doc_len)) : NULL;
    if (doc64)
        dcms_b64_encode(doc64, doc, doc_len);
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
    if (v->attestation && doc64)
        json_object_set_new(v->attestation, "document", json_string(doc64));
    free(doc64);
    if (!v->attestation)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    return DCMS_OK;
}

/* What the audit log keeps of an attestation (not the certificates). */
json_t *enclave_attest_audit_details(const struct enclave_verdict *v, const struct enclave_row *r)
{
    json_t *rep = json_object_get(v->attestation, "report");
    json_t *doc = json_object_get(rep, "document");
    json_t *pcrs = json_object_get(doc, "pcrs");
    return json_pack("{s:b, s:o, s:O, s:O, s:o, s:s}", "verified", v->verified, "reason",
                     v->verified ? json_null() : json_string(v->reason), "failure",
                     json_object_get(rep, "failure") ? json_object_get(rep, "failure")
                                                     : json_null(),
                     "nonce", json_object_get(v->attestation, "nonce"), "pcr0",
                     enclave_str_or_null(json_string_value(json_object_get(pcrs, "0"))),
                     "expected_pcr0", r->v[C_PCR0] ? r->v[C_PCR0] : "");
}
