"""Forward tests of the convolution family (nodes.md §4): convolution, depthwise, sub-pixel, fully
connected and transposed convolution, folded / fused batch norm and neurons, residual fusion."""

from __future__ import annotations

import numpy as np
import pytest

import mpsnn
import reference as R
from conftest import assert_close, conv_source

from ._common import (FP16, ConvCase, conv_method_params, geometry_or_none, make_graph,
                      method_id, run_graph, set_padding, to_t, from_t, torch_pad)


try:
    import torch  # noqa: F401
    _HAVE_TORCH = True
except ImportError:  # pragma: no cover
    _HAVE_TORCH = False


CASES = [
    ConvCase(1, 5, 7, 3, 5, 3, 3),
    ConvCase(2, 7, 6, 5, 6, 2, 4, stride=(2, 1)),
    ConvCase(3, 9, 8, 6, 7, 3, 2, stride=(3, 2)),
    ConvCase(2, 8, 9, 5, 3, 3, 3, stride=(1, 2), dilation=(2, 3)),
    ConvCase(1, 6, 5, 7, 9, 1, 1),
    ConvCase(2, 7, 7, 8, 16, 3, 3, stride=(2, 2), groups=2),
    ConvCase(1, 10, 3, 2, 1, 5, 3, stride=(2, 3)),
    ConvCase(2, 5, 5, 4, 4, 4, 4, dilation=(2, 2)),
    ConvCase(1, 11, 4, 12, 8, 3, 1, stride=(3, 1)),
]


def _params():
    return conv_method_params(CASES)


def _conv(ds, method=None):
    def make(src):
        node = mpsnn.MPSCNNConvolutionNode(src, ds)
        if method is not None:
            set_padding(node, method)
        return node
    return make


def _expected(case, x, w, b, method):
    geo = R.window_geometry((case.h, case.w), (case.kh, case.kw), case.stride, case.dilation, method)
    return R.conv2d(x, w, b, stride=case.stride, dilation=case.dilation, groups=case.groups, pad=geo['pad'],
                    out_hw=geo['out_hw'])


@pytest.mark.parametrize("case,method", _params())
def test_convolution_forward(case, method, device, rng):
    x = rng.standard_normal((case.n, case.h, case.w, case.cin)).astype(np.float32)
    ds, w, b = conv_source(case.cin, case.cout, case.kh, case.kw, rng, case.stride, case.dilation, case.groups)
    y = run_graph(device, _conv(ds, method), [x])
    ref = _expected(case, x, w, b, method)
    assert y.shape == ref.shape
    assert_close(y, ref, "reduction", k=case.k)


@pytest.mark.parametrize("method", R.ALL_METHODS, ids=method_id)
def test_convolution_all_36_methods(method, device, rng):
    """Every non-custom method on a geometry where E is odd on both axes (remainders matter)."""
    case = ConvCase(2, 8, 7, 3, 5, 2, 4, stride=(2, 2))
    if geometry_or_none((case.h, case.w), (case.kh, case.kw), case.stride, case.dilation, method) is None:
        pytest.skip("result size <= 0")
    x = rng.standard_normal((case.n, case.h, case.w, case.cin)).astype(np.float32)
    ds, w, b = conv_source(case.cin, case.cout, case.kh, case.kw, rng, case.stride)
    y = run_graph(device, _conv(ds, method), [x])
    assert_close(y, _expected(case, x, w, b, method), "reduction", k=case.k)


def test_convolution_default_padding_is_size_same(device, rng):
    case = ConvCase(2, 7, 8, 5, 3, 4, 3, stride=(2, 3))
    x = rng.standard_normal((case.n, case.h, case.w, case.cin)).astype(np.float32)
    ds, w, b = conv_source(case.cin, case.cout, case.kh, case.kw, rng, case.stride)
    y = run_graph(device, _conv(ds), [x])
    assert y.shape == (2, 4, 3, 3)
    assert_close(y, _expected(case, x, w, b, R.SIZE_SAME), "reduction", k=case.k)


def test_convolution_without_bias(device, rng):
    x = rng.standard_normal((2, 5, 6, 3)).astype(np.float32)
    ds, w, _ = conv_source(3, 6, 3, 3, rng, bias=False)
    y = run_graph(device, _conv(ds), [x])
    assert_close(y, R.conv2d(x, w, None), "reduction", k=27)


def test_convolution_float16_weights(device, rng):
    x = rng.standard_normal((1, 6, 5, 5)).astype(np.float32)
    d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=3, kernel_height=3, input_feature_channels=5,
                                          output_feature_channels=7)
    w = rng.standard_normal((7, 3, 3, 5)).astype(np.float16)
    b = rng.standard_normal(7).astype(np.float32)
    y = run_graph(device, _conv(mpsnn.ArrayConvolutionDataSource(d, w, b)), [x])
    assert_close(y, R.conv2d(x, w.astype(np.float64), b), "reduction", k=45)


def test_convolution_float16_graph_format(device, rng):
    case = ConvCase(2, 7, 6, 5, 6, 3, 2, stride=(2, 1))
    x = rng.standard_normal((case.n, case.h, case.w, case.cin)).astype(np.float32)
    ds, w, b = conv_source(case.cin, case.cout, case.kh, case.kw, rng, case.stride)
    method = R.SIZE_SAME | R.ADD_REMAINDER_TO_BOTTOM_RIGHT
    y = run_graph(device, _conv(ds, method), [x], fmt=FP16)
    assert y.dtype == np.float16
    assert_close(y, _expected(case, x, w, b, method), "reduction", "float16")


# --------------------------------------------------------------------------------------------
# depthwise and sub-pixel descriptors

@pytest.mark.parametrize("n,h,w,c,k,stride,method", [
    (1, 6, 7, 5, 3, 1, R.SIZE_SAME),
    (2, 9, 8, 3, 2, 2, R.SIZE_SAME | R.ADD_REMAINDER_TO_BOTTOM_RIGHT),
    (2, 5, 5, 7, 3, 1, R.SIZE_VALID_ONLY),
    (1, 4, 6, 6, 3, 2, R.SIZE_FULL | R.ALIGN_TOP_LEFT),
], ids=str)
def test_depthwise_convolution(n, h, w, c, k, stride, method, device, rng):
    d = mpsnn.MPSCNNDepthWiseConvolutionDescriptor(kernel_width=k, kernel_height=k, input_feature_channels=c,
                                                   output_feature_channels=c)
    d.stride_in_pixels_x = d.stride_in_pixels_y = stride
    wt = rng.standard_normal((c, k, k)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    y = run_graph(device, _conv(mpsnn.ArrayConvolutionDataSource(d, wt, b), method), [x])
    geo = R.window_geometry((h, w), (k, k), (stride, stride), (1, 1), method)
    ref = R.conv2d(x, wt, b, stride=(stride, stride), pad=geo['pad'], out_hw=geo['out_hw'], depthwise=True)
    assert_close(y, ref, "reduction", k=k * k)


@pytest.mark.parametrize("r,cout,h,w", [(2, 12, 5, 4), (3, 9, 3, 4), (2, 4, 1, 1)], ids=str)
def test_sub_pixel_convolution(r, cout, h, w, device, rng):
    d = mpsnn.MPSCNNSubPixelConvolutionDescriptor(kernel_width=3, kernel_height=3, input_feature_channels=3,
                                                  output_feature_channels=cout)
    d.sub_pixel_scale_factor = r
    wt = rng.standard_normal((cout, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    x = rng.standard_normal((2, h, w, 3)).astype(np.float32)
    y = run_graph(device, _conv(mpsnn.ArrayConvolutionDataSource(d, wt, b)), [x])
    ref = R.subpixel_shuffle(R.conv2d(x, wt, b), r)
    assert y.shape == (2, h * r, w * r, cout // (r * r))
    assert_close(y, ref, "reduction", k=27)


# --------------------------------------------------------------------------------------------
# fused neurons, folded and fused batch normalization, residual addition

FUSED_NEURONS = [
    ("relu", mpsnn.MPSCNNNeuronType.reLU, (None, None, None)),
    ("leaky", mpsnn.MPSCNNNeuronType.reLU, (0.1, None, None)),
    ("sigmoid", mpsnn.MPSCNNNeuronType.sigmoid, (None, None, None)),
    ("tanh", mpsnn.MPSCNNNeuronType.tanH, (0.7, 1.3, None)),
    ("relu_n", mpsnn.MPSCNNNeuronType.reLUN, (0.2, 1.5, None)),
    ("elu", mpsnn.MPSCNNNeuronType.eLU, (0.5, None, None)),
    ("linear", mpsnn.MPSCNNNeuronType.linear, (2.0, -0.5, None)),
]


@pytest.mark.parametrize("name,ntype,params", FUSED_NEURONS, ids=[f[0] for f in FUSED_NEURONS])
def test_convolution_descriptor_fused_neuron(name, ntype, params, device, rng):
    a, b_, c = params
    desc = mpsnn.MPSNNNeuronDescriptor.cnn_neuron_descriptor(ntype, a, b_, c)
    x = rng.standard_normal((2, 6, 5, 3)).astype(np.float32)
    ds, w, b = conv_source(3, 5, 3, 3, rng, neuron=desc)
    y = run_graph(device, _conv(ds), [x])
    ref = R.neuron(R.conv2d(x, w, b), int(ntype), a, b_, c)
    assert_close(y, ref, "reduction", k=27)


def test_convolution_descriptor_fused_prelu(device, rng):
    slopes = rng.uniform(0.05, 0.5, 6).astype(np.float32)
    desc = mpsnn.MPSNNNeuronDescriptor.cnn_neuron_prelu_descriptor(slopes.tolist())
    x = rng.standard_normal((2, 5, 5, 4)).astype(np.float32)
    ds, w, b = conv_source(4, 6, 3, 3, rng, neuron=desc)
    y = run_graph(device, _conv(ds), [x])
    assert_close(y, R.neuron(R.conv2d(x, w, b), 'prelu', data=slopes), "reduction", k=36)


def test_convolution_descriptor_folded_batch_norm(device, rng):
    cin, cout = 5, 6
    x = rng.standard_normal((2, 7, 5, cin)).astype(np.float32)
    d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=3, kernel_height=2, input_feature_channels=cin,
                                          output_feature_channels=cout)
    mean, var = rng.standard_normal(cout), rng.uniform(0.5, 2.0, cout)
    gamma, beta = rng.standard_normal(cout), rng.standard_normal(cout)
    d.set_batch_normalization_parameters_for_inference(mean.tolist(), var.tolist(), gamma.tolist(), beta.tolist(),
                                                       1e-3)
    w = rng.standard_normal((cout, 2, 3, cin)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    y = run_graph(device, _conv(mpsnn.ArrayConvolutionDataSource(d, w, b)), [x])
    w2, b2 = R.fold_batch_norm(w, b, mean, var, gamma, beta, 1e-3)
    assert_close(y, R.conv2d(x, w2, b2), "reduction", k=30)
    assert_close(y, R.batch_norm_inference(R.conv2d(x, w, b), mean, var, gamma, beta, 1e-3), "reduction", k=30)


def _bn_source(rng, c, eps=1e-5):
    gamma, beta = rng.standard_normal(c), rng.standard_normal(c)
    mean, var = rng.standard_normal(c), rng.uniform(0.5, 2.0, c)
    return mpsnn.ArrayBatchNormalizationDataSource(gamma, beta, mean, var, epsilon=eps), (mean, var, gamma, beta, eps)


@pytest.mark.parametrize("case,method", [
    (ConvCase(1, 5, 7, 3, 5, 3, 3), R.SIZE_SAME),
    (ConvCase(2, 8, 6, 5, 7, 2, 3, stride=(2, 1)), R.SIZE_SAME | R.ADD_REMAINDER_TO_BOTTOM_RIGHT),
    (ConvCase(3, 7, 7, 6, 3, 3, 3, stride=(2, 2), dilation=(1, 2)), R.SIZE_VALID_ONLY),
    (ConvCase(2, 6, 9, 8, 8, 3, 3, groups=2), R.SIZE_FULL | R.ALIGN_BOTTOM_RIGHT),
], ids=lambda v: str(v) if isinstance(v, ConvCase) else method_id(v))
def test_fused_conv_batchnorm_relu_equals_unfused(case, method, device, rng):
    x = rng.standard_normal((case.n, case.h, case.w, case.cin)).astype(np.float32)
    ds, w, b = conv_source(case.cin, case.cout, case.kh, case.kw, rng, case.stride, case.dilation, case.groups)
    bn_ds, bn = _bn_source(rng, case.cout)

    def make(src):
        conv = set_padding(mpsnn.MPSCNNConvolutionNode(src, ds), method)
        norm = mpsnn.MPSCNNBatchNormalizationNode(conv.result_image, bn_ds)
        return mpsnn.MPSCNNNeuronReLUNode(norm.result_image)

    fused = run_graph(device, make, [x], fuse=True)
    unfused = run_graph(device, make, [x], fuse=False)
    ref = R.neuron(R.batch_norm_inference(_expected(case, x, w, b, method), *bn), 'relu')
    assert_close(fused, ref, "reduction", k=case.k)
    assert_close(unfused, ref, "reduction", k=case.k)
    assert_close(fused, unfused, "reduction", k=case.k)


@pytest.mark.parametrize("conv_left", [True, False], ids=["conv+x", "x+conv"])
@pytest.mark.parametrize("relu_after", [False, True], ids=["plain", "relu"])
@pytest.mark.parametrize("n,h,w,c", [(1, 5, 7, 3), (2, 6, 5, 6)], ids=str)
def test_fused_conv_residual_add_equals_unfused(n, h, w, c, conv_left, relu_after, device, rng):
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    ds, wt, b = conv_source(c, c, 3, 3, rng)

    def make(src):
        conv = mpsnn.MPSCNNConvolutionNode(src, ds)
        l, r = (conv.result_image, src) if conv_left else (src, conv.result_image)
        add = mpsnn.MPSNNAdditionNode(left_source=l, right_source=r)
        return mpsnn.MPSCNNNeuronReLUNode(add.result_image) if relu_after else add

    fused = run_graph(device, make, [x], fuse=True)
    unfused = run_graph(device, make, [x], fuse=False)
    ref = R.conv2d(x, wt, b) + x
    if relu_after:
        ref = R.neuron(ref, 'relu')
    assert_close(fused, ref, "reduction", k=9 * c)
    assert_close(unfused, ref, "reduction", k=9 * c)
    assert_close(fused, unfused, "reduction", k=9 * c)


def test_fused_conv_bn_relu_residual_two_inputs(device, rng):
    """conv -> bn -> relu -> + (second graph input, scaled) -> relu, fused vs unfused."""
    x = rng.standard_normal((2, 7, 5, 5)).astype(np.float32)
    skip = rng.standard_normal((2, 7, 5, 6)).astype(np.float32)
    ds, w, b = conv_source(5, 6, 3, 3, rng)
    bn_ds, bn = _bn_source(rng, 6)

    def make(src, other):
        conv = mpsnn.MPSCNNConvolutionNode(src, ds)
        norm = mpsnn.MPSCNNBatchNormalizationNode(conv.result_image, bn_ds)
        relu = mpsnn.MPSCNNNeuronReLUNode(norm.result_image)
        add = mpsnn.MPSNNAdditionNode(left_source=relu.result_image, right_source=other)
        add.secondary_scale = 0.5
        return mpsnn.MPSCNNNeuronReLUNode(add.result_image)

    fused = run_graph(device, make, [x, skip], fuse=True)
    unfused = run_graph(device, make, [x, skip], fuse=False)
    ref = R.neuron(R.neuron(R.batch_norm_inference(R.conv2d(x, w, b), *bn), 'relu') + 0.5 * skip, 'relu')
    assert_close(unfused, ref, "reduction", k=45)
    assert_close(fused, ref, "reduction", k=45)


def test_convolution_output_consumed_twice_is_not_fused_away(device, rng):
    """A conv result read by both a ReLU and the graph's addition keeps its pre-ReLU value."""
    x = rng.standard_normal((1, 5, 6, 4)).astype(np.float32)
    ds, w, b = conv_source(4, 4, 3, 3, rng)

    def make(src):
        conv = mpsnn.MPSCNNConvolutionNode(src, ds)
        relu = mpsnn.MPSCNNNeuronReLUNode(conv.result_image)
        return mpsnn.MPSNNAdditionNode(left_source=relu.result_image, right_source=conv.result_image)

    conv_ref = R.conv2d(x, w, b)
    ref = R.neuron(conv_ref, 'relu') + conv_ref
    for fuse in (True, False):
        assert_close(run_graph(device, make, [x], fuse=fuse), ref, "reduction", k=36)


# --------------------------------------------------------------------------------------------
# fully connected

@pytest.mark.parametrize("n,h,w,c,cout", [(1, 1, 1, 7, 5), (2, 3, 5, 3, 6), (3, 4, 2, 9, 1), (2, 5, 5, 4, 10)],
                         ids=str)
def test_fully_connected(n, h, w, c, cout, device, rng):
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    ds, wt, b = conv_source(c, cout, h, w, rng)
    y = run_graph(device, lambda s: mpsnn.MPSCNNFullyConnectedNode(s, ds), [x])
    assert y.shape == (n, 1, 1, cout)
    assert_close(y, R.fully_connected(x, wt, b), "reduction", k=h * w * c)


def test_fully_connected_fused_neuron_matches_plain_linear(device, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((3, 1, 1, 6)).astype(np.float32)
    desc = mpsnn.MPSNNNeuronDescriptor.cnn_neuron_descriptor(mpsnn.MPSCNNNeuronType.sigmoid)
    ds, wt, b = conv_source(6, 4, 1, 1, rng, neuron=desc)
    y = run_graph(device, lambda s: mpsnn.MPSCNNFullyConnectedNode(s, ds), [x])
    ref = torch.sigmoid(torch.nn.functional.linear(torch.from_numpy(x.reshape(3, 6).astype(np.float64)),
                                                   torch.from_numpy(wt.reshape(4, 6).astype(np.float64)),
                                                   torch.from_numpy(b.astype(np.float64)))).numpy()
    assert_close(y.reshape(3, 4), ref, "reduction", k=6)


def test_fully_connected_kernel_must_cover_source(device, rng):
    x = rng.standard_normal((1, 4, 5, 3)).astype(np.float32)
    ds, _, _ = conv_source(3, 2, 4, 4, rng)
    with pytest.raises(mpsnn.ShapeError, match=r"\[convolution\] kernel is 4x4 but the source is 5x4"):
        run_graph(device, lambda s: mpsnn.MPSCNNFullyConnectedNode(s, ds), [x])


# --------------------------------------------------------------------------------------------
# convolution transpose

TRANSPOSE_CASES = [
    ConvCase(1, 4, 5, 3, 5, 3, 3),
    ConvCase(2, 3, 4, 5, 3, 3, 3, stride=(2, 2)),
    ConvCase(2, 4, 3, 4, 6, 2, 4, stride=(3, 2)),
    ConvCase(1, 5, 4, 6, 2, 3, 2, stride=(1, 2), dilation=(2, 1)),
    ConvCase(2, 3, 3, 8, 8, 3, 3, stride=(2, 2), groups=2),
]
TRANSPOSE_METHODS = [R.SIZE_SAME, R.SIZE_SAME | R.ADD_REMAINDER_TO_BOTTOM_RIGHT, R.SIZE_FULL,
                     R.SIZE_VALID_ONLY, R.SIZE_SAME | R.ALIGN_TOP_LEFT, R.SIZE_FULL | R.ALIGN_BOTTOM_RIGHT,
                     R.SIZE_VALID_ONLY | R.ADD_REMAINDER_TO_TOP_RIGHT]


def _transpose_params():
    return conv_method_params(TRANSPOSE_CASES, TRANSPOSE_METHODS, reverse=True)


def _torch_conv_transpose(x, w, b, stride, dilation, groups, pz, out_hw):
    """nodes.md §4.3 PyTorch recipe: flipped weights, padding Ke-1-Pz, crop/extend to out_hw."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    cout, kh, kw, cg = w.shape
    og = cout // groups
    wt = np.flip(np.asarray(w, np.float64), (1, 2))                      # (Cout, KH, KW, Cg)
    wt = wt.reshape(groups, og, kh, kw, cg).transpose(0, 4, 1, 2, 3).reshape(groups * cg, og, kh, kw)
    full = F.conv_transpose2d(to_t(x), torch.from_numpy(np.ascontiguousarray(wt)),
                              torch.from_numpy(np.asarray(b, np.float64)), stride=stride, groups=groups,
                              dilation=dilation)
    ke = [(k - 1) * d + 1 for k, d in zip((kh, kw), dilation)]
    pt = [k - 1 - p for k, p in zip(ke, pz)]
    # rows pt .. pt + D - 1 of the full result; outside -> bias only (no taps)
    hfull, wfull = full.shape[2], full.shape[3]
    res = torch_pad(full, -pt[0], out_hw[0] - (hfull - pt[0]), -pt[1], out_hw[1] - (wfull - pt[1]))
    y = from_t(res)
    # padded border rows got 0; the oracle has the bias there
    mask = np.zeros(y.shape[1:3], bool)
    iy = np.arange(out_hw[0]) + pt[0]
    ix = np.arange(out_hw[1]) + pt[1]
    mask[np.ix_((iy < 0) | (iy >= hfull), np.ones(out_hw[1], bool))] = True
    mask[np.ix_(np.ones(out_hw[0], bool), (ix < 0) | (ix >= wfull))] = True
    y[:, mask, :] = np.asarray(b, np.float64)
    return y


@pytest.mark.parametrize("case,method", _transpose_params())
def test_convolution_transpose(case, method, device, rng):
    x = rng.standard_normal((case.n, case.h, case.w, case.cin)).astype(np.float32)
    ds, w, b = conv_source(case.cin, case.cout, case.kh, case.kw, rng, case.stride, case.dilation, case.groups)

    def make(src):
        return set_padding(mpsnn.MPSCNNConvolutionTransposeNode(src, None, ds), method)

    y = run_graph(device, make, [x])
    geo = R.window_geometry((case.h, case.w), (case.kh, case.kw), case.stride, case.dilation, method, reverse=True)
    ref = R.conv_transpose2d(x, w, b, case.stride, case.dilation, case.groups, geo['pad'], geo['out_hw'])
    assert y.shape == ref.shape
    assert_close(y, ref, "reduction", k=case.k)


@pytest.mark.parametrize("case", TRANSPOSE_CASES, ids=str)
def test_convolution_transpose_vs_torch(case, device, rng):
    pytest.importorskip("torch")
    x = rng.standard_normal((case.n, case.h, case.w, case.cin)).astype(np.float32)
    ds, w, b = conv_source(case.cin, case.cout, case.kh, case.kw, rng, case.stride, case.dilation, case.groups)
    for method in (R.SIZE_SAME, R.SIZE_FULL, R.SIZE_SAME | R.ADD_REMAINDER_TO_BOTTOM_RIGHT):
        y = run_graph(device, lambda s: set_padding(mpsnn.MPSCNNConvolutionTransposeNode(s, None, ds), method), [x])
        geo = R.window_geometry((case.h, case.w), (case.kh, case.kw), case.stride, case.dilation, method,
                                reverse=True)
        ref = _torch_conv_transpose(x, w, b, case.stride, case.dilation, case.groups, geo['pad'], geo['out_hw'])
        assert_close(y, ref, "reduction", k=case.k)


def test_convolution_transpose_default_padding(device, rng):
    x = rng.standard_normal((2, 3, 4, 3)).astype(np.float32)
    ds, w, b = conv_source(3, 5, 4, 3, rng, stride=(2, 3))
    y = run_graph(device, lambda s: mpsnn.MPSCNNConvolutionTransposeNode(s, None, ds), [x])
    assert y.shape == (2, 5, 10, 5)
    assert_close(y, R.conv_transpose2d(x, w, b, (2, 3)), "reduction", k=36)


@pytest.mark.parametrize("h,w,k,stride,method", [
    (7, 8, 3, 2, R.SIZE_SAME),
    (9, 6, 4, 2, R.SIZE_SAME | R.ADD_REMAINDER_TO_BOTTOM_RIGHT),
    (8, 9, 3, 3, R.SIZE_VALID_ONLY),
    (5, 7, 2, 1, R.SIZE_FULL),
    (6, 5, 3, 2, R.SIZE_SAME | R.ALIGN_TOP_LEFT),
], ids=lambda v: method_id(v) if isinstance(v, int) and v >= 16 else str(v))
def test_convolution_transpose_paired_with_gradient_state(h, w, k, stride, method, device, rng):
    """With the convolution's gradient state the transpose takes the convolution's source size and
    Pz = Ke - 1 - P_conv (nodes.md §4.3); cross-checked against torch's transpose of that conv."""
    n, c0, c1 = 2, 3, 5
    x = rng.standard_normal((n, h, w, c0)).astype(np.float32)
    ds1, w1, b1 = conv_source(c0, c1, k, k, rng, (stride, stride))
    ds2, w2, b2 = conv_source(c1, c0, k, k, rng, (stride, stride))

    def make(src):
        conv = set_padding(mpsnn.MPSCNNConvolutionNode(src, ds1), method)
        return mpsnn.MPSCNNConvolutionTransposeNode(conv.result_image, conv.convolution_gradient_state, ds2)

    y = run_graph(device, make, [x])
    assert y.shape == (n, h, w, c0)
    geo = R.window_geometry((h, w), (k, k), (stride, stride), (1, 1), method)
    mid = R.conv2d(x, w1, b1, stride=(stride, stride), pad=geo['pad'], out_hw=geo['out_hw'])
    pz = tuple(R.transpose_pad_from_conv(p, k, 1) for p in geo['pad'])
    ref = R.conv_transpose2d(mid, w2, b2, (stride, stride), pad_z=pz, out_hw=(h, w))
    assert_close(y, ref, "reduction", k=k * k * c1)
    if _HAVE_TORCH:
        tref = _torch_conv_transpose(mid, w2, b2, (stride, stride), (1, 1), 1, pz, (h, w))
        assert_close(y, tref, "reduction", k=k * k * c1)


# --------------------------------------------------------------------------------------------
# bad parameters

def test_convolution_channel_mismatch(device, rng):
    x = rng.standard_normal((1, 5, 5, 4)).astype(np.float32)
    ds, _, _ = conv_source(5, 3, 3, 3, rng)
    with pytest.raises(mpsnn.ShapeError,
                       match=r"\[convolution\] source has 4 feature channels, descriptor expects 5"):
        run_graph(device, _conv(ds), [x])


def test_convolution_valid_kernel_larger_than_source(device, rng):
    x = rng.standard_normal((1, 5, 5, 4)).astype(np.float32)
    ds, _, _ = conv_source(4, 3, 3, 7, rng)
    with pytest.raises(mpsnn.ShapeError, match=r"\[convolution\] result size is -1x3 for a 5x5 source .*kernel 7x3"):
        run_graph(device, _conv(ds, R.SIZE_VALID_ONLY), [x])


def test_convolution_groups_need_multiples_of_four(device, rng):
    x = rng.standard_normal((1, 5, 5, 6)).astype(np.float32)
    ds, _, _ = conv_source(6, 6, 3, 3, rng, groups=3)
    with pytest.raises(mpsnn.ShapeError, match=r"\[convolution\] groups 3 give 2 input and 2 output channels"):
        run_graph(device, _conv(ds), [x])


def test_convolution_weights_wrong_size(device, rng):
    x = rng.standard_normal((1, 5, 5, 4)).astype(np.float32)
    d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=3, kernel_height=3, input_feature_channels=4,
                                          output_feature_channels=3)
    ds = mpsnn.ArrayConvolutionDataSource(d, np.ones(72, np.float32))
    with pytest.raises(mpsnn.ShapeError, match=r"\[convolution\] weights have 72 float32 values; expected 108"):
        run_graph(device, _conv(ds), [x])
    ds = mpsnn.ArrayConvolutionDataSource(d, np.ones((3, 2, 3, 4), np.float32))
    with pytest.raises(mpsnn.ShapeError, match=r"\[convolution\] weights array has shape \(3, 2, 3, 4\) \(72 values\); "
                                               r"expected OHWI \(3, 3, 3, 4\) \(108 values\)"):
        run_graph(device, _conv(ds), [x])


def test_convolution_zero_stride(device, rng):
    x = rng.standard_normal((1, 5, 5, 4)).astype(np.float32)
    ds, _, _ = conv_source(4, 3, 3, 3, rng, stride=(1, 0))
    with pytest.raises(mpsnn.ShapeError, match=r"\[convolution\] descriptor stride_in_pixels_x is 0"):
        run_graph(device, _conv(ds), [x])


def test_convolution_weights_dtype():
    d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=3, kernel_height=3, input_feature_channels=4,
                                          output_feature_channels=3)
    with pytest.raises(mpsnn.DTypeError, match="weights have dtype float64"):
        mpsnn.ArrayConvolutionDataSource(d, np.ones((3, 3, 3, 4)))


# --------------------------------------------------------------------------------------------
# fusion must not change results in the cases where it must not happen

def _fuse_both(device, make, inputs, ref, k):
    for fuse in (True, False):
        assert_close(run_graph(device, make, inputs, fuse=fuse), ref, "reduction", k=k)


def test_conv_with_descriptor_neuron_then_batch_norm(device, rng):
    """BN after a conv whose descriptor already applies ReLU cannot be folded into the weights."""
    x = rng.standard_normal((2, 5, 6, 3)).astype(np.float32)
    desc = mpsnn.MPSNNNeuronDescriptor.cnn_neuron_descriptor(mpsnn.MPSCNNNeuronType.reLU)
    ds, w, b = conv_source(3, 5, 3, 3, rng, neuron=desc)
    bn_ds, bn = _bn_source(rng, 5)

    def make(src):
        conv = mpsnn.MPSCNNConvolutionNode(src, ds)
        return mpsnn.MPSCNNBatchNormalizationNode(conv.result_image, bn_ds)

    _fuse_both(device, make, [x], R.batch_norm_inference(R.neuron(R.conv2d(x, w, b), 'relu'), *bn), 27)


def test_conv_then_neuron_then_batch_norm(device, rng):
    x = rng.standard_normal((2, 5, 6, 3)).astype(np.float32)
    ds, w, b = conv_source(3, 5, 3, 3, rng)
    bn_ds, bn = _bn_source(rng, 5)

    def make(src):
        conv = mpsnn.MPSCNNConvolutionNode(src, ds)
        act = mpsnn.MPSCNNNeuronTanHNode(conv.result_image)
        return mpsnn.MPSCNNBatchNormalizationNode(act.result_image, bn_ds)

    _fuse_both(device, make, [x], R.batch_norm_inference(R.neuron(R.conv2d(x, w, b), 'tanh'), *bn), 27)


def test_conv_with_descriptor_neuron_then_residual_add(device, rng):
    """relu(conv(x)) + x: the descriptor's neuron applies before the residual sum."""
    x = rng.standard_normal((2, 5, 6, 4)).astype(np.float32)
    desc = mpsnn.MPSNNNeuronDescriptor.cnn_neuron_descriptor(mpsnn.MPSCNNNeuronType.reLU)
    ds, w, b = conv_source(4, 4, 3, 3, rng, neuron=desc)

    def make(src):
        conv = mpsnn.MPSCNNConvolutionNode(src, ds)
        return mpsnn.MPSNNAdditionNode(left_source=conv.result_image, right_source=src)

    _fuse_both(device, make, [x], R.neuron(R.conv2d(x, w, b), 'relu') + x, 36)


def test_conv_then_batch_norm_result_also_read_raw(device, rng):
    """conv feeds both a BN and an addition: folding the BN must not change the raw conv value."""
    x = rng.standard_normal((1, 6, 5, 4)).astype(np.float32)
    ds, w, b = conv_source(4, 4, 3, 3, rng)
    bn_ds, bn = _bn_source(rng, 4)

    def make(src):
        conv = mpsnn.MPSCNNConvolutionNode(src, ds)
        norm = mpsnn.MPSCNNBatchNormalizationNode(conv.result_image, bn_ds)
        return mpsnn.MPSNNAdditionNode(left_source=norm.result_image, right_source=conv.result_image)

    c = R.conv2d(x, w, b)
    _fuse_both(device, make, [x], R.batch_norm_inference(c, *bn) + c, 36)


def test_conv_then_batch_norm_with_batch_statistics(device, rng):
    """A BN node computing its batch's own statistics cannot be folded into the weights."""
    x = rng.standard_normal((3, 5, 4, 3)).astype(np.float32)
    ds, w, b = conv_source(3, 5, 3, 3, rng)
    bn_ds, (_, _, gamma, beta, eps) = _bn_source(rng, 5)

    def make(src):
        conv = mpsnn.MPSCNNConvolutionNode(src, ds)
        norm = mpsnn.MPSCNNBatchNormalizationNode(conv.result_image, bn_ds)
        norm.flags = mpsnn.MPSCNNBatchNormalizationFlags.calculate_statistics_always
        return norm

    _fuse_both(device, make, [x], R.batch_norm_training(R.conv2d(x, w, b), gamma, beta, eps), 27)


def test_residual_add_with_scales_and_clamp(device, rng):
    """A residual addition with non-default scale, bias and clamp keeps its full definition when fused."""
    x = rng.standard_normal((2, 5, 5, 4)).astype(np.float32)
    ds, w, b = conv_source(4, 4, 3, 3, rng)

    def make(src):
        conv = mpsnn.MPSCNNConvolutionNode(src, ds)
        add = mpsnn.MPSNNAdditionNode(left_source=conv.result_image, right_source=src)
        add.primary_scale, add.secondary_scale, add.bias = 0.5, -2.0, 0.25
        add.minimum_value, add.maximum_value = -3.0, 2.5
        return add

    ref = R.binary_arithmetic('add', R.conv2d(x, w, b), x, 0.5, -2.0, 0.25, minimum_value=-3.0, maximum_value=2.5)
    _fuse_both(device, make, [x], ref, 36)


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "unfused"])
def test_residual_add_of_two_convolutions(fuse, device, rng):
    x = rng.standard_normal((2, 6, 5, 3)).astype(np.float32)
    ds1, w1, b1 = conv_source(3, 6, 3, 3, rng)
    ds2, w2, b2 = conv_source(3, 6, 1, 1, rng)

    def make(src):
        c1 = mpsnn.MPSCNNConvolutionNode(src, ds1)
        c2 = mpsnn.MPSCNNConvolutionNode(src, ds2)
        add = mpsnn.MPSNNAdditionNode(left_source=c1.result_image, right_source=c2.result_image)
        return mpsnn.MPSCNNNeuronReLUNode(add.result_image)

    ref = R.neuron(R.conv2d(x, w1, b1) + R.conv2d(x, w2, b2), 'relu')
    assert_close(run_graph(device, make, [x], fuse=fuse), ref, "reduction", k=27)


@pytest.mark.parametrize("method", [R.SIZE_SAME, R.SIZE_SAME | R.ADD_REMAINDER_TO_BOTTOM_RIGHT,
                                    R.SIZE_VALID_ONLY, R.SIZE_FULL | R.ALIGN_TOP_LEFT], ids=method_id)
def test_convolution_vs_torch(method, device, rng):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    case = ConvCase(2, 9, 7, 5, 6, 4, 3, stride=(2, 3), dilation=(1, 2))
    x = rng.standard_normal((case.n, case.h, case.w, case.cin)).astype(np.float32)
    ds, w, b = conv_source(case.cin, case.cout, case.kh, case.kw, rng, case.stride, case.dilation)
    y = run_graph(device, _conv(ds, method), [x])
    g = R.window_geometry((case.h, case.w), (case.kh, case.kw), case.stride, case.dilation, method)
    xt = torch_pad(to_t(x), *g['pads'])
    ref = F.conv2d(xt, torch.from_numpy(w.transpose(0, 3, 1, 2).astype(np.float64)),
                   torch.from_numpy(b.astype(np.float64)), stride=case.stride, dilation=case.dilation)
    assert_close(y, from_t(ref), "reduction", k=case.k)


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "unfused"])
def test_residual_add_of_two_convolutions_plain(fuse, device, rng):
    """add(conv3x3(x), conv1x1(x)): the sum may only be fused into the convolution computed after the other
    addend (regression: the fused step once ran before its summand's producer, 12e9b25)."""
    x = rng.standard_normal((1, 4, 4, 3)).astype(np.float32)
    ds1, w1, b1 = conv_source(3, 4, 3, 3, rng)
    ds2, w2, b2 = conv_source(3, 4, 1, 1, rng)

    def make(src):
        c1 = mpsnn.MPSCNNConvolutionNode(src, ds1)
        c2 = mpsnn.MPSCNNConvolutionNode(src, ds2)
        return mpsnn.MPSNNAdditionNode(left_source=c1.result_image, right_source=c2.result_image)

    g = make_graph(device, make, 1, fuse=fuse)
    g.poison_temporaries = True
    for x in (x, rng.standard_normal((1, 4, 4, 3)).astype(np.float32)):      # a stale summand would show
        y = np.array(g.run([x]).numpy())
        assert_close(y, R.conv2d(x, w1, b1) + R.conv2d(x, w2, b2), "reduction", k=27)


def test_conv_descriptor_neuron_then_neuron_node(device, rng):
    """A neuron node after a conv that already has a descriptor neuron applies on top of it."""
    x = rng.standard_normal((2, 5, 4, 3)).astype(np.float32)
    desc = mpsnn.MPSNNNeuronDescriptor.cnn_neuron_descriptor(mpsnn.MPSCNNNeuronType.linear, 2.0, -1.0)
    ds, w, b = conv_source(3, 5, 3, 3, rng, neuron=desc)

    def make(src):
        conv = mpsnn.MPSCNNConvolutionNode(src, ds)
        return mpsnn.MPSCNNNeuronSigmoidNode(conv.result_image)

    _fuse_both(device, make, [x], R.neuron(R.neuron(R.conv2d(x, w, b), 'linear', 2.0, -1.0), 'sigmoid'), 27)


def test_conv_transpose_then_batch_norm_and_relu(device, rng):
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    ds, w, b = conv_source(5, 3, 3, 3, rng, stride=(2, 2))
    bn_ds, bn = _bn_source(rng, 3)

    def make(src):
        t = mpsnn.MPSCNNConvolutionTransposeNode(src, None, ds)
        norm = mpsnn.MPSCNNBatchNormalizationNode(t.result_image, bn_ds)
        return mpsnn.MPSCNNNeuronReLUNode(norm.result_image)

    ref = R.neuron(R.batch_norm_inference(R.conv_transpose2d(x, w, b, (2, 2)), *bn), 'relu')
    _fuse_both(device, make, [x], ref, 45)


def test_fully_connected_then_batch_norm_and_neuron(device, rng):
    x = rng.standard_normal((3, 2, 3, 5)).astype(np.float32)
    ds, w, b = conv_source(5, 6, 2, 3, rng)
    bn_ds, bn = _bn_source(rng, 6)

    def make(src):
        fc = mpsnn.MPSCNNFullyConnectedNode(src, ds)
        norm = mpsnn.MPSCNNBatchNormalizationNode(fc.result_image, bn_ds)
        return mpsnn.MPSCNNNeuronELUNode(norm.result_image, a=0.7)

    ref = R.neuron(R.batch_norm_inference(R.fully_connected(x, w, b), *bn), 'elu', 0.7)
    _fuse_both(device, make, [x], ref, 30)


# Chosen definition (dnnl_utils.h, eltwise_chain): clamps fused into a convolution run oneDNN's
# max/min, which return the bound for a NaN operand; unfused, NaN propagates (nodes.md §3.1, §6.2).
# Finite values agree either way. These tests pin both behaviours.
@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "unfused"])
def test_residual_add_nan(fuse, device, rng):
    x = rng.standard_normal((1, 3, 3, 4)).astype(np.float32)
    skip = rng.standard_normal((1, 3, 3, 4)).astype(np.float32)
    skip[0, 1, 1, 2] = np.nan
    ds, w, b = conv_source(4, 4, 3, 3, rng)

    def make(src, other):
        conv = mpsnn.MPSCNNConvolutionNode(src, ds)
        return mpsnn.MPSNNAdditionNode(left_source=conv.result_image, right_source=other)

    y = run_graph(device, make, [x, skip], fuse=fuse)
    ref = R.binary_arithmetic('add', R.conv2d(x, w, b), skip)
    mask = ~np.isnan(ref)
    if fuse and device.backend == "cpu":  # oneDNN's sum post-op (README: the chosen exception)
        assert y[0, 1, 1, 2] == -np.finfo(np.float32).max
    else:
        assert np.array_equal(np.isnan(y), ~mask)
    assert_close(y[mask], ref[mask], "reduction", k=36)


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "unfused"])
def test_relu_after_convolution_nan(fuse, device, rng):
    x = rng.standard_normal((1, 3, 3, 4)).astype(np.float32)
    x[0, 1, 1, 0] = np.nan  # every output pixel's window reads it
    ds, w, b = conv_source(4, 5, 3, 3, rng)
    y = run_graph(device, lambda s: mpsnn.MPSCNNNeuronReLUNode(mpsnn.MPSCNNConvolutionNode(s, ds).result_image),
                  [x], fuse=fuse)
    if fuse and device.backend == "cpu":  # oneDNN's max-based ReLU post-op; cuDNN's propagates NaN
        assert np.all(y == 0)
    else:
        assert np.all(np.isnan(y))


def test_graph_reused_with_new_inputs_and_sizes(device, rng):
    """One graph, several runs with different values, batch sizes and image sizes (one plan each)."""
    ds, w, b = conv_source(3, 6, 3, 2, rng, stride=(2, 1))
    bn_ds, bn = _bn_source(rng, 6)

    def make(src):
        conv = set_padding(mpsnn.MPSCNNConvolutionNode(src, ds), R.SIZE_SAME | R.ADD_REMAINDER_TO_BOTTOM_RIGHT)
        norm = mpsnn.MPSCNNBatchNormalizationNode(conv.result_image, bn_ds)
        relu = mpsnn.MPSCNNNeuronReLUNode(norm.result_image)
        return mpsnn.MPSCNNPoolingMaxNode(relu.result_image, 2)

    for fuse in (True, False):
        g = make_graph(device, make, 1, fuse=fuse)
        for shape in ((1, 7, 6, 3), (3, 5, 9, 3), (1, 7, 6, 3), (2, 8, 8, 3)):
            x = rng.standard_normal(shape).astype(np.float32)
            y = np.array(g.run([x]).numpy())
            geo = R.window_geometry(shape[1:3], (3, 2), (2, 1), (1, 1), R.SIZE_SAME | R.ADD_REMAINDER_TO_BOTTOM_RIGHT)
            c = R.conv2d(x, w, b, stride=(2, 1), pad=geo['pad'], out_hw=geo['out_hw'])
            ref = R.max_pool2d(R.neuron(R.batch_norm_inference(c, *bn), 'relu'), (2, 2))
            assert_close(y, ref, "reduction", k=18)


def test_convolution_float16_source_array(device, rng):
    """A float16 source image is read as its float16 values; the result has the graph's default
    format (float32 on the CPU, float16 on CUDA)."""
    x = rng.standard_normal((2, 5, 6, 3)).astype(np.float16)
    ds, w, b = conv_source(3, 4, 3, 3, rng)
    g = make_graph(device, _conv(ds), 1)
    y = g.run([x]).numpy()
    expected_dtype = {FP16: "float16", mpsnn.MPSImageFeatureChannelFormat.bfloat16: "bfloat16"}.get(g.format, "float32")
    assert y.dtype.name == expected_dtype
    assert_close(y, R.conv2d(x.astype(np.float64), w, b), "reduction", k=27)


@pytest.mark.parametrize("h,w,kh,kw,stride,dil,groups,method", [
    (9, 8, 3, 3, (2, 2), (2, 2), 1, R.SIZE_SAME),
    (7, 9, 2, 3, (2, 3), (1, 2), 1, R.SIZE_FULL | R.ALIGN_BOTTOM_RIGHT),
    (8, 8, 3, 3, (2, 2), (1, 1), 2, R.SIZE_VALID_ONLY | R.ADD_REMAINDER_TO_TOP_RIGHT),
    (6, 7, 4, 2, (3, 2), (2, 1), 1, R.SIZE_SAME | R.ADD_REMAINDER_TO_BOTTOM_LEFT),
], ids=str)
def test_convolution_transpose_paired_dilated_grouped(h, w, kh, kw, stride, dil, groups, method, device, rng):
    cin, cmid = (8, 8) if groups == 2 else (3, 5)
    x = rng.standard_normal((2, h, w, cin)).astype(np.float32)
    ds1, w1, b1 = conv_source(cin, cmid, kh, kw, rng, stride, dil, groups)
    ds2, w2, b2 = conv_source(cmid, cin, kh, kw, rng, stride, dil, groups)

    def make(src):
        conv = set_padding(mpsnn.MPSCNNConvolutionNode(src, ds1), method)
        return mpsnn.MPSCNNConvolutionTransposeNode(conv.result_image, conv.convolution_gradient_state, ds2)

    y = run_graph(device, make, [x])
    geo = R.window_geometry((h, w), (kh, kw), stride, dil, method)
    mid = R.conv2d(x, w1, b1, stride=stride, dilation=dil, groups=groups, pad=geo['pad'], out_hw=geo['out_hw'])
    pz = tuple(R.transpose_pad_from_conv(p, k, d) for p, k, d in zip(geo['pad'], (kh, kw), dil))
    ref = R.conv_transpose2d(mid, w2, b2, stride, dil, groups, pad_z=pz, out_hw=(h, w))
    assert y.shape == (2, h, w, cin)
    assert_close(y, ref, "reduction", k=kh * kw * cmid // groups)
