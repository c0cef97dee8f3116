"""Training graphs (issue 9, item 2): random differentiable forward graphs ending in a loss node,
differentiated by `loss.training_graph()` and checked against the float64 reference.

A TrainSpec is a GraphSpec of forward ops (grown with the Builder of strategies.py from the node kinds
that have gradient nodes, graph.md §1.8) plus a loss (nodes.md §13.2: type, reduction, scalar or
per-element weights, label smoothing, labels of the source's size, sometimes padded to a multiple of
four channels). The check builds the mpsnn nodes, appends an MPSCNNLossNode, calls training_graph()
(exporting the parameter-gradient states of the trainable nodes and the dropout masks), builds the
MPSNNGraph of its terminals and runs it with MPSCNNLossLabels. Then:

* dL/d(input): <dL/dx, d> for a random direction d over every input the graph differentiates must
  equal the directional derivative (L(x + t·d) at t = ±h, ±h/2) of the float64 reference loss;
* parameter gradients (weights and biases of convolutions, fully connected and transposed
  convolutions; γ and β of batch and instance normalization) likewise, along a random direction in
  the joint parameter space;
* the loss image and the exported dropout masks against the reference.

Some inputs and intermediate values are marked stop_gradient, and nodes without a gradient (scale,
binary convolution, division) appear only with their result marked so (graph.md §1.8): the
reference holds those values constant along the direction. In the reference, batch normalization
uses the batch statistics and dropout the documented Philox mask (nodes.md §8.5, §11.1) exactly in
the nodes that get a gradient node (their state is consumed); elsewhere they run as in inference.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from hypothesis import reject
from hypothesis import strategies as st

import mpsnn
import reference as R
from ops._common import Handle
from reference import loss as RL

from .graphs import FLT_MIN, GraphSpec, Invalid, OpSpec, build, op_apply, require
from . import strategies as S
from .strategies import (Builder, Limits, METHODS, _stats_ok, conditioned, draw_bias, draw_pad, gen_concat,
                         gen_neuron, gen_norm, gen_pool, gen_softmax, gen_upsample, small_ints)

HWC = mpsnn.MPSDataLayout.HeightxWidthxFeatureChannels
LOSS_TYPE = {
    RL.MAE: mpsnn.MPSCNNLossType.mean_absolute_error, RL.MSE: mpsnn.MPSCNNLossType.mean_squared_error,
    RL.SOFTMAX_CE: mpsnn.MPSCNNLossType.soft_max_cross_entropy,
    RL.SIGMOID_CE: mpsnn.MPSCNNLossType.sigmoid_cross_entropy,
    RL.CATEGORICAL_CE: mpsnn.MPSCNNLossType.categorical_cross_entropy, RL.HINGE: mpsnn.MPSCNNLossType.hinge,
    RL.HUBER: mpsnn.MPSCNNLossType.huber, RL.COSINE: mpsnn.MPSCNNLossType.cosine_distance,
    RL.LOG: mpsnn.MPSCNNLossType.log, RL.KL: mpsnn.MPSCNNLossType.kullback_leibler_divergence,
}
REDUCTION = {RL.NONE: mpsnn.MPSCNNReductionType.none, RL.SUM: mpsnn.MPSCNNReductionType.sum,
             RL.MEAN: mpsnn.MPSCNNReductionType.mean, RL.SUM_NZ: mpsnn.MPSCNNReductionType.sum_by_non_zero_weights}
TRAINABLE = ("conv", "fc", "transpose", "bn", "inorm")
TRAIN_SMALL = Limits(max_inputs=3, max_n=3, max_hw=7, max_c=7, max_ops=6, max_elements=1500)
TRAIN_LONG = Limits(max_inputs=3, max_n=3, max_hw=9, max_c=9, max_ops=8, max_elements=2500)
PERTURB = 2.0 ** -20     # relative perturbation of every reference op output (as graphs.evaluate)


def f32(a):
    return np.ascontiguousarray(a, np.float32)


@dataclass
class LossSpec:
    type: int
    reduction: int
    weight: float = 1.0
    label_smoothing: float = 0.0
    number_of_classes: int = 1
    epsilon: float = 1e-7
    delta: float = 1.0
    labels: np.ndarray = None           # float32 (N, H, W, Cl), Cl = C or C rounded up to 4
    weights: np.ndarray = None          # float32 like labels, or None

    def descriptor(self):
        d = mpsnn.MPSCNNLossDescriptor(LOSS_TYPE[self.type], REDUCTION[self.reduction])
        d.weight = self.weight
        if self.label_smoothing:
            d.label_smoothing = self.label_smoothing
            d.number_of_classes = self.number_of_classes
        if self.type == RL.LOG:
            d.epsilon = self.epsilon
        if self.type == RL.HUBER:
            d.delta = self.delta
        return d

    def kwargs(self):
        return dict(weights=None if self.weights is None else self.weights.astype(np.float64),
                    weight=float(np.float32(self.weight)), label_smoothing=float(np.float32(self.label_smoothing)),
                    number_of_classes=self.number_of_classes, epsilon=float(np.float32(self.epsilon)),
                    delta=float(np.float32(self.delta)))

    def reference(self, y):
        """(loss image, dL/dy) of the float64 oracle."""
        return RL.loss(y, self.labels.astype(np.float64), self.type, self.reduction, **self.kwargs())

    def make_labels(self, device, labels=None, weights=None, size=None):
        t = self.labels if labels is None else labels
        w = self.weights if weights is None else weights
        n, h, wd, c = t.shape
        ld = mpsnn.MPSCNNLossDataDescriptor(f32(t), HWC, mpsnn.MTLSize(wd, h, c))
        wdesc = None if w is None else mpsnn.MPSCNNLossDataDescriptor(f32(w), HWC, mpsnn.MTLSize(wd, h, c))
        if size is None and self.reduction == RL.NONE:
            size = (wd, h, c)
        return mpsnn.MPSCNNLossLabels(device, ld, loss_image_size=size, weights_descriptor=wdesc)

    def __repr__(self):
        return (f"LossSpec({RL.NAMES[self.type]}, {RL.REDUCTION_NAMES[self.reduction]}, weight={self.weight}, "
                f"ls={self.label_smoothing}, K={self.number_of_classes}, eps={self.epsilon}, delta={self.delta}, "
                f"labels {self.labels.shape}, weights {None if self.weights is None else self.weights.shape})")


@dataclass
class TrainSpec:
    spec: GraphSpec
    loss: LossSpec
    source: int                                   # the value the loss reads
    stopped: list = field(default_factory=list)   # values (inputs or op results) with stop_gradient
    entry: str = "run"                            # run | encode | encode_batch (single terminal)
    seed: int = 0                                 # directions

    def describe(self):
        return (f"TrainSpec(loss on v{self.source}: {self.loss!r}, stopped={self.stopped}, entry={self.entry}, "
                f"seed={self.seed})\n" + self.spec.describe())

    def __repr__(self):
        return self.describe()

    def _repr_pretty_(self, p, cycle):     # hypothesis prints a failing example with this
        p.text(self.describe())


# ------------------------------------------------------------------------------------------------
# the float64 reference in training mode

def train_apply(op, xs, aux, index, training=True):
    """op_apply, except that in a node with a gradient node (`training`: its state is consumed)
    batch normalization uses the batch statistics (automatic flags; always with flags 1) and
    dropout multiplies by the documented keep mask."""
    p = op.params
    if op.kind == "bn" and (p["flags"] == 1 or (training and p["flags"] in (None, 0))):
        x = xs[0]
        require(x.shape[3] == p["C"], f"source has {x.shape[3]} channels; data source has {p['C']}")
        eps = np.float32(FLT_MIN if p["eps"] is None else p["eps"])
        return R.batch_norm_training(x, p["gamma"], p["beta"], eps)
    if op.kind == "dropout" and training:
        mask = R.dropout_mask(xs[0].shape, p["keep"], p["seed"], tuple(p["mask"]))
        return R.dropout_forward(xs[0], mask, p["keep"])
    return op_apply(op, xs, aux, index)


def ancestors(spec, value, paired=True):
    """Op indices `value` depends on (through convolution states as well when `paired`)."""
    out, work = set(), [value]
    while work:
        i = spec.op_of(work.pop())
        if i is None or i in out:
            continue
        out.add(i)
        work.extend(spec.ops[i].sources)
        if paired and spec.ops[i].params.get("paired") is not None:
            work.append(spec.value_of(spec.ops[i].params["paired"]))
    return out


def open_ops(spec, value, stopped=()):
    """Ops training_graph reaches from `value`: through image links, not beyond stop_gradient values."""
    out, work = set(), [value]
    while work:
        v = work.pop()
        i = spec.op_of(v)
        if i is None or i in out or (v in stopped and v != value):
            continue
        out.add(i)
        work.extend(spec.ops[i].sources)
    return out


def reachable_inputs(spec, value, stopped=()):
    """Inputs training_graph differentiates: read by an op it reaches, without stop_gradient."""
    return {s for i in open_ops(spec, value, stopped) for s in spec.ops[i].sources
            if spec.op_of(s) is None and s not in stopped}


def gradient_ops(spec, value, stopped=()):
    """Ops that get a gradient node: reached, and with a source that is not stop_gradient or
    trainable (graph.md §1.9 step 5). Their states are consumed: only there do batch normalization
    (automatic flags) and dropout run in training mode."""
    return {i for i in open_ops(spec, value, stopped)
            if spec.ops[i].kind in TRAINABLE or any(s not in stopped for s in spec.ops[i].sources)}


def creates_nothing(spec, value, stopped):
    """Whether training_graph of a loss on `value` creates no node (it returns None then): no input
    to differentiate and no trainable op it reaches (graph.md §1.9 step 5)."""
    ops = open_ops(spec, value, stopped)
    return not reachable_inputs(spec, value, stopped) and not any(spec.ops[i].kind in TRAINABLE for i in ops) \
        and all(s in stopped or spec.op_of(s) is None for i in ops for s in spec.ops[i].sources)


def forward(ts, values, ops=None, perturb=None, frozen=None):
    """float64 value of every op the loss source depends on; `values` are the inputs (float64),
    `ops` replaces spec.ops (parameter directions), `perturb` (a seed) multiplies each op output
    by 1 + u·2^-20 with u ~ U(-1, 1) fixed per op and element (the same at every probe point),
    `frozen` maps stop_gradient values to their value at the base point: constants of the
    directional derivative (no gradient flows through them)."""
    spec = ts.spec
    ops = spec.ops if ops is None else ops
    need = ancestors(spec, ts.source)
    training = gradient_ops(spec, ts.source, ts.stopped)
    vals = dict(enumerate(values))
    aux = {}
    for i, op in enumerate(ops):
        if i not in need:
            continue
        with np.errstate(all="ignore"):
            y = train_apply(op, [vals[s] for s in op.sources], aux, i, i in training)
        if perturb is not None:
            y = y * (1.0 + np.random.default_rng((perturb, i)).uniform(-1.0, 1.0, y.shape) * PERTURB)
        v = spec.value_of(i)
        vals[v] = frozen[v] if frozen is not None and v in frozen else y
    return vals


def total_loss(ts, values, ops=None, perturb=None, frozen=None):
    y = forward(ts, values, ops, perturb, frozen)[ts.source]
    with np.errstate(all="ignore"):
        img, _ = ts.loss.reference(y)
    return float(np.sum(img))


# ------------------------------------------------------------------------------------------------
# generators: the forward node kinds that have gradient nodes

class TrainBuilder(Builder):
    """Builder whose float64 values follow the training-mode reference."""

    def __init__(self, draw, limits, seed):
        super().__init__(draw, limits, seed)
        self.must_stop = set()    # results of nodes without a gradient: marked stop_gradient

    def add(self, kind, sources, params, guard=None):
        op = OpSpec(kind, list(sources), params, label=f"{kind}{len(self.spec.ops)}")
        i = len(self.spec.ops)
        try:
            with np.errstate(all="ignore"):
                y = train_apply(op, [self.vals[s] for s in sources], self.aux, i)
        except Invalid:
            self.rejected += 1
            return None
        too_big = y.size > max(self.limits.max_elements, self.max_input)
        if too_big or not conditioned(op, [self.vals[s] for s in sources], y) or (guard is not None and not guard(y)):
            self.rejected += 1
            return None
        self.spec.ops.append(op)
        v = self.spec.value_of(i)
        self.vals[v] = y
        params.pop("_keeps_positive", None)
        self.positive[v] = False
        return v


def _weights(b, shape, fan_in):
    return b.normal(shape, 1.0 / np.sqrt(max(1, fan_in)))


def gen_conv(draw, b):
    """Regular, grouped, depthwise, strided and dilated convolutions (no fused neuron or folded
    batch norm: training data sources carry neither, nodes.md §4.1; sub-pixel has no gradient)."""
    v = b.pick()
    N, H, W, C = b.shape(v)
    variant = draw(st.sampled_from(["regular", "regular", "depthwise"]))
    p = dict(variant=variant, kh=draw(small_ints(1, 4)), kw=draw(small_ints(1, 4)), sy=draw(small_ints(1, 3)),
             sx=draw(small_ints(1, 3)), dy=draw(small_ints(1, 3)), dx=draw(small_ints(1, 3)), groups=1,
             accumulator=1, neuron=None, bn_fold=None)
    p["pad"] = draw_pad(draw, b, conv_window=variant == "regular" and C >= 5)
    cin = C
    if p["pad"] is not None and p["pad"].get("chan_off"):
        left = C - 4 if p["pad"]["max_count"] is None else min(C - 4, p["pad"]["max_count"])
        cin = draw(st.integers(1, left))
    p["cin"] = cin
    if variant == "regular":
        if cin % 4 == 0 and cin >= 8 and draw(st.booleans()):
            p["groups"] = draw(st.sampled_from([g for g in (2, cin // 4) if cin % g == 0 and (cin // g) % 4 == 0]))
            p["cout"] = p["groups"] * 4 * draw(st.integers(1, 2))
        else:
            p["cout"] = draw(st.integers(1, 7))
        p["w"] = _weights(b, (p["cout"], p["kh"], p["kw"], cin // p["groups"]), p["kh"] * p["kw"] * cin // p["groups"])
    else:
        p["cout"] = cin
        shape = (cin, p["kh"], p["kw"]) if draw(st.booleans()) else (cin, p["kh"], p["kw"], 1)
        p["w"] = _weights(b, shape, p["kh"] * p["kw"])
    p["b"] = draw_bias(draw, b, p["cout"])
    b.add("conv", [v], p)


def gen_fc(draw, b):
    v = b.pick(lambda v: np.prod(b.shape(v)[1:]) <= 300)
    if v is None:
        return
    N, H, W, C = b.shape(v)
    cout = draw(st.integers(1, 7))
    p = dict(kh=H, kw=W, cin=C, cout=cout, neuron=None, bn_fold=None)
    p["w"] = _weights(b, (cout, H, W, C), H * W * C)
    p["b"] = draw_bias(draw, b, cout)
    b.add("fc", [v], p)


def gen_transpose(draw, b):
    convs = [i for i, op in enumerate(b.spec.ops) if op.kind == "conv" and op.params["variant"] == "regular"]
    paired = None
    same = False
    if convs and draw(st.integers(0, 2)) > 0:
        paired = convs[len(convs) - 1 - draw(st.integers(0, len(convs) - 1))]
        conv_out = b.spec.value_of(paired)
        cp = b.spec.ops[paired].params
        v = b.pick(lambda u: b.shape(u)[:3] == b.shape(conv_out)[:3])
        same = draw(st.integers(0, 3)) > 0
    else:
        v = b.pick()
    N, H, W, C = b.shape(v)
    if same:
        p = dict(kh=cp["kh"], kw=cp["kw"], sy=cp["sy"], sx=cp["sx"], dy=cp["dy"], dx=cp["dx"])
    else:
        p = dict(kh=draw(small_ints(1, 4)), kw=draw(small_ints(1, 4)), sy=draw(small_ints(1, 3)),
                 sx=draw(small_ints(1, 3)), dy=draw(small_ints(1, 2)), dx=draw(small_ints(1, 2)))
    p.update(cin=C, groups=1, paired=paired, neuron=None, bn_fold=None)
    if C % 4 == 0 and C >= 8 and draw(st.integers(0, 2)) == 0:
        p["groups"] = 2 if (C // 2) % 4 == 0 else 1
    p["cout"] = p["groups"] * 4 * draw(st.integers(1, 2)) if p["groups"] > 1 else draw(st.integers(1, 7))
    if paired is None and draw(st.booleans()):
        p["pad"] = dict(type="method", method=draw(st.sampled_from(METHODS)))
    p["w"] = _weights(b, (p["cout"], p["kh"], p["kw"], C // p["groups"]), p["kh"] * p["kw"] * C // p["groups"])
    p["b"] = draw_bias(draw, b, p["cout"])
    b.add("transpose", [v], p)


def _strides(draw, ea, eb):
    if ea == eb:
        return draw(st.sampled_from([(1, 1), (1, 1), (1, 1), (1, 0), (0, 1), (0, 0)]))
    return draw(st.sampled_from([(1, 0), (0, 1), (0, 0)]))


def gen_arith(draw, b, ops=("add", "add", "subtract", "multiply")):
    """Addition, subtraction and multiplication (division has no gradient), with broadcasting,
    scales, a bias and sometimes a clamp."""
    a = b.pick()
    bv = b.pick(lambda u: b.shape(u)[0] == b.shape(a)[0])
    sa, sb = b.shape(a), b.shape(bv)
    axes = [_strides(draw, sa[3], sb[3]), _strides(draw, sa[1], sb[1]), _strides(draw, sa[2], sb[2])]
    p = dict(op=draw(st.sampled_from(list(ops))),
             form=draw(st.sampled_from(["sources", "left_right"])), ps=draw(st.sampled_from([1.0, 0.5, -1.0])),
             ss=draw(st.sampled_from([1.0, 2.0, -0.5])), bias=draw(st.sampled_from([0.0, 0.5, -1.0])),
             pstr=tuple(x[0] for x in axes), sstr=tuple(x[1] for x in axes))
    if draw(st.integers(0, 3)) == 0:
        p["lo"], p["hi"] = draw(st.sampled_from([None, -1.0, 0.0])), draw(st.sampled_from([None, 1.0, 2.5]))
    p["pad"] = draw_pad(draw, b, windowed=False)
    if p["op"] == "divide":
        try:
            shape = R.result_shape(sa, sb, p["pstr"], p["sstr"])
        except ValueError:
            return
        if np.min(np.abs(p["ss"] * R.address_operand(b.vals[bv], p["sstr"], shape))) < 0.2:
            return
    b.add("arith", [a, bv], p)


def gen_bn(draw, b):
    v = b.pick()
    C = b.shape(v)[3]
    opt = lambda arr: arr if draw(st.booleans()) else None  # noqa: E731
    p = dict(C=C, gamma=opt(b.uniform(C, 0.5, 1.5)), beta=opt(b.normal(C, 0.5)), mean=opt(b.normal(C, 0.5)),
             var=opt(b.uniform(C, 0.3, 2.0)), eps=draw(st.sampled_from([1e-5, 1e-3, 0.1])),
             flags=draw(st.sampled_from([None, None, 0, 1, 2])), pad=draw_pad(draw, b, windowed=False))
    if p["flags"] != 2 and not _stats_ok(b.vals[v], (0, 1, 2), p["eps"]):
        return
    if p["flags"] != 2 and np.prod(b.shape(v)[:3]) in (1, 2):
        # one value per channel: x̂ = 0; two: x̂ = ±√(v/(v + ε)), a function of the input only
        # through ε, whose tiny gradient is what remains of cancelling float32 terms of size
        # γ/σ·|G|: not comparable with a float32 run
        return
    b.add("bn", [v], p)


def gen_inorm(draw, b):
    """Instance normalization (as the forward generator), not over two pixels (see gen_bn)."""
    v = b.pick(lambda u: b.shape(u)[1] * b.shape(u)[2] != 2)
    if v is None:
        return
    N, H, W, C = b.shape(v)
    p = dict(C=C, gamma=b.uniform(C, 0.5, 1.5) if draw(st.booleans()) else None,
             beta=b.normal(C, 0.5) if draw(st.booleans()) else None, eps=draw(st.sampled_from([None, 1e-5, 1e-3])),
             pad=draw_pad(draw, b, windowed=False))
    if H * W > 1 and not _stats_ok(b.vals[v], (1, 2), 1.2e-38 if p["eps"] is None else p["eps"]):
        return
    b.add("inorm", [v], p)


def gen_dropout(draw, b):
    """Dropout with keep probability 1 (the identity) or below (the Philox mask of nodes.md §11.1,
    which the reference reproduces and the check compares with the exported mask)."""
    v = b.pick()
    p = dict(keep=draw(st.sampled_from([1.0, 0.5, 0.75])), seed=draw(st.integers(0, 5)),
             mask=draw(st.sampled_from([(1, 1, 1), (0, 0, 1), (1, 1, 0), (0, 0, 0)])))
    b.add("dropout", [v], p)


def gen_no_gradient(draw, b):
    """A node without a gradient (bilinear / Lanczos scale, binary convolution, division) whose
    result is marked stop_gradient: how a training graph keeps such nodes (graph.md §1.8)."""
    kind = draw(st.sampled_from(["scale", "binary", "divide"]))
    before = len(b.spec.ops)
    if kind == "scale":
        S.gen_scale(draw, b)
    elif kind == "binary":
        S.gen_binary(draw, b)
    else:
        gen_arith(draw, b, ops=("divide",))
    if len(b.spec.ops) > before:
        b.must_stop.add(b.spec.value_of(before))


def gen_norm_t(draw, b):
    """The LRN family (the forward generator), but no local contrast normalization over one or two
    taps: with Nw = 1 its result is pm whatever the input (X − M = 0), with Nw = 2 nearly ±ps/√α;
    the exact gradient (0 or tiny) is what remains of float32 terms of size ps·T^−β·|G| that
    cancel, which no float32 run reproduces (found by the first long run: 1.3e-5 where the
    reference has 0, behind terms of about 3e3)."""
    before = len(b.spec.ops)
    gen_norm(draw, b)
    if len(b.spec.ops) > before:
        p = b.spec.ops[-1].params
        if p["mode"] == "lcn" and p["kw"] * p["kh"] <= 2:
            b.spec.ops.pop()
            b.vals.pop(b.spec.value_of(before))


GENERATORS = {
    "conv": gen_conv, "fc": gen_fc, "transpose": gen_transpose, "pool": gen_pool, "neuron": gen_neuron,
    "arith": gen_arith, "concat": gen_concat, "softmax": gen_softmax, "bn": gen_bn, "inorm": gen_inorm,
    "norm": gen_norm_t, "upsample": gen_upsample, "dropout": gen_dropout, "no gradient": gen_no_gradient,
}
KIND_NAMES = list(GENERATORS)


def _labels_for(lt, y, rng):
    """Labels in each loss type's domain (reference/loss.py sample_inputs' conventions)."""
    shape = y.shape
    if lt in (RL.SOFTMAX_CE, RL.CATEGORICAL_CE, RL.KL):
        t = rng.random(shape) + 0.05
        return t / t.sum(-1, keepdims=True)
    if lt in (RL.SIGMOID_CE, RL.LOG):
        return rng.random(shape)
    if lt == RL.HINGE:
        return (rng.random(shape) > 0.5).astype(np.float64)
    if lt == RL.COSINE:
        t = rng.standard_normal(shape)
        return t / np.linalg.norm(t, axis=-1, keepdims=True)
    return y + rng.standard_normal(shape) * max(0.5, float(np.std(y)))


def draw_loss(draw, b, source):
    """(loss spec, source value) for the value `source`, appending a softmax or sigmoid where the
    loss type needs probabilities; None if the predictions do not suit the type."""
    lt = draw(st.sampled_from(sorted(LOSS_TYPE)))
    if lt == RL.SOFTMAX_CE and b.shape(source)[3] < 2:
        lt = RL.SIGMOID_CE    # softmax over one channel is refused (an invalid case, invalid_training)
    if lt == RL.CATEGORICAL_CE:
        kind = draw(st.sampled_from(["softmax", "sigmoid"]))
        if kind == "softmax":
            source = b.add("softmax", [source], dict(log=False, pad=None))
        else:
            source = b.add("neuron", [source], dict(neuron=("sigmoid", None, None, None, None), form="class", pad=None))
    elif lt == RL.LOG:
        source = b.add("neuron", [source], dict(neuron=("sigmoid", None, None, None, None), form="class", pad=None))
    elif lt == RL.KL and draw(st.booleans()):
        source = b.add("softmax", [source], dict(log=True, pad=None))
    if source is None:
        return None, None
    y = b.vals[source]
    if lt in (RL.CATEGORICAL_CE, RL.LOG) and (np.min(y) < 0.02 or np.max(y) > 0.98):
        return None, None     # -t/y and the log loss's 1/(y(1-y)) blow up float32 rounding
    reduction = RL.SUM if lt == RL.COSINE else draw(st.sampled_from(sorted(REDUCTION)))
    rng = b.rng
    t = _labels_for(lt, y, rng)
    n, h, w, c = y.shape
    cl = c
    if c % 4 and draw(st.integers(0, 2)) == 0:
        cl = 4 * (-(-c // 4))   # labels (and weights) carry MPS's padding channels
    tl = np.zeros((n, h, w, cl))
    tl[..., :c] = t
    weights = None
    if draw(st.integers(0, 2)) == 0 or reduction == RL.SUM_NZ and draw(st.booleans()):
        weights = np.zeros((n, h, w, cl))
        weights[..., :c] = rng.random((n, h, w, c)) + 0.1
        if draw(st.booleans()):
            weights[..., :c][rng.random((n, h, w, c)) < 0.2] = 0.0
    ls = draw(st.sampled_from([0.0, 0.0, 0.1])) if lt in (RL.SOFTMAX_CE, RL.SIGMOID_CE) else 0.0
    loss = LossSpec(lt, reduction, weight=draw(st.sampled_from([1.0, 0.5, 2.0])), label_smoothing=ls,
                    number_of_classes=c if ls else 1, epsilon=draw(st.sampled_from([1e-7, 1e-3])),
                    delta=draw(st.sampled_from([1.0, 0.5])), labels=f32(tl),
                    weights=None if weights is None else f32(weights))
    return loss, source


@st.composite
def training_specs(draw, limits=TRAIN_SMALL, kinds=None):
    """A random TrainSpec: float32 inputs (batch 1-3 shared, odd sizes, any channel count), up to
    limits.max_ops forward ops of the differentiable kinds, a loss on the last value."""
    b = TrainBuilder(draw, limits, draw(st.integers(0, 2 ** 32 - 1)))
    n = draw(st.integers(1, limits.max_n))
    n_inputs = draw(st.integers(1, limits.max_inputs))
    for _ in range(n_inputs):
        shape = (n, draw(st.integers(1, limits.max_hw)), draw(st.integers(1, limits.max_hw)),
                 draw(st.integers(1, limits.max_c)))
        b.add_input(shape, "float32", draw(st.sampled_from(["normal", "normal", "positive"])))
    names = kinds or KIND_NAMES
    # the number of ops to grow, largest first (hypothesis favours the first choices)
    target = draw(st.sampled_from(list(range(limits.max_ops, 0, -1))))
    for _ in range(3 * target):     # generators skip ops they cannot make: retry up to the target
        if len(b.spec.ops) >= target:
            break
        GENERATORS[draw(st.sampled_from(names))](draw, b)
    if not b.spec.ops:
        b.add("neuron", [b.values[-1]], dict(neuron=("tanh", None, None, None, None), form="class", pad=None))
    # the loss reads the value with the most ops behind it (the latest of those)
    depth = {b.spec.value_of(i): len(ancestors(b.spec, b.spec.value_of(i))) for i in range(len(b.spec.ops))
             if b.spec.value_of(i) not in b.must_stop}
    if not depth:
        reject()
    source = max(depth, key=lambda v: (depth[v], v))
    loss, source = draw_loss(draw, b, source)
    if loss is None:
        reject()
    spec = b.spec
    spec.results, spec.needed = [source], [True]
    spec._values = b.vals
    # stop_gradient on some inputs and intermediate values (never the loss's source)
    stopped = [i for i in range(n_inputs) if n_inputs > 1 and draw(st.integers(0, 5)) == 0]
    stopped += [spec.value_of(i) for i in sorted(ancestors(spec, source, paired=False))
                if spec.value_of(i) != source and draw(st.integers(0, 9)) == 0]
    if creates_nothing(spec, source, sorted(set(stopped) | b.must_stop)):
        stopped = []     # training_graph would create nothing (it returns None): an API test elsewhere
    stopped = sorted(set(stopped) | b.must_stop)
    if creates_nothing(spec, source, stopped):
        reject()
    ts = TrainSpec(spec, loss, source, stopped, draw(st.sampled_from(["run", "run", "encode", "encode_batch"])),
                   draw(st.integers(0, 2 ** 31)))
    return ts


# ------------------------------------------------------------------------------------------------
# running the training graph

class Result:
    """What one run of a training graph gave: dL/d(input) per input index (terminals with the
    same input summed), parameter-gradient states by op index, dropout masks by op index, the loss
    image, and the terminals."""

    def __init__(self):
        self.dx, self.params, self.masks, self.loss_image, self.terminals = {}, {}, {}, None, []
        self.intermediate = {}


def build_training(ts, export_gradients=False):
    """(forward filters by op index, loss node, terminals) of a fresh node set; with
    export_gradients every gradient image (and the loss's result) is exported."""
    spec = ts.spec
    inputs, nodes, filters = build(spec)
    for v in ts.stopped:
        nodes[v].stop_gradient = True
    loss = mpsnn.MPSCNNLossNode(source=nodes[ts.source], loss_descriptor=ts.loss.descriptor())
    loss.label = "loss"
    index = {id(f): i for i, f in filters.items()}

    if export_gradients:
        loss.result_image.export_from_graph = True
        loss.result_image.handle = Handle(f"v{ts.source}")

    def handler(gradient_node, inference_node, inference_source, gradient_source):
        gradient_node.result_image.handle = inference_source.handle
        if export_gradients:
            gradient_node.result_image.export_from_graph = True
        i = None if inference_node is None else index.get(id(inference_node))
        if i is None:
            return
        op = spec.ops[i]
        if op.kind in TRAINABLE:
            gradient_node.result_state.export_from_graph = True
            gradient_node.result_state.handle = Handle(f"params{i}")
        if op.kind == "dropout":
            inference_node.result_state.export_from_graph = True
            inference_node.result_state.handle = Handle(f"mask{i}")

    terminals = loss.training_graph(node_handler=handler)
    return filters, loss, terminals


def gradient_images(ts, device, fuse, arrays):
    """[(value id, dL/d(value) or a part of it)] of every gradient image of the training graph
    (one plain run exporting them all)."""
    _, _, terminals = build_training(ts, export_gradients=True)
    g = mpsnn.MPSNNGraph(device, result_images=[t.result_image for t in terminals])
    g.fusion_enabled = fuse
    feed = [arrays[int(h.label()[1:])] for h in g.source_image_handles]
    inter = []
    out = g.run(feed, source_states=[ts.loss.make_labels(device)], intermediate_images=inter)
    out = out if isinstance(out, list) else [out]
    got = [(int(t.result_image.handle.label()[1:]), img) for t, img in zip(terminals, out)]
    got += [(int(h.label()[1:]), img) for h, img in zip(g.intermediate_image_handles, inter)]
    return [(v, np.asarray(img.numpy(), np.float64)) for v, img in got]


def run_training(ts, device, fuse, arrays):
    filters, loss, terminals = build_training(ts)
    assert terminals, f"training_graph created nothing\n{ts.describe()}"
    res = Result()
    res.terminals = terminals
    images = [t.result_image for t in terminals]
    if len(images) == 1:
        g = mpsnn.MPSNNGraph(device, images[0])
    else:
        g = mpsnn.MPSNNGraph(device, result_images=images)
    g.fusion_enabled = fuse
    g.poison_temporaries = True
    labels = ts.loss.make_labels(device)
    assert len(g.source_state_handles) == 1, g.source_state_handles
    feed = [arrays[int(h.label()[1:])] for h in g.source_image_handles]
    states = []
    if ts.entry == "encode_batch" and len(images) == 1:
        # one single image per batch entry, one MPSCNNLossLabels per image (MPSStateBatch)
        n = feed[0].shape[0]
        per_image = [ts.loss.make_labels(device, labels=ts.loss.labels[j:j + 1],
                                         weights=None if ts.loss.weights is None else ts.loss.weights[j:j + 1])
                     for j in range(n)]
        cb = device.make_command_queue().make_command_buffer()
        batches = []
        out = g.encode_batch(cb, [[mpsnn.MPSImage.from_numpy(np.ascontiguousarray(a[j:j + 1])) for j in range(n)]
                                  for a in feed], source_states=[per_image], destination_states=batches)
        cb.commit()
        cb.wait_until_completed()
        outs = [_Stacked(np.concatenate([np.asarray(o.numpy()) for o in out]))]
        handles = [h.label() for h in g.result_state_handles]
        assert len(handles) == len(batches), (handles, len(batches))
        for lab, batch in zip(handles, batches):
            assert len(batch) == n, (lab, len(batch), n)
            if lab.startswith("params"):
                # one state accumulates the whole batch (graph.md §5.2): the same object n times
                assert all(b is batch[0] for b in batch), f"{lab}: {n} different states"
                states.append(batch[0])
            else:
                states.append(_MaskBatch(batch))
        res.loss_image = np.concatenate([np.asarray(lb.loss_image().numpy(), np.float64) for lb in per_image])
        labels = None
    elif ts.entry == "encode" and len(images) == 1:
        cb = device.make_command_queue().make_command_buffer()
        out = g.encode(cb, [mpsnn.MPSImage.from_numpy(a) for a in feed], source_states=[labels],
                       destination_states=states)
        cb.commit()
        cb.wait_until_completed()
        outs = [out]
    else:
        out = g.run(feed, source_states=[labels], destination_states=states)
        outs = out if isinstance(out, list) else [out]
    assert len(outs) == len(terminals), (len(outs), len(terminals))
    for t, img in zip(terminals, outs):
        h = t.result_image.handle
        lab = None if h is None else h.label()
        assert lab is not None and lab.startswith("v"), f"terminal {type(t).__name__} has result handle {lab!r}"
        i = int(lab[1:])
        a = np.asarray(img.numpy(), np.float64)
        if i >= len(ts.spec.inputs):
            # the gradient of an intermediate value is a terminal only where the traversal stops
            # (graph.md §1.9 step 5): at a stop_gradient value (read by a trainable op), or where
            # its producer reads stop_gradient values only and trains nothing
            op = ts.spec.ops[ts.spec.op_of(i)]
            assert i in ts.stopped or (all(s in ts.stopped for s in op.sources) and op.kind not in TRAINABLE), \
                f"terminal {type(t).__name__} is the gradient of v{i} ({op.label})\n{ts.describe()}"
            res.intermediate[i] = a
            continue
        res.dx[i] = res.dx[i] + a if i in res.dx else a
    handles = [h.label() for h in g.result_state_handles]
    assert len(handles) == len(states), (handles, len(states))
    for lab, s in zip(handles, states):
        if lab.startswith("params"):
            res.params[int(lab[6:])] = s
        elif lab.startswith("mask"):
            res.masks[int(lab[4:])] = s
    if labels is not None:
        res.loss_image = np.asarray(labels.loss_image().numpy(), np.float64)
    return res


class _Stacked:
    def __init__(self, a):
        self.a = a

    def numpy(self):
        return self.a


class _MaskBatch:
    """The dropout states of an encode_batch (one per image, or one for all): their masks stacked."""

    def __init__(self, batch):
        self.batch = batch

    def mask_data(self):
        if all(b is self.batch[0] for b in self.batch):
            return self.batch[0].mask_data()
        return np.concatenate([b.mask_data() for b in self.batch])


def param_gradients(ts, res):
    """{(op index, name): float64 gradient array} from the exported states."""
    out = {}
    for i, s in res.params.items():
        op = ts.spec.ops[i]
        p = op.params
        if op.kind in ("conv", "fc", "transpose"):
            assert isinstance(s, mpsnn.MPSCNNConvolutionGradientState), type(s)
            out[(i, "w")] = np.asarray(s.gradient_for_weights.numpy(), np.float64).reshape(p["w"].shape)
            out[(i, "b")] = np.asarray(s.gradient_for_biases.numpy(), np.float64).reshape(p["cout"])
        elif op.kind == "bn":
            assert isinstance(s, mpsnn.MPSCNNBatchNormalizationState), type(s)
            out[(i, "gamma")] = np.asarray(s.gradient_for_gamma().numpy(), np.float64).reshape(p["C"])
            out[(i, "beta")] = np.asarray(s.gradient_for_beta().numpy(), np.float64).reshape(p["C"])
        elif op.kind == "inorm":
            assert isinstance(s, mpsnn.MPSCNNInstanceNormalizationGradientState), type(s)
            out[(i, "gamma")] = np.asarray(s.gradient_for_gamma.numpy(), np.float64).reshape(p["C"])
            out[(i, "beta")] = np.asarray(s.gradient_for_beta.numpy(), np.float64).reshape(p["C"])
    return out


def base_params(op, name):
    """float64 value of parameter `name` of op as the reference uses it (None means 0 or 1)."""
    p = op.params
    if name == "w":
        return np.asarray(p["w"], np.float64)
    if name == "b":
        return np.zeros(p["cout"]) if p.get("b") is None else np.asarray(p["b"], np.float64)
    if name == "gamma":
        return np.ones(p["C"]) if p.get("gamma") is None else np.asarray(p["gamma"], np.float64)
    return np.zeros(p["C"]) if p.get("beta") is None else np.asarray(p["beta"], np.float64)


def shifted_ops(ts, directions, t):
    """spec.ops with every parameter in `directions` moved by t·direction."""
    ops = list(ts.spec.ops)
    for (i, name), d in directions.items():
        op = ops[i]
        if op is ts.spec.ops[i]:
            op = ops[i] = OpSpec(op.kind, op.sources, dict(op.params), op.label)
        op.params[name] = base_params(ts.spec.ops[i], name) + t * d
    return ops


# ------------------------------------------------------------------------------------------------
# directional finite differences

class Kink(Exception):
    """The reference loss is not smooth enough along the direction to check (see directional)."""


def directional(f, scale, h=1e-4):
    """(derivative, truncation estimate, perturbed derivatives, step) of t -> f(t, perturb) at 0.

    f is evaluated at t = ±h, ±h/2 and 0 (exact float64 reference); the derivative is the central
    difference at h/2. Kinks (ReLU at 0, max-pool ties, clamps, absolute values, MAE / hinge /
    Huber switch points) must not make the check flaky. A kink of slope change Δs at distance δ
    from 0 biases that estimate by Δs(h/2 − |δ|)/h for |δ| < h/2 (Δs/2 at δ = 0, where the float32
    run may take either side). Two detectors with disjoint blind spots see it: the difference of
    the central differences at h and h/2 (Δs·|δ|/(2h) for |δ| < h/2, Δs(h − |δ|)/(2h) up to h;
    blind only at δ = 0) and 12× the residual of a least-squares cubic through the five points
    over the step (its fourth difference: 1.03·Δs at δ = 0, blind only at δ = ±h/3). The direction
    is rejected when either exceeds `scale` (a quarter of the comparison tolerance's float32 part);
    then no kink biases the estimate by more than 0.82·scale (test_directional_difference_rejects_
    kinks checks this over δ ∈ [−1.2h, 1.2h]). A detection retries once with a step 8 times
    smaller (fewer kinks lie within it), then raises Kink (the example is rejected).

    A kink the float32 run puts on the other side (a pre-activation u below its float32 rounding)
    but that the probe does not cross (|u| > h·|du/dt|) moves <g, d> by at most
    Δs·|du/dt| < Δs·|u|/h: negligible at h = 1e-4 for the values of these graphs. Non-finite loss
    values (a probe leaving the domain of a power or logarithm) raise Kink too."""
    for step in (h, h / 8):
        ts_ = np.array([-1.0, -0.5, 0.0, 0.5, 1.0]) * step
        v = np.array([f(t, None) for t in ts_])
        if not np.isfinite(v).all():
            raise Kink(f"non-finite reference loss along the direction: {v}")
        c1 = (v[4] - v[0]) / (2 * step)
        c2 = (v[3] - v[1]) / step
        s = ts_ / step
        coef = np.polyfit(s, v, 3)
        res = float(np.max(np.abs(np.polyval(coef, s) - v)))
        indicator = max(abs(c1 - c2), 12.0 * res / step)
        # float64 rounding of the loss values themselves, seen through the step
        noise = 64 * np.finfo(np.float64).eps * (1.0 + float(np.max(np.abs(v)))) / step
        if indicator <= scale(c2) + noise:
            pert = []
            for seed in (1, 2):
                hi, lo = f(step / 2, seed), f(-step / 2, seed)
                pert.append((hi - lo) / step)
            return c2, abs(c1 - c2), pert, step
    raise Kink(f"kink or strong curvature along the direction: indicator {indicator:.3g} > {scale(c2):.3g}")


def _tolerance(dot_abs, fd, trunc, pert):
    """Allowed |<g, d> − FD|: how 2^-20 perturbations of every op output move the derivative
    (×64, the margin graphs.tolerance uses), the same relative 64·2^-20 of Σ|g_i d_i| for the
    float32 rounding of the gradient kernels' own sums, and the finite difference's truncation."""
    dev = max(abs(p - fd) for p in pert)
    return 64.0 * dev + 64.0 * PERTURB * dot_abs + trunc


def check_training_spec(ts, device, fuse_modes=(True, False)):
    spec = ts.spec
    arrays = [i.array() for i in spec.inputs]
    base = [a.astype(np.float64) for a in arrays]
    ref_vals = forward(ts, base)
    frozen = {v: ref_vals[v] for v in ts.stopped if spec.op_of(v) is not None and v in ref_vals}
    y = ref_vals[ts.source]
    ref_loss, _ = ts.loss.reference(y)
    pert_loss = ts.loss.reference(forward(ts, base, perturb=1)[ts.source])[0]
    rng = np.random.default_rng(ts.seed)
    expected = reachable_inputs(spec, ts.source, ts.stopped)
    # a stop_gradient input read by a trainable op: its data gradient is a terminal too (only that
    # op's part of it: not compared)
    allowed = expected | {s for i in open_ops(spec, ts.source, ts.stopped) for s in spec.ops[i].sources
                          if spec.op_of(s) is None and spec.ops[i].kind in TRAINABLE}
    for fuse in fuse_modes:
        what = f"fuse={fuse}"
        res = run_training(ts, device, fuse, arrays)
        got = set(res.dx)
        assert expected <= got <= allowed, \
            f"{what}: gradients for inputs {sorted(got)}, expected {sorted(expected)}\n{ts.describe()}"
        for i, g in res.dx.items():
            assert g.shape == spec.inputs[i].shape, f"{what}: dL/dv{i} has shape {g.shape}"
            assert np.isfinite(g).all(), f"{what}: non-finite dL/dv{i}\n{ts.describe()}"
        # the loss image (a forward value): float32 rounding propagated as in the forward fuzz
        li = res.loss_image
        if ts.loss.reduction == RL.NONE:
            c = ref_loss.shape[3]
            assert not li[..., c:].any(), f"{what}: padding channels of the loss image"
            li = li[..., :c]
        assert li.shape == ref_loss.shape, f"{what}: loss image {li.shape}, expected {ref_loss.shape}"
        scale = max(1.0, float(np.max(np.abs(ref_loss))))
        tol = 2e-4 * scale + 64.0 * np.abs(pert_loss - ref_loss) + 2e-4 * np.abs(ref_loss)
        err = np.abs(li - ref_loss)
        assert (err <= tol).all(), (f"{what}: loss image differs by up to {err.max():.3g} "
                                    f"(tolerance {tol.max():.3g}): {li.ravel()[:6]} vs {ref_loss.ravel()[:6]}"
                                    f"\n{ts.describe()}")
        # dropout masks: the documented generator, bit for bit
        for i, s in res.masks.items():
            p = spec.ops[i].params
            x = ref_vals[spec.ops[i].sources[0]]
            np.testing.assert_array_equal(s.mask_data(), R.dropout_mask(x.shape, p["keep"], p["seed"], p["mask"]),
                                          err_msg=f"{what}: dropout mask of {spec.ops[i].label}")
        # dL/d(inputs) along a random direction
        dirs = {i: rng.standard_normal(spec.inputs[i].shape) for i in sorted(expected)}
        dot = sum(float(np.sum(res.dx[i] * d)) for i, d in dirs.items())
        dot_abs = sum(float(np.sum(np.abs(res.dx[i] * d))) for i, d in dirs.items())

        def inputs_at(t):
            return [b + t * dirs[i] if i in dirs else b for i, b in enumerate(base)]

        def f_inputs(t, perturb):
            return total_loss(ts, inputs_at(t), perturb=perturb, frozen=frozen)

        def values_inputs(t):
            return forward(ts, inputs_at(t), frozen=frozen)
        backstop = (lambda vals: _gradient_terms(ts, device, fuse, arrays, vals))  # noqa: E731
        _compare(f_inputs, dot, dot_abs, f"{what}: dL/d(inputs) {sorted(dirs)}", ts,
                 backstop=lambda step: backstop((values_inputs(step / 2), values_inputs(-step / 2), step)))
        # parameter gradients along a random direction in their joint space
        grads = param_gradients(ts, res)
        if grads:
            pdirs = {}
            for (i, name), g in grads.items():
                assert g.shape == base_params(spec.ops[i], name).shape
                assert np.isfinite(g).all(), f"{what}: non-finite d{name} of {spec.ops[i].label}\n{ts.describe()}"
                s = float(np.std(base_params(spec.ops[i], name))) if name == "w" else 0.5
                pdirs[(i, name)] = rng.standard_normal(g.shape) * max(s, 0.1)
            pdot = sum(float(np.sum(grads[k] * d)) for k, d in pdirs.items())
            pdot_abs = sum(float(np.sum(np.abs(grads[k] * d))) for k, d in pdirs.items())

            def f_params(t, perturb):
                return total_loss(ts, base, ops=shifted_ops(ts, pdirs, t), perturb=perturb, frozen=frozen)

            def per_param():
                lines = []
                for k, d in pdirs.items():
                    try:
                        fd, *_ = directional(lambda t, pp: total_loss(ts, base, ops=shifted_ops(ts, {k: d}, t),
                                                                        perturb=pp, frozen=frozen), lambda c: np.inf)
                    except Kink as e:
                        fd = str(e)
                    lines.append(f"  {spec.ops[k[0]].label}.{k[1]}: <g, d> = {float(np.sum(grads[k] * d)):.8g}, "
                                 f"FD = {fd}")
                return "\n".join(lines)
            def values_params(t):
                return forward(ts, base, ops=shifted_ops(ts, pdirs, t), frozen=frozen)
            _compare(f_params, pdot, pdot_abs, f"{what}: parameter gradients {sorted(pdirs)}", ts, per_param,
                     backstop=lambda step: backstop((values_params(step / 2), values_params(-step / 2), step)))


def _gradient_terms(ts, device, fuse, arrays, probe):
    """Σ over the gradient images G_v of the training graph (every partial gradient, the loss's
    result included) of Σ|G_v|·|dv/dt|, dv/dt the reference value's derivative along the
    direction: how much the directional derivative is made of at each value. Float32 rounding of
    the sums the backward pass forms from them (fan-out additions, broadcast and channel
    reductions, the softmax's Σ) is relative to these terms, not to the result, which can cancel
    to nearly 0 (a log-softmax under a KL loss whose channel sum of p − t is 0)."""
    plus, minus, step = probe
    total = 0.0
    for v, g in gradient_images(ts, device, fuse, arrays):
        if v in plus and v in minus and plus[v].shape == g.shape:
            total += float(np.sum(np.abs(g) * np.abs(plus[v] - minus[v]))) / step
    return total


def _compare(f, dot, dot_abs, what, ts, detail=None, backstop=None):
    if not dot_abs and f(1e-3, None) == f(-1e-3, None) == f(0.0, None):
        return      # nothing along the direction (every input it moves is behind a stop_gradient)
    try:
        fd, trunc, pert, step = directional(f, lambda c: 0.25 * (64.0 * PERTURB * max(dot_abs, abs(c))))
    except Kink:
        reject()
    tol = _tolerance(dot_abs, fd, trunc, pert) + 64 * np.finfo(np.float64).eps * (1.0 + abs(f(0.0, None))) / step
    if abs(dot - fd) > tol and backstop is not None:
        # a mismatch: add the float32 rounding of the backward pass's own sums (64·2^-20 of the
        # terms they add up, _gradient_terms; computed only here, from a run exporting every
        # gradient image, which would change the graph under test)
        tol += 64.0 * PERTURB * backstop(step)
    if abs(dot - fd) > tol:
        extra = "" if detail is None else "\n" + detail()
        raise AssertionError(f"{what}: <dL/dx, d> = {dot:.9g}, finite difference of the float64 reference "
                             f"{fd:.9g} (step {step:g}); difference {abs(dot - fd):.3g} > tolerance {tol:.3g}"
                             f"{extra}\n{ts.describe()}")
