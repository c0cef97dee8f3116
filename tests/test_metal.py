"""The Metal backend (macOS): device listing and the default device, results against the float64
references in float32 and float16 graphs, zero-copy views of Metal memory, a training step with
MPS's optimizer against the CPU, and the typed refusals. Every test skips where the build has no
Metal device (Linux: CI only compiles and links the backend, tools/check_metal.sh). The op, network
and graph suites run on Metal too, through the `device` fixture of conftest.py; tests/README.md
says what to expect there."""

from __future__ import annotations

import os

import numpy as np
import pytest

import mpsnn
import reference as R
from conftest import assert_close

METAL_DEVICES = [d for d in mpsnn.MTLCopyAllDevices() if d.backend == "metal"]
HAS_CPU = "cpu" in mpsnn.available_backends()


@pytest.fixture(scope="module")
def metal():
    if not METAL_DEVICES:
        pytest.skip("no Metal device (the Metal backend is built on macOS only)")
    return METAL_DEVICES[0]


def _conv(rng, cin=5, cout=7, k=3):
    d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=k, kernel_height=k, input_feature_channels=cin,
                                          output_feature_channels=cout)
    w = rng.standard_normal((cout, k, k, cin)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    return mpsnn.ArrayConvolutionDataSource(d, w, b), w, b


def test_metal_is_listed_first_and_is_the_default(metal):
    assert mpsnn.MTLCopyAllDevices()[0] is metal
    if not os.environ.get("MPSNN_DEVICE"):
        assert mpsnn.MTLCreateSystemDefaultDevice() is metal
    assert metal.registry_id == "metal:0"


def test_graphs_default_to_float16(metal):
    g = mpsnn.MPSNNGraph(metal, mpsnn.MPSCNNNeuronReLUNode(source=mpsnn.MPSNNImageNode()).result_image)
    assert g.format == mpsnn.MPSImageFeatureChannelFormat.float16


@pytest.mark.parametrize("fmt", ["float32", "float16"])
def test_convolution_relu_matches_the_reference(metal, rng, fmt):
    ds, w, b = _conv(rng)
    x = rng.standard_normal((3, 11, 13, 5)).astype(np.float32)
    conv = mpsnn.MPSCNNConvolutionNode(source=mpsnn.MPSNNImageNode(), weights=ds)
    relu = mpsnn.MPSCNNNeuronReLUNode(source=conv.result_image)
    g = mpsnn.MPSNNGraph(metal, relu.result_image)
    g.format = getattr(mpsnn.MPSImageFeatureChannelFormat, fmt)
    out = g.run([x])
    assert out.device is metal
    expected = np.maximum(R.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64)), 0)
    assert_close(out.numpy(), expected, "reduction", fmt, k=45)


def test_results_are_views_of_shared_memory(metal, rng):
    """A result lives in a shared MTLBuffer: numpy() is a view, not a copy. A wrapped NumPy array
    (from_numpy, not Metal memory) is staged through a Metal buffer and gives the same values."""
    x = rng.standard_normal((2, 4, 6, 3)).astype(np.float32)
    g = mpsnn.MPSNNGraph(metal, mpsnn.MPSCNNNeuronLinearNode(source=mpsnn.MPSNNImageNode(), a=2.0, b=1.0).result_image)
    g.format = mpsnn.MPSImageFeatureChannelFormat.float32
    y = g.run([mpsnn.MPSImage.from_numpy(x, metal)])
    np.testing.assert_allclose(y.numpy(), 2 * x + 1, rtol=1e-6, atol=1e-6)
    view = y.numpy()
    view[0, 0, 0, 0] = 42.0
    assert y.numpy()[0, 0, 0, 0] == 42.0
    z = g.run([y])  # a Metal-memory source, read in place
    np.testing.assert_allclose(z.numpy(), 2 * y.numpy() + 1, rtol=1e-6, atol=1e-5)


HWC = mpsnn.MPSDataLayout.HeightxWidthxFeatureChannels


@pytest.mark.skipif(not HAS_CPU, reason="this Mac build has no CPU backend to compare with")
def test_one_adam_step_matches_the_cpu(metal):
    """One training step (convolution, mean squared error loss, gradient nodes made by MPS, Adam as
    MPSNNOptimizerAdam) moves the weights and biases as on the CPU, in float32."""
    def step(device):
        rng = np.random.default_rng(3)
        d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=3, kernel_height=3, input_feature_channels=2,
                                              output_feature_channels=4)
        w = rng.standard_normal((4, 3, 3, 2)).astype(np.float32)
        b = rng.standard_normal(4).astype(np.float32)
        adam = mpsnn.MPSNNOptimizerAdam(device, learning_rate=1e-2)
        source = mpsnn.ArrayConvolutionDataSource(d, w, b, optimizer=adam)
        conv = mpsnn.MPSCNNConvolutionNode(source=mpsnn.MPSNNImageNode(handle=None), weights=source)
        mse = mpsnn.MPSCNNLossDescriptor(mpsnn.MPSCNNLossType.mean_squared_error, mpsnn.MPSCNNReductionType.sum)
        loss = mpsnn.MPSCNNLossNode(source=conv.result_image, loss_descriptor=mse)
        (terminal,) = loss.training_graph()
        graph = mpsnn.MPSNNGraph(device, result_image=terminal.result_image, result_image_is_needed=False)
        graph.format = mpsnn.MPSImageFeatureChannelFormat.float32
        x = rng.standard_normal((2, 5, 5, 2)).astype(np.float32)
        t = rng.standard_normal((2, 5, 5, 4)).astype(np.float32)
        labels = [mpsnn.MPSCNNLossLabels(device, mpsnn.MPSCNNLossDataDescriptor(np.ascontiguousarray(t[i]), HWC,
                                                                                (5, 5, 4))) for i in range(2)]
        cb = device.make_command_queue().make_command_buffer()
        images = [mpsnn.MPSImage.from_numpy(x[i:i + 1].copy(), device) for i in range(2)]
        graph.encode_batch(cb, source_images=[images], source_states=[labels])
        cb.commit()
        cb.wait_until_completed()
        loss_value = sum(float(l.loss_image().numpy().sum()) for l in labels)
        return source.weights().copy(), source.bias_terms().copy(), loss_value

    (w_m, b_m, loss_m), (w_c, b_c, loss_c) = step(metal), step(mpsnn.MTLDevice("cpu"))
    np.testing.assert_allclose(loss_m, loss_c, rtol=1e-4)
    assert_close(w_m, w_c, "reduction", "float32", k=50)
    assert_close(b_m, b_c, "reduction", "float32", k=50)


def test_a_channel_slice_source_is_refused_naming_why(metal, rng):
    x = mpsnn.MPSImage.from_numpy(rng.standard_normal((1, 4, 4, 8)).astype(np.float32), metal)
    g = mpsnn.MPSNNGraph(metal, mpsnn.MPSCNNNeuronReLUNode(source=mpsnn.MPSNNImageNode()).result_image)
    with pytest.raises(mpsnn.UnsupportedError, match="channel slice of a wider image"):
        g.run([x.sub_image((4, 4))])
