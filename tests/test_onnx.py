"""mpsnn.onnx: ONNX models imported as MPSNNGraphs, checked against ONNX Runtime.

Models built with onnx.helper always run (onnx and onnxruntime are in the test extra); PyTorch modules
exported with torch.onnx run where torch is installed. Every refusal (UnsupportedError naming the ONNX
node) has a test.
"""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest

import mpsnn

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
import mpsnn.onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from conftest import assert_close  # noqa: E402

CPU = mpsnn.MTLDevice("cpu")


def T(name, a):
    return numpy_helper.from_array(np.asarray(a, np.float32), name)


def make_model(nodes, inits=(), inputs=None, outputs=("y",), opset=17):
    inputs = inputs if inputs is not None else {"x": [2, 3, 9, 10]}
    g = helper.make_graph(list(nodes), "g",
                          [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
                          [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs], list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def ort_run(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def check(model, feeds, k=64, **load_args):
    """Imports `model`, runs it on the NCHW `feeds` and compares every output with ONNX Runtime."""
    imported = mpsnn.onnx.load(model, CPU, **load_args)
    ours = imported.run(feeds)
    ours = ours if isinstance(ours, list) else [ours]
    theirs = ort_run(model, feeds)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape
        assert_close(a, b, "reduction", "float32", k=k)
    return imported, ours


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def randn(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# convolutions

CONV_CASES = [
    dict(pads=[1, 1, 1, 1]),
    dict(pads=[0, 2, 1, 0], strides=[2, 1], dilations=[1, 2]),
    dict(auto_pad="SAME_UPPER", strides=[2, 2]),
    dict(auto_pad="SAME_LOWER", strides=[2, 3]),
    dict(auto_pad="VALID", strides=[1, 2], dilations=[2, 1]),
    dict(pads=[2, 0, 0, 3], strides=[3, 2]),
]


@pytest.mark.parametrize("attrs", CONV_CASES, ids=lambda a: "-".join(f"{k}{v}" for k, v in a.items()))
@pytest.mark.parametrize("kernel", [(3, 3), (2, 4)])
def test_conv_pads_strides_dilation(rng, attrs, kernel):
    w, b = randn(rng, 5, 3, *kernel), randn(rng, 5)
    m = make_model([helper.make_node("Conv", ["x", "W", "B"], ["c"], **attrs), helper.make_node("Relu", ["c"], ["y"])],
                   [T("W", w), T("B", b)])
    check(m, {"x": randn(rng, 2, 3, 9, 10)})


@pytest.mark.parametrize("cin,cout,group", [(8, 8, 2), (6, 9, 3), (7, 7, 7), (5, 10, 5), (12, 8, 4)],
                         ids=["native-groups", "groups-of-2", "depthwise", "depthwise-multiplier-2", "groups-of-3"])
def test_conv_groups_and_depthwise(rng, cin, cout, group):
    w = randn(rng, cout, cin // group, 3, 3)
    m = make_model([helper.make_node("Conv", ["x", "W"], ["y"], group=group, pads=[1, 0, 1, 2], strides=[1, 2])],
                   [T("W", w)], {"x": [3, cin, 7, 8]})
    imported, _ = check(m, {"x": randn(rng, 3, cin, 7, 8)})
    assert imported.data_sources["y"].bias_terms() is None


def test_conv_symbolic_size_runs_any_size(rng):
    """The padding policy computes ONNX's pads from each source size: a model with symbolic H, W runs
    at several sizes."""
    w = randn(rng, 4, 3, 3, 3)
    m = make_model([helper.make_node("Conv", ["x", "W"], ["y"], auto_pad="SAME_UPPER", strides=[2, 2])], [T("W", w)],
                   {"x": ["N", 3, "H", "W"]})
    imported = mpsnn.onnx.load(m, CPU)
    for shape in [(1, 3, 8, 8), (2, 3, 7, 11)]:
        x = randn(rng, *shape)
        assert_close(imported.run(x), ort_run(m, {"x": x})[0], "reduction", "float32", k=27)


@pytest.mark.parametrize("attrs", [
    dict(strides=[2, 2], pads=[1, 1, 1, 1]),
    dict(strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]),
    dict(strides=[3, 2], pads=[0, 2, 1, 0], dilations=[1, 2]),
    dict(strides=[1, 1]),
    dict(strides=[2, 2], group=2),
], ids=["k-s2-p1", "output-padding", "asymmetric", "stride1", "groups"])
def test_conv_transpose(rng, attrs):
    g = attrs.get("group", 1)
    w, b = randn(rng, 6, 5 // g if g == 1 else 4, 3, 4), randn(rng, (5 if g == 1 else 8))
    m = make_model([helper.make_node("ConvTranspose", ["x", "W", "B"], ["y"], **attrs)], [T("W", w), T("B", b)],
                   {"x": [2, 6, 5, 6]})
    check(m, {"x": randn(rng, 2, 6, 5, 6)})


def test_conv_transpose_groups_native(rng):
    w = randn(rng, 8, 4, 2, 2)
    m = make_model([helper.make_node("ConvTranspose", ["x", "W"], ["y"], strides=[2, 2], group=2)], [T("W", w)],
                   {"x": [1, 8, 4, 4]})
    check(m, {"x": randn(rng, 1, 8, 4, 4)})


# ------------------------------------------------------------------------------------------------
# pooling

POOL_CASES = [
    ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
    ("MaxPool", dict(kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)),
    ("MaxPool", dict(kernel_shape=[3, 2], strides=[1, 2], pads=[0, 1, 2, 0])),
    ("MaxPool", dict(kernel_shape=[2, 2], strides=[1, 1], dilations=[2, 2], pads=[1, 1, 1, 1])),
    ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER")),
    ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
    ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1)),
    ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1, ceil_mode=1)),
    ("AveragePool", dict(kernel_shape=[3, 2], strides=[1, 2], pads=[0, 1, 2, 0], count_include_pad=1)),
    ("AveragePool", dict(kernel_shape=[3, 2], strides=[1, 2], pads=[0, 1, 2, 0])),
    ("AveragePool", dict(kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)),
    ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER", count_include_pad=1)),
    ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_LOWER")),
    ("LpPool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
    ("LpPool", dict(kernel_shape=[2, 3], strides=[2, 1])),
]


@pytest.mark.parametrize("op,attrs", POOL_CASES, ids=[f"{o}-{i}" for i, (o, _) in enumerate(POOL_CASES)])
def test_pooling(rng, op, attrs):
    m = make_model([helper.make_node(op, ["x"], ["y"], **attrs)], opset=18 if op == "LpPool" else 17)
    check(m, {"x": randn(rng, 2, 3, 9, 10)})


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
def test_global_pooling_then_gemm(rng, op):
    w, b = randn(rng, 4, 6), randn(rng, 4)
    m = make_model([helper.make_node(op, ["x"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
                    helper.make_node("Gemm", ["f", "W", "B"], ["y"], transB=1)],
                   [T("W", w), T("B", b)], {"x": [3, 6, 5, 7]})
    check(m, {"x": randn(rng, 3, 6, 5, 7)})


# ------------------------------------------------------------------------------------------------
# normalization, neurons, softmax

def test_batch_and_instance_normalization(rng):
    c = 5
    bn = [T("s", rng.uniform(0.5, 2, c)), T("bb", randn(rng, c)), T("m", randn(rng, c)), T("v", rng.uniform(0.5, 2, c))]
    inn = [T("s2", rng.uniform(0.5, 2, c)), T("b2", randn(rng, c))]
    m = make_model([helper.make_node("BatchNormalization", ["x", "s", "bb", "m", "v"], ["n"], epsilon=1e-3),
                    helper.make_node("InstanceNormalization", ["n", "s2", "b2"], ["y"], epsilon=1e-4)],
                   bn + inn, {"x": [3, c, 6, 7]})
    imported, _ = check(m, {"x": randn(rng, 3, c, 6, 7)})
    assert isinstance(imported.data_sources["n"], mpsnn.ArrayBatchNormalizationDataSource)
    assert isinstance(imported.data_sources["y"], mpsnn.ArrayInstanceNormalizationDataSource)
    np.testing.assert_array_equal(imported.data_sources["n"].mean(), numpy_helper.to_array(bn[2]))


def test_conv_batch_norm_relu_folded(rng):
    """Conv + BatchNormalization + Relu: the compiler folds the kept node; the result is the same."""
    w = randn(rng, 6, 3, 3, 3)
    bn = [T("s", rng.uniform(0.5, 2, 6)), T("bb", randn(rng, 6)), T("m", randn(rng, 6)), T("v", rng.uniform(0.5, 2, 6))]
    m = make_model([helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]),
                    helper.make_node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["n"]),
                    helper.make_node("Relu", ["n"], ["y"])], [T("W", w)] + bn)
    check(m, {"x": randn(rng, 2, 3, 9, 10)})


@pytest.mark.parametrize("size", [3, 5])
def test_lrn(rng, size):
    m = make_model([helper.make_node("LRN", ["x"], ["y"], size=size, alpha=0.3, beta=0.6, bias=1.5)],
                   inputs={"x": [2, 7, 4, 5]})
    check(m, {"x": randn(rng, 2, 7, 4, 5)})


NEURONS = [
    ("Relu", {}, ()), ("LeakyRelu", dict(alpha=0.2), ()), ("Elu", dict(alpha=0.7), ()), ("Selu", {}, ()),
    ("Sigmoid", {}, ()), ("HardSigmoid", dict(alpha=0.3, beta=0.4), ()), ("Tanh", {}, ()), ("Softplus", {}, ()),
    ("Softsign", {}, ()), ("Abs", {}, ()), ("Exp", {}, ()), ("Log", {}, ()), ("Pow", {}, (("e", 3.0),)),
    ("Pow", {}, (("e", 0.5),)), ("Clip", {}, (("lo", 0.0), ("hi", 0.8))), ("Clip", {}, (("lo", -0.3), ("hi", 0.5))),
    ("Clip", {}, (("lo", 0.0),)), ("Clip", {}, (("", None), ("hi", 0.2))), ("PRelu", {}, (("slope", [0.1, -0.2, 0.3]),)),
    ("PRelu", {}, (("slope", [0.25]),)), ("Dropout", {}, ()), ("Identity", {}, ()),
]


@pytest.mark.parametrize("op,attrs,consts", NEURONS, ids=[f"{o}-{i}" for i, (o, _, _) in enumerate(NEURONS)])
def test_neurons(rng, op, attrs, consts):
    inits, names = [], ["x0"]
    for name, value in consts:
        names.append(name)
        if name:
            arr = np.asarray(value, np.float32)
            if op == "PRelu" and arr.size == 3:
                arr = arr.reshape(3, 1, 1)
            inits.append(T(name, arr))
    x = randn(rng, 2, 3, 5, 6)
    if op in ("Log", "Pow"):
        x = np.abs(x) + 0.1
    # a 1x1 convolution first: the neuron runs on a node's result (the graph's input is no result)
    m = make_model([helper.make_node("Conv", ["x", "I"], ["x0"]), helper.make_node(op, names, ["y"], **attrs)],
                   [T("I", np.eye(3).reshape(3, 3, 1, 1))] + inits, {"x": [2, 3, 5, 6]})
    check(m, {"x": x})


def test_clip_before_opset_11(rng):
    m = make_model([helper.make_node("Conv", ["x", "I"], ["c"]), helper.make_node("Clip", ["c"], ["y"], min=-0.5, max=0.25)],
                   [T("I", np.eye(3).reshape(3, 3, 1, 1))], {"x": [1, 3, 4, 4]}, opset=10)
    check(m, {"x": randn(rng, 1, 3, 4, 4)})


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_softmax_over_channels(rng, op):
    m = make_model([helper.make_node("Conv", ["x", "W"], ["c"]), helper.make_node(op, ["c"], ["y"], axis=1)],
                   [T("W", randn(rng, 7, 3, 1, 1))], {"x": [2, 3, 4, 5]}, opset=13)
    check(m, {"x": randn(rng, 2, 3, 4, 5)})


def test_softmax_of_a_classifier_old_opset(rng):
    m = make_model([helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("Gemm", ["f", "W"], ["g"], transB=1),
                    helper.make_node("Softmax", ["g"], ["y"])], [T("W", randn(rng, 10, 3 * 4 * 5))],
                   {"x": [2, 3, 4, 5]}, opset=11)
    check(m, {"x": randn(rng, 2, 3, 4, 5)})


# ------------------------------------------------------------------------------------------------
# arithmetic

@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
@pytest.mark.parametrize("shape_b", [[2, 5, 6, 7], [2, 1, 6, 7], [2, 5, 1, 1]], ids=["same", "channel-bcast", "pixel-bcast"])
def test_binary_images(rng, op, shape_b):
    m = make_model([helper.make_node("Conv", ["a", "I"], ["a1"]), helper.make_node("Relu", ["b"], ["b1"]),
                    helper.make_node("Abs", ["b1"], ["b2"]), helper.make_node("Softplus", ["b2"], ["b3"]),
                    helper.make_node(op, ["a1", "b3"], ["y"])],
                   [T("I", np.eye(5).reshape(5, 5, 1, 1))], {"a": [2, 5, 6, 7], "b": shape_b})
    check(m, {"a": randn(rng, 2, 5, 6, 7), "b": randn(rng, *shape_b)})


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
@pytest.mark.parametrize("const_first", [False, True])
@pytest.mark.parametrize("kshape", [[], [5, 1, 1], [1, 5, 1, 1]], ids=["scalar", "per-channel", "per-channel-4d"])
def test_binary_with_constants(rng, op, const_first, kshape):
    k = rng.uniform(0.5, 2.0, kshape).astype(np.float32)
    ins = ["k", "c"] if const_first else ["c", "k"]
    m = make_model([helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]), helper.make_node(op, ins, ["y"])],
                   [T("W", randn(rng, 5, 3, 3, 3)), T("k", k)], {"x": [2, 3, 6, 7]})
    if op == "Div" and const_first and kshape:
        with pytest.raises(mpsnn.UnsupportedError, match=r"'y' \(Div\): a per-channel constant divided by an image"):
            mpsnn.onnx.load(m, CPU)
        return
    check(m, {"x": randn(rng, 2, 3, 6, 7)})


def test_sum_of_three(rng):
    m = make_model([helper.make_node("Relu", ["a"], ["a1"]), helper.make_node("Sigmoid", ["b"], ["b1"]),
                    helper.make_node("Tanh", ["a"], ["c1"]), helper.make_node("Sum", ["a1", "b1", "c1"], ["y"])],
                   inputs={"a": [2, 3, 4, 5], "b": [2, 3, 4, 5]})
    check(m, {"a": randn(rng, 2, 3, 4, 5), "b": randn(rng, 2, 3, 4, 5)})


# ------------------------------------------------------------------------------------------------
# concatenation gaps

def test_concat_odd_channels_then_conv_reads_through_gaps(rng):
    """3 + 5 + 2 channels: MPS slots at 0, 4, 12 (nodes.md §12.1); the convolution after it gets zero
    weights on the gap channels, ReLU runs on them harmlessly, run() leaves them out."""
    nodes = [helper.make_node("Conv", ["x", "W1"], ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["x", "W2"], ["b"]),
             helper.make_node("Sigmoid", ["x"], ["s"]),
             helper.make_node("Conv", ["s", "W3"], ["c"]),
             helper.make_node("Concat", ["a", "b", "c"], ["cat"], axis=1),
             helper.make_node("Sigmoid", ["cat"], ["r"]),  # sigmoid(0) = 0.5 in the gaps
             helper.make_node("Conv", ["r", "W4"], ["y"], pads=[1, 1, 1, 1]),
             helper.make_node("Identity", ["r"], ["z"])]
    inits = [T("W1", randn(rng, 3, 3, 3, 3)), T("W2", randn(rng, 5, 3, 1, 1)), T("W3", randn(rng, 2, 3, 1, 1)),
             T("W4", randn(rng, 4, 10, 3, 3))]
    imported, _ = check(make_model(nodes, inits, outputs=("y", "z")), {"x": randn(rng, 2, 3, 9, 10)}, k=90)
    assert imported.data_sources["y"].weights().shape == (4, 3, 3, 14)  # 14 MPS channels: 0-2, 4-8, 12-13


def test_concat_gaps_then_channel_mixing_ops(rng):
    """Softmax, LRN, Log, Div and a concatenation of differently gapped images compact the gaps
    first (a 1x1 selection convolution); a Gemm after Flatten reads through them."""
    nodes = [helper.make_node("Conv", ["x", "W1"], ["a"]), helper.make_node("Conv", ["x", "W2"], ["b"]),
             helper.make_node("Concat", ["a", "b"], ["cat"], axis=1),              # 5 + 3 -> slots 0, 8
             helper.make_node("Softmax", ["cat"], ["sm"], axis=1),
             helper.make_node("LRN", ["cat"], ["lrn"], size=3),
             helper.make_node("Abs", ["cat"], ["ab"]), helper.make_node("Log", ["ab"], ["lg"]),
             helper.make_node("Concat", ["b", "a"], ["cat2"], axis=1),             # 3 + 5 -> slots 0, 4
             helper.make_node("Add", ["cat", "cat2"], ["sum"]),
             helper.make_node("Div", ["sm", "ab"], ["dv"]),
             helper.make_node("Concat", ["sm", "lg", "sum", "dv"], ["all"], axis=1),
             helper.make_node("Flatten", ["cat"], ["f"]), helper.make_node("Gemm", ["f", "G"], ["y2"], transB=1)]
    inits = [T("W1", randn(rng, 5, 3, 1, 1)), T("W2", randn(rng, 3, 3, 1, 1)), T("G", randn(rng, 6, 8 * 4 * 5))]
    m = make_model(nodes + [helper.make_node("Identity", ["all"], ["y"])], inits, {"x": [2, 3, 4, 5]},
                   outputs=("y", "y2", "lrn"), opset=13)
    check(m, {"x": randn(rng, 2, 3, 4, 5)}, k=160)


# ------------------------------------------------------------------------------------------------
# fully connected, shapes, constants

@pytest.mark.parametrize("trans_b,alpha,beta", [(1, 1.0, 1.0), (0, 0.5, 2.0)])
def test_gemm_after_flatten(rng, trans_b, alpha, beta):
    w = randn(rng, 7, 3 * 4 * 5)
    m = make_model([helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Flatten", ["c"], ["f"]),
                    helper.make_node("Gemm", ["f", "G", "B"], ["g"], transB=trans_b, alpha=alpha, beta=beta),
                    helper.make_node("Relu", ["g"], ["r"]), helper.make_node("Gemm", ["r", "G2"], ["y"], transB=1)],
                   [T("W", randn(rng, 3, 3, 3, 3)), T("G", w if trans_b else w.T), T("B", randn(rng, 7)),
                    T("G2", randn(rng, 4, 7))], {"x": [3, 3, 4, 5]})
    check(m, {"x": randn(rng, 3, 3, 4, 5)})


def test_matmul_add_after_reshape(rng):
    """Reshape to (N, -1) from Constant / folded shape arithmetic, MatMul + Add folded into one fully
    connected layer with a bias."""
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Constant", [], ["s0"], value=numpy_helper.from_array(np.array([0], np.int64))),
             helper.make_node("Constant", [], ["s1"], value=numpy_helper.from_array(np.array([-1], np.int64))),
             helper.make_node("Concat", ["s0", "s1"], ["shape"], axis=0),
             helper.make_node("Reshape", ["r", "shape"], ["f"]),
             helper.make_node("MatMul", ["f", "M"], ["mm"]), helper.make_node("Add", ["mm", "B"], ["y"])]
    m = make_model(nodes, [T("M", randn(rng, 3 * 9 * 10, 6)), T("B", randn(rng, 6))])
    imported, _ = check(m, {"x": randn(rng, 2, 3, 9, 10)}, k=270)
    assert "mm" in imported.data_sources and imported.data_sources["mm"].bias_terms() is not None


def test_reshape_between_flat_and_4d(rng):
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "G"], ["g"], transB=1),
             helper.make_node("Reshape", ["g", "s"], ["g4"]), helper.make_node("Conv", ["g4", "W"], ["y"])]
    m = make_model(nodes, [T("G", randn(rng, 8, 3)), T("W", randn(rng, 4, 8, 1, 1)),
                           numpy_helper.from_array(np.array([-1, 8, 1, 1], np.int64), "s")])
    check(m, {"x": randn(rng, 2, 3, 9, 10)})


def test_initializer_listed_as_input(rng):
    w = T("W", randn(rng, 4, 3, 3, 3))
    m = make_model([helper.make_node("Conv", ["x", "W"], ["y"])], [w], {"x": [1, 3, 5, 5], "W": [4, 3, 3, 3]})
    check(m, {"x": randn(rng, 1, 3, 5, 5)})


# ------------------------------------------------------------------------------------------------
# resampling

RESIZE_CASES = [
    ("nearest", "asymmetric", "floor", [1, 1, 2, 3]),
    ("nearest", "half_pixel", "round_prefer_floor", [1, 1, 3, 2]),
    ("nearest", "pytorch_half_pixel", "round_prefer_ceil", [1, 1, 2, 2]),
    ("linear", "half_pixel", "", [1, 1, 2, 3]),
    ("linear", "pytorch_half_pixel", "", [1, 1, 2, 2]),
    ("linear", "align_corners", "", [1, 1, 3, 2]),
]


@pytest.mark.parametrize("mode,transform,nearest,scales", RESIZE_CASES, ids=[f"{a}-{b}" for a, b, _, _ in RESIZE_CASES])
def test_resize(rng, mode, transform, nearest, scales):
    attrs = dict(mode=mode, coordinate_transformation_mode=transform)
    if nearest:
        attrs["nearest_mode"] = nearest
    m = make_model([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Resize", ["r", "", "sc"], ["y"], **attrs)],
                   [T("sc", scales)], {"x": [2, 3, 4, 5]})
    check(m, {"x": randn(rng, 2, 3, 4, 5)})


def test_resize_sizes_and_upsample(rng):
    sizes = numpy_helper.from_array(np.array([2, 3, 8, 15], np.int64), "sz")
    m = make_model([helper.make_node("Relu", ["x"], ["r"]),
                    helper.make_node("Resize", ["r", "", "", "sz"], ["y"], mode="nearest",
                                     coordinate_transformation_mode="asymmetric", nearest_mode="floor")],
                   [sizes], {"x": [2, 3, 4, 5]})
    check(m, {"x": randn(rng, 2, 3, 4, 5)})
    m9 = make_model([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Upsample", ["r", "sc"], ["y"], mode="nearest")],
                    [T("sc", [1, 1, 2, 2])], {"x": [2, 3, 4, 5]}, opset=9)
    check(m9, {"x": randn(rng, 2, 3, 4, 5)})


# ------------------------------------------------------------------------------------------------
# the result object

def test_inputs_outputs_layouts_and_data_sources(rng, tmp_path):
    w = randn(rng, 4, 3, 3, 3)
    nodes = [helper.make_node("Conv", ["a", "W"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Add", ["c", "b"], ["y"]), helper.make_node("Relu", ["c"], ["z"]),
             helper.make_node("Flatten", ["z"], ["f"]), helper.make_node("Gemm", ["f", "G"], ["q"], transB=1, name="fc")]
    m = make_model(nodes, [T("W", w), T("G", randn(rng, 2, 4 * 5 * 6))], {"a": [2, 3, 5, 6], "b": [2, 4, 5, 6]},
                   outputs=("y", "q", "z"))
    path = tmp_path / "m.onnx"
    onnx.save(m, str(path))
    feeds = {"a": randn(rng, 2, 3, 5, 6), "b": randn(rng, 2, 4, 5, 6)}
    theirs = ort_run(m, feeds)
    for source in (str(path), path, m.SerializeToString()):
        imported = mpsnn.onnx.load(source, CPU)
        assert imported.input_names == ["a", "b"] and imported.output_names == ["y", "q", "z"]
        for ours in (imported.run(feeds), imported.run(feeds["a"], feeds["b"])):
            for a, b in zip(ours, theirs):
                assert_close(a, b, "reduction", "float32", k=120)
    nhwc = imported.run(np.ascontiguousarray(feeds["a"].transpose(0, 2, 3, 1)),
                        np.ascontiguousarray(feeds["b"].transpose(0, 2, 3, 1)), layout="NHWC")
    assert_close(nhwc[0], theirs[0].transpose(0, 2, 3, 1), "reduction", "float32", k=27)
    assert nhwc[1].shape == (2, 2)
    assert isinstance(imported.graph, mpsnn.MPSNNGraph)
    assert set(imported.data_sources) == {"conv", "fc"}
    np.testing.assert_array_equal(imported.data_sources["conv"].weights(), w.transpose(0, 2, 3, 1))
    assert set(imported.image_nodes) >= {"a", "b", "y", "q", "z"}
    # the data sources are the live parameters: doubling the weights doubles the convolution
    imported.data_sources["conv"].weights()[...] *= 2
    imported.graph.reload_from_data_sources()
    assert_close(imported.run(feeds)[2], np.maximum(2 * theirs[2], 0), "reduction", "float32", k=27)
    with pytest.raises(ValueError, match="missing inputs"):
        imported.run({"a": feeds["a"]})
    with pytest.raises(ValueError, match="the model takes 2"):
        imported.run(feeds["a"])
    with pytest.raises(mpsnn.ShapeError, match="4-D"):
        imported.run(feeds["a"][0], feeds["b"])


def test_trainable_data_sources(rng):
    """With an optimizer the imported weights train: 30 SGD steps of a training graph built on the
    imported graph's nodes lower the loss."""
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["c"], ["r"]), helper.make_node("Flatten", ["r"], ["f"]),
             helper.make_node("Gemm", ["f", "G"], ["y"], transB=1, name="fc")]
    m = make_model(nodes, [T("W", randn(rng, 4, 3, 3, 3, scale=0.3)), T("B", np.zeros(4)),
                           T("G", randn(rng, 3, 4 * 4 * 4, scale=0.1))], {"x": [8, 3, 4, 4]})
    names = []

    def sgd(name):
        names.append(name)
        return mpsnn.MPSNNOptimizerStochasticGradientDescent(CPU, learning_rate=0.05)

    imported = mpsnn.onnx.load(m, CPU, optimizer=sgd)
    assert sorted(names) == ["conv", "fc"] and imported.data_sources["conv"].optimizer is not None
    loss_desc = mpsnn.MPSCNNLossDescriptor(mpsnn.MPSCNNLossType.mean_squared_error, mpsnn.MPSCNNReductionType.mean)
    loss = mpsnn.MPSCNNLossNode(source=imported.image_nodes["y"], loss_descriptor=loss_desc)
    training = mpsnn.MPSNNGraph(CPU, loss.training_graph(None, None)[0].result_image, result_image_is_needed=False)
    x = randn(rng, 8, 3, 4, 4)
    target = rng.standard_normal((8, 1, 1, 3)).astype(np.float32)

    def current_loss():
        return float(np.mean((imported.run(x) - target.reshape(8, 3)) ** 2))

    before = current_loss()
    xh = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    data = mpsnn.MPSCNNLossDataDescriptor(target, mpsnn.MPSDataLayout.HeightxWidthxFeatureChannels, (1, 1, 3))
    for _ in range(30):
        training.run([xh], source_states=[mpsnn.MPSCNNLossLabels(CPU, data)])
    imported.graph.reload_from_data_sources()
    after = current_loss()
    assert after < 0.7 * before, (before, after)
