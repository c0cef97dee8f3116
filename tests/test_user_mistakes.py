"""The common first mistakes raise typed errors that say what to do: an (N, C, H, W) array, a filter
node passed for an image node, graph.run(array) without a list, float16 data for a float32 graph."""

import inspect

import numpy as np
import pytest

import mpsnn
from conftest import conv_source
from mpsnn import MPSDataLayout, MPSImage, MPSImageDescriptor, MPSImageFeatureChannelFormat as F, MPSNNImageNode

HWC = MPSDataLayout.HeightxWidthxFeatureChannels
NCHW_HINT = r"images are \(N, H, W, C\); was an \(N, C, H, W\) array passed\? use a.transpose\(0, 2, 3, 1\)"


def conv_graph(device, rng, cin=3, cout=8):
    ds, _, _ = conv_source(cin, cout, 3, 3, rng)
    conv = mpsnn.MPSCNNConvolutionNode(source=MPSNNImageNode(), weights=ds)
    return mpsnn.MPSNNGraph(device, conv.result_image)


# ---- (N, C, H, W) arrays -----------------------------------------------------------------------
def test_nchw_array_gets_the_transpose_hint(device, rng):
    g = conv_graph(device, rng)
    nchw = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
    with pytest.raises(mpsnn.ShapeError, match=r"source has 16 feature channels, descriptor expects 3; " + NCHW_HINT):
        g.run([nchw])
    # from_dlpack / from_numpy keep wrapping such arrays (it may be what the user meant).
    assert MPSImage.from_numpy(nchw).feature_channels == 16
    y = g.run([np.ascontiguousarray(nchw.transpose(0, 2, 3, 1))])
    assert y.numpy().shape == (2, 16, 16, 8)


def test_nchw_torch_tensor_gets_the_hint(device, rng):
    torch = pytest.importorskip("torch")
    g = conv_graph(device, rng)
    t = torch.randn(1, 3, 8, 8)
    img = MPSImage.from_dlpack(t)
    assert img.feature_channels == 8
    with pytest.raises(mpsnn.ShapeError, match=NCHW_HINT):
        g.run([t])


def test_other_channel_mismatches_have_no_nchw_hint(device, rng):
    g = conv_graph(device, rng)
    with pytest.raises(mpsnn.ShapeError, match="descriptor expects 3") as e:
        g.run([np.zeros((1, 5, 5, 4), np.float32)])
    assert "N, C, H, W" not in str(e.value)


def test_nchw_hint_for_fully_connected_and_batch_norm(device, rng):
    d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=4, kernel_height=4, input_feature_channels=4,
                                          output_feature_channels=2)
    fc = mpsnn.MPSCNNFullyConnectedNode(source=MPSNNImageNode(), weights=mpsnn.ArrayConvolutionDataSource(
        d, rng.standard_normal((2, 4, 4, 4)).astype(np.float32)))
    with pytest.raises(mpsnn.ShapeError, match=NCHW_HINT):
        mpsnn.MPSNNGraph(device, fc.result_image).run([np.zeros((1, 4, 5, 5), np.float32)])
    ones = np.ones(6, np.float32)
    bn = mpsnn.MPSCNNBatchNormalizationNode(
        source=MPSNNImageNode(),
        data_source=mpsnn.ArrayBatchNormalizationDataSource(gamma=ones, beta=0 * ones, mean=0 * ones, variance=ones))
    with pytest.raises(mpsnn.ShapeError, match=r"data source has 6; " + NCHW_HINT):
        mpsnn.MPSNNGraph(device, bn.result_image).run([np.zeros((1, 6, 9, 9), np.float32)])


# ---- a filter node where an image node is expected --------------------------------------------
def _constructors(rng):
    """Every filter node class's constructor, as (class, make(image_node_args...)) with the image
    arguments supplied by the caller."""
    ds, _, _ = conv_source(4, 4, 3, 3, rng)
    fc_desc = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=1, kernel_height=1, input_feature_channels=4,
                                                output_feature_channels=4)
    fc_ds = mpsnn.ArrayConvolutionDataSource(fc_desc, rng.standard_normal((4, 1, 1, 4)).astype(np.float32))
    ones = np.ones(4, np.float32)
    bn = mpsnn.ArrayBatchNormalizationDataSource(gamma=ones, beta=ones, mean=ones, variance=ones)
    inorm = mpsnn.ArrayInstanceNormalizationDataSource(gamma=ones, beta=ones)
    size = mpsnn.MTLSize(4, 4, 1)
    btype = list(mpsnn.MPSCNNBinaryConvolutionType)[0]
    pool = mpsnn.MPSCNNPoolingMaxNode(source=MPSNNImageNode(), filter_size=2)
    state = pool.result_state
    neuron = mpsnn.MPSNNNeuronDescriptor(mpsnn.MPSCNNNeuronType(1))
    one = [
        (mpsnn.MPSCNNConvolutionNode, lambda s: mpsnn.MPSCNNConvolutionNode(source=s, weights=ds)),
        (mpsnn.MPSCNNFullyConnectedNode, lambda s: mpsnn.MPSCNNFullyConnectedNode(source=s, weights=fc_ds)),
        (mpsnn.MPSCNNConvolutionTransposeNode,
         lambda s: mpsnn.MPSCNNConvolutionTransposeNode(source=s, convolution_gradient_state=None, weights=ds)),
        (mpsnn.MPSCNNBinaryConvolutionNode,
         lambda s: mpsnn.MPSCNNBinaryConvolutionNode(source=s, weights=ds, scale_value=1.0, type=btype, flags=0)),
        (mpsnn.MPSCNNBinaryFullyConnectedNode,
         lambda s: mpsnn.MPSCNNBinaryFullyConnectedNode(source=s, weights=fc_ds, scale_value=1.0, type=btype, flags=0)),
        (mpsnn.MPSCNNPoolingMaxNode, lambda s: mpsnn.MPSCNNPoolingMaxNode(source=s, filter_size=2)),
        (mpsnn.MPSCNNPoolingAverageNode, lambda s: mpsnn.MPSCNNPoolingAverageNode(source=s, filter_size=2)),
        (mpsnn.MPSCNNPoolingL2NormNode, lambda s: mpsnn.MPSCNNPoolingL2NormNode(source=s, filter_size=2)),
        (mpsnn.MPSCNNDilatedPoolingMaxNode, lambda s: mpsnn.MPSCNNDilatedPoolingMaxNode(source=s, filter_size=2)),
        (mpsnn.MPSCNNNeuronPReLUNode, lambda s: mpsnn.MPSCNNNeuronPReLUNode(source=s, a_data=[0.1])),
        (mpsnn.MPSCNNSoftMaxNode, lambda s: mpsnn.MPSCNNSoftMaxNode(source=s)),
        (mpsnn.MPSCNNLogSoftMaxNode, lambda s: mpsnn.MPSCNNLogSoftMaxNode(source=s)),
        (mpsnn.MPSCNNDropoutNode, lambda s: mpsnn.MPSCNNDropoutNode(source=s)),
        (mpsnn.MPSCNNBatchNormalizationNode, lambda s: mpsnn.MPSCNNBatchNormalizationNode(source=s, data_source=bn)),
        (mpsnn.MPSCNNInstanceNormalizationNode,
         lambda s: mpsnn.MPSCNNInstanceNormalizationNode(source=s, data_source=inorm)),
        (mpsnn.MPSCNNCrossChannelNormalizationNode, lambda s: mpsnn.MPSCNNCrossChannelNormalizationNode(source=s)),
        (mpsnn.MPSCNNSpatialNormalizationNode, lambda s: mpsnn.MPSCNNSpatialNormalizationNode(source=s)),
        (mpsnn.MPSCNNLocalContrastNormalizationNode, lambda s: mpsnn.MPSCNNLocalContrastNormalizationNode(source=s)),
        (mpsnn.MPSCNNUpsamplingNearestNode,
         lambda s: mpsnn.MPSCNNUpsamplingNearestNode(source=s, integer_scale_factor_x=2, integer_scale_factor_y=2)),
        (mpsnn.MPSCNNUpsamplingBilinearNode,
         lambda s: mpsnn.MPSCNNUpsamplingBilinearNode(source=s, integer_scale_factor_x=2, integer_scale_factor_y=2)),
        (mpsnn.MPSNNBilinearScaleNode, lambda s: mpsnn.MPSNNBilinearScaleNode(source=s, output_size=size)),
        (mpsnn.MPSNNLanczosScaleNode, lambda s: mpsnn.MPSNNLanczosScaleNode(source=s, output_size=size)),
        (mpsnn.MPSCNNNeuronGradientNode,
         lambda s: mpsnn.MPSCNNNeuronGradientNode(source_gradient=s, source_image=MPSNNImageNode(),
                                                  gradient_state=state, descriptor=neuron)),
        (mpsnn.MPSCNNNeuronGradientNode,
         lambda s: mpsnn.MPSCNNNeuronGradientNode(source_gradient=MPSNNImageNode(), source_image=s,
                                                  gradient_state=state, descriptor=neuron)),
    ]
    for name in dir(mpsnn):
        cls = getattr(mpsnn, name)
        if inspect.isclass(cls) and issubclass(cls, mpsnn.MPSCNNNeuronNode) and cls is not mpsnn.MPSCNNNeuronNode \
                and cls is not mpsnn.MPSCNNNeuronPReLUNode and not name.startswith("_"):
            one.append((cls, lambda s, cls=cls: cls(source=s)))
    for name in ("MPSCNNPoolingMaxGradientNode", "MPSCNNPoolingAverageGradientNode", "MPSCNNPoolingL2NormGradientNode",
                 "MPSCNNDilatedPoolingMaxGradientNode"):
        cls = getattr(mpsnn, name)
        kw = dict(gradient_state=state, kernel_width=2, kernel_height=2, stride_in_pixels_x=2, stride_in_pixels_y=2)
        if "Dilated" in name:
            kw.update(dilation_rate_x=1, dilation_rate_y=1)
        one.append((cls, lambda s, cls=cls, kw=kw: cls(source_gradient=s, source_image=MPSNNImageNode(), **kw)))
        one.append((cls, lambda s, cls=cls, kw=kw: cls(source_gradient=MPSNNImageNode(), source_image=s, **kw)))
    for name in ("MPSNNAdditionNode", "MPSNNSubtractionNode", "MPSNNMultiplicationNode", "MPSNNDivisionNode"):
        cls = getattr(mpsnn, name)
        one.append((cls, lambda s, cls=cls: cls(sources=[MPSNNImageNode(), s])))
        one.append((cls, lambda s, cls=cls: cls(left_source=s, right_source=MPSNNImageNode())))
    one.append((mpsnn.MPSNNConcatenationNode, lambda s: mpsnn.MPSNNConcatenationNode(sources=[s, MPSNNImageNode()])))
    # gradients of the trainable families: (class, keyword of the forward state, forward node)
    conv = mpsnn.MPSCNNConvolutionNode(source=MPSNNImageNode(), weights=ds)
    fc = mpsnn.MPSCNNFullyConnectedNode(source=MPSNNImageNode(), weights=fc_ds)
    tconv = mpsnn.MPSCNNConvolutionTransposeNode(source=MPSNNImageNode(), convolution_gradient_state=None, weights=ds)
    bn_node = mpsnn.MPSCNNBatchNormalizationNode(source=MPSNNImageNode(), data_source=bn)
    in_node = mpsnn.MPSCNNInstanceNormalizationNode(source=MPSNNImageNode(), data_source=inorm)
    for cls, key, fwd in ((mpsnn.MPSCNNConvolutionGradientNode, "convolution_gradient_state", conv),
                          (mpsnn.MPSCNNFullyConnectedGradientNode, "convolution_gradient_state", fc),
                          (mpsnn.MPSCNNConvolutionTransposeGradientNode, "convolution_transpose_gradient_state", tconv),
                          (mpsnn.MPSCNNBatchNormalizationGradientNode, "gradient_state", bn_node),
                          (mpsnn.MPSCNNInstanceNormalizationGradientNode, "gradient_state", in_node)):
        kw = {key: fwd.result_state}
        one.append((cls, lambda s, cls=cls, kw=kw: cls(source_gradient=s, source_image=MPSNNImageNode(), **kw)))
        one.append((cls, lambda s, cls=cls, kw=kw: cls(source_gradient=MPSNNImageNode(), source_image=s, **kw)))
    loss = mpsnn.MPSCNNLossDescriptor(mpsnn.MPSCNNLossType.mean_squared_error, mpsnn.MPSCNNReductionType.sum)
    one.append((mpsnn.MPSCNNLossNode, lambda s: mpsnn.MPSCNNLossNode(source=s, loss_descriptor=loss)))
    T = mpsnn.MPSCNNLossType
    yolo = mpsnn.MPSCNNYOLOLossDescriptor.cnn_loss_descriptor(
        xy_loss_type=T.mean_squared_error, wh_loss_type=T.mean_squared_error,
        confidence_loss_type=T.sigmoid_cross_entropy,
        classes_loss_type=T.soft_max_cross_entropy, reduction_type=mpsnn.MPSCNNReductionType.sum,
        anchor_boxes=np.ones(2, np.float32), number_of_anchor_boxes=1)
    one.append((mpsnn.MPSCNNYOLOLossNode, lambda s: mpsnn.MPSCNNYOLOLossNode(source=s, loss_descriptor=yolo)))
    # gradient nodes of the other families: source_gradient and source_image each checked
    extra = {
        "MPSNNAdditionGradientNode": dict(is_secondary_source_filter=False),
        "MPSNNSubtractionGradientNode": dict(is_secondary_source_filter=True),
        "MPSNNMultiplicationGradientNode": dict(is_secondary_source_filter=False),
        "MPSNNConcatenationGradientNode": {},
        "MPSCNNSoftMaxGradientNode": {},
        "MPSCNNLogSoftMaxGradientNode": {},
        "MPSCNNCrossChannelNormalizationGradientNode": dict(kernel_size=3),
        "MPSCNNSpatialNormalizationGradientNode": dict(kernel_size=3),
        "MPSCNNLocalContrastNormalizationGradientNode": dict(kernel_width=3, kernel_height=3),
        "MPSCNNUpsamplingNearestGradientNode": dict(scale_factor_x=2, scale_factor_y=2),
        "MPSCNNUpsamplingBilinearGradientNode": dict(scale_factor_x=2, scale_factor_y=2),
        "MPSCNNDropoutGradientNode": dict(keep_probability=0.5, seed=1, mask_stride_in_pixels=(1, 1, 1)),
    }
    for name, kw in extra.items():
        cls = getattr(mpsnn, name)
        kw = dict(kw, gradient_state=state)
        one.append((cls, lambda s, cls=cls, kw=kw: cls(source_gradient=s, source_image=MPSNNImageNode(), **kw)))
        one.append((cls, lambda s, cls=cls, kw=kw: cls(source_gradient=MPSNNImageNode(), source_image=s, **kw)))
    add = mpsnn.MPSNNAdditionNode(sources=[MPSNNImageNode(), MPSNNImageNode()])
    one.append((mpsnn.MPSNNAdditionGradientNode,
                lambda s: mpsnn.MPSNNAdditionGradientNode(gradient_images=[s, MPSNNImageNode()], forward_filter=add,
                                                          is_secondary_source_filter=True)))
    return one


def test_every_constructor_names_result_image(rng):
    producer = mpsnn.MPSCNNNeuronReLUNode(source=MPSNNImageNode())
    cases = _constructors(rng)
    for cls, make in cases:
        make(MPSNNImageNode())  # the call is valid with an image node
        with pytest.raises(mpsnn.DTypeError, match=r"filter node MPSCNNNeuronReLUNode .*pass `node.result_image`"):
            make(producer)
        make(producer.result_image)
    # Every concrete filter node class with a Python constructor is covered.
    covered = {cls for cls, _ in cases}
    concrete = set()
    for name in dir(mpsnn):
        cls = getattr(mpsnn, name)
        if inspect.isclass(cls) and issubclass(cls, mpsnn.MPSNNFilterNode) and not name.startswith("_"):
            doc = cls.__init__.__doc__ or ""
            if "source" in doc.split("\n")[0] or "sources" in doc:
                concrete.add(cls)
    assert concrete - covered == set()
    assert issubclass(mpsnn.DTypeError, TypeError)


def test_graph_and_gradient_filter_name_result_image(device):
    relu = mpsnn.MPSCNNNeuronReLUNode(source=MPSNNImageNode())
    with pytest.raises(mpsnn.DTypeError, match="pass `node.result_image`"):
        mpsnn.MPSNNGraph(device, relu)
    with pytest.raises(mpsnn.DTypeError, match="pass `node.result_image`"):
        mpsnn.MPSNNGraph(device, result_image=relu)
    with pytest.raises(mpsnn.DTypeError, match="pass `node.result_image`"):
        mpsnn.MPSNNGraph(device, result_images=[relu.result_image, relu])
    with pytest.raises(mpsnn.DTypeError, match="pass `node.result_image`"):
        relu.gradient_filter(with_source=relu)


# ---- graph.run(array) -------------------------------------------------------------------------
def test_run_without_a_list(device, rng):
    g = conv_graph(device, rng)
    x = rng.standard_normal((2, 32, 32, 3)).astype(np.float32)
    for call in (lambda: g.run(x), lambda: g.run(source_images=x), lambda: g.run(MPSImage.from_numpy(x)),
                 lambda: g.encode(device.make_command_queue().make_command_buffer(), x)):
        with pytest.raises(mpsnn.DTypeError, match=r"pass a list of source images.*graph.run\(\[x\]\)") as e:
            call()
        msg = str(e.value)
        assert len(msg) < 300 and "array(" not in msg and "[[" not in msg
    assert g.run([x]).numpy().shape == (2, 32, 32, 8)
    assert g.run((x,)).numpy().shape == (2, 32, 32, 8)  # a tuple is a sequence of sources too


# ---- float16 data for a float32 graph ----------------------------------------------------------
HINT16 = r"graph.format = MPSImageFeatureChannelFormat.float16"


def test_float16_reads_of_a_float32_result(device, rng):
    g = conv_graph(device, rng)
    y = g.run([rng.standard_normal((1, 4, 4, 3)).astype(np.float32)])
    assert y.feature_channel_format == F.float32
    with pytest.raises(mpsnn.DTypeError, match=r"float16.*" + HINT16):
        y.read_bytes(np.empty((4, 4, 8), np.float16), HWC)
    with pytest.raises(mpsnn.DTypeError, match=HINT16):
        y.read_bytes(memoryview(np.empty((4, 4, 8), np.float16)), HWC)
    with pytest.raises(mpsnn.ShapeError, match=r"the size of float16 data.*" + HINT16):
        y.read_bytes(bytearray(4 * 4 * 8 * 2), HWC)
    # With the hint followed, the graph produces float16 images.
    g.format = F.float16
    y16 = g.run([rng.standard_normal((1, 4, 4, 3)).astype(np.float32)])
    out = np.empty((4, 4, 8), np.float16)
    y16.read_bytes(out, HWC)
    np.testing.assert_array_equal(out, y16.numpy()[0])


def test_float16_writes_into_a_float32_image(device):
    img = MPSImage(device, MPSImageDescriptor(F.float32, 4, 4, 8))
    with pytest.raises(mpsnn.DTypeError, match=HINT16):
        img.write_bytes(np.zeros((4, 4, 8), np.float16), HWC)
    with pytest.raises(mpsnn.ShapeError, match=HINT16):
        img.write_bytes(np.zeros((4, 4, 8), np.float16).tobytes(), HWC)
    img16 = MPSImage(device, MPSImageDescriptor(F.float16, 4, 4, 8))
    with pytest.raises(mpsnn.DTypeError, match="image is float16"):
        img16.write_bytes(np.zeros((4, 4, 8), np.float32), HWC)
    img.write_bytes(np.ones((4, 4, 8), np.float32).tobytes(), HWC)  # raw bytes of the right size are fine
    assert (img.numpy() == 1).all()
