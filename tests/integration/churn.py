#!/usr/bin/env python3
"""Deterministic dict/list/str/bytes churn for allocator integration tests.

Prints one digest line per phase and a final digest.  The output depends only
on the interpreter version and on PYTHONHASHSEED (run.sh sets it to 0), never
on the allocator: any difference between a run with and without LD_PRELOAD is
an allocator bug.  Run with PYTHONMALLOC=malloc to route every object through
malloc/realloc/free instead of pymalloc's arenas.

Usage: churn.py [SCALE]   (SCALE defaults to 1; work grows linearly with it)
"""
import gc
import hashlib
import json
import random
import sys
import threading

SCALE = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
TOTAL = hashlib.sha256()
ALPHA = "abcdefghijklmnopqrstuvwxyz"


def report(name, *values):
    h = hashlib.sha256(repr(values).encode()).hexdigest()[:16]
    TOTAL.update(name.encode() + h.encode())
    print(f"{name}: {h}")


def n(x):
    return max(1, int(x * SCALE))


def rstr(rng, lo, hi):
    k = rng.randint(lo, hi)
    return "".join(rng.choices(ALPHA, k=k))


def phase_dict(rng):
    """Grow, shrink and regrow dicts of string keys and list values."""
    d = {}
    acc = 0
    for rnd in range(4):
        for i in range(n(40000)):
            k = rstr(rng, 1, 24) + str(i)
            d[k] = [i, k * rng.randint(0, 3), (rnd, i)]
        keys = list(d)
        rng.shuffle(keys)
        for k in keys[: len(keys) * 3 // 4]:
            v = d.pop(k)
            w = len(v) if isinstance(v, dict) else len(v[1]) + v[0]
            acc = (acc * 31 + w) & 0xFFFFFFFF
        # a second level of small dicts
        for k in list(d)[:n(5000)]:
            d[k] = {str(j): j * j for j in range(rng.randint(0, 12))}
    items = sorted((k, repr(v)) for k, v in d.items())
    return acc, len(d), hashlib.sha256(repr(items).encode()).hexdigest()


def phase_str(rng):
    """String building, splitting, replacing, encoding."""
    parts = [rstr(rng, 0, 40) for _ in range(n(40000))]
    s = " ".join(parts)
    acc = [len(s)]
    for rnd in range(6):
        s = s.replace("a", "AA").replace("e", "").upper().lower()
        words = s.split()
        words.sort(key=lambda w: (len(w), w))
        acc.append(len(words))
        s = ",".join(reversed(words))
        s = s.replace(",", " ")
        b = s.encode("utf-8")
        acc.append(hashlib.md5(b).hexdigest())
        s = b.decode("utf-8")
        # many small formatted strings
        fmt = [f"{w}:{i:08x}:{len(w) * 1.5:.3f}" for i, w in enumerate(words[: n(20000)])]
        acc.append(hashlib.md5("|".join(fmt).encode()).hexdigest())
        # strings of every size class around the boundaries
        blob = [("x" * k) + str(k) for k in range(0, 4096, 7)]
        acc.append(sum(map(len, blob)))
        s = s[: len(s) // 2] + " " + "".join(blob[-50:])
    return acc


def phase_list(rng):
    """Lists growing by append, shrinking by pop, slicing, sorting tuples."""
    acc = 0
    lists = [[] for _ in range(256)]
    for i in range(n(400000)):
        li = lists[rng.randrange(256)]
        if li and rng.random() < 0.45:
            acc = (acc + li.pop()) & 0xFFFFFFFF
        else:
            li.append(i)
        if i % 5000 == 0:
            j = rng.randrange(256)
            lists[j] = lists[j][::2]
    tuples = [(rng.randrange(1000), rstr(rng, 0, 8), i) for i in range(n(100000))]
    tuples.sort()
    big = []
    for k in range(20):
        big.extend(range(n(50000)))
        del big[: len(big) // 3]
    return acc, [len(li) for li in lists], tuples[:: n(997)], len(big), sum(big)


def phase_json(rng):
    """Nested structures through json dumps/loads."""
    def make(depth):
        if depth == 0 or rng.random() < 0.2:
            c = rng.randrange(4)
            if c == 0:
                return rng.randint(-10**6, 10**6)
            if c == 1:
                return rstr(rng, 0, 30)
            if c == 2:
                return rng.random() < 0.5
            return None
        if rng.random() < 0.5:
            return [make(depth - 1) for _ in range(rng.randint(0, 8))]
        return {rstr(rng, 1, 10): make(depth - 1) for _ in range(rng.randint(0, 8))}

    out = []
    for _ in range(n(25)):
        obj = make(7)
        text = json.dumps(obj, sort_keys=True)
        back = json.loads(text)
        text2 = json.dumps(back, sort_keys=True, indent=1)
        out.append((len(text), hashlib.md5(text2.encode()).hexdigest()))
    return out


def phase_bytes(rng):
    """bytearray growth/shrink (realloc), big ints, memoryview slicing."""
    ba = bytearray()
    acc = 0
    for i in range(n(100000)):
        k = rng.choice((1, 7, 100, 1000, 5000, 40000))
        if len(ba) > 4 << 20 or (ba and rng.random() < 0.3):
            del ba[: rng.randrange(len(ba) + 1)]
        else:
            ba += bytes([i & 0xFF]) * k
        acc = (acc * 1000003 + len(ba)) & ((1 << 64) - 1)
    mv = memoryview(bytes(ba))
    chunks = [bytes(mv[i : i + 4097]) for i in range(0, len(mv), 4097)]
    f = 1
    for i in range(1, n(3000)):
        f *= i
    return acc, len(chunks), hashlib.md5(b"".join(chunks)).hexdigest(), f % (10**40 + 7)


class Node:
    __slots__ = ("a", "b", "payload", "__weakref__")


def phase_gc(rng):
    """Reference cycles freed by the cyclic collector."""
    acc = 0
    for rnd in range(n(20)):
        nodes = []
        for i in range(5000):
            x = Node()
            x.payload = "p" * (i % 300)
            x.a = nodes[rng.randrange(len(nodes))] if nodes else None
            x.b = None
            nodes.append(x)
        for x in nodes[::3]:
            x.b = nodes[rng.randrange(len(nodes))]
        acc += sum(len(x.payload) for x in nodes[::17])
        del nodes, x
        acc += gc.collect()
    return acc


def worker(seed, out, idx):
    rng = random.Random(seed)
    d = {}
    acc = 0
    for i in range(n(40000)):
        k = rng.randrange(5000)
        if k in d and rng.random() < 0.5:
            acc ^= hash(d.pop(k)[0]) & 0xFFFF
        else:
            d[k] = (rstr(rng, 0, 64), [i] * rng.randint(0, 16))
    out[idx] = (acc, len(d), sorted((k, len(v[0]), len(v[1])) for k, v in d.items())[:: n(50)])


def phase_threads(rng):
    """Objects created in one thread and freed in another (results, queues)."""
    outs = [None] * 4
    ts = [threading.Thread(target=worker, args=(rng.randrange(1 << 30), outs, i)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return outs


def main():
    rng = random.Random(20240601)
    for name, fn in (
        ("dict", phase_dict),
        ("str", phase_str),
        ("list", phase_list),
        ("json", phase_json),
        ("bytes", phase_bytes),
        ("gc", phase_gc),
        ("threads", phase_threads),
    ):
        report(name, fn(rng))
    print("total:", TOTAL.hexdigest())


if __name__ == "__main__":
    main()
