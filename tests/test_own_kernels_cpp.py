"""Runs tests/cpp/test_own_kernels.cpp and tests/cpp/test_own_gradients.cpp: every hand-written CPU
kernel and gradient kernel (cpp/backends/cpu/kernels/own_*.cpp) against double-precision loops over
odd shapes, strided views and 1-4 threads, without the Python layer in between. Compiled here with
the C++ compiler that built the package; skipped when there is none (an installed wheel without a
toolchain) or the sources are not present."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "cpp" / "backends" / "cpu" / "kernels").glob("own_*.cpp"))
TEST = ROOT / "tests" / "cpp" / "test_own_kernels.cpp"
GRADIENT_TEST = ROOT / "tests" / "cpp" / "test_own_gradients.cpp"


def _compiler():
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _build_and_run(test, arch, tmp_path):
    """Compiles `test` (its own main) with every own_*.cpp and runs it: it must exit 0 and print
    "all cases passed"; a failure shows its non-"ok" lines."""
    exe = tmp_path / test.stem
    cmd = [_compiler(), "-O1", *arch, "-fopenmp", "-std=c++17", "-I", str(ROOT / "cpp"), *map(str, SOURCES), str(test),
           "-o", str(exe)]
    # Under tools/sanitize.sh the interpreter runs with the sanitizer runtimes preloaded; the
    # compiler and the test program are not ours to check (and the compiler's own leaks would fail).
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    build = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert build.returncode == 0, build.stderr[-4000:]
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=600, env=env)
    failures = [line for line in run.stdout.splitlines() if not line.startswith("ok")]
    assert run.returncode == 0, "\n".join(failures[-40:]) + run.stderr[-2000:]
    assert "all cases passed" in run.stdout



def _cpu_flags():
    try:
        text = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {f for line in text.splitlines() if line.startswith("flags") for f in line.split(":", 1)[1].split()}


_FLAGS = _cpu_flags()
_AVX512 = {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl", "avx512_vpopcntdq", "avx512_bitalg"} <= _FLAGS
_AVX2 = {"avx2", "fma", "bmi2", "f16c"} <= _FLAGS

# native: the instruction set the package is built for by default (MPSNN_NATIVE_ARCH=ON, the
# AVX-512 paths on our machines); avx512 / avx2 / portable: the three copies a portable build
# (wheels) compiles of these sources, with CMakeLists.txt's flags (cpp/backends/cpu/isa.h); a copy
# this CPU cannot run is skipped.
ARCHS = pytest.mark.parametrize(
    "arch",
    [
        ["-march=native"],
        pytest.param(["-march=x86-64-v4", "-mavx512vpopcntdq", "-mavx512bitalg", "-mprefer-vector-width=256"], marks=pytest.mark.skipif(not _AVX512, reason="no AVX-512 here")),
        pytest.param(["-march=x86-64-v3"], marks=pytest.mark.skipif(not _AVX2, reason="no AVX2 here")),
        [],
    ],
    ids=["native", "avx512", "avx2", "portable"],
)
NEEDS_COMPILER = pytest.mark.skipif(_compiler() is None, reason="no C++ compiler")


@pytest.mark.skipif(not SOURCES or not TEST.exists(), reason="C++ sources not present")
@NEEDS_COMPILER
@ARCHS
def test_own_kernels_against_double_loops(arch, tmp_path):
    _build_and_run(TEST, arch, tmp_path)


@pytest.mark.skipif(not SOURCES or not GRADIENT_TEST.exists(), reason="C++ sources not present")
@NEEDS_COMPILER
@ARCHS
def test_own_gradients_against_double_loops(arch, tmp_path):
    _build_and_run(GRADIENT_TEST, arch, tmp_path)
