"""Invalid graphs and inputs: hypothesis strategies producing Cases that must raise a typed mpsnn
error naming the node (or the source image / the graph object at fault), after which the process
and, where it makes sense, the same graph must still work.

Categories: a corrupted attribute of one node of a random valid graph (mismatched channels, zero or
negative sizes, bad weights, custom padding policies asking for the impossible), bad source images
(dtypes, layouts, dimensions, counts), unknown indices and unsupported requests, callbacks that
re-enter their own graph (the graph-level cycles the API allows: nodes themselves cannot form
cycles, a node's sources exist before it), protocol objects returning values of the wrong type,
and sizes whose byte count overflows.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
from hypothesis import strategies as st

import mpsnn

from .graphs import FuzzPolicy, GraphSpec, OpSpec, build, evaluate, make_graph, run
from .strategies import Limits, graph_specs

TYPED = (mpsnn.ShapeError, mpsnn.DTypeError, mpsnn.UnsupportedError, mpsnn.BackendError, mpsnn.MPSGraphError)
SMALL_GRAPHS = Limits(max_ops=4, max_hw=7, max_c=8, max_n=2)
OP_NAMES = {"conv": "convolution", "fc": "convolution", "transpose": "convolution", "binary": "binary convolution",
            "pool": "pooling", "neuron": "neuron", "arith": "arithmetic", "concat": "concatenation",
            "softmax": "softmax", "dropout": "dropout", "bn": "batch normalization",
            "inorm": "instance normalization", "norm": "normalization", "upsample": "upsampling", "scale": "scale"}


@dataclass
class Case:
    category: str
    detail: str
    trigger: Callable[[], object]            # must raise one of `errors`
    errors: tuple
    where: tuple                             # one of these must appear in the message
    recover: Optional[Callable[[], object]] = None   # must then succeed (it checks its own results)
    spec: Optional[GraphSpec] = None
    extra: dict = field(default_factory=dict)

    def __repr__(self):
        d = f"Case({self.category}: {self.detail}; expects {[e.__name__ for e in self.errors]} naming {self.where})"
        return d + ("\n" + self.spec.describe() if self.spec is not None else "")

    def _repr_pretty_(self, p, cycle):     # hypothesis prints a failing example with this
        p.text(repr(self))


def _device():
    return mpsnn.MTLCreateSystemDefaultDevice()


def _run_spec(spec, g=None, fuse=True):
    """Builds (unless given) and runs `spec`; returns the outputs."""
    dev = _device()
    if g is None:
        _, nodes, _ = build(spec)
        g = make_graph(spec, dev, nodes, fuse)
    return run(spec, g, [i.array() for i in spec.inputs], dev)


def _checked_run(spec, g):
    """Runs graph g of spec and compares with the reference (recovery check)."""
    from .properties import check_outputs, reference
    arrays = [i.array() for i in spec.inputs]
    ref, deltas = reference(spec, arrays)
    out, labels = run(spec, g, arrays, _device())
    check_outputs(spec, out, labels, ref, deltas, "recovery")


def label_of(spec, i):
    return f"'{spec.ops[i].label}'"


# ------------------------------------------------------------------------------------------------
# 1. one corrupted node in a random valid graph

def _needed_ops_of(spec, kinds):
    need = spec.needed_ops()
    return [i for i in sorted(need) if spec.ops[i].kind in kinds]


def _corruptions(draw, spec, i):
    """(new params or a callable mutating the spec, errors, at) for op i; at = 'node' (the
    constructor raises: the message names the node kind) or 'graph' (graph construction or the
    run: it names the label)."""
    op = spec.ops[i]
    p = op.params
    k = op.kind
    out = []
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 31)))
    if k in ("conv", "transpose", "fc", "binary"):
        if not (k == "conv" and p["variant"] in ("depthwise", "subpixel")) and not (p.get("pad") or {}).get("chan_off"):
            d = draw(st.sampled_from([1, 2, 3, -1]))
            if p["cin"] + d > 0:
                def more_cin(q, d=d):
                    q["cin"] += d
                    q["groups"] = 1
                    if k == "binary":
                        q["w"] = rng.integers(0, 2 ** 32, size=q["w"].shape[:3] + (-(-q["cin"] // 32),),
                                              dtype=np.uint64).astype(np.uint32)
                        if q.get("in_bias") is not None:
                            q["in_bias"] = None
                        if q.get("in_scale") is not None:
                            q["in_scale"] = None
                    else:
                        q["w"] = rng.standard_normal(q["w"].shape[:3] + (q["cin"],)).astype(np.float32)
                out.append(("cin", more_cin, (mpsnn.ShapeError,), "graph"))
        if k != "binary":
            def flat_short(q):
                q["w"] = np.ascontiguousarray(q["w"].reshape(-1)[:-1])
            out.append(("short weights", flat_short, (mpsnn.ShapeError,), "graph"))
            if q_shape_differs(p["w"]):
                def oihw(q):
                    w = q["w"]
                    w4 = w.reshape(w.shape[0], w.shape[1], w.shape[2], -1)
                    q["w"] = np.ascontiguousarray(w4.transpose(0, 3, 1, 2))
                out.append(("OIHW weights", oihw, (mpsnn.ShapeError,), "graph"))
            def f64(q):
                q["w"] = q["w"].astype(np.float64)
                q["force_type"] = mpsnn.MPSDataType.float32
            out.append(("float64 weights", f64, (mpsnn.DTypeError,), "graph"))
            def strided(q):
                w = np.repeat(q["w"], 2, axis=-1)[..., ::2]
                q["w"] = w
            if p["w"].ndim == 4 and p["w"].shape[-1] > 1:
                out.append(("non-contiguous weights", strided, (mpsnn.DTypeError,), "graph"))
            def nan_weights(q):
                q["w"] = q["w"].astype(np.float32).copy()
                q["w"].reshape(-1)[0] = np.nan
            out.append(("NaN weight", nan_weights, (mpsnn.ShapeError,), "graph"))
        def long_bias(q):
            q["b"] = np.zeros(q["cout"] + 1, np.float32)
        out.append(("bias length", long_bias, (mpsnn.ShapeError,), "graph"))
        for name in ("kh", "kw", "sy", "sx", "dy", "dx", "cout"):
            if name in ("sy", "sx", "dy", "dx") and k in ("fc",):
                continue
            if name not in p:
                continue
            v = draw(st.sampled_from([0, -1, -3]))
            def zero(q, name=name, v=v):
                q[name] = v
            out.append((f"{name}={v}", zero, (mpsnn.ShapeError,), "graph"))
        if k == "conv" and p["variant"] == "regular" and p["cin"] >= 2:
            def bad_groups(q):
                q["groups"] = q["cin"]
                q["w"] = np.zeros((q["cout"] * q["cin"],) + q["w"].shape[1:3] + (1,), np.float32)
                q["cout"] = q["cout"] * q["cin"]
                q["b"] = None
                q["neuron"] = None if (q["neuron"] or ("",))[0] == "prelu" else q["neuron"]
                q["bn_fold"] = None
            out.append(("groups", bad_groups, (mpsnn.ShapeError,), "graph"))
        if k == "fc":
            def bigger(q):
                q["kh"] += 1
                q["w"] = rng.standard_normal((q["cout"], q["kh"], q["kw"], q["cin"])).astype(np.float32)
            out.append(("fc kernel", bigger, (mpsnn.ShapeError,), "graph"))
        if k == "binary" and p["form"] == "arrays":
            def bad_arr(q):
                q["out_bias"] = np.zeros(q["cout"] + 2, np.float32)
            out.append(("output_bias_terms length", bad_arr, (mpsnn.ShapeError,), "graph"))
        if k == "conv" and p["variant"] == "depthwise":
            def multiplier(q):
                q["cout"] = 2 * q["cin"]
                q["b"] = None
                q["neuron"] = None
                q["bn_fold"] = None
            out.append(("depthwise multiplier", multiplier, (mpsnn.UnsupportedError,), "graph"))
        if k == "conv" and p["variant"] == "subpixel":
            def indivisible(q):
                q["cout"] += 1
                q["w"] = rng.standard_normal((q["cout"],) + q["w"].shape[1:]).astype(np.float32)
                q["b"] = None
                q["neuron"] = None
                q["bn_fold"] = None
            out.append(("sub-pixel channels", indivisible, (mpsnn.ShapeError,), "graph"))
    if k == "pool":
        for name in ("kh", "kw", "sy", "sx"):
            v = draw(st.sampled_from([0, -2]))
            def zero(q, name=name, v=v):
                q[name] = v
                q["form"] = "full"
            out.append((f"pool {name}={v}", zero, (mpsnn.ShapeError,), "node"))
        if p["mode"] == "dilated":
            def dil(q):
                q["dy"] = 0
                q["form"] = "full"
            out.append(("dilation 0", dil, (mpsnn.ShapeError,), "node"))
        if p["mode"] == "average":
            def zp(q):
                q["zero_pad"] = (-1, 0)
            out.append(("zero_pad -1", zp, (mpsnn.ShapeError,), "node-or-graph"))
        def valid_big(q):
            q["pad"] = dict(type="method", method=0)
            q["form"] = "full"
            q["kh"] = 100
        out.append(("valid-only window larger than the source", valid_big, (mpsnn.ShapeError,), "graph"))
    if k == "neuron":
        def short_prelu(q):
            q["neuron"] = ("prelu", None, None, None, np.full(2, 0.5, np.float32))
            q["form"] = "class"
        out.append(("prelu slopes", short_prelu, (mpsnn.ShapeError,), "graph-if-c>2"))
    if k == "arith":
        def stride2(q):
            q["pstr"] = (2, 1, 1)
        out.append(("stride 2", stride2, (mpsnn.ShapeError,), "node-or-graph"))
    if k in ("bn", "inorm"):
        def more_c(q):
            q["C"] += 1
            for name in ("gamma", "beta", "mean", "var"):
                if q.get(name) is not None:
                    q[name] = np.concatenate([q[name], np.ones(1, np.float32)])
        out.append(("data source channels", more_c, (mpsnn.ShapeError,), "graph"))
        if k == "bn":
            def neg_var(q):
                q["var"] = -np.ones(q["C"], np.float32)
            out.append(("negative variance", neg_var, (mpsnn.ShapeError,), "graph"))
    if k == "norm":
        def zero_k(q):
            q["k"] = 0
            q["k_arg"] = True
            q["kw"] = q["kh"] = 0
        out.append(("kernel 0", zero_k, (mpsnn.ShapeError,), "node-or-graph"))
        def neg_alpha(q):
            q["alpha"] = -1.0
        out.append(("alpha < 0", neg_alpha, (mpsnn.ShapeError,), "graph"))
    if k == "upsample":
        def zero_f(q):
            q["fx"] = draw(st.sampled_from([0, -1]))
        out.append(("scale factor", zero_f, (mpsnn.ShapeError,), "node-or-graph"))
    if k == "scale":
        def zero_size(q):
            q["ow"] = draw(st.sampled_from([0, -4]))
        out.append(("output size", zero_size, (mpsnn.ShapeError,), "node-or-graph"))
    if k == "dropout":
        def keep(q):
            q["keep"] = draw(st.sampled_from([0.0, -0.5, 1.5]))
        out.append(("keep_probability", keep, (mpsnn.ShapeError,), "node"))
        def mask(q):
            q["mask"] = (2, 1, 1)
        out.append(("mask stride", mask, (mpsnn.ShapeError,), "node"))
    return out


def q_shape_differs(w):
    return w.ndim == 4 and (w.shape[0], w.shape[3], w.shape[1], w.shape[2]) != w.shape


class BadPolicy(FuzzPolicy):
    """A custom policy whose hook does something the node cannot honour."""

    def __init__(self, what, method=16):
        super().__init__(dict(method=method))
        self.what = what

    def destination_image_descriptor(self, source_images, source_states, kernel, suggested):
        w = self.what
        if w == "int":
            return 3
        if w == "none":
            return None
        if w == "channels":
            suggested.feature_channels = suggested.feature_channels + 1
        elif w == "width0":
            suggested.width = 0
        elif w == "height-":
            suggested.height = -2
        elif w == "wider":
            suggested.width = suggested.width + 1
        elif w == "dest_offset":
            kernel.destination_feature_channel_offset = 4
        elif w == "src_offset":
            kernel.source_feature_channel_offset = 4
        elif w == "mirror":
            kernel.edge_mode = mpsnn.MPSImageEdgeMode.mirror
        elif w == "raise":
            raise KeyError("boom from the padding policy")
        return suggested


WINDOWED = {"conv", "pool", "binary"}
SIZE_PRESERVING = {"neuron", "softmax", "bn", "inorm", "norm", "dropout", "concat"}


def _policy_corruptions(op):
    """(policy, errors) a node of this kind must refuse."""
    k = op.kind
    if k == "fc" or (k == "binary" and op.params["fc"]):
        k = "binary fc"
    outs = [(BadPolicy("int"), (mpsnn.MPSGraphError,)), (BadPolicy("none"), (mpsnn.MPSGraphError,)),
            (BadPolicy("raise"), (KeyError,)),
            (BadPolicy("channels"), (mpsnn.UnsupportedError, mpsnn.ShapeError))]
    if k in SIZE_PRESERVING or k in ("arith", "binary fc", "upsample", "scale"):
        outs.append((BadPolicy("src_offset"), (mpsnn.UnsupportedError,)))
    if k in SIZE_PRESERVING or k in ("arith", "binary fc"):
        # these kernels compute their own result size only
        outs.append((BadPolicy("wider"), (mpsnn.UnsupportedError,)))
    if k in ("upsample", "scale"):
        outs.append((BadPolicy("width0"), (mpsnn.ShapeError,)))
    if k in WINDOWED:
        outs += [(BadPolicy("width0"), (mpsnn.ShapeError,)), (BadPolicy("height-"), (mpsnn.ShapeError,)),
                 (BadPolicy("dest_offset"), (mpsnn.UnsupportedError,)),
                 (BadPolicy("mirror"), (mpsnn.ShapeError, mpsnn.UnsupportedError)),
                 (BadPolicy("none", method=48), (mpsnn.ShapeError,)),
                 (BadPolicy("none", method=16 | 3), (mpsnn.ShapeError,))]
        if k != "conv":
            outs.append((BadPolicy("src_offset"), (mpsnn.UnsupportedError,)))
    return outs


@st.composite
def corrupted_graphs(draw):
    spec = draw(graph_specs(SMALL_GRAPHS))
    spec.entry = "run"
    need = sorted(spec.needed_ops())
    i = need[len(need) - 1 - draw(st.integers(0, len(need) - 1))]
    op = spec.ops[i]
    use_policy = draw(st.integers(0, 3)) == 0 and op.kind != "transpose"
    bad = copy.deepcopy(spec)
    if use_policy:
        policy, errors = draw(st.sampled_from(_policy_corruptions(op)))
        detail = f"{op.label}: padding policy {policy.what} (method {policy.pad['method']})"
        where = (label_of(spec, i),) if errors[0] is not KeyError else ("boom",)

        def trigger():
            _, nodes, filters = build(bad)
            filters[i].padding_policy = policy
            return _run_spec(bad, make_graph(bad, _device(), nodes, True))
        return Case("corrupted", detail, trigger, errors, where, lambda: _checked_run_fresh(spec), spec)
    options = _corruptions(draw, spec, i)
    if not options:
        options = [("none", None, None, None)]
    name, mutate, errors, at = draw(st.sampled_from(options))
    if mutate is None:
        return draw(corrupted_graphs())
    mutate(bad.ops[i].params)
    if at == "graph-if-c>2":
        ref, _ = evaluate(spec, [x.array() for x in spec.inputs])
        src = spec.ops[i].sources[0]
        if ref[src].shape[3] <= 2:
            return draw(corrupted_graphs())
        at = "graph"
    kind_name = OP_NAMES[op.kind]
    where = (label_of(spec, i),) if at == "graph" else (f"[{kind_name}", label_of(spec, i))

    def trigger():
        _, nodes, _ = build(bad)
        return _run_spec(bad, make_graph(bad, _device(), nodes, True))
    return Case("corrupted", f"{op.label}: {name}", trigger, errors, where, lambda: _checked_run_fresh(spec), bad)


def _checked_run_fresh(spec):
    _, nodes, _ = build(spec)
    _checked_run(spec, make_graph(spec, _device(), nodes, True))


# ------------------------------------------------------------------------------------------------
# 2. bad source images for a valid graph (then the same graph with good ones)

BAD_ARRAYS = ["float64", "int32", "bool", "complex", "strided", "fortran", "ndim3", "ndim5", "empty", "list", "none",
              "scalar", "object", "byteswapped", "count+1", "count-1"]


def _bad_feed(kind, a):
    if kind == "float64":
        return a.astype(np.float64)
    if kind == "int32":
        return a.astype(np.int32)
    if kind == "bool":
        return a > 0
    if kind == "complex":
        return a.astype(np.complex64)
    if kind == "strided":
        return np.repeat(a, 2, axis=2)[:, :, ::2]
    if kind == "fortran":
        return np.asfortranarray(np.concatenate([a, a], axis=0)) if a.ndim == 4 else a
    if kind == "ndim3":
        return a[0]
    if kind == "ndim5":
        return a[None]
    if kind == "empty":
        return a[:, :0]
    if kind == "list":
        return a.tolist()
    if kind == "none":
        return None
    if kind == "scalar":
        return 1.5
    if kind == "object":
        return a.astype(object)
    if kind == "byteswapped":
        return a.astype(a.dtype.newbyteorder(">")) if a.dtype.itemsize > 1 else a.astype(">f4")
    raise AssertionError(kind)


@st.composite
def bad_source_images(draw):
    spec = draw(graph_specs(SMALL_GRAPHS))
    spec.entry = "run"
    kind = draw(st.sampled_from(BAD_ARRAYS))
    _, nodes, _ = build(spec)
    g = make_graph(spec, _device(), nodes, draw(st.booleans()))
    labels = [h.label() for h in g.source_image_handles]
    arrays = [i.array() for i in spec.inputs]
    feed = [arrays[int(lab[1:])] for lab in labels]
    j = draw(st.integers(0, len(feed) - 1))
    if kind in ("count+1", "count-1"):
        bad = feed + [feed[0]] if kind == "count+1" else feed[:-1]
        errors = (mpsnn.MPSGraphError,)
        where = ("source image",)
        if not bad:
            errors = (mpsnn.MPSGraphError, ValueError)
    else:
        bad = list(feed)
        bad[j] = _bad_feed(kind, feed[j])
        if kind in ("strided", "fortran") and bad[j].flags.c_contiguous:
            kind = "ndim3"
            bad[j] = _bad_feed(kind, feed[j])
        errors = (mpsnn.MPSGraphError,) if kind == "none" else (mpsnn.DTypeError, mpsnn.ShapeError)
        where = ("source image",)
    return Case("source images", f"{kind} for source {j}", lambda: g.run(bad), errors, where,
                lambda: _checked_run(spec, g), spec)


# ------------------------------------------------------------------------------------------------
# 3. unknown indices and unsupported requests

@st.composite
def unknown_requests(draw):
    spec = draw(graph_specs(SMALL_GRAPHS))
    spec.entry = "run"
    _, nodes, filters = build(spec)
    g = make_graph(spec, _device(), nodes, True)
    n = len(g.source_image_handles)
    what = draw(st.sampled_from(["image index", "state index", "source states", "training_graph",
                                 "gradient of a gradient", "no gradient"]))
    recover = lambda: _checked_run(spec, g)  # noqa: E731
    if what == "image index":
        idx = draw(st.sampled_from([n, n + 3, -1]))
        return Case("unknown", f"read_count_for_source_image({idx})", lambda: g.read_count_for_source_image(idx),
                    (mpsnn.MPSGraphError,), ("read_count_for_source_image",), recover, spec)
    if what == "state index":
        idx = draw(st.sampled_from([0, 2, -1]))
        return Case("unknown", f"read_count_for_source_state({idx})", lambda: g.read_count_for_source_state(idx),
                    (mpsnn.MPSGraphError,), ("read_count_for_source_state",), recover, spec)
    if what == "source states":
        st_obj = mpsnn.MPSState(_device(), buffer_size=16)
        arrays = [i.array() for i in spec.inputs]
        feed = [arrays[int(h.label()[1:])] for h in g.source_image_handles]
        return Case("unknown", "source_states for a graph without source states",
                    lambda: g.run(feed, source_states=[st_obj]), (mpsnn.MPSGraphError,), ("source state",), recover,
                    spec)
    i = sorted(spec.needed_ops())[-1]
    f = filters[i]
    if what == "training_graph":
        # A node without a gradient (MPS has none for scale nodes) on the path of a training graph.
        scale = mpsnn.MPSNNBilinearScaleNode(source=mpsnn.MPSNNImageNode(), output_size=mpsnn.MTLSize(3, 3, 1))
        scale.label = "scaled"
        top = mpsnn.MPSCNNNeuronReLUNode(source=scale.result_image)
        return Case("unknown", "training_graph through a node without gradient", lambda: top.training_graph(),
                    (mpsnn.UnsupportedError,), ("'scaled'",), recover, spec)
    if what == "no gradient":
        x = mpsnn.MPSNNImageNode()
        node = draw(st.sampled_from(["division", "scale", "binary"]))
        if node == "division":
            fn = mpsnn.MPSNNDivisionNode(left_source=x, right_source=x)
        elif node == "scale":
            fn = mpsnn.MPSNNBilinearScaleNode(source=x, output_size=mpsnn.MTLSize(3, 3, 1))
        else:
            d = mpsnn.MPSCNNConvolutionDescriptor(1, 1, 1, 1)
            ds = mpsnn.ArrayConvolutionDataSource(d, np.zeros((1, 1, 1, 1), np.uint32))
            fn = mpsnn.MPSCNNBinaryConvolutionNode(x, ds, 1.0, mpsnn.MPSCNNBinaryConvolutionType.xnor, 0)
        fn.label = f"nograd-{node}"
        return Case("unknown", f"gradient_filters of a {node} node",
                    lambda: fn.gradient_filters(with_source=mpsnn.MPSNNImageNode()),
                    (mpsnn.UnsupportedError, NotImplementedError), (f"'nograd-{node}'",), recover, spec)
    x = mpsnn.MPSNNImageNode()
    relu = mpsnn.MPSCNNNeuronReLUNode(source=x)
    grad = relu.gradient_filter(with_source=mpsnn.MPSNNImageNode())
    grad.label = "relu-gradient"
    return Case("unknown", "gradient_filter of a gradient node",
                lambda: grad.gradient_filter(with_source=mpsnn.MPSNNImageNode()),
                (mpsnn.UnsupportedError, NotImplementedError), ("'relu-gradient'",), recover, spec)


# ------------------------------------------------------------------------------------------------
# 4. callbacks re-entering their own graph (graph-level cycles)

class ReenterPolicy(FuzzPolicy):
    """A no-op custom policy whose hook, while armed, calls back into its graph."""

    def __init__(self, reentry):
        super().__init__(dict(method=16))
        self.reentry = reentry

    def destination_image_descriptor(self, source_images, source_states, kernel, suggested):
        self.reentry()
        return suggested


class Reentry:
    """Calls `action` on `graph` once (while armed); keeps or raises the error it gets."""

    def __init__(self, action, catch):
        self.action, self.catch, self.armed, self.graph, self.feed, self.caught = action, catch, False, None, None, []

    def __call__(self):
        if not self.armed:
            return
        self.armed = False
        g, a = self.graph, self.action
        try:
            if a == "run":
                g.run(self.feed)
            elif a == "encode":
                g.encode(_device().make_command_queue().make_command_buffer(), self.feed)
            elif a == "reload":
                g.reload_from_data_sources()
            elif a == "plan_description":
                g.plan_description(self.feed)
            elif a == "encode_batch":
                g.encode_batch(_device().make_command_queue().make_command_buffer(),
                               [[np.ascontiguousarray(f[j:j + 1]) for j in range(f.shape[0])] for f in self.feed])
        except mpsnn.MPSGraphError as e:
            if not self.catch:
                raise
            self.caught.append(e)


@st.composite
def reentrant_callbacks(draw):
    spec = copy.deepcopy(draw(graph_specs(SMALL_GRAPHS)))
    spec.entry = "run"
    need = sorted(spec.needed_ops())
    action = draw(st.sampled_from(["run", "encode", "reload", "plan_description", "encode_batch"]))
    catch = draw(st.booleans())
    reentry = Reentry(action, catch)
    where = draw(st.sampled_from(["padding", "data source", "transform"]))
    sources = [i for i in need if spec.ops[i].kind in ("conv", "fc", "transpose", "binary")]
    scales = [i for i in need if spec.ops[i].kind == "scale"]
    if where == "data source" and sources:
        i = sources[draw(st.integers(0, len(sources) - 1))]
        spec.ops[i].params["_hook"] = reentry
    elif where == "transform" and scales:
        i = scales[draw(st.integers(0, len(scales) - 1))]
        spec.ops[i].params["provider"] = True
        spec.ops[i].params["_hook"] = reentry
    else:
        # a no-op custom policy on a ReLU appended to a kept value, which becomes result 0
        where = "padding"
        j = need[draw(st.integers(0, len(need) - 1))]
        spec.ops.append(OpSpec("neuron", [spec.value_of(j)], dict(neuron=("relu", None, None, None, None),
                                                                    form="class", pad=None), f"reentry{len(spec.ops)}"))
        i = len(spec.ops) - 1
        spec.results[0] = spec.value_of(i)
        spec.needed[0] = True
    _, nodes, filters = build(spec)
    if where == "padding":
        filters[i].padding_policy = ReenterPolicy(reentry)
    g = make_graph(spec, _device(), nodes, True)
    arrays = [x.array() for x in spec.inputs]
    reentry.graph, reentry.feed = g, [arrays[int(h.label()[1:])] for h in g.source_image_handles]
    label = label_of(spec, i)

    def trigger():
        reentry.armed = True
        if where == "data source":
            g.reload_from_data_sources()     # the graph reads its data sources again
        else:
            g.run(reentry.feed)
        if catch:
            assert reentry.caught, "the callback's call into its graph did not raise"
            raise reentry.caught[0]

    return Case("re-entrant", f"{where} callback of {spec.ops[i].label} calls {action} (catch={catch})",
                trigger, (mpsnn.MPSGraphError,), (label,), lambda: _checked_run(spec, g), spec)


# ------------------------------------------------------------------------------------------------
# 5. protocol objects returning values of the wrong type

class Source:
    """A convolution data source whose `broken` method returns `value`."""

    def __init__(self, cin, cout, broken, value):
        self.d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=1, kernel_height=1, input_feature_channels=cin,
                                                   output_feature_channels=cout)
        self.w = np.ones((cout, 1, 1, cin), np.float32)
        self.broken, self.value = broken, value

    def _get(self, name, good):
        return self.value if name == self.broken else good

    def data_type(self):
        return self._get("data_type", mpsnn.MPSDataType.float32)

    def descriptor(self):
        return self._get("descriptor", self.d)

    def weights(self):
        return self._get("weights", self.w)

    def bias_terms(self):
        return self._get("bias_terms", None)

    def load(self):
        return self._get("load", True)

    def purge(self):
        pass

    def label(self):
        return None


class NormSource:
    def __init__(self, c, broken, value):
        self.c, self.broken, self.value = c, broken, value

    def _get(self, name, good):
        return self.value if name == self.broken else good

    def number_of_feature_channels(self):
        return self._get("number_of_feature_channels", self.c)

    def gamma(self):
        return self._get("gamma", None)

    def beta(self):
        return self._get("beta", None)

    def mean(self):
        return self._get("mean", None)

    def variance(self):
        return self._get("variance", None)

    def epsilon(self):
        return self._get("epsilon", 1e-3)

    def load(self):
        return self._get("load", True)

    def purge(self):
        pass

    def label(self):
        return None


class MethodPolicy:
    def __init__(self, value):
        self.value = value

    def padding_method(self):
        return self.value


class BadProvider:
    def __init__(self, value):
        self.value = value

    def transform(self, for_source_image, handle):
        return self.value


CONV_BAD = [("data_type", "float32"), ("data_type", 2.5), ("load", "yes"), ("weights", [1.0, 2.0]),
            ("weights", "abc"), ("bias_terms", "abc"), ("bias_terms", [1.0, "x"]), ("descriptor", "desc")]
NORM_BAD = [("number_of_feature_channels", "3"), ("number_of_feature_channels", 2.5), ("gamma", "abc"),
            ("beta", [1.0, None]), ("epsilon", "x"), ("load", "maybe")]


@st.composite
def bad_protocol_objects(draw):
    c = draw(st.integers(1, 6))
    x = np.random.default_rng(draw(st.integers(0, 99))).standard_normal((1, 3, 4, c)).astype(np.float32)
    what = draw(st.sampled_from(["conv", "norm", "policy", "provider"]))
    label = f"proto-{what}"
    if what == "conv":
        broken, value = draw(st.sampled_from(CONV_BAD))
        ds = Source(c, 2, broken, value)
        node = mpsnn.MPSCNNConvolutionNode(source=mpsnn.MPSNNImageNode(), weights=ds)
        detail = f"convolution data source {broken}() returns {value!r}"
    elif what == "norm":
        broken, value = draw(st.sampled_from(NORM_BAD))
        ds = NormSource(c, broken, value)
        cls = draw(st.sampled_from([mpsnn.MPSCNNBatchNormalizationNode, mpsnn.MPSCNNInstanceNormalizationNode]))
        node = cls(source=mpsnn.MPSNNImageNode(), data_source=ds)
        detail = f"{cls.__name__} data source {broken}() returns {value!r}"
    elif what == "policy":
        value = draw(st.sampled_from(["abc", 2.5, 2 ** 40, None]))
        node = draw(st.sampled_from([
            lambda: mpsnn.MPSCNNNeuronReLUNode(source=mpsnn.MPSNNImageNode()),
            lambda: mpsnn.MPSCNNPoolingMaxNode(source=mpsnn.MPSNNImageNode(), filter_size=2)]))()
        node.padding_policy = MethodPolicy(value)
        detail = f"padding_method() returns {value!r}"
    else:
        value = draw(st.sampled_from(["abc", 3, object()]))
        node = mpsnn.MPSNNBilinearScaleNode(mpsnn.MPSNNImageNode(), BadProvider(value), mpsnn.MTLSize(3, 2, 1))
        detail = f"transform() returns {value!r}"
    node.label = label

    def trigger():
        return mpsnn.MPSNNGraph(_device(), node.result_image).run([x])
    return Case("protocol", detail, trigger, (mpsnn.DTypeError, mpsnn.ShapeError, mpsnn.MPSGraphError),
                (f"'{label}'",))


# ------------------------------------------------------------------------------------------------
# 6. sizes whose byte count overflows

HUGE = [2 ** 31, 2 ** 40, 2 ** 52, 2 ** 62, 2 ** 63 - 1]


@st.composite
def overflowing_sizes(draw):
    big = draw(st.sampled_from(HUGE))
    big2 = draw(st.sampled_from(HUGE))
    c = draw(st.integers(1, 4))
    x = np.ones((1, draw(st.integers(1, 5)), draw(st.integers(1, 5)), c), np.float32)
    what = draw(st.sampled_from(["upsample", "scale", "custom size", "custom offset", "conv kernel", "conv dilation",
                                 "transpose stride", "dilated pooling", "image descriptor", "texture descriptor",
                                 "sub-pixel"]))
    label = "huge-" + what.replace(" ", "-")
    src = mpsnn.MPSNNImageNode()
    where = (f"'{label}'",)
    errors = (mpsnn.ShapeError,)
    if what == "upsample":
        node = mpsnn.MPSCNNUpsamplingNearestNode(source=src, integer_scale_factor_x=big, integer_scale_factor_y=big2)
    elif what == "scale":
        node = mpsnn.MPSNNBilinearScaleNode(source=src, output_size=mpsnn.MTLSize(big, big2, 1))
    elif what in ("custom size", "custom offset"):
        node = mpsnn.MPSCNNPoolingMaxNode(source=src, filter_size=2)
        pad = dict(method=16, dw=min(big, 2 ** 62), dh=min(big2, 2 ** 62)) if what == "custom size" else \
            dict(method=16, ox=draw(st.sampled_from([-1, 1])) * min(2 ** 62 + big, 2 ** 63 - 8), oy=0)
        node.padding_policy = FuzzPolicy(pad)
    elif what in ("conv kernel", "conv dilation", "transpose stride", "sub-pixel"):
        if what == "conv kernel":
            d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=big, kernel_height=big2, input_feature_channels=c,
                                                  output_feature_channels=2)
            w = np.zeros(4, np.float32)
        elif what == "conv dilation":
            d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=3, kernel_height=1, input_feature_channels=c,
                                                  output_feature_channels=2)
            d.dilation_rate_x = big if big >= 2 ** 62 else 2 ** 62
            w = np.zeros((2, 1, 3, c), np.float32)
        elif what == "transpose stride":
            d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=1, kernel_height=1, input_feature_channels=c,
                                                  output_feature_channels=2)
            d.stride_in_pixels_x, d.stride_in_pixels_y = big, big2
            w = np.zeros((2, 1, 1, c), np.float32)
        else:
            d = mpsnn.MPSCNNSubPixelConvolutionDescriptor(kernel_width=1, kernel_height=1, input_feature_channels=c,
                                                          output_feature_channels=4)
            d.sub_pixel_scale_factor = big
            w = np.zeros((4, 1, 1, c), np.float32)
        ds = mpsnn.ArrayConvolutionDataSource(d, w)
        if what == "transpose stride":
            node = mpsnn.MPSCNNConvolutionTransposeNode(source=src, convolution_gradient_state=None, weights=ds)
            if x.shape[1] == 1 or x.shape[2] == 1:
                x = np.ones((1, 3, 3, c), np.float32)
        else:
            node = mpsnn.MPSCNNConvolutionNode(source=src, weights=ds)
    elif what == "dilated pooling":
        node = mpsnn.MPSCNNDilatedPoolingMaxNode(src, 3, 2, 1, 1, max(big, 2 ** 62), 1)
    else:
        def trigger():
            if what == "image descriptor":
                d = mpsnn.MPSImageDescriptor(mpsnn.MPSImageFeatureChannelFormat.float32, big, big2, c)
                img = mpsnn.MPSImage(_device(), d)
            else:
                td = mpsnn.MTLTextureDescriptor.texture2d_descriptor(mpsnn.MTLPixelFormat.rgba32_float, big, big2,
                                                                      False)
                img = _device().make_texture(td)
            return img
        return Case("overflow", f"{what} {big}x{big2}", trigger, errors, ("[MPSImage]", "[MTLTexture]"))
    node.label = label

    def trigger():
        return mpsnn.MPSNNGraph(_device(), node.result_image).run([x])
    return Case("overflow", f"{what} {big}x{big2}", trigger, errors, where)


CATEGORIES = {"corrupted": corrupted_graphs, "source images": bad_source_images, "unknown": unknown_requests,
              "re-entrant": reentrant_callbacks, "protocol": bad_protocol_objects, "overflow": overflowing_sizes}


@st.composite
def invalid_cases(draw, categories=None):
    """A Case of one of the categories (all by default), chosen uniformly."""
    names = sorted(categories or CATEGORIES)
    return draw(CATEGORIES[draw(st.sampled_from(names))]())
