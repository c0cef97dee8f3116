"""Gradient tests of nearest and bilinear upsampling (nodes.md §9): the block sum and the adjoint of the
bilinear interpolation with align_corners off and on (all three our own gather kernel), over odd sizes,
unequal factors, channel counts not divisible by 4 (1, 3, 37) and batches, fused and unfused, the
constructors (align_corners taken from the forward node), PyTorch cross-checks and errors."""

from __future__ import annotations

import numpy as np
import pytest

import mpsnn
import reference as R
from conftest import assert_close

from ._common import Handle, from_t, labelled_graph, run_by_label, to_t

FACTORS = [(1, 1), (2, 2), (3, 2), (2, 5), (4, 3)]


def _xg():
    return mpsnn.MPSNNImageNode(handle=Handle('x')), mpsnn.MPSNNImageNode(handle=Handle('g'))


def _forward(mode, x, fx, fy, align):
    if mode == 'nearest':
        return mpsnn.MPSCNNUpsamplingNearestNode(source=x, integer_scale_factor_x=fx, integer_scale_factor_y=fy)
    return mpsnn.MPSCNNUpsamplingBilinearNode(source=x, integer_scale_factor_x=fx, integer_scale_factor_y=fy,
                                              align_corners=align)


def _ref(mode, g, fx, fy, align):
    if mode == 'nearest':
        return R.upsample_nearest_gradient(g, fx, fy)
    return R.upsample_bilinear_gradient(g, fx, fy, align)


MODES = [('nearest', False), ('bilinear', False), ('bilinear', True)]


@pytest.mark.parametrize("mode,align", MODES, ids=["nearest", "bilinear", "bilinear-aligned"])
@pytest.mark.parametrize("fx,fy", FACTORS, ids=str)
@pytest.mark.parametrize("shape", [(2, 5, 3, 3), (1, 1, 4, 6), (3, 4, 7, 1)], ids=str)
def test_upsampling_gradient(mode, align, fx, fy, shape, device, rng):
    n, h, w, c = shape
    x = rng.standard_normal(shape).astype(np.float32)
    g = rng.standard_normal((n, h * fy, w * fx, c)).astype(np.float32)
    ref = _ref(mode, g, fx, fy, align)
    for fuse in (True, False):
        xn, gn = _xg()
        fwd = _forward(mode, xn, fx, fy, align)
        grad = fwd.gradient_filter(with_source=gn)
        cls = mpsnn.MPSCNNUpsamplingNearestGradientNode if mode == 'nearest' else mpsnn.MPSCNNUpsamplingBilinearGradientNode
        assert type(grad) is cls and (grad.scale_factor_x, grad.scale_factor_y) == (fx, fy)
        if mode == 'bilinear':
            assert grad.align_corners == align
        y, dx = run_by_label(labelled_graph(device, [fwd.result_image, grad.result_image], fuse), {'x': x, 'g': g})
        assert dx.shape == x.shape
        assert_close(dx, ref, "reduction", k=4 * fx * fy)


@pytest.mark.parametrize("mode,align", MODES, ids=["nearest", "bilinear", "bilinear-aligned"])
@pytest.mark.parametrize("fx,fy", [(2, 3), (3, 1)], ids=str)
def test_upsampling_gradient_wide_threaded(mode, align, fx, fy, device, rng):
    # 37 channels (vector loops and their remainder), batch 3, odd sizes, above the threading
    # threshold: against the reference, and the same bits on every run (one thread per row).
    n, h, w, c = 3, 9, 7, 37
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    g = rng.standard_normal((n, h * fy, w * fx, c)).astype(np.float32)
    xn, gn = _xg()
    graph = labelled_graph(device, _forward(mode, xn, fx, fy, align).gradient_filter(with_source=gn).result_image)
    dx = run_by_label(graph, {'x': x, 'g': g})
    assert_close(dx, _ref(mode, g, fx, fy, align), "reduction", k=4 * fx * fy)
    np.testing.assert_array_equal(run_by_label(graph, {'x': x, 'g': g}), dx)


@pytest.mark.parametrize("mode,align", MODES, ids=["nearest", "bilinear", "bilinear-aligned"])
def test_upsampling_gradient_constructor(mode, align, device, rng):
    x = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    g = rng.standard_normal((2, 9, 10, 6)).astype(np.float32)
    xn, gn = _xg()
    fwd = _forward(mode, xn, 2, 3, align)
    cls = mpsnn.MPSCNNUpsamplingNearestGradientNode if mode == 'nearest' else mpsnn.MPSCNNUpsamplingBilinearGradientNode
    hand = cls(source_gradient=gn, source_image=xn, gradient_state=fwd.result_state, scale_factor_x=2.0,
               scale_factor_y=3)
    if mode == 'bilinear':
        assert hand.align_corners == align                 # from the forward node, through the state
    auto = fwd.gradient_filter(with_source=gn)
    a, b = run_by_label(labelled_graph(device, [hand.result_image, auto.result_image]), {'x': x, 'g': g})
    np.testing.assert_array_equal(a, b)
    assert_close(a, _ref(mode, g, 2, 3, align), "reduction", k=24)


def test_upsampling_gradient_errors(device, rng):
    x = rng.standard_normal((1, 3, 4, 2)).astype(np.float32)
    xn, gn = _xg()
    fwd = _forward('bilinear', xn, 2, 2, False)
    grad = fwd.gradient_filter(with_source=gn)
    grad.label = "up.grad"
    with pytest.raises(mpsnn.ShapeError, match=r"'up\.grad'\] source gradient is 7x6x2.*8x6x2"):
        run_by_label(labelled_graph(device, grad.result_image), {'x': x, 'g': np.zeros((1, 6, 7, 2), np.float32)})
    other = mpsnn.MPSCNNUpsamplingBilinearGradientNode(source_gradient=gn, source_image=xn,
                                                       gradient_state=fwd.result_state, scale_factor_x=3,
                                                       scale_factor_y=2)
    other.label = "mismatch"
    with pytest.raises(mpsnn.ShapeError, match=r"'mismatch'\] scale factors 3x2.*differ"):
        run_by_label(labelled_graph(device, other.result_image), {'x': x, 'g': np.zeros((1, 6, 8, 2), np.float32)})
    with pytest.raises(mpsnn.ShapeError, match="integer"):
        mpsnn.MPSCNNUpsamplingNearestGradientNode(source_gradient=gn, source_image=xn, gradient_state=fwd.result_state,
                                                  scale_factor_x=1.5, scale_factor_y=2)
    nearest = mpsnn.MPSCNNUpsamplingNearestGradientNode(source_gradient=gn, source_image=xn,
                                                        gradient_state=fwd.result_state, scale_factor_x=2,
                                                        scale_factor_y=2)
    nearest.label = "mode"
    with pytest.raises(mpsnn.MPSGraphError, match=r"'mode'\] is the gradient of another upsampling mode"):
        run_by_label(labelled_graph(device, nearest.result_image), {'x': x, 'g': np.zeros((1, 6, 8, 2), np.float32)})
    with pytest.raises(NotImplementedError):
        grad.gradient_filter(with_source=gn)


@pytest.mark.parametrize("mode,align", MODES, ids=["nearest", "bilinear", "bilinear-aligned"])
def test_upsampling_gradient_vs_torch(mode, align, device, rng):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    x = rng.standard_normal((2, 5, 4, 3)).astype(np.float32)
    g = rng.standard_normal((2, 10, 12, 3)).astype(np.float32)
    xn, gn = _xg()
    dx = run_by_label(labelled_graph(device, _forward(mode, xn, 3, 2, align).gradient_filter(with_source=gn).result_image),
                      {'x': x, 'g': g})
    t = to_t(x).clone().requires_grad_(True)
    kw = {} if mode == 'nearest' else {'align_corners': align}
    F.interpolate(t, scale_factor=(2, 3), mode=mode, **kw).backward(to_t(g))
    assert torch.is_tensor(t.grad)
    assert_close(dx, from_t(t.grad), "reduction", k=24)
