/* See remote_pk.h for why this file exists and why it is C. */
#include "remote_pk.h"

#include <mbedtls/ecdsa.h>
#include <mbedtls/pk_internal.h>
#include <mbedtls/version.h>
#include <stdlib.h>

#if MBEDTLS_VERSION_NUMBER < 0x021C0000 || MBEDTLS_VERSION_NUMBER >= 0x021D0000
#error "remote_pk.c relies on the mbedtls_pk_info_t layout of mbedTLS 2.28.x"
#endif
#if defined(MBEDTLS_ECP_RESTARTABLE)
#error "remote_pk.c assumes MBEDTLS_ECP_RESTARTABLE is off (as in Debian's build)"
#endif

struct remote_key {
    const mbedtls_pk_context *public_key;
    clsgw_remote_sign_fn sign;
    void *arg;
};

static size_t remote_get_bitlen(const void *ctx)
{
    const struct remote_key *key = ctx;
    return key->public_key ? mbedtls_pk_get_bitlen(key->public_key) : 0;
}

/* ECDSA only: ECDH suites would read the private scalar itself, which is not here. */
static int remote_can_do(mbedtls_pk_type_t type) { return type == MBEDTLS_PK_ECDSA; }

static int remote_verify(void *ctx, mbedtls_md_type_t md_alg, const unsigned char *hash, size_t hash_len,
                         const unsigned char *sig, size_t sig_len)
{
    const struct remote_key *key = ctx;
    if (key->public_key == NULL)
        return MBEDTLS_ERR_PK_BAD_INPUT_DATA;
    return mbedtls_pk_verify((mbedtls_pk_context *)key->public_key, md_alg, hash, hash_len, sig, sig_len);
}

static int remote_sign(void *ctx, mbedtls_md_type_t md_alg, const unsigned char *hash, size_t hash_len,
                       unsigned char *sig, size_t *sig_len, int (*f_rng)(void *, unsigned char *, size_t),
                       void *p_rng)
{
    const struct remote_key *key = ctx;
    size_t bits = remote_get_bitlen(ctx);
    (void)f_rng;
    (void)p_rng;
    *sig_len = 0;
    if (key->sign == NULL || bits == 0)
        return MBEDTLS_ERR_PK_BAD_INPUT_DATA;
    /* mbedTLS 2.28 passes no output size: its buffers hold MBEDTLS_PK_SIGNATURE_MAX_SIZE. */
    if (key->sign(key->arg, md_alg, hash, hash_len, sig, MBEDTLS_ECDSA_MAX_SIG_LEN(bits), sig_len) != 0) {
        *sig_len = 0;
        return MBEDTLS_ERR_PK_HW_ACCEL_FAILED; /* never report success for a failed signature */
    }
    return 0;
}

static void *remote_alloc(void) { return calloc(1, sizeof(struct remote_key)); }
static void remote_free(void *ctx) { free(ctx); }

static const mbedtls_pk_info_t remote_ecdsa_info = {
    .type = MBEDTLS_PK_ECDSA,
    .name = "CLSGW_REMOTE_ECDSA",
    .get_bitlen = remote_get_bitlen,
    .can_do = remote_can_do,
    .verify_func = remote_verify,
    .sign_func = remote_sign,
    .decrypt_func = NULL,
    .encrypt_func = NULL,
    .check_pair_func = NULL,
    .ctx_alloc_func = remote_alloc,
    .ctx_free_func = remote_free,
    .debug_func = NULL,
};

int clsgw_remote_pk_setup(mbedtls_pk_context *pk, const mbedtls_pk_context *public_key,
                          clsgw_remote_sign_fn sign, void *arg)
{
    if (!mbedtls_pk_can_do(public_key, MBEDTLS_PK_ECDSA))
        return MBEDTLS_ERR_PK_TYPE_MISMATCH;
    int ret = mbedtls_pk_setup(pk, &remote_ecdsa_info);
    if (ret != 0)
        return ret;
    struct remote_key *key = pk->pk_ctx;
    key->public_key = public_key;
    key->sign = sign;
    key->arg = arg;
    return 0;
}
