#!/usr/bin/env python
"""Own-kernel microbenchmarks: mpsnn's hand-written CPU kernels against the nearest PyTorch op.

    python benchmarks/bench_ops.py [--quick] [--json out.json] [--update-readme] [--ops add,concat]

Every case is a one-node ``MPSNNGraph`` run through the public Python API (``graph.run``, so the
time includes the per-call cost of wrapping the input, allocating the result and looking up the
plan, about 0.1 ms; shapes are chosen so that the kernel dominates) and the nearest PyTorch
operation (eager, ``torch.set_num_threads``) on the same data: the NHWC NumPy input viewed as a
channels_last NCHW tensor, or a contiguous NCHW copy made beforehand where PyTorch is faster on
that (the faster of the two is picked during warm-up and named in the results).

1. Outputs are compared before timing: max abs diff, mpsnn against PyTorch. Where PyTorch computes
   the same function the diff must stay below the case's tolerance (else the exit status is 1);
   where it is only the nearest op (Lanczos vs antialiased bicubic) the diff is reported only.
2. Timing as in ``bench_graphs.py`` (see ``_harness.py``): one process, 2 threads each, warm-up,
   alternating rounds with a short pause before each sample, medians; the speed-up is the median
   of the per-round ratios PyTorch time / mpsnn time (> 1: mpsnn faster).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _harness as H
from _harness import Contender, time_round_robin


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer rounds and shorter samples (smoke test)")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON to PATH")
    p.add_argument("--update-readme", action="store_true", help="rewrite the bench_ops section of benchmarks/README.md")
    p.add_argument("--ops", default="", help="comma-separated subset of ops (default: all; --list shows them)")
    p.add_argument("--list", action="store_true", help="list the ops and their cases, then exit")
    p.add_argument("--rounds", type=int, help="timed rounds per framework (default 20, --quick 5)")
    p.add_argument("--threads", type=int, default=2, help="threads per framework (default 2)")
    return p.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None

# Thread settings must be in the environment before NumPy, PyTorch or mpsnn load their runtimes.
H.set_thread_env(ARGS.threads if ARGS else 2)

import numpy as np  # noqa: E402

BEGIN, END = "<!-- bench_ops:begin -->", "<!-- bench_ops:end -->"


# --------------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------------


@dataclass
class Case:
    """One op on one shape. ``node(mpsnn, *image_nodes)`` makes the filter node; ``torch_fn(torch, F,
    *tensors)`` computes the PyTorch result from NCHW tensors (NCHW or 2-D result)."""

    op: str
    params: str  # shape and parameters, for the table
    torch_op: str  # the PyTorch operation(s), for the table
    inputs: list[np.ndarray]  # NHWC float32
    node: Callable[..., Any]
    torch_fn: Callable[..., Any]
    same_math: bool = True  # PyTorch computes the same function (else: nearest op, diff not checked)
    rtol: float = 1e-5  # tolerance: max abs diff <= rtol * max(1, max |PyTorch result|)
    channels: np.ndarray | None = None  # channels of the mpsnn result that PyTorch's result holds
    layouts: tuple[str, ...] = ("channels_last", "contiguous")  # PyTorch input layouts to try
    group: str = ""  # the GROUPS entry that made it (set by make_cases)

    @property
    def id(self) -> str:
        return f"{self.op} {self.params}"


def shape_str(x: np.ndarray) -> str:
    return "x".join(map(str, x.shape))


def randn(rng: np.random.Generator, *shape: int, scale: float = 1.0, offset: float = 0.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale + offset).astype(np.float32)


def away_from_zero(x: np.ndarray) -> np.ndarray:
    """No value near the sign threshold of binarization, where rounding could flip a bit."""
    x[np.abs(x) < 1e-3] = 0.25
    return x


def spatial_norm_cases(rng, mpsnn, torch) -> list[Case]:
    k, alpha, beta, delta = 5, 1.0, 5.0, 1.0  # MPS defaults

    def node(m, s):
        return m.MPSCNNSpatialNormalizationNode(s, kernel_size=k)

    def torch_fn(t, F, x):
        avg = F.avg_pool2d(x * x, k, stride=1, padding=k // 2, count_include_pad=True)
        return x * avg.mul_(alpha).add_(delta).pow_(-beta)

    return [
        Case("spatial_norm", f"{shape_str(x)} k{k}", "x*(d+a*avg_pool2d(x^2))^-b", [x], node, torch_fn)
        for x in (randn(rng, 1, 56, 56, 64), randn(rng, 8, 56, 56, 64), randn(rng, 1, 224, 224, 3))
    ]


def lcn_cases(rng, mpsnn, torch) -> list[Case]:
    k, alpha, beta, delta, pm, ps, p0 = 5, 1.0, 0.5, 1.0 / 1024, 0.0, 1.0, 1.0  # MPS defaults

    def node(m, s):
        return m.MPSCNNLocalContrastNormalizationNode(s, kernel_size=k)

    def torch_fn(t, F, x):
        mean = F.avg_pool2d(x, k, stride=1, padding=k // 2, count_include_pad=True)
        var = F.avg_pool2d(x * x, k, stride=1, padding=k // 2, count_include_pad=True)
        var.sub_(mean * mean).clamp_(min=0.0).mul_(alpha).add_(delta).pow_(-beta)
        return (x - p0 * mean).mul_(var).mul_(ps).add_(pm)

    return [
        Case("local_contrast_norm", f"{shape_str(x)} k{k}", "composed from 2 avg_pool2d + pointwise", [x], node,
             torch_fn, rtol=1e-4)
        for x in (randn(rng, 1, 56, 56, 64, offset=0.5), randn(rng, 8, 56, 56, 64, offset=0.5),
                  randn(rng, 1, 224, 224, 3, offset=0.5))
    ]  # fmt: skip


def l2_pool_cases(rng, mpsnn, torch) -> list[Case]:
    def node(m, s):
        return m.MPSCNNPoolingL2NormNode(s, 2, 2, 2, 2)

    def torch_fn(t, F, x):
        return F.lp_pool2d(x, 2, 2, stride=2)

    return [
        Case("l2_pool", f"{shape_str(x)} k2 s2", "F.lp_pool2d(p=2)", [x], node, torch_fn)
        for x in (randn(rng, 1, 112, 112, 64), randn(rng, 8, 56, 56, 64), randn(rng, 8, 56, 56, 37),
                  randn(rng, 1, 224, 224, 3))
    ]  # fmt: skip


def scale_cases(rng, mpsnn, torch) -> list[Case]:
    cases = []
    for x, (oh, ow) in ((randn(rng, 1, 56, 56, 64), (112, 112)), (randn(rng, 8, 28, 28, 64), (56, 56)),
                        (randn(rng, 1, 224, 224, 3), (299, 299)), (randn(rng, 1, 224, 224, 3), (160, 160))):  # fmt: skip
        cases.append(
            Case(
                "bilinear_scale",
                f"{shape_str(x)} -> {oh}x{ow}",
                "F.interpolate(bilinear)",
                [x],
                lambda m, s, oh=oh, ow=ow: m.MPSNNBilinearScaleNode(s, output_size=(ow, oh)),
                lambda t, F, x, oh=oh, ow=ow: F.interpolate(x, size=(oh, ow), mode="bilinear", align_corners=False),
                rtol=1e-4,  # PyTorch computes the sampling positions in float32, mpsnn in float64
            )
        )
    for x, (oh, ow) in ((randn(rng, 1, 56, 56, 64), (112, 112)), (randn(rng, 1, 224, 224, 3), (299, 299)),
                        (randn(rng, 1, 224, 224, 3), (160, 160))):  # fmt: skip
        cases.append(
            Case(
                "lanczos_scale",
                f"{shape_str(x)} -> {oh}x{ow}",
                "F.interpolate(bicubic, antialias=True): nearest, not the same filter",
                [x],
                lambda m, s, oh=oh, ow=ow: m.MPSNNLanczosScaleNode(s, output_size=(ow, oh)),
                lambda t, F, x, oh=oh, ow=ow: F.interpolate(
                    x, size=(oh, ow), mode="bicubic", align_corners=False, antialias=True
                ),
                same_math=False,
            )
        )
    return cases


BINARY_TYPES = {"binary_weights": 0, "xnor": 1, "and": 2}


def binary_conv_case(rng, mpsnn, torch, btype: str, n: int, h: int, w: int, cin: int, cout: int, k: int,
                     fully_connected: bool = False) -> Case:  # fmt: skip
    """Binary convolution (valid padding, the MPS default) or binary fully connected (kernel = image),
    output scale 0.5 and a bias. PyTorch convolves ±1 weights (0/1 for AND) prepared once, with the
    input binarized on every call for XNOR (sign) and AND (x >= 0)."""
    kh, kw = (h, w) if fully_connected else (k, k)
    words = -(-cin // 32)
    bits = rng.integers(0, 2**32, size=(cout, kh, kw, words), dtype=np.uint64).astype(np.uint32)
    bias = randn(rng, cout)
    x = away_from_zero(randn(rng, n, h, w, cin))
    scale = 0.5
    # bit c of the weights of (o, ky, kx) as 0/1, (Cout, KH, KW, Cin)
    unpacked = (bits[..., :, None] >> np.arange(32, dtype=np.uint32)) & 1
    wbits = unpacked.reshape(cout, kh, kw, words * 32)[..., :cin].astype(np.float32)
    wt = wbits if btype == "and" else 2.0 * wbits - 1.0
    btype_enum = getattr(mpsnn.MPSCNNBinaryConvolutionType, "and_" if btype == "and" else btype)
    desc = mpsnn.MPSCNNConvolutionDescriptor(
        kernel_width=kw, kernel_height=kh, input_feature_channels=cin, output_feature_channels=cout
    )
    ds = mpsnn.ArrayConvolutionDataSource(desc, bits, bias)
    cls = mpsnn.MPSCNNBinaryFullyConnectedNode if fully_connected else mpsnn.MPSCNNBinaryConvolutionNode

    def node(m, s):
        return cls(s, ds, scale, btype_enum, m.MPSCNNBinaryConvolutionFlags.none)

    binarize = {
        "binary_weights": lambda t, x: x,
        "xnor": lambda t, x: t.sign(x),
        "and": lambda t, x: (x >= 0).to(x.dtype),
    }[btype]
    bias_t = torch.from_numpy(bias)
    if fully_connected:
        w_fc = torch.from_numpy(np.ascontiguousarray(wt.reshape(cout, -1) * scale))

        def torch_fn(t, F, x):  # NHWC flattening matches the OHWI weights
            return F.linear(binarize(t, x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)), w_fc, bias_t)

        params = f"{n}x{h}x{w}x{cin} -> {cout}"
    else:
        w_nchw = torch.from_numpy(np.ascontiguousarray(wt.transpose(0, 3, 1, 2) * scale))
        w_cl = w_nchw.contiguous(memory_format=torch.channels_last)

        def torch_fn(t, F, x):
            wx = w_cl if x.is_contiguous(memory_format=t.channels_last) else w_nchw
            return F.conv2d(binarize(t, x), wx, bias_t)

        params = f"{n}x{h}x{w}x{cin} -> {cout} k{k}"
    op = ("binary_fc_" if fully_connected else "binary_conv_") + btype
    torch_op = ("F.linear, " if fully_connected else "F.conv2d, ") + {
        "binary_weights": "±1 weights",
        "xnor": "±1 weights on sign(x)",
        "and": "0/1 weights on x>=0",
    }[btype]
    return Case(op, params, torch_op, [x], node, torch_fn, rtol=1e-5)


def binary_conv_cases(rng, mpsnn, torch) -> list[Case]:
    cases = []
    for btype in BINARY_TYPES:
        cases.append(binary_conv_case(rng, mpsnn, torch, btype, 1, 56, 56, 64, 64, 3))
        cases.append(binary_conv_case(rng, mpsnn, torch, btype, 8, 28, 28, 128, 128, 3))
        cases.append(binary_conv_case(rng, mpsnn, torch, btype, 1, 224, 224, 3, 64, 3))
    for btype in BINARY_TYPES:
        cases.append(binary_conv_case(rng, mpsnn, torch, btype, 8, 7, 7, 256, 1024, 0, fully_connected=True))
    return cases


def soft_sign_cases(rng, mpsnn, torch) -> list[Case]:
    return [
        Case("soft_sign", shape_str(x), "F.softsign", [x], lambda m, s: m.MPSCNNNeuronSoftSignNode(s),
             lambda t, F, x: F.softsign(x))
        for x in (randn(rng, 8, 56, 56, 64), randn(rng, 1, 224, 224, 3))
    ]  # fmt: skip


def prelu_cases(rng, mpsnn, torch) -> list[Case]:
    cases = []
    for x in (randn(rng, 8, 56, 56, 64), randn(rng, 1, 224, 224, 3)):
        slopes = rng.uniform(0.05, 0.3, x.shape[3]).astype(np.float32)
        slopes_t = torch.from_numpy(slopes)
        cases.append(
            Case("prelu", f"{shape_str(x)} per-channel", "F.prelu", [x],
                 lambda m, s, a=slopes: m.MPSCNNNeuronPReLUNode(s, a_data=a.tolist()),
                 lambda t, F, x, a=slopes_t: F.prelu(x, a))
        )  # fmt: skip
    return cases


def power_cases(rng, mpsnn, torch) -> list[Case]:
    a, b, c = 0.5, 1.0, 1.5  # a*u + b > 0 for the inputs below

    def node(m, s):
        return m.MPSCNNNeuronPowerNode(s, a, b, c)

    def torch_fn(t, F, x):
        return (x * a).add_(b).pow_(c)

    return [
        Case("power", f"{shape_str(x)} (0.5u+1)^1.5", "(a*x+b).pow(c)", [x], node, torch_fn)
        for x in (np.abs(randn(rng, 8, 56, 56, 64)), np.abs(randn(rng, 1, 224, 224, 3)))
    ]


def add_cases(rng, mpsnn, torch) -> list[Case]:
    def node(m, p, q):
        return m.MPSNNAdditionNode(left_source=p, right_source=q)

    def node_broadcast(m, p, q):
        n = m.MPSNNAdditionNode(left_source=p, right_source=q)
        n.secondary_stride_in_pixels_x = n.secondary_stride_in_pixels_y = 0
        return n

    cases = [
        Case("add", f"{shape_str(x)} + same", "torch.add", [x, y], node, lambda t, F, x, y: t.add(x, y))
        for x, y in ((randn(rng, 8, 56, 56, 64), randn(rng, 8, 56, 56, 64)),
                     (randn(rng, 8, 56, 56, 37), randn(rng, 8, 56, 56, 37)),
                     (randn(rng, 1, 224, 224, 3), randn(rng, 1, 224, 224, 3)))
    ]  # fmt: skip
    x, y = randn(rng, 8, 56, 56, 64), randn(rng, 8, 1, 1, 64)
    cases.append(
        Case("add", f"{shape_str(x)} + 8x1x1x64 (stride 0)", "torch.add, broadcast", [x, y], node_broadcast,
             lambda t, F, x, y: t.add(x, y))
    )  # fmt: skip
    return cases


def concat_cases(rng, mpsnn, torch) -> list[Case]:
    def node(m, *srcs):
        return m.MPSNNConcatenationNode(sources=list(srcs))

    def torch_fn(t, F, *xs):
        return t.cat(xs, 1)

    cases = []
    for xs in ([randn(rng, 8, 56, 56, 64) for _ in range(2)], [randn(rng, 8, 56, 56, 37), randn(rng, 8, 56, 56, 27)],
               [randn(rng, 8, 56, 56, 4) for _ in range(4)], [randn(rng, 1, 224, 224, 3) for _ in range(3)]):  # fmt: skip
        # Every source but the last starts at a multiple of 4 (nodes.md 12.1); the gaps are 0.
        starts = np.cumsum([0] + [-(-x.shape[3] // 4) * 4 for x in xs[:-1]])
        channels = np.concatenate([s + np.arange(x.shape[3]) for s, x in zip(starts, xs, strict=True)])
        cases.append(
            Case("concat", " + ".join(shape_str(x) for x in xs), "torch.cat", xs, node, torch_fn, channels=channels)
        )
    return cases


def instance_norm_cases(rng, mpsnn, torch) -> list[Case]:
    cases = []
    for x in (randn(rng, 8, 56, 56, 64, scale=2, offset=0.5), randn(rng, 1, 224, 224, 3, scale=2, offset=0.5)):
        c = x.shape[3]
        gamma, beta = randn(rng, c), randn(rng, c)
        ds = mpsnn.ArrayInstanceNormalizationDataSource(gamma, beta, epsilon=1e-5)
        g_t, b_t = torch.from_numpy(gamma), torch.from_numpy(beta)
        cases.append(
            Case("instance_norm", shape_str(x), "F.instance_norm", [x],
                 lambda m, s, ds=ds: m.MPSCNNInstanceNormalizationNode(s, ds),
                 lambda t, F, x, g=g_t, b=b_t: F.instance_norm(x, weight=g, bias=b, eps=1e-5), rtol=1e-4)
        )  # fmt: skip
    return cases


def overhead_cases(rng, mpsnn, torch) -> list[Case]:
    """A one-pixel ReLU (a oneDNN kernel, not our own): the fixed cost of one call of each."""
    x = randn(rng, 1, 1, 1, 4)
    return [
        Case("overhead", "1x1x1x4 ReLU (per-call cost)", "torch.relu", [x],
             lambda m, s: m.MPSCNNNeuronReLUNode(s), lambda t, F, x: t.relu(x), layouts=("contiguous",))
    ]  # fmt: skip


# op group -> builder; the ops of a group are the Case.op values it makes.
GROUPS: dict[str, Callable[..., list[Case]]] = {
    "overhead": overhead_cases,
    "spatial_norm": spatial_norm_cases,
    "local_contrast_norm": lcn_cases,
    "l2_pool": l2_pool_cases,
    "scale": scale_cases,
    "binary_conv": binary_conv_cases,
    "soft_sign": soft_sign_cases,
    "add": add_cases,
    "concat": concat_cases,
    "instance_norm": instance_norm_cases,
    "prelu": prelu_cases,
    "power": power_cases,
}


def make_cases(mpsnn: Any, torch: Any, seed: int) -> list[Case]:
    rng = np.random.default_rng(seed)
    cases = []
    for group, build in GROUPS.items():
        for c in build(rng, mpsnn, torch):
            c.group = group
            cases.append(c)
    return cases


def selected(case: Case, wanted: list[str]) -> bool:
    """--ops names groups (``scale``), ops (``binary_conv_xnor``) or prefixes of ops (``binary``)."""
    return not wanted or any(case.group == w or case.op.startswith(w) for w in wanted)


# --------------------------------------------------------------------------------------------------
# Runners
# --------------------------------------------------------------------------------------------------


def mpsnn_runner(mpsnn: Any, device: Any, case: Case) -> Callable[[Any], Any]:
    nodes = [mpsnn.MPSNNImageNode() for _ in case.inputs]
    graph = mpsnn.MPSNNGraph(device, case.node(mpsnn, *nodes).result_image)
    inputs = case.inputs

    def run(_: Any = None) -> Any:
        return graph.run(inputs)

    return run


def torch_runner(torch: Any, case: Case, layout: str) -> Callable[[Any], Any]:
    """The PyTorch call on the NHWC inputs viewed as NCHW (memory stays channels_last) or on
    contiguous NCHW copies made here, outside the timed call."""
    import torch.nn.functional as F

    ts = [torch.from_numpy(x).permute(0, 3, 1, 2) for x in case.inputs]
    if layout == "contiguous":
        ts = [t.contiguous() for t in ts]
    fn = case.torch_fn

    def run(_: Any = None) -> Any:
        with torch.inference_mode():
            return fn(torch, F, *ts)

    return run


def torch_to_nhwc(y: Any, n: int) -> np.ndarray:
    y = y.detach()
    return (y.permute(0, 2, 3, 1) if y.dim() == 4 else y.reshape(n, 1, 1, -1)).contiguous().numpy()


def check_agreement(case: Case, mps_run: Callable, torch_run: Callable) -> dict[str, Any]:
    got = np.array(mps_run().numpy(), dtype=np.float32)
    want = torch_to_nhwc(torch_run(), got.shape[0])
    if case.channels is not None:
        got = got[..., case.channels]
    if got.shape != want.shape:
        return {"error": f"result shapes differ: mpsnn {got.shape}, PyTorch {want.shape}", "ok": False}
    diff = np.abs(got.astype(np.float64) - want)
    scale = float(np.abs(want).max()) if want.size else 0.0
    max_abs = float(diff.max()) if diff.size else 0.0
    tol = case.rtol * max(1.0, scale)
    return {
        "max_abs_diff": max_abs,
        "max_abs_result": scale,
        "tolerance": tol if case.same_math else None,
        "same_math": case.same_math,
        "ok": bool(max_abs <= tol) if case.same_math else True,
    }


def pick_layout(torch: Any, case: Case, trial_s: float) -> tuple[str, Callable]:
    """The memory format in which PyTorch runs this case fastest (short alternating trials)."""
    runners = {layout: torch_runner(torch, case, layout) for layout in case.layouts}
    if len(runners) == 1:
        return next(iter(runners.items()))
    times: dict[str, list[float]] = {layout: [] for layout in runners}
    for run in runners.values():
        run()
    t_end = time.perf_counter() + trial_s
    while time.perf_counter() < t_end or min(len(v) for v in times.values()) < 3:
        for layout, run in runners.items():
            t0 = time.perf_counter()
            run()
            times[layout].append(time.perf_counter() - t0)
    best = min(times, key=lambda k: statistics.median(times[k]))
    return best, runners[best]


# --------------------------------------------------------------------------------------------------
# Per case
# --------------------------------------------------------------------------------------------------


def bench_case(case: Case, mods: dict[str, Any], device: Any, settings: dict[str, Any]) -> dict[str, Any]:
    torch = mods["torch"]
    entry: dict[str, Any] = {
        "id": case.id,
        "op": case.op,
        "params": case.params,
        "input_shapes": [list(x.shape) for x in case.inputs],
        "torch_op": case.torch_op,
    }
    try:
        mps_run = mpsnn_runner(mods["mpsnn"], device, case)
        layout, torch_run = pick_layout(torch, case, settings["layout_trial_s"])
        entry["torch_layout"] = layout
        entry["agreement"] = check_agreement(case, mps_run, torch_run)
    except Exception as e:
        entry["error"] = f"{type(e).__name__}: {e}"
        return entry
    # Another job holding a core for a while slows whichever framework runs then, by up to 30x:
    # a case whose samples spread too far (median / best of either framework) is measured again,
    # and the attempt that spread least is kept.
    attempts = []
    for _ in range(1 + settings["retries"]):
        contenders = [Contender("mpsnn", mps_run), Contender("torch", torch_run)]
        time_round_robin(
            contenders, None, settings["rounds"], settings["warmup_s"], settings["target_sample_s"], settings["gap_s"]
        )
        attempts.append((spread(contenders), contenders))
        if attempts[-1][0] <= settings["max_spread"]:
            break
    entry["spread"], contenders = min(attempts, key=lambda a: a[0])
    entry["attempts"] = len(attempts)
    entry["mpsnn"] = H.timing(contenders[0])
    entry["torch"] = H.timing(contenders[1])
    entry["speedup"] = H.round_ratio(contenders[0], contenders[1])
    return entry


def spread(contenders: list[Contender]) -> float:
    """The largest median / best sample time of the contenders (inf if one failed)."""
    if any(c.error or not c.sample_s for c in contenders):
        return float("inf")
    return max(statistics.median(c.sample_s) / min(c.sample_s) for c in contenders)


def print_entry(e: dict[str, Any]) -> None:
    head = f"  {e['op']:22s} {e['params']:38s}"
    if "error" in e:
        print(f"{head} error: {e['error']}")
        return
    a = e["agreement"]
    if "error" in a:
        agree = a["error"]
    else:
        agree = f"diff {a['max_abs_diff']:.1e}" + ("" if a["ok"] else " MISMATCH") + ("" if a["same_math"] else " (~)")
    t = [e[k]["time_ms"]["median"] if "time_ms" in e[k] else float("nan") for k in ("mpsnn", "torch")]
    s = e["speedup"]
    print(
        f"{head} mpsnn {t[0]:8.3f} ms  torch {t[1]:8.3f} ms ({e['torch_layout']:13s})  "
        f"x{s if s is not None else float('nan'):.2f}  {agree}  spread {e['spread']:.2f}"
        + (f" after {e['attempts']} attempts" if e["attempts"] > 1 else "")
    )
    sys.stdout.flush()


# --------------------------------------------------------------------------------------------------
# README table
# --------------------------------------------------------------------------------------------------


def readme_section(res: dict[str, Any]) -> str:
    s = res["settings"]
    lines = [
        *H.readme_header(res, f"{s['rounds']} alternating rounds per framework, medians"),
        "",
        "Time per call, ms (lower is better); speed-up = PyTorch time / mpsnn time, median of per-round "
        "ratios (≥ 1: meets the target). mpsnn times are whole `graph.run` calls (see the first row for "
        "the fixed cost of one). Layout: the PyTorch input's memory format (cl = channels_last view of "
        "the NHWC data, nchw = contiguous copy made beforehand), whichever was faster. Diff: max abs "
        "diff of the results (~: PyTorch computes a different filter; not checked). A case whose "
        f"samples spread more than {s['max_spread']}x (median / best, either framework: another job "
        f"took a core) was measured again, up to {s['retries']} times, keeping the attempt that spread "
        "least; * marks a case still that noisy.",
        "",
        "| Op | Shape (N×H×W×C), parameters | PyTorch op | mpsnn ms | PyTorch ms | speed-up | layout | diff |",
        "|---|---|---|---:|---:|---:|---|---:|",
    ]

    def ms(r: dict[str, Any] | None) -> str:
        if r is None or "error" in r:
            return "error"
        v = r["time_ms"]["median"]
        return f"{v:.3f}" if v < 10 else f"{v:.2f}"

    for e in res["cases"]:
        if "error" in e:
            lines.append(f"| {e['op']} | {e['params']} | {e['torch_op']} | error | | | | {e['error']} |")
            continue
        a = e["agreement"]
        diff = a.get("error") or (
            f"{a['max_abs_diff']:.1e}" + ("" if a["ok"] else " **FAIL**") + ("" if a["same_math"] else " ~")
        )
        sp = "—" if e["speedup"] is None else f"{e['speedup']:.2f}"
        if e["spread"] > s["max_spread"]:
            sp += " *"
        layout = {"channels_last": "cl", "contiguous": "nchw"}[e["torch_layout"]]
        lines.append(
            f"| {e['op']} | {e['params']} | {e['torch_op']} | {ms(e.get('mpsnn'))} | {ms(e.get('torch'))} | "
            f"{sp} | {layout} | {diff} |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------


def main(args: argparse.Namespace) -> int:
    load_start = H.load_average()  # before this process adds its own load
    wanted = [w.strip() for w in args.ops.split(",") if w.strip()]
    settings = {
        "threads": args.threads,
        "rounds": args.rounds or (5 if args.quick else 20),
        "warmup_s": 0.2 if args.quick else 0.5,
        "target_sample_s": 0.05 if args.quick else 0.15,
        "gap_s": 0.02,
        "layout_trial_s": 0.1 if args.quick else 0.3,
        "retries": 0 if args.quick else 2,
        "max_spread": 1.25,
        "seed": 0,
        "quick": args.quick,
        "ops": wanted,
    }
    mods, errors = H.import_frameworks(["mpsnn", "torch"], args.threads)
    if errors:
        raise SystemExit("bench_ops needs mpsnn and PyTorch: " + "; ".join(f"{k}: {v}" for k, v in errors.items()))
    cases = [c for c in make_cases(mods["mpsnn"], mods["torch"], settings["seed"]) if selected(c, wanted)]
    if args.list or not cases:
        for c in cases:
            print(f"{c.op:22s} {c.params:40s} vs {c.torch_op}")
        if not cases:
            print(f"no case matches --ops {args.ops!r}")
        return 0 if cases else 2

    res = H.run_record("bench_ops", args.threads, mods, load_start)
    res["settings"] = settings
    res["mpsnn_build"] = H.mpsnn_build_info(mods["mpsnn"])
    res["cases"] = []
    H.warn_if_busy(res)
    device = mods["mpsnn"].MTLCreateSystemDefaultDevice()
    for case in cases:
        entry = bench_case(case, mods, device, settings)
        res["cases"].append(entry)
        print_entry(entry)

    failed = [e["id"] for e in res["cases"] if "error" in e or not e["agreement"].get("ok", False)]
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.update_readme:
        H.replace_readme_section(BEGIN, END, readme_section(res))
    if failed:
        print("outputs disagree beyond the tolerance or failed to run: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
