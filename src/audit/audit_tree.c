/*
 * The Merkle tree of the audit log (RFC 9162 section 2.1): leaf and node
 * hashes, the compact range (the roots of the complete subtrees a tree of
 * any size splits into, left to right) that the sequencer and the verifier
 * carry from one leaf to the next, the inclusion and consistency proofs
 * built from stored complete-subtree hashes, their verification, and the
 * signed tree head.
 *
 * A leaf is the RFC 8785 canonical JSON of an event without its `hash`
 * (the bytes whose SHA-256 is that hash); its leaf hash is
 * SHA-256(0x00 || leaf) and a node's SHA-256(0x01 || left || right).
 */
#include "audit/audit_int.h"
#include "dcms/jcs.h"

void audit_leaf_hash(const void *p, size_t n, unsigned char out[AUDIT_HASH_LEN])
{
    static const unsigned char zero = 0x00;
    struct dcms_sha256 s;
    dcms_sha256_init(&s);
    dcms_sha256_update(&s, &zero, 1);
    dcms_sha256_update(&s, p, n);
    dcms_sha256_final(&s, out);
}

void audit_node_hash(const unsigned char l[AUDIT_HASH_LEN], const unsigned char r[AUDIT_HASH_LEN],
                     unsigned char out[AUDIT_HASH_LEN])
{
    static const unsigned char one = 0x01;
    struct dcms_sha256 s;
    dcms_sha256_init(&s);
    dcms_sha256_update(&s, &one, 1);
    dcms_sha256_update(&s, l, AUDIT_HASH_LEN);
    dcms_sha256_update(&s, r, AUDIT_HASH_LEN);
    dcms_sha256_final(&s, out);
}

bool audit_hex_decode(const char *hex, unsigned char out[AUDIT_HASH_LEN])
{
    if (!hex || strlen(hex) != 2 * AUDIT_HASH_LEN)
        return false;
    for (size_t i = 0; i < AUDIT_HASH_LEN; i++) {
        unsigned v = 0;
        for (int k = 0; k < 2; k++) {
            char c = hex[2 * i + (size_t)k];
            unsigned d = c >= '0' && c <= '9'   ? (unsigned)(c - '0')
                         : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                                                : 16u;
            if (d > 15)
                return false;
            v = v * 16 + d;
        }
        out[i] = (unsigned char)v;
    }
    return true;
}

enum dcms_err audit_event_hashes(const json_t *body, char hash[65],
                                 unsigned char leaf[AUDIT_HASH_LEN], struct dcms_errinfo *ei)
{
    struct dcms_buf b;
    dcms_buf_init(&b, 64u << 20);
    enum dcms_err e = dcms_jcs_canonicalize(body, &b, ei);
    unsigned char d[DCMS_SHA256_LEN];
    if (!e && (e = dcms_digest_sha256(b.ptr, b.len, d)))
        dcms_err_set(ei, e, NULL);
    if (!e) {
        dcms_hex_encode(hash, d, sizeof(d));
        audit_leaf_hash(b.ptr, b.len, leaf);
    }
    dcms_buf_release(&b);
    return e;
}

/* ---- compact range ---- */

void audit_range_init(struct audit_range *r)
{
    memset(r, 0, sizeof(*r));
}

/* The level of entry i: the i-th set bit of size, from the highest. */
static int entry_level(int64_t size, int i)
{
    for (int level = 62; level >= 0; level--)
        if (size & ((int64_t)1 << level) && i-- == 0)
            return level;
    return -1;
}

size_t audit_range_push(struct audit_range *r, const unsigned char leaf[AUDIT_HASH_LEN],
                        struct audit_tree_node made[AUDIT_TREE_LEVELS])
{
    int64_t index = r->size;
    size_t n = 0;
    memcpy(r->h[r->n], leaf, AUDIT_HASH_LEN);
    r->n++;
    if (made) {
        made[n].level = 0;
        made[n].idx = index;
        memcpy(made[n].hash, leaf, AUDIT_HASH_LEN);
    }
    n++;
    /* Each trailing one bit of the old size is a complete subtree the new leaf pairs with. */
    for (int level = 0; index & ((int64_t)1 << level); level++) {
        audit_node_hash(r->h[r->n - 2], r->h[r->n - 1], r->h[r->n - 2]);
        r->n--;
        if (made) {
            made[n].level = level + 1;
            made[n].idx = (index + 1) / ((int64_t)1 << (level + 1)) - 1;
            memcpy(made[n].hash, r->h[r->n - 1], AUDIT_HASH_LEN);
        }
        n++;
    }
    r->size++;
    return n;
}

void audit_range_root(const struct audit_range *r, unsigned char out[AUDIT_HASH_LEN])
{
    if (r->n == 0) { /* the empty tree: SHA-256 of the empty string */
        struct dcms_sha256 s;
        dcms_sha256_init(&s);
        dcms_sha256_final(&s, out);
        return;
    }
    unsigned char acc[AUDIT_HASH_LEN];
    memcpy(acc, r->h[r->n - 1], AUDIT_HASH_LEN);
    for (int i = r->n - 2; i >= 0; i--)
        audit_node_hash(r->h[i], acc, acc);
    memcpy(out, acc, AUDIT_HASH_LEN);
}

enum dcms_err audit_range_load(int64_t size, audit_node_fn *get, void *ctx, struct audit_range *r,
                               struct dcms_errinfo *ei)
{
    audit_range_init(r);
    int64_t start = 0;
    for (int i = 0;; i++) {
        int level = entry_level(size, i);
        if (level < 0)
            break;
        enum dcms_err e = get(ctx, level, start >> level, r->h[i], ei);
        if (e)
            return e;
        r->n++;
        start += (int64_t)1 << level;
    }
    r->size = size;
    return DCMS_OK;
}

json_t *audit_range_json(const struct audit_range *r)
{
    json_t *hashes = json_array();
    for (int i = 0; hashes && i < r->n; i++) {
        char hex[65];
        dcms_hex_encode(hex, r->h[i], AUDIT_HASH_LEN);
        json_array_append_new(hashes, json_string(hex));
    }
    return json_pack("{s:I, s:o*}", "size", (json_int_t)r->size, "hashes", hashes);
}

bool audit_range_from_json(const json_t *j, struct audit_range *r)
{
    audit_range_init(r);
    json_t *size = json_object_get(j, "size"), *hashes = json_object_get(j, "hashes");
    int64_t n = json_is_integer(size) ? (int64_t)json_integer_value(size)
                : json_is_real(size)  ? (int64_t)json_real_value(size)
                                      : -1;
    if (n < 0 || !json_is_array(hashes))
        return false;
    size_t i;
    json_t *h;
    json_array_foreach(hashes, i, h)
    {
        if (entry_level(n, (int)i) < 0 || !audit_hex_decode(json_string_value(h), r->h[i]))
            return false;
    }
    if (entry_level(n, (int)json_array_size(hashes)) >= 0)
        return false;
    r->n = (int)json_array_size(hashes);
    r->size = n;
    return true;
}

/* ---- proofs from stored complete subtrees ---- */

/* The largest power of two below n (n >= 2). */
static int64_t split_of(int64_t n)
{
    int64_t k = 1;
    while (k * 2 < n)
        k *= 2;
    return k;
}

/* MTH(D[a:b]), a aligned so that every complete subtree met is a stored node. */
static enum dcms_err mth(audit_node_fn *get, void *ctx, int64_t a, int64_t b,
                         unsigned char out[AUDIT_HASH_LEN], struct dcms_errinfo *ei)
{
    int64_t n = b - a;
    if ((n & (n - 1)) == 0 && a % n == 0) {
        int level = 0;
        while (((int64_t)1 << level) < n)
            level++;
        return get(ctx, level, a >> level, out, ei);
    }
    int64_t k = split_of(n);
    unsigned char l[AUDIT_HASH_LEN], r[AUDIT_HASH_LEN];
    enum dcms_err e = mth(get, ctx, a, a + k, l, ei);
    if (!e && !(e = mth(get, ctx, a + k, b, r, ei)))
        audit_node_hash(l, r, out);
    return e;
}

static enum dcms_err add_hash(json_t *path, const unsigned char h[AUDIT_HASH_LEN],
                              struct dcms_errinfo *ei)
{
    char hex[65];
    dcms_hex_encode(hex, h, AUDIT_HASH_LEN);
    return json_array_append_new(path, json_string(hex)) ? dcms_err_set(ei, DCMS_ERR_NOMEM, NULL)
                                                         : DCMS_OK;
}

/* PATH(m, D[a:b]) of RFC 9162 section 2.1.3.1, m relative to a. */
static enum dcms_err path_of(audit_node_fn *get, void *ctx, int64_t m, int64_t a, int64_t b,
                             json_t *path, struct dcms_errinfo *ei)
{
    if (b - a <= 1)
        return DCMS_OK;
    int64_t k = split_of(b - a);
    unsigned char h[AUDIT_HASH_LEN];
    enum dcms_err e;
    if (m < k) {
        if (!(e = path_of(get, ctx, m, a, a + k, path, ei)) &&
            !(e = mth(get, ctx, a + k, b, h, ei)))
            e = add_hash(path, h, ei);
    } else {
        if (!(e = path_of(get, ctx, m - k, a + k, b, path, ei)) &&
            !(e = mth(get, ctx, a, a + k, h, ei)))
            e = add_hash(path, h, ei);
    }
    return e;
}

enum dcms_err audit_tree_inclusion(audit_node_fn *get, void *ctx, int64_t index, int64_t size,
                                   json_t *path, struct dcms_errinfo *ei)
{
    if (index < 0 || index >= size)
        return dcms_err_set(ei, DCMS_ERR_INTERNAL, NULL);
    return path_of(get, ctx, index, 0, size, path, ei);
}

/* SUBPROOF(m, D[a:b], complete) of RFC 9162 section 2.1.4.1, m relative to a. */
static enum dcms_err subproof(audit_node_fn *get, void *ctx, int64_t m, int64_t a, int64_t b,
                              bool complete, json_t *path, struct dcms_errinfo *ei)
{
    unsigned char h[AUDIT_HASH_LEN];
    enum dcms_err e;
    if (m == b - a) {
        if (complete)
            return DCMS_OK;
        if ((e = mth(get, ctx, a, b, h, ei)))
            return e;
        return add_hash(path, h, ei);
    }
    int64_t k = split_of(b - a);
    if (m <= k) {
        if (!(e = subproof(get, ctx, m, a, a + k, complete, path, ei)) &&
            !(e = mth(get, ctx, a + k, b, h, ei)))
            e = add_hash(path, h, ei);
    } else {
        if (!(e = subproof(get, ctx, m - k, a + k, b, false, path, ei)) &&
            !(e = mth(get, ctx, a, a + k, h, ei)))
            e = add_hash(path, h, ei);
    }
    return e;
}

enum dcms_err audit_tree_consistency(audit_node_fn *get, void *ctx, int64_t first, int64_t second,
                                     json_t *path, struct dcms_errinfo *ei)
{
    if (first < 0 || first > second)
        return dcms_err_set(ei, DCMS_ERR_INTERNAL, NULL);
    if (first == 0 || first == second)
        return DCMS_OK;
    return subproof(get, ctx, first, 0, second, true, path, ei);
}

enum dcms_err audit_tree_root(audit_node_fn *get, void *ctx, int64_t size,
                              unsigned char out[AUDIT_HASH_LEN], struct dcms_errinfo *ei)
{
    if (size == 0) {
        struct audit_range r;
        audit_range_init(&r);
        audit_range_root(&r, out);
        return DCMS_OK;
    }
    return mth(get, ctx, 0, size, out, ei);
}

/* ---- proof verification (RFC 9162 sections 2.1.3.2 and 2.1.4.2) ---- */

bool audit_verify_inclusion(int64_t index, int64_t size, const unsigned char leaf[AUDIT_HASH_LEN],
                            const json_t *path, const unsigned char root[AUDIT_HASH_LEN])
{
    if (index < 0 || index >= size || !json_is_array(path))
        return false;
    uint64_t fn = (uint64_t)index, sn = (uint64_t)size - 1;
    unsigned char r[AUDIT_HASH_LEN], p[AUDIT_HASH_LEN];
    memcpy(r, leaf, AUDIT_HASH_LEN);
    size_t i;
    json_t *jp;
    json_array_foreach(path, i, jp)
    {
        if (sn == 0 || !audit_hex_decode(json_string_value(jp), p))
            return false;
        if ((fn & 1) || fn == sn) {
            audit_node_hash(p, r, r);
            if (!(fn & 1))
                while (!(fn & 1) && fn != 0) {
                    fn >>= 1;
                    sn >>= 1;
                }
        } else {
            audit_node_hash(r, p, r);
        }
        fn >>= 1;
        sn >>= 1;
    }
    return sn == 0 && memcmp(r, root, AUDIT_HASH_LEN) == 0;
}

bool audit_verify_consistency(int64_t first, int64_t second,
                              const unsigned char first_root[AUDIT_HASH_LEN],
                              const unsigned char second_root[AUDIT_HASH_LEN], const json_t *path)
{
    if (first < 0 || first > second || !json_is_array(path))
        return false;
    if (first == second)
        return json_array_size(path) == 0 && memcmp(first_root, second_root, AUDIT_HASH_LEN) == 0;
    if (first == 0)
        return json_array_size(path) == 0;
    size_t np = json_array_size(path);
    if (np == 0 || np > 2 * AUDIT_TREE_LEVELS)
        return false;
    unsigned char hashes[2 * AUDIT_TREE_LEVELS + 1][AUDIT_HASH_LEN];
    size_t n = 0;
    if ((first & (first - 1)) == 0)
        memcpy(hashes[n++], first_root, AUDIT_HASH_LEN);
    for (size_t i = 0; i < np; i++)
        if (!audit_hex_decode(json_string_value(json_array_get(path, i)), hashes[n++]))
            return false;
    uint64_t fn = (uint64_t)first - 1, sn = (uint64_t)second - 1;
    while (fn & 1) {
        fn >>= 1;
        sn >>= 1;
    }
    unsigned char fr[AUDIT_HASH_LEN], sr[AUDIT_HASH_LEN];
    memcpy(fr, hashes[0], AUDIT_HASH_LEN);
    memcpy(sr, hashes[0], AUDIT_HASH_LEN);
    for (size_t i = 1; i < n; i++) {
        const unsigned char *c = hashes[i];
        if (sn == 0)
            return false;
        if ((fn & 1) || fn == sn) {
            audit_node_hash(c, fr, fr);
            audit_node_hash(c, sr, sr);
            if (!(fn & 1))
                while (!(fn & 1) && fn != 0) {
                    fn >>= 1;
                    sn >>= 1;
                }
        } else {
            audit_node_hash(sr, c, sr);
        }
        fn >>= 1;
        sn >>= 1;
    }
    return sn == 0 && memcmp(fr, first_root, AUDIT_HASH_LEN) == 0 &&
           memcmp(sr, second_root, AUDIT_HASH_LEN) == 0;
}

/* ---- signed tree heads ---- */

enum dcms_err audit_tree_head_message(int64_t size, const char *root_hash, const char *time,
                                      const char *key_id, struct dcms_buf *out)
{
    json_t *m =
        json_pack("{s:s, s:I, s:s, s:s, s:s}", "type", DCMS_AUDIT_TREE_HEAD_TYPE, "tree_size",
                  (json_int_t)size, "root_hash", root_hash, "time", time, "key_id", key_id);
    if (!m)
        return DCMS_ERR_NOMEM;
    enum dcms_err e = dcms_jcs_canonicalize(m, out, NULL);
    json_decref(m);
    return e;
}

bool audit_tree_head_verify(const json_t *th, const unsigned char pk[DCMS_SIGN_PUBLIC_LEN],
                            int64_t *size, unsigned char root[AUDIT_HASH_LEN])
{
    json_t *js = json_object_get(th, "tree_size");
    int64_t n = json_is_integer(js) ? (int64_t)json_integer_value(js)
                : json_is_real(js)  ? (int64_t)json_real_value(js)
                                    : -1;
    const char *rh = json_string_value(json_object_get(th, "root_hash"));
    const char *time = json_string_value(json_object_get(th, "time"));
    const char *key_id = json_string_value(json_object_get(th, "key_id"));
    const char *sig64 = json_string_value(json_object_get(th, "signature"));
    char want_id[17];
    dcms_sign_key_id_of(pk, want_id);
    if (n < 0 || !audit_hex_decode(rh, root) || !time || !key_id || !sig64 ||
        strcmp(key_id, want_id) != 0)
        return false;
    unsigned char sig[DCMS_SIGN_BYTES];
    size_t siglen = 0;
    struct dcms_buf msg;
    dcms_buf_init(&msg, 4096);
    bool ok = dcms_b64_decode(sig, sizeof(sig), sig64, strlen(sig64), &siglen) == DCMS_OK &&
              siglen == sizeof(sig) &&
              audit_tree_head_message(n, rh, time, key_id, &msg) == DCMS_OK &&
              dcms_sign_verify(pk, msg.ptr, msg.len, sig);
    dcms_buf_release(&msg);
    if (ok)
        *size = n;
    return ok;
}
