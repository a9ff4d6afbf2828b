# bench/tune.mk: `make tune-demo`, profile-guided tuning end to end; included
# by the top-level Makefile (after bench/bench.mk and bench/ab.mk).
#
#   make tune-demo [ROUNDS=7] [QUICK=1]
#
#  1. builds the metrics variant (spec/variants/metrics.yaml) and the appmix
#     workload (bench/src/appmix.c);
#  2. runs appmix once under the metrics build with
#     HAKMEM_PROFILE=build/tune/appmix.json (the same arguments as its bench
#     run, so the profile is of the very run that is measured);
#  3. gen/hakgen tune build/tune/appmix.json -o spec/variants/appmix.yaml
#     (the variant `make VARIANT=appmix` builds; appmix is deterministic, so
#     the file only changes when the profile, the tuner or the base does,
#     and tests/metrics/run.sh fails until it is written anew; against the
#     default it keeps the 64 grid classes and their lists and chooses the
#     32 mid classes);
#  4. make ab A=default B=appmix BENCH=appmix: the throughput ratio B/A with
#     its 95% interval over interleaved rounds;
#  5. from the same runs (build/ab/default-vs-appmix-rounds.csv) the peak RSS
#     ratio B/A (VmHWM), paired per round, with the same bootstrap interval.
#
# The including Makefile provides PYTHON, `deps`, `ab` (bench/ab.mk) and
# $(BENCH_DIR) with its pattern rule (bench/bench.mk).

TUNE_DIR := build/tune
TUNE_PROFILE := $(TUNE_DIR)/appmix.json
TUNE_SPEC := spec/variants/appmix.yaml
TUNE_AB := build/ab/default-vs-appmix

# appmix is one of the workloads (bench/benchlib.py): build it with the others.
bench-bins: $(BENCH_DIR)/appmix
bench: $(BENCH_DIR)/appmix

# Steps 1 and 2 alone, `make tune-profile [TUNE_PROFILE=path.json]`: also what
# tests/metrics/run.sh checks the committed variant against.
.PHONY: tune-demo tune-profile
tune-profile: deps
	@$(MAKE) --no-print-directory VARIANT=metrics all
	@$(MAKE) --no-print-directory $(BENCH_DIR)/appmix
	@mkdir -p $(dir $(TUNE_PROFILE))
	@echo "tune-profile: profiling appmix under the metrics build"
	HAKMEM_PROFILE=$(TUNE_PROFILE) LD_PRELOAD=$(abspath build/metrics/libhakmem.so) \
		$(BENCH_DIR)/appmix $$($(PYTHON) -c "$$TUNE_ARGS_PY" $(if $(filter-out 0,$(QUICK)),quick))

tune-demo: tune-profile
	$(PYTHON) gen/hakgen tune $(TUNE_PROFILE) -o $(TUNE_SPEC)
	@$(MAKE) --no-print-directory ab A=default B=appmix BENCH=appmix \
		$(if $(ROUNDS),ROUNDS=$(ROUNDS)) $(if $(filter-out 0,$(QUICK)),QUICK=1)
	@$(PYTHON) -c "$$TUNE_REPORT_PY" $(TUNE_AB)

# appmix's arguments in the bench table (full or quick run).
define TUNE_ARGS_PY
import sys; sys.path.insert(0, "bench"); import benchlib
w = next(w for w in benchlib.workloads() if w.name == "appmix")
print(*(w.quick_args if sys.argv[1:] == ["quick"] else w.args))
endef
export TUNE_ARGS_PY

# Both ratios, the peak RSS one computed from the per-round rows.
define TUNE_REPORT_PY
import csv, statistics, sys
sys.path.insert(0, "bench")
import ab
stem = sys.argv[1]
res = next(csv.DictReader(open(stem + ".csv")))
rss = {}
for r in csv.DictReader(open(stem + "-rounds.csv")):
    if r["status"] == "ok":
        rss.setdefault(r["round"], {})[r["alloc"]] = float(r["maxrss_kb"])
pairs = [v["appmix"] / v["default"] for v in rss.values() if len(v) == 2]
print()
print("tune-demo: appmix / default, tuned variant against the default, side by side")
if res["ratio"]:
    print(f"  throughput   {float(res['ratio']):.3f}  95% interval "
          f"[{float(res['ci_low'] or res['ratio']):.3f}, {float(res['ci_high'] or res['ratio']):.3f}]"
          f"  ({res['verdict']}; {res['pairs']} paired rounds)")
if pairs:
    lo, hi = ab.bootstrap_interval(pairs) if len(pairs) > 1 else (pairs[0], pairs[0])
    a = statistics.median(v["default"] for v in rss.values() if len(v) == 2)
    b = statistics.median(v["appmix"] for v in rss.values() if len(v) == 2)
    print(f"  peak RSS     {statistics.median(pairs):.3f}  95% interval [{lo:.3f}, {hi:.3f}]"
          f"  ({a / 1024:.1f} MiB -> {b / 1024:.1f} MiB, VmHWM; < 1: the tuned variant is smaller)")
endef
export TUNE_REPORT_PY
