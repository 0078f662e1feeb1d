/*
 * Enclaves the system creates and retires for another service: the training
 * service asks for an enclave running the trainer image for a contract, and
 * retires it when the job ends. The same steps as POST /api/v1/enclaves
 * (measure and pin the image, the compatibility gate, insert, start and
 * attest) with the system as the actor and the contract's provider as the
 * enclave's provider; the terminate is enclave_act's, as the system.
 */
#include <stdio.h>
#include <string.h>

#include "dcms/app.h"
#include "dcms/clock.h"
#include "dcms/contracts.h"
#include "dcms/json.h"
#include "dcms/log.h"
#include "dcms/store.h"
#include "enclaves/enclaves_int.h"

#define PROVISION_CPU_CORES 1
#define PROVISION_MEMORY_MB 512
#define PROVISION_STORAGE_GB 1

static void default_config(const struct dcms_enclaves *en, const char *image,
                           struct enclave_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    snprintf(cfg->image, sizeof(cfg->image), "%s", image);
    cfg->cpu_cores = PROVISION_CPU_CORES;
    cfg->memory_mb = PROVISION_MEMORY_MB;
    if (en->limits.max_memory_mb && cfg->memory_mb > en->limits.max_memory_mb)
        cfg->memory_mb = en->limits.max_memory_mb;
    cfg->storage_gb = PROVISION_STORAGE_GB;
    enclave_netpol_default(&cfg->net);
    enclave_secpol_default(&cfg->sec);
}

enum dcms_err dcms_enclaves_provision(struct dcms_enclaves *en, const char *contract_id,
                                      const char *image, const char *cause, const char *request_id,
                                      char id_out[37], struct dcms_errinfo *ei)
{
    id_out[0] = '\0';
    if (!en)
        return dcms_err_set(ei, DCMS_ERR_UNAVAILABLE, "no enclave service runs on this node");
    struct enclave_call c = {.en = en, .p = NULL, .request_id = request_id, .ei = ei};
    struct dcms_contract_security cs;
    enum dcms_err e = dcms_contracts_security_of(en->app, contract_id, &cs, ei);
    if (e)
        return e;
    if (strcmp(cs.status, "active") != 0)
        return dcms_err_set(ei, DCMS_ERR_CONFLICT, "the contract is %s, not active", cs.status);
    struct enclave_config cfg;
    default_config(en, image, &cfg);
    char sha_hex[2 * DCMS_ATTEST_SHA384_LEN + 1] = "", pcr0_hex[2 * DCMS_ATTEST_SHA384_LEN + 1];
    if (!enclave_image_name_ok(image) || !enclave_image_measure(en, image, sha_hex))
        return dcms_err_set(ei, DCMS_ERR_UNAVAILABLE,
                            "no workload image %s (see DCMS_ENCLAVE_IMAGES_DIR)", image);
    if ((e = enclave_compat_gate(&c, NULL, &cs, &cfg)))
        return e;
    json_t *cj = enclave_config_to_json(&cfg);
    char *ctext = cj ? dcms_json_dump(cj, NULL) : NULL;
    json_decref(cj);
    if (!ctext)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    char id[DCMS_UUID_STRLEN], now[DCMS_TIME_STRLEN], name[128];
    dcms_uuid_v7(id);
    dcms_time_format(dcms_clock_now_us(), now);
    snprintf(name, sizeof(name), "%s for %s", image, cause ? cause : contract_id);
    struct dcms_store_tx *tx = NULL;
    struct enclave_rec rec = {0};
    if ((e = dcms_store_begin(en->app->store, DCMS_TX_WRITE, &tx, ei)))
        goto out;
    if ((e = enclave_store_pin_image(tx, image, sha_hex, now, "system", pcr0_hex, sizeof(pcr0_hex),
                                     ei)))
        goto out;
    struct enclave_row nr = {0};
    nr.v[C_ID] = id;
    nr.v[C_NAME] = name;
    nr.v[C_PROVIDER] = cs.provider_id;
    nr.v[C_CONTRACT] = cs.id;
    nr.v[C_CONSUMER] = cs.consumer_id;
    nr.v[C_BACKEND] = en->backend->name;
    nr.v[C_CONFIG] = ctext;
    nr.v[C_IMAGE_SHA] = sha_hex;
    nr.v[C_PCR0] = pcr0_hex;
    nr.v[C_OWNER] = dcms_nodes_self(en->app->nodes);
    if ((e = enclave_store_insert(tx, &nr, now, ei)))
        goto out;
    struct dcms_audit_who who = {NULL, NULL, request_id};
    e = dcms_audit_change(en->app->audit, tx, &who, "enclave", "enclave.create", id,
                          json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:b, s:s}", "name", name,
                                    "backend", en->backend->name, "contract_id", cs.id, "image",
                                    image, "image_sha384", sha_hex, "expected_pcr0", pcr0_hex,
                                    "image_changed", strcmp(pcr0_hex, sha_hex) != 0, "cause",
                                    cause ? cause : ""),
                          ei);
    e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, ei);
    tx = NULL;
    if (e)
        goto out;
    memcpy(id_out, id, DCMS_UUID_STRLEN);
    pthread_mutex_t *mu = enclave_lock_of(en, id);
    pthread_mutex_lock(mu);
    e = enclave_start_and_attest(&c, id, &rec);
    pthread_mutex_unlock(mu);
    if (!e && (!rec.r.v[C_STATUS] || strcmp(rec.r.v[C_STATUS], "running") != 0))
        e = dcms_err_set(ei, DCMS_ERR_UNAVAILABLE, "the enclave did not start: %s",
                         rec.r.v[C_REASON] ? rec.r.v[C_REASON] : "no reason given");
out:
    enclave_rec_release(&rec);
    dcms_store_rollback(tx);
    free(ctext);
    return e;
}

enum dcms_err dcms_enclaves_retire(struct dcms_enclaves *en, const char *id, const char *reason,
                                   const char *request_id, struct dcms_errinfo *ei)
{
    if (!en || !id || !*id)
        return DCMS_OK;
    struct dcms_errinfo lei;
    dcms_errinfo_init(&lei, NULL);
    struct enclave_call c = {.en = en, .p = NULL, .request_id = request_id, .ei = &lei};
    struct enclave_rec rec = {0};
    enum dcms_err e = enclave_act(&c, id, ENCLAVE_EV_TERMINATE, reason, &rec);
    enclave_rec_release(&rec);
    /* Already terminated (a contract's end got there first) or gone: nothing left to stop. */
    if (e == DCMS_ERR_CONFLICT || e == DCMS_ERR_NOT_FOUND)
        return DCMS_OK;
    return e ? dcms_err_set(ei, e, "%s", lei.message) : DCMS_OK;
}
