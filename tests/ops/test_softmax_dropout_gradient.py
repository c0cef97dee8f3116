"""Gradient tests of softmax / log-softmax (nodes.md §7.2, §7.4) and dropout (§11): the oneDNN softmax
backward from the forward result (and, built by hand from the forward source, with Y recomputed), the
training-mode dropout that samples the Philox-4x32-10 mask of the reference bit for bit, its
MPSCNNDropoutGradientState and mask_data(), inference dropout as the identity, fused and unfused."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import mpsnn
import reference as R
from conftest import assert_close

from ._common import Handle, from_t, inputs_by_label, labelled_graph, run_by_label, to_t

SOFTMAX = {False: (mpsnn.MPSCNNSoftMaxNode, mpsnn.MPSCNNSoftMaxGradientNode, R.softmax, R.softmax_gradient),
           True: (mpsnn.MPSCNNLogSoftMaxNode, mpsnn.MPSCNNLogSoftMaxGradientNode, R.log_softmax,
                  R.log_softmax_gradient)}


def _xg():
    return mpsnn.MPSNNImageNode(handle=Handle('x')), mpsnn.MPSNNImageNode(handle=Handle('g'))


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 5, 3), (3, 4, 7, 7), (2, 5, 3, 16)], ids=str)
def test_softmax_gradient(log, shape, device, rng):
    fwd_cls, grad_cls, fwd_ref, grad_ref = SOFTMAX[log]
    x = (2 * rng.standard_normal(shape)).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    ref = grad_ref(fwd_ref(x), g)
    for fuse in (True, False):
        xn, gn = _xg()
        sm = fwd_cls(source=xn)
        grad = sm.gradient_filter(with_source=gn)
        assert type(grad) is grad_cls and isinstance(grad, mpsnn.MPSNNGradientFilterNode)
        assert grad.source_images[1] is not xn          # wired to the forward result (nodes.md §7.2)
        y, dx = run_by_label(labelled_graph(device, [sm.result_image, grad.result_image], fuse), {'x': x, 'g': g})
        assert_close(y, fwd_ref(x), "reduction", k=shape[3])
        assert_close(dx, ref, "reduction", k=shape[3])


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_softmax_gradient_constructors(log, device, rng):
    """Built by hand from the forward result, or from the forward source (Y recomputed): the same values."""
    fwd_cls, grad_cls, fwd_ref, grad_ref = SOFTMAX[log]
    x = rng.standard_normal((2, 4, 3, 6)).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    xn, gn = _xg()
    sm = fwd_cls(source=xn)
    from_y = grad_cls(source_gradient=gn, source_image=sm.result_image, gradient_state=sm.result_state)
    from_x = grad_cls(source_gradient=gn, source_image=xn, gradient_state=sm.result_state)
    a, b = run_by_label(labelled_graph(device, [from_y.result_image, from_x.result_image]), {'x': x, 'g': g})
    assert_close(a, grad_ref(fwd_ref(x), g), "reduction", k=6)
    assert_close(b, a, "elementwise")


def test_softmax_gradient_errors(device, rng):
    xn, gn = _xg()
    sm = mpsnn.MPSCNNSoftMaxNode(source=xn)
    wrong = mpsnn.MPSCNNLogSoftMaxGradientNode(source_gradient=gn, source_image=sm.result_image,
                                               gradient_state=sm.result_state)
    wrong.label = "lsm.grad"
    x = rng.standard_normal((1, 2, 3, 4)).astype(np.float32)
    with pytest.raises(mpsnn.MPSGraphError, match=r"'lsm\.grad'\] \(log-softmax\) gradient_state comes from"):
        run_by_label(labelled_graph(device, wrong.result_image), {'x': x, 'g': x})
    grad = sm.gradient_filter(with_source=gn)
    grad.label = "sm.grad"
    with pytest.raises(mpsnn.ShapeError, match=r"'sm\.grad'\] source gradient is 3x2x5"):
        run_by_label(labelled_graph(device, grad.result_image), {'x': x, 'g': np.zeros((1, 2, 3, 5), np.float32)})
    other = mpsnn.MPSNNImageNode(handle=Handle('o'))
    stray = mpsnn.MPSCNNSoftMaxGradientNode(source_gradient=gn, source_image=other, gradient_state=sm.result_state)
    stray.label = "stray"
    with pytest.raises(mpsnn.MPSGraphError, match=r"'stray'\] source_image is not the result_image"):
        run_by_label(labelled_graph(device, stray.result_image), {'x': x, 'g': x, 'o': x})
    with pytest.raises(NotImplementedError):
        grad.gradient_filter(with_source=gn)


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_softmax_gradient_vs_torch(log, device, rng):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    fwd_cls = SOFTMAX[log][0]
    x = rng.standard_normal((2, 5, 4, 9)).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    xn, gn = _xg()
    grad = fwd_cls(source=xn).gradient_filter(with_source=gn)
    dx = run_by_label(labelled_graph(device, grad.result_image), {'x': x, 'g': g})
    t = to_t(x).clone().requires_grad_(True)
    (F.log_softmax if log else F.softmax)(t, dim=1).backward(to_t(g))
    assert torch.is_tensor(t.grad)
    assert_close(dx, from_t(t.grad), "reduction", k=9)


# --------------------------------------------------------------------------------------------
# dropout

def _dropout_graph(device, keep, seed, stride, fuse=True, export=True):
    xn, gn = _xg()
    drop = mpsnn.MPSCNNDropoutNode(source=xn, keep_probability=keep, seed=seed, mask_stride_in_pixels=stride)
    grad = drop.gradient_filter(with_source=gn)
    drop.result_state.export_from_graph = export
    drop.result_image.export_from_graph = True
    drop.result_image.image_allocator = mpsnn.MPSImage.default_allocator()
    return drop, grad, labelled_graph(device, grad.result_image, fuse)


def _encode(device, graph, arrays):
    """One encode: (forward result Y (exported), dX, destination states)."""
    cb = device.make_command_queue().make_command_buffer()
    states, inter = [], []
    dx = graph.encode(cb, [mpsnn.MPSImage.from_numpy(a) for a in inputs_by_label(graph, arrays)],
                      intermediate_images=inter, destination_states=states)
    cb.commit()
    cb.wait_until_completed()
    assert len(inter) == 1
    return np.array(inter[0].numpy()), np.array(dx.numpy()), states


@pytest.mark.parametrize("keep,stride", [(0.5, (1, 1, 1)), (0.8, (0, 0, 1)), (0.3, (1, 1, 0)), (0.6, (0, 1, 0)),
                                         (1.0, (1, 1, 1))], ids=str)
def test_dropout_training_mask_and_gradient(keep, stride, device, rng):
    shape = (3, 9, 7, 5)
    x = rng.standard_normal(shape).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    mask = R.dropout_mask(shape, keep, 12345, stride)
    for fuse in (True, False):
        drop, grad, graph = _dropout_graph(device, keep, 12345, stride, fuse)
        assert type(grad) is mpsnn.MPSCNNDropoutGradientNode
        assert (grad.keep_probability, grad.seed, tuple(grad.mask_stride_in_pixels)) == (np.float32(keep), 12345, stride)
        y, dx, states = _encode(device, graph, {'x': x, 'g': g})
        assert len(states) == 1 and isinstance(states[0], mpsnn.MPSCNNDropoutGradientState)
        assert isinstance(states[0], mpsnn.MPSNNGradientState) and not states[0].is_temporary
        m = states[0].mask_data()
        assert m.dtype == np.uint8 and m.shape == R.dropout_mask_shape(shape, stride)
        np.testing.assert_array_equal(m, mask)               # the documented generator, bit for bit
        assert_close(y, R.dropout_forward(x, mask, keep), "elementwise")
        assert_close(dx, R.dropout_gradient(g, mask, keep), "elementwise")
        assert np.all((y == 0) | np.isclose(y, x / np.float32(keep), rtol=1e-6))


def test_dropout_mask_statistics_and_seeds(device, rng):
    shape = (2, 40, 30, 8)
    x = np.ones(shape, np.float32)
    masks = {}
    for seed in (0, 1, 1):
        drop, grad, graph = _dropout_graph(device, 0.7, seed, (1, 1, 1))
        _, _, states = _encode(device, graph, {'x': x, 'g': x})
        m = states[0].mask_data()
        if seed in masks:
            np.testing.assert_array_equal(m, masks[seed])    # same seed, same mask
        masks[seed] = m
        n = m.size
        assert abs(m.mean() - 0.7) <= 5 * np.sqrt(0.7 * 0.3 / n)
        assert not np.array_equal(m[0], m[1])               # each image draws its own
    assert not np.array_equal(masks[0], masks[1])


def test_each_encode_draws_the_next_mask(device, rng):
    """Training iterations drop different units (own::dropout_mask's `draw`): encode k of a compiled
    graph uses draw k of the seed's sequence; a new graph with the same seed starts it again."""
    shape = (2, 6, 5, 7)
    x = rng.standard_normal(shape).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    drop, grad, graph = _dropout_graph(device, 0.5, 321, (1, 1, 1))
    seen = []
    for k in range(3):
        y, dx, states = _encode(device, graph, {'x': x, 'g': g})
        m = states[0].mask_data()
        np.testing.assert_array_equal(m, R.dropout_mask(shape, 0.5, 321, draw=k))
        assert_close(dx, R.dropout_gradient(g, m, 0.5), "elementwise")   # the gradient reads its own draw
        assert not any(np.array_equal(m, old) for old in seen)
        seen.append(m)
    _, _, again = _dropout_graph(device, 0.5, 321, (1, 1, 1))
    _, _, states = _encode(device, again, {'x': x, 'g': g})
    np.testing.assert_array_equal(states[0].mask_data(), seen[0])


def test_dropout_mask_is_independent_of_the_thread_count(device, tmp_path):
    if device.backend != "cpu":
        pytest.skip("the OpenMP thread count concerns the CPU backend")
    script = (
        "import numpy as np, mpsnn\n"
        "x = mpsnn.MPSNNImageNode(); g = mpsnn.MPSNNImageNode()\n"
        "d = mpsnn.MPSCNNDropoutNode(source=x, keep_probability=0.4, seed=99)\n"
        "gr = d.gradient_filter(with_source=g)\n"
        f"graph = mpsnn.MPSNNGraph(mpsnn.MTLDevice('{device.registry_id}'), gr.result_image)\n"
        "a = np.ones((2, 64, 64, 9), np.float32)\n"
        "np.save(__import__('sys').argv[1], np.array(graph.run([a, a]).numpy()))\n")
    outs = []
    for threads in ("1", "3"):
        env = dict(os.environ, OMP_NUM_THREADS=threads)
        path = tmp_path / f"dx{threads}.npy"
        subprocess.run([sys.executable, "-c", script, str(path)], env=env, check=True)
        outs.append(np.load(path))
    np.testing.assert_array_equal(outs[0], outs[1])


def test_inference_dropout_is_the_identity(device, rng):
    x = rng.standard_normal((2, 5, 4, 3)).astype(np.float32)
    for fuse in (True, False):
        xn, _ = _xg()
        drop = mpsnn.MPSCNNDropoutNode(source=xn, keep_probability=0.3, seed=4)
        relu = mpsnn.MPSCNNNeuronReLUNode(source=drop.result_image)
        y = run_by_label(labelled_graph(device, relu.result_image, fuse), {'x': x})
        assert_close(y, np.maximum(x, 0), "exact")  # float16 results: exact up to the rounding


def test_dropout_gradient_constructor_and_errors(device, rng):
    shape = (2, 4, 5, 3)
    x = rng.standard_normal(shape).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    xn, gn = _xg()
    drop = mpsnn.MPSCNNDropoutNode(source=xn, keep_probability=0.6, seed=7, mask_stride_in_pixels=(1, 0, 1))
    hand = mpsnn.MPSCNNDropoutGradientNode(source_gradient=gn, source_image=xn, gradient_state=drop.result_state,
                                           keep_probability=0.6, seed=7, mask_stride_in_pixels=(1, 0, 1))
    dx = run_by_label(labelled_graph(device, hand.result_image), {'x': x, 'g': g})
    assert_close(dx, R.dropout_gradient(g, R.dropout_mask(shape, 0.6, 7, (1, 0, 1)), 0.6), "elementwise")
    bad = mpsnn.MPSCNNDropoutGradientNode(source_gradient=gn, source_image=xn, gradient_state=drop.result_state,
                                          keep_probability=0.5, seed=7, mask_stride_in_pixels=(1, 0, 1))
    bad.label = "drop.grad"
    with pytest.raises(mpsnn.ShapeError, match=r"'drop\.grad'\] keep_probability 0\.5.*expected the forward"):
        run_by_label(labelled_graph(device, bad.result_image), {'x': x, 'g': g})
    with pytest.raises(mpsnn.ShapeError, match="keep_probability"):
        mpsnn.MPSCNNDropoutGradientNode(source_gradient=gn, source_image=xn, gradient_state=drop.result_state,
                                        keep_probability=0.0, seed=7, mask_stride_in_pixels=(1, 1, 1))
    grad = drop.gradient_filter(with_source=gn)
    grad.label = "d"
    with pytest.raises(mpsnn.ShapeError, match=r"'d'\] source gradient is 5x4x2"):
        run_by_label(labelled_graph(device, grad.result_image), {'x': x, 'g': g[..., :2]})


def test_dropout_gradient_vs_torch(device, rng):
    torch = pytest.importorskip("torch")
    shape = (2, 6, 5, 4)
    x = rng.standard_normal(shape).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    drop, grad, graph = _dropout_graph(device, 0.75, 5, (0, 0, 1))
    y_out, dx_out, states = _encode(device, graph, {'x': x, 'g': g})
    mask = torch.tensor(np.broadcast_to(states[0].mask_data(), shape).astype(np.float64))
    t = torch.tensor(x.astype(np.float64), requires_grad=True)
    y = t * mask / 0.75                                   # F.dropout2d's form with this mask
    y.backward(torch.tensor(g.astype(np.float64)))
    assert_close(y_out, y.detach().numpy(), "elementwise")
    assert_close(dx_out, t.grad.numpy(), "elementwise")
