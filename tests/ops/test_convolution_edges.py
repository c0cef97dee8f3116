"""Convolution fidelity: edge_mode = clamp and a source channel window set by a custom padding
policy (nodes.md §1.4, graph.md §4.4), and weights / bias values as Apple code returns them (4-D
weights checked against OHWI, raw float32 bytes, a longer weights buffer)."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

import mpsnn
import reference as R
from conftest import assert_close, conv_source

from ._common import ConvCase, conv_method_params, make_graph, method_id, run_graph

CLAMP = mpsnn.MPSImageEdgeMode.clamp
CUSTOM = int(mpsnn.MPSNNPaddingMethod.custom)
ALLOW_FUSION = int(mpsnn.MPSNNPaddingMethod.custom_allow_for_node_fusion)


class KernelPolicy:
    """A custom padding policy that keeps the size of `method` and sets kernel properties."""

    def __init__(self, method=R.SIZE_SAME, edge=CLAMP, channel_offset=0, extra_bits=0):
        self.method, self.edge, self.channel_offset, self.extra_bits = int(method), edge, channel_offset, extra_bits

    def padding_method(self):
        return self.method | CUSTOM | self.extra_bits

    def destination_image_descriptor(self, source_images, source_states, kernel, suggested):
        if self.edge is not None:
            kernel.edge_mode = self.edge
        if self.channel_offset:
            kernel.source_feature_channel_offset = self.channel_offset
        return suggested


def _conv_node(ds, policy, transpose=False):
    def make(src):
        node = (mpsnn.MPSCNNConvolutionTransposeNode(src, None, ds) if transpose
                else mpsnn.MPSCNNConvolutionNode(src, ds))
        node.padding_policy = policy
        return node
    return make


# --------------------------------------------------------------------------------------------
# edge clamp

def test_issue_ramp_box_filter(device):
    """The issue's case: a 4x1 ramp through a 3x1 box filter. Zero edges give [10, 18, 24, 18];
    clamp replicates the edge pixels: [4+4+6, 4+6+8, 6+8+10, 8+10+10] = [14, 18, 24, 28]."""
    d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=3, kernel_height=1, input_feature_channels=1,
                                          output_feature_channels=1)
    ds = mpsnn.ArrayConvolutionDataSource(d, np.ones((1, 1, 3, 1), np.float32))
    ramp = np.array([4, 6, 8, 10], np.float32).reshape(1, 1, 4, 1)
    zero = run_graph(device, _conv_node(ds, KernelPolicy(edge=None)), [ramp])
    clamp = run_graph(device, _conv_node(ds, KernelPolicy()), [ramp])
    np.testing.assert_array_equal(zero.reshape(-1), [10, 18, 24, 18])
    np.testing.assert_array_equal(clamp.reshape(-1), [14, 18, 24, 28])
    np.testing.assert_array_equal(clamp, R.conv2d(ramp, np.ones((1, 1, 3, 1)), edge_mode='clamp'))


CASES = [
    ConvCase(1, 5, 7, 3, 5, 3, 3),
    ConvCase(2, 7, 6, 5, 6, 2, 4, stride=(2, 1)),
    ConvCase(3, 9, 8, 6, 7, 3, 2, stride=(3, 2)),
    ConvCase(2, 8, 9, 5, 3, 3, 3, stride=(1, 2), dilation=(2, 3)),
    ConvCase(2, 7, 7, 8, 16, 3, 3, stride=(2, 2), groups=2),
    ConvCase(1, 3, 4, 2, 3, 5, 5),  # windows far past the edges
]


def _params():
    return conv_method_params(CASES)


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "unfused"])
@pytest.mark.parametrize("case,method", _params())
def test_convolution_clamp_every_method(case, method, fuse, device, rng):
    x = rng.standard_normal((case.n, case.h, case.w, case.cin)).astype(np.float32)
    ds, w, b = conv_source(case.cin, case.cout, case.kh, case.kw, rng, case.stride, case.dilation, case.groups)
    y = run_graph(device, _conv_node(ds, KernelPolicy(method)), [x], fuse=fuse)
    geo = R.window_geometry((case.h, case.w), (case.kh, case.kw), case.stride, case.dilation, method)
    ref = R.conv2d(x, w, b, case.stride, case.dilation, case.groups, geo['pad'], geo['out_hw'], edge_mode='clamp')
    assert y.shape == ref.shape
    assert_close(y, ref, "reduction", k=case.k)
    zero = R.conv2d(x, w, b, case.stride, case.dilation, case.groups, geo['pad'], geo['out_hw'])
    _, inside = R.extract_patches(x, (case.kh, case.kw), case.stride, case.dilation, geo['pad'], geo['out_hw'])
    if not inside.all():
        assert not np.allclose(y, zero, atol=1e-3)  # the test can tell the two edge modes apart


@pytest.mark.parametrize("method", [R.SIZE_SAME, R.SIZE_FULL | R.ALIGN_TOP_LEFT, R.SIZE_VALID_ONLY], ids=method_id)
def test_depthwise_convolution_clamp(method, device, rng):
    c, k = 5, 3
    d = mpsnn.MPSCNNDepthWiseConvolutionDescriptor(kernel_width=k, kernel_height=k, input_feature_channels=c,
                                                   output_feature_channels=c)
    d.stride_in_pixels_x = 2
    wt = rng.standard_normal((c, k, k, 1)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    x = rng.standard_normal((2, 6, 7, c)).astype(np.float32)
    y = run_graph(device, _conv_node(mpsnn.ArrayConvolutionDataSource(d, wt, b), KernelPolicy(method)), [x])
    geo = R.window_geometry((6, 7), (k, k), (1, 2), (1, 1), method)
    ref = R.conv2d(x, wt[..., 0], b, (1, 2), pad=geo['pad'], out_hw=geo['out_hw'], depthwise=True, edge_mode='clamp')
    assert_close(y, ref, "reduction", k=k * k)


def test_sub_pixel_convolution_clamp(device, rng):
    r = 2
    d = mpsnn.MPSCNNSubPixelConvolutionDescriptor(kernel_width=3, kernel_height=3, input_feature_channels=3,
                                                  output_feature_channels=8)
    d.sub_pixel_scale_factor = r
    w = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    x = rng.standard_normal((2, 5, 4, 3)).astype(np.float32)
    y = run_graph(device, _conv_node(mpsnn.ArrayConvolutionDataSource(d, w), KernelPolicy()), [x])
    ref = R.subpixel_shuffle(R.conv2d(x, w, edge_mode='clamp'), r)
    assert_close(y, ref, "reduction", k=27)


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "unfused"])
def test_convolution_clamp_with_neuron_and_residual(fuse, device, rng):
    """A clamped convolution followed by a ReLU and a residual addition (fusable: the policy has
    customAllowForNodeFusion), poisoned temporaries, batch 3."""
    ds, w, b = conv_source(4, 4, 3, 3, rng)
    x = rng.standard_normal((3, 5, 6, 4)).astype(np.float32)

    def make(src):
        conv = _conv_node(ds, KernelPolicy(R.SIZE_SAME, extra_bits=ALLOW_FUSION))(src)
        relu = mpsnn.MPSCNNNeuronReLUNode(conv.result_image)
        return mpsnn.MPSNNAdditionNode(left_source=relu.result_image, right_source=src)

    g = make_graph(device, make, 1, fuse)
    y = np.array(g.run([x]).numpy())
    ref = np.maximum(R.conv2d(x, w, b, edge_mode='clamp'), 0) + x
    assert_close(y, ref, "reduction", k=36)


def test_transposed_convolution_refuses_clamp(device, rng):
    d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=3, kernel_height=3, input_feature_channels=2,
                                          output_feature_channels=3)
    ds = mpsnn.ArrayConvolutionDataSource(d, rng.standard_normal((3, 3, 3, 2)).astype(np.float32))
    g = make_graph(device, _conv_node(ds, KernelPolicy(), transpose=True), 1)
    with pytest.raises(mpsnn.UnsupportedError, match=r"convolution.*edge mode 1.*zero-inserted"):
        g.run([np.zeros((1, 4, 4, 2), np.float32)])


def test_binary_convolution_refuses_clamp(device, rng):
    d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=3, kernel_height=3, input_feature_channels=2,
                                          output_feature_channels=3)
    bits = rng.integers(0, 2 ** 32, size=(3, 3, 3, 1), dtype=np.uint64).astype(np.uint32)
    ds = mpsnn.ArrayConvolutionDataSource(d, bits)

    def make(src):
        node = mpsnn.MPSCNNBinaryConvolutionNode(src, ds, 1.0, mpsnn.MPSCNNBinaryConvolutionType(0),
                                                 mpsnn.MPSCNNBinaryConvolutionFlags(0))
        node.padding_policy = KernelPolicy()
        return node

    g = make_graph(device, make, 1)
    with pytest.raises(mpsnn.UnsupportedError, match=r"binary convolution.*edge mode 1"):
        g.run([np.zeros((1, 4, 4, 2), np.float32)])


# --------------------------------------------------------------------------------------------
# source channel window

@pytest.mark.parametrize("edge", [None, CLAMP], ids=["zero", "clamp"])
@pytest.mark.parametrize("offset,cin,c", [(2, 4, 7), (3, 4, 7), (1, 3, 4), (4, 8, 12)])
def test_convolution_source_channel_offset(offset, cin, c, edge, device, rng):
    """The convolution reads channels [offset, offset + Cin) of a wider source."""
    ds, w, b = conv_source(cin, 5, 3, 3, rng, stride=(2, 1))
    x = rng.standard_normal((2, 7, 6, c)).astype(np.float32)
    y = run_graph(device, _conv_node(ds, KernelPolicy(R.SIZE_SAME, edge=edge, channel_offset=offset)), [x])
    geo = R.window_geometry((7, 6), (3, 3), (2, 1), (1, 1), R.SIZE_SAME)
    ref = R.conv2d(x, w, b, (2, 1), pad=geo['pad'], out_hw=geo['out_hw'], edge_mode='clamp' if edge else 'zero',
                   channel_offset=offset, channel_count=cin)
    assert_close(y, ref, "reduction", k=9 * cin)


def test_transposed_convolution_source_channel_offset(device, rng):
    d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=3, kernel_height=3, input_feature_channels=2,
                                          output_feature_channels=3)
    d.stride_in_pixels_x = d.stride_in_pixels_y = 2
    w = rng.standard_normal((3, 3, 3, 2)).astype(np.float32)
    ds = mpsnn.ArrayConvolutionDataSource(d, w)
    x = rng.standard_normal((2, 4, 5, 5)).astype(np.float32)
    y = run_graph(device, _conv_node(ds, KernelPolicy(R.SIZE_SAME, edge=None, channel_offset=3), transpose=True), [x])
    ref = run_graph(device, lambda s: mpsnn.MPSCNNConvolutionTransposeNode(s, None, ds), [x[..., 3:5]])
    np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-6)
    assert_close(y, R.conv_transpose2d(x[..., 3:5], w, None, (2, 2)), "reduction", k=18)


@pytest.mark.parametrize("offset,match", [
    (5, r"window starts at 5 and leaves 2 of the source's 7 feature channels; the descriptor expects 4"),
    (7, r"source_feature_channel_offset 7 .* expected 0 <= offset < 7"),
    (-1, r"source_feature_channel_offset -1"),
])
def test_convolution_channel_window_errors(offset, match, device, rng):
    ds, _, _ = conv_source(4, 5, 3, 3, rng)
    g = make_graph(device, _conv_node(ds, KernelPolicy(edge=None, channel_offset=offset)), 1)
    with pytest.raises(mpsnn.ShapeError, match=r"\[convolution.*" + match):
        g.run([np.zeros((1, 5, 5, 7), np.float32)])


def test_pooling_refuses_channel_window(device):
    def make(src):
        node = mpsnn.MPSCNNPoolingMaxNode(src, 2, 2, 2, 2)
        node.padding_policy = KernelPolicy(edge=None, channel_offset=1)
        return node

    g = make_graph(device, make, 1)
    with pytest.raises(mpsnn.UnsupportedError, match=r"source_feature_channel_offset 1.*only convolution"):
        g.run([np.zeros((1, 4, 4, 3), np.float32)])


# --------------------------------------------------------------------------------------------
# weights: 4-D arrays checked against OHWI

def _graph_for(device, ds, transpose=False):
    def make(src):
        node = (mpsnn.MPSCNNConvolutionTransposeNode(src, None, ds) if transpose
                else mpsnn.MPSCNNConvolutionNode(src, ds))
        node.label = "conv1"
        return node
    return make_graph(device, make, 1)


def test_oihw_weights_raise_with_the_fix(device, rng):
    d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=3, kernel_height=3, input_feature_channels=8,
                                          output_feature_channels=16)
    oihw = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)  # torch Conv2d.weight
    with pytest.raises(mpsnn.ShapeError) as e:
        _graph_for(device, mpsnn.ArrayConvolutionDataSource(d, oihw, label="features.0"))
    msg = str(e.value)
    assert "[convolution 'conv1'] (data source 'features.0')" in msg
    assert "(16, 8, 3, 3)" in msg and "expected OHWI (16, 3, 3, 8)" in msg
    assert "w.transpose(0, 2, 3, 1)" in msg
    # The fix works, and matches the OIHW convolution.
    fixed = eval(re.search(r"pass (np\.ascontiguousarray\(.*\))$", msg).group(1), {"np": np, "w": oihw})
    g = _graph_for(device, mpsnn.ArrayConvolutionDataSource(d, fixed))
    x = rng.standard_normal((1, 5, 5, 8)).astype(np.float32)
    assert_close(g.run([x]).numpy(), R.conv2d(x, oihw.transpose(0, 2, 3, 1)), "reduction", k=72)


def test_depthwise_oihw_weights_raise(device, rng):
    d = mpsnn.MPSCNNDepthWiseConvolutionDescriptor(kernel_width=3, kernel_height=3, input_feature_channels=4,
                                                   output_feature_channels=4)
    with pytest.raises(mpsnn.ShapeError, match=r"\(4, 1, 3, 3\); expected OHWI \(4, 3, 3, 1\).*depthwise.*"
                                               r"w\.transpose\(0, 2, 3, 1\)"):
        _graph_for(device, mpsnn.ArrayConvolutionDataSource(d, np.ones((4, 1, 3, 3), np.float32)))


def test_other_4d_shapes_raise_without_a_hint(device):
    d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=3, kernel_height=3, input_feature_channels=2,
                                          output_feature_channels=4)
    with pytest.raises(mpsnn.ShapeError) as e:
        _graph_for(device, mpsnn.ArrayConvolutionDataSource(d, np.ones((4, 3, 2, 3), np.float32)))
    assert "expected OHWI (4, 3, 3, 2)" in str(e.value) and "transpose" not in str(e.value)


@pytest.mark.parametrize("groups", [1, 2])
def test_transposed_convolution_torch_layout_raises_with_the_fix(groups, device, rng):
    """PyTorch ConvTranspose2d.weight is (Cin, Cout/groups, KH, KW); MPS wants OHWI with the kernel
    rotated 180 degrees (nodes.md §4.3). The suggested expression gives exactly that."""
    cin, cout, kh, kw = 8, 16, 3, 2
    d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=kw, kernel_height=kh, input_feature_channels=cin,
                                          output_feature_channels=cout)
    d.groups = groups
    wt = rng.standard_normal((cin, cout // groups, kh, kw)).astype(np.float32)
    with pytest.raises(mpsnn.ShapeError) as e:
        _graph_for(device, mpsnn.ArrayConvolutionDataSource(d, wt), transpose=True)
    msg = str(e.value)
    assert "ConvTranspose2d" in msg and f"expected OHWI ({cout}, {kh}, {kw}, {cin // groups})" in msg
    fixed = eval(re.search(r"pass (np\.ascontiguousarray\(.*?\)) \(OHWI", msg).group(1), {"np": np, "w": wt})
    og, cg = cout // groups, cin // groups
    want = np.empty((cout, kh, kw, cg), np.float32)  # W[o, p, q, c'] = wt[c, o', KH-1-p, KW-1-q]
    for o in range(cout):
        for ci in range(cg):
            want[o, :, :, ci] = wt[(o // og) * cg + ci, o % og, ::-1, ::-1]
    np.testing.assert_array_equal(fixed, want)
    _graph_for(device, mpsnn.ArrayConvolutionDataSource(d, fixed), transpose=True)


def test_transposed_convolution_oihw_hint(device):
    d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=3, kernel_height=3, input_feature_channels=2,
                                          output_feature_channels=5)
    with pytest.raises(mpsnn.ShapeError, match=r"\(5, 2, 3, 3\).*OIHW.*w\.transpose\(0, 2, 3, 1\)"):
        _graph_for(device, mpsnn.ArrayConvolutionDataSource(d, np.ones((5, 2, 3, 3), np.float32)), transpose=True)


def test_flat_weights_stay_accepted(device, rng):
    ds, w, b = conv_source(3, 4, 3, 3, rng)
    flat = mpsnn.ArrayConvolutionDataSource(ds.descriptor(), w.reshape(-1), b)
    x = rng.standard_normal((1, 5, 5, 3)).astype(np.float32)
    assert_close(_graph_for(device, flat).run([x]).numpy(), R.conv2d(x, w, b), "reduction", k=27)


class UserSource:
    """An Apple-style data source written by a user: returns whatever it was given."""

    def __init__(self, desc, weights, bias=None, label=None):
        self.desc, self.w, self.b, self._label = desc, weights, bias, label

    def data_type(self):
        return mpsnn.MPSDataType.float32

    def descriptor(self):
        return self.desc

    def weights(self):
        return self.w

    def bias_terms(self):
        return self.b

    def load(self):
        return True

    def purge(self):
        pass

    def label(self):
        return self._label


def test_user_data_source_4d_weights_checked(device, rng):
    """The rule holds for any data source returning an ndarray (the C++ reader applies it)."""
    d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=3, kernel_height=3, input_feature_channels=8,
                                          output_feature_channels=16)
    src = UserSource(d, rng.standard_normal((16, 8, 3, 3)).astype(np.float32), label="mine")
    with pytest.raises(mpsnn.ShapeError, match=r"'mine'.*\(16, 8, 3, 3\).*w\.transpose\(0, 2, 3, 1\)"):
        _graph_for(device, src)


# --------------------------------------------------------------------------------------------
# values as Apple code returns them

@pytest.mark.parametrize("form", ["ndarray", "list", "bytes", "bytearray", "memoryview", "float64"])
@pytest.mark.parametrize("user", [False, True], ids=["array_source", "user_source"])
def test_bias_terms_forms(form, user, device, rng):
    ds, w, b = conv_source(3, 4, 3, 3, rng)
    bias = {"ndarray": b, "list": b.tolist(), "bytes": b.tobytes(), "bytearray": bytearray(b.tobytes()),
            "memoryview": memoryview(b.tobytes()), "float64": b.astype(np.float64)}[form]
    src = (UserSource(ds.descriptor(), w, bias) if user
           else mpsnn.ArrayConvolutionDataSource(ds.descriptor(), w, bias))
    x = rng.standard_normal((2, 5, 4, 3)).astype(np.float32)
    assert_close(_graph_for(device, src).run([x]).numpy(), R.conv2d(x, w, b), "reduction", k=27)


@pytest.mark.parametrize("user", [False, True], ids=["array_source", "user_source"])
def test_bias_bytes_of_wrong_length(user, device, rng):
    ds, w, b = conv_source(3, 4, 3, 3, rng)
    raw = b.tobytes()[:-2]
    with pytest.raises(mpsnn.DTypeError, match=r"14 bytes.*float32"):
        src = (UserSource(ds.descriptor(), w, raw) if user
               else mpsnn.ArrayConvolutionDataSource(ds.descriptor(), w, raw))
        _graph_for(device, src)
    with pytest.raises(mpsnn.ShapeError, match=r"bias.* 3 values; expected 4"):
        src = (UserSource(ds.descriptor(), w, b[:3].tobytes()) if user
               else mpsnn.ArrayConvolutionDataSource(ds.descriptor(), w, b[:3].tobytes()))
        _graph_for(device, src)


def test_longer_weights_buffer_warns_and_uses_the_first_values(device, rng):
    ds, w, b = conv_source(3, 4, 3, 3, rng)
    longer = np.concatenate([w.reshape(-1), np.full(10, np.nan, np.float32)])  # tail never read
    with pytest.warns(UserWarning, match=r"\[convolution 'conv1'\] weights\(\) returned 118 float32 values; "
                                         r"the descriptor needs 108 .*first 108 are used"):
        g = _graph_for(device, UserSource(ds.descriptor(), longer, b))
    x = rng.standard_normal((1, 4, 4, 3)).astype(np.float32)
    assert_close(g.run([x]).numpy(), R.conv2d(x, w, b), "reduction", k=27)
    with pytest.warns(UserWarning, match="returned 109 float32"):  # ArrayConvolutionDataSource: the same rule
        _graph_for(device, mpsnn.ArrayConvolutionDataSource(ds.descriptor(), longer[:109], b))


def test_shorter_weights_buffer_raises(device, rng):
    ds, w, b = conv_source(3, 4, 3, 3, rng)
    with pytest.raises(mpsnn.ShapeError, match=r"\[convolution 'conv1'\] weights have 107 float32 values; "
                                               r"expected 108"):
        _graph_for(device, UserSource(ds.descriptor(), w.reshape(-1)[:107], b))


def test_weights_as_raw_bytes(device, rng):
    """weights() may return the bytes behind Apple's pointer (bytes / bytearray / memoryview)."""
    ds, w, b = conv_source(3, 4, 3, 3, rng)
    x = rng.standard_normal((1, 4, 4, 3)).astype(np.float32)
    for raw in (w.tobytes(), bytearray(w.tobytes()), memoryview(w.tobytes())):
        y = _graph_for(device, UserSource(ds.descriptor(), raw, b)).run([x]).numpy()
        assert_close(y, R.conv2d(x, w, b), "reduction", k=27)
    with pytest.raises(mpsnn.DTypeError, match=r"433 bytes, not a whole number of float32"):
        _graph_for(device, UserSource(ds.descriptor(), w.tobytes() + b"\0", b))


def test_no_warning_for_exact_weights(device, rng):
    ds, _, _ = conv_source(3, 4, 3, 3, rng)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _graph_for(device, ds)


@pytest.mark.parametrize("kind", ["fully_connected", "neuron"])
def test_channel_window_refused_where_it_would_be_ignored(kind, device, rng):
    """Fixed-size and size-preserving nodes do not read a channel window: refused, not ignored."""
    def make(src):
        if kind == "fully_connected":
            ds, _, _ = conv_source(3, 4, 2, 2, rng)
            node = mpsnn.MPSCNNFullyConnectedNode(src, ds)
        else:
            node = mpsnn.MPSCNNNeuronReLUNode(src)
        node.padding_policy = KernelPolicy(R.SIZE_VALID_ONLY, edge=None, channel_offset=1)
        return node

    g = make_graph(device, make, 1)
    with pytest.raises(mpsnn.UnsupportedError, match=r"source_feature_channel_offset 1.*channel window"):
        g.run([np.zeros((1, 2, 2, 3), np.float32)])


@pytest.mark.parametrize("stride,dilation,groups", [((1, 1), (1, 1), 1), ((2, 1), (1, 2), 1), ((1, 2), (1, 1), 2)])
def test_convolution_clamp_vs_torch_replicate(stride, dilation, groups, device, rng):
    """An independent oracle: PyTorch's replicate padding, then an unpadded conv2d."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    from ._common import from_t, to_t
    ds, w, b = conv_source(8, 8, 3, 3, rng, stride, dilation, groups)
    x = rng.standard_normal((2, 9, 8, 8)).astype(np.float32)
    y = run_graph(device, _conv_node(ds, KernelPolicy(R.SIZE_SAME)), [x])
    geo = R.window_geometry((9, 8), (3, 3), stride, dilation, R.SIZE_SAME)
    (py, px) = geo['pad']
    (dh, dw) = geo['out_hw']
    ey, ex = (dh - 1) * stride[0] + 2 * dilation[0] + 1, (dw - 1) * stride[1] + 2 * dilation[1] + 1
    t = F.pad(to_t(x), (px, ex - 8 - px, py, ey - 9 - py), mode="replicate")
    ref = F.conv2d(t, torch.from_numpy(w.transpose(0, 3, 1, 2).astype(np.float64)), torch.from_numpy(b.astype(np.float64)),
                   stride=stride, dilation=dilation, groups=groups)
    assert_close(y, from_t(ref), "reduction", k=72 // groups)


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "unfused"])
def test_convolution_clamp_with_folded_batch_norm(fuse, device, rng):
    ds, w, b = conv_source(3, 4, 3, 3, rng, stride=(2, 2))
    mean, var = rng.standard_normal(4), rng.uniform(0.5, 2, 4)
    gamma, beta = rng.standard_normal(4), rng.standard_normal(4)
    bn = mpsnn.ArrayBatchNormalizationDataSource(gamma, beta, mean, var, epsilon=1e-3)
    x = rng.standard_normal((2, 7, 8, 3)).astype(np.float32)

    def make(src):
        conv = _conv_node(ds, KernelPolicy(R.SIZE_SAME | R.ADD_REMAINDER_TO_BOTTOM_RIGHT, extra_bits=ALLOW_FUSION))(src)
        return mpsnn.MPSCNNBatchNormalizationNode(conv.result_image, bn)

    y = run_graph(device, make, [x], fuse=fuse)
    geo = R.window_geometry((7, 8), (3, 3), (2, 2), (1, 1), R.SIZE_SAME | R.ADD_REMAINDER_TO_BOTTOM_RIGHT)
    w2, b2 = R.fold_batch_norm(w, b, mean, var, gamma, beta, 1e-3)
    ref = R.conv2d(x, w2, b2, (2, 2), pad=geo['pad'], out_hw=geo['out_hw'], edge_mode='clamp')
    assert_close(y, ref, "reduction", k=27)


def test_sub_pixel_convolution_channel_offset_and_clamp(device, rng):
    d = mpsnn.MPSCNNSubPixelConvolutionDescriptor(kernel_width=3, kernel_height=3, input_feature_channels=3,
                                                  output_feature_channels=8)
    d.sub_pixel_scale_factor = 2
    w = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    x = rng.standard_normal((1, 5, 4, 6)).astype(np.float32)
    y = run_graph(device, _conv_node(mpsnn.ArrayConvolutionDataSource(d, w), KernelPolicy(channel_offset=2)), [x])
    ref = R.subpixel_shuffle(R.conv2d(x, w, edge_mode='clamp', channel_offset=2, channel_count=3), 2)
    assert_close(y, ref, "reduction", k=27)


def test_reload_rereads_a_longer_buffer_with_the_warning(device, rng):
    ds, w, b = conv_source(3, 4, 3, 3, rng)
    src = UserSource(ds.descriptor(), np.concatenate([w.reshape(-1), np.zeros(4, np.float32)]), b)
    with pytest.warns(UserWarning, match="returned 112 float32"):
        g = _graph_for(device, src)
    src.w = np.concatenate([2 * w.reshape(-1), np.zeros(4, np.float32)])
    with pytest.warns(UserWarning, match="returned 112 float32"):
        g.reload_from_data_sources()
    x = rng.standard_normal((1, 4, 4, 3)).astype(np.float32)
    assert_close(g.run([x]).numpy(), R.conv2d(x, 2 * w, b), "reduction", k=27)


class MaxCountPolicy(KernelPolicy):
    """Also limits the channel window (source_feature_channel_max_count, reachable from Python)."""

    def __init__(self, offset, max_count):
        super().__init__(edge=None, channel_offset=offset)
        self.max_count = max_count

    def destination_image_descriptor(self, source_images, source_states, kernel, suggested):
        kernel.source_feature_channel_max_count = self.max_count
        return super().destination_image_descriptor(source_images, source_states, kernel, suggested)


def test_convolution_channel_window_max_count(device, rng):
    # A 9-channel source; the descriptor takes 4 channels: the window [4, 8) by offset and max count.
    ds, w, b = conv_source(4, 3, 3, 3, rng)
    x = rng.standard_normal((2, 6, 5, 9)).astype(np.float32)
    y = run_graph(device, _conv_node(ds, MaxCountPolicy(4, 4)), [x])
    assert_close(y, R.conv2d(x[..., 4:8], w, b), "reduction", k=36)
    with pytest.raises(mpsnn.ShapeError, match=r"max count 0"):
        run_graph(device, _conv_node(ds, MaxCountPolicy(4, 0)), [x])
