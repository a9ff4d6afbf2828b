# tests/reliability.mk: reliability tests (tests/reliability/README.md),
# included by tests/tests.mk.
#
#   make test-reliability        all of the below (about 5-6 minutes); each keeps going
#                                after a failure, the target fails at the end
#   make test-programs           CPython's regression tests, git, redis, xz under LD_PRELOAD vs glibc
#   make test-programs-variants  python churn, sort, sqlite on every spec/variants/*.yaml build
#   make test-fuzz               the API fuzzer: libFuzzer for FUZZ_TEST_SECONDS (45), plain driver
#   make fuzz                    libFuzzer for FUZZ_SECONDS (600), corpus kept in build/NAME/reliability
#   make test-asan               ASan+UBSan (runtime compiled in), unit and stress suites under UBSan
#   make test-limits             RLIMIT_AS exhaustion, 1 B and 64 GiB requests (LD_PRELOAD)
#   make test-loading            preloaded, linked in, dlopen()ed, under valgrind memcheck

REL := tests/reliability
REL_BIN := $(BUILD)/reliability
# the runtime compiled into a test binary: everything but the C library names
REL_RT_SRCS := $(filter-out runtime/wrappers.c,$(RUNTIME_SRCS)) $(GEN)/hak_tables.c
REL_RT_DEPS := $(REL_RT_SRCS) $(wildcard runtime/*.h include/*.h) $(GEN)/.stamp
REL_RT_CFLAGS := -std=gnu11 -g -fvisibility=hidden -Iinclude -I$(GEN) -Iruntime
REL_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_SECONDS ?= 600
FUZZ_TEST_SECONDS ?= 45
FUZZ_PLAIN_RUNS ?= 3000
# the first clang that builds and links a libFuzzer harness with ASan and UBSan
FUZZ_CLANG = $(shell for c in clang-14 clang; do command -v $$c >/dev/null && \
	printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }\n' | \
	$$c -x c -fsanitize=fuzzer,address,undefined -o /dev/null - 2>/dev/null && { echo $$c; break; }; done)

.PHONY: test-reliability test-programs test-programs-variants test-fuzz fuzz test-asan test-limits test-loading

test-reliability: deps
	@fail=""; for t in test-limits test-loading test-fuzz test-asan test-programs test-programs-variants; do \
		$(MAKE) --no-print-directory $$t || fail="$$fail $$t"; done; \
	if [ -n "$$fail" ]; then echo "test-reliability: failed:$$fail"; exit 1; fi

# ---- real programs
test-programs: deps $(BUILD)/libhakmem.so
	bash $(REL)/programs.sh $(BUILD)/libhakmem.so

VARIANT_NAMES = $(sort $(basename $(notdir $(wildcard spec/variants/*.yaml))))
test-programs-variants: deps
	@mkdir -p build; for v in $(VARIANT_NAMES); do \
		$(MAKE) -s --no-print-directory VARIANT=$$v build/$$v/libhakmem.so >build/variant-$$v.log 2>&1 || \
			{ echo "FAIL variant $$v: build ($$(tail -n 3 build/variant-$$v.log | tr '\n' ' '))"; exit 1; }; \
		rm -f build/variant-$$v.log; done
	bash $(REL)/programs.sh --variants $(foreach v,$(VARIANT_NAMES),$(v)=build/$(v)/libhakmem.so)

# ---- fuzzing: one harness, three builds
FUZZ_LF := $(REL_BIN)/fuzz_api_libfuzzer
FUZZ_PLAIN := $(REL_BIN)/fuzz_api
FUZZ_ASAN := $(REL_BIN)/fuzz_api_asan
$(FUZZ_LF): $(REL)/fuzz_api.c $(REL_RT_DEPS)
	@mkdir -p $(@D)
	$(FUZZ_CLANG) -O1 $(REL_RT_CFLAGS) -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
		-o $@ $(REL)/fuzz_api.c $(REL_RT_SRCS) -lpthread
$(FUZZ_PLAIN): $(REL)/fuzz_api.c $(REL_RT_DEPS)
	@mkdir -p $(@D)
	$(CC) -O2 -Wall -Wextra $(REL_RT_CFLAGS) -DFUZZ_STANDALONE -o $@ $(REL)/fuzz_api.c $(REL_RT_SRCS) -lpthread
$(FUZZ_ASAN): $(REL)/fuzz_api.c $(REL_RT_DEPS)
	@mkdir -p $(@D)
	$(CC) -O1 $(REL_RT_CFLAGS) $(REL_SAN) -DFUZZ_STANDALONE -o $@ $(REL)/fuzz_api.c $(REL_RT_SRCS) -lpthread

test-fuzz: deps $(FUZZ_PLAIN)
	@clang="$(FUZZ_CLANG)"; if [ -n "$$clang" ]; then $(MAKE) --no-print-directory FUZZ_CLANG=$$clang $(FUZZ_LF); fi; \
	FUZZ_CLANG=$$clang bash $(REL)/fuzz.sh $(REL_BIN) $(FUZZ_TEST_SECONDS) $(FUZZ_PLAIN_RUNS)

fuzz: deps $(FUZZ_PLAIN)
	@clang="$(FUZZ_CLANG)"; [ -n "$$clang" ] || { echo "make fuzz: no clang links -fsanitize=fuzzer"; exit 1; }; \
	$(MAKE) --no-print-directory FUZZ_CLANG=$$clang $(FUZZ_LF) && \
	FUZZ_CLANG=$$clang KEEP_CORPUS=1 bash $(REL)/fuzz.sh $(REL_BIN) $(FUZZ_SECONDS) 0

# ---- sanitizers
# ASan+UBSan: the runtime compiled into tests/tsan/mt_hak.c and into the fuzz
# harness, called through the hak_ API (ASan's own malloc stays).
ASAN_MT := $(REL_BIN)/mt_hak_asan
$(ASAN_MT): tests/tsan/mt_hak.c $(REL_RT_DEPS)
	@mkdir -p $(@D)
	$(CC) -O1 $(REL_RT_CFLAGS) $(REL_SAN) -o $@ tests/tsan/mt_hak.c $(REL_RT_SRCS) -lpthread
# UBSan alone replaces no malloc: the whole library, wrappers included, built
# with it; the Check suite links it, the stress programs preload it.
UBSAN_DIR := $(REL_BIN)/ubsan
UBSAN_OBJS := $(RUNTIME_SRCS:runtime/%.c=$(UBSAN_DIR)/%.o) $(UBSAN_DIR)/hak_tables.o
UBSAN_FLAGS := -O1 -g -fsanitize=undefined -fno-sanitize-recover=undefined
$(UBSAN_DIR)/%.o: runtime/%.c $(wildcard runtime/*.h include/*.h) $(GEN)/.stamp
	@mkdir -p $(@D)
	$(CC) $(UBSAN_FLAGS) $(HAK_CFLAGS) -c -o $@ $<
$(UBSAN_DIR)/hak_tables.o: $(GEN)/hak_tables.c $(GEN)/.stamp
	@mkdir -p $(@D)
	$(CC) $(UBSAN_FLAGS) $(HAK_CFLAGS) -c -o $@ $<
$(UBSAN_DIR)/libhakmem.so: $(UBSAN_OBJS)
	$(CC) -shared -fsanitize=undefined -Wl,-soname,libhakmem.so -Wl,-z,now -o $@ $(UBSAN_OBJS) -lpthread
$(UBSAN_DIR)/libhakmem.a: $(UBSAN_OBJS)
	rm -f $@ && ar rcs $@ $(UBSAN_OBJS)
$(UBSAN_DIR)/unit: $(UNIT_SRCS) $(UBSAN_DIR)/libhakmem.a
	$(CC) $(UBSAN_FLAGS) -std=gnu11 -Iinclude -I$(GEN) -Iruntime \
		-fno-builtin-malloc -fno-builtin-free -fno-builtin-calloc -fno-builtin-realloc \
		-o $@ $(UNIT_SRCS) $(UBSAN_DIR)/libhakmem.a $$(pkg-config --cflags --libs check) -lpthread

test-asan: deps $(ASAN_MT) $(FUZZ_ASAN) $(UBSAN_DIR)/unit $(UBSAN_DIR)/libhakmem.so
	bash $(REL)/sanitizers.sh $(REL_BIN)

# ---- limits and loading
$(REL_BIN)/limits: $(REL)/limits.c
	@mkdir -p $(@D)
	$(CC) -O1 -g -std=gnu11 -Wall -Wextra -fno-builtin-malloc -fno-builtin-calloc -fno-builtin-realloc \
		-fno-builtin-free -o $@ $< -ldl -lpthread

test-limits: deps $(BUILD)/libhakmem.so $(REL_BIN)/limits
	LD_PRELOAD=$(LIB_SO_ABS) $(REL_BIN)/limits

# this build, and the tlsstatic variant (options.tls: static, which dlopen() refuses) when it exists
LOADING_VARIANTS = $(filter-out $(VARIANT),$(basename $(notdir $(wildcard spec/variants/tlsstatic.yaml))))
test-loading: deps $(BUILD)/libhakmem.so
	@for v in $(LOADING_VARIANTS); do $(MAKE) -s --no-print-directory VARIANT=$$v build/$$v/libhakmem.so; done
	bash $(REL)/loading.sh $(BUILD) $(GEN) $(foreach v,$(LOADING_VARIANTS),build/$(v) generated/$(v))
