"""Gradient tests of the convolution family (nodes.md §4.3, §4.4, §4.6): MPSCNNConvolutionGradientNode (regular,
grouped, depthwise, dilated, strided), MPSCNNFullyConnectedGradientNode and MPSCNNConvolutionTransposeGradientNode
against the float64 oracles, over padding methods, edge clamp and channel windows (custom padding), odd sizes,
batches and channel counts not divisible by 4, fused and unfused plans; the parameter gradients read from the
exported MPSCNNConvolutionGradientState; construction, training styles, reloads, errors and PyTorch autograd."""

from __future__ import annotations

import numpy as np
import pytest

import mpsnn
import reference as R
from conftest import assert_close, conv_source

from ._common import (REPRESENTATIVE_METHODS, ConvCase, Handle, conv_method_params, from_t, inputs_by_label,
                      labelled_graph, method_id, run_by_label, set_padding, to_t, torch_pad)
from .test_convolution_edges import KernelPolicy

NONE_STYLE = mpsnn.MPSNNTrainingStyle.update_device_none

CASES = [
    ConvCase(2, 7, 9, 3, 5, 3, 3),                                     # odd sizes, channels not multiples of 4
    ConvCase(3, 8, 7, 5, 6, 2, 4, stride=(2, 3)),                      # even kernels, strides
    ConvCase(1, 9, 8, 6, 7, 3, 2, dilation=(2, 3)),
    ConvCase(2, 7, 6, 8, 16, 3, 3, stride=(2, 1), groups=2),           # groups: 4 / 8 channels per group
    ConvCase(2, 5, 6, 7, 3, 1, 1, stride=(2, 2)),                      # 1x1, pixels no window reads
]


def _geometry(case, method, reverse=False):
    return R.window_geometry((case.h, case.w), (case.kh, case.kw), case.stride, case.dilation, method, reverse)


def _data(rng, case, out_hw):
    x = rng.standard_normal((case.n, case.h, case.w, case.cin)).astype(np.float32)
    g = rng.standard_normal((case.n,) + tuple(out_hw) + (case.cout,)).astype(np.float32)
    return x, g


def _build(make_forward, how='filter', cls=None, keyword='convolution_gradient_state', weights=None):
    """x, g input nodes (handles 'x', 'g'), the forward node make_forward(x) and its gradient node (exported
    gradient state), made by gradient_filter ('filter') or by the class's initializer ('init')."""
    xn = mpsnn.MPSNNImageNode(handle=Handle('x'))
    gn = mpsnn.MPSNNImageNode(handle=Handle('g'))
    fwd = make_forward(xn)
    if how == 'filter':
        grad = fwd.gradient_filter(with_source=gn)
    else:
        grad = cls(source_gradient=gn, source_image=xn, weights=weights, **{keyword: fwd.result_state})
    grad.result_state.export_from_graph = True
    return xn, gn, fwd, grad


def _run(device, grad, x, g, fuse=True, needed=True):
    """(dX or None, dW, dB) of one run; dW and dB read from the exported MPSCNNConvolutionGradientState."""
    graph = labelled_graph(device, grad.result_image, fuse)
    if not needed:
        graph = mpsnn.MPSNNGraph(device, grad.result_image, False)
        graph.poison_temporaries = True
        graph.fusion_enabled = fuse
    states = []
    out = graph.run(inputs_by_label(graph, {'x': x, 'g': g}), destination_states=states)
    (s,) = states
    assert isinstance(s, mpsnn.MPSCNNConvolutionGradientState)
    dx = None if out is None else np.array(out.numpy())
    dw = s.gradient_for_weights
    db = s.gradient_for_biases
    return dx, None if dw is None else np.array(dw.numpy()), None if db is None else np.array(db.numpy())


def _check(got, ref, k, n_pixels):
    dx, dw, db = got
    rdx, rdw, rdb = ref
    assert dx.shape == rdx.shape
    assert_close(dx, rdx, "reduction", k=k)
    assert_close(dw.reshape(rdw.shape), rdw, "reduction", k=n_pixels)
    assert_close(db, rdb, "reduction", k=n_pixels)


def _conv(ds, method=None, policy=None):
    def make(src):
        node = mpsnn.MPSCNNConvolutionNode(source=src, weights=ds)
        if method is not None:
            set_padding(node, method)
        if policy is not None:
            node.padding_policy = policy
        return node
    return make


# --------------------------------------------------------------------------------------------
# regular, grouped, dilated, strided convolution over every padding method

@pytest.mark.parametrize("case,method", conv_method_params(CASES, REPRESENTATIVE_METHODS[::2] + (R.SIZE_SAME,)))
def test_convolution_gradient(case, method, device, rng):
    geo = _geometry(case, method)
    x, g = _data(rng, case, geo['out_hw'])
    ds, w, b = conv_source(case.cin, case.cout, case.kh, case.kw, rng, case.stride, case.dilation, case.groups)
    ref = R.conv2d_gradient(x, w, g, case.stride, case.dilation, case.groups, geo['pad'], geo['out_hw'])
    for fuse in (True, False):
        _, _, _, grad = _build(_conv(ds, method))
        _check(_run(device, grad, x, g, fuse), ref, case.k, case.n * geo['D_h'] * geo['D_w'])


@pytest.mark.parametrize("method", REPRESENTATIVE_METHODS, ids=method_id)
def test_convolution_gradient_every_padding_method(method, device, rng):
    case = ConvCase(2, 8, 7, 5, 3, 3, 4, stride=(2, 1), dilation=(1, 2))
    geo = _geometry(case, method)
    x, g = _data(rng, case, geo['out_hw'])
    ds, w, b = conv_source(case.cin, case.cout, case.kh, case.kw, rng, case.stride, case.dilation)
    _, _, _, grad = _build(_conv(ds, method))
    _check(_run(device, grad, x, g),
           R.conv2d_gradient(x, w, g, case.stride, case.dilation, 1, geo['pad'], geo['out_hw']), case.k,
           case.n * geo['D_h'] * geo['D_w'])


@pytest.mark.parametrize("method", [R.SIZE_SAME, R.SIZE_VALID_ONLY, R.SIZE_FULL | R.ADD_REMAINDER_TO_BOTTOM_RIGHT],
                         ids=method_id)
def test_depthwise_convolution_gradient(method, device, rng):
    n, h, w_, c, kh, kw, stride, dil = 2, 9, 7, 6, 3, 2, (2, 1), (1, 2)
    d = mpsnn.MPSCNNDepthWiseConvolutionDescriptor(kernel_width=kw, kernel_height=kh, input_feature_channels=c,
                                                   output_feature_channels=c)
    d.stride_in_pixels_y, d.stride_in_pixels_x = stride
    d.dilation_rate_y, d.dilation_rate_x = dil
    w = rng.standard_normal((c, kh, kw, 1)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    ds = mpsnn.ArrayConvolutionDataSource(d, w, b)
    geo = R.window_geometry((h, w_), (kh, kw), stride, dil, method)
    x = rng.standard_normal((n, h, w_, c)).astype(np.float32)
    g = rng.standard_normal((n,) + geo['out_hw'] + (c,)).astype(np.float32)
    rdx, rdw, rdb = R.conv2d_gradient(x, w[..., 0], g, stride, dil, 1, geo['pad'], geo['out_hw'], depthwise=True)
    for fuse in (True, False):
        _, _, _, grad = _build(_conv(ds, method))
        dx, dw, db = _run(device, grad, x, g, fuse)
        assert_close(dx, rdx, "reduction", k=kh * kw)
        assert_close(dw.reshape(c, kh, kw), rdw, "reduction", k=n * geo['D_h'] * geo['D_w'])  # [Cout][KH][KW]
        assert_close(db, rdb, "reduction", k=n * geo['D_h'] * geo['D_w'])


# --------------------------------------------------------------------------------------------
# edge clamp and source channel windows (custom padding policies): the staged source

@pytest.mark.parametrize("method", [R.SIZE_SAME, R.SIZE_FULL, R.SIZE_SAME | R.ADD_REMAINDER_TO_BOTTOM_RIGHT,
                                    R.SIZE_VALID_ONLY | R.ALIGN_TOP_LEFT], ids=method_id)
@pytest.mark.parametrize("edge,offset", [("clamp", 0), (None, 4), ("clamp", 2)], ids=["clamp", "window", "both"])
def test_convolution_gradient_clamp_and_channel_window(method, edge, offset, device, rng):
    case = ConvCase(2, 7, 8, 3, 5, 3, 4, stride=(2, 1), dilation=(1, 2))
    geo = _geometry(case, method)
    c_src = case.cin + offset + (1 if offset else 0)    # channels before and after a window
    x = rng.standard_normal((case.n, case.h, case.w, c_src)).astype(np.float32)
    g = rng.standard_normal((case.n,) + geo['out_hw'] + (case.cout,)).astype(np.float32)
    ds, w, b = conv_source(case.cin, case.cout, case.kh, case.kw, rng, case.stride, case.dilation)
    policy = KernelPolicy(method, mpsnn.MPSImageEdgeMode.clamp if edge else None, offset)
    ref = R.conv2d_gradient(x, w, g, case.stride, case.dilation, 1, geo['pad'], geo['out_hw'],
                            edge_mode=edge or 'zero', channel_offset=offset, channel_count=case.cin)
    for fuse in (True, False):
        _, _, _, grad = _build(_conv(ds, policy=policy))
        _check(_run(device, grad, x, g, fuse), ref, case.k, case.n * geo['D_h'] * geo['D_w'])


# --------------------------------------------------------------------------------------------
# fully connected

@pytest.mark.parametrize("n,h,w,c,cout", [(3, 5, 4, 7, 6), (2, 1, 1, 5, 3), (1, 3, 3, 9, 10)], ids=str)
def test_fully_connected_gradient(n, h, w, c, cout, device, rng):
    ds, wt, b = conv_source(c, cout, h, w, rng)
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    g = rng.standard_normal((n, 1, 1, cout)).astype(np.float32)
    ref = R.fully_connected_gradient(x, wt, g)
    for how in ('filter', 'init'):
        _, _, _, grad = _build(lambda s: mpsnn.MPSCNNFullyConnectedNode(source=s, weights=ds), how,
                               mpsnn.MPSCNNFullyConnectedGradientNode)
        assert type(grad) is mpsnn.MPSCNNFullyConnectedGradientNode
        _check(_run(device, grad, x, g), ref, h * w * c, n)


# --------------------------------------------------------------------------------------------
# transposed convolution

TRANSPOSE_CASES = [
    ConvCase(2, 4, 5, 3, 5, 3, 4, stride=(2, 1)),
    ConvCase(1, 5, 3, 8, 8, 2, 3, stride=(3, 2), dilation=(2, 1), groups=2),
    ConvCase(2, 3, 4, 6, 5, 3, 3, stride=(2, 2)),
]


def _transpose(ds, method=None, policy=None):
    def make(src):
        node = mpsnn.MPSCNNConvolutionTransposeNode(source=src, convolution_gradient_state=None, weights=ds)
        if method is not None:
            set_padding(node, method)
        if policy is not None:
            node.padding_policy = policy
        return node
    return make


@pytest.mark.parametrize("case,method", conv_method_params(TRANSPOSE_CASES, REPRESENTATIVE_METHODS[::2], reverse=True))
def test_convolution_transpose_gradient(case, method, device, rng):
    geo = _geometry(case, method, reverse=True)
    x, g = _data(rng, case, geo['out_hw'])
    ds, w, b = conv_source(case.cin, case.cout, case.kh, case.kw, rng, case.stride, case.dilation, case.groups)
    ref = R.conv_transpose2d_gradient(x, w, g, case.stride, case.dilation, case.groups, geo['pad'], geo['out_hw'])
    for fuse in (True, False):
        _, _, _, grad = _build(_transpose(ds, method))
        assert type(grad) is mpsnn.MPSCNNConvolutionTransposeGradientNode
        _check(_run(device, grad, x, g, fuse), ref, case.k * 4, case.n * geo['D_h'] * geo['D_w'])


@pytest.mark.parametrize("h,w,k,stride,method", [
    (7, 8, 3, 2, R.SIZE_SAME),
    (9, 6, 4, 2, R.SIZE_SAME | R.ADD_REMAINDER_TO_BOTTOM_RIGHT),
    (8, 9, 3, 3, R.SIZE_VALID_ONLY),
    (5, 7, 2, 1, R.SIZE_FULL | R.ALIGN_TOP_LEFT),
], ids=str)
def test_convolution_transpose_gradient_paired_with_a_convolution(h, w, k, stride, method, device, rng):
    """A transpose sized by a convolution's gradient state (nodes.md §4.3) differentiates that adjoint geometry;
    the convolution gradient of the same graph (its state used twice) is unaffected."""
    n, c0, c1 = 2, 3, 5
    ds1, w1, b1 = conv_source(c0, c1, k, k, rng, (stride, stride))
    ds2, w2, b2 = conv_source(c1, c0, k, k, rng, (stride, stride))
    xn = mpsnn.MPSNNImageNode(handle=Handle('x'))
    gn = mpsnn.MPSNNImageNode(handle=Handle('g'))
    conv = set_padding(mpsnn.MPSCNNConvolutionNode(source=xn, weights=ds1), method)
    tconv = mpsnn.MPSCNNConvolutionTransposeNode(
        source=conv.result_image, convolution_gradient_state=conv.convolution_gradient_state, weights=ds2)
    assert isinstance(tconv.result_state, mpsnn.MPSCNNConvolutionTransposeGradientStateNode)
    tgrad = tconv.gradient_filter(with_source=gn)
    cgrad = conv.gradient_filter(with_source=tgrad.result_image)
    for s in (tgrad.result_state, cgrad.result_state):
        s.export_from_graph = True
    x = rng.standard_normal((n, h, w, c0)).astype(np.float32)
    g = rng.standard_normal((n, h, w, c0)).astype(np.float32)
    geo = R.window_geometry((h, w), (k, k), (stride, stride), (1, 1), method)
    mid = R.conv2d(x, w1, b1, stride=(stride, stride), pad=geo['pad'], out_hw=geo['out_hw'])
    pz = tuple(R.transpose_pad_from_conv(p, k, 1) for p in geo['pad'])
    tdx, tdw, tdb = R.conv_transpose2d_gradient(mid, w2, g, (stride, stride), pad_z=pz, out_hw=(h, w))
    cdx, cdw, cdb = R.conv2d_gradient(x, w1, tdx, (stride, stride), pad=geo['pad'], out_hw=geo['out_hw'])
    for fuse in (True, False):
        graph = labelled_graph(device, cgrad.result_image, fuse)
        states = []
        dx = graph.run(inputs_by_label(graph, {'x': x, 'g': g}), destination_states=states).numpy()
        ts, cs = states
        assert_close(dx, cdx, "reduction", k=k * k * c1 * 4)
        assert_close(ts.gradient_for_weights.numpy().reshape(w2.shape), tdw, "reduction", k=n * h * w)
        assert_close(ts.gradient_for_biases.numpy(), tdb, "reduction", k=n * h * w)
        assert_close(cs.gradient_for_weights.numpy().reshape(w1.shape), cdw, "reduction", k=n * h * w * 4)
        assert_close(cs.gradient_for_biases.numpy(), cdb, "reduction", k=n * h * w)


def test_convolution_transpose_gradient_channel_window(device, rng):
    case = ConvCase(2, 4, 5, 3, 5, 3, 4, stride=(2, 1))
    geo = _geometry(case, R.SIZE_SAME, reverse=True)
    x = rng.standard_normal((case.n, case.h, case.w, 8)).astype(np.float32)
    g = rng.standard_normal((case.n,) + geo['out_hw'] + (case.cout,)).astype(np.float32)
    ds, w, b = conv_source(case.cin, case.cout, case.kh, case.kw, rng, case.stride)
    _, _, _, grad = _build(_transpose(ds, policy=KernelPolicy(R.SIZE_SAME, None, 4)))
    rdx, rdw, rdb = R.conv_transpose2d_gradient(x[..., 4:7], w, g, case.stride, pad_z=geo['pad'], out_hw=geo['out_hw'])
    dx, dw, db = _run(device, grad, x, g)
    expect = np.zeros_like(dx)
    expect[..., 4:7] = rdx
    assert_close(dx, expect, "reduction", k=case.k * 4)
    assert_close(dw.reshape(w.shape), rdw, "reduction", k=case.n * geo['D_h'] * geo['D_w'])
    assert_close(db, rdb, "reduction", k=case.n * geo['D_h'] * geo['D_w'])


# --------------------------------------------------------------------------------------------
# construction, classes, training style, what is computed

@pytest.mark.parametrize("variant", ["regular", "fully_connected", "transpose"])
def test_constructor_equals_gradient_filter(variant, device, rng):
    if variant == "regular":
        case, make, cls, kw = ConvCase(2, 7, 6, 5, 3, 3, 2, stride=(2, 1)), None, mpsnn.MPSCNNConvolutionGradientNode, \
            'convolution_gradient_state'
        ds, w, b = conv_source(5, 3, 3, 2, rng, (2, 1))
        make = _conv(ds, R.SIZE_FULL)
        out_hw = _geometry(case, R.SIZE_FULL)['out_hw']
    elif variant == "fully_connected":
        case, cls = ConvCase(2, 3, 4, 5, 3, 3, 4), mpsnn.MPSCNNFullyConnectedGradientNode
        kw = 'convolution_gradient_state'
        ds, w, b = conv_source(5, 3, 3, 4, rng)
        make = lambda s: mpsnn.MPSCNNFullyConnectedNode(source=s, weights=ds)       # noqa: E731
        out_hw = (1, 1)
    else:
        case, cls, kw = ConvCase(2, 4, 3, 5, 3, 3, 2, stride=(2, 1)), mpsnn.MPSCNNConvolutionTransposeGradientNode, \
            'convolution_transpose_gradient_state'
        ds, w, b = conv_source(5, 3, 3, 2, rng, (2, 1))
        make = _transpose(ds, R.SIZE_FULL)
        out_hw = _geometry(case, R.SIZE_FULL, reverse=True)['out_hw']
    x, g = _data(rng, case, out_hw)
    base = _run(device, _build(make)[3], x, g)
    for weights in (None, ds):
        xn, gn, fwd, grad = _build(make, 'init', cls, kw, weights)
        assert type(grad) is cls
        for a, r in zip(_run(device, grad, x, g), base):
            np.testing.assert_array_equal(a, r)


def test_gradient_classes_states_and_training_style(rng):
    ds, w, b = conv_source(3, 4, 3, 3, rng)
    xn = mpsnn.MPSNNImageNode()
    conv = mpsnn.MPSCNNConvolutionNode(source=xn, weights=ds)
    conv.training_style = mpsnn.MPSNNTrainingStyle.update_device_cpu
    grad = conv.gradient_filter(with_source=mpsnn.MPSNNImageNode())
    assert type(grad) is mpsnn.MPSCNNConvolutionGradientNode
    assert isinstance(grad, mpsnn.MPSNNGradientFilterNode) and not isinstance(grad, mpsnn.MPSCNNConvolutionNode)
    assert grad.training_style == mpsnn.MPSNNTrainingStyle.update_device_cpu       # copied from the forward node
    assert isinstance(conv.convolution_gradient_state, mpsnn.MPSCNNConvolutionGradientStateNode)
    assert conv.convolution_gradient_state is not None and grad.source_images[1] is xn
    assert isinstance(grad.result_state, mpsnn.MPSCNNConvolutionGradientStateNode)
    assert issubclass(mpsnn.MPSCNNFullyConnectedGradientNode, mpsnn.MPSCNNConvolutionGradientNode)
    assert issubclass(mpsnn.MPSCNNConvolutionTransposeGradientNode, mpsnn.MPSCNNConvolutionGradientNode)
    assert issubclass(mpsnn.MPSCNNConvolutionGradientState, mpsnn.MPSNNGradientState)
    other = mpsnn.MPSNNImageNode()
    for call in (lambda: grad.gradient_filter(with_source=other), lambda: grad.gradient_filters(with_source=other),
                 lambda: grad.gradient_filter(with_sources=[other]),
                 lambda: grad.gradient_filters(with_sources=[other])):
        with pytest.raises(NotImplementedError):
            call()


def test_training_style_none_computes_only_the_data_gradient(device, rng):
    case = ConvCase(2, 6, 7, 3, 4, 3, 3)
    ds, w, b = conv_source(3, 4, 3, 3, rng)
    x, g = _data(rng, case, (6, 7))
    rdx, _, _ = R.conv2d_gradient(x, w, g)
    def forward_none(src):
        node = mpsnn.MPSCNNConvolutionNode(source=src, weights=ds)
        node.training_style = NONE_STYLE
        return node

    # set on the forward node (copied to the gradient) or on the gradient node before the graph is made
    for where in ('forward', 'gradient'):
        if where == 'forward':
            _, _, _, grad = _build(forward_none)
            assert grad.training_style == NONE_STYLE
        else:
            _, _, _, grad = _build(_conv(ds))
            grad.training_style = NONE_STYLE
        dx, dw, db = _run(device, grad, x, g)
        assert dw is None and db is None
        assert_close(dx, rdx, "reduction", k=27)


def test_parameter_gradients_without_the_data_gradient(device, rng):
    """result_image_is_needed=False: only the exported weight gradients are produced (the data gradient is not
    computed), also through a staged (clamped) source and a transposed convolution."""
    case = ConvCase(3, 7, 6, 5, 4, 3, 2, stride=(2, 1))
    ds, w, b = conv_source(5, 4, 3, 2, rng, (2, 1))
    geo = _geometry(case, R.SIZE_SAME)
    x, g = _data(rng, case, geo['out_hw'])
    for policy, edge in ((None, 'zero'), (KernelPolicy(R.SIZE_SAME), 'clamp')):
        _, rdw, rdb = R.conv2d_gradient(x, w, g, (2, 1), pad=geo['pad'], out_hw=geo['out_hw'], edge_mode=edge)
        _, _, _, grad = _build(_conv(ds, policy=policy))
        dx, dw, db = _run(device, grad, x, g, needed=False)
        assert dx is None
        assert_close(dw.reshape(w.shape), rdw, "reduction", k=3 * 7 * 6)
        assert_close(db, rdb, "reduction", k=3 * 7 * 6)


def test_forward_state_holds_no_gradients(device, rng):
    """The forward node's exported convolution_gradient_state is an MPSCNNConvolutionGradientState without
    gradients; the gradient node's result state has them."""
    ds, w, b = conv_source(3, 4, 3, 3, rng)
    xn = mpsnn.MPSNNImageNode()
    conv = mpsnn.MPSCNNConvolutionNode(source=xn, weights=ds)
    conv.convolution_gradient_state.export_from_graph = True
    graph = mpsnn.MPSNNGraph(device, conv.result_image)
    states = []
    graph.run([rng.standard_normal((1, 5, 5, 3)).astype(np.float32)], destination_states=states)
    (s,) = states
    assert isinstance(s, mpsnn.MPSCNNConvolutionGradientState)
    assert s.gradient_for_weights is None and s.gradient_for_biases is None
    assert s.gradient_for_weights_layout == mpsnn.MPSCNNConvolutionWeightsLayout.ohwi


def test_gradient_state_in_batches_and_encode(device, rng):
    """encode_batch: one state object for the whole batch (MPSStateBatch of N times the same state) whose
    gradients are summed over the batch; encode with output_state_is_temporary gives a temporary state."""
    case = ConvCase(3, 6, 5, 3, 4, 3, 3)
    ds, w, b = conv_source(3, 4, 3, 3, rng)
    x, g = _data(rng, case, (6, 5))
    rdx, rdw, rdb = R.conv2d_gradient(x, w, g)
    _, _, _, grad = _build(_conv(ds))
    graph = labelled_graph(device, grad.result_image)
    labels = [h.label() for h in graph.source_image_handles]
    arrays = {'x': x, 'g': g}
    batches = [[mpsnn.MPSImage.from_numpy(np.ascontiguousarray(arrays[lab][i:i + 1])) for i in range(3)]
               for lab in labels]
    cb = device.make_command_queue().make_command_buffer()
    states = []
    out = graph.encode_batch(cb, batches, destination_states=states)
    cb.commit()
    cb.wait_until_completed()
    assert len(out) == 3 and len(states) == 1 and len(states[0]) == 3
    assert all(s is states[0][0] for s in states[0])
    for i in range(3):
        assert_close(out[i].numpy(), rdx[i:i + 1], "reduction", k=27)
    s = states[0][0]
    assert_close(s.gradient_for_weights.numpy().reshape(w.shape), rdw, "reduction", k=90)
    assert_close(s.gradient_for_biases.numpy(), rdb, "reduction", k=90)
    graph.output_state_is_temporary = True
    cb = device.make_command_queue().make_command_buffer()
    states = []
    graph.encode(cb, [mpsnn.MPSImage.from_numpy(a) for a in inputs_by_label(graph, arrays)], destination_states=states)
    cb.commit()
    cb.wait_until_completed()
    assert states[0].is_temporary
    assert_close(states[0].gradient_for_biases.numpy(), rdb, "reduction", k=90)


def test_reload_updates_the_data_gradient_weights(device, rng):
    """After reload_from_data_sources the data gradient uses the new weights (same plan)."""
    ds, w, b = conv_source(3, 4, 3, 3, rng)
    x, g = _data(rng, ConvCase(2, 5, 6, 3, 4, 3, 3), (5, 6))
    _, _, _, grad = _build(_conv(ds))
    graph = labelled_graph(device, grad.result_image)
    inputs = inputs_by_label(graph, {'x': x, 'g': g})
    assert_close(graph.run(inputs).numpy(), R.conv2d_gradient(x, w, g)[0], "reduction", k=36)
    w[...] = rng.standard_normal(w.shape).astype(np.float32)
    graph.reload_from_data_sources()
    assert_close(graph.run(inputs).numpy(), R.conv2d_gradient(x, w, g)[0], "reduction", k=36)
    assert graph._num_compiled_plans == 1


def test_conv_relu_chain_fused_and_unfused(device, rng):
    """x -> conv -> ReLU (fusable forward) -> y; the ReLU gradient reads the convolution's result, so the plan
    keeps it; the convolution gradient takes the ReLU gradient's result. Forward and both gradients in one
    graph equal the unfused plan and the oracle."""
    ds, w, b = conv_source(5, 6, 3, 3, rng, stride=(2, 2))
    x = rng.standard_normal((2, 9, 7, 5)).astype(np.float32)
    geo = R.window_geometry((9, 7), (3, 3), (2, 2), (1, 1), R.SIZE_SAME)
    g = rng.standard_normal((2,) + geo['out_hw'] + (6,)).astype(np.float32)
    h = R.conv2d(x, w, b, stride=(2, 2))
    h[np.abs(h) < 1e-3] = 0.5                      # keep away from the ReLU kink (see below)
    results = {}
    for fuse in (True, False):
        xn = mpsnn.MPSNNImageNode(handle=Handle('x'))
        gn = mpsnn.MPSNNImageNode(handle=Handle('g'))
        conv = mpsnn.MPSCNNConvolutionNode(source=xn, weights=ds)
        relu = mpsnn.MPSCNNNeuronReLUNode(source=conv.result_image)
        rgrad = relu.gradient_filter(with_source=gn)
        cgrad = conv.gradient_filter(with_source=rgrad.result_image)
        cgrad.result_state.export_from_graph = True
        graph = labelled_graph(device, [relu.result_image, cgrad.result_image], fuse)
        states = []
        y, dx = graph.run(inputs_by_label(graph, {'x': x, 'g': g}), destination_states=states)
        results[fuse] = (np.array(y.numpy()), np.array(dx.numpy()), states[0].gradient_for_weights.numpy().copy())
    hv = R.conv2d(x, w, b, stride=(2, 2))
    dh = R.neuron_gradient('relu', hv, g)
    rdx, rdw, _ = R.conv2d_gradient(x, w, dh, (2, 2))
    for fuse, (y, dx, dw) in results.items():
        assert_close(y, np.maximum(hv, 0), "reduction", k=45)
        assert_close(dx, rdx, "reduction", k=54)
        assert_close(dw.reshape(w.shape), rdw, "reduction", k=40)
    np.testing.assert_allclose(results[True][1], results[False][1], rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------
# bad input: typed errors naming the node

def test_wrong_gradient_shape_names_the_node(device, rng):
    ds, w, b = conv_source(3, 4, 3, 3, rng, stride=(2, 2))
    _, _, conv, grad = _build(_conv(ds))
    grad.label = "conv1.grad"
    graph = labelled_graph(device, grad.result_image)
    x = rng.standard_normal((2, 7, 6, 3)).astype(np.float32)
    g = rng.standard_normal((2, 4, 3, 4)).astype(np.float32)
    for bad in (g[:, :-1], g[..., :3], np.concatenate([g, g], axis=2)):
        with pytest.raises(mpsnn.ShapeError, match=r"\[convolution gradient 'conv1\.grad'\] source gradient is .*"
                                                  r"expected the size of \[convolution\]'s result, 3x4x4"):
            run_by_label(graph, {'x': x, 'g': np.ascontiguousarray(bad)})
    with pytest.raises(mpsnn.ShapeError, match=r"'conv1\.grad'\] source 1 has 2 images, source 0 has 1"):
        run_by_label(graph, {'x': x, 'g': np.ascontiguousarray(g[:1])})
    # the initializer may be given another source image than the forward node's: it must match that one
    x2 = mpsnn.MPSNNImageNode(handle=Handle('x2'))
    other = mpsnn.MPSCNNConvolutionGradientNode(source_gradient=grad.source_images[0], source_image=x2,
                                                convolution_gradient_state=conv.convolution_gradient_state)
    other.label = "conv1.grad"
    graph2 = labelled_graph(device, other.result_image)
    with pytest.raises(mpsnn.ShapeError, match=r"'conv1\.grad'\] source image 1 is 6x6x3; expected the forward source"):
        run_by_label(graph2, {'x': x, 'x2': np.ascontiguousarray(x[:, :6]), 'g': g})
    assert run_by_label(graph2, {'x': x, 'x2': x, 'g': g}).shape == x.shape
    run_by_label(graph, {'x': x, 'g': g})


def test_wrong_initializer_arguments(rng):
    ds, w, b = conv_source(3, 4, 3, 3, rng)
    xn, gn = mpsnn.MPSNNImageNode(), mpsnn.MPSNNImageNode()
    pool = mpsnn.MPSCNNPoolingMaxNode(source=xn, filter_size=2)
    conv = mpsnn.MPSCNNConvolutionNode(source=xn, weights=ds)
    with pytest.raises(mpsnn.DTypeError, match="MPSCNNConvolutionGradientStateNode"):
        mpsnn.MPSCNNConvolutionGradientNode(source_gradient=gn, source_image=xn,
                                            convolution_gradient_state=pool.result_state)
    with pytest.raises(mpsnn.MPSGraphError, match="convolution_gradient_state is None"):
        mpsnn.MPSCNNConvolutionGradientNode(source_gradient=gn, source_image=xn, convolution_gradient_state=None)
    with pytest.raises(mpsnn.DTypeError, match="MPSCNNConvolutionTransposeGradientStateNode"):
        mpsnn.MPSCNNConvolutionTransposeGradientNode(source_gradient=gn, source_image=xn,
                                                     convolution_transpose_gradient_state=conv.result_state)


def test_gradient_of_another_variant_and_mismatched_weights(device, rng):
    ds, w, b = conv_source(3, 4, 3, 3, rng)
    other, _, _ = conv_source(3, 4, 2, 2, rng)
    x = rng.standard_normal((1, 5, 5, 3)).astype(np.float32)
    g = rng.standard_normal((1, 5, 5, 4)).astype(np.float32)
    xn, gn, conv, _ = _build(_conv(ds))
    fc_grad = mpsnn.MPSCNNFullyConnectedGradientNode(source_gradient=gn, source_image=xn,
                                                     convolution_gradient_state=conv.convolution_gradient_state)
    fc_grad.label = "fc.grad"
    with pytest.raises(mpsnn.MPSGraphError, match=r"'fc\.grad'.*gradient of a fully connected"):
        run_by_label(labelled_graph(device, fc_grad.result_image), {'x': x, 'g': g})
    bad = mpsnn.MPSCNNConvolutionGradientNode(source_gradient=gn, source_image=xn,
                                              convolution_gradient_state=conv.convolution_gradient_state, weights=other)
    bad.label = "bad.grad"
    with pytest.raises(mpsnn.ShapeError, match=r"'bad\.grad'\] weights describe a 2x2 kernel"):
        run_by_label(labelled_graph(device, bad.result_image), {'x': x, 'g': g})


def test_no_gradient_for_sub_pixel_or_fused_neuron_sources(device, rng):
    d = mpsnn.MPSCNNSubPixelConvolutionDescriptor(kernel_width=3, kernel_height=3, input_feature_channels=3,
                                                  output_feature_channels=8)
    d.sub_pixel_scale_factor = 2
    sub = mpsnn.ArrayConvolutionDataSource(d, rng.standard_normal((8, 3, 3, 3)).astype(np.float32))
    relu = mpsnn.MPSNNNeuronDescriptor.cnn_neuron_descriptor(mpsnn.MPSCNNNeuronType.relu)
    fused, _, _ = conv_source(3, 4, 3, 3, rng, neuron=relu)
    x = rng.standard_normal((1, 5, 5, 3)).astype(np.float32)
    for ds, cout, hw, match in ((sub, 2, 10, "sub-pixel"), (fused, 4, 5, "fuses a relu neuron")):
        _, _, _, grad = _build(_conv(ds))
        g = rng.standard_normal((1, hw, hw, cout)).astype(np.float32)
        with pytest.raises(mpsnn.UnsupportedError, match=match):
            run_by_label(labelled_graph(device, grad.result_image), {'x': x, 'g': g})


# --------------------------------------------------------------------------------------------
# PyTorch autograd through the real graph

@pytest.mark.parametrize("case", CASES[:4], ids=str)
def test_convolution_gradient_vs_torch(case, device, rng):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    method = R.SIZE_SAME | R.ADD_REMAINDER_TO_BOTTOM_RIGHT
    geo = _geometry(case, method)
    x, g = _data(rng, case, geo['out_hw'])
    ds, w, b = conv_source(case.cin, case.cout, case.kh, case.kw, rng, case.stride, case.dilation, case.groups)
    xt = to_t(x).requires_grad_(True)
    wt = torch.from_numpy(np.ascontiguousarray(w.transpose(0, 3, 1, 2), np.float64)).requires_grad_(True)
    bt = torch.from_numpy(b.astype(np.float64)).requires_grad_(True)
    y = F.conv2d(torch_pad(xt, *geo['pads']), wt, bt, stride=case.stride, dilation=case.dilation, groups=case.groups)
    y.backward(to_t(g))
    _, _, _, grad = _build(_conv(ds, method))
    dx, dw, db = _run(device, grad, x, g)
    n_pix = case.n * geo['D_h'] * geo['D_w']
    assert_close(dx, from_t(xt.grad), "reduction", k=case.k)
    assert_close(dw.reshape(w.shape), wt.grad.permute(0, 2, 3, 1).numpy(), "reduction", k=n_pix)
    assert_close(db, bt.grad.numpy(), "reduction", k=n_pix)


def test_convolution_transpose_gradient_vs_torch(device, rng):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    n, h, w_, cin, cout, k, s = 2, 4, 5, 3, 5, (3, 3), (2, 2)
    ds, w, b = conv_source(cin, cout, k[0], k[1], rng, s)
    geo = R.window_geometry((h, w_), k, s, (1, 1), R.SIZE_FULL, reverse=True)   # PyTorch's default output
    x = rng.standard_normal((n, h, w_, cin)).astype(np.float32)
    g = rng.standard_normal((n,) + geo['out_hw'] + (cout,)).astype(np.float32)
    xt = to_t(x).requires_grad_(True)
    wt = torch.from_numpy(np.ascontiguousarray(np.flip(w, (1, 2)).transpose(3, 0, 1, 2), np.float64))
    wt.requires_grad_(True)
    bt = torch.from_numpy(b.astype(np.float64)).requires_grad_(True)
    F.conv_transpose2d(xt, wt, bt, stride=s).backward(to_t(g))
    _, _, _, grad = _build(_transpose(ds, R.SIZE_FULL))
    dx, dw, db = _run(device, grad, x, g)
    assert_close(dx, from_t(xt.grad), "reduction", k=45)
    assert_close(dw.reshape(w.shape), np.flip(wt.grad.numpy().transpose(1, 2, 3, 0), (1, 2)), "reduction", k=180)
    assert_close(db, bt.grad.numpy(), "reduction", k=180)


def test_fully_connected_gradient_vs_torch_linear(device, rng):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    ds, w, b = conv_source(5, 6, 3, 4, rng)
    x = rng.standard_normal((3, 3, 4, 5)).astype(np.float32)
    g = rng.standard_normal((3, 1, 1, 6)).astype(np.float32)
    xt = torch.from_numpy(x.reshape(3, -1).astype(np.float64)).requires_grad_(True)
    wt = torch.from_numpy(w.reshape(6, -1).astype(np.float64)).requires_grad_(True)
    F.linear(xt, wt).backward(torch.from_numpy(g.reshape(3, 6).astype(np.float64)))
    _, _, _, grad = _build(lambda s: mpsnn.MPSCNNFullyConnectedNode(source=s, weights=ds))
    dx, dw, db = _run(device, grad, x, g)
    assert_close(dx.reshape(3, -1), xt.grad.numpy(), "reduction", k=6)
    assert_close(dw.reshape(6, -1), wt.grad.numpy(), "reduction", k=3)


# --------------------------------------------------------------------------------------------
# what the gradient state records about the forward convolution (graph.md §5.2)

def test_gradient_state_describes_the_forward_convolution(device, rng):
    """source_width / source_height (MPSImageSizeEncodingState) and `convolution`: the forward kernel's class
    with the geometry it ran with, on the gradient node's state and on the forward node's exported state."""
    ds, w, b = conv_source(3, 4, 3, 2, rng, stride=(2, 1), dilation=(1, 2))
    fc_ds, _, _ = conv_source(3, 2, 5, 6, rng)
    method = R.SIZE_SAME | R.ADD_REMAINDER_TO_BOTTOM_RIGHT
    x = rng.standard_normal((2, 5, 6, 3)).astype(np.float32)
    for kind in ('convolution', 'fully connected', 'transpose'):
        if kind == 'convolution':
            make, cls = _conv(ds, method), mpsnn.MPSCNNConvolution
            geo = R.window_geometry((5, 6), (3, 2), (2, 1), (1, 2), method)
            out_hw, cout = geo['out_hw'], 4
        elif kind == 'fully connected':
            make, cls, out_hw, cout = (lambda s: mpsnn.MPSCNNFullyConnectedNode(source=s, weights=fc_ds)), \
                mpsnn.MPSCNNFullyConnected, (1, 1), 2
        else:
            make, cls = _transpose(ds), mpsnn.MPSCNNConvolutionTranspose
            out_hw, cout = R.window_geometry((5, 6), (3, 2), (2, 1), (1, 2), R.SIZE_SAME, reverse=True)['out_hw'], 4
        xn, gn, fwd, grad = _build(make)
        fwd.result_state.export_from_graph = True
        graph = labelled_graph(device, grad.result_image)
        states = []
        g = rng.standard_normal((2,) + tuple(out_hw) + (cout,)).astype(np.float32)
        graph.run(inputs_by_label(graph, {'x': x, 'g': g}), destination_states=states)
        assert len(states) == 2
        for s in states:
            assert (s.source_width, s.source_height) == (6, 5)
            k = s.convolution
            assert type(k) is cls
            if kind == 'convolution':
                assert (k.kernel_width, k.kernel_height, k.stride_in_pixels_x, k.stride_in_pixels_y) == (2, 3, 1, 2)
                assert (k.dilation_rate_x, k.dilation_rate_y) == (2, 1)
                # offset = floor(Ke/2) - pad_before (nodes.md §1.2)
                assert (k.offset.x, k.offset.y) == (3 // 2 - geo['pad'][1], 3 // 2 - geo['pad'][0])
                assert k.edge_mode == mpsnn.MPSImageEdgeMode.zero and not k.is_backwards
            elif kind == 'fully connected':
                assert (k.kernel_width, k.kernel_height) == (6, 5)
            else:
                assert k.is_backwards and (k.stride_in_pixels_x, k.stride_in_pixels_y) == (1, 2)
