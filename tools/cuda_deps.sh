#!/usr/bin/env bash
# Fetches the headers the CUDA backend compiles against, from PyPI, into build/cuda-deps:
#   build/cuda-deps/cudnn/include           cudnn*.h (nvidia-cudnn-cu13)
#   build/cuda-deps/cudnn_frontend/include  cudnn_frontend.h and the rest (nvidia-cudnn-frontend)
#   build/cuda-deps/nvrtc/include           nvrtc.h (nvidia-cuda-nvrtc), which the frontend's headers
#                                           include; NVRTC itself is only opened at run time
# Only the headers are unpacked (no Python parts, no libraries); CMake finds them there. The
# cuDNN version is the oldest we support at run time (the frontend checks the loaded library's
# version before using newer features). Needs pip and unzip-capable Python; about 530 MB download.
set -euo pipefail
cd "$(dirname "$0")/.."
out=build/cuda-deps
CUDNN_VERSION=${CUDNN_VERSION:-9.19.1.2}
FRONTEND_VERSION=${FRONTEND_VERSION:-1.32.0}
NVRTC_VERSION=${NVRTC_VERSION:-13.0.88}
if [ -f "$out/cudnn/include/cudnn.h" ] && [ -f "$out/cudnn_frontend/include/cudnn_frontend.h" ] &&
   [ -f "$out/nvrtc/include/nvrtc.h" ]; then
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$tmp" "nvidia-cudnn-cu13==$CUDNN_VERSION" "nvidia-cudnn-frontend==$FRONTEND_VERSION" \
  "nvidia-cuda-nvrtc==$NVRTC_VERSION"
python3 - "$tmp" "$out" <<'PY'
import pathlib, sys, zipfile
tmp, out = map(pathlib.Path, sys.argv[1:])
for wheel in tmp.glob("*.whl"):
    kind = "cudnn_frontend" if "frontend" in wheel.name else "nvrtc" if "nvrtc" in wheel.name else "cudnn"
    target = out / kind / "include"
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            p = pathlib.PurePosixPath(name)
            if "include" in p.parts and not name.endswith("/") and (kind != "nvrtc" or p.name.startswith("nvrtc")):
                rel = pathlib.PurePosixPath(*p.parts[p.parts.index("include") + 1:])
                dest = target / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(z.read(name))
    print(f"{wheel.name}: headers in {target}")
PY
