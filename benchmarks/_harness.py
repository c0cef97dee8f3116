"""Measuring and reporting pieces shared by ``bench_graphs.py`` and ``bench_ops.py``.

This module imports nothing heavy at load time (no NumPy, PyTorch or mpsnn), so that a benchmark
script can import it, call ``set_thread_env`` and only then import the frameworks, whose OpenMP
runtimes read the thread count once, when they load.

How timing works (``time_round_robin``): every contender is warmed up, then each round takes one
sample per contender (enough calls for ``target_s``), the order rotating every round, with
``gap_s`` of sleep before each sample so that the previous contender's spinning OpenMP workers go
idle and do not steal the cores. Results are compared round by round (``round_ratio``), so that
the machine's slow spells hit all contenders alike.
"""

from __future__ import annotations

import datetime
import gc
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
README = HERE / "README.md"

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def set_thread_env(threads: int) -> None:
    """Thread counts for every OpenMP/BLAS runtime; call before NumPy, PyTorch or mpsnn load."""
    for var in THREAD_VARS:
        os.environ[var] = str(threads)


def import_frameworks(names: list[str], threads: int) -> tuple[dict[str, Any], dict[str, str]]:
    """Imports ``names`` in order; returns ({name: module}, {name: why it is unavailable}).

    Put mpsnn first, so that it loads its own oneDNN and OpenMP before PyTorch brings its copies.
    PyTorch gets ``threads`` intra-op threads."""
    mods: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name in names:
        try:
            mods[name] = __import__(name)
        except Exception as e:  # ImportError, or an OSError from a missing shared library
            errors[name] = f"{type(e).__name__}: {e}"
    if "torch" in mods:
        mods["torch"].set_num_threads(threads)
    return mods, errors


# --------------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------------


@dataclass
class Contender:
    name: str
    run: Callable[[Any], Any]
    calls_per_sample: int = 1
    sample_s: list[float] = field(default_factory=list)  # seconds per call, averaged over a sample
    call_s: list[float] = field(default_factory=list)  # every single call
    error: str | None = None


def warm_up(c: Contender, x: Any, warmup_s: float, target_s: float) -> None:
    """At least 3 calls and ``warmup_s`` seconds; then choose how many calls make one sample."""
    times = []
    t_end = time.perf_counter() + warmup_s
    while len(times) < 3 or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        c.run(x)
        times.append(time.perf_counter() - t0)
    per_call = statistics.median(times[len(times) // 2 :])
    c.calls_per_sample = max(1, min(1000, round(target_s / per_call)))


def take_sample(c: Contender, x: Any) -> None:
    calls = []
    for _ in range(c.calls_per_sample):
        t0 = time.perf_counter()
        c.run(x)
        calls.append(time.perf_counter() - t0)
    c.call_s.extend(calls)
    c.sample_s.append(sum(calls) / len(calls))


def time_round_robin(
    contenders: list[Contender], x: Any, rounds: int, warmup_s: float, target_s: float, gap_s: float
) -> None:
    """Warm every contender, then ``rounds`` rounds of one sample each, the order rotating.

    ``gap_s`` of sleep before each sample lets the previous framework's spinning worker threads
    (OpenMP, ONNX Runtime) go to sleep so that they do not steal the cores. A contender that
    raises keeps its error in ``error`` and takes no further samples."""
    for c in contenders:
        try:
            warm_up(c, x, warmup_s, target_s)
        except Exception as e:
            c.error = f"{type(e).__name__}: {e}"
    live = [c for c in contenders if c.error is None]
    gc.collect()
    gc.disable()
    try:
        for r in range(rounds):
            k = r % len(live) if live else 0
            for c in live[k:] + live[:k]:
                if c.error is not None:
                    continue
                time.sleep(gap_s)
                try:
                    take_sample(c, x)
                except Exception as e:
                    c.error = f"{type(e).__name__}: {e}"
    finally:
        gc.enable()


def timing(c: Contender) -> dict[str, Any]:
    """A contender's samples as the JSON records hold them (median and min per call, in ms)."""
    if c.error is not None:
        return {"error": c.error}
    return {
        "time_ms": {"median": statistics.median(c.sample_s) * 1e3, "min": min(c.sample_s) * 1e3},
        "samples": len(c.sample_s),
        "calls_per_sample": c.calls_per_sample,
    }


def round_ratio(a: Contender, b: Contender) -> float | None:
    """Median over rounds of b's time per call / a's (> 1: a is faster); None if either failed."""
    if a.error or b.error or not a.sample_s or not b.sample_s:
        return None
    n = min(len(a.sample_s), len(b.sample_s))
    return statistics.median(b.sample_s[i] / a.sample_s[i] for i in range(n))


# --------------------------------------------------------------------------------------------------
# Environment record
# --------------------------------------------------------------------------------------------------


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_info() -> dict[str, Any]:
    """HEAD and whether tracked files differ from it (untracked files, such as the result JSON of an
    earlier run, do not count)."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit or "none", "dirty": bool(status) if status is not None else None}


def load_average() -> list[float] | None:
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return None


def machine_info(threads: int) -> dict[str, Any]:
    cpu, flags = "", ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not cpu:
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line.split(":", 1)[1]
    except OSError:
        pass
    cpu = cpu or platform.processor() or platform.machine()
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gib = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile") if f in flags.split()]
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu": cpu,
        "isa": isa,
        "logical_cpus": os.cpu_count(),
        "cpus_available": affinity,
        "memory_gib": mem_gib,
        "threads_per_framework": threads,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def versions(mods: dict[str, Any]) -> dict[str, Any]:
    """NumPy's version, then each imported framework's (and onnx's next to ONNX Runtime)."""
    v: dict[str, Any] = {}
    if "numpy" in sys.modules:
        v["numpy"] = sys.modules["numpy"].__version__
    for name, mod in mods.items():
        v[name] = getattr(mod, "__version__", "unknown")
    if "onnxruntime" in mods:
        try:
            import onnx

            v["onnx"] = onnx.__version__
        except ImportError:
            pass
    return v


def mpsnn_build_info(mod: Any) -> dict[str, Any]:
    """Whatever build description the package offers (names differ as the package evolves)."""
    info: dict[str, Any] = {"file": getattr(mod, "__file__", None)}
    for attr in ("build_info", "__build_info__", "build_type", "__build_type__", "backends"):
        val = getattr(mod, attr, None)
        if val is None:
            continue
        try:
            val = val() if callable(val) else val
            json.dumps(val)
        except Exception:
            val = repr(val)
        info[attr.strip("_")] = val
    return info


def command_line() -> str:
    """The command that ran this script, with the script's path relative to the repository."""
    script = os.path.relpath(Path(sys.argv[0]).resolve(), REPO)
    return " ".join(["python", shlex.quote(script), *map(shlex.quote, sys.argv[1:])])


def run_record(benchmark: str, threads: int, mods: dict[str, Any], load_at_start: list[float] | None) -> dict[str, Any]:
    """The fields every result JSON starts with: what ran, when, where, with which versions."""
    machine = machine_info(threads)
    machine["loadavg_at_start"] = load_at_start
    return {
        "schema": 1,
        "benchmark": benchmark,
        "created": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command_line(),
        "git": git_info(),
        "machine": machine,
        "versions": versions(mods),
    }


def warn_if_busy(res: dict[str, Any]) -> None:
    """Prints the machine and warns when other work held the CPUs at start."""
    m = res["machine"]
    print(f"machine: {m['cpu']}, {m['cpus_available']} CPUs; versions: {res['versions']}")
    load = m.get("loadavg_at_start")
    if load is not None and load[0] > 0.25 * (m["cpus_available"] or 1):
        print(
            f"WARNING: load average {load[0]:.2f} at start: other work shares the CPUs, expect noise "
            "(multi-threaded runtimes suffer badly when a core is taken)"
        )


# --------------------------------------------------------------------------------------------------
# README
# --------------------------------------------------------------------------------------------------


def readme_header(res: dict[str, Any], how: str) -> list[str]:
    """Command, date and commit, machine and versions of a run, as README lines; ``how`` says how
    the numbers were taken (e.g. "20 alternating rounds per framework, medians")."""
    m, v = res["machine"], res["versions"]
    commit = res["git"]["commit"]
    where = "before the first commit" if commit == "none" else f"at commit `{commit[:12]}`"
    return [
        f"Command: `{res['command']}`  ",
        f"Run {res['created']} {where}" + (" (uncommitted changes)" if res["git"].get("dirty") else "") + f"; {how}.  ",
        f"Machine: {m['cpu']} ({', '.join(m['isa']) or 'no AVX'}), {m['cpus_available']} CPUs available, "
        f"{m['threads_per_framework']} threads per framework"
        + (f", load average {m['loadavg_at_start'][0]:.2f} at start" if m.get("loadavg_at_start") else "")
        + ".  ",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".",
    ]


def replace_readme_section(begin: str, end: str, body: str) -> None:
    """Replaces the text between the markers ``begin`` and ``end`` of benchmarks/README.md."""
    text = README.read_text() if README.exists() else f"# Benchmarks\n\n{begin}\n{end}\n"
    if begin not in text or end not in text or text.index(begin) > text.index(end):
        raise SystemExit(f"{README}: markers {begin} / {end} not found")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    README.write_text(head + begin + "\n\n" + body.strip("\n") + "\n\n" + end + tail)
    print(f"updated {README}")
