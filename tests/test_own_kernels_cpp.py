"""Runs tests/cpp/test_own_kernels.cpp: every hand-written CPU kernel (cpp/backends/cpu/kernels/
own_*.cpp) against double-precision loops over odd shapes, strided views and 1-4 threads, without
the Python layer in between. Compiled here with the C++ compiler that built the package; skipped
when there is none (an installed wheel without a toolchain) or the sources are not present."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "cpp" / "backends" / "cpu" / "kernels").glob("own_*.cpp"))
TEST = ROOT / "tests" / "cpp" / "test_own_kernels.cpp"


def _compiler():
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


# native: the instruction set the package is built for by default (MPSNN_NATIVE_ARCH=ON, the
# AVX-512 paths on our machines); portable: the baseline x86-64 / generic build of wheels.
@pytest.mark.skipif(not SOURCES or not TEST.exists(), reason="C++ sources not present")
@pytest.mark.skipif(_compiler() is None, reason="no C++ compiler")
@pytest.mark.parametrize("arch", [["-march=native"], []], ids=["native", "portable"])
def test_own_kernels_against_double_loops(arch, tmp_path):
    exe = tmp_path / "test_own_kernels"
    cmd = [_compiler(), "-O1", *arch, "-fopenmp", "-std=c++17", "-I", str(ROOT / "cpp"), *map(str, SOURCES), str(TEST),
           "-o", str(exe)]
    build = subprocess.run(cmd, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-4000:]
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=600)
    failures = [line for line in run.stdout.splitlines() if not line.startswith("ok")]
    assert run.returncode == 0, "\n".join(failures[-40:]) + run.stderr[-2000:]
    assert "all cases passed" in run.stdout
