#!/bin/sh
# Builds Debian's own mbedTLS 3.6 LTS source package (from the trixie suite) into a prefix, for
# Debian 12, whose libmbedtls-dev is the end-of-life 2.28. The source comes from Debian's archive
# through a temporary deb-src list (the system's apt configuration is not touched) and is checked
# by apt against the archive's signed index (deps/debian_source.sh). Debian's
# patches are applied (dpkg-source); the library keeps Debian's configuration but for one option
# (below; docs/conformance.md). Static libraries only: the worker links them statically
# anyway, and the other programs then need no run-time library path.
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
# Debian's configuration (its debian/rules), so that this build and Debian 13's libmbedtls-dev
# behave alike: deprecated functions warn (fatal under -Werror), threading, CMAC, DTLS-SRTP.
config="python3 $build/scripts/config.py -f $build/include/mbedtls/mbedtls_config.h"
for option in MBEDTLS_DEPRECATED_WARNING MBEDTLS_THREADING_C MBEDTLS_THREADING_PTHREAD MBEDTLS_CMAC_C MBEDTLS_SSL_DTLS_SRTP; do
    $config set $option
done
# One departure: a TLS 1.2 server built with max_fragment_length grants whatever a client asks,
# and no setting refuses it; the HAN profile has no such extension (docs/conformance.md).
$config unset MBEDTLS_SSL_MAX_FRAGMENT_LENGTH
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
