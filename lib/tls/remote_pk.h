/*
 * A private key that lives in another process: an mbedTLS 2.28 pk whose sign operation is
 * delegated to a callback (the worker's IPC call to clsgw-signer).
 *
 * Debian 12's libmbedtls has neither the async private-key hook on the client side nor PSA
 * opaque keys, so the only mechanism that works for both the client's CertificateVerify and the
 * server's ServerKeyExchange is a custom mbedtls_pk_info_t. Its layout is internal to mbedTLS,
 * which is why this glue is C99 (designated initialisers) and kept in this one file pair: a port
 * to mbedTLS 3.6 replaces these two files and nothing else.
 */
#ifndef CLSGW_REMOTE_PK_H
#define CLSGW_REMOTE_PK_H

#include <mbedtls/pk.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Signs hash with the remote key; writes a DER ECDSA signature of at most sig_size bytes.
 * Returns 0 on success, non-zero on any failure (the handshake then fails). */
typedef int (*clsgw_remote_sign_fn)(void *arg, mbedtls_md_type_t md_alg, const unsigned char *hash,
                                    size_t hash_len, unsigned char *sig, size_t sig_size, size_t *sig_len);

/* Sets up `pk` as an ECDSA key whose public half is `public_key` (taken from our certificate,
 * which must outlive `pk`) and whose signatures come from `sign`. Returns 0 or an mbedTLS error. */
int clsgw_remote_pk_setup(mbedtls_pk_context *pk, const mbedtls_pk_context *public_key,
                          clsgw_remote_sign_fn sign, void *arg);

#ifdef __cplusplus
}
#endif

#endif
