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
