"""Images give their values to NumPy (__array__, __getitem__), CPU reads of encoded results wait for
their command buffer or refuse, and MPSImage(texture=, feature_channels=) aliases an MTLTexture."""

import threading
import time

import numpy as np
import pytest

import mpsnn
from conftest import conv_source
from mpsnn import MPSDataLayout, MPSImage, MPSImageDescriptor, MPSImageFeatureChannelFormat as F, MPSNNImageNode

HWC = MPSDataLayout.HeightxWidthxFeatureChannels
NUMPY2 = int(np.__version__.split(".")[0]) >= 2


def conv_graph(device, rng, cin=3, cout=4, export=False):
    ds, _, _ = conv_source(cin, cout, 3, 3, rng)
    conv = mpsnn.MPSCNNConvolutionNode(source=MPSNNImageNode(), weights=ds)
    conv.result_image.export_from_graph = export
    if export:
        conv.result_image.image_allocator = MPSImage.default_allocator()  # encode exports temporaries otherwise
    relu = mpsnn.MPSCNNNeuronReLUNode(source=conv.result_image)
    return mpsnn.MPSNNGraph(device, relu.result_image)


# ---- __array__ / __getitem__ -------------------------------------------------------------------
def test_asarray_array_and_argmax_see_the_values(rng):
    a = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    img = MPSImage.from_numpy(a)
    view = np.asarray(img)
    assert view.shape == (2, 3, 4, 5) and view.dtype == np.float32
    assert np.shares_memory(view, a)
    copy = np.array(img)
    np.testing.assert_array_equal(copy, a)
    assert not np.shares_memory(copy, a)
    np.testing.assert_array_equal(np.argmax(img, axis=-1), np.argmax(a, axis=-1))
    assert np.argmax(img, axis=-1).shape == (2, 3, 4)
    np.testing.assert_array_equal(np.sum(img, axis=(1, 2)), a.sum(axis=(1, 2)))


def test_array_protocol_copy_semantics(rng):
    a = rng.standard_normal((1, 2, 2, 4)).astype(np.float32)
    img = MPSImage.from_numpy(a)
    assert np.shares_memory(img.__array__(), a)
    assert np.shares_memory(img.__array__(copy=False), a)
    assert np.shares_memory(img.__array__(np.float32, copy=None), a)
    assert not np.shares_memory(img.__array__(copy=True), a)
    half = img.__array__(np.float16)
    assert half.dtype == np.float16
    np.testing.assert_array_equal(half, a.astype(np.float16))
    with pytest.raises(ValueError, match="copy=False"):
        img.__array__(np.float16, copy=False)
    np.testing.assert_array_equal(np.asarray(img, dtype=np.float64), a.astype(np.float64))


@pytest.mark.skipif(not NUMPY2, reason="the copy keyword of np.asarray is NumPy 2")
def test_numpy2_copy_keyword(rng):
    a = rng.standard_normal((1, 2, 2, 4)).astype(np.float32)
    img = MPSImage.from_numpy(a)
    assert np.shares_memory(np.asarray(img, copy=False), a)
    assert not np.shares_memory(np.asarray(img, copy=True), a)
    with pytest.raises(ValueError):
        np.asarray(img, dtype=np.float16, copy=False)


def test_graph_result_argmax(device, rng):
    g = conv_graph(device, rng)
    x = rng.standard_normal((2, 6, 6, 3)).astype(np.float32)
    y = g.run([x])
    np.testing.assert_array_equal(np.argmax(y, axis=-1), np.argmax(y.numpy(), axis=-1))
    assert np.asarray(y).max() > 0  # the values, not a 0-d object array


def test_getitem_is_numpy_indexing(rng):
    a = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    img = MPSImage.from_numpy(a)
    np.testing.assert_array_equal(img[1], a[1])
    np.testing.assert_array_equal(img[0, :, 1, 2:4], a[0, :, 1, 2:4])
    assert img[1, 2, 3, 4] == a[1, 2, 3, 4]
    s = img[:, 1:]
    assert np.shares_memory(s, a)
    with pytest.raises(IndexError):
        img[2]


def test_temporary_images_refuse_numpy_protocols(device):
    cb = device.make_command_queue().make_command_buffer()
    t = mpsnn.MPSTemporaryImage(cb, MPSImageDescriptor(F.float32, 2, 2, 4))
    with pytest.raises(mpsnn.MPSTemporaryImageError):
        np.asarray(t)
    with pytest.raises(mpsnn.MPSTemporaryImageError):
        t[0]
    with pytest.raises(mpsnn.MPSTemporaryImageError):
        t.numpy()


# ---- reads of encoded results ------------------------------------------------------------------
def test_read_before_commit_raises_then_commit_waits(device, rng):
    g = conv_graph(device, rng)
    x = rng.standard_normal((2, 7, 5, 3)).astype(np.float32)
    expected = g.run([x]).numpy().copy()
    cb = device.make_command_queue().make_command_buffer()
    cb.label = "held back"
    y = g.encode(cb, [x])
    readers = [
        lambda: y.numpy(),
        lambda: np.asarray(y),
        lambda: np.array(y),
        lambda: y[0],
        lambda: y.read_bytes(np.empty((7, 5, 4), np.float32), HWC),
        lambda: y.write_bytes(np.zeros((7, 5, 4), np.float32), HWC),
        lambda: np.from_dlpack(y),
        lambda: y.batch_representation()[1].numpy(),
    ]
    for read in readers:
        with pytest.raises(mpsnn.MPSGraphError, match=r"command buffer 'held back'.*not_enqueued \(never committed\)"
                                                      r".*commit\(\)"):
            read()
    assert int(cb.status) == 0  # not_enqueued
    cb.commit()
    np.testing.assert_array_equal(y.numpy(), expected)  # waits for the worker thread
    np.testing.assert_array_equal(np.asarray(y), expected)
    out = np.empty((7, 5, 4), np.float32)
    y.read_bytes(out, HWC, image_index=1)
    np.testing.assert_array_equal(out, expected[1])


def test_torch_dlpack_read_waits_or_raises(device, rng):
    torch = pytest.importorskip("torch")
    g = conv_graph(device, rng)
    x = rng.standard_normal((1, 5, 5, 3)).astype(np.float32)
    expected = g.run([x]).numpy().copy()
    cb = device.make_command_queue().make_command_buffer()
    y = g.encode(cb, [x])
    with pytest.raises(mpsnn.MPSGraphError, match="never committed"):
        torch.from_dlpack(y)
    cb.commit()
    np.testing.assert_array_equal(torch.from_dlpack(y).numpy(), expected)


def _encode_behind_a_sleeper(device, rng, delay):
    """Encodes a graph run behind a buffer whose completion handler sleeps `delay` seconds (the
    queue runs buffers in order), commits both; returns (expected values, result image, buffer)."""
    g = conv_graph(device, rng)
    x = rng.standard_normal((1, 6, 6, 3)).astype(np.float32)
    expected = g.run([x]).numpy().copy()
    queue = device.make_command_queue()
    first = queue.make_command_buffer()
    first.add_completed_handler(lambda c: time.sleep(delay))
    cb = queue.make_command_buffer()
    y = g.encode(cb, [x])
    first.commit()
    cb.commit()
    return expected, y, cb


def test_read_waits_for_a_committed_buffer(device, rng):
    """A buffer ahead in the queue sleeps in its completion handler, so the graph's buffer runs
    only after it: the read must block until the graph's work is done, then see its values."""
    expected, y, cb = _encode_behind_a_sleeper(device, rng, 0.4)
    t0 = time.monotonic()
    values = y.numpy()
    waited = time.monotonic() - t0
    assert waited >= 0.3
    assert int(cb.status) == 4  # completed
    np.testing.assert_array_equal(values, expected)


def test_read_inside_the_completion_handler(device, rng):
    """The producing buffer's own completion handler may read the result (no deadlock)."""
    g = conv_graph(device, rng)
    x = rng.standard_normal((1, 5, 5, 3)).astype(np.float32)
    expected = g.run([x]).numpy().copy()
    cb = device.make_command_queue().make_command_buffer()
    y = g.encode(cb, [x])
    got = []
    cb.add_completed_handler(lambda c: got.append(np.array(y)))
    cb.commit()
    cb.wait_until_completed()
    np.testing.assert_array_equal(got[0], expected)


def test_reads_from_other_threads_wait(device, rng):
    expected, y, _ = _encode_behind_a_sleeper(device, rng, 0.2)
    results = []
    threads = [threading.Thread(target=lambda: results.append(np.array(y))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    for r in results:
        np.testing.assert_array_equal(r, expected)


def test_intermediates_and_batches_are_guarded(device, rng):
    g = conv_graph(device, rng, export=True)
    x = rng.standard_normal((1, 5, 5, 3)).astype(np.float32)
    inter_expected = []
    g.run([x], intermediate_images=inter_expected)
    cb = device.make_command_queue().make_command_buffer()
    inter = []
    g.encode(cb, [x], intermediate_images=inter)
    assert len(inter) == 1
    with pytest.raises(mpsnn.MPSGraphError, match="never committed"):
        inter[0].numpy()
    batch = g.encode_batch(cb, [[MPSImage.from_numpy(x), MPSImage.from_numpy(x)]])
    with pytest.raises(mpsnn.MPSGraphError, match="never committed"):
        batch[1].numpy()
    cb.commit()
    np.testing.assert_array_equal(inter[0].numpy(), inter_expected[0].numpy())
    np.testing.assert_array_equal(batch[0].numpy(), batch[1].numpy())


def test_buffer_released_without_commit(device, rng):
    g = conv_graph(device, rng)
    cb = device.make_command_queue().make_command_buffer()
    y = g.encode(cb, [rng.standard_normal((1, 5, 5, 3)).astype(np.float32)])
    del cb
    import gc

    gc.collect()
    with pytest.raises(mpsnn.MPSGraphError, match="released without being committed"):
        y.numpy()


def test_commit_and_continue_makes_results_readable(device, rng):
    g = conv_graph(device, rng)
    x = rng.standard_normal((1, 5, 5, 3)).astype(np.float32)
    expected = g.run([x]).numpy().copy()
    cb = device.make_command_queue().make_command_buffer()
    y = g.encode(cb, [x])
    cb.commit_and_continue()
    np.testing.assert_array_equal(y.numpy(), expected)
    y2 = g.encode(cb, [x])
    with pytest.raises(mpsnn.MPSGraphError, match="never committed"):
        y2.numpy()
    cb.commit()
    np.testing.assert_array_equal(y2.numpy(), expected)


def test_execute_async_result_waits(device, rng):
    g = conv_graph(device, rng)
    x = rng.standard_normal((1, 5, 5, 3)).astype(np.float32)
    expected = g.run([x]).numpy().copy()
    done = threading.Event()
    y = g.execute_async([x], lambda result, error: done.set())
    np.testing.assert_array_equal(y.numpy(), expected)
    assert done.wait(5)


# ---- MTLTexture ---------------------------------------------------------------------------------
def test_texture_enums():
    U = mpsnn.MTLTextureUsage
    assert (U.shader_read, U.shader_write, U.render_target, U.pixel_format_view) == (1, 2, 4, 16)
    assert U.shader_read | U.shader_write == 3
    P = mpsnn.MTLPixelFormat
    assert (P.r8_unorm, P.rgba8_unorm, P.rgba16_float, P.rgba32_float, P.r32_float) == (10, 70, 115, 125, 55)
    assert (mpsnn.MTLTextureType.type2d, mpsnn.MTLTextureType.type2d_array) == (2, 3)


def test_image_aliases_a_numpy_texture(device, rng):
    pixels = rng.integers(0, 256, (6, 7, 4), dtype=np.uint8)  # an RGBA photo
    tex = mpsnn.MTLTexture.from_numpy(pixels)
    assert (tex.width, tex.height, tex.array_length) == (7, 6, 1)
    assert tex.pixel_format == mpsnn.MTLPixelFormat.rgba8_unorm
    assert tex.texture_type == mpsnn.MTLTextureType.type2d
    assert np.shares_memory(tex.numpy(), pixels)
    img = MPSImage(texture=tex, feature_channels=3)
    assert (img.number_of_images, img.height, img.width, img.feature_channels) == (1, 6, 7, 3)
    assert img.feature_channel_format == F.unorm8
    assert img.mtl_texture is tex
    assert img.resource_size() == 0
    view = img.numpy()
    assert np.shares_memory(view, pixels)
    np.testing.assert_array_equal(view[0], pixels[..., :3])
    pixels[2, 3, 1] = 17
    assert img[0, 2, 3, 1] == 17
    out = np.empty((6, 7, 3), np.uint8)
    img.read_bytes(out, HWC)
    np.testing.assert_array_equal(out, pixels[..., :3])


def test_texture_image_as_graph_input(device, rng):
    pixels = rng.standard_normal((2, 5, 6, 4)).astype(np.float32)  # a type2d_array of two slices
    tex = mpsnn.MTLTexture.from_numpy(pixels)
    assert tex.texture_type == mpsnn.MTLTextureType.type2d_array and tex.array_length == 2
    img = MPSImage(texture=tex, feature_channels=3)
    assert img.number_of_images == 2
    g = conv_graph(device, rng)
    y = g.run([img]).numpy()
    np.testing.assert_array_equal(y, g.run([np.ascontiguousarray(pixels[..., :3])]).numpy())


def test_device_make_texture(device):
    d = mpsnn.MTLTextureDescriptor.texture2d_descriptor(pixel_format=mpsnn.MTLPixelFormat.rgba32_float, width=4,
                                                         height=3, mipmapped=False)
    assert d.usage == mpsnn.MTLTextureUsage.shader_read
    d.usage = mpsnn.MTLTextureUsage.shader_read | mpsnn.MTLTextureUsage.shader_write
    tex = device.make_texture(descriptor=d)
    assert tex.usage == 3 and tex.device is device
    assert tex.numpy().shape == (3, 4, 4) and not tex.numpy().any()
    img = MPSImage(texture=tex, feature_channels=4)
    img.write_bytes(np.full((3, 4, 4), 2.5, np.float32), HWC)
    assert (tex.numpy() == 2.5).all()
    assert img.usage == 3
    arr = mpsnn.MTLTextureDescriptor(pixel_format=mpsnn.MTLPixelFormat.r16_float, width=2, height=2,
                                     texture_type=mpsnn.MTLTextureType.type2d_array, array_length=3)
    img = MPSImage(texture=device.make_texture(arr), feature_channels=1)
    assert (img.number_of_images, img.feature_channels, img.feature_channel_format) == (3, 1, F.float16)


def test_texture_errors(device):
    tex = mpsnn.MTLTexture.from_numpy(np.zeros((2, 2, 4), np.float32))
    with pytest.raises(mpsnn.UnsupportedError, match="feature_channels 8 exceed the 4 channel"):
        MPSImage(texture=tex, feature_channels=8)
    with pytest.raises(mpsnn.ShapeError, match="feature_channels is 0"):
        MPSImage(texture=tex, feature_channels=0)
    with pytest.raises(mpsnn.DTypeError, match="float64"):
        mpsnn.MTLTexture.from_numpy(np.zeros((2, 2, 4)))
    with pytest.raises(mpsnn.ShapeError, match="3 channels per pixel"):
        mpsnn.MTLTexture.from_numpy(np.zeros((2, 2, 3), np.float32))
    with pytest.raises(mpsnn.DTypeError, match="C-contiguous"):
        mpsnn.MTLTexture.from_numpy(np.zeros((2, 4, 4), np.float32)[:, ::2])
    with pytest.raises(mpsnn.UnsupportedError, match="mipmapped"):
        mpsnn.MTLTextureDescriptor.texture2d_descriptor(pixel_format=mpsnn.MTLPixelFormat.r8_unorm, width=2, height=2,
                                                        mipmapped=True)
    bad = mpsnn.MTLTextureDescriptor(pixel_format=mpsnn.MTLPixelFormat.rgba8_unorm, width=2, height=2, array_length=2)
    with pytest.raises(mpsnn.ShapeError, match="type2d_array"):
        device.make_texture(bad)


def test_run_on_an_encoded_result_waits_or_raises(device, rng):
    """graph.run reads its sources at once: a source that an encode writes must be committed."""
    g = conv_graph(device, rng, cin=3, cout=3)
    x = rng.standard_normal((1, 6, 6, 3)).astype(np.float32)
    expected = g.run([g.run([x])]).numpy().copy()
    cb = device.make_command_queue().make_command_buffer()
    y = g.encode(cb, [x])
    with pytest.raises(mpsnn.MPSGraphError, match="never committed"):
        g.run([y])
    cb.commit()
    np.testing.assert_array_equal(g.run([y]).numpy(), expected)
