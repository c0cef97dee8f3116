"""Gradient tests of the pooling nodes (nodes.md §5.2-5.6): max, average, L2-norm and dilated max pooling
gradients over padding methods, strides, edge modes, zero-pad sizes and excludeEdges against the float64
oracles, built by gradient_filter and by the constructors, next to the forward result in one graph, with
an exported gradient state, in batches, and cross-checked with PyTorch autograd."""

from __future__ import annotations

import numpy as np
import pytest

import mpsnn
import reference as R
from conftest import assert_close

from ._common import (REPRESENTATIVE_METHODS, Handle, encode_with_states, from_t, geometry_or_none, inputs_by_label,
                      labelled_graph, method_id, run_by_label, set_padding, to_t, torch_pad)
from .test_pooling import EDGE, NODES, PoolCase

# the gradient classes are looked up when a test runs (a missing class fails that test, not collection)
GRAD = {
    'max': 'MPSCNNPoolingMaxGradientNode',
    'average': 'MPSCNNPoolingAverageGradientNode',
    'l2': 'MPSCNNPoolingL2NormGradientNode',
    'dilated': 'MPSCNNDilatedPoolingMaxGradientNode',
}


def _cls(name):
    return getattr(mpsnn, name)


CASES = [
    PoolCase(2, 7, 9, 3, 3, 2, 2, 1),      # overlapping windows (stride < kernel)
    PoolCase(3, 5, 7, 5, 2, 3, 3, 4),      # stride > kernel: pixels no window reads
    PoolCase(2, 9, 8, 6, 3, 2, 3, 2),      # stride = kernel
    PoolCase(1, 6, 5, 1, 4, 3, 2, 3),
    PoolCase(2, 5, 9, 7, 1, 1, 2, 1),      # 1x1 windows
]

DILATED = [
    (PoolCase(2, 9, 7, 5, 3, 2, 2, 1), (2, 3)),
    (PoolCase(1, 8, 8, 3, 2, 2, 1, 1), (3, 3)),
]


def _forward(mode, src, case, method=None, edge=None, dil=(1, 1), zero_pad=None):
    """The forward pooling node on `src`, configured before the graph is built (the gradient takes its
    geometry from it)."""
    if mode == 'dilated':
        node = mpsnn.MPSCNNDilatedPoolingMaxNode(source=src, kernel_width=case.kw, kernel_height=case.kh,
                                                 stride_in_pixels_x=case.sx, stride_in_pixels_y=case.sy,
                                                 dilation_rate_x=dil[1], dilation_rate_y=dil[0])
    else:
        node = NODES[mode](source=src, kernel_width=case.kw, kernel_height=case.kh, stride_in_pixels_x=case.sx,
                           stride_in_pixels_y=case.sy)
    if method is not None:
        set_padding(node, method)
    if edge is not None:
        node.edge_mode = EDGE[edge]
    if zero_pad is not None:
        node.zero_pad_size_y, node.zero_pad_size_x = zero_pad
    return node


def _build(mode, case, how='filter', **forward):
    """x, g input nodes (handles 'x', 'g'), the forward node and its gradient node, made by
    gradient_filter ('filter') or by the gradient node's constructor ('init', 'init+policy')."""
    x = mpsnn.MPSNNImageNode(handle=Handle('x'))
    gsrc = mpsnn.MPSNNImageNode(handle=Handle('g'))
    pool = _forward(mode, x, case, **forward)
    if how == 'filter':
        grad = pool.gradient_filter(with_source=gsrc)
    else:
        kw = dict(source_gradient=gsrc, source_image=x, gradient_state=pool.result_state, kernel_width=case.kw,
                  kernel_height=case.kh, stride_in_pixels_x=case.sx, stride_in_pixels_y=case.sy)
        if mode == 'dilated':
            dil = forward.get('dil', (1, 1))
            kw.update(dilation_rate_x=dil[1], dilation_rate_y=dil[0])
        if how == 'init+policy':
            kw['padding_policy'] = pool.padding_policy
        grad = _cls(GRAD[mode])(**kw)
    return x, gsrc, pool, grad


def _reference(mode, x, g, case, method, edge=None, dil=(1, 1), **extra):
    geo = R.window_geometry((case.h, case.w), (case.kh, case.kw), (case.sy, case.sx), dil, method)
    ref_mode = 'max' if mode == 'dilated' else mode
    return R.pool2d_gradient(x, g, ref_mode, (case.kh, case.kw), (case.sy, case.sx), geo['pad'], geo['out_hw'],
                             dil, edge or 'clamp', **extra)


def _data(rng, case, method, dil=(1, 1)):
    """x and a source gradient g of the forward result's shape (float32 values, float64 arrays)."""
    geo = R.window_geometry((case.h, case.w), (case.kh, case.kw), (case.sy, case.sx), dil, method)
    x = rng.standard_normal((case.n, case.h, case.w, case.c)).astype(np.float32)
    g = rng.standard_normal((case.n,) + geo['out_hw'] + (case.c,)).astype(np.float32)
    return x, g


def _run(grad, x, g, device, fuse=True):
    graph = labelled_graph(device, grad.result_image, fuse)
    return run_by_label(graph, {'x': x, 'g': g})


def _params(edges, methods, cases=CASES):
    out = []
    for c in cases:
        for m in methods:
            if geometry_or_none((c.h, c.w), (c.kh, c.kw), (c.sy, c.sx), (1, 1), m) is None:
                continue
            for mode in NODES:
                for e in edges:
                    out.append(pytest.param(c, m, mode, e, id=f"{mode}-{e}-{c}-{method_id(m)}"))
    return out


def _k(case):
    return case.kh * case.kw


# --------------------------------------------------------------------------------------------
# every mode x padding method x edge mode, fused and unfused

@pytest.mark.parametrize("case,method,mode,edge", _params(['clamp', 'zero'], REPRESENTATIVE_METHODS))
def test_pooling_gradient(case, method, mode, edge, device, rng):
    x, g = _data(rng, case, method)
    ref = _reference(mode, x, g, case, method, edge)
    for fuse in (True, False):
        xn, gn, pool, grad = _build(mode, case, method=method, edge=edge)
        dx = _run(grad, x, g, device, fuse)
        assert dx.shape == x.shape
        assert_close(dx, ref, "reduction", k=_k(case))


def test_pooling_gradient_default_geometry(device, rng):
    """Without a padding policy or edge mode: sizeSame and clamp, as the forward."""
    case = CASES[0]
    for mode in NODES:
        x, g = _data(rng, case, R.SIZE_SAME)
        xn, gn, pool, grad = _build(mode, case)
        assert_close(_run(grad, x, g, device), _reference(mode, x, g, case, R.SIZE_SAME), "reduction", k=_k(case))


def test_pooling_gradient_uncovered_pixels_are_zero(device, rng):
    """Destination pixels no forward window read receive 0 (the result is poisoned with NaN first)."""
    case = PoolCase(2, 7, 8, 3, 2, 2, 5, 4)
    for mode in NODES:
        x, g = _data(rng, case, R.SIZE_VALID_ONLY)
        xn, gn, pool, grad = _build(mode, case, method=R.SIZE_VALID_ONLY)
        dx = _run(grad, x, g, device)
        covered = np.zeros((7, 8), bool)
        covered[np.ix_([0, 1, 5, 6], [0, 1, 4, 5])] = True
        assert np.all(dx[:, ~covered] == 0)
        assert_close(dx, _reference(mode, x, g, case, R.SIZE_VALID_ONLY), "reduction", k=4)


# --------------------------------------------------------------------------------------------
# average pooling: zero pad sizes, excludeEdges, TensorFlow padding

@pytest.mark.parametrize("zy,zx", [(0, 0), (1, 0), (1, 1), (0, 2)], ids=str)
@pytest.mark.parametrize("method", [R.SIZE_SAME, R.SIZE_FULL, R.SIZE_SAME | R.ADD_REMAINDER_TO_BOTTOM_RIGHT,
                                    R.SIZE_FULL | R.ALIGN_TOP_LEFT], ids=method_id)
def test_average_pooling_gradient_zero_pad_size(zy, zx, method, device, rng):
    case = PoolCase(2, 7, 6, 5, 3, 4, 2, 1)
    x, g = _data(rng, case, method)
    ref = _reference('average', x, g, case, method, 'clamp', zero_pad_hw=(zy, zx))
    for fuse in (True, False):
        xn, gn, pool, grad = _build('average', case, method=method, zero_pad=(zy, zx))
        assert_close(_run(grad, x, g, device, fuse), ref, "reduction", k=12)


@pytest.mark.parametrize("method", [R.SIZE_SAME, R.SIZE_FULL, R.SIZE_SAME | R.ADD_REMAINDER_TO_BOTTOM_RIGHT,
                                    R.SIZE_FULL | R.ALIGN_TOP_LEFT, R.SIZE_VALID_ONLY], ids=method_id)
@pytest.mark.parametrize("edge", ['clamp', 'zero'])
def test_average_pooling_gradient_exclude_edges(method, edge, device, rng):
    case = PoolCase(2, 7, 8, 3, 3, 3, 2, 3)
    x, g = _data(rng, case, method)
    geo = R.window_geometry((case.h, case.w), (case.kh, case.kw), (case.sy, case.sx), (1, 1), method)
    ref = _reference('average', x, g, case, method, edge, exclude_edges=True, pad_after=geo['pad_after'])
    xn, gn, pool, grad = _build('average', case, method=method | R.EXCLUDE_EDGES, edge=edge)
    assert_close(_run(grad, x, g, device), ref, "reduction", k=9)


@pytest.mark.parametrize("valid_only", [False, True], ids=["same", "valid"])
def test_average_pooling_gradient_tensorflow_padding(valid_only, device, rng):
    """The TensorFlow policies switch the forward kernel to clamp; the gradient follows the forward."""
    case = PoolCase(2, 7, 8, 5, 2, 3, 2, 2)
    pol = (mpsnn.MPSNNDefaultPadding.padding_for_tensorflow_average_pooling_valid_only() if valid_only
           else mpsnn.MPSNNDefaultPadding.padding_for_tensorflow_average_pooling())
    method = R.SIZE_VALID_ONLY if valid_only else R.TENSORFLOW_SAME
    x, g = _data(rng, case, method)
    xn, gn, pool, grad = _build('average', case, edge='zero')
    pool.padding_policy = pol          # after gradient_filter: the state carries the geometry at encode time
    assert_close(_run(grad, x, g, device), _reference('average', x, g, case, method, 'clamp'), "reduction", k=6)


# --------------------------------------------------------------------------------------------
# dilated max pooling

def _dilated_params():
    out = []
    for c, d in DILATED:
        for m in REPRESENTATIVE_METHODS[::2] + (R.SIZE_SAME, R.SIZE_FULL | R.ALIGN_BOTTOM_RIGHT):
            if geometry_or_none((c.h, c.w), (c.kh, c.kw), (c.sy, c.sx), d, m) is None:
                continue
            for e in ('clamp', 'zero'):
                out.append(pytest.param(c, d, m, e, id=f"{e}-{c}-d{d[0]}{d[1]}-{method_id(m)}"))
    return out


@pytest.mark.parametrize("case,dil,method,edge", _dilated_params())
def test_dilated_max_pooling_gradient(case, dil, method, edge, device, rng):
    x, g = _data(rng, case, method, dil)
    ref = _reference('dilated', x, g, case, method, edge, dil)
    for fuse in (True, False):
        xn, gn, pool, grad = _build('dilated', case, method=method, edge=edge, dil=dil)
        assert_close(_run(grad, x, g, device, fuse), ref, "reduction", k=_k(case))


# --------------------------------------------------------------------------------------------
# ties: the first maximal tap in row-major order wins (nodes.md §5.3 chosen definition)

@pytest.mark.parametrize("mode", ['max', 'dilated'])
@pytest.mark.parametrize("edge", ['clamp', 'zero'])
def test_max_pooling_gradient_ties(mode, edge, device, rng):
    case = PoolCase(2, 7, 9, 3, 3, 2, 2, 1)
    dil = (2, 3) if mode == 'dilated' else (1, 1)
    method = R.SIZE_SAME | R.ADD_REMAINDER_TO_BOTTOM_RIGHT
    _, g = _data(rng, case, method, dil)
    for x in (np.full((2, 7, 9, 3), 0.5, np.float32), np.zeros((2, 7, 9, 3), np.float32),
              rng.integers(-1, 2, (2, 7, 9, 3)).astype(np.float32)):
        xn, gn, pool, grad = _build(mode, case, method=method, edge=edge, dil=dil)
        ref = _reference(mode, x, g, case, method, edge, dil)
        assert_close(_run(grad, x, g, device), ref, "reduction", k=_k(case))


# --------------------------------------------------------------------------------------------
# node construction, classes, properties

@pytest.mark.parametrize("mode", list(GRAD))
def test_pooling_gradient_constructor_equals_gradient_filter(mode, device, rng):
    case = PoolCase(2, 7, 9, 3, 3, 2, 2, 1)
    dil = (2, 2) if mode == 'dilated' else (1, 1)
    method = R.SIZE_FULL | R.ADD_REMAINDER_TO_BOTTOM_RIGHT
    x, g = _data(rng, case, method, dil)
    results = {}
    for how in ('filter', 'init', 'init+policy'):
        xn, gn, pool, grad = _build(mode, case, how, method=method, edge='zero', dil=dil)
        results[how] = _run(grad, x, g, device)
    assert_close(results['filter'], _reference(mode, x, g, case, method, 'zero', dil), "reduction", k=_k(case))
    np.testing.assert_array_equal(results['init'], results['filter'])
    np.testing.assert_array_equal(results['init+policy'], results['filter'])


@pytest.mark.parametrize("mode", list(GRAD))
def test_pooling_gradient_classes_and_properties(mode):
    case = PoolCase(1, 5, 5, 1, 3, 2, 2, 1)
    dil = (3, 2) if mode == 'dilated' else (1, 1)
    for how in ('filter', 'init'):
        xn, gn, pool, grad = _build(mode, case, how, dil=dil)
        cls = _cls(GRAD[mode])
        assert type(grad) is cls
        assert isinstance(grad, mpsnn.MPSCNNPoolingGradientNode)
        assert isinstance(grad, mpsnn.MPSNNGradientFilterNode)
        assert isinstance(grad, mpsnn.MPSNNFilterNode)
        assert not isinstance(grad, mpsnn.MPSCNNPoolingNode)
        assert (grad.kernel_width, grad.kernel_height, grad.stride_in_pixels_x, grad.stride_in_pixels_y) == (2, 3, 1, 2)
        if mode == 'dilated':
            assert (grad.dilation_rate_x, grad.dilation_rate_y) == (2, 3)
        for prop in ('kernel_width', 'stride_in_pixels_y'):
            with pytest.raises(AttributeError):
                setattr(grad, prop, 4)
        assert grad.result_image is not None and grad.result_image.parent is grad
    for name in GRAD.values():
        assert issubclass(_cls(name), mpsnn.MPSCNNPoolingGradientNode)
    assert issubclass(mpsnn.MPSCNNPoolingGradientNode, mpsnn.MPSNNGradientFilterNode)
    assert issubclass(mpsnn.MPSNNGradientFilterNode, mpsnn.MPSNNFilterNode)


@pytest.mark.parametrize("mode", list(GRAD))
def test_gradient_of_pooling_gradient_is_not_implemented(mode):
    xn, gn, pool, grad = _build(mode, PoolCase(1, 5, 5, 1, 2, 2, 2, 2), dil=(2, 2))
    other = mpsnn.MPSNNImageNode()
    with pytest.raises(NotImplementedError):
        grad.gradient_filter(with_source=other)
    with pytest.raises(NotImplementedError):
        grad.gradient_filter(with_sources=[other])
    with pytest.raises(NotImplementedError):
        grad.gradient_filters(with_source=other)
    with pytest.raises(NotImplementedError):
        grad.gradient_filters(with_sources=[other])


@pytest.mark.parametrize("mode", list(GRAD))
def test_pooling_gradient_wrong_gradient_shape_names_node(mode, device, rng):
    case = PoolCase(2, 7, 9, 3, 3, 2, 2, 1)
    dil = (2, 2) if mode == 'dilated' else (1, 1)
    x, g = _data(rng, case, R.SIZE_SAME, dil)
    xn, gn, pool, grad = _build(mode, case, dil=dil)
    grad.label = "pool1.grad"
    graph = labelled_graph(device, grad.result_image)
    for bad in (g[:, :-1], g[:, :, 1:], g[..., :2], np.concatenate([g, g], axis=3)):
        with pytest.raises(mpsnn.ShapeError, match=r"'pool1\.grad'"):
            run_by_label(graph, {'x': x, 'g': bad})
    run_by_label(graph, {'x': x, 'g': g})          # the right shape still runs


# --------------------------------------------------------------------------------------------
# graph plumbing: forward and gradient together, exported state, batches

@pytest.mark.parametrize("mode", list(GRAD))
def test_forward_and_gradient_in_one_graph(mode, device, rng):
    case = PoolCase(2, 7, 9, 3, 3, 2, 2, 1)
    dil = (2, 2) if mode == 'dilated' else (1, 1)
    method = R.SIZE_SAME | R.ADD_REMAINDER_TO_TOP_RIGHT
    x, g = _data(rng, case, method, dil)
    geo = R.window_geometry((case.h, case.w), (case.kh, case.kw), (case.sy, case.sx), dil, method)
    ref_mode = 'max' if mode == 'dilated' else mode
    y_ref = R.pool2d(x, ref_mode, (case.kh, case.kw), (case.sy, case.sx), geo['pad'], geo['out_hw'], dil)
    for fuse in (True, False):
        xn, gn, pool, grad = _build(mode, case, method=method, dil=dil)
        graph = labelled_graph(device, [pool.result_image, grad.result_image], fuse)
        y, dx = run_by_label(graph, {'x': x, 'g': g})
        assert_close(y, y_ref, "exact" if ref_mode == 'max' else "reduction", k=_k(case))
        assert_close(dx, _reference(mode, x, g, case, method, None, dil), "reduction", k=_k(case))


@pytest.mark.parametrize("mode", list(GRAD))
def test_exported_gradient_state(mode, device, rng):
    """export_from_graph on the forward node's result state delivers an MPSState in destination_states."""
    case = PoolCase(2, 5, 7, 3, 2, 2, 2, 2)
    dil = (2, 2) if mode == 'dilated' else (1, 1)
    x, g = _data(rng, case, R.SIZE_SAME, dil)
    xn, gn, pool, grad = _build(mode, case, dil=dil)
    pool.result_state.export_from_graph = True
    pool.result_state.handle = Handle('pool-state')
    graph = labelled_graph(device, grad.result_image)
    assert [h.label() for h in graph.result_state_handles] == ['pool-state']
    out, states = encode_with_states(device, graph, inputs_by_label(graph, {'x': x, 'g': g}))
    assert len(states) == 1 and isinstance(states[0], mpsnn.MPSState)
    assert_close(out.numpy(), _reference(mode, x, g, case, R.SIZE_SAME, None, dil), "reduction", k=4)
    # without the export flag nothing is appended
    xn, gn, pool, grad = _build(mode, case, dil=dil)
    graph = labelled_graph(device, grad.result_image)
    assert graph.result_state_handles == []
    cb = device.make_command_queue().make_command_buffer()
    states = []
    graph.encode(cb, [mpsnn.MPSImage.from_numpy(a) for a in inputs_by_label(graph, {'x': x, 'g': g})],
                 destination_states=states)
    cb.commit()
    cb.wait_until_completed()
    assert states == []


@pytest.mark.parametrize("mode", list(GRAD))
def test_pooling_gradient_encode_batch(mode, device, rng):
    case = PoolCase(3, 7, 6, 5, 3, 3, 2, 2)
    dil = (2, 1) if mode == 'dilated' else (1, 1)
    method = R.SIZE_FULL
    x, g = _data(rng, case, method, dil)
    xn, gn, pool, grad = _build(mode, case, method=method, edge='zero', dil=dil)
    graph = labelled_graph(device, grad.result_image)
    per_label = {'x': x, 'g': g}
    batches = [[mpsnn.MPSImage.from_numpy(np.ascontiguousarray(per_label[h.label()][i:i + 1]))
                for i in range(case.n)] for h in graph.source_image_handles]
    cb = device.make_command_queue().make_command_buffer()
    out = graph.encode_batch(cb, batches)
    cb.commit()
    cb.wait_until_completed()
    assert len(out) == case.n
    ref = _reference(mode, x, g, case, method, 'zero', dil)
    for i, o in enumerate(out):
        assert_close(o.numpy(), ref[i:i + 1], "reduction", k=_k(case))


def test_pooling_gradient_after_convolution(device, rng):
    """The forward source is an intermediate (a convolution result); fusion does not change the gradient."""
    from conftest import conv_source
    ds, w, b = conv_source(3, 5, 3, 3, rng)
    x = rng.standard_normal((2, 7, 8, 3)).astype(np.float32)
    h = R.conv2d(x, w, b)
    case = PoolCase(2, 7, 8, 5, 3, 3, 2, 2)
    g = rng.standard_normal((2, 4, 4, 5)).astype(np.float32)
    for mode in NODES:
        for fuse in (True, False):
            xn = mpsnn.MPSNNImageNode(handle=Handle('x'))
            gn = mpsnn.MPSNNImageNode(handle=Handle('g'))
            conv = mpsnn.MPSCNNConvolutionNode(source=xn, weights=ds)
            pool = _forward(mode, conv.result_image, case)
            grad = pool.gradient_filter(with_source=gn)
            dh = run_by_label(labelled_graph(device, grad.result_image, fuse), {'x': x, 'g': g})
            assert_close(dh, _reference(mode, h, g, case, R.SIZE_SAME), "reduction", k=27)


# --------------------------------------------------------------------------------------------
# PyTorch cross-checks (autograd)

def _torch_grad(fn, x, g):
    """dX of <g, fn(x)> by PyTorch autograd (NCHW float64), NHWC in and out."""
    xt = to_t(x).clone().requires_grad_(True)
    fn(xt).backward(to_t(g))
    return from_t(xt.grad)


@pytest.mark.parametrize("method", [R.SIZE_SAME, R.SIZE_SAME | R.ADD_REMAINDER_TO_BOTTOM_RIGHT, R.SIZE_FULL,
                                    R.SIZE_VALID_ONLY | R.ALIGN_BOTTOM_RIGHT], ids=method_id)
@pytest.mark.parametrize("dil", [(1, 1), (2, 3)], ids=str)
def test_max_pooling_gradient_vs_torch(method, dil, device, rng):
    pytest.importorskip("torch")
    import torch.nn.functional as F
    case = PoolCase(2, 9, 10, 5, 3, 2, 2, 3)
    x, g = _data(rng, case, method, dil)
    mode = 'max' if dil == (1, 1) else 'dilated'
    pads = R.window_geometry((case.h, case.w), (case.kh, case.kw), (case.sy, case.sx), dil, method)['pads']
    k, s = (case.kh, case.kw), (case.sy, case.sx)
    for edge in ('clamp', 'zero'):
        xn, gn, pool, grad = _build(mode, case, method=method, edge=edge, dil=dil)
        dx = _run(grad, x, g, device)
        if edge == 'zero':
            ref = _torch_grad(lambda t: F.max_pool2d(torch_pad(t, *pads), k, s, dilation=dil), x, g)
        else:   # -inf padding = max over T_in, where every window has an in-image tap (checked)
            ninf = lambda t: F.max_pool2d(torch_pad(t, *pads, value=-float('inf')), k, s, dilation=dil)  # noqa: E731
            assert np.isfinite(from_t(ninf(to_t(x)))).all()
            ref = _torch_grad(ninf, x, g)
        assert_close(dx, ref, "reduction", k=_k(case))


@pytest.mark.parametrize("k,s", [(3, 1), (3, 2), (5, 2), (5, 1)], ids=str)
def test_average_pooling_gradient_vs_torch(k, s, device, rng):
    """Symmetric padding: zero edge / clamp with z = P = count_include_pad=True, clamp = False."""
    pytest.importorskip("torch")
    import torch.nn.functional as F
    case = PoolCase(2, 9, 7, 6, k, k, s, s)
    geo = R.window_geometry((9, 7), (k, k), (s, s), (1, 1), R.SIZE_SAME)
    py, pya, px, pxa = geo['pads']
    assert py == pya and px == pxa
    x, g = _data(rng, case, R.SIZE_SAME)
    for edge, zero_pad, include in (('zero', None, True), ('clamp', None, False), ('clamp', (py, px), True)):
        xn, gn, pool, grad = _build('average', case, method=R.SIZE_SAME, edge=edge, zero_pad=zero_pad)
        ref = _torch_grad(lambda t: F.avg_pool2d(t, k, s, padding=(py, px), count_include_pad=include), x, g)
        assert_close(_run(grad, x, g, device), ref, "reduction", k=k * k)


def test_l2_pooling_gradient_vs_torch(device, rng):
    pytest.importorskip("torch")
    import torch.nn.functional as F
    for case in (PoolCase(2, 9, 8, 5, 3, 2, 2, 2), PoolCase(1, 7, 9, 3, 2, 3, 1, 3)):
        x, g = _data(rng, case, R.SIZE_VALID_ONLY)
        xn, gn, pool, grad = _build('l2', case, method=R.SIZE_VALID_ONLY)
        ref = _torch_grad(lambda t: F.lp_pool2d(t, 2, (case.kh, case.kw), (case.sy, case.sx)), x, g)
        assert_close(_run(grad, x, g, device), ref, "reduction", k=_k(case))
