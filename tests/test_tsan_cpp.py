"""ThreadSanitizer over the command queues and the graph's plan cache (issue 9): builds
tests/cpp/test_command_queue_tsan.cpp with cpp/core and cpp/graph (no backend: the test brings
its own kernel) and -fsanitize=thread and runs it; a data race, a lost task or handler, or a wrong
result fails. Skipped where there is no C++ compiler with
TSan, or where TSan cannot run (some sandboxes refuse its memory layout)."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
TEST = ROOT / "tests" / "cpp" / "test_command_queue_tsan.cpp"


def _compiler():
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.skipif(_compiler() is None or not TEST.exists(), reason="no C++ compiler or sources")
def test_command_queues_have_no_data_races(tmp_path):
    exe = tmp_path / "tsan_queue"
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}  # not under tools/sanitize.sh's ASan
    sources = [p for d in ("core", "graph", "graph/ops", "graph/passes") for p in sorted((ROOT / "cpp" / d).glob("*.cpp"))]
    cmd = [_compiler(), "-std=c++17", "-O1", "-g", "-fsanitize=thread", "-I", str(ROOT / "cpp"), *map(str, sources),
           str(TEST), "-o", str(exe), "-lpthread"]
    build = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if build.returncode != 0 and "tsan" in build.stderr.lower():
        pytest.skip("the compiler has no ThreadSanitizer runtime: " + build.stderr[-300:])
    assert build.returncode == 0, build.stderr[-4000:]
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=600,
                         env=dict(env, TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1"))
    if run.returncode != 0 and "FATAL: ThreadSanitizer" in run.stderr and "WARNING" not in run.stderr:
        pytest.skip("ThreadSanitizer cannot run here: " + run.stderr[-300:])
    assert run.returncode == 0 and "all cases passed" in run.stdout, run.stdout[-2000:] + run.stderr[-4000:]
