"""The core for training and devices (issue 7): devices and buffers, states delivered by graphs,
parameters reloaded without recompiling, node attributes frozen with the graph, steady-state runs
that allocate only their results, and the bugs found in the design review."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import mpsnn
import reference as R
from conftest import assert_close, conv_source
from mpsnn import MPSNNGraph, MPSNNImageNode


# ---- devices and buffers ---------------------------------------------------------------------

def test_devices_are_canonical_and_listed(device):
    assert mpsnn.MTLDevice() is device and mpsnn.MTLDevice("cpu:0") is device
    assert mpsnn.MTLCopyAllDevices()[0] is device
    assert device.registry_id == "cpu:0" and device.index == 0 and device.memory_kind == "host"
    assert device.make_command_queue().device is device


def test_mpsnn_device_environment_selects_the_default():
    code = "import mpsnn; d = mpsnn.MTLCreateSystemDefaultDevice(); print(d.registry_id, d is mpsnn.MTLDevice('cpu'))"
    env = dict(os.environ, MPSNN_DEVICE="cpu:0", PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0 and out.stdout.split() == ["cpu:0", "True"], out.stderr
    # A backend no build has, then CUDA: absent from the build, or built with fewer than 4 devices
    # (a CUDA build on a machine without driver says why it sees none).
    env["MPSNN_DEVICE"] = "vulkan:0"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode != 0 and "backend 'vulkan' is not part of this build" in out.stderr, out.stderr
    env["MPSNN_DEVICE"] = "cuda:3"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    expected = ("index 3 does not exist" if "cuda" in mpsnn.available_backends()
                else "backend 'cuda' is not part of this build")
    assert out.returncode != 0 and "UnsupportedError" in out.stderr and expected in out.stderr, out.stderr


def test_buffer_views_share_memory(device):
    b = device.make_buffer(16)
    assert b.length == 16 and len(b) == 16 and b.device is device
    raw = b.contents()
    assert raw.dtype == np.uint8 and raw.shape == (16,) and not raw.any()  # zero-filled
    f = b.numpy(np.float32)
    f[:] = [1.5, -2.0, 3.0, 0.25]
    np.testing.assert_array_equal(b.numpy(np.float32), [1.5, -2.0, 3.0, 0.25])
    assert raw[:4].tobytes() == np.float32(1.5).tobytes()  # the same bytes
    with pytest.raises(mpsnn.DTypeError, match="whole number"):
        device.make_buffer(6).numpy(np.float32)
    a = np.arange(8, dtype=np.int32)
    wrapped = mpsnn.MTLBuffer.from_numpy(a)
    wrapped.numpy(np.int32)[0] = 42
    assert a[0] == 42  # no copy
    with pytest.raises(mpsnn.DTypeError, match="C-contiguous"):
        mpsnn.MTLBuffer.from_numpy(np.zeros((4, 4), np.float32)[:, ::2])


def test_state_resources_and_read_counts(device):
    s = mpsnn.MPSState(device, resource_list=[8, 16])
    assert s.resource_count == 2 and s.buffer_size(1) == 16 and not s.is_temporary and s.read_count == 0
    assert s.resource(0, allocate_memory=False) is None and s.resource_size() == 0  # deferred allocation
    assert s.resource(1).length == 16 and s.resource_size() == 16
    with pytest.raises(mpsnn.MPSGraphError, match="index 2"):
        s.resource(2)
    one = mpsnn.MPSState(resource=device.make_buffer(4))
    assert one.resource_count == 1 and one.buffer_size() == 4
    cb = device.make_command_queue().make_command_buffer()
    t = mpsnn.MPSState.temporary_state(cb, buffer_size=32)
    assert t.is_temporary and t.read_count == 1
    assert mpsnn.MPSStateBatchIncrementReadCount([t, t, t], 1) == 2  # one object counts once
    t.read_count = 0
    with pytest.raises(mpsnn.MPSTemporaryImageError, match="read_count reached 0"):
        t.resource(0)
    with pytest.raises(mpsnn.MPSTemporaryImageError, match="cannot be changed"):
        t.read_count = 1


# ---- result states ----------------------------------------------------------------------------

def _max_pool_graph(device):
    x = MPSNNImageNode()
    pool = mpsnn.MPSCNNPoolingMaxNode(source=x, filter_size=2)
    pool.result_state.export_from_graph = True
    return MPSNNGraph(device, pool.result_image), pool


def test_exported_result_state_is_delivered(device, rng):
    g, pool = _max_pool_graph(device)
    assert len(g.result_state_handles) == 1
    x = rng.standard_normal((2, 4, 6, 3)).astype(np.float32)  # 2x2 windows without padding
    states = []
    y = g.run([x], destination_states=states)
    assert_close(y.numpy(), R.max_pool2d(x, (2, 2)), "exact")
    (s,) = states
    assert isinstance(s, mpsnn.MPSNNGradientState) and isinstance(s, mpsnn.MPSState) and not s.is_temporary
    idx = s.numpy()  # the arg-max: y * W + x of the winner in its image
    assert idx.dtype == np.int32 and idx.shape == y.numpy().shape
    n, i, j, c = 1, 1, 2, 2
    yy, xx = divmod(int(idx[n, i, j, c]), x.shape[2])
    assert 2 * i <= yy < 2 * i + 2 and 2 * j <= xx < 2 * j + 2 and x[n, yy, xx, c] == y.numpy()[n, i, j, c]
    # encode: the same through destination_states, temporary iff output_state_is_temporary
    g.output_state_is_temporary = True
    cb = device.make_command_queue().make_command_buffer()
    lst = []
    g.encode(cb, [x], destination_states=lst)
    cb.commit()
    cb.wait_until_completed()
    assert len(lst) == 1 and lst[0].is_temporary
    np.testing.assert_array_equal(lst[0].numpy(), idx)


def test_state_only_graph_and_states_without_buffers(device, rng):
    x = MPSNNImageNode()
    relu = mpsnn.MPSCNNNeuronReLUNode(source=x)
    relu.result_state.export_from_graph = True
    g = MPSNNGraph(device, relu.result_image)
    states = []
    g.run([rng.standard_normal((1, 3, 3, 2)).astype(np.float32)], destination_states=states)
    assert len(states) == 1 and states[0].resource_count == 0  # a neuron's state records no data


def test_source_states_are_validated(device, rng):
    g, _ = _max_pool_graph(device)
    cb = device.make_command_queue().make_command_buffer()
    x = rng.standard_normal((1, 4, 4, 1)).astype(np.float32)
    with pytest.raises(mpsnn.MPSGraphError, match="got 1 source state"):
        g.encode(cb, [x], source_states=[mpsnn.MPSState(device, buffer_size=4)])
    with pytest.raises(mpsnn.DTypeError, match="expected an MPSState"):
        g.encode(cb, [x], source_states=[object()])
    with pytest.raises(mpsnn.MPSGraphError, match="got 1 source state"):
        g.run([x], source_states=[mpsnn.MPSState(device, buffer_size=4)])


# ---- parameters ---------------------------------------------------------------------------------

def test_reload_updates_parameters_without_recompiling(device, rng):
    ds, w, b = conv_source(3, 5, 3, 3, rng)
    x = MPSNNImageNode()
    conv = mpsnn.MPSCNNConvolutionNode(source=x, weights=ds)
    bn_src = mpsnn.ArrayBatchNormalizationDataSource(
        np.ones(5, np.float32), np.zeros(5, np.float32), np.zeros(5, np.float32), np.ones(5, np.float32), 1e-5)
    bn = mpsnn.MPSCNNBatchNormalizationNode(source=conv.result_image, data_source=bn_src)
    g = MPSNNGraph(device, bn.result_image)
    xv = rng.standard_normal((2, 6, 7, 3)).astype(np.float32)
    for fuse in (True, False):
        g.fusion_enabled = fuse
        g.run([xv])
    plans = g._num_compiled_plans
    assert plans == 2
    w[...] = rng.standard_normal(w.shape).astype(np.float32)  # the data source's arrays, changed in place
    b[...] = 0.5
    bn_src.gamma()[...] = 2.0
    g.reload_from_data_sources()
    expected = 2.0 * R.conv2d(xv, w.astype(np.float64), np.full(5, 0.5)) / np.sqrt(1 + 1e-5)
    for fuse in (True, False):
        g.fusion_enabled = fuse
        assert_close(g.run([xv]).numpy(), expected, "reduction", k=27)
    assert g._num_compiled_plans == plans  # the plans were kept, their parameters updated


def test_steady_state_run_allocates_only_the_result(device, rng):
    ds, _, _ = conv_source(3, 8, 3, 3, rng)
    x = MPSNNImageNode()
    conv = mpsnn.MPSCNNConvolutionNode(source=x, weights=ds)
    pool = mpsnn.MPSCNNPoolingMaxNode(source=mpsnn.MPSCNNNeuronReLUNode(source=conv.result_image).result_image,
                                      filter_size=2)
    g = MPSNNGraph(device, pool.result_image)
    xv = rng.standard_normal((2, 9, 9, 3)).astype(np.float32)
    for _ in range(3):
        g.run([xv])
    before = mpsnn._core._host_allocation_count()
    for _ in range(10):
        g.run([xv])
    assert mpsnn._core._host_allocation_count() - before == 10  # one result image per run


# ---- bugs of the design review ------------------------------------------------------------------

def test_node_properties_are_frozen_when_the_graph_is_made(device):
    x = MPSNNImageNode()
    pool = mpsnn.MPSCNNPoolingAverageNode(source=x, filter_size=3, stride=1)
    g = MPSNNGraph(device, pool.result_image)
    ramp = np.arange(25, dtype=np.float32).reshape(1, 5, 5, 1)
    clamp = g.run([ramp]).numpy()[0, 0, 0, 0]
    pool.edge_mode = mpsnn.MPSImageEdgeMode.zero
    assert g.run([ramp]).numpy()[0, 0, 0, 0] == clamp  # same graph: frozen (MPS behaviour)
    small = np.ascontiguousarray(ramp[:, :4, :4])  # a new size compiles a plan from the frozen attributes too
    assert g.run([small]).numpy()[0, 0, 0, 0] == pytest.approx(R.average_pool2d(small, (3, 3), (1, 1))[0, 0, 0, 0])
    fresh = MPSNNGraph(device, pool.result_image).run([ramp]).numpy()[0, 0, 0, 0]
    assert fresh == pytest.approx(R.average_pool2d(ramp, (3, 3), (1, 1), edge_mode="zero")[0, 0, 0, 0])
    assert fresh != clamp


def test_binary_convolution_inherited_properties(device):
    d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=3, kernel_height=3, input_feature_channels=4,
                                          output_feature_channels=4)
    ds = mpsnn.ArrayConvolutionDataSource(d, np.zeros((4, 3, 3, 1), np.uint32))
    node = mpsnn.MPSCNNBinaryConvolutionNode(MPSNNImageNode(), ds, 1.0, mpsnn.MPSCNNBinaryConvolutionType.xnor,
                                             mpsnn.MPSCNNBinaryConvolutionFlags.none)
    assert node.training_style == mpsnn.MPSNNTrainingStyle.update_device_gpu
    node.training_style = mpsnn.MPSNNTrainingStyle.update_device_none
    assert node.training_style == mpsnn.MPSNNTrainingStyle.update_device_none
    assert node.accumulator_precision == 1
    with pytest.raises(mpsnn.UnsupportedError, match="no gradient state"):
        node.convolution_gradient_state
    with pytest.raises(NotImplementedError, match="no gradient node in MPS"):
        node.gradient_filter(with_source=MPSNNImageNode())


def test_wrong_class_properties_raise_typed_errors():
    relu = mpsnn.MPSCNNNeuronReLUNode(source=MPSNNImageNode())
    # a property of another class, reached through the base class descriptor
    with pytest.raises(mpsnn.UnsupportedError, match="no such property"):
        mpsnn.MPSCNNPoolingNode.kernel_width.fget(relu)


def test_gradient_creation_errors(device, rng):
    ds, _, _ = conv_source(3, 4, 3, 3, rng)
    conv = mpsnn.MPSCNNConvolutionNode(source=MPSNNImageNode(), weights=ds)
    assert type(conv.gradient_filter(with_source=MPSNNImageNode())) is mpsnn.MPSCNNConvolutionGradientNode
    scale = mpsnn.MPSNNBilinearScaleNode(source=MPSNNImageNode(), output_size=mpsnn.MTLSize(3, 3, 1))
    with pytest.raises(NotImplementedError, match="has no gradient node in MPS"):  # as MPS: none for scale nodes
        scale.gradient_filter(with_source=MPSNNImageNode())
    pool = mpsnn.MPSCNNPoolingMaxNode(source=MPSNNImageNode(), filter_size=2)
    grad = pool.gradient_filter(with_source=MPSNNImageNode())
    with pytest.raises(NotImplementedError, match="gradients of gradients"):
        grad.gradient_filter(with_source=MPSNNImageNode())
    with pytest.raises(mpsnn.MPSGraphError, match="exactly one"):
        pool.gradient_filter(with_source=MPSNNImageNode(), with_sources=[MPSNNImageNode()])
    assert [type(n) for n in pool.gradient_filters(with_source=MPSNNImageNode())] == [mpsnn.MPSCNNPoolingMaxGradientNode]


def test_graph_released_before_its_command_buffer_completes(device, rng):
    """A plan retained by a command buffer outlives its graph (parameters included)."""
    ds, w, b = conv_source(3, 4, 3, 3, rng)
    x = rng.standard_normal((1, 6, 6, 3)).astype(np.float32)
    g = MPSNNGraph(device, mpsnn.MPSCNNConvolutionNode(source=MPSNNImageNode(), weights=ds).result_image)
    cb = device.make_command_queue().make_command_buffer()
    y = g.encode(cb, [x])
    del g
    import gc
    gc.collect()
    cb.commit()
    cb.wait_until_completed()
    assert_close(y.numpy(), R.conv2d(x, w, b), "reduction", k=27)
