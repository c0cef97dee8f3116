#!/usr/bin/env bash
# On a machine with an NVIDIA GPU and no network (the `device` tool's H200): builds the extension
# with the CUDA backend from the carried wheels (.whl: onednn-cpu-gomp, onednn-devel-cpu-gomp,
# pybind11) and headers (build/cuda-deps, from tools/cuda_deps.sh), then runs what is asked:
#   tools/gpu_check.sh tests  [pytest args]   # tests/test_cuda.py, then the op/network/graph suites on cuda:0
#   tools/gpu_check.sh bench  [bench args]    # benchmarks/bench_graphs.py --device cuda
# Logs go to $OUT (or ./gpu-out).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-out}
mkdir -p "$out"
what=${1:-tests}
shift || true
venv=/tmp/mpsnn-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv --system-site-packages "$venv"
  "$venv/bin/python" -m pip install -q --no-index --no-deps .whl/*.whl
fi
. "$venv/bin/activate"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
cmake -S . -B build/gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DMPSNN_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DPython_EXECUTABLE="$venv/bin/python" -Dpybind11_DIR="$(python -m pybind11 --cmakedir)" > "$out/configure.log" 2>&1 ||
  { tail -30 "$out/configure.log"; exit 1; }
(time cmake --build build/gpu --target _core -j "$(nproc)") > "$out/build.log" 2>&1 || { grep -E "error|FAILED" -A5 "$out/build.log" | head -80; exit 1; }
tail -3 "$out/build.log"
rm -rf build/gpu/pkg && mkdir -p build/gpu/pkg/mpsnn
cp python/mpsnn/*.py python/mpsnn/*.pyi python/mpsnn/py.typed build/gpu/pkg/mpsnn/ && cp build/gpu/_core*.so build/gpu/pkg/mpsnn/
export PYTHONPATH=$PWD/build/gpu/pkg PYTHONUNBUFFERED=1
python -c "import mpsnn; print(mpsnn.MTLCopyAllDevices(), mpsnn.MTLCreateSystemDefaultDevice().name)"
case "$what" in
  tests)
    python -m pytest -q -p no:cacheprovider tests/test_cuda.py "$@" 2>&1 | tee "$out/test_cuda.log" | tail -25
    MPSNN_TEST_DEVICES=cuda:0 timeout 300 python -m pytest -q -p no:cacheprovider -rs tests/ops tests/test_example_networks.py \
      "$@" > "$out/suite_cuda.log" 2>&1
    grep -E "passed|failed" "$out/suite_cuda.log" | tail -3
    grep -E "^(FAILED|ERROR)" "$out/suite_cuda.log" | cut -c1-220 | head -60
    grep -E "^SKIPPED" "$out/suite_cuda.log" | sed -E 's/.*not on cuda:0 yet: //' | cut -c1-110 | sort | uniq -c | sort -rn | head -30
    ;;
  bench)
    python benchmarks/bench_graphs.py --device cuda "$@" 2>&1 | tee "$out/bench.log" | tail -40
    ;;
esac
