"""ONNX import: an ONNX CNN as an MPSNNGraph (pure Python over the graph's nodes).

    import mpsnn.onnx
    model = mpsnn.onnx.load("resnet.onnx")          # or an onnx.ModelProto
    y = model.run(x_nchw)                            # NCHW in, NCHW out, as ONNX Runtime
    model.graph                                      # the MPSNNGraph (NHWC images)
    model.data_sources["conv1"].weights()            # OHWI weights, the live parameters

The ONNX model's NCHW tensors run as NHWC images: ``run`` transposes its inputs and results at the
boundary only (``layout="NHWC"`` skips that). Each ONNX node becomes MPS nodes:

* Conv (groups, depthwise, dilation, explicit pads and auto_pad) -> MPSCNNConvolutionNode with a
  custom padding policy (ONNXPadding) that reproduces ONNX's result size and pad-before for any input
  size; groups MPS cannot run (a group of channels that is no multiple of 4) become a dense
  convolution with zero weights across groups. ConvTranspose -> MPSCNNConvolutionTransposeNode
  (weights rotated, pads and output_padding through the same policy).
* Gemm, or MatMul (+ Add of a bias), after Flatten or Reshape -> MPSCNNFullyConnectedNode whose
  HxW kernel takes the weights permuted from ONNX's (C, H, W) flatten order to MPS's (H, W, C).
* MaxPool (dilated too), AveragePool (count_include_pad), LpPool (p = 2), GlobalAveragePool,
  GlobalMaxPool -> the pooling nodes; BatchNormalization (kept as a node with its data source: the
  compiler folds it into the convolution before it), InstanceNormalization, LRN (odd size).
* Relu, LeakyRelu, PRelu, Elu, Selu, Sigmoid, HardSigmoid, Tanh, Softplus, Softsign, Abs, Exp,
  Log, Pow (constant exponent), Clip -> neuron nodes; Softmax / LogSoftmax over channels.
* Concat over channels -> MPSNNConcatenationNode. MPS puts each source at a channel offset that is
  a multiple of 4 (nodes.md §12.1): the importer records where each ONNX channel lives and reads
  through the gaps (later convolutions and fully connected layers get zero weights there,
  per-channel nodes run on them harmlessly, a channel-mixing node such as Softmax gets a 1x1
  selection convolution first, and so does a graph result).
* Add / Sub / Mul / Div / Sum of two images (broadcast over channels or pixels through the arithmetic
  nodes' strides), or of an image and a constant scalar (a linear neuron) or per-channel vector
  (a batch-normalization node with mean 0 and variance 1).
* ReduceMean / ReduceMax over H and W are global pooling; Squeeze / Unsqueeze move between (N, C, 1, 1)
  and (N, C).
* Dropout and Identity pass their input on; Upsample / Resize with integer scales -> nearest or
  bilinear upsampling; Constant nodes and initializers are constants, and nodes whose inputs are
  all constants are evaluated at load time.

What MPS cannot express faithfully raises mpsnn.UnsupportedError naming the ONNX node and why.
Results equal ONNX's up to float32 rounding, except at infinite inputs: MPS's ReLU family computes
``a * u`` below zero, so Relu (and Clip with lower bound 0, PRelu with slope 0) turns -inf into
NaN where ONNX gives 0 (nodes.md §6.2), and a Clip with other bounds uses the arithmetic node's
clamp, whose open side is +-FLT_MAX. ``onnx`` is an optional dependency: ``pip install mpsnn[onnx]``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Optional, Union

import numpy as np
import numpy.typing as npt

from . import _core
from ._types import MPSOffset
from .conversions import (convolution_transpose_weights, convolution_weights_from_oihw,
                          fully_connected_weights_from_nchw_flatten, grouped_weights_as_dense)
from .data_sources import (ArrayBatchNormalizationDataSource, ArrayConvolutionDataSource,
                           ArrayInstanceNormalizationDataSource, Optimizer)

__all__ = ["load", "ONNXModel", "ONNXPadding"]

DataSource = Union[ArrayConvolutionDataSource, ArrayBatchNormalizationDataSource, ArrayInstanceNormalizationDataSource]


def _onnx() -> Any:
    try:
        import onnx
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("mpsnn.onnx needs the onnx package: pip install 'mpsnn[onnx]' (or pip install onnx)") from e
    return onnx


def _unsupported(node: Any, why: str) -> _core.UnsupportedError:
    name = node.name or (node.output[0] if len(node.output) else "?")
    return _core.UnsupportedError(f"ONNX node {name!r} ({node.op_type}): {why}")


# ------------------------------------------------------------------------------------------------
# geometry

@dataclasses.dataclass(frozen=True)
class _Axis:
    """One spatial axis of an ONNX windowed op."""

    kernel: int
    stride: int = 1
    dilation: int = 1
    pad_begin: int = 0
    pad_end: int = 0
    auto_pad: str = "NOTSET"
    ceil_mode: bool = False
    reverse: bool = False  # ConvTranspose
    output_padding: int = 0

    @property
    def extent(self) -> int:
        return (self.kernel - 1) * self.dilation + 1

    def pads(self, size: int) -> tuple[int, int]:
        """(pad_begin, pad_end) for a source of `size` pixels."""
        if self.auto_pad in ("SAME_UPPER", "SAME_LOWER") and not self.reverse:
            out = -(-size // self.stride)
            # ONNX's pad_shape, negative when the stride exceeds the window (the windows then start
            # inside the source); halves truncated toward zero as ONNX Runtime does
            total = (out - 1) * self.stride + self.extent - size
            head = int((total if self.auto_pad == "SAME_UPPER" else total + 1) / 2)
            return head, total - head
        if self.auto_pad == "VALID":
            return 0, 0
        return self.pad_begin, self.pad_end

    def result(self, size: int) -> tuple[int, int]:
        """(result size, pad-before P) for a source of `size` pixels; P counts in the zero-inserted
        source for a transposed convolution (nodes.md §4.3)."""
        pb, pe = self.pads(size)
        if self.reverse:
            out = self.stride * (size - 1) + self.output_padding + self.extent - pb - pe
            return out, self.extent - 1 - pb
        span = size + pb + pe - self.extent
        if self.auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            return -(-size // self.stride), pb
        if self.ceil_mode:
            out = -(-span // self.stride) + 1
            if (out - 1) * self.stride >= size + pb:  # the last window must start inside the source or its pad
                out -= 1
        else:
            out = span // self.stride + 1
        return out, pb

    def overhang(self, size: int) -> bool:
        """Whether the last window reaches past the end padding (ceil_mode)."""
        out, pb = self.result(size)
        return (out - 1) * self.stride + self.extent > size + pb + self.pads(size)[1]


class ONNXPadding:
    """The MPSNNPadding policy of an imported windowed node: ONNX's result size and pad-before
    (explicit ``pads``, ``auto_pad``, ``ceil_mode``; for ConvTranspose ``pads`` and
    ``output_padding``), computed from each source size when the graph is compiled, through the
    custom hook (graph.md §4.4): it sets the kernel's offset (``floor(extent / 2) - pad_before``) and
    the result size. ``zero_edges`` also switches the kernel to edge mode zero (average pooling
    that counts the padding)."""

    def __init__(self, node_name: str, y: _Axis, x: _Axis, zero_edges: bool = False) -> None:
        self.node_name, self.y, self.x, self.zero_edges = node_name, y, x, zero_edges

    def padding_method(self) -> int:
        return int(_core.MPSNNPaddingMethod.custom)

    def label(self) -> str:
        return f"ONNX padding of {self.node_name}"

    def destination_image_descriptor(self, source_images: Sequence[_core.MPSImage], source_states: Any,
                                     kernel: _core.MPSCNNKernel,
                                     suggested_descriptor: _core.MPSImageDescriptor) -> _core.MPSImageDescriptor:
        src = source_images[0]
        dy, py = self.y.result(src.height)
        dx, px = self.x.result(src.width)
        if dy < 1 or dx < 1:
            raise _core.ShapeError(f"ONNX node {self.node_name!r}: a {src.width}x{src.height} source gives a "
                                   f"{dx}x{dy} result; expected at least 1x1")
        if self.zero_edges and (self.y.overhang(src.height) or self.x.overhang(src.width)):
            raise _core.UnsupportedError(
                f"ONNX node {self.node_name!r} (AveragePool): with count_include_pad=1, ceil_mode and unequal "
                f"begin/end pads, the last window of a {src.width}x{src.height} source reaches past the padding; "
                "MPS cannot divide it by the padded window's size")
        kernel.offset = MPSOffset(x=self.x.extent // 2 - px, y=self.y.extent // 2 - py, z=0)
        if self.zero_edges:
            kernel.edge_mode = _core.MPSImageEdgeMode.zero
        suggested_descriptor.width = dx
        suggested_descriptor.height = dy
        return suggested_descriptor


# ------------------------------------------------------------------------------------------------
# values

@dataclasses.dataclass
class _Image:
    """An ONNX tensor held by an MPS image. rank 4: (N, c, h, w); rank 2: (N, c*h*w), the channel-first
    flatten of that image (a fully connected layer's (N, c) result has h = w = 1). ONNX channel k lives
    in MPS channel pos[k] of an image of mc channels (gaps after concatenations)."""

    node: _core.MPSNNImageNode
    c: int
    h: Optional[int]
    w: Optional[int]
    pos: npt.NDArray[np.int64]
    mc: int
    rank: int = 4

    @property
    def dense(self) -> bool:
        return self.mc == self.c and bool(np.array_equal(self.pos, np.arange(self.c)))

    @property
    def spatial_one(self) -> bool:
        return self.h == 1 and self.w == 1

    def like(self, node: _core.MPSNNImageNode) -> _Image:
        return dataclasses.replace(self, node=node)


def _dense_image(node: _core.MPSNNImageNode, c: int, h: Optional[int], w: Optional[int], rank: int = 4) -> _Image:
    return _Image(node, c, h, w, np.arange(c, dtype=np.int64), c, rank)


class _Handle:
    """The MPSHandle of an imported graph's source image: the ONNX input's name."""

    def __init__(self, name: str) -> None:
        self.name = name

    def label(self) -> str:
        return self.name


# ------------------------------------------------------------------------------------------------
# the result

class ONNXModel:
    """An imported ONNX model.

    Attributes:
        graph: the MPSNNGraph (NHWC images, one source image per ONNX input it uses, one result per
            ONNX output).
        data_sources: the data sources the importer made, by ONNX node name (a node without a name:
            its first output's name): ArrayConvolutionDataSource for Conv, ConvTranspose, Gemm and
            MatMul (OHWI weights, the live parameters: trained in place when ``load`` was given an
            optimizer; a Gemm's are (out, H, W, C)), ArrayBatchNormalizationDataSource for
            BatchNormalization and ArrayInstanceNormalizationDataSource for InstanceNormalization.
            They cover the MPS channels of their source: after a concatenation of sources whose
            channel counts are no multiples of 4 the weights have zero input channels (and the
            normalizations identity channels) at the gaps. A trainable layer (``optimizer``) reads
            a source without gaps (a 1x1 selection convolution first), so its weights are exactly
            ONNX's, permuted. After changing the arrays call ``graph.reload_from_data_sources()``.
        input_names: the ONNX inputs ``run`` takes, in the model's order.
        output_names: the ONNX outputs ``run`` returns, in the model's order.
        image_nodes: the MPSNNImageNode of each ONNX input and output, by name (to build on the
            graph, e.g. a loss node and its ``training_graph``). The graph's results hold ONNX's
            channels in ONNX's order (an output after a concatenation with gaps gets a 1x1 selection
            convolution).
    """

    def __init__(self, graph: _core.MPSNNGraph, data_sources: dict[str, DataSource],
                 inputs: list[tuple[str, int]], outputs: list[tuple[str, _Image]],
                 result_nodes: list[_core.MPSNNImageNode], image_nodes: dict[str, _core.MPSNNImageNode]) -> None:
        self.graph = graph
        self.image_nodes = image_nodes
        self.data_sources = data_sources
        self._inputs = inputs  # (name, rank)
        self._outputs = outputs
        self.input_names = [n for n, _ in inputs]
        self.output_names = [n for n, _ in outputs]
        order = [h.label() for h in graph.source_image_handles]
        self._order = order
        self._result_index = [next(i for i, r in enumerate(result_nodes) if r is v.node) for _, v in outputs]

    def run(self, *inputs: Any, layout: str = "NCHW") -> Union[npt.NDArray[np.float32], list[npt.NDArray[np.float32]]]:
        """Runs the graph. Inputs: one array per ONNX input (model order), or one mapping of input
        name to array. With ``layout="NCHW"`` (the default) they are ONNX's (N, C, H, W) (or (N, C))
        arrays, transposed to NHWC here, and the results come back in ONNX's shapes; with
        ``layout="NHWC"`` inputs are already (N, H, W, C) (wrapped without copying when float32 and
        C-contiguous) and 4-D results stay (N, H, W, C). Returns one array, or a list for a model of
        several outputs. Results are float32 copies."""
        if layout not in ("NCHW", "NHWC"):
            raise ValueError(f"layout is {layout!r}; expected 'NCHW' or 'NHWC'")
        if len(inputs) == 1 and isinstance(inputs[0], Mapping):
            given = dict(inputs[0])
            missing = [n for n in self._order if n not in given]
            if missing:
                raise ValueError(f"missing inputs {missing}; the model takes {self.input_names}")
        else:
            if len(inputs) != len(self._inputs):
                raise ValueError(f"{len(inputs)} inputs given; the model takes {len(self._inputs)}: {self.input_names}")
            given = dict(zip(self.input_names, inputs))
        ranks = dict(self._inputs)
        images = []
        for name in self._order:
            a = np.asarray(given[name])
            if layout == "NCHW":
                if a.ndim != ranks[name]:
                    raise _core.ShapeError(f"input {name!r} has shape {a.shape}; expected a {ranks[name]}-D array")
                a = a.reshape(a.shape[0], a.shape[1], 1, 1) if a.ndim == 2 else a
                a = a.transpose(0, 2, 3, 1)
            elif a.ndim == 2:
                a = a.reshape(a.shape[0], 1, 1, a.shape[1])
            images.append(np.ascontiguousarray(a, dtype=np.float32))
        out = self.graph.run(images)
        results = out if isinstance(out, list) else [out]
        arrays = []
        for (name, v), i in zip(self._outputs, self._result_index):
            img = results[i]
            assert img is not None
            a = np.array(img.numpy(), dtype=np.float32)  # (N, H, W, C)
            if v.rank == 2:
                a = a.transpose(0, 3, 1, 2).reshape(a.shape[0], -1)
            elif layout == "NCHW":
                a = a.transpose(0, 3, 1, 2)
            arrays.append(np.ascontiguousarray(a))
        return arrays[0] if len(arrays) == 1 else arrays

    __call__ = run


# ------------------------------------------------------------------------------------------------
# the importer

_NEURONS_NONFINITE_AT_ZERO = ("Log", "Pow")  # f(0) may be infinite: run on dense images only


class _Importer:
    def __init__(self, model: Any, device: _core.MTLDevice, optimizer: Optional[Callable[[str], Optional[Optimizer]]],
                 input_shapes: Optional[Mapping[str, Sequence[Optional[int]]]]) -> None:
        self.onnx = _onnx()
        self.model = model
        self.device = device
        self.optimizer = optimizer
        self.input_shapes = dict(input_shapes or {})
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
        self.values: dict[str, Union[_Image, np.ndarray]] = {}
        self.data_sources: dict[str, DataSource] = {}
        self.skip: set[int] = set()
        self.consumers: dict[str, list[tuple[int, Any]]] = {}  # value name -> (node index, node)
        self.graph_outputs = {o.name for o in model.graph.output}
        self.helper_count = 0
        self.compacted: dict[int, _core.MPSNNImageNode] = {}  # id(gapped image node) -> its selection

    # -- helpers ---------------------------------------------------------------------------------
    @staticmethod
    def name(node: Any) -> str:
        return str(node.name or node.output[0])

    def attrs(self, node: Any) -> dict[str, Any]:
        return {a.name: self.onnx.helper.get_attribute_value(a) for a in node.attribute}

    def image(self, node: Any, i: int) -> _Image:
        if i >= len(node.input) or not node.input[i]:
            raise _unsupported(node, f"input {i} is missing")
        v = self.values.get(node.input[i])
        if v is None:
            raise _unsupported(node, f"input {node.input[i]!r} is not produced by an earlier node")
        if not isinstance(v, _Image):
            raise _unsupported(node, f"input {node.input[i]!r} is a constant; MPS nodes take images here")
        return v

    def const(self, node: Any, i: int, default: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
        if i >= len(node.input) or not node.input[i]:
            return default
        v = self.values.get(node.input[i])
        if isinstance(v, _Image):
            raise _unsupported(node, f"input {node.input[i]!r} is computed by the graph; the importer needs a "
                                     "constant (an initializer or Constant)")
        if v is None:
            raise _unsupported(node, f"input {node.input[i]!r} is not produced by an earlier node")
        return v

    def set_image(self, node: Any, v: _Image, i: int = 0) -> None:
        self.values[node.output[i]] = v

    def four_d(self, node: Any, v: _Image, what: str = "") -> None:
        if v.rank != 4:
            raise _unsupported(node, f"input is a 2-D (N, {v.c * (v.h or 0) * (v.w or 0) or 'C'}) tensor; "
                                     f"{what or node.op_type} needs a 4-D (N, C, H, W) tensor")

    def spatial(self, node: Any, v: _Image) -> tuple[int, int]:
        if v.h is None or v.w is None:
            raise _unsupported(node, "needs the input's height and width at load time; the model leaves them "
                                     "symbolic: pass input_shapes={name: (N, C, H, W)} to load")
        return v.h, v.w

    def unused_outputs(self, node: Any, keep: int) -> None:
        for o in node.output[keep:]:
            if o and (self.consumers.get(o) or o in self.graph_outputs):
                raise _unsupported(node, f"output {o!r} is used; the importer provides only the first "
                                         f"{keep} output(s) of {node.op_type}")

    @staticmethod
    def label_node(mps_node: Any, label: str) -> Any:
        mps_node.label = label  # the ONNX node's name: plans and errors name it
        return mps_node

    def add_source(self, node: Any, ds: DataSource) -> None:
        """data_sources[node name]; a name used twice (ONNX does not enforce unique names) gets its
        first output's name appended."""
        name = self.name(node)
        self.data_sources[name if name not in self.data_sources else f"{name}:{node.output[0]}"] = ds

    def make_optimizer(self, name: str) -> Optional[Optimizer]:
        return None if self.optimizer is None else self.optimizer(name)

    def dense(self, v: _Image, why: str) -> _Image:
        """v with its channels at 0..c-1: a 1x1 selection convolution when it has gaps."""
        if v.dense:
            return v
        done = self.compacted.get(id(v.node))
        if done is not None:
            return dataclasses.replace(v, node=done, pos=np.arange(v.c, dtype=np.int64), mc=v.c)
        w = np.zeros((v.c, 1, 1, v.mc), np.float32)
        w[np.arange(v.c), 0, 0, v.pos] = 1.0
        d = _core.MPSCNNConvolutionDescriptor(kernel_width=1, kernel_height=1, input_feature_channels=v.mc,
                                              output_feature_channels=v.c)
        self.helper_count += 1
        ds = ArrayConvolutionDataSource(d, w, None, label=f"onnx gap removal {self.helper_count} ({why})")
        conv = _core.MPSCNNConvolutionNode(source=v.node, weights=ds)
        self.label_node(conv, ds.label() or "")
        self.compacted[id(v.node)] = conv.result_image
        return dataclasses.replace(v, node=conv.result_image, pos=np.arange(v.c, dtype=np.int64), mc=v.c)

    def trainable_input(self, v: _Image, optimizer: Optional[Optimizer]) -> _Image:
        """The source of a trainable layer has no gaps: its weights are then exactly ONNX's (a layer that
        read through gaps would train its gap weights on the constants the gaps hold)."""
        return v if optimizer is None else self.dense(v, "the source of a trainable layer")

    # -- the walk --------------------------------------------------------------------------------
    def run(self) -> ONNXModel:
        g = self.model.graph
        for init in g.initializer:
            self.values[init.name] = self.onnx.numpy_helper.to_array(init)
        for k, node in enumerate(g.node):
            for i in node.input:
                if i:
                    self.consumers.setdefault(i, []).append((k, node))
        inputs: list[tuple[str, int]] = []
        for inp in g.input:
            if inp.name in self.values:
                continue  # an initializer listed as input (old exporters)
            inputs.append((inp.name, self.make_input(inp)))
        for k, node in enumerate(g.node):
            if k in self.skip:
                continue
            self.convert(node, k)
        outputs: list[tuple[str, _Image]] = []
        result_nodes: list[_core.MPSNNImageNode] = []
        input_nodes = {id(v.node) for n, _ in inputs for v in [self.values[n]] if isinstance(v, _Image)}
        for o in g.output:
            v = self.values.get(o.name)
            if not isinstance(v, _Image):
                raise _core.UnsupportedError(f"ONNX output {o.name!r} is a constant (or missing); an MPSNNGraph "
                                             "result is computed by a node")
            if id(v.node) in input_nodes:
                raise _core.UnsupportedError(f"ONNX output {o.name!r} is a graph input passed through unchanged; "
                                             "an MPSNNGraph result is computed by a node")
            if not v.dense:  # the graph's results hold ONNX's channels only
                v = self.dense(v, f"the result {o.name}")
                self.values[o.name] = v
            if not any(r is v.node for r in result_nodes):
                result_nodes.append(v.node)
            outputs.append((o.name, v))
        if len(result_nodes) == 1:
            graph = _core.MPSNNGraph(self.device, result_image=result_nodes[0])
        else:
            graph = _core.MPSNNGraph(self.device, result_images=result_nodes)
        used = {h.label() for h in graph.source_image_handles}
        image_nodes = {n: v.node for n, v in self.values.items()
                       if isinstance(v, _Image) and (n in used or n in self.graph_outputs)}
        return ONNXModel(graph, self.data_sources, [(n, r) for n, r in inputs if n in used], outputs, result_nodes,
                         image_nodes)

    def make_input(self, inp: Any) -> int:
        t = inp.type.tensor_type
        elem = t.elem_type
        if elem not in (self.onnx.TensorProto.FLOAT, self.onnx.TensorProto.FLOAT16, self.onnx.TensorProto.DOUBLE):
            raise _core.UnsupportedError(f"ONNX input {inp.name!r} has element type "
                                         f"{self.onnx.TensorProto.DataType.Name(elem)}; expected a float tensor")
        dims: list[Optional[int]] = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        if inp.name in self.input_shapes:
            dims = [None if d is None or d < 0 else int(d) for d in self.input_shapes[inp.name]]
        if len(dims) not in (2, 4):
            raise _core.UnsupportedError(f"ONNX input {inp.name!r} has {len(dims)} dimensions; expected (N, C, H, W) "
                                         "or (N, C)")
        if dims[1] is None:
            raise _core.UnsupportedError(f"ONNX input {inp.name!r} has a symbolic channel count; pass "
                                         "input_shapes={name: (N, C, H, W)} to load")
        node = _core.MPSNNImageNode(handle=_Handle(inp.name))
        if len(dims) == 4:
            self.values[inp.name] = _dense_image(node, int(dims[1]), dims[2], dims[3])
        else:
            self.values[inp.name] = _dense_image(node, int(dims[1]), 1, 1, rank=2)
        return len(dims)

    def convert(self, node: Any, index: int) -> None:
        if node.domain not in ("", "ai.onnx"):
            raise _unsupported(node, f"operator domain {node.domain!r} is not the ONNX standard domain")
        ins = [self.values.get(i) for i in node.input if i]
        if node.op_type == "Constant" or (node.input and all(v is not None and not isinstance(v, _Image) for v in ins)
                                          and node.op_type not in ("Dropout",)):
            self.fold(node)
            return
        handler = getattr(self, "op_" + node.op_type, None)
        if handler is None:
            raise _unsupported(node, "this operator is not supported by the MPS importer")
        handler(node, index)

    def fold(self, node: Any) -> None:
        """A node whose inputs are all constants: evaluated now (ONNX's reference implementation)."""
        if node.op_type == "Constant":
            a = self.attrs(node)
            if "value" in a:
                self.values[node.output[0]] = self.onnx.numpy_helper.to_array(a["value"])
                return
            for key, dtype in (("value_float", np.float32), ("value_floats", np.float32), ("value_int", np.int64),
                               ("value_ints", np.int64)):
                if key in a:
                    self.values[node.output[0]] = np.asarray(a[key], dtype)
                    return
        from onnx.reference import ReferenceEvaluator

        helper = self.onnx.helper
        inputs = [i for i in node.input if i]
        feeds = {i: self.values[i] for i in inputs}
        graph = helper.make_graph(
            [node], "fold",
            [helper.make_tensor_value_info(i, helper.np_dtype_to_tensor_dtype(np.asarray(feeds[i]).dtype),
                                           np.asarray(feeds[i]).shape) for i in inputs],
            [helper.make_tensor_value_info(o, self.onnx.TensorProto.UNDEFINED, None) for o in node.output if o])
        m = helper.make_model(graph, opset_imports=self.model.opset_import)
        try:
            results = ReferenceEvaluator(m).run(None, feeds)
        except Exception as e:
            raise _unsupported(node, f"evaluating it on its constant inputs failed: {e}") from e
        for o, r in zip([o for o in node.output if o], results):
            self.values[o] = np.asarray(r)

    # -- convolutions ----------------------------------------------------------------------------
    def conv_axes(self, node: Any, a: dict[str, Any], kh: int, kw: int, reverse: bool = False) -> tuple[_Axis, _Axis]:
        ks = list(a.get("kernel_shape", [kh, kw]))
        if len(ks) != 2:
            raise _unsupported(node, f"kernel_shape {ks} is not 2-D; MPS runs 2-D windows")
        if ks != [kh, kw]:
            raise _unsupported(node, f"kernel_shape {ks} differs from the weights' {kh}x{kw}")
        strides = list(a.get("strides", [1, 1]))
        dil = list(a.get("dilations", [1, 1]))
        pads = list(a.get("pads", [0, 0, 0, 0]))
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else str(auto)
        if auto not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"):
            raise _unsupported(node, f"auto_pad {auto!r} is unknown")
        if len(strides) != 2 or len(dil) != 2 or len(pads) != 4:
            raise _unsupported(node, "strides, dilations and pads must describe 2 spatial axes")
        if min(pads) < 0:
            raise _unsupported(node, f"pads {pads} are negative (cropping); MPS pads only")
        out_pad = list(a.get("output_padding", [0, 0]))
        if reverse:
            if "output_shape" in a:
                raise _unsupported(node, "output_shape is not supported; give pads and output_padding")
            if auto in ("SAME_UPPER", "SAME_LOWER"):
                raise _unsupported(node, f"auto_pad {auto} is not supported for ConvTranspose; give explicit pads")
        ceil = bool(a.get("ceil_mode", 0))
        y = _Axis(kh, strides[0], dil[0], pads[0], pads[2], auto, ceil, reverse, out_pad[0] if reverse else 0)
        x = _Axis(kw, strides[1], dil[1], pads[1], pads[3], auto, ceil, reverse, out_pad[1] if reverse else 0)
        return y, x

    @staticmethod
    def out_size(axis: _Axis, size: Optional[int]) -> Optional[int]:
        return None if size is None else axis.result(size)[0]

    def op_Conv(self, node: Any, index: int) -> None:
        v = self.image(node, 0)
        self.four_d(node, v)
        w = self.const(node, 1)
        b = self.const(node, 2)
        assert w is not None
        a = self.attrs(node)
        if w.ndim != 4:
            raise _unsupported(node, f"weights have shape {w.shape}; the importer runs 2-D convolutions (OIHW)")
        g = int(a.get("group", 1))
        cout, cg, kh, kw = w.shape
        if cg * g != v.c:
            raise _unsupported(node, f"weights read {cg} x {g} groups channels; the input has {v.c}")
        y, x = self.conv_axes(node, a, kh, kw)
        name = self.name(node)
        opt = self.make_optimizer(name)
        v = self.trainable_input(v, opt)
        bias = None if b is None else np.asarray(b, np.float32).reshape(-1)
        depthwise = g > 1 and g == v.c and cout == v.c
        native_groups = g > 1 and not depthwise and cg % 4 == 0 and (cout // g) % 4 == 0
        if depthwise and v.dense:
            d: Any = _core.MPSCNNDepthWiseConvolutionDescriptor(
                kernel_width=kw, kernel_height=kh, input_feature_channels=v.c, output_feature_channels=cout)
            wm = np.ascontiguousarray(np.asarray(w, np.float32).transpose(0, 2, 3, 1))  # (C, KH, KW, 1)
        elif native_groups and v.dense:
            d = _core.MPSCNNConvolutionDescriptor(kernel_width=kw, kernel_height=kh, input_feature_channels=v.c,
                                                  output_feature_channels=cout)
            d.groups = g
            wm = convolution_weights_from_oihw(w)
        else:
            dense = grouped_weights_as_dense(w, g) if g > 1 else w
            d = _core.MPSCNNConvolutionDescriptor(kernel_width=kw, kernel_height=kh, input_feature_channels=v.mc,
                                                  output_feature_channels=cout)
            wm = convolution_weights_from_oihw(dense, v.pos, v.mc)
        d.stride_in_pixels_y, d.stride_in_pixels_x = y.stride, x.stride
        d.dilation_rate_y, d.dilation_rate_x = y.dilation, x.dilation
        ds = ArrayConvolutionDataSource(d, wm, bias, label=name, optimizer=opt)
        self.add_source(node, ds)
        conv = _core.MPSCNNConvolutionNode(source=v.node, weights=ds)
        conv.padding_policy = ONNXPadding(name, y, x)
        self.label_node(conv, name)
        self.set_image(node, _dense_image(conv.result_image, cout, self.out_size(y, v.h), self.out_size(x, v.w)))

    def op_ConvTranspose(self, node: Any, index: int) -> None:
        v = self.image(node, 0)
        self.four_d(node, v)
        w = self.const(node, 1)
        b = self.const(node, 2)
        assert w is not None
        a = self.attrs(node)
        if w.ndim != 4:
            raise _unsupported(node, f"weights have shape {w.shape}; the importer runs 2-D transposed convolutions")
        g = int(a.get("group", 1))
        cin, og, kh, kw = w.shape
        if cin != v.c:
            raise _unsupported(node, f"weights read {cin} channels; the input has {v.c}")
        cout = og * g
        y, x = self.conv_axes(node, a, kh, kw, reverse=True)
        name = self.name(node)
        opt = self.make_optimizer(name)
        v = self.trainable_input(v, opt)
        wm = convolution_transpose_weights(w, g)  # (cout, kh, kw, cin/g)
        if g > 1 and not ((cin // g) % 4 == 0 and og % 4 == 0 and v.dense):
            # as a dense transposed convolution: zero weights across groups
            full = np.zeros((cout, kh, kw, cin), np.float32)
            for k in range(g):
                full[k * og:(k + 1) * og, :, :, k * (cin // g):(k + 1) * (cin // g)] = wm[k * og:(k + 1) * og]
            wm, g = full, 1
        if g == 1 and not v.dense:
            scattered = np.zeros((cout, kh, kw, v.mc), np.float32)
            scattered[..., v.pos] = wm
            wm = scattered
        d = _core.MPSCNNConvolutionDescriptor(kernel_width=kw, kernel_height=kh,
                                              input_feature_channels=v.mc if g == 1 else v.c,
                                              output_feature_channels=cout)
        d.groups = g
        d.stride_in_pixels_y, d.stride_in_pixels_x = y.stride, x.stride
        d.dilation_rate_y, d.dilation_rate_x = y.dilation, x.dilation
        bias = None if b is None else np.asarray(b, np.float32).reshape(-1)
        ds = ArrayConvolutionDataSource(d, wm, bias, label=name, optimizer=opt)
        self.add_source(node, ds)
        conv = _core.MPSCNNConvolutionTransposeNode(source=v.node, convolution_gradient_state=None, weights=ds)
        conv.padding_policy = ONNXPadding(name, y, x)
        self.label_node(conv, name)
        self.set_image(node, _dense_image(conv.result_image, cout, self.out_size(y, v.h), self.out_size(x, v.w)))

    def fully_connected(self, node: Any, v: _Image, w_out_in: np.ndarray, bias: Optional[np.ndarray]) -> None:
        """(N, K) @ W.T + bias, with W (out, K) in ONNX's flatten order of v's (c, h, w)."""
        if v.rank != 2:
            raise _unsupported(node, "input is a 4-D tensor; the importer maps Gemm / MatMul after Flatten or "
                                     "Reshape to (N, C*H*W)")
        h, w = self.spatial(node, v)
        if w_out_in.shape[1] != v.c * h * w:
            raise _unsupported(node, f"weights take {w_out_in.shape[1]} inputs; the input has {v.c * h * w}")
        cout = w_out_in.shape[0]
        name = self.name(node)
        opt = self.make_optimizer(name)
        v = self.trainable_input(v, opt)
        wm = fully_connected_weights_from_nchw_flatten(w_out_in, v.c, h, w, v.pos, v.mc)
        d = _core.MPSCNNConvolutionDescriptor(kernel_width=w, kernel_height=h, input_feature_channels=v.mc,
                                              output_feature_channels=cout)
        ds = ArrayConvolutionDataSource(d, wm, bias, label=name, optimizer=opt)
        self.add_source(node, ds)
        fc = _core.MPSCNNFullyConnectedNode(source=v.node, weights=ds)
        self.label_node(fc, name)
        self.set_image(node, _dense_image(fc.result_image, cout, 1, 1, rank=2))

    def op_Gemm(self, node: Any, index: int) -> None:
        v = self.image(node, 0)
        b = self.const(node, 1)
        c = self.const(node, 2)
        assert b is not None
        a = self.attrs(node)
        if a.get("transA", 0):
            raise _unsupported(node, "transA=1 transposes the batch into the features; MPS keeps the batch")
        wt = np.asarray(b, np.float64)
        if wt.ndim != 2:
            raise _unsupported(node, f"B has shape {wt.shape}; expected a matrix")
        wt = wt if a.get("transB", 0) else wt.T
        wt = wt * float(a.get("alpha", 1.0))
        bias = None
        if c is not None:
            cc = np.asarray(c, np.float64) * float(a.get("beta", 1.0))
            if cc.size not in (1, wt.shape[0]) or (cc.ndim == 2 and cc.shape[0] != 1):
                raise _unsupported(node, f"C has shape {cc.shape}; expected a bias of {wt.shape[0]} values (or one)")
            bias = np.broadcast_to(cc.reshape(-1), (wt.shape[0],)).astype(np.float32)
        self.fully_connected(node, v, wt.astype(np.float32), bias)

    def op_MatMul(self, node: Any, index: int) -> None:
        v = self.image(node, 0)
        b = self.const(node, 1)
        assert b is not None
        if b.ndim != 2:
            raise _unsupported(node, f"B has shape {b.shape}; expected a (K, N) matrix")
        bias = None
        # MatMul + Add of a constant vector: the bias of the fully connected layer.
        users = self.consumers.get(node.output[0], [])
        if len(users) == 1 and users[0][1].op_type == "Add" and node.output[0] not in self.graph_outputs:
            add_index, add = users[0]
            other = add.input[1] if add.input[0] == node.output[0] else add.input[0]
            cv = self.values.get(other)
            vector = isinstance(cv, np.ndarray) and (cv.ndim == 1 or cv.shape[:-1] == (1,) * (cv.ndim - 1))
            if isinstance(cv, np.ndarray) and vector and cv.size == b.shape[1]:
                bias = cv.reshape(-1).astype(np.float32)
                self.skip.add(add_index)
        self.fully_connected(node, v, np.asarray(b, np.float32).T, bias)
        if bias is not None:
            self.values[users[0][1].output[0]] = self.values[node.output[0]]

    # -- shapes ----------------------------------------------------------------------------------
    def flatten(self, node: Any, v: _Image) -> None:
        self.set_image(node, dataclasses.replace(v, rank=2))

    def op_Flatten(self, node: Any, index: int) -> None:
        v = self.image(node, 0)
        axis = int(self.attrs(node).get("axis", 1))
        if axis != 1:
            raise _unsupported(node, f"axis {axis}: the importer flattens (N, C, H, W) to (N, C*H*W) (axis 1) only")
        self.flatten(node, v)

    def op_Reshape(self, node: Any, index: int) -> None:
        v = self.image(node, 0)
        shape = self.const(node, 1)
        assert shape is not None
        s = [int(t) for t in np.asarray(shape).reshape(-1)]
        total = v.c * (v.h or 0) * (v.w or 0)
        if len(s) == 2 and (s[1] == -1 or (total and s[1] == total)):
            self.flatten(node, v)
            return
        if len(s) == 4 and v.spatial_one and s[2:] == [1, 1] and s[1] in (v.c, -1):
            self.set_image(node, dataclasses.replace(v, rank=4))
            return
        raise _unsupported(node, f"reshape of a (N, {v.c}, {v.h}, {v.w}) tensor to {s}: the importer supports "
                                 "flattening to (N, C*H*W) and (N, C) <-> (N, C, 1, 1) only")

    def axes(self, node: Any, rank: int) -> Optional[list[int]]:
        """The axes attribute (or, from opset 13, input 1), non-negative."""
        a = self.attrs(node)
        if "axes" in a:
            raw = list(a["axes"])
        else:
            t = self.const(node, 1)
            if t is None:
                return None
            raw = [int(i) for i in np.asarray(t).reshape(-1)]
        return sorted(int(i) + rank if int(i) < 0 else int(i) for i in raw)

    def op_Squeeze(self, node: Any, index: int) -> None:
        v = self.image(node, 0)
        axes = self.axes(node, v.rank)
        if v.rank == 4 and v.spatial_one and axes == [2, 3]:  # (no axes would squeeze a batch of 1 too)
            self.set_image(node, dataclasses.replace(v, rank=2))
            return
        raise _unsupported(node, f"squeezing axes {axes} of a (N, {v.c}, {v.h}, {v.w}) tensor; the importer squeezes "
                                 "(N, C, 1, 1) to (N, C) only")

    def op_Unsqueeze(self, node: Any, index: int) -> None:
        v = self.image(node, 0)
        axes = self.axes(node, v.rank + 2)
        if v.rank == 2 and v.spatial_one and axes == [2, 3]:
            self.set_image(node, dataclasses.replace(v, rank=4))
            return
        raise _unsupported(node, f"unsqueezing axes {axes}; the importer unsqueezes (N, C) to (N, C, 1, 1) only")

    # -- pooling ---------------------------------------------------------------------------------
    def pool_axes(self, node: Any, a: dict[str, Any]) -> tuple[_Axis, _Axis]:
        ks = list(a.get("kernel_shape", []))
        if len(ks) != 2:
            raise _unsupported(node, f"kernel_shape {ks} is not 2-D; MPS pools 2-D windows")
        y, x = self.conv_axes(node, a, ks[0], ks[1])
        if y.auto_pad.startswith("SAME") and (y.dilation > 1 or x.dilation > 1):
            raise _unsupported(node, f"auto_pad {y.auto_pad} with dilations {[y.dilation, x.dilation]}: ONNX Runtime "
                                     "pads pooling for the undilated kernel, the ONNX definition for the dilated one; "
                                     "give explicit pads")
        if any(max(t.pad_begin, t.pad_end) >= t.kernel for t in (y, x) if t.auto_pad == "NOTSET"):
            raise _unsupported(node, f"pads {list(a.get('pads', []))} are not smaller than the kernel {ks}: a window "
                                     "could lie in the padding alone (ONNX Runtime refuses such pooling too)")
        return y, x

    def op_MaxPool(self, node: Any, index: int) -> None:
        v = self.image(node, 0)
        self.four_d(node, v)
        self.unused_outputs(node, 1)
        a = self.attrs(node)
        if int(a.get("storage_order", 0)) != 0:
            raise _unsupported(node, "storage_order 1 is not supported")
        y, x = self.pool_axes(node, a)
        if y.dilation == 1 and x.dilation == 1:
            p: Any = _core.MPSCNNPoolingMaxNode(v.node, x.kernel, y.kernel, x.stride, y.stride)
        else:
            p = _core.MPSCNNDilatedPoolingMaxNode(v.node, x.kernel, y.kernel, x.stride, y.stride, x.dilation,
                                                  y.dilation)
        # Edge clamp (the pooling default) = ONNX's -inf padding: replicated pixels never exceed the window max.
        name = self.name(node)
        p.padding_policy = ONNXPadding(name, y, x)
        self.label_node(p, name)
        self.values[node.output[0]] = dataclasses.replace(v, node=p.result_image, h=self.out_size(y, v.h),
                                                          w=self.out_size(x, v.w))

    def op_AveragePool(self, node: Any, index: int) -> None:
        v = self.image(node, 0)
        self.four_d(node, v)
        a = self.attrs(node)
        y, x = self.pool_axes(node, a)
        if y.dilation != 1 or x.dilation != 1:
            raise _unsupported(node, "dilated average pooling: MPS has dilated max pooling only")
        name = self.name(node)
        p = _core.MPSCNNPoolingAverageNode(v.node, x.kernel, y.kernel, x.stride, y.stride)
        zero_edges = False
        if int(a.get("count_include_pad", 0)):
            if y.auto_pad == "NOTSET" and y.pad_begin == y.pad_end and x.pad_begin == x.pad_end:
                # clamp edges shrink the window to the source plus a zero border of the pads, counted
                p.zero_pad_size_y, p.zero_pad_size_x = y.pad_begin, x.pad_begin
            elif y.auto_pad != "VALID":
                zero_edges = True  # every window inside the padded source: divide by the window size
        # else: the default clamp edges divide by the pixels inside the source, as count_include_pad=0
        p.padding_policy = ONNXPadding(name, y, x, zero_edges=zero_edges)
        if zero_edges and v.h is not None and v.w is not None and (y.overhang(v.h) or x.overhang(v.w)):
            raise _unsupported(node, "with count_include_pad=1, ceil_mode and unequal begin/end pads the last "
                                     "window reaches past the padding; MPS cannot divide it by the padded "
                                     "window's size")
        self.label_node(p, name)
        self.values[node.output[0]] = dataclasses.replace(v, node=p.result_image, h=self.out_size(y, v.h),
                                                          w=self.out_size(x, v.w))

    def op_LpPool(self, node: Any, index: int) -> None:
        v = self.image(node, 0)
        self.four_d(node, v)
        a = self.attrs(node)
        if int(a.get("p", 2)) != 2:
            raise _unsupported(node, f"p = {a.get('p')}; MPS has L2-norm pooling (p = 2) only")
        y, x = self.pool_axes(node, a)
        if y.dilation != 1 or x.dilation != 1:
            raise _unsupported(node, "dilated Lp pooling is not supported")
        name = self.name(node)
        p = _core.MPSCNNPoolingL2NormNode(v.node, x.kernel, y.kernel, x.stride, y.stride)
        p.padding_policy = ONNXPadding(name, y, x)  # padded taps add 0 to the sum of squares
        self.label_node(p, name)
        self.values[node.output[0]] = dataclasses.replace(v, node=p.result_image, h=self.out_size(y, v.h),
                                                          w=self.out_size(x, v.w))

    def global_pool(self, node: Any, cls: Any) -> None:
        v = self.image(node, 0)
        self.four_d(node, v)
        h, w = self.spatial(node, v)
        p = cls(v.node, w, h, 1, 1)
        p.padding_policy = _core.MPSNNDefaultPadding.padding_with_method(_core.MPSNNPaddingMethod.size_valid_only)
        self.label_node(p, self.name(node))
        self.values[node.output[0]] = dataclasses.replace(v, node=p.result_image, h=1, w=1)

    def op_GlobalAveragePool(self, node: Any, index: int) -> None:
        self.global_pool(node, _core.MPSCNNPoolingAverageNode)

    def op_GlobalMaxPool(self, node: Any, index: int) -> None:
        self.global_pool(node, _core.MPSCNNPoolingMaxNode)

    def reduce_spatial(self, node: Any, cls: Any) -> None:
        """ReduceMean / ReduceMax over H and W: global pooling."""
        v = self.image(node, 0)
        self.four_d(node, v)
        a = self.attrs(node)
        axes = self.axes(node, 4)
        if axes != [2, 3] or int(a.get("noop_with_empty_axes", 0)):
            raise _unsupported(node, f"reduces axes {axes}; MPS pools over height and width (axes 2, 3) only")
        self.global_pool(node, cls)
        if not int(a.get("keepdims", 1)):
            out = self.values[node.output[0]]
            assert isinstance(out, _Image)
            self.values[node.output[0]] = dataclasses.replace(out, rank=2)

    def op_ReduceMean(self, node: Any, index: int) -> None:
        self.reduce_spatial(node, _core.MPSCNNPoolingAverageNode)

    def op_ReduceMax(self, node: Any, index: int) -> None:
        self.reduce_spatial(node, _core.MPSCNNPoolingMaxNode)

    # -- normalization ---------------------------------------------------------------------------
    def per_channel(self, v: _Image, values: np.ndarray, fill: float) -> np.ndarray:
        """Per-ONNX-channel values spread over v's MPS channels (gaps get `fill`)."""
        out = np.full(v.mc, fill, np.float32)
        out[v.pos] = np.asarray(values, np.float32).reshape(-1)
        return out

    def op_BatchNormalization(self, node: Any, index: int) -> None:
        v = self.image(node, 0)
        self.unused_outputs(node, 1)
        a = self.attrs(node)
        if int(a.get("training_mode", 0)):
            raise _unsupported(node, "training_mode=1: the importer builds inference graphs (running statistics)")
        if v.rank == 2 and not v.spatial_one:
            raise _unsupported(node, f"normalizes each of the {v.c * (v.h or 0) * (v.w or 0) or 'C*H*W'} features of a "
                                     "flattened tensor; MPS normalizes feature channels")
        scale, bias, mean, var = (self.const(node, i) for i in range(1, 5))
        for t in (scale, bias, mean, var):
            if t is None or t.size != v.c:
                raise _unsupported(node, f"expects {v.c} values per parameter")
        assert scale is not None and bias is not None and mean is not None and var is not None
        name = self.name(node)
        ds = ArrayBatchNormalizationDataSource(
            self.per_channel(v, scale, 1.0), self.per_channel(v, bias, 0.0), self.per_channel(v, mean, 0.0),
            self.per_channel(v, var, 1.0), epsilon=float(a.get("epsilon", 1e-5)), label=name,
            optimizer=self.make_optimizer(name), statistics_momentum=1.0 - float(a.get("momentum", 0.9)))
        self.add_source(node, ds)
        bn = _core.MPSCNNBatchNormalizationNode(source=v.node, data_source=ds)
        self.label_node(bn, name)
        self.set_image(node, v.like(bn.result_image))

    def op_InstanceNormalization(self, node: Any, index: int) -> None:
        v = self.image(node, 0)
        self.four_d(node, v)
        scale, bias = self.const(node, 1), self.const(node, 2)
        if scale is None or bias is None or scale.size != v.c or bias.size != v.c:
            raise _unsupported(node, f"expects {v.c} scale and bias values")
        a = self.attrs(node)
        name = self.name(node)
        ds = ArrayInstanceNormalizationDataSource(self.per_channel(v, scale, 1.0), self.per_channel(v, bias, 0.0),
                                                  epsilon=float(a.get("epsilon", 1e-5)), label=name,
                                                  optimizer=self.make_optimizer(name))
        self.add_source(node, ds)
        n = _core.MPSCNNInstanceNormalizationNode(source=v.node, data_source=ds)
        self.label_node(n, name)
        self.set_image(node, v.like(n.result_image))

    def op_LRN(self, node: Any, index: int) -> None:
        v = self.image(node, 0)
        self.four_d(node, v)
        a = self.attrs(node)
        size = int(a["size"])
        if size % 2 == 0:
            raise _unsupported(node, f"size {size} is even: ONNX sums channels [c - {size // 2 - 1}, c + {size // 2}], "
                                     f"MPS [c - {size // 2}, c + {size // 2 - 1}]")
        v = self.dense(v, "LRN sums over channels")
        n = _core.MPSCNNCrossChannelNormalizationNode(v.node, kernel_size=size)
        n.alpha = float(a.get("alpha", 1e-4))
        n.beta = float(a.get("beta", 0.75))
        n.delta = float(a.get("bias", 1.0))
        self.label_node(n, self.name(node))
        self.set_image(node, v.like(n.result_image))

    def softmax(self, node: Any, cls: Any) -> None:
        v = self.image(node, 0)
        a = self.attrs(node)
        rank = v.rank
        axis = int(a.get("axis", -1 if self.opset >= 13 else 1))
        axis = axis + rank if axis < 0 else axis
        channels_only = v.spatial_one or (rank == 4 and self.opset >= 13)
        if axis != 1 or not channels_only:
            what = ("the last axis (W)" if rank == 4 and axis == 3 else
                    f"axis {axis}" if axis != 1 else "all of C*H*W (before opset 13 the axis flattens the rest)")
            raise _unsupported(node, f"normalizes over {what}; MPS normalizes over the feature channels of each pixel")
        v = self.dense(v, f"{node.op_type} sums over channels")
        s = cls(source=v.node)
        self.label_node(s, self.name(node))
        self.set_image(node, v.like(s.result_image))

    def op_Softmax(self, node: Any, index: int) -> None:
        self.softmax(node, _core.MPSCNNSoftMaxNode)

    def op_LogSoftmax(self, node: Any, index: int) -> None:
        self.softmax(node, _core.MPSCNNLogSoftMaxNode)

    # -- neurons ---------------------------------------------------------------------------------
    def neuron(self, node: Any, make: Callable[[_core.MPSNNImageNode], Any], v: Optional[_Image] = None) -> _Image:
        v = self.image(node, 0) if v is None else v
        if node.op_type in _NEURONS_NONFINITE_AT_ZERO:
            v = self.dense(v, f"{node.op_type} may be infinite on the zero gap channels")
        n = make(v.node)
        self.label_node(n, self.name(node))
        out = v.like(n.result_image)
        self.set_image(node, out)
        return out

    def op_Relu(self, node: Any, index: int) -> None:
        self.neuron(node, lambda s: _core.MPSCNNNeuronReLUNode(s))

    def op_LeakyRelu(self, node: Any, index: int) -> None:
        alpha = float(self.attrs(node).get("alpha", 0.01))
        self.neuron(node, lambda s: _core.MPSCNNNeuronReLUNode(s, a=alpha))

    def op_Elu(self, node: Any, index: int) -> None:
        alpha = float(self.attrs(node).get("alpha", 1.0))
        self.neuron(node, lambda s: _core.MPSCNNNeuronELUNode(s, a=alpha))

    def op_Selu(self, node: Any, index: int) -> None:
        a = self.attrs(node)
        alpha = float(a.get("alpha", 1.67326319217681884765625))
        gamma = float(a.get("gamma", 1.05070102214813232421875))
        # gamma * ELU_alpha(x): an ELU node, then a linear one
        self.neuron(node, lambda s: _core.MPSCNNNeuronLinearNode(_core.MPSCNNNeuronELUNode(s, a=alpha).result_image,
                                                                 a=gamma, b=0.0))

    def op_Sigmoid(self, node: Any, index: int) -> None:
        self.neuron(node, lambda s: _core.MPSCNNNeuronSigmoidNode(s))

    def op_HardSigmoid(self, node: Any, index: int) -> None:
        a = self.attrs(node)
        alpha, beta = float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))
        self.neuron(node, lambda s: _core.MPSCNNNeuronHardSigmoidNode(s, a=alpha, b=beta))

    def op_Tanh(self, node: Any, index: int) -> None:
        self.neuron(node, lambda s: _core.MPSCNNNeuronTanHNode(s, a=1.0, b=1.0))

    def op_Softplus(self, node: Any, index: int) -> None:
        self.neuron(node, lambda s: _core.MPSCNNNeuronSoftPlusNode(s, a=1.0, b=1.0))

    def op_Softsign(self, node: Any, index: int) -> None:
        self.neuron(node, lambda s: _core.MPSCNNNeuronSoftSignNode(s))

    def op_Abs(self, node: Any, index: int) -> None:
        self.neuron(node, lambda s: _core.MPSCNNNeuronAbsoluteNode(s))

    def op_Exp(self, node: Any, index: int) -> None:
        self.neuron(node, lambda s: _core.MPSCNNNeuronExponentialNode(s, a=1.0, b=0.0, c=-1.0))

    def op_Log(self, node: Any, index: int) -> None:
        self.neuron(node, lambda s: _core.MPSCNNNeuronLogarithmNode(s, a=1.0, b=0.0, c=-1.0))

    def op_Pow(self, node: Any, index: int) -> None:
        e = self.const(node, 1)
        assert e is not None
        if e.size != 1:
            raise _unsupported(node, f"the exponent has shape {e.shape}; MPS raises to one constant power")
        c = float(np.asarray(e).reshape(-1)[0])
        self.neuron(node, lambda s: _core.MPSCNNNeuronPowerNode(s, a=1.0, b=0.0, c=c))

    def op_PRelu(self, node: Any, index: int) -> None:
        v = self.image(node, 0)
        slope = self.const(node, 1)
        assert slope is not None
        s = np.asarray(slope, np.float32)
        # ONNX broadcasting aligns trailing axes: per channel is (C, 1, 1) for (N, C, H, W), (C,) for (N, C)
        shape = (1,) * (v.rank - s.ndim) + s.shape if s.ndim <= v.rank else s.shape
        per_channel = len(shape) == v.rank and shape[1] == v.c and s.size == v.c
        if s.size == 1:
            data = np.full(v.mc, float(s.reshape(-1)[0]), np.float32)
        elif per_channel and (v.rank == 4 or v.spatial_one):
            data = self.per_channel(v, s, 0.0)
        else:
            raise _unsupported(node, f"slope of shape {s.shape}; MPS takes one slope or one per channel")
        self.neuron(node, lambda src: _core.MPSCNNNeuronPReLUNode(src, a_data=data.tolist()), v)

    def op_Clip(self, node: Any, index: int) -> None:
        a = self.attrs(node)
        if self.opset < 11:
            lo, hi = float(a.get("min", -np.inf)), float(a.get("max", np.inf))
        else:
            tlo, thi = self.const(node, 1), self.const(node, 2)
            lo = -np.inf if tlo is None else float(np.asarray(tlo).reshape(-1)[0])
            hi = np.inf if thi is None else float(np.asarray(thi).reshape(-1)[0])
        v = self.image(node, 0)
        if lo == -np.inf and hi == np.inf:
            self.set_image(node, v)
        elif lo == 0.0 and hi == np.inf:
            self.neuron(node, lambda s: _core.MPSCNNNeuronReLUNode(s))
        elif lo == 0.0:
            self.neuron(node, lambda s: _core.MPSCNNNeuronReLUNNode(s, a=0.0, b=hi))
        else:
            # x/2 + x/2 (x exactly, infinities too), clamped by the arithmetic node's bounds
            def clamp(s: _core.MPSNNImageNode) -> Any:
                n = _core.MPSNNAdditionNode(left_source=s, right_source=s)
                n.primary_scale = n.secondary_scale = 0.5
                n.minimum_value = max(lo, -3.4028234663852886e38)
                n.maximum_value = min(hi, 3.4028234663852886e38)
                return n
            self.neuron(node, clamp)

    # -- pass-through ----------------------------------------------------------------------------
    def op_Identity(self, node: Any, index: int) -> None:
        self.set_image(node, self.image(node, 0))

    def op_Dropout(self, node: Any, index: int) -> None:
        self.unused_outputs(node, 1)
        if len(node.input) > 2 and node.input[2]:
            t = self.const(node, 2)
            if t is not None and bool(np.asarray(t).reshape(-1)[0]):
                raise _unsupported(node, "training_mode is true; the importer builds inference graphs")
        self.set_image(node, self.image(node, 0))

    # -- arithmetic ------------------------------------------------------------------------------
    def op_Add(self, node: Any, index: int) -> None:
        self.binary(node, "Add")

    def op_Sub(self, node: Any, index: int) -> None:
        self.binary(node, "Sub")

    def op_Mul(self, node: Any, index: int) -> None:
        self.binary(node, "Mul")

    def op_Div(self, node: Any, index: int) -> None:
        self.binary(node, "Div")

    def op_Sum(self, node: Any, index: int) -> None:
        if len(node.input) == 1:
            self.set_image(node, self.image(node, 0))
            return
        acc = self.image(node, 0)
        for k in range(1, len(node.input)):
            acc = self.image_pair(node, "Add", acc, self.image(node, k))
        self.set_image(node, acc)

    def binary(self, node: Any, op: str) -> None:
        x0, x1 = self.values.get(node.input[0]), self.values.get(node.input[1])
        if isinstance(x0, _Image) and isinstance(x1, _Image):
            self.set_image(node, self.image_pair(node, op, x0, x1))
        elif isinstance(x0, _Image) and isinstance(x1, np.ndarray):
            self.set_image(node, self.with_constant(node, op, x0, x1, image_first=True))
        elif isinstance(x1, _Image) and isinstance(x0, np.ndarray):
            self.set_image(node, self.with_constant(node, op, x1, x0, image_first=False))
        else:
            raise _unsupported(node, "an input is not produced by an earlier node")

    def image_pair(self, node: Any, op: str, a: _Image, b: _Image) -> _Image:
        if a.rank != b.rank:
            raise _unsupported(node, f"operands of rank {a.rank} and {b.rank}; MPS combines images of one layout")
        if a.rank == 2 and not (a.spatial_one and b.spatial_one) and (a.c, a.h, a.w) != (b.c, b.h, b.w):
            raise _unsupported(node, "broadcasting flattened tensors is not supported")
        cls = {"Add": _core.MPSNNAdditionNode, "Sub": _core.MPSNNSubtractionNode,
               "Mul": _core.MPSNNMultiplicationNode, "Div": _core.MPSNNDivisionNode}[op]
        # broadcasting: an extent of 1 against a larger one reads index 0 (stride 0)
        def strides(p: _Image, q: _Image) -> tuple[int, int, int]:
            if p.h is None or q.h is None or p.w is None or q.w is None:
                if (p.h, p.w) != (q.h, q.w):
                    raise _unsupported(node, "broadcasting needs static heights and widths")
            return (0 if p.c == 1 and q.c > 1 else 1, 0 if p.h == 1 and (q.h or 1) > 1 else 1,
                    0 if p.w == 1 and (q.w or 1) > 1 else 1)
        sa, sb = strides(a, b), strides(b, a)
        for p, q, sp in ((a, b, sa), (b, a, sb)):
            if (sp[0] and p.c != q.c and q.c != 1) or (sp[1] and p.h != q.h and q.h != 1) or \
                    (sp[2] and p.w != q.w and q.w != 1):
                raise _unsupported(node, f"shapes (N, {a.c}, {a.h}, {a.w}) and (N, {b.c}, {b.h}, {b.w}) do not "
                                         "broadcast")
        if op == "Div":
            a, b = self.dense(a, "division"), self.dense(b, "a division by the gap channels")
        elif sa[0] and sb[0] and not (np.array_equal(a.pos, b.pos) and a.mc == b.mc):
            a, b = self.dense(a, "operands with other gaps"), self.dense(b, "operands with other gaps")
        n = cls(left_source=a.node, right_source=b.node)
        n.primary_stride_in_feature_channels, n.primary_stride_in_pixels_y, n.primary_stride_in_pixels_x = sa
        n.secondary_stride_in_feature_channels, n.secondary_stride_in_pixels_y, n.secondary_stride_in_pixels_x = sb
        self.label_node(n, self.name(node))
        full = a if sa[0] else b
        return dataclasses.replace(full, node=n.result_image, h=a.h if sa[1] else b.h, w=a.w if sa[2] else b.w)

    def with_constant(self, node: Any, op: str, v: _Image, k: np.ndarray, image_first: bool) -> _Image:
        k = np.asarray(k, np.float64)
        if k.ndim > v.rank:
            raise _unsupported(node, f"the constant of shape {k.shape} has more dimensions than the image")
        shape = (1,) * (v.rank - k.ndim) + k.shape
        if k.size == 1:
            c = float(k.reshape(-1)[0])
            if op == "Div" and not image_first:
                # c / x = c * x^-1
                v2 = self.dense(v, "a reciprocal of the gap channels")
                p = _core.MPSCNNNeuronPowerNode(v2.node, a=1.0, b=0.0, c=-1.0)
                n = _core.MPSCNNNeuronLinearNode(p.result_image, a=c, b=0.0)
                self.label_node(n, self.name(node))
                return v2.like(n.result_image)
            a, b = {("Add", True): (1.0, c), ("Add", False): (1.0, c), ("Mul", True): (c, 0.0),
                    ("Mul", False): (c, 0.0), ("Sub", True): (1.0, -c), ("Sub", False): (-1.0, c),
                    ("Div", True): (1.0 / c, 0.0)}[(op, image_first)]
            n = _core.MPSCNNNeuronLinearNode(v.node, a=a, b=b)
            self.label_node(n, self.name(node))
            return v.like(n.result_image)
        per_channel = shape[1] == v.c and int(np.prod(shape)) == v.c and shape[0] == 1
        if not per_channel or (v.rank == 2 and not v.spatial_one):
            raise _unsupported(node, f"the constant operand has shape {k.shape}; MPS combines an image with a "
                                     "scalar or a per-channel constant (C, 1, 1) only (a second image is fed by the "
                                     "graph)")
        vec = k.reshape(-1)
        if op == "Div" and not image_first:
            raise _unsupported(node, "a per-channel constant divided by an image is not supported")
        gamma, beta = {("Add", True): (1.0, vec), ("Add", False): (1.0, vec), ("Mul", True): (vec, 0.0),
                       ("Mul", False): (vec, 0.0), ("Sub", True): (1.0, -vec), ("Sub", False): (-1.0, vec),
                       ("Div", True): (1.0 / vec, 0.0)}[(op, image_first)]
        gv = np.broadcast_to(np.asarray(gamma, np.float64), (v.c,))
        bv = np.broadcast_to(np.asarray(beta, np.float64), (v.c,))
        self.helper_count += 1
        ds = ArrayBatchNormalizationDataSource(self.per_channel(v, gv, 1.0), self.per_channel(v, bv, 0.0),
                                               np.zeros(v.mc, np.float32), np.ones(v.mc, np.float32), epsilon=0.0,
                                               label=f"{self.name(node)} (per-channel {op} of a constant)")
        n = _core.MPSCNNBatchNormalizationNode(source=v.node, data_source=ds)
        self.label_node(n, self.name(node))
        return v.like(n.result_image)

    # -- concatenation ---------------------------------------------------------------------------
    def op_Concat(self, node: Any, index: int) -> None:
        vals = [self.image(node, k) for k in range(len(node.input))]
        rank = vals[0].rank
        axis = int(self.attrs(node)["axis"])
        axis = axis + rank if axis < 0 else axis
        if axis != 1:
            raise _unsupported(node, f"axis {axis}; MPS concatenates feature channels (axis 1) only")
        if any(v.rank != rank for v in vals) or (rank == 2 and not all(v.spatial_one for v in vals)):
            raise _unsupported(node, "concatenation of flattened tensors; MPS concatenates the channels of images")
        if len({(v.h, v.w) for v in vals}) != 1:
            raise _unsupported(node, f"sources of sizes {[(v.h, v.w) for v in vals]}; expected one height and width")
        if len(vals) == 1:
            self.set_image(node, vals[0])
            return
        n = _core.MPSNNConcatenationNode(sources=[v.node for v in vals])
        self.label_node(n, self.name(node))
        pos, off = [], 0
        for v in vals:
            pos.append(v.pos + off)
            off += 4 * (-(-v.mc // 4))
        mc = off - 4 * (-(-vals[-1].mc // 4)) + vals[-1].mc
        self.set_image(node, _Image(n.result_image, sum(v.c for v in vals), vals[0].h, vals[0].w,
                                    np.concatenate(pos).astype(np.int64), mc, rank))

    # -- resampling ------------------------------------------------------------------------------
    def op_Upsample(self, node: Any, index: int) -> None:
        a = self.attrs(node)
        scales = np.asarray(a["scales"]) if "scales" in a else self.const(node, 1)
        mode = a.get("mode", b"nearest")
        mode = mode.decode() if isinstance(mode, bytes) else str(mode)
        self.resample(node, scales, None, mode, "asymmetric", "floor")

    def op_Resize(self, node: Any, index: int) -> None:
        a = self.attrs(node)
        def s(key: str, default: str) -> str:
            t = a.get(key, default)
            return t.decode() if isinstance(t, bytes) else str(t)
        if self.opset < 11:
            scales, sizes = self.const(node, 1), None
        else:
            scales = self.const(node, 2)
            sizes = self.const(node, 3)
        if "axes" in a:
            raise _unsupported(node, "the axes attribute is not supported")
        self.resample(node, scales, sizes, s("mode", "nearest"),
                      s("coordinate_transformation_mode", "half_pixel" if self.opset >= 11 else "asymmetric"),
                      s("nearest_mode", "round_prefer_floor" if self.opset >= 11 else "floor"))  # 10: as Upsample

    def resample(self, node: Any, scales: Optional[np.ndarray], sizes: Optional[np.ndarray], mode: str,
                 transform: str, nearest_mode: str) -> None:
        v = self.image(node, 0)
        self.four_d(node, v)
        if scales is not None and np.asarray(scales).size:
            f = [float(t) for t in np.asarray(scales).reshape(-1)]
        elif sizes is not None and np.asarray(sizes).size:
            h, w = self.spatial(node, v)
            z = [int(t) for t in np.asarray(sizes).reshape(-1)]
            if len(z) != 4:
                raise _unsupported(node, f"sizes {z}; expected 4 values")
            f = [1.0, 1.0, z[2] / h, z[3] / w]
        else:
            raise _unsupported(node, "needs constant scales or sizes")
        if len(f) != 4 or f[0] != 1 or f[1] != 1:
            raise _unsupported(node, f"scales {f}: MPS resizes height and width only")
        fy, fx = f[2], f[3]
        if fy != int(fy) or fx != int(fx) or fy < 1 or fx < 1:
            raise _unsupported(node, f"scale factors {fy} x {fx}; MPS upsamples by integer factors >= 1")
        fy_i, fx_i = int(fy), int(fx)
        name = self.name(node)
        if mode == "nearest":
            ok = transform in ("half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn") or \
                (transform == "asymmetric" and (nearest_mode == "floor" or (fy_i == 1 and fx_i == 1)))
            if not ok:
                raise _unsupported(node, f"nearest mode with coordinate_transformation_mode {transform!r} and "
                                         f"nearest_mode {nearest_mode!r} does not pick floor(o / f)")
            n: Any = _core.MPSCNNUpsamplingNearestNode(v.node, fx_i, fy_i)
        elif mode in ("linear", "bilinear"):
            if transform in ("half_pixel", "pytorch_half_pixel"):
                align = False
            elif transform == "align_corners":
                align = True
            else:
                raise _unsupported(node, f"linear mode with coordinate_transformation_mode {transform!r}; MPS "
                                         "interpolates half_pixel or align_corners")
            n = _core.MPSCNNUpsamplingBilinearNode(v.node, fx_i, fy_i, align_corners=align)
        else:
            raise _unsupported(node, f"mode {mode!r}; MPS upsamples nearest or bilinear")
        self.label_node(n, name)
        self.values[node.output[0]] = dataclasses.replace(
            v, node=n.result_image, h=None if v.h is None else v.h * fy_i, w=None if v.w is None else v.w * fx_i)


def load(model_or_path: Union[str, os.PathLike[str], bytes, Any], device: Optional[_core.MTLDevice] = None, *,
         optimizer: Optional[Callable[[str], Optional[Optimizer]]] = None,
         input_shapes: Optional[Mapping[str, Sequence[Optional[int]]]] = None) -> ONNXModel:
    """Imports an ONNX model as an MPSNNGraph.

    Args:
        model_or_path: an ``onnx.ModelProto``, a path to a .onnx file, or its bytes.
        device: the MTLDevice of the graph (default ``MTLCreateSystemDefaultDevice()``).
        optimizer: makes the weights trainable: called with each Conv / ConvTranspose / Gemm /
            MatMul / BatchNormalization / InstanceNormalization node's name, returns an
            MPSNNOptimizer for its data source (or None to keep it fixed).
        input_shapes: ``{input name: (N, C, H, W)}`` for inputs whose channel count, height or
            width the model leaves symbolic (needed by Flatten + Gemm and global pooling).

    Returns:
        An ONNXModel: ``.graph`` (the MPSNNGraph), ``.data_sources`` (by ONNX node name) and
        ``.run(...)``, which takes and returns ONNX's NCHW arrays.

    Raises:
        ImportError: onnx is not installed.
        mpsnn.UnsupportedError: an ONNX construct MPS cannot express faithfully (it names the node and why).
    """
    onnx = _onnx()
    if isinstance(model_or_path, (str, os.PathLike)):
        model = onnx.load(os.fspath(model_or_path))
    elif isinstance(model_or_path, (bytes, bytearray)):
        model = onnx.load_from_string(bytes(model_or_path))
    else:
        model = model_or_path
    if device is None:
        device = _core.MTLCreateSystemDefaultDevice()
    return _Importer(model, device, optimizer, input_shapes).run()
