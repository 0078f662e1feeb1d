/*
 * Ed25519 signing keys (src/crypto/sign.c): RFC 8032 test vectors through
 * the key-file loader, verification of tampered messages and signatures,
 * and many processes creating one new key file at once.
 */
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dcms/crypto.h"
#include "testutil.h"

static void unhex(const char *h, unsigned char *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        assert_int_equal(sscanf(h + 2 * i, "%2x", &v), 1);
        out[i] = (unsigned char)v;
    }
}

static void write_key_file(const char *path, const unsigned char seed[32])
{
    char b64[64];
    dcms_b64_encode(b64, seed, 32);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "%s\n", b64);
    fclose(f);
    assert_int_equal(chmod(path, 0600), 0);
}

static void rfc8032_vectors(void **state)
{
    (void)state;
    assert_int_equal(dcms_crypto_init(), DCMS_OK);
    char *tsv = dcms_test_read_file(DCMS_VECTORS_DIR "/ed25519/rfc8032.tsv", NULL);
    char dir[] = "/tmp/dcms-sign-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof(path), "%s/k.key", dir);
    int checked = 0;
    for (char *line = tsv, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        if (line[0] == '#' || !line[0])
            continue;
        char *f[6] = {0};
        char *p = line;
        for (int i = 0; i < 6; i++) {
            f[i] = p;
            p = strchr(p, '\t');
            if (!p)
                break;
            *p++ = '\0';
        }
        assert_non_null(f[5]);
        unsigned char seed[32], pk[32], sig[64], got[64];
        size_t mlen = strtoul(f[3], NULL, 10);
        unsigned char *msg = malloc(mlen + 1);
        unhex(f[1], seed, 32);
        unhex(f[2], pk, 32);
        unhex(f[4], msg, mlen);
        unhex(f[5], sig, 64);

        unlink(path);
        write_key_file(path, seed);
        struct dcms_sign_key *k = NULL;
        struct dcms_errinfo ei;
        dcms_errinfo_init(&ei, NULL);
        assert_int_equal(dcms_sign_key_load_or_create(path, &k, &ei), DCMS_OK);
        assert_memory_equal(dcms_sign_key_public(k), pk, 32);
        assert_int_equal(dcms_sign_detached(k, msg, mlen, got), DCMS_OK);
        assert_memory_equal(got, sig, 64); /* Ed25519 is deterministic */
        assert_true(dcms_sign_verify(pk, msg, mlen, sig));
        got[0] ^= 1;
        assert_false(dcms_sign_verify(pk, msg, mlen, got));
        if (mlen) {
            msg[mlen - 1] ^= 0x80;
            assert_false(dcms_sign_verify(pk, msg, mlen, sig));
        }
        dcms_sign_key_free(k);
        free(msg);
        checked++;
    }
    assert_int_equal(checked, 5);
    unlink(path);
    rmdir(dir);
    free(tsv);
}

/* Eight processes start at once on one new key path: all get the same key. */
static void concurrent_creation(void **state)
{
    (void)state;
    char dir[] = "/tmp/dcms-sign-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof(path), "%s/keys/k.key", dir);
    int fds[8][2];
    for (int i = 0; i < 8; i++) {
        assert_int_equal(pipe(fds[i]), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            struct dcms_sign_key *k = NULL;
            struct dcms_errinfo ei;
            dcms_errinfo_init(&ei, NULL);
            if (dcms_crypto_init() || dcms_sign_key_load_or_create(path, &k, &ei))
                _exit(1);
            ssize_t w = write(fds[i][1], dcms_sign_key_id(k), 16);
            _exit(w == 16 ? 0 : 1);
        }
        close(fds[i][1]);
    }
    char first[17] = {0};
    for (int i = 0; i < 8; i++) {
        int st;
        assert_true(wait(&st) > 0);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    for (int i = 0; i < 8; i++) {
        char id[17] = {0};
        assert_int_equal(read(fds[i][0], id, 16), 16);
        close(fds[i][0]);
        if (i == 0)
            memcpy(first, id, 17);
        assert_string_equal(id, first);
    }
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    unlink(path);
    snprintf(path, sizeof(path), "%s/keys", dir);
    assert_int_equal(rmdir(path), 0); /* no temporary files left behind */
    rmdir(dir);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(rfc8032_vectors),
    cmocka_unit_test(concurrent_creation),
};

DCMS_TEST_MAIN(tests)
