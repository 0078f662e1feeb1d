/*
 * Self-registration's defences against enumeration and abuse (docs/iam.md,
 * "Self-registration"): a limit per client address in fixed one-hour
 * windows, shared by every node through the store (registration_limits),
 * and the handling of an address that already has an account: the caller
 * answers exactly as for a new one (202, iam_register_answer) after the
 * same password hashing, and the address's owner gets a mail saying that
 * someone tried to register it again.
 */
#include "dcms/app.h"
#include "dcms/clock.h"
#include "dcms/config.h"
#include "dcms/store.h"
#include "iam/iam_identity.h"

#define WINDOW_S 3600

/* One more registration for `key`: a new window starts when the last one ended. */
static struct dcms_query q_count =
    DCMS_QUERY("iam_register_count",
               "INSERT INTO registration_limits (key, window_start, count) VALUES ($1, $2, 1) "
               "ON CONFLICT (key) DO UPDATE SET "
               "count = CASE WHEN registration_limits.window_start <= $3 THEN 1 "
               "ELSE registration_limits.count + 1 END, "
               "window_start = CASE WHEN registration_limits.window_start <= $3 THEN $2 "
               "ELSE registration_limits.window_start END "
               "RETURNING count, window_start");
/* Ended windows of other addresses, dropped whenever a window starts. */
static struct dcms_query q_prune = DCMS_QUERY(
    "iam_register_prune", "DELETE FROM registration_limits WHERE window_start <= $1 AND key <> $2");

enum dcms_err iam_register_admit(const struct iam_call *c, int64_t *retry_after_s)
{
    unsigned long limit = c->iam->cfg->registrations_per_hour;
    if (!limit || !c->client_ip || !*c->client_ip)
        return DCMS_OK;
    char key[80];
    snprintf(key, sizeof(key), "ip:%s", c->client_ip);
    int64_t now = dcms_clock_now_us() / 1000000;
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    enum dcms_err e = dcms_store_begin(c->iam->app->store, DCMS_TX_WRITE, &tx, c->ei);
    if (e)
        return e;
    e = dcms_store_exec(tx, &q_count,
                        (struct dcms_store_val[]){DCMS_VAL_TEXT(key), DCMS_VAL_INT(now),
                                                  DCMS_VAL_INT(now - WINDOW_S)},
                        3, &rows, NULL, c->ei);
    int64_t count = e ? 0 : dcms_store_rows_int(rows, 0, 0);
    int64_t start = e ? now : dcms_store_rows_int(rows, 0, 1);
    dcms_store_rows_free(rows);
    if (!e && count == 1)
        e = dcms_store_exec(
            tx, &q_prune,
            (struct dcms_store_val[]){DCMS_VAL_INT(now - WINDOW_S), DCMS_VAL_TEXT(key)}, 2, NULL,
            NULL, c->ei);
    e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, c->ei);
    if (e || count <= (int64_t)limit)
        return e;
    *retry_after_s = start + WINDOW_S - now;
    if (*retry_after_s < 1)
        *retry_after_s = 1;
    return dcms_err_set(c->ei, DCMS_ERR_RATE_LIMITED,
                        "too many registrations from this address; try again in %lld seconds",
                        (long long)*retry_after_s);
}

enum dcms_err iam_register_existing(const struct iam_call *c, struct dcms_store_tx *tx,
                                    const char *id, const char *email, const char *now)
{
    static const char body[] =
        "Someone (perhaps you) asked to register a dcms account with this e-mail address, "
        "which already has one. Nothing was changed.\n\n"
        "If it was you, log in with this address (POST /api/v1/auth/login). If you did not ask, "
        "you can ignore this mail.\n";
    enum dcms_err e =
        iam_mail_queue(tx, email, "You already have a dcms account", body, now, c->ei);
    if (!e)
        e = iam_audit(c->iam, tx, "anonymous", "identity.register_existing", "identity", id, false,
                      NULL, c->client_ip, c->request_id, c->ei);
    return e;
}

json_t *iam_register_answer(const char *email)
{
    return json_pack("{s:s, s:s, s:s}", "status", "accepted", "email", email, "message",
                     "check this address for a mail that says how to continue");
}
