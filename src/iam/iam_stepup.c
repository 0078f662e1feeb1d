/*
 * Step-up for credential changes: a stolen access token (or one kept alive
 * by refreshes) must not be enough to add, replace or remove a password
 * factor, a passkey, a TOTP secret, recovery codes, a signing key or an API
 * key. The rule lives here only; every credential-changing service calls
 * iam_require_recent_auth() first (see iam_core.h).
 *
 * The login time comes from the access token's auth_time claim (OIDC Core
 * 1.0, section 2): login sets it to the time the session family starts,
 * refresh copies the family's creation time, so it never moves forward
 * without a new login. The token is signed by dcms, so the claim is as
 * trustworthy as the token's other claims and costs no store lookup.
 */
#include "dcms/app.h"
#include "dcms/clock.h"
#include "dcms/config.h"
#include "dcms/store.h"
#include "iam/iam_core.h"

/*
 * Whether the identity has a factor that step-up asks for: a confirmed TOTP
 * or a passkey (recovery codes exist only beside a confirmed TOTP). Read
 * here rather than through the MFA layer, which sits above this one.
 */
static struct dcms_query q_second_factor =
    DCMS_QUERY("iam_stepup_factors",
               "SELECT (SELECT count(*) FROM totp_credentials WHERE identity_id = $1 AND status = "
               "'confirmed') + (SELECT count(*) FROM webauthn_credentials WHERE identity_id = $1)");

static enum dcms_err second_factor_enrolled(struct dcms_iam *iam, const char *identity_id,
                                            bool *yes, struct dcms_errinfo *ei)
{
    struct dcms_store_tx *tx;
    int64_t n = 0;
    enum dcms_err e = dcms_store_begin(iam->app->store, DCMS_TX_READ, &tx, ei);
    if (e)
        return e;
    struct dcms_store_val p[] = {DCMS_VAL_TEXT(identity_id)};
    e = dcms_store_exec_int(tx, &q_second_factor, p, 1, &n, ei);
    dcms_store_rollback(tx);
    *yes = !e && n > 0;
    return e;
}

/* "10 minutes", "90 seconds", "1 minute". */
static void fmt_age(uint64_t s, char out[40])
{
    if (s >= 60 && s % 60 == 0)
        snprintf(out, 40, "%llu minute%s", (unsigned long long)(s / 60), s == 60 ? "" : "s");
    else
        snprintf(out, 40, "%llu second%s", (unsigned long long)s, s == 1 ? "" : "s");
}

enum dcms_err iam_require_recent_auth(const struct iam_call *c, const char *purpose)
{
    if (!c->p)
        return dcms_err_set(c->ei, DCMS_ERR_UNAUTHENTICATED, "%s needs a login", purpose);
    if (c->p->api_key[0])
        return dcms_err_set(c->ei, DCMS_ERR_FORBIDDEN,
                            "API keys cannot change credentials (%s); use a person's session",
                            purpose);
    uint64_t max_age = c->iam->cfg->iam_stepup_max_age_s;
    int64_t now_s = dcms_clock_now_us() / 1000000;
    char age[40];
    fmt_age(max_age, age);
    /* A token without auth_time (issued before dcms wrote it) counts as an old login. */
    bool recent = c->p->auth_time_s > 0 && now_s - c->p->auth_time_s <= (int64_t)max_age;
    bool enrolled = false;
    if (recent && !(c->p->amr & DCMS_AMR_MFA)) {
        enum dcms_err e = second_factor_enrolled(c->iam, c->p->id, &enrolled, c->ei);
        if (e)
            return e;
    }
    if (!recent)
        return dcms_err_set(c->ei, DCMS_ERR_REAUTH_REQUIRED,
                            "%s needs a recent login: log in again (with your second factor, if "
                            "you have one) within the last %s, then retry",
                            purpose, age);
    if (enrolled)
        return dcms_err_set(c->ei, DCMS_ERR_REAUTH_REQUIRED,
                            "%s needs a login with your second factor (this session used a "
                            "password only): log in again with your second factor within the "
                            "last %s, then retry",
                            purpose, age);
    return DCMS_OK;
}
