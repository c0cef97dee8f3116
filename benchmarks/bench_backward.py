#!/usr/bin/env python
"""Backward ops on the CPU: one forward + backward step of an op in mpsnn against PyTorch autograd.

    python benchmarks/bench_backward.py [--rounds 10] [--threads 2] [--ops conv,pool]

Each case is the backward step of one op for a fixed incoming gradient G: in mpsnn a graph of the
forward node and its gradient node (``forward.gradient_filter(with_source=g)``; the loss case is a
loss node, its own gradient) run with ``graph.run``, which also runs the forward step where the
gradient needs its state (max pooling's arg-max, batch normalization's batch statistics, the loss
value); in PyTorch ``torch.autograd.grad(y, inputs, G, retain_graph=True)`` on a forward pass made
once beforehand (channels_last), i.e. its backward alone. The loss node computes loss value and
gradient in one step, so softmax cross entropy has two rows: against PyTorch's backward alone
("bwd alone", the subtraction from the softmax its forward saved) and against its forward and
backward of ``F.cross_entropy`` timed together ("fwd+bwd", like for like; only like-for-like
rows enter the geometric mean). Every gradient the case names is computed
on both sides (convolution: dL/dx, dL/dW, db; batch norm: dL/dx, dγ, dβ with batch statistics).
The gradients are compared first (max abs difference); timing as in bench_ops.py (_harness.py):
one process, warm-up, alternating rounds, medians, speed-up = median of per-round ratios
PyTorch time / mpsnn time (> 1: mpsnn faster).
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import _harness as H
from _harness import Contender, time_round_robin


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ops", default="", help="comma-separated subset of case names")
    return p.parse_args()


ARGS = parse_args()
H.set_thread_env(ARGS.threads)

import numpy as np  # noqa: E402

HWC = None  # set in main (mpsnn's MPSDataLayout)


class Handle:
    def __init__(self, name: str):
        self.name = name

    def label(self) -> str:
        return self.name


@dataclass
class Case:
    name: str
    shape: str
    mpsnn: Callable[[], np.ndarray]   # one training step, returns dL/dx (NHWC)
    torch: Callable[[], np.ndarray]
    torch_label: str = ""             # what the PyTorch side times when it is not the backward alone


def ordered(graph: Any, arrays: dict[str, np.ndarray]) -> list[np.ndarray]:
    return [arrays[h.label()] for h in graph.source_image_handles]


def nchw(torch: Any, a: np.ndarray, grad: bool = False) -> Any:
    t = torch.from_numpy(a).permute(0, 3, 1, 2)  # channels_last view of the NHWC data
    return t.detach().requires_grad_(grad)


def gradient_case(m: Any, torch: Any, name: str, x: np.ndarray, g: np.ndarray, forward: Callable[[Any], Any],
                  torch_forward: Callable[[Any], Any], params: Callable[[], list[Any]] = lambda: [],
                  export: bool = False) -> Case:
    xn = m.MPSNNImageNode(handle=Handle("x"))
    gn = m.MPSNNImageNode(handle=Handle("g"))
    node = forward(xn)
    grad = node.gradient_filter(with_source=gn)
    if export:
        grad.result_state.export_from_graph = True
    graph = m.MPSNNGraph(m.MTLDevice("cpu"), grad.result_image)
    feed = ordered(graph, {"x": x, "g": g})

    def ours() -> np.ndarray:
        states: list[Any] = []
        return graph.run(feed, destination_states=states).numpy()

    xt, gt = nchw(torch, x, True), nchw(torch, g)
    ps = params()

    y = torch_forward(xt)  # once: PyTorch's timed call is its backward alone

    def theirs() -> np.ndarray:
        grads = torch.autograd.grad(y, [xt] + ps, gt, retain_graph=True)
        return grads[0].permute(0, 2, 3, 1).numpy()

    return Case(name, "x".join(map(str, x.shape)), ours, theirs)


def make_cases(m: Any, torch: Any) -> list[Case]:
    F = torch.nn.functional
    rng = np.random.default_rng(0)
    r = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    cases = []

    # 3x3 convolution, 64 -> 64, data and weight gradients
    n, h, w, c = 4, 56, 56, 64
    wt, bt = (r(c, 3, 3, c) * 0.05), r(c) * 0.1
    d = m.MPSCNNConvolutionDescriptor(kernel_width=3, kernel_height=3, input_feature_channels=c,
                                      output_feature_channels=c)
    ds = m.ArrayConvolutionDataSource(d, wt, bt)
    tw = torch.from_numpy(wt).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last).requires_grad_()
    tb = torch.from_numpy(bt).requires_grad_()
    cases.append(gradient_case(m, torch, "conv3x3 dX,dW,db", r(n, h, w, c), r(n, h, w, c),
                               lambda s: m.MPSCNNConvolutionNode(source=s, weights=ds),
                               lambda t: F.conv2d(t, tw, tb, padding=1), lambda: [tw, tb], export=True))
    # 2x2 max pooling, stride 2
    cases.append(gradient_case(m, torch, "max pool 2x2", r(n, h, w, c), r(n, h // 2, w // 2, c),
                               lambda s: m.MPSCNNPoolingMaxNode(source=s, filter_size=2),
                               lambda t: F.max_pool2d(t, 2)))
    # batch normalization with batch statistics, dX, dγ, dβ
    gamma, beta = (1 + 0.1 * r(c)), 0.1 * r(c)
    bn = m.ArrayBatchNormalizationDataSource(gamma, beta, mean=np.zeros(c, np.float32),
                                             variance=np.ones(c, np.float32), epsilon=1e-5)
    tg, tbeta = torch.from_numpy(gamma).requires_grad_(), torch.from_numpy(beta).requires_grad_()
    cases.append(gradient_case(m, torch, "batch norm (training)", r(n, h, w, c), r(n, h, w, c),
                               lambda s: m.MPSCNNBatchNormalizationNode(source=s, data_source=bn),
                               lambda t: F.batch_norm(t, None, None, tg, tbeta, training=True, eps=1e-5),
                               lambda: [tg, tbeta], export=True))
    # cross-channel LRN, window 5
    n2, h2, w2, c2 = 4, 28, 28, 64

    def lrn(s: Any) -> Any:
        k = m.MPSCNNCrossChannelNormalizationNode(source=s, kernel_size=5)
        k.alpha, k.beta, k.delta = 1e-4, 0.75, 1.0
        return k

    cases.append(gradient_case(m, torch, "LRN 5", r(n2, h2, w2, c2), r(n2, h2, w2, c2), lrn,
                               lambda t: F.local_response_norm(t, 5, alpha=1e-4, beta=0.75, k=1.0)))
    # bilinear upsampling x2 (align corners off)
    cases.append(gradient_case(m, torch, "bilinear x2", r(n2, h2, w2, 32), r(n2, 2 * h2, 2 * w2, 32),
                               lambda s: m.MPSCNNUpsamplingBilinearNode(source=s, integer_scale_factor_x=2,
                                                                        integer_scale_factor_y=2,
                                                                        align_corners=False),
                               lambda t: F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)))
    # softmax cross entropy (sum), 256 x 1000 logits: the loss node is its own gradient
    logits = r(256, 1, 1, 1000)
    target = np.zeros_like(logits)
    target[np.arange(256), 0, 0, rng.integers(0, 1000, 256)] = 1.0
    xn = m.MPSNNImageNode()
    desc = m.MPSCNNLossDescriptor(m.MPSCNNLossType.soft_max_cross_entropy, m.MPSCNNReductionType.sum)
    loss = m.MPSCNNLossNode(source=xn, loss_descriptor=desc)
    lgraph = m.MPSNNGraph(m.MTLDevice("cpu"), loss.result_image)
    labels = m.MPSCNNLossLabels(m.MTLDevice("cpu"), m.MPSCNNLossDataDescriptor(target, HWC, (1, 1, 1000)))
    lt = torch.from_numpy(logits.reshape(256, 1000)).requires_grad_()
    tt = torch.from_numpy(target.reshape(256, 1000))

    ce = F.cross_entropy(lt, tt, reduction="sum")

    def loss_theirs() -> np.ndarray:  # backward alone, on the forward made above
        (dx,) = torch.autograd.grad(ce, [lt], retain_graph=True)
        return dx.numpy().reshape(256, 1, 1, 1000)

    def loss_theirs_full() -> np.ndarray:  # like for like: forward (log_softmax + nll) and backward
        value = F.cross_entropy(lt, tt, reduction="sum")
        (dx,) = torch.autograd.grad(value, [lt])
        return dx.numpy().reshape(256, 1, 1, 1000)

    def loss_ours() -> np.ndarray:
        return lgraph.run([logits], source_states=[labels]).numpy()

    cases.append(Case("softmax CE, bwd alone", "256x1x1x1000", loss_ours, loss_theirs, "backward alone"))
    cases.append(Case("softmax CE, fwd+bwd", "256x1x1x1000", loss_ours, loss_theirs_full, "forward + backward"))
    return cases


def main() -> int:
    global HWC
    mods, errors = H.import_frameworks(["mpsnn", "torch"], ARGS.threads)
    if errors:
        print("unavailable:", errors)
        return 1
    m, torch = mods["mpsnn"], mods["torch"]
    HWC = m.MPSDataLayout.HeightxWidthxFeatureChannels
    wanted = [w for w in ARGS.ops.split(",") if w]
    print(f"{ARGS.threads} threads, {ARGS.rounds} rounds; torch {torch.__version__}; load {H.load_average()}")
    print(f"{'case':24} {'input':>14} {'mpsnn ms':>9} {'torch ms':>9} {'speed-up':>8} {'max|diff|':>9}")
    worst = []
    for case in make_cases(m, torch):
        if wanted and not any(w in case.name for w in wanted):
            continue
        ours, theirs = case.mpsnn(), case.torch()
        diff = float(np.abs(np.asarray(ours, np.float64) - theirs).max())
        cs = [Contender("mpsnn", lambda _: case.mpsnn()), Contender("torch", lambda _: case.torch())]
        time_round_robin(cs, None, ARGS.rounds, 0.3, 0.2, 0.05)
        a, b = (statistics.median(c.sample_s) * 1e3 for c in cs)
        ratio = H.round_ratio(cs[0], cs[1])
        if case.torch_label != "backward alone":  # the like-for-like rows make the mean
            worst.append(ratio)
        print(f"{case.name:24} {case.shape:>14} {a:9.2f} {b:9.2f} {ratio:8.2f} {diff:9.1e}", flush=True)
    print(f"geometric mean speed-up {float(np.exp(np.mean(np.log(worst)))):.2f} (like-for-like rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
