"""Forward tests of the neuron (activation) nodes (nodes.md §6): every type through its own node class
and through MPSCNNNeuronNode.node(descriptor), defaults, PReLU slopes, IEEE edge cases."""

from __future__ import annotations

import numpy as np
import pytest

import mpsnn
import reference as R
from conftest import assert_close

from ._common import FP16, FP32, run_graph, to_t, from_t

T = mpsnn.MPSCNNNeuronType

# (id, node class, reference name, constructor kwargs, input domain)
#   domain: 'any' standard normal * 3, 'pos' strictly positive (power with fractional c, logarithm)
NEURONS = [
    ("absolute", "MPSCNNNeuronAbsoluteNode", "absolute", {}, 'any'),
    ("elu", "MPSCNNNeuronELUNode", "elu", {}, 'any'),
    ("elu-a", "MPSCNNNeuronELUNode", "elu", {"a": 0.3}, 'any'),
    ("hard_sigmoid", "MPSCNNNeuronHardSigmoidNode", "hard_sigmoid", {}, 'any'),
    ("hard_sigmoid-ab", "MPSCNNNeuronHardSigmoidNode", "hard_sigmoid", {"a": 1 / 6, "b": 0.4}, 'any'),
    ("linear", "MPSCNNNeuronLinearNode", "linear", {}, 'any'),
    ("linear-ab", "MPSCNNNeuronLinearNode", "linear", {"a": -1.5, "b": 0.25}, 'any'),
    ("relu_n", "MPSCNNNeuronReLUNNode", "relu_n", {}, 'any'),
    ("relu6", "MPSCNNNeuronReLUNNode", "relu_n", {"a": 0.0, "b": 2.0}, 'any'),
    ("relu_n-leaky", "MPSCNNNeuronReLUNNode", "relu_n", {"a": 0.2, "b": 1.5}, 'any'),
    ("relu", "MPSCNNNeuronReLUNode", "relu", {}, 'any'),
    ("leaky_relu", "MPSCNNNeuronReLUNode", "relu", {"a": 0.1}, 'any'),
    ("sigmoid", "MPSCNNNeuronSigmoidNode", "sigmoid", {}, 'any'),
    ("soft_plus", "MPSCNNNeuronSoftPlusNode", "soft_plus", {}, 'any'),
    ("soft_plus-ab", "MPSCNNNeuronSoftPlusNode", "soft_plus", {"a": 0.5, "b": 2.0}, 'any'),
    ("soft_sign", "MPSCNNNeuronSoftSignNode", "soft_sign", {}, 'any'),
    ("tanh", "MPSCNNNeuronTanHNode", "tanh", {}, 'any'),
    ("tanh-ab", "MPSCNNNeuronTanHNode", "tanh", {"a": 1.7, "b": 0.6}, 'any'),
    ("power", "MPSCNNNeuronPowerNode", "power", {}, 'any'),
    ("power-square", "MPSCNNNeuronPowerNode", "power", {"a": 0.5, "b": 1.0, "c": 2.0}, 'any'),
    ("power-sqrt", "MPSCNNNeuronPowerNode", "power", {"a": 2.0, "b": 0.5, "c": 0.5}, 'pos'),
    ("power-cube", "MPSCNNNeuronPowerNode", "power", {"c": 3.0}, 'any'),
    ("exponential", "MPSCNNNeuronExponentialNode", "exponential", {}, 'any'),
    ("exponential-base2", "MPSCNNNeuronExponentialNode", "exponential", {"a": 0.5, "b": -1.0, "c": 2.0}, 'any'),
    ("logarithm", "MPSCNNNeuronLogarithmNode", "logarithm", {}, 'pos'),
    ("logarithm-base10", "MPSCNNNeuronLogarithmNode", "logarithm", {"a": 2.0, "b": 0.1, "c": 10.0}, 'pos'),
]

SHAPES = [(1, 5, 7, 3), (2, 3, 4, 5), (3, 1, 1, 9)]


def _ids(v):
    return v if isinstance(v, str) and not v.startswith("MPSCNN") else None


def _input(rng, shape, domain):
    x = rng.standard_normal(shape) * 3
    x[np.abs(x) < 1e-2] = 0.5                  # keep away from the kinks at 0
    if domain == 'pos':
        x = np.abs(x) + 0.1
    return x.astype(np.float32)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("nid,cls,name,kwargs,domain", NEURONS, ids=_ids)
def test_neuron_node(nid, cls, name, kwargs, domain, shape, device, rng):
    x = _input(rng, shape, domain)
    y = run_graph(device, lambda s: getattr(mpsnn, cls)(s, **kwargs), [x])
    ref = R.neuron(x, name, kwargs.get("a"), kwargs.get("b"), kwargs.get("c"))
    assert y.shape == x.shape
    assert_close(y, ref, "elementwise")


@pytest.mark.parametrize("nid,cls,name,kwargs,domain", NEURONS, ids=_ids)
def test_neuron_node_parameters(nid, cls, name, kwargs, domain):
    node = getattr(mpsnn, cls)(mpsnn.MPSNNImageNode(), **kwargs)
    da, db, dc = R.NEURON_DEFAULTS[name]
    expect = [kwargs.get("a", da), kwargs.get("b", db), kwargs.get("c", dc)]
    assert [node.a, node.b, node.c] == pytest.approx(expect, rel=1e-7)
    assert node.descriptor.neuron_type == T(R.NEURON_TYPE_CODES[name])


@pytest.mark.parametrize("nid,cls,name,kwargs,domain", NEURONS, ids=_ids)
def test_neuron_node_from_descriptor(nid, cls, name, kwargs, domain, device, rng):
    """MPSCNNNeuronNode.node(source, descriptor) makes the matching subclass and the same values."""
    ntype = T(R.NEURON_TYPE_CODES[name])
    desc = mpsnn.MPSNNNeuronDescriptor.cnn_neuron_descriptor(ntype, kwargs.get("a"), kwargs.get("b"),
                                                              kwargs.get("c"))
    node = mpsnn.MPSCNNNeuronNode.node(mpsnn.MPSNNImageNode(), desc)
    assert type(node).__name__ == cls
    x = _input(rng, (2, 4, 3, 5), domain)
    y = run_graph(device, lambda s: mpsnn.MPSCNNNeuronNode.node(s, desc), [x])
    assert_close(y, R.neuron(x, name, kwargs.get("a"), kwargs.get("b"), kwargs.get("c")), "elementwise")


def test_neuron_none_descriptor_is_identity(device, rng):
    x = rng.standard_normal((2, 3, 5, 7)).astype(np.float32)
    desc = mpsnn.MPSNNNeuronDescriptor.cnn_neuron_descriptor(T.none)
    y = run_graph(device, lambda s: mpsnn.MPSCNNNeuronNode.node(s, desc), [x])
    assert_close(y, x, "exact")


def test_neuron_chain(device, rng):
    """Neurons feeding neurons (relu -> tanh -> linear), fused or not."""
    x = rng.standard_normal((2, 5, 4, 6)).astype(np.float32)

    def make(src):
        a = mpsnn.MPSCNNNeuronReLUNode(src, a=0.2)
        b = mpsnn.MPSCNNNeuronTanHNode(a.result_image, a=2.0, b=0.5)
        return mpsnn.MPSCNNNeuronLinearNode(b.result_image, a=3.0, b=-1.0)

    ref = R.neuron(R.neuron(R.neuron(x, 'relu', 0.2), 'tanh', 2.0, 0.5), 'linear', 3.0, -1.0)
    for fuse in (True, False):
        assert_close(run_graph(device, make, [x], fuse=fuse), ref, "elementwise")


# --------------------------------------------------------------------------------------------
# PReLU

@pytest.mark.parametrize("c,n_slopes", [(1, 1), (3, 3), (5, 1), (7, 9), (4, 4), (13, 13)], ids=str)
def test_prelu(c, n_slopes, device, rng):
    x = _input(rng, (2, 3, 5, c), 'any')
    slopes = rng.uniform(0.05, 0.9, n_slopes).astype(np.float32)
    y = run_graph(device, lambda s: mpsnn.MPSCNNNeuronPReLUNode(s, a_data=slopes.tolist()), [x])
    assert_close(y, R.neuron(x, 'prelu', data=slopes), "elementwise")


def test_prelu_from_descriptor(device, rng):
    x = _input(rng, (2, 4, 4, 6), 'any')
    slopes = rng.uniform(0.05, 0.9, 6).astype(np.float32)
    desc = mpsnn.MPSNNNeuronDescriptor.cnn_neuron_prelu_descriptor(slopes.tolist())
    node = mpsnn.MPSCNNNeuronNode.node(mpsnn.MPSNNImageNode(), desc)
    assert isinstance(node, mpsnn.MPSCNNNeuronPReLUNode)
    y = run_graph(device, lambda s: mpsnn.MPSCNNNeuronNode.node(s, desc), [x])
    assert_close(y, R.neuron(x, 'prelu', data=slopes), "elementwise")


def test_prelu_vs_torch(device, rng):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    x = _input(rng, (2, 5, 3, 7), 'any')
    slopes = rng.uniform(0.05, 0.9, 7)
    y = run_graph(device, lambda s: mpsnn.MPSCNNNeuronPReLUNode(s, a_data=slopes.tolist()), [x])
    ref = F.prelu(to_t(x), torch.from_numpy(slopes))
    assert_close(y, from_t(ref), "elementwise")


# --------------------------------------------------------------------------------------------
# PyTorch cross-checks

@pytest.mark.parametrize("alpha", [1.0, 0.3, 2.5])
def test_elu_vs_torch(alpha, device, rng):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    x = _input(rng, (2, 5, 7, 3), 'any')
    y = run_graph(device, lambda s: mpsnn.MPSCNNNeuronELUNode(s, a=alpha), [x])
    assert_close(y, from_t(F.elu(to_t(x), alpha=alpha)), "elementwise")


@pytest.mark.parametrize("beta", [1.0, 0.5, 2.0])
def test_softplus_vs_torch(beta, device, rng):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    x = _input(rng, (2, 5, 7, 3), 'any')
    y = run_graph(device, lambda s: mpsnn.MPSCNNNeuronSoftPlusNode(s, a=1.0 / beta, b=beta), [x])
    ref = F.softplus(to_t(x), beta=beta, threshold=float('inf'))
    assert_close(y, from_t(ref), "elementwise")


def test_other_neurons_vs_torch(device, rng):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    x = _input(rng, (2, 4, 5, 6), 'any')
    t = to_t(x)
    cases = [
        (lambda s: mpsnn.MPSCNNNeuronReLUNode(s), F.relu(t)),
        (lambda s: mpsnn.MPSCNNNeuronReLUNode(s, a=0.2), F.leaky_relu(t, 0.2)),
        (lambda s: mpsnn.MPSCNNNeuronReLUNNode(s, a=0.0, b=6.0), F.relu6(t)),
        (lambda s: mpsnn.MPSCNNNeuronSigmoidNode(s), torch.sigmoid(t)),
        (lambda s: mpsnn.MPSCNNNeuronHardSigmoidNode(s, a=1 / 6, b=0.5), F.hardsigmoid(t)),
        (lambda s: mpsnn.MPSCNNNeuronTanHNode(s), torch.tanh(t)),
        (lambda s: mpsnn.MPSCNNNeuronSoftSignNode(s), F.softsign(t)),
        (lambda s: mpsnn.MPSCNNNeuronAbsoluteNode(s), torch.abs(t)),
        (lambda s: mpsnn.MPSCNNNeuronExponentialNode(s), torch.exp(t)),
    ]
    for make, ref in cases:
        assert_close(run_graph(device, make, [x]), from_t(ref), "elementwise")


# --------------------------------------------------------------------------------------------
# saturation and IEEE-754 edge cases (nodes.md §6.2 notes)

def test_neuron_saturation(device):
    x = np.array([-1e4, -100.0, -30.0, 30.0, 100.0, 1e4], np.float32).reshape(1, 1, 1, 6)
    for cls, name in (("MPSCNNNeuronSigmoidNode", "sigmoid"), ("MPSCNNNeuronTanHNode", "tanh"),
                      ("MPSCNNNeuronSoftPlusNode", "soft_plus"), ("MPSCNNNeuronSoftSignNode", "soft_sign"),
                      ("MPSCNNNeuronELUNode", "elu")):
        y = run_graph(device, lambda s: getattr(mpsnn, cls)(s), [x])
        assert np.all(np.isfinite(y)), (name, y)
        assert_close(y, R.neuron(x, name), "elementwise")


def test_neuron_ieee_edge_cases(device):
    v = np.array([-1.0, 0.0, 2.0, np.inf], np.float32).reshape(1, 1, 1, 4)
    with np.errstate(all='ignore'):
        for cls, kw in (("MPSCNNNeuronPowerNode", {"c": 0.5}), ("MPSCNNNeuronPowerNode", {"c": -1.0}),
                        ("MPSCNNNeuronLogarithmNode", {}), ("MPSCNNNeuronExponentialNode", {"c": -2.0}),
                        ("MPSCNNNeuronExponentialNode", {"c": 1.0}), ("MPSCNNNeuronExponentialNode", {"a": 100.0})):
            y = run_graph(device, lambda s: getattr(mpsnn, cls)(s, **kw), [v])
            name = {"MPSCNNNeuronPowerNode": "power", "MPSCNNNeuronLogarithmNode": "logarithm",
                    "MPSCNNNeuronExponentialNode": "exponential"}[cls]
            ref = R.neuron(v, name, kw.get("a"), kw.get("b"), kw.get("c")).astype(np.float32)
            np.testing.assert_array_equal(np.isnan(y), np.isnan(ref), err_msg=f"{cls} {kw}")
            finite = np.isfinite(ref)
            np.testing.assert_array_equal(y[~finite & ~np.isnan(ref)], ref[~finite & ~np.isnan(ref)])
            assert_close(y[finite], ref[finite], "elementwise")


NAN_CASES = [
    pytest.param("MPSCNNNeuronReLUNode", {}, id="relu"),
    pytest.param("MPSCNNNeuronReLUNode", {"a": 0.1}, id="leaky_relu"),
    pytest.param("MPSCNNNeuronReLUNNode", {}, id="relu_n"),
    pytest.param("MPSCNNNeuronReLUNNode", {"a": 0.0, "b": 6.0}, id="relu6"),
    pytest.param("MPSCNNNeuronHardSigmoidNode", {}, id="hard_sigmoid"),
    pytest.param("MPSCNNNeuronExponentialNode", {}, id="exponential"),
    pytest.param("MPSCNNNeuronSigmoidNode", {}, id="sigmoid"),
    pytest.param("MPSCNNNeuronTanHNode", {}, id="tanh"),
    pytest.param("MPSCNNNeuronELUNode", {}, id="elu"),
    pytest.param("MPSCNNNeuronAbsoluteNode", {}, id="absolute"),
    pytest.param("MPSCNNNeuronSoftPlusNode", {}, id="soft_plus"),
    pytest.param("MPSCNNNeuronSoftSignNode", {}, id="soft_sign"),
    pytest.param("MPSCNNNeuronLinearNode", {"a": 2.0, "b": 1.0}, id="linear"),
    pytest.param("MPSCNNNeuronPowerNode", {"c": 2.0}, id="power"),
    pytest.param("MPSCNNNeuronLogarithmNode", {}, id="logarithm"),
    pytest.param("MPSCNNNeuronPReLUNode", {"a_data": [0.1]}, id="prelu"),
]


@pytest.mark.parametrize("cls,kwargs", NAN_CASES)
def test_neuron_nan_propagates(cls, kwargs, device):
    x = np.array([np.nan, 1.0, 0.5], np.float32).reshape(1, 1, 1, 3)
    y = run_graph(device, lambda s: getattr(mpsnn, cls)(s, **kwargs), [x])
    assert np.isnan(y[0, 0, 0, 0]), y
    assert np.all(np.isfinite(y[0, 0, 0, 1:])), y


def test_logarithm_accuracy_near_one(device):
    u = np.linspace(0.5, 2.0, 2001).astype(np.float32).reshape(1, 1, -1, 1)
    y = run_graph(device, lambda s: mpsnn.MPSCNNNeuronLogarithmNode(s), [u])
    assert_close(y, R.neuron(u, 'logarithm'), "elementwise")


@pytest.mark.parametrize("a,b", [(1.0, 1.0), (0.5, 2.0), (2.0, 0.5)], ids=str)
def test_soft_plus_accuracy_negative_tail(a, b, device):
    u = (np.linspace(-45.0, -10.0, 701) / b).astype(np.float32).reshape(1, 1, -1, 1)
    y = run_graph(device, lambda s: mpsnn.MPSCNNNeuronSoftPlusNode(s, a=a, b=b), [u])
    assert_close(y, R.neuron(u, 'soft_plus', a, b), "elementwise")
    assert np.all(y >= 0)


def test_neuron_float16_graph_format(device, rng):
    x = _input(rng, (2, 5, 3, 7), 'any')
    y = run_graph(device, lambda s: mpsnn.MPSCNNNeuronTanHNode(s, a=1.5, b=0.7), [x], fmt=FP16)
    assert y.dtype == np.float16
    assert_close(y, R.neuron(x, 'tanh', 1.5, 0.7), "elementwise", "float16")


# --------------------------------------------------------------------------------------------
# bad parameters

def test_prelu_too_few_slopes(device, rng):
    x = rng.standard_normal((1, 3, 3, 4)).astype(np.float32)
    with pytest.raises(mpsnn.ShapeError,
                       match=r"\[neuron\] PReLU has 2 slope\(s\) for 4 feature channels; expected 1 or at least 4"):
        run_graph(device, lambda s: mpsnn.MPSCNNNeuronPReLUNode(s, a_data=[0.1, 0.2]), [x])


def test_prelu_without_slopes():
    with pytest.raises(mpsnn.ShapeError, match=r"\[neuron\] PReLU needs at least one slope in its data; got none"):
        mpsnn.MPSCNNNeuronPReLUNode(mpsnn.MPSNNImageNode(), a_data=[])
    desc = mpsnn.MPSNNNeuronDescriptor.cnn_neuron_descriptor(T.pReLU)
    with pytest.raises(mpsnn.ShapeError, match=r"\[neuron\] PReLU needs at least one slope"):
        mpsnn.MPSCNNNeuronNode.node(mpsnn.MPSNNImageNode(), desc)


def test_neuron_wrong_input_dtype(device):
    g = mpsnn.MPSNNGraph(device, mpsnn.MPSCNNNeuronReLUNode(mpsnn.MPSNNImageNode()).result_image)
    with pytest.raises(mpsnn.DTypeError, match=r"\[MPSNNGraph source image\] array has dtype float64"):
        g.run([np.ones((1, 2, 2, 3))])


# --------------------------------------------------------------------------------------------
# neurons after a convolution (fused as post-ops) and padding policies

@pytest.mark.parametrize("nid,cls,name,kwargs,domain", [n for n in NEURONS if n[4] == 'any'], ids=_ids)
def test_neuron_after_convolution_fused_and_unfused(nid, cls, name, kwargs, domain, device, rng):
    from conftest import conv_source
    x = rng.standard_normal((2, 5, 4, 3)).astype(np.float32)
    ds, w, b = conv_source(3, 6, 3, 3, rng)

    def make(src):
        return getattr(mpsnn, cls)(mpsnn.MPSCNNConvolutionNode(src, ds).result_image, **kwargs)

    ref = R.neuron(R.conv2d(x, w, b), name, kwargs.get("a"), kwargs.get("b"), kwargs.get("c"))
    fmt = FP32 if np.abs(ref).max() > 65504 else None  # beyond float16's range (exponential)
    for fuse in (True, False):
        assert_close(run_graph(device, make, [x], fuse=fuse, fmt=fmt), ref, "reduction", k=27)


@pytest.mark.parametrize("method", [0x00, 0x21, 0x16], ids=["valid", "full-alignTL", "same-alignBR"])
def test_neuron_padding_policy_has_no_effect(method, device, rng):
    """Size-preserving nodes ignore non-custom padding policies (nodes.md §1.3)."""
    from ._common import set_padding
    x = rng.standard_normal((2, 5, 7, 3)).astype(np.float32)
    y = run_graph(device, lambda s: set_padding(mpsnn.MPSCNNNeuronELUNode(s, a=0.5), method), [x])
    assert_close(y, R.neuron(x, 'elu', 0.5), "elementwise")
