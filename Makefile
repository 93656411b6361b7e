# clsgw: one entry point. `make demo` and `make check` install what is missing first.
#
#   make            build every program into build/bin/
#   make check      unit, integration and interop tests; ends with "N passed, N failed"
#   make demo       throwaway PKI, SMGW simulator, EMT stand-in, clsgwd: traffic end to end
#   make deps       install the Debian 12 packages the project needs (as root), or print them

BUILD    ?= build
CXX      ?= g++
CC       ?= gcc
OPT      ?= -O2
PYTHON   ?= /usr/bin/python3

# Programs that run on the device link only these Debian libraries.
LIBS     := -lmbedtls -lmbedx509 -lmbedcrypto -lseccomp -lcap-ng -linih

HARDEN   := -fstack-protector-strong -D_FORTIFY_SOURCE=2 -fPIE -fno-plt
WARN     := -Wall -Wextra -Werror -Wshadow -Wformat=2
CXXFLAGS += -std=c++17 $(OPT) -g $(WARN) $(HARDEN) -MMD -MP
CFLAGS   += -std=c99 -D_DEFAULT_SOURCE $(OPT) -g $(WARN) $(HARDEN) -MMD -MP
LDFLAGS  += -pie -Wl,-z,relro,-z,now -Wl,--as-needed

DEB_PACKAGES := g++ make libmbedtls-dev libseccomp-dev libcap-ng-dev libinih-dev \
                doctest-dev python3 openssl stunnel4 systemd

PROGRAMS := clsgwd clsgw-worker clsgw-signer clsgwctl clsgw-smgw-sim
LIB_SRC  := $(wildcard lib/*.cpp lib/tls/*.cpp sandbox/*.cpp)
LIB_CSRC := $(wildcard lib/tls/*.c sandbox/*.c)
LIB_OBJ  := $(LIB_SRC:%.cpp=$(BUILD)/obj/%.o) $(LIB_CSRC:%.c=$(BUILD)/obj/%.o)
UNIT_SRC := $(wildcard tests/unit/*.cpp)

.PHONY: all deps check check-run demo demo-run clean unit
.DEFAULT_GOAL := all

all: $(PROGRAMS:%=$(BUILD)/bin/%) $(BUILD)/tests/unit-tests $(BUILD)/tests/clsgw-worker-testhooks

$(BUILD)/obj/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -c $< -o $@

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libclsgw.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

define program
$(BUILD)/bin/$(1): $(patsubst %.cpp,$(BUILD)/obj/%.o,$(wildcard cmd/$(1)/*.cpp)) $(BUILD)/libclsgw.a
	@mkdir -p $$(dir $$@)
	$$(CXX) $$(LDFLAGS) -o $$@ $$^ $$(LIBS)
endef
$(foreach p,$(PROGRAMS),$(eval $(call program,$(p))))

# The worker built once more with its test hooks: forbidden calls made on purpose after the
# sandbox is up, so the tests can prove the filter kills. Never installed.
WORKER_SRC := $(wildcard cmd/clsgw-worker/*.cpp)
$(BUILD)/obj-testhooks/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -DCLSGW_TEST_HOOKS -c $< -o $@
$(BUILD)/tests/clsgw-worker-testhooks: $(WORKER_SRC:%.cpp=$(BUILD)/obj-testhooks/%.o) $(BUILD)/libclsgw.a
	@mkdir -p $(dir $@)
	$(CXX) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/tests/unit-tests: $(UNIT_SRC:%.cpp=$(BUILD)/obj/%.o) $(BUILD)/libclsgw.a
	@mkdir -p $(dir $@)
	$(CXX) $(LDFLAGS) -o $@ $^ $(LIBS)

deps:
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

check: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory check-run

check-run:
	@$(PYTHON) tests/run.py --build $(BUILD)

demo: deps
	@$(MAKE) --no-print-directory all
	@$(PYTHON) tests/demo.py --build $(BUILD)

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD)/obj $(BUILD)/obj-testhooks -name '*.d' 2>/dev/null)
