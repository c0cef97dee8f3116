"""Hypothesis strategies producing random valid GraphSpecs.

Graphs are grown op by op. Every generator draws a node kind's attributes (hypothesis draws, so
failures shrink), weights come from a NumPy generator seeded by a draw, and the op's float64
reference output is computed right away: an op is kept only if its output is finite, moderate and
well conditioned for a float32 comparison (e.g. no division by values near 0, no binarization of
values near the threshold). Sources are picked among earlier values, newest first, so graphs are
chains that branch (DAGs) where a generator picks an older value or several sources.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

import reference as R

from .graphs import (ALLOW_FUSION, EXCLUDE_EDGES, GraphSpec, InputSpec, Invalid, OpSpec, input_values, op_apply)

# Non-custom padding methods (every size, alignment and remainder combination).
METHODS = tuple(int(m) for m in R.ALL_METHODS)
MAX_ABS = 1e3          # values beyond this are not kept (float32 errors scale with them)


@dataclass(frozen=True)
class Limits:
    max_inputs: int = 3
    max_n: int = 3
    max_hw: int = 9
    max_c: int = 8
    max_ops: int = 6
    max_elements: int = 3000


SMALL = Limits()
LONG = Limits(max_ops=8, max_hw=11, max_c=10)   # the long run's somewhat larger graphs


class Builder:
    """A graph under construction with the float64 value of everything in it."""

    def __init__(self, draw, limits, seed):
        self.draw = draw
        self.limits = limits
        self.rng = np.random.default_rng(seed)
        self.spec = GraphSpec(inputs=[])
        self.vals = {}
        self.positive = {}
        self.aux = {}
        self.rejected = 0
        self.max_input = 0

    # values
    @property
    def values(self):
        return list(self.vals)

    def shape(self, v):
        return self.vals[v].shape

    def add_input(self, shape, dtype, domain):
        seed = int(self.rng.integers(0, 2 ** 31))
        inp = InputSpec(tuple(shape), dtype, domain, seed)
        v = len(self.spec.inputs)
        self.spec.inputs.append(inp)
        self.vals[v] = input_values(inp.array())
        self.positive[v] = float(np.min(self.vals[v])) >= 0.2
        self.max_input = max(self.max_input, self.vals[v].size)
        return v

    def pick(self, pred=None, newest=True):
        cands = [v for v in self.vals if pred is None or pred(v)]
        if not cands:
            return None
        i = self.draw(st.integers(0, len(cands) - 1))
        return cands[len(cands) - 1 - i] if newest else cands[i]

    def add(self, kind, sources, params, guard=None):
        """Adds the op if the interpreter accepts it and its output is usable; returns its value id."""
        op = OpSpec(kind, list(sources), params, label=f"{kind}{len(self.spec.ops)}")
        i = len(self.spec.ops)
        try:
            with np.errstate(all="ignore"):
                y = op_apply(op, [self.vals[s] for s in sources], self.aux, i)
        except Invalid:
            self.rejected += 1
            return None
        if (y.size > max(self.limits.max_elements, self.max_input) or not conditioned(op, [self.vals[s] for s in sources], y)
                or (guard is not None and not guard(y))):
            self.rejected += 1
            return None
        self.spec.ops.append(op)
        v = self.spec.value_of(i)
        self.vals[v] = y
        self.positive[v] = params.get("_keeps_positive", False) and all(self.positive[s] for s in sources)
        params.pop("_keeps_positive", None)
        return v

    # random arrays
    def normal(self, shape, scale=1.0):
        return (self.rng.standard_normal(shape) * scale).astype(np.float32)

    def uniform(self, shape, lo, hi):
        return self.rng.uniform(lo, hi, shape).astype(np.float32)


def _stats_ok(x, axes, eps):
    """Batch / instance statistics usable in float32: variance + eps not tiny next to the values."""
    var = x.var(axis=axes)
    big = np.max(np.abs(x), axis=axes) ** 2
    return bool(np.all(var + eps >= 1e-4 * np.maximum(big, 1e-3)))


def conditioned(op, xs, y):
    """Whether op's float64 output y (for sources xs) can be compared with a float32 run: finite and
    moderate, no division by values near 0, no binarization of values near the threshold, batch or
    instance statistics with a variance not tiny next to the values, local contrast normalization
    of moderate values."""
    if not np.isfinite(y).all() or np.max(np.abs(y)) > MAX_ABS:
        return False
    p = op.params
    if op.kind == "arith" and p["op"] == "divide":
        shape = R.result_shape(xs[0].shape, xs[1].shape, p["pstr"], p["sstr"])
        if np.min(np.abs(p["ss"] * R.address_operand(xs[1], p["sstr"], shape))) < 0.2:
            return False
    if op.kind == "binary" and p["type"] != 0:
        xv = xs[0]
        if p["form"] == "arrays":
            if p["in_bias"] is not None:
                xv = xv + p["in_bias"].astype(np.float64)
            if p["in_scale"] is not None:
                xv = xv * p["in_scale"].astype(np.float64)
        if np.min(np.abs(xv)) < 1e-3 * max(1.0, float(np.max(np.abs(xv)))):
            return False
    if op.kind == "bn" and p["flags"] == 1:
        if not _stats_ok(xs[0], (0, 1, 2), 1.2e-38 if p["eps"] is None else p["eps"]):
            return False
    if op.kind == "inorm" and xs[0].shape[1] * xs[0].shape[2] > 1:
        if not _stats_ok(xs[0], (1, 2), 1.2e-38 if p["eps"] is None else p["eps"]):
            return False
    if op.kind == "norm" and p["mode"] == "lcn" and np.max(np.abs(xs[0])) > 8:
        return False
    return True


def small_ints(lo, hi, common=1):
    """An integer in [lo, hi], `common` twice as likely (shrinks toward it)."""
    return st.sampled_from([common] + [v for v in range(lo, hi + 1)])


def draw_neuron(draw, b, channels, fused=False):
    """(name, a, b, c, data) of a random neuron; parameters None take the node defaults."""
    names = ["relu", "linear", "sigmoid", "hard_sigmoid", "tanh", "absolute", "soft_plus", "soft_sign", "elu",
             "relu_n", "prelu", "power", "exponential", "logarithm", "none"]
    name = draw(st.sampled_from(names))
    a = bb = c = data = None
    opt = lambda *vals: draw(st.sampled_from((None,) + vals))  # noqa: E731
    if name == "relu":
        a = opt(0.0, 0.1, -0.5)
    elif name == "linear":
        a, bb = opt(2.0, -1.5, 0.5), opt(0.5, -1.0)
    elif name == "hard_sigmoid":
        a, bb = opt(0.5, 1.0), opt(0.25, 0.75)
    elif name == "tanh":
        a, bb = opt(0.5, 2.0), opt(0.5, 1.5)
    elif name == "soft_plus":
        a, bb = opt(0.5, 2.0), opt(0.5, 2.0)
    elif name == "elu":
        a = opt(0.5, 2.0)
    elif name == "relu_n":
        a, bb = opt(0.0, 0.25), opt(0.5, 3.0)
    elif name == "prelu":
        n = draw(st.sampled_from([1, channels, channels + 2]))
        data = b.uniform(n, -0.5, 1.0)
    elif name == "power":
        a, bb, c = opt(0.5, -1.0), opt(0.5, 2.0), opt(2.0, 3.0, 0.5, -1.0)
    elif name == "exponential":
        a, bb, c = opt(0.5, -0.5), opt(-1.0), opt(2.0, 0.5)
    elif name == "logarithm":
        a, bb, c = opt(2.0), opt(1.0, 3.0), opt(2.0, 10.0)
    return (name, a, bb, c, data)


def draw_pad(draw, b, windowed=True, pooling=False, conv_window=False, size_change=True, default=None):
    """A padding policy description (None: the node's default)."""
    choices = ["default", "method", "method"]
    if windowed:
        choices += ["custom"]
        if pooling:
            choices += ["tf_avg", "tf_avg_valid"]
    else:
        choices = ["default", "default", "default", "noop"]
    t = draw(st.sampled_from(choices))
    if t == "default":
        return None
    if t == "noop":
        return dict(type="custom", method=R.SIZE_SAME, allow=draw(st.booleans()))
    if t in ("tf_avg", "tf_avg_valid"):
        return dict(type=t)
    method = draw(st.sampled_from(METHODS))
    if pooling and draw(st.integers(0, 3)) == 0:
        method |= EXCLUDE_EDGES
    if t == "method":
        return dict(type="method", method=method)
    pad = dict(type="custom", method=method, allow=draw(st.booleans()))
    if draw(st.booleans()):
        pad["edge"] = draw(st.sampled_from(["clamp", "zero"]))
    if size_change and draw(st.booleans()):
        pad["dh"], pad["dw"] = draw(st.integers(-1, 1)), draw(st.integers(-1, 1))
        pad["oy"], pad["ox"] = draw(st.integers(-1, 1)), draw(st.integers(-1, 1))
    if conv_window and draw(st.booleans()):
        pad["chan_off"] = 4
        pad["max_count"] = draw(st.sampled_from([None, 1, 2, 3, 4, 100]))
    return pad


def draw_bias(draw, b, n):
    return b.normal(n, 0.3) if draw(st.booleans()) else None


def draw_bn_fold(draw, b, n):
    if draw(st.integers(0, 3)):
        return None
    return (b.normal(n, 0.5), b.uniform(n, 0.5, 2.0), b.uniform(n, 0.5, 1.5), b.normal(n, 0.3),
            draw(st.sampled_from([1e-5, 1e-3, 0.1])))


def conv_weights(draw, b, shape, fan_in, quant=None):
    """float32 weights (float16 one time in five); with a `quant` dict, sometimes uint8 weights
    with a linear or lookup-table quantization (quant['quant'] is set)."""
    scale = 1.0 / np.sqrt(max(1, fan_in))
    if quant is not None and draw(st.integers(0, 5)) == 0:
        u = b.rng.integers(0, 256, size=shape).astype(np.uint8)
        if draw(st.booleans()):
            lo = b.uniform(shape[0], -1.5, -0.5) * np.float32(scale)
            quant["quant"] = ("linear", np.stack([lo, lo + np.float32(2 * scale)], axis=1).astype(np.float32))
        else:
            quant["quant"] = ("lut", b.normal(256, scale))
        return u
    w = b.normal(shape, scale)
    return w.astype(np.float16) if draw(st.integers(0, 4)) == 0 else w


def fused_neuron(draw, b, channels):
    return draw_neuron(draw, b, channels, fused=True) if draw(st.integers(0, 2)) == 0 else None


# ------------------------------------------------------------------------------------------------
# one generator per node kind: draw(...) -> None (the op is added to the builder or skipped)

def gen_conv(draw, b):
    v = b.pick()
    N, H, W, C = b.shape(v)
    variant = draw(st.sampled_from(["regular", "regular", "regular", "depthwise", "subpixel"]))
    p = dict(variant=variant, kh=draw(small_ints(1, 4)), kw=draw(small_ints(1, 4)), sy=draw(small_ints(1, 3)),
             sx=draw(small_ints(1, 3)), dy=draw(small_ints(1, 3)), dx=draw(small_ints(1, 3)), groups=1,
             accumulator=draw(st.sampled_from([1, 0])))
    p["pad"] = draw_pad(draw, b, conv_window=variant == "regular" and C >= 5, size_change=variant != "subpixel")
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
            p["cout"] = draw(st.integers(1, 8))
        p["w"] = conv_weights(draw, b, (p["cout"], p["kh"], p["kw"], cin // p["groups"]),
                              p["kh"] * p["kw"] * cin // p["groups"], quant=p)
    elif variant == "depthwise":
        p["cout"] = cin
        shape = (cin, p["kh"], p["kw"]) if draw(st.booleans()) else (cin, p["kh"], p["kw"], 1)
        p["w"] = conv_weights(draw, b, shape, p["kh"] * p["kw"])
    else:
        p["r"] = draw(st.sampled_from([2, 3]))
        p["cout"] = p["r"] ** 2 * draw(st.integers(1, 2))
        p["w"] = conv_weights(draw, b, (p["cout"], p["kh"], p["kw"], cin), p["kh"] * p["kw"] * cin)
    p["b"] = draw_bias(draw, b, p["cout"])
    p["neuron"] = fused_neuron(draw, b, p["cout"])
    if variant == "subpixel" and p["neuron"] is not None and p["neuron"][0] == "prelu":
        # Open point: a per-channel fused PReLU of a sub-pixel convolution applies to the Cout
        # channels before the rearrangement (the kernel) or to the result's channels (nodes.md
        # §4.2 says "then the fused neuron" for both); one slope for all is the same either way.
        p["neuron"] = ("prelu", None, None, None, p["neuron"][4][:1])
    p["bn_fold"] = draw_bn_fold(draw, b, p["cout"])
    if draw(st.integers(0, 3)) == 0:
        p["ds_label"] = f"weights{len(b.spec.ops)}"
    b.add("conv", [v], p)


def gen_fc(draw, b):
    v = b.pick(lambda v: np.prod(b.shape(v)[1:]) <= 400)
    if v is None:
        return
    N, H, W, C = b.shape(v)
    cout = draw(st.integers(1, 8))
    p = dict(kh=H, kw=W, cin=C, cout=cout)
    p["w"] = conv_weights(draw, b, (cout, H, W, C), H * W * C, quant=p)
    p["b"] = draw_bias(draw, b, cout)
    p["neuron"] = fused_neuron(draw, b, cout)
    p["bn_fold"] = draw_bn_fold(draw, b, cout)
    b.add("fc", [v], p)


def gen_transpose(draw, b):
    convs = [i for i, op in enumerate(b.spec.ops) if op.kind == "conv" and op.params["variant"] == "regular"]
    paired = None
    if convs and draw(st.integers(0, 2)) > 0:
        paired = convs[len(convs) - 1 - draw(st.integers(0, len(convs) - 1))]
        conv_out = b.spec.value_of(paired)
        cp = b.spec.ops[paired].params
        v = b.pick(lambda u: b.shape(u)[:3] == b.shape(conv_out)[:3])
        same = draw(st.integers(0, 3)) > 0
    else:
        v = b.pick()
        same = False
    N, H, W, C = b.shape(v)
    if same:
        p = dict(kh=cp["kh"], kw=cp["kw"], sy=cp["sy"], sx=cp["sx"], dy=cp["dy"], dx=cp["dx"])
    else:
        p = dict(kh=draw(small_ints(1, 4)), kw=draw(small_ints(1, 4)), sy=draw(small_ints(1, 3)),
                 sx=draw(small_ints(1, 3)), dy=draw(small_ints(1, 2)), dx=draw(small_ints(1, 2)))
    p.update(cin=C, groups=1, paired=paired)
    if C % 4 == 0 and C >= 8 and draw(st.integers(0, 2)) == 0:
        p["groups"] = 2 if (C // 2) % 4 == 0 else 1
    p["cout"] = p["groups"] * 4 * draw(st.integers(1, 2)) if p["groups"] > 1 else draw(st.integers(1, 8))
    if paired is None and draw(st.booleans()):
        p["pad"] = dict(type="method", method=draw(st.sampled_from(METHODS)))
    elif paired is not None and draw(st.integers(0, 3)) == 0:
        # a custom policy may resize the result sized by the gradient state
        p["pad"] = dict(type="custom", method=R.SIZE_SAME, allow=draw(st.booleans()), dh=draw(st.integers(-1, 2)),
                        dw=draw(st.integers(-1, 2)))
    p["w"] = conv_weights(draw, b, (p["cout"], p["kh"], p["kw"], C // p["groups"]),
                          p["kh"] * p["kw"] * C // p["groups"])
    p["b"] = draw_bias(draw, b, p["cout"])
    p["neuron"] = fused_neuron(draw, b, p["cout"])
    p["bn_fold"] = draw_bn_fold(draw, b, p["cout"])
    b.add("transpose", [v], p)


def gen_binary(draw, b):
    v = b.pick(lambda v: b.shape(v)[3] <= 40)
    if v is None:
        return
    N, H, W, C = b.shape(v)
    fc = draw(st.integers(0, 3)) == 0
    if fc:
        if H * W * C > 400:
            return
        p = dict(kh=H, kw=W)
    else:
        p = dict(kh=draw(small_ints(1, min(3, H))), kw=draw(small_ints(1, min(3, W))), sy=draw(small_ints(1, 2)),
                 sx=draw(small_ints(1, 2)), dy=draw(small_ints(1, 2)), dx=draw(small_ints(1, 2)))
        if draw(st.booleans()):
            p["pad"] = draw_pad(draw, b, size_change=True)
            if p["pad"] is not None:
                p["pad"].pop("edge", None)
    cout = draw(st.integers(1, 8))
    p.update(fc=fc, cin=C, cout=cout, type=draw(st.sampled_from([0, 1, 2])), flags=draw(st.sampled_from([0, 1])),
             form=draw(st.sampled_from(["scale", "arrays"])))
    words = -(-C // 32)
    p["w"] = b.rng.integers(0, 2 ** 32, size=(cout, p["kh"], p["kw"], words), dtype=np.uint64).astype(np.uint32)
    fan = p["kh"] * p["kw"] * C
    if p["form"] == "scale":
        p["scale"] = float(np.float32(draw(st.sampled_from([1.0, 0.5, -0.25])) / np.sqrt(fan)))
        p["b"] = draw_bias(draw, b, cout)
    else:
        p["out_bias"] = b.normal(cout, 0.3) if draw(st.booleans()) else None
        p["out_scale"] = b.uniform(cout, 0.2, 1.0) / np.float32(np.sqrt(fan)) if draw(st.booleans()) else None
        p["in_bias"] = b.normal(C, 0.2) if draw(st.booleans()) else None
        p["in_scale"] = b.uniform(C, 0.5, 1.5) * b.rng.choice([-1, 1], C).astype(np.float32) \
            if draw(st.booleans()) else None
    p["neuron"] = fused_neuron(draw, b, cout)
    x = b.vals[v]
    xs = x
    if p["form"] == "arrays":
        if p["in_bias"] is not None:
            xs = xs + p["in_bias"].astype(np.float64)
        if p["in_scale"] is not None:
            xs = xs * p["in_scale"].astype(np.float64)
    # binarization thresholds: keep inputs away from them (float32 rounding could flip a sign)
    if p["type"] != 0 and np.min(np.abs(xs)) < 1e-3 * max(1.0, float(np.max(np.abs(xs)))):
        return
    if p["form"] == "scale" and p["scale"] == 0:
        return
    b.add("binary", [v], p)


def gen_pool(draw, b):
    v = b.pick()
    mode = draw(st.sampled_from(["max", "average", "l2", "dilated"]))
    p = dict(mode=mode, form=draw(st.sampled_from(["full", "full", "size", "size_stride"])))
    k, s = draw(small_ints(1, 4)), draw(small_ints(1, 3))
    d = draw(small_ints(1, 3)) if mode == "dilated" else 1
    if p["form"] == "size":
        p.update(kh=k, kw=k, sy=k, sx=k)
        if mode == "dilated":
            p.update(dy=k, dx=k)
    elif p["form"] == "size_stride":
        p.update(kh=k, kw=k, sy=s, sx=s)
        if mode == "dilated":
            p.update(dy=d, dx=d)
    else:
        p.update(kh=k, kw=draw(small_ints(1, 4)), sy=s, sx=draw(small_ints(1, 3)))
        if mode == "dilated":
            p.update(dy=d, dx=draw(small_ints(1, 3)))
    p["edge"] = draw(st.sampled_from([None, "zero", "clamp"]))
    if mode == "average" and draw(st.booleans()):
        p["zero_pad"] = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    p["pad"] = draw_pad(draw, b, pooling=True)
    p["_keeps_positive"] = mode in ("max", "average", "dilated")
    b.add("pool", [v], p)


def gen_neuron(draw, b):
    v = b.pick()
    nd = draw_neuron(draw, b, b.shape(v)[3])
    p = dict(neuron=nd, form=draw(st.sampled_from(["class", "class", "descriptor"])),
             pad=draw_pad(draw, b, windowed=False))
    b.add("neuron", [v], p)


def _strides(draw, ea, eb):
    """(primary, secondary) stride of one axis for extents ea, eb."""
    if ea == eb:
        return draw(st.sampled_from([(1, 1), (1, 1), (1, 1), (1, 0), (0, 1), (0, 0)]))
    return draw(st.sampled_from([(1, 0), (0, 1), (0, 0)]))


def gen_arith(draw, b):
    a = b.pick()
    bv = b.pick(lambda u: b.shape(u)[0] == b.shape(a)[0])
    sa, sb = b.shape(a), b.shape(bv)
    axes = [_strides(draw, sa[3], sb[3]), _strides(draw, sa[1], sb[1]), _strides(draw, sa[2], sb[2])]
    op = draw(st.sampled_from(["add", "add", "subtract", "multiply", "divide"]))
    p = dict(op=op, form=draw(st.sampled_from(["sources", "left_right"])), ps=draw(st.sampled_from([1.0, 0.5, -1.0])),
             ss=draw(st.sampled_from([1.0, 2.0, -0.5])), bias=draw(st.sampled_from([0.0, 0.5, -1.0])),
             pstr=tuple(x[0] for x in axes), sstr=tuple(x[1] for x in axes))
    if draw(st.integers(0, 3)) == 0:
        p["lo"], p["hi"] = draw(st.sampled_from([None, -1.0, 0.0])), draw(st.sampled_from([None, 1.0, 2.5]))
    p["pad"] = draw_pad(draw, b, windowed=False)
    guard = None
    if op == "divide":
        try:
            shape = R.result_shape(sa, sb, p["pstr"], p["sstr"])
        except ValueError:
            return
        den = np.abs(p["ss"] * R.address_operand(b.vals[bv], p["sstr"], shape))
        if np.min(den) < 0.2:
            return
    b.add("arith", [a, bv], p, guard)


def gen_concat(draw, b):
    v = b.pick()
    n = draw(st.integers(1, 4))
    srcs = [v] + [b.pick(lambda u: b.shape(u)[:3] == b.shape(v)[:3]) for _ in range(n - 1)]
    if draw(st.booleans()):
        srcs = srcs[::-1]
    b.add("concat", srcs, dict(pad=draw_pad(draw, b, windowed=False)))


def gen_softmax(draw, b):
    v = b.pick()
    b.add("softmax", [v], dict(log=draw(st.booleans()), pad=draw_pad(draw, b, windowed=False)))


def gen_dropout(draw, b):
    v = b.pick()
    p = dict(keep=draw(st.sampled_from([0.5, 1.0, 0.9])), seed=draw(st.integers(0, 5)),
             mask=draw(st.sampled_from([(1, 1, 1), (0, 0, 1), (1, 1, 0), (0, 0, 0)])), _keeps_positive=True)
    b.add("dropout", [v], p)


def gen_bn(draw, b):
    v = b.pick()
    C = b.shape(v)[3]
    opt = lambda arr: arr if draw(st.booleans()) else None  # noqa: E731
    p = dict(C=C, gamma=opt(b.uniform(C, 0.5, 1.5)), beta=opt(b.normal(C, 0.5)), mean=opt(b.normal(C, 0.5)),
             var=opt(b.uniform(C, 0.3, 2.0)), eps=draw(st.sampled_from([None, 1e-5, 1e-3, 0.1])),
             flags=draw(st.sampled_from([None, 0, 1, 2])), pad=draw_pad(draw, b, windowed=False))
    if p["flags"] == 1:
        eps = 1.2e-38 if p["eps"] is None else p["eps"]
        if not _stats_ok(b.vals[v], (0, 1, 2), eps):
            return
    b.add("bn", [v], p)


def gen_inorm(draw, b):
    v = b.pick()
    N, H, W, C = b.shape(v)
    p = dict(C=C, gamma=b.uniform(C, 0.5, 1.5) if draw(st.booleans()) else None,
             beta=b.normal(C, 0.5) if draw(st.booleans()) else None, eps=draw(st.sampled_from([None, 1e-5, 1e-3])),
             pad=draw_pad(draw, b, windowed=False))
    eps = 1.2e-38 if p["eps"] is None else p["eps"]
    if H * W > 1 and not _stats_ok(b.vals[v], (1, 2), eps):
        return
    b.add("inorm", [v], p)


def gen_norm(draw, b):
    v = b.pick()
    mode = draw(st.sampled_from(["cross", "spatial", "lcn"]))
    k = draw(small_ints(1, 5, common=3))
    p = dict(mode=mode, k=k, k_arg=draw(st.booleans()), pad=draw_pad(draw, b, windowed=False))
    if not p["k_arg"]:
        p["k"] = 5
    p["kw"] = p["kh"] = p["k"]
    if mode != "cross" and draw(st.booleans()):
        p["kw"], p["kh"] = draw(small_ints(1, 5, 3)), draw(small_ints(1, 5, 3))
    opt = lambda *vals: draw(st.sampled_from((None,) + vals))  # noqa: E731
    if mode == "lcn":
        p.update(alpha=opt(0.5, 2.0), beta=opt(1.0, 0.25), delta=opt(0.01, 0.5), pm=opt(0.5, -1.0),
                 ps=opt(2.0, 0.5), p0=opt(0.5, 0.0))
        if np.max(np.abs(b.vals[v])) > 8:
            return
    else:
        p.update(alpha=opt(0.0, 0.5, 2.0), beta=opt(0.5, 0.75, 1.5), delta=opt(0.5, 2.0))
    b.add("norm", [v], p)


def gen_upsample(draw, b):
    v = b.pick()
    p = dict(mode=draw(st.sampled_from(["nearest", "bilinear"])), fx=draw(small_ints(1, 3, 2)),
             fy=draw(small_ints(1, 3, 2)), align=draw(st.booleans()), pad=draw_pad(draw, b, windowed=False),
             _keeps_positive=True)
    b.add("upsample", [v], p)


def gen_scale(draw, b):
    v = b.pick()
    p = dict(mode=draw(st.sampled_from(["bilinear", "lanczos"])), ow=draw(st.integers(1, 10)),
             oh=draw(st.integers(1, 10)), provider=draw(st.booleans()), transform=None,
             pad=draw_pad(draw, b, windowed=False))
    if p["pad"] is not None and draw(st.booleans()):
        p["pad"].update(dh=draw(st.integers(-1, 2)), dw=draw(st.integers(-1, 2)))   # the hook resizes the result
    if p["provider"] and draw(st.booleans()):
        p["transform"] = (draw(st.sampled_from([0.5, 1.0, 1.5, 3.0])), draw(st.sampled_from([0.75, 1.0, 2.0])),
                          draw(st.sampled_from([0.0, 1.0, -1.5])), draw(st.sampled_from([0.0, 0.5, -2.0])))
    p["_keeps_positive"] = p["mode"] == "bilinear"
    b.add("scale", [v], p)


GENERATORS = {
    "neuron": gen_neuron, "conv": gen_conv, "pool": gen_pool, "arith": gen_arith, "concat": gen_concat,
    "bn": gen_bn, "softmax": gen_softmax, "fc": gen_fc, "transpose": gen_transpose, "binary": gen_binary,
    "dropout": gen_dropout, "inorm": gen_inorm, "norm": gen_norm, "upsample": gen_upsample, "scale": gen_scale,
}
KIND_NAMES = list(GENERATORS)


@st.composite
def graph_specs(draw, limits=SMALL, kinds=None):
    """A random valid GraphSpec (with the float64 values the generator computed as `spec._values`)."""
    b = Builder(draw, limits, draw(st.integers(0, 2 ** 32 - 1)))
    n = draw(st.integers(1, limits.max_n))
    for _ in range(draw(st.integers(1, limits.max_inputs))):
        shape = (n, draw(st.integers(1, limits.max_hw)), draw(st.integers(1, limits.max_hw)),
                 draw(st.integers(1, limits.max_c)))
        dtype = draw(st.sampled_from(["float32"] * 6 + ["float16", "uint8", "uint16"]))
        b.add_input(shape, dtype, draw(st.sampled_from(["normal", "normal", "positive"])))
    names = kinds or KIND_NAMES
    for _ in range(draw(st.integers(1, limits.max_ops))):
        GENERATORS[draw(st.sampled_from(names))](draw, b)
    if not b.spec.ops:
        b.add("neuron", [b.values[-1]], dict(neuron=("relu", None, None, None, None), form="class", pad=None))
    spec = b.spec
    op_values = [spec.value_of(i) for i in range(len(spec.ops))]
    results = [op_values[-1] if draw(st.integers(0, 3)) else op_values[draw(st.integers(0, len(op_values) - 1))]]
    for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):
        v = op_values[draw(st.integers(0, len(op_values) - 1))]
        if v not in results:
            results.append(v)
    spec.results = results
    spec.multi = len(results) > 1 or draw(st.integers(0, 4)) == 0
    spec.needed = [True] * len(results)
    if spec.multi and len(results) > 1 and draw(st.integers(0, 3)) == 0:
        spec.needed[draw(st.integers(0, len(results) - 1))] = False
    spec.exported = sorted({op_values[draw(st.integers(0, len(op_values) - 1))]
                            for _ in range(draw(st.sampled_from([0, 0, 1, 2])))})
    if not spec.multi and set(spec.exported_in_graph()) - {results[0]} and draw(st.integers(0, 5)) == 0:
        spec.needed[0] = False
    for v in spec.exported + results:
        f = draw(st.sampled_from(["none"] * 6 + ["float16", "float32"]))
        if f != "none":
            spec.formats[v] = f
    spec.graph_format = draw(st.sampled_from(["float32"] * 8 + ["float16", "unorm8"]))
    spec.entry = draw(st.sampled_from(["run", "run", "run", "encode", "encode_batch", "execute_async"]))
    if spec.entry == "execute_async" and (spec.multi or not spec.needed[0]):
        spec.entry = "run"
    spec.repeat = draw(st.integers(0, 4)) == 0
    spec._values = b.vals
    return spec


NAN_KINDS = [k for k in KIND_NAMES if k not in ("scale", "upsample")]


@st.composite
def nonfinite_inputs(draw, limits=SMALL):
    """(spec, input index, flat positions, values): NaN / ±inf placed in one float source image.
    Resampling nodes are left out: their oracles apply weight matrices, where 0·inf = NaN."""
    spec = draw(graph_specs(limits, kinds=NAN_KINDS))
    spec.graph_format = "float32"
    spec.formats = {}
    cands = [i for i in sorted(spec.graph_inputs()) if spec.inputs[i].dtype in ("float32", "float16")]
    if not cands:
        i = sorted(spec.graph_inputs())[0]
        spec.inputs[i].dtype = "float32"
        cands = [i]
    which = cands[draw(st.integers(0, len(cands) - 1))]
    size = int(np.prod(spec.inputs[which].shape))
    k = draw(st.integers(1, min(3, size)))
    positions = sorted({draw(st.integers(0, size - 1)) for _ in range(k)})
    values = [draw(st.sampled_from([np.nan, np.inf, -np.inf])) for _ in positions]
    return spec, which, positions, values


@st.composite
def resized_inputs(draw, limits=SMALL):
    """(spec, new input shapes): some sizes changed (H, W, C or N by a little)."""
    spec = draw(graph_specs(limits))
    spec.entry = "run"
    shapes = [list(i.shape) for i in spec.inputs]
    for _ in range(draw(st.integers(1, 3))):
        j = draw(st.integers(0, len(shapes) - 1))
        axis = draw(st.sampled_from([1, 2, 3, 1, 2, 0]))
        shapes[j][axis] = max(1, shapes[j][axis] + draw(st.sampled_from([-2, -1, 1, 2, 3])))
    if draw(st.booleans()):
        n = draw(st.integers(1, 3))
        for s in shapes:
            s[0] = n
    return spec, [tuple(s) for s in shapes]
