"""What a fuzzed graph is, how its mpsnn nodes are built, and a float64 reference interpreter for it.

A GraphSpec is a plain description: inputs (shape, dtype, value domain, seed), ops in topological
order (op i produces value len(inputs) + i), results, exported values and run options. `build`
turns it into mpsnn nodes; `evaluate` walks the same description with the float64 oracles of
tests/reference, checking the shape rules of spec/nodes.md on the way (an op the implementation
must reject raises Invalid). The strategies in strategies.py generate GraphSpecs; the tests run
them (check_valid_spec) and compare.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

import mpsnn
import reference as R
from ops._common import Handle

PM = mpsnn.MPSNNPaddingMethod
CUSTOM = int(PM.custom)
ALLOW_FUSION = int(PM.custom_allow_for_node_fusion)
EXCLUDE_EDGES = int(PM.exclude_edges)
TF_SAME = R.SIZE_SAME | R.ALIGN_CENTERED | R.ADD_REMAINDER_TO_BOTTOM_RIGHT
FLT_MIN = float(np.finfo(np.float32).tiny)
F = mpsnn.MPSImageFeatureChannelFormat
FORMATS = {"float32": F.float32, "float16": F.float16, "unorm8": F.unorm8, "unorm16": F.unorm16, "none": F.none}


class Invalid(Exception):
    """The interpreter's verdict: the implementation must reject this op with `error`."""

    def __init__(self, error, reason):
        super().__init__(reason)
        self.error = error


def require(cond, reason, error=mpsnn.ShapeError):
    if not cond:
        raise Invalid(error, reason)


# ------------------------------------------------------------------------------------------------
# the description

@dataclass
class InputSpec:
    shape: tuple            # (N, H, W, C)
    dtype: str = "float32"  # float32 | float16 | uint8 | uint16
    domain: str = "normal"  # normal: N(0, 1); positive: U(0.5, 2)
    seed: int = 0

    def array(self):
        """The array handed to the graph."""
        rng = np.random.default_rng(self.seed)
        if self.dtype in ("uint8", "uint16"):
            top = 255 if self.dtype == "uint8" else 65535
            lo = top // 4 if self.domain == "positive" else 0
            return rng.integers(lo, top + 1, size=self.shape).astype(self.dtype)
        if self.domain == "positive":
            v = rng.uniform(0.5, 2.0, self.shape)
        else:
            v = rng.standard_normal(self.shape)
        return v.astype(self.dtype)


def input_values(array):
    """float64 values the graph reads from an input array (unorm formats are scaled to [0, 1])."""
    a = np.asarray(array)
    if a.dtype == np.uint8:
        return a.astype(np.float64) / 255.0
    if a.dtype == np.uint16:
        return a.astype(np.float64) / 65535.0
    return a.astype(np.float64)


@dataclass
class OpSpec:
    kind: str
    sources: list
    params: dict
    label: str

    def __repr__(self):
        ps = {k: (f"<array {v.shape} {v.dtype}>" if isinstance(v, np.ndarray) else v) for k, v in self.params.items()}
        return f"OpSpec({self.kind!r}, sources={self.sources}, label={self.label!r}, params={ps})"


@dataclass
class GraphSpec:
    inputs: list
    ops: list = field(default_factory=list)
    results: list = field(default_factory=list)
    needed: list = field(default_factory=list)
    exported: list = field(default_factory=list)
    formats: dict = field(default_factory=dict)   # exported value -> node format name
    multi: bool = False                           # the result_images initializer
    graph_format: str = "float32"
    entry: str = "run"                            # run | encode | encode_batch | execute_async
    repeat: bool = False                          # run twice (plan cache, determinism)

    def value_of(self, op_index):
        return len(self.inputs) + op_index

    def op_of(self, value):
        return value - len(self.inputs) if value >= len(self.inputs) else None

    def needed_ops(self):
        """Ops the graph keeps: ancestors (through images and convolution states) of the needed
        results and of the exported values that lie on a path to some result."""
        def ancestors(values):
            out, work = set(), list(values)
            while work:
                i = self.op_of(work.pop())
                if i is None or i in out:
                    continue
                out.add(i)
                work.extend(self.ops[i].sources)
                paired = self.ops[i].params.get("paired")
                if paired is not None:
                    work.append(self.value_of(paired))
            return out
        graph_ops = ancestors(self.results)
        keep = [v for v, n in zip(self.results, self.needed) if n]
        keep += [v for v in self.exported if self.op_of(v) in graph_ops]
        return ancestors(keep)

    def graph_values(self):
        """Value ids discover() reaches from the results (needed or not), through images and
        convolution states."""
        seen, work = set(), list(self.results)
        while work:
            v = work.pop()
            if v in seen:
                continue
            seen.add(v)
            i = self.op_of(v)
            if i is not None:
                work.extend(self.ops[i].sources)
                p = self.ops[i].params.get("paired")
                if p is not None:
                    work.append(self.value_of(p))
        return seen

    def graph_inputs(self):
        """Input indices the graph reads (its source images)."""
        return {v for v in self.graph_values() if self.op_of(v) is None}

    def exported_in_graph(self):
        values = self.graph_values()
        return [v for v in self.exported if v in values and self.op_of(v) is not None]

    def describe(self):
        lines = [f"GraphSpec(entry={self.entry}, multi={self.multi}, format={self.graph_format}, "
                 f"results={self.results}, needed={self.needed}, exported={self.exported}, formats={self.formats})"]
        for i, s in enumerate(self.inputs):
            lines.append(f"  v{i} = input {s}")
        for i, op in enumerate(self.ops):
            lines.append(f"  v{self.value_of(i)} = {op!r}")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# padding policies

class FuzzPolicy:
    """A custom MPSNNPadding: keeps the size of `method`, then (in its hook) sets the edge mode,
    moves the kernel offset, resizes the result or sets a source channel window."""

    def __init__(self, pad):
        self.pad = dict(pad)
        self.calls = 0

    def padding_method(self):
        return int(self.pad["method"]) | CUSTOM | (ALLOW_FUSION if self.pad.get("allow") else 0)

    def label(self):
        return f"FuzzPolicy({self.pad})"

    def destination_image_descriptor(self, source_images, source_states, kernel, suggested):
        self.calls += 1
        p = self.pad
        if p.get("edge") is not None:
            kernel.edge_mode = mpsnn.MPSImageEdgeMode.clamp if p["edge"] == "clamp" else mpsnn.MPSImageEdgeMode.zero
        if p.get("ox") or p.get("oy"):
            kernel.offset = mpsnn.MPSOffset(kernel.offset.x + p.get("ox", 0), kernel.offset.y + p.get("oy", 0), 0)
        if p.get("chan_off"):
            kernel.source_feature_channel_offset = p["chan_off"]
        if p.get("max_count") is not None:
            kernel.source_feature_channel_max_count = p["max_count"]
        if p.get("dw") or p.get("dh"):
            suggested.width = suggested.width + p.get("dw", 0)
            suggested.height = suggested.height + p.get("dh", 0)
        return suggested


def make_padding(pad):
    if pad is None:
        return None
    t = pad["type"]
    if t == "method":
        return mpsnn.MPSNNDefaultPadding.padding_with_method(int(pad["method"]))
    if t == "tf_avg":
        return mpsnn.MPSNNDefaultPadding.padding_for_tensorflow_average_pooling()
    if t == "tf_avg_valid":
        return mpsnn.MPSNNDefaultPadding.padding_for_tensorflow_average_pooling_valid_only()
    if t == "custom":
        return FuzzPolicy(pad)
    raise AssertionError(t)


def window(x_shape, k, s, d, pad, default_method, reverse=False):
    """Resolved window geometry of a windowed node: dict(pad=(Py, Px), out=(Dh, Dw), edge, method,
    chan=(offset, max_count)). Raises Invalid for a result size <= 0."""
    method, edge, dh, dw, oy, ox = default_method, None, 0, 0, 0, 0
    chan = (0, None)
    if pad is not None:
        t = pad["type"]
        if t == "method":
            method = pad["method"]
        elif t == "tf_avg":
            method, edge = TF_SAME, "clamp"
        elif t == "tf_avg_valid":
            method, edge = R.SIZE_VALID_ONLY, "clamp"
        else:
            method, edge = pad["method"], pad.get("edge")
            dh, dw, oy, ox = pad.get("dh", 0), pad.get("dw", 0), pad.get("oy", 0), pad.get("ox", 0)
            chan = (pad.get("chan_off", 0), pad.get("max_count"))
    base = method & ~(CUSTOM | ALLOW_FUSION | EXCLUDE_EDGES)
    try:
        g = R.window_geometry(x_shape[1:3], k, s, d, base, reverse)
    except ValueError as e:
        # a custom hook may still make the size positive: no verdict then (error None)
        raise Invalid(None if (dh or dw) else mpsnn.ShapeError, f"result size <= 0 ({e})")
    out = (g["D_h"] + dh, g["D_w"] + dw)
    require(out[0] > 0 and out[1] > 0, f"custom padding gives result {out}")
    return dict(pad=(g["Py"] - oy, g["Px"] - ox), out=out, edge=edge, method=method, chan=chan)


# ------------------------------------------------------------------------------------------------
# node kinds: build (mpsnn node) and apply (float64 reference, with the shape rules)

NEURONS = {
    # name: (class, constructor parameters)
    "relu": ("MPSCNNNeuronReLUNode", "a"),
    "linear": ("MPSCNNNeuronLinearNode", "ab"),
    "sigmoid": ("MPSCNNNeuronSigmoidNode", ""),
    "hard_sigmoid": ("MPSCNNNeuronHardSigmoidNode", "ab"),
    "tanh": ("MPSCNNNeuronTanHNode", "ab"),
    "absolute": ("MPSCNNNeuronAbsoluteNode", ""),
    "soft_plus": ("MPSCNNNeuronSoftPlusNode", "ab"),
    "soft_sign": ("MPSCNNNeuronSoftSignNode", ""),
    "elu": ("MPSCNNNeuronELUNode", "a"),
    "relu_n": ("MPSCNNNeuronReLUNNode", "ab"),
    "power": ("MPSCNNNeuronPowerNode", "abc"),
    "exponential": ("MPSCNNNeuronExponentialNode", "abc"),
    "logarithm": ("MPSCNNNeuronLogarithmNode", "abc"),
    "prelu": ("MPSCNNNeuronPReLUNode", ""),
    "none": (None, ""),
}


def neuron_descriptor(nd):
    """MPSNNNeuronDescriptor of (name, a, b, c, data)."""
    name, a, b, c, data = nd
    if name == "prelu":
        return mpsnn.MPSNNNeuronDescriptor.cnn_neuron_prelu_descriptor(np.asarray(data, np.float32).tolist())
    return mpsnn.MPSNNNeuronDescriptor.cnn_neuron_descriptor(mpsnn.MPSCNNNeuronType(R.NEURON_TYPE_CODES[name]), a, b, c)


def apply_neuron(x, nd):
    name, a, b, c, data = nd
    if name == "prelu":
        n = np.asarray(data).size
        require(n == 1 or n >= x.shape[3], f"PReLU has {n} slopes for {x.shape[3]} channels")
    return R.neuron(x, name, a, b, c, data=data)


class ConvData:
    """A plain MPSCNNConvolutionDataSource (optionally calling `hook` from weights())."""

    def __init__(self, descriptor, weights, bias=None, label=None, hook=None, data_type=None, quant=None):
        self._d, self._w, self._b, self._label, self.hook = descriptor, weights, bias, label, hook
        self._type, self._quant = data_type, quant

    def data_type(self):
        if self._type is not None:
            return self._type
        return {np.dtype(np.float32): mpsnn.MPSDataType.float32, np.dtype(np.float16): mpsnn.MPSDataType.float16,
                np.dtype(np.uint32): mpsnn.MPSDataType.uint32,
                np.dtype(np.uint8): mpsnn.MPSDataType.uint8}[np.asarray(self._w).dtype]

    # uint8 weights (nodes.md §4.1): linear (per output channel (lo, hi)) or a 256-entry table
    def weights_quantization_type(self):
        return {None: 0, "linear": 1, "lut": 2}[None if self._quant is None else self._quant[0]]

    def ranges_for_uint8_kernel(self):
        return self._quant[1].reshape(-1)

    def lookup_table_for_uint8_kernel(self):
        return self._quant[1]

    def descriptor(self):
        return self._d

    def weights(self):
        if self.hook is not None:
            self.hook()
        return self._w

    def bias_terms(self):
        return self._b

    def load(self):
        return True

    def purge(self):
        pass

    def label(self):
        return self._label


def conv_descriptor(p, cls=None):
    cls = cls or mpsnn.MPSCNNConvolutionDescriptor
    d = cls(kernel_width=p["kw"], kernel_height=p["kh"], input_feature_channels=p["cin"],
            output_feature_channels=p["cout"])
    d.stride_in_pixels_x, d.stride_in_pixels_y = p.get("sx", 1), p.get("sy", 1)
    d.dilation_rate_x, d.dilation_rate_y = p.get("dx", 1), p.get("dy", 1)
    if cls is not mpsnn.MPSCNNDepthWiseConvolutionDescriptor:
        d.groups = p.get("groups", 1)
    if p.get("r", 1) > 1:
        d.sub_pixel_scale_factor = p["r"]
    if p.get("neuron") is not None:
        d.fused_neuron_descriptor = neuron_descriptor(p["neuron"])
    if p.get("bn_fold") is not None:
        mean, var, gamma, beta, eps = p["bn_fold"]
        d.set_batch_normalization_parameters_for_inference(mean.tolist(), var.tolist(), gamma.tolist(),
                                                           beta.tolist(), eps)
    return d


def conv_source(p, cls=None):
    """The op's data source; p["_hook"] (if any) is called from weights() (re-entrance tests)."""
    return ConvData(conv_descriptor(p, cls), p["w"], p.get("b"), p.get("ds_label"), p.get("_hook"),
                    p.get("force_type"), p.get("quant"))


def _weights64(p):
    """float64 weights and bias the reference uses (descriptor batch norm folded)."""
    w = np.asarray(p["w"], np.float64)
    if p.get("quant") is not None:
        kind, table = p["quant"]
        u = np.asarray(p["w"])
        if kind == "linear":   # per output channel: u/255·(hi − lo) + lo (float32 arithmetic)
            lo = table[:, 0].reshape((-1,) + (1,) * (u.ndim - 1))
            hi = table[:, 1].reshape((-1,) + (1,) * (u.ndim - 1))
            w = (u.astype(np.float32) / np.float32(255) * (hi - lo) + lo).astype(np.float64)
        else:
            w = np.asarray(table, np.float64)[u]
    b = None if p.get("b") is None else np.asarray(p["b"], np.float64)
    if p.get("bn_fold") is not None:
        mean, var, gamma, beta, eps = p["bn_fold"]
        w, b = R.fold_batch_norm(w, b, mean, var, gamma, beta, np.float32(eps))
    return w, b


def _resize(p):
    """(dh, dw) a custom padding policy adds to a node's fixed result size."""
    pad = p.get("pad") or {}
    return (pad.get("dh", 0), pad.get("dw", 0)) if pad.get("type") == "custom" else (0, 0)


def _post(y, p):
    return y if p.get("neuron") is None else apply_neuron(y, p["neuron"])


class Kind:
    name = ""
    padded = False

    def build(self, op, srcs, filters):
        raise NotImplementedError

    def apply(self, op, xs, aux, index):
        raise NotImplementedError


class Conv(Kind):
    """Regular, depthwise and sub-pixel convolution (nodes.md §4.2)."""

    def build(self, op, srcs, filters):
        p = op.params
        cls = {"regular": None, "depthwise": mpsnn.MPSCNNDepthWiseConvolutionDescriptor,
               "subpixel": mpsnn.MPSCNNSubPixelConvolutionDescriptor}[p["variant"]]
        n = mpsnn.MPSCNNConvolutionNode(source=srcs[0], weights=conv_source(p, cls))
        n.accumulator_precision = p.get("accumulator", 1)
        return n

    def apply(self, op, xs, aux, index):
        p = op.params
        x = xs[0]
        k, s, d = (p["kh"], p["kw"]), (p["sy"], p["sx"]), (p["dy"], p["dx"])
        geo = window(x.shape, k, s, d, p.get("pad"), R.SIZE_SAME)
        off, max_count = geo["chan"]
        C = x.shape[3]
        if off or max_count is not None:
            require(0 <= off < C and (max_count is None or max_count > 0), "channel window outside the source")
            left = C - off if max_count is None else min(max_count, C - off)
            require(left >= p["cin"], f"channel window leaves {left} channels; descriptor expects {p['cin']}")
            count = p["cin"]
        else:
            require(C == p["cin"], f"source has {C} channels; descriptor expects {p['cin']}")
            count = None
        w, b = _weights64(p)
        edge = geo["edge"] or "zero"
        if p["variant"] == "depthwise":
            y = R.conv2d(x, w.reshape(w.shape[:3]), b, s, d, 1, geo["pad"], geo["out"], depthwise=True,
                         edge_mode=edge)
        else:
            y = R.conv2d(x, w, b, s, d, p["groups"], geo["pad"], geo["out"], edge_mode=edge,
                         channel_offset=off, channel_count=count)
            if p["variant"] == "subpixel":
                y = R.subpixel_shuffle(y, p["r"])
        aux[index] = dict(pad=geo["pad"], src_hw=x.shape[1:3])
        return _post(y, p)


class FullyConnected(Kind):
    def build(self, op, srcs, filters):
        return mpsnn.MPSCNNFullyConnectedNode(source=srcs[0], weights=conv_source(op.params))

    def apply(self, op, xs, aux, index):
        p = op.params
        x = xs[0]
        require(x.shape[3] == p["cin"], f"source has {x.shape[3]} channels; descriptor expects {p['cin']}")
        require(x.shape[1:3] == (p["kh"], p["kw"]), "a fully connected kernel must cover the whole source")
        w, b = _weights64(p)
        return _post(R.fully_connected(x, w, b), p)


class Transpose(Kind):
    def build(self, op, srcs, filters):
        p = op.params
        state = None if p.get("paired") is None else filters[p["paired"]].convolution_gradient_state
        return mpsnn.MPSCNNConvolutionTransposeNode(source=srcs[0], convolution_gradient_state=state,
                                                    weights=conv_source(p))

    def apply(self, op, xs, aux, index):
        p = op.params
        x = xs[0]
        require(x.shape[3] == p["cin"], f"source has {x.shape[3]} channels; descriptor expects {p['cin']}")
        k, s, d = (p["kh"], p["kw"]), (p["sy"], p["sx"]), (p["dy"], p["dx"])
        if p.get("paired") is not None:
            conv = aux[p["paired"]]
            pz = tuple(R.transpose_pad_from_conv(P, kk, dd) for P, kk, dd in zip(conv["pad"], k, d))
            dh, dw = _resize(p)
            out = (conv["src_hw"][0] + dh, conv["src_hw"][1] + dw)
            require(out[0] > 0 and out[1] > 0, f"custom padding gives result {out}")
        else:
            geo = window(x.shape, k, s, d, p.get("pad"), R.SIZE_SAME, reverse=True)
            pz, out = geo["pad"], geo["out"]
        w, b = _weights64(p)
        return _post(R.conv_transpose2d(x, w, b, s, d, p["groups"], pad_z=pz, out_hw=out), p)


BT = mpsnn.MPSCNNBinaryConvolutionType


class BinaryConv(Kind):
    def build(self, op, srcs, filters):
        p = op.params
        cls = mpsnn.MPSCNNBinaryFullyConnectedNode if p["fc"] else mpsnn.MPSCNNBinaryConvolutionNode
        ds = conv_source(p)
        t = BT(p["type"])
        if p["form"] == "scale":
            return cls(srcs[0], ds, p["scale"], t, p["flags"])
        arr = [None if p[k] is None else p[k].tolist() for k in ("out_bias", "out_scale", "in_bias", "in_scale")]
        return cls(srcs[0], ds, *arr, t, p["flags"])

    def apply(self, op, xs, aux, index):
        p = op.params
        x = xs[0]
        require(x.shape[3] == p["cin"], f"source has {x.shape[3]} channels; descriptor expects {p['cin']}")
        if p["form"] == "scale":
            out_scale = np.full(p["cout"], p["scale"])
            out_bias = None if p.get("b") is None else np.asarray(p["b"], np.float64)
            in_scale = in_bias = None
        else:
            out_bias, out_scale, in_bias, in_scale = (p[k] for k in ("out_bias", "out_scale", "in_bias", "in_scale"))
        if p["fc"]:
            require(x.shape[1:3] == (p["kh"], p["kw"]), "a fully connected kernel must cover the whole source")
            y = R.binary_fully_connected(x, p["w"], p["cin"], p["type"], p["flags"], out_scale, out_bias,
                                         in_scale, in_bias)
        else:
            k, s, d = (p["kh"], p["kw"]), (p["sy"], p["sx"]), (p["dy"], p["dx"])
            geo = window(x.shape, k, s, d, p.get("pad"), R.SIZE_VALID_ONLY)
            y = R.binary_conv2d(x, p["w"], p["cin"], p["type"], p["flags"], out_scale, out_bias, in_scale, in_bias,
                                s, geo["pad"], geo["out"], d)
        return _post(y, p)


POOL_CLASSES = {"max": "MPSCNNPoolingMaxNode", "average": "MPSCNNPoolingAverageNode", "l2": "MPSCNNPoolingL2NormNode"}
EDGE = {"zero": mpsnn.MPSImageEdgeMode.zero, "clamp": mpsnn.MPSImageEdgeMode.clamp}


class Pool(Kind):
    def build(self, op, srcs, filters):
        p = op.params
        if p["mode"] == "dilated":
            cls = mpsnn.MPSCNNDilatedPoolingMaxNode
            if p["form"] == "size":
                n = cls(source=srcs[0], filter_size=p["kh"])
            elif p["form"] == "size_stride":
                n = cls(source=srcs[0], filter_size=p["kh"], stride=p["sy"], dilation_rate=p["dy"])
            else:
                n = cls(srcs[0], p["kw"], p["kh"], p["sx"], p["sy"], p["dx"], p["dy"])
        else:
            cls = getattr(mpsnn, POOL_CLASSES[p["mode"]])
            if p["form"] == "size":
                n = cls(source=srcs[0], filter_size=p["kh"])
            elif p["form"] == "size_stride":
                n = cls(source=srcs[0], filter_size=p["kh"], stride=p["sy"])
            else:
                n = cls(srcs[0], p["kw"], p["kh"], p["sx"], p["sy"])
            if p.get("zero_pad") is not None:
                n.zero_pad_size_y, n.zero_pad_size_x = p["zero_pad"]
        if p.get("edge") is not None:
            n.edge_mode = EDGE[p["edge"]]
        return n

    def apply(self, op, xs, aux, index):
        p = op.params
        x = xs[0]
        k, s, d = (p["kh"], p["kw"]), (p["sy"], p["sx"]), (p.get("dy", 1), p.get("dx", 1))
        geo = window(x.shape, k, s, d, p.get("pad"), R.SIZE_SAME)
        edge = geo["edge"] or p.get("edge") or "clamp"
        mode = "max" if p["mode"] == "dilated" else p["mode"]
        return R.pool2d(x, mode, k, s, geo["pad"], geo["out"], d, edge, zero_pad_hw=p.get("zero_pad") or (0, 0),
                        exclude_edges=bool(geo["method"] & EXCLUDE_EDGES) and mode == "average")


class Neuron(Kind):
    def build(self, op, srcs, filters):
        p = op.params
        name, a, b, c, data = p["neuron"]
        cls_name, args = NEURONS[name]
        if p["form"] == "descriptor" or cls_name is None:
            return mpsnn.MPSCNNNeuronNode.node(srcs[0], neuron_descriptor(p["neuron"]))
        cls = getattr(mpsnn, cls_name)
        if name == "prelu":
            return cls(source=srcs[0], a_data=np.asarray(data, np.float32))
        kw = {k: v for k, v in zip("abc", (a, b, c)) if k in args and v is not None}
        return cls(source=srcs[0], **kw)

    def apply(self, op, xs, aux, index):
        return apply_neuron(xs[0], op.params["neuron"])


ARITH = {"add": "MPSNNAdditionNode", "subtract": "MPSNNSubtractionNode", "multiply": "MPSNNMultiplicationNode",
         "divide": "MPSNNDivisionNode"}


class Arithmetic(Kind):
    def build(self, op, srcs, filters):
        p = op.params
        cls = getattr(mpsnn, ARITH[p["op"]])
        n = cls(sources=[srcs[0], srcs[1]]) if p["form"] == "sources" else cls(left_source=srcs[0],
                                                                                  right_source=srcs[1])
        n.primary_scale, n.secondary_scale, n.bias = p["ps"], p["ss"], p["bias"]
        (n.primary_stride_in_feature_channels, n.primary_stride_in_pixels_y,
         n.primary_stride_in_pixels_x) = p["pstr"]
        (n.secondary_stride_in_feature_channels, n.secondary_stride_in_pixels_y,
         n.secondary_stride_in_pixels_x) = p["sstr"]
        if p.get("lo") is not None:
            n.minimum_value = p["lo"]
        if p.get("hi") is not None:
            n.maximum_value = p["hi"]
        return n

    def apply(self, op, xs, aux, index):
        p = op.params
        a, b = xs
        try:
            R.result_shape(a.shape, b.shape, p["pstr"], p["sstr"])
        except ValueError as e:
            raise Invalid(mpsnn.ShapeError, str(e))
        lo = -R.FLT_MAX if p.get("lo") is None else np.float32(p["lo"])
        hi = R.FLT_MAX if p.get("hi") is None else np.float32(p["hi"])
        return R.binary_arithmetic(p["op"], a, b, np.float32(p["ps"]), np.float32(p["ss"]), np.float32(p["bias"]),
                                   p["pstr"], p["sstr"], lo, hi)


class Concat(Kind):
    def build(self, op, srcs, filters):
        return mpsnn.MPSNNConcatenationNode(sources=list(srcs))

    def apply(self, op, xs, aux, index):
        for x in xs[1:]:
            require(x.shape[:3] == xs[0].shape[:3], "concatenated sources differ in N, H or W")
        return R.concatenate(xs)


class SoftMax(Kind):
    def build(self, op, srcs, filters):
        cls = mpsnn.MPSCNNLogSoftMaxNode if op.params["log"] else mpsnn.MPSCNNSoftMaxNode
        return cls(source=srcs[0])

    def apply(self, op, xs, aux, index):
        return R.log_softmax(xs[0]) if op.params["log"] else R.softmax(xs[0])


class Dropout(Kind):
    def build(self, op, srcs, filters):
        p = op.params
        return mpsnn.MPSCNNDropoutNode(source=srcs[0], keep_probability=p["keep"], seed=p["seed"],
                                       mask_stride_in_pixels=list(p["mask"]))

    def apply(self, op, xs, aux, index):
        return R.dropout_inference(xs[0])


class BatchNorm(Kind):
    def build(self, op, srcs, filters):
        p = op.params
        ds = mpsnn.ArrayBatchNormalizationDataSource(p["gamma"], p["beta"], p["mean"], p["var"], epsilon=p["eps"],
                                                     number_of_feature_channels=p["C"])
        n = mpsnn.MPSCNNBatchNormalizationNode(source=srcs[0], data_source=ds)
        if p["flags"] is not None:
            n.flags = mpsnn.MPSCNNBatchNormalizationFlags(p["flags"])
        return n

    def apply(self, op, xs, aux, index):
        p = op.params
        x = xs[0]
        require(x.shape[3] == p["C"], f"source has {x.shape[3]} channels; data source has {p['C']}")
        eps = np.float32(FLT_MIN if p["eps"] is None else p["eps"])
        if p["flags"] == 1:
            return R.batch_norm_training(x, p["gamma"], p["beta"], eps)
        return R.batch_norm_inference(x, p["mean"], p["var"], p["gamma"], p["beta"], eps)


class InstanceNorm(Kind):
    def build(self, op, srcs, filters):
        p = op.params
        ds = mpsnn.ArrayInstanceNormalizationDataSource(p["gamma"], p["beta"], epsilon=p["eps"],
                                                        number_of_feature_channels=p["C"])
        return mpsnn.MPSCNNInstanceNormalizationNode(source=srcs[0], data_source=ds)

    def apply(self, op, xs, aux, index):
        p = op.params
        x = xs[0]
        require(x.shape[3] == p["C"], f"source has {x.shape[3]} channels; data source has {p['C']}")
        eps = np.float32(FLT_MIN if p["eps"] is None else p["eps"])
        return R.instance_norm(x, p["gamma"], p["beta"], eps)


class Normalization(Kind):
    """Cross-channel (LRN), spatial and local contrast normalization (nodes.md §8.2-8.4)."""

    def build(self, op, srcs, filters):
        p = op.params
        cls = {"cross": mpsnn.MPSCNNCrossChannelNormalizationNode, "spatial": mpsnn.MPSCNNSpatialNormalizationNode,
               "lcn": mpsnn.MPSCNNLocalContrastNormalizationNode}[p["mode"]]
        n = cls(source=srcs[0], kernel_size=p["k"]) if p["k_arg"] else cls(source=srcs[0])
        if p["mode"] != "cross":
            if p["kw"] != p["k"]:
                n.kernel_width = p["kw"]
            if p["kh"] != p["k"]:
                n.kernel_height = p["kh"]
        for name in ("alpha", "beta", "delta", "pm", "ps", "p0"):
            if p.get(name) is not None:
                setattr(n, name, p[name])
        return n

    def apply(self, op, xs, aux, index):
        p = op.params
        x = xs[0]
        defaults = {"cross": (1.0, 5.0, 1.0), "spatial": (1.0, 5.0, 1.0), "lcn": (1.0, 0.5, 1.0 / 1024)}[p["mode"]]
        alpha, beta, delta = (np.float32(d if p.get(n) is None else p[n])
                              for n, d in zip(("alpha", "beta", "delta"), defaults))
        if p["mode"] == "cross":
            return R.cross_channel_norm(x, p["k"], alpha, beta, delta)
        if p["mode"] == "spatial":
            return R.spatial_norm(x, p["kw"], p["kh"], alpha, beta, delta)
        pm, ps, p0 = (np.float32(d if p.get(n) is None else p[n]) for n, d in zip(("pm", "ps", "p0"), (0, 1, 1)))
        return R.local_contrast_norm(x, p["kw"], p["kh"], alpha, beta, delta, pm, ps, p0)


class Upsample(Kind):
    def build(self, op, srcs, filters):
        p = op.params
        if p["mode"] == "nearest":
            return mpsnn.MPSCNNUpsamplingNearestNode(source=srcs[0], integer_scale_factor_x=p["fx"],
                                                     integer_scale_factor_y=p["fy"])
        return mpsnn.MPSCNNUpsamplingBilinearNode(source=srcs[0], integer_scale_factor_x=p["fx"],
                                                  integer_scale_factor_y=p["fy"], align_corners=p["align"])

    def apply(self, op, xs, aux, index):
        p = op.params
        if p["mode"] == "nearest":
            return R.upsample_nearest(xs[0], p["fx"], p["fy"])
        return R.upsample_bilinear(xs[0], p["fx"], p["fy"], p["align"])


class Provider:
    """MPSImageTransformProvider with a fixed transform (None: the default whole-source transform)."""

    def __init__(self, t, hook=None):
        self.t, self.hook = t, hook

    def transform(self, for_source_image, handle):
        if self.hook is not None:
            self.hook()
        return None if self.t is None else mpsnn.MPSScaleTransform(*self.t)


class Scale(Kind):
    def build(self, op, srcs, filters):
        p = op.params
        cls = mpsnn.MPSNNBilinearScaleNode if p["mode"] == "bilinear" else mpsnn.MPSNNLanczosScaleNode
        size = mpsnn.MTLSize(p["ow"], p["oh"], 1)
        if p["provider"]:
            return cls(srcs[0], Provider(p["transform"], p.get("_hook")), size)
        return cls(source=srcs[0], output_size=size)

    def apply(self, op, xs, aux, index):
        p = op.params
        fn = R.bilinear_scale if p["mode"] == "bilinear" else R.lanczos_scale
        t = p["transform"] if p["provider"] else None
        dh, dw = _resize(p)
        require(p["ow"] + dw > 0 and p["oh"] + dh > 0, "custom padding gives a result size <= 0")
        return fn(xs[0], p["ow"] + dw, p["oh"] + dh, t)


KINDS = {
    "conv": Conv(), "fc": FullyConnected(), "transpose": Transpose(), "binary": BinaryConv(), "pool": Pool(),
    "neuron": Neuron(), "arith": Arithmetic(), "concat": Concat(), "softmax": SoftMax(), "dropout": Dropout(),
    "bn": BatchNorm(), "inorm": InstanceNorm(), "norm": Normalization(), "upsample": Upsample(), "scale": Scale(),
}


def op_apply(op, xs, aux, index):
    return KINDS[op.kind].apply(op, xs, aux, index)


# ------------------------------------------------------------------------------------------------
# reference interpreter

def float32_range(y):
    """Values beyond the float32 range become ±inf, as the images between nodes are float32 (only
    graphs fed ±inf get there: a clamp maps inf to FLT_MAX and a later op doubles it)."""
    with np.errstate(over="ignore"):
        y32 = y.astype(np.float32)
    over = np.isinf(y32) & np.isfinite(y)
    return np.where(over, y32.astype(np.float64), y) if over.any() else y


def evaluate(spec, arrays, perturb=None):
    """float64 values of every needed value of `spec` for the input arrays (one per spec input).
    Returns (values, invalid): invalid maps op index -> Invalid for ops the implementation must
    reject (their descendants are not evaluated). `perturb` (a Generator): every op output is
    multiplied by 1 + u*2^-20, u ~ U(-1, 1), to estimate how float32 rounding propagates."""
    needed = spec.needed_ops()
    vals = {i: input_values(a) for i, a in enumerate(arrays)}
    aux, invalid = {}, {}
    for i, op in enumerate(spec.ops):
        if i not in needed:
            continue
        deps = list(op.sources)
        if op.params.get("paired") is not None:
            deps.append(spec.value_of(op.params["paired"]))
        if any(v not in vals for v in deps):
            continue
        try:
            with np.errstate(all="ignore"):
                y = op_apply(op, [vals[s] for s in op.sources], aux, i)
        except Invalid as e:
            invalid[i] = e
            continue
        if perturb is not None:
            y = y * (1.0 + perturb.uniform(-1.0, 1.0, y.shape) * 2.0 ** -20)
        vals[spec.value_of(i)] = float32_range(y)
    return vals, invalid


# ------------------------------------------------------------------------------------------------
# building and running

def build(spec, padding_hook=None):
    """mpsnn nodes of `spec`: (input image nodes, image node per value id, filter node per op)."""
    inputs = [mpsnn.MPSNNImageNode(handle=Handle(f"v{i}")) for i in range(len(spec.inputs))]
    nodes = {i: n for i, n in enumerate(inputs)}
    filters = {}
    for i, op in enumerate(spec.ops):
        f = KINDS[op.kind].build(op, [nodes[s] for s in op.sources], filters)
        f.label = op.label
        pol = make_padding(op.params.get("pad"))
        if pol is not None:
            f.padding_policy = pol
        img = f.result_image
        v = spec.value_of(i)
        img.handle = Handle(f"v{v}")
        nodes[v] = img
        filters[i] = f
    for v in spec.exported:
        nodes[v].export_from_graph = True
    for v, f in spec.formats.items():
        nodes[v].format = FORMATS[f]
    if spec.entry in ("encode", "encode_batch"):
        # encode returns exported images and results 2..n from their nodes' allocators (temporary
        # by default, which the CPU cannot read)
        for v in set(spec.exported) | set(spec.results):
            nodes[v].image_allocator = mpsnn.MPSImage.default_allocator()
    return inputs, nodes, filters


def make_graph(spec, device, nodes, fuse):
    results = [nodes[v] for v in spec.results]
    if spec.multi:
        g = mpsnn.MPSNNGraph(device, result_images=results, results_are_needed=list(spec.needed))
    else:
        g = mpsnn.MPSNNGraph(device, results[0], spec.needed[0])
    g.fusion_enabled = fuse
    g.poison_temporaries = True
    g.format = FORMATS[spec.graph_format]
    return g


def _label(h):
    return None if h is None else h.label()


def run(spec, g, arrays, device):
    """Runs graph `g` of `spec` on `arrays` (one per spec input) through spec.entry; returns
    {value id: NumPy copy} of every image the graph returned."""
    labels = [_label(h) for h in g.source_image_handles]
    feed = [arrays[int(lab[1:])] for lab in labels]
    inter_labels = [_label(h) for h in g.intermediate_image_handles]
    out = {}
    if spec.entry == "execute_async":
        done, got = threading.Event(), {}

        def handler(result, error):
            got["result"], got["error"] = result, error
            done.set()

        ret = g.execute_async(feed, handler)
        assert done.wait(60), "execute_async never called its handler"
        assert got["error"] is None, got["error"]
        assert got["result"] is ret
        if spec.needed[0]:
            out[spec.results[0]] = input_values(ret.numpy())
        return out, None
    inter = []
    if spec.entry == "run":
        res = g.run(feed, intermediate_images=inter)
        res = res if spec.multi else [res]
        for k, (v, n) in enumerate(zip(spec.results, spec.needed)):
            if n:
                assert res[k] is not None, f"result {k} missing"
                out[v] = input_values(res[k].numpy())
            elif spec.multi and v not in spec.exported:
                assert res[k] is None, f"result {k} is not needed but was returned"
    elif spec.entry == "encode":
        cb = device.make_command_queue().make_command_buffer()
        ret = g.encode(cb, [mpsnn.MPSImage.from_numpy(a) for a in feed], intermediate_images=inter)
        cb.commit()
        cb.wait_until_completed()
        if spec.needed[0]:
            out[spec.results[0]] = input_values(ret.numpy())
        else:
            assert ret is None
    elif spec.entry == "encode_batch":
        cb = device.make_command_queue().make_command_buffer()
        batches = [[mpsnn.MPSImage.from_numpy(np.ascontiguousarray(a[j:j + 1])) for j in range(a.shape[0])]
                   for a in feed]
        ret = g.encode_batch(cb, batches, intermediate_images=inter)
        cb.commit()
        cb.wait_until_completed()
        if spec.needed[0]:
            out[spec.results[0]] = np.concatenate([input_values(r.numpy()) for r in ret])
        else:
            assert ret is None
        inter = [_Stacked(np.concatenate([input_values(r.numpy()) for r in batch])) for batch in inter]
    else:
        raise AssertionError(spec.entry)
    assert len(inter) == len(inter_labels), (len(inter), inter_labels)
    for lab, img in zip(inter_labels, inter):
        out.setdefault(int(lab[1:]), input_values(img.numpy()))
    return out, inter_labels


class _Stacked:
    def __init__(self, a):
        self.a = a

    def numpy(self):
        return self.a


def expected_intermediates(spec):
    """Value ids the graph must return in intermediate_images (as a set)."""
    out = {v for v, n in zip(spec.results[1:], spec.needed[1:]) if n}
    out |= set(spec.exported_in_graph())
    return out


def storage(ref, fmt):
    """What a float64 value looks like stored in `fmt` (unorm: clamped to [0, 1] and quantized)."""
    if fmt == "float16":
        return ref.astype(np.float16).astype(np.float64)
    if fmt in ("unorm8", "unorm16"):
        top = 255.0 if fmt == "unorm8" else 65535.0
        return np.round(np.clip(ref, 0.0, 1.0) * top) / top
    return ref


def tolerance(ref, deltas, fmt):
    """Allowed |actual - ref| per element: float32 reductions relative to the value's scale, the
    propagated rounding estimate (perturbed reference runs) and the storage format."""
    finite = np.isfinite(ref)
    scale = max(1.0, float(np.max(np.abs(ref[finite]))) if finite.any() else 1.0)
    tol = 2e-4 * scale + 2e-4 * np.abs(np.where(finite, ref, 0.0))
    for d in deltas:
        tol = tol + 64.0 * np.nan_to_num(np.abs(d), nan=0.0, posinf=0.0)
    if fmt == "float16":
        tol = tol + 1e-3 * np.abs(np.where(finite, ref, 0.0)) + 1e-4
    elif fmt == "unorm8":
        tol = tol + 1.01 / 255.0
    elif fmt == "unorm16":
        tol = tol + 1.01 / 65535.0
    return tol


def value_format(spec, v):
    """Storage format of value v as returned by the graph."""
    f = spec.formats.get(v, "none")
    return spec.graph_format if f == "none" else f


def compare(actual, ref, deltas, fmt, what, allow_nonfinite_mismatch=False):
    """Asserts actual ≈ ref (NaN where ref is NaN, same infinities) with the tolerance above."""
    with np.errstate(all="ignore"):
        _compare(actual, ref, deltas, fmt, what, allow_nonfinite_mismatch)


def _compare(actual, ref, deltas, fmt, what, allow_nonfinite_mismatch):
    assert actual.shape == ref.shape, f"{what}: shape {actual.shape}, expected {ref.shape}"
    expected = storage(ref, fmt)
    a = np.asarray(actual, np.float64)
    fin = np.isfinite(expected)
    if not allow_nonfinite_mismatch:
        bad = np.isnan(expected) != np.isnan(a)
        assert not bad.any(), f"{what}: NaN pattern differs at {np.argwhere(bad)[:5].tolist()}"
        inf = np.isinf(expected)
        assert np.array_equal(a[inf], expected[inf]), f"{what}: infinities differ"
        assert np.isfinite(a[fin]).all(), f"{what}: non-finite values where the reference is finite"
    tol = tolerance(expected, deltas, fmt)
    err = np.where(fin, np.abs(np.where(np.isfinite(a), a, np.inf) - np.where(fin, expected, 0.0)), 0.0)
    bad = err > tol
    if bad.any():
        idx = tuple(np.argwhere(bad)[0])
        raise AssertionError(f"{what}: {int(bad.sum())} of {bad.size} elements differ; first at {idx}: "
                             f"got {a[idx]!r}, expected {expected[idx]!r} (tolerance {tol[idx]:.3g}); "
                             f"max error {float(np.max(err)):.3g}")
