/*
 * Evidence for the parties: the last attestation document of each enclave
 * (the raw COSE_Sign1 its workload returned, kept with the verdict in the
 * transaction that recorded the attestation), readable by whoever may read
 * the enclave, and the attestations of every enclave bound to a contract
 * for that contract's evidence bundle. The queries of enclave_attestations
 * live here with the code that reads them.
 */
#include "dcms/app.h"
#include "dcms/attest.h"
#include "dcms/json.h"
#include "dcms/store.h"
#include "enclaves/enclaves_int.h"

/* Enclaves one contract's bundle names at most. */
#define EVIDENCE_MAX_ENCLAVES 256

static struct dcms_query q_put =
    DCMS_QUERY("enclave_attestation_put",
               "INSERT INTO enclave_attestations (enclave_id, taken_at, document, attestation) "
               "VALUES ($1, $2, $3, $4) ON CONFLICT (enclave_id) DO UPDATE SET taken_at = $2, "
               "document = $3, attestation = $4");
static struct dcms_query q_get =
    DCMS_QUERY("enclave_attestation_get", "SELECT taken_at, document, attestation "
                                          "FROM enclave_attestations WHERE enclave_id = $1");
static struct dcms_query q_of_contract = DCMS_QUERY(
    "enclave_attestations_of_contract",
    "SELECT e.id, e.contract_id, e.backend, e.status, a.taken_at, a.document, a.attestation "
    "FROM enclaves e LEFT JOIN enclave_attestations a ON a.enclave_id = e.id "
    "WHERE e.contract_id = $1 ORDER BY e.created_at, e.id LIMIT $2");

enum dcms_err enclave_store_put_attestation(struct dcms_store_tx *tx, const char *id,
                                            const char *now, const char *document,
                                            const char *attestation, struct dcms_errinfo *ei)
{
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(id), DCMS_VAL_TEXT(now), DCMS_VAL_TEXT(document),
                                 DCMS_VAL_TEXT(attestation)};
    return dcms_store_exec(tx, &q_put, p, 4, NULL, NULL, ei);
}

/*
 * {enclave_id, contract_id, backend, status, taken_at, document, verified,
 * reason, verified_at, nonce, verifier, report, root_pem}: the stored
 * verdict with the document and, for a local enclave, the dev root it
 * chains to (compare its fingerprint out of band before trusting it).
 */
static json_t *evidence_json(struct dcms_enclaves *en, const char *id, const char *contract_id,
                             const char *backend, const char *status, const char *taken_at,
                             const char *document, const char *attestation)
{
    json_t *att = attestation ? json_loads(attestation, 0, NULL) : NULL;
    json_t *o = json_is_object(att) ? att : json_object();
    if (o != att)
        json_decref(att);
    if (!o)
        return NULL;
    size_t n = 0;
    const char *root = NULL;
    if (strcmp(backend, "local") == 0 && en->app->attest && en->app->attest->module)
        root = dcms_attest_local_root_pem(en->app->attest->module, &n);
    if (json_object_set_new(o, "enclave_id", json_string(id)) ||
        json_object_set_new(o, "contract_id", enclave_str_or_null(contract_id)) ||
        json_object_set_new(o, "backend", json_string(backend)) ||
        json_object_set_new(o, "status", json_string(status)) ||
        json_object_set_new(o, "taken_at", enclave_str_or_null(taken_at)) ||
        json_object_set_new(o, "document", enclave_str_or_null(document)) ||
        json_object_set_new(o, "root_pem", root ? json_stringn(root, n) : json_null())) {
        json_decref(o);
        return NULL;
    }
    return o;
}

enum dcms_err dcms_enclaves_attestation(struct dcms_enclaves *en, const struct dcms_principal *p,
                                        const char *client_ip, const char *request_id,
                                        const char *id, json_t **out, struct dcms_errinfo *ei)
{
    *out = NULL;
    struct enclave_call c = {en, p, client_ip, request_id, ei, NULL};
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL, *arows = NULL;
    struct enclave_row r;
    enum dcms_err e = dcms_store_begin(en->app->store, DCMS_TX_READ, &tx, ei);
    if (e)
        return e;
    if ((e = enclave_store_load(tx, id, &rows, &r, ei)) ||
        (e = enclave_authorize(&c, &r, "enclaves:read")) ||
        (e = dcms_store_exec(tx, &q_get, (struct dcms_store_val[]){DCMS_VAL_TEXT(r.v[C_ID])}, 1,
                             &arows, NULL, ei)))
        goto out;
    if (dcms_store_rows_count(arows) != 1) {
        e = dcms_err_set(ei, DCMS_ERR_NOT_FOUND, "the enclave has no attestation document yet");
        goto out;
    }
    *out = evidence_json(en, r.v[C_ID], r.v[C_CONTRACT], r.v[C_BACKEND], r.v[C_STATUS],
                         dcms_store_rows_text(arows, 0, 0), dcms_store_rows_text(arows, 0, 1),
                         dcms_store_rows_text(arows, 0, 2));
    if (!*out)
        e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
out:
    dcms_store_rows_free(rows);
    dcms_store_rows_free(arows);
    dcms_store_rollback(tx);
    return e;
}

enum dcms_err dcms_enclaves_of_contract(struct dcms_enclaves *en, const char *contract_id,
                                        json_t **out, struct dcms_errinfo *ei)
{
    *out = NULL;
    if (!en) { /* no enclave service in this process: no enclave can serve the contract here */
        *out = json_array();
        return *out ? DCMS_OK : dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    }
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_begin(en->app->store, DCMS_TX_READ, &tx, ei);
    if (e)
        return e;
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(contract_id), DCMS_VAL_INT(EVIDENCE_MAX_ENCLAVES)};
    e = dcms_store_exec(tx, &q_of_contract, p, 2, &rows, NULL, ei);
    dcms_store_rollback(tx);
    if (e)
        return e;
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < dcms_store_rows_count(rows); i++) {
#define T(col) dcms_store_rows_text(rows, i, col)
        json_t *o = evidence_json(en, T(0), T(1), T(2), T(3), T(4), T(5), T(6));
#undef T
        if (!o || json_array_append_new(arr, o)) {
            json_decref(arr);
            arr = NULL;
        }
    }
    dcms_store_rows_free(rows);
    if (!arr)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    *out = arr;
    return DCMS_OK;
}
