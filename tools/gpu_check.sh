#!/usr/bin/env bash
# On a machine with an NVIDIA GPU and no network (the `device` tool's H200): builds the extension
# with the CUDA backend from the carried wheels (.whl: onednn-cpu-gomp, onednn-devel-cpu-gomp,
# pybind11) and headers (build/cuda-deps, from tools/cuda_deps.sh), then runs what is asked:
#   tools/gpu_check.sh tests  [pytest args]   # tests/test_cuda.py, then the op/network/graph suites on cuda:0
#   tools/gpu_check.sh bench  [bench args]    # benchmarks/bench_cuda.py
#   tools/gpu_check.sh all                    # both (MPSNN_BENCH_ARGS: the benchmark's arguments)
#   tools/gpu_check.sh cuda|suite [args]      # only tests/test_cuda.py, or only the suites
#   tools/gpu_check.sh build                  # only the build (then run python3 with PYTHONPATH as below)
# Logs go to $OUT (or ./gpu-out).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-out}
mkdir -p "$out"
what=${1:-tests}
shift || true
# The machine's python3 (with PyTorch, NumPy, pytest) plus the carried wheels under a prefix of
# their own (a prefix keeps oneDNN's lib/ and lib/cmake/ layout, which CMake and the loader use).
prefix=/tmp/mpsnn-prefix
site=$prefix/lib/python$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')/site-packages
[ -d "$site/pybind11" ] || python3 -m pip install -q --no-index --no-deps --prefix "$prefix" .whl/*.whl
export PYTHONPATH=$site
python() { python3 "$@"; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
# The system compiler, whose libstdc++ is the one the interpreter loads (a newer toolchain's
# headers against an older runtime libstdc++ crash in iostreams).
if [ -x /usr/bin/g++ ]; then
  export CC=/usr/bin/gcc CXX=/usr/bin/g++ CUDAHOSTCXX=/usr/bin/g++
fi
cmake -S . -B build/gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DMPSNN_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DPython_EXECUTABLE="$(command -v python3)" -Dpybind11_DIR="$(python -m pybind11 --cmakedir)" > "$out/configure.log" 2>&1 ||
  { tail -30 "$out/configure.log"; exit 1; }
(time cmake --build build/gpu --target _core -j "$(nproc)" -- -k 0) > "$out/build.log" 2>&1 || { grep -E "error|FAILED" -A5 "$out/build.log" | head -80; exit 1; }
tail -3 "$out/build.log"
rm -rf build/gpu/pkg && mkdir -p build/gpu/pkg/mpsnn
cp python/mpsnn/*.py python/mpsnn/*.pyi python/mpsnn/py.typed build/gpu/pkg/mpsnn/ && cp build/gpu/_core*.so build/gpu/pkg/mpsnn/
export PYTHONPATH=$PWD/build/gpu/pkg:$site PYTHONUNBUFFERED=1
python -c "import mpsnn; print(mpsnn.MTLCopyAllDevices(), mpsnn.MTLCreateSystemDefaultDevice().name)"
# The op, network and DLPack suites on cuda:0, in the device's default format (float16 on
# CUDA) and, with MPSNN_TEST_FORMAT=float32 or bfloat16 (conftest.py's make_graph), in that format
# (MPSNN_SUITE_FORMATS="default float32 bfloat16" for the suite mode); logs suite_cuda_<format>.log.
run_suite() {
    local fmt=$1; shift
    MPSNN_TEST_FORMAT=${fmt#default} MPSNN_TEST_DEVICES=cuda:0 timeout ${MPSNN_SUITE_TIMEOUT:-300} python -m pytest -v \
      -p no:cacheprovider -rfEs -p no:benchmark -n 8 tests/ops tests/test_example_networks.py tests/test_dlpack.py "$@" > "$out/suite_cuda_$fmt.log" 2>&1
    echo "== suite on cuda:0, format $fmt (rc $?; 124: stopped by the timeout)"
    grep -E "^=.*(passed|failed)" "$out/suite_cuda_$fmt.log" | tail -2
    grep -cE " PASSED " "$out/suite_cuda_$fmt.log" | sed 's/^/tests passed so far: /'
    grep -E "^(FAILED|ERROR) |crashed" "$out/suite_cuda_$fmt.log" | cut -c1-250 | head -${MPSNN_FAIL_LINES:-60}
    # Failures as they happened (also when the timeout stopped the run before its summary).
    grep -oE "(FAILED|ERROR) tests/[^ ]+" "$out/suite_cuda_$fmt.log" | sort -u | sed -E 's/\[.*//' | sort | uniq -c | head -40
    grep -E "^SKIPPED" "$out/suite_cuda_$fmt.log" | sed -E 's/.*not on cuda:0 yet: //' | cut -c1-110 | sort | uniq -c | sort -rn | head -12
}
run_cuda_tests() {
    python -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py "$@" 2>&1 | tee "$out/test_cuda.log" | tail -25
}
run_tests() {
    run_cuda_tests "$@"
    run_suite default "$@"
    run_suite float32 "$@"
}
run_bench() {
    (cd benchmarks && python bench_cuda.py "$@") 2>&1 | tee -a "$out/bench.log" | tail -40
}
case "$what" in
  tests) run_tests "$@" ;;
  bench) run_bench "$@" ;;
  all) run_tests; run_bench ${MPSNN_BENCH_ARGS:-} ;;
  cuda) run_cuda_tests "$@" ;;
  suite) for f in ${MPSNN_SUITE_FORMATS:-default float32}; do run_suite "$f" "$@"; done ;;
  build) echo "PYTHONPATH=$PYTHONPATH" ;;
esac
