"""Gradient tests of binary arithmetic (nodes.md §3.3-3.4) and concatenation (§12.2): both gradient
nodes of addition, subtraction and multiplication with scales, broadcasting strides and clamp bounds
(the forward clamp mask), concatenation slices with the 4-channel slot rule, made by gradient_filters and
by the constructors, next to the forward result, fused and unfused, against the float64 oracles; errors."""

from __future__ import annotations

import numpy as np
import pytest

import mpsnn
import reference as R
from conftest import assert_close, conv_source

from ._common import Handle, inputs_by_label, labelled_graph, run_by_label

NODES = {'add': mpsnn.MPSNNAdditionNode, 'subtract': mpsnn.MPSNNSubtractionNode,
         'multiply': mpsnn.MPSNNMultiplicationNode}
GRAD = {'add': mpsnn.MPSNNAdditionGradientNode, 'subtract': mpsnn.MPSNNSubtractionGradientNode,
        'multiply': mpsnn.MPSNNMultiplicationGradientNode}
AXES = ('feature_channels', 'pixels_y', 'pixels_x')
# (primary strides, secondary strides) as (channel, y, x)
STRIDES = [((1, 1, 1), (1, 1, 1)), ((1, 1, 1), (1, 0, 1)), ((1, 1, 1), (0, 1, 1)), ((0, 1, 0), (1, 1, 1)),
           ((1, 0, 0), (0, 1, 1)), ((1, 1, 1), (0, 0, 0))]


def _forward(op, a, b, ps=(1, 1, 1), ss=(1, 1, 1), scales=(1.0, 1.0, 0.0), bounds=None):
    node = NODES[op](left_source=a, right_source=b)
    node.primary_scale, node.secondary_scale, node.bias = scales
    for i, axis in enumerate(AXES):
        setattr(node, f"primary_stride_in_{axis}", ps[i])
        setattr(node, f"secondary_stride_in_{axis}", ss[i])
    if bounds is not None:
        node.minimum_value, node.maximum_value = bounds
    return node


def _operand(rng, shape, strides):
    n, h, w, c = shape
    tc, ty, tx = strides
    return rng.standard_normal((n, h if ty else 2, w if tx else 3, c if tc else 5)).astype(np.float32)


def _inputs(rng, shape, ps, ss):
    a, b = _operand(rng, shape, ps), _operand(rng, shape, ss)
    out = R.result_shape(a.shape, b.shape, ps, ss)
    return a, b, rng.standard_normal(out).astype(np.float32)


def _refs(op, a, b, g, ps, ss, scales, bounds=None):
    kw = dict(primary_scale=scales[0], secondary_scale=scales[1], bias=scales[2], primary_strides=ps,
              secondary_strides=ss)
    if bounds is not None:
        kw.update(minimum_value=bounds[0], maximum_value=bounds[1])
    return (R.arithmetic_gradient(op, a, b, g, False, **kw), R.arithmetic_gradient(op, a, b, g, True, **kw),
            R.binary_arithmetic(op, a, b, **kw))


def _nodes():
    return (mpsnn.MPSNNImageNode(handle=Handle('a')), mpsnn.MPSNNImageNode(handle=Handle('b')),
            mpsnn.MPSNNImageNode(handle=Handle('g')))


def _k(x, shape):
    return max(1, int(np.prod(shape)) // int(np.prod(x.shape)))


# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("op", list(NODES))
@pytest.mark.parametrize("ps,ss", STRIDES, ids=str)
def test_arithmetic_gradients(op, ps, ss, device, rng):
    shape = (2, 5, 7, 6)
    a, b, g = _inputs(rng, shape, ps, ss)
    scales = (1.5, -0.75, 0.25)
    da_ref, db_ref, _ = _refs(op, a, b, g, ps, ss, scales)
    for fuse in (True, False):
        an, bn, gn = _nodes()
        fwd = _forward(op, an, bn, ps, ss, scales)
        ga, gb = fwd.gradient_filters(with_source=gn)
        assert type(ga) is GRAD[op] and type(gb) is GRAD[op]
        assert (ga.is_secondary_source_filter, gb.is_secondary_source_filter) == (False, True)
        da, db = run_by_label(labelled_graph(device, [ga.result_image, gb.result_image], fuse), {'a': a, 'b': b, 'g': g})
        assert da.shape == a.shape and db.shape == b.shape
        assert_close(da, da_ref, "reduction", k=_k(a, g.shape))
        assert_close(db, db_ref, "reduction", k=_k(b, g.shape))


@pytest.mark.parametrize("op", list(NODES))
def test_arithmetic_gradients_clamp_mask_with_forward(op, device, rng):
    """Bounds clip part of the result: the forward (in the same graph) is clamped, and the clipped
    elements get a zero gradient through the mask the forward step recorded."""
    shape = (2, 6, 5, 7)
    a, b, g = _inputs(rng, shape, (1, 1, 1), (1, 1, 1))
    r = R.binary_arithmetic(op, a, b, 1.25, 0.5, 0.1)
    lo, hi = float(np.quantile(r, 0.25)) + 1e-3, float(np.quantile(r, 0.75)) - 1e-3
    bounds = (np.float32(lo), np.float32(hi))
    da_ref, db_ref, y_ref = _refs(op, a, b, g, (1, 1, 1), (1, 1, 1), (1.25, 0.5, 0.1), bounds)
    assert np.count_nonzero(da_ref == 0) > g.size // 3
    for fuse in (True, False):
        an, bn, gn = _nodes()
        fwd = _forward(op, an, bn, scales=(1.25, 0.5, 0.1), bounds=bounds)
        ga, gb = fwd.gradient_filters(with_source=gn)
        y, da, db = run_by_label(labelled_graph(device, [fwd.result_image, ga.result_image, gb.result_image], fuse),
                                 {'a': a, 'b': b, 'g': g})
        assert_close(y, y_ref, "elementwise")
        assert_close(da, da_ref, "elementwise")
        assert_close(db, db_ref, "elementwise")


def test_residual_addition_gradient_is_not_fused_away(device, rng):
    """conv + x is fused into the convolution in inference; with its gradient state consumed the addition
    keeps its own step (the mask), and fused and unfused plans agree."""
    ds, w, bias = conv_source(5, 5, 3, 3, rng)
    x = rng.standard_normal((2, 7, 6, 5)).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    h = R.conv2d(x, w, bias)
    outs = []
    for fuse in (True, False):
        xn = mpsnn.MPSNNImageNode(handle=Handle('x'))
        gn = mpsnn.MPSNNImageNode(handle=Handle('g'))
        conv = mpsnn.MPSCNNConvolutionNode(source=xn, weights=ds)
        add = mpsnn.MPSNNAdditionNode(left_source=conv.result_image, right_source=xn)
        add.maximum_value = 0.5
        ga, gb = add.gradient_filters(with_source=gn)
        outs.append(run_by_label(labelled_graph(device, [add.result_image, ga.result_image, gb.result_image], fuse),
                                 {'x': x, 'g': g}))
    mask = (h + x) < 0.5
    for y, da, db in outs:
        assert_close(y, np.minimum(h + x, 0.5), "reduction", k=45)
        np.testing.assert_array_equal(da, np.where(mask, g, 0))
        np.testing.assert_array_equal(db, np.where(mask, g, 0))


@pytest.mark.parametrize("op", list(NODES))
def test_arithmetic_gradient_constructors(op, device, rng):
    ps, ss = (1, 1, 1), (1, 0, 1)
    a, b, g = _inputs(rng, (2, 5, 4, 3), ps, ss)
    scales = (2.0, 0.5, 0.0)
    da_ref, db_ref, _ = _refs(op, a, b, g, ps, ss, scales)
    for form in ('state', 'forward'):
        an, bn, gn = _nodes()
        fwd = _forward(op, an, bn, ps, ss, scales)
        nodes = []
        for secondary in (False, True):
            other = (an if secondary else bn) if op == 'multiply' else (bn if secondary else an)
            if form == 'state':
                nodes.append(GRAD[op](source_gradient=gn, source_image=other, gradient_state=fwd.result_state,
                                      is_secondary_source_filter=secondary))
            else:
                nodes.append(GRAD[op](gradient_images=[gn, other], forward_filter=fwd,
                                      is_secondary_source_filter=secondary))
        ga, gb = nodes
        assert (ga.primary_scale, ga.secondary_scale) == (2.0, 0.5)
        assert gb.secondary_stride_in_pixels_y == 0 and ga.secondary_stride_in_pixels_y == 1
        assert isinstance(ga, mpsnn.MPSNNArithmeticGradientNode) and isinstance(ga, mpsnn.MPSNNGradientFilterNode)
        da, db = run_by_label(labelled_graph(device, [ga.result_image, gb.result_image]), {'a': a, 'b': b, 'g': g})
        assert_close(da, da_ref, "reduction", k=1)
        assert_close(db, db_ref, "reduction", k=5)


def test_arithmetic_gradient_classes_and_state():
    an, bn, gn = _nodes()
    for op in NODES:
        fwd = NODES[op](sources=[an, bn])
        assert isinstance(fwd.result_state, mpsnn.MPSNNArithmeticGradientStateNode)
        assert isinstance(fwd.result_state, mpsnn.MPSNNBinaryGradientStateNode)
        assert issubclass(GRAD[op], mpsnn.MPSNNArithmeticGradientNode)
        ga, gb = fwd.gradient_filters(with_sources=[gn])
        assert ga.result_image.parent is ga
        with pytest.raises(NotImplementedError, match="gradient_filters"):
            fwd.gradient_filter(with_source=gn)
        with pytest.raises(NotImplementedError):
            ga.gradient_filters(with_source=gn)
        ga.primary_scale = 3.0
        assert ga.primary_scale == 3.0
        with pytest.raises(AttributeError):
            ga.is_secondary_source_filter = True


def test_division_has_no_gradient():
    an, bn, gn = _nodes()
    div = mpsnn.MPSNNDivisionNode(sources=[an, bn])
    div.label = "ratio"
    for call in (lambda: div.gradient_filters(with_source=gn), lambda: div.gradient_filter(with_source=gn)):
        with pytest.raises(mpsnn.UnsupportedError, match=r"\[arithmetic 'ratio'\] division has no gradient"):
            call()


def test_arithmetic_gradient_errors(device, rng):
    a, b, g = _inputs(rng, (2, 4, 5, 3), (1, 1, 1), (1, 1, 1))
    an, bn, gn = _nodes()
    mul = mpsnn.MPSNNMultiplicationNode(sources=[an, bn])
    ga, gb = mul.gradient_filters(with_source=gn)
    ga.label = "mul.dA"
    graph = labelled_graph(device, ga.result_image)
    with pytest.raises(mpsnn.ShapeError, match=r"'mul\.dA'.*source gradient is 5x4x2"):
        run_by_label(graph, {'a': a, 'b': b, 'g': g[..., :2]})
    # the multiplication gradient must read the other operand
    wrong = mpsnn.MPSNNMultiplicationGradientNode(source_gradient=gn, source_image=an, gradient_state=mul.result_state,
                                                  is_secondary_source_filter=False)
    wrong.label = "wrong"
    with pytest.raises(mpsnn.MPSGraphError, match=r"'wrong'.*secondary source"):
        labelled_graph(device, wrong.result_image).run([a, b, g])
    # strides changed on the gradient node only
    add = mpsnn.MPSNNAdditionNode(sources=[an, bn])
    ga, gb = add.gradient_filters(with_source=gn)
    gb.secondary_stride_in_pixels_x = 0
    gb.label = "add.dB"
    with pytest.raises(mpsnn.ShapeError, match=r"'add\.dB'\] strides differ"):
        run_by_label(labelled_graph(device, gb.result_image), {'a': a, 'b': b, 'g': g})
    with pytest.raises(mpsnn.ShapeError):
        gb.secondary_stride_in_pixels_x = 2
    # a state of another kind of node
    relu = mpsnn.MPSCNNNeuronReLUNode(source=an)
    bad = mpsnn.MPSNNAdditionGradientNode(source_gradient=gn, source_image=an, gradient_state=relu.result_state,
                                          is_secondary_source_filter=False)
    bad.label = "bad"
    with pytest.raises(mpsnn.MPSGraphError, match=r"'bad'.*expected the state of a arithmetic node"):
        labelled_graph(device, bad.result_image).run([a, g])


def test_arithmetic_gradient_vs_torch(device, rng):
    torch = pytest.importorskip("torch")
    ps, ss = (1, 1, 1), (0, 1, 0)
    a, b, g = _inputs(rng, (2, 5, 6, 4), ps, ss)
    an, bn, gn = _nodes()
    mul = _forward('multiply', an, bn, ps, ss, (0.5, 3.0, 1.0))
    ga, gb = mul.gradient_filters(with_source=gn)
    da, db = run_by_label(labelled_graph(device, [ga.result_image, gb.result_image]), {'a': a, 'b': b, 'g': g})
    ta = torch.tensor(a.astype(np.float64), requires_grad=True)
    tb = torch.tensor(b.astype(np.float64), requires_grad=True)
    (0.5 * ta * 3.0 * tb[:, :, :1, :1].expand(g.shape) + 1.0).backward(torch.tensor(g.astype(np.float64)))
    assert_close(da, ta.grad.numpy(), "elementwise")
    assert_close(db, tb.grad.numpy(), "reduction", k=24)


# --------------------------------------------------------------------------------------------
# concatenation

@pytest.mark.parametrize("counts", [(3, 5, 4, 2), (4, 4), (1,), (7, 1, 6)], ids=str)
def test_concatenation_gradients(counts, device, rng):
    xs = [rng.standard_normal((2, 5, 3, c)).astype(np.float32) for c in counts]
    offs, c_out = R.concat_offsets(counts)
    g = rng.standard_normal((2, 5, 3, c_out)).astype(np.float32)
    names = [f"x{i}" for i in range(len(counts))]
    for fuse in (True, False):
        srcs = [mpsnn.MPSNNImageNode(handle=Handle(n)) for n in names]
        gn = mpsnn.MPSNNImageNode(handle=Handle('g'))
        cat = mpsnn.MPSNNConcatenationNode(sources=srcs)
        grads = cat.gradient_filters(with_source=gn)
        assert len(grads) == len(counts) and all(type(n) is mpsnn.MPSNNConcatenationGradientNode for n in grads)
        arrays = dict(zip(names, xs), g=g)
        outs = run_by_label(labelled_graph(device, [cat.result_image] + [n.result_image for n in grads], fuse), arrays)
        assert_close(outs[0], R.concatenate(xs), "exact")
        for k, dx in enumerate(outs[1:]):
            assert dx.shape == xs[k].shape
            assert_close(dx, R.concatenation_gradient(g, counts, k), "exact")


def test_concatenation_gradient_same_source_twice_and_constructor(device, rng):
    """cat([x, y, x]): gradient_filters serves each position; a hand-built node finds its slot from
    source_image (the first position of x)."""
    x = rng.standard_normal((1, 4, 5, 3)).astype(np.float32)
    y = rng.standard_normal((1, 4, 5, 6)).astype(np.float32)
    g = rng.standard_normal((1, 4, 5, 15)).astype(np.float32)
    xn, yn = mpsnn.MPSNNImageNode(handle=Handle('x')), mpsnn.MPSNNImageNode(handle=Handle('y'))
    gn = mpsnn.MPSNNImageNode(handle=Handle('g'))
    cat = mpsnn.MPSNNConcatenationNode(sources=[xn, yn, xn])
    d0, d1, d2 = cat.gradient_filters(with_source=gn)
    hand = mpsnn.MPSNNConcatenationGradientNode(source_gradient=gn, source_image=yn, gradient_state=cat.result_state)
    hand_x = mpsnn.MPSNNConcatenationGradientNode(source_gradient=gn, source_image=xn, gradient_state=cat.result_state)
    outs = run_by_label(labelled_graph(device, [n.result_image for n in (d0, d1, d2, hand, hand_x)]),
                        {'x': x, 'y': y, 'g': g})
    np.testing.assert_array_equal(outs[0], g[..., 0:3])
    np.testing.assert_array_equal(outs[1], g[..., 4:10])
    np.testing.assert_array_equal(outs[2], g[..., 12:15])
    np.testing.assert_array_equal(outs[3], outs[1])
    np.testing.assert_array_equal(outs[4], outs[0])


def test_concatenation_gradient_errors(device, rng):
    xn, yn, zn = (mpsnn.MPSNNImageNode(handle=Handle(n)) for n in 'xyz')
    gn = mpsnn.MPSNNImageNode(handle=Handle('g'))
    cat = mpsnn.MPSNNConcatenationNode(sources=[xn, yn])
    with pytest.raises(NotImplementedError, match="gradient_filters"):
        cat.gradient_filter(with_source=gn)
    d0, d1 = cat.gradient_filters(with_source=gn)
    d1.label = "cat.d1"
    x = rng.standard_normal((2, 3, 4, 3)).astype(np.float32)
    y = rng.standard_normal((2, 3, 4, 2)).astype(np.float32)
    graph = labelled_graph(device, d1.result_image)
    with pytest.raises(mpsnn.ShapeError, match=r"'cat\.d1'.*source gradient is 4x3x5.*expected.*4x3x6"):
        run_by_label(graph, {'x': x, 'y': y, 'g': np.zeros((2, 3, 4, 5), np.float32)})
    stranger = mpsnn.MPSNNConcatenationGradientNode(source_gradient=gn, source_image=zn, gradient_state=cat.result_state)
    stranger.label = "stranger"
    with pytest.raises(mpsnn.MPSGraphError, match=r"'stranger'\] source_image is none of the sources"):
        run_by_label(labelled_graph(device, stranger.result_image),
                     {'x': x, 'y': y, 'z': x, 'g': np.zeros((2, 3, 4, 6), np.float32)})


def test_gradient_class_and_exported_clamp_mask(device, rng):
    an, bn, gn = _nodes()
    for op, cls in GRAD.items():
        assert NODES[op](sources=[an, bn]).gradient_class() is cls
    with pytest.raises(mpsnn.UnsupportedError, match="division has no gradient"):
        mpsnn.MPSNNDivisionNode(sources=[an, bn]).gradient_class()
    a, b, g = _inputs(rng, (2, 3, 4, 5), (1, 1, 1), (1, 1, 1))
    add = _forward('add', an, bn, bounds=(np.float32(-0.5), np.float32(0.5)))
    add.result_state.export_from_graph = True
    ga, gb = add.gradient_filters(with_source=gn)
    graph = labelled_graph(device, ga.result_image)
    cb = device.make_command_queue().make_command_buffer()
    states = []
    graph.encode(cb, [mpsnn.MPSImage.from_numpy(x) for x in inputs_by_label(graph, {'a': a, 'b': b, 'g': g})],
                 destination_states=states)
    cb.commit()
    cb.wait_until_completed()
    assert len(states) == 1 and type(states[0]) is mpsnn.MPSCNNArithmeticGradientState
    assert isinstance(states[0], mpsnn.MPSNNBinaryGradientState)
    np.testing.assert_array_equal(states[0].numpy(), R.clamp_mask('add', a, b, minimum_value=-0.5, maximum_value=0.5))
