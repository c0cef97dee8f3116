"""Gradient tests of the neuron nodes (nodes.md §6.2-6.3): MPSCNNNeuronGradientNode for every neuron type,
made by gradient_filter and by its constructor, against the float64 oracle R.neuron_gradient; PReLU
slopes, chains and neurons after a convolution (fused or not), forward and gradient in one graph, an
exported state, batches, IEEE edge cases, errors and PyTorch autograd cross-checks."""

from __future__ import annotations

import numpy as np
import pytest

import mpsnn
import reference as R
from conftest import assert_close, conv_source

from ._common import Handle, encode_with_states, inputs_by_label, labelled_graph, run_by_label
from .test_neuron import NEURONS, SHAPES, T, _ids, _input


def _grad_cls():
    # looked up when a test runs: a missing class fails that test, not the collection
    return mpsnn.MPSCNNNeuronGradientNode


def _kinks(name, kwargs):
    return R.neuron_kinks(name, kwargs.get("a"), kwargs.get("b"))


def _grad_input(rng, shape, name, kwargs, domain):
    x = _input(rng, shape, domain).astype(np.float64)
    for k in _kinks(name, kwargs):
        x[np.abs(x - k) < 1e-2] = k + 0.37
    return x.astype(np.float32)


def _ref(name, x, g, kwargs, data=None):
    return R.neuron_gradient(name, x, g, kwargs.get("a"), kwargs.get("b"), kwargs.get("c"), data)


def _build(make_forward, how='filter', descriptor=None):
    """x, g input nodes (handles 'x', 'g'), the forward neuron node make_forward(x) and its gradient node,
    by gradient_filter ('filter') or by MPSCNNNeuronGradientNode(...) ('init', with `descriptor` or the
    forward node's)."""
    xn = mpsnn.MPSNNImageNode(handle=Handle('x'))
    gn = mpsnn.MPSNNImageNode(handle=Handle('g'))
    node = make_forward(xn)
    if how == 'filter':
        grad = node.gradient_filter(with_source=gn)
    else:
        grad = _grad_cls()(source_gradient=gn, source_image=xn, gradient_state=node.result_state,
                           descriptor=node.descriptor if descriptor is None else descriptor)
    return xn, gn, node, grad


def _run(grad, x, g, device, fuse=True):
    return run_by_label(labelled_graph(device, grad.result_image, fuse), {'x': x, 'g': g})


def _desc(name, kwargs):
    return mpsnn.MPSNNNeuronDescriptor.cnn_neuron_descriptor(T(R.NEURON_TYPE_CODES[name]), kwargs.get("a"),
                                                              kwargs.get("b"), kwargs.get("c"))


# --------------------------------------------------------------------------------------------
# every neuron type

@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("nid,cls,name,kwargs,domain", NEURONS, ids=_ids)
def test_neuron_gradient(nid, cls, name, kwargs, domain, shape, device, rng):
    x = _grad_input(rng, shape, name, kwargs, domain)
    g = rng.standard_normal(shape).astype(np.float32)
    ref = _ref(name, x, g, kwargs)
    for fuse in (True, False):
        xn, gn, node, grad = _build(lambda s: getattr(mpsnn, cls)(s, **kwargs))
        dx = _run(grad, x, g, device, fuse)
        assert dx.shape == x.shape
        assert_close(dx, ref, "elementwise")


@pytest.mark.parametrize("nid,cls,name,kwargs,domain", NEURONS, ids=_ids)
def test_neuron_gradient_constructor_equals_gradient_filter(nid, cls, name, kwargs, domain, device, rng):
    """MPSCNNNeuronGradientNode(...) with the forward node's descriptor or an equal new one, and the
    gradient of MPSCNNNeuronNode.node(descriptor), all give gradient_filter's result."""
    x = _grad_input(rng, (2, 4, 3, 5), name, kwargs, domain)
    g = rng.standard_normal(x.shape).astype(np.float32)
    make = lambda s: getattr(mpsnn, cls)(s, **kwargs)          # noqa: E731
    base = _run(_build(make)[3], x, g, device)
    assert_close(base, _ref(name, x, g, kwargs), "elementwise")
    np.testing.assert_array_equal(_run(_build(make, 'init')[3], x, g, device), base)
    np.testing.assert_array_equal(_run(_build(make, 'init', _desc(name, kwargs))[3], x, g, device), base)
    by_desc = lambda s: mpsnn.MPSCNNNeuronNode.node(s, _desc(name, kwargs))     # noqa: E731
    np.testing.assert_array_equal(_run(_build(by_desc)[3], x, g, device), base)


@pytest.mark.parametrize("nid,cls,name,kwargs,domain", NEURONS, ids=_ids)
def test_neuron_gradient_node_class_and_descriptor(nid, cls, name, kwargs, domain):
    da, db, dc = R.NEURON_DEFAULTS[name]
    expect = [kwargs.get("a", da), kwargs.get("b", db), kwargs.get("c", dc)]
    for how in ('filter', 'init'):
        xn, gn, node, grad = _build(lambda s: getattr(mpsnn, cls)(s, **kwargs), how)
        assert type(grad) is _grad_cls()                 # one class for every neuron type
        assert isinstance(grad, mpsnn.MPSNNGradientFilterNode) and isinstance(grad, mpsnn.MPSNNFilterNode)
        assert not isinstance(grad, mpsnn.MPSCNNNeuronNode)
        d = grad.descriptor
        assert isinstance(d, mpsnn.MPSNNNeuronDescriptor)
        assert d.neuron_type == T(R.NEURON_TYPE_CODES[name])
        assert [d.a, d.b, d.c] == pytest.approx(expect, rel=1e-7)
        with pytest.raises(AttributeError):
            grad.descriptor = _desc(name, kwargs)
        assert grad.result_image.parent is grad
    assert issubclass(_grad_cls(), mpsnn.MPSNNGradientFilterNode)


def test_gradient_of_neuron_gradient_is_not_implemented():
    xn, gn, node, grad = _build(lambda s: mpsnn.MPSCNNNeuronTanHNode(s))
    other = mpsnn.MPSNNImageNode()
    for call in (lambda: grad.gradient_filter(with_source=other), lambda: grad.gradient_filter(with_sources=[other]),
                 lambda: grad.gradient_filters(with_source=other), lambda: grad.gradient_filters(with_sources=[other])):
        with pytest.raises(NotImplementedError):
            call()


def test_neuron_none_gradient_is_identity(device, rng):
    x = rng.standard_normal((2, 3, 5, 7)).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    desc = mpsnn.MPSNNNeuronDescriptor.cnn_neuron_descriptor(T.none)
    for how in ('filter', 'init'):
        xn, gn, node, grad = _build(lambda s: mpsnn.MPSCNNNeuronNode.node(s, desc), how)
        np.testing.assert_array_equal(_run(grad, x, g, device), g)


# --------------------------------------------------------------------------------------------
# PReLU

@pytest.mark.parametrize("c,n_slopes", [(1, 1), (3, 3), (5, 1), (7, 9), (4, 4), (13, 13)], ids=str)
def test_prelu_gradient(c, n_slopes, device, rng):
    x = _grad_input(rng, (2, 3, 5, c), 'prelu', {}, 'any')
    g = rng.standard_normal(x.shape).astype(np.float32)
    slopes = rng.uniform(0.05, 0.9, n_slopes).astype(np.float32)
    ref = R.neuron_gradient('prelu', x, g, data=slopes)
    for fuse in (True, False):
        xn, gn, node, grad = _build(lambda s: mpsnn.MPSCNNNeuronPReLUNode(s, a_data=slopes.tolist()))
        assert_close(_run(grad, x, g, device, fuse), ref, "elementwise")
    assert grad.descriptor.neuron_type == T.pReLU
    assert_close(np.array(grad.descriptor.data), slopes, "exact")
    desc = mpsnn.MPSNNNeuronDescriptor.cnn_neuron_prelu_descriptor(slopes.tolist())
    xn, gn, node, grad = _build(lambda s: mpsnn.MPSCNNNeuronNode.node(s, desc), 'init', desc)
    assert_close(_run(grad, x, g, device), ref, "elementwise")


def test_prelu_gradient_too_few_slopes(device, rng):
    x = rng.standard_normal((1, 3, 3, 4)).astype(np.float32)
    for how in ('filter', 'init'):
        xn, gn, node, grad = _build(lambda s: mpsnn.MPSCNNNeuronPReLUNode(s, a_data=[0.1, 0.2]), how)
        with pytest.raises(mpsnn.ShapeError, match=r"PReLU has 2 slope\(s\) for 4 feature channels"):
            _run(grad, x, x, device)


# --------------------------------------------------------------------------------------------
# graphs: chains, after a convolution, forward + gradient, exported state, batches

def test_neuron_gradient_chain(device, rng):
    """relu -> tanh forward, tanh' then relu' backward (relu's gradient reads x, tanh's reads relu's
    result); fusing the forward neurons must keep the intermediate the gradient needs."""
    x = _grad_input(rng, (2, 5, 4, 6), 'relu', {}, 'any')
    g = rng.standard_normal(x.shape).astype(np.float32)
    h = R.neuron(x, 'relu', 0.2)
    ref = R.neuron_gradient('relu', x, R.neuron_gradient('tanh', h, g, 2.0, 0.5), 0.2)
    y_ref = R.neuron(h, 'tanh', 2.0, 0.5)
    for fuse in (True, False):
        xn = mpsnn.MPSNNImageNode(handle=Handle('x'))
        gn = mpsnn.MPSNNImageNode(handle=Handle('g'))
        relu = mpsnn.MPSCNNNeuronReLUNode(xn, a=0.2)
        tanh = mpsnn.MPSCNNNeuronTanHNode(relu.result_image, a=2.0, b=0.5)
        d_tanh = tanh.gradient_filter(with_source=gn)
        d_relu = relu.gradient_filter(with_source=d_tanh.result_image)
        assert_close(run_by_label(labelled_graph(device, d_relu.result_image, fuse), {'x': x, 'g': g}), ref,
                     "elementwise")
        y, dx = run_by_label(labelled_graph(device, [tanh.result_image, d_relu.result_image], fuse),
                             {'x': x, 'g': g})
        assert_close(y, y_ref, "elementwise")
        assert_close(dx, ref, "elementwise")


@pytest.mark.parametrize("nid,cls,name,kwargs,domain", [n for n in NEURONS if n[4] == 'any'], ids=_ids)
def test_neuron_gradient_after_convolution(nid, cls, name, kwargs, domain, device, rng):
    """The neuron's input is a convolution result that fusion would fold the neuron into; the gradient
    (and, in the two-result graph, the forward result) stay correct fused and unfused."""
    x = rng.standard_normal((2, 5, 4, 3)).astype(np.float32)
    ds, w, b = conv_source(3, 6, 3, 3, rng)
    pre = R.conv2d(x, w, b)
    g = rng.standard_normal(pre.shape).astype(np.float32)
    ref = _ref(name, pre, g, kwargs)
    y_ref = R.neuron(pre, name, kwargs.get("a"), kwargs.get("b"), kwargs.get("c"))
    for fuse in (True, False):
        xn = mpsnn.MPSNNImageNode(handle=Handle('x'))
        gn = mpsnn.MPSNNImageNode(handle=Handle('g'))
        node = getattr(mpsnn, cls)(mpsnn.MPSCNNConvolutionNode(xn, ds).result_image, **kwargs)
        grad = node.gradient_filter(with_source=gn)
        dpre = run_by_label(labelled_graph(device, grad.result_image, fuse), {'x': x, 'g': g})
        assert_close(dpre, ref, "reduction", k=27)
        y, dpre = run_by_label(labelled_graph(device, [node.result_image, grad.result_image], fuse),
                               {'x': x, 'g': g})
        assert_close(y, y_ref, "reduction", k=27)
        assert_close(dpre, ref, "reduction", k=27)


def test_neuron_forward_and_gradient_in_one_graph(device, rng):
    x = _grad_input(rng, (2, 3, 5, 7), 'elu', {}, 'any')
    g = rng.standard_normal(x.shape).astype(np.float32)
    for fuse in (True, False):
        xn, gn, node, grad = _build(lambda s: mpsnn.MPSCNNNeuronELUNode(s, a=0.5))
        y, dx = run_by_label(labelled_graph(device, [node.result_image, grad.result_image], fuse), {'x': x, 'g': g})
        assert_close(y, R.neuron(x, 'elu', 0.5), "elementwise")
        assert_close(dx, R.neuron_gradient('elu', x, g, 0.5), "elementwise")


def test_neuron_exported_gradient_state(device, rng):
    x = _grad_input(rng, (2, 3, 4, 5), 'soft_sign', {}, 'any')
    g = rng.standard_normal(x.shape).astype(np.float32)
    xn, gn, node, grad = _build(lambda s: mpsnn.MPSCNNNeuronSoftSignNode(s))
    node.result_state.export_from_graph = True
    node.result_state.handle = Handle('neuron-state')
    graph = labelled_graph(device, grad.result_image)
    assert [h.label() for h in graph.result_state_handles] == ['neuron-state']
    out, states = encode_with_states(device, graph, inputs_by_label(graph, {'x': x, 'g': g}))
    assert len(states) == 1 and isinstance(states[0], mpsnn.MPSState)
    assert_close(out.numpy(), R.neuron_gradient('soft_sign', x, g), "elementwise")


def test_neuron_gradient_encode_batch(device, rng):
    x = _grad_input(rng, (3, 4, 5, 6), 'tanh', {}, 'any')
    g = rng.standard_normal(x.shape).astype(np.float32)
    xn, gn, node, grad = _build(lambda s: mpsnn.MPSCNNNeuronTanHNode(s, a=1.5, b=0.7))
    graph = labelled_graph(device, grad.result_image)
    arrays = {'x': x, 'g': g}
    batches = [[mpsnn.MPSImage.from_numpy(np.ascontiguousarray(arrays[h.label()][i:i + 1])) for i in range(3)]
               for h in graph.source_image_handles]
    cb = device.make_command_queue().make_command_buffer()
    out = graph.encode_batch(cb, batches)
    cb.commit()
    cb.wait_until_completed()
    assert len(out) == 3
    ref = R.neuron_gradient('tanh', x, g, 1.5, 0.7)
    for i, o in enumerate(out):
        assert_close(o.numpy(), ref[i:i + 1], "elementwise")


# --------------------------------------------------------------------------------------------
# IEEE-754 edge cases and errors

def test_neuron_gradient_ieee_edge_cases(device):
    """Per IEEE-754 with no epsilon (nodes.md §6.2 notes): NaN where the oracle is NaN, non-finite where it is
    infinite (a zero base may give inf or NaN), the oracle's value elsewhere."""
    v = np.array([-1.0, 0.0, 2.0, 0.5], np.float32).reshape(1, 1, 1, 4)
    g = np.ones_like(v)
    with np.errstate(all='ignore'):
        for cls, name, kw in (("MPSCNNNeuronPowerNode", "power", {"c": 0.5}),
                              ("MPSCNNNeuronPowerNode", "power", {"c": -1.0}),
                              ("MPSCNNNeuronLogarithmNode", "logarithm", {}),
                              ("MPSCNNNeuronExponentialNode", "exponential", {"c": -2.0}),
                              ("MPSCNNNeuronExponentialNode", "exponential", {"c": 1.0})):
            xn, gn, node, grad = _build(lambda s: getattr(mpsnn, cls)(s, **kw))
            dx = _run(grad, v, g, device)
            ref = _ref(name, v, g, kw)
            np.testing.assert_array_equal(np.isnan(dx[np.isnan(ref)]), True, err_msg=f"{cls} {kw}")
            assert not np.isfinite(dx[np.isinf(ref)]).any(), (cls, kw, dx)
            finite = np.isfinite(ref)
            assert_close(dx[finite], ref[finite], "elementwise")


def test_neuron_gradient_wrong_gradient_shape_names_node(device, rng):
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    xn, gn, node, grad = _build(lambda s: mpsnn.MPSCNNNeuronSigmoidNode(s))
    grad.label = "act1.grad"
    graph = labelled_graph(device, grad.result_image)
    for shape in ((2, 2, 4, 5), (2, 3, 5, 5), (2, 3, 4, 4), (2, 3, 4, 8)):
        with pytest.raises(mpsnn.ShapeError, match=r"'act1\.grad'"):
            run_by_label(graph, {'x': x, 'g': np.zeros(shape, np.float32)})
    assert_close(run_by_label(graph, {'x': x, 'g': x}), R.neuron_gradient('sigmoid', x, x), "elementwise")


# --------------------------------------------------------------------------------------------
# PyTorch cross-checks (autograd)

def test_neuron_gradients_vs_torch(device, rng):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    x = (rng.standard_normal((2, 4, 5, 6)) * 3).astype(np.float32)
    x[np.abs(x) < 1e-2] = 0.5
    for k in (2.0, 6.0, -3.0, 3.0):                # relu6 / hardtanh(0, 2) / hardsigmoid kinks
        x[np.abs(x - k) < 1e-2] = k + 0.37
    pos = np.abs(x) + np.float32(0.2)
    g = rng.standard_normal(x.shape).astype(np.float32)
    slopes = rng.uniform(0.1, 0.9, 6)

    def tgrad(fn, v):
        t = torch.from_numpy(v.astype(np.float64)).requires_grad_(True)
        fn(t).backward(torch.from_numpy(g.astype(np.float64)))
        return t.grad.numpy()

    prelu = lambda t: F.prelu(t.permute(0, 3, 1, 2), torch.from_numpy(slopes)).permute(0, 2, 3, 1)  # noqa: E731
    cases = [
        (lambda s: mpsnn.MPSCNNNeuronReLUNode(s), x, F.relu),
        (lambda s: mpsnn.MPSCNNNeuronReLUNode(s, a=0.2), x, lambda t: F.leaky_relu(t, 0.2)),
        (lambda s: mpsnn.MPSCNNNeuronELUNode(s, a=0.7), x, lambda t: F.elu(t, alpha=0.7)),
        (lambda s: mpsnn.MPSCNNNeuronSigmoidNode(s), x, torch.sigmoid),
        (lambda s: mpsnn.MPSCNNNeuronTanHNode(s), x, torch.tanh),
        (lambda s: mpsnn.MPSCNNNeuronSoftPlusNode(s, a=0.5, b=2.0), x,
         lambda t: F.softplus(t, beta=2.0, threshold=float('inf'))),
        (lambda s: mpsnn.MPSCNNNeuronSoftSignNode(s), x, F.softsign),
        (lambda s: mpsnn.MPSCNNNeuronReLUNNode(s, a=0.0, b=6.0), x, F.relu6),
        (lambda s: mpsnn.MPSCNNNeuronReLUNNode(s, a=0.0, b=2.0), x, lambda t: F.hardtanh(t, 0.0, 2.0)),
        (lambda s: mpsnn.MPSCNNNeuronHardSigmoidNode(s, a=1 / 6, b=0.5), x, F.hardsigmoid),
        (lambda s: mpsnn.MPSCNNNeuronAbsoluteNode(s), x, torch.abs),
        (lambda s: mpsnn.MPSCNNNeuronPReLUNode(s, a_data=slopes.tolist()), x, prelu),
        (lambda s: mpsnn.MPSCNNNeuronExponentialNode(s), x, torch.exp),
        (lambda s: mpsnn.MPSCNNNeuronLogarithmNode(s), pos, torch.log),
        (lambda s: mpsnn.MPSCNNNeuronPowerNode(s, a=0.5, b=1.0, c=2.0), x, lambda t: torch.pow(0.5 * t + 1.0, 2.0)),
        (lambda s: mpsnn.MPSCNNNeuronPowerNode(s, a=2.0, b=0.5, c=0.5), pos, lambda t: torch.pow(2.0 * t + 0.5, 0.5)),
    ]
    for make, v, fn in cases:
        xn, gn, node, grad = _build(make)
        assert_close(_run(grad, v, g, device), tgrad(fn, v), "elementwise")
