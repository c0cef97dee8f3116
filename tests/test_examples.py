"""The ported Apple samples in examples/port_*.py: each runs as a script, and its graph matches a
float64 forward pass composed from the oracles in tests/reference."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import mpsnn
import reference as R

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"

# float32 (float16 for the MNIST graph, as the sample) against float64: relative, and absolute as
# a fraction of the output's magnitude.
TOLERANCE = {"float32": (1e-4, 5e-5), "float16": (1e-2, 2e-3)}


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_matches(actual, expected, dtype="float32"):
    rtol, atol = TOLERANCE[dtype]
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    assert actual.shape == expected.shape
    assert np.isfinite(actual).all()
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * scale)


@pytest.mark.parametrize("name, expected", [
    ("port_mnist_inference", "40 digits -> (40, 10) probabilities"),
    ("port_tiny_yolo", "640x480 frame -> 13x13x125 grid"),
    ("port_super_resolution", "64x64x1 -> 192x192x1"),
])
def test_example_runs_as_a_script(name, expected):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(pathlib.Path(mpsnn.__file__).parents[1]), env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py")], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert expected in done.stdout


def leaky(x, a):
    return np.where(x >= 0, x, a * x)


def test_mnist_port_matches_the_reference():
    classifier, digits, probabilities = load("port_mnist_inference").main(quiet=True)
    assert probabilities.shape == (40, 10)
    x = digits[:4].astype(np.float64) / 255.0  # unorm8
    layers = [classifier.conv1_weights, classifier.conv2_weights, classifier.fc1_weights, classifier.fc2_weights]
    for source in layers[:2]:
        x = np.maximum(R.conv2d(x, source.weights(), source.bias_terms()), 0.0)
        x = R.max_pool2d(x, (2, 2), (2, 2))
    x = np.maximum(R.fully_connected(x, layers[2].weights(), layers[2].bias_terms()), 0.0)
    x = R.fully_connected(x, layers[3].weights(), layers[3].bias_terms())
    assert_matches(probabilities[:4], R.softmax(x).reshape(4, 10), "float16")


def test_super_resolution_port_matches_the_reference():
    with pytest.warns(DeprecationWarning, match="set_neuron_type"):
        graph, luma, upscaled = load("port_super_resolution").main(quiet=True, size=(20, 17))
    assert (upscaled.height, upscaled.width, upscaled.feature_channels) == (60, 51, 1)
    x = luma.astype(np.float64)
    sources = graph.data_sources
    for source in sources[:3]:
        x = np.maximum(R.conv2d(x, source.weights(), source.bias_terms()), 0.0)
    x = R.subpixel_shuffle(R.conv2d(x, sources[3].weights(), sources[3].bias_terms()), 3)
    assert_matches(upscaled.numpy(), x)


def test_tiny_yolo_port_matches_the_reference():
    with pytest.warns(DeprecationWarning, match=r"neuron_(type|parameter_a) is deprecated"):
        yolo, frame, result = load("port_tiny_yolo").main(quiet=True)
    assert result["error"] is None
    output = result["output"].numpy()
    assert output.shape == (1, 13, 13, 125)
    assert yolo.pool6_padding.kernels_seen == ["MPSCNNPoolingMax"]
    x = R.lanczos_scale(frame.astype(np.float64) / 255.0, 416, 416)
    for i, source in enumerate(yolo.data_sources):
        c = source.output_feature_channels
        w = source.weights().reshape(c, source.kernel_height, source.kernel_width, source.input_feature_channels)
        if source.use_leaky:
            n = w.size
            mean, variance, gamma, beta = (source.data[n + k * c:n + (k + 1) * c].astype(np.float64) for k in range(4))
            x = R.conv2d(x, w)
            x = leaky(gamma * (x - mean) / np.sqrt(variance + 1e-3) + beta, 0.1)
        else:
            x = R.conv2d(x, w, source.bias_terms())
        if i < 5:
            x = R.max_pool2d(x, (2, 2), (2, 2))
        elif i == 5:  # pool6: stride 1, the kernel moved to start at the output pixel, clamped edges
            x = R.max_pool2d(x, (2, 2), (1, 1), pad=(0, 0), out_hw=(13, 13), edge_mode="clamp")
    assert_matches(output, x)
    assert len(result["predictions"]) > 0 and all(0.3 <= p[1] <= 1.0 for p in result["predictions"])
