/*
 * `dcmsd audit verify FILE --public-key K`: verifies an export from
 * GET /api/v1/audit/export, or a slice from GET /api/v1/contracts/{id}/audit
 * (dcms_audit_slice_verify), with nothing but the audit public key. K is the
 * base64 key, or a file holding it (or the JSON of /api/v1/audit/public-key).
 * Prints the report as JSON; exit status 0 when the export verifies, 1 when
 * it does not, 2 on bad usage or unreadable input.
 */
#include <getopt.h>

#include "audit/audit.h"
#include "audit/audit_int.h"
#include "dcms/json.h"

#define CLI_LINE_MAX (16u << 20)
#define CLI_SLICE_MAX (256u << 20)

static int usage(void)
{
    fprintf(stderr, "usage: dcmsd audit verify FILE --public-key KEY\n"
                    "       dcmsd audit verify-receipt FILE --public-key KEY\n"
                    "  FILE  an export (JSON Lines) from GET /api/v1/audit/export, or a slice\n"
                    "        from GET /api/v1/contracts/{id}/audit (or an evidence bundle); - for\n"
                    "        stdin\n"
                    "  KEY   the base64 Ed25519 key from GET /api/v1/audit/public-key, or a file\n"
                    "        holding it (or that endpoint's JSON); a receipt is checked against\n"
                    "        this pinned key, never the key it carries\n");
    return 2;
}

static bool load_key(const char *arg, unsigned char pk[DCMS_SIGN_PUBLIC_LEN])
{
    char text[4096];
    size_t len = 0;
    FILE *f = fopen(arg, "r");
    if (f) {
        len = fread(text, 1, sizeof(text) - 1, f);
        fclose(f);
    } else {
        len = strlen(arg);
        if (len >= sizeof(text))
            return false;
        memcpy(text, arg, len);
    }
    text[len] = '\0';
    const char *b64 = text;
    json_t *j = json_loads(text, 0, NULL);
    if (j && json_is_string(json_object_get(j, "public_key")))
        b64 = json_string_value(json_object_get(j, "public_key"));
    size_t blen = strlen(b64);
    while (blen && (b64[blen - 1] == '\n' || b64[blen - 1] == ' ' || b64[blen - 1] == '\r'))
        blen--;
    size_t got = 0;
    bool ok = dcms_b64_decode(pk, DCMS_SIGN_PUBLIC_LEN, b64, blen, &got) == DCMS_OK &&
              got == DCMS_SIGN_PUBLIC_LEN;
    json_decref(j);
    return ok;
}

static int verify_file(FILE *in, const unsigned char pk[DCMS_SIGN_PUBLIC_LEN], char *line,
                       size_t cap, ssize_t n)
{
    struct dcms_audit_report r;
    struct audit_verifier v;
    audit_verifier_init(&v, pk, false, &r);
    long lineno = 0;
    bool header = false;
    int64_t hdr_from = 0, hdr_to = 0, hdr_events = -1, last_checkpoint = 0;
    for (; n > 0 && !v.failed; n = getline(&line, &cap, in)) {
        lineno++;
        if ((size_t)n > CLI_LINE_MAX) {
            audit_verifier_fail(&v, v.last_seq + 1, "line %ld is too long", lineno);
            break;
        }
        json_t *obj = NULL;
        if (dcms_json_parse((struct dcms_str){line, (size_t)n}, JSON_DECODE_INT_AS_REAL, &obj,
                            NULL) ||
            !json_is_object(obj) || json_object_size(obj) != 1) {
            json_decref(obj);
            audit_verifier_fail(&v, v.last_seq + 1, "line %ld is not an export record", lineno);
            break;
        }
        json_t *ev = json_object_get(obj, "event"), *cp = json_object_get(obj, "checkpoint");
        json_t *th = json_object_get(obj, "tree_head");
        if (th) {
            json_t *size = json_object_get(th, "tree_size");
            if (json_is_real(size))
                json_object_set_new(th, "tree_size",
                                    json_integer((json_int_t)json_real_value(size)));
            audit_verifier_tree_head(&v, th);
        } else if (ev) {
            /* seq was read as a real: give the verifier the integer it expects */
            json_t *seq = json_object_get(ev, "seq");
            if (json_is_real(seq))
                json_object_set_new(ev, "seq", json_integer((json_int_t)json_real_value(seq)));
            audit_verifier_event(&v, ev);
        } else if (cp) {
            json_t *seq = json_object_get(cp, "seq");
            if (json_is_real(seq))
                json_object_set_new(cp, "seq", json_integer((json_int_t)json_real_value(seq)));
            if (audit_verifier_checkpoint(&v, cp))
                last_checkpoint = v.last_seq;
        } else if (json_object_get(obj, "export") && lineno == 1) {
            json_t *h = json_object_get(obj, "export");
            header = true;
            hdr_from = (int64_t)json_number_value(json_object_get(h, "from_seq"));
            hdr_to = (int64_t)json_number_value(json_object_get(h, "to_seq"));
            if (json_is_number(json_object_get(h, "events")))
                hdr_events = (int64_t)json_number_value(json_object_get(h, "events"));
            /* The tree before the first event: its roots are checked against the signed heads
             * (a forged range cannot reach a signed root). */
            if (json_object_get(h, "tree") &&
                audit_range_from_json(json_object_get(h, "tree"), &v.range) &&
                v.range.size == hdr_from - 1)
                v.tree = true;
        } else {
            audit_verifier_fail(&v, v.last_seq + 1, "line %ld is not an export record", lineno);
        }
        json_decref(obj);
    }
    free(line);
    if (!header && !v.failed)
        audit_verifier_fail(&v, 0, "not an audit export (no header line)");
    /* The header says what the export holds: a file cut short, or grown, is refused. */
    int64_t first = r.events_checked ? v.last_seq - r.events_checked + 1 : 0;
    if (!v.failed && (hdr_events != r.events_checked || (r.events_checked && hdr_from != first) ||
                      (r.events_checked && hdr_to != v.last_seq)))
        audit_verifier_fail(&v, v.last_seq + 1,
                            "the export declares %lld events (seq %lld..%lld) but holds %lld",
                            (long long)hdr_events, (long long)hdr_from, (long long)hdr_to,
                            (long long)r.events_checked);
    /* Only a signature ties the events to the key: every event must be covered by a
     * checkpoint, so the last one must carry one. */
    if (!v.failed && r.events_checked && last_checkpoint != v.last_seq)
        audit_verifier_fail(&v, last_checkpoint + 1,
                            "events after seq %lld are not covered by a signed checkpoint",
                            (long long)last_checkpoint);
    audit_verifier_finish(&v);
    json_t *rep = dcms_audit_report_json(&r);
    if (rep) {
        json_object_set_new(rep, "first_seq", json_integer(first));
        char *s = json_dumps(rep, JSON_INDENT(2));
        if (s)
            printf("%s\n", s);
        free(s);
        json_decref(rep);
    }
    return r.ok ? 0 : 1;
}

/*
 * A slice (GET /api/v1/contracts/{id}/audit, or the "audit" member of an
 * evidence bundle): `head` holds what was read of it already. Frees `head`.
 */
static int verify_slice(FILE *in, const unsigned char pk[DCMS_SIGN_PUBLIC_LEN], char *head,
                        ssize_t n)
{
    struct dcms_buf b;
    dcms_buf_init(&b, CLI_SLICE_MAX);
    bool ok = n <= 0 || dcms_buf_append(&b, head, (size_t)n) == DCMS_OK;
    free(head);
    char chunk[65536];
    size_t got;
    while (ok && (got = fread(chunk, 1, sizeof(chunk), in)) > 0)
        ok = dcms_buf_append(&b, chunk, got) == DCMS_OK;
    if (!ok) {
        dcms_buf_release(&b);
        fprintf(stderr, "dcmsd audit verify: the input is too large\n");
        return 2;
    }
    json_t *doc = NULL;
    struct dcms_audit_report r;
    if (dcms_json_parse((struct dcms_str){b.ptr, b.len}, 0, &doc, NULL) || !json_is_object(doc)) {
        /* Like an export whose first line is not its header: it does not verify. */
        memset(&r, 0, sizeof(r));
        snprintf(r.reason, sizeof(r.reason), "%s", "not an audit export or slice");
    } else {
        json_t *slice = doc;
        if (!json_object_get(doc, "events") && json_is_object(json_object_get(doc, "audit")))
            slice = json_object_get(doc, "audit"); /* an evidence bundle */
        dcms_audit_slice_verify(slice, pk, &r);
    }
    dcms_buf_release(&b);
    json_t *rep = dcms_audit_report_json(&r);
    if (rep) {
        json_object_set_new(rep, "kind", json_string("slice"));
        char *s = json_dumps(rep, JSON_INDENT(2));
        if (s)
            printf("%s\n", s);
        free(s);
        json_decref(rep);
    }
    json_decref(doc);
    return r.ok ? 0 : 1;
}

/*
 * `dcmsd audit verify-receipt FILE --public-key KEY`: one receipt (GET
 * /api/v1/audit/events/{id}/receipt) checked with the pinned key only; the
 * key the receipt carries is never trusted (anyone can put theirs there).
 */
static int verify_receipt(const char *path, const unsigned char pk[DCMS_SIGN_PUBLIC_LEN])
{
    json_error_t jerr;
    json_t *doc = strcmp(path, "-") == 0 ? json_loadf(stdin, JSON_REJECT_DUPLICATES, &jerr)
                                         : json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    struct dcms_audit_report r;
    if (!doc) {
        memset(&r, 0, sizeof(r));
        snprintf(r.reason, sizeof(r.reason), "not JSON: %s", jerr.text);
    } else {
        dcms_audit_receipt_verify(doc, pk, &r);
    }
    json_decref(doc);
    json_t *rep = dcms_audit_report_json(&r);
    if (rep) {
        json_object_set_new(rep, "kind", json_string("receipt"));
        char *out = json_dumps(rep, JSON_INDENT(2));
        if (out)
            printf("%s\n", out);
        free(out);
        json_decref(rep);
    }
    return r.ok ? 0 : 1;
}

int dcms_audit_cli(int argc, char **argv)
{
    bool receipt = argc >= 2 && strcmp(argv[1], "verify-receipt") == 0;
    if (argc < 2 || (strcmp(argv[1], "verify") != 0 && !receipt))
        return usage();
    static const struct option opts[] = {{"public-key", required_argument, NULL, 'k'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *key = NULL;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc - 1, argv + 1, "k:h", opts, NULL)) != -1) {
        if (ch == 'k')
            key = optarg;
        else
            return usage();
    }
    if (!key || optind != argc - 2)
        return usage();
    const char *path = argv[1 + optind];
    unsigned char pk[DCMS_SIGN_PUBLIC_LEN];
    if (!load_key(key, pk)) {
        fprintf(stderr, "dcmsd audit verify: --public-key is not a base64 Ed25519 public key\n");
        return 2;
    }
    if (receipt)
        return verify_receipt(path, pk);
    FILE *in = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (!in) {
        fprintf(stderr, "dcmsd audit verify: cannot open %s\n", path);
        return 2;
    }
    /* An export's first line is its header; anything else is read whole as a slice. */
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, in);
    json_t *first = n > 0 ? json_loadb(line, (size_t)n, 0, NULL) : NULL;
    bool is_export = json_is_object(first) && json_object_get(first, "export");
    json_decref(first);
    int status = is_export ? verify_file(in, pk, line, cap, n) : verify_slice(in, pk, line, n);
    if (in != stdin)
        fclose(in);
    return status;
}
