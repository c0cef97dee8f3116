"""mpsnn.onnx: ONNX models imported as MPSNNGraphs, checked against ONNX Runtime.

Models built with onnx.helper always run (onnx and onnxruntime are in the test extra); PyTorch modules
exported with torch.onnx run where torch is installed. Every refusal (UnsupportedError naming the ONNX
node) has a test.
"""

from __future__ import annotations

import io
import os
import sys
import warnings

import numpy as np
import pytest

import mpsnn

if os.environ.get("MPSNN_SANITIZED"):
    # tools/sanitize.sh: importing onnx makes protobuf's upb runtime keep descriptor objects that it
    # never frees, which LeakSanitizer reports at exit (third-party, not ours). The importer is pure
    # Python over bindings the other tests run under the sanitizers.
    pytest.skip("onnx's protobuf runtime leaks descriptor objects under LeakSanitizer", allow_module_level=True)
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
    dict(pads=[4, 3, 0, 5], strides=[3, 3]),  # pads wider than the kernel: windows in the padding alone
    dict(auto_pad="SAME_UPPER", strides=[3, 4]),  # stride past the window: negative pads (windows start inside)
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
    dict(strides=[3, 3], pads=[4, 0, 3, 1], output_padding=[2, 1]),
], ids=["k-s2-p1", "output-padding", "asymmetric", "stride1", "groups", "wide-pads"])
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
    ("AveragePool", dict(kernel_shape=[5, 5], strides=[3, 3], pads=[4, 3, 2, 1], count_include_pad=1)),
    ("AveragePool", dict(kernel_shape=[5, 5], strides=[3, 3], pads=[4, 4, 4, 4])),
    ("MaxPool", dict(kernel_shape=[5, 5], strides=[3, 3], pads=[4, 4, 4, 4])),
    ("LpPool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
    ("LpPool", dict(kernel_shape=[2, 3], strides=[2, 1])),
]


@pytest.mark.parametrize("op,attrs", POOL_CASES, ids=[f"{o}-{i}" for i, (o, _) in enumerate(POOL_CASES)])
def test_pooling(rng, op, attrs):
    m = make_model([helper.make_node(op, ["x"], ["y"], **attrs)], opset=18 if op == "LpPool" else 17)
    check(m, {"x": randn(rng, 2, 3, 9, 10)})


def test_random_window_geometries(rng):
    """80 random Conv / ConvTranspose / pooling geometries (kernel, stride, dilation, explicit or auto
    pads, ceil_mode, count_include_pad, output_padding) match ONNX Runtime, or are refused."""
    matched = 0
    for _ in range(80):
        op = str(rng.choice(["Conv", "ConvTranspose", "MaxPool", "AveragePool", "LpPool"]))
        kh, kw = (int(k) for k in rng.integers(1, 5, 2))
        sh, sw = (int(s) for s in rng.integers(1, 4, 2))
        dh, dw = (int(d) for d in rng.integers(1, 3, 2)) if op in ("Conv", "ConvTranspose", "MaxPool") else (1, 1)
        h, w = int(rng.integers(max(kh * dh, 3), 10)), int(rng.integers(max(kw * dw, 3), 10))
        auto = str(rng.choice(["NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"])) if op != "ConvTranspose" \
            else "NOTSET"
        pool = op in ("MaxPool", "AveragePool", "LpPool")
        attrs: dict = {"strides": [sh, sw]}
        if op != "AveragePool" and op != "LpPool":
            attrs["dilations"] = [dh, dw]
        if pool:
            attrs["kernel_shape"] = [kh, kw]
            if auto == "NOTSET" and rng.random() < 0.4:
                attrs["ceil_mode"] = 1
            if op == "AveragePool":
                attrs["count_include_pad"] = int(rng.integers(0, 2))
        if auto == "NOTSET":
            attrs["pads"] = [int(rng.integers(0, lim)) for lim in ([kh, kw, kh, kw] if pool else [4] * 4)]
        else:
            attrs["auto_pad"] = auto
        inits, ins = [], ["r"]
        if op == "Conv":
            inits, ins = [T("W", randn(rng, 3, 2, kh, kw))], ["r", "W"]
        elif op == "ConvTranspose":
            attrs["output_padding"] = [int(rng.integers(0, max(sh, dh))), int(rng.integers(0, max(sw, dw)))]
            inits, ins = [T("W", randn(rng, 2, 3, kh, kw))], ["r", "W"]
        m = make_model([helper.make_node("Relu", ["x"], ["r"]), helper.make_node(op, ins, ["y"], name="n", **attrs)],
                       inits, {"x": [2, 2, h, w]}, opset=18)
        x = randn(rng, 2, 2, h, w)
        try:
            expected = ort_run(m, {"x": x})[0]
        except Exception:  # noqa: BLE001 - a geometry ONNX Runtime itself rejects
            continue
        try:
            ours = mpsnn.onnx.load(m, CPU).run(x)
        except mpsnn.UnsupportedError as e:
            assert "'n'" in str(e)
            continue
        assert ours.shape == expected.shape, (op, attrs, h, w)
        assert_close(ours, expected, "reduction", "float32", k=32)
        matched += 1
    assert matched >= 50


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
    # the neuron after a 1x1 identity convolution (the compiler fuses it there)
    m = make_model([helper.make_node("Conv", ["x", "I"], ["x0"]), helper.make_node(op, names, ["y"], **attrs)],
                   [T("I", np.eye(3).reshape(3, 3, 1, 1))] + inits, {"x": [2, 3, 5, 6]})
    check(m, {"x": x})


def test_clip_of_infinities(rng):
    """Clip with finite bounds other than 0 (the arithmetic node's clamp) maps infinities to the bounds.
    (With lo = 0 it is MPS's ReLUN, whose 0 * u below zero turns -inf into NaN: see the module doc.)"""
    x = randn(rng, 1, 3, 4, 4)
    x[0, 0, 0, :3] = [np.inf, -np.inf, 0.4]
    m = make_model([helper.make_node("Clip", ["x", "lo", "hi"], ["y"])], [T("lo", np.array(-0.3)), T("hi", np.array(0.5))],
                   {"x": [1, 3, 4, 4]})
    check(m, {"x": x})


def test_clip_before_opset_11(rng):
    m = make_model([helper.make_node("Conv", ["x", "I"], ["c"]), helper.make_node("Clip", ["c"], ["y"], min=-0.5, max=0.25)],
                   [T("I", np.eye(3).reshape(3, 3, 1, 1))], {"x": [1, 3, 4, 4]}, opset=10)
    check(m, {"x": randn(rng, 1, 3, 4, 4)})
    # opset 11+: the bounds are inputs, here Constant nodes
    m = make_model([helper.make_node("Constant", [], ["lo"], value_float=-0.5),
                    helper.make_node("Constant", [], ["hi"], value=T("h", np.array(0.25))),
                    helper.make_node("Conv", ["x", "I"], ["c"]), helper.make_node("Clip", ["c", "lo", "hi"], ["y"])],
                   [T("I", np.eye(3).reshape(3, 3, 1, 1))], {"x": [1, 3, 4, 4]}, opset=13)
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
    model, x = make_model(nodes, inits, outputs=("y", "z")), {"x": randn(rng, 2, 3, 9, 10)}
    imported, _ = check(model, x, k=90)
    assert imported.data_sources["y"].weights().shape == (4, 3, 3, 14)  # 14 MPS channels: 0-2, 4-8, 12-13
    # the graph's own result for z holds ONNX's 10 channels (a selection convolution removed the gaps)
    results = imported.graph.run([np.ascontiguousarray(x["x"].transpose(0, 2, 3, 1))])
    assert sorted(r.numpy().shape[-1] for r in results) == [4, 10]
    # a trainable layer reads a compacted source: its weights are exactly ONNX's
    trainable, _ = check(model, x, k=90, optimizer=lambda name: mpsnn.MPSNNOptimizerStochasticGradientDescent(CPU, 0.01))
    np.testing.assert_array_equal(trainable.data_sources["y"].weights(),
                                  numpy_helper.to_array(inits[3]).transpose(0, 2, 3, 1))


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


def test_grouped_depthwise_and_transposed_convolutions_read_through_gaps(rng):
    """After a 3 + 5 concatenation (slots 0 and 4): a depthwise, a grouped (groups of 4 channels: the
    gaps break the groups, so a dense convolution with zero weights across groups) and a transposed
    convolution."""
    nodes = [helper.make_node("Conv", ["x", "W1"], ["a"]), helper.make_node("Conv", ["x", "W2"], ["b"]),
             helper.make_node("Concat", ["a", "b"], ["cat"], axis=1),
             helper.make_node("Conv", ["cat", "D"], ["dw"], group=8, pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["cat", "G"], ["gr"], group=2, pads=[0, 1, 0, 1]),
             helper.make_node("ConvTranspose", ["cat", "U"], ["up"], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("ConvTranspose", ["cat", "U2"], ["up2"], strides=[2, 2], group=2)]
    inits = [T("W1", randn(rng, 3, 3, 1, 1)), T("W2", randn(rng, 5, 3, 1, 1)), T("D", randn(rng, 8, 1, 3, 3)),
             T("G", randn(rng, 6, 4, 3, 3)), T("U", randn(rng, 8, 3, 4, 4)), T("U2", randn(rng, 8, 2, 2, 2))]
    check(make_model(nodes, inits, {"x": [2, 3, 5, 6]}, outputs=("dw", "gr", "up", "up2")), {"x": randn(rng, 2, 3, 5, 6)})


def _random_channel_graph(rng):
    """A random graph over images of odd channel counts: convolutions, depthwise convolutions,
    concatenations (of concatenations), neurons, Log, image arithmetic, Softmax, LRN, pooling,
    batch normalization and per-channel constants; outputs: a convolution of the last image, a Gemm
    after Flatten of another, and the last image itself."""
    nodes, inits, vals = [], [T("one", np.array(1.0))], [("x", 3)]

    def new(prefix="v"):
        return f"{prefix}{len(nodes)}_{len(inits)}"

    for _ in range(int(rng.integers(3, 9))):
        kind = str(rng.choice(["conv", "concat", "neuron", "arith", "softmax", "pool", "bn", "const", "dw", "lrn",
                               "log"]))
        name, c = vals[int(rng.integers(0, len(vals)))]
        o = new()
        if kind in ("conv", "dw"):
            co = int(rng.integers(1, 8)) if kind == "conv" else c
            w = new("W")
            inits.append(T(w, randn(rng, co, c if kind == "conv" else 1, 3, 3, scale=0.4)))
            nodes.append(helper.make_node("Conv", [name, w], [o], pads=[1, 1, 1, 1], group=1 if kind == "conv" else c))
            c = co
        elif kind == "concat":
            picks = [vals[int(rng.integers(0, len(vals)))] for _ in range(int(rng.integers(2, 4)))]
            nodes.append(helper.make_node("Concat", [p[0] for p in picks], [o], axis=1))
            c = sum(p[1] for p in picks)
        elif kind == "neuron":
            op = str(rng.choice(["Relu", "Sigmoid", "Tanh", "Elu", "Softplus", "Abs"]))
            nodes.append(helper.make_node(op, [name], [o]))
        elif kind == "log":
            a, b = new("a"), new("b")
            nodes += [helper.make_node("Abs", [name], [a]), helper.make_node("Add", [a, "one"], [b]),
                      helper.make_node("Log", [b], [o])]
        elif kind == "arith":
            same = [v[0] for v in vals if v[1] == c]
            nodes.append(helper.make_node(str(rng.choice(["Add", "Mul", "Sub"])), [name, same[int(rng.integers(0, len(same)))]], [o]))
        elif kind in ("softmax", "lrn", "pool"):
            nodes.append(helper.make_node("Softmax", [name], [o], axis=1) if kind == "softmax" else
                         helper.make_node("LRN", [name], [o], size=3) if kind == "lrn" else
                         helper.make_node("MaxPool", [name], [o], kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
        elif kind == "bn":
            ps = [new(f"bn{i}") for i in range(4)]
            for p, a in zip(ps, [rng.uniform(0.5, 2, c), randn(rng, c), randn(rng, c), rng.uniform(0.5, 2, c)]):
                inits.append(T(p, a))
            nodes.append(helper.make_node("BatchNormalization", [name] + ps, [o]))
        else:
            k = new("k")
            inits.append(T(k, rng.uniform(0.5, 2, (c, 1, 1))))
            nodes.append(helper.make_node(str(rng.choice(["Mul", "Add", "Sub"])), [name, k], [o]))
        vals.append((o, c))
    last, c = vals[-1]
    other, oc = vals[int(rng.integers(1, len(vals)))]
    inits += [T("Wy", randn(rng, 2, c, 3, 3, scale=0.4)), T("Gz", randn(rng, 3, oc * 5 * 6, scale=0.2))]
    nodes += [helper.make_node("Conv", [last, "Wy"], ["y"], pads=[1, 1, 1, 1]), helper.make_node("Flatten", [other], ["f"]),
              helper.make_node("Gemm", ["f", "Gz"], ["z"], transB=1)]
    return make_model(nodes, inits, {"x": [2, 3, 5, 6]}, outputs=("y", "z", last), opset=13)


def test_random_concatenation_graphs(rng):
    """25 random graphs whose images have odd channel counts (so concatenations leave gaps) match
    ONNX Runtime."""
    for _ in range(25):
        check(_random_channel_graph(rng), {"x": randn(rng, 2, 3, 5, 6)}, k=2000)


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


def test_per_feature_ops_after_gemm(rng):
    """On (N, C) tensors a per-channel constant or slope has shape (C,) (trailing-axis broadcasting)."""
    nodes = [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("Gemm", ["f", "G"], ["g"], transB=1),
             helper.make_node("PRelu", ["g", "s"], ["p"]), helper.make_node("Mul", ["p", "k"], ["m"]),
             helper.make_node("Add", ["m", "k2"], ["y"])]
    m = make_model(nodes, [T("G", randn(rng, 6, 3 * 4 * 5)), T("s", rng.uniform(0, 0.5, 6)), T("k", randn(rng, 6)),
                           T("k2", randn(rng, 1, 6))], {"x": [2, 3, 4, 5]})
    check(m, {"x": randn(rng, 2, 3, 4, 5)})


def test_matmul_add_after_reshape(rng):
    """Reshape to (N, -1) from Constant / folded shape arithmetic, MatMul + Add folded into one fully
    connected layer with a bias."""
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Constant", [], ["s0"], value=numpy_helper.from_array(np.array([0], np.int64))),
             helper.make_node("Constant", [], ["s1"], value_ints=[-1]),
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


@pytest.mark.parametrize("opset", [11, 18])
def test_reduce_squeeze_unsqueeze(rng, opset):
    """A squeeze-and-excitation block: ReduceMean over H, W (keepdims 0), Gemm, Unsqueeze, Mul."""
    def axes_of(op, axes, **kw):
        if opset >= 18 or (opset >= 13 and op in ("Squeeze", "Unsqueeze")):
            return helper.make_node(op, [kw.pop("src"), "ax"], [kw.pop("dst")], **kw)
        return helper.make_node(op, [kw.pop("src")], [kw.pop("dst")], axes=axes, **kw)
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]),
             axes_of("ReduceMean", [2, 3], src="c", dst="m", keepdims=0),
             helper.make_node("Gemm", ["m", "G"], ["g"], transB=1), helper.make_node("Sigmoid", ["g"], ["s"]),
             axes_of("Unsqueeze", [2, 3], src="s", dst="u"), helper.make_node("Mul", ["c", "u"], ["y"]),
             axes_of("ReduceMax", [2, 3], src="y", dst="mx", keepdims=1), axes_of("Squeeze", [2, 3], src="mx", dst="z")]
    inits = [T("W", randn(rng, 5, 3, 3, 3)), T("G", randn(rng, 5, 5)),
             numpy_helper.from_array(np.array([2, 3], np.int64), "ax")]
    check(make_model(nodes, inits, outputs=("y", "z"), opset=opset), {"x": randn(rng, 2, 3, 9, 10)})


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
    m7 = make_model([helper.make_node("Relu", ["x"], ["r"]),
                     helper.make_node("Upsample", ["r"], ["y"], mode="nearest", scales=[1.0, 1.0, 3.0, 2.0])],
                    inputs={"x": [2, 3, 4, 5]}, opset=7)
    check(m7, {"x": randn(rng, 2, 3, 4, 5)})
    m10 = make_model([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Resize", ["r", "sc"], ["y"], mode="nearest")],
                     [T("sc", [1, 1, 3, 2])], {"x": [2, 3, 4, 5]}, opset=10)
    check(m10, {"x": randn(rng, 2, 3, 4, 5)})


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


def test_data_sources_of_nodes_sharing_a_name(rng):
    nodes = [helper.make_node("Conv", ["x", "W"], ["a"], name="same"), helper.make_node("Conv", ["a", "W2"], ["y"], name="same")]
    m = make_model(nodes, [T("W", randn(rng, 4, 3, 1, 1)), T("W2", randn(rng, 2, 4, 1, 1))])
    imported = mpsnn.onnx.load(m, CPU)  # (ONNX Runtime refuses such a model; the checker does not)
    assert set(imported.data_sources) == {"same", "same:y"}
    assert imported.data_sources["same:y"].weights().shape == (2, 1, 1, 4)


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


# ------------------------------------------------------------------------------------------------
# PyTorch modules exported with torch.onnx (skipped without torch)

def _torch_nets():
    torch = pytest.importorskip("torch")
    nn, F = torch.nn, torch.nn.functional

    class Basic(nn.Module):  # ResNet basic block, projection shortcut when the shape changes
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.c1, self.b1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
            self.c2, self.b2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
            self.short = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                          if stride != 1 or cin != cout else nn.Identity())

        def forward(self, x):
            return F.relu(self.b2(self.c2(F.relu(self.b1(self.c1(x))))) + self.short(x))

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 7, 3, 1, 1, bias=False), nn.BatchNorm2d(7), nn.ReLU(),
                                      nn.MaxPool2d(3, 2, 1))
            self.layers = nn.Sequential(Basic(7, 7, 1), Basic(7, 10, 2))
            self.fc = nn.Linear(10, 5)

        def forward(self, x):
            return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1), 1))

    vgg = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Conv2d(6, 9, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(9 * 4 * 4, 12), nn.ReLU(), nn.Dropout(), nn.Linear(12, 5),
                        nn.Softmax(dim=1))

    class Inception(nn.Module):  # branches of 5, 7, 3 and 6 channels concatenated
        def __init__(self):
            super().__init__()
            self.b1 = nn.Conv2d(3, 5, 1)
            self.b2 = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 7, 3, padding=1))
            self.b3 = nn.Sequential(nn.Conv2d(3, 2, 1), nn.ReLU(), nn.Conv2d(2, 3, 5, padding=2))
            self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(3, 6, 1))
            self.head = nn.Conv2d(21, 4, 3, padding=1)

        def forward(self, x):
            y = F.relu(torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1))
            return self.head(y), y

    class Dense(nn.Module):  # DenseNet: each layer's 5 new channels concatenated to its input
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 6, 3, padding=1)
            self.layers = nn.ModuleList(
                nn.Sequential(nn.BatchNorm2d(6 + 5 * i), nn.ReLU(), nn.Conv2d(6 + 5 * i, 5, 3, padding=1))
                for i in range(3))
            self.trans = nn.Sequential(nn.BatchNorm2d(21), nn.ReLU(), nn.Conv2d(21, 8, 1), nn.AvgPool2d(2))
            self.fc = nn.Linear(8 * 4 * 4, 3)

        def forward(self, x):
            x = self.stem(x)
            for layer in self.layers:
                x = torch.cat([x, layer(x)], 1)
            return self.fc(torch.flatten(self.trans(x), 1))

    def dw(cin, cout, stride):  # MobileNet depthwise-separable block
        return nn.Sequential(nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin),
                             nn.ReLU6(), nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU6())

    mobilenet = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU6(), dw(8, 12, 1), dw(12, 17, 2), dw(17, 17, 1),
                              nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(17, 4))

    class Fire(nn.Module):  # SqueezeNet fire module
        def __init__(self, cin, s, e1, e3):
            super().__init__()
            self.s, self.e1, self.e3 = nn.Conv2d(cin, s, 1), nn.Conv2d(s, e1, 1), nn.Conv2d(s, e3, 3, padding=1)

        def forward(self, x):
            x = F.relu(self.s(x))
            return torch.cat([F.relu(self.e1(x)), F.relu(self.e3(x))], 1)

    squeezenet = nn.Sequential(nn.Conv2d(3, 8, 3, 2), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True),
                               Fire(8, 3, 5, 6), Fire(11, 4, 6, 6), nn.MaxPool2d(3, 2, ceil_mode=True),
                               Fire(12, 3, 7, 5), nn.Dropout(), nn.Conv2d(12, 5, 1), nn.ReLU(),
                               nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LogSoftmax(dim=1))

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.d1 = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU())
            self.d2 = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(5, 7, 3, padding=1), nn.ReLU())
            self.d3 = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(7, 9, 3, padding=1), nn.ReLU())
            self.up2 = nn.ConvTranspose2d(9, 6, 2, stride=2)
            self.u2 = nn.Sequential(nn.Conv2d(13, 6, 3, padding=1), nn.ReLU())
            self.u1 = nn.Sequential(nn.Conv2d(11, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1))

        def forward(self, x):
            a = self.d1(x)
            b = self.d2(a)
            c = self.d3(b)
            u = torch.cat([b, self.up2(c)], 1)
            u = F.interpolate(self.u2(u), scale_factor=2, mode="bilinear", align_corners=False)
            n = F.interpolate(self.u2(torch.cat([b, self.up2(c)], 1)), scale_factor=2, mode="nearest")
            return torch.sigmoid(self.u1(torch.cat([a, u + n], 1)))

    return torch, {"resnet": (ResNet(), (3, 3, 16, 16)), "vgg": (vgg, (2, 3, 16, 16)),
                   "inception": (Inception(), (2, 3, 9, 11)), "densenet": (Dense(), (3, 3, 8, 8)),
                   "mobilenet": (mobilenet, (2, 3, 17, 15)), "squeezenet": (squeezenet, (2, 3, 23, 21)),
                   "unet": (UNet(), (2, 3, 12, 16))}


TORCH_NETS = ["resnet", "vgg", "inception", "densenet", "mobilenet", "squeezenet", "unet"]


def _export(torch, net, x, opset=17):
    f = io.BytesIO()
    try:
        with warnings.catch_warnings():  # the TorchScript exporter is deprecated (and warns) in torch 2.9+
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (x,), f, dynamo=False, opset_version=opset, input_names=["x"],
                              dynamic_axes={"x": {0: "N"}})
    except (ImportError, ModuleNotFoundError) as e:  # the exporter's own dependencies
        pytest.skip(f"torch.onnx.export needs {e}")
    return onnx.load_from_string(f.getvalue())


@pytest.mark.parametrize("name", TORCH_NETS)
def test_torch_exported_networks(name):
    torch, nets = _torch_nets()
    torch.manual_seed(0)
    net, shape = nets[name]
    for m in net.modules():  # non-trivial running statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    net.eval()
    x = torch.randn(*shape)
    model = _export(torch, net, x)
    feeds = {"x": x.numpy()}
    imported, ours = check(model, feeds, k=400)
    with torch.no_grad():
        expected = net(x)
    expected = expected if isinstance(expected, tuple) else (expected,)
    for a, b in zip(ours, expected):
        assert_close(a, b.numpy(), "reduction", "float32", k=400)
    assert imported.data_sources, "the importer made data sources"
    # exported with a symbolic batch: another batch size runs too
    x5 = np.random.default_rng(5).standard_normal((5,) + shape[1:]).astype(np.float32)
    ours5 = imported.run(x5)
    for a, b in zip(ours5 if isinstance(ours5, list) else [ours5], ort_run(model, {"x": x5})):
        assert_close(a, b, "reduction", "float32", k=400)


# ------------------------------------------------------------------------------------------------
# refusals: UnsupportedError naming the ONNX node and why

def _conv_then(op, attrs=None, consts=(), inputs=None, shape=(2, 4, 6, 6), opset=17, extra_inputs=()):
    """Conv 'c' (4 channels) followed by one node 'bad' of type op."""
    inits = [T("W", np.ones((4, shape[1], 1, 1)))] + [numpy_helper.from_array(np.asarray(v), n) for n, v in consts]
    names = ["c"] + list(extra_inputs) + [n for n, _ in consts]
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], name="conv"),
             helper.make_node(op, names, ["y"], name="bad", **(attrs or {}))]
    return make_model(nodes, inits, inputs or {"x": list(shape)}, opset=opset)


def _two_concat(axis_node):
    nodes = [helper.make_node("Conv", ["x", "W"], ["a"]), helper.make_node("Conv", ["x", "W"], ["b"]), axis_node]
    return make_model(nodes, [T("W", np.ones((3, 3, 1, 1)))], {"x": [2, 3, 4, 5]})


f32 = np.float32
REFUSALS = [
    ("unknown-op", lambda: _conv_then("Transpose", dict(perm=[0, 2, 3, 1])), r"'bad' \(Transpose\): this operator is not supported"),
    ("foreign-domain", lambda: make_model([helper.make_node("Relu", ["x"], ["y"], name="bad", domain="com.example")]),
     r"'bad' \(Relu\): operator domain 'com.example'"),
    ("negative-pads", lambda: _conv_then("MaxPool", dict(kernel_shape=[2, 2], pads=[-1, 0, 0, 0])), r"'bad' \(MaxPool\): pads .* negative"),
    ("conv-3d-kernel", lambda: make_model([helper.make_node("Conv", ["x", "W"], ["y"], name="bad")],
                                          [T("W", np.ones((2, 3, 1, 1, 1)))], {"x": [1, 3, 4, 4]}), r"'bad' \(Conv\): weights have shape"),
    ("input-rank-3", lambda: make_model([helper.make_node("Relu", ["x"], ["y"])], inputs={"x": [1, 3, 4]}), r"input 'x' has 3 dimensions"),
    ("input-symbolic-channels", lambda: make_model([helper.make_node("Relu", ["x"], ["y"])], inputs={"x": [1, "C", 4, 4]}),
     r"'x' has a symbolic channel count"),
    ("conv-transpose-output-shape", lambda: _conv_then("ConvTranspose", dict(output_shape=[12, 12], strides=[2, 2]),
                                                        [("Wt", np.ones((4, 2, 3, 3), f32))]), r"'bad' \(ConvTranspose\): output_shape"),
    ("conv-transpose-same", lambda: _conv_then("ConvTranspose", dict(auto_pad="SAME_UPPER", strides=[2, 2]),
                                                [("Wt", np.ones((4, 2, 3, 3), f32))]), r"'bad' \(ConvTranspose\): auto_pad SAME_UPPER"),
    ("avgpool-dilated", lambda: _conv_then("AveragePool", dict(kernel_shape=[2, 2], dilations=[2, 2])),
     r"'bad' \(AveragePool\): dilated average pooling"),
    ("avgpool-count-pad-overhang", lambda: _conv_then("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1],
                                                                         ceil_mode=1, count_include_pad=1), shape=(1, 4, 7, 7)),
     r"'bad' \(AveragePool\): with count_include_pad=1, ceil_mode and unequal"),
    ("lppool-p1", lambda: _conv_then("LpPool", dict(kernel_shape=[2, 2], p=1)), r"'bad' \(LpPool\): p = 1"),
    ("lrn-even", lambda: _conv_then("LRN", dict(size=4)), r"'bad' \(LRN\): size 4 is even"),
    ("softmax-last-axis", lambda: _conv_then("Softmax", dict(axis=-1), opset=13), r"'bad' \(Softmax\): normalizes over the last axis"),
    ("softmax-old-opset-flattens", lambda: _conv_then("Softmax", dict(axis=1), opset=11), r"'bad' \(Softmax\): normalizes over all of C\*H\*W"),
    ("concat-axis-2", lambda: _two_concat(helper.make_node("Concat", ["a", "b"], ["y"], axis=2, name="bad")), r"'bad' \(Concat\): axis 2"),
    ("concat-flattened", lambda: make_model([helper.make_node("Conv", ["x", "W"], ["a"]), helper.make_node("Flatten", ["a"], ["f"]),
                                             helper.make_node("Flatten", ["x"], ["g"]),
                                             helper.make_node("Concat", ["f", "g"], ["y"], axis=1, name="bad")],
                                            [T("W", np.ones((3, 3, 1, 1)))], {"x": [2, 3, 4, 5]}),
     r"'bad' \(Concat\): concatenation of flattened tensors"),
    ("resize-fraction", lambda: _conv_then("Resize", dict(mode="nearest"), [("roi", np.zeros(0, f32)), ("sc", np.array([1, 1, 1.5, 2], f32))]),
     r"'bad' \(Resize\): scale factors 1.5 x 2.0"),
    ("resize-channels", lambda: _conv_then("Resize", dict(mode="nearest"), [("roi", np.zeros(0, f32)), ("sc", np.array([1, 2, 2, 2], f32))]),
     r"'bad' \(Resize\): scales .* height and width only"),
    ("resize-cubic", lambda: _conv_then("Resize", dict(mode="cubic"), [("roi", np.zeros(0, f32)), ("sc", np.array([1, 1, 2, 2], f32))]),
     r"'bad' \(Resize\): mode 'cubic'"),
    ("resize-nearest-align-corners", lambda: _conv_then("Resize", dict(mode="nearest", coordinate_transformation_mode="align_corners"),
                                                        [("roi", np.zeros(0, f32)), ("sc", np.array([1, 1, 2, 2], f32))]),
     r"'bad' \(Resize\): nearest mode with coordinate_transformation_mode 'align_corners'"),
    ("resize-asymmetric-round", lambda: _conv_then("Resize", dict(mode="nearest", coordinate_transformation_mode="asymmetric",
                                                                  nearest_mode="round_prefer_ceil"),
                                                   [("roi", np.zeros(0, f32)), ("sc", np.array([1, 1, 2, 2], f32))]),
     r"'bad' \(Resize\): .*nearest_mode 'round_prefer_ceil'"),
    ("resize-linear-asymmetric", lambda: _conv_then("Resize", dict(mode="linear", coordinate_transformation_mode="asymmetric"),
                                                    [("roi", np.zeros(0, f32)), ("sc", np.array([1, 1, 2, 2], f32))]),
     r"'bad' \(Resize\): linear mode with coordinate_transformation_mode 'asymmetric'"),
    ("add-full-constant", lambda: _conv_then("Add", consts=[("k", np.ones((1, 4, 6, 6), f32))]),
     r"'bad' \(Add\): the constant operand has shape \(1, 4, 6, 6\)"),
    ("flatten-axis-2", lambda: _conv_then("Flatten", dict(axis=2)), r"'bad' \(Flatten\): axis 2"),
    ("reshape-other", lambda: _conv_then("Reshape", consts=[("s", np.array([2, 4, 36], np.int64))]),
     r"'bad' \(Reshape\): reshape of a \(N, 4, 6, 6\) tensor to \[2, 4, 36\]"),
    ("gemm-trans-a", lambda: make_model([helper.make_node("Flatten", ["x"], ["f"]),
                                         helper.make_node("Gemm", ["f", "G"], ["y"], transA=1, name="bad")],
                                        [T("G", np.ones((2, 3)))], {"x": [2, 3, 1, 1]}), r"'bad' \(Gemm\): transA=1"),
    ("gemm-on-4d", lambda: _conv_then("Gemm", consts=[("G", np.ones((4, 3), f32))]), r"'bad' \(Gemm\): input is a 4-D tensor"),
    ("gemm-wrong-size", lambda: make_model([helper.make_node("Flatten", ["x"], ["f"]),
                                            helper.make_node("Gemm", ["f", "G"], ["y"], name="bad")],
                                           [T("G", np.ones((5, 2)))], {"x": [2, 3, 1, 1]}), r"'bad' \(Gemm\): weights take 5 inputs"),
    ("gemm-symbolic-size", lambda: make_model([helper.make_node("Flatten", ["x"], ["f"]),
                                               helper.make_node("Gemm", ["f", "G"], ["y"], name="bad")],
                                              [T("G", np.ones((12, 2)))], {"x": [2, 3, "H", "W"]}),
     r"'bad' \(Gemm\): needs the input's height and width .* input_shapes"),
    ("maxpool-indices", lambda: make_model([helper.make_node("Relu", ["x"], ["r"]),
                                            helper.make_node("MaxPool", ["r"], ["y", "i"], kernel_shape=[2, 2], name="bad"),
                                            helper.make_node("Cast", ["i"], ["z"], to=TensorProto.FLOAT)],
                                           outputs=("y", "z")), r"'bad' \(MaxPool\): output 'i' is used"),
    ("batchnorm-training", lambda: _conv_then("BatchNormalization", dict(training_mode=1),
                                              [(n, np.ones(4, f32)) for n in ("s", "b", "m", "v")]),
     r"'bad' \(BatchNormalization\): training_mode=1"),
    ("pow-tensor-exponent", lambda: _conv_then("Pow", consts=[("e", np.ones((1, 4, 1, 1), f32))]),
     r"'bad' \(Pow\): the exponent has shape \(1, 4, 1, 1\)"),
    ("pow-image-exponent", lambda: make_model([helper.make_node("Relu", ["x"], ["r"]),
                                               helper.make_node("Pow", ["r", "r"], ["y"], name="bad")]),
     r"'bad' \(Pow\): input 'r' is computed by the graph"),
    ("prelu-slope-shape", lambda: _conv_then("PRelu", consts=[("s", np.ones((4, 6, 6), f32))]),
     r"'bad' \(PRelu\): slope of shape \(4, 6, 6\)"),
    ("prelu-slope-per-column", lambda: _conv_then("PRelu", consts=[("s", np.ones(6, f32))]),  # (6,) broadcasts over W
     r"'bad' \(PRelu\): slope of shape \(6,\)"),
    ("output-is-input", lambda: make_model([helper.make_node("Identity", ["x"], ["y"])]), r"output 'y' is a graph input"),
    ("output-is-constant", lambda: make_model([helper.make_node("Relu", ["x"], ["r"]),
                                               helper.make_node("Constant", [], ["y"], value=T("v", np.ones(2)))]),
     r"output 'y' is a constant"),
    ("integer-input", lambda: helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g", [helper.make_tensor_value_info("x", TensorProto.INT32, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, None)]), opset_imports=[helper.make_opsetid("", 17)]),
     r"input 'x' has element type INT32"),
    ("dropout-training", lambda: _conv_then("Dropout", consts=[("r", np.array(0.5, f32)), ("t", np.array(True))]),
     r"'bad' \(Dropout\): training_mode is true"),
    ("div-constant-by-channels", lambda: make_model([helper.make_node("Relu", ["x"], ["r"]),
                                                     helper.make_node("Div", ["k", "r"], ["y"], name="bad")],
                                                    [T("k", np.ones((3, 1, 1)))]),
     r"'bad' \(Div\): a per-channel constant divided by an image"),
    ("mixed-ranks", lambda: make_model([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Flatten", ["r"], ["f"]),
                                        helper.make_node("Add", ["r", "f"], ["y"], name="bad")]),
     r"'bad' \(Add\): operands of rank 4 and 2"),
    ("no-broadcast", lambda: make_model([helper.make_node("Relu", ["a"], ["r"]), helper.make_node("Relu", ["b"], ["s"]),
                                         helper.make_node("Add", ["r", "s"], ["y"], name="bad")],
                                        inputs={"a": [1, 3, 4, 4], "b": [1, 2, 4, 4]}),
     r"'bad' \(Add\): shapes \(N, 3, 4, 4\) and \(N, 2, 4, 4\) do not broadcast"),
    ("batchnorm-of-flattened", lambda: make_model(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Flatten", ["r"], ["f"]),
         helper.make_node("BatchNormalization", ["f", "s", "s", "z", "s"], ["y"], name="bad")],
        [T("s", np.ones(270)), T("z", np.zeros(270))]), r"'bad' \(BatchNormalization\): normalizes each of the 270 features"),
    ("reduce-channels", lambda: _conv_then("ReduceMean", dict(axes=[1]), opset=13), r"'bad' \(ReduceMean\): reduces axes \[1\]"),
    ("squeeze-spatial", lambda: _conv_then("Squeeze", consts=[("a", np.array([2], np.int64))], shape=(2, 4, 1, 6)),
     r"'bad' \(Squeeze\): squeezing axes \[2\]"),
    ("unsqueeze-4d", lambda: _conv_then("Unsqueeze", consts=[("a", np.array([0], np.int64))]),
     r"'bad' \(Unsqueeze\): unsqueezing axes \[0\]"),
    ("pool-pads-reach-kernel", lambda: _conv_then("AveragePool", dict(kernel_shape=[2, 3], pads=[1, 3, 0, 0])),
     r"'bad' \(AveragePool\): pads \[1, 3, 0, 0\] are not smaller than the kernel \[2, 3\]"),
    ("pool-same-dilated", lambda: _conv_then("MaxPool", dict(kernel_shape=[2, 2], dilations=[2, 2], auto_pad="SAME_UPPER")),
     r"'bad' \(MaxPool\): auto_pad SAME_UPPER with dilations \[2, 2\]"),
    ("pool-1d", lambda: _conv_then("MaxPool", dict(kernel_shape=[2])), r"'bad' \(MaxPool\): kernel_shape \[2\] is not 2-D"),
    ("pool-after-flatten", lambda: make_model([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Flatten", ["r"], ["f"]),
                                               helper.make_node("Relu", ["f"], ["g"]),
                                               helper.make_node("Reshape", ["g", "s"], ["y"], name="bad")],
                                              [numpy_helper.from_array(np.array([2, 3, 9, 10], np.int64), "s")]),
     r"'bad' \(Reshape\): reshape of a \(N, 3, 9, 10\) tensor to \[2, 3, 9, 10\]"),
]


@pytest.mark.parametrize("build,match", [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_refusals(build, match):
    with pytest.raises(mpsnn.UnsupportedError, match=match):
        mpsnn.onnx.load(build(), CPU)


def test_refusal_at_compile_for_symbolic_sizes(rng):
    """With symbolic sizes the average-pooling overhang is found when the graph is compiled for a size."""
    m = make_model([helper.make_node("Relu", ["x"], ["r"]),
                    helper.make_node("AveragePool", ["r"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1],
                                     ceil_mode=1, count_include_pad=1, name="bad")], inputs={"x": [1, 2, "H", "W"]})
    imported = mpsnn.onnx.load(m, CPU)
    x = randn(rng, 1, 2, 6, 6)  # 6 + 1 pad: windows 0-2, 2-4, 4-6 end inside the padding
    assert_close(imported.run(x), ort_run(m, {"x": x})[0], "reduction", "float32", k=9)
    with pytest.raises(mpsnn.UnsupportedError, match=r"'bad' \(AveragePool\).*7x7 source reaches past the padding"):
        imported.run(randn(rng, 1, 2, 7, 7))  # 7 + 1 pad: the last window 6-8 ends past it


def test_input_shapes_give_symbolic_sizes(rng):
    m = make_model([helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("Gemm", ["f", "G"], ["y"])],
                   [T("G", randn(rng, 12, 2))], {"x": ["N", 3, "H", "W"]})
    imported = mpsnn.onnx.load(m, CPU, input_shapes={"x": (None, 3, 2, 2)})
    x = randn(rng, 4, 3, 2, 2)
    assert_close(imported.run(x), ort_run(m, {"x": x})[0], "reduction", "float32", k=12)


def test_without_onnx(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"pip install 'mpsnn\[onnx\]'"):
        mpsnn.onnx.load(b"", CPU)


# ------------------------------------------------------------------------------------------------
# mpsnn.conversions (the layout rules shared with examples/from_pytorch.py), float64 definitions

def test_conversions_match_their_definitions(rng):
    from mpsnn import conversions as cv

    x = rng.standard_normal((2, 5, 3, 4))  # NCHW
    w = rng.standard_normal((7, 5 * 3 * 4))
    ohwi = cv.fully_connected_weights_from_nchw_flatten(w, 5, 3, 4)
    np.testing.assert_allclose(np.einsum("nhwc,ohwc->no", x.transpose(0, 2, 3, 1), ohwi), x.reshape(2, -1) @ w.T,
                               rtol=1e-5, atol=1e-5)
    # gaps: channels at positions 0-2 and 4-5 of a 6-channel image read with zero weights elsewhere
    pos = np.array([0, 1, 2, 4, 5])
    gapped = cv.fully_connected_weights_from_nchw_flatten(w, 5, 3, 4, pos, 6)
    assert gapped.shape == (7, 3, 4, 6) and not gapped[..., 3].any()
    np.testing.assert_array_equal(gapped[..., pos], ohwi)
    conv = rng.standard_normal((4, 3, 2, 5))
    np.testing.assert_array_equal(cv.convolution_weights_from_oihw(conv)[1, 0, 3], conv[1, :, 0, 3].astype(np.float32))
    dense = cv.grouped_weights_as_dense(rng.standard_normal((6, 2, 3, 3)), 3)
    assert dense.shape == (6, 6, 3, 3) and not dense[0:2, 2:].any() and not dense[2:4, 0:2].any()
    # transposed convolution: the weights MPS correlates with are ONNX's rotated by 180 degrees
    t = rng.standard_normal((4, 3, 2, 5)).astype(np.float32)  # (in, out, kh, kw)
    mt = cv.convolution_transpose_weights(t)
    assert mt.shape == (3, 2, 5, 4)
    np.testing.assert_array_equal(mt[2, 0, 0, 1], t[1, 2, 1, 4])
    with pytest.raises(ValueError, match="expected OIHW"):
        cv.convolution_weights_from_oihw(np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"expected \(out, 60\)"):
        cv.fully_connected_weights_from_nchw_flatten(np.zeros((2, 59)), 5, 3, 4)


def test_training_step_matches_torch(rng):
    """One SGD step through an imported graph (custom padding policies, a gapped concatenation, a
    Gemm after Flatten) updates the ONNX weights as PyTorch's autograd does."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    n, lr = 3, 0.02
    w1, w2 = randn(rng, 3, 2, 3, 2, scale=0.5), randn(rng, 5, 2, 1, 1, scale=0.5)
    g = randn(rng, 4, 8 * 3 * 4, scale=0.2)
    nodes = [helper.make_node("Conv", ["x", "W1"], ["a"], pads=[2, 0, 0, 1], strides=[2, 2], name="c1"),
             helper.make_node("Conv", ["x", "W2"], ["b"], strides=[2, 2], name="c2"),
             helper.make_node("Concat", ["a", "b"], ["cat"], axis=1), helper.make_node("Tanh", ["cat"], ["t"]),
             helper.make_node("Flatten", ["t"], ["f"]), helper.make_node("Gemm", ["f", "G"], ["y"], transB=1, name="fc")]
    m = make_model(nodes, [T("W1", w1), T("W2", w2), T("G", g)], {"x": [n, 2, 6, 7]})
    imported = mpsnn.onnx.load(m, CPU, optimizer=lambda name: mpsnn.MPSNNOptimizerStochasticGradientDescent(CPU, lr))
    desc = mpsnn.MPSCNNLossDescriptor(mpsnn.MPSCNNLossType.mean_squared_error, mpsnn.MPSCNNReductionType.sum)
    loss = mpsnn.MPSCNNLossNode(source=imported.image_nodes["y"], loss_descriptor=desc)
    terminals = loss.training_graph(None, None)  # the gradients of c1 and c2 (both read x)
    training = mpsnn.MPSNNGraph(CPU, result_images=[t.result_image for t in terminals],
                                results_are_needed=[False] * len(terminals))
    x, target = randn(rng, n, 2, 6, 7), randn(rng, n, 1, 1, 4)
    data = mpsnn.MPSCNNLossDataDescriptor(target, mpsnn.MPSDataLayout.HeightxWidthxFeatureChannels, (1, 1, 4))
    training.run([np.ascontiguousarray(x.transpose(0, 2, 3, 1))], source_states=[mpsnn.MPSCNNLossLabels(CPU, data)])

    tw1, tw2, tg = (torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (w1, w2, g))
    xt = torch.tensor(x, dtype=torch.float64)
    a = F.conv2d(F.pad(xt, (0, 1, 2, 0)), tw1, stride=2)
    b = F.conv2d(xt, tw2, stride=2)
    y = torch.tanh(torch.cat([a, b], 1)).flatten(1) @ tg.T
    # reduction sum: each image's squared error summed; parameter gradients sum over the batch
    F.mse_loss(y, torch.tensor(target.reshape(n, 4), dtype=torch.float64), reduction="sum").backward()
    ds = imported.data_sources
    assert_close(ds["c1"].weights(), (tw1 - lr * tw1.grad).detach().numpy().transpose(0, 2, 3, 1), "reduction", k=100)
    assert_close(ds["c2"].weights(), (tw2 - lr * tw2.grad).detach().numpy().transpose(0, 2, 3, 1), "reduction", k=100)
    fc = (tg - lr * tg.grad).detach().numpy().reshape(4, 8, 3, 4).transpose(0, 2, 3, 1)
    assert_close(ds["fc"].weights(), fc, "reduction", k=100)
