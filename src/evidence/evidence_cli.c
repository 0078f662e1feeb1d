/*
 * `dcmsd evidence verify FILE [--audit-key K] [--attestation-root PEM]`:
 * checks a contract's evidence bundle (GET /api/v1/contracts/{id}/evidence)
 * with nothing but the file, and prints one line per check, "PASS" or
 * "FAIL" and the part it concerns. The keys the checks rest on (the audit
 * checkpoint key, the local attestation root) come in the bundle: their
 * fingerprints are printed so they can be compared out of band, or pinned
 * with --audit-key and --attestation-root. Exit status 0 when every check
 * passes, 1 when one fails, 2 on bad usage or unreadable input.
 */
#include <getopt.h>
#include <stdarg.h>

#include "dcms/attest.h"
#include "dcms/audit.h"
#include "dcms/crypto.h"
#include "dcms/jcs.h"
#include "dcms/json.h"
#include "evidence/evidence.h"
#include "evidence/evidence_int.h"

#define BUNDLE_MAX_BYTES (512u << 20)
#define PEM_MAX_BYTES (64u << 10)

struct tally {
    unsigned pass, fail;
};

static void check(struct tally *t, bool ok, const char *part, const char *fmt, ...)
    DCMS_PRINTF(4, 5);
static void check(struct tally *t, bool ok, const char *part, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("%s %s: ", ok ? "PASS" : "FAIL", part);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    if (ok)
        t->pass++;
    else
        t->fail++;
}

static const char *str(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static bool unhex(const char *s, unsigned char *out, size_t cap, size_t *n)
{
    size_t len = s ? strlen(s) : 0;
    if (len % 2 || len / 2 > cap)
        return false;
    for (size_t i = 0; i < len; i += 2) {
        int hi = hexval(s[i]), lo = hexval(s[i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i / 2] = (unsigned char)(hi << 4 | lo);
    }
    *n = len / 2;
    return true;
}

/* Base64 of any size into a new buffer (NULL on bad input). */
static unsigned char *unb64(const char *s, size_t *n)
{
    size_t len = s ? strlen(s) : 0;
    unsigned char *out = s ? malloc(len / 4 * 3 + 4) : NULL;
    if (out && dcms_b64_decode(out, len / 4 * 3 + 4, s, len, n) != DCMS_OK) {
        free(out);
        out = NULL;
    }
    return out;
}

/* SHA-256 (hex) of the DER inside a PEM certificate: what `openssl x509 -fingerprint` shows. */
static bool pem_fingerprint(const char *pem, char out[65])
{
    const char *b = pem ? strstr(pem, "-----BEGIN CERTIFICATE-----") : NULL;
    const char *e = b ? strstr(b, "-----END CERTIFICATE-----") : NULL;
    if (!e)
        return false;
    b += strlen("-----BEGIN CERTIFICATE-----");
    char *body = malloc((size_t)(e - b) + 1);
    size_t k = 0;
    for (const char *p = b; body && p < e; p++)
        if (*p != '\n' && *p != '\r' && *p != ' ')
            body[k++] = *p;
    if (!body)
        return false;
    body[k] = '\0';
    size_t n = 0;
    unsigned char *der = unb64(body, &n);
    free(body);
    bool ok = der && dcms_digest_sha256_hex(der, n, out) == DCMS_OK;
    free(der);
    return ok;
}

static char *read_all(FILE *f, size_t max, size_t *len)
{
    struct dcms_buf b;
    dcms_buf_init(&b, max);
    char chunk[65536];
    size_t got;
    while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0)
        if (dcms_buf_append(&b, chunk, got)) {
            dcms_buf_release(&b);
            return NULL;
        }
    if (!b.ptr && dcms_buf_append(&b, "", 0)) {
        dcms_buf_release(&b);
        return NULL;
    }
    return dcms_buf_detach(&b, len);
}

/* The signed content: its bytes hash to terms_hash, and the readable copy is those bytes. */
static void check_content(struct tally *t, const json_t *bundle, unsigned char hash[32])
{
    const json_t *sc = json_object_get(bundle, "signed_content");
    const char *terms_hash = str(json_object_get(bundle, "contract"), "terms_hash");
    size_t n = 0;
    unsigned char *bytes = unb64(str(sc, "canonical_base64"), &n);
    char hex[65] = "";
    bool ok = bytes && terms_hash && dcms_digest_sha256(bytes, n, hash) == DCMS_OK;
    if (ok)
        dcms_hex_encode(hex, hash, 32);
    check(t, ok && strcmp(hex, terms_hash) == 0, "signed content",
          "SHA-256 of the canonical bytes is the contract's terms_hash %.16s...",
          terms_hash ? terms_hash : "(missing)");
    struct dcms_buf jcs;
    dcms_buf_init(&jcs, BUNDLE_MAX_BYTES);
    json_t *content = json_object_get(sc, "content");
    bool same = bytes && content && dcms_jcs_canonicalize(content, &jcs, NULL) == DCMS_OK &&
                jcs.len == n && memcmp(jcs.ptr, bytes, n) == 0;
    check(t, same, "signed content",
          "the readable terms are exactly the signed bytes (RFC 8785 form)");
    if (same) {
        const char *ids[] = {"id", "provider_id", "consumer_id"};
        const json_t *c = json_object_get(bundle, "contract");
        bool match = true;
        for (size_t i = 0; i < 3; i++)
            match = match && str(content, ids[i]) && str(c, ids[i]) &&
                    strcmp(str(content, ids[i]), str(c, ids[i])) == 0;
        check(t, match, "signed content", "names this contract and its provider and consumer");
    }
    dcms_buf_release(&jcs);
    free(bytes);
}

static void check_signatures(struct tally *t, const json_t *bundle, const unsigned char hash[32])
{
    char hex[65];
    dcms_hex_encode(hex, hash, 32);
    const json_t *sigs = json_object_get(bundle, "signatures");
    bool provider = false, consumer = false;
    size_t i;
    json_t *s;
    json_array_foreach(sigs, i, s)
    {
        char part[96];
        snprintf(part, sizeof(part), "signature %zu (%s, %s)", i,
                 str(s, "side") ? str(s, "side") : "?", str(s, "type") ? str(s, "type") : "?");
        const char *signed_hash = str(s, "signed_hash"), *type = str(s, "type");
        if (!signed_hash || strcmp(signed_hash, hex) != 0) {
            check(t, false, part, "it signed another hash than the content's");
            continue;
        }
        bool ok = false;
        if (type && strcmp(type, "biometric") == 0) {
            /* The assertion's challenge must be the hash and its UV flag set. Its signature
             * needs the passkey's public key, which the bundle does not carry. */
            const json_t *as = json_object_get(s, "assertion");
            size_t n = 0, m = 0;
            unsigned char *cd = unb64(str(as, "client_data_json"), &n);
            unsigned char *ad = unb64(str(as, "authenticator_data"), &m);
            char want[48];
            dcms_b64_encode(want, hash, 32);
            for (char *p = want; *p; p++)
                *p = *p == '+' ? '-' : *p == '/' ? '_' : *p == '=' ? '\0' : *p;
            json_t *c = cd ? json_loadb((const char *)cd, n, 0, NULL) : NULL;
            ok = c && str(c, "challenge") && strcmp(str(c, "challenge"), want) == 0 && ad &&
                 m >= 37 && (ad[32] & 0x04);
            json_decref(c);
            free(cd);
            free(ad);
            check(t, ok, part,
                  "signer %s: the WebAuthn assertion's challenge is the hash, user verified "
                  "(its signature is checked by dcms with the passkey key, not offline)",
                  str(s, "signer_id") ? str(s, "signer_id") : "?");
        } else {
            size_t pn = 0, sn = 0;
            unsigned char *pk = unb64(str(s, "public_key"), &pn);
            unsigned char *sig = unb64(str(s, "signature"), &sn);
            ok = pk && sig && pn == DCMS_SIGN_PUBLIC_LEN && sn == DCMS_SIGN_BYTES &&
                 dcms_sign_verify(pk, hash, 32, sig);
            char fp[65] = "";
            if (pk && dcms_digest_sha256_hex(pk, pn, fp))
                fp[0] = '\0';
            check(t, ok, part,
                  "Ed25519 signature by %s over the hash, key %s (public key SHA-256 %.16s...)",
                  str(s, "signer_id") ? str(s, "signer_id") : "?",
                  str(s, "key_id") ? str(s, "key_id") : "?", fp[0] ? fp : "(missing)");
            free(pk);
            free(sig);
        }
        if (ok && str(s, "side")) {
            provider = provider || strcmp(str(s, "side"), "provider") == 0;
            consumer = consumer || strcmp(str(s, "side"), "consumer") == 0;
        }
    }
    const char *status = str(json_object_get(bundle, "contract"), "status");
    bool needs_both = status && strcmp(status, "draft") && strcmp(status, "pending_signature");
    if (needs_both)
        check(t, provider && consumer, "signatures",
              "both sides signed the content of this %s contract", status);
}

static void check_enclaves(struct tally *t, const json_t *bundle, const char *root_override)
{
    size_t i;
    json_t *en;
    json_array_foreach(json_object_get(bundle, "enclaves"), i, en)
    {
        char part[96];
        snprintf(part, sizeof(part), "attestation %zu (enclave %.36s)", i,
                 str(en, "enclave_id") ? str(en, "enclave_id") : "?");
        if (!str(en, "document")) {
            printf("NOTE %s: no attestation document was kept for it\n", part);
            continue;
        }
        bool local = str(en, "backend") && strcmp(str(en, "backend"), "local") == 0;
        const char *pem =
            local ? (root_override ? root_override : str(en, "root_pem")) : dcms_aws_nitro_root_g1;
        char fp[65] = "";
        if (!pem || !pem_fingerprint(pem, fp)) {
            check(t, false, part, "no readable attestation root");
            continue;
        }
        size_t n = 0, nn = 0;
        unsigned char *doc = unb64(str(en, "document"), &n);
        unsigned char nonce[DCMS_ATTEST_MAX_FIELD_BYTES];
        struct dcms_attest_verifier *v = NULL;
        struct dcms_attest_report rep;
        memset(&rep, 0, sizeof(rep));
        struct dcms_attest_policy pol;
        dcms_attest_policy_init(&pol);
        pol.max_age_ms = -1; /* checked long after: the chain at the document's own time */
        pol.check_chain_at_now = false;
        pol.allow_debug = true; /* reported below: debug mode shows as zero PCRs */
        if (unhex(str(en, "nonce"), nonce, sizeof(nonce), &nn) && nn) {
            pol.nonce = nonce;
            pol.nonce_len = nn;
        }
        struct dcms_errinfo ei;
        dcms_errinfo_init(&ei, NULL);
        bool ok = doc && pol.nonce &&
                  dcms_attest_verifier_new(pem, strlen(pem), &v, &ei) == DCMS_OK &&
                  dcms_attest_verify(v, doc, n, &pol, &rep) == DCMS_OK && rep.valid;
        const char *why = "";
        for (size_t k = 0; k < rep.nchecks && !*why; k++)
            if (!rep.checks[k].ok)
                why = rep.checks[k].reason;
        char pcr0[2 * DCMS_ATTEST_PCR_MAX_LEN + 1] = "";
        if (ok && rep.doc && (rep.doc->pcr_mask & 1u) &&
            rep.doc->pcrs[0].len <= DCMS_ATTEST_PCR_MAX_LEN)
            dcms_hex_encode(pcr0, rep.doc->pcrs[0].ptr, rep.doc->pcrs[0].len);
        if (ok)
            check(t, true, part,
                  "COSE signature and chain to the %s root (SHA-256 %s), nonce %.16s..., "
                  "PCR0 %.24s...",
                  local ? "local" : "AWS Nitro", fp, str(en, "nonce"), pcr0);
        else
            check(t, false, part, "the document does not verify against the %s root: %s",
                  local ? "local" : "AWS Nitro",
                  !doc         ? "not base64"
                  : !pol.nonce ? "no recorded nonce"
                  : *why       ? why
                               : "refused");
        dcms_attest_report_release(&rep);
        dcms_attest_verifier_free(v);
        free(doc);
    }
}

static bool load_key(const char *b64, unsigned char pk[DCMS_SIGN_PUBLIC_LEN])
{
    size_t n = 0;
    return b64 && dcms_b64_decode(pk, DCMS_SIGN_PUBLIC_LEN, b64, strlen(b64), &n) == DCMS_OK &&
           n == DCMS_SIGN_PUBLIC_LEN;
}

static void check_audit(struct tally *t, const json_t *bundle, const char *pinned)
{
    const json_t *slice = json_object_get(bundle, "audit");
    const char *b64 = str(json_object_get(slice, "proof"), "public_key");
    unsigned char pk[DCMS_SIGN_PUBLIC_LEN];
    if (!load_key(b64, pk)) {
        check(t, false, "audit key", "the bundle carries no audit public key");
        return;
    }
    char fp[65] = "", key_id[17];
    if (dcms_digest_sha256_hex(pk, sizeof(pk), fp))
        fp[0] = '\0';
    dcms_sign_key_id_of(pk, key_id);
    if (pinned) {
        unsigned char want[DCMS_SIGN_PUBLIC_LEN];
        check(t, load_key(pinned, want) && memcmp(want, pk, sizeof(pk)) == 0, "audit key",
              "the bundle's key %s is the one given with --audit-key", b64);
    } else {
        printf("NOTE audit key: %s (key id %s, SHA-256 %s): compare it with GET "
               "/api/v1/audit/public-key or a copy kept elsewhere\n",
               b64, key_id, fp);
    }
    struct dcms_audit_report r;
    dcms_audit_slice_verify(slice, pk, &r);
    check(t, r.ok, "audit", "%lld events, checkpoint and inclusion statement: %s",
          (long long)r.events_checked, r.reason);
    /*
     * Each event must concern this contract, one of its enclaves, or one of its training jobs:
     * a job is the contract's when the slice holds its training.start naming the contract.
     */
    const char *cid = str(json_object_get(bundle, "contract"), "id");
    size_t i, bad = 0;
    json_t *ev, *jobs = json_object();
    json_array_foreach(json_object_get(slice, "events"), i, ev)
    {
        const char *rt = str(ev, "resource_type"), *rid = str(ev, "resource_id");
        const char *of = str(json_object_get(ev, "details"), "contract_id");
        if (jobs && rt && rid && strcmp(rt, "training") == 0 && str(ev, "action") &&
            strcmp(str(ev, "action"), "training.start") == 0 && of && cid && strcmp(of, cid) == 0)
            json_object_set_new(jobs, rid, json_true());
    }
    json_array_foreach(json_object_get(slice, "events"), i, ev)
    {
        const char *rt = str(ev, "resource_type"), *rid = str(ev, "resource_id");
        bool mine = rt && rid && strcmp(rt, "contract") == 0 && cid && strcmp(rid, cid) == 0;
        mine = mine || (rt && rid && strcmp(rt, "training") == 0 && json_object_get(jobs, rid));
        size_t k;
        json_t *en;
        json_array_foreach(json_object_get(bundle, "enclaves"), k, en)
        {
            mine = mine || (rt && rid && strcmp(rt, "enclave") == 0 && str(en, "enclave_id") &&
                            strcmp(rid, str(en, "enclave_id")) == 0);
        }
        bad += !mine;
    }
    check(t, bad == 0, "audit",
          "every event concerns this contract, its enclaves or its %zu training jobs (%zu do not)",
          json_object_size(jobs), bad);
    /*
     * Each signature's, key release's and model download's receipt: its event in the log of a
     * signed tree head, for this contract or one of its jobs.
     */
    size_t nwant = 0, nrc = 0, rbad = 0;
    json_array_foreach(json_object_get(slice, "events"), i, ev)
    {
        const char *action = str(ev, "action");
        nwant += action && (strcmp(action, "contract.sign") == 0 ||
                            strcmp(action, "training.key_release") == 0 ||
                            strcmp(action, "training.model_download") == 0);
    }
    json_t *rc;
    json_array_foreach(json_object_get(bundle, "receipts"), i, rc)
    {
        struct dcms_audit_report rr;
        const json_t *rev = json_object_get(rc, "event");
        const char *action = str(rev, "action"), *rid = str(rev, "resource_id");
        bool ok = dcms_audit_receipt_verify(rc, pk, &rr) && action && rid &&
                  ((strcmp(action, "contract.sign") == 0 && cid && strcmp(rid, cid) == 0) ||
                   ((strcmp(action, "training.key_release") == 0 ||
                     strcmp(action, "training.model_download") == 0) &&
                    json_object_get(jobs, rid)));
        if (!ok)
            printf("     receipt %zu: %s\n", i, rr.ok ? "names another event" : rr.reason);
        rbad += !ok;
        nrc++;
    }
    json_decref(jobs);
    check(t, rbad == 0 && nrc == nwant, "receipts",
          "%zu receipts (signatures, key releases, model downloads) verify against the signed "
          "tree head (%zu such events, %zu bad)",
          nrc, nwant, rbad);
    if (!json_is_true(json_object_get(bundle, "audit_complete")))
        printf("NOTE audit: the bundle holds the first %zu events only (audit_complete false); "
               "page the rest with GET /api/v1/contracts/{id}/audit\n",
               json_array_size(json_object_get(slice, "events")));
}

static int usage(void)
{
    fprintf(stderr, "usage: dcmsd evidence verify FILE [--audit-key KEY] [--attestation-root PEM]\n"
                    "  FILE  a bundle from GET /api/v1/contracts/{id}/evidence; - for stdin\n"
                    "  KEY   pin the audit key (base64, from GET /api/v1/audit/public-key)\n"
                    "  PEM   verify local attestation documents against this root instead of the\n"
                    "        one the bundle carries\n"
                    "Prints one line per check (PASS/FAIL and the part); exit 0 when all pass,\n"
                    "1 when one fails, 2 on bad usage or input.\n");
    return 2;
}

int dcms_evidence_cli(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "verify") != 0)
        return usage();
    static const struct option opts[] = {{"audit-key", required_argument, NULL, 'k'},
                                         {"attestation-root", required_argument, NULL, 'r'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *key = NULL, *root_path = NULL;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc - 1, argv + 1, "k:r:h", opts, NULL)) != -1) {
        if (ch == 'k')
            key = optarg;
        else if (ch == 'r')
            root_path = optarg;
        else
            return usage();
    }
    if (optind != argc - 2)
        return usage();
    const char *path = argv[1 + optind];
    char *root = NULL, *text = NULL;
    size_t len = 0;
    if (root_path) {
        FILE *rf = fopen(root_path, "r");
        root = rf ? read_all(rf, PEM_MAX_BYTES, &len) : NULL;
        if (rf)
            fclose(rf);
        if (!root) {
            fprintf(stderr, "dcmsd evidence verify: cannot read %s\n", root_path);
            return 2;
        }
    }
    FILE *in = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    text = in ? read_all(in, BUNDLE_MAX_BYTES, &len) : NULL;
    if (in && in != stdin)
        fclose(in);
    json_t *bundle = NULL;
    if (!text || dcms_json_parse((struct dcms_str){text, len}, 0, &bundle, NULL) ||
        !json_is_object(bundle)) {
        fprintf(stderr, "dcmsd evidence verify: %s is not a JSON evidence bundle\n", path);
        free(text);
        free(root);
        json_decref(bundle);
        return 2;
    }
    free(text);
    struct tally t = {0, 0};
    const char *type = str(bundle, "type");
    check(&t, type && strcmp(type, DCMS_EVIDENCE_TYPE) == 0, "bundle",
          "type %s, contract %s, generated %s", type ? type : "(missing)",
          str(json_object_get(bundle, "contract"), "id")
              ? str(json_object_get(bundle, "contract"), "id")
              : "(missing)",
          str(bundle, "generated_at") ? str(bundle, "generated_at") : "(missing)");
    unsigned char hash[32] = {0};
    check_content(&t, bundle, hash);
    check_signatures(&t, bundle, hash);
    check_enclaves(&t, bundle, root);
    check_audit(&t, bundle, key);
    printf("%s: %u checks passed, %u failed\n", t.fail ? "FAIL" : "PASS", t.pass, t.fail);
    json_decref(bundle);
    free(root);
    return t.fail ? 1 : 0;
}
