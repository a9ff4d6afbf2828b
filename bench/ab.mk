# bench/ab.mk: `make ab`, A/B of two variants; included by the top-level Makefile.
#
#   make ab A=default B=NAME [BENCH=fixed64,mixed256] [ROUNDS=7] [METRIC=ops|ir]
#           [QUICK=1] [A_SPEC=PATH] [B_SPEC=PATH]
#
# Builds build/A/libhakmem.so and build/B/libhakmem.so (`make VARIANT=A`,
# `make VARIANT=B`; a variant's spec is spec/classes.yaml for default, else
# spec/variants/NAME.yaml, or the file given as A_SPEC / B_SPEC: a spec kept
# outside spec/variants), then bench/ab.py runs both on the same workloads,
# interleaved, and prints per workload the median of each and the paired
# ratio B/A with a 95% bootstrap interval.  Results: build/ab/A-vs-B.csv.
# METRIC=ir counts instructions per malloc+free pair under callgrind instead.
#
# The including Makefile provides SPEC, GEN, PYTHON, `deps` (which installs
# valgrind) and `bench-bins` (bench/bench.mk).

A ?= default
AB_OUT ?= build/ab

# A spec outside spec/variants (SPEC=PATH on a sub-make's command line) is
# not in GEN_INPUTS: editing it must still regenerate.
$(GEN)/.stamp: $(wildcard $(SPEC))

.PHONY: ab
ab: deps
	@[ -n "$(B)" ] || { echo "make ab: which variant? make ab A=default B=NAME" \
		"[BENCH=...] [ROUNDS=N] [METRIC=ops|ir]" >&2; exit 2; }
	@$(MAKE) --no-print-directory VARIANT=$(A) $(if $(A_SPEC),SPEC=$(A_SPEC)) all
	@$(MAKE) --no-print-directory VARIANT=$(B) $(if $(B_SPEC),SPEC=$(B_SPEC)) all
	@$(MAKE) --no-print-directory bench-bins
	$(PYTHON) bench/ab.py --a $(A)=build/$(A)/libhakmem.so \
		--b $(B)=build/$(B)/libhakmem.so --out $(AB_OUT) \
		$(if $(BENCH),--bench $(BENCH)) $(if $(ROUNDS),--rounds $(ROUNDS)) \
		$(if $(METRIC),--metric $(METRIC)) $(if $(filter-out 0,$(QUICK)),--quick)
