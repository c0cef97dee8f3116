"""MPSImage: zero-copy NumPy in and out, read_bytes / write_bytes in both layouts, views,
temporary images."""

import numpy as np
import pytest

import mpsnn
from mpsnn import MPSDataLayout, MPSImage, MPSImageDescriptor, MPSImageFeatureChannelFormat as F
from conftest import assert_close

HWC = MPSDataLayout.HeightxWidthxFeatureChannels
CHW = MPSDataLayout.featureChannelsxHeightxWidth


@pytest.mark.parametrize("dtype, fmt", [(np.float32, F.float32), (np.float16, F.float16), (np.uint8, F.unorm8),
                                        (np.uint16, F.unorm16)])
def test_from_numpy_is_zero_copy(dtype, fmt):
    a = np.arange(2 * 3 * 5 * 7).reshape(2, 3, 5, 7).astype(dtype)
    img = MPSImage.from_numpy(a)
    assert img.feature_channel_format == fmt
    assert (img.number_of_images, img.height, img.width, img.feature_channels) == (2, 3, 5, 7)
    view = img.numpy()
    assert np.shares_memory(view, a)
    a[1, 2, 3, 4] = 9
    assert view[1, 2, 3, 4] == 9


def test_numpy_view_keeps_storage_alive(device):
    img = MPSImage(device, MPSImageDescriptor(F.float32, 4, 3, 5, number_of_images=2))
    view = img.numpy()
    view[...] = 7
    del img
    assert view.sum() == 7 * view.size


def test_wrong_dtype_or_layout_raises_type_error():
    with pytest.raises(mpsnn.DTypeError, match="float64"):
        MPSImage.from_numpy(np.zeros((1, 2, 2, 3)))
    with pytest.raises(TypeError, match="C-contiguous"):
        MPSImage.from_numpy(np.zeros((1, 4, 4, 3), np.float32)[:, ::2])
    with pytest.raises(mpsnn.ShapeError, match="4"):
        MPSImage.from_numpy(np.zeros((4, 4, 3), np.float32))


@pytest.mark.parametrize("layout", [HWC, CHW])
def test_read_write_whole_image(device, layout, rng):
    img = MPSImage(device, MPSImageDescriptor(F.float32, 5, 3, 6, number_of_images=2))
    hwc = rng.standard_normal((3, 5, 6)).astype(np.float32)
    data = hwc if layout == HWC else np.ascontiguousarray(hwc.transpose(2, 0, 1))
    img.write_bytes(data, layout, image_index=1)
    np.testing.assert_array_equal(img.numpy()[1], hwc)
    back = np.empty_like(data)
    img.read_bytes(back, layout, image_index=1)
    np.testing.assert_array_equal(back, data)


@pytest.mark.parametrize("layout", [HWC, CHW])
def test_read_region_and_channel_range(device, layout, rng):
    img = MPSImage.from_numpy(rng.standard_normal((3, 6, 7, 10)).astype(np.float32))
    region = mpsnn.MTLRegion(mpsnn.MTLOrigin(2, 1, 0), mpsnn.MTLSize(3, 4, 2))
    params = mpsnn.MPSImageReadWriteParams(4, 4)
    n = 4
    out = np.zeros((2, 4, 3, n) if layout == HWC else (2, n, 4, 3), np.float32)
    img.read_bytes(out, layout, image_index=1, region=region, feature_channel_info=params)
    expected = img.numpy()[1:3, 1:5, 2:5, 4:8]
    if layout == CHW:
        expected = expected.transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(out, expected)


def test_read_bytes_errors(device):
    img = MPSImage(device, MPSImageDescriptor(F.float32, 4, 4, 8))
    with pytest.raises(TypeError, match="float16"):
        img.read_bytes(np.zeros((4, 4, 8), np.float16), HWC)
    with pytest.raises(mpsnn.ShapeError, match="bytes"):
        img.read_bytes(np.zeros((4, 4, 4), np.float32), HWC)
    with pytest.raises(mpsnn.ShapeError, match="multiple of 4"):
        img.read_bytes(np.zeros((4, 4, 2), np.float32), HWC,
                       feature_channel_info=mpsnn.MPSImageReadWriteParams(2, 2))


def test_sub_image_and_batch_representation_alias(device):
    a = np.arange(2 * 2 * 2 * 10, dtype=np.float32).reshape(2, 2, 2, 10)
    img = MPSImage.from_numpy(a)
    sub = img.sub_image(with_feature_channel_range=range(4, 10))
    assert sub.feature_channels == 6
    np.testing.assert_array_equal(sub.numpy(), a[..., 4:10])
    parts = img.batch_representation()
    assert len(parts) == 2 and parts[1].number_of_images == 1
    parts[1].numpy()[...] = -1
    assert (a[1] == -1).all()
    with pytest.raises(mpsnn.ShapeError, match="multiple of 4"):
        img.sub_image(with_feature_channel_range=(2, 4))


def test_lazy_allocation_and_resource_size(device):
    img = MPSImage(device, MPSImageDescriptor(F.float16, 8, 4, 3))
    assert img.resource_size() == 8 * 4 * 3 * 2
    assert MPSImage.from_numpy(np.zeros((1, 2, 2, 1), np.float32)).resource_size() == 0
    with pytest.raises(mpsnn.ShapeError, match="> 0"):
        MPSImage(device, MPSImageDescriptor(F.float32, 0, 4, 3))
    with pytest.raises(mpsnn.DTypeError, match="none"):
        MPSImage(device, MPSImageDescriptor(F.none, 2, 2, 3))


def test_temporary_image_rules(device):
    queue = device.make_command_queue()
    cb = queue.make_command_buffer()
    t = mpsnn.MPSTemporaryImage(cb, MPSImageDescriptor(F.float32, 4, 4, 4))
    assert t.read_count == 1 and t.is_temporary
    with pytest.raises(mpsnn.MPSTemporaryImageError, match="CPU"):
        t.numpy()
    with pytest.raises(mpsnn.MPSTemporaryImageError, match="CPU"):
        t.read_bytes(np.zeros((4, 4, 4), np.float32), HWC)
    t.read_count = 0
    with pytest.raises(mpsnn.MPSTemporaryImageError, match="reached 0"):
        t.read_count = 2
    assert mpsnn.MPSImageBatchIncrementReadCount([t, t], 1) == 1


def test_bfloat16_images_and_graphs(device, rng):
    """bfloat16 (mpsnn's own format, raw value 100): stored as the upper half of a float32, rounded
    to nearest even; NumPy sees it through ml_dtypes (an optional extra)."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    bf16 = mpsnn.MPSImageFeatureChannelFormat.bfloat16
    assert int(bf16) == 100
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32) * 3
    relu = mpsnn.MPSNNGraph(device, mpsnn.MPSCNNNeuronReLUNode(source=mpsnn.MPSNNImageNode()).result_image)
    relu.format = bf16
    y = relu.run([x])
    assert y.feature_channel_format == bf16 and y.precision == 8 and y.pixel_size == 2 * 5
    a = y.numpy()
    assert a.dtype == ml_dtypes.bfloat16 and a.shape == x.shape
    # ReLU commutes with rounding: the result is the bfloat16 rounding of the float64 reference.
    np.testing.assert_array_equal(a.astype(np.float64), np.maximum(x.astype(np.float64), 0).astype(ml_dtypes.bfloat16).astype(np.float64))
    tanh = mpsnn.MPSNNGraph(device, mpsnn.MPSCNNNeuronTanHNode(source=mpsnn.MPSNNImageNode()).result_image)
    tanh.format = bf16
    assert_close(tanh.run([x]).numpy(), np.tanh(x.astype(np.float64)), "elementwise")
    # bfloat16 arrays in and out (copies on GPUs, views on the CPU).
    img = mpsnn.MPSImage.from_numpy(a, device=device)
    assert img.feature_channel_format == bf16
    np.testing.assert_array_equal(img.numpy().astype(np.float32), a.astype(np.float32))
    buf = np.zeros((3, 4, 5), ml_dtypes.bfloat16)
    img.read_bytes(buf, mpsnn.MPSDataLayout.height_x_width_x_feature_channels, image_index=1)
    np.testing.assert_array_equal(buf.astype(np.float32), a[1].astype(np.float32))
    with pytest.raises(mpsnn.DTypeError, match="dtype float16; the image stores bfloat16"):
        img.read_bytes(np.zeros((3, 4, 5), np.float16), mpsnn.MPSDataLayout.height_x_width_x_feature_channels)
