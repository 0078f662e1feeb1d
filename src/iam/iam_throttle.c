/*
 * The login throttle, shared by every node through the store
 * (login_throttle): failed logins, TOTP codes and second factors are
 * counted per key, forgotten after DCMS_LOGIN_FAILURE_WINDOW_S quiet
 * seconds. Which keys a failure moves depends on the client (iam_core.h,
 * enum iam_client): an untrusted client's count against the account's
 * untrusted lockout (exponential back-off) and its address (a fixed delay
 * per failure past the limit: slowed, never shut out), a client with a
 * valid device token's against that token only. Part of the core layer:
 * sessions (iam_session.c) and the MFA routes (totp.c) both use it.
 */
#include "dcms/app.h"
#include "dcms/clock.h"
#include "dcms/config.h"
#include "dcms/log.h"
#include "dcms/store.h"
#include "iam/iam_core.h"

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

enum dcms_err iam_throttle_check(struct dcms_iam *iam, const char *key, const char *key2,
                                 int64_t *retry_after_s, struct dcms_errinfo *ei)
{
    int64_t now = dcms_clock_now_us();
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_begin(iam->app->store, DCMS_TX_READ, &tx, ei);
    if (e)
        return e;
    e = dcms_store_exec(tx, &q_throttle_get,
                        (struct dcms_store_val[]){DCMS_VAL_TEXT(key), DCMS_VAL_TEXT(key2)}, 2,
                        &rows, NULL, ei);
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
    *retry_after_s = (locked_until - now + 999999) / 1000000; /* whole seconds, rounded up */
    return dcms_err_set(ei, DCMS_ERR_RATE_LIMITED,
                        "too many failed logins; try again in %lld seconds",
                        (long long)*retry_after_s);
}

/* One counter a failure moves: its key, its limit, and what happens past it. */
struct rule {
    const char *key;
    unsigned long limit;
    bool slow;         /* past the limit: a fixed delay per failure (an address), not a back-off */
    const char *scope; /* auth.lockout details.scope */
    const char *rtype, *rid;
};

/* Seconds a key past its limit stays locked after its `failures`-th failure. */
static int64_t lock_seconds(const struct dcms_config *cfg, const struct rule *r, int64_t failures)
{
    if (r->slow)
        return (int64_t)cfg->login_ip_delay_s;
    /* Exponential back-off: base, 2x base, 4x base ... capped. */
    int64_t over = failures - (int64_t)r->limit;
    int64_t s = (int64_t)cfg->login_lockout_s << (over > 20 ? 20 : over);
    return s > (int64_t)cfg->login_lockout_max_s ? (int64_t)cfg->login_lockout_max_s : s;
}

enum dcms_err iam_throttle_fail(const struct iam_call *c, enum iam_client kind, const char *key,
                                const char *ip_key, const char *identity_id, const char *device_id,
                                const char *why)
{
    const struct dcms_config *cfg = c->iam->cfg;
    struct dcms_errinfo tei;
    dcms_errinfo_init(&tei, NULL);
    int64_t now = dcms_clock_now_us();
    char now_s[DCMS_TIME_STRLEN], forget_s[DCMS_TIME_STRLEN];
    fmt_time(now, now_s);
    fmt_time(now - (int64_t)cfg->login_failure_window_s * 1000000, forget_s);
    const char *who = identity_id ? identity_id : "anonymous";
    struct rule rules[2];
    size_t nrules = 0;
    if (kind == IAM_CLIENT_UNTRUSTED) {
        /* No account key: a failure that names no account (an unknown passkey) moves the address.
         */
        if (key && key[0])
            rules[nrules++] = (struct rule){
                key, cfg->login_max_failures, false, "account", "account", identity_id};
        if (ip_key && ip_key[0])
            rules[nrules++] = (struct rule){
                ip_key, cfg->login_max_failures_per_ip, true, "ip", "client_ip", c->client_ip};
    } else if (kind == IAM_CLIENT_DEVICE) {
        rules[nrules++] = (struct rule){
            key, cfg->login_device_max_failures, false, "device", "device", device_id};
    } else {
        rules[nrules++] = (struct rule){
            key, cfg->login_max_failures, false, "second_factor", "account", identity_id};
    }
    struct dcms_store_tx *tx;
    enum dcms_err e = dcms_store_begin(c->iam->app->store, DCMS_TX_WRITE, &tx, &tei);
    if (e)
        return e;
    for (size_t k = 0; !e && k < nrules; k++) {
        struct dcms_store_rows *rows = NULL;
        e = dcms_store_exec(tx, &q_throttle_fail,
                            (struct dcms_store_val[]){DCMS_VAL_TEXT(rules[k].key),
                                                      DCMS_VAL_TEXT(now_s),
                                                      DCMS_VAL_TEXT(forget_s)},
                            3, &rows, NULL, &tei);
        int64_t failures = e ? 0 : dcms_store_rows_int(rows, 0, 0);
        dcms_store_rows_free(rows);
        if (e || failures < (int64_t)rules[k].limit)
            continue;
        int64_t lock_s = lock_seconds(cfg, &rules[k], failures);
        char until[DCMS_TIME_STRLEN];
        fmt_time(now + lock_s * 1000000, until);
        e = dcms_store_exec(
            tx, &q_throttle_lock,
            (struct dcms_store_val[]){DCMS_VAL_TEXT(rules[k].key), DCMS_VAL_TEXT(until)}, 2, NULL,
            NULL, &tei);
        if (!e)
            e = iam_audit(c->iam, tx, who, "auth.lockout", rules[k].rtype, rules[k].rid, true,
                          json_pack("{s:s, s:I, s:s, s:b}", "scope", rules[k].scope, "failures",
                                    (json_int_t)failures, "locked_until", until, "slowdown",
                                    rules[k].slow),
                          c->client_ip, c->request_id, &tei);
    }
    static const char *const client_names[] = {"untrusted", "device", "session"};
    if (!e)
        e = iam_audit(c->iam, tx, who, "auth.login_failed", "identity", identity_id, true,
                      json_pack("{s:s, s:s, s:s?}", "reason", why, "client", client_names[kind],
                                "device_id", device_id),
                      c->client_ip, c->request_id, &tei);
    e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, &tei);
    if (e)
        DCMS_LOG(DCMS_LOG_ERROR, "iam", "cannot record a failed login: %s", tei.message);
    return e;
}
