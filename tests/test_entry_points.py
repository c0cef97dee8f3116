"""Apple entry points a literal port uses (issue 8): node() class factories, instancetype descriptor
factories, the deprecated descriptor neuron API, debug_description, MPSKernelOptions.verbose,
stand-alone scale kernels, padding-hook kernel classes, execute_async errors, enum spellings."""

from __future__ import annotations

import inspect
import threading

import numpy as np
import pytest

import mpsnn
import reference as R
from conftest import assert_close, conv_source
from mpsnn import MPSNNGraph, MPSNNImageNode


def filter_node_classes():
    return [c for c in vars(mpsnn._core).values()
            if isinstance(c, type) and issubclass(c, mpsnn.MPSNNFilterNode)]


def signatures(fn, name):
    """The overload signatures in a pybind11 docstring, without the name and the self / return parts."""
    out = []
    for line in (fn.__doc__ or "").splitlines():
        line = line.strip()
        if line[:1].isdigit() and ". " in line:
            line = line.split(". ", 1)[1]
        if line.startswith(name + "(") and ") -> " in line:
            args = line[len(name) + 1:line.rindex(") -> ")]
            out.append(args.split(", ", 1)[1] if args.startswith("self") else args)
    return out


# ---- 1. node(...) class factories -----------------------------------------------------------


def test_every_node_class_with_an_initializer_has_its_own_node_factory():
    checked = 0
    for cls in filter_node_classes():
        if type(cls.__dict__.get("__init__")).__name__ != "instancemethod":
            continue  # an abstract base: pybind11's no-constructor slot
        assert "node" in cls.__dict__, cls.__name__
        assert signatures(cls.__init__, "__init__") == signatures(cls.node, "node"), cls.__name__
        checked += 1
    assert checked >= 35


def test_relu_node_factory_builds_a_relu_not_the_base_descriptor_form(device, rng):
    x = MPSNNImageNode.node(handle=None)
    relu = mpsnn.MPSCNNNeuronReLUNode.node(source=x, a=0.1)
    assert type(relu) is mpsnn.MPSCNNNeuronReLUNode and relu.a == pytest.approx(0.1)
    with pytest.raises(TypeError):
        mpsnn.MPSCNNNeuronReLUNode.node(source=x, descriptor=mpsnn.MPSNNNeuronDescriptor.cnn_neuron_descriptor(
            mpsnn.MPSCNNNeuronType.relu))
    # the base class keeps its own descriptor form
    tanh = mpsnn.MPSCNNNeuronNode.node(source=x, descriptor=mpsnn.MPSNNNeuronDescriptor.cnn_neuron_descriptor(
        mpsnn.MPSCNNNeuronType.tanh, a=1.0, b=1.0))
    assert type(tanh) is mpsnn.MPSCNNNeuronTanHNode
    xv = rng.standard_normal((1, 3, 3, 2)).astype(np.float32)
    y = MPSNNGraph(device, relu.result_image).run([xv]).numpy()
    assert_close(y, R.neuron(xv, "relu", a=0.1), "elementwise")


def test_node_factories_match_the_initializers(device, rng):
    x = MPSNNImageNode.node(handle=None)
    ds, w, b = conv_source(3, 4, 3, 3, rng)
    conv = mpsnn.MPSCNNConvolutionNode.node(source=x, weights=ds)
    pool = mpsnn.MPSCNNPoolingMaxNode.node(source=conv.result_image, filter_size=2, stride=2)
    assert (pool.kernel_width, pool.stride_in_pixels_x) == (2, 2)
    pool2 = mpsnn.MPSCNNPoolingAverageNode.node(source=x, kernel_width=3, kernel_height=1, stride_in_pixels_x=1,
                                               stride_in_pixels_y=1)
    assert (pool2.kernel_width, pool2.kernel_height) == (3, 1)
    add = mpsnn.MPSNNAdditionNode.node(left_source=pool.result_image, right_source=pool.result_image)
    soft = mpsnn.MPSCNNSoftMaxNode.node(source=add.result_image)
    assert isinstance(soft, mpsnn.MPSCNNSoftMaxNode)
    xv = rng.standard_normal((1, 4, 4, 3)).astype(np.float32)
    y = MPSNNGraph(device, soft.result_image).run([xv]).numpy()
    c = R.conv2d(xv, w, b)
    p = c.reshape(1, 2, 2, 2, 2, 4).max(axis=(2, 4))
    e = np.exp(2 * p - (2 * p).max(-1, keepdims=True))
    assert_close(y, e / e.sum(-1, keepdims=True), "reduction", k=27)


# ---- 2. descriptor class factories ----------------------------------------------------------


def test_descriptor_factories_return_the_class_they_are_called_on():
    d = mpsnn.MPSCNNDepthWiseConvolutionDescriptor.cnn_convolution_descriptor(
        kernel_width=3, kernel_height=3, input_feature_channels=4, output_feature_channels=4)
    assert type(d) is mpsnn.MPSCNNDepthWiseConvolutionDescriptor and d.channel_multiplier == 1
    s = mpsnn.MPSCNNSubPixelConvolutionDescriptor.cnn_convolution_descriptor(
        kernel_width=3, kernel_height=3, input_feature_channels=2, output_feature_channels=8)
    assert type(s) is mpsnn.MPSCNNSubPixelConvolutionDescriptor
    s.sub_pixel_scale_factor = 2
    assert s.sub_pixel_scale_factor == 2
    c = mpsnn.MPSCNNConvolutionDescriptor.cnn_convolution_descriptor(
        kernel_width=1, kernel_height=1, input_feature_channels=2, output_feature_channels=3)
    assert type(c) is mpsnn.MPSCNNConvolutionDescriptor


def test_depthwise_factory_descriptor_runs_depthwise(device, rng):
    d = mpsnn.MPSCNNDepthWiseConvolutionDescriptor.cnn_convolution_descriptor(
        kernel_width=3, kernel_height=3, input_feature_channels=2, output_feature_channels=2)
    w = rng.standard_normal((2, 3, 3)).astype(np.float32)
    node = mpsnn.MPSCNNConvolutionNode(source=MPSNNImageNode(), weights=mpsnn.ArrayConvolutionDataSource(d, w, None))
    xv = rng.standard_normal((1, 4, 4, 2)).astype(np.float32)
    y = MPSNNGraph(device, node.result_image).run([xv]).numpy()
    assert_close(y, R.conv2d(xv, w, None, depthwise=True), "reduction", k=9)


# ---- 3. deprecated descriptor neuron API -----------------------------------------------------


def test_set_neuron_type_maps_onto_the_fused_neuron_with_a_warning(device, rng):
    d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=1, kernel_height=1, input_feature_channels=2,
                                          output_feature_channels=3)
    with pytest.warns(DeprecationWarning, match="fused_neuron_descriptor"):
        d.set_neuron_type(mpsnn.MPSCNNNeuronType.relu, parameter_a=0.25, parameter_b=0.0)
    assert d.fused_neuron_descriptor.neuron_type == mpsnn.MPSCNNNeuronType.relu
    assert d.fused_neuron_descriptor.a == pytest.approx(0.25)
    with pytest.warns(DeprecationWarning):
        assert d.neuron_type == mpsnn.MPSCNNNeuronType.relu
    with pytest.warns(DeprecationWarning):
        assert d.neuron_parameter_a == pytest.approx(0.25)
    with pytest.warns(DeprecationWarning):
        assert d.neuron_parameter_b == 0.0
    w = rng.standard_normal((3, 1, 1, 2)).astype(np.float32)
    conv = mpsnn.MPSCNNConvolutionNode(source=MPSNNImageNode(), weights=mpsnn.ArrayConvolutionDataSource(d, w, None))
    xv = rng.standard_normal((1, 3, 3, 2)).astype(np.float32)
    y = MPSNNGraph(device, conv.result_image).run([xv]).numpy()
    assert_close(y, R.neuron(R.conv2d(xv, w), "relu", a=0.25), "reduction", k=2)


def test_set_neuron_type_defaults_and_prelu(device):
    d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=1, kernel_height=1, input_feature_channels=1,
                                          output_feature_channels=3)
    with pytest.warns(DeprecationWarning):
        d.set_neuron_type(mpsnn.MPSCNNNeuronType.hard_sigmoid)
    assert (d.fused_neuron_descriptor.a, d.fused_neuron_descriptor.b) == pytest.approx((0.2, 0.5))
    with pytest.warns(DeprecationWarning):
        d.set_neuron_to_prelu_with_parameters_a(np.array([0.1, 0.2, 0.3], np.float32).tobytes())
    assert d.fused_neuron_descriptor.neuron_type == mpsnn.MPSCNNNeuronType.prelu
    assert d.fused_neuron_descriptor.data == pytest.approx([0.1, 0.2, 0.3])
    with pytest.warns(DeprecationWarning), pytest.raises(mpsnn.ShapeError, match="one per output feature channel"):
        d.set_neuron_to_prelu_with_parameters_a([0.1, 0.2])


def test_deprecated_neuron_properties_are_settable_as_in_ios_11_swift(device, rng):
    """desc.neuronType = .reLU; desc.neuronParameterA = 0.1 (the TinyYOLO sample)."""
    d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=1, kernel_height=1, input_feature_channels=2,
                                          output_feature_channels=2)
    with pytest.warns(DeprecationWarning, match="neuron_type is deprecated"):
        d.neuron_type = mpsnn.MPSCNNNeuronType.relu
    with pytest.warns(DeprecationWarning, match="neuron_parameter_a is deprecated"):
        d.neuron_parameter_a = 0.1
    with pytest.warns(DeprecationWarning, match="neuron_parameter_b is deprecated"):
        d.neuron_parameter_b = 0.0
    n = d.fused_neuron_descriptor
    assert n.neuron_type == mpsnn.MPSCNNNeuronType.relu and n.a == pytest.approx(0.1) and n.b == 0.0
    w = rng.standard_normal((2, 1, 1, 2)).astype(np.float32)
    conv = mpsnn.MPSCNNConvolutionNode(source=MPSNNImageNode(), weights=mpsnn.ArrayConvolutionDataSource(d, w, None))
    xv = rng.standard_normal((1, 3, 3, 2)).astype(np.float32)
    y = MPSNNGraph(device, conv.result_image).run([xv]).numpy()
    assert_close(y, R.neuron(R.conv2d(xv, w), "relu", a=0.1), "reduction", k=2)


def test_deprecated_api_is_an_error_under_filterwarnings_error():
    d = mpsnn.MPSCNNConvolutionDescriptor()
    with pytest.raises(DeprecationWarning):
        d.set_neuron_type(mpsnn.MPSCNNNeuronType.relu)


# ---- 4. debug_description -------------------------------------------------------------------


def test_debug_description_is_a_property(device):
    relu = mpsnn.MPSCNNNeuronReLUNode(source=MPSNNImageNode())
    g = MPSNNGraph(device, relu.result_image)
    assert isinstance(g.debug_description, str) and "neuron" in g.debug_description
    assert isinstance(inspect.getattr_static(MPSNNGraph, "debug_description"), property)


# ---- 5. MPSKernelOptions.verbose ------------------------------------------------------------


def test_kernel_options_flags():
    O = mpsnn.MPSKernelOptions
    assert [int(O.none), int(O.skip_api_validation), int(O.allow_reduced_precision), int(O.disable_internal_tiling),
            int(O.insert_debug_groups), int(O.verbose)] == [0, 1, 2, 4, 8, 16]
    assert mpsnn.MPSKernelOptionsVerbose is O.verbose


def test_verbose_prints_the_compiled_plan_with_fusions(device, rng, capsys):
    ds, w, b = conv_source(2, 3, 3, 3, rng)
    conv = mpsnn.MPSCNNConvolutionNode(source=MPSNNImageNode(), weights=ds)
    relu = mpsnn.MPSCNNNeuronReLUNode(source=conv.result_image)
    g = MPSNNGraph(device, relu.result_image)
    g.label = "tiny"
    assert g.options == mpsnn.MPSKernelOptions.none
    g.options |= mpsnn.MPSKernelOptions.verbose
    assert isinstance(g.options, mpsnn.MPSKernelOptions) and g.options & mpsnn.MPSKernelOptions.verbose
    xv = rng.standard_normal((1, 4, 4, 2)).astype(np.float32)
    g.run([xv])
    err = capsys.readouterr().err
    assert "[MPSNNGraph 'tiny'] compiled a plan" in err
    assert err.count("compiled a plan") == 1
    assert "[fused relu]" in err  # the fusion is named in the plan
    g.run([xv])  # cached plan: nothing new
    assert capsys.readouterr().err == ""
    g.options = mpsnn.MPSKernelOptions.none
    g.run([rng.standard_normal((1, 5, 5, 2)).astype(np.float32)])
    assert capsys.readouterr().err == ""


# ---- 6. stand-alone kernels -----------------------------------------------------------------


@pytest.mark.parametrize("cls, ref", [(mpsnn.MPSImageBilinearScale, R.bilinear_scale),
                                      (mpsnn.MPSImageLanczosScale, R.lanczos_scale)])
def test_image_scale_kernels_encode_into_the_destination(device, rng, cls, ref):
    kernel = cls(device)
    assert isinstance(kernel, mpsnn.MPSImageScale) and isinstance(kernel, mpsnn.MPSKernel)
    assert kernel.scale_transform is None and kernel.device is device
    xv = rng.standard_normal((1, 6, 8, 3)).astype(np.float32)
    src = mpsnn.MPSImage.from_numpy(xv)
    dst = mpsnn.MPSImage(device, mpsnn.MPSImageDescriptor(
        channel_format=mpsnn.MPSImageFeatureChannelFormat.float32, width=5, height=9, feature_channels=3))
    cb = device.make_command_queue().make_command_buffer()
    kernel.encode(cb, source_image=src, destination_image=dst)
    cb.commit()
    cb.wait_until_completed()
    assert_close(dst.numpy(), ref(xv, 5, 9), "reduction", k=36)
    # with a transform, and Apple's texture labels
    kernel.scale_transform = mpsnn.MPSScaleTransform(scale_x=0.5, scale_y=1.0, translate_x=1.0, translate_y=0.0)
    cb = device.make_command_queue().make_command_buffer()
    kernel.encode(cb, source_texture=src, destination_texture=dst)
    cb.commit()
    cb.wait_until_completed()
    assert_close(dst.numpy(), ref(xv, 5, 9, transform=(0.5, 1.0, 1.0, 0.0)), "reduction", k=36)


def test_image_scale_kernel_checks_the_destination(device, rng):
    kernel = mpsnn.MPSImageBilinearScale(device)
    src = mpsnn.MPSImage.from_numpy(rng.standard_normal((1, 4, 4, 3)).astype(np.float32))
    dst = mpsnn.MPSImage.from_numpy(np.zeros((1, 2, 2, 4), np.float32))
    cb = device.make_command_queue().make_command_buffer()
    with pytest.raises(mpsnn.ShapeError, match=r"MPSImageBilinearScale.*4 feature channels.*3"):
        kernel.encode(cb, src, dst)


class Probe:
    """A custom padding policy recording the type of the kernel it is shown."""

    def __init__(self):
        self.kernels = []

    def padding_method(self):
        return int(mpsnn.MPSNNPaddingMethod.size_same | mpsnn.MPSNNPaddingMethod.custom)

    def destination_image_descriptor(self, source_images, source_states, kernel, suggested):
        self.kernels.append(kernel)
        return suggested


def test_padding_hook_kernel_is_the_nodes_kernel_class(device, rng):
    x = MPSNNImageNode()
    ds, _, _ = conv_source(2, 2, 3, 3, rng)
    nodes = {
        mpsnn.MPSCNNConvolution: mpsnn.MPSCNNConvolutionNode(source=x, weights=ds),
        mpsnn.MPSCNNPoolingMax: mpsnn.MPSCNNPoolingMaxNode(source=x, filter_size=2, stride=1),
        mpsnn.MPSCNNPoolingAverage: mpsnn.MPSCNNPoolingAverageNode(source=x, filter_size=2, stride=1),
        mpsnn.MPSCNNPoolingL2Norm: mpsnn.MPSCNNPoolingL2NormNode(source=x, filter_size=2, stride=1),
        mpsnn.MPSCNNDilatedPoolingMax: mpsnn.MPSCNNDilatedPoolingMaxNode(source=x, filter_size=2),
        mpsnn.MPSCNNNeuron: mpsnn.MPSCNNNeuronReLUNode(source=x),
        mpsnn.MPSCNNSoftMax: mpsnn.MPSCNNSoftMaxNode(source=x),
        mpsnn.MPSCNNLogSoftMax: mpsnn.MPSCNNLogSoftMaxNode(source=x),
        mpsnn.MPSCNNCrossChannelNormalization: mpsnn.MPSCNNCrossChannelNormalizationNode(source=x, kernel_size=3),
        mpsnn.MPSCNNSpatialNormalization: mpsnn.MPSCNNSpatialNormalizationNode(source=x, kernel_size=3),
        mpsnn.MPSCNNLocalContrastNormalization: mpsnn.MPSCNNLocalContrastNormalizationNode(source=x, kernel_size=3),
        mpsnn.MPSCNNUpsamplingNearest: mpsnn.MPSCNNUpsamplingNearestNode(source=x, integer_scale_factor_x=1,
                                                                         integer_scale_factor_y=1),
        mpsnn.MPSCNNAdd: mpsnn.MPSNNAdditionNode(left_source=x, right_source=x),
        mpsnn.MPSCNNDivide: mpsnn.MPSNNDivisionNode(left_source=x, right_source=x),
    }
    probes = {}
    for cls, node in nodes.items():
        probes[cls] = node.padding_policy = Probe()
    xv = rng.standard_normal((1, 4, 4, 2)).astype(np.float32)
    for cls, node in nodes.items():
        MPSNNGraph(device, node.result_image).run([xv])
        (kernel,) = probes[cls].kernels
        assert type(kernel) is cls, (cls, type(kernel))
        assert isinstance(kernel, mpsnn.MPSKernel)
    assert isinstance(probes[mpsnn.MPSCNNPoolingMax].kernels[0], mpsnn.MPSCNNPooling)
    assert isinstance(probes[mpsnn.MPSCNNPoolingMax].kernels[0], mpsnn.MPSCNNKernel)
    assert isinstance(probes[mpsnn.MPSCNNAdd].kernels[0], mpsnn.MPSCNNArithmetic)
    assert isinstance(probes[mpsnn.MPSCNNAdd].kernels[0], mpsnn.MPSCNNBinaryKernel)
    assert not isinstance(probes[mpsnn.MPSCNNAdd].kernels[0], mpsnn.MPSCNNKernel)  # as in MPS
    assert probes[mpsnn.MPSCNNConvolution].kernels[0].kernel_width == 3


def test_padding_hook_kernel_changes_are_applied(device):
    """A hook moving the pooling kernel's offset shifts the windows (the object is read back)."""

    class Shift(Probe):
        def padding_method(self):
            return int(mpsnn.MPSNNPaddingMethod.size_valid_only | mpsnn.MPSNNPaddingMethod.custom)

        def destination_image_descriptor(self, source_images, source_states, kernel, suggested):
            assert isinstance(kernel, mpsnn.MPSCNNPoolingMax)
            kernel.offset = mpsnn.MPSOffset(kernel.offset.x + 1, kernel.offset.y, 0)
            suggested.width -= 1
            return suggested

    pool = mpsnn.MPSCNNPoolingMaxNode(source=MPSNNImageNode(), kernel_width=2, kernel_height=1, stride_in_pixels_x=1,
                                      stride_in_pixels_y=1)
    pool.padding_policy = Shift()
    xv = np.array([1, 5, 2, 7, 3], np.float32).reshape(1, 1, 5, 1)
    y = MPSNNGraph(device, pool.result_image).run([xv]).numpy().ravel()
    np.testing.assert_array_equal(y, [5, 7, 7])  # windows start one pixel later: (5,2), (2,7), (7,3)


# ---- 7. execute_async errors ----------------------------------------------------------------


def run_async(graph, sources):
    done, got = threading.Event(), {}

    def handler(result, error):
        got["result"], got["error"] = result, error
        done.set()

    returned = graph.execute_async(sources, handler)
    assert done.wait(10)
    return returned, got


def test_execute_async_hands_source_errors_to_the_handler(device, rng):
    ds, _, _ = conv_source(3, 4, 3, 3, rng)
    conv = mpsnn.MPSCNNConvolutionNode(source=MPSNNImageNode(), weights=ds)
    g = MPSNNGraph(device, conv.result_image)
    # wrong channel count: a validation error at encode
    returned, got = run_async(g, [np.zeros((1, 4, 4, 5), np.float32)])
    assert returned is None and got["result"] is None
    assert isinstance(got["error"], str) and "channel" in got["error"]
    # wrong source type: an error converting the sources
    returned, got = run_async(g, ["not an image"])
    assert returned is None and got["result"] is None and "MPSImage" in got["error"]
    # wrong count of sources
    returned, got = run_async(g, [])
    assert got["result"] is None and got["error"]
    # and a good run still works afterwards
    xv = rng.standard_normal((1, 4, 4, 3)).astype(np.float32)
    returned, got = run_async(g, [xv])
    assert got["error"] is None and got["result"] is returned


# ---- 8. enumeration spellings ---------------------------------------------------------------


@pytest.mark.parametrize("new, old", [
    ("relu", "reLU"), ("tanh", "tanH"), ("hard_sigmoid", "hardSigmoid"), ("prelu", "pReLU"), ("relun", "reLUN"),
    ("soft_plus", "softPlus"), ("soft_sign", "softSign"), ("elu", "eLU")])
def test_neuron_type_snake_case_with_old_aliases(new, old):
    T = mpsnn.MPSCNNNeuronType
    assert getattr(T, new) is getattr(T, old)
    assert getattr(T, new).name == new


def test_data_layout_snake_case_with_old_aliases():
    L = mpsnn.MPSDataLayout
    assert L.height_x_width_x_feature_channels is L.HeightxWidthxFeatureChannels
    assert L.feature_channels_x_height_x_width is L.featureChannelsxHeightxWidth
    assert int(L.height_x_width_x_feature_channels) == 0 and int(L.feature_channels_x_height_x_width) == 1
    assert mpsnn.MPSDataLayoutHeightxWidthxFeatureChannels is L.height_x_width_x_feature_channels
    assert mpsnn.MPSCNNNeuronTypeReLU is mpsnn.MPSCNNNeuronType.relu


def test_every_enum_member_name_is_snake_case_or_a_kept_alias():
    import enum
    import re

    kept = {"HeightxWidthxFeatureChannels", "featureChannelsxHeightxWidth", "reLU", "hardSigmoid", "tanH", "softPlus",
            "softSign", "eLU", "pReLU", "reLUN"}
    for e in vars(mpsnn._core).values():
        if isinstance(e, type) and issubclass(e, enum.Enum):
            for name, member in e.__members__.items():
                assert re.fullmatch(r"[a-z][a-z0-9_]*", name) or name in kept, (e.__name__, name)
                assert re.fullmatch(r"[a-z][a-z0-9_]*", member.name), (e.__name__, member.name)
