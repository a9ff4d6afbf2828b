# tests/tests.mk: `make test`, included by the top-level Makefile.
#
#   make test              everything below, on the default variant (or VARIANT=NAME)
#   make test-gen          the generator's unittest suite
#   make test-bench        the benchmark tooling's unittest suite (bench/*.py)
#   make test-unit         the runtime's Check suite (libhakmem.a linked in), also under
#                          ulimit -v, and the races of tests/hooks replayed in one thread
#                          (runtime compiled in)
#   make test-stress       multi-threaded stress programs under LD_PRELOAD
#   make test-integration  real programs under LD_PRELOAD, output compared with glibc's
#   make test-build        rebuild dependencies, variants, make install + pkg-config
#   make test-tsan         the multi-threaded paths under ThreadSanitizer (runtime compiled in)
#   make test-metrics      exact counts of a metrics build; no counters in the default
#   make test-variants     every shipped variant builds and passes test-unit; make ab A/A

UNIT_SRCS := $(wildcard tests/unit/*.c)
UNIT_BIN := $(BUILD)/tests/unit
LIB_SO_ABS = $(abspath $(BUILD)/libhakmem.so)

test: deps
	@$(MAKE) --no-print-directory test-gen
	@$(MAKE) --no-print-directory test-bench
	@$(MAKE) --no-print-directory test-unit
	@$(MAKE) --no-print-directory test-stress
	@$(MAKE) --no-print-directory test-tsan
	@$(MAKE) --no-print-directory test-metrics
	@$(MAKE) --no-print-directory test-integration
	@$(MAKE) --no-print-directory test-build
	@$(MAKE) --no-print-directory test-variants
	@$(MAKE) --no-print-directory test-reliability

test-gen: deps
	$(PYTHON) -m unittest discover -s tests/gen -t . -q

test-bench: deps bench-bins
	$(PYTHON) -m unittest discover -s tests/bench -t . -q

$(UNIT_BIN): $(UNIT_SRCS) tests/unit/quiet_class.h $(BUILD)/libhakmem.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -std=gnu11 -Wall -Wextra -Iinclude -I$(GEN) -Iruntime \
		-fno-builtin-malloc -fno-builtin-free -fno-builtin-calloc -fno-builtin-realloc \
		-o $@ $(UNIT_SRCS) $(BUILD)/libhakmem.a $$(pkg-config --cflags --libs check) -lpthread

# Race points: the runtime without wrappers.c, compiled in with HAK_TEST_HOOKS.
HOOKS_BIN := $(BUILD)/tests/hooks
HOOKS_SRCS := $(filter-out runtime/wrappers.c,$(RUNTIME_SRCS)) $(GEN)/hak_tables.c tests/hooks/test_races.c
$(HOOKS_BIN): $(HOOKS_SRCS) tests/unit/quiet_class.h $(wildcard runtime/*.h include/*.h) $(GEN)/.stamp
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -std=gnu11 -Wall -Wextra -fvisibility=hidden -DHAK_TEST_HOOKS -Iinclude \
		-I$(GEN) -Iruntime -o $@ $(HOOKS_SRCS) $$(pkg-config --cflags --libs check) -lpthread

# The Check suite twice: the second time under an address-space limit too
# small for the whole region map, which then covers the low part only.
test-unit: deps $(UNIT_BIN) $(HOOKS_BIN)
	$(UNIT_BIN)
	bash -c 'ulimit -v 1500000 && exec $(UNIT_BIN)'
	$(HOOKS_BIN)

test-stress: deps $(BUILD)/libhakmem.so
	bash tests/stress/run.sh $(LIB_SO_ABS) $(BUILD)/stress
	@echo "# 100,000 short-lived threads, each leaving blocks for main to free:"
	STRESS_SCALE=5 bash tests/stress/run.sh $(LIB_SO_ABS) $(BUILD)/stress -- thread_churn

test-integration: deps $(BUILD)/libhakmem.so
	bash tests/integration/run.sh $(LIB_SO_ABS)

test-build: deps
	bash tests/build/run.sh

# ThreadSanitizer: the runtime without wrappers.c (it must not replace the
# sanitizer's malloc), compiled into the test, which calls the hak_ API.
TSAN_BIN := $(BUILD)/tests/tsan_mt
TSAN_SRCS := $(filter-out runtime/wrappers.c,$(RUNTIME_SRCS)) $(GEN)/hak_tables.c tests/tsan/mt_hak.c
$(TSAN_BIN): $(TSAN_SRCS) $(wildcard runtime/*.h include/*.h) $(GEN)/.stamp
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -O1 -g -fsanitize=thread -fvisibility=hidden -Iinclude -I$(GEN) -Iruntime \
		-o $@ $(TSAN_SRCS) -lpthread

test-tsan: deps $(TSAN_BIN)
	TSAN_OPTIONS="halt_on_error=1 exitcode=66" $(TSAN_BIN)

test-metrics: deps
	PYTHON=$(PYTHON) bash tests/metrics/run.sh

test-variants: deps
	bash tests/variants/run.sh
include tests/reliability.mk
