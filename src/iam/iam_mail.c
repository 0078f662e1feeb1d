/*
 * The e-mail outbox. Mail is written to email_outbox in the transaction
 * that needs it; after the commit iam_mail_flush() delivers pending rows:
 * through DCMS_SMTP_URL with libcurl when it is set (TLS required and
 * verified: smtps://, or smtp:// with STARTTLS unless DCMS_SMTP_STARTTLS is
 * false), otherwise (in
 * development mode only) into the log. A delivered row's body is redacted,
 * so one-time tokens do not stay in the store. Without SMTP and outside
 * development mode rows stay pending for an external relay.
 */
#include <curl/curl.h>

#include "dcms/app.h"
#include "dcms/clock.h"
#include "dcms/config.h"
#include "dcms/log.h"
#include "dcms/store.h"
#include "dcms/str.h"
#include "iam/iam_identity.h"

static struct dcms_query q_outbox_insert = DCMS_QUERY(
    "iam_outbox_insert", "INSERT INTO email_outbox (id, recipient, subject, body, created_at) "
                         "VALUES ($1, $2, $3, $4, $5)");
static struct dcms_query q_pending = DCMS_QUERY(
    "iam_outbox_pending", "SELECT id, recipient, subject, body FROM email_outbox "
                          "WHERE sent_at IS NULL AND attempts < 5 ORDER BY created_at LIMIT 20");
static struct dcms_query q_sent =
    DCMS_QUERY("iam_outbox_sent", "UPDATE email_outbox SET sent_at = $2, body = '[delivered]', "
                                  "attempts = attempts + 1 WHERE id = $1");
static struct dcms_query q_failed =
    DCMS_QUERY("iam_outbox_failed",
               "UPDATE email_outbox SET attempts = attempts + 1, last_error = $2 WHERE id = $1");

struct upload {
    const char *p;
    size_t left;
};

static size_t read_cb(char *buf, size_t size, size_t nmemb, void *ctx)
{
    struct upload *u = ctx;
    size_t n = size * nmemb < u->left ? size * nmemb : u->left;
    memcpy(buf, u->p, n);
    u->p += n;
    u->left -= n;
    return n;
}

enum dcms_err iam_mail_send(const struct iam_smtp *smtp, const char *from, const char *to,
                            const char *subject, const char *body, struct dcms_errinfo *ei)
{
    struct dcms_buf msg;
    dcms_buf_init(&msg, 64 * 1024);
    if (dcms_buf_appendf(&msg, "From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\n\r\n%s\r\n", from, to,
                         subject, body)) {
        dcms_buf_release(&msg);
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    }
    CURL *curl = curl_easy_init();
    struct curl_slist *rcpt = curl_slist_append(NULL, to);
    struct upload u = {msg.ptr, msg.len};
    CURLcode rc = CURLE_FAILED_INIT;
    char detail[CURL_ERROR_SIZE];
    detail[0] = '\0';
    if (curl && rcpt) {
        curl_easy_setopt(curl, CURLOPT_URL, smtp->url);
        curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
        curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, detail);
        curl_easy_setopt(curl, CURLOPT_MAIL_FROM, from);
        curl_easy_setopt(curl, CURLOPT_MAIL_RCPT, rcpt);
        curl_easy_setopt(curl, CURLOPT_READFUNCTION, read_cb);
        curl_easy_setopt(curl, CURLOPT_READDATA, &u);
        curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
        /*
         * smtps:// is TLS from the first byte; smtp:// upgrades with STARTTLS,
         * required: a server that does not offer it, or a handshake that
         * fails, ends the attempt instead of sending in the clear. Either way
         * the server's certificate chain and name are verified.
         */
        curl_easy_setopt(curl, CURLOPT_USE_SSL,
                         (long)(smtp->starttls ? CURLUSESSL_ALL : CURLUSESSL_NONE));
        curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
        curl_easy_setopt(curl, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
        if (smtp->ca_file && smtp->ca_file[0])
            curl_easy_setopt(curl, CURLOPT_CAINFO, smtp->ca_file);
        curl_easy_setopt(curl, CURLOPT_TIMEOUT, 15L);
        curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
        rc = curl_easy_perform(curl);
    }
    curl_slist_free_all(rcpt);
    curl_easy_cleanup(curl);
    sodium_memzero(msg.ptr, msg.len);
    dcms_buf_release(&msg);
    if (rc != CURLE_OK)
        return dcms_err_set(ei, DCMS_ERR_UNAVAILABLE, "mail not sent: %s%s%s",
                            curl_easy_strerror(rc), detail[0] ? ": " : "", detail);
    return DCMS_OK;
}

enum dcms_err iam_mail_queue(struct dcms_store_tx *tx, const char *to, const char *subject,
                             const char *body, const char *now, struct dcms_errinfo *ei)
{
    char id[DCMS_UUID_STRLEN];
    dcms_uuid_v7(id);
    return dcms_store_exec(tx, &q_outbox_insert,
                           (struct dcms_store_val[]){DCMS_VAL_TEXT(id), DCMS_VAL_TEXT(to),
                                                     DCMS_VAL_TEXT(subject), DCMS_VAL_TEXT(body),
                                                     DCMS_VAL_TEXT(now)},
                           5, NULL, NULL, ei);
}

/*
 * Development mode: the recipient and subject of every mail, and the token
 * line of a verification mail (the only line without spaces).
 */
static void log_dev_mail(const char *to, const char *subject, const char *body)
{
    struct dcms_buf m;
    dcms_buf_init(&m, 1024);
    if (!dcms_buf_appends(&m, "\"to\":\"") && !dcms_buf_append_json_escaped(&m, to, strlen(to)) &&
        !dcms_buf_appends(&m, "\",\"subject\":\"") &&
        !dcms_buf_append_json_escaped(&m, subject, strlen(subject)) && !dcms_buf_appends(&m, "\""))
        DCMS_LOG_FIELDS(DCMS_LOG_INFO, "iam", m.ptr, "development mode: mail not sent");
    dcms_buf_release(&m);
    const char *p = body;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        if (n > 20 && !memchr(p, ' ', n)) {
            char fields[512];
            int k = snprintf(fields, sizeof(fields), "\"to\":\"");
            struct dcms_buf b;
            dcms_buf_init(&b, 600);
            if (!dcms_buf_append(&b, fields, (size_t)k) &&
                !dcms_buf_append_json_escaped(&b, to, strlen(to)) &&
                !dcms_buf_appends(&b, "\",\"verification_token\":\"") &&
                !dcms_buf_append(&b, p, n) && !dcms_buf_appends(&b, "\""))
                DCMS_LOG_FIELDS(DCMS_LOG_INFO, "iam", b.ptr,
                                "development mode: e-mail verification token");
            dcms_buf_release(&b);
            return;
        }
        p += n + (nl ? 1 : 0);
    }
}

void iam_mail_flush(struct dcms_iam *iam)
{
    const struct dcms_config *cfg = iam->cfg;
    bool smtp = cfg->smtp_url[0] != '\0';
    if (!smtp && !cfg->dev_mode)
        return;
    struct dcms_errinfo ei;
    dcms_errinfo_init(&ei, NULL);
    struct dcms_store_tx *tx;
    struct dcms_store_rows *rows = NULL;
    if (dcms_store_begin(iam->app->store, DCMS_TX_READ, &tx, &ei))
        return;
    enum dcms_err e = dcms_store_exec(tx, &q_pending, NULL, 0, &rows, NULL, &ei);
    dcms_store_rollback(tx);
    if (e)
        return;
    for (size_t i = 0; i < dcms_store_rows_count(rows); i++) {
        const char *id = dcms_store_rows_text(rows, i, 0), *to = dcms_store_rows_text(rows, i, 1);
        char now[DCMS_TIME_STRLEN];
        dcms_time_format(dcms_clock_now_us(), now);
        struct dcms_errinfo sei;
        dcms_errinfo_init(&sei, NULL);
        struct iam_smtp conn = {
            .url = cfg->smtp_url, .ca_file = cfg->smtp_ca_file, .starttls = cfg->smtp_starttls};
        if (smtp)
            e = iam_mail_send(&conn, cfg->smtp_from, to, dcms_store_rows_text(rows, i, 2),
                              dcms_store_rows_text(rows, i, 3), &sei);
        else {
            log_dev_mail(to, dcms_store_rows_text(rows, i, 2), dcms_store_rows_text(rows, i, 3));
            e = DCMS_OK;
        }
        if (e)
            DCMS_LOG(DCMS_LOG_WARN, "iam", "outbox %s: %s", id, sei.message);
        if (dcms_store_begin(iam->app->store, DCMS_TX_WRITE, &tx, &ei))
            break;
        if (e)
            e = dcms_store_exec(
                tx, &q_failed,
                (struct dcms_store_val[]){DCMS_VAL_TEXT(id), DCMS_VAL_TEXT(sei.message)}, 2, NULL,
                NULL, &ei);
        else
            e = dcms_store_exec(tx, &q_sent,
                                (struct dcms_store_val[]){DCMS_VAL_TEXT(id), DCMS_VAL_TEXT(now)}, 2,
                                NULL, NULL, &ei);
        e = e ? (dcms_store_rollback(tx), e) : dcms_store_commit(tx, &ei);
    }
    dcms_store_rows_free(rows);
}
