# hakmem: a malloc whose hot paths are generated from a spec.
#
#   make [VARIANT=NAME]   generate generated/NAME/ and build build/NAME/libhakmem.{so,a}
#   make test             everything that must pass (installs what it needs: make deps)
#   make bench            hakmem against glibc, mimalloc, jemalloc, tcmalloc (bench/bench.mk)
#   make install PREFIX=/usr/local
#
# VARIANT=default is spec/classes.yaml; any other NAME is spec/variants/NAME.yaml.

VARIANT ?= default
SPEC := $(if $(filter default,$(VARIANT)),spec/classes.yaml,spec/variants/$(VARIANT).yaml)
GEN := generated/$(VARIANT)
BUILD := build/$(VARIANT)
PREFIX ?= /usr/local

# The first python3 that has Jinja2 and PyYAML (Debian's /usr/bin/python3 gets
# them from python3-jinja2 / python3-yaml).  Recursive (=): evaluated after
# `make deps` has run.
PYTHON = $(or $(shell for p in python3 /usr/bin/python3; do \
	$$p -c 'import jinja2, yaml' 2>/dev/null && { echo $$p; break; }; done),python3)

CC ?= gcc
CFLAGS ?= -O2 -g
# -z nodelete: a dlclose() must not unmap the purger thread's code.
HAK_CFLAGS := -std=gnu11 -Wall -Wextra -Wshadow -fPIC -fvisibility=hidden \
	-fno-builtin-malloc -fno-builtin-free -fno-builtin-calloc -fno-builtin-realloc \
	-Iinclude -I$(GEN) -Iruntime
RUNTIME_SRCS := $(wildcard runtime/*.c)
OBJS := $(RUNTIME_SRCS:runtime/%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/hak_tables.o
GEN_INPUTS := gen/hakgen $(wildcard gen/*.py) $(wildcard templates/*.j2) \
	spec/classes.yaml $(wildcard spec/variants/*.yaml)
GEN_OUT := $(GEN)/hak_spec.h $(GEN)/hak_front.h $(GEN)/hak_tables.c $(GEN)/spec.json

.PHONY: all deps test test-gen test-bench test-unit test-stress test-integration test-build test-tsan test-metrics test-variants install clean
all: $(BUILD)/libhakmem.so $(BUILD)/libhakmem.a

# ---- generation: hakgen rewrites only the files whose bytes change, so a spec
# edit rebuilds only the objects whose generated headers really changed.
$(GEN)/.stamp: $(GEN_INPUTS) | deps
	$(PYTHON) gen/hakgen generate $(SPEC) $(GEN)
	@touch $@
$(GEN_OUT): $(GEN)/.stamp ;

# ---- the library
$(BUILD)/obj/%.o: runtime/%.c | $(GEN)/.stamp
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(HAK_CFLAGS) -MMD -MP -c -o $@ $<
$(BUILD)/obj/hak_tables.o: $(GEN)/hak_tables.c | $(GEN)/.stamp
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(HAK_CFLAGS) -MMD -MP -c -o $@ $<
$(BUILD)/libhakmem.so: $(OBJS)
	$(CC) $(CFLAGS) -shared -Wl,-soname,libhakmem.so -Wl,-z,now -Wl,-z,nodelete -o $@ $(OBJS) -lpthread
$(BUILD)/libhakmem.a: $(OBJS)
	rm -f $@
	ar rcs $@ $(OBJS)
-include $(OBJS:.o=.d)

# ---- dependencies: installs only what is missing (Debian, as root or via sudo)
deps:
	@missing=""; \
	command -v gcc >/dev/null || missing="$$missing gcc"; \
	command -v pkg-config >/dev/null || missing="$$missing pkg-config"; \
	pkg-config --exists check 2>/dev/null || missing="$$missing check"; \
	for p in python3 /usr/bin/python3; do \
		$$p -c 'import jinja2, yaml' 2>/dev/null && { found=1; break; }; done; \
	[ -n "$$found" ] || missing="$$missing python3 python3-jinja2 python3-yaml"; \
	for t in sqlite3 perl xz git valgrind redis-server clang-14 pgrep; do \
		command -v $$t >/dev/null || \
		missing="$$missing $$(echo $$t | sed 's/^xz$$/xz-utils/; s/^pgrep$$/procps/')"; done; \
	[ -e /usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.fuzzer-x86_64.a ] || \
		ls /usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1 || \
		missing="$$missing libclang-rt-14-dev"; \
	/usr/bin/python3 -c 'import test.test_dict' 2>/dev/null || missing="$$missing libpython3.11-testsuite"; \
	if [ -n "$$missing" ]; then \
		echo "make deps: installing$$missing"; \
		sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
		$$sudo apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$missing >/dev/null; \
	fi

# ---- tests
include tests/tests.mk

# ---- benchmarks
include bench/bench.mk
-include bench/ab.mk
-include bench/tune.mk

# ---- install
install: $(BUILD)/libhakmem.so $(BUILD)/libhakmem.a
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include/hakmem/$(VARIANT)
	install -m 644 $(BUILD)/libhakmem.so $(BUILD)/libhakmem.a $(DESTDIR)$(PREFIX)/lib/
	install -m 644 include/hakmem.h include/hak_abi.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 $(GEN)/hak_spec.h $(GEN)/hak_front.h $(DESTDIR)$(PREFIX)/include/hakmem/$(VARIANT)/
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VARIANT@|$(VARIANT)|g' \
		-e "s|@HASH@|$$(sed -n 's/^#define HAK_SPEC_HASH \"\(.*\)\"/\1/p' $(GEN)/hak_spec.h)|g" \
		hakmem.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/hakmem.pc

clean:
	rm -rf build generated/*/
