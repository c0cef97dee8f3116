"""training_graph() on the example networks of tests/networks.py (issue 11): an AlexNet-style
classifier (grouped convolutions, LRN, max pooling, fully connected layers, dropout, softmax), a
U-Net-style encoder/decoder (strided and transposed convolutions, concatenations with MPS's channel
slots, aligned bilinear upsampling) and a style-transfer net (instance normalization, residual
additions, nearest upsampling, tanh). A mean-squared-error loss on the network's result is
differentiated by the training graph; dL/dx and the weight and bias gradients of every convolution
made through ``Conv.node`` are compared with PyTorch autograd (float64) on the same weights.
Dropout keeps every element here (keep probability 1), so both sides run the same function."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import mpsnn
import networks as N
from ops._common import Handle

HWC = mpsnn.MPSDataLayout.HeightxWidthxFeatureChannels
NAMES = list(N.NETWORKS)
# float32 gradients against float64 autograd, relative to each gradient's largest magnitude.
RTOL, ATOL = 2e-4, 2e-4


def _close(actual, expected, what, scale=None):
    """Within RTOL, and ATOL of `scale` (default: the expected gradient's largest magnitude)."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"{what}: {actual.shape} != {expected.shape}"
    scale = max(1e-6, float(np.abs(expected).max()) if scale is None else scale)
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL * scale, err_msg=what)


@pytest.fixture
def labelled_nodes(monkeypatch):
    """Conv.node labels its node with the layer's label; Conv.load_torch records its module."""
    modules = {}
    node, load = N.Conv.node, N.Conv.load_torch

    def labelled(self, src):
        # Training data sources fuse no neuron (nodes.md §4.1): a fused ReLU becomes its own node.
        fused, self.fused_neuron = self.fused_neuron, None
        try:
            n = node(self, src)
        finally:
            self.fused_neuron = fused
        n.label = self.label
        if fused is None:
            return n
        assert fused == mpsnn.MPSCNNNeuronType.reLU, fused
        return SimpleNamespace(result_image=mpsnn.MPSCNNNeuronReLUNode(source=n.result_image).result_image)

    def recorded(self, module):
        modules[self.label] = load(self, module)
        return modules[self.label]

    monkeypatch.setattr(N.Conv, "node", labelled)
    monkeypatch.setattr(N.Conv, "load_torch", recorded)
    return modules


@pytest.mark.parametrize("name", NAMES)
def test_training_graph_of_the_network_matches_torch_autograd(name, labelled_nodes):
    torch = pytest.importorskip("torch")
    net = N.make_network(name)
    if hasattr(net, "keep_probability"):
        net.keep_probability = 1.0
    rng = np.random.default_rng(5)
    x = net.make_input(rng)
    x_node, y_node, _ = net.build()
    mse = mpsnn.MPSCNNLossDescriptor(mpsnn.MPSCNNLossType.mean_squared_error, mpsnn.MPSCNNReductionType.sum)
    loss = mpsnn.MPSCNNLossNode(source=y_node, loss_descriptor=mse)
    convs = {}

    def handler(gradient_node, inference_node, inference_source, gradient_source):
        if isinstance(gradient_node, mpsnn.MPSCNNConvolutionGradientNode) and inference_node.label:
            gradient_node.result_state.export_from_graph = True
            gradient_node.result_state.handle = Handle(inference_node.label)
            convs[inference_node.label] = gradient_node

    terminals = loss.training_graph(node_handler=handler)
    assert terminals and convs
    graph = mpsnn.MPSNNGraph(mpsnn.MTLDevice("cpu"), result_images=[t.result_image for t in terminals])
    # The result of the forward network, then a target near it (a loss of moderate size).
    forward = net.graph(mpsnn.MTLDevice("cpu")).run([x]).numpy().astype(np.float64)
    target = forward + 0.1 * rng.standard_normal(forward.shape)
    n, h, w, c = target.shape
    labels = mpsnn.MPSCNNLossLabels(mpsnn.MTLDevice("cpu"), mpsnn.MPSCNNLossDataDescriptor(
        np.ascontiguousarray(target, np.float32), HWC, (w, h, c)))
    states = []
    results = graph.run([x], source_states=[labels], destination_states=states)
    results = results if isinstance(results, list) else [results]
    dx = [r.numpy() for r in results if r.numpy().shape == x.shape]
    assert len(dx) == 1, [r.numpy().shape for r in results]
    by_label = {hd.label(): s for hd, s in zip(graph.result_state_handles, states)}
    assert set(by_label) == set(convs)

    model = net.torch_model().double().eval()
    xt = torch.tensor(np.asarray(x, np.float64).transpose(0, 3, 1, 2), requires_grad=True)
    yt = model(xt)
    tt = torch.tensor(target.transpose(0, 3, 1, 2))
    ((yt - tt) ** 2).sum().backward()  # MPS mean squared error, sum reduction: sum of (y - t)^2 (nodes.md §13.2)
    _close(dx[0], xt.grad.numpy().transpose(0, 2, 3, 1), f"{name}: dL/dx")
    compared = 0
    for label, state in by_label.items():
        module = labelled_nodes.get(label)
        if module is None:
            continue
        wg = module.weight.grad.numpy().transpose(0, 2, 3, 1)  # OIHW -> OHWI
        _close(state.gradient_for_weights.numpy().reshape(wg.shape), wg, f"{name}: dL/dW of {label}")
        # A bias ahead of an instance normalization has gradient 0 (the normalization removes it):
        # float32 round-off is measured against the layer's weight gradient there.
        _close(state.gradient_for_biases.numpy().ravel(), module.bias.grad.numpy(), f"{name}: dL/db of {label}",
               scale=max(float(np.abs(wg).max()), float(np.abs(module.bias.grad.numpy()).max())))
        compared += 1
    assert compared >= 3, (name, compared)
