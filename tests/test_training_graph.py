"""training_graph (graph.md §1.9): structure (seed, reverse traversal, fan-out additions, stop_gradient,
the node handler with its arguments and pruning, default handle copying, terminals in creation order,
None when nothing is created, the state-link limitation) and numerics of training graphs built from the
kinds that have gradient nodes (pooling, neurons, losses) against PyTorch autograd, run through the
single- and multi-result MPSNNGraph initializers and with result_image_is_needed=False."""

from __future__ import annotations

import numpy as np
import pytest

import mpsnn
from conftest import assert_close
from ops._common import Handle
from reference import loss as RL

HWC = mpsnn.MPSDataLayout.HeightxWidthxFeatureChannels


def mse_sum():
    return mpsnn.MPSCNNLossDescriptor(mpsnn.MPSCNNLossType.mean_squared_error, mpsnn.MPSCNNReductionType.sum)


def labels(device, t):
    n, h, w, c = t.shape
    data = mpsnn.MPSCNNLossDataDescriptor(np.ascontiguousarray(t, np.float32), HWC, (w, h, c))
    return mpsnn.MPSCNNLossLabels(device, data)


def chain():
    """x -> max pool -> ReLU -> MSE loss, with handles on the images."""
    x = mpsnn.MPSNNImageNode(handle=Handle('x'))
    pool = mpsnn.MPSCNNPoolingMaxNode(source=x, filter_size=2)
    pool.result_image.handle = Handle('pooled')
    relu = mpsnn.MPSCNNNeuronReLUNode(source=pool.result_image)
    relu.result_image.handle = Handle('activated')
    loss = mpsnn.MPSCNNLossNode(source=relu.result_image, loss_descriptor=mse_sum())
    return x, pool, relu, loss


def test_chain_structure_and_default_handler():
    x, pool, relu, loss = chain()
    terminals = loss.training_graph()
    assert len(terminals) == 1
    pool_grad = terminals[0]
    assert isinstance(pool_grad, mpsnn.MPSCNNPoolingMaxGradientNode)
    relu_grad = pool_grad.source_images[0].parent
    assert isinstance(relu_grad, mpsnn.MPSCNNNeuronGradientNode)
    # the loss is its own gradient: the ReLU gradient reads the loss's result, then the forward source
    assert relu_grad.source_images[0] is loss.result_image or relu_grad.source_images[0].parent is loss
    assert relu_grad.source_images[1].parent is pool
    assert pool_grad.source_images[1] is x
    # default handler: the forward source's handle on the gradient's result
    assert pool_grad.result_image.handle.label() == 'x'
    assert relu_grad.result_image.handle.label() == 'pooled'


def test_handler_arguments_in_creation_order():
    x, pool, relu, loss = chain()
    calls = []

    def handler(gradient_node, inference_node, inference_source, gradient_source):
        calls.append((gradient_node, inference_node, inference_source, gradient_source))
        gradient_node.result_image.format = mpsnn.MPSImageFeatureChannelFormat.float32

    terminals = loss.training_graph(node_handler=handler)
    assert [type(c[0]) for c in calls] == [mpsnn.MPSCNNNeuronGradientNode, mpsnn.MPSCNNPoolingMaxGradientNode]
    (g1, f1, s1, in1), (g2, f2, s2, in2) = calls
    assert f1 is relu and f2 is pool
    assert s1.parent is pool and s2 is x
    assert in1.parent is loss and in2.parent is g1
    assert terminals[0] is g2
    assert g1.result_image.format == mpsnn.MPSImageFeatureChannelFormat.float32
    assert g1.result_image.handle is None  # a handler replaces the default one


def test_handler_pruning_and_stop_gradient():
    x, pool, relu, loss = chain()

    def prune(gradient_node, inference_node, inference_source, gradient_source):
        if inference_node is relu:
            inference_source.stop_gradient = True  # nothing beyond the pooled image

    terminals = loss.training_graph(node_handler=prune)
    assert [type(t) for t in terminals] == [mpsnn.MPSCNNNeuronGradientNode]

    # stop_gradient on the pooled image: its only consumer, the ReLU, trains nothing and would compute
    # only the gradient of that image, so it gets no gradient node (graph.md §1.9 step 5) and nothing is
    # created; the pooling above it neither
    x, pool, relu, loss = chain()
    pool.result_image.stop_gradient = True
    assert loss.training_graph() is None
    # a stop_gradient prediction: nothing is created
    x, pool, relu, loss = chain()
    relu.result_image.stop_gradient = True
    assert loss.training_graph() is None
    # a loss on a graph input: nothing to create either
    assert mpsnn.MPSCNNLossNode(source=mpsnn.MPSNNImageNode(), loss_descriptor=mse_sum()).training_graph() is None


def test_seed_of_a_non_loss_node_and_with_source_gradient():
    x, pool, relu, loss = chain()
    # no seed: the node's own result feeds its gradient (graph.md §1.9 step 1)
    terminals = relu.training_graph()
    relu_grad = terminals[0].source_images[0].parent
    assert relu_grad.source_images[0] is relu.result_image
    g = mpsnn.MPSNNImageNode(handle=Handle('dL/dy'))
    terminals = relu.training_graph(with_source_gradient=g)
    assert terminals[0].source_images[0].parent.source_images[0] is g
    # a loss seeded with another image uses it as its source's gradient
    terminals = loss.training_graph(with_source_gradient=g)
    assert terminals[0].source_images[0].parent.source_images[0] is g


def test_node_without_gradient_on_the_path():
    x = mpsnn.MPSNNImageNode()
    scale = mpsnn.MPSNNBilinearScaleNode(source=x, output_size=(4, 4))
    relu = mpsnn.MPSCNNNeuronSigmoidNode(source=scale.result_image)
    loss = mpsnn.MPSCNNLossNode(source=relu.result_image, loss_descriptor=mse_sum())
    with pytest.raises(mpsnn.UnsupportedError, match=r"\[scale\] has no gradient node in MPS; mark its result "):
        loss.training_graph()
    scale.result_image.stop_gradient = True
    assert loss.training_graph() is None
    # a gradient-less node above the stop_gradient image on a longer path
    relu2 = mpsnn.MPSCNNNeuronReLUNode(source=relu.result_image)
    loss2 = mpsnn.MPSCNNLossNode(source=relu2.result_image, loss_descriptor=mse_sum())
    assert [type(t) for t in loss2.training_graph()] == [mpsnn.MPSCNNNeuronGradientNode]


def test_gradient_nodes_have_no_training_graph_seed_checks():
    x, pool, relu, loss = chain()
    (pool_grad,) = loss.training_graph()
    with pytest.raises(NotImplementedError, match="gradients of gradients"):
        pool_grad.training_graph()


# ---- numerics against PyTorch autograd ------------------------------------------------------

def _network(x):
    """x -> tanh -> 3x3/2 max pool -> sigmoid -> 2x2/1 average pool -> ReLU (odd sizes)."""
    tanh = mpsnn.MPSCNNNeuronTanHNode(source=x)
    mp = mpsnn.MPSCNNPoolingMaxNode(source=tanh.result_image, kernel_width=3, kernel_height=3, stride_in_pixels_x=2,
                                    stride_in_pixels_y=2)
    mp.padding_policy = mpsnn.MPSNNDefaultPadding.padding_with_method(mpsnn.MPSNNPaddingMethod.size_valid_only)
    sig = mpsnn.MPSCNNNeuronSigmoidNode(source=mp.result_image)
    ap = mpsnn.MPSCNNPoolingAverageNode(source=sig.result_image, kernel_width=2, kernel_height=2, stride_in_pixels_x=1,
                                        stride_in_pixels_y=1)
    ap.padding_policy = mpsnn.MPSNNDefaultPadding.padding_with_method(mpsnn.MPSNNPaddingMethod.size_valid_only)
    return mpsnn.MPSCNNNeuronReLUNode(source=ap.result_image)


def _torch_network(torch, xt):
    F = torch.nn.functional
    return F.relu(F.avg_pool2d(torch.sigmoid(F.max_pool2d(torch.tanh(xt), 3, 2)), 2, 1))


@pytest.mark.parametrize('loss_type', [RL.SOFTMAX_CE, RL.MSE, RL.HUBER])
def test_training_graph_gradient_matches_torch(device, loss_type):
    torch = pytest.importorskip('torch')
    F = torch.nn.functional
    rng = np.random.default_rng(7)
    n, h, w, c = 2, 11, 9, 5  # batch 2, odd sizes, 5 channels
    xv = rng.standard_normal((n, h, w, c)).astype(np.float32)
    x = mpsnn.MPSNNImageNode(handle=Handle('x'))
    out = _network(x)
    T = {RL.SOFTMAX_CE: mpsnn.MPSCNNLossType.soft_max_cross_entropy, RL.MSE: mpsnn.MPSCNNLossType.mean_squared_error,
         RL.HUBER: mpsnn.MPSCNNLossType.huber}[loss_type]
    d = mpsnn.MPSCNNLossDescriptor(T, mpsnn.MPSCNNReductionType.sum)
    d.weight = 1 / n
    loss = mpsnn.MPSCNNLossNode(source=out.result_image, loss_descriptor=d)
    (terminal,) = loss.training_graph()
    g = mpsnn.MPSNNGraph(device, terminal.result_image)
    g.poison_temporaries = True
    assert g.source_image_handles[0].label() == 'x' and len(g.source_state_handles) == 1

    xt = torch.tensor(xv, dtype=torch.float64).permute(0, 3, 1, 2).requires_grad_()
    yt = _torch_network(torch, xt)
    tv = rng.random(yt.permute(0, 2, 3, 1).shape)
    if loss_type == RL.SOFTMAX_CE:
        tv /= tv.sum(-1, keepdims=True)
    tt = torch.tensor(tv).permute(0, 3, 1, 2)
    if loss_type == RL.SOFTMAX_CE:
        total = -(tt * F.log_softmax(yt, 1)).sum() / n
    elif loss_type == RL.MSE:
        total = F.mse_loss(yt, tt, reduction='sum') / n
    else:
        total = F.huber_loss(yt, tt, reduction='sum') / n
    total.backward()
    lab = labels(device, tv)
    for fuse in (True, False):
        g.fusion_enabled = fuse
        dx = g.run([xv], source_states=[lab]).numpy()
        assert_close(dx, xt.grad.permute(0, 2, 3, 1).numpy(), 'reduction', k=9)
        per_image = []
        for i in range(n):
            yi, ti = yt[i:i + 1].detach(), tt[i:i + 1]
            if loss_type == RL.SOFTMAX_CE:
                per_image.append(-(ti * F.log_softmax(yi, 1)).sum().item() / n)
            elif loss_type == RL.MSE:
                per_image.append(F.mse_loss(yi, ti, reduction='sum').item() / n)
            else:
                per_image.append(F.huber_loss(yi, ti, reduction='sum').item() / n)
        assert_close(lab.loss_image().numpy().ravel(), per_image, 'reduction', k=yt[0].numel())


def test_multi_result_graph_and_result_not_needed(device, rng):
    x, pool, relu, loss = chain()
    (pool_grad,) = loss.training_graph()
    relu_grad = pool_grad.source_images[0].parent
    xv = rng.standard_normal((2, 6, 6, 3)).astype(np.float32)
    t = rng.standard_normal((2, 3, 3, 3))
    single = mpsnn.MPSNNGraph(device, pool_grad.result_image)
    lab = labels(device, t)
    dx = single.run([xv], source_states=[lab]).numpy()
    loss_value = lab.loss_image().numpy().copy()
    # several gradient results at once
    multi = mpsnn.MPSNNGraph(device, result_images=[pool_grad.result_image, relu_grad.result_image])
    both = multi.run([xv], source_states=[lab])
    np.testing.assert_array_equal(both[0].numpy(), dx)
    pooled = xv.reshape(2, 3, 2, 3, 2, 3).max((2, 4))
    expected_relu_grad = 2 * (np.maximum(pooled, 0) - t) * (pooled > 0)
    assert_close(both[1].numpy(), expected_relu_grad, 'reduction', k=1)
    # the result is not needed: encode returns None, the loss (a side effect) is still computed
    unneeded = mpsnn.MPSNNGraph(device, pool_grad.result_image, result_image_is_needed=False)
    assert not unneeded.result_image_is_needed
    lab2 = labels(device, t)
    assert unneeded.run([xv], source_states=[lab2]) is None
    np.testing.assert_array_equal(lab2.loss_image().numpy(), loss_value)
    cb = mpsnn.MPSCommandBuffer(command_queue=device.make_command_queue())
    assert unneeded.encode(cb, [mpsnn.MPSImage.from_numpy(xv)], source_states=[lab2]) is None
    cb.commit()
    cb.wait_until_completed()
    np.testing.assert_array_equal(lab2.loss_image().numpy(), loss_value)


def test_a_graph_without_results_or_side_effects_is_refused(device):
    x, pool, relu, loss = chain()
    with pytest.raises(mpsnn.MPSGraphError, match="would do nothing"):
        mpsnn.MPSNNGraph(device, relu.result_image, result_image_is_needed=False)


# ---- fan-out and joins: need the arithmetic / concatenation gradients ---------------------------

def _residual():
    """x -> ReLU -> r; r -> max pool(1x1) -> a; r -> sigmoid -> b; a + b -> loss: r fans out to two
    consumers, and the addition joins them."""
    x = mpsnn.MPSNNImageNode(handle=Handle('x'))
    relu = mpsnn.MPSCNNNeuronReLUNode(source=x)
    relu.result_image.handle = Handle('r')
    pool = mpsnn.MPSCNNPoolingMaxNode(source=relu.result_image, filter_size=1)
    sig = mpsnn.MPSCNNNeuronSigmoidNode(source=relu.result_image)
    add = mpsnn.MPSNNAdditionNode(left_source=pool.result_image, right_source=sig.result_image)
    loss = mpsnn.MPSCNNLossNode(source=add.result_image, loss_descriptor=mse_sum())
    return x, relu, pool, sig, add, loss


def test_fan_out_is_summed_by_additions_in_consumer_order():
    x, relu, pool, sig, add, loss = _residual()
    calls = []
    terminals = loss.training_graph(node_handler=lambda g, f, s, i: calls.append((g, f, s, i)))
    sums = [c for c in calls if c[1] is None]
    assert len(sums) == 1
    summed, _, source, left = sums[0]
    assert isinstance(summed, mpsnn.MPSNNAdditionNode) and source is relu.result_image
    # the sum's operands: the sigmoid gradient (created first: the sigmoid comes later in the forward
    # order), then the pooling gradient
    order = [c[1] for c in calls]
    assert order.index(sig) < order.index(pool)
    assert summed.source_images[0].parent.__class__ is mpsnn.MPSCNNNeuronGradientNode
    assert isinstance(summed.source_images[1].parent, mpsnn.MPSCNNPoolingMaxGradientNode)
    assert left is summed.source_images[0]
    assert [type(t) for t in terminals] == [mpsnn.MPSCNNNeuronGradientNode]
    assert terminals[0].source_images[0] is summed.result_image


def test_fan_out_numerics_match_torch(device, rng):
    torch = pytest.importorskip('torch')
    x, relu, pool, sig, add, loss = _residual()
    (terminal,) = loss.training_graph()
    xv = rng.standard_normal((2, 5, 7, 3)).astype(np.float32)
    tv = rng.standard_normal((2, 5, 7, 3))
    dx = mpsnn.MPSNNGraph(device, terminal.result_image).run([xv], source_states=[labels(device, tv)]).numpy()
    xt = torch.tensor(xv, dtype=torch.float64).requires_grad_()
    r = torch.relu(xt)
    ((r + torch.sigmoid(r) - torch.tensor(tv)) ** 2).sum().backward()
    assert_close(dx, xt.grad.numpy(), 'reduction', k=3)


def test_terminals_of_several_inputs_in_creation_order():
    a = mpsnn.MPSNNImageNode(handle=Handle('a'))
    b = mpsnn.MPSNNImageNode(handle=Handle('b'))
    ra = mpsnn.MPSCNNNeuronReLUNode(source=a)
    tb = mpsnn.MPSCNNNeuronTanHNode(source=b)
    add = mpsnn.MPSNNAdditionNode(left_source=ra.result_image, right_source=tb.result_image)
    loss = mpsnn.MPSCNNLossNode(source=add.result_image, loss_descriptor=mse_sum())
    terminals = loss.training_graph()
    # reverse topological order: tanh (the later source in the forward order) first
    assert [t.result_image.handle.label() for t in terminals] == ['b', 'a']
    # b stops the gradient: the tanh (trains nothing) gets no gradient node, so the addition's gradient
    # for the tanh's result is a terminal, created before the ReLU's
    tb.result_image.handle = Handle('tanh')
    b.stop_gradient = True
    assert [t.result_image.handle.label() for t in loss.training_graph()] == ['tanh', 'a']


def test_training_style_is_copied(rng):
    from conftest import conv_source

    x = mpsnn.MPSNNImageNode()
    ds, _, _ = conv_source(3, 4, 3, 3, rng)
    conv = mpsnn.MPSCNNConvolutionNode(source=x, weights=ds)
    conv.training_style = mpsnn.MPSNNTrainingStyle.update_device_cpu
    loss = mpsnn.MPSCNNLossNode(source=conv.result_image, loss_descriptor=mse_sum())
    (grad,) = loss.training_graph()
    assert grad.training_style == mpsnn.MPSNNTrainingStyle.update_device_cpu
    # a trainable consumer of a stop_gradient image still gets its gradient node (for its parameters)
    x.stop_gradient = True
    (grad,) = loss.training_graph()
    assert grad.training_style == mpsnn.MPSNNTrainingStyle.update_device_cpu


def test_convolution_network_matches_torch(device, rng):
    # conv 3x3 (5 -> 6) -> ReLU -> 2x2 max pool -> softmax cross entropy: dL/dx and the weight and bias
    # gradients of the training graph's terminal against PyTorch autograd.
    torch = pytest.importorskip('torch')
    from conftest import conv_source

    F = torch.nn.functional
    x = mpsnn.MPSNNImageNode()
    ds, wv, bv = conv_source(5, 6, 3, 3, rng)
    conv = mpsnn.MPSCNNConvolutionNode(source=x, weights=ds)
    relu = mpsnn.MPSCNNNeuronReLUNode(source=conv.result_image)
    pool = mpsnn.MPSCNNPoolingMaxNode(source=relu.result_image, filter_size=2)
    d = mpsnn.MPSCNNLossDescriptor(mpsnn.MPSCNNLossType.soft_max_cross_entropy, mpsnn.MPSCNNReductionType.sum)
    loss = mpsnn.MPSCNNLossNode(source=pool.result_image, loss_descriptor=d)
    (terminal,) = loss.training_graph()
    assert isinstance(terminal, mpsnn.MPSCNNConvolutionGradientNode)
    terminal.result_state.export_from_graph = True
    g = mpsnn.MPSNNGraph(device, terminal.result_image)
    xv = rng.standard_normal((2, 8, 6, 5)).astype(np.float32)
    tv = rng.random((2, 4, 3, 6))
    tv /= tv.sum(-1, keepdims=True)
    states = []
    dx = g.run([xv], source_states=[labels(device, tv)], destination_states=states).numpy()
    xt = torch.tensor(xv, dtype=torch.float64).permute(0, 3, 1, 2).requires_grad_()
    wt = torch.tensor(np.asarray(wv, np.float64).reshape(6, 3, 3, 5)).permute(0, 3, 1, 2).requires_grad_()
    bt = torch.tensor(np.asarray(bv, np.float64)).requires_grad_()
    yt = F.max_pool2d(F.relu(F.conv2d(xt, wt, bt, padding=1)), 2)
    (-(torch.tensor(tv).permute(0, 3, 1, 2) * F.log_softmax(yt, 1)).sum()).backward()
    assert_close(dx, xt.grad.permute(0, 2, 3, 1).numpy(), 'reduction', k=45)
    (s,) = states
    assert_close(s.gradient_for_weights.numpy().reshape(6, 3, 3, 5), wt.grad.permute(0, 2, 3, 1).numpy(),
                 'reduction', k=2 * 8 * 6)
    assert_close(s.gradient_for_biases.numpy().ravel(), bt.grad.numpy(), 'reduction', k=2 * 8 * 6)


def test_state_links_are_not_followed(rng):
    # graph.md §1.9 step 6 (documented limitation): a convolution linked to the loss's sub-graph only
    # through the convolution gradient state that sizes a transposed convolution gets no gradient node.
    from conftest import conv_source

    ds, _, _ = conv_source(3, 3, 3, 3, rng)
    a = mpsnn.MPSNNImageNode()
    b = mpsnn.MPSNNImageNode()
    conv = mpsnn.MPSCNNConvolutionNode(source=a, weights=ds)
    tconv = mpsnn.MPSCNNConvolutionTransposeNode(source=b, convolution_gradient_state=conv.convolution_gradient_state,
                                                 weights=ds)
    loss = mpsnn.MPSCNNLossNode(source=tconv.result_image, loss_descriptor=mse_sum())
    mirrored = []
    terminals = loss.training_graph(node_handler=lambda g, f, s, i: mirrored.append(f))
    assert conv not in mirrored and tconv in mirrored
    assert len(terminals) == 1  # the gradient with respect to b
