#!/bin/sh
# Builds Debian's own mbedTLS 3.6 LTS source package (from the trixie suite) into a prefix, for
# Debian 12, whose libmbedtls-dev is the end-of-life 2.28. The source comes from Debian's archive
# through a temporary deb-src list (the system's apt configuration is not touched) and is checked
# by apt against the archive's signed index (deps/debian_source.sh). Debian's patches are
# applied (dpkg-source); the library starts from Debian's configuration and is then trimmed to
# the HAN profile (below; docs/benchmarks.md says what it saves per open channel).
# Static libraries only: the worker links them statically anyway, and the other programs then
# need no run-time library path.
# Usage: mbedtls.sh PREFIX [CC AR]   -> PREFIX/include, PREFIX/lib/libmbed*.a; built once.
set -eu
prefix_arg=$1
cc=${2:-gcc}
ar=${3:-ar}
suite=${MBEDTLS_SUITE:-trixie}
package=mbedtls
mkdir -p "$prefix_arg"
prefix=$(cd "$prefix_arg" && pwd)
[ -f "$prefix/lib/libmbedcrypto.a" ] && [ -f "$prefix/.built" ] && exit 0
# The source is fetched once per tree and shared by the native and the cross build.
cache=${MBEDTLS_SRC_CACHE:-$(dirname "$prefix")/mbedtls-src}
case $cache in /*) ;; *) cache=$(pwd)/$cache ;; esac
if [ ! -f "$cache/.fetched" ]; then
    rm -rf "$cache"
    sh "$(dirname "$0")/debian_source.sh" "$cache" "$suite" mbedtls "$package/$suite"
    touch "$cache/.fetched"
fi
srcdir=$(find "$cache/src" -mindepth 1 -maxdepth 1 -type d -name 'mbedtls-*' | head -n1)
[ -n "$srcdir" ] || { echo "mbedtls: no unpacked source in $cache/src" >&2; exit 1; }
grep -q '^#define MBEDTLS_VERSION_MAJOR  *3$' "$srcdir/include/mbedtls/build_info.h" ||
    { echo "mbedtls: $srcdir is not mbedTLS 3.x" >&2; exit 1; }
# lib/tls/remote_pk.c carries a copy of mbedTLS's private struct mbedtls_pk_info_t: it must match.
here=$(cd "$(dirname "$0")" && pwd)
python3 - "$srcdir/library/pk_wrap.h" "$here/../lib/tls/remote_pk.c" <<'EOP' ||
import re, sys
def layout(text):
    m = re.search(r"struct mbedtls_pk_info_t \{(.*?)\n\};", text, re.S)
    body = re.sub(r"/\*.*?\*/", "", m.group(1), flags=re.S)
    body = re.sub(r"#if defined\(MBEDTLS_ECDSA_C\) && defined\(MBEDTLS_ECP_RESTARTABLE\).*?#endif", "", body, flags=re.S)
    return re.sub(r"\s+", "", body)
sys.exit(0 if layout(open(sys.argv[1]).read()) == layout(open(sys.argv[2]).read()) else 1)
EOP
    { echo "mbedtls: library/pk_wrap.h's mbedtls_pk_info_t differs from lib/tls/remote_pk.c's copy" >&2; exit 1; }
build="$prefix.work"
rm -rf "$build"
cp -a "$srcdir" "$build"
# Debian's configuration first (its debian/rules), so that what Debian 13's libmbedtls-dev has
# and this build keeps behaves alike: deprecated functions warn (fatal under -Werror), threading,
# CMAC (DTLS-SRTP goes again below).
config="python3 $build/scripts/config.py -f $build/include/mbedtls/mbedtls_config.h"
for option in MBEDTLS_DEPRECATED_WARNING MBEDTLS_THREADING_C MBEDTLS_THREADING_PTHREAD MBEDTLS_CMAC_C MBEDTLS_SSL_DTLS_SRTP; do
    $config set $option
done
# The HAN profile (TR-03109-1), TLS 1.2 with ECDHE_ECDSA and AES in GCM or CBC with SHA-256/384
# on brainpoolP256r1/P384r1/P512r1, secp256r1 and secp384r1, is all clsgw, its simulator and a
# conformance scanner built on this library need, as client and server; everything else is off.
# Each worker is a process of its own and every table the library relocates or fills at run time
# is private to it: this is memory per open channel (docs/benchmarks.md). Kept beyond the profile:
# secp521r1 and SHA-1, so that a peer's certificate on them parses and is refused by name
# (cert_outside_profile) rather than as unparsable; renegotiation, which must be there to be
# refused with an alert; threading, CMAC and the rest of Debian's choices that cost nothing per
# channel.
# A TLS 1.2 server built with max_fragment_length grants whatever a client asks, and no setting
# refuses it; the HAN profile has no such extension (docs/conformance.md).
$config unset MBEDTLS_SSL_MAX_FRAGMENT_LENGTH
# TLS 1.3, DTLS and their helpers
for option in MBEDTLS_SSL_PROTO_TLS1_3 MBEDTLS_SSL_TLS1_3_COMPATIBILITY_MODE \
    MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_PSK_ENABLED MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_EPHEMERAL_ENABLED \
    MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_PSK_EPHEMERAL_ENABLED MBEDTLS_HKDF_C \
    MBEDTLS_SSL_PROTO_DTLS MBEDTLS_SSL_DTLS_ANTI_REPLAY MBEDTLS_SSL_DTLS_HELLO_VERIFY MBEDTLS_SSL_DTLS_SRTP \
    MBEDTLS_SSL_DTLS_CLIENT_PORT_REUSE MBEDTLS_SSL_DTLS_CONNECTION_ID MBEDTLS_SSL_DTLS_CONNECTION_ID_COMPAT \
    MBEDTLS_SSL_COOKIE_C MBEDTLS_TIMING_C; do
    $config unset $option
done
# key exchanges other than ECDHE_ECDSA, and RSA, DH and PSK with them
for option in MBEDTLS_KEY_EXCHANGE_PSK_ENABLED MBEDTLS_KEY_EXCHANGE_DHE_PSK_ENABLED \
    MBEDTLS_KEY_EXCHANGE_ECDHE_PSK_ENABLED MBEDTLS_KEY_EXCHANGE_RSA_PSK_ENABLED MBEDTLS_KEY_EXCHANGE_RSA_ENABLED \
    MBEDTLS_KEY_EXCHANGE_DHE_RSA_ENABLED MBEDTLS_KEY_EXCHANGE_ECDHE_RSA_ENABLED \
    MBEDTLS_KEY_EXCHANGE_ECDH_ECDSA_ENABLED MBEDTLS_KEY_EXCHANGE_ECDH_RSA_ENABLED \
    MBEDTLS_RSA_C MBEDTLS_PKCS1_V15 MBEDTLS_PKCS1_V21 MBEDTLS_X509_RSASSA_PSS_SUPPORT MBEDTLS_PK_RSA_ALT_SUPPORT \
    MBEDTLS_GENPRIME MBEDTLS_DHM_C MBEDTLS_ECJPAKE_C; do
    $config unset $option
done
# ciphers, modes and digests outside the profile's suites
for option in MBEDTLS_CAMELLIA_C MBEDTLS_ARIA_C MBEDTLS_DES_C MBEDTLS_CHACHA20_C MBEDTLS_CHACHAPOLY_C \
    MBEDTLS_POLY1305_C MBEDTLS_CCM_C MBEDTLS_NIST_KW_C MBEDTLS_PADLOCK_C \
    MBEDTLS_CIPHER_MODE_CFB MBEDTLS_CIPHER_MODE_OFB MBEDTLS_CIPHER_MODE_XTS MBEDTLS_CIPHER_MODE_CTR \
    MBEDTLS_MD5_C MBEDTLS_RIPEMD160_C MBEDTLS_SHA3_C; do
    $config unset $option
done
# curves that are neither in the profile nor kept for naming (above)
for option in MBEDTLS_ECP_DP_SECP192R1_ENABLED MBEDTLS_ECP_DP_SECP224R1_ENABLED MBEDTLS_ECP_DP_SECP192K1_ENABLED \
    MBEDTLS_ECP_DP_SECP224K1_ENABLED MBEDTLS_ECP_DP_SECP256K1_ENABLED MBEDTLS_ECP_DP_CURVE25519_ENABLED \
    MBEDTLS_ECP_DP_CURVE448_ENABLED; do
    $config unset $option
done
# formats, protocols and features nothing here uses: TLS extensions outside the profile,
# serialised contexts, the library's own session cache (clsgwd keeps the sessions), CRLs and CSRs
# to parse, PKCS#5/7/12, LMS, PSA's key storage, the library's self test
for option in MBEDTLS_SSL_ALPN MBEDTLS_SSL_CONTEXT_SERIALIZATION MBEDTLS_SSL_KEYING_MATERIAL_EXPORT \
    MBEDTLS_SSL_CACHE_C MBEDTLS_X509_CRL_PARSE_C MBEDTLS_X509_CSR_PARSE_C \
    MBEDTLS_PKCS5_C MBEDTLS_PKCS7_C MBEDTLS_PKCS12_C MBEDTLS_LMS_C MBEDTLS_PSA_CRYPTO_STORAGE_C \
    MBEDTLS_PSA_ITS_FILE_C MBEDTLS_SELF_TEST MBEDTLS_VERSION_FEATURES; do
    $config unset $option
done
# The AES tables in read-only data, shared by every worker, instead of built into each worker's
# own memory at its first AES key (~8.5 KiB per process; the same lookups either way).
$config set MBEDTLS_AES_ROM_TABLES
# Debian's hardening flags, as its package is built; -fPIE because every program is a PIE.
flags="-O2 -g -fstack-protector-strong -D_FORTIFY_SOURCE=2 -fPIE -Wformat -Werror=format-security"
make -C "$build/library" -j"${MBEDTLS_JOBS:-2}" CC="$cc" AR="$ar" CFLAGS="$flags" \
    libmbedcrypto.a libmbedx509.a libmbedtls.a >"$build.log" 2>&1 ||
    { echo "mbedtls: the library did not build (see $build.log)" >&2; exit 1; }
rm -rf "$prefix/include" "$prefix/lib"
mkdir -p "$prefix/include" "$prefix/lib"
cp -a "$build/include/mbedtls" "$build/include/psa" "$prefix/include/"
cp "$build/library/libmbedcrypto.a" "$build/library/libmbedx509.a" "$build/library/libmbedtls.a" "$prefix/lib/"
basename "$srcdir" >"$prefix/.built"
rm -rf "$build" "$build.log"
