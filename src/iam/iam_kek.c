/*
 * The key sealing IAM's secrets in the store (JWT signing keys' PEM with
 * crypto_secretbox, TOTP secrets with XChaCha20-Poly1305 and the identity id
 * as associated data) is a data key of the keys module, "iam.secrets",
 * wrapped by the keyring's active KEK: one key hierarchy for everything
 * dcms encrypts. Rotating the KEK rewraps it without touching the sealed
 * secrets.
 *
 * Stores from before the keys module sealed those secrets under a key kept
 * in DCMS_IAM_KEK_FILE. On the first start with the keys module, when that
 * file is there and the data key is not, the file is read once: every
 * sealed secret is opened with it and sealed again under a fresh data key,
 * in one transaction (audited as iam.secrets_migrate), and the file is
 * deleted after the commit.
 */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <sodium.h>

#include "dcms/app.h"
#include "dcms/audit.h"
#include "dcms/config.h"
#include "dcms/crypto.h"
#include "dcms/keys.h"
#include "dcms/log.h"
#include "dcms/store.h"
#include "iam/iam_core.h"

#define IAM_DEK_NAME "iam.secrets"
#define MIGRATE_MAX 100000 /* sealed rows of each kind re-sealed at most (bounds the queries) */

static struct dcms_query q_jwt_all = DCMS_QUERY(
    "iam_kek_jwt_all", "SELECT kid, private_sealed FROM jwt_keys WHERE private_sealed IS NOT NULL "
                       "ORDER BY kid LIMIT $1");
static struct dcms_query q_jwt_set =
    DCMS_QUERY("iam_kek_jwt_set", "UPDATE jwt_keys SET private_sealed = $2 WHERE kid = $1");
static struct dcms_query q_totp_all =
    DCMS_QUERY("iam_kek_totp_all", "SELECT identity_id, secret_sealed FROM totp_credentials "
                                   "WHERE secret_sealed IS NOT NULL ORDER BY identity_id LIMIT $1");
static struct dcms_query q_any_sealed =
    DCMS_QUERY("iam_kek_any_sealed",
               "SELECT (SELECT COUNT(*) FROM jwt_keys WHERE private_sealed IS NOT NULL) + "
               "(SELECT COUNT(*) FROM totp_credentials WHERE secret_sealed IS NOT NULL)");
static struct dcms_query q_totp_set = DCMS_QUERY(
    "iam_kek_totp_set", "UPDATE totp_credentials SET secret_sealed = $2 WHERE identity_id = $1");

/*
 * Opens `sealed` (base64 nonce || box) under `from` and seals it again under
 * `to`, fresh nonce; `xchacha` selects the TOTP format (with `ad`), else
 * secretbox. *out is malloc'd base64.
 */
static enum dcms_err reseal(bool xchacha, const unsigned char *from, const unsigned char *to,
                            const char *sealed, const char *ad, char **out)
{
    size_t nonce =
        xchacha ? crypto_aead_xchacha20poly1305_ietf_NPUBBYTES : crypto_secretbox_NONCEBYTES;
    size_t tag = xchacha ? crypto_aead_xchacha20poly1305_ietf_ABYTES : crypto_secretbox_MACBYTES;
    size_t slen = strlen(sealed), clen = 0;
    enum dcms_err e = DCMS_ERR_CRYPTO;
    unsigned char *c = malloc(slen + 1), *m = sodium_malloc(slen + 1);
    *out = NULL;
    if (!c || !m) {
        e = DCMS_ERR_NOMEM;
        goto out;
    }
    if (dcms_b64_decode(c, slen + 1, sealed, slen, &clen) || clen < nonce + tag)
        goto out;
    size_t mlen = clen - nonce - tag;
    unsigned long long got = 0;
    if (xchacha ? crypto_aead_xchacha20poly1305_ietf_decrypt(m, &got, NULL, c + nonce, clen - nonce,
                                                             (const unsigned char *)ad, strlen(ad),
                                                             c, from) != 0
                : crypto_secretbox_open_easy(m, c + nonce, clen - nonce, c, from) != 0)
        goto out;
    randombytes_buf(c, nonce);
    if (xchacha)
        crypto_aead_xchacha20poly1305_ietf_encrypt(
            c + nonce, NULL, m, mlen, (const unsigned char *)ad, strlen(ad), NULL, c, to);
    else
        crypto_secretbox_easy(c + nonce, m, mlen, c, to);
    if (!(*out = malloc(dcms_b64_encoded_len(clen)))) {
        e = DCMS_ERR_NOMEM;
        goto out;
    }
    dcms_b64_encode(*out, c, clen);
    e = DCMS_OK;
out:
    if (m)
        sodium_free(m);
    free(c);
    return e;
}

static enum dcms_err reseal_table(struct dcms_store_tx *tx, bool xchacha, struct dcms_query *all,
                                  struct dcms_query *set, const unsigned char *from,
                                  const unsigned char *to, int64_t *count, struct dcms_errinfo *ei)
{
    struct dcms_store_rows *rows = NULL;
    struct dcms_store_val lim[] = {DCMS_VAL_INT(MIGRATE_MAX)};
    enum dcms_err e = dcms_store_exec(tx, all, lim, 1, &rows, NULL, ei);
    for (size_t i = 0; !e && i < dcms_store_rows_count(rows); i++) {
        const char *key = dcms_store_rows_text(rows, i, 0);
        char *fresh = NULL;
        if ((e = reseal(xchacha, from, to, dcms_store_rows_text(rows, i, 1), key, &fresh))) {
            e = dcms_err_set(ei, DCMS_ERR_CONFIG,
                             "cannot open the sealed %s of %s with DCMS_IAM_KEK_FILE: is it the "
                             "file this store was created with?",
                             xchacha ? "TOTP secret" : "JWT signing key", key);
            break;
        }
        struct dcms_store_val p[] = {DCMS_VAL_TEXT(key), DCMS_VAL_TEXT(fresh)};
        e = dcms_store_exec(tx, set, p, 2, NULL, NULL, ei);
        free(fresh);
        (*count)++;
    }
    dcms_store_rows_free(rows);
    return e;
}

/* One attempt; DCMS_ERR_CONFLICT when another node made the data key meanwhile. */
static enum dcms_err open_once(struct dcms_iam *iam, bool *migrated, struct dcms_errinfo *ei)
{
    struct dcms_keys *keys = iam->app->keys;
    struct dcms_store_tx *tx = NULL;
    struct dcms_dek *dek = NULL;
    unsigned char *old = NULL;
    bool created = false;
    int64_t njwt = 0, ntotp = 0;
    *migrated = false;
    if (!keys)
        return dcms_err_set(ei, DCMS_ERR_INTERNAL, "IAM needs the keyring");
    enum dcms_err e = dcms_store_begin(iam->app->store, DCMS_TX_WRITE, &tx, ei);
    if (e)
        return e;
    e = dcms_keys_dek_named(keys, tx, IAM_DEK_NAME, "iam.secrets", false, &dek, NULL, ei);
    if (e != DCMS_ERR_NOT_FOUND)
        goto out;
    dcms_errinfo_init(ei, ei->arena);
    if ((e = dcms_keys_dek_named(keys, tx, IAM_DEK_NAME, "iam.secrets", true, &dek, &created, ei)))
        goto out;
    /* A store from before the keys module: re-seal its secrets, read the old file once. */
    if (access(iam->cfg->iam_kek_file, F_OK) != 0) {
        /* Without the old file, secrets already sealed could never be opened again: refuse
         * (and make no data key) rather than lose them. */
        int64_t n = 0;
        if ((e = dcms_store_exec_int(tx, &q_any_sealed, NULL, 0, &n, ei)))
            goto out;
        if (n > 0) {
            e = dcms_err_set(ei, DCMS_ERR_CONFIG,
                             "%lld IAM secrets are sealed under the key of DCMS_IAM_KEK_FILE, "
                             "which is missing (%s): restore it to move them under the keyring",
                             (long long)n, iam->cfg->iam_kek_file);
            goto out;
        }
    } else {
        if (!(old = sodium_malloc(crypto_secretbox_KEYBYTES))) {
            e = dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
            goto out;
        }
        if ((e = dcms_secret_file_load_or_create(iam->cfg->iam_kek_file, old,
                                                 crypto_secretbox_KEYBYTES,
                                                 "IAM key-encryption key", ei)) ||
            (e = reseal_table(tx, false, &q_jwt_all, &q_jwt_set, old, dcms_dek_bytes(dek), &njwt,
                              ei)) ||
            (e = reseal_table(tx, true, &q_totp_all, &q_totp_set, old, dcms_dek_bytes(dek), &ntotp,
                              ei)))
            goto out;
        json_t *d = json_pack("{s:s, s:I, s:I}", "data_key", dcms_dek_id(dek), "jwt_keys",
                              (json_int_t)njwt, "totp_secrets", (json_int_t)ntotp);
        e = dcms_audit_change(iam->app->audit, tx, NULL, "data_key", "iam.secrets_migrate",
                              dcms_dek_id(dek), d, ei);
        *migrated = !e;
    }
out:
    if (!e)
        memcpy(iam->kek, dcms_dek_bytes(dek), crypto_secretbox_KEYBYTES);
    dcms_dek_free(dek);
    if (old)
        sodium_free(old);
    if (e) {
        dcms_store_rollback(tx);
        return e;
    }
    if ((e = dcms_store_commit(tx, ei)))
        return e;
    if (*migrated) {
        DCMS_LOG(DCMS_LOG_INFO, "iam",
                 "re-sealed %lld JWT keys and %lld TOTP secrets under the keyring; removing %s",
                 (long long)njwt, (long long)ntotp, iam->cfg->iam_kek_file);
        if (unlink(iam->cfg->iam_kek_file) != 0)
            DCMS_LOG(DCMS_LOG_WARN, "iam", "cannot remove %s: %s; it is no longer used",
                     iam->cfg->iam_kek_file, strerror(errno));
    }
    return DCMS_OK;
}

enum dcms_err iam_kek_open(struct dcms_iam *iam, struct dcms_errinfo *ei)
{
    bool migrated;
    iam->kek = sodium_malloc(crypto_secretbox_KEYBYTES);
    if (!iam->kek)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    enum dcms_err e = open_once(iam, &migrated, ei);
    if (e == DCMS_ERR_CONFLICT || e == DCMS_ERR_RETRY) {
        dcms_errinfo_init(ei, ei->arena);
        e = open_once(iam, &migrated, ei);
    }
    return e;
}
