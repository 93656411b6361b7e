# clsgw for Yocto / OpenEmbedded. Drop this file into a layer (recipes-connectivity/clsgw/)
# and set SRC_URI to where your copy of the clsgw repository lives.
SUMMARY = "clsgw: CLS gateway for German smart metering (HKS3/HKS4/HKS5 over the SMGW's HAN)"
DESCRIPTION = "A privilege-separated gateway that carries a controllable device's connections \
through a Smart Meter Gateway's CLS proxy channel (mutually authenticated TLS 1.2, TR-03116-3)."
HOMEPAGE = "https://example.invalid/clsgw"
# Set to the project's license when packaging.
LICENSE = "CLOSED"

SRC_URI = "git://example.invalid/clsgw.git;protocol=https;branch=main"
SRCREV = "${AUTOREV}"
PV = "0.1+git${SRCPV}"
S = "${WORKDIR}/git"

# mbedtls: meta-oe's mbedtls 3.6 (scarthgap and later). clsgw builds with mbedTLS 3.6.x only
# (README, TLS library) and with MBEDTLS=system uses the target's library. It assumes the
# recipe's default PACKAGECONFIG ("shared-libs programs"; neither is needed, and the static
# libraries clsgw-worker links are built either way) and the library's default configuration:
# lib/tls/remote_pk.c stops the build if a bbappend turns on MBEDTLS_USE_PSA_CRYPTO or
# MBEDTLS_ECP_RESTARTABLE. The default configuration grants a client's max_fragment_length
# (docs/conformance.md); unset MBEDTLS_SSL_MAX_FRAGMENT_LENGTH in a bbappend to stay in the profile.
# libinih and nlohmann-json: meta-oe.
DEPENDS = "mbedtls libseccomp libcap-ng libinih nlohmann-json"

inherit systemd useradd

# Build only the programs (the tests need the build machine's tools) with the cross toolchain.
# The worker links mbedTLS and friends statically (README, Installing): the recipe is rebuilt
# whenever one of those changes, as they are in DEPENDS. WORKER_STATIC=no trades that for
# about 150 KiB per open channel.
EXTRA_OEMAKE = "MBEDTLS='system' VERSION='${PV}' CXX='${CXX}' CC='${CC}' AR='${AR}' OPT='-O2' LDFLAGS='${LDFLAGS} -pie -Wl,-z,relro,-z,now' \
                PREFIX='${prefix}' SBINDIR='${sbindir}' BINDIR='${bindir}' LIBEXECDIR='${libexecdir}/clsgw' \
                MANDIR='${mandir}' DOCDIR='${docdir}/clsgw' UNITDIR='${systemd_system_unitdir}' \
                SYSUSERSDIR='${nonarch_libdir}/sysusers.d' TMPFILESDIR='${nonarch_libdir}/tmpfiles.d' \
                SYSCONFDIR='${sysconfdir}' BUILD='${B}/build'"

do_compile() {
    oe_runmake programs
}

do_install() {
    oe_runmake install DESTDIR='${D}'
}

USERADD_PACKAGES = "${PN}"
GROUPADD_PARAM:${PN} = "--system clsgw; --system clsgw-signer-clients"
USERADD_PARAM:${PN} = "--system --no-create-home --home-dir / --shell /sbin/nologin clsgw-worker; \
                       --system --no-create-home --home-dir / --shell /sbin/nologin --groups clsgw clsgw-signer"

SYSTEMD_SERVICE:${PN} = "clsgwd.service clsgw-signer.socket clsgw-signer.service"
SYSTEMD_AUTO_ENABLE = "enable"

FILES:${PN} += "${libexecdir}/clsgw ${systemd_system_unitdir} ${nonarch_libdir}/sysusers.d \
                ${nonarch_libdir}/tmpfiles.d ${sysconfdir}/logrotate.d"
CONFFILES:${PN} = "${sysconfdir}/clsgw/clsgw.ini"
