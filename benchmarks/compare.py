#!/usr/bin/env python
"""Print the speedups between two benchmark runs.

    python benchmarks/compare.py old.json new.json [--all]

Speedup > 1 means the new run is faster. For ``bench_graphs.py`` results: images/s (new / old) and
batch-1 latency p50 (old / new) per model, batch and framework. For any other JSON (``bench_ops.py``),
every object holding a ``median`` (or ``p50``) is matched by its path in the two files; the direction
comes from the path: rates (``per_s``, ``gflops``, ``throughput``, ``bandwidth``) are better high,
times (``ms``, ``us``, ``ns``, ``_s``, ``time``, ``latency``) better low. A geometric mean closes each
table. Comparisons across machines or thread counts are flagged.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

RATE_TOKENS = {"gflops", "gflop", "tflops", "throughput", "bandwidth", "gbs", "gibs", "fps", "ips"}
TIME_TOKENS = {"ms", "us", "ns", "s", "sec", "seconds", "time", "latency", "duration"}


def load(path: str) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SystemExit(f"{path}: {e}") from e


def direction(path: tuple[str, ...]) -> int:
    """+1: higher is better, -1: lower is better, 0: unknown. The innermost telling key decides."""
    for part in reversed(path):
        p = part.lower().replace("-", "_").replace("/", "_")
        tokens = set(p.split("_"))
        if "per_s" in p or "per_sec" in p or tokens & RATE_TOKENS:
            return 1
        if tokens & TIME_TOKENS:
            return -1
    return 0


def centres(obj: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], float]]:
    """(path, value) of every dict with a numeric ``median`` (or, failing that, ``p50``)."""
    if isinstance(obj, dict):
        for key in ("median", "p50"):
            if isinstance(obj.get(key), (int, float)) and not isinstance(obj.get(key), bool):
                yield path, float(obj[key])
                break
        for k, v in obj.items():
            if isinstance(v, (dict, list)):
                yield from centres(v, (*path, str(k)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            # Entries of a list are matched by their "name" (or "label", "id") when they have one.
            key = next((str(v[k]) for k in ("name", "label", "id") if isinstance(v, dict) and k in v), str(i))
            yield from centres(v, (*path, key))


def geomean(xs: list[float]) -> float | None:
    xs = [x for x in xs if x > 0 and math.isfinite(x)]
    return math.exp(sum(map(math.log, xs)) / len(xs)) if xs else None


def warn_setup(old: dict[str, Any], new: dict[str, Any]) -> None:
    mo, mn = old.get("machine", {}), new.get("machine", {})
    for key in ("cpu", "cpus_available", "threads_per_framework", "device", "backend"):
        if key in mo and key in mn and mo[key] != mn[key]:
            print(f"WARNING: {key} differs: {mo[key]!r} -> {mn[key]!r}")
    for run, tag in ((old, "old"), (new, "new")):
        g = run.get("git") or run.get("commit") or "?"
        commit = g.get("commit", "?") if isinstance(g, dict) else g
        print(f"{tag}: {run.get('created', '?')}  commit {str(commit)[:12]}  {run.get('command', '')}")
    print()


def compare_graphs(old: dict[str, Any], new: dict[str, Any]) -> None:
    rows = []
    speedups: dict[str, list[float]] = {}
    for model, mnew in new.get("models", {}).items():
        mold = old.get("models", {}).get(model)
        if mold is None:
            continue
        for batch, bnew in mnew.get("batches", {}).items():
            bold = mold.get("batches", {}).get(batch, {})
            for fw in ("mpsnn", "torch", "onnxruntime"):
                o, n = bold.get(fw), bnew.get(fw)
                if not o or not n or "error" in o or "error" in n:
                    if o or n:
                        rows.append((model, batch, fw, "—", "—", "n/a", "", "", ""))
                    continue
                ro, rn = o["images_per_s"]["median"], n["images_per_s"]["median"]
                s = rn / ro
                speedups.setdefault(fw, []).append(s)
                lat = ("", "", "")
                if "latency_ms" in o and "latency_ms" in n:
                    lo, ln = o["latency_ms"]["p50"], n["latency_ms"]["p50"]
                    lat = (f"{lo:.3f}", f"{ln:.3f}", f"x{lo / ln:.3f}")
                rows.append((model, batch, fw, f"{ro:.1f}", f"{rn:.1f}", f"x{s:.3f}", *lat))
    header = ("model", "batch", "framework", "old img/s", "new img/s", "speedup", "old p50 ms", "new p50 ms", "speedup")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print(
            "  ".join(
                str(c).rjust(w) if i > 2 else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    print()
    for fw, xs in speedups.items():
        g = geomean(xs)
        if g is not None:
            print(f"geomean throughput speedup, {fw}: x{g:.3f} over {len(xs)} cases")


def compare_generic(old: dict[str, Any], new: dict[str, Any], show_all: bool) -> None:
    old_c = dict(centres(old))
    rows, speedups = [], []
    for path, vn in centres(new):
        if path not in old_c:
            continue
        vo = old_c[path]
        d = direction(path)
        if d == 0 and not show_all:
            continue
        if vo <= 0 or vn <= 0:
            s = float("nan")
        else:
            s = vn / vo if d >= 0 else vo / vn
        if d != 0 and math.isfinite(s):
            speedups.append(s)
        rows.append(("/".join(path), f"{vo:.4g}", f"{vn:.4g}", f"x{s:.3f}" + ("" if d else " (new/old?)")))
    if not rows:
        print("no common measurements (objects with 'median' or 'p50') found")
        return
    header = ("measurement", "old", "new", "speedup")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for r in [header, *rows]:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))))
    g = geomean(speedups)
    if g is not None:
        print(f"\ngeomean speedup: x{g:.3f} over {len(speedups)} measurements")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Print speedups between two benchmark JSON files.")
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--all", action="store_true", help="generic mode: also list values of unknown direction")
    args = p.parse_args(argv)
    old, new = load(args.old), load(args.new)
    warn_setup(old, new)
    if old.get("benchmark") == new.get("benchmark") == "bench_graphs":
        compare_graphs(old, new)
    else:
        compare_generic(old, new, args.all)
    return 0


if __name__ == "__main__":
    sys.exit(main())
