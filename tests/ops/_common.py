"""Helpers shared by the per-family forward tests (graph building, padding methods, PyTorch layout)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest

import mpsnn
import reference as R
from conftest import make_graph  # noqa: F401  (re-exported for the op tests)

FP16 = mpsnn.MPSImageFeatureChannelFormat.float16
# For tests of float32 semantics (FLT_MAX clamps, values beyond float16's range or precision) on
# devices whose default graph format is float16 (CUDA).
FP32 = mpsnn.MPSImageFeatureChannelFormat.float32

_SIZE = {R.SIZE_VALID_ONLY: "valid", R.SIZE_SAME: "same", R.SIZE_FULL: "full"}
_ALIGN = {R.ALIGN_CENTERED: "centred", R.ALIGN_TOP_LEFT: "alignTL", R.ALIGN_BOTTOM_RIGHT: "alignBR"}
_REM = {R.ADD_REMAINDER_TO_TOP_LEFT: "remTL", R.ADD_REMAINDER_TO_TOP_RIGHT: "remTR",
        R.ADD_REMAINDER_TO_BOTTOM_LEFT: "remBL", R.ADD_REMAINDER_TO_BOTTOM_RIGHT: "remBR"}


def method_id(m: int) -> str:
    """Readable pytest id of a padding method, e.g. 'same-centred-remBR'."""
    m = int(m)
    return "-".join((_SIZE[m & R.SIZE_MASK], _ALIGN[m & R.ALIGN_MASK], _REM[m & R.REMAINDER_MASK]))


# The 18 behaviourally distinct non-custom methods: every size style with centred alignment and
# each of the four remainder placements, plus top-left / bottom-right alignment (where the
# remainder does not matter; rotate it so every code still appears).
REPRESENTATIVE_METHODS = tuple(
    [size | R.ALIGN_CENTERED | rem for size in (R.SIZE_VALID_ONLY, R.SIZE_SAME, R.SIZE_FULL)
     for rem in (R.ADD_REMAINDER_TO_TOP_LEFT, R.ADD_REMAINDER_TO_TOP_RIGHT, R.ADD_REMAINDER_TO_BOTTOM_LEFT,
                 R.ADD_REMAINDER_TO_BOTTOM_RIGHT)]
    + [size | align | rem for (size, rem) in ((R.SIZE_VALID_ONLY, R.ADD_REMAINDER_TO_TOP_RIGHT),
                                              (R.SIZE_SAME, R.ADD_REMAINDER_TO_BOTTOM_LEFT),
                                              (R.SIZE_FULL, R.ADD_REMAINDER_TO_BOTTOM_RIGHT))
       for align in (R.ALIGN_TOP_LEFT, R.ALIGN_BOTTOM_RIGHT)])


def set_padding(node, method):
    """Give `node` the default padding policy for `method` (MPSNNPaddingMethod bits)."""
    node.padding_policy = mpsnn.MPSNNDefaultPadding.padding_with_method(int(method))
    return node


def geometry_or_none(shape_hw, kernel_hw, stride_hw, dilation_hw, method, reverse=False):
    """window_geometry, or None where the method gives a result size <= 0."""
    try:
        return R.window_geometry(shape_hw, kernel_hw, stride_hw, dilation_hw, method, reverse)
    except ValueError:
        return None


def run_graph(device, make, inputs, fuse=True, fmt=None):
    """run_node with an optional graph format; returns a NumPy copy of the result."""
    g = make_graph(device, make, len(inputs), fuse, fmt)
    return np.array(g.run([np.ascontiguousarray(x, np.float32) for x in inputs]).numpy())


def to_t(x):
    """NHWC NumPy -> NCHW float64 torch tensor."""
    import torch
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x, np.float64))).permute(0, 3, 1, 2)


def from_t(t):
    """NCHW torch tensor -> NHWC NumPy."""
    return t.detach().permute(0, 2, 3, 1).contiguous().numpy()


def torch_pad(t, py, py_after, px, px_after, value=0.0):
    """F.pad where negative amounts crop (nodes.md §1.2 recipe)."""
    import torch.nn.functional as F
    h, w = t.shape[2], t.shape[3]
    t = t[:, :, max(0, -py):h - max(0, -py_after), max(0, -px):w - max(0, -px_after)]
    pads = (max(0, px), max(0, px_after), max(0, py), max(0, py_after))
    return F.pad(t, pads, value=value) if any(pads) else t


# One convolution test case (also the binary convolution tables, which use groups 1, no dilation).
class ConvCase(NamedTuple):
    n: int
    h: int
    w: int
    cin: int
    cout: int
    kh: int
    kw: int
    stride: tuple = (1, 1)
    dilation: tuple = (1, 1)
    groups: int = 1

    def __str__(self):
        s = f"n{self.n}-{self.h}x{self.w}x{self.cin}-o{self.cout}-k{self.kh}x{self.kw}"
        if self.stride != (1, 1):
            s += f"-s{self.stride[0]}{self.stride[1]}"
        if self.dilation != (1, 1):
            s += f"-d{self.dilation[0]}{self.dilation[1]}"
        if self.groups != 1:
            s += f"-g{self.groups}"
        return s

    @property
    def k(self):
        return self.kh * self.kw * self.cin // self.groups


# --------------------------------------------------------------------------------------------
# gradient graphs: inputs named by handle labels

class Handle:
    """Minimal MPSHandle: names a graph input (or state) through label()."""

    def __init__(self, name: str):
        self.name = name

    def label(self) -> str:
        return self.name

    def __repr__(self):
        return f"Handle({self.name!r})"


def labelled_graph(device, results, fuse=True, fmt=None):
    """MPSNNGraph of one result image node or a list of them (multi-result initializer), with temporary
    memory and results poisoned (NaN) and fusion on or off."""
    if isinstance(results, (list, tuple)):
        g = mpsnn.MPSNNGraph(device, result_images=list(results))
    else:
        g = mpsnn.MPSNNGraph(device, results)
    g.fusion_enabled = fuse
    g.poison_temporaries = True
    if fmt is not None:
        g.format = fmt
    return g


def inputs_by_label(graph, arrays):
    """`arrays` (label -> NHWC array) as float32 C-contiguous arrays in graph.source_image_handles order."""
    labels = [h.label() for h in graph.source_image_handles]
    assert sorted(labels) == sorted(arrays), (labels, sorted(arrays))
    return [np.ascontiguousarray(arrays[name], np.float32) for name in labels]


def run_by_label(graph, arrays):
    """Runs `graph` on `arrays` (label -> array); a NumPy copy of the result, or a list for several results."""
    out = graph.run(inputs_by_label(graph, arrays))
    if isinstance(out, (list, tuple)):
        return [np.array(o.numpy()) for o in out]
    return np.array(out.numpy())


def encode_with_states(device, graph, arrays):
    """Encodes one run of `graph` on a new command buffer, waits, and returns (result, destination_states)."""
    cb = device.make_command_queue().make_command_buffer()
    states = []
    out = graph.encode(cb, [mpsnn.MPSImage.from_numpy(a) for a in arrays], destination_states=states)
    cb.commit()
    cb.wait_until_completed()
    return out, states


def train_step(graph, queue, device, x, targets):
    """One encode_batch of a training graph whose loss reads dense labels: images x[i] (NHWC
    batch), labels targets[i] (HWC each); returns the reported loss (the sum of the loss images)."""
    hwc = mpsnn.MPSDataLayout.HeightxWidthxFeatureChannels
    labels = [mpsnn.MPSCNNLossLabels(device, mpsnn.MPSCNNLossDataDescriptor(
        np.ascontiguousarray(t), hwc, (t.shape[1], t.shape[0], t.shape[2]))) for t in targets]
    cb = queue.make_command_buffer()
    graph.encode_batch(cb, source_images=[[mpsnn.MPSImage.from_numpy(x[i:i + 1].copy()) for i in range(len(x))]],
                       source_states=[labels])
    cb.commit()
    cb.wait_until_completed()
    return sum(float(l.loss_image().numpy().sum()) for l in labels)


def conv_method_params(cases, methods=REPRESENTATIVE_METHODS, reverse=False):
    """pytest params (case, padding method) for every method whose geometry exists (`reverse`: the
    transposed convolution's)."""
    out = []
    for c in cases:
        for m in methods:
            if geometry_or_none((c.h, c.w), (c.kh, c.kw), c.stride, c.dilation, m, reverse=reverse) is not None:
                out.append(pytest.param(c, m, id=f"{c}-{method_id(m)}"))
    return out
