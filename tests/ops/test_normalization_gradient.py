"""Gradient tests of batch and instance normalization (nodes.md §8.5, §8.6): MPSCNNBatchNormalizationGradientNode
in training (batch statistics) and inference modes, MPSCNNInstanceNormalizationGradientNode, against the float64
oracles over odd sizes, batches and channel counts not divisible by 4; gamma / beta gradients read from the
MPSCNNBatchNormalizationState / MPSCNNInstanceNormalizationGradientState the gradient nodes deliver; batch norm
after a convolution (not folded while training), fused and unfused plans; construction, training styles, errors
and PyTorch autograd (batch_norm / instance_norm in training mode)."""

from __future__ import annotations

import numpy as np
import pytest

import mpsnn
import reference as R
from conftest import assert_close, conv_source

from ._common import Handle, from_t, inputs_by_label, labelled_graph, run_by_label, to_t

FLAGS = mpsnn.MPSCNNBatchNormalizationFlags
EPS = 1e-3
SHAPES = [(2, 7, 9, 3), (3, 5, 4, 6), (1, 6, 7, 5), (4, 1, 1, 7)]


def _params(rng, c):
    gamma = rng.uniform(0.5, 1.5, c).astype(np.float32)
    beta = rng.standard_normal(c).astype(np.float32)
    mean = rng.standard_normal(c).astype(np.float32)
    var = rng.uniform(0.5, 2.0, c).astype(np.float32)
    return gamma, beta, mean, var


def _data(rng, shape):
    x = (rng.standard_normal(shape) * 1.7 + 0.4).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    return x, g


def _bn_source(gamma, beta, mean, var):
    return mpsnn.ArrayBatchNormalizationDataSource(gamma, beta, mean, var, epsilon=EPS)


def _build(kind, ds, how='filter', flags=None, style=None):
    """x, g input nodes, the forward node and its gradient node (its result state exported)."""
    xn = mpsnn.MPSNNImageNode(handle=Handle('x'))
    gn = mpsnn.MPSNNImageNode(handle=Handle('g'))
    if kind == 'batch':
        fwd = mpsnn.MPSCNNBatchNormalizationNode(source=xn, data_source=ds)
        if flags is not None:
            fwd.flags = flags
        cls = mpsnn.MPSCNNBatchNormalizationGradientNode
    else:
        fwd = mpsnn.MPSCNNInstanceNormalizationNode(source=xn, data_source=ds)
        cls = mpsnn.MPSCNNInstanceNormalizationGradientNode
    if style is not None:
        fwd.training_style = style
    grad = (fwd.gradient_filter(with_source=gn) if how == 'filter'
            else cls(source_gradient=gn, source_image=xn, gradient_state=fwd.result_state))
    grad.result_state.export_from_graph = True
    return xn, gn, fwd, grad


def _run(device, grad, x, g, fuse=True, results=None):
    graph = labelled_graph(device, results if results is not None else grad.result_image, fuse)
    states = []
    out = graph.run(inputs_by_label(graph, {'x': x, 'g': g}), destination_states=states)
    return out, states


def _vec(buf):
    return None if buf is None else np.array(buf.numpy())


# --------------------------------------------------------------------------------------------
# batch normalization

@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_batch_normalization_gradient_training(shape, device, rng):
    """Automatic flags with the state consumed: the forward uses the batch's statistics, the gradient
    differentiates them; the delivered state holds those statistics, gamma, beta and dγ, dβ."""
    c = shape[-1]
    gamma, beta, mean, var = _params(rng, c)
    x, g = _data(rng, shape)
    rdx, rdg, rdb = R.batch_norm_gradient(x, g, gamma, EPS)
    bmean, bvar = R.batch_norm_statistics(x)
    m = shape[0] * shape[1] * shape[2]
    for fuse in (True, False):
        _, _, _, grad = _build('batch', _bn_source(gamma, beta, mean, var))
        out, (s,) = _run(device, grad, x, g, fuse)
        assert isinstance(s, mpsnn.MPSCNNBatchNormalizationState) and isinstance(s, mpsnn.MPSNNGradientState)
        assert_close(out.numpy(), rdx, "reduction", k=m)
        assert_close(_vec(s.gradient_for_gamma()), rdg, "reduction", k=m)
        assert_close(_vec(s.gradient_for_beta()), rdb, "reduction", k=m)
        assert_close(_vec(s.mean()), bmean, "reduction", k=m)
        assert_close(_vec(s.variance()), bvar, "reduction", k=m)
        np.testing.assert_array_equal(_vec(s.gamma()), gamma)
        np.testing.assert_array_equal(_vec(s.beta()), beta)


@pytest.mark.parametrize("flags", [FLAGS.calculate_statistics_never, FLAGS.calculate_statistics_always], ids=str)
def test_batch_normalization_gradient_flags(flags, device, rng):
    shape = (3, 5, 6, 5)
    gamma, beta, mean, var = _params(rng, 5)
    x, g = _data(rng, shape)
    if flags == FLAGS.calculate_statistics_never:            # the data source's statistics: dX = γ G / σ
        ref = R.batch_norm_gradient(x, g, gamma, EPS, mean, var)
        smean, svar = mean, var
    else:
        ref = R.batch_norm_gradient(x, g, gamma, EPS)
        smean, svar = R.batch_norm_statistics(x)
    _, _, _, grad = _build('batch', _bn_source(gamma, beta, mean, var), flags=flags)
    out, (s,) = _run(device, grad, x, g)
    assert_close(out.numpy(), ref[0], "reduction", k=90)
    assert_close(_vec(s.gradient_for_gamma()), ref[1], "reduction", k=90)
    assert_close(_vec(s.gradient_for_beta()), ref[2], "reduction", k=90)
    assert_close(_vec(s.mean()), smean, "reduction", k=90)
    assert_close(_vec(s.variance()), svar, "reduction", k=90)


def test_batch_normalization_forward_and_gradient_in_one_graph(device, rng):
    """The forward result in the same graph is normalized with the batch's statistics (training)."""
    shape = (2, 6, 5, 7)
    gamma, beta, mean, var = _params(rng, 7)
    x, g = _data(rng, shape)
    for fuse in (True, False):
        _, _, fwd, grad = _build('batch', _bn_source(gamma, beta, mean, var))
        (y, dx), _ = _run(device, grad, x, g, fuse, [fwd.result_image, grad.result_image])
        assert_close(y.numpy(), R.batch_norm_training(x, gamma, beta, EPS), "reduction", k=60)
        assert_close(dx.numpy(), R.batch_norm_gradient(x, g, gamma, EPS)[0], "reduction", k=60)


@pytest.mark.parametrize("relu", [False, True], ids=["conv-bn", "conv-bn-relu"])
def test_batch_normalization_after_convolution_is_not_folded_while_training(relu, device, rng):
    """conv -> BN (-> ReLU): in inference the BN folds into the convolution; with its state consumed by a gradient
    it normalizes with the batch's statistics, so it must stay a step. Forward, BN gradient and the convolution's
    weight gradient fused and unfused equal the oracle."""
    ds, w, b = conv_source(3, 5, 3, 3, rng)
    gamma, beta, mean, var = _params(rng, 5)
    x = rng.standard_normal((3, 6, 7, 3)).astype(np.float32)
    g = rng.standard_normal((3, 6, 7, 5)).astype(np.float32)
    h = R.conv2d(x, w, b)
    y = R.batch_norm_training(h, gamma, beta, EPS)
    gy = R.neuron_gradient('relu', y, g) if relu else g
    dh, dgamma, dbeta = R.batch_norm_gradient(h, gy, gamma, EPS)
    _, dw, db = R.conv2d_gradient(x, w, dh)
    for fuse in (True, False):
        xn = mpsnn.MPSNNImageNode(handle=Handle('x'))
        gn = mpsnn.MPSNNImageNode(handle=Handle('g'))
        conv = mpsnn.MPSCNNConvolutionNode(source=xn, weights=ds)
        bn = mpsnn.MPSCNNBatchNormalizationNode(source=conv.result_image,
                                                data_source=_bn_source(gamma, beta, mean, var))
        top = mpsnn.MPSCNNNeuronReLUNode(source=bn.result_image) if relu else bn
        gsrc = top.gradient_filter(with_source=gn).result_image if relu else gn
        bgrad = bn.gradient_filter(with_source=gsrc)
        cgrad = conv.gradient_filter(with_source=bgrad.result_image)
        bgrad.result_state.export_from_graph = True
        cgrad.result_state.export_from_graph = True
        graph = labelled_graph(device, [top.result_image, cgrad.result_image], fuse)
        states = []
        out, dx = graph.run(inputs_by_label(graph, {'x': x, 'g': g}), destination_states=states)
        bs, cs = states
        assert_close(out.numpy(), np.maximum(y, 0) if relu else y, "reduction", k=27 * 6)
        assert_close(_vec(bs.gradient_for_gamma()), dgamma, "reduction", k=126)
        assert_close(_vec(bs.gradient_for_beta()), dbeta, "reduction", k=126)
        assert_close(cs.gradient_for_weights.numpy().reshape(w.shape), dw, "reduction", k=126 * 5)
        assert_close(cs.gradient_for_biases.numpy(), db, "reduction", k=126)


def test_exported_forward_state_holds_the_statistics(device, rng):
    """Without a gradient: the forward batch normalization's exported state is an MPSCNNBatchNormalizationState
    with the statistics it normalized with, and no gamma, beta or gradients (None). An exported state counts as
    consumed (a training graph), so automatic flags use the batch's statistics; `never` the data source's."""
    gamma, beta, mean, var = _params(rng, 6)
    x = rng.standard_normal((2, 4, 5, 6)).astype(np.float32)
    bmean, bvar = R.batch_norm_statistics(x)
    for flags in (FLAGS.default, FLAGS.calculate_statistics_never):
        xn = mpsnn.MPSNNImageNode()
        bn = mpsnn.MPSCNNBatchNormalizationNode(source=xn, data_source=_bn_source(gamma, beta, mean, var))
        bn.flags = flags
        bn.result_state.export_from_graph = True
        for fuse in (True, False):
            graph = mpsnn.MPSNNGraph(device, bn.result_image)
            graph.fusion_enabled = fuse
            states = []
            y = graph.run([x], destination_states=states)
            (s,) = states
            assert isinstance(s, mpsnn.MPSCNNBatchNormalizationState)
            assert s.gradient_for_gamma() is None and s.gradient_for_beta() is None and s.gamma() is None
            if flags == FLAGS.default:
                assert_close(_vec(s.mean()), bmean, "reduction", k=40)
                assert_close(_vec(s.variance()), bvar, "reduction", k=40)
                assert_close(y.numpy(), R.batch_norm_training(x, gamma, beta, EPS), "reduction", k=40)
            else:
                np.testing.assert_array_equal(_vec(s.mean()), mean)
                np.testing.assert_array_equal(_vec(s.variance()), var)
                assert_close(y.numpy(), R.batch_norm_inference(x, mean, var, gamma, beta, EPS), "reduction", k=1)


def test_batch_normalization_state_reset(device, rng):
    gamma, beta, mean, var = _params(rng, 3)
    x, g = _data(rng, (2, 4, 4, 3))
    _, _, _, grad = _build('batch', _bn_source(gamma, beta, mean, var))
    _, (s,) = _run(device, grad, x, g)
    assert np.abs(_vec(s.gradient_for_beta())).sum() > 0
    s.reset()
    assert np.all(_vec(s.gradient_for_gamma()) == 0) and np.all(_vec(s.gradient_for_beta()) == 0)
    assert np.abs(_vec(s.variance())).sum() > 0


# --------------------------------------------------------------------------------------------
# instance normalization

@pytest.mark.parametrize("shape", SHAPES + [(2, 9, 8, 21)], ids=str)
def test_instance_normalization_gradient(shape, device, rng):
    c = shape[-1]
    gamma, beta, _, _ = _params(rng, c)
    x, g = _data(rng, shape)
    rdx, rdg, rdb = R.instance_norm_gradient(x, g, gamma, EPS)
    ds = mpsnn.ArrayInstanceNormalizationDataSource(gamma, beta, epsilon=EPS)
    for fuse in (True, False):
        _, _, _, grad = _build('instance', ds)
        out, (s,) = _run(device, grad, x, g, fuse)
        assert isinstance(s, mpsnn.MPSCNNInstanceNormalizationGradientState)
        k = shape[1] * shape[2]
        assert_close(out.numpy(), rdx, "reduction", k=k)
        assert_close(_vec(s.gradient_for_gamma), rdg, "reduction", k=k * shape[0])
        assert_close(_vec(s.gradient_for_beta), rdb, "reduction", k=k * shape[0])
        np.testing.assert_array_equal(_vec(s.gamma), gamma)
        np.testing.assert_array_equal(_vec(s.beta), beta)


def test_instance_normalization_forward_and_gradient_in_batches(device, rng):
    gamma, beta, _, _ = _params(rng, 5)
    x, g = _data(rng, (3, 6, 5, 5))
    ds = mpsnn.ArrayInstanceNormalizationDataSource(gamma, beta, epsilon=EPS)
    _, _, fwd, grad = _build('instance', ds)
    grad.result_image.image_allocator = mpsnn.MPSImage.default_allocator()     # result 2: read by the test
    graph = labelled_graph(device, [fwd.result_image, grad.result_image])
    arrays = {'x': x, 'g': g}
    batches = [[mpsnn.MPSImage.from_numpy(np.ascontiguousarray(arrays[h.label()][i:i + 1])) for i in range(3)]
               for h in graph.source_image_handles]
    cb = device.make_command_queue().make_command_buffer()
    inter, states = [], []
    ys = graph.encode_batch(cb, batches, intermediate_images=inter, destination_states=states)
    cb.commit()
    cb.wait_until_completed()
    rdx, rdg, _ = R.instance_norm_gradient(x, g, gamma, EPS)
    yref = R.instance_norm(x, gamma, beta, EPS)
    for i in range(3):
        assert_close(ys[i].numpy(), yref[i:i + 1], "reduction", k=30)
        assert_close(inter[0][i].numpy(), rdx[i:i + 1], "reduction", k=30)
    assert len(states[0]) == 3 and all(s is states[0][0] for s in states[0])
    assert_close(_vec(states[0][0].gradient_for_gamma), rdg, "reduction", k=90)


# --------------------------------------------------------------------------------------------
# construction, classes, training style

@pytest.mark.parametrize("kind", ["batch", "instance"])
def test_constructor_equals_gradient_filter_and_classes(kind, device, rng):
    gamma, beta, mean, var = _params(rng, 5)
    ds = (_bn_source(gamma, beta, mean, var) if kind == 'batch'
          else mpsnn.ArrayInstanceNormalizationDataSource(gamma, beta, epsilon=EPS))
    x, g = _data(rng, (2, 4, 6, 5))
    cls = (mpsnn.MPSCNNBatchNormalizationGradientNode if kind == 'batch'
           else mpsnn.MPSCNNInstanceNormalizationGradientNode)
    results = []
    for how in ('filter', 'init'):
        xn, gn, fwd, grad = _build(kind, ds, how, style=mpsnn.MPSNNTrainingStyle.update_device_cpu)
        assert type(grad) is cls and isinstance(grad, mpsnn.MPSNNGradientFilterNode)
        assert grad.training_style == mpsnn.MPSNNTrainingStyle.update_device_cpu
        assert isinstance(fwd.result_state, mpsnn.MPSNNGradientStateNode)
        assert isinstance(grad.result_state, mpsnn.MPSNNGradientStateNode)
        out, (s,) = _run(device, grad, x, g)
        gg = s.gradient_for_gamma() if kind == 'batch' else s.gradient_for_gamma
        results.append((np.array(out.numpy()), _vec(gg)))
        with pytest.raises(NotImplementedError):
            grad.gradient_filter(with_source=gn)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", ["batch", "instance"])
def test_training_style_none_gives_no_parameter_gradients(kind, device, rng):
    gamma, beta, mean, var = _params(rng, 4)
    ds = (_bn_source(gamma, beta, mean, var) if kind == 'batch'
          else mpsnn.ArrayInstanceNormalizationDataSource(gamma, beta, epsilon=EPS))
    x, g = _data(rng, (2, 5, 5, 4))
    _, _, _, grad = _build(kind, ds, style=mpsnn.MPSNNTrainingStyle.update_device_none)
    out, (s,) = _run(device, grad, x, g)
    if kind == 'batch':
        assert s.gradient_for_gamma() is None and s.gradient_for_beta() is None
        ref = R.batch_norm_gradient(x, g, gamma, EPS)[0]
    else:
        assert s.gradient_for_gamma is None and s.gradient_for_beta is None
        ref = R.instance_norm_gradient(x, g, gamma, EPS)[0]
    assert_close(out.numpy(), ref, "reduction", k=50)


@pytest.mark.parametrize("kind", ["batch", "instance"])
def test_parameter_gradients_without_the_data_gradient(kind, device, rng):
    gamma, beta, mean, var = _params(rng, 6)
    ds = (_bn_source(gamma, beta, mean, var) if kind == 'batch'
          else mpsnn.ArrayInstanceNormalizationDataSource(gamma, beta, epsilon=EPS))
    x, g = _data(rng, (3, 4, 5, 6))
    _, _, _, grad = _build(kind, ds)
    graph = mpsnn.MPSNNGraph(device, grad.result_image, False)
    graph.poison_temporaries = True
    states = []
    assert graph.run(inputs_by_label(graph, {'x': x, 'g': g}), destination_states=states) is None
    ref = R.batch_norm_gradient(x, g, gamma, EPS) if kind == 'batch' else R.instance_norm_gradient(x, g, gamma, EPS)
    (s,) = states
    gg = s.gradient_for_gamma() if kind == 'batch' else s.gradient_for_gamma
    assert_close(_vec(gg), ref[1], "reduction", k=60)


# --------------------------------------------------------------------------------------------
# bad input

@pytest.mark.parametrize("kind", ["batch", "instance"])
def test_wrong_gradient_shape_names_the_node(kind, device, rng):
    gamma, beta, mean, var = _params(rng, 3)
    ds = (_bn_source(gamma, beta, mean, var) if kind == 'batch'
          else mpsnn.ArrayInstanceNormalizationDataSource(gamma, beta, epsilon=EPS))
    _, _, _, grad = _build(kind, ds)
    grad.label = "norm.grad"
    graph = labelled_graph(device, grad.result_image)
    x, g = _data(rng, (2, 5, 4, 3))
    for bad in (g[:, 1:], g[..., :2]):
        with pytest.raises(mpsnn.ShapeError, match=r"normalization gradient 'norm\.grad'\] source gradient is"):
            run_by_label(graph, {'x': x, 'g': np.ascontiguousarray(bad)})


def test_gradient_state_of_another_node_is_refused(rng):
    xn, gn = mpsnn.MPSNNImageNode(), mpsnn.MPSNNImageNode()
    pool = mpsnn.MPSCNNPoolingMaxNode(source=xn, filter_size=2)
    with pytest.raises(mpsnn.MPSGraphError, match="not the result_state of a batch normalization node"):
        mpsnn.MPSCNNBatchNormalizationGradientNode(source_gradient=gn, source_image=xn,
                                                   gradient_state=pool.result_state)
    with pytest.raises(mpsnn.MPSGraphError, match="not the result_state of a instance normalization node"):
        mpsnn.MPSCNNInstanceNormalizationGradientNode(source_gradient=gn, source_image=xn,
                                                      gradient_state=pool.result_state)
    with pytest.raises(mpsnn.MPSGraphError, match="gradient_state is None"):
        mpsnn.MPSCNNBatchNormalizationGradientNode(source_gradient=gn, source_image=xn, gradient_state=None)


# --------------------------------------------------------------------------------------------
# PyTorch autograd

def test_batch_normalization_gradient_vs_torch_training(device, rng):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    gamma, beta, mean, var = _params(rng, 7)
    x, g = _data(rng, (3, 6, 5, 7))
    xt = to_t(x).requires_grad_(True)
    gt = torch.from_numpy(gamma.astype(np.float64)).requires_grad_(True)
    bt = torch.from_numpy(beta.astype(np.float64)).requires_grad_(True)
    F.batch_norm(xt, None, None, gt, bt, training=True, eps=EPS).backward(to_t(g))
    _, _, _, grad = _build('batch', _bn_source(gamma, beta, mean, var))
    out, (s,) = _run(device, grad, x, g)
    assert_close(out.numpy(), from_t(xt.grad), "reduction", k=90)
    assert_close(_vec(s.gradient_for_gamma()), gt.grad.numpy(), "reduction", k=90)
    assert_close(_vec(s.gradient_for_beta()), bt.grad.numpy(), "reduction", k=90)


def test_instance_normalization_gradient_vs_torch(device, rng):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    gamma, beta, _, _ = _params(rng, 6)
    x, g = _data(rng, (3, 5, 7, 6))
    xt = to_t(x).requires_grad_(True)
    gt = torch.from_numpy(gamma.astype(np.float64)).requires_grad_(True)
    bt = torch.from_numpy(beta.astype(np.float64)).requires_grad_(True)
    F.instance_norm(xt, weight=gt, bias=bt, eps=EPS).backward(to_t(g))
    _, _, _, grad = _build('instance', mpsnn.ArrayInstanceNormalizationDataSource(gamma, beta, epsilon=EPS))
    out, (s,) = _run(device, grad, x, g)
    assert_close(out.numpy(), from_t(xt.grad), "reduction", k=35)
    assert_close(_vec(s.gradient_for_gamma), gt.grad.numpy(), "reduction", k=105)
    assert_close(_vec(s.gradient_for_beta), bt.grad.numpy(), "reduction", k=105)
