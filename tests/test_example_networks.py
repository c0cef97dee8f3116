"""Whole example networks (tests/networks.py): an AlexNet-style classifier, a U-Net-style
encoder/decoder and a style-transfer net, each built as an MPSNNGraph from seeded random weights and
compared with

* a float64 NumPy forward pass composed from the oracles in tests/reference (always runs), and
* the same model written in PyTorch (float64; skipped when torch is not installed),

with graph fusion on and off, exported interior images, repeated runs, batches and encode_batch.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import mpsnn
from networks import NETWORKS, make_network

NAMES = list(NETWORKS)
FUSION = [pytest.param(True, id="fused"), pytest.param(False, id="unfused")]

# float32 against float64: relative 1e-4, absolute 5e-5 of the output's magnitude (observed: at
# most 6e-6 absolute, on results and exported images of magnitude 0.35 to 6.4).
RTOL, ATOL = 1e-4, 5e-5


def assert_matches(actual, expected, what=""):
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert np.isfinite(actual).all(), f"{what}: non-finite values"
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL * scale, err_msg=what)


@pytest.fixture(scope="module")
def networks():
    return {name: make_network(name) for name in NAMES}


@pytest.fixture(scope="module")
def inputs(networks):
    return {name: net.make_input(np.random.default_rng(100 + i)) for i, (name, net) in enumerate(networks.items())}


@pytest.fixture(scope="module")
def references(networks, inputs):
    return {name: net.reference(inputs[name], with_taps=True) for name, net in networks.items()}


def run(graph, x, **kwargs):
    """graph.run and a NumPy copy of the result (run returns a view of a fresh image)."""
    return np.array(graph.run([x], **kwargs).numpy())


def plan_steps(graph, x):
    return int(re.match(r"plan: (\d+) steps", graph.plan_description([x])).group(1))


# ------------------------------------------------------------------------------------------------
# against the float64 NumPy reference (no PyTorch needed)

@pytest.mark.parametrize("fusion", FUSION)
@pytest.mark.parametrize("name", NAMES)
def test_network_matches_float64_reference(name, fusion, networks, inputs, references, device):
    net, x = networks[name], inputs[name]
    g = net.graph(device, fusion=fusion, poison=True)   # NaN-poisoned temporaries: no stale reads
    y = run(g, x)
    assert y.dtype == np.float32
    assert_matches(y, references[name][0], f"{name} result")


@pytest.mark.parametrize("name", NAMES)
def test_network_exported_intermediates_match_reference(name, networks, inputs, references, device):
    """Interior images (logits before the softmax, concatenations with their zero gap channels, the
    transposed convolution, the residual sum) exported from the fused graph."""
    net, x = networks[name], inputs[name]
    expected, taps = references[name]
    g = net.graph(device, fusion=True, poison=True, export_taps=True)
    names = [h.label() for h in g.intermediate_image_handles]
    assert sorted(names) == sorted(taps)
    inter = []
    y = run(g, x, intermediate_images=inter)
    assert len(inter) == len(names)
    assert_matches(y, expected, f"{name} result with exports")
    for tap, image in zip(names, inter):
        assert_matches(image.numpy(), taps[tap], f"{name} tap {tap}")


@pytest.mark.parametrize("name", NAMES)
def test_network_fused_equals_unfused(name, networks, inputs, device):
    net, x = networks[name], inputs[name]
    fused, unfused = net.graph(device, fusion=True), net.graph(device, fusion=False)
    assert plan_steps(fused, x) < plan_steps(unfused, x)
    a, b = run(fused, x), run(unfused, x)
    scale = max(1.0, float(np.abs(b).max()))
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * scale)


@pytest.mark.parametrize("name", NAMES)
def test_network_repeatable_and_batch_independent(name, networks, inputs, device):
    """Same result when run twice; earlier results are not overwritten by later runs; each image of a
    batch equals the image run alone (batch sizes 1 and N share one graph); encode_batch agrees."""
    net, x = networks[name], inputs[name]
    assert x.shape[0] > 1
    g = net.graph(device)
    first_image = g.run([x])
    first = np.array(first_image.numpy())
    second = run(g, x)
    np.testing.assert_array_equal(first, second)
    other = run(g, np.ascontiguousarray(x[::-1]))                # another input, same size
    np.testing.assert_array_equal(first_image.numpy(), first)   # the first result was not reused
    np.testing.assert_allclose(other, first[::-1], rtol=1e-6, atol=1e-6)
    for i in range(x.shape[0]):
        alone = run(g, np.ascontiguousarray(x[i:i + 1]))
        np.testing.assert_allclose(alone, first[i:i + 1], rtol=1e-5, atol=1e-6, err_msg=f"image {i}")
    cb = device.make_command_queue().make_command_buffer()
    batch = [mpsnn.MPSImage.from_numpy(np.ascontiguousarray(x[i:i + 1])) for i in range(x.shape[0])]
    out = g.encode_batch(cb, [batch])
    cb.commit()
    cb.wait_until_completed()
    assert len(out) == x.shape[0]
    for i, image in enumerate(out):
        np.testing.assert_allclose(image.numpy(), first[i:i + 1], rtol=1e-5, atol=1e-6, err_msg=f"batch item {i}")


# ------------------------------------------------------------------------------------------------
# against PyTorch (optional)

@pytest.mark.parametrize("fusion", FUSION)
@pytest.mark.parametrize("name", NAMES)
def test_network_matches_torch(name, fusion, networks, inputs, references, device):
    pytest.importorskip("torch")
    net, x = networks[name], inputs[name]
    expected = net.torch_forward(x)
    # the PyTorch model and the NumPy composition describe the same network
    np.testing.assert_allclose(expected, references[name][0], rtol=1e-9, atol=1e-9)
    y = run(net.graph(device, fusion=fusion), x)
    assert_matches(y, expected, f"{name} vs torch")


# ------------------------------------------------------------------------------------------------
# other sizes and formats on the same graph

@pytest.mark.parametrize("name,shapes", [
    ("unet", [(1, 15, 11, 3), (3, 7, 3, 3)]),          # level-1 size even on both axes
    ("style", [(1, 19, 23, 3), (3, 8, 9, 3), (2, 1, 1, 3)]),
    ("alexnet", [(2, 59, 67, 3), (1, 47, 53, 3)]),     # sizes that pool down to 2x2
], ids=["unet", "style", "alexnet"])
def test_network_accepts_other_sizes(name, shapes, networks, inputs, device):
    """One graph compiles a plan per input size; all of them match the reference."""
    net = networks[name]
    g = net.graph(device)
    rng = np.random.default_rng(7)
    for shape in shapes + [inputs[name].shape]:
        x = rng.standard_normal(shape).astype(np.float32)
        assert_matches(run(g, x), net.reference(x), f"{name} {shape}")


def test_unet_size_that_breaks_a_skip_connection(networks, device):
    """7x9 pools to 2x3 at level 1 and comes back as 4x6 against a 4x5 skip: a ShapeError that
    names the concatenation by its label."""
    g = networks["unet"].graph(device)
    x = np.zeros((1, 7, 9, 3), np.float32)
    with pytest.raises(mpsnn.ShapeError, match="concatenation 'skip1'"):
        g.run([x])


@pytest.mark.parametrize("name", NAMES)
def test_network_float16_result_format(name, networks, inputs, references, device):
    """graph.format = float16 (MPS's default): the result is stored as float16."""
    net, x = networks[name], inputs[name]
    g = net.graph(device)
    g.format = mpsnn.MPSImageFeatureChannelFormat.float16
    y = g.run([x]).numpy()
    assert y.dtype == np.float16
    expected = references[name][0]
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(y.astype(np.float64), expected, rtol=2e-3, atol=2e-3 * scale)
