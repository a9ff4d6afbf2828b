"""Pass 2: rules between fields, defaults, and every derived constant.

Input is the shape-checked, merged Node tree from overlay.load_spec.  Output:
  resolved - the spec with every default filled in (plain data; its canonical
             JSON is what the hash covers and what generated/X/spec.json holds);
  model    - resolved plus the numbers the templates print (spans, blocks,
             waste, the size->class table). Templates compute nothing.
"""
import hashlib
import json

CLASS_DEFAULTS = {"ring": 64, "sll": 128, "refill": 32, "prewarm": 0, "transfer": 0}
OPTION_DEFAULTS = {"dispatch": "table", "tls": "pointer", "stride_pad": True}
RING_MAX, SLL_MAX = 4096, 65536
MAX_CLASSES = 254          # class codes 1..254 fit the region map's bytes
HUGE_PAGE = 2 << 20        # x86-64's transparent huge page: superslab.huge_pages needs whole ones
SPAN_WASTE_LIMIT = 1 / 16  # grow a class's span until its tail waste is below this
SPAN_MIN_BLOCKS = 8        # ... and it holds this many blocks: fewer means spans churn
STRIDE_PAD = 16            # options.stride_pad: the gap after each block of a class ...
STRIDE_PAD_SIZES = 512     # ... whose size is a multiple of this (_stride)
MAX_CLASS_SIZE = 1 << 20  # the size->class table has a byte per 16 B up to the largest class
SPAN_MAX_BLOCKS = 64 * 64  # a span's remote frees are summarised in one 64-bit word, one
                           # bit per bitmap word of 64 blocks (runtime/heap.c, remote_give)
LIST_BATCH_MAX = 64        # a list tier's batch to or from the transfer cache goes through a
                           # 64-block buffer (runtime/thread.c, refill and flush)
PREWARM_BYTES_MAX = 16 << 20  # what every thread caches at its start, over all classes: the
                              # prewarm variant's is 1 MiB; 64 Ki blocks of 1 MiB were 64 GiB


def resolve(spec):
    """Check cross-field rules on the Node tree; return the resolved plain dict."""
    v = spec.value
    ss = _superslab(v["superslab"])
    # with decay_ms 0 the runtime has no transfer caches (runtime/transfer.c)
    transfers = v["options"].value["decay_ms"].value > 0
    tiny = _tiny(v["tiny"], ss, transfers)
    mid = _mid(v["mid"], tiny, ss, transfers)
    count = len(tiny) + len(mid["classes"])
    if count > MAX_CLASSES:  # name the first class over the limit
        if len(tiny) > MAX_CLASSES:
            i, field = MAX_CLASSES, f"tiny.classes[{MAX_CLASSES}].size"
            over = v["tiny"].value["classes"].value[i].value["size"]
        else:
            i = MAX_CLASSES - len(tiny)
            over, field = v["mid"].value["classes"].value[i], f"mid.classes[{i}]"
        raise over.error(field, f"{count} classes; at most {MAX_CLASSES} in all, tiny and mid")
    return {
        "schema": v["schema"].value,
        "name": v["name"].value,
        "superslab": ss,
        "tiny": {"classes": tiny},
        "mid": mid,
        "large": {"cache_bytes": v["large"].value["cache_bytes"].value},
        "options": {**OPTION_DEFAULTS, **{k: n.value for k, n in v["options"].value.items()}},
    }


def _pow2(n):
    return n > 0 and n & (n - 1) == 0


def _superslab(node):
    f = node.value
    total, slab = f["bytes"].value, f["slab_bytes"].value
    if not _pow2(total):
        raise f["bytes"].error("superslab.bytes", f"{total} is not a power of two")
    if not _pow2(slab):
        raise f["slab_bytes"].error("superslab.slab_bytes", f"{slab} is not a power of two")
    if slab * 8 > total:
        raise f["slab_bytes"].error("superslab.slab_bytes",
                                    f"{slab} leaves fewer than 8 slabs in a {total}-byte superslab")
    if total // slab > 512:
        raise f["slab_bytes"].error("superslab.slab_bytes",
                                    f"{total // slab} slabs per superslab; at most 512")
    huge = f["huge_pages"].value if "huge_pages" in f else False
    if huge and total < HUGE_PAGE:
        raise f["huge_pages"].error("superslab.huge_pages",
                                    f"needs superslabs of whole huge pages ({HUGE_PAGE} bytes); "
                                    f"superslab.bytes is {total}")
    return {"bytes": total, "slab_bytes": slab, "huge_pages": huge}


def _check_sizes(nodes, field, prev, ss):
    """Sizes: multiples of 16, strictly increasing after `prev`. `field` has {} for the index."""
    for i, n in enumerate(nodes):
        size = n.value
        before = "the last tiny class" if i == 0 and prev else "the class before it"
        if size % 16:
            raise n.error(field.format(i), f"size {size} is not a multiple of 16")
        if size == prev:
            raise n.error(field.format(i), f"size {size} repeats {before}")
        if size < prev:
            raise n.error(field.format(i), f"size {size} is not larger than {before} ({prev})")
        if size > MAX_CLASS_SIZE:
            raise n.error(field.format(i), f"size {size} is above {MAX_CLASS_SIZE}, the largest "
                          f"class size (larger requests are large allocations)")
        if 0 < size <= ss["bytes"] // 4 and _span(size, ss) // size > SPAN_MAX_BLOCKS:
            span = _span(size, ss)
            raise n.error(field.format(i), f"size {size} puts {span // size} blocks in a "
                          f"{span}-byte span; at most {SPAN_MAX_BLOCKS} (a larger size, or a "
                          f"smaller superslab.slab_bytes)")
        prev = size
    return prev


def smallest_class_size(ss):
    """The smallest class size whose span holds at most SPAN_MAX_BLOCKS blocks (16 B up to
    64 KiB slabs).  Every larger size is allowed too: a span is one slab while a slab holds
    16 blocks or more (the tail, less than a block, is then within SPAN_WASTE_LIMIT), so
    the count falls as the size grows; a longer span, at most 128 slabs (a quarter of at
    most 512), holds fewer than 128 * 16."""
    size = 16
    while _span(size, ss) // size > SPAN_MAX_BLOCKS:
        size += 16
    return size


def _tiny(node, ss, transfers):
    f = node.value
    default_tiers = f["tiers"].value
    classes = f["classes"].value
    if not classes:
        raise f["classes"].error("tiny.classes", "at least one tiny class is needed")
    _check_sizes([c.value["size"] for c in classes], "tiny.classes[{}].size", 0, ss)
    out = []
    for i, c in enumerate(classes):
        cf = c.value
        field = f"tiny.classes[{i}]"
        if cf["size"].value > ss["slab_bytes"]:
            raise cf["size"].error(f"{field}.size", f"size {cf['size'].value} does not fit a "
                                   f"{ss['slab_bytes']}-byte slab")
        tiers = cf["tiers"].value if "tiers" in cf else default_tiers
        out.append(_caches(cf, field, tiers, c, transfers))
    _check_prewarm(classes, out)
    return out


def _check_prewarm(classes, rows):
    """Every thread starts by caching each class's `prewarm` blocks: at most
    PREWARM_BYTES_MAX in all, named at the class that passes it."""
    total = 0
    for i, (c, row) in enumerate(zip(classes, rows)):
        total += row["prewarm"] * row["size"]
        if total > PREWARM_BYTES_MAX:
            raise c.value.get("prewarm", c).error(
                f"tiny.classes[{i}].prewarm", f"{row['prewarm']} blocks of {row['size']} B make "
                f"{total} bytes cached at every thread's start, over {PREWARM_BYTES_MAX} "
                f"(16 MiB)")


def _caches(cf, field, tiers, node, transfers):
    """ring/sll/refill/prewarm/transfer of one class, checked against its tiers.  transfer
    is 0 where the runtime would not use it (transfers: options.decay_ms > 0)."""
    got = {k: (cf[k].value if k in cf else d) for k, d in CLASS_DEFAULTS.items()}
    where = {k: cf.get(k, node) for k in CLASS_DEFAULTS}
    limits = {"ring": RING_MAX, "sll": SLL_MAX}
    for tier, hi in limits.items():
        if tier in tiers:
            if not 1 <= got[tier] <= hi:
                raise where[tier].error(f"{field}.{tier}", f"{got[tier]} is out of range 1..{hi}")
        else:
            got[tier] = 0  # no such tier: no capacity, no code
    first = next((t for t in tiers if t != "slab"), None)
    if first is None:
        got["refill"] = got["prewarm"] = 0
    else:
        if not 1 <= got["refill"] <= got[first]:
            raise where["refill"].error(f"{field}.refill",
                                        f"{got['refill']} is out of range 1..{got[first]} "
                                        f"(the {first} capacity)")
        if got["prewarm"] > got["ring"] + got["sll"]:
            raise where["prewarm"].error(f"{field}.prewarm", f"{got['prewarm']} exceeds the "
                                         f"class's cache capacity {got['ring'] + got['sll']}")
    if not (transfers and moves_batches(tiers, got)):
        got["transfer"] = 0  # so that the hash, too, says what the runtime does
    size = cf["size"].value if "size" in cf else None
    return {"size": size, "tiers": list(tiers), **got}


def moves_batches(tiers, got):
    """Whether a class's caches both take whole batches (of `refill` blocks) from the
    transfer cache and give them to it; otherwise the runtime never uses it.  A refill
    takes one into the first cache tier: a ring any batch, a list one through its buffer
    (runtime/transfer.c, hak_transfer_init, gives the class no room otherwise).  A flush,
    all tiers full, gives one from the last cache tier: only when that tier holds
    `refill` blocks, and a list only through its buffer (runtime/thread.c, flush)."""
    cache = [t for t in tiers if t != "slab"]
    if not cache:
        return False
    first, last, refill = cache[0], cache[-1], got["refill"]
    takes = first == "ring" or refill <= LIST_BATCH_MAX
    gives = refill <= got[last] and (last == "ring" or refill <= LIST_BATCH_MAX)
    return takes and gives


def _mid(node, tiny, ss, transfers):
    f = node.value
    sizes = f["classes"].value
    last_tiny = tiny[-1]["size"]
    if sizes:
        _check_sizes(sizes, "mid.classes[{}]", last_tiny, ss)
        if sizes[0].value > 2 * last_tiny:
            raise sizes[0].error("mid.classes[0]", f"size {sizes[0].value} leaves a gap after the "
                                 f"last tiny class {last_tiny} (more than twice its size)")
        for i, n in enumerate(sizes):
            if n.value > ss["bytes"] // 4:
                raise n.error(f"mid.classes[{i}]", f"size {n.value} does not fit a span "
                              f"(at most a quarter superslab, {ss['bytes'] // 4})")
    caches = _caches({k: f[k] for k in ("ring", "sll", "refill", "transfer") if k in f}, "mid",
                     f["tiers"].value, node, transfers)
    bound = f["class_cache_bytes"].value if "class_cache_bytes" in f else 0
    return {"tiers": caches["tiers"], "ring": caches["ring"], "sll": caches["sll"],
            "refill": caches["refill"], "transfer": caches["transfer"],
            "class_cache_bytes": bound, "classes": [n.value for n in sizes]}


def mid_caches(mid, size):
    """One mid class's ring, sll, refill and transfer: mid's, or where a full cache tier
    would hold more than mid.class_cache_bytes (0: no bound), lowered to what that holds,
    at least one block, and the refill in the same proportion as the first tier (so a
    batch stays within the tiers, and transfer is kept; it is checked as _caches does).
    So the large mid classes keep a few blocks each: 64 of 256 KiB were 16 MiB a thread."""
    got = {k: mid[k] for k in ("ring", "sll", "refill", "transfer")}
    bound = mid["class_cache_bytes"]
    if not bound:
        return got
    for tier in ("ring", "sll"):
        if got[tier]:
            got[tier] = min(got[tier], max(1, bound // size))
    first = next((t for t in mid["tiers"] if t != "slab"), None)
    if first is not None:
        got["refill"] = max(1, mid["refill"] * got[first] // mid[first])
    if not moves_batches(mid["tiers"], got):
        got["transfer"] = 0
    return got


def canonical_json(resolved):
    return json.dumps(resolved, sort_keys=True, indent=2) + "\n"


def spec_hash(resolved):
    return hashlib.sha256(canonical_json(resolved).encode()).hexdigest()[:16]


def _span(size, ss):
    """Smallest power-of-two multiple of slab_bytes holding at least
    SPAN_MIN_BLOCKS blocks with a small tail waste (at most a quarter
    superslab; failing both, the least wasteful span that fits)."""
    best = None
    span = ss["slab_bytes"]
    while span <= ss["bytes"] // 4:
        waste = span % size
        if span // size >= 1 and (best is None or waste * best[0] < best[1] * span):
            best = (span, waste)
        if waste <= span * SPAN_WASTE_LIMIT and span // size >= SPAN_MIN_BLOCKS:
            return span
        span *= 2
    return best[0]


def _stride(c, ss, pad):
    """The bytes from one block of class c to the next in its span: its size, or
    with options.stride_pad STRIDE_PAD more for a tiny class whose size is a
    multiple of STRIDE_PAD_SIZES.  Blocks 512 B apart start in only 8 of the 64
    sets of a first-level cache of 64-byte lines (AMD Zen 4: 48 KiB, 12 ways),
    so at most 96 of them can have their first line there at once, 48 at 1024
    B; 16 B more spreads them over every set.  fixed 512 B and 1024 B (128
    blocks live) took one first-level miss per malloc+free pair (cachegrind,
    that cache), none padded: 1.077x and 1.060x, 9 interleaved rounds
    (bench/NOTES.md, "Blocks 16 bytes apart more").  A 256 B stride reaches 16
    sets (192 lines) and is left as it is.  So are the mid classes, though a
    line more a block (their spans hold too few blocks for 16 B to spread
    them) ran fixed 4 KiB and 8 KiB 1.22x and 1.19x and mid_mt 4T 1.14x:
    their blocks are the aligned ones.  A class serves an aligned request only
    where its stride is a multiple of the alignment (runtime/api.c, aligned),
    and a padded 4 KiB class would send every posix_memalign(4096, n <= 4096)
    and valloc to a mapping of its own."""
    size = c["size"]
    if (pad and c["kind"] == "tiny" and size % STRIDE_PAD_SIZES == 0
            and size + STRIDE_PAD <= ss["slab_bytes"]):
        return size + STRIDE_PAD
    return size


def _divisibility(stride, blocks, span):
    """Constants to test "off starts a block" and to divide by the stride with
    a multiply (the table dispatch; proof at hak_block_start, hak_abi.h):
    div_mul = ceil(2^64 / stride), and start_limit bounds off * div_mul
    (mod 2^64) for the offsets of the first `blocks` blocks."""
    div_mul = (1 << 64) // stride + (1 if (1 << 64) % stride else 0)
    excess = stride * div_mul - (1 << 64)
    # no tail to reject when the stride is a power of two (excess 0)
    assert excess or blocks * stride == span, (stride, blocks, span)
    return {"div_mul": div_mul, "start_limit": blocks * excess if excess else 1}


# struct hak_thread_block (templates/hak_spec.h.j2): 48 bytes of the empty
# bin (code 0's), state and heap, then per class a 64-byte-aligned struct of
# its bin (32 bytes) and its ring.
THREAD_BLOCK_HEAD = 48
BIN_HEADER = 32
# The stride's block may be at most this many times the packed one; past it
# (a spec with one ring far larger than the rest) bins stay packed and free
# loads a bin's offset from hak_fast.
STRIDE_MAX_GROWTH = 2


def _bin_stride(rows):
    """The table dispatch's distance between two classes' bins: free() finds
    a bin at code * stride in the thread block, two instructions and no load where
    an offset from hak_fast was a load on free's chain of dependent loads
    (mixed sizes, ws=256: 1.08x, 21 interleaved rounds).  The smallest
    a * 2^k, a in (3, 5, 9), k >= 7, that holds the largest bin: a multiple of
    128, as every bin's offset is (_place_bins); not a power of
    two, whose bins would all share one page offset and so one L1 set; and a
    lea and a shift to multiply by.  Every class takes a stride: the ring
    spec's block (spec/variants/ring.yaml) grows from 55 to 91 KiB (its mid
    rings are a quarter of the tiny ones), up to 36 KiB more resident per
    thread.

    A spec whose every bin fits in 128 bytes (a header and a ring of at most
    12 slots; no ring at all in the default spec) has them 128 apart, each
    still at 64 mod 128, and no more bytes than packing them would take
    where there is no ring (the smallest of the form, 384, would more than
    double the block, so such specs had no stride before and free loaded
    the offset).  At 128 a power of two does no harm: 32 bins share a page,
    each on a set of its own.  The default spec (lists only; then the
    variant grid16) with this stride and _size_grid against the same spec
    packed with loaded offsets and the table for every size, 31 interleaved
    rounds: mixed ws=256 1.15x, ws=8192 1.08x, fixed sizes 1.01-1.03x;
    _size_grid alone makes 1.08x of the 1.15x (bench/NOTES.md, "Lists on a
    16-byte grid")."""
    need = max(BIN_HEADER + 8 * c["ring"] for c in rows)
    if need <= 128:
        return 128
    return min(a << k for a in (3, 5, 9) for k in range(7, 32) if a << k >= need)


def _size_grid(rows, tiny_count, stride, table_kinds):
    """The largest size up to which malloc's table front finds a bin by
    arithmetic, (n + 15) / 16 * stride, as free finds it by code, instead of
    loading hak_size_bin: 0 for none.  Only when every tiny class is on the
    16-byte grid (sizes 16, 32, 48, ... with no gap) and has a cache tier,
    there is a stride, and one kind of first tier (no kind bit to load).  So
    the branch between the two ways is the tiny/mid split, as predictable as
    the program's own sizes; a split inside random sizes is not: the floor
    allocator with hakmem's classes by arithmetic and a branch at 128 B ran
    mixed ws=256 at 0.83x its own table lookup (bench/NOTES.md).  The load
    sits on malloc's chain, size -> bin -> head -> block: the default spec
    (then grid16) with the arithmetic against the table, 41 interleaved
    rounds: mixed ws=256 1.08x, ws=8192 1.00x, fixed 64 B 1.01x."""
    if not stride or len(table_kinds) != 1:
        return 0
    tiny = rows[:tiny_count]
    if all(c["size"] == 16 * (i + 1) and c["table_tier"] for i, c in enumerate(tiny)):
        return tiny[-1]["size"]
    return 0


def _place_bins(rows, stride):
    """Each class's bin offset in struct hak_thread_block: a multiple of 128,
    the block being at 64 mod 128 in memory (struct hak_thread_slot).  A
    block of a class whose size is a multiple of 128 starts at such a
    multiple within its page; the fronts read a bin right after the program
    has written a block's first word (and the other way round), and two
    addresses with the same low 12 bits look alike to the CPU's store-to-load
    check (4K aliasing): the load waits for the store.  At 64 mod 128 no bin
    is ever at such a block start.  The 1024 B class's bin had been at page
    offset 2048: fixed 1024 B went 113.0 -> 125.5 M ops/s, fixed 256 B 131.5
    -> 147.3 (medians of 6 interleaved long runs).  With a stride (the table
    dispatch) each bin is at code * stride, padded to it; without one, bins
    are packed, with 64 bytes of padding before one where it would land at 64
    mod 128.  hak_tables.c checks every offset against the compiler's."""
    off = THREAD_BLOCK_HEAD
    for c in rows:
        off = -(-off // 64) * 64
        at = c["code"] * stride if stride else off + (off % 128)
        c["bin_pad"] = at - off
        c["bin_at"] = at
        off = at + -(-(BIN_HEADER + 8 * c["ring"]) // 64) * 64
    return off


def model(resolved, spec_path):
    """Everything the templates print, computed here."""
    ss = resolved["superslab"]
    rows = [dict(c, kind="tiny") for c in resolved["tiny"]["classes"]]
    mid = resolved["mid"]
    rows += [{"size": s, "kind": "mid", "tiers": mid["tiers"], **mid_caches(mid, s),
              "prewarm": 0} for s in mid["classes"]]
    for i, c in enumerate(rows):
        stride = _stride(c, ss, resolved["options"]["stride_pad"])
        span = _span(stride, ss)
        blocks = span // stride
        c.update(index=i, code=i + 1, stride=stride, span_bytes=span,
                 span_units=span // ss["slab_bytes"],
                 blocks=blocks, waste_bytes=span - blocks * stride,
                 waste_pct=f"{100 * (span - blocks * stride) / span:.1f}",
                 cache_tiers=[t for t in c["tiers"] if t != "slab"])
    for c in rows:
        c.update(_divisibility(c["stride"], c["blocks"], c["span_bytes"]),
                 table_tier=c["cache_tiers"][0] if c["cache_tiers"] else None)
    # the kinds of first tier the table dispatch's fronts serve (no class with
    # a cache: the ring front, which then always misses into the per-class path)
    table_kinds = [t for t in ("ring", "sll") if any(c["table_tier"] == t for c in rows)] or ["ring"]
    packed_bytes = _place_bins(rows, 0)
    bin_stride = _bin_stride(rows) if resolved["options"]["dispatch"] == "table" else 0
    if bin_stride and _place_bins(rows, bin_stride) > STRIDE_MAX_GROWTH * packed_bytes:
        bin_stride = 0
        _place_bins(rows, 0)
    max_size = rows[-1]["size"]
    table, ci = [], 0
    for slot in range(max_size // 16 + 1):
        while rows[ci]["size"] < slot * 16:
            ci += 1
        table.append(ci)
    return {
        "name": resolved["name"],
        "hash": spec_hash(resolved),
        "spec_path": spec_path,
        "superslab": ss,
        "slab_shift": ss["slab_bytes"].bit_length() - 1,
        "superslab_shift": ss["bytes"].bit_length() - 1,
        "classes": rows,
        "tiny_count": len(resolved["tiny"]["classes"]),
        "max_size": max_size,
        "span_blocks_max": max(c["blocks"] for c in rows),
        "size_table": table,
        "large_cache_bytes": resolved["large"]["cache_bytes"],
        "options": resolved["options"],
        "guarded": resolved["options"]["free_check"] == "guarded",
        "table_kinds": table_kinds,
        "bin_stride": bin_stride,
        "size_grid": _size_grid(rows, len(resolved["tiny"]["classes"]), bin_stride, table_kinds),
    }
