#!/usr/bin/env python
"""One training iteration on the CPU: forward, loss, backward and an Adam update of every parameter,
in mpsnn against the same step in PyTorch.

    python benchmarks/bench_train.py [--cases mnist:40,mnist:256,resnet18:16] [--rounds 7]
                                     [--resnet-size 224] [--threads 2] [--profile] [--json PATH]

Networks (weights from models.py, the same seeded values on both sides):

* ``mnist``: the network of Apple's training sample (graph.md §8.1) without its dropout node
  (conv 5x5 1->32, ReLU, max pool, conv 5x5 32->64, ReLU, max pool, fully connected 3136->1024,
  ReLU, fully connected 1024->10), 28x28x1 float32 input.
* ``resnet18``: torchvision's ResNet-18 with batch normalization in training mode (batch statistics;
  gamma and beta trained, running statistics updated with momentum 0.1 on both sides), 1000
  classes, ``--resnet-size`` square input (default 224).

Loss: softmax cross entropy against one-hot labels, reduction sum with weight 1/batch (PyTorch:
``cross_entropy(reduction="sum") / batch``, i.e. the mean). Optimizer: Adam, learning rate 1e-3,
betas (0.9, 0.999), epsilon 1e-8, one optimizer per data source in mpsnn (an
``MPSNNOptimizerAdam`` handed to ``ArrayConvolutionDataSource`` / ``ArrayBatchNormalizationDataSource``
with ``optimizer=``), ``torch.optim.Adam`` over all parameters in PyTorch.

mpsnn step: the inference chain ends in an ``MPSCNNLossNode``; ``loss.training_graph()`` gives one
terminal (the first convolution's gradient), whose result makes an ``MPSNNGraph`` built with
``result_image_is_needed=False`` (nothing reads dL/d(input); PyTorch does not compute it either);
per step the graph is encoded into a new command buffer with the batch and its
``MPSCNNLossLabels``, committed and waited for. The data sources' GPU-style updates
(``update_with_command_buffer``) run the Adam update inside that command buffer. PyTorch step:
``zero_grad(set_to_none=True)``, forward (eager, channels_last, float32, ``.train()``), loss,
``backward()``, ``optimizer.step()``.

Before timing, one step of each from the same weights and batch is compared (the correctness gate):
the loss values, every updated parameter (in units of the learning rate: Adam's first step moves
each weight by about the learning rate) and the running statistics. The script exits with status 1
when the gate fails. Timing as in the other scripts (_harness.py): one process, 2 threads for both,
warm-up, alternating rounds of one sample each (the order rotating), medians; speed-up = median of
the per-round ratios PyTorch time / mpsnn time (> 1: mpsnn faster).

``--profile`` adds, per case, the parts of a step on both sides: a forward pass alone (mpsnn: an
inference graph of the same network, batch norm folded; PyTorch: ``torch.no_grad()`` in train mode)
and forward + backward without the update (mpsnn: the same training graph over data sources
without optimizer; PyTorch: the step without ``optimizer.step()``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import _harness as H
from _harness import Contender, time_round_robin

DEFAULT_CASES = "mnist:40,mnist:256,resnet18:16"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", default=DEFAULT_CASES, help=f"model:batch list (default {DEFAULT_CASES})")
    p.add_argument("--rounds", type=int, default=7, help="alternating rounds per case (default 7)")
    p.add_argument("--resnet-size", type=int, default=224, help="ResNet input height and width (multiple of 32)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--profile", action="store_true", help="also time forward alone and forward + backward")
    p.add_argument("--check-only", action="store_true", help="run the correctness gate, no timing")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON")
    return p.parse_args()


ARGS = parse_args()
H.set_thread_env(ARGS.threads)

import numpy as np  # noqa: E402

import models  # noqa: E402

ADAM_BETA1, ADAM_BETA2, ADAM_EPS = 0.9, 0.999, 1e-8  # MPSNNOptimizerAdam's defaults, given to PyTorch too
# MPS's Adam adds epsilon to sqrt(v), PyTorch to sqrt(v / (1 - beta2^t)) (both then scale by the bias
# corrections): the same function at step t when PyTorch's epsilon is MPS's / sqrt(1 - beta2^t). The
# gate compares one step, so its PyTorch optimizer gets this epsilon (3.2e-7, not 1e-8; with 1e-8 about
# 1 % of the fc1 weights, those with |gradient| < 1e-6, would move by up to 0.7 lr less in mpsnn).
# The timed PyTorch step uses 1e-8 (the value does not change its speed).
GATE_TORCH_EPS = ADAM_EPS / (1 - ADAM_BETA2) ** 0.5

# Gate tolerances (float32 on both sides, different summation orders).
LOSS_RTOL = 1e-4
STAT_RTOL = 1e-4
# An updated weight "differs" when the two sides disagree by more than this many learning rates.
# Adam's first step is lr * m / (sqrt(v) + eps) ~ lr * sign(g): a gradient within float32 noise of
# zero may flip its sign (and so the weight by 2 lr); at most MISMATCH_FRACTION of them may.
WEIGHT_ATOL_LR = 0.01
MISMATCH_FRACTION = 1e-3


@dataclass
class Case:
    model: str
    batch: int
    size: int  # input height = width
    x: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)  # class indices (batch,)

    @property
    def name(self) -> str:
        return f"{self.model} b{self.batch} {self.size}x{self.size}"


def make_case(model: str, batch: int) -> Case:
    size = ARGS.resnet_size if model != "mnist" else models.INPUT_HWC[model][0]
    c = models.INPUT_HWC[model][2]
    rng = np.random.default_rng(1)
    x = np.ascontiguousarray(rng.standard_normal((batch, size, size, c)).astype(np.float32))
    labels = rng.integers(0, models.NUM_CLASSES[model], batch)
    return Case(model, batch, size, x, labels)


# --------------------------------------------------------------------------------------------------
# mpsnn
# --------------------------------------------------------------------------------------------------


class MpsnnStep:
    """The training graph of one case and its per-step encode (see the module docstring)."""

    def __init__(self, m: Any, case: Case, w: models.Weights, trainable: bool = True) -> None:
        self.m = m
        device = m.MTLCreateSystemDefaultDevice()
        optimizer = (lambda: m.MPSNNOptimizerAdam(device, learning_rate=ARGS.lr)) if trainable else None
        _, logits, self.sources = models.mpsnn_logits(case.model, w, optimizer=optimizer, input_size=case.size)
        for ds in self.sources.values() if trainable else ():
            o = ds.optimizer
            assert np.allclose([o.beta1, o.beta2, o.epsilon], [ADAM_BETA1, ADAM_BETA2, ADAM_EPS], rtol=1e-6, atol=0), o
        desc = m.MPSCNNLossDescriptor(m.MPSCNNLossType.soft_max_cross_entropy, m.MPSCNNReductionType.sum)
        desc.weight = 1.0 / case.batch
        loss = m.MPSCNNLossNode(source=logits, loss_descriptor=desc)
        terminals = loss.training_graph()
        if not terminals or len(terminals) != 1:
            raise RuntimeError(f"{case.name}: training_graph() returned {terminals!r}; expected one terminal")
        self.graph = m.MPSNNGraph(device, terminals[0].result_image, False)
        self.graph.format = m.MPSImageFeatureChannelFormat.float32
        classes = models.NUM_CLASSES[case.model]
        onehot = np.zeros((case.batch, 1, 1, classes), np.float32)
        onehot[np.arange(case.batch), 0, 0, case.labels] = 1.0
        hwc = m.MPSDataLayout.HeightxWidthxFeatureChannels
        self.labels = m.MPSCNNLossLabels(device, m.MPSCNNLossDataDescriptor(onehot, hwc, (1, 1, classes)))
        self.queue = device.make_command_queue()
        self.x = case.x

    def step(self) -> None:
        cb = self.queue.make_command_buffer()
        self.graph.encode(cb, [self.x], source_states=[self.labels])
        cb.commit()
        cb.wait_until_completed()
        if cb.error is not None:
            raise RuntimeError(f"mpsnn training step failed: {cb.error}")

    def loss(self) -> float:
        return float(self.labels.loss_image().numpy().astype(np.float64).sum())


def mpsnn_forward(m: Any, case: Case, w: models.Weights) -> Any:
    """Inference graph of the same network (softmax at the end, batch norm folded), for --profile."""
    graph = models.build_mpsnn(case.model, w) if case.size == models.INPUT_HWC[case.model][0] else None
    if graph is None:
        _, logits, _ = models.mpsnn_logits(case.model, w, input_size=case.size)
        sm = m.MPSCNNSoftMaxNode(source=logits)
        graph = m.MPSNNGraph(m.MTLCreateSystemDefaultDevice(), sm.result_image, True)
        graph.format = m.MPSImageFeatureChannelFormat.float32
    return lambda: graph.run([case.x])


# --------------------------------------------------------------------------------------------------
# PyTorch
# --------------------------------------------------------------------------------------------------


class TorchStep:
    def __init__(self, torch: Any, case: Case, w: models.Weights, eps: float = ADAM_EPS) -> None:
        self.torch = torch
        self.F = torch.nn.functional
        self.net = models.build_torch(case.model, w, softmax=False).train()
        self.opt = torch.optim.Adam(self.net.parameters(), lr=ARGS.lr, betas=(ADAM_BETA1, ADAM_BETA2), eps=eps)
        self.x = torch.from_numpy(case.x)  # NHWC; the model's first op is a permute (channels_last view)
        self.y = torch.from_numpy(case.labels)
        self.batch = case.batch
        self.last_loss = float("nan")

    def _loss(self) -> Any:
        return self.F.cross_entropy(self.net(self.x), self.y, reduction="sum") / self.batch

    def step(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        loss = self._loss()
        loss.backward()
        self.opt.step()
        self.last_loss = float(loss.detach())

    def forward_backward(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        self._loss().backward()

    def forward(self) -> None:
        with self.torch.no_grad():
            self._loss()

    def modules(self) -> dict[str, Any]:
        return {mod.weights_name: mod for mod in self.net.modules() if hasattr(mod, "weights_name")}


# --------------------------------------------------------------------------------------------------
# Correctness gate
# --------------------------------------------------------------------------------------------------


def parameter_pairs(ours: MpsnnStep, theirs: TorchStep) -> list[tuple[str, np.ndarray, np.ndarray, bool]]:
    """(name, mpsnn array, PyTorch array in mpsnn's layout, is a running statistic) for every
    parameter PyTorch has (mpsnn's zero bias of a convolution without bias has no peer: skipped)."""
    torch = theirs.torch
    pairs = []
    for name, mod in theirs.modules().items():
        ds = ours.sources[name]
        if isinstance(mod, torch.nn.BatchNorm2d):
            pairs += [(f"{name}.gamma", ds.gamma(), mod.weight, False), (f"{name}.beta", ds.beta(), mod.bias, False),
                      (f"{name}.mean", ds.mean(), mod.running_mean, True),
                      (f"{name}.var", ds.variance(), mod.running_var, True)]
            continue
        wt = mod.weight.detach()
        if isinstance(mod, torch.nn.Conv2d):
            wt = wt.permute(0, 2, 3, 1)  # OIHW -> OHWI
        pairs.append((f"{name}.weight", ds.weights(), wt.reshape(ds.weights().shape), False))
        if mod.bias is not None:
            pairs.append((f"{name}.bias", ds.bias_terms(), mod.bias, False))
    return [(n, np.asarray(a), t.detach().numpy() if hasattr(t, "detach") else np.asarray(t), s)
            for n, a, t, s in pairs]


def check(m: Any, torch: Any, case: Case, w: models.Weights) -> dict[str, Any]:
    """One step on each side from the same weights and batch; compares loss and updated parameters."""
    ours, theirs = MpsnnStep(m, case, w), TorchStep(torch, case, w, eps=GATE_TORCH_EPS)
    ours.step()
    theirs.step()
    l_ours, l_theirs = ours.loss(), theirs.last_loss
    loss_rel = abs(l_ours - l_theirs) / max(abs(l_theirs), 1e-30)
    lr = ARGS.lr
    n_weights = mismatched = 0
    max_diff_lr = 0.0
    moved = 0.0  # largest update on the mpsnn side, in learning rates (about 1 expected)
    stat_rel = 0.0
    worst = ""
    for name, a, t, is_stat in parameter_pairs(ours, theirs):
        a64, t64 = a.astype(np.float64).ravel(), t.astype(np.float64).ravel()
        if is_stat:
            stat_rel = max(stat_rel, float(np.max(np.abs(a64 - t64) / np.maximum(np.abs(t64), 1e-3))))
            continue
        d = np.abs(a64 - t64) / lr
        n_weights += d.size
        mismatched += int(np.count_nonzero(d > WEIGHT_ATOL_LR))
        if d.max() > max_diff_lr:
            max_diff_lr, worst = float(d.max()), name
        w0 = w[name]  # the initial value (the weights dict uses the same names)
        moved = max(moved, float(np.abs(a64 - w0.astype(np.float64).ravel()).max()) / lr)
    ok = (loss_rel <= LOSS_RTOL and mismatched <= MISMATCH_FRACTION * n_weights and stat_rel <= STAT_RTOL
          and 0.5 <= moved <= 1.5)
    res = {"loss_mpsnn": l_ours, "loss_torch": l_theirs, "loss_rel_diff": loss_rel, "weights": n_weights,
           "weights_differing": mismatched, "max_weight_diff_lr": max_diff_lr, "worst": worst,
           "largest_update_lr": moved, "running_stat_rel_diff": stat_rel, "ok": ok}
    print(f"  gate {case.name}: loss mpsnn {l_ours:.7g} torch {l_theirs:.7g} (rel diff {loss_rel:.1e}); "
          f"updated weights: {mismatched} of {n_weights} differ by > {WEIGHT_ATOL_LR} lr "
          f"(max {max_diff_lr:.3g} lr, {worst}); largest update {moved:.3f} lr; running statistics rel diff "
          f"{stat_rel:.1e} -> {'ok' if ok else 'FAILED'}", flush=True)
    return res


# --------------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------------


def timed(pairs: list[tuple[str, Any]]) -> list[Contender]:
    cs = [Contender(name, lambda _, f=f: f()) for name, f in pairs]
    time_round_robin(cs, None, ARGS.rounds, 0.5, 0.25, 0.05)
    for c in cs:
        if c.error:
            raise RuntimeError(f"{c.name}: {c.error}")
    return cs


def ms(c: Contender) -> float:
    return statistics.median(c.sample_s) * 1e3


def run_case(m: Any, torch: Any, case: Case) -> dict[str, Any]:
    w = models.make_weights(case.model)
    res: dict[str, Any] = {"case": case.name, "model": case.model, "batch": case.batch, "size": case.size}
    res["gate"] = check(m, torch, case, w)
    if ARGS.check_only:
        return res
    ours, theirs = MpsnnStep(m, case, w), TorchStep(torch, case, w)
    t0 = time.perf_counter()
    a, b = timed([("mpsnn", ours.step), ("torch", theirs.step)])
    res.update(mpsnn_ms=ms(a), torch_ms=ms(b), speedup=H.round_ratio(a, b),
               mpsnn_spread=ms(a) / (min(a.sample_s) * 1e3), torch_spread=ms(b) / (min(b.sample_s) * 1e3),
               seconds=time.perf_counter() - t0)
    print(f"  step {case.name}: mpsnn {res['mpsnn_ms']:.2f} ms, torch {res['torch_ms']:.2f} ms, "
          f"speed-up {res['speedup']:.2f} (spread {res['mpsnn_spread']:.2f} / {res['torch_spread']:.2f}, "
          f"{res['seconds']:.0f} s)", flush=True)
    if ARGS.profile:
        fb = MpsnnStep(m, case, w, trainable=False)
        parts = timed([("mpsnn forward", mpsnn_forward(m, case, w)), ("torch forward", theirs.forward),
                       ("mpsnn fwd+bwd", fb.step), ("torch fwd+bwd", theirs.forward_backward)])
        res["profile_ms"] = {c.name: ms(c) for c in parts}
        res["profile_ms"]["mpsnn step"], res["profile_ms"]["torch step"] = res["mpsnn_ms"], res["torch_ms"]
        p = res["profile_ms"]
        print(f"  parts {case.name} (ms): forward mpsnn {p['mpsnn forward']:.2f} torch {p['torch forward']:.2f}; "
              f"fwd+bwd mpsnn {p['mpsnn fwd+bwd']:.2f} torch {p['torch fwd+bwd']:.2f}; "
              f"update (step - fwd+bwd) mpsnn {p['mpsnn step'] - p['mpsnn fwd+bwd']:.2f} "
              f"torch {p['torch step'] - p['torch fwd+bwd']:.2f}", flush=True)
    return res


def main() -> int:
    load = H.load_average()
    mods, errors = H.import_frameworks(["mpsnn", "torch"], ARGS.threads)
    if errors:
        print("unavailable:", errors)
        return 1
    m, torch = mods["mpsnn"], mods["torch"]
    record = H.run_record("bench_train", ARGS.threads, mods, load)
    H.warn_if_busy(record)
    print(f"{ARGS.threads} threads, {ARGS.rounds} rounds, lr {ARGS.lr}")
    cases = []
    for spec in ARGS.cases.split(","):
        model, _, batch = spec.partition(":")
        if model not in ("mnist", "resnet18", "resnet50") or not batch.isdigit():
            raise SystemExit(f"--cases: {spec!r} is not model:batch (models mnist, resnet18, resnet50)")
        cases.append(make_case(model, int(batch)))
    results = []
    failed = False
    for case in cases:
        r = run_case(m, torch, case)
        failed |= not r["gate"]["ok"]
        results.append(r)
    if not ARGS.check_only:
        print()
        print("| Network | Batch | Input | mpsnn ms | PyTorch ms | speed-up |")
        print("|---|---:|---|---:|---:|---:|")
        for r in results:
            print(f"| {r['model']} | {r['batch']} | {r['size']}x{r['size']} | {r['mpsnn_ms']:.1f} | "
                  f"{r['torch_ms']:.1f} | {r['speedup']:.2f} |")
    record["results"] = results
    record["load_average_at_end"] = H.load_average()
    if ARGS.json:
        with open(ARGS.json, "w") as f:
            json.dump(record, f, indent=1)
        print(f"wrote {ARGS.json}")
    if failed:
        print("correctness gate FAILED", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
