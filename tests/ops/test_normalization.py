"""Forward tests of the normalization nodes (nodes.md §8): batch normalization (inference and batch
statistics), instance normalization, cross-channel (LRN), spatial and local-contrast normalization."""

from __future__ import annotations

import numpy as np
import pytest

import mpsnn
import reference as R
from conftest import assert_close

from ._common import FP16, run_graph, to_t, from_t

SHAPES = [(1, 1, 1, 3), (1, 5, 7, 3), (2, 4, 3, 5), (3, 3, 6, 8), (2, 2, 5, 13)]


# --------------------------------------------------------------------------------------------
# batch normalization

def _bn_params(rng, c):
    return (rng.standard_normal(c), rng.uniform(0.3, 2.0, c), rng.standard_normal(c), rng.standard_normal(c))


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("eps", [1e-5, 0.1])
def test_batch_norm_inference(shape, eps, device, rng):
    c = shape[3]
    x = (rng.standard_normal(shape) * 2 + 1).astype(np.float32)
    mean, var, gamma, beta = _bn_params(rng, c)
    ds = mpsnn.ArrayBatchNormalizationDataSource(gamma, beta, mean, var, epsilon=eps)
    y = run_graph(device, lambda s: mpsnn.MPSCNNBatchNormalizationNode(s, ds), [x])
    assert_close(y, R.batch_norm_inference(x, mean, var, gamma, beta, eps), "elementwise")


def test_batch_norm_inference_defaults(device, rng):
    """None arrays: gamma 1, beta 0, mean 0, variance 1."""
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    for kw in ({}, {"gamma": rng.standard_normal(5)}, {"mean": rng.standard_normal(5)}):
        ds = mpsnn.ArrayBatchNormalizationDataSource(epsilon=1e-3, number_of_feature_channels=5, **kw)
        y = run_graph(device, lambda s: mpsnn.MPSCNNBatchNormalizationNode(s, ds), [x])
        ref = R.batch_norm_inference(x, kw.get("mean"), None, kw.get("gamma"), None, 1e-3)
        assert_close(y, ref, "elementwise")


@pytest.mark.parametrize("shape", [(1, 5, 7, 3), (4, 3, 2, 5), (3, 1, 1, 6), (2, 6, 5, 9)], ids=str)
def test_batch_norm_batch_statistics(shape, device, rng):
    """flags = calculate_statistics_always: μ, biased v over N·H·W of this batch (nodes.md §8.5)."""
    c = shape[3]
    x = (rng.standard_normal(shape) * 3 - 2).astype(np.float32)
    mean, var, gamma, beta = _bn_params(rng, c)
    ds = mpsnn.ArrayBatchNormalizationDataSource(gamma, beta, mean, var, epsilon=1e-5)

    def make(src):
        node = mpsnn.MPSCNNBatchNormalizationNode(src, ds)
        node.flags = mpsnn.MPSCNNBatchNormalizationFlags.calculate_statistics_always
        return node

    y = run_graph(device, make, [x])
    assert_close(y, R.batch_norm_training(x, gamma, beta, 1e-5), "reduction", k=int(np.prod(shape[:3])))


def test_batch_norm_vs_torch(device, rng):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    x = (rng.standard_normal((3, 5, 4, 7)) * 2 + 1).astype(np.float32)
    mean, var, gamma, beta = _bn_params(rng, 7)
    T = torch.from_numpy
    ds = mpsnn.ArrayBatchNormalizationDataSource(gamma, beta, mean, var, epsilon=1e-5)
    y = run_graph(device, lambda s: mpsnn.MPSCNNBatchNormalizationNode(s, ds), [x])
    ref = F.batch_norm(to_t(x), T(mean), T(var), T(gamma), T(beta), training=False, eps=1e-5)
    assert_close(y, from_t(ref), "elementwise")

    def make(src):
        node = mpsnn.MPSCNNBatchNormalizationNode(src, ds)
        node.flags = mpsnn.MPSCNNBatchNormalizationFlags.calculate_statistics_always
        return node

    y = run_graph(device, make, [x])
    ref = F.batch_norm(to_t(x), None, None, T(gamma), T(beta), training=True, eps=1e-5)
    assert_close(y, from_t(ref), "reduction", k=60)


def test_batch_norm_then_neuron_fused_and_unfused(device, rng):
    x = rng.standard_normal((2, 4, 5, 6)).astype(np.float32)
    mean, var, gamma, beta = _bn_params(rng, 6)
    ds = mpsnn.ArrayBatchNormalizationDataSource(gamma, beta, mean, var, epsilon=1e-5)

    def make(src):
        bn = mpsnn.MPSCNNBatchNormalizationNode(src, ds)
        return mpsnn.MPSCNNNeuronReLUNode(bn.result_image, a=0.1)

    ref = R.neuron(R.batch_norm_inference(x, mean, var, gamma, beta, 1e-5), 'relu', 0.1)
    for fuse in (True, False):
        assert_close(run_graph(device, make, [x], fuse=fuse), ref, "elementwise")


# --------------------------------------------------------------------------------------------
# instance normalization

@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_instance_norm(shape, device, rng):
    c = shape[3]
    x = (rng.standard_normal(shape) * 2 + 0.5).astype(np.float32)
    gamma, beta = rng.standard_normal(c), rng.standard_normal(c)
    ds = mpsnn.ArrayInstanceNormalizationDataSource(gamma, beta, epsilon=1e-5)
    y = run_graph(device, lambda s: mpsnn.MPSCNNInstanceNormalizationNode(s, ds), [x])
    assert_close(y, R.instance_norm(x, gamma, beta, 1e-5), "reduction", k=shape[1] * shape[2])


def test_instance_norm_defaults(device, rng):
    x = rng.standard_normal((3, 4, 5, 6)).astype(np.float32)
    ds = mpsnn.ArrayInstanceNormalizationDataSource(epsilon=1e-3, number_of_feature_channels=6)
    y = run_graph(device, lambda s: mpsnn.MPSCNNInstanceNormalizationNode(s, ds), [x])
    assert_close(y, R.instance_norm(x, None, None, 1e-3), "reduction", k=20)


@pytest.mark.parametrize("hw", [(1, 1), (4, 3)], ids=str)
def test_instance_norm_constant_channel_gives_beta(hw, device, rng):
    x = np.broadcast_to(rng.standard_normal((3, 1, 1, 6)) * 3, (3, hw[0], hw[1], 6)).astype(np.float32)
    gamma, beta = rng.standard_normal(6), rng.standard_normal(6)
    ds = mpsnn.ArrayInstanceNormalizationDataSource(gamma, beta, epsilon=1e-5)
    y = run_graph(device, lambda s: mpsnn.MPSCNNInstanceNormalizationNode(s, ds), [x])
    assert_close(y, R.instance_norm(x, gamma, beta, 1e-5), "elementwise")


def test_batch_norm_batch_statistics_single_value_gives_beta(device, rng):
    x = (rng.standard_normal((1, 1, 1, 6)) * 3).astype(np.float32)
    gamma, beta = rng.standard_normal(6), rng.standard_normal(6)
    ds = mpsnn.ArrayBatchNormalizationDataSource(gamma, beta, epsilon=1e-5, number_of_feature_channels=6)

    def make(src):
        node = mpsnn.MPSCNNBatchNormalizationNode(src, ds)
        node.flags = mpsnn.MPSCNNBatchNormalizationFlags.calculate_statistics_always
        return node

    assert_close(run_graph(device, make, [x]), R.batch_norm_training(x, gamma, beta, 1e-5), "elementwise")


@pytest.mark.parametrize("shape", [(2, 5, 4, 7), (1, 9, 3, 3), (3, 2, 2, 1)], ids=str)
def test_instance_norm_vs_torch(shape, device, rng):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    c = shape[3]
    x = (rng.standard_normal(shape) * 3 + 1).astype(np.float32)
    gamma, beta = rng.standard_normal(c), rng.standard_normal(c)
    ds = mpsnn.ArrayInstanceNormalizationDataSource(gamma, beta, epsilon=1e-5)
    y = run_graph(device, lambda s: mpsnn.MPSCNNInstanceNormalizationNode(s, ds), [x])
    ref = F.instance_norm(to_t(x), weight=torch.from_numpy(gamma), bias=torch.from_numpy(beta), eps=1e-5)
    assert_close(y, from_t(ref), "reduction", k=shape[1] * shape[2])


# --------------------------------------------------------------------------------------------
# cross-channel (local response) normalization

LRN_PARAMS = [(1.0, 5.0, 1.0), (0.3, 0.75, 2.0), (2.0, 0.5, 0.5)]


@pytest.mark.parametrize("params", LRN_PARAMS, ids=str)
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("shape", [(1, 3, 4, 3), (2, 2, 3, 7), (1, 1, 2, 13)], ids=str)
def test_cross_channel_norm(shape, n, params, device, rng):
    alpha, beta, delta = params
    x = (rng.standard_normal(shape) * 2).astype(np.float32)

    def make(src):
        node = mpsnn.MPSCNNCrossChannelNormalizationNode(src, kernel_size=n)
        node.alpha, node.beta, node.delta = alpha, beta, delta
        return node

    y = run_graph(device, make, [x])
    assert_close(y, R.cross_channel_norm(x, n, alpha, beta, delta), "reduction", k=n)


def test_cross_channel_norm_defaults(device, rng):
    node = mpsnn.MPSCNNCrossChannelNormalizationNode(mpsnn.MPSNNImageNode())
    assert node.kernel_size_in_feature_channels == 5
    assert (node.alpha, node.beta, node.delta) == (1.0, 5.0, 1.0)
    x = rng.standard_normal((2, 3, 4, 9)).astype(np.float32)
    y = run_graph(device, lambda s: mpsnn.MPSCNNCrossChannelNormalizationNode(s), [x])
    assert_close(y, R.cross_channel_norm(x), "reduction", k=5)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7])
@pytest.mark.parametrize("c", [3, 7, 8])
def test_cross_channel_norm_vs_torch(n, c, device, rng):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    x = (rng.standard_normal((2, 4, 5, c)) * 2).astype(np.float32)
    alpha, beta, delta = 0.4, 0.75, 1.5

    def make(src):
        node = mpsnn.MPSCNNCrossChannelNormalizationNode(src, kernel_size=n)
        node.alpha, node.beta, node.delta = alpha, beta, delta
        return node

    y = run_graph(device, make, [x])
    ref = F.local_response_norm(to_t(x), size=n, alpha=alpha, beta=beta, k=delta)
    assert_close(y, from_t(ref), "reduction", k=n)


# --------------------------------------------------------------------------------------------
# spatial and local-contrast normalization

WINDOWS = [(1, 1), (3, 3), (2, 3), (4, 5), (5, 2), (5, 5), (7, 3)]


@pytest.mark.parametrize("kw,kh", WINDOWS, ids=str)
@pytest.mark.parametrize("params", [(1.0, 5.0, 1.0), (0.4, 0.75, 1.5)], ids=str)
def test_spatial_norm(kw, kh, params, device, rng):
    alpha, beta, delta = params
    x = (rng.standard_normal((2, 7, 6, 5)) * 2).astype(np.float32)

    def make(src):
        node = mpsnn.MPSCNNSpatialNormalizationNode(src, kernel_size=kw)
        node.kernel_width, node.kernel_height = kw, kh
        node.alpha, node.beta, node.delta = alpha, beta, delta
        return node

    y = run_graph(device, make, [x])
    assert_close(y, R.spatial_norm(x, kw, kh, alpha, beta, delta), "reduction", k=kw * kh)


def test_spatial_norm_defaults(device, rng):
    node = mpsnn.MPSCNNSpatialNormalizationNode(mpsnn.MPSNNImageNode())
    assert (node.kernel_width, node.kernel_height) == (5, 5)
    assert (node.alpha, node.beta, node.delta) == (1.0, 5.0, 1.0)
    x = rng.standard_normal((1, 6, 7, 3)).astype(np.float32)
    y = run_graph(device, lambda s: mpsnn.MPSCNNSpatialNormalizationNode(s), [x])
    assert_close(y, R.spatial_norm(x), "reduction", k=25)


def test_spatial_norm_vs_torch(device, rng):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    x = (rng.standard_normal((2, 7, 6, 5)) * 2).astype(np.float32)
    kw, kh, alpha, beta, delta = 3, 4, 0.5, 0.75, 1.25

    def make(src):
        node = mpsnn.MPSCNNSpatialNormalizationNode(src, kernel_size=3)
        node.kernel_height = kh
        node.alpha, node.beta, node.delta = alpha, beta, delta
        return node

    y = run_graph(device, make, [x])
    xt = to_t(x)
    p = F.pad(xt * xt, (kw // 2, (kw - 1) // 2, kh // 2, (kh - 1) // 2))
    T = delta + alpha * F.avg_pool2d(p, (kh, kw), stride=1)
    assert_close(y, from_t(xt * T ** (-beta)), "reduction", k=kw * kh)


LCN_PARAMS = [
    dict(),
    dict(alpha=0.5, beta=0.75, delta=0.3, pm=0.2, ps=1.7, p0=0.6),
    dict(alpha=1.0, beta=0.5, delta=1e-2, pm=-1.0, ps=0.5, p0=0.0),
]


@pytest.mark.parametrize("kw,kh", WINDOWS, ids=str)
@pytest.mark.parametrize("params", LCN_PARAMS, ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()) or "defaults")
def test_local_contrast_norm(kw, kh, params, device, rng):
    x = (rng.standard_normal((2, 7, 6, 3)) * 2 + 0.5).astype(np.float32)

    def make(src):
        node = mpsnn.MPSCNNLocalContrastNormalizationNode(src, kernel_size=kw)
        node.kernel_height = kh
        for k, v in params.items():
            setattr(node, k, v)
        return node

    y = run_graph(device, make, [x])
    defaults = dict(alpha=1.0, beta=0.5, delta=1.0 / 1024, pm=0.0, ps=1.0, p0=1.0)
    defaults.update(params)
    ref = R.local_contrast_norm(x, kw, kh, **defaults)
    assert_close(y, ref, "reduction", k=kw * kh)


def test_local_contrast_norm_defaults():
    node = mpsnn.MPSCNNLocalContrastNormalizationNode(mpsnn.MPSNNImageNode())
    got = (node.kernel_width, node.kernel_height, node.alpha, node.beta, node.delta, node.pm, node.ps, node.p0)
    assert got == pytest.approx((5, 5, 1.0, 0.5, 1.0 / 1024, 0.0, 1.0, 1.0))


# --------------------------------------------------------------------------------------------
# float16 format

def test_normalization_float16_graph_format(device, rng):
    x = (rng.standard_normal((2, 4, 5, 7)) * 2).astype(np.float32)
    gamma, beta = rng.standard_normal(7), rng.standard_normal(7)
    ds = mpsnn.ArrayInstanceNormalizationDataSource(gamma, beta, epsilon=1e-5)
    y = run_graph(device, lambda s: mpsnn.MPSCNNInstanceNormalizationNode(s, ds), [x], fmt=FP16)
    assert y.dtype == np.float16
    assert_close(y, R.instance_norm(x, gamma, beta, 1e-5), "reduction", "float16")
    y = run_graph(device, lambda s: mpsnn.MPSCNNCrossChannelNormalizationNode(s, 3), [x], fmt=FP16)
    assert y.dtype == np.float16
    assert_close(y, R.cross_channel_norm(x, 3), "reduction", "float16")


# --------------------------------------------------------------------------------------------
# bad parameters

def test_batch_norm_channel_mismatch(device, rng):
    x = rng.standard_normal((1, 3, 3, 4)).astype(np.float32)
    ds = mpsnn.ArrayBatchNormalizationDataSource(np.ones(3), np.zeros(3), np.zeros(3), np.ones(3), epsilon=1e-5)
    with pytest.raises(mpsnn.ShapeError,
                       match=r"\[batch normalization\] source has 4 feature channels, data source has 3"):
        run_graph(device, lambda s: mpsnn.MPSCNNBatchNormalizationNode(s, ds), [x])


def test_instance_norm_channel_mismatch(device, rng):
    x = rng.standard_normal((1, 3, 3, 5)).astype(np.float32)
    ds = mpsnn.ArrayInstanceNormalizationDataSource(np.ones(6), np.zeros(6), epsilon=1e-5)
    with pytest.raises(mpsnn.ShapeError,
                       match=r"\[instance normalization\] source has 5 feature channels, data source has 6"):
        run_graph(device, lambda s: mpsnn.MPSCNNInstanceNormalizationNode(s, ds), [x])


def test_batch_norm_data_source_array_length():
    with pytest.raises(mpsnn.ShapeError, match="variance has 2 values; expected 3"):
        mpsnn.ArrayBatchNormalizationDataSource(np.ones(3), np.zeros(3), np.zeros(3), np.ones(2))


@pytest.mark.parametrize("cls", ["MPSCNNCrossChannelNormalizationNode", "MPSCNNSpatialNormalizationNode",
                                 "MPSCNNLocalContrastNormalizationNode"])
def test_normalization_zero_kernel_size(cls):
    with pytest.raises(mpsnn.ShapeError, match=r"\[normalization\] kernel_width is 0; expected > 0"):
        getattr(mpsnn, cls)(mpsnn.MPSNNImageNode(), 0)




def test_normalization_negative_alpha(device, rng):
    x = rng.standard_normal((1, 3, 4, 3)).astype(np.float32)

    def make(src):
        node = mpsnn.MPSCNNCrossChannelNormalizationNode(src)
        node.alpha = -1.0
        return node

    with pytest.raises(mpsnn.ShapeError, match=r"\[normalization\] alpha is -1; expected >= 0"):
        run_graph(device, make, [x])


@pytest.mark.parametrize("cls,attr,value", [("MPSCNNSpatialNormalizationNode", "kernel_width", 0),
                                            ("MPSCNNLocalContrastNormalizationNode", "kernel_height", -2)])
def test_normalization_kernel_set_non_positive(cls, attr, value, device, rng):
    x = rng.standard_normal((1, 4, 4, 3)).astype(np.float32)

    def make(src):
        node = getattr(mpsnn, cls)(src)
        setattr(node, attr, value)
        return node

    with pytest.raises(mpsnn.ShapeError, match=rf"\[normalization\] {attr} is {value}; expected > 0"):
        run_graph(device, make, [x])


@pytest.mark.parametrize("method", [0x00, 0x21], ids=["valid", "full-alignTL"])
def test_normalization_padding_policy_has_no_effect(method, device, rng):
    """Window normalizations stay size preserving with centred windows whatever the (non-custom) policy."""
    from ._common import set_padding
    x = rng.standard_normal((2, 5, 7, 3)).astype(np.float32)
    y = run_graph(device, lambda s: set_padding(mpsnn.MPSCNNSpatialNormalizationNode(s, 3), method), [x])
    assert_close(y, R.spatial_norm(x, 3, 3), "reduction", k=9)
    y = run_graph(device, lambda s: set_padding(mpsnn.MPSCNNLocalContrastNormalizationNode(s, 3), method), [x])
    assert_close(y, R.local_contrast_norm(x, 3, 3), "reduction", k=9)
    y = run_graph(device, lambda s: set_padding(mpsnn.MPSCNNCrossChannelNormalizationNode(s, 3), method), [x])
    assert_close(y, R.cross_channel_norm(x, 3), "reduction", k=3)
