"""The CUDA backend: what a CUDA-enabled build does on a machine without a GPU (imports, runs on the
CPU, says why CUDA is unavailable), and on a GPU: device memory at the host boundary (copies),
command buffers completing after the device finished, many threads, typed errors. The op, network
and graph suites run on CUDA too, through the `device` fixture of conftest.py."""

from __future__ import annotations

import os
import re
import threading

import numpy as np
import pytest

import mpsnn
from conftest import assert_close

HAS_CUDA_BACKEND = "cuda" in mpsnn.available_backends()
CUDA_DEVICES = [d for d in mpsnn.MTLCopyAllDevices() if d.backend == "cuda"]

needs_backend = pytest.mark.skipif(not HAS_CUDA_BACKEND, reason="this build has no CUDA backend (MPSNN_CUDA=OFF)")
needs_gpu = pytest.mark.skipif(not CUDA_DEVICES, reason="no CUDA GPU on this machine")


@needs_backend
@pytest.mark.skipif(bool(CUDA_DEVICES), reason="this machine has a GPU")
def test_without_a_gpu_the_build_runs_on_the_cpu_and_says_why():
    assert [d.backend for d in mpsnn.MTLCopyAllDevices()] == ["cpu"]
    assert mpsnn.MTLCreateSystemDefaultDevice().backend == "cpu"
    with pytest.raises(mpsnn.UnsupportedError, match=r"backend 'cuda' has 0 device\(s\) \(.+\)"):
        mpsnn.MTLDevice("cuda")


def _conv_graph(device, rng, cin=5, cout=7, k=3, neuron=True):
    d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=k, kernel_height=k, input_feature_channels=cin,
                                          output_feature_channels=cout)
    w = rng.standard_normal((cout, k, k, cin)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    x = mpsnn.MPSNNImageNode()
    conv = mpsnn.MPSCNNConvolutionNode(source=x, weights=mpsnn.ArrayConvolutionDataSource(d, w, b))
    out = mpsnn.MPSCNNNeuronReLUNode(source=conv.result_image) if neuron else conv
    return mpsnn.MPSNNGraph(device, out.result_image)


@pytest.fixture(scope="module")
def gpu():
    if not CUDA_DEVICES:
        pytest.skip("no CUDA GPU on this machine")
    return CUDA_DEVICES[0]


@pytest.mark.skipif(bool(os.environ.get("MPSNN_DEVICE")), reason="MPSNN_DEVICE picks the default device")
@pytest.mark.skipif("metal" in mpsnn.available_backends(), reason="a Mac: test_metal.py checks the default device")
def test_the_default_device_is_the_gpu_when_there_is_one():
    default = mpsnn.MTLCreateSystemDefaultDevice()
    assert default is (CUDA_DEVICES[0] if CUDA_DEVICES else mpsnn.MTLDevice("cpu"))


@needs_gpu
def test_results_match_the_cpu(gpu, rng):
    x = rng.standard_normal((3, 11, 13, 5)).astype(np.float32)
    cpu = _conv_graph(mpsnn.MTLDevice("cpu"), np.random.default_rng(7)).run([x]).numpy()
    out = _conv_graph(gpu, np.random.default_rng(7)).run([x])
    assert out.device is gpu
    assert_close(out.numpy(), cpu, "reduction", k=45)


@needs_gpu
def test_host_boundary_copies(gpu, rng):
    x = rng.standard_normal((2, 4, 6, 3)).astype(np.float32)
    img = mpsnn.MPSImage.from_numpy(x, device=gpu)  # a copy into device memory
    x_before = x.copy()
    x[...] = 7
    np.testing.assert_array_equal(img.numpy(), x_before)
    g = mpsnn.MPSNNGraph(gpu, mpsnn.MPSCNNNeuronLinearNode(source=mpsnn.MPSNNImageNode(), a=2.0, b=1.0).result_image)
    g.format = mpsnn.MPSImageFeatureChannelFormat.float32  # exact values (the CUDA default is float16)
    y = g.run([img])
    a = y.numpy()
    np.testing.assert_array_equal(a, 2 * x_before + 1)
    a[...] = 0  # numpy() of device memory is a copy: the image keeps its values
    np.testing.assert_array_equal(y.numpy(), 2 * x_before + 1)
    buf = np.zeros((4, 6, 3), np.float32)
    y.read_bytes(buf, mpsnn.MPSDataLayout.height_x_width_x_feature_channels, image_index=1)
    np.testing.assert_array_equal(buf, 2 * x_before[1] + 1)
    part = np.full((4, 6, 3), 5.0, np.float32)
    y.write_bytes(part, mpsnn.MPSDataLayout.height_x_width_x_feature_channels, image_index=1)
    after = y.numpy()
    np.testing.assert_array_equal(after[1], part)
    np.testing.assert_array_equal(after[0], 2 * x_before[0] + 1)


@needs_gpu
def test_command_buffers_complete_after_the_device(gpu, rng):
    g = _conv_graph(gpu, np.random.default_rng(3))
    x = rng.standard_normal((4, 16, 16, 5)).astype(np.float32)
    expected = g.run([x]).numpy()
    queue = gpu.make_command_queue()
    done = []
    cbs, outs = [], []
    for _ in range(8):
        cb = queue.make_command_buffer()
        cb.add_completed_handler(lambda c: done.append(c.status))
        outs.append(g.encode(cb, [x]))
        cb.commit()
        cbs.append(cb)
    for cb in cbs:
        cb.wait_until_completed()
    assert len(done) == 8
    for o in outs:
        np.testing.assert_array_equal(o.numpy(), expected)


@needs_gpu
def test_many_threads_one_graph(gpu, rng):
    g = _conv_graph(gpu, np.random.default_rng(5))
    inputs = [rng.standard_normal((2, 9, 9, 5)).astype(np.float32) for _ in range(6)]
    expected = [g.run([x]).numpy() for x in inputs]
    errors = []

    def work(i):
        try:
            for _ in range(10):
                np.testing.assert_array_equal(g.run([inputs[i]]).numpy(), expected[i])
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and not any(t.is_alive() for t in threads)


@needs_gpu
def test_out_of_memory_is_a_typed_error_and_the_device_stays_usable(gpu, rng):
    huge = mpsnn.MPSImageDescriptor(channel_format=mpsnn.MPSImageFeatureChannelFormat.float32, width=1 << 16,
                                    height=1 << 16, feature_channels=64, number_of_images=16)
    with pytest.raises(mpsnn.BackendError, match="out of device memory"):
        mpsnn.MPSImage(gpu, huge).numpy()
    x = rng.standard_normal((1, 5, 5, 5)).astype(np.float32)
    assert _conv_graph(gpu, np.random.default_rng(1)).run([x]).numpy().shape == (1, 5, 5, 7)


@needs_gpu
def test_an_image_of_another_device_is_refused(gpu, rng):
    g = _conv_graph(gpu, np.random.default_rng(1))
    cpu_image = mpsnn.MPSImage.from_numpy(rng.standard_normal((1, 5, 5, 5)).astype(np.float32), device=mpsnn.MTLDevice("cpu"))
    with pytest.raises(mpsnn.MPSGraphError, match="device"):
        g.run([cpu_image])


def _small_network(device, seed, fmt):
    """conv(5->8, 3x3) + ReLU -> max pool 2x2 -> conv(8->6) with a residual-free 1x1 -> softmax, in `fmt`."""
    rng = np.random.default_rng(seed)
    x = mpsnn.MPSNNImageNode()

    def conv(src, cin, cout, k):
        d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=k, kernel_height=k, input_feature_channels=cin,
                                              output_feature_channels=cout)
        w = (rng.standard_normal((cout, k, k, cin)) / np.sqrt(k * k * cin)).astype(np.float32)
        return mpsnn.MPSCNNConvolutionNode(source=src, weights=mpsnn.ArrayConvolutionDataSource(
            d, w, rng.standard_normal(cout).astype(np.float32)))

    c1 = conv(x, 5, 8, 3)
    r1 = mpsnn.MPSCNNNeuronReLUNode(source=c1.result_image)
    p1 = mpsnn.MPSCNNPoolingMaxNode(source=r1.result_image, filter_size=2)
    c2 = conv(p1.result_image, 8, 6, 1)
    s = mpsnn.MPSCNNSoftMaxNode(source=c2.result_image)
    g = mpsnn.MPSNNGraph(device, s.result_image)
    g.format = fmt
    return g


@needs_gpu
@pytest.mark.parametrize("batch", [1, 3])
def test_float16_graphs_compute_on_float16_activations(gpu, rng, batch):
    f16 = mpsnn.MPSImageFeatureChannelFormat.float16
    x = rng.standard_normal((batch, 13, 11, 5)).astype(np.float32)
    expected = _small_network(mpsnn.MTLDevice("cpu"), 11, mpsnn.MPSImageFeatureChannelFormat.float32).run([x]).numpy()
    g = _small_network(gpu, 11, f16)
    plan = g.plan_description([x])
    # Every intermediate value of the plan is float16 (the float32 source is converted once).
    assert plan.count(" float16") >= 5 and "[convert source image]" in plan, plan
    y = g.run([x]).numpy()
    assert y.dtype == np.float16 and y.shape == expected.shape
    assert_close(y, expected, "reduction", "float16")
    # The same graph in float32 on the GPU keeps float32 activations and float32 accuracy.
    g32 = _small_network(gpu, 11, mpsnn.MPSImageFeatureChannelFormat.float32)
    assert " float16" not in g32.plan_description([x])
    assert_close(g32.run([x]).numpy(), expected, "reduction", k=72)


@needs_gpu
def test_float16_source_images_are_read_in_place(gpu, rng):
    f16 = mpsnn.MPSImageFeatureChannelFormat.float16
    x = rng.standard_normal((2, 9, 9, 5)).astype(np.float16)
    img = mpsnn.MPSImage.from_numpy(x, device=gpu)
    g = _small_network(gpu, 4, f16)
    assert "[convert source image]" not in g.plan_description([img])
    expected = _small_network(mpsnn.MTLDevice("cpu"), 4, mpsnn.MPSImageFeatureChannelFormat.float32).run(
        [x.astype(np.float32)]).numpy()
    assert_close(g.run([img]).numpy(), expected, "reduction", "float16")


@needs_gpu
def test_the_default_format_is_float16_on_the_gpu_and_float32_on_the_cpu(gpu, rng):
    def graph(device):
        return mpsnn.MPSNNGraph(device, mpsnn.MPSCNNNeuronReLUNode(source=mpsnn.MPSNNImageNode()).result_image)
    assert graph(gpu).format == mpsnn.MPSImageFeatureChannelFormat.float16
    assert graph(mpsnn.MTLDevice("cpu")).format == mpsnn.MPSImageFeatureChannelFormat.float32
    x = rng.standard_normal((1, 4, 4, 3)).astype(np.float32)
    y = graph(gpu).run([x]).numpy()
    assert y.dtype == np.float16
    np.testing.assert_array_equal(y, np.maximum(x, 0).astype(np.float16))  # ReLU commutes with rounding


def _replays(graph, images):
    m = re.search(r"replay: on \((\d+) runs recorded, (\d+) replayed\)", graph.plan_description(images))
    return (int(m[1]), int(m[2])) if m else None


@needs_gpu
@pytest.mark.parametrize("fmt", ["float16", "float32"])
def test_replayed_runs_give_the_plain_run_bit_for_bit(gpu, rng, fmt):
    """The first run of a context with given memory is plain, the second records a CUDA graph and
    later ones replay it: all give the same bits (the same kernels, arguments and engines)."""
    f = getattr(mpsnn.MPSImageFeatureChannelFormat, fmt)
    x = rng.standard_normal((2, 17, 15, 5)).astype(np.float32)
    img = mpsnn.MPSImage.from_numpy(x.astype(np.float16) if fmt == "float16" else x, device=gpu)
    g = _small_network(gpu, 21, f)
    assert _replays(g, [img]) == (0, 0)
    # numpy() copies, and the result image is released before the next run: with the allocator's
    # cache, every run binds the same result memory.
    outs = [g.run([img]).numpy() for _ in range(6)]
    recorded, replayed = _replays(g, [img])
    assert recorded >= 1 and replayed >= 3, (recorded, replayed)
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])
    expected = _small_network(mpsnn.MTLDevice("cpu"), 21, mpsnn.MPSImageFeatureChannelFormat.float32).run(
        [x]).numpy()
    assert_close(outs[0], expected, "reduction", fmt, k=72)


@needs_gpu
def test_replay_through_command_buffers_and_other_bindings(gpu, rng):
    """Encoded runs (the queue's stream) replay too; a run with other memory runs plainly and
    gives the same values."""
    g = _small_network(gpu, 5, mpsnn.MPSImageFeatureChannelFormat.float16)
    xs = [mpsnn.MPSImage.from_numpy(rng.standard_normal((3, 12, 12, 5)).astype(np.float16), device=gpu)
          for _ in range(2)]
    plain = [g.run([x]).numpy() for x in xs]  # first runs with these bindings: plain
    queue = gpu.make_command_queue()
    for k in range(8):
        cb = queue.make_command_buffer()
        out = g.encode(cb, [xs[k % 2]])
        cb.commit()
        cb.wait_until_completed()
        np.testing.assert_array_equal(out.numpy(), plain[k % 2])
        del out
    assert _replays(g, xs[:1])[1] >= 1


@needs_gpu
def test_replay_sees_reloaded_parameters(gpu, rng):
    d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=3, kernel_height=3, input_feature_channels=4,
                                          output_feature_channels=6)
    w = rng.standard_normal((6, 3, 3, 4)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    conv = mpsnn.MPSCNNConvolutionNode(source=mpsnn.MPSNNImageNode(), weights=mpsnn.ArrayConvolutionDataSource(d, w, b))
    g = mpsnn.MPSNNGraph(gpu, conv.result_image)
    g.format = mpsnn.MPSImageFeatureChannelFormat.float32
    x = rng.standard_normal((1, 9, 9, 4)).astype(np.float32)
    img = mpsnn.MPSImage.from_numpy(x, device=gpu)
    cpu = mpsnn.MPSNNGraph(mpsnn.MTLDevice("cpu"), conv.result_image)
    for _ in range(4):
        y = g.run([img]).numpy()
    assert _replays(g, [img])[1] >= 1
    assert_close(y, cpu.run([x]).numpy(), "reduction", k=36)
    w[...] = rng.standard_normal(w.shape).astype(np.float32)  # the data source's array, in place
    b[...] = -1.0
    g.reload_from_data_sources()
    cpu.reload_from_data_sources()
    for _ in range(3):
        assert_close(g.run([img]).numpy(), cpu.run([x]).numpy(), "reduction", k=36)


@needs_gpu
def test_replay_can_be_switched_off(gpu, rng, monkeypatch):
    x = mpsnn.MPSImage.from_numpy(rng.standard_normal((1, 8, 8, 5)).astype(np.float16), device=gpu)
    monkeypatch.setenv("MPSNN_CUDA_GRAPHS", "0")
    g = _small_network(gpu, 2, mpsnn.MPSImageFeatureChannelFormat.float16)
    outs = [g.run([x]).numpy() for _ in range(3)]  # compiled without replay: stays so
    monkeypatch.delenv("MPSNN_CUDA_GRAPHS")
    outs += [g.run([x]).numpy() for _ in range(2)]
    assert _replays(g, [x]) is None and "replay" not in g.plan_description([x])
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])


# ---------------------------------------------------------------------------------------------
# DLPack with CUDA tensors: both ways without copies, ordered by streams.

def _torch_cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("PyTorch has no CUDA here")
    return torch


def _tanh_graph(device, fmt="float32"):
    g = mpsnn.MPSNNGraph(device, mpsnn.MPSCNNNeuronTanHNode(source=mpsnn.MPSNNImageNode()).result_image)
    g.format = getattr(mpsnn.MPSImageFeatureChannelFormat, fmt)
    return g


@needs_gpu
def test_dlpack_import_of_a_torch_cuda_tensor_shares_its_memory(gpu):
    torch = _torch_cuda()
    t = torch.randn(2, 6, 5, 3, device="cuda")                                    # N, C, H, W
    nhwc = t.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)    # a C-contiguous view
    img = mpsnn.MPSImage.from_dlpack(nhwc)
    assert img.device is gpu and img.__dlpack_device__() == (2, int(gpu.registry_id.split(":")[1]))
    assert (img.number_of_images, img.height, img.width, img.feature_channels) == (2, 5, 3, 6)
    assert torch.from_dlpack(img).data_ptr() == nhwc.data_ptr()                  # the same memory, both ways
    np.testing.assert_array_equal(img.numpy(), nhwc.cpu().numpy())               # numpy(): a host copy
    nhwc.mul_(2)                                                                  # seen through the image
    np.testing.assert_array_equal(img.numpy(), nhwc.cpu().numpy())
    # A graph input straight from the tensor, and the result back to torch without copies.
    y = _tanh_graph(gpu).run([nhwc])
    out = torch.from_dlpack(y)
    assert out.device.type == "cuda" and out.shape == nhwc.shape and out.dtype == torch.float32
    assert out.data_ptr() == torch.from_dlpack(y).data_ptr()
    assert_close(out.cpu().numpy(), np.tanh(nhwc.double().cpu().numpy()), "elementwise")
    out.fill_(0.5)                                                                # the image's own memory
    np.testing.assert_array_equal(y.numpy(), np.full(y.numpy().shape, 0.5, np.float32))


@needs_gpu
@pytest.mark.parametrize("dtype,fmt", [("float16", "float16"), ("bfloat16", "bfloat16"), ("uint8", "unorm8")])
def test_dlpack_cuda_formats(gpu, dtype, fmt):
    torch = _torch_cuda()
    t = torch.zeros(1, 2, 3, 4, dtype=getattr(torch, dtype), device="cuda")
    img = mpsnn.MPSImage.from_dlpack(t)
    assert img.feature_channel_format == getattr(mpsnn.MPSImageFeatureChannelFormat, fmt)
    back = torch.from_dlpack(img)
    assert back.dtype == t.dtype and back.data_ptr() == t.data_ptr()


@needs_gpu
def test_dlpack_cuda_bad_tensors(gpu):
    torch = _torch_cuda()
    with pytest.raises(mpsnn.DTypeError, match=r"not C-contiguous in \(N, H, W, C\) order"):
        mpsnn.MPSImage.from_dlpack(torch.zeros(1, 3, 4, 5, device="cuda").permute(0, 2, 3, 1))
    with pytest.raises(mpsnn.DTypeError, match="dtype float64"):
        mpsnn.MPSImage.from_dlpack(torch.zeros(1, 3, 4, 5, dtype=torch.float64, device="cuda"))
    with pytest.raises(mpsnn.ShapeError, match="3 dimensions"):
        mpsnn.MPSImage.from_dlpack(torch.zeros(3, 4, 5, device="cuda"))


@needs_gpu
def test_dlpack_import_waits_for_the_producers_stream(gpu):
    """The tensor is written on a busy PyTorch stream: the import must see the written values."""
    torch = _torch_cuda()
    g = _tanh_graph(gpu)
    side = torch.cuda.Stream()
    for value in (0.25, -0.5, 1.0):
        with torch.cuda.stream(side):
            t = torch.zeros(4, 64, 64, 8, device="cuda")
            torch.cuda._sleep(20_000_000)            # keeps the stream busy for milliseconds
            t.fill_(value)
            y = g.run([t])                           # __dlpack__(stream=ours) orders the fill first
        np.testing.assert_allclose(y.numpy(), np.tanh(np.float32(value)), rtol=1e-6)
        side.synchronize()


@needs_gpu
def test_dlpack_export_orders_the_consumer_stream_after_encoded_work(gpu, rng):
    """An encoded, committed, not yet completed run exported to torch: torch's stream waits for it
    (an event on our queue's stream), it does not read the memory early."""
    torch = _torch_cuda()
    g = _conv_graph(gpu, np.random.default_rng(2), cin=32, cout=32)
    g.format = mpsnn.MPSImageFeatureChannelFormat.float32
    x = mpsnn.MPSImage.from_numpy(rng.standard_normal((8, 128, 128, 32)).astype(np.float32), device=gpu)
    expected = g.run([x]).numpy()
    queue = gpu.make_command_queue()
    side = torch.cuda.Stream()
    for _ in range(3):
        cb = queue.make_command_buffer()
        out = g.encode(cb, [x])
        cb.commit()
        with torch.cuda.stream(side):
            t = torch.from_dlpack(out)               # no host wait: side waits for our stream
            copy = t.clone()
        side.synchronize()
        np.testing.assert_array_equal(copy.cpu().numpy(), expected)
        cb.wait_until_completed()


@needs_gpu
def test_exported_memory_is_not_reused_while_the_consumer_reads_it(gpu, rng):
    """torch lets go of an exported result while its stream still reads it; the next runs (which
    take freed blocks of the same size) must not overwrite it before that read is done."""
    torch = _torch_cuda()
    g = _tanh_graph(gpu)
    xs = [rng.standard_normal((4, 64, 64, 8)).astype(np.float32) for _ in range(2)]
    expected = np.tanh(xs[0])
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        t = torch.from_dlpack(g.run([xs[0]]))
        torch.cuda._sleep(50_000_000)                # the read below starts late
        snapshot = t.clone()
        del t                                        # the export is released (deferred to side)
    for _ in range(4):
        g.run([xs[1]])                               # results of the same size
    side.synchronize()
    assert_close(snapshot.cpu().numpy(), expected, "elementwise")


@needs_gpu
def test_dlpack_export_to_numpy_asks_for_a_host_copy(gpu, rng):
    x = rng.standard_normal((1, 3, 4, 5)).astype(np.float32)
    y = _tanh_graph(gpu).run([x])
    assert y.__dlpack_device__()[0] == 2
    with pytest.raises(BufferError, match="without a copy"):
        y.__dlpack__(dl_device=(1, 0), copy=False)
    host = np.from_dlpack(y, device="cpu", copy=True) if np.lib.NumpyVersion(np.__version__) >= "2.1.0" else y.numpy()
    assert_close(host, np.tanh(x), "elementwise")


@needs_gpu
def test_tensors_and_images_of_another_device_are_refused(gpu, rng):
    torch = _torch_cuda()
    cpu = mpsnn.MTLDevice("cpu")
    t = torch.zeros(1, 2, 2, 4, device="cuda")
    with pytest.raises(mpsnn.UnsupportedError, match=r"\[MPSNNGraph source image\] tensor is on DLPack device type 2"):
        _tanh_graph(cpu).run([t])
    with pytest.raises(mpsnn.UnsupportedError, match=r"\[MPSImage.from_dlpack\] tensor is on DLPack device type 2"):
        mpsnn.MPSImage.from_dlpack(t, device=cpu)
    gpu_image = mpsnn.MPSImage.from_numpy(np.zeros((1, 2, 2, 4), np.float32), device=gpu)
    with pytest.raises(mpsnn.MPSGraphError, match="device"):
        _tanh_graph(cpu).run([gpu_image])
    host = torch.zeros(1, 2, 2, 4)  # a host tensor into a GPU graph: copied at the host boundary
    assert _tanh_graph(gpu).run([host]).device is gpu


@needs_gpu
def test_out_of_memory_in_a_run_is_a_typed_error_and_the_next_run_works(gpu, rng):
    """A run whose images do not fit (a 96 GiB input and its float16 copies on a 141 GB GPU)."""
    big = mpsnn.MPSImageDescriptor(channel_format=mpsnn.MPSImageFeatureChannelFormat.float32, width=1 << 15,
                                   height=1 << 15, feature_channels=24, number_of_images=1)
    g = _tanh_graph(gpu, "float16")
    img = mpsnn.MPSImage(gpu, big)
    with pytest.raises(mpsnn.BackendError, match="out of device memory"):
        g.run([img]).numpy()
    del img
    x = rng.standard_normal((2, 5, 5, 3)).astype(np.float32)
    assert_close(g.run([x]).numpy(), np.tanh(x), "elementwise", "float16")
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():  # the process's CUDA context is fine for others too
        assert float(torch.ones(3, device="cuda").sum()) == 3.0


# ---------------------------------------------------------------------------------------------
# Formats: bfloat16 selectable, TF32 only when asked for.

@needs_gpu
def test_bfloat16_graphs_compute_on_bfloat16_activations(gpu, rng):
    bf16 = mpsnn.MPSImageFeatureChannelFormat.bfloat16
    x = rng.standard_normal((2, 13, 11, 5)).astype(np.float32)
    expected = _small_network(mpsnn.MTLDevice("cpu"), 11, mpsnn.MPSImageFeatureChannelFormat.float32).run([x]).numpy()
    g = _small_network(gpu, 11, bf16)
    plan = g.plan_description([x])
    assert plan.count(" bfloat16") >= 5 and " float16" not in plan, plan
    y = g.run([x])
    assert y.feature_channel_format == bf16
    torch = pytest.importorskip("torch")
    out = torch.from_dlpack(y)
    assert out.dtype == torch.bfloat16
    assert_close(out, expected, "reduction", "bfloat16", k=72)


@needs_gpu
def test_float32_convolutions_use_no_tf32_unless_asked(gpu, rng, monkeypatch):
    """K = 3*3*256 products: TF32 inputs (10 mantissa bits) miss the float32 tolerance by far."""
    cin, cout = 256, 64
    x = rng.standard_normal((2, 24, 24, cin)).astype(np.float32)
    d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=3, kernel_height=3, input_feature_channels=cin,
                                          output_feature_channels=cout)
    w = rng.standard_normal((cout, 3, 3, cin)).astype(np.float32)
    b = np.zeros(cout, np.float32)
    node = mpsnn.MPSCNNConvolutionNode(source=mpsnn.MPSNNImageNode(), weights=mpsnn.ArrayConvolutionDataSource(d, w, b))
    reference = mpsnn.MPSNNGraph(mpsnn.MTLDevice("cpu"), node.result_image).run([x]).numpy().astype(np.float64)
    g = mpsnn.MPSNNGraph(gpu, node.result_image)
    g.format = mpsnn.MPSImageFeatureChannelFormat.float32
    assert_close(g.run([x]).numpy(), reference, "reduction", "float32", k=9 * cin)
    monkeypatch.setenv("MPSNN_CUDA_TF32", "1")  # read when a plan is compiled
    g_tf32 = mpsnn.MPSNNGraph(gpu, node.result_image)
    g_tf32.format = mpsnn.MPSImageFeatureChannelFormat.float32
    y = g_tf32.run([x]).numpy()
    np.testing.assert_allclose(y, reference, rtol=1e-2, atol=2e-3 * np.sqrt(9 * cin) * np.abs(reference).max() / 10)
