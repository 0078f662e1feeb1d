/*
 * The process-wide context handed to every handler: configuration, store and
 * metrics. Built once by main.c and read-only afterwards.
 */
#ifndef DCMS_APP_H
#define DCMS_APP_H

#include <stdint.h>

struct dcms_config;
struct dcms_store;
struct dcms_metrics;
struct dcms_audit;
struct dcms_attest_ctx;
struct dcms_iam;
struct dcms_contracts;
struct dcms_enclaves;
struct dcms_keys;
struct dcms_datasets;
struct dcms_training;
struct dcms_nodes;

struct dcms_app {
    const struct dcms_config *cfg;
    struct dcms_store *store;
    struct dcms_metrics *metrics;
    struct dcms_audit *audit;
    struct dcms_attest_ctx *attest; /* attestation verifiers and the local module */
    struct dcms_iam *iam;
    struct dcms_contracts *contracts; /* src/contracts */
    struct dcms_enclaves *enclaves;   /* src/enclaves */
    struct dcms_keys *keys;           /* src/keys: data keys under the keyring */
    struct dcms_datasets *datasets;   /* src/datasets: the retention job */
    struct dcms_training *training;   /* src/training: jobs and their workers */
    struct dcms_nodes *nodes;         /* src/nodes: identity, heartbeat, the jobs lease */
    int64_t started_us;
};

#endif
