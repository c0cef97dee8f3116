"""Forward tests of the binary arithmetic nodes (nodes.md §3.1-3.2): add, subtract, multiply, divide with
scales, bias, clamp, per-axis broadcasting strides and IEEE-754 edge cases."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import mpsnn
import reference as R
from conftest import assert_close

from ._common import FP16, FP32, run_graph

NODES = {'add': mpsnn.MPSNNAdditionNode, 'subtract': mpsnn.MPSNNSubtractionNode,
         'multiply': mpsnn.MPSNNMultiplicationNode, 'divide': mpsnn.MPSNNDivisionNode}
OPS = list(NODES)


def _operands(rng, op, a_shape, b_shape):
    a = rng.standard_normal(a_shape).astype(np.float32)
    b = rng.standard_normal(b_shape)
    if op == 'divide':                          # keep divisors away from 0
        b = np.sign(b) * (np.abs(b) + 0.5)
    return a, b.astype(np.float32)


def _node(op, params=None, strides=None):
    params = params or {}

    def make(a, b):
        node = NODES[op](left_source=a, right_source=b)
        for k, v in params.items():
            setattr(node, k, v)
        if strides is not None:
            (pc, py, px), (sc, sy, sx) = strides
            node.primary_stride_in_feature_channels, node.primary_stride_in_pixels_y = pc, py
            node.primary_stride_in_pixels_x = px
            node.secondary_stride_in_feature_channels, node.secondary_stride_in_pixels_y = sc, sy
            node.secondary_stride_in_pixels_x = sx
        return node
    return make


def _ref(op, a, b, params=None, strides=None):
    p = dict(params or {})
    kw = dict(primary_scale=p.get('primary_scale', 1.0), secondary_scale=p.get('secondary_scale', 1.0),
              bias=p.get('bias', 0.0), minimum_value=p.get('minimum_value', -R.FLT_MAX),
              maximum_value=p.get('maximum_value', R.FLT_MAX))
    if strides is not None:
        kw.update(primary_strides=strides[0], secondary_strides=strides[1])
    return R.binary_arithmetic(op, a, b, **kw)


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (1, 5, 7, 3), (3, 4, 3, 5), (2, 2, 9, 13)], ids=str)
@pytest.mark.parametrize("op", OPS)
def test_arithmetic_plain(op, shape, device, rng):
    a, b = _operands(rng, op, shape, shape)
    y = run_graph(device, _node(op), [a, b])
    assert y.shape == shape
    assert_close(y, _ref(op, a, b), "elementwise")


PARAMS = [
    {'primary_scale': 1.5},
    {'secondary_scale': -0.75},
    {'bias': 0.25},
    {'minimum_value': -0.5},
    {'maximum_value': 0.3},
    {'primary_scale': 1.5, 'secondary_scale': -0.75, 'bias': 0.25, 'minimum_value': -1.0, 'maximum_value': 2.0},
    {'primary_scale': 0.0, 'secondary_scale': 2.0, 'bias': -1.0},
]


@pytest.mark.parametrize("params", PARAMS, ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()))
@pytest.mark.parametrize("op", OPS)
def test_arithmetic_scales_bias_clamp(op, params, device, rng):
    a, b = _operands(rng, op, (2, 3, 5, 7), (2, 3, 5, 7))
    y = run_graph(device, _node(op, params), [a, b])
    assert_close(y, _ref(op, a, b, params), "elementwise")


def test_arithmetic_properties_default_and_roundtrip():
    node = mpsnn.MPSNNAdditionNode(left_source=mpsnn.MPSNNImageNode(), right_source=mpsnn.MPSNNImageNode())
    assert (node.primary_scale, node.secondary_scale, node.bias) == (1.0, 1.0, 0.0)
    assert node.minimum_value == pytest.approx(-R.FLT_MAX) and node.maximum_value == pytest.approx(R.FLT_MAX)
    assert (node.primary_stride_in_feature_channels, node.primary_stride_in_pixels_y,
            node.primary_stride_in_pixels_x) == (1, 1, 1)
    node.secondary_stride_in_pixels_y = 0
    node.bias = 0.5
    assert node.secondary_stride_in_pixels_y == 0 and node.bias == 0.5


def _stride_shape(full, st, small=(2, 2, 3)):
    """Operand shape for strides (c, y, x): extent 1-broadcast axes get a different (ignored) size."""
    tc, ty, tx = st
    return (full[0], full[1] if ty else small[0], full[2] if tx else small[1], full[3] if tc else small[2])


@pytest.mark.parametrize("op", OPS)
def test_arithmetic_all_stride_combinations(op, device, rng):
    """All 64 (primary, secondary) stride triples; stride-0 operands have different extents there."""
    full = (2, 5, 3, 7)
    params = {'primary_scale': 1.5, 'secondary_scale': -0.75, 'bias': 0.25}
    for sa, sb in itertools.product(itertools.product((0, 1), repeat=3), repeat=2):
        a, b = _operands(rng, op, _stride_shape(full, sa), _stride_shape(full, sb, (3, 4, 2)))
        y = run_graph(device, _node(op, params, (sa, sb)), [a, b])
        ref = _ref(op, a, b, params, (sa, sb))
        assert y.shape == ref.shape, (sa, sb)
        assert_close(y, ref, "elementwise")


@pytest.mark.parametrize("op", OPS)
def test_arithmetic_broadcast_bias_vector_and_scalar(op, device, rng):
    """Typical uses: per-channel vector (1x1xC) and a single value (1x1x1) as secondary operand."""
    a, _ = _operands(rng, op, (2, 4, 5, 6), (2, 4, 5, 6))
    for b_shape, st in (((2, 1, 1, 6), (1, 0, 0)), ((2, 1, 1, 1), (0, 0, 0)), ((2, 4, 5, 1), (0, 1, 1))):
        _, b = _operands(rng, op, b_shape, b_shape)
        y = run_graph(device, _node(op, None, ((1, 1, 1), st)), [a, b])
        assert_close(y, _ref(op, a, b, None, ((1, 1, 1), st)), "elementwise")


def test_arithmetic_sources_list_constructor_and_same_operand(device, rng):
    a = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    b = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    y = run_graph(device, lambda p, q: mpsnn.MPSNNSubtractionNode(sources=[p, q]), [a, b])
    assert_close(y, a.astype(np.float64) - b, "elementwise")
    y = run_graph(device, lambda p: mpsnn.MPSNNMultiplicationNode(left_source=p, right_source=p), [a])
    assert_close(y, a.astype(np.float64) ** 2, "elementwise")


def test_arithmetic_chain_with_intermediates(device, rng):
    """(a + b) * c - a / d, fused or not."""
    a, b, c = (rng.standard_normal((2, 3, 5, 6)).astype(np.float32) for _ in range(3))
    d = (rng.uniform(0.5, 2.0, (2, 3, 5, 6)) * rng.choice([-1, 1], (2, 3, 5, 6))).astype(np.float32)

    def make(pa, pb, pc, pd):
        s = mpsnn.MPSNNAdditionNode(left_source=pa, right_source=pb)
        m = mpsnn.MPSNNMultiplicationNode(left_source=s.result_image, right_source=pc)
        q = mpsnn.MPSNNDivisionNode(left_source=pa, right_source=pd)
        return mpsnn.MPSNNSubtractionNode(left_source=m.result_image, right_source=q.result_image)

    ref = (a.astype(np.float64) + b) * c - a.astype(np.float64) / d
    for fuse in (True, False):
        assert_close(run_graph(device, make, [a, b, c, d], fuse=fuse), ref, "elementwise")


# --------------------------------------------------------------------------------------------
# IEEE-754 edge cases (nodes.md §3.1)

def test_division_ieee(device):
    num = np.array([1.0, -1.0, 0.0, np.nan, 3e38, 2.0], np.float32).reshape(1, 1, 1, 6)
    den = np.array([0.0, 0.0, 0.0, 1.0, 0.1, np.inf], np.float32).reshape(1, 1, 1, 6)
    y = run_graph(device, _node('divide'), [num, den], fmt=FP32)  # FLT_MAX: float32 semantics
    np.testing.assert_array_equal(y[0, 0, 0, [0, 1, 4, 5]], np.float32([R.FLT_MAX, -R.FLT_MAX, R.FLT_MAX, 0.0]))
    assert np.isnan(y[0, 0, 0, 2]) and np.isnan(y[0, 0, 0, 3])


@pytest.mark.parametrize("op", OPS)
def test_arithmetic_nan_propagates_through_clamp(op, device):
    a = np.array([np.nan, 1.0, 2.0], np.float32).reshape(1, 1, 1, 3)
    b = np.array([1.0, np.nan, 4.0], np.float32).reshape(1, 1, 1, 3)
    y = run_graph(device, _node(op, {'minimum_value': -1.0, 'maximum_value': 1.0}), [a, b])
    assert np.isnan(y[0, 0, 0, 0]) and np.isnan(y[0, 0, 0, 1])
    assert_close(y[0, 0, 0, 2], _ref(op, a, b, {'minimum_value': -1.0, 'maximum_value': 1.0})[0, 0, 0, 2], "exact")


@pytest.mark.parametrize("op", ['add', 'multiply', 'subtract'])
def test_arithmetic_overflow_clamped_to_flt_max(op, device):
    a = np.array([3e38, -3e38, np.inf, -np.inf], np.float32).reshape(1, 1, 1, 4)
    b = np.array([3e38, -3e38, 1.0, 1.0], np.float32).reshape(1, 1, 1, 4)
    if op == 'subtract':
        b = -b
    y = run_graph(device, _node(op), [a, b], fmt=FP32)  # FLT_MAX: float32 semantics
    with np.errstate(all='ignore'):
        ref = _ref(op, a, b)
    np.testing.assert_array_equal(y, ref.astype(np.float32))
    assert np.all(np.isfinite(y))


# --------------------------------------------------------------------------------------------
# float16 format

def test_arithmetic_float16_graph_format(device, rng):
    a, b = _operands(rng, 'multiply', (2, 3, 5, 7), (2, 1, 1, 7))
    params = {'primary_scale': 0.5, 'bias': 0.25}
    y = run_graph(device, _node('multiply', params, ((1, 1, 1), (1, 0, 0))), [a, b], fmt=FP16)
    assert y.dtype == np.float16
    assert_close(y, _ref('multiply', a, b, params, ((1, 1, 1), (1, 0, 0))), "elementwise", "float16")


# --------------------------------------------------------------------------------------------
# bad parameters

def test_arithmetic_extent_mismatch(device, rng):
    a = rng.standard_normal((1, 3, 4, 5)).astype(np.float32)
    b = rng.standard_normal((1, 3, 4, 3)).astype(np.float32)
    with pytest.raises(mpsnn.ShapeError, match=r"\[arithmetic\] primary source has 5 feature channels, "
                                               r"secondary has 3; expected equal extents"):
        run_graph(device, _node('add'), [a, b])


def test_arithmetic_batch_mismatch(device, rng):
    a = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    b = rng.standard_normal((1, 3, 4, 5)).astype(np.float32)
    with pytest.raises(mpsnn.ShapeError,
                       match=r"\[arithmetic\] source 1 has 1 images, source 0 has 2; expected equal batch sizes"):
        run_graph(device, _node('multiply'), [a, b])


@pytest.mark.parametrize("attr", ["primary_stride_in_pixels_x", "secondary_stride_in_feature_channels"])
def test_arithmetic_stride_not_zero_or_one(attr):
    node = mpsnn.MPSNNDivisionNode(left_source=mpsnn.MPSNNImageNode(), right_source=mpsnn.MPSNNImageNode())
    with pytest.raises(mpsnn.ShapeError, match=r"\[arithmetic\] strides must be 0 \(broadcast\) or 1; got 2"):
        setattr(node, attr, 2)


def test_arithmetic_missing_source():
    with pytest.raises(mpsnn.MPSGraphError, match=r"\[arithmetic\] needs sources=\[a, b\] or both left_source"):
        mpsnn.MPSNNAdditionNode(left_source=mpsnn.MPSNNImageNode())
