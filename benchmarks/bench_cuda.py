#!/usr/bin/env python
"""Whole networks on an NVIDIA GPU: mpsnn's CUDA backend against PyTorch eager, float32 and float16.

    python benchmarks/bench_cuda.py [--models mnist,resnet18,resnet50] [--batches 1,32,256]
                                    [--formats float32,float16] [--rounds 15]

Both sides go from a host NumPy batch to host NumPy probabilities, so each timed call includes the
host-to-device copy of the input and the copy of the result back (what `graph.run([array])` does
today: images of a CUDA graph live in device memory). PyTorch runs channels_last with
cudnn.benchmark on and TF32 off (mpsnn never uses TF32 unless asked). In float16 the mpsnn graph's
`format` is float16 (float16 activations, float32 accumulation; the float32 input is converted on
the device) and PyTorch runs `.half()` on the input moved to the device. Outputs are compared first
(max abs difference of the softmax). Calls alternate between the two, one sample each per round;
medians over rounds and the median of per-round ratios are reported.

CUDA-graph replay and device-resident DLPack inputs (issue 10's remaining targets) are measured
once they exist.
"""

from __future__ import annotations

import argparse
import statistics
import time

import models
import numpy as np


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="mnist,resnet18,resnet50")
    p.add_argument("--batches", default="1,32,256")
    p.add_argument("--formats", default="float32,float16")
    p.add_argument("--rounds", type=int, default=15)
    return p.parse_args()


def timed(fn, x, min_time=0.2):
    """Seconds per call: as many calls as fit in min_time (at least 2), the median."""
    times = []
    start = time.perf_counter()
    while len(times) < 2 or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    args = parse_args()
    import torch

    import mpsnn

    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = mpsnn.MTLCreateSystemDefaultDevice()
    print(f"mpsnn device: {dev.name} ({dev.registry_id}); torch {torch.__version__}, {torch.cuda.get_device_name()}")
    print(f"{'model':9} {'format':7} {'batch':>5} {'mpsnn img/s':>12} {'torch img/s':>12} {'ratio':>6} {'max|diff|':>9}")
    for model, fmt in [(m, f) for m in args.models.split(",") for f in args.formats.split(",")]:
        w = models.make_weights(model)
        graph = models.build_mpsnn(model, w)
        graph.format = getattr(mpsnn.MPSImageFeatureChannelFormat, fmt)
        half = fmt == "float16"
        net = models.build_torch(model, w).cuda()
        if half:
            net = net.half()

        def ours(x):
            y = graph.run([x]).numpy().astype(np.float32)
            return y.reshape(y.shape[0], -1)

        def theirs(x):
            with torch.inference_mode():
                t = torch.from_numpy(x).cuda()
                return net(t.half() if half else t).float().cpu().numpy()

        for batch in map(int, args.batches.split(",")):
            x = models.make_input(model, batch)
            diff = float(np.abs(ours(x) - theirs(x)).max())
            for _ in range(3):  # warm-up: plans, cuDNN autotuning
                ours(x), theirs(x)
            a, b, r = [], [], []
            for k in range(args.rounds):
                pair = [(ours, a), (theirs, b)] if k % 2 == 0 else [(theirs, b), (ours, a)]
                for fn, out in pair:
                    out.append(timed(fn, x))
                r.append(b[-1] / a[-1])
            ta, tb = statistics.median(a), statistics.median(b)
            print(f"{model:9} {fmt:7} {batch:5d} {batch / ta:12.0f} {batch / tb:12.0f} {statistics.median(r):6.2f} "
                  f"{diff:9.1e}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
