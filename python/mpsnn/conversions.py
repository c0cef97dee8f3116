"""Weight layouts of other frameworks -> MPS (nodes.md §4): the one place that holds these rules, used
by mpsnn.onnx and examples/from_pytorch.py.

PyTorch and ONNX store tensors NCHW and convolution weights OIHW; MPS images are (N, H, W, C) and its
convolution weights OHWI. Every function returns a new C-contiguous float32 array.

Channel positions: a source image may hold its channels at other positions than 0..C-1 (a
concatenation of sources whose channel counts are not multiples of 4 leaves gap channels, nodes.md
§12.1). ``channel_positions[c]`` is the position of framework channel ``c`` in the MPS image and
``mps_channels`` that image's channel count; the weights then read the gap channels with weight 0.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


def _scatter_input_channels(w_ohwi: npt.NDArray[np.floating], channel_positions: Optional[npt.ArrayLike],
                            mps_channels: Optional[int]) -> FloatArray:
    w_ohwi = np.asarray(w_ohwi, np.float32)
    if channel_positions is None:
        return np.ascontiguousarray(w_ohwi)
    pos = np.asarray(channel_positions, np.int64)
    if pos.shape != (w_ohwi.shape[3],):
        raise ValueError(f"channel_positions has {pos.size} entries; the weights read {w_ohwi.shape[3]} channels")
    count = int(mps_channels) if mps_channels is not None else int(pos.max()) + 1
    out = np.zeros(w_ohwi.shape[:3] + (count,), np.float32)
    out[..., pos] = w_ohwi
    return out


def convolution_weights_from_oihw(w: npt.ArrayLike, channel_positions: Optional[npt.ArrayLike] = None,
                                  mps_channels: Optional[int] = None) -> FloatArray:
    """Conv2d / ONNX Conv weights OIHW (out, in/groups, kh, kw) -> OHWI (out, kh, kw, in/groups)."""
    a = np.asarray(w, np.float32)
    if a.ndim != 4:
        raise ValueError(f"convolution weights have shape {a.shape}; expected OIHW (out, in, kh, kw)")
    return _scatter_input_channels(a.transpose(0, 2, 3, 1), channel_positions, mps_channels)


def grouped_weights_as_dense(w_oihw: npt.ArrayLike, groups: int) -> FloatArray:
    """Grouped OIHW weights (out, in/groups, kh, kw) -> the equivalent dense OIHW weights (out, in, kh,
    kw) with zeros outside each output channel's group (for groups MPS cannot run natively)."""
    a = np.asarray(w_oihw, np.float32)
    cout, cg = a.shape[0], a.shape[1]
    og = cout // groups
    dense = np.zeros((cout, cg * groups) + a.shape[2:], np.float32)
    for g in range(groups):
        dense[g * og:(g + 1) * og, g * cg:(g + 1) * cg] = a[g * og:(g + 1) * og]
    return dense


def convolution_transpose_weights(w: npt.ArrayLike, groups: int = 1) -> FloatArray:
    """ConvTranspose2d / ONNX ConvTranspose weights (in, out/groups, kh, kw) -> MPS transposed
    convolution weights OHWI (out, kh, kw, in/groups), rotated 180 degrees (nodes.md §4.3: MPS uses
    them as given in a stride-1 correlation over the zero-inserted source)."""
    a = np.asarray(w, np.float32)
    if a.ndim != 4:
        raise ValueError(f"transposed convolution weights have shape {a.shape}; expected (in, out/groups, kh, kw)")
    cin, og = a.shape[0], a.shape[1]
    cg = cin // groups
    # (groups, cg, og, kh, kw) -> (groups, og, kh, kw, cg) -> (out, kh, kw, cg)
    g = a.reshape(groups, cg, og, a.shape[2], a.shape[3]).transpose(0, 2, 3, 4, 1)
    g = g.reshape(groups * og, a.shape[2], a.shape[3], cg)
    return np.ascontiguousarray(g[:, ::-1, ::-1, :])


def fully_connected_weights_from_nchw_flatten(w: npt.ArrayLike, channels: int, height: int, width: int,
                                              channel_positions: Optional[npt.ArrayLike] = None,
                                              mps_channels: Optional[int] = None) -> FloatArray:
    """Linear / ONNX Gemm weights (out, C*H*W) applied after a channel-first flatten of a (C, H, W)
    map -> the OHWI weights (out, H, W, C) of an MPSCNNFullyConnectedNode with an HxW kernel: input
    index c*H*W + y*W + x becomes element (out, y, x, c) (MPS flattens (H, W, C))."""
    a = np.asarray(w, np.float32)
    if a.ndim != 2 or a.shape[1] != channels * height * width:
        raise ValueError(f"linear weights have shape {a.shape}; expected (out, {channels * height * width}) "
                         f"for a {channels}x{height}x{width} map")
    return _scatter_input_channels(a.reshape(-1, channels, height, width).transpose(0, 2, 3, 1),
                                   channel_positions, mps_channels)
