#!/usr/bin/env bash
# Compiles the extension with the CUDA backend (MPSNN_CUDA=ON) into build/cuda, fetching the
# cuDNN, cuDNN-frontend and NVRTC headers first (tools/cuda_deps.sh), and assembles an importable
# package in build/cuda/pkg. Needs nvcc (a CUDA 13 toolkit) and an active venv with the test
# extras; no GPU. Then, on any machine:
#   PYTHONPATH=build/cuda/pkg python -m pytest tests ...
# runs the suite on every device the machine has (MPSNN_TEST_DEVICES narrows it).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${MPSNN_CUDA_BUILD:-build/cuda}
tools/cuda_deps.sh
python -m pip install -q cmake ninja "pybind11>=3.0" "onednn-devel-cpu-gomp==2023.2.0"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMPSNN_CUDA=ON -DMPSNN_NATIVE_ARCH=OFF \
  -DPython_EXECUTABLE="$(command -v python)" -Dpybind11_DIR="$(python -m pybind11 --cmakedir)" >/dev/null
cmake --build "$build" --target _core
rm -rf "$build/pkg" && mkdir -p "$build/pkg/mpsnn"
cp python/mpsnn/*.py python/mpsnn/*.pyi python/mpsnn/py.typed "$build/pkg/mpsnn/"
cp "$build"/_core*.so "$build/pkg/mpsnn/"
