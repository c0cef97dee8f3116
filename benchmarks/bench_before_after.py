#!/usr/bin/env python
"""Before/after benchmark: two builds of mpsnn timed against each other, alternating, in one run.

    python benchmarks/bench_before_after.py --old PATH --new PATH [--suite graphs|ops|all] [--quick]
        [--json out.json] [--update-readme] [--old-label TEXT] [--new-label TEXT] [--rounds N]

PATH is a directory holding an ``mpsnn`` package with its ``_core`` extension (a copy of a
checkout's ``python/`` with the built library in it, not a symlink into a build tree that may be
rebuilt during the run). The cases are those of the other two benchmarks, mpsnn side only:

- ``graphs``: the whole networks of ``bench_graphs.py`` (``models.build_mpsnn``: MNIST, ResNet-18,
  ResNet-50, same seeded weights and inputs) at batch 1 and 32, timed as ``graph.run`` calls;
- ``ops``: every case of ``bench_ops.py`` (``bench_ops.make_cases``: one-node graphs of our own
  kernels), timed as ``graph.run`` calls.

1. Each build runs in a long-lived worker process of its own. Both are started the same way (this
   script with ``--worker PATH``), with the harness's thread settings (``set_thread_env``, 2
   threads) in the environment before NumPy, mpsnn and PyTorch load, mpsnn first, PATH first on
   ``sys.path``. A worker builds every case once, then does what the parent asks over a pipe: run a
   case once and save its result, warm a case up, take one sample (``_harness.warm_up`` and
   ``take_sample``, so the samples are the same as in the other scripts).
2. Before timing, each case's results are compared (max abs diff between the builds, on the timed
   input; float rounding at most is expected). Beyond the tolerance (``bench_graphs.py``'s 1e-4 for
   the softmax outputs, the case's own for an op, relative to the result's magnitude) the exit
   status is 1.
3. Timing: warm-up of both (each chooses the calls for a sample of the suite's length; both then
   take samples of the larger count), then rounds of one sample per build, old then new, new then
   old the next round (to cancel drift), with a pause before each sample, as
   ``_harness.time_round_robin`` does. Only one worker runs at any moment (the other waits on its
   pipe), so they never compete for the cores. Reported per case: median time per call of each build, new / old as the median of the
   per-round ratios (> 1: the new build is slower) with their quartiles, and the spread (median /
   best sample, the larger of the two builds). As in ``bench_ops.py``, a case that spread more than
   1.25x (another job took a core) is measured again, up to twice (not with ``--quick``), and the
   attempt that spread least is kept.

A full run (both suites, 20 rounds) takes about 8 minutes on 2 quiet cores, plus about 8 s for
every op and up to a minute for a network measured again (each retry repeats the case's rounds);
``--quick`` (5 shorter rounds, no retries) about 2 minutes and only checks that everything runs.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import hashlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _harness as H
from _harness import Contender

SUITES = ("graphs", "ops")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--old", metavar="PATH", help="directory holding the old build's mpsnn package")
    p.add_argument("--new", metavar="PATH", help="directory holding the new build's mpsnn package")
    p.add_argument("--old-label", help="how the README and JSON name the old build (default: its PATH)")
    p.add_argument("--new-label", help="how the README and JSON name the new build (default: its PATH)")
    p.add_argument("--suite", choices=(*SUITES, "all"), default="all", help="which cases (default: all)")
    p.add_argument("--quick", action="store_true", help="fewer rounds and shorter samples, no retries (smoke test)")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON to PATH")
    p.add_argument(
        "--update-readme", action="store_true", help="rewrite the before/after section of benchmarks/README.md"
    )
    p.add_argument("--readme-section", metavar="NAME", default="before_after",
                   help="the README section --update-readme rewrites: the text between <!-- bench_NAME:begin --> and "
                        "<!-- bench_NAME:end --> (default before_after: the core refactor's section)")
    p.add_argument("--readme-title", metavar="TEXT",
                   help="heading of the section, when --update-readme adds it at the end of the README")
    p.add_argument("--models", default="mnist,resnet18,resnet50", help="graphs suite: comma-separated subset")
    p.add_argument("--batches", default="1,32", help="graphs suite: comma-separated batch sizes (default: 1,32)")
    p.add_argument("--ops", default="", help="ops suite: groups, ops or op prefixes as in bench_ops.py (default: all)")
    p.add_argument("--rounds", type=int, help="timed rounds per build and case (default 20, --quick 5)")
    p.add_argument("--retries", type=int, help="measure a noisy case again up to N times (default 2, --quick 0)")
    p.add_argument("--threads", type=int, default=2, help="threads per build (default 2)")
    p.add_argument("--worker", metavar="PATH", help=argparse.SUPPRESS)  # internal: run as a build's worker
    args = p.parse_args(argv)
    if args.worker is None and (args.old is None or args.new is None):
        p.error("--old and --new are required")
    return args


ARGS = parse_args() if __name__ == "__main__" else None

# Thread settings must be in the environment before NumPy, PyTorch or mpsnn load their runtimes (the
# workers inherit them). bench_ops sets 2 threads when it is imported: set ours again afterwards.
H.set_thread_env(ARGS.threads if ARGS else 2)

import numpy as np  # noqa: E402

import bench_ops  # noqa: E402
import models  # noqa: E402

H.set_thread_env(ARGS.threads if ARGS else 2)

BEGIN, END = "<!-- bench_before_after:begin -->", "<!-- bench_before_after:end -->"
SECTION_TITLE = "## Before/after: core refactor (d51501d → new)"
GRAPH_TOLERANCE = 1e-4  # bench_graphs.py's default: max abs diff of the softmax outputs
SLOWER = 1.05  # the summary lists the cases whose new / old exceeds this

# Per suite, as the other scripts time their cases: (full, --quick).
SUITE_TIMING = {
    "graphs": {"warmup_s": (1.0, 0.3), "target_sample_s": (0.25, 0.1)},  # bench_graphs.py
    "ops": {"warmup_s": (0.5, 0.2), "target_sample_s": (0.15, 0.05)},  # bench_ops.py
}


# --------------------------------------------------------------------------------------------------
# Worker: one process per build
# --------------------------------------------------------------------------------------------------


@dataclass
class WorkerCase:
    """A built case in a worker: ``contender.run(x)`` is one timed call, ``result()`` its output."""

    meta: dict[str, Any]  # id, suite and what the tables show; sent to the parent
    contender: Contender | None = None
    x: Any = None
    result: Callable[[], np.ndarray] | None = None


def build_graph_cases(models_wanted: list[str], batches: list[int], seed: int) -> list[WorkerCase]:
    """One MPSNNGraph per network, shared by its batch sizes, as in bench_graphs.py."""
    cases = []
    for model in models_wanted:
        metas = [
            {"id": f"{model} b{batch}", "suite": "graphs", "model": model, "batch": batch, "rtol": GRAPH_TOLERANCE}
            for batch in batches
        ]
        try:
            run = models.mpsnn_runner(models.build_mpsnn(model, models.make_weights(model, seed=seed)))
        except Exception as e:
            traceback.print_exc()
            cases += [WorkerCase({**m, "error": f"{type(e).__name__}: {e}"}) for m in metas]
            continue
        for meta in metas:
            x = models.make_input(model, meta["batch"], seed=seed + 1)
            cases.append(
                WorkerCase(meta, Contender(meta["id"], run), x, lambda run=run, x=x: np.asarray(run(x), np.float32))
            )
    return cases


def build_op_cases(mpsnn: Any, torch: Any, wanted: list[str], seed: int) -> list[WorkerCase]:
    device = mpsnn.MTLCreateSystemDefaultDevice()
    cases = []
    for case in bench_ops.make_cases(mpsnn, torch, seed):
        if not bench_ops.selected(case, wanted):
            continue
        meta = {"id": case.id, "suite": "ops", "op": case.op, "params": case.params, "rtol": case.rtol}
        try:
            run = bench_ops.mpsnn_runner(mpsnn, device, case)
        except Exception as e:
            cases.append(WorkerCase({**meta, "error": f"{type(e).__name__}: {e}"}))
            continue

        def result(run: Callable = run, channels: np.ndarray | None = case.channels) -> np.ndarray:
            y = np.asarray(run().numpy(), np.float32)
            return y if channels is None else y[..., channels]  # skip the gap channels of a concatenation

        cases.append(WorkerCase(meta, Contender(meta["id"], run), None, result))
    return cases


def build_identity(mpsnn: Any, path: str) -> dict[str, Any]:
    """Where the build's package and extension lie, and a hash of the extension."""
    core = Path(mpsnn._core.__file__)
    info: dict[str, Any] = {
        "path": path,
        "package": mpsnn.__file__,
        "core": str(core),
        "core_resolved": str(core.resolve()),
        "core_sha256": hashlib.sha256(core.read_bytes()).hexdigest(),
        "core_modified": datetime.datetime.fromtimestamp(core.stat().st_mtime, datetime.UTC).strftime(
            "%Y-%m-%d %H:%M UTC"
        ),
        "version": getattr(mpsnn, "__version__", "unknown"),
    }
    info.update({k: v for k, v in H.mpsnn_build_info(mpsnn).items() if k != "file"})
    return info


def worker_main(path: str, threads: int) -> int:
    """Serves one build: reads one JSON command per line on stdin, answers one JSON line each."""
    # The answers go to the original stdout; anything else printed (by Python or the C++ core) to stderr.
    reply_to = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def reply(**msg: Any) -> None:
        reply_to.write(json.dumps(msg) + "\n")

    sys.path.insert(0, str(Path(path).resolve()))
    mods, errors = H.import_frameworks(["mpsnn", "torch"], threads)
    if "mpsnn" in errors:
        reply(ok=False, error=f"import mpsnn from {path} failed: {errors['mpsnn']}")
        return 1
    mpsnn = mods["mpsnn"]
    if not Path(mpsnn.__file__).resolve().is_relative_to(Path(path).resolve()):
        reply(ok=False, error=f"mpsnn was imported from {mpsnn.__file__}, not from {path}")
        return 1
    reply(ok=True, build=build_identity(mpsnn, path), versions=H.versions(mods), import_errors=errors)

    cases: dict[str, WorkerCase] = {}
    for line in iter(sys.stdin.readline, ""):
        cmd = json.loads(line)
        try:
            op = cmd["cmd"]
            if op == "quit":
                reply(ok=True)
                return 0
            if op == "build":
                t0 = time.perf_counter()
                built: list[WorkerCase] = []
                if "graphs" in cmd["suites"]:
                    built += build_graph_cases(cmd["models"], cmd["batches"], cmd["seed"])
                if "ops" in cmd["suites"]:
                    if "torch" not in mods:  # bench_ops.make_cases makes PyTorch tensors of its weights
                        raise RuntimeError(f"the ops suite needs PyTorch: {errors.get('torch')}")
                    built += build_op_cases(mpsnn, mods["torch"], cmd["ops"], cmd["seed"])
                cases = {c.meta["id"]: c for c in built}
                if len(cases) != len(built):
                    raise RuntimeError("two cases have the same id")
                reply(ok=True, cases=[c.meta for c in built], build_s=time.perf_counter() - t0)
                continue
            c = cases[cmd["case"]]
            if op == "output":  # the first call of the case: its plan is made here
                t0 = time.perf_counter()
                y = c.result()
                first_s = time.perf_counter() - t0
                np.save(cmd["file"], y)
                reply(ok=True, shape=list(y.shape), first_call_s=first_s)
            elif op == "warm":
                c.contender.sample_s.clear()
                c.contender.call_s.clear()
                H.warm_up(c.contender, c.x, cmd["warmup_s"], cmd["target_s"])
                gc.collect()
                reply(ok=True, calls_per_sample=c.contender.calls_per_sample)
            elif op == "sample":
                c.contender.calls_per_sample = cmd["calls"]
                gc.disable()
                try:
                    H.take_sample(c.contender, c.x)
                finally:
                    gc.enable()
                reply(ok=True, s=c.contender.sample_s[-1])
            else:
                raise ValueError(f"unknown command {op!r}")
        except Exception as e:
            reply(ok=False, error=f"{type(e).__name__}: {e}")
    return 0


# --------------------------------------------------------------------------------------------------
# Parent: starts the workers and alternates them
# --------------------------------------------------------------------------------------------------


class WorkerDied(Exception):
    pass


class CaseFailed(Exception):
    pass


class Worker:
    """The parent's end of one build's worker process."""

    def __init__(self, name: str, path: str, label: str, threads: int) -> None:
        self.name, self.path, self.label = name, path, label
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", path, "--threads", str(threads)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        hello = self.receive()
        self.build, self.versions = hello["build"], hello["versions"]

    def send(self, cmd: str, **kw: Any) -> None:
        try:
            self.proc.stdin.write(json.dumps({"cmd": cmd, **kw}) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise WorkerDied(f"the {self.name} build's worker exited (status {self.proc.wait()})") from None

    def receive(self) -> dict[str, Any]:
        """The next answer; CaseFailed if the worker reports an error, WorkerDied if it is gone."""
        line = self.proc.stdout.readline()
        if not line:
            raise WorkerDied(f"the {self.name} build's worker exited (status {self.proc.wait()}); see its stderr above")
        msg = json.loads(line)
        if not msg["ok"]:
            raise CaseFailed(msg["error"])
        return msg

    def call(self, cmd: str, **kw: Any) -> dict[str, Any]:
        self.send(cmd, **kw)
        return self.receive()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.call("quit")
            except (WorkerDied, CaseFailed, OSError):
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def compare_outputs(a: np.ndarray, b: np.ndarray, rtol: float) -> dict[str, Any]:
    """Max abs diff of the new result b against the old a; ok within rtol * max(1, max |a|)."""
    if a.shape != b.shape:
        return {"error": f"result shapes differ: old {a.shape}, new {b.shape}", "ok": False}
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    nan_differs = bool((np.isnan(a64) != np.isnan(b64)).any())
    finite = ~(np.isnan(a64) | np.isnan(b64))
    diff = np.abs(a64 - b64)[finite]
    max_abs = float(diff.max()) if diff.size else 0.0
    scale = float(np.abs(a64[finite]).max()) if diff.size else 0.0
    tol = rtol * max(1.0, scale)
    return {
        "max_abs_diff": max_abs,
        "max_abs_result": scale,
        "identical": bool(np.array_equal(a, b, equal_nan=True)),
        "nan_differs": nan_differs,
        "tolerance": tol,
        "ok": bool(max_abs <= tol and not nan_differs),
    }


def check_agreement(workers: list[Worker], case_id: str, rtol: float, tmp: Path) -> dict[str, Any]:
    """Each build runs the case once (old first, one at a time) and saves its result for comparing."""
    outs, first_ms = [], {}
    for w in workers:
        f = tmp / f"{w.name}.npy"
        first_ms[w.name] = w.call("output", case=case_id, file=str(f))["first_call_s"] * 1e3
        outs.append(np.load(f))
        f.unlink()
    return {**compare_outputs(outs[0], outs[1], rtol), "first_call_ms": first_ms}


def time_pair(workers: list[Worker], case_id: str, s: dict[str, Any]) -> list[Contender]:
    """Warm-up of both, then ``rounds`` rounds of one sample each, the order alternating; the sleep
    before each sample lets the other build's spinning OpenMP threads go idle. Like
    ``_harness.time_round_robin``, but every call runs in the build's worker, and both builds take
    samples of the same number of calls (the larger of the two warm-ups' choices, so that a warm-up
    slowed by another job does not make short samples)."""
    contenders = [Contender(w.name, run=None) for w in workers]  # run: the worker holds it
    for w, c in zip(workers, contenders, strict=True):
        try:
            c.calls_per_sample = w.call("warm", case=case_id, warmup_s=s["warmup_s"], target_s=s["target_sample_s"])[
                "calls_per_sample"
            ]
        except CaseFailed as e:
            c.error = str(e)
    if any(c.error for c in contenders):
        return contenders
    calls = max(c.calls_per_sample for c in contenders)
    for c in contenders:
        c.calls_per_sample = calls
    pairs = list(zip(workers, contenders, strict=True))
    for r in range(s["rounds"]):
        for w, c in pairs if r % 2 == 0 else pairs[::-1]:
            time.sleep(s["gap_s"])
            try:
                c.sample_s.append(w.call("sample", case=case_id, calls=calls)["s"])
            except CaseFailed as e:
                c.error = str(e)
                return contenders
    return contenders


def ratio_stats(old: Contender, new: Contender) -> dict[str, Any] | None:
    """new / old per round: the median (as ``_harness.round_ratio``) and the quartiles."""
    median = H.round_ratio(old, new)
    if median is None:
        return None
    per_round = [b / a for a, b in zip(old.sample_s, new.sample_s, strict=False)]
    q1, _, q3 = statistics.quantiles(per_round, n=4) if len(per_round) > 1 else (median, median, median)
    return {"median": median, "q1": q1, "q3": q3, "per_round": per_round}


def bench_case(workers: list[Worker], meta: dict[str, Any], s: dict[str, Any], tmp: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    entry = {k: v for k, v in meta.items() if k != "rtol"}
    try:
        entry["agreement"] = check_agreement(workers, meta["id"], meta["rtol"], tmp)
    except CaseFailed as e:
        entry["error"] = str(e)
        return entry
    attempts = []
    for _ in range(1 + s["retries"]):
        contenders = time_pair(workers, meta["id"], s)
        attempts.append((bench_ops.spread(contenders), contenders))
        if attempts[-1][0] <= s["max_spread"]:
            break
    entry["spread"], (old, new) = min(attempts, key=lambda a: a[0])
    entry["attempts"] = len(attempts)
    entry["old"], entry["new"] = H.timing(old), H.timing(new)
    entry["ratio"] = ratio_stats(old, new)
    if old.error or new.error:
        entry["error"] = "; ".join(f"{c.name}: {c.error}" for c in (old, new) if c.error)
    entry["wall_s"] = time.perf_counter() - t0
    return entry


def bench_built_case(
    workers: list[Worker], old: dict[str, Any], new: dict[str, Any], s: dict[str, Any], tmp: Path
) -> dict[str, Any]:
    """A case as both workers built it (an error entry if either could not); prints its line."""
    errors = [f"{name}: {m['error']}" for name, m in (("old", old), ("new", new)) if "error" in m]
    if errors:
        entry = {**{k: v for k, v in old.items() if k not in ("rtol", "error")}, "error": "; ".join(errors)}
    else:
        entry = bench_case(workers, old, s, tmp)
    print_entry(entry)
    return entry


def case_title(e: dict[str, Any]) -> str:
    if e["suite"] == "graphs":
        return f"{e['model']:9s} b{e['batch']:<3d}"
    return f"{e['op']:22s} {e['params']:38s}"


def print_entry(e: dict[str, Any]) -> None:
    head = f"  {case_title(e)}"
    if "agreement" not in e or "old" not in e:
        print(f"{head} error: {e['error']}")
        sys.stdout.flush()
        return
    a = e["agreement"]
    if "error" in a:
        agree = a["error"]
    else:
        agree = f"diff {a['max_abs_diff']:.1e}" + (" (identical)" if a["identical"] else "")
        agree += "" if a["ok"] else " MISMATCH"
    t = [e[k]["time_ms"]["median"] if "time_ms" in e[k] else float("nan") for k in ("old", "new")]
    r = e["ratio"]
    ratio = "new/old  —" if r is None else f"new/old {r['median']:.3f} [{r['q1']:.3f}–{r['q3']:.3f}]"
    print(
        f"{head} old {t[0]:9.3f} ms  new {t[1]:9.3f} ms  {ratio}  spread {e['spread']:.2f}"
        + (f" after {e['attempts']} attempts" if e["attempts"] > 1 else "")
        + f"  {agree}"
        + (f"  error: {e['error']}" if "error" in e else "")
    )
    sys.stdout.flush()


def summarize(entries: list[dict[str, Any]]) -> dict[str, Any]:
    ratios = {e["id"]: e["ratio"]["median"] for e in entries if e.get("ratio")}
    return {
        "cases": len(entries),
        "timed": len(ratios),
        "geomean_ratio": math.exp(statistics.fmean(map(math.log, ratios.values()))) if ratios else None,
        "slower": [k for k, v in ratios.items() if v > SLOWER],
        "faster": [k for k, v in ratios.items() if v < 1 / SLOWER],
        "failed": [e["id"] for e in entries if "error" in e or not e.get("agreement", {}).get("ok", False)],
    }


def print_summary(suite: str, sm: dict[str, Any]) -> None:
    g = sm["geomean_ratio"]
    print(
        f"{suite}: geometric mean of new/old {'—' if g is None else f'{g:.3f}'} over {sm['timed']} cases; "
        f"slower than {SLOWER:g}x: {', '.join(sm['slower']) or 'none'}; "
        f"faster than {1 / SLOWER:.3f}x: {', '.join(sm['faster']) or 'none'}"
    )


# --------------------------------------------------------------------------------------------------
# README section
# --------------------------------------------------------------------------------------------------


def _ms(r: dict[str, Any] | None) -> str:
    if r is None or "time_ms" not in r:
        return "error"
    v = r["time_ms"]["median"]
    return f"{v:.3f}" if v < 10 else f"{v:.2f}"


def _table_row(e: dict[str, Any], max_spread: float) -> str:
    cells = [e["model"], str(e["batch"])] if e["suite"] == "graphs" else [e["op"], e["params"]]
    a = e.get("agreement", {})
    if "old" not in e:
        return "| " + " | ".join([*cells, "error", "", "", "", e.get("error", "")]) + " |"
    r = e["ratio"]
    ratio = "—" if r is None else f"{r['median']:.3f}" + (" *" if e["spread"] > max_spread else "")
    quartiles = "" if r is None else f"{r['q1']:.3f}–{r['q3']:.3f}"
    diff = a.get("error") or f"{a['max_abs_diff']:.1e}" + ("" if a["ok"] else " **FAIL**")
    return "| " + " | ".join([*cells, _ms(e.get("old")), _ms(e.get("new")), ratio, quartiles, diff]) + " |"


def readme_section(res: dict[str, Any]) -> str:
    s = res["settings"]
    rounds = sorted({st["rounds"] for st in s["suites"].values()})
    lines = [
        *H.readme_header(
            res,
            f"{'/'.join(map(str, rounds))} alternating rounds per case (old, new, then new, old), medians",
        ),
        "",
        "Builds, each in a worker process of its own (same start, same thread settings; only one "
        "of them runs at any moment):",
        "",
    ]
    for name in ("old", "new"):
        b = res["builds"][name]
        core = Path(b["core"]).name
        lines.append(
            f"- {name}: {b['label']} — `{b['path']}` (mpsnn {b['version']}, `{core}` sha256 "
            f"`{b['core_sha256'][:12]}`, modified {b['core_modified']})"
        )
    retries = max(st["retries"] for st in s["suites"].values())
    again = (
        f"was measured again, up to {retries} times, keeping the attempt that spread least; * marks a case still "
        "that noisy"
        if retries
        else "is marked * (not measured again in this run)"
    )
    lines += [
        "",
        "Time per call, ms (lower is better): whole `graph.run` calls. new / old = median of the per-round "
        "ratios new time / old time (> 1: the new build is slower), quartiles of those ratios next to it. "
        f"A case whose samples spread more than {s['max_spread']}x (median / best, either build: another "
        f"job took a core) {again}. Diff: max abs diff between the two builds' results on the timed input.",
    ]
    titles = {
        "graphs": (
            "Whole networks (`bench_graphs.py`'s MPSNNGraph, softmax output):",
            "| Model | Batch | old ms | new ms | new / old | quartiles | diff |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ),
        "ops": (
            "Own kernels (`bench_ops.py`'s one-node graphs, mpsnn side only):",
            "| Op | Shape (N×H×W×C), parameters | old ms | new ms | new / old | quartiles | diff |",
            "|---|---|---:|---:|---:|---:|---:|",
        ),
    }
    for suite, sres in res["suites"].items():
        title, head, rule = titles[suite]
        lines += ["", title, "", head, rule]
        lines += [_table_row(e, s["max_spread"]) for e in sres["cases"]]
        sm = sres["summary"]
        g = sm["geomean_ratio"]
        lines += [
            "",
            f"Geometric mean of new / old over {sm['timed']} case{'s' if sm['timed'] != 1 else ''}: "
            f"{'—' if g is None else f'{g:.3f}'}; "
            f"slower than {SLOWER:g}x: {', '.join(sm['slower']) or 'none'}; "
            f"faster than {1 / SLOWER:.3f}x: {', '.join(sm['faster']) or 'none'}.",
        ]
    load_end = res["machine"].get("loadavg_at_end")
    if load_end:
        lines += ["", f"Load average {load_end[0]:.2f} at the end; the run took {res['wall_s'] / 60:.1f} minutes."]
    return "\n".join(lines)


def update_readme(body: str, section: str = "before_after", title: str | None = None) -> None:
    """Replaces the section's text, adding its heading and markers at the end of the README first."""
    begin, end = f"<!-- bench_{section}:begin -->", f"<!-- bench_{section}:end -->"
    text = H.README.read_text()
    if begin not in text:
        heading = title or (SECTION_TITLE if section == "before_after" else f"## Before/after: {section}")
        H.README.write_text(text.rstrip("\n") + f"\n\n{heading}\n\n{begin}\n{end}\n")
    H.replace_readme_section(begin, end, body)


# --------------------------------------------------------------------------------------------------


def suite_settings(suite: str, args: argparse.Namespace) -> dict[str, Any]:
    q = 1 if args.quick else 0
    return {
        "rounds": args.rounds or (5 if args.quick else 20),
        "warmup_s": SUITE_TIMING[suite]["warmup_s"][q],
        "target_sample_s": SUITE_TIMING[suite]["target_sample_s"][q],
        "gap_s": 0.02,
        "retries": args.retries if args.retries is not None else (0 if args.quick else 2),
        "max_spread": 1.25,
    }


def start_workers(args: argparse.Namespace) -> list[Worker]:
    workers: list[Worker] = []
    for name, path, label in (("old", args.old, args.old_label), ("new", args.new, args.new_label)):
        if not (Path(path) / "mpsnn" / "__init__.py").is_file():
            raise SystemExit(f"--{name} {path}: no mpsnn package there")
        try:
            workers.append(Worker(name, path, label or path, args.threads))
        except (WorkerDied, CaseFailed) as e:
            for w in workers:
                w.close()
            raise SystemExit(f"--{name} {path}: {e}") from None
        b = workers[-1].build
        print(f"{name}: {label or path}: {b['core']} (sha256 {b['core_sha256'][:12]}, modified {b['core_modified']})")
        if b["core_resolved"] != b["core"]:
            print(f"  NOTE: the extension is a link to {b['core_resolved']}; a rebuild there changes this build")
    if workers[0].build["core_sha256"] == workers[1].build["core_sha256"]:
        print("NOTE: both builds have the same extension (same sha256)")
    return workers


def versions(workers: list[Worker]) -> dict[str, str]:
    """The workers' versions; where the two builds differ, 'old / new'."""
    old, new = workers[0].versions, workers[1].versions
    return {k: old.get(k, "—") if old.get(k) == new.get(k) else f"{old.get(k, '—')} / {new.get(k, '—')}"
            for k in {**old, **new}}  # fmt: skip


def main(args: argparse.Namespace) -> int:
    if args.worker is not None:
        return worker_main(args.worker, args.threads)
    t_start = time.perf_counter()
    load_start = H.load_average()  # before this process and the workers add their own load
    suites = list(SUITES) if args.suite == "all" else [args.suite]
    model_names = [m.strip() for m in args.models.split(",") if m.strip()]
    for name in model_names:
        if name not in models.MODEL_NAMES:
            raise SystemExit(f"unknown model {name!r}; choose from {', '.join(models.MODEL_NAMES)}")
    settings = {
        "threads": args.threads,
        "suites": {suite: suite_settings(suite, args) for suite in suites},
        "max_spread": 1.25,
        "slower_than": SLOWER,
        "seed": 0,
        "quick": args.quick,
        "models": model_names,
        "batches": [int(b) for b in args.batches.split(",")],
        "ops": [w.strip() for w in args.ops.split(",") if w.strip()],
    }

    workers = start_workers(args)
    try:
        res = H.run_record("bench_before_after", args.threads, {}, load_start)
        res["versions"] = versions(workers)
        res["settings"] = settings
        res["builds"] = {w.name: {"label": w.label, **w.build} for w in workers}
        H.warn_if_busy(res)

        # Both build their cases at once (nothing is timed yet).
        build = {"suites": suites, "models": model_names, "batches": settings["batches"], "ops": settings["ops"]}
        for w in workers:
            w.send("build", seed=settings["seed"], **build)
        built = []
        for w in workers:
            try:
                built.append(w.receive())
            except CaseFailed as e:
                raise SystemExit(f"the {w.name} build could not build the cases: {e}") from None
        print(f"built {len(built[0]['cases'])} cases in {max(b['build_s'] for b in built):.1f} s")
        new_cases = {m["id"]: m for m in built[1]["cases"]}

        res["suites"] = {}
        with tempfile.TemporaryDirectory(prefix="mpsnn_before_after_") as tmp:
            for suite in suites:
                s = settings["suites"][suite]
                print(f"{suite}: {s['rounds']} rounds, samples of {s['target_sample_s']} s")
                pairs = [(m, new_cases.get(m["id"], {"error": "not built"})) for m in built[0]["cases"]]
                entries = [bench_built_case(workers, a, b, s, Path(tmp)) for a, b in pairs if a["suite"] == suite]
                res["suites"][suite] = {"cases": entries, "summary": summarize(entries)}
                print_summary(suite, res["suites"][suite]["summary"])
    except WorkerDied as e:
        raise SystemExit(str(e)) from None
    finally:
        for w in workers:
            w.close()

    res["machine"]["loadavg_at_end"] = H.load_average()
    res["wall_s"] = time.perf_counter() - t_start
    print(f"took {res['wall_s'] / 60:.1f} minutes; load average at end {res['machine']['loadavg_at_end']}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.update_readme:
        update_readme(readme_section(res), args.readme_section, args.readme_title)
    failed = [i for sres in res["suites"].values() for i in sres["summary"]["failed"]]
    if failed:
        print("outputs disagree beyond the tolerance or failed to run: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
