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
without optimizer, its gradient states exported so that nothing is pruned; PyTorch: the step
without ``optimizer.step()``).
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
    p.add_argument("--update-readme", action="store_true",
                   help="rewrite the Training step table of benchmarks/README.md")
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
# An updated weight "differs" from the float64 reference when off by more than WEIGHT_ATOL_LR learning
# rates. Adam's first step is lr * m / (sqrt(v) + eps) ~ lr * sign(g): a gradient within float32 error
# of zero may flip its sign (and so the weight by 2 lr). mpsnn may have twice as many such weights
# as PyTorch float32, or MISMATCH_FRACTION of all, whichever is more (see check()).
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

    def __init__(self, m: Any, case: Case, w: models.Weights, trainable: bool = True, sgd: bool = False) -> None:
        """``trainable=False``: data sources without optimizer (no update); ``sgd``: plain SGD with
        learning rate 1 instead of Adam (the gate reads the gradients as w0 - w1)."""
        self.m = m
        device = m.MTLCreateSystemDefaultDevice()
        if not trainable:
            optimizer = None
        elif sgd:
            optimizer = lambda: m.MPSNNOptimizerStochasticGradientDescent(device, learning_rate=1.0)  # noqa: E731
        else:
            optimizer = lambda: m.MPSNNOptimizerAdam(device, learning_rate=ARGS.lr)  # noqa: E731
        _, logits, self.sources = models.mpsnn_logits(case.model, w, optimizer=optimizer, input_size=case.size)
        for ds in self.sources.values() if trainable and not sgd else ():
            o = ds.optimizer
            assert np.allclose([o.beta1, o.beta2, o.epsilon], [ADAM_BETA1, ADAM_BETA2, ADAM_EPS], rtol=1e-6, atol=0), o
        desc = m.MPSCNNLossDescriptor(m.MPSCNNLossType.soft_max_cross_entropy, m.MPSCNNReductionType.sum)
        desc.weight = 1.0 / case.batch
        loss = m.MPSCNNLossNode(source=logits, loss_descriptor=desc)

        def export(gradient_node: Any, *_: Any) -> None:
            # Without updates nothing would need the parameter gradients and the graph may prune the
            # backward pass (graph.md §2.1): exporting them keeps it, as the gradients a step computes.
            st = getattr(gradient_node, "result_state", None)
            if st is not None:
                st.export_from_graph = True

        terminals = loss.training_graph(node_handler=None if trainable else export)
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
        self.graph.encode(cb, [self.x], source_states=[self.labels], destination_states=[])
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


def torch_parameters(theirs: TorchStep) -> dict[str, tuple[np.ndarray, bool]]:
    """{name: (float64 values in mpsnn's layout, flattened; is a running statistic)} of every
    PyTorch parameter and batch-norm running statistic, named as in the weights dict."""
    torch = theirs.torch
    out: dict[str, tuple[np.ndarray, bool]] = {}

    def flat(t: Any) -> np.ndarray:
        return t.detach().double().contiguous().numpy().ravel()

    for name, mod in theirs.modules().items():
        if isinstance(mod, torch.nn.BatchNorm2d):
            out.update({f"{name}.gamma": (flat(mod.weight), False), f"{name}.beta": (flat(mod.bias), False),
                        f"{name}.mean": (flat(mod.running_mean), True), f"{name}.var": (flat(mod.running_var), True)})
            continue
        wt = mod.weight
        if isinstance(mod, torch.nn.Conv2d):
            wt = wt.permute(0, 2, 3, 1)  # OIHW -> OHWI; nn.Linear's rows are OHWI already
        out[f"{name}.weight"] = (flat(wt), False)
        if mod.bias is not None:
            out[f"{name}.bias"] = (flat(mod.bias), False)
    return out


def mpsnn_parameters(ours: MpsnnStep, names: list[str]) -> dict[str, np.ndarray]:
    """The same names from the mpsnn data sources' live arrays (a convolution without bias has a
    zero bias in mpsnn, trained too: PyTorch has no peer for it, so it is not compared)."""
    get = {"weight": "weights", "bias": "bias_terms", "gamma": "gamma", "beta": "beta", "mean": "mean",
           "var": "variance"}
    out = {}
    for n in names:
        layer, kind = n.rsplit(".", 1)
        out[n] = np.asarray(getattr(ours.sources[layer], get[kind])(), np.float64).ravel()
    return out


def differences(side: dict[str, np.ndarray], ref: dict[str, tuple[np.ndarray, bool]]) -> dict[str, Any]:
    """How far one side's updated parameters lie from the float64 reference's."""
    lr = ARGS.lr
    n = differing = 0
    max_lr, worst, stat_rel = 0.0, "", 0.0
    for name, (r, is_stat) in ref.items():
        d = np.abs(side[name] - r)
        if is_stat:
            stat_rel = max(stat_rel, float(np.max(d / np.maximum(np.abs(r), 1e-3))))
            continue
        d /= lr
        n += d.size
        differing += int(np.count_nonzero(d > WEIGHT_ATOL_LR))
        if d.max() > max_lr:
            max_lr, worst = float(d.max()), name
    return {"weights": n, "differing": differing, "fraction": differing / max(n, 1), "max_diff_lr": max_lr,
            "worst": worst, "running_stat_rel_diff": stat_rel}


def check(m: Any, torch: Any, case: Case, w: models.Weights) -> dict[str, Any]:
    """One step from the same weights and batch in mpsnn (float32), PyTorch float32 and PyTorch
    float64 (the reference); mpsnn must be about as close to the reference as PyTorch float32 is.

    Why not mpsnn against PyTorch float32 alone: at these random initial weights ResNet-18's weight
    gradients are ill-conditioned in float32 (batch statistics over few values in the last stage):
    PyTorch's own float32 gradients of layer4 differ from its float64 ones by up to 10 % of the
    tensor's largest gradient, and Adam's first step turns any gradient into about +-lr, so some
    0.1-1 % of the weights move the other way in either float32 implementation."""
    ours = MpsnnStep(m, case, w)
    t32 = TorchStep(torch, case, w, eps=GATE_TORCH_EPS)
    t64 = TorchStep(torch, case, w, eps=GATE_TORCH_EPS)
    t64.net.double()
    t64.x = t64.x.double()
    for s in (ours, t32, t64):
        s.step()
    ref = torch_parameters(t64)
    names = list(ref)
    d_ours = differences(mpsnn_parameters(ours, names), ref)
    d_t32 = differences({k: v for k, (v, _) in torch_parameters(t32).items()}, ref)
    l_ref = t64.last_loss
    loss_rel = {"mpsnn": abs(ours.loss() - l_ref) / abs(l_ref), "torch32": abs(t32.last_loss - l_ref) / abs(l_ref)}
    moved = max(float(np.abs(mpsnn_parameters(ours, [k])[k] - w[k].astype(np.float64).ravel()).max())
                for k, (_, st) in ref.items() if not st) / ARGS.lr
    ok = (loss_rel["mpsnn"] <= LOSS_RTOL
          and d_ours["fraction"] <= max(2 * d_t32["fraction"], MISMATCH_FRACTION)
          and d_ours["running_stat_rel_diff"] <= max(2 * d_t32["running_stat_rel_diff"], STAT_RTOL)
          and 0.5 <= moved <= 1.5)
    res = {"loss_mpsnn": ours.loss(), "loss_torch32": t32.last_loss, "loss_torch64": l_ref, "loss_rel_diff": loss_rel,
           "mpsnn_vs_torch64": d_ours, "torch32_vs_torch64": d_t32, "largest_update_lr": moved, "ok": ok}
    print(f"  gate {case.name}: loss mpsnn {ours.loss():.7g}, torch float32 {t32.last_loss:.7g}, float64 {l_ref:.7g}; "
          f"largest update {moved:.3f} lr", flush=True)
    for label, d, lr_ in (("mpsnn  ", d_ours, loss_rel["mpsnn"]), ("torch32", d_t32, loss_rel["torch32"])):
        print(f"    {label} vs float64: loss rel diff {lr_:.1e}; {d['differing']} of {d['weights']} updated weights "
              f"({100 * d['fraction']:.3f} %) differ by > {WEIGHT_ATOL_LR} lr, max {d['max_diff_lr']:.3g} lr "
              f"({d['worst']}); running statistics rel diff {d['running_stat_rel_diff']:.1e}", flush=True)
    print(f"    -> {'ok' if ok else 'FAILED'}", flush=True)
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
    pairs = [("mpsnn step", ours.step), ("torch step", theirs.step)]
    if ARGS.profile:  # the parts in the same rounds as the steps, so that the machine's slow spells hit all alike
        fb = MpsnnStep(m, case, w, trainable=False)
        pairs += [("mpsnn forward", mpsnn_forward(m, case, w)), ("torch forward", theirs.forward),
                  ("mpsnn fwd+bwd", fb.step), ("torch fwd+bwd", theirs.forward_backward)]
    t0 = time.perf_counter()
    cs = timed(pairs)
    a, b = cs[0], cs[1]
    res.update(mpsnn_ms=ms(a), torch_ms=ms(b), speedup=H.round_ratio(a, b),
               mpsnn_spread=ms(a) / (min(a.sample_s) * 1e3), torch_spread=ms(b) / (min(b.sample_s) * 1e3),
               seconds=time.perf_counter() - t0)
    print(f"  step {case.name}: mpsnn {res['mpsnn_ms']:.2f} ms, torch {res['torch_ms']:.2f} ms, "
          f"speed-up {res['speedup']:.2f} (spread {res['mpsnn_spread']:.2f} / {res['torch_spread']:.2f}, "
          f"{res['seconds']:.0f} s)", flush=True)
    if ARGS.profile:
        res["profile_ms"] = p = {c.name: ms(c) for c in cs}
        print(f"  parts {case.name} (ms): forward mpsnn {p['mpsnn forward']:.2f} torch {p['torch forward']:.2f}; "
              f"fwd+bwd mpsnn {p['mpsnn fwd+bwd']:.2f} torch {p['torch fwd+bwd']:.2f}; "
              f"update (step - fwd+bwd) mpsnn {p['mpsnn step'] - p['mpsnn fwd+bwd']:.2f} "
              f"torch {p['torch step'] - p['torch fwd+bwd']:.2f}", flush=True)
    return res


def readme_body(record: dict[str, Any]) -> str:
    rs = record["results"]
    load_end = record.get("load_average_at_end")
    lines = H.readme_header(record, f"{record['rounds']} alternating rounds per framework, medians")
    if load_end:
        lines[-1] += f"  \nLoad average {load_end[0]:.2f} at the end."
    lines += ["", "Time per training step, ms (lower is better); speed-up = PyTorch time / mpsnn time, median of "
              "per-round ratios (> 1: mpsnn faster). Gate: one step from the same weights against PyTorch float64 "
              "(loss rel diff; updated weights off by > 0.01 lr, mpsnn / PyTorch float32).", "",
              "| Network | Batch | Input | mpsnn ms | PyTorch ms | speed-up | gate: loss rel diff "
              "| gate: weights off |",
              "|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in rs:
        g = r["gate"]
        off = f"{100 * g['mpsnn_vs_torch64']['fraction']:.3f} % / {100 * g['torch32_vs_torch64']['fraction']:.3f} %"
        lines.append(f"| {r['model']} | {r['batch']} | {r['size']}x{r['size']} | {r['mpsnn_ms']:.1f} | "
                     f"{r['torch_ms']:.1f} | {r['speedup']:.2f} | {g['loss_rel_diff']['mpsnn']:.1e} | {off} |")
    if any("profile_ms" in r for r in rs):
        lines += ["", "Parts of a step (`--profile`, timed in the same rounds as the steps), ms: forward alone, "
                  "forward + backward without the update, the whole step (from the table above); mpsnn / PyTorch. "
                  "The update column is a difference of medians: noise can make it small or negative.", "",
                  "| Network | Batch | forward | forward + backward | step | update (step - fwd+bwd) |",
                  "|---|---:|---:|---:|---:|---:|"]
        for r in rs:
            p = r.get("profile_ms")
            if not p:
                continue
            cell = lambda k: f"{p['mpsnn ' + k]:.1f} / {p['torch ' + k]:.1f}"  # noqa: E731
            upd = f"{p['mpsnn step'] - p['mpsnn fwd+bwd']:.1f} / {p['torch step'] - p['torch fwd+bwd']:.1f}"
            lines.append(f"| {r['model']} | {r['batch']} | {cell('forward')} | {cell('fwd+bwd')} | {cell('step')} "
                         f"| {upd} |")
    return "\n".join(lines)


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
    record["rounds"] = ARGS.rounds
    record["results"] = results
    record["load_average_at_end"] = H.load_average()
    if ARGS.json:
        with open(ARGS.json, "w") as f:
            json.dump(record, f, indent=1)
        print(f"wrote {ARGS.json}")
    if ARGS.update_readme and not ARGS.check_only:
        H.replace_readme_section("<!-- bench_train:begin -->", "<!-- bench_train:end -->", readme_body(record))
    if failed:
        print("correctness gate FAILED", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
