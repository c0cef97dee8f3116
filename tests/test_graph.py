"""MPSNNGraph: initializers, handle order, several inputs and results, exported intermediates,
temporary images, command buffers, threads, fused == unfused, temporary-memory reuse."""

import threading

import numpy as np
import pytest

import mpsnn
import reference as R
from conftest import assert_close, conv_source
from mpsnn import MPSCNNNeuronReLUNode, MPSNNAdditionNode, MPSNNGraph, MPSNNImageNode


class Handle:
    def __init__(self, name):
        self.name = name

    def label(self):
        return self.name


def conv_ref(x, w, b, stride=(1, 1)):
    geo = R.window_geometry(x.shape[1:3], w.shape[1:3], stride)
    return R.conv2d(x, w, b, stride=stride, pad=geo["pad"], out_hw=geo["out_hw"])


def residual_net(rng, c=6):
    """x -> conv -> relu -> conv ; + x ; relu  (with an exported intermediate)."""
    x = MPSNNImageNode(handle=Handle("x"))
    ds1, w1, b1 = conv_source(c, c, 3, 3, rng)
    ds2, w2, b2 = conv_source(c, c, 3, 3, rng)
    c1 = mpsnn.MPSCNNConvolutionNode(source=x, weights=ds1)
    r1 = MPSCNNNeuronReLUNode(source=c1.result_image)
    c2 = mpsnn.MPSCNNConvolutionNode(source=r1.result_image, weights=ds2)
    add = MPSNNAdditionNode(left_source=c2.result_image, right_source=x)
    out = MPSCNNNeuronReLUNode(source=add.result_image)

    def ref(xv):
        h = np.maximum(conv_ref(xv, w1, b1), 0)
        return np.maximum(conv_ref(h, w2, b2) + xv, 0), h

    return x, r1, out, ref


def test_single_result_and_handles(device, rng):
    x, r1, out, ref = residual_net(rng)
    g = MPSNNGraph(device, out.result_image)
    assert g.source_image_handles[0] is x.handle
    assert g.result_image_is_needed and g.intermediate_image_handles == []
    xv = rng.standard_normal((2, 7, 9, 6)).astype(np.float32)
    assert_close(g.run([xv]).numpy(), ref(xv)[0], "reduction", k=54)


@pytest.mark.parametrize("fuse", [True, False])
def test_fused_equals_unfused_and_reference(device, rng, fuse):
    x, r1, out, ref = residual_net(rng)
    g = MPSNNGraph(device, out.result_image)
    g.fusion_enabled = fuse
    xv = rng.standard_normal((3, 5, 8, 6)).astype(np.float32)
    assert_close(g.run([xv]).numpy(), ref(xv)[0], "reduction", k=54)
    plan = g.plan_description([xv])
    assert ("sum" in plan) == fuse


def test_exported_intermediate_and_several_results(device, rng):
    x, r1, out, ref = residual_net(rng)
    r1.result_image.export_from_graph = True
    r1.result_image.handle = Handle("hidden")
    g = MPSNNGraph(device, out.result_image)
    assert [h.label() for h in g.intermediate_image_handles] == ["hidden"]
    xv = rng.standard_normal((1, 6, 6, 6)).astype(np.float32)
    inter = []
    y = g.run([xv], intermediate_images=inter)
    expected, hidden = ref(xv)
    assert_close(y.numpy(), expected, "reduction", k=54)
    assert_close(inter[0].numpy(), hidden, "reduction", k=54)
    g2 = MPSNNGraph(device, result_images=[out.result_image, r1.result_image], results_are_needed=[True, True])
    a, b = g2.run([xv])
    assert_close(a.numpy(), expected, "reduction", k=54)
    assert_close(b.numpy(), hidden, "reduction", k=54)


def test_several_inputs_follow_handle_order(device, rng):
    a, b = MPSNNImageNode(handle=Handle("a")), MPSNNImageNode(handle=Handle("b"))
    sub = mpsnn.MPSNNSubtractionNode(left_source=b, right_source=a)
    g = MPSNNGraph(device, sub.result_image)
    names = [h.label() for h in g.source_image_handles]
    assert names == ["b", "a"]  # depth-first from the result, sources in declaration order
    av, bv = rng.standard_normal((2, 1, 3, 4, 5)).astype(np.float32)
    inputs = {"a": av, "b": bv}
    y = g.run([inputs[n] for n in names]).numpy()
    np.testing.assert_array_equal(y, bv - av)


def test_temporary_memory_reuse_with_poisoned_buffers(device, rng):
    x, r1, out, ref = residual_net(rng)
    g = MPSNNGraph(device, out.result_image)
    g.poison_temporaries = True
    g.fusion_enabled = False  # more steps, more reuse
    xv = rng.standard_normal((2, 9, 7, 6)).astype(np.float32)
    for _ in range(2):
        y = g.run([xv]).numpy()
        assert np.isfinite(y).all()
        assert_close(y, ref(xv)[0], "reduction", k=54)


def test_eight_threads_one_graph(device, rng):
    x, r1, out, ref = residual_net(rng)
    g = MPSNNGraph(device, out.result_image)
    inputs = [rng.standard_normal((2, 8, 8, 6)).astype(np.float32) for _ in range(8)]
    serial = [g.run([v]).numpy() for v in inputs]
    results = [None] * 8
    errors = []

    def work(i):
        try:
            for _ in range(5):
                results[i] = g.run([inputs[i]]).numpy()
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for s, r in zip(serial, results):
        np.testing.assert_array_equal(s, r)


def test_encode_commit_and_completion_handler(device, rng):
    x, r1, out, ref = residual_net(rng)
    g = MPSNNGraph(device, out.result_image)
    queue = device.make_command_queue()
    cb = queue.make_command_buffer()
    xv = rng.standard_normal((1, 5, 5, 6)).astype(np.float32)
    seen = []
    result = g.encode(cb, [mpsnn.MPSImage.from_numpy(xv)])
    cb.add_completed_handler(lambda c: seen.append(c.status))
    cb.commit()
    cb.wait_until_completed()
    assert seen == [mpsnn.MTLCommandBufferStatus.completed]
    assert_close(result.numpy(), ref(xv)[0], "reduction", k=54)


def test_temporary_inputs_and_results_follow_read_counts(device, rng):
    relu = MPSCNNNeuronReLUNode(source=MPSNNImageNode())
    g = MPSNNGraph(device, relu.result_image)
    g.destination_image_allocator = mpsnn.MPSTemporaryImage.default_allocator()
    cb = device.make_command_queue().make_command_buffer()
    d = mpsnn.MPSImageDescriptor(mpsnn.MPSImageFeatureChannelFormat.float32, 4, 4, 3)
    t = mpsnn.MPSTemporaryImage(cb, d)
    assert g.read_count_for_source_image(0) == 1
    out = g.encode(cb, [t])
    assert t.read_count == 0 and out.is_temporary and out.read_count == 1
    with pytest.raises(mpsnn.MPSTemporaryImageError, match="read_count"):
        g.encode(cb, [t])
    other = device.make_command_queue().make_command_buffer()
    with pytest.raises(mpsnn.MPSTemporaryImageError, match="another command buffer"):
        g.encode(other, [mpsnn.MPSTemporaryImage(cb, d)])
    cb.commit()
    cb.wait_until_completed()


def test_worker_errors_are_stored_and_reraised(device):
    relu = MPSCNNNeuronReLUNode(source=MPSNNImageNode())
    g = MPSNNGraph(device, relu.result_image)
    cb = device.make_command_queue().make_command_buffer()
    g.encode(cb, [np.zeros((1, 2, 2, 3), np.float32)])

    def boom(_):
        raise RuntimeError("handler failed")

    cb.add_completed_handler(boom)
    cb.commit()
    with pytest.raises(mpsnn.BackendError, match="handler failed"):
        cb.wait_until_completed()
    assert cb.status == mpsnn.MTLCommandBufferStatus.error


def test_execute_async(device, rng):
    relu = MPSCNNNeuronReLUNode(source=MPSNNImageNode())
    g = MPSNNGraph(device, relu.result_image)
    done = threading.Event()
    got = {}

    def handler(result, error):
        got["result"], got["error"] = result, error
        done.set()

    xv = rng.standard_normal((1, 3, 3, 5)).astype(np.float32)
    returned = g.execute_async([xv], handler)
    assert done.wait(10)
    assert got["error"] is None and got["result"] is returned
    np.testing.assert_array_equal(returned.numpy(), np.maximum(xv, 0))


def test_float16_format_and_plan_cache(device, rng):
    x, r1, out, ref = residual_net(rng)
    g = MPSNNGraph(device, out.result_image)
    g.format = mpsnn.MPSImageFeatureChannelFormat.float16
    xv = rng.standard_normal((1, 6, 6, 6)).astype(np.float32)
    y = g.run([xv])
    assert y.feature_channel_format == mpsnn.MPSImageFeatureChannelFormat.float16
    assert y.numpy().dtype == np.float16
    assert_close(y.numpy(), ref(xv)[0], "reduction", dtype="float16")
    y16 = g.run([xv.astype(np.float16)]).numpy()  # float16 input: another plan
    assert_close(y16, ref(xv.astype(np.float16).astype(np.float32))[0], "reduction", dtype="float16")


def test_encode_batch(device, rng):
    relu = MPSCNNNeuronReLUNode(source=MPSNNImageNode())
    g = MPSNNGraph(device, relu.result_image)
    cb = device.make_command_queue().make_command_buffer()
    imgs = [mpsnn.MPSImage.from_numpy(rng.standard_normal((1, 2, 3, 4)).astype(np.float32)) for _ in range(3)]
    out = g.encode_batch(cb, [imgs])
    cb.commit()
    cb.wait_until_completed()
    assert len(out) == 3
    for i, o in zip(imgs, out):
        np.testing.assert_array_equal(o.numpy(), np.maximum(i.numpy(), 0))


def test_reload_from_data_sources(device, rng):
    ds, w, b = conv_source(3, 4, 1, 1, rng)
    conv = mpsnn.MPSCNNConvolutionNode(source=MPSNNImageNode(), weights=ds)
    g = MPSNNGraph(device, conv.result_image)
    xv = rng.standard_normal((1, 2, 2, 3)).astype(np.float32)
    y0 = g.run([xv]).numpy()
    ds.weights()[...] *= 2
    np.testing.assert_array_equal(g.run([xv]).numpy(), y0)  # read once, at construction
    g.reload_from_data_sources()
    assert_close(g.run([xv]).numpy(), conv_ref(xv, w, b), "reduction", k=3)
    assert ds.load_count == 2


def test_reload_from_data_sources_after_encoded_runs(device, rng):
    # graph.md §2.8: refused while an encoded run is pending, allowed once its buffer completed.
    # Before the fix every encode left the pending count one lower (a temporary copy of the
    # command buffer's completion guard decremented it too): reload then refused for good,
    # reporting "-1 run(s) ... have not completed" (found by examples/mnist_training.py).
    ds, w, b = conv_source(3, 4, 1, 1, rng)
    conv = mpsnn.MPSCNNConvolutionNode(source=MPSNNImageNode(), weights=ds)
    g = MPSNNGraph(device, conv.result_image)
    xv = rng.standard_normal((1, 2, 2, 3)).astype(np.float32)
    queue = device.make_command_queue()
    for batch in (False, True):
        cb = queue.make_command_buffer()
        if batch:
            g.encode_batch(cb, [[mpsnn.MPSImage.from_numpy(xv), mpsnn.MPSImage.from_numpy(xv.copy())]])
        else:
            g.encode(cb, [mpsnn.MPSImage.from_numpy(xv)])
        with pytest.raises(mpsnn.MPSGraphError, match=r"\] 1 run\(s\) of this graph have not completed"):
            g.reload_from_data_sources()
        cb.commit()
        cb.wait_until_completed()
        g.reload_from_data_sources()
    ds.weights()[...] *= 2
    g.reload_from_data_sources()
    assert_close(g.run([xv]).numpy(), conv_ref(xv, w, b), "reduction", k=3)  # w: the data source's own array


def test_custom_padding_policy(device, rng):
    class Crop:
        """Keeps the kernel offset, asks for a result one pixel narrower."""

        def padding_method(self):
            return int(mpsnn.MPSNNPaddingMethod.size_same | mpsnn.MPSNNPaddingMethod.custom)

        def destination_image_descriptor(self, source_images, source_states, kernel, suggested):
            assert source_images[0].width == 6 and kernel.kernel_width == 3
            suggested.width -= 1
            return suggested

    ds, w, b = conv_source(2, 3, 3, 3, rng)
    conv = mpsnn.MPSCNNConvolutionNode(source=MPSNNImageNode(), weights=ds)
    conv.padding_policy = Crop()
    g = MPSNNGraph(device, conv.result_image)
    xv = rng.standard_normal((1, 5, 6, 2)).astype(np.float32)
    y = g.run([xv]).numpy()
    assert y.shape == (1, 5, 5, 3)
    assert_close(y, conv_ref(xv, w, b)[:, :, :5], "reduction", k=18)


def test_debug_description_names_nodes(device, rng):
    x, r1, out, ref = residual_net(rng)
    g = MPSNNGraph(device, out.result_image)
    text = g.debug_description
    assert "convolution" in text and "arithmetic" in text


def test_residual_fusion_waits_for_the_other_addend(device, rng):
    """Both addends come from convolutions; the sum may only fuse into the one computed last."""
    x = MPSNNImageNode()
    t = MPSCNNNeuronReLUNode(source=x).result_image
    ds_a, wa, ba = conv_source(8, 16, 3, 3, rng, stride=(2, 2))
    ds_b, wb, bb = conv_source(8, 16, 1, 1, rng, stride=(2, 2))
    left = mpsnn.MPSCNNConvolutionNode(source=t, weights=ds_a).result_image
    right = mpsnn.MPSCNNConvolutionNode(source=t, weights=ds_b).result_image
    add = MPSNNAdditionNode(left_source=left, right_source=right)
    g = MPSNNGraph(device, add.result_image)
    xv = rng.standard_normal((1, 8, 8, 8)).astype(np.float32)
    h = np.maximum(xv, 0)
    expected = conv_ref(h, wa, ba, (2, 2)) + conv_ref(h, wb, bb, (2, 2))
    assert_close(g.run([xv]).numpy(), expected, "reduction", k=72)
    assert "sum" in g.plan_description([xv])


def test_copy_is_independent_with_the_same_properties(device, rng):
    import copy as copymod
    ds, w, b = conv_source(3, 4, 3, 3, rng)
    x = MPSNNImageNode(handle=None)
    conv = mpsnn.MPSCNNConvolutionNode(source=x, weights=ds)
    relu = mpsnn.MPSCNNNeuronReLUNode(source=conv.result_image)
    g = MPSNNGraph(device, relu.result_image)
    g.label, g.fusion_enabled = "original", False
    g.format = mpsnn.MPSImageFeatureChannelFormat.float16
    a = rng.standard_normal((2, 5, 6, 3)).astype(np.float32)
    expected = g.run([a]).numpy().copy()

    for c in (g.copy(), g.copy(device=device), copymod.copy(g)):
        assert c is not g
        assert (c.label, c.fusion_enabled, c.format) == (g.label, g.fusion_enabled, g.format)
        np.testing.assert_array_equal(c.run([a]).numpy(), expected)
    c = g.copy()
    c.format = mpsnn.MPSImageFeatureChannelFormat.float32
    c.label = "copy"
    assert g.format == mpsnn.MPSImageFeatureChannelFormat.float16 and g.label == "original"

    # The copy reads the data sources again: changed weights reach it, not the original's plans.
    w[...] = 0.0
    np.testing.assert_array_equal(g.run([a]).numpy(), expected)
    np.testing.assert_allclose(g.copy().run([a]).numpy(), np.maximum(np.broadcast_to(b, expected.shape), 0), rtol=1e-3)
