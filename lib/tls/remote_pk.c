/* See remote_pk.h for why this file exists, why it is C and why it copies a private layout. */
#define MBEDTLS_ALLOW_PRIVATE_ACCESS /* pk->pk_ctx: the context of our own key type */
#include "remote_pk.h"

#include <mbedtls/ecdsa.h>
#include <mbedtls/error.h>
#include <mbedtls/version.h>
#include <stdlib.h>

/* The layout below is library/pk_wrap.h's struct mbedtls_pk_info_t of mbedTLS 3.6.0 to 3.6.6
 * (unchanged over that range; deps/mbedtls.sh compares it with the source it builds). Any other
 * version must be checked against its pk_wrap.h before this guard is widened. */
#if MBEDTLS_VERSION_NUMBER < 0x03060000 || MBEDTLS_VERSION_NUMBER >= 0x03070000
#error "remote_pk.c relies on the mbedtls_pk_info_t layout of mbedTLS 3.6.x"
#endif
#if defined(MBEDTLS_ECP_RESTARTABLE)
#error "remote_pk.c assumes MBEDTLS_ECP_RESTARTABLE is off (as in Debian's and meta-oe's builds)"
#endif
#if defined(MBEDTLS_USE_PSA_CRYPTO)
#error "remote_pk.c assumes MBEDTLS_USE_PSA_CRYPTO is off: TLS then signs through mbedtls_pk_sign"
#endif

/* BEGIN copy of mbedTLS 3.6 library/pk_wrap.h (MBEDTLS_ECP_RESTARTABLE off) */
struct mbedtls_pk_info_t {
    mbedtls_pk_type_t type;
    const char *name;
    size_t (*get_bitlen)(mbedtls_pk_context *pk);
    int (*can_do)(mbedtls_pk_type_t type);
    int (*verify_func)(mbedtls_pk_context *pk, mbedtls_md_type_t md_alg, const unsigned char *hash, size_t hash_len,
                       const unsigned char *sig, size_t sig_len);
    int (*sign_func)(mbedtls_pk_context *pk, mbedtls_md_type_t md_alg, const unsigned char *hash, size_t hash_len,
                     unsigned char *sig, size_t sig_size, size_t *sig_len,
                     int (*f_rng)(void *, unsigned char *, size_t), void *p_rng);
    int (*decrypt_func)(mbedtls_pk_context *pk, const unsigned char *input, size_t ilen, unsigned char *output,
                        size_t *olen, size_t osize, int (*f_rng)(void *, unsigned char *, size_t), void *p_rng);
    int (*encrypt_func)(mbedtls_pk_context *pk, const unsigned char *input, size_t ilen, unsigned char *output,
                        size_t *olen, size_t osize, int (*f_rng)(void *, unsigned char *, size_t), void *p_rng);
    int (*check_pair_func)(mbedtls_pk_context *pub, mbedtls_pk_context *prv,
                           int (*f_rng)(void *, unsigned char *, size_t), void *p_rng);
    void *(*ctx_alloc_func)(void);
    void (*ctx_free_func)(void *ctx);
    void (*debug_func)(mbedtls_pk_context *pk, mbedtls_pk_debug_item *items);
};
/* END copy */

struct remote_key {
    const mbedtls_pk_context *public_key;
    clsgw_remote_sign_fn sign;
    void *arg;
};

static const struct remote_key *key_of(const mbedtls_pk_context *pk) { return pk->pk_ctx; }

static size_t remote_get_bitlen(mbedtls_pk_context *pk)
{
    const struct remote_key *key = key_of(pk);
    return key->public_key ? mbedtls_pk_get_bitlen(key->public_key) : 0;
}

/* ECDSA only: ECDH suites would read the private scalar itself, which is not here. */
static int remote_can_do(mbedtls_pk_type_t type) { return type == MBEDTLS_PK_ECDSA; }

static int remote_verify(mbedtls_pk_context *pk, mbedtls_md_type_t md_alg, const unsigned char *hash,
                         size_t hash_len, const unsigned char *sig, size_t sig_len)
{
    const struct remote_key *key = key_of(pk);
    if (key->public_key == NULL)
        return MBEDTLS_ERR_PK_BAD_INPUT_DATA;
    return mbedtls_pk_verify((mbedtls_pk_context *)key->public_key, md_alg, hash, hash_len, sig, sig_len);
}

static int remote_sign(mbedtls_pk_context *pk, mbedtls_md_type_t md_alg, const unsigned char *hash,
                       size_t hash_len, unsigned char *sig, size_t sig_size, size_t *sig_len,
                       int (*f_rng)(void *, unsigned char *, size_t), void *p_rng)
{
    const struct remote_key *key = key_of(pk);
    (void)f_rng;
    (void)p_rng;
    *sig_len = 0;
    if (key->sign == NULL || remote_get_bitlen(pk) == 0)
        return MBEDTLS_ERR_PK_BAD_INPUT_DATA;
    if (key->sign(key->arg, md_alg, hash, hash_len, sig, sig_size, sig_len) != 0 || *sig_len > sig_size) {
        *sig_len = 0;
        return CLSGW_ERR_REMOTE_SIGN_FAILED; /* never report success for a failed signature */
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
