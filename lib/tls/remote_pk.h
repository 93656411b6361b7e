/*
 * A private key that lives in another process: an mbedTLS 3.6 pk whose sign operation is
 * delegated to a callback (the worker's IPC call to clsgw-signer).
 *
 * Why a custom mbedtls_pk_info_t, a copy of a private layout, and not one of mbedTLS's own routes:
 * - MBEDTLS_SSL_ASYNC_PRIVATE serves only TLS 1.2 servers: it cannot sign the client's
 *   CertificateVerify (outbound channels), and it is off in Debian's and meta-oe's builds.
 * - A PSA opaque key with a driver is upstream's supported route, but it needs a library built
 *   with MBEDTLS_USE_PSA_CRYPTO and driver dispatch compiled in; Debian 13's and meta-oe's
 *   libmbedtls have neither, so clsgw could then never use the platform's library.
 * - The pk_info layout is the same from 3.6.0 to 3.6.6 and an LTS branch does not change it:
 *   remote_pk.c refuses to build outside 3.6.x, and deps/mbedtls.sh compares the copy with the
 *   source it builds. A port to mbedTLS 4 (PSA only) replaces these two files.
 * Kept in this one file pair, in C99 (designated initialisers), so that nothing else in clsgw
 * depends on mbedTLS internals.
 */
#ifndef CLSGW_REMOTE_PK_H
#define CLSGW_REMOTE_PK_H

#include <mbedtls/pk.h>
#include <mbedtls/error.h>

/* What a failed remote signature returns into the handshake (mbedTLS 3.6 has no PK_HW_ACCEL). */
#define CLSGW_ERR_REMOTE_SIGN_FAILED MBEDTLS_ERR_PLATFORM_HW_ACCEL_FAILED

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
