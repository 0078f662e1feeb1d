/*
 * The PKCS#11 keyring: each KEK version is a non-extractable, sensitive
 * AES-256 secret key object in a token, labelled "<prefix>-v<N>". Wrapping
 * a DEK is C_Encrypt with CKM_AES_GCM under that object (a fresh 96-bit IV
 * per wrap, the wrap's associated data as the GCM AAD), unwrapping is
 * C_Decrypt; the KEK never leaves the token. The module is dlopen'ed from
 * the configured path; one logged-in R/W session is shared by all threads
 * and serialized by a mutex (wraps are short and rare next to the work they
 * protect).
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>
#include <sodium.h>

#include "dcms/log.h"
#include "keys/keys_int.h"

struct token {
    void *lib;
    CK_FUNCTION_LIST_PTR f;
    CK_SESSION_HANDLE session;
    bool initialized; /* this keyring called C_Initialize (so C_Finalize at close) */
    bool logged_in;
    pthread_mutex_t mu;
    char prefix[64];
};

static enum dcms_err ckr(struct dcms_errinfo *ei, CK_RV rv, const char *what)
{
    DCMS_LOG(DCMS_LOG_ERROR, "keys", "pkcs11 %s failed: CKR 0x%lx", what, (unsigned long)rv);
    return dcms_err_set(ei, DCMS_ERR_CRYPTO, "pkcs11 %s failed (CKR 0x%lx)", what,
                        (unsigned long)rv);
}

static void label_of(const struct token *t, int64_t version, char out[96])
{
    snprintf(out, 96, "%s-v%" PRId64, t->prefix, version);
}

/* The object handle of KEK `version`, or CK_INVALID_HANDLE. Caller holds t->mu. */
static CK_OBJECT_HANDLE find_key(struct token *t, int64_t version)
{
    char label[96];
    label_of(t, version, label);
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_LABEL, label, strlen(label)},
    };
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    CK_ULONG n = 0;
    if (t->f->C_FindObjectsInit(t->session, tmpl, 2) != CKR_OK)
        return CK_INVALID_HANDLE;
    if (t->f->C_FindObjects(t->session, &h, 1, &n) != CKR_OK || n != 1)
        h = CK_INVALID_HANDLE;
    t->f->C_FindObjectsFinal(t->session);
    return h;
}

/* Reads the user PIN from `path` (mode 0600), trailing newline dropped. */
static enum dcms_err read_pin(const char *path, char *pin, size_t cap, size_t *len,
                              struct dcms_errinfo *ei)
{
    enum dcms_err e = DCMS_OK;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "cannot open PKCS#11 PIN file %s: %s", path,
                            strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077)) {
        e = dcms_err_set(ei, DCMS_ERR_CONFIG,
                         "PKCS#11 PIN file %s must be a regular file of mode 0600", path);
        goto out;
    }
    ssize_t n = read(fd, pin, cap - 1);
    if (n <= 0) {
        e = dcms_err_set(ei, DCMS_ERR_CONFIG, "cannot read PKCS#11 PIN file %s", path);
        goto out;
    }
    while (n > 0 && (pin[n - 1] == '\n' || pin[n - 1] == '\r'))
        n--;
    pin[n] = '\0';
    *len = (size_t)n;
    if (n == 0)
        e = dcms_err_set(ei, DCMS_ERR_CONFIG, "PKCS#11 PIN file %s is empty", path);
out:
    close(fd);
    return e;
}

static void p_close(void *ctx)
{
    struct token *t = ctx;
    if (!t)
        return;
    if (t->f) {
        if (t->logged_in)
            t->f->C_Logout(t->session);
        if (t->session != CK_INVALID_HANDLE)
            t->f->C_CloseSession(t->session);
        if (t->initialized)
            t->f->C_Finalize(NULL);
    }
    if (t->lib)
        dlclose(t->lib);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

/* The slot holding an initialized token labelled `label`. */
static enum dcms_err find_slot(struct token *t, const char *label, CK_SLOT_ID *slot,
                               struct dcms_errinfo *ei)
{
    CK_ULONG n = 0;
    CK_SLOT_ID slots[64];
    CK_RV rv = t->f->C_GetSlotList(CK_TRUE, NULL, &n);
    if (rv != CKR_OK)
        return ckr(ei, rv, "C_GetSlotList");
    if (n > 64)
        n = 64;
    if ((rv = t->f->C_GetSlotList(CK_TRUE, slots, &n)) != CKR_OK)
        return ckr(ei, rv, "C_GetSlotList");
    size_t ll = strlen(label);
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO info;
        if (t->f->C_GetTokenInfo(slots[i], &info) != CKR_OK)
            continue;
        /* Labels are 32 bytes, padded with spaces. */
        size_t tl = sizeof(info.label);
        while (tl > 0 && info.label[tl - 1] == ' ')
            tl--;
        if (tl == ll && memcmp(info.label, label, ll) == 0 &&
            (info.flags & CKF_TOKEN_INITIALIZED)) {
            *slot = slots[i];
            return DCMS_OK;
        }
    }
    return dcms_err_set(ei, DCMS_ERR_CONFIG, "no PKCS#11 token labelled \"%s\"", label);
}

static enum dcms_err p_open(const struct dcms_keys_opts *opts, void **ctx, struct dcms_errinfo *ei)
{
    enum dcms_err e = DCMS_OK;
    char pin[256];
    size_t pin_len = 0;
    CK_RV rv;
    CK_SLOT_ID slot = 0;
    if (!opts->pkcs11_module || !*opts->pkcs11_module)
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "DCMS_PKCS11_MODULE is empty");
    if (!opts->pkcs11_token_label || !*opts->pkcs11_token_label)
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "DCMS_PKCS11_TOKEN_LABEL is empty");
    if (!opts->pkcs11_pin_file || !*opts->pkcs11_pin_file)
        return dcms_err_set(ei, DCMS_ERR_CONFIG, "DCMS_PKCS11_PIN_FILE is empty");
    struct token *t = calloc(1, sizeof(*t));
    if (!t)
        return dcms_err_set(ei, DCMS_ERR_NOMEM, NULL);
    pthread_mutex_init(&t->mu, NULL);
    t->session = CK_INVALID_HANDLE;
    snprintf(t->prefix, sizeof(t->prefix), "%s",
             opts->pkcs11_key_label && *opts->pkcs11_key_label ? opts->pkcs11_key_label
                                                               : "dcms-kek");
    if (!(t->lib = dlopen(opts->pkcs11_module, RTLD_NOW | RTLD_LOCAL))) {
        e = dcms_err_set(ei, DCMS_ERR_CONFIG, "cannot load PKCS#11 module %s", opts->pkcs11_module);
        goto out;
    }
    /* POSIX guarantees a dlsym result converts to a function pointer; ISO C does not. */
    CK_C_GetFunctionList get = NULL;
    void *sym = dlsym(t->lib, "C_GetFunctionList");
    memcpy(&get, &sym, sizeof(get));
    if (!get || get(&t->f) != CKR_OK || !t->f) {
        t->f = NULL;
        e = dcms_err_set(ei, DCMS_ERR_CONFIG, "%s is not a PKCS#11 module", opts->pkcs11_module);
        goto out;
    }
    CK_C_INITIALIZE_ARGS args = {.flags = CKF_OS_LOCKING_OK};
    rv = t->f->C_Initialize(&args);
    if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
        e = ckr(ei, rv, "C_Initialize");
        goto out;
    }
    t->initialized = rv == CKR_OK;
    if ((e = find_slot(t, opts->pkcs11_token_label, &slot, ei)))
        goto out;
    if ((rv = t->f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                                  &t->session)) != CKR_OK) {
        e = ckr(ei, rv, "C_OpenSession");
        goto out;
    }
    if ((e = read_pin(opts->pkcs11_pin_file, pin, sizeof(pin), &pin_len, ei)))
        goto out;
    rv = t->f->C_Login(t->session, CKU_USER, (CK_UTF8CHAR_PTR)pin, pin_len);
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
        e = rv == CKR_PIN_INCORRECT ? dcms_err_set(ei, DCMS_ERR_CONFIG, "the PKCS#11 PIN is wrong")
                                    : ckr(ei, rv, "C_Login");
        goto out;
    }
    t->logged_in = rv == CKR_OK;
out:
    sodium_memzero(pin, sizeof(pin));
    if (e) {
        p_close(t);
        return e;
    }
    *ctx = t;
    return DCMS_OK;
}

static bool p_has(void *ctx, int64_t version)
{
    struct token *t = ctx;
    pthread_mutex_lock(&t->mu);
    bool found = find_key(t, version) != CK_INVALID_HANDLE;
    pthread_mutex_unlock(&t->mu);
    return found;
}

static enum dcms_err p_create(void *ctx, int64_t version, struct dcms_errinfo *ei)
{
    struct token *t = ctx;
    enum dcms_err e = DCMS_OK;
    char label[96];
    label_of(t, version, label);
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_ULONG len = 32;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},     {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_VALUE_LEN, &len, sizeof(len)}, {CKA_TOKEN, &yes, sizeof(yes)},
        {CKA_PRIVATE, &yes, sizeof(yes)},   {CKA_SENSITIVE, &yes, sizeof(yes)},
        {CKA_EXTRACTABLE, &no, sizeof(no)}, {CKA_ENCRYPT, &yes, sizeof(yes)},
        {CKA_DECRYPT, &yes, sizeof(yes)},   {CKA_WRAP, &no, sizeof(no)},
        {CKA_UNWRAP, &no, sizeof(no)},      {CKA_LABEL, label, strlen(label)},
    };
    CK_MECHANISM mech = {CKM_AES_KEY_GEN, NULL, 0};
    CK_OBJECT_HANDLE h;
    pthread_mutex_lock(&t->mu);
    if (find_key(t, version) != CK_INVALID_HANDLE) {
        e = dcms_err_set(ei, DCMS_ERR_CONFLICT, "the token already holds %s", label);
    } else {
        CK_RV rv = t->f->C_GenerateKey(t->session, &mech, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), &h);
        if (rv != CKR_OK)
            e = ckr(ei, rv, "C_GenerateKey");
    }
    pthread_mutex_unlock(&t->mu);
    return e;
}

static enum dcms_err p_destroy(void *ctx, int64_t version, struct dcms_errinfo *ei)
{
    struct token *t = ctx;
    enum dcms_err e = DCMS_OK;
    pthread_mutex_lock(&t->mu);
    CK_OBJECT_HANDLE h = find_key(t, version);
    if (h != CK_INVALID_HANDLE) {
        CK_RV rv = t->f->C_DestroyObject(t->session, h);
        if (rv != CKR_OK)
            e = ckr(ei, rv, "C_DestroyObject");
    }
    pthread_mutex_unlock(&t->mu);
    return e;
}

static enum dcms_err token_crypt(struct token *t, bool enc, int64_t version, unsigned char *iv,
                                 const unsigned char *aad, size_t aad_len, const unsigned char *in,
                                 size_t in_len, unsigned char *out, size_t out_len,
                                 struct dcms_errinfo *ei)
{
    enum dcms_err e = DCMS_OK;
    CK_GCM_PARAMS gp = {
        .pIv = iv,
        .ulIvLen = KEYS_NONCE_LEN,
        .ulIvBits = KEYS_NONCE_LEN * 8,
        .pAAD = (CK_BYTE_PTR)aad,
        .ulAADLen = aad_len,
        .ulTagBits = 128,
    };
    CK_MECHANISM mech = {CKM_AES_GCM, &gp, sizeof(gp)};
    CK_ULONG got = out_len;
    size_t want = enc ? out_len : DCMS_DEK_LEN;
    CK_RV rv;
    pthread_mutex_lock(&t->mu);
    CK_OBJECT_HANDLE h = find_key(t, version);
    if (h == CK_INVALID_HANDLE) {
        e = dcms_err_set(ei, DCMS_ERR_CONFIG, "the token has no KEK version %" PRId64, version);
        goto out;
    }
    rv =
        enc ? t->f->C_EncryptInit(t->session, &mech, h) : t->f->C_DecryptInit(t->session, &mech, h);
    if (rv != CKR_OK) {
        e = ckr(ei, rv, enc ? "C_EncryptInit" : "C_DecryptInit");
        goto out;
    }
    rv = enc ? t->f->C_Encrypt(t->session, (CK_BYTE_PTR)in, in_len, out, &got)
             : t->f->C_Decrypt(t->session, (CK_BYTE_PTR)in, in_len, out, &got);
    if (rv != CKR_OK || got != want) {
        if (!enc)
            DCMS_LOG(DCMS_LOG_DEBUG, "keys", "pkcs11 C_Decrypt: CKR 0x%lx", (unsigned long)rv);
        e = enc ? ckr(ei, rv, "C_Encrypt")
                : dcms_err_set(ei, DCMS_ERR_CRYPTO, "the wrapped data key does not authenticate");
        goto out;
    }
out:
    pthread_mutex_unlock(&t->mu);
    return e;
}

static enum dcms_err p_wrap(void *ctx, int64_t version, const unsigned char *aad, size_t aad_len,
                            const unsigned char dek[DCMS_DEK_LEN],
                            unsigned char out[KEYS_WRAPPED_LEN], struct dcms_errinfo *ei)
{
    randombytes_buf(out, KEYS_NONCE_LEN);
    return token_crypt(ctx, true, version, out, aad, aad_len, dek, DCMS_DEK_LEN,
                       out + KEYS_NONCE_LEN, KEYS_WRAPPED_LEN - KEYS_NONCE_LEN, ei);
}

static enum dcms_err p_unwrap(void *ctx, int64_t version, const unsigned char *aad, size_t aad_len,
                              const unsigned char in[KEYS_WRAPPED_LEN],
                              unsigned char dek[DCMS_DEK_LEN], struct dcms_errinfo *ei)
{
    unsigned char iv[KEYS_NONCE_LEN];
    /* Some tokens (SoftHSM2) want room for the whole input before they know the tag's size. */
    unsigned char buf[KEYS_WRAPPED_LEN];
    memcpy(iv, in, sizeof(iv));
    enum dcms_err e = token_crypt(ctx, false, version, iv, aad, aad_len, in + KEYS_NONCE_LEN,
                                  KEYS_WRAPPED_LEN - KEYS_NONCE_LEN, buf, sizeof(buf), ei);
    if (!e)
        memcpy(dek, buf, DCMS_DEK_LEN);
    sodium_memzero(buf, sizeof(buf));
    if (e)
        sodium_memzero(dek, DCMS_DEK_LEN);
    return e;
}

const struct keyring_ops keyring_pkcs11_ops = {
    .name = "pkcs11",
    .open = p_open,
    .close = p_close,
    .has = p_has,
    .create = p_create,
    .destroy = p_destroy,
    .wrap = p_wrap,
    .unwrap = p_unwrap,
};
