"""Profile-guided tuning: from one run's profile (HAKMEM_PROFILE) to an overlay.

`gen/hakgen tune PROFILE -o OUT.yaml [--max-classes N] [--base SPEC]` reads the
JSON profile a metrics build writes at exit (runtime/stats.c, write_profile)
and writes a commented overlay on the base spec that replaces its class
tables and caches and sets superslab.huge_pages and large.cache_bytes
(documented in spec/README.md, "Profile-guided tuning"):

* Size classes (tiny and mid together) minimize the internal fragmentation
  of the blocks out at the peak, sum(class - size) over them, under the
  class-count bound, by dynamic programming over the profile's 16-byte
  histogram.  The profile counts peak blocks per profiled class, not per
  size: a class's peak is shared among its sizes in proportion to their
  requests (peak_blocks).  Weighing by requests instead counted a size
  asked for often but freed at once as much as one that fills the heap.
  Rules: sizes are multiples of 16, strictly increasing, none below the
  smallest the base's slab allows (a span holds at most 4096 blocks:
  resolve.smallest_class_size); the first class is at most 32 B (or that
  smallest size, when it is larger) and each class at most twice the one before
  it (so every size, seen or not, gets a block less than twice its size:
  the spec's own no-gap rule between tiny and mid, applied everywhere); the
  last class is the base's largest (or the largest request seen, if larger),
  so every size the base served still maps to a class.  Ties, and sizes no
  request was seen at, are settled by a log-uniform prior (a small weight
  on every size, 1/size): spare classes spread geometrically where nothing
  was seen.  Classes up to the base's last tiny class are tiny, the rest mid.
  A base whose tiny classes are the 16-byte grid (the default's: every 16 B
  from 16 B, which malloc finds by arithmetic) keeps them, when the class
  bound leaves room for the mid classes after them: no class set rounds a
  size less, and a tuned set off the grid loses the arithmetic.  The DP
  then chooses the classes after the grid only.
* Caches per tiny class from the bursts (runs of allocs or frees of one
  class by one thread) and the peak number of blocks out, with the base's
  kind of first tier (of its class serving the size):
  - ring first: ring = twice the 90th percentile burst (weighted by
    operations), rounded up to a power of two, within 8..256 and at most the
    peak out; refill = ring / 2, so a burst of that length in either
    direction from the refill level fits.  The sll tier is kept only where
    bursts longer than half the ring carry at least 10% of the class's
    operations (HAKMEM: a layer that rarely hits costs more than it saves);
    then sll = the 99th percentile burst, a power of two.
  - list first: one list, the base's, raised to the 99th percentile burst
    by the same 10% rule, at most the peak out; the base's refill (list_plan:
    a list holds no slots, so it is not sized down to the bursts).
  On a kept grid, a class no request was seen in keeps the base's caches.
  The mid classes share one ring (8..64: their blocks are large), sized the
  same way from all their bursts together, or the base's list, as above.
* superslab.huge_pages: on for a heap past the TLB's reach with 4 KiB pages
  that the run turned over often enough to pay for the huge-page faults
  (huge_pages_plan); --huge-pages on / off overrides it.
* large.cache_bytes: room for two freed spans of the largest request above
  the classes the run made (0 when it made none), not the base's 256 MiB,
  which holds any freed large block resident for decay_ms, also one grown
  by realloc past every request (large_cache_plan).
* The profile's per-class numbers belong to the profiled spec's classes; a
  tuned class takes them from the profiled classes its requests fell into,
  in proportion to the requests (from the histogram).

Output is deterministic: the same profile and base give the same bytes.
"""
import json
import math
import os
import re
import tempfile

import overlay
import resolve
from specload import SpecError

FORMAT, VERSION = "hakmem-profile", 1
FIRST_MAX = 32            # the first class serves 1.. bytes: at most 32 B
RING_MIN, RING_MAX = 8, 256
LIST_MIN, LIST_MAX = 8, 4096  # a list-first tiny class's one list, at most (SLL_MAX)
MID_RING_MIN, MID_RING_MAX = 8, 64  # the mid classes' ring or list, their blocks large
SLL_MIN, SLL_MAX = 16, 4096
SLL_KEEP_SHARE = 0.10     # keep the sll when bursts spilling the ring carry >= this share
BURST_PCT, SLL_PCT = 0.90, 0.99
PRIOR_SHIFT = 40          # cost = primary << PRIOR_SHIFT + prior; the prior stays below 2^40
PRIOR_SCALE = 1 << 18     # prior weight of the bucket of size 16p: PRIOR_SCALE // p
LIVE_SCALE = 64           # DP weights: peak blocks out, in 1/64ths of a block
HUGE_PAGES_MIN_HEAP = 16 << 20       # huge pages (auto) for a heap this large at its peak
HUGE_PAGES_MIN_TURNOVER = 400_000    # ... turned over by this many mallocs per 2 MiB of it
LARGE_CACHE_MAX = 1 << 40            # the schema's bound on large.cache_bytes
# A tiny class whose frees were cross-thread for >= REMOTE_MIN_SHARE gets a transfer cache of
# TRANSFER_BLOCKS blocks in batches of its refill (the default spec: 32 batches of 16 for
# 272..1024 B, the ring spec's for 320..1024 B, where larson's threads drift apart by ~700
# blocks of a class)
REMOTE_MIN_SHARE = 0.01
TRANSFER_BLOCKS = 512
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # schema.Name


class ProfileError(SpecError):
    """A problem with a profile or the tune command line: FILE[:LINE]: message."""

    def __init__(self, file, message, line=None):
        Exception.__init__(self, f"{file}:{line}: {message}" if line else f"{file}: {message}")
        self.file, self.line, self.field, self.message = file, line or 0, "", message


# ---------------------------------------------------------------- the profile

def load_profile(path):
    """Read and check a profile; return it as plain data (sizes as ints)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise ProfileError(path, "no such file")
    except (OSError, UnicodeDecodeError) as e:
        raise ProfileError(path, f"cannot read: {e}")
    if not text.strip():
        raise ProfileError(path, "empty profile (was the program run with HAKMEM_PROFILE "
                                 "under a metrics build, and did it exit normally?)")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ProfileError(path, f"malformed JSON: {e.msg} (column {e.colno})", e.lineno)
    except RecursionError:
        raise ProfileError(path, "malformed JSON: nested too deeply")
    except ValueError as e:  # an integer of more digits than Python converts
        raise ProfileError(path, f"malformed JSON: {str(e).split(';')[0]}")
    return check_profile(data, path)


INT_MAX = 2 ** 64 - 1  # the metrics build counts and sizes in 64-bit unsigned integers


def _int(value, path, field, lo=0):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProfileError(path, f"{field}: {json.dumps(value)[:40]} is not an integer")
    if value < lo:
        raise ProfileError(path, f"{field}: {value} is below {lo}")
    if value > INT_MAX:
        raise ProfileError(path, f"{field}: {str(value)[:40]} is above {INT_MAX}")
    return value


def _pairs(value, path, field, key_ok, key_what):
    """A list of [key, count] pairs, keys strictly increasing."""
    if not isinstance(value, list):
        raise ProfileError(path, f"{field}: not a list")
    out, prev = [], None
    for i, pair in enumerate(value):
        where = f"{field}[{i}]"
        if not (isinstance(pair, list) and len(pair) == 2):
            raise ProfileError(path, f"{where}: not a [{key_what}, count] pair")
        key, count = _int(pair[0], path, where), _int(pair[1], path, f"{where} count")
        if not key_ok(key):
            raise ProfileError(path, f"{where}: {key} is not {key_what}")
        if prev is not None and key <= prev:
            raise ProfileError(path, f"{where}: {key} does not follow {prev} (keys must increase)")
        prev = key
        out.append((key, count))
    return out


def _check_class_size(size, path, field):
    """A size up to a class: no spec has a class above resolve.MAX_CLASS_SIZE, and the
    tuner keeps a list entry per 16 bytes up to the largest (2^64 asked for 2^60 of them)."""
    if size > resolve.MAX_CLASS_SIZE:
        raise ProfileError(path, f"{field}: {size} is above {resolve.MAX_CLASS_SIZE}, the "
                                 f"largest class size a spec can have")
    return size


def check_profile(data, path):
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        what = data.get("format") if isinstance(data, dict) else None
        got = f"format {json.dumps(what)}" if what is not None else "no \"format\" field"
        raise ProfileError(path, f"not a hakmem profile ({got}; expected \"{FORMAT}\")")
    if data.get("version") != VERSION or isinstance(data.get("version"), bool):
        raise ProfileError(path, f"profile version {json.dumps(data.get('version'))} is not "
                                 f"supported (this hakgen reads version {VERSION})")
    for key in ("spec", "threads", "cross_thread_free_share", "size_histogram",
                "large_histogram", "classes"):
        if key not in data:
            raise ProfileError(path, f"{key}: missing")
    spec = data["spec"]
    if not (isinstance(spec, dict) and isinstance(spec.get("name"), str)
            and isinstance(spec.get("hash"), str)):
        raise ProfileError(path, "spec: not {\"name\": ..., \"hash\": ...}")
    # both go into the overlay's comments: a spec's name and hash, nothing else
    if not NAME_RE.fullmatch(spec["name"]):
        raise ProfileError(path, f"spec.name: {json.dumps(spec['name'])[:40]} is not a spec name")
    if not re.fullmatch(r"[0-9a-f]{16}", spec["hash"]):
        raise ProfileError(path, f"spec.hash: {json.dumps(spec['hash'])[:40]} is not a spec hash")
    share = data["cross_thread_free_share"]
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
        raise ProfileError(path, f"cross_thread_free_share: {json.dumps(share)[:40]} is not "
                                 f"a number in 0..1")
    hist = _pairs(data["size_histogram"], path, "size_histogram",
                  lambda s: s % 16 == 0, "a multiple of 16")
    for i, (size, _) in enumerate(hist):
        _check_class_size(size, path, f"size_histogram[{i}]")
    large = _pairs(data["large_histogram"], path, "large_histogram", lambda s: s > 0, "positive")
    if not isinstance(data["classes"], list):
        raise ProfileError(path, "classes: not a list")
    classes, prev = [], 0
    for i, c in enumerate(data["classes"]):
        where = f"classes[{i}]"
        if not isinstance(c, dict):
            raise ProfileError(path, f"{where}: not an object")
        for key in ("size", "allocs", "frees", "peak_out", "remote_frees",
                    "alloc_bursts", "free_bursts"):
            if key not in c:
                raise ProfileError(path, f"{where}.{key}: missing")
        size = _check_class_size(_int(c["size"], path, f"{where}.size", 16), path,
                                 f"{where}.size")
        if size % 16 or size <= prev:
            raise ProfileError(path, f"{where}.size: {size} is not a multiple of 16 above "
                                     f"the class before it ({prev})")
        prev = size
        pow2 = lambda n: n > 0 and n & (n - 1) == 0  # noqa: E731
        classes.append({
            "size": size,
            "allocs": _int(c["allocs"], path, f"{where}.allocs"),
            "frees": _int(c["frees"], path, f"{where}.frees"),
            "peak_out": max(0, _int(c["peak_out"], path, f"{where}.peak_out", lo=-(1 << 62))),
            "remote_frees": _int(c["remote_frees"], path, f"{where}.remote_frees"),
            "bursts": (_pairs(c["alloc_bursts"], path, f"{where}.alloc_bursts", pow2,
                              "a power of two")
                       + _pairs(c["free_bursts"], path, f"{where}.free_bursts", pow2,
                                "a power of two")),
        })
    if hist and classes and hist[-1][0] > classes[-1]["size"]:
        raise ProfileError(path, f"size_histogram: size {hist[-1][0]} is above the profiled "
                                 f"spec's largest class {classes[-1]['size']}")
    if not any(n for _, n in hist):
        raise ProfileError(path, "no malloc requests up to the largest class: nothing to tune")
    return {"spec": spec, "threads": _int(data["threads"], path, "threads"),
            "cross_thread_free_share": float(share), "hist": dict(hist),
            "large": large, "classes": classes}


# ---------------------------------------------------------------- size classes

def first_class_top(first_pos):
    """The largest position of the first class: FIRST_MAX, unless the smallest position
    the spec allows (first_pos) is above it; then the first class is that one, as small as
    a class can be, since it serves every request from 1 byte."""
    return max(FIRST_MAX // 16, first_pos)


def _chain(last_pos, top):
    """Fewest classes from one at most position `top` to position last_pos, steps <= 2x."""
    n, pos = 1, last_pos
    while pos > top:
        pos = (pos + 1) // 2
        n += 1
    return n


def min_classes(last_pos, first_pos=1, grid=0):
    """Fewest classes from the first (at most first_class_top) to position last_pos
    (size 16 * pos), steps <= 2x; with a kept grid (positions 1..grid all classes), those
    and the fewest from grid on."""
    if grid:
        return grid - 1 + _chain(last_pos, grid)
    return _chain(last_pos, first_class_top(first_pos))


def choose_classes(counts, last_pos, max_classes, prior=True, first_pos=1, grid=0):
    """Optimal class positions (size = 16 * position) for a histogram.

    counts: {position: requests of ceil(n / 16) == position}, every position <= last_pos.
    Minimizes sum(count * (class - size)) over classes p_1 < ... < p_k = last_pos,
    k <= max_classes, first_pos <= p_1 <= first_class_top(first_pos), p_{t+1} <= 2 p_t;
    ties go to the log-uniform prior (when `prior`), then to the leftmost position.
    first_pos is the smallest class the spec allows (resolve.smallest_class_size / 16).
    With grid > 0 (at most last_pos), positions 1..grid are all classes (a base's 16-byte
    grid kept, every size up to it exact; first_pos is then 1) and the rest are chosen
    after them: the chain then starts at grid, its first class, at no cost.
    Returns (positions, cost), cost in bytes for the observed requests only.  Raises
    ValueError when max_classes is too small for the rules.

    f_k[j] = min over i of f_{k-1}[i] + cost(i, j) is computed layer by layer with the
    divide-and-conquer optimization: cost(i, j) = 16 j (C[j] - C[i]) - (W[j] - W[i])
    (prefix sums of counts and bytes) is Monge, and so stays with the ratio rule written
    as a penalty P * max(0, ceil(j / 2) - i) (convex in ceil(j / 2) - i), so the leftmost
    best i grows with j: O(k * n log n) evaluations, exact."""
    n = last_pos
    if grid > n:
        raise ValueError(f"a grid up to position {grid} ends past the last class {n}")
    need = min_classes(n, first_pos, grid)
    if max_classes < need:
        raise ValueError(need)
    a = [0] * (n + 1)
    for p, c in counts.items():
        a[p] += c << PRIOR_SHIFT if prior else c
    if prior:
        for p in range(1, n + 1):
            a[p] += PRIOR_SCALE // p
    csum, wsum = [0] * (n + 1), [0] * (n + 1)
    run_c = run_w = 0
    for p in range(n + 1):
        run_c += a[p]
        run_w += a[p] * 16 * p
        csum[p], wsum[p] = run_c, run_w
    big = 16 * n * (run_c + 1) + 1            # above any feasible total cost
    penalty, inf = big, big * (4 * n + 4)     # per position short of the ratio rule; unreachable
    first = [inf] * (n + 1)
    if grid:
        first[grid] = 0  # every size up to the grid's top has its own class
    else:
        for j in range(first_pos, min(n, first_class_top(first_pos)) + 1):
            first[j] = 16 * j * csum[j] - wsum[j]
    layers, args = [first], [None]
    fixed = max(0, grid - 1)  # the grid's classes below its top, outside the layers
    k_max = min(max_classes - fixed, n - fixed)
    for _ in range(2, k_max + 1):
        prev = layers[-1]
        cur, arg = [inf] * (n + 1), [0] * (n + 1)
        stack = [(2, n, 1, n - 1)]
        while stack:
            lo, hi, opt_lo, opt_hi = stack.pop()
            if lo > hi:
                continue
            mid = (lo + hi) // 2
            # value(i) = prev[i] + cost(i, mid) + the ratio penalty; cost(i, mid) =
            # 16 mid (C[mid] - C[i]) - (W[mid] - W[i]), the constant part taken out
            x, half = 16 * mid, (mid + 1) // 2
            best_v, best_i = None, opt_lo
            for i in range(opt_lo, min(opt_hi, mid - 1) + 1):
                v = prev[i] - x * csum[i] + wsum[i]
                if i < half:
                    v += penalty * (half - i)
                if best_v is None or v < best_v:
                    best_v, best_i = v, i
            cur[mid] = min(best_v + x * csum[mid] - wsum[mid], inf)
            arg[mid] = best_i
            stack.append((lo, mid - 1, opt_lo, best_i))
            stack.append((mid + 1, hi, best_i, opt_hi))
        layers.append(cur)
        args.append(arg)
    best_k = min(range(len(layers)), key=lambda k: (layers[k][n], k))
    if layers[best_k][n] >= big:
        raise ValueError(need)
    positions, j = [n], n
    for k in range(best_k, 0, -1):
        j = args[k][j]
        positions.append(j)
    positions = list(range(1, grid)) + positions[::-1]
    cost = sum(c * (16 * next(q for q in positions if q >= p) - 16 * p) for p, c in counts.items())
    return positions, cost


def waste(counts, sizes):
    """sum(count * (class - size)) of a histogram {size: count} under class sizes.  Sizes
    above the largest class are large blocks there, outside this sum (the profile may come
    from a spec whose classes go further than the base's)."""
    total = 0
    for s, c in counts.items():
        fit = next((x for x in sizes if x >= s), None)
        if fit is not None:
            total += c * (fit - s)
    return total


def peak_blocks(profile):
    """{size: blocks of that size out at the peak}, estimated: each profiled class's peak
    blocks out shared among its sizes in proportion to their requests.  This, not the
    request count, is what a class's rounding costs in memory: a size asked for often but
    freed at once holds few blocks, one that fills the heap holds many."""
    hist, out, prev = profile["hist"], {}, 0
    for pc in profile["classes"]:
        sizes = [s for s in hist if hist[s] and (prev < s <= pc["size"] or (s == 0 == prev))]
        requests = sum(hist[s] for s in sizes)
        for s in sizes:
            out[s] = pc["peak_out"] * hist[s] / requests
        prev = pc["size"]
    return out


def dp_weights(profile):
    """Integer weights of the class DP, per 16-byte position: peak blocks in 1/LIVE_SCALE
    units; a size that was requested never weighs nothing."""
    return {s // 16: max(1, round(LIVE_SCALE * n)) for s, n in peak_blocks(profile).items()}


# ---------------------------------------------------------------- caches

def _pow2_ceil(x):
    return 1 << max(0, math.ceil(x) - 1).bit_length()


def _clamp(x, lo, hi):
    return max(lo, min(hi, x))


def _mean_len(lo):
    """Mean length of a burst in the log2 bucket [lo, 2 lo), lengths taken as uniform."""
    return (3 * lo - 1) / 2


def percentile_burst(bursts, pct):
    """Burst length at the ops-weighted percentile: the upper end (2 lo - 1) of the first
    log2 bucket [lo, 2 lo) by which `pct` of the operations in bursts are reached."""
    ops = [(lo, n * _mean_len(lo)) for lo, n in sorted(bursts.items()) if n > 0]
    total = sum(w for _, w in ops)
    if total <= 0:
        return 0
    acc = 0.0
    for lo, w in ops:
        acc += w
        if acc >= pct * total - 1e-9 * total:
            return 2 * lo - 1
    return 2 * ops[-1][0] - 1


def spill_share(bursts, capacity):
    """Share of the operations done beyond `capacity` blocks into a burst (a log2 bucket
    [lo, 2 lo) taken at its mean length)."""
    total = spill = 0.0
    for lo, n in sorted(bursts.items()):
        length = _mean_len(lo)
        total += n * length
        spill += n * max(0.0, length - capacity)
    return spill / total if total else 0.0


def _capacity(bursts, peak_out, lo, hi):
    """Twice the 90th percentile burst, a power of two in lo..hi, at most the peak out;
    and that burst."""
    p90 = percentile_burst(bursts, BURST_PCT)
    cap = _clamp(_pow2_ceil(2 * p90), lo, hi)
    if peak_out > 0:
        cap = max(lo, min(cap, _pow2_ceil(peak_out)))
    return cap, p90


def cache_plan(bursts, peak_out, ring_lo, ring_hi, allow_sll):
    """A ring-first class's caches: ring, refill, sll (0: no sll tier), its tiers and
    the numbers behind them."""
    ring, p90 = _capacity(bursts, peak_out, ring_lo, ring_hi)
    spill = spill_share(bursts, ring // 2)
    sll = 0
    if allow_sll and spill >= SLL_KEEP_SHARE:
        sll = _clamp(_pow2_ceil(percentile_burst(bursts, SLL_PCT)), SLL_MIN, SLL_MAX)
    return {"tiers": ["ring", "sll", "slab"] if sll else ["ring", "slab"], "ring": ring,
            "refill": max(1, ring // 2), "sll": sll, "p90": p90, "spill": spill}


def list_plan(bursts, peak_out, base_sll, base_refill, hi):
    """A list-first class's caches, one list (sll) before the slabs: the base's list,
    raised to the 99th percentile burst (a power of two, at most hi) where bursts beyond
    half of it carry SLL_KEEP_SHARE of the operations (the sll rule behind a ring), and
    at most the peak blocks out (a power of two, at least LIST_MIN, or the base's list
    where that is smaller); the base's refill, at most half the list.  Never sized down
    to the bursts as a ring is: a list holds no slots of its own, and a short one
    refills and flushes often as the class's count wanders (appmix tuned with lists,
    tiny and mid, of 2 x the p90 burst and huge pages off: 0.917x [0.882, 0.942] the
    default's ops/s, 31 interleaved rounds; 1.4% more instructions)."""
    p99 = percentile_burst(bursts, SLL_PCT)
    spill = spill_share(bursts, base_sll // 2)
    raised = max(base_sll, min(_pow2_ceil(p99), hi)) if spill >= SLL_KEEP_SHARE else base_sll
    sll = raised
    if peak_out > 0:
        sll = max(min(LIST_MIN, base_sll), min(sll, _pow2_ceil(peak_out)))
    return {"tiers": ["sll", "slab"], "ring": 0, "sll": sll,
            "refill": max(1, min(base_refill, sll // 2)), "p99": p99,
            "base_sll": base_sll, "raised": raised > base_sll, "capped": sll < raised,
            "spill": spill}


# ---------------------------------------------------------------- memory

def heap_bytes(profile):
    """Bytes of blocks out of spans, each profiled class at its peak, summed: about what
    the program's heap of small and mid blocks spans (their peaks need not coincide)."""
    return sum(c["peak_out"] * c["size"] for c in profile["classes"])


def huge_pages_plan(profile, base, mode="auto"):
    """(on, why) for superslab.huge_pages.  auto: on when the heap at its peak is at least
    HUGE_PAGES_MIN_HEAP, past what the TLB maps with 4 KiB pages (1536-3072 entries,
    6-12 MiB, on x86-64 cores of the last decade), and the run made at least
    HUGE_PAGES_MIN_TURNOVER mallocs per 2 MiB of that heap.  A huge page saves TLB misses
    on every access to its 2 MiB but costs at its first touch (2 MiB zeroed at once:
    several ms on this VM, whose host backs fresh memory lazily) and in RSS (each mapped
    superslab resident whole); mallocs per huge page are the profile's measure of how
    often the heap is turned over, so of how many accesses pay for the fault.  Measured
    (tuned with and without huge pages, side by side): appmix, 820,000 mallocs per 2 MiB,
    1.10x the ops/s at 1.14x the peak RSS (1.06x the default's); sqlite3, 160,000, no
    change in CPU time and 1.08x the peak RSS; python3, 65,000, 1.2x the CPU time (0.75 s
    more in the kernel for 109 huge-page faults).  The threshold lies between them.
    on / off: as asked (--huge-pages)."""
    heap = heap_bytes(profile)
    mallocs = sum(c["allocs"] for c in profile["classes"])
    turnover = mallocs * resolve.HUGE_PAGE / heap if heap else 0
    seen = f"the heap peaked at {_mib(heap)} of blocks, {_num(turnover)} mallocs per 2 MiB"
    if base["superslab"]["bytes"] < resolve.HUGE_PAGE:
        if mode == "on":
            raise ProfileError("--huge-pages", f"on needs superslabs of whole huge pages; the "
                                               f"base's are {base['superslab']['bytes']} bytes")
        return False, "the base's superslabs are smaller than a huge page"
    if mode != "auto":
        return mode == "on", f"--huge-pages {mode} ({seen})"
    if heap < HUGE_PAGES_MIN_HEAP:
        return False, f"{seen}: under {_mib(HUGE_PAGES_MIN_HEAP)}, within the TLB's reach"
    if turnover < HUGE_PAGES_MIN_TURNOVER:
        return False, (f"{seen}: under {_num(HUGE_PAGES_MIN_TURNOVER)}, too few to pay for "
                       f"the huge-page faults")
    return True, f"{seen}: TLB reach for RSS"


def large_cache_plan(profile):
    """(bytes, why) for large.cache_bytes: room for two freed spans of the largest request
    above the classes (the top of its log2 bucket), so a program that frees and asks again
    for its largest size reuses resident pages; 0 when the run made no such request.  A
    larger cache only keeps freed memory resident for decay_ms: a block grown past every
    request by realloc (a sort buffer doubling to 64 MiB) stays in it at full size when
    freed, next to the next one growing (sqlite3: +64 MiB of peak RSS)."""
    tops = [top for top, n in profile["large"] if n]
    if not tops:
        return 0, "no requests above the classes were seen"
    largest = min(_pow2_ceil(max(tops) + 1), LARGE_CACHE_MAX // 2)
    count = sum(n for _, n in profile["large"])
    return 2 * largest, (f"two spans of the largest request seen above the classes "
                         f"(up to {_bytes_text(largest)}; {_num(count)} such "
                         f"request{'s' if count != 1 else ''})")


# ---------------------------------------------------------------- the tuned spec

def _ranges(sizes):
    prev = 0
    for s in sizes:
        yield prev, s
        prev = s


def attribute(profile, sizes):
    """Per tuned class: requests, and bursts and peak out taken from the profiled classes
    in proportion to the requests their sizes share."""
    hist, pclasses = profile["hist"], profile["classes"]
    top = max([sizes[-1], pclasses[-1]["size"] if pclasses else 0] + list(hist)) // 16
    prefix, run = [0] * (top + 1), 0
    for p in range(top + 1):
        run += hist.get(16 * p, 0)
        prefix[p] = run

    def requests(lo, hi):  # sizes in (lo, hi]; the range from 0 also holds malloc(0)
        return prefix[hi // 16] - (prefix[lo // 16] if lo else 0)

    pranges = list(_ranges([c["size"] for c in pclasses]))
    out = []
    for lo, hi in _ranges(sizes):
        bursts, peak, remote, frees = {}, 0.0, 0.0, 0.0
        for pc, (plo, phi) in zip(pclasses, pranges):
            if phi <= lo or plo >= hi:
                continue
            total = requests(plo, phi)
            shared = requests(max(lo, plo), min(hi, phi))
            if shared == 0:
                continue
            w = shared / total
            for length, n in pc["bursts"]:
                bursts[length] = bursts.get(length, 0.0) + w * n
            peak += w * pc["peak_out"]
            remote += w * pc["remote_frees"]
            frees += w * pc["frees"]
        out.append({"size": hi, "lo": lo, "requests": requests(lo, hi), "bursts": bursts,
                    "peak_out": peak, "remote_share": remote / frees if frees else 0.0})
    return out


def _pct(x):
    return f"{100 * x:.1f}%"


def _num(x):
    return f"{round(x):,}"


def _mib(x):
    """Bytes for a comment: MiB, or KiB below one MiB."""
    return f"{x / (1 << 20):.1f} MiB" if x >= 1 << 20 else f"{x / 1024:.1f} KiB"


def _bytes_text(n):
    """A byte size as the spec writes it: 2MiB, 64KiB, or plain bytes."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return str(n)


def tune(profile, profile_name, base_path, out_path, max_classes=None, huge_pages="auto"):
    """Return the overlay text (and a summary line) for `profile` on the spec at base_path."""
    base_files = []
    base = resolve.resolve(overlay.load_spec(base_path, files=base_files))
    _check_not_a_base_file(out_path, base_files)
    tiny_base, mid_base = base["tiny"]["classes"], base["mid"]
    base_sizes = [c["size"] for c in tiny_base] + list(mid_base["classes"])
    hist = profile["hist"]
    last = max(base_sizes[-1], max(s for s, n in hist.items() if n) if hist else 0)
    limit = base["superslab"]["bytes"] // 4
    if last > limit:
        raise ProfileError(profile_name, f"requests up to {last} B were profiled, but the "
                                         f"base's classes end at {base_sizes[-1]} B and a mid "
                                         f"class is at most {limit} B")
    if max_classes is None:
        max_classes = len(base_sizes)
    if not 1 <= max_classes <= resolve.MAX_CLASSES:
        raise ProfileError("--max-classes", f"{max_classes} is out of range "
                                            f"1..{resolve.MAX_CLASSES}")
    first_pos = resolve.smallest_class_size(base["superslab"]) // 16
    grid = grid_top([c["size"] for c in tiny_base])
    if grid and max_classes < min_classes(last // 16, grid=grid):
        grid = 0  # too few classes to keep it: chosen like any base's
    sizes = _choose_sizes(profile, last, max_classes, first_pos, grid)
    tiny_limit = max(tiny_base[-1]["size"], sizes[0])  # the first class is always tiny
    rows = attribute(profile, sizes)
    tiny_rows = [r for r in rows if r["size"] <= tiny_limit]
    mid_rows = [r for r in rows if r["size"] > tiny_limit]
    transfers = base["options"]["decay_ms"] > 0  # with 0 the runtime has no transfer caches
    for r in tiny_rows:
        r["plan"] = _tiny_plan(r, _serving(tiny_base, r["size"]), grid)
        r["transfer"] = _transfer_plan(r, transfers)
    mid_plan = _mid_plan(mid_rows, mid_base)
    memory = {"huge_pages": huge_pages_plan(profile, base, huge_pages),
              "cache_bytes": large_cache_plan(profile)}
    fit = _fit_numbers(profile, sizes, base_sizes)

    # from the output's real directory: a `..` in `base:` climbs out of where a symlinked
    # directory leads, not out of the link (abspath's `link/..` is the wrong directory)
    base_rel = os.path.relpath(os.path.realpath(base_path),
                               os.path.dirname(_output_entry(out_path)))
    lines = _header(profile, profile_name, sizes, len(tiny_rows), max_classes, fit,
                    16 * first_class_top(first_pos), grid,
                    {r["plan"]["tiers"][0] for r in tiny_rows if not r["plan"].get("base")},
                    any(r["plan"].get("base") for r in tiny_rows),
                    grid and resolve.model(base, base_path)["size_grid"] > 0,
                    any(r["plan"].get("prewarm") for r in tiny_rows if not r["plan"].get("base")))
    lines.append("base: " + (base_rel if re.fullmatch(r"[A-Za-z0-9_./-]+", base_rel)
                             else yaml_quoted(base_rel)))
    lines += _memory_lines(memory)
    lines += _class_lines(tiny_rows, mid_rows, mid_plan, fit["requests"])
    text = "\n".join(lines) + "\n"
    if fit["live_bytes"]:
        at_peak = (f"{_pct(fit['live_waste'] / fit['live_bytes'])} of the bytes live "
                   f"(base {_pct(fit['base_live_waste'] / fit['live_bytes'])})")
    else:
        at_peak = NO_LIVE_BYTES
    summary = (f"{len(sizes)} classes ({len(tiny_rows)} tiny, {len(mid_rows)} mid), internal "
               f"fragmentation at the peak {at_peak}, "
               f"huge pages {'on' if memory['huge_pages'][0] else 'off'}")
    return text, summary


def yaml_quoted(text):
    """text as a YAML double-quoted scalar that reads back as exactly text: backslash and
    quote escaped, and so is every character YAML would not keep as it is (controls, the
    line breaks U+0085, U+2028 and U+2029, which it would fold, the BOM, surrogates a path
    not in UTF-8 decodes to, U+FFFE and U+FFFF).  JSON's quoting is not that: it writes a
    character beyond U+FFFF as two surrogate escapes, which YAML reads as two characters."""
    out = []
    for ch in text:
        o = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif (o < 0x20 or 0x7f <= o < 0xa0 or o in (0x2028, 0x2029, 0xfeff, 0xfffe, 0xffff)
              or 0xd800 <= o < 0xe000):
            out.append(f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _not_a_directory(path):
    """The nearest existing directory of path that is no directory (a file, where `-o
    p.json/t.yaml` needs a directory), or None.  os.makedirs says only "File exists"."""
    d = os.path.dirname(path)
    while d and not os.path.lexists(d):
        d = os.path.dirname(d)
    return d if d and not os.path.isdir(d) else None


def _output_entry(out_path):
    """The directory entry that writing out_path replaces, its directory's symlinks resolved
    (os.replace replaces a symlink at out_path itself, not the file it points to)."""
    return os.path.join(os.path.realpath(os.path.dirname(out_path) or "."),
                        os.path.basename(out_path))


def _check_not_a_base_file(out_path, base_files):
    """-o must not replace a file the base is read from: the overlay would be its own base,
    and every spec built on that file a cycle.  The validation of the overlay (in a scratch
    directory, its base an absolute path) cannot see it."""
    target = _output_entry(out_path)
    for i, (real, name) in enumerate(base_files):
        if real == target:
            what = ("the base spec," if i == 0
                    else f"which the base spec {base_files[0][1]} is built on,")
            raise ProfileError(out_path, f"-o: would overwrite {name}, {what} making the "
                                         f"overlay its own base; nothing written")


def grid_top(tiny_sizes):
    """g when the base's tiny classes are the 16-byte grid 16, 32, .., 16 g (the default's,
    which malloc finds by arithmetic: resolve._size_grid), else 0."""
    g = len(tiny_sizes)
    return g if tiny_sizes == [16 * (i + 1) for i in range(g)] else 0


def first_cache_tier(tiers):
    """The kind of a tuned class's first cache tier: its base's, "ring" or "sll"; "slab"
    where the base has no cache (the tuned class then has none either)."""
    return next((t for t in tiers if t != "slab"), "slab")


# The plans of classes no request reached, and of those with no cache, carry no burst
# figures: their comments name none (_class_note, _class_lines).
NO_CACHE = {"tiers": ["slab"], "ring": 0, "sll": 0, "refill": 0}


def _serving(tiny_base, size):
    """The base's tiny class that serves `size` (its last, for sizes above it)."""
    return next((c for c in tiny_base if c["size"] >= size), tiny_base[-1])


def _choose_sizes(profile, last, max_classes, first_pos, grid):
    """The class sizes: the DP over the peak blocks of each 16-byte size, none below
    16 * first_pos (the base's smallest class size); with `grid`, the base's tiny grid
    kept and the classes after it chosen."""
    try:
        positions, _ = choose_classes(dp_weights(profile), last // 16, max_classes,
                                      first_pos=first_pos, grid=grid)
    except ValueError as e:
        raise ProfileError("--max-classes", f"{max_classes} is too few: {e.args[0]} classes "
                                            f"are needed to cover {16 * first_pos}..{last} B "
                                            f"with each class at most twice the one before it")
    return [16 * p for p in positions]


def _fit_numbers(profile, sizes, base_sizes):
    """How well the tuned and the base's classes fit: rounding bytes over the requests
    and over the blocks live at the peak (estimated)."""
    hist, live = profile["hist"], peak_blocks(profile)
    return {"requests": sum(hist.values()), "req_bytes": sum(s * n for s, n in hist.items()),
            "req_waste": waste(hist, sizes), "base_req_waste": waste(hist, base_sizes),
            "live_bytes": sum(s * n for s, n in live.items()),
            "live_waste": waste(live, sizes), "base_live_waste": waste(live, base_sizes)}


def _tiny_plan(row, base_class, grid):
    """A tiny class's caches, first tier of the kind of the base class serving its sizes
    (none where it has none), and its prewarm, within the new capacity.  On a kept grid
    the class is that base class: with no requests seen, its caches."""
    kind = first_cache_tier(base_class["tiers"])
    if kind == "slab":
        return dict(NO_CACHE)
    if row["requests"]:
        if kind == "sll":
            plan = list_plan(row["bursts"], row["peak_out"], base_class["sll"],
                             base_class["refill"], LIST_MAX)
        else:
            plan = cache_plan(row["bursts"], row["peak_out"], RING_MIN, RING_MAX, True)
        plan["prewarm"] = min(base_class["prewarm"], plan["ring"] + plan["sll"])
        return plan
    if grid:
        return {"base": True,
                **{k: base_class[k] for k in ("tiers", "ring", "sll", "refill", "prewarm",
                                              "transfer")}}
    if kind == "sll":
        return {"tiers": ["sll", "slab"], "ring": 0, "sll": base_class["sll"],
                "refill": base_class["refill"]}
    return {"tiers": ["ring", "slab"], "ring": RING_MIN, "refill": RING_MIN // 2, "sll": 0}


def _transfer_plan(row, transfers):
    """Batches of a tiny class's transfer cache: where its frees crossed threads, and the
    runtime can use one with the class's caches (resolve.moves_batches: not a refill
    above 64 or above the sll with the sll last; resolve would make it 0).  A base's
    class kept as it was keeps its own."""
    plan = row["plan"]
    if plan.get("base"):
        return plan["transfer"]
    if row["remote_share"] < REMOTE_MIN_SHARE or not transfers:
        return 0
    if not resolve.moves_batches(plan["tiers"], plan):
        return 0
    return transfer_batches(plan["refill"])


def _mid_plan(mid_rows, mid_base):
    """One ring, or one list (as the base's first mid tier), for every mid class, from
    all their bursts together."""
    kind = first_cache_tier(mid_base["tiers"])
    bursts, peak, requests = {}, 0.0, 0
    for r in mid_rows:
        requests += r["requests"]
        peak = max(peak, r["peak_out"])
        for length, n in r["bursts"].items():
            bursts[length] = bursts.get(length, 0.0) + n
    if kind == "slab":
        plan = dict(NO_CACHE)
    elif requests and kind == "sll":
        plan = list_plan(bursts, peak, mid_base["sll"], mid_base["refill"], MID_RING_MAX)
    elif requests:
        plan = cache_plan(bursts, peak, MID_RING_MIN, MID_RING_MAX, False)
    elif kind == "sll":
        plan = {"tiers": ["sll", "slab"], "sll": mid_base["sll"],
                "refill": mid_base["refill"]}
    else:
        plan = {"tiers": ["ring", "slab"], "ring": MID_RING_MIN,
                "refill": MID_RING_MIN // 2}
    plan["requests"] = requests
    return plan


def _printable(text):
    """text for a one-line YAML comment: control characters (a newline would end the
    comment and start YAML of the file's choosing) as escapes."""
    return "".join(c if c.isprintable() else json.dumps(c)[1:-1] for c in text)


# A share of no bytes is no number: a profile of malloc(0) alone has 16 B of rounding per
# block over 0 bytes live and asked (it printed 8000.0% and more).
NO_LIVE_BYTES = "n/a: no bytes live at the peak"


def _fit_lines(fit):
    """The header's two lines on how the tuned and the base's classes fit."""
    live, asked, requests = fit["live_bytes"], fit["req_bytes"], fit["requests"]
    per_request = (f"{_num(fit['req_waste'] / requests)} B per request",
                   f"{_num(fit['base_req_waste'] / requests)} B")
    if live:
        at_peak = (f"{_pct(fit['live_waste'] / live)} of the {_mib(live)} live; under the "
                   f"base's classes {_pct(fit['base_live_waste'] / live)}")
    else:
        at_peak = NO_LIVE_BYTES
    if asked:
        over = (f"{_pct(fit['req_waste'] / asked)} of the bytes asked ({per_request[0]}); "
                f"base {_pct(fit['base_req_waste'] / asked)} ({per_request[1]})")
    else:
        over = f"n/a: no bytes asked ({per_request[0]}; base {per_request[1]})"
    return [f"# Internal fragmentation at the peak: {at_peak}.",
            f"# Over the requests: {over}."]


def _header(profile, profile_name, sizes, n_tiny, max_classes, fit, first_max, grid, kinds,
            base_kept, arithmetic, prewarm):
    large = sum(n for _, n in profile["large"])
    requests = fit["requests"]
    n_mid = len(sizes) - n_tiny
    lines = [
        f"# Tuned by `gen/hakgen tune` from the profile {_printable(os.path.basename(profile_name))}",
        f"# (spec {profile['spec']['name']} {profile['spec']['hash']}, "
        f"{profile['threads']} thread{'s' if profile['threads'] != 1 else ''}, "
        f"{_num(requests)} requests up to {sizes[-1]} B, {_num(large)} larger, "
        f"{_pct(profile['cross_thread_free_share'])} of frees cross-thread).",
    ]
    if grid:
        lines += [
            f"# Classes: {len(sizes)} ({n_tiny} tiny, {n_mid} mid; at most {max_classes}): the "
            f"base's {grid} tiny class{'es' if grid > 1 else ''},",
            f"# every 16 B up to {16 * grid} B, kept (no class rounds a size less"
            + (", and malloc finds them by arithmetic);" if arithmetic else ");"),
        ]
        lines += ([
            "# the mid classes chosen by dynamic programming over the 16-byte request histogram",
            "# to minimize sum(class - size) over the blocks out at the peak (each profiled",
            "# class's peak shared among its sizes by their requests), each class at most twice",
            "# the one before it, the base's largest class kept.",
        ] if n_mid else ["# no mid classes, as the base has none."])
    else:
        lines += [
            f"# Classes: {len(sizes)} ({n_tiny} tiny, {n_mid} mid; at most {max_classes}), "
            f"chosen by dynamic programming over",
            "# the 16-byte request histogram to minimize sum(class - size) over the blocks out at",
            "# the peak (each profiled class's peak shared among its sizes by their requests),",
            f"# each class at most twice the one before it (the first at most {first_max} B), "
            f"the base's",
            "# largest class kept.",
        ]
    lines += _fit_lines(fit)
    if "ring" in kinds:
        lines += [
            "# Ring-first classes (as the base's that served their sizes): ring = 2 x the 90th",
            f"# percentile burst (by operations), a power of two in {RING_MIN}..{RING_MAX}, at "
            f"most the peak blocks out;",
            "# refill = ring / 2; the sll tier only where bursts beyond half the ring carry "
            f">= {SLL_KEEP_SHARE:.0%}",
            "# of the operations (sll = the 99th percentile burst).",
        ]
    if "sll" in kinds:
        lines += [
            "# List-first classes (as the base's that served their sizes): the base's list, "
            "raised to",
            f"# the 99th percentile burst (a power of two, at most {LIST_MAX}) where bursts "
            f"beyond half of it carry",
            f"# >= {SLL_KEEP_SHARE:.0%} of the operations, at most the peak blocks out; the "
            f"base's refill, at most half the list.",
        ]
    if "slab" in kinds:
        lines.append("# Classes whose base class has no cache have none either.")
    if prewarm:
        lines.append("# A base class's prewarm is kept, within the tuned capacity.")
    if base_kept:
        lines.append("# Classes of the grid no request was seen in keep the base's caches.")
    lines += [
        f"# Transfer caches of {TRANSFER_BLOCKS} blocks where >= {REMOTE_MIN_SHARE:.0%} of a tiny "
        f"class's frees were cross-thread;",
        "# the mid classes keep the base's.",
        f"# Huge pages for a heap of >= {_mib(HUGE_PAGES_MIN_HEAP)} at its peak turned over by "
        f">= {_num(HUGE_PAGES_MIN_TURNOVER)} mallocs per",
        "# 2 MiB of it; the large cache holds two spans of the largest request above the classes.",
        "# Regenerate rather than edit: gen/hakgen tune PROFILE -o THIS_FILE",
    ]
    return lines


def _memory_lines(memory):
    on, why = memory["huge_pages"]
    cache, cache_why = memory["cache_bytes"]
    return ["superslab:",
            f"  huge_pages: {'true' if on else 'false'}  # {why}",
            "large:",
            f"  cache_bytes: {_bytes_text(cache)}  # {cache_why}"]


def _class_lines(tiny_rows, mid_rows, mid_plan, requests):
    lines = ["tiny:", "  classes:"]
    width = max(len(_class_entry(r)) for r in tiny_rows)
    for r in tiny_rows:
        lines.append(f"    - {_class_entry(r):<{width}}  # {_class_note(r, requests)}")
    first = mid_plan["tiers"][0]
    kind = {"ring": "ring first", "sll": "list first", "slab": "no cache"}[first]
    lines += ["mid:", f"  tiers: [{', '.join(mid_plan['tiers'])}]  # {kind}, as the base's "
                      f"mid classes"]
    if first != "slab":
        if not mid_plan["requests"]:
            why = "no mid requests seen"
        elif first == "sll":
            why = (f"p99 burst {mid_plan['p99']}, "
                   f"{_pct(mid_plan['requests'] / max(1, requests))} of requests; "
                   + _list_why(mid_plan))
        else:
            why = (f"p90 burst {mid_plan['p90']}, "
                   f"{_pct(mid_plan['requests'] / max(1, requests))} of requests")
        lines.append(f"  {first}: {mid_plan[first]}" + " " * (4 - len(str(mid_plan[first])))
                     + "# shared by the mid classes: " + why)
    lines += [f"  refill: {mid_plan['refill']}", "  classes:" if mid_rows else "  classes: []"]
    width = max((len(str(r["size"])) for r in mid_rows), default=0)
    for r in mid_rows:
        lines.append(f"    - {r['size']:<{width}}  # {_class_note(r, requests, mid=True)}")
    return lines


def _class_entry(r):
    p = r["plan"]
    fields = [f"size: {r['size']}"]
    fields += [f"{t}: {p[t]}" for t in ("ring", "sll") if t in p["tiers"]]
    if p["tiers"] != ["slab"]:
        fields.append(f"refill: {p['refill']}")
    if p.get("prewarm"):
        fields.append(f"prewarm: {p['prewarm']}")
    if r["transfer"]:
        fields.append(f"transfer: {r['transfer']}")
    fields.append(f"tiers: [{', '.join(p['tiers'])}]")
    return "{ " + ", ".join(fields) + " }"


def transfer_batches(refill):
    """Batches of `refill` blocks that hold TRANSFER_BLOCKS (at least one)."""
    return max(1, TRANSFER_BLOCKS // refill)


def _list_why(p):
    """Where a list-first plan's list comes from (list_plan)."""
    why = (f"{_pct(p['spill'])} of ops beyond half the base's list of {p['base_sll']}: "
           + ("raised to the p99 burst" if p["raised"] else "kept"))
    return why + (", capped at the peak out" if p["capped"] else "")


def _class_note(r, requests, mid=False):
    span = f"{r['lo'] + 1}..{r['size']} B" if r["lo"] + 1 < r["size"] else f"{r['size']} B"
    if not r["requests"]:
        return f"{span}: no requests seen" + (" (the base's caches)"
                                              if not mid and r["plan"].get("base") else "")
    note = f"{span}: {_pct(r['requests'] / requests)} of requests"
    if mid:
        return note + f", peak {_num(r['peak_out'])} out"
    p = r["plan"]
    if p["tiers"] == ["slab"]:
        note += ", no cache, as the base's class"
    elif p["ring"]:
        note += f", p90 burst {p['p90']}, peak {_num(r['peak_out'])} out"
        if p["sll"]:
            note += f"; {_pct(p['spill'])} of ops beyond ring/2"
    else:
        note += f", p99 burst {p['p99']}, peak {_num(r['peak_out'])} out; " + _list_why(p)
    if r["remote_share"] >= REMOTE_MIN_SHARE:
        note += f"; {_pct(r['remote_share'])} remote frees"
        if not r["transfer"]:
            note += " (no transfer cache: the runtime would not use one with these caches)"
    return note


def write_tuned(profile_path, out_path, base_path, max_classes=None, huge_pages="auto"):
    """The `hakgen tune` command: write the overlay once it validates; return a summary."""
    stem = os.path.splitext(os.path.basename(out_path))[0]
    if not out_path.endswith(".yaml") or not NAME_RE.fullmatch(stem):
        raise ProfileError(out_path, "the output must be NAME.yaml, NAME (the variant's name) "
                                     "made of letters, digits, '_', '-', '.'")
    if _output_entry(out_path) == os.path.realpath(profile_path):
        raise ProfileError(out_path, f"-o: would overwrite the profile {profile_path}; "
                                     f"nothing written")
    profile = load_profile(profile_path)
    text, summary = tune(profile, profile_path, base_path, out_path, max_classes, huge_pages)
    # Validate before anything is replaced: the same text in a scratch directory, its
    # base the real path that the written `base:` leads to from the output's directory, so
    # the spec (and the hash printed) is the one written; then write next to the target
    # and rename over it.
    with tempfile.TemporaryDirectory(prefix="hakgen-tune-") as scratch:
        check = os.path.join(scratch, os.path.basename(out_path))
        with open(check, "w", encoding="utf-8") as f:
            base_line = "base: " + yaml_quoted(os.path.realpath(base_path))
            f.write(re.sub(r"(?m)^base: .*$", lambda _: base_line, text, count=1))
        try:
            resolved = resolve.resolve(overlay.load_spec(check, out_path))
        except SpecError as e:  # a bug of tune's: say that nothing was written
            raise ProfileError(out_path, f"not written: the tuned overlay does not validate "
                                         f"({e})")
    try:  # like `generate`: an unchanged file is not rewritten (make rebuilds nothing)
        with open(out_path, encoding="utf-8", newline="") as f:
            unchanged = f.read() == text
    except (OSError, UnicodeDecodeError):
        unchanged = False
    if not unchanged:
        try:
            os.makedirs(os.path.dirname(_output_entry(out_path)), exist_ok=True)
            with open(out_path + ".tmp", "w", encoding="utf-8", newline="") as f:
                f.write(text)
            os.replace(out_path + ".tmp", out_path)
        except OSError as e:
            try:
                os.unlink(out_path + ".tmp")
            except OSError:
                pass
            blocker = _not_a_directory(out_path)
            raise ProfileError(out_path, f"cannot write: {blocker} is not a directory" if blocker
                               else f"cannot write: {e.strerror or e}")
    return (f"hakgen: {'unchanged' if unchanged else 'wrote'} {out_path}: {summary}; "
            f"spec {resolved['name']} {resolve.spec_hash(resolved)}")
