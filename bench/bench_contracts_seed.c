/*
 * bench_contracts_seed: fills a store with contracts for bench/bench-contracts.sh.
 *
 *     bench_contracts_seed STORE_URL PROVIDER_ID CONSUMER_ID COUNT [PARTY_SHARE_PERCENT]
 *
 * Inserts COUNT contracts straight through the store (1000 per
 * transaction), each with its canonical terms, its terms hash and its
 * first version row, as the service writes them. PARTY_SHARE_PERCENT
 * (default 2) of them are between PROVIDER_ID and CONSUMER_ID (the bench's
 * users); the rest are spread over 100 seeded identity pairs, so a party's
 * list is a realistic slice of a large table. Half the contracts are
 * active, half drafts. Prints "seeded=N last_party_contract=ID".
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "contracts/contracts_int.h"
#include "dcms/clock.h"
#include "dcms/crypto.h"
#include "dcms/jcs.h"
#include "dcms/store.h"
#include "dcms/uuid.h"

#define BATCH 1000
#define PAIRS 100

static struct dcms_query q_ident = DCMS_QUERY(
    "seed_identity", "INSERT INTO identities (id, kind, name, email, roles, status, verified_at, "
                     "verified_by, created_at, updated_at) VALUES ($1, 'organization', $2, NULL, "
                     "$3, 'active', $4, 'system', $4, $4)");
static struct dcms_query q_contract = DCMS_QUERY(
    "seed_contract",
    "INSERT INTO contracts (id, title, description, provider_id, consumer_id, status, terms, "
    "signatures, terms_hash, version, created_at, updated_at, terms_version, created_by, "
    "effective_from, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, '[]', $8, 1, $9, $9, 1, "
    "'system', $10, $11)");
static struct dcms_query q_version = DCMS_QUERY(
    "seed_version", "INSERT INTO contract_versions (contract_id, terms_version, terms_hash, "
                    "content, created_at, created_by) VALUES ($1, 1, $2, $3, $4, 'system')");

static int fail(const char *what, const struct dcms_errinfo *ei)
{
    fprintf(stderr, "bench_contracts_seed: %s: %s\n", what, ei->message);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: bench_contracts_seed STORE_URL PROVIDER_ID CONSUMER_ID COUNT "
                        "[PARTY_SHARE_PERCENT]\n");
        return 2;
    }
    long count = strtol(argv[4], NULL, 10);
    long share = argc > 5 ? strtol(argv[5], NULL, 10) : 2;
    if (count < 1 || count > 10000000 || share < 0 || share > 100 || dcms_crypto_init())
        return 2;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_store *s;
    struct dcms_store_opts so = {2, 60000};
    if (dcms_store_open(argv[1], &so, &s, &ei))
        return fail("open", &ei);

    char now[DCMS_TIME_STRLEN], from[DCMS_TIME_STRLEN], to[DCMS_TIME_STRLEN];
    int64_t now_us = dcms_clock_now_us();
    dcms_time_format(now_us, now);
    dcms_time_format(now_us - 86400LL * 1000000, from);
    dcms_time_format(now_us + 400LL * 86400 * 1000000, to);

    /* Other parties: PAIRS provider/consumer organizations. */
    char pairs[PAIRS][2][DCMS_UUID_STRLEN];
    struct dcms_store_tx *tx;
    if (dcms_store_begin(s, DCMS_TX_WRITE, &tx, &ei))
        return fail("begin", &ei);
    for (int i = 0; i < PAIRS; i++) {
        for (int side = 0; side < 2; side++) {
            dcms_uuid_v7(pairs[i][side]);
            char name[64];
            snprintf(name, sizeof(name), "seed %s %d", side ? "consumer" : "provider", i);
            if (dcms_store_exec(tx, &q_ident,
                                (struct dcms_store_val[]){
                                    DCMS_VAL_TEXT(pairs[i][side]), DCMS_VAL_TEXT(name),
                                    DCMS_VAL_TEXT(side ? "[\"consumer\"]" : "[\"provider\"]"),
                                    DCMS_VAL_TEXT(now)},
                                4, NULL, NULL, &ei)) {
                dcms_store_rollback(tx);
                return fail("identity", &ei);
            }
        }
    }
    if (dcms_store_commit(tx, &ei))
        return fail("commit", &ei);

    json_t *terms = json_pack(
        "{s:{s:[s], s:[s, s]}, s:{s:[s], s:[s], s:i, s:b}, s:{s:i, s:s}, "
        "s:{s:s, s:b, s:b, s:[]}, s:{s:[s], s:[s]}, s:{s:s, s:I, s:s}, s:s, s:s}",
        "data_access", "datasets", "s3://seed/records", "permissions", "train", "evaluate",
        "usage", "purposes", "benchmark", "allowed_model_types", "gradient_boosting",
        "max_training_runs", 10, "raw_data_export", 0, "retention", "days", 30, "deletion",
        "delete", "security", "encryption_level", "high", "network_isolation", 1, "audit_logging",
        1, "custom_policies", "compliance", "frameworks", "GDPR", "data_residency", "DE",
        "pricing", "model", "fixed", "amount", (json_int_t)150000, "currency", "EUR",
        "effective_from", from, "expires_at", to);
    struct dcms_buf tb;
    dcms_buf_init(&tb, 1 << 20);
    if (!terms || dcms_jcs_canonicalize(terms, &tb, &ei))
        return fail("terms", &ei);

    char last[DCMS_UUID_STRLEN] = "";
    long done = 0;
    unsigned rnd = 12345;
    while (done < count) {
        if (dcms_store_begin(s, DCMS_TX_WRITE, &tx, &ei))
            return fail("begin", &ei);
        for (int i = 0; i < BATCH && done < count; i++, done++) {
            char id[DCMS_UUID_STRLEN], title[64], hex[65];
            dcms_uuid_v7(id);
            rnd = rnd * 1103515245u + 12345u;
            bool ours = (long)((rnd >> 8) % 100) < share;
            const char *prov = ours ? argv[2] : pairs[(rnd >> 4) % PAIRS][0];
            const char *cons = ours ? argv[3] : pairs[(rnd >> 4) % PAIRS][1];
            snprintf(title, sizeof(title), "Seeded agreement %ld", done);
            json_t *content =
                ct_signed_content(id, prov, cons, title, "bench contract", terms, 1);
            unsigned char raw[32];
            struct dcms_buf cb;
            dcms_buf_init(&cb, 1 << 20);
            if (ct_content_hash(content, raw, hex, &ei) ||
                dcms_jcs_canonicalize(content, &cb, &ei)) {
                dcms_store_rollback(tx);
                return fail("hash", &ei);
            }
            json_decref(content);
            const char *status = (done % 2) ? "active" : "draft";
            enum dcms_err e = dcms_store_exec(
                tx, &q_contract,
                (struct dcms_store_val[]){DCMS_VAL_TEXT(id), DCMS_VAL_TEXT(title),
                                          DCMS_VAL_TEXT("bench contract"), DCMS_VAL_TEXT(prov),
                                          DCMS_VAL_TEXT(cons), DCMS_VAL_TEXT(status),
                                          DCMS_VAL_TEXT(tb.ptr), DCMS_VAL_TEXT(hex),
                                          DCMS_VAL_TEXT(now), DCMS_VAL_TEXT(from),
                                          DCMS_VAL_TEXT(to)},
                11, NULL, NULL, &ei);
            if (!e)
                e = dcms_store_exec(tx, &q_version,
                                    (struct dcms_store_val[]){DCMS_VAL_TEXT(id), DCMS_VAL_TEXT(hex),
                                                              DCMS_VAL_TEXT(cb.ptr),
                                                              DCMS_VAL_TEXT(now)},
                                    4, NULL, NULL, &ei);
            dcms_buf_release(&cb);
            if (e) {
                dcms_store_rollback(tx);
                return fail("insert", &ei);
            }
            if (ours)
                memcpy(last, id, sizeof(last));
        }
        if (dcms_store_commit(tx, &ei))
            return fail("commit", &ei);
    }
    dcms_buf_release(&tb);
    json_decref(terms);
    dcms_store_close(s);
    printf("seeded=%ld last_party_contract=%s\n", done, last);
    return 0;
}
