"""The graph-level backend seam that the Metal backend plugs into (KernelRegistry::graph_kernel):
builds tests/cpp/test_graph_kernel.cpp with cpp/core and cpp/graph (no backend: the test brings a
whole-graph kernel of its own) and runs it. Skipped where there is no C++ compiler."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
TEST = ROOT / "tests" / "cpp" / "test_graph_kernel.cpp"


def _compiler():
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.skipif(_compiler() is None, reason="no C++ compiler")
def test_graph_level_backends_get_the_whole_graph(tmp_path):
    exe = tmp_path / "graph_kernel"
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}  # not under tools/sanitize.sh's ASan
    sources = [p for d in ("core", "graph", "graph/ops", "graph/passes")
               for p in sorted((ROOT / "cpp" / d).glob("*.cpp"))]
    cmd = [_compiler(), "-std=c++17", "-O0", "-I", str(ROOT / "cpp"), *map(str, sources), str(TEST), "-o", str(exe),
           "-lpthread"]
    build = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    assert build.returncode == 0, build.stderr[-4000:]
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300, env=env, check=False)
    assert run.returncode == 0 and "all cases passed" in run.stdout, run.stdout[-2000:] + run.stderr[-2000:]
