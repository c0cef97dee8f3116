#!/usr/bin/env python
"""Whole networks on an NVIDIA GPU: mpsnn's CUDA backend against PyTorch eager (and PyTorch CUDA-graph
replay), float32 and float16, with mpsnn's own CUDA-graph replay on and off.

    python benchmarks/bench_cuda.py [--models mnist,resnet18,resnet50] [--batches 1,32,256]
                                    [--formats float32,float16,bfloat16,tf32] [--io host,device] [--rounds 15]
                                    [--no-replay-column] [--profile resnet50:float16:256]

Two ways in and out (--io):

- host: both sides go from a host NumPy batch to host NumPy probabilities, so each timed call
  includes the host-to-device copy of the input and the copy of the result back (`graph.run([array])`
  then `numpy()`; PyTorch `from_numpy(x).cuda()` ... `.cpu()`).
- device: the input already lives on the GPU (a CUDA tensor, handed to mpsnn through DLPack without
  a copy: `MPSImage.from_dlpack(t)`, in the graph's format) and the result stays there; a call is
  `graph.run([image])` (which returns once the GPU has finished) against `net(t)` followed by
  `torch.cuda.synchronize()`. This is what issue 10's targets are about. PyTorch's CUDA-graph
  replay of the same network (PyTorch's recipe: warm-up on a side stream, capture on a static
  input that lives as long as the graph, the row's input copied into it before the checked
  replay) is a third column here. mpsnn's results are read back through torch.from_dlpack.

mpsnn replays a compiled plan as a CUDA graph by default; the "mpsnn, no replay" column is a second
graph with the same weights compiled with MPSNN_CUDA_GRAPHS=0 (plain kernel launches). Its plans
are compiled separately, so its cuDNN engines are timed and chosen again (they may differ).

PyTorch runs channels_last with cudnn.benchmark on. Formats (--formats): float32 (TF32 off on both
sides), float16 and bfloat16 (the mpsnn graph's `format`: 16-bit activations, float32 accumulation;
PyTorch `.half()` / `.bfloat16()`), and tf32: float32 images with TF32 convolutions allowed on both
sides (PyTorch's default allow_tf32; mpsnn's MPSNN_CUDA_TF32=1), the like-for-like comparison of
PyTorch's default float32. Outputs are compared first (max abs difference of the softmax against
PyTorch eager, of each variant; the table shows mpsnn's). Calls
alternate between the variants, one sample (median time per call over about 0.2 s) each per round;
medians over rounds and the median of per-round ratios are reported. Time per call in ms is the
batch-1 latency where batch is 1.

--profile MODEL:FORMAT:BATCH records the GPU kernels of 10 device-resident calls of each side with
torch.profiler (CUPTI sees every kernel of the process, mpsnn's included) and prints where the GPU
time goes, per call, grouped by kernel.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time

import models
import numpy as np


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="mnist,resnet18,resnet50")
    p.add_argument("--batches", default="1,32,256")
    p.add_argument("--formats", default="float32,float16")
    p.add_argument("--io", default="host,device")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--no-replay-column", action="store_true", help="skip the 'mpsnn, no replay' variant")
    p.add_argument("--profile", default="", help="MODEL:FORMAT:BATCH[,...]: kernel-time breakdown, no timing table")
    p.add_argument("--float64", default="", help="MODEL:BATCH[,...]: each format's outputs (mpsnn, torch eager, "
                   "torch graph) against a float64 PyTorch run on the CPU, no timing table")
    return p.parse_args()


def timed(fn, min_time=0.2):
    """Seconds per call: as many calls as fit in min_time (at least 2), the median."""
    times = []
    start = time.perf_counter()
    while len(times) < 2 or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@contextlib.contextmanager
def replay_off():
    """Plans compiled inside are compiled without CUDA-graph replay (MPSNN_CUDA_GRAPHS=0)."""
    old = os.environ.get("MPSNN_CUDA_GRAPHS")
    os.environ["MPSNN_CUDA_GRAPHS"] = "0"
    try:
        yield
    finally:
        if old is None:
            del os.environ["MPSNN_CUDA_GRAPHS"]
        else:
            os.environ["MPSNN_CUDA_GRAPHS"] = old


class Case:
    """One model in one format: the mpsnn graphs (replay on, off) and the PyTorch module."""

    def __init__(self, model, fmt, with_plain):
        import torch

        import mpsnn
        self.torch, self.mpsnn = torch, mpsnn
        self.model, self.fmt = model, fmt
        self.half = fmt in ("float16", "bfloat16")
        self.tdtype = {"float16": torch.float16, "bfloat16": torch.bfloat16}.get(fmt, torch.float32)
        w = models.make_weights(model)
        self.graphs = {"mpsnn": models.build_mpsnn(model, w)}
        if with_plain:
            self.graphs["mpsnn, no replay"] = models.build_mpsnn(model, w)
        for g in self.graphs.values():
            g.format = getattr(mpsnn.MPSImageFeatureChannelFormat, "float32" if fmt == "tf32" else fmt)
        net = models.build_torch(model, w).cuda()
        self.net = net.to(self.tdtype)
        self.dev = mpsnn.MTLCreateSystemDefaultDevice()

    def variants(self, x, io):
        """name -> (call, result as float32 NumPy (N, classes)); the first call of each compiles."""
        torch, mpsnn = self.torch, self.mpsnn
        out = {}

        def flat(a):
            a = np.asarray(a, np.float32)
            return a.reshape(a.shape[0], -1)

        if io == "host":
            for name, g in self.graphs.items():
                out[name] = (lambda g=g: g.run([x]).numpy(), lambda g=g: flat(g.run([x]).numpy()))

            def theirs():
                with torch.inference_mode():
                    t = torch.from_numpy(x).cuda()
                    return self.net(t.to(self.tdtype)).float().cpu().numpy()
            out["torch eager"] = (theirs, theirs)
            return out
        t = torch.from_numpy(x).cuda().to(self.tdtype)
        # The input of the graph: the CUDA tensor itself, through DLPack (no copy; the image's
        # memory is the tensor's).
        img = mpsnn.MPSImage.from_dlpack(t)
        assert torch.from_dlpack(img).data_ptr() == t.data_ptr()
        for name, g in self.graphs.items():
            out[name] = (lambda g=g: g.run([img]), lambda g=g: flat(torch.from_dlpack(g.run([img])).float().cpu().numpy()))

        def eager():
            with torch.inference_mode():
                y = self.net(t)
            torch.cuda.synchronize()
            return y

        out["torch eager"] = (eager, lambda: eager().float().cpu().numpy())
        # PyTorch's recipe: warm-up on a side stream, capture on a static input, copy each new
        # input into it before replaying. The static input must outlive the graph, which reads
        # its address on every replay: the first version of this script let it go when this
        # function returned, so replays read whatever the caching allocator had put there since
        # (its outputs disagreed with eager by 0.05-0.73).
        with torch.inference_mode():
            static = torch.empty_like(t)
            static.copy_(t)
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                for _ in range(3):
                    self.net(static)
            torch.cuda.current_stream().wait_stream(s)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self.net(static)
        keep = (graph, static, static_out)

        def replayed():
            keep[0].replay()
            torch.cuda.synchronize()
            return keep[2]

        def replayed_result():
            with torch.inference_mode():  # the static input is an inference tensor
                keep[1].copy_(t)  # the input of this row (the same values: a check that replay reads it)
            return replayed().float().cpu().numpy()

        out["torch graph"] = (replayed, replayed_result)
        return out


def first_calls(case, variants):
    """Runs each variant's result function once (compiling mpsnn's plans; the no-replay graph's
    under MPSNN_CUDA_GRAPHS=0) and returns name -> result."""
    results = {}
    for name, (_, result) in variants.items():
        with replay_off() if name == "mpsnn, no replay" else contextlib.nullcontext():
            results[name] = result()
    return results


def profile(spec):
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as tprofile
    model, fmt, batch = spec.split(":")
    case = Case(model, fmt, with_plain=False)
    x = models.make_input(model, int(batch))
    variants = case.variants(x, "device")
    first_calls(case, variants)
    for side in ("mpsnn", "torch eager"):
        call = variants[side][0]
        for _ in range(5):
            call()
        n = 10
        t0 = time.perf_counter()
        with tprofile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(n):
                call()
            torch.cuda.synchronize()
        wall = (time.perf_counter() - t0) / n * 1e3
        rows = []
        for e in prof.key_averages():
            dev_us = getattr(e, "self_device_time_total", None)
            if dev_us is None:
                dev_us = getattr(e, "self_cuda_time_total", 0)
            if dev_us > 0:
                rows.append((dev_us / n / 1e3, e.count / n, e.key))
        rows.sort(reverse=True)
        total = sum(r[0] for r in rows)
        print(f"\n== profile {model} {fmt} batch {batch}, {side}: {wall:.3f} ms per call (wall, profiled), "
              f"GPU kernel time {total:.3f} ms per call, {sum(r[1] for r in rows):.0f} kernels per call")
        groups = {}
        for ms, cnt, key in rows:
            k = key.lower()
            g = ("memcpy/memset" if "memcpy" in k or "memset" in k else
                 "mpsnn elementwise/pool/softmax" if any(s in k for s in ("neuron_kernel", "arithmetic_kernel", "epilogue_kernel", "convert_kernel", "pooling_kernel", "softmax_kernel", "clamp_kernel", "fill_kernel")) else
                 "conv/gemm (cuDNN, cuBLAS, cutlass)" if any(s in k for s in ("conv", "xmma", "cutlass", "gemm", "sm90", "sm80", "implicit", "fprop", "cudnn", "nhwc")) else
                 "other")
            a = groups.setdefault(g, [0.0, 0.0])
            a[0] += ms
            a[1] += cnt
        for g, (ms, cnt) in sorted(groups.items(), key=lambda kv: -kv[1][0]):
            print(f"  {g:36} {ms:8.3f} ms {cnt:6.0f} kernels ({100 * ms / max(total, 1e-9):4.1f}%)")
        print(f"  {'ms/call':>8} {'n/call':>6}  kernel")
        for ms, cnt, key in rows[:22]:
            print(f"  {ms:8.3f} {cnt:6.1f}  {key[:150]}")
    return 0


def set_tf32(fmt):
    """tf32: float32 images on both sides with TF32 convolutions allowed on both (PyTorch's default;
    MPSNN_CUDA_TF32=1 when mpsnn's plans are compiled). Otherwise TF32 is off on both."""
    import torch
    tf32 = fmt == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    if tf32:
        os.environ["MPSNN_CUDA_TF32"] = "1"
    else:
        os.environ.pop("MPSNN_CUDA_TF32", None)


def against_float64(spec, formats):
    """Max |diff| of the probabilities of each side and format against float64 (PyTorch on the CPU,
    the same weights), with the argmax agreement and the smallest top-2 probability gap of the
    float64 result: an argmax that flips where that gap is small is rounding, not a bug."""
    import torch
    model, batch = spec.split(":")
    x = models.make_input(model, int(batch))
    w = models.make_weights(model)
    with torch.inference_mode():
        ref = models.build_torch(model, w).double()(torch.from_numpy(x).double()).numpy()
    top2 = np.sort(ref, axis=1)[:, -2:]
    gap = top2[:, 1] - top2[:, 0]
    print(f"\n== {model} batch {batch} against float64 (CPU): smallest top-2 gap {gap.min():.2e}, "
          f"median {np.median(gap):.2e}")
    for fmt in formats:
        set_tf32(fmt)
        case = Case(model, fmt, with_plain=False)
        results = first_calls(case, case.variants(x, "device"))
        for name, r in results.items():
            d = np.abs(r.astype(np.float64) - ref)
            worst = int(d.max(axis=1).argmax())
            print(f"  {fmt:8} {name:12} max|diff| {d.max():.2e} (image {worst}, its top-2 gap {gap[worst]:.2e}); "
                  f"mean|diff| {d.mean():.2e}; argmax agrees on {float(np.mean(r.argmax(1) == ref.argmax(1))):.0%}")
    return 0


def main() -> int:
    args = parse_args()
    import torch

    import mpsnn

    torch.backends.cudnn.benchmark = True
    dev = mpsnn.MTLCreateSystemDefaultDevice()
    print(f"mpsnn device: {dev.name} ({dev.registry_id}); torch {torch.__version__}, {torch.cuda.get_device_name()}")
    if args.profile:
        for spec in args.profile.split(","):
            profile(spec)
        return 0
    if args.float64:
        for spec in args.float64.split(","):
            against_float64(spec, args.formats.split(","))
        return 0
    header = None
    for model, fmt in [(m, f) for m in args.models.split(",") for f in args.formats.split(",")]:
        set_tf32(fmt)
        case = Case(model, fmt, with_plain=not args.no_replay_column)
        for io in args.io.split(","):
            for batch in map(int, args.batches.split(",")):
                x = models.make_input(model, batch)
                variants = case.variants(x, io)
                results = first_calls(case, variants)
                ref = results["torch eager"]
                diffs = {n: float(np.abs(r - ref).max()) for n, r in results.items() if n != "torch eager"}
                diff = diffs["mpsnn"]
                names = list(variants)
                for _ in range(3):  # warm-up: plans' second runs record, cuDNN autotuning
                    for n in names:
                        variants[n][0]()
                times = {n: [] for n in names}
                ratios = {n: [] for n in names if n != "mpsnn"}
                for k in range(args.rounds):
                    order = names[k % len(names):] + names[:k % len(names)]
                    for n in order:
                        times[n].append(timed(variants[n][0]))
                    for n in ratios:
                        ratios[n].append(times[n][-1] / times["mpsnn"][-1])
                cols = " ".join(f"{n + ' ms':>18}" for n in names)
                rcols = " ".join(f"{n + ' / mpsnn':>24}" for n in ratios)
                line_header = f"{'model':9} {'format':7} {'io':6} {'batch':>5} {'mpsnn img/s':>12} {cols} {rcols} {'max|diff|':>9}"
                if line_header != header:
                    print(line_header)
                    header = line_header
                med = {n: statistics.median(v) for n, v in times.items()}
                vals = " ".join(f"{med[n] * 1e3:18.4f}" for n in names)
                rvals = " ".join(f"{statistics.median(r):24.2f}" for r in ratios.values())
                print(f"{model:9} {fmt:7} {io:6} {batch:5d} {batch / med['mpsnn']:12.0f} {vals} {rvals} {diff:9.1e}",
                      flush=True)
                if "torch graph" in variants:  # again, after the warm-up replays
                    diffs["torch graph (after warm-up)"] = float(np.abs(variants["torch graph"][1]() - ref).max())
                others = ", ".join(f"{n} {d:.1e}" for n, d in diffs.items() if n != "mpsnn")
                print(f"    max|diff| against torch eager: {others}; mpsnn argmax agrees on "
                      f"{float(np.mean(results['mpsnn'].argmax(1) == ref.argmax(1))):.0%}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
