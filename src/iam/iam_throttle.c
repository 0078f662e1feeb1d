/*
 * The login throttle, shared by every node through the store
 * (login_throttle): failed logins, TOTP codes and second factors are
 * counted per account and per client address, forgotten after 15 quiet
 * minutes, and lock with an exponential back-off past the configured
 * limits. Part of the core layer: sessions (iam_session.c) and the MFA
 * routes (totp.c) both use it.
 */
#include "dcms/app.h"
#include "dcms/clock.h"
#include "dcms/config.h"
#include "dcms/log.h"
#include "dcms/store.h"
#include "iam/iam_core.h"

#define LOCKOUT_MAX_S 900
#define THROTTLE_FORGET_S 900

static struct dcms_query q_throttle_get = DCMS_QUERY(
    "iam_throttle_get", "SELECT key, locked_until FROM login_throttle WHERE key IN ($1, $2)");
static struct dcms_query q_throttle_fail = DCMS_QUERY(
    "iam_throttle_fail",
    "INSERT INTO login_throttle (key, failures, locked_until, updated_at) VALUES ($1, 1, NULL, $2) "
    "ON CONFLICT (key) DO UPDATE SET failures = CASE WHEN login_throttle.updated_at < $3 THEN 1 "
    "ELSE login_throttle.failures + 1 END, updated_at = $2 RETURNING failures");
static struct dcms_query q_throttle_lock =
    DCMS_QUERY("iam_throttle_lock", "UPDATE login_throttle SET locked_until = $2 WHERE key = $1");
static void fmt_time(int64_t us, char out[DCMS_TIME_STRLEN])
{
    dcms_time_format(us, out);
}

void iam_throttle_keys(const char *account, const char *client_ip, char acct[300], char ip[80])
{
    memcpy(acct, "acct:", 5);
    size_t el = strlen(account);
    for (size_t i = 0; i < el && i < 254; i++)
        acct[5 + i] =
            (char)((account[i] >= 'A' && account[i] <= 'Z') ? account[i] + 32 : account[i]);
    acct[5 + (el < 254 ? el : 254)] = '\0';
    /* No address (a check from inside dcmsd): no address key, which all such checks would share. */
    if (client_ip && *client_ip)
        snprintf(ip, 80, "ip:%s", client_ip);
    else
        ip[0] = '\0';
}

enum dcms_err iam_throttle_check(struct dcms_iam *iam, const char *acct, const char *ip,
                                 int64_t *retry_after_s, struct dcms_errinfo *ei)
{
    int64_t now = dcms_clock_now_us();
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_begin(iam->app->store, DCMS_TX_READ, &tx, ei);
    if (e)
        return e;
    e = dcms_store_exec(tx, &q_throttle_get,
                        (struct dcms_store_val[]){DCMS_VAL_TEXT(acct), DCMS_VAL_TEXT(ip)}, 2, &rows,
                        NULL, ei);
    dcms_store_rollback(tx);
    int64_t locked_until = 0;
    for (size_t i = 0; !e && i < dcms_store_rows_count(rows); i++) {
        const char *u = dcms_store_rows_text(rows, i, 1);
        int64_t t;
        if (u && dcms_time_parse(u, &t) == DCMS_OK && t > now && t > locked_until)
            locked_until = t;
    }
    dcms_store_rows_free(rows);
    if (e || !locked_until)
        return e;
    *retry_after_s = (locked_until - now) / 1000000 + 1;
    return dcms_err_set(ei, DCMS_ERR_RATE_LIMITED,
                        "too many failed logins; try again in %lld seconds",
                        (long long)*retry_after_s);
}

/* Records a failed login: counts it for the account and the address, locks either past its limit.
 */
enum dcms_err iam_throttle_fail(const struct iam_call *c, const char *acct_key, const char *ip_key,
                                const char *identity_id, const char *why)
{
    struct dcms_errinfo tei;
    dcms_errinfo_init(&tei, NULL);
    int64_t now = dcms_clock_now_us();
    char now_s[DCMS_TIME_STRLEN], forget_s[DCMS_TIME_STRLEN];
    fmt_time(now, now_s);
    fmt_time(now - (int64_t)THROTTLE_FORGET_S * 1000000, forget_s);
    struct dcms_store_tx *tx;
    enum dcms_err e = dcms_store_begin(c->iam->app->store, DCMS_TX_WRITE, &tx, &tei);
    if (e)
        return e;
    const char *keys[2] = {acct_key, ip_key};
    unsigned long limits[2] = {c->iam->cfg->login_max_failures,
                               c->iam->cfg->login_max_failures_per_ip};
    for (size_t k = 0; !e && k < 2; k++) {
        if (!keys[k][0])
            continue;
        struct dcms_store_rows *rows = NULL;
        e = dcms_store_exec(tx, &q_throttle_fail,
                            (struct dcms_store_val[]){DCMS_VAL_TEXT(keys[k]), DCMS_VAL_TEXT(now_s),
                                                      DCMS_VAL_TEXT(forget_s)},
                            3, &rows, NULL, &tei);
        int64_t failures = e ? 0 : dcms_store_rows_int(rows, 0, 0);
        dcms_store_rows_free(rows);
        if (e || failures < (int64_t)limits[k])
            continue;
        /* Exponential back-off: base, 2x base, 4x base ... capped. */
        int64_t over = failures - (int64_t)limits[k];
        int64_t lock_s = (int64_t)c->iam->cfg->login_lockout_s << (over > 10 ? 10 : over);
        if (lock_s > LOCKOUT_MAX_S)
            lock_s = LOCKOUT_MAX_S;
        char until[DCMS_TIME_STRLEN];
        fmt_time(now + lock_s * 1000000, until);
        e = dcms_store_exec(tx, &q_throttle_lock,
                            (struct dcms_store_val[]){DCMS_VAL_TEXT(keys[k]), DCMS_VAL_TEXT(until)},
                            2, NULL, NULL, &tei);
        if (!e)
            e = iam_audit(c->iam, tx, identity_id ? identity_id : "anonymous", "auth.lockout",
                          k == 0 ? "account" : "client_ip", k == 0 ? identity_id : c->client_ip,
                          true,
                          json_pack("{s:s, s:I, s:s}", "scope", k == 0 ? "account" : "ip",
                                    "failures", (json_int_t)failures, "locked_until", until),
                          c->client_ip, c->request_id, &tei);
    }
    if (!e)
        e = iam_audit(c->iam, tx, identity_id ? identity_id : "anonymous", "auth.login_failed",
                      "identity", identity_id, true, json_pack("{s:s}", "reason", why),
                      c->client_ip, c->request_id, &tei);
    e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, &tei);
    if (e)
        DCMS_LOG(DCMS_LOG_ERROR, "iam", "cannot record a failed login: %s", tei.message);
    return e;
}
