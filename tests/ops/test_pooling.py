"""Forward tests of the pooling nodes (nodes.md §5): max, average, L2-norm and dilated max pooling over
padding methods, strides, edge modes, zero-pad sizes and excludeEdges."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import NamedTuple

import numpy as np
import pytest

import mpsnn
import reference as R
from conftest import assert_close

from ._common import (FP16, REPRESENTATIVE_METHODS, geometry_or_none, method_id, run_graph, set_padding, to_t,
                      from_t, torch_pad)

NODES = {
    'max': mpsnn.MPSCNNPoolingMaxNode,
    'average': mpsnn.MPSCNNPoolingAverageNode,
    'l2': mpsnn.MPSCNNPoolingL2NormNode,
}
ROW = {'max': "exact", 'average': "reduction", 'l2': "reduction"}
EDGE = {'clamp': mpsnn.MPSImageEdgeMode.clamp, 'zero': mpsnn.MPSImageEdgeMode.zero}


class PoolCase(NamedTuple):
    n: int
    h: int
    w: int
    c: int
    kh: int
    kw: int
    sy: int
    sx: int

    def __str__(self):
        return f"n{self.n}-{self.h}x{self.w}x{self.c}-k{self.kh}x{self.kw}-s{self.sy}{self.sx}"


CASES = [
    PoolCase(1, 5, 7, 3, 2, 2, 2, 2),
    PoolCase(2, 7, 6, 5, 3, 3, 1, 1),
    PoolCase(2, 9, 8, 6, 3, 2, 3, 2),
    PoolCase(3, 6, 5, 1, 4, 3, 2, 3),
    PoolCase(1, 4, 9, 7, 1, 1, 2, 1),
]


def _node(mode, method=None, edge=None, kernel_stride=None):
    kw, kh, sx, sy = kernel_stride

    def make(src):
        node = NODES[mode](src, kw, kh, sx, sy)
        if method is not None:
            set_padding(node, method)
        if edge is not None:
            node.edge_mode = EDGE[edge]
        return node
    return make


def _params(edges, methods):
    out = []
    for c in CASES:
        for m in methods:
            g = geometry_or_none((c.h, c.w), (c.kh, c.kw), (c.sy, c.sx), (1, 1), m)
            if g is None:
                continue
            for mode in NODES:
                for e in edges:
                    out.append(pytest.param(c, m, mode, e, id=f"{mode}-{e}-{c}-{method_id(m)}"))
    return out


def _check(case, method, mode, edge, device, rng, fmt=None):
    x = rng.standard_normal((case.n, case.h, case.w, case.c)).astype(np.float32)
    y = run_graph(device, _node(mode, method, edge, (case.kw, case.kh, case.sx, case.sy)), [x], fmt=fmt)
    g = R.window_geometry((case.h, case.w), (case.kh, case.kw), (case.sy, case.sx), (1, 1), method)
    ref = R.pool2d(x, mode, (case.kh, case.kw), (case.sy, case.sx), g['pad'], g['out_hw'], edge_mode=edge or 'clamp')
    assert y.shape == ref.shape
    return y, ref


@pytest.mark.parametrize("case,method,mode,edge", _params([None], REPRESENTATIVE_METHODS))
def test_pooling_default_clamp_edge(case, method, mode, edge, device, rng):
    y, ref = _check(case, method, mode, edge, device, rng)
    assert_close(y, ref, ROW[mode], k=case.kh * case.kw)


ZERO_EDGE_METHODS = [R.SIZE_SAME, R.SIZE_SAME | R.ADD_REMAINDER_TO_BOTTOM_RIGHT, R.SIZE_FULL,
                     R.SIZE_FULL | R.ALIGN_TOP_LEFT, R.SIZE_VALID_ONLY | R.ALIGN_BOTTOM_RIGHT,
                     R.SIZE_SAME | R.ADD_REMAINDER_TO_TOP_RIGHT]


@pytest.mark.parametrize("case,method,mode,edge", _params(['zero'], ZERO_EDGE_METHODS))
def test_pooling_zero_edge(case, method, mode, edge, device, rng):
    y, ref = _check(case, method, mode, edge, device, rng)
    assert_close(y, ref, ROW[mode], k=case.kh * case.kw)


@pytest.mark.parametrize("mode", list(NODES))
def test_pooling_constructors(mode, device, rng):
    """(source, filter_size) = kernel = stride; (source, filter_size, stride)."""
    x = rng.standard_normal((2, 7, 5, 3)).astype(np.float32)
    y1 = run_graph(device, lambda s: NODES[mode](s, 3), [x])
    assert_close(y1, R.pool2d(x, mode, (3, 3), (3, 3)), ROW[mode], k=9)
    y2 = run_graph(device, lambda s: NODES[mode](s, filter_size=3, stride=2), [x])
    assert_close(y2, R.pool2d(x, mode, (3, 3), (2, 2)), ROW[mode], k=9)
    node = NODES[mode](mpsnn.MPSNNImageNode(), 4, 3, 2, 1)
    assert (node.kernel_width, node.kernel_height, node.stride_in_pixels_x, node.stride_in_pixels_y) == (4, 3, 2, 1)
    assert node.edge_mode == mpsnn.MPSImageEdgeMode.clamp


def test_pooling_float16_graph_format(device, rng):
    case = PoolCase(2, 9, 8, 6, 3, 2, 3, 2)
    for mode, row in (('max', "elementwise"), ('average', "reduction")):
        y, ref = _check(case, R.SIZE_SAME | R.ADD_REMAINDER_TO_BOTTOM_RIGHT, mode, None, device, rng, fmt=FP16)
        assert y.dtype == np.float16
        assert_close(y, ref, row, "float16")


# --------------------------------------------------------------------------------------------
# average pooling: zero pad sizes, excludeEdges, TensorFlow padding

@pytest.mark.parametrize("zy,zx", [(0, 0), (1, 0), (1, 1), (0, 2)], ids=str)
@pytest.mark.parametrize("method", [R.SIZE_SAME, R.SIZE_FULL, R.SIZE_SAME | R.ADD_REMAINDER_TO_BOTTOM_RIGHT],
                         ids=method_id)
def test_average_pooling_zero_pad_size(zy, zx, method, device, rng):
    case = PoolCase(2, 7, 6, 5, 3, 4, 2, 1)
    x = rng.standard_normal((case.n, case.h, case.w, case.c)).astype(np.float32)

    def make(src):
        node = set_padding(mpsnn.MPSCNNPoolingAverageNode(src, case.kw, case.kh, case.sx, case.sy), method)
        node.zero_pad_size_x, node.zero_pad_size_y = zx, zy
        return node

    y = run_graph(device, make, [x])
    g = R.window_geometry((case.h, case.w), (case.kh, case.kw), (case.sy, case.sx), (1, 1), method)
    ref = R.average_pool2d(x, (case.kh, case.kw), (case.sy, case.sx), g['pad'], g['out_hw'], zero_pad_hw=(zy, zx))
    assert_close(y, ref, "reduction", k=12)


@pytest.mark.parametrize("method", [R.SIZE_SAME, R.SIZE_FULL, R.SIZE_SAME | R.ADD_REMAINDER_TO_BOTTOM_RIGHT,
                                    R.SIZE_FULL | R.ALIGN_TOP_LEFT, R.SIZE_VALID_ONLY], ids=method_id)
@pytest.mark.parametrize("edge", ['clamp', 'zero'])
def test_average_pooling_exclude_edges(method, edge, device, rng):
    case = PoolCase(2, 7, 8, 3, 3, 3, 2, 3)
    x = rng.standard_normal((case.n, case.h, case.w, case.c)).astype(np.float32)

    def make(src):
        node = set_padding(mpsnn.MPSCNNPoolingAverageNode(src, case.kw, case.kh, case.sx, case.sy),
                           method | R.EXCLUDE_EDGES)
        node.edge_mode = EDGE[edge]
        return node

    y = run_graph(device, make, [x])
    g = R.window_geometry((case.h, case.w), (case.kh, case.kw), (case.sy, case.sx), (1, 1), method)
    ref = R.average_pool2d(x, (case.kh, case.kw), (case.sy, case.sx), g['pad'], g['out_hw'], edge_mode=edge,
                           exclude_edges=True, pad_after=g['pad_after'])
    assert_close(y, ref, "reduction", k=9)


@pytest.mark.parametrize("valid_only", [False, True], ids=["same", "valid"])
def test_average_pooling_tensorflow_padding(valid_only, device, rng):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    case = PoolCase(2, 7, 8, 5, 2, 3, 2, 2)
    x = rng.standard_normal((case.n, case.h, case.w, case.c)).astype(np.float32)
    pol = (mpsnn.MPSNNDefaultPadding.padding_for_tensorflow_average_pooling_valid_only() if valid_only
           else mpsnn.MPSNNDefaultPadding.padding_for_tensorflow_average_pooling())

    def make(src):
        node = mpsnn.MPSCNNPoolingAverageNode(src, case.kw, case.kh, case.sx, case.sy)
        node.edge_mode = mpsnn.MPSImageEdgeMode.zero   # the policy switches the kernel to clamp
        node.padding_policy = pol
        return node

    y = run_graph(device, make, [x])
    method = R.SIZE_VALID_ONLY if valid_only else R.TENSORFLOW_SAME
    g = R.window_geometry((case.h, case.w), (case.kh, case.kw), (case.sy, case.sx), (1, 1), method)
    ref = R.average_pool2d(x, (case.kh, case.kw), (case.sy, case.sx), g['pad'], g['out_hw'], edge_mode='clamp')
    assert_close(y, ref, "reduction", k=6)
    # TensorFlow SAME average pooling = mean over the valid pixels of a bottom/right-padded window
    ones = torch_pad(torch.ones_like(to_t(x)), *g['pads'])
    s = F.avg_pool2d(torch_pad(to_t(x), *g['pads']), (case.kh, case.kw), (case.sy, case.sx))
    cnt = F.avg_pool2d(ones, (case.kh, case.kw), (case.sy, case.sx))
    assert_close(y, from_t(s / cnt), "reduction", k=6)


# --------------------------------------------------------------------------------------------
# dilated max pooling

DILATED = [
    (PoolCase(1, 7, 8, 3, 2, 2, 1, 1), (3, 3)),
    (PoolCase(2, 9, 7, 5, 3, 2, 2, 1), (2, 3)),
    (PoolCase(2, 8, 8, 6, 3, 3, 3, 3), (2, 2)),
]


def _dilated_params():
    out = []
    for c, d in DILATED:
        for m in REPRESENTATIVE_METHODS[::2] + (R.SIZE_SAME, R.SIZE_FULL | R.ALIGN_BOTTOM_RIGHT):
            g = geometry_or_none((c.h, c.w), (c.kh, c.kw), (c.sy, c.sx), d, m)
            if g is None:
                continue
            for e in ('clamp', 'zero'):
                out.append(pytest.param(c, d, m, e, id=f"{e}-{c}-d{d[0]}{d[1]}-{method_id(m)}"))
    return out


@pytest.mark.parametrize("case,dil,method,edge", _dilated_params())
def test_dilated_max_pooling(case, dil, method, edge, device, rng):
    x = rng.standard_normal((case.n, case.h, case.w, case.c)).astype(np.float32)

    def make(src):
        node = mpsnn.MPSCNNDilatedPoolingMaxNode(src, case.kw, case.kh, case.sx, case.sy, dil[1], dil[0])
        set_padding(node, method)
        if edge == 'zero':
            node.edge_mode = mpsnn.MPSImageEdgeMode.zero
        return node

    y = run_graph(device, make, [x])
    g = R.window_geometry((case.h, case.w), (case.kh, case.kw), (case.sy, case.sx), dil, method)
    ref = R.max_pool2d(x, (case.kh, case.kw), (case.sy, case.sx), g['pad'], g['out_hw'], dil, edge)
    assert_close(y, ref, "exact")


def test_dilated_max_pooling_constructors(device, rng):
    x = rng.standard_normal((2, 9, 8, 3)).astype(np.float32)
    y = run_graph(device, lambda s: mpsnn.MPSCNNDilatedPoolingMaxNode(s, 2), [x])
    assert_close(y, R.max_pool2d(x, (2, 2), (2, 2), dilation_hw=(2, 2)), "exact")
    y = run_graph(device, lambda s: mpsnn.MPSCNNDilatedPoolingMaxNode(s, filter_size=3, stride=1, dilation_rate=2),
                  [x])
    assert_close(y, R.max_pool2d(x, (3, 3), (1, 1), dilation_hw=(2, 2)), "exact")
    node = mpsnn.MPSCNNDilatedPoolingMaxNode(mpsnn.MPSNNImageNode(), 3, 2, 1, 2, 4, 5)
    assert (node.kernel_width, node.kernel_height, node.dilation_rate_x, node.dilation_rate_y) == (3, 2, 4, 5)
    assert node.edge_mode == mpsnn.MPSImageEdgeMode.clamp


# --------------------------------------------------------------------------------------------
# PyTorch cross-checks

@pytest.mark.parametrize("method", [R.SIZE_SAME, R.SIZE_SAME | R.ADD_REMAINDER_TO_BOTTOM_RIGHT, R.SIZE_FULL,
                                    R.SIZE_VALID_ONLY | R.ALIGN_BOTTOM_RIGHT, R.SIZE_SAME | R.ALIGN_TOP_LEFT],
                         ids=method_id)
@pytest.mark.parametrize("dil", [(1, 1), (2, 3)], ids=str)
def test_max_pooling_vs_torch(method, dil, device, rng):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    case = PoolCase(2, 9, 10, 5, 3, 2, 2, 3)
    x = rng.standard_normal((case.n, case.h, case.w, case.c)).astype(np.float32)
    if dil == (1, 1):
        make = _node('max', method, None, (case.kw, case.kh, case.sx, case.sy))
    else:
        def make(src):
            node = mpsnn.MPSCNNDilatedPoolingMaxNode(src, case.kw, case.kh, case.sx, case.sy, dil[1], dil[0])
            return set_padding(node, method)
    y = run_graph(device, make, [x])
    g = R.window_geometry((case.h, case.w), (case.kh, case.kw), (case.sy, case.sx), dil, method)
    xt = torch_pad(to_t(x), *g['pads'], value=-float('inf'))      # clamp edge = max over in-image taps
    ref = F.max_pool2d(xt, (case.kh, case.kw), (case.sy, case.sx), dilation=dil)
    assert_close(y, from_t(ref), "exact")


@pytest.mark.parametrize("edge", ['clamp', 'zero'])
@pytest.mark.parametrize("k,s", [(3, 1), (3, 2), (5, 2), (2, 2)], ids=str)
def test_average_pooling_vs_torch(edge, k, s, device, rng):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    x = rng.standard_normal((2, 9, 7, 6)).astype(np.float32)
    method = R.SIZE_SAME | R.ADD_REMAINDER_TO_BOTTOM_RIGHT
    y = run_graph(device, _node('average', method, edge, (k, k, s, s)), [x])
    g = R.window_geometry((9, 7), (k, k), (s, s), (1, 1), method)
    xt = torch_pad(to_t(x), *g['pads'])
    total = F.avg_pool2d(xt, k, s, divisor_override=1)
    if edge == 'zero':
        ref = total / (k * k)
    else:
        ref = total / F.avg_pool2d(torch_pad(torch.ones_like(to_t(x)), *g['pads']), k, s, divisor_override=1)
    assert_close(y, from_t(ref), "reduction", k=k * k)
    if g['Py'] == g['Py_after'] and g['Px'] == g['Px_after']:
        ref2 = F.avg_pool2d(to_t(x), k, s, padding=(g['Py'], g['Px']), count_include_pad=(edge == 'zero'))
        assert_close(y, from_t(ref2), "reduction", k=k * k)


def test_l2_pooling_vs_torch(device, rng):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    x = rng.standard_normal((2, 9, 8, 5)).astype(np.float32)
    y = run_graph(device, _node('l2', R.SIZE_VALID_ONLY, None, (2, 3, 2, 2)), [x])
    ref = F.lp_pool2d(to_t(x), 2, (3, 2), (2, 2))
    assert_close(y, from_t(ref), "reduction", k=6)


# --------------------------------------------------------------------------------------------
# bad parameters

def test_pooling_unsupported_edge_mode(device, rng):
    x = rng.standard_normal((1, 4, 4, 3)).astype(np.float32)

    def make(src):
        node = mpsnn.MPSCNNPoolingMaxNode(src, 2)
        node.edge_mode = mpsnn.MPSImageEdgeMode.mirror
        return node

    with pytest.raises(mpsnn.ShapeError, match=r"\[pooling\] edge mode 2 is only defined for the pad filter"):
        run_graph(device, make, [x])


@pytest.mark.parametrize("args,what", [((0, 2, 1, 1), "kernel_width is 0"), ((2, 2, 1, 0), "stride_in_pixels_y is 0")],
                         ids=["kernel", "stride"])
def test_pooling_non_positive_window(args, what):
    with pytest.raises(mpsnn.ShapeError, match=r"\[pooling\] " + what + "; expected > 0"):
        mpsnn.MPSCNNPoolingAverageNode(mpsnn.MPSNNImageNode(), *args)


def test_pooling_valid_window_larger_than_source(device, rng):
    x = rng.standard_normal((1, 4, 4, 3)).astype(np.float32)
    with pytest.raises(mpsnn.ShapeError, match=r"\[pooling\] result size is .* for a 4x4 source"):
        run_graph(device, _node('max', R.SIZE_VALID_ONLY, None, (5, 2, 1, 1)), [x])


@pytest.mark.parametrize("axis,value", [("x", -1), ("y", -3)])
def test_pooling_negative_zero_pad(axis, value):
    """Run in a child process: the bug corrupts the heap."""
    code = textwrap.dedent(f"""
        import numpy as np, mpsnn
        node = mpsnn.MPSCNNPoolingAverageNode(mpsnn.MPSNNImageNode(), 2)
        node.zero_pad_size_{axis} = {value}
        try:  # attributes are checked again when a graph freezes them
            g = mpsnn.MPSNNGraph(mpsnn.MTLCreateSystemDefaultDevice(), node.result_image)
            g.run([np.ones((1, 4, 4, 3), np.float32)])
        except mpsnn.ShapeError as e:
            assert "[pooling] zero pad size" in str(e) and "is negative" in str(e), str(e)
            print("SHAPE-ERROR")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert r.returncode == 0 and "SHAPE-ERROR" in r.stdout, (r.returncode, r.stdout, r.stderr[-500:])
