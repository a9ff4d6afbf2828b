# bench/bench.mk: the benchmark suite, included by the top-level Makefile.
#
# The including Makefile provides VARIANT, BUILD := build/$(VARIANT), the
# targets $(BUILD)/libhakmem.so and $(BUILD)/libhakmem.a, and a phony `deps`.
#
#   make bench [QUICK=1] [BENCH=fixed,mixed] [ROUNDS=N]   all allocators
#   make bench-ir                                         callgrind Ir/pair
#   make bench-floor [QUICK=1] [BENCH=...] [ROUNDS=N]     hakmem and tcmalloc
#                                                         against do-nothing floors
#
# Workload binaries are allocator-independent (the allocator comes through
# LD_PRELOAD) and go to build/bench/; the static specialized build links
# libhakmem.a, so it is per variant: $(BUILD)/bench/fixed_static_SIZE.

VARIANT ?= default
BUILD ?= build/$(VARIANT)
PYTHON ?= python3

BENCH_DIR := build/bench
BENCH_PROGS := fixed mixed mid_mt larson phases large
BENCH_BINS := $(addprefix $(BENCH_DIR)/,$(BENCH_PROGS))
BENCH_HEADERS := bench/src/bench.h bench/src/mailbox.h
# -fno-builtin-*: gcc must not fold a malloc/free pair away or assume things
# about the allocator under test.
BENCH_CFLAGS := -std=c11 -O2 -g -D_GNU_SOURCE -Wall -Wextra \
	-fno-builtin-malloc -fno-builtin-free -fno-builtin-calloc \
	-fno-builtin-realloc

# The static specialized build: the variant's spec with options.tls: static
# (an overlay, below), what spec/README.md names for programs
# linked with libhakmem.a: such a program is never dlopen()ed, so its thread
# block can sit in the executable's own TLS, one %fs-relative access from
# every bin, where the shared library keeps a pointer to it.  A variant that
# has tls: static already gets the same spec.
STATIC_VARIANT := $(VARIANT)-static
STATIC_SPEC := build/$(STATIC_VARIANT).yaml
STATIC_BUILD := build/$(STATIC_VARIANT)
STATIC_LIB := $(STATIC_BUILD)/libhakmem.a
BENCH_STATIC_SIZES := 16 32 64 128 256 512 1024
BENCH_STATIC_BINS := $(BENCH_STATIC_SIZES:%=$(BUILD)/bench/fixed_static_%)
BENCH_STATIC_LOG := $(BUILD)/bench/static-build.log

# The subject's trusted mode: the same spec with free_check: trusted (an
# overlay, below), a row of its own against the best peer that
# shows what guarded mode's checks cost; never counted as a peer (report.py).
TRUSTED_VARIANT := $(VARIANT)-trusted
TRUSTED_SPEC := build/$(TRUSTED_VARIANT).yaml
TRUSTED_SO := build/$(TRUSTED_VARIANT)/libhakmem.so
BENCH_ALLOCS := --peers --alloc hakmem-trusted=$(abspath $(TRUSTED_SO)) \
	--hakmem $(abspath $(BUILD)/libhakmem.so)
BENCH_RUN_FLAGS := $(if $(filter-out 0,$(QUICK)),--quick) \
	$(if $(BENCH),--bench $(BENCH)) $(if $(ROUNDS),--rounds $(ROUNDS))

.PHONY: bench bench-ir bench-bins bench-static bench-peers bench-floor bench-floor-libs bench-trusted FORCE

# The overlays: the variant's spec with one option changed, written into
# build/ (build/$(VARIANT)-trusted.yaml, build/$(VARIANT)-static.yaml).
OVERLAY_OPTION_trusted := free_check: trusted
OVERLAY_OPTION_static := tls: static
build/$(VARIANT)-%.yaml: $(SPEC)
	@mkdir -p $(@D)
	printf 'base: %s\noptions:\n  %s\n' "$(abspath $(SPEC))" "$(OVERLAY_OPTION_$*)" >$@

# A make of overlay $(1) (trusted, static) into build/$(VARIANT)-$(1)/: the
# goals follow the call.  Its own make knows the overlay's sources, and
# touches its outputs only when they changed.
OVERLAY_MAKE = $(MAKE) --no-print-directory -f $(firstword $(MAKEFILE_LIST)) \
	VARIANT=$(VARIANT)-$(1) SPEC=build/$(VARIANT)-$(1).yaml \
	GEN=build/$(VARIANT)-$(1)/generated

bench-trusted: $(TRUSTED_SPEC)
	@$(call OVERLAY_MAKE,trusted) all

bench: deps bench-peers bench-trusted $(BUILD)/libhakmem.so $(BENCH_BINS)
	@mkdir -p $(BUILD)/bench
	@$(MAKE) --no-print-directory -f $(firstword $(MAKEFILE_LIST)) \
		bench-static >$(BENCH_STATIC_LOG) 2>&1 || { \
		rm -f $(BENCH_STATIC_BINS); \
		echo "bench: static specialized build failed, its rows are" \
		     "skipped (see $(BENCH_STATIC_LOG))" >&2; }
	$(PYTHON) bench/run.py $(BENCH_ALLOCS) --static-dir $(BUILD)/bench \
		$(BENCH_RUN_FLAGS)

bench-ir: deps bench-trusted $(BUILD)/libhakmem.so $(BENCH_DIR)/fixed $(BENCH_DIR)/mixed
	@sh bench/install-peers.sh valgrind
	@$(MAKE) --no-print-directory -f $(firstword $(MAKEFILE_LIST)) \
		$(BUILD)/bench/fixed_static_64 >/dev/null 2>&1 || \
		rm -f $(BUILD)/bench/fixed_static_64
	$(PYTHON) bench/ir.py $(BENCH_ALLOCS) --static-dir $(BUILD)/bench

bench-bins: $(BENCH_BINS)

# The do-nothing yardsticks (bench/floor/floor.c): the same loops under a
# thread cache of bare array shape, of bare list shape and of an array with
# its top block apart, beside hakmem and tcmalloc.  By default only the workloads whose blocks the floors cache
# (<= 2 KiB); QUICK, BENCH and ROUNDS as for make bench.
FLOOR_LIBS := $(BENCH_DIR)/floor-array.so $(BENCH_DIR)/floor-list.so $(BENCH_DIR)/floor-top.so
FLOOR_BENCH := fixed,mixed,larson
FLOOR_PEER := $(firstword $(wildcard /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 \
	/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4))

bench-floor-libs: $(FLOOR_LIBS)

bench-floor: deps bench-peers $(BUILD)/libhakmem.so $(BENCH_BINS) $(FLOOR_LIBS)
	$(PYTHON) bench/run.py \
		$(if $(FLOOR_PEER),--alloc tcmalloc=$(FLOOR_PEER)) \
		--alloc floor-array=$(abspath $(BENCH_DIR)/floor-array.so) \
		--alloc floor-list=$(abspath $(BENCH_DIR)/floor-list.so) \
		--alloc floor-top=$(abspath $(BENCH_DIR)/floor-top.so) \
		--hakmem $(abspath $(BUILD)/libhakmem.so) \
		$(if $(BENCH),,--bench $(FLOOR_BENCH)) --out $(BUILD)/bench/floor \
		$(BENCH_RUN_FLAGS)

$(FLOOR_LIBS): $(BENCH_DIR)/floor-%.so: bench/floor/floor.c
	@mkdir -p $(@D)
	$(CC) $(BENCH_CFLAGS) -shared -fPIC -fvisibility=hidden -ftls-model=initial-exec \
		-DFLOOR_LIST=$(if $(filter list,$*),1,0) -DFLOOR_TOP=$(if $(filter top,$*),1,0) -o $@ $<

bench-static: $(BENCH_STATIC_BINS)

# The binaries relink only when the overlay's make changed the archive.
$(STATIC_LIB): $(STATIC_SPEC) FORCE
	@$(call OVERLAY_MAKE,static) $@

# Installs mimalloc, jemalloc, tcmalloc and gnuplot when missing (needs root
# or sudo); a peer that cannot be installed is skipped later, with a note.
bench-peers:
	@sh bench/install-peers.sh

$(BENCH_DIR)/%: bench/src/%.c $(BENCH_HEADERS)
	@mkdir -p $(@D)
	$(CC) $(BENCH_CFLAGS) -pthread -o $@ $<

$(BUILD)/bench/fixed_static_%: bench/src/fixed_static.c bench/src/bench.h \
		$(STATIC_LIB) $(wildcard include/*.h)
	@mkdir -p $(@D)
	$(CC) $(BENCH_CFLAGS) -DBENCH_SIZE=$* -Ibench/src -Iinclude \
		-I$(STATIC_BUILD)/generated -o $@ $< $(STATIC_LIB) -lpthread
