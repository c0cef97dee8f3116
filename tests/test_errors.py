"""Bad input raises a typed exception naming the node, what was found and what was expected."""

import numpy as np
import pytest

import mpsnn
from conftest import conv_source
from mpsnn import MPSNNGraph, MPSNNImageNode


def conv_graph(device, rng, cin=4, label="enc.conv1"):
    ds, w, b = conv_source(cin, 8, 3, 3, rng)
    conv = mpsnn.MPSCNNConvolutionNode(source=MPSNNImageNode(), weights=ds)
    conv.label = label
    return MPSNNGraph(device, conv.result_image), ds


def test_wrong_channel_count_names_node(device, rng):
    g, _ = conv_graph(device, rng)
    with pytest.raises(mpsnn.ShapeError, match=r"\[convolution 'enc.conv1'\] source has 3 feature channels, descriptor expects 4"):
        g.run([np.zeros((1, 5, 5, 3), np.float32)])


def test_unlabelled_node_is_named_by_its_data_source(device, rng):
    """Without a node label, errors name the node by its data source's label (MPS kernels take
    their label from the data source); a node label wins."""
    d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=2, kernel_height=2, input_feature_channels=3,
                                          output_feature_channels=5)
    ds = mpsnn.ArrayConvolutionDataSource(d, rng.standard_normal((5, 2, 2, 3)).astype(np.float32), None, label="fc1")
    fc = mpsnn.MPSCNNFullyConnectedNode(source=MPSNNImageNode(), weights=ds)
    g = MPSNNGraph(device, fc.result_image)
    with pytest.raises(mpsnn.ShapeError, match=r"\[convolution 'fc1'\] kernel is 2x2 but the source is 3x3"):
        g.run([np.zeros((1, 3, 3, 3), np.float32)])
    fc.label = "head"
    with pytest.raises(mpsnn.ShapeError, match=r"\[convolution 'head'\] kernel is 2x2"):
        MPSNNGraph(device, fc.result_image).run([np.zeros((1, 3, 3, 3), np.float32)])


def test_wrong_dtype_and_non_contiguous(device, rng):
    g, _ = conv_graph(device, rng)
    with pytest.raises(mpsnn.DTypeError, match="int32"):
        g.run([np.zeros((1, 5, 5, 4), np.int32)])
    with pytest.raises(TypeError, match="C-contiguous"):
        g.run([np.zeros((1, 5, 10, 4), np.float32)[:, :, ::2]])


def test_missing_or_extra_sources(device, rng):
    g, _ = conv_graph(device, rng)
    x = np.zeros((1, 5, 5, 4), np.float32)
    with pytest.raises(mpsnn.MPSGraphError, match="got 2 source image"):
        g.run([x, x])
    with pytest.raises(ValueError, match="got 0 source image"):
        g.run([])


def test_weights_of_wrong_length(device, rng):
    d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=3, kernel_height=3, input_feature_channels=4,
                                          output_feature_channels=8)
    bad = mpsnn.ArrayConvolutionDataSource(d, np.zeros(8 * 3 * 3 * 3, np.float32))  # flat (4-D: a shape error)
    conv = mpsnn.MPSCNNConvolutionNode(source=MPSNNImageNode(), weights=bad)
    conv.label = "c"
    with pytest.raises(mpsnn.ShapeError, match=r"\[convolution 'c'\] weights have 216 float32 values; expected 288"):
        MPSNNGraph(device, conv.result_image)


def test_zero_or_negative_sizes(device):
    with pytest.raises(mpsnn.ShapeError, match="kernel_width is 0"):
        mpsnn.MPSCNNPoolingMaxNode(source=MPSNNImageNode(), filter_size=0)
    with pytest.raises(mpsnn.ShapeError, match="kernel_width is -2"):
        mpsnn.MPSCNNPoolingAverageNode(MPSNNImageNode(), -2, 2, 1, 1)
    pool = mpsnn.MPSCNNPoolingMaxNode(source=MPSNNImageNode(), filter_size=5, stride=1)
    pool.padding_policy = mpsnn.MPSNNDefaultPadding.padding_with_method(mpsnn.MPSNNPaddingMethod.size_valid_only)
    with pytest.raises(mpsnn.ShapeError, match="result size is -1x-1"):
        MPSNNGraph(device, pool.result_image).run([np.zeros((1, 3, 3, 1), np.float32)])


def test_result_no_filter_reaches(device):
    with pytest.raises(mpsnn.MPSGraphError, match="graph input"):
        MPSNNGraph(device, MPSNNImageNode())


def test_unknown_handles_and_devices(device, rng):
    g, _ = conv_graph(device, rng)
    # One canonical object per device: another device is a device of another backend or index.
    assert mpsnn.MTLDevice("cpu") is device and mpsnn.MTLDevice("cpu:0") is device
    others = [d for d in mpsnn.MTLCopyAllDevices() if d is not device]
    for other in others:
        img = mpsnn.MPSImage(other, mpsnn.MPSImageDescriptor(mpsnn.MPSImageFeatureChannelFormat.float32, 5, 5, 4))
        with pytest.raises(mpsnn.MPSGraphError, match="another device"):
            g.run([img])
    with pytest.raises(mpsnn.UnsupportedError, match="index 7 does not exist"):
        mpsnn.MTLDevice("cpu:7")
    with pytest.raises(mpsnn.ShapeError, match="not a device name"):
        mpsnn.MTLDevice("cpu:x")
    with pytest.raises(mpsnn.MPSGraphError, match="index 3"):
        g.read_count_for_source_image(3)
    with pytest.raises(mpsnn.UnsupportedError, match="backend 'cuda'"):
        mpsnn.MTLDevice("cuda")


def test_bad_data_source_objects(device):
    with pytest.raises(mpsnn.DTypeError, match="lacks .data_type."):
        mpsnn.MPSCNNConvolutionNode(source=MPSNNImageNode(), weights=object())
    with pytest.raises(mpsnn.ShapeError, match="keep_probability"):
        mpsnn.MPSCNNDropoutNode(source=MPSNNImageNode(), keep_probability=0.0)


def test_errors_keep_the_process_alive_under_threads(device, rng):
    import threading

    g, _ = conv_graph(device, rng)
    caught = []

    def bad():
        try:
            g.run([np.zeros((1, 5, 5, 7), np.float32)])
        except mpsnn.ShapeError as e:
            caught.append(e)

    ts = [threading.Thread(target=bad) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert len(caught) == 4
