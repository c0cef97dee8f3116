"""Forward tests of binary convolution and binary fully connected nodes (nodes.md §4.5): binaryWeights,
xnor and AND types, beta scaling, input / output scale and bias, padding methods."""

from __future__ import annotations

import numpy as np
import pytest

import mpsnn
import reference as R
from conftest import assert_close

from ._common import FP16, ConvCase, geometry_or_none, method_id, run_graph, set_padding

BT = mpsnn.MPSCNNBinaryConvolutionType
BF = mpsnn.MPSCNNBinaryConvolutionFlags
TYPES = {"binary_weights": BT.binary_weights, "xnor": BT.xnor, "and": BT.and_}
TYPE_CODE = {"binary_weights": 0, "xnor": 1, "and": 2}


CASES = [
    ConvCase(1, 5, 6, 5, 3, 3, 3),
    ConvCase(2, 7, 5, 33, 6, 3, 2, stride=(2, 1)),
    ConvCase(2, 4, 4, 70, 5, 1, 1),
    ConvCase(3, 6, 7, 3, 9, 2, 3, stride=(1, 2)),
]


def _weights(rng, case):
    words = -(-case.cin // 32)
    bits = rng.integers(0, 2 ** 32, size=(case.cout, case.kh, case.kw, words), dtype=np.uint64).astype(np.uint32)
    d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=case.kw, kernel_height=case.kh,
                                          input_feature_channels=case.cin, output_feature_channels=case.cout)
    d.stride_in_pixels_y, d.stride_in_pixels_x = case.stride
    return d, bits


def _input(rng, case):
    x = rng.standard_normal((case.n, case.h, case.w, case.cin))
    x[np.abs(x) < 1e-3] = 0.25                 # no value exactly at the sign threshold
    return x.astype(np.float32)


def _geometry(case, method):
    g = R.window_geometry((case.h, case.w), (case.kh, case.kw), case.stride, (1, 1), method)
    return g['pad'], g['out_hw']


@pytest.mark.parametrize("flags", [BF.none, BF.use_beta_scaling], ids=["plain", "beta"])
@pytest.mark.parametrize("btype", list(TYPES))
@pytest.mark.parametrize("case", CASES, ids=str)
def test_binary_convolution_scale_value(case, btype, flags, device, rng):
    """(source, weights, scale_value, type, flags): out_scale = scale_value, out_bias = data-source bias."""
    x = _input(rng, case)
    d, bits = _weights(rng, case)
    bias = rng.standard_normal(case.cout).astype(np.float32)
    ds = mpsnn.ArrayConvolutionDataSource(d, bits, bias)
    y = run_graph(device, lambda s: mpsnn.MPSCNNBinaryConvolutionNode(s, ds, 0.75, TYPES[btype], flags), [x])
    pad, out_hw = _geometry(case, R.SIZE_VALID_ONLY)
    ref = R.binary_conv2d(x, bits, case.cin, TYPE_CODE[btype], int(flags), np.full(case.cout, 0.75), bias,
                          stride=case.stride, pad=pad, out_hw=out_hw)
    assert y.shape == ref.shape
    assert_close(y, ref, "reduction", k=case.kh * case.kw * case.cin)


@pytest.mark.parametrize("flags", [BF.none, BF.use_beta_scaling], ids=["plain", "beta"])
@pytest.mark.parametrize("btype", list(TYPES))
@pytest.mark.parametrize("case", CASES, ids=str)
def test_binary_convolution_scale_and_bias_arrays(case, btype, flags, device, rng):
    x = _input(rng, case)
    d, bits = _weights(rng, case)
    ds = mpsnn.ArrayConvolutionDataSource(d, bits)
    out_bias = rng.standard_normal(case.cout)
    out_scale = rng.uniform(0.2, 2.0, case.cout)
    in_bias = rng.standard_normal(case.cin) * 0.3
    in_scale = rng.uniform(0.5, 1.5, case.cin) * rng.choice([-1, 1], case.cin)

    def make(s):
        return mpsnn.MPSCNNBinaryConvolutionNode(s, ds, out_bias.tolist(), out_scale.tolist(), in_bias.tolist(),
                                                 in_scale.tolist(), TYPES[btype], flags)

    y = run_graph(device, make, [x])
    pad, out_hw = _geometry(case, R.SIZE_VALID_ONLY)
    xs = (x.astype(np.float64) + in_bias) * in_scale
    if np.min(np.abs(xs)) < 1e-4:
        pytest.skip("an input lies on the sign threshold after scaling")
    ref = R.binary_conv2d(x, bits, case.cin, TYPE_CODE[btype], int(flags), out_scale, out_bias, in_scale, in_bias,
                          stride=case.stride, pad=pad, out_hw=out_hw)
    assert_close(y, ref, "reduction", k=case.kh * case.kw * case.cin)


def test_binary_convolution_none_arrays_mean_identity(device, rng):
    case = CASES[0]
    x = _input(rng, case)
    d, bits = _weights(rng, case)
    ds = mpsnn.ArrayConvolutionDataSource(d, bits)
    y = run_graph(device, lambda s: mpsnn.MPSCNNBinaryConvolutionNode(s, ds, None, None, None, None, BT.xnor,
                                                                      BF.none), [x])
    assert_close(y, R.binary_conv2d(x, bits, case.cin, 1), "reduction", k=45)


def test_binary_weights_equals_conv_with_signed_weights(device, rng):
    """binaryWeights = F.conv2d-style convolution with weights ±1·out_scale (nodes.md §4.5 cross-check)."""
    case = ConvCase(2, 6, 5, 37, 4, 3, 3)
    x = _input(rng, case)
    d, bits = _weights(rng, case)
    ds = mpsnn.ArrayConvolutionDataSource(d, bits)
    y = run_graph(device, lambda s: mpsnn.MPSCNNBinaryConvolutionNode(s, ds, 0.5, BT.binary_weights, BF.none), [x])
    wpm = (2.0 * R.unpack_binary_weights(bits, case.cin) - 1.0) * 0.5
    pad, out_hw = _geometry(case, R.SIZE_VALID_ONLY)
    assert_close(y, R.conv2d(x, wpm, None, pad=pad, out_hw=out_hw), "reduction", k=9 * 37)


PAD_METHODS = [R.SIZE_SAME, R.SIZE_SAME | R.ADD_REMAINDER_TO_BOTTOM_RIGHT, R.SIZE_FULL,
               R.SIZE_FULL | R.ALIGN_TOP_LEFT, R.SIZE_VALID_ONLY | R.ALIGN_BOTTOM_RIGHT]


@pytest.mark.parametrize("method", PAD_METHODS, ids=method_id)
@pytest.mark.parametrize("btype", list(TYPES))
@pytest.mark.parametrize("flags", [BF.none, BF.use_beta_scaling], ids=["plain", "beta"])
def test_binary_convolution_padding(method, btype, flags, device, rng):
    """Padded taps contribute nothing, also for xnor / AND where zero-fill would binarize to +1."""
    case = ConvCase(2, 7, 6, 5, 3, 3, 2, stride=(2, 1))
    if geometry_or_none((case.h, case.w), (case.kh, case.kw), case.stride, (1, 1), method) is None:
        pytest.skip("result size <= 0")
    x = _input(rng, case)
    d, bits = _weights(rng, case)
    bias = rng.standard_normal(case.cout).astype(np.float32)
    ds = mpsnn.ArrayConvolutionDataSource(d, bits, bias)
    y = run_graph(device, lambda s: set_padding(mpsnn.MPSCNNBinaryConvolutionNode(s, ds, 1.25, TYPES[btype], flags),
                                                method), [x])
    pad, out_hw = _geometry(case, method)
    ref = R.binary_conv2d(x, bits, case.cin, TYPE_CODE[btype], int(flags), np.full(case.cout, 1.25), bias,
                          stride=case.stride, pad=pad, out_hw=out_hw)
    assert_close(y, ref, "reduction", k=30)


@pytest.mark.parametrize("btype", list(TYPES))
@pytest.mark.parametrize("n,h,w,c,cout", [(1, 1, 1, 40, 5), (2, 3, 4, 7, 6), (3, 2, 2, 33, 2)], ids=str)
def test_binary_fully_connected(n, h, w, c, cout, btype, device, rng):
    case = ConvCase(n, h, w, c, cout, h, w)
    x = _input(rng, case)
    d, bits = _weights(rng, case)
    bias = rng.standard_normal(cout).astype(np.float32)
    ds = mpsnn.ArrayConvolutionDataSource(d, bits, bias)
    for flags in (BF.none, BF.use_beta_scaling):
        y = run_graph(device, lambda s: mpsnn.MPSCNNBinaryFullyConnectedNode(s, ds, 0.5, TYPES[btype], flags), [x])
        assert y.shape == (n, 1, 1, cout)
        ref = R.binary_fully_connected(x, bits, c, TYPE_CODE[btype], int(flags), np.full(cout, 0.5), bias)
        assert_close(y, ref, "reduction", k=h * w * c)


def test_binary_convolution_ignores_bits_beyond_cin(device, rng):
    case = ConvCase(1, 4, 5, 5, 3, 1, 1)
    x = _input(rng, case)
    d, bits = _weights(rng, case)
    ds1 = mpsnn.ArrayConvolutionDataSource(d, bits & np.uint32(0x1F))
    ds2 = mpsnn.ArrayConvolutionDataSource(d, bits | np.uint32(0xFFFFFFE0))
    for btype in TYPES.values():
        y1 = run_graph(device, lambda s: mpsnn.MPSCNNBinaryConvolutionNode(s, ds1, 1.0, btype, BF.none), [x])
        y2 = run_graph(device, lambda s: mpsnn.MPSCNNBinaryConvolutionNode(s, ds2, 1.0, btype, BF.none), [x])
        assert_close(y1, y2, "exact")


def test_binary_convolution_float16_graph_format(device, rng):
    case = CASES[1]
    x = _input(rng, case)
    d, bits = _weights(rng, case)
    ds = mpsnn.ArrayConvolutionDataSource(d, bits)
    y = run_graph(device, lambda s: mpsnn.MPSCNNBinaryConvolutionNode(s, ds, 0.1, BT.xnor, BF.use_beta_scaling),
                  [x], fmt=FP16)
    assert y.dtype == np.float16
    pad, out_hw = _geometry(case, R.SIZE_VALID_ONLY)
    ref = R.binary_conv2d(x, bits, case.cin, 1, 1, np.full(case.cout, 0.1), stride=case.stride, pad=pad,
                          out_hw=out_hw)
    assert_close(y, ref, "reduction", "float16")


# --------------------------------------------------------------------------------------------
# bad parameters

def test_binary_convolution_groups(device, rng):
    case = ConvCase(1, 4, 4, 8, 8, 3, 3)
    d, bits = _weights(rng, case)
    d.groups = 2
    ds = mpsnn.ArrayConvolutionDataSource(d, bits)
    with pytest.raises(mpsnn.ShapeError,
                       match=r"\[binary convolution\] groups is 2; binary convolution supports groups 1 only"):
        run_graph(device, lambda s: mpsnn.MPSCNNBinaryConvolutionNode(s, ds, 1.0, BT.xnor, BF.none),
                  [_input(rng, case)])


def test_binary_convolution_array_length(device, rng):
    case = CASES[0]
    d, bits = _weights(rng, case)
    ds = mpsnn.ArrayConvolutionDataSource(d, bits)

    def make(s):
        return mpsnn.MPSCNNBinaryConvolutionNode(s, ds, [0.0] * 2, None, None, None, BT.and_, BF.none)

    with pytest.raises(mpsnn.ShapeError, match=r"\[binary convolution\] output_bias_terms has 2 entries; expected 3"):
        run_graph(device, make, [_input(rng, case)])


def test_binary_convolution_channel_mismatch(device, rng):
    case = CASES[0]
    d, bits = _weights(rng, case)
    ds = mpsnn.ArrayConvolutionDataSource(d, bits)
    x = rng.standard_normal((1, 5, 6, 4)).astype(np.float32)
    with pytest.raises(mpsnn.ShapeError,
                       match=r"\[binary convolution\] source has 4 feature channels, descriptor expects 5"):
        run_graph(device, lambda s: mpsnn.MPSCNNBinaryConvolutionNode(s, ds, 1.0, BT.xnor, BF.none), [x])


def test_binary_convolution_unknown_flags():
    d, bits = _weights(np.random.default_rng(0), CASES[0])
    ds = mpsnn.ArrayConvolutionDataSource(d, bits)
    with pytest.raises(mpsnn.ShapeError, match=r"\[binary convolution\] flags 2 are unknown"):
        mpsnn.MPSCNNBinaryConvolutionNode(mpsnn.MPSNNImageNode(), ds, 1.0, BT.xnor, 2)


def test_binary_fully_connected_kernel_must_cover_source(device, rng):
    case = ConvCase(1, 3, 3, 5, 2, 2, 2)
    d, bits = _weights(rng, case)
    ds = mpsnn.ArrayConvolutionDataSource(d, bits)
    with pytest.raises(mpsnn.ShapeError, match=r"\[binary convolution\] kernel is 2x2 but the source is 3x3"):
        run_graph(device, lambda s: mpsnn.MPSCNNBinaryFullyConnectedNode(s, ds, 1.0, BT.xnor, BF.none),
                  [_input(rng, case)])
