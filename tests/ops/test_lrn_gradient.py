"""Gradient tests of the cross-channel, spatial and local-contrast normalizations (nodes.md §8.2-8.4):
odd (oneDNN) and even (own kernel) cross-channel windows, unequal spatial windows, non-default
parameters, channel counts not divisible by 4, batches, after a convolution, fused and unfused, the
hand-built constructors with their defaults, PyTorch cross-checks and errors naming the node."""

from __future__ import annotations

import numpy as np
import pytest

import mpsnn
import reference as R
from conftest import assert_close, conv_source

from ._common import Handle, from_t, labelled_graph, run_by_label, to_t


def _xg():
    return mpsnn.MPSNNImageNode(handle=Handle('x')), mpsnn.MPSNNImageNode(handle=Handle('g'))


def _params(node, alpha, beta, delta):
    node.alpha, node.beta, node.delta = alpha, beta, delta
    return node


def _data(rng, shape):
    return rng.standard_normal(shape).astype(np.float32), rng.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6], ids=lambda n: f"N{n}")
@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 4, 3, 5), (3, 2, 3, 12)], ids=str)
def test_cross_channel_gradient(n, shape, device, rng):
    x, g = _data(rng, shape)
    ref = R.cross_channel_norm_gradient(x, g, n, 0.9, 0.75, 1.5)
    for fuse in (True, False):
        xn, gn = _xg()
        fwd = _params(mpsnn.MPSCNNCrossChannelNormalizationNode(source=xn, kernel_size=n), 0.9, 0.75, 1.5)
        grad = fwd.gradient_filter(with_source=gn)
        assert type(grad) is mpsnn.MPSCNNCrossChannelNormalizationGradientNode
        assert grad.kernel_size == n and (grad.alpha, grad.beta, grad.delta) == (np.float32(0.9), 0.75, 1.5)
        dx = run_by_label(labelled_graph(device, grad.result_image, fuse), {'x': x, 'g': g})
        assert_close(dx, ref, "reduction", k=n)


@pytest.mark.parametrize("kw,kh", [(3, 3), (2, 4), (5, 1), (1, 1), (4, 4)], ids=str)
def test_spatial_gradient(kw, kh, device, rng):
    x, g = _data(rng, (2, 7, 6, 5))
    ref = R.spatial_norm_gradient(x, g, kw, kh, 0.8, 0.75, 1.25)
    for fuse in (True, False):
        xn, gn = _xg()
        fwd = _params(mpsnn.MPSCNNSpatialNormalizationNode(source=xn), 0.8, 0.75, 1.25)
        fwd.kernel_width, fwd.kernel_height = kw, kh
        grad = fwd.gradient_filter(with_source=gn)
        assert type(grad) is mpsnn.MPSCNNSpatialNormalizationGradientNode
        assert (grad.kernel_width, grad.kernel_height) == (kw, kh)
        dx = run_by_label(labelled_graph(device, grad.result_image, fuse), {'x': x, 'g': g})
        assert_close(dx, ref, "reduction", k=kw * kh)


@pytest.mark.parametrize("kw,kh", [(3, 3), (4, 2), (5, 5), (1, 3)], ids=str)
def test_local_contrast_gradient(kw, kh, device, rng):
    x, g = _data(rng, (2, 6, 7, 3))
    p = dict(alpha=0.9, beta=0.6, delta=0.5, pm=0.2, ps=1.3, p0=0.8)
    ref = R.local_contrast_norm_gradient(x, g, kw, kh, **p)
    for fuse in (True, False):
        xn, gn = _xg()
        fwd = mpsnn.MPSCNNLocalContrastNormalizationNode(source=xn)
        fwd.kernel_width, fwd.kernel_height = kw, kh
        for k, v in p.items():
            setattr(fwd, k, v)
        grad = fwd.gradient_filter(with_source=gn)
        assert type(grad) is mpsnn.MPSCNNLocalContrastNormalizationGradientNode
        assert (grad.pm, grad.ps, grad.p0) == (np.float32(0.2), np.float32(1.3), np.float32(0.8))
        dx = run_by_label(labelled_graph(device, grad.result_image, fuse), {'x': x, 'g': g})
        assert_close(dx, ref, "reduction", k=kw * kh)


def test_default_parameters(device, rng):
    """Forward defaults (cross-channel / spatial 1, 5, 1; local contrast 1, 0.5, 1/1024) copied by
    gradient_filter; hand-built gradient nodes start from the documented defaults (local contrast alpha 0)."""
    x, g = _data(rng, (2, 5, 6, 6))
    xn, gn = _xg()
    cross = mpsnn.MPSCNNCrossChannelNormalizationNode(source=xn)
    spatial = mpsnn.MPSCNNSpatialNormalizationNode(source=xn, kernel_size=3)
    lcn = mpsnn.MPSCNNLocalContrastNormalizationNode(source=xn, kernel_size=3)
    auto = [n.gradient_filter(with_source=gn) for n in (cross, spatial, lcn)]
    hand = [mpsnn.MPSCNNCrossChannelNormalizationGradientNode(source_gradient=gn, source_image=xn,
                                                              gradient_state=cross.result_state, kernel_size=5),
            mpsnn.MPSCNNSpatialNormalizationGradientNode(source_gradient=gn, source_image=xn,
                                                         gradient_state=spatial.result_state, kernel_size=3),
            mpsnn.MPSCNNLocalContrastNormalizationGradientNode(source_gradient=gn, source_image=xn,
                                                               gradient_state=lcn.result_state, kernel_width=3,
                                                               kernel_height=3)]
    assert (hand[2].alpha, hand[2].beta, hand[2].delta) == (0.0, 0.5, np.float32(1 / 1024))
    assert (auto[2].alpha, auto[2].beta) == (1.0, 0.5)
    outs = run_by_label(labelled_graph(device, [n.result_image for n in auto + hand]), {'x': x, 'g': g})
    refs = [R.cross_channel_norm_gradient(x, g), R.spatial_norm_gradient(x, g, 3, 3),
            R.local_contrast_norm_gradient(x, g, 3, 3),
            R.cross_channel_norm_gradient(x, g), R.spatial_norm_gradient(x, g, 3, 3),
            R.local_contrast_norm_gradient(x, g, 3, 3, alpha=0.0)]
    for out, ref in zip(outs, refs):
        assert_close(out, ref, "reduction", k=9)
    hand[2].alpha = 1.0                  # writable: equals the automatic node then
    out = run_by_label(labelled_graph(device, hand[2].result_image), {'x': x, 'g': g})
    assert_close(out, refs[2], "reduction", k=9)


def test_normalization_gradient_after_convolution(device, rng):
    """The forward source is a convolution result read by both the normalization and its gradient: the
    convolution is not fused away and fused / unfused plans agree."""
    ds, w, b = conv_source(3, 6, 3, 3, rng, neuron=mpsnn.MPSNNNeuronDescriptor.cnn_neuron_descriptor(
        mpsnn.MPSCNNNeuronType.tanh))
    x = rng.standard_normal((2, 7, 5, 3)).astype(np.float32)
    g = rng.standard_normal((2, 7, 5, 6)).astype(np.float32)
    h = np.tanh(R.conv2d(x, w, b))
    for fuse in (True, False):
        xn, gn = _xg()
        conv = mpsnn.MPSCNNConvolutionNode(source=xn, weights=ds)
        fwd = mpsnn.MPSCNNCrossChannelNormalizationNode(source=conv.result_image, kernel_size=3)
        grad = fwd.gradient_filter(with_source=gn)
        y, dh = run_by_label(labelled_graph(device, [fwd.result_image, grad.result_image], fuse), {'x': x, 'g': g})
        assert_close(y, R.cross_channel_norm(h, 3), "reduction", k=27)
        assert_close(dh, R.cross_channel_norm_gradient(h, g, 3), "reduction", k=27)


def test_normalization_gradient_errors(device, rng):
    x, g = _data(rng, (1, 4, 4, 3))
    xn, gn = _xg()
    spatial = mpsnn.MPSCNNSpatialNormalizationNode(source=xn)
    grad = spatial.gradient_filter(with_source=gn)
    grad.label = "sn.grad"
    with pytest.raises(mpsnn.ShapeError, match=r"'sn\.grad'\] source gradient is 4x4x2"):
        run_by_label(labelled_graph(device, grad.result_image), {'x': x, 'g': g[..., :2]})
    wrong = mpsnn.MPSCNNCrossChannelNormalizationGradientNode(source_gradient=gn, source_image=xn,
                                                              gradient_state=spatial.result_state, kernel_size=5)
    wrong.label = "wrong"
    with pytest.raises(mpsnn.MPSGraphError, match=r"'wrong'\] is the gradient of another normalization"):
        run_by_label(labelled_graph(device, wrong.result_image), {'x': x, 'g': g})
    with pytest.raises(mpsnn.ShapeError, match=r"\[normalization gradient\] kernel_width is 0"):
        mpsnn.MPSCNNCrossChannelNormalizationGradientNode(source_gradient=gn, source_image=xn,
                                                          gradient_state=spatial.result_state, kernel_size=0)
    with pytest.raises(AttributeError):
        grad.kernel_width = 3
    with pytest.raises(NotImplementedError):
        grad.gradient_filter(with_source=gn)


def test_cross_channel_gradient_vs_torch(device, rng):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    x, g = _data(rng, (2, 5, 4, 9))
    for n in (3, 4):
        xn, gn = _xg()
        fwd = _params(mpsnn.MPSCNNCrossChannelNormalizationNode(source=xn, kernel_size=n), 1e-1, 0.75, 2.0)
        dx = run_by_label(labelled_graph(device, fwd.gradient_filter(with_source=gn).result_image), {'x': x, 'g': g})
        t = to_t(x).clone().requires_grad_(True)
        F.local_response_norm(t, size=n, alpha=1e-1, beta=0.75, k=2.0).backward(to_t(g))
        assert torch.is_tensor(t.grad)
        assert_close(dx, from_t(t.grad), "reduction", k=n)


@pytest.mark.parametrize("kw,kh", [(9, 2), (3, 7), (8, 8)], ids=str)
def test_windows_larger_than_the_image(kw, kh, device, rng):
    """Windows wider or taller than the 4x3 image: every tap set clipped on both sides."""
    x, g = _data(rng, (2, 3, 4, 5))
    xn, gn = _xg()
    spatial = _params(mpsnn.MPSCNNSpatialNormalizationNode(source=xn), 0.7, 1.5, 0.75)
    spatial.kernel_width, spatial.kernel_height = kw, kh
    lcn = mpsnn.MPSCNNLocalContrastNormalizationNode(source=xn)
    lcn.kernel_width, lcn.kernel_height = kw, kh
    grads = [n.gradient_filter(with_source=gn) for n in (spatial, lcn)]
    ds, dl = run_by_label(labelled_graph(device, [n.result_image for n in grads]), {'x': x, 'g': g})
    assert_close(ds, R.spatial_norm_gradient(x, g, kw, kh, 0.7, 1.5, 0.75), "reduction", k=kw * kh)
    assert_close(dl, R.local_contrast_norm_gradient(x, g, kw, kh), "reduction", k=kw * kh)
