#!/usr/bin/env python
"""Whole-network benchmark: mpsnn against PyTorch (eager) and ONNX Runtime on the CPU.

    python benchmarks/bench_graphs.py [--quick] [--json out.json] [--update-readme]

For each network of ``models.py`` (MNIST of graph.md §8.1, ResNet-18, ResNet-50), all built from the
same seeded weights:

1. check that the softmax outputs of every framework agree with PyTorch's (max abs diff < 1e-4);
2. measure images/s at batch 1 and batch 32 and the batch-1 latency (p50 over single calls).

All frameworks run in one process with 2 threads each (``torch.set_num_threads``, ONNX Runtime
``intra_op_num_threads``, ``OMP_NUM_THREADS`` for mpsnn's oneDNN, set before anything is imported).
After a warm-up the frameworks are timed round-robin, one sample each per round, the order rotating
every round, so that the machine's slow spells hit all of them alike; the reported numbers are medians
over rounds, and the mpsnn/peer ratios are medians of the per-round ratios. If mpsnn cannot be
imported (or a network cannot be built with it) the peers are still benchmarked and the reason is
reported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _harness as H
from _harness import Contender, time_round_robin


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer rounds and shorter samples (smoke test)")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON to PATH")
    p.add_argument(
        "--update-readme", action="store_true", help="rewrite the bench_graphs section of benchmarks/README.md"
    )
    p.add_argument("--models", default="mnist,resnet18,resnet50", help="comma-separated subset (default: all)")
    p.add_argument("--batches", default="1,32", help="comma-separated batch sizes (default: 1,32)")
    p.add_argument("--frameworks", default="mpsnn,torch,onnxruntime", help="comma-separated subset")
    p.add_argument("--rounds", type=int, help="timed rounds per framework (default 20, --quick 5)")
    p.add_argument("--threads", type=int, default=2, help="threads per framework (default 2)")
    p.add_argument("--tolerance", type=float, default=1e-4, help="max abs diff of softmax outputs")
    return p.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None

# Thread settings must be in the environment before NumPy, PyTorch or mpsnn load their runtimes.
H.set_thread_env(ARGS.threads if ARGS else 2)

import models  # noqa: E402
import numpy as np  # noqa: E402

BEGIN, END = "<!-- bench_graphs:begin -->", "<!-- bench_graphs:end -->"
FRAMEWORK_TITLES = {"mpsnn": "mpsnn", "torch": "PyTorch", "onnxruntime": "ONNX Runtime"}
PEERS = ("torch", "onnxruntime")


# --------------------------------------------------------------------------------------------------
# Imports of the frameworks (each may be missing)
# --------------------------------------------------------------------------------------------------


def import_frameworks(wanted: list[str], threads: int) -> tuple[dict[str, Any], dict[str, str]]:
    """The wanted frameworks, mpsnn first; PyTorch also for ONNX Runtime, whose model is exported
    from the PyTorch one."""
    names = [n for n in ("mpsnn", "torch", "onnxruntime") if n in wanted or (n == "torch" and "onnxruntime" in wanted)]
    return H.import_frameworks(names, threads)


# --------------------------------------------------------------------------------------------------
# Results of one model and batch
# --------------------------------------------------------------------------------------------------


def summarize(c: Contender, batch: int) -> dict[str, Any]:
    if c.error is not None:
        return {"error": c.error}
    med = statistics.median(c.sample_s)
    best = min(c.sample_s)
    out: dict[str, Any] = {
        "images_per_s": {"median": batch / med, "max": batch / best},
        "batch_time_ms": {"median": med * 1e3, "min": best * 1e3},
        "samples": len(c.sample_s),
        "calls_per_sample": c.calls_per_sample,
        "calls": len(c.call_s),
    }
    if batch == 1:
        out["latency_ms"] = {
            "p50": statistics.median(c.call_s) * 1e3,
            "p90": float(np.percentile(c.call_s, 90)) * 1e3,
            "min": min(c.call_s) * 1e3,
            "count": len(c.call_s),
        }
    return out


def paired_ratios(a: Contender, b: Contender, batch: int) -> dict[str, float] | None:
    """a/b throughput (> 1: a is faster), from the samples of the same round; plus ratios of medians."""
    per_round = H.round_ratio(a, b)
    if per_round is None:
        return None
    out = {
        "images_per_s": per_round,
        "images_per_s_of_medians": statistics.median(b.sample_s) / statistics.median(a.sample_s),
    }
    if batch == 1:
        out["latency_p50"] = statistics.median(a.call_s) / statistics.median(b.call_s)
    return out


# --------------------------------------------------------------------------------------------------
# Per model
# --------------------------------------------------------------------------------------------------


def build_runners(model: str, w: models.Weights, mods: dict[str, Any], wanted: list[str], threads: int):
    """Returns ({framework: runner}, {framework: error})."""
    runners: dict[str, Callable[[np.ndarray], Any]] = {}
    errors: dict[str, str] = {}
    net = None
    if "torch" in mods:
        try:
            net = models.build_torch(model, w)
            if "torch" in wanted:
                runners["torch"] = models.torch_runner(net)
        except Exception as e:
            errors["torch"] = f"{type(e).__name__}: {e}"
    if "onnxruntime" in wanted and "onnxruntime" in mods:
        if net is None:
            errors["onnxruntime"] = "needs the PyTorch model to export it"
        else:
            try:
                runners["onnxruntime"] = models.onnxruntime_runner(models.build_onnxruntime(net, model, threads))
            except Exception as e:
                errors["onnxruntime"] = f"{type(e).__name__}: {e}"
    if "mpsnn" in wanted and "mpsnn" in mods:
        try:
            runners["mpsnn"] = models.mpsnn_runner(models.build_mpsnn(model, w))
        except Exception as e:
            errors["mpsnn"] = f"{type(e).__name__}: {e}"
            traceback.print_exc()
    return runners, errors


def check_agreement(model: str, runners: dict[str, Callable], tol: float) -> dict[str, Any]:
    """Every framework against PyTorch (and mpsnn against ONNX Runtime too), batch 4."""
    x = models.make_input(model, 4, seed=2)
    outs: dict[str, np.ndarray] = {}
    result: dict[str, Any] = {}
    for name, run in runners.items():
        try:
            y = np.array(run(x), dtype=np.float32).reshape(4, -1)
            if y.shape[1] != models.NUM_CLASSES[model]:
                raise ValueError(f"output has {y.shape[1]} values per image, expected {models.NUM_CLASSES[model]}")
            outs[name] = y
        except Exception as e:
            result[name] = {"error": f"{type(e).__name__}: {e}"}
    pairs = [(n, "torch") for n in ("onnxruntime", "mpsnn")] + [("mpsnn", "onnxruntime")]
    for a, b in pairs:
        if a in outs and b in outs:
            d = np.abs(outs[a] - outs[b])
            result[f"{a}-vs-{b}"] = {
                "max_abs_diff": float(d.max()),
                "max_rel_diff": float((d / np.maximum(np.abs(outs[b]), 1e-30)).max()),
                "argmax_agree": bool((outs[a].argmax(1) == outs[b].argmax(1)).all()),
                "ok": bool(d.max() < tol),
            }
    for name, y in outs.items():
        result.setdefault("row_sums", {})[name] = float(np.abs(y.sum(1) - 1).max())
    return result


def bench_model(model: str, mods: dict[str, Any], wanted: list[str], settings: dict[str, Any]) -> dict[str, Any]:
    t0 = time.perf_counter()
    w = models.make_weights(model, seed=settings["seed"])
    runners, build_errors = build_runners(model, w, mods, wanted, settings["threads"])
    agreement = check_agreement(model, runners, settings["tolerance"])
    for key, res in agreement.items():
        if key == "row_sums":
            continue
        if "error" in res:
            print(f"  {model}: {key} failed to run: {res['error']}")
        else:
            flag = "ok" if res["ok"] else f"MISMATCH (tolerance {settings['tolerance']:g})"
            print(f"  {model}: {key}: max abs diff {res['max_abs_diff']:.3g} ({flag})")
    for name, err in build_errors.items():
        print(f"  {model}: {name} not built: {err}")

    order = [n for n in ("mpsnn", "torch", "onnxruntime") if n in runners and "error" not in agreement.get(n, {})]
    batches: dict[str, Any] = {}
    for batch in settings["batches"]:
        x = models.make_input(model, batch, seed=settings["seed"] + 1)
        contenders = [Contender(n, runners[n]) for n in order]
        time_round_robin(
            contenders, x, settings["rounds"], settings["warmup_s"], settings["target_sample_s"], settings["gap_s"]
        )
        entry: dict[str, Any] = {c.name: summarize(c, batch) for c in contenders}
        by_name = {c.name: c for c in contenders}
        ratios = {}
        if "mpsnn" in by_name:
            for peer in PEERS:
                if peer in by_name:
                    r = paired_ratios(by_name["mpsnn"], by_name[peer], batch)
                    if r is not None:
                        ratios[f"mpsnn/{peer}"] = r
        entry["ratios"] = ratios
        batches[str(batch)] = entry
        print_batch(model, batch, entry)
    return {
        "input_hwc": list(models.INPUT_HWC[model]),
        "classes": models.NUM_CLASSES[model],
        "build_errors": build_errors,
        "agreement": agreement,
        "batches": batches,
        "wall_s": time.perf_counter() - t0,
    }


def print_batch(model: str, batch: int, entry: dict[str, Any]) -> None:
    for name in ("mpsnn", "torch", "onnxruntime"):
        r = entry.get(name)
        if r is None:
            continue
        if "error" in r:
            print(f"  {model:9s} b{batch:<3d} {name:12s} error: {r['error']}")
            continue
        line = (
            f"  {model:9s} b{batch:<3d} {name:12s} {r['images_per_s']['median']:9.1f} img/s "
            f"(best {r['images_per_s']['max']:.1f}, {r['samples']}x{r['calls_per_sample']} calls)"
        )
        if "latency_ms" in r:
            line += f"  p50 {r['latency_ms']['p50']:.3f} ms"
        print(line)
    for key, r in entry.get("ratios", {}).items():
        line = f"  {model:9s} b{batch:<3d} {key}: throughput x{r['images_per_s']:.3f}"
        if "latency_p50" in r:
            line += f", latency p50 x{r['latency_p50']:.3f}"
        print(line)
    sys.stdout.flush()


# --------------------------------------------------------------------------------------------------
# README table
# --------------------------------------------------------------------------------------------------


def _fmt_rate(r: dict[str, Any] | None) -> str:
    if r is None:
        return "—"
    if "error" in r:
        return "error"
    v = r["images_per_s"]["median"]
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}"


def _fmt_ratio(entry: dict[str, Any], peer: str, key: str) -> str:
    r = entry.get("ratios", {}).get(f"mpsnn/{peer}")
    return "—" if r is None or key not in r else f"{r[key]:.2f}"


def readme_section(res: dict[str, Any]) -> str:
    s = res["settings"]
    lines = [*H.readme_header(res, f"{s['rounds']} alternating rounds per framework, medians"), ""]
    if not res["mpsnn"]["available"]:
        lines += [f"**mpsnn was not benchmarked**: {res['mpsnn']['error']}", ""]

    lines += [
        "Throughput, images/s (higher is better); ratio = mpsnn / peer, median of per-round ratios "
        "(> 1: mpsnn faster).",
        "",
        "| Model | Batch | mpsnn | PyTorch | ONNX Runtime | mpsnn / PyTorch | mpsnn / ORT |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for model, mres in res["models"].items():
        for batch, entry in mres["batches"].items():
            lines.append(
                f"| {model} | {batch} | {_fmt_rate(entry.get('mpsnn'))} | {_fmt_rate(entry.get('torch'))} | "
                f"{_fmt_rate(entry.get('onnxruntime'))} | {_fmt_ratio(entry, 'torch', 'images_per_s')} | "
                f"{_fmt_ratio(entry, 'onnxruntime', 'images_per_s')} |"
            )
    lines += [
        "",
        "Batch-1 latency p50, ms (lower is better); ratio = mpsnn / peer (< 1: mpsnn faster).",
        "",
        "| Model | mpsnn | PyTorch | ONNX Runtime | mpsnn / PyTorch | mpsnn / ORT |",
        "|---|---:|---:|---:|---:|---:|",
    ]

    def lat(r: dict[str, Any] | None) -> str:
        if r is None:
            return "—"
        return "error" if "error" in r else f"{r['latency_ms']['p50']:.3f}"

    for model, mres in res["models"].items():
        entry = mres["batches"].get("1")
        if entry is None:
            continue
        lines.append(
            f"| {model} | {lat(entry.get('mpsnn'))} | {lat(entry.get('torch'))} | {lat(entry.get('onnxruntime'))} | "
            f"{_fmt_ratio(entry, 'torch', 'latency_p50')} | {_fmt_ratio(entry, 'onnxruntime', 'latency_p50')} |"
        )
    lines += [
        "",
        f"Agreement of the softmax outputs (batch 4, max abs diff; tolerance {s['tolerance']:g}):",
        "",
        "| Model | ORT vs PyTorch | mpsnn vs PyTorch | mpsnn vs ORT |",
        "|---|---:|---:|---:|",
    ]

    def agree(a: dict[str, Any], key: str) -> str:
        r = a.get(key)
        if r is None:
            return "—"
        return f"{r['max_abs_diff']:.1e}" + ("" if r["ok"] else " **FAIL**")

    for model, mres in res["models"].items():
        a = mres["agreement"]
        lines.append(
            f"| {model} | {agree(a, 'onnxruntime-vs-torch')} | {agree(a, 'mpsnn-vs-torch')} | "
            f"{agree(a, 'mpsnn-vs-onnxruntime')} |"
        )
    errors = [
        f"- {model}, {fw}: {err}" for model, mres in res["models"].items() for fw, err in mres["build_errors"].items()
    ]
    if errors:
        lines += ["", "Not built:", "", *errors]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------


def main(args: argparse.Namespace) -> int:
    load_start = H.load_average()  # before this process adds its own load
    wanted = [f.strip() for f in args.frameworks.split(",") if f.strip()]
    model_names = [m.strip() for m in args.models.split(",") if m.strip()]
    for name in model_names:
        if name not in models.MODEL_NAMES:
            raise SystemExit(f"unknown model {name!r}; choose from {', '.join(models.MODEL_NAMES)}")
    settings = {
        "threads": args.threads,
        "rounds": args.rounds or (5 if args.quick else 20),
        "warmup_s": 0.3 if args.quick else 1.0,
        "target_sample_s": 0.1 if args.quick else 0.25,
        "gap_s": 0.02,
        "batches": [int(b) for b in args.batches.split(",")],
        "seed": 0,
        "tolerance": args.tolerance,
        "quick": args.quick,
    }

    bad_padding = models.check_resnet_padding()
    if bad_padding:
        print("MPS default padding does not match PyTorch for:\n  " + "\n  ".join(bad_padding))

    mods, import_errors = import_frameworks(wanted, args.threads)
    mpsnn_error = None
    if "mpsnn" in wanted and "mpsnn" in import_errors:
        mpsnn_error = f"import mpsnn failed: {import_errors['mpsnn']}"
        print(f"NOTE: {mpsnn_error}\n      benchmarking the peers only.")
    elif "mpsnn" not in wanted:
        mpsnn_error = "not requested (--frameworks)"
    for name in PEERS:
        if name in import_errors:
            print(f"NOTE: import {name} failed: {import_errors[name]}")

    res: dict[str, Any] = H.run_record("bench_graphs", args.threads, mods, load_start)
    res.update(
        {
            "settings": settings,
            "mpsnn": {
                "available": "mpsnn" in mods,
                "error": mpsnn_error,
                "build": H.mpsnn_build_info(mods["mpsnn"]) if "mpsnn" in mods else None,
            },
            "padding_mismatches": bad_padding,
            "models": {},
        }
    )
    H.warn_if_busy(res)

    failed = False
    for model in model_names:
        print(f"{model}:")
        mres = bench_model(model, mods, wanted, settings)
        res["models"][model] = mres
        failed |= any("error" in r or not r.get("ok", True) for k, r in mres["agreement"].items() if k != "row_sums")

    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.update_readme:
        H.replace_readme_section(BEGIN, END, readme_section(res))
    if failed:
        print("some outputs disagree beyond the tolerance or failed to run (see above)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
