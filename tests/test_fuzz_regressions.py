"""Regression tests for what the graph fuzzer (tests/fuzz, issue 9) found, each minimized to a concrete
graph. Before the fixes these crashed the process (SIGSEGV, SIGFPE), deadlocked, silently wrapped a
byte count to 0, raised untyped errors, or returned wrong values."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import mpsnn
import reference as R
from conftest import assert_close
from mpsnn import MPSNNGraph, MPSNNImageNode

CUSTOM = int(mpsnn.MPSNNPaddingMethod.custom)
SAME = int(mpsnn.MPSNNPaddingMethod.size_same)


def _still_works(device):
    """The process still builds and runs a graph after the error."""
    x = np.arange(12, dtype=np.float32).reshape(1, 2, 3, 2) - 6
    y = MPSNNGraph(device, mpsnn.MPSCNNNeuronReLUNode(source=MPSNNImageNode()).result_image).run([x]).numpy()
    np.testing.assert_array_equal(y, np.maximum(x, 0))


class Resize:
    """Custom padding policy: adds (dw, dh) to the suggested result and/or moves the kernel offset."""

    def __init__(self, dw=0, dh=0, ox=0, method=SAME):
        self.dw, self.dh, self.ox, self.method = dw, dh, ox, method

    def padding_method(self):
        return self.method | CUSTOM

    def destination_image_descriptor(self, source_images, source_states, kernel, suggested):
        if self.ox:
            kernel.offset = mpsnn.MPSOffset(kernel.offset.x + self.ox, kernel.offset.y, 0)
        suggested.width = suggested.width + self.dw
        suggested.height = suggested.height + self.dh
        return suggested


def _labelled(node, label):
    node.label = label
    return node


# ---- sizes whose byte count overflows --------------------------------------------------------

def test_custom_padding_result_beyond_2_52_bytes(device):
    """A hook asking for a 2^40 x 2^40 pooling result: the byte count wrapped and the kernel wrote
    out of bounds (SIGSEGV)."""
    pool = _labelled(mpsnn.MPSCNNPoolingMaxNode(source=MPSNNImageNode(), filter_size=2), "big")
    pool.padding_policy = Resize(dw=2 ** 40, dh=2 ** 40)
    with pytest.raises(mpsnn.ShapeError, match=r"\[pooling 'big'\] result of .* needs more than 2\^52 bytes"):
        MPSNNGraph(device, pool.result_image).run([np.ones((1, 4, 4, 3), np.float32)])
    _still_works(device)


def test_upsampling_factors_overflowing(device):
    """Factors 2^40 x 2^40 gave std::bad_alloc (MemoryError), 2^62 a wrapped width of 0 blamed on
    an MPSImage descriptor."""
    x = np.zeros((1, 4, 4, 3), np.float32)
    for f in (2 ** 40, 2 ** 62):
        up = _labelled(mpsnn.MPSCNNUpsamplingNearestNode(source=MPSNNImageNode(), integer_scale_factor_x=f,
                                                         integer_scale_factor_y=f), "up")
        with pytest.raises(mpsnn.ShapeError, match=r"\[upsampling 'up'\] upsampling a 4x4x3 source by"):
            MPSNNGraph(device, up.result_image).run([x])
    _still_works(device)


def test_scale_output_size_overflowing(device):
    """2^62 x 4: 'cannot create std::vector larger than max_size()' (ValueError)."""
    for size in ((2 ** 62, 4), (2 ** 40, 2 ** 40)):
        s = _labelled(mpsnn.MPSNNBilinearScaleNode(source=MPSNNImageNode(), output_size=mpsnn.MTLSize(*size, 1)), "sc")
        with pytest.raises(mpsnn.ShapeError, match=r"\[scale 'sc'\] result of"):
            MPSNNGraph(device, s.result_image).run([np.zeros((1, 4, 4, 3), np.float32)])
    _still_works(device)


def test_convolution_weight_count_overflowing(device):
    """A 2^32 x 2^32 kernel: the weight count wrapped to 0, an error message divided by it (SIGFPE)."""
    d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=2 ** 32, kernel_height=2 ** 32, input_feature_channels=1,
                                          output_feature_channels=1)
    conv = _labelled(mpsnn.MPSCNNConvolutionNode(source=MPSNNImageNode(),
                                                 weights=mpsnn.ArrayConvolutionDataSource(d, np.zeros(1, np.float32))),
                     "k")
    with pytest.raises(mpsnn.ShapeError, match=r"\[convolution 'k'\] descriptor of .* weights needs more than 2\^52"):
        MPSNNGraph(device, conv.result_image)
    _still_works(device)


def test_window_index_arithmetic_overflowing(device):
    """Dilation 2^62 (extent (k-1)*d+1 beyond int64) and a kernel offset of -(2^62 + 2^31)."""
    d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=3, kernel_height=1, input_feature_channels=2,
                                          output_feature_channels=2)
    d.dilation_rate_x = 2 ** 62
    ds = mpsnn.ArrayConvolutionDataSource(d, np.zeros((2, 1, 3, 2), np.float32))
    conv = _labelled(mpsnn.MPSCNNConvolutionNode(source=MPSNNImageNode(), weights=ds), "dil")
    x = np.ones((1, 3, 3, 2), np.float32)
    with pytest.raises(mpsnn.ShapeError, match=r"\[convolution 'dil'\] window along x .* overflows 64-bit"):
        MPSNNGraph(device, conv.result_image).run([x])
    pool = _labelled(mpsnn.MPSCNNDilatedPoolingMaxNode(MPSNNImageNode(), 3, 2, 1, 1, 2 ** 62, 1), "dpool")
    with pytest.raises(mpsnn.ShapeError, match=r"\[pooling 'dpool'\] window along x .* overflows 64-bit"):
        MPSNNGraph(device, pool.result_image).run([x])
    pool = _labelled(mpsnn.MPSCNNPoolingMaxNode(source=MPSNNImageNode(), filter_size=2), "off")
    pool.padding_policy = Resize(ox=-(2 ** 62 + 2 ** 31))
    with pytest.raises(mpsnn.ShapeError, match=r"\[pooling 'off'\] window along x .* overflows 64-bit"):
        MPSNNGraph(device, pool.result_image).run([x])
    _still_works(device)


def test_transpose_stride_overflowing(device):
    d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=1, kernel_height=1, input_feature_channels=2,
                                          output_feature_channels=2)
    d.stride_in_pixels_x = d.stride_in_pixels_y = 2 ** 40
    t = _labelled(mpsnn.MPSCNNConvolutionTransposeNode(
        source=MPSNNImageNode(), convolution_gradient_state=None,
        weights=mpsnn.ArrayConvolutionDataSource(d, np.zeros((2, 1, 1, 2), np.float32))), "tr")
    with pytest.raises(mpsnn.ShapeError, match=r"\[convolution 'tr'\]"):
        MPSNNGraph(device, t.result_image).run([np.ones((1, 3, 3, 2), np.float32)])
    _still_works(device)


def test_image_descriptor_byte_count_overflowing(device):
    """A 2^40 x 2^40 x 4 image had a wrapped byte count of 0: a graph 'ran' on it without error."""
    F32 = mpsnn.MPSImageFeatureChannelFormat.float32
    for w, h, c in ((2 ** 40, 2 ** 40, 4), (2 ** 62, 2 ** 62, 2 ** 62), (2 ** 31, 2 ** 31, 2 ** 3)):
        with pytest.raises(mpsnn.ShapeError, match=r"\[MPSImage\] image descriptor .* needs more than 2\^52 bytes"):
            mpsnn.MPSImage(device, mpsnn.MPSImageDescriptor(F32, w, h, c))
    td = mpsnn.MTLTextureDescriptor.texture2d_descriptor(mpsnn.MTLPixelFormat.rgba32_float, 2 ** 40, 2 ** 40, False)
    with pytest.raises(mpsnn.ShapeError, match=r"\[MTLTexture\] descriptor .* needs more than 2\^52 bytes"):
        device.make_texture(td)
    _still_works(device)


def test_sub_pixel_factor_overflowing(device):
    d = mpsnn.MPSCNNSubPixelConvolutionDescriptor(kernel_width=1, kernel_height=1, input_feature_channels=1,
                                                  output_feature_channels=4)
    d.sub_pixel_scale_factor = 2 ** 32  # r*r wrapped to 0: a division by zero
    conv = _labelled(mpsnn.MPSCNNConvolutionNode(
        source=MPSNNImageNode(), weights=mpsnn.ArrayConvolutionDataSource(d, np.zeros((4, 1, 1, 1), np.float32))), "sp")
    with pytest.raises(mpsnn.ShapeError, match=r"\[convolution 'sp'\] sub-pixel scale factor"):
        MPSNNGraph(device, conv.result_image)
    _still_works(device)


# ---- callbacks re-entering their own graph (deadlocked) ---------------------------------------

REENTRY = textwrap.dedent("""
    import numpy as np, mpsnn
    dev = mpsnn.MTLCreateSystemDefaultDevice()
    x = np.ones((1, 4, 4, 3), np.float32)
    calls = []

    class Hook:
        def padding_method(self):
            return int(mpsnn.MPSNNPaddingMethod.size_same | mpsnn.MPSNNPaddingMethod.custom)

        def destination_image_descriptor(self, source_images, source_states, kernel, suggested):
            if not calls:
                calls.append(1)
                {call}
            return suggested

    relu = mpsnn.MPSCNNNeuronReLUNode(source=mpsnn.MPSNNImageNode())
    relu.label = "hooked"
    relu.padding_policy = Hook()
    g = mpsnn.MPSNNGraph(dev, relu.result_image)
    try:
        g.run([x])
    except mpsnn.MPSGraphError as e:
        assert "[neuron 'hooked']" in str(e) and "cannot be used from its own nodes' callbacks" in str(e), str(e)
        print("REFUSED")
    np.testing.assert_array_equal(g.run([x]).numpy(), x)   # the same graph still runs
    print("OK")
""")


@pytest.mark.parametrize("call", ["g.run([x])", "g.reload_from_data_sources()", "g.plan_description([x])",
                                  "g.encode(dev.make_command_queue().make_command_buffer(), [x])"],
                         ids=["run", "reload", "plan_description", "encode"])
def test_padding_hook_calling_its_own_graph(call):
    """The hook runs while the graph compiles under its compile lock: calling back into the same graph
    deadlocked. In a subprocess, so that a regression times out instead of hanging the suite."""
    code = REENTRY.replace("{call}", call)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert r.returncode == 0 and "REFUSED" in r.stdout and "OK" in r.stdout, (r.returncode, r.stdout, r.stderr[-800:])


def test_data_source_calling_its_graph_during_reload(device, rng):
    """reload_from_data_sources holds the compile lock while reading data sources; a data source
    running the graph from weights() deadlocked."""
    d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=1, kernel_height=1, input_feature_channels=3,
                                          output_feature_channels=2)
    w = rng.standard_normal((2, 1, 1, 3)).astype(np.float32)
    x = rng.standard_normal((1, 2, 2, 3)).astype(np.float32)
    state = {"graph": None, "armed": False, "error": None}

    class Source(mpsnn.ArrayConvolutionDataSource):
        def weights(self):
            if state["armed"]:
                state["armed"] = False
                try:
                    state["graph"].run([x])
                except mpsnn.MPSGraphError as e:
                    state["error"] = e
            return super().weights()

    conv = _labelled(mpsnn.MPSCNNConvolutionNode(source=MPSNNImageNode(), weights=Source(d, w)), "reader")
    g = state["graph"] = MPSNNGraph(device, conv.result_image)
    state["armed"] = True
    g.reload_from_data_sources()
    assert "[convolution 'reader']" in str(state["error"]), state["error"]
    assert_close(g.run([x]).numpy(), R.conv2d(x, w), "reduction", k=3)


def test_transform_provider_calling_its_graph(device, rng):
    x = rng.standard_normal((1, 3, 4, 2)).astype(np.float32)
    state = {"graph": None, "error": None}

    class Provider:
        def transform(self, for_source_image, handle):
            if state["error"] is None:
                with pytest.raises(mpsnn.MPSGraphError) as e:
                    state["graph"].run([x])
                state["error"] = e.value
            return None

    s = _labelled(mpsnn.MPSNNBilinearScaleNode(MPSNNImageNode(), Provider(), mpsnn.MTLSize(5, 2, 1)), "scaler")
    g = state["graph"] = MPSNNGraph(device, s.result_image)
    y = g.run([x]).numpy()
    assert "[scale 'scaler']" in str(state["error"])
    assert_close(y, R.bilinear_scale(x, 5, 2), "elementwise")


# ---- protocol objects returning values of the wrong type --------------------------------------

class Weights:
    def __init__(self, **broken):
        self.d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=1, kernel_height=1, input_feature_channels=2,
                                                   output_feature_channels=2)
        self.broken = broken

    def data_type(self):
        return self.broken.get("data_type", mpsnn.MPSDataType.float32)

    def descriptor(self):
        return self.d

    def weights(self):
        return self.broken.get("weights", np.ones((2, 1, 1, 2), np.float32))

    def bias_terms(self):
        return None

    def load(self):
        return self.broken.get("load", True)

    def purge(self):
        pass

    def label(self):
        return None


@pytest.mark.parametrize("broken,match", [
    (dict(data_type="float32"), r"data_type\(\) returned <class 'str'>"),       # was RuntimeError: Unable to cast
    (dict(load="yes"), r"load\(\) returned <class 'str'>"),                    # was RuntimeError
    (dict(weights=np.ones((2, 1, 1, 2), np.float64)), r"8-byte elements"),      # did not name the node
    (dict(weights=np.ones((2, 1, 1, 4), np.float32)[..., ::2]), r"not C-contiguous"),
    (dict(weights=[1.0, 2.0]), r"weights\(\) returned <class 'list'>"),
], ids=["data_type-str", "load-str", "weights-float64", "weights-strided", "weights-list"])
def test_convolution_data_source_values_of_the_wrong_type(broken, match, device):
    conv = _labelled(mpsnn.MPSCNNConvolutionNode(source=MPSNNImageNode(), weights=Weights(**broken)), "conv-w")
    with pytest.raises(mpsnn.DTypeError, match=r"\[convolution 'conv-w'\].*" + match):
        MPSNNGraph(device, conv.result_image)
    _still_works(device)


@pytest.mark.parametrize("method,value,match", [
    ("number_of_feature_channels", "2", "number_of_feature_channels"),
    ("number_of_feature_channels", 2.5, "number_of_feature_channels"),
    ("epsilon", "x", r"epsilon\(\)"),
    ("gamma", "ab", r"gamma\(\)"),
    ("beta", [1.0, None], r"beta\(\)"),   # NumPy made it [1, nan]: NaN outputs, no error (long fuzz run)
], ids=["channels-str", "channels-float", "epsilon-str", "gamma-str", "beta-None"])
def test_normalization_data_source_values_of_the_wrong_type(method, value, match, device):
    ds = mpsnn.ArrayBatchNormalizationDataSource(number_of_feature_channels=2, epsilon=1e-3)
    setattr(ds, method, lambda: value)
    bn = _labelled(mpsnn.MPSCNNBatchNormalizationNode(source=MPSNNImageNode(), data_source=ds), "bn-w")
    with pytest.raises(mpsnn.DTypeError, match=r"\[batch normalization 'bn-w'\].*" + match):
        MPSNNGraph(device, bn.result_image).run([np.zeros((1, 2, 2, 2), np.float32)])
    _still_works(device)


@pytest.mark.parametrize("value", ["abc", 2.5, 2 ** 40])
def test_padding_method_of_the_wrong_type(value, device):
    class Policy:
        def padding_method(self):
            return value

    pool = _labelled(mpsnn.MPSCNNPoolingMaxNode(source=MPSNNImageNode(), filter_size=2), "pm")
    pool.padding_policy = Policy()
    with pytest.raises(mpsnn.DTypeError, match=r"\[pooling 'pm'\] \[MPSNNPadding\] padding_method\(\) returned"):
        MPSNNGraph(device, pool.result_image).run([np.zeros((1, 4, 4, 1), np.float32)])
    _still_works(device)


def test_transform_provider_returning_no_transform(device):
    class Provider:
        def transform(self, for_source_image, handle):
            return "x"   # was AttributeError: 'str' object has no attribute 'scale_x'

    s = _labelled(mpsnn.MPSNNBilinearScaleNode(MPSNNImageNode(), Provider(), mpsnn.MTLSize(3, 3, 1)), "tp")
    with pytest.raises(mpsnn.DTypeError, match=r"\[scale 'tp'\] \[MPSImageTransformProvider\] transform\(\) returned"):
        MPSNNGraph(device, s.result_image).run([np.zeros((1, 4, 4, 1), np.float32)])


@pytest.mark.parametrize("method", [48, 16 | 3, 0x40])
def test_reserved_padding_method_from_a_custom_policy(method, device):
    """Reserved size (48, bits beyond 0x30 of the size mask) and alignment (3) values were silently
    taken as sizeFull / centred; MPSNNDefaultPadding refuses them, so does the graph now."""
    class Policy:
        def padding_method(self):
            return method

    pool = _labelled(mpsnn.MPSCNNPoolingMaxNode(source=MPSNNImageNode(), filter_size=2), "rsv")
    pool.padding_policy = Policy()
    with pytest.raises(mpsnn.ShapeError, match=r"\[pooling 'rsv'\] padding method .* reserved"):
        MPSNNGraph(device, pool.result_image).run([np.zeros((1, 4, 4, 1), np.float32)])


# ---- custom result sizes the kernels cannot compute --------------------------------------------

def test_arithmetic_and_fully_connected_refuse_custom_result_sizes(device):
    """A hook widening an addition's result made the kernel read past its operands (garbage such as
    1.4e-43); a fully connected result resized to 3x2 held uninitialized values."""
    x = np.arange(6, dtype=np.float32).reshape(1, 2, 3, 1)
    add = _labelled(mpsnn.MPSNNAdditionNode(left_source=MPSNNImageNode(), right_source=MPSNNImageNode()), "add")
    add.padding_policy = Resize(dw=3, dh=2)
    with pytest.raises(mpsnn.UnsupportedError, match=r"\[arithmetic 'add'\] custom padding asked for a 6x4x1 result"):
        MPSNNGraph(device, add.result_image).run([x, x])
    d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=3, kernel_height=2, input_feature_channels=1,
                                          output_feature_channels=1)
    fc = _labelled(mpsnn.MPSCNNFullyConnectedNode(
        source=MPSNNImageNode(), weights=mpsnn.ArrayConvolutionDataSource(d, np.ones((1, 2, 3, 1), np.float32))), "fc")
    fc.padding_policy = Resize(dw=2, dh=1)
    with pytest.raises(mpsnn.UnsupportedError, match=r"\[convolution 'fc'\] custom padding asked for a 3x2x1 result"):
        MPSNNGraph(device, fc.result_image).run([x])
    bd = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=3, kernel_height=2, input_feature_channels=1,
                                           output_feature_channels=2)
    bfc = _labelled(mpsnn.MPSCNNBinaryFullyConnectedNode(
        MPSNNImageNode(), mpsnn.ArrayConvolutionDataSource(bd, np.ones((2, 2, 3, 1), np.uint32)), 1.0,
        mpsnn.MPSCNNBinaryConvolutionType.binary_weights, 0), "bfc")
    bfc.padding_policy = Resize(dw=2, dh=1)
    with pytest.raises(mpsnn.UnsupportedError, match=r"\[binary convolution 'bfc'\] custom padding asked for"):
        MPSNNGraph(device, bfc.result_image).run([x])
    # a hook that keeps the size is fine, and so is resizing a scale node or a paired transpose
    add.padding_policy = Resize()
    np.testing.assert_array_equal(MPSNNGraph(device, add.result_image).run([x, x]).numpy(), 2 * x)


def test_paired_transpose_custom_result_size(device):
    """Found while classifying the above: resizing a transpose sized by a gradient state is honoured
    (the window continues over zero-inserted zeros); pinned against the reference."""
    x = np.arange(12, dtype=np.float32).reshape(1, 3, 4, 1)
    d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=3, kernel_height=3, input_feature_channels=1,
                                          output_feature_channels=1)
    d.stride_in_pixels_x = d.stride_in_pixels_y = 2
    w = np.ones((1, 3, 3, 1), np.float32)
    conv = mpsnn.MPSCNNConvolutionNode(source=MPSNNImageNode(), weights=mpsnn.ArrayConvolutionDataSource(d, w))
    t = mpsnn.MPSCNNConvolutionTransposeNode(source=conv.result_image,
                                             convolution_gradient_state=conv.convolution_gradient_state,
                                             weights=mpsnn.ArrayConvolutionDataSource(d, w))
    t.padding_policy = Resize(dw=3, dh=2)
    y = MPSNNGraph(device, t.result_image).run([x]).numpy()
    geo = R.window_geometry((3, 4), (3, 3), (2, 2), (1, 1), R.SIZE_SAME)
    mid = R.conv2d(x, w, None, (2, 2), pad=geo["pad"], out_hw=geo["out_hw"])
    pz = tuple(R.transpose_pad_from_conv(p, 3, 1) for p in geo["pad"])
    assert_close(y, R.conv_transpose2d(mid, w, None, (2, 2), pad_z=pz, out_hw=(5, 7)), "reduction", k=9)


# ---- max pooling values ------------------------------------------------------------------------

@pytest.mark.parametrize("edge", ["clamp", "zero"])
def test_max_pooling_propagates_nan_and_keeps_minus_infinity(edge, device):
    """oneDNN's max pooling starts from -FLT_MAX and skips NaN: a window of -inf gave -FLT_MAX and a
    window of NaN -FLT_MAX too (the indexed kernel of training graphs propagated NaN, so one node
    gave two answers). nodes.md §5.3: the maximum; §3.1: the project's min/max propagate NaN."""
    x = np.array([np.nan, 1, np.inf, -np.inf, 2, np.nan], np.float32).reshape(1, 1, 6, 1)
    for kw, expected in ((1, [np.nan, 1, np.inf, -np.inf, 2, np.nan]), (2, None)):
        for cls in (mpsnn.MPSCNNPoolingMaxNode, mpsnn.MPSCNNDilatedPoolingMaxNode):
            node = cls(MPSNNImageNode(), kw, 1, 1, 1) if cls is mpsnn.MPSCNNPoolingMaxNode else \
                cls(MPSNNImageNode(), kw, 1, 1, 1, 1, 1)
            node.edge_mode = getattr(mpsnn.MPSImageEdgeMode, edge)
            y = MPSNNGraph(device, node.result_image).run([x]).numpy().ravel()
            if expected is None:   # windows (x[j-1], x[j]) with sizeSame and the remainder before
                ref = R.max_pool2d(x, (1, 2), (1, 1), edge_mode=edge).ravel()
                np.testing.assert_array_equal(y, ref)
            else:
                np.testing.assert_array_equal(y, np.asarray(expected, np.float32))
    # finite inputs keep the oneDNN path
    xf = np.array([3, -1, 2, 5], np.float32).reshape(1, 1, 4, 1)
    y = MPSNNGraph(device, mpsnn.MPSCNNPoolingMaxNode(MPSNNImageNode(), 2, 1, 1, 1).result_image).run([xf]).numpy()
    np.testing.assert_array_equal(y.ravel(), [3, 3, 2, 5])


def test_dilated_max_pooling_window_stepping_over_the_image(device):
    """Kernel 4, stride 4, dilation 4 on a 3 x 9 source (filter_size=4): the first window's taps
    -5, -1, 3, 7 all miss the 3 rows. oneDNN returned -FLT_MAX everywhere; with the default clamp
    edge the window replicates the nearest rows (nodes.md §1.4, §5.5)."""
    x = np.random.default_rng(3).uniform(0.5, 2.0, (1, 3, 9, 6)).astype(np.float32)
    node = mpsnn.MPSCNNDilatedPoolingMaxNode(source=MPSNNImageNode(), filter_size=4)
    y = MPSNNGraph(device, node.result_image).run([x]).numpy()
    ref = R.max_pool2d(x, (4, 4), (4, 4), dilation_hw=(4, 4))
    assert y.shape == ref.shape
    np.testing.assert_array_equal(y, ref.astype(np.float32))


@pytest.mark.parametrize("fused", ["descriptor", "graph fusion"])
def test_fused_relu_n_keeps_minus_infinity(fused, device):
    """ReLUN fused into a convolution ran oneDNN's clip(-FLT_MAX, b): -inf became -FLT_MAX. With
    a = 1 (the default) min(u, b) keeps -inf (nodes.md §6.2), as the unfused node does. (NaN still
    becomes the clip's bound when fused: the documented oneDNN behaviour, tests/ops/test_convolution.py.)"""
    x = np.array([-np.inf, -3e38, 1.0, 7.0, np.inf], np.float32).reshape(1, 1, 5, 1)
    d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=1, kernel_height=1, input_feature_channels=1,
                                          output_feature_channels=1)
    if fused == "descriptor":
        d.fused_neuron_descriptor = mpsnn.MPSNNNeuronDescriptor.cnn_neuron_descriptor(mpsnn.MPSCNNNeuronType.relun)
    conv = mpsnn.MPSCNNConvolutionNode(source=MPSNNImageNode(),
                                       weights=mpsnn.ArrayConvolutionDataSource(d, np.ones((1, 1, 1, 1), np.float32)))
    out = conv if fused == "descriptor" else mpsnn.MPSCNNNeuronReLUNNode(source=conv.result_image)
    y = MPSNNGraph(device, out.result_image).run([x]).numpy().ravel()
    np.testing.assert_array_equal(y, np.array([-np.inf, -3e38, 1.0, 6.0, 6.0], np.float32))


@pytest.mark.parametrize("kw_conv,width", [(4, 1), (4, 2), (7, 2), (3, 1)])
def test_paired_transpose_beside_its_source(kw_conv, width, device):
    """A 1x1 transpose paired with a 1xK convolution of a narrow image: Pz = (Ke - 1) - P_conv is
    negative enough that no output reads the source. The deconvolution's computed image had size
    <= 0 and oneDNN refused it (BackendError, long fuzz run); every output is the bias."""
    d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=kw_conv, kernel_height=1, input_feature_channels=1,
                                          output_feature_channels=1)
    wc = np.ones((1, 1, kw_conv, 1), np.float32)
    conv = mpsnn.MPSCNNConvolutionNode(source=MPSNNImageNode(), weights=mpsnn.ArrayConvolutionDataSource(d, wc))
    d2 = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=1, kernel_height=1, input_feature_channels=1,
                                           output_feature_channels=1)
    wt, bt = np.full((1, 1, 1, 1), 2.0, np.float32), np.full(1, 0.5, np.float32)
    t = mpsnn.MPSCNNConvolutionTransposeNode(source=conv.result_image,
                                             convolution_gradient_state=conv.convolution_gradient_state,
                                             weights=mpsnn.ArrayConvolutionDataSource(d2, wt, bt))
    x = np.arange(1, width + 1, dtype=np.float32).reshape(1, 1, width, 1)
    y = MPSNNGraph(device, t.result_image).run([x]).numpy()
    geo = R.window_geometry((1, width), (1, kw_conv), (1, 1), (1, 1), R.SIZE_SAME)
    mid = R.conv2d(x, wc, None, pad=geo["pad"], out_hw=geo["out_hw"])
    pz = tuple(R.transpose_pad_from_conv(p, 1, 1) for p in geo["pad"])
    assert_close(y, R.conv_transpose2d(mid, wt, bt, pad_z=pz, out_hw=(1, width)), "reduction", k=1)


# ---- training graphs (tests/fuzz/training.py, training_invalid.py) ------------------------------

HWC = mpsnn.MPSDataLayout.HeightxWidthxFeatureChannels


def _conv_loss_training_graph(device, descriptor, weights, label="conv"):
    """x -> convolution (labelled) -> MSE loss; (forward node, single-result training graph)."""
    conv = _labelled(mpsnn.MPSCNNConvolutionNode(source=MPSNNImageNode(),
                                                 weights=mpsnn.ArrayConvolutionDataSource(descriptor, weights)), label)
    d = mpsnn.MPSCNNLossDescriptor(mpsnn.MPSCNNLossType.mean_squared_error, mpsnn.MPSCNNReductionType.sum)
    (terminal,) = mpsnn.MPSCNNLossNode(source=conv.result_image, loss_descriptor=d).training_graph()
    terminal.result_state.export_from_graph = True
    return conv, MPSNNGraph(device, terminal.result_image)


def _zero_labels(device, shape):
    n, h, w, c = shape
    return mpsnn.MPSCNNLossLabels(device, mpsnn.MPSCNNLossDataDescriptor(np.zeros(shape, np.float32), HWC,
                                                                           mpsnn.MTLSize(w, h, c)))


def test_training_through_a_folded_batch_norm_is_refused(device, rng):
    """A convolution whose descriptor folds a batch normalization
    (set_batch_normalization_parameters_for_inference) trained without complaint: its gradient state
    reported dL/dW' of the folded weights W' = W·γ/√(v + ε) as gradient_for_weights of the data
    source's W (here 4x too large). nodes.md §4.1: a training data source must not fold a batch norm
    (a fused neuron was already refused); now an UnsupportedError naming the forward node."""
    d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=1, kernel_height=1, input_feature_channels=3,
                                          output_feature_channels=4)
    d.set_batch_normalization_parameters_for_inference([0.5] * 4, [4.0] * 4, [1.0] * 4, [0.0] * 4, 0.0)
    w = rng.standard_normal((4, 1, 1, 3)).astype(np.float32)
    x = rng.standard_normal((1, 3, 4, 3)).astype(np.float32)
    conv, g = _conv_loss_training_graph(device, d, w, "folded")
    with pytest.raises(mpsnn.UnsupportedError, match=r"\[convolution gradient\] \(of \[convolution 'folded'\]\): "
                                                     r"the data source's descriptor folds a batch normalization"):
        g.run([x], source_states=[_zero_labels(device, (1, 3, 4, 4))])
    # the forward node itself still runs (folded: W/2, bias -0.25)
    y = MPSNNGraph(device, conv.result_image).run([x]).numpy()
    assert_close(y, R.conv2d(x, w / 2.0, np.full(4, -0.25)), "reduction", k=3)
    _still_works(device)


@pytest.mark.parametrize("kind", ["sub-pixel", "fused neuron"])
def test_training_errors_of_convolutions_without_gradient_name_the_forward_node(kind, device):
    """Training through a sub-pixel convolution or a data source fusing a neuron raised an
    UnsupportedError naming only '[convolution gradient]': the gradient nodes training_graph makes
    carry no label, so the message did not say which convolution. Now it names the forward node too."""
    x = np.ones((1, 4, 4, 2), np.float32)
    if kind == "sub-pixel":
        d = mpsnn.MPSCNNSubPixelConvolutionDescriptor(kernel_width=1, kernel_height=1, input_feature_channels=2,
                                                      output_feature_channels=4)
        d.sub_pixel_scale_factor = 2
        w, out, match = np.ones((4, 1, 1, 2), np.float32), (1, 8, 8, 1), "sub-pixel convolutions have no gradient"
    else:
        d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=3, kernel_height=3, input_feature_channels=2,
                                              output_feature_channels=3)
        d.fused_neuron_descriptor = mpsnn.MPSNNNeuronDescriptor.cnn_neuron_descriptor(mpsnn.MPSCNNNeuronType.tanH)
        w, out, match = np.ones((3, 3, 3, 2), np.float32), (1, 4, 4, 3), "fuses a tanh neuron"
    _, g = _conv_loss_training_graph(device, d, w, "no-gradient")
    with pytest.raises(mpsnn.UnsupportedError, match=rf"\[convolution gradient\] \(of \[convolution 'no-gradient'\]\)"
                                                     rf": .*{match}"):
        g.run([x], source_states=[_zero_labels(device, out)])
    _still_works(device)
