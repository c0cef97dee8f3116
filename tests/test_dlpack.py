"""DLPack in and out of MPSImage: zero-copy import of host tensors (MPSImage.from_dlpack and graph
inputs) and export (torch.from_dlpack(image), np.from_dlpack(image)), with typed errors for what
cannot be wrapped without a copy."""

from __future__ import annotations

import numpy as np
import pytest

import mpsnn


class Producer:
    """A minimal DLPack producer that is not a NumPy array (the protocol path, not the array path)."""

    def __init__(self, array, device=(1, 0)):
        self.array = array
        self.device = device

    def __dlpack__(self, **kwargs):
        return self.array.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self.device


def host_values(image, device):
    """The image's values as a NumPy array: NumPy's DLPack import (a view of host images; a host
    copy of device images, which NumPy must ask for: dl_device=(1, 0), copy=True)."""
    if device.backend == "cpu":
        return np.from_dlpack(image)
    return np.from_dlpack(image, device="cpu", copy=True)


def tanh_graph(device):
    x = mpsnn.MPSNNImageNode(handle=None)
    return mpsnn.MPSNNGraph(device, result_image=mpsnn.MPSCNNNeuronTanHNode(x).result_image)


def test_from_dlpack_shares_memory(device, rng):
    a = rng.standard_normal((2, 5, 7, 3)).astype(np.float32)
    img = mpsnn.MPSImage.from_dlpack(Producer(a))
    assert (img.number_of_images, img.height, img.width, img.feature_channels) == (2, 5, 7, 3)
    img.numpy()[1, 4, 6, 2] = 42.0
    assert a[1, 4, 6, 2] == 42.0


@pytest.mark.parametrize("dtype,fmt", [(np.float16, "float16"), (np.uint8, "unorm8"), (np.uint16, "unorm16")])
def test_from_dlpack_formats(dtype, fmt, device):
    img = mpsnn.MPSImage.from_dlpack(Producer(np.zeros((1, 2, 3, 4), dtype)))
    assert img.feature_channel_format == getattr(mpsnn.MPSImageFeatureChannelFormat, fmt)


def test_graph_accepts_dlpack_inputs_and_exports_results(device, rng):
    a = rng.standard_normal((3, 4, 5, 6)).astype(np.float32)
    g = tanh_graph(device)
    g.format = mpsnn.MPSImageFeatureChannelFormat.float32
    y = g.run([Producer(a)])
    out = host_values(y, device)
    np.testing.assert_allclose(out, np.tanh(a), rtol=1e-6, atol=1e-7)
    if device.backend == "cpu":
        assert np.shares_memory(out, y.numpy())
        assert y.__dlpack_device__() == (1, 0)
    else:
        assert y.__dlpack_device__() == (2, int(device.registry_id.split(":")[1]))


def test_export_keeps_image_alive(device, rng):
    a = rng.standard_normal((1, 3, 3, 4)).astype(np.float32)
    g = tanh_graph(device)
    g.format = mpsnn.MPSImageFeatureChannelFormat.float32
    out = host_values(g.run([a]), device)  # the image has no other reference
    np.testing.assert_allclose(out, np.tanh(a), rtol=1e-6, atol=1e-7)


def test_export_of_a_channel_slice_view(device, rng):
    a = rng.standard_normal((1, 2, 3, 8)).astype(np.float32)
    view = mpsnn.MPSImage.from_numpy(a, device=device).sub_image(with_feature_channel_range=(4, 4))
    np.testing.assert_array_equal(host_values(view, device), a[..., 4:8])


def test_device_tensor_is_refused():
    cpu = mpsnn.MTLDevice("cpu")
    with pytest.raises(mpsnn.UnsupportedError, match=r"\[MPSImage.from_dlpack\] tensor is on DLPack device type 2"):
        mpsnn.MPSImage.from_dlpack(Producer(np.zeros((1, 1, 1, 1), np.float32), device=(2, 0)), device=cpu)
    with pytest.raises(mpsnn.UnsupportedError, match=r"\[MPSNNGraph source image\] tensor is on DLPack device"):
        tanh_graph(cpu).run([Producer(np.zeros((1, 1, 1, 1), np.float32), device=(2, 0))])
    # Memory of a device type no device of this build has (ROCm, 10).
    with pytest.raises(mpsnn.UnsupportedError, match="no device of this build has that memory"):
        mpsnn.MPSImage.from_dlpack(Producer(np.zeros((1, 1, 1, 1), np.float32), device=(10, 0)))


@pytest.mark.parametrize("array,error,message", [
    (np.zeros((1, 2, 3, 4), np.float64), mpsnn.DTypeError, "dtype float64"),
    (np.zeros((1, 4, 3, 2), np.float32).transpose(0, 3, 2, 1), mpsnn.DTypeError, r"tensor is not C-contiguous in \(N, H, W, C\) order"),
    (np.zeros((2, 3, 4), np.float32), mpsnn.ShapeError, "3 dimensions; expected 4"),
], ids=["float64", "strided", "3d"])
def test_from_dlpack_bad_tensors(array, error, message, device):
    with pytest.raises(error, match=message):
        mpsnn.MPSImage.from_dlpack(Producer(array))


def test_not_a_tensor(device):
    with pytest.raises(mpsnn.DTypeError, match="does not implement the DLPack protocol"):
        mpsnn.MPSImage.from_dlpack(object())
    with pytest.raises(mpsnn.DTypeError, match="expected an MPSImage, a NumPy array or a DLPack tensor"):
        tanh_graph(device).run([[1.0, 2.0]])


def test_torch_round_trip_without_copies(device):
    torch = pytest.importorskip("torch")
    t = torch.randn(2, 6, 5, 3)                                   # N, C, H, W
    nhwc = t.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)   # a C-contiguous view
    g = tanh_graph(device)
    g.format = mpsnn.MPSImageFeatureChannelFormat.float32
    y = g.run([nhwc])
    out = torch.from_dlpack(y)
    torch.testing.assert_close(out.cpu(), torch.tanh(nhwc))
    img = mpsnn.MPSImage.from_dlpack(nhwc)
    assert img.numpy().ctypes.data == nhwc.data_ptr()
    assert torch.from_dlpack(img).data_ptr() == nhwc.data_ptr()
