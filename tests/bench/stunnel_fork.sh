#!/bin/sh
# Builds stunnel in fork mode (one process per connection) for the bench's memory reference:
# Debian's stunnel4 is built with pthreads only. Takes the source of the installed stunnel4
# version from Debian's archive through a temporary deb-src list (the system's apt configuration
# is not touched), checks it against the archive's signed index, and builds it in OUT_DIR.
# Usage: stunnel_fork.sh OUT_DIR   -> OUT_DIR/stunnel, or exit 1 with the reason on stderr.
set -eu
mkdir -p "$1"
out=$(cd "$1" && pwd)
[ -x "$out/stunnel" ] && exit 0
version=$(dpkg-query -W -f '${Version}' stunnel4 2>/dev/null) || { echo "stunnel4 is not installed" >&2; exit 1; }
work="$out.work"
rm -rf "$work"
suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
sh "$(dirname "$0")/../../deps/debian_source.sh" "$work" "$suite" stunnel "stunnel4=$version" --download-only
tar -xzf "$work"/src/stunnel4_*.orig.tar.gz -C "$work/src"
cd "$work"/src/stunnel-*/
./configure --with-threads=fork --disable-libwrap --disable-systemd >"$work/build.log" 2>&1 &&
    make -C src stunnel >>"$work/build.log" 2>&1 ||
    { echo "stunnel did not build (see $work/build.log)" >&2; exit 1; }
src/stunnel -version 2>&1 | grep -q 'Threading:FORK' || { echo "the build is not in fork mode" >&2; exit 1; }
cp src/stunnel "$out/stunnel"
rm -rf "$work"
