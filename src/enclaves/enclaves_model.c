/*
 * The enclave model: the lifecycle as one transition table and the rules a
 * configuration's values must follow (image names, addresses, signers).
 * Decoding a configuration from JSON is enclaves_json.c. Pure: no store, no
 * backend, no HTTP.
 */
#include <arpa/inet.h>
#include <ctype.h>

#include "enclaves/enclaves_int.h"

/* ---- the state machine ---- */

static const char *const status_names[] = {
    [ENCLAVE_INITIALIZING] = "initializing", [ENCLAVE_RUNNING] = "running",
    [ENCLAVE_SUSPENDED] = "suspended",       [ENCLAVE_FAILED] = "failed",
    [ENCLAVE_TERMINATED] = "terminated",     [ENCLAVE_LOST] = "lost",
};

static const char *const event_names[] = {
    [ENCLAVE_EV_STARTED] = "start",       [ENCLAVE_EV_SUSPEND] = "suspend",
    [ENCLAVE_EV_RESUME] = "resume",       [ENCLAVE_EV_ATTEST] = "attest",
    [ENCLAVE_EV_UPDATE] = "update",       [ENCLAVE_EV_FAIL] = "fail",
    [ENCLAVE_EV_TERMINATE] = "terminate", [ENCLAVE_EV_LOSE] = "lose",
};

/*
 * Every allowed (from, event) → to, and who may trigger it. Anything not
 * here is refused. Terminated has no row: it is final. Failed only leads
 * to Terminated (the workload is already stopped; terminating records the
 * end and frees the scratch directory).
 */
static const struct {
    enum enclave_status from;
    enum enclave_event ev;
    enum enclave_status to;
    unsigned who;
} transitions[] = {
    {ENCLAVE_INITIALIZING, ENCLAVE_EV_STARTED, ENCLAVE_RUNNING, ENCLAVE_BY_SYSTEM},
    {ENCLAVE_INITIALIZING, ENCLAVE_EV_FAIL, ENCLAVE_FAILED, ENCLAVE_BY_SYSTEM},
    {ENCLAVE_INITIALIZING, ENCLAVE_EV_TERMINATE, ENCLAVE_TERMINATED,
     ENCLAVE_BY_SYSTEM | ENCLAVE_BY_OWNER},
    {ENCLAVE_RUNNING, ENCLAVE_EV_SUSPEND, ENCLAVE_SUSPENDED, ENCLAVE_BY_SYSTEM | ENCLAVE_BY_OWNER},
    {ENCLAVE_RUNNING, ENCLAVE_EV_ATTEST, ENCLAVE_RUNNING, ENCLAVE_BY_OWNER},
    {ENCLAVE_RUNNING, ENCLAVE_EV_FAIL, ENCLAVE_FAILED, ENCLAVE_BY_SYSTEM},
    {ENCLAVE_RUNNING, ENCLAVE_EV_TERMINATE, ENCLAVE_TERMINATED,
     ENCLAVE_BY_SYSTEM | ENCLAVE_BY_OWNER},
    {ENCLAVE_SUSPENDED, ENCLAVE_EV_RESUME, ENCLAVE_RUNNING, ENCLAVE_BY_SYSTEM | ENCLAVE_BY_OWNER},
    {ENCLAVE_SUSPENDED, ENCLAVE_EV_UPDATE, ENCLAVE_SUSPENDED, ENCLAVE_BY_OWNER},
    {ENCLAVE_SUSPENDED, ENCLAVE_EV_FAIL, ENCLAVE_FAILED, ENCLAVE_BY_SYSTEM},
    {ENCLAVE_SUSPENDED, ENCLAVE_EV_TERMINATE, ENCLAVE_TERMINATED,
     ENCLAVE_BY_SYSTEM | ENCLAVE_BY_OWNER},
    {ENCLAVE_FAILED, ENCLAVE_EV_TERMINATE, ENCLAVE_TERMINATED,
     ENCLAVE_BY_SYSTEM | ENCLAVE_BY_OWNER},
    /* The owner node stopped beating (dcms/nodes.h): nothing can reach the workload any more. */
    {ENCLAVE_INITIALIZING, ENCLAVE_EV_LOSE, ENCLAVE_LOST, ENCLAVE_BY_SYSTEM},
    {ENCLAVE_RUNNING, ENCLAVE_EV_LOSE, ENCLAVE_LOST, ENCLAVE_BY_SYSTEM},
    {ENCLAVE_SUSPENDED, ENCLAVE_EV_LOSE, ENCLAVE_LOST, ENCLAVE_BY_SYSTEM},
    {ENCLAVE_LOST, ENCLAVE_EV_TERMINATE, ENCLAVE_TERMINATED, ENCLAVE_BY_SYSTEM | ENCLAVE_BY_OWNER},
};
#define NTRANSITIONS (sizeof(transitions) / sizeof(transitions[0]))

const char *enclave_status_name(enum enclave_status s)
{
    return (unsigned)s < ENCLAVE__STATUS_COUNT ? status_names[s] : "unknown";
}

bool enclave_status_parse(const char *s, enum enclave_status *out)
{
    for (unsigned i = 0; s && i < ENCLAVE__STATUS_COUNT; i++) {
        if (strcmp(status_names[i], s) == 0) {
            *out = (enum enclave_status)i;
            return true;
        }
    }
    return false;
}

const char *enclave_event_name(enum enclave_event ev)
{
    return (unsigned)ev < ENCLAVE__EVENT_COUNT ? event_names[ev] : "unknown";
}

bool enclave_transition(enum enclave_status from, enum enclave_event ev, unsigned who,
                        enum enclave_status *to)
{
    for (size_t i = 0; i < NTRANSITIONS; i++) {
        if (transitions[i].from == from && transitions[i].ev == ev && (transitions[i].who & who)) {
            *to = transitions[i].to;
            return true;
        }
    }
    return false;
}

void enclave_allowed_events(enum enclave_status from, unsigned who, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < NTRANSITIONS; i++) {
        if (transitions[i].from != from || !(transitions[i].who & who))
            continue;
        int w = snprintf(out + n, cap - n, "%s%s", n ? ", " : "", event_names[transitions[i].ev]);
        if (w < 0 || (size_t)w >= cap - n)
            break;
        n += (size_t)w;
    }
    if (!n)
        snprintf(out, cap, "none");
}

/* ---- configuration ---- */

bool enclave_image_name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n < 1 || n > ENCLAVE_IMAGE_MAX || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-')
            return false;
    return true;
}

void enclave_netpol_default(struct enclave_netpol *n)
{
    memset(n, 0, sizeof(*n));
    n->encryption_required = true;
    n->min_tls = 13;
}

void enclave_secpol_default(struct enclave_secpol *s)
{
    memset(s, 0, sizeof(*s));
    s->secure_boot = true;
    s->measured_boot = true;
}

/* An address with an optional /prefix, IPv4 or IPv6, host bits allowed. */
bool enclave_cidr_ok(const char *s)
{
    char buf[64];
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    if (n == 0 || n >= sizeof(buf))
        return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    unsigned char a[16];
    unsigned max;
    if (inet_pton(AF_INET, buf, a) == 1)
        max = 32;
    else if (inet_pton(AF_INET6, buf, a) == 1)
        max = 128;
    else
        return false;
    if (!slash)
        return true;
    const char *p = slash + 1;
    if (!*p || strlen(p) > 3 || (p[0] == '0' && p[1]))
        return false;
    unsigned v = 0;
    for (; *p; p++) {
        if (!isdigit((unsigned char)*p))
            return false;
        v = v * 10 + (unsigned)(*p - '0');
    }
    return v <= max;
}

/* A PCR8 value as the policy lists it: SHA-384 in lowercase hex. */
bool enclave_signer_ok(const char *s, size_t len)
{
    if (len != ENCLAVE_SIGNER_HEX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!isdigit((unsigned char)s[i]) && !(s[i] >= 'a' && s[i] <= 'f'))
            return false;
    return true;
}
