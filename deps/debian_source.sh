#!/bin/sh
# Fetches a Debian source package from Debian's archive through a temporary deb-src list (the
# system's apt configuration is not touched); apt checks it against the archive's signed index.
# Used by deps/mbedtls.sh and tests/bench/stunnel_fork.sh.
# Usage: debian_source.sh WORK SUITE NAME PACKAGE [apt-get source options]
#   -> the source in WORK/src (apt's output in WORK/apt.log), or exit 1 with "NAME: reason".
set -eu
work=$1
suite=$2
name=$3
package=$4
shift 4
mkdir -p "$work/lists/partial" "$work/parts" "$work/src"
cat >"$work/parts/src.sources" <<EOS
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $suite
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOS
apt="-o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts=$work/parts -o Dir::State::Lists=$work/lists"
# shellcheck disable=SC2086
apt-get $apt -qq update >"$work/apt.log" 2>&1 ||
    { echo "$name: cannot read Debian's $suite source index (see $work/apt.log)" >&2; exit 1; }
# apt-get source checks the .dsc against the signed index (and, unless told --download-only,
# dpkg-source unpacks it with Debian's patches applied).
# shellcheck disable=SC2086
(cd "$work/src" && apt-get $apt -qq source "$@" "$package") >>"$work/apt.log" 2>&1 ||
    { echo "$name: cannot download the $suite source of $package (see $work/apt.log)" >&2; exit 1; }
