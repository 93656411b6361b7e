# clsgw: one entry point. `make demo` and `make check` install what is missing first.
#
#   make            build every program into build/bin/
#   make check      unit, integration and interop tests; ends with "N passed, N failed"
#   make demo       throwaway PKI, SMGW simulator, EMT stand-in, clsgwd: traffic end to end
#   make deps       install the Debian 12 packages the project needs (as root), or print them,
#                   and build mbedTLS 3.6 (MBEDTLS=build, the default) once into build/
#   make check-systemd  clsgw installed into a minimal Debian 12 booted with systemd-nspawn (root)

BUILD    ?= build
CXX      ?= g++
CC       ?= gcc
OPT      ?= -O2
PYTHON   ?= /usr/bin/python3
NPROC    ?= $(shell nproc 2>/dev/null || echo 2)
VERSION  ?= 0.1

# Programs that run on the device link only these Debian libraries.
LIBS     := -lmbedtls -lmbedx509 -lmbedcrypto -lseccomp -lcap-ng -linih

HARDEN   := -fstack-protector-strong -D_FORTIFY_SOURCE=2 -fPIE -fno-plt
WARN     := -Wall -Wextra -Werror -Wshadow -Wformat=2
CXXFLAGS += -std=c++17 $(OPT) -g $(WARN) $(HARDEN) -MMD -MP
CFLAGS   += -std=c99 -D_DEFAULT_SOURCE $(OPT) -g $(WARN) $(HARDEN) -MMD -MP
LDFLAGS  += -pie -Wl,-z,relro,-z,now -Wl,--as-needed

DEB_PACKAGES := g++ make libseccomp-dev libcap-ng-dev libinih-dev \
                doctest-dev nlohmann-json3-dev python3 openssl stunnel4 systemd mandoc clang libclang-rt-14-dev \
                microsocks curl ncat proxychains4 python3-socks gnutls-bin libbotan-2-dev \
                python3-prometheus-client

# mbedTLS 3.6 LTS (clsgw needs 3.6; Debian 12's 2.28 is end of life and no longer builds it).
#   MBEDTLS=build   (default) Debian's own mbedtls 3.6 source package from the trixie suite,
#                   fetched through apt with its signature check and built once by deps/mbedtls.sh
#                   into build/mbedtls (build/arm64/mbedtls for ARCH=arm64), static libraries only
#   MBEDTLS=system  the system's libmbedtls-dev (Debian 13, Yocto with meta-oe's mbedtls 3.6)
MBEDTLS ?= build

# SANITIZE=address,undefined builds everything with those sanitizers into build/sanitize and
# runs the whole suite with them (workers and the signer included).
SANITIZE ?=
ifneq ($(SANITIZE),)
BUILD    := build/sanitize
OPT      := -O1 -fno-omit-frame-pointer -fsanitize=$(SANITIZE) -fno-sanitize-recover=all
LDFLAGS  += -fsanitize=$(SANITIZE)
CFLAGS   += -DCLSGW_SANITIZER_RUNTIME
SAN_SRC  := tests/sanitize/options.c
endif

# ARCH=arm64 cross-builds with Debian's aarch64 toolchain and arm64 multiarch libraries into
# build/arm64; its tests run under qemu-user.
ARCH ?= native
ifeq ($(ARCH),arm64)
CROSS        := aarch64-linux-gnu-
CXX          := $(CROSS)g++
CC           := $(CROSS)gcc
AR           := $(CROSS)ar
BUILD        := build/arm64
EMULATOR     := qemu-aarch64 -L /usr/aarch64-linux-gnu
FOREIGN_ARCH := arm64
DEB_PACKAGES += crossbuild-essential-arm64 libseccomp-dev:arm64 libcap-ng-dev:arm64 \
                libinih-dev:arm64 qemu-user
else ifneq ($(ARCH),native)
$(error ARCH=$(ARCH) is not supported: use native (the default) or arm64)
endif

ifeq ($(MBEDTLS),build)
# One prefix per architecture; the sanitizer build shares the native one (mbedTLS itself is not
# instrumented).
MBEDTLS_PREFIX := build$(if $(FOREIGN_ARCH),/$(ARCH))/mbedtls
# The stamp names the script's content: built once, and again only when deps/mbedtls.sh changes
# (not when a checkout merely touches it).
MBEDTLS_STAMP  := $(MBEDTLS_PREFIX)/.built-$(shell sha256sum deps/mbedtls.sh 2>/dev/null | cut -c1-12)
DEB_PACKAGES   += dpkg-dev debian-archive-keyring
CXXFLAGS       += -isystem $(MBEDTLS_PREFIX)/include
CFLAGS         += -isystem $(MBEDTLS_PREFIX)/include
LDFLAGS        += -L$(MBEDTLS_PREFIX)/lib
else ifeq ($(MBEDTLS),system)
MBEDTLS_STAMP  :=
DEB_PACKAGES   += libmbedtls-dev$(if $(FOREIGN_ARCH),:$(FOREIGN_ARCH))
else
$(error MBEDTLS=$(MBEDTLS) is not supported: use build (the default) or system)
endif

PROGRAMS := clsgwd clsgw-worker clsgw-signer clsgwctl clsgw-smgw-sim clsgw-hanscan
LIB_SRC  := $(wildcard lib/*.cpp lib/tls/*.cpp sandbox/*.cpp)
LIB_CSRC := $(wildcard lib/tls/*.c sandbox/*.c)
LIB_OBJ  := $(LIB_SRC:%.cpp=$(BUILD)/obj/%.o) $(LIB_CSRC:%.c=$(BUILD)/obj/%.o)
UNIT_SRC := $(wildcard tests/unit/*.cpp)

# Installation (FHS). Build and install with the same PREFIX: clsgwd looks for its helpers in
# LIBEXECDIR when they are not next to it.
PREFIX     ?= /usr
SBINDIR    ?= $(PREFIX)/sbin
BINDIR     ?= $(PREFIX)/bin
LIBEXECDIR ?= $(PREFIX)/libexec/clsgw
MANDIR     ?= $(PREFIX)/share/man
DOCDIR     ?= $(PREFIX)/share/doc/clsgw
UNITDIR    ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
SYSCONFDIR ?= /etc
# make install strips the installed programs (24 MB with symbols, about 2 MB without);
# STRIP= (empty) keeps the symbols.
STRIP      ?= $(CROSS)strip
CXXFLAGS += -DCLSGW_LIBEXECDIR='"$(LIBEXECDIR)"' -DCLSGW_VERSION='"$(VERSION)"'
MANPAGES := $(wildcard man/*.[1-8])

SHELL := /bin/bash

.PHONY: all programs deps check check-long check-run check-systemd systemd-root systemd-deps demo demo-run interop-doc clean unit install uninstall
.DEFAULT_GOAL := all

# A Botan 2 peer for the interop tests: native builds with libbotan-2-dev only (the tests skip
# without it); built without the sanitizers, as a foreign peer is not under test.
BOTAN_FLAGS := $(shell pkg-config --cflags --libs botan-2 2>/dev/null)
ifeq ($(ARCH)$(if $(BOTAN_FLAGS),yes,),nativeyes)
INTEROP_PEERS := $(BUILD)/tests/botan-smgw
endif

all: programs $(BUILD)/tests/unit-tests $(BUILD)/tests/clsgw-worker-testhooks $(INTEROP_PEERS)

$(BUILD)/tests/botan-smgw: tests/interop/botan_smgw.cpp
	@mkdir -p $(dir $@)
	g++ -std=c++17 -O1 -o $@ $< $(BOTAN_FLAGS)
programs: $(PROGRAMS:%=$(BUILD)/bin/%)

# Every object depends on the mbedTLS build (not merely its presence): the library's configuration
# shapes its structures, so objects compiled against another build of it must not be linked with it.
$(BUILD)/obj/%.o: %.cpp $(MBEDTLS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -c $< -o $@

$(BUILD)/obj/%.o: %.c $(MBEDTLS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libclsgw.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && $(AR) rcs $@ $^

# The worker, one process per open channel, links its libraries statically: no relocated copies
# of libstdc++ and mbedTLS per process and no dynamic linking per channel (docs/benchmarks.md:
# -150 KiB per open channel, -2 ms per channel setup). The price: a security update of mbedTLS
# needs clsgw rebuilt. WORKER_STATIC=no links it like the others. Sanitizer builds keep them shared.
WORKER_STATIC ?= yes
ifeq ($(SANITIZE)$(WORKER_STATIC),yes)
WORKER_LIBS := -static-libstdc++ -static-libgcc -Wl,-Bstatic $(LIBS) -Wl,-Bdynamic
else
WORKER_LIBS := $(LIBS)
endif

define program
$(BUILD)/bin/$(1): $(patsubst %.cpp,$(BUILD)/obj/%.o,$(wildcard cmd/$(1)/*.cpp)) $(SAN_SRC:%.c=$(BUILD)/obj/%.o) $(BUILD)/libclsgw.a
	@mkdir -p $$(dir $$@)
	$$(CXX) $$(LDFLAGS) -o $$@ $$^ $$(if $$(filter clsgw-worker,$(1)),$$(WORKER_LIBS),$$(LIBS))
endef
$(foreach p,$(PROGRAMS),$(eval $(call program,$(p))))

# The worker built once more with its test hooks: forbidden calls made on purpose after the
# sandbox is up, so the tests can prove the filter kills. Never installed.
WORKER_SRC := $(wildcard cmd/clsgw-worker/*.cpp)
$(BUILD)/obj-testhooks/%.o: %.cpp $(MBEDTLS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -DCLSGW_TEST_HOOKS -c $< -o $@
$(BUILD)/tests/clsgw-worker-testhooks: $(WORKER_SRC:%.cpp=$(BUILD)/obj-testhooks/%.o) $(SAN_SRC:%.c=$(BUILD)/obj/%.o) $(BUILD)/libclsgw.a
	@mkdir -p $(dir $@)
	$(CXX) $(LDFLAGS) -o $@ $^ $(WORKER_LIBS)

$(BUILD)/tests/unit-tests: $(UNIT_SRC:%.cpp=$(BUILD)/obj/%.o) $(BUILD)/libclsgw.a
	@mkdir -p $(dir $@)
	$(CXX) $(LDFLAGS) -o $@ $^ $(LIBS)

deps:
	@if [ -n "$(FOREIGN_ARCH)" ] && ! dpkg --print-foreign-architectures | grep -qx "$(FOREIGN_ARCH)"; then \
	  if [ "$$(id -u)" = 0 ]; then dpkg --add-architecture $(FOREIGN_ARCH) && apt-get update -qq; \
	  else echo "deps: run as root: dpkg --add-architecture $(FOREIGN_ARCH) && apt-get update"; exit 1; fi; \
	fi
	@missing=""; \
	for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
	  echo "deps: installing$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else \
	  echo "deps: missing Debian packages; run as root:"; \
	  echo "  apt-get install$$missing"; \
	  exit 1; \
	fi
	@$(if $(MBEDTLS_STAMP),$(MAKE) -s --no-print-directory $(MBEDTLS_STAMP))

# deps/mbedtls.sh writes which source package it took into PREFIX/.built.
ifneq ($(MBEDTLS_STAMP),)
$(MBEDTLS_STAMP):
	@echo "deps: building mbedTLS 3.6 from Debian's trixie source into $(MBEDTLS_PREFIX)"
	@rm -f $(MBEDTLS_PREFIX)/.built $(MBEDTLS_PREFIX)/.built-* && \
	  MBEDTLS_SRC_CACHE=build/mbedtls-src MBEDTLS_JOBS=$(NPROC) sh deps/mbedtls.sh $(MBEDTLS_PREFIX) $(CC) $(AR) && touch $@
endif

check: deps
	@$(MAKE) --no-print-directory -j$(NPROC) all
	@$(MAKE) --no-print-directory check-run

# The volume test with 1 GiB each way (make check runs it with 64 MiB).
check-long: all
	@CLSGW_DATA_MB=1024 $(PYTHON) tests/run.py --build $(BUILD) -k test_long

check-run:
	@$(PYTHON) tests/run.py --build $(BUILD) $(if $(EMULATOR),--emulator "$(EMULATOR)" --arch $(ARCH)) \
	  $(if $(SANITIZE),--sanitized)

# The real-systemd tier: a debootstrapped Debian 12 (made once, kept in build/systemd/) booted
# with systemd-nspawn, clsgw installed into a fresh copy of it each run (tests/systemd/).
# `make systemd-root` only makes that root (CI starts it early, beside the other tests).
check-systemd systemd-root systemd-deps: DEB_PACKAGES += debootstrap systemd-container
systemd-deps: deps
check-systemd: deps
	@$(MAKE) --no-print-directory -j$(NPROC) programs
	@$(PYTHON) tests/systemd/check_systemd.py --build $(BUILD) --cache build/systemd

systemd-root: deps
	@$(PYTHON) tests/systemd/check_systemd.py --root-only --cache build/systemd

demo: deps
	@$(MAKE) --no-print-directory -j$(NPROC) all
	@$(PYTHON) tests/demo.py --build $(BUILD)

# docs/interop.md from a run of the foreign-peer tests (peer x direction x scenario).
interop-doc: deps
	@$(MAKE) --no-print-directory -j$(NPROC) all
	@$(PYTHON) tests/interop_matrix.py --build $(BUILD)

install: programs
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBEXECDIR) $(DESTDIR)$(UNITDIR) \
	  $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR) $(DESTDIR)$(SYSCONFDIR)/logrotate.d \
	  $(DESTDIR)$(DOCDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8
	install -d -m 0750 $(DESTDIR)$(SYSCONFDIR)/clsgw
	install -d -m 0700 $(DESTDIR)$(SYSCONFDIR)/clsgw/private
	install -m 0755 $(BUILD)/bin/clsgwd $(DESTDIR)$(SBINDIR)/clsgwd
	install -m 0755 $(BUILD)/bin/clsgwctl $(BUILD)/bin/clsgw-smgw-sim $(BUILD)/bin/clsgw-hanscan $(DESTDIR)$(BINDIR)/
	install -m 0755 $(BUILD)/bin/clsgw-worker $(BUILD)/bin/clsgw-signer $(DESTDIR)$(LIBEXECDIR)/
	$(if $(STRIP),$(STRIP) --strip-unneeded $(DESTDIR)$(SBINDIR)/clsgwd $(DESTDIR)$(BINDIR)/clsgwctl \
	  $(DESTDIR)$(BINDIR)/clsgw-smgw-sim $(DESTDIR)$(BINDIR)/clsgw-hanscan $(DESTDIR)$(LIBEXECDIR)/clsgw-worker \
	  $(DESTDIR)$(LIBEXECDIR)/clsgw-signer)
	for u in etc/systemd/*; do \
	  sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@LIBEXECDIR@|$(LIBEXECDIR)|g' $$u > $(DESTDIR)$(UNITDIR)/$${u##*/} \
	    && chmod 0644 $(DESTDIR)$(UNITDIR)/$${u##*/}; \
	done
	install -m 0644 etc/sysusers.d/clsgw.conf $(DESTDIR)$(SYSUSERSDIR)/clsgw.conf
	install -m 0644 etc/tmpfiles.d/clsgw.conf $(DESTDIR)$(TMPFILESDIR)/clsgw.conf
	install -m 0644 etc/logrotate.d/clsgw $(DESTDIR)$(SYSCONFDIR)/logrotate.d/clsgw
	install -m 0644 etc/clsgw.ini $(DESTDIR)$(DOCDIR)/clsgw.ini.example
	test -e $(DESTDIR)$(SYSCONFDIR)/clsgw/clsgw.ini || install -m 0640 etc/clsgw.ini $(DESTDIR)$(SYSCONFDIR)/clsgw/clsgw.ini
	install -m 0644 README.md docs/*.md $(DESTDIR)$(DOCDIR)/
	for m in $(MANPAGES); do install -m 0644 $$m $(DESTDIR)$(MANDIR)/man$${m##*.}/; done

# Leaves /etc/clsgw (configuration and the device key) and the logs in place.
uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/clsgwd $(DESTDIR)$(BINDIR)/clsgwctl $(DESTDIR)$(BINDIR)/clsgw-smgw-sim $(DESTDIR)$(BINDIR)/clsgw-hanscan
	rm -f $(DESTDIR)$(LIBEXECDIR)/clsgw-worker $(DESTDIR)$(LIBEXECDIR)/clsgw-signer
	-rmdir $(DESTDIR)$(LIBEXECDIR)
	for u in etc/systemd/*; do rm -f $(DESTDIR)$(UNITDIR)/$${u##*/}; done
	rm -f $(DESTDIR)$(SYSUSERSDIR)/clsgw.conf $(DESTDIR)$(TMPFILESDIR)/clsgw.conf $(DESTDIR)$(SYSCONFDIR)/logrotate.d/clsgw
	rm -rf $(DESTDIR)$(DOCDIR)
	for m in $(MANPAGES); do rm -f $(DESTDIR)$(MANDIR)/man$${m##*.}/$${m##*/}; done

# Fuzzing (libFuzzer, clang): one target per parser of untrusted bytes, seeds in tests/fuzz/corpus.
#   make fuzz                  each target for FUZZ_SECONDS (default 60), new inputs in build/fuzz/corpus
#   make fuzz FUZZ_SECONDS=5   the short smoke CI runs
FUZZ_SECONDS ?= 60
FUZZ_CXX     ?= clang++
FUZZ_FLAGS   := -std=c++17 -g -O1 -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_TARGETS := $(basename $(notdir $(wildcard tests/fuzz/fuzz_*.cpp)))
FUZZ_LIB     := lib/config.cpp lib/ipc.cpp lib/job.cpp lib/reason.cpp lib/socks5.cpp lib/signer_proto.cpp lib/util.cpp lib/net.cpp lib/log.cpp \
                lib/tls/wire.cpp lib/tls/record_stream.cpp
FUZZ_OBJ     := $(FUZZ_LIB:%.cpp=$(BUILD)/fuzz/obj/%.o)

$(BUILD)/fuzz/obj/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(FUZZ_CXX) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(BUILD)/fuzz/%: tests/fuzz/%.cpp $(FUZZ_OBJ)
	@mkdir -p $(dir $@)
	$(FUZZ_CXX) $(FUZZ_FLAGS) -fsanitize=fuzzer $^ -linih -o $@

# Benchmarks against stunnel and the crypto floor (not part of make check); see docs/benchmarks.md.
BENCH_ARGS ?=
bench: DEB_PACKAGES += gnuplot-nox libssl-dev
bench: deps
	@$(MAKE) --no-print-directory -j$(NPROC) programs $(BUILD)/bench/crypto_floor
	@sh tests/bench/stunnel_fork.sh $(BUILD)/bench/stunnel-fork || echo "bench: no fork-mode stunnel; B3 compares with thread mode only"
	@$(PYTHON) tests/bench/bench.py --build $(BUILD) --floor $(BUILD)/bench/crypto_floor --out $(BUILD)/bench \
	  --stunnel-fork $(BUILD)/bench/stunnel-fork/stunnel $(BENCH_ARGS)

# One audit record per signature: the in-memory chain against the locked append that reads the
# file's last record (tests/bench/audit_append.cpp), on the build folder's file system.
bench-audit: $(BUILD)/bench/audit_append
	@$(BUILD)/bench/audit_append $(BUILD)/bench

$(BUILD)/bench/audit_append: $(BUILD)/obj/tests/bench/audit_append.o $(BUILD)/libclsgw.a
	@mkdir -p $(dir $@)
	$(CXX) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/bench/crypto_floor: tests/bench/crypto_floor.c $(MBEDTLS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LDFLAGS) -lmbedcrypto

.PHONY: bench bench-audit fuzz
.SECONDARY: $(FUZZ_OBJ)
fuzz: deps $(FUZZ_TARGETS:%=$(BUILD)/fuzz/%)
	@set -e; for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(BUILD)/fuzz/corpus/$$t; \
	  echo "fuzz: $$t for $(FUZZ_SECONDS)s"; \
	  $(BUILD)/fuzz/$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -artifact_prefix=$(BUILD)/fuzz/$$t- \
	    $(BUILD)/fuzz/corpus/$$t tests/fuzz/corpus/$$t 2>&1 | grep -E "^(stat::number_of_executed_units|stat::new_units_added|==|SUMMARY|Done)" ; \
	  test $${PIPESTATUS[0]} -eq 0 || { echo "fuzz: $$t found a crash: $(BUILD)/fuzz/$$t-*"; exit 1; }; \
	done

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD)/obj $(BUILD)/obj-testhooks -name '*.d' 2>/dev/null)
